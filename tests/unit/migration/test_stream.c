/* test_stream.c: byte streams: big-endian wire values, sticky errors, fds, timeouts, CRC-32C. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "migration/crc32c.h"
#include "migration/stream.h"

static void test_crc32c_vectors(void **state)
{
    uint8_t buf[32];

    /* RFC 3720 (iSCSI) appendix B.4 vectors, plus the usual check value. */
    assert_int_equal(crc32c(0, "123456789", 9), 0xe3069283);
    memset(buf, 0, sizeof(buf));
    assert_int_equal(crc32c(0, buf, sizeof(buf)), 0x8a9136aa);
    memset(buf, 0xff, sizeof(buf));
    assert_int_equal(crc32c(0, buf, sizeof(buf)), 0x62a8ab43);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(crc32c(0, buf, sizeof(buf)), 0x46dd794e);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    assert_int_equal(crc32c(0, buf, sizeof(buf)), 0x113fdb5c);
    assert_int_equal(crc32c(0, buf, 0), 0);
}

/* The fast path and the table path agree at every length and alignment, and chain. */
static void test_crc32c_paths_agree(void **state)
{
    uint8_t buf[1100];

    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 131 + (i >> 3));
    for (size_t off = 0; off < 9; off++)
        for (size_t len = 0; len + off <= sizeof(buf); len += 37) {
            uint32_t whole = crc32c(0, buf + off, len);

            assert_int_equal(whole, crc32c_sw(0, buf + off, len));
            assert_int_equal(
                whole, crc32c(crc32c(0, buf + off, len / 3), buf + off + len / 3, len - len / 3));
        }
}

static void test_writer_big_endian(void **state)
{
    static const uint8_t expect[] = {0xab, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef,
                                     0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
                                     0x08, 'x',  'y',  3,    'a',  'b',  'c'};
    struct stream_writer sw;
    const uint8_t *data;
    size_t len;

    assert_int_equal(stream_writer_init_buf(&sw, 0), 0);
    sw_put_u8(&sw, 0xab);
    sw_put_u16(&sw, 0x1234);
    sw_put_u32(&sw, 0xdeadbeef);
    sw_put_u64(&sw, 0x0102030405060708ull);
    sw_put_bytes(&sw, "xy", 2);
    sw_put_name(&sw, "abc");
    assert_int_equal(sw_flush(&sw), 0);
    data = sw_buf_data(&sw, &len);
    assert_int_equal(len, sizeof(expect));
    assert_memory_equal(data, expect, sizeof(expect));
    assert_int_equal(sw_offset(&sw), sizeof(expect));
    assert_int_equal(sw_checksum(&sw), crc32c(0, expect, sizeof(expect)));
    sw_buf_reset(&sw);
    data = sw_buf_data(&sw, &len);
    assert_int_equal(len, 0);
    assert_int_equal(sw_checksum(&sw), 0);
    stream_writer_destroy(&sw);
}

static void test_writer_growth_and_limit(void **state)
{
    struct stream_writer sw;
    const uint8_t *data;
    size_t len;

    assert_int_equal(stream_writer_init_buf(&sw, 1), 0);
    for (uint32_t i = 0; i < 10000; i++)
        sw_put_u32(&sw, i);
    data = sw_buf_data(&sw, &len);
    assert_int_equal(len, 40000);
    assert_int_equal(data[4 * 9999 + 3], 9999 & 0xff);
    assert_string_equal(sw_errmsg(&sw), "");
    sw_set_max_size(&sw, 40002);
    sw_put_u16(&sw, 1);
    assert_int_equal(sw_error(&sw), 0);
    sw_put_u8(&sw, 1);
    assert_int_equal(sw_error(&sw), -ENOSPC);
    /* sticky: later puts are ignored, the first error stays */
    sw_put_name(&sw, "");
    assert_int_equal(sw_error(&sw), -ENOSPC);
    assert_non_null(strstr(sw_errmsg(&sw), "offset 40002"));
    stream_writer_destroy(&sw);
}

