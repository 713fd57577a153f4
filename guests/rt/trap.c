/* trap.c: the ring-0 exception handler: emulates ring-3 port I/O and hlt, reports the rest. */
#include "rt.h"

/* Built by the IDT stubs in entry.S: caller-saved registers, then vector, error code and the
 * CPU's interrupt frame. */
struct rt_frame {
    uint64_t r11, r10, r9, r8, rdi, rsi, rdx, rcx, rax;
    uint64_t vec, err, rip, cs, rflags, rsp, ss;
};

#define VEC_GP 13
#define VEC_PF 14

void rt_trap(struct rt_frame *f);

/* The hlt of rt_wait_irq (entry.S). */
extern const uint8_t rt_wait_hlt[];

int rt_io_native(void)
{
    uint64_t rflags;
    __asm__ volatile("pushfq; popq %0" : "=r"(rflags));
    return (rflags & 0x3000) == 0x3000;
}

_Noreturn void rt_halt(void)
{
    for (;;)
        __asm__ volatile("hlt");
}

/* in/out (byte, word, dword; immediate or DX port) that raised #GP in ring 3 because IOPL is
 * not honoured: do the access here and step over the instruction. Returns 0 if the
 * instruction is something else. Kept short: ring-0 code is emulated on our hosts. */
static int emulate_io(struct rt_frame *f)
{
    const uint8_t *ip = (const uint8_t *)f->rip;
    unsigned len = 0, size = 4;
    uint16_t port;

    if (ip[0] == 0x66) {
        size = 2;
        len = 1;
    }
    uint8_t op = ip[len++];
    if (op >= 0xe4 && op <= 0xe7)
        port = ip[len++];
    else if (op >= 0xec && op <= 0xef)
        port = (uint16_t)f->rdx;
    else
        return 0;
    if (!(op & 1))
        size = 1;

    uint32_t v = (uint32_t)f->rax;
    if (op & 2) {
        if (size == 1)
            outb(port, (uint8_t)v);
        else if (size == 2)
            outw(port, (uint16_t)v);
        else
            outl(port, v);
    } else if (size == 1) {
        f->rax = (f->rax & ~0xffull) | inb(port);
    } else if (size == 2) {
        f->rax = (f->rax & ~0xffffull) | inw(port);
    } else {
        f->rax = inl(port); /* a 32-bit result clears the upper half */
    }
    f->rip += len;
    return 1;
}

/* rt_wait_irq: IF=0 here (interrupt gate, and ring 3 runs with IF=0), so an interrupt that
 * arrived since the caller read seen is either counted already or still pending in the local
 * APIC; sti's one-instruction shadow lets the pending one in only once hlt is reached, where it
 * ends the sleep. */
static void wait_irq(struct rt_frame *f)
{
    if (rt_irq_count() == f->rdi)
        __asm__ volatile("sti; hlt; cli" : : : "memory");
    f->rip++;
}

/* Called by isr_common in ring 0. Returns to resume the interrupted code. */
void rt_trap(struct rt_frame *f)
{
    if (f->vec == VEC_GP && (f->cs & 3) == 3 && f->err == 0) {
        if (f->rip == (uintptr_t)rt_wait_hlt) {
            wait_irq(f);
            return;
        }
        if (emulate_io(f))
            return;
        if (*(const uint8_t *)f->rip == 0xf4) /* hlt from ring 3: stop for good */
            for (;;)
                __asm__ volatile("cli; hlt");
    }
    rt_printf("EXCEPTION vec=%lu rip=0x%lx err=0x%lx", f->vec, f->rip, f->err);
    if (f->vec == VEC_PF) {
        uint64_t cr2;
        __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
        rt_printf(" cr2=0x%lx", cr2);
    }
    rt_printf(" cs=0x%lx rsp=0x%lx rflags=0x%lx\n", f->cs, f->rsp, f->rflags);
    outb(RT_DEBUG_EXIT_PORT, RT_EXIT_EXCEPTION);
    for (;;)
        __asm__ volatile("cli; hlt");
}
