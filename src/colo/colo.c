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
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "colo/colo_int.h"
#include "core/log.h"
#include "core/loop.h"
#include "migration/migrate.h"

/* .cond is set up by colo_cond_init (CLOCK_MONOTONIC), before its first use. */
struct colo colo_state = {.lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1};

static pthread_once_t cond_once = PTHREAD_ONCE_INIT;
static bool cond_monotonic;

static void cond_init(void)
{
    pthread_condattr_t a;

    /* Timed waits on c->cond are against CLOCK_MONOTONIC, the clock of now_ns(): a step of the
     * wall clock (NTP, an operator) never stretches or cuts a wait. */
    if (!pthread_condattr_init(&a)) {
        cond_monotonic = !pthread_condattr_setclock(&a, CLOCK_MONOTONIC) &&
                         !pthread_cond_init(&colo_state.cond, &a);
        pthread_condattr_destroy(&a);
    }
    if (!cond_monotonic)
        pthread_cond_init(&colo_state.cond, NULL);
}

void colo_cond_init(void)
{
    pthread_once(&cond_once, cond_init);
}

bool colo_cond_wait_until(struct colo *c, uint64_t due_ns)
{
    struct timespec ts;

    if (!cond_monotonic) {
        /* No monotonic condvar (never on Linux): poll the monotonic deadline in short waits on
         * the wall clock, so a wall-clock step costs at most one of them. */
        uint64_t now = now_ns(), left = due_ns > now ? due_ns - now : 0;
        clock_gettime(CLOCK_REALTIME, &ts);
        left = left < 10000000ULL ? left : 10000000ULL;
        ts.tv_nsec += (long)left;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
    } else {
        ts.tv_sec = (time_t)(due_ns / 1000000000ULL);
        ts.tv_nsec = (long)(due_ns % 1000000000ULL);
    }
    return pthread_cond_timedwait(&c->cond, &c->lock, &ts) == 0;
}

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
unsigned long long colo_unix_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000;
}

void colo_init(struct migration *m, struct vm *vm)
{
    colo_cond_init();
    colo_state.m = m;
    colo_state.vm = vm;
    m->colo = &colo_state;
}

/* ---- requests from other threads ---- */

void colo_wake_stream(struct colo *c)
{
    /* Unblocks a send or receive stuck on a dead or hung peer. */
    if (c->fd >= 0)
        shutdown(c->fd, SHUT_RDWR);
}

/* Record the last decision (c->lock held) and log it. */
void colo_decide(struct colo *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c->decision, sizeof(c->decision), fmt, ap);
    va_end(ap);
    log_warn("colo: %s", c->decision);
}

/* c->lock held. */
static int request_failover_locked(struct colo *c, enum colo_reason why, bool force, char *err,
                                   size_t errlen)
{
    if (c->mode == COLO_MODE_NONE) {
        snprintf(err, errlen, "VM is not in COLO mode");
        return -EINVAL;
    }
    if (c->mode == COLO_MODE_SECONDARY && c->unusable) {
        snprintf(err, errlen,
                 "the standby is unusable: checkpoint %llu was applied only in part, so it "
                 "holds no consistent state to take over from",
                 (unsigned long long)c->last_good + 1);
        return -EPERM;
    }
    if (c->mode == COLO_MODE_SECONDARY && !c->armed && !force) {
        snprintf(err, errlen,
                 "the secondary is disarmed (%s): its state (checkpoint %llu) is older than "
                 "what the primary ran since; pass force=true to take over from it anyway",
                 c->decision[0] ? c->decision : "it left COLO", (unsigned long long)c->last_good);
        return -EPERM;
    }
    if (c->failover_requested) {
        snprintf(err, errlen, "failover is already in progress");
        return -EBUSY;
    }
    c->failover_requested = true;
    c->failover_reason = why;
    c->force = force;
    c->failover_started_ns = now_ns();
    /* The relaunch rule: an apply in progress finishes first. The stream is cut only after it,
     * so the apply never sees a half checkpoint; a transfer in progress is abandoned. */
    if (!c->applying)
        colo_wake_stream(c);
    pthread_cond_broadcast(&c->cond);
    return 0;
}

int colo_request_failover(enum colo_reason why, bool force, char *err, size_t errlen)
{
    struct colo *c = &colo_state;
    int r;

    colo_cond_init();
    pthread_mutex_lock(&c->lock);
    r = request_failover_locked(c, why, force, err, errlen);
    if (!r && force && c->mode == COLO_MODE_SECONDARY && !c->armed)
        colo_decide(c, "operator forced a takeover from checkpoint %llu",
                    (unsigned long long)c->last_good);
    pthread_mutex_unlock(&c->lock);
    return r;
}

const char *colo_ckpt_cause_name(enum colo_ckpt_cause c)
{
    static const char *const names[] = {"periodic", "mismatch", "timeout", "queue-full", "request"};
    return (unsigned)c < COLO_CKPT__MAX ? names[c] : "?";
}

