/* test_compare.c: colo-compare on its own, fed frames built byte by byte (frames.h). The PVM's
 * and the SVM's frames differ in IP id, TTL, TCP window and so in their checksums, which the
 * compare must ignore; every released frame is checked byte for byte against the PVM's. UDP and
 * ICMP matching, TCP streams cut differently, retransmissions, the ack bound, SYN/FIN/RST,
 * connections that predate the checkpoint, sequence wrap, pass-through, both bounds, the
 * timeout, the flush's order and the hold-time statistics. Linked with -Wl,--wrap=malloc so a
 * test can make the frame copies fail (NOMEM). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "colo/compare.h"
#include "frames.h"

#define VM_IP   0x0a000001u
#define CL_IP   0x0a000002u
#define VM_PORT 80
#define CL_PORT 40000
#define REC_MAX 256

struct out {
    uint8_t data[FR_MAX];
    size_t len;
    uint64_t arrived;
};

/* What left: through release() (rel) or the flush's take() (take). */
struct rec {
    size_t n;
    struct out f[REC_MAX];
};

struct fx {
    struct colo_compare *c;
    struct rec rel, take;
};

struct fr {
    uint8_t b[FR_MAX];
    size_t len;
};

void *__wrap_malloc(size_t n);
void *__real_malloc(size_t n);

static bool fail_malloc;

void *__wrap_malloc(size_t n)
{
    return fail_malloc ? NULL : __real_malloc(n);
}

static const struct fr_ip pvm_ip = {.src = VM_IP, .dst = CL_IP, .id = 0x1111, .ttl = 64};
static const struct fr_ip svm_ip = {.src = VM_IP, .dst = CL_IP, .id = 0x2222, .ttl = 63};

static void rec_fn(void *opaque, const uint8_t *frame, size_t len, uint64_t arrived)
{
    struct rec *r = opaque;

    assert_true(r->n < REC_MAX);
    assert_true(len <= FR_MAX);
    memcpy(r->f[r->n].data, frame, len);
    r->f[r->n].len = len;
    r->f[r->n].arrived = arrived;
    r->n++;
}

static struct fx *fx_new(const struct colo_cmp_config *cfg)
{
    struct fx *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    fx->c = colo_compare_new(cfg, rec_fn, &fx->rel);
    assert_non_null(fx->c);
    return fx;
}

static void fx_free(struct fx *fx)
{
    colo_compare_free(fx->c);
    free(fx);
}

static void flush(struct fx *fx)
{
    colo_compare_flush(fx->c, rec_fn, &fx->take);
}

static struct colo_cmp_stats stats(struct fx *fx)
{
    struct colo_cmp_stats st;

    colo_compare_stats(fx->c, &st);
    return st;
}

/* A TCP segment from the VM (port 80) to the client, as the PVM or the SVM sent it. */
static struct fr seg_port(bool svm, uint16_t cport, uint32_t seq, uint32_t ack, uint8_t flags,
                          const char *pay)
{
    struct fr f;
    struct fr_tcp t = {.sport = VM_PORT,
                       .dport = cport,
                       .seq = seq,
                       .ack = ack,
                       .flags = flags,
                       .win = svm ? 1000 : 2000};

    f.len = fr_tcp(f.b, svm ? &svm_ip : &pvm_ip, &t, pay, pay ? strlen(pay) : 0);
    return f;
}

static struct fr seg(bool svm, uint32_t seq, uint32_t ack, uint8_t flags, const char *pay)
{
    return seg_port(svm, CL_PORT, seq, ack, flags, pay);
}

static struct fr udp(bool svm, uint16_t sport, const char *pay)
{
    struct fr f;

    f.len = fr_udp(f.b, svm ? &svm_ip : &pvm_ip, sport, 5353, pay, strlen(pay));
    return f;
}

static enum colo_cmp_result pvm(struct fx *fx, const struct fr *f, uint64_t now)
{
    return colo_compare_pvm(fx->c, f->b, f->len, now);
}

static enum colo_cmp_result svm(struct fx *fx, const struct fr *f, uint64_t now)
{
    return colo_compare_svm(fx->c, f->b, f->len, now);
}

static void assert_out(const struct out *o, const struct fr *f)
{
    assert_int_equal(o->len, f->len);
    assert_memory_equal(o->data, f->b, f->len);
}

#define ACK  FR_TH_ACK
#define PSH  (FR_TH_PSH | FR_TH_ACK)
#define SYNA (FR_TH_SYN | FR_TH_ACK)

/* The VM accepts a connection from the client (ISN cisn): the PVM's SYN-ACK (ISN pisn) and the
 * SVM's (its own ISN) match on flags and ack; both streams then start at pisn + 1. */
static void handshake_port(struct fx *fx, uint16_t cport, uint32_t pisn, uint32_t sisn,
                           uint32_t cisn)
{
    struct fr p = seg_port(false, cport, pisn, cisn + 1, SYNA, NULL);
    struct fr s = seg_port(true, cport, sisn, cisn + 1, SYNA, NULL);
    size_t n = fx->rel.n;

    assert_int_equal(pvm(fx, &p, 0), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, n);
    assert_int_equal(svm(fx, &s, 0), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, n + 1);
    assert_out(&fx->rel.f[n], &p);
}

static void handshake(struct fx *fx, uint32_t pisn, uint32_t sisn, uint32_t cisn)
{
    handshake_port(fx, CL_PORT, pisn, sisn, cisn);
}

