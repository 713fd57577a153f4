/* test_vmstate.c: golden wire bytes of a vmstate table, round trips, and hostile-input rejection.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "migration/vmstate.h"
#include "sample_state.h"

/* sample_vmsd at version 2, for sample_fill()'s values. Every byte is accounted for. */
/* clang-format off */
static const uint8_t golden[] = {
    0x02,                                           /* mode */
    0x12, 0x34,                                     /* ctrl */
    0xde, 0xad, 0xbe, 0xef,                         /* status */
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* counter */
    0xff, 0xff, 0xff, 0xfe,                         /* delta = -2 */
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, /* big = -2^32 */
    0x01,                                           /* enabled */
    0x52, 0x54, 0x00, 0x12, 0x34, 0x56,             /* mac */
    0x00, 0x00, 0x00, 0x01,                         /* regs[0] */
    0x00, 0x00, 0x00, 0x02,                         /* regs[1] */
    0xff, 0xff, 0xff, 0xff,                         /* regs[2] */
    0x00, 0x03, 0x00, 0x04,                         /* main_q head, tail */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, /* main_q addr */
    0x00, 0x05, 0x00, 0x06,                         /* q[0] head, tail */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00, /* q[0] addr */
    0x00, 0x07, 0x00, 0x08,                         /* q[1] head, tail */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x30, 0x00, /* q[1] addr */
    0x00, 0x03,                                     /* fifo_len */
    'a',  'b',  'c',                                /* fifo[0..3) */
    0x45, 0x23, 0x01, 0x00,                         /* le_value (custom, little-endian) */
    0xca, 0xfe, 0xf0, 0x0d,                         /* added_v2 (version 2) */
    0x05,                                           /* SUBSECTION */
    12, 's', 'a', 'm', 'p', 'l', 'e', '-', 'e', 'x', 't', 'r', 'a', /* name */
    0x00, 0x00, 0x00, 0x01,                         /* subsection version */
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, /* extra */
};
/* clang-format on */

#define OFF_ENABLED  27
#define OFF_MAIN_Q   46
#define OFF_FIFO_LEN 82
#define OFF_LE       87
#define OFF_ADDED_V2 91
#define OFF_SUBSEC   95
#define OFF_SUBVER   109

static size_t save_sample(struct sample_dev *s, uint8_t *out, size_t cap)
{
    struct stream_writer sw;
    const uint8_t *data;
    size_t len;

    assert_int_equal(stream_writer_init_buf(&sw, 0), 0);
    assert_int_equal(vmstate_save(&sw, &sample_vmsd, s), 0);
    data = sw_buf_data(&sw, &len);
    assert_true(len <= cap);
    memcpy(out, data, len);
    stream_writer_destroy(&sw);
    return len;
}

static int load_sample(const uint8_t *in, size_t len, struct sample_dev *s, uint32_t version,
                       size_t *consumed)
{
    struct stream_reader sr;
    int r;

    stream_reader_init_buf(&sr, in, len);
    r = vmstate_load(&sr, &sample_vmsd, s, version);
    if (consumed)
        *consumed = (size_t)sr_offset(&sr);
    return r;
}

static void test_tables_pass_check(void **state)
{
    assert_int_equal(vmstate_check(&sample_vmsd), 0);
    assert_int_equal(vmstate_check(&tiny_vmsd), 0);
}

static void test_golden_bytes(void **state)
{
    struct sample_dev s;
    uint8_t out[256];
    size_t len;

    assert_int_equal(golden[OFF_ENABLED], 0x01);
    assert_int_equal(golden[OFF_SUBSEC], 0x05);
    sample_fill(&s);
    len = save_sample(&s, out, sizeof(out));
    assert_int_equal(len, sizeof(golden));
    assert_memory_equal(out, golden, sizeof(golden));
    assert_int_equal(s.pre_save_calls, 1);
}

static void test_subsection_not_needed(void **state)
{
    struct sample_dev s;
    uint8_t out[256];
    size_t len;

    sample_fill(&s);
    s.extra = 0;
    len = save_sample(&s, out, sizeof(out));
    assert_int_equal(len, OFF_SUBSEC);
    assert_memory_equal(out, golden, OFF_SUBSEC);
}

static void test_round_trip(void **state)
{
    struct sample_dev src, dst;
    size_t consumed;

    sample_fill(&src);
    memset(&dst, 0, sizeof(dst));
    dst.fifo[5] = 0x77; /* stale bytes past fifo_len are cleared on load */
    assert_int_equal(load_sample(golden, sizeof(golden), &dst, 2, &consumed), 0);
    assert_int_equal(consumed, sizeof(golden));
    assert_int_equal(dst.post_load_calls, 1);
    dst.post_load_calls = 0;
    assert_memory_equal(&dst, &src, sizeof(src));
}

