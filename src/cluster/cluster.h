/* cluster.h: tandem's Corosync client: the CPG group of this VM's tandem processes and
 * votequorum's verdict on our partition, reported to one callback on every change.
 *
 * One client per process. cluster_start connects (or fails: corosync not running, no
 * votequorum provider) and starts the cluster thread; from then on the thread owns the
 * connection: it dispatches corosync's callbacks, and after every round that changed anything
 * publishes a new view (seq + 1) and calls fn once with it. When the connection breaks (corosync
 * died or restarted) the view says up=false, quorate=false, and the thread reconnects every
 * second, rejoining the group unless cluster_leave_group asked otherwise.
 *
 * Reading a view: up=false means nothing else is known (treat it as inquorate and alone).
 * joined=false means the group's membership is not known yet (our join is not confirmed, or we
 * left): npeers=0 then says nothing about the other members.
 *
 * Members are told apart by (corosync node id, pid as corosync sees it): tandem and corosync
 * must share a pid namespace, or we cannot find ourselves in the group (a warning says so).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLUSTER_MAX_PEERS     8
#define CLUSTER_MAX_NODES     32
#define CLUSTER_GROUP_MAX     128 /* CPG_MAX_NAME_LENGTH, with the NUL */
#define CLUSTER_DEFAULT_GROUP "tandem"

struct cluster_view {
    bool up;         /* connected to corosync (else nothing below is known: treat as inquorate) */
    bool quorate;    /* votequorum: our partition has quorum */
    bool joined;     /* our CPG join is confirmed: npeers and peer_* are known */
    uint32_t nodeid; /* our corosync node id */
    unsigned nodes;  /* nodes in our partition (votequorum's members) */
    unsigned npeers; /* OTHER members of our CPG group (tandem processes of this VM), on any
                      * node of our partition; at most CLUSTER_MAX_PEERS (more are logged) */
    uint32_t peer_nodeid[CLUSTER_MAX_PEERS], peer_pid[CLUSTER_MAX_PEERS];
    /* votequorum's member nodes of our partition, from the same notification as quorate: a
     * node's absence here (with quorate) is evidence that it is in another partition. */
    uint32_t node_id[CLUSTER_MAX_NODES];
    /* The last other member that left the group and why: a process that stopped (left or
     * died) while its node stayed, or a node that went (CLUSTER_GONE_*). */
    uint32_t gone_nodeid, gone_pid, gone_reason;
    uint64_t seq; /* +1 on every change (every call of the callback) */
};

enum { CLUSTER_GONE_NONE = 0, CLUSTER_GONE_PROCESS, CLUSTER_GONE_NODE };

/* Called on the cluster thread, never with a lock of ours held (it may call cluster_get,
 * cluster_leave_group, cluster_rejoin_group). what: the change in words, for the log ("quorum
 * lost", "peer 2/1234 left the group (process down)"; several joined by "; "). */
typedef void (*cluster_fn)(void *opaque, const struct cluster_view *v, const char *what);

/* `--cluster corosync[,group=NAME]`: the group's name into group[CLUSTER_GROUP_MAX]
 * (default "tandem"). 0, or -EINVAL with the reason in err. */
int cluster_parse(const char *spec, char *group, char *err, size_t errlen);

/* Connect to corosync (CPG with totem membership, votequorum tracking changes), join group and
 * start the cluster thread; its first report is the view at connection. 0, or a negative errno
 * with the reason in err (-ECONNREFUSED: corosync is not running; -EALREADY: started). */
int cluster_start(const char *group, cluster_fn fn, void *opaque, char *err, size_t errlen);
/* The last view reported (all zero before cluster_start). Any thread. */
void cluster_get(struct cluster_view *v);
/* Leave the group (a fenced primary stops counting as a member) / join it again. Done by the
 * cluster thread and waited for (up to 5 s: -ETIMEDOUT, the request still stands); 0 once
 * corosync took it, or will be asked again (it says TRY_AGAIN while it synchronises): the view
 * tells when it is done (a leave shows at once: joined=false). While disconnected the wish is
 * recorded and kept across reconnections. -ENOTCONN: not started; -EIO: corosync refused. */
int cluster_leave_group(void);
int cluster_rejoin_group(void);
/* Leave, disconnect, join the thread; the callback is not called once this has begun (one
 * that is running is waited for). Idempotent; cluster_start may follow. */
void cluster_stop(void);
