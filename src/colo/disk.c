/* disk.c: COLO disk replication: hash-driven initial sync and per-epoch write logs.
 *
 * A disk's modes on the primary (all under its lock):
 *
 *   idle --sync_begin--> tracking --final sync_send--> logging --stop--> idle
 *                                     (same critical section)  |
 *                                              a write not logged: broken (logs dropped,
 *                                              every close_epoch -ENOSPC) --stop--> idle
 *
 * A guest write runs the hook's on_write (log it: before the image), then the image write from
 * the logged copy, then on_done (mark the chunks for the sync; take the records back out if
 * the image refused them). Requests of one disk run one at a time under its device lock, and a
 * checkpoint (vCPUs paused, dev_lock held) never falls inside one (virtio_blk.h), so the
 * records of the write in flight are the tail of the current epoch's log. d->gen counts the
 * epochs closed and the switch to logging; on_done checks that none happened meanwhile.
 */
#include "colo/disk.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "block/raw.h"
#include "block/virtio_blk.h"
#include "colo/colo.h"
#include "colo/fault.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/vm.h"
#include "migration/devstate.h"
#include "migration/migrate.h"
#include "migration/section.h"
#include "migration/stream.h"
#include "virtio/iov.h"

#define MAX_DISKS     8
#define REC_END       0
#define REC_WRITE     1
#define REC_MAX_LEN   COLO_DISK_REC_MAX
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
    bool broken;          /* a write went unlogged: no checkpoint may be sent any more */
    uint64_t log_max;     /* x-colo-disk-log-max, read when logging started */
    uint64_t gen;         /* epochs closed + the switch to logging */
    unsigned long *dirty; /* chunks to send (initial sync) */
    uint64_t nchunks;
    bool sync_started;
    struct wlog cur, closed;
    /* The write in flight (between on_write and on_done). */
    struct {
        uint64_t gen;
        struct wrec *prev_tail; /* cur's tail before its records (NULL: cur was empty) */
        uint64_t bytes;         /* 0: nothing logged */
        struct iovec *iov;      /* its records, for the device to write from */
        unsigned n, cap;
    } pend;
    /* secondary */
    struct wlog staged;
    uint64_t stage_max;
};

static struct cdisk disks[MAX_DISKS];
static unsigned ndisks;

/* The initial sync's figures: written by the migration thread, read by QMP. */
static pthread_mutex_t sync_stats_lock = PTHREAD_MUTEX_INITIALIZER;
static struct colo_disk_sync_stats sync_stats;

static void sync_stats_add(uint64_t chunks, uint64_t differ, uint64_t sent, uint64_t bytes)
{
    pthread_mutex_lock(&sync_stats_lock);
    sync_stats.chunks += chunks;
    sync_stats.chunks_differ += differ;
    sync_stats.chunks_sent += sent;
    sync_stats.bytes_sent += bytes;
    pthread_mutex_unlock(&sync_stats_lock);
}

void colo_disk_sync_stats(struct colo_disk_sync_stats *out)
{
    pthread_mutex_lock(&sync_stats_lock);
    *out = sync_stats;
    pthread_mutex_unlock(&sync_stats_lock);
}

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

/* x-colo-disk-log-max of this process's migration (the default in unit tests without one). */
static uint64_t configured_log_max(void)
{
    struct migration *m = colo_state.m;
    uint64_t v = 0;

    if (m) {
        pthread_mutex_lock(&m->lock);
        v = m->params.colo_disk_log_max;
        pthread_mutex_unlock(&m->lock);
    }
    return v ? v : COLO_DISK_LOG_DEFAULT;
}

/* ---- the write hook (primary) ---- */

static atomic_uint_fast64_t nlogged; /* writes logged since logging began: p-disk-log's N */

/* d->lock held. */
static void start_logging(struct cdisk *d, uint64_t max)
{
    d->logging = true;
    d->log_max = max;
    d->gen++;
}

/* d->lock held. The write is let through unlogged: drop the log (the secondary can no longer
 * be brought to any state the primary had) and refuse every checkpoint from now on. */
static void break_replication(struct cdisk *d, char *msg, size_t msglen, const char *why)
{
    d->broken = true;
    wlog_free(&d->cur);
    snprintf(msg, msglen, "disk%u: %s", d->index, why);
    log_err("colo: %s: disk replication stopped", msg);
}

/* Copy the write into records of at most REC_MAX_LEN at the tail of the current log, and list
 * them in d->pend. d->lock held. 0 or -ENOMEM (nothing appended). */
