/* vcpu.h: one thread per vCPU running the engine's run loop and dispatching exits to the buses. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct vm;

struct vcpu {
    struct vm *vm;
    int id;
    void *accel_vcpu; /* the engine's own vCPU record */
    pthread_t thread;
    bool thread_started;
    bool parked;
    uint64_t exits; /* statistics */
};

int vcpu_create(struct vm *vm, int id, struct vcpu **out);
void vcpu_destroy(struct vcpu *v);
int vcpu_start_thread(struct vcpu *v);
/* Make the vCPU leave its engine soon. Caller holds vm->lock. */
void vcpu_kick(struct vcpu *v);
/* Port I/O and MMIO to the buses: from the common loop (KVM exits) and from inside an emulated
 * instruction (emu). Unmapped accesses read all-ones and are logged at debug level. */
void vcpu_pio(struct vcpu *v, uint16_t port, void *data, uint32_t size, bool is_write);
void vcpu_mmio(struct vcpu *v, uint64_t gpa, void *data, uint32_t len, bool is_write);
