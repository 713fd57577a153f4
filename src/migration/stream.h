/* stream.h: buffered byte streams (memory or fd) with sticky errors, timeouts and CRC-32C. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migration/format.h"

/*
 * Both ends keep a sticky error: the first failure (negative errno plus a message naming the
 * stream offset) wins, later calls do nothing and getters return 0. So a decoder may read several
 * values and test sr_error() once, but must test it before using a value as a length, index or
 * address.
 *
 * Both ends also keep a running CRC-32C of every byte written or consumed since the last
 * checksum reset (init, sw/sr_checksum_reset, or an EOF record written or read by section.c).
 * The CRC is folded in lazily, in bulk, when bytes leave the buffer.
 *
 * Error codes used by the reader:
 *   -ENODATA          input ended early (short read, truncated buffer, peer closed)
 *   -ETIMEDOUT        no byte arrived within the timeout
 *   -EBADMSG          malformed input (bad magic, tag, name, length, index, offset...)
 *   -EILSEQ           checksum mismatch
 *   -EPROTONOSUPPORT  a format, section or subsection version we do not read
 *   other -errno      read()/poll() failures, or what a post_load hook returned
 */

#define STREAM_FD_BUF_SIZE (64 * 1024)
#define STREAM_ERRMSG_LEN  192

struct stream_writer {
    int fd;          /* -1: growable memory buffer */
    uint8_t *buf;    /* pending bytes (fd) or the whole output (memory) */
    size_t cap;      /* allocated size of buf */
    size_t len;      /* bytes in buf */
    size_t crc_pos;  /* buf[crc_pos, len) not yet folded into crc */
    uint32_t crc;    /* CRC-32C since the last checksum reset */
    uint64_t base;   /* stream offset of buf[0] (bytes already handed to the fd) */
    size_t max_size; /* memory: refuse to grow past this */
    int timeout_ms;  /* fd: < 0 waits forever */
    bool not_socket; /* fd: send(MSG_NOSIGNAL) failed with ENOTSOCK, use write() */
    int err;
    char errmsg[STREAM_ERRMSG_LEN];
};

struct stream_reader {
    int fd;              /* -1: caller's memory buffer */
    const uint8_t *data; /* memory: caller's buffer; fd: == owned */
    uint8_t *owned;      /* fd: our buffer */
    size_t cap;          /* fd: size of owned */
    size_t len;          /* valid bytes in data */
    size_t pos;          /* next unconsumed byte in data */
    size_t crc_pos;      /* data[crc_pos, pos) not yet folded into crc */
    uint32_t crc;        /* CRC-32C of consumed bytes since the last checksum reset */
    uint64_t base;       /* stream offset of data[0] */
    int timeout_ms;      /* fd: < 0 waits forever */
    int err;
    char errmsg[STREAM_ERRMSG_LEN];
};

/* ---- writer ---- */

/* Writes go to fd (not owned, not closed) through a STREAM_FD_BUF_SIZE buffer. 0 or -ENOMEM. */
int stream_writer_init_fd(struct stream_writer *sw, int fd);
/* Writes go to a growable memory buffer that starts at initial_cap bytes. 0 or -ENOMEM. */
int stream_writer_init_buf(struct stream_writer *sw, size_t initial_cap);
/* Frees the buffer; does not flush and does not close the fd. Safe on a zeroed struct. */
void stream_writer_destroy(struct stream_writer *sw);

/* A memory writer refuses (-ENOSPC) to grow past max bytes. Default: SIZE_MAX / 2. */
void sw_set_max_size(struct stream_writer *sw, size_t max);
/*
 * An fd writer fails with -ETIMEDOUT when a socket accepts no byte for ms milliseconds (a stalled
 * peer). For files and pipes it only bounds the wait before each write(). < 0: no timeout.
 */
void sw_set_timeout_ms(struct stream_writer *sw, int ms);

