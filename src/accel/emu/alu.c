/* alu.c: integer arithmetic, logic, moves, exchanges and compare-exchange instructions. */
#include "accel/emu/insn.h"

/* Lazy-flags op for ADD OR ADC SBB AND SUB XOR CMP. */
static const uint8_t alu_lf[8] = {LF_ADD,   LF_LOGIC, LF_ADC,   LF_SBB,
                                  LF_LOGIC, LF_SUB,   LF_LOGIC, LF_SUB};

static inline __attribute__((always_inline)) uint64_t alu_calc(int op, uint64_t d, uint64_t s,
                                                               uint64_t cf, int size)
{
    uint64_t r;

    switch (op) {
    case 0:
        r = d + s;
        break;
    case 1:
        r = d | s;
        break;
    case 2:
        r = d + s + cf;
        break;
    case 3:
        r = d - s - cf;
        break;
    case 4:
        r = d & s;
        break;
    case 6:
        r = d ^ s;
        break;
    default:
        r = d - s;
        break;
    }
    return r & szmask(size);
}

/* op r/m, src (op 7 = CMP writes nothing). */
static inline __attribute__((always_inline)) void alu_rm(struct emu_cpu *c, struct emu_insn *i,
                                                         int op, uint64_t src, int size)
{
    uint64_t d, r, cf = 0;

    src &= szmask(size);
    if (op == 2 || op == 3)
        cf = emu_get_cf(c);
    if (i->mod == 3) {
        d = reg_rd(c, i, i->rm, size);
        r = alu_calc(op, d, src, cf, size);
        if (op != 7)
            reg_wr(c, i, i->rm, r, size);
    } else if (op == 7) {
        d = emu_read(c, ea_la(c, i), size);
        r = (d - src) & szmask(size);
    } else {
        uint64_t la = ea_la(c, i);
        void *p = rmw_begin(c, la, size, i->lock, &d);
        do {
            r = alu_calc(op, d, src, cf, size);
        } while (!rmw_commit(c, la, p, &d, r, size));
    }
    lf_set(c, alu_lf[op], d, src, r, size);
}

/* 00-3D: the eight operations in six forms (Eb,Gb Ev,Gv Gb,Eb Gv,Ev AL,Ib rAX,Iz). */
static inline __attribute__((always_inline)) void alu_form(struct emu_cpu *c, struct emu_insn *i,
                                                           int op)
{
    int size = (i->op & 1) ? i->opsize : 1;
    uint64_t d, s, r, cf;

    switch (i->op & 7) {
    case 0:
    case 1:
        alu_rm(c, i, op, reg_rd(c, i, i->reg, size), size);
        return;
    case 2:
    case 3:
        s = rm_rd(c, i, size);
        d = reg_rd(c, i, i->reg, size);
        cf = (op == 2 || op == 3) ? emu_get_cf(c) : 0;
        r = alu_calc(op, d, s, cf, size);
        if (op != 7)
            reg_wr(c, i, i->reg, r, size);
        lf_set(c, alu_lf[op], d, s, r, size);
        return;
    default:
        d = reg_rd(c, i, R_AX, size);
        s = i->imm & szmask(size);
        cf = (op == 2 || op == 3) ? emu_get_cf(c) : 0;
        r = alu_calc(op, d, s, cf, size);
        if (op != 7)
            reg_wr(c, i, R_AX, r, size);
        lf_set(c, alu_lf[op], d, s, r, size);
        return;
    }
}

/* One handler per operation, so the operation is constant in each (the decoder picks them);
 * the _i variants are 80-83 (r/m, imm). */
#define ALU_OP(name, opn)                                                                          \
    static void ex_##name(struct emu_cpu *c, struct emu_insn *i)                                   \
    {                                                                                              \
        alu_form(c, i, opn);                                                                       \
    }                                                                                              \
    static void ex_##name##_i(struct emu_cpu *c, struct emu_insn *i)                               \
    {                                                                                              \
        alu_rm(c, i, opn, i->imm, (i->op & 1) ? i->opsize : 1);                                    \
    }

ALU_OP(add, 0)
ALU_OP(or, 1)
ALU_OP(adc, 2)
ALU_OP(sbb, 3)
ALU_OP(and, 4)
ALU_OP(sub, 5)
ALU_OP(xor, 6)
ALU_OP(cmp, 7)

