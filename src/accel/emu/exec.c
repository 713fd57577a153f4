/* exec.c: the interpreter loop (decode, execute, deliver faults) and the power-on reset state. */
#include <stdio.h>
#include <string.h>

#include "accel/emu/insn.h"
#include "core/log.h"

/* One bit per (map, opcode, ModRM.reg): unimplemented opcodes are logged once per process. */
static _Atomic uint8_t unimpl_seen[4 * 256];

_Noreturn void ex_ud(struct emu_cpu *c, struct emu_insn *i)
{
    (void)i;
    emu_raise(c, EXC_UD, 0);
}

_Noreturn void ex_unimpl(struct emu_cpu *c, struct emu_insn *i)
{
    unsigned key = i->op & 0x3ff;
    uint8_t bit = (uint8_t)(1u << (i->reg & 7));

    if (!(atomic_fetch_or(&unimpl_seen[key], bit) & bit)) {
        uint8_t bytes[16];
        char hex[16 * 3 + 1];
        uint64_t la = c->code64 ? c->insn_start : (uint32_t)(c->seg[S_CS].base + c->insn_start);
        int n = i->len, k = 0;

        /* The bytes were just fetched, so this cannot fault in practice; stay within a page. */
        if ((la & 4095) + (uint64_t)n > 4096)
            n = (int)(4096 - (la & 4095));
        n = emu_fetch(c, la, bytes, n);
        hex[0] = 0;
        for (int j = 0; j < n; j++)
            k += snprintf(hex + k, sizeof(hex) - (size_t)k, "%s%02x", j ? " " : "", bytes[j]);
        log_warn("emu: cpu %d: unimplemented opcode %s%02x (/%u) at %#llx: %s; raising #UD", c->id,
                 i->op >> 8 == 1   ? "0f "
                 : i->op >> 8 == 2 ? "0f 38 "
                 : i->op >> 8 == 3 ? "0f 3a "
                                   : "",
                 i->op & 0xff, i->reg & 7, (unsigned long long)c->insn_start, hex);
    }
    emu_raise(c, EXC_UD, 0);
}

/* The self-modifying-code window (mmu.h): the bytes of the block being run, or none. */
#define SMC_OFF (1ULL << 63) /* never within reach of a linear address */
_Thread_local uint64_t emu_smc_lo __attribute__((tls_model("initial-exec"))) = SMC_OFF;
_Thread_local uint64_t emu_smc_len __attribute__((tls_model("initial-exec")));

/* Internal stop reason: a store hit the running block; run on with a fresh lookup. Never
 * returned by emu_exec(). */
#define EMU_STOP_SMC ((enum emu_stop)0x100)

void emu_smc_hit(struct emu_cpu *c)
{
    if (c->stop == EMU_STOP_NONE)
        c->stop = EMU_STOP_SMC;
}

static inline void smc_off(void)
{
    emu_smc_lo = SMC_OFF;
    emu_smc_len = 0;
}

/* The cached block at c->rip if it is still what guest memory holds, else a newly decoded one;
 * NULL when the instruction must go through emu_decode() (no RAM behind it, not fetchable
 * through the TLB, too close to the page end). */
static inline struct emu_block *blk_find(struct emu_cpu *c)
{
    uint64_t la = c->code64 ? c->rip : (uint32_t)(c->seg[S_CS].base + c->rip);
    const struct emu_tlb_entry *t = emu_tlb_slot(c, la);
    unsigned need = (c->cpl == 3 ? EMU_TLB_UX : EMU_TLB_X) | EMU_TLB_RAM;
    struct emu_blk_cache *bc = emu_bc;
    const uint8_t *p;
    struct emu_block *b;

    if (__builtin_expect(t->tag != ((la & ~0xfffULL) | 1) || (t->perm & need) != need ||
                             (la & 0xfff) > 4096 - EMU_DECODE_SPAN,
                         0))
        return NULL;
    p = t->host + (la & 0xfff);
    b = bc ? bc->tab[emu_blk_hash(la)] : NULL;
    if (__builtin_expect(b && b->la == la && b->mode == emu_icache_mode(c), 1)) {
        const uint64_t *w = b->words;
        unsigned nw = b->nwords, k = 0;
        uint64_t d0 = 0, d1 = 0;

        for (; k + 2 < nw; k += 2) {
            d0 |= emu_load64(p + 8 * k) ^ w[k];
            d1 |= emu_load64(p + 8 * k + 8) ^ w[k + 1];
        }
        for (; k + 1 < nw; k++)
            d0 |= emu_load64(p + 8 * k) ^ w[k];
        d1 |= (emu_load64(p + 8 * k) & b->lastmask) ^ w[k];
        if (__builtin_expect((d0 | d1) == 0, 1))
            return b;
    }
    return emu_block_build(c, la, p);
}