static void test_udp_match(void **state)
{
    struct fx *fx = fx_new(NULL);
    struct fr p = udp(false, 53, "answer"), s = udp(true, 53, "answer");
    struct colo_cmp_stats st;

    assert_memory_not_equal(p.b, s.b, p.len); /* id, TTL, checksums differ */
    assert_int_equal(pvm(fx, &p, 10), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 0);
    assert_int_equal(stats(fx).held_frames, 1);
    assert_int_equal(svm(fx, &s, 25), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 1);
    assert_out(&fx->rel.f[0], &p);
    assert_int_equal(fx->rel.f[0].arrived, 10);
    st = stats(fx);
    assert_int_equal(st.matched, 1);
    assert_int_equal(st.compared, 1);
    assert_int_equal(st.released, 1);
    assert_int_equal(st.svm_matched, 1);
    assert_int_equal(st.held_frames, 0);
    assert_int_equal(st.held_bytes, 0);
    assert_int_equal(st.hold_count, 1);
    assert_int_equal(st.hold_ns_sum, 15);
    fx_free(fx);
}

static void test_udp_mismatch(void **state)
{
    struct fx *fx = fx_new(NULL);
    struct fr p1 = udp(false, 53, "answer1"), s1 = udp(true, 53, "answer2");
    struct fr p2 = udp(false, 53, "more"), s2 = udp(true, 53, "more");
    struct fr po = udp(false, 54, "other"), so = udp(true, 54, "other");
    struct fr shorter = udp(true, 55, "abc"), longer = udp(false, 55, "abcd");
    struct colo_cmp_stats st;

    assert_int_equal(pvm(fx, &p1, 1), COLO_CMP_OK);
    assert_int_equal(svm(fx, &s1, 2), COLO_CMP_MISMATCH);
    assert_int_equal(fx->rel.n, 0);
    /* the diverged connection holds everything; reported once */
    assert_int_equal(pvm(fx, &p2, 3), COLO_CMP_MISMATCH);
    assert_int_equal(svm(fx, &s2, 4), COLO_CMP_MISMATCH);
    assert_int_equal(fx->rel.n, 0);
    assert_int_equal(stats(fx).mismatches, 1);
    /* other connections go on */
    assert_int_equal(pvm(fx, &po, 5), COLO_CMP_OK);
    assert_int_equal(svm(fx, &so, 6), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 1);
    assert_out(&fx->rel.f[0], &po);
    /* a prefix is not a match */
    assert_int_equal(svm(fx, &shorter, 7), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &longer, 8), COLO_CMP_MISMATCH);
    st = stats(fx);
    assert_int_equal(st.mismatches, 2);
    assert_int_equal(st.svm_discarded, 1); /* s2, at its arrival */

    flush(fx);
    assert_int_equal(fx->take.n, 3);
    assert_out(&fx->take.f[0], &p1);
    assert_int_equal(fx->take.f[0].arrived, 1);
    assert_out(&fx->take.f[1], &p2);
    assert_int_equal(fx->take.f[1].arrived, 3);
    assert_out(&fx->take.f[2], &longer);
    st = stats(fx);
    assert_int_equal(st.svm_discarded, 3); /* + s1 and shorter, held until the flush */
    assert_int_equal(st.flushed, 3);
    assert_int_equal(st.held_frames, 0);
    assert_int_equal(st.conns, 0);
    /* the connection starts afresh */
    assert_int_equal(pvm(fx, &p2, 9), COLO_CMP_OK);
    assert_int_equal(svm(fx, &s2, 9), COLO_CMP_OK);
    assert_out(&fx->rel.f[1], &p2);
    fx_free(fx);
}

/* An SVM ahead may send a connection's datagrams in another order (QEMU's search). */
static void test_udp_svm_ahead_reordered(void **state)
{
    struct fx *fx = fx_new(NULL);
    struct fr pa = udp(false, 53, "A"), pb = udp(false, 53, "B");
    struct fr sa = udp(true, 53, "A"), sb = udp(true, 53, "B");

    assert_int_equal(svm(fx, &sb, 1), COLO_CMP_OK);
    assert_int_equal(svm(fx, &sa, 2), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &pa, 3), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 1);
    assert_out(&fx->rel.f[0], &pa);
    assert_int_equal(pvm(fx, &pb, 4), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 2);
    assert_out(&fx->rel.f[1], &pb);
    assert_int_equal(stats(fx).held_frames, 0);
    fx_free(fx);
}

/* IPv4 options on one side only: the payload is found through IHL. */
static void test_ip_options(void **state)
{
    struct fx *fx = fx_new(NULL);
    struct fr_ip opt = pvm_ip;
    struct fr p, s = udp(true, 53, "payload");

    opt.opt_words = 3;
    p.len = fr_udp(p.b, &opt, 53, 5353, "payload", 7);
    assert_int_equal(p.len, s.len + 12);
    assert_true(fr_csum_ok(p.b));
    assert_int_equal(pvm(fx, &p, 0), COLO_CMP_OK);
    assert_int_equal(svm(fx, &s, 0), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 1);
    assert_out(&fx->rel.f[0], &p);
    fx_free(fx);
}

static struct fr echo(bool svm, uint16_t id, uint16_t seqno)
{
    struct fr f;

