/* system.c: port I/O, flag and interrupt-flag instructions, HLT, segment/descriptor-table and
 * control/debug register instructions, MSRs, TSC, CPUID, SWAPGS, SYSCALL/SYSRET and fences. */
#include <string.h>

#include "accel/emu/insn.h"

#define CR4_TSD 0x4u
#define CR4_DE  0x8u

/* E4-E7 IN/OUT imm8, EC-EF IN/OUT DX. */
void ex_in_out(struct emu_cpu *c, struct emu_insn *i)
{
    int size = (i->op & 1) ? (i->opsize == 2 ? 2 : 4) : 1;
    uint16_t port = (i->op & 8) ? (uint16_t)c->r[R_DX] : (uint16_t)(i->imm & 0xff);

    emu_check_io(c, port, size);
    if (i->op & 2)
        pio_out(c, port, (uint32_t)(c->r[R_AX] & szmask(size)), size);
    else
        reg_wr(c, i, R_AX, pio_in(c, port, size), size);
}

/* CLI/STI need CPL <= IOPL in protected mode. */
static void check_iopl(struct emu_cpu *c)
{
    if ((c->cr0 & CR0_PE) && c->cpl > ((c->rflags & FL_IOPL) >> 12))
        emu_raise(c, EXC_GP, 0);
}

/* F5 CMC, F8 CLC, F9 STC, FA CLI, FB STI, FC CLD, FD STD. */
void ex_flagop(struct emu_cpu *c, struct emu_insn *i)
{
    switch (i->op) {
    case 0xf5:
        flags_put(c, FL_CF, emu_get_cf(c) ^ 1);
        break;
    case 0xf8:
        flags_put(c, FL_CF, 0);
        break;
    case 0xf9:
        flags_put(c, FL_CF, FL_CF);
        break;
    case 0xfa:
        check_iopl(c);
        c->rflags &= ~(uint64_t)FL_IF;
        c->stop = EMU_STOP_IRQ;
        break;
    case 0xfb:
        check_iopl(c);
        if (!(c->rflags & FL_IF))
            c->shadow = 1;
        c->rflags |= FL_IF;
        c->stop = EMU_STOP_IRQ;
        break;
    case 0xfc:
        c->rflags &= ~(uint64_t)FL_DF;
        break;
    default:
        c->rflags |= FL_DF;
        break;
    }
}

void ex_lahf(struct emu_cpu *c, struct emu_insn *i)
{
    uint64_t f = emu_get_rflags(c);
    c->r[R_AX] = (c->r[R_AX] & ~0xff00ULL) | ((f & 0xd7) << 8);
    (void)i;
}

void ex_sahf(struct emu_cpu *c, struct emu_insn *i)
{
    uint32_t ah = (uint32_t)(c->r[R_AX] >> 8) & 0xff;
    flags_put(c, FL_SF | FL_ZF | FL_AF | FL_PF | FL_CF, ah);
    (void)i;
}

void ex_hlt(struct emu_cpu *c, struct emu_insn *i)
{
    (void)i;
    need_cpl0(c);
    c->halted = true;
    c->stop = EMU_STOP_HLT;
}

void ex_nop(struct emu_cpu *c, struct emu_insn *i)
{
    (void)c;
    (void)i;
}

/* 8C MOV r/m, Sreg; 8E MOV Sreg, r/m16 (not CS; SS sets the interrupt shadow). */
void ex_mov_sreg(struct emu_cpu *c, struct emu_insn *i)
{
    int s = i->reg & 7;

    if (s > S_GS)
        ex_ud(c, i);
    if (i->op == 0x8c) {
        uint16_t sel = c->seg[s].selector;
        if (i->mod == 3)
            reg_wr(c, i, i->rm, sel, i->opsize);
        else
            emu_write(c, ea_la(c, i), sel, 2);
        return;
    }
    if (s == S_CS)
        ex_ud(c, i);
    emu_load_seg(c, s, (uint16_t)rm_rd(c, i, 2));
    if (s == S_SS)
        c->shadow = 1;
}

/* 0F B2 LSS, 0F B4 LFS, 0F B5 LGS: load a far pointer m16:x. */
void ex_lfp(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize, s = i->op == 0x1b2 ? S_SS : i->op == 0x1b4 ? S_FS : S_GS;
    uint64_t off;
    uint16_t sel;

    need_mem(c, i);
    off = emu_read(c, ea_la(c, i), size);
    sel = (uint16_t)emu_read(c, seg_la(c, i->seg, (i->ea + (uint64_t)size) & szmask(i->asize)), 2);
    emu_load_seg(c, s, sel);
    reg_wr(c, i, i->reg, off, size);
}

