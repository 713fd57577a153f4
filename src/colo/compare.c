/* compare.c: colo-compare: per-connection queues of PVM and SVM frames, released on a match.
 *
 * Every held frame is on one global list in arrival order (flush order; its head is the oldest,
 * so the timeout is O(1)) and, unless it was held in the full state, on its connection's PVM or
 * SVM queue, also in arrival order. A connection's PVM frames leave from the head of its queue
 * only, so a connection's frames never overtake each other.
 *
 * TCP (per connection; only the VM's sending direction passes here):
 *   cmp_seq: every stream position before it is verified equal on both sides. A FIN takes one
 *   position of its own: a FIN on one side where the other has a byte is a MISMATCH.
 *   Start: the PVM's SYN (or SYN-ACK) sets cmp_seq = ISN + 1 + its payload. Without a SYN since
 *   the flush (the connection predates the checkpoint) cmp_seq = the later of the first
 *   sequence number each side sent. That is safe: after a checkpoint both guests hold the same
 *   send state, and TCP never skips past snd_nxt, so every position before either side's first
 *   segment was sent before the checkpoint; its retransmission is identical on the SVM, whose
 *   send buffer is a copy of the PVM's. (SYN and RST segments do not count as "first".)
 *   Compare: the PVM segment and the SVM segment that cover cmp_seq are compared over their
 *   overlap and cmp_seq moves on, so the two sides may cut the stream differently. SVM segments
 *   wholly before cmp_seq are retransmissions or compared already: used up, unchecked. An SVM
 *   segment more than COLO_CMP_TCP_MAX_SKEW from cmp_seq is a MISMATCH (not the same stream).
 *   Release, from the head of the connection's PVM queue, when:
 *     - data or FIN: its whole range (FIN included) lies before cmp_seq;
 *     - SYN / SYN-ACK: the SVM sent a SYN with the same SYN/ACK flags, ack and payload (TFO);
 *       its sequence number is its own ISN and is not compared. Otherwise MISMATCH;
 *     - RST: the SVM sent an RST on this connection too;
 *     - pure ACK: nothing more;
 *     - and always, if it carries ACK: ack <= the highest ack the SVM has sent on the
 *       connection (the ack bound), so the client never sees an ack for data the SVM lacks.
 *   SVM segments without payload or FIN (pure ACKs, SYNs, RSTs) are used at once: they only
 *   raise the SVM's ack and record its SYN/RST.
 *
 * Where QEMU (net/colo-compare.c, colo_compare_tcp/colo_mark_tcp_pkt) differs, and why:
 *   - QEMU releases every PVM segment without payload (SYN, SYN-ACK, pure ACK, FIN, RST) at
 *     once, unchecked. Here they wait for the SVM: the ack bound for all, the same SYN, the
 *     FIN at the same position, an RST of its own: a client must not learn of a connection
 *     state the SVM would not have after a failover.
 *   - QEMU releases a matched data segment only if ack <= min(PVM's max ack, SVM's max ack)
 *     (the first term always holds: the segment's own ack is among the PVM's) and otherwise
 *     declares a mismatch at once. Here the same bound makes the segment wait: an SVM that acks
 *     later is lagging, not diverging; the timeout catches one that never acks.
 *   - QEMU keeps the queues sorted by seq and starts comparing without knowing where the
 *     streams begin; here PVM frames keep their arrival order and the start is derived above.
 *   - QEMU drops packets past its queue limit (PVM output too) and clears the whole table,
 *     queued packets included, at 16384 connections. Here a PVM frame is never dropped.
 *
 * UDP, ICMP, other IPv4: as QEMU: the oldest PVM frame is searched for among the connection's
 * SVM frames (so an SVM ahead may reorder), and none equal while SVM frames wait is a MISMATCH.
 */
#include "colo/compare.h"

#include <stdlib.h>
#include <string.h>

#include "core/mix.h"
#include "migration/be.h"

#define ETH_HLEN      14
#define ETH_P_IPV4    0x0800
#define IPPROTO_ICMP_ 1
#define IPPROTO_TCP_  6
#define IPPROTO_UDP_  17
#define TH_FIN        0x01
#define TH_SYN        0x02
#define TH_RST        0x04
#define TH_ACK        0x10

#define EVICT_SCAN    64 /* least recently used connections looked at for an idle one */
#define HIST_SUB_BITS 3  /* 8 buckets per power of two: < 12.5% wide */
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_BUCKETS  ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

