/* virtio_net.c: virtio-net: tap RX into guest buffers, TX through the output hook, config, vmstate.
 */
#include "net/virtio_net.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"
#include "core/vm.h"
#include "migration/vmstate.h"
#include "virtio/devspec.h"
#include "virtio/iov.h"
#include "virtio/virtio.h"

VIRTIO_MMIO_FIRST_MEMBER(struct virtio_net, vdev);

#define ETH_HDR_BYTES  14u
#define VLAN_TAG_BYTES 4u
#define TX_FRAME_MAX   65535u /* no segmentation offload: nothing larger is a frame */

/* ---- RX (tap -> guest), main loop ---- */

static void rx_set_armed(struct virtio_net *n, bool on)
{
    if (n->input.ready) {
        /* RX comes from elsewhere (virtio_net_inject): tell it there may be room now. */
        if (on)
            n->input.ready(n->input.opaque);
        return;
    }
    if (n->rx_armed == on)
        return;
    if (loop_mod_fd(n->vdev.vm->loop, n->tap.fd, on ? EPOLLIN : 0) == 0)
        n->rx_armed = on;
}

/* Pop the buffers for one frame: one chain, or with MRG_RXBUF enough chains for frame_max.
 * Returns the number of chains, 0 if the driver has not posted enough, -EIO if it broke the ring.
 */
static int rx_gather(struct virtio_net *n, unsigned *niov_out)
{
    struct virtio_mmio *vd = &n->vdev;
    struct virtq *q = &vd->vq[VIRTIO_NET_RXQ];
    bool mrg = virtio_mmio_has_feature(vd, VIRTIO_NET_F_MRG_RXBUF);
    unsigned nchains = 0, niov = 0, max_chains = mrg ? q->num : 1;
    uint64_t cap = 0;

    while (nchains < max_chains && cap < n->frame_max && VIRTIO_NET_RX_IOV - niov >= q->num) {
        struct virtq_chain *c = &n->rx_chains[nchains];
        int r = virtq_pop(q, c, n->rx_iov + niov, VIRTIO_NET_RX_IOV - niov);

        if (r < 0) {
            virtio_mmio_queue_broken(vd, VIRTIO_NET_RXQ);
            return -EIO;
        }
        if (r == 0) {
            /* Ask for a kick on the next buffer, then look once more (it may have raced). */
            virtq_enable_kicks(q);
            if (virtq_avail_pending(q))
                continue;
            break;
        }
        nchains++;
        if (c->n_out || c->in_len < VIRTIO_NET_HDR_LEN) {
            virtio_mmio_needs_reset(vd, "queue 0: head %u: receive buffer %s", c->head,
                                    c->n_out ? "has device-readable parts"
                                             : "smaller than the 12-byte header");
            return -EIO;
        }
        niov += c->n_in;
        cap += c->in_len;
    }
    if (!nchains || (mrg && cap < n->frame_max)) {
        virtq_unpop(q, (uint16_t)nchains);
        return 0;
    }
    *niov_out = niov;
    return (int)nchains;
}

/* Hand the gathered chains to the driver holding a frame of len bytes (header included) already
 * in n->rx_iov: in order until the frame is placed (at least one); the rest go back. */
static void rx_commit(struct virtio_net *n, int nchains, uint64_t len)
{
    struct virtq *q = &n->vdev.vq[VIRTIO_NET_RXQ];
    unsigned used = 0, iovpos = 0;
    uint16_t numbuf;
    uint64_t left = len;

    for (int i = 0; i < nchains && (i == 0 || left); i++) {
        const struct virtq_chain *c = &n->rx_chains[i];
        uint64_t seg = left < c->in_len ? left : c->in_len;

        virtq_mark_written(q, n->rx_iov + iovpos, c->n_in, seg);
        virtq_fill(q, (uint16_t)used, c->head, (uint32_t)seg);
        iovpos += c->n_in;
        left -= seg;
        used++;
    }
    /* The tap leaves num_buffers alone; it is ours to write (1 without MRG_RXBUF). */
    numbuf = htole16((uint16_t)used);
    iov_from_buf(n->rx_iov, n->rx_chains[0].n_in, VIRTIO_NET_HDR_NUMBUF_OFF, &numbuf, 2);
    virtq_mark_written(q, n->rx_iov, n->rx_chains[0].n_in, VIRTIO_NET_HDR_LEN);
    virtq_flush(q, (uint16_t)used);
    virtq_unpop(q, (uint16_t)(nchains - (int)used));
    n->rx_frames++;
}

