/* ctl.c: `tandem ctl`: connect to a QMP socket, negotiate, run one command or print events; and
 * shortcuts for a COLO operator's steps (status, failover, reprotect, checkpoint).
 *
 *   client                                   server
 *     connect ───────────────────────────────>
 *             <─────────────── {"QMP": {...}}   greeting
 *     {"execute": "qmp_capabilities", "id"} ─>
 *             <──────────── {"return": {}, "id"}
 *     {"execute": CMD, "arguments", "id"} ───>
 *             <── events (skipped) ... {"return" | "error", "id"}
 *
 * Replies are matched by id, so events that arrive first are never taken for the answer.
 */
#include "cli/ctl.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "qmp/json_out.h"
#include "qmp/server.h"

#define CTL_DEFAULT_TIMEOUT_MS 30000
#define CTL_CAPS_ID            "tandem-ctl-caps"
#define CTL_CMD_ID             "tandem-ctl-1"

struct ctl_opts {
    char path[108];
    const char *cmd;
    const char *args_text;
    long timeout_ms; /* -1: not given */
    long count;      /* events: stop after this many; 0 = no limit */
    bool count_set;
    bool force; /* failover --force */
    bool json;  /* status --json */
};

/* The COLO operator's shortcuts: each is one QMP command (status: three of them). */
struct shortcut {
    const char *name;
    const char *qmp; /* NULL: status */
    bool takes_arg;  /* the positional after it is an argument (a URI), not JSON */
};

static const struct shortcut shortcuts[] = {
    {"status", NULL, false},
    {"failover", "x-colo-lost-heartbeat", false},
    {"reprotect", "x-colo-reprotect", true},
    {"checkpoint", "x-colo-checkpoint", false},
};

static const struct shortcut *find_shortcut(const char *cmd)
{
    for (size_t i = 0; i < sizeof(shortcuts) / sizeof(shortcuts[0]); i++)
        if (!strcmp(shortcuts[i].name, cmd))
            return &shortcuts[i];
    return NULL;
}

struct conn {
    int fd;
    const char *path;
    struct json_tokener *tok;
    char buf[8192];
    size_t pos, len;
};

static void ctl_usage(FILE *f)
{
    fprintf(f,
            "Usage: tandem ctl --qmp PATH [--timeout S] COMMAND ['{JSON ARGUMENTS}']\n"
            "       tandem ctl --qmp PATH [--timeout S] events [--count N]\n"
            "       tandem ctl --qmp PATH [--timeout S] status [--json]\n"
            "       tandem ctl --qmp PATH [--timeout S] failover [--force]\n"
            "       tandem ctl --qmp PATH [--timeout S] reprotect URI\n"
            "       tandem ctl --qmp PATH [--timeout S] checkpoint\n"
            "\n"
            "Send one QMP command to a running tandem (or QEMU) and print its \"return\" value\n"
            "as pretty JSON; or print the events it sends, one JSON object per line.\n"
            "\n"
            "COLO shortcuts (tandem only; docs/colo.md):\n"
            "  status          query-status, query-colo-status and query-migrate, summed up in\n"
            "                  a few lines (--json: the three replies as one JSON object)\n"
            "  failover        x-colo-lost-heartbeat: a secondary takes over, a primary leaves\n"
            "                  COLO; --force takes over from a disarmed standby\n"
            "  reprotect URI   x-colo-reprotect {\"uri\": URI}: this VM, running unprotected,\n"
            "                  starts a new COLO session as primary toward the new secondary at\n"
            "                  URI (tcp:HOST:PORT or unix:PATH); on a terminal, a progress bar\n"
            "  checkpoint      x-colo-checkpoint: a checkpoint now (primary)\n"
            "\n"
            "  --qmp PATH      the QMP socket: unix:PATH or a plain PATH\n"
            "  --timeout S     seconds to wait for the connection and each reply (default 30);\n"
            "                  with `events`: how long to listen (default: until it closes)\n"
            "  --count N       with `events`: exit after N events\n"
            "  --force         with `failover`: force the takeover\n"
            "  --json          with `status`: print JSON\n"
            "  -h, --help      this text\n"
            "\n"
            "Examples: tandem ctl --qmp /run/vm.sock query-status\n"
            "          tandem ctl --qmp unix:/run/vm.sock stop\n"
            "          tandem ctl --qmp /run/vm.sock events --count 1 --timeout 10\n"
            "          tandem ctl --qmp /run/vm.sock reprotect tcp:10.0.1.2:4444\n"
            "\n"
            "Exit status: 0 success; 1 the command failed (its error is printed on stderr), the\n"
            "connection failed or timed out; 2 bad usage.\n");
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "tandem ctl: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see `tandem ctl --help`)\n");
    return 2;
}

