/* cmds_net.c: announce-self: QEMU's AnnounceParameters, each missing number taking QEMU's
 * default; interfaces name NICs by their tap. */
#include "qmp/cmds_net.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "net/announce.h"
#include "net/virtio_net.h"
#include "qmp/server.h"
#include "virtio/virtio_mmio.h"

/* One number of AnnounceParameters: absent keeps *v; else it must lie in [0, max]. */
static int get_num(struct json_object *args, const char *name, uint64_t max, uint64_t *v, char *err,
                   size_t errlen)
{
    struct json_object *o;
    int64_t x;

    if (!json_object_object_get_ex(args, name, &o))
        return 0;
    x = json_object_get_int64(o); /* the type was checked against announce_args */
    if (x < 0 || (uint64_t)x > max) {
        snprintf(err, errlen, "Parameter '%s' expects a value between 0 and %llu", name,
                 (unsigned long long)max);
        return -EINVAL;
    }
    *v = (uint64_t)x;
    return 0;
}

/* interfaces: the tap names of the NICs to announce; one that names no NIC is an error. */
static int get_nics(struct vm *vm, struct json_object *args, uint32_t *nics, char *err,
                    size_t errlen)
{
    struct json_object *list;

    if (!json_object_object_get_ex(args, "interfaces", &list))
        return 0;
    *nics = 0;
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        struct json_object *e = json_object_array_get_idx(list, i);
        const char *name;
        uint32_t k;

        if (!json_object_is_type(e, json_type_string)) {
            snprintf(err, errlen, "Parameter 'interfaces' expects an array of strings");
            return -EINVAL;
        }
        name = json_object_get_string(e);
        for (k = 0; k < VIRTIO_MMIO_SLOTS; k++) {
            struct virtio_net *n = virtio_net_find(vm, k);
            if (!n) {
                k = VIRTIO_MMIO_SLOTS;
                break;
            }
            if (!strcmp(n->tap.ifname, name))
                break;
        }
        if (k == VIRTIO_MMIO_SLOTS) {
            snprintf(err, errlen, "No NIC on an interface named '%s'", name);
            return -ENODEV;
        }
        *nics |= 1u << k;
    }
    return 0;
}

static int cmd_announce_self(void *opaque, struct json_object *args, struct json_object **ret,
                             char *err, size_t errlen)
{
    struct vm *vm = opaque;
    struct net_announce_params p;
    struct json_object *id;
    uint64_t rounds;
    int r;

    net_announce_defaults(&p);
    rounds = p.rounds;
    p.id = ""; /* QEMU: every unnamed announce-self is the same one */
    if (json_object_object_get_ex(args, "id", &id))
        p.id = json_object_get_string(id);
    r = get_num(args, "initial", NET_ANNOUNCE_MS_LIMIT, &p.initial_ms, err, errlen);
    if (!r)
        r = get_num(args, "max", NET_ANNOUNCE_MS_LIMIT, &p.max_ms, err, errlen);
    if (!r)
        r = get_num(args, "rounds", NET_ANNOUNCE_ROUNDS_LIMIT, &rounds, err, errlen);
    if (!r)
        r = get_num(args, "step", NET_ANNOUNCE_STEP_LIMIT, &p.step_ms, err, errlen);
    if (!r)
        r = get_nics(vm, args, &p.nics, err, errlen);
    if (r)
        return r;
    p.rounds = (uint32_t)rounds;
    r = net_announce_start(vm, &p);
    if (r)
        snprintf(err, errlen, "Cannot announce: %s", strerror(-r));
    return r;
}

static const struct qmp_arg announce_args[] = {
    {"initial", json_type_int, true},
    {"max", json_type_int, true},
    {"rounds", json_type_int, true},
    {"step", json_type_int, true},
    {"interfaces", json_type_array, true},
    {"id", json_type_string, true},
    {NULL, 0, false},
};

int qmp_register_net_commands(struct qmp_server *s, struct vm *vm)
{
    return qmp_register(s, "announce-self", cmd_announce_self, vm, announce_args);
}
