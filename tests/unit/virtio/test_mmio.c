/* test_mmio.c: the virtio-mmio transport seen by a driver: identity, feature negotiation, the
 * status machine and NEEDS_RESET, queue registers, interrupts, stop/cont, reset, and the
 * transport's vmstate (round trip and hostile incoming state). The device is a virtio-blk. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "block/virtio_blk.h"
#include "fakevm.h"
#include "migration/stream.h"
#include "migration/vmstate.h"
#include "virtio/virtio.h"
#include "virtio/virtio_mmio.h"

#define MEMSIZE (16ULL << 20)
#define HDR     0x20000ULL
#define DATA    0x21000ULL
#define STATUS  0x30000ULL
#define BASE    VIRTIO_MMIO_BASE
#define V1      VIRTIO_BIT(VIRTIO_F_VERSION_1)
#define ALL_F   (V1 | VIRTIO_BIT(VIRTIO_F_RING_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_F_RING_EVENT_IDX))

struct fx {
    struct vm vm;
    struct test_ring r;
    char path[2][64];
    struct virtio_blk *blk;
};

static int make_disk(struct fx *f, int i)
{
    char spec[128], err[256] = "";
    int fd;

    snprintf(f->path[i], sizeof(f->path[i]), "/tmp/tandem-mmio-test-XXXXXX");
    fd = mkstemp(f->path[i]);
    if (fd < 0 || ftruncate(fd, 8 * VIRTIO_BLK_SECTOR) < 0)
        return -1;
    close(fd);
    snprintf(spec, sizeof(spec), "path=%s", f->path[i]);
    if (virtio_blk_create(&f->vm, spec, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int setup(void **state)
{
    static struct fx f;

    memset(&f, 0, sizeof(f));
    if (fake_vm_init(&f.vm, MEMSIZE) || make_disk(&f, 0))
        return -1;
    f.blk = virtio_blk_find(&f.vm, 0);
    ring_init(&f.r, &f.vm.mem, 8);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    fake_vm_destroy(&f->vm);
    for (int i = 0; i < 2; i++)
        if (f->path[i][0])
            unlink(f->path[i]);
    return 0;
}

static uint32_t rd(struct fx *f, uint64_t off)
{
    return mmio_rd(&f->vm, BASE + off);
}

static void wr(struct fx *f, uint64_t off, uint32_t v)
{
    mmio_wr(&f->vm, BASE + off, v);
}

/* Post a one-sector read of sector 0 (not notified). */
static void post_read(struct fx *f)
{
    put32(&f->vm.mem, HDR, VIRTIO_BLK_T_IN);
    put64(&f->vm.mem, HDR + 8, 0);
    ring_desc(&f->r, f->r.desc, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
    ring_desc(&f->r, f->r.desc, 1, DATA, VIRTIO_BLK_SECTOR, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
              2);
    ring_desc(&f->r, f->r.desc, 2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
    ring_avail(&f->r, 0);
}

static void kick(struct fx *f)
{
    wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
}

static void test_identity_and_layout(void **state)
{
    struct fx *f = *state;
    struct virtio_mmio_info info[4];

    assert_int_equal(rd(f, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
    assert_int_equal(rd(f, VIRTIO_MMIO_VERSION_REG), 2);
    assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_BLOCK);
    assert_int_equal(rd(f, VIRTIO_MMIO_VENDOR_ID_REG), VIRTIO_MMIO_VENDOR_ID);
    assert_int_equal(rd(f, VIRTIO_MMIO_SHM_LEN_LOW), 0xffffffff);
    /* the next slot is empty until a second device takes it */
    assert_int_equal(mmio_rd(&f->vm, BASE + VIRTIO_MMIO_SLOT_SIZE), 0xffffffff);
    assert_int_equal(make_disk(f, 1), 0);
    assert_int_equal(mmio_rd(&f->vm, BASE + VIRTIO_MMIO_SLOT_SIZE), 0x74726976);
    assert_int_equal(virtio_mmio_list(&f->vm, info, 4), 2);
    assert_int_equal(info[0].base, 0xFEB00000ULL);
    assert_int_equal(info[0].gsi, 16);
    assert_int_equal(info[1].base, 0xFEB00200ULL);
    assert_int_equal(info[1].gsi, 17);
    assert_int_equal(info[1].size, 0x200);
    assert_int_equal(info[1].device_id, VIRTIO_ID_BLOCK);
    assert_non_null(virtio_blk_find(&f->vm, 1));
}

static void test_device_features(void **state)
{
    struct fx *f = *state;
    uint32_t lo;

    wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    lo = rd(f, VIRTIO_MMIO_DEVICE_FEATURES);
    assert_true(lo & (1u << VIRTIO_F_RING_INDIRECT_DESC));
    assert_true(lo & (1u << VIRTIO_F_RING_EVENT_IDX));
    assert_true(lo & (1u << VIRTIO_BLK_F_FLUSH));
    assert_true(lo & (1u << VIRTIO_BLK_F_SEG_MAX));
    assert_false(lo & (1u << VIRTIO_BLK_F_RO));
    wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_FEATURES), 1); /* VERSION_1 */
    wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
    assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_FEATURES), 0);
}

