/* test_apic.c: the emulator's local APIC and I/O APIC against a fake clock and two fake vCPUs:
 * enabling, routing, priorities, EOI forwarding, timers, KVM-layout state and hostile input. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "accel/emu/apic.h"
#include "accel/emu/cpu.h"

/* ---- what the glue provides, faked ---- */

static uint64_t fake_now;
static _Atomic int notifies[2];

uint64_t emu_cpu_time_ns(struct emu_cpu *c)
{
    (void)c;
    return fake_now;
}

void emu_cpu_notify(struct emu_cpu *c)
{
    notifies[c->id & 1]++;
}

static struct emu_vm vm;
static struct emu_cpu cpu[2];

static int setup(void **state)
{
    memset(&vm, 0, sizeof(vm));
    memset(cpu, 0, sizeof(cpu));
    memset(notifies, 0, sizeof(notifies));
    fake_now = 1000000;
    vm.ncpus = 2;
    for (int i = 0; i < 2; i++) {
        cpu[i].id = i;
        cpu[i].vm = &vm;
        vm.cpus[i] = &cpu[i];
        if (emu_lapic_create(&cpu[i], &cpu[i].lapic))
            return -1;
    }
    return emu_ioapic_create(&vm, &vm.ioapic);
}

static int teardown(void **state)
{
    for (int i = 0; i < 2; i++)
        emu_lapic_destroy(cpu[i].lapic);
    emu_ioapic_destroy(vm.ioapic);
    return 0;
}

/* ---- helpers ---- */

#define L0 (cpu[0].lapic)
#define L1 (cpu[1].lapic)
#define IO (vm.ioapic)

static uint32_t lr(struct emu_lapic *l, uint32_t off)
{
    uint32_t v = 0xdeadbeef;

    emu_lapic_mmio(l, off, &v, 4, false);
    return v;
}

static void lw(struct emu_lapic *l, uint32_t off, uint32_t v)
{
    emu_lapic_mmio(l, off, &v, 4, true);
}

static uint32_t ior(uint32_t reg)
{
    uint32_t v = reg;

    emu_ioapic_mmio(IO, 0x00, &v, 4, true);
    emu_ioapic_mmio(IO, 0x10, &v, 4, false);
    return v;
}

static void iow(uint32_t reg, uint32_t v)
{
    emu_ioapic_mmio(IO, 0x00, &reg, 4, true);
    emu_ioapic_mmio(IO, 0x10, &v, 4, true);
}

static void route(int pin, uint32_t low, uint8_t dest)
{
    iow(0x10 + 2 * (uint32_t)pin + 1, (uint32_t)dest << 24);
    iow(0x10 + 2 * (uint32_t)pin, low);
}

static bool bit(struct emu_lapic *l, uint32_t base, int vec)
{
    return lr(l, base + (uint32_t)(vec / 32) * 16) & (1u << (vec % 32));
}

#define ISR   0x100
#define TMR   0x180
#define IRR   0x200
#define LEVEL (1u << 15)
#define MASK  (1u << 16)
#define RIRR  (1u << 14)

static void enable(struct emu_lapic *l)
{
    lw(l, 0xf0, 0x1ff);
}

/* Take the pending interrupt the way the CPU would; returns its vector or -1. */
static int take(struct emu_lapic *l)
{
    int v = emu_lapic_pending(l);

    if (v >= 0)
        emu_lapic_ack(l, v);
    return v;
}

/* ---- tests ---- */

static void test_svr_enable(void **state)
{
    assert_int_equal(lr(L0, 0x30), 0x00050014);
    assert_int_equal(lr(L1, 0x20), 1u << 24);
    assert_int_equal(lr(L0, 0xf0), 0xff);
    assert_int_equal(lr(L0, 0xe0), 0xffffffff);
    /* Software-disabled: nothing is accepted, LVTs stay masked. */
    emu_lapic_post(L0, 0x40, false);
    assert_int_equal(emu_lapic_pending(L0), -1);
    assert_false(bit(L0, IRR, 0x40));
    lw(L0, 0x350, 0x30);
    assert_int_equal(lr(L0, 0x350), MASK | 0x30);

    enable(L0);
    assert_int_equal(lr(L0, 0xf0), 0x1ff);
    lw(L0, 0x350, 0x30);
    assert_int_equal(lr(L0, 0x350), 0x30);
    emu_lapic_post(L0, 0x40, false);
    assert_true(notifies[0] > 0);
    assert_int_equal(emu_lapic_pending(L0), 0x40);

    /* Disabling masks every LVT again. */
    lw(L0, 0xf0, 0xff);
    assert_int_equal(lr(L0, 0x350), MASK | 0x30);
    assert_int_equal(emu_lapic_pending(L0), -1);

    /* IA32_APIC_BASE disable: MMIO reads 0, registers reset. */
    enable(L0);
    emu_lapic_set_base(L0, EMU_LAPIC_BASE);
    assert_int_equal(lr(L0, 0x30), 0);
    emu_lapic_set_base(L0, EMU_LAPIC_BASE | 0x900);
    assert_int_equal(lr(L0, 0xf0), 0xff);
}

