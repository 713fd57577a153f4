/* raw.h: a raw disk image (regular file or block device) with whole-transfer positional I/O. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct raw_disk {
    int fd;
    uint64_t size; /* bytes */
    bool readonly;
    bool locked; /* holds its advisory lock */
};

/* A VMM waiting for an incoming migration opens its images without the lock (the source holds
 * it) and takes it when the guest moves here (raw_lock). Set before any raw_open. */
void raw_defer_locks(bool defer);
/* Take the advisory lock, retrying for up to timeout_ms (the source releases it when the
 * migration completes). 0 or -EWOULDBLOCK. */
int raw_lock(struct raw_disk *d, int timeout_ms);
/* Give the lock up (the guest moved away). */
void raw_unlock(struct raw_disk *d);

/* Open path (O_RDONLY if readonly) and take an advisory lock (exclusive, shared if readonly), so
 * two VMMs cannot write one image by mistake. 0 or -errno with a message in err. */
int raw_open(struct raw_disk *d, const char *path, bool readonly, char *err, size_t errlen);
void raw_close(struct raw_disk *d);

/* Transfer all of iov[0, n) (n <= IOV_MAX) at offset, retrying short transfers and EINTR.
 * 0, -EIO when the image ends early, or -errno. */
int raw_readv(struct raw_disk *d, uint64_t offset, const struct iovec *iov, unsigned n);
int raw_writev(struct raw_disk *d, uint64_t offset, const struct iovec *iov, unsigned n);
/* fdatasync. */
int raw_flush(struct raw_disk *d);