enum pkt_kind { PK_PASS = 0, PK_TCP, PK_DGRAM };

struct key {
    uint32_t src, dst;
    uint16_t sport, dport; /* ICMP: sport is the echo id */
    uint8_t proto;
};

/* What parse() learned of a frame; offsets are into the frame. */
struct pkt {
    enum pkt_kind kind;
    struct key key;
    uint32_t pay_off, pay_len; /* compared bytes: TCP/UDP payload, ICMP or other: L4 */
    uint32_t seq, ack;
    uint8_t flags; /* TCP */
    bool icmp;     /* skip bytes 2..3 (the checksum) of the compared bytes */
};

struct frame {
    struct frame *gprev, *gnext; /* global arrival order */
    struct frame *cprev, *cnext; /* its connection's queue (same side) */
    struct conn *conn;           /* NULL: held uncompared in the full state */
    uint64_t arrived_ns;
    size_t len;
    struct pkt p;
    bool pvm, timed_out;
    uint8_t data[];
};

struct fifo {
    struct frame *head, *tail;
};

struct tcp_track {
    bool synced;           /* cmp_seq is known */
    bool have_p0, have_s0; /* first non-SYN, non-RST seq of each side */
    bool svm_ack_known, svm_syn, svm_rst;
    uint8_t svm_syn_flags;    /* SYN, or SYN|ACK */
    uint32_t cmp_seq, p0, s0; /* see the top of the file */
    uint32_t svm_max_ack, svm_syn_ack, svm_syn_len;
    uint64_t svm_syn_hash; /* FNV-1a of the SVM SYN's payload */
};

struct conn {
    struct conn *hnext;         /* hash chain */
    struct conn *lprev, *lnext; /* LRU order while in use; lnext links the free list */
    struct key key;
    struct fifo pq, sq; /* PVM and SVM frames */
    bool diverged;      /* MISMATCH reported: hold everything until the flush */
    struct tcp_track t;
};

struct colo_compare {
    struct colo_cmp_config cfg;
    colo_cmp_out_fn release;
    void *opaque;
    struct frame *ghead, *gtail;
    size_t held_bytes, held_frames;
    bool full;
    struct conn *pool, *free_list, *lru_head, *lru_tail;
    size_t nconns;
    struct conn **buckets;
    size_t nbuckets; /* a power of two */
    struct colo_cmp_stats st;
    uint64_t hist[HIST_BUCKETS];
};

static bool seq_after(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) > 0;
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* ICMP types whose bytes 4..5 are an identifier (echo, timestamp, information, mask). */
static bool icmp_has_id(uint8_t type)
{
    return type == 0 || type == 8 || (type >= 13 && type <= 18);
}

/* The frame is the guest's and hostile: every length is checked before it is used. */
static void parse(const uint8_t *f, size_t len, struct pkt *p)
{
    memset(p, 0, sizeof(*p)); /* PK_PASS */
    if (len < ETH_HLEN + 20 || be16_load(f + 12) != ETH_P_IPV4)
        return;
    const uint8_t *ip = f + ETH_HLEN;
    size_t ihl = (size_t)(ip[0] & 0xf) * 4, tot = be16_load(ip + 2);
    if ((ip[0] >> 4) != 4 || ihl < 20 || tot < ihl || tot > len - ETH_HLEN)
        return; /* the Ethernet padding past tot is ignored */
    if (be16_load(ip + 6) & 0x3fff)
        return; /* MF or a fragment offset: fragments are not reassembled */
    size_t l4 = ETH_HLEN + ihl, l4len = tot - ihl;
    struct pkt q = {.key = {.src = be32_load(ip + 12), .dst = be32_load(ip + 16), .proto = ip[9]}};

    switch (q.key.proto) {
    case IPPROTO_TCP_: {
        if (l4len < 20)
            return;
        size_t doff = (size_t)(f[l4 + 12] >> 4) * 4;
        if (doff < 20 || doff > l4len)
            return;
        q.key.sport = be16_load(f + l4);
        q.key.dport = be16_load(f + l4 + 2);
        q.seq = be32_load(f + l4 + 4);
        q.ack = be32_load(f + l4 + 8);
        q.flags = f[l4 + 13];
        q.pay_off = (uint32_t)(l4 + doff);
        q.pay_len = (uint32_t)(l4len - doff);
        q.kind = PK_TCP;
        break;
    }
    case IPPROTO_UDP_:
        if (l4len < 8)
            return;
        q.key.sport = be16_load(f + l4);
        q.key.dport = be16_load(f + l4 + 2);
        q.pay_off = (uint32_t)(l4 + 8);
        q.pay_len = (uint32_t)(l4len - 8);
        q.kind = PK_DGRAM;
        break;
    case IPPROTO_ICMP_:
        if (l4len < 4)
            return;
        if (l4len >= 8 && icmp_has_id(f[l4]))
            q.key.sport = be16_load(f + l4 + 4);
        q.icmp = true;
        q.pay_off = (uint32_t)l4;
        q.pay_len = (uint32_t)l4len;
        q.kind = PK_DGRAM;
        break;
    default:
        q.pay_off = (uint32_t)l4;
        q.pay_len = (uint32_t)l4len;
        q.kind = PK_DGRAM;
        break;
    }
    *p = q;
}

