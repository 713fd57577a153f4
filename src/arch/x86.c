/* x86.c: x86 boot state: the Multiboot v1 entry registers, written through the state record so
 * that every engine (KVM, emu) starts the guest identically. */
#include "arch/x86.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86_state.h"
#include "boot/multiboot.h"
#include "core/vcpu.h"

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
    struct x86_cpu_state *s = malloc(sizeof(*s)); /* ~7 KiB: not on the stack */
    int err;

    if (!s)
        return -ENOMEM;
    err = x86_cpu_state_get(v, s);
    if (err)
        goto out;
    flat_segment(&s->sregs.cs, 0x10, 0xb); /* execute/read, accessed */
    flat_segment(&s->sregs.ds, 0x18, 0x3); /* read/write, accessed */
    s->sregs.es = s->sregs.fs = s->sregs.gs = s->sregs.ss = s->sregs.ds;
    s->sregs.cr0 = 0x11; /* PE | ET; paging off */
    s->sregs.cr4 = 0;
    s->sregs.efer = 0;
    memset(&s->regs, 0, sizeof(s->regs));
    s->regs.rip = entry;
    s->regs.rax = MB_BOOTLOADER_MAGIC;
    s->regs.rbx = mbi_addr;
    s->regs.rflags = 0x2;
    err = x86_cpu_state_set(v, s);
out:
    free(s);
    return err;
}