static void test_ioapic_level_eoi(void **state)
{
    enable(L0);
    assert_int_equal(ior(0x01), 0x00170011);
    assert_int_equal(ior(0x10 + 10) & MASK, MASK); /* reset: masked */
    route(5, LEVEL | 0x31, 0);
    assert_int_equal(ior(0x10 + 10), LEVEL | 0x31);
    assert_int_equal(ior(0x10 + 11), 0);

    int before = notifies[0];
    emu_ioapic_set_irq(IO, 5, 1);
    assert_true(notifies[0] > before);
    assert_false(notifies[1]);
    assert_true(bit(L0, TMR, 0x31));
    assert_true(ior(0x10 + 10) & RIRR);
    /* Remote IRR is read-only. */
    iow(0x10 + 10, LEVEL | 0x31);
    assert_true(ior(0x10 + 10) & RIRR);

    assert_int_equal(take(L0), 0x31);
    assert_true(bit(L0, ISR, 0x31));
    assert_false(bit(L0, IRR, 0x31));
    assert_int_equal(lr(L0, 0xa0), 0x30); /* PPR follows the ISR */
    /* Still high, but remote IRR blocks redelivery. */
    emu_ioapic_set_irq(IO, 5, 1);
    assert_false(bit(L0, IRR, 0x31));

    /* EOI with the line still high: remote IRR cleared and set again by the redelivery. */
    lw(L0, 0xb0, 0);
    assert_false(bit(L0, ISR, 0x31));
    assert_true(bit(L0, IRR, 0x31));
    assert_true(ior(0x10 + 10) & RIRR);
    assert_int_equal(cpu[0].stop, EMU_STOP_IRQ);

    /* Line low, EOI: nothing more. */
    emu_ioapic_set_irq(IO, 5, 0);
    assert_int_equal(take(L0), 0x31);
    lw(L0, 0xb0, 0);
    assert_false(ior(0x10 + 10) & RIRR);
    assert_int_equal(emu_lapic_pending(L0), -1);
}

static int hook_calls, hook_pin;

static void hook(void *opaque, int pin)
{
    hook_calls++;
    hook_pin = pin;
    emu_ioapic_set_irq(IO, pin, 0); /* the device no longer asserts */
}

static void test_eoi_notify(void **state)
{
    enable(L0);
    emu_ioapic_set_eoi_notify(IO, hook, NULL);
    route(9, LEVEL | 0x41, 0);
    emu_ioapic_set_irq(IO, 9, 1);
    assert_int_equal(take(L0), 0x41);
    lw(L0, 0xb0, 0);
    assert_int_equal(hook_calls, 1);
    assert_int_equal(hook_pin, 9);
    assert_int_equal(emu_lapic_pending(L0), -1);
    assert_false(ior(0x10 + 18) & RIRR);
    /* An edge vector's EOI reaches nobody. */
    emu_lapic_post(L0, 0x50, false);
    assert_int_equal(take(L0), 0x50);
    lw(L0, 0xb0, 0);
    assert_int_equal(hook_calls, 1);
}

