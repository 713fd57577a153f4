/* tap.h: a Linux tap interface with virtio-net headers (IFF_VNET_HDR, 12-byte modern header). */
#pragma once

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

/* struct virtio_net_hdr with num_buffers: the header of every virtio 1.x frame. */
#define TAP_VNET_HDR_LEN 12

struct tap {
    int fd; /* non-blocking */
    char ifname[IFNAMSIZ];
    unsigned mtu;
};

/* Attach to ifname (created, and brought up, if it does not exist): IFF_TAP | IFF_NO_PI |
 * IFF_VNET_HDR, header size TAP_VNET_HDR_LEN, no offloads. 0 or -errno with a message in err. */
int tap_open(struct tap *t, const char *ifname, char *err, size_t errlen);
void tap_close(struct tap *t);
/* Take over fd as a tap: non-blocking, one TAP_VNET_HDR_LEN header + frame per read or write
 * (a SOCK_SEQPACKET socket in tests). */
void tap_adopt(struct tap *t, int fd, const char *name, unsigned mtu);

/* net_output.send for a tap (opaque = struct tap *): prepends an all-zero virtio-net header
 * (no checksum or segmentation offload was negotiated) and writes the frame. */
int tap_send(void *opaque, const struct iovec *iov, int n);