/* ---- connections ---- */

static bool key_eq(const struct key *a, const struct key *b)
{
    return a->src == b->src && a->dst == b->dst && a->sport == b->sport && a->dport == b->dport &&
           a->proto == b->proto;
}

static size_t key_hash(const struct colo_compare *c, const struct key *k)
{
    uint64_t a = (uint64_t)k->src << 32 | k->dst;
    uint64_t b = (uint64_t)k->sport << 24 | (uint64_t)k->dport << 8 | k->proto;

    return (size_t)(mix64(mix64(a ^ c->cfg.hash_seed) ^ b) & (c->nbuckets - 1));
}

static void lru_unlink(struct colo_compare *c, struct conn *x)
{
    *(x->lprev ? &x->lprev->lnext : &c->lru_head) = x->lnext;
    *(x->lnext ? &x->lnext->lprev : &c->lru_tail) = x->lprev;
    x->lprev = x->lnext = NULL;
}

static void lru_append(struct colo_compare *c, struct conn *x)
{
    x->lprev = c->lru_tail;
    x->lnext = NULL;
    *(c->lru_tail ? &c->lru_tail->lnext : &c->lru_head) = x;
    c->lru_tail = x;
}

static void unhash(struct colo_compare *c, struct conn *x)
{
    struct conn **pp = &c->buckets[key_hash(c, &x->key)];

    while (*pp != x)
        pp = &(*pp)->hnext;
    *pp = x->hnext;
}

/* A free connection, or the least recently used idle one (no frames, not diverged). */
static struct conn *conn_alloc(struct colo_compare *c)
{
    struct conn *x = c->free_list;
    int n = 0;

    if (x) {
        c->free_list = x->lnext;
        return x;
    }
    for (x = c->lru_head; x && n < EVICT_SCAN; x = x->lnext, n++) {
        if (!x->pq.head && !x->sq.head && !x->diverged) {
            unhash(c, x);
            lru_unlink(c, x);
            c->nconns--;
            return x;
        }
    }
    return NULL;
}

/* The connection of key, created if need be; NULL when the table is full of busy ones. */
static struct conn *conn_get(struct colo_compare *c, const struct key *key)
{
    size_t h = key_hash(c, key);
    struct conn *x;

    for (x = c->buckets[h]; x; x = x->hnext) {
        if (key_eq(&x->key, key)) {
            lru_unlink(c, x);
            lru_append(c, x);
            return x;
        }
    }
    x = conn_alloc(c);
    if (!x)
        return NULL;
    memset(x, 0, sizeof(*x));
    x->key = *key;
    x->hnext = c->buckets[h];
    c->buckets[h] = x;
    lru_append(c, x);
    c->nconns++;
    return x;
}

/* ---- held frames ---- */

static void fifo_append(struct fifo *q, struct frame *f)
{
    f->cprev = q->tail;
    f->cnext = NULL;
    *(q->tail ? &q->tail->cnext : &q->head) = f;
    q->tail = f;
}

static void hold(struct colo_compare *c, struct frame *f, struct conn *conn)
{
    f->gprev = c->gtail;
    f->gnext = NULL;
    *(c->gtail ? &c->gtail->gnext : &c->ghead) = f;
    c->gtail = f;
    f->conn = conn;
    if (conn)
        fifo_append(f->pvm ? &conn->pq : &conn->sq, f);
    c->held_bytes += f->len;
    c->held_frames++;
}

