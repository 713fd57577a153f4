/* test_blk.c: virtio-blk requests through the transport: reads and writes against the
 * image, bad sectors, unaligned lengths, read-only disks, FLUSH, GET_ID, unknown types, and
 * malformed chains (short header, missing or zero-length status byte). */
#include <errno.h>
#include <fcntl.h>
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
#include "virtio/iov.h"
#include "virtio/virtio.h"
#include "virtio/virtio_mmio.h"

#define SECTORS 64
#define HDR     0x20000ULL
#define DATA    0x21000ULL
#define STATUS  0x30000ULL
#define BASE    VIRTIO_MMIO_BASE
#define FEATURES                                                                                   \
    (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_RING_INDIRECT_DESC) |                    \
     VIRTIO_BIT(VIRTIO_F_RING_EVENT_IDX) | VIRTIO_BIT(VIRTIO_BLK_F_FLUSH))

struct fx {
    struct vm vm;
    struct test_ring r;
    char path[64];
    int fd;
    struct virtio_blk *blk;
};

static int make_image(struct fx *f)
{
    uint8_t sector[VIRTIO_BLK_SECTOR];

    snprintf(f->path, sizeof(f->path), "/tmp/tandem-blk-test-XXXXXX");
    f->fd = mkstemp(f->path);
    if (f->fd < 0)
        return -1;
    for (int i = 0; i < SECTORS; i++) {
        memset(sector, i, sizeof(sector));
        if (write(f->fd, sector, sizeof(sector)) != (ssize_t)sizeof(sector))
            return -1;
    }
    return 0;
}

