/* heartbeat.c: the heartbeat's handshake, its thread (drain, judge, beat, sleep) and lifecycle.
 *
 * Lifecycle (hb->state, changed under hb->lock):
 *
 *   STOPPED --start--> RUNNING --terminal event--> ENDED
 *      ^                  | stop                     | stop (or start, which reaps it first)
 *      |                  v                          |
 *      +-- join, close -- STOPPING <-----------------+
 *
 * Every byte for the peer goes through hb->out under hb->lock, whichever thread sends it, so
 * that a message cut short by a full socket is finished before the next one starts.
 */
#include "migration/be.h"
#include "colo/heartbeat.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "colo/fault.h"
#include "core/log.h"
#include "core/loop.h"

enum hb_state { HB_STOPPED = 0, HB_RUNNING, HB_ENDED, HB_STOPPING };

#define HB_ROLE_INITIATOR 'i'
#define HB_ROLE_RESPONDER 'r'
#define HB_MAC_LABEL      "tandem-colo-hb"
/* Bytes read per iteration before judging anyway: a peer beating every millisecond fills this
 * in over two minutes, so only a flood (never a stall of ours) can hit it. */
#define HB_DRAIN_BUDGET (1u << 20)

/* ---- handshake ---- */

/* Wait for events on fd until deadline (now_ms()). 0 (try again), -ETIMEDOUT or -errno. */
static int hs_wait(int fd, short events, uint64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = events};
    uint64_t now = now_ms();
    int r;

    if (now >= deadline)
        return -ETIMEDOUT;
    r = poll(&p, 1, deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now));
    if (r < 0)
        return errno == EINTR ? 0 : -errno;
    return r ? 0 : -ETIMEDOUT;
}

static int hs_write(int fd, const uint8_t *buf, size_t len, uint64_t deadline)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = send(fd, buf + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        int r;

        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return errno == EPIPE ? -ECONNRESET : -errno; /* either way: the peer went away */
        r = hs_wait(fd, POLLOUT, deadline);
        if (r)
            return r;
    }
    return 0;
}

/* Exactly len bytes, never more: what follows the handshake belongs to the heartbeat thread. */
static int hs_read(int fd, uint8_t *buf, size_t len, uint64_t deadline)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = recv(fd, buf + done, len - done, MSG_DONTWAIT);
        int r;

        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n == 0)
            return -ECONNRESET;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
        r = hs_wait(fd, POLLIN, deadline);
        if (r)
            return r;
    }
    return 0;
}

static void hs_frame(uint8_t *f, uint32_t magic, uint32_t arg, const uint8_t *payload)
{
    be32_store(f, magic);
    be32_store(f + 4, arg);
    if (payload)
        memcpy(f + 8, payload, HB_NONCE_LEN);
    else
        memset(f + 8, 0, HB_NONCE_LEN);
}

/* mac = HMAC-SHA256(token, label || role || nonce): the proof of role on nonce. */
static int hs_mac(const struct hb_params *p, uint8_t role, const uint8_t *nonce, uint8_t *mac)
{
    uint8_t text[sizeof(HB_MAC_LABEL) - 1 + 1 + HB_NONCE_LEN];
    size_t n = sizeof(HB_MAC_LABEL) - 1;

    memcpy(text, HB_MAC_LABEL, n);
    text[n] = role;
    memcpy(text + n + 1, nonce, HB_NONCE_LEN);
    if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, p->token, HB_TOKEN_LEN, text, sizeof(text), mac) < 0)
        return -EIO;
    return 0;
}

/* Constant time: how much of a guess matched must not show in how long the check took. */
static bool same_mac(const uint8_t *a, const uint8_t *b)
{
    volatile uint8_t d = 0;

    for (size_t i = 0; i < HB_MAC_LEN; i++)
        d |= a[i] ^ b[i];
    return d == 0;
}

static int hs_io_error(int r, int timeout_ms, char *err, size_t errlen)
{
    if (r == -ETIMEDOUT)
        err_set(err, errlen, "no heartbeat handshake from the peer within %d ms", timeout_ms);
    else if (r == -ECONNRESET)
        err_set(err, errlen, "the peer closed the connection during the heartbeat handshake");
    else
        err_set(err, errlen, "heartbeat handshake: %s", strerror(-r));
    return r;
}