const emu_handler emu_alu_handlers[8] = {ex_add, ex_or,  ex_adc, ex_sbb,
                                         ex_and, ex_sub, ex_xor, ex_cmp};
const emu_handler emu_alu_imm_handlers[8] = {ex_add_i, ex_or_i,  ex_adc_i, ex_sbb_i,
                                             ex_and_i, ex_sub_i, ex_xor_i, ex_cmp_i};

void ex_alu(struct emu_cpu *c, struct emu_insn *i)
{
    emu_alu_handlers[(i->op >> 3) & 7](c, i);
}

void ex_grp1(struct emu_cpu *c, struct emu_insn *i)
{
    emu_alu_imm_handlers[i->reg & 7](c, i);
}

void ex_test(struct emu_cpu *c, struct emu_insn *i)
{
    int size = (i->op & 1) ? i->opsize : 1;
    uint64_t d, s;

    if (i->op < 0xa8) {
        d = rm_rd(c, i, size);
        s = reg_rd(c, i, i->reg, size);
    } else {
        d = reg_rd(c, i, R_AX, size);
        s = i->imm & szmask(size);
    }
    lf_set(c, LF_LOGIC, d, s, d & s, size);
}

/* NOT (neg == false) or NEG of r/m. */
static void notneg(struct emu_cpu *c, struct emu_insn *i, bool neg, int size)
{
    uint64_t m = szmask(size), d, r;

    if (i->mod == 3) {
        d = reg_rd(c, i, i->rm, size);
        r = (neg ? 0 - d : ~d) & m;
        reg_wr(c, i, i->rm, r, size);
    } else {
        uint64_t la = ea_la(c, i);
        void *p = rmw_begin(c, la, size, i->lock, &d);
        do {
            r = (neg ? 0 - d : ~d) & m;
        } while (!rmw_commit(c, la, p, &d, r, size));
    }
    if (neg)
        lf_set(c, LF_SUB, 0, d, r, size);
}

void ex_grp3(struct emu_cpu *c, struct emu_insn *i)
{
    int size = (i->op & 1) ? i->opsize : 1;

    switch (i->reg & 7) {
    case 0:
    case 1: {
        uint64_t d = rm_rd(c, i, size), s = i->imm & szmask(size);
        lf_set(c, LF_LOGIC, d, s, d & s, size);
        break;
    }
    case 2:
        notneg(c, i, false, size);
        break;
    case 3:
        notneg(c, i, true, size);
        break;
    default:
        emu_muldiv(c, i, size);
        break;
    }
}

void emu_incdec_rm(struct emu_cpu *c, struct emu_insn *i, bool dec, int size)
{
    uint64_t m = szmask(size), d, r;

    if (i->mod == 3) {
        d = reg_rd(c, i, i->rm, size);
        r = (dec ? d - 1 : d + 1) & m;
        reg_wr(c, i, i->rm, r, size);
    } else {
        uint64_t la = ea_la(c, i);
        void *p = rmw_begin(c, la, size, i->lock, &d);
        do {
            r = (dec ? d - 1 : d + 1) & m;
        } while (!rmw_commit(c, la, p, &d, r, size));
    }
    lf_set_incdec(c, dec ? LF_DEC : LF_INC, d, r, size);
}

/* 40-4F outside 64-bit mode. */
void ex_incdec_r(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize, r = i->op & 7;
    bool dec = i->op >= 0x48;
    uint64_t d = reg_rd(c, i, r, size), res = (dec ? d - 1 : d + 1) & szmask(size);

    reg_wr(c, i, r, res, size);
    lf_set_incdec(c, dec ? LF_DEC : LF_INC, d, res, size);
}

void ex_grp4(struct emu_cpu *c, struct emu_insn *i)
{
    if ((i->reg & 7) > 1)
        ex_unimpl(c, i);
    emu_incdec_rm(c, i, (i->reg & 7) == 1, 1);
}

