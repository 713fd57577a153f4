/* server.c: the QMP unix-socket listener, its clients' buffers, and event broadcast.
 *
 * Each client: nonblocking fd, a session (framing/parsing/dispatch), and an output queue.
 * Replies and events are appended to the queue and written at once as far as the socket takes
 * them; the rest waits for EPOLLOUT. A client with more than QMP_OUT_HIGH bytes unread is not
 * read from (so a client that never reads cannot make us queue replies without end), and one
 * past QMP_MAX_OUTPUT (events keep coming) is disconnected.
 *
 * Lifetime: a client that fails is "killed" at once (fd closed, session unlinked) but freed only
 * when no server callback is on the stack (busy == 0): a command run from client A can emit an
 * event that kills A or B while A's input is still being parsed.
 */
#include "qmp/server.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"
#include "qmp/dispatch.h"
#include "qmp/json_out.h"
#include "qmp/session.h"

#ifndef TANDEM_VERSION
#define TANDEM_VERSION "0.0.0"
#endif

#define QMP_OUT_HIGH        65536 /* stop reading a client with this much unread output */
#define QMP_READ_CHUNK      16384
#define QMP_ACCEPT_BATCH    4
#define QMP_ACCEPT_PAUSE_MS 100
#define QMP_FLUSH_WAIT_MS   1000 /* deferred work waits this long for a client that won't read */

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

struct cleanup {
    void (*fn)(void *arg);
    void *arg;
    struct cleanup *next;
};

struct qmp_server {
    struct loop *loop;
    pthread_t owner; /* the loop thread */
    int listen_fd;
    int accept_timer; /* > 0 while accepting is paused (out of fds) */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct qmp_registry *reg;
    struct qmp_session *sessions; /* every live session (socket or attached), for events */
    struct qmp_client *clients;   /* socket clients, live and dead-but-not-freed */
    unsigned nclients;            /* live socket clients */
    int busy;                     /* server callbacks on the stack */
    bool freeing;
    struct cleanup *cleanups;
};

static void client_kill(struct qmp_client *c);

int qmp_parse_uri(const char *uri, char *path, size_t n)
{
    struct sockaddr_un sa;
    size_t len;

    if (!uri || strncmp(uri, "unix:", 5) != 0 || !uri[5])
        return -EINVAL;
    len = strlen(uri + 5);
    if (len >= n || len >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(path, uri + 5, len + 1);
    return 0;
}

struct json_object *qmp_version_info(void)
{
    struct json_object *info = json_object_new_object();
    struct json_object *qemu = json_object_new_object();
    int major = 0, minor = 0, micro = 0;

    if (!info || !qemu) {
        json_object_put(info);
        json_object_put(qemu);
        return NULL;
    }
    if (sscanf(TANDEM_VERSION, "%d.%d.%d", &major, &minor, &micro) < 1)
        major = minor = micro = 0;
    /* QEMU's member order. */
    json_object_object_add(qemu, "micro", json_object_new_int(micro));
    json_object_object_add(qemu, "minor", json_object_new_int(minor));
    json_object_object_add(qemu, "major", json_object_new_int(major));
    json_object_object_add(info, "qemu", qemu);
    json_object_object_add(info, "package", json_object_new_string("tandem-" TANDEM_VERSION));
    return info;
}

static int send_greeting(struct qmp_session *sess)
{
    struct json_object *msg = json_object_new_object();
    struct json_object *body = json_object_new_object();
    struct json_object *version = qmp_version_info();
    struct json_object *caps = json_object_new_array();
    int rc = -ENOMEM;

    if (!msg || !body || !version || !caps)
        goto out;
    json_object_object_add(body, "version", version);
    json_object_object_add(body, "capabilities", caps);
    version = caps = NULL;
    json_object_object_add(msg, "QMP", body);
    body = NULL;
    rc = qmp_session_send(sess, msg);
out:
    json_object_put(caps);
    json_object_put(version);
    json_object_put(body);
    json_object_put(msg);
    return rc;
}

static void link_session(struct qmp_server *s, struct qmp_session *sess)
{
    sess->next = s->sessions;
    s->sessions = sess;
}

static void unlink_session(struct qmp_server *s, struct qmp_session *sess)
{
    for (struct qmp_session **pp = &s->sessions; *pp; pp = &(*pp)->next) {
        if (*pp == sess) {
            *pp = sess->next;
            sess->next = NULL;
            return;
        }
    }
}

/* ---- deferred work (qmp_defer) ---- */

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

static void server_enter(struct qmp_server *s)
{
    s->busy++;
}

/* Free the killed clients; only when no callback of ours is on the stack. */
static void reap_clients(struct qmp_server *s)
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

static void server_leave(struct qmp_server *s)
{
    if (--s->busy == 0)
        reap_clients(s);
}

static void on_flush_timeout(void *opaque)
{
    struct qmp_client *c = opaque;
    struct qmp_server *s = c->srv;

    server_enter(s);
    c->flush_timer = 0; /* one-shot: the loop already dropped it */
    log_warn("qmp: client is not reading its replies; running deferred work anyway");
    client_run_pending(c);
    server_leave(s);
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

/* ---- socket clients ---- */

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
            client_kill(c);
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
            client_kill(c);
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
        client_kill(c);
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
            client_kill(c);
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

/* Close the connection now; the memory goes when no callback uses it (server_leave). */
static void client_kill(struct qmp_client *c)
{
    struct qmp_server *s = c->srv;

    if (c->dead)
        return;
    c->dead = true;
    c->sess->dead = true;
    unlink_session(s, c->sess);
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
            client_kill(c);
        return;
    }
    if (n == 0) {
        /* A half-closed client still gets the replies to what it sent. */
        c->eof = true;
        if (c->out_off == c->out_len || (events & (EPOLLHUP | EPOLLERR)))
            client_kill(c);
        else
            client_update_events(c);
        return;
    }
    rc = qmp_session_feed(c->sess, buf, (size_t)n);
    if (rc == -EMSGSIZE)
        log_warn("qmp: request larger than %u bytes; disconnecting the client", QMP_MAX_REQUEST);
    if (rc < 0)
        client_kill(c);
}

static void on_client_io(void *opaque, uint32_t events)
{
    struct qmp_client *c = opaque;
    struct qmp_server *s = c->srv;

    server_enter(s);
    if ((events & EPOLLOUT) && !c->dead)
        client_flush(c);
    /* On a hangup, read what is left even if throttled: there is no one to throttle for. */
    if (!c->dead &&
        (((events & EPOLLIN) && (c->mask & EPOLLIN)) || (events & (EPOLLHUP | EPOLLERR))))
        client_read(c, events);
    server_leave(s);
}

static int client_new(struct qmp_server *s, int fd)
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
    link_session(s, c->sess);
    send_greeting(c->sess); /* a failure has killed the client */
    return 0;
}

