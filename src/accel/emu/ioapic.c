/* ioapic.c: the emulator's I/O APIC (82093AA-style, 24 pins, version 0x11) routing device
 * lines to local APICs.
 *
 * Lines are active-high as given to emu_ioapic_set_irq() (the polarity bit is stored but does
 * not invert them, as in KVM). irr holds the line levels. Destinations: physical (APIC id, 0xFF
 * broadcast) or logical (the LAPICs' LDR/DFR, flat or cluster model); lowest priority goes to
 * the first APIC that accepts. Fixed and lowest-priority modes are delivered; ExtINT, NMI, SMI
 * and INIT are ignored.
 *
 * Locking: deliveries are decided under the mutex (remote IRR set there) and performed after
 * it is dropped, so the mutex is never held while calling into a LAPIC (whose EOI calls back
 * into emu_ioapic_eoi()) nor while calling the EOI-notify hook.
 */
#include "accel/emu/apic.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "accel/emu/cpu.h"

#define IOAPIC_VERSION 0x00170011u /* 24 entries (max index 0x17), version 0x11 */

#define RTE_VECTOR     0xffull
#define RTE_STATUS     (1ull << 12)
#define RTE_REMOTE_IRR (1ull << 14)
#define RTE_LEVEL      (1ull << 15)
#define RTE_MASKED     (1ull << 16)
#define RTE_LOW_RW     0x1afffull /* vector, mode, dest mode, polarity, trigger, mask */
#define RTE_DEST       0xff00000000000000ull

/* Delivery modes. */
enum { DM_FIXED = 0, DM_LOWEST = 1 };

struct emu_ioapic {
    struct emu_vm *vm;
    pthread_mutex_t lock;
    uint32_t ioregsel, id;
    uint32_t irr; /* line levels, one bit per pin */
    uint64_t redir[EMU_IOAPIC_PINS];
    void (*eoi_fn)(void *opaque, int pin);
    void *eoi_opaque;
};

/* An interrupt message decided under the lock, sent after it. */
struct delivery {
    int pin;
    int vec;
    uint8_t dest;
    bool logical, lowest, level;
};

/* Decide whether pin delivers now; sets remote IRR for a level pin. Caller holds the lock. */
static bool service(struct emu_ioapic *io, int pin, struct delivery *d)
{
    uint64_t e = io->redir[pin];
    int mode = (int)((e >> 8) & 7);

    if (e & RTE_MASKED)
        return false;
    if (mode != DM_FIXED && mode != DM_LOWEST)
        return false;
    if (e & RTE_LEVEL) {
        if (e & RTE_REMOTE_IRR)
            return false;
        io->redir[pin] |= RTE_REMOTE_IRR;
    }
    d->pin = pin;
    d->vec = (int)(e & RTE_VECTOR);
    d->dest = (uint8_t)(e >> 56);
    d->logical = e & (1ull << 11);
    d->lowest = mode == DM_LOWEST;
    d->level = e & RTE_LEVEL;
    return true;
}

/* Service a level pin whose line is high (after an EOI, unmask or restore). */
static bool service_level(struct emu_ioapic *io, int pin, struct delivery *d)
{
    if (!(io->irr & (1u << pin)) || !(io->redir[pin] & RTE_LEVEL))
        return false;
    return service(io, pin, d);
}

/* Send the messages; no lock held. A level message nobody accepted gives up its remote IRR so
 * that the line is retried on its next change, EOI or reprogramming. */
static void deliver(struct emu_ioapic *io, const struct delivery *d, int n)
{
    struct emu_vm *vm = io->vm;
    int ncpus = vm ? (vm->ncpus < 16 ? vm->ncpus : 16) : 0;

    for (int k = 0; k < n; k++) {
        bool accepted = false;
        for (int i = 0; i < ncpus; i++) {
            struct emu_cpu *t = vm->cpus[i];
            if (!t || !t->lapic || !emu_lapic_match_dest(t->lapic, d[k].dest, d[k].logical))
                continue;
            if (emu_lapic_deliver(t->lapic, d[k].vec, d[k].level)) {
                accepted = true;
                if (d[k].lowest)
                    break;
            }
        }
        if (d[k].level && !accepted) {
            pthread_mutex_lock(&io->lock);
            io->redir[d[k].pin] &= ~RTE_REMOTE_IRR;
            pthread_mutex_unlock(&io->lock);
        }
    }
}