static void test_priority_tpr(void **state)
{
    enable(L0);
    emu_lapic_post(L0, 0x45, false);
    emu_lapic_post(L0, 0x82, false);
    assert_int_equal(emu_lapic_pending(L0), 0x82);
    lw(L0, 0x80, 0x90);
    assert_int_equal(emu_lapic_pending(L0), -1);
    lw(L0, 0x80, 0x85); /* same class: still blocked */
    assert_int_equal(emu_lapic_pending(L0), -1);
    assert_int_equal(lr(L0, 0xa0), 0x85);
    emu_lapic_set_cr8(L0, 7);
    assert_int_equal(lr(L0, 0x80), 0x70);
    assert_int_equal(emu_lapic_get_cr8(L0), 7);
    assert_int_equal(emu_lapic_pending(L0), 0x82);
    assert_int_equal(lr(L0, 0x90), 0x80); /* APR: the IRR class wins over TPR */
    lw(L0, 0x80, 0);

    assert_int_equal(take(L0), 0x82);
    assert_int_equal(lr(L0, 0xa0), 0x80);
    assert_int_equal(emu_lapic_pending(L0), -1); /* 0x45 below the in-service class */
    /* A higher class nests. */
    emu_lapic_post(L0, 0x91, false);
    assert_int_equal(take(L0), 0x91);
    lw(L0, 0xb0, 0); /* EOIs the highest in service: 0x91 */
    assert_true(bit(L0, ISR, 0x82));
    assert_false(bit(L0, ISR, 0x91));
    lw(L0, 0xb0, 0);
    assert_int_equal(take(L0), 0x45);
    lw(L0, 0xb0, 0);
    assert_int_equal(lr(L0, 0xa0), 0);
    assert_int_equal(emu_lapic_pending(L0), -1);
}

static void test_edge_level_mask(void **state)
{
    enable(L0);
    enable(L1);
    route(1, 0x51, 1); /* edge, to APIC 1 */
    emu_ioapic_set_irq(IO, 1, 1);
    assert_int_equal(take(L1), 0x51);
    assert_false(bit(L1, TMR, 0x51));
    assert_int_equal(emu_lapic_pending(L0), -1);
    emu_ioapic_set_irq(IO, 1, 1); /* no edge */
    assert_false(bit(L1, IRR, 0x51));
    lw(L1, 0xb0, 0); /* an edge EOI does not redeliver */
    assert_int_equal(emu_lapic_pending(L1), -1);
    emu_ioapic_set_irq(IO, 1, 0);
    emu_ioapic_set_irq(IO, 1, 1);
    assert_int_equal(take(L1), 0x51);
    lw(L1, 0xb0, 0);

    /* Masked edge: lost. */
    emu_ioapic_set_irq(IO, 1, 0);
    route(1, MASK | 0x51, 1);
    emu_ioapic_set_irq(IO, 1, 1);
    route(1, 0x51, 1);
    assert_int_equal(emu_lapic_pending(L1), -1);

    /* Masked level: delivered when unmasked with the line high. */
    route(2, MASK | LEVEL | 0x62, 0);
    emu_ioapic_set_irq(IO, 2, 1);
    assert_int_equal(emu_lapic_pending(L0), -1);
    assert_false(ior(0x10 + 4) & RIRR);
    route(2, LEVEL | 0x62, 0);
    assert_int_equal(emu_lapic_pending(L0), 0x62);
    assert_true(ior(0x10 + 4) & RIRR);

    /* Physical broadcast reaches both; a destination nobody has reaches none. */
    route(3, 0x70, 0xff);
    emu_ioapic_set_irq(IO, 3, 1);
    assert_true(bit(L0, IRR, 0x70));
    assert_true(bit(L1, IRR, 0x70));
    route(4, LEVEL | 0x71, 7);
    emu_ioapic_set_irq(IO, 4, 1);
    assert_false(ior(0x10 + 8) & RIRR); /* nobody accepted: no remote IRR left behind */

    /* Logical flat: LDR bit 1 on APIC 1 only. */
    lw(L1, 0xd0, 2u << 24);
    lw(L0, 0xd0, 1u << 24);
    route(6, (1u << 11) | 0x72, 2);
    emu_ioapic_set_irq(IO, 6, 1);
    assert_true(bit(L1, IRR, 0x72));
    assert_false(bit(L0, IRR, 0x72));

    /* ExtINT is ignored. */
    route(7, (7u << 8) | 0x73, 0);
    emu_ioapic_set_irq(IO, 7, 1);
    assert_false(bit(L0, IRR, 0x73));
}