int heartbeat_handshake(int fd, bool initiator, const struct hb_params *p, int timeout_ms,
                        char *err, size_t errlen)
{
    uint8_t nonce[HB_NONCE_LEN], peer_nonce[HB_NONCE_LEN], f[HB_HS_FRAME_LEN];
    uint8_t mine[HB_MAC_LEN], want[HB_MAC_LEN];
    uint8_t me = initiator ? HB_ROLE_INITIATOR : HB_ROLE_RESPONDER;
    uint8_t peer = initiator ? HB_ROLE_RESPONDER : HB_ROLE_INITIATOR;
    uint64_t deadline;
    uint32_t magic;
    int r;

    if (fd < 0 || !p || timeout_ms <= 0) {
        err_set(err, errlen, "heartbeat handshake: bad arguments");
        return -EINVAL;
    }
    deadline = now_ms() + (uint64_t)timeout_ms;
    if (gnutls_rnd(GNUTLS_RND_NONCE, nonce, sizeof(nonce)) < 0) {
        err_set(err, errlen, "heartbeat handshake: no random nonce");
        return -EIO;
    }
    hs_frame(f, HB_MAGIC_HELLO, HB_VERSION, nonce);
    r = hs_write(fd, f, sizeof(f), deadline);
    if (!r)
        r = hs_read(fd, f, sizeof(f), deadline);
    if (r)
        return hs_io_error(r, timeout_ms, err, errlen);
    magic = be32_load(f);
    if (magic != HB_MAGIC_HELLO) {
        err_set(err, errlen, "not a tandem heartbeat peer (magic 0x%08x)", magic);
        return -EPROTO;
    }
    if (be32_load(f + 4) != HB_VERSION) {
        err_set(err, errlen, "the peer speaks heartbeat version %u, we speak %u", be32_load(f + 4),
                HB_VERSION);
        return -EPROTO;
    }
    memcpy(peer_nonce, f + 8, HB_NONCE_LEN);
    /* What we prove (on its nonce), and what it must prove (on ours). */
    if (hs_mac(p, me, peer_nonce, mine) || hs_mac(p, peer, nonce, want)) {
        err_set(err, errlen, "heartbeat handshake: HMAC-SHA256 failed");
        return -EIO;
    }

    if (initiator) {
        hs_frame(f, HB_MAGIC_PROOF, 0, mine);
        r = hs_write(fd, f, sizeof(f), deadline);
        if (!r)
            r = hs_read(fd, f, sizeof(f), deadline);
        if (r)
            return hs_io_error(r, timeout_ms, err, errlen);
        magic = be32_load(f);
        if (magic == HB_MAGIC_REJECT) {
            err_set(err, errlen, "the peer rejected our proof: the heartbeat tokens differ");
            return -EACCES;
        }
        if (magic != HB_MAGIC_PROOF) {
            err_set(err, errlen, "garbage instead of the peer's heartbeat proof (magic 0x%08x)",
                    magic);
            return -EPROTO;
        }
        if (!same_mac(f + 8, want)) {
            err_set(err, errlen, "the peer's heartbeat proof is wrong: the tokens differ");
            return -EACCES;
        }
        return 0;
    }

    r = hs_read(fd, f, sizeof(f), deadline);
    if (r)
        return hs_io_error(r, timeout_ms, err, errlen);
    magic = be32_load(f);
    if (magic != HB_MAGIC_PROOF) {
        err_set(err, errlen, "garbage instead of the peer's heartbeat proof (magic 0x%08x)", magic);
        return -EPROTO;
    }
    if (!same_mac(f + 8, want)) {
        /* Tell it why (best effort), but prove nothing to a side that proved nothing. */
        hs_frame(f, HB_MAGIC_REJECT, 0, NULL);
        hs_write(fd, f, sizeof(f), deadline);
        err_set(err, errlen, "the peer's heartbeat proof is wrong: the tokens differ");
        return -EACCES;
    }
    hs_frame(f, HB_MAGIC_PROOF, 0, mine);
    r = hs_write(fd, f, sizeof(f), deadline);
    return r ? hs_io_error(r, timeout_ms, err, errlen) : 0;
}

/* ---- shared state ---- */

/* The lock and condition variable are set up on first use, so that an all-zero heartbeat
 * (static, or inside a zeroed struct) is ready as it is. */
static void hb_once(struct heartbeat *hb)
{
    int expect = 0;
    pthread_condattr_t a;

    if (atomic_load(&hb->once) == 2)
        return;
    if (!atomic_compare_exchange_strong(&hb->once, &expect, 1)) {
        while (atomic_load(&hb->once) != 2)
            sched_yield();
        return;
    }
    pthread_mutex_init(&hb->lock, NULL);
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&hb->cond, &a);
    pthread_condattr_destroy(&a);
    hb->fd = hb->wake[0] = hb->wake[1] = -1;
    atomic_store(&hb->once, 2);
}

