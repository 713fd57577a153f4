/* lapic.c: the emulator's local APIC (xAPIC MMIO mode, no x2APIC) and its timer.
 *
 * Timer clock: the APIC timer counts down at 1 GHz / divide (the divide configuration register
 * selects 1, 2, 4, ..., 128), i.e. one count every `divide` ns of emu_cpu_time_ns(). The TSC runs
 * at 1 GHz as well (TSC = emu_cpu_time_ns() + tsc_offset), so TSC-deadline values convert 1:1.
 *
 * The timer is lazy: nothing runs in the background. emu_lapic_pending() fires an expired timer
 * (periodic mode re-arms from the previous expiry, not from "now", so it does not drift; missed
 * periods coalesce into one interrupt), and emu_lapic_deadline() tells the glue when a halted
 * vCPU must wake up to call emu_lapic_pending() again.
 *
 * Locking: one mutex per LAPIC guards every field. It is never held while calling out (into
 * another LAPIC, the I/O APIC or emu_cpu_notify()), so there is no lock order to respect beyond
 * "take at most one controller lock at a time".
 */
#include "accel/emu/apic.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "accel/emu/cpu.h"
#include "core/log.h"

/* Register offsets in the 4 KiB page (the same in kvm_lapic_state's 1 KiB copy). */
#define APIC_ID       0x020
#define APIC_LVR      0x030
#define APIC_TPR      0x080
#define APIC_APR      0x090
#define APIC_PPR      0x0a0
#define APIC_EOI      0x0b0
#define APIC_LDR      0x0d0
#define APIC_DFR      0x0e0
#define APIC_SVR      0x0f0
#define APIC_ISR      0x100
#define APIC_TMR      0x180
#define APIC_IRR      0x200
#define APIC_ESR      0x280
#define APIC_ICR      0x300
#define APIC_ICR2     0x310
#define APIC_LVTT     0x320
#define APIC_LVTERR   0x370
#define APIC_TMICT    0x380
#define APIC_TMCCT    0x390
#define APIC_TDCR     0x3e0
#define APIC_REGS_LEN 0x400

#define APIC_VERSION      0x00050014u /* version 0x14, max LVT entry 5 */
#define SVR_MASK          0x3ffu      /* vector, software enable, focus (no EOI suppression) */
#define SVR_ENABLE        0x100u
#define LVT_MASKED        0x10000u
#define LVT_TIMER_MODE    0x60000u
#define TIMER_PERIODIC    0x20000u
#define TIMER_TSCDEADLINE 0x40000u
#define ICR_LO_MASK       0x000ccfffu /* vector, mode, dest mode, level, trigger, shorthand */
#define ESR_SEND_ILLEGAL  0x20u
#define ESR_RECV_ILLEGAL  0x40u
#define BASE_ENABLE       0x800u
#define BASE_BSP          0x100u

/* ICR delivery modes. */
enum { DM_FIXED = 0, DM_LOWEST = 1, DM_SMI = 2, DM_NMI = 4, DM_INIT = 5, DM_SIPI = 6 };

enum { LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR, LVT_N };
/* Writable bits of each LVT entry (delivery status and remote IRR are read-only). */
static const uint32_t lvt_writable[LVT_N] = {0x000700ff, 0x000107ff, 0x000107ff,
                                             0x0001a7ff, 0x0001a7ff, 0x000100ff};

struct emu_lapic {
    struct emu_cpu *c;
    pthread_mutex_t lock;
    uint64_t apic_base;
    uint32_t id; /* APIC id (ID register bits 24..31) */
    uint32_t tpr, ldr, dfr, svr;
    uint32_t esr;         /* what ESR reads: errors latched by the last ESR write */
    uint32_t esr_pending; /* errors since */
    uint32_t icr_lo, icr_hi;
    uint32_t lvt[LVT_N];
    uint32_t isr[8], tmr[8], irr[8];
    uint32_t tmict, tdcr;
    uint64_t timer_next;   /* one-shot/periodic: ns of the next expiry; UINT64_MAX: not armed */
    uint64_t tsc_deadline; /* IA32_TSC_DEADLINE; 0: not armed */
};