/* The frame just read into n->rx_iov (len bytes, header included) goes to the RX hook as a
 * copy; what the hook changed is written back before the driver sees it. */
static void rx_observe(struct virtio_net *n, unsigned niov, size_t len)
{
    size_t flen;

    if (!n->rx_hook.seen || len <= VIRTIO_NET_HDR_LEN || !n->rx_copy)
        return;
    flen = iov_to_buf(n->rx_iov, niov, VIRTIO_NET_HDR_LEN, n->rx_copy, len - VIRTIO_NET_HDR_LEN);
    if (n->rx_hook.seen(n->rx_hook.opaque, n->rx_copy, flen))
        iov_from_buf(n->rx_iov, niov, VIRTIO_NET_HDR_LEN, n->rx_copy, flen);
}

/* Move one frame. 1: a frame was delivered or dropped; 0: the tap is empty; -ENOBUFS: the driver
 * has no room; -EIO: broken ring; other -errno: the tap failed. */
static int rx_one(struct virtio_net *n)
{
    struct virtq *q = &n->vdev.vq[VIRTIO_NET_RXQ];
    unsigned niov = 0;
    ssize_t len;
    int nchains = rx_gather(n, &niov);

    if (nchains <= 0)
        return nchains == 0 ? -ENOBUFS : nchains;
    do {
        len = readv(n->tap.fd, n->rx_iov, (int)niov);
    } while (len < 0 && errno == EINTR);
    if (len < 0) {
        int e = errno;

        virtq_unpop(q, (uint16_t)nchains);
        if (e == EAGAIN)
            return 0;
        n->rx_dropped++;
        if (e == EFAULT || e == EINVAL || e == EMSGSIZE)
            return 1; /* this frame did not fit and is gone; go on with the next */
        log_warn("virtio-net%u: read from %s: %s", n->instance, n->tap.ifname, strerror(e));
        return -e;
    }
    rx_observe(n, niov, (size_t)len);
    rx_commit(n, nchains, (uint64_t)len);
    return 1;
}

void virtio_net_rx(struct virtio_net *n)
{
    struct virtio_mmio *vd = &n->vdev;
    uint64_t before = n->rx_frames;
    int r = 0;

    virtio_mmio_enter(vd);
    if (!virtio_mmio_queue_usable(vd, VIRTIO_NET_RXQ)) {
        rx_set_armed(n, false); /* the kick, DRIVER_OK or cont re-arms */
        goto out;
    }
    for (unsigned i = 0; i < VIRTIO_NET_RX_BUDGET; i++) {
        r = rx_one(n);
        if (r <= 0)
            break;
    }
    /* Out of buffers or broken: stop watching. Budget spent or tap empty: stay armed. */
    if (r < 0)
        rx_set_armed(n, false);
    if (n->rx_frames != before)
        virtio_mmio_used(vd, VIRTIO_NET_RXQ);
out:
    virtio_mmio_leave(vd);
}

static void on_tap(void *opaque, uint32_t events)
{
    virtio_net_rx(opaque);
}

static void rx_rearm_cb(void *opaque)
{
    struct virtio_net *n = opaque;

    virtio_mmio_enter(&n->vdev);
    n->rx_rearm_posted = false;
    if (virtio_mmio_queue_usable(&n->vdev, VIRTIO_NET_RXQ))
        rx_set_armed(n, true);
    virtio_mmio_leave(&n->vdev);
}

/* New RX buffers (any thread): watch the tap again, from the main loop that owns the watch. */
static void rx_kicked(struct virtio_net *n)
{
    if (n->input.ready) {
        n->input.ready(n->input.opaque);
        return;
    }
    if (n->rx_armed || n->rx_rearm_posted)
        return;
    if (loop_call(n->vdev.vm->loop, rx_rearm_cb, n) == 0)
        n->rx_rearm_posted = true;
}

/* ---- TX (guest -> output) ---- */

