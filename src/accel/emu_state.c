/* emu_state.c: the emulator's CPU and chip state in the shared record (arch/x86_state.h, KVM's ABI
 * structs), so snapshots, migrations and checkpoints move between the emulator and KVM.
 *
 * What maps where: GPRs/RIP/RFLAGS -> kvm_regs; segments with their hidden parts, descriptor
 * tables, CRs, EFER, APIC base -> kvm_sregs; the FXSAVE image -> the legacy area of the XSAVE
 * region (x87|SSE in XSTATE_BV); XCR0 -> kvm_xcrs; the LAPIC page -> kvm_lapic_state; the
 * interrupt shadow and a pending NMI -> kvm_vcpu_events; HLT -> mp_state; DR0-3/6/7 -> debugregs;
 * the syscall, sysenter, PAT, TSC and TSC_AUX MSRs -> the MSR list. The I/O APIC -> the ioapic
 * chip; the PIC and PIT do not exist here (KVM's records for them are ignored on load, and
 * saved as KVM's "never programmed" values); the clock is the vCPU 0 time in ns.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "accel/emu_int.h"
#include "arch/x86_state.h"
#include "core/log.h"
#include "core/vcpu.h"
#include "core/vm.h"

#define MSR_TSC            0x10
#define MSR_SYSENTER_CS    0x174
#define MSR_SYSENTER_ESP   0x175
#define MSR_SYSENTER_EIP   0x176
#define MSR_MISC_ENABLE    0x1a0
#define MSR_PAT            0x277
#define MSR_TSC_DEADLINE   0x6e0
#define MSR_STAR           0xc0000081
#define MSR_LSTAR          0xc0000082
#define MSR_CSTAR          0xc0000083
#define MSR_SFMASK         0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102
#define MSR_TSC_AUX        0xc0000103

#define XSAVE_HDR_OFFSET 512

static const uint32_t saved_msrs[] = {
    MSR_TSC,          MSR_SYSENTER_CS, MSR_SYSENTER_ESP,   MSR_SYSENTER_EIP,
    MSR_MISC_ENABLE,  MSR_PAT,         MSR_STAR,           MSR_LSTAR,
    MSR_CSTAR,        MSR_SFMASK,      MSR_KERNEL_GS_BASE, MSR_TSC_AUX,
    MSR_TSC_DEADLINE,
};

/* Where each general-purpose register (in encoding order, c->r[]) sits in struct kvm_regs. */
static const size_t gpr_offset[16] = {
    offsetof(struct kvm_regs, rax), offsetof(struct kvm_regs, rcx), offsetof(struct kvm_regs, rdx),
    offsetof(struct kvm_regs, rbx), offsetof(struct kvm_regs, rsp), offsetof(struct kvm_regs, rbp),
    offsetof(struct kvm_regs, rsi), offsetof(struct kvm_regs, rdi), offsetof(struct kvm_regs, r8),
    offsetof(struct kvm_regs, r9),  offsetof(struct kvm_regs, r10), offsetof(struct kvm_regs, r11),
    offsetof(struct kvm_regs, r12), offsetof(struct kvm_regs, r13), offsetof(struct kvm_regs, r14),
    offsetof(struct kvm_regs, r15),
};

/* The kvm_sregs member of segment register k (encoding order). */
static struct kvm_segment *sreg_slot(struct kvm_sregs *sr, int k)
{
    struct kvm_segment *slots[] = {&sr->es, &sr->cs, &sr->ss, &sr->ds, &sr->fs, &sr->gs};

    return slots[k];
}

int emu_cpu_state_get(struct vcpu *v, struct x86_cpu_state *s)
{
    struct emu_cpu *c = &((struct emu_vcpu *)v->accel_vcpu)->cpu;
    struct kvm_regs *r = &s->regs;
    struct kvm_sregs *sr = &s->sregs;
    uint64_t bv = 3; /* x87 | SSE */

    for (size_t k = 0; k < 16; k++)
        memcpy((uint8_t *)r + gpr_offset[k], &c->r[k], sizeof(uint64_t));
    r->rip = c->rip;
    r->rflags = emu_get_rflags(c);

    for (int k = S_ES; k <= S_GS; k++)
        *sreg_slot(sr, k) = c->seg[k];
    sr->tr = c->tr;
    sr->ldt = c->ldt;
    sr->gdt = c->gdt;
    sr->idt = c->idt;
    sr->cr0 = c->cr0;
    sr->cr2 = c->cr2;
    sr->cr3 = c->cr3;
    sr->cr4 = c->cr4;
    sr->cr8 = emu_lapic_get_cr8(c->lapic); /* CR8 is the TPR's priority class */
    sr->efer = c->efer;
    sr->apic_base = c->apic_base;

    memcpy(s->xsave, c->fxsave, sizeof(c->fxsave));
    memcpy(s->xsave + XSAVE_HDR_OFFSET, &bv, sizeof(bv));
    s->xcrs.nr_xcrs = 1;
    s->xcrs.xcrs[0].xcr = 0;
    s->xcrs.xcrs[0].value = c->xcr0 ? c->xcr0 : 1;

    emu_lapic_get(c->lapic, &s->lapic);

    s->events.flags = KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_NMI_PENDING;
    s->events.interrupt.shadow = c->shadow ? KVM_X86_SHADOW_INT_STI : 0;
    s->events.nmi.pending = c->nmi_pending;
    s->mp.mp_state = c->halted ? KVM_MP_STATE_HALTED : KVM_MP_STATE_RUNNABLE;

    memcpy(s->dregs.db, c->dr, sizeof(s->dregs.db));
    s->dregs.dr6 = c->dr[6];
    s->dregs.dr7 = c->dr[7];

    s->nmsrs = 0;
    for (size_t i = 0; i < sizeof(saved_msrs) / sizeof(saved_msrs[0]); i++) {
        uint64_t val;
        if (emu_rdmsr(c, saved_msrs[i], &val) < 0)
            continue;
        s->msrs[s->nmsrs].index = saved_msrs[i];
        s->msrs[s->nmsrs].data = val;
        s->nmsrs++;
    }
    return 0;
}

