/* reprotect.c: re-protection after a failover: the check, the start, and the automatic retries.
 *
 * The automatic mode's thread ("colo/reprot") looks every 100 ms, so that the first attempt
 * follows a takeover at once, and connects at most once a second:
 *
 *   eligible? (left COLO, not fenced, running, no migration)
 *     no  -> sleep; the next unprotected spell logs again
 *     yes -> log once "connecting to URI every second"; connect (1 s)
 *              refused -> sleep until the second is over
 *              accepted -> main loop: colo_reprotect_start(fd) ─> the session runs
 *
 * Connecting is the probe: the peer's incoming thread takes the first connection it accepts as
 * its migration stream, so a connection is never opened only to be closed, and the accepted one
 * is handed to the migration as it is (migrate_start_fd).
 */
#include "colo/reprotect.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "block/virtio_blk.h"
#include "colo/colo.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/vm.h"
#include "migration/channel.h"
#include "migration/migrate.h"

#define LOOK_MS    100  /* how often eligibility is checked */
#define RETRY_MS   1000 /* how often a connection is tried */
#define CONNECT_MS 1000

/* What the check reads of the COLO engine, under its lock (colo_query is for QMP only: it
 * sorts into a static buffer). */
struct colo_view {
    enum colo_mode mode, last_mode;
    bool fenced;
};

static void read_colo(struct colo_view *v)
{
    struct colo *c = &colo_state;

    pthread_mutex_lock(&c->lock);
    v->mode = c->mode;
    v->last_mode = c->last_mode;
    v->fenced = c->fenced;
    pthread_mutex_unlock(&c->lock);
}

static bool migration_busy(enum mig_status s)
{
    return s == MIG_SETUP || s == MIG_ACTIVE || s == MIG_DEVICE || s == MIG_CANCELLING ||
           s == MIG_COLO;
}

int colo_reprotect_check(struct migration *m, const char *uri, char *err, size_t errlen)
{
    enum mig_status s = migration_get_status(m);
    enum vm_runstate vs = vm_get_state(m->vm);
    struct chan_uri u;
    struct colo_view v;
    int r;

    read_colo(&v);
    if (v.mode != COLO_MODE_NONE) {
        snprintf(err, errlen,
                 "already in COLO as %s: re-protection is for a VM that runs unprotected%s",
                 colo_mode_name(v.mode),
                 v.mode == COLO_MODE_SECONDARY
                     ? " (a secondary serves only after it takes over: x-colo-lost-heartbeat)"
                     : "");
        return -EBUSY;
    }
    if (v.fenced) {
        snprintf(err, errlen,
                 "this VM was fenced when it left COLO (its secondary may be serving): it must "
                 "not run, let alone be protected");
        return -EPERM;
    }
    if (m->incoming && s != MIG_COMPLETED) {
        snprintf(err, errlen, "the VM is still waiting for (or loading) an incoming migration");
        return -EBUSY;
    }
    if (migration_busy(s)) {
        snprintf(err, errlen, "a migration is in progress (status %s)", mig_status_name(s));
        return -EBUSY;
    }
    if (vs != VM_RUNNING) {
        snprintf(err, errlen, "the VM is not running (status %s): only a running VM is protected",
                 vm_runstate_name(vs));
        return -EINVAL;
    }
    r = chan_parse_uri(uri, &u, err, errlen);
    if (r)
        return r;
    if (u.kind == CHAN_FILE) {
        snprintf(err, errlen, "'%s': COLO needs a tcp: or unix: URI (a file has no return path)",
                 uri);
        return -EINVAL;
    }
    /* A primary writes its images: nobody else may (the new secondary has its own copies). */
    if (virtio_blk_lock_all(m->vm, 0)) {
        snprintf(err, errlen, "a disk image of this VM is locked by another process");
        return -EBUSY;
    }
    return 0;
}

int colo_reprotect_start(struct migration *m, const char *uri, int fd, char *err, size_t errlen)
{
    bool had_colo = m->caps.x_colo;
    int r = colo_reprotect_check(m, uri, err, errlen);

    if (r) {
        if (fd >= 0)
            close(fd);
        return r;
    }
    m->caps.x_colo = true;
    r = fd >= 0 ? migrate_start_fd(m, uri, fd, err, errlen) : migrate_start(m, uri, err, errlen);
    if (r) {
        m->caps.x_colo = had_colo;
        return r;
    }
    log_warn("colo: re-protect: starting a COLO session as primary toward %s", uri);
    return 0;
}

/* ---- the automatic mode ---- */

/* One start handed to the main loop; whoever comes last frees it. */
struct start_call {
    int fd;
    int r;
    bool done;      /* the main loop ran it */
    bool abandoned; /* the thread stopped waiting: the main loop frees it */
    char err[256];
};

static struct {
    struct migration *m;
    char uri[300];
    struct chan_uri u;
    pthread_t thread;
    bool running;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    bool stop;
} au = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void start_cb(void *opaque)
{
    struct start_call *sc = opaque;
    bool abandoned;

    pthread_mutex_lock(&au.lock);
    abandoned = sc->abandoned;
    pthread_mutex_unlock(&au.lock);
    if (abandoned) {
        close(sc->fd);
        free(sc);
        return;
    }
    sc->r = colo_reprotect_start(au.m, au.uri, sc->fd, sc->err, sizeof(sc->err));
    pthread_mutex_lock(&au.lock);
    sc->done = true;
    pthread_cond_broadcast(&au.cond);
    pthread_mutex_unlock(&au.lock);
}

