/* secondary.c: the secondary's side of COLO: stage a whole checkpoint, verify, apply; take over.
 *
 *   request -> reply -> RAM into the colo cache -> exactly `size` bytes of device state
 *   -> both checksums verified -> devices (all or nothing) -> received -> cache -> RAM, disk,
 *   vCPUs -> loaded
 * then, out of the loop, the failover policy (docs/colo.md): take over, or stand by disarmed.
 */

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "block/virtio_blk.h"
#include "colo/colo_int.h"
#include "colo/devices.h"
#include "colo/disk.h"
#include "colo/fault.h"
#include "colo/hybrid.h"
#include "colo/proto.h"
#include "colo/stage.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/vm.h"
#include "migration/channel.h"
#include "migration/devstate.h"
#include "migration/migrate.h"

struct secondary {
    struct colo *c;
    struct vm *vm;
    struct stream_reader *sr;
    struct stream_loader *ld;
    struct stream_writer sw; /* to the primary (the return path) */
    struct devstate *ds;
    struct ram_sink *sink;
    struct colo_cache cache;
    struct colo_stage st; /* the restricted loaders: RAM segment, device buffer */
    uint8_t *devbuf;
    size_t devcap;
    uint64_t n;
    bool ram_fault_armed;
    bool hybrid;              /* the SVM runs between checkpoints (hybrid.c) */
    bool svm_paused;          /* hybrid: stopped by a checkpoint request, not yet resumed */
    unsigned long *svm_dirty; /* hybrid: its dirty pages, sent with checkpoint-reply */
    size_t bitmap_bytes;
};

/* Hybrid: stop the SVM and answer with its dirty bitmap (be64 length, little-endian 64-bit
 * words, one bit per page: docs/stream.md). */
static int send_reply_hybrid(struct secondary *s)
{
    int r;

    memset(s->svm_dirty, 0, s->bitmap_bytes);
    r = hybrid_secondary_pause(s->vm, s->svm_dirty);
    s->svm_paused = true;
    if (r)
        return r;
    sw_put_u32(&s->sw, COLO_MSG_CHECKPOINT_REPLY);
    sw_put_u64(&s->sw, s->bitmap_bytes);
    sw_put_bytes(&s->sw, (const uint8_t *)s->svm_dirty, s->bitmap_bytes);
    return sw_flush(&s->sw);
}

/* A run the cache cannot record fails the RAM segment: the checkpoint is rejected (drop). */
static int loaded_cb(void *opaque, uint64_t offset, uint64_t len)
{
    struct secondary *s = opaque;
    int r = colo_cache_loaded(&s->cache, offset, len);

    if (s->ram_fault_armed) {
        s->ram_fault_armed = false;
        colo_fault_point("s-mid-ram", s->n);
    }
    return r;
}

