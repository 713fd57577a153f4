/* test_heartbeat.c: the COLO heartbeat on socketpairs with real threads: the handshake (tokens,
 * garbage, reflection, timeouts), LEFT/LEFT_ACK, TAKEOVER, loss, a stall of the heartbeat
 * thread alone (hb-beat fault), the lifecycle, and no fd left behind.
 *
 * Peers are either a second heartbeat or "raw": the test itself reads and writes the wire, so
 * the bytes are checked too. Nothing asserts on elapsed time but generous upper bounds for
 * waiting; the stall tests are decided by what the thread must have read, not by a clock. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../fd_count.h"
#include "migration/be.h"
#include "colo/fault.h"
#include "colo/heartbeat.h"
#include "core/loop.h"

#define WAIT_MS 10000 /* upper bound for anything to happen: only a broken heartbeat hits it */
/* timeout_ms where a loss is not what is tested: no scheduling hiccup on a loaded machine may
 * make one up */
#define QUIET_MS 30000

/* ---- helpers ---- */

static int baseline_fds;

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static struct hb_params params(uint32_t interval_ms, uint32_t timeout_ms, uint8_t token_byte)
{
    struct hb_params p = {.interval_ms = interval_ms, .timeout_ms = timeout_ms};

    memset(p.token, token_byte, sizeof(p.token));
    p.token[0] = 0x5a; /* not all one byte */
    return p;
}

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void raw_send(int fd, uint32_t magic, uint32_t arg)
{
    uint8_t m[HB_MSG_LEN];

    be32_store(m, magic);
    be32_store(m + 4, arg);
    assert_int_equal(send(fd, m, sizeof(m), MSG_NOSIGNAL), (ssize_t)sizeof(m));
}

/* Read exactly len bytes within ms. true when read. */
static bool raw_read(int fd, uint8_t *buf, size_t len, unsigned ms)
{
    uint64_t due = now_ms() + ms;
    size_t done = 0;

    while (done < len) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        uint64_t now = now_ms();
        ssize_t n;

        if (now >= due || poll(&p, 1, (int)(due - now)) <= 0)
            return false;
        n = recv(fd, buf + done, len - done, MSG_DONTWAIT);
        if (n <= 0)
            return false;
        done += (size_t)n;
    }
    return true;
}

/* Skip messages until one with magic arrives; its argument in *arg. */
static bool raw_find(int fd, uint32_t magic, uint32_t *arg)
{
    uint64_t due = now_ms() + WAIT_MS;
    uint8_t m[HB_MSG_LEN];

    while (now_ms() < due && raw_read(fd, m, sizeof(m), WAIT_MS))
        if (be32_load(m) == magic) {
            *arg = be32_load(m + 4);
            return true;
        }
    return false;
}

/* A heartbeat and what its callback saw. */
struct side {
    struct heartbeat hb;
    pthread_mutex_t lock;
    int n;
    enum hb_event ev[8];
    char why[8][192];
    uint32_t left_reason;
    bool disarmed;
};

static void on_event(void *opaque, enum hb_event ev, const char *why)
{
    struct side *s = opaque;

    pthread_mutex_lock(&s->lock);
    if (ev == HB_EV_PEER_LEFT) {
        s->left_reason = s->hb.peer_left_reason;
        s->disarmed = true; /* what COLO must do before the ACK goes out */
    }
    if (s->n < 8) {
        s->ev[s->n] = ev;
        snprintf(s->why[s->n], sizeof(s->why[0]), "%s", why);
    }
    s->n++;
    pthread_mutex_unlock(&s->lock);
}

static struct side *side_new(void)
{
    struct side *s = calloc(1, sizeof(*s));

