/* frames.h: test frames for the COLO compare and rewriter: Ethernet + IPv4 (options too) + TCP,
 * UDP or ICMP with valid checksums, ARP, IPv6, and checksum checks computed from scratch.
 * Header-only, for tests. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FR_MAX    2048
#define FR_ETH    14
#define FR_TH_FIN 0x01
#define FR_TH_SYN 0x02
#define FR_TH_RST 0x04
#define FR_TH_PSH 0x08
#define FR_TH_ACK 0x10

struct fr_ip {
    uint32_t src, dst;
    uint16_t id;
    uint8_t ttl;
    uint8_t opt_words; /* IPv4 options: this many 4-byte words of NOPs (IHL = 5 + opt_words) */
    uint16_t frag;     /* the flags/fragment-offset field (0x2000: MF) */
};

struct fr_tcp {
    uint16_t sport, dport;
    uint32_t seq, ack;
    uint8_t flags;
    uint16_t win;
    const uint8_t *opts; /* TCP options, opts_len a multiple of 4 */
    size_t opts_len;
};

static inline void fr_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void fr_put32(uint8_t *p, uint32_t v)
{
    fr_put16(p, (uint16_t)(v >> 16));
    fr_put16(p + 2, (uint16_t)v);
}

static inline uint16_t fr_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t fr_get32(const uint8_t *p)
{
    return (uint32_t)fr_get16(p) << 16 | fr_get16(p + 2);
}

/* The one's complement sum of n bytes (an odd last byte padded with zero), unfolded. */
static inline uint32_t fr_sum(const uint8_t *p, size_t n, uint32_t acc)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        acc += fr_get16(p + i);
    if (n & 1)
        acc += (uint32_t)p[n - 1] << 8;
    return acc;
}

static inline uint16_t fr_fold(uint32_t acc)
{
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)acc;
}

/* Offset of the L4 header of an IPv4 frame. */
static inline size_t fr_l4(const uint8_t *f)
{
    return FR_ETH + (size_t)(f[FR_ETH] & 0xf) * 4;
}

static inline size_t fr_l4_len(const uint8_t *f)
{
    return fr_get16(f + FR_ETH + 2) - (size_t)(f[FR_ETH] & 0xf) * 4;
}

/* The pseudo-header sum of an IPv4 frame's L4 segment. */
static inline uint32_t fr_pseudo(const uint8_t *f)
{
    const uint8_t *ip = f + FR_ETH;

    return fr_sum(ip + 12, 8, 0) + ip[9] + (uint32_t)fr_l4_len(f);
}

/* Ethernet + IPv4 header for an l4len-byte segment of proto; returns the L4 offset. */
static inline size_t fr_ipv4(uint8_t *f, const struct fr_ip *ip, uint8_t proto, size_t l4len)
{
    size_t ihl = 20 + 4 * (size_t)ip->opt_words;
    uint8_t *h = f + FR_ETH;

    memset(f, 0, FR_ETH + ihl);
    memcpy(f, "\x52\x54\x00\x00\x00\x02\x52\x54\x00\x00\x00\x01", 12);
    fr_put16(f + 12, 0x0800);
    h[0] = (uint8_t)(0x40 | ihl / 4);
    fr_put16(h + 2, (uint16_t)(ihl + l4len));
    fr_put16(h + 4, ip->id);
    fr_put16(h + 6, ip->frag);
    h[8] = ip->ttl ? ip->ttl : 64;
    h[9] = proto;
    fr_put32(h + 12, ip->src);
    fr_put32(h + 16, ip->dst);
    memset(h + 20, 1, ihl - 20); /* NOP options */
    fr_put16(h + 10, (uint16_t)~fr_fold(fr_sum(h, ihl, 0)));
    return FR_ETH + ihl;
}

