/* stream.c: buffered byte streams over memory or an fd; the reader never trusts its input. */
#include "migration/stream.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration/be.h"
#include "migration/crc32c.h"
#include "migration/format.h"

#define SW_MIN_GROW 256

static void format_err(char *dst, uint64_t offset, const char *fmt, va_list ap)
{
    int n = snprintf(dst, STREAM_ERRMSG_LEN, "offset %llu: ", (unsigned long long)offset);

    if (n < 0 || n >= STREAM_ERRMSG_LEN)
        return;
    vsnprintf(dst + n, STREAM_ERRMSG_LEN - (size_t)n, fmt, ap);
}

/*
 * Waits until fd is ready for events. ms < 0 waits forever. Returns 0, -ETIMEDOUT or -errno.
 * Used before every read/write when a timeout is set, and after EAGAIN on non-blocking fds.
 */
static int wait_fd(int fd, short events, int ms)
{
    struct pollfd pfd = {.fd = fd, .events = events};

    for (;;) {
        int r = poll(&pfd, 1, ms);

        if (r > 0)
            return 0; /* ready, or POLLERR/POLLHUP: the read/write that follows reports it */
        if (r == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

bool stream_name_ok(const char *name)
{
    size_t n = 0;

    if (!name)
        return false;
    for (; name[n]; n++)
        if (n >= STREAM_NAME_MAX || (unsigned char)name[n] < 0x21 || (unsigned char)name[n] > 0x7e)
            return false;
    return n > 0;
}

/* ---- writer ---- */

static int writer_init(struct stream_writer *sw, int fd, size_t cap)
{
    memset(sw, 0, sizeof(*sw));
    sw->fd = fd;
    sw->timeout_ms = -1;
    sw->max_size = SIZE_MAX / 2;
    if (cap) {
        sw->buf = malloc(cap);
        if (!sw->buf)
            return -ENOMEM;
        sw->cap = cap;
    }
    return 0;
}

int stream_writer_init_fd(struct stream_writer *sw, int fd)
{
    if (fd < 0)
        return -EBADF;
    return writer_init(sw, fd, STREAM_FD_BUF_SIZE);
}

int stream_writer_init_buf(struct stream_writer *sw, size_t initial_cap)
{
    return writer_init(sw, -1, initial_cap);
}

void stream_writer_destroy(struct stream_writer *sw)
{
    free(sw->buf);
    sw->buf = NULL;
    sw->cap = sw->len = sw->crc_pos = 0;
}

void sw_set_max_size(struct stream_writer *sw, size_t max)
{
    sw->max_size = max;
}

void sw_set_timeout_ms(struct stream_writer *sw, int ms)
{
    sw->timeout_ms = ms;
}

void sw_fail(struct stream_writer *sw, int err, const char *fmt, ...)
{
    va_list ap;

    if (sw->err)
        return;
    sw->err = err < 0 ? err : -EINVAL;
    va_start(ap, fmt);
    format_err(sw->errmsg, sw_offset(sw), fmt, ap);
    va_end(ap);
}

int sw_error(const struct stream_writer *sw)
{
    return sw->err;
}

const char *sw_errmsg(const struct stream_writer *sw)
{
    return sw->errmsg; /* "" until the first error */
}

uint64_t sw_offset(const struct stream_writer *sw)
{
    return sw->base + sw->len;
}

static void sw_fold_crc(struct stream_writer *sw)
{
    sw->crc = crc32c(sw->crc, sw->buf + sw->crc_pos, sw->len - sw->crc_pos);
    sw->crc_pos = sw->len;
}

uint32_t sw_checksum(struct stream_writer *sw)
{
    sw_fold_crc(sw);
    return sw->crc;
}

void sw_checksum_reset(struct stream_writer *sw)
{
    sw->crc = 0;
    sw->crc_pos = sw->len;
}

/*
 * Writes all of p to the fd. Sockets get send(MSG_NOSIGNAL | MSG_DONTWAIT): a peer that died
 * cannot kill us with SIGPIPE (a fault-tolerant VMM must survive its peer's death to fail over),
 * and a send never blocks past the poll() that enforces the timeout. Other fds (files, pipes)
 * get plain write(), where the timeout only bounds the wait before each write.
 */
static void sw_write_fd(struct stream_writer *sw, const uint8_t *p, size_t n)
{
    while (n && !sw->err) {
        ssize_t w;
        int r;

        if (sw->timeout_ms >= 0) {
            r = wait_fd(sw->fd, POLLOUT, sw->timeout_ms);
            if (r < 0) {
                sw_fail(sw, r, "write: %s", r == -ETIMEDOUT ? "peer stalled" : strerror(-r));
                return;
            }
        }
        if (!sw->not_socket) {
            w = send(sw->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0 && errno == ENOTSOCK) {
                sw->not_socket = true;
                continue;
            }
        } else {
            w = write(sw->fd, p, n);
        }
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                r = wait_fd(sw->fd, POLLOUT, sw->timeout_ms);
                if (r < 0)
                    sw_fail(sw, r, "write: %s", strerror(-r));
                continue;
            }
            sw_fail(sw, -errno, "write: %s", strerror(errno));
            return;
        }
        if (w == 0) {
            sw_fail(sw, -EIO, "write: fd accepted no bytes");
            return;
        }
        p += w;
        n -= (size_t)w;
        sw->base += (uint64_t)w;
    }
}

/* fd writer: hands the buffer to the fd. base advances as bytes leave. */
static void sw_drain(struct stream_writer *sw)
{
    size_t n = sw->len;

    sw_fold_crc(sw);
    sw->len = sw->crc_pos = 0;
    sw_write_fd(sw, sw->buf, n);
}

/* Memory writer: makes room for n more bytes. */
static bool sw_reserve(struct stream_writer *sw, size_t n)
{
    size_t need, cap;
    uint8_t *nb;

    if (__builtin_add_overflow(sw->len, n, &need) || need > sw->max_size) {
        sw_fail(sw, -ENOSPC, "memory stream would exceed %zu bytes", sw->max_size);
        return false;
    }
    if (need <= sw->cap)
        return true;
    cap = sw->cap < SW_MIN_GROW ? SW_MIN_GROW : sw->cap;
    while (cap < need)
        cap = cap > sw->max_size / 2 ? sw->max_size : cap * 2;
    nb = realloc(sw->buf, cap);
    if (!nb) {
        sw_fail(sw, -ENOMEM, "cannot grow memory stream to %zu bytes", cap);
        return false;
    }
    sw->buf = nb;
    sw->cap = cap;
    return true;
}

void sw_put_bytes(struct stream_writer *sw, const void *p, size_t n)
{
    if (sw->err || n == 0)
        return;
    if (sw->fd < 0) {
        if (!sw_reserve(sw, n))
            return;
    } else {
        /* Always through the buffer: live guest RAM may change under us, and the bytes
         * checksummed must be exactly the bytes sent, so both come from one private copy. */
        const uint8_t *src = p;
        while (n > sw->cap - sw->len) {
            size_t chunk = sw->cap - sw->len;
            memcpy(sw->buf + sw->len, src, chunk);
            sw->len += chunk;
            src += chunk;
            n -= chunk;
            sw_drain(sw);
            if (sw->err)
                return;
        }
        p = src;
    }
    if (sw->err)
        return;
    memcpy(sw->buf + sw->len, p, n);
    sw->len += n;
}

void sw_put_u8(struct stream_writer *sw, uint8_t v)
{
    sw_put_bytes(sw, &v, 1);
}

void sw_put_u16(struct stream_writer *sw, uint16_t v)
{
    uint8_t b[2];

    be16_store(b, v);
    sw_put_bytes(sw, b, sizeof(b));
}

void sw_put_u32(struct stream_writer *sw, uint32_t v)
{
    uint8_t b[4];

    be32_store(b, v);
    sw_put_bytes(sw, b, sizeof(b));
}

void sw_put_u64(struct stream_writer *sw, uint64_t v)
{
    uint8_t b[8];

    be64_store(b, v);
    sw_put_bytes(sw, b, sizeof(b));
}

void sw_put_name(struct stream_writer *sw, const char *name)
{
    if (!stream_name_ok(name)) {
        sw_fail(sw, -EINVAL, "invalid name \"%.40s\"", name ? name : "(null)");
        return;
    }
    sw_put_u8(sw, (uint8_t)strlen(name));
    sw_put_bytes(sw, name, strlen(name));
}

int sw_flush(struct stream_writer *sw)
{
    if (sw->fd >= 0 && !sw->err && sw->len)
        sw_drain(sw);
    return sw->err;
}

const uint8_t *sw_buf_data(const struct stream_writer *sw, size_t *len)
{
    *len = sw->len;
    return sw->buf;
}

void sw_buf_reset(struct stream_writer *sw)
{
    sw->len = sw->crc_pos = 0;
    sw->base = 0;
    sw->crc = 0;
    sw->err = 0;
    sw->errmsg[0] = '\0';
}

/* ---- reader ---- */

int stream_reader_init_fd(struct stream_reader *sr, int fd)
{
    memset(sr, 0, sizeof(*sr));
    sr->fd = fd;
    sr->timeout_ms = -1;
    if (fd < 0)
        return -EBADF;
    sr->owned = malloc(STREAM_FD_BUF_SIZE);
    if (!sr->owned)
        return -ENOMEM;
    sr->data = sr->owned;
    sr->cap = STREAM_FD_BUF_SIZE;
    return 0;
}

void stream_reader_init_buf(struct stream_reader *sr, const void *buf, size_t len)
{
    memset(sr, 0, sizeof(*sr));
    sr->fd = -1;
    sr->timeout_ms = -1;
    sr->data = buf;
    sr->len = buf ? len : 0;
}

void stream_reader_destroy(struct stream_reader *sr)
{
    free(sr->owned);
    sr->owned = NULL;
    sr->data = NULL;
    sr->len = sr->pos = sr->crc_pos = 0;
}

void sr_set_timeout_ms(struct stream_reader *sr, int ms)
{
    sr->timeout_ms = ms;
}

void sr_fail(struct stream_reader *sr, int err, const char *fmt, ...)
{
    va_list ap;

    if (sr->err)
        return;
    sr->err = err < 0 ? err : -EINVAL;
    va_start(ap, fmt);
    format_err(sr->errmsg, sr_offset(sr), fmt, ap);
    va_end(ap);
}

int sr_error(const struct stream_reader *sr)
{
    return sr->err;
}

const char *sr_errmsg(const struct stream_reader *sr)
{
    return sr->errmsg; /* "" until the first error */
}

uint64_t sr_offset(const struct stream_reader *sr)
{
    return sr->base + sr->pos;
}

size_t sr_remaining(const struct stream_reader *sr)
{
    return sr->len - sr->pos;
}

static void sr_fold_crc(struct stream_reader *sr)
{
    sr->crc = crc32c(sr->crc, sr->data + sr->crc_pos, sr->pos - sr->crc_pos);
    sr->crc_pos = sr->pos;
}

uint32_t sr_checksum(struct stream_reader *sr)
{
    sr_fold_crc(sr);
    return sr->crc;
}

void sr_checksum_reset(struct stream_reader *sr)
{
    sr->crc = 0;
    sr->crc_pos = sr->pos;
}

/*
 * One read() of at most n bytes into dst, waiting (bounded by the timeout) for the fd to become
 * readable. Returns bytes read (> 0) or a negative errno; end of file is -ENODATA.
 */
static ssize_t sr_read_some(struct stream_reader *sr, uint8_t *dst, size_t n)
{
    for (;;) {
        ssize_t r;

        if (sr->timeout_ms >= 0) {
            int w = wait_fd(sr->fd, POLLIN, sr->timeout_ms);

            if (w < 0)
                return w;
        }
        r = read(sr->fd, dst, n);
        if (r > 0)
            return r;
        if (r == 0)
            return -ENODATA;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int w = wait_fd(sr->fd, POLLIN, sr->timeout_ms);

            if (w < 0)
                return w;
            continue;
        }
        return -errno;
    }
}

