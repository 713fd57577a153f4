/* shift.c: shifts and rotates (SHL SHR SAR ROL ROR RCL RCR) and the double shifts SHLD/SHRD. */
#include "accel/emu/insn.h"

__extension__ typedef unsigned __int128 u128;

static inline uint64_t shl(uint64_t v, unsigned n)
{
    return n >= 64 ? 0 : v << n;
}

static inline uint64_t shr(uint64_t v, unsigned n)
{
    return n >= 64 ? 0 : v >> n;
}

/* Read the r/m destination; for memory also its linear address. */
static inline uint64_t dst_read(struct emu_cpu *c, struct emu_insn *i, int size, uint64_t *la)
{
    if (i->mod == 3)
        return reg_rd(c, i, i->rm, size);
    *la = ea_la(c, i);
    return emu_read(c, *la, size);
}

static inline void dst_write(struct emu_cpu *c, struct emu_insn *i, uint64_t la, uint64_t v,
                             int size)
{
    if (i->mod == 3)
        reg_wr(c, i, i->rm, v, size);
    else
        emu_write(c, la, v, size);
}

/* C0/C1 (imm8), D0/D1 (1), D2/D3 (CL): ModRM.reg selects ROL ROR RCL RCR SHL SHR SAL SAR. */
void ex_shift(struct emu_cpu *c, struct emu_insn *i)
{
    int size = (i->op & 1) ? i->opsize : 1, op = i->reg & 7;
    unsigned bits = (unsigned)size * 8, sh = bits - 1, cnt, n;
    uint64_t m = szmask(size), la = 0, d, r, cf, of;

    if (i->op <= 0xc1)
        cnt = (uint8_t)i->imm;
    else if (i->op <= 0xd1)
        cnt = 1;
    else
        cnt = (uint8_t)c->r[R_CX];
    cnt &= size == 8 ? 63 : 31;

    d = dst_read(c, i, size, &la);
    if (cnt == 0) {
        /* No flags change; a 32-bit register destination is still zero-extended. */
        if (i->mod == 3 && size == 4)
            reg_wr(c, i, i->rm, d, size);
        return;
    }
    switch (op) {
    case 4:
    case 6:
        r = shl(d, cnt) & m;
        dst_write(c, i, la, r, size);
        lf_set(c, LF_SHL, d, cnt, r, size);
        return;
    case 5:
        r = d >> cnt;
        dst_write(c, i, la, r, size);
        lf_set(c, LF_SHR, d, cnt, r, size);
        return;
    case 7:
        r = (uint64_t)(sext(d, size) >> cnt) & m;
        dst_write(c, i, la, r, size);
        lf_set(c, LF_SAR, d, cnt, r, size);
        return;
    case 0: /* ROL */
        n = cnt % bits;
        r = n ? ((d << n) | (d >> (bits - n))) & m : d;
        cf = r & 1;
        of = ((r >> sh) & 1) ^ cf;
        break;
    case 1: /* ROR */
        n = cnt % bits;
        r = n ? ((d >> n) | (d << (bits - n))) & m : d;
        cf = (r >> sh) & 1;
        of = cf ^ ((r >> (sh - 1)) & 1);
        break;
    case 2: { /* RCL: rotate the bits+1-bit value CF:dst */
        uint64_t cin = emu_get_cf(c);
        n = size < 4 ? cnt % (bits + 1) : cnt;
        if (n == 0) {
            dst_write(c, i, la, d, size);
            return;
        }
        r = (shl(d, n) | shl(cin, n - 1) | shr(d, bits + 1 - n)) & m;
        cf = (d >> (bits - n)) & 1;
        of = ((r >> sh) & 1) ^ cf;
        break;
    }
    default: { /* RCR */
        uint64_t cin = emu_get_cf(c);
        n = size < 4 ? cnt % (bits + 1) : cnt;
        if (n == 0) {
            dst_write(c, i, la, d, size);
            return;
        }
        r = (shr(d, n) | shl(cin, bits - n) | shl(d, bits + 1 - n)) & m;
        cf = (d >> (n - 1)) & 1;
        of = ((r >> sh) & 1) ^ ((r >> (sh - 1)) & 1);
        break;
    }
    }
    dst_write(c, i, la, r, size);
    flags_put(c, FL_CF | FL_OF, (uint32_t)(cf | (of ? FL_OF : 0)));
}

