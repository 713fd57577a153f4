/* corosync.c: the Corosync client: one CPG group per VM, votequorum's verdict, one thread.
 *
 * The connection, owned by the cluster thread once cluster_start has made it:
 *
 *   cluster_start --connect ok--> UP --dispatch fails, fd hangs up--> DOWN
 *        | connect fails             ^                                  |
 *        v                           +------- connect ok (every 1 s) ---+
 *     error to the caller, no thread
 *
 *   UP:   poll(cpg fd, votequorum fd, wake pipe); dispatch what is readable (CS_DISPATCH_ALL);
 *         act on leave/rejoin requests (cpg_leave / cpg_join, retried while corosync says
 *         TRY_AGAIN or BUSY; a rejoin opens a fresh CPG connection); then, if anything
 *         changed, publish the view and call fn once.
 *   DOWN: the view is {up=false}; poll the wake pipe, reconnect every second.
 *
 * The view is built in cl.cur by corosync's callbacks during a round and published (copied
 * under cl.lock, seq + 1) at its end: cluster_get never sees half a round. Each change is
 * logged once, when it is noted, and its sentence goes into the round's `what`.
 *
 * Only this thread calls into libcpg/libvotequorum once it runs: their handles are not meant
 * to be shared by a dispatching thread and a requesting one, and a reconnect replaces them.
 */
#include "cluster/cluster.h"

#include <corosync/corotypes.h>
#include <corosync/cpg.h>
#include <corosync/votequorum.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"

#define RECONNECT_MS    1000 /* DOWN: one connection attempt per second */
#define JOIN_RETRY_MS   100  /* cpg_join/cpg_leave said TRY_AGAIN or BUSY (sync, a leave pending) */
#define REQUEST_WAIT_MS 5000

static struct {
    pthread_mutex_t lock;     /* guards the fields up to the thread-owned ones */
    pthread_cond_t cond;      /* a leave/rejoin request was served (CLOCK_MONOTONIC) */
    struct cluster_view view; /* the published view */
    bool started;             /* cluster_start succeeded, cluster_stop not done */
    bool stopping;
    bool want_joined;             /* the group membership asked for */
    uint64_t req_seq, served_seq; /* leave/rejoin requests made / served */
    int req_result;
    pthread_t thread;
    int wake[2];
    cluster_fn fn;
    void *opaque;

    /* Owned by the cluster thread (by cluster_start before it exists). */
    struct cpg_name group;
    cpg_handle_t cpg;
    votequorum_handle_t vq;
    bool connected;
    bool join_sent;    /* cpg_join accepted, no cpg_leave since */
    bool join_pending; /* membership to change once corosync stops saying TRY_AGAIN */
    bool cpg_left;     /* cpg_leave was done on this CPG connection */
    bool quiet;        /* connecting: callbacks update cur without notes */
    bool pidns_warned, overflow_warned;
    uint64_t next_connect_ms, next_join_ms;
    struct cluster_view cur;
    char what[512];
    size_t wlen;
} cl = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = {-1, -1}};

static pthread_once_t cond_once = PTHREAD_ONCE_INIT;
static _Thread_local bool on_cluster_thread;

static void cond_init(void)
{
    pthread_condattr_t a;

    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&cl.cond, &a);
    pthread_condattr_destroy(&a);
}