static void test_names(void **state)
{
    char long_name[STREAM_NAME_MAX + 2];
    struct stream_writer sw;

    memset(long_name, 'n', sizeof(long_name));
    long_name[STREAM_NAME_MAX] = '\0';
    assert_true(stream_name_ok(long_name));
    long_name[STREAM_NAME_MAX] = 'n';
    long_name[STREAM_NAME_MAX + 1] = '\0';
    assert_false(stream_name_ok(long_name));
    assert_false(stream_name_ok(""));
    assert_false(stream_name_ok(NULL));
    assert_false(stream_name_ok("has space"));
    assert_false(stream_name_ok("tab\t"));
    assert_false(stream_name_ok("\x80"));
    assert_true(stream_name_ok("cpu/0:x86"));

    assert_int_equal(stream_writer_init_buf(&sw, 0), 0);
    sw_put_name(&sw, long_name);
    assert_int_equal(sw_error(&sw), -EINVAL);
    stream_writer_destroy(&sw);
}

static void test_reader_values_and_truncation(void **state)
{
    static const uint8_t in[] = {0xab, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02,
                                 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x00, 0x01};
    struct stream_reader sr;

    stream_reader_init_buf(&sr, in, sizeof(in));
    assert_string_equal(sr_errmsg(&sr), "");
    assert_int_equal(sr_peek_u8(&sr), 0xab);
    assert_int_equal(sr_get_u8(&sr), 0xab);
    assert_int_equal(sr_get_u16(&sr), 0x1234);
    assert_int_equal(sr_get_u32(&sr), 0xdeadbeef);
    assert_true(sr_get_u64(&sr) == 0x0102030405060708ull);
    assert_int_equal(sr_remaining(&sr), 2);
    /* A u32 with 2 bytes left: a clean error, nothing consumed, getter returns 0. */
    assert_int_equal(sr_get_u32(&sr), 0);
    assert_int_equal(sr_error(&sr), -ENODATA);
    assert_non_null(strstr(sr_errmsg(&sr), "offset 15"));
    assert_int_equal(sr_remaining(&sr), 2);
    /* Sticky: the bytes that are there are not handed out any more. */
    assert_int_equal(sr_get_u8(&sr), 0);
    assert_int_equal(sr_peek_u8(&sr), -ENODATA);
    stream_reader_destroy(&sr);
}

static void test_reader_peek_at_end_is_not_sticky(void **state)
{
    struct stream_reader sr;

    stream_reader_init_buf(&sr, "", 0);
    assert_int_equal(sr_peek_u8(&sr), -ENODATA);
    assert_int_equal(sr_error(&sr), 0);
    sr_get_u8(&sr);
    assert_int_equal(sr_error(&sr), -ENODATA);
}

static void test_reader_names(void **state)
{
    static const uint8_t good[] = {3, 'c', 'p', 'u'};
    static const uint8_t empty[] = {0};
    static const uint8_t bad[] = {2, 'a', 0};
    static const uint8_t cut[] = {9, 'a', 'b'};
    char name[STREAM_NAME_MAX + 1];
    struct stream_reader sr;

    stream_reader_init_buf(&sr, good, sizeof(good));
    sr_get_name(&sr, name);
    assert_int_equal(sr_error(&sr), 0);
    assert_string_equal(name, "cpu");
    stream_reader_init_buf(&sr, empty, sizeof(empty));
    sr_get_name(&sr, name);
    assert_int_equal(sr_error(&sr), -EBADMSG);
    stream_reader_init_buf(&sr, bad, sizeof(bad));
    sr_get_name(&sr, name);
    assert_int_equal(sr_error(&sr), -EBADMSG);
    assert_string_equal(name, "");
    stream_reader_init_buf(&sr, cut, sizeof(cut));
    sr_get_name(&sr, name);
    assert_int_equal(sr_error(&sr), -ENODATA);
    assert_string_equal(name, "");
}

