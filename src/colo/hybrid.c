/* hybrid.c: hybrid COLO's device glue on both sides (see hybrid.h and docs/hybrid.md). */
#include "colo/hybrid.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "colo/colo_int.h"
#include "colo/compare.h"
#include "colo/fault.h"
#include "colo/mirror.h"
#include "colo/rewrite.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/vm.h"
#include "devices/serial.h"
#include "net/tap.h"
#include "net/virtio_net.h"
#include "virtio/iov.h"

#define HOLD_SAMPLES    8192        /* ring of recent hold times, for p99 */
#define CMP_MAX_BYTES   (8u << 20)  /* per NIC, both sides (docs/hybrid.md, "Bounds") */
#define CMP_MAX_CONNS   4096u       /* per NIC */
#define RW_MAX_CONNS    4096u       /* per NIC */
#define RW_MAX_HELD     (1u << 20)  /* per NIC: client frames waiting for the SVM's SYN-ACK */
#define INBOX_MAX_BYTES (16u << 20) /* secondary: mirrored frames waiting for the SVM */

struct qframe {
    struct qframe *next;
    uint64_t gen;
    size_t len;
    uint8_t data[];
};

struct fqueue {
    struct qframe *head, *tail;
    size_t bytes;
};

struct hnic {
    unsigned idx;
    struct virtio_net *n;
    struct colo_compare *cmp;   /* primary */
    struct colo_rewriter *rw;   /* secondary */
    struct fqueue inbox, ready; /* secondary: mirrored as received; rewritten, to inject */
    uint8_t txbuf[MIRROR_FRAME_MAX];
};

static struct hybrid {
    pthread_mutex_t lock; /* everything below but the atomics */
    bool primary, secondary, comparing, taken_over, running;
    struct colo *c;
    struct vm *vm;
    struct mirror link;
    struct hnic nic[COLO_MAX_NICS];
    unsigned nnics;
    atomic_uint_fast64_t gen;       /* primary: closed so far; secondary: the SVM's */
    bool delivering, deliver_again; /* secondary: one thread injects at a time */
    uint64_t closing;               /* primary: the checkpoint held frames are moving into */
    bool deliver_posted;
    /* hold times of PVM frames (µs), compare- and checkpoint-released */
    uint32_t hold[HOLD_SAMPLES];
    uint64_t hold_count, hold_sum_us;
    uint64_t *flushed; /* arrival ns of frames moved to the epoch buffer, not yet released */
    size_t nflushed, capflushed;
    uint64_t svm_dropped, mirrored, mirror_drops, ckpt_released;
    uint64_t rw_in, rw_out;
    struct colo_cmp_stats cmp_done; /* compare counters of engines already freed */
} hy = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ---- small helpers ---- */

static void fq_push(struct fqueue *q, struct qframe *f)
{
    f->next = NULL;
    if (q->tail)
        q->tail->next = f;
    else
        q->head = f;
    q->tail = f;
    q->bytes += f->len;
}

static struct qframe *fq_pop(struct fqueue *q)
{
    struct qframe *f = q->head;

    if (f) {
        q->head = f->next;
        if (!q->head)
            q->tail = NULL;
        q->bytes -= f->len;
    }
    return f;
}

static void fq_push_front(struct fqueue *q, struct qframe *f)
{
    f->next = q->head;
    q->head = f;
    if (!q->tail)
        q->tail = f;
    q->bytes += f->len;
}

static void fq_clear(struct fqueue *q)
{
    struct qframe *f;

    while ((f = fq_pop(q)))
        free(f);
}

static struct qframe *qframe_new(uint64_t gen, const uint8_t *frame, size_t len)
{
    struct qframe *f = malloc(sizeof(*f) + len);

    if (f) {
        f->gen = gen;
        f->len = len;
        memcpy(f->data, frame, len);
    }
    return f;
}

