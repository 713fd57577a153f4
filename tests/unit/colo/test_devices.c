/* test_devices.c: output commit covers every NIC a VM can have: with a NIC in each of the
 * VIRTIO_MMIO_SLOTS device slots, each NIC's frames wait for the checkpoint that closes their
 * epoch and leave, in order, when it is received -- the last NIC exactly like the first. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>

#include "colo/colo.h"
#include "colo/devices.h"
#include "core/loop.h"
#include "fakevm.h"
#include "net/tap.h"
#include "net/virtio_net.h"
#include "virtio/virtio_mmio.h"

#define NNICS VIRTIO_MMIO_SLOTS

struct fx {
    struct vm vm;
    struct colo c;
    int peer[NNICS]; /* the "network" side of each NIC's fake tap */
    struct virtio_net *n[NNICS];
};

static int setup(void **state)
{
    static struct fx f;
    char err[256] = "";

    memset(&f, 0, sizeof(f));
    if (fake_vm_init(&f.vm, 16ULL << 20))
        return -1;
    f.vm.loop = loop_new();
    if (!f.vm.loop)
        return -1;
    for (unsigned i = 0; i < NNICS; i++) {
        uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, (uint8_t)(0x50 + i)};
        struct tap tap;
        char name[16];
        int sv[2];

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
            return -1;
        f.peer[i] = sv[1];
        snprintf(name, sizeof(name), "faketap%u", i);
        tap_adopt(&tap, sv[0], name, 1500);
        if (virtio_net_create_tap(&f.vm, &tap, mac, err, sizeof(err))) {
            fprintf(stderr, "NIC %u: %s\n", i, err);
            return -1;
        }
        f.n[i] = virtio_net_find(&f.vm, i);
        if (!f.n[i])
            return -1;
    }
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    fake_vm_destroy(&f->vm);
    loop_free(f->vm.loop);
    for (unsigned i = 0; i < NNICS; i++)
        close(f->peer[i]);
    return 0;
}

/* The guest transmits on NIC i: the frame goes where the NIC's transmit path sends it. */
static void guest_tx(struct fx *f, unsigned i, uint8_t tag)
{
    uint8_t frame[64];
    struct iovec iov = {.iov_base = frame, .iov_len = sizeof(frame)};

    memset(frame, tag, sizeof(frame));
    frame[0] = (uint8_t)i;
    assert_int_equal(f->n[i]->output.send(f->n[i]->output.opaque, &iov, 1), sizeof(frame));
}

/* What the network saw on NIC i since the last call: the tags of the frames, in order. */
static size_t wire(struct fx *f, unsigned i, uint8_t *tags, size_t max)
{
    uint8_t buf[TAP_VNET_HDR_LEN + 64];
    size_t n = 0;

    for (;;) {
        ssize_t r = recv(f->peer[i], buf, sizeof(buf), MSG_DONTWAIT);
        if (r < 0) {
            assert_int_equal(errno, EAGAIN);
            return n;
        }
        assert_int_equal(r, sizeof(buf));
        assert_int_equal(buf[TAP_VNET_HDR_LEN], i);
        assert_true(n < max);
        tags[n++] = buf[TAP_VNET_HDR_LEN + 1];
    }
}

static void test_every_nic_held_per_epoch(void **state)
{
    struct fx *f = *state;
    uint8_t tags[4];

    colo_devices_primary_start(&f->c, &f->vm);
    /* epoch 1 */
    for (unsigned i = 0; i < NNICS; i++)
        guest_tx(f, i, 0xa1);
    for (unsigned i = 0; i < NNICS; i++)
        assert_int_equal(wire(f, i, tags, 4), 0); /* held, on every NIC */
    colo_devices_close_epoch(&f->c);
    /* epoch 2 */
    for (unsigned i = 0; i < NNICS; i++)
        guest_tx(f, i, 0xa2);
    /* checkpoint 1 reached the secondary: epoch 1's frames leave, epoch 2's stay */
    colo_devices_release(&f->c, 1);
    for (unsigned i = 0; i < NNICS; i++) {
        assert_int_equal(wire(f, i, tags, 4), 1);
        assert_int_equal(tags[0], 0xa1);
    }
    colo_devices_close_epoch(&f->c);
    colo_devices_release(&f->c, 2);
    for (unsigned i = 0; i < NNICS; i++) {
        assert_int_equal(wire(f, i, tags, 4), 1);
        assert_int_equal(tags[0], 0xa2);
    }
    /* Leaving COLO: every NIC transmits straight to its tap again. */
    colo_devices_primary_stop(&f->c, &f->vm);
    for (unsigned i = 0; i < NNICS; i++) {
        guest_tx(f, i, 0xa3);
        assert_int_equal(wire(f, i, tags, 4), 1);
        assert_int_equal(tags[0], 0xa3);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_nic_held_per_epoch, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
