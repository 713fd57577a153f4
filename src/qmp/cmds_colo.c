/* cmds_colo.c: COLO status (QEMU's shape plus a stats object), failover and checkpoint requests. */
#include "qmp/cmds_colo.h"

#include <errno.h>
#include <stdio.h>

#include "colo/colo.h"
#include "colo/hybrid.h"
#include "qmp/server.h"

static struct qmp_server *colo_qmp;

static void on_exit_event(void *opaque, enum colo_mode mode, enum colo_reason reason)
{
    struct json_object *data = json_object_new_object();

    json_object_object_add(data, "mode", json_object_new_string(colo_mode_name(mode)));
    json_object_object_add(data, "reason", json_object_new_string(colo_reason_name(reason)));
    qmp_emit_event(colo_qmp, "COLO_EXIT", data);
}

static struct json_object *ms(uint64_t us)
{
    return json_object_new_double((double)us / 1000.0);
}

static int cmd_query_colo_status(void *opaque, struct json_object *args, struct json_object **ret,
                                 char *err, size_t errlen)
{
    enum colo_mode mode, last;
    enum colo_reason reason;
    struct colo_stats st;
    uint64_t p99, mean;
    struct json_object *o = json_object_new_object(), *s = json_object_new_object();
    struct json_object *pause = json_object_new_object();
    struct colo_policy_state ps;
    struct hybrid_stats hs;
    struct json_object *by;

    colo_query(&mode, &last, &reason, &st, &p99, &mean);
    json_object_object_add(o, "mode", json_object_new_string(colo_mode_name(mode)));
    json_object_object_add(o, "last-mode", json_object_new_string(colo_mode_name(last)));
    json_object_object_add(o, "reason", json_object_new_string(colo_reason_name(reason)));
    json_object_object_add(s, "checkpoints", json_object_new_uint64(st.checkpoints));
    json_object_object_add(pause, "last", ms(st.pause_us_last));
    json_object_object_add(pause, "mean", ms(mean));
    json_object_object_add(pause, "p99", ms(p99));
    json_object_object_add(s, "pause-ms", pause);
    json_object_object_add(s, "last-dirty-pages", json_object_new_uint64(st.last_dirty_pages));
    json_object_object_add(s, "last-bytes", json_object_new_uint64(st.last_bytes));
    json_object_object_add(s, "total-bytes", json_object_new_uint64(st.total_bytes));
    json_object_object_add(s, "errors", json_object_new_uint64(st.errors));
    if (st.last_failover_unix_ms) {
        json_object_object_add(s, "last-failover-unix-ms",
                               json_object_new_uint64(st.last_failover_unix_ms));
        json_object_object_add(s, "last-failover-ms", json_object_new_uint64(st.last_failover_ms));
    } else {
        json_object_object_add(s, "last-failover-unix-ms", NULL);
    }
    json_object_object_add(s, "discarded-frames", json_object_new_uint64(st.discarded_frames));
    by = json_object_new_object();
    for (unsigned i = 0; i < COLO_CKPT__MAX; i++)
        json_object_object_add(by, colo_ckpt_cause_name(i), json_object_new_uint64(st.by_cause[i]));
    json_object_object_add(s, "checkpoints-by-cause", by);
    hybrid_query(&hs);
    if (hs.active || hs.compared || hs.mirrored) {
        struct json_object *h = json_object_new_object(), *hold = json_object_new_object();
        json_object_object_add(h, "compared", json_object_new_uint64(hs.compared));
        json_object_object_add(h, "matched", json_object_new_uint64(hs.matched));
        json_object_object_add(h, "released", json_object_new_uint64(hs.released));
        json_object_object_add(h, "mismatches", json_object_new_uint64(hs.mismatches));
        json_object_object_add(h, "timeouts", json_object_new_uint64(hs.timeouts));
        json_object_object_add(h, "overflows", json_object_new_uint64(hs.overflows));
        json_object_object_add(h, "svm-dropped", json_object_new_uint64(hs.svm_dropped));
        json_object_object_add(h, "mirrored", json_object_new_uint64(hs.mirrored));
        json_object_object_add(h, "mirror-drops", json_object_new_uint64(hs.mirror_drops));
        json_object_object_add(h, "rewritten-in", json_object_new_uint64(hs.rewritten_in));
        json_object_object_add(h, "rewritten-out", json_object_new_uint64(hs.rewritten_out));
        json_object_object_add(h, "rewrite-connections", json_object_new_uint64(hs.rewrite_conns));
        json_object_object_add(hold, "count", json_object_new_uint64(hs.hold_count));
        json_object_object_add(hold, "mean", ms(hs.hold_mean_us));
        json_object_object_add(hold, "p99", ms(hs.hold_p99_us));
        json_object_object_add(h, "hold-ms", hold);
        json_object_object_add(s, "hybrid", h);
    }
    json_object_object_add(o, "stats", s);
    colo_query_policy(&ps);
    json_object_object_add(o, "armed", json_object_new_boolean(ps.armed));
    json_object_object_add(o, "unusable", json_object_new_boolean(ps.unusable));
    json_object_object_add(o, "fenced", json_object_new_boolean(ps.fenced));
    json_object_object_add(o, "last-good-checkpoint", json_object_new_uint64(ps.last_good));
    json_object_object_add(o, "last-decision",
                           ps.decision[0] ? json_object_new_string(ps.decision) : NULL);
    if (ps.cluster) {
        struct json_object *cl = json_object_new_object();
        json_object_object_add(cl, "quorate", json_object_new_boolean(ps.cv.up && ps.cv.quorate));
        json_object_object_add(cl, "nodeid", json_object_new_uint64(ps.cv.nodeid));
        json_object_object_add(cl, "nodes", json_object_new_uint64(ps.cv.nodes));
        /* tandem processes of this VM in our partition's group (us included; 0: not joined) */
        json_object_object_add(cl, "members",
                               json_object_new_uint64(ps.cv.joined ? ps.cv.npeers + 1 : 0));
        json_object_object_add(cl, "last-change", json_object_new_string(ps.cluster_last));
        json_object_object_add(o, "cluster", cl);
    }
    *ret = o;
    return 0;
}

