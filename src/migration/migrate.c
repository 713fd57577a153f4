/* migrate.c: outgoing precopy migration: RAM rounds over the dirty log, then a paused final pass.
 */
#include "migration/migrate.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "block/virtio_blk.h"
#include "colo/colo.h"
#include "colo/disk.h"
#include "colo/fault.h"
#include "colo/handover.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/vm.h"
#include "migration/channel.h"
#include "migration/devstate.h"
#include "migration/ram.h"
#include "migration/ramsend.h"
#include "migration/section.h"
#include "migration/stream.h"

#define RAM_SECTION_ID     1
#define CONNECT_TIMEOUT_MS 10000
#define IO_TIMEOUT_MS      10000
#define DEFAULT_MAX_ITERS  30

static const char *const status_names[MIG_STATUS__MAX] = {
    [MIG_NONE] = "none",
    [MIG_SETUP] = "setup",
    [MIG_ACTIVE] = "active",
    [MIG_DEVICE] = "device",
    [MIG_COMPLETED] = "completed",
    [MIG_FAILED] = "failed",
    [MIG_CANCELLING] = "cancelling",
    [MIG_CANCELLED] = "cancelled",
    [MIG_COLO] = "colo",
};

const char *mig_status_name(enum mig_status s)
{
    return (unsigned)s < MIG_STATUS__MAX ? status_names[s] : "unknown";
}

void migration_init(struct migration *m, struct vm *vm, struct loop *loop)
{
    memset(m, 0, sizeof(*m));
    m->vm = vm;
    m->loop = loop;
    m->fd = m->listen_fd = -1;
    pthread_mutex_init(&m->lock, NULL);
    m->params.downtime_limit_ms = 300;
    m->params.max_bandwidth = 0;
    m->params.max_iterations = DEFAULT_MAX_ITERS;
    m->params.checkpoint_delay_ms = 100;
    m->params.heartbeat_interval_ms = 50;
    m->params.heartbeat_timeout_ms = 300;
    m->params.colo_disk_log_max = 1024ULL << 20;
    m->params.colo_io_timeout_ms = 5000;
    m->params.colo_buffer_max = 256ULL << 20;
    m->params.colo_hybrid = 0;
    m->params.compare_timeout_ms = 200; /* docs/hybrid.md, "Compare timeout" */
    m->stats.total = vm->mem.size;
}

void migration_destroy(struct migration *m)
{
    atomic_store(&m->cancel, true);
    if (m->fd >= 0)
        shutdown(m->fd, SHUT_RDWR);
    if (m->listen_fd >= 0)
        shutdown(m->listen_fd, SHUT_RDWR);
    if (m->thread_running) {
        pthread_join(m->thread, NULL);
        m->thread_running = false;
    }
    if (m->fd >= 0)
        close(m->fd);
    if (m->listen_fd >= 0)
        close(m->listen_fd);
    m->fd = m->listen_fd = -1;
}

struct status_note {
    struct migration *m;
    enum mig_status s;
};

static void status_note_cb(void *opaque)
{
    struct status_note *n = opaque;

    if (n->m->notify)
        n->m->notify(n->m->notify_opaque, n->s);
    free(n);
}

void migration_set_status(struct migration *m, enum mig_status s)
{
    struct status_note *n;

    pthread_mutex_lock(&m->lock);
    if (m->status == s) {
        pthread_mutex_unlock(&m->lock);
        return;
    }
    m->status = s;
    pthread_mutex_unlock(&m->lock);
    log_info("migration: %s", mig_status_name(s));
    n = malloc(sizeof(*n));
    if (!n)
        return;
    *n = (struct status_note){m, s};
    if (loop_call(m->loop, status_note_cb, n) < 0)
        free(n);
}

enum mig_status migration_get_status(struct migration *m)
{
    enum mig_status s;

    pthread_mutex_lock(&m->lock);
    s = m->status;
    pthread_mutex_unlock(&m->lock);
    return s;
}