void sw_put_u8(struct stream_writer *sw, uint8_t v);
void sw_put_u16(struct stream_writer *sw, uint16_t v);
void sw_put_u32(struct stream_writer *sw, uint32_t v);
void sw_put_u64(struct stream_writer *sw, uint64_t v);
void sw_put_bytes(struct stream_writer *sw, const void *p, size_t n);
/* u8 length + bytes; a name must be 1..STREAM_NAME_MAX printable ASCII characters. */
void sw_put_name(struct stream_writer *sw, const char *name);

/* True if name is 1..STREAM_NAME_MAX printable ASCII characters (0x21..0x7e). */
bool stream_name_ok(const char *name);

/* Pushes buffered bytes to the fd (no-op for memory). Returns sw_error(). */
int sw_flush(struct stream_writer *sw);
int sw_error(const struct stream_writer *sw);
/* The first error's message, naming the stream offset; "" while there is no error. */
const char *sw_errmsg(const struct stream_writer *sw);
/* Records err (negative errno) unless an error is already recorded. */
__attribute__((format(printf, 3, 4))) void sw_fail(struct stream_writer *sw, int err,
                                                   const char *fmt, ...);

/* Bytes written since init (or sw_buf_reset). */
uint64_t sw_offset(const struct stream_writer *sw);
/* CRC-32C of the bytes written since the last checksum reset, and the reset itself. */
uint32_t sw_checksum(struct stream_writer *sw);
void sw_checksum_reset(struct stream_writer *sw);

/* Memory writer: the bytes written so far (valid until the next put or reset). */
const uint8_t *sw_buf_data(const struct stream_writer *sw, size_t *len);
/* Memory writer: empty it for reuse (keeps capacity, clears the error and the checksum). */
void sw_buf_reset(struct stream_writer *sw);

/* ---- reader ---- */

/* Reads from fd (not owned) through a STREAM_FD_BUF_SIZE buffer. 0 or -ENOMEM. */
int stream_reader_init_fd(struct stream_reader *sr, int fd);
/* Reads the caller's buffer in place; it must outlive the reader. */
void stream_reader_init_buf(struct stream_reader *sr, const void *buf, size_t len);
void stream_reader_destroy(struct stream_reader *sr);

/*
 * fd reader: fail with -ETIMEDOUT when no byte arrives for ms milliseconds (an inactivity
 * timeout per wait, not a deadline for the whole stream). < 0 waits forever (the default).
 */
void sr_set_timeout_ms(struct stream_reader *sr, int ms);

uint8_t sr_get_u8(struct stream_reader *sr);
uint16_t sr_get_u16(struct stream_reader *sr);
uint32_t sr_get_u32(struct stream_reader *sr);
uint64_t sr_get_u64(struct stream_reader *sr);
/* Fills dst with exactly n bytes, or fails (dst contents then unspecified). */
void sr_get_bytes(struct stream_reader *sr, void *dst, size_t n);
/* Reads a name written by sw_put_name into buf[STREAM_NAME_MAX + 1], NUL-terminated. */
void sr_get_name(struct stream_reader *sr, char *buf);
/*
 * The next byte without consuming it, or a negative errno. A plain end of input (-ENODATA) is
 * not recorded as the sticky error; I/O errors and timeouts are.
 */
int sr_peek_u8(struct stream_reader *sr);

int sr_error(const struct stream_reader *sr);
/* The first error's message, naming the stream offset; "" while there is no error. */
const char *sr_errmsg(const struct stream_reader *sr);
__attribute__((format(printf, 3, 4))) void sr_fail(struct stream_reader *sr, int err,
                                                   const char *fmt, ...);

/* Bytes consumed since init. */
uint64_t sr_offset(const struct stream_reader *sr);
/* Memory reader: bytes left unconsumed. */
size_t sr_remaining(const struct stream_reader *sr);
uint32_t sr_checksum(struct stream_reader *sr);
void sr_checksum_reset(struct stream_reader *sr);
