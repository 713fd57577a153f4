/* test_qmp.c: the QMP protocol without sockets: greeting, negotiation, framing, checks, events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "qmp/json_out.h"
#include "qmp/server.h"
#include "qmp/session.h"

/* ---- a client that records what the server writes ---- */

struct fx {
    struct qmp_server *s;
    struct qmp_session *sess;
    char *out; /* everything written, lines popped from the front */
    size_t len;
    int calls;      /* fake commands run */
    char order[32]; /* "W" per write, "D" per deferred run */
};

static void note(struct fx *f, char c)
{
    size_t n = strlen(f->order);

    if (n + 1 < sizeof(f->order)) {
        f->order[n] = c;
        f->order[n + 1] = '\0';
    }
}

static int cap_write(void *opaque, const char *buf, size_t len)
{
    struct fx *f = opaque;

    f->out = realloc(f->out, f->len + len + 1);
    assert_non_null(f->out);
    memcpy(f->out + f->len, buf, len);
    f->len += len;
    f->out[f->len] = '\0';
    note(f, 'W');
    return 0;
}

static const struct qmp_session_ops cap_ops = {.write = cap_write};

/* Next line written (without "\r\n"), or NULL; the caller frees it. */
static char *pop(struct fx *f)
{
    char *end, *line;
    size_t n;

    if (!f->out || !(end = strstr(f->out, "\r\n")))
        return NULL;
    n = (size_t)(end - f->out);
    line = strndup(f->out, n);
    memmove(f->out, end + 2, f->len - n - 2 + 1);
    f->len -= n + 2;
    return line;
}

static void expect(struct fx *f, const char *want)
{
    char *line = pop(f);

    assert_non_null(line);
    assert_string_equal(line, want);
    free(line);
}

static void expect_nothing(struct fx *f)
{
    assert_int_equal(f->len, 0);
}

static void feed_to(struct qmp_session *sess, const char *text)
{
    assert_int_equal(qmp_session_feed(sess, text, strlen(text)), 0);
}

static void feed(struct fx *f, const char *text)
{
    assert_int_equal(qmp_session_feed(f->sess, text, strlen(text)), 0);
}

/* ---- fake commands ---- */

static int cmd_noargs(void *opaque, struct json_object *args, struct json_object **ret, char *err,
                      size_t errlen)
{
    ((struct fx *)opaque)->calls++;
    return 0;
}

static int cmd_echo(void *opaque, struct json_object *args, struct json_object **ret, char *err,
                    size_t errlen)
{
    ((struct fx *)opaque)->calls++;
    *ret = json_object_get(args);
    return 0;
}

static int cmd_fail(void *opaque, struct json_object *args, struct json_object **ret, char *err,
                    size_t errlen)
{
    snprintf(err, errlen, "it failed on purpose");
    *ret = json_object_new_object(); /* must be dropped, not leaked */
    return -EIO;
}

static int cmd_fail_quiet(void *opaque, struct json_object *args, struct json_object **ret,
                          char *err, size_t errlen)
{
    return -EIO;
}

static void deferred_fn(void *arg)
{
    note(arg, 'D');
}

static int cmd_defer(void *opaque, struct json_object *args, struct json_object **ret, char *err,
                     size_t errlen)
{
    struct fx *f = opaque;

    assert_int_equal(qmp_defer(f->s, deferred_fn, f), 0);
    return 0;
}

static int cmd_defer_fail(void *opaque, struct json_object *args, struct json_object **ret,
                          char *err, size_t errlen)
{
    struct fx *f = opaque;

    assert_int_equal(qmp_defer(f->s, deferred_fn, f), 0);
    return -EPERM;
}

static int cmd_emit(void *opaque, struct json_object *args, struct json_object **ret, char *err,
                    size_t errlen)
{
    qmp_emit_event(((struct fx *)opaque)->s, "INSIDE", NULL);
    return 0;
}

static const struct qmp_arg typed_args[] = {
    {"a", json_type_int, false},  {"b", json_type_string, true},  {"c", json_type_double, true},
    {"d", json_type_null, true},  {"e", json_type_boolean, true}, {"f", json_type_object, true},
    {"g", json_type_array, true}, {NULL, json_type_null, false},
};