void migration_set_error(struct migration *m, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&m->lock);
    if (!m->error[0]) {
        va_start(ap, fmt);
        vsnprintf(m->error, sizeof(m->error), fmt, ap);
        va_end(ap);
        log_err("migration: %s", m->error);
    }
    pthread_mutex_unlock(&m->lock);
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ULL),
                          .tv_nsec = (long)(ns % 1000000000ULL)};
    nanosleep(&ts, NULL);
}

/* One outgoing run's working state. */
struct outgoing {
    struct migration *m;
    struct vm *vm;
    struct stream_writer sw;
    struct stream_reader rp; /* the return path */
    struct ram_source src;
    int fd;               /* connected by the caller (migrate_start_fd), else -1 */
    unsigned long *dirty; /* pages to send */
    uint64_t npages;
    bool to_file;
    bool disks;  /* COLO initial disk sync in progress */
    bool paused; /* we hold a pause on the VM */
    uint64_t iter_start_ns;
    uint64_t iter_start_bytes;
};

static bool cancelled(struct outgoing *o)
{
    return atomic_load(&o->m->cancel);
}

/* Keep the average rate since the iteration began at or below max-bandwidth. */
static void rate_limit(struct outgoing *o)
{
    uint64_t bw, sent, want_ns, elapsed;

    pthread_mutex_lock(&o->m->lock);
    bw = o->m->params.max_bandwidth;
    pthread_mutex_unlock(&o->m->lock);
    if (!bw || o->paused)
        return; /* never throttle the downtime */
    sent = sw_offset(&o->sw) - o->iter_start_bytes;
    want_ns = (uint64_t)((double)sent * 1e9 / (double)bw);
    elapsed = now_ns() - o->iter_start_ns;
    if (want_ns > elapsed)
        sleep_ns(want_ns - elapsed);
}

static int send_progress(void *opaque)
{
    struct outgoing *o = opaque;

    if (cancelled(o))
        return -ECANCELED;
    rate_limit(o);
    pthread_mutex_lock(&o->m->lock);
    o->m->stats.transferred = sw_offset(&o->sw);
    pthread_mutex_unlock(&o->m->lock);
    return 0;
}

/* Send every page set in o->dirty (clearing it), counting zero, normal and skipped pages. */
static int send_dirty(struct outgoing *o, unsigned flags)
{
    struct ramsend_stats st = {0};
    int r =
        ram_send_bitmap_flags(&o->sw, &o->src, o->dirty, o->npages, flags, &st, send_progress, o);

    pthread_mutex_lock(&o->m->lock);
    o->m->stats.duplicate += st.zero;
    o->m->stats.normal += st.normal;
    o->m->stats.normal_bytes += st.normal * PAGE_SIZE;
    o->m->stats.zero_skipped += st.skipped;
    o->m->stats.transferred = sw_offset(&o->sw);
    pthread_mutex_unlock(&o->m->lock);
    return r;
}

/* A RAM section (START, PART or END) carrying the pages in o->dirty. The first round (START)
 * leaves zero pages out: every destination is a fresh process whose RAM reads as zero (it is
 * never booted, migrate_incoming_start), so a ZERO record would only allocate its page. */
static int send_ram_section(struct outgoing *o, enum stream_tag type)
{
    int r = ram_save_open(&o->sw, type, RAM_SECTION_ID, "ram", 0, &o->src);

    if (!r)
        r = send_dirty(o, type == STREAM_TAG_SECTION_START ? RAMSEND_SKIP_ZERO : 0);
    if (!r)
        r = ram_save_close(&o->sw, RAM_SECTION_ID, RAM_END_ROUND);
    if (!r)
        r = sw_flush(&o->sw);
    return r;
}

