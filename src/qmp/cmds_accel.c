/* cmds_accel.c: query-kvm answers {enabled, present} as QEMU does; query-accel names the engine
 * ("kvm" or "emu") and whether guest time follows the instruction count. */
#include "qmp/cmds_accel.h"

#include <errno.h>
#include <json-c/json.h>
#include <string.h>

#include "accel/accel.h"
#include "core/vm.h"
#include "qmp/server.h"

static int cmd_query_kvm(void *opaque, struct json_object *args, struct json_object **ret,
                         char *err, size_t errlen)
{
    struct vm *vm = opaque;
    struct json_object *o = json_object_new_object();

    if (!o)
        return -ENOMEM;
    json_object_object_add(o, "enabled", json_object_new_boolean(vm->accel == &accel_kvm_ops));
    json_object_object_add(o, "present", json_object_new_boolean(accel_kvm_present()));
    *ret = o;
    return 0;
}

static int cmd_query_accel(void *opaque, struct json_object *args, struct json_object **ret,
                           char *err, size_t errlen)
{
    struct vm *vm = opaque;
    struct json_object *o = json_object_new_object();

    if (!o)
        return -ENOMEM;
    json_object_object_add(o, "name", json_object_new_string(vm->accel ? vm->accel->name : "none"));
    json_object_object_add(o, "icount", json_object_new_boolean(vm->accel_cfg.icount));
    *ret = o;
    return 0;
}

int qmp_register_accel_commands(struct qmp_server *s, struct vm *vm)
{
    int r = qmp_register(s, "query-kvm", cmd_query_kvm, vm, NULL);

    return r ? r : qmp_register(s, "query-accel", cmd_query_accel, vm, NULL);
}
