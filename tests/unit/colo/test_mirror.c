/* test_mirror.c: hybrid COLO's frame link over a socketpair: records arrive whole, in order,
 * with their kind, NIC and generation, both ways; a malformed record (bad kind, bad length,
 * nonzero reserved field) or a peer that closes mid-record ends the link without delivering it;
 * the queue bound refuses frames instead of blocking; sends after the link broke fail; stop is
 * idempotent. No timing: the tests wait on a condition for what they expect. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "colo/mirror.h"
#include "migration/be.h"

#define NREC 64

struct sink {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned n;
    enum mirror_kind kind[NREC];
    unsigned nic[NREC];
    uint64_t gen[NREC];
    size_t len[NREC];
    uint8_t first[NREC];
};

static struct sink sink_a, sink_b;

static void on_rec(void *opaque, enum mirror_kind kind, unsigned nic, uint64_t gen, uint8_t *frame,
                   size_t len)
{
    struct sink *s = opaque;

    pthread_mutex_lock(&s->lock);
    if (s->n < NREC) {
        s->kind[s->n] = kind;
        s->nic[s->n] = nic;
        s->gen[s->n] = gen;
        s->len[s->n] = len;
        s->first[s->n] = frame[14];
        s->n++;
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static int broken_calls;

static void on_broken(void *opaque, const char *why)
{
    (void)opaque;
    (void)why;
    __atomic_add_fetch(&broken_calls, 1, __ATOMIC_SEQ_CST);
}

static void sink_init(struct sink *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
}

static void wait_n(struct sink *s, unsigned n)
{
    pthread_mutex_lock(&s->lock);
    while (s->n < n)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

static void wait_broken(struct mirror *m)
{
    while (!mirror_broken(m))
        usleep(1000); /* polls a flag; no deadline: a hang fails the test by its timeout */
}

static int send_frame(struct mirror *m, enum mirror_kind k, unsigned nic, uint64_t gen, size_t len,
                      uint8_t tag)
{
    static uint8_t buf[MIRROR_FRAME_MAX];
    struct iovec iov[2] = {{buf, 10}, {buf + 10, len - 10}};

    memset(buf, 0, len);
    buf[14] = tag;
    return mirror_send(m, k, nic, gen, iov, 2);
}

static void both_ways_in_order(void **state)
{
    struct mirror a, b;
    int sv[2];

    (void)state;
    sink_init(&sink_a);
    sink_init(&sink_b);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(mirror_start(&a, sv[0], on_rec, on_broken, &sink_a), 0);
    assert_int_equal(mirror_start(&b, sv[1], on_rec, on_broken, &sink_b), 0);
    for (unsigned i = 0; i < 40; i++)
        assert_int_equal(send_frame(&a, MIRROR_INPUT, i % 3, 100 + i, 60 + i * 37, (uint8_t)i), 0);
    assert_int_equal(send_frame(&b, MIRROR_OUTPUT, 1, 7, MIRROR_FRAME_MAX, 0xab), 0);
    wait_n(&sink_b, 40);
    wait_n(&sink_a, 1);
    for (unsigned i = 0; i < 40; i++) {
        assert_int_equal(sink_b.kind[i], MIRROR_INPUT);
        assert_int_equal(sink_b.nic[i], i % 3);
        assert_int_equal(sink_b.gen[i], 100 + i);
        assert_int_equal(sink_b.len[i], 60 + i * 37);
        assert_int_equal(sink_b.first[i], i);
    }
    assert_int_equal(sink_a.kind[0], MIRROR_OUTPUT);
    assert_int_equal(sink_a.len[0], MIRROR_FRAME_MAX);
    assert_int_equal(sink_a.first[0], 0xab);
    /* frames a NIC can never send are refused */
    assert_int_equal(send_frame(&a, MIRROR_INPUT, 0, 0, 13, 0), -EMSGSIZE);
    assert_int_equal(send_frame(&a, MIRROR_INPUT, 256, 0, 60, 0), -EMSGSIZE);
    mirror_stop(&a);
    mirror_stop(&a); /* idempotent */
    wait_broken(&b);
    assert_int_equal(send_frame(&b, MIRROR_OUTPUT, 0, 0, 60, 0), -EPIPE);
    mirror_stop(&b);
}

/* Write a raw header (and body) into the link, then check nothing was delivered and it broke. */
static void malformed(uint32_t n, uint8_t kind, uint16_t reserved, size_t body)
{
    static uint8_t buf[16 + 100];
    struct mirror b;
    int sv[2];

    sink_init(&sink_b);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(mirror_start(&b, sv[1], on_rec, on_broken, &sink_b), 0);
    memset(buf, 0, sizeof(buf));
    be32_store(buf, n);
    buf[4] = kind;
    be16_store(buf + 6, reserved);
    assert_int_equal(write(sv[0], buf, 16 + body), (ssize_t)(16 + body));
    close(sv[0]); /* a short record also ends here */
    wait_broken(&b);
    assert_int_equal(sink_b.n, 0);
    mirror_stop(&b);
}

static void malformed_records_break_the_link(void **state)
{
    (void)state;
    broken_calls = 0;
    malformed(12 + 60, 3, 0, 60);                  /* unknown kind */
    malformed(12 + 60, MIRROR_INPUT, 1, 60);       /* reserved field set */
    malformed(12 + 13, MIRROR_INPUT, 0, 13);       /* shorter than an Ethernet header */
    malformed(12 + MIRROR_FRAME_MAX + 1, 1, 0, 0); /* longer than any frame */
    malformed(12 + 60, MIRROR_OUTPUT, 0, 30);      /* the peer closed mid-record */
}

static void full_queue_refuses(void **state)
{
    struct mirror a;
    int sv[2], r = 0;
    unsigned sent = 0;

    (void)state;
    sink_init(&sink_a);
    /* nobody reads sv[1]: the writer blocks once the socket buffer is full */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(mirror_start(&a, sv[0], on_rec, on_broken, &sink_a), 0);
    while (sent < 10000 && (r = send_frame(&a, MIRROR_INPUT, 0, 0, MIRROR_FRAME_MAX, 0)) == 0)
        sent++;
    assert_int_equal(r, -ENOBUFS);
    assert_true(sent >= MIRROR_QUEUE_MAX / (MIRROR_FRAME_MAX + 16));
    assert_true(a.dropped >= 1);
    mirror_stop(&a); /* the blocked writer is freed by the shutdown */
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(both_ways_in_order),
        cmocka_unit_test(malformed_records_break_the_link),
        cmocka_unit_test(full_queue_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