static void test_ipi(void **state)
{
    enable(L0);
    enable(L1);
    lw(L0, 0x310, 1u << 24);
    lw(L0, 0x300, 0x44); /* fixed, physical, to APIC 1 */
    assert_true(bit(L1, IRR, 0x44));
    assert_false(bit(L0, IRR, 0x44));
    lw(L0, 0x300, (1u << 18) | 0x45); /* self */
    assert_true(bit(L0, IRR, 0x45));
    lw(L0, 0x300, (3u << 18) | 0x46); /* all excluding self */
    assert_true(bit(L1, IRR, 0x46));
    assert_false(bit(L0, IRR, 0x46));
    lw(L0, 0x300, (2u << 18) | 0x47); /* all including self */
    assert_true(bit(L1, IRR, 0x47));
    assert_true(bit(L0, IRR, 0x47));
    lw(L0, 0x300, (5u << 8) | (2u << 18));        /* INIT: ignored */
    lw(L0, 0x300, (6u << 8) | (3u << 18) | 0x10); /* SIPI: ignored */
    assert_int_equal(lr(L0, 0x300), (6u << 8) | (3u << 18) | 0x10);
    /* Illegal vector: send error at the sender, visible after an ESR write. */
    lw(L0, 0x300, 0x05 | (1u << 18));
    assert_int_equal(lr(L0, 0x280), 0);
    lw(L0, 0x280, 0);
    assert_int_equal(lr(L0, 0x280), 0x20);
    emu_lapic_post(L1, 3, false);
    lw(L1, 0x280, 0);
    assert_int_equal(lr(L1, 0x280), 0x40);
}

static void test_oneshot_timer(void **state)
{
    uint64_t t0 = fake_now;

    enable(L0);
    assert_int_equal(emu_lapic_deadline(L0), UINT64_MAX);
    lw(L0, 0x320, 0x40); /* one-shot */
    lw(L0, 0x3e0, 0x0);  /* divide by 2 */
    lw(L0, 0x380, 1000);
    assert_int_equal(lr(L0, 0x390), 1000);
    assert_int_equal(emu_lapic_deadline(L0), t0 + 2000);
    fake_now = t0 + 1000;
    assert_int_equal(lr(L0, 0x390), 500);
    fake_now = t0 + 1999;
    assert_int_equal(emu_lapic_pending(L0), -1);
    fake_now = t0 + 2000;
    assert_int_equal(emu_lapic_pending(L0), 0x40);
    assert_false(bit(L0, TMR, 0x40));
    assert_int_equal(lr(L0, 0x390), 0);
    assert_int_equal(lr(L0, 0x380), 1000);
    assert_int_equal(emu_lapic_deadline(L0), UINT64_MAX);
    take(L0);
    lw(L0, 0xb0, 0);
    fake_now += 100000;
    assert_int_equal(emu_lapic_pending(L0), -1);

    /* Divide by 128; masked: counts but no interrupt and no wake-up. */
    t0 = fake_now;
    lw(L0, 0x3e0, 0xa);
    lw(L0, 0x320, MASK | 0x40);
    lw(L0, 0x380, 10);
    assert_int_equal(emu_lapic_deadline(L0), UINT64_MAX);
    fake_now = t0 + 640;
    assert_int_equal(lr(L0, 0x390), 5);
    fake_now = t0 + 1280;
    assert_int_equal(emu_lapic_pending(L0), -1);
    assert_false(bit(L0, IRR, 0x40));

    /* Expiry seen by the halt path first: fired there, "now" once, then nothing. */
    lw(L0, 0x320, 0x40);
    lw(L0, 0x3e0, 0xb);
    lw(L0, 0x380, 10);
    fake_now += 50;
    assert_int_equal(emu_lapic_deadline(L0), fake_now);
    assert_true(bit(L0, IRR, 0x40));
    assert_int_equal(emu_lapic_deadline(L0), UINT64_MAX);
    assert_int_equal(take(L0), 0x40);
    lw(L0, 0xb0, 0);

    /* Writing 0 stops it. */
    lw(L0, 0x320, 0x40);
    lw(L0, 0x380, 10);
    lw(L0, 0x380, 0);
    assert_int_equal(emu_lapic_deadline(L0), UINT64_MAX);
}

