/* test_net.c: virtio-net against a fake tap (a SOCK_SEQPACKET pair): TX through the tap and the
 * output hook, RX with and without MRG_RXBUF (num_buffers, chains given back, waiting for room),
 * hostile RX/TX chains, MAC parsing and the device's vmstate. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/loop.h"
#include "fakevm.h"
#include "migration/stream.h"
#include "migration/vmstate.h"
#include "net/virtio_net.h"
#include "virtio/iov.h"
#include "virtio/virtio.h"
#include "virtio/virtio_mmio.h"

#define BASE   VIRTIO_MMIO_BASE
#define RXRING 0x100000ULL
#define TXRING 0x110000ULL
#define RXBUF  0x200000ULL /* RX buffer i at RXBUF + i * 0x1000 */
#define TXBUF  0x300000ULL
#define HDR    VIRTIO_NET_HDR_LEN
#define F_BASE (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_NET_F_MAC))
#define F_MRG  (F_BASE | VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF))

static const uint8_t mac[6] = {0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc};

struct fx {
    struct vm vm;
    struct test_ring rx, tx;
    int peer; /* the "network" side of the fake tap */
    struct virtio_net *n;
};

static int setup(void **state)
{
    static struct fx f;
    char err[256] = "";
    struct tap tap;
    int sv[2];

    memset(&f, 0, sizeof(f));
    if (fake_vm_init(&f.vm, 16ULL << 20))
        return -1;
    f.vm.loop = loop_new();
    if (!f.vm.loop || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
        return -1;
    f.peer = sv[1];
    tap_adopt(&tap, sv[0], "faketap", 1500);
    if (virtio_net_create_tap(&f.vm, &tap, mac, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    f.n = virtio_net_find(&f.vm, 0);
    ring_init_at(&f.rx, &f.vm.mem, 16, RXRING);
    ring_init_at(&f.tx, &f.vm.mem, 16, TXRING);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    fake_vm_destroy(&f->vm);
    loop_free(f->vm.loop);
    close(f->peer);
    return 0;
}

static uint32_t rd(struct fx *f, uint64_t off)
{
    return mmio_rd(&f->vm, BASE + off);
}

static void start(struct fx *f, uint64_t features)
{
    uint32_t st = driver_negotiate(&f->vm, BASE, features);

    assert_true(st & VIRTIO_STATUS_FEATURES_OK);
    driver_queue(&f->vm, BASE, VIRTIO_NET_RXQ, &f->rx);
    driver_queue(&f->vm, BASE, VIRTIO_NET_TXQ, &f->tx);
    mmio_wr(&f->vm, BASE + VIRTIO_MMIO_STATUS, st | VIRTIO_STATUS_DRIVER_OK);
    assert_int_equal(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
}

/* Post RX buffer i (len bytes at RXBUF + i * 0x1000) as descriptor i, a chain of one. */
static void post_rx(struct fx *f, uint16_t i, uint32_t len)
{
    ring_desc(&f->rx, f->rx.desc, i, RXBUF + 0x1000ULL * i, len, VIRTQ_DESC_F_WRITE, 0);
    ring_avail(&f->rx, i);
}

/* The network sends a frame of len bytes (pattern seed) behind a zero header. */
static void net_send(struct fx *f, size_t len, uint8_t seed)
{
    uint8_t msg[2048] = {0};

    for (size_t i = 0; i < len; i++)
        msg[HDR + i] = (uint8_t)(seed + i);
    assert_int_equal(send(f->peer, msg, HDR + len, 0), (ssize_t)(HDR + len));
}

/* Transmit a frame of len bytes: header (garbage, must be ignored) and frame in two buffers. */
static void guest_tx(struct fx *f, uint16_t head, size_t len)
{
    uint8_t *p = gmem_ptr(&f->vm.mem, TXBUF, HDR + len);

    memset(p, 0xaa, HDR);
    for (size_t i = 0; i < len; i++)
        p[HDR + i] = (uint8_t)i;
    ring_desc(&f->tx, f->tx.desc, head, TXBUF, HDR, VIRTQ_DESC_F_NEXT, (uint16_t)(head + 1));
    ring_desc(&f->tx, f->tx.desc, (uint16_t)(head + 1), TXBUF + HDR, (uint32_t)len, 0, 0);
    ring_avail(&f->tx, head);
    mmio_wr(&f->vm, BASE + VIRTIO_MMIO_QUEUE_NOTIFY, VIRTIO_NET_TXQ);
}

static void test_config_features(void **state)
{
    struct fx *f = *state;
    uint8_t cfg[8];
    uint32_t feat;

    assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_NET);
    for (int i = 0; i < 8; i++)
        bus_dispatch(&f->vm.mmio, BASE + VIRTIO_MMIO_CONFIG + (uint64_t)i, &cfg[i], 1, false);
    assert_memory_equal(cfg, mac, 6);
    assert_int_equal(cfg[6] | cfg[7] << 8, VIRTIO_NET_S_LINK_UP);
    mmio_wr(&f->vm, BASE + VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    feat = rd(f, VIRTIO_MMIO_DEVICE_FEATURES);
    assert_true(feat & (1u << VIRTIO_NET_F_MAC));
    assert_true(feat & (1u << VIRTIO_NET_F_STATUS));
    assert_true(feat & (1u << VIRTIO_NET_F_MRG_RXBUF));
    assert_int_equal(vmstate_check(vm_find_device(&f->vm, "virtio-net", 0)->vmsd), 0);
}

static void test_tx_to_tap(void **state)
{
    struct fx *f = *state;
    uint8_t msg[256], zero[HDR] = {0};
    uint32_t id, len;

    start(f, F_BASE);
    guest_tx(f, 0, 60);
    assert_int_equal(ring_used_idx(&f->tx), 1);
    ring_used_elem(&f->tx, 0, &id, &len);
    assert_int_equal(id, 0);
    assert_int_equal(len, 0);
    assert_int_equal(recv(f->peer, msg, sizeof(msg), 0), HDR + 60);
    assert_memory_equal(msg, zero, HDR); /* the guest's header is not passed on */
    assert_int_equal(msg[HDR + 59], 59);
    assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_VRING);
    assert_int_equal(f->n->tx_frames, 1);
}

static int hook_frames;
static size_t hook_len;

static int hook_send(void *opaque, const struct iovec *iov, int n)
{
    hook_frames++;
    hook_len = iov_size(iov, (unsigned)n);
    return (int)hook_len;
}

static void test_tx_output_hook(void **state)
{
    struct fx *f = *state;
    struct net_output out = {.send = hook_send};
    uint8_t msg[256];

    start(f, F_BASE);
    virtio_net_set_output(f->n, &out);
    guest_tx(f, 0, 100);
    assert_int_equal(hook_frames, 1);
    assert_int_equal(hook_len, 100); /* the Ethernet frame, no virtio header */
    assert_int_equal(recv(f->peer, msg, sizeof(msg), 0), -1);
    virtio_net_set_output(f->n, NULL);
    guest_tx(f, 2, 100);
    assert_int_equal(hook_frames, 1);
    assert_int_equal(recv(f->peer, msg, sizeof(msg), 0), HDR + 100);
}

static void test_tx_hostile(void **state)
{
    struct fx *f = *state;

    start(f, F_BASE);
    guest_tx(f, 0, 10); /* shorter than an Ethernet header: dropped, still used */
    assert_int_equal(ring_used_idx(&f->tx), 1);
    assert_int_equal(f->n->tx_dropped, 1);
    ring_desc(&f->tx, f->tx.desc, 4, TXBUF, 64, VIRTQ_DESC_F_WRITE, 0);
    ring_avail(&f->tx, 4);
    mmio_wr(&f->vm, BASE + VIRTIO_MMIO_QUEUE_NOTIFY, VIRTIO_NET_TXQ);
    assert_true(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
    assert_non_null(strstr(f->n->vdev.reason, "transmit buffer has device-writable parts"));
}

static void test_rx_simple(void **state)
{
    struct fx *f = *state;
    uint32_t id, len;
    uint8_t *b1 = gmem_ptr(&f->vm.mem, RXBUF + 0x1000, 1530);

    start(f, F_BASE);
    virtio_net_rx(f->n); /* nothing posted, nothing sent */
    assert_int_equal(ring_used_idx(&f->rx), 0);
    post_rx(f, 0, 1530);
    post_rx(f, 1, 1530);
    virtio_net_rx(f->n); /* buffers but no frame */
    assert_int_equal(ring_used_idx(&f->rx), 0);
    assert_int_equal(f->n->vdev.vq[0].last_avail_idx, 0); /* given back */
    net_send(f, 100, 1);
    net_send(f, 200, 2);
    clear_dirty(&f->vm.mem);
    virtio_net_rx(f->n);
    assert_int_equal(ring_used_idx(&f->rx), 2);
    ring_used_elem(&f->rx, 1, &id, &len);
    assert_int_equal(id, 1);
    assert_int_equal(len, HDR + 200);
    assert_int_equal(b1[VIRTIO_NET_HDR_NUMBUF_OFF], 1); /* num_buffers */
    assert_int_equal(b1[HDR], 2);
    assert_int_equal(b1[HDR + 199], (uint8_t)(2 + 199));
    assert_true(page_dirty(&f->vm.mem, RXBUF + 0x1000));
    assert_true(page_dirty(&f->vm.mem, f->rx.used));
    assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_VRING);
    assert_int_equal(f->n->rx_frames, 2);
}

static void test_rx_waits_for_buffers(void **state)
{
    struct fx *f = *state;

    start(f, F_BASE);
    net_send(f, 64, 7);
    virtio_net_rx(f->n); /* no buffers: the frame stays in the tap */
    assert_int_equal(ring_used_idx(&f->rx), 0);
    post_rx(f, 0, 1530);
    virtio_net_rx(f->n);
    assert_int_equal(ring_used_idx(&f->rx), 1);
    assert_int_equal(*(uint8_t *)gmem_ptr(&f->vm.mem, RXBUF + HDR, 1), 7);
}

static void test_rx_mergeable(void **state)
{
    struct fx *f = *state;
    uint8_t *b0 = gmem_ptr(&f->vm.mem, RXBUF, 512);
    uint8_t *b1 = gmem_ptr(&f->vm.mem, RXBUF + 0x1000, 512);
    uint32_t id, len;

    start(f, F_MRG);
    for (uint16_t i = 0; i < 4; i++)
        post_rx(f, i, 512);
    net_send(f, 1000 - HDR, 0); /* 1000 bytes with the header: two buffers */
    virtio_net_rx(f->n);
    assert_int_equal(ring_used_idx(&f->rx), 2);
    ring_used_elem(&f->rx, 0, &id, &len);
    assert_int_equal(id, 0);
    assert_int_equal(len, 512);
    ring_used_elem(&f->rx, 1, &id, &len);
    assert_int_equal(id, 1);
    assert_int_equal(len, 488);
    assert_int_equal(b0[VIRTIO_NET_HDR_NUMBUF_OFF], 2);
    assert_int_equal(b1[0], (uint8_t)(512 - HDR));        /* the frame continues in buffer 1 */
    assert_int_equal(f->n->vdev.vq[0].last_avail_idx, 2); /* buffers 2, 3 given back */

    /* 1024 bytes left cannot hold a largest frame (1530): wait, even for a small one */
    net_send(f, 50, 9);
    virtio_net_rx(f->n);
    assert_int_equal(ring_used_idx(&f->rx), 2);
    assert_int_equal(f->n->vdev.vq[0].last_avail_idx, 2);
    post_rx(f, 4, 512);
    post_rx(f, 5, 512);
    virtio_net_rx(f->n);
    assert_int_equal(ring_used_idx(&f->rx), 3);
    ring_used_elem(&f->rx, 2, &id, &len);
    assert_int_equal(id, 2);
    assert_int_equal(len, HDR + 50);
    assert_int_equal(f->n->vdev.vq[0].last_avail_idx, 3);
}

static void test_rx_hostile(void **state)
{
    struct fx *f = *state;

    start(f, F_BASE);
    ring_desc(&f->rx, f->rx.desc, 0, RXBUF, 1530, 0, 0); /* readable */
    ring_avail(&f->rx, 0);
    virtio_net_rx(f->n);
    assert_true(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
    assert_non_null(strstr(f->n->vdev.reason, "device-readable"));

    ring_init_at(&f->rx, &f->vm.mem, 16, RXRING);
    start(f, F_BASE);
    post_rx(f, 0, 8); /* smaller than the header */
    virtio_net_rx(f->n);
    assert_non_null(strstr(f->n->vdev.reason, "smaller than the 12-byte header"));
}

static void test_mac_and_specs(void **state)
{
    struct fx *f = *state;
    uint8_t m[6];
    char err[256];

    assert_int_equal(virtio_net_parse_mac("02:00:0A:bc:de:ff", m), 0);
    assert_int_equal(m[2], 0x0a);
    assert_int_equal(m[5], 0xff);
    assert_int_equal(virtio_net_parse_mac("01:00:00:00:00:00", m), -EINVAL); /* multicast */
    assert_int_equal(virtio_net_parse_mac("02:00:00:00:00", m), -EINVAL);
    assert_int_equal(virtio_net_parse_mac("02:00:00:00:00:00:00", m), -EINVAL);
    assert_int_equal(virtio_net_parse_mac("02-00-00-00-00-00", m), -EINVAL);
    assert_int_equal(virtio_net_parse_mac("02:00:00:00:00:0g", m), -EINVAL);
    assert_int_equal(virtio_net_create(&f->vm, "mac=02:00:00:00:00:01", err, sizeof(err)), -EINVAL);
    assert_int_equal(virtio_net_create(&f->vm, "tap=x,mac=zz", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "mac expects"));
}

static int save_reset_load(struct fx *f)
{
    const struct vmstate_desc *vmsd = vm_find_device(&f->vm, "virtio-net", 0)->vmsd;
    struct stream_writer sw;
    struct stream_reader sr;
    const uint8_t *buf;
    size_t len;
    int r;

    assert_int_equal(stream_writer_init_buf(&sw, 256), 0);
    assert_int_equal(vmstate_save(&sw, vmsd, f->n), 0);
    buf = sw_buf_data(&sw, &len);
    mmio_wr(&f->vm, BASE + VIRTIO_MMIO_STATUS, 0);
    stream_reader_init_buf(&sr, buf, len);
    r = vmstate_load(&sr, vmsd, f->n, vmsd->version_id);
    stream_reader_destroy(&sr);
    stream_writer_destroy(&sw);
    return r;
}

static void test_vmstate(void **state)
{
    struct fx *f = *state;

    start(f, F_MRG);
    post_rx(f, 0, 1530);
    net_send(f, 64, 3);
    virtio_net_rx(f->n);
    assert_int_equal(save_reset_load(f), 0);
    assert_int_equal(f->n->vdev.vq[0].last_avail_idx, 1);
    assert_true(virtio_mmio_has_feature(&f->n->vdev, VIRTIO_NET_F_MRG_RXBUF));
    f->n->mac[5] ^= 1; /* a stream from another NIC */
    assert_int_equal(save_reset_load(f), -EINVAL);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_config_features), T(test_tx_to_tap),  T(test_tx_output_hook),
        T(test_tx_hostile),      T(test_rx_simple),  T(test_rx_waits_for_buffers),
        T(test_rx_mergeable),    T(test_rx_hostile), T(test_mac_and_specs),
        T(test_vmstate),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