/* Clear the bits of pages that are holes in the RAM memfd (never written by anyone). */
static void skip_holes(struct vm *vm, unsigned long *bitmap)
{
    off_t size = (off_t)vm->mem.size, pos = 0;

    while (pos < size) {
        off_t hole = lseek(vm->mem.memfd, pos, SEEK_HOLE), data;
        if (hole < 0 || hole >= size)
            return;
        data = lseek(vm->mem.memfd, hole, SEEK_DATA);
        if (data < 0)
            data = size; /* no data after the hole */
        for (uint64_t p = ((uint64_t)hole + PAGE_SIZE - 1) / PAGE_SIZE;
             p < (uint64_t)data / PAGE_SIZE; p++)
            bitmap_clear_bit(bitmap, p);
        pos = data;
    }
}

/* The initial disk sync's figures so far, for query-migrate (COLO with disks only). */
static void note_disk_sync(struct outgoing *o)
{
    struct colo_disk_sync_stats ds;

    colo_disk_sync_stats(&ds);
    pthread_mutex_lock(&o->m->lock);
    o->m->stats.colo_disk = true;
    o->m->stats.disk_chunks = ds.chunks;
    o->m->stats.disk_chunks_differ = ds.chunks_differ;
    o->m->stats.disk_chunks_sent = ds.chunks_sent;
    o->m->stats.disk_bytes_sent = ds.bytes_sent;
    pthread_mutex_unlock(&o->m->lock);
}

/* Waits for the destination's LOADED message on the return path. The reader reads ahead, so
 * it is the only reader of the return path for the whole run (COLO continues on it). */
static int wait_loaded(struct outgoing *o)
{
    struct stream_reader *rp = &o->rp;
    uint32_t code, status;
    int r;

    sr_set_timeout_ms(rp, 30000);
    code = sr_get_u32(rp);
    status = sr_get_u32(rp);
    r = sr_error(rp);
    if (r)
        migration_set_error(o->m, "return path: %s", sr_errmsg(rp));
    else if (code != RP_MSG_LOADED)
        migration_set_error(o->m, "return path: unexpected message 0x%x", code), r = -EPROTO;
    else if (status)
        migration_set_error(o->m, "destination failed to load the state: %s",
                            strerror((int)status)),
            r = -(int)status;
    return r;
}

