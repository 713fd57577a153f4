/* kvclient.c: bench/colo-net's client for the netkv guest, over UDP (port 7000) and TCP (7001).
 *
 * One process, one thread, no batching: each connection (or UDP socket) has at most one
 * request outstanding. Requests alternate SET/GET over 64 keys per connection; a reply is one
 * line, OK/VALUE/NONE ... <seq>\n (over TCP the same lines, one reply line per request line).
 *
 *   kvclient lat  udp|tcp IP PORT SECONDS MAXN WARMUP TIMEOUT_MS
 *       sequential requests for SECONDS (at most MAXN, after WARMUP uncounted ones):
 *       lat n= p50_us= p99_us= mean_us= max_us= resent=
 *   kvclient load udp|tcp IP PORT CONNS SECONDS TIMEOUT_MS
 *       CONNS connections with one request outstanding each for SECONDS:
 *       load conns= seconds= replies= rps= resent= bad=
 *   kvclient probe tcp|udp IP PORT TIMEOUT_MS
 *       one GET, sent once, answered within TIMEOUT_MS (TCP: the connect too): exit 0
 * UDP re-sends a request that got no reply in TIMEOUT_MS (counted: resent); TCP never re-sends
 * and fails after TIMEOUT_MS * 10 without a reply. p99 is the nearest-rank percentile.
 * Exit status: 0 ok, 1 a bad reply, 3 no reply / connection failed, 2 usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what)
{
    perror(what);
    exit(3);
}

static struct sockaddr_in addr_of(const char *ip, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", ip);
        exit(2);
    }
    return a;
}

static int reply_ok(const char *b, size_t n)
{
    return n >= 5 && b[n - 1] == '\n' &&
           (!strncmp(b, "OK ", 3) || !strncmp(b, "VALUE ", 6) || !strncmp(b, "NONE ", 5));
}

/* A request line, newline-terminated (netkv ignores the trailing \n over UDP). */
static int make_req(char *buf, int conn, unsigned long k)
{
    if (k & 1)
        return snprintf(buf, 128, "SET c%dk%lu v%lu\n", conn, k % 64, k);
    return snprintf(buf, 128, "GET c%dk%lu\n", conn, k % 64);
}

/* A connected socket; TCP: non-blocking connect bounded by timeout_ms, then TCP_NODELAY. */
static int open_sock(int tcp, const char *ip, int port, int timeout_ms, int nonblock)
{
    struct sockaddr_in a = addr_of(ip, port);
    int s = socket(AF_INET, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK, 0);
    if (s < 0)
        die("socket");
    if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
        if (errno != EINPROGRESS)
            return -1;
        struct pollfd p = {.fd = s, .events = POLLOUT};
        int err = 0;
        socklen_t el = sizeof(err);
        if (poll(&p, 1, timeout_ms) != 1 || getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el) < 0 ||
            err) {
            close(s);
            errno = err ? err : ETIMEDOUT;
            return -1;
        }
    }
    if (tcp) {
        int one = 1;
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (!nonblock)
        fcntl(s, F_SETFL, fcntl(s, F_GETFL) & ~O_NONBLOCK);
    return s;
}

/* Per connection: the bytes of a reply line read so far. */
struct conn {
    int fd;
    unsigned long k;
    double sent;
    size_t have;
    char buf[4096];
};

/* Read what is there; returns 1 with one complete line in c->buf[0..*len) (consumed by the
 * next call), 0 if none yet, -1 on EOF or error. */
static int read_line(struct conn *c, int tcp, size_t *len)
{
    char *nl;
    for (;;) {
        if (tcp && (nl = memchr(c->buf, '\n', c->have))) {
            *len = nl - c->buf + 1;
            return 1;
        }
        if (c->have == sizeof(c->buf))
            return -1;
        ssize_t r = recv(c->fd, c->buf + c->have, sizeof(c->buf) - c->have, 0);
        if (r < 0)
            return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
        if (r == 0 && tcp)
            return -1;
        if (!tcp) { /* one datagram is one reply */
            *len = r;
            c->have = r;
            return 1;
        }
        c->have += r;
    }
}

static void consume(struct conn *c, size_t len)
{
    memmove(c->buf, c->buf + len, c->have - len);
    c->have -= len;
}

