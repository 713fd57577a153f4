/* session.c: one client's byte stream framed into JSON texts, parsed, dispatched and answered. */
#include "qmp/session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "qmp/json_out.h"

#define SPARE_TEXT_BUF 65536 /* keep a text buffer this big between requests; free bigger */

struct qmp_session *qmp_session_new(struct qmp_registry *reg, const struct qmp_session_ops *ops,
                                    void *opaque)
{
    struct qmp_session *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->reg = reg;
    c->ops = ops;
    c->opaque = opaque;
    /* The framer bounds nesting; json-c's own limit only has to be above it. */
    c->tok = json_tokener_new_ex(QMP_MAX_NESTING + 2);
    if (!c->tok) {
        free(c);
        return NULL;
    }
    /* Not JSON_TOKENER_STRICT: QEMU accepts 'single-quoted' strings, and so do we. */
    json_tokener_set_flags(c->tok, JSON_TOKENER_VALIDATE_UTF8);
    return c;
}

void qmp_session_free(struct qmp_session *c)
{
    if (!c)
        return;
    json_tokener_free(c->tok);
    free(c->text);
    free(c);
}

int qmp_session_send(struct qmp_session *c, struct json_object *msg)
{
    char *line;
    size_t len;
    int rc;

    if (c->dead)
        return -EPIPE;
    rc = qmp_json_format(msg, false, &line, &len);
    if (rc < 0)
        return rc;
    /* The buffer has room for the NUL; "\r\n" replaces it and one more byte is needed. */
    {
        char *p = realloc(line, len + 3);
        if (!p) {
            free(line);
            return -ENOMEM;
        }
        line = p;
    }
    memcpy(line + len, "\r\n", 3);
    rc = c->ops->write(c->opaque, line, len + 2);
    free(line);
    if (rc < 0)
        c->dead = true;
    return rc;
}

static int send_error(struct qmp_session *c, const char *desc)
{
    struct json_object *reply = qmp_error_reply("GenericError", desc);
    int rc;

    if (!reply)
        return -ENOMEM;
    rc = qmp_session_send(c, reply);
    json_object_put(reply);
    return rc;
}

/* QEMU refuses \u0000 in strings; json-c would accept it and C string APIs would truncate. */
static bool has_nul(struct json_object *o)
{
    switch (json_object_get_type(o)) {
    case json_type_string:
        return strlen(json_object_get_string(o)) != (size_t)json_object_get_string_len(o);
    case json_type_object: {
        json_object_object_foreach(o, key, val)
        {
            (void)key;
            if (has_nul(val))
                return true;
        }
        return false;
    }
    case json_type_array:
        for (size_t i = 0; i < json_object_array_length(o); i++)
            if (has_nul(json_object_array_get_idx(o, i)))
                return true;
        return false;
    default:
        return false;
    }
}

/*
 * Parse text[0..len) (text[len] must be '\0') and dispatch it; returns the reply or NULL.
 * *bad_json tells whether the text was not JSON at all.
 */
static struct json_object *handle_text(struct qmp_session *c, const char *text, size_t len,
                                       bool *bad_json)
{
    enum json_tokener_error jerr;
    struct json_object *req, *reply;
    char desc[160];

    json_tokener_reset(c->tok);
    /* Passing the NUL too ends top-level scalars ("123"), which json-c would otherwise hold. */
    req = json_tokener_parse_ex(c->tok, text, (int)len + 1);
    jerr = json_tokener_get_error(c->tok);
    *bad_json = true;
    if (jerr != json_tokener_success) {
        snprintf(desc, sizeof(desc), "JSON parse error, %s", json_tokener_error_desc(jerr));
        return qmp_error_reply("GenericError", desc);
    }
    if (json_tokener_get_parse_end(c->tok) < len) {
        json_object_put(req);
        return qmp_error_reply("GenericError", "JSON parse error, unexpected character");
    }
    *bad_json = false;
    if (has_nul(req)) {
        json_object_put(req);
        return qmp_error_reply("GenericError", "JSON parse error, \\u0000 is not supported");
    }
    reply = qmp_dispatch(c->reg, &c->req, req);
    json_object_put(req);
    return reply;
}

static void run_deferred(struct qmp_session *c)
{
    unsigned n = c->req.ndeferred;

    c->req.ndeferred = 0;
    for (unsigned i = 0; i < n; i++) {
        struct qmp_deferred d = c->req.deferred[i];
        if (c->ops->after_flush)
            c->ops->after_flush(c->opaque, d.fn, d.arg);
        else
            d.fn(d.arg);
    }
}

int qmp_session_handle(struct qmp_session *c, const char *json, size_t len,
                       struct json_object **reply)
{
    bool bad_json;
    char *copy;

    *reply = NULL;
    if (len > QMP_MAX_REQUEST) {
        *reply = qmp_error_reply("GenericError", "JSON parse error, request too large");
        return *reply ? 0 : -ENOMEM;
    }
    copy = malloc(len + 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, json, len);
    copy[len] = '\0';
    *reply = handle_text(c, copy, len, &bad_json);
    free(copy);
    run_deferred(c);
    return *reply ? 0 : -ENOMEM;
}

