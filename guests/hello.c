/* hello.c: the smallest test guest: one line on the serial console, then exit 0.
 *
 * Negative tests (each prints what it saw, then the hello line, unless it faults):
 *   fault  write far outside the page tables: a page fault reaches the runtime's IDT (exit 4)
 *   port   read unmapped I/O ports (0x80, 0x1234, 0xfffe word): a VMM answers all-ones
 *   oob    write and read guest-physical 0xE0000000, in the MMIO hole beyond RAM: writes are
 *          dropped and reads return all-ones
 *   iopl0  lower ring 3's IOPL to 0 (from ring 0), print a line and read port 0x80 from ring 3:
 *          each in/out raises #GP, which the runtime emulates; prints how many did, restores
 *          IOPL=3
 *   triple print a line, then triple-fault from ring 0 (IDT limit 0, then ud2): the machine
 *          resets, so nothing else is printed (run with --no-reboot / -no-reboot)
 */
#include "rt.h"

int main(void)
{
    if (rt_arg_present("fault"))
        *(volatile uint64_t *)(1ull << 40) = 1;
    if (rt_arg_present("port")) {
        outb(0x80, 0x12); /* a write to nothing is dropped */
        rt_printf("port 0x80=%x 0x1234=%x 0xfffe=%x\n", inb(0x80), inb(0x1234), inw(0xfffe));
    }
    if (rt_arg_present("oob")) {
        volatile uint32_t *p = (volatile uint32_t *)0xE0000000ull;
        *p = 0x12345678;
        rt_printf("oob 0xE0000000=%x\n", *p);
    }
    if (rt_arg_present("iopl0")) {
        uint64_t before = rt_io_traps();
        rt_set_iopl(0);
        /* The console polls LSR and writes THR with in/out too: all of them trap now. */
        uint8_t v = inb(0x80);
        rt_printf("iopl0: ring 3 runs with IOPL=%u, port 0x80=%x\n", rt_iopl(), v);
        uint64_t n = rt_io_traps() - before;
        rt_set_iopl(3);
        rt_printf("iopl0: in/out raised #GP %lu times\n", (unsigned long)n);
    }
    if (rt_arg_present("triple")) {
        rt_printf("triple: faulting now\n");
        rt_triple_fault();
    }
    rt_printf("hello from tandem guest\n");
    return RT_EXIT_OK;
}