/* A change: logged once, and one sentence of this round's `what`. */
__attribute__((format(printf, 2, 3))) static void note(enum log_level level, const char *fmt, ...)
{
    char s[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    vsnprintf(s, sizeof(s), fmt, ap);
    va_end(ap);
    tlog(level, "cluster: %s", s);
    n = snprintf(cl.what + cl.wlen, sizeof(cl.what) - cl.wlen, "%s%s", cl.wlen ? "; " : "", s);
    if (n > 0)
        cl.wlen = cl.wlen + (size_t)n < sizeof(cl.what) ? cl.wlen + (size_t)n : sizeof(cl.what) - 1;
}

static const char *cpg_reason_name(uint32_t r)
{
    switch (r) {
    case CPG_REASON_JOIN:
        return "joined";
    case CPG_REASON_LEAVE:
        return "left";
    case CPG_REASON_NODEDOWN:
        return "node down";
    case CPG_REASON_NODEUP:
        return "node up";
    case CPG_REASON_PROCDOWN:
        return "process down";
    default:
        return "unknown reason";
    }
}

static bool is_us(const struct cpg_address *a)
{
    return a->nodeid == cl.cur.nodeid && a->pid == (uint32_t)getpid();
}

/* ---- corosync's callbacks (inside cpg_dispatch / votequorum_dispatch, on our thread) ---- */

static void on_deliver(cpg_handle_t h, const struct cpg_name *group, uint32_t nodeid, uint32_t pid,
                       void *msg, size_t len)
{
    /* Nobody sends to the group: membership is all it is for. */
}

static void on_confchg(cpg_handle_t h, const struct cpg_name *group,
                       const struct cpg_address *members, size_t nmembers,
                       const struct cpg_address *left, size_t nleft,
                       const struct cpg_address *joined, size_t njoined)
{
    bool was_joined = cl.cur.joined, found = false;
    unsigned n = 0;

    if (!cl.join_sent)
        return; /* a change that raced our cpg_leave: we are no member */
    for (size_t i = 0; i < nmembers; i++) {
        if (is_us(&members[i])) {
            found = true;
            continue;
        }
        if (n == CLUSTER_MAX_PEERS) {
            if (!cl.overflow_warned)
                log_warn("cluster: group %.*s has more than %d other members: only %d counted",
                         (int)cl.group.length, cl.group.value, CLUSTER_MAX_PEERS,
                         CLUSTER_MAX_PEERS);
            cl.overflow_warned = true;
            continue;
        }
        cl.cur.peer_nodeid[n] = members[i].nodeid;
        cl.cur.peer_pid[n] = members[i].pid;
        n++;
    }
    for (unsigned i = n; i < CLUSTER_MAX_PEERS; i++)
        cl.cur.peer_nodeid[i] = cl.cur.peer_pid[i] = 0;
    cl.cur.npeers = n;
    cl.cur.joined = found;
    for (size_t i = 0; i < nleft; i++) {
        if (is_us(&left[i]))
            continue;
        cl.cur.gone_nodeid = left[i].nodeid;
        cl.cur.gone_pid = left[i].pid;
        cl.cur.gone_reason =
            left[i].reason == CPG_REASON_NODEDOWN ? CLUSTER_GONE_NODE : CLUSTER_GONE_PROCESS;
    }
    if (!found && !cl.pidns_warned) {
        /* Our join was confirmed to us, yet (node, pid) is not among the members. */
        log_warn("cluster: this process (node %u, pid %d) is not in group %.*s's member list: "
                 "do tandem and corosync run in different pid namespaces?",
                 cl.cur.nodeid, (int)getpid(), (int)cl.group.length, cl.group.value);
        cl.pidns_warned = true;
    }
    if (cl.quiet)
        return;
    if (found && !was_joined) {
        char list[160] = "";
        size_t k = 0;

        for (unsigned i = 0; i < n && k < sizeof(list); i++) {
            int w = snprintf(list + k, sizeof(list) - k, "%s%u/%u", i ? ", " : "",
                             cl.cur.peer_nodeid[i], cl.cur.peer_pid[i]);
            k += w > 0 ? (size_t)w : 0;
        }
        note(LOG_INFO, "joined group %.*s: %u peer%s%s%s%s", (int)cl.group.length, cl.group.value,
             n, n == 1 ? "" : "s", n ? " (" : "", list, n ? ")" : "");
        return;
    }
    for (size_t i = 0; i < njoined; i++)
        if (!is_us(&joined[i]))
            note(LOG_INFO, "peer %u/%u joined the group", joined[i].nodeid, joined[i].pid);
    for (size_t i = 0; i < nleft; i++)
        if (!is_us(&left[i]))
            note(LOG_WARN, "peer %u/%u left the group (%s)", left[i].nodeid, left[i].pid,
                 cpg_reason_name(left[i].reason));
    if (was_joined && !found)
        note(LOG_WARN, "no longer a member of group %.*s", (int)cl.group.length, cl.group.value);
}

static void on_totem(cpg_handle_t h, struct cpg_ring_id ring, uint32_t n, const uint32_t *nodes)
{
    log_debug("cluster: totem ring %u.%llu: %u node%s", ring.nodeid, (unsigned long long)ring.seq,
              n, n == 1 ? "" : "s");
}

static void on_quorum(votequorum_handle_t h, uint64_t ctx, uint32_t quorate, uint32_t n,
                      votequorum_node_t nodes[])
{
    unsigned members = 0, was = cl.cur.nodes;
    bool wasq = cl.cur.quorate;

    for (uint32_t i = 0; i < n; i++)
        if (nodes[i].state == VOTEQUORUM_NODESTATE_MEMBER) {
            if (members < CLUSTER_MAX_NODES)
                cl.cur.node_id[members] = nodes[i].nodeid;
            members++;
        }
    for (unsigned i = members; i < CLUSTER_MAX_NODES; i++)
        cl.cur.node_id[i] = 0;
    cl.cur.nodes = members;
    cl.cur.quorate = quorate != 0;
    if (cl.quiet)
        return;
    if (cl.cur.quorate != wasq)
        note(cl.cur.quorate ? LOG_INFO : LOG_WARN, "quorum %s (%u node%s in the partition)",
             cl.cur.quorate ? "gained" : "lost", members, members == 1 ? "" : "s");
    else if (members != was)
        note(LOG_INFO, "%u node%s in the partition (was %u), %s", members, members == 1 ? "" : "s",
             was, cl.cur.quorate ? "quorate" : "inquorate");
}

/* ---- the connection ---- */

static void lost(void);

static cs_error_t cpg_open(void)
{
    cpg_model_v1_data_t model = {
        .model = CPG_MODEL_V1,
        .cpg_deliver_fn = on_deliver,
        .cpg_confchg_fn = on_confchg,
        .cpg_totem_confchg_fn = on_totem,
        .flags = CPG_MODEL_V1_DELIVER_INITIAL_TOTEM_CONF,
    };

    cl.cpg_left = false;
    return cpg_model_initialize(&cl.cpg, CPG_MODEL_V1, (cpg_model_data_t *)&model, NULL);
}

/* Ask for the membership cl.want_joined says: 0 (done, or retried later: join_pending) or a
 * corosync error. */
static cs_error_t apply_membership(bool want)
{
    cs_error_t rc = CS_OK;

    cl.join_pending = false;
    if (!cl.connected || want == cl.join_sent)
        return CS_OK;
    if (want && cl.cpg_left) {
        /* corosync keeps (pid, group) on a connection that left, and refuses to join it again
         * (CS_ERR_EXIST): a rejoin takes a fresh one. */
        cpg_finalize(cl.cpg);
        rc = cpg_open();
        if (rc != CS_OK) {
            log_warn("cluster: cannot reopen CPG to rejoin: %s", cs_strerror(rc));
            cl.cpg = 0; /* finalized: disconnect's cpg_finalize is a no-op */
            lost();     /* the wish stands: the next connection joins */
            return CS_OK;
        }
    }
    rc = want ? cpg_join(cl.cpg, &cl.group) : cpg_leave(cl.cpg, &cl.group);
    if (rc == CS_ERR_TRY_AGAIN || rc == CS_ERR_BUSY) {
        cl.join_pending = true;
        cl.next_join_ms = now_ms() + JOIN_RETRY_MS;
        return CS_OK;
    }
    if (rc != CS_OK)
        return rc;
    cl.join_sent = want;
    if (!want) {
        cl.cpg_left = true;
        cl.cur.joined = false;
        cl.cur.npeers = 0;
        memset(cl.cur.peer_nodeid, 0, sizeof(cl.cur.peer_nodeid));
        memset(cl.cur.peer_pid, 0, sizeof(cl.cur.peer_pid));
        note(LOG_WARN, "left group %.*s", (int)cl.group.length, cl.group.value);
    }
    return CS_OK;
}

static void disconnect(bool leave)
{
    if (!cl.connected)
        return;
    if (leave && cl.join_sent)
        cpg_leave(cl.cpg, &cl.group); /* best effort: finalize says the same to the others */
    cpg_finalize(cl.cpg);
    votequorum_finalize(cl.vq);
    cl.connected = cl.join_sent = cl.join_pending = false;
}

/* Connect, start tracking quorum, join if wanted. On failure nothing stays open. */
static int connect_corosync(bool want, char *err, size_t errlen)
{
    votequorum_callbacks_t cbs = {.votequorum_quorum_notify_fn = on_quorum};
    struct votequorum_info info;
    unsigned int nodeid = 0;
    cs_error_t rc;
    int r = -EIO;

    rc = cpg_open();
    if (rc != CS_OK) {
        err_set(err, errlen, "cannot connect to corosync (CPG: %s): is corosync running?",
                cs_strerror(rc));
        return rc == CS_ERR_LIBRARY ? -ECONNREFUSED : -EIO;
    }
    rc = cpg_local_get(cl.cpg, &nodeid);
    if (rc != CS_OK) {
        err_set(err, errlen, "corosync: cannot read our node id: %s", cs_strerror(rc));
        goto out_cpg;
    }
    rc = votequorum_initialize(&cl.vq, &cbs);
    if (rc != CS_OK) {
        err_set(err, errlen,
                "cannot connect to corosync's votequorum service (%s): does corosync.conf have "
                "quorum { provider: corosync_votequorum }?",
                cs_strerror(rc));
        r = -ENOTSUP;
        goto out_cpg;
    }
    rc = votequorum_getinfo(cl.vq, nodeid, &info);
    if (rc == CS_OK)
        rc = votequorum_trackstart(cl.vq, 0, CS_TRACK_CURRENT | CS_TRACK_CHANGES);
    if (rc != CS_OK) {
        err_set(err, errlen, "corosync: votequorum: %s", cs_strerror(rc));
        goto out_vq;
    }
    cl.connected = true;
    cl.join_sent = cl.join_pending = false;
    cl.cur = (struct cluster_view){
        .up = true, .quorate = (info.flags & VOTEQUORUM_INFO_QUORATE) != 0, .nodeid = nodeid};
    /* The current quorum view was queued before trackstart answered: take it in now, so that
     * the first report has the partition's size. */
    cl.quiet = true;
    rc = votequorum_dispatch(cl.vq, CS_DISPATCH_ALL);
    if (rc == CS_OK)
        rc = apply_membership(want);
    cl.quiet = false;
    if (rc != CS_OK) {
        err_set(err, errlen, "corosync: cannot join group %.*s: %s", (int)cl.group.length,
                cl.group.value, cs_strerror(rc));
        disconnect(false);
        return -EIO;
    }
    return 0;

out_vq:
    votequorum_finalize(cl.vq);
out_cpg:
    cpg_finalize(cl.cpg);
    return r;
}

static void connected_note(bool again)
{
    note(LOG_INFO, "%s as node %u: %s, %u node%s in the partition",
         again ? "corosync connection back" : "connected to corosync", cl.cur.nodeid,
         cl.cur.quorate ? "quorate" : "inquorate", cl.cur.nodes, cl.cur.nodes == 1 ? "" : "s");
}

static void publish(void)
{
    struct cluster_view v;
    bool stopping;

    if (!cl.wlen)
        return;
    pthread_mutex_lock(&cl.lock);
    cl.cur.seq = cl.view.seq + 1;
    cl.view = cl.cur;
    v = cl.view;
    stopping = cl.stopping;
    pthread_mutex_unlock(&cl.lock);
    if (!stopping)
        cl.fn(cl.opaque, &v, cl.what);
    cl.wlen = 0;
    cl.what[0] = '\0';
}

static void lost(void)
{
    disconnect(false);
    cl.cur = (struct cluster_view){0};
    note(LOG_WARN, "corosync connection lost (reconnecting every second)");
    cl.next_connect_ms = now_ms() + RECONNECT_MS;
}

/* Serve the latest leave/rejoin request (or a membership change corosync deferred). */
static void serve_requests(void)
{
    uint64_t seq;
    bool want;
    cs_error_t rc = CS_OK;

    pthread_mutex_lock(&cl.lock);
    seq = cl.req_seq;
    want = cl.want_joined;
    pthread_mutex_unlock(&cl.lock);
    if (seq != cl.served_seq || (cl.join_pending && now_ms() >= cl.next_join_ms))
        rc = apply_membership(want);
    if (seq == cl.served_seq)
        return;
    pthread_mutex_lock(&cl.lock);
    cl.served_seq = seq;
    cl.req_result = rc == CS_OK ? 0 : -EIO;
    pthread_cond_broadcast(&cl.cond);
    pthread_mutex_unlock(&cl.lock);
    if (rc != CS_OK)
        log_warn("cluster: cannot %s group %.*s: %s", want ? "join" : "leave", (int)cl.group.length,
                 cl.group.value, cs_strerror(rc));
}

static int poll_timeout(void)
{
    uint64_t now = now_ms(), until;

    if (!cl.connected)
        until = cl.next_connect_ms;
    else if (cl.join_pending)
        until = cl.next_join_ms;
    else
        return -1;
    return until > now ? (int)(until - now) : 0;
}

static void *cluster_thread(void *arg)
{
    on_cluster_thread = true;
    publish(); /* the view at connection */
    for (;;) {
        struct pollfd p[3] = {{.fd = cl.wake[0], .events = POLLIN}};
        nfds_t n = 1;
        bool stop;

        pthread_mutex_lock(&cl.lock);
        stop = cl.stopping;
        pthread_mutex_unlock(&cl.lock);
        if (stop)
            break;
        serve_requests(); /* while DOWN: recorded for the next connection */
        if (!cl.connected && now_ms() >= cl.next_connect_ms) {
            bool want;
            char err[256];

            pthread_mutex_lock(&cl.lock);
            want = cl.want_joined;
            pthread_mutex_unlock(&cl.lock);
            if (connect_corosync(want, err, sizeof(err)) == 0) {
                connected_note(true);
            } else {
                log_debug("cluster: %s", err);
                cl.next_connect_ms = now_ms() + RECONNECT_MS;
            }
        }
        publish();
        if (cl.connected) {
            if (cpg_fd_get(cl.cpg, &p[1].fd) != CS_OK ||
                votequorum_fd_get(cl.vq, &p[2].fd) != CS_OK) {
                lost();
                publish();
                continue;
            }
            p[1].events = p[2].events = POLLIN;
            n = 3;
        }
        if (poll(p, n, poll_timeout()) < 0) {
            if (errno != EINTR)
                log_warn("cluster: poll: %s", strerror(errno));
            continue;
        }
        if (p[0].revents) {
            char buf[64];
            while (read(cl.wake[0], buf, sizeof(buf)) > 0) {
            }
        }
        for (nfds_t i = 1; i < n && cl.connected; i++) {
            cs_error_t rc;

            if (!p[i].revents)
                continue;
            rc = i == 1 ? cpg_dispatch(cl.cpg, CS_DISPATCH_ALL)
                        : votequorum_dispatch(cl.vq, CS_DISPATCH_ALL);
            /* What was queued is read first; a hang-up after it is the end all the same. */
            if ((rc != CS_OK && rc != CS_ERR_TRY_AGAIN) ||
                (p[i].revents & (POLLHUP | POLLERR | POLLNVAL)))
                lost();
        }
        publish();
    }
    disconnect(true);
    return NULL;
}

/* ---- the API ---- */

int cluster_parse(const char *spec, char *group, char *err, size_t errlen)
{
    const char *p;

    if (strncmp(spec, "corosync", 8) || (spec[8] && spec[8] != ',')) {
        err_set(err, errlen, "--cluster: expected corosync[,group=NAME], got '%s'", spec);
        return -EINVAL;
    }
    snprintf(group, CLUSTER_GROUP_MAX, "%s", CLUSTER_DEFAULT_GROUP);
    for (p = spec + 8; *p == ',';) {
        const char *item = p + 1, *end = strchr(item, ',');
        size_t len = end ? (size_t)(end - item) : strlen(item);

        if (len < 6 || strncmp(item, "group=", 6)) {
            err_set(err, errlen, "--cluster: unknown setting '%.*s' (expected group=NAME)",
                    (int)len, item);
            return -EINVAL;
        }
        if (len == 6 || len - 6 >= CLUSTER_GROUP_MAX) {
            err_set(err, errlen, "--cluster: group: 1 to %d characters", CLUSTER_GROUP_MAX - 1);
            return -EINVAL;
        }
        memcpy(group, item + 6, len - 6);
        group[len - 6] = '\0';
        p = item + len;
    }
    return 0;
}

int cluster_start(const char *group, cluster_fn fn, void *opaque, char *err, size_t errlen)
{
    size_t len = strlen(group);
    int r;

    pthread_once(&cond_once, cond_init);
    pthread_mutex_lock(&cl.lock);
    r = cl.started ? -EALREADY : 0;
    pthread_mutex_unlock(&cl.lock);
    if (r) {
        err_set(err, errlen, "the cluster client is already running");
        return r;
    }
    if (!len || len >= CLUSTER_GROUP_MAX) {
        err_set(err, errlen, "cluster group name: 1 to %d characters", CLUSTER_GROUP_MAX - 1);
        return -EINVAL;
    }
    memset(&cl.group, 0, sizeof(cl.group));
    memcpy(cl.group.value, group, len);
    cl.group.length = (uint32_t)len;
    cl.fn = fn;
    cl.opaque = opaque;
    cl.wlen = 0;
    cl.what[0] = '\0';
    cl.pidns_warned = cl.overflow_warned = false;
    pthread_mutex_lock(&cl.lock);
    cl.want_joined = true;
    cl.req_seq = cl.served_seq = 0;
    cl.stopping = false;
    pthread_mutex_unlock(&cl.lock);
    if (pipe2(cl.wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        r = -errno;
        err_set(err, errlen, "cluster: pipe: %s", strerror(errno));
        return r;
    }
    r = connect_corosync(true, err, errlen);
    if (r)
        goto out_pipe;
    connected_note(false);
    /* Started before the thread runs: its first callback may already ask to leave. */
    pthread_mutex_lock(&cl.lock);
    cl.started = true;
    pthread_mutex_unlock(&cl.lock);
    r = -pthread_create(&cl.thread, NULL, cluster_thread, NULL);
    if (r) {
        err_set(err, errlen, "cluster: cannot start its thread: %s", strerror(-r));
        goto out_conn;
    }
    return 0;

out_conn:
    pthread_mutex_lock(&cl.lock);
    cl.started = false;
    pthread_mutex_unlock(&cl.lock);
    disconnect(true);
out_pipe:
    close(cl.wake[0]);
    close(cl.wake[1]);
    cl.wake[0] = cl.wake[1] = -1;
    return r;
}

void cluster_get(struct cluster_view *v)
{
    pthread_mutex_lock(&cl.lock);
    *v = cl.view;
    pthread_mutex_unlock(&cl.lock);
}

static void wake_thread(void)
{
    if (write(cl.wake[1], "w", 1) < 0 && errno != EAGAIN)
        log_warn("cluster: cannot wake the thread: %s", strerror(errno));
}

static int request_membership(bool join)
{
    struct timespec until;
    uint64_t seq;
    int r = 0;

    pthread_mutex_lock(&cl.lock);
    if (!cl.started || cl.stopping) {
        pthread_mutex_unlock(&cl.lock);
        return -ENOTCONN;
    }
    cl.want_joined = join;
    seq = ++cl.req_seq;
    if (on_cluster_thread) {
        /* From the callback: serve it here, the thread is us. */
        pthread_mutex_unlock(&cl.lock);
        serve_requests();
        pthread_mutex_lock(&cl.lock);
        r = cl.req_result;
        pthread_mutex_unlock(&cl.lock);
        return r;
    }
    pthread_mutex_unlock(&cl.lock);
    wake_thread();
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += REQUEST_WAIT_MS / 1000;
    pthread_mutex_lock(&cl.lock);
    while (cl.served_seq < seq && cl.started && r == 0)
        r = -pthread_cond_timedwait(&cl.cond, &cl.lock, &until);
    if (cl.served_seq >= seq)
        r = cl.req_result;
    else if (!cl.started)
        r = -ENOTCONN;
    pthread_mutex_unlock(&cl.lock);
    return r;
}

int cluster_leave_group(void)
{
    return request_membership(false);
}

int cluster_rejoin_group(void)
{
    return request_membership(true);
}

void cluster_stop(void)
{
    pthread_mutex_lock(&cl.lock);
    if (!cl.started || cl.stopping) {
        pthread_mutex_unlock(&cl.lock);
        return;
    }
    cl.stopping = true;
    pthread_mutex_unlock(&cl.lock);
    wake_thread();
    pthread_join(cl.thread, NULL);
    close(cl.wake[0]);
    close(cl.wake[1]);
    cl.wake[0] = cl.wake[1] = -1;
    pthread_mutex_lock(&cl.lock);
    cl.started = cl.stopping = false;
    cl.view = (struct cluster_view){.seq = cl.view.seq};
    pthread_cond_broadcast(&cl.cond);
    pthread_mutex_unlock(&cl.lock);
}
