/* ctl.c: `tandem ctl`: connect to a QMP socket, negotiate, run one command or print events.
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
};

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
            "\n"
            "Send one QMP command to a running tandem (or QEMU) and print its \"return\" value\n"
            "as pretty JSON; or print the events it sends, one JSON object per line.\n"
            "\n"
            "  --qmp PATH      the QMP socket: unix:PATH or a plain PATH\n"
            "  --timeout S     seconds to wait for the connection and each reply (default 30);\n"
            "                  with `events`: how long to listen (default: until it closes)\n"
            "  --count N       with `events`: exit after N events\n"
            "  -h, --help      this text\n"
            "\n"
            "Examples: tandem ctl --qmp /run/vm.sock query-status\n"
            "          tandem ctl --qmp unix:/run/vm.sock stop\n"
            "          tandem ctl --qmp /run/vm.sock events --count 1 --timeout 10\n"
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

int ctl_main(int argc, char **argv)
{
    struct conn c = {.fd = -1};
    struct ctl_opts o;
    struct json_object *args = NULL, *greeting = NULL, *ret = NULL;
    long step_ms;
    int rc, status = 1;

    rc = parse_args(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (o.args_text) {
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
