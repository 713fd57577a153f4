/* test_cluster.c: the Corosync client against a real one-node corosync, started by the test in
 * a network namespace of its own (libqb's IPC sockets are abstract, hence per netns; a mount
 * namespace gives it a /run of its own for its pid lock): no corosync refuses clearly; connect
 * (up, quorate, node 1); a second member (cluster_probe) and its pid on both sides; another
 * group does not count; leave and rejoin; `tandem run --cluster` (refused without corosync, a
 * member with it, leaving when stopped); a member killed (-9); corosync killed (-9): up=false,
 * and back when it is restarted, with a leave asked while it was down kept; stop.
 *
 * Needs root (unshare), corosync; else those tests are skipped. Nothing asserts on elapsed time:
 * WAIT_MS only bounds a wait that a broken client would never end. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "../fd_count.h"
#include "cluster/cluster.h"

#define WAIT_MS 30000
#define GROUP   "tandem-test"

/* ---- the environment: a netns, a temp dir, corosync ---- */

static struct {
    bool ok;
    char why[256]; /* why the corosync tests are skipped */
    char dir[64];
    char conf[128];
    const char *corosync, *probe, *tandem;
    pid_t cs; /* corosync, 0 when not running */
} env;

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int lo_up(void)
{
    struct ifreq ifr = {0};
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), r = 0;

    if (s < 0)
        return -errno;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        r = -errno;
    ifr.ifr_flags |= IFF_UP;
    if (!r && ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        r = -errno;
    close(s);
    return r;
}

static const char *find_corosync(void)
{
    static const char *const paths[] = {"/usr/sbin/corosync", "/usr/local/sbin/corosync",
                                        "/sbin/corosync"};

    if (getenv("COROSYNC"))
        return getenv("COROSYNC");
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        if (access(paths[i], X_OK) == 0)
            return paths[i];
    return NULL;
}

static void env_setup(void)
{
    FILE *f;

    env.probe = getenv("CLUSTER_PROBE");
    env.tandem = getenv("TANDEM");
    env.corosync = find_corosync();
    if (!env.probe || !env.tandem || !env.corosync) {
        snprintf(env.why, sizeof(env.why), "no %s",
                 !env.probe    ? "CLUSTER_PROBE"
                 : !env.tandem ? "TANDEM"
                               : "corosync");
        return;
    }
    if (unshare(CLONE_NEWNET) < 0) {
        snprintf(env.why, sizeof(env.why), "unshare(CLONE_NEWNET): %s (needs root)",
                 strerror(errno));
        return;
    }
    if (lo_up() < 0) {
        snprintf(env.why, sizeof(env.why), "cannot bring lo up in the new netns");
        return;
    }
    snprintf(env.dir, sizeof(env.dir), "/tmp/tandem-cluster-XXXXXX");
    if (!mkdtemp(env.dir)) {
        snprintf(env.why, sizeof(env.why), "mkdtemp: %s", strerror(errno));
        return;
    }
    snprintf(env.conf, sizeof(env.conf), "%s/corosync.conf", env.dir);
    f = fopen(env.conf, "w");
    if (!f) {
        snprintf(env.why, sizeof(env.why), "%s: %s", env.conf, strerror(errno));
        return;
    }
    fprintf(f,
            "totem {\n  version: 2\n  cluster_name: tandemtest\n  transport: knet\n"
            "  crypto_cipher: none\n  crypto_hash: none\n}\n"
            "nodelist {\n  node {\n    ring0_addr: 127.0.0.1\n    nodeid: 1\n    name: n1\n  }\n}\n"
            "quorum {\n  provider: corosync_votequorum\n  expected_votes: 1\n}\n"
            "logging {\n  to_stderr: yes\n  to_syslog: no\n  to_logfile: no\n  timestamp: on\n}\n"
            "system {\n  state_dir: %s\n}\n",
            env.dir);
    fclose(f);
    env.ok = true;
}

static void corosync_start(void)
{
    char log[128];
    pid_t pid;

    snprintf(log, sizeof(log), "%s/corosync.log", env.dir);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

        /* Its pid lock (/var/run/corosync.pid) in a /run of its own: other corosyncs may run on
         * this host, each in its own netns. */
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0 || unshare(CLONE_NEWNS) < 0 ||
            mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("tmpfs", "/var/run", "tmpfs", 0, "mode=0755") < 0)
            _exit(126);
        execl(env.corosync, "corosync", "-f", "-c", env.conf, (char *)NULL);
        _exit(127);
    }
    env.cs = pid;
}

