/* netkv.c: a UDP key-value service on virtio-net (ARP, ICMP echo, SET/GET/DEL with a sequence). */
#include "rt.h"
#include "virtio.h"

/*
 * Protocol (UDP port 7000, one request per datagram, ASCII, an optional trailing "\n" or
 * "\r\n" is ignored; every reply ends in "\n" and its last token is seq, the number of
 * mutations applied so far):
 *   SET <key> <value>  ->  OK <seq>           (value: the rest of the datagram)
 *   GET <key>          ->  VALUE <value> <seq> | NONE <seq>
 *   DEL <key>          ->  OK <seq> (removed: a mutation) | NONE <seq> (absent)
 *   anything else      ->  ERR <reason> <seq>  (reason: one word)
 * Keys: 1..64 bytes 0x21..0x7e. Values: 1..256 bytes 0x20..0x7e. A reply is sent only after
 * the request has been applied to the table in guest RAM.
 */

#define KV_PORT 7000

#define KEY_MAX    64
#define VALUE_MAX  256
#define TABLE_SIZE 16384u               /* slots, a power of two */
#define KEYS_MAX   (TABLE_SIZE / 8 * 7) /* keys stored at most (load factor 7/8) */

#define VIRTIO_NET_F_MAC 5
#define NET_HDR_LEN      12 /* struct virtio_net_hdr with num_buffers (VERSION_1) */
#define BUF_SIZE         2048
#define NRX              VIO_QUEUE_SIZE
#define NTX              VIO_QUEUE_SIZE

#define ETH_HLEN 14 /* Ethernet header */
#define IP_HLEN  20 /* IPv4 header without options (what replies carry) */
#define UDP_HLEN 8
#define ARP_LEN  28 /* ARP for IPv4 over Ethernet */

#define ETH_P_IP     0x0800
#define ETH_P_ARP    0x0806
#define IPPROTO_ICMP 1
#define IPPROTO_UDP  17

struct entry {
    uint8_t used;
    uint8_t klen;
    uint16_t vlen;
    char key[KEY_MAX];
    char value[VALUE_MAX];
};

static struct entry table[TABLE_SIZE];
static uint64_t nkeys, seq;

static struct vio_dev dev;
static struct vio_queue rxq, txq;
static uint8_t rxbuf[NRX][BUF_SIZE] __attribute__((aligned(64)));
static uint8_t txbuf[NTX][BUF_SIZE] __attribute__((aligned(64)));
static uint16_t rx_of_head[VIO_QUEUE_SIZE]; /* RX buffer index behind a descriptor head */
static uint16_t tx_of_head[VIO_QUEUE_SIZE];
static uint16_t tx_free[NTX]; /* stack of free TX buffers */
static unsigned ntx_free;
static int tx_pending; /* TX chains made available since the last kick */
static int irq_mode;   /* irq=1: sleep in rt_wait_irq instead of spinning */

static uint8_t my_mac[6];
static uint32_t my_ip; /* host byte order */
static uint16_t ip_id;

/* ---- byte helpers (network byte order) ---- */

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

/* One's-complement sum of n bytes (big-endian 16-bit words), not yet folded. */
static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t n)
{
    for (; n > 1; p += 2, n -= 2)
        sum += get16(p);
    if (n)
        sum += (uint32_t)p[0] << 8;
    return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* UDP checksum over the pseudo header and the datagram at udp (length len, checksum field
 * included as it is). */
static uint16_t udp_csum(const uint8_t *ip, const uint8_t *udp, uint16_t len)
{
    uint32_t sum = csum_add(0, ip + 12, 8); /* source and destination addresses */
    sum += IPPROTO_UDP + len;
    return csum_fold(csum_add(sum, udp, len));
}

/* ---- the table ---- */

static uint64_t key_hash(const char *k, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)k[i]) * 0x100000001b3ull;
    return h;
}

/* The slot holding key, or the empty slot where it would go. */
static struct entry *lookup(const char *k, size_t n)
{
    for (uint32_t i = (uint32_t)key_hash(k, n) % TABLE_SIZE;; i = (i + 1) % TABLE_SIZE) {
        struct entry *e = &table[i];
        if (!e->used || (e->klen == n && !memcmp(e->key, k, n)))
            return e;
    }
}

/* Remove e, shifting later members of its probe run back (no tombstones). */
static void table_remove(struct entry *e)
{
    uint32_t hole = (uint32_t)(e - table);
    for (uint32_t i = (hole + 1) % TABLE_SIZE; table[i].used; i = (i + 1) % TABLE_SIZE) {
        uint32_t home = (uint32_t)key_hash(table[i].key, table[i].klen) % TABLE_SIZE;
        /* table[i] may move to hole if hole lies on its probe path: home..i (cyclically) */
        if ((i - home) % TABLE_SIZE >= (i - hole) % TABLE_SIZE) {
            table[hole] = table[i];
            hole = i;
        }
    }
    table[hole].used = 0;
    nkeys--;
}

