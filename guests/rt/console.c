/* console.c: output on the COM1 serial port (THR at 0x3f8, LSR at 0x3fd). */
#include "rt.h"

void rt_putc(char c)
{
    /* LSR.THRE; give up waiting after a while so a UART that never says ready cannot hang us */
    for (unsigned i = 0; i < 1000 && !(inb(RT_COM1 + 5) & 0x20); i++)
        ;
    outb(RT_COM1, (uint8_t)c);
}

void rt_write(const char *s, size_t n)
{
    while (n--)
        rt_putc(*s++);
}

void rt_puts(const char *s)
{
    rt_write(s, strlen(s));
}
