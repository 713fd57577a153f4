/* colo.h: COLO periodic mode: the checkpoint loop on both sides, output commit, failover, state.
 *
 * One struct colo per process (colo_state). The migration threads enter it: the outgoing one
 * after the initial precopy was loaded (primary), the incoming one after the initial state was
 * applied (secondary). QMP reads it (query-colo-status) and pokes it (x-colo-lost-heartbeat,
 * x-colo-checkpoint) from the main loop.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cluster/cluster.h"
#include "colo/cache.h"
#include "colo/heartbeat.h"
#include "colo/outbuf.h"
#include "virtio/virtio_mmio.h"

struct migration;
struct stream_writer;
struct stream_reader;
struct stream_loader;
struct devstate;
struct vm;
struct serial_state;

enum colo_mode { COLO_MODE_NONE = 0, COLO_MODE_PRIMARY, COLO_MODE_SECONDARY };
/* QAPI COLOExitReason */
enum colo_reason {
    COLO_REASON_NONE = 0,
    COLO_REASON_REQUEST,
    COLO_REASON_ERROR,
    COLO_REASON_PROCESSING
};

const char *colo_mode_name(enum colo_mode m);
const char *colo_reason_name(enum colo_reason r);

/* Why a checkpoint was taken (query-colo-status stats "checkpoints-by-cause"). */
enum colo_ckpt_cause {
    COLO_CKPT_PERIODIC = 0, /* x-checkpoint-delay passed */
    COLO_CKPT_MISMATCH,     /* hybrid: the two VMs' output differs */
    COLO_CKPT_TIMEOUT,      /* hybrid: output unmatched for x-compare-timeout */
    COLO_CKPT_QUEUE_FULL,   /* a bounded queue (compare, mirror, output or disk log) filled */
    COLO_CKPT_REQUEST,      /* x-colo-checkpoint, a new x-checkpoint-delay */
    COLO_CKPT__MAX
};
const char *colo_ckpt_cause_name(enum colo_ckpt_cause c);

#define COLO_PAUSE_SAMPLES 4096
/* Every device slot may hold a NIC (run.c allows VIRTIO_MMIO_SLOTS --disk and --net in all), and
 * every NIC's output must wait for its checkpoint: one output buffer per slot. */
#define COLO_MAX_NICS VIRTIO_MMIO_SLOTS

struct colo_stats {
    uint64_t checkpoints;
    uint64_t pause_us_last;
    uint64_t pause_us_sum;
    uint32_t pause_us[COLO_PAUSE_SAMPLES]; /* ring of recent pauses, for p99 */
    uint64_t last_dirty_pages;
    uint64_t last_bytes;
    uint64_t total_bytes;
    uint64_t last_failover_unix_ms; /* wall clock of the last failover, 0 = none */
    uint64_t last_failover_ms;      /* loss detected -> guest running again */
    uint64_t errors;
    uint64_t discarded_frames; /* primary: held output dropped because the secondary lacked it */
    uint64_t by_cause[COLO_CKPT__MAX]; /* primary: checkpoints taken, by cause */
};

struct colo {
    struct migration *m;
    struct vm *vm;
    pthread_mutex_t lock; /* everything below */
    pthread_cond_t cond;  /* timed waits on CLOCK_MONOTONIC (colo_cond_wait_until) */
    enum colo_mode mode, last_mode;
    enum colo_reason reason;
    bool hybrid;                 /* this session's x-colo-mode (from the stream, handover.c) */
    uint32_t compare_timeout_ms; /* this session's x-compare-timeout */
    bool checkpoint_requested;
    enum colo_ckpt_cause requested_cause; /* the first cause since the last checkpoint */
    bool leave_requested;                 /* primary: colo_request_leave */
    char leave_why[128];
    bool failover_requested;
    enum colo_reason failover_reason;
    bool applying; /* secondary: a checkpoint is being applied */
    int fd;        /* the stream, -1 when none */
    struct heartbeat hb;
    struct colo_stats stats;
    struct colo_outbuf outbuf[COLO_MAX_NICS]; /* one per NIC, by instance */
    unsigned nouts;
    struct serial_state *console; /* held console output (primary) */
    struct colo_outbuf console_out;
    /* Run (sh -c, TANDEM_COLO_ROLE=primary|secondary in its environment) and must succeed
     * before a secondary takes over, or before a primary that lost its secondary goes on. */
    const char *fence_cmd;
    /* The failover policy's state (docs/colo.md, "Failover policy"). */
    bool armed;           /* secondary: takes over by itself when the primary is lost */
    bool unusable;        /* secondary: a checkpoint was applied only in part: never takes over */
    bool force;           /* the pending failover was forced by an operator */
    bool peer_left;       /* the peer said it left COLO (heartbeat LEFT) */
    bool peer_took_over;  /* primary: the secondary said it took over */
    bool hb_ended;        /* the heartbeat thread reported its last event */
    bool fenced;          /* primary: paused for good, its partner may serve */
    uint64_t last_good;   /* secondary: the last checkpoint applied whole */
    char decision[224];   /* the last failover decision and why (query-colo-status) */
    struct hb_params hbp; /* this session's heartbeat settings and token, from the stream */
    /* Cluster mode (--cluster corosync, quorum.c): the latest view. */
    bool cluster, quorum_lost;
    char cluster_last[96];
    struct cluster_view cv;               /* the latest view, whole */
    uint32_t partner_nodeid, partner_pid; /* the other member of the group: our peer */
    /* Main-loop notification: COLO_EXIT. */
    void (*exit_event)(void *opaque, enum colo_mode mode, enum colo_reason reason);
    void *event_opaque;
    uint64_t failover_started_ns;
};

extern struct colo colo_state;

void colo_init(struct migration *m, struct vm *vm);

int colo_primary_run(struct migration *m, int fd, struct stream_writer *sw,
                     struct stream_reader *rp, struct devstate *ds, unsigned long *dirty);
int colo_secondary_run(struct migration *m, int fd, struct stream_reader *sr,
                       struct stream_loader *ld, struct devstate *ds);

/* QMP x-colo-lost-heartbeat (reason request; force takes over from a disarmed standby) and the
 * heartbeat (reason error). */
int colo_request_failover(enum colo_reason why, bool force, char *err, size_t errlen);
/* QMP x-colo-checkpoint, or a new x-checkpoint-delay (cause: request). */
void colo_request_checkpoint(void);
/* A checkpoint now, for this cause (any thread; the first cause since the last one counts). */
void colo_request_checkpoint_for(enum colo_ckpt_cause why);
/* Wake the COLO thread to look at its deadlines again (any thread). */
void colo_kick(void);
/* Primary: replication cannot go on (the disk log cannot take a write): leave COLO at the next
 * step, telling the secondary to disarm, before another checkpoint is sent. Any thread. */
void colo_request_leave(const char *why);
/* Snapshot of the state for query-colo-status (p99 computed here). */
void colo_query(enum colo_mode *mode, enum colo_mode *last_mode, enum colo_reason *reason,
                struct colo_stats *st, uint64_t *p99_us, uint64_t *mean_us);
/* Cluster mode: every change of quorum or of the VM's CPG group (a cluster_fn, quorum.c). */
void colo_cluster_event(void *opaque, const struct cluster_view *v, const char *what);
/* The failover policy's state, for query-colo-status. */
struct colo_policy_state {
    bool armed, unusable, fenced;
    uint64_t last_good;
    char decision[224];
    bool cluster;
    struct cluster_view cv; /* the latest view */
    char cluster_last[96];
};
void colo_query_policy(struct colo_policy_state *ps);