void colo_request_checkpoint_for(enum colo_ckpt_cause why)
{
    struct colo *c = &colo_state;

    colo_cond_init();
    pthread_mutex_lock(&c->lock);
    if (!c->checkpoint_requested)
        c->requested_cause = why;
    c->checkpoint_requested = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

void colo_request_checkpoint(void)
{
    colo_request_checkpoint_for(COLO_CKPT_REQUEST);
}

void colo_kick(void)
{
    struct colo *c = &colo_state;

    colo_cond_init();
    pthread_mutex_lock(&c->lock);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

void colo_request_leave(const char *why)
{
    struct colo *c = &colo_state;

    colo_cond_init();
    pthread_mutex_lock(&c->lock);
    if (c->mode == COLO_MODE_PRIMARY && !c->leave_requested) {
        c->leave_requested = true;
        snprintf(c->leave_why, sizeof(c->leave_why), "%s", why);
        log_warn("colo: primary: leaving COLO: %s", why);
        pthread_cond_broadcast(&c->cond);
    }
    pthread_mutex_unlock(&c->lock);
}

/* The heartbeat's events (on its thread): the failover policy of docs/colo.md. */
void colo_hb_event(void *opaque, enum hb_event ev, const char *why)
{
    struct colo *c = opaque;
    char err[160];
    bool secondary;

    pthread_mutex_lock(&c->lock);
    secondary = c->mode == COLO_MODE_SECONDARY;
    switch (ev) {
    case HB_EV_PEER_LEFT:
        c->peer_left = true;
        if (secondary && c->armed) {
            c->armed = false;
            colo_decide(c,
                        "the primary left COLO and runs on alone (%s): disarmed, this standby "
                        "(checkpoint %llu) will not take over by itself",
                        why, (unsigned long long)c->last_good);
        }
        /* The checkpoint loop ends (after an apply in progress): no more checkpoints come. */
        if (!c->applying)
            colo_wake_stream(c);
        break;
    case HB_EV_TOOK_OVER:
        c->peer_took_over = c->hb_ended = true;
        break;
    case HB_EV_SELF_STALLED:
        /* Not an end: what the peer did meanwhile was read first, and it gets a fresh
         * timeout (heartbeat.h); the heartbeat logged it. */
        pthread_mutex_unlock(&c->lock);
        return;
    case HB_EV_LOST:
        c->hb_ended = true;
        break;
    }
    if (ev != HB_EV_PEER_LEFT && c->mode != COLO_MODE_NONE && !c->failover_requested) {
        if (secondary && (!c->armed || c->unusable))
            /* The decision that disarmed us stays the one query-colo-status shows. */
            log_warn("colo: the primary is lost (%s), but this standby is %s: not taking over", why,
                     c->unusable ? "unusable" : "disarmed");
        else if (!request_failover_locked(c, COLO_REASON_ERROR, false, err, sizeof(err)))
            log_warn("colo: peer lost (%s): %s", why, secondary ? "taking over" : "leaving COLO");
    }
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

int colo_run_fence(struct colo *c, const char *role)
{
    char rolevar[40], sh[] = "/bin/sh", dash_c[] = "-c", **envp;
    char *argv[] = {sh, dash_c, (char *)c->fence_cmd, NULL};
    size_t n = 0;
    pid_t pid;
    int st, r;

    while (environ[n])
        n++;
    envp = calloc(n + 2, sizeof(*envp));
    if (!envp)
        return -ENOMEM;
    snprintf(rolevar, sizeof(rolevar), "TANDEM_COLO_ROLE=%s", role);
    envp[0] = rolevar;
    for (size_t i = 0, j = 1; i < n; i++)
        if (strncmp(environ[i], "TANDEM_COLO_ROLE=", 17))
            envp[j++] = environ[i];
    log_warn("colo: %s: running the fence command: %s", role, c->fence_cmd);
    r = posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, envp);
    free(envp);
    if (r) {
        log_err("colo: cannot run the fence command: %s", strerror(r));
        return -r;
    }
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        log_err("colo: the fence command failed (%s %d)", WIFEXITED(st) ? "exit" : "signal",
                WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        return -EPERM;
    }
    log_warn("colo: %s: the fence command succeeded", role);
    return 0;
}

void colo_query_policy(struct colo_policy_state *ps)
{
    struct colo *c = &colo_state;

    colo_cond_init();
    pthread_mutex_lock(&c->lock);
    ps->armed = c->mode == COLO_MODE_SECONDARY && c->armed && !c->unusable;
    ps->unusable = c->unusable;
    ps->fenced = c->fenced;
    ps->last_good = c->last_good;
    memcpy(ps->decision, c->decision, sizeof(ps->decision));
    ps->cluster = c->cluster;
    ps->cv = c->cv;
    memcpy(ps->cluster_last, c->cluster_last, sizeof(ps->cluster_last));
    pthread_mutex_unlock(&c->lock);
}

bool colo_failover_pending(struct colo *c)
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
void colo_report_exit(struct colo *c, enum colo_mode mode, enum colo_reason reason)
{
    struct exit_note *n = malloc(sizeof(*n));

    log_warn("colo: leaving COLO (%s, reason %s)", colo_mode_name(mode), colo_reason_name(reason));
    if (!n)
        return;
    *n = (struct exit_note){mode, reason};
    if (loop_call(c->m->loop, exit_note_cb, n) < 0)
        free(n);
}

void colo_set_mode_none(struct colo *c, enum colo_mode mode, enum colo_reason reason)
{
    pthread_mutex_lock(&c->lock);
    c->last_mode = mode;
    c->mode = COLO_MODE_NONE;
    c->reason = reason;
    pthread_mutex_unlock(&c->lock);
}

/* Leaving COLO: record the mode and reason and emit COLO_EXIT. */
void colo_exit(struct colo *c, enum colo_mode mode, enum colo_reason reason)
{
    colo_set_mode_none(c, mode, reason);
    colo_report_exit(c, mode, reason);
}

void colo_record_pause(struct colo *c, uint64_t pause_us, uint64_t dirty, uint64_t bytes)
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
