/* dispatch.c: the command table, request checks in QEMU's order and wording, built-in commands. */
#include "qmp/dispatch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct qmp_command {
    char *name;
    qmp_cmd_fn fn;
    void *opaque;
    const struct qmp_arg *args;
};

struct qmp_registry {
    struct qmp_command *cmds;
    size_t n, cap;
    struct qmp_request_ctx *cur; /* set while a command runs, for qmp_registry_defer */
};

const struct qmp_arg qmp_args_any[] = {
    {QMP_ARG_OTHERS, json_type_null, true},
    {NULL, json_type_null, false},
};

static const struct qmp_arg capabilities_args[] = {
    {"enable", json_type_array, true},
    {NULL, json_type_null, false},
};

#define CLASS_GENERIC   "GenericError"
#define CLASS_NOT_FOUND "CommandNotFound"

/*
 * qmp_capabilities: we offer no capability (no "oob"), so the only valid "enable" is empty.
 * Negotiation itself is recorded by qmp_dispatch, which knows the client.
 */
static int cmd_capabilities(void *opaque, struct json_object *args, struct json_object **ret,
                            char *err, size_t errlen)
{
    struct json_object *enable = json_object_object_get(args, "enable");

    for (size_t i = 0; enable && i < json_object_array_length(enable); i++) {
        struct json_object *cap = json_object_array_get_idx(enable, i);
        const char *name = json_object_get_string(cap);

        if (!json_object_is_type(cap, json_type_string)) {
            snprintf(err, errlen, "Parameter 'enable[%zu]' expects string", i);
            return -EINVAL;
        }
        if (!strcmp(name, "oob"))
            snprintf(err, errlen, "Capability 'oob' not available");
        else
            snprintf(err, errlen, "Parameter 'enable[%zu]' does not accept value '%s'", i, name);
        return -EINVAL;
    }
    *ret = NULL;
    return 0;
}

static int add_name(struct json_object *list, const char *name)
{
    struct json_object *item = json_object_new_object();
    struct json_object *str = json_object_new_string(name);

    if (!item || !str || json_object_object_add(item, "name", str) < 0)
        goto err;
    str = NULL;
    if (json_object_array_add(list, item) < 0)
        goto err;
    return 0;

err:
    json_object_put(str);
    json_object_put(item);
    return -ENOMEM;
}

static int cmd_query_commands(void *opaque, struct json_object *args, struct json_object **ret,
                              char *err, size_t errlen)
{
    struct qmp_registry *r = opaque;
    struct json_object *list = json_object_new_array_ext((int)r->n);

    if (!list)
        return -ENOMEM;
    for (size_t i = 0; i < r->n; i++) {
        if (add_name(list, r->cmds[i].name) < 0) {
            json_object_put(list);
            return -ENOMEM;
        }
    }
    *ret = list;
    return 0;
}

struct qmp_registry *qmp_registry_new(void)
{
    struct qmp_registry *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    if (qmp_registry_add(r, "qmp_capabilities", cmd_capabilities, NULL, capabilities_args) ||
        qmp_registry_add(r, "query-commands", cmd_query_commands, r, NULL)) {
        qmp_registry_free(r);
        return NULL;
    }
    return r;
}

void qmp_registry_free(struct qmp_registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        free(r->cmds[i].name);
    free(r->cmds);
    free(r);
}

static struct qmp_command *find_command(struct qmp_registry *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->cmds[i].name, name))
            return &r->cmds[i];
    return NULL;
}

int qmp_registry_add(struct qmp_registry *r, const char *name, qmp_cmd_fn fn, void *opaque,
                     const struct qmp_arg *args)
{
    struct qmp_command *c;

    if (!name || !*name || !fn)
        return -EINVAL;
    if (find_command(r, name))
        return -EEXIST;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        c = realloc(r->cmds, cap * sizeof(*c));
        if (!c)
            return -ENOMEM;
        r->cmds = c;
        r->cap = cap;
    }
    c = &r->cmds[r->n];
    c->name = strdup(name);
    if (!c->name)
        return -ENOMEM;
    c->fn = fn;
    c->opaque = opaque;
    c->args = args;
    r->n++;
    return 0;
}

