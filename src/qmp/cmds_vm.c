/* cmds_vm.c: run-state commands (stop, cont, system_reset, quit, query-status) and VM events. */
#include "qmp/cmds_vm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/vm.h"
#include "qmp/server.h"

struct vm_qmp {
    struct qmp_server *s;
    struct vm *vm;
};

static struct vm_qmp *vm_qmp_new(struct qmp_server *s, struct vm *vm, void (*release)(void *))
{
    struct vm_qmp *q = calloc(1, sizeof(*q));

    if (!q)
        return NULL;
    q->s = s;
    q->vm = vm;
    if (qmp_server_on_free(s, release, q) < 0)
        return NULL; /* released already */
    return q;
}

static int add_bool(struct json_object *o, const char *key, bool v)
{
    return json_object_object_add(o, key, json_object_new_boolean(v));
}

static int cmd_query_status(void *opaque, struct json_object *args, struct json_object **ret,
                            char *err, size_t errlen)
{
    struct vm_qmp *q = opaque;
    enum vm_runstate st = vm_get_state(q->vm);
    struct json_object *o = json_object_new_object();
    struct json_object *name = json_object_new_string(vm_runstate_name(st));

    if (!o || !name || json_object_object_add(o, "status", name) < 0) {
        json_object_put(name);
        json_object_put(o);
        return -ENOMEM;
    }
    if (add_bool(o, "singlestep", false) < 0 || add_bool(o, "running", st == VM_RUNNING) < 0) {
        json_object_put(o);
        return -ENOMEM;
    }
    *ret = o;
    return 0;
}

/* QEMU: stopping a VM that is not running is a successful no-op. */
static int cmd_stop(void *opaque, struct json_object *args, struct json_object **ret, char *err,
                    size_t errlen)
{
    struct vm_qmp *q = opaque;
    int rc = vm_stop(q->vm);

    if (rc < 0)
        snprintf(err, errlen, "Cannot stop the VM: %s", strerror(-rc));
    return rc;
}

/* QEMU: continuing a running VM is a successful no-op. */
static int cmd_cont(void *opaque, struct json_object *args, struct json_object **ret, char *err,
                    size_t errlen)
{
    struct vm_qmp *q = opaque;
    int rc;

    if (vm_get_state(q->vm) == VM_RUNNING)
        return 0;
    rc = vm_cont(q->vm);
    if (rc == -EINVAL) /* shutdown or internal-error: QEMU's words */
        snprintf(err, errlen, "Resetting the Virtual Machine is required");
    else if (rc == -EBUSY)
        snprintf(err, errlen, "The VM cannot continue before the incoming migration ends");
    else if (rc == -EPERM)
        snprintf(err, errlen,
                 "The VM is a COLO secondary: it runs only when it takes over "
                 "(x-colo-lost-heartbeat); running it now would make it diverge");
    else if (rc < 0)
        snprintf(err, errlen, "Cannot continue the VM: %s", strerror(-rc));
    return rc;
}

static void emit_host_reset(struct vm_qmp *q)
{
    struct json_object *data = json_object_new_object();

    if (data) {
        add_bool(data, "guest", false);
        json_object_object_add(data, "reason", json_object_new_string("host-qmp-system-reset"));
    }
    qmp_emit_event(q->s, "RESET", data);
}

/* As QEMU 7.2: the reset is done and RESET sent before the reply. */
static int cmd_system_reset(void *opaque, struct json_object *args, struct json_object **ret,
                            char *err, size_t errlen)
{
    struct vm_qmp *q = opaque;
    int rc = vm_system_reset(q->vm);

    if (rc == -EPERM) {
        snprintf(err, errlen,
                 "The VM is a COLO secondary: its state is the primary's; a "
                 "reset would make it diverge");
        return rc;
    }
    if (rc < 0) {
        snprintf(err, errlen, "System reset failed: %s", strerror(-rc));
        return rc;
    }
    emit_host_reset(q);
    return 0;
}

static void quit_now(void *arg)
{
    struct vm_qmp *q = arg;

    vm_request_exit(q->vm, 0, "host-qmp-quit");
}

/* Reply first: the exit is requested only once {"return": {}} has left the socket. */
static int cmd_quit(void *opaque, struct json_object *args, struct json_object **ret, char *err,
                    size_t errlen)
{
    struct vm_qmp *q = opaque;

    if (qmp_defer(q->s, quit_now, q) < 0)
        quit_now(q);
    return 0;
}

static int cmd_query_version(void *opaque, struct json_object *args, struct json_object **ret,
                             char *err, size_t errlen)
{
    *ret = qmp_version_info();
    return *ret ? 0 : -ENOMEM;
}

static const struct {
    const char *name;
    qmp_cmd_fn fn;
} vm_commands[] = {
    {"query-status", cmd_query_status}, {"stop", cmd_stop}, {"cont", cmd_cont},
    {"system_reset", cmd_system_reset}, {"quit", cmd_quit}, {"query-version", cmd_query_version},
};

int qmp_register_vm_commands(struct qmp_server *s, struct vm *vm)
{
    struct vm_qmp *q = vm_qmp_new(s, vm, free);

    if (!q)
        return -ENOMEM;
    for (size_t i = 0; i < sizeof(vm_commands) / sizeof(vm_commands[0]); i++) {
        int rc = qmp_register(s, vm_commands[i].name, vm_commands[i].fn, q, NULL);
        if (rc < 0) {
            log_err("qmp: cannot register %s: %s", vm_commands[i].name, strerror(-rc));
            return rc; /* q is freed with the server */
        }
    }
    return 0;
}

/* ---- events ---- */

static void on_state_changed(void *opaque, enum vm_runstate old, enum vm_runstate now)
{
    struct vm_qmp *q = opaque;

    if (now == VM_RUNNING && old != VM_RUNNING)
        qmp_emit_event(q->s, "RESUME", NULL);
    else if (old == VM_RUNNING && now != VM_RUNNING)
        qmp_emit_event(q->s, "STOP", NULL);
}

static void on_guest_reset(void *opaque)
{
    struct vm_qmp *q = opaque;
    struct json_object *data = json_object_new_object();

    if (data) {
        add_bool(data, "guest", true);
        json_object_object_add(data, "reason", json_object_new_string("guest-reset"));
    }
    qmp_emit_event(q->s, "RESET", data);
}

/* QEMU's ShutdownCause names: "guest-*" come from the guest, "host-*" from us. */
static void on_shutdown(void *opaque, const char *reason)
{
    struct vm_qmp *q = opaque;
    struct json_object *data = json_object_new_object();

    if (!reason)
        reason = "host-error";
    if (data) {
        add_bool(data, "guest", strncmp(reason, "guest-", 6) == 0);
        json_object_object_add(data, "reason", json_object_new_string(reason));
    }
    qmp_emit_event(q->s, "SHUTDOWN", data);
}

/* Runs in qmp_server_free: the VM may outlive the server; its hooks must not. */
static void detach_events(void *arg)
{
    struct vm_qmp *q = arg;

    if (q->vm->hooks.opaque == q)
        memset(&q->vm->hooks, 0, sizeof(q->vm->hooks));
    free(q);
}

void qmp_attach_vm_events(struct qmp_server *s, struct vm *vm)
{
    struct vm_qmp *q = vm_qmp_new(s, vm, detach_events);

    if (!q) {
        log_err("qmp: out of memory; VM events will not be reported");
        return;
    }
    vm->hooks = (struct vm_hooks){
        .opaque = q,
        .state_changed = on_state_changed,
        .guest_reset = on_guest_reset,
        .shutdown = on_shutdown,
    };
}
