/* test_outbuf.c: output commit's buffer on its own: frames leave in the order the guest sent
 * them -- also when the NIC sends while a stop drains, and when two releases race -- epoch by
 * epoch; discard drops what is held and keeps holding; the console's byte stream coalesces per
 * epoch; at half the limit the buffer asks for a checkpoint (once per epoch), at the limit it
 * drops. The send callback records what "the wire" saw; colo_request_checkpoint_for is wrapped
 * (-Wl,--wrap) and counted. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "colo/colo.h"
#include "colo/outbuf.h"

void __wrap_colo_request_checkpoint_for(enum colo_ckpt_cause why);

static int ckpt_requests;

void __wrap_colo_request_checkpoint_for(enum colo_ckpt_cause why)
{
    assert_int_equal(why, COLO_CKPT_QUEUE_FULL);
    ckpt_requests++;
}

#define WIRE_MAX 128

/* The wire: the first byte (the tag) of every frame sent, in order, and all the bytes of the
 * last one. Hooks let a test act from inside the send callback. */
struct wire {
    pthread_mutex_t lock;
    uint8_t tags[WIRE_MAX];
    size_t n;
    uint8_t last[8192];
    size_t last_len;
    struct colo_outbuf *ob;
    uint8_t inject_after; /* after sending this tag, the NIC sends inject_tag (once) */
    uint8_t inject_tag;
    bool injected;
    uint8_t stall_on; /* sending this tag waits until released (or a while) */
    bool stalling, stall_release;
    pthread_cond_t cond;
};

static void frame(struct colo_outbuf *ob, uint8_t tag, size_t len)
{
    uint8_t buf[256];
    struct iovec iov[2] = {{.iov_base = buf, .iov_len = 1}, {.iov_base = buf + 1}};

    assert_true(len >= 2 && len <= sizeof(buf));
    memset(buf, tag, len);
    iov[1].iov_len = len - 1; /* two pieces, as a NIC's chain */
    assert_int_equal(colo_outbuf_send(ob, iov, 2), (int)len);
}

static int wire_send(void *opaque, const struct iovec *iov, int iovcnt)
{
    struct wire *w = opaque;
    size_t len = 0;
    uint8_t tag = ((const uint8_t *)iov[0].iov_base)[0];

    pthread_mutex_lock(&w->lock);
    for (int i = 0; i < iovcnt; i++) {
        if (len + iov[i].iov_len <= sizeof(w->last))
            memcpy(w->last + len, iov[i].iov_base, iov[i].iov_len);
        len += iov[i].iov_len;
    }
    w->last_len = len;
    assert_true(w->n < WIRE_MAX);
    w->tags[w->n++] = tag;
    if (w->stall_on && tag == w->stall_on) {
        struct timespec due;
        /* Give a racing release the chance to send in the middle of this one (it must not:
         * it waits for us). Bounded, so a correct buffer never hangs here; not a timing
         * assertion: the order is checked, not the time. */
        clock_gettime(CLOCK_REALTIME, &due);
        due.tv_nsec += 200 * 1000000L;
        if (due.tv_nsec >= 1000000000L) {
            due.tv_sec++;
            due.tv_nsec -= 1000000000L;
        }
        w->stalling = true;
        pthread_cond_broadcast(&w->cond);
        while (!w->stall_release && pthread_cond_timedwait(&w->cond, &w->lock, &due) == 0)
            ;
    }
    pthread_mutex_unlock(&w->lock);
    if (w->inject_after && tag == w->inject_after && !w->injected) {
        w->injected = true;
        frame(w->ob, w->inject_tag, 16); /* the NIC sends while the buffer drains */
    }
    return (int)len;
}

struct fx {
    struct wire w;
    struct colo_outbuf ob;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    pthread_mutex_init(&f->w.lock, NULL);
    pthread_cond_init(&f->w.cond, NULL);
    colo_outbuf_init(&f->ob, wire_send, &f->w);
    f->w.ob = &f->ob;
    colo_outbuf_hold(&f->ob, 1);
    ckpt_requests = 0;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    colo_outbuf_destroy(&f->ob);
    pthread_cond_destroy(&f->w.cond);
    pthread_mutex_destroy(&f->w.lock);
    free(f);
    return 0;
}

static void assert_wire(struct wire *w, const char *tags)
{
    assert_int_equal(w->n, strlen(tags));
    assert_memory_equal(w->tags, tags, w->n);
}

/* A frame the NIC sends while a stop drains goes after every held one, not before. */
static void test_stop_keeps_order_with_concurrent_send(void **state)
{
    struct fx *f = *state;

    frame(&f->ob, 'a', 16);
    colo_outbuf_close_epoch(&f->ob);
    frame(&f->ob, 'b', 16);
    frame(&f->ob, 'c', 16);
    assert_int_equal(f->w.n, 0);
    f->w.inject_after = 'a';
    f->w.inject_tag = 'x';
    colo_outbuf_stop(&f->ob);
    assert_true(f->w.injected);
    assert_wire(&f->w, "abcx");
    assert_int_equal(f->ob.released_total, 4);
    assert_int_equal(colo_outbuf_held_bytes(&f->ob), 0);
    /* Drained: from now on frames pass straight through. */
    frame(&f->ob, 'y', 16);
    assert_wire(&f->w, "abcxy");
    assert_int_equal(f->ob.held_total, 4);
}

