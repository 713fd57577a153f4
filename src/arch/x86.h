/* x86.h: the x86 architecture hooks: VM-wide setup (irqchip, PIT), vCPU CPUID, boot registers. */
#pragma once

#include <stdint.h>

struct vm;
struct vcpu;

/* In-kernel irqchip (PIC + IOAPIC + LAPIC) and PIT; called before any vCPU exists. */
int x86_vm_init(struct vm *vm);
/* CPUID from KVM_GET_SUPPORTED_CPUID, with per-vCPU APIC ids; saves the reset state. */
int x86_vcpu_init(struct vcpu *v);
/* Restore the power-on register state captured at creation. */
int x86_vcpu_reset(struct vcpu *v);
/* Multiboot v1 entry state: 32-bit flat protected mode, paging off, EAX magic, EBX info. */
int x86_setup_multiboot_regs(struct vcpu *v, uint32_t entry, uint32_t mbi_addr);
