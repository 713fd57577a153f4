/* outbuf.h: output commit: frames the PVM transmits in epoch N wait until checkpoint N has
 * reached the secondary (vmstate-received), then leave in order.
 *
 * Epochs: frames are tagged with the epoch current when the guest sent them. A checkpoint
 * closes the current epoch while the vCPUs are paused (colo_outbuf_close_epoch) and, once the
 * secondary confirms it holds that checkpoint, releases every frame up to it.
 *
 *   hold ──> HOLDING ──(release N: epochs <= N leave, in order)──> HOLDING
 *               │  └──(discard: every held frame dropped; still holding)──> HOLDING
 *               └──(stop)──> DRAINING ──(queue found empty, under the lock)──> PASS-THROUGH
 *
 * Order is the invariant: a frame never leaves before one the guest sent earlier. While a stop
 * drains, frames the NIC sends meanwhile queue behind the held ones (DRAINING still holds);
 * pass-through begins only when the queue is empty. Releases (and stops) are serialised by
 * send_lock, so two of them from different threads cannot interleave their frames.
 *
 * Limit: at most COLO_OUTBUF_MAX_BYTES are held. When the held bytes reach half of it
 * (COLO_OUTBUF_CKPT_BYTES) the buffer asks the engine for a checkpoint now
 * (colo_request_checkpoint), once per epoch, so that it drains before it fills; a frame that
 * would pass the limit is dropped (counted in dropped_total), as a full NIC queue drops, and
 * TCP retransmits it.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define COLO_OUTBUF_MAX_BYTES  (64u << 20) /* beyond this, frames drop as on a full NIC queue */
#define COLO_OUTBUF_CKPT_BYTES (COLO_OUTBUF_MAX_BYTES / 2) /* ask for an early checkpoint */

struct colo_frame;

typedef int (*colo_send_fn)(void *opaque, const struct iovec *iov, int iovcnt);

struct colo_outbuf {
    pthread_mutex_t lock;      /* the queue, the flags and the counters */
    pthread_mutex_t send_lock; /* held by a release or stop from its first detach to its last
                                * send: releases leave in the order they took their frames */
    bool holding;              /* false only in pass-through (after a stop drained) */
    bool ckpt_asked;           /* this epoch already asked for an early checkpoint */
    uint64_t epoch;            /* epoch of frames sent now */
    struct colo_frame *head, *tail;
    size_t bytes; /* held now; never above COLO_OUTBUF_MAX_BYTES */
    uint64_t held_total, released_total, dropped_total, discarded_total; /* frames (buffers) */
    bool coalesce;     /* a byte stream (console): same-epoch sends join one buffer */
    colo_send_fn send; /* the real transmit (tap) */
    void *send_opaque;
};

void colo_outbuf_init(struct colo_outbuf *ob, colo_send_fn send, void *send_opaque);
void colo_outbuf_destroy(struct colo_outbuf *ob);
/* Start holding (COLO began); epoch numbering continues from first_epoch. */
void colo_outbuf_hold(struct colo_outbuf *ob, uint64_t first_epoch);
/* The transmit path the NIC calls instead of the tap while COLO runs (a colo_send_fn). Returns
 * the length taken (held or sent), or 0 when the frame was dropped at the limit. Any thread;
 * also from inside ob->send while a release runs. */
int colo_outbuf_send(void *opaque, const struct iovec *iov, int iovcnt);
/* Close the current epoch (vCPUs paused); returns its number. */
uint64_t colo_outbuf_close_epoch(struct colo_outbuf *ob);
/* Send every held frame of epochs <= upto, in order. Not from inside ob->send. */
void colo_outbuf_release(struct colo_outbuf *ob, uint64_t upto);
/* Leave COLO: send everything held, and what is sent while it drains, in order; then pass
 * frames straight through. Returns once the queue is empty. Not from inside ob->send. */
void colo_outbuf_stop(struct colo_outbuf *ob);
/* Drop every held frame (counted in discarded_total) and keep holding: what is sent afterwards
 * is held too. For a primary that must not let its output out (it is being fenced): the caller
 * then calls colo_outbuf_stop to pass through, or never. Frames a release already took leave. */
void colo_outbuf_discard(struct colo_outbuf *ob);
/* Bytes held now. */
size_t colo_outbuf_held_bytes(struct colo_outbuf *ob);
