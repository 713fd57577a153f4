/* virtio_blk.c: virtio-blk: request parsing and checking, synchronous raw I/O, config, vmstate. */
#include "block/virtio_blk.h"

#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/vm.h"
#include "migration/vmstate.h"
#include "virtio/devspec.h"
#include "virtio/iov.h"
#include "virtio/virtio.h"

VIRTIO_MMIO_FIRST_MEMBER(struct virtio_blk, vdev);

int virtio_blk_parse(const struct iovec *iov, const struct virtq_chain *c,
                     struct virtio_blk_req *req, const char **why)
{
    const struct iovec *in = iov + c->n_out;
    uint8_t hdr[VIRTIO_BLK_HDR_BYTES];
    uint32_t type;
    uint64_t sector;

    memset(req, 0, offsetof(struct virtio_blk_req, out));
    req->n_out = req->n_in = 0;
    req->out_len = req->in_len = 0;
    if (c->out_len < VIRTIO_BLK_HDR_BYTES) {
        *why = "request header shorter than 16 bytes";
        return -EINVAL;
    }
    if (c->in_len < 1) {
        *why = "no writable status byte";
        return -EINVAL;
    }
    iov_to_buf(iov, c->n_out, 0, hdr, sizeof(hdr));
    memcpy(&type, hdr, 4);
    memcpy(&sector, hdr + 8, 8);
    req->type = le32toh(type);
    req->sector = le64toh(sector);
    req->out_len = c->out_len - VIRTIO_BLK_HDR_BYTES;
    req->in_len = c->in_len - 1;
    /* The slices cannot fail: they cover existing bytes with at most as many entries as the
     * chain has, and the arrays hold a whole queue's worth. */
    if (req->out_len)
        req->n_out = iov_slice(iov, c->n_out, VIRTIO_BLK_HDR_BYTES, req->out_len, req->out,
                               VIRTIO_BLK_QUEUE_MAX);
    if (req->in_len)
        req->n_in = iov_slice(in, c->n_in, 0, req->in_len, req->in, VIRTIO_BLK_QUEUE_MAX);
    if (iov_slice(in, c->n_in, req->in_len, 1, &req->status, 1) != 1 ||
        (req->out_len && !req->n_out) || (req->in_len && !req->n_in)) {
        *why = "chain too fragmented";
        return -EINVAL;
    }
    return 0;
}

/* Is [sector, sector + len/512) inside the disk, len a whole number of sectors? */
static bool range_ok(const struct virtio_blk *b, uint64_t sector, uint64_t len)
{
    uint64_t n = len / VIRTIO_BLK_SECTOR;

    return len % VIRTIO_BLK_SECTOR == 0 && sector <= b->capacity && n <= b->capacity - sector;
}

static uint8_t do_read(struct virtio_blk *b, struct virtio_blk_req *req, uint32_t *written)
{
    int r;

    if (!range_ok(b, req->sector, req->in_len)) {
        log_debug("virtio-blk%u: read of %llu bytes at sector %llu out of range", b->instance,
                  (unsigned long long)req->in_len, (unsigned long long)req->sector);
        return VIRTIO_BLK_S_IOERR;
    }
    r = raw_readv(&b->disk, req->sector * VIRTIO_BLK_SECTOR, req->in, req->n_in);
    /* Even a failed read may have filled part of the buffers. */
    virtq_mark_written(&b->vdev.vq[0], req->in, req->n_in, req->in_len);
    if (r) {
        log_warn("virtio-blk%u: read at sector %llu: %s", b->instance,
                 (unsigned long long)req->sector, strerror(-r));
        return VIRTIO_BLK_S_IOERR;
    }
    b->nreads++;
    *written = (uint32_t)req->in_len;
    return VIRTIO_BLK_S_OK;
}

/* raw_writev takes at most IOV_MAX buffers at a time; a hook's copy may come in more. */
static int write_all(struct virtio_blk *b, uint64_t off, const struct iovec *iov, unsigned n)
{
    while (n) {
        unsigned k = n < IOV_MAX ? n : IOV_MAX;
        int r = raw_writev(&b->disk, off, iov, k);
        if (r)
            return r;
        off += iov_size(iov, k);
        iov += k;
        n -= k;
    }
    return 0;
}