/* ---- helpers (callers hold l->lock) ---- */

static int highest_bit(const uint32_t v[8])
{
    for (int i = 7; i >= 0; i--) {
        if (v[i])
            return i * 32 + 31 - __builtin_clz(v[i]);
    }
    return -1;
}

static void bit_set(uint32_t v[8], int vec)
{
    v[vec >> 5] |= 1u << (vec & 31);
}

static void bit_clear(uint32_t v[8], int vec)
{
    v[vec >> 5] &= ~(1u << (vec & 31));
}

static bool bit_test(const uint32_t v[8], int vec)
{
    return v[vec >> 5] & (1u << (vec & 31));
}

static bool hw_enabled(const struct emu_lapic *l)
{
    return l->apic_base & BASE_ENABLE;
}

static bool enabled(const struct emu_lapic *l)
{
    return hw_enabled(l) && (l->svr & SVR_ENABLE);
}

static uint32_t ppr(const struct emu_lapic *l)
{
    int isrv = highest_bit(l->isr);
    uint32_t isrc = isrv < 0 ? 0 : (uint32_t)isrv & 0xf0;

    return (l->tpr & 0xf0) >= isrc ? l->tpr & 0xff : isrc;
}

static uint32_t apr(const struct emu_lapic *l)
{
    int irrv = highest_bit(l->irr), isrv = highest_bit(l->isr);
    uint32_t irrc = irrv < 0 ? 0 : (uint32_t)irrv & 0xf0;
    uint32_t isrc = isrv < 0 ? 0 : (uint32_t)isrv & 0xf0;
    uint32_t tprc = l->tpr & 0xf0, m = tprc;

    if (tprc >= irrc && tprc >= isrc)
        return l->tpr & 0xff;
    if (irrc > m)
        m = irrc;
    if (isrc > m)
        m = isrc;
    return m;
}

static void raise_error(struct emu_lapic *l, uint32_t bit)
{
    uint32_t lvt = l->lvt[LVT_ERROR], vec = lvt & 0xff;

    l->esr_pending |= bit;
    /* The error LVT's own illegal vector is not reported again (no recursion). */
    if (enabled(l) && !(lvt & LVT_MASKED) && vec >= 16) {
        bit_set(l->irr, (int)vec);
        bit_clear(l->tmr, (int)vec);
    }
}

/* A fixed interrupt arrives: false if the APIC is disabled or the vector illegal. */
static bool accept(struct emu_lapic *l, int vec, bool level)
{
    if (!enabled(l) || vec < 0 || vec > 255)
        return false;
    if (vec < 16) {
        raise_error(l, ESR_RECV_ILLEGAL);
        return false;
    }
    bit_set(l->irr, vec);
    if (level)
        bit_set(l->tmr, vec);
    else
        bit_clear(l->tmr, vec);
    return true;
}

static uint64_t now_ns(const struct emu_lapic *l)
{
    return emu_cpu_time_ns(l->c);
}

static uint64_t timer_div(const struct emu_lapic *l)
{
    uint32_t v = (l->tdcr & 3) | ((l->tdcr >> 1) & 4);

    return v == 7 ? 1 : 2u << v;
}

static uint32_t timer_mode(const struct emu_lapic *l)
{
    return l->lvt[LVT_TIMER] & LVT_TIMER_MODE;
}

/* Arm the one-shot/periodic timer to expire after count ticks from now (0: stop). */
static void timer_arm(struct emu_lapic *l, uint64_t now, uint64_t count)
{
    if (timer_mode(l) == TIMER_TSCDEADLINE || l->tmict == 0 || count == 0)
        l->timer_next = UINT64_MAX;
    else
        l->timer_next = now + count * timer_div(l);
}

