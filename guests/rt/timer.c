/* timer.c: time for the guests: the TSC's rate, and the local APIC's one-shot timer as a wake-up.
 */
#include "rt.h"

/* Local xAPIC timer registers (offsets from RT_LAPIC_BASE). */
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TMICT     0x380 /* initial count: writing it (re)starts the countdown; 0 stops */
#define LAPIC_TDCR      0x3e0
#define TDCR_DIV16      0x3u /* divide the timer clock by 16 */
#define TIMER_DIV       16u

static void cpuid(uint32_t leaf, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(0));
}

uint64_t rt_tsc_mhz(void)
{
    uint32_t r[4];
    cpuid(0, r);
    uint32_t max = r[0];
    if (max >= 0x15) {
        cpuid(0x15, r); /* TSC = crystal (ECX Hz) * EBX / EAX */
        if (r[0] && r[1] && r[2])
            return (uint64_t)r[2] * r[1] / r[0] / 1000000;
    }
    if (max >= 0x16) {
        cpuid(0x16, r); /* base frequency in MHz */
        if (r[0] & 0xffff)
            return r[0] & 0xffff;
    }
    return 1000;
}

static void lapic_wr(uint32_t reg, uint32_t v)
{
    *(volatile uint32_t *)(uintptr_t)(RT_LAPIC_BASE + reg) = v;
}

int rt_timer_setup(void)
{
    int vec = rt_irq_local(NULL, NULL);
    if (vec < 0)
        return -1;
    lapic_wr(LAPIC_TMICT, 0);
    lapic_wr(LAPIC_TDCR, TDCR_DIV16);
    lapic_wr(LAPIC_LVT_TIMER, (uint32_t)vec); /* one-shot, not masked */
    return vec;
}

void rt_timer_arm(uint64_t ns)
{
    uint64_t count = ns ? ns / TIMER_DIV + 1 : 0;
    lapic_wr(LAPIC_TMICT, count > 0xffffffffu ? 0xffffffffu : (uint32_t)count);
}