static int log_write(struct cdisk *d, uint64_t offset, const struct iovec *iov, unsigned n,
                     uint64_t len)
{
    uint64_t nrec = (len + REC_MAX_LEN - 1) / REC_MAX_LEN;
    struct wlog l = {0};

    if (nrec > d->pend.cap) {
        struct iovec *v = realloc(d->pend.iov, nrec * sizeof(*v));
        if (!v)
            return -ENOMEM;
        d->pend.iov = v;
        d->pend.cap = (unsigned)nrec;
    }
    for (uint64_t done = 0, i = 0; done < len; i++) {
        uint32_t rlen = len - done < REC_MAX_LEN ? (uint32_t)(len - done) : REC_MAX_LEN;
        struct wrec *w = malloc(sizeof(*w) + rlen);
        if (!w) {
            wlog_free(&l);
            return -ENOMEM;
        }
        iov_to_buf(iov, n, done, w->data, rlen);
        w->offset = offset + done;
        w->len = rlen;
        wlog_append(&l, w);
        d->pend.iov[i] = (struct iovec){.iov_base = w->data, .iov_len = rlen};
        done += rlen;
    }
    d->pend.prev_tail = d->cur.tail;
    d->pend.bytes = len;
    d->pend.n = (unsigned)nrec;
    if (d->cur.tail)
        d->cur.tail->next = l.head;
    else
        d->cur.head = l.head;
    d->cur.tail = l.tail;
    d->cur.bytes += len;
    return 0;
}

/* Before the image: log the write. Never fails the guest's write (see disk.h, Limits). */
static int on_write(void *opaque, uint64_t offset, const struct iovec *iov, unsigned n,
                    uint64_t len)
{
    struct cdisk *d = opaque;
    bool early = false;
    char leave[160] = "";

    pthread_mutex_lock(&d->lock);
    d->pend.gen = d->gen;
    d->pend.bytes = 0;
    d->pend.n = 0;
    if (d->logging && !d->broken && len) {
        uint64_t soft = d->log_max / 2 < COLO_DISK_LOG_SOFT ? d->log_max / 2 : COLO_DISK_LOG_SOFT;
        uint64_t k = atomic_fetch_add(&nlogged, 1) + 1;
        char why[96];

        /* d->cur.bytes <= d->log_max always holds. */
        if (len > d->log_max - d->cur.bytes) {
            snprintf(why, sizeof(why),
                     "a write of %llu bytes would pass x-colo-disk-log-max (%llu)",
                     (unsigned long long)len, (unsigned long long)d->log_max);
            break_replication(d, leave, sizeof(leave), why);
        } else if (colo_fault_point("p-disk-log", k) == COLO_FAULT_EIO) {
            break_replication(d, leave, sizeof(leave), "cannot log a write (injected EIO)");
        } else if (log_write(d, offset, iov, n, len)) {
            break_replication(d, leave, sizeof(leave), "out of memory logging a write");
        } else {
            early = d->cur.bytes > soft; /* keep the log (and the next pause) small */
        }
    }
    pthread_mutex_unlock(&d->lock);
    if (leave[0])
        colo_request_leave(leave);
    else if (early)
        colo_request_checkpoint_for(COLO_CKPT_QUEUE_FULL);
    return 0;
}

/* The records the device writes from: the bytes the secondary gets are the primary's. */
static unsigned on_source(void *opaque, const struct iovec **iov)
{
    struct cdisk *d = opaque;

    *iov = d->pend.iov;
    return d->pend.n;
}

/* d->lock held: take the write in flight back out of the current log. */
static void unlog_pending(struct cdisk *d)
{
    struct wrec *w = d->pend.prev_tail ? d->pend.prev_tail->next : d->cur.head;

    while (w) {
        struct wrec *next = w->next;
        free(w);
        w = next;
    }
    if (d->pend.prev_tail)
        d->pend.prev_tail->next = NULL;
    else
        d->cur.head = NULL;
    d->cur.tail = d->pend.prev_tail;
    d->cur.bytes -= d->pend.bytes;
}

/* After the image write (result 0 or -errno). */
static void on_done(void *opaque, uint64_t offset, uint64_t len, int result)
{
    struct cdisk *d = opaque;
    char leave[160] = "";

    pthread_mutex_lock(&d->lock);
    /* Marked after the write landed, so a sync pass that already read the chunk sends it
     * again (a failed write may have landed in part: marked too). */
    if (d->tracking && len) {
        for (uint64_t c = offset / COLO_DISK_CHUNK;
             c <= (offset + len - 1) / COLO_DISK_CHUNK && c < d->nchunks; c++)
            bitmap_set(d->dirty, c);
    }
    if (d->gen != d->pend.gen) {
        /* An epoch closed (or logging began) inside a request: impossible by the locking
         * described in virtio_blk.h. Whether the write counts for the old or the new epoch is
         * unknown now, so replication stops rather than guess. */
        if (!d->broken)
            break_replication(d, leave, sizeof(leave), "a checkpoint fell inside a write");
    } else if (result && d->pend.bytes) {
        unlog_pending(d); /* the guest gets IOERR; the secondary must not get the data */
    }
    d->pend.bytes = 0;
    d->pend.n = 0;
    pthread_mutex_unlock(&d->lock);
    if (leave[0])
        colo_request_leave(leave);
}

