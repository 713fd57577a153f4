/* colo.c: the COLO checkpoint transaction on both sides, failover and takeover.
 *
 * Primary, per checkpoint (the VM runs between them):
 *   request -> reply -> pause -> dirty RAM and device state into local buffers -> resume
 *   -> send (RAM segment), size + device buffer -> received: release epoch N output -> loaded
 * Secondary (the VM stays paused, periodic mode):
 *   request -> reply -> RAM into the colo cache -> exactly `size` bytes of device state
 *   -> both checksums verified -> received -> apply (devices, cache -> RAM, vCPUs) -> loaded
 * An error leaves the loop; the secondary keeps its last applied checkpoint and takes over only
 * when the primary is lost (heartbeat) or on request, never in the middle of an apply.
 */
#include "colo/colo.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "block/virtio_blk.h"
#include "colo/devices.h"
#include "colo/disk.h"
#include "colo/fault.h"
#include "colo/proto.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/vm.h"
#include "migration/channel.h"
#include "migration/devstate.h"
#include "migration/migrate.h"
#include "migration/ram.h"
#include "migration/ramsend.h"
#include "migration/section.h"
#include "migration/stream.h"

#define RAM_SECTION_ID     1
#define COLO_IO_TIMEOUT_MS 5000 /* backstop; the heartbeat finds a hung peer much sooner */
#define COLO_DEVBUF_MAX    (256u << 20)
#define COLO_START_TIMEOUT 10000

struct colo colo_state = {
    .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .fd = -1};

static const char *const mode_names[] = {"none", "primary", "secondary"};
static const char *const reason_names[] = {"none", "request", "error", "processing"};

const char *colo_mode_name(enum colo_mode m)
{
    return (unsigned)m < 3 ? mode_names[m] : "none";
}

const char *colo_reason_name(enum colo_reason r)
{
    return (unsigned)r < 4 ? reason_names[r] : "none";
}

/* Wall-clock microseconds, for logs that are compared with packet captures. */
static unsigned long long unix_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000;
}

void colo_init(struct migration *m, struct vm *vm)
{
    colo_state.m = m;
    colo_state.vm = vm;
    m->colo = &colo_state;
}

/* ---- requests from other threads ---- */

static void wake_stream(struct colo *c)
{
    /* Unblocks a send or receive stuck on a dead or hung peer. */
    if (c->fd >= 0)
        shutdown(c->fd, SHUT_RDWR);
}

