/* loop.c: the main event loop: epoll over fds, a timer list, and a cross-thread call queue. */
#include "core/loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

struct watch {
    int fd;
    loop_fd_cb cb;
    void *opaque;
    struct watch *next;
    bool dead; /* removed during dispatch; freed after the batch */
};

struct timer {
    int id;
    uint64_t due_ms;
    uint64_t period_ms;
    loop_timer_cb cb;
    void *opaque;
    struct timer *next;
};

struct call {
    void (*fn)(void *opaque);
    void *opaque;
    struct call *next;
};

struct loop {
    int epfd;
    int wakefd; /* eventfd: loop_call / loop_quit from other threads */
    struct watch *watches;
    struct timer *timers;
    int next_timer_id;
    bool quit;
    pthread_mutex_t call_lock;
    struct call *calls, **calls_tail;
};

uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t now_ms(void)
{
    return now_ns() / 1000000ULL;
}

struct loop *loop_new(void)
{
    struct loop *l = calloc(1, sizeof(*l));
    struct epoll_event ev = {.events = EPOLLIN};

    if (!l)
        return NULL;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0)
        goto err_free;
    l->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->wakefd < 0)
        goto err_ep;
    ev.data.ptr = NULL; /* NULL marks the wake fd */
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev) < 0)
        goto err_wake;
    pthread_mutex_init(&l->call_lock, NULL);
    l->calls_tail = &l->calls;
    l->next_timer_id = 1;
    return l;

err_wake:
    close(l->wakefd);
err_ep:
    close(l->epfd);
err_free:
    free(l);
    return NULL;
}

void loop_free(struct loop *l)
{
    if (!l)
        return;
    while (l->watches) {
        struct watch *w = l->watches;
        l->watches = w->next;
        free(w);
    }
    while (l->timers) {
        struct timer *t = l->timers;
        l->timers = t->next;
        free(t);
    }
    while (l->calls) {
        struct call *c = l->calls;
        l->calls = c->next;
        free(c);
    }
    close(l->wakefd);
    close(l->epfd);
    pthread_mutex_destroy(&l->call_lock);
    free(l);
}

static struct watch *find_watch(struct loop *l, int fd)
{
    for (struct watch *w = l->watches; w; w = w->next)
        if (w->fd == fd && !w->dead)
            return w;
    return NULL;
}

int loop_add_fd(struct loop *l, int fd, uint32_t events, loop_fd_cb cb, void *opaque)
{
    struct epoll_event ev = {.events = events};
    struct watch *w;

    if (find_watch(l, fd))
        return -EEXIST;
    w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->fd = fd;
    w->cb = cb;
    w->opaque = opaque;
    ev.data.ptr = w;
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int e = -errno;
        free(w);
        return e;
    }
    w->next = l->watches;
    l->watches = w;
    return 0;
}

int loop_mod_fd(struct loop *l, int fd, uint32_t events)
{
    struct watch *w = find_watch(l, fd);
    struct epoll_event ev = {.events = events};

    if (!w)
        return -ENOENT;
    ev.data.ptr = w;
    return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

void loop_del_fd(struct loop *l, int fd)
{
    struct watch *w = find_watch(l, fd);

    if (!w)
        return;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
    w->dead = true; /* reaped after the current dispatch batch */
}

static void reap_watches(struct loop *l)
{
    struct watch **pp = &l->watches;

    while (*pp) {
        struct watch *w = *pp;
        if (w->dead) {
            *pp = w->next;
            free(w);
        } else {
            pp = &w->next;
        }
    }
}

int loop_add_timer(struct loop *l, uint64_t delay_ms, uint64_t period_ms, loop_timer_cb cb,
                   void *opaque)
{
    struct timer *t = calloc(1, sizeof(*t));

    if (!t)
        return -ENOMEM;
    t->id = l->next_timer_id++;
    t->due_ms = now_ms() + delay_ms;
    t->period_ms = period_ms;
    t->cb = cb;
    t->opaque = opaque;
    t->next = l->timers;
    l->timers = t;
    return t->id;
}

void loop_del_timer(struct loop *l, int id)
{
    for (struct timer **pp = &l->timers; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            struct timer *t = *pp;
            *pp = t->next;
            free(t);
            return;
        }
    }
}

static void wake(struct loop *l)
{
    uint64_t one = 1;

    if (write(l->wakefd, &one, sizeof(one)) < 0) {
        /* EAGAIN: counter saturated, the loop is awake anyway */
    }
}

void loop_quit(struct loop *l)
{
    __atomic_store_n(&l->quit, true, __ATOMIC_SEQ_CST);
    wake(l);
}

int loop_call(struct loop *l, void (*fn)(void *opaque), void *opaque)
{
    struct call *c = calloc(1, sizeof(*c));

    if (!c)
        return -ENOMEM;
    c->fn = fn;
    c->opaque = opaque;
    pthread_mutex_lock(&l->call_lock);
    *l->calls_tail = c;
    l->calls_tail = &c->next;
    pthread_mutex_unlock(&l->call_lock);
    wake(l);
    return 0;
}

static void run_calls(struct loop *l)
{
    struct call *list;
    uint64_t v;

    if (read(l->wakefd, &v, sizeof(v)) < 0) {
        /* EAGAIN: nothing pending */
    }
    pthread_mutex_lock(&l->call_lock);
    list = l->calls;
    l->calls = NULL;
    l->calls_tail = &l->calls;
    pthread_mutex_unlock(&l->call_lock);
    while (list) {
        struct call *c = list;
        list = c->next;
        c->fn(c->opaque);
        free(c);
    }
}

void loop_drain(struct loop *l)
{
    /* Calls may queue more calls (a state change during shutdown); bounded, not forever. */
    for (int i = 0; i < 8 && l->calls; i++)
        run_calls(l);
}

/* Fire due timers; returns ms until the next one (or -1). */
static int run_timers(struct loop *l)
{
    uint64_t now = now_ms();
    int next = -1;
    bool fired;

    do {
        fired = false;
        for (struct timer *t = l->timers; t; t = t->next) {
            if (t->due_ms <= now) {
                loop_timer_cb cb = t->cb;
                void *opaque = t->opaque;
                int id = t->id;
                if (t->period_ms)
                    t->due_ms = now + t->period_ms;
                else
                    loop_del_timer(l, id);
                cb(opaque); /* may add or delete timers: restart the scan */
                fired = true;
                break;
            }
        }
    } while (fired && !__atomic_load_n(&l->quit, __ATOMIC_SEQ_CST));
    now = now_ms();
    for (struct timer *t = l->timers; t; t = t->next) {
        int d = t->due_ms > now ? (int)(t->due_ms - now) : 0;
        if (next < 0 || d < next)
            next = d;
    }
    return next;
}

int loop_run(struct loop *l)
{
    struct epoll_event evs[32];

    while (!__atomic_load_n(&l->quit, __ATOMIC_SEQ_CST)) {
        int timeout = run_timers(l);
        int n;

        if (__atomic_load_n(&l->quit, __ATOMIC_SEQ_CST))
            break;
        n = epoll_wait(l->epfd, evs, 32, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_err("loop: epoll_wait: %s", strerror(errno));
            return -errno;
        }
        for (int i = 0; i < n; i++) {
            struct watch *w = evs[i].data.ptr;
            if (!w) {
                run_calls(l);
                continue;
            }
            if (!w->dead)
                w->cb(w->opaque, evs[i].events);
        }
        reap_watches(l);
    }
    return 0;
}
