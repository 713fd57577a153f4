/* virtio_events.h: the transport's signalling internals: kick and interrupt plumbing (transport
 * files only; devices use virtio_mmio.h). All with vd->lock held unless said otherwise. */
#pragma once

#include <stdint.h>

#include "virtio/virtio_mmio.h"

/* ioeventfd per queue and the interrupt line (irqfd + resample, else KVM_IRQ_LINE, or none
 * without KVM). Called by init without the lock; undone by teardown. */
int virtio_events_setup(struct virtio_mmio *vd);
void virtio_events_teardown(struct virtio_mmio *vd);

/* Set bit in InterruptStatus and assert the line. */
void virtio_irq_raise(struct virtio_mmio *vd, uint32_t bit);
/* InterruptStatus went down (ACK, reset). */
void virtio_irq_lowered(struct virtio_mmio *vd);
/* Bring the line in step with InterruptStatus (after a load). */
void virtio_irq_sync(struct virtio_mmio *vd);