static uint8_t do_write(struct virtio_blk *b, struct virtio_blk_req *req)
{
    const struct blk_write_hook h = b->write_hook; /* fixed for the request: we hold the lock */
    uint64_t off = req->sector * VIRTIO_BLK_SECTOR;
    const struct iovec *src = req->out;
    unsigned nsrc = req->n_out;
    int r;

    if (b->readonly) {
        log_debug("virtio-blk%u: write to a read-only disk", b->instance);
        return VIRTIO_BLK_S_IOERR;
    }
    if (!range_ok(b, req->sector, req->out_len)) {
        log_debug("virtio-blk%u: write of %llu bytes at sector %llu out of range", b->instance,
                  (unsigned long long)req->out_len, (unsigned long long)req->sector);
        return VIRTIO_BLK_S_IOERR;
    }
    /* Replication first: a write the hook refuses never reaches the image, and one it took is
     * written from its copy. */
    if (h.write) {
        r = h.write(h.opaque, off, req->out, req->n_out, req->out_len);
        if (r < 0) {
            log_warn("virtio-blk%u: write hook at sector %llu: %s", b->instance,
                     (unsigned long long)req->sector, strerror(-r));
            return VIRTIO_BLK_S_IOERR;
        }
        if (h.source) {
            const struct iovec *copy = NULL;
            unsigned k = h.source(h.opaque, &copy);
            if (k) {
                src = copy;
                nsrc = k;
            }
        }
    }
    r = write_all(b, off, src, nsrc);
    if (h.done)
        h.done(h.opaque, off, req->out_len, r);
    /* Without FLUSH the driver sees a write-through disk (spec 5.2.6.2): sync every write. */
    if (!r && !virtio_mmio_has_feature(&b->vdev, VIRTIO_BLK_F_FLUSH))
        r = raw_flush(&b->disk);
    if (r) {
        log_warn("virtio-blk%u: write at sector %llu: %s", b->instance,
                 (unsigned long long)req->sector, strerror(-r));
        return VIRTIO_BLK_S_IOERR;
    }
    b->nwrites++;
    return VIRTIO_BLK_S_OK;
}

uint8_t virtio_blk_execute(struct virtio_blk *b, struct virtio_blk_req *req, uint32_t *written)
{
    uint8_t st = VIRTIO_BLK_S_OK;
    size_t n;

    *written = 0;
    switch (req->type) {
    case VIRTIO_BLK_T_IN:
        st = do_read(b, req, written);
        break;
    case VIRTIO_BLK_T_OUT:
        st = do_write(b, req);
        break;
    case VIRTIO_BLK_T_FLUSH:
        if (raw_flush(&b->disk) < 0)
            st = VIRTIO_BLK_S_IOERR;
        b->nflushes++;
        break;
    case VIRTIO_BLK_T_GET_ID:
        /* Up to 20 bytes, NUL-padded only if shorter (spec 5.2.6). */
        n = iov_from_buf(req->in, req->n_in, 0, b->id, VIRTIO_BLK_ID_BYTES);
        virtq_mark_written(&b->vdev.vq[0], req->in, req->n_in, n);
        *written = (uint32_t)n;
        break;
    default:
        st = VIRTIO_BLK_S_UNSUPP;
        break;
    }
    if (st == VIRTIO_BLK_S_IOERR)
        b->nerrors++;
    return st;
}

static void blk_notify(struct virtio_mmio *vd, unsigned qi)
{
    struct virtio_blk *b = (struct virtio_blk *)vd;
    struct virtq *q = &vd->vq[0];
    struct virtq_chain c;
    bool used = false;
    int r;

    for (;;) {
        while ((r = virtq_pop(q, &c, b->iov, VIRTIO_BLK_QUEUE_MAX)) > 0) {
            const char *why = "";
            uint32_t written;
            uint8_t st;

            if (virtio_blk_parse(b->iov, &c, &b->req, &why) < 0) {
                virtio_mmio_needs_reset(vd, "queue 0: head %u: %s", c.head, why);
                goto out;
            }
            st = virtio_blk_execute(b, &b->req, &written);
            iov_from_buf(&b->req.status, 1, 0, &st, 1);
            virtq_mark_written(q, &b->req.status, 1, 1);
            virtq_push(q, c.head, written + 1);
            used = true;
        }
        if (r < 0) {
            virtio_mmio_queue_broken(vd, 0);
            break;
        }
        virtq_enable_kicks(q);
        if (!virtq_avail_pending(q))
            break;
    }
out:
    if (used)
        virtio_mmio_used(vd, 0);
}

static const struct virtio_device_ops blk_ops = {
    .name = "virtio-blk",
    .device_id = VIRTIO_ID_BLOCK,
    .nqueues = 1,
    .queue_max = VIRTIO_BLK_QUEUE_MAX,
    .notify = blk_notify,
};

static void put_le32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

static void put_le64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}

static void fill_config(struct virtio_blk *b)
{
    struct virtio_mmio *vd = &b->vdev;

    vd->device_features = VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) |
                          VIRTIO_BIT(VIRTIO_BLK_F_FLUSH);
    if (b->readonly)
        vd->device_features |= VIRTIO_BIT(VIRTIO_BLK_F_RO);
    memset(vd->config, 0, sizeof(vd->config));
    put_le64(vd->config + VIRTIO_BLK_CFG_CAPACITY, b->capacity);
    put_le32(vd->config + VIRTIO_BLK_CFG_SEG_MAX, VIRTIO_BLK_SEG_MAX);
    put_le32(vd->config + VIRTIO_BLK_CFG_BLK_SIZE, VIRTIO_BLK_SECTOR);
    vd->config_len = VIRTIO_BLK_CFG_LEN;
}

