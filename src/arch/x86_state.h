/* x86_state.h: complete vCPU and in-kernel chip state (KVM ABI structs) for save, load and check.
 */
#pragma once

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct vcpu;

#define X86_MAX_MSRS 128

/* Everything KVM needs to recreate one vCPU. The KVM structs travel as their x86 ABI bytes. */
struct x86_cpu_state {
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    /* struct kvm_xsave's 4 KiB region (FPU/SSE/AVX); kept as bytes because the struct ends in a
     * flexible array in newer headers and cannot sit mid-struct in ISO C. */
    _Alignas(8) uint8_t xsave[4096];
    struct kvm_xcrs xcrs;
    struct kvm_lapic_state lapic;
    struct kvm_vcpu_events events;
    struct kvm_mp_state mp;
    struct kvm_debugregs dregs;
    uint32_t nmsrs;
    struct kvm_msr_entry msrs[X86_MAX_MSRS];
};

/* VM-wide in-kernel devices and time. */
struct x86_vm_state {
    struct kvm_irqchip pic_master;
    struct kvm_irqchip pic_slave;
    struct kvm_irqchip ioapic;
    struct kvm_pit_state2 pit;
    struct kvm_clock_data clock;
};

int x86_cpu_state_get(struct vcpu *v, struct x86_cpu_state *s);
/* Validates before touching the vCPU: a hostile stream must not reach KVM unchecked. */
int x86_cpu_state_check(const struct x86_cpu_state *s, char *err, size_t errlen);
int x86_cpu_state_set(struct vcpu *v, const struct x86_cpu_state *s);

int x86_vm_state_get(struct vm *vm, struct x86_vm_state *s);
int x86_vm_state_check(const struct x86_vm_state *s, char *err, size_t errlen);
int x86_vm_state_set(struct vm *vm, const struct x86_vm_state *s);
