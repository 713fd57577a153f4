/* x86.c: x86 VM and vCPU setup for KVM: irqchip, PIT, CPUID, reset state and multiboot entry. */
#include "arch/x86.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "boot/multiboot.h"
#include "core/log.h"
#include "core/vcpu.h"
#include "core/vm.h"

#define CPUID_MAX_ENTRIES 256

/* Power-on state captured per vCPU id at creation, restored by system_reset. */
struct reset_state {
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_fpu fpu;
    struct kvm_lapic_state lapic;
    struct kvm_mp_state mp;
};
static struct reset_state reset_states[VM_MAX_CPUS];

int x86_vm_init(struct vm *vm)
{
    struct kvm_pit_config pit = {.flags = 0};

    /* Needed by VMX for real mode; harmless (and may be refused) elsewhere. */
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0)
        log_debug("x86: KVM_SET_TSS_ADDR: %s (ignored)", strerror(errno));
    if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
        log_err("x86: KVM_CREATE_IRQCHIP: %s", strerror(errno));
        return -errno;
    }
    if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
        log_err("x86: KVM_CREATE_PIT2: %s", strerror(errno));
        return -errno;
    }
    return 0;
}

static int setup_cpuid(struct vcpu *v)
{
    struct kvm_cpuid2 *cpuid;
    int err = 0;

    cpuid = calloc(1, sizeof(*cpuid) + CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2));
    if (!cpuid)
        return -ENOMEM;
    cpuid->nent = CPUID_MAX_ENTRIES;
    if (ioctl(v->vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) {
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
    if (ioctl(v->fd, KVM_SET_CPUID2, cpuid) < 0) {
        err = -errno;
        log_err("x86: KVM_SET_CPUID2: %s", strerror(errno));
    }
out:
    free(cpuid);
    return err;
}

int x86_vcpu_init(struct vcpu *v)
{
    struct reset_state *rs;
    int err;

    if (v->id < 0 || v->id >= VM_MAX_CPUS)
        return -EINVAL;
    err = setup_cpuid(v);
    if (err)
        return err;
    rs = &reset_states[v->id];
    if (ioctl(v->fd, KVM_GET_REGS, &rs->regs) < 0 || ioctl(v->fd, KVM_GET_SREGS, &rs->sregs) < 0 ||
        ioctl(v->fd, KVM_GET_FPU, &rs->fpu) < 0 || ioctl(v->fd, KVM_GET_LAPIC, &rs->lapic) < 0 ||
        ioctl(v->fd, KVM_GET_MP_STATE, &rs->mp) < 0) {
        log_err("x86: vcpu%d: reading reset state: %s", v->id, strerror(errno));
        return -errno;
    }
    return 0;
}

int x86_vcpu_reset(struct vcpu *v)
{
    struct reset_state *rs = &reset_states[v->id];
    struct kvm_vcpu_events ev;

    memset(&ev, 0, sizeof(ev));
    if (ioctl(v->fd, KVM_SET_SREGS, &rs->sregs) < 0 || ioctl(v->fd, KVM_SET_REGS, &rs->regs) < 0 ||
        ioctl(v->fd, KVM_SET_FPU, &rs->fpu) < 0 || ioctl(v->fd, KVM_SET_LAPIC, &rs->lapic) < 0 ||
        ioctl(v->fd, KVM_SET_MP_STATE, &rs->mp) < 0 || ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev) < 0) {
        log_err("x86: vcpu%d: reset: %s", v->id, strerror(errno));
        return -errno;
    }
    return 0;
}

static void flat_segment(struct kvm_segment *s, uint16_t sel, uint8_t type)
{
    memset(s, 0, sizeof(*s));
    s->base = 0;
    s->limit = 0xffffffffu;
    s->selector = sel;
    s->type = type;
    s->present = 1;
    s->dpl = 0;
    s->db = 1;
    s->s = 1;
    s->g = 1;
}

int x86_setup_multiboot_regs(struct vcpu *v, uint32_t entry, uint32_t mbi_addr)
{
    struct kvm_sregs sregs;
    struct kvm_regs regs;

    if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
        return -errno;
    flat_segment(&sregs.cs, 0x10, 0xb); /* execute/read, accessed */
    flat_segment(&sregs.ds, 0x18, 0x3); /* read/write, accessed */
    sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
    sregs.cr0 = 0x11; /* PE | ET; paging off */
    sregs.cr4 = 0;
    sregs.efer = 0;
    if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
        return -errno;
    memset(&regs, 0, sizeof(regs));
    regs.rip = entry;
    regs.rax = MB_BOOTLOADER_MAGIC;
    regs.rbx = mbi_addr;
    regs.rflags = 0x2;
    if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
        return -errno;
    return 0;
}
