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
    was = c->cluster && c->cv.up && c->cv.quorate;
    c->cluster = true;
    snprintf(c->cluster_last, sizeof(c->cluster_last), "%s", what);
    c->cv = *v;
    if (v->joined && v->npeers == 1) {
        c->partner_nodeid = v->peer_nodeid[0];
        c->partner_pid = v->peer_pid[0];
    }
    if (was && !(v->up && v->quorate)) {
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

/* c->lock held. Is our peer provably out of the game, with this partition quorate? Either its
 * node is not among votequorum's members of our quorate partition (the same notification says
 * both, so a stale "quorate" from before a split cannot pass), or its process left the group
 * (it died or stood down) while its node stayed with us. */
static bool partner_gone(const struct colo *c)
{
    const struct cluster_view *v = &c->cv;
    unsigned n = v->nodes < CLUSTER_MAX_NODES ? v->nodes : CLUSTER_MAX_NODES;
    bool node_with_us = false;

    if (!v->up || !v->quorate)
        return false;
    if (!c->partner_nodeid)
        return v->joined && v->npeers == 0; /* no peer ever seen in the group */
    for (unsigned i = 0; i < n; i++)
        node_with_us |= v->node_id[i] == c->partner_nodeid;
    if (!node_with_us)
        return true;
    if (v->gone_reason != CLUSTER_GONE_PROCESS || v->gone_nodeid != c->partner_nodeid ||
        v->gone_pid != c->partner_pid)
        return false;
    for (unsigned i = 0; i < v->npeers && i < CLUSTER_MAX_PEERS; i++)
        if (v->peer_nodeid[i] == c->partner_nodeid && v->peer_pid[i] == c->partner_pid)
            return false; /* back (a rejoin) */
    return true;
}

int colo_quorum_gate(struct colo *c)
{
    uint64_t due = now_ns() + COLO_CLUSTER_GRACE_MS * 1000000ULL;

    pthread_mutex_lock(&c->lock);
    for (;;) {
        if (partner_gone(c)) {
            colo_decide(c,
                        "the primary is lost, this partition is quorate and the primary "
                        "is out of it (node %u): taking over",
                        c->partner_nodeid);
            pthread_mutex_unlock(&c->lock);
            return 0;
        }
        if (now_ns() >= due)
            break;
        colo_cond_wait_until(c, due);
    }
    c->armed = false;
    if (c->cv.up && c->cv.quorate)
        colo_decide(c, "the primary is lost on the replication link but still in the cluster: "
                       "it runs on alone; disarmed (and out of the group, so it knows)");
    else
        colo_decide(c, "the primary is lost and this partition has no quorum (the other side "
                       "may have it and serve): disarmed");
    pthread_mutex_unlock(&c->lock);
    /* A disarmed standby is no candidate any more: leaving the group tells a primary that
     * holds its output waiting for us that it may go on. */
    cluster_leave_group();
    return -EPERM;
}

bool colo_quorum_gate_primary(struct colo *c)
{
    bool serve;

    pthread_mutex_lock(&c->lock);
    while (!partner_gone(c) && c->cv.up && c->cv.quorate)
        pthread_cond_wait(&c->cond, &c->lock);
    serve = partner_gone(c);
    colo_decide(c,
                serve ? "the secondary is lost and out of the game (node %u), this partition is "
                        "quorate: running on unprotected"
                      : "the secondary is lost and this partition has no quorum (node %u may "
                        "serve on the other side): pausing",
                c->partner_nodeid);
    pthread_mutex_unlock(&c->lock);
    return serve;
}
