/* fakevm.h: a VM without KVM for device tests: guest RAM, buses and the inventory, plus a tiny
 * virtio-mmio driver (register access and the init handshake). */
#pragma once

#include <stdint.h>

#include "core/vm.h"
#include "ring.h"

/* RAM only; no engine and no loop, so kicks take the MMIO path and interrupts only count. */
int fake_vm_init(struct vm *vm, uint64_t mem_size);
/* Destroy the devices (reverse order), the buses and RAM. */
void fake_vm_destroy(struct vm *vm);

uint32_t mmio_rd(struct vm *vm, uint64_t addr);
void mmio_wr(struct vm *vm, uint64_t addr, uint32_t v);

/* Driver side of the handshake up to FEATURES_OK; returns the status read back. */
uint32_t driver_negotiate(struct vm *vm, uint64_t base, uint64_t features);
/* Program queue q from ring r and set QueueReady. */
void driver_queue(struct vm *vm, uint64_t base, unsigned q, const struct test_ring *r);
/* negotiate + queue 0 + DRIVER_OK; returns the final status. */
uint32_t driver_setup(struct vm *vm, uint64_t base, uint64_t features, const struct test_ring *r);
