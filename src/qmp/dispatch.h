/* dispatch.h: the command table and the checks that turn one QMP request into one reply. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "qmp/server.h"

struct qmp_registry;

#define QMP_MAX_DEFERRED 4

/* Work a command asked to run after its reply has left (see qmp_defer). */
struct qmp_deferred {
    void (*fn)(void *arg);
    void *arg;
};

/* Per-client protocol state the dispatcher reads and changes. */
struct qmp_request_ctx {
    bool negotiated;                                /* qmp_capabilities succeeded */
    struct qmp_deferred deferred[QMP_MAX_DEFERRED]; /* filled during one dispatch */
    unsigned ndeferred;
};

/* A table holding the built-in qmp_capabilities and query-commands. */
struct qmp_registry *qmp_registry_new(void);
void qmp_registry_free(struct qmp_registry *r);
int qmp_registry_add(struct qmp_registry *r, const char *name, qmp_cmd_fn fn, void *opaque,
                     const struct qmp_arg *args);
/* See qmp_defer(); only valid while a command of this registry runs. */
int qmp_registry_defer(struct qmp_registry *r, void (*fn)(void *arg), void *arg);

/*
 * Check and run one parsed request (any JSON value), QEMU's order of checks:
 *   not an object -> GenericError "QMP input must be a JSON object"
 *   bad or missing members -> GenericError "QMP input member 'execute' must be a string", ...
 *   before negotiation -> CommandNotFound "Expecting capabilities negotiation with ..."
 *   unknown name -> CommandNotFound "The command X has not been found"
 *   arguments -> GenericError "Parameter 'x' is missing" / "expects T" / "is unexpected"
 * Returns the reply ({"return": ..} or {"error": ..}, with the request's "id" echoed), or NULL
 * when memory ran out. Work deferred by the command is left in ctx->deferred.
 */
struct json_object *qmp_dispatch(struct qmp_registry *r, struct qmp_request_ctx *ctx,
                                 struct json_object *req);

/* {"error": {"class": cls, "desc": desc}}; NULL on ENOMEM. */
struct json_object *qmp_error_reply(const char *cls, const char *desc);