static void test_features_refused(void **state)
{
    struct fx *f = *state;

    /* legacy driver (no VERSION_1), bits not offered, RO on a writable disk */
    assert_false(driver_negotiate(&f->vm, BASE, 0) & VIRTIO_STATUS_FEATURES_OK);
    assert_false(driver_negotiate(&f->vm, BASE, V1 | (1ULL << 40)) & VIRTIO_STATUS_FEATURES_OK);
    assert_false(driver_negotiate(&f->vm, BASE, V1 | VIRTIO_BIT(VIRTIO_BLK_F_RO)) &
                 VIRTIO_STATUS_FEATURES_OK);
    assert_true(driver_negotiate(&f->vm, BASE, ALL_F) & VIRTIO_STATUS_FEATURES_OK);
    /* frozen once accepted */
    wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(f, VIRTIO_MMIO_DRIVER_FEATURES, 0);
    assert_int_equal(f->blk->vdev.driver_features, ALL_F);
}

static void test_queue_before_features_ok(void **state)
{
    struct fx *f = *state;

    wr(f, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    driver_queue(&f->vm, BASE, 0, &f->r);
    assert_true(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
    assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
    /* no DRIVER_OK yet: no configuration interrupt */
    assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    assert_non_null(strstr(f->blk->vdev.reason, "before FEATURES_OK"));
}

static void test_queue_bad_rings(void **state)
{
    struct fx *f = *state;

    driver_negotiate(&f->vm, BASE, ALL_F);
    f->r.num = 6;
    driver_queue(&f->vm, BASE, 0, &f->r);
    assert_true(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
    assert_non_null(strstr(f->blk->vdev.reason, "power of two"));

    driver_negotiate(&f->vm, BASE, ALL_F); /* starts with a reset */
    assert_false(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
    f->r.num = 8;
    f->r.used = MEMSIZE - 16;
    driver_queue(&f->vm, BASE, 0, &f->r);
    assert_true(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
    assert_non_null(strstr(f->blk->vdev.reason, "outside RAM"));
}

static void test_queue_registers(void **state)
{
    struct fx *f = *state;

    driver_negotiate(&f->vm, BASE, ALL_F);
    wr(f, VIRTIO_MMIO_QUEUE_SEL, 1);
    assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NUM_MAX), 0); /* no such queue */
    wr(f, VIRTIO_MMIO_QUEUE_READY, 1);                     /* ignored */
    wr(f, VIRTIO_MMIO_QUEUE_SEL, 0);
    assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NUM_MAX), VIRTIO_BLK_QUEUE_MAX);
    driver_queue(&f->vm, BASE, 0, &f->r);
    assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 1);
    /* a live queue cannot be moved */
    wr(f, VIRTIO_MMIO_QUEUE_NUM, 4);
    wr(f, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x9000);
    assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NUM), 8);
    assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_DESC_LOW), RING_DESC_GPA);
    /* disabled, it can */
    wr(f, VIRTIO_MMIO_QUEUE_READY, 0);
    assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
    wr(f, VIRTIO_MMIO_QUEUE_NUM, 4);
    assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NUM), 4);
    assert_false(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_narrow_register_access(void **state)
{
    struct fx *f = *state;
    uint16_t v16 = 0x1234;
    uint8_t v8 = 0;

    bus_dispatch(&f->vm.mmio, BASE + VIRTIO_MMIO_MAGIC_VALUE, &v16, 2, false);
    assert_int_equal(v16, 0);
    v16 = VIRTIO_STATUS_ACKNOWLEDGE;
    bus_dispatch(&f->vm.mmio, BASE + VIRTIO_MMIO_STATUS, &v16, 2, true);
    assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), 0);
    bus_dispatch(&f->vm.mmio, BASE + VIRTIO_MMIO_STATUS + 1, &v8, 1, true);
    assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), 0);
    /* config space takes any width */
    bus_dispatch(&f->vm.mmio, BASE + VIRTIO_MMIO_CONFIG, &v8, 1, false);
    assert_int_equal(v8, 8); /* capacity, low byte */
    bus_dispatch(&f->vm.mmio, BASE + VIRTIO_MMIO_CONFIG + 0xf0, &v16, 2, false);
    assert_int_equal(v16, 0); /* past the device's config: zeros */
}