static uint64_t xchg_mem(struct emu_cpu *c, uint64_t la, uint64_t v, int size)
{
    void *p;
    uint64_t old;

    emu_smc_check(c, la, size);
    p = emu_atomic_ptr(c, la, size);
    if (!p) {
        old = emu_read(c, la, size);
        emu_write(c, la, v, size);
        return old;
    }
    switch (size) {
    case 1:
        return __atomic_exchange_n((uint8_t *)p, (uint8_t)v, __ATOMIC_SEQ_CST);
    case 2:
        return __atomic_exchange_n((uint16_t *)p, (uint16_t)v, __ATOMIC_SEQ_CST);
    case 4:
        return __atomic_exchange_n((uint32_t *)p, (uint32_t)v, __ATOMIC_SEQ_CST);
    default:
        return __atomic_exchange_n((uint64_t *)p, v, __ATOMIC_SEQ_CST);
    }
}

/* 86/87: XCHG r/m, reg (implicitly locked with memory). */
void ex_xchg(struct emu_cpu *c, struct emu_insn *i)
{
    int size = (i->op & 1) ? i->opsize : 1;
    uint64_t v = reg_rd(c, i, i->reg, size), old;

    if (i->mod == 3) {
        old = reg_rd(c, i, i->rm, size);
        reg_wr(c, i, i->rm, v, size);
    } else {
        old = xchg_mem(c, ea_la(c, i), v, size);
    }
    reg_wr(c, i, i->reg, old, size);
}

/* 90-97: XCHG rAX, reg; 90 is NOP (F3 90: PAUSE) unless REX.B makes it XCHG r8. */
void ex_xchg_ax(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize;
    uint64_t a, b;

    if (i->rm == 0) {
#if defined(__x86_64__) || defined(__i386__)
        if (i->rep == 0xf3)
            __builtin_ia32_pause();
#endif
        return;
    }
    a = reg_rd(c, i, R_AX, size);
    b = reg_rd(c, i, i->rm, size);
    reg_wr(c, i, R_AX, b, size);
    reg_wr(c, i, i->rm, a, size);
}

void ex_mov(struct emu_cpu *c, struct emu_insn *i)
{
    int size = (i->op & 1) ? i->opsize : 1;

    if (i->op & 2)
        reg_wr(c, i, i->reg, rm_rd(c, i, size), size);
    else
        rm_wr(c, i, reg_rd(c, i, i->reg, size), size);
}

void ex_mov_rm_imm(struct emu_cpu *c, struct emu_insn *i)
{
    int size = (i->op & 1) ? i->opsize : 1;

    if ((i->reg & 7) != 0)
        ex_unimpl(c, i);
    rm_wr(c, i, i->imm, size);
}

void ex_mov_r_imm(struct emu_cpu *c, struct emu_insn *i)
{
    reg_wr(c, i, i->rm, i->imm, i->op < 0xb8 ? 1 : i->opsize);
}

void ex_mov_moffs(struct emu_cpu *c, struct emu_insn *i)
{
    int size = (i->op & 1) ? i->opsize : 1;
    uint64_t la = seg_la(c, i->seg, i->imm & szmask(i->asize));

    if (i->op & 2)
        emu_write(c, la, reg_rd(c, i, R_AX, size), size);
    else
        reg_wr(c, i, R_AX, emu_read(c, la, size), size);
}

void ex_lea(struct emu_cpu *c, struct emu_insn *i)
{
    need_mem(c, i);
    reg_wr(c, i, i->reg, i->ea, i->opsize);
}

void ex_movzx(struct emu_cpu *c, struct emu_insn *i)
{
    reg_wr(c, i, i->reg, rm_rd(c, i, (i->op & 1) ? 2 : 1), i->opsize);
}

void ex_movsx(struct emu_cpu *c, struct emu_insn *i)
{
    int ss = (i->op & 1) ? 2 : 1;
    reg_wr(c, i, i->reg, (uint64_t)sext(rm_rd(c, i, ss), ss), i->opsize);
}

/* 63: MOVSXD in 64-bit mode (ARPL elsewhere, not implemented). */
void ex_movsxd(struct emu_cpu *c, struct emu_insn *i)
{
    if (!c->code64)
        ex_unimpl(c, i);
    if (i->opsize == 8)
        reg_wr(c, i, i->reg, (uint64_t)(int64_t)(int32_t)rm_rd(c, i, 4), 8);
    else
        reg_wr(c, i, i->reg, rm_rd(c, i, i->opsize), i->opsize);
}

