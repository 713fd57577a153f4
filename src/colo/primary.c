/* primary.c: the primary's side of COLO: pause, copy locally, resume, send; release output.
 *
 *   request -> reply -> pause -> dirty RAM and device state into local buffers -> resume
 *   -> send (RAM segment), size + device buffer -> received: release epoch N output -> loaded
 * A dirty set over x-colo-buffer-max is sent from guest RAM with the guest paused instead. Out
 * of the loop, primary_leave applies the failover policy (docs/colo.md).
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "colo/colo_int.h"
#include "colo/craft.h"
#include "colo/devices.h"
#include "colo/disk.h"
#include "colo/fault.h"
#include "colo/hybrid.h"
#include "colo/proto.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/vm.h"
#include "migration/channel.h"
#include "migration/devstate.h"
#include "migration/migrate.h"
#include "migration/ramsend.h"

struct primary {
    struct colo *c;
    struct vm *vm;
    struct stream_writer *sw; /* to the secondary */
    struct stream_reader *rp; /* return path */
    struct stream_writer rambuf, devbuf;
    struct ram_source src;
    struct devstate *ds;
    unsigned long *dirty;
    uint64_t n;               /* checkpoint number */
    int io_timeout_ms;        /* x-colo-io-timeout: every stream wait; the base of the apply wait */
    uint64_t buffer_max;      /* x-colo-buffer-max: dirty RAM the checkpoint buffer may hold */
    unsigned long *svm_dirty; /* hybrid: the SVM's dirty pages, from checkpoint-reply */
    size_t bitmap_bytes;
};

/* Hybrid: checkpoint-reply carries the SVM's dirty bitmap: be64 length (exactly one bit per
 * page, in whole little-endian 64-bit words), then the words (docs/stream.md). */
static int get_svm_bitmap(struct primary *p)
{
    uint64_t n = sr_get_u64(p->rp);

    if (sr_error(p->rp))
        return sr_error(p->rp);
    if (n != p->bitmap_bytes) {
        sr_fail(p->rp, -EBADMSG, "checkpoint-reply: dirty bitmap of %llu bytes, expected %zu",
                (unsigned long long)n, p->bitmap_bytes);
        return -EBADMSG;
    }
    sr_get_bytes(p->rp, (uint8_t *)p->svm_dirty, p->bitmap_bytes);
    return sr_error(p->rp);
}

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

/* The RAM segment: dirty pages, then the closed epoch's disk writes, then EOF (checksum). */
static void put_ram_segment(struct primary *p, struct stream_writer *w)
{
    ram_save_open(w, STREAM_TAG_SECTION_START, RAM_SECTION_ID, "ram", 0, &p->src);
    ram_send_bitmap(w, &p->src, p->dirty, p->src.ram_size / PAGE_SIZE, NULL, NULL, NULL);
    ram_save_close(w, RAM_SECTION_ID, RAM_END_ROUND);
    ram_save_open(w, STREAM_TAG_SECTION_END, RAM_SECTION_ID, "ram", 0, &p->src);
    ram_save_close(w, RAM_SECTION_ID, 0);
    colo_disk_save_epoch(p->vm, w); /* the epoch's disk writes travel with its RAM */
}

/* How long vmstate-received and -loaded may take: x-colo-io-timeout plus the secondary's work
 * for this many bytes (staging, copying, writing the disk and syncing it) at a slow 16 MiB/s. */
