/* hello.c: the smallest test guest: one line on the serial console, then exit 0. */
#include "rt.h"

int main(void)
{
    if (rt_arg_present("fault")) /* negative test: a page fault reaches the runtime's IDT */
        *(volatile uint64_t *)(1ull << 40) = 1;
    rt_printf("hello from tandem guest\n");
    return RT_EXIT_OK;
}
