/* virtio_events.c: virtio-mmio signalling: kicks in (ioeventfd, else MMIO exits), interrupts out
 * (irqfd with resampling, else an interrupt line), and stop/cont of both around checkpoints.
 * Both go through the engine (accel/), whichever it is. */
#include "virtio/virtio_events.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"
#include "core/vm.h"
#include "virtio/virtio.h"

/* ---- interrupts ---- */

static void irq_line(struct virtio_mmio *vd, uint32_t level)
{
    int r = vm_irq_line(vd->vm, vd->gsi, (int)level);

    if (r < 0)
        log_warn("%s@%u: interrupt line %u: %s", vd->ops->name, vd->slot, vd->gsi, strerror(-r));
}

static void irqfd_signal(struct virtio_mmio *vd)
{
    uint64_t one = 1;

    if (write(vd->irq_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("%s@%u: irqfd write: %s", vd->ops->name, vd->slot, strerror(errno));
}

/* Set bit in InterruptStatus and assert the line. */
void virtio_irq_raise(struct virtio_mmio *vd, uint32_t bit)
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

/* InterruptStatus went down (ACK, reset). With resampling, the engine lowers the line at EOI. */
void virtio_irq_lowered(struct virtio_mmio *vd)
{
    if (vd->irq_mode == VIRTIO_IRQ_LINE && !vd->isr)
        irq_line(vd, 0);
}

void virtio_irq_sync(struct virtio_mmio *vd)
{
    if (vd->irq_mode == VIRTIO_IRQ_LINE)
        irq_line(vd, vd->isr ? 1 : 0);
    else if (vd->irq_mode == VIRTIO_IRQ_RESAMPLE && vd->isr && !vd->stopped)
        irqfd_signal(vd); /* stopped: cont raises it */
}

/* The guest EOIed our level interrupt; the engine lowered the line. Raise it again if still
 * pending. */
static void on_resample(void *opaque, uint32_t events)
{
    struct virtio_mmio *vd = opaque;
    uint64_t v;

    if (read(vd->resample_fd, &v, sizeof(v)) < 0)
        return;
    virtio_mmio_enter(vd);
    if (vd->isr && !vd->stopped) /* stopped: cont re-raises */
        irqfd_signal(vd);
    virtio_mmio_leave(vd);
}

/* ---- kicks ---- */

static void on_kick(void *opaque, uint32_t events)
{
    struct virtio_kick *k = opaque;
    uint64_t count;

    if (read(k->fd, &count, sizeof(count)) < 0)
        return;
    virtio_mmio_enter(k->vd);
    virtio_mmio_kick(k->vd, k->q);
    virtio_mmio_leave(k->vd);
}

static int ioeventfd(struct virtio_mmio *vd, struct virtio_kick *k, bool assign)
{
    return vd->vm->accel->ioeventfd(vd->vm, vd->base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, k->q, k->fd,
                                    assign);
}

/* One eventfd per queue, matched on the queue index. Without one (no engine, no loop, or the
 * engine has none) the notify write reaches the bus on the vCPU thread. */
static int setup_kicks(struct virtio_mmio *vd)
{
    struct vm *vm = vd->vm;

    if (!vm->accel || !vm->loop)
        return 0;
    for (unsigned q = 0; q < vd->ops->nqueues; q++) {
        struct virtio_kick *k = &vd->kicks[q];
        int r;

        k->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (k->fd < 0)
            return -errno;
        r = ioeventfd(vd, k, true);
        if (r) {
            if (r != -ENOSYS)
                log_warn("%s@%u: ioeventfd: %s; queue %u kicks take MMIO exits", vd->ops->name,
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
    return vd->vm->accel->irqfd(vd->vm, vd->gsi, vd->irq_fd, vd->resample_fd, assign);
}

/* A level-triggered line through irqfd with resampling; a plain line if that is unavailable. */
static int setup_irq(struct virtio_mmio *vd)
{
    struct vm *vm = vd->vm;
    int r;

    if (!vm->accel) {
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
        if (r != -ENOSYS)
            log_warn("%s@%u: irqfd (resample) on GSI %u: %s; using the line", vd->ops->name,
                     vd->slot, vd->gsi, strerror(-r));
        close(vd->irq_fd);
        close(vd->resample_fd);
        vd->irq_fd = vd->resample_fd = -1;
        return 0;
    }
    vd->irq_mode = VIRTIO_IRQ_RESAMPLE;
    return loop_add_fd(vm->loop, vd->resample_fd, EPOLLIN, on_resample, vd);
}

int virtio_events_setup(struct virtio_mmio *vd)
{
    int r = setup_kicks(vd);

    return r ? r : setup_irq(vd);
}

void virtio_events_teardown(struct virtio_mmio *vd)
{
    struct vm *vm = vd->vm;

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
}

/* ---- stop / cont ---- */

void virtio_mmio_stop(struct virtio_mmio *vd)
{
    /* Taking the lock waits for any handler in progress; after it nobody starts one. */
    pthread_mutex_lock(&vd->lock);
    vd->stopped = true;
    pthread_mutex_unlock(&vd->lock);
}

/* vd->lock held. */
static void resume(struct virtio_mmio *vd)
{
    uint32_t pending;

    if (!vd->stopped) {
        pending = vd->pending_kicks;
        vd->pending_kicks = 0;
        if (vd->isr && vd->irq_mode == VIRTIO_IRQ_RESAMPLE)
            irqfd_signal(vd); /* a resample may have come while stopped */
        for (unsigned q = 0; q < vd->ops->nqueues; q++)
            if (pending & (1u << q))
                virtio_mmio_kick(vd, q);
        if (vd->ops->resume)
            vd->ops->resume(vd);
    }
}

static void resume_cb(void *opaque)
{
    struct virtio_mmio *vd = opaque;

    virtio_mmio_enter(vd);
    resume(vd);
    virtio_mmio_leave(vd);
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
    /* No loop (unit tests), or out of memory: here, without vm->dev_lock, which the caller
     * (a checkpoint) may hold. */
    pthread_mutex_lock(&vd->lock);
    resume(vd);
    pthread_mutex_unlock(&vd->lock);
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
