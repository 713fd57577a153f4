/* test_rewrite.c: the secondary's TCP sequence rewriter on its own. Every rewritten frame is
 * compared with the frame built from scratch with the expected numbers (frames.h), so every
 * other byte is checked unchanged and the incremental checksum against a full one: the offset
 * learned in both handshakes, held client frames delivered in order at the SVM's SYN-ACK, the
 * hold bound, the flush, pass-through, sequence wrap, SACK blocks at odd offsets and odd
 * payload lengths, a full table and closed entries reused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "colo/rewrite.h"
#include "frames.h"

#define VM_IP   0x0a000001u
#define CL_IP   0x0a000002u
#define VM_PORT 80
#define CL_PORT 40000
#define REC_MAX 64

struct fr {
    uint8_t b[FR_MAX];
    size_t len;
};

/* What deliver() handed to the SVM. */
struct rec {
    size_t n;
    struct fr f[REC_MAX];
};

static const struct fr_ip in_ip = {.src = CL_IP, .dst = VM_IP, .id = 7, .ttl = 60};
static const struct fr_ip out_ip = {.src = VM_IP, .dst = CL_IP, .id = 9, .ttl = 64};

static void deliver(void *opaque, uint8_t *frame, size_t len)
{
    struct rec *r = opaque;

    assert_true(r->n < REC_MAX);
    assert_true(len <= FR_MAX);
    memcpy(r->f[r->n].b, frame, len);
    r->f[r->n].len = len;
    r->n++;
}

/* Client -> VM. */
static struct fr cin_opts(uint16_t cport, uint32_t seq, uint32_t ack, uint8_t flags,
                          const char *pay, const uint8_t *opts, size_t opts_len)
{
    struct fr f;
    struct fr_tcp t = {.sport = cport,
                       .dport = VM_PORT,
                       .seq = seq,
                       .ack = ack,
                       .flags = flags,
                       .opts = opts,
                       .opts_len = opts_len};

    f.len = fr_tcp(f.b, &in_ip, &t, pay, pay ? strlen(pay) : 0);
    return f;
}

static struct fr cin(uint32_t seq, uint32_t ack, uint8_t flags, const char *pay)
{
    return cin_opts(CL_PORT, seq, ack, flags, pay, NULL, 0);
}

/* VM -> client. */
static struct fr vout_port(uint16_t cport, uint32_t seq, uint32_t ack, uint8_t flags,
                           const char *pay)
{
    struct fr f;
    struct fr_tcp t = {.sport = VM_PORT, .dport = cport, .seq = seq, .ack = ack, .flags = flags};

    f.len = fr_tcp(f.b, &out_ip, &t, pay, pay ? strlen(pay) : 0);
    return f;
}

static struct fr vout(uint32_t seq, uint32_t ack, uint8_t flags, const char *pay)
{
    return vout_port(CL_PORT, seq, ack, flags, pay);
}

/* got is want but for its checksum, which is valid and equal to want's, computed from scratch
 * (one's complement: 0x0000 and 0xffff are the same number). */
static void assert_equiv(const struct fr *got, const struct fr *want)
{
    size_t ck = fr_l4(want->b) + 16;
    uint16_t a = fr_get16(got->b + ck), b = fr_get16(want->b + ck);

    assert_int_equal(got->len, want->len);
    assert_memory_equal(got->b, want->b, ck);
    assert_memory_equal(got->b + ck + 2, want->b + ck + 2, want->len - ck - 2);
    assert_true(fr_csum_ok(got->b));
    assert_true(a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0));
    assert_true(a == fr_tcp_csum_fresh(got->b) || a == 0 || a == 0xffff);
}

static void assert_same(const struct fr *got, const struct fr *want)
{
    assert_int_equal(got->len, want->len);
    assert_memory_equal(got->b, want->b, want->len);
}

static int in(struct colo_rewriter *rw, struct fr *f, struct rec *r)
{
    return colo_rewrite_in(rw, f->b, f->len, deliver, r);
}

static struct colo_rw_stats stats(struct colo_rewriter *rw)
{
    struct colo_rw_stats st;

