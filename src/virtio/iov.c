/* iov.c: scatter-gather helpers: size, copy in/out at an offset, and sub-ranges. */
#include "virtio/iov.h"

#include <stdint.h>
#include <string.h>

size_t iov_size(const struct iovec *iov, unsigned n)
{
    size_t total = 0;

    for (unsigned i = 0; i < n; i++)
        total += iov[i].iov_len;
    return total;
}

size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t offset, void *buf, size_t len)
{
    size_t done = 0;

    for (unsigned i = 0; i < n && done < len; i++) {
        size_t seg;

        if (offset >= iov[i].iov_len) {
            offset -= iov[i].iov_len;
            continue;
        }
        seg = iov[i].iov_len - offset;
        if (seg > len - done)
            seg = len - done;
        memcpy((uint8_t *)buf + done, (const uint8_t *)iov[i].iov_base + offset, seg);
        done += seg;
        offset = 0;
    }
    return done;
}

size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t offset, const void *buf, size_t len)
{
    size_t done = 0;

    for (unsigned i = 0; i < n && done < len; i++) {
        size_t seg;

        if (offset >= iov[i].iov_len) {
            offset -= iov[i].iov_len;
            continue;
        }
        seg = iov[i].iov_len - offset;
        if (seg > len - done)
            seg = len - done;
        memcpy((uint8_t *)iov[i].iov_base + offset, (const uint8_t *)buf + done, seg);
        done += seg;
        offset = 0;
    }
    return done;
}

unsigned iov_slice(const struct iovec *iov, unsigned n, size_t offset, size_t len,
                   struct iovec *out, unsigned max_out)
{
    unsigned k = 0;

    if (!len)
        return 0;
    for (unsigned i = 0; i < n && len; i++) {
        size_t seg;

        if (offset >= iov[i].iov_len) {
            offset -= iov[i].iov_len;
            continue;
        }
        if (k >= max_out)
            return 0;
        seg = iov[i].iov_len - offset;
        if (seg > len)
            seg = len;
        out[k].iov_base = (uint8_t *)iov[i].iov_base + offset;
        out[k].iov_len = seg;
        k++;
        len -= seg;
        offset = 0;
    }
    return len ? 0 : k;
}
