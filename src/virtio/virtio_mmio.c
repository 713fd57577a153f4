/* virtio_mmio.c: virtio-mmio v2 transport: register file, status/feature handshake, queue setup,
 * device-facing helpers, lifetime and the inventory. Signalling is in virtio_events.c, migration
 * state in virtio_mmio_vmstate.c. */
#include "virtio/virtio_mmio.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/vm.h"
#include "virtio/virtio.h"
#include "virtio/virtio_events.h"

/* Offered by the transport for every device (VERSION_1 is also required from the driver). */
#define TRANSPORT_FEATURES                                                                         \
    (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_RING_INDIRECT_DESC) |                    \
     VIRTIO_BIT(VIRTIO_F_RING_EVENT_IDX))

uint64_t virtio_mmio_offered_features(const struct virtio_mmio *vd)
{
    return vd->device_features | TRANSPORT_FEATURES;
}

static struct virtq *selected_queue(struct virtio_mmio *vd)
{
    return vd->queue_sel < vd->ops->nqueues ? &vd->vq[vd->queue_sel] : NULL;
}

/* ---- device-facing helpers ---- */

void virtio_mmio_enter(struct virtio_mmio *vd)
{
    pthread_mutex_lock(&vd->vm->dev_lock);
    pthread_mutex_lock(&vd->lock);
}

void virtio_mmio_leave(struct virtio_mmio *vd)
{
    pthread_mutex_unlock(&vd->lock);
    pthread_mutex_unlock(&vd->vm->dev_lock);
}

bool virtio_mmio_has_feature(const struct virtio_mmio *vd, unsigned bit)
{
    return bit < 64 && (vd->driver_features & VIRTIO_BIT(bit));
}

bool virtio_mmio_queue_usable(const struct virtio_mmio *vd, unsigned q)
{
    return q < vd->ops->nqueues && !vd->stopped && (vd->status & VIRTIO_STATUS_DRIVER_OK) &&
           !(vd->status & VIRTIO_STATUS_NEEDS_RESET) && vd->vq[q].ready && !vd->vq[q].broken;
}

void virtio_mmio_used(struct virtio_mmio *vd, unsigned q)
{
    if (virtq_should_notify(&vd->vq[q]))
        virtio_irq_raise(vd, VIRTIO_INT_VRING);
}

void virtio_mmio_needs_reset(struct virtio_mmio *vd, const char *fmt, ...)
{
    va_list ap;

    if (vd->status & VIRTIO_STATUS_NEEDS_RESET)
        return; /* already reported; one line per driver reset */
    va_start(ap, fmt);
    vsnprintf(vd->reason, sizeof(vd->reason), fmt, ap);
    va_end(ap);
    log_warn("%s@%u: guest error, device needs reset: %s", vd->ops->name, vd->slot, vd->reason);
    vd->status |= VIRTIO_STATUS_NEEDS_RESET;
    /* spec 2.1.2: with DRIVER_OK, NEEDS_RESET comes with a configuration change notification */
    if (vd->status & VIRTIO_STATUS_DRIVER_OK)
        virtio_irq_raise(vd, VIRTIO_INT_CONFIG);
}

void virtio_mmio_queue_broken(struct virtio_mmio *vd, unsigned q)
{
    virtio_mmio_needs_reset(vd, "queue %u: %s", q, vd->vq[q].error);
}

void virtio_mmio_config_changed(struct virtio_mmio *vd)
{
    vd->config_generation++;
    if (vd->status & VIRTIO_STATUS_DRIVER_OK)
        virtio_irq_raise(vd, VIRTIO_INT_CONFIG);
}

/* ---- handshake and registers ---- */

static void transport_reset(struct virtio_mmio *vd)
{
    vd->status = 0;
    vd->device_features_sel = vd->driver_features_sel = 0;
    vd->driver_features = 0;
    vd->queue_sel = 0;
    vd->isr = 0;
    vd->pending_kicks = 0;
    vd->reason[0] = '\0';
    for (unsigned i = 0; i < VIRTIO_MMIO_MAX_QUEUES; i++)
        virtq_reset(&vd->vq[i]);
    virtio_irq_lowered(vd);
    if (vd->ops->reset)
        vd->ops->reset(vd);
}

static void kick(struct virtio_mmio *vd, uint32_t q)
{
    if (q >= vd->ops->nqueues) {
        log_debug("%s@%u: notify of queue %u ignored", vd->ops->name, vd->slot, q);
        return;
    }
    if (vd->stopped) {
        vd->pending_kicks |= 1u << q;
        return;
    }
    if (virtio_mmio_queue_usable(vd, q))
        vd->ops->notify(vd, q);
}