    colo_rewriter_stats(rw, &st);
    return st;
}

#define ACK  FR_TH_ACK
#define PSH  (FR_TH_PSH | FR_TH_ACK)
#define SYNA (FR_TH_SYN | FR_TH_ACK)
#define FINA (FR_TH_FIN | FR_TH_ACK)

/* The VM accepts on cport: client ISN c, the PVM's p, the SVM's s. */
static void accept_port(struct colo_rewriter *rw, struct rec *r, uint16_t cport, uint32_t c,
                        uint32_t p, uint32_t s)
{
    struct fr syn = cin_opts(cport, c, 0, FR_TH_SYN, NULL, NULL, 0), syn0 = syn;
    struct fr synack = vout_port(cport, s, c + 1, SYNA, NULL), synack0 = synack;
    struct fr ack = cin_opts(cport, c + 1, p + 1, ACK, NULL, NULL, 0);
    struct fr want = cin_opts(cport, c + 1, s + 1, ACK, NULL, NULL, 0);
    size_t n = r->n;

    assert_int_equal(in(rw, &syn, r), 0);
    assert_int_equal(r->n, n + 1);
    assert_same(&r->f[n], &syn0);
    colo_rewrite_out(rw, synack.b, synack.len);
    assert_same(&synack, &synack0); /* the offset is not known yet */
    assert_int_equal(in(rw, &ack, r), 0);
    assert_int_equal(r->n, n + 2);
    assert_equiv(&r->f[n + 1], &want);
}

static void test_offset_learning(void **state)
{
    struct colo_rewriter *rw = colo_rewriter_new(0, 0);
    struct rec *r = calloc(1, sizeof(*r));
    const uint32_t c = 5000, p = 0x1000, s = 0x90000;
    struct fr data = vout(s + 1, c + 1, PSH, "hello"), want = vout(p + 1, c + 1, PSH, "hello");
    struct fr req = cin(c + 1, p + 6, PSH, "req"), wreq = cin(c + 1, s + 6, PSH, "req");
    struct fr synack = vout(s, c + 1, SYNA, NULL), wsynack = vout(p, c + 1, SYNA, NULL);
    struct colo_rw_stats st;

    assert_non_null(rw);
    accept_port(rw, r, CL_PORT, c, p, s);
    colo_rewrite_out(rw, data.b, data.len);
    assert_equiv(&data, &want);
    assert_int_equal(in(rw, &req, r), 0);
    assert_equiv(&r->f[2], &wreq);
    /* a retransmitted SYN-ACK, once the offset is known, is in the PVM's space too */
    colo_rewrite_out(rw, synack.b, synack.len);
    assert_equiv(&synack, &wsynack);
    st = stats(rw);
    assert_int_equal(st.conns, 1);
    assert_int_equal(st.conns_offset, 1);
    assert_int_equal(st.rewritten_in, 2);
    assert_int_equal(st.rewritten_out, 2);
    assert_int_equal(st.held_total, 0);
    assert_int_equal(st.dropped, 0);
    colo_rewriter_free(rw);
    free(r);
}

/* The VM connects: the SVM's SYN gives its ISN, the server's SYN-ACK the PVM's. */
static void test_active_open(void **state)
{
    struct colo_rewriter *rw = colo_rewriter_new(0, 0);
    struct rec *r = calloc(1, sizeof(*r));
    const uint32_t srv = 777, p = 0x20000, s = 0xabc00000;
    struct fr syn = vout(s, 0, FR_TH_SYN, NULL), syn0 = syn;
    struct fr synack = cin(srv, p + 1, SYNA, NULL), wsynack = cin(srv, s + 1, SYNA, NULL);
    struct fr ack = vout(s + 1, srv + 1, ACK, NULL), wack = vout(p + 1, srv + 1, ACK, NULL);

    colo_rewrite_out(rw, syn.b, syn.len);
    assert_same(&syn, &syn0);
    assert_int_equal(in(rw, &synack, r), 0);
    assert_int_equal(r->n, 1);
    assert_equiv(&r->f[0], &wsynack);
    colo_rewrite_out(rw, ack.b, ack.len);
    assert_equiv(&ack, &wack);
    assert_int_equal(stats(rw).conns_offset, 1);
    colo_rewriter_free(rw);
    free(r);
}

