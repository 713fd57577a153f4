/* disk.c: COLO disk replication: hash-driven initial sync and per-epoch write logs. */
#include "colo/disk.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "block/raw.h"
#include "block/virtio_blk.h"
#include "colo/colo.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/vm.h"
#include "migration/devstate.h"
#include "migration/section.h"
#include "migration/stream.h"

#define MAX_DISKS     8
#define REC_END       0
#define REC_WRITE     1
#define REC_MAX_LEN   (4u << 20)
#define SYNC_SECTION  0x100 /* section ids: 0x100 + disk (sync), 0x200 + disk (epoch log) */
#define EPOCH_SECTION 0x200

struct wrec {
    struct wrec *next;
    uint64_t offset;
    uint32_t len;
    uint8_t data[];
};

struct wlog {
    struct wrec *head, *tail;
    uint64_t bytes;
};

struct cdisk {
    struct virtio_blk *blk;
    uint32_t index;
    pthread_mutex_t lock;
    /* primary */
    bool hooked;
    bool tracking;        /* initial sync: mark written chunks */
    bool logging;         /* COLO: log writes per epoch */
    unsigned long *dirty; /* chunks to send (initial sync) */
    uint64_t nchunks;
    bool sync_started;
    struct wlog cur, closed;
    /* secondary */
    struct wlog staged;
};

static struct cdisk disks[MAX_DISKS];
static unsigned ndisks;

static void wlog_free(struct wlog *l)
{
    while (l->head) {
        struct wrec *r = l->head;
        l->head = r->next;
        free(r);
    }
    l->tail = NULL;
    l->bytes = 0;
}

static void wlog_append(struct wlog *l, struct wrec *r)
{
    r->next = NULL;
    if (l->tail)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
    l->bytes += r->len;
}

static unsigned scan(struct vm *vm)
{
    ndisks = 0;
    for (uint32_t i = 0; i < MAX_DISKS; i++) {
        struct virtio_blk *b = virtio_blk_find(vm, i);
        if (!b)
            break;
        if (disks[i].blk != b) {
            memset(&disks[i], 0, sizeof(disks[i]));
            pthread_mutex_init(&disks[i].lock, NULL);
            disks[i].blk = b;
            disks[i].index = i;
        }
        ndisks = i + 1;
    }
    return ndisks;
}

unsigned colo_disk_count(struct vm *vm)
{
    return scan(vm);
}

static uint64_t chunks_of(const struct cdisk *d)
{
    return (d->blk->disk.size + COLO_DISK_CHUNK - 1) / COLO_DISK_CHUNK;
}

/* ---- the write hook (primary) ---- */

static int on_write(void *opaque, uint64_t offset, const struct iovec *iov, unsigned n,
                    uint64_t len)
{
    struct cdisk *d = opaque;
    int r = 0;

    pthread_mutex_lock(&d->lock);
    if (d->tracking && len) {
        for (uint64_t c = offset / COLO_DISK_CHUNK;
             c <= (offset + len - 1) / COLO_DISK_CHUNK && c < d->nchunks; c++)
            bitmap_set(d->dirty, c);
    }
    if (d->logging && len) {
        struct wrec *w;
        if (len > REC_MAX_LEN || d->cur.bytes + len > COLO_DISK_LOG_HARD ||
            !(w = malloc(sizeof(*w) + len))) {
            r = -ENOSPC;
        } else {
            size_t off = 0;
            for (unsigned i = 0; i < n; i++) {
                memcpy(w->data + off, iov[i].iov_base, iov[i].iov_len);
                off += iov[i].iov_len;
            }
            w->offset = offset;
            w->len = (uint32_t)len;
            wlog_append(&d->cur, w);
            if (d->cur.bytes > COLO_DISK_LOG_SOFT)
                colo_request_checkpoint(); /* keep the log (and the next pause) small */
        }
    }
    pthread_mutex_unlock(&d->lock);
    return r;
}

static void hook(struct cdisk *d, bool on)
{
    struct blk_write_hook h = {.write = on_write, .opaque = d};

    virtio_blk_set_write_hook(d->blk, on ? &h : NULL);
    d->hooked = on;
}

/* ---- hashes ---- */