/* hy.lock held */
static void record_hold(uint64_t arrived_ns, uint64_t now)
{
    uint64_t us = now > arrived_ns ? (now - arrived_ns) / 1000 : 0;

    hy.hold[hy.hold_count % HOLD_SAMPLES] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    hy.hold_count++;
    hy.hold_sum_us += us;
}

static enum colo_ckpt_cause cause_of(enum colo_cmp_result r)
{
    return r == COLO_CMP_MISMATCH  ? COLO_CKPT_MISMATCH
           : r == COLO_CMP_TIMEOUT ? COLO_CKPT_TIMEOUT
                                   : COLO_CKPT_QUEUE_FULL;
}

static void note_result(enum colo_cmp_result r, unsigned nic)
{
    if (r == COLO_CMP_OK)
        return;
    log_debug("colo: hybrid: nic %u: %s: checkpoint now", nic,
              r == COLO_CMP_MISMATCH  ? "output differs"
              : r == COLO_CMP_TIMEOUT ? "output unmatched too long"
                                      : "compare queue full");
    colo_request_checkpoint_for(cause_of(r));
}

/* ---- primary ---- */

/* The IPv4 id of a frame (for the per-frame debug log that tests match with a capture), or
 * -1 when it is not IPv4. */
static long ipv4_id(const uint8_t *f, size_t len)
{
    if (len < 34 || f[12] != 0x08 || f[13] != 0x00)
        return -1;
    return (long)(f[18] << 8 | f[19]);
}

/* compare -> the wire (hy.lock held) */
static void release_cb(void *opaque, const uint8_t *frame, size_t len, uint64_t arrived_ns)
{
    struct hnic *h = opaque;
    struct iovec iov = {.iov_base = (void *)frame, .iov_len = len};

    tap_send(&h->n->tap, &iov, 1);
    record_hold(arrived_ns, now_ns());
    log_debug("colo: hybrid: nic %u out id %ld len %zu: compare released it", h->idx,
              ipv4_id(frame, len), len);
}

/* compare -> the closing epoch (hy.lock held, vCPUs paused) */
static void take_cb(void *opaque, const uint8_t *frame, size_t len, uint64_t arrived_ns)
{
    struct hnic *h = opaque;
    struct iovec iov = {.iov_base = (void *)frame, .iov_len = len};

    colo_outbuf_send(&hy.c->outbuf[h->idx], &iov, 1);
    log_debug("colo: hybrid: nic %u out id %ld len %zu: held for checkpoint %llu", h->idx,
              ipv4_id(frame, len), len, (unsigned long long)hy.closing);
    if (hy.nflushed == hy.capflushed) {
        size_t cap = hy.capflushed ? 2 * hy.capflushed : 256;
        uint64_t *nf = realloc(hy.flushed, cap * sizeof(*nf));
        if (!nf)
            return; /* the frame still leaves; only its hold time is not counted */
        hy.flushed = nf;
        hy.capflushed = cap;
    }
    hy.flushed[hy.nflushed++] = arrived_ns;
}

/* The PVM's transmit path (net_output.send). */
static int pvm_send(void *opaque, const struct iovec *iov, int n)
{
    struct hnic *h = opaque;
    enum colo_cmp_result r;
    bool was_idle;
    size_t len;

    pthread_mutex_lock(&hy.lock);
    if (!hy.comparing) {
        pthread_mutex_unlock(&hy.lock);
        return colo_outbuf_send(&hy.c->outbuf[h->idx], iov, n);
    }
    len = iov_to_buf(iov, (unsigned)n, 0, h->txbuf, sizeof(h->txbuf));
    was_idle = colo_compare_next_deadline(h->cmp) == UINT64_MAX;
    r = colo_compare_pvm(h->cmp, h->txbuf, len, now_ns());
    pthread_mutex_unlock(&hy.lock);
    if (r == COLO_CMP_NOMEM) {
        /* Not taken: it waits for the next checkpoint like periodic output, asked for now. */
        struct iovec one = {.iov_base = h->txbuf, .iov_len = len};
        colo_outbuf_send(&hy.c->outbuf[h->idx], &one, 1);
    }
    note_result(r, h->idx);
    if (was_idle)
        colo_kick(); /* the COLO thread waits for the new deadline */
    return (int)len;
}