/* "unix:PATH" or a bare path; any other "scheme:" is refused. */
static int parse_path(const char *arg, char *path, size_t n)
{
    const char *colon = strchr(arg, ':');
    const char *slash = strchr(arg, '/');

    if (!strncmp(arg, "unix:", 5))
        return qmp_parse_uri(arg, path, n);
    if (colon && (!slash || colon < slash))
        return -EPROTONOSUPPORT;
    if (!*arg || strlen(arg) >= n)
        return -ENAMETOOLONG;
    memcpy(path, arg, strlen(arg) + 1);
    return 0;
}

static int parse_seconds(const char *s, long *ms)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0) || v > 86400.0 * 365)
        return -EINVAL;
    *ms = (long)(v * 1000.0 + 0.5);
    if (*ms < 1)
        *ms = 1;
    return 0;
}

/* Value of option argv[*i] ("--opt VALUE" or "--opt=VALUE"); NULL if none. */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);

    if (!strncmp(argv[*i], name, n) && argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (*i + 1 < argc)
        return argv[++*i];
    return NULL;
}

static bool is_opt(const char *arg, const char *name)
{
    size_t n = strlen(name);

    return !strncmp(arg, name, n) && (arg[n] == '\0' || arg[n] == '=');
}

/* Returns 0, 1 after --help, or 2 after a usage error. */
static int parse_args(int argc, char **argv, struct ctl_opts *o)
{
    bool have_path = false, only_positional = false;
    const char *v;
    char *end;
    int npos = 0;

    *o = (struct ctl_opts){.timeout_ms = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (only_positional || a[0] != '-' || !a[1]) {
            if (npos == 0)
                o->cmd = a;
            else if (npos == 1)
                o->args_text = a;
            else
                return usage_error("unexpected argument '%s'", a);
            npos++;
        } else if (!strcmp(a, "--")) {
            only_positional = true;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            ctl_usage(stdout);
            return 1;
        } else if (is_opt(a, "--qmp")) {
            v = opt_value(argc, argv, &i, "--qmp");
            if (!v)
                return usage_error("--qmp needs a socket path");
            switch (parse_path(v, o->path, sizeof(o->path))) {
            case 0:
                break;
            case -EPROTONOSUPPORT:
                return usage_error("--qmp: only unix sockets are supported, got '%s'", v);
            default:
                return usage_error("--qmp: invalid socket path '%s'", v);
            }
            have_path = true;
        } else if (is_opt(a, "--timeout")) {
            v = opt_value(argc, argv, &i, "--timeout");
            if (!v || parse_seconds(v, &o->timeout_ms) < 0)
                return usage_error("--timeout needs a positive number of seconds");
        } else if (is_opt(a, "--count")) {
            v = opt_value(argc, argv, &i, "--count");
            errno = 0;
            o->count = v ? strtol(v, &end, 10) : 0;
            if (!v || errno || *end || o->count < 1)
                return usage_error("--count needs a positive integer");
            o->count_set = true;
        } else if (!strcmp(a, "--force")) {
            o->force = true;
        } else if (!strcmp(a, "--json")) {
            o->json = true;
        } else {
            return usage_error("unknown option '%s'", a);
        }
    }
    if (!have_path)
        return usage_error("--qmp PATH is required");
    if (!o->cmd)
        return usage_error("no command given");
    if (strcmp(o->cmd, "events") != 0 && o->count_set)
        return usage_error("--count only goes with `events`");
    if (!strcmp(o->cmd, "events") && o->args_text)
        return usage_error("`events` takes no arguments");
    if (o->force && strcmp(o->cmd, "failover"))
        return usage_error("--force only goes with `failover`");
    if (o->json && strcmp(o->cmd, "status"))
        return usage_error("--json only goes with `status`");
    if (find_shortcut(o->cmd)) {
        const struct shortcut *sc = find_shortcut(o->cmd);
        if (sc->takes_arg && !o->args_text)
            return usage_error("`%s` needs a URI (tcp:HOST:PORT or unix:PATH)", o->cmd);
        if (!sc->takes_arg && o->args_text)
            return usage_error("`%s` takes no arguments", o->cmd);
    }
    return 0;
}