/* Saving twice gives the same bytes and leaves the source as it was (pre_save aside). */
static void test_save_does_not_change_source(void **state)
{
    struct sample_dev s, before;
    uint8_t a[256], b[256];
    size_t la, lb;

    sample_fill(&s);
    la = save_sample(&s, a, sizeof(a));
    before = s;
    lb = save_sample(&s, b, sizeof(b));
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    before.pre_save_calls++;
    assert_memory_equal(&s, &before, sizeof(s));
}

/* A version-1 stream has no added_v2: the loader skips the field and leaves it untouched. */
static void test_load_older_version(void **state)
{
    uint8_t v1[sizeof(golden)];
    struct sample_dev s;
    size_t len = 0;

    memcpy(v1, golden, OFF_ADDED_V2);
    len += OFF_ADDED_V2;
    memcpy(v1 + len, golden + OFF_SUBSEC, sizeof(golden) - OFF_SUBSEC);
    len += sizeof(golden) - OFF_SUBSEC;
    memset(&s, 0, sizeof(s));
    s.added_v2 = 42;
    assert_int_equal(load_sample(v1, len, &s, 1, NULL), 0);
    assert_int_equal(s.added_v2, 42);
    assert_true(s.extra == 0x1122334455667788ull);
}

static void test_version_out_of_range(void **state)
{
    struct sample_dev s;

    memset(&s, 0, sizeof(s));
    assert_int_equal(load_sample(golden, sizeof(golden), &s, 3, NULL), -EPROTONOSUPPORT);
    assert_int_equal(load_sample(golden, sizeof(golden), &s, 0, NULL), -EPROTONOSUPPORT);
    assert_int_equal(s.post_load_calls, 0);
}

/* Flip one byte of the golden stream and expect err from the loader. */
static void expect_patched(size_t off, uint8_t value, int err)
{
    uint8_t bad[sizeof(golden)];
    struct sample_dev s;

    memcpy(bad, golden, sizeof(golden));
    bad[off] = value;
    memset(&s, 0, sizeof(s));
    assert_int_equal(load_sample(bad, sizeof(bad), &s, 2, NULL), err);
}

static void test_hostile_values(void **state)
{
    expect_patched(0, SAMPLE_MODE_MAX + 1, -EINVAL);     /* root post_load */
    expect_patched(OFF_ENABLED, 2, -EBADMSG);            /* bool must be 0 or 1 */
    expect_patched(OFF_MAIN_Q, 0x01, -ERANGE);           /* nested post_load: head 0x103 */
    expect_patched(OFF_FIFO_LEN + 1, 9, -EBADMSG);       /* fifo_len 9 > capacity 8 */
    expect_patched(OFF_FIFO_LEN, 0xff, -EBADMSG);        /* fifo_len 0xff03 */
    expect_patched(OFF_LE + 3, 0x80, -ERANGE);           /* custom get refuses */
    expect_patched(OFF_SUBSEC + 2, 'S', -EBADMSG);       /* unknown subsection name */
    expect_patched(OFF_SUBSEC + 1, 0, -EBADMSG);         /* empty subsection name */
    expect_patched(OFF_SUBSEC + 1, 200, -ENODATA);       /* name runs past the end */
    expect_patched(OFF_SUBVER + 3, 2, -EPROTONOSUPPORT); /* subsection version 2 */
    expect_patched(OFF_SUBVER + 3, 0, -EPROTONOSUPPORT); /* subsection version 0 */
}

static void test_fifo_len_at_capacity(void **state)
{
    struct sample_dev s, back;
    uint8_t out[256];
    size_t len;

    sample_fill(&s);
    s.fifo_len = SAMPLE_FIFO_MAX;
    memcpy(s.fifo, "ABCDEFGH", SAMPLE_FIFO_MAX);
    len = save_sample(&s, out, sizeof(out));
    assert_int_equal(len, sizeof(golden) + SAMPLE_FIFO_MAX - 3);
    memset(&back, 0, sizeof(back));
    assert_int_equal(load_sample(out, len, &back, 2, NULL), 0);
    assert_memory_equal(back.fifo, "ABCDEFGH", SAMPLE_FIFO_MAX);
}