static void framer_reset(struct qmp_session *c)
{
    c->len = 0;
    c->depth = 0;
    c->quote = 0;
    c->escape = c->active = c->scalar = c->too_deep = false;
    if (c->cap > SPARE_TEXT_BUF) {
        free(c->text);
        c->text = NULL;
        c->cap = 0;
    }
}

/* The text is complete: answer it. */
static int finish_text(struct qmp_session *c)
{
    bool scalar = c->scalar, bad_json;
    struct json_object *reply;
    int rc;

    if (c->too_deep) {
        framer_reset(c);
        return send_error(c, "JSON parse error, nesting depth limit exceeded");
    }
    c->text[c->len] = '\0';
    reply = handle_text(c, c->text, c->len, &bad_json);
    framer_reset(c);
    /* Junk outside any JSON value ("this is not json {{{"): the rest of the line is junk too.
     * A bracketed text that fails to parse needs no such thing: its end is known. */
    c->skip_line = scalar && bad_json;
    if (!reply)
        return -ENOMEM;
    rc = qmp_session_send(c, reply);
    json_object_put(reply);
    /* Even when the client is gone: a `quit` whose reply could not be sent still quits. */
    run_deferred(c);
    return rc;
}

/* Append one byte; keeps room for the NUL. -EMSGSIZE past QMP_MAX_REQUEST. */
static int text_add(struct qmp_session *c, char ch)
{
    if (c->too_deep)
        return 0;
    if (c->len >= QMP_MAX_REQUEST)
        return -EMSGSIZE;
    if (c->len + 2 > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        char *p;

        if (cap > QMP_MAX_REQUEST + 1)
            cap = QMP_MAX_REQUEST + 1;
        p = realloc(c->text, cap);
        if (!p)
            return -ENOMEM;
        c->text = p;
        c->cap = cap;
    }
    c->text[c->len++] = ch;
    return 0;
}

/* Bytes that cannot appear in JSON text here; QEMU resets its parser on them. */
static bool is_reset_byte(unsigned char ch, bool in_string)
{
    if (ch == 0xfe || ch == 0xff)
        return true;
    if (ch >= 0x20 || ch == '\t')
        return false;
    if (ch == '\n' || ch == '\r')
        return in_string;
    return true;
}

static bool is_space(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* What ends a top-level scalar (a number, a literal, a string, or junk). */
static bool ends_scalar(unsigned char ch)
{
    return is_space(ch) || strchr("{}[],:\"'", ch) != NULL;
}

static int on_reset_byte(struct qmp_session *c, unsigned char ch)
{
    char desc[96];
    bool report = !c->junk;

    framer_reset(c);
    c->junk = true;
    if (!report)
        return 0;
    snprintf(desc, sizeof(desc), "JSON parse error, stray byte 0x%02x", ch);
    return send_error(c, desc);
}

int qmp_session_feed(struct qmp_session *c, const char *buf, size_t len)
{
    int rc = 0;

    for (size_t i = 0; i < len && rc == 0; i++) {
        unsigned char ch = (unsigned char)buf[i];

        if (c->dead)
            return -EPIPE;
        if (c->skip_line) {
            /* A reset byte also ends the skipping (it is the reset the client asked for). */
            if (ch == '\n' || is_reset_byte(ch, false)) {
                c->skip_line = false;
                c->junk = ch != '\n';
            }
            continue;
        }
        if (is_reset_byte(ch, c->quote != 0)) {
            rc = on_reset_byte(c, ch);
            continue;
        }
        c->junk = false;
        if (!c->active) {
            if (is_space(ch))
                continue;
            c->active = true;
            c->scalar = ch != '{' && ch != '[';
        } else if (c->scalar && !c->quote && c->len && ends_scalar(ch)) {
            rc = finish_text(c);
            i--; /* ch starts the next text */
            continue;
        }
        rc = text_add(c, (char)ch);
        if (rc == -EMSGSIZE) {
            char desc[96];

            snprintf(desc, sizeof(desc), "JSON parse error, request larger than %u bytes",
                     QMP_MAX_REQUEST);
            framer_reset(c);
            send_error(c, desc);
            return -EMSGSIZE;
        }
        if (rc < 0)
            break;
        if (c->quote) {
            if (c->escape)
                c->escape = false;
            else if (ch == '\\')
                c->escape = true;
            else if (ch == (unsigned char)c->quote)
                c->quote = 0;
            continue;
        }
        switch (ch) {
        case '"':
        case '\'':
            c->quote = (char)ch;
            break;
        case '{':
        case '[':
            if (++c->depth > QMP_MAX_NESTING && !c->too_deep) {
                c->too_deep = true;
                c->len = 0;
            }
            break;
        case '}':
        case ']':
            if (c->depth == 0 || --c->depth == 0)
                rc = finish_text(c);
            break;
        case ',':
        case ':':
            if (c->depth == 0)
                rc = finish_text(c);
            break;
        default:
            break;
        }
    }
    return rc;
}
