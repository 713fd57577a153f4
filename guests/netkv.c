/* netkv.c: a key-value service on virtio-net (UDP, TCP, ARP, ICMP echo; SET/GET/DEL, seq). */
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
 *
 * TCP port 7001: the same requests as lines ending in "\n" ("\r\n" tolerated) anywhere in the
 * byte stream; each gets the line UDP would send, in order. A line longer than LINE_MAX bytes
 * is answered from its first LINE_MAX bytes (always an ERR) and the rest of it skipped. A last
 * line without "\n" before the client's FIN is answered too.
 *
 * diverge=N on the command line (0, the default: never): every Nth reply, counting all replies
 * of both protocols in guest RAM (so two replicas of the VM count alike), starts with a token
 * "~" + 16 lowercase hex digits of the TSC + " ", e.g. "~00000012a05f2c4e OK 7\n": the
 * replicas' replies then differ there (COLO must checkpoint). Strip the token to parse.
 *
 * The TCP server, one connection per client (address, port), passive open only:
 *
 *   (free) --SYN--> SYN_RCVD --ACK of our SYN--> ESTABLISHED --FIN--> CLOSE_WAIT
 *     ^              | SYN again: the same SYN-ACK (our ISN)               | every line answered
 *     |              |                                                     v (replies, then FIN)
 *     +------------- | ---------------- ACK of our FIN ---------------- LAST_ACK
 *     +-- any state: RST in the window, or RTO_TRIES+1 timeouts without progress (we send RST)
 *
 *  - The ISN is the mixed TSC: two replicas pick different ones (tandem's COLO rewriter maps
 *    them). Everything else follows from the input frames alone: the same frames give the
 *    same output byte stream (segment boundaries may differ where a timer fired).
 *  - In order only: a segment not starting at rcv_nxt loses its data and FIN (its ACK still
 *    counts) and is answered with a duplicate ACK, unless it is only partly old (its new tail
 *    is kept). No SACK, window scaling or timestamps; MSS option 1460 in the SYN-ACK; segments
 *    of min(1460, the client's MSS).
 *  - Receive: TCP_RBUF bytes per connection hold what is not answered yet (a partial line, or
 *    lines waiting for send-buffer room); the window advertised is what is left of it, so it
 *    stays at 16 KiB in practice and its right edge never moves back.
 *  - Send: replies wait in TCP_SBUF bytes per connection until acknowledged; a line is answered
 *    only when REPLY_MAX bytes are free there. Replies leave at once (no Nagle, no delayed
 *    ACK); all the replies for one segment's lines may share segments; a segment that gets no
 *    reply (a partial line, a FIN) gets a pure ACK. The client's window is honoured (a closed
 *    one is probed with one byte). No congestion control: a LAN service.
 *  - Retransmission: RTO_INIT_MS after the oldest unacknowledged byte (SYN and FIN included)
 *    was sent, everything unacknowledged is sent again (go-back-N), the RTO doubles up to
 *    RTO_MAX_MS; after RTO_TRIES such retransmissions without an ACK of new data, the next
 *    timeout sends RST and frees the slot (~30 s). An ACK of new data resets the RTO. In irq mode
 * the local APIC timer wakes the guest, armed only while some connection has bytes in flight.
 *  - TCP_CONNS connections at once; a SYN finding no free slot is refused with RST. Segments
 *    for no connection get RST (never in answer to an RST).
 */

#define KV_PORT  7000
#define TCP_PORT 7001

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
#define TCP_HLEN 20 /* TCP header without options */

#define ETH_P_IP     0x0800
#define ETH_P_ARP    0x0806
#define IPPROTO_ICMP 1
#define IPPROTO_TCP  6
#define IPPROTO_UDP  17

#define TCP_MSS     1460
#define TCP_MSS_DEF 536 /* a client that sends no MSS option */
#define TCP_CONNS   64
#define TCP_RBUF    16384 /* per connection: received bytes not answered yet (the window) */
#define TCP_SBUF    8192  /* per connection: reply bytes not acknowledged yet */
#define LINE_MAX    1024  /* longer TCP lines are answered from this prefix (an ERR) */
#define REPLY_MAX   320   /* a reply's bound: nonce 18 + "VALUE " 6 + 256 + " " 20 digits "\n" */
#define RTO_INIT_MS 200
#define RTO_MAX_MS  4000
#define RTO_TRIES   10