    f.len = fr_icmp(f.b, svm ? &svm_ip : &pvm_ip, 0, id, seqno, "pingpong", 8);
    return f;
}

static void test_icmp_by_id(void **state)
{
    struct fx *fx = fx_new(NULL);
    struct fr p7 = echo(false, 7, 1), p9 = echo(false, 9, 1);
    struct fr s7 = echo(true, 7, 1), s9 = echo(true, 9, 1);
    struct fr p7b = echo(false, 7, 2), s7b = echo(true, 7, 3);

    /* the checksum is not compared */
    s9.b[fr_l4(s9.b) + 2] ^= 0x5a;
    assert_int_equal(pvm(fx, &p7, 1), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &p9, 2), COLO_CMP_OK);
    assert_int_equal(svm(fx, &s9, 3), COLO_CMP_OK); /* id 9 is its own connection */
    assert_int_equal(fx->rel.n, 1);
    assert_out(&fx->rel.f[0], &p9);
    assert_int_equal(svm(fx, &s7, 4), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 2);
    assert_out(&fx->rel.f[1], &p7);
    assert_int_equal(stats(fx).conns, 2);
    /* the echo sequence number is compared */
    assert_int_equal(pvm(fx, &p7b, 5), COLO_CMP_OK);
    assert_int_equal(svm(fx, &s7b, 6), COLO_CMP_MISMATCH);
    assert_int_equal(fx->rel.n, 2);
    fx_free(fx);
}

/* PVM "AB" "CD", SVM "ABCD". */
static void test_tcp_resegment_pvm_split(void **state)
{
    struct fx *fx = fx_new(NULL);
    struct fr ab = seg(false, 1001, 5001, PSH, "AB"), cd = seg(false, 1003, 5001, PSH, "CD");
    struct fr abcd = seg(true, 1001, 5001, PSH, "ABCD");

    handshake(fx, 1000, 0x70000000, 5000);
    assert_int_equal(pvm(fx, &ab, 1), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &cd, 2), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 1);
    assert_int_equal(svm(fx, &abcd, 3), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 3);
    assert_out(&fx->rel.f[1], &ab);
    assert_out(&fx->rel.f[2], &cd);
    assert_int_equal(stats(fx).held_frames, 0);
    fx_free(fx);
}

/* PVM "ABCD", SVM "A" "BCD". */
static void test_tcp_resegment_svm_split(void **state)
{
    struct fx *fx = fx_new(NULL);
    struct fr abcd = seg(false, 1001, 5001, PSH, "ABCD");
    struct fr a = seg(true, 1001, 5001, PSH, "A"), bcd = seg(true, 1002, 5001, PSH, "BCD");

    handshake(fx, 1000, 0x70000000, 5000);
    assert_int_equal(pvm(fx, &abcd, 1), COLO_CMP_OK);
    assert_int_equal(svm(fx, &a, 2), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 1);             /* only the SYN-ACK */
    assert_int_equal(stats(fx).held_frames, 1); /* "A" is used up, "ABCD" waits */
    assert_int_equal(svm(fx, &bcd, 3), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 2);
    assert_out(&fx->rel.f[1], &abcd);
    assert_int_equal(stats(fx).held_frames, 0);
    fx_free(fx);
}

static void test_tcp_svm_first(void **state)
{
    struct fx *fx = fx_new(NULL);
    struct fr p = seg(false, 1001, 5001, PSH, "hello"), s = seg(true, 1001, 5001, PSH, "hello");

    handshake(fx, 1000, 0x70000000, 5000);
    assert_int_equal(svm(fx, &s, 1), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 1);
    assert_int_equal(pvm(fx, &p, 2), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 2);
    assert_out(&fx->rel.f[1], &p);
    assert_int_equal(fx->rel.f[1].arrived, 2);
    fx_free(fx);
}

static void test_tcp_retransmission(void **state)
{
    struct fx *fx = fx_new(NULL);
    struct fr p = seg(false, 1001, 5001, PSH, "ABCD"), s = seg(true, 1001, 5001, PSH, "ABCD");
    struct fr s_cdef = seg(true, 1003, 5001, PSH, "CDEF"), p_ef = seg(false, 1005, 5001, PSH, "EF");
    struct fr p_all = seg(false, 1001, 5001, PSH, "ABCDEF");
    struct colo_cmp_stats st;

    handshake(fx, 1000, 0x70000000, 5000);
    assert_int_equal(pvm(fx, &p, 1), COLO_CMP_OK);
    assert_int_equal(svm(fx, &s, 2), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 2);
    /* the PVM resends matched data: it leaves at once */
    assert_int_equal(pvm(fx, &p, 3), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 3);
    assert_out(&fx->rel.f[2], &p);
    /* the SVM resends: used up, no mismatch, nothing held */
    assert_int_equal(svm(fx, &s, 4), COLO_CMP_OK);
    assert_int_equal(stats(fx).held_frames, 0);
    /* the SVM resends part and adds new bytes; only the new ones are compared */
    assert_int_equal(svm(fx, &s_cdef, 5), COLO_CMP_OK);
    assert_int_equal(stats(fx).held_frames, 1);
    assert_int_equal(pvm(fx, &p_ef, 6), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 4);
    assert_out(&fx->rel.f[3], &p_ef);
    /* a PVM retransmission covering all of it */
    assert_int_equal(pvm(fx, &p_all, 7), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 5);
    assert_out(&fx->rel.f[4], &p_all);
    st = stats(fx);
    assert_int_equal(st.mismatches, 0);
    assert_int_equal(st.held_frames, 0);
    fx_free(fx);
}