/* Run colo_reprotect_start on the main loop (QMP's thread) and wait for its answer. */
static int start_on_loop(int fd, char *err, size_t errlen)
{
    struct start_call *sc = calloc(1, sizeof(*sc));
    int r;

    if (!sc) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    sc->fd = fd;
    if (loop_call(au.m->loop, start_cb, sc) < 0) {
        close(fd);
        free(sc);
        snprintf(err, errlen, "cannot reach the main loop");
        return -EIO;
    }
    pthread_mutex_lock(&au.lock);
    while (!sc->done && !au.stop)
        pthread_cond_wait(&au.cond, &au.lock);
    if (!sc->done) {
        sc->abandoned = true; /* shutting down: start_cb closes and frees */
        pthread_mutex_unlock(&au.lock);
        snprintf(err, errlen, "shutting down");
        return -ECANCELED;
    }
    pthread_mutex_unlock(&au.lock);
    r = sc->r;
    snprintf(err, errlen, "%s", sc->err);
    free(sc);
    return r;
}

/* Unprotected after having been in COLO, and free to become a primary. A VM that was never in
 * COLO is left alone: protecting it is the operator's call (migrate, or x-colo-reprotect). */
static bool eligible(void)
{
    struct migration *m = au.m;
    struct colo_view v;

    read_colo(&v);
    return v.mode == COLO_MODE_NONE && v.last_mode != COLO_MODE_NONE && !v.fenced &&
           !migration_busy(migration_get_status(m)) && vm_get_state(m->vm) == VM_RUNNING;
}

/* Sleep until due_ns (monotonic) or a stop; true when stopping. */
static bool sleep_until(uint64_t due_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(due_ns / 1000000000ULL),
                          .tv_nsec = (long)(due_ns % 1000000000ULL)};
    bool stop;

    pthread_mutex_lock(&au.lock);
    while (!au.stop && now_ns() < due_ns)
        pthread_cond_timedwait(&au.cond, &au.lock, &ts);
    stop = au.stop;
    pthread_mutex_unlock(&au.lock);
    return stop;
}

static void *auto_thread(void *arg)
{
    bool logged = false;
    uint64_t next_try = 0;
    char err[256];

    pthread_setname_np(pthread_self(), "colo/reprot");
    for (;;) {
        uint64_t due = now_ns() + LOOK_MS * 1000000ULL;
        int fd, r;

        if (!eligible()) {
            logged = false;
        } else if (now_ns() >= next_try) {
            next_try = now_ns() + RETRY_MS * 1000000ULL;
            if (!logged)
                log_warn("colo: re-protect: running unprotected; connecting to %s every second "
                         "until a new secondary accepts",
                         au.uri);
            logged = true;
            fd = chan_connect(&au.u, CONNECT_MS, err, sizeof(err));
            if (fd >= 0) {
                log_warn("colo: re-protect: %s accepted", au.uri);
                r = start_on_loop(fd, err, sizeof(err));
                if (r && r != -ECANCELED)
                    log_err("colo: re-protect: cannot start the session: %s", err);
                logged = false; /* a session that ends, or fails, is logged anew */
            }
        }
        if (sleep_until(due))
            break;
    }
    return NULL;
}

int colo_reprotect_auto_start(struct migration *m, const char *uri, char *err, size_t errlen)
{
    pthread_condattr_t a;
    int r;

    if (au.running) {
        snprintf(err, errlen, "automatic re-protection is already on");
        return -EBUSY;
    }
    r = chan_parse_uri(uri, &au.u, err, errlen);
    if (r)
        return r;
    if (au.u.kind == CHAN_FILE) {
        snprintf(err, errlen, "'%s': COLO needs a tcp: or unix: URI", uri);
        return -EINVAL;
    }
    if (strlen(uri) >= sizeof(au.uri)) {
        snprintf(err, errlen, "'%s': URI too long", uri);
        return -ENAMETOOLONG;
    }
    snprintf(au.uri, sizeof(au.uri), "%s", uri);
    au.m = m;
    au.stop = false;
    r = pthread_condattr_init(&a);
    if (!r)
        r = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    if (!r)
        r = pthread_cond_init(&au.cond, &a);
    pthread_condattr_destroy(&a);
    if (r) {
        snprintf(err, errlen, "cannot set up a condition variable: %s", strerror(r));
        return -r;
    }
    r = pthread_create(&au.thread, NULL, auto_thread, NULL);
    if (r) {
        pthread_cond_destroy(&au.cond);
        snprintf(err, errlen, "cannot start the re-protect thread: %s", strerror(r));
        return -r;
    }
    au.running = true;
    return 0;
}

void colo_reprotect_auto_stop(void)
{
    if (!au.running)
        return;
    pthread_mutex_lock(&au.lock);
    au.stop = true;
    pthread_cond_broadcast(&au.cond);
    pthread_mutex_unlock(&au.lock);
    pthread_join(au.thread, NULL);
    pthread_cond_destroy(&au.cond);
    au.running = false;
}