static int open_disk(struct fx *f, bool ro)
{
    char spec[128], err[256] = "";

    snprintf(spec, sizeof(spec), "path=%s%s", f->path, ro ? ",readonly=on" : "");
    if (virtio_blk_create(&f->vm, spec, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    f->blk = virtio_blk_find(&f->vm, 0);
    ring_init(&f->r, &f->vm.mem, 8);
    if (!(driver_setup(&f->vm, BASE, FEATURES, &f->r) & VIRTIO_STATUS_DRIVER_OK))
        return -1;
    return 0;
}

static int setup_common(void **state, bool ro)
{
    static struct fx f;

    memset(&f, 0, sizeof(f));
    if (fake_vm_init(&f.vm, 16ULL << 20) || make_image(&f) || open_disk(&f, ro))
        return -1;
    *state = &f;
    return 0;
}

static int setup(void **state)
{
    return setup_common(state, false);
}

static int setup_ro(void **state)
{
    return setup_common(state, true);
}

static int teardown(void **state)
{
    struct fx *f = *state;

    fake_vm_destroy(&f->vm);
    close(f->fd);
    unlink(f->path);
    return 0;
}

static void notify(struct fx *f)
{
    mmio_wr(&f->vm, BASE + VIRTIO_MMIO_QUEUE_NOTIFY, 0);
}

/* Submit header + optional data + 1-byte status as three descriptors; returns the status byte. */
static uint8_t request(struct fx *f, uint32_t type, uint64_t sector, uint32_t len, bool data_in)
{
    uint8_t st = 0xee;
    uint16_t next = len ? 1 : 2;

    put32(&f->vm.mem, HDR, type);
    put32(&f->vm.mem, HDR + 4, 0);
    put64(&f->vm.mem, HDR + 8, sector);
    gmem_write(&f->vm.mem, STATUS, &st, 1);
    ring_desc(&f->r, f->r.desc, 0, HDR, 16, VIRTQ_DESC_F_NEXT, next);
    ring_desc(&f->r, f->r.desc, 1, DATA, len,
              VIRTQ_DESC_F_NEXT | (data_in ? VIRTQ_DESC_F_WRITE : 0), 2);
    ring_desc(&f->r, f->r.desc, 2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
    ring_avail(&f->r, 0);
    notify(f);
    assert_int_equal(ring_used_idx(&f->r), f->r.avail_idx); /* served synchronously */
    gmem_read(&f->vm.mem, STATUS, &st, 1);
    return st;
}

static uint32_t used_len(struct fx *f)
{
    uint32_t id, len;

    ring_used_elem(&f->r, (uint16_t)(ring_used_idx(&f->r) - 1), &id, &len);
    return len;
}

static void test_read(void **state)
{
    struct fx *f = *state;
    uint8_t *p = gmem_ptr(&f->vm.mem, DATA, 2 * VIRTIO_BLK_SECTOR);

    clear_dirty(&f->vm.mem);
    assert_int_equal(request(f, VIRTIO_BLK_T_IN, 5, 2 * VIRTIO_BLK_SECTOR, true), VIRTIO_BLK_S_OK);
    assert_int_equal(p[0], 5);
    assert_int_equal(p[VIRTIO_BLK_SECTOR - 1], 5);
    assert_int_equal(p[VIRTIO_BLK_SECTOR], 6);
    assert_int_equal(used_len(f), 2 * VIRTIO_BLK_SECTOR + 1);
    /* data, status byte and used ring were written by the device: all dirty */
    assert_true(page_dirty(&f->vm.mem, DATA));
    assert_true(page_dirty(&f->vm.mem, STATUS));
    assert_true(page_dirty(&f->vm.mem, f->r.used));
    assert_false(page_dirty(&f->vm.mem, HDR));
    assert_int_equal(f->blk->vdev.isr & VIRTIO_INT_VRING, VIRTIO_INT_VRING);
}

static void test_write_then_read_back(void **state)
{
    struct fx *f = *state;
    uint8_t buf[VIRTIO_BLK_SECTOR];

    memset(gmem_ptr(&f->vm.mem, DATA, VIRTIO_BLK_SECTOR), 0x5a, VIRTIO_BLK_SECTOR);
    assert_int_equal(request(f, VIRTIO_BLK_T_OUT, SECTORS - 1, VIRTIO_BLK_SECTOR, false),
                     VIRTIO_BLK_S_OK);
    assert_int_equal(used_len(f), 1);
    /* acknowledged means on the image already */
    assert_int_equal(pread(f->fd, buf, sizeof(buf), (SECTORS - 1) * VIRTIO_BLK_SECTOR),
                     sizeof(buf));
    assert_int_equal(buf[0], 0x5a);
    assert_int_equal(buf[VIRTIO_BLK_SECTOR - 1], 0x5a);
    assert_int_equal(request(f, VIRTIO_BLK_T_FLUSH, 0, 0, false), VIRTIO_BLK_S_OK);
    assert_int_equal(f->blk->nflushes, 1);
}

static void test_write_through_without_flush(void **state)
{
    struct fx *f = *state;
    uint8_t buf[4];

    /* A driver that did not take FLUSH gets writes that are durable when acknowledged. */
    ring_init(&f->r, &f->vm.mem, 8);
    assert_true(driver_setup(&f->vm, BASE, VIRTIO_BIT(VIRTIO_F_VERSION_1), &f->r) &
                VIRTIO_STATUS_DRIVER_OK);
    memset(gmem_ptr(&f->vm.mem, DATA, VIRTIO_BLK_SECTOR), 0x33, VIRTIO_BLK_SECTOR);
    assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 4, VIRTIO_BLK_SECTOR, false), VIRTIO_BLK_S_OK);
    assert_int_equal(pread(f->fd, buf, sizeof(buf), 4 * VIRTIO_BLK_SECTOR), sizeof(buf));
    assert_int_equal(buf[0], 0x33);
    assert_int_equal(f->blk->nwrites, 1);
}

static void test_bad_sectors(void **state)
{
    struct fx *f = *state;

    assert_int_equal(request(f, VIRTIO_BLK_T_IN, SECTORS, VIRTIO_BLK_SECTOR, true),
                     VIRTIO_BLK_S_IOERR);
    assert_int_equal(request(f, VIRTIO_BLK_T_IN, SECTORS - 1, 2 * VIRTIO_BLK_SECTOR, true),
                     VIRTIO_BLK_S_IOERR);
    assert_int_equal(request(f, VIRTIO_BLK_T_OUT, UINT64_MAX, VIRTIO_BLK_SECTOR, false),
                     VIRTIO_BLK_S_IOERR);
    assert_int_equal(
        request(f, VIRTIO_BLK_T_OUT, UINT64_MAX / VIRTIO_BLK_SECTOR + 1, VIRTIO_BLK_SECTOR, false),
        VIRTIO_BLK_S_IOERR); /* sector * 512 would wrap */
    assert_int_equal(request(f, VIRTIO_BLK_T_IN, 0, 100, true), VIRTIO_BLK_S_IOERR);
    assert_int_equal(f->blk->nerrors, 5);
    /* the device is still fine */
    assert_int_equal(request(f, VIRTIO_BLK_T_IN, SECTORS - 1, VIRTIO_BLK_SECTOR, true),
                     VIRTIO_BLK_S_OK);
    assert_false(f->blk->vdev.status & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_get_id_and_unknown(void **state)
{
    struct fx *f = *state;
    char id[VIRTIO_BLK_ID_BYTES + 1] = "";

    assert_int_equal(request(f, VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES, true),
                     VIRTIO_BLK_S_OK);
    gmem_read(&f->vm.mem, DATA, id, VIRTIO_BLK_ID_BYTES);
    assert_string_equal(id, "tandem-disk0");
    assert_int_equal(request(f, 99, 0, 0, false), VIRTIO_BLK_S_UNSUPP);
}

static void test_readonly(void **state)
{
    struct fx *f = *state;
    uint8_t buf[4];

    mmio_wr(&f->vm, BASE + VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    assert_true(mmio_rd(&f->vm, BASE + VIRTIO_MMIO_DEVICE_FEATURES) & VIRTIO_BIT(VIRTIO_BLK_F_RO));
    memset(gmem_ptr(&f->vm.mem, DATA, VIRTIO_BLK_SECTOR), 0x77, VIRTIO_BLK_SECTOR);
    assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 3, VIRTIO_BLK_SECTOR, false), VIRTIO_BLK_S_IOERR);
    assert_int_equal(pread(f->fd, buf, sizeof(buf), 3 * VIRTIO_BLK_SECTOR), sizeof(buf));
    assert_int_equal(buf[0], 3); /* untouched */
    assert_int_equal(request(f, VIRTIO_BLK_T_IN, 3, VIRTIO_BLK_SECTOR, true), VIRTIO_BLK_S_OK);
}

static void test_config(void **state)
{
    struct fx *f = *state;
    uint64_t cap = 0;

    bus_dispatch(&f->vm.mmio, BASE + VIRTIO_MMIO_CONFIG + VIRTIO_BLK_CFG_CAPACITY, &cap, 8, false);
    assert_int_equal(cap, SECTORS);
    assert_int_equal(mmio_rd(&f->vm, BASE + VIRTIO_MMIO_CONFIG + VIRTIO_BLK_CFG_SEG_MAX),
                     VIRTIO_BLK_SEG_MAX);
    assert_int_equal(mmio_rd(&f->vm, BASE + VIRTIO_MMIO_CONFIG + VIRTIO_BLK_CFG_BLK_SIZE),
                     VIRTIO_BLK_SECTOR);
    mmio_wr(&f->vm, BASE + VIRTIO_MMIO_CONFIG, 0x1234); /* read-only: ignored */
    assert_int_equal(mmio_rd(&f->vm, BASE + VIRTIO_MMIO_CONFIG), SECTORS);
}

/* Malformed chains cannot be answered: NEEDS_RESET, config interrupt, queue ignored after. */
static void expect_needs_reset(struct fx *f, const char *what)
{
    uint16_t used = ring_used_idx(&f->r);

    notify(f);
    assert_true(mmio_rd(&f->vm, BASE + VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
    assert_true(mmio_rd(&f->vm, BASE + VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_INT_CONFIG);
    if (!strstr(f->blk->vdev.reason, what))
        fail_msg("reason '%s' lacks '%s'", f->blk->vdev.reason, what);
    assert_int_equal(ring_used_idx(&f->r), used);
    /* a good request now is not served */
    ring_desc(&f->r, f->r.desc, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 2);
    ring_desc(&f->r, f->r.desc, 2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
    ring_avail(&f->r, 0);
    notify(f);
    assert_int_equal(ring_used_idx(&f->r), used);
    /* until the driver resets and starts over */
    ring_init(&f->r, &f->vm.mem, 8);
    assert_true(driver_setup(&f->vm, BASE, FEATURES, &f->r) & VIRTIO_STATUS_DRIVER_OK);
    assert_false(mmio_rd(&f->vm, BASE + VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
    assert_int_equal(request(f, VIRTIO_BLK_T_IN, 0, VIRTIO_BLK_SECTOR, true), VIRTIO_BLK_S_OK);
}

static void test_no_status_byte(void **state)
{
    struct fx *f = *state;

    ring_desc(&f->r, f->r.desc, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
    ring_desc(&f->r, f->r.desc, 1, DATA, VIRTIO_BLK_SECTOR, 0, 0);
    ring_avail(&f->r, 0);
    expect_needs_reset(f, "no writable status byte");
}

static void test_zero_length_status(void **state)
{
    struct fx *f = *state;

    ring_desc(&f->r, f->r.desc, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
    ring_desc(&f->r, f->r.desc, 1, STATUS, 0, VIRTQ_DESC_F_WRITE, 0);
    ring_avail(&f->r, 0);
    expect_needs_reset(f, "no writable status byte");
}

static void test_short_header(void **state)
{
    struct fx *f = *state;

    ring_desc(&f->r, f->r.desc, 0, HDR, 8, VIRTQ_DESC_F_NEXT, 1);
    ring_desc(&f->r, f->r.desc, 1, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
    ring_avail(&f->r, 0);
    expect_needs_reset(f, "header shorter");
}

static void test_hostile_ring(void **state)
{
    struct fx *f = *state;

    ring_desc(&f->r, f->r.desc, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 0); /* loops */
    ring_avail(&f->r, 0);
    expect_needs_reset(f, "queue 0: head 0: chain longer");
}

/* Parsing alone: a header split over two buffers, data and status sharing a buffer. */
static void test_parse_fragments(void **state)
{
    uint8_t hdr[16] = {VIRTIO_BLK_T_IN, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0};
    uint8_t in[VIRTIO_BLK_SECTOR + 1];
    struct iovec iov[3] = {{hdr, 5}, {hdr + 5, 11}, {in, sizeof(in)}};
    struct virtq_chain c = {.n_out = 2, .n_in = 1, .out_len = 16, .in_len = sizeof(in)};
    static struct virtio_blk_req req;
    const char *why = NULL;

    (void)state;
    assert_int_equal(virtio_blk_parse(iov, &c, &req, &why), 0);
    assert_int_equal(req.type, VIRTIO_BLK_T_IN);
    assert_int_equal(req.sector, 7);
    assert_int_equal(req.out_len, 0);
    assert_int_equal(req.in_len, VIRTIO_BLK_SECTOR);
    assert_int_equal(req.n_in, 1);
    assert_ptr_equal(req.status.iov_base, in + VIRTIO_BLK_SECTOR);
    c.out_len = 15;
    iov[1].iov_len = 10;
    assert_int_equal(virtio_blk_parse(iov, &c, &req, &why), -EINVAL);
    assert_non_null(why);
}

static int hook_calls;
static uint64_t hook_off, hook_len;

static int hook(void *opaque, uint64_t off, const struct iovec *iov, unsigned n, uint64_t len)
{
    hook_calls++;
    hook_off = off;
    hook_len = len;
    assert_int_equal(iov_size(iov, n), len);
    return *(int *)opaque;
}

static void test_write_hook(void **state)
{
    struct fx *f = *state;
    static int ret;
    struct blk_write_hook h = {.write = hook, .opaque = &ret};

    virtio_blk_set_write_hook(f->blk, &h);
    ret = 0;
    assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 2, 2 * VIRTIO_BLK_SECTOR, false),
                     VIRTIO_BLK_S_OK);
    assert_int_equal(hook_calls, 1);
    assert_int_equal(hook_off, 2 * VIRTIO_BLK_SECTOR);
    assert_int_equal(hook_len, 2 * VIRTIO_BLK_SECTOR);
    /* reads and rejected writes are not forwarded */
    assert_int_equal(request(f, VIRTIO_BLK_T_IN, 2, VIRTIO_BLK_SECTOR, true), VIRTIO_BLK_S_OK);
    assert_int_equal(request(f, VIRTIO_BLK_T_OUT, SECTORS, VIRTIO_BLK_SECTOR, false),
                     VIRTIO_BLK_S_IOERR);
    assert_int_equal(hook_calls, 1);
    /* a failing hook fails the request */
    ret = -EPIPE;
    assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 2, VIRTIO_BLK_SECTOR, false), VIRTIO_BLK_S_IOERR);
    virtio_blk_set_write_hook(f->blk, NULL);
    assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 2, VIRTIO_BLK_SECTOR, false), VIRTIO_BLK_S_OK);
    assert_int_equal(hook_calls, 2);
}

static void test_bad_specs(void **state)
{
    struct fx *f = *state;
    char err[256];
    char spec[128];

    assert_int_equal(virtio_blk_create(&f->vm, "", err, sizeof(err)), -EINVAL);
    assert_int_equal(virtio_blk_create(&f->vm, "readonly=on", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "path=FILE is required"));
    assert_int_equal(virtio_blk_create(&f->vm, "path=/x,bogus=1", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "unknown key 'bogus'"));
    assert_int_equal(virtio_blk_create(&f->vm, "path=/x,readonly=maybe", err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(virtio_blk_create(&f->vm, "path=/nonexistent/disk", err, sizeof(err)),
                     -ENOENT);
    /* the image is locked by the first disk */
    snprintf(spec, sizeof(spec), "path=%s", f->path);
    assert_int_equal(virtio_blk_create(&f->vm, spec, err, sizeof(err)), -EWOULDBLOCK);
    assert_int_equal(f->vm.ndevices, 1);
}

int main(void)
{
#define T(fn)  cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define TR(fn) cmocka_unit_test_setup_teardown(fn, setup_ro, teardown)
    const struct CMUnitTest tests[] = {
        T(test_read),
        T(test_write_then_read_back),
        T(test_write_through_without_flush),
        T(test_bad_sectors),
        T(test_get_id_and_unknown),
        TR(test_readonly),
        T(test_config),
        T(test_no_status_byte),
        T(test_zero_length_status),
        T(test_short_header),
        T(test_hostile_ring),
        cmocka_unit_test(test_parse_fragments),
        T(test_write_hook),
        T(test_bad_specs),
    };
#undef T
#undef TR
    return cmocka_run_group_tests(tests, NULL, NULL);
}
