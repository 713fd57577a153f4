/* x86_state.c: the complete vCPU and chip state record: checks of a (hostile) incoming record, and
 * get/set through the running engine (accel/). */
#include "arch/x86_state.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "accel/accel.h"
#include "core/vcpu.h"
#include "core/vm.h"

int x86_cpu_state_get(struct vcpu *v, struct x86_cpu_state *s)
{
    memset(s, 0, sizeof(*s));
    return v->vm->accel->cpu_state_get(v, s);
}

int x86_cpu_state_set(struct vcpu *v, const struct x86_cpu_state *s)
{
    return v->vm->accel->cpu_state_set(v, s);
}

int x86_vm_state_get(struct vm *vm, struct x86_vm_state *s)
{
    memset(s, 0, sizeof(*s));
    return vm->accel->vm_state_get(vm, s);
}

int x86_vm_state_set(struct vm *vm, const struct x86_vm_state *s)
{
    return vm->accel->vm_state_set(vm, s);
}

int x86_cpu_state_check(const struct x86_cpu_state *s, char *err, size_t errlen)
{
    if (s->nmsrs > X86_MAX_MSRS) {
        snprintf(err, errlen, "vCPU state: %u MSRs (max %d)", s->nmsrs, X86_MAX_MSRS);
        return -EINVAL;
    }
    if (s->mp.mp_state > KVM_MP_STATE_AP_RESET_HOLD) {
        snprintf(err, errlen, "vCPU state: bad mp_state %u", s->mp.mp_state);
        return -EINVAL;
    }
    /* Long mode needs paging and PAE; anything else KVM would refuse later, less clearly. */
    if ((s->sregs.efer & (1u << 10)) && !((s->sregs.cr0 & 0x80000000u) && (s->sregs.cr4 & 0x20))) {
        snprintf(err, errlen, "vCPU state: EFER.LMA without CR0.PG and CR4.PAE");
        return -EINVAL;
    }
    if (s->xcrs.nr_xcrs > KVM_MAX_XCRS) {
        snprintf(err, errlen, "vCPU state: %u XCRs", s->xcrs.nr_xcrs);
        return -EINVAL;
    }
    return 0;
}

int x86_vm_state_check(const struct x86_vm_state *s, char *err, size_t errlen)
{
    if (s->pic_master.chip_id != KVM_IRQCHIP_PIC_MASTER ||
        s->pic_slave.chip_id != KVM_IRQCHIP_PIC_SLAVE || s->ioapic.chip_id != KVM_IRQCHIP_IOAPIC) {
        snprintf(err, errlen, "VM state: irqchip ids out of place");
        return -EINVAL;
    }
    for (int i = 0; i < 3; i++) {
        /* 0xff is KVM's "never programmed" after reset. */
        if ((s->pit.channels[i].mode > 5 && s->pit.channels[i].mode != 0xff) ||
            s->pit.channels[i].rw_mode > 3) {
            snprintf(err, errlen, "VM state: PIT channel %d mode %u rw_mode %u out of range", i,
                     s->pit.channels[i].mode, s->pit.channels[i].rw_mode);
            return -EINVAL;
        }
    }
    return 0;
}
