/* tap.c: open and configure a tap device (vnet header, no offloads, non-blocking); send frames. */
#include "net/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/if_tun.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static unsigned query_mtu(const char *ifname)
{
    struct ifreq ifr;
    unsigned mtu = 1500;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    if (s < 0)
        return mtu;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
    if (ioctl(s, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0)
        mtu = (unsigned)ifr.ifr_mtu;
    close(s);
    return mtu;
}

static int bring_up(const char *ifname)
{
    struct ifreq ifr;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), r = 0;

    if (s < 0)
        return -errno;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
        r = -errno;
    } else {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
            r = -errno;
    }
    close(s);
    return r;
}

int tap_open(struct tap *t, const char *ifname, char *err, size_t errlen)
{
    struct ifreq ifr;
    unsigned features = 0;
    int hdr_len = TAP_VNET_HDR_LEN;
    bool existed;
    int r;

    t->fd = -1;
    if (!*ifname || strlen(ifname) >= IFNAMSIZ) {
        snprintf(err, errlen, "tap: bad interface name '%s'", ifname);
        return -EINVAL;
    }
    snprintf(t->ifname, sizeof(t->ifname), "%s", ifname);
    existed = if_nametoindex(ifname) != 0;
    t->fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (t->fd < 0) {
        r = -errno;
        snprintf(err, errlen, "tap: cannot open /dev/net/tun: %s", strerror(errno));
        return r;
    }
    if (ioctl(t->fd, TUNGETFEATURES, &features) < 0 || !(features & IFF_VNET_HDR)) {
        r = -ENOTSUP;
        snprintf(err, errlen, "tap: the kernel lacks IFF_VNET_HDR");
        goto err;
    }
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (ioctl(t->fd, TUNSETIFF, &ifr) < 0) {
        r = -errno;
        snprintf(err, errlen, "tap: cannot attach to '%s': %s", ifname, strerror(errno));
        goto err;
    }
    if (ioctl(t->fd, TUNSETVNETHDRSZ, &hdr_len) < 0) {
        r = -errno;
        snprintf(err, errlen, "tap: '%s': TUNSETVNETHDRSZ %d: %s", ifname, hdr_len,
                 strerror(errno));
        goto err;
    }
    /* No checksum or segmentation offload: every header the tap gives us is all zeros. */
    if (ioctl(t->fd, TUNSETOFFLOAD, 0) < 0) {
        r = -errno;
        snprintf(err, errlen, "tap: '%s': TUNSETOFFLOAD: %s", ifname, strerror(errno));
        goto err;
    }
    if (!existed) {
        r = bring_up(ifname);
        if (r) {
            snprintf(err, errlen, "tap: cannot bring '%s' up: %s", ifname, strerror(-r));
            goto err;
        }
    }
    t->mtu = query_mtu(ifname);
    return 0;

err:
    close(t->fd);
    t->fd = -1;
    return r;
}

void tap_close(struct tap *t)
{
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
}

void tap_adopt(struct tap *t, int fd, const char *name, unsigned mtu)
{
    t->fd = fd;
    snprintf(t->ifname, sizeof(t->ifname), "%s", name);
    t->mtu = mtu;
}

int tap_send(void *opaque, const struct iovec *iov, int n)
{
    static const uint8_t zero_hdr[TAP_VNET_HDR_LEN];
    struct tap *t = opaque;
    struct iovec v[IOV_MAX];
    ssize_t r;

    if (n < 0 || n >= IOV_MAX)
        return -EINVAL;
    v[0].iov_base = (void *)zero_hdr;
    v[0].iov_len = sizeof(zero_hdr);
    memcpy(v + 1, iov, (size_t)n * sizeof(*iov));
    do {
        r = writev(t->fd, v, n + 1);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    return (int)(r - (ssize_t)sizeof(zero_hdr));
}