static inline size_t fr_tcp(uint8_t *f, const struct fr_ip *ip, const struct fr_tcp *t,
                            const void *pay, size_t len)
{
    size_t hl = 20 + t->opts_len;
    size_t l4 = fr_ipv4(f, ip, 6, hl + len);
    uint8_t *h = f + l4;

    memset(h, 0, 20);
    fr_put16(h, t->sport);
    fr_put16(h + 2, t->dport);
    fr_put32(h + 4, t->seq);
    fr_put32(h + 8, t->ack);
    h[12] = (uint8_t)(hl / 4 << 4);
    h[13] = t->flags;
    fr_put16(h + 14, t->win ? t->win : 65535);
    if (t->opts_len)
        memcpy(h + 20, t->opts, t->opts_len);
    if (len)
        memcpy(h + hl, pay, len);
    fr_put16(h + 16, (uint16_t)~fr_fold(fr_sum(h, hl + len, fr_pseudo(f))));
    return l4 + hl + len;
}

static inline size_t fr_udp(uint8_t *f, const struct fr_ip *ip, uint16_t sport, uint16_t dport,
                            const void *pay, size_t len)
{
    size_t l4 = fr_ipv4(f, ip, 17, 8 + len);
    uint8_t *h = f + l4;

    fr_put16(h, sport);
    fr_put16(h + 2, dport);
    fr_put16(h + 4, (uint16_t)(8 + len));
    fr_put16(h + 6, 0);
    memcpy(h + 8, pay, len);
    uint16_t ck = (uint16_t)~fr_fold(fr_sum(h, 8 + len, fr_pseudo(f)));
    fr_put16(h + 6, ck ? ck : 0xffff);
    return l4 + 8 + len;
}

static inline size_t fr_icmp(uint8_t *f, const struct fr_ip *ip, uint8_t type, uint16_t id,
                             uint16_t seqno, const void *pay, size_t len)
{
    size_t l4 = fr_ipv4(f, ip, 1, 8 + len);
    uint8_t *h = f + l4;

    h[0] = type;
    h[1] = 0;
    fr_put16(h + 2, 0);
    fr_put16(h + 4, id);
    fr_put16(h + 6, seqno);
    memcpy(h + 8, pay, len);
    fr_put16(h + 2, (uint16_t)~fr_fold(fr_sum(h, 8 + len, 0)));
    return l4 + 8 + len;
}

/* An ARP request, padded to 60 bytes; tag in its last byte. */
static inline size_t fr_arp(uint8_t *f, uint8_t tag)
{
    memset(f, 0, 60);
    memset(f, 0xff, 6);
    fr_put16(f + 12, 0x0806);
    fr_put16(f + 14, 1);
    fr_put16(f + 16, 0x0800);
    f[18] = 6;
    f[19] = 4;
    fr_put16(f + 20, 1);
    f[59] = tag;
    return 60;
}

/* An IPv6 frame with an empty UDP-ish payload; tag in its last byte. */
static inline size_t fr_ipv6(uint8_t *f, uint8_t tag)
{
    memset(f, 0, 70);
    fr_put16(f + 12, 0x86dd);
    f[14] = 0x60;
    fr_put16(f + 18, 16);
    f[20] = 17;
    f[21] = 64;
    f[69] = tag;
    return 70;
}

/* The IPv4 header and L4 checksums of f check out (the sum over each folds to 0xffff). */
static inline bool fr_csum_ok(const uint8_t *f)
{
    const uint8_t *ip = f + FR_ETH;
    size_t ihl = (size_t)(ip[0] & 0xf) * 4, l4 = fr_l4(f), n = fr_l4_len(f);

    if (fr_fold(fr_sum(ip, ihl, 0)) != 0xffff)
        return false;
    if (ip[9] == 1)
        return fr_fold(fr_sum(f + l4, n, 0)) == 0xffff;
    return fr_fold(fr_sum(f + l4, n, fr_pseudo(f))) == 0xffff;
}

/* The TCP checksum computed from scratch (its field taken as zero). */
static inline uint16_t fr_tcp_csum_fresh(const uint8_t *f)
{
    size_t l4 = fr_l4(f), n = fr_l4_len(f);
    uint32_t acc = fr_sum(f + l4, n, fr_pseudo(f)) - fr_get16(f + l4 + 16);

    /* fr_sum never wraps 32 bits here, and the field was added once: take it back */
    return (uint16_t)~fr_fold(acc);
}

static inline uint32_t fr_tcp_seq(const uint8_t *f)
{
    return fr_get32(f + fr_l4(f) + 4);
}

static inline uint32_t fr_tcp_ack(const uint8_t *f)
{
    return fr_get32(f + fr_l4(f) + 8);
}