/* The incremental checksum against one from scratch, for payloads of every length 0..33 and
 * offsets that flip every 16-bit word of seq and ack. */
static void test_checksum_lengths(void **state)
{
    static const char text[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    static const uint32_t svm_isns[] = {0x1, 0x8000ffff, 0xffff0000, 0x12345678, 0xfffffffe};
    char pay[40];

    for (size_t k = 0; k < sizeof(svm_isns) / sizeof(svm_isns[0]); k++) {
        for (size_t len = 0; len < 34; len++) {
            struct colo_rewriter *rw = colo_rewriter_new(0, 0);
            struct rec *r = calloc(1, sizeof(*r));
            const uint32_t c = 0x5000 + (uint32_t)len, p = 0x0f0f0f0f, s = svm_isns[k];

            memcpy(pay, text, len);
            pay[len] = 0;
            accept_port(rw, r, CL_PORT, c, p, s);
            struct fr o = vout(s + 1, c + 1, PSH, pay), wo = vout(p + 1, c + 1, PSH, pay);
            struct fr i = cin(c + 1, p + 1 + (uint32_t)len, PSH, pay);
            struct fr wi = cin(c + 1, s + 1 + (uint32_t)len, PSH, pay);
            colo_rewrite_out(rw, o.b, o.len);
            assert_equiv(&o, &wo);
            assert_int_equal(in(rw, &i, r), 0);
            assert_equiv(&r->f[r->n - 1], &wi);
            colo_rewriter_free(rw);
            free(r);
        }
    }
}

/* The client's ACK and data arrive before the SVM's SYN-ACK: held, then delivered in order,
 * through the deliver function each came with, rewritten. */
static void test_held_until_synack(void **state)
{
    struct colo_rewriter *rw = colo_rewriter_new(0, 0);
    struct rec *r = calloc(1, sizeof(*r)), *r2 = calloc(1, sizeof(*r2));
    const uint32_t c = 100, p = 0x4000, s = 0x7000;
    struct fr syn = cin(c, 0, FR_TH_SYN, NULL);
    struct fr ack = cin(c + 1, p + 1, ACK, NULL), wack = cin(c + 1, s + 1, ACK, NULL);
    struct fr data = cin(c + 1, p + 1, PSH, "GET /"), wdata = cin(c + 1, s + 1, PSH, "GET /");
    struct fr synack = vout(s, c + 1, SYNA, NULL), wsynack = vout(p, c + 1, SYNA, NULL);
    struct colo_rw_stats st;

    assert_int_equal(in(rw, &syn, r), 0);
    assert_int_equal(r->n, 1);
    assert_int_equal(in(rw, &ack, r), 0);
    assert_int_equal(colo_rewrite_in(rw, data.b, data.len, deliver, r2), 0);
    assert_int_equal(r->n, 1);
    assert_int_equal(r2->n, 0);
    st = stats(rw);
    assert_int_equal(st.held, 2);
    assert_int_equal(st.held_bytes, ack.len + data.len);
    memset(ack.b, 0, ack.len); /* the rewriter kept its own copy */
    colo_rewrite_out(rw, synack.b, synack.len);
    assert_int_equal(r->n, 2);
    assert_equiv(&r->f[1], &wack);
    assert_int_equal(r2->n, 1);
    assert_equiv(&r2->f[0], &wdata);
    assert_equiv(&synack, &wsynack); /* the offset came from the held ACK */
    st = stats(rw);
    assert_int_equal(st.held, 0);
    assert_int_equal(st.held_bytes, 0);
    assert_int_equal(st.held_total, 2);
    assert_int_equal(st.delivered_held, 2);
    /* nothing is held any more */
    struct fr more = cin(c + 6, p + 1, PSH, "x"), wmore = cin(c + 6, s + 1, PSH, "x");
    assert_int_equal(in(rw, &more, r), 0);
    assert_equiv(&r->f[2], &wmore);
    colo_rewriter_free(rw);
    free(r);
    free(r2);
}

static void test_hold_bound(void **state)
{
    const uint32_t c = 100, p = 0x4000, s = 0x7000;
    struct fr ack = cin(c + 1, p + 1, ACK, NULL);
    struct colo_rewriter *rw = colo_rewriter_new(0, ack.len + ack.len / 2);
    struct rec *r = calloc(1, sizeof(*r));
    struct fr syn = cin(c, 0, FR_TH_SYN, NULL), ack2 = ack, wack = cin(c + 1, s + 1, ACK, NULL);
    struct fr synack = vout(s, c + 1, SYNA, NULL);

    assert_int_equal(in(rw, &syn, r), 0);
    assert_int_equal(in(rw, &ack, r), 0);
    assert_int_equal(in(rw, &ack2, r), -1); /* past the bound: dropped, not delivered */
    assert_int_equal(r->n, 1);
    assert_int_equal(stats(rw).dropped, 1);
    assert_int_equal(stats(rw).held, 1);
    colo_rewrite_out(rw, synack.b, synack.len);
    assert_int_equal(r->n, 2);
    assert_equiv(&r->f[1], &wack);
    colo_rewriter_free(rw);
    free(r);
}

static void test_flush(void **state)
{
    struct colo_rewriter *rw = colo_rewriter_new(0, 0);
    struct rec *r = calloc(1, sizeof(*r));
    const uint32_t c = 100, p = 0x4000, s = 0x7000;
    struct fr syn2 = cin_opts(40001, c, 0, FR_TH_SYN, NULL, NULL, 0);
    struct fr held = cin_opts(40001, c + 1, p + 1, ACK, NULL, NULL, 0);
    struct fr o = vout(s + 1, c + 1, PSH, "x"), o0 = o;
    struct fr i = cin(c + 1, p + 1, ACK, NULL), i0 = i;
    struct colo_rw_stats st;

    accept_port(rw, r, CL_PORT, c, p, s);
    assert_int_equal(in(rw, &syn2, r), 0);
    assert_int_equal(in(rw, &held, r), 0);
    assert_int_equal(r->n, 3);
    colo_rewriter_flush(rw);
    st = stats(rw);
    assert_int_equal(st.conns, 0);
    assert_int_equal(st.conns_offset, 0);
    assert_int_equal(st.held, 0);
    assert_int_equal(st.held_bytes, 0);
    assert_int_equal(st.dropped, 1);
    /* the SVM is the PVM now: nothing is rewritten */
    colo_rewrite_out(rw, o.b, o.len);
    assert_same(&o, &o0);
    assert_int_equal(in(rw, &i, r), 0);
    assert_same(&r->f[3], &i0);
    /* and a new connection is learned again */
    accept_port(rw, r, 40002, c, p, s + 5);
    assert_int_equal(stats(rw).conns_offset, 1);
    colo_rewriter_free(rw);
    free(r);
}

/* No entry, not TCP, not IPv4, malformed: untouched. */
static void test_passthrough(void **state)
{
    struct colo_rewriter *rw = colo_rewriter_new(0, 0);
    struct rec *r = calloc(1, sizeof(*r));
    struct fr t = cin(1, 2, PSH, "established"), t0 = t;
    struct fr o = vout(3, 4, PSH, "established"), o0 = o;
    struct fr u, u0, arp, arp0, bad, bad0;

    u.len = fr_udp(u.b, &in_ip, 53, 53, "udp", 3);
    u0 = u;
    arp.len = fr_arp(arp.b, 1);
    arp0 = arp;
    bad = cin(1, 2, PSH, "x");
    bad.b[fr_l4(bad.b) + 12] = 0xf0; /* data offset past the segment */
    bad0 = bad;
    assert_int_equal(in(rw, &t, r), 0);
    assert_int_equal(in(rw, &u, r), 0);
    assert_int_equal(in(rw, &arp, r), 0);
    assert_int_equal(in(rw, &bad, r), 0);
    assert_int_equal(r->n, 4);
    assert_same(&r->f[0], &t0);
    assert_same(&r->f[1], &u0);
    assert_same(&r->f[2], &arp0);
    assert_same(&r->f[3], &bad0);
    colo_rewrite_out(rw, o.b, o.len);
    assert_same(&o, &o0);
    colo_rewrite_out(rw, u.b, u.len);
    assert_same(&u, &u0);
    assert_int_equal(stats(rw).conns, 0);
    colo_rewriter_free(rw);
    free(r);
}

/* ISNs on both sides of 2^32. */
static void test_seq_wrap(void **state)
{
    struct colo_rewriter *rw = colo_rewriter_new(0, 0);
    struct rec *r = calloc(1, sizeof(*r));
    const uint32_t c = 0xfffffffa, p = 0xfffffff0, s = 0x10;
    /* 0x20 bytes later the PVM's numbers have wrapped, the SVM's not */
    struct fr o = vout(s + 0x20, c + 1, PSH, "wrap"), wo = vout(p + 0x20, c + 1, PSH, "wrap");
    struct fr i = cin(c + 1, p + 0x24, ACK, NULL), wi = cin(c + 1, s + 0x24, ACK, NULL);

    accept_port(rw, r, CL_PORT, c, p, s);
    colo_rewrite_out(rw, o.b, o.len);
    assert_equiv(&o, &wo);
    assert_int_equal(fr_tcp_seq(o.b), 0x10);
    assert_int_equal(in(rw, &i, r), 0);
    assert_equiv(&r->f[r->n - 1], &wi);
    assert_int_equal(fr_tcp_ack(r->f[r->n - 1].b), 0x34);
    colo_rewriter_free(rw);
    free(r);
}

static void put_sack(uint8_t *o, uint32_t l, uint32_t rt)
{
    fr_put32(o, l);
    fr_put32(o + 4, rt);
}

/* The client's SACK blocks move with its ack; one set at an odd offset (after one NOP), one
 * with two blocks after two; a payload of odd length; the SVM's SACK blocks stay. */
static void test_sack(void **state)
{
    struct colo_rewriter *rw = colo_rewriter_new(0, 0);
    struct rec *r = calloc(1, sizeof(*r));
    const uint32_t c = 100, p = 0x4000, s = 0x7fff8000, d = p - s;
    uint8_t odd[12] = {1, 5, 10}, wodd[12] = {1, 5, 10};
    uint8_t two[20] = {1, 1, 5, 18}, wtwo[20] = {1, 1, 5, 18};

    odd[11] = 1;
    wodd[11] = 1;
    put_sack(odd + 3, p + 1001, p + 2001);
    put_sack(wodd + 3, p + 1001 - d, p + 2001 - d);
    put_sack(two + 4, p + 3001, p + 4001);
    put_sack(two + 12, p + 0xfffffff0, p + 5);
    put_sack(wtwo + 4, s + 3001, s + 4001);
    put_sack(wtwo + 12, s + 0xfffffff0, s + 5);
    accept_port(rw, r, CL_PORT, c, p, s);

    struct fr i1 = cin_opts(CL_PORT, c + 1, p + 1, PSH, "odd", odd, sizeof(odd));
    struct fr w1 = cin_opts(CL_PORT, c + 1, s + 1, PSH, "odd", wodd, sizeof(wodd));
    struct fr i2 = cin_opts(CL_PORT, c + 4, p + 1, ACK, NULL, two, sizeof(two));
    struct fr w2 = cin_opts(CL_PORT, c + 4, s + 1, ACK, NULL, wtwo, sizeof(wtwo));
    assert_int_equal(in(rw, &i1, r), 0);
    assert_equiv(&r->f[r->n - 1], &w1);
    assert_int_equal(in(rw, &i2, r), 0);
    assert_equiv(&r->f[r->n - 1], &w2);

    /* the SVM's own SACK blocks name the client's numbers: only seq changes */
    uint8_t so[12] = {1, 1, 5, 10};
    put_sack(so + 4, c + 50, c + 60);
    struct fr_tcp t = {.sport = VM_PORT,
                       .dport = CL_PORT,
                       .seq = s + 1,
                       .ack = c + 4,
                       .flags = ACK,
                       .opts = so,
                       .opts_len = sizeof(so)};
    struct fr o, wo;
    o.len = fr_tcp(o.b, &out_ip, &t, NULL, 0);
    t.seq = p + 1;
    wo.len = fr_tcp(wo.b, &out_ip, &t, NULL, 0);
    colo_rewrite_out(rw, o.b, o.len);
    assert_equiv(&o, &wo);

    /* a malformed option list: the ack is still rewritten, nothing past it is touched */
    uint8_t badopt[4] = {5, 40, 0, 0};
    struct fr i3 = cin_opts(CL_PORT, c + 4, p + 1, ACK, NULL, badopt, sizeof(badopt));
    struct fr w3 = cin_opts(CL_PORT, c + 4, s + 1, ACK, NULL, badopt, sizeof(badopt));
    assert_int_equal(in(rw, &i3, r), 0);
    assert_equiv(&r->f[r->n - 1], &w3);
    colo_rewriter_free(rw);
    free(r);
}

/* One entry: a second connection passes unrewritten (untracked) until the first has closed;
 * then its entry is reused. */
static void test_table_full(void **state)
{
    struct colo_rewriter *rw = colo_rewriter_new(1, 0);
    struct rec *r = calloc(1, sizeof(*r));
    const uint32_t c = 100, p = 0x4000, s = 0x7000;
    struct fr syn2 = cin_opts(40001, c, 0, FR_TH_SYN, NULL, NULL, 0);
    struct fr synack2 = vout_port(40001, s, c + 1, SYNA, NULL), synack20 = synack2;
    struct fr ack2 = cin_opts(40001, c + 1, p + 1, ACK, NULL, NULL, 0), ack20 = ack2;
    struct fr fin_out = vout(s + 1, c + 1, FINA, NULL), wfin_out = vout(p + 1, c + 1, FINA, NULL);
    struct fr fin_in = cin(c + 1, p + 2, FINA, NULL), wfin_in = cin(c + 1, s + 2, FINA, NULL);
    struct fr last = cin(c + 2, p + 2, ACK, NULL), wlast = cin(c + 2, s + 2, ACK, NULL);

    accept_port(rw, r, CL_PORT, c, p, s);
    assert_int_equal(in(rw, &syn2, r), 0);
    colo_rewrite_out(rw, synack2.b, synack2.len);
    assert_same(&synack2, &synack20);
    assert_int_equal(in(rw, &ack2, r), 0);
    assert_same(&r->f[r->n - 1], &ack20);
    assert_int_equal(stats(rw).untracked, 1);
    /* both FINs: closed, but stragglers are still rewritten */
    colo_rewrite_out(rw, fin_out.b, fin_out.len);
    assert_equiv(&fin_out, &wfin_out);
    assert_int_equal(in(rw, &fin_in, r), 0);
    assert_equiv(&r->f[r->n - 1], &wfin_in);
    assert_int_equal(in(rw, &last, r), 0);
    assert_equiv(&r->f[r->n - 1], &wlast);
    /* the closed entry is reused */
    accept_port(rw, r, 40001, c, p, s + 1);
    assert_int_equal(stats(rw).recycled, 1);
    assert_int_equal(stats(rw).conns, 1);
    assert_int_equal(stats(rw).conns_offset, 1);
    /* an RST closes too; a new SYN on the same ports reopens the entry */
    struct fr rst = cin_opts(40001, c + 1, 0, FR_TH_RST, NULL, NULL, 0);
    assert_int_equal(in(rw, &rst, r), 0);
    accept_port(rw, r, 40001, c + 1000, p + 1000, s + 77);
    assert_int_equal(stats(rw).recycled, 1);
    assert_int_equal(stats(rw).conns_offset, 1);
    colo_rewriter_free(rw);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offset_learning),
        cmocka_unit_test(test_active_open),
        cmocka_unit_test(test_checksum_lengths),
        cmocka_unit_test(test_held_until_synack),
        cmocka_unit_test(test_hold_bound),
        cmocka_unit_test(test_flush),
        cmocka_unit_test(test_passthrough),
        cmocka_unit_test(test_seq_wrap),
        cmocka_unit_test(test_sack),
        cmocka_unit_test(test_table_full),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
