/* client.c: one QMP socket client: nonblocking reads into its session, a bounded output queue.
 *
 * Replies and events are appended to the queue and written at once as far as the socket takes
 * them; the rest waits for EPOLLOUT. A client with more than QMP_OUT_HIGH bytes unread is not
 * read from (so a client that never reads cannot make us queue replies without end), and one
 * past QMP_MAX_OUTPUT (events keep coming) is disconnected.
 *
 * Lifetime: a client that fails is killed at once (fd closed, session unlinked, deferred work
 * released) but freed only by qmp_clients_reap, when no server callback is on the stack: a
 * command run for client A can emit an event that kills A or B while A's input is being parsed.
 */
#include "qmp/client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"
#include "qmp/server_int.h"
#include "qmp/session.h"

#define QMP_OUT_HIGH      65536 /* stop reading a client with this much unread output */
#define QMP_READ_CHUNK    16384
#define QMP_FLUSH_WAIT_MS 1000 /* deferred work waits this long for a client that won't read */

struct pending {
    struct qmp_deferred d;
    struct pending *next;
};

struct qmp_client {
    struct qmp_server *srv;
    struct qmp_session *sess;
    int fd;
    char *out; /* queued output: [out_off, out_len) is unsent */
    size_t out_off, out_len, out_cap;
    uint32_t mask;           /* events registered with the loop */
    bool dead;               /* killed: fd closed, waiting to be freed */
    bool eof;                /* the client shut down its side; close once the output is gone */
    struct pending *pending; /* deferred work waiting for the output to drain */
    int flush_timer;
    struct qmp_client *next;
};

/* ---- work deferred until the output has left (qmp_defer) ---- */

static void run_now(struct qmp_server *s, struct qmp_deferred d)
{
    /* Through the loop, so it runs after the current callback has finished with the client. */
    if (!s->loop || loop_call(s->loop, d.fn, d.arg) < 0)
        d.fn(d.arg);
}

static void client_run_pending(struct qmp_client *c)
{
    struct pending *p = c->pending;

    c->pending = NULL;
    if (c->flush_timer > 0) {
        loop_del_timer(c->srv->loop, c->flush_timer);
        c->flush_timer = 0;
    }
    while (p) {
        struct pending *next = p->next;
        if (!c->srv->freeing)
            run_now(c->srv, p->d);
        free(p);
        p = next;
    }
}

static void on_flush_timeout(void *opaque)
{
    struct qmp_client *c = opaque;
    struct qmp_server *s = c->srv;

    qmp_server_enter(s);
    c->flush_timer = 0; /* one-shot: the loop already dropped it */
    log_warn("qmp: client is not reading its replies; running deferred work anyway");
    client_run_pending(c);
    qmp_server_leave(s);
}

static void client_after_flush(void *opaque, void (*fn)(void *arg), void *arg)
{
    struct qmp_client *c = opaque;
    struct pending *p, **pp;
    int id;

    if (c->dead || c->out_off == c->out_len) {
        run_now(c->srv, (struct qmp_deferred){fn, arg});
        return;
    }
    p = malloc(sizeof(*p));
    if (!p) {
        run_now(c->srv, (struct qmp_deferred){fn, arg});
        return;
    }
    p->d = (struct qmp_deferred){fn, arg};
    p->next = NULL;
    pp = &c->pending;
    while (*pp)
        pp = &(*pp)->next;
    *pp = p; /* in request order: `system_reset` then `quit` resets, then quits */
    if (c->flush_timer <= 0) {
        id = loop_add_timer(c->srv->loop, QMP_FLUSH_WAIT_MS, 0, on_flush_timeout, c);
        c->flush_timer = id > 0 ? id : 0;
    }
}

/* ---- I/O ---- */

static void client_update_events(struct qmp_client *c)
{
    size_t unsent = c->out_len - c->out_off;
    uint32_t want = 0;

    if (c->dead)
        return;
    if (!c->eof && unsent < QMP_OUT_HIGH)
        want |= EPOLLIN;
    if (unsent)
        want |= EPOLLOUT;
    if (want != c->mask && loop_mod_fd(c->srv->loop, c->fd, want) == 0)
        c->mask = want;
}

/* Write what the socket takes. Returns 0, or -errno after killing the client. */
static int client_flush(struct qmp_client *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n =
            send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            if (e == EAGAIN || e == EWOULDBLOCK)
                break;
            log_debug("qmp: client write: %s", strerror(e));
            qmp_client_kill(c);
            return -e;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->out_cap > QMP_OUT_HIGH) { /* do not keep a burst's buffer for ever */
            free(c->out);
            c->out = NULL;
            c->out_cap = 0;
        }
        client_run_pending(c);
        if (c->eof) {
            qmp_client_kill(c);
            return 0;
        }
    }
    client_update_events(c);
    return 0;
}

