/* heartbeat.h: the pair's liveness channel: an authenticated connection of its own, beats both
 * ways, and the few messages that change who runs the VM (LEFT, TAKEOVER).
 *
 * Handshake (heartbeat_handshake), on a fresh connection, before any beat. Every frame is 40
 * bytes: be32 magic, be32 argument, 32 bytes of payload. I = initiator (the side that
 * connected: the primary), R = responder; token = hb_params.token, known to both.
 *
 *     I                                              R
 *     |--- HELLO(version 1, nonce nI) ------------->|   both send HELLO at once
 *     |<-- HELLO(version 1, nonce nR) --------------|
 *     |--- PROOF(mac('i', nR)) -------------------->|   R checks it: a wrong token gets
 *     |<-- PROOF(mac('r', nI))  or  REJECT ---------|   REJECT, and R learns nothing more
 *     I checks R's proof                                 of us than we of it
 *
 *   mac(role, n) = HMAC-SHA256(token, "tandem-colo-hb" || role || n)
 *
 * Each side proves the token on the other side's fresh random nonce (no replay), and the role
 * byte keeps a side's own proof from being reflected back to it. R proves itself only to an I
 * that already proved itself. The handshake reads exactly its frames, so beats that follow
 * at once stay in the socket for the heartbeat thread.
 *
 * Messages after the handshake: 8 bytes, be32 magic + be32 argument.
 *   BEAT(seq)       every interval_ms, both ways; seq counts up from 0
 *   LEFT(reason)    the sender left COLO and goes on alone: the receiver must not take over
 *   LEFT_ACK(0)     the receiver of LEFT recorded it (heartbeat_leave waits for this)
 *   TAKEOVER(0)     the sender (the secondary) runs the VM now
 * Anything else is garbage: the connection is lost (HB_EV_LOST).
 *
 * The thread: each iteration first drains everything readable (so that a stall of this thread
 * is never mistaken for a silent peer), then judges: TAKEOVER -> HB_EV_TOOK_OVER; LEFT ->
 * HB_EV_PEER_LEFT and LEFT_ACK; our own beats stopped for timeout_ms -> HB_EV_SELF_STALLED;
 * connection closed, broken or garbage -> HB_EV_LOST; peer silent for timeout_ms ->
 * HB_EV_LOST. Then it beats if due, and sleeps until the next beat, the deadline or a wakeup.
 * The events run the callback on the heartbeat thread; every terminal one is reported exactly
 * once, and none once heartbeat_stop has begun (one already running is waited for).
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HB_TOKEN_LEN 16

/* Wire magics (ASCII, big endian on the wire). */
enum hb_magic {
    HB_MAGIC_HELLO = 0x4842484c,    /* "HBHL" handshake: version, nonce */
    HB_MAGIC_PROOF = 0x48425046,    /* "HBPF" handshake: 0, HMAC */
    HB_MAGIC_REJECT = 0x4842524a,   /* "HBRJ" handshake: 0, zeros: your proof is wrong */
    HB_MAGIC_BEAT = 0x48424254,     /* "HBBT" seq */
    HB_MAGIC_LEFT = 0x48424c46,     /* "HBLF" reason */
    HB_MAGIC_LEFT_ACK = 0x48424c41, /* "HBLA" 0 */
    HB_MAGIC_TAKEOVER = 0x4842544b, /* "HBTK" 0 */
};
#define HB_VERSION      1
#define HB_NONCE_LEN    32
#define HB_MAC_LEN      32
#define HB_HS_FRAME_LEN (8 + HB_NONCE_LEN) /* every handshake frame */
#define HB_MSG_LEN      8

struct hb_params {
    uint32_t interval_ms, timeout_ms; /* 0 < interval_ms < timeout_ms */
    uint8_t token[HB_TOKEN_LEN];      /* shared secret of the pair */
};