static void test_subsection_twice_rejected(void **state)
{
    uint8_t twice[sizeof(golden) + 26];
    struct sample_dev s;

    memcpy(twice, golden, sizeof(golden));
    memcpy(twice + sizeof(golden), golden + OFF_SUBSEC, 26);
    memset(&s, 0, sizeof(s));
    assert_int_equal(load_sample(twice, sizeof(twice), &s, 2, NULL), -EBADMSG);
}

/* Every prefix fails, except the one that ends just before the (optional) subsection. */
static void test_every_truncation(void **state)
{
    for (size_t i = 0; i < sizeof(golden); i++) {
        struct sample_dev s;
        size_t consumed;
        int r;

        memset(&s, 0, sizeof(s));
        r = load_sample(golden, i, &s, 2, &consumed);
        if (i == OFF_SUBSEC) {
            assert_int_equal(r, 0);
            continue;
        }
        assert_int_equal(r, -ENODATA);
        assert_true(consumed <= i);
        assert_int_equal(s.post_load_calls, 0);
    }
}

static void test_save_errors(void **state)
{
    struct stream_writer sw;
    struct sample_dev s;

    sample_fill(&s);
    s.fifo_len = SAMPLE_FIFO_MAX + 1;
    assert_int_equal(stream_writer_init_buf(&sw, 0), 0);
    assert_int_equal(vmstate_save(&sw, &sample_vmsd, &s), -EINVAL);
    stream_writer_destroy(&sw);

    sample_fill(&s);
    s.fail_pre_save = 1;
    assert_int_equal(stream_writer_init_buf(&sw, 0), 0);
    assert_int_equal(vmstate_save(&sw, &sample_vmsd, &s), -EIO);
    assert_non_null(strstr(sw_errmsg(&sw), "pre_save"));
    stream_writer_destroy(&sw);
}

/* ---- vmstate_check on broken tables ---- */

struct bad {
    uint8_t len8;
    uint8_t buf[4];
    uint32_t x;
};

static const struct vmstate_field vbuf_before_len[] = {
    VMS_VBUFFER(struct bad, buf, 4, len8),
    VMS_U8(struct bad, len8),
    VMS_END,
};

static const struct vmstate_field len_newer_than_buf[] = {
    VMS_U8_V(struct bad, len8, 2),
    VMS_VBUFFER_V(struct bad, buf, 4, len8, 1),
    VMS_END,
};

static const struct vmstate_field field_too_new[] = {
    VMS_U32_V(struct bad, x, 3),
    VMS_END,
};

static const struct vmstate_field plain_fields[] = {
    VMS_U32(struct bad, x),
    VMS_END,
};

static const struct vmstate_desc with_sub = {
    .name = "with-sub",
    .version_id = 1,
    .fields = plain_fields,
    .subsections = (const struct vmstate_desc *const[]){&sample_extra_vmsd, NULL},
};

static const struct vmstate_field nests_with_sub[] = {
    VMS_STRUCT(struct bad, x, uint32_t, &with_sub),
    VMS_END,
};

static void test_check_rejects_bad_tables(void **state)
{
    struct vmstate_desc d = {.name = "bad", .version_id = 2, .minimum_version_id = 1};
    const struct vmstate_desc *dup[] = {&sample_extra_vmsd, &sample_extra_vmsd, NULL};

    d.fields = vbuf_before_len;
    assert_int_equal(vmstate_check(&d), -EINVAL);
    d.fields = len_newer_than_buf;
    assert_int_equal(vmstate_check(&d), -EINVAL);
    d.fields = field_too_new;
    assert_int_equal(vmstate_check(&d), -EINVAL);
    d.fields = nests_with_sub;
    assert_int_equal(vmstate_check(&d), -EINVAL);
    d.fields = plain_fields;
    assert_int_equal(vmstate_check(&d), 0);
    d.minimum_version_id = 3;
    assert_int_equal(vmstate_check(&d), -EINVAL);
    d.minimum_version_id = 1;
    d.subsections = dup;
    assert_int_equal(vmstate_check(&d), -EINVAL);
    d.subsections = NULL;
    d.name = "has space";
    assert_int_equal(vmstate_check(&d), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables_pass_check),
        cmocka_unit_test(test_golden_bytes),
        cmocka_unit_test(test_subsection_not_needed),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_save_does_not_change_source),
        cmocka_unit_test(test_load_older_version),
        cmocka_unit_test(test_version_out_of_range),
        cmocka_unit_test(test_hostile_values),
        cmocka_unit_test(test_fifo_len_at_capacity),
        cmocka_unit_test(test_subsection_twice_rejected),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_save_errors),
        cmocka_unit_test(test_check_rejects_bad_tables),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