/* Small and large puts through an fd (a memfd), read back through an fd reader in odd sizes. */
static void test_fd_round_trip(void **state)
{
    size_t big = 3 * STREAM_FD_BUF_SIZE + 123;
    uint8_t *payload = malloc(big), *back = malloc(big);
    struct stream_writer sw;
    struct stream_reader sr;
    uint32_t wcrc;
    int fd;

    assert_non_null(payload);
    assert_non_null(back);
    for (size_t i = 0; i < big; i++)
        payload[i] = (uint8_t)(i * 7 + 1);
    fd = memfd_create("stream-test", 0);
    assert_true(fd >= 0);
    assert_int_equal(stream_writer_init_fd(&sw, fd), 0);
    for (uint32_t i = 0; i < 5000; i++)
        sw_put_u32(&sw, i);
    sw_put_bytes(&sw, payload, big);
    sw_put_bytes(&sw, payload, 1000);
    sw_put_u64(&sw, 0x1122334455667788ull);
    assert_int_equal(sw_flush(&sw), 0);
    wcrc = sw_checksum(&sw);
    assert_int_equal(sw_offset(&sw), 20000 + big + 1000 + 8);
    stream_writer_destroy(&sw);

    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(stream_reader_init_fd(&sr, fd), 0);
    sr_set_timeout_ms(&sr, 1000);
    for (uint32_t i = 0; i < 5000; i++)
        assert_int_equal(sr_get_u32(&sr), i);
    sr_get_bytes(&sr, back, big);
    assert_memory_equal(back, payload, big);
    sr_get_bytes(&sr, back, 1000);
    assert_memory_equal(back, payload, 1000);
    assert_true(sr_get_u64(&sr) == 0x1122334455667788ull);
    assert_int_equal(sr_error(&sr), 0);
    assert_int_equal(sr_checksum(&sr), wcrc);
    assert_int_equal(sr_offset(&sr), 20000 + big + 1000 + 8);
    /* End of file is a short read, never a hang. */
    sr_get_u8(&sr);
    assert_int_equal(sr_error(&sr), -ENODATA);
    stream_reader_destroy(&sr);
    close(fd);
    free(payload);
    free(back);
}

static void test_fd_timeout(void **state)
{
    struct stream_reader sr;
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(write(sv[1], "\x01\x02", 2), 2);
    assert_int_equal(stream_reader_init_fd(&sr, sv[0]), 0);
    sr_set_timeout_ms(&sr, 50);
    assert_int_equal(sr_get_u16(&sr), 0x0102);
    /* The peer is alive but silent: detected within the timeout. */
    sr_get_u32(&sr);
    assert_int_equal(sr_error(&sr), -ETIMEDOUT);
    assert_non_null(strstr(sr_errmsg(&sr), "timed out"));
    stream_reader_destroy(&sr);
    close(sv[0]);
    close(sv[1]);
}

static void test_fd_peer_closes_mid_value(void **state)
{
    struct stream_reader sr;
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(write(sv[1], "\x01\x02\x03", 3), 3);
    close(sv[1]);
    assert_int_equal(stream_reader_init_fd(&sr, sv[0]), 0);
    sr_get_u32(&sr);
    assert_int_equal(sr_error(&sr), -ENODATA);
    assert_non_null(strstr(sr_errmsg(&sr), "short read"));
    stream_reader_destroy(&sr);
    close(sv[0]);
}

/* A dead peer must not kill us with SIGPIPE: the write fails with -EPIPE instead. */
static void test_writer_dead_peer(void **state)
{
    struct stream_writer sw;
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[1]);
    assert_int_equal(stream_writer_init_fd(&sw, sv[0]), 0);
    sw_put_u32(&sw, 1);
    assert_int_equal(sw_flush(&sw), -EPIPE);
    stream_writer_destroy(&sw);
    close(sv[0]);
}

/* A peer that stops reading is detected by the writer's timeout. */
static void test_writer_timeout(void **state)
{
    size_t big = 8u << 20;
    uint8_t *payload = calloc(1, big);
    struct stream_writer sw;
    int sv[2];

    assert_non_null(payload);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(stream_writer_init_fd(&sw, sv[0]), 0);
    sw_set_timeout_ms(&sw, 50);
    sw_put_bytes(&sw, payload, big);
    assert_int_equal(sw_flush(&sw), -ETIMEDOUT);
    stream_writer_destroy(&sw);
    close(sv[0]);
    close(sv[1]);
    free(payload);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_vectors),
        cmocka_unit_test(test_crc32c_paths_agree),
        cmocka_unit_test(test_writer_big_endian),
        cmocka_unit_test(test_writer_growth_and_limit),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_reader_values_and_truncation),
        cmocka_unit_test(test_reader_peek_at_end_is_not_sticky),
        cmocka_unit_test(test_reader_names),
        cmocka_unit_test(test_fd_round_trip),
        cmocka_unit_test(test_fd_timeout),
        cmocka_unit_test(test_fd_peer_closes_mid_value),
        cmocka_unit_test(test_writer_dead_peer),
        cmocka_unit_test(test_writer_timeout),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
