/* muldiv.c: MUL, IMUL (one, two and three operands), DIV and IDIV (#DE on zero and overflow). */
#include "accel/emu/insn.h"

__extension__ typedef unsigned __int128 u128;
__extension__ typedef __int128 s128;

/* Write a double-width result: AX for bytes, else rDX:rAX. */
static void put_wide(struct emu_cpu *c, struct emu_insn *i, uint64_t lo, uint64_t hi, int size)
{
    if (size == 1) {
        reg_wr(c, i, R_AX, (hi << 8) | lo, 2);
    } else {
        reg_wr(c, i, R_AX, lo, size);
        reg_wr(c, i, R_DX, hi, size);
    }
}

static void mul1(struct emu_cpu *c, struct emu_insn *i, uint64_t s, int size, bool sign)
{
    uint64_t m = szmask(size), a = reg_rd(c, i, R_AX, size), lo, hi;
    unsigned bits = (unsigned)size * 8;
    bool ovf;

    if (size == 8) {
        if (sign) {
            s128 p = (s128)(int64_t)a * (int64_t)s;
            lo = (uint64_t)p;
            hi = (uint64_t)(p >> 64);
            ovf = p != (s128)(int64_t)lo;
        } else {
            u128 p = (u128)a * s;
            lo = (uint64_t)p;
            hi = (uint64_t)(p >> 64);
            ovf = hi != 0;
        }
    } else if (sign) {
        int64_t p = sext(a, size) * sext(s, size);
        lo = (uint64_t)p & m;
        hi = ((uint64_t)p >> bits) & m;
        ovf = p != sext(lo, size);
    } else {
        uint64_t p = a * s;
        lo = p & m;
        hi = (p >> bits) & m;
        ovf = hi != 0;
    }
    put_wide(c, i, lo, hi, size);
    lf_set(c, LF_MUL, 0, ovf, lo, size);
}

static void div1(struct emu_cpu *c, struct emu_insn *i, uint64_t s, int size, bool sign)
{
    uint64_t m = szmask(size), lo, hi, q, r;
    unsigned bits = (unsigned)size * 8;

    if (s == 0)
        emu_raise(c, EXC_DE, 0);
    if (size == 1) {
        lo = c->r[R_AX] & 0xff;
        hi = (c->r[R_AX] >> 8) & 0xff;
    } else {
        lo = reg_rd(c, i, R_AX, size);
        hi = reg_rd(c, i, R_DX, size);
    }
    if (!sign) {
        if (size == 8) {
            if (hi == 0) {
                q = lo / s;
                r = lo % s;
            } else {
                u128 n = ((u128)hi << 64) | lo;
                if (hi >= s)
                    emu_raise(c, EXC_DE, 0);
                q = (uint64_t)(n / s);
                r = (uint64_t)(n % s);
            }
        } else {
            uint64_t n = (hi << bits) | lo;
            q = n / s;
            r = n % s;
            if (q > m)
                emu_raise(c, EXC_DE, 0);
        }
    } else {
        int64_t d = sext(s, size), sq, sr;
        if (size == 8) {
            s128 n = (s128)(((u128)hi << 64) | lo);
            if (d == -1) {
                /* The quotient is -n: it fits only if n is in (INT64_MIN, INT64_MAX]. */
                if (n > (s128)INT64_MAX || n <= (s128)INT64_MIN)
                    emu_raise(c, EXC_DE, 0);
                sq = -(int64_t)n;
                sr = 0;
            } else {
                s128 qq = n / d;
                if (qq > INT64_MAX || qq < INT64_MIN)
                    emu_raise(c, EXC_DE, 0);
                sq = (int64_t)qq;
                sr = (int64_t)(n % d);
            }
        } else {
            int64_t n = (int64_t)((uint64_t)sext(hi, size) << bits | lo);
            int64_t lim = (int64_t)(m >> 1);
            if (d == -1 && n == INT64_MIN)
                emu_raise(c, EXC_DE, 0);
            sq = n / d;
            sr = n % d;
            if (sq > lim || sq < -lim - 1)
                emu_raise(c, EXC_DE, 0);
        }
        q = (uint64_t)sq & m;
        r = (uint64_t)sr & m;
    }
    put_wide(c, i, q, r, size);
}