#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_PSH 0x08
#define TH_ACK 0x10

enum tcp_state { TCP_FREE = 0, TCP_SYN_RCVD, TCP_ESTABLISHED, TCP_CLOSE_WAIT, TCP_LAST_ACK };

/* One connection. Sequence space: our SYN is iss; reply byte sbuf[i] is snd_una + i once the
 * SYN is acknowledged; our FIN (LAST_ACK) follows the last reply byte, at snd_una + slen. */
struct tcb {
    uint8_t state;
    uint8_t skipping; /* discarding the rest of an overlong line up to its "\n" */
    uint8_t tries;    /* timeouts since the last ACK of new data */
    uint8_t peer_mac[6];
    uint16_t peer_port;
    uint32_t peer_ip;
    uint32_t mss; /* segment size we send */
    uint32_t iss, irs;
    uint32_t snd_una, snd_nxt, snd_max; /* snd_max: end of the highest sequence sent */
    uint32_t snd_wnd;                   /* the client's window */
    uint32_t rcv_nxt;
    uint32_t rlen, slen;
    uint64_t rto;      /* TSC ticks */
    uint64_t deadline; /* TSC of the next retransmission; 0: nothing in flight */
    char rbuf[TCP_RBUF];
    char sbuf[TCP_SBUF];
};

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

static uint64_t diverge;  /* diverge=N: every Nth reply carries a TSC nonce (0: none) */
static uint64_t nreplies; /* replies so far, UDP and TCP */

static struct tcb conns[TCP_CONNS];
static unsigned nconns;     /* slots in use */
static uint64_t tsc_mhz;    /* TSC ticks per microsecond */
static int timer_vec = -1;  /* irq mode: the local APIC timer's vector */
static uint64_t timer_next; /* the TSC the timer is armed for; 0: stopped */

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

/* UDP or TCP checksum over the pseudo header (addresses from the IPv4 header ip) and the
 * segment at p (length len, checksum field included as it is). */
static uint16_t l4_csum(const uint8_t *ip, uint8_t proto, const uint8_t *p, uint16_t len)
{
    uint32_t sum = csum_add(0, ip + 12, 8); /* source and destination addresses */
    sum += (uint32_t)proto + len;
    return csum_fold(csum_add(sum, p, len));
}