static void unhold(struct colo_compare *c, struct frame *f)
{
    *(f->gprev ? &f->gprev->gnext : &c->ghead) = f->gnext;
    *(f->gnext ? &f->gnext->gprev : &c->gtail) = f->gprev;
    if (f->conn) {
        struct fifo *q = f->pvm ? &f->conn->pq : &f->conn->sq;

        *(f->cprev ? &f->cprev->cnext : &q->head) = f->cnext;
        *(f->cnext ? &f->cnext->cprev : &q->tail) = f->cprev;
    }
    c->held_bytes -= f->len;
    c->held_frames--;
}

static struct frame *frame_new(const uint8_t *data, size_t len, const struct pkt *p, bool pvm,
                               uint64_t now_ns)
{
    struct frame *f;

    if (len > SIZE_MAX - sizeof(*f))
        return NULL;
    f = malloc(sizeof(*f) + len);
    if (!f)
        return NULL;
    memset(f, 0, sizeof(*f));
    memcpy(f->data, data, len);
    f->len = len;
    f->p = *p;
    f->pvm = pvm;
    f->arrived_ns = now_ns;
    return f;
}

static unsigned hist_index(uint64_t v)
{
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned sub = (unsigned)(v >> (msb - HIST_SUB_BITS)) & (HIST_SUB - 1);
    return (msb - HIST_SUB_BITS + 1) * HIST_SUB + sub;
}

/* The largest value of bucket i. */
static uint64_t hist_upper(unsigned i)
{
    if (i < HIST_SUB)
        return i;
    unsigned shift = i / HIST_SUB - 1;
    uint64_t lo = (uint64_t)(HIST_SUB + i % HIST_SUB) << shift;
    return lo + ((1ull << shift) - 1);
}

/* A matched PVM frame leaves. */
static void release_frame(struct colo_compare *c, struct frame *f, uint64_t now_ns)
{
    uint64_t held = now_ns > f->arrived_ns ? now_ns - f->arrived_ns : 0;

    unhold(c, f);
    if (c->release)
        c->release(c->opaque, f->data, f->len, f->arrived_ns);
    c->st.released++;
    c->st.matched++;
    c->st.compared++;
    c->st.hold_count++;
    c->st.hold_ns_sum += held;
    if (held > c->st.hold_ns_max)
        c->st.hold_ns_max = held;
    c->hist[hist_index(held)]++;
    free(f);
}

static void svm_used(struct colo_compare *c, struct frame *f)
{
    unhold(c, f);
    c->st.svm_matched++;
    free(f);
}

/* ---- UDP, ICMP, other IPv4 ---- */

static bool dgram_equal(const struct frame *a, const struct frame *b)
{
    const uint8_t *x = a->data + a->p.pay_off, *y = b->data + b->p.pay_off;
    size_t n = a->p.pay_len;

    if (n != b->p.pay_len)
        return false;
    if (a->p.icmp) /* parse: n >= 4 */
        return !memcmp(x, y, 2) && !memcmp(x + 4, y + 4, n - 4);
    return !memcmp(x, y, n);
}

static enum colo_cmp_result dgram_run(struct colo_compare *c, struct conn *conn, uint64_t now_ns)
{
    while (conn->pq.head && conn->sq.head) {
        struct frame *p = conn->pq.head, *s;

        for (s = conn->sq.head; s; s = s->cnext)
            if (dgram_equal(p, s))
                break;
        if (!s)
            return COLO_CMP_MISMATCH;
        svm_used(c, s);
        release_frame(c, p, now_ns);
    }
    return COLO_CMP_OK;
}

/* ---- TCP ---- */

/* One past the last stream position of f (a FIN takes one). */
static uint32_t seg_end(const struct frame *f)
{
    return f->p.seq + f->p.pay_len + (f->p.flags & TH_FIN ? 1u : 0u);
}

static bool covers(const struct frame *f, uint32_t pos)
{
    return !seq_after(f->p.seq, pos) && seq_after(seg_end(f), pos);
}

static bool far(uint32_t a, uint32_t b)
{
    int32_t d = (int32_t)(a - b);
    return d > (int32_t)COLO_CMP_TCP_MAX_SKEW || d < -(int32_t)COLO_CMP_TCP_MAX_SKEW;
}

