/* outbuf.h: output commit: frames the PVM transmits in epoch N wait until checkpoint N has
 * reached the secondary (vmstate-received), then leave in order.
 *
 * Epochs: frames are tagged with the epoch current when the guest sent them. A checkpoint
 * closes the current epoch while the vCPUs are paused (colo_outbuf_close_epoch) and, once the
 * secondary confirms it holds that checkpoint, releases every frame up to it.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define COLO_OUTBUF_MAX_BYTES (64u << 20) /* beyond this, frames drop as on a full NIC queue */

struct colo_frame;

typedef int (*colo_send_fn)(void *opaque, const struct iovec *iov, int iovcnt);

struct colo_outbuf {
    pthread_mutex_t lock;
    bool holding;
    uint64_t epoch; /* epoch of frames sent now */
    struct colo_frame *head, *tail;
    size_t bytes;
    uint64_t held_total, released_total, dropped_total;
    bool coalesce;     /* a byte stream (console): same-epoch sends join one buffer */
    colo_send_fn send; /* the real transmit (tap) */
    void *send_opaque;
};

void colo_outbuf_init(struct colo_outbuf *ob, colo_send_fn send, void *send_opaque);
void colo_outbuf_destroy(struct colo_outbuf *ob);
/* Start holding (COLO began); epoch numbering continues from first_epoch. */
void colo_outbuf_hold(struct colo_outbuf *ob, uint64_t first_epoch);
/* The transmit path the NIC calls instead of the tap while COLO runs (a colo_send_fn). */
int colo_outbuf_send(void *opaque, const struct iovec *iov, int iovcnt);
/* Close the current epoch (vCPUs paused); returns its number. */
uint64_t colo_outbuf_close_epoch(struct colo_outbuf *ob);
/* Send every held frame of epochs <= upto, in order. */
void colo_outbuf_release(struct colo_outbuf *ob, uint64_t upto);
/* Leave COLO: release everything and pass frames straight through from now on. */
void colo_outbuf_stop(struct colo_outbuf *ob);