void ex_cbw(struct emu_cpu *c, struct emu_insn *i)
{
    int half = i->opsize / 2;
    reg_wr(c, i, R_AX, (uint64_t)sext(c->r[R_AX], half), i->opsize);
}

void ex_cwd(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize;
    uint64_t sign = (c->r[R_AX] >> (size * 8 - 1)) & 1;
    reg_wr(c, i, R_DX, sign ? ~0ULL : 0, size);
}

/* CMOVcc reads its source (and may fault) whatever the condition; a 32-bit destination is
 * zero-extended even when nothing moves. */
void ex_cmov(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize;
    uint64_t s = rm_rd(c, i, size);

    if (emu_cond(c, i->op & 15))
        reg_wr(c, i, i->reg, s, size);
    else if (size == 4)
        c->r[i->reg] = (uint32_t)c->r[i->reg];
}

void ex_setcc(struct emu_cpu *c, struct emu_insn *i)
{
    rm_wr(c, i, emu_cond(c, i->op & 15), 1);
}

void ex_cmpxchg(struct emu_cpu *c, struct emu_insn *i)
{
    int size = (i->op & 1) ? i->opsize : 1;
    uint64_t acc = reg_rd(c, i, R_AX, size), src = reg_rd(c, i, i->reg, size), d;

    if (i->mod == 3) {
        d = reg_rd(c, i, i->rm, size);
        if (d == acc)
            reg_wr(c, i, i->rm, src, size);
    } else {
        uint64_t la = ea_la(c, i);
        void *p = NULL;
        if (i->lock) {
            emu_smc_check(c, la, size);
            p = emu_atomic_ptr(c, la, size);
        }
        if (p) {
            d = acc;
            atomic_cas(p, &d, src, size);
        } else {
            /* The destination is always written (the old value when not equal). */
            d = emu_read(c, la, size);
            emu_write(c, la, d == acc ? src : d, size);
        }
    }
    if (d != acc)
        reg_wr(c, i, R_AX, d, size);
    lf_set(c, LF_SUB, acc, d, (acc - d) & szmask(size), size);
}

#if defined(__x86_64__)
struct u128 {
    uint64_t lo, hi;
};

static bool cas16(void *p, uint64_t *lo, uint64_t *hi, uint64_t nlo, uint64_t nhi)
{
    bool ok;
    __asm__ volatile("lock cmpxchg16b %1"
                     : "=@ccz"(ok), "+m"(*(struct u128 *)p), "+a"(*lo), "+d"(*hi)
                     : "b"(nlo), "c"(nhi)
                     : "memory");
    return ok;
}
#endif

/* 0F C7 /1: CMPXCHG8B m64 / CMPXCHG16B m128 (REX.W). Only ZF changes. */
void ex_grp9(struct emu_cpu *c, struct emu_insn *i)
{
    uint64_t la, lo, hi, nlo, nhi;
    bool eq;

    if ((i->reg & 7) != 1)
        ex_unimpl(c, i);
    need_mem(c, i);
    la = ea_la(c, i);
    emu_smc_check(c, la, (i->rex & 8) ? 16 : 8);
    if (i->rex & 8) {
        void *p;
        lo = c->r[R_AX];
        hi = c->r[R_DX];
        nlo = c->r[R_BX];
        nhi = c->r[R_CX];
        if (la & 15)
            emu_raise(c, EXC_GP, 0);
        p = emu_atomic_ptr(c, la, 16);
#if defined(__x86_64__)
        if (p) {
            eq = cas16(p, &lo, &hi, nlo, nhi);
        } else
#endif
        {
            uint64_t olo = emu_read(c, la, 8), ohi = emu_read(c, la + 8, 8);
            eq = olo == lo && ohi == hi;
            emu_write(c, la, eq ? nlo : olo, 8);
            emu_write(c, la + 8, eq ? nhi : ohi, 8);
            lo = olo;
            hi = ohi;
        }
        if (!eq) {
            c->r[R_AX] = lo;
            c->r[R_DX] = hi;
        }
    } else {
        uint64_t exp = (c->r[R_DX] << 32) | (uint32_t)c->r[R_AX];
        uint64_t nv = (c->r[R_CX] << 32) | (uint32_t)c->r[R_BX], old;
        void *p = i->lock ? emu_atomic_ptr(c, la, 8) : NULL;
        if (p) {
            old = exp;
            eq = atomic_cas(p, &old, nv, 8);
        } else {
            old = emu_read(c, la, 8);
            eq = old == exp;
            emu_write(c, la, eq ? nv : old, 8);
        }
        if (!eq) {
            c->r[R_AX] = (uint32_t)old;
            c->r[R_DX] = old >> 32;
        }
    }
    flags_put(c, FL_ZF, eq ? FL_ZF : 0);
}