static void tx_one(struct virtio_net *n, const struct virtq_chain *c)
{
    uint64_t flen = c->out_len > VIRTIO_NET_HDR_LEN ? c->out_len - VIRTIO_NET_HDR_LEN : 0;
    unsigned k;
    int r;

    /* The guest's header is ignored: without negotiated offloads it has nothing to say. */
    if (flen < ETH_HDR_BYTES || flen > TX_FRAME_MAX) {
        n->tx_dropped++;
        return;
    }
    k = iov_slice(n->tx_iov, c->n_out, VIRTIO_NET_HDR_LEN, flen, n->tx_frame, VIRTIO_NET_QUEUE_MAX);
    r = k ? n->output.send(n->output.opaque, n->tx_frame, (int)k) : -EINVAL;
    if (r < 0) {
        n->tx_dropped++;
        log_debug("virtio-net%u: frame of %llu bytes dropped: %s", n->instance,
                  (unsigned long long)flen, strerror(-r));
        return;
    }
    n->tx_frames++;
}

static void tx_resume_cb(void *opaque)
{
    struct virtio_net *n = opaque;

    virtio_mmio_enter(&n->vdev);
    n->tx_resume_posted = false;
    virtio_mmio_kick(&n->vdev, VIRTIO_NET_TXQ);
    virtio_mmio_leave(&n->vdev);
}

static void tx_process(struct virtio_net *n)
{
    struct virtio_mmio *vd = &n->vdev;
    struct virtq *q = &vd->vq[VIRTIO_NET_TXQ];
    struct virtq_chain c;
    unsigned done = 0;
    bool used = false;
    int r = 0;

    for (;;) {
        while (done < VIRTIO_NET_TX_BUDGET &&
               (r = virtq_pop(q, &c, n->tx_iov, VIRTIO_NET_QUEUE_MAX)) > 0) {
            done++;
            if (c.n_in) {
                virtio_mmio_needs_reset(vd,
                                        "queue 1: head %u: transmit buffer has "
                                        "device-writable parts",
                                        c.head);
                goto out;
            }
            tx_one(n, &c);
            virtq_push(q, c.head, 0);
            used = true;
        }
        if (r < 0) {
            virtio_mmio_queue_broken(vd, VIRTIO_NET_TXQ);
            break;
        }
        if (done >= VIRTIO_NET_TX_BUDGET) {
            /* Let the loop breathe; continue from a call (a busy guest must not starve it). */
            if (!n->tx_resume_posted && loop_call(vd->vm->loop, tx_resume_cb, n) == 0)
                n->tx_resume_posted = true;
            break;
        }
        virtq_enable_kicks(q);
        if (!virtq_avail_pending(q))
            break;
    }
out:
    if (used)
        virtio_mmio_used(vd, VIRTIO_NET_TXQ);
}

/* ---- transport callbacks ---- */

static void net_notify(struct virtio_mmio *vd, unsigned q)
{
    struct virtio_net *n = (struct virtio_net *)vd;

    if (q == VIRTIO_NET_RXQ)
        rx_kicked(n);
    else
        tx_process(n);
}

static void net_driver_ok(struct virtio_mmio *vd)
{
    rx_kicked((struct virtio_net *)vd);
}

static void net_resume(struct virtio_mmio *vd)
{
    struct virtio_net *n = (struct virtio_net *)vd;

    if (virtio_mmio_queue_usable(vd, VIRTIO_NET_RXQ))
        rx_set_armed(n, true);
}

static const struct virtio_device_ops net_ops = {
    .name = "virtio-net",
    .device_id = VIRTIO_ID_NET,
    .nqueues = 2,
    .queue_max = VIRTIO_NET_QUEUE_MAX,
    .notify = net_notify,
    .driver_ok = net_driver_ok,
    .resume = net_resume,
};

static void fill_config(struct virtio_net *n)
{
    struct virtio_mmio *vd = &n->vdev;
    uint16_t st = htole16(n->link);

    vd->device_features = VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_NET_F_STATUS) |
                          VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF);
    memset(vd->config, 0, sizeof(vd->config));
    memcpy(vd->config + VIRTIO_NET_CFG_MAC, n->mac, 6);
    memcpy(vd->config + VIRTIO_NET_CFG_STATUS, &st, 2);
    vd->config_len = VIRTIO_NET_CFG_LEN;
}