/* ---- requests ---- */

static int key_ok(const char *k, size_t n)
{
    if (!n || n > KEY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (k[i] < 0x21 || k[i] > 0x7e)
            return 0;
    return 1;
}

static int value_ok(const char *v, size_t n)
{
    if (!n || n > VALUE_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] < 0x20 || v[i] > 0x7e)
            return 0;
    return 1;
}

/* Apply one request (req, n bytes) and write the reply into out (returns its length). */
static size_t serve(const char *req, size_t n, char *out, size_t outsz)
{
    if (n && req[n - 1] == '\n')
        n--;
    if (n && req[n - 1] == '\r')
        n--;
    if (n < 4 || req[3] != ' ')
        return (size_t)rt_snprintf(out, outsz, "ERR badcommand %lu\n", seq);

    const char *key = req + 4, *end = req + n, *sp = key;
    while (sp < end && *sp != ' ')
        sp++;
    size_t klen = (size_t)(sp - key);
    const char *val = sp < end ? sp + 1 : end;
    size_t vlen = (size_t)(end - val);
    int is_set = !memcmp(req, "SET", 3);

    if (!is_set && memcmp(req, "GET", 3) && memcmp(req, "DEL", 3))
        return (size_t)rt_snprintf(out, outsz, "ERR badcommand %lu\n", seq);
    if (!key_ok(key, klen))
        return (size_t)rt_snprintf(out, outsz, "ERR badkey %lu\n", seq);
    if (is_set ? !value_ok(val, vlen) : sp != end)
        return (size_t)rt_snprintf(out, outsz, "ERR %s %lu\n", is_set ? "badvalue" : "badargs",
                                   seq);

    struct entry *e = lookup(key, klen);
    if (is_set) {
        if (!e->used) {
            if (nkeys >= KEYS_MAX)
                return (size_t)rt_snprintf(out, outsz, "ERR full %lu\n", seq);
            e->used = 1;
            e->klen = (uint8_t)klen;
            memcpy(e->key, key, klen);
            nkeys++;
        }
        e->vlen = (uint16_t)vlen;
        memcpy(e->value, val, vlen);
        seq++;
        return (size_t)rt_snprintf(out, outsz, "OK %lu\n", seq);
    }
    if (!e->used)
        return (size_t)rt_snprintf(out, outsz, "NONE %lu\n", seq);
    if (req[0] == 'G')
        return (size_t)rt_snprintf(out, outsz, "VALUE %.*s %lu\n", (int)e->vlen, e->value, seq);
    table_remove(e);
    seq++;
    return (size_t)rt_snprintf(out, outsz, "OK %lu\n", seq);
}

/* ---- transmit ---- */

static void tx_reclaim(void)
{
    uint32_t len;
    int head;
    while ((head = vio_reap(&txq, &len)) >= 0)
        tx_free[ntx_free++] = tx_of_head[head];
}

/* A free TX buffer (its Ethernet frame starts at NET_HDR_LEN); waits for the device if needed. */
static unsigned tx_get(void)
{
    for (unsigned long spins = 1; !ntx_free; spins++) {
        if (tx_pending) {
            vio_kick(&txq);
            tx_pending = 0;
        }
        tx_reclaim();
        if (irq_mode && !ntx_free) {
            /* TX completions interrupt only while we wait for one */
            uint64_t seen = rt_irq_count();
            vio_queue_irq(&txq, 1);
            tx_reclaim();
            if (!ntx_free)
                rt_wait_irq(seen);
            vio_queue_irq(&txq, 0);
        }
        if ((irq_mode || spins % (1ul << 20) == 0) && vio_needs_reset(&dev)) {
            rt_printf("netkv: the device needs a reset\n");
            rt_exit(VIO_EXIT_DEVICE);
        }
    }
    unsigned b = tx_free[--ntx_free];
    memset(txbuf[b], 0, NET_HDR_LEN);
    return b;
}

/* Queue buffer b holding an Ethernet frame of len bytes (kicked at the end of the batch). */
static void tx_put(unsigned b, size_t len)
{
    struct vio_buf vb = {txbuf[b], (uint32_t)(NET_HDR_LEN + len), 0};
    int head = vio_submit(&txq, &vb, 1); /* cannot fail: one descriptor per buffer */
    tx_of_head[head] = (uint16_t)b;
    tx_pending = 1;
}

/* Ethernet header of a reply to frame f. */
static void eth_reply(uint8_t *o, const uint8_t *f, uint16_t type)
{
    memcpy(o, f + 6, 6);
    memcpy(o + 6, my_mac, 6);
    put16(o + 12, type);
}

/* ---- receive ---- */