/* The current-count register at time now. */
static uint32_t timer_count(const struct emu_lapic *l, uint64_t now)
{
    uint64_t div = timer_div(l), left, cnt;

    if (timer_mode(l) == TIMER_TSCDEADLINE || l->timer_next == UINT64_MAX || l->tmict == 0)
        return 0;
    if (now < l->timer_next) {
        left = l->timer_next - now;
    } else if (timer_mode(l) == TIMER_PERIODIC) {
        uint64_t period = (uint64_t)l->tmict * div;
        left = period - (now - l->timer_next) % period;
    } else {
        return 0;
    }
    cnt = (left + div - 1) / div;
    return cnt > l->tmict ? l->tmict : (uint32_t)cnt;
}

static void set_tsc_deadline_locked(struct emu_lapic *l, uint64_t tsc)
{
    l->tsc_deadline = tsc;
    l->c->tsc_deadline = tsc;
}

static bool timer_armed(const struct emu_lapic *l)
{
    if (timer_mode(l) == TIMER_TSCDEADLINE)
        return l->tsc_deadline != 0;
    return l->timer_next != UINT64_MAX;
}

/* Fire the timer if it expired by now; true if it did. */
static bool timer_fire(struct emu_lapic *l, uint64_t now)
{
    uint32_t lvt = l->lvt[LVT_TIMER];
    bool fired = false;

    if (timer_mode(l) == TIMER_TSCDEADLINE) {
        if (l->tsc_deadline && now + l->c->tsc_offset >= l->tsc_deadline) {
            set_tsc_deadline_locked(l, 0);
            fired = true;
        }
    } else if (l->timer_next != UINT64_MAX && now >= l->timer_next) {
        if (timer_mode(l) == TIMER_PERIODIC && l->tmict) {
            uint64_t period = (uint64_t)l->tmict * timer_div(l);
            l->timer_next += ((now - l->timer_next) / period + 1) * period;
        } else {
            l->timer_next = UINT64_MAX;
        }
        fired = true;
    }
    if (fired && !(lvt & LVT_MASKED))
        accept(l, (int)(lvt & 0xff), false);
    return fired;
}

/* Power-on register state; apic_base is left to the caller. */
static void reset_regs(struct emu_lapic *l)
{
    l->id = (uint32_t)l->c->id & 0xff;
    l->tpr = l->ldr = 0;
    l->dfr = 0xffffffff;
    l->svr = 0xff;
    l->esr = l->esr_pending = 0;
    l->icr_lo = l->icr_hi = 0;
    for (int i = 0; i < LVT_N; i++)
        l->lvt[i] = LVT_MASKED;
    memset(l->isr, 0, sizeof(l->isr));
    memset(l->tmr, 0, sizeof(l->tmr));
    memset(l->irr, 0, sizeof(l->irr));
    l->tmict = l->tdcr = 0;
    l->timer_next = UINT64_MAX;
    set_tsc_deadline_locked(l, 0);
}

static uint32_t read_reg(struct emu_lapic *l, uint32_t off)
{
    if (off >= APIC_ISR && off < APIC_ISR + 0x80)
        return l->isr[(off - APIC_ISR) >> 4];
    if (off >= APIC_TMR && off < APIC_TMR + 0x80)
        return l->tmr[(off - APIC_TMR) >> 4];
    if (off >= APIC_IRR && off < APIC_IRR + 0x80)
        return l->irr[(off - APIC_IRR) >> 4];
    if (off >= APIC_LVTT && off <= APIC_LVTERR)
        return l->lvt[(off - APIC_LVTT) >> 4];
    switch (off) {
    case APIC_ID:
        return l->id << 24;
    case APIC_LVR:
        return APIC_VERSION;
    case APIC_TPR:
        return l->tpr;
    case APIC_APR:
        return apr(l);
    case APIC_PPR:
        return ppr(l);
    case APIC_LDR:
        return l->ldr;
    case APIC_DFR:
        return l->dfr;
    case APIC_SVR:
        return l->svr;
    case APIC_ESR:
        return l->esr;
    case APIC_ICR:
        return l->icr_lo; /* delivery status always idle */
    case APIC_ICR2:
        return l->icr_hi;
    case APIC_TMICT:
        return l->tmict;
    case APIC_TMCCT:
        return timer_count(l, now_ns(l));
    case APIC_TDCR:
        return l->tdcr;
    default:
        return 0;
    }
}