/* The shared memory a killed corosync leaves behind: its blackbox, and a directory per client
 * connection (qb-SERVERPID-CLIENTPID-...), emptied by the clients. */
static void shm_sweep(pid_t pid)
{
    char prefix[32], bb[48];
    DIR *d = opendir("/dev/shm");
    struct dirent *e;

    if (!d)
        return;
    snprintf(prefix, sizeof(prefix), "qb-%d-", (int)pid);
    snprintf(bb, sizeof(bb), "qb-corosync-%d-blackbox-", (int)pid);
    while ((e = readdir(d))) {
        if (!strncmp(e->d_name, bb, strlen(bb))) {
            unlinkat(dirfd(d), e->d_name, 0);
        } else if (!strncmp(e->d_name, prefix, strlen(prefix))) {
            int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            DIR *sub = fd >= 0 ? fdopendir(fd) : NULL;
            struct dirent *f;

            while (sub && (f = readdir(sub)))
                if (f->d_name[0] != '.')
                    unlinkat(fd, f->d_name, 0);
            if (sub)
                closedir(sub);
            else if (fd >= 0)
                close(fd);
            if (unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) < 0)
                unlinkat(dirfd(d), e->d_name, 0);
        }
    }
    closedir(d);
}

static void corosync_kill(void)
{
    if (!env.cs)
        return;
    kill(env.cs, SIGKILL);
    waitpid(env.cs, NULL, 0);
    shm_sweep(env.cs);
    env.cs = 0;
}

static void env_teardown(void)
{
    char cmd[128];

    corosync_kill();
    if (env.dir[0]) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", env.dir);
        if (system(cmd) != 0)
            fprintf(stderr, "test_cluster: cannot remove %s\n", env.dir);
    }
}

#define NEED_COROSYNC()                                                                            \
    do {                                                                                           \
        if (!env.ok) {                                                                             \
            print_message("skipped: %s\n", env.why);                                               \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* ---- our member: what the callback saw ---- */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct cluster_view last;
    char last_what[512];
    char whats[16384]; /* every what since the last mark, newline separated */
    unsigned calls;
    bool seq_gap;     /* a seq that was not the previous + 1 */
    bool main_thread; /* a call on the main thread */
} rec = {.lock = PTHREAD_MUTEX_INITIALIZER};
static pthread_t main_thread;

static void on_view(void *opaque, const struct cluster_view *v, const char *what)
{
    struct cluster_view g;
    size_t n;

    cluster_get(&g); /* allowed from the callback; the published view is this one */
    pthread_mutex_lock(&rec.lock);
    if (rec.calls && v->seq != rec.last.seq + 1)
        rec.seq_gap = true;
    if (pthread_equal(pthread_self(), main_thread))
        rec.main_thread = true;
    rec.last = *v;
    snprintf(rec.last_what, sizeof(rec.last_what), "%s", what);
    n = strlen(rec.whats);
    snprintf(rec.whats + n, sizeof(rec.whats) - n, "%s\n", what);
    rec.calls++;
    pthread_cond_broadcast(&rec.cond);
    pthread_mutex_unlock(&rec.lock);
    if (g.seq < v->seq)
        fprintf(stderr, "test_cluster: cluster_get lags the callback: %llu < %llu\n",
                (unsigned long long)g.seq, (unsigned long long)v->seq);
}

static void rec_mark(void)
{
    pthread_mutex_lock(&rec.lock);
    rec.whats[0] = '\0';
    pthread_mutex_unlock(&rec.lock);
}

typedef bool (*view_pred)(const struct cluster_view *v, long arg);

/* Wait until the last reported view satisfies pred; it is copied to *out. */
static void wait_view(view_pred pred, long arg, const char *desc, struct cluster_view *out)
{
    struct timespec until;
    bool ok;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&rec.lock);
    while (!(ok = rec.calls && pred(&rec.last, arg)))
        if (pthread_cond_timedwait(&rec.cond, &rec.lock, &until) == ETIMEDOUT)
            break;
    ok = rec.calls && pred(&rec.last, arg);
    if (out)
        *out = rec.last;
    pthread_mutex_unlock(&rec.lock);
    if (!ok)
        fail_msg("no view with %s; the last: up %d quorate %d joined %d nodes %u npeers %u "
                 "(%s); since the mark: %s",
                 desc, rec.last.up, rec.last.quorate, rec.last.joined, rec.last.nodes,
                 rec.last.npeers, rec.last_what, rec.whats);
}