static void arp(const uint8_t *f, size_t len)
{
    const uint8_t *a = f + ETH_HLEN;
    if (len < ETH_HLEN + ARP_LEN || get16(a) != 1 || get16(a + 2) != ETH_P_IP || a[4] != 6 ||
        a[5] != 4 || get16(a + 6) != 1 || get32(a + 24) != my_ip)
        return;
    unsigned b = tx_get();
    uint8_t *o = txbuf[b] + NET_HDR_LEN, *r = o + ETH_HLEN;
    eth_reply(o, f, ETH_P_ARP);
    memcpy(r, a, 6); /* htype, ptype, hlen, plen */
    put16(r + 6, 2); /* reply */
    memcpy(r + 8, my_mac, 6);
    put32(r + 14, my_ip);
    memcpy(r + 18, a + 8, 10); /* their hardware and protocol address */
    tx_put(b, ETH_HLEN + ARP_LEN);
}

/* IPv4 header for a reply of payload bytes to the sender of ip. */
static void ip_reply(uint8_t *o, const uint8_t *ip, uint8_t proto, size_t payload)
{
    o[0] = 0x45;
    o[1] = 0;
    put16(o + 2, (uint16_t)(IP_HLEN + payload));
    put16(o + 4, ip_id++);
    put16(o + 6, 0x4000); /* DF */
    o[8] = 64;
    o[9] = proto;
    put16(o + 10, 0);
    put32(o + 12, my_ip);
    memcpy(o + 16, ip + 12, 4);
    put16(o + 10, csum_fold(csum_add(0, o, IP_HLEN)));
}

static void icmp(const uint8_t *f, const uint8_t *ip, const uint8_t *p, size_t len)
{
    if (len < 8 || p[0] != 8 || csum_fold(csum_add(0, p, len)) ||
        ETH_HLEN + IP_HLEN + len > BUF_SIZE - NET_HDR_LEN)
        return;
    unsigned b = tx_get();
    uint8_t *o = txbuf[b] + NET_HDR_LEN, *r = o + ETH_HLEN + IP_HLEN;
    eth_reply(o, f, ETH_P_IP);
    ip_reply(o + ETH_HLEN, ip, IPPROTO_ICMP, len);
    memcpy(r, p, len);
    r[0] = 0; /* echo reply */
    put16(r + 2, 0);
    put16(r + 2, csum_fold(csum_add(0, r, len)));
    tx_put(b, ETH_HLEN + IP_HLEN + len);
}

static void udp(const uint8_t *f, const uint8_t *ip, const uint8_t *u, size_t len)
{
    if (len < UDP_HLEN || get16(u + 2) != KV_PORT || get16(u + 4) != len ||
        (get16(u + 6) && udp_csum(ip, u, (uint16_t)len)))
        return;
    unsigned b = tx_get();
    uint8_t *o = txbuf[b] + NET_HDR_LEN, *r = o + ETH_HLEN + IP_HLEN;
    size_t n = serve((const char *)u + UDP_HLEN, len - UDP_HLEN, (char *)r + UDP_HLEN,
                     BUF_SIZE - NET_HDR_LEN - ETH_HLEN - IP_HLEN - UDP_HLEN);
    eth_reply(o, f, ETH_P_IP);
    ip_reply(o + ETH_HLEN, ip, IPPROTO_UDP, UDP_HLEN + n);
    put16(r, KV_PORT);
    memcpy(r + 2, u, 2); /* their port */
    put16(r + 4, (uint16_t)(UDP_HLEN + n));
    put16(r + 6, 0);
    uint16_t c = udp_csum(o + ETH_HLEN, r, (uint16_t)(UDP_HLEN + n));
    put16(r + 6, c ? c : 0xffff);
    tx_put(b, ETH_HLEN + IP_HLEN + UDP_HLEN + n);
}

static void frame(const uint8_t *f, size_t len)
{
    if (len < ETH_HLEN)
        return;
    uint16_t type = get16(f + 12);
    if (type == ETH_P_ARP) {
        arp(f, len);
        return;
    }
    if (type != ETH_P_IP || memcmp(f, my_mac, 6))
        return;
    const uint8_t *ip = f + ETH_HLEN;
    size_t ihl = (size_t)(ip[0] & 15) * 4;
    if (len < ETH_HLEN + IP_HLEN || ip[0] >> 4 != 4 || ihl < IP_HLEN || len < ETH_HLEN + ihl)
        return;
    size_t tot = get16(ip + 2);
    if (tot < ihl || ETH_HLEN + tot > len || get32(ip + 16) != my_ip || (get16(ip + 6) & 0x3fff) ||
        csum_fold(csum_add(0, ip, ihl)))
        return; /* truncated, not ours, a fragment, or damaged */
    if (ip[9] == IPPROTO_UDP)
        udp(f, ip, ip + ihl, tot - ihl);
    else if (ip[9] == IPPROTO_ICMP)
        icmp(f, ip, ip + ihl, tot - ihl);
}

