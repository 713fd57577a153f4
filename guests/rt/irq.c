/* irq.c: irq mode: local APIC and I/O APIC setup, IDT gates, the ring-0 interrupt dispatch. */
#include "rt.h"

/* Local xAPIC registers (offsets from RT_LAPIC_BASE). */
#define LAPIC_TPR       0x080
#define LAPIC_EOI       0x0b0
#define LAPIC_SVR       0x0f0
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_SVR_ON    0x100u
#define LVT_MASKED      0x10000u

/* I/O APIC: an index register and a data window; redirection entry n at 0x10 + 2n (low word)
 * and 0x11 + 2n (high word: destination in bits 24..31). */
#define IOAPIC_REGSEL  0x00
#define IOAPIC_WIN     0x10
#define IOAPIC_VER     0x01
#define IOREDTBL(n)    (0x10u + 2u * (n))
#define REDIR_LEVEL    (1u << 15) /* level-triggered; bits 8..13 = 0: fixed, physical, high */
#define REDIR_MASKED   (1u << 16)
#define REDIR_DEST_ID0 0u /* high word: APIC id 0 */

#define SEL_KCODE 0x08

struct route {
    void (*handler)(void *);
    void *arg;
};

/* From entry.S. */
extern uint8_t rt_idt[];
extern const uint64_t rt_irq_stubs[RT_IRQ_NVEC];
void rt_irq_spurious(void);

void rt_irq_dispatch(uint64_t index);

static struct route routes[RT_IRQ_NVEC];
static unsigned nroutes;
static volatile uint64_t irq_count;

static uint32_t lapic_rd(uint32_t reg)
{
    return *(volatile const uint32_t *)(uintptr_t)(RT_LAPIC_BASE + reg);
}

static void lapic_wr(uint32_t reg, uint32_t v)
{
    *(volatile uint32_t *)(uintptr_t)(RT_LAPIC_BASE + reg) = v;
}

static uint32_t ioapic_rd(uintptr_t base, uint32_t reg)
{
    *(volatile uint32_t *)(base + IOAPIC_REGSEL) = reg;
    return *(volatile const uint32_t *)(base + IOAPIC_WIN);
}

static void ioapic_wr(uintptr_t base, uint32_t reg, uint32_t v)
{
    *(volatile uint32_t *)(base + IOAPIC_REGSEL) = reg;
    *(volatile uint32_t *)(base + IOAPIC_WIN) = v;
}

/* A 64-bit interrupt gate (DPL 0, IF cleared on entry) to handler. The IDT lies in .data, which
 * ring 3 may write like any of its pages; IDTR already covers all 256 entries. */
static void set_gate(unsigned vec, uintptr_t handler)
{
    volatile uint32_t *g = (volatile uint32_t *)(rt_idt + vec * 16);
    g[0] = (uint32_t)(handler & 0xffff) | SEL_KCODE << 16;
    g[1] = (uint32_t)(handler & 0xffff0000u) | 0x8e00;
    g[2] = (uint32_t)(handler >> 32);
    g[3] = 0;
}

static void lapic_init(void)
{
    set_gate(RT_IRQ_SPURIOUS, (uintptr_t)rt_irq_spurious);
    lapic_wr(LAPIC_TPR, 0);
    /* No 8259 interrupts through LINT0 (firmware leaves it in ExtINT mode on the BSP). */
    lapic_wr(LAPIC_LVT_LINT0, lapic_rd(LAPIC_LVT_LINT0) | LVT_MASKED);
    lapic_wr(LAPIC_SVR, LAPIC_SVR_ON | RT_IRQ_SPURIOUS);
}

/* The next free stub and its vector, with its gate installed and handler(arg) behind it; the
 * first call enables the local APIC. -1 when all are used. */
static int take_vector(void (*handler)(void *), void *arg)
{
    if (nroutes == RT_IRQ_NVEC) {
        rt_printf("irq: all %u vectors in use\n", RT_IRQ_NVEC);
        return -1;
    }
    if (!nroutes)
        lapic_init();
    unsigned i = nroutes++;
    routes[i] = (struct route){handler, arg};
    set_gate(RT_IRQ_VEC_BASE + i, (uintptr_t)rt_irq_stubs[i]);
    return (int)(RT_IRQ_VEC_BASE + i);
}

int rt_irq_local(void (*handler)(void *), void *arg)
{
    return take_vector(handler, arg);
}

int rt_irq_route(uintptr_t ioapic, unsigned pin, void (*handler)(void *), void *arg)
{
    if (nroutes == RT_IRQ_NVEC) {
        rt_printf("irq: all %u vectors in use\n", RT_IRQ_NVEC);
        return -1;
    }
    uint32_t ver = ioapic_rd(ioapic, IOAPIC_VER);
    unsigned maxpin = ver >> 16 & 0xff;
    if (ver == 0xffffffffu) {
        rt_printf("irq: no I/O APIC at 0x%lx\n", (unsigned long)ioapic);
        return -1;
    }
    /* A version register that reads 0 (a minimal model) says nothing: trust the pin. */
    if (maxpin && pin > maxpin) {
        rt_printf("irq: the I/O APIC at 0x%lx has pins 0..%u, not %u\n", (unsigned long)ioapic,
                  maxpin, pin);
        return -1;
    }
    int vec = take_vector(handler, arg);
    ioapic_wr(ioapic, IOREDTBL(pin), REDIR_MASKED);
    ioapic_wr(ioapic, IOREDTBL(pin) + 1, REDIR_DEST_ID0);
    ioapic_wr(ioapic, IOREDTBL(pin), (uint32_t)vec | REDIR_LEVEL);
    return vec;
}

uint64_t rt_irq_count(void)
{
    return irq_count;
}

/* Ring 0, IF=0, from irq_common in entry.S. The handler lowers the device's line before the EOI,
 * so the I/O APIC does not deliver the same level again (a local source such as the timer may
 * have no handler: counting it is what ends rt_wait_irq's sleep). */
void rt_irq_dispatch(uint64_t index)
{
    if (index < nroutes && routes[index].handler)
        routes[index].handler(routes[index].arg);
    irq_count++;
    lapic_wr(LAPIC_EOI, 0);
}
