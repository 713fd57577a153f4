/* hello.c: the smallest test guest: one line on the serial console, then exit 0. */
#include "rt.h"

int main(void)
{
    rt_printf("hello from tandem guest\n");
    return RT_EXIT_OK;
}
