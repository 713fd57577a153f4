/* test_ram.c: RAM section wire format, round trips with zero pages, and hostile page runs. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "migration/be.h"
#include "migration/ram.h"
#include "sample_state.h"

#define PG  SAMPLE_RAM_PAGE
#define NPG SAMPLE_RAM_PAGES

struct fixture {
    struct sample_world w; /* receiver */
    uint8_t src[SAMPLE_RAM_SIZE];
    struct ram_source rs;
    struct stream_writer sw;
    uint64_t loaded_bytes;
};

static int count_loaded(void *opaque, uint64_t offset, uint64_t len)
{
    struct fixture *f = opaque;

    assert_true(offset % f->w.ram.page_size == 0 && offset + len <= SAMPLE_RAM_SIZE);
    f->loaded_bytes += len;
    return 0;
}

/* An observer that cannot record the second run it is told about. */
static int refuse_second(void *opaque, uint64_t offset, uint64_t len)
{
    struct fixture *f = opaque;

    (void)offset;
    if (f->loaded_bytes)
        return -ENOMEM;
    f->loaded_bytes += len;
    return 0;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    sample_world_init(&f->w);
    f->w.ram.loaded = count_loaded;
    f->w.ram.loaded_opaque = f;
    f->rs = (struct ram_source){.host = f->src, .ram_size = SAMPLE_RAM_SIZE, .page_size = PG};
    if (stream_writer_init_buf(&f->sw, 0) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    stream_writer_destroy(&f->sw);
    free(f);
    return 0;
}

/* Loads header + one segment of the fixture writer's bytes with a loader that knows only RAM. */
static int load(struct fixture *f, struct stream_loader *keep)
{
    struct stream_loader ld;
    struct stream_reader sr;
    const uint8_t *data;
    size_t len;
    int r;

    if (!keep) {
        assert_int_equal(stream_loader_init(&ld, &f->w.reg[SAMPLE_REG_RAM], 1), 0);
        keep = &ld;
    }
    data = sw_buf_data(&f->sw, &len);
    stream_reader_init_buf(&sr, data, len);
    r = stream_load_header(&sr);
    if (r == 0)
        r = stream_load_segment(keep, &sr);
    if (keep == &ld)
        stream_loader_destroy(&ld);
    return r;
}

/* Page i of the source: non-zero pattern, or zero for every third page. */
static void fill_source(struct fixture *f)
{
    for (uint32_t i = 0; i < NPG; i++) {
        if (i % 3 == 1)
            memset(f->src + (size_t)i * PG, 0, PG);
        else
            memset(f->src + (size_t)i * PG, 0x40 + (int)i, PG);
    }
    f->src[5 * PG + PG - 1] = 0; /* mostly-zero pages still count as data */
    memset(f->src + 2 * PG, 0, PG - 1);
    f->src[2 * PG + PG - 1] = 1; /* a page zero except its last byte is data */
}

static void test_wire_layout(void **state)
{
    struct fixture *f = *state;
    const uint8_t *d;
    size_t len;

    /* pages 0, 3: data; 1, 2: zero */
    memset(f->src, 0x11, PG);
    memset(f->src + 3 * PG, 0x33, PG);
    stream_put_header(&f->sw);
    ram_save_open(&f->sw, STREAM_TAG_SECTION_START, 7, "ram", 0, &f->rs);
    ram_save_pages(&f->sw, &f->rs, 0, 4);
    ram_save_close(&f->sw, 7, RAM_END_ROUND);
    assert_int_equal(stream_put_eof(&f->sw), 0);
    d = sw_buf_data(&f->sw, &len);

    /* clang-format off */
    static const uint8_t head[] = {
        0x01, 0x00, 0x00, 0x00, 0x07, 3, 'r', 'a', 'm',          /* START, id 7, "ram" */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,          /* instance 0, version 1 */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,          /* ram_size 64 KiB */
        0x00, 0x00, 0x10, 0x00,                                  /* page_size 4096 */
        0x01, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0, 0, 0, 1,          /* PAGES @0x0000 x1 */
    };
    static const uint8_t mid[] = {
        0x02, 0, 0, 0, 0, 0, 0, 0x10, 0x00, 0, 0, 0, 2,          /* ZERO  @0x1000 x2 */
        0x01, 0, 0, 0, 0, 0, 0, 0x30, 0x00, 0, 0, 0, 1,          /* PAGES @0x3000 x1 */
    };
    static const uint8_t tail[] = {
        0x03, 0x01,                                              /* END, flags ROUND */
        0x7e, 0x00, 0x00, 0x00, 0x07,                            /* FOOTER, id 7 */
        0x00,                                                    /* EOF (crc follows) */
    };
    /* clang-format on */
    size_t off = 8;

    assert_int_equal(len, 8 + sizeof(head) + PG + sizeof(mid) + PG + sizeof(tail) + 4);
    assert_memory_equal(d + off, head, sizeof(head));
    off += sizeof(head);
    assert_memory_equal(d + off, f->src, PG);
    off += PG;
    assert_memory_equal(d + off, mid, sizeof(mid));
    off += sizeof(mid);
    assert_memory_equal(d + off, f->src + 3 * PG, PG);
    off += PG;
    assert_memory_equal(d + off, tail, sizeof(tail));
}

static void test_round_trip_with_zero_pages(void **state)
{
    struct fixture *f = *state;
    struct stream_loader ld;

    fill_source(f);
    memset(f->w.ram_host, 0xee, SAMPLE_RAM_SIZE); /* stale cache content everywhere */
    assert_int_equal(stream_loader_init(&ld, &f->w.reg[SAMPLE_REG_RAM], 1), 0);

    /* segment 1: START with the first half */
    stream_put_header(&f->sw);
    ram_save_open(&f->sw, STREAM_TAG_SECTION_START, 1, "ram", 0, &f->rs);
    ram_save_pages(&f->sw, &f->rs, 0, NPG / 2);
    ram_save_close(&f->sw, 1, 0);
    assert_int_equal(stream_put_eof(&f->sw), 0);
    assert_int_equal(load(f, &ld), 0);
    assert_int_equal(f->w.ram.rounds, 0);
    assert_memory_equal(f->w.ram_host, f->src, SAMPLE_RAM_SIZE / 2);

    /* segment 2 (a later checkpoint): PART with the second half, round complete */
    sw_buf_reset(&f->sw);
    stream_put_header(&f->sw);
    ram_save_open(&f->sw, STREAM_TAG_SECTION_PART, 1, NULL, 0, &f->rs);
    ram_save_pages(&f->sw, &f->rs, NPG / 2, NPG / 2);
    ram_save_close(&f->sw, 1, RAM_END_ROUND);
    assert_int_equal(stream_put_eof(&f->sw), 0);
    assert_int_equal(load(f, &ld), 0);
    assert_memory_equal(f->w.ram_host, f->src, SAMPLE_RAM_SIZE);
    assert_int_equal(f->w.ram.rounds, 1);
    assert_int_equal(f->w.ram.zero_pages, 5); /* pages 1, 4, 7, 10, 13 */
    assert_int_equal(f->w.ram.data_pages, NPG - 5);
    assert_int_equal(f->loaded_bytes, SAMPLE_RAM_SIZE);

    /* segment 3: END closes the section; a PART after it is refused */
    sw_buf_reset(&f->sw);
    stream_put_header(&f->sw);
    ram_save_open(&f->sw, STREAM_TAG_SECTION_END, 1, NULL, 0, &f->rs);
    ram_save_close(&f->sw, 1, 0);
    assert_int_equal(stream_put_eof(&f->sw), 0);
    assert_int_equal(load(f, &ld), 0);
    sw_buf_reset(&f->sw);
    stream_put_header(&f->sw);
    ram_save_open(&f->sw, STREAM_TAG_SECTION_PART, 1, NULL, 0, &f->rs);
    ram_save_close(&f->sw, 1, 0);
    assert_int_equal(stream_put_eof(&f->sw), 0);
    assert_int_equal(load(f, &ld), -EBADMSG);
    stream_loader_destroy(&ld);
}

/* An observer that cannot record a run (the COLO cache out of memory) fails the load with its
 * error: a segment is never accepted with a run its observer does not know about. */
static void test_observer_error_fails_load(void **state)
{
    struct fixture *f = *state;

    fill_source(f); /* data and zero pages alternate: several runs */
    f->w.ram.loaded = refuse_second;
    stream_put_header(&f->sw);
    ram_save_open(&f->sw, STREAM_TAG_SECTION_START, 1, "ram", 0, &f->rs);
    ram_save_pages(&f->sw, &f->rs, 0, NPG);
    ram_save_close(&f->sw, 1, RAM_END_ROUND);
    assert_int_equal(stream_put_eof(&f->sw), 0);
    assert_int_equal(load(f, NULL), -ENOMEM);
    assert_int_equal(f->w.ram.rounds, 0);
}

/* A START payload followed by one hand-made run record, END, footer, EOF. */
static int load_run(struct fixture *f, uint8_t rec, uint64_t offset, uint32_t npages,
                    size_t data_bytes)
{
    static uint8_t zeros[2 * PG];

    sw_buf_reset(&f->sw);
    stream_put_header(&f->sw);
    ram_save_open(&f->sw, STREAM_TAG_SECTION_START, 1, "ram", 0, &f->rs);
    sw_put_u8(&f->sw, rec);
    sw_put_u64(&f->sw, offset);
    sw_put_u32(&f->sw, npages);
    sw_put_bytes(&f->sw, zeros, data_bytes);
    ram_save_close(&f->sw, 1, 0);
    assert_int_equal(stream_put_eof(&f->sw), 0);
    return load(f, NULL);
}

static void test_hostile_runs(void **state)
{
    struct fixture *f = *state;
    uint64_t size = SAMPLE_RAM_SIZE;

    assert_int_equal(load_run(f, RAM_REC_PAGES, size - PG, 1, PG), 0);   /* the last page: ok */
    assert_int_equal(load_run(f, RAM_REC_ZERO, 0, NPG, 0), 0);           /* all of RAM: ok */
    assert_int_equal(load_run(f, RAM_REC_PAGES, size, 1, PG), -EBADMSG); /* just past the end */
    assert_int_equal(load_run(f, RAM_REC_ZERO, size, 1, 0), -EBADMSG);
    assert_int_equal(load_run(f, RAM_REC_PAGES, size - PG, 2, 2 * PG), -EBADMSG); /* straddles */
    assert_int_equal(load_run(f, RAM_REC_ZERO, 0, NPG + 1, 0), -EBADMSG);
    assert_int_equal(load_run(f, RAM_REC_PAGES, 100, 1, PG), -EBADMSG); /* misaligned */
    assert_int_equal(load_run(f, RAM_REC_ZERO, PG, 0, 0), -EBADMSG);    /* empty run */
    /* offset + length wraps around 2^64 */
    assert_int_equal(load_run(f, RAM_REC_ZERO, UINT64_MAX - PG + 1, 2, 0), -EBADMSG);
    assert_int_equal(load_run(f, RAM_REC_ZERO, 0, UINT32_MAX, 0), -EBADMSG);
    assert_int_equal(load_run(f, RAM_REC_INVALID, 0, 1, 0), -EBADMSG);
    assert_int_equal(load_run(f, 0x7f, 0, 1, 0), -EBADMSG);
    /* claims more data than the stream holds */
    assert_int_equal(load_run(f, RAM_REC_PAGES, 0, 2, PG), -ENODATA);
}

static void test_geometry_and_flags(void **state)
{
    struct fixture *f = *state;
    struct ram_source other = f->rs;

    other.ram_size *= 2;
    stream_put_header(&f->sw);
    ram_save_open(&f->sw, STREAM_TAG_SECTION_START, 1, "ram", 0, &other);
    ram_save_close(&f->sw, 1, 0);
    stream_put_eof(&f->sw);
    assert_int_equal(load(f, NULL), -EBADMSG); /* sender's RAM is bigger than ours */

    sw_buf_reset(&f->sw);
    stream_put_header(&f->sw);
    ram_save_open(&f->sw, STREAM_TAG_SECTION_START, 1, "ram", 0, &f->rs);
    sw_put_u8(&f->sw, RAM_REC_END);
    sw_put_u8(&f->sw, 0x80); /* unknown end flag */
    stream_put_section_footer(&f->sw, 1);
    stream_put_eof(&f->sw);
    assert_int_equal(load(f, NULL), -EBADMSG);

    sw_buf_reset(&f->sw);
    assert_int_equal(ram_save_close(&f->sw, 1, 0x80), -EINVAL);
    sw_buf_reset(&f->sw);
    assert_int_equal(ram_save_pages(&f->sw, &f->rs, NPG - 1, 2), -EINVAL);
    sw_buf_reset(&f->sw);
    assert_int_equal(ram_save_pages(&f->sw, &f->rs, UINT64_MAX, 2), -EINVAL);
    sw_buf_reset(&f->sw);
    other = f->rs;
    other.page_size = 3000;
    assert_int_equal(ram_save_open(&f->sw, STREAM_TAG_SECTION_START, 1, "ram", 0, &other), -EINVAL);
}

/* Every proper prefix of a RAM stream is a short read. */
static void test_every_truncation(void **state)
{
    struct fixture *f = *state;
    const uint8_t *data;
    size_t len;

    /* Small pages keep the loop short: 1 KiB pages over the same 64 KiB. */
    f->rs.page_size = 1024;
    f->w.ram.page_size = 1024;
    fill_source(f);
    stream_put_header(&f->sw);
    ram_save_open(&f->sw, STREAM_TAG_SECTION_START, 1, "ram", 0, &f->rs);
    ram_save_pages(&f->sw, &f->rs, 0, 12);
    ram_save_close(&f->sw, 1, RAM_END_ROUND);
    assert_int_equal(stream_put_eof(&f->sw), 0);
    data = sw_buf_data(&f->sw, &len);
    for (size_t i = 0; i < len; i++) {
        struct stream_loader ld;
        struct stream_reader sr;
        int r;

        assert_int_equal(stream_loader_init(&ld, &f->w.reg[SAMPLE_REG_RAM], 1), 0);
        stream_reader_init_buf(&sr, data, i);
        r = stream_load_header(&sr);
        if (r == 0)
            r = stream_load_segment(&ld, &sr);
        assert_int_equal(r, -ENODATA);
        stream_loader_destroy(&ld);
    }
}

static void test_is_zero(void **state)
{
    uint8_t buf[200];

    memset(buf, 0, sizeof(buf));
    assert_true(ram_is_zero(buf, sizeof(buf)));
    for (size_t i = 0; i < sizeof(buf); i++) {
        buf[i] = 1;
        assert_false(ram_is_zero(buf, sizeof(buf)));
        buf[i] = 0;
    }
    assert_true(ram_is_zero(buf, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_wire_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip_with_zero_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_observer_error_fails_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_geometry_and_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_truncation, setup, teardown),
        cmocka_unit_test(test_is_zero),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
