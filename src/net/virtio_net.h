/* virtio_net.h: virtio-net device on a tap: zero-copy RX and TX, MAC, link status, output hook.
 *
 * RX: the tap is watched on the main loop while the driver has buffers; each wakeup moves up to
 * a budget of frames with readv straight into guest buffers. Without MRG_RXBUF one chain takes
 * one frame; with it, chains are gathered until they can hold the largest frame the tap can
 * deliver, and the unused ones are given back. With no buffers the watch is dropped until the
 * driver kicks the RX queue. Nothing is held between wakeups: after a restore the ring
 * (last_avail_idx) says which buffers are still free.
 * TX: each chain goes to net_output.send as an iovec over guest RAM (no copy); the default output
 * writes it to the tap.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "net/output.h"
#include "net/tap.h"
#include "virtio/virtio_mmio.h"

struct vm;

#define VIRTIO_NET_F_MAC       5
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS    16

#define VIRTIO_NET_S_LINK_UP 1u

#define VIRTIO_NET_HDR_LEN        TAP_VNET_HDR_LEN
#define VIRTIO_NET_HDR_NUMBUF_OFF 10 /* le16 num_buffers */
#define VIRTIO_NET_QUEUE_MAX      256u
#define VIRTIO_NET_RXQ            0u
#define VIRTIO_NET_TXQ            1u
#define VIRTIO_NET_RX_IOV         1024u /* IOV_MAX: what one readv can take */
#define VIRTIO_NET_RX_BUDGET      64u   /* frames per tap wakeup */
#define VIRTIO_NET_TX_BUDGET      256u  /* chains per pass before yielding to the loop */

/* Config space offsets (spec 5.1.4). */
#define VIRTIO_NET_CFG_MAC    0
#define VIRTIO_NET_CFG_STATUS 6
#define VIRTIO_NET_CFG_LEN    8

struct virtio_net {
    struct virtio_mmio vdev; /* first: see VIRTIO_MMIO_FIRST_MEMBER */
    /* Migrated, and checked against ours on load. */
    uint8_t mac[6];
    /* Host side. */
    uint16_t link; /* VIRTIO_NET_S_* in config */
    struct tap tap;
    uint32_t instance;
    struct net_output output;
    struct net_input input;     /* ready set: RX from virtio_net_inject, not the tap */
    struct net_rx_hook rx_hook; /* sees (and may rewrite) every frame read from the tap */
    uint8_t *rx_copy;           /* frame_max bytes while rx_hook is set */
    uint32_t frame_max;         /* header + largest frame the tap delivers */
    bool rx_armed;              /* tap watched for EPOLLIN (changed on the main loop only) */
    bool rx_rearm_posted;
    bool tx_resume_posted;
    struct iovec rx_iov[VIRTIO_NET_RX_IOV];
    struct virtq_chain rx_chains[VIRTIO_NET_QUEUE_MAX];
    struct iovec tx_iov[VIRTIO_NET_QUEUE_MAX];
    struct iovec tx_frame[VIRTIO_NET_QUEUE_MAX];
    uint64_t rx_frames, rx_dropped, tx_frames, tx_dropped;
};

/* --net spec "tap=IFNAME[,mac=MAC]": opens the tap, takes the next virtio-mmio slot and an
 * inventory entry ("virtio-net", instance = index among NICs). Default MAC 52:54:00:12:34:56
 * plus the instance. -EINVAL for a bad spec. */
int virtio_net_create(struct vm *vm, const char *spec, char *err, size_t errlen);
/* The same on a tap already open (taken over: closed on failure too) with this MAC. */
int virtio_net_create_tap(struct vm *vm, struct tap *tap, const uint8_t mac[6], char *err,
                          size_t errlen);
struct virtio_net *virtio_net_find(struct vm *vm, uint32_t instance);
/* The tap is readable: move up to VIRTIO_NET_RX_BUDGET frames into the guest (the main loop's
 * callback; tests call it directly). */
void virtio_net_rx(struct virtio_net *n);
/* Route TX frames through out (COLO holds them until a checkpoint); NULL restores the tap. */
void virtio_net_set_output(struct virtio_net *n, const struct net_output *out);
/* Feed RX from somewhere else than the tap (COLO hybrid: the secondary's frames come from the
 * primary); NULL: the tap again. in->ready is called (device lock held, any thread: it must only
 * post work) whenever the driver may have made room. */
void virtio_net_set_input(struct virtio_net *n, const struct net_input *in);
/* Place one Ethernet frame (no header) into the guest's RX buffers, taking the device lock.
 * 1: delivered; -ENOBUFS: no room (keep it, retry on ready); -EAGAIN: the device is stopped or
 * not driven (retry on ready); -EMSGSIZE: it can never fit; -EIO: broken ring. */
int virtio_net_inject(struct virtio_net *n, const void *frame, size_t len);
/* Every frame read from the tap is shown to hook->seen before the driver sees it (a copy; the
 * hook returns true to have its changes written back). NULL removes it. */
void virtio_net_set_rx_hook(struct virtio_net *n, const struct net_rx_hook *hook);
/* "52:54:00:12:34:56" -> mac; unicast only. 0 or -EINVAL. */
int virtio_net_parse_mac(const char *s, uint8_t mac[6]);
