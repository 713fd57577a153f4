/* test_bus.c: address-range dispatch: registration rules, offsets, unmapped and straddling
 * accesses. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/bus.h"

/* What a region's callback saw last; reads return offset-derived bytes. */
struct rec {
    int calls;
    uint64_t offset;
    uint32_t len;
    bool is_write;
    uint8_t data[8];
};

static void rec_io(void *opaque, uint64_t offset, void *data, uint32_t len, bool is_write)
{
    struct rec *r = opaque;

    r->calls++;
    r->offset = offset;
    r->len = len;
    r->is_write = is_write;
    if (is_write) {
        memcpy(r->data, data, len);
    } else {
        for (uint32_t i = 0; i < len; i++)
            ((uint8_t *)data)[i] = (uint8_t)(0x40 + offset + i);
    }
}

static int setup_pio(void **state)
{
    static struct bus b;

    bus_init(&b, "pio", 0x10000);
    *state = &b;
    return 0;
}

static int teardown(void **state)
{
    bus_destroy(*state);
    return 0;
}

static void test_order_independence(void **state)
{
    static const uint64_t bases[3] = {0x10, 0x30, 0x0};
    static const uint64_t lens[3] = {0x10, 0x10, 0x8};
    static const int perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                    {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    struct rec recs[3];

    (void)state;
    for (int p = 0; p < 6; p++) {
        struct bus b;

        bus_init(&b, "pio", 0x10000);
        for (int k = 0; k < 3; k++) {
            int i = perms[p][k];
            assert_int_equal(bus_register(&b, bases[i], lens[i], rec_io, &recs[i], "r"), 0);
        }
        assert_int_equal(b.n, 3);
        for (unsigned i = 1; i < b.n; i++)
            assert_true(b.regions[i - 1].base < b.regions[i].base);
        for (int i = 0; i < 3; i++) {
            const struct bus_region *r;
            r = bus_find(&b, bases[i], 1);
            assert_non_null(r);
            assert_ptr_equal(r->opaque, &recs[i]);
            r = bus_find(&b, bases[i] + lens[i] - 1, 1);
            assert_non_null(r);
            assert_ptr_equal(r->opaque, &recs[i]);
        }
        /* gaps stay unmapped */
        assert_null(bus_find(&b, 0x8, 1));
        assert_null(bus_find(&b, 0x20, 1));
        assert_null(bus_find(&b, 0x40, 1));
        bus_destroy(&b);
    }
}

static void test_many_regions_shuffled(void **state)
{
    struct bus *b = *state;
    struct rec recs[100];

    /* 37 is coprime to 100: visits every slot once, out of order; forces several reallocs */
    for (unsigned k = 0, i = 0; k < 100; k++, i = (i + 37) % 100)
        assert_int_equal(bus_register(b, 0x100 + i * 0x10, 0x8, rec_io, &recs[i], "r"), 0);
    assert_int_equal(b->n, 100);
    for (unsigned i = 0; i < 100; i++) {
        const struct bus_region *r = bus_find(b, 0x100 + i * 0x10 + 7, 1);
        assert_non_null(r);
        assert_ptr_equal(r->opaque, &recs[i]);
        assert_null(bus_find(b, 0x100 + i * 0x10 + 8, 1));
    }
}

static void test_overlap_rejected(void **state)
{
    struct bus *b = *state;
    struct rec r;

    assert_int_equal(bus_register(b, 0x100, 0x10, rec_io, &r, "a"), 0);
    assert_int_equal(bus_register(b, 0x100, 0x10, rec_io, &r, "same"), -EEXIST);
    assert_int_equal(bus_register(b, 0xf8, 0x10, rec_io, &r, "head"), -EEXIST);
    assert_int_equal(bus_register(b, 0x10f, 0x10, rec_io, &r, "tail"), -EEXIST);
    assert_int_equal(bus_register(b, 0x104, 0x4, rec_io, &r, "inside"), -EEXIST);
    assert_int_equal(bus_register(b, 0x80, 0x100, rec_io, &r, "around"), -EEXIST);
    /* touching either end is fine */
    assert_int_equal(bus_register(b, 0xf0, 0x10, rec_io, &r, "below"), 0);
    assert_int_equal(bus_register(b, 0x110, 0x10, rec_io, &r, "above"), 0);
    /* a region overlapping a later one, registered after both */
    assert_int_equal(bus_register(b, 0x11f, 0x2, rec_io, &r, "late"), -EEXIST);
    assert_int_equal(b->n, 3);
}

static void test_bad_ranges_rejected(void **state)
{
    struct bus *b = *state;
    struct bus mmio;
    struct rec r;

    assert_int_equal(bus_register(b, 0x100, 0, rec_io, &r, "empty"), -EINVAL);
    assert_int_equal(bus_register(b, 0x100, 4, NULL, &r, "nofn"), -EINVAL);
    assert_int_equal(bus_register(b, 0xfffe, 4, rec_io, &r, "over"), -EINVAL);
    assert_int_equal(bus_register(b, 0x10000, 1, rec_io, &r, "at-limit"), -EINVAL);
    assert_int_equal(bus_register(b, 2, UINT64_MAX, rec_io, &r, "wrap"), -EINVAL);
    assert_int_equal(b->n, 0);
    /* ending exactly at the limit is allowed */
    assert_int_equal(bus_register(b, 0xfffc, 4, rec_io, &r, "last"), 0);

    bus_init(&mmio, "mmio", 0);
    assert_int_equal(bus_register(&mmio, UINT64_MAX - 1, 4, rec_io, &r, "wrap"), -EINVAL);
    assert_int_equal(bus_register(&mmio, UINT64_MAX - 3, 4, rec_io, &r, "top"), 0);
    assert_int_equal(bus_dispatch(&mmio, UINT64_MAX - 3, r.data, 4, false), 0);
    assert_int_equal(r.offset, 0);
    assert_int_equal(bus_dispatch(&mmio, UINT64_MAX - 1, r.data, 4, false), -EINVAL);
    bus_destroy(&mmio);
}

static void test_dispatch_offsets(void **state)
{
    struct bus *b = *state;
    struct rec a = {0}, c = {0};
    uint8_t d[8];
    uint32_t v32 = 0xdeadbeef;
    uint64_t v64;

    assert_int_equal(bus_register(b, 0x3f8, 8, rec_io, &a, "com1"), 0);
    assert_int_equal(bus_register(b, 0xf4, 4, rec_io, &c, "exit"), 0);

    d[0] = 0x5a;
    assert_int_equal(bus_dispatch(b, 0x3fb, d, 1, true), 0);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.offset, 3);
    assert_int_equal(a.len, 1);
    assert_true(a.is_write);
    assert_int_equal(a.data[0], 0x5a);

    assert_int_equal(bus_dispatch(b, 0xf4, &v32, 4, true), 0);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.offset, 0);
    assert_memory_equal(c.data, "\xef\xbe\xad\xde", 4);

    memset(d, 0, sizeof(d));
    assert_int_equal(bus_dispatch(b, 0x3fc, d, 4, false), 0);
    assert_int_equal(a.calls, 2);
    assert_int_equal(a.offset, 4);
    assert_false(a.is_write);
    assert_memory_equal(d, "\x44\x45\x46\x47", 4);

    /* the whole region in one 8-byte access */
    assert_int_equal(bus_dispatch(b, 0x3f8, &v64, 8, false), 0);
    assert_int_equal(a.offset, 0);
    assert_int_equal(a.len, 8);
    assert_true(v64 == 0x4746454443424140ULL);
    assert_int_equal(c.calls, 1);
}