void ex_xadd(struct emu_cpu *c, struct emu_insn *i)
{
    int size = (i->op & 1) ? i->opsize : 1;
    uint64_t s = reg_rd(c, i, i->reg, size), d, r;

    if (i->mod == 3) {
        d = reg_rd(c, i, i->rm, size);
        r = (d + s) & szmask(size);
        reg_wr(c, i, i->reg, d, size);
        reg_wr(c, i, i->rm, r, size);
    } else {
        uint64_t la = ea_la(c, i);
        void *p = rmw_begin(c, la, size, i->lock, &d);
        do {
            r = (d + s) & szmask(size);
        } while (!rmw_commit(c, la, p, &d, r, size));
        reg_wr(c, i, i->reg, d, size);
    }
    lf_set(c, LF_ADD, d, s, r, size);
}

static uint64_t bswap(uint64_t v, int size)
{
    switch (size) {
    case 2:
        return __builtin_bswap16((uint16_t)v);
    case 4:
        return __builtin_bswap32((uint32_t)v);
    default:
        return __builtin_bswap64(v);
    }
}

void ex_bswap(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize;
    /* BSWAP of a 16-bit register is undefined: 0 here. */
    reg_wr(c, i, i->rm, size == 2 ? 0 : bswap(c->r[i->rm], size), size);
}

/* 0F 38 F0/F1: MOVBE Gv, Mv / Mv, Gv. */
void ex_movbe(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize;

    need_mem(c, i);
    if (i->op & 1)
        emu_write(c, ea_la(c, i), bswap(reg_rd(c, i, i->reg, size), size), size);
    else
        reg_wr(c, i, i->reg, bswap(emu_read(c, ea_la(c, i), size), size), size);
}

void ex_xlat(struct emu_cpu *c, struct emu_insn *i)
{
    uint64_t off = (c->r[R_BX] + (c->r[R_AX] & 0xff)) & szmask(i->asize);
    reg_wr(c, i, R_AX, emu_read(c, seg_la(c, i->seg, off), 1), 1);
}

/* ---- fast forms: handlers without run-time size or form switches, chosen at decode by
 * emu_spec_alu (register numbers and sizes that need no merging: 32- and 64-bit operands).
 * For the register-register forms the decoder leaves the destination in i->rm and the source
 * in i->reg (it swaps them for the Gv,Ev opcodes). */

static inline __attribute__((always_inline)) void alu_fast(struct emu_cpu *c, uint64_t d,
                                                           uint64_t s, int op, int size, int dst)
{
    uint64_t r = alu_calc(op, d, s, 0, size);

    if (op != 7)
        c->r[dst] = r;
    lf_set(c, alu_lf[op], d, s, r, size);
}