static void test_tcp_data_mismatch(void **state)
{
    struct fx *fx = fx_new(NULL);
    struct fr ab = seg(false, 1001, 5001, PSH, "AB"), cd = seg(false, 1003, 5001, PSH, "CD");
    struct fr abxd = seg(true, 1001, 5001, PSH, "ABXD");
    struct fr ef = seg(false, 1005, 5001, PSH, "EF");

    handshake(fx, 1000, 0x70000000, 5000);
    assert_int_equal(pvm(fx, &ab, 1), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &cd, 2), COLO_CMP_OK);
    assert_int_equal(svm(fx, &abxd, 3), COLO_CMP_MISMATCH);
    /* what was verified before the difference leaves; the rest waits for the flush */
    assert_int_equal(fx->rel.n, 2);
    assert_out(&fx->rel.f[1], &ab);
    assert_int_equal(pvm(fx, &ef, 4), COLO_CMP_MISMATCH);
    assert_int_equal(stats(fx).mismatches, 1);
    flush(fx);
    assert_int_equal(fx->take.n, 2);
    assert_out(&fx->take.f[0], &cd);
    assert_out(&fx->take.f[1], &ef);
    fx_free(fx);
}

/* Stricter than QEMU: a PVM pure ACK leaves only once the SVM has acked as far. */
static void test_tcp_pure_ack(void **state)
{
    struct fx *fx = fx_new(NULL);
    struct fr pa = seg(false, 1001, 5101, ACK, NULL);
    struct fr sa_low = seg(true, 1001, 5050, ACK, NULL), sa = seg(true, 1001, 5101, ACK, NULL);
    struct fr pa2 = seg(false, 1001, 5101, ACK, NULL); /* a duplicate ack */
    struct fr pa3 = seg(false, 1001, 5201, ACK, NULL);
    struct fr sdata = seg(true, 1001, 5301, PSH, "x"), pdata = seg(false, 1001, 5201, PSH, "x");

    handshake(fx, 1000, 0x70000000, 5000);
    assert_int_equal(pvm(fx, &pa, 1), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 1);
    assert_int_equal(svm(fx, &sa_low, 2), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 1);
    assert_int_equal(svm(fx, &sa, 3), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 2);
    assert_out(&fx->rel.f[1], &pa);
    assert_int_equal(pvm(fx, &pa2, 4), COLO_CMP_OK); /* acked already by the SVM */
    assert_int_equal(fx->rel.n, 3);
    /* the SVM's ack may come on a data segment; the pure ACK ahead leaves first */
    assert_int_equal(pvm(fx, &pa3, 5), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &pdata, 6), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 3);
    assert_int_equal(svm(fx, &sdata, 7), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 5);
    assert_out(&fx->rel.f[3], &pa3);
    assert_out(&fx->rel.f[4], &pdata);
    assert_int_equal(stats(fx).svm_matched, 4); /* the SYN-ACK, two ACKs, "x" */
    fx_free(fx);
}

/* Data whose bytes match waits while its ack is beyond the SVM's (QEMU: a mismatch). */
static void test_tcp_ack_bound(void **state)
{
    struct fx *fx = fx_new(NULL);
    struct fr p = seg(false, 1001, 5101, PSH, "hello"), s = seg(true, 1001, 5001, PSH, "hello");
    struct fr sa = seg(true, 1006, 5101, ACK, NULL);

    handshake(fx, 1000, 0x70000000, 5000);
    assert_int_equal(pvm(fx, &p, 1), COLO_CMP_OK);
    assert_int_equal(svm(fx, &s, 2), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 1);
    assert_int_equal(stats(fx).held_frames, 1);
    assert_int_equal(stats(fx).mismatches, 0);
    assert_int_equal(svm(fx, &sa, 3), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 2);
    assert_out(&fx->rel.f[1], &p);
    fx_free(fx);
}

static void test_tcp_syn(void **state)
{
    struct fx *fx = fx_new(NULL);
    struct fr d = seg(false, 1001, 5001, PSH, "data"), sd = seg(true, 1001, 5001, PSH, "data");
    struct fr p2 = seg_port(false, 40001, 1000, 5001, SYNA, NULL);
    struct fr s2 = seg_port(true, 40001, 9000, 6001, SYNA, NULL); /* another ack */
    struct fr p3 = seg_port(false, 40002, 1000, 5001, SYNA, NULL);
    struct fr s3 = seg_port(true, 40002, 9000, 0, FR_TH_SYN, NULL);  /* other flags */
    struct fr p4 = seg_port(false, 40003, 1000, 0, FR_TH_SYN, NULL); /* the VM connects */
    struct fr s4 = seg_port(true, 40003, 0xdead0000, 0, FR_TH_SYN, NULL);

    /* a SYN-ACK with its own ISN matches; the streams then meet at the PVM's ISN + 1 */
    handshake(fx, 1000, 0x70000000, 5000);
    assert_int_equal(svm(fx, &sd, 1), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &d, 2), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 2);
    assert_out(&fx->rel.f[1], &d);

    assert_int_equal(pvm(fx, &p2, 3), COLO_CMP_OK);
    assert_int_equal(svm(fx, &s2, 4), COLO_CMP_MISMATCH);
    assert_int_equal(pvm(fx, &p3, 5), COLO_CMP_OK);
    assert_int_equal(svm(fx, &s3, 6), COLO_CMP_MISMATCH);
    assert_int_equal(fx->rel.n, 2);

    assert_int_equal(svm(fx, &s4, 7), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &p4, 8), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 3);
    assert_out(&fx->rel.f[2], &p4);
    /* a retransmitted SYN leaves as well */
    assert_int_equal(pvm(fx, &p4, 9), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 4);
    assert_int_equal(stats(fx).mismatches, 2);
    fx_free(fx);
}