static void tcp_pvm_arrive(struct tcp_track *t, const struct frame *f)
{
    if (f->p.flags & TH_SYN) {
        if (!t->synced) { /* a new connection: its stream starts after the SYN */
            t->cmp_seq = f->p.seq + 1 + f->p.pay_len;
            t->synced = true;
        }
    } else if (!(f->p.flags & TH_RST) && !t->have_p0) {
        t->p0 = f->p.seq;
        t->have_p0 = true;
    }
}

/* Records what an SVM segment says; true if it must be held (it carries payload or a FIN). */
static bool tcp_svm_arrive(struct tcp_track *t, const uint8_t *frame, const struct pkt *p)
{
    if ((p->flags & TH_ACK) && (!t->svm_ack_known || seq_after(p->ack, t->svm_max_ack))) {
        t->svm_max_ack = p->ack;
        t->svm_ack_known = true;
    }
    if (p->flags & TH_SYN) { /* the latest SYN counts (a retransmission is the same) */
        t->svm_syn = true;
        t->svm_syn_flags = p->flags & (TH_SYN | TH_ACK);
        t->svm_syn_ack = p->flags & TH_ACK ? p->ack : 0;
        t->svm_syn_len = p->pay_len;
        t->svm_syn_hash = fnv1a(frame + p->pay_off, p->pay_len);
        return false;
    }
    if (p->flags & TH_RST) {
        t->svm_rst = true;
        return false;
    }
    if (!t->have_s0) {
        t->s0 = p->seq;
        t->have_s0 = true;
    }
    return p->pay_len || (p->flags & TH_FIN);
}

/* Moves cmp_seq over every position both sides have sent, comparing them. */
static enum colo_cmp_result tcp_advance(struct colo_compare *c, struct conn *conn)
{
    struct tcp_track *t = &conn->t;

    for (;;) {
        struct frame *p = NULL, *s = NULL, *f, *next;

        for (f = conn->sq.head; f; f = next) {
            next = f->cnext;
            if (far(f->p.seq, t->cmp_seq))
                return COLO_CMP_MISMATCH;
            if (!seq_after(seg_end(f), t->cmp_seq))
                svm_used(c, f); /* compared already, or a retransmission */
            else if (!s && covers(f, t->cmp_seq))
                s = f;
        }
        for (f = conn->pq.head; f && !p; f = f->cnext)
            if (!(f->p.flags & (TH_SYN | TH_RST)) && covers(f, t->cmp_seq))
                p = f;
        if (!p || !s)
            return COLO_CMP_OK;

        uint32_t po = t->cmp_seq - p->p.seq, so = t->cmp_seq - s->p.seq;
        bool pfin = po == p->p.pay_len, sfin = so == s->p.pay_len; /* covers(): FIN there */
        if (pfin || sfin) {
            if (!(pfin && sfin))
                return COLO_CMP_MISMATCH; /* FIN against a byte */
            t->cmp_seq++;
            continue;
        }
        uint32_t n = p->p.pay_len - po < s->p.pay_len - so ? p->p.pay_len - po : s->p.pay_len - so;
        if (memcmp(p->data + p->p.pay_off + po, s->data + s->p.pay_off + so, n))
            return COLO_CMP_MISMATCH;
        t->cmp_seq += n;
    }
}

/* Releases the connection's PVM segments from the head while the rules allow. */
static enum colo_cmp_result tcp_release(struct colo_compare *c, struct conn *conn, uint64_t now_ns)
{
    struct tcp_track *t = &conn->t;
    struct frame *f;

    while ((f = conn->pq.head)) {
        uint8_t fl = f->p.flags;

        if (fl & TH_SYN) {
            if (!t->svm_syn)
                break;
            if (t->svm_syn_flags != (fl & (TH_SYN | TH_ACK)) ||
                ((fl & TH_ACK) && t->svm_syn_ack != f->p.ack) || t->svm_syn_len != f->p.pay_len ||
                t->svm_syn_hash != fnv1a(f->data + f->p.pay_off, f->p.pay_len))
                return COLO_CMP_MISMATCH;
        } else if (fl & TH_RST) {
            if (!t->svm_rst)
                break;
        } else if (f->p.pay_len || (fl & TH_FIN)) {
            if (!t->synced || seq_after(seg_end(f), t->cmp_seq))
                break;
        }
        if ((fl & TH_ACK) && (!t->svm_ack_known || seq_after(f->p.ack, t->svm_max_ack)))
            break; /* the ack bound */
        release_frame(c, f, now_ns);
    }
    return COLO_CMP_OK;
}