static const struct qmp_arg some_and_others[] = {
    {"known", json_type_int, false},
    {QMP_ARG_OTHERS, json_type_null, true},
    {NULL, json_type_null, false},
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[128];

    assert_non_null(f);
    f->s = qmp_server_new(NULL, NULL, err, sizeof(err));
    assert_non_null(f->s);
    assert_int_equal(qmp_register(f->s, "noargs", cmd_noargs, f, NULL), 0);
    assert_int_equal(qmp_register(f->s, "echo", cmd_echo, f, qmp_args_any), 0);
    assert_int_equal(qmp_register(f->s, "typed", cmd_echo, f, typed_args), 0);
    assert_int_equal(qmp_register(f->s, "mixed", cmd_echo, f, some_and_others), 0);
    assert_int_equal(qmp_register(f->s, "fail", cmd_fail, f, NULL), 0);
    assert_int_equal(qmp_register(f->s, "fail-quiet", cmd_fail_quiet, f, NULL), 0);
    assert_int_equal(qmp_register(f->s, "defer", cmd_defer, f, NULL), 0);
    assert_int_equal(qmp_register(f->s, "defer-fail", cmd_defer_fail, f, NULL), 0);
    assert_int_equal(qmp_register(f->s, "emit", cmd_emit, f, NULL), 0);
    f->sess = qmp_server_attach(f->s, &cap_ops, f);
    assert_non_null(f->sess);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    qmp_server_free(f->s); /* frees the attached session too */
    free(f->out);
    free(f);
    return 0;
}

static void negotiate(struct fx *f)
{
    free(pop(f)); /* greeting */
    feed(f, "{\"execute\": \"qmp_capabilities\"}");
    expect(f, "{\"return\": {}}");
}

/* ---- tests ---- */

static void test_greeting(void **state)
{
    struct fx *f = *state;
    int major = 0, minor = 0, micro = 0;
    char want[256];

    sscanf(TANDEM_VERSION, "%d.%d.%d", &major, &minor, &micro);
    snprintf(want, sizeof(want),
             "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": %d, \"minor\": %d, \"major\": %d}, "
             "\"package\": \"tandem-%s\"}, \"capabilities\": []}}\r\n",
             micro, minor, major, TANDEM_VERSION);
    assert_string_equal(f->out, want);
}

static void test_negotiation_required(void **state)
{
    struct fx *f = *state;

    free(pop(f));
    feed(f, "{\"execute\": \"noargs\"}");
    expect(f, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities "
              "negotiation with 'qmp_capabilities'\"}}");
    feed(f, "{\"execute\": \"nosuch\", \"id\": 7}");
    expect(f, "{\"id\": 7, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting "
              "capabilities negotiation with 'qmp_capabilities'\"}}");
    assert_int_equal(f->calls, 0);

    /* no events before negotiation */
    qmp_emit_event(f->s, "EARLY", NULL);
    expect_nothing(f);

    /* a capability we do not offer: refused, still not negotiated */
    feed(f, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}");
    expect(f, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Capability 'oob' not "
              "available\"}}");
    feed(f, "{\"execute\": \"noargs\"}");
    free(pop(f));
    assert_int_equal(f->calls, 0);

    feed(f, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": []}}");
    expect(f, "{\"return\": {}}");
    feed(f, "{\"execute\": \"noargs\"}");
    expect(f, "{\"return\": {}}");
    assert_int_equal(f->calls, 1);
    feed(f, "{\"execute\": \"qmp_capabilities\"}");
    expect(f, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Capabilities "
              "negotiation is already complete, command ignored\"}}");
}

static void expect_parse_error(struct fx *f)
{
    char *line = pop(f);
    const char *prefix = "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, ";

    assert_non_null(line);
    assert_memory_equal(line, prefix, strlen(prefix));
    assert_null(strstr(line, "\"id\""));
    free(line);
}

