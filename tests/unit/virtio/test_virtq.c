/* test_virtq.c: the split virtqueue parser against hostile rings: loops, bad addresses, zero and
 * giant lengths, indirect tables (valid, nested, misaligned, outside RAM), avail idx jumps,
 * event idx and dirty marking. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/mem.h"
#include "ring.h"
#include "virtio/virtio.h"
#include "virtio/virtq.h"

#define NUM     8
#define MEMSIZE (64ULL << 20)
#define BUF     RING_DATA_GPA
#define TABLE   0x8000ULL /* an indirect table */
#define ALL_F   (VIRTIO_BIT(VIRTIO_F_RING_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_F_RING_EVENT_IDX))

struct fx {
    struct guest_mem mem;
    struct test_ring r;
    struct virtq q;
    struct iovec iov[64];
    struct virtq_chain c;
};

static void start(struct fx *f, uint64_t features)
{
    virtq_reset(&f->q);
    f->q.num = NUM;
    f->q.desc_gpa = f->r.desc;
    f->q.avail_gpa = f->r.avail;
    f->q.used_gpa = f->r.used;
    assert_int_equal(virtq_start(&f->q, &f->mem, 256, features), 0);
    f->q.ready = true;
}

static int setup(void **state)
{
    static struct fx f;

    memset(&f, 0, sizeof(f));
    if (gmem_init(&f.mem, MEMSIZE))
        return -1;
    ring_init(&f.r, &f.mem, NUM);
    start(&f, ALL_F);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    gmem_destroy(&f->mem);
    return 0;
}

static int pop(struct fx *f)
{
    return virtq_pop(&f->q, &f->c, f->iov, 64);
}

/* Expect a hostile ring: -EIO, the queue broken with a reason mentioning what, and it stays so. */
static void expect_broken(struct fx *f, const char *what)
{
    assert_int_equal(pop(f), -EIO);
    assert_true(f->q.broken);
    if (!strstr(f->q.error, what))
        fail_msg("reason '%s' lacks '%s'", f->q.error, what);
    assert_int_equal(pop(f), -EIO);
}

static void test_simple_chain(void **state)
{
    struct fx *f = *state;

    assert_int_equal(pop(f), 0); /* empty */
    ring_desc(&f->r, f->r.desc, 0, BUF, 16, VIRTQ_DESC_F_NEXT, 3);
    ring_desc(&f->r, f->r.desc, 3, BUF + 0x100, 100, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 5);
    ring_desc(&f->r, f->r.desc, 5, BUF + 0x200, 1, VIRTQ_DESC_F_WRITE, 0);
    ring_avail(&f->r, 0);
    assert_int_equal(pop(f), 1);
    assert_int_equal(f->c.head, 0);
    assert_int_equal(f->c.n_out, 1);
    assert_int_equal(f->c.n_in, 2);
    assert_int_equal(f->c.out_len, 16);
    assert_int_equal(f->c.in_len, 101);
    assert_ptr_equal(f->iov[0].iov_base, gmem_ptr(&f->mem, BUF, 16));
    assert_ptr_equal(f->iov[1].iov_base, gmem_ptr(&f->mem, BUF + 0x100, 100));
    assert_int_equal(f->iov[2].iov_len, 1);
    assert_int_equal(pop(f), 0);
    assert_int_equal(f->q.last_avail_idx, 1);
}

static void test_loop(void **state)
{
    struct fx *f = *state;

    ring_desc(&f->r, f->r.desc, 0, BUF, 8, VIRTQ_DESC_F_NEXT, 1);
    ring_desc(&f->r, f->r.desc, 1, BUF, 8, VIRTQ_DESC_F_NEXT, 0);
    ring_avail(&f->r, 0);
    expect_broken(f, "longer than the queue size");
}

static void test_self_loop_zero_length(void **state)
{
    struct fx *f = *state;

    /* Zero-length descriptors still count: a loop of them is caught too. */
    ring_desc(&f->r, f->r.desc, 2, BUF, 0, VIRTQ_DESC_F_NEXT, 2);
    ring_avail(&f->r, 2);
    expect_broken(f, "longer than the queue size");
}

static void test_next_out_of_range(void **state)
{
    struct fx *f = *state;

    ring_desc(&f->r, f->r.desc, 0, BUF, 8, VIRTQ_DESC_F_NEXT, NUM);
    ring_avail(&f->r, 0);
    expect_broken(f, "out of range");
}

