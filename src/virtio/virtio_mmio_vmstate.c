/* virtio_mmio_vmstate.c: migratable transport state (status, features, queues) and its checks. */
#include <errno.h>

#include "core/log.h"
#include "core/vm.h"
#include "migration/vmstate.h"
#include "virtio/virtio.h"
#include "virtio/virtio_events.h"
#include "virtio/virtio_mmio.h"

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
    /* A kick the source took but had not served, or one in flight, is not in the state: replay
     * one per queue when the device runs again (a spurious kick only finds nothing to do). */
    vd->pending_kicks = 0;
    for (unsigned q = 0; q < vd->ops->nqueues && q < VIRTIO_MMIO_MAX_QUEUES; q++)
        if (vd->vq[q].ready)
            vd->pending_kicks |= 1u << q;
    vd->reason[0] = '\0';
    if (vd->status & ~VIRTIO_STATUS_ALL || vd->isr & ~(VIRTIO_INT_VRING | VIRTIO_INT_CONFIG)) {
        r = -EINVAL;
        goto out;
    }
    if ((vd->status & VIRTIO_STATUS_FEATURES_OK) &&
        ((features & ~virtio_mmio_offered_features(vd)) ||
         !(features & VIRTIO_BIT(VIRTIO_F_VERSION_1)))) {
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
    virtio_irq_sync(vd);
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
