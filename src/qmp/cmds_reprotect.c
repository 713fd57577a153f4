/* cmds_reprotect.c: x-colo-reprotect: start a new COLO session as primary toward a new secondary.
 */
#include "qmp/cmds_reprotect.h"

#include <json-c/json.h>

#include "colo/reprotect.h"
#include "qmp/server.h"

static int cmd_reprotect(void *opaque, struct json_object *args, struct json_object **ret,
                         char *err, size_t errlen)
{
    struct json_object *uri;

    json_object_object_get_ex(args, "uri", &uri); /* required and a string: checked */
    return colo_reprotect_start(opaque, json_object_get_string(uri), -1, err, errlen);
}

static const struct qmp_arg reprotect_args[] = {{"uri", json_type_string, false}, {NULL, 0, false}};

int qmp_register_reprotect_commands(struct qmp_server *s, struct migration *m)
{
    return qmp_register(s, "x-colo-reprotect", cmd_reprotect, m, reprotect_args);
}
