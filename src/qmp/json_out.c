/* json_out.c: a JSON writer that matches QEMU's output byte for byte on the wire. */
#include "qmp/json_out.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

struct strbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_grow(struct strbuf *b, size_t more)
{
    size_t cap;
    char *p;

    if (b->oom)
        return;
    if (b->len + more + 1 <= b->cap)
        return;
    cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1) {
        if (cap > SIZE_MAX / 2) {
            b->oom = true;
            return;
        }
        cap *= 2;
    }
    p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void sb_add(struct strbuf *b, const char *s, size_t n)
{
    sb_grow(b, n);
    if (b->oom)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(struct strbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void sb_printf(struct strbuf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        b->oom = true; /* only short numbers come through here */
        return;
    }
    sb_add(b, tmp, (size_t)n);
}

static void newline(struct strbuf *b, bool pretty, int indent)
{
    if (!pretty)
        return;
    sb_add(b, "\n", 1);
    for (int i = 0; i < indent; i++)
        sb_add(b, "    ", 4);
}

/* Decode one UTF-8 sequence at s (n bytes left); returns its length, *cp = -1 if invalid. */
static size_t utf8_decode(const unsigned char *s, size_t n, long *cp)
{
    static const long min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t need;
    long v;

    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        need = 2;
        v = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        need = 3;
        v = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        need = 4;
        v = s[0] & 0x07;
    } else {
        *cp = -1;
        return 1;
    }
    for (size_t i = 1; i < need; i++) {
        if (i >= n || (s[i] & 0xc0) != 0x80) {
            *cp = -1;
            return i;
        }
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min_cp[need] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        v = -1;
    *cp = v;
    return need;
}

static void put_string(struct strbuf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    sb_add(b, "\"", 1);
    while (i < n && !b->oom) {
        long cp;

        i += utf8_decode(s + i, n - i, &cp);
        switch (cp) {
        case '"':
            sb_add(b, "\\\"", 2);
            break;
        case '\\':
            sb_add(b, "\\\\", 2);
            break;
        case '\b':
            sb_add(b, "\\b", 2);
            break;
        case '\f':
            sb_add(b, "\\f", 2);
            break;
        case '\n':
            sb_add(b, "\\n", 2);
            break;
        case '\r':
            sb_add(b, "\\r", 2);
            break;
        case '\t':
            sb_add(b, "\\t", 2);
            break;
        default:
            if (cp < 0)
                cp = 0xfffd;
            if (cp > 0xffff) {
                sb_printf(b, "\\u%04lX\\u%04lX", 0xd800 + ((cp - 0x10000) >> 10),
                          0xdc00 + ((cp - 0x10000) & 0x3ff));
            } else if (cp < 0x20 || cp >= 0x7f) {
                sb_printf(b, "\\u%04lX", cp);
            } else {
                char c = (char)cp;
                sb_add(b, &c, 1);
            }
        }
    }
    sb_add(b, "\"", 1);
}

/* Shortest "%.Ng" that reads back as the same double. */
static void put_double(struct strbuf *b, double d)
{
    char tmp[40];

    if (!isfinite(d)) {
        sb_puts(b, "null");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
        if (prec == 17 || strtod(tmp, NULL) == d)
            break;
    }
    sb_puts(b, tmp);
}

static void put_value(struct strbuf *b, struct json_object *o, bool pretty, int indent)
{
    bool first = true;
    int64_t v;

    switch (json_object_get_type(o)) {
    case json_type_null:
        sb_puts(b, "null");
        break;
    case json_type_boolean:
        sb_puts(b, json_object_get_boolean(o) ? "true" : "false");
        break;
    case json_type_int:
        v = json_object_get_int64(o);
        if (v == INT64_MAX) /* json-c keeps integers above INT64_MAX as uint64 */
            sb_printf(b, "%" PRIu64, json_object_get_uint64(o));
        else
            sb_printf(b, "%" PRId64, v);
        break;
    case json_type_double:
        put_double(b, json_object_get_double(o));
        break;
    case json_type_string:
        put_string(b, json_object_get_string(o), (size_t)json_object_get_string_len(o));
        break;
    case json_type_object:
        sb_add(b, "{", 1);
        json_object_object_foreach(o, key, val)
        {
            if (!first)
                sb_puts(b, pretty ? "," : ", ");
            first = false;
            newline(b, pretty, indent + 1);
            put_string(b, key, strlen(key));
            sb_add(b, ": ", 2);
            put_value(b, val, pretty, indent + 1);
        }
        if (!first)
            newline(b, pretty, indent);
        sb_add(b, "}", 1);
        break;
    case json_type_array:
        sb_add(b, "[", 1);
        for (size_t i = 0; i < json_object_array_length(o); i++) {
            if (i)
                sb_puts(b, pretty ? "," : ", ");
            newline(b, pretty, indent + 1);
            put_value(b, json_object_array_get_idx(o, i), pretty, indent + 1);
        }
        if (json_object_array_length(o))
            newline(b, pretty, indent);
        sb_add(b, "]", 1);
        break;
    }
}

int qmp_json_format(struct json_object *obj, bool pretty, char **out, size_t *len)
{
    struct strbuf b = {0};

    put_value(&b, obj, pretty, 0);
    if (b.oom) {
        free(b.p);
        *out = NULL;
        return -ENOMEM;
    }
    *out = b.p;
    if (len)
        *len = b.len;
    return 0;
}