/* Every frame the PVM's tap delivers goes to the SVM too (vd lock and dev_lock held); the
 * link counts what it sent and dropped. */
static bool pvm_rx_seen(void *opaque, uint8_t *frame, size_t len)
{
    struct hnic *h = opaque;
    struct iovec iov = {.iov_base = frame, .iov_len = len};
    int r = mirror_send(&hy.link, MIRROR_INPUT, h->idx, atomic_load(&hy.gen), &iov, 1);

    if (r == -ENOBUFS) /* the SVM misses an input: it will diverge; resynchronise now */
        colo_request_checkpoint_for(COLO_CKPT_QUEUE_FULL);
    return false;
}

/* The SVM's output, from the link (primary's reader thread). */
static void primary_link_cb(void *opaque, enum mirror_kind kind, unsigned nic, uint64_t gen,
                            uint8_t *frame, size_t len)
{
    enum colo_cmp_result r = COLO_CMP_OK;
    struct hnic *h;
    bool was_idle;

    pthread_mutex_lock(&hy.lock);
    if (kind != MIRROR_OUTPUT || nic >= hy.nnics || !hy.comparing || gen != atomic_load(&hy.gen)) {
        hy.svm_dropped++; /* stale: made before the checkpoint that reset the SVM */
        pthread_mutex_unlock(&hy.lock);
        return;
    }
    h = &hy.nic[nic];
    was_idle = colo_compare_next_deadline(h->cmp) == UINT64_MAX;
    r = colo_compare_svm(h->cmp, frame, len, now_ns());
    pthread_mutex_unlock(&hy.lock);
    note_result(r, nic);
    if (was_idle)
        colo_kick();
}

/* The link broke while comparing: the SVM no longer gets input or sends output, so replication
 * cannot go on; leave COLO by the policy (the secondary, if alive, hears it and disarms). */
static void primary_link_broken(void *opaque, const char *why)
{
    char msg[160];
    bool comparing;

    (void)opaque;
    pthread_mutex_lock(&hy.lock);
    comparing = hy.comparing;
    pthread_mutex_unlock(&hy.lock);
    if (!comparing)
        return;
    snprintf(msg, sizeof(msg), "the hybrid frame link broke (%s)", why);
    colo_request_leave(msg);
}

/* A new session's common state (hy.lock held). */
static void session_reset(struct colo *c, struct vm *vm, bool primary)
{
    hy.primary = primary;
    hy.secondary = !primary;
    hy.taken_over = hy.running = false;
    hy.c = c;
    hy.vm = vm;
    atomic_store(&hy.gen, 0);
    hy.nflushed = 0;
    hy.hold_count = hy.hold_sum_us = 0;
    hy.svm_dropped = hy.mirrored = hy.mirror_drops = hy.ckpt_released = 0;
    hy.rw_in = hy.rw_out = 0;
    memset(&hy.cmp_done, 0, sizeof(hy.cmp_done));
}

