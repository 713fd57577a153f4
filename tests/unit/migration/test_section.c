/* test_section.c: golden stream framing, registry dispatch, checksums, and hostile streams. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "migration/be.h"
#include "migration/section.h"
#include "sample_state.h"

/* header, FULL "tiny"/0 (id 2, value 0x01020304), PING 0xabcd0001, EOF. */
static const uint8_t golden[] = {
    'T',  'N',  'D',  'M',  0x00, 0x00, 0x00, 0x01, /* magic, format version 1 */
    0x04, 0x00, 0x00, 0x00, 0x02,                   /* SECTION_FULL, section id 2 */
    0x04, 't',  'i',  'n',  'y',                    /* idstr */
    0x00, 0x00, 0x00, 0x00,                         /* instance 0 */
    0x00, 0x00, 0x00, 0x01,                         /* version 1 */
    0x01, 0x02, 0x03, 0x04,                         /* tiny.value */
    0x7e, 0x00, 0x00, 0x00, 0x02,                   /* FOOTER, section id 2 */
    0x08, 0x00, 0x02, 0x00, 0x04,                   /* COMMAND PING, 4 payload bytes */
    0xab, 0xcd, 0x00, 0x01,                         /* cookie */
    0x00, 0xf1, 0x1c, 0x89, 0xa7,                   /* EOF, CRC-32C of all bytes before */
};

#define OFF_SECTION_ID 9
#define OFF_IDSTR      13
#define OFF_INSTANCE   18
#define OFF_VERSION    22
#define OFF_VALUE      26
#define OFF_FOOTER     30
#define OFF_CMD        35
#define OFF_CMD_LEN    38
#define OFF_CRC        45

struct fixture {
    struct sample_world w;
    struct stream_loader ld;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    sample_world_init(&f->w);
    if (stream_loader_init(&f->ld, f->w.reg, SAMPLE_REG_N) < 0)
        return -1;
    stream_loader_set_command_handler(&f->ld, sample_on_command, &f->w);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    stream_loader_destroy(&f->ld);
    free(f);
    return 0;
}

/* Header plus one segment from buf; returns the first error. */
static int load_with(struct stream_loader *ld, const uint8_t *buf, size_t len)
{
    struct stream_reader sr;
    int r;

    stream_reader_init_buf(&sr, buf, len);
    r = stream_load_header(&sr);
    if (r == 0)
        r = stream_load_segment(ld, &sr);
    if (r == 0 && sr_remaining(&sr) != 0)
        r = -E2BIG; /* the test streams hold exactly one segment */
    return r;
}

static int load_stream(struct fixture *f, const uint8_t *buf, size_t len)
{
    return load_with(&f->ld, buf, len);
}

/* The same with a loader that has seen nothing yet (no section ids bound). */
static int load_fresh(struct fixture *f, const uint8_t *buf, size_t len)
{
    struct stream_loader ld;
    int r;

    assert_int_equal(stream_loader_init(&ld, f->w.reg, SAMPLE_REG_N), 0);
    stream_loader_set_command_handler(&ld, sample_on_command, &f->w);
    r = load_with(&ld, buf, len);
    stream_loader_destroy(&ld);
    return r;
}

static void test_golden_stream(void **state)
{
    struct fixture *f = *state;
    struct stream_writer sw;
    struct tiny_dev t = {.value = 0x01020304};
    const uint8_t *data;
    uint8_t cookie[4];
    size_t len;

    be32_store(cookie, 0xabcd0001);
    assert_int_equal(stream_writer_init_buf(&sw, 0), 0);
    stream_put_header(&sw);
    stream_save_section(&sw, 2, "tiny", 0, &tiny_vmsd, &t);
    stream_put_command(&sw, STREAM_CMD_PING, cookie, 4);
    assert_int_equal(stream_put_eof(&sw), 0);
    data = sw_buf_data(&sw, &len);
    assert_int_equal(len, sizeof(golden));
    assert_memory_equal(data, golden, sizeof(golden));
    stream_writer_destroy(&sw);

    assert_int_equal(load_stream(f, golden, sizeof(golden)), 0);
    assert_int_equal(f->w.tiny[0].value, 0x01020304);
    assert_int_equal(f->w.ncommands, 1);
    assert_int_equal(f->w.last_cmd, STREAM_CMD_PING);
    assert_int_equal(f->w.last_ping, 0xabcd0001);
    assert_true(stream_loader_seen(&f->ld, SAMPLE_REG_TINY0));
    assert_false(stream_loader_seen(&f->ld, SAMPLE_REG_TINY1));
    assert_int_equal(stream_buf_verify(golden + 8, sizeof(golden) - 8), -EILSEQ);
}