static void write_lvt(struct emu_lapic *l, int idx, uint32_t v)
{
    uint32_t old_mode = timer_mode(l);

    if (!(l->svr & SVR_ENABLE))
        v |= LVT_MASKED;
    l->lvt[idx] = v & lvt_writable[idx];
    /* Entering or leaving TSC-deadline mode disarms the timer (SDM 10.5.4.1). */
    if (idx == LVT_TIMER &&
        (old_mode == TIMER_TSCDEADLINE) != (timer_mode(l) == TIMER_TSCDEADLINE)) {
        l->tmict = 0;
        l->timer_next = UINT64_MAX;
        set_tsc_deadline_locked(l, 0);
    }
}

/* What a register write asks to be done once the lock is dropped. */
struct after_write {
    int eoi_vec; /* a level-triggered vector was EOIed: forward to the I/O APIC; else -1 */
    bool ipi;    /* ICR low was written: send icr_lo/icr_hi */
    uint32_t icr_lo, icr_hi;
};

static void write_reg(struct emu_lapic *l, uint32_t off, uint32_t v, struct after_write *aw)
{
    if (off >= APIC_LVTT && off <= APIC_LVTERR) {
        write_lvt(l, (int)((off - APIC_LVTT) >> 4), v);
        return;
    }
    switch (off) {
    case APIC_ID:
        l->id = v >> 24;
        break;
    case APIC_TPR:
        l->tpr = v & 0xff;
        break;
    case APIC_EOI: {
        int vec = highest_bit(l->isr);
        if (vec >= 0) {
            bit_clear(l->isr, vec);
            if (bit_test(l->tmr, vec))
                aw->eoi_vec = vec;
        }
        break;
    }
    case APIC_LDR:
        l->ldr = v & 0xff000000;
        break;
    case APIC_DFR:
        l->dfr = v | 0x0fffffff;
        break;
    case APIC_SVR:
        l->svr = v & SVR_MASK;
        if (!(v & SVR_ENABLE)) {
            for (int i = 0; i < LVT_N; i++)
                l->lvt[i] |= LVT_MASKED;
        }
        break;
    case APIC_ESR:
        l->esr = l->esr_pending;
        l->esr_pending = 0;
        break;
    case APIC_ICR:
        l->icr_lo = v & ICR_LO_MASK;
        aw->ipi = true;
        aw->icr_lo = l->icr_lo;
        aw->icr_hi = l->icr_hi;
        break;
    case APIC_ICR2:
        l->icr_hi = v & 0xff000000;
        break;
    case APIC_TMICT:
        if (timer_mode(l) == TIMER_TSCDEADLINE)
            break;
        l->tmict = v;
        timer_arm(l, now_ns(l), v);
        break;
    case APIC_TDCR: {
        /* Keep the remaining count; it now runs at the new rate. */
        uint64_t now = now_ns(l);
        uint32_t cnt = timer_count(l, now);
        l->tdcr = v & 0xb;
        if (l->timer_next != UINT64_MAX)
            timer_arm(l, now, cnt ? cnt : l->tmict);
        break;
    }
    default:
        break; /* read-only or reserved */
    }
}

/* ---- cross-APIC delivery (no lock held by the caller) ---- */

bool emu_lapic_match_dest(struct emu_lapic *l, uint8_t dest, bool logical)
{
    bool match;

    pthread_mutex_lock(&l->lock);
    if (!logical) {
        match = dest == 0xff || dest == (l->id & 0xff);
    } else {
        uint32_t ldr = l->ldr >> 24;
        if ((l->dfr >> 28) == 0xf) /* flat */
            match = (ldr & dest) != 0;
        else if ((l->dfr >> 28) == 0) /* cluster */
            match = ((dest >> 4) == 0xf || (dest >> 4) == (ldr >> 4)) && (dest & ldr & 0xf);
        else
            match = false;
    }
    pthread_mutex_unlock(&l->lock);
    return match;
}