int emu_cpu_state_set(struct vcpu *v, const struct x86_cpu_state *s)
{
    struct emu_cpu *c = &((struct emu_vcpu *)v->accel_vcpu)->cpu;
    const struct kvm_regs *r = &s->regs;
    const struct kvm_sregs *sr = &s->sregs;
    int err;

    for (size_t k = 0; k < 16; k++)
        memcpy(&c->r[k], (const uint8_t *)r + gpr_offset[k], sizeof(uint64_t));
    c->rip = r->rip;
    emu_set_rflags(c, r->rflags | 2);

    for (int k = S_ES; k <= S_GS; k++)
        c->seg[k] = *sreg_slot((struct kvm_sregs *)sr, k);
    c->tr = sr->tr;
    c->ldt = sr->ldt;
    c->gdt = sr->gdt;
    c->idt = sr->idt;
    c->cr0 = sr->cr0;
    c->cr2 = sr->cr2;
    c->cr3 = sr->cr3;
    c->cr4 = sr->cr4;
    /* CR8 is not kept apart: the TPR arrives in the LAPIC page below. */
    c->efer = sr->efer;
    /* KVM's CPL is SS.DPL (CS.DPL differs only for conforming code). */
    c->cpl = (sr->cr0 & CR0_PE) ? sr->ss.dpl : 0;

    memcpy(c->fxsave, s->xsave, sizeof(c->fxsave));
    c->xcr0 = 1;
    for (uint32_t i = 0; i < s->xcrs.nr_xcrs && i < KVM_MAX_XCRS; i++)
        if (s->xcrs.xcrs[i].xcr == 0)
            c->xcr0 = s->xcrs.xcrs[i].value;

    c->apic_base = sr->apic_base;
    emu_lapic_set_base(c->lapic, sr->apic_base);
    err = emu_lapic_set(c->lapic, &s->lapic);
    if (err)
        return err;

    c->shadow = (s->events.flags & KVM_VCPUEVENT_VALID_SHADOW) && s->events.interrupt.shadow;
    c->nmi_pending = (s->events.flags & KVM_VCPUEVENT_VALID_NMI_PENDING) && s->events.nmi.pending;
    c->halted = s->mp.mp_state == KVM_MP_STATE_HALTED ||
                s->mp.mp_state == KVM_MP_STATE_UNINITIALIZED ||
                s->mp.mp_state == KVM_MP_STATE_INIT_RECEIVED;

    memcpy(c->dr, s->dregs.db, sizeof(s->dregs.db));
    c->dr[6] = s->dregs.dr6;
    c->dr[7] = s->dregs.dr7;

    for (uint32_t i = 0; i < s->nmsrs && i < X86_MAX_MSRS; i++) {
        if (s->msrs[i].index == MSR_TSC) {
            /* The TSC continues from the saved value on this vCPU's clock. */
            c->tsc_offset = s->msrs[i].data - emu_cpu_time_ns(c);
            continue;
        }
        if (emu_wrmsr(c, s->msrs[i].index, s->msrs[i].data) < 0)
            log_debug("emu: vcpu%d: MSR 0x%x from the record not emulated (ignored)", v->id,
                      s->msrs[i].index);
    }
    c->stop = EMU_STOP_NONE;
    c->fault_depth = 0;
    emu_tlb_flush(c);
    emu_mode_changed(c);
    return 0;
}

int emu_vm_state_get(struct vm *vm, struct x86_vm_state *s)
{
    struct emu_vmctx *x = vm->accel_vm;

    s->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
    s->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
    s->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
    emu_ioapic_get(x->evm.ioapic, &s->ioapic.chip.ioapic);
    for (int i = 0; i < 3; i++)
        s->pit.channels[i].mode = 0xff; /* never programmed */
    s->clock.clock = x->evm.cpus[0] ? emu_cpu_time_ns(x->evm.cpus[0]) : 0;
    return 0;
}

int emu_vm_state_set(struct vm *vm, const struct x86_vm_state *s)
{
    struct emu_vmctx *x = vm->accel_vm;

    return emu_ioapic_set(x->evm.ioapic, &s->ioapic.chip.ioapic);
}