/* The complete sample stream: every section kind, commands and RAM, loaded into a new world. */
static void test_full_round_trip(void **state)
{
    struct fixture *f = *state;
    struct sample_world *src = calloc(1, sizeof(*src));
    struct stream_writer sw;
    const uint8_t *data;
    size_t len;

    assert_non_null(src);
    sample_world_init(src);
    sample_fill(&src->dev);
    src->tiny[0].value = 7;
    src->tiny[1].value = 8;
    for (size_t i = 0; i < SAMPLE_RAM_SIZE; i += 3 * SAMPLE_RAM_PAGE)
        memset(src->ram_host + i, (int)(i / SAMPLE_RAM_PAGE) + 1, SAMPLE_RAM_PAGE);
    assert_int_equal(stream_writer_init_buf(&sw, 0), 0);
    assert_int_equal(sample_write_stream(&sw, src), 0);
    data = sw_buf_data(&sw, &len);
    memset(f->w.ram_host, 0xee, SAMPLE_RAM_SIZE);
    assert_int_equal(load_stream(f, data, len), 0);
    assert_int_equal(stream_buf_verify(data + 8, len - 8), -EILSEQ); /* header is in the span */
    assert_int_equal(f->w.tiny[0].value, 7);
    assert_int_equal(f->w.tiny[1].value, 8);
    src->dev.pre_save_calls = f->w.dev.pre_save_calls;
    src->dev.post_load_calls = f->w.dev.post_load_calls;
    assert_memory_equal(&f->w.dev, &src->dev, sizeof(src->dev));
    assert_memory_equal(f->w.ram_host, src->ram_host, SAMPLE_RAM_SIZE);
    assert_int_equal(f->w.ram.rounds, 1);
    assert_int_equal(f->w.ncommands, 2);
    for (size_t i = 0; i < SAMPLE_REG_N; i++)
        assert_true(stream_loader_seen(&f->ld, i));
    stream_writer_destroy(&sw);
    free(src);
}

/* Every proper prefix of a valid stream fails with a short read, never a crash or success. */
static void test_every_truncation(void **state)
{
    struct fixture *f = *state;
    struct sample_world *src = calloc(1, sizeof(*src));
    struct stream_writer sw;
    const uint8_t *data;
    uint8_t *copy;
    size_t len;

    assert_non_null(src);
    sample_world_init(src);
    sample_fill(&src->dev);
    memset(src->ram_host + SAMPLE_RAM_PAGE, 0x5a, 2 * SAMPLE_RAM_PAGE);
    assert_int_equal(stream_writer_init_buf(&sw, 0), 0);
    assert_int_equal(sample_write_stream(&sw, src), 0);
    data = sw_buf_data(&sw, &len);
    for (size_t i = 0; i < len; i++) {
        /* An exact-size copy, so ASan would see any read past the prefix. */
        copy = malloc(i ? i : 1);
        assert_non_null(copy);
        memcpy(copy, data, i);
        assert_int_equal(load_fresh(f, copy, i), -ENODATA);
        free(copy);
    }
    stream_writer_destroy(&sw);
    free(src);
}

static void expect_patched(struct fixture *f, size_t off, uint8_t value, int err)
{
    uint8_t bad[sizeof(golden)];

    memcpy(bad, golden, sizeof(golden));
    bad[off] = value;
    assert_int_equal(load_fresh(f, bad, sizeof(bad)), err);
}

static void test_hostile_headers(void **state)
{
    struct fixture *f = *state;

    expect_patched(f, 0, 'Q', -EBADMSG);                      /* magic */
    expect_patched(f, 7, 2, -EPROTONOSUPPORT);                /* format version 2 */
    expect_patched(f, 7, 0, -EPROTONOSUPPORT);                /* format version 0 */
    expect_patched(f, 8, 0x06, -EBADMSG);                     /* unknown record tag */
    expect_patched(f, 8, STREAM_TAG_SUBSECTION, -EBADMSG);    /* subsection at top level */
    expect_patched(f, 8, STREAM_TAG_FOOTER, -EBADMSG);        /* stray footer */
    expect_patched(f, 8, STREAM_TAG_SECTION_PART, -EBADMSG);  /* PART of an unopened id */
    expect_patched(f, 8, STREAM_TAG_SECTION_START, -EBADMSG); /* START of a FULL entry */
}

