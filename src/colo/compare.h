/* compare.h: colo-compare: the primary holds each frame its guest (PVM) sends until the
 * secondary's guest (SVM) has sent the same output, then releases it to the wire.
 *
 * A pure library: no threads, no I/O, no clock, no globals. The caller serialises every call
 * (one lock), passes the time in, and must not call back into the compare from the release or
 * take callbacks (they run inside colo_compare_pvm/svm/flush).
 *
 *   PVM tx ──> colo_compare_pvm ──┐                      ┌──> release(): matched, to the wire
 *                                 ├─> per-connection ────┤
 *   SVM tx ──> colo_compare_svm ──┘   queues (5-tuple)   └──> MISMATCH / TIMEOUT / QUEUE_FULL:
 *                                                              the caller checkpoints, then
 *                                     colo_compare_flush ────> take(): every held PVM frame, in
 *                                                              arrival order; SVM frames dropped
 *
 * Frames are plain Ethernet frames (no virtio-net header). What is compared (details and the
 * differences from QEMU at the top of compare.c):
 *  - not IPv4 (ARP, IPv6, VLAN), IPv4 fragments, anything truncated or malformed: the PVM copy
 *    is released at once, unchecked; the SVM copy is dropped (svm_discarded). As QEMU.
 *  - UDP, ICMP and other IPv4 protocols, one connection per (proto, addresses, ports) -- ICMP:
 *    (addresses, echo id): the oldest PVM frame is searched for among the connection's SVM
 *    frames; equal L4 payload (UDP: after its header; ICMP: type, code and from byte 4 on;
 *    other: the whole IP payload), IP header fields and L4 checksums ignored -> released; no
 *    equal SVM frame while SVM frames wait -> MISMATCH.
 *  - TCP: the two byte streams (SYN and FIN included) must be equal however they are cut;
 *    a PVM segment leaves once its range is verified and its ack is one the SVM has sent too.
 *
 * MISMATCH: that connection is marked diverged; its frames (and later ones) stay held until the
 * flush; other connections go on comparing. Report once, then keep getting MISMATCH for it.
 *
 * Bounds: at most max_conns connections (idle ones are recycled, least recently used first) and
 * max_bytes of frames held, both sides together. A frame past either bound returns QUEUE_FULL
 * and the compare enters the full state until the next flush: every PVM frame is then held
 * without comparison (never dropped: it leaves at the flush) and every SVM frame is dropped.
 * The caller should stop taking frames from the guest after QUEUE_FULL until the flush
 * (back-pressure); if it does, max_bytes is exceeded by at most the one frame that reported it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COLO_CMP_DEFAULT_TIMEOUT_NS (3000ull * 1000 * 1000) /* QEMU's compare_timeout */
#define COLO_CMP_DEFAULT_MAX_BYTES  (8u << 20)
#define COLO_CMP_DEFAULT_MAX_CONNS  16384u /* QEMU's conntrack table size */
#define COLO_CMP_MAX_CONNS_LIMIT    (1u << 20)
/* A TCP SVM segment further than this from the verified point (either way), or two sides whose
 * first sequence numbers differ by more, cannot be the same stream: MISMATCH at once (an
 * unrewritten SVM stream, e.g. when the secondary's rewriter table was full). */
#define COLO_CMP_TCP_MAX_SKEW (1u << 26)

enum colo_cmp_result {
    COLO_CMP_OK = 0,
    COLO_CMP_MISMATCH,   /* divergence: checkpoint, then colo_compare_flush */
    COLO_CMP_TIMEOUT,    /* a frame waited timeout_ns for its match: checkpoint, then flush */
    COLO_CMP_QUEUE_FULL, /* a bound was hit; the frame is held if PVM (dropped if SVM) */
    COLO_CMP_NOMEM,      /* no memory for a copy: the frame was NOT taken, the caller keeps it
                          * (PVM: send it after the flush that follows the checkpoint) */
};

/* Zero in a field means its default. */
struct colo_cmp_config {
    uint64_t timeout_ns; /* oldest held frame (either side) older than this -> TIMEOUT */
    size_t max_bytes;    /* frame bytes held, both sides (see the bounds above) */
    size_t max_conns;    /* connections tracked at once (<= COLO_CMP_MAX_CONNS_LIMIT) */
    uint64_t hash_seed;  /* connection hash key: remote peers choose ports; 0: fixed */
};