static void test_malformed_then_valid(void **state)
{
    static const char *const bad[] = {
        "{\"execute\": x}\n",
        "{\"execute\" \"noargs\"}\n",
        "{\"execute\": \"noargs\", \"arguments\": {\"a\": tru}}\n",
        "}\n",
        "{\"execute\": \"no\xc3\x28\"}\n", /* invalid UTF-8 */
        "{\"execute\": \"noargs\",, }\n",
        "{\"execute\": \"no\\u0000args\"}\n",
        "{\"execute\": \"noargs\"]\n",
    };
    struct fx *f = *state;

    negotiate(f);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char buf[256];

        snprintf(buf, sizeof(buf), "%s{\"execute\": \"noargs\", \"id\": %zu}\n", bad[i], i);
        feed(f, buf);
        expect_parse_error(f);
        snprintf(buf, sizeof(buf), "{\"return\": {}, \"id\": %zu}", i);
        expect(f, buf);
        expect_nothing(f);
    }
    assert_int_equal(f->calls, (int)(sizeof(bad) / sizeof(bad[0])));
}

static void test_junk_line(void **state)
{
    struct fx *f = *state;

    negotiate(f);
    /* junk outside any value: one error, the rest of its line (brackets too) is discarded */
    feed(f, "this is not json {{{\n");
    expect_parse_error(f);
    expect_nothing(f);
    feed(f, "{\"execute\": \"noargs\", \"id\": 1}\n");
    expect(f, "{\"return\": {}, \"id\": 1}");
    feed(f, "x{\"execute\": \"noargs\", \"id\": 2}\n{\"execute\": \"noargs\", \"id\": 3}");
    expect_parse_error(f);
    expect(f, "{\"return\": {}, \"id\": 3}");
    /* the line may end in a later read */
    feed(f, "junk [");
    expect_parse_error(f);
    feed(f, "{\"execute\": \"noargs\"}");
    expect_nothing(f);
    feed(f, "]\n{\"execute\": \"noargs\", \"id\": 4}");
    expect(f, "{\"return\": {}, \"id\": 4}");
    /* or be cut short by a reset byte, which then says nothing itself */
    feed(f, "junk {");
    expect_parse_error(f);
    assert_int_equal(qmp_session_feed(f->sess, "\x01\x01{\"execute\": \"noargs\", \"id\": 5}", 32),
                     0);
    expect(f, "{\"return\": {}, \"id\": 5}");
    /* a bracketed text that is not JSON ends where its brackets do: nothing else is lost,
     * which matters to clients that send no newlines (python's qemu.qmp) */
    feed(f, "{\"execute\": x}{\"execute\": \"noargs\", \"id\": 6}");
    expect_parse_error(f);
    expect(f, "{\"return\": {}, \"id\": 6}");
    /* a valid scalar is not junk */
    feed(f, "1 {\"execute\": \"noargs\", \"id\": 7}");
    expect(f, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input must be a JSON "
              "object\"}}");
    expect(f, "{\"return\": {}, \"id\": 7}");
    expect_nothing(f);
    assert_int_equal(f->calls, 6);
}

static void test_unknown_command(void **state)
{
    struct fx *f = *state;

    negotiate(f);
    feed(f, "{\"execute\": \"nosuch\"}");
    expect(f, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command nosuch has "
              "not been found\"}}");
    feed(f, "{\"execute\": \"\"}");
    expect(f, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command  has not "
              "been found\"}}");
    expect_nothing(f);
}

static void expect_error(struct fx *f, const char *json, const char *desc)
{
    char want[512];

    feed(f, json);
    snprintf(want, sizeof(want), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"%s\"}}",
             desc);
    expect(f, want);
}