static void test_periodic_timer(void **state)
{
    uint64_t t0 = fake_now;

    enable(L0);
    lw(L0, 0x3e0, 0xb); /* divide by 1 */
    lw(L0, 0x320, 0x20000 | 0x41);
    lw(L0, 0x380, 100);
    assert_int_equal(emu_lapic_deadline(L0), t0 + 100);
    fake_now = t0 + 150; /* checked late: the next expiry stays on the grid */
    assert_int_equal(take(L0), 0x41);
    assert_int_equal(emu_lapic_deadline(L0), t0 + 200);
    assert_int_equal(lr(L0, 0x390), 50);
    lw(L0, 0xb0, 0);
    fake_now = t0 + 1050; /* nine periods missed: one interrupt */
    assert_int_equal(take(L0), 0x41);
    assert_int_equal(emu_lapic_deadline(L0), t0 + 1100);
    assert_int_equal(emu_lapic_pending(L0), -1);
    lw(L0, 0xb0, 0);
    fake_now = t0 + 1100;
    assert_int_equal(take(L0), 0x41);
    assert_int_equal(lr(L0, 0x390), 100);
    lw(L0, 0xb0, 0);
    /* Periodic -> one-shot: the current count runs out once more, then stops. */
    lw(L0, 0x320, 0x41);
    fake_now = t0 + 1200;
    assert_int_equal(take(L0), 0x41);
    assert_int_equal(emu_lapic_deadline(L0), UINT64_MAX);
}

static void test_tsc_deadline(void **state)
{
    uint64_t t0 = fake_now;

    enable(L0);
    cpu[0].tsc_offset = 500;
    lw(L0, 0x320, 0x40000 | 0x52);
    emu_lapic_set_tsc_deadline(L0, t0 + 500 + 1000);
    assert_int_equal(emu_lapic_get_tsc_deadline(L0), t0 + 1500);
    assert_int_equal(emu_lapic_deadline(L0), t0 + 1000);
    lw(L0, 0x380, 77); /* ignored in TSC-deadline mode */
    assert_int_equal(lr(L0, 0x380), 0);
    assert_int_equal(lr(L0, 0x390), 0);
    fake_now = t0 + 999;
    assert_int_equal(emu_lapic_pending(L0), -1);
    fake_now = t0 + 1000;
    assert_int_equal(emu_lapic_pending(L0), 0x52);
    assert_int_equal(emu_lapic_get_tsc_deadline(L0), 0);
    assert_int_equal(cpu[0].tsc_deadline, 0);
    assert_int_equal(emu_lapic_deadline(L0), UINT64_MAX);
    take(L0);
    lw(L0, 0xb0, 0);

    /* A deadline in the past fires at once. */
    emu_lapic_set_tsc_deadline(L0, 1);
    assert_int_equal(emu_lapic_deadline(L0), fake_now);
    assert_int_equal(emu_lapic_pending(L0), 0x52);
    take(L0);
    lw(L0, 0xb0, 0);

    /* Leaving the mode disarms; outside it the MSR reads 0. */
    emu_lapic_set_tsc_deadline(L0, fake_now + 100000);
    lw(L0, 0x320, 0x52);
    assert_int_equal(emu_lapic_get_tsc_deadline(L0), 0);
    lw(L0, 0x320, 0x40000 | 0x52);
    assert_int_equal(emu_lapic_get_tsc_deadline(L0), 0);
    assert_int_equal(emu_lapic_deadline(L0), UINT64_MAX);
}