static void test_tcp_fin(void **state)
{
    struct fx *fx = fx_new(NULL);
    uint8_t finack = FR_TH_FIN | FR_TH_ACK;
    struct fr pbye = seg(false, 1001, 5001, finack | FR_TH_PSH, "bye");
    struct fr sbye = seg(true, 1001, 5001, PSH, "bye"), sfin = seg(true, 1004, 5001, finack, NULL);
    struct fr p2 = seg_port(false, 40001, 1001, 5001, finack, NULL);
    struct fr s2 = seg_port(true, 40001, 1001, 5001, PSH, "x");
    struct fr p3 = seg_port(false, 40002, 1001, 5001, finack, NULL);
    struct fr s3 = seg_port(true, 40002, 1001, 5001, finack, NULL);

    handshake(fx, 1000, 0x70000000, 5000);
    assert_int_equal(pvm(fx, &pbye, 1), COLO_CMP_OK);
    assert_int_equal(svm(fx, &sbye, 2), COLO_CMP_OK); /* the bytes, not yet the FIN */
    assert_int_equal(fx->rel.n, 1);
    assert_int_equal(svm(fx, &sfin, 3), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 2);
    assert_out(&fx->rel.f[1], &pbye);

    /* a FIN against a byte */
    handshake_port(fx, 40001, 1000, 0x70000000, 5000);
    assert_int_equal(pvm(fx, &p2, 4), COLO_CMP_OK);
    assert_int_equal(svm(fx, &s2, 5), COLO_CMP_MISMATCH);

    /* FIN at the same position; retransmissions of it from both sides */
    handshake_port(fx, 40002, 1000, 0x70000000, 5000);
    size_t n = fx->rel.n;
    assert_int_equal(svm(fx, &s3, 6), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &p3, 7), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, n + 1);
    assert_out(&fx->rel.f[n], &p3);
    assert_int_equal(svm(fx, &s3, 8), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &p3, 9), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, n + 2);
    assert_int_equal(stats(fx).held_frames, 2); /* only the diverged connection's two */
    assert_int_equal(stats(fx).mismatches, 1);
    fx_free(fx);
}

static void test_tcp_rst(void **state)
{
    struct fx *fx = fx_new(NULL);
    struct fr prst = seg(false, 1001, 5001, FR_TH_RST | FR_TH_ACK, NULL);
    struct fr sack = seg(true, 1001, 5001, ACK, NULL);
    struct fr srst = seg(true, 1001, 5001, FR_TH_RST | FR_TH_ACK, NULL);

    handshake(fx, 1000, 0x70000000, 5000);
    assert_int_equal(pvm(fx, &prst, 1), COLO_CMP_OK);
    assert_int_equal(svm(fx, &sack, 2), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 1);
    assert_int_equal(svm(fx, &srst, 3), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 2);
    assert_out(&fx->rel.f[1], &prst);
    fx_free(fx);
}

/* A connection that predates the checkpoint: no SYN; the streams meet at the later of the
 * two sides' first sequence numbers. */
static void test_tcp_no_syn(void **state)
{
    struct fx *fx = fx_new(NULL);
    struct fr pold = seg(false, 900, 5001, PSH, "old"), pnew = seg(false, 1000, 5001, PSH, "new");
    struct fr snew = seg(true, 1000, 5001, PSH, "new");
    struct fr sold2 = seg_port(true, 40001, 900, 5001, PSH, "old");
    struct fr snew2 = seg_port(true, 40001, 1000, 5001, PSH, "new");
    struct fr pnew2 = seg_port(false, 40001, 1000, 5001, PSH, "new");
    struct fr pbad = seg_port(false, 40002, 1000, 5001, PSH, "new");
    struct fr sbad = seg_port(true, 40002, 1000 + 0x40000000, 5001, PSH, "new");

    /* the PVM retransmits data from before the checkpoint: it was sent then, so it leaves */
    assert_int_equal(pvm(fx, &pold, 1), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 0);
    assert_int_equal(svm(fx, &snew, 2), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 1);
    assert_out(&fx->rel.f[0], &pold);
    assert_int_equal(pvm(fx, &pnew, 3), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 2);
    assert_out(&fx->rel.f[1], &pnew);
    /* the SVM retransmits old data: used up */
    assert_int_equal(svm(fx, &sold2, 4), COLO_CMP_OK);
    assert_int_equal(svm(fx, &snew2, 5), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &pnew2, 6), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 3);
    assert_out(&fx->rel.f[2], &pnew2);
    assert_int_equal(stats(fx).held_frames, 0);
    /* an SVM stream far from the PVM's is not the same stream */
    assert_int_equal(pvm(fx, &pbad, 7), COLO_CMP_OK);
    assert_int_equal(svm(fx, &sbad, 8), COLO_CMP_MISMATCH);
    assert_int_equal(fx->rel.n, 3);
    fx_free(fx);
}

