/* rewrite.c: the secondary's TCP sequence rewriter: per-connection offsets, held client frames.
 *
 * An entry's life (rewrite.h has the why):
 *
 *   client SYN in ──> WAIT_SVM_ISN ──(SVM SYN-ACK out: svm_isn)──> WAIT_PVM_ISN
 *   SVM SYN out ─────────────────────(svm_isn)────────────────────> WAIT_PVM_ISN
 *   WAIT_PVM_ISN ──(first client segment with ACK: offset = ack - 1 - svm_isn)──> EST
 *   EST: in: ack, SACK -= offset; out: seq += offset. RST, or FIN both ways: closed (kept).
 *
 * In WAIT_SVM_ISN a client segment with ACK is held, and so is every segment after a held
 * one (order); the SVM's SYN-ACK replays them through the same rules.
 */
#include "colo/rewrite.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/mix.h"
#include "migration/be.h"

#define ETH_HLEN     14
#define ETH_P_IPV4   0x0800
#define IPPROTO_TCP_ 6
#define TH_FIN       0x01
#define TH_SYN       0x02
#define TH_RST       0x04
#define TH_ACK       0x10
#define TCP_CSUM_OFF 16
#define TCPOPT_EOL   0
#define TCPOPT_NOP   1
#define TCPOPT_SACK  5
#define RECYCLE_SCAN 64 /* least recently used entries looked at for a closed one */

enum rw_state { RW_NONE = 0, RW_WAIT_SVM_ISN, RW_WAIT_PVM_ISN, RW_EST };

struct rw_key {
    uint32_t vm_ip, peer_ip;
    uint16_t vm_port, peer_port;
};

struct held {
    struct held *next;
    colo_rw_deliver_fn deliver;
    void *opaque;
    size_t len;
    uint8_t data[];
};

struct rw_conn {
    struct rw_conn *hnext;         /* hash chain */
    struct rw_conn *lprev, *lnext; /* LRU order in use; lnext links the free list */
    struct rw_key key;
    enum rw_state state;
    uint32_t svm_isn, offset; /* offset: PVM ISN - SVM ISN */
    bool fin_in, fin_out, closed;
    struct held *hhead, *htail;
};

struct colo_rewriter {
    size_t max_conns, max_held;
    struct rw_conn *pool, *free_list, *lru_head, *lru_tail;
    struct rw_conn **buckets;
    size_t nbuckets; /* a power of two */
    size_t nconns, noffset, held_frames, held_bytes;
    struct colo_rw_stats st;
};

/* A TCP segment in a frame; l4 is the offset of its header. */
struct seg {
    size_t l4, doff;
    uint32_t src, dst, seq, ack;
    uint16_t sport, dport;
    uint8_t flags;
};

/* IPv4 TCP, unfragmented, lengths consistent; anything else passes untouched. */
static bool parse_tcp(const uint8_t *f, size_t len, struct seg *s)
{
    if (len < ETH_HLEN + 20 || be16_load(f + 12) != ETH_P_IPV4)
        return false;
    const uint8_t *ip = f + ETH_HLEN;
    size_t ihl = (size_t)(ip[0] & 0xf) * 4, tot = be16_load(ip + 2);
    if ((ip[0] >> 4) != 4 || ihl < 20 || tot < ihl || tot > len - ETH_HLEN || ip[9] != 6 ||
        (be16_load(ip + 6) & 0x3fff))
        return false;
    s->l4 = ETH_HLEN + ihl;
    if (tot - ihl < 20)
        return false;
    s->doff = (size_t)(f[s->l4 + 12] >> 4) * 4;
    if (s->doff < 20 || s->doff > tot - ihl)
        return false;
    s->src = be32_load(ip + 12);
    s->dst = be32_load(ip + 16);
    s->sport = be16_load(f + s->l4);
    s->dport = be16_load(f + s->l4 + 2);
    s->seq = be32_load(f + s->l4 + 4);
    s->ack = be32_load(f + s->l4 + 8);
    s->flags = f[s->l4 + 13];
    return true;
}

/* RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), a byte at a time: a byte at an even offset from the
 * start of the TCP header is the high half of its 16-bit word, at an odd one the low half, so a
 * field anywhere (a SACK block after one NOP) updates correctly. */
