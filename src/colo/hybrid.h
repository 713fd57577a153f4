/* hybrid.h: hybrid COLO's device glue: the SVM runs; the primary mirrors its input to it,
 * compares the two VMs' output and checkpoints only on divergence or at the longest delay.
 *
 * Primary: every frame the tap delivers to the PVM also travels to the secondary (mirror.c),
 * tagged with the generation (checkpoints taken so far). Every frame the PVM sends goes to a
 * compare engine per NIC (compare.c) instead of the epoch buffer; the SVM's frames come back
 * over the link. Equal output leaves at once; a mismatch, a frame unmatched for
 * x-compare-timeout, or a full queue asks for a checkpoint now. At a checkpoint (vCPUs paused)
 * every frame still held moves into the epoch buffer (outbuf.c) and leaves when the secondary
 * has that checkpoint, as in periodic mode; the SVM's are dropped.
 * Secondary: the SVM runs from each checkpoint it applies, fed only with the mirrored frames of
 * its generation (its own tap is not read), its TCP sequence numbers rewritten into the PVM's
 * (rewrite.c); its output goes to the primary. At a checkpoint request it stops, and its dirty
 * pages travel to the primary with checkpoint-reply (the primary sends their union). On takeover
 * it goes on running: no rollback; the NICs switch to the local tap (still rewriting the
 * connections that need it) and announce the MAC.
 * docs/hybrid.md has the rules and their reasons.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct colo;
struct vm;

/* ---- primary ---- */

/* After colo_devices_primary_start (the epoch buffers exist), before the PVM resumes. Takes
 * link_fd. */
int hybrid_primary_start(struct colo *c, struct vm *vm, int link_fd);
/* Checkpoint gen is being captured (vCPUs paused, dev_lock held), before the epoch closes:
 * held PVM frames join the closing epoch, SVM frames are dropped, input is tagged gen. */
void hybrid_primary_close_gen(uint64_t gen);
/* The checkpoint-released frames left (after colo_devices_release): their hold times count. */
void hybrid_primary_released(void);
/* Monotonic ns when a held frame times out (UINT64_MAX: nothing held). */
uint64_t hybrid_primary_deadline(void);
/* On the COLO thread after a wait: a timed-out frame asks for a checkpoint now. */
void hybrid_primary_poll(void);
/* Leaving COLO, before the output policy: comparing stops, every held frame joins the epoch
 * buffer (released or discarded by the policy), the link closes. Idempotent. */
void hybrid_primary_stop(struct colo *c);

/* ---- secondary ---- */

/* After the initial state: the NICs take mirrored input and send to the link, the console is
 * muted, dirty logging starts, and the SVM runs (generation 0). Takes link_fd. */
int hybrid_secondary_start(struct colo *c, struct vm *vm, int link_fd);
/* A checkpoint request: stop the SVM (devices first) and harvest its dirty pages into bitmap
 * (one bit per page, OR-ed in). 0 or -errno. */
int hybrid_secondary_pause(struct vm *vm, unsigned long *bitmap);
/* Run the SVM again: from checkpoint gen when applied (rewrites reset), else as it was. */
void hybrid_secondary_resume(struct vm *vm, uint64_t gen, bool applied);
/* Takeover: the SVM runs on (resumed if a checkpoint had stopped it), input and output move to
 * the local tap, the console speaks again. */
void hybrid_secondary_takeover(struct vm *vm);
/* Leaving without a takeover (process end): stop the link. */
void hybrid_secondary_stop(void);

/* ---- status ---- */

struct hybrid_stats {
    bool active;
    uint64_t compared, matched, released, mismatches, timeouts, overflows;
    uint64_t svm_dropped;            /* SVM frames dropped: stale generation, or at checkpoints */
    uint64_t mirrored, mirror_drops; /* input frames sent to the secondary / lost */
    uint64_t hold_count, hold_mean_us, hold_p99_us;
    uint64_t rewritten_in, rewritten_out, rewrite_conns; /* secondary */
};
void hybrid_query(struct hybrid_stats *st);