/* Wait for the next request without a deadline, but notice a failover at once. */
static int wait_readable(struct secondary *s)
{
    while (!colo_failover_pending(s->c)) {
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

/* Mark the standby unusable: part of checkpoint n reached the VM and the rest cannot. */
static void make_unusable(struct secondary *s, const char *what, int r)
{
    struct colo *c = s->c;

    pthread_mutex_lock(&c->lock);
    c->unusable = true;
    c->armed = false;
    c->stats.errors++;
    colo_decide(c,
                "checkpoint %llu was applied only in part (%s: %s): this standby is unusable "
                "and will never take over",
                (unsigned long long)s->n, what, strerror(-r));
    pthread_mutex_unlock(&c->lock);
}

/*
 * Apply a whole, verified checkpoint. The devices load all or nothing (stage.c: on a failure
 * they are back to the last good state and the checkpoint is rejected: the return value); once
 * they are in, the rest must follow, whatever the primary does: RAM from the cache (cannot
 * fail), the disk writes, the vCPUs. A failure there leaves a torn standby: unusable.
 */
static int secondary_apply(struct secondary *s, size_t devlen, bool *torn)
{
    char err[256];
    int r;

    *torn = false;
    pthread_mutex_lock(&s->vm->dev_lock);
    r = colo_stage_load_devices(&s->st, s->devbuf, devlen, err, sizeof(err));
    if (r) {
        pthread_mutex_unlock(&s->vm->dev_lock);
        log_err("colo: secondary: device state of checkpoint %llu: %s", (unsigned long long)s->n,
                err);
        if (r == -ENOTRECOVERABLE) {
            make_unusable(s, "restoring the devices", r);
            *torn = true;
        }
        return r;
    }
    /* From here on the checkpoint is applied to the end. */
    r = colo_send_msg(&s->sw, COLO_MSG_VMSTATE_RECEIVED);
    if (r)
        log_warn("colo: secondary: vmstate-received not sent (%s); applying checkpoint %llu "
                 "anyway: it is whole and verified",
                 strerror(-r), (unsigned long long)s->n);
    colo_fault_point("s-after-received", s->n);
    colo_fault_point("s-mid-apply", s->n);
    colo_cache_apply(&s->cache, &s->vm->mem);
    r = colo_disk_apply(s->vm, s->n);
    if (r) {
        make_unusable(s, "writing the disk", r);
        *torn = true;
    } else if ((r = devstate_apply(s->ds))) {
        make_unusable(s, "loading the vCPUs", r);
        *torn = true;
    }
    pthread_mutex_unlock(&s->vm->dev_lock);
    return r;
}

static int secondary_checkpoint(struct secondary *s)
{
    struct colo *c = s->c;
    uint32_t msg;
    uint64_t size, t0, pages;
    bool torn;
    int r;

    r = wait_readable(s);
    if (r)
        return r;
    s->n++;
    r = colo_expect_msg(s->sr, COLO_MSG_CHECKPOINT_REQUEST);
    if (r)
        return r;
    colo_fault_point("s-after-request", s->n);
    r = s->hybrid ? send_reply_hybrid(s) : colo_send_msg(&s->sw, COLO_MSG_CHECKPOINT_REPLY);
    if (r)
        return r;
    colo_fault_point("s-after-reply", s->n);
    r = colo_expect_msg(s->sr, COLO_MSG_VMSTATE_SEND);
    if (r)
        return r;
    /* RAM and disk writes only, staged; the segment's EOF carries its checksum. Nothing else
     * may appear in it (stage.c): no device section, no disk-sync write, no command. */
    colo_cache_discard(&s->cache);
    colo_disk_discard(s->vm);
    s->ram_fault_armed = true;
    sr_checksum_reset(s->sr);
    r = colo_stage_load_ram(&s->st, s->sr);
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

    /* The whole checkpoint is here and verified: apply it. A failover waits for this. */
    pthread_mutex_lock(&c->lock);
    c->applying = true;
    pthread_mutex_unlock(&c->lock);
    t0 = now_ns();
    pages = s->cache.bytes / PAGE_SIZE;
    r = secondary_apply(s, size, &torn);
    pthread_mutex_lock(&c->lock);
    c->applying = false;
    if (!r)
        c->last_good = s->n;
    if (c->failover_requested || c->peer_left)
        colo_wake_stream(c); /* deferred while applying */
    pthread_mutex_unlock(&c->lock);
    if (r && !torn)
        goto drop;
    if (r)
        return r;
    colo_record_pause(c, (now_ns() - t0) / 1000, pages, size);
    if (s->hybrid) {
        hybrid_secondary_resume(s->vm, s->n, true); /* the SVM runs from checkpoint n */
        s->svm_paused = false;
    }
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

static void takeover_cb(void *opaque)
{
    struct colo *c = opaque;

    /* The SVM runs from its last applied checkpoint, on its own now. */
    vm_set_state(c->vm, VM_PAUSED);
    vm_cont(c->vm);
}

/* The primary connects a second time for the heartbeat (and in hybrid mode a third time for
 * the frame link). Anyone may connect to the listening port: a connection that cannot prove it
 * knows this session's token is closed, and we wait on for the real one until the deadline.
 * Returns the authenticated fd or -errno. */
static int accept_authenticated(struct secondary *s, struct migration *m, const char *what)
{
    uint64_t deadline = now_ms() + COLO_START_TIMEOUT;
    char err[160];

    if (m->listen_fd < 0)
        return -ENOTCONN;
    for (;;) {
        uint64_t now = now_ms();
        struct pollfd p = {.fd = m->listen_fd, .events = POLLIN};
        int fd, r;

        if (now >= deadline)
            return -ETIMEDOUT;
        r = poll(&p, 1, (int)(deadline - now));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r == 0 ? -ETIMEDOUT : -errno;
        fd = chan_accept(m->listen_fd);
        if (fd < 0)
            return fd;
        r = heartbeat_handshake(fd, false, &s->c->hbp, (int)(deadline - now_ms()), err,
                                sizeof(err));
        if (r) {
            log_warn("colo: secondary: refused a %s connection: %s", what, err);
            close(fd);
            continue;
        }
        return fd;
    }
}

static int accept_heartbeat(struct secondary *s, struct migration *m)
{
    int fd = accept_authenticated(s, m, "heartbeat");

    if (fd < 0)
        return fd;
    return heartbeat_start(&s->c->hb, fd, &s->c->hbp, colo_hb_event, s->c);
}

/* Out of the checkpoint loop without a takeover: wait for one that the policy allows (the
 * primary's loss while armed, or an operator), running the fence first. The heartbeat is
 * joined as soon as it ended. Returns once the takeover may go ahead. */
static void standby(struct secondary *s)
{
    struct colo *c = s->c;
    bool joined = false;

    for (;;) {
        pthread_mutex_lock(&c->lock);
        while (!c->failover_requested) {
            if (c->hb_ended && !joined) {
                /* Never with c->lock held: the heartbeat's callback takes it. */
                pthread_mutex_unlock(&c->lock);
                heartbeat_stop(&c->hb);
                joined = true;
                pthread_mutex_lock(&c->lock);
                continue;
            }
            pthread_cond_wait(&c->cond, &c->lock);
        }
        pthread_mutex_unlock(&c->lock);
        if (c->cluster && !c->force && colo_quorum_gate(c)) {
            pthread_mutex_lock(&c->lock);
            c->failover_requested = false;
            pthread_mutex_unlock(&c->lock);
            continue;
        }
        if (!c->fence_cmd || colo_run_fence(c, "secondary") == 0)
            return;
        /* Split brain is worse than a stopped standby: stay as we are, disarmed. An operator
         * may try again (x-colo-lost-heartbeat force=true), which runs the fence again. */
        pthread_mutex_lock(&c->lock);
        c->failover_requested = false;
        c->force = false;
        c->armed = false; /* the other side won: never again by itself */
        c->stats.errors++;
        colo_decide(c,
                    "the fence command failed: not taking over; standing by with checkpoint "
                    "%llu",
                    (unsigned long long)c->last_good);
        pthread_mutex_unlock(&c->lock);
    }
}

int colo_secondary_run(struct migration *m, int fd, struct stream_reader *sr,
                       struct stream_loader *ld, struct devstate *ds)
{
    struct colo *c = &colo_state;
    struct secondary *s = calloc(1, sizeof(*s));
    enum colo_reason reason;
    bool reported = false, staged = false;
    int r;

    if (!s)
        return -ENOMEM;
    *s = (struct secondary){.c = c, .vm = m->vm, .sr = sr, .ld = ld, .ds = ds};
    s->sink = ds->reg[DEVSTATE_RAM_INDEX].opaque;
    pthread_mutex_lock(&c->lock);
    c->mode = COLO_MODE_SECONDARY;
    c->reason = COLO_REASON_NONE;
    c->failover_requested = c->force = false;
    c->peer_left = c->peer_took_over = c->hb_ended = false;
    c->armed = true;
    c->unusable = c->fenced = false;
    c->last_good = 0;
    c->decision[0] = 0;
    c->fd = fd;
    memset(&c->stats, 0, sizeof(c->stats));
    pthread_mutex_unlock(&c->lock);
    migration_set_status(m, MIG_COLO); /* after the mode: status colo means COLO runs */
    vm_set_state(m->vm, VM_COLO);
    colo_devices_secondary_start(m->vm);
    virtio_blk_lock_all(m->vm, 1000); /* our own images: nobody else may write them */

    r = colo_cache_init(&s->cache, m->vm->mem.size);
    if (!r)
        r = colo_stage_init(&s->st, ds);
    if (!r)
        staged = true;
    if (!r)
        r = stream_writer_init_fd(&s->sw, fd);
    if (r)
        goto out;
    sw_set_timeout_ms(&s->sw, (int)m->params.colo_io_timeout_ms);
    sr_set_timeout_ms(sr, (int)m->params.colo_io_timeout_ms);
    /* From now on pages go to the cache, never straight to guest RAM. */
    s->sink->host = s->cache.base;
    s->sink->loaded = loaded_cb;
    s->sink->loaded_opaque = s;
    r = accept_heartbeat(s, m);
    if (r) {
        log_err("colo: secondary: no heartbeat connection: %s", strerror(-r));
        goto out;
    }
    if (c->hybrid) {
        int lfd = accept_authenticated(s, m, "frame link");
        s->hybrid = true;
        s->bitmap_bytes = (m->vm->mem.size / PAGE_SIZE + 63) / 64 * 8;
        s->svm_dirty = calloc(1, s->bitmap_bytes);
        if (lfd < 0 || !s->svm_dirty) {
            r = lfd < 0 ? lfd : -ENOMEM;
            if (lfd >= 0)
                close(lfd);
            log_err("colo: secondary: no frame link: %s", strerror(-r));
            goto out;
        }
        chan_tune_socket(lfd);
        r = hybrid_secondary_start(c, m->vm, lfd);
        if (r) {
            log_err("colo: secondary: cannot run the secondary VM: %s", strerror(-r));
            goto out;
        }
    }
    colo_fault_point("s-before-ready", 0);
    r = colo_send_msg(&s->sw, COLO_MSG_CHECKPOINT_READY);
    if (r)
        goto out;
    log_info("colo: secondary: ready");
    do {
        r = secondary_checkpoint(s);
    } while (!r);

    if (!colo_failover_pending(c)) {
        /* The session broke while the primary may still be alive (a rejected checkpoint, a
         * closed stream, the primary left COLO): report it, keep the last good state, and
         * wait for what the policy allows: the primary's loss while armed (it said nothing
         * about leaving), or an operator. */
        log_err("colo: secondary: leaving the checkpoint loop after checkpoint %llu: %s",
                (unsigned long long)s->n,
                sr_error(sr)       ? sr_errmsg(sr)
                : sw_error(&s->sw) ? sw_errmsg(&s->sw)
                                   : strerror(-r));
        shutdown(fd, SHUT_RDWR); /* the primary sees it at once and leaves COLO */
        if (s->hybrid && !s->svm_paused) {
            /* A standby without a primary to compare with: it waits, stopped, as in periodic
             * mode; a takeover resumes it from where it stopped. */
            hybrid_secondary_pause(m->vm, s->svm_dirty);
            s->svm_paused = true;
        }
        pthread_mutex_lock(&c->lock);
        c->stats.errors++;
        c->reason = COLO_REASON_ERROR;
        pthread_mutex_unlock(&c->lock);
        colo_report_exit(c, COLO_MODE_SECONDARY, COLO_REASON_ERROR);
        reported = true;
    }
    standby(s);
    reason = c->failover_reason;
    /* Tell the primary, if it is only frozen, that the VM runs here now: it must not. */
    heartbeat_send_takeover(&c->hb);
    heartbeat_stop(&c->hb);
    colo_disk_discard(m->vm); /* writes of a checkpoint never applied never happened */
    if (s->hybrid)
        hybrid_secondary_takeover(m->vm); /* the SVM runs on: no rollback */
    colo_devices_takeover(m->vm);
    pthread_mutex_lock(&c->lock);
    c->fd = -1;
    c->stats.last_failover_unix_ms = colo_unix_us() / 1000;
    c->stats.last_failover_ms = (now_ns() - c->failover_started_ns) / 1000000;
    colo_decide(c, "took over from checkpoint %llu%s", (unsigned long long)c->last_good,
                c->force ? " (forced by an operator)" : "");
    pthread_mutex_unlock(&c->lock);
    migration_set_status(m, MIG_COMPLETED);
    loop_call(m->loop, takeover_cb, c);
    if (reported)
        colo_set_mode_none(c, COLO_MODE_SECONDARY, COLO_REASON_ERROR);
    else
        colo_exit(c, COLO_MODE_SECONDARY, reason);
    stream_writer_destroy(&s->sw);
    colo_stage_destroy(&s->st);
    colo_cache_destroy(&s->cache);
    free(s->devbuf);
    free(s->svm_dirty);
    free(s);
    return 0;

out:
    log_err("colo: secondary: cannot start COLO: %s", strerror(-r));
    hybrid_secondary_stop();
    free(s->svm_dirty);
    heartbeat_stop(&c->hb);
    stream_writer_destroy(&s->sw);
    if (staged)
        colo_stage_destroy(&s->st);
    colo_cache_destroy(&s->cache);
    free(s);
    migration_set_status(m, MIG_FAILED);
    colo_exit(c, COLO_MODE_SECONDARY, COLO_REASON_ERROR);
    return r;
}
