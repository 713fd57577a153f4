/* rewrite.h: the secondary's TCP sequence rewriter: a connection opened since the last
 * checkpoint has one ISN on the PVM and another on the SVM; the rewriter moves the SVM's side
 * of it into the PVM's sequence space, so the primary's compare sees one stream.
 *
 * A pure library: no threads, no I/O, no globals; the caller serialises every call.
 *
 *   client ──> colo_rewrite_in ──(ack - offset, SACK blocks - offset)──> deliver() ──> SVM
 *   SVM ─────> colo_rewrite_out ─(seq + offset)───────────────────────> compare on the primary
 *
 *   offset = PVM ISN - SVM ISN, per connection (mod 2^32), learned in the handshake:
 *     VM accepts: client SYN in (entry made) -> SVM SYN-ACK out (SVM ISN = its seq) ->
 *                 client ACK in (PVM ISN = ack - 1: the client acks the PVM's SYN-ACK)
 *     VM opens:   SVM SYN out (entry made, SVM ISN = its seq) ->
 *                 server SYN-ACK in (PVM ISN = ack - 1)
 *   From then on every segment of the connection is rewritten (the SVM's SYN-ACK too, once the
 *   offset is known), and its TCP checksum fixed incrementally (RFC 1624; fields at odd offsets
 *   too). The client's SACK blocks name the VM's sequence numbers, so they are rewritten like
 *   its ack; the SVM's own SACK blocks and both sides' timestamps need nothing. (QEMU's
 *   filter-rewriter leaves SACK blocks alone: the SVM then sees blocks outside its window and
 *   ignores them, or, with a small offset, believes the wrong data arrived.)
 *
 * An ACK-bearing segment from the client that arrives before the SVM has sent its SYN-ACK
 * cannot be rewritten yet: it is held (in order, with every later segment of the connection,
 * at most max_held_bytes over all connections) and delivered from inside colo_rewrite_out
 * once the SYN-ACK passes, through the deliver function given with it to colo_rewrite_in.
 *
 * Connections with no entry (open before the last checkpoint: the SVM is then a copy of the
 * PVM and the offset 0) pass through unchanged, as does anything not IPv4 TCP, and IPv4
 * fragments. Entries live until the flush (the checkpoint). An entry is closed once an RST or
 * both FINs passed; it still rewrites stragglers, and is the first reused when the table is
 * full; a new SYN reopens it. With no closed entry to reuse, a new connection passes through
 * unrewritten (counted: untracked); its streams then differ, the compare forces a checkpoint,
 * and the checkpoint's flush makes room.
 *
 * Limits: TCP Fast Open data acknowledged in a SYN-ACK, or a server sending data before the
 * client's handshake ACK, makes ack - 1 miss the ISN: the compare sees a mismatch and a
 * checkpoint resets the pair. Frames must carry full checksums (no offload: no virtio-net
 * header here).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define COLO_RW_DEFAULT_MAX_CONNS 16384u
#define COLO_RW_DEFAULT_MAX_HELD  (256u << 10)
#define COLO_RW_MAX_CONNS_LIMIT   (1u << 20)

/* Hands a frame on to the SVM. The pointer is valid during the call only. It must not call
 * back into the rewriter. */
typedef void (*colo_rw_deliver_fn)(void *opaque, uint8_t *frame, size_t len);

struct colo_rw_stats {
    uint64_t conns;         /* entries now */
    uint64_t conns_offset;  /* entries with a nonzero offset now */
    uint64_t rewritten_in;  /* client frames changed */
    uint64_t rewritten_out; /* SVM frames changed */
    uint64_t held;          /* client frames held now, and their bytes */
    uint64_t held_bytes;
    uint64_t held_total;     /* client frames ever held */
    uint64_t delivered_held; /* held frames delivered later */
    uint64_t dropped;        /* client frames dropped: hold bound, no memory, at a flush */
    uint64_t untracked;      /* connections opened while the table was full: not rewritten */
    uint64_t recycled;       /* closed entries reused for a new connection */
};

struct colo_rewriter;

/* Zero means the default. NULL on ENOMEM or max_conns above the limit. */
struct colo_rewriter *colo_rewriter_new(size_t max_conns, size_t max_held_bytes);
/* Frees everything; held frames are dropped. NULL is fine. */
void colo_rewriter_free(struct colo_rewriter *rw);

/* A frame from the outside world on its way into the SVM: rewritten in place, then given to
 * deliver() before this returns -- or held, copied, and delivered later from inside
 * colo_rewrite_out (through this deliver and opaque). Returns 0, or -1 if it was dropped
 * (hold bound or no memory; counted), in which case deliver is not called. */
int colo_rewrite_in(struct colo_rewriter *rw, uint8_t *frame, size_t len,
                    colo_rw_deliver_fn deliver, void *opaque);
/* A frame the SVM sends: rewritten in place. May deliver held client frames (see above). */
void colo_rewrite_out(struct colo_rewriter *rw, uint8_t *frame, size_t len);
/* Checkpoint: the SVM now equals the PVM, every offset is 0: every entry is forgotten, held
 * frames are dropped (counted). */
void colo_rewriter_flush(struct colo_rewriter *rw);
void colo_rewriter_stats(struct colo_rewriter *rw, struct colo_rw_stats *out);