static int run_outgoing(struct outgoing *o, int fd)
{
    struct migration *m = o->m;
    struct vm *vm = o->vm;
    struct devstate *ds = NULL;
    uint64_t t_pause = 0, remaining, iters = 0;
    enum vm_runstate prev_state = vm_get_state(vm);
    bool ram_started = false, dev_locked = false;
    long dirty;
    int r;

    ds = malloc(sizeof(*ds));
    if (!ds)
        return -ENOMEM;
    r = devstate_init(ds, vm, NULL);
    if (r)
        goto out;
    r = stream_writer_init_fd(&o->sw, fd);
    if (!r)
        r = stream_reader_init_fd(&o->rp, fd);
    if (r)
        goto out;
    sw_set_timeout_ms(&o->sw, IO_TIMEOUT_MS);
    o->src =
        (struct ram_source){.host = vm->mem.base, .ram_size = vm->mem.size, .page_size = PAGE_SIZE};
    stream_put_header(&o->sw);
    if (!o->to_file)
        stream_put_command(&o->sw, STREAM_CMD_OPEN_RETURN_PATH, NULL, 0);
    r = sw_flush(&o->sw);
    if (r)
        goto io_err;
    if (m->caps.x_colo) {
        char err[256];
        r = colo_handover_begin(m, &o->sw, &o->rp, &o->disks, err, sizeof(err));
        if (r) {
            migration_set_error(m, "%s", err);
            goto out;
        }
        if (o->disks)
            note_disk_sync(o);
    }

    /* A snapshot is one consistent pass with the VM stopped; a migration starts live. */
    if (o->to_file) {
        vm_pause(vm);
        o->paused = true;
        t_pause = now_ns();
    }
    r = vm_dirty_log_start(vm);
    if (r) {
        migration_set_error(m, "cannot start dirty logging: %s", strerror(-r));
        goto out;
    }
    memset(o->dirty, 0xff, BITMAP_LONGS(o->npages) * sizeof(unsigned long));
    dirty = vm_dirty_harvest(vm, o->dirty); /* clears the logs: round 1 is everything */
    /* ...except what the guest never touched: memfd holes read as zero on both sides (the
     * destination's RAM is fresh), and reading them would only allocate them. */
    skip_holes(vm, o->dirty);
    if (dirty < 0) {
        r = (int)dirty;
        goto out;
    }
    pthread_mutex_lock(&m->lock);
    m->stats.setup_time_ms = now_ms() - m->stats.start_ms;
    m->stats.remaining = vm->mem.size;
    pthread_mutex_unlock(&m->lock);
    migration_set_status(m, MIG_ACTIVE);

    for (enum stream_tag type = STREAM_TAG_SECTION_START; !o->paused;
         type = STREAM_TAG_SECTION_PART) {
        ram_started = true;
        uint64_t bytes, ns, bw;

        o->iter_start_ns = now_ns();
        o->iter_start_bytes = sw_offset(&o->sw);
        r = send_ram_section(o, type);
        if (!r && o->disks && type == STREAM_TAG_SECTION_START) {
            r = colo_disk_sync_send(vm, &o->sw, false); /* the chunks that differ */
            note_disk_sync(o);
        }
        if (r)
            goto io_err;
        iters++;
        ns = now_ns() - o->iter_start_ns;
        bytes = sw_offset(&o->sw) - o->iter_start_bytes;
        dirty = vm_dirty_harvest(vm, o->dirty);
        if (dirty < 0) {
            r = (int)dirty;
            goto out;
        }
        remaining = (uint64_t)dirty * PAGE_SIZE;
        bw = ns ? (uint64_t)((double)bytes * 1e9 / (double)ns) : 0;
        pthread_mutex_lock(&m->lock);
        m->stats.remaining = remaining;
        m->stats.dirty_sync_count = iters;
        m->stats.dirty_pages_rate = ns ? (uint64_t)((double)dirty * 1e9 / (double)ns) : 0;
        m->stats.mbps = bw * 8 / 1000000;
        pthread_mutex_unlock(&m->lock);
        /* Converged: what is left would go within downtime-limit at the bandwidth just seen. */
        if (bw && remaining * 1000 / bw <= m->params.downtime_limit_ms)
            break;
        if (remaining == 0)
            break;
        if (iters >= m->params.max_iterations) {
            migration_set_error(m,
                                "migration did not converge: %llu KiB still dirty after %llu "
                                "iterations at %llu MiB/s (downtime-limit %llu ms)",
                                (unsigned long long)(remaining >> 10), (unsigned long long)iters,
                                (unsigned long long)(bw >> 20),
                                (unsigned long long)m->params.downtime_limit_ms);
            r = -ETIME;
            goto out;
        }
        if (cancelled(o)) {
            r = -ECANCELED;
            goto out;
        }
    }

    /* Final stage: stop the vCPUs, send what is left and the device state. */
    if (!o->paused) {
        vm_pause(vm);
        o->paused = true;
        t_pause = now_ns();
    }
    /* Device work off the vCPU threads (kicks, tap RX) stops too, so RAM and device state
     * are of one instant. */
    pthread_mutex_lock(&vm->dev_lock);
    dev_locked = true;
    vm_set_state(vm, VM_FINISH_MIGRATE);
    migration_set_status(m, MIG_DEVICE);
    dirty = vm_dirty_harvest(vm, o->dirty);
    if (dirty < 0) {
        r = (int)dirty;
        goto out;
    }
    o->iter_start_ns = now_ns();
    o->iter_start_bytes = sw_offset(&o->sw);
    if (!ram_started) {
        /* A snapshot: one paused pass, START with every page, then an empty END. */
        r = send_ram_section(o, STREAM_TAG_SECTION_START);
        if (r)
            goto io_err;
    }
    r = send_ram_section(o, STREAM_TAG_SECTION_END);
    if (!r && o->disks) {
        r = colo_handover_final(vm, &o->sw); /* chunks written meanwhile; then epoch logs */
        note_disk_sync(o);
    }
    if (r)
        goto io_err;
    r = devstate_capture(ds);
    if (r) {
        migration_set_error(m, "cannot read vCPU state: %s", strerror(-r));
        goto out;
    }
    devstate_save(ds, &o->sw);
    pthread_mutex_unlock(&vm->dev_lock);
    dev_locked = false;
    stream_put_eof(&o->sw);
    r = sw_flush(&o->sw);
    if (r)
        goto io_err;
    if (!o->to_file) {
        r = wait_loaded(o);
        if (r)
            goto out;
    } else if (fsync(fd) < 0) {
        r = -errno;
        migration_set_error(m, "snapshot fsync: %s", strerror(errno));
        goto out;
    }
    pthread_mutex_lock(&m->lock);
    m->stats.downtime_us = (now_ns() - t_pause) / 1000;
    m->stats.downtime_ms = m->stats.downtime_us / 1000;
    m->stats.remaining = 0;
    m->stats.transferred = sw_offset(&o->sw);
    m->stats.total_time_ms = now_ms() - m->stats.start_ms;
    pthread_mutex_unlock(&m->lock);

    if (m->caps.x_colo && !o->to_file) {
        /* COLO: the pair now runs checkpoints until one side is lost. Once it ran, COLO
         * owns the VM, the disks and the status (completed when it ends). */
        colo_fault_point("p-handover", 0);
        r = colo_primary_run(m, fd, &o->sw, &o->rp, ds, o->dirty);
        o->paused = false;
        o->disks = false;
        goto out;
    }
    vm_dirty_log_stop(vm);
    if (!o->to_file)
        virtio_blk_unlock_all(vm);       /* the guest and its images live on the destination now */
    vm_hold_stopped(vm, VM_POSTMIGRATE); /* `cont` can undo it, as after QEMU */
    o->paused = false;
    migration_set_status(m, MIG_COMPLETED);
    r = 0;
    goto out;

io_err:
    migration_set_error(m, "%s", sw_errmsg(&o->sw)[0] ? sw_errmsg(&o->sw) : strerror(-r));
out:
    if (dev_locked)
        pthread_mutex_unlock(&vm->dev_lock);
    if (r) {
        vm_dirty_log_stop(vm);
        if (o->disks)
            colo_disk_stop(vm);
        if (o->paused) {
            vm_set_state(vm, prev_state == VM_RUNNING ? VM_RUNNING : prev_state);
            vm_resume(vm);
            o->paused = false;
        } else if (vm_get_state(vm) == VM_FINISH_MIGRATE) {
            vm_set_state(vm, prev_state);
        }
        if (atomic_load(&m->cancel))
            migration_set_status(m, MIG_CANCELLED);
        else
            migration_set_status(m, MIG_FAILED);
    }
    stream_writer_destroy(&o->sw);
    stream_reader_destroy(&o->rp);
    free(ds);
    return r;
}