/* The memory operand's offset for a block instruction (EAK_GEN: no RIP-relative form). */
static inline uint64_t blk_ea(const struct emu_cpu *c, const struct emu_insn *i)
{
    uint64_t ea = (uint64_t)(int64_t)i->disp;

    if (i->base != NOREG)
        ea += c->r[i->base];
    if (i->idx != NOREG)
        ea += c->r[i->idx] << i->scale;
    return i->asize == 8 ? ea : i->asize == 4 ? (uint32_t)ea : (uint16_t)ea;
}

/* The block being run and where it started, for a fault in one of its instructions before the
 * last (which run without c->rip and c->insn_start): NULL otherwise. */
static _Thread_local struct emu_block *run_blk __attribute__((tls_model("initial-exec")));
static _Thread_local uint64_t run_ic0 __attribute__((tls_model("initial-exec")));
static _Thread_local uint64_t run_rip0 __attribute__((tls_model("initial-exec")));

/* RIP of byte off of a block that started at rip0, in the block's mode. */
static inline uint64_t blk_rip(const struct emu_block *b, uint64_t rip0, unsigned off)
{
    uint64_t r = rip0 + off;

    if (b->mode & 2) /* code64 */
        return r;
    return (b->mode & 4) ? (uint32_t)r : (uint16_t)r;
}

/* After instruction k of the running block: RIP past it, insn_start at it. */
static inline void blk_sync(struct emu_cpu *c, const struct emu_block *b, uint64_t rip0, unsigned k)
{
    c->insn_start = blk_rip(b, rip0, b->off[k]);
    c->rip = blk_rip(b, rip0, b->off[k + 1]);
}

/* Run b's instructions (at most up to icount end). True when the batch must end (c->stop). */
static inline bool run_block(struct emu_cpu *c, struct emu_block *b, uint64_t end)
{
    uint64_t ic0 = c->icount, ic = ic0, rip0 = c->rip;
    unsigned n = b->n < end - ic ? b->n : (unsigned)(end - ic);
    struct emu_insn *i = b->insn, *last = b->insn + n - 1;

    emu_smc_lo = b->la;
    emu_smc_len = b->nbytes;
    run_blk = b;
    run_ic0 = ic0;
    run_rip0 = rip0;
    for (; i != last; i++) {
        if (i->eak != EAK_NONE)
            i->ea = blk_ea(c, i);
        i->fn(c, i);
        c->icount = ++ic;
        if (__builtin_expect(c->stop != EMU_STOP_NONE, 0)) {
            run_blk = NULL;
            blk_sync(c, b, rip0, (unsigned)(ic - ic0 - 1));
            goto stopped;
        }
    }
    run_blk = NULL;
    blk_sync(c, b, rip0, n - 1);
    if (i->eak != EAK_NONE)
        i->ea = blk_ea(c, i);
    i->fn(c, i);
    c->icount = ++ic;
    if (__builtin_expect(c->stop == EMU_STOP_NONE, 1))
        return false;
stopped:
    if (c->stop != EMU_STOP_SMC)
        return true;
    c->stop = EMU_STOP_NONE;
    return false;
}

/* The hot loop, in its own frame so that a longjmp from a fault just discards it. */
static __attribute__((noinline)) void exec_loop(struct emu_cpu *c, uint64_t end)
{
    struct emu_insn scratch, *ip;

    while (c->icount < end) {
        if (atomic_load_explicit(&c->exit_request, memory_order_relaxed)) {
            c->stop = EMU_STOP_REQUEST;
            return;
        }
        uint64_t tf = c->rflags & FL_TF;
        c->insn_start = c->rip;
        c->shadow = 0;
        if (!tf) {
            struct emu_block *b = blk_find(c);
            if (__builtin_expect(b != NULL, 1)) {
                if (run_block(c, b, end))
                    return;
                continue;
            }
        }
        smc_off();
        ip = emu_decode(c, &scratch);
        c->rip += ip->len;
        if (!c->code64)
            c->rip = c->code32 ? (uint32_t)c->rip : (uint16_t)c->rip;
        ip->fn(c, ip);
        c->icount++;
        if (__builtin_expect(tf != 0, 0) && !(ip->op >= 0xcc && ip->op <= 0xce)) {
            /* Single-step trap after the instruction (RIP past it); INT n/INT3/INTO clear TF
             * on the way into their handler and do not trap. */
            c->dr[6] |= 0x4000;
            emu_deliver(c, EXC_DB, false, 0, false);
        }
        if (c->stop) {
            if (c->stop != EMU_STOP_SMC)
                return;
            c->stop = EMU_STOP_NONE;
        }
    }
    c->stop = EMU_STOP_BUDGET;
}

