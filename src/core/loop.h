/* loop.h: the main event loop (epoll): fd watches and one-shot/periodic timers. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct loop;

/* Called with the epoll events that fired (EPOLLIN, EPOLLHUP, ...). */
typedef void (*loop_fd_cb)(void *opaque, uint32_t events);
typedef void (*loop_timer_cb)(void *opaque);

struct loop *loop_new(void);
void loop_free(struct loop *l);

/* Watch fd for events; one watch per fd. Returns 0 or -errno. */
int loop_add_fd(struct loop *l, int fd, uint32_t events, loop_fd_cb cb, void *opaque);
int loop_mod_fd(struct loop *l, int fd, uint32_t events);
/* Safe to call from inside a callback, including for the fd being dispatched. */
void loop_del_fd(struct loop *l, int fd);

/* Timers on CLOCK_MONOTONIC. period_ms 0 = one-shot. Returns an id > 0 or -errno. */
int loop_add_timer(struct loop *l, uint64_t delay_ms, uint64_t period_ms, loop_timer_cb cb,
                   void *opaque);
void loop_del_timer(struct loop *l, int id);

/* Run until loop_quit(). Thread-safe wakeup: loop_quit and loop_call may come from any thread. */
int loop_run(struct loop *l);
void loop_quit(struct loop *l);

/* Run the calls queued so far (after loop_run returned: the last events before exit). */
void loop_drain(struct loop *l);

/* Run fn(opaque) on the loop thread soon. Safe from any thread (vCPU, migration...). */
int loop_call(struct loop *l, void (*fn)(void *opaque), void *opaque);

uint64_t now_ms(void);
uint64_t now_ns(void);