int hybrid_primary_start(struct colo *c, struct vm *vm, int link_fd)
{
    struct colo_cmp_config cfg = {.timeout_ns = (uint64_t)c->compare_timeout_ms * 1000000ULL,
                                  .max_bytes = CMP_MAX_BYTES,
                                  .max_conns = CMP_MAX_CONNS};
    int r;

    pthread_mutex_lock(&hy.lock);
    session_reset(c, vm, true);
    hy.nnics = c->nouts;
    for (unsigned i = 0; i < hy.nnics; i++) {
        struct hnic *h = &hy.nic[i];
        h->idx = i;
        h->n = virtio_net_find(vm, i);
        h->cmp = colo_compare_new(&cfg, release_cb, h);
        if (!h->cmp) {
            pthread_mutex_unlock(&hy.lock);
            r = -ENOMEM;
            goto fail;
        }
    }
    hy.comparing = true;
    pthread_mutex_unlock(&hy.lock);
    r = mirror_start(&hy.link, link_fd, primary_link_cb, primary_link_broken, NULL);
    link_fd = -1;
    if (r)
        goto fail;
    for (unsigned i = 0; i < hy.nnics; i++) {
        struct net_output out = {.send = pvm_send, .opaque = &hy.nic[i]};
        struct net_rx_hook hook = {.seen = pvm_rx_seen, .opaque = &hy.nic[i]};
        virtio_net_set_output(hy.nic[i].n, &out);
        virtio_net_set_rx_hook(hy.nic[i].n, &hook);
    }
    log_info("colo: hybrid: comparing the output of %u NIC(s), x-compare-timeout %u ms", hy.nnics,
             c->compare_timeout_ms);
    return 0;

fail:
    if (link_fd >= 0)
        close(link_fd);
    hybrid_primary_stop(c);
    return r;
}

void hybrid_primary_close_gen(uint64_t gen)
{
    pthread_mutex_lock(&hy.lock);
    hy.closing = gen;
    if (hy.comparing) {
        for (unsigned i = 0; i < hy.nnics; i++) {
            struct colo_cmp_stats before, after;
            colo_compare_stats(hy.nic[i].cmp, &before);
            colo_compare_flush(hy.nic[i].cmp, take_cb, &hy.nic[i]);
            colo_compare_stats(hy.nic[i].cmp, &after);
            hy.svm_dropped += after.svm_discarded - before.svm_discarded;
        }
    }
    atomic_store(&hy.gen, gen);
    pthread_mutex_unlock(&hy.lock);
}

void hybrid_primary_released(void)
{
    uint64_t now = now_ns();

    pthread_mutex_lock(&hy.lock);
    for (size_t i = 0; i < hy.nflushed; i++)
        record_hold(hy.flushed[i], now);
    hy.ckpt_released += hy.nflushed;
    hy.nflushed = 0;
    pthread_mutex_unlock(&hy.lock);
}

uint64_t hybrid_primary_deadline(void)
{
    uint64_t d = UINT64_MAX;

    pthread_mutex_lock(&hy.lock);
    for (unsigned i = 0; hy.comparing && i < hy.nnics; i++) {
        uint64_t t = colo_compare_next_deadline(hy.nic[i].cmp);
        if (t < d)
            d = t;
    }
    pthread_mutex_unlock(&hy.lock);
    return d;
}

void hybrid_primary_poll(void)
{
    uint64_t now = now_ns();

    for (unsigned i = 0;; i++) {
        enum colo_cmp_result r;

        pthread_mutex_lock(&hy.lock);
        if (!hy.comparing || i >= hy.nnics) {
            pthread_mutex_unlock(&hy.lock);
            return;
        }
        r = colo_compare_poll(hy.nic[i].cmp, now);
        pthread_mutex_unlock(&hy.lock);
        note_result(r, i);
    }
}

static void add_stats(struct colo_cmp_stats *t, const struct colo_cmp_stats *s)
{
    t->compared += s->compared;
    t->matched += s->matched;
    t->released += s->released;
    t->mismatches += s->mismatches;
    t->timeouts += s->timeouts;
    t->overflows += s->overflows;
    t->svm_discarded += s->svm_discarded;
}