static void test_argument_checks(void **state)
{
    struct fx *f = *state;

    negotiate(f);
    expect_error(f, "{\"execute\": \"typed\", \"arguments\": {\"a\": \"1\"}}",
                 "Parameter 'a' expects integer");
    expect_error(f, "{\"execute\": \"typed\", \"arguments\": {\"a\": 1.5}}",
                 "Parameter 'a' expects integer");
    expect_error(f, "{\"execute\": \"typed\"}", "Parameter 'a' is missing");
    expect_error(f, "{\"execute\": \"typed\", \"arguments\": {}}", "Parameter 'a' is missing");
    expect_error(f, "{\"execute\": \"typed\", \"arguments\": {\"a\": 1, \"z\": 2}}",
                 "Parameter 'z' is unexpected");
    expect_error(f, "{\"execute\": \"typed\", \"arguments\": {\"a\": 1, \"b\": null}}",
                 "Parameter 'b' expects string");
    expect_error(f, "{\"execute\": \"typed\", \"arguments\": {\"a\": 1, \"c\": \"x\"}}",
                 "Parameter 'c' expects number");
    expect_error(f, "{\"execute\": \"typed\", \"arguments\": {\"a\": 1, \"e\": 1}}",
                 "Parameter 'e' expects boolean");
    expect_error(f, "{\"execute\": \"typed\", \"arguments\": {\"a\": 1, \"f\": []}}",
                 "Parameter 'f' expects object");
    expect_error(f, "{\"execute\": \"typed\", \"arguments\": {\"a\": 1, \"g\": {}}}",
                 "Parameter 'g' expects array");
    expect_error(f, "{\"execute\": \"noargs\", \"arguments\": {\"x\": 1}}",
                 "Parameter 'x' is unexpected");
    expect_error(f, "{\"execute\": \"mixed\", \"arguments\": {\"anything\": 1}}",
                 "Parameter 'known' is missing");
    expect_error(f, "{\"execute\": \"noargs\", \"arguments\": []}",
                 "QMP input member 'arguments' must be an object");
    expect_error(f, "{\"execute\": 1}", "QMP input member 'execute' must be a string");
    expect_error(f, "{\"arguments\": {}}", "QMP input lacks member 'execute'");
    expect_error(f, "{\"execute\": \"noargs\", \"foo\": 1}",
                 "QMP input member 'foo' is unexpected");
    expect_error(f, "{\"exec-oob\": \"noargs\"}", "QMP input member 'exec-oob' is unexpected");
    expect_error(f, "[]", "QMP input must be a JSON object");
    expect_error(f, "[{\"execute\": \"noargs\"}]", "QMP input must be a JSON object");
    expect_error(f, "123 ", "QMP input must be a JSON object");
    expect_error(f, "\"str\" ", "QMP input must be a JSON object");
    expect_error(f, "null ", "QMP input must be a JSON object");
    assert_int_equal(f->calls, 0); /* nothing ran */

    feed(f, "{\"execute\": \"typed\", \"arguments\": {\"a\": 1, \"b\": \"s\", \"c\": 2, \"d\": "
            "null, \"e\": true, \"f\": {}, \"g\": [1]}}");
    expect(f, "{\"return\": {\"a\": 1, \"b\": \"s\", \"c\": 2, \"d\": null, \"e\": true, \"f\": "
              "{}, \"g\": [1]}}");
    feed(f, "{\"execute\": \"typed\", \"arguments\": {\"a\": -3, \"c\": 0.5}}");
    expect(f, "{\"return\": {\"a\": -3, \"c\": 0.5}}");
    feed(f, "{\"execute\": \"noargs\", \"arguments\": {}}");
    expect(f, "{\"return\": {}}");
    feed(f, "{\"execute\": \"echo\", \"arguments\": {\"x\": [1, {\"y\": null}], \"z\": \"w\"}}");
    expect(f, "{\"return\": {\"x\": [1, {\"y\": null}], \"z\": \"w\"}}");
    feed(f, "{\"execute\": \"mixed\", \"arguments\": {\"known\": 1, \"other\": [true]}}");
    expect(f, "{\"return\": {\"known\": 1, \"other\": [true]}}");
    assert_int_equal(f->calls, 5);
    expect_nothing(f);
}

static void test_command_errors(void **state)
{
    struct fx *f = *state;

    negotiate(f);
    feed(f, "{\"execute\": \"fail\", \"id\": \"x\"}");
    expect(f, "{\"id\": \"x\", \"error\": {\"class\": \"GenericError\", \"desc\": \"it failed on "
              "purpose\"}}");
    feed(f, "{\"execute\": \"fail-quiet\"}");
    expect(f, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Input/output error\"}}");
}

