/* server.h: the QMP control socket (QEMU's wire protocol): listener, clients, commands, events.
 *
 * Threading: everything here runs on the main loop thread, including qmp_emit_event() and the
 * command callbacks. Other threads reach the control plane through loop_call().
 *
 * A client's life (as QEMU's):
 *
 *   connect ──> greeting {"QMP": {...}} ──> only `qmp_capabilities` is accepted
 *           ──> {"return": {}} ──> commands get replies; events are sent as they happen
 *
 * Requests are JSON objects {"execute": NAME, "arguments": {...}, "id": ANY}; each reply or
 * event is one JSON text ending in "\r\n". Errors never end a connection, except a request
 * larger than QMP_MAX_REQUEST bytes or a client whose unread output passes QMP_MAX_OUTPUT.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

struct loop;
struct qmp_server;
struct qmp_session;
struct qmp_session_ops;

#define QMP_MAX_REQUEST (1u << 20) /* bytes in one JSON text from a client */
#define QMP_MAX_NESTING 64         /* nested objects/arrays in one request */
#define QMP_MAX_OUTPUT  (4u << 20) /* unread bytes queued for one client */
#define QMP_MAX_CLIENTS 32

/*
 * A command. args is the request's "arguments" object (an empty object when absent), already
 * checked against the command's qmp_arg list. Return 0 with *ret set to the result (ownership
 * passes to the server; NULL means {}), or a negative errno with a message in err: the client
 * gets {"error": {"class": "GenericError", "desc": err}} (strerror when err is left empty).
 */
typedef int (*qmp_cmd_fn)(void *opaque, struct json_object *args, struct json_object **ret,
                          char *err, size_t errlen);

/*
 * One accepted argument; arrays end with {NULL}. Types are json-c's, with two QAPI meanings:
 * json_type_double is QAPI "number" (integers are accepted too), json_type_null is QAPI "any"
 * (every value is accepted). An entry named QMP_ARG_OTHERS ("*") lets any member not listed
 * through unchecked, for free-form commands; qmp_args_any is the list made of only that.
 * A NULL list means the command takes no arguments.
 */
struct qmp_arg {
    const char *name;
    enum json_type type;
    bool optional;
};
#define QMP_ARG_OTHERS "*"
extern const struct qmp_arg qmp_args_any[];

/* "unix:PATH" -> PATH. Returns 0, -EINVAL for another scheme or an empty path, -ENAMETOOLONG
 * when PATH does not fit in n bytes or in a unix socket address. */
int qmp_parse_uri(const char *uri, char *path, size_t n);

/*
 * Listen on the unix socket path (a stale socket there is removed; a live one, or a file that
 * is not a socket, is an error). path NULL: no listener, for driving sessions in-process
 * (qmp_server_attach); l may then be NULL too. Must be called on the loop thread.
 * Returns NULL with a message in err on failure.
 */
struct qmp_server *qmp_server_new(struct loop *l, const char *path, char *err, size_t errlen);
/* Disconnect every client (dropping work they deferred), remove the socket file, run the
 * qmp_server_on_free callbacks. Not from inside a QMP callback. */
void qmp_server_free(struct qmp_server *s);

/* Add a command. name must be unique (-EEXIST); args must outlive the server (static const). */
int qmp_register(struct qmp_server *s, const char *name, qmp_cmd_fn fn, void *opaque,
                 const struct qmp_arg *args);

/*
 * From inside a command: run fn(arg) once that command's reply has been written to the
 * client's socket (via loop_call), or when the client is gone, or after one second if the client
 * does not read. For `quit`: the reply must leave before the process does. -EINVAL outside a
 * command, -ENOSPC past 4 per command.
 */
int qmp_defer(struct qmp_server *s, void (*fn)(void *arg), void *arg);

/*
 * Send an event to every client that finished capabilities negotiation:
 *   {"timestamp": {"seconds": S, "microseconds": U}, "event": NAME, "data": DATA}
 * DATA's ownership is taken; NULL omits "data" (as QEMU does for STOP and RESUME).
 * Loop thread only: from elsewhere the event is dropped and an error logged; post it with
 * loop_call() instead.
 */
void qmp_emit_event(struct qmp_server *s, const char *name, struct json_object *data);

/* Call fn(arg) in qmp_server_free (in reverse order of registration), e.g. to free the
 * opaque of commands. Returns 0 or -ENOMEM (fn is then called at once). */
int qmp_server_on_free(struct qmp_server *s, void (*fn)(void *arg), void *arg);

/* {"qemu": {"micro": .., "minor": .., "major": ..}, "package": "tandem-X.Y.Z"}, from
 * TANDEM_VERSION; shared by the greeting and query-version. NULL on ENOMEM. */
struct json_object *qmp_version_info(void);

/*
 * An in-process client with no socket (unit tests, embedders): the greeting goes out through
 * ops->write at once; feed it bytes with qmp_session_feed() (see session.h). It receives events
 * like a socket client. Detach before qmp_server_free, or let the server free it.
 */
struct qmp_session *qmp_server_attach(struct qmp_server *s, const struct qmp_session_ops *ops,
                                      void *opaque);
void qmp_server_detach(struct qmp_server *s, struct qmp_session *sess);
