/* bit.c: bit tests (BT BTS BTR BTC), bit scans (BSF BSR TZCNT LZCNT) and POPCNT. */
#include "accel/emu/insn.h"

/* kind: 0 BT, 1 BTS, 2 BTR, 3 BTC. la is used for a memory operand. */
static void bt_do(struct emu_cpu *c, struct emu_insn *i, int kind, uint64_t la, unsigned bit,
                  int size)
{
    uint64_t mask = 1ULL << bit, d, r = 0;

    if (i->mod == 3) {
        d = reg_rd(c, i, i->rm, size);
        if (kind) {
            r = kind == 1 ? d | mask : kind == 2 ? d & ~mask : d ^ mask;
            reg_wr(c, i, i->rm, r, size);
        }
    } else if (kind == 0) {
        d = emu_read(c, la, size);
    } else {
        void *p = rmw_begin(c, la, size, i->lock, &d);
        do {
            r = kind == 1 ? d | mask : kind == 2 ? d & ~mask : d ^ mask;
        } while (!rmw_commit(c, la, p, &d, r, size));
    }
    flags_put(c, FL_CF, (uint32_t)((d >> bit) & 1));
}

/* 0F A3 BT, AB BTS, B3 BTR, BB BTC with a register bit offset: for a memory operand the offset
 * is signed and selects the operand-sized word at ea + (offset / bits) * size. */
void ex_bt(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize, kind = (i->op >> 3) & 3;
    unsigned bits = (unsigned)size * 8;
    uint64_t off = reg_rd(c, i, i->reg, size), la = 0;

    if (i->mod != 3) {
        int64_t words = sext(off, size) >> (size == 2 ? 4 : size == 4 ? 5 : 6);
        uint64_t ea = (i->ea + (uint64_t)(words * size)) & szmask(i->asize);
        la = seg_la(c, i->seg, ea);
    }
    bt_do(c, i, kind, la, (unsigned)(off & (bits - 1)), size);
}

/* 0F BA /4-/7: BT BTS BTR BTC with imm8. */
void ex_bt_imm(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize;
    unsigned bits = (unsigned)size * 8;

    if ((i->reg & 7) < 4)
        ex_unimpl(c, i);
    bt_do(c, i, (i->reg & 7) - 4, i->mod == 3 ? 0 : ea_la(c, i), (unsigned)(i->imm & (bits - 1)),
          size);
}

/* 0F BC: BSF, or TZCNT with F3. */
void ex_bsf(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize;
    unsigned bits = (unsigned)size * 8;
    uint64_t s = rm_rd(c, i, size);

    if (i->rep == 0xf3) {
        uint64_t r = s ? (uint64_t)__builtin_ctzll(s) : bits;
        reg_wr(c, i, i->reg, r, size);
        flags_put(c, FL_CF | FL_ZF, (s == 0 ? FL_CF : 0) | (r == 0 ? FL_ZF : 0));
        return;
    }
    if (s == 0) {
        flags_put(c, FL_ZF, FL_ZF); /* destination unchanged */
        return;
    }
    reg_wr(c, i, i->reg, (uint64_t)__builtin_ctzll(s), size);
    flags_put(c, FL_ZF, 0);
}

/* 0F BD: BSR, or LZCNT with F3. */
void ex_bsr(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize;
    unsigned bits = (unsigned)size * 8;
    uint64_t s = rm_rd(c, i, size);

    if (i->rep == 0xf3) {
        uint64_t r = s ? (uint64_t)(__builtin_clzll(s) - (64 - (int)bits)) : bits;
        reg_wr(c, i, i->reg, r, size);
        flags_put(c, FL_CF | FL_ZF, (s == 0 ? FL_CF : 0) | (r == 0 ? FL_ZF : 0));
        return;
    }
    if (s == 0) {
        flags_put(c, FL_ZF, FL_ZF);
        return;
    }
    reg_wr(c, i, i->reg, (uint64_t)(63 - __builtin_clzll(s)), size);
    flags_put(c, FL_ZF, 0);
}

/* F3 0F B8: POPCNT (without F3 it is JMPE: #UD). */
void ex_popcnt(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize;
    uint64_t s;

    if (i->rep != 0xf3)
        ex_ud(c, i);
    s = rm_rd(c, i, size);
    reg_wr(c, i, i->reg, (uint64_t)__builtin_popcountll(s), size);
    flags_put(c, FL_ARITH, s == 0 ? FL_ZF : 0);
}