bool emu_lapic_deliver(struct emu_lapic *l, int vec, bool level)
{
    bool ok, on;

    pthread_mutex_lock(&l->lock);
    ok = accept(l, vec, level);
    on = enabled(l);
    pthread_mutex_unlock(&l->lock);
    if (on) /* an illegal vector may have raised the error LVT */
        emu_cpu_notify(l->c);
    return ok;
}

void emu_lapic_post(struct emu_lapic *l, int vec, bool level)
{
    emu_lapic_deliver(l, vec, level);
}

static void log_ipi_once(int mode)
{
    static atomic_uint logged;
    unsigned bit = 1u << (mode & 7);

    if (!(atomic_fetch_or(&logged, bit) & bit))
        log_debug("emu: lapic: IPI delivery mode %d ignored", mode);
}

static void send_ipi(struct emu_lapic *l, uint32_t lo, uint32_t hi)
{
    int vec = (int)(lo & 0xff), mode = (int)((lo >> 8) & 7), shorthand = (int)((lo >> 18) & 3);
    bool logical = lo & 0x800;
    uint8_t dest = (uint8_t)(hi >> 24);
    struct emu_vm *vm = l->c->vm;

    if (mode != DM_FIXED && mode != DM_LOWEST) {
        log_ipi_once(mode); /* SMI, NMI, INIT, SIPI, ExtINT: not modelled */
        return;
    }
    if (vec < 16) {
        pthread_mutex_lock(&l->lock);
        raise_error(l, ESR_SEND_ILLEGAL);
        pthread_mutex_unlock(&l->lock);
        return;
    }
    if (shorthand == 1 || !vm) {
        if (shorthand != 3)
            emu_lapic_deliver(l, vec, false);
        return;
    }
    int n = vm->ncpus < 16 ? vm->ncpus : 16;
    for (int i = 0; i < n; i++) {
        struct emu_cpu *t = vm->cpus[i];
        if (!t || !t->lapic)
            continue;
        if (shorthand == 3 && t->lapic == l)
            continue;
        if (shorthand == 0 && !emu_lapic_match_dest(t->lapic, dest, logical))
            continue;
        /* Lowest priority: the first accepting APIC wins. */
        if (emu_lapic_deliver(t->lapic, vec, false) && mode == DM_LOWEST && shorthand == 0)
            break;
    }
}

/* ---- the API ---- */

int emu_lapic_create(struct emu_cpu *c, struct emu_lapic **out)
{
    struct emu_lapic *l = calloc(1, sizeof(*l));

    if (!l)
        return -ENOMEM;
    l->c = c;
    pthread_mutex_init(&l->lock, NULL);
    emu_lapic_reset(l);
    *out = l;
    return 0;
}

void emu_lapic_destroy(struct emu_lapic *l)
{
    if (!l)
        return;
    pthread_mutex_destroy(&l->lock);
    free(l);
}

void emu_lapic_reset(struct emu_lapic *l)
{
    pthread_mutex_lock(&l->lock);
    reset_regs(l);
    l->apic_base = EMU_LAPIC_BASE | BASE_ENABLE | (l->c->id == 0 ? BASE_BSP : 0);
    pthread_mutex_unlock(&l->lock);
}

