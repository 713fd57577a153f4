/* vcpu.h: one thread per vCPU running the KVM_RUN loop and dispatching exits to the buses. */
#pragma once

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct vm;

struct vcpu {
    struct vm *vm;
    int id;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool thread_started;
    bool parked;
    /* Last exit was I/O or MMIO whose instruction completes on the next KVM_RUN. */
    bool io_pending;
    uint64_t exits; /* statistics */
};

int vcpu_create(struct vm *vm, int id, struct vcpu **out);
void vcpu_destroy(struct vcpu *v);
int vcpu_start_thread(struct vcpu *v);
/* Kick the vCPU out of KVM_RUN (immediate_exit + signal). Caller holds vm->lock. */
void vcpu_kick(struct vcpu *v);
/* Reset registers to the power-on state (used by system_reset before the loader runs again). */
int vcpu_reset_regs(struct vcpu *v);