static void test_straddle_is_unmapped(void **state)
{
    struct bus *b = *state;
    struct rec a = {0}, c = {0};
    uint8_t d[8];

    assert_int_equal(bus_register(b, 0x10, 0x10, rec_io, &a, "a"), 0);
    assert_int_equal(bus_register(b, 0x20, 0x10, rec_io, &c, "c"), 0);

    /* ends past region a into c: neither handles it */
    memset(d, 0, sizeof(d));
    assert_int_equal(bus_dispatch(b, 0x1e, d, 4, false), -ENOENT);
    assert_memory_equal(d, "\xff\xff\xff\xff\0\0\0\0", 8);
    /* ends past c into nothing */
    assert_int_equal(bus_dispatch(b, 0x2f, d, 2, true), -ENOENT);
    /* starts before a */
    assert_int_equal(bus_dispatch(b, 0xf, d, 2, false), -ENOENT);
    assert_int_equal(a.calls, 0);
    assert_int_equal(c.calls, 0);
    assert_null(bus_find(b, 0x1e, 4));
    /* the last byte of a alone is fine */
    assert_int_equal(bus_dispatch(b, 0x1f, d, 1, false), 0);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.offset, 0xf);
}

static void test_unmapped(void **state)
{
    struct bus *b = *state;
    struct rec a = {0};
    static const uint32_t lens[4] = {1, 2, 4, 8};
    uint8_t d[8];

    assert_int_equal(bus_register(b, 0x60, 1, rec_io, &a, "kbd"), 0);
    for (unsigned i = 0; i < 4; i++) {
        uint8_t want[8];

        memset(d, 0x11, sizeof(d));
        memset(want, 0x11, sizeof(want));
        memset(want, 0xff, lens[i]);
        assert_int_equal(bus_dispatch(b, 0x80, d, lens[i], false), -ENOENT);
        assert_memory_equal(d, want, sizeof(d));

        /* writes are dropped and leave the buffer alone */
        memset(d, 0x22, sizeof(d));
        assert_int_equal(bus_dispatch(b, 0x80, d, lens[i], true), -ENOENT);
        assert_int_equal(d[0], 0x22);
    }
    /* a 2-byte access at a 1-byte region is unmapped too */
    assert_int_equal(bus_dispatch(b, 0x60, d, 2, false), -ENOENT);
    assert_int_equal(a.calls, 0);
}

