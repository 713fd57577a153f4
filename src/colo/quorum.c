/* quorum.c: the failover policy's cluster gate (--cluster corosync): quorum and the VM's CPG
 * group decide which side of the pair may serve (docs/colo.md, "Cluster mode"). */
#include <errno.h>
#include <stdio.h>

#include "cluster/cluster.h"
#include "colo/colo_int.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/vm.h"
#include "migration/migrate.h"

/* A VM running on its own (no COLO session) that lost quorum: the other partition may run it
 * now. Paused on the main loop, and out of the group, so a survivor there may take over. */
static void fence_alone_cb(void *opaque)
{
    struct colo *c = opaque;

    if (vm_get_state(c->vm) != VM_RUNNING)
        return;
    vm_pause(c->vm);
    vm_hold_stopped(c->vm, VM_PAUSED);
    cluster_leave_group();
    pthread_mutex_lock(&c->lock);
    c->fenced = true;
    colo_decide(c, "quorum lost while running unprotected: the guest is paused (the quorate "
                   "partition may run it); `cont` overrides");
    pthread_mutex_unlock(&c->lock);
}

void colo_cluster_event(void *opaque, const struct cluster_view *v, const char *what)
{
    struct colo *c = &colo_state;
    bool was, alone_lost = false;

    (void)opaque;
    colo_cond_init();
    pthread_mutex_lock(&c->lock);
    was = c->cluster && c->quorate;
    c->cluster = true;
    c->quorate = v->up && v->quorate;
    c->cluster_nodes = v->nodes;
    c->cluster_npeers = v->npeers;
    c->cluster_joined = v->joined; /* npeers is known only once the join is confirmed */
    c->cluster_nodeid = v->nodeid;
    snprintf(c->cluster_last, sizeof(c->cluster_last), "%s", what);
    if (was && !c->quorate) {
        if (c->mode == COLO_MODE_PRIMARY && !c->quorum_lost) {
            /* Stop releasing at once; the COLO thread leaves COLO and pauses the guest. */
            c->quorum_lost = true;
            colo_decide(c,
                        "quorum lost (%s): releasing nothing more, leaving COLO and "
                        "pausing the guest: the secondary may be serving",
                        what);
        } else if (c->mode == COLO_MODE_NONE && c->vm && !c->fenced) {
            alone_lost = true;
        }
    }
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    log_info("colo: cluster: %s (%s, %u nodes, %u other group members)", what,
             v->up ? (v->quorate ? "quorate" : "inquorate") : "no corosync", v->nodes, v->npeers);
    if (alone_lost && c->m && c->m->loop)
        loop_call(c->m->loop, fence_alone_cb, c);
}

int colo_quorum_gate(struct colo *c)
{
    uint64_t due = now_ns() + COLO_CLUSTER_GRACE_MS * 1000000ULL;

    pthread_mutex_lock(&c->lock);
    for (;;) {
        if (c->quorate && c->cluster_joined && c->cluster_npeers == 0) {
            colo_decide(c, "the primary is lost, this partition is quorate and the primary "
                           "has left the group: taking over");
            pthread_mutex_unlock(&c->lock);
            return 0;
        }
        if (now_ns() >= due)
            break;
        colo_cond_wait_until(c, due);
    }
    c->armed = false;
    if (c->quorate)
        colo_decide(c, "the primary is lost on the replication link but still in the cluster "
                       "group: it runs on alone; disarmed");
    else
        colo_decide(c, "the primary is lost and this partition has no quorum (the other side "
                       "may have it and serve): disarmed");
    pthread_mutex_unlock(&c->lock);
    return -EPERM;
}
