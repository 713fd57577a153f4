/* fakevm.c: a KVM-less VM and a minimal virtio-mmio driver for device tests. */
#include "fakevm.h"

#include <string.h>

#include "virtio/virtio.h"
#include "virtio/virtio_mmio.h"

int fake_vm_init(struct vm *vm, uint64_t mem_size)
{
    memset(vm, 0, sizeof(*vm));
    pthread_mutex_init(&vm->dev_lock, NULL);
    vm->accel = NULL;
    bus_init(&vm->pio, "pio", 0x10000);
    bus_init(&vm->mmio, "mmio", 0);
    return gmem_init(&vm->mem, mem_size);
}

void fake_vm_destroy(struct vm *vm)
{
    for (unsigned i = vm->ndevices; i-- > 0;)
        if (vm->devices[i].destroy)
            vm->devices[i].destroy(vm->devices[i].opaque);
    vm->ndevices = 0;
    bus_destroy(&vm->pio);
    bus_destroy(&vm->mmio);
    gmem_destroy(&vm->mem);
}

uint32_t mmio_rd(struct vm *vm, uint64_t addr)
{
    uint32_t v = 0;

    bus_dispatch(&vm->mmio, addr, &v, 4, false);
    return v;
}

void mmio_wr(struct vm *vm, uint64_t addr, uint32_t v)
{
    bus_dispatch(&vm->mmio, addr, &v, 4, true);
}

uint32_t driver_negotiate(struct vm *vm, uint64_t base, uint64_t features)
{
    mmio_wr(vm, base + VIRTIO_MMIO_STATUS, 0);
    mmio_wr(vm, base + VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
    mmio_wr(vm, base + VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    mmio_wr(vm, base + VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    mmio_wr(vm, base + VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
    mmio_wr(vm, base + VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    mmio_wr(vm, base + VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
    mmio_wr(vm, base + VIRTIO_MMIO_STATUS,
            VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    return mmio_rd(vm, base + VIRTIO_MMIO_STATUS);
}

void driver_queue(struct vm *vm, uint64_t base, unsigned q, const struct test_ring *r)
{
    mmio_wr(vm, base + VIRTIO_MMIO_QUEUE_SEL, q);
    mmio_wr(vm, base + VIRTIO_MMIO_QUEUE_NUM, r->num);
    mmio_wr(vm, base + VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)r->desc);
    mmio_wr(vm, base + VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(r->desc >> 32));
    mmio_wr(vm, base + VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)r->avail);
    mmio_wr(vm, base + VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(r->avail >> 32));
    mmio_wr(vm, base + VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)r->used);
    mmio_wr(vm, base + VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(r->used >> 32));
    mmio_wr(vm, base + VIRTIO_MMIO_QUEUE_READY, 1);
}

uint32_t driver_setup(struct vm *vm, uint64_t base, uint64_t features, const struct test_ring *r)
{
    uint32_t st = driver_negotiate(vm, base, features);

    driver_queue(vm, base, 0, r);
    mmio_wr(vm, base + VIRTIO_MMIO_STATUS, st | VIRTIO_STATUS_DRIVER_OK);
    return mmio_rd(vm, base + VIRTIO_MMIO_STATUS);
}