static enum colo_cmp_result tcp_run(struct colo_compare *c, struct conn *conn, uint64_t now_ns)
{
    struct tcp_track *t = &conn->t;
    enum colo_cmp_result r = COLO_CMP_OK;

    if (!t->synced && t->have_p0 && t->have_s0) {
        if (far(t->s0, t->p0))
            return COLO_CMP_MISMATCH;
        t->cmp_seq = seq_after(t->s0, t->p0) ? t->s0 : t->p0;
        t->synced = true;
    }
    if (t->synced)
        r = tcp_advance(c, conn);
    /* what was verified before a mismatch may still leave */
    enum colo_cmp_result r2 = tcp_release(c, conn, now_ns);
    return r != COLO_CMP_OK ? r : r2;
}

static enum colo_cmp_result run(struct colo_compare *c, struct conn *conn, uint64_t now_ns)
{
    enum colo_cmp_result r;

    r = conn->key.proto == IPPROTO_TCP_ ? tcp_run(c, conn, now_ns) : dgram_run(c, conn, now_ns);
    if (r == COLO_CMP_MISMATCH) {
        conn->diverged = true;
        c->st.mismatches++;
        c->st.compared++;
    }
    return r;
}

/* ---- the API ---- */

static bool would_overflow(const struct colo_compare *c, size_t len)
{
    return c->held_bytes >= c->cfg.max_bytes || len > c->cfg.max_bytes - c->held_bytes;
}

static enum colo_cmp_result overflow(struct colo_compare *c)
{
    c->full = true;
    c->st.overflows++;
    return COLO_CMP_QUEUE_FULL;
}

enum colo_cmp_result colo_compare_pvm(struct colo_compare *c, const uint8_t *frame, size_t len,
                                      uint64_t now_ns)
{
    struct conn *conn = NULL;
    struct frame *f;
    struct pkt p;

    parse(frame, len, &p);
    if (p.kind == PK_PASS) {
        if (c->release)
            c->release(c->opaque, frame, len, now_ns);
        c->st.released++;
        c->st.passthrough++;
        return COLO_CMP_OK;
    }
    bool over = c->full || would_overflow(c, len);
    if (!over && !(conn = conn_get(c, &p.key)))
        over = true;
    f = frame_new(frame, len, &p, true, now_ns);
    if (!f) {
        c->st.nomem++;
        return COLO_CMP_NOMEM;
    }
    if (over) {
        hold(c, f, NULL); /* uncompared; it leaves at the flush */
        return overflow(c);
    }
    hold(c, f, conn);
    if (conn->diverged)
        return COLO_CMP_MISMATCH;
    if (p.kind == PK_TCP)
        tcp_pvm_arrive(&conn->t, f);
    return run(c, conn, now_ns);
}

enum colo_cmp_result colo_compare_svm(struct colo_compare *c, const uint8_t *frame, size_t len,
                                      uint64_t now_ns)
{
    struct conn *conn;
    struct frame *f;
    struct pkt p;

    parse(frame, len, &p);
    if (p.kind == PK_PASS) {
        c->st.svm_discarded++;
        return COLO_CMP_OK;
    }
    if (c->full || !(conn = conn_get(c, &p.key))) {
        c->st.svm_discarded++;
        return overflow(c);
    }
    if (conn->diverged) {
        c->st.svm_discarded++;
        return COLO_CMP_MISMATCH;
    }
    if (p.kind == PK_TCP && !tcp_svm_arrive(&conn->t, frame, &p)) {
        c->st.svm_matched++; /* an ack, SYN or RST: recorded, nothing to hold */
        return run(c, conn, now_ns);
    }
    if (would_overflow(c, len)) {
        c->st.svm_discarded++;
        return overflow(c);
    }
    f = frame_new(frame, len, &p, false, now_ns);
    if (!f) {
        c->st.svm_discarded++;
        c->st.nomem++;
        return COLO_CMP_NOMEM;
    }
    hold(c, f, conn);
    return run(c, conn, now_ns);
}

enum colo_cmp_result colo_compare_poll(struct colo_compare *c, uint64_t now_ns)
{
    struct frame *f = c->ghead;