int qmp_registry_defer(struct qmp_registry *r, void (*fn)(void *arg), void *arg)
{
    struct qmp_request_ctx *ctx = r->cur;

    if (!ctx || !fn)
        return -EINVAL;
    if (ctx->ndeferred >= QMP_MAX_DEFERRED)
        return -ENOSPC;
    ctx->deferred[ctx->ndeferred++] = (struct qmp_deferred){fn, arg};
    return 0;
}

struct json_object *qmp_error_reply(const char *cls, const char *desc)
{
    struct json_object *reply = json_object_new_object();
    struct json_object *e = json_object_new_object();
    struct json_object *c = json_object_new_string(cls);
    struct json_object *d = json_object_new_string(desc);

    if (!reply || !e || !c || !d)
        goto err;
    json_object_object_add(e, "class", c);
    c = NULL;
    json_object_object_add(e, "desc", d);
    d = NULL;
    if (json_object_object_add(reply, "error", e) < 0)
        goto err;
    return reply;

err:
    json_object_put(d);
    json_object_put(c);
    json_object_put(e);
    json_object_put(reply);
    return NULL;
}

static const char *type_name(enum json_type t)
{
    switch (t) {
    case json_type_boolean:
        return "boolean";
    case json_type_int:
        return "integer";
    case json_type_double:
        return "number";
    case json_type_string:
        return "string";
    case json_type_object:
        return "object";
    case json_type_array:
        return "array";
    case json_type_null:
        break;
    }
    return "any";
}

static bool type_ok(enum json_type want, struct json_object *v)
{
    enum json_type t = json_object_get_type(v);

    if (want == json_type_null) /* QAPI "any" */
        return true;
    if (want == json_type_double) /* QAPI "number" takes integers too */
        return t == json_type_double || t == json_type_int;
    return t == want;
}

static const struct qmp_arg *find_arg(const struct qmp_arg *spec, const char *name)
{
    for (const struct qmp_arg *a = spec; a && a->name; a++)
        if (!strcmp(a->name, name))
            return a;
    return NULL;
}

/* Declared members first, in declaration order, then the unexpected ones: as QEMU's visitor. */
static int check_args(const struct qmp_arg *spec, struct json_object *args, char *err,
                      size_t errlen)
{
    bool others = find_arg(spec, QMP_ARG_OTHERS) != NULL;

    for (const struct qmp_arg *a = spec; a && a->name; a++) {
        struct json_object *v;

        if (!strcmp(a->name, QMP_ARG_OTHERS))
            continue;
        if (!json_object_object_get_ex(args, a->name, &v)) {
            if (a->optional)
                continue;
            snprintf(err, errlen, "Parameter '%s' is missing", a->name);
            return -EINVAL;
        }
        if (!type_ok(a->type, v)) {
            snprintf(err, errlen, "Parameter '%s' expects %s", a->name, type_name(a->type));
            return -EINVAL;
        }
    }
    if (others)
        return 0;
    json_object_object_foreach(args, key, val)
    {
        (void)val;
        if (!find_arg(spec, key)) {
            snprintf(err, errlen, "Parameter '%s' is unexpected", key);
            return -EINVAL;
        }
    }
    return 0;
}

/*
 * Top-level members, as QEMU's qmp_dispatch_check_obj. "exec-oob" is refused like any unknown
 * member: QEMU does so unless the client enabled the "oob" capability, which we do not offer.
 */
static int check_request(struct json_object *req, const char **name, char *err, size_t errlen)
{
    struct json_object *exec = NULL;

    json_object_object_foreach(req, key, val)
    {
        if (!strcmp(key, "execute")) {
            if (!json_object_is_type(val, json_type_string)) {
                snprintf(err, errlen, "QMP input member 'execute' must be a string");
                return -EINVAL;
            }
            exec = val;
        } else if (!strcmp(key, "arguments")) {
            if (!json_object_is_type(val, json_type_object)) {
                snprintf(err, errlen, "QMP input member 'arguments' must be an object");
                return -EINVAL;
            }
        } else if (strcmp(key, "id") != 0) {
            snprintf(err, errlen, "QMP input member '%s' is unexpected", key);
            return -EINVAL;
        }
    }
    if (!exec) {
        snprintf(err, errlen, "QMP input lacks member 'execute'");
        return -EINVAL;
    }
    *name = json_object_get_string(exec);
    return 0;
}