static void csum_replace(uint8_t *ck, size_t off, const uint8_t *old, const uint8_t *new, size_t n)
{
    uint32_t acc = (uint16_t)~be16_load(ck);

    for (size_t i = 0; i < n; i++) {
        unsigned shift = (off + i) & 1 ? 0 : 8;
        acc += (uint16_t) ~(uint16_t)(old[i] << shift);
        acc += (uint16_t)(new[i] << shift);
    }
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    be16_store(ck, (uint16_t)~acc);
}

/* Stores v at tcp + off and fixes the checksum. */
static void put32(uint8_t *tcp, size_t off, uint32_t v)
{
    uint8_t nb[4];

    be32_store(nb, v);
    csum_replace(tcp + TCP_CSUM_OFF, off, tcp + off, nb, 4);
    memcpy(tcp + off, nb, 4);
}

/* Moves the client's SACK blocks (edges in the VM's sequence space) by -offset. The options
 * are the client's: a malformed list stops the walk, nothing is read past doff. */
static void rewrite_sack(uint8_t *tcp, size_t doff, uint32_t offset)
{
    size_t i = 20;

    while (i < doff && tcp[i] != TCPOPT_EOL) {
        if (tcp[i] == TCPOPT_NOP) {
            i++;
            continue;
        }
        if (i + 1 >= doff)
            return;
        size_t olen = tcp[i + 1];
        if (olen < 2 || olen > doff - i)
            return;
        if (tcp[i] == TCPOPT_SACK && olen >= 10 && (olen - 2) % 8 == 0)
            for (size_t j = i + 2; j < i + olen; j += 4)
                put32(tcp, j, be32_load(tcp + j) - offset);
        i += olen;
    }
}

/* ---- the table ---- */

static bool key_eq(const struct rw_key *a, const struct rw_key *b)
{
    return a->vm_ip == b->vm_ip && a->peer_ip == b->peer_ip && a->vm_port == b->vm_port &&
           a->peer_port == b->peer_port;
}

static size_t key_hash(const struct colo_rewriter *rw, const struct rw_key *k)
{
    uint64_t x = ((uint64_t)k->vm_ip << 32 | k->peer_ip) ^
                 ((uint64_t)k->vm_port << 16 | k->peer_port) * 0x9e3779b97f4a7c15ull;

    return (size_t)(mix64(x) & (rw->nbuckets - 1));
}

static void lru_unlink(struct colo_rewriter *rw, struct rw_conn *e)
{
    *(e->lprev ? &e->lprev->lnext : &rw->lru_head) = e->lnext;
    *(e->lnext ? &e->lnext->lprev : &rw->lru_tail) = e->lprev;
    e->lprev = e->lnext = NULL;
}

static void lru_append(struct colo_rewriter *rw, struct rw_conn *e)
{
    e->lprev = rw->lru_tail;
    e->lnext = NULL;
    *(rw->lru_tail ? &rw->lru_tail->lnext : &rw->lru_head) = e;
    rw->lru_tail = e;
}

static struct rw_conn *lookup(struct colo_rewriter *rw, const struct rw_key *k)
{
    for (struct rw_conn *e = rw->buckets[key_hash(rw, k)]; e; e = e->hnext) {
        if (key_eq(&e->key, k)) {
            lru_unlink(rw, e);
            lru_append(rw, e);
            return e;
        }
    }
    return NULL;
}

static void set_offset(struct colo_rewriter *rw, struct rw_conn *e, uint32_t offset)
{
    rw->noffset += (offset != 0) - (e->offset != 0);
    e->offset = offset;
}

/* Back to a fresh entry of the same key (a new connection on the same ports). */
static void conn_reset(struct colo_rewriter *rw, struct rw_conn *e)
{
    set_offset(rw, e, 0);
    e->state = RW_NONE;
    e->svm_isn = 0;
    e->fin_in = e->fin_out = e->closed = false;
}

static void unhash(struct colo_rewriter *rw, struct rw_conn *e)
{
    struct rw_conn **pp = &rw->buckets[key_hash(rw, &e->key)];

    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
}

/* A new entry for k: a free one, or the least recently used closed one; NULL when full. */
static struct rw_conn *conn_new(struct colo_rewriter *rw, const struct rw_key *k)
{
    struct rw_conn *e = rw->free_list;
    int n = 0;

