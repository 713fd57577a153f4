/* secondary.c: the secondary's side of COLO: stage a whole checkpoint, verify, apply; take over.
 *
 *   request -> reply -> RAM into the colo cache -> exactly `size` bytes of device state
 *   -> both checksums verified -> received -> apply (devices, cache -> RAM, disk, vCPUs) -> loaded
 */

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "block/virtio_blk.h"
#include "colo/colo_int.h"
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

static int secondary_apply(struct secondary *s, size_t devlen)
{
    struct stream_reader mr;
    int r;

    /* Devices first (staged vCPU state, inventory devices); then RAM; then the engine. */
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
        colo_wake_stream(c); /* deferred from colo_request_failover */
    pthread_mutex_unlock(&c->lock);
    if (r)
        return r;
    colo_record_pause(c, (now_ns() - t0) / 1000, s->cache.nruns, size);
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
                           m->params.heartbeat_timeout_ms, colo_hb_lost, s->c);
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

    if (!colo_failover_pending(c)) {
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
    c->stats.last_failover_unix_ms = colo_unix_us() / 1000;
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