void hybrid_primary_stop(struct colo *c)
{
    bool was;

    pthread_mutex_lock(&hy.lock);
    was = hy.primary;
    hy.primary = false;
    pthread_mutex_unlock(&hy.lock);
    if (!was)
        return;
    /* The output path first: from here on the PVM's frames go to the epoch buffer. */
    for (unsigned i = 0; i < hy.nnics; i++) {
        struct net_output out = {.send = colo_outbuf_send, .opaque = &c->outbuf[i]};
        if (hy.nic[i].n) {
            virtio_net_set_output(hy.nic[i].n, &out);
            virtio_net_set_rx_hook(hy.nic[i].n, NULL);
        }
    }
    mirror_stop(&hy.link);
    /* What the compare still holds joins the epoch buffer, whose fate the policy decides. */
    pthread_mutex_lock(&hy.lock);
    hy.comparing = false;
    hy.closing = UINT64_MAX; /* logged as such: the leaving policy decides */
    for (unsigned i = 0; i < hy.nnics; i++) {
        struct colo_cmp_stats s;
        if (!hy.nic[i].cmp)
            continue;
        colo_compare_flush(hy.nic[i].cmp, take_cb, &hy.nic[i]);
        colo_compare_stats(hy.nic[i].cmp, &s);
        add_stats(&hy.cmp_done, &s);
        colo_compare_free(hy.nic[i].cmp);
        hy.nic[i].cmp = NULL;
    }
    hy.nflushed = 0; /* released or discarded by the policy: no hold time */
    pthread_mutex_unlock(&hy.lock);
}

/* ---- secondary ---- */

static void post_deliver(void);

/* rewriter -> ready queue (hy.lock held) */
static void ready_cb(void *opaque, uint8_t *frame, size_t len)
{
    struct hnic *h = opaque;
    struct qframe *f = qframe_new(atomic_load(&hy.gen), frame, len);

    if (f)
        fq_push(&h->ready, f);
}

/* Move what the SVM may have now from each inbox through the rewriter (hy.lock held). */
static void inbox_to_ready(void)
{
    uint64_t gen = atomic_load(&hy.gen);

    for (unsigned i = 0; i < hy.nnics; i++) {
        struct hnic *h = &hy.nic[i];
        struct qframe *f;
        while ((f = h->inbox.head) && (hy.taken_over || (hy.running && f->gen <= gen))) {
            fq_pop(&h->inbox);
            if (f->gen >= gen || hy.taken_over) {
                hy.rw_in++;
                colo_rewrite_in(h->rw, f->data, f->len, ready_cb, h);
            }
            free(f); /* older than the SVM's checkpoint: already in its state */
        }
    }
}

/* Inject ready frames until the SVM has no room; one thread at a time (another that finds it
 * busy leaves the work to it), so frames go in in order. Not from inside a device handler. */
static void deliver_now(void)
{
    pthread_mutex_lock(&hy.lock);
    if (hy.delivering) {
        hy.deliver_again = true;
        pthread_mutex_unlock(&hy.lock);
        return;
    }
    hy.delivering = true;
    do {
        hy.deliver_again = false;
        inbox_to_ready();
        for (unsigned i = 0; i < hy.nnics && hy.secondary; i++) {
            struct hnic *h = &hy.nic[i];
            struct qframe *f;
            while ((hy.running || hy.taken_over) && (f = fq_pop(&h->ready))) {
                int r;
                pthread_mutex_unlock(&hy.lock);
                r = virtio_net_inject(h->n, f->data, f->len);
                pthread_mutex_lock(&hy.lock);
                if (r == -ENOBUFS || r == -EAGAIN) {
                    fq_push_front(&h->ready, f); /* ready() comes when there is room */
                    break;
                }
                free(f);
            }
        }
    } while (hy.deliver_again);
    hy.delivering = false;
    pthread_mutex_unlock(&hy.lock);
}

/* On the main loop, posted from where injecting is not allowed (device handlers). */
static void deliver_cb(void *opaque)
{
    (void)opaque;
    pthread_mutex_lock(&hy.lock);
    hy.deliver_posted = false;
    pthread_mutex_unlock(&hy.lock);
    deliver_now();
}

