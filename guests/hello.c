/* hello.c: the smallest test guest: one line on the serial console, then exit 0.
 *
 * Negative tests (each prints what it saw, then the hello line, unless it faults):
 *   fault  write far outside the page tables: a page fault reaches the runtime's IDT (exit 4)
 *   port   read unmapped I/O ports (0x80, 0x1234, 0xfffe word): a VMM answers all-ones
 *   oob    write and read guest-physical 0xE0000000, in the MMIO hole beyond RAM: writes are
 *          dropped and reads return all-ones
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
    rt_printf("hello from tandem guest\n");
    return RT_EXIT_OK;
}