static const char *read_errstr(int err)
{
    if (err == -ENODATA)
        return "short read: stream ended";
    if (err == -ETIMEDOUT)
        return "timed out waiting for the peer";
    return strerror(-err);
}

/*
 * Makes at least need (<= cap) bytes available at data[pos]. Returns 0 or a negative errno
 * without recording it; the caller decides whether the failure is sticky.
 */
static int sr_fill(struct stream_reader *sr, size_t need)
{
    if (sr->len - sr->pos >= need)
        return 0;
    if (sr->fd < 0 || need > sr->cap)
        return -ENODATA;
    /* Fold the consumed bytes into the CRC, then slide the unconsumed tail to the front. */
    sr_fold_crc(sr);
    memmove(sr->owned, sr->owned + sr->pos, sr->len - sr->pos);
    sr->base += sr->pos;
    sr->len -= sr->pos;
    sr->pos = sr->crc_pos = 0;
    while (sr->len < need) {
        ssize_t r = sr_read_some(sr, sr->owned + sr->len, sr->cap - sr->len);

        if (r < 0)
            return (int)r;
        sr->len += (size_t)r;
    }
    return 0;
}

/* fd reader, buffer empty: reads n bytes straight into dst (large RAM runs skip the copy). */
static void sr_read_direct(struct stream_reader *sr, uint8_t *dst, size_t n)
{
    sr_fold_crc(sr);
    sr->base += sr->len;
    sr->len = sr->pos = sr->crc_pos = 0;
    while (n) {
        ssize_t r = sr_read_some(sr, dst, n);

        if (r < 0) {
            sr_fail(sr, (int)r, "%s (%zu bytes missing)", read_errstr((int)r), n);
            return;
        }
        sr->crc = crc32c(sr->crc, dst, (size_t)r);
        sr->base += (uint64_t)r;
        dst += r;
        n -= (size_t)r;
    }
}