static uint16_t udp_csum(const uint8_t *ip, const uint8_t *udp, uint16_t len)
{
    return l4_csum(ip, IPPROTO_UDP, udp, len);
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

/* serve() with the diverge nonce in front of every diverge-th reply. */
static size_t answer(const char *req, size_t n, char *out, size_t outsz)
{
    size_t k = 0;
    nreplies++;
    if (diverge && nreplies % diverge == 0)
        k = (size_t)rt_snprintf(out, outsz, "~%016lx ", rt_rdtsc());
    return k + serve(req, n, out + k, outsz - k);
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

/* IPv4 header for payload bytes to dst. */
static void ip_header(uint8_t *o, uint32_t dst, uint8_t proto, size_t payload)
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
    put32(o + 16, dst);
    put16(o + 10, csum_fold(csum_add(0, o, IP_HLEN)));
}

/* IPv4 header for a reply of payload bytes to the sender of ip. */
static void ip_reply(uint8_t *o, const uint8_t *ip, uint8_t proto, size_t payload)
{
    ip_header(o, get32(ip + 12), proto, payload);
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
    size_t n = answer((const char *)u + UDP_HLEN, len - UDP_HLEN, (char *)r + UDP_HLEN,
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

/* ---- TCP (the design is at the top of the file) ---- */

static int seq_lt(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) < 0;
}

static int seq_le(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) <= 0;
}

static uint32_t min32(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

/* One segment to mac/ip:port from our port lport; mss: with an MSS option (SYN-ACK). */
static void tcp_segment(const uint8_t *mac, uint32_t ip, uint16_t port, uint16_t lport, uint32_t sn,
                        uint32_t ack, uint8_t flags, uint16_t win, const char *data, size_t n,
                        int mss)
{
    size_t hl = TCP_HLEN + (mss ? 4 : 0);
    unsigned b = tx_get();
    uint8_t *o = txbuf[b] + NET_HDR_LEN, *ih = o + ETH_HLEN, *t = ih + IP_HLEN;
    memcpy(o, mac, 6);
    memcpy(o + 6, my_mac, 6);
    put16(o + 12, ETH_P_IP);
    ip_header(ih, ip, IPPROTO_TCP, hl + n);
    put16(t, lport);
    put16(t + 2, port);
    put32(t + 4, sn);
    put32(t + 8, ack);
    t[12] = (uint8_t)(hl / 4 << 4);
    t[13] = flags;
    put16(t + 14, win);
    put32(t + 16, 0); /* checksum, urgent pointer */
    if (mss) {
        t[20] = 2; /* kind MSS, length 4 */
        t[21] = 4;
        put16(t + 22, TCP_MSS);
    }
    memcpy(t + hl, data, n);
    put16(t + 16, l4_csum(ih, IPPROTO_TCP, t, (uint16_t)(hl + n)));
    tx_put(b, ETH_HLEN + IP_HLEN + hl + n);
}

/* A segment of connection c (ack = rcv_nxt, window = what is left of the receive buffer). */
static void tcp_send(struct tcb *c, uint32_t sn, uint8_t flags, const char *data, size_t n)
{
    tcp_segment(c->peer_mac, c->peer_ip, c->peer_port, TCP_PORT, sn, c->rcv_nxt, flags | TH_ACK,
                (uint16_t)(TCP_RBUF - c->rlen), data, n, flags & TH_SYN);
}

static void tcp_ack(struct tcb *c)
{
    tcp_send(c, c->snd_nxt, 0, NULL, 0);
}

static void tcp_free(struct tcb *c)
{
    c->state = TCP_FREE;
    c->deadline = 0;
    nconns--;
}

/* Send what may be sent from snd_nxt on: the SYN-ACK, reply bytes within the client's window,
 * the FIN. Arms the retransmission timer when bytes are in flight. Returns segments sent. */
static int tcp_output(struct tcb *c)
{
    int sent = 0;
    if (c->state == TCP_SYN_RCVD) {
        if (c->snd_nxt == c->iss) {
            tcp_send(c, c->iss, TH_SYN, NULL, 0);
            c->snd_nxt = c->iss + 1;
            sent++;
        }
    } else {
        uint32_t end = c->snd_una + c->slen; /* after the last reply byte */
        /* a closed window: one byte in flight probes it */
        uint32_t wend = c->snd_una + (c->snd_wnd ? c->snd_wnd : 1);
        while (seq_lt(c->snd_nxt, end) && seq_lt(c->snd_nxt, wend)) {
            uint32_t off = c->snd_nxt - c->snd_una;
            uint32_t n = min32(min32(c->slen - off, c->mss), wend - c->snd_nxt);
            tcp_send(c, c->snd_nxt, TH_PSH, c->sbuf + off, n);
            c->snd_nxt += n;
            sent++;
        }
        if (c->state == TCP_LAST_ACK && c->snd_nxt == end) {
            tcp_send(c, end, TH_FIN, NULL, 0);
            c->snd_nxt = end + 1;
            sent++;
        }
    }
    if (seq_lt(c->snd_max, c->snd_nxt))
        c->snd_max = c->snd_nxt;
    if (c->snd_max != c->snd_una && !c->deadline)
        c->deadline = rt_rdtsc() + c->rto;
    return sent;
}

static size_t find_nl(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] != '\n')
        i++;
    return i;
}

/* Answer the complete lines in rbuf while the send buffer has room for a reply; after the
 * client's FIN, also a last unterminated line, then queue our FIN. */
