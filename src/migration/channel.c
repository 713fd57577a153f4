/* channel.c: parse migration URIs and open their sockets or files, with clear errors. */
#include "migration/channel.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int chan_parse_uri(const char *uri, struct chan_uri *out, char *err, size_t errlen)
{
    const char *rest, *colon;

    memset(out, 0, sizeof(*out));
    if (!strncmp(uri, "tcp:", 4)) {
        rest = uri + 4;
        if (*rest == '[') {
            const char *close = strchr(rest, ']');
            if (!close || close[1] != ':')
                goto bad;
            if ((size_t)(close - rest - 1) >= sizeof(out->host))
                goto bad;
            memcpy(out->host, rest + 1, (size_t)(close - rest - 1));
            colon = close + 1;
        } else {
            colon = strrchr(rest, ':');
            if (!colon || (size_t)(colon - rest) >= sizeof(out->host))
                goto bad;
            memcpy(out->host, rest, (size_t)(colon - rest));
        }
        if (!colon[1] || strlen(colon + 1) >= sizeof(out->port) ||
            strspn(colon + 1, "0123456789") != strlen(colon + 1))
            goto bad;
        strcpy(out->port, colon + 1);
        out->kind = CHAN_TCP;
        return 0;
    }
    if (!strncmp(uri, "unix:", 5) || !strncmp(uri, "file:", 5)) {
        rest = uri + 5;
        if (!*rest || strlen(rest) >= sizeof(out->path) ||
            (uri[0] == 'u' && strlen(rest) >= sizeof(((struct sockaddr_un *)0)->sun_path)))
            goto bad;
        strcpy(out->path, rest);
        out->kind = uri[0] == 'u' ? CHAN_UNIX : CHAN_FILE;
        return 0;
    }
bad:
    snprintf(err, errlen,
             "invalid migration URI '%s' (expected tcp:HOST:PORT, unix:PATH or file:PATH)", uri);
    return -EINVAL;
}

void chan_tune_socket(int fd)
{
    int one = 1;

    /* Checkpoint messages are tiny and latency-bound: Nagle + delayed ACK cost ~40 ms each. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

/* A stream socket and the address of the unix: URI's path. Returns fd or -errno. */
static int unix_socket(const struct chan_uri *u, struct sockaddr_un *sa)
{
    int fd;

    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    strcpy(sa->sun_path, u->path); /* length checked by chan_parse_uri */
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    return fd < 0 ? -errno : fd;
}

/* open(2) the file: URI's path, with an error message naming what failed. */
static int open_file(const struct chan_uri *u, int flags, const char *what, char *err,
                     size_t errlen)
{
    int fd = open(u->path, flags | O_CLOEXEC, 0600), r;

    if (fd < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot %s '%s': %s", what, u->path, strerror(errno));
        return r;
    }
    return fd;
}

static int connect_timeout(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int flags = fcntl(fd, F_GETFL), soerr = 0;
    socklen_t sl = sizeof(soerr);

    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    if (connect(fd, sa, len) < 0) {
        if (errno != EINPROGRESS)
            return -errno;
        int r = poll(&p, 1, timeout_ms);
        if (r == 0)
            return -ETIMEDOUT;
        if (r < 0)
            return -errno;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
            return -errno;
        if (soerr)
            return -soerr;
    }
    fcntl(fd, F_SETFL, flags);
    return 0;
}

int chan_connect(const struct chan_uri *u, int timeout_ms, char *err, size_t errlen)
{
    int fd, r;

    switch (u->kind) {
    case CHAN_FILE:
        return open_file(u, O_WRONLY | O_CREAT | O_TRUNC, "create", err, errlen);
    case CHAN_UNIX: {
        struct sockaddr_un sa;
        fd = unix_socket(u, &sa);
        if (fd < 0)
            return fd;
        r = connect_timeout(fd, (struct sockaddr *)&sa, sizeof(sa), timeout_ms);
        if (r) {
            snprintf(err, errlen, "cannot connect to unix:%s: %s", u->path, strerror(-r));
            close(fd);
            return r;
        }
        return fd;
    }
    case CHAN_TCP: {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
        int gai = getaddrinfo(u->host, u->port, &hints, &res);
        if (gai) {
            snprintf(err, errlen, "cannot resolve %s: %s", u->host, gai_strerror(gai));
            return -EHOSTUNREACH;
        }
        r = -ECONNREFUSED;
        fd = -1;
        for (ai = res; ai; ai = ai->ai_next) {
            fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
            if (fd < 0) {
                r = -errno;
                continue;
            }
            r = connect_timeout(fd, ai->ai_addr, ai->ai_addrlen, timeout_ms);
            if (!r)
                break;
            close(fd);
            fd = -1;
        }
        freeaddrinfo(res);
        if (fd < 0) {
            snprintf(err, errlen, "cannot connect to tcp:%s:%s: %s", u->host, u->port,
                     strerror(-r));
            return r;
        }
        chan_tune_socket(fd);
        return fd;
    }
    default:
        snprintf(err, errlen, "invalid channel");
        return -EINVAL;
    }
}

int chan_listen(const struct chan_uri *u, char *err, size_t errlen)
{
    int fd, r, one = 1;

    switch (u->kind) {
    case CHAN_FILE:
        return open_file(u, O_RDONLY, "open snapshot", err, errlen);
    case CHAN_UNIX: {
        struct sockaddr_un sa;
        fd = unix_socket(u, &sa);
        if (fd < 0)
            return fd;
        unlink(u->path);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
            r = -errno;
            snprintf(err, errlen, "cannot listen on unix:%s: %s", u->path, strerror(errno));
            close(fd);
            return r;
        }
        return fd;
    }
    case CHAN_TCP: {
        struct addrinfo hints = {.ai_family = AF_UNSPEC,
                                 .ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_PASSIVE},
                        *res;
        int gai = getaddrinfo(u->host[0] ? u->host : NULL, u->port, &hints, &res);
        if (gai) {
            snprintf(err, errlen, "cannot resolve %s: %s", u->host, gai_strerror(gai));
            return -EHOSTUNREACH;
        }
        fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
        if (fd < 0) {
            r = -errno;
            freeaddrinfo(res);
            return r;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1) < 0) {
            r = -errno;
            snprintf(err, errlen, "cannot listen on tcp:%s:%s: %s", u->host, u->port,
                     strerror(errno));
            close(fd);
            freeaddrinfo(res);
            return r;
        }
        freeaddrinfo(res);
        return fd;
    }
    default:
        snprintf(err, errlen, "invalid channel");
        return -EINVAL;
    }
}

int chan_accept(int lfd)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

    if (fd < 0)
        return -errno;
    chan_tune_socket(fd);
    return fd;
}