static void test_id_echo(void **state)
{
    struct fx *f = *state;

    negotiate(f);
    feed(f, "{\"execute\": \"noargs\", \"id\": 1}");
    expect(f, "{\"return\": {}, \"id\": 1}");
    feed(f, "{\"id\": \"abc\", \"execute\": \"noargs\"}");
    expect(f, "{\"return\": {}, \"id\": \"abc\"}");
    feed(f, "{\"execute\": \"noargs\", \"id\": {\"x\": [1, \"y\"]}}");
    expect(f, "{\"return\": {}, \"id\": {\"x\": [1, \"y\"]}}");
    feed(f, "{\"execute\": \"noargs\", \"id\": null}");
    expect(f, "{\"return\": {}, \"id\": null}");
    feed(f, "{\"execute\": \"nosuch\", \"id\": 18446744073709551615}");
    expect(f, "{\"id\": 18446744073709551615, \"error\": {\"class\": \"CommandNotFound\", "
              "\"desc\": \"The command nosuch has not been found\"}}");
    feed(f, "{\"execute\": \"typed\", \"id\": -2}");
    expect(f, "{\"id\": -2, \"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'a' is "
              "missing\"}}");
    feed(f, "{\"execute\": 5, \"id\": 3}");
    expect(f, "{\"id\": 3, \"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member "
              "'execute' must be a string\"}}");
}

static void test_several_in_one_buffer(void **state)
{
    struct fx *f = *state;

    negotiate(f);
    feed(f, "{\"execute\":\"noargs\",\"id\":1}{\"execute\":\"noargs\",\"id\":2} \r\n\t "
            "{\"execute\":\"echo\",\"arguments\":{\"a\":\"}\"},\"id\":3}[]{'execute':'noargs',"
            "'id':4}");
    expect(f, "{\"return\": {}, \"id\": 1}");
    expect(f, "{\"return\": {}, \"id\": 2}");
    expect(f, "{\"return\": {\"a\": \"}\"}, \"id\": 3}");
    expect(f, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input must be a JSON "
              "object\"}}");
    expect(f, "{\"return\": {}, \"id\": 4}");
    expect_nothing(f);
}

static void test_split_across_reads(void **state)
{
    const char *req = "{\"execute\": \"echo\", \"arguments\": {\"s\": \"}{\\\"'[]\\\\\", \"n\": "
                      "[[1], {\"k\": \"]\"}]}, \"id\": \"a\"}";
    struct fx *f = *state;
    size_t n = strlen(req);

    negotiate(f);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(qmp_session_feed(f->sess, req + i, 1), 0);
        if (i + 1 < n)
            expect_nothing(f);
    }
    expect(f, "{\"return\": {\"s\": \"}{\\\"'[]\\\\\", \"n\": [[1], {\"k\": \"]\"}]}, \"id\": "
              "\"a\"}");

    /* two requests cut at every possible point */
    for (size_t cut = 1; cut < 40; cut++) {
        const char *two = "{\"execute\": \"noargs\", \"id\": 1}{\"execute\": \"noargs\"}";
        assert_int_equal(qmp_session_feed(f->sess, two, cut), 0);
        assert_int_equal(qmp_session_feed(f->sess, two + cut, strlen(two) - cut), 0);
        expect(f, "{\"return\": {}, \"id\": 1}");
        expect(f, "{\"return\": {}}");
        expect_nothing(f);
    }
}

static char *big_request(size_t total)
{
    const char *head = "{\"execute\": \"echo\", \"arguments\": {\"s\": \"";
    const char *tail = "\"}}";
    char *p = malloc(total + 1);

    assert_non_null(p);
    memset(p, 'x', total);
    memcpy(p, head, strlen(head));
    memcpy(p + total - strlen(tail), tail, strlen(tail));
    p[total] = '\0';
    return p;
}

static void test_oversize(void **state)
{
    struct fx *f = *state;
    char *ok = big_request(QMP_MAX_REQUEST), *big = big_request(QMP_MAX_REQUEST + 1);
    char *spaces = malloc(3 * QMP_MAX_REQUEST);
    char *line;
    int rc = 0;

    negotiate(f);
    /* whitespace between requests is not a request */
    memset(spaces, ' ', 3 * QMP_MAX_REQUEST);
    assert_int_equal(qmp_session_feed(f->sess, spaces, 3 * QMP_MAX_REQUEST), 0);
    expect_nothing(f);

    /* exactly at the limit: accepted */
    feed(f, ok);
    line = pop(f);
    assert_non_null(line);
    assert_memory_equal(line, "{\"return\": {\"s\": \"xxx", 20);
    free(line);

    /* one byte more, fed in pieces: refused, the session must be dropped */
    for (size_t off = 0; off < strlen(big) && rc == 0; off += 4096) {
        size_t n = strlen(big) - off < 4096 ? strlen(big) - off : 4096;
        rc = qmp_session_feed(f->sess, big + off, n);
    }
    assert_int_equal(rc, -EMSGSIZE);
    expect(f, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, request "
              "larger than 1048576 bytes\"}}");
    expect_nothing(f);
    free(ok);
    free(big);
    free(spaces);
}

