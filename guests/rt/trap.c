/* trap.c: the ring-0 exception handler: emulates ring-3 port I/O and hlt, ring-0 services,
 * reports the rest. */
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

/* The hlts of rt_wait_irq and rt_ring0_call (entry.S). */
extern const uint8_t rt_wait_hlt[], rt_ring0_hlt[];
long rt_ring0_call(uint64_t op, uint64_t arg);

/* rt_ring0_call's services (RDI). */
#define R0_SET_IOPL     1 /* RSI: the IOPL ring 3 resumes with */
#define R0_TRIPLE_FAULT 2 /* no IDT, then an exception: the CPU shuts down */

#define RFLAGS_IOPL 0x3000ull

/* in/out instructions emulated by emulate_io (ring 3 lacked the I/O privilege). */
static volatile uint64_t io_traps;

unsigned rt_iopl(void)
{
    uint64_t rflags;
    __asm__ volatile("pushfq; popq %0" : "=r"(rflags));
    return (unsigned)(rflags >> 12) & 3;
}

int rt_io_native(void)
{
    return rt_iopl() == 3;
}

uint64_t rt_io_traps(void)
{
    return io_traps;
}

void rt_set_iopl(unsigned iopl)
{
    rt_ring0_call(R0_SET_IOPL, iopl);
}

_Noreturn void rt_triple_fault(void)
{
    rt_ring0_call(R0_TRIPLE_FAULT, 0);
    rt_halt(); /* not reached: the CPU resets instead of returning */
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
    io_traps++;
    return 1;
}

/* rt_ring0_call: op in RDI, argument in RSI, result in RAX; resumes after the hlt. */
static void ring0_service(struct rt_frame *f)
{
    /* An IDT limit of 0 covers no gate: the exception finds no gate (#GP), neither does that
     * #GP (#DF), nor the #DF: a triple fault, which shuts the CPU down (the VMM resets it). */
    static const struct __attribute__((packed)) {
        uint16_t limit;
        uint64_t base;
    } no_idt = {0, 0};

    switch (f->rdi) {
    case R0_SET_IOPL:
        f->rflags = (f->rflags & ~RFLAGS_IOPL) | (f->rsi & 3) << 12;
        f->rax = 0;
        break;
    case R0_TRIPLE_FAULT:
        __asm__ volatile("lidt %0\n\tud2" : : "m"(no_idt) : "memory");
        for (;;)
            __asm__ volatile("cli; hlt");
    default:
        f->rax = (uint64_t)-1;
        break;
    }
    f->rip++;
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
        if (f->rip == (uintptr_t)rt_ring0_hlt) {
            ring0_service(f);
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