static void *outgoing_thread(void *arg)
{
    struct outgoing *o = arg;
    struct migration *m = o->m;
    struct chan_uri u;
    char err[256] = "";
    int fd;

    pthread_setname_np(pthread_self(), "mig/src");
    chan_parse_uri(m->uri, &u, err, sizeof(err));
    o->to_file = u.kind == CHAN_FILE;
    fd = o->fd >= 0 ? o->fd : chan_connect(&u, CONNECT_TIMEOUT_MS, err, sizeof(err));
    if (fd < 0) {
        migration_set_error(m, "%s", err);
        migration_set_status(m, MIG_FAILED);
    } else {
        pthread_mutex_lock(&m->lock);
        m->fd = fd;
        pthread_mutex_unlock(&m->lock);
        run_outgoing(o, fd);
        pthread_mutex_lock(&m->lock);
        m->fd = -1;
        pthread_mutex_unlock(&m->lock);
        close(fd);
    }
    free(o->dirty);
    free(o);
    return NULL;
}

/* An incoming run that completed (the guest arrived, or the COLO secondary took over) has
 * nothing left but closing its sockets: join its thread, and the VM may be a source in turn. */
static void finish_incoming(struct migration *m)
{
    if (!m->incoming || migration_get_status(m) != MIG_COMPLETED || !m->thread_running)
        return;
    pthread_join(m->thread, NULL);
    m->thread_running = false;
    m->incoming = false;
}