/* A release's own frames after one another, and its inject (a frame of the open epoch) stays. */
static void test_release_by_epoch(void **state)
{
    struct fx *f = *state;

    frame(&f->ob, '1', 10);
    frame(&f->ob, '1', 20);
    assert_int_equal(colo_outbuf_close_epoch(&f->ob), 1);
    frame(&f->ob, '2', 30);
    assert_int_equal(colo_outbuf_close_epoch(&f->ob), 2);
    frame(&f->ob, '3', 40);
    assert_int_equal(colo_outbuf_held_bytes(&f->ob), 100);
    assert_int_equal(f->w.n, 0);

    colo_outbuf_release(&f->ob, 1);
    assert_wire(&f->w, "11");
    assert_int_equal(f->w.last_len, 20);
    assert_int_equal(colo_outbuf_held_bytes(&f->ob), 70);
    colo_outbuf_release(&f->ob, 1); /* again: nothing more of epoch 1 */
    assert_wire(&f->w, "11");

    f->w.inject_after = '2';
    f->w.inject_tag = '3'; /* sent in epoch 3 while epoch 2 leaves */
    colo_outbuf_release(&f->ob, 2);
    assert_wire(&f->w, "112");
    assert_int_equal(colo_outbuf_held_bytes(&f->ob), 56);
    assert_int_equal(colo_outbuf_close_epoch(&f->ob), 3);
    colo_outbuf_release(&f->ob, 3);
    assert_wire(&f->w, "11233");
    assert_int_equal(f->ob.released_total, 5);
    assert_int_equal(f->ob.held_total, 5);
    assert_int_equal(colo_outbuf_held_bytes(&f->ob), 0);
}

/* Discard drops what is held, and what comes next is held too, until a stop. */
static void test_discard_then_stop(void **state)
{
    struct fx *f = *state;

    frame(&f->ob, 'a', 16);
    colo_outbuf_close_epoch(&f->ob);
    frame(&f->ob, 'b', 16);
    frame(&f->ob, 'c', 16);
    colo_outbuf_discard(&f->ob);
    assert_int_equal(f->ob.discarded_total, 3);
    assert_int_equal(colo_outbuf_held_bytes(&f->ob), 0);
    assert_int_equal(f->w.n, 0);
    frame(&f->ob, 'd', 16); /* still holding */
    assert_int_equal(f->w.n, 0);
    colo_outbuf_release(&f->ob, 1); /* epoch 1's frame is gone */
    assert_int_equal(f->w.n, 0);
    colo_outbuf_stop(&f->ob);
    assert_wire(&f->w, "d");
    assert_int_equal(f->ob.released_total, 1);
    assert_int_equal(f->ob.discarded_total, 3);
    frame(&f->ob, 'e', 16);
    assert_wire(&f->w, "de");
}

static void console_write(struct colo_outbuf *ob, const char *s)
{
    struct iovec iov = {.iov_base = (void *)s, .iov_len = strlen(s)};

    assert_int_equal(colo_outbuf_send(ob, &iov, 1), (int)strlen(s));
}