static void test_get_set(void **state)
{
    struct kvm_lapic_state s, s2;
    uint32_t v;

    enable(L0);
    lw(L0, 0x80, 0x20);
    lw(L0, 0xd0, 0x3u << 24);
    lw(L0, 0xe0, 0x0fffffff);
    lw(L0, 0x350, 0x700);
    lw(L0, 0x3e0, 0xb);
    lw(L0, 0x320, 0x43);
    lw(L0, 0x380, 1000);
    emu_lapic_post(L0, 0x61, true);
    emu_lapic_post(L0, 0x90, false);
    take(L0);
    fake_now += 400;
    emu_lapic_get(L0, &s);
    memcpy(&v, s.regs + 0x390, 4);
    assert_int_equal(v, 600);
    memcpy(&v, s.regs + 0x20, 4);
    assert_int_equal(v, 0);
    memcpy(&v, s.regs + 0x200 + 3 * 16, 4);
    assert_int_equal(v, 1u << 1); /* 0x61 pending */
    memcpy(&v, s.regs + 0x180 + 3 * 16, 4);
    assert_int_equal(v, 1u << 1); /* level */
    memcpy(&v, s.regs + 0x100 + 4 * 16, 4);
    assert_int_equal(v, 1u << 16); /* 0x90 in service */
    memcpy(&v, s.regs + 0x30, 4);
    assert_int_equal(v, 0x00050014);

    /* Into the other APIC, later: the count resumes from 600. */
    fake_now += 5000;
    assert_int_equal(emu_lapic_set(L1, &s), 0);
    emu_lapic_get(L1, &s2);
    assert_memory_equal(&s, &s2, sizeof(s));
    assert_int_equal(emu_lapic_deadline(L1), fake_now + 600);
    assert_int_equal(lr(L1, 0x20), 0); /* the id travelled too */
    fake_now += 600;
    assert_int_equal(emu_lapic_pending(L1), -1); /* 0x43 and 0x61 below 0x90 in service */
    lw(L1, 0xb0, 0);
    assert_int_equal(emu_lapic_pending(L1), 0x61);
    assert_true(bit(L1, IRR, 0x43));

    /* I/O APIC round trip. */
    struct kvm_ioapic_state io, io2;
    route(3, LEVEL | 0x33, 1);
    route(4, 0x34, 0);
    iow(0x00, 5u << 24);
    emu_ioapic_set_irq(IO, 3, 1);
    emu_ioapic_get(IO, &io);
    assert_int_equal(io.id, 5);
    assert_int_equal(io.irr, 1u << 3);
    assert_int_equal(io.base_address, EMU_IOAPIC_BASE);
    assert_int_equal(io.redirtbl[3].fields.vector, 0x33);
    assert_int_equal(io.redirtbl[3].fields.trig_mode, 1);
    assert_int_equal(io.redirtbl[3].fields.dest_id, 1);
    assert_int_equal(io.redirtbl[4].fields.mask, 0);
    assert_int_equal(io.redirtbl[5].fields.mask, 1);
    emu_ioapic_reset(IO);
    assert_int_equal(emu_ioapic_set(IO, &io), 0);
    emu_ioapic_get(IO, &io2);
    assert_memory_equal(&io, &io2, sizeof(io));
    assert_int_equal(ior(0x00), 5u << 24);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

static void test_hostile(void **state)
{
    struct kvm_lapic_state s;
    struct kvm_ioapic_state io;
    uint8_t buf[8];
    uint32_t v;

    /* Odd sizes and offsets: reads 0, writes ignored. */
    enable(L0);
    memset(buf, 0xaa, sizeof(buf));
    emu_lapic_mmio(L0, 0x30, buf, 1, false);
    assert_int_equal(buf[0], 0);
    emu_lapic_mmio(L0, 0x34, &v, 4, false);
    assert_int_equal(v, 0);
    emu_lapic_mmio(L0, 0x30, buf, 8, false);
    emu_lapic_mmio(L0, 0xf00, &v, 4, false);
    assert_int_equal(v, 0);
    emu_lapic_mmio(L0, 0xfffffff0, &v, 4, true);
    v = 0;
    emu_lapic_mmio(L0, 0xf2, &v, 2, true); /* a 2-byte SVR write: ignored */
    assert_int_equal(lr(L0, 0xf0), 0x1ff);
    emu_ioapic_mmio(IO, 0x04, buf, 4, false);
    emu_ioapic_mmio(IO, 0x10, buf, 1, true);
    emu_ioapic_set_irq(IO, -1, 1);
    emu_ioapic_set_irq(IO, 24, 1);
    emu_ioapic_set_irq(IO, 1000, 1);
    emu_ioapic_eoi(IO, -5);
    emu_ioapic_eoi(IO, 4096);
    emu_lapic_post(L0, -1, true);
    emu_lapic_post(L0, 256, true);
    emu_lapic_ack(L0, 3);
    emu_lapic_ack(L0, 999);
    assert_int_equal(ior(0x7f), 0);
    iow(0xff, 0xffffffff);

    /* A page of 0xFF: tolerated, and vectors 0..15 never become pending. */
    memset(&s, 0xff, sizeof(s));
    assert_int_equal(emu_lapic_set(L0, &s), 0);
    assert_false(lr(L0, 0x200) & 0xffff);
    assert_false(lr(L0, 0x100) & 0xffff);
    int vec = emu_lapic_pending(L0);
    assert_true(vec == -1 || vec >= 16);
    emu_lapic_get(L0, &s);
    emu_lapic_deadline(L0);
    for (int i = 0; i < 300; i++) {
        fake_now += rnd() % 5000;
        vec = take(L0);
        assert_true(vec == -1 || (vec >= 16 && vec <= 255));
        lw(L0, 0xb0, 0);
    }

    /* Hostile I/O APIC state: every pin level, high, unmasked, broadcast, any vector. */
    memset(&io, 0xff, sizeof(io));
    for (int i = 0; i < 24; i++)
        io.redirtbl[i].bits = 0xff0000000000a000ull | (i < 8 ? (uint64_t)i : 0xffu);
    assert_int_equal(emu_ioapic_set(IO, &io), 0);
    emu_ioapic_get(IO, &io);
    assert_int_equal(io.irr, 0xffffff);

    /* Random register traffic on both controllers. */
    for (int i = 0; i < 20000; i++) {
        uint32_t r = rnd(), val = rnd();
        switch (r % 8) {
        case 0:
        case 1:
            lw(cpu[r >> 31].lapic, (r >> 3) & 0x3f0, val);
            break;
        case 2:
            lr(cpu[r >> 31].lapic, (r >> 3) & 0xfff);
            break;
        case 3:
            iow((r >> 3) & 0xff, val);
            break;
        case 4:
            emu_ioapic_set_irq(IO, (int)((r >> 3) % 26) - 1, (int)(val & 1));
            break;
        case 5:
            fake_now += val % 3000;
            vec = take(cpu[r >> 31].lapic);
            assert_true(vec == -1 || (vec >= 16 && vec <= 255));
            break;
        case 6:
            emu_lapic_set_tsc_deadline(cpu[r >> 31].lapic, fake_now + val % 5000);
            break;
        default:
            emu_lapic_post(cpu[r >> 31].lapic, (int)(val & 0x1ff) - 8, val & 0x200);
            break;
        }
    }
}

static atomic_bool stop_threads;

static void *line_thread(void *arg)
{
    int pin = (int)(intptr_t)arg;

    for (int i = 0; !atomic_load(&stop_threads); i++)
        emu_ioapic_set_irq(IO, pin, i & 1);
    return NULL;
}

static void *ipi_thread(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_threads)) {
        lw(L1, 0x310, 0);
        lw(L1, 0x300, 0x66); /* to APIC 0 */
    }
    return NULL;
}