static void rx_post(unsigned b)
{
    struct vio_buf vb = {rxbuf[b], BUF_SIZE, 1};
    int head = vio_submit(&rxq, &vb, 1); /* cannot fail: one descriptor per buffer */
    rx_of_head[head] = (uint16_t)b;
}

/* ---- setup ---- */

/* ip=A.B.C.D/N (the prefix length is accepted and not needed: netkv only replies). */
static int parse_ip(const char *cmd, uint32_t *ip, unsigned *prefix)
{
    const char *p = cmd;
    while (*p && !(!strncmp(p, "ip=", 3) && (p == cmd || p[-1] == ' ')))
        p++;
    if (!*p)
        return -1;
    p += 3;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned o = 0, nd = 0;
        for (; *p >= '0' && *p <= '9' && nd < 4; p++, nd++)
            o = o * 10 + (unsigned)(*p - '0');
        if (!nd || o > 255 || *p != (i < 3 ? '.' : '/'))
            return -1;
        p++;
        v = v << 8 | o;
    }
    unsigned n = 0, nd = 0;
    for (; *p >= '0' && *p <= '9' && nd < 3; p++, nd++)
        n = n * 10 + (unsigned)(*p - '0');
    if (!nd || n > 32 || (*p && *p != ' '))
        return -1;
    *ip = v;
    *prefix = n;
    return 0;
}

int main(void)
{
    unsigned prefix;
    if (parse_ip(rt_cmdline(), &my_ip, &prefix) < 0) {
        rt_printf("netkv: need ip=A.B.C.D/N on the command line\n");
        return RT_EXIT_CONFIG;
    }
    if (vio_find(VIRTIO_ID_NET, &dev) < 0) {
        rt_printf("netkv: no virtio-net device\n");
        return RT_EXIT_CONFIG;
    }
    irq_mode = vio_irq_setup(&dev, "netkv");
    if (vio_start(&dev, 1ull << VIRTIO_NET_F_MAC) < 0 || vio_queue_init(&dev, &rxq, 0) < 0 ||
        vio_queue_init(&dev, &txq, 1) < 0)
        return VIO_EXIT_DEVICE;
    if (irq_mode)
        vio_queue_irq(&txq, 0); /* RX interrupts wake the loop; TX ones only tx_get */
    if (dev.features & (1ull << VIRTIO_NET_F_MAC)) {
        for (unsigned i = 0; i < 6; i++)
            my_mac[i] = vio_cfg8(&dev, i);
    } else {
        static const uint8_t def[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
        memcpy(my_mac, def, 6);
    }
    for (unsigned b = 0; b < rxq.num; b++)
        rx_post(b);
    for (unsigned b = 0; b < txq.num; b++)
        tx_free[ntx_free++] = (uint16_t)b;
    if (vio_driver_ok(&dev) < 0)
        return VIO_EXIT_DEVICE;
    vio_kick(&rxq);
    rt_printf("netkv ready ip=%u.%u.%u.%u/%u mac=%02x:%02x:%02x:%02x:%02x:%02x port=%u\n",
              my_ip >> 24, my_ip >> 16 & 255, my_ip >> 8 & 255, my_ip & 255, prefix, my_mac[0],
              my_mac[1], my_mac[2], my_mac[3], my_mac[4], my_mac[5], KV_PORT);

    /* irq mode: the interrupt count is printed whenever it reaches a power of two (netkv never
     * ends, so there is no summary line to put it in). */
    uint64_t report = 1;
    for (unsigned long idle = 1;; idle++) {
        uint64_t seen = rt_irq_count();
        uint32_t len;
        int head, got = 0;
        while ((head = vio_reap(&rxq, &len)) >= 0) {
            unsigned b = rx_of_head[head];
            if (len > NET_HDR_LEN && len <= BUF_SIZE)
                frame(rxbuf[b] + NET_HDR_LEN, len - NET_HDR_LEN);
            rx_post(b);
            got = 1;
        }
        if (got) {
            vio_kick(&rxq);
            idle = 0;
        }
        if (tx_pending) {
            vio_kick(&txq);
            tx_pending = 0;
        }
        tx_reclaim();
        /* irq mode: a device that stopped would leave us asleep, so look before each sleep */
        if ((irq_mode ? !got : idle % (1ul << 24) == 0) && vio_needs_reset(&dev)) {
            rt_printf("netkv: the device needs a reset\n");
            return VIO_EXIT_DEVICE;
        }
        if (irq_mode) {
            if (seen >= report) {
                rt_printf("netkv irqs=%lu\n", seen);
                while (report <= seen)
                    report <<= 1;
            }
            if (!got)
                rt_wait_irq(seen);
        }
    }
}