/* F6/F7 /4 MUL, /5 IMUL, /6 DIV, /7 IDIV. */
void emu_muldiv(struct emu_cpu *c, struct emu_insn *i, int size)
{
    uint64_t s = rm_rd(c, i, size);

    switch (i->reg & 7) {
    case 4:
        mul1(c, i, s, size, false);
        break;
    case 5:
        mul1(c, i, s, size, true);
        break;
    case 6:
        div1(c, i, s, size, false);
        break;
    default:
        div1(c, i, s, size, true);
        break;
    }
}

/* Truncated signed product a * b of size bytes; *ovf when it does not fit. */
static inline uint64_t imul_trunc(uint64_t a, uint64_t b, int size, bool *ovf)
{
    if (size == 8) {
        s128 p = (s128)(int64_t)a * (int64_t)b;
        *ovf = p != (s128)(int64_t)p;
        return (uint64_t)p;
    }
    int64_t p = sext(a, size) * sext(b, size);
    uint64_t r = (uint64_t)p & szmask(size);
    *ovf = p != sext(r, size);
    return r;
}

/* 0F AF: IMUL Gv, Ev. */
void ex_imul2(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize;
    bool ovf;
    uint64_t r = imul_trunc(reg_rd(c, i, i->reg, size), rm_rd(c, i, size), size, &ovf);

    reg_wr(c, i, i->reg, r, size);
    lf_set(c, LF_MUL, 0, ovf, r, size);
}

/* 69/6B: IMUL Gv, Ev, Iz/Ib. */
void ex_imul3(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize;
    bool ovf;
    uint64_t r = imul_trunc(rm_rd(c, i, size), i->imm, size, &ovf);

    reg_wr(c, i, i->reg, r, size);
    lf_set(c, LF_MUL, 0, ovf, r, size);
}

/* ---- fast forms (emu_spec_imul): IMUL Gv, Ev (0F AF) and IMUL Gv, Ev, imm (69/6B) with 32/64-bit
 * operands; for register sources without run-time form checks. */
static inline __attribute__((always_inline)) void imul_fast(struct emu_cpu *c, int dst, uint64_t a,
                                                            uint64_t b, int size)
{
    uint64_t r;
    bool ovf;

    if (size == 8) {
        int64_t p;
        ovf = __builtin_mul_overflow((int64_t)a, (int64_t)b, &p);
        r = (uint64_t)p;
    } else {
        int32_t p;
        ovf = __builtin_mul_overflow((int32_t)(uint32_t)a, (int32_t)(uint32_t)b, &p);
        r = (uint32_t)p;
    }
    c->r[dst] = r;
    lf_set(c, LF_MUL, 0, ovf, r, size);
}

static void ex_imul2_rr8(struct emu_cpu *c, struct emu_insn *i)
{
    imul_fast(c, i->reg, c->r[i->reg], c->r[i->rm], 8);
}

static void ex_imul2_rr4(struct emu_cpu *c, struct emu_insn *i)
{
    imul_fast(c, i->reg, c->r[i->reg], c->r[i->rm], 4);
}

static void ex_imul2_rm8(struct emu_cpu *c, struct emu_insn *i)
{
    imul_fast(c, i->reg, c->r[i->reg], emu_read(c, ea_la(c, i), 8), 8);
}

static void ex_imul2_rm4(struct emu_cpu *c, struct emu_insn *i)
{
    imul_fast(c, i->reg, c->r[i->reg], emu_read(c, ea_la(c, i), 4), 4);
}

static void ex_imul3_rr8(struct emu_cpu *c, struct emu_insn *i)
{
    imul_fast(c, i->reg, c->r[i->rm], i->imm, 8);
}

static void ex_imul3_rr4(struct emu_cpu *c, struct emu_insn *i)
{
    imul_fast(c, i->reg, c->r[i->rm], i->imm, 4);
}

void emu_spec_imul(struct emu_insn *i)
{
    int s4 = i->opsize == 4;

    if (i->opsize != 4 && i->opsize != 8)
        return;
    if (i->op == 0x1af)
        i->fn =
            i->mod == 3 ? (s4 ? ex_imul2_rr4 : ex_imul2_rr8) : (s4 ? ex_imul2_rm4 : ex_imul2_rm8);
    else if ((i->op == 0x69 || i->op == 0x6b) && i->mod == 3)
        i->fn = s4 ? ex_imul3_rr4 : ex_imul3_rr8;
}
