/* kvm_state.c: the KVM engine's CPU side: CPUID, the reset state, and complete vCPU and in-kernel
 * chip state (regs, sregs, XSAVE, XCRs, MSRs, LAPIC, events, PIC/IOAPIC/PIT, kvmclock). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "accel/kvm_int.h"
#include "arch/x86_state.h"
#include "core/log.h"
#include "core/vcpu.h"
#include "core/vm.h"

#define CPUID_MAX_ENTRIES 256

static int setup_cpuid(struct vcpu *v)
{
    struct kvm_vm *k = v->vm->accel_vm;
    struct kvm_vcpu *kv = v->accel_vcpu;
    struct kvm_cpuid2 *cpuid;
    int err = 0;

    cpuid = calloc(1, sizeof(*cpuid) + CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2));
    if (!cpuid)
        return -ENOMEM;
    cpuid->nent = CPUID_MAX_ENTRIES;
    if (ioctl(k->kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) {
        err = -errno;
        log_err("x86: KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
        goto out;
    }
    for (uint32_t i = 0; i < cpuid->nent; i++) {
        struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
        switch (e->function) {
        case 1:
            /* Initial APIC id and logical processor count. */
            e->ebx =
                (e->ebx & 0x0000ffffu) | ((uint32_t)v->id << 24) | ((uint32_t)v->vm->ncpus << 16);
            break;
        case 0xb:
        case 0x1f:
            e->edx = (uint32_t)v->id; /* x2APIC id */
            break;
        default:
            break;
        }
    }
    if (ioctl(kv->fd, KVM_SET_CPUID2, cpuid) < 0) {
        err = -errno;
        log_err("x86: KVM_SET_CPUID2: %s", strerror(errno));
    }
out:
    free(cpuid);
    return err;
}

int kvm_vcpu_setup(struct vcpu *v)
{
    struct kvm_vcpu *kv = v->accel_vcpu;
    struct kvm_reset_state *rs = &kv->reset;
    int err = setup_cpuid(v);

    if (err)
        return err;
    if (ioctl(kv->fd, KVM_GET_REGS, &rs->regs) < 0 ||
        ioctl(kv->fd, KVM_GET_SREGS, &rs->sregs) < 0 || ioctl(kv->fd, KVM_GET_FPU, &rs->fpu) < 0 ||
        ioctl(kv->fd, KVM_GET_LAPIC, &rs->lapic) < 0 ||
        ioctl(kv->fd, KVM_GET_MP_STATE, &rs->mp) < 0) {
        log_err("kvm: vcpu%d: reading reset state: %s", v->id, strerror(errno));
        return -errno;
    }
    return 0;
}

int kvm_vcpu_reset(struct vcpu *v)
{
    struct kvm_vcpu *kv = v->accel_vcpu;
    struct kvm_reset_state *rs = &kv->reset;
    struct kvm_vcpu_events ev;

    memset(&ev, 0, sizeof(ev));
    if (ioctl(kv->fd, KVM_SET_SREGS, &rs->sregs) < 0 ||
        ioctl(kv->fd, KVM_SET_REGS, &rs->regs) < 0 || ioctl(kv->fd, KVM_SET_FPU, &rs->fpu) < 0 ||
        ioctl(kv->fd, KVM_SET_LAPIC, &rs->lapic) < 0 ||
        ioctl(kv->fd, KVM_SET_MP_STATE, &rs->mp) < 0 ||
        ioctl(kv->fd, KVM_SET_VCPU_EVENTS, &ev) < 0) {
        log_err("kvm: vcpu%d: reset: %s", v->id, strerror(errno));
        return -errno;
    }
    return 0;
}

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

static int msrs_probe(struct vcpu *v)
{
    _Alignas(struct kvm_msr_list) uint8_t raw[sizeof(struct kvm_msr_list) + 512 * sizeof(uint32_t)];
    struct kvm_msr_list *list = (struct kvm_msr_list *)raw;

    if (msrs_probed)
        return 0;
    memset(raw, 0, sizeof(raw));
    list->nmsrs = 512;
    if (ioctl(((struct kvm_vm *)v->vm->accel_vm)->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0)
        return -errno;
    msr_count = 0;
    for (uint32_t i = 0; i < list->nmsrs && msr_count < X86_MAX_MSRS; i++) {
        struct kvm_msr_entry e = {.index = list->indices[i]};
        /* Keep only MSRs that round-trip on this host: read one, write it back. */
        if (get_msrs(((struct kvm_vcpu *)v->accel_vcpu)->fd, &e, 1) != 1)
            continue;
        if (set_msrs(((struct kvm_vcpu *)v->accel_vcpu)->fd, &e, 1) != 1)
            continue;
        msr_list[msr_count++] = list->indices[i];
    }
    msrs_probed = true;
    log_info("x86: %u of %u MSRs migratable", msr_count, list->nmsrs);
    return 0;
}

int kvm_cpu_state_get(struct vcpu *v, struct x86_cpu_state *s)
{
    int fd = ((struct kvm_vcpu *)v->accel_vcpu)->fd, r;

    r = msrs_probe(v);
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

int kvm_cpu_state_set(struct vcpu *v, const struct x86_cpu_state *s)
{
    int fd = ((struct kvm_vcpu *)v->accel_vcpu)->fd, r;
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

int kvm_vm_state_get(struct vm *vm, struct x86_vm_state *s)
{
    int vmfd = ((struct kvm_vm *)vm->accel_vm)->vm_fd;

    s->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
    s->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
    s->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
    if (ioctl(vmfd, KVM_GET_IRQCHIP, &s->pic_master) < 0 ||
        ioctl(vmfd, KVM_GET_IRQCHIP, &s->pic_slave) < 0 ||
        ioctl(vmfd, KVM_GET_IRQCHIP, &s->ioapic) < 0 || ioctl(vmfd, KVM_GET_PIT2, &s->pit) < 0 ||
        ioctl(vmfd, KVM_GET_CLOCK, &s->clock) < 0) {
        log_err("x86: reading VM state: %s", strerror(errno));
        return -errno;
    }
    return 0;
}

int kvm_vm_state_set(struct vm *vm, const struct x86_vm_state *s)
{
    int vmfd = ((struct kvm_vm *)vm->accel_vm)->vm_fd;
    struct kvm_clock_data clock = {.clock = s->clock.clock};

    if (ioctl(vmfd, KVM_SET_IRQCHIP, &s->pic_master) < 0 ||
        ioctl(vmfd, KVM_SET_IRQCHIP, &s->pic_slave) < 0 ||
        ioctl(vmfd, KVM_SET_IRQCHIP, &s->ioapic) < 0 || ioctl(vmfd, KVM_SET_PIT2, &s->pit) < 0) {
        log_err("x86: restoring irqchip/PIT: %s", strerror(errno));
        return -errno;
    }
    /* kvmclock continues from the saved value, so guest time never runs backwards. */
    if (ioctl(vmfd, KVM_SET_CLOCK, &clock) < 0) {
        log_err("x86: KVM_SET_CLOCK: %s", strerror(errno));
        return -errno;
    }
    return 0;
}