static int start_outgoing(struct migration *m, const char *uri, int fd, char *err, size_t errlen)
{
    struct outgoing *o;
    struct chan_uri u;
    enum mig_status s;
    int r;

    finish_incoming(m);
    s = migration_get_status(m);
    if (m->incoming) {
        snprintf(err, errlen, "guest is still waiting for an incoming migration");
        return -EBUSY;
    }
    if (s == MIG_SETUP || s == MIG_ACTIVE || s == MIG_DEVICE || s == MIG_CANCELLING ||
        s == MIG_COLO) {
        snprintf(err, errlen, "There's a migration process in progress");
        return -EBUSY;
    }
    r = chan_parse_uri(uri, &u, err, errlen);
    if (r)
        return r;
    if (m->caps.x_colo && u.kind == CHAN_FILE) {
        snprintf(err, errlen, "x-colo needs a tcp: or unix: URI (a file has no return path)");
        return -EINVAL;
    }
    if (fd >= 0 && u.kind == CHAN_FILE) {
        snprintf(err, errlen, "a connected socket cannot go to a file: URI");
        return -EINVAL;
    }
    if (m->thread_running) {
        pthread_join(m->thread, NULL);
        m->thread_running = false;
    }
    o = calloc(1, sizeof(*o));
    if (!o)
        return -ENOMEM;
    o->m = m;
    o->vm = m->vm;
    o->fd = fd;
    o->npages = m->vm->mem.npages;
    o->dirty = calloc(BITMAP_LONGS(o->npages), sizeof(unsigned long));
    if (!o->dirty) {
        free(o);
        return -ENOMEM;
    }
    pthread_mutex_lock(&m->lock);
    snprintf(m->uri, sizeof(m->uri), "%s", uri);
    memset(&m->stats, 0, sizeof(m->stats));
    m->stats.total = m->vm->mem.size;
    m->stats.start_ms = now_ms();
    m->error[0] = '\0';
    pthread_mutex_unlock(&m->lock);
    atomic_store(&m->cancel, false);
    migration_set_status(m, MIG_SETUP);
    r = pthread_create(&m->thread, NULL, outgoing_thread, o);
    if (r) {
        free(o->dirty);
        free(o);
        migration_set_status(m, MIG_FAILED);
        snprintf(err, errlen, "cannot start the migration thread: %s", strerror(r));
        return -r;
    }
    m->thread_running = true;
    return 0;
}

int migrate_start(struct migration *m, const char *uri, char *err, size_t errlen)
{
    return start_outgoing(m, uri, -1, err, errlen);
}

int migrate_start_fd(struct migration *m, const char *uri, int fd, char *err, size_t errlen)
{
    int r = start_outgoing(m, uri, fd, err, errlen);

    if (r)
        close(fd); /* ours from the call on, as documented */
    return r;
}

int migrate_cancel(struct migration *m)
{
    enum mig_status s = migration_get_status(m);

    if (s != MIG_SETUP && s != MIG_ACTIVE && s != MIG_DEVICE)
        return 0; /* QEMU: nothing to cancel is not an error */
    atomic_store(&m->cancel, true);
    migration_set_status(m, MIG_CANCELLING);
    pthread_mutex_lock(&m->lock);
    if (m->fd >= 0)
        shutdown(m->fd, SHUT_RDWR); /* unblock a stuck send */
    pthread_mutex_unlock(&m->lock);
    return 0;
}