/* The incoming state must describe this very disk: same size, same read-only mode. */
static int blk_post_load(void *opaque, uint32_t version_id)
{
    struct virtio_blk *b = opaque;

    if (b->capacity != b->disk.size / VIRTIO_BLK_SECTOR || b->readonly != b->disk.readonly) {
        log_err("virtio-blk%u: incoming disk has %llu sectors%s, ours %llu%s", b->instance,
                (unsigned long long)b->capacity, b->readonly ? " (read-only)" : "",
                (unsigned long long)(b->disk.size / VIRTIO_BLK_SECTOR),
                b->disk.readonly ? " (read-only)" : "");
        return -EINVAL;
    }
    return 0;
}

static const struct vmstate_field blk_fields[] = {
    VMS_STRUCT(struct virtio_blk, vdev, struct virtio_mmio, &virtio_mmio_vmsd),
    VMS_U64(struct virtio_blk, capacity),
    VMS_BOOL(struct virtio_blk, readonly),
    VMS_END,
};

static const struct vmstate_desc blk_vmsd = {
    .name = "virtio-blk",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = blk_fields,
    .post_load = blk_post_load,
};

static void blk_destroy(void *opaque)
{
    struct virtio_blk *b = opaque;

    virtio_mmio_uninit(&b->vdev);
    raw_close(&b->disk);
    free(b);
}

struct virtio_blk *virtio_blk_find(struct vm *vm, uint32_t instance)
{
    return vm_device_state(vm, blk_ops.name, instance);
}

int virtio_blk_lock_all(struct vm *vm, int timeout_ms)
{
    int failed = 0;

    for (uint32_t i = 0; i < VIRTIO_MMIO_SLOTS; i++) {
        struct virtio_blk *b = virtio_blk_find(vm, i);
        if (!b)
            break;
        if (!b->disk.locked && raw_lock(&b->disk, timeout_ms) < 0) {
            log_warn("virtio-blk%u: image still locked by another process", i);
            failed++;
        }
    }
    return failed;
}

void virtio_blk_unlock_all(struct vm *vm)
{
    for (uint32_t i = 0; i < VIRTIO_MMIO_SLOTS; i++) {
        struct virtio_blk *b = virtio_blk_find(vm, i);
        if (!b)
            break;
        raw_unlock(&b->disk);
    }
}

void virtio_blk_set_write_hook(struct virtio_blk *b, const struct blk_write_hook *hook)
{
    pthread_mutex_lock(&b->vdev.lock);
    if (hook)
        b->write_hook = *hook;
    else
        memset(&b->write_hook, 0, sizeof(b->write_hook));
    pthread_mutex_unlock(&b->vdev.lock);
}

int virtio_blk_create(struct vm *vm, const char *spec, char *err, size_t errlen)
{
    static const char *const keys[] = {"path", "readonly"};
    char *val[2], why[200];
    struct virtio_blk *b;
    struct vm_device dev;
    bool ro = false;
    int r;

    r = devspec_parse("--disk", spec, keys, 2, val, err, errlen);
    if (r)
        return r;
    r = -EINVAL;
    if (!val[0]) {
        snprintf(err, errlen, "--disk: path=FILE is required");
        goto out_spec;
    }
    if (val[1] && devspec_bool(val[1], &ro)) {
        snprintf(err, errlen, "--disk: readonly expects on or off, got '%s'", val[1]);
        goto out_spec;
    }
    b = calloc(1, sizeof(*b));
    if (!b) {
        r = -ENOMEM;
        snprintf(err, errlen, "--disk: out of memory");
        goto out_spec;
    }
    b->disk.fd = -1;
    while (virtio_blk_find(vm, b->instance))
        b->instance++;
    r = raw_open(&b->disk, val[0], ro, why, sizeof(why));
    if (r) {
        snprintf(err, errlen, "--disk: %s", why);
        goto out_free;
    }
    b->readonly = ro;
    b->capacity = b->disk.size / VIRTIO_BLK_SECTOR;
    snprintf(b->id, sizeof(b->id), "tandem-disk%u", b->instance);
    r = virtio_mmio_init(&b->vdev, vm, &blk_ops, b);
    if (r) {
        snprintf(err, errlen, "--disk: no virtio-mmio slot: %s", strerror(-r));
        goto out_disk;
    }
    fill_config(b);
    virtio_mmio_fill_vm_device(&b->vdev, &dev, b->instance, &blk_vmsd, blk_destroy);
    r = vm_add_device(vm, &dev);
    if (r) {
        snprintf(err, errlen, "--disk: cannot add the device: %s", strerror(-r));
        virtio_mmio_uninit(&b->vdev);
        goto out_disk;
    }
    log_info("virtio-blk%u: '%s', %llu sectors%s", b->instance, val[0],
             (unsigned long long)b->capacity, ro ? ", read-only" : "");
    devspec_free(val, 2);
    return 0;

out_disk:
    raw_close(&b->disk);
out_free:
    free(b);
out_spec:
    devspec_free(val, 2);
    return r;
}
