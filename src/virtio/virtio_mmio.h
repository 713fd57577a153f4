/* virtio_mmio.h: the virtio-mmio transport (version 2): registers, handshake, kicks, interrupts.
 *
 * Layout (docs/virtio.md is the guest-facing twin of this block):
 *   slot n (0..7) at 0xFEB00000 + n * 0x200, 0x200 bytes; IOAPIC pin (GSI) 16 + n.
 *   A device takes the lowest free slot when it is created (run.c: disks, then NICs, each in
 *   command-line order). Empty slots are unmapped: they read all-ones.
 *
 * Status handshake seen from the device:
 *
 *   0 --ACK--> 1 --DRIVER--> 3 --FEATURES_OK--> 0xb  (refused -> bit stays clear)
 *     --queues ready--> --DRIVER_OK--> 0xf: kicks are served, buffers used, interrupts sent
 *   any --(guest broke a ring)--> |NEEDS_RESET + config interrupt: queues ignored
 *   any --write 0--> 0 (reset: queues, features, interrupt status cleared)
 *
 * Threads: guest register accesses arrive on vCPU threads; ioeventfd kicks, irqfd resamples and
 * device backends (tap) on the main loop; stop/cont from the migration thread. One mutex per
 * device (vd->lock) serialises all of them; device ops run with it held. Work that does not come
 * from a vCPU first takes vm->dev_lock (virtio_mmio_enter), which a checkpoint holds while it
 * captures RAM and device state: lock order vm->dev_lock, then vd->lock.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio/virtq.h"

struct vm;
struct vm_device;
struct vmstate_desc;

#define VIRTIO_MMIO_BASE       0xFEB00000ULL
#define VIRTIO_MMIO_SLOT_SIZE  0x200u
#define VIRTIO_MMIO_SLOTS      8u
#define VIRTIO_MMIO_GSI_BASE   16u
#define VIRTIO_MMIO_MAX_QUEUES 4u
#define VIRTIO_MMIO_CONFIG_MAX 0x100u

#define VIRTIO_MMIO_MAGIC     0x74726976u /* "virt" */
#define VIRTIO_MMIO_VERSION   2u
#define VIRTIO_MMIO_VENDOR_ID 0x4d444e54u /* "TNDM" */

/* Register offsets (spec 4.2.2). Below 0x100: 32-bit aligned accesses only. */
#define VIRTIO_MMIO_MAGIC_VALUE         0x000
#define VIRTIO_MMIO_VERSION_REG         0x004
#define VIRTIO_MMIO_DEVICE_ID           0x008
#define VIRTIO_MMIO_VENDOR_ID_REG       0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES     0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES     0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL           0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX       0x034
#define VIRTIO_MMIO_QUEUE_NUM           0x038
#define VIRTIO_MMIO_QUEUE_READY         0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY        0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS    0x060
#define VIRTIO_MMIO_INTERRUPT_ACK       0x064
#define VIRTIO_MMIO_STATUS              0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW      0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH     0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW    0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH   0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW    0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH   0x0a4
#define VIRTIO_MMIO_SHM_SEL             0x0ac
#define VIRTIO_MMIO_SHM_LEN_LOW         0x0b0
#define VIRTIO_MMIO_SHM_LEN_HIGH        0x0b4
#define VIRTIO_MMIO_SHM_BASE_LOW        0x0b8
#define VIRTIO_MMIO_SHM_BASE_HIGH       0x0bc
#define VIRTIO_MMIO_CONFIG_GENERATION   0x0fc
#define VIRTIO_MMIO_CONFIG              0x100

struct virtio_mmio;

/* What a device type plugs into the transport. All callbacks run with vd->lock held. */
struct virtio_device_ops {
    const char *name; /* "virtio-blk": logs and the inventory */
    uint32_t device_id;
    unsigned nqueues;   /* <= VIRTIO_MMIO_MAX_QUEUES */
    uint16_t queue_max; /* QueueNumMax */
    /* The driver kicked queue q (only after DRIVER_OK, never with NEEDS_RESET or while stopped). */
    void (*notify)(struct virtio_mmio *vd, unsigned q);
    /* Driver reset (status 0) or system reset: drop device-private progress. Optional. */
    void (*reset)(struct virtio_mmio *vd);
    /* DRIVER_OK was just set. Optional. */
    void (*driver_ok)(struct virtio_mmio *vd);
    /* On the main loop after virtio_mmio_cont: restart backends parked while stopped. Optional. */
    void (*resume)(struct virtio_mmio *vd);
};

enum virtio_irq_mode {
    VIRTIO_IRQ_NONE = 0, /* no engine (unit tests): only isr and irq_count change */
    VIRTIO_IRQ_RESAMPLE, /* irqfd + resamplefd: a level line, re-raised after EOI while isr != 0 */
    VIRTIO_IRQ_LINE,     /* a line: level follows isr != 0 (no main loop, or no irqfd) */
};

struct virtio_kick {
    struct virtio_mmio *vd;
    unsigned q;
    int fd;         /* eventfd, -1 if none */
    bool ioeventfd; /* registered with the engine on QueueNotify, datamatch q */
};

struct virtio_mmio {
    /* Guest-visible transport state (migrated: virtio_mmio_vmsd). */
    uint32_t status;
    uint32_t device_features_sel;
    uint32_t driver_features_sel;
    uint64_t driver_features; /* as written; the negotiated set once FEATURES_OK is set */
    uint32_t queue_sel;
    uint32_t isr;
    uint32_t config_generation;
    struct virtq vq[VIRTIO_MMIO_MAX_QUEUES];