static void tcp_serve(struct tcb *c)
{
    size_t pos = 0;
    while ((c->state == TCP_ESTABLISHED || c->state == TCP_CLOSE_WAIT) &&
           TCP_SBUF - c->slen >= REPLY_MAX && pos < c->rlen) {
        size_t left = c->rlen - pos, n = find_nl(c->rbuf + pos, left);
        if (n < left && n < LINE_MAX) {
            n++; /* with its "\n" */
        } else if (n >= LINE_MAX) {
            n = LINE_MAX; /* overlong: answer the prefix, skip the rest up to its "\n" */
            c->skipping = 1;
        } else if (c->state != TCP_CLOSE_WAIT) {
            break; /* a partial line: wait for the rest */
        }
        c->slen += (uint32_t)answer(c->rbuf + pos, n, c->sbuf + c->slen, TCP_SBUF - c->slen);
        pos += n;
        if (c->skipping) {
            size_t k = find_nl(c->rbuf + pos, c->rlen - pos);
            c->skipping = k == c->rlen - pos;
            pos += k + !c->skipping;
        }
    }
    if (pos) {
        memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
        c->rlen -= (uint32_t)pos;
    }
    if (c->state == TCP_CLOSE_WAIT && !c->rlen)
        c->state = TCP_LAST_ACK;
}

/* Take n in-order bytes at rcv_nxt (the caller limited them to the window). */
static void tcp_take(struct tcb *c, const char *p, uint32_t n)
{
    c->rcv_nxt += n;
    if (c->skipping) {
        uint32_t k = (uint32_t)find_nl(p, n);
        if (k == n)
            return;
        c->skipping = 0;
        p += k + 1;
        n -= k + 1;
    }
    memcpy(c->rbuf + c->rlen, p, n);
    c->rlen += n;
}

static struct tcb *tcp_find(uint32_t ip, uint16_t port)
{
    for (unsigned i = 0; i < TCP_CONNS; i++)
        if (conns[i].state != TCP_FREE && conns[i].peer_ip == ip && conns[i].peer_port == port)
            return &conns[i];
    return NULL;
}

/* The client's MSS option in a SYN's options (opt, n bytes), or TCP_MSS_DEF. */
static uint32_t syn_mss(const uint8_t *opt, size_t n)
{
    for (size_t i = 0; i < n;) {
        if (opt[i] == 0)
            break;
        if (opt[i] == 1) {
            i++;
            continue;
        }
        if (i + 1 >= n || opt[i + 1] < 2 || i + opt[i + 1] > n)
            break;
        if (opt[i] == 2 && opt[i + 1] == 4)
            return get16(opt + i + 2);
        i += opt[i + 1];
    }
    return TCP_MSS_DEF;
}

/* A SYN for port 7001 from a client without a connection: a slot in SYN_RCVD, our SYN-ACK. */
static void tcp_open(const uint8_t *f, uint32_t ip, const uint8_t *t, size_t hl)
{
    struct tcb *c = NULL;
    for (unsigned i = 0; i < TCP_CONNS && !c; i++)
        if (conns[i].state == TCP_FREE)
            c = &conns[i];
    uint32_t sn = get32(t + 4);
    if (!c) { /* full: refused */
        tcp_segment(f + 6, ip, get16(t), TCP_PORT, 0, sn + 1, TH_RST | TH_ACK, 0, NULL, 0, 0);
        return;
    }
    nconns++;
    c->state = TCP_SYN_RCVD;
    c->skipping = 0;
    c->tries = 0;
    memcpy(c->peer_mac, f + 6, 6);
    c->peer_ip = ip;
    c->peer_port = get16(t);
    uint32_t mss = syn_mss(t + TCP_HLEN, hl - TCP_HLEN);
    c->mss = mss < 64 ? 64 : mss > TCP_MSS ? TCP_MSS : mss;
    c->irs = sn;
    c->rcv_nxt = sn + 1;
    c->iss = (uint32_t)rt_mix64(rt_rdtsc()); /* differs between replicas: see the top */
    c->snd_una = c->snd_nxt = c->snd_max = c->iss;
    c->snd_wnd = get16(t + 14);
    c->rlen = c->slen = 0;
    c->rto = RTO_INIT_MS * 1000 * tsc_mhz;
    c->deadline = 0;
    tcp_output(c);
}