static bool whats_have(const char *s)
{
    bool r;

    pthread_mutex_lock(&rec.lock);
    r = strstr(rec.whats, s) != NULL;
    pthread_mutex_unlock(&rec.lock);
    return r;
}

static bool pred_member_alone(const struct cluster_view *v, long arg)
{
    return v->up && v->quorate && v->joined && v->npeers == 0;
}

static bool pred_peer(const struct cluster_view *v, long pid)
{
    return v->up && v->joined && v->npeers == 1 && v->peer_pid[0] == (uint32_t)pid;
}

static bool pred_not_joined(const struct cluster_view *v, long arg)
{
    return v->up && !v->joined && v->npeers == 0;
}

static bool pred_down(const struct cluster_view *v, long arg)
{
    return !v->up;
}

static bool pred_up_quorate(const struct cluster_view *v, long arg)
{
    return v->up && v->quorate;
}

/* ---- the other member: cluster_probe ---- */

struct probe {
    pid_t pid;
    int in, out;
    char buf[8192];
    size_t len;
};

struct pview {
    bool up, quorate, joined;
    long nodeid, nodes, npeers, peer_pid[CLUSTER_MAX_PEERS], peer_nodeid[CLUSTER_MAX_PEERS];
    char what[256], error[256];
};

static void probe_start(struct probe *p, const char *group)
{
    int in[2], out[2];

    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    p->len = 0;
    p->pid = fork();
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0)
            _exit(126);
        execl(env.probe, env.probe, group, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    p->in = in[1];
    p->out = out[0];
}

static void probe_reap(struct probe *p, int sig)
{
    if (p->pid <= 0)
        return;
    if (sig)
        kill(p->pid, sig);
    close(p->in);
    waitpid(p->pid, NULL, 0);
    close(p->out);
    p->pid = 0;
}

static bool parse_pview(const char *line, struct pview *v)
{
    json_object *o = json_tokener_parse(line), *x, *peers;

    memset(v, 0, sizeof(*v));
    if (!o)
        return false;
    if (json_object_object_get_ex(o, "error", &x))
        snprintf(v->error, sizeof(v->error), "%s", json_object_get_string(x));
#define GETB(k) v->k = json_object_object_get_ex(o, #k, &x) && json_object_get_boolean(x)
#define GETI(k) v->k = json_object_object_get_ex(o, #k, &x) ? (long)json_object_get_int64(x) : -1
    GETB(up);
    GETB(quorate);
    GETB(joined);
    GETI(nodeid);
    GETI(nodes);
    GETI(npeers);
#undef GETB
#undef GETI
    if (json_object_object_get_ex(o, "what", &x))
        snprintf(v->what, sizeof(v->what), "%s", json_object_get_string(x));
    if (json_object_object_get_ex(o, "peers", &peers))
        for (size_t i = 0; i < json_object_array_length(peers) && i < CLUSTER_MAX_PEERS; i++) {
            json_object *pe = json_object_array_get_idx(peers, i);
            if (json_object_object_get_ex(pe, "pid", &x))
                v->peer_pid[i] = (long)json_object_get_int64(x);
            if (json_object_object_get_ex(pe, "nodeid", &x))
                v->peer_nodeid[i] = (long)json_object_get_int64(x);
        }
    json_object_put(o);
    return true;
}

typedef bool (*pview_pred)(const struct pview *v, long arg);

/* Read the probe's lines until one satisfies pred (copied to *out). */
static void probe_wait(struct probe *p, pview_pred pred, long arg, const char *desc,
                       struct pview *out)
{
    uint64_t due = mono_ms() + WAIT_MS;
    char last[sizeof(p->buf)] = "(nothing)";

    for (;;) {
        char *nl;
        struct pollfd pfd = {.fd = p->out, .events = POLLIN};
        uint64_t now = mono_ms();
        ssize_t n;

        while ((nl = memchr(p->buf, '\n', p->len))) {
            struct pview v;
            size_t ll = (size_t)(nl - p->buf);

            *nl = '\0';
            snprintf(last, sizeof(last), "%s", p->buf);
            memmove(p->buf, nl + 1, p->len - ll - 1);
            p->len -= ll + 1;
            if (parse_pview(last, &v) && !v.error[0] && pred(&v, arg)) {
                if (out)
                    *out = v;
                return;
            }
            if (v.error[0])
                fail_msg("probe: %s", v.error);
        }
        if (now >= due || p->len == sizeof(p->buf))
            fail_msg("probe: no view with %s; its last line: %s", desc, last);
        if (poll(&pfd, 1, (int)(due - now)) <= 0)
            continue;
        n = read(p->out, p->buf + p->len, sizeof(p->buf) - p->len);
        if (n <= 0)
            fail_msg("probe: exited before a view with %s; its last line: %s", desc, last);
        p->len += (size_t)n;
    }
}