/* The command's arguments: exactly one JSON object (whitespace around it is fine). Returns
 * NULL with *out set, or what is wrong. */
static const char *parse_object(const char *text, struct json_object **out)
{
    struct json_tokener *tok = json_tokener_new();
    size_t len = strlen(text), end;
    const char *why = NULL;

    *out = NULL;
    if (!tok)
        return "out of memory";
    *out = json_tokener_parse_ex(tok, text, (int)len + 1); /* the NUL ends the text */
    end = json_tokener_get_parse_end(tok);
    if (json_tokener_get_error(tok) != json_tokener_success)
        why = json_tokener_error_desc(json_tokener_get_error(tok));
    else if (end < len && text[end + strspn(text + end, " \t\r\n")])
        why = "unexpected text after it";
    else if (!json_object_is_type(*out, json_type_object))
        why = "not an object";
    json_tokener_free(tok);
    if (why) {
        json_object_put(*out);
        *out = NULL;
    }
    return why;
}

static long long now_ms_mono(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for events on fd until deadline (-1: forever). 0 ready, -ETIMEDOUT, or -errno. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int timeout = -1, n;

        if (deadline >= 0) {
            long long left = deadline - now_ms_mono();
            if (left <= 0)
                return -ETIMEDOUT;
            timeout = left > 1000000 ? 1000000 : (int)left;
        }
        n = poll(&p, 1, timeout);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

static long long deadline_after(long ms)
{
    return ms < 0 ? -1 : now_ms_mono() + ms;
}

static int conn_open(struct conn *c, const char *path, long long deadline)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    socklen_t len = sizeof(int);
    int err = 0, rc;

    c->path = path;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -errno;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (errno != EAGAIN && errno != EINPROGRESS)
            return -errno;
        /* The listener's backlog is full: wait for room. */
        rc = wait_fd(c->fd, POLLOUT, deadline);
        if (rc < 0)
            return rc;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            return -errno;
        if (err)
            return -err;
    }
    c->tok = json_tokener_new();
    return c->tok ? 0 : -ENOMEM;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    if (c->tok)
        json_tokener_free(c->tok);
}

static int conn_send(struct conn *c, struct json_object *msg, long long deadline)
{
    const char *text = json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN);
    size_t len = strlen(text), off = 0;
    char *line = malloc(len + 2);
    int rc = 0;

    if (!line)
        return -ENOMEM;
    /* One write with the "\n": QEMU does not need it, line-based peers like it, and a second
     * write could meet a server that already went away after `quit`. */
    memcpy(line, text, len);
    line[len++] = '\n';
    while (off < len) {
        ssize_t w = send(c->fd, line + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (w >= 0) {
            off += (size_t)w;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            rc = -errno;
            break;
        }
        rc = wait_fd(c->fd, POLLOUT, deadline);
        if (rc < 0)
            break;
    }
    free(line);
    return rc;
}

/* Next JSON value from the server. 0, -ETIMEDOUT, -ECONNRESET (closed), -EPROTO, -errno. */
static int conn_recv(struct conn *c, struct json_object **out, long long deadline)
{
    for (;;) {
        while (c->pos < c->len) {
            struct json_object *o =
                json_tokener_parse_ex(c->tok, c->buf + c->pos, (int)(c->len - c->pos));
            enum json_tokener_error e = json_tokener_get_error(c->tok);

            if (e == json_tokener_continue) {
                c->pos = c->len;
                break;
            }
            c->pos += json_tokener_get_parse_end(c->tok);
            json_tokener_reset(c->tok);
            if (e != json_tokener_success)
                return -EPROTO;
            *out = o;
            return 0;
        }
        c->pos = c->len = 0;
        for (;;) {
            ssize_t n = read(c->fd, c->buf, sizeof(c->buf));
            int rc;

            if (n > 0) {
                c->len = (size_t)n;
                break;
            }
            if (n == 0)
                return -ECONNRESET;
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -errno;
            rc = wait_fd(c->fd, POLLIN, deadline);
            if (rc < 0)
                return rc;
        }
    }
}

static int conn_error(const struct conn *c, int rc, const char *what)
{
    if (rc == -ETIMEDOUT)
        fprintf(stderr, "tandem ctl: %s: timed out waiting for %s\n", c->path, what);
    else if (rc == -ECONNRESET)
        fprintf(stderr, "tandem ctl: %s: connection closed while waiting for %s\n", c->path, what);
    else if (rc == -EPROTO)
        fprintf(stderr, "tandem ctl: %s: invalid JSON while waiting for %s\n", c->path, what);
    else
        fprintf(stderr, "tandem ctl: %s: %s\n", c->path, strerror(-rc));
    return 1;
}

