/* cmds_migration.c: migrate, migrate-incoming, migrate_cancel, query-migrate, parameters, caps. */
#include "qmp/cmds_migration.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/loop.h"
#include "migration/migrate.h"
#include "qmp/server.h"

struct mig_qmp {
    struct qmp_server *s;
    struct migration *m;
};

static struct mig_qmp mig_qmp; /* one migration object per process */

static void add_u64(struct json_object *o, const char *k, uint64_t v)
{
    json_object_object_add(o, k, json_object_new_uint64(v));
}

static void on_status(void *opaque, enum mig_status st)
{
    struct mig_qmp *q = opaque;
    struct json_object *data;

    if (!q->m->caps.events)
        return;
    data = json_object_new_object();
    json_object_object_add(data, "status", json_object_new_string(mig_status_name(st)));
    qmp_emit_event(q->s, "MIGRATION", data);
}

static int cmd_migrate(void *opaque, struct json_object *args, struct json_object **ret, char *err,
                       size_t errlen)
{
    struct mig_qmp *q = opaque;
    struct json_object *uri;

    json_object_object_get_ex(args, "uri", &uri);
    return migrate_start(q->m, json_object_get_string(uri), err, errlen);
}

static int cmd_migrate_incoming(void *opaque, struct json_object *args, struct json_object **ret,
                                char *err, size_t errlen)
{
    struct mig_qmp *q = opaque;
    struct json_object *uri;

    if (!q->m->incoming_deferred) {
        snprintf(err, errlen, "The incoming migration has not been started with -incoming defer");
        return -EINVAL;
    }
    json_object_object_get_ex(args, "uri", &uri);
    int r = migrate_incoming_start(q->m, json_object_get_string(uri), err, errlen);
    if (!r)
        q->m->incoming_deferred = false;
    return r;
}

static int cmd_migrate_cancel(void *opaque, struct json_object *args, struct json_object **ret,
                              char *err, size_t errlen)
{
    struct mig_qmp *q = opaque;

    return migrate_cancel(q->m);
}

static int cmd_query_migrate(void *opaque, struct json_object *args, struct json_object **ret,
                             char *err, size_t errlen)
{
    struct mig_qmp *q = opaque;
    struct migration *m = q->m;
    struct json_object *o = json_object_new_object(), *ram;
    struct mig_stats st;
    enum mig_status s;
    char error[sizeof(m->error)];

    pthread_mutex_lock(&m->lock);
    s = m->status;
    st = m->stats;
    memcpy(error, m->error, sizeof(error));
    pthread_mutex_unlock(&m->lock);
    *ret = o;
    if (s == MIG_NONE)
        return 0; /* QEMU answers {} before any migration */
    json_object_object_add(o, "status", json_object_new_string(mig_status_name(s)));
    if (s == MIG_SETUP)
        return 0;
    ram = json_object_new_object();
    add_u64(ram, "transferred", st.transferred);
    add_u64(ram, "remaining", st.remaining);
    add_u64(ram, "total", st.total);
    add_u64(ram, "duplicate", st.duplicate);
    add_u64(ram, "normal", st.normal);
    add_u64(ram, "normal-bytes", st.normal_bytes);
    add_u64(ram, "dirty-pages-rate", st.dirty_pages_rate);
    add_u64(ram, "dirty-sync-count", st.dirty_sync_count);
    add_u64(ram, "mbps", st.mbps);
    add_u64(ram, "page-size", 4096);
    add_u64(ram, "x-zero-skipped", st.zero_skipped);
    json_object_object_add(o, "ram", ram);
    if (st.colo_disk) {
        /* tandem: COLO's initial disk sync, what a re-protection copies (docs/qmp.md) */
        struct json_object *d = json_object_new_object();
        add_u64(d, "chunks", st.disk_chunks);
        add_u64(d, "chunks-differ", st.disk_chunks_differ);
        add_u64(d, "chunks-sent", st.disk_chunks_sent);
        add_u64(d, "bytes-sent", st.disk_bytes_sent);
        json_object_object_add(o, "colo-disk", d);
    }
    add_u64(o, "setup-time", st.setup_time_ms);
    if (s == MIG_COMPLETED || s == MIG_COLO) {
        add_u64(o, "total-time", st.total_time_ms);
        add_u64(o, "downtime", st.downtime_ms);
        add_u64(o, "x-downtime-us", st.downtime_us);
    } else {
        add_u64(o, "total-time", st.start_ms ? now_ms() - st.start_ms : 0);
    }
    if (s == MIG_FAILED && error[0])
        json_object_object_add(o, "error-desc", json_object_new_string(error));
    return 0;
}