static void hb_wake(struct heartbeat *hb)
{
    /* A full pipe already holds a wakeup. */
    if (write(hb->wake[1], "w", 1) < 0 && errno != EAGAIN)
        log_warn("colo: heartbeat: cannot wake the thread: %s", strerror(errno));
}

/* Send what is owed, without blocking. Caller holds hb->lock. 0 (all sent, or the rest waits
 * for room in the socket), or -errno when the connection is broken. */
static int out_flush(struct heartbeat *hb)
{
    while (hb->out_len) {
        ssize_t n = send(hb->fd, hb->out, hb->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
        }
        memmove(hb->out, hb->out + n, hb->out_len - (size_t)n);
        hb->out_len -= (size_t)n;
    }
    return 0;
}

/* Queue one message behind what is owed and send what can go. Caller holds hb->lock. */
static int out_msg(struct heartbeat *hb, uint32_t magic, uint32_t arg)
{
    if (hb->out_len + HB_MSG_LEN > sizeof(hb->out))
        return -ENOBUFS; /* the peer has read nothing for a while */
    be32_store(hb->out + hb->out_len, magic);
    be32_store(hb->out + hb->out_len + 4, arg);
    hb->out_len += HB_MSG_LEN;
    return out_flush(hb);
}

/* ---- the thread ---- */

/* What the last drain found. */
struct hb_rx {
    uint8_t buf[512];
    size_t have;          /* bytes of an incomplete message at buf[0] */
    uint64_t last_rx;     /* now_ms() when the last valid message was read */
    bool took_over, left; /* TAKEOVER / LEFT read and not yet judged */
    uint32_t left_reason; /* of the last LEFT */
    bool dead;            /* EOF, error or garbage: nothing more will be read */
    bool broken;          /* a send failed: the peer is read until EOF, then lost */
    char why[128];        /* the first of these, and why */
};

/* A process that dies, or closes with our beats unread, resets the connection: that is a close
 * too, and the usual way a dead peer shows. */
static void why_broken(struct hb_rx *rx, int err)
{
    if (err == ECONNRESET || err == EPIPE)
        snprintf(rx->why, sizeof(rx->why), "the peer closed the heartbeat connection (%s)",
                 strerror(err));
    else
        snprintf(rx->why, sizeof(rx->why), "heartbeat connection broken: %s", strerror(err));
}

static void rx_message(struct heartbeat *hb, struct hb_rx *rx, const uint8_t *m)
{
    uint32_t magic = be32_load(m), arg = be32_load(m + 4);
    uint64_t n;

    switch (magic) {
    case HB_MAGIC_BEAT:
        n = __atomic_load_n(&hb->beats_rx, __ATOMIC_RELAXED) + 1;
        __atomic_store_n(&hb->beats_rx, n, __ATOMIC_RELAXED);
        (void)colo_fault_point("hb-beat", n);
        break;
    case HB_MAGIC_LEFT:
        rx->left = true;
        rx->left_reason = arg;
        break;
    case HB_MAGIC_LEFT_ACK:
        pthread_mutex_lock(&hb->lock);
        hb->acks++;
        pthread_cond_broadcast(&hb->cond);
        pthread_mutex_unlock(&hb->lock);
        break;
    case HB_MAGIC_TAKEOVER:
        rx->took_over = true;
        break;
    default:
        /* Stream framing is lost: nothing after this can be trusted. */
        rx->dead = true;
        snprintf(rx->why, sizeof(rx->why),
                 "garbage on the heartbeat connection (magic 0x%08x, argument 0x%08x)", magic, arg);
        return;
    }
    /* Stamped after the message was handled: a stall of ours in between (hb-beat) must not
     * make the peer look older than it is. */
    rx->last_rx = now_ms();
}

/* Read and handle everything readable now, without blocking. */
static void rx_drain(struct heartbeat *hb, struct hb_rx *rx)
{
    size_t budget = HB_DRAIN_BUDGET;

    while (!rx->dead && budget) {
        ssize_t n = recv(hb->fd, rx->buf + rx->have, sizeof(rx->buf) - rx->have, MSG_DONTWAIT);
        size_t off = 0;

        if (n == 0) {
            rx->dead = true;
            snprintf(rx->why, sizeof(rx->why), "the peer closed the heartbeat connection");
            break;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                rx->dead = true;
                why_broken(rx, errno);
            }
            break;
        }
        budget -= (size_t)n < budget ? (size_t)n : budget;
        rx->have += (size_t)n;
        while (rx->have - off >= HB_MSG_LEN && !rx->dead) {
            rx_message(hb, rx, rx->buf + off);
            off += HB_MSG_LEN;
        }
        memmove(rx->buf, rx->buf + off, rx->have - off);
        rx->have -= off;
    }
}

