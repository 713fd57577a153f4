/* kvm_int.h: the KVM engine's private records, shared by kvm.c and kvm_state.c. */
#pragma once

#include <linux/kvm.h>
#include <stdbool.h>

#include "core/vm.h"

struct x86_cpu_state;
struct x86_vm_state;

/* Power-on state captured per vCPU at creation, restored by system_reset. */
struct kvm_reset_state {
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_fpu fpu;
    struct kvm_lapic_state lapic;
    struct kvm_mp_state mp;
};

struct kvm_vm {
    int kvm_fd;
    int vm_fd;
    int mmap_size;
    bool logging;
    unsigned long *scratch; /* KVM_GET_DIRTY_LOG buffer, sized for the largest slot */
};

struct kvm_vcpu {
    int fd;
    struct kvm_run *run;
    /* Last exit was I/O or MMIO whose instruction completes on the next KVM_RUN. */
    bool io_pending;
    struct kvm_reset_state reset;
};

/* kvm_state.c */
int kvm_vcpu_setup(struct vcpu *v); /* CPUID, then capture the reset state */
int kvm_vcpu_reset(struct vcpu *v);
int kvm_cpu_state_get(struct vcpu *v, struct x86_cpu_state *s);
int kvm_cpu_state_set(struct vcpu *v, const struct x86_cpu_state *s);
int kvm_vm_state_get(struct vm *vm, struct x86_vm_state *s);
int kvm_vm_state_set(struct vm *vm, const struct x86_vm_state *s);
