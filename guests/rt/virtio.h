/* virtio.h: a virtio-mmio (version 2) driver with split virtqueues for ring-3 guests: polls or
 * sleeps. */
#pragma once

#include <stdint.h>

#define VIRTIO_ID_NET   1
#define VIRTIO_ID_BLOCK 2

#define VIRTIO_F_VERSION_1 32

/* Exit value of a guest whose virtio device failed or refused (next to rt.h's RT_EXIT_*). */
#define VIO_EXIT_DEVICE 5

/* Descriptors per queue (and the queue size asked for, capped by QueueNumMax). */
#define VIO_QUEUE_SIZE 128

/* Where the driver looks: slots of 0x200 bytes from 0xFEB00000. tandem uses slots 0..7;
 * QEMU's microvm has 24 (its devices sit in the highest ones). */
#define VIO_MMIO_BASE   0xFEB00000u
#define VIO_SLOT_SIZE   0x200u
#define VIO_PROBE_SLOTS 32

/* One virtio-mmio device. */
struct vio_dev {
    uintptr_t base; /* MMIO base of the slot */
    uint32_t device_id;
    uint64_t features; /* the negotiated set (VIRTIO_F_VERSION_1 always among them) */
    int irq;           /* irq mode: queues start with interrupts on (vio_irq_setup) */
};

struct vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct vring_used_elem {
    uint32_t id;
    uint32_t len;
};

/* One split virtqueue: the rings live inside the structure (guest-physical = virtual, since
 * the runtime identity-maps the first 4 GiB), so a static struct vio_queue is all a queue
 * needs. The device owns used; the driver owns the rest. */
struct vio_queue {
    struct vring_desc desc[VIO_QUEUE_SIZE] __attribute__((aligned(16)));
    struct {
        uint16_t flags;
        uint16_t idx;
        uint16_t ring[VIO_QUEUE_SIZE];
        uint16_t used_event;
    } avail __attribute__((aligned(4)));
    struct {
        uint16_t flags;
        uint16_t idx;
        struct vring_used_elem ring[VIO_QUEUE_SIZE];
        uint16_t avail_event;
    } used __attribute__((aligned(4)));
    struct vio_dev *dev;
    uint32_t index;     /* queue number on the device */
    uint16_t num;       /* queue size in use (<= VIO_QUEUE_SIZE) */
    uint16_t free_head; /* first free descriptor (free ones are chained through next) */
    uint16_t nfree;
    uint16_t last_used; /* used entries consumed so far (free-running) */
};

/* One buffer of a chain: device-readable unless writable is set. Readable buffers come first. */
struct vio_buf {
    const void *addr;
    uint32_t len;
    int writable;
};

/* Find the first device with this DeviceID (probing VIO_PROBE_SLOTS slots by MagicValue).
 * Returns 0 and fills d, or -1. A version-1 (legacy) device of that type is reported on the
 * console and skipped. */
int vio_find(uint32_t device_id, struct vio_dev *d);

/* Reset, ACKNOWLEDGE | DRIVER, negotiate VERSION_1 plus the bits of want the device offers,
 * FEATURES_OK. Returns 0, or -1 after printing why (the device is left reset). */
int vio_start(struct vio_dev *d, uint64_t want);

/* Set up queue index with its rings in q (size min(VIO_QUEUE_SIZE, QueueNumMax)) and enable
 * it; interrupts are suppressed (VIRTQ_AVAIL_F_NO_INTERRUPT) unless d is in irq mode. Returns 0,
 * or -1 after printing why. Call between vio_start and vio_driver_ok. */
int vio_queue_init(struct vio_dev *d, struct vio_queue *q, uint32_t index);

/* Ask the device for used-buffer interrupts on q (on) or not (VIRTQ_AVAIL_F_NO_INTERRUPT), then
 * fence: a used entry the caller does not see after this was published after the device read the
 * flag. */
void vio_queue_irq(struct vio_queue *q, int on);

/* irq mode, if the command line says irq=1 (docs/guests.md "irq mode"): route d's interrupt,
 * pin irqpin= (default 16) + d's slot of the I/O APIC at ioapic= (default 0xFEC00000), to a
 * vector whose ring-0 handler acknowledges the device (vio_irq_ack), print
 * "<who>: irq mode, vector 0x40, pin 17, ioapic 0xfec00000", set d->irq and return 1. Returns 0
 * with irq=0 or no irq= (polling). A bad option or a failed route exits with RT_EXIT_CONFIG.
 * Call after vio_find (d must stay valid: the handler gets it), before vio_queue_init. */
int vio_irq_setup(struct vio_dev *d, const char *who);

/* Read InterruptStatus and acknowledge those bits (InterruptACK): the device lowers its line.
 * Returns them (bit 0: used buffer, bit 1: configuration change). */
uint32_t vio_irq_ack(struct vio_dev *d);

/* Set DRIVER_OK. Returns 0, or -1 if the device asks for a reset (it refused something). */
int vio_driver_ok(struct vio_dev *d);

/* 1 if the device has set NEEDS_RESET (it found an error in what the driver did). */
int vio_needs_reset(const struct vio_dev *d);

/* Device configuration space: little-endian fields at off (0x100 + off in the slot). */
uint8_t vio_cfg8(const struct vio_dev *d, uint32_t off);
uint32_t vio_cfg32(const struct vio_dev *d, uint32_t off);
uint64_t vio_cfg64(const struct vio_dev *d, uint32_t off); /* consistent across generations */

/* Make a chain of n buffers available (not yet kicked). Returns its head descriptor, which
 * vio_reap gives back, or -1 if fewer than n descriptors are free. */
int vio_submit(struct vio_queue *q, const struct vio_buf *b, unsigned n);

/* Tell the device new buffers are available (QueueNotify). */
void vio_kick(struct vio_queue *q);

/* Take the next used chain: returns its head and stores the device's used length in *len,
 * or -1 if none is ready. Its descriptors are free again. */
int vio_reap(struct vio_queue *q, uint32_t *len);