static int loaded_timeout_ms(const struct primary *p, size_t bytes)
{
    uint64_t ms = (uint64_t)p->io_timeout_ms + (uint64_t)bytes / (16u << 10);
    return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

static int primary_checkpoint(struct primary *p)
{
    struct colo *c = p->c;
    uint64_t t0, t1, t2, pause_us = 0, epoch, dirty_pages;
    enum colo_fault_action ram_fault = COLO_FAULT_NONE, dev_fault;
    const uint8_t *ram = NULL, *dev;
    size_t ramlen = 0, devlen;
    bool direct;
    long harvested;
    int r, rd;

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
    if (!r && p->svm_dirty)
        r = get_svm_bitmap(p);
    if (r)
        return r;
    colo_fault_point("p-after-reply", p->n);

    /* The pause: everything the checkpoint needs is copied locally, then the guest runs on. */
    t0 = now_ns();
    vm_pause(p->vm);
    pthread_mutex_lock(&p->vm->dev_lock);
    t1 = now_ns();
    log_debug("colo: checkpoint %llu paused at %llu", (unsigned long long)p->n, colo_unix_us());
    colo_fault_point("p-paused", p->n);
    harvested = vm_dirty_harvest(p->vm, p->dirty);
    dirty_pages = harvested > 0 ? (uint64_t)harvested : 0;
    if (p->svm_dirty && harvested >= 0) {
        /* Pages the SVM wrote must be the PVM's again: send the union. */
        dirty_pages = 0;
        for (size_t w = 0; w < p->bitmap_bytes / sizeof(unsigned long); w++) {
            p->dirty[w] |= p->svm_dirty[w];
            dirty_pages += (uint64_t)__builtin_popcountl(p->dirty[w]);
        }
    }
    /* A dirty set beyond the buffer's limit goes straight from guest RAM to the socket, with
     * the guest paused until it is sent (QEMU's way): the buffer never grows past the limit. */
    direct = dirty_pages * PAGE_SIZE > p->buffer_max;
    r = harvested < 0 ? (int)harvested : devstate_capture(p->ds);
    sw_buf_reset(&p->devbuf);
    if (!r)
        devstate_save(p->ds, &p->devbuf);
    epoch = p->n;
    if (p->svm_dirty)
        hybrid_primary_close_gen(p->n); /* held output joins this epoch */
    colo_devices_close_epoch(c);
    rd = colo_disk_close_epoch(p->vm);
    if (!r)
        r = rd; /* the disk log missed a write: this checkpoint must not be sent */
    if (!direct) {
        sw_buf_reset(&p->rambuf);
        if (!r)
            put_ram_segment(p, &p->rambuf);
        pthread_mutex_unlock(&p->vm->dev_lock);
        /* The pause ends when the vCPUs are released (they may preempt us at once). */
        pause_us = (now_ns() - t0) / 1000;
        vm_resume(p->vm);
    }
    t2 = now_ns();
    /* Fault injection decides before the segments close (inject needs the segment open). */
    if (!direct) {
        ram_fault = colo_fault_point("p-before-send", p->n);
        if (ram_fault == COLO_FAULT_INJECT)
            colo_craft_inject(&p->rambuf, 0);
        stream_put_eof(&p->rambuf);
    }
    dev_fault = colo_fault_point("p-before-size", p->n);
    if (dev_fault == COLO_FAULT_BADDEV)
        colo_craft_baddev(&p->devbuf, p->ds);
    stream_put_eof(&p->devbuf);
    if (r || sw_error(&p->rambuf) || sw_error(&p->devbuf)) {
        log_err("colo: cannot capture checkpoint %llu: %s", (unsigned long long)p->n,
                r                      ? strerror(-r)
                : sw_error(&p->rambuf) ? sw_errmsg(&p->rambuf)
                                       : sw_errmsg(&p->devbuf));
        if (direct) {
            pthread_mutex_unlock(&p->vm->dev_lock);
            vm_resume(p->vm);
        }
        return r ? r : -EIO;
    }
    if (!direct)
        ram = sw_buf_data(&p->rambuf, &ramlen);
    dev = sw_buf_data(&p->devbuf, &devlen);
    if (ram && ram_fault == COLO_FAULT_CORRUPT)
        ((uint8_t *)ram)[ramlen / 2] ^= 0x10;
    if (ram && ram_fault == COLO_FAULT_INJECT)
        ((uint8_t *)ram)[ramlen - 2] ^= 0x10; /* inside the EOF's checksum */
    if (dev_fault == COLO_FAULT_CORRUPT)
        ((uint8_t *)dev)[devlen / 2] ^= 0x10;
    r = colo_send_msg(p->sw, COLO_MSG_VMSTATE_SEND);
    if (r) {
        /* fall through to the unlock below in direct mode */
    } else if (direct) {
        uint64_t before = sw_offset(p->sw);
        sw_checksum_reset(p->sw);
        put_ram_segment(p, p->sw);
        stream_put_eof(p->sw);
        r = sw_flush(p->sw);
        ramlen = (size_t)(sw_offset(p->sw) - before);
    } else {
        r = send_split(p->sw, ram, ramlen, "p-mid-ram", p->n);
    }
    if (direct) {
        pthread_mutex_unlock(&p->vm->dev_lock);
        pause_us = (now_ns() - t0) / 1000;
        vm_resume(p->vm);
        log_info("colo: checkpoint %llu: %llu dirty pages sent straight from guest RAM "
                 "(over the %llu KiB buffer), pause %llu ms",
                 (unsigned long long)p->n, (unsigned long long)dirty_pages,
                 (unsigned long long)p->buffer_max >> 10, (unsigned long long)pause_us / 1000);
    }
    if (r)
        return r;
    log_debug("colo: pause %llu us: barrier %llu, harvest+copy %llu", (unsigned long long)pause_us,
              (unsigned long long)(t1 - t0) / 1000, (unsigned long long)(t2 - t1) / 1000);
    log_debug("colo: send 'vmstate-size' %zu", devlen);
    sw_put_u32(p->sw, COLO_MSG_VMSTATE_SIZE);
    sw_put_u64(p->sw, devlen);
    r = send_split(p->sw, dev, devlen, "p-mid-devbuf", p->n);
    if (r)
        return r;
    colo_fault_point("p-after-devbuf", p->n);
    sr_set_timeout_ms(p->rp, loaded_timeout_ms(p, ramlen + devlen));
    r = colo_expect_msg(p->rp, COLO_MSG_VMSTATE_RECEIVED);
    if (r)
        return r;
    pthread_mutex_lock(&c->lock);
    r = c->quorum_lost ? -ENOLINK : 0; /* lost quorum: nothing more leaves */
    pthread_mutex_unlock(&c->lock);
    if (r)
        return r;
    /* The secondary holds checkpoint N: what the guest sent before it may leave. */
    log_debug("colo: checkpoint %llu received at %llu", (unsigned long long)p->n, colo_unix_us());
    colo_devices_release(c, epoch);
    if (p->svm_dirty)
        hybrid_primary_released();
    colo_fault_point("p-after-received", p->n);
    r = colo_expect_msg(p->rp, COLO_MSG_VMSTATE_LOADED);
    sr_set_timeout_ms(p->rp, p->io_timeout_ms);
    if (r)
        return r;
    colo_fault_point("p-after-loaded", p->n);
    colo_record_pause(c, pause_us, dirty_pages, ramlen + devlen);
    log_debug("colo: checkpoint %llu: %llu dirty pages, %zu bytes, pause %llu us",
              (unsigned long long)p->n, (unsigned long long)dirty_pages, ramlen + devlen,
              (unsigned long long)pause_us);
    return 0;
}

/* Sleep until the next checkpoint is due, one is requested, or COLO is to be left; in hybrid
 * mode also until the compare's next deadline, to look for timed-out output. */
static bool primary_wait(struct colo *c, uint64_t due_ns, bool hybrid, enum colo_ckpt_cause *why)
{
    bool go = true;

    pthread_mutex_lock(&c->lock);
    /* due_ns is on the monotonic clock (now_ns), and so is the wait. */
    while (!c->failover_requested && !c->leave_requested && !c->quorum_lost &&
           !c->checkpoint_requested && now_ns() < due_ns) {
        uint64_t wake = due_ns;
        if (hybrid) {
            pthread_mutex_unlock(&c->lock);
            hybrid_primary_poll(); /* may request a checkpoint (it takes c->lock) */
            wake = hybrid_primary_deadline();
            wake = wake < due_ns ? wake : due_ns;
            pthread_mutex_lock(&c->lock);
            if (c->checkpoint_requested)
                break;
        }
        colo_cond_wait_until(c, wake);
    }
    *why = c->checkpoint_requested ? c->requested_cause : COLO_CKPT_PERIODIC;
    c->checkpoint_requested = false;
    if (c->failover_requested || c->leave_requested || c->quorum_lost)
        go = false;
    pthread_mutex_unlock(&c->lock);
    return go;
}

/* A second (heartbeat) or third (hybrid frame link) connection to the secondary's listening
 * port, authenticated with the session token. Returns the fd or -errno; what names it in
 * the log. */
static int connect_authenticated(struct colo *c, struct migration *m, const char *what)
{
    struct chan_uri u;
    char err[256];
    int fd, r;

    if (chan_parse_uri(m->uri, &u, err, sizeof(err)))
        return -EINVAL;
    fd = chan_connect(&u, COLO_START_TIMEOUT, err, sizeof(err));
    if (fd < 0) {
        log_err("colo: %s: %s", what, err);
        return fd;
    }
    r = heartbeat_handshake(fd, true, &c->hbp, COLO_START_TIMEOUT, err, sizeof(err));
    if (r) {
        log_err("colo: %s: %s", what, err);
        close(fd);
        return r;
    }
    return fd;
}

static int open_heartbeat_primary(struct colo *c, struct migration *m)
{
    int fd = connect_authenticated(c, m, "heartbeat");

    if (fd < 0)
        return fd;
    return heartbeat_start(&c->hb, fd, &c->hbp, colo_hb_event, c);
}

/* Hybrid: the frame link (TCP_NODELAY: frames are latency-bound). */
static int open_link_primary(struct colo *c, struct migration *m)
{
    int fd = connect_authenticated(c, m, "frame link");

    if (fd >= 0)
        chan_tune_socket(fd);
    return fd;
}

/* Why the primary leaves COLO; the order is the order of precedence. */
enum leave_cause { LEAVE_TOOK_OVER, LEAVE_QUORUM, LEAVE_REQUEST, LEAVE_LOST, LEAVE_ERROR };

static const char *const leave_names[] = {"the secondary took over", "quorum lost",
                                          "operator request", "the secondary is lost",
                                          "replication failed"};

/*
 * The failover policy, primary side (docs/colo.md). Output the secondary never acknowledged is
 * released only if the secondary confirmed it is disarmed (it can never serve); otherwise it is
 * discarded. The guest goes on unless the secondary may be serving: it said so, or our own
 * heartbeat stalled past the timeout, or the fence command was lost.
 */
static enum leave_cause leave_cause_now(struct colo *c)
{
    enum leave_cause cause;

    pthread_mutex_lock(&c->lock);
    cause = c->peer_took_over                           ? LEAVE_TOOK_OVER
            : !c->failover_requested                    ? LEAVE_ERROR
            : c->failover_reason == COLO_REASON_REQUEST ? LEAVE_REQUEST
                                                        : LEAVE_LOST;
    pthread_mutex_unlock(&c->lock);
    return cause;
}

/* Until the heartbeat thread reported its last event; a live peer acknowledges LEFT at once
 * and a silent one is judged within the timeout, so the bound is only a backstop. */
static void wait_hb_verdict(struct colo *c)
{
    uint64_t due = now_ns() + 10ULL * c->hbp.timeout_ms * 1000000ULL;

    pthread_mutex_lock(&c->lock);
    while (!c->hb_ended && now_ns() < due)
        colo_cond_wait_until(c, due);
    pthread_mutex_unlock(&c->lock);
}

static void primary_leave(struct primary *p)
{
    struct colo *c = p->c;
    enum leave_cause cause = leave_cause_now(c);
    bool release = false, serve = true;
    uint64_t discarded;

    /* Hybrid: no more comparing; what is held waits in the epoch buffer for the policy. */
    hybrid_primary_stop(c);

    if (cause == LEAVE_ERROR || cause == LEAVE_REQUEST) {
        /* The secondary may be alive and armed: it must hear that we go on alone. Meanwhile
         * the heartbeat thread judges what it read (a thawed process reads TAKEOVER first). */
        if (heartbeat_leave(&c->hb, (uint32_t)cause, c->hbp.timeout_ms) == 0) {
            release = true;
        } else {
            /* No answer. The heartbeat thread's verdict decides: the peer's silence (lost)
             * or its TAKEOVER (a stalled thread judges when it runs again). */
            wait_hb_verdict(c);
            if (leave_cause_now(c) <= LEAVE_QUORUM)
                cause = leave_cause_now(c);
            else if (cause == LEAVE_ERROR)
                cause = LEAVE_LOST; /* it is gone or cut off */
        }
    }
    switch (cause) {
    case LEAVE_ERROR:
    case LEAVE_REQUEST:
        break; /* acknowledged, or the operator said the secondary is lost */
    case LEAVE_LOST:
        /* Queued for a secondary that is only frozen: when it thaws it reads this first. */
        heartbeat_leave(&c->hb, (uint32_t)cause, 0);
        if (c->cluster)
            serve = colo_quorum_gate_primary(c); /* quorum arbitrates; output stays held */
        if (serve && c->fence_cmd)
            serve = colo_run_fence(c, "primary") == 0;
        break;
    case LEAVE_QUORUM:
        serve = false;
        break;
    case LEAVE_TOOK_OVER:
        serve = false;
        break;
    }
    heartbeat_stop(&c->hb);
    if (!serve) {
        /* Our partner may be serving now: never again a frame from here. */
        vm_pause(p->vm);
        vm_hold_stopped(p->vm, VM_PAUSED);
        if (c->cluster)
            cluster_leave_group(); /* a survivor in our partition may take over now */
    }
    discarded = release ? 0 : colo_devices_discard(c);
    colo_devices_primary_stop(c, p->vm);
    pthread_mutex_lock(&c->lock);
    c->stats.discarded_frames += discarded;
    c->fenced = !serve;
    colo_decide(c, "primary left COLO after checkpoint %llu: %s; %s; %s", (unsigned long long)p->n,
                leave_names[cause],
                release ? "the secondary acknowledged and is disarmed: held output released"
                        : "held output discarded (the secondary never had it)",
                serve ? "the guest runs on unprotected"
                : c->cluster && !(c->cv.up && c->cv.quorate)
                    ? "the guest is paused: this partition has no quorum, the secondary may be "
                      "serving"
                    : "the guest is paused: the secondary may be serving");
    pthread_mutex_unlock(&c->lock);
}

int colo_primary_run(struct migration *m, int fd, struct stream_writer *sw,
                     struct stream_reader *rp, struct devstate *ds, unsigned long *dirty)
{
    struct colo *c = &colo_state;
    struct primary *p = calloc(1, sizeof(*p));
    enum colo_reason reason;
    enum colo_ckpt_cause why;
    uint64_t due;
    int r, link_fd = -1;

    if (!p)
        return -ENOMEM;
    pthread_mutex_lock(&c->lock);
    c->mode = COLO_MODE_PRIMARY;
    c->reason = COLO_REASON_NONE;
    c->failover_requested = c->force = c->leave_requested = false;
    c->checkpoint_requested = false;
    c->peer_left = c->peer_took_over = c->hb_ended = false;
    c->armed = c->unusable = c->fenced = c->quorum_lost = false;
    c->decision[0] = 0;
    c->fd = fd;
    memset(&c->stats, 0, sizeof(c->stats));
    pthread_mutex_unlock(&c->lock);
    migration_set_status(m, MIG_COLO); /* after the mode: status colo means COLO runs */
    *p = (struct primary){.c = c, .vm = m->vm, .sw = sw, .rp = rp, .ds = ds, .dirty = dirty};
    pthread_mutex_lock(&m->lock);
    p->io_timeout_ms = (int)m->params.colo_io_timeout_ms;
    p->buffer_max = m->params.colo_buffer_max;
    pthread_mutex_unlock(&m->lock);
    p->src = (struct ram_source){
        .host = m->vm->mem.base, .ram_size = m->vm->mem.size, .page_size = PAGE_SIZE};
    r = stream_writer_init_buf(&p->rambuf, 1u << 20);
    if (!r)
        r = stream_writer_init_buf(&p->devbuf, 1u << 20);
    if (r)
        goto out;
    sw_set_timeout_ms(sw, p->io_timeout_ms);
    sr_set_timeout_ms(p->rp, COLO_START_TIMEOUT);
    r = open_heartbeat_primary(c, m);
    if (r)
        goto out;
    if (c->hybrid) {
        p->bitmap_bytes = (p->src.ram_size / PAGE_SIZE + 63) / 64 * 8;
        p->svm_dirty = calloc(1, p->bitmap_bytes);
        r = p->svm_dirty ? 0 : -ENOMEM;
        if (!r) {
            link_fd = open_link_primary(c, m);
            r = link_fd < 0 ? link_fd : 0;
        }
        if (r)
            goto out;
    }
    r = colo_expect_msg(p->rp, COLO_MSG_CHECKPOINT_READY);
    if (r)
        goto out;
    sr_set_timeout_ms(p->rp, p->io_timeout_ms);
    log_info("colo: primary: secondary ready, %s mode, checkpoints %s %llu ms",
             c->hybrid ? "hybrid" : "periodic", c->hybrid ? "at least every" : "every",
             (unsigned long long)m->params.checkpoint_delay_ms);

    /* From now on output waits for its checkpoint. The VM was paused by the migration. The
     * disks already log epoch 1 (the hand-over switched them, handover.c). */
    colo_devices_primary_start(c, m->vm);
    if (c->hybrid) {
        r = hybrid_primary_start(c, m->vm, link_fd);
        link_fd = -1;
        if (r) {
            colo_devices_primary_stop(c, m->vm);
            goto out;
        }
    }
    colo_disk_epochs_begin(m->vm);
    vm_set_state(m->vm, VM_RUNNING);
    vm_resume(m->vm);
    due = now_ns() + m->params.checkpoint_delay_ms * 1000000ULL;
    while (primary_wait(c, due, c->hybrid, &why)) {
        due = now_ns() + m->params.checkpoint_delay_ms * 1000000ULL;
        pthread_mutex_lock(&c->lock);
        c->stats.by_cause[why]++;
        pthread_mutex_unlock(&c->lock);
        log_debug("colo: checkpoint %llu: %s", (unsigned long long)p->n + 1,
                  colo_ckpt_cause_name(why));
        r = primary_checkpoint(p);
        if (r) {
            log_err("colo: primary: checkpoint %llu failed: %s", (unsigned long long)p->n,
                    sr_error(p->rp) ? sr_errmsg(p->rp)
                    : sw_error(sw)  ? sw_errmsg(sw)
                                    : strerror(-r));
            break;
        }
    }
    pthread_mutex_lock(&c->lock);
    reason = c->failover_requested && c->failover_reason == COLO_REASON_REQUEST
                 ? COLO_REASON_REQUEST
                 : COLO_REASON_ERROR;
    if (c->leave_requested)
        log_err("colo: primary: %s", c->leave_why);
    c->fd = -1;
    pthread_mutex_unlock(&c->lock);
    primary_leave(p);
    colo_disk_stop(m->vm);
    vm_dirty_log_stop(m->vm);
    migration_set_status(m, MIG_COMPLETED);
    pthread_mutex_lock(&c->lock);
    c->stats.last_failover_unix_ms = colo_unix_us() / 1000;
    pthread_mutex_unlock(&c->lock);
    colo_exit(c, COLO_MODE_PRIMARY, reason);
    stream_writer_destroy(&p->rambuf);
    stream_writer_destroy(&p->devbuf);
    free(p->svm_dirty);
    free(p);
    return 0; /* COLO ran: the migration completed, whatever ended it */

out:
    log_err("colo: primary: cannot start COLO: %s",
            sr_error(p->rp) ? sr_errmsg(p->rp) : strerror(-r));
    heartbeat_stop(&c->hb);
    if (link_fd >= 0)
        close(link_fd);
    colo_disk_stop(m->vm);
    stream_writer_destroy(&p->rambuf);
    stream_writer_destroy(&p->devbuf);
    free(p->svm_dirty);
    free(p);
    vm_set_state(m->vm, VM_RUNNING);
    vm_resume(m->vm);
    migration_set_status(m, MIG_FAILED);
    colo_exit(c, COLO_MODE_PRIMARY, COLO_REASON_ERROR);
    return r;
}
