/* tcp_nodelay.c: LD_PRELOAD shim: sets TCP_NODELAY on every TCP socket the process creates or accepts (no Nagle delay on QEMU's small COLO messages). */
/*
 * QEMU 7.2's COLO exchanges small control messages (a few bytes each) and waits for the answer;
 * with Nagle's algorithm on, a small write behind unacknowledged data waits for the peer's
 * delayed ACK (tens of ms on Linux loopback). QEMU does not set TCP_NODELAY on its migration
 * sockets; this does, for socket() (before connect) and for accept()/accept4() results.
 * Failures are ignored: the socket works as before.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static void nodelay(int fd)
{
    int one = 1, type = 0, domain = 0;
    socklen_t len = sizeof(type);

    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM)
        return;
    len = sizeof(domain);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
        (domain != AF_INET && domain != AF_INET6))
        return;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int socket(int domain, int type, int protocol)
{
    static int (*real)(int, int, int);
    int fd;

    if (!real)
        real = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
    fd = real(domain, type, protocol);
    if (domain == AF_INET || domain == AF_INET6)
        nodelay(fd);
    return fd;
}

int accept(int s, struct sockaddr *addr, socklen_t *alen)
{
    static int (*real)(int, struct sockaddr *, socklen_t *);
    int fd;

    if (!real)
        real = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
    fd = real(s, addr, alen);
    nodelay(fd);
    return fd;
}

int accept4(int s, struct sockaddr *addr, socklen_t *alen, int flags)
{
    static int (*real)(int, struct sockaddr *, socklen_t *, int);
    int fd;

    if (!real)
        real = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
    fd = real(s, addr, alen, flags);
    nodelay(fd);
    return fd;
}