static bool ppred_peer(const struct pview *v, long pid)
{
    return v->up && v->joined && v->npeers == 1 && v->peer_pid[0] == pid && v->peer_nodeid[0] == 1;
}

static bool ppred_alone(const struct pview *v, long arg)
{
    return v->up && v->quorate && v->joined && v->npeers == 0;
}

/* ---- tandem run --cluster ---- */

/* `tandem run --cluster corosync,group=G` on a VM waiting for an incoming migration (no guest
 * needed); its stderr goes to *errfd. */
static pid_t tandem_start(const char *group, int *errfd)
{
    char spec[64];
    int e[2];
    pid_t pid;

    snprintf(spec, sizeof(spec), "corosync,group=%s", group);
    assert_int_equal(pipe2(e, O_CLOEXEC), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(e[1], 2) < 0)
            _exit(126);
        execl(env.tandem, env.tandem, "run", "--cluster", spec, "--incoming", "defer", "--accel",
              "emu", "--serial", "none", "-m", "16M", (char *)NULL);
        _exit(127);
    }
    close(e[1]);
    *errfd = e[0];
    return pid;
}

/* Everything left on fd, until EOF (the process is gone). */
static void read_all(int fd, char *buf, size_t size)
{
    size_t n = 0;
    ssize_t r;

    while (n + 1 < size && (r = read(fd, buf + n, size - n - 1)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fd);
}

/* ---- tests ---- */

static void test_parse(void **state)
{
    char g[CLUSTER_GROUP_MAX], err[160];
    char longname[200];

    assert_int_equal(cluster_parse("corosync", g, err, sizeof(err)), 0);
    assert_string_equal(g, "tandem");
    assert_int_equal(cluster_parse("corosync,group=vm-42", g, err, sizeof(err)), 0);
    assert_string_equal(g, "vm-42");
    assert_int_equal(cluster_parse("corosync,group=a,group=b", g, err, sizeof(err)), 0);
    assert_string_equal(g, "b");
    assert_int_equal(cluster_parse("pacemaker", g, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "corosync[,group=NAME]"));
    assert_int_equal(cluster_parse("corosyncx", g, err, sizeof(err)), -EINVAL);
    assert_int_equal(cluster_parse("corosync,", g, err, sizeof(err)), -EINVAL);
    assert_int_equal(cluster_parse("corosync,group=", g, err, sizeof(err)), -EINVAL);
    assert_int_equal(cluster_parse("corosync,nodes=3", g, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "nodes=3"));
    memset(longname, 'x', sizeof(longname));
    memcpy(longname, "corosync,group=", 15);
    longname[15 + CLUSTER_GROUP_MAX - 1] = '\0'; /* 127 characters: fits */
    assert_int_equal(cluster_parse(longname, g, err, sizeof(err)), 0);
    assert_int_equal(strlen(g), CLUSTER_GROUP_MAX - 1);
    longname[15 + CLUSTER_GROUP_MAX - 1] = 'x';
    longname[15 + CLUSTER_GROUP_MAX] = '\0'; /* 128: does not */
    assert_int_equal(cluster_parse(longname, g, err, sizeof(err)), -EINVAL);
}

static void test_not_started(void **state)
{
    struct cluster_view v;

    cluster_get(&v);
    assert_false(v.up);
    assert_int_equal(v.seq, 0);
    assert_int_equal(cluster_leave_group(), -ENOTCONN);
    assert_int_equal(cluster_rejoin_group(), -ENOTCONN);
    cluster_stop(); /* nothing to stop */
}

static void test_no_corosync(void **state)
{
    char err[256] = "";

    NEED_COROSYNC();
    /* Our netns has no corosync (yet): its sockets are not reachable from here. */
    assert_true(cluster_start(GROUP, on_view, NULL, err, sizeof(err)) < 0);
    print_message("error: %s\n", err);
    assert_non_null(strstr(err, "cannot connect to corosync"));
    assert_non_null(strstr(err, "is corosync running?"));
    assert_int_equal(rec.calls, 0);
    assert_int_equal(cluster_leave_group(), -ENOTCONN);
}

/* tandem run --cluster without corosync: a clear error at start, exit status 1. */
static void test_cli_no_corosync(void **state)
{
    char out[2048];
    int errfd, st;
    pid_t pid;

    NEED_COROSYNC();
    pid = tandem_start(GROUP, &errfd);
    read_all(errfd, out, sizeof(out));
    assert_int_equal(waitpid(pid, &st, 0), pid);
    print_message("tandem: %s", out);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    assert_non_null(strstr(out, "tandem run: --cluster: cannot connect to corosync"));
    assert_non_null(strstr(out, "is corosync running?"));
}

static void test_connect(void **state)
{
    char err[256] = "";
    struct cluster_view v;
    uint64_t due;
    int r;

    NEED_COROSYNC();
    corosync_start();
    /* Until it serves its IPC: the same error as when it is not running at all. */
    due = mono_ms() + WAIT_MS;
    while ((r = cluster_start(GROUP, on_view, NULL, err, sizeof(err))) < 0 && mono_ms() < due) {
        assert_true(r != -EALREADY && r != -EINVAL);
        sleep_ms(100);
    }
    if (r < 0)
        fail_msg("corosync did not come up: %s (see %s/corosync.log)", err, env.dir);
    assert_int_equal(cluster_start(GROUP, on_view, NULL, err, sizeof(err)), -EALREADY);
    wait_view(pred_member_alone, 0, "up, quorate, joined, no peer", &v);
    assert_int_equal(v.nodeid, 1);
    assert_int_equal(v.nodes, 1);
    assert_true(whats_have("connected to corosync as node 1"));
    assert_true(whats_have("joined group " GROUP ": 0 peers"));
    cluster_get(&v);
    assert_true(v.up && v.quorate && v.joined);
    assert_false(rec.main_thread);
}

static void test_peer(void **state)
{
    struct probe p, other;
    struct pview pv;
    struct cluster_view v;
    char s[64];

    NEED_COROSYNC();
    rec_mark();
    probe_start(&p, GROUP);
    wait_view(pred_peer, p.pid, "the probe as our peer", &v);
    assert_int_equal(v.peer_nodeid[0], 1);
    snprintf(s, sizeof(s), "peer 1/%d joined the group", (int)p.pid);
    assert_true(whats_have(s));
    /* And we are its peer. */
    probe_wait(&p, ppred_peer, getpid(), "us as its peer", &pv);
    assert_true(pv.quorate);
    assert_int_equal(pv.nodes, 1);

    /* A member of another group is no peer of ours, nor we of it. */
    probe_start(&other, GROUP "-other");
    probe_wait(&other, ppred_alone, 0, "joined alone", &pv);
    cluster_get(&v);
    assert_int_equal(v.npeers, 1);
    assert_int_equal(v.peer_pid[0], (uint32_t)p.pid);
    probe_reap(&other, 0);

    /* Killed: it leaves the group as a process gone down. */
    rec_mark();
    kill(p.pid, SIGKILL);
    wait_view(pred_member_alone, 0, "the probe gone", &v);
    snprintf(s, sizeof(s), "peer 1/%d left the group (process down)", (int)p.pid);
    assert_true(whats_have(s));
    probe_reap(&p, 0);
}

static void test_leave_rejoin(void **state)
{
    struct probe p;
    struct pview pv;
    struct cluster_view v;
    char s[64];

    NEED_COROSYNC();
    probe_start(&p, GROUP);
    wait_view(pred_peer, p.pid, "the probe as our peer", NULL);
    probe_wait(&p, ppred_peer, getpid(), "us as its peer", NULL);

    rec_mark();
    assert_int_equal(cluster_leave_group(), 0);
    wait_view(pred_not_joined, 0, "out of the group", &v);
    assert_true(v.quorate);
    assert_true(whats_have("left group " GROUP));
    probe_wait(&p, ppred_alone, 0, "us gone", &pv);
    snprintf(s, sizeof(s), "peer 1/%d left the group (left)", (int)getpid());
    assert_string_equal(pv.what, s);

    rec_mark();
    assert_int_equal(cluster_rejoin_group(), 0);
    wait_view(pred_peer, p.pid, "back in the group with the probe", NULL);
    assert_true(whats_have("joined group " GROUP ": 1 peer (1/"));
    probe_wait(&p, ppred_peer, getpid(), "us back", NULL);
    probe_reap(&p, SIGKILL);
    wait_view(pred_member_alone, 0, "the probe gone", NULL);
}

static void test_corosync_lost_and_back(void **state)
{
    struct probe p;
    struct pview pv;
    struct cluster_view v;

    NEED_COROSYNC();
    rec_mark();
    corosync_kill();
    wait_view(pred_down, 0, "corosync gone", &v);
    assert_false(v.quorate);
    assert_false(v.joined);
    assert_int_equal(v.npeers, 0);
    assert_true(whats_have("corosync connection lost"));
    cluster_get(&v);
    assert_false(v.up);

    /* A leave asked while down is kept: the reconnection does not join. */
    assert_int_equal(cluster_leave_group(), 0);
    rec_mark();
    corosync_start();
    wait_view(pred_up_quorate, 0, "corosync back", &v);
    assert_int_equal(v.nodeid, 1);
    assert_true(whats_have("corosync connection back as node 1"));
    assert_false(v.joined);
    probe_start(&p, GROUP);
    probe_wait(&p, ppred_alone, 0, "a group without us", &pv);

    assert_int_equal(cluster_rejoin_group(), 0);
    wait_view(pred_peer, p.pid, "rejoined with the probe", NULL);
    probe_wait(&p, ppred_peer, getpid(), "us back", NULL);
    probe_reap(&p, SIGKILL);
    wait_view(pred_member_alone, 0, "the probe gone", NULL);
}

/* tandem run --cluster joins the group named; stopped, it leaves it (not just dies). */
static void test_cli(void **state)
{
    struct probe p;
    struct pview pv;
    char out[4096], s[64];
    int errfd, st;
    pid_t pid;

    NEED_COROSYNC();
    probe_start(&p, GROUP "-cli");
    probe_wait(&p, ppred_alone, 0, "joined alone", NULL);
    pid = tandem_start(GROUP "-cli", &errfd);
    probe_wait(&p, ppred_peer, pid, "tandem as its peer", &pv);
    kill(pid, SIGTERM);
    read_all(errfd, out, sizeof(out));
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 128 + SIGTERM);
    probe_wait(&p, ppred_alone, 0, "tandem gone", &pv);
    snprintf(s, sizeof(s), "peer 1/%d left the group (left)", (int)pid);
    assert_string_equal(pv.what, s);
    probe_reap(&p, SIGKILL);
    if (strstr(out, "error"))
        fail_msg("tandem said: %s", out);
}