enum emu_stop emu_exec(struct emu_cpu *c, uint64_t max)
{
    /* Locals read after a longjmp: end is never written after setjmp; faults is volatile. */
    const uint64_t end = c->icount + max;
    volatile uint64_t faults = 0;

    c->stop = EMU_STOP_NONE;
    if (max == 0) {
        c->stop = EMU_STOP_BUDGET;
        return c->stop;
    }
    if (setjmp(c->fault_jmp) != 0) {
        /* A fault (or a fault while delivering one): back to the instruction, then deliver. */
        int vec = c->fault_vec;
        struct emu_block *b = run_blk;
        if (b) { /* in a block, before its last instruction */
            run_blk = NULL;
            c->insn_start = blk_rip(b, run_rip0, b->off[c->icount - run_ic0]);
        }
        smc_off();
        if (c->stop == EMU_STOP_SMC)
            c->stop = EMU_STOP_NONE;
        faults = faults + 1;
        c->rip = c->insn_start;
        emu_deliver(c, vec, emu_vec_has_error(vec), c->fault_err, false);
        /* Faults count against the budget so a fault loop still returns to the caller. */
        if (!c->stop && c->icount + faults >= end)
            c->stop = EMU_STOP_BUDGET;
        if (c->stop)
            return c->stop;
    }
    exec_loop(c, end - faults);
    smc_off();
    return c->stop;
}

static void reset_seg(struct kvm_segment *s, uint16_t sel, uint64_t base, uint8_t type)
{
    memset(s, 0, sizeof(*s));
    s->selector = sel;
    s->base = base;
    s->limit = 0xffff;
    s->type = type;
    s->present = 1;
    s->s = 1;
}

void emu_cpu_reset(struct emu_cpu *c)
{
    memset(c->r, 0, sizeof(c->r));
    c->r[R_DX] = 0x600; /* family 6 */
    c->rip = 0xfff0;
    emu_set_rflags(c, 0x2);
    for (int s = 0; s < 6; s++)
        reset_seg(&c->seg[s], 0, 0, 3);
    reset_seg(&c->seg[S_CS], 0xf000, 0xffff0000, 0xb);
    memset(&c->ldt, 0, sizeof(c->ldt));
    c->ldt.limit = 0xffff;
    c->ldt.type = 2;
    c->ldt.present = 1;
    memset(&c->tr, 0, sizeof(c->tr));
    c->tr.limit = 0xffff;
    c->tr.type = 11;
    c->tr.present = 1;
    memset(&c->gdt, 0, sizeof(c->gdt));
    c->gdt.limit = 0xffff;
    memset(&c->idt, 0, sizeof(c->idt));
    c->idt.limit = 0xffff;
    c->cr0 = 0x60000010;
    c->cr2 = c->cr3 = c->cr4 = c->cr8 = 0;
    c->efer = 0;
    memset(c->dr, 0, sizeof(c->dr));
    c->dr[6] = 0xffff0ff0;
    c->dr[7] = 0x400;
    c->xcr0 = 1;
    c->cpl = 0;
    c->star = c->lstar = c->cstar = c->sfmask = c->kernel_gs_base = 0;
    c->sysenter_cs = c->sysenter_esp = c->sysenter_eip = 0;
    c->pat = 0x0007040600070406ULL;
    c->misc_enable = 0;
    c->tsc_aux = 0;
    c->tsc_deadline = 0;
    c->apic_base = 0xfee00000ULL | 0x800 | (c->id == 0 ? 0x100 : 0);
    memset(c->fxsave, 0, sizeof(c->fxsave));
    c->fxsave[0] = 0x7f; /* FCW = 0x37F */
    c->fxsave[1] = 0x03;
    c->fxsave[24] = 0x80; /* MXCSR = 0x1F80 */
    c->fxsave[25] = 0x1f;
    c->shadow = 0;
    c->halted = false;
    c->nmi_pending = false;
    c->stop = EMU_STOP_NONE;
    c->fault_depth = 0;
    c->error[0] = 0;
    emu_mode_changed(c);
}