/* ---- migration ---- */

static int net_post_load(void *opaque, uint32_t version_id)
{
    struct virtio_net *n = opaque;

    /* Both sides are configured with the same MAC; anything else is another NIC. */
    if (memcmp(n->mac, n->vdev.config + VIRTIO_NET_CFG_MAC, 6)) {
        log_err("virtio-net%u: incoming MAC %02x:%02x:%02x:%02x:%02x:%02x differs from ours",
                n->instance, n->mac[0], n->mac[1], n->mac[2], n->mac[3], n->mac[4], n->mac[5]);
        return -EINVAL;
    }
    return 0;
}

static const struct vmstate_field net_fields[] = {
    VMS_STRUCT(struct virtio_net, vdev, struct virtio_mmio, &virtio_mmio_vmsd),
    VMS_BUFFER(struct virtio_net, mac, 6),
    VMS_END,
};

static const struct vmstate_desc net_vmsd = {
    .name = "virtio-net",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = net_fields,
    .post_load = net_post_load,
};

/* ---- lifetime ---- */

int virtio_net_parse_mac(const char *s, uint8_t mac[6])
{
    unsigned v[6];
    char tail;

    if (strlen(s) != 17 || sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4],
                                  &v[5], &tail) != 6)
        return -EINVAL;
    for (int i = 0; i < 6; i++) {
        if (s[3 * i + 2] != (i == 5 ? '\0' : ':'))
            return -EINVAL;
        mac[i] = (uint8_t)v[i];
    }
    if (mac[0] & 1)
        return -EINVAL; /* multicast */
    return 0;
}

static void net_destroy(void *opaque)
{
    struct virtio_net *n = opaque;

    if (n->vdev.vm && n->tap.fd >= 0)
        loop_del_fd(n->vdev.vm->loop, n->tap.fd);
    virtio_mmio_uninit(&n->vdev);
    tap_close(&n->tap);
    free(n->rx_copy);
    free(n);
}

struct virtio_net *virtio_net_find(struct vm *vm, uint32_t instance)
{
    return vm_device_state(vm, net_ops.name, instance);
}

void virtio_net_set_output(struct virtio_net *n, const struct net_output *out)
{
    pthread_mutex_lock(&n->vdev.lock);
    if (out)
        n->output = *out;
    else
        n->output = (struct net_output){.send = tap_send, .opaque = &n->tap};
    pthread_mutex_unlock(&n->vdev.lock);
}

void virtio_net_set_rx_hook(struct virtio_net *n, const struct net_rx_hook *hook)
{
    uint8_t *copy = NULL;

    if (hook && hook->seen)
        copy = malloc(n->frame_max);
    pthread_mutex_lock(&n->vdev.lock);
    free(n->rx_copy);
    n->rx_copy = copy;
    n->rx_hook = hook && copy ? *hook : (struct net_rx_hook){0};
    pthread_mutex_unlock(&n->vdev.lock);
}

void virtio_net_set_input(struct virtio_net *n, const struct net_input *in)
{
    virtio_mmio_enter(&n->vdev);
    if (in && in->ready) {
        rx_set_armed(n, false); /* the tap is not read while another source feeds the guest */
        n->input = *in;
    } else {
        n->input = (struct net_input){0};
        if (virtio_mmio_queue_usable(&n->vdev, VIRTIO_NET_RXQ))
            rx_set_armed(n, true);
    }
    virtio_mmio_leave(&n->vdev);
}

int virtio_net_inject(struct virtio_net *n, const void *frame, size_t len)
{
    static const uint8_t hdr[VIRTIO_NET_HDR_LEN];
    unsigned niov = 0;
    int r, nchains;

    if (len < ETH_HDR_BYTES || len + VIRTIO_NET_HDR_LEN > n->frame_max)
        return -EMSGSIZE;
    virtio_mmio_enter(&n->vdev);
    if (!virtio_mmio_queue_usable(&n->vdev, VIRTIO_NET_RXQ)) {
        r = -EAGAIN; /* stopped, or no driver yet: ready() comes when it can take frames */
        goto out;
    }
    nchains = rx_gather(n, &niov);
    if (nchains <= 0) {
        r = nchains == 0 ? -ENOBUFS : nchains;
        goto out;
    }
    iov_from_buf(n->rx_iov, niov, 0, hdr, sizeof(hdr));
    iov_from_buf(n->rx_iov, niov, VIRTIO_NET_HDR_LEN, frame, len);
    rx_commit(n, nchains, len + VIRTIO_NET_HDR_LEN);
    virtio_mmio_used(&n->vdev, VIRTIO_NET_RXQ);
    r = 1;
out:
    virtio_mmio_leave(&n->vdev);
    return r;
}