/* A frame leaving: the pointer is valid during the call only. arrived_ns: when it was given. */
typedef void (*colo_cmp_out_fn)(void *opaque, const uint8_t *frame, size_t len,
                                uint64_t arrived_ns);

struct colo_cmp_stats {
    uint64_t compared;      /* PVM frames (or TCP connections at their divergence) judged */
    uint64_t matched;       /* PVM frames released after their SVM counterpart was found */
    uint64_t released;      /* PVM frames given to release(): matched + passthrough */
    uint64_t passthrough;   /* PVM frames released unchecked (not IPv4, fragments, malformed) */
    uint64_t flushed;       /* PVM frames given to take() at flushes */
    uint64_t mismatches;    /* connections found diverged (once each until the flush) */
    uint64_t timeouts;      /* distinct oldest frames poll reported as timed out */
    uint64_t overflows;     /* QUEUE_FULL results */
    uint64_t nomem;         /* NOMEM results */
    uint64_t svm_matched;   /* SVM frames used up: matched, or TCP acks and retransmissions */
    uint64_t svm_discarded; /* SVM frames dropped unused: unsupported, full, diverged, flush */
    /* hold time (release - arrival) of the PVM frames compare matched and released */
    uint64_t hold_count, hold_ns_sum, hold_ns_max;
    uint64_t hold_p99_ns; /* from a log-linear histogram: >= the true p99, by < 12.5% */
    /* now */
    uint64_t held_frames, held_bytes, conns;
    bool full; /* QUEUE_FULL was reported; cleared by the flush */
};

struct colo_compare;

/* NULL on ENOMEM or a max_conns above the limit. cfg may be NULL (all defaults). */
struct colo_compare *colo_compare_new(const struct colo_cmp_config *cfg, colo_cmp_out_fn release,
                                      void *opaque);
/* Frees everything; held PVM frames are dropped (flush first to send them). NULL is fine. */
void colo_compare_free(struct colo_compare *c);

/* A frame the PVM sent: copied and held, or released at once (through release) along with any
 * other PVM frames it lets go. OK, MISMATCH, QUEUE_FULL (held) or NOMEM (not taken). */
enum colo_cmp_result colo_compare_pvm(struct colo_compare *c, const uint8_t *frame, size_t len,
                                      uint64_t now_ns);
/* A frame the SVM sent (its TCP sequence numbers already rewritten into the PVM's space by the
 * secondary, SYNs excepted). It may release PVM frames. OK, MISMATCH, QUEUE_FULL or NOMEM
 * (dropped in both cases). The caller must not feed SVM frames the SVM sent before the last
 * checkpoint once that checkpoint's flush has run. */
enum colo_cmp_result colo_compare_svm(struct colo_compare *c, const uint8_t *frame, size_t len,
                                      uint64_t now_ns);
/* TIMEOUT when the oldest held frame (either side) has waited timeout_ns or more, else OK. */
enum colo_cmp_result colo_compare_poll(struct colo_compare *c, uint64_t now_ns);
/* When poll would report TIMEOUT if nothing is released first; UINT64_MAX if nothing is held. */
uint64_t colo_compare_next_deadline(struct colo_compare *c);
/* Checkpoint boundary: every held PVM frame goes to take() (NULL: dropped) in global arrival
 * order, every SVM frame is dropped (counted), every connection is forgotten, the full state
 * ends. Statistics are kept. */
void colo_compare_flush(struct colo_compare *c, colo_cmp_out_fn take, void *opaque);

void colo_compare_stats(struct colo_compare *c, struct colo_cmp_stats *out);
/* Hold time of matched PVM frames at the given quantile (per mille, 1..1000), 0 if none yet:
 * the upper edge of its histogram bucket (at most 12.5% high), never above the maximum. */
uint64_t colo_compare_hold_quantile_ns(struct colo_compare *c, unsigned per_mille);
uint64_t colo_compare_hold_p99_ns(struct colo_compare *c);