void emu_lapic_mmio(struct emu_lapic *l, uint32_t off, void *data, uint32_t len, bool is_write)
{
    struct after_write aw = {.eoi_vec = -1};
    uint32_t v = 0;
    bool ok = len == 4 && !(off & 0xf) && off < APIC_REGS_LEN;

    pthread_mutex_lock(&l->lock);
    ok = ok && hw_enabled(l);
    if (ok && !is_write)
        v = read_reg(l, off);
    if (ok && is_write) {
        memcpy(&v, data, 4);
        write_reg(l, off, v, &aw);
    }
    pthread_mutex_unlock(&l->lock);

    if (!is_write) {
        if (ok)
            memcpy(data, &v, 4);
        else
            memset(data, 0, len);
        return;
    }
    if (aw.eoi_vec >= 0 && l->c->vm && l->c->vm->ioapic)
        emu_ioapic_eoi(l->c->vm->ioapic, aw.eoi_vec);
    if (aw.ipi)
        send_ipi(l, aw.icr_lo, aw.icr_hi);
    /* TPR, EOI, SVR, a self IPI or the timer may change what is deliverable. */
    if (ok && l->c->stop == EMU_STOP_NONE)
        l->c->stop = EMU_STOP_IRQ;
}

int emu_lapic_pending(struct emu_lapic *l)
{
    int vec = -1;

    pthread_mutex_lock(&l->lock);
    if (timer_armed(l))
        timer_fire(l, now_ns(l));
    if (enabled(l)) {
        int irrv = highest_bit(l->irr);
        if (irrv >= 16 && ((uint32_t)irrv & 0xf0) > (ppr(l) & 0xf0))
            vec = irrv;
    }
    pthread_mutex_unlock(&l->lock);
    return vec;
}

void emu_lapic_ack(struct emu_lapic *l, int vec)
{
    if (vec < 16 || vec > 255)
        return;
    pthread_mutex_lock(&l->lock);
    if (bit_test(l->irr, vec)) {
        bit_clear(l->irr, vec);
        bit_set(l->isr, vec);
    }
    pthread_mutex_unlock(&l->lock);
}

uint64_t emu_lapic_deadline(struct emu_lapic *l)
{
    uint64_t d = UINT64_MAX;

    pthread_mutex_lock(&l->lock);
    /* An expired timer fires here (IRR) and reports "now", so that a halted vCPU runs its
     * interrupt check once; the next call then reports the following expiry, not a past one,
     * and a vCPU halted with IF=0 does not spin. */
    if (timer_armed(l)) {
        uint64_t now = now_ns(l);
        if (timer_fire(l, now)) {
            pthread_mutex_unlock(&l->lock);
            return now;
        }
    }
    if (enabled(l) && !(l->lvt[LVT_TIMER] & LVT_MASKED)) {
        if (timer_mode(l) != TIMER_TSCDEADLINE) {
            d = l->timer_next;
        } else if (l->tsc_deadline) {
            uint64_t now = now_ns(l), tsc = now + l->c->tsc_offset;
            d = l->tsc_deadline <= tsc ? now : now + (l->tsc_deadline - tsc);
        }
    }
    pthread_mutex_unlock(&l->lock);
    return d;
}

void emu_lapic_set_tsc_deadline(struct emu_lapic *l, uint64_t tsc)
{
    /* Stored even outside TSC-deadline mode (inert there; entering the mode clears it), so a
     * restore works whether the MSR or the register page comes first. */
    pthread_mutex_lock(&l->lock);
    set_tsc_deadline_locked(l, tsc);
    pthread_mutex_unlock(&l->lock);
}

uint64_t emu_lapic_get_tsc_deadline(struct emu_lapic *l)
{
    uint64_t v;

    pthread_mutex_lock(&l->lock);
    v = timer_mode(l) == TIMER_TSCDEADLINE ? l->tsc_deadline : 0;
    pthread_mutex_unlock(&l->lock);
    return v;
}

void emu_lapic_set_base(struct emu_lapic *l, uint64_t apic_base)
{
    pthread_mutex_lock(&l->lock);
    /* Clearing the global enable returns the APIC to its power-on state (SDM 10.4.3). */
    if (hw_enabled(l) && !(apic_base & BASE_ENABLE))
        reset_regs(l);
    l->apic_base = apic_base;
    pthread_mutex_unlock(&l->lock);
}

void emu_lapic_set_cr8(struct emu_lapic *l, uint64_t cr8)
{
    pthread_mutex_lock(&l->lock);
    l->tpr = (uint32_t)(cr8 & 0xf) << 4;
    pthread_mutex_unlock(&l->lock);
}

