/* test_qmp_socket.c: the QMP server over real unix sockets, and `tandem ctl` against it.
 *
 * The main thread runs the loop (the server's thread); each scenario runs in a client thread
 * that records the first failed check and ends the loop. cmocka asserts only on the main thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli/ctl.h"
#include "core/loop.h"
#include "qmp/server.h"

#define BIG_REPLY (2u << 20)

struct sc {
    struct loop *l;
    struct qmp_server *s;
    char dir[64];
    char path[128];
    int (*fn)(struct sc *sc);
    int result;
    char msg[512];
    /* for the deferred-work scenario */
    atomic_int deferred_ran;
    atomic_int watch_fd;
    atomic_int unread_at_deferred;
    /* ticker */
    atomic_bool ticking;
};

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf(sc->msg, sizeof(sc->msg), "%s:%d: check failed: %s", __FILE__, __LINE__,      \
                     #cond);                                                                       \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

/* ---- a small blocking client ---- */

struct cl {
    int fd;
    char buf[65536];
    size_t pos, len;
};

static int cl_open(struct cl *c, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct timeval tv = {.tv_sec = 10};

    c->pos = c->len = 0;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

static void cl_close(struct cl *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static int cl_send(struct cl *c, const char *s)
{
    size_t n = strlen(s), off = 0;

    while (off < n) {
        ssize_t w = send(c->fd, s + off, n - off, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        off += (size_t)w;
    }
    return 0;
}

/* One line without "\r\n" into a malloc'd string; NULL on EOF, error or timeout. */
static char *cl_line(struct cl *c)
{
    char *line = NULL;
    size_t n = 0;

    for (;;) {
        char *nl;
        size_t take;

        if (c->pos == c->len) {
            ssize_t r = read(c->fd, c->buf, sizeof(c->buf));
            if (r <= 0) {
                free(line);
                return NULL;
            }
            c->pos = 0;
            c->len = (size_t)r;
        }
        nl = memchr(c->buf + c->pos, '\n', c->len - c->pos);
        take = nl ? (size_t)(nl - (c->buf + c->pos)) + 1 : c->len - c->pos;
        line = realloc(line, n + take + 1);
        memcpy(line + n, c->buf + c->pos, take);
        n += take;
        line[n] = '\0';
        c->pos += take;
        if (nl) {
            if (n >= 2 && line[n - 2] == '\r')
                line[n - 2] = '\0';
            return line;
        }
    }
}

/* Read one line and compare; returns 0 if equal. */
static int cl_expect(struct cl *c, const char *want)
{
    char *line = cl_line(c);
    int rc = line && !strcmp(line, want) ? 0 : -1;

    if (rc)
        fprintf(stderr, "expected: %s\n     got: %s\n", want, line ? line : "(nothing)");
    free(line);
    return rc;
}

static int cl_expect_prefix(struct cl *c, const char *prefix)
{
    char *line = cl_line(c);
    int rc = line && !strncmp(line, prefix, strlen(prefix)) ? 0 : -1;

    if (rc)
        fprintf(stderr, "expected: %s...\n     got: %s\n", prefix, line ? line : "(nothing)");
    free(line);
    return rc;
}

static int cl_negotiate(struct cl *c, const char *path)
{
    if (cl_open(c, path) < 0 || cl_expect_prefix(c, "{\"QMP\": {\"version\": ") < 0)
        return -1;
    if (cl_send(c, "{\"execute\": \"qmp_capabilities\"}\n") < 0)
        return -1;
    return cl_expect(c, "{\"return\": {}}");
}

/* True once the server has closed the connection (after any data still queued). */
static bool cl_sees_eof(struct cl *c)
{
    char *line;

    while ((line = cl_line(c)))
        free(line);
    return c->pos == c->len && read(c->fd, c->buf, 1) == 0;
}

/* ---- fake commands ---- */

static int cmd_echo(void *opaque, struct json_object *args, struct json_object **ret, char *err,
                    size_t errlen)
{
    *ret = json_object_get(args);
    return 0;
}

static int cmd_noargs(void *opaque, struct json_object *args, struct json_object **ret, char *err,
                      size_t errlen)
{
    return 0;
}

static void deferred_check(void *arg)
{
    struct sc *sc = arg;
    int unread = -1;

    ioctl(atomic_load(&sc->watch_fd), FIONREAD, &unread);
    atomic_store(&sc->unread_at_deferred, unread);
    atomic_store(&sc->deferred_ran, 1);
}

static int cmd_later(void *opaque, struct json_object *args, struct json_object **ret, char *err,
                     size_t errlen)
{
    struct sc *sc = opaque;

    return qmp_defer(sc->s, deferred_check, sc);
}

/* A 2 MiB reply: more than the socket takes at once. */
static int cmd_later_big(void *opaque, struct json_object *args, struct json_object **ret,
                         char *err, size_t errlen)
{
    struct sc *sc = opaque;
    char *pad = malloc(BIG_REPLY);

    memset(pad, 'x', BIG_REPLY);
    *ret = json_object_new_string_len(pad, (int)BIG_REPLY);
    free(pad);
    return qmp_defer(sc->s, deferred_check, sc);
}

static void emit_tick(void *arg)
{
    struct sc *sc = arg;

    qmp_emit_event(sc->s, "TICK", NULL);
}

#define BATCH  64
#define EV_PAD 8000

static void emit_batch(void *arg)
{
    struct sc *sc = arg;
    char pad[EV_PAD + 1];

    memset(pad, 'x', EV_PAD);
    pad[EV_PAD] = '\0';
    for (int i = 0; i < BATCH; i++) {
        struct json_object *data = json_object_new_object();
        json_object_object_add(data, "pad", json_object_new_string(pad));
        qmp_emit_event(sc->s, "FLOOD", data);
    }
}

/* ---- fixture ---- */

static int setup(void **state)
{
    struct sc *sc = calloc(1, sizeof(*sc));
    char err[256];

    assert_non_null(sc);
    snprintf(sc->dir, sizeof(sc->dir), "/tmp/tandem-qmp-XXXXXX");
    assert_non_null(mkdtemp(sc->dir));
    snprintf(sc->path, sizeof(sc->path), "%s/qmp.sock", sc->dir);
    sc->l = loop_new();
    assert_non_null(sc->l);
    sc->s = qmp_server_new(sc->l, sc->path, err, sizeof(err));
    if (!sc->s)
        fail_msg("qmp_server_new: %s", err);
    assert_int_equal(qmp_register(sc->s, "echo", cmd_echo, sc, qmp_args_any), 0);
    assert_int_equal(qmp_register(sc->s, "noargs", cmd_noargs, sc, NULL), 0);
    assert_int_equal(qmp_register(sc->s, "later", cmd_later, sc, NULL), 0);
    assert_int_equal(qmp_register(sc->s, "later-big", cmd_later_big, sc, NULL), 0);
    atomic_init(&sc->watch_fd, -1);
    *state = sc;
    return 0;
}

static int teardown(void **state)
{
    struct sc *sc = *state;

    qmp_server_free(sc->s);
    assert_int_equal(access(sc->path, F_OK), -1); /* the socket file is removed */
    loop_free(sc->l);
    rmdir(sc->dir);
    free(sc);
    return 0;
}

static void *client_thread(void *arg)
{
    struct sc *sc = arg;

    sc->result = sc->fn(sc);
    loop_quit(sc->l);
    return NULL;
}

static void run_scenario(struct sc *sc, int (*fn)(struct sc *sc))
{
    pthread_t t;

    sc->fn = fn;
    assert_int_equal(pthread_create(&t, NULL, client_thread, sc), 0);
    loop_run(sc->l);
    pthread_join(t, NULL);
    if (sc->result != 0)
        fail_msg("%s", sc->msg[0] ? sc->msg : "scenario failed");
}

/* ---- scenarios ---- */

static int sc_basic(struct sc *sc)
{
    struct cl a, b, c;

    CHECK(cl_negotiate(&a, sc->path) == 0);
    CHECK(cl_negotiate(&b, sc->path) == 0);
    CHECK(cl_open(&c, sc->path) == 0);
    CHECK(cl_expect_prefix(&c, "{\"QMP\"") == 0);

    CHECK(loop_call(sc->l, emit_tick, sc) == 0);
    CHECK(cl_expect_prefix(&a, "{\"timestamp\": {\"seconds\": ") == 0);
    CHECK(cl_expect_prefix(&b, "{\"timestamp\": {\"seconds\": ") == 0);
    /* c did not negotiate: its next line is the reply, not the event */
    CHECK(cl_send(&c, "{\"execute\": \"qmp_capabilities\", \"id\": 1}") == 0);
    CHECK(cl_expect(&c, "{\"return\": {}, \"id\": 1}") == 0);

    CHECK(cl_send(&a, "{\"execute\": \"echo\", \"arguments\": {\"a\": 1}, \"id\": \"x\"}") == 0);
    CHECK(cl_expect(&a, "{\"return\": {\"a\": 1}, \"id\": \"x\"}") == 0);
    /* malformed input, then a command, on one connection */
    CHECK(cl_send(&b, "{\"execute\": nope}\n{\"execute\": \"noargs\", \"id\": 2}\n") == 0);
    CHECK(cl_expect_prefix(&b, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse "
                               "error, ") == 0);
    CHECK(cl_expect(&b, "{\"return\": {}, \"id\": 2}") == 0);
    cl_close(&a);
    cl_close(&b);
    cl_close(&c);
    return 0;
}

static int sc_connect_churn(struct sc *sc)
{
    struct cl many[QMP_MAX_CLIENTS], extra, last;
    bool ok = false;

    /* far more connections than the limit, one after the other: each is cleaned up */
    for (int i = 0; i < 3 * QMP_MAX_CLIENTS; i++) {
        CHECK(cl_open(&extra, sc->path) == 0);
        CHECK(cl_expect_prefix(&extra, "{\"QMP\"") == 0);
        if (i % 2)
            CHECK(cl_send(&extra, "{\"execute\": \"qmp_capa") == 0); /* gone mid-request */
        cl_close(&extra);
    }
    /* the limit, all at once; one more is refused */
    for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
        CHECK(cl_open(&many[i], sc->path) == 0);
        CHECK(cl_expect_prefix(&many[i], "{\"QMP\"") == 0);
    }
    CHECK(cl_open(&extra, sc->path) == 0);
    CHECK(cl_sees_eof(&extra));
    cl_close(&extra);
    for (int i = 0; i < QMP_MAX_CLIENTS; i++)
        cl_close(&many[i]);
    /* the server notices the closes asynchronously */
    for (int tries = 0; tries < 200 && !ok; tries++) {
        CHECK(cl_open(&last, sc->path) == 0);
        ok = cl_expect_prefix(&last, "{\"QMP\"") == 0;
        if (!ok) {
            cl_close(&last);
            usleep(10000);
        }
    }
    CHECK(ok);
    CHECK(cl_send(&last, "{\"execute\": \"qmp_capabilities\"}") == 0);
    CHECK(cl_expect(&last, "{\"return\": {}}") == 0);
    cl_close(&last);
    return 0;
}

/* A client that sends much and reads nothing is throttled, not dropped; others are served. */
static int sc_slow_reader(struct sc *sc)
{
    const char *req = "{\"execute\": \"query-commands\"}";
    const int total = 20000;
    struct cl a, b;
    int sent = 0, got = 0;
    size_t off = 0;
    int fl;

    CHECK(cl_negotiate(&a, sc->path) == 0);
    fl = fcntl(a.fd, F_GETFL);
    fcntl(a.fd, F_SETFL, fl | O_NONBLOCK);
    while (sent < total) {
        ssize_t w = send(a.fd, req + off, strlen(req) - off, MSG_NOSIGNAL);
        if (w < 0) {
            CHECK(errno == EAGAIN);
            break;
        }
        off += (size_t)w;
        if (off == strlen(req)) {
            off = 0;
            sent++;
        }
    }
    CHECK(sent < total); /* the server stopped reading: the socket filled up */

    CHECK(cl_negotiate(&b, sc->path) == 0);
    CHECK(cl_send(&b, "{\"execute\": \"noargs\"}") == 0);
    CHECK(cl_expect(&b, "{\"return\": {}}") == 0);
    cl_close(&b);

    /* now read everything while sending the rest */
    while (got < total) {
        struct pollfd p = {.fd = a.fd, .events = POLLIN | (sent < total ? POLLOUT : 0)};
        CHECK(poll(&p, 1, 10000) > 0);
        if (p.revents & POLLOUT) {
            ssize_t w = send(a.fd, req + off, strlen(req) - off, MSG_NOSIGNAL);
            CHECK(w > 0 || errno == EAGAIN);
            if (w > 0) {
                off += (size_t)w;
                if (off == strlen(req)) {
                    off = 0;
                    sent++;
                }
            }
        }
        if (p.revents & POLLIN) {
            ssize_t r = read(a.fd, a.buf, sizeof(a.buf));
            CHECK(r > 0);
            for (ssize_t i = 0; i < r; i++)
                got += a.buf[i] == '\n';
        }
        CHECK(!(p.revents & (POLLHUP | POLLERR)));
    }
    CHECK(got == total);
    cl_close(&a);
    return 0;
}

/* Events to a client that never reads: it is dropped past QMP_MAX_OUTPUT; a reader is not. */
static int sc_event_flood(struct sc *sc)
{
    struct cl a, b;
    int batches = (int)(2 * QMP_MAX_OUTPUT / (BATCH * EV_PAD)) + 1, a_lines = 0;
    char *line;

    CHECK(cl_negotiate(&a, sc->path) == 0);
    CHECK(cl_negotiate(&b, sc->path) == 0);
    for (int i = 0; i < batches; i++) {
        CHECK(loop_call(sc->l, emit_batch, sc) == 0);
        for (int j = 0; j < BATCH; j++) {
            line = cl_line(&b);
            CHECK(line && strstr(line, "\"event\": \"FLOOD\""));
            free(line);
        }
    }
    while ((line = cl_line(&a))) {
        a_lines++;
        free(line);
    }
    CHECK(a_lines < batches * BATCH);
    CHECK(a.pos == a.len && read(a.fd, a.buf, 1) == 0); /* closed by the server */
    CHECK(cl_send(&b, "{\"execute\": \"noargs\"}") == 0);
    CHECK(cl_expect(&b, "{\"return\": {}}") == 0);
    cl_close(&a);
    cl_close(&b);
    return 0;
}

static int sc_half_close(struct sc *sc)
{
    struct cl a;

    CHECK(cl_negotiate(&a, sc->path) == 0);
    CHECK(cl_send(&a, "{\"execute\": \"noargs\", \"id\": 1}{\"execute\": \"echo\", \"id\": 2}") ==
          0);
    CHECK(shutdown(a.fd, SHUT_WR) == 0);
    CHECK(cl_expect(&a, "{\"return\": {}, \"id\": 1}") == 0);
    CHECK(cl_expect(&a, "{\"return\": {}, \"id\": 2}") == 0);
    CHECK(cl_sees_eof(&a));
    cl_close(&a);
    return 0;
}

static int sc_oversize(struct sc *sc)
{
    struct cl a, b;
    char chunk[4096];
    size_t sent = 0;

    CHECK(cl_negotiate(&a, sc->path) == 0);
    CHECK(cl_send(&a, "{\"execute\": \"echo\", \"arguments\": {\"s\": \"") == 0);
    memset(chunk, 'x', sizeof(chunk));
    while (sent < QMP_MAX_REQUEST + sizeof(chunk)) {
        ssize_t w = send(a.fd, chunk, sizeof(chunk), MSG_NOSIGNAL);
        if (w <= 0)
            break; /* the server hung up */
        sent += (size_t)w;
    }
    CHECK(cl_expect(&a, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, "
                        "request larger than 1048576 bytes\"}}") == 0);
    CHECK(cl_sees_eof(&a));
    cl_close(&a);
    CHECK(cl_negotiate(&b, sc->path) == 0);
    cl_close(&b);
    return 0;
}

static int wait_deferred(struct sc *sc, int ms)
{
    for (int i = 0; i < ms && !atomic_load(&sc->deferred_ran); i++)
        usleep(1000);
    return atomic_load(&sc->deferred_ran) ? 0 : -1;
}

/* qmp_defer: the work runs once the reply is in the client's socket, not before. */
static int sc_defer_after_flush(struct sc *sc)
{
    const char *want = "{\"return\": {}, \"id\": 1}";
    struct cl a;
    char *line;

    CHECK(cl_negotiate(&a, sc->path) == 0);
    atomic_store(&sc->watch_fd, a.fd);
    CHECK(cl_send(&a, "{\"execute\": \"later\", \"id\": 1}") == 0);
    CHECK(wait_deferred(sc, 5000) == 0);
    /* the reply was waiting in our socket when the deferred work ran */
    CHECK(atomic_load(&sc->unread_at_deferred) >= (int)strlen(want) + 2);
    CHECK(cl_expect(&a, want) == 0);

    /* a reply too big for the socket, and a client that does not read: runs after a while */
    atomic_store(&sc->deferred_ran, 0);
    CHECK(cl_send(&a, "{\"execute\": \"later-big\"}") == 0);
    usleep(200000);
    CHECK(!atomic_load(&sc->deferred_ran)); /* still waiting for the output to drain */
    CHECK(wait_deferred(sc, 5000) == 0);    /* ...but not forever */
    line = cl_line(&a);                     /* the whole reply still arrives */
    CHECK(line && strlen(line) > BIG_REPLY);
    free(line);
    cl_close(&a);
    return 0;
}

/* ---- tandem ctl ---- */

static char *slurp(FILE *f)
{
    long n;
    char *s;

    fflush(f);
    n = ftell(f);
    s = calloc(1, (size_t)n + 1);
    rewind(f);
    if (n > 0 && fread(s, 1, (size_t)n, f) != (size_t)n)
        s[0] = '\0';
    fclose(f);
    return s;
}

/* Run ctl_main with stdout and stderr captured. */
static int run_ctl(char **out, char **err, int argc, const char **argv)
{
    FILE *fo = tmpfile(), *fe = tmpfile();
    int o, e, rc;

    fflush(stdout);
    fflush(stderr);
    o = dup(1);
    e = dup(2);
    dup2(fileno(fo), 1);
    dup2(fileno(fe), 2);
    rc = ctl_main(argc, (char **)argv);
    fflush(stdout);
    fflush(stderr);
    dup2(o, 1);
    dup2(e, 2);
    close(o);
    close(e);
    *out = slurp(fo);
    *err = slurp(fe);
    return rc;
}

#define CTL(out, err, ...)                                                                         \
    run_ctl(out, err, (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)),         \
            (const char *[]){__VA_ARGS__})

static void *ticker(void *arg)
{
    struct sc *sc = arg;

    while (atomic_load(&sc->ticking)) {
        loop_call(sc->l, emit_tick, sc);
        usleep(5000);
    }
    return NULL;
}

static int sc_ctl(struct sc *sc)
{
    char uri[160], *out, *err;
    pthread_t t;
    int rc;

    snprintf(uri, sizeof(uri), "unix:%s", sc->path);
    rc = CTL(&out, &err, "ctl", "--qmp", uri, "echo", "{\"a\": [1, 2], \"s\": \"\\u00e9\"}");
    CHECK(rc == 0);
    CHECK(!strcmp(out,
                  "{\n    \"a\": [\n        1,\n        2\n    ],\n    \"s\": \"\\u00E9\"\n}\n"));
    free(out);
    free(err);

    rc = CTL(&out, &err, "ctl", "--timeout", "5", "--qmp", sc->path, "noargs");
    CHECK(rc == 0 && !strcmp(out, "{}\n"));
    free(out);
    free(err);

    rc = CTL(&out, &err, "ctl", "--qmp", sc->path, "nosuch");
    CHECK(rc == 1 && !out[0] && strstr(err, "The command nosuch has not been found"));
    free(out);
    free(err);

    rc = CTL(&out, &err, "ctl", "--qmp=", "x");
    CHECK(rc == 2);
    free(out);
    free(err);

    rc = CTL(&out, &err, "ctl", "--qmp", sc->path, "noargs", "{\"x\": 1}");
    CHECK(rc == 1 && strstr(err, "Parameter 'x' is unexpected"));
    free(out);
    free(err);

    /* events: with a stream of TICKs; a command run meanwhile prints only its return */
    atomic_store(&sc->ticking, true);
    CHECK(pthread_create(&t, NULL, ticker, sc) == 0);
    rc = CTL(&out, &err, "ctl", "--qmp", sc->path, "events", "--count", "3", "--timeout", "10");
    CHECK(rc == 0);
    {
        int lines = 0;
        for (char *p = out; (p = strstr(p, "\"event\": \"TICK\"")); p++)
            lines++;
        CHECK(lines == 3);
        CHECK(!strncmp(out, "{\"timestamp\": {\"seconds\": ", 26));
    }
    free(out);
    free(err);
    for (int i = 0; i < 5; i++) {
        rc = CTL(&out, &err, "ctl", "--qmp", sc->path, "echo", "{\"k\": \"v\"}");
        CHECK(rc == 0 && !strcmp(out, "{\n    \"k\": \"v\"\n}\n"));
        free(out);
        free(err);
    }
    atomic_store(&sc->ticking, false);
    pthread_join(t, NULL);

    rc = CTL(&out, &err, "ctl", "--qmp", sc->path, "events", "--count", "2", "--timeout", "0.3");
    CHECK(rc == 1 && strstr(err, "timed out after 0 of 2 events"));
    free(out);
    free(err);
    return 0;
}

static int sc_ctl_errors(struct sc *sc)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char mute[100], *out, *err;
    int fd, rc;

    rc = CTL(&out, &err, "ctl");
    CHECK(rc == 2 && strstr(err, "--qmp PATH is required"));
    free(out);
    free(err);
    rc = CTL(&out, &err, "ctl", "--qmp", sc->path);
    CHECK(rc == 2 && strstr(err, "no command given"));
    free(out);
    free(err);
    rc = CTL(&out, &err, "ctl", "--qmp", sc->path, "stop", "--count", "2");
    CHECK(rc == 2 && strstr(err, "--count only goes with"));
    free(out);
    free(err);
    rc = CTL(&out, &err, "ctl", "--qmp", sc->path, "stop", "[1]");
    CHECK(rc == 2 && strstr(err, "arguments must be a JSON object"));
    free(out);
    free(err);
    rc = CTL(&out, &err, "ctl", "--qmp", "tcp:localhost:4444", "stop");
    CHECK(rc == 2 && strstr(err, "only unix sockets"));
    free(out);
    free(err);
    rc = CTL(&out, &err, "ctl", "--qmp", sc->path, "--timeout", "-1", "stop");
    CHECK(rc == 2 && strstr(err, "--timeout"));
    free(out);
    free(err);
    rc = CTL(&out, &err, "ctl", "--bogus");
    CHECK(rc == 2 && strstr(err, "unknown option '--bogus'"));
    free(out);
    free(err);
    rc = CTL(&out, &err, "ctl", "--help");
    CHECK(rc == 0 && strstr(out, "Usage: tandem ctl"));
    free(out);
    free(err);
    rc = CTL(&out, &err, "ctl", "--qmp", "/nonexistent/qmp.sock", "stop");
    CHECK(rc == 1 && strstr(err, "cannot connect"));
    free(out);
    free(err);

    /* a socket that accepts but never speaks: the greeting wait times out */
    snprintf(mute, sizeof(mute), "%s/mute.sock", sc->dir);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", mute);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 4) == 0);
    rc = CTL(&out, &err, "ctl", "--qmp", mute, "--timeout", "0.2", "stop");
    CHECK(rc == 1 && strstr(err, "timed out waiting for the QMP greeting"));
    free(out);
    free(err);
    close(fd);
    unlink(mute);
    return 0;
}

/* ---- listener setup ---- */

static void test_listener_paths(void **state)
{
    struct sc *sc = *state;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct qmp_server *s2;
    char path[100], longpath[200], err[256];
    int fd;

    /* a live server on the path: refused, and the live socket is left alone */
    s2 = qmp_server_new(sc->l, sc->path, err, sizeof(err));
    assert_null(s2);
    assert_non_null(strstr(err, "in use"));
    assert_int_equal(access(sc->path, F_OK), 0);

    /* a stale socket (nobody listening): replaced */
    snprintf(path, sizeof(path), "%s/stale.sock", sc->dir);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    s2 = qmp_server_new(sc->l, path, err, sizeof(err));
    assert_non_null(s2);
    qmp_server_free(s2);
    assert_int_equal(access(path, F_OK), -1);

    /* a regular file: never removed */
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    close(fd);
    assert_null(qmp_server_new(sc->l, path, err, sizeof(err)));
    assert_non_null(strstr(err, "not a socket"));
    assert_int_equal(access(path, F_OK), 0);
    unlink(path);

    /* too long for a unix socket address */
    memset(longpath, 'a', sizeof(longpath));
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    assert_null(qmp_server_new(sc->l, longpath, err, sizeof(err)));
}

#define SCENARIO(name)                                                                             \
    static void test_##name(void **state)                                                          \
    {                                                                                              \
        run_scenario(*state, sc_##name);                                                           \
    }

SCENARIO(basic)
SCENARIO(connect_churn)
SCENARIO(slow_reader)
SCENARIO(event_flood)
SCENARIO(half_close)
SCENARIO(oversize)
SCENARIO(defer_after_flush)
SCENARIO(ctl)
SCENARIO(ctl_errors)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_churn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_flood, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defer_after_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ctl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ctl_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listener_paths, setup, teardown),
    };

    /* the server and ctl write with MSG_NOSIGNAL; the test's own clients do too */
    return cmocka_run_group_tests_name("qmp-socket", tests, NULL, NULL);
}