    assert_non_null(s);
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

static void side_free(struct side *s)
{
    heartbeat_stop(&s->hb);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int events(struct side *s)
{
    int n;

    pthread_mutex_lock(&s->lock);
    n = s->n;
    pthread_mutex_unlock(&s->lock);
    return n;
}

static bool wait_events(struct side *s, int n)
{
    uint64_t due = now_ms() + WAIT_MS;

    while (events(s) < n)
        if (now_ms() > due)
            return false;
        else
            sleep_ms(2);
    return true;
}

static uint64_t beats_rx(const struct side *s)
{
    return __atomic_load_n(&s->hb.beats_rx, __ATOMIC_RELAXED);
}

static bool wait_beats(struct side *s, uint64_t n)
{
    uint64_t due = now_ms() + WAIT_MS;

    while (beats_rx(s) < n)
        if (now_ms() > due)
            return false;
        else
            sleep_ms(2);
    return true;
}

static void start(struct side *s, int fd, uint32_t interval_ms, uint32_t timeout_ms)
{
    struct hb_params p = params(interval_ms, timeout_ms, 1);

    assert_int_equal(heartbeat_start(&s->hb, fd, &p, on_event, s), 0);
    assert_true(heartbeat_running(&s->hb));
}

/* Stop a, then b. b may see a's close first (it is not stopped yet): at most one LOST more. */
static int stop_pair(struct side *a, struct side *b)
{
    int n = events(b);

    heartbeat_stop(&a->hb);
    heartbeat_stop(&b->hb);
    if (events(b) != n) {
        assert_int_equal(events(b), n + 1);
        assert_int_equal(b->ev[n], HB_EV_LOST);
        assert_non_null(strstr(b->why[n], "closed"));
    }
    return n;
}

/* ---- handshake ---- */

struct hs {
    int fd;
    bool initiator;
    struct hb_params p;
    int r;
    char err[256];
};

static void *hs_thread(void *arg)
{
    struct hs *h = arg;

    h->r = heartbeat_handshake(h->fd, h->initiator, &h->p, WAIT_MS, h->err, sizeof(h->err));
    return NULL;
}

static void handshake_pair(uint8_t tok_i, uint8_t tok_r, struct hs *i, struct hs *r, int sv[2])
{
    pthread_t t;

    pair(sv);
    *i = (struct hs){.fd = sv[0], .initiator = true, .p = params(10, 1000, tok_i)};
    *r = (struct hs){.fd = sv[1], .initiator = false, .p = params(10, 1000, tok_r)};
    assert_int_equal(pthread_create(&t, NULL, hs_thread, r), 0);
    hs_thread(i);
    assert_int_equal(pthread_join(t, NULL), 0);
}

static void test_handshake_ok_then_beats(void **state)
{
    struct side *a = side_new(), *b = side_new();
    struct hs i, r;
    int sv[2];

    (void)state;
    handshake_pair(7, 7, &i, &r, sv);
    assert_int_equal(i.r, 0);
    assert_int_equal(r.r, 0);
    /* The handshake left nothing behind: both threads read clean beats. */
    start(a, sv[0], 10, QUIET_MS);
    start(b, sv[1], 10, QUIET_MS);
    assert_true(wait_beats(a, 5));
    assert_true(wait_beats(b, 5));
    assert_int_equal(stop_pair(a, b), 0);
    assert_int_equal(events(a), 0);
    assert_true(__atomic_load_n(&a->hb.beats_tx, __ATOMIC_RELAXED) >= 5);
    side_free(a);
    side_free(b);
}

static void test_handshake_wrong_token(void **state)
{
    struct hs i, r;
    int sv[2];

    (void)state;
    handshake_pair(7, 8, &i, &r, sv);
    assert_int_equal(i.r, -EACCES);
    assert_int_equal(r.r, -EACCES);
    assert_non_null(strstr(i.err, "token"));
    assert_non_null(strstr(r.err, "token"));
    close(sv[0]);
    close(sv[1]);
}

/* The side under test against a raw peer run by fn on the other end. */
static void *hs_raw_garbage(void *arg)
{
    int fd = *(int *)arg;
    const char junk[HB_HS_FRAME_LEN] = "GET / HTTP/1.1\r\nHost: colo\r\n\r\n";

    send(fd, junk, sizeof(junk), MSG_NOSIGNAL);
    return NULL;
}

static void test_handshake_garbage(void **state)
{
    (void)state;
    for (int initiator = 0; initiator < 2; initiator++) {
        struct hs h;
        pthread_t t;
        int sv[2];

        pair(sv);
        h = (struct hs){.fd = sv[0], .initiator = initiator, .p = params(10, 1000, 7)};
        assert_int_equal(pthread_create(&t, NULL, hs_raw_garbage, &sv[1]), 0);
        hs_thread(&h);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(h.r, -EPROTO);
        assert_non_null(strstr(h.err, "not a tandem heartbeat peer"));
        close(sv[0]);
        close(sv[1]);
    }
}

/* A valid HELLO, then garbage where the proof belongs. */
static void *hs_raw_bad_proof(void *arg)
{
    int fd = *(int *)arg;
    uint8_t f[HB_HS_FRAME_LEN] = {0};

    be32_store(f, HB_MAGIC_HELLO);
    be32_store(f + 4, HB_VERSION);
    send(fd, f, sizeof(f), MSG_NOSIGNAL);
    memset(f, 0xee, sizeof(f));
    send(fd, f, sizeof(f), MSG_NOSIGNAL);
    return NULL;
}

static void test_handshake_garbage_proof(void **state)
{
    struct hs h;
    pthread_t t;
    int sv[2];

    (void)state;
    pair(sv);
    h = (struct hs){.fd = sv[0], .initiator = false, .p = params(10, 1000, 7)};
    assert_int_equal(pthread_create(&t, NULL, hs_raw_bad_proof, &sv[1]), 0);
    hs_thread(&h);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(h.r, -EPROTO);
    assert_non_null(strstr(h.err, "garbage"));
    close(sv[0]);
    close(sv[1]);
}

/* A man in the middle without the token sends the initiator's own frames back to it. */
static void *hs_reflector(void *arg)
{
    int fd = *(int *)arg;
    uint8_t f[HB_HS_FRAME_LEN];

    for (int k = 0; k < 2 && raw_read(fd, f, sizeof(f), WAIT_MS); k++) {
        if (k == 0) {
            /* Wire check: the first frame is HELLO, version 1. */
            if (be32_load(f) != HB_MAGIC_HELLO || be32_load(f + 4) != HB_VERSION)
                break;
        }
        send(fd, f, sizeof(f), MSG_NOSIGNAL);
    }
    return NULL;
}

static void test_handshake_reflection(void **state)
{
    struct hs h;
    pthread_t t;
    int sv[2];

    (void)state;
    pair(sv);
    h = (struct hs){.fd = sv[0], .initiator = true, .p = params(10, 1000, 7)};
    assert_int_equal(pthread_create(&t, NULL, hs_reflector, &sv[1]), 0);
    hs_thread(&h);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(h.r, -EACCES); /* its own proof is for the other role */
    close(sv[0]);
    close(sv[1]);
}

static void test_handshake_timeout_and_truncation(void **state)
{
    uint8_t half[HB_HS_FRAME_LEN / 2] = {0};
    char err[256];
    struct hb_params p = params(10, 1000, 7);
    int sv[2];

    (void)state;
    pair(sv); /* the peer says nothing */
    assert_int_equal(heartbeat_handshake(sv[0], true, &p, 100, err, sizeof(err)), -ETIMEDOUT);
    assert_non_null(strstr(err, "within 100 ms"));
    close(sv[0]);
    close(sv[1]);

    pair(sv); /* the peer says half a HELLO and leaves */
    be32_store(half, HB_MAGIC_HELLO);
    assert_int_equal(send(sv[1], half, sizeof(half), 0), (ssize_t)sizeof(half));
    close(sv[1]);
    assert_int_equal(heartbeat_handshake(sv[0], false, &p, WAIT_MS, err, sizeof(err)), -ECONNRESET);
    close(sv[0]);
}

/* ---- messages ---- */

static void test_leave_acked(void **state)
{
    struct side *a = side_new(), *b = side_new();
    uint64_t rx;
    int sv[2];

    (void)state;
    pair(sv);
    start(a, sv[0], 10, QUIET_MS);
    start(b, sv[1], 10, QUIET_MS);
    assert_int_equal(heartbeat_leave(&a->hb, 7, WAIT_MS), 0);
    /* The ACK came after b's callback recorded the LEFT. */
    pthread_mutex_lock(&b->lock);
    assert_int_equal(b->n, 1);
    assert_int_equal(b->ev[0], HB_EV_PEER_LEFT);
    assert_int_equal(b->left_reason, 7);
    assert_true(b->disarmed);
    assert_non_null(strstr(b->why[0], "reason 7"));
    pthread_mutex_unlock(&b->lock);
    /* Both keep beating. */
    rx = beats_rx(a);
    assert_true(wait_beats(a, rx + 3));
    assert_true(heartbeat_running(&a->hb));
    assert_true(heartbeat_running(&b->hb));
    assert_int_equal(stop_pair(a, b), 1);
    assert_int_equal(events(a), 0);
    side_free(a);
    side_free(b);
}

struct leaver {
    struct heartbeat *hb;
    uint32_t reason;
    int r;
};

static void *leaver_thread(void *arg)
{
    struct leaver *l = arg;

    l->r = heartbeat_leave(l->hb, l->reason, WAIT_MS);
    return NULL;
}

static void test_leave_unanswered(void **state)
{
    struct side *a = side_new();
    uint8_t m[HB_MSG_LEN];
    uint32_t arg;
    int sv[2];

    (void)state;
    pair(sv);
    start(a, sv[0], 10, QUIET_MS);
    /* Wire check: beats come first, numbered from 0. */
    assert_true(raw_read(sv[1], m, sizeof(m), WAIT_MS));
    assert_int_equal(be32_load(m), HB_MAGIC_BEAT);
    assert_int_equal(be32_load(m + 4), 0);
    raw_send(sv[1], HB_MAGIC_BEAT, 0); /* alive, but it never answers LEFT */
    assert_int_equal(heartbeat_leave(&a->hb, 3, 200), -ETIMEDOUT);
    assert_true(raw_find(sv[1], HB_MAGIC_LEFT, &arg));
    assert_int_equal(arg, 3);
    /* The next LEFT is answered by hand: the ACK the raw peer sends ends the wait. */
    {
        struct leaver l = {.hb = &a->hb, .reason = 4};
        pthread_t t;

        assert_int_equal(pthread_create(&t, NULL, leaver_thread, &l), 0);
        assert_true(raw_find(sv[1], HB_MAGIC_LEFT, &arg));
        assert_int_equal(arg, 4);
        raw_send(sv[1], HB_MAGIC_LEFT_ACK, 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(l.r, 0);
    }
    heartbeat_stop(&a->hb);
    assert_int_equal(events(a), 0);
    close(sv[1]);
    side_free(a);
}

static void test_takeover(void **state)
{
    struct side *a = side_new(), *b = side_new();
    int sv[2];

    (void)state;
    pair(sv);
    start(a, sv[0], 10, QUIET_MS);
    start(b, sv[1], 10, QUIET_MS);
    assert_int_equal(heartbeat_send_takeover(&a->hb), 0);
    assert_true(wait_events(b, 1));
    heartbeat_stop(&a->hb); /* first: a would see b's close as a loss */
    heartbeat_stop(&b->hb);
    assert_int_equal(events(b), 1);
    assert_int_equal(b->ev[0], HB_EV_TOOK_OVER);
    assert_int_equal(events(a), 0);
    side_free(a);
    side_free(b);
}

static void test_takeover_wire_and_after_end(void **state)
{
    struct side *a = side_new();
    uint32_t arg;
    int sv[2];

    (void)state;
    pair(sv);
    start(a, sv[0], 10, 100);
    assert_int_equal(heartbeat_send_takeover(&a->hb), 0);
    assert_true(raw_find(sv[1], HB_MAGIC_TAKEOVER, &arg));
    assert_int_equal(arg, 0);
    /* The silent peer is lost; telling it we took over still works while the fd is open. */
    assert_true(wait_events(a, 1));
    assert_int_equal(a->ev[0], HB_EV_LOST);
    assert_non_null(strstr(a->why[0], "no heartbeat from the peer"));
    assert_false(heartbeat_running(&a->hb));
    assert_int_equal(heartbeat_send_takeover(&a->hb), 0);
    assert_true(raw_find(sv[1], HB_MAGIC_TAKEOVER, &arg));
    assert_int_equal(heartbeat_leave(&a->hb, 1, 100), -ENOTCONN);
    heartbeat_stop(&a->hb);
    assert_int_equal(heartbeat_send_takeover(&a->hb), -ENOTCONN);
    assert_int_equal(events(a), 1);
    close(sv[1]);
    side_free(a);
}

static void test_peer_closes(void **state)
{
    struct side *a = side_new();
    int sv[2];

    (void)state;
    pair(sv);
    start(a, sv[0], 10, QUIET_MS);
    close(sv[1]);
    assert_true(wait_events(a, 1));
    heartbeat_stop(&a->hb);
    assert_int_equal(events(a), 1);
    assert_int_equal(a->ev[0], HB_EV_LOST);
    assert_non_null(strstr(a->why[0], "closed"));
    side_free(a);
}

static void test_garbage(void **state)
{
    struct side *a = side_new();
    int sv[2];

    (void)state;
    pair(sv);
    start(a, sv[0], 10, QUIET_MS);
    raw_send(sv[1], HB_MAGIC_BEAT, 0);
    raw_send(sv[1], 0x48425431, 1); /* the old protocol's beat */
    assert_true(wait_events(a, 1));
    heartbeat_stop(&a->hb);
    assert_int_equal(events(a), 1);
    assert_int_equal(a->ev[0], HB_EV_LOST);
    assert_non_null(strstr(a->why[0], "garbage"));
    assert_int_equal(beats_rx(a), 1);
    close(sv[1]);
    side_free(a);
}

/* ---- a stall of the heartbeat thread alone ---- */

/* The peer goes on beating every 20 ms, counts our LEFT_ACKs and the beats that follow one. */
struct beater {
    int fd;
    uint32_t seq;
    atomic_bool stop;
    atomic_int left_acks, beats_after_ack;
};

static void *beater_thread(void *arg)
{
    struct beater *b = arg;
    uint8_t buf[256];

    while (!atomic_load(&b->stop)) {
        ssize_t n;

        raw_send(b->fd, HB_MAGIC_BEAT, b->seq++);
        /* Messages are 8 bytes and unix stream reads here never split one (no partial
         * sends by a sender whose socket has room). */
        while ((n = recv(b->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
            for (ssize_t k = 0; k + HB_MSG_LEN <= n; k += HB_MSG_LEN) {
                uint32_t magic = be32_load(buf + k);

                if (magic == HB_MAGIC_LEFT_ACK)
                    atomic_fetch_add(&b->left_acks, 1);
                else if (magic == HB_MAGIC_BEAT && atomic_load(&b->left_acks))
                    atomic_fetch_add(&b->beats_after_ack, 1);
            }
        sleep_ms(20);
    }
    return NULL;
}

/* The hb-beat fault stalls the heartbeat thread sleep_ms at its fifth beat; timeout_ms is
 * shorter. Before it starts, the peer has queued five beats, extra (if any) and a sixth beat,
 * so that what lies behind the stall does not depend on when threads get to run; the beater
 * then goes on, as a live peer does. */
static struct side *stall(struct beater *b, pthread_t *t, unsigned sleep, uint32_t timeout_ms,
                          uint32_t extra_magic, uint32_t extra)
{
    struct side *a = side_new();
    char fault[64];
    int sv[2];

    snprintf(fault, sizeof(fault), "hb-beat:5:sleep%u", sleep);
    assert_int_equal(setenv("TANDEM_COLO_FAULT", fault, 1), 0);
    assert_int_equal(colo_fault_init(), 0);
    pair(sv);
    *b = (struct beater){.fd = sv[1]};
    while (b->seq < 5)
        raw_send(b->fd, HB_MAGIC_BEAT, b->seq++);
    if (extra_magic)
        raw_send(b->fd, extra_magic, extra);
    raw_send(b->fd, HB_MAGIC_BEAT, b->seq++);
    start(a, sv[0], 20, timeout_ms);
    assert_int_equal(pthread_create(t, NULL, beater_thread, b), 0);
    return a;
}

static void stall_end(struct side *a, struct beater *b, pthread_t t)
{
    atomic_store(&b->stop, true);
    assert_int_equal(pthread_join(t, NULL), 0);
    heartbeat_stop(&a->hb);
    close(b->fd);
    unsetenv("TANDEM_COLO_FAULT");
    assert_int_equal(colo_fault_init(), 0);
}

static void test_self_stall(void **state)
{
    struct beater b;
    pthread_t t;
    struct side *a = stall(&b, &t, 600, 200, 0, 0);

    (void)state;
    assert_true(wait_events(a, 1));
    stall_end(a, &b, t);
    /* Not LOST: the peer is alive, and what it sent behind the stall was read first. */
    assert_int_equal(events(a), 1);
    assert_int_equal(a->ev[0], HB_EV_SELF_STALLED);
    assert_non_null(strstr(a->why[0], "our own heartbeat stopped"));
    assert_true(beats_rx(a) >= 6);
    side_free(a);
}

static void test_stall_then_takeover(void **state)
{
    struct beater b;
    pthread_t t;
    struct side *a = stall(&b, &t, 600, 200, HB_MAGIC_TAKEOVER, 0);

    (void)state;
    assert_true(wait_events(a, 1));
    stall_end(a, &b, t);
    assert_int_equal(events(a), 1);
    assert_int_equal(a->ev[0], HB_EV_TOOK_OVER);
    side_free(a);
}

/* Longer here: after the LEFT the heartbeat lives on, on the beater's beats, and a loaded
 * machine must not starve the beater past the timeout. */
static void test_stall_then_left(void **state)
{
    struct beater b;
    pthread_t t;
    struct side *a = stall(&b, &t, 2000, 1000, HB_MAGIC_LEFT, 9);
    uint64_t due = now_ms() + WAIT_MS;

    (void)state;
    assert_true(wait_events(a, 1));
    /* ACKed, and it goes on beating after the LEFT, with no stall reported. */
    while (atomic_load(&b.beats_after_ack) < 2 && now_ms() < due)
        sleep_ms(2);
    assert_int_equal(atomic_load(&b.left_acks), 1);
    assert_true(atomic_load(&b.beats_after_ack) >= 2);
    assert_true(heartbeat_running(&a->hb));
    stall_end(a, &b, t);
    assert_int_equal(events(a), 1);
    assert_int_equal(a->ev[0], HB_EV_PEER_LEFT);
    assert_int_equal(a->left_reason, 9);
    side_free(a);
}

/* ---- lifecycle ---- */

static void test_lifecycle(void **state)
{
    static struct heartbeat zero; /* never started */
    struct side *a = side_new();
    struct hb_params bad = params(100, 100, 1);
    int sv[2], extra[2];

    (void)state;
    heartbeat_stop(&zero);
    heartbeat_stop(&zero);
    assert_false(heartbeat_running(&zero));
    assert_int_equal(heartbeat_leave(&zero, 1, 10), -ENOTCONN);
    assert_int_equal(heartbeat_send_takeover(&zero), -ENOTCONN);

    /* Bad params: -EINVAL, and the fd is taken all the same. */
    pair(extra);
    assert_int_equal(heartbeat_start(&a->hb, extra[0], &bad, on_event, a), -EINVAL);
    assert_int_equal(fcntl(extra[0], F_GETFD), -1);
    close(extra[1]);

    /* Start while running: -EBUSY, the new fd closed, the running one untouched. */
    pair(sv);
    start(a, sv[0], 10, QUIET_MS);
    pair(extra);
    {
        struct hb_params p = params(10, QUIET_MS, 1);
        assert_int_equal(heartbeat_start(&a->hb, extra[0], &p, on_event, a), -EBUSY);
    }
    assert_int_equal(fcntl(extra[0], F_GETFD), -1);
    close(extra[1]);
    assert_true(heartbeat_running(&a->hb));
    heartbeat_stop(&a->hb);
    heartbeat_stop(&a->hb);
    assert_false(heartbeat_running(&a->hb));
    close(sv[1]);

    /* The same struct starts again; its thread ends by itself; stop after that, twice. */
    pair(sv);
    start(a, sv[0], 10, QUIET_MS);
    close(sv[1]);
    assert_true(wait_events(a, 1));
    assert_false(heartbeat_running(&a->hb));
    heartbeat_stop(&a->hb);
    heartbeat_stop(&a->hb);

    /* Ended without a stop: start reaps it. */
    pair(sv);
    start(a, sv[0], 10, QUIET_MS);
    close(sv[1]);
    assert_true(wait_events(a, 2));
    pair(sv);
    start(a, sv[0], 10, QUIET_MS);
    heartbeat_stop(&a->hb);
    close(sv[1]);
    assert_int_equal(events(a), 2);
    side_free(a);
}

static void test_nothing_after_stop(void **state)
{
    struct side *a = side_new();
    int sv[2];

    (void)state;
    pair(sv);
    start(a, sv[0], 10, 100);
    heartbeat_stop(&a->hb);
    close(sv[1]);
    sleep_ms(150); /* past the timeout it no longer has: nothing may come */
    assert_int_equal(events(a), 0);
    side_free(a);
}

static void test_no_fd_leak(void **state)
{
    (void)state;
    assert_int_equal(count_fds(), baseline_fds);
}

static int group_setup(void **state)
{
    (void)state;
    baseline_fds = count_fds();
    return baseline_fds < 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_ok_then_beats),
        cmocka_unit_test(test_handshake_wrong_token),
        cmocka_unit_test(test_handshake_garbage),
        cmocka_unit_test(test_handshake_garbage_proof),
        cmocka_unit_test(test_handshake_reflection),
        cmocka_unit_test(test_handshake_timeout_and_truncation),
        cmocka_unit_test(test_leave_acked),
        cmocka_unit_test(test_leave_unanswered),
        cmocka_unit_test(test_takeover),
        cmocka_unit_test(test_takeover_wire_and_after_end),
        cmocka_unit_test(test_peer_closes),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_self_stall),
        cmocka_unit_test(test_stall_then_takeover),
        cmocka_unit_test(test_stall_then_left),
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_nothing_after_stop),
        cmocka_unit_test(test_no_fd_leak),
    };

    return cmocka_run_group_tests(tests, group_setup, NULL);
}