void sr_get_bytes(struct stream_reader *sr, void *dst, size_t n)
{
    uint8_t *d = dst;
    size_t avail;
    int r;

    if (sr->err || n == 0)
        return;
    avail = sr->len - sr->pos;
    if (n <= avail) {
        memcpy(d, sr->data + sr->pos, n);
        sr->pos += n;
        return;
    }
    if (sr->fd < 0) {
        sr_fail(sr, -ENODATA, "truncated: need %zu bytes, %zu left", n, avail);
        return;
    }
    memcpy(d, sr->data + sr->pos, avail);
    sr->pos += avail;
    d += avail;
    n -= avail;
    if (n >= sr->cap) {
        sr_read_direct(sr, d, n);
        return;
    }
    r = sr_fill(sr, n);
    if (r < 0) {
        sr_fail(sr, r, "%s", read_errstr(r));
        return;
    }
    memcpy(d, sr->data + sr->pos, n);
    sr->pos += n;
}

uint8_t sr_get_u8(struct stream_reader *sr)
{
    uint8_t b = 0;

    sr_get_bytes(sr, &b, 1);
    return sr->err ? 0 : b;
}

uint16_t sr_get_u16(struct stream_reader *sr)
{
    uint8_t b[2];

    sr_get_bytes(sr, b, sizeof(b));
    return sr->err ? 0 : be16_load(b);
}