/* Wait for the reply carrying id; events and stray messages before it are skipped. */
static int recv_reply(struct conn *c, const char *id, long ms, struct json_object **reply)
{
    long long deadline = deadline_after(ms);

    for (;;) {
        struct json_object *msg, *mid;
        int rc = conn_recv(c, &msg, deadline);

        if (rc < 0)
            return rc;
        if (json_object_object_get_ex(msg, "id", &mid) &&
            json_object_is_type(mid, json_type_string) &&
            !strcmp(json_object_get_string(mid), id)) {
            *reply = msg;
            return 0;
        }
        json_object_put(msg);
    }
}

static struct json_object *request(const char *cmd, struct json_object *args, const char *id)
{
    struct json_object *req = json_object_new_object();

    if (!req)
        return NULL;
    json_object_object_add(req, "execute", json_object_new_string(cmd));
    if (args)
        json_object_object_add(req, "arguments", json_object_get(args));
    json_object_object_add(req, "id", json_object_new_string(id));
    return req;
}

/* Send a command and wait for its reply. 0 with *ret (the "return" value), 1 after printing
 * the server's error or a connection problem. */
static int execute(struct conn *c, const char *cmd, struct json_object *args, const char *id,
                   long ms, struct json_object **ret)
{
    struct json_object *req = request(cmd, args, id), *reply = NULL, *v, *desc;
    int rc;

    if (!req) {
        fprintf(stderr, "tandem ctl: out of memory\n");
        return 1;
    }
    rc = conn_send(c, req, deadline_after(ms));
    json_object_put(req);
    if (rc == 0)
        rc = recv_reply(c, id, ms, &reply);
    if (rc < 0)
        return conn_error(c, rc, "a reply");
    if (json_object_object_get_ex(reply, "return", &v)) {
        *ret = json_object_get(v);
        json_object_put(reply);
        return 0;
    }
    if (json_object_object_get_ex(reply, "error", &v) &&
        json_object_object_get_ex(v, "desc", &desc))
        fprintf(stderr, "%s\n", json_object_get_string(desc));
    else
        fprintf(stderr, "tandem ctl: %s: malformed reply\n", c->path);
    json_object_put(reply);
    return 1;
}

static int print_json(struct json_object *o, bool pretty)
{
    char *text;
    int rc = qmp_json_format(o, pretty, &text, NULL);

    if (rc < 0) {
        fprintf(stderr, "tandem ctl: out of memory\n");
        return 1;
    }
    printf("%s\n", text);
    fflush(stdout);
    free(text);
    return 0;
}

static int run_events(struct conn *c, const struct ctl_opts *o)
{
    long long deadline = deadline_after(o->timeout_ms);
    long seen = 0;

    for (;;) {
        struct json_object *msg;
        int rc = conn_recv(c, &msg, deadline);

        if (rc == -ETIMEDOUT || rc == -ECONNRESET) {
            if (!o->count_set)
                return 0; /* listening until the end was the request */
            fprintf(stderr, "tandem ctl: %s: %s after %ld of %ld events\n", c->path,
                    rc == -ETIMEDOUT ? "timed out" : "connection closed", seen, o->count);
            return 1;
        }
        if (rc < 0)
            return conn_error(c, rc, "events");
        if (json_object_object_get_ex(msg, "event", NULL)) {
            rc = print_json(msg, false);
            seen++;
        }
        json_object_put(msg);
        if (rc)
            return rc;
        if (o->count_set && seen >= o->count)
            return 0;
    }
}

static uint64_t member_u64(struct json_object *o, const char *k)
{
    struct json_object *v;

    return json_object_object_get_ex(o, k, &v) ? (uint64_t)json_object_get_int64(v) : 0;
}

