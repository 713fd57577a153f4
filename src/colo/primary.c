/* primary.c: the primary's side of COLO: pause, copy locally, resume, send; release output.
 *
 *   request -> reply -> pause -> dirty RAM and device state into local buffers -> resume
 *   -> send (RAM segment), size + device buffer -> received: release epoch N output -> loaded
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

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
    log_debug("colo: checkpoint %llu paused at %llu", (unsigned long long)p->n, colo_unix_us());
    colo_fault_point("p-paused", p->n);
    harvested = vm_dirty_harvest(p->vm, p->dirty);
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
    log_debug("colo: checkpoint %llu received at %llu", (unsigned long long)p->n, colo_unix_us());
    colo_devices_release(c, epoch);
    colo_fault_point("p-after-received", p->n);
    r = colo_expect_msg(p->rp, COLO_MSG_VMSTATE_LOADED);
    if (r)
        return r;
    colo_fault_point("p-after-loaded", p->n);
    colo_record_pause(c, pause_us, dirty_pages, ramlen + devlen);
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
    /* due_ns is on the monotonic clock (now_ns), and so is the wait. */
    while (!c->failover_requested && !c->checkpoint_requested && now_ns() < due_ns)
        colo_cond_wait_until(c, due_ns);
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
                           m->params.heartbeat_timeout_ms, colo_hb_lost, c);
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
            reason = colo_failover_pending(c) ? c->failover_reason : COLO_REASON_ERROR;
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
    vm_dirty_log_stop(m->vm);
    migration_set_status(m, MIG_COMPLETED);
    pthread_mutex_lock(&c->lock);
    c->fd = -1;
    c->stats.last_failover_unix_ms = colo_unix_us() / 1000;
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