/* Store a selector: 16 bits to memory, zero-extended to the operand size in a register. */
static void store_sel(struct emu_cpu *c, struct emu_insn *i, uint16_t sel)
{
    if (i->mod == 3)
        reg_wr(c, i, i->rm, sel, i->opsize);
    else
        emu_write(c, ea_la(c, i), sel, 2);
}

/* 0F 00: /0 SLDT, /1 STR, /2 LLDT, /3 LTR. */
void ex_grp6(struct emu_cpu *c, struct emu_insn *i)
{
    if (!(c->cr0 & CR0_PE))
        ex_ud(c, i);
    switch (i->reg & 7) {
    case 0:
        store_sel(c, i, c->ldt.selector);
        break;
    case 1:
        store_sel(c, i, c->tr.selector);
        break;
    case 2:
        need_cpl0(c);
        emu_lldt(c, (uint16_t)rm_rd(c, i, 2));
        break;
    case 3:
        need_cpl0(c);
        emu_ltr(c, (uint16_t)rm_rd(c, i, 2));
        break;
    default:
        ex_unimpl(c, i);
    }
}

static void lmsw(struct emu_cpu *c, uint16_t v)
{
    /* Loads PE MP EM TS; PE can be set but not cleared. */
    uint64_t cr0 = (c->cr0 & ~0xfULL) | (v & 0xfu) | (c->cr0 & CR0_PE);
    need_cpl0(c);
    emu_write_cr(c, 0, cr0);
}

static void store_dtable(struct emu_cpu *c, struct emu_insn *i, const struct kvm_dtable *t)
{
    uint64_t la = ea_la(c, i);
    uint64_t la2 = seg_la(c, i->seg, (i->ea + 2) & szmask(i->asize));
    int bsize = c->code64 ? 8 : 4;

    emu_write(c, la, t->limit, 2);
    emu_write(c, la2, c->code64 ? t->base : (uint32_t)t->base, bsize);
}

static void rdtsc_common(struct emu_cpu *c)
{
    uint64_t t;

    if ((c->cr4 & CR4_TSD) && c->cpl != 0)
        emu_raise(c, EXC_GP, 0);
    t = emu_rdtsc(c);
    c->r[R_AX] = (uint32_t)t;
    c->r[R_DX] = t >> 32;
}

/* 0F 01: SGDT SIDT LGDT LIDT SMSW LMSW INVLPG, and the register forms (CLAC STAC XGETBV XSETBV
 * SWAPGS RDTSCP SMSW LMSW). */
void ex_grp7(struct emu_cpu *c, struct emu_insn *i)
{
    if (i->mod != 3) {
        switch (i->reg & 7) {
        case 0:
            store_dtable(c, i, &c->gdt);
            return;
        case 1:
            store_dtable(c, i, &c->idt);
            return;
        case 2:
        case 3:
            need_cpl0(c);
            emu_lgdt_lidt(c, (i->reg & 7) == 3, ea_la(c, i), i->opsize);
            return;
        case 4:
            emu_write(c, ea_la(c, i), c->cr0 & 0xffff, 2);
            return;
        case 6:
            need_cpl0(c);
            lmsw(c, (uint16_t)emu_read(c, ea_la(c, i), 2));
            return;
        case 7:
            need_cpl0(c);
            emu_tlb_flush_page(c, ea_la(c, i));
            return;
        default:
            ex_unimpl(c, i);
        }
    }
    switch (i->modrm) {
    case 0xca: /* CLAC */
    case 0xcb: /* STAC */
        need_cpl0(c);
        if (i->modrm == 0xca)
            c->rflags &= ~(uint64_t)FL_AC;
        else
            c->rflags |= FL_AC;
        return;
    case 0xd0: { /* XGETBV */
        uint32_t n = (uint32_t)c->r[R_CX];
        uint64_t v;
        if (!(c->cr4 & CR4_OSXSAVE))
            ex_ud(c, i);
        if (n == 0)
            v = c->xcr0;
        else if (n == 1)
            v = c->xcr0 & 3; /* XINUSE: report everything enabled as in use */
        else
            emu_raise(c, EXC_GP, 0);
        c->r[R_AX] = (uint32_t)v;
        c->r[R_DX] = v >> 32;
        return;
    }
    case 0xd1: { /* XSETBV: x87 must stay on, AVX needs SSE; only x87/SSE/AVX bits */
        uint64_t v = ((c->r[R_DX] & 0xffffffff) << 32) | (uint32_t)c->r[R_AX];
        if (!(c->cr4 & CR4_OSXSAVE))
            ex_ud(c, i);
        need_cpl0(c);
        if ((uint32_t)c->r[R_CX] != 0 || !(v & 1) || (v & ~7ULL) || ((v & 4) && !(v & 2)))
            emu_raise(c, EXC_GP, 0);
        c->xcr0 = v;
        return;
    }
    case 0xf8: { /* SWAPGS */
        uint64_t t;
        if (!c->code64)
            ex_ud(c, i);
        need_cpl0(c);
        t = c->seg[S_GS].base;
        c->seg[S_GS].base = c->kernel_gs_base;
        c->kernel_gs_base = t;
        return;
    }
    case 0xf9: /* RDTSCP */
        rdtsc_common(c);
        c->r[R_CX] = (uint32_t)c->tsc_aux;
        return;
    default:
        break;
    }
    switch (i->reg & 7) {
    case 4:
        reg_wr(c, i, i->rm, c->cr0, i->opsize);
        return;
    case 6:
        lmsw(c, (uint16_t)c->r[i->rm]);
        return;
    default:
        ex_unimpl(c, i);
    }
}