/* Poll query-migrate and draw one status line on stderr until the migration ends. */
static int migrate_progress(struct conn *c, long ms)
{
    for (;;) {
        struct json_object *r = NULL, *st, *ram = NULL;
        const char *status;
        uint64_t total, remaining, done;
        int pct, w = 30;
        char bar[31];

        if (execute(c, "query-migrate", NULL, CTL_CMD_ID, ms, &r))
            return 1;
        status = json_object_object_get_ex(r, "status", &st) ? json_object_get_string(st) : "none";
        json_object_object_get_ex(r, "ram", &ram);
        total = ram ? member_u64(ram, "total") : 0;
        remaining = ram ? member_u64(ram, "remaining") : 0;
        done = total > remaining ? total - remaining : 0;
        pct = total ? (int)(done * 100 / total) : 0;
        if (!strcmp(status, "completed") || !strcmp(status, "colo"))
            pct = 100;
        for (int i = 0; i < w; i++)
            bar[i] = i < pct * w / 100 ? '#' : '-';
        bar[w] = '\0';
        fprintf(stderr, "\r[%s] %3d%%  sent %7.1f MiB  %6.0f Mbit/s  %-10s", bar, pct,
                (double)(ram ? member_u64(ram, "transferred") : 0) / (1 << 20),
                (double)(ram ? member_u64(ram, "mbps") : 0), status);
        if (!strcmp(status, "completed") || !strcmp(status, "colo") || !strcmp(status, "failed") ||
            !strcmp(status, "cancelled")) {
            struct json_object *v;
            fprintf(stderr, "\n");
            if (json_object_object_get_ex(r, "downtime", &v))
                fprintf(stderr, "downtime %s ms, total %llu ms\n", json_object_get_string(v),
                        (unsigned long long)member_u64(r, "total-time"));
            if (json_object_object_get_ex(r, "error-desc", &v))
                fprintf(stderr, "error: %s\n", json_object_get_string(v));
            bool ok = strcmp(status, "failed") && strcmp(status, "cancelled");
            json_object_put(r);
            return ok ? 0 : 1;
        }
        json_object_put(r);
        usleep(100 * 1000);
    }
}

static const char *member_str(struct json_object *o, const char *k, const char *dflt)
{
    struct json_object *v;

    return o && json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : dflt;
}

static bool member_bool(struct json_object *o, const char *k)
{
    struct json_object *v;

    return o && json_object_object_get_ex(o, k, &v) && json_object_get_boolean(v);
}

/* `status`: what an operator asks first, from query-status, query-colo-status, query-migrate. */
static void print_status(struct json_object *vm, struct json_object *colo, struct json_object *mig)
{
    struct json_object *st = NULL, *ram = NULL, *disk = NULL, *pause = NULL, *v;
    const char *mode = member_str(colo, "mode", "none");
    const char *mstatus = member_str(mig, "status", "none");

    printf("vm:        %s\n", member_str(vm, "status", "unknown"));
    if (colo)
        json_object_object_get_ex(colo, "stats", &st);
    if (st)
        json_object_object_get_ex(st, "pause-ms", &pause);
    if (!strcmp(mode, "none")) {
        printf("colo:      none (last %s, reason %s)%s\n", member_str(colo, "last-mode", "none"),
               member_str(colo, "reason", "none"),
               member_bool(colo, "fenced") ? ", FENCED: must not serve" : "");
    } else {
        printf("colo:      %s, %llu checkpoints, pause p99 %s ms", mode,
               (unsigned long long)member_u64(st, "checkpoints"),
               pause && json_object_object_get_ex(pause, "p99", &v) ? json_object_get_string(v)
                                                                    : "-");
        if (!strcmp(mode, "secondary"))
            printf(", %s%s, last good checkpoint %llu",
                   member_bool(colo, "armed") ? "armed" : "disarmed",
                   member_bool(colo, "unusable") ? ", UNUSABLE" : "",
                   (unsigned long long)member_u64(colo, "last-good-checkpoint"));
        printf("\n");
    }
    if (colo && json_object_object_get_ex(colo, "cluster", &v) && v)
        printf("cluster:   node %llu, %s, %llu nodes, %llu group members (%s)\n",
               (unsigned long long)member_u64(v, "nodeid"),
               member_bool(v, "quorate") ? "quorate" : "NO QUORUM",
               (unsigned long long)member_u64(v, "nodes"),
               (unsigned long long)member_u64(v, "members"), member_str(v, "last-change", ""));
    if (colo && json_object_object_get_ex(colo, "last-decision", &v) && v)
        printf("decision:  %s\n", json_object_get_string(v));
    printf("migration: %s", mstatus);
    if (mig && json_object_object_get_ex(mig, "ram", &ram))
        printf(", %.1f MiB sent", (double)member_u64(ram, "transferred") / (1 << 20));
    if (mig && json_object_object_get_ex(mig, "colo-disk", &disk))
        printf(", disk sync: %llu of %llu chunks differed, %.1f MiB sent",
               (unsigned long long)member_u64(disk, "chunks-differ"),
               (unsigned long long)member_u64(disk, "chunks"),
               (double)member_u64(disk, "bytes-sent") / (1 << 20));
    if (mig && json_object_object_get_ex(mig, "error-desc", &v))
        printf(" (%s)", json_object_get_string(v));
    printf("\n");
    fflush(stdout);
}