uint32_t sr_get_u32(struct stream_reader *sr)
{
    uint8_t b[4];

    sr_get_bytes(sr, b, sizeof(b));
    return sr->err ? 0 : be32_load(b);
}

uint64_t sr_get_u64(struct stream_reader *sr)
{
    uint8_t b[8];

    sr_get_bytes(sr, b, sizeof(b));
    return sr->err ? 0 : be64_load(b);
}

void sr_get_name(struct stream_reader *sr, char *buf)
{
    uint8_t n = sr_get_u8(sr);

    buf[0] = '\0';
    if (sr->err)
        return;
    if (n == 0) {
        sr_fail(sr, -EBADMSG, "empty name");
        return;
    }
    sr_get_bytes(sr, buf, n);
    if (sr->err) {
        buf[0] = '\0';
        return;
    }
    /* Check all n bytes, not the C string: an embedded NUL must not shorten the name. */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] < 0x21 || (unsigned char)buf[i] > 0x7e) {
            buf[0] = '\0';
            sr_fail(sr, -EBADMSG, "name is not printable ASCII");
            return;
        }
    buf[n] = '\0';
}

int sr_peek_u8(struct stream_reader *sr)
{
    int r;

    if (sr->err)
        return sr->err;
    r = sr_fill(sr, 1);
    if (r == -ENODATA)
        return r;
    if (r < 0) {
        sr_fail(sr, r, "%s", read_errstr(r));
        return r;
    }
    return sr->data[sr->pos];
}