static int cmd_lost_heartbeat(void *opaque, struct json_object *args, struct json_object **ret,
                              char *err, size_t errlen)
{
    struct json_object *f = NULL;
    bool force = args && json_object_object_get_ex(args, "force", &f) &&
                 json_object_get_boolean(f); /* the type was checked against lost_hb_args */

    return colo_request_failover(COLO_REASON_REQUEST, force, err, errlen);
}

static int cmd_colo_checkpoint(void *opaque, struct json_object *args, struct json_object **ret,
                               char *err, size_t errlen)
{
    enum colo_mode mode, last;
    enum colo_reason reason;
    struct colo_stats st;
    uint64_t p99, mean;

    colo_query(&mode, &last, &reason, &st, &p99, &mean);
    if (mode != COLO_MODE_PRIMARY) {
        snprintf(err, errlen, "x-colo-checkpoint is only valid on a COLO primary");
        return -EINVAL;
    }
    colo_request_checkpoint();
    return 0;
}

/* tandem: force takes over from a disarmed standby (docs/colo.md, "Failover policy"). */
static const struct qmp_arg lost_hb_args[] = {{"force", json_type_boolean, true}, {NULL, 0, false}};

int qmp_register_colo_commands(struct qmp_server *s)
{
    int r = 0;

    colo_qmp = s;
    colo_state.exit_event = on_exit_event;
    colo_state.event_opaque = s;
    r |= qmp_register(s, "query-colo-status", cmd_query_colo_status, NULL, NULL);
    r |= qmp_register(s, "x-colo-lost-heartbeat", cmd_lost_heartbeat, NULL, lost_hb_args);
    r |= qmp_register(s, "x-colo-checkpoint", cmd_colo_checkpoint, NULL, NULL);
    return r ? -EINVAL : 0;
}