static void test_bad_lengths(void **state)
{
    struct bus *b = *state;
    struct rec a = {0};
    uint8_t d[16];
    static const uint32_t bad[] = {0, 3, 5, 6, 7, 9, 16, UINT32_MAX};

    assert_int_equal(bus_register(b, 0x0, 0x100, rec_io, &a, "all"), 0);
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(bus_dispatch(b, 0x10, d, bad[i], false), -EINVAL);
        assert_int_equal(bus_dispatch(b, 0x10, d, bad[i], true), -EINVAL);
    }
    /* past the bus limit */
    assert_int_equal(bus_dispatch(b, 0xffff, d, 2, false), -EINVAL);
    assert_int_equal(bus_dispatch(b, 0x10000, d, 1, false), -EINVAL);
    assert_int_equal(a.calls, 0);
    assert_null(bus_find(b, 0x10, 0));
}

static void test_unregister(void **state)
{
    struct bus *b = *state;
    struct rec a = {0}, c = {0};
    uint8_t d[4];

    assert_int_equal(bus_register(b, 0x10, 0x10, rec_io, &a, "a"), 0);
    assert_int_equal(bus_register(b, 0x40, 0x10, rec_io, &c, "c"), 0);
    assert_int_equal(bus_unregister(b, 0x14), -ENOENT); /* by base only */
    assert_int_equal(bus_unregister(b, 0x10), 0);
    assert_int_equal(bus_unregister(b, 0x10), -ENOENT);
    assert_int_equal(b->n, 1);
    assert_int_equal(bus_dispatch(b, 0x10, d, 1, false), -ENOENT);
    assert_int_equal(d[0], 0xff);
    assert_int_equal(bus_dispatch(b, 0x40, d, 1, false), 0);
    assert_int_equal(c.calls, 1);
    /* the freed range can be taken again, even with a different shape */
    assert_int_equal(bus_register(b, 0x8, 0x20, rec_io, &a, "a2"), 0);
    assert_int_equal(bus_dispatch(b, 0x10, d, 1, true), 0);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.offset, 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_independence),
        cmocka_unit_test_setup_teardown(test_many_regions_shuffled, setup_pio, teardown),
        cmocka_unit_test_setup_teardown(test_overlap_rejected, setup_pio, teardown),
        cmocka_unit_test_setup_teardown(test_bad_ranges_rejected, setup_pio, teardown),
        cmocka_unit_test_setup_teardown(test_dispatch_offsets, setup_pio, teardown),
        cmocka_unit_test_setup_teardown(test_straddle_is_unmapped, setup_pio, teardown),
        cmocka_unit_test_setup_teardown(test_unmapped, setup_pio, teardown),
        cmocka_unit_test_setup_teardown(test_bad_lengths, setup_pio, teardown),
        cmocka_unit_test_setup_teardown(test_unregister, setup_pio, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