static void test_interrupts_and_event_idx(void **state)
{
    struct fx *f = *state;

    assert_true(driver_setup(&f->vm, BASE, ALL_F, &f->r) & VIRTIO_STATUS_DRIVER_OK);
    post_read(f);
    kick(f);
    assert_int_equal(ring_used_idx(&f->r), 1);
    assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_VRING);
    assert_int_equal(f->blk->vdev.irq_count, 1);
    wr(f, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_INT_VRING);
    assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    /* the driver asks for an interrupt only after entry 5: none now */
    ring_set_used_event(&f->r, 5);
    post_read(f);
    kick(f);
    assert_int_equal(ring_used_idx(&f->r), 2);
    assert_int_equal(f->blk->vdev.irq_count, 1);
    assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    /* and the device asks to be kicked for the next buffer */
    assert_int_equal(ring_avail_event(&f->r), 2);
}

static void test_driver_ok_serves_early_buffers(void **state)
{
    struct fx *f = *state;
    uint32_t st = driver_negotiate(&f->vm, BASE, ALL_F);

    driver_queue(&f->vm, BASE, 0, &f->r);
    post_read(f);
    kick(f); /* before DRIVER_OK: not served */
    assert_int_equal(ring_used_idx(&f->r), 0);
    wr(f, VIRTIO_MMIO_STATUS, st | VIRTIO_STATUS_DRIVER_OK);
    assert_int_equal(ring_used_idx(&f->r), 1);
}

static void test_stop_cont(void **state)
{
    struct fx *f = *state;

    driver_setup(&f->vm, BASE, ALL_F, &f->r);
    virtio_stop_all(&f->vm);
    post_read(f);
    kick(f);
    assert_int_equal(ring_used_idx(&f->r), 0); /* guest RAM frozen */
    assert_int_equal(f->blk->vdev.pending_kicks, 1);
    virtio_cont_all(&f->vm); /* no loop: served on the caller */
    assert_int_equal(ring_used_idx(&f->r), 1);
    assert_int_equal(f->blk->vdev.pending_kicks, 0);
}

static void test_reset(void **state)
{
    struct fx *f = *state;
    struct vm_device *dev = vm_find_device(&f->vm, "virtio-blk", 0);

    driver_setup(&f->vm, BASE, ALL_F, &f->r);
    post_read(f);
    kick(f);
    assert_int_not_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    wr(f, VIRTIO_MMIO_STATUS, 0);
    assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), 0);
    assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
    assert_int_equal(f->blk->vdev.vq[0].last_avail_idx, 0);
    /* system reset goes through the inventory */
    driver_setup(&f->vm, BASE, ALL_F, &f->r);
    assert_ptr_equal(virtio_mmio_from_device(dev), &f->blk->vdev);
    dev->reset(dev->opaque);
    assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), 0);
}