static void drain_wake(struct heartbeat *hb)
{
    char buf[64];

    while (read(hb->wake[0], buf, sizeof(buf)) > 0) {
    }
}

/* A terminal event: reported unless heartbeat_stop began; either way the thread ends. The
 * state is ENDED before the callback runs, so that it (and everyone) sees the thread over. */
static void report_end(struct heartbeat *hb, enum hb_event ev, const char *why)
{
    bool go;

    pthread_mutex_lock(&hb->lock);
    go = !atomic_load(&hb->stop);
    if (go && atomic_load(&hb->state) == HB_RUNNING) {
        atomic_store(&hb->state, HB_ENDED);
        pthread_cond_broadcast(&hb->cond);
    }
    pthread_mutex_unlock(&hb->lock);
    if (!go)
        return;
    if (ev == HB_EV_TOOK_OVER)
        log_warn("colo: heartbeat: %s", why);
    else
        log_warn("colo: heartbeat: peer lost or unsure: %s", why);
    hb->fn(hb->opaque, ev, why);
}

static void *hb_thread(void *arg)
{
    struct heartbeat *hb = arg;
    struct hb_rx rx = {.last_rx = now_ms()};
    uint64_t last_beat = rx.last_rx, next_beat = rx.last_rx, to = hb->p.timeout_ms;
    uint32_t seq = 0;
    char why[160];

    pthread_setname_np(pthread_self(), "colo/hb");
    while (!atomic_load(&hb->stop)) {
        struct pollfd pf[2] = {{.fd = hb->fd, .events = POLLIN},
                               {.fd = hb->wake[0], .events = POLLIN}};
        bool left_now = false;
        uint64_t now, until;
        int r;

        /* 1. Drain first: what the peer sent while we were not looking counts. */
        drain_wake(hb);
        rx_drain(hb, &rx);
        now = now_ms();

        /* 2. Judge, most telling first. */
        if (rx.took_over) {
            report_end(hb, HB_EV_TOOK_OVER, "the peer took over: it runs the VM now");
            break;
        }
        if (rx.left) {
            rx.left = false;
            left_now = true;
            snprintf(why, sizeof(why), "the peer left COLO (reason %u) and goes on alone",
                     rx.left_reason);
            hb->peer_left_reason = rx.left_reason;
            if (atomic_load(&hb->stop))
                break;
            log_info("colo: heartbeat: %s", why);
            hb->fn(hb->opaque, HB_EV_PEER_LEFT, why);
            /* Only now: the ACK promises the peer that we recorded it. */
            pthread_mutex_lock(&hb->lock);
            r = out_msg(hb, HB_MAGIC_LEFT_ACK, 0);
            pthread_mutex_unlock(&hb->lock);
            if (r == -ENOBUFS)
                log_warn("colo: heartbeat: LEFT_ACK dropped: the peer reads nothing");
            else if (r < 0 && !rx.dead && !rx.broken) {
                rx.broken = true;
                why_broken(&rx, -r);
            }
        }
        /* A LEFT answers the question a stall raises: the peer goes on alone, it will not
         * take over from us. */
        if (!left_now && now - last_beat > to && !rx.dead && !rx.broken) {
            /* We were not looking for longer than the peer waits. What it did meanwhile is in
             * the socket and was read above: a TAKEOVER or LEFT would have been judged first.
             * Its silence during our stall says nothing (the whole host may have stalled):
             * it gets a fresh timeout from now. */
            snprintf(why, sizeof(why),
                     "our own heartbeat stopped for %llu ms (this thread or process was frozen): "
                     "the peer gets a fresh timeout",
                     (unsigned long long)(now - last_beat));
            log_warn("colo: heartbeat: %s", why);
            if (!atomic_load(&hb->stop))
                hb->fn(hb->opaque, HB_EV_SELF_STALLED, why);
            last_beat = now;
            if (rx.last_rx < now)
                rx.last_rx = now;
        }
        if (rx.dead || rx.broken) {
            report_end(hb, HB_EV_LOST, rx.why);
            break;
        }
        if (now - rx.last_rx > to) {
            snprintf(why, sizeof(why), "no heartbeat from the peer for %llu ms",
                     (unsigned long long)(now - rx.last_rx));
            report_end(hb, HB_EV_LOST, why);
            break;
        }

        /* 3. Beat if due. A full socket is not an error: a peer that reads nothing is found
         * by its own silence, and a beat queued behind a backlog would say nothing new. */
        pthread_mutex_lock(&hb->lock);
        r = 0;
        if (now >= next_beat) {
            if (!hb->out_len) {
                r = out_msg(hb, HB_MAGIC_BEAT, seq++);
                if (!r)
                    __atomic_store_n(&hb->beats_tx, hb->beats_tx + 1, __ATOMIC_RELAXED);
            }
            last_beat = now;
            next_beat = now + hb->p.interval_ms;
        }
        if (!r)
            r = out_flush(hb);
        if (hb->out_len)
            pf[0].events |= POLLOUT;
        pthread_mutex_unlock(&hb->lock);
        if (r < 0) {
            rx.broken = true;
            why_broken(&rx, -r);
            continue; /* drain once more: a TAKEOVER may precede the break */
        }

        /* 4. Sleep until the next beat, the peer's deadline, a message or a wakeup. */
        until = next_beat < rx.last_rx + to + 1 ? next_beat : rx.last_rx + to + 1;
        until = until > now ? until - now : 0;
        if (poll(pf, 2, until > INT_MAX ? INT_MAX : (int)until) < 0 && errno != EINTR) {
            snprintf(why, sizeof(why), "heartbeat poll failed: %s", strerror(errno));
            report_end(hb, HB_EV_LOST, why);
            break;
        }
    }

    pthread_mutex_lock(&hb->lock);
    if (atomic_load(&hb->state) == HB_RUNNING)
        atomic_store(&hb->state, HB_ENDED);
    pthread_cond_broadcast(&hb->cond);
    pthread_mutex_unlock(&hb->lock);
    return NULL;
}

