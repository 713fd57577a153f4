/* virtio_mmio.c: virtio-mmio v2 transport: registers, handshake, queue setup, ioeventfd kicks,
 * irqfd interrupts, stop/cont for checkpoints, and the transport's migration state. */
#include "virtio/virtio_mmio.h"

#include <endian.h>
#include <errno.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"
#include "core/vm.h"
#include "migration/vmstate.h"
#include "virtio/virtio.h"

/* Offered by the transport for every device (VERSION_1 is also required from the driver). */
#define TRANSPORT_FEATURES                                                                         \
    (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_RING_INDIRECT_DESC) |                    \
     VIRTIO_BIT(VIRTIO_F_RING_EVENT_IDX))

static uint64_t offered_features(const struct virtio_mmio *vd)
{
    return vd->device_features | TRANSPORT_FEATURES;
}

static struct virtq *selected_queue(struct virtio_mmio *vd)
{
    return vd->queue_sel < vd->ops->nqueues ? &vd->vq[vd->queue_sel] : NULL;
}

/* ---- interrupts ---- */

static void irq_line(struct virtio_mmio *vd, uint32_t level)
{
    struct kvm_irq_level irq = {.irq = vd->gsi, .level = level};

    if (ioctl(vd->vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
        log_warn("%s@%u: KVM_IRQ_LINE %u: %s", vd->ops->name, vd->slot, vd->gsi, strerror(errno));
}

static void irqfd_signal(struct virtio_mmio *vd)
{
    uint64_t one = 1;

    if (write(vd->irq_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("%s@%u: irqfd write: %s", vd->ops->name, vd->slot, strerror(errno));
}

/* Set bit in InterruptStatus and assert the line. */
static void raise_irq(struct virtio_mmio *vd, uint32_t bit)
{
    vd->isr |= bit;
    vd->irq_count++;
    switch (vd->irq_mode) {
    case VIRTIO_IRQ_RESAMPLE:
        irqfd_signal(vd); /* a no-op while the line is still asserted */
        break;
    case VIRTIO_IRQ_LINE:
        irq_line(vd, 1);
        break;
    case VIRTIO_IRQ_NONE:
        break;
    }
}

/* InterruptStatus went down (ACK, reset). With resampling, KVM lowers the line at EOI. */
static void update_line(struct virtio_mmio *vd)
{
    if (vd->irq_mode == VIRTIO_IRQ_LINE && !vd->isr)
        irq_line(vd, 0);
}

/* The guest EOIed our level interrupt; KVM lowered the line. Raise it again if still pending. */
static void on_resample(void *opaque, uint32_t events)
{
    struct virtio_mmio *vd = opaque;
    uint64_t v;

    if (read(vd->resample_fd, &v, sizeof(v)) < 0)
        return;
    pthread_mutex_lock(&vd->lock);
    if (vd->isr && !vd->stopped) /* stopped: cont re-raises */
        irqfd_signal(vd);
    pthread_mutex_unlock(&vd->lock);
}

/* ---- device-facing helpers ---- */

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
        raise_irq(vd, VIRTIO_INT_VRING);
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
        raise_irq(vd, VIRTIO_INT_CONFIG);
}

void virtio_mmio_queue_broken(struct virtio_mmio *vd, unsigned q)
{
    virtio_mmio_needs_reset(vd, "queue %u: %s", q, vd->vq[q].error);
}

void virtio_mmio_config_changed(struct virtio_mmio *vd)
{
    vd->config_generation++;
    if (vd->status & VIRTIO_STATUS_DRIVER_OK)
        raise_irq(vd, VIRTIO_INT_CONFIG);
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
    update_line(vd);
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
        uint64_t extra = vd->driver_features & ~offered_features(vd);

        if (extra || !(vd->driver_features & VIRTIO_BIT(VIRTIO_F_VERSION_1))) {
            log_info("%s@%u: features 0x%llx refused (offered 0x%llx, VERSION_1 required)",
                     vd->ops->name, vd->slot, (unsigned long long)vd->driver_features,
                     (unsigned long long)offered_features(vd));
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
                   ? half(offered_features(vd), vd->device_features_sel == 1)
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
        update_line(vd);
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

/* ---- kicks ---- */

static void on_kick(void *opaque, uint32_t events)
{
    struct virtio_kick *k = opaque;
    uint64_t count;

    if (read(k->fd, &count, sizeof(count)) < 0)
        return;
    pthread_mutex_lock(&k->vd->lock);
    kick(k->vd, k->q);
    pthread_mutex_unlock(&k->vd->lock);
}

static int ioeventfd(struct virtio_mmio *vd, struct virtio_kick *k, bool assign)
{
    struct kvm_ioeventfd io = {
        .datamatch = k->q,
        .addr = vd->base + VIRTIO_MMIO_QUEUE_NOTIFY,
        .len = 4,
        .fd = k->fd,
        .flags = KVM_IOEVENTFD_FLAG_DATAMATCH | (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
    };

    return ioctl(vd->vm->vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

/* One eventfd per queue, matched on the queue index. Without one (no KVM, no loop, or the ioctl
 * failed) the notify write exits to the vCPU thread and the bus handler serves it. */
static int setup_kicks(struct virtio_mmio *vd)
{
    struct vm *vm = vd->vm;

    if (vm->vm_fd < 0 || !vm->loop)
        return 0;
    for (unsigned q = 0; q < vd->ops->nqueues; q++) {
        struct virtio_kick *k = &vd->kicks[q];
        int r;

        k->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (k->fd < 0)
            return -errno;
        r = ioeventfd(vd, k, true);
        if (r) {
            log_warn("%s@%u: KVM_IOEVENTFD: %s; queue %u kicks take MMIO exits", vd->ops->name,
                     vd->slot, strerror(-r), q);
            close(k->fd);
            k->fd = -1;
            continue;
        }
        k->ioeventfd = true;
        r = loop_add_fd(vm->loop, k->fd, EPOLLIN, on_kick, k);
        if (r)
            return r;
    }
    return 0;
}

static int irqfd(struct virtio_mmio *vd, bool assign)
{
    struct kvm_irqfd f = {
        .fd = (uint32_t)vd->irq_fd,
        .gsi = vd->gsi,
        .flags = assign ? KVM_IRQFD_FLAG_RESAMPLE : KVM_IRQFD_FLAG_DEASSIGN,
        .resamplefd = assign ? (uint32_t)vd->resample_fd : 0,
    };

    return ioctl(vd->vm->vm_fd, KVM_IRQFD, &f) < 0 ? -errno : 0;
}

/* A level-triggered line through irqfd with resampling; KVM_IRQ_LINE if that is unavailable. */
static int setup_irq(struct virtio_mmio *vd)
{
    struct vm *vm = vd->vm;
    int r;

    if (vm->vm_fd < 0) {
        vd->irq_mode = VIRTIO_IRQ_NONE;
        return 0;
    }
    vd->irq_mode = VIRTIO_IRQ_LINE;
    if (!vm->loop)
        return 0;
    vd->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    vd->resample_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vd->irq_fd < 0 || vd->resample_fd < 0)
        return -errno;
    r = irqfd(vd, true);
    if (r) {
        log_warn("%s@%u: KVM_IRQFD (resample) on GSI %u: %s; using KVM_IRQ_LINE", vd->ops->name,
                 vd->slot, vd->gsi, strerror(-r));
        close(vd->irq_fd);
        close(vd->resample_fd);
        vd->irq_fd = vd->resample_fd = -1;
        return 0;
    }
    vd->irq_mode = VIRTIO_IRQ_RESAMPLE;
    return loop_add_fd(vm->loop, vd->resample_fd, EPOLLIN, on_resample, vd);
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
    r = setup_kicks(vd);
    if (r)
        goto err;
    r = setup_irq(vd);
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
    for (unsigned q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++) {
        struct virtio_kick *k = &vd->kicks[q];

        if (k->fd < 0)
            continue;
        if (vm->loop)
            loop_del_fd(vm->loop, k->fd);
        if (k->ioeventfd)
            ioeventfd(vd, k, false);
        close(k->fd);
        k->fd = -1;
        k->ioeventfd = false;
    }
    if (vd->irq_mode == VIRTIO_IRQ_RESAMPLE) {
        loop_del_fd(vm->loop, vd->resample_fd);
        irqfd(vd, false);
    }
    if (vd->irq_fd >= 0)
        close(vd->irq_fd);
    if (vd->resample_fd >= 0)
        close(vd->resample_fd);
    vd->irq_fd = vd->resample_fd = -1;
    vd->irq_mode = VIRTIO_IRQ_NONE;
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

/* ---- stop / cont ---- */

void virtio_mmio_stop(struct virtio_mmio *vd)
{
    /* Taking the lock waits for any handler in progress; after it nobody starts one. */
    pthread_mutex_lock(&vd->lock);
    vd->stopped = true;
    pthread_mutex_unlock(&vd->lock);
}

static void resume_cb(void *opaque)
{
    struct virtio_mmio *vd = opaque;
    uint32_t pending;

    pthread_mutex_lock(&vd->lock);
    if (!vd->stopped) {
        pending = vd->pending_kicks;
        vd->pending_kicks = 0;
        if (vd->isr && vd->irq_mode == VIRTIO_IRQ_RESAMPLE)
            irqfd_signal(vd); /* a resample may have come while stopped */
        for (unsigned q = 0; q < vd->ops->nqueues; q++)
            if (pending & (1u << q))
                kick(vd, q);
        if (vd->ops->resume)
            vd->ops->resume(vd);
    }
    pthread_mutex_unlock(&vd->lock);
}

void virtio_mmio_cont(struct virtio_mmio *vd)
{
    bool was;

    pthread_mutex_lock(&vd->lock);
    was = vd->stopped;
    vd->stopped = false;
    pthread_mutex_unlock(&vd->lock);
    if (!was)
        return;
    /* Backends live on the main loop: restart them there, not on the caller's thread. */
    if (vd->vm->loop && loop_call(vd->vm->loop, resume_cb, vd) == 0)
        return;
    resume_cb(vd);
}

void virtio_stop_all(struct vm *vm)
{
    for (unsigned i = 0; i < vm->ndevices; i++) {
        struct virtio_mmio *vd = virtio_mmio_from_device(&vm->devices[i]);
        if (vd)
            virtio_mmio_stop(vd);
    }
}

void virtio_cont_all(struct vm *vm)
{
    for (unsigned i = 0; i < vm->ndevices; i++) {
        struct virtio_mmio *vd = virtio_mmio_from_device(&vm->devices[i]);
        if (vd)
            virtio_mmio_cont(vd);
    }
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

/* ---- migration ---- */

static const struct vmstate_field virtq_fields[] = {
    VMS_U16(struct virtq, num),
    VMS_BOOL(struct virtq, ready),
    VMS_U64(struct virtq, desc_gpa),
    VMS_U64(struct virtq, avail_gpa),
    VMS_U64(struct virtq, used_gpa),
    VMS_U16(struct virtq, last_avail_idx),
    VMS_U16(struct virtq, used_idx),
    VMS_U16(struct virtq, signalled_used),
    VMS_BOOL(struct virtq, signalled_used_valid),
    VMS_END,
};

static const struct vmstate_desc virtq_vmsd = {
    .name = "virtq",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = virtq_fields,
};

/* The stream is hostile: accept only a state this transport could have reached itself. */
static int transport_post_load(void *opaque, uint32_t version_id)
{
    struct virtio_mmio *vd = opaque;
    uint64_t features = vd->driver_features;
    int r = 0;

    pthread_mutex_lock(&vd->lock);
    vd->pending_kicks = 0;
    vd->reason[0] = '\0';
    if (vd->status & ~VIRTIO_STATUS_ALL || vd->isr & ~(VIRTIO_INT_VRING | VIRTIO_INT_CONFIG)) {
        r = -EINVAL;
        goto out;
    }
    if ((vd->status & VIRTIO_STATUS_FEATURES_OK) &&
        ((features & ~offered_features(vd)) || !(features & VIRTIO_BIT(VIRTIO_F_VERSION_1)))) {
        r = -EINVAL;
        goto out;
    }
    for (unsigned q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++) {
        struct virtq *vq = &vd->vq[q];

        if (vq->ready && (q >= vd->ops->nqueues || !(vd->status & VIRTIO_STATUS_FEATURES_OK))) {
            r = -EINVAL;
            goto out;
        }
        if (virtq_post_load(vq, &vd->vm->mem, vd->ops->queue_max, features) < 0) {
            log_err("%s@%u: incoming queue %u rejected: %s", vd->ops->name, vd->slot, q, vq->error);
            r = -EINVAL;
            goto out;
        }
    }
    /* Bring the line in step with the restored InterruptStatus. */
    if (vd->irq_mode == VIRTIO_IRQ_LINE)
        irq_line(vd, vd->isr ? 1 : 0);
    else if (vd->irq_mode == VIRTIO_IRQ_RESAMPLE && vd->isr && !vd->stopped)
        irqfd_signal(vd);
out:
    pthread_mutex_unlock(&vd->lock);
    return r;
}

static const struct vmstate_field virtio_mmio_fields[] = {
    VMS_U32(struct virtio_mmio, status),
    VMS_U32(struct virtio_mmio, device_features_sel),
    VMS_U32(struct virtio_mmio, driver_features_sel),
    VMS_U64(struct virtio_mmio, driver_features),
    VMS_U32(struct virtio_mmio, queue_sel),
    VMS_U32(struct virtio_mmio, isr),
    VMS_U32(struct virtio_mmio, config_generation),
    VMS_STRUCT_ARRAY(struct virtio_mmio, vq, struct virtq, VIRTIO_MMIO_MAX_QUEUES, &virtq_vmsd),
    VMS_END,
};

const struct vmstate_desc virtio_mmio_vmsd = {
    .name = "virtio-mmio",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = virtio_mmio_fields,
    .post_load = transport_post_load,
};