/* The console: an epoch's bytes join one buffer and leave as one write. */
static void test_console_coalesces_per_epoch(void **state)
{
    struct fx *f = *state;
    char big[5000];

    f->ob.coalesce = true;
    console_write(&f->ob, "1he");
    console_write(&f->ob, "llo ");
    console_write(&f->ob, "world\n");
    assert_int_equal(f->ob.held_total, 1);
    colo_outbuf_close_epoch(&f->ob);
    console_write(&f->ob, "2next ");
    console_write(&f->ob, "line\n");
    assert_int_equal(f->ob.held_total, 2);
    colo_outbuf_release(&f->ob, 1);
    assert_wire(&f->w, "1");
    assert_int_equal(f->w.last_len, strlen("1hello world\n"));
    assert_memory_equal(f->w.last, "1hello world\n", f->w.last_len);
    /* A write too large for the buffer's room starts a new one, after it. */
    memset(big, '3', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    console_write(&f->ob, big);
    console_write(&f->ob, "4");
    assert_int_equal(f->ob.held_total, 4);
    colo_outbuf_close_epoch(&f->ob);
    colo_outbuf_release(&f->ob, 2);
    assert_wire(&f->w, "1234");
    assert_int_equal(f->w.last_len, 1);
    assert_int_equal(colo_outbuf_held_bytes(&f->ob), 0);
}

/* Half the limit asks for a checkpoint, once per epoch; at the limit frames drop and nothing
 * held is lost; room made by a release takes frames again. */
static void test_cap(void **state)
{
    struct fx *f = *state;
    const size_t chunk = 1u << 20;
    uint8_t *buf = malloc(chunk);
    struct iovec iov = {.iov_base = buf, .iov_len = chunk};
    size_t n = 0;

    assert_non_null(buf);
    memset(buf, 'm', chunk);
    while (colo_outbuf_held_bytes(&f->ob) + chunk < COLO_OUTBUF_CKPT_BYTES) {
        assert_int_equal(colo_outbuf_send(&f->ob, &iov, 1), (int)chunk);
        n++;
    }
    assert_int_equal(ckpt_requests, 0);
    assert_int_equal(colo_outbuf_send(&f->ob, &iov, 1), (int)chunk); /* reaches half */
    n++;
    assert_int_equal(ckpt_requests, 1);
    while (colo_outbuf_held_bytes(&f->ob) + chunk <= COLO_OUTBUF_MAX_BYTES) {
        assert_int_equal(colo_outbuf_send(&f->ob, &iov, 1), (int)chunk);
        n++;
    }
    assert_int_equal(ckpt_requests, 1); /* once per epoch */
    assert_int_equal(colo_outbuf_held_bytes(&f->ob), COLO_OUTBUF_MAX_BYTES);
    /* Full: frames drop (the NIC sees 0 taken), also tiny ones. */
    assert_int_equal(colo_outbuf_send(&f->ob, &iov, 1), 0);
    iov.iov_len = 1;
    assert_int_equal(colo_outbuf_send(&f->ob, &iov, 1), 0);
    assert_int_equal(f->ob.dropped_total, 2);
    assert_int_equal(f->ob.held_total, n);
    assert_int_equal(colo_outbuf_held_bytes(&f->ob), COLO_OUTBUF_MAX_BYTES);
    assert_int_equal(f->w.n, 0);

    /* The next epoch, still over half: it asks again, once. */
    assert_int_equal(colo_outbuf_close_epoch(&f->ob), 1);
    assert_int_equal(colo_outbuf_send(&f->ob, &iov, 1), 0);
    assert_int_equal(ckpt_requests, 2);
    assert_int_equal(colo_outbuf_send(&f->ob, &iov, 1), 0);
    assert_int_equal(ckpt_requests, 2);

    /* Epoch 1 released: all of it, nothing dropped was held. */
    colo_outbuf_release(&f->ob, 1);
    assert_int_equal(f->w.n, n);
    assert_int_equal(f->ob.released_total, n);
    assert_int_equal(colo_outbuf_held_bytes(&f->ob), 0);
    buf[0] = 'z';
    assert_int_equal(colo_outbuf_send(&f->ob, &iov, 1), 1);
    assert_int_equal(colo_outbuf_held_bytes(&f->ob), 1);
    assert_int_equal(ckpt_requests, 2); /* far below half */
    colo_outbuf_stop(&f->ob);
    assert_int_equal(f->w.tags[f->w.n - 1], 'z');
    free(buf);
}

struct racer {
    struct fx *f;
    bool stop; /* colo_outbuf_stop, else colo_outbuf_release(1) */
};

static void *race(void *arg)
{
    struct racer *r = arg;

    if (r->stop)
        colo_outbuf_stop(&r->f->ob);
    else
        colo_outbuf_release(&r->f->ob, 1);
    return NULL;
}

/* A release is sending epoch 1 when a stop (the engine leaving COLO on another thread) starts:
 * the stop's frames (epoch 2) must not go out in the middle of epoch 1's. */
static void test_concurrent_releases_keep_order(void **state)
{
    struct fx *f = *state;
    struct racer rel = {.f = f}, stop = {.f = f, .stop = true};
    pthread_t t1, t2;

    frame(&f->ob, 'a', 16);
    frame(&f->ob, 'b', 16);
    colo_outbuf_close_epoch(&f->ob);
    frame(&f->ob, 'c', 16);
    frame(&f->ob, 'd', 16);
    f->w.stall_on = 'a';
    assert_int_equal(pthread_create(&t1, NULL, race, &rel), 0);
    pthread_mutex_lock(&f->w.lock);
    while (!f->w.stalling)
        pthread_cond_wait(&f->w.cond, &f->w.lock);
    pthread_mutex_unlock(&f->w.lock);
    /* The release is inside its send of 'a' (stalled); the stop starts now. */
    assert_int_equal(pthread_create(&t2, NULL, race, &stop), 0);
    assert_int_equal(pthread_join(t1, NULL), 0);
    assert_int_equal(pthread_join(t2, NULL), 0);
    assert_wire(&f->w, "abcd");
    assert_int_equal(colo_outbuf_held_bytes(&f->ob), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stop_keeps_order_with_concurrent_send, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_release_by_epoch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_discard_then_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_console_coalesces_per_epoch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_releases_keep_order, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