/* 0F A4/A5 SHLD, 0F AC/AD SHRD (imm8 or CL). */
void ex_shld(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize;
    unsigned bits = (unsigned)size * 8, sh = bits - 1, cnt;
    uint64_t m = szmask(size), la = 0, d, s, r, cf, of;
    bool left = i->op < 0x1a8;
    u128 v;

    cnt = (i->op & 1) ? (uint8_t)c->r[R_CX] : (uint8_t)i->imm;
    cnt &= size == 8 ? 63 : 31;
    d = dst_read(c, i, size, &la);
    s = reg_rd(c, i, i->reg, size);
    if (cnt == 0) {
        if (i->mod == 3 && size == 4)
            reg_wr(c, i, i->rm, d, size);
        return;
    }
    if (left) {
        v = ((u128)d << bits) | s;
        r = (uint64_t)((v << cnt) >> bits) & m;
        cf = (uint64_t)(v >> (2 * bits - cnt)) & 1;
    } else {
        v = ((u128)s << bits) | d;
        r = (uint64_t)(v >> cnt) & m;
        cf = (uint64_t)(v >> (cnt - 1)) & 1;
    }
    of = ((r ^ d) >> sh) & 1;
    dst_write(c, i, la, r, size);
    flags_put(c, FL_ARITH,
              (uint32_t)(cf | (of ? FL_OF : 0) | (r == 0 ? FL_ZF : 0) |
                         (((r >> sh) & 1) ? FL_SF : 0) |
                         (__builtin_parity((unsigned)(r & 0xff)) ? 0 : FL_PF)));
}

/* ---- fast forms (emu_spec_shift): SHL/SHR/SAR of a 32/64-bit register by a non-zero
 * constant count (C1 with a non-zero masked imm8, D1); the count is in i->imm. */
#define SHIFT_FAST(name, lfop, size, expr)                                                         \
    static void ex_##name(struct emu_cpu *c, struct emu_insn *i)                                   \
    {                                                                                              \
        unsigned n = (unsigned)i->imm;                                                             \
        uint64_t d = size == 8 ? c->r[i->rm] : (uint32_t)c->r[i->rm], r = (expr);                  \
        c->r[i->rm] = r;                                                                           \
        lf_set(c, lfop, d, n, r, size);                                                            \
    }

SHIFT_FAST(shl_ri8, LF_SHL, 8, d << n)
SHIFT_FAST(shl_ri4, LF_SHL, 4, (uint32_t)(d << n))
SHIFT_FAST(shr_ri8, LF_SHR, 8, d >> n)
SHIFT_FAST(shr_ri4, LF_SHR, 4, d >> n)
SHIFT_FAST(sar_ri8, LF_SAR, 8, (uint64_t)((int64_t)d >> n))
SHIFT_FAST(sar_ri4, LF_SAR, 4, (uint32_t)((int32_t)(uint32_t)d >> n))

void emu_spec_shift(struct emu_insn *i)
{
    unsigned op = i->reg & 7, size = i->opsize, n;

    if (i->mod != 3 || (size != 4 && size != 8) || (i->op != 0xc1 && i->op != 0xd1))
        return;
    n = i->op == 0xd1 ? 1 : (unsigned)(uint8_t)i->imm & (size == 8 ? 63 : 31);
    if (n == 0)
        return;
    switch (op) {
    case 4:
    case 6:
        i->fn = size == 8 ? ex_shl_ri8 : ex_shl_ri4;
        break;
    case 5:
        i->fn = size == 8 ? ex_shr_ri8 : ex_shr_ri4;
        break;
    case 7:
        i->fn = size == 8 ? ex_sar_ri8 : ex_sar_ri4;
        break;
    default:
        return;
    }
    i->imm = n;
}