/* name, field, bounds; QEMU's names plus tandem's x- extensions. */
struct param_desc {
    const char *name;
    size_t offset;
    uint64_t min, max;
};

static const struct param_desc params[] = {
    {"downtime-limit", offsetof(struct mig_params, downtime_limit_ms), 0, 2000000},
    {"max-bandwidth", offsetof(struct mig_params, max_bandwidth), 0, UINT64_MAX / 2},
    {"x-max-iterations", offsetof(struct mig_params, max_iterations), 1, 100000},
    {"x-checkpoint-delay", offsetof(struct mig_params, checkpoint_delay_ms), 1, 3600000},
    {"x-heartbeat-interval", offsetof(struct mig_params, heartbeat_interval_ms), 1, 60000},
    {"x-heartbeat-timeout", offsetof(struct mig_params, heartbeat_timeout_ms), 10, 600000},
    {"x-colo-disk-log-max", offsetof(struct mig_params, colo_disk_log_max), 1ULL << 20, 1ULL << 40},
    {"x-colo-io-timeout", offsetof(struct mig_params, colo_io_timeout_ms), 100, 600000},
    {"x-colo-buffer-max", offsetof(struct mig_params, colo_buffer_max), 4096, 1ULL << 40},
    {"x-compare-timeout", offsetof(struct mig_params, compare_timeout_ms), 10, 60000},
};

/* x-colo-mode: the one string parameter ("periodic" | "hybrid"). */
static const char *const colo_mode_names[] = {"periodic", "hybrid"};

static uint64_t param_get(const struct mig_params *p, const struct param_desc *d)
{
    if (d->offset == offsetof(struct mig_params, max_iterations))
        return p->max_iterations;
    return *(const uint64_t *)((const char *)p + d->offset);
}

static void param_set(struct mig_params *p, const struct param_desc *d, uint64_t v)
{
    if (d->offset == offsetof(struct mig_params, max_iterations))
        p->max_iterations = (uint32_t)v;
    else
        *(uint64_t *)((char *)p + d->offset) = v;
}

static int cmd_set_parameters(void *opaque, struct json_object *args, struct json_object **ret,
                              char *err, size_t errlen)
{
    struct mig_qmp *q = opaque;
    struct mig_params np;
    const size_t n = sizeof(params) / sizeof(params[0]);

    pthread_mutex_lock(&q->m->lock);
    np = q->m->params;
    pthread_mutex_unlock(&q->m->lock);
    /* Check everything first: a bad member changes nothing. */
    json_object_object_foreach(args, key, val)
    {
        size_t i;
        int64_t v;
        if (!strcmp(key, "x-colo-mode")) {
            const char *mode =
                json_object_is_type(val, json_type_string) ? json_object_get_string(val) : "";
            for (i = 0; i < 2 && strcmp(colo_mode_names[i], mode); i++)
                ;
            if (i == 2) {
                snprintf(err, errlen, "Parameter 'x-colo-mode' expects 'periodic' or 'hybrid'");
                return -EINVAL;
            }
            np.colo_hybrid = i;
            continue;
        }
        for (i = 0; i < n && strcmp(params[i].name, key); i++)
            ;
        if (i == n) {
            snprintf(err, errlen, "Parameter '%s' is unexpected", key);
            return -EINVAL;
        }
        if (!json_object_is_type(val, json_type_int)) {
            snprintf(err, errlen, "Parameter '%s' expects an integer", key);
            return -EINVAL;
        }
        v = json_object_get_int64(val);
        if (v < 0 || (uint64_t)v < params[i].min || (uint64_t)v > params[i].max) {
            snprintf(err, errlen, "Parameter '%s' expects a value between %llu and %llu", key,
                     (unsigned long long)params[i].min, (unsigned long long)params[i].max);
            return -EINVAL;
        }
        param_set(&np, &params[i], (uint64_t)v);
    }
    if (np.heartbeat_interval_ms >= np.heartbeat_timeout_ms) {
        snprintf(err, errlen, "x-heartbeat-interval must be shorter than x-heartbeat-timeout");
        return -EINVAL;
    }
    pthread_mutex_lock(&q->m->lock);
    q->m->params = np;
    pthread_mutex_unlock(&q->m->lock);
    if (json_object_object_get_ex(args, "x-checkpoint-delay", NULL) && q->m->params_changed)
        q->m->params_changed(q->m); /* QEMU: a new delay checkpoints at once */
    return 0;
}

static int cmd_query_parameters(void *opaque, struct json_object *args, struct json_object **ret,
                                char *err, size_t errlen)
{
    struct mig_qmp *q = opaque;
    struct json_object *o = json_object_new_object();
    struct mig_params p;

    pthread_mutex_lock(&q->m->lock);
    p = q->m->params;
    pthread_mutex_unlock(&q->m->lock);
    for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++)
        add_u64(o, params[i].name, param_get(&p, &params[i]));
    json_object_object_add(o, "x-colo-mode",
                           json_object_new_string(colo_mode_names[p.colo_hybrid ? 1 : 0]));
    *ret = o;
    return 0;
}