static void hook(struct cdisk *d, bool on)
{
    struct blk_write_hook h = {
        .write = on_write, .source = on_source, .done = on_done, .opaque = d};

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
    pthread_mutex_lock(&sync_stats_lock);
    memset(&sync_stats, 0, sizeof(sync_stats));
    pthread_mutex_unlock(&sync_stats_lock);
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
        sync_stats_add(n, differ, 0, 0);
        log_info("colo: disk%u: %llu of %llu chunks differ", i, (unsigned long long)differ,
                 (unsigned long long)n);
    }
    return 0;
}

int colo_disk_sync_send(struct vm *vm, struct stream_writer *sw, bool final)
{
    uint64_t max = final ? configured_log_max() : 0;
    uint8_t *buf = malloc(COLO_DISK_CHUNK);

    if (!buf)
        return -ENOMEM;
    for (unsigned i = 0; i < ndisks; i++) {
        struct cdisk *d = &disks[i];
        uint64_t size = d->blk->disk.size, at = sw_offset(sw), sent = 0;
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
            sent++;
        }
        sw_put_u8(sw, REC_END);
        stream_put_section_footer(sw, SYNC_SECTION + i);
        sync_stats_add(0, 0, sent, sw_offset(sw) - at);
        if (final) {
            /* The hand-over: from tracking straight to logging epoch 1, in one critical
             * section, so a write served after this (dev_lock is released before COLO starts)
             * is logged, and none before it is missed by the sync. */
            pthread_mutex_lock(&d->lock);
            d->tracking = false;
            free(d->dirty);
            d->dirty = NULL;
            if (!d->logging)
                start_logging(d, max);
            pthread_mutex_unlock(&d->lock);
        }
    }
    free(buf);
    return sw_error(sw);
}

void colo_disk_epochs_begin(struct vm *vm)
{
    uint64_t max = configured_log_max();

    scan(vm);
    for (unsigned i = 0; i < ndisks; i++) {
        struct cdisk *d = &disks[i];
        pthread_mutex_lock(&d->lock);
        if (!d->logging)
            start_logging(d, max);
        pthread_mutex_unlock(&d->lock);
        if (!d->hooked)
            hook(d, true);
    }
}

int colo_disk_close_epoch(struct vm *vm)
{
    int r = 0;

    for (unsigned i = 0; i < ndisks; i++) {
        struct cdisk *d = &disks[i];
        pthread_mutex_lock(&d->lock);
        wlog_free(&d->closed);
        d->closed = d->cur;
        memset(&d->cur, 0, sizeof(d->cur));
        d->gen++;
        if (d->broken)
            r = -ENOSPC;
        pthread_mutex_unlock(&d->lock);
    }
    return r;
}

int colo_disk_save_epoch(struct vm *vm, struct stream_writer *sw)
{
    for (unsigned i = 0; i < ndisks; i++) {
        struct cdisk *d = &disks[i];
        bool broken;

        pthread_mutex_lock(&d->lock);
        broken = d->broken;
        pthread_mutex_unlock(&d->lock);
        if (broken) {
            sw_fail(sw, -ENOSPC, "disk%u: a guest write was not replicated", i);
            break;
        }
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
        /* Unhooking waits for a request in flight (device lock): nothing uses d->pend after. */
        if (d->hooked)
            hook(d, false);
        pthread_mutex_lock(&d->lock);
        d->tracking = d->logging = d->broken = false;
        wlog_free(&d->cur);
        wlog_free(&d->closed);
        free(d->dirty);
        d->dirty = NULL;
        free(d->pend.iov);
        memset(&d->pend, 0, sizeof(d->pend));
        pthread_mutex_unlock(&d->lock);
    }
    atomic_store(&nlogged, 0);
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
        if (stage && (d->staged.bytes > d->stage_max || len > d->stage_max - d->staged.bytes)) {
            sr_fail(sr, -EFBIG,
                    "disk%u: the checkpoint's disk writes pass x-colo-disk-log-max (%llu bytes)",
                    d->index, (unsigned long long)d->stage_max);
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
    struct cdisk *d = opaque;

    /* The bound on what one checkpoint may stage, read as each checkpoint's log begins. */
    if (type == STREAM_TAG_SECTION_START || !d->stage_max)
        d->stage_max = configured_log_max();
    return load_records(sr, d, true);
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

int colo_disk_apply(struct vm *vm, uint64_t n)
{
    unsigned k = 0;

    for (unsigned i = 0; i < ndisks; i++) {
        struct cdisk *d = &disks[i];
        bool any = d->staged.head != NULL;
        for (struct wrec *w = d->staged.head; w; w = w->next, k++) {
            struct iovec v = {.iov_base = w->data, .iov_len = w->len};
            int r;
            /* Between the first and the second write: a failure here tears the image. */
            if (k == 1 && colo_fault_point("s-disk-apply", n) == COLO_FAULT_EIO)
                r = -EIO;
            else
                r = raw_writev(&d->blk->disk, w->offset, &v, 1);
            if (r) {
                log_err("colo: disk%u: checkpoint %llu: staged write %u (%u bytes at %llu): %s%s",
                        i, (unsigned long long)n, k, w->len, (unsigned long long)w->offset,
                        strerror(-r), k ? "; the image is torn" : "");
                return r;
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