static void post_deliver(void)
{
    pthread_mutex_lock(&hy.lock);
    if (!hy.deliver_posted && hy.vm && loop_call(hy.vm->loop, deliver_cb, NULL) == 0)
        hy.deliver_posted = true;
    pthread_mutex_unlock(&hy.lock);
}

/* net_input.ready: the SVM's driver may have posted buffers (device lock held). */
static void svm_rx_ready(void *opaque)
{
    (void)opaque;
    post_deliver();
}

/* Mirrored input from the primary (secondary's reader thread). */
static void secondary_link_cb(void *opaque, enum mirror_kind kind, unsigned nic, uint64_t gen,
                              uint8_t *frame, size_t len)
{
    struct qframe *f;
    bool drop;

    (void)opaque;
    pthread_mutex_lock(&hy.lock);
    drop = kind != MIRROR_INPUT || nic >= hy.nnics || gen < atomic_load(&hy.gen) ||
           hy.nic[nic].inbox.bytes + len > INBOX_MAX_BYTES;
    f = drop ? NULL : qframe_new(gen, frame, len);
    if (f)
        fq_push(&hy.nic[nic].inbox, f);
    else
        hy.mirror_drops++;
    if (f)
        hy.mirrored++;
    pthread_mutex_unlock(&hy.lock);
    if (f)
        deliver_now(); /* from the reader thread itself: no hop through the main loop */
}

/* The SVM's transmit path: rewritten into the PVM's sequence space, to the primary (or, after a
 * takeover, to our tap). */
static int svm_send(void *opaque, const struct iovec *iov, int n)
{
    struct hnic *h = opaque;
    struct iovec one;
    size_t len = iov_to_buf(iov, (unsigned)n, 0, h->txbuf, sizeof(h->txbuf));
    bool local, more;
    uint64_t gen;
    int r;

    pthread_mutex_lock(&hy.lock);
    hy.rw_out++;
    colo_rewrite_out(h->rw, h->txbuf, len);
    local = hy.taken_over;
    gen = atomic_load(&hy.gen);
    more = h->ready.head != NULL; /* the rewriter let held client frames go */
    pthread_mutex_unlock(&hy.lock);
    if (more)
        post_deliver();
    one = (struct iovec){.iov_base = h->txbuf, .iov_len = len};
    if (local)
        return tap_send(&h->n->tap, &one, 1);
    if (colo_fault_point("s-link-send", gen) == COLO_FAULT_BADMSG)
        mirror_send(&hy.link, (enum mirror_kind)9, h->idx, gen, &one, 1); /* garbage for tests */
    r = mirror_send(&hy.link, MIRROR_OUTPUT, h->idx, gen, &one, 1);
    return r ? r : (int)len;
}

/* After a takeover: frames from our own tap, rewritten in place for the connections that
 * still need it. */
static void inplace_cb(void *opaque, uint8_t *frame, size_t len)
{
    bool *delivered = opaque;

    (void)frame;
    (void)len;
    *delivered = true;
}

static bool tap_rx_rewrite(void *opaque, uint8_t *frame, size_t len)
{
    struct hnic *h = opaque;
    bool delivered = false;

    pthread_mutex_lock(&hy.lock);
    colo_rewrite_in(h->rw, frame, len, inplace_cb, &delivered);
    pthread_mutex_unlock(&hy.lock);
    return delivered; /* a frame the rewriter keeps goes in as it is, and again later */
}

static int mute(void *opaque, const struct iovec *iov, int n)
{
    size_t len = 0;

    (void)opaque;
    for (int i = 0; i < n; i++)
        len += iov[i].iov_len;
    return (int)len;
}