static void fence(int kind)
{
#if defined(__x86_64__) || defined(__i386__)
    if (kind == 5)
        __asm__ volatile("lfence" ::: "memory");
    else if (kind == 6)
        __asm__ volatile("mfence" ::: "memory");
    else
        __asm__ volatile("sfence" ::: "memory");
#else
    (void)kind;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

/* 0F AE: fences, CLFLUSH(OPT)/CLWB (no-ops), FXSAVE/FXRSTOR/LDMXCSR/STMXCSR on the kept state,
 * and F3 0F AE RD/WR FS/GS BASE. */
void ex_grp15(struct emu_cpu *c, struct emu_insn *i)
{
    int op = i->reg & 7;

    if (i->mod == 3) {
        if (i->rep == 0xf3 && op < 4) {
            int s = (op & 1) ? S_GS : S_FS;
            if (!c->code64 || !(c->cr4 & CR4_FSGSBASE))
                ex_ud(c, i);
            if (op < 2) {
                reg_wr(c, i, i->rm, c->seg[s].base, i->opsize == 8 ? 8 : 4);
            } else {
                uint64_t v = i->opsize == 8 ? c->r[i->rm] : (uint32_t)c->r[i->rm];
                if ((uint64_t)((int64_t)(v << 16) >> 16) != v)
                    emu_raise(c, EXC_GP, 0);
                c->seg[s].base = v;
            }
            return;
        }
        if (op >= 5 && !i->rep) {
            fence(op);
            return;
        }
        ex_unimpl(c, i);
    }
    switch (op) {
    case 0:
    case 1: {
        uint64_t la = ea_la(c, i);
        if (c->cr0 & (CR0_EM | CR0_TS))
            emu_raise(c, (c->cr0 & CR0_EM) ? EXC_UD : EXC_NM, 0);
        if (la & 15)
            emu_raise(c, EXC_GP, 0);
        if (op == 0) {
            for (int k = 0; k < 512; k += 16)
                emu_write_bytes(c, la + (uint64_t)k, c->fxsave + k, 16);
        } else {
            uint8_t buf[512];
            uint32_t mxcsr;
            for (int k = 0; k < 512; k += 16)
                emu_read_bytes(c, la + (uint64_t)k, buf + k, 16);
            memcpy(&mxcsr, buf + 24, 4);
            if (mxcsr & 0xffff0000u)
                emu_raise(c, EXC_GP, 0);
            memcpy(c->fxsave, buf, sizeof(buf));
        }
        return;
    }
    case 2:
    case 3: {
        uint64_t la = ea_la(c, i);
        uint32_t mxcsr;
        if (!(c->cr4 & CR4_OSFXSR) || (c->cr0 & CR0_EM))
            ex_ud(c, i);
        if (c->cr0 & CR0_TS)
            emu_raise(c, EXC_NM, 0);
        if (op == 3) {
            memcpy(&mxcsr, c->fxsave + 24, 4);
            emu_write(c, la, mxcsr, 4);
        } else {
            mxcsr = (uint32_t)emu_read(c, la, 4);
            if (mxcsr & 0xffff0000u)
                emu_raise(c, EXC_GP, 0);
            memcpy(c->fxsave + 24, &mxcsr, 4);
        }
        return;
    }
    case 6:
    case 7:
        /* CLWB / CLFLUSH / CLFLUSHOPT: caches are coherent here; check the address only. */
        (void)ea_la(c, i);
        return;
    default:
        ex_unimpl(c, i);
    }
}

/* 0F 20 MOV r, CRn; 0F 22 MOV CRn, r (CR0 CR2 CR3 CR4 CR8). */
void ex_mov_cr(struct emu_cpu *c, struct emu_insn *i)
{
    int cr = i->reg, size = c->code64 ? 8 : 4;

    if (cr != 0 && cr != 2 && cr != 3 && cr != 4 && cr != 8)
        ex_ud(c, i);
    need_cpl0(c);
    if (i->op == 0x120) {
        reg_wr(c, i, i->rm, emu_read_cr(c, cr), size);
        return;
    }
    emu_write_cr(c, cr, reg_rd(c, i, i->rm, size));
    /* CR8 (TPR) changes deliverability; CR0/CR4 may change the mode: end the batch either way. */
    if (cr != 2 && cr != 3)
        c->stop = EMU_STOP_IRQ;
}

/* 0F 21 MOV r, DRn; 0F 23 MOV DRn, r. Breakpoints are not implemented; the values are kept. */
void ex_mov_dr(struct emu_cpu *c, struct emu_insn *i)
{
    int dr = i->reg, size = c->code64 ? 8 : 4;
    uint64_t v;

    if (dr > 7)
        ex_ud(c, i);
    if (dr == 4 || dr == 5) {
        if (c->cr4 & CR4_DE)
            ex_ud(c, i);
        dr += 2;
    }
    need_cpl0(c);
    if (i->op == 0x121) {
        reg_wr(c, i, i->rm, c->dr[dr], size);
        return;
    }
    v = reg_rd(c, i, i->rm, size);
    if (dr >= 6 && (v >> 32))
        emu_raise(c, EXC_GP, 0);
    if (dr == 6)
        v = (v & 0x1e00f) | 0xffff0ff0;
    else if (dr == 7)
        v = (v & ~0xd800ULL) | 0x400;
    c->dr[dr] = v;
}

void ex_syscall(struct emu_cpu *c, struct emu_insn *i)
{
    (void)i;
    emu_syscall(c);
}

void ex_sysret(struct emu_cpu *c, struct emu_insn *i)
{
    emu_sysret(c, i->opsize);
    c->stop = EMU_STOP_IRQ;
}

void ex_clts(struct emu_cpu *c, struct emu_insn *i)
{
    (void)i;
    need_cpl0(c);
    c->cr0 &= ~(uint64_t)CR0_TS;
}

/* 0F 08 INVD, 0F 09 WBINVD: caches are coherent; privileged no-ops. */
void ex_wbinvd(struct emu_cpu *c, struct emu_insn *i)
{
    (void)i;
    need_cpl0(c);
}

void ex_rdmsr(struct emu_cpu *c, struct emu_insn *i)
{
    uint64_t v;

    (void)i;
    need_cpl0(c);
    if (emu_rdmsr(c, (uint32_t)c->r[R_CX], &v) < 0)
        emu_raise(c, EXC_GP, 0);
    c->r[R_AX] = (uint32_t)v;
    c->r[R_DX] = v >> 32;
}

void ex_wrmsr(struct emu_cpu *c, struct emu_insn *i)
{
    uint64_t v = ((c->r[R_DX] & 0xffffffff) << 32) | (uint32_t)c->r[R_AX];

    (void)i;
    need_cpl0(c);
    if (emu_wrmsr(c, (uint32_t)c->r[R_CX], v) < 0)
        emu_raise(c, EXC_GP, 0);
    /* EFER, APIC base, x2APIC TPR/EOI...: end the batch so the caller re-checks. */
    c->stop = EMU_STOP_IRQ;
}

void ex_rdtsc(struct emu_cpu *c, struct emu_insn *i)
{
    (void)i;
    rdtsc_common(c);
}

void ex_cpuid(struct emu_cpu *c, struct emu_insn *i)
{
    uint32_t out[4];

    (void)i;
    emu_cpuid(c, (uint32_t)c->r[R_AX], (uint32_t)c->r[R_CX], out);
    c->r[R_AX] = out[0];
    c->r[R_BX] = out[1];
    c->r[R_CX] = out[2];
    c->r[R_DX] = out[3];
}