/* Save the device into a buffer, reset it, load the buffer back. Returns vmstate_load's result. */
static int save_reset_load(struct fx *f)
{
    const struct vmstate_desc *vmsd = vm_find_device(&f->vm, "virtio-blk", 0)->vmsd;
    struct stream_writer sw;
    struct stream_reader sr;
    const uint8_t *buf;
    size_t len;
    int r;

    assert_int_equal(stream_writer_init_buf(&sw, 256), 0);
    assert_int_equal(vmstate_save(&sw, vmsd, f->blk), 0);
    buf = sw_buf_data(&sw, &len);
    wr(f, VIRTIO_MMIO_STATUS, 0);
    stream_reader_init_buf(&sr, buf, len);
    r = vmstate_load(&sr, vmsd, f->blk, vmsd->version_id);
    if (!r)
        assert_int_equal(sr_remaining(&sr), 0);
    stream_reader_destroy(&sr);
    stream_writer_destroy(&sw);
    return r;
}

static void test_vmstate_round_trip(void **state)
{
    struct fx *f = *state;

    assert_int_equal(vmstate_check(vm_find_device(&f->vm, "virtio-blk", 0)->vmsd), 0);
    driver_setup(&f->vm, BASE, ALL_F, &f->r);
    post_read(f);
    kick(f);
    post_read(f);
    kick(f);
    wr(f, VIRTIO_MMIO_QUEUE_SEL, 0);
    assert_int_equal(save_reset_load(f), 0);
    assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                                                    VIRTIO_STATUS_FEATURES_OK |
                                                    VIRTIO_STATUS_DRIVER_OK);
    assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 1);
    assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_VRING);
    assert_int_equal(f->blk->vdev.vq[0].last_avail_idx, 2);
    assert_int_equal(f->blk->vdev.vq[0].used_idx, 2);
    assert_int_equal(f->blk->vdev.driver_features, ALL_F);
    /* and it keeps serving where it stopped */
    post_read(f);
    kick(f);
    assert_int_equal(ring_used_idx(&f->r), 3);
}

static void test_vmstate_hostile(void **state)
{
    struct fx *f = *state;

    driver_setup(&f->vm, BASE, ALL_F, &f->r);
    f->blk->vdev.vq[0].used_gpa = MEMSIZE; /* a ready queue outside RAM */
    assert_int_equal(save_reset_load(f), -EINVAL);

    driver_setup(&f->vm, BASE, ALL_F, &f->r);
    f->blk->vdev.vq[0].num = 512; /* larger than QueueNumMax */
    assert_int_equal(save_reset_load(f), -EINVAL);

    driver_setup(&f->vm, BASE, ALL_F, &f->r);
    f->blk->vdev.driver_features |= 1ULL << 40; /* never offered */
    assert_int_equal(save_reset_load(f), -EINVAL);

    driver_setup(&f->vm, BASE, ALL_F, &f->r);
    f->blk->vdev.isr = 0x80;
    assert_int_equal(save_reset_load(f), -EINVAL);

    driver_setup(&f->vm, BASE, ALL_F, &f->r);
    f->blk->vdev.vq[1].ready = true; /* blk has one queue */
    assert_int_equal(save_reset_load(f), -EINVAL);
    f->blk->vdev.vq[1].ready = false;

    driver_setup(&f->vm, BASE, ALL_F, &f->r);
    f->blk->capacity = 9; /* another disk */
    assert_int_equal(save_reset_load(f), -EINVAL);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_identity_and_layout),
        T(test_device_features),
        T(test_features_refused),
        T(test_queue_before_features_ok),
        T(test_queue_bad_rings),
        T(test_queue_registers),
        T(test_narrow_register_access),
        T(test_interrupts_and_event_idx),
        T(test_driver_ok_serves_early_buffers),
        T(test_stop_cont),
        T(test_reset),
        T(test_vmstate_round_trip),
        T(test_vmstate_hostile),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