int hybrid_secondary_start(struct colo *c, struct vm *vm, int link_fd)
{
    struct serial_state *con = serial_find(vm);
    unsigned long *scratch;
    int r;

    pthread_mutex_lock(&hy.lock);
    session_reset(c, vm, false);
    hy.nnics = 0;
    for (unsigned i = 0; i < COLO_MAX_NICS; i++) {
        struct hnic *h = &hy.nic[i];
        struct virtio_net *n = virtio_net_find(vm, i);
        if (!n)
            break;
        h->idx = i;
        h->n = n;
        if (h->rw)
            colo_rewriter_free(h->rw); /* a previous session's */
        fq_clear(&h->inbox);
        fq_clear(&h->ready);
        h->rw = colo_rewriter_new(RW_MAX_CONNS, RW_MAX_HELD);
        if (!h->rw) {
            pthread_mutex_unlock(&hy.lock);
            close(link_fd);
            hybrid_secondary_stop();
            return -ENOMEM;
        }
        hy.nnics = i + 1;
    }
    pthread_mutex_unlock(&hy.lock);
    r = mirror_start(&hy.link, link_fd, secondary_link_cb, NULL, NULL);
    if (r) {
        hybrid_secondary_stop();
        return r;
    }
    for (unsigned i = 0; i < hy.nnics; i++) {
        struct net_input in = {.ready = svm_rx_ready, .opaque = &hy.nic[i]};
        struct net_output out = {.send = svm_send, .opaque = &hy.nic[i]};
        virtio_net_set_input(hy.nic[i].n, &in);
        virtio_net_set_output(hy.nic[i].n, &out);
    }
    if (con)
        serial_set_output(con, mute, NULL); /* the PVM's console is the one that speaks */
    r = vm_dirty_log_start(vm);
    if (r) {
        log_err("colo: hybrid: secondary: cannot log dirty pages: %s", strerror(-r));
        hybrid_secondary_stop();
        return r;
    }
    scratch = calloc((vm->mem.size / PAGE_SIZE + 63) / 64, sizeof(unsigned long));
    if (scratch) {
        vm_dirty_harvest(vm, scratch); /* start from a clean log */
        free(scratch);
    }
    /* The standby's user pause (incoming) becomes the COLO thread's: the SVM runs from here. */
    pthread_mutex_lock(&vm->lock);
    r = vm->user_paused;
    vm->user_paused = false;
    pthread_mutex_unlock(&vm->lock);
    if (!r)
        vm_pause(vm);
    hybrid_secondary_resume(vm, 0, false);
    log_info("colo: hybrid: secondary VM running on mirrored input (%u NIC(s))", hy.nnics);
    return 0;
}

int hybrid_secondary_pause(struct vm *vm, unsigned long *bitmap)
{
    long r;

    pthread_mutex_lock(&hy.lock);
    hy.running = false;
    pthread_mutex_unlock(&hy.lock);
    virtio_stop_all(vm); /* waits for a device handler in progress (an injection) */
    vm_pause(vm);
    pthread_mutex_lock(&vm->dev_lock);
    r = vm_dirty_harvest(vm, bitmap);
    pthread_mutex_unlock(&vm->dev_lock);
    return r < 0 ? (int)r : 0;
}

void hybrid_secondary_resume(struct vm *vm, uint64_t gen, bool applied)
{
    size_t words = (vm->mem.size / PAGE_SIZE + 63) / 64;
    unsigned long *scratch = applied ? calloc(words, sizeof(unsigned long)) : NULL;

    pthread_mutex_lock(&hy.lock);
    if (applied) {
        atomic_store(&hy.gen, gen);
        for (unsigned i = 0; i < hy.nnics; i++) {
            colo_rewriter_flush(hy.nic[i].rw); /* the SVM is the PVM again: offsets are 0 */
            /* Rewritten frames of the old generation are in the checkpoint already. */
            fq_clear(&hy.nic[i].ready);
        }
    }
    hy.running = true;
    pthread_mutex_unlock(&hy.lock);
    if (scratch) {
        /* The apply's own writes are not the SVM's: the next bitmap starts here. */
        pthread_mutex_lock(&vm->dev_lock);
        vm_dirty_harvest(vm, scratch);
        pthread_mutex_unlock(&vm->dev_lock);
        free(scratch);
    }
    virtio_cont_all(vm);
    vm_resume(vm);
    post_deliver();
}