static void test_head_out_of_range(void **state)
{
    struct fx *f = *state;

    ring_avail(&f->r, NUM);
    expect_broken(f, "head 8 out of range");
}

static void test_buffer_outside_ram(void **state)
{
    struct fx *f = *state;

    ring_desc(&f->r, f->r.desc, 0, MEMSIZE - 8, 16, 0, 0); /* straddles the end */
    ring_avail(&f->r, 0);
    expect_broken(f, "outside RAM");
}

static void test_buffer_in_mmio_hole(void **state)
{
    struct fx *f = *state;

    ring_desc(&f->r, f->r.desc, 0, 0xFEB00000ULL, 4, VIRTQ_DESC_F_WRITE, 0);
    ring_avail(&f->r, 0);
    expect_broken(f, "outside RAM");
}

static void test_buffer_address_wraps(void **state)
{
    struct fx *f = *state;

    ring_desc(&f->r, f->r.desc, 0, UINT64_MAX - 7, 0x20, 0, 0);
    ring_avail(&f->r, 0);
    expect_broken(f, "outside RAM");
}

static void test_zero_length_buffer(void **state)
{
    struct fx *f = *state;

    /* Legal: it is skipped; even its address is not looked at. */
    ring_desc(&f->r, f->r.desc, 0, BUF, 16, VIRTQ_DESC_F_NEXT, 1);
    ring_desc(&f->r, f->r.desc, 1, UINT64_MAX, 0, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
    ring_desc(&f->r, f->r.desc, 2, BUF + 0x100, 8, VIRTQ_DESC_F_WRITE, 0);
    ring_avail(&f->r, 0);
    assert_int_equal(pop(f), 1);
    assert_int_equal(f->c.n_out, 1);
    assert_int_equal(f->c.n_in, 1);
    assert_int_equal(f->c.in_len, 8);
    assert_ptr_equal(f->iov[1].iov_base, gmem_ptr(&f->mem, BUF + 0x100, 8));
}

static void test_readable_after_writable(void **state)
{
    struct fx *f = *state;

    ring_desc(&f->r, f->r.desc, 0, BUF, 0, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    ring_desc(&f->r, f->r.desc, 1, BUF, 16, 0, 0);
    ring_avail(&f->r, 0);
    expect_broken(f, "readable buffer after a writable");
}

static void test_giant_chain(void **state)
{
    struct fx *f = *state;
    uint32_t big = 48u << 20; /* 3 x 48 MiB > VIRTQ_MAX_CHAIN_BYTES; each fits in RAM */

    ring_desc(&f->r, f->r.desc, 0, BUF, big, VIRTQ_DESC_F_NEXT, 1);
    ring_desc(&f->r, f->r.desc, 1, BUF, big, VIRTQ_DESC_F_NEXT, 2);
    ring_desc(&f->r, f->r.desc, 2, BUF, big, 0, 0);
    ring_avail(&f->r, 0);
    expect_broken(f, "bytes");
}

static void test_too_many_buffers_for_caller(void **state)
{
    struct fx *f = *state;

    for (uint16_t i = 0; i < 4; i++)
        ring_desc(&f->r, f->r.desc, i, BUF, 8, i < 3 ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
    ring_avail(&f->r, 0);
    assert_int_equal(virtq_pop(&f->q, &f->c, f->iov, 3), -EIO);
    assert_non_null(strstr(f->q.error, "more than 3 buffers"));
}

static void test_avail_idx_jump(void **state)
{
    struct fx *f = *state;

    ring_desc(&f->r, f->r.desc, 0, BUF, 8, 0, 0);
    ring_set_avail_idx(&f->r, NUM); /* exactly a full ring: fine */
    assert_int_equal(virtq_avail_pending(&f->q), NUM);
    assert_int_equal(pop(f), 1);
    ring_set_avail_idx(&f->r, (uint16_t)(1 + NUM + 1)); /* one more than the ring holds */
    expect_broken(f, "ahead");
}

static void test_avail_idx_backwards(void **state)
{
    struct fx *f = *state;

    ring_desc(&f->r, f->r.desc, 0, BUF, 8, 0, 0);
    ring_avail(&f->r, 0);
    assert_int_equal(pop(f), 1);
    ring_set_avail_idx(&f->r, 0); /* the driver "takes back" a buffer */
    expect_broken(f, "ahead");
}

static void test_indirect_valid(void **state)
{
    struct fx *f = *state;

    ring_desc(&f->r, TABLE, 0, BUF, 16, VIRTQ_DESC_F_NEXT, 2);
    ring_desc(&f->r, TABLE, 2, BUF + 0x100, 512, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    ring_desc(&f->r, TABLE, 1, BUF + 0x400, 1, VIRTQ_DESC_F_WRITE, 0);
    /* WRITE on the descriptor that points to the table is ignored (spec 2.7.5.3.2). */
    ring_desc(&f->r, f->r.desc, 4, TABLE, 3 * 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
    ring_avail(&f->r, 4);
    assert_int_equal(pop(f), 1);
    assert_int_equal(f->c.head, 4);
    assert_int_equal(f->c.n_out, 1);
    assert_int_equal(f->c.n_in, 2);
    assert_int_equal(f->c.in_len, 513);
    assert_ptr_equal(f->iov[2].iov_base, gmem_ptr(&f->mem, BUF + 0x400, 1));
}

static void test_direct_then_indirect(void **state)
{
    struct fx *f = *state;

    /* "zero or more normal chained descriptors followed by a single indirect one" */
    ring_desc(&f->r, TABLE, 0, BUF + 0x100, 64, VIRTQ_DESC_F_WRITE, 0);
    ring_desc(&f->r, f->r.desc, 0, BUF, 16, VIRTQ_DESC_F_NEXT, 1);
    ring_desc(&f->r, f->r.desc, 1, TABLE, 16, VIRTQ_DESC_F_INDIRECT, 0);
    ring_avail(&f->r, 0);
    assert_int_equal(pop(f), 1);
    assert_int_equal(f->c.n_out, 1);
    assert_int_equal(f->c.n_in, 1);
}

static void test_indirect_not_negotiated(void **state)
{
    struct fx *f = *state;

    start(f, VIRTIO_BIT(VIRTIO_F_RING_EVENT_IDX));
    ring_desc(&f->r, TABLE, 0, BUF, 16, 0, 0);
    ring_desc(&f->r, f->r.desc, 0, TABLE, 16, VIRTQ_DESC_F_INDIRECT, 0);
    ring_avail(&f->r, 0);
    expect_broken(f, "not negotiated");
}

static void test_indirect_nested(void **state)
{
    struct fx *f = *state;

    ring_desc(&f->r, TABLE + 0x100, 0, BUF, 16, 0, 0);
    ring_desc(&f->r, TABLE, 0, TABLE + 0x100, 16, VIRTQ_DESC_F_INDIRECT, 0);
    ring_desc(&f->r, f->r.desc, 0, TABLE, 16, VIRTQ_DESC_F_INDIRECT, 0);
    ring_avail(&f->r, 0);
    expect_broken(f, "nested");
}

static void test_indirect_misaligned(void **state)
{
    struct fx *f = *state;

    ring_desc(&f->r, TABLE + 8, 0, BUF, 16, 0, 0);
    ring_desc(&f->r, f->r.desc, 0, TABLE + 8, 16, VIRTQ_DESC_F_INDIRECT, 0);
    ring_avail(&f->r, 0);
    expect_broken(f, "misaligned");
}

static void test_indirect_outside_ram(void **state)
{
    struct fx *f = *state;

    ring_desc(&f->r, f->r.desc, 0, MEMSIZE - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
    ring_avail(&f->r, 0);
    expect_broken(f, "outside RAM");
}

static void test_indirect_bad_length(void **state)
{
    struct fx *f = *state;

    ring_desc(&f->r, f->r.desc, 0, TABLE, 24, VIRTQ_DESC_F_INDIRECT, 0);
    ring_desc(&f->r, f->r.desc, 1, TABLE, 0, VIRTQ_DESC_F_INDIRECT, 0);
    ring_desc(&f->r, f->r.desc, 2, TABLE, 16 * (NUM + 1), VIRTQ_DESC_F_INDIRECT, 0);
    for (uint16_t head = 0; head < 3; head++) {
        start(f, ALL_F);
        f->q.last_avail_idx = f->r.avail_idx;
        ring_avail(&f->r, head);
        expect_broken(f, "indirect table length");
    }
}

static void test_indirect_with_next(void **state)
{
    struct fx *f = *state;

    ring_desc(&f->r, TABLE, 0, BUF, 16, 0, 0);
    ring_desc(&f->r, f->r.desc, 0, TABLE, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
    ring_avail(&f->r, 0);
    expect_broken(f, "with NEXT");
}

static void test_indirect_next_out_of_table(void **state)
{
    struct fx *f = *state;

    ring_desc(&f->r, TABLE, 0, BUF, 16, VIRTQ_DESC_F_NEXT, 2); /* table has 2 entries */
    ring_desc(&f->r, f->r.desc, 0, TABLE, 32, VIRTQ_DESC_F_INDIRECT, 0);
    ring_avail(&f->r, 0);
    expect_broken(f, "out of range");
}

static void test_indirect_loop(void **state)
{
    struct fx *f = *state;

    ring_desc(&f->r, TABLE, 0, BUF, 16, VIRTQ_DESC_F_NEXT, 1);
    ring_desc(&f->r, TABLE, 1, BUF, 16, VIRTQ_DESC_F_NEXT, 0);
    ring_desc(&f->r, f->r.desc, 0, TABLE, 32, VIRTQ_DESC_F_INDIRECT, 0);
    ring_avail(&f->r, 0);
    expect_broken(f, "longer than the queue size");
}

static void test_start_validation(void **state)
{
    struct fx *f = *state;
    struct virtq q;

    virtq_reset(&q);
    q.desc_gpa = f->r.desc;
    q.avail_gpa = f->r.avail;
    q.used_gpa = f->r.used;
    q.num = 6; /* not a power of two */
    assert_int_equal(virtq_start(&q, &f->mem, 256, 0), -EINVAL);
    q.num = 512; /* above the device maximum */
    assert_int_equal(virtq_start(&q, &f->mem, 256, 0), -EINVAL);
    q.num = 0;
    assert_int_equal(virtq_start(&q, &f->mem, 256, 0), -EINVAL);
    q.num = 8;
    q.desc_gpa = f->r.desc + 8; /* misaligned */
    assert_int_equal(virtq_start(&q, &f->mem, 256, 0), -EINVAL);
    q.desc_gpa = f->r.desc;
    q.used_gpa = MEMSIZE - 16; /* runs past RAM */
    assert_int_equal(virtq_start(&q, &f->mem, 256, 0), -EINVAL);
    assert_non_null(strstr(q.error, "outside RAM"));
    q.used_gpa = f->r.used;
    assert_int_equal(virtq_start(&q, &f->mem, 256, 0), 0);
    assert_false(q.broken);
}

static void test_push_marks_dirty(void **state)
{
    struct fx *f = *state;
    uint32_t id, len;

    ring_desc(&f->r, f->r.desc, 1, BUF + 0x5000, 64, VIRTQ_DESC_F_WRITE, 0);
    ring_avail(&f->r, 1);
    assert_int_equal(pop(f), 1);
    clear_dirty(&f->mem);
    memset(f->iov[0].iov_base, 0xab, 10);
    virtq_mark_written(&f->q, f->iov, 1, 10);
    assert_true(page_dirty(&f->mem, BUF + 0x5000));
    assert_false(page_dirty(&f->mem, f->r.used));
    virtq_push(&f->q, f->c.head, 10);
    assert_true(page_dirty(&f->mem, f->r.used));
    assert_int_equal(ring_used_idx(&f->r), 1);
    ring_used_elem(&f->r, 0, &id, &len);
    assert_int_equal(id, 1);
    assert_int_equal(len, 10);
}

static void test_fill_flush_unpop(void **state)
{
    struct fx *f = *state;
    uint32_t id, len;

    for (uint16_t i = 0; i < 3; i++) {
        ring_desc(&f->r, f->r.desc, i, BUF + 0x100 * i, 64, VIRTQ_DESC_F_WRITE, 0);
        ring_avail(&f->r, i);
    }
    assert_int_equal(pop(f), 1);
    assert_int_equal(pop(f), 1);
    assert_int_equal(pop(f), 1);
    virtq_unpop(&f->q, 2); /* only the first was needed */
    virtq_fill(&f->q, 0, 0, 64);
    assert_int_equal(ring_used_idx(&f->r), 0); /* not visible before the flush */
    virtq_flush(&f->q, 1);
    assert_int_equal(ring_used_idx(&f->r), 1);
    assert_int_equal(pop(f), 1);
    assert_int_equal(f->c.head, 1); /* given back, popped again */
    ring_used_elem(&f->r, 0, &id, &len);
    assert_int_equal(id, 0);
}

static void test_event_idx(void **state)
{
    struct fx *f = *state;

    for (uint16_t i = 0; i < 4; i++) {
        ring_desc(&f->r, f->r.desc, i, BUF, 8, VIRTQ_DESC_F_WRITE, 0);
        ring_avail(&f->r, i);
    }
    /* avail_event tells the driver where to kick next */
    assert_int_equal(pop(f), 1);
    virtq_enable_kicks(&f->q);
    assert_int_equal(ring_avail_event(&f->r), 1);

    ring_set_used_event(&f->r, 0);
    virtq_push(&f->q, 0, 8);
    assert_true(virtq_should_notify(&f->q)); /* first one after start: always */
    assert_int_equal(pop(f), 1);
    virtq_push(&f->q, 1, 8);
    assert_false(virtq_should_notify(&f->q)); /* driver asked for entry 0 only */
    ring_set_used_event(&f->r, 2);
    assert_int_equal(pop(f), 1);
    virtq_push(&f->q, 2, 8);
    assert_true(virtq_should_notify(&f->q)); /* entry 2 used now */
    assert_int_equal(pop(f), 1);
    virtq_fill(&f->q, 0, 3, 8);
    virtq_flush(&f->q, 1);
    ring_set_used_event(&f->r, 10); /* far ahead: no interrupt */
    assert_false(virtq_should_notify(&f->q));
}

static void test_no_event_idx_flags(void **state)
{
    struct fx *f = *state;

    start(f, 0);
    ring_desc(&f->r, f->r.desc, 0, BUF, 8, VIRTQ_DESC_F_WRITE, 0);
    ring_avail(&f->r, 0);
    assert_int_equal(pop(f), 1);
    virtq_push(&f->q, 0, 8);
    ring_set_avail_flags(&f->r, VIRTQ_AVAIL_F_NO_INTERRUPT);
    assert_false(virtq_should_notify(&f->q));
    ring_set_avail_flags(&f->r, 0);
    assert_true(virtq_should_notify(&f->q));
    virtq_enable_kicks(&f->q);
    assert_int_equal(ring_avail_event(&f->r), 0); /* not written without event idx */
}

static void test_post_load(void **state)
{
    struct fx *f = *state;
    struct virtq q = f->q;

    q.used_gpa = MEMSIZE; /* a hostile stream */
    assert_int_equal(virtq_post_load(&q, &f->mem, 256, ALL_F), -EINVAL);
    q.ready = false; /* not ready: nothing to check */
    assert_int_equal(virtq_post_load(&q, &f->mem, 256, ALL_F), 0);
    q = f->q;
    q.last_avail_idx = 5;
    assert_int_equal(virtq_post_load(&q, &f->mem, 256, ALL_F), 0);
    assert_true(q.ready);
    assert_int_equal(q.last_avail_idx, 5);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_simple_chain),
        T(test_loop),
        T(test_self_loop_zero_length),
        T(test_next_out_of_range),
        T(test_head_out_of_range),
        T(test_buffer_outside_ram),
        T(test_buffer_in_mmio_hole),
        T(test_buffer_address_wraps),
        T(test_zero_length_buffer),
        T(test_readable_after_writable),
        T(test_giant_chain),
        T(test_too_many_buffers_for_caller),
        T(test_avail_idx_jump),
        T(test_avail_idx_backwards),
        T(test_indirect_valid),
        T(test_direct_then_indirect),
        T(test_indirect_not_negotiated),
        T(test_indirect_nested),
        T(test_indirect_misaligned),
        T(test_indirect_outside_ram),
        T(test_indirect_bad_length),
        T(test_indirect_with_next),
        T(test_indirect_next_out_of_table),
        T(test_indirect_loop),
        T(test_start_validation),
        T(test_push_marks_dirty),
        T(test_fill_flush_unpop),
        T(test_event_idx),
        T(test_no_event_idx_flags),
        T(test_post_load),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
