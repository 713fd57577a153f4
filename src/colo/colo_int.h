/* colo_int.h: what the COLO engine's files share: limits, and the state helpers of colo.c. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "colo/colo.h"

#define RAM_SECTION_ID 1
/* Stream timeouts (x-colo-io-timeout, default 5 s) are per wait (no byte moved for that long),
 * so a long transfer that makes progress never times out; the wait for vmstate-received and
 * -loaded grows with the checkpoint (primary.c). The heartbeat finds a hung peer much sooner. */
#define COLO_DEVBUF_MAX (256u << 20)
/* The primary's checkpoint buffer holds at most x-colo-buffer-max of dirty RAM (default 256
 * MiB); a larger dirty set is sent straight from guest RAM while the guest stays paused
 * (docs/colo.md, "Limits"). */
#define COLO_START_TIMEOUT 10000

/* Cluster mode: how long a secondary that lost its primary waits for the cluster to show the
 * primary out of its partition (corosync needs its token timeout and a new membership: 2-7 s
 * measured in the lab on a loaded machine). */
#define COLO_CLUSTER_GRACE_MS 10000

/* The engine's condition variable on CLOCK_MONOTONIC, once (idempotent). */
void colo_cond_init(void);
/* Secondary, cluster mode, before a takeover the policy allows: 0 once this partition is
 * quorate and the primary left the group; -EPERM (disarmed, decision recorded) otherwise. */
int colo_quorum_gate(struct colo *c);
/* Primary, cluster mode, its secondary lost: holds until the cluster decides; true when this
 * partition is quorate and the secondary provably out of it (its node elsewhere, or its process
 * gone), false when quorum is lost. No deadline: a secondary that still sees us disarms after
 * COLO_CLUSTER_GRACE_MS and leaves the group, which decides it. */
bool colo_quorum_gate_primary(struct colo *c);

/* Wall-clock microseconds, for logs that are compared with packet captures (and the
 * last-failover-unix-ms timestamp); never used to time anything: that is now_ns(), monotonic. */
unsigned long long colo_unix_us(void);
/* Wait on c->cond (c->lock held) until woken or now_ns() reaches due_ns, a CLOCK_MONOTONIC
 * time; false on timeout. Spurious wakeups happen: callers re-check their condition. */
bool colo_cond_wait_until(struct colo *c, uint64_t due_ns);
/* Unblock a send or receive stuck on the stream (caller holds c->lock). */
void colo_wake_stream(struct colo *c);
/* The heartbeat's events: disarm on LEFT, fail over (or leave COLO) on a loss. */
void colo_hb_event(void *opaque, enum hb_event ev, const char *why);
/* Record the last failover decision (c->lock held) and log it. */
void colo_decide(struct colo *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Run c->fence_cmd with TANDEM_COLO_ROLE=role: 0 when it exits 0 (we won), else < 0. */
int colo_run_fence(struct colo *c, const char *role);
bool colo_failover_pending(struct colo *c);
/* COLO_EXIT on the main loop. */
void colo_report_exit(struct colo *c, enum colo_mode mode, enum colo_reason reason);
void colo_set_mode_none(struct colo *c, enum colo_mode mode, enum colo_reason reason);
/* Both of the above. */
void colo_exit(struct colo *c, enum colo_mode mode, enum colo_reason reason);
void colo_record_pause(struct colo *c, uint64_t pause_us, uint64_t dirty, uint64_t bytes);