static void test_nesting_limit(void **state)
{
    struct fx *f = *state;
    char buf[512];
    size_t n;

    negotiate(f);
    /* 2 objects + 62 arrays = 64 levels: accepted */
    n = (size_t)snprintf(buf, sizeof(buf), "{\"execute\": \"echo\", \"arguments\": {\"a\": ");
    for (int i = 0; i < 62; i++)
        buf[n++] = '[';
    for (int i = 0; i < 62; i++)
        buf[n++] = ']';
    memcpy(buf + n, "}}", 3);
    feed(f, buf);
    free(pop(f));
    assert_int_equal(f->calls, 1);

    /* 65: refused without parsing, and the stream stays in step */
    n = (size_t)snprintf(buf, sizeof(buf), "{\"execute\": \"echo\", \"arguments\": {\"a\": ");
    for (int i = 0; i < 63; i++)
        buf[n++] = '[';
    memcpy(buf + n, "\"]]]\"", 5); /* brackets in a string do not count */
    n += 5;
    for (int i = 0; i < 63; i++)
        buf[n++] = ']';
    memcpy(buf + n, "}}{\"execute\": \"noargs\"}", 24);
    feed(f, buf);
    expect(f, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, nesting "
              "depth limit exceeded\"}}");
    expect(f, "{\"return\": {}}");
    assert_int_equal(f->calls, 2);
}

static void test_control_bytes_reset(void **state)
{
    struct fx *f = *state;
    const char stuck[] = "{\"execute\": \"noargs\", \"arguments\": {\"a\": [";

    negotiate(f);
    /* a client stuck in an unterminated text resets the parser with a control byte */
    feed(f, stuck);
    expect_nothing(f);
    assert_int_equal(qmp_session_feed(f->sess, "\xff\xff\x00\x01", 4), 0);
    expect(f, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray byte "
              "0xff\"}}");
    expect_nothing(f); /* one error per run of junk */
    feed(f, "{\"execute\": \"noargs\"}");
    expect(f, "{\"return\": {}}");

    /* a raw newline cannot be inside a string: an unterminated string ends there */
    feed(f, "{\"execute\": \"noargs\n{\"execute\": \"noargs\"}\n");
    expect(f, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray byte "
              "0x0a\"}}");
    expect(f, "{\"return\": {}}");
    expect_nothing(f);
}

static void test_nul_escape_refused(void **state)
{
    struct fx *f = *state;

    negotiate(f);
    feed(f, "{\"execute\": \"echo\", \"arguments\": {\"s\": \"a\\u0000b\"}}");
    expect(f, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, "
              "\\\\u0000 is not supported\"}}");
    assert_int_equal(f->calls, 0);
}

static void test_events(void **state)
{
    struct fx *f = *state;
    struct fx other = {0};
    struct qmp_session *s2 = qmp_server_attach(f->s, &cap_ops, &other);
    struct json_object *data = json_object_new_object(), *ev, *ts, *v;
    char *line;
    long long now = (long long)time(NULL);

    assert_non_null(s2);
    free(pop(&other));
    negotiate(f);
    json_object_object_add(data, "a", json_object_new_int(1));
    qmp_emit_event(f->s, "TEST_EVENT", data);
    qmp_emit_event(f->s, "BARE", NULL);
    expect_nothing(&other); /* not negotiated */

    line = pop(f);
    assert_non_null(line);
    assert_memory_equal(line, "{\"timestamp\": {\"seconds\": ", 26);
    assert_non_null(strstr(line, "}, \"event\": \"TEST_EVENT\", \"data\": {\"a\": 1}}"));
    ev = json_tokener_parse(line);
    assert_true(json_object_object_get_ex(ev, "timestamp", &ts));
    assert_true(json_object_object_get_ex(ts, "seconds", &v));
    assert_true(llabs(json_object_get_int64(v) - now) <= 2);
    assert_true(json_object_object_get_ex(ts, "microseconds", &v));
    assert_true(json_object_get_int64(v) >= 0 && json_object_get_int64(v) < 1000000);
    json_object_put(ev);
    free(line);

    line = pop(f);
    assert_non_null(line);
    assert_non_null(strstr(line, "}, \"event\": \"BARE\"}"));
    assert_null(strstr(line, "data"));
    free(line);

    /* an event raised by a command goes out before that command's reply */
    feed(f, "{\"execute\": \"emit\", \"id\": 9}");
    line = pop(f);
    assert_non_null(strstr(line, "\"event\": \"INSIDE\""));
    free(line);
    expect(f, "{\"return\": {}, \"id\": 9}");

    qmp_server_detach(f->s, s2);
    free(other.out);
}

