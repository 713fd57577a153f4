/* server.c: the QMP server: unix-socket listener, command registry glue, event broadcast.
 *
 * The clients it accepts are served by client.c; sessions attached in-process (tests) share
 * the same registry and receive the same events.
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
#include "qmp/client.h"
#include "qmp/dispatch.h"
#include "qmp/json_out.h"
#include "qmp/server_int.h"
#include "qmp/session.h"

#ifndef TANDEM_VERSION
#define TANDEM_VERSION "0.0.0"
#endif

#define QMP_ACCEPT_BATCH    4
#define QMP_ACCEPT_PAUSE_MS 100

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

int qmp_send_greeting(struct qmp_session *sess)
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

void qmp_server_link_session(struct qmp_server *s, struct qmp_session *sess)
{
    sess->next = s->sessions;
    s->sessions = sess;
}

void qmp_server_unlink_session(struct qmp_server *s, struct qmp_session *sess)
{
    for (struct qmp_session **pp = &s->sessions; *pp; pp = &(*pp)->next) {
        if (*pp == sess) {
            *pp = sess->next;
            sess->next = NULL;
            return;
        }
    }
}

void qmp_server_enter(struct qmp_server *s)
{
    s->busy++;
}

void qmp_server_leave(struct qmp_server *s)
{
    if (--s->busy == 0)
        qmp_clients_reap(s);
}

/* ---- listener ---- */

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

    qmp_server_enter(s);
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
        if (qmp_client_new(s, fd) < 0) {
            log_warn("qmp: cannot set up a client");
            close(fd);
        }
    }
    qmp_server_leave(s);
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
    qmp_clients_kill_all(s);
    qmp_clients_reap(s);
    while (s->sessions) { /* attached sessions the owner did not detach */
        struct qmp_session *sess = s->sessions;
        s->sessions = sess->next;
        qmp_session_free(sess);
    }
    qmp_registry_free(s->reg);
    while (s->cleanups) {
        struct qmp_cleanup *cl = s->cleanups;
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
    struct qmp_cleanup *cl = malloc(sizeof(*cl));

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
    qmp_server_enter(s);
    for (sess = s->sessions; sess; sess = next) {
        next = sess->next; /* a failing write unlinks sess, never another session */
        if (!sess->dead && qmp_session_negotiated(sess) &&
            sess->ops->write(sess->opaque, line, len) < 0)
            sess->dead = true;
    }
    qmp_server_leave(s);
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
    qmp_server_link_session(s, sess);
    qmp_send_greeting(sess);
    return sess;
}

void qmp_server_detach(struct qmp_server *s, struct qmp_session *sess)
{
    if (!sess)
        return;
    qmp_server_unlink_session(s, sess);
    qmp_session_free(sess);
}