/* An ACK in c's window: new bytes acknowledged (returns 1 if the connection is done: our FIN
 * acknowledged). */
static int tcp_acked(struct tcb *c, uint32_t ack)
{
    uint32_t n = ack - c->snd_una;
    if (c->state == TCP_SYN_RCVD) {
        c->state = TCP_ESTABLISHED; /* n == 1: the SYN */
        n = 0;
    } else if (n > c->slen) {
        return 1; /* LAST_ACK: the FIN after the last reply byte */
    }
    memmove(c->sbuf, c->sbuf + n, c->slen - n);
    c->slen -= n;
    c->snd_una = ack;
    if (seq_lt(c->snd_nxt, ack))
        c->snd_nxt = ack;
    c->tries = 0;
    c->rto = RTO_INIT_MS * 1000 * tsc_mhz;
    c->deadline = c->snd_max != c->snd_una ? rt_rdtsc() + c->rto : 0;
    return 0;
}

static void tcp(const uint8_t *f, const uint8_t *ip, const uint8_t *t, size_t len)
{
    if (len < TCP_HLEN || len > 0xffff)
        return;
    size_t hl = (size_t)(t[12] >> 4) * 4;
    if (hl < TCP_HLEN || hl > len || l4_csum(ip, IPPROTO_TCP, t, (uint16_t)len))
        return;
    uint32_t peer = get32(ip + 12), sn = get32(t + 4), ack = get32(t + 8);
    uint16_t port = get16(t), lport = get16(t + 2);
    uint8_t fl = t[13];
    const char *data = (const char *)t + hl;
    uint32_t dlen = (uint32_t)(len - hl), fin = fl & TH_FIN ? 1 : 0;
    struct tcb *c = lport == TCP_PORT ? tcp_find(peer, port) : NULL;

    if (!c) {
        if (fl & TH_RST)
            return;
        if (lport == TCP_PORT && (fl & (TH_SYN | TH_ACK | TH_FIN)) == TH_SYN)
            tcp_open(f, peer, t, hl);
        else if (fl & TH_ACK)
            tcp_segment(f + 6, peer, port, lport, ack, 0, TH_RST, 0, NULL, 0, 0);
        else
            tcp_segment(f + 6, peer, port, lport, 0, sn + dlen + fin + (fl & TH_SYN ? 1 : 0),
                        TH_RST | TH_ACK, 0, NULL, 0, 0);
        return;
    }
    uint32_t wnd = TCP_RBUF - c->rlen;
    if (fl & TH_RST) {
        if (sn - c->rcv_nxt < (wnd ? wnd : 1)) /* in the window: the client gave up */
            tcp_free(c);
        return;
    }
    if (fl & TH_SYN) {
        /* SYN_RCVD: our SYN-ACK was lost (or this is another try: its ACK then draws an RST);
         * later: a challenge ACK (an RST from the client then ends the old connection) */
        if (c->state == TCP_SYN_RCVD && !(fl & TH_ACK)) {
            c->snd_nxt = c->iss;
            tcp_output(c);
        } else {
            tcp_ack(c);
        }
        return;
    }
    int in_order = 1, need_ack = dlen || fin;
    if (sn != c->rcv_nxt) {
        uint32_t old = c->rcv_nxt - sn;
        if (seq_lt(sn, c->rcv_nxt) && old < dlen + fin) {
            data += old; /* partly old: keep the new tail */
            dlen -= old;
        } else {
            /* wholly old, or after a gap: its data and FIN are dropped and a duplicate ACK
             * answers; its ACK still counts (a client whose data lies beyond our window
             * acknowledges our replies with such segments) */
            in_order = 0;
            need_ack = 1;
            dlen = fin = 0;
        }
    }
    if (!(fl & TH_ACK)) {
        if (!in_order)
            tcp_ack(c);
        return;
    }
    int advanced = 0;
    if (seq_lt(c->snd_una, ack) && seq_le(ack, c->snd_max)) {
        if (tcp_acked(c, ack)) {
            tcp_free(c);
            return;
        }
        advanced = 1;
    } else if (seq_lt(c->snd_max, ack) || c->state == TCP_SYN_RCVD) {
        if (c->state == TCP_SYN_RCVD)
            tcp_segment(c->peer_mac, peer, port, TCP_PORT, ack, 0, TH_RST, 0, NULL, 0, 0);
        else
            tcp_ack(c); /* acknowledges what we never sent */
        return;
    }
    if (in_order || advanced) { /* an old segment's window may be stale */
        c->snd_wnd = get16(t + 14);
        if (!c->snd_wnd)
            c->tries = 0; /* a live client with a closed window: keep probing */
    }
    if (c->state == TCP_ESTABLISHED) {
        if (dlen > wnd) {
            dlen = wnd; /* beyond the window: the client sends it again */
            fin = 0;
        }
        tcp_take(c, data, dlen);
        if (fin) {
            c->rcv_nxt++;
            c->state = TCP_CLOSE_WAIT;
        }
    }
    tcp_serve(c);
    if (!tcp_output(c) && need_ack)
        tcp_ack(c);
}