/* An unrewritten SVM stream (its own ISN) after a handshake: MISMATCH at once. */
static void test_tcp_skew(void **state)
{
    struct fx *fx = fx_new(NULL);
    struct fr p = seg(false, 1001, 5001, PSH, "data");
    struct fr s = seg(true, 0x70000001, 5001, PSH, "data");

    handshake(fx, 1000, 0x70000000, 5000);
    assert_int_equal(pvm(fx, &p, 1), COLO_CMP_OK);
    assert_int_equal(svm(fx, &s, 2), COLO_CMP_MISMATCH);
    assert_int_equal(fx->rel.n, 1);
    fx_free(fx);
}

static void test_tcp_seq_wrap(void **state)
{
    struct fx *fx = fx_new(NULL);
    struct fr p = seg(false, 0xffffffffu, 0xfffffff1u, PSH, "ABCD");
    struct fr s1 = seg(true, 0xffffffffu, 0xfffffff1u, PSH, "AB");
    struct fr s2 = seg(true, 0x00000001u, 0xfffffff1u, PSH, "CD");
    struct fr pa = seg(false, 0x00000003u, 0x00000010u, ACK, NULL);
    struct fr sa = seg(true, 0x00000003u, 0x00000010u, ACK, NULL);

    handshake(fx, 0xfffffffeu, 0x70000000, 0xfffffff0u);
    assert_int_equal(pvm(fx, &p, 1), COLO_CMP_OK);
    assert_int_equal(svm(fx, &s1, 2), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 1);
    assert_int_equal(svm(fx, &s2, 3), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 2);
    assert_out(&fx->rel.f[1], &p);
    /* an ack past the wrap is above 0xfffffff1 */
    assert_int_equal(pvm(fx, &pa, 4), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 2);
    assert_int_equal(svm(fx, &sa, 5), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 3);
    assert_out(&fx->rel.f[2], &pa);
    fx_free(fx);
}

static void test_passthrough(void **state)
{
    struct fx *fx = fx_new(NULL);
    struct fr arp, v6, frag, trunc, baddoff;
    struct fr_ip fip = pvm_ip;
    struct colo_cmp_stats st;

    arp.len = fr_arp(arp.b, 1);
    v6.len = fr_ipv6(v6.b, 2);
    fip.frag = 0x2000; /* MF */
    frag.len = fr_udp(frag.b, &fip, 53, 5353, "frag", 4);
    trunc = udp(false, 53, "truncated");
    trunc.len -= 3; /* the IP total length says more than the frame holds */
    baddoff = seg(false, 1001, 5001, PSH, "x");
    baddoff.b[fr_l4(baddoff.b) + 12] = 0x40; /* data offset 4 words */

    assert_int_equal(pvm(fx, &arp, 1), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 1);
    assert_out(&fx->rel.f[0], &arp);
    assert_int_equal(svm(fx, &arp, 2), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &v6, 3), COLO_CMP_OK);
    assert_int_equal(svm(fx, &v6, 4), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &frag, 5), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &trunc, 6), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &baddoff, 7), COLO_CMP_OK);
    assert_int_equal(colo_compare_pvm(fx->c, arp.b, 5, 8), COLO_CMP_OK); /* a runt */
    assert_int_equal(fx->rel.n, 6);
    assert_out(&fx->rel.f[1], &v6);
    assert_out(&fx->rel.f[2], &frag);
    assert_int_equal(fx->rel.f[2].arrived, 5);
    assert_out(&fx->rel.f[3], &trunc);
    assert_out(&fx->rel.f[4], &baddoff);
    assert_int_equal(fx->rel.f[5].len, 5);
    st = stats(fx);
    assert_int_equal(st.passthrough, 6);
    assert_int_equal(st.released, 6);
    assert_int_equal(st.svm_discarded, 2);
    assert_int_equal(st.held_frames, 0);
    assert_int_equal(st.conns, 0);
    assert_int_equal(st.hold_count, 0); /* pass-through is not a hold */
    fx_free(fx);
}

static void test_queue_full_bytes(void **state)
{
    struct fr f1 = udp(false, 1, "one"), f2 = udp(false, 2, "two"), f3 = udp(false, 3, "three");
    struct fr f4 = udp(false, 1, "four"), s1 = udp(true, 1, "one"), f5 = udp(false, 5, "five");
    struct colo_cmp_config cfg = {.max_bytes = f1.len + f2.len + f3.len / 2};
    struct fx *fx = fx_new(&cfg);
    struct colo_cmp_stats st;

    assert_int_equal(pvm(fx, &f1, 1), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &f2, 2), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &f3, 3), COLO_CMP_QUEUE_FULL); /* still held */
    assert_int_equal(stats(fx).held_frames, 3);
    /* full until the flush: SVM frames are dropped, PVM frames held uncompared */
    assert_int_equal(svm(fx, &s1, 4), COLO_CMP_QUEUE_FULL);
    assert_int_equal(fx->rel.n, 0);
    assert_int_equal(pvm(fx, &f4, 5), COLO_CMP_QUEUE_FULL);
    st = stats(fx);
    assert_true(st.full);
    assert_int_equal(st.overflows, 3);
    assert_int_equal(st.held_frames, 4);
    assert_int_equal(st.held_bytes, f1.len + f2.len + f3.len + f4.len);
    assert_int_equal(st.svm_discarded, 1);
    flush(fx);
    assert_int_equal(fx->take.n, 4);
    assert_out(&fx->take.f[0], &f1);
    assert_out(&fx->take.f[1], &f2);
    assert_out(&fx->take.f[2], &f3);
    assert_out(&fx->take.f[3], &f4);
    assert_int_equal(fx->take.f[3].arrived, 5);
    assert_false(stats(fx).full);
    assert_int_equal(pvm(fx, &f5, 6), COLO_CMP_OK);
    assert_int_equal(stats(fx).held_bytes, f5.len);
    fx_free(fx);
}