static void test_bogus_sections(void **state)
{
    struct fixture *f = *state;

    expect_patched(f, OFF_SECTION_ID + 3, 0, -EBADMSG);      /* section id 0 */
    expect_patched(f, OFF_IDSTR + 1, 'T', -EBADMSG);         /* unknown idstr "Tiny" */
    expect_patched(f, OFF_IDSTR, 0, -EBADMSG);               /* empty idstr */
    expect_patched(f, OFF_IDSTR, 5, -EBADMSG);               /* idstr "tiny\0": not printable */
    expect_patched(f, OFF_IDSTR, 0xff, -ENODATA);            /* idstr runs past the end */
    expect_patched(f, OFF_INSTANCE + 3, 5, -EBADMSG);        /* unknown instance */
    expect_patched(f, OFF_VERSION + 3, 2, -EPROTONOSUPPORT); /* section version too new */
    expect_patched(f, OFF_VERSION + 3, 0, -EPROTONOSUPPORT); /* below minimum */
    expect_patched(f, OFF_FOOTER + 4, 3, -EBADMSG);          /* footer names another id */
    expect_patched(f, OFF_FOOTER, 0x7f, -EBADMSG);           /* footer tag */
    expect_patched(f, OFF_CMD + 2, 0x09, -EBADMSG);          /* unknown command */
    expect_patched(f, OFF_CMD + 2, 0x00, -EBADMSG);          /* command 0 is invalid */
    expect_patched(f, OFF_CMD_LEN, 0x01, -EBADMSG);          /* oversize command length */
    expect_patched(f, OFF_CMD_LEN + 1, 0x00, -EBADMSG);      /* wrong command length */
    expect_patched(f, OFF_CRC + 1, 0x04, -EILSEQ);           /* corrupted checksum */
    expect_patched(f, OFF_VALUE + 3, 0x05, -EILSEQ);         /* corrupted payload */
    expect_patched(f, OFF_CMD + 5, 0x00, -EILSEQ);           /* corrupted command payload */
}

static void test_no_command_handler(void **state)
{
    struct fixture *f = *state;

    stream_loader_set_command_handler(&f->ld, NULL, NULL);
    assert_int_equal(load_stream(f, golden, sizeof(golden)), -EBADMSG);
}

/* Writes header + the given FULL sections (id, instance pairs of "tiny") + EOF. */
static size_t write_tiny_sections(uint8_t *out, size_t cap, const uint32_t (*ids)[2], size_t n)
{
    struct stream_writer sw;
    struct tiny_dev t = {.value = 1};
    const uint8_t *data;
    size_t len;

    assert_int_equal(stream_writer_init_buf(&sw, 0), 0);
    stream_put_header(&sw);
    for (size_t i = 0; i < n; i++)
        stream_save_section(&sw, ids[i][0], "tiny", ids[i][1], &tiny_vmsd, &t);
    assert_int_equal(stream_put_eof(&sw), 0);
    data = sw_buf_data(&sw, &len);
    assert_true(len <= cap);
    memcpy(out, data, len);
    stream_writer_destroy(&sw);
    return len;
}

static void test_duplicate_ids(void **state)
{
    struct fixture *f = *state;
    static const uint32_t same_id_two_entries[][2] = {{5, 0}, {5, 1}};
    static const uint32_t same_entry_twice[][2] = {{5, 0}, {5, 0}};
    static const uint32_t entry_changes_id[][2] = {{5, 0}, {6, 0}};
    static const uint32_t fine[][2] = {{5, 0}, {6, 1}};
    uint8_t buf[256];
    size_t len;

    len = write_tiny_sections(buf, sizeof(buf), same_id_two_entries, 2);
    assert_int_equal(load_fresh(f, buf, len), -EBADMSG);
    len = write_tiny_sections(buf, sizeof(buf), same_entry_twice, 2);
    assert_int_equal(load_fresh(f, buf, len), -EBADMSG);
    len = write_tiny_sections(buf, sizeof(buf), entry_changes_id, 2);
    assert_int_equal(load_fresh(f, buf, len), -EBADMSG);
    len = write_tiny_sections(buf, sizeof(buf), fine, 2);
    assert_int_equal(load_fresh(f, buf, len), 0);
    /* Across segments too: a bound id cannot move to another entry later. */
    assert_int_equal(load_stream(f, buf, len), 0);
    len = write_tiny_sections(buf, sizeof(buf), entry_changes_id, 1);
    assert_int_equal(load_stream(f, buf, len), 0);
    len = write_tiny_sections(buf, sizeof(buf), entry_changes_id + 1, 1);
    assert_int_equal(load_stream(f, buf, len), -EBADMSG);
}

/*
 * Checkpoints: one stream, several segments, each checksummed on its own. A FULL section may
 * come again (same id) in a later segment; each segment's buffer verifies alone.
 */