#define ALU_FAST(name, op)                                                                         \
    static void ex_##name##_rr8(struct emu_cpu *c, struct emu_insn *i)                             \
    {                                                                                              \
        alu_fast(c, c->r[i->rm], c->r[i->reg], op, 8, i->rm);                                      \
    }                                                                                              \
    static void ex_##name##_rr4(struct emu_cpu *c, struct emu_insn *i)                             \
    {                                                                                              \
        alu_fast(c, (uint32_t)c->r[i->rm], (uint32_t)c->r[i->reg], op, 4, i->rm);                  \
    }                                                                                              \
    static void ex_##name##_ri8(struct emu_cpu *c, struct emu_insn *i)                             \
    {                                                                                              \
        alu_fast(c, c->r[i->rm], i->imm, op, 8, i->rm);                                            \
    }                                                                                              \
    static void ex_##name##_ri4(struct emu_cpu *c, struct emu_insn *i)                             \
    {                                                                                              \
        alu_fast(c, (uint32_t)c->r[i->rm], (uint32_t)i->imm, op, 4, i->rm);                        \
    }                                                                                              \
    static void ex_##name##_rm8(struct emu_cpu *c, struct emu_insn *i)                             \
    {                                                                                              \
        alu_fast(c, c->r[i->reg], emu_read(c, ea_la(c, i), 8), op, 8, i->reg);                     \
    }                                                                                              \
    static void ex_##name##_rm4(struct emu_cpu *c, struct emu_insn *i)                             \
    {                                                                                              \
        alu_fast(c, (uint32_t)c->r[i->reg], emu_read(c, ea_la(c, i), 4), op, 4, i->reg);           \
    }

ALU_FAST(add, 0)
ALU_FAST(or, 1)
ALU_FAST(and, 4)
ALU_FAST(sub, 5)
ALU_FAST(xor, 6)
ALU_FAST(cmp, 7)

/* [op][form]: forms rr8 rr4 ri8 ri4 rm8 rm4; ADC and SBB have none. */
#define ALU_FAST_ROW(name)                                                                         \
    {                                                                                              \
        ex_##name##_rr8, ex_##name##_rr4, ex_##name##_ri8, ex_##name##_ri4, ex_##name##_rm8,       \
            ex_##name##_rm4                                                                        \
    }
static const emu_handler alu_fast_tab[8][6] = {
    ALU_FAST_ROW(add), ALU_FAST_ROW(or),  {0}, {0}, ALU_FAST_ROW(and), ALU_FAST_ROW(sub),
    ALU_FAST_ROW(xor), ALU_FAST_ROW(cmp),
};

static void ex_test_rr8(struct emu_cpu *c, struct emu_insn *i)
{
    uint64_t d = c->r[i->rm], s = c->r[i->reg];
    lf_set(c, LF_LOGIC, d, s, d & s, 8);
}

static void ex_test_rr4(struct emu_cpu *c, struct emu_insn *i)
{
    uint64_t d = (uint32_t)c->r[i->rm], s = (uint32_t)c->r[i->reg];
    lf_set(c, LF_LOGIC, d, s, d & s, 4);
}

static void ex_mov_rr8(struct emu_cpu *c, struct emu_insn *i)
{
    c->r[i->rm] = c->r[i->reg];
}

static void ex_mov_rr4(struct emu_cpu *c, struct emu_insn *i)
{
    c->r[i->rm] = (uint32_t)c->r[i->reg];
}

static void ex_mov_ld8(struct emu_cpu *c, struct emu_insn *i)
{
    c->r[i->reg] = emu_read(c, ea_la(c, i), 8);
}

static void ex_mov_ld4(struct emu_cpu *c, struct emu_insn *i)
{
    c->r[i->reg] = emu_read(c, ea_la(c, i), 4);
}

static void ex_mov_st8(struct emu_cpu *c, struct emu_insn *i)
{
    emu_write(c, ea_la(c, i), c->r[i->reg], 8);
}

static void ex_mov_st4(struct emu_cpu *c, struct emu_insn *i)
{
    emu_write(c, ea_la(c, i), c->r[i->reg], 4);
}

/* MOV r, imm (B8+r, C7 /0 with a register): imm already sign- or zero-extended as needed. */
static void ex_mov_ri8(struct emu_cpu *c, struct emu_insn *i)
{
    c->r[i->rm] = i->imm;
}

static void ex_mov_ri4(struct emu_cpu *c, struct emu_insn *i)
{
    c->r[i->rm] = (uint32_t)i->imm;
}

static void ex_mov_mi8(struct emu_cpu *c, struct emu_insn *i)
{
    emu_write(c, ea_la(c, i), i->imm, 8);
}

static void ex_mov_mi4(struct emu_cpu *c, struct emu_insn *i)
{
    emu_write(c, ea_la(c, i), i->imm, 4);
}

static void ex_lea8(struct emu_cpu *c, struct emu_insn *i)
{
    c->r[i->reg] = i->ea;
}