/* Retransmit on expired timers; returns the earliest deadline left (0: none). */
static uint64_t tcp_timers(void)
{
    if (!nconns)
        return 0;
    uint64_t now = rt_rdtsc(), next = 0;
    for (unsigned i = 0; i < TCP_CONNS; i++) {
        struct tcb *c = &conns[i];
        if (c->state == TCP_FREE || !c->deadline)
            continue;
        if ((int64_t)(now - c->deadline) >= 0) {
            c->deadline = 0;
            if (++c->tries > RTO_TRIES) {
                /* the client's rcv_nxt is one of these two */
                tcp_send(c, c->snd_una, TH_RST, NULL, 0);
                if (c->snd_max != c->snd_una)
                    tcp_send(c, c->snd_max, TH_RST, NULL, 0);
                tcp_free(c);
                continue;
            }
            uint64_t cap = RTO_MAX_MS * 1000 * tsc_mhz;
            c->rto = c->rto * 2 > cap ? cap : c->rto * 2;
            c->snd_nxt = c->snd_una; /* go back: everything unacknowledged again */
            tcp_output(c);
        }
        if (c->deadline && (!next || (int64_t)(c->deadline - next) < 0))
            next = c->deadline;
    }
    return next;
}

/* irq mode, before a sleep: the local APIC timer armed for the earliest retransmission, or
 * stopped when nothing is in flight. */
static void timer_update(uint64_t next)
{
    if (!next) {
        if (timer_next)
            rt_timer_arm(0);
        timer_next = 0;
        return;
    }
    /* re-armed before every sleep: an interrupt that came early (a timer clock not at 1 GHz)
     * must not leave the guest asleep past its deadline */
    timer_next = next;
    uint64_t now = rt_rdtsc();
    rt_timer_arm((int64_t)(next - now) > 0 ? (next - now) * 1000 / tsc_mhz : 1);
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
    else if (ip[9] == IPPROTO_TCP)
        tcp(f, ip, ip + ihl, tot - ihl);
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
    diverge = rt_arg_u64("diverge", 0);
    tsc_mhz = rt_tsc_mhz();
    irq_mode = vio_irq_setup(&dev, "netkv");
    if (irq_mode && (timer_vec = rt_timer_setup()) < 0)
        return RT_EXIT_CONFIG;
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
    rt_printf("netkv ready ip=%u.%u.%u.%u/%u mac=%02x:%02x:%02x:%02x:%02x:%02x port=%u tcp=%u",
              my_ip >> 24, my_ip >> 16 & 255, my_ip >> 8 & 255, my_ip & 255, prefix, my_mac[0],
              my_mac[1], my_mac[2], my_mac[3], my_mac[4], my_mac[5], KV_PORT, TCP_PORT);
    if (diverge)
        rt_printf(" diverge=%lu", diverge);
    rt_printf("\n");

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
        uint64_t next = tcp_timers(); /* retransmissions due */
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
            if (!got) {
                timer_update(next);
                rt_wait_irq(seen);
            }
        }
    }
}