/* Device lines and another vCPU's IPIs race with the vCPU taking and EOIing: no deadlock,
 * nothing illegal taken. */
static void test_threads(void **state)
{
    pthread_t t[3];
    int seen_level = 0, seen_edge = 0, seen_ipi = 0;

    enable(L0);
    enable(L1);
    route(10, LEVEL | 0x3a, 0);
    route(11, 0x3b, 0);
    assert_int_equal(pthread_create(&t[0], NULL, line_thread, (void *)(intptr_t)10), 0);
    assert_int_equal(pthread_create(&t[1], NULL, line_thread, (void *)(intptr_t)11), 0);
    assert_int_equal(pthread_create(&t[2], NULL, ipi_thread, NULL), 0);
    /* Until each kind arrived a few times (the other threads may be scheduled late, e.g. under
     * a sanitizer on a loaded host); the bound only keeps a broken build from spinning forever. */
    for (long i = 0; i < 50000000 && !(seen_level > 10 && seen_edge > 10 && seen_ipi > 10); i++) {
        int vec = take(L0);
        if (vec < 0)
            sched_yield();
        seen_level += vec == 0x3a;
        seen_edge += vec == 0x3b;
        seen_ipi += vec == 0x66;
        assert_true(vec == -1 || vec == 0x3a || vec == 0x3b || vec == 0x66);
        if (vec >= 0)
            lw(L0, 0xb0, 0);
    }
    atomic_store(&stop_threads, true);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    assert_true(seen_level > 0 && seen_edge > 0 && seen_ipi > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_svr_enable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ioapic_level_eoi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eoi_notify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_priority_tpr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edge_level_mask, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oneshot_timer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_periodic_timer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tsc_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_set, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