static uint32_t read_indirect(struct emu_ioapic *io)
{
    uint32_t sel = io->ioregsel;

    switch (sel) {
    case 0x00:
    case 0x02: /* arbitration id reads as the APIC id */
        return (io->id & 0xf) << 24;
    case 0x01:
        return IOAPIC_VERSION;
    default:
        if (sel >= 0x10 && sel < 0x10 + 2 * EMU_IOAPIC_PINS) {
            uint64_t e = io->redir[(sel - 0x10) >> 1];
            return (sel & 1) ? (uint32_t)(e >> 32) : (uint32_t)e;
        }
        return 0;
    }
}

/* Returns true (with *d filled) if the write makes a level pin deliver. */
static bool write_indirect(struct emu_ioapic *io, uint32_t v, struct delivery *d)
{
    uint32_t sel = io->ioregsel;
    int pin;
    uint64_t e;

    if (sel == 0x00) {
        io->id = (v >> 24) & 0xf;
        return false;
    }
    if (sel < 0x10 || sel >= 0x10 + 2 * EMU_IOAPIC_PINS)
        return false; /* version, arbitration and reserved: read-only */
    pin = (int)((sel - 0x10) >> 1);
    e = io->redir[pin];
    if (sel & 1) {
        e = (e & ~RTE_DEST) | ((uint64_t)(v >> 24) << 56);
    } else {
        e = (e & ~RTE_LOW_RW) | (v & RTE_LOW_RW);
        if (!(e & RTE_LEVEL))
            e &= ~RTE_REMOTE_IRR;
    }
    io->redir[pin] = e;
    return service_level(io, pin, d);
}

int emu_ioapic_create(struct emu_vm *vm, struct emu_ioapic **out)
{
    struct emu_ioapic *io = calloc(1, sizeof(*io));

    if (!io)
        return -ENOMEM;
    io->vm = vm;
    pthread_mutex_init(&io->lock, NULL);
    emu_ioapic_reset(io);
    *out = io;
    return 0;
}

void emu_ioapic_destroy(struct emu_ioapic *io)
{
    if (!io)
        return;
    pthread_mutex_destroy(&io->lock);
    free(io);
}

void emu_ioapic_reset(struct emu_ioapic *io)
{
    pthread_mutex_lock(&io->lock);
    io->ioregsel = 0;
    io->id = 0;
    io->irr = 0;
    for (int i = 0; i < EMU_IOAPIC_PINS; i++)
        io->redir[i] = RTE_MASKED;
    pthread_mutex_unlock(&io->lock);
}

void emu_ioapic_mmio(struct emu_ioapic *io, uint32_t off, void *data, uint32_t len, bool is_write)
{
    struct delivery d;
    bool send = false;
    uint32_t v = 0;

    if (len != 4 || (off != 0x00 && off != 0x10)) {
        if (!is_write)
            memset(data, 0, len);
        return;
    }
    if (is_write)
        memcpy(&v, data, 4);
    pthread_mutex_lock(&io->lock);
    if (off == 0x00 && is_write)
        io->ioregsel = v & 0xff;
    else if (off == 0x00)
        v = io->ioregsel;
    else if (is_write)
        send = write_indirect(io, v, &d);
    else
        v = read_indirect(io);
    pthread_mutex_unlock(&io->lock);
    if (!is_write)
        memcpy(data, &v, 4);
    if (send)
        deliver(io, &d, 1);
}

