/* session.h: one client's QMP conversation: bytes in, JSON texts framed and parsed, replies out.
 *
 * Framing (as QEMU's JSON streamer): a text is a balanced {...} or [...] (brackets inside
 * strings do not count) or one top-level scalar; texts need no separator. Every text gets
 * exactly one reply. Resynchronisation after bad input:
 *
 *   idle ──'{' or '['──> in text ──brackets balance──> parse + dispatch ──> reply ──> idle
 *     │                    │
 *     │                    ├─ control byte (not \t; \n or \r inside a string) or 0xFE/0xFF
 *     │                    │      ──> error reply, text discarded ──> idle
 *     │                    ├─ nesting > QMP_MAX_NESTING ──> discard to the text's end, error
 *     │                    └─ size > QMP_MAX_REQUEST ──> error reply, -EMSGSIZE (drop client)
 *     ├─ other byte ──> top-level scalar, ends at whitespace or a bracket ──> parse + reply;
 *     │      if it is not JSON at all (junk): error reply, then skip to the end of the line
 *     └─ whitespace: skipped
 *
 * So malformed JSON costs one error reply and the next request on the same connection works,
 * whether requests are newline-separated or not (only junk outside any value costs the rest of
 * its line); a client stuck in an unterminated text can reset the parser with a control byte,
 * as the QMP specification tells QEMU clients to do.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "qmp/dispatch.h"

struct json_object;
struct json_tokener;

struct qmp_session_ops {
    /* Queue one message (a JSON text ending in "\r\n"). <0: the client is gone; stop. */
    int (*write)(void *opaque, const char *buf, size_t len);
    /* Run fn(arg) once what was written so far has left. NULL: fn runs at once. */
    void (*after_flush)(void *opaque, void (*fn)(void *arg), void *arg);
};

struct qmp_session {
    struct qmp_registry *reg;
    const struct qmp_session_ops *ops;
    void *opaque;
    struct qmp_request_ctx req; /* negotiated flag, deferred work */
    bool dead;                  /* a write failed: nothing more is sent or parsed */
    struct qmp_session *next;   /* the server's list, for events */

    /* Framer state for the text being received. */
    char *text;
    size_t len, cap;
    unsigned depth; /* open brackets outside strings */
    char quote;     /* the quote character while inside a string, else 0 */
    bool escape;    /* previous byte was a backslash inside a string */
    bool active;    /* a text has started */
    bool scalar;    /* the text does not start with a bracket */
    bool too_deep;  /* past QMP_MAX_NESTING: discarding to the end of the text */
    bool junk;      /* last byte was a reset byte (reported once per run) */
    bool skip_line; /* after junk outside any JSON value: discarding to the end of the line */
    struct json_tokener *tok;
};

struct qmp_session *qmp_session_new(struct qmp_registry *reg, const struct qmp_session_ops *ops,
                                    void *opaque);
void qmp_session_free(struct qmp_session *c);

/*
 * Take bytes from the client (any split: several texts, or part of one). Replies go out
 * through ops->write as each text completes. Returns 0; -EMSGSIZE when a text outgrew
 * QMP_MAX_REQUEST (an error reply was written; drop the client); or the error of a failed
 * write (the session is then dead).
 */
int qmp_session_feed(struct qmp_session *c, const char *buf, size_t len);

/*
 * Parse and dispatch exactly one complete JSON text, without framing and without writing:
 * *reply gets what the client would be sent (NULL only on ENOMEM: returns -ENOMEM). Deferred
 * work is handed to ops->after_flush (or run) before this returns. For tests.
 */
int qmp_session_handle(struct qmp_session *c, const char *json, size_t len,
                       struct json_object **reply);

/* Serialize msg (not consumed) as one line and write it. 0 or -errno. */
int qmp_session_send(struct qmp_session *c, struct json_object *msg);

static inline bool qmp_session_negotiated(const struct qmp_session *c)
{
    return c->req.negotiated;
}