static int cmd_set_capabilities(void *opaque, struct json_object *args, struct json_object **ret,
                                char *err, size_t errlen)
{
    struct mig_qmp *q = opaque;
    struct json_object *list;
    struct mig_caps nc = q->m->caps;
    enum mig_status s = migration_get_status(q->m);

    /* A destination still waiting for its connection may change them (QEMU does too). */
    bool waiting = q->m->incoming && s == MIG_SETUP;
    if (!waiting && (s == MIG_SETUP || s == MIG_ACTIVE || s == MIG_DEVICE || s == MIG_COLO)) {
        snprintf(err, errlen, "There's a migration process in progress");
        return -EBUSY;
    }
    json_object_object_get_ex(args, "capabilities", &list);
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        struct json_object *c = json_object_array_get_idx(list, i), *name, *state;
        const char *cap;
        if (!json_object_is_type(c, json_type_object) ||
            !json_object_object_get_ex(c, "capability", &name) ||
            !json_object_is_type(name, json_type_string) ||
            !json_object_object_get_ex(c, "state", &state) ||
            !json_object_is_type(state, json_type_boolean)) {
            snprintf(err, errlen,
                     "Parameter 'capabilities' expects [{\"capability\": str, \"state\": bool}]");
            return -EINVAL;
        }
        cap = json_object_get_string(name);
        if (!strcmp(cap, "events")) {
            nc.events = json_object_get_boolean(state);
        } else if (!strcmp(cap, "x-colo")) {
            nc.x_colo = json_object_get_boolean(state);
        } else if (!strcmp(cap, "return-path")) {
            /* always on for sockets; accepted for QEMU scripts */
        } else {
            snprintf(err, errlen, "Capability '%s' is not supported", cap);
            return -EINVAL;
        }
    }
    q->m->caps = nc;
    return 0;
}

static struct json_object *cap(const char *name, bool on)
{
    struct json_object *o = json_object_new_object();

    json_object_object_add(o, "capability", json_object_new_string(name));
    json_object_object_add(o, "state", json_object_new_boolean(on));
    return o;
}

static int cmd_query_capabilities(void *opaque, struct json_object *args, struct json_object **ret,
                                  char *err, size_t errlen)
{
    struct mig_qmp *q = opaque;
    struct json_object *a = json_object_new_array();

    json_object_array_add(a, cap("events", q->m->caps.events));
    json_object_array_add(a, cap("return-path", true));
    /* Listed only where COLO is built in and supported (as QEMU's CONFIG_REPLICATION). */
    if (q->m->colo_supported)
        json_object_array_add(a, cap("x-colo", q->m->caps.x_colo));
    *ret = a;
    return 0;
}

static const struct qmp_arg migrate_args[] = {
    {"uri", json_type_string, false},    {"blk", json_type_boolean, true},
    {"inc", json_type_boolean, true},    {"detach", json_type_boolean, true},
    {"resume", json_type_boolean, true}, {NULL, 0, false},
};
static const struct qmp_arg uri_args[] = {{"uri", json_type_string, false}, {NULL, 0, false}};
static const struct qmp_arg caps_args[] = {{"capabilities", json_type_array, false},
                                           {NULL, 0, false}};

int qmp_register_migration_commands(struct qmp_server *s, struct migration *m)
{
    int r = 0;

    mig_qmp = (struct mig_qmp){s, m};
    m->notify = on_status;
    m->notify_opaque = &mig_qmp;
    r |= qmp_register(s, "migrate", cmd_migrate, &mig_qmp, migrate_args);
    r |= qmp_register(s, "migrate-incoming", cmd_migrate_incoming, &mig_qmp, uri_args);
    r |= qmp_register(s, "migrate_cancel", cmd_migrate_cancel, &mig_qmp, NULL);
    r |= qmp_register(s, "query-migrate", cmd_query_migrate, &mig_qmp, NULL);
    r |= qmp_register(s, "migrate-set-parameters", cmd_set_parameters, &mig_qmp, qmp_args_any);
    r |= qmp_register(s, "query-migrate-parameters", cmd_query_parameters, &mig_qmp, NULL);
    r |= qmp_register(s, "migrate-set-capabilities", cmd_set_capabilities, &mig_qmp, caps_args);
    r |= qmp_register(s, "query-migrate-capabilities", cmd_query_capabilities, &mig_qmp, NULL);
    return r ? -EINVAL : 0;
}