/* ---- API ---- */

int heartbeat_start(struct heartbeat *hb, int fd, const struct hb_params *p, hb_event_fn fn,
                    void *opaque)
{
    int r;

    if (fd < 0)
        return -EBADF;
    if (!p || !fn || !p->interval_ms || p->interval_ms >= p->timeout_ms) {
        r = -EINVAL;
        goto fail;
    }
    hb_once(hb);
    pthread_mutex_lock(&hb->lock);
    if (atomic_load(&hb->state) == HB_ENDED) {
        /* Reap the thread that ended by itself (refused, and -EBUSY, on that thread). */
        pthread_mutex_unlock(&hb->lock);
        heartbeat_stop(hb);
        pthread_mutex_lock(&hb->lock);
    }
    if (atomic_load(&hb->state) != HB_STOPPED) {
        r = -EBUSY;
        goto unlock;
    }
    if (pipe2(hb->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        r = -errno;
        hb->wake[0] = hb->wake[1] = -1;
        goto unlock;
    }
    hb->fd = fd;
    hb->p = *p;
    hb->fn = fn;
    hb->opaque = opaque;
    hb->out_len = 0;
    hb->acks = 0;
    hb->peer_left_reason = 0;
    __atomic_store_n(&hb->beats_rx, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&hb->beats_tx, 0, __ATOMIC_RELAXED);
    atomic_store(&hb->stop, false);
    r = pthread_create(&hb->thread, NULL, hb_thread, hb);
    if (r) {
        r = -r;
        goto close_wake;
    }
    /* Still under the lock: the thread cannot end before it is RUNNING. */
    atomic_store(&hb->state, HB_RUNNING);
    pthread_mutex_unlock(&hb->lock);
    return 0;

close_wake:
    close(hb->wake[0]);
    close(hb->wake[1]);
    hb->wake[0] = hb->wake[1] = hb->fd = -1;
unlock:
    pthread_mutex_unlock(&hb->lock);
fail:
    close(fd);
    return r;
}

int heartbeat_leave(struct heartbeat *hb, uint32_t reason, uint64_t wait_ms)
{
    uint64_t acks, due;
    struct timespec ts;
    int r;

    hb_once(hb);
    pthread_mutex_lock(&hb->lock);
    if (atomic_load(&hb->state) == HB_ENDED) {
        /* No thread reads an ACK any more, but the connection may still carry the LEFT to a
         * peer that is only frozen: it reads it first when it thaws (closed gently). */
        out_msg(hb, HB_MAGIC_LEFT, reason);
        r = -ENOTCONN;
        goto out;
    }
    if (atomic_load(&hb->state) != HB_RUNNING) {
        r = -ENOTCONN;
        goto out;
    }
    if (pthread_equal(pthread_self(), hb->thread)) {
        r = -EDEADLK; /* the ACK would have to be read by this very thread */
        goto out;
    }
    acks = hb->acks; /* any ACK from now on answers a LEFT of ours */
    r = out_msg(hb, HB_MAGIC_LEFT, reason);
    if (r) {
        r = r == -ENOBUFS ? r : -ENOTCONN;
        goto out;
    }
    if (hb->out_len)
        hb_wake(hb); /* the thread sends the rest when the socket has room */
    if (wait_ms > 86400000ULL * 365)
        wait_ms = 86400000ULL * 365;
    due = now_ns() + wait_ms * 1000000ULL;
    ts.tv_sec = (time_t)(due / 1000000000ULL);
    ts.tv_nsec = (long)(due % 1000000000ULL);
    while (hb->acks == acks && atomic_load(&hb->state) == HB_RUNNING)
        if (pthread_cond_timedwait(&hb->cond, &hb->lock, &ts) == ETIMEDOUT)
            break;
    r = hb->acks != acks ? 0 : atomic_load(&hb->state) == HB_RUNNING ? -ETIMEDOUT : -ENOTCONN;
out:
    pthread_mutex_unlock(&hb->lock);
    return r;
}

int heartbeat_send_takeover(struct heartbeat *hb)
{
    int state, r;

    hb_once(hb);
    pthread_mutex_lock(&hb->lock);
    state = atomic_load(&hb->state);
    if (state != HB_RUNNING && state != HB_ENDED) {
        r = -ENOTCONN;
        goto out;
    }
    r = out_msg(hb, HB_MAGIC_TAKEOVER, 0);
    if (!r && hb->out_len && state == HB_RUNNING)
        hb_wake(hb);
out:
    pthread_mutex_unlock(&hb->lock);
    if (r && r != -ENOTCONN)
        log_warn("colo: heartbeat: cannot tell the peer we took over: %s", strerror(-r));
    return r;
}

/* Close so that what we sent last (a LEFT queued for a frozen peer, a TAKEOVER) still reaches
 * it: whatever is owed goes out if it can, and nothing is left unread, since closing a TCP
 * socket with unread data resets the connection and throws away what was not sent yet.
 * Caller holds hb->lock; the thread is joined. */
static void close_gently(struct heartbeat *hb)
{
    char buf[4096];

    (void)out_flush(hb);
    for (int i = 0; i < 64 && recv(hb->fd, buf, sizeof(buf), MSG_DONTWAIT) > 0; i++) {
    }
    close(hb->fd);
}

void heartbeat_stop(struct heartbeat *hb)
{
    hb_once(hb);
    pthread_mutex_lock(&hb->lock);
    if (atomic_load(&hb->state) != HB_STOPPED && pthread_equal(pthread_self(), hb->thread)) {
        pthread_mutex_unlock(&hb->lock);
        log_err("colo: heartbeat_stop called from the heartbeat's own callback: refused");
        return;
    }
    while (atomic_load(&hb->state) == HB_STOPPING) /* another stop: wait for it */
        pthread_cond_wait(&hb->cond, &hb->lock);
    if (atomic_load(&hb->state) == HB_STOPPED) {
        pthread_mutex_unlock(&hb->lock);
        return;
    }
    /* From here no event is reported; one being reported now is waited for by the join. */
    atomic_store(&hb->stop, true);
    atomic_store(&hb->state, HB_STOPPING);
    pthread_cond_broadcast(&hb->cond); /* heartbeat_leave waiters: -ENOTCONN */
    hb_wake(hb);
    pthread_mutex_unlock(&hb->lock);

    pthread_join(hb->thread, NULL);

    pthread_mutex_lock(&hb->lock);
    close_gently(hb);
    close(hb->wake[0]);
    close(hb->wake[1]);
    hb->fd = hb->wake[0] = hb->wake[1] = -1;
    hb->out_len = 0;
    atomic_store(&hb->state, HB_STOPPED);
    pthread_cond_broadcast(&hb->cond);
    pthread_mutex_unlock(&hb->lock);
}

bool heartbeat_running(const struct heartbeat *hb)
{
    return atomic_load(&hb->state) == HB_RUNNING;
}