/* Run the command; returns the reply body ({"return": ..}) or an error reply. */
static struct json_object *run_command(struct qmp_registry *r, struct qmp_request_ctx *ctx,
                                       struct qmp_command *cmd, struct json_object *args)
{
    struct json_object *ret = NULL, *reply;
    char err[512] = "";
    int rc;

    rc = check_args(cmd->args, args, err, sizeof(err));
    if (rc < 0)
        return qmp_error_reply(CLASS_GENERIC, err);
    r->cur = ctx;
    rc = cmd->fn(cmd->opaque, args, &ret, err, sizeof(err));
    r->cur = NULL;
    if (rc < 0) {
        json_object_put(ret);
        ctx->ndeferred = 0; /* a failed command has nothing to finish */
        if (!err[0])
            snprintf(err, sizeof(err), "%s", strerror(-rc));
        return qmp_error_reply(CLASS_GENERIC, err);
    }
    if (!ret)
        ret = json_object_new_object();
    reply = json_object_new_object();
    if (!ret || !reply || json_object_object_add(reply, "return", ret) < 0) {
        json_object_put(ret);
        json_object_put(reply);
        return NULL;
    }
    if (cmd->fn == cmd_capabilities)
        ctx->negotiated = true;
    return reply;
}

/* json_object_object_add, dropping val when it fails (json-c leaves it with the caller). */
static int add_owned(struct json_object *o, const char *key, struct json_object *val)
{
    if (json_object_object_add(o, key, val) < 0) {
        json_object_put(val);
        return -ENOMEM;
    }
    return 0;
}

/*
 * Echo the request's id. Member order as QEMU prints it (its dictionaries iterate in hash
 * order): {"return": R, "id": I} but {"id": I, "error": E}. Consumes reply.
 */
static struct json_object *add_id(struct json_object *reply, struct json_object *id)
{
    struct json_object *e, *out;

    if (json_object_object_get_ex(reply, "error", &e)) {
        out = json_object_new_object();
        if (!out || add_owned(out, "id", json_object_get(id)) < 0 ||
            add_owned(out, "error", json_object_get(e)) < 0) {
            json_object_put(out);
            out = NULL;
        }
        json_object_put(reply);
        return out;
    }
    if (add_owned(reply, "id", json_object_get(id)) < 0) {
        json_object_put(reply);
        return NULL;
    }
    return reply;
}

struct json_object *qmp_dispatch(struct qmp_registry *r, struct qmp_request_ctx *ctx,
                                 struct json_object *req)
{
    struct json_object *args, *id, *reply, *empty = NULL;
    struct qmp_command *cmd;
    const char *name;
    char err[512];

    ctx->ndeferred = 0;
    if (!json_object_is_type(req, json_type_object))
        return qmp_error_reply(CLASS_GENERIC, "QMP input must be a JSON object");
    if (check_request(req, &name, err, sizeof(err)) < 0) {
        reply = qmp_error_reply(CLASS_GENERIC, err);
        goto out;
    }
    cmd = find_command(r, name);
    if (!ctx->negotiated && (!cmd || cmd->fn != cmd_capabilities)) {
        reply = qmp_error_reply(CLASS_NOT_FOUND,
                                "Expecting capabilities negotiation with 'qmp_capabilities'");
    } else if (ctx->negotiated && cmd && cmd->fn == cmd_capabilities) {
        reply = qmp_error_reply(CLASS_NOT_FOUND,
                                "Capabilities negotiation is already complete, command ignored");
    } else if (!cmd) {
        snprintf(err, sizeof(err), "The command %s has not been found", name);
        reply = qmp_error_reply(CLASS_NOT_FOUND, err);
    } else {
        if (!json_object_object_get_ex(req, "arguments", &args)) {
            args = empty = json_object_new_object();
            if (!empty)
                return NULL;
        }
        reply = run_command(r, ctx, cmd, args);
        json_object_put(empty);
    }

out:
    if (reply && json_object_object_get_ex(req, "id", &id))
        reply = add_id(reply, id);
    return reply;
}