static int run_status(struct conn *c, const struct ctl_opts *o, long ms)
{
    static const char *const cmds[] = {"query-status", "query-colo-status", "query-migrate"};
    static const char *const keys[] = {"status", "colo", "migrate"};
    struct json_object *r[3] = {NULL, NULL, NULL};
    int status = 1;

    for (int i = 0; i < 3; i++)
        if (execute(c, cmds[i], NULL, CTL_CMD_ID, ms, &r[i]))
            goto out;
    if (o->json) {
        struct json_object *all = json_object_new_object();
        for (int i = 0; i < 3; i++)
            json_object_object_add(all, keys[i], json_object_get(r[i]));
        status = print_json(all, true);
        json_object_put(all);
    } else {
        print_status(r[0], r[1], r[2]);
        status = 0;
    }
out:
    for (int i = 0; i < 3; i++)
        json_object_put(r[i]);
    return status;
}

/* failover, reprotect, checkpoint: the QMP command they stand for, its reply printed. */
static int run_shortcut(struct conn *c, const struct ctl_opts *o, const struct shortcut *sc,
                        long ms)
{
    struct json_object *args = json_object_new_object(), *ret = NULL;
    int status;

    if (!args) {
        fprintf(stderr, "tandem ctl: out of memory\n");
        return 1;
    }
    if (o->force)
        json_object_object_add(args, "force", json_object_new_boolean(true));
    if (sc->takes_arg)
        json_object_object_add(args, "uri", json_object_new_string(o->args_text));
    status = execute(c, sc->qmp, args, CTL_CMD_ID, ms, &ret);
    json_object_put(args);
    if (!status)
        status = print_json(ret, true);
    json_object_put(ret);
    /* reprotect runs the initial precopy of a migration: follow it like `migrate`. */
    if (!status && sc->takes_arg && isatty(STDERR_FILENO))
        status = migrate_progress(c, ms);
    return status;
}

int ctl_main(int argc, char **argv)
{
    struct conn c = {.fd = -1};
    struct ctl_opts o;
    struct json_object *args = NULL, *greeting = NULL, *ret = NULL;
    const struct shortcut *sc;
    long step_ms;
    int rc, status = 1;

    rc = parse_args(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc;
    sc = find_shortcut(o.cmd);
    if (o.args_text && !sc) {
        const char *why = parse_object(o.args_text, &args);

        if (why)
            return usage_error("arguments must be a JSON object, got '%s': %s", o.args_text, why);
    }
    step_ms = o.timeout_ms > 0 ? o.timeout_ms : CTL_DEFAULT_TIMEOUT_MS;

    rc = conn_open(&c, o.path, deadline_after(step_ms));
    if (rc < 0) {
        fprintf(stderr, "tandem ctl: cannot connect to %s: %s\n", o.path, strerror(-rc));
        goto out;
    }
    rc = conn_recv(&c, &greeting, deadline_after(step_ms));
    if (rc < 0) {
        conn_error(&c, rc, "the QMP greeting");
        goto out;
    }
    if (!json_object_object_get_ex(greeting, "QMP", NULL)) {
        fprintf(stderr, "tandem ctl: %s: not a QMP server (no greeting)\n", o.path);
        goto out;
    }
    if (execute(&c, "qmp_capabilities", NULL, CTL_CAPS_ID, step_ms, &ret))
        goto out;
    json_object_put(ret);
    ret = NULL;

    if (!strcmp(o.cmd, "events")) {
        status = run_events(&c, &o);
        goto out;
    }
    if (sc) {
        status = sc->qmp ? run_shortcut(&c, &o, sc, step_ms) : run_status(&c, &o, step_ms);
        goto out;
    }
    if (execute(&c, o.cmd, args, CTL_CMD_ID, step_ms, &ret))
        goto out;
    status = print_json(ret, true);
    /* On a terminal, `migrate` follows the migration with a progress bar until it ends. */
    if (!status && !strcmp(o.cmd, "migrate") && isatty(STDERR_FILENO))
        status = migrate_progress(&c, step_ms);

out:
    json_object_put(ret);
    json_object_put(greeting);
    json_object_put(args);
    conn_close(&c);
    return status;
}