static void test_stop(void **state)
{
    struct cluster_view v;
    char err[256] = "";
    unsigned calls;
    int fds;

    NEED_COROSYNC();
    cluster_stop();
    cluster_stop();
    cluster_get(&v);
    assert_false(v.up);
    pthread_mutex_lock(&rec.lock);
    calls = rec.calls;
    assert_false(rec.seq_gap);
    assert_false(rec.main_thread);
    memset(&rec.last, 0, sizeof(rec.last)); /* what follows must come from the new start */
    pthread_mutex_unlock(&rec.lock);
    assert_int_equal(cluster_leave_group(), -ENOTCONN);

    /* Again, from scratch; and nothing is left open afterwards. */
    fds = count_fds();
    assert_int_equal(cluster_start(GROUP, on_view, NULL, err, sizeof(err)), 0);
    wait_view(pred_member_alone, 0, "connected again", &v);
    assert_true(rec.calls > calls);
    cluster_stop();
    assert_int_equal(count_fds(), fds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_not_started),
        cmocka_unit_test(test_no_corosync),
        cmocka_unit_test(test_cli_no_corosync),
        cmocka_unit_test(test_connect),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_peer),
        cmocka_unit_test(test_leave_rejoin),
        cmocka_unit_test(test_corosync_lost_and_back),
        cmocka_unit_test(test_stop),
    };
    pthread_condattr_t a;
    int r;

    main_thread = pthread_self();
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&rec.cond, &a);
    pthread_condattr_destroy(&a);
    signal(SIGPIPE, SIG_IGN);
    env_setup();
    if (!env.ok)
        print_message("corosync tests skipped: %s\n", env.why);
    r = cmocka_run_group_tests(tests, NULL, NULL);
    cluster_stop();
    env_teardown();
    return r;
}
