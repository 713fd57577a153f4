/* test_clock.c: the COLO engine's timed waits take their deadline on the monotonic clock
 * (now_ns), the clock its condition variable is set to. A deadline an hour ahead on the
 * monotonic clock must not read as a wall-clock time long past (1970 plus the uptime), which
 * would end the wait at once: the waiter here must stay until it is woken.
 *
 * No timing: the waiter announces itself under c->lock, which it gives up only inside the
 * wait; the main thread then wakes it. It reports whether its wait ever timed out. A wait on
 * the wrong clock can still be woken before it notices its deadline passed, so the trial runs
 * many times: a correct wait never times out, a wrong one (seen: 2 runs in 3) nearly always. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "colo/colo_int.h"
#include "core/loop.h"

static bool waiting, woken, timed_out;

static void *waiter(void *arg)
{
    struct colo *c = arg;
    uint64_t due = now_ns() + 3600ULL * 1000000000ULL;

    pthread_mutex_lock(&c->lock);
    waiting = true;
    while (!woken) {
        if (!colo_cond_wait_until(c, due)) {
            timed_out = true;
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

#define TRIALS 200

static void test_deadline_is_monotonic(void **state)
{
    struct colo *c = &colo_state;

    (void)state;
    colo_request_checkpoint(); /* the engine's first use sets up its condition variable */
    for (int i = 0; i < TRIALS; i++) {
        pthread_t t;

        waiting = woken = timed_out = false;
        assert_int_equal(pthread_create(&t, NULL, waiter, c), 0);
        for (;;) {
            pthread_mutex_lock(&c->lock);
            if (waiting) {
                woken = true;
                pthread_cond_broadcast(&c->cond);
                pthread_mutex_unlock(&c->lock);
                break;
            }
            pthread_mutex_unlock(&c->lock);
            sched_yield();
        }
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_false(timed_out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deadline_is_monotonic),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