    if (e) {
        rw->free_list = e->lnext;
    } else {
        for (e = rw->lru_head; e && n < RECYCLE_SCAN; e = e->lnext, n++)
            if (e->closed && !e->hhead)
                break;
        if (!e || n == RECYCLE_SCAN) {
            rw->st.untracked++;
            return NULL;
        }
        conn_reset(rw, e);
        unhash(rw, e);
        lru_unlink(rw, e);
        rw->nconns--;
        rw->st.recycled++;
    }
    memset(e, 0, sizeof(*e));
    e->key = *k;
    size_t h = key_hash(rw, k);
    e->hnext = rw->buckets[h];
    rw->buckets[h] = e;
    lru_append(rw, e);
    rw->nconns++;
    return e;
}

static void track_close(struct rw_conn *e, uint8_t flags, bool in)
{
    if (flags & TH_RST)
        e->closed = true;
    if (flags & TH_FIN)
        *(in ? &e->fin_in : &e->fin_out) = true;
    if (e->fin_in && e->fin_out)
        e->closed = true;
}

/* ---- the two directions ---- */

/* A client segment that is not held: learn the offset, rewrite. */
static void in_apply(struct colo_rewriter *rw, struct rw_conn *e, uint8_t *f, const struct seg *s)
{
    uint8_t *tcp = f + s->l4;

    if (e->state == RW_WAIT_PVM_ISN && (s->flags & TH_ACK)) {
        set_offset(rw, e, s->ack - 1 - e->svm_isn);
        e->state = RW_EST;
    }
    if (e->state == RW_EST && e->offset && (s->flags & TH_ACK)) {
        put32(tcp, 8, s->ack - e->offset);
        rewrite_sack(tcp, s->doff, e->offset);
        rw->st.rewritten_in++;
    }
    track_close(e, s->flags, true);
}

static int hold(struct colo_rewriter *rw, struct rw_conn *e, const uint8_t *f, size_t len,
                colo_rw_deliver_fn deliver, void *opaque)
{
    struct held *h;

    if (rw->held_bytes >= rw->max_held || len > rw->max_held - rw->held_bytes)
        goto drop;
    h = malloc(sizeof(*h) + len);
    if (!h)
        goto drop;
    h->next = NULL;
    h->deliver = deliver;
    h->opaque = opaque;
    h->len = len;
    memcpy(h->data, f, len);
    *(e->htail ? &e->htail->next : &e->hhead) = h;
    e->htail = h;
    rw->held_frames++;
    rw->held_bytes += len;
    rw->st.held_total++;
    return 0;

drop:
    rw->st.dropped++;
    return -1;
}

/* The SVM's SYN-ACK passed: its held client frames go in, in order, through in_apply. */
static void replay(struct colo_rewriter *rw, struct rw_conn *e)
{
    struct held *h = e->hhead, *next;

    e->hhead = e->htail = NULL;
    for (; h; h = next) {
        struct seg s;

        next = h->next;
        rw->held_frames--;
        rw->held_bytes -= h->len;
        if (parse_tcp(h->data, h->len, &s))
            in_apply(rw, e, h->data, &s);
        h->deliver(h->opaque, h->data, h->len);
        rw->st.delivered_held++;
        free(h);
    }
}

int colo_rewrite_in(struct colo_rewriter *rw, uint8_t *frame, size_t len,
                    colo_rw_deliver_fn deliver, void *opaque)
{
    struct rw_conn *e;
    struct seg s;

    if (!parse_tcp(frame, len, &s))
        goto deliver;
    struct rw_key k = {.vm_ip = s.dst, .peer_ip = s.src, .vm_port = s.dport, .peer_port = s.sport};
    e = lookup(rw, &k);
    if ((s.flags & (TH_SYN | TH_ACK)) == TH_SYN) { /* a client opens a connection to the VM */
        if (e && e->closed && !e->hhead)
            conn_reset(rw, e);
        if (!e)
            e = conn_new(rw, &k);
        if (e && e->state == RW_NONE)
            e->state = RW_WAIT_SVM_ISN;
    }
    if (!e)
        goto deliver;
    if (e->hhead || (e->state == RW_WAIT_SVM_ISN && (s.flags & TH_ACK)))
        return hold(rw, e, frame, len, deliver, opaque);
    in_apply(rw, e, frame, &s);
deliver:
    deliver(opaque, frame, len);
    return 0;
}