enum hb_event {
    HB_EV_LOST,      /* peer silent for timeout_ms, or the connection closed/broke; thread ends */
    HB_EV_PEER_LEFT, /* peer sent LEFT(reason): it left COLO and goes on alone. The callback must
                        record that (disarm) before returning; the thread then sends LEFT_ACK and
                        keeps beating */
    HB_EV_TOOK_OVER, /* peer sent TAKEOVER: it runs the VM now; thread ends */
    HB_EV_SELF_STALLED, /* our own beats stopped for longer than timeout_ms (this thread or process
                           was frozen): the peer may have judged us lost. Reported after draining
                           what the peer sent meanwhile (a queued LEFT or TAKEOVER is judged
                           first). Not an end: the peer's silence during our stall proves nothing
                           (the host may have stalled), so it gets a fresh timeout from now */
};

/* Runs on the heartbeat thread. why is a sentence for the log, valid during the call only. */
typedef void (*hb_event_fn)(void *opaque, enum hb_event ev, const char *why);

/* All zeros (static storage or = {0}) is a valid stopped heartbeat; never copy or clear one
 * that was started. Everything but the counters belongs to heartbeat.c. */
struct heartbeat {
    atomic_int once;      /* 0, 1 initialising, 2: lock and cond are ready */
    pthread_mutex_t lock; /* state, fds, the output queue, acks */
    pthread_cond_t cond;  /* state changes and LEFT_ACKs (CLOCK_MONOTONIC) */
    atomic_int state;     /* enum in heartbeat.c; 0 = stopped */
    atomic_bool stop;     /* heartbeat_stop began: report nothing more, end */
    pthread_t thread;
    int fd, wake[2]; /* wake: the thread's wakeup pipe (stop, queued output) */
    struct hb_params p;
    hb_event_fn fn;
    void *opaque;
    uint8_t out[64]; /* bytes owed to the peer: a message is never sent in part only */
    size_t out_len;
    uint64_t acks;               /* LEFT_ACKs received */
    uint32_t peer_left_reason;   /* argument of the last LEFT (valid in the PEER_LEFT callback) */
    uint64_t beats_rx, beats_tx; /* written by the thread only; atomic loads to read them live */
};

/* Mutual authentication on a fresh connection, bounded by timeout_ms: both sides prove they know
 * p->token (HMAC-SHA256 over the other side's random nonce and a role byte; gnutls_hmac_fast,
 * gnutls_rnd). initiator = the side that connected (the primary). 0, or -EACCES (wrong token,
 * with err saying so), -ETIMEDOUT, -EPROTO (garbage), -errno. Does not take fd. */
int heartbeat_handshake(int fd, bool initiator, const struct hb_params *p, int timeout_ms,
                        char *err, size_t errlen);
/* Start the thread on an authenticated fd (takes it, also on failure). -EBUSY if this heartbeat
 * is already running; a heartbeat whose thread ended by itself is reaped and started anew.
 * -EINVAL for bad params or no fn. */
int heartbeat_start(struct heartbeat *hb, int fd, const struct hb_params *p, hb_event_fn fn,
                    void *opaque);
/* Send LEFT(reason) and wait up to wait_ms for LEFT_ACK: 0 when acknowledged, -ETIMEDOUT, or
 * -ENOTCONN when the heartbeat is not running / its thread has ended (or the send failed). After
 * the thread ended the LEFT is still queued on the open connection (for a frozen peer).
 * -ENOBUFS when the peer has read nothing for so long that hb->out is full. Any thread but the
 * heartbeat's own (-EDEADLK there). */
int heartbeat_leave(struct heartbeat *hb, uint32_t reason, uint64_t wait_ms);
/* Best effort: tell the peer we took over (sent at once, not waited for). Also after the thread
 * ended by itself, while the connection is still open. 0 when sent (or queued behind bytes
 * already owed), -ENOTCONN when stopped, or -errno (-EPIPE: the peer is gone). */
int heartbeat_send_takeover(struct heartbeat *hb);
/* Stop and join the thread, close every fd. Idempotent; safe after the thread ended by itself.
 * Never from the callback (refused there with an error logged). */
void heartbeat_stop(struct heartbeat *hb);
/* Started, not stopped, and its thread has not ended. */
bool heartbeat_running(const struct heartbeat *hb);