static void resume_accepting(void *opaque)
{
    struct qmp_server *s = opaque;

    s->accept_timer = 0; /* one-shot */
    loop_mod_fd(s->loop, s->listen_fd, EPOLLIN);
}

/* Out of fds (EMFILE...): the listener stays readable, so stop watching it for a while
 * instead of spinning on a level-triggered fd. */
static void pause_accepting(struct qmp_server *s, int err)
{
    int id;

    log_warn("qmp: accept: %s; not accepting for %d ms", strerror(err), QMP_ACCEPT_PAUSE_MS);
    if (s->accept_timer > 0 || loop_mod_fd(s->loop, s->listen_fd, 0) < 0)
        return;
    id = loop_add_timer(s->loop, QMP_ACCEPT_PAUSE_MS, 0, resume_accepting, s);
    if (id > 0)
        s->accept_timer = id;
    else
        loop_mod_fd(s->loop, s->listen_fd, EPOLLIN);
}

static void on_accept(void *opaque, uint32_t events)
{
    struct qmp_server *s = opaque;

    server_enter(s);
    /* A few per wakeup (the fd is level-triggered): hangups of clients that came and went
     * are handled between batches, so they free their slots before more are taken. */
    for (int i = 0; i < QMP_ACCEPT_BATCH; i++) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                pause_accepting(s, errno);
            break;
        }
        if (s->nclients >= QMP_MAX_CLIENTS) {
            log_warn("qmp: already %u clients; refusing another", s->nclients);
            close(fd);
            continue;
        }
        if (client_new(s, fd) < 0) {
            log_warn("qmp: cannot set up a client");
            close(fd);
        }
    }
    server_leave(s);
}

/* ---- listener ---- */

/* True if something accepts connections on path: never steal a live VM's socket. */
static bool socket_is_live(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    bool live;

    if (fd < 0)
        return false;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EAGAIN;
    close(fd);
    return live;
}

static int listen_unix(struct qmp_server *s, const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    int fd, rc;

    if (!s->loop) {
        snprintf(err, errlen, "no main loop to serve %s", path);
        return -EINVAL;
    }
    if (!*path || strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "socket path '%s' is empty or longer than %zu bytes", path,
                 sizeof(sa.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "%s exists and is not a socket", path);
            return -EEXIST;
        }
        if (socket_is_live(path)) {
            snprintf(err, errlen, "%s is in use by another process", path);
            return -EADDRINUSE;
        }
        if (unlink(path) < 0 && errno != ENOENT) {
            rc = -errno;
            snprintf(err, errlen, "cannot remove stale socket %s: %s", path, strerror(errno));
            return rc;
        }
    } else if (errno != ENOENT) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return rc;
    }

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return rc;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot bind %s: %s", path, strerror(errno));
        goto err_close;
    }
    snprintf(s->path, sizeof(s->path), "%s", path);
    if (listen(fd, 16) < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
        goto err_unlink;
    }
    rc = loop_add_fd(s->loop, fd, EPOLLIN, on_accept, s);
    if (rc < 0) {
        snprintf(err, errlen, "cannot watch %s: %s", path, strerror(-rc));
        goto err_unlink;
    }
    s->listen_fd = fd;
    return 0;