static void test_max_conns(void **state)
{
    struct colo_cmp_config cfg = {.max_conns = 2};
    struct fx *fx = fx_new(&cfg);
    struct fr a = udp(false, 1, "a"), b = udp(false, 2, "b"), c = udp(false, 3, "c");
    struct fr sa = udp(true, 1, "a"), sc = udp(true, 3, "c");

    assert_int_equal(pvm(fx, &a, 1), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &b, 2), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &c, 3), COLO_CMP_QUEUE_FULL); /* both busy: held, uncompared */
    assert_int_equal(stats(fx).held_frames, 3);
    assert_int_equal(stats(fx).conns, 2);
    /* full until the flush: even a known connection's SVM frame is dropped */
    assert_int_equal(svm(fx, &sa, 4), COLO_CMP_QUEUE_FULL);
    assert_int_equal(fx->rel.n, 0);
    assert_int_equal(stats(fx).svm_discarded, 1);
    flush(fx);
    assert_int_equal(fx->take.n, 3);
    assert_out(&fx->take.f[2], &c);
    /* an idle connection is recycled */
    assert_int_equal(pvm(fx, &a, 4), COLO_CMP_OK);
    assert_int_equal(svm(fx, &sa, 5), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &b, 6), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &c, 7), COLO_CMP_OK);
    assert_int_equal(stats(fx).conns, 2);
    assert_int_equal(svm(fx, &sc, 8), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 2);
    assert_out(&fx->rel.f[0], &a);
    assert_out(&fx->rel.f[1], &c);
    assert_false(stats(fx).full);
    fx_free(fx);
}

static void test_timeout(void **state)
{
    const uint64_t ms = 1000000;
    struct colo_cmp_config cfg = {.timeout_ns = 5 * ms};
    struct fx *fx = fx_new(&cfg);
    struct fr a = udp(false, 1, "a"), sa = udp(true, 1, "a"), b = udp(false, 2, "b");
    struct fr sx = udp(true, 3, "x");

    assert_int_equal(colo_compare_poll(fx->c, 0), COLO_CMP_OK);
    assert_true(colo_compare_next_deadline(fx->c) == UINT64_MAX);
    assert_int_equal(pvm(fx, &a, 100 * ms), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &b, 102 * ms), COLO_CMP_OK);
    assert_int_equal(colo_compare_next_deadline(fx->c), 105 * ms);
    assert_int_equal(colo_compare_poll(fx->c, 105 * ms - 1), COLO_CMP_OK);
    assert_int_equal(colo_compare_poll(fx->c, 50 * ms), COLO_CMP_OK); /* a clock behind */
    /* the oldest leaves: the next one sets the deadline */
    assert_int_equal(svm(fx, &sa, 103 * ms), COLO_CMP_OK);
    assert_int_equal(colo_compare_next_deadline(fx->c), 107 * ms);
    assert_int_equal(colo_compare_poll(fx->c, 107 * ms), COLO_CMP_TIMEOUT);
    assert_int_equal(colo_compare_poll(fx->c, 108 * ms), COLO_CMP_TIMEOUT);
    assert_int_equal(stats(fx).timeouts, 1); /* the same frame, counted once */
    flush(fx);
    assert_int_equal(colo_compare_poll(fx->c, 200 * ms), COLO_CMP_OK);
    /* an SVM frame the PVM never matches times out too */
    assert_int_equal(svm(fx, &sx, 300 * ms), COLO_CMP_OK);
    assert_int_equal(colo_compare_next_deadline(fx->c), 305 * ms);
    assert_int_equal(colo_compare_poll(fx->c, 305 * ms), COLO_CMP_TIMEOUT);
    assert_int_equal(stats(fx).timeouts, 2);
    fx_free(fx);
}