static int client_write(void *opaque, const char *buf, size_t len)
{
    struct qmp_client *c = opaque;
    size_t unsent;

    if (c->dead)
        return -EPIPE;
    unsent = c->out_len - c->out_off;
    if (len > QMP_MAX_OUTPUT - unsent) {
        log_warn("qmp: client has %zu bytes of output unread; disconnecting it", unsent);
        qmp_client_kill(c);
        return -ENOBUFS;
    }
    if (c->out_off && c->out_len + len > c->out_cap) {
        memmove(c->out, c->out + c->out_off, unsent);
        c->out_off = 0;
        c->out_len = unsent;
    }
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        char *p;

        while (cap < c->out_len + len)
            cap *= 2;
        p = realloc(c->out, cap);
        if (!p) {
            qmp_client_kill(c);
            return -ENOMEM;
        }
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, buf, len);
    c->out_len += len;
    return client_flush(c);
}

static const struct qmp_session_ops client_ops = {
    .write = client_write,
    .after_flush = client_after_flush,
};

void qmp_client_kill(struct qmp_client *c)
{
    struct qmp_server *s = c->srv;

    if (c->dead)
        return;
    c->dead = true;
    c->sess->dead = true;
    qmp_server_unlink_session(s, c->sess);
    loop_del_fd(s->loop, c->fd);
    close(c->fd);
    c->fd = -1;
    s->nclients--;
    client_run_pending(c); /* the client is gone: what waited for its output may go on */
    log_debug("qmp: client disconnected");
}

static void client_read(struct qmp_client *c, uint32_t events)
{
    char buf[QMP_READ_CHUNK];
    ssize_t n;
    int rc;

    n = read(c->fd, buf, sizeof(buf));
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            qmp_client_kill(c);
        return;
    }
    if (n == 0) {
        /* A half-closed client still gets the replies to what it sent. */
        c->eof = true;
        if (c->out_off == c->out_len || (events & (EPOLLHUP | EPOLLERR)))
            qmp_client_kill(c);
        else
            client_update_events(c);
        return;
    }
    rc = qmp_session_feed(c->sess, buf, (size_t)n);
    if (rc == -EMSGSIZE)
        log_warn("qmp: request larger than %u bytes; disconnecting the client", QMP_MAX_REQUEST);
    if (rc < 0)
        qmp_client_kill(c);
}

static void on_client_io(void *opaque, uint32_t events)
{
    struct qmp_client *c = opaque;
    struct qmp_server *s = c->srv;

    qmp_server_enter(s);
    if ((events & EPOLLOUT) && !c->dead)
        client_flush(c);
    /* On a hangup, read what is left even if throttled: there is no one to throttle for. */
    if (!c->dead &&
        (((events & EPOLLIN) && (c->mask & EPOLLIN)) || (events & (EPOLLHUP | EPOLLERR))))
        client_read(c, events);
    qmp_server_leave(s);
}

int qmp_client_new(struct qmp_server *s, int fd)
{
    struct qmp_client *c = calloc(1, sizeof(*c));
    int rc;

    if (!c)
        return -ENOMEM;
    c->srv = s;
    c->fd = fd;
    c->sess = qmp_session_new(s->reg, &client_ops, c);
    if (!c->sess) {
        free(c);
        return -ENOMEM;
    }
    rc = loop_add_fd(s->loop, fd, EPOLLIN, on_client_io, c);
    if (rc < 0) {
        qmp_session_free(c->sess);
        free(c);
        return rc;
    }
    c->mask = EPOLLIN;
    c->next = s->clients;
    s->clients = c;
    s->nclients++;
    qmp_server_link_session(s, c->sess);
    qmp_send_greeting(c->sess); /* a failure has killed the client */
    return 0;
}

void qmp_clients_reap(struct qmp_server *s)
{
    struct qmp_client **pp = &s->clients;

    while (*pp) {
        struct qmp_client *c = *pp;
        if (c->dead) {
            *pp = c->next;
            qmp_session_free(c->sess);
            free(c->out);
            free(c);
        } else {
            pp = &c->next;
        }
    }
}

void qmp_clients_kill_all(struct qmp_server *s)
{
    for (struct qmp_client *c = s->clients; c; c = c->next)
        qmp_client_kill(c);
}