void hybrid_secondary_takeover(struct vm *vm)
{
    struct serial_state *con = serial_find(vm);
    bool was_running;

    pthread_mutex_lock(&hy.lock);
    was_running = hy.running;
    hy.taken_over = true; /* every mirrored frame left goes in, whatever its generation */
    pthread_mutex_unlock(&hy.lock);
    mirror_stop(&hy.link);
    if (!was_running)
        hybrid_secondary_resume(vm, 0, false); /* a checkpoint had stopped it: on it goes */
    deliver_now();
    for (unsigned i = 0; i < hy.nnics; i++) {
        struct net_rx_hook hook = {.seen = tap_rx_rewrite, .opaque = &hy.nic[i]};
        struct colo_rw_stats rs;
        colo_rewriter_stats(hy.nic[i].rw, &rs);
        /* Connections opened since the last checkpoint keep their offsets for good. */
        if (rs.conns_offset)
            virtio_net_set_rx_hook(hy.nic[i].n, &hook);
        virtio_net_set_input(hy.nic[i].n, NULL);
    }
    if (con)
        serial_set_output(con, NULL, NULL);
    vm_dirty_log_stop(vm);
}

void hybrid_secondary_stop(void)
{
    pthread_mutex_lock(&hy.lock);
    hy.secondary = false;
    pthread_mutex_unlock(&hy.lock);
    mirror_stop(&hy.link);
}

/* ---- status ---- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

void hybrid_query(struct hybrid_stats *st)
{
    static uint32_t sorted[HOLD_SAMPLES];
    struct colo_cmp_stats cs = {0};
    uint64_t n;

    memset(st, 0, sizeof(*st));
    pthread_mutex_lock(&hy.lock);
    st->active = hy.primary || hy.secondary;
    add_stats(&cs, &hy.cmp_done);
    for (unsigned i = 0; hy.primary && i < hy.nnics; i++) {
        struct colo_cmp_stats s;
        if (!hy.nic[i].cmp)
            continue;
        colo_compare_stats(hy.nic[i].cmp, &s);
        add_stats(&cs, &s);
    }
    st->compared = cs.compared;
    st->matched = cs.matched;
    st->released = cs.released + hy.ckpt_released;
    st->mismatches = cs.mismatches;
    st->timeouts = cs.timeouts;
    st->overflows = cs.overflows;
    st->svm_dropped = hy.svm_dropped;
    st->mirrored = hy.mirrored;
    st->mirror_drops = hy.mirror_drops;
    if (!hy.secondary) {
        /* a primary's link carries input frames only: its counters are the mirror's */
        pthread_mutex_lock(&hy.link.lock);
        st->mirrored = hy.link.sent;
        st->mirror_drops = hy.link.dropped;
        pthread_mutex_unlock(&hy.link.lock);
    }
    st->rewritten_in = hy.rw_in;
    st->rewritten_out = hy.rw_out;
    for (unsigned i = 0; hy.secondary && i < hy.nnics; i++) {
        struct colo_rw_stats rs;
        if (!hy.nic[i].rw)
            continue;
        colo_rewriter_stats(hy.nic[i].rw, &rs);
        st->rewrite_conns += rs.conns_offset;
    }
    st->hold_count = hy.hold_count;
    st->hold_mean_us = hy.hold_count ? hy.hold_sum_us / hy.hold_count : 0;
    n = hy.hold_count < HOLD_SAMPLES ? hy.hold_count : HOLD_SAMPLES;
    memcpy(sorted, hy.hold, n * sizeof(uint32_t));
    pthread_mutex_unlock(&hy.lock);
    if (n) {
        qsort(sorted, n, sizeof(sorted[0]), cmp_u32);
        st->hold_p99_us = sorted[(n * 99 + 99) / 100 - 1];
    }
}