static void test_flush_order(void **state)
{
    struct fx *fx = fx_new(NULL);
    struct fr u1 = udp(false, 1, "u1"), u2 = udp(false, 1, "u2"), u3 = udp(false, 3, "u3");
    struct fr st_ = seg_port(true, 40001, 1001, 5001, PSH, "svm");
    struct fr pt = seg_port(false, 40002, 1001, 5001, PSH, "pvm");
    struct fr s2 = udp(true, 2, "lonely");
    struct colo_cmp_stats st;

    assert_int_equal(pvm(fx, &u1, 1), COLO_CMP_OK);
    assert_int_equal(svm(fx, &st_, 2), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &pt, 3), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &u2, 4), COLO_CMP_OK);
    assert_int_equal(svm(fx, &s2, 5), COLO_CMP_OK);
    assert_int_equal(pvm(fx, &u3, 6), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 0);
    flush(fx);
    assert_int_equal(fx->take.n, 4);
    assert_out(&fx->take.f[0], &u1);
    assert_out(&fx->take.f[1], &pt);
    assert_out(&fx->take.f[2], &u2);
    assert_out(&fx->take.f[3], &u3);
    assert_int_equal(fx->take.f[0].arrived, 1);
    assert_int_equal(fx->take.f[1].arrived, 3);
    assert_int_equal(fx->take.f[2].arrived, 4);
    assert_int_equal(fx->take.f[3].arrived, 6);
    st = stats(fx);
    assert_int_equal(st.flushed, 4);
    assert_int_equal(st.svm_discarded, 2);
    assert_int_equal(st.held_frames, 0);
    assert_int_equal(st.held_bytes, 0);
    assert_int_equal(st.conns, 0);
    assert_int_equal(st.released, 0);
    assert_true(colo_compare_next_deadline(fx->c) == UINT64_MAX);
    /* a flush with nothing held, and one that drops */
    flush(fx);
    assert_int_equal(fx->take.n, 4);
    assert_int_equal(pvm(fx, &u1, 7), COLO_CMP_OK);
    colo_compare_flush(fx->c, NULL, NULL);
    assert_int_equal(stats(fx).held_frames, 0);
    fx_free(fx);
}

static void test_hold_stats(void **state)
{
    struct fx *fx = fx_new(NULL);
    struct colo_cmp_stats st;
    char pay[16];

    /* 100 frames on one connection, all sent at 0; the i-th matched at (i + 1) us */
    for (int i = 0; i < 100; i++) {
        snprintf(pay, sizeof(pay), "frame %d", i);
        struct fr p = udp(false, 7, pay);
        assert_int_equal(pvm(fx, &p, 0), COLO_CMP_OK);
    }
    for (int i = 0; i < 100; i++) {
        snprintf(pay, sizeof(pay), "frame %d", i);
        struct fr s = udp(true, 7, pay);
        assert_int_equal(svm(fx, &s, (uint64_t)(i + 1) * 1000), COLO_CMP_OK);
        assert_int_equal(fx->rel.n, (size_t)i + 1);
    }
    st = stats(fx);
    assert_int_equal(st.hold_count, 100);
    assert_int_equal(st.hold_ns_sum, 5050 * 1000);
    assert_int_equal(st.hold_ns_max, 100000);
    /* true p99 is 99 us; the histogram answers within one bucket above it */
    assert_true(st.hold_p99_ns >= 99000 && st.hold_p99_ns <= 99000 + 99000 / 8);
    assert_int_equal(colo_compare_hold_p99_ns(fx->c), st.hold_p99_ns);
    uint64_t med = colo_compare_hold_quantile_ns(fx->c, 500);
    assert_true(med >= 50000 && med <= 50000 + 50000 / 8);
    assert_int_equal(colo_compare_hold_quantile_ns(fx->c, 1000), 100000);
    fx_free(fx);
}

/* No memory for a copy: the frame is not taken (the caller keeps a PVM frame), counted. */
static void test_nomem(void **state)
{
    struct fx *fx = fx_new(NULL);
    struct fr p = udp(false, 53, "answer"), s = udp(true, 53, "answer"), arp;
    struct colo_cmp_stats st;

    arp.len = fr_arp(arp.b, 1);
    fail_malloc = true;
    assert_int_equal(pvm(fx, &p, 1), COLO_CMP_NOMEM);
    assert_int_equal(svm(fx, &s, 2), COLO_CMP_NOMEM);
    assert_int_equal(pvm(fx, &arp, 3), COLO_CMP_OK); /* pass-through copies nothing */
    fail_malloc = false;
    st = stats(fx);
    assert_int_equal(st.nomem, 2);
    assert_int_equal(st.held_frames, 0);
    assert_int_equal(st.svm_discarded, 1);
    assert_int_equal(fx->rel.n, 1);
    assert_int_equal(pvm(fx, &p, 4), COLO_CMP_OK);
    assert_int_equal(svm(fx, &s, 5), COLO_CMP_OK);
    assert_int_equal(fx->rel.n, 2);
    assert_out(&fx->rel.f[1], &p);
    fx_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_udp_match),
        cmocka_unit_test(test_udp_mismatch),
        cmocka_unit_test(test_udp_svm_ahead_reordered),
        cmocka_unit_test(test_ip_options),
        cmocka_unit_test(test_icmp_by_id),
        cmocka_unit_test(test_tcp_resegment_pvm_split),
        cmocka_unit_test(test_tcp_resegment_svm_split),
        cmocka_unit_test(test_tcp_svm_first),
        cmocka_unit_test(test_tcp_retransmission),
        cmocka_unit_test(test_tcp_data_mismatch),
        cmocka_unit_test(test_tcp_pure_ack),
        cmocka_unit_test(test_tcp_ack_bound),
        cmocka_unit_test(test_tcp_syn),
        cmocka_unit_test(test_tcp_fin),
        cmocka_unit_test(test_tcp_rst),
        cmocka_unit_test(test_tcp_no_syn),
        cmocka_unit_test(test_tcp_skew),
        cmocka_unit_test(test_tcp_seq_wrap),
        cmocka_unit_test(test_passthrough),
        cmocka_unit_test(test_queue_full_bytes),
        cmocka_unit_test(test_max_conns),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_flush_order),
        cmocka_unit_test(test_hold_stats),
        cmocka_unit_test(test_nomem),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