void emu_ioapic_set_irq(struct emu_ioapic *io, int pin, int level)
{
    struct delivery d;
    bool send = false;
    uint32_t bit;

    if (pin < 0 || pin >= EMU_IOAPIC_PINS)
        return;
    bit = 1u << pin;
    pthread_mutex_lock(&io->lock);
    if (!level) {
        io->irr &= ~bit;
    } else {
        bool rising = !(io->irr & bit);
        io->irr |= bit;
        if (io->redir[pin] & RTE_LEVEL)
            send = service(io, pin, &d);
        else if (rising)
            send = service(io, pin, &d);
    }
    pthread_mutex_unlock(&io->lock);
    if (send)
        deliver(io, &d, 1);
}

void emu_ioapic_eoi(struct emu_ioapic *io, int vec)
{
    struct delivery d[EMU_IOAPIC_PINS];
    void (*fn)(void *opaque, int pin);
    void *opaque;
    uint32_t cleared = 0;
    int n = 0;

    if (!io || vec < 16 || vec > 255)
        return;
    pthread_mutex_lock(&io->lock);
    for (int pin = 0; pin < EMU_IOAPIC_PINS; pin++) {
        uint64_t e = io->redir[pin];
        if ((int)(e & RTE_VECTOR) == vec && (e & RTE_LEVEL) && (e & RTE_REMOTE_IRR)) {
            io->redir[pin] = e & ~RTE_REMOTE_IRR;
            cleared |= 1u << pin;
        }
    }
    fn = io->eoi_fn;
    opaque = io->eoi_opaque;
    pthread_mutex_unlock(&io->lock);
    if (!cleared)
        return;

    /* The hook may lower the line (irqfd resampling) before we look at it again. */
    for (int pin = 0; pin < EMU_IOAPIC_PINS && fn; pin++) {
        if (cleared & (1u << pin))
            fn(opaque, pin);
    }
    pthread_mutex_lock(&io->lock);
    for (int pin = 0; pin < EMU_IOAPIC_PINS; pin++) {
        if ((cleared & (1u << pin)) && service_level(io, pin, &d[n]))
            n++;
    }
    pthread_mutex_unlock(&io->lock);
    deliver(io, d, n);
}

void emu_ioapic_set_eoi_notify(struct emu_ioapic *io, void (*fn)(void *opaque, int pin),
                               void *opaque)
{
    pthread_mutex_lock(&io->lock);
    io->eoi_fn = fn;
    io->eoi_opaque = opaque;
    pthread_mutex_unlock(&io->lock);
}

void emu_ioapic_get(struct emu_ioapic *io, struct kvm_ioapic_state *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_lock(&io->lock);
    s->base_address = EMU_IOAPIC_BASE;
    s->ioregsel = io->ioregsel;
    s->id = io->id;
    s->irr = io->irr;
    for (int i = 0; i < EMU_IOAPIC_PINS; i++)
        s->redirtbl[i].bits = io->redir[i];
    pthread_mutex_unlock(&io->lock);
}

int emu_ioapic_set(struct emu_ioapic *io, const struct kvm_ioapic_state *s)
{
    struct delivery d[EMU_IOAPIC_PINS];
    int n = 0;

    pthread_mutex_lock(&io->lock);
    io->ioregsel = s->ioregsel & 0xff;
    io->id = s->id & 0xf;
    io->irr = s->irr & ((1u << EMU_IOAPIC_PINS) - 1);
    for (int i = 0; i < EMU_IOAPIC_PINS; i++) {
        uint64_t e = s->redirtbl[i].bits & (RTE_DEST | RTE_LOW_RW | RTE_REMOTE_IRR);
        if (!(e & RTE_LEVEL))
            e &= ~RTE_REMOTE_IRR;
        io->redir[i] = e;
    }
    /* Level lines still high and not waiting for an EOI deliver again (as KVM does). */
    for (int i = 0; i < EMU_IOAPIC_PINS; i++) {
        if (service_level(io, i, &d[n]))
            n++;
    }
    pthread_mutex_unlock(&io->lock);
    deliver(io, d, n);
    return 0;
}