static int hash_disk(struct cdisk *d, uint8_t *out)
{
    uint8_t *buf = malloc(COLO_DISK_CHUNK);
    uint64_t n = chunks_of(d), size = d->blk->disk.size;

    if (!buf)
        return -ENOMEM;
    for (uint64_t c = 0; c < n; c++) {
        size_t len = size - c * COLO_DISK_CHUNK < COLO_DISK_CHUNK
                         ? (size_t)(size - c * COLO_DISK_CHUNK)
                         : COLO_DISK_CHUNK;
        ssize_t got = pread(d->blk->disk.fd, buf, len, (off_t)(c * COLO_DISK_CHUNK));
        if (got != (ssize_t)len ||
            gnutls_hash_fast(GNUTLS_DIG_SHA256, buf, len, out + c * COLO_DISK_HASH_LEN) < 0) {
            free(buf);
            return got < 0 ? -errno : -EIO;
        }
    }
    free(buf);
    return 0;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
}

int colo_disk_send_hashes(struct vm *vm, int fd)
{
    scan(vm);
    for (unsigned i = 0; i < ndisks; i++) {
        struct cdisk *d = &disks[i];
        uint64_t n = chunks_of(d), size = d->blk->disk.size;
        size_t len = 24 + n * COLO_DISK_HASH_LEN;
        uint8_t *msg = malloc(len);
        int r;

        if (!msg)
            return -ENOMEM;
        put32(msg, RP_MSG_DISK_HASHES);
        put32(msg + 4, i);
        put32(msg + 8, (uint32_t)(size >> 32));
        put32(msg + 12, (uint32_t)size);
        put32(msg + 16, COLO_DISK_CHUNK);
        put32(msg + 20, (uint32_t)n);
        r = hash_disk(d, msg + 24);
        for (size_t off = 0; !r && off < len;) {
            ssize_t w = send(fd, msg + off, len - off, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                r = -errno;
            else
                off += (size_t)w;
        }
        free(msg);
        if (r)
            return r;
        log_info("colo: disk%u: sent %llu chunk hashes", i, (unsigned long long)n);
    }
    return 0;
}

int colo_disk_sync_begin(struct vm *vm, struct stream_reader *rp, char *err, size_t errlen)
{
    scan(vm);
    for (unsigned i = 0; i < ndisks; i++) {
        struct cdisk *d = &disks[i];
        uint64_t n = chunks_of(d), size, differ = 0;
        uint8_t *mine, theirs[COLO_DISK_HASH_LEN];
        uint32_t code, idx, chunk, count;
        int r;

        code = sr_get_u32(rp);
        idx = sr_get_u32(rp);
        size = sr_get_u64(rp);
        chunk = sr_get_u32(rp);
        count = sr_get_u32(rp);
        if (sr_error(rp)) {
            snprintf(err, errlen, "disk hashes: %s", sr_errmsg(rp));
            return sr_error(rp);
        }
        if (code != RP_MSG_DISK_HASHES || idx != i || size != d->blk->disk.size ||
            chunk != COLO_DISK_CHUNK || count != n) {
            snprintf(err, errlen,
                     "disk%u: the secondary's disk does not match (size %llu vs %llu bytes)", i,
                     (unsigned long long)size, (unsigned long long)d->blk->disk.size);
            return -EINVAL;
        }
        d->nchunks = n;
        d->dirty = calloc(BITMAP_LONGS(n), sizeof(unsigned long));
        mine = malloc(n * COLO_DISK_HASH_LEN);
        if (!d->dirty || !mine) {
            free(mine);
            return -ENOMEM;
        }
        /* Track writes before hashing, so a chunk written meanwhile is sent regardless. */
        pthread_mutex_lock(&d->lock);
        d->tracking = true;
        d->sync_started = false;
        pthread_mutex_unlock(&d->lock);
        hook(d, true);
        r = hash_disk(d, mine);
        for (uint64_t c = 0; !r && c < n; c++) {
            sr_get_bytes(rp, theirs, sizeof(theirs));
            if (sr_error(rp)) {
                r = sr_error(rp);
                break;
            }
            if (memcmp(theirs, mine + c * COLO_DISK_HASH_LEN, COLO_DISK_HASH_LEN)) {
                pthread_mutex_lock(&d->lock);
                bitmap_set(d->dirty, c);
                pthread_mutex_unlock(&d->lock);
                differ++;
            }
        }
        free(mine);
        if (r) {
            snprintf(err, errlen, "disk%u: hashing: %s", i, strerror(-r));
            return r;
        }
        log_info("colo: disk%u: %llu of %llu chunks differ", i, (unsigned long long)differ,
                 (unsigned long long)n);
    }
    return 0;
}

int colo_disk_sync_send(struct vm *vm, struct stream_writer *sw, bool final)
{
    uint8_t *buf = malloc(COLO_DISK_CHUNK);

    if (!buf)
        return -ENOMEM;
    for (unsigned i = 0; i < ndisks; i++) {
        struct cdisk *d = &disks[i];
        uint64_t size = d->blk->disk.size;
        enum stream_tag tag = !d->sync_started ? STREAM_TAG_SECTION_START
                              : final          ? STREAM_TAG_SECTION_END
                                               : STREAM_TAG_SECTION_PART;

        if (!d->dirty)
            continue;
        stream_put_section_header(sw, tag, SYNC_SECTION + i, "disk-sync", i, 1);
        d->sync_started = true;
        for (uint64_t c = 0; c < d->nchunks; c++) {
            bool dirty;
            pthread_mutex_lock(&d->lock);
            dirty = bitmap_test(d->dirty, c);
            bitmap_clear_bit(d->dirty, c);
            pthread_mutex_unlock(&d->lock);
            if (!dirty)
                continue;
            uint64_t off = c * COLO_DISK_CHUNK;
            uint32_t len = size - off < COLO_DISK_CHUNK ? (uint32_t)(size - off) : COLO_DISK_CHUNK;
            if (pread(d->blk->disk.fd, buf, len, (off_t)off) != (ssize_t)len) {
                sw_fail(sw, -EIO, "disk%u: cannot read chunk %llu", i, (unsigned long long)c);
                break;
            }
            sw_put_u8(sw, REC_WRITE);
            sw_put_u64(sw, off);
            sw_put_u32(sw, len);
            sw_put_bytes(sw, buf, len);
        }
        sw_put_u8(sw, REC_END);
        stream_put_section_footer(sw, SYNC_SECTION + i);
        if (final) {
            pthread_mutex_lock(&d->lock);
            d->tracking = false;
            pthread_mutex_unlock(&d->lock);
            free(d->dirty);
            d->dirty = NULL;
        }
    }
    free(buf);
    return sw_error(sw);
}

void colo_disk_epochs_begin(struct vm *vm)
{
    scan(vm);
    for (unsigned i = 0; i < ndisks; i++) {
        struct cdisk *d = &disks[i];
        pthread_mutex_lock(&d->lock);
        d->logging = true;
        pthread_mutex_unlock(&d->lock);
        if (!d->hooked)
            hook(d, true);
    }
}

void colo_disk_close_epoch(struct vm *vm)
{
    for (unsigned i = 0; i < ndisks; i++) {
        struct cdisk *d = &disks[i];
        pthread_mutex_lock(&d->lock);
        wlog_free(&d->closed);
        d->closed = d->cur;
        memset(&d->cur, 0, sizeof(d->cur));
        pthread_mutex_unlock(&d->lock);
    }
}

int colo_disk_save_epoch(struct vm *vm, struct stream_writer *sw)
{
    for (unsigned i = 0; i < ndisks; i++) {
        struct cdisk *d = &disks[i];
        /* START and END: one complete section per checkpoint (the loader wants it closed). */
        stream_put_section_header(sw, STREAM_TAG_SECTION_START, EPOCH_SECTION + i, "disk", i, 1);
        for (struct wrec *w = d->closed.head; w; w = w->next) {
            sw_put_u8(sw, REC_WRITE);
            sw_put_u64(sw, w->offset);
            sw_put_u32(sw, w->len);
            sw_put_bytes(sw, w->data, w->len);
        }
        sw_put_u8(sw, REC_END);
        stream_put_section_footer(sw, EPOCH_SECTION + i);
        stream_put_section_header(sw, STREAM_TAG_SECTION_END, EPOCH_SECTION + i, "disk", i, 1);
        sw_put_u8(sw, REC_END);
        stream_put_section_footer(sw, EPOCH_SECTION + i);
        pthread_mutex_lock(&d->lock);
        wlog_free(&d->closed);
        pthread_mutex_unlock(&d->lock);
    }
    return sw_error(sw);
}

void colo_disk_stop(struct vm *vm)
{
    for (unsigned i = 0; i < ndisks; i++) {
        struct cdisk *d = &disks[i];
        if (d->hooked)
            hook(d, false);
        pthread_mutex_lock(&d->lock);
        d->tracking = d->logging = false;
        wlog_free(&d->cur);
        wlog_free(&d->closed);
        free(d->dirty);
        d->dirty = NULL;
        pthread_mutex_unlock(&d->lock);
    }
}

/* ---- loading (secondary) ---- */

/* Records until REC_END; each checked against the disk before anything is kept. */
static int load_records(struct stream_reader *sr, struct cdisk *d, bool stage)
{
    uint8_t *tmp = NULL;
    int r = 0;

    for (;;) {
        uint8_t tag = sr_get_u8(sr);
        uint64_t off;
        uint32_t len;

        if (sr_error(sr))
            break;
        if (tag == REC_END)
            break;
        off = sr_get_u64(sr);
        len = sr_get_u32(sr);
        if (sr_error(sr))
            break;
        if (tag != REC_WRITE || len == 0 || len > REC_MAX_LEN || off % 512 ||
            off > d->blk->disk.size || len > d->blk->disk.size - off) {
            sr_fail(sr, -EBADMSG, "disk%u: bad record (tag %u, offset %llu, length %u)", d->index,
                    tag, (unsigned long long)off, len);
            break;
        }
        if (stage) {
            struct wrec *w = malloc(sizeof(*w) + len);
            if (!w) {
                sr_fail(sr, -ENOMEM, "disk%u: out of memory staging a write", d->index);
                break;
            }
            sr_get_bytes(sr, w->data, len);
            w->offset = off;
            w->len = len;
            wlog_append(&d->staged, w);
        } else {
            uint8_t *nt = realloc(tmp, len);
            if (!nt) {
                sr_fail(sr, -ENOMEM, "disk%u: out of memory", d->index);
                break;
            }
            tmp = nt;
            sr_get_bytes(sr, tmp, len);
            if (sr_error(sr))
                break;
            if (pwrite(d->blk->disk.fd, tmp, len, (off_t)off) != (ssize_t)len) {
                sr_fail(sr, -EIO, "disk%u: cannot write the initial sync", d->index);
                break;
            }
        }
    }
    free(tmp);
    r = sr_error(sr);
    return r;
}

static int load_sync(struct stream_reader *sr, void *opaque, enum stream_tag type, uint32_t v)
{
    return load_records(sr, opaque, false);
}

static int load_epoch(struct stream_reader *sr, void *opaque, enum stream_tag type, uint32_t v)
{
    return load_records(sr, opaque, true);
}

static const struct stream_iter_ops sync_ops = {
    .version_id = 1, .minimum_version_id = 1, .load = load_sync};
static const struct stream_iter_ops epoch_ops = {
    .version_id = 1, .minimum_version_id = 1, .load = load_epoch};

int colo_disk_register(struct devstate *ds, struct vm *vm)
{
    int r = 0;

    scan(vm);
    for (unsigned i = 0; i < ndisks && !r; i++) {
        struct stream_section s1 = {
            .idstr = "disk-sync", .instance_id = i, .iter = &sync_ops, .opaque = &disks[i]};
        struct stream_section s2 = {
            .idstr = "disk", .instance_id = i, .iter = &epoch_ops, .opaque = &disks[i]};
        r = devstate_add(ds, &s1);
        if (!r)
            r = devstate_add(ds, &s2);
    }
    return r;
}

void colo_disk_discard(struct vm *vm)
{
    for (unsigned i = 0; i < ndisks; i++)
        wlog_free(&disks[i].staged);
}

int colo_disk_apply(struct vm *vm)
{
    for (unsigned i = 0; i < ndisks; i++) {
        struct cdisk *d = &disks[i];
        bool any = d->staged.head != NULL;
        for (struct wrec *w = d->staged.head; w; w = w->next) {
            if (pwrite(d->blk->disk.fd, w->data, w->len, (off_t)w->offset) != (ssize_t)w->len) {
                log_err("colo: disk%u: applying a write: %s", i, strerror(errno));
                return -EIO;
            }
        }
        wlog_free(&d->staged);
        if (any && raw_flush(&d->blk->disk) < 0)
            return -EIO;
    }
    return 0;
}

int colo_disk_sync_done(struct vm *vm)
{
    for (unsigned i = 0; i < ndisks; i++)
        if (raw_flush(&disks[i].blk->disk) < 0)
            return -EIO;
    return 0;
}