    if (!f || now_ns < f->arrived_ns || now_ns - f->arrived_ns < c->cfg.timeout_ns)
        return COLO_CMP_OK;
    if (!f->timed_out) {
        f->timed_out = true;
        c->st.timeouts++;
    }
    return COLO_CMP_TIMEOUT;
}

uint64_t colo_compare_next_deadline(struct colo_compare *c)
{
    struct frame *f = c->ghead;

    if (!f)
        return UINT64_MAX;
    if (f->arrived_ns > UINT64_MAX - c->cfg.timeout_ns)
        return UINT64_MAX;
    return f->arrived_ns + c->cfg.timeout_ns;
}

void colo_compare_flush(struct colo_compare *c, colo_cmp_out_fn take, void *opaque)
{
    struct frame *f = c->ghead, *next;
    struct conn *x, *xn;

    for (; f; f = next) {
        next = f->gnext;
        if (f->pvm) {
            if (take)
                take(opaque, f->data, f->len, f->arrived_ns);
            c->st.flushed++;
        } else {
            c->st.svm_discarded++;
        }
        free(f);
    }
    c->ghead = c->gtail = NULL;
    c->held_bytes = c->held_frames = 0;
    for (x = c->lru_head; x; x = xn) {
        xn = x->lnext;
        x->lnext = c->free_list;
        c->free_list = x;
    }
    c->lru_head = c->lru_tail = NULL;
    c->nconns = 0;
    memset(c->buckets, 0, c->nbuckets * sizeof(*c->buckets));
    c->full = false;
}

struct colo_compare *colo_compare_new(const struct colo_cmp_config *cfg, colo_cmp_out_fn release,
                                      void *opaque)
{
    struct colo_compare *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    if (cfg)
        c->cfg = *cfg;
    if (!c->cfg.timeout_ns)
        c->cfg.timeout_ns = COLO_CMP_DEFAULT_TIMEOUT_NS;
    if (!c->cfg.max_bytes)
        c->cfg.max_bytes = COLO_CMP_DEFAULT_MAX_BYTES;
    if (!c->cfg.max_conns)
        c->cfg.max_conns = COLO_CMP_DEFAULT_MAX_CONNS;
    if (c->cfg.max_conns > COLO_CMP_MAX_CONNS_LIMIT)
        goto err_free;
    c->release = release;
    c->opaque = opaque;
    for (c->nbuckets = 16; c->nbuckets < c->cfg.max_conns; c->nbuckets <<= 1)
        ;
    c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
    if (!c->buckets)
        goto err_free;
    c->pool = calloc(c->cfg.max_conns, sizeof(*c->pool));
    if (!c->pool)
        goto err_buckets;
    for (size_t i = c->cfg.max_conns; i-- > 0;) {
        c->pool[i].lnext = c->free_list;
        c->free_list = &c->pool[i];
    }
    return c;

err_buckets:
    free(c->buckets);
err_free:
    free(c);
    return NULL;
}

void colo_compare_free(struct colo_compare *c)
{
    if (!c)
        return;
    colo_compare_flush(c, NULL, NULL);
    free(c->pool);
    free(c->buckets);
    free(c);
}

uint64_t colo_compare_hold_quantile_ns(struct colo_compare *c, unsigned per_mille)
{
    uint64_t n = c->st.hold_count, rank, seen = 0;

    if (!n)
        return 0;
    if (per_mille < 1)
        per_mille = 1;
    if (per_mille > 1000)
        per_mille = 1000;
    rank = (n / 1000) * per_mille + ((n % 1000) * per_mille + 999) / 1000; /* ceil, no overflow */
    if (!rank)
        rank = 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += c->hist[i];
        if (seen >= rank) {
            uint64_t v = hist_upper(i);
            return v < c->st.hold_ns_max ? v : c->st.hold_ns_max;
        }
    }
    return c->st.hold_ns_max;
}

uint64_t colo_compare_hold_p99_ns(struct colo_compare *c)
{
    return colo_compare_hold_quantile_ns(c, 990);
}

void colo_compare_stats(struct colo_compare *c, struct colo_cmp_stats *out)
{
    *out = c->st;
    out->hold_p99_ns = colo_compare_hold_p99_ns(c);
    out->held_frames = c->held_frames;
    out->held_bytes = c->held_bytes;
    out->conns = c->nconns;
    out->full = c->full;
}
