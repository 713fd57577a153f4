/* bql_condwait.c: LD_PRELOAD shim: a pthread_cond_wait on a mutex the caller does not hold (QEMU 7.2 COLO under TCG) locks it around a short wait instead of self-deadlocking. */
/*
 * Why: in QEMU 7.2 the COLO thread saves RAM (qemu_savevm_live_state -> migration_bitmap_sync)
 * without the global lock (BQL). Under TCG the dirty-log sync ends in run_on_cpu(), which waits
 * with qemu_cond_wait(&qemu_work_cond, &qemu_global_mutex). pthread_cond_wait on an unowned
 * (default-type) mutex "unlocks" it, sleeps, and re-locks it on return: the COLO thread now
 * holds the BQL without knowing it, and its next qemu_mutex_lock_iothread() deadlocks.
 *
 * What: when the calling thread does not own the mutex (glibc records the owner's TID in
 * __data.__owner for every mutex type), lock it, wait at most 1 ms, unlock it, return 0. The
 * caller sees what it expected: the mutex as it was (not held) and a wake-up that may be
 * spurious, which every condition-variable caller must tolerate (QEMU's loops re-check their
 * predicate). The timeout covers a broadcast that happened between the caller's check and our
 * lock. Callers that own the mutex go straight to glibc.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef int (*wait_fn)(pthread_cond_t *, pthread_mutex_t *);
typedef int (*timedwait_fn)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);

static wait_fn real_wait;
static timedwait_fn real_timedwait;
static __thread pid_t my_tid;

static void *next_sym(const char *name)
{
    /* the pthread_cond_* ABI that current binaries bind to; older symbols are a compat ABI */
    void *f = dlvsym(RTLD_NEXT, name, "GLIBC_2.3.2");
    return f ? f : dlsym(RTLD_NEXT, name);
}

static int owned_by_me(pthread_mutex_t *m)
{
    if (!my_tid)
        my_tid = (pid_t)syscall(SYS_gettid);
    return __atomic_load_n(&m->__data.__owner, __ATOMIC_RELAXED) == my_tid;
}

/* The unowned case: a bounded wait with the mutex taken for it, then back to "not held". */
static int wait_unowned(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *abs)
{
    struct timespec t;
    int r;

    if (!real_timedwait)
        real_timedwait = (timedwait_fn)next_sym("pthread_cond_timedwait");
    clock_gettime(CLOCK_REALTIME, &t); /* a default condvar measures CLOCK_REALTIME */
    t.tv_nsec += 1000000;
    if (t.tv_nsec >= 1000000000) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000;
    }
    if (abs && (abs->tv_sec < t.tv_sec || (abs->tv_sec == t.tv_sec && abs->tv_nsec < t.tv_nsec)))
        t = *abs;
    pthread_mutex_lock(m);
    r = real_timedwait(c, m, &t);
    pthread_mutex_unlock(m);
    if (abs && r == ETIMEDOUT &&
        (abs->tv_sec < t.tv_sec || (abs->tv_sec == t.tv_sec && abs->tv_nsec <= t.tv_nsec)))
        return ETIMEDOUT; /* the caller's own deadline passed */
    return 0;
}

int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
    if (!owned_by_me(m))
        return wait_unowned(c, m, NULL);
    if (!real_wait)
        real_wait = (wait_fn)next_sym("pthread_cond_wait");
    return real_wait(c, m);
}

int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *abs)
{
    if (!owned_by_me(m))
        return wait_unowned(c, m, abs);
    if (!real_timedwait)
        real_timedwait = (timedwait_fn)next_sym("pthread_cond_timedwait");
    return real_timedwait(c, m, abs);
}
