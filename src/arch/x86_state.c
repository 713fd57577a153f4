/* x86_state.c: read and restore complete vCPU state, PIC/IOAPIC/PIT and kvmclock through KVM. */
#include "arch/x86_state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "core/log.h"
#include "core/vcpu.h"
#include "core/vm.h"

#define MSR_IA32_TSC 0x10

static uint32_t msr_list[X86_MAX_MSRS];
static uint32_t msr_count;
static bool msrs_probed;

/* struct kvm_msrs ends in a flexible array: build it in an aligned byte buffer. */
#define MSRS_BUF_SIZE (sizeof(struct kvm_msrs) + X86_MAX_MSRS * sizeof(struct kvm_msr_entry))

static int msrs_ioctl(int fd, unsigned long req, struct kvm_msr_entry *e, uint32_t n)
{
    _Alignas(struct kvm_msrs) uint8_t raw[MSRS_BUF_SIZE];
    struct kvm_msrs *m = (struct kvm_msrs *)raw;
    int r;

    if (n > X86_MAX_MSRS)
        return -EINVAL;
    memset(raw, 0, sizeof(raw));
    m->nmsrs = n;
    memcpy(m->entries, e, sizeof(*e) * n);
    r = ioctl(fd, req, m);
    if (r < 0)
        return -errno;
    if (req == KVM_GET_MSRS)
        memcpy(e, m->entries, sizeof(*e) * n);
    return r; /* number of MSRs transferred */
}

static int get_msrs(int fd, struct kvm_msr_entry *e, uint32_t n)
{
    return msrs_ioctl(fd, KVM_GET_MSRS, e, n);
}

static int set_msrs(int fd, const struct kvm_msr_entry *e, uint32_t n)
{
    struct kvm_msr_entry copy[X86_MAX_MSRS];

    if (n > X86_MAX_MSRS)
        return -EINVAL;
    memcpy(copy, e, sizeof(*e) * n);
    return msrs_ioctl(fd, KVM_SET_MSRS, copy, n);
}

int x86_msrs_probe(struct vcpu *v)
{
    _Alignas(struct kvm_msr_list) uint8_t raw[sizeof(struct kvm_msr_list) + 512 * sizeof(uint32_t)];
    struct kvm_msr_list *list = (struct kvm_msr_list *)raw;

    if (msrs_probed)
        return 0;
    memset(raw, 0, sizeof(raw));
    list->nmsrs = 512;
    if (ioctl(v->vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0)
        return -errno;
    msr_count = 0;
    for (uint32_t i = 0; i < list->nmsrs && msr_count < X86_MAX_MSRS; i++) {
        struct kvm_msr_entry e = {.index = list->indices[i]};
        /* Keep only MSRs that round-trip on this host: read one, write it back. */
        if (get_msrs(v->fd, &e, 1) != 1)
            continue;
        if (set_msrs(v->fd, &e, 1) != 1)
            continue;
        msr_list[msr_count++] = list->indices[i];
    }
    msrs_probed = true;
    log_info("x86: %u of %u MSRs migratable", msr_count, list->nmsrs);
    return 0;
}

int x86_cpu_state_get(struct vcpu *v, struct x86_cpu_state *s)
{
    int fd = v->fd, r;

    memset(s, 0, sizeof(*s));
    r = x86_msrs_probe(v);
    if (r)
        return r;
    if (ioctl(fd, KVM_GET_REGS, &s->regs) < 0 || ioctl(fd, KVM_GET_SREGS, &s->sregs) < 0 ||
        ioctl(fd, KVM_GET_XSAVE, s->xsave) < 0 || ioctl(fd, KVM_GET_XCRS, &s->xcrs) < 0 ||
        ioctl(fd, KVM_GET_LAPIC, &s->lapic) < 0 || ioctl(fd, KVM_GET_VCPU_EVENTS, &s->events) < 0 ||
        ioctl(fd, KVM_GET_MP_STATE, &s->mp) < 0 || ioctl(fd, KVM_GET_DEBUGREGS, &s->dregs) < 0) {
        r = -errno;
        log_err("x86: vcpu%d: reading state: %s", v->id, strerror(errno));
        return r;
    }
    s->nmsrs = msr_count;
    for (uint32_t i = 0; i < msr_count; i++)
        s->msrs[i].index = msr_list[i];
    r = get_msrs(fd, s->msrs, msr_count);
    if (r < 0 || (uint32_t)r != msr_count) {
        log_err("x86: vcpu%d: read %d of %u MSRs", v->id, r, msr_count);
        return r < 0 ? r : -EIO;
    }
    return 0;
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

int x86_cpu_state_set(struct vcpu *v, const struct x86_cpu_state *s)
{
    int fd = v->fd, r;
    struct kvm_vcpu_events ev = s->events;

    /* Order matters: sregs (modes, APIC base) before MSRs and LAPIC; events last. */
    if (ioctl(fd, KVM_SET_SREGS, &s->sregs) < 0)
        goto fail;
    if (ioctl(fd, KVM_SET_REGS, &s->regs) < 0)
        goto fail;
    if (ioctl(fd, KVM_SET_XSAVE, s->xsave) < 0)
        goto fail;
    if (s->xcrs.nr_xcrs && ioctl(fd, KVM_SET_XCRS, &s->xcrs) < 0)
        goto fail;
    r = set_msrs(fd, s->msrs, s->nmsrs);
    if (r < 0 || (uint32_t)r != s->nmsrs) {
        log_err("x86: vcpu%d: wrote %d of %u MSRs", v->id, r, s->nmsrs);
        return r < 0 ? r : -EIO;
    }
    if (ioctl(fd, KVM_SET_LAPIC, &s->lapic) < 0)
        goto fail;
    if (ioctl(fd, KVM_SET_MP_STATE, &s->mp) < 0)
        goto fail;
    if (ioctl(fd, KVM_SET_DEBUGREGS, &s->dregs) < 0)
        goto fail;
    ev.flags &= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |
                KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
    if (ioctl(fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
        goto fail;
    return 0;
fail:
    r = -errno;
    log_err("x86: vcpu%d: restoring state: %s", v->id, strerror(errno));
    return r;
}

int x86_vm_state_get(struct vm *vm, struct x86_vm_state *s)
{
    memset(s, 0, sizeof(*s));
    s->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
    s->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
    s->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
    if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &s->pic_master) < 0 ||
        ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &s->pic_slave) < 0 ||
        ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &s->ioapic) < 0 ||
        ioctl(vm->vm_fd, KVM_GET_PIT2, &s->pit) < 0 ||
        ioctl(vm->vm_fd, KVM_GET_CLOCK, &s->clock) < 0) {
        log_err("x86: reading VM state: %s", strerror(errno));
        return -errno;
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

int x86_vm_state_set(struct vm *vm, const struct x86_vm_state *s)
{
    struct kvm_clock_data clock = {.clock = s->clock.clock};

    if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &s->pic_master) < 0 ||
        ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &s->pic_slave) < 0 ||
        ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &s->ioapic) < 0 ||
        ioctl(vm->vm_fd, KVM_SET_PIT2, &s->pit) < 0) {
        log_err("x86: restoring irqchip/PIT: %s", strerror(errno));
        return -errno;
    }
    /* kvmclock continues from the saved value, so guest time never runs backwards. */
    if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0) {
        log_err("x86: KVM_SET_CLOCK: %s", strerror(errno));
        return -errno;
    }
    return 0;
}