void virtio_mmio_kick(struct virtio_mmio *vd, unsigned q)
{
    kick(vd, q);
}

static void write_status(struct virtio_mmio *vd, uint32_t v)
{
    uint32_t old = vd->status;

    if (v == 0) {
        transport_reset(vd);
        return;
    }
    /* Bits are only ever set by the driver (reset clears them); NEEDS_RESET is ours. */
    v = (v & VIRTIO_STATUS_ALL & ~VIRTIO_STATUS_NEEDS_RESET) | old;
    if ((v & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
        uint64_t extra = vd->driver_features & ~virtio_mmio_offered_features(vd);

        if (extra || !(vd->driver_features & VIRTIO_BIT(VIRTIO_F_VERSION_1))) {
            log_info("%s@%u: features 0x%llx refused (offered 0x%llx, VERSION_1 required)",
                     vd->ops->name, vd->slot, (unsigned long long)vd->driver_features,
                     (unsigned long long)virtio_mmio_offered_features(vd));
            v &= ~VIRTIO_STATUS_FEATURES_OK; /* the driver reads it back and gives up */
        }
    }
    vd->status = v;
    if ((v & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK)) {
        if (!(v & VIRTIO_STATUS_FEATURES_OK)) {
            virtio_mmio_needs_reset(vd, "DRIVER_OK without FEATURES_OK");
            return;
        }
        if (vd->ops->driver_ok)
            vd->ops->driver_ok(vd);
        /* Buffers made available before DRIVER_OK were not served: look at every queue now. */
        for (unsigned q = 0; q < vd->ops->nqueues; q++)
            kick(vd, q);
    }
}

static void queue_ready(struct virtio_mmio *vd, struct virtq *q, uint32_t v)
{
    unsigned qi = (unsigned)(q - vd->vq);

    if (!v) {
        /* The driver stops using the queue; a later enable starts from index 0 again. */
        q->ready = false;
        q->last_avail_idx = q->used_idx = 0;
        q->signalled_used_valid = false;
        return;
    }
    if (q->ready)
        return;
    if (!(vd->status & VIRTIO_STATUS_FEATURES_OK)) {
        virtio_mmio_needs_reset(vd, "queue %u enabled before FEATURES_OK", qi);
        return;
    }
    if (virtq_start(q, &vd->vm->mem, vd->ops->queue_max, vd->driver_features) < 0) {
        virtio_mmio_needs_reset(vd, "queue %u: %s", qi, q->error);
        return;
    }
    q->last_avail_idx = q->used_idx = 0;
    q->signalled_used_valid = false;
    q->ready = true;
}

static void set_half(uint64_t *v, bool high, uint32_t half)
{
    if (high)
        *v = (*v & 0xffffffffULL) | ((uint64_t)half << 32);
    else
        *v = (*v & ~0xffffffffULL) | half;
}

static uint32_t half(uint64_t v, bool high)
{
    return (uint32_t)(high ? v >> 32 : v);
}

static uint32_t reg_read(struct virtio_mmio *vd, uint64_t off)
{
    struct virtq *q = selected_queue(vd);

    switch (off) {
    case VIRTIO_MMIO_MAGIC_VALUE:
        return VIRTIO_MMIO_MAGIC;
    case VIRTIO_MMIO_VERSION_REG:
        return VIRTIO_MMIO_VERSION;
    case VIRTIO_MMIO_DEVICE_ID:
        return vd->ops->device_id;
    case VIRTIO_MMIO_VENDOR_ID_REG:
        return VIRTIO_MMIO_VENDOR_ID;
    case VIRTIO_MMIO_DEVICE_FEATURES:
        return vd->device_features_sel < 2
                   ? half(virtio_mmio_offered_features(vd), vd->device_features_sel == 1)
                   : 0;
    case VIRTIO_MMIO_QUEUE_NUM_MAX:
        return q ? vd->ops->queue_max : 0;
    case VIRTIO_MMIO_QUEUE_NUM:
        return q ? q->num : 0;
    case VIRTIO_MMIO_QUEUE_READY:
        return q ? q->ready : 0;
    case VIRTIO_MMIO_INTERRUPT_STATUS:
        return vd->isr;
    case VIRTIO_MMIO_STATUS:
        return vd->status;
    case VIRTIO_MMIO_QUEUE_DESC_LOW:
    case VIRTIO_MMIO_QUEUE_DESC_HIGH:
        return q ? half(q->desc_gpa, off == VIRTIO_MMIO_QUEUE_DESC_HIGH) : 0;
    case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
    case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
        return q ? half(q->avail_gpa, off == VIRTIO_MMIO_QUEUE_DRIVER_HIGH) : 0;
    case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
    case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
        return q ? half(q->used_gpa, off == VIRTIO_MMIO_QUEUE_DEVICE_HIGH) : 0;
    case VIRTIO_MMIO_SHM_LEN_LOW:
    case VIRTIO_MMIO_SHM_LEN_HIGH:
    case VIRTIO_MMIO_SHM_BASE_LOW:
    case VIRTIO_MMIO_SHM_BASE_HIGH:
        return 0xffffffffu; /* no shared memory regions */
    case VIRTIO_MMIO_CONFIG_GENERATION:
        return vd->config_generation;
    default:
        return 0;
    }
}

static void reg_write(struct virtio_mmio *vd, uint64_t off, uint32_t v)
{
    struct virtq *q = selected_queue(vd);

    switch (off) {
    case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
        vd->device_features_sel = v;
        return;
    case VIRTIO_MMIO_DRIVER_FEATURES:
        if (vd->status & VIRTIO_STATUS_FEATURES_OK)
            break; /* frozen once accepted */
        if (vd->driver_features_sel < 2)
            set_half(&vd->driver_features, vd->driver_features_sel == 1, v);
        return;
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
        vd->driver_features_sel = v;
        return;
    case VIRTIO_MMIO_QUEUE_SEL:
        vd->queue_sel = v;
        return;
    case VIRTIO_MMIO_QUEUE_READY:
        if (q)
            queue_ready(vd, q, v);
        return;
    case VIRTIO_MMIO_QUEUE_NOTIFY:
        kick(vd, v);
        return;
    case VIRTIO_MMIO_INTERRUPT_ACK:
        vd->isr &= ~v;
        virtio_irq_lowered(vd);
        return;
    case VIRTIO_MMIO_STATUS:
        write_status(vd, v);
        return;
    case VIRTIO_MMIO_SHM_SEL:
        return;
    default:
        break;
    }
    /* Queue layout: only while the selected queue is disabled, so a live queue cannot move. */
    if (q && !q->ready) {
        switch (off) {
        case VIRTIO_MMIO_QUEUE_NUM:
            q->num = v <= VIRTQ_SIZE_LIMIT ? (uint16_t)v : 0; /* 0 fails at QueueReady */
            return;
        case VIRTIO_MMIO_QUEUE_DESC_LOW:
        case VIRTIO_MMIO_QUEUE_DESC_HIGH:
            set_half(&q->desc_gpa, off == VIRTIO_MMIO_QUEUE_DESC_HIGH, v);
            return;
        case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
        case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
            set_half(&q->avail_gpa, off == VIRTIO_MMIO_QUEUE_DRIVER_HIGH, v);
            return;
        case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
        case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
            set_half(&q->used_gpa, off == VIRTIO_MMIO_QUEUE_DEVICE_HIGH, v);
            return;
        default:
            break;
        }
    }
    log_debug("%s@%u: write 0x%x to register 0x%llx ignored", vd->ops->name, vd->slot, v,
              (unsigned long long)off);
}

static void config_read(struct virtio_mmio *vd, uint64_t off, uint8_t *data, uint32_t len)
{
    memset(data, 0, len);
    if (off < vd->config_len) {
        uint64_t n = vd->config_len - off < len ? vd->config_len - off : len;
        memcpy(data, vd->config + off, n);
    }
}

void virtio_mmio_access(void *opaque, uint64_t off, void *data, uint32_t len, bool is_write)
{
    struct virtio_mmio *vd = opaque;
    uint32_t v;

    pthread_mutex_lock(&vd->lock);
    if (off >= VIRTIO_MMIO_CONFIG) {
        /* Any width; every field we expose is read-only to the driver. */
        if (!is_write)
            config_read(vd, off - VIRTIO_MMIO_CONFIG, data, len);
    } else if (len != 4 || off % 4) {
        log_debug("%s@%u: %u-byte access to register 0x%llx ignored", vd->ops->name, vd->slot, len,
                  (unsigned long long)off);
        if (!is_write)
            memset(data, 0, len);
    } else if (is_write) {
        memcpy(&v, data, 4);
        reg_write(vd, off, le32toh(v));
    } else {
        v = htole32(reg_read(vd, off));
        memcpy(data, &v, 4);
    }
    pthread_mutex_unlock(&vd->lock);
}

/* ---- lifetime ---- */

int virtio_mmio_init(struct virtio_mmio *vd, struct vm *vm, const struct virtio_device_ops *ops,
                     void *opaque)
{
    int r = -ENOSPC;

    memset(vd, 0, sizeof(*vd));
    pthread_mutex_init(&vd->lock, NULL);
    vd->ops = ops;
    vd->opaque = opaque;
    vd->vm = vm;
    vd->irq_fd = vd->resample_fd = -1;
    for (unsigned q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++)
        vd->kicks[q] = (struct virtio_kick){.vd = vd, .q = q, .fd = -1};
    if (!ops->nqueues || ops->nqueues > VIRTIO_MMIO_MAX_QUEUES || !ops->queue_max ||
        ops->queue_max > VIRTQ_SIZE_LIMIT || !ops->notify) {
        r = -EINVAL;
        goto err;
    }
    for (unsigned slot = 0; slot < VIRTIO_MMIO_SLOTS; slot++) {
        uint64_t base = VIRTIO_MMIO_BASE + (uint64_t)slot * VIRTIO_MMIO_SLOT_SIZE;

        r = bus_register(&vm->mmio, base, VIRTIO_MMIO_SLOT_SIZE, virtio_mmio_access, vd, ops->name);
        if (r == -EEXIST) {
            r = -ENOSPC;
            continue;
        }
        if (r)
            goto err;
        vd->registered = true;
        vd->slot = slot;
        vd->base = base;
        vd->gsi = VIRTIO_MMIO_GSI_BASE + slot;
        break;
    }
    if (!vd->registered)
        goto err;
    r = virtio_events_setup(vd);
    if (r)
        goto err;
    log_info("%s: slot %u at 0x%llx, GSI %u, kicks %s, interrupts %s", ops->name, vd->slot,
             (unsigned long long)vd->base, vd->gsi,
             vd->kicks[0].ioeventfd ? "ioeventfd" : "mmio-exit",
             vd->irq_mode == VIRTIO_IRQ_RESAMPLE ? "irqfd"
             : vd->irq_mode == VIRTIO_IRQ_LINE   ? "irq-line"
                                                 : "none");
    return 0;

err:
    virtio_mmio_uninit(vd);
    return r;
}

void virtio_mmio_uninit(struct virtio_mmio *vd)
{
    struct vm *vm = vd->vm;

    if (!vm)
        return;
    virtio_events_teardown(vd);
    if (vd->registered)
        bus_unregister(&vm->mmio, vd->base);
    vd->registered = false;
    pthread_mutex_destroy(&vd->lock);
    vd->vm = NULL;
}

static void vm_reset_cb(void *opaque)
{
    struct virtio_mmio *vd = opaque;

    pthread_mutex_lock(&vd->lock);
    transport_reset(vd);
    pthread_mutex_unlock(&vd->lock);
}

void virtio_mmio_fill_vm_device(struct virtio_mmio *vd, struct vm_device *dev, uint32_t instance,
                                const struct vmstate_desc *vmsd, void (*destroy)(void *opaque))
{
    *dev = (struct vm_device){
        .name = vd->ops->name,
        .instance = instance,
        .vmsd = vmsd,
        .opaque = vd,
        .reset = vm_reset_cb,
        .destroy = destroy,
    };
}

struct virtio_mmio *virtio_mmio_from_device(const struct vm_device *dev)
{
    return dev->reset == vm_reset_cb ? dev->opaque : NULL;
}

unsigned virtio_mmio_list(struct vm *vm, struct virtio_mmio_info *out, unsigned max)
{
    unsigned n = 0;

    for (unsigned i = 0; i < vm->ndevices && n < max; i++) {
        struct virtio_mmio *vd = virtio_mmio_from_device(&vm->devices[i]);
        unsigned j;

        if (!vd)
            continue;
        /* insertion by slot */
        for (j = n; j > 0 && out[j - 1].base > vd->base; j--)
            out[j] = out[j - 1];
        out[j] = (struct virtio_mmio_info){
            .base = vd->base,
            .size = VIRTIO_MMIO_SLOT_SIZE,
            .gsi = vd->gsi,
            .device_id = vd->ops->device_id,
            .name = vd->ops->name,
        };
        n++;
    }
    return n;
}