void colo_rewrite_out(struct colo_rewriter *rw, uint8_t *frame, size_t len)
{
    struct rw_conn *e;
    struct seg s;

    if (!parse_tcp(frame, len, &s))
        return;
    struct rw_key k = {.vm_ip = s.src, .peer_ip = s.dst, .vm_port = s.sport, .peer_port = s.dport};
    e = lookup(rw, &k);
    if ((s.flags & (TH_SYN | TH_ACK)) == TH_SYN) { /* the VM opens a connection */
        if (e && (e->closed || e->state == RW_WAIT_PVM_ISN) && !e->hhead)
            conn_reset(rw, e); /* a new connection, or the SYN again (same ISN) */
        if (!e)
            e = conn_new(rw, &k);
        if (e && e->state == RW_NONE) {
            e->svm_isn = s.seq;
            e->state = RW_WAIT_PVM_ISN;
        }
        return;
    }
    if (!e)
        return;
    if ((s.flags & (TH_SYN | TH_ACK)) == (TH_SYN | TH_ACK) && e->state == RW_WAIT_SVM_ISN) {
        e->svm_isn = s.seq;
        e->state = RW_WAIT_PVM_ISN;
        replay(rw, e); /* may learn the offset: then this SYN-ACK is rewritten too */
    }
    if (e->state == RW_EST && e->offset) {
        put32(frame + s.l4, 4, s.seq + e->offset);
        rw->st.rewritten_out++;
    }
    track_close(e, s.flags, false);
}

void colo_rewriter_flush(struct colo_rewriter *rw)
{
    struct rw_conn *e, *next;

    for (e = rw->lru_head; e; e = next) {
        next = e->lnext;
        for (struct held *h = e->hhead, *hn; h; h = hn) {
            hn = h->next;
            rw->st.dropped++;
            free(h);
        }
        e->hhead = e->htail = NULL;
        e->lnext = rw->free_list;
        rw->free_list = e;
    }
    rw->lru_head = rw->lru_tail = NULL;
    memset(rw->buckets, 0, rw->nbuckets * sizeof(*rw->buckets));
    rw->nconns = rw->noffset = rw->held_frames = rw->held_bytes = 0;
}

struct colo_rewriter *colo_rewriter_new(size_t max_conns, size_t max_held_bytes)
{
    struct colo_rewriter *rw;

    if (!max_conns)
        max_conns = COLO_RW_DEFAULT_MAX_CONNS;
    if (!max_held_bytes)
        max_held_bytes = COLO_RW_DEFAULT_MAX_HELD;
    if (max_conns > COLO_RW_MAX_CONNS_LIMIT)
        return NULL;
    rw = calloc(1, sizeof(*rw));
    if (!rw)
        return NULL;
    rw->max_conns = max_conns;
    rw->max_held = max_held_bytes;
    for (rw->nbuckets = 16; rw->nbuckets < max_conns; rw->nbuckets <<= 1)
        ;
    rw->buckets = calloc(rw->nbuckets, sizeof(*rw->buckets));
    if (!rw->buckets)
        goto err_free;
    rw->pool = calloc(max_conns, sizeof(*rw->pool));
    if (!rw->pool)
        goto err_buckets;
    for (size_t i = max_conns; i-- > 0;) {
        rw->pool[i].lnext = rw->free_list;
        rw->free_list = &rw->pool[i];
    }
    return rw;

err_buckets:
    free(rw->buckets);
err_free:
    free(rw);
    return NULL;
}

void colo_rewriter_free(struct colo_rewriter *rw)
{
    if (!rw)
        return;
    colo_rewriter_flush(rw);
    free(rw->pool);
    free(rw->buckets);
    free(rw);
}

void colo_rewriter_stats(struct colo_rewriter *rw, struct colo_rw_stats *out)
{
    *out = rw->st;
    out->conns = rw->nconns;
    out->conns_offset = rw->noffset;
    out->held = rw->held_frames;
    out->held_bytes = rw->held_bytes;
}