static void test_segments_per_checkpoint(void **state)
{
    struct fixture *f = *state;
    struct stream_writer sw;
    struct stream_reader sr;
    struct tiny_dev t = {.value = 10};
    const uint8_t *data;
    size_t len, seg1_end;

    assert_int_equal(stream_writer_init_buf(&sw, 0), 0);
    stream_put_header(&sw);
    sw_checksum_reset(&sw); /* let each segment verify on its own, header excluded */
    stream_save_section(&sw, 2, "tiny", 0, &tiny_vmsd, &t);
    stream_put_eof(&sw);
    seg1_end = (size_t)sw_offset(&sw);
    t.value = 11;
    stream_save_section(&sw, 2, "tiny", 0, &tiny_vmsd, &t);
    stream_save_section(&sw, 3, "tiny", 1, &tiny_vmsd, &t);
    assert_int_equal(stream_put_eof(&sw), 0);
    data = sw_buf_data(&sw, &len);

    assert_int_equal(stream_buf_verify(data + 8, seg1_end - 8), 0);
    assert_int_equal(stream_buf_verify(data + seg1_end, len - seg1_end), 0);
    assert_int_equal(stream_buf_verify(data + seg1_end, len - seg1_end - 1), -EBADMSG);

    stream_reader_init_buf(&sr, data, len);
    assert_int_equal(stream_load_header(&sr), 0);
    sr_checksum_reset(&sr);
    assert_int_equal(stream_load_segment(&f->ld, &sr), 0);
    assert_int_equal(f->w.tiny[0].value, 10);
    assert_false(stream_loader_seen(&f->ld, SAMPLE_REG_TINY1));
    assert_int_equal(stream_load_segment(&f->ld, &sr), 0);
    assert_int_equal(f->w.tiny[0].value, 11);
    assert_int_equal(f->w.tiny[1].value, 11);
    assert_true(stream_loader_seen(&f->ld, SAMPLE_REG_TINY1));
    assert_int_equal(sr_remaining(&sr), 0);
    stream_writer_destroy(&sw);
}

/* The same stream through a pipe: the fd reader gives the same result as the memory reader. */
static void test_load_from_fd(void **state)
{
    struct fixture *f = *state;
    struct stream_reader sr;
    int p[2];

    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], golden, sizeof(golden)), (ssize_t)sizeof(golden));
    close(p[1]);
    assert_int_equal(stream_reader_init_fd(&sr, p[0]), 0);
    sr_set_timeout_ms(&sr, 1000);
    assert_int_equal(stream_load_header(&sr), 0);
    assert_int_equal(stream_load_segment(&f->ld, &sr), 0);
    assert_int_equal(f->w.tiny[0].value, 0x01020304);
    /* A second segment that never comes: the writer closed, a short read. */
    assert_int_equal(stream_load_segment(&f->ld, &sr), -ENODATA);
    stream_reader_destroy(&sr);
    close(p[0]);
}

static void test_registry_validation(void **state)
{
    struct fixture *f = *state;
    struct stream_section reg[2];
    struct stream_loader ld;

    reg[0] = f->w.reg[SAMPLE_REG_TINY0];
    reg[1] = f->w.reg[SAMPLE_REG_TINY0];
    assert_int_equal(stream_loader_init(&ld, reg, 2), -EINVAL); /* duplicate idstr + instance */
    reg[1].instance_id = 1;
    assert_int_equal(stream_loader_init(&ld, reg, 2), 0);
    stream_loader_destroy(&ld);
    reg[1].iter = &ram_iter_ops; /* both desc and iter */
    assert_int_equal(stream_loader_init(&ld, reg, 2), -EINVAL);
    reg[1].iter = NULL;
    reg[1].desc = NULL; /* neither */
    assert_int_equal(stream_loader_init(&ld, reg, 2), -EINVAL);
    reg[1] = f->w.reg[SAMPLE_REG_TINY1];
    reg[1].idstr = "bad name";
    assert_int_equal(stream_loader_init(&ld, reg, 2), -EINVAL);
}

static void test_writer_rejects_bad_records(void **state)
{
    struct stream_writer sw;
    struct tiny_dev t = {0};

    assert_int_equal(stream_writer_init_buf(&sw, 0), 0);
    assert_int_equal(stream_put_command(&sw, STREAM_CMD_PING, "ab", 2), -EINVAL);
    sw_buf_reset(&sw);
    assert_int_equal(stream_put_command(&sw, STREAM_CMD__MAX, NULL, 0), -EINVAL);
    sw_buf_reset(&sw);
    assert_int_equal(stream_save_section(&sw, 0, "tiny", 0, &tiny_vmsd, &t), -EINVAL);
    sw_buf_reset(&sw);
    assert_int_equal(stream_save_section(&sw, 1, "no spaces", 0, &tiny_vmsd, &t), -EINVAL);
    stream_writer_destroy(&sw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_golden_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bogus_sections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_command_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segments_per_checkpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_from_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_rejects_bad_records, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