int colo_request_failover(enum colo_reason why, char *err, size_t errlen)
{
    struct colo *c = &colo_state;

    pthread_mutex_lock(&c->lock);
    if (c->mode == COLO_MODE_NONE) {
        pthread_mutex_unlock(&c->lock);
        snprintf(err, errlen, "VM is not in COLO mode");
        return -EINVAL;
    }
    if (c->failover_requested) {
        pthread_mutex_unlock(&c->lock);
        snprintf(err, errlen, "failover is already in progress");
        return -EBUSY;
    }
    c->failover_requested = true;
    c->failover_reason = why;
    c->failover_started_ns = now_ns();
    /* The relaunch rule: an apply in progress finishes first. The stream is cut only after it,
     * so the apply never sees a half checkpoint; a transfer in progress is abandoned. */
    if (!c->applying)
        wake_stream(c);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

void colo_request_checkpoint(void)
{
    struct colo *c = &colo_state;

    pthread_mutex_lock(&c->lock);
    c->checkpoint_requested = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static void hb_lost(void *opaque, const char *why)
{
    char err[64];

    (void)opaque;
    log_warn("colo: %s: failing over", why);
    colo_request_failover(COLO_REASON_ERROR, err, sizeof(err));
}

static bool failover_pending(struct colo *c)
{
    bool f;

    pthread_mutex_lock(&c->lock);
    f = c->failover_requested;
    pthread_mutex_unlock(&c->lock);
    return f;
}

void colo_query(enum colo_mode *mode, enum colo_mode *last_mode, enum colo_reason *reason,
                struct colo_stats *st, uint64_t *p99_us, uint64_t *mean_us)
{
    struct colo *c = &colo_state;
    static uint32_t sorted[COLO_PAUSE_SAMPLES];
    uint64_t n;

    pthread_mutex_lock(&c->lock);
    *mode = c->mode;
    *last_mode = c->last_mode;
    *reason =
        c->failover_requested && c->mode != COLO_MODE_NONE ? COLO_REASON_PROCESSING : c->reason;
    *st = c->stats;
    pthread_mutex_unlock(&c->lock);
    n = st->checkpoints < COLO_PAUSE_SAMPLES ? st->checkpoints : COLO_PAUSE_SAMPLES;
    *mean_us = st->checkpoints ? st->pause_us_sum / st->checkpoints : 0;
    *p99_us = 0;
    if (n) {
        /* insertion sort is fine: at most 4096 samples, on a QMP query */
        memcpy(sorted, st->pause_us, n * sizeof(uint32_t));
        for (uint64_t i = 1; i < n; i++) {
            uint32_t v = sorted[i];
            uint64_t j = i;
            while (j > 0 && sorted[j - 1] > v) {
                sorted[j] = sorted[j - 1];
                j--;
            }
            sorted[j] = v;
        }
        *p99_us = sorted[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
    }
}

struct exit_note {
    enum colo_mode mode;
    enum colo_reason reason;
};

static void exit_note_cb(void *opaque)
{
    struct exit_note *n = opaque;

    if (colo_state.exit_event)
        colo_state.exit_event(colo_state.event_opaque, n->mode, n->reason);
    free(n);
}

/* Emit COLO_EXIT on the main loop. */
static void colo_report_exit(struct colo *c, enum colo_mode mode, enum colo_reason reason)
{
    struct exit_note *n = malloc(sizeof(*n));

    log_warn("colo: leaving COLO (%s, reason %s)", colo_mode_name(mode), colo_reason_name(reason));
    if (!n)
        return;
    *n = (struct exit_note){mode, reason};
    if (loop_call(c->m->loop, exit_note_cb, n) < 0)
        free(n);
}

static void colo_set_mode_none(struct colo *c, enum colo_mode mode, enum colo_reason reason)
{
    pthread_mutex_lock(&c->lock);
    c->last_mode = mode;
    c->mode = COLO_MODE_NONE;
    c->reason = reason;
    pthread_mutex_unlock(&c->lock);
}

/* Leaving COLO: record the mode and reason and emit COLO_EXIT. */
static void colo_exit(struct colo *c, enum colo_mode mode, enum colo_reason reason)
{
    colo_set_mode_none(c, mode, reason);
    colo_report_exit(c, mode, reason);
}

static void record_pause(struct colo *c, uint64_t pause_us, uint64_t dirty, uint64_t bytes)
{
    pthread_mutex_lock(&c->lock);
    c->stats.pause_us[c->stats.checkpoints % COLO_PAUSE_SAMPLES] =
        pause_us > UINT32_MAX ? UINT32_MAX : (uint32_t)pause_us;
    c->stats.checkpoints++;
    c->stats.pause_us_last = pause_us;
    c->stats.pause_us_sum += pause_us;
    c->stats.last_dirty_pages = dirty;
    c->stats.last_bytes = bytes;
    c->stats.total_bytes += bytes;
    pthread_mutex_unlock(&c->lock);
}

/* ---- primary ---- */

struct primary {
    struct colo *c;
    struct vm *vm;
    struct stream_writer *sw; /* to the secondary */
    struct stream_reader *rp; /* return path */
    struct stream_writer rambuf, devbuf;
    struct ram_source src;
    struct devstate *ds;
    unsigned long *dirty;
    uint64_t n; /* checkpoint number */
};

/* Send buf in two halves with a fault point between them. */
static int send_split(struct stream_writer *sw, const uint8_t *buf, size_t len, const char *point,
                      uint64_t n)
{
    sw_put_bytes(sw, buf, len / 2);
    sw_flush(sw);
    if (colo_fault_point(point, n) == COLO_FAULT_TRUNCATE) {
        shutdown(sw->fd, SHUT_WR); /* the peer sees the stream end mid-buffer */
        return -EPIPE;
    }
    sw_put_bytes(sw, buf + len / 2, len - len / 2);
    return sw_flush(sw);
}

static int primary_checkpoint(struct primary *p)
{
    struct colo *c = p->c;
    uint64_t t0, t1, t2, t3, pause_us, epoch, dirty_pages;
    const uint8_t *ram, *dev;
    size_t ramlen, devlen;
    long harvested;
    int r;

    p->n++;
    if (colo_fault_point("p-before-request", p->n) == COLO_FAULT_BADMSG) {
        r = colo_send_msg(p->sw, (enum colo_msg)99);
        return r ? r : -EPROTO;
    }
    r = colo_send_msg(p->sw, COLO_MSG_CHECKPOINT_REQUEST);
    if (r)
        return r;
    colo_fault_point("p-after-request", p->n);
    r = colo_expect_msg(p->rp, COLO_MSG_CHECKPOINT_REPLY);
    if (r)
        return r;
    colo_fault_point("p-after-reply", p->n);

    /* The pause: everything the checkpoint needs is copied locally, then the guest runs on. */
    t0 = now_ns();
    vm_pause(p->vm);
    pthread_mutex_lock(&p->vm->dev_lock);
    t1 = now_ns();
    log_debug("colo: checkpoint %llu paused at %llu", (unsigned long long)p->n, unix_us());
    colo_fault_point("p-paused", p->n);
    harvested = gmem_dirty_harvest(&p->vm->mem, p->dirty);
    dirty_pages = harvested > 0 ? (uint64_t)harvested : 0;
    t2 = now_ns();
    sw_buf_reset(&p->rambuf);
    ram_save_open(&p->rambuf, STREAM_TAG_SECTION_START, RAM_SECTION_ID, "ram", 0, &p->src);
    ram_send_bitmap(&p->rambuf, &p->src, p->dirty, p->src.ram_size / PAGE_SIZE, NULL, NULL, NULL);
    t3 = now_ns();
    r = harvested < 0 ? (int)harvested : devstate_capture(p->ds);
    sw_buf_reset(&p->devbuf);
    if (!r)
        devstate_save(p->ds, &p->devbuf);
    epoch = p->n;
    colo_devices_close_epoch(c);
    colo_disk_close_epoch(p->vm);
    pthread_mutex_unlock(&p->vm->dev_lock);
    /* The pause ends when the vCPUs are released (the resumed vCPU may preempt us at once). */
    pause_us = (now_ns() - t0) / 1000;
    vm_resume(p->vm);
    /* Framing and checksums run over our private copies, after the guest resumed. */
    ram_save_close(&p->rambuf, RAM_SECTION_ID, RAM_END_ROUND);
    ram_save_open(&p->rambuf, STREAM_TAG_SECTION_END, RAM_SECTION_ID, "ram", 0, &p->src);
    ram_save_close(&p->rambuf, RAM_SECTION_ID, 0);
    colo_disk_save_epoch(p->vm, &p->rambuf); /* the epoch's disk writes travel with its RAM */
    stream_put_eof(&p->rambuf);
    stream_put_eof(&p->devbuf);
    log_debug("colo: pause %llu us: barrier %llu, harvest %llu, ram copy %llu, devices %llu",
              (unsigned long long)pause_us, (unsigned long long)(t1 - t0) / 1000,
              (unsigned long long)(t2 - t1) / 1000, (unsigned long long)(t3 - t2) / 1000,
              (unsigned long long)(t0 / 1000 + pause_us - t3 / 1000));
    if (r || sw_error(&p->rambuf) || sw_error(&p->devbuf)) {
        log_err("colo: cannot capture checkpoint %llu: %s", (unsigned long long)p->n,
                r                      ? strerror(-r)
                : sw_error(&p->rambuf) ? sw_errmsg(&p->rambuf)
                                       : sw_errmsg(&p->devbuf));
        return r ? r : -EIO;
    }
    if (c->hooks.disk_checkpoint) {
        r = c->hooks.disk_checkpoint(c->hooks.opaque, epoch);
        if (r)
            return r;
    }

    ram = sw_buf_data(&p->rambuf, &ramlen);
    dev = sw_buf_data(&p->devbuf, &devlen);
    if (colo_fault_point("p-before-send", p->n) == COLO_FAULT_CORRUPT)
        ((uint8_t *)ram)[ramlen / 2] ^= 0x10;
    r = colo_send_msg(p->sw, COLO_MSG_VMSTATE_SEND);
    if (!r)
        r = send_split(p->sw, ram, ramlen, "p-mid-ram", p->n);
    if (r)
        return r;
    if (colo_fault_point("p-before-size", p->n) == COLO_FAULT_CORRUPT)
        ((uint8_t *)dev)[devlen / 2] ^= 0x10;
    log_debug("colo: send 'vmstate-size' %zu", devlen);
    sw_put_u32(p->sw, COLO_MSG_VMSTATE_SIZE);
    sw_put_u64(p->sw, devlen);
    r = send_split(p->sw, dev, devlen, "p-mid-devbuf", p->n);
    if (r)
        return r;
    colo_fault_point("p-after-devbuf", p->n);
    r = colo_expect_msg(p->rp, COLO_MSG_VMSTATE_RECEIVED);
    if (r)
        return r;
    /* The secondary holds checkpoint N: what the guest sent before it may leave. */
    log_debug("colo: checkpoint %llu received at %llu", (unsigned long long)p->n, unix_us());
    colo_devices_release(c, epoch);
    colo_fault_point("p-after-received", p->n);
    r = colo_expect_msg(p->rp, COLO_MSG_VMSTATE_LOADED);
    if (r)
        return r;
    colo_fault_point("p-after-loaded", p->n);
    record_pause(c, pause_us, dirty_pages, ramlen + devlen);
    log_debug("colo: checkpoint %llu: %llu dirty pages, %zu bytes, pause %llu us",
              (unsigned long long)p->n, (unsigned long long)dirty_pages, ramlen + devlen,
              (unsigned long long)pause_us);
    return 0;
}

/* Sleep until the next checkpoint is due, one is requested, or failover. */
static bool primary_wait(struct colo *c, uint64_t due_ns)
{
    bool go = true;

    pthread_mutex_lock(&c->lock);
    while (!c->failover_requested && !c->checkpoint_requested) {
        struct timespec ts;
        uint64_t now = now_ns();
        if (now >= due_ns)
            break;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t left = due_ns - now;
        ts.tv_sec += (time_t)(left / 1000000000ULL);
        ts.tv_nsec += (long)(left % 1000000000ULL);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->cond, &c->lock, &ts);
    }
    c->checkpoint_requested = false;
    if (c->failover_requested)
        go = false;
    pthread_mutex_unlock(&c->lock);
    return go;
}

static int open_heartbeat_primary(struct colo *c, struct migration *m)
{
    struct chan_uri u;
    char err[256];
    int fd;

    if (chan_parse_uri(m->uri, &u, err, sizeof(err)))
        return -EINVAL;
    fd = chan_connect(&u, COLO_START_TIMEOUT, err, sizeof(err));
    if (fd < 0) {
        log_err("colo: heartbeat: %s", err);
        return fd;
    }
    return heartbeat_start(&c->hb, fd, m->params.heartbeat_interval_ms,
                           m->params.heartbeat_timeout_ms, hb_lost, c);
}

int colo_primary_run(struct migration *m, int fd, struct stream_writer *sw,
                     struct stream_reader *rp, struct devstate *ds, unsigned long *dirty)
{
    struct colo *c = &colo_state;
    struct primary *p = calloc(1, sizeof(*p));
    enum colo_reason reason = COLO_REASON_ERROR;
    uint64_t due;
    int r;

    if (!p)
        return -ENOMEM;
    pthread_mutex_lock(&c->lock);
    c->mode = COLO_MODE_PRIMARY;
    c->reason = COLO_REASON_NONE;
    c->failover_requested = false;
    c->checkpoint_requested = false;
    c->fd = fd;
    memset(&c->stats, 0, sizeof(c->stats));
    pthread_mutex_unlock(&c->lock);
    *p = (struct primary){.c = c, .vm = m->vm, .sw = sw, .rp = rp, .ds = ds, .dirty = dirty};
    p->src = (struct ram_source){
        .host = m->vm->mem.base, .ram_size = m->vm->mem.size, .page_size = PAGE_SIZE};
    r = stream_writer_init_buf(&p->rambuf, 1u << 20);
    if (!r)
        r = stream_writer_init_buf(&p->devbuf, 1u << 20);
    if (r)
        goto out;
    sw_set_timeout_ms(sw, COLO_IO_TIMEOUT_MS);
    sr_set_timeout_ms(p->rp, COLO_START_TIMEOUT);
    r = open_heartbeat_primary(c, m);
    if (r)
        goto out;
    r = colo_expect_msg(p->rp, COLO_MSG_CHECKPOINT_READY);
    if (r)
        goto out;
    sr_set_timeout_ms(p->rp, COLO_IO_TIMEOUT_MS);
    log_info("colo: primary: secondary ready, checkpoints every %llu ms",
             (unsigned long long)m->params.checkpoint_delay_ms);

    /* From now on output waits for its checkpoint. The VM was paused by the migration. */
    colo_devices_primary_start(c, m->vm);
    colo_disk_epochs_begin(m->vm);
    vm_set_state(m->vm, VM_RUNNING);
    vm_resume(m->vm);
    due = now_ns() + m->params.checkpoint_delay_ms * 1000000ULL;
    for (;;) {
        if (!primary_wait(c, due)) {
            reason = c->failover_reason;
            r = 0;
            break;
        }
        due = now_ns() + m->params.checkpoint_delay_ms * 1000000ULL;
        r = primary_checkpoint(p);
        if (r) {
            reason = failover_pending(c) ? c->failover_reason : COLO_REASON_ERROR;
            log_err("colo: primary: checkpoint %llu failed: %s", (unsigned long long)p->n,
                    sr_error(p->rp) ? sr_errmsg(p->rp)
                    : sw_error(sw)  ? sw_errmsg(sw)
                                    : strerror(-r));
            break;
        }
    }
    /* Unprotected from here: everything held goes out, and new output passes straight on. */
    colo_devices_primary_stop(c, m->vm);
    colo_disk_stop(m->vm);
    gmem_dirty_log_stop(&m->vm->mem);
    migration_set_status(m, MIG_COMPLETED);
    pthread_mutex_lock(&c->lock);
    c->fd = -1;
    c->stats.last_failover_unix_ms = unix_us() / 1000;
    pthread_mutex_unlock(&c->lock);
    colo_exit(c, COLO_MODE_PRIMARY, reason);
    /* The heartbeat stays up while we live, so a secondary that rejected a checkpoint does not
     * take over from under a running primary; it ends with the process. */
    stream_writer_destroy(&p->rambuf);
    stream_writer_destroy(&p->devbuf);
    free(p);
    return r;

out:
    log_err("colo: primary: cannot start COLO: %s",
            sr_error(p->rp) ? sr_errmsg(p->rp) : strerror(-r));
    stream_writer_destroy(&p->rambuf);
    stream_writer_destroy(&p->devbuf);
    free(p);
    vm_set_state(m->vm, VM_RUNNING);
    vm_resume(m->vm);
    migration_set_status(m, MIG_FAILED);
    colo_exit(c, COLO_MODE_PRIMARY, COLO_REASON_ERROR);
    return r;
}

/* ---- secondary ---- */

struct secondary {
    struct colo *c;
    struct vm *vm;
    struct stream_reader *sr;
    struct stream_loader *ld;
    struct stream_writer sw; /* to the primary (the return path) */
    struct devstate *ds;
    struct ram_sink *sink;
    struct colo_cache cache;
    uint8_t *devbuf;
    size_t devcap;
    uint64_t n;
    bool ram_fault_armed;
};

static void loaded_cb(void *opaque, uint64_t offset, uint64_t len)
{
    struct secondary *s = opaque;

    colo_cache_loaded(&s->cache, offset, len);
    if (s->ram_fault_armed) {
        s->ram_fault_armed = false;
        colo_fault_point("s-mid-ram", s->n);
    }
}

/* Wait for the next request without a deadline, but notice a failover at once. */
static int wait_readable(struct secondary *s)
{
    while (!failover_pending(s->c)) {
        struct pollfd p = {.fd = s->sr->fd, .events = POLLIN};
        if (s->sr->pos < s->sr->len)
            return 0; /* already buffered */
        int r = poll(&p, 1, 100);
        if (r < 0 && errno != EINTR)
            return -errno;
        if (r > 0)
            return 0;
    }
    return -ECANCELED;
}

static int read_exact(struct secondary *s, uint8_t *dst, size_t n)
{
    sr_get_bytes(s->sr, dst, n / 2);
    if (sr_error(s->sr))
        return sr_error(s->sr);
    colo_fault_point("s-mid-devbuf", s->n);
    sr_get_bytes(s->sr, dst + n / 2, n - n / 2);
    return sr_error(s->sr);
}

static int secondary_apply(struct secondary *s, size_t devlen)
{
    struct stream_reader mr;
    int r;

    /* Devices first (staged vCPU state, inventory devices); then RAM; then KVM. */
    pthread_mutex_lock(&s->vm->dev_lock);
    stream_reader_init_buf(&mr, s->devbuf, devlen);
    r = stream_load_segment(s->ld, &mr);
    if (r) {
        log_err("colo: secondary: device state of checkpoint %llu: %s", (unsigned long long)s->n,
                sr_errmsg(&mr));
        stream_reader_destroy(&mr);
        pthread_mutex_unlock(&s->vm->dev_lock);
        colo_cache_discard(&s->cache);
        return r;
    }
    stream_reader_destroy(&mr);
    colo_fault_point("s-mid-apply", s->n);
    colo_cache_apply(&s->cache, &s->vm->mem);
    r = colo_disk_apply(s->vm);
    if (!r)
        r = devstate_apply(s->ds);
    pthread_mutex_unlock(&s->vm->dev_lock);
    return r;
}

static int secondary_checkpoint(struct secondary *s)
{
    struct colo *c = s->c;
    uint32_t msg;
    uint64_t size, t0;
    int r;

    r = wait_readable(s);
    if (r)
        return r;
    s->n++;
    r = colo_expect_msg(s->sr, COLO_MSG_CHECKPOINT_REQUEST);
    if (r)
        return r;
    colo_fault_point("s-after-request", s->n);
    r = colo_send_msg(&s->sw, COLO_MSG_CHECKPOINT_REPLY);
    if (r)
        return r;
    colo_fault_point("s-after-reply", s->n);
    r = colo_expect_msg(s->sr, COLO_MSG_VMSTATE_SEND);
    if (r)
        return r;
    /* RAM (and disk writes): staged only; the segment's EOF carries its checksum. */
    colo_cache_discard(&s->cache);
    colo_disk_discard(s->vm);
    s->ram_fault_armed = true;
    sr_checksum_reset(s->sr);
    r = stream_load_segment(s->ld, s->sr);
    if (r)
        goto drop;
    colo_fault_point("s-after-ram", s->n);
    msg = sr_get_u32(s->sr);
    size = sr_get_u64(s->sr);
    r = sr_error(s->sr);
    if (r)
        goto drop;
    if (msg != COLO_MSG_VMSTATE_SIZE) {
        sr_fail(s->sr, -EPROTO, "unexpected COLO message %u (%s), expected vmstate-size", msg,
                colo_msg_name(msg));
        r = -EPROTO;
        goto drop;
    }
    if (size == 0 || size > COLO_DEVBUF_MAX) {
        sr_fail(s->sr, -EBADMSG, "vmstate-size %llu out of range", (unsigned long long)size);
        r = -EBADMSG;
        goto drop;
    }
    log_debug("colo: receive 'vmstate-size' %llu", (unsigned long long)size);
    colo_fault_point("s-after-size", s->n);
    if (size > s->devcap) {
        uint8_t *nb = realloc(s->devbuf, size);
        if (!nb) {
            r = -ENOMEM;
            goto drop;
        }
        s->devbuf = nb;
        s->devcap = size;
    }
    r = read_exact(s, s->devbuf, size);
    if (r)
        goto drop;
    r = stream_buf_verify(s->devbuf, size);
    if (r) {
        sr_fail(s->sr, r, "device state of checkpoint %llu fails its checksum",
                (unsigned long long)s->n);
        goto drop;
    }
    colo_fault_point("s-before-received", s->n);
    r = colo_send_msg(&s->sw, COLO_MSG_VMSTATE_RECEIVED);
    if (r)
        goto drop;
    colo_fault_point("s-after-received", s->n);

    /* The whole checkpoint is here and verified: apply it. A failover waits for this. */
    pthread_mutex_lock(&c->lock);
    c->applying = true;
    pthread_mutex_unlock(&c->lock);
    t0 = now_ns();
    r = secondary_apply(s, size);
    pthread_mutex_lock(&c->lock);
    c->applying = false;
    if (c->failover_requested)
        wake_stream(c); /* deferred from colo_request_failover */
    pthread_mutex_unlock(&c->lock);
    if (r)
        return r;
    record_pause(c, (now_ns() - t0) / 1000, s->cache.nruns, size);
    colo_fault_point("s-after-apply", s->n);
    r = colo_send_msg(&s->sw, COLO_MSG_VMSTATE_LOADED);
    if (r)
        return r;
    colo_fault_point("s-after-loaded", s->n);
    return 0;

drop:
    /* A half or bad checkpoint never reaches the VM: the last applied one stays. */
    colo_cache_discard(&s->cache);
    colo_disk_discard(s->vm);
    return r;
}

static int run_fence(const char *cmd)
{
    int st;

    log_warn("colo: running fence command: %s", cmd);
    st = system(cmd);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        log_err("colo: fence command failed (status %d): not taking over", st);
        return -EPERM;
    }
    return 0;
}

struct takeover_note {
    struct colo *c;
};

static void takeover_cb(void *opaque)
{
    struct colo *c = opaque;

    /* The SVM runs from its last applied checkpoint, on its own now. */
    vm_set_state(c->vm, VM_PAUSED);
    vm_cont(c->vm);
}

static int accept_heartbeat(struct secondary *s, struct migration *m)
{
    struct pollfd p = {.fd = m->listen_fd, .events = POLLIN};
    int fd, r;

    if (m->listen_fd < 0)
        return -ENOTCONN;
    r = poll(&p, 1, COLO_START_TIMEOUT);
    if (r <= 0)
        return r == 0 ? -ETIMEDOUT : -errno;
    fd = chan_accept(m->listen_fd);
    if (fd < 0)
        return fd;
    return heartbeat_start(&s->c->hb, fd, m->params.heartbeat_interval_ms,
                           m->params.heartbeat_timeout_ms, hb_lost, s->c);
}

int colo_secondary_run(struct migration *m, int fd, struct stream_reader *sr,
                       struct stream_loader *ld, struct devstate *ds)
{
    struct colo *c = &colo_state;
    struct secondary *s = calloc(1, sizeof(*s));
    enum colo_reason reason;
    bool reported = false;
    int r;

    if (!s)
        return -ENOMEM;
    *s = (struct secondary){.c = c, .vm = m->vm, .sr = sr, .ld = ld, .ds = ds};
    s->sink = ds->reg[DEVSTATE_RAM_INDEX].opaque;
    pthread_mutex_lock(&c->lock);
    c->mode = COLO_MODE_SECONDARY;
    c->reason = COLO_REASON_NONE;
    c->failover_requested = false;
    c->fd = fd;
    memset(&c->stats, 0, sizeof(c->stats));
    pthread_mutex_unlock(&c->lock);
    vm_set_state(m->vm, VM_COLO);
    colo_devices_secondary_start(m->vm);
    virtio_blk_lock_all(m->vm, 1000); /* our own images: nobody else may write them */

    r = colo_cache_init(&s->cache, m->vm->mem.size);
    if (!r)
        r = stream_writer_init_fd(&s->sw, fd);
    if (r)
        goto out;
    sw_set_timeout_ms(&s->sw, COLO_IO_TIMEOUT_MS);
    sr_set_timeout_ms(sr, COLO_IO_TIMEOUT_MS);
    /* From now on pages go to the cache, never straight to guest RAM. */
    s->sink->host = s->cache.base;
    s->sink->loaded = loaded_cb;
    s->sink->loaded_opaque = s;
    r = accept_heartbeat(s, m);
    if (r) {
        log_err("colo: secondary: no heartbeat connection: %s", strerror(-r));
        goto out;
    }
    colo_fault_point("s-before-ready", 0);
    r = colo_send_msg(&s->sw, COLO_MSG_CHECKPOINT_READY);
    if (r)
        goto out;
    log_info("colo: secondary: ready");
    do {
        r = secondary_checkpoint(s);
    } while (!r);

    if (!failover_pending(c)) {
        /* The stream failed while the primary may still be alive (a rejected checkpoint, a
         * closed stream): report it, keep the last good state, and wait for the primary's
         * loss or an explicit request before taking over. */
        log_err("colo: secondary: leaving the checkpoint loop after checkpoint %llu: %s",
                (unsigned long long)s->n,
                sr_error(sr)       ? sr_errmsg(sr)
                : sw_error(&s->sw) ? sw_errmsg(&s->sw)
                                   : strerror(-r));
        shutdown(fd, SHUT_RDWR); /* the primary sees it at once and leaves COLO */
        pthread_mutex_lock(&c->lock);
        c->stats.errors++;
        c->reason = COLO_REASON_ERROR;
        pthread_mutex_unlock(&c->lock);
        colo_report_exit(c, COLO_MODE_SECONDARY, COLO_REASON_ERROR);
        pthread_mutex_lock(&c->lock);
        while (!c->failover_requested)
            pthread_cond_wait(&c->cond, &c->lock);
        pthread_mutex_unlock(&c->lock);
        reported = true;
    }
    reason = c->failover_reason;
    if (c->fence_cmd && run_fence(c->fence_cmd) < 0) {
        /* Split brain is worse than a stopped standby: stay as we are. */
        colo_exit(c, COLO_MODE_SECONDARY, COLO_REASON_ERROR);
        goto cleanup;
    }
    heartbeat_stop(&c->hb);
    colo_disk_discard(m->vm); /* writes of a checkpoint never applied never happened */
    colo_devices_takeover(m->vm);
    if (c->hooks.takeover)
        c->hooks.takeover(c->hooks.opaque);
    pthread_mutex_lock(&c->lock);
    c->fd = -1;
    c->stats.last_failover_unix_ms = unix_us() / 1000;
    c->stats.last_failover_ms = (now_ns() - c->failover_started_ns) / 1000000;
    pthread_mutex_unlock(&c->lock);
    migration_set_status(m, MIG_COMPLETED);
    loop_call(m->loop, takeover_cb, c);
    if (reported)
        colo_set_mode_none(c, COLO_MODE_SECONDARY, COLO_REASON_ERROR);
    else
        colo_exit(c, COLO_MODE_SECONDARY, reason);
    log_warn("colo: secondary took over from checkpoint %llu", (unsigned long long)s->n);
cleanup:
    stream_writer_destroy(&s->sw);
    colo_cache_destroy(&s->cache);
    free(s->devbuf);
    free(s);
    return 0;

out:
    log_err("colo: secondary: cannot start COLO: %s", strerror(-r));
    stream_writer_destroy(&s->sw);
    colo_cache_destroy(&s->cache);
    free(s);
    migration_set_status(m, MIG_FAILED);
    colo_exit(c, COLO_MODE_SECONDARY, COLO_REASON_ERROR);
    return r;
}