uint64_t emu_lapic_get_cr8(struct emu_lapic *l)
{
    uint64_t v;

    pthread_mutex_lock(&l->lock);
    v = (l->tpr >> 4) & 0xf;
    pthread_mutex_unlock(&l->lock);
    return v;
}

/* Registers saved in the KVM page (everything with state, plus the computed ones KVM fills). */
static const uint16_t saved_regs[] = {
    APIC_ID,  APIC_LVR, APIC_TPR,    APIC_APR,   APIC_PPR,   APIC_LDR,  APIC_DFR,
    APIC_SVR, APIC_ESR, APIC_ICR,    APIC_ICR2,  APIC_LVTT,  0x330,     0x340,
    0x350,    0x360,    APIC_LVTERR, APIC_TMICT, APIC_TMCCT, APIC_TDCR,
};

static uint32_t page_get(const struct kvm_lapic_state *s, uint32_t off)
{
    uint32_t v;

    memcpy(&v, s->regs + off, 4);
    return v;
}

static void page_put(struct kvm_lapic_state *s, uint32_t off, uint32_t v)
{
    memcpy(s->regs + off, &v, 4);
}

void emu_lapic_get(struct emu_lapic *l, struct kvm_lapic_state *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < sizeof(saved_regs) / sizeof(saved_regs[0]); i++)
        page_put(s, saved_regs[i], read_reg(l, saved_regs[i]));
    for (uint32_t i = 0; i < 8; i++) {
        page_put(s, APIC_ISR + i * 16, l->isr[i]);
        page_put(s, APIC_TMR + i * 16, l->tmr[i]);
        page_put(s, APIC_IRR + i * 16, l->irr[i]);
    }
    pthread_mutex_unlock(&l->lock);
}

int emu_lapic_set(struct emu_lapic *l, const struct kvm_lapic_state *s)
{
    uint64_t now;
    uint32_t cur;

    pthread_mutex_lock(&l->lock);
    now = now_ns(l);
    l->id = page_get(s, APIC_ID) >> 24;
    l->tpr = page_get(s, APIC_TPR) & 0xff;
    l->ldr = page_get(s, APIC_LDR) & 0xff000000;
    l->dfr = page_get(s, APIC_DFR) | 0x0fffffff;
    l->svr = page_get(s, APIC_SVR) & SVR_MASK;
    l->esr = page_get(s, APIC_ESR) & 0xff;
    l->esr_pending = 0;
    l->icr_lo = page_get(s, APIC_ICR) & ICR_LO_MASK;
    l->icr_hi = page_get(s, APIC_ICR2) & 0xff000000;
    for (uint32_t i = 0; i < 8; i++) {
        l->isr[i] = page_get(s, APIC_ISR + i * 16);
        l->tmr[i] = page_get(s, APIC_TMR + i * 16);
        l->irr[i] = page_get(s, APIC_IRR + i * 16);
    }
    /* Vectors 0..15 are illegal: never pending, never in service. */
    l->isr[0] &= 0xffff0000;
    l->tmr[0] &= 0xffff0000;
    l->irr[0] &= 0xffff0000;
    for (int i = 0; i < LVT_N; i++) {
        l->lvt[i] = page_get(s, APIC_LVTT + (uint32_t)i * 16) & lvt_writable[i];
        if (!(l->svr & SVR_ENABLE))
            l->lvt[i] |= LVT_MASKED;
    }
    l->tdcr = page_get(s, APIC_TDCR) & 0xb;
    l->tmict = page_get(s, APIC_TMICT);
    /* Restart from the saved current count; the TSC deadline (an MSR) is left alone. */
    cur = page_get(s, APIC_TMCCT);
    if (cur > l->tmict)
        cur = l->tmict;
    if (cur == 0 && timer_mode(l) == TIMER_PERIODIC)
        cur = l->tmict;
    timer_arm(l, now, cur);
    pthread_mutex_unlock(&l->lock);
    return 0;
}
