/* iov.h: scatter-gather helpers over iovecs (buffers in guest RAM, as virtq_pop returns them). */
#pragma once

#include <stddef.h>
#include <sys/uio.h>

/* Total bytes of iov[0, n). */
size_t iov_size(const struct iovec *iov, unsigned n);

/* Copy up to len bytes starting at byte offset of the iov list into buf; returns bytes copied. */
size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t offset, void *buf, size_t len);

/* Copy up to len bytes from buf into the iov list at byte offset; returns bytes copied. The caller
 * marks guest pages dirty (virtq_mark_written). */
size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t offset, const void *buf,
                    size_t len);

/* Describe bytes [offset, offset + len) of the iov list with out[0, k); returns k, or 0 if the
 * range is empty, runs past the end, or needs more than max_out entries. */
unsigned iov_slice(const struct iovec *iov, unsigned n, size_t offset, size_t len,
                   struct iovec *out, unsigned max_out);