static void ex_lea4(struct emu_cpu *c, struct emu_insn *i)
{
    c->r[i->reg] = (uint32_t)i->ea;
}

/* MOVZX to a 32/64-bit register (both zero-extend to 64 bits). */
static void ex_movzxb_rr(struct emu_cpu *c, struct emu_insn *i)
{
    c->r[i->reg] = c->r[i->rm] & 0xff; /* only without AH..BH */
}

static void ex_movzxw_rr(struct emu_cpu *c, struct emu_insn *i)
{
    c->r[i->reg] = c->r[i->rm] & 0xffff;
}

static void ex_movzxb_m(struct emu_cpu *c, struct emu_insn *i)
{
    c->r[i->reg] = emu_read(c, ea_la(c, i), 1);
}

static void ex_movzxw_m(struct emu_cpu *c, struct emu_insn *i)
{
    c->r[i->reg] = emu_read(c, ea_la(c, i), 2);
}

static void ex_incdec8(struct emu_cpu *c, struct emu_insn *i)
{
    uint64_t d = c->r[i->rm], r = (i->reg & 7) ? d - 1 : d + 1;
    c->r[i->rm] = r;
    lf_set_incdec(c, (i->reg & 7) ? LF_DEC : LF_INC, d, r, 8);
}

static void ex_incdec4(struct emu_cpu *c, struct emu_insn *i)
{
    uint64_t d = (uint32_t)c->r[i->rm], r = (uint32_t)((i->reg & 7) ? d - 1 : d + 1);
    c->r[i->rm] = r;
    lf_set_incdec(c, (i->reg & 7) ? LF_DEC : LF_INC, d, r, 4);
}

void emu_spec_alu(struct emu_insn *i)
{
    unsigned op = i->op, size = i->opsize;
    int s4 = size == 4 ? 1 : 0;
    bool reg = i->mod == 3;

    if (i->lock || (size != 4 && size != 8))
        return;
    if (op < 0x40 && (op & 7) < 4 && (op & 1)) {
        const emu_handler *row = alu_fast_tab[op >> 3];
        if (!row[0])
            return;
        if (reg) {
            if (op & 2) { /* Gv,Ev: destination reg */
                uint8_t t = i->reg;
                i->reg = i->rm;
                i->rm = t;
            }
            i->fn = row[0 + s4];
        } else if (op & 2) {
            i->fn = row[4 + s4];
        }
    } else if ((op == 0x81 || op == 0x83) && reg) {
        const emu_handler *row = alu_fast_tab[i->reg & 7];
        if (row[0])
            i->fn = row[2 + s4];
    } else if (op == 0x85 && reg) {
        i->fn = s4 ? ex_test_rr4 : ex_test_rr8;
    } else if (op == 0x89 || op == 0x8b) {
        if (reg) {
            if (op == 0x8b) {
                uint8_t t = i->reg;
                i->reg = i->rm;
                i->rm = t;
            }
            i->fn = s4 ? ex_mov_rr4 : ex_mov_rr8;
        } else {
            i->fn = op == 0x8b ? (s4 ? ex_mov_ld4 : ex_mov_ld8) : (s4 ? ex_mov_st4 : ex_mov_st8);
        }
    } else if (op >= 0xb8 && op <= 0xbf) {
        i->fn = s4 ? ex_mov_ri4 : ex_mov_ri8;
    } else if (op == 0xc7 && (i->reg & 7) == 0) {
        i->fn = reg ? (s4 ? ex_mov_ri4 : ex_mov_ri8) : (s4 ? ex_mov_mi4 : ex_mov_mi8);
    } else if (op == 0x8d && !reg) {
        i->fn = s4 ? ex_lea4 : ex_lea8;
    } else if (op == 0x1b6 || op == 0x1b7) {
        if (!reg)
            i->fn = op == 0x1b6 ? ex_movzxb_m : ex_movzxw_m;
        else if (op == 0x1b7)
            i->fn = ex_movzxw_rr;
        else if (i->rex || i->rm < 4)
            i->fn = ex_movzxb_rr;
    } else if (op == 0xff && reg && (i->reg & 7) < 2) {
        i->fn = s4 ? ex_incdec4 : ex_incdec8;
    }
}