static int cmp_d(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* One request, waiting for its reply (UDP: re-sent every timeout_ms); returns the reply's
 * length in c->buf, -1 if none came. */
static ssize_t roundtrip(struct conn *c, int tcp, const char *q, int ql, int timeout_ms,
                         int max_tries, long *resent)
{
    int tries = 0;
    for (;;) {
        if (send(c->fd, q, ql, MSG_NOSIGNAL) != ql)
            return -1;
        double deadline = now() + (tcp ? timeout_ms * 10 : timeout_ms) / 1000.0;
        for (;;) {
            size_t len;
            int r = read_line(c, tcp, &len);
            if (r < 0)
                return -1;
            if (r > 0)
                return len;
            double left = deadline - now();
            if (left <= 0)
                break;
            struct pollfd p = {.fd = c->fd, .events = POLLIN};
            poll(&p, 1, (int)ceil(left * 1000));
        }
        if (tcp || ++tries >= max_tries)
            return -1;
        ++*resent;
    }
}

static int lat(int tcp, const char *ip, int port, double secs, long maxn, long warm, int timeout_ms)
{
    struct conn c = {0};
    long n = 0, resent = 0;
    double *t = calloc(maxn, sizeof(double)), sum = 0, end = 0;
    if (!t)
        die("calloc");
    c.fd = open_sock(tcp, ip, port, timeout_ms * 10, 1);
    if (c.fd < 0)
        die("lat: connect");
    for (long i = -warm; n < maxn; i++) {
        char q[128];
        if (i == 0)
            end = now() + secs;
        if (i >= 0 && now() >= end)
            break;
        int ql = make_req(q, 0, (unsigned long)(i + warm));
        double t0 = now();
        ssize_t len = roundtrip(&c, tcp, q, ql, timeout_ms, 25, &resent);
        double dt = now() - t0;
        if (len < 0) {
            fprintf(stderr, "lat: no reply from %s:%d (%s)\n", ip, port, tcp ? "tcp" : "udp");
            return 3;
        }
        if (!reply_ok(c.buf, len)) {
            fprintf(stderr, "lat: bad reply %.*s\n", (int)len, c.buf);
            return 1;
        }
        consume(&c, len);
        if (i >= 0) {
            t[n++] = dt;
            sum += dt;
        }
    }
    if (!n) {
        fprintf(stderr, "lat: no samples\n");
        return 3;
    }
    qsort(t, n, sizeof(double), cmp_d);
    long i99 = (long)ceil(0.99 * n) - 1, i50 = (long)ceil(0.50 * n) - 1;
    printf("lat n=%ld p50_us=%.1f p99_us=%.1f mean_us=%.1f max_us=%.1f resent=%ld\n", n,
           t[i50 < 0 ? 0 : i50] * 1e6, t[i99 < 0 ? 0 : i99] * 1e6, sum / n * 1e6, t[n - 1] * 1e6,
           resent);
    return 0;
}

static int load(int tcp, const char *ip, int port, int conns, double secs, int timeout_ms)
{
    int ep = epoll_create1(0);
    struct conn *c = calloc(conns, sizeof(*c));
    long replies = 0, resent = 0, bad = 0;
    char q[128];
    if (ep < 0 || !c)
        die("load: setup");
    for (int i = 0; i < conns; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        c[i].fd = open_sock(tcp, ip, port, timeout_ms * 10, 1);
        if (c[i].fd < 0)
            die("load: connect");
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev) < 0)
            die("load: epoll_ctl");
    }
    double t0 = now(), end = t0 + secs, last_scan = t0, t;
    for (int i = 0; i < conns; i++) {
        send(c[i].fd, q, make_req(q, i, c[i].k++), MSG_NOSIGNAL);
        c[i].sent = t0;
    }
    while ((t = now()) < end) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 10);
        t = now();
        for (int e = 0; e < n; e++) {
            struct conn *cc = &c[evs[e].data.u32];
            size_t len;
            int r, got = 0;
            while ((r = read_line(cc, tcp, &len)) > 0) {
                got = 1;
                if (reply_ok(cc->buf, len))
                    replies++;
                else
                    bad++;
                consume(cc, len);
            }
            if (r < 0) {
                fprintf(stderr, "load: connection %u closed\n", evs[e].data.u32);
                return 3;
            }
            if (got) {
                send(cc->fd, q, make_req(q, evs[e].data.u32, cc->k++), MSG_NOSIGNAL);
                cc->sent = t;
            }
        }
        if (!tcp && t - last_scan > 0.01) { /* a lost datagram: re-send after timeout_ms */
            last_scan = t;
            for (int i = 0; i < conns; i++)
                if (t - c[i].sent > timeout_ms / 1000.0) {
                    send(c[i].fd, q, make_req(q, i, c[i].k++), 0);
                    c[i].sent = t;
                    resent++;
                }
        }
        if (tcp)
            for (int i = 0; i < conns; i++)
                if (t - c[i].sent > timeout_ms * 10 / 1000.0) {
                    fprintf(stderr, "load: connection %d: no reply in %d ms\n", i, timeout_ms * 10);
                    return 3;
                }
    }
    t = now() - t0;
    printf("load conns=%d seconds=%.2f replies=%ld rps=%.1f resent=%ld bad=%ld\n", conns, t,
           replies, replies / t, resent, bad);
    return bad ? 1 : 0;
}

static int probe(int tcp, const char *ip, int port, int timeout_ms)
{
    struct conn c = {0};
    long resent = 0;
    char q[128];
    c.fd = open_sock(tcp, ip, port, timeout_ms, 1);
    if (c.fd < 0) {
        fprintf(stderr, "probe: connect: %s\n", strerror(errno));
        return 3;
    }
    ssize_t len =
        roundtrip(&c, tcp, q, make_req(q, 99, 0), tcp ? timeout_ms / 10 : timeout_ms, 1, &resent);
    if (len < 0) {
        fprintf(stderr, "probe: no reply\n");
        return 3;
    }
    printf("probe reply %.*s", (int)len, c.buf);
    return reply_ok(c.buf, len) ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[2], "udp") && strcmp(argv[2], "tcp")))
        goto usage;
    int tcp = !strcmp(argv[2], "tcp");
    if (argc == 9 && !strcmp(argv[1], "lat"))
        return lat(tcp, argv[3], atoi(argv[4]), atof(argv[5]), atol(argv[6]), atol(argv[7]),
                   atoi(argv[8]));
    if (argc == 8 && !strcmp(argv[1], "load"))
        return load(tcp, argv[3], atoi(argv[4]), atoi(argv[5]), atof(argv[6]), atoi(argv[7]));
    if (argc == 6 && !strcmp(argv[1], "probe"))
        return probe(tcp, argv[3], atoi(argv[4]), atoi(argv[5]));
usage:
    fprintf(stderr, "usage: kvclient lat udp|tcp IP PORT SECONDS MAXN WARMUP TIMEOUT_MS\n"
                    "       kvclient load udp|tcp IP PORT CONNS SECONDS TIMEOUT_MS\n"
                    "       kvclient probe udp|tcp IP PORT TIMEOUT_MS\n");
    return 2;
}