static struct qmp_deferred held;

static void hold_after_flush(void *opaque, void (*fn)(void *arg), void *arg)
{
    note(opaque, 'H');
    held = (struct qmp_deferred){fn, arg};
}

static void test_defer_after_reply(void **state)
{
    static const struct qmp_session_ops hold_ops = {.write = cap_write,
                                                    .after_flush = hold_after_flush};
    struct fx *f = *state;
    struct qmp_session *s2;

    assert_int_equal(qmp_defer(f->s, deferred_fn, f), -EINVAL); /* not in a command */
    negotiate(f);
    f->order[0] = '\0';
    feed(f, "{\"execute\": \"defer\"}");
    assert_string_equal(f->order, "WD"); /* reply written, then the deferred work */
    expect(f, "{\"return\": {}}");

    /* with an owner that waits for the socket, the work is handed over, not run */
    s2 = qmp_server_attach(f->s, &hold_ops, f);
    feed_to(s2, "{\"execute\": \"qmp_capabilities\"}");
    f->order[0] = '\0';
    feed_to(s2, "{\"execute\": \"defer\"}");
    assert_string_equal(f->order, "WH");
    held.fn(held.arg);
    assert_string_equal(f->order, "WHD");

    /* a command that defers work and then fails: the work is dropped */
    f->order[0] = '\0';
    feed_to(s2, "{\"execute\": \"defer-fail\"}");
    assert_string_equal(f->order, "W");
    qmp_server_detach(f->s, s2);
}

static void test_query_commands(void **state)
{
    struct fx *f = *state;

    negotiate(f);
    feed(f, "{\"execute\": \"query-commands\"}");
    expect(f, "{\"return\": [{\"name\": \"qmp_capabilities\"}, {\"name\": \"query-commands\"}, "
              "{\"name\": \"noargs\"}, {\"name\": \"echo\"}, {\"name\": \"typed\"}, {\"name\": "
              "\"mixed\"}, {\"name\": \"fail\"}, {\"name\": \"fail-quiet\"}, {\"name\": "
              "\"defer\"}, {\"name\": \"defer-fail\"}, {\"name\": \"emit\"}]}");
}

static void test_register(void **state)
{
    struct fx *f = *state;

    assert_int_equal(qmp_register(f->s, "noargs", cmd_noargs, f, NULL), -EEXIST);
    assert_int_equal(qmp_register(f->s, "query-commands", cmd_noargs, f, NULL), -EEXIST);
    assert_int_equal(qmp_register(f->s, "x", NULL, f, NULL), -EINVAL);
    assert_int_equal(qmp_register(f->s, "", cmd_noargs, f, NULL), -EINVAL);
}

static void test_handle_request(void **state)
{
    struct fx *f = *state;
    struct json_object *reply;
    const char *caps = "{\"execute\": \"qmp_capabilities\"}";
    const char *req = "{\"execute\": \"echo\", \"arguments\": {\"k\": 1}, \"id\": 5}";

    assert_int_equal(qmp_session_handle(f->sess, caps, strlen(caps), &reply), 0);
    assert_string_equal(json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN),
                        "{\"return\":{}}");
    json_object_put(reply);
    assert_int_equal(qmp_session_handle(f->sess, req, strlen(req), &reply), 0);
    assert_string_equal(json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN),
                        "{\"return\":{\"k\":1},\"id\":5}");
    json_object_put(reply);
    assert_int_equal(qmp_session_handle(f->sess, "{x", 2, &reply), 0);
    assert_non_null(strstr(json_object_to_json_string(reply), "JSON parse error"));
    json_object_put(reply);
}

