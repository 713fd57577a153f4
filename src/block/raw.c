/* raw.c: raw disk images: open and lock, size, full preadv/pwritev loops, fdatasync. */
#include "block/raw.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

static bool defer_locks;

void raw_defer_locks(bool defer)
{
    defer_locks = defer;
}

int raw_lock(struct raw_disk *d, int timeout_ms)
{
    for (int waited = 0;; waited += 10) {
        if (flock(d->fd, (d->readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0) {
            d->locked = true;
            return 0;
        }
        if (errno != EWOULDBLOCK || waited >= timeout_ms)
            return -EWOULDBLOCK;
        usleep(10 * 1000);
    }
}

void raw_unlock(struct raw_disk *d)
{
    if (d->locked && flock(d->fd, LOCK_UN) == 0)
        d->locked = false;
}

int raw_open(struct raw_disk *d, const char *path, bool readonly, char *err, size_t errlen)
{
    struct stat st;
    int r;

    d->fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    d->readonly = readonly;
    d->size = 0;
    if (d->fd < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot open '%s': %s", path, strerror(errno));
        return r;
    }
    if (fstat(d->fd, &st) < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot stat '%s': %s", path, strerror(errno));
        goto err;
    }
    if (S_ISREG(st.st_mode)) {
        d->size = (uint64_t)st.st_size;
    } else if (S_ISBLK(st.st_mode)) {
        if (ioctl(d->fd, BLKGETSIZE64, &d->size) < 0) {
            r = -errno;
            snprintf(err, errlen, "cannot size '%s': %s", path, strerror(errno));
            goto err;
        }
    } else {
        r = -EINVAL;
        snprintf(err, errlen, "'%s' is neither a regular file nor a block device", path);
        goto err;
    }
    d->locked = false;
    if (!defer_locks && raw_lock(d, 0) < 0) {
        r = -EWOULDBLOCK;
        snprintf(err, errlen, "'%s' is in use by another process (locked)", path);
        goto err;
    }
    return 0;

err:
    close(d->fd);
    d->fd = -1;
    return r;
}

void raw_close(struct raw_disk *d)
{
    if (d->fd >= 0)
        close(d->fd);
    d->fd = -1;
}

/* Drop the first done bytes of v[0, *n). */
static void advance(struct iovec *v, unsigned *n, unsigned *first, size_t done)
{
    while (*first < *n && done >= v[*first].iov_len) {
        done -= v[*first].iov_len;
        (*first)++;
    }
    if (*first < *n) {
        v[*first].iov_base = (char *)v[*first].iov_base + done;
        v[*first].iov_len -= done;
    }
}

static int transfer(struct raw_disk *d, uint64_t offset, const struct iovec *iov, unsigned n,
                    bool write)
{
    struct iovec v[IOV_MAX];
    unsigned first = 0;

    if (n > IOV_MAX)
        return -EINVAL;
    memcpy(v, iov, n * sizeof(*iov));
    while (first < n) {
        ssize_t r;

        if (offset > (uint64_t)INT64_MAX)
            return -EINVAL;
        if (write)
            r = pwritev(d->fd, v + first, (int)(n - first), (off_t)offset);
        else
            r = preadv(d->fd, v + first, (int)(n - first), (off_t)offset);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0) {
            /* end of image: a read past EOF, or a write the device refuses to extend */
            while (first < n && v[first].iov_len == 0)
                first++;
            if (first < n)
                return -EIO;
            break;
        }
        offset += (uint64_t)r;
        advance(v, &n, &first, (size_t)r);
    }
    return 0;
}

int raw_readv(struct raw_disk *d, uint64_t offset, const struct iovec *iov, unsigned n)
{
    return transfer(d, offset, iov, n, false);
}

int raw_writev(struct raw_disk *d, uint64_t offset, const struct iovec *iov, unsigned n)
{
    if (d->readonly)
        return -EROFS;
    return transfer(d, offset, iov, n, true);
}

int raw_flush(struct raw_disk *d)
{
    if (fdatasync(d->fd) < 0)
        return -errno;
    return 0;
}