int virtio_net_create_tap(struct vm *vm, struct tap *tap, const uint8_t mac[6], char *err,
                          size_t errlen)
{
    struct virtio_net *n;
    struct vm_device dev;
    int r;

    if (!vm->loop) {
        snprintf(err, errlen, "--net: needs the main loop");
        r = -EINVAL;
        goto out_tap;
    }
    n = calloc(1, sizeof(*n));
    if (!n) {
        snprintf(err, errlen, "--net: out of memory");
        r = -ENOMEM;
        goto out_tap;
    }
    n->tap = *tap;
    tap->fd = -1; /* ours now */
    while (virtio_net_find(vm, n->instance))
        n->instance++;
    memcpy(n->mac, mac, 6);
    n->frame_max = VIRTIO_NET_HDR_LEN + ETH_HDR_BYTES + VLAN_TAG_BYTES + n->tap.mtu;
    if (n->frame_max > VIRTIO_NET_HDR_LEN + TX_FRAME_MAX)
        n->frame_max = VIRTIO_NET_HDR_LEN + TX_FRAME_MAX;
    n->link = VIRTIO_NET_S_LINK_UP;
    n->output = (struct net_output){.send = tap_send, .opaque = &n->tap};
    r = virtio_mmio_init(&n->vdev, vm, &net_ops, n);
    if (r) {
        snprintf(err, errlen, "--net: no virtio-mmio slot: %s", strerror(-r));
        goto out_free;
    }
    fill_config(n);
    /* Watched with no events until the driver has posted buffers. */
    r = loop_add_fd(vm->loop, n->tap.fd, 0, on_tap, n);
    if (r) {
        snprintf(err, errlen, "--net: cannot watch %s: %s", n->tap.ifname, strerror(-r));
        goto out_vdev;
    }
    virtio_mmio_fill_vm_device(&n->vdev, &dev, n->instance, &net_vmsd, net_destroy);
    r = vm_add_device(vm, &dev);
    if (r) {
        snprintf(err, errlen, "--net: cannot add the device: %s", strerror(-r));
        loop_del_fd(vm->loop, n->tap.fd);
        goto out_vdev;
    }
    log_info("virtio-net%u: tap %s, mac %02x:%02x:%02x:%02x:%02x:%02x, mtu %u", n->instance,
             n->tap.ifname, n->mac[0], n->mac[1], n->mac[2], n->mac[3], n->mac[4], n->mac[5],
             n->tap.mtu);
    return 0;

out_vdev:
    virtio_mmio_uninit(&n->vdev);
out_free:
    tap_close(&n->tap);
    free(n);
out_tap:
    tap_close(tap);
    return r;
}

int virtio_net_create(struct vm *vm, const char *spec, char *err, size_t errlen)
{
    static const char *const keys[] = {"tap", "mac"};
    uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
    uint32_t instance = 0;
    char *val[2], why[200];
    struct tap tap;
    int r;

    r = devspec_parse("--net", spec, keys, 2, val, err, errlen);
    if (r)
        return r;
    r = -EINVAL;
    if (!val[0]) {
        snprintf(err, errlen, "--net: tap=IFNAME is required");
        goto out;
    }
    while (virtio_net_find(vm, instance))
        instance++;
    mac[5] = (uint8_t)(mac[5] + instance);
    if (val[1] && virtio_net_parse_mac(val[1], mac)) {
        snprintf(err, errlen, "--net: mac expects a unicast xx:xx:xx:xx:xx:xx, got '%s'", val[1]);
        goto out;
    }
    r = tap_open(&tap, val[0], why, sizeof(why));
    if (r) {
        snprintf(err, errlen, "--net: %s", why);
        goto out;
    }
    r = virtio_net_create_tap(vm, &tap, mac, err, errlen);
out:
    devspec_free(val, 2);
    return r;
}