err_unlink:
    unlink(path);
    s->path[0] = '\0';
err_close:
    close(fd);
    return rc;
}

struct qmp_server *qmp_server_new(struct loop *l, const char *path, char *err, size_t errlen)
{
    struct qmp_server *s = calloc(1, sizeof(*s));

    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->loop = l;
    s->owner = pthread_self();
    s->listen_fd = -1;
    s->reg = qmp_registry_new();
    if (!s->reg) {
        snprintf(err, errlen, "out of memory");
        goto err_free;
    }
    if (path && listen_unix(s, path, err, errlen) < 0)
        goto err_reg;
    if (path)
        log_info("qmp: listening on %s", path);
    return s;

err_reg:
    qmp_registry_free(s->reg);
err_free:
    free(s);
    return NULL;
}

void qmp_server_free(struct qmp_server *s)
{
    if (!s)
        return;
    s->freeing = true; /* deferred work is dropped, not run */
    if (s->accept_timer > 0)
        loop_del_timer(s->loop, s->accept_timer);
    if (s->listen_fd >= 0) {
        loop_del_fd(s->loop, s->listen_fd);
        close(s->listen_fd);
    }
    if (s->path[0])
        unlink(s->path);
    for (struct qmp_client *c = s->clients; c; c = c->next)
        client_kill(c);
    reap_clients(s);
    while (s->sessions) { /* attached sessions the owner did not detach */
        struct qmp_session *sess = s->sessions;
        s->sessions = sess->next;
        qmp_session_free(sess);
    }
    qmp_registry_free(s->reg);
    while (s->cleanups) {
        struct cleanup *cl = s->cleanups;
        s->cleanups = cl->next;
        cl->fn(cl->arg);
        free(cl);
    }
    free(s);
}

int qmp_register(struct qmp_server *s, const char *name, qmp_cmd_fn fn, void *opaque,
                 const struct qmp_arg *args)
{
    return qmp_registry_add(s->reg, name, fn, opaque, args);
}

int qmp_defer(struct qmp_server *s, void (*fn)(void *arg), void *arg)
{
    return qmp_registry_defer(s->reg, fn, arg);
}

int qmp_server_on_free(struct qmp_server *s, void (*fn)(void *arg), void *arg)
{
    struct cleanup *cl = malloc(sizeof(*cl));

    if (!cl) {
        fn(arg);
        return -ENOMEM;
    }
    cl->fn = fn;
    cl->arg = arg;
    cl->next = s->cleanups;
    s->cleanups = cl;
    return 0;
}

static struct json_object *event_message(const char *name)
{
    struct json_object *msg = json_object_new_object();
    struct json_object *ts = json_object_new_object();
    struct timespec now;

    if (!msg || !ts) {
        json_object_put(msg);
        json_object_put(ts);
        return NULL;
    }
    clock_gettime(CLOCK_REALTIME, &now);
    json_object_object_add(ts, "seconds", json_object_new_int64(now.tv_sec));
    json_object_object_add(ts, "microseconds", json_object_new_int64(now.tv_nsec / 1000));
    json_object_object_add(msg, "timestamp", ts);
    json_object_object_add(msg, "event", json_object_new_string(name));
    return msg;
}

void qmp_emit_event(struct qmp_server *s, const char *name, struct json_object *data)
{
    struct json_object *msg;
    struct qmp_session *sess, *next;
    char *line = NULL;
    size_t len;

    if (!pthread_equal(pthread_self(), s->owner)) {
        log_err("qmp: event %s emitted off the loop thread; dropped", name);
        json_object_put(data);
        return;
    }
    msg = event_message(name);
    if (!msg || (data && json_object_object_add(msg, "data", data) < 0)) {
        json_object_put(data);
        goto out;
    }
    if (qmp_json_format(msg, false, &line, &len) < 0)
        goto out;
    {
        char *p = realloc(line, len + 3);
        if (!p)
            goto out;
        line = p;
        memcpy(line + len, "\r\n", 3);
        len += 2;
    }
    server_enter(s);
    for (sess = s->sessions; sess; sess = next) {
        next = sess->next; /* a failing write unlinks sess, never another session */
        if (!sess->dead && qmp_session_negotiated(sess) &&
            sess->ops->write(sess->opaque, line, len) < 0)
            sess->dead = true;
    }
    server_leave(s);
out:
    if (!line)
        log_warn("qmp: out of memory sending event %s", name);
    free(line);
    json_object_put(msg);
}

struct qmp_session *qmp_server_attach(struct qmp_server *s, const struct qmp_session_ops *ops,
                                      void *opaque)
{
    struct qmp_session *sess = qmp_session_new(s->reg, ops, opaque);

    if (!sess)
        return NULL;
    link_session(s, sess);
    send_greeting(sess);
    return sess;
}

void qmp_server_detach(struct qmp_server *s, struct qmp_session *sess)
{
    if (!sess)
        return;
    unlink_session(s, sess);
    qmp_session_free(sess);
}