    /* Device-specific feature bits offered (set by the device after init); the transport adds
     * VERSION_1, RING_INDIRECT_DESC and RING_EVENT_IDX. */
    uint64_t device_features;
    /* Device configuration space (little-endian), owned by the device; read-only to the guest. */
    uint8_t config[VIRTIO_MMIO_CONFIG_MAX];
    uint32_t config_len;

    /* Host side (not migrated). */
    const struct virtio_device_ops *ops;
    void *opaque; /* the device */
    struct vm *vm;
    unsigned slot;
    uint64_t base;
    uint32_t gsi;
    pthread_mutex_t lock;
    bool registered; /* on the MMIO bus */
    struct virtio_kick kicks[VIRTIO_MMIO_MAX_QUEUES];
    enum virtio_irq_mode irq_mode;
    int irq_fd, resample_fd;
    bool stopped;           /* virtio_mmio_stop: no guest RAM access until cont */
    uint32_t pending_kicks; /* kicks that arrived while stopped (bit per queue) */
    uint64_t irq_count;     /* interrupts raised (statistics, tests) */
    char reason[160];       /* why NEEDS_RESET was set */
};

/* Every virtio device struct starts with its struct virtio_mmio, so the inventory's opaque is
 * both the device and its transport (virtio_mmio_from_device relies on it). */
#define VIRTIO_MMIO_FIRST_MEMBER(type, member)                                                     \
    _Static_assert(offsetof(type, member) == 0, #type " must start with its virtio_mmio")

/* Nested vmstate of the transport, for a device's table (its post_load validates and restarts). */
extern const struct vmstate_desc virtio_mmio_vmsd;

/* Take the lowest free slot on vm's MMIO bus, set up ioeventfd kicks and irqfd interrupts.
 * Then the device sets vd->device_features and fills vd->config/config_len. 0, -ENOSPC (no
 * free slot) or -errno. */
int virtio_mmio_init(struct virtio_mmio *vd, struct vm *vm, const struct virtio_device_ops *ops,
                     void *opaque);
/* Undo init (engine registrations, loop watches, fds, bus slot). Safe on a failed init. */
void virtio_mmio_uninit(struct virtio_mmio *vd);

/* Inventory entry for a virtio device: the transport's reset wraps ops->reset. */
void virtio_mmio_fill_vm_device(struct virtio_mmio *vd, struct vm_device *dev, uint32_t instance,
                                const struct vmstate_desc *vmsd, void (*destroy)(void *opaque));
/* The transport of an inventory entry, or NULL if it is not a virtio device. */
struct virtio_mmio *virtio_mmio_from_device(const struct vm_device *dev);

/* Start/end device work outside a vCPU thread (main loop callbacks): vm->dev_lock, vd->lock. */
void virtio_mmio_enter(struct virtio_mmio *vd);
void virtio_mmio_leave(struct virtio_mmio *vd);

/* ---- for devices (vd->lock held) ---- */

/* Feature bits offered to the driver: the device's and the transport's. */
uint64_t virtio_mmio_offered_features(const struct virtio_mmio *vd);
/* Negotiated feature (only meaningful once FEATURES_OK is set). */
bool virtio_mmio_has_feature(const struct virtio_mmio *vd, unsigned bit);
/* May the device use queue q now (DRIVER_OK, no NEEDS_RESET, not stopped, ready, not broken)? */
bool virtio_mmio_queue_usable(const struct virtio_mmio *vd, unsigned q);
/* Serve queue q as if the driver had kicked it (remembered while stopped). For devices that
 * stop early to stay fair and continue from a loop_call. */
void virtio_mmio_kick(struct virtio_mmio *vd, unsigned q);
/* Used buffers were flushed on q: interrupt unless the driver suppressed it. */
void virtio_mmio_used(struct virtio_mmio *vd, unsigned q);
/* The guest broke queue q (virtq_pop returned -EIO): NEEDS_RESET with the queue's reason. */
void virtio_mmio_queue_broken(struct virtio_mmio *vd, unsigned q);
/* Enter NEEDS_RESET (logged once per reset) and send a configuration-change interrupt. */
__attribute__((format(printf, 2, 3))) void virtio_mmio_needs_reset(struct virtio_mmio *vd,
                                                                   const char *fmt, ...);
/* The device changed its config space: new generation, configuration-change interrupt. */
void virtio_mmio_config_changed(struct virtio_mmio *vd);

/* ---- quiescing, for checkpoints ----
 * After virtio_mmio_stop returns, no thread touches guest RAM or raises an interrupt for this
 * device (kicks are remembered) until virtio_mmio_cont. Together with vm_pause this freezes the
 * whole guest-visible state. Any thread except the main loop may call them (cont may too). */
void virtio_mmio_stop(struct virtio_mmio *vd);
void virtio_mmio_cont(struct virtio_mmio *vd);
/* The same for every virtio device in vm's inventory. */
void virtio_stop_all(struct vm *vm);
void virtio_cont_all(struct vm *vm);

/* Register access (the MMIO bus handler); exposed for unit tests. */
void virtio_mmio_access(void *opaque, uint64_t off, void *data, uint32_t len, bool is_write);

/* Devices for ACPI tables and the doc: base, size, GSI and type of each, in slot order. */
struct virtio_mmio_info {
    uint64_t base;
    uint32_t size;
    uint32_t gsi;
    uint32_t device_id;
    const char *name;
};
unsigned virtio_mmio_list(struct vm *vm, struct virtio_mmio_info *out, unsigned max);