static void test_parse_uri(void **state)
{
    char path[108], small[4];
    char longuri[200];

    assert_int_equal(qmp_parse_uri("unix:/tmp/q.sock", path, sizeof(path)), 0);
    assert_string_equal(path, "/tmp/q.sock");
    assert_int_equal(qmp_parse_uri("unix:rel.sock", path, sizeof(path)), 0);
    assert_string_equal(path, "rel.sock");
    assert_int_equal(qmp_parse_uri("unix:", path, sizeof(path)), -EINVAL);
    assert_int_equal(qmp_parse_uri("/tmp/q.sock", path, sizeof(path)), -EINVAL);
    assert_int_equal(qmp_parse_uri("tcp:localhost:4444", path, sizeof(path)), -EINVAL);
    assert_int_equal(qmp_parse_uri("UNIX:/x", path, sizeof(path)), -EINVAL);
    assert_int_equal(qmp_parse_uri(NULL, path, sizeof(path)), -EINVAL);
    assert_int_equal(qmp_parse_uri("unix:/tmp/q.sock", small, sizeof(small)), -ENAMETOOLONG);
    memset(longuri, 'a', sizeof(longuri));
    memcpy(longuri, "unix:/", 6);
    longuri[sizeof(longuri) - 1] = '\0';
    assert_int_equal(qmp_parse_uri(longuri, path, sizeof(path)), -ENAMETOOLONG);
}

static void expect_format(const char *json, bool pretty, const char *want)
{
    struct json_object *o = json_tokener_parse(json);
    char *out;
    size_t len;

    assert_int_equal(qmp_json_format(o, pretty, &out, &len), 0);
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
    free(out);
    json_object_put(o);
}

static void test_json_format(void **state)
{
    struct json_object *o;
    char *out;

    expect_format("{\"s\": \"q\\\"b\\\\s/\\n\\t\\u0001\\u007f\xc3\xa9\xf0\x9f\x98\x80\"}", false,
                  "{\"s\": \"q\\\"b\\\\s/\\n\\t\\u0001\\u007F\\u00E9\\uD83D\\uDE00\"}");
    expect_format("[1, -5, 18446744073709551615, -9223372036854775808, 0.5, 0.1, 1e300, true, "
                  "false, null, {}, []]",
                  false,
                  "[1, -5, 18446744073709551615, -9223372036854775808, 0.5, 0.1, 1e+300, true, "
                  "false, null, {}, []]");
    expect_format("{\"a\": [1, 2], \"b\": {}, \"c\": {\"d\": []}}", true,
                  "{\n    \"a\": [\n        1,\n        2\n    ],\n    \"b\": {},\n    \"c\": {\n"
                  "        \"d\": []\n    }\n}");
    expect_format("{}", true, "{}");

    /* invalid UTF-8 built in memory comes out as U+FFFD, still pure ASCII */
    o = json_object_new_string_len("a\xff"
                                   "b\xc3",
                                   4);
    assert_int_equal(qmp_json_format(o, false, &out, NULL), 0);
    assert_string_equal(out, "\"a\\uFFFDb\\uFFFD\"");
    free(out);
    json_object_put(o);
    o = json_object_new_string_len("a\0b", 3);
    assert_int_equal(qmp_json_format(o, false, &out, NULL), 0);
    assert_string_equal(out, "\"a\\u0000b\"");
    free(out);
    json_object_put(o);
    o = json_object_new_double(1.0 / 0.0);
    assert_int_equal(qmp_json_format(o, false, &out, NULL), 0);
    assert_string_equal(out, "null");
    free(out);
    json_object_put(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_greeting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_negotiation_required, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_then_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_junk_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_argument_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_id_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_several_in_one_buffer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_across_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nesting_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_control_bytes_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nul_escape_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defer_after_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handle_request, setup, teardown),
        cmocka_unit_test(test_parse_uri),
        cmocka_unit_test(test_json_format),
    };

    return cmocka_run_group_tests_name("qmp", tests, NULL, NULL);
}
