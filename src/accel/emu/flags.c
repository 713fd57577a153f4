/* flags.c: lazy arithmetic flags: derived from the last operation's operands only when read. */
#include "accel/emu/insn.h"

/*
 * Design: a flag-setting instruction records (lf_op, lf_dst, lf_src, lf_res, lf_size) in the
 * emu_cpu, values truncated to lf_size bytes (enum emu_lf_op in insn.h). c->rflags keeps every
 * other bit; its six arithmetic bits are meaningful only while lf_op == LF_NONE (and CF during
 * LF_INC/LF_DEC, which keep CF). Readers: emu_cond() (Jcc/SETcc/CMOVcc/LOOPcc, with fast paths
 * for CMP/SUB and logic ops), emu_get_cf() (ADC/SBB/RCL/RCR), emu_get_rflags() (PUSHF, LAHF,
 * interrupts, the state record). Instructions that change only some arithmetic flags (rotates,
 * BT*, BSF/BSR, CMPXCHG8B, SAHF, CLC/STC/CMC, ...) fold the lazy state into rflags first
 * (emu_flags_materialize) and edit the bits directly.
 *
 * Per op (SDM-defined flags exact; the choices for the flags the SDM leaves undefined marked *):
 *
 *   op        CF                       OF                          AF            SF ZF PF
 *   ADD/ADC   carry out                signed overflow             bit-4 carry   result
 *   SUB/SBB   borrow out               signed overflow             bit-4 borrow  result
 *   LOGIC     0                        0                           *0            result
 *   INC/DEC   unchanged                signed overflow             bit-4         result
 *   SHL       last bit out             MSB(res) ^ CF (*count > 1)  *0            result
 *   SHR       last bit out             MSB(dst) (*count > 1)       *0            result
 *   SAR       last bit out             0 (*count > 1)              *0            result
 *   MUL/IMUL  high half significant    = CF                        *0            *low result
 *
 * Other instructions (flags.c is not involved beyond materializing):
 *   shifts with count 0 and rotates with a masked count of 0: no flag changes.
 *   SHL/SHR with count >= operand size (8/16-bit only): CF as computed above (*0 for SHL, *the
 *     bit shifted out of the zero-extended value for SHR, i.e. 0), OF by the formulas above.
 *   ROL/ROR/RCL/RCR: only CF and OF; OF for count > 1 uses the count-1 formula (*):
 *     ROL OF = MSB(res) ^ CF; ROR/RCR OF = MSB(res) ^ MSB-1(res); RCL OF = MSB(res) ^ CF.
 *   SHLD/SHRD: CF = last bit out, OF = sign change (*for count > 1), SF/ZF/PF from the result,
 *     *AF = 0; count > operand size (16-bit): *result from the 64-bit concatenation.
 *   BT/BTS/BTR/BTC: CF = the bit; *OF SF AF PF unchanged; ZF unchanged.
 *   BSF/BSR: ZF = (src == 0); *CF OF SF AF PF unchanged; destination unchanged when src == 0.
 *   TZCNT/LZCNT: CF = (src == 0), ZF = (result == 0); *OF SF AF PF unchanged.
 *   POPCNT: ZF = (src == 0), CF OF SF AF PF = 0.
 *   DIV/IDIV: *all six unchanged.
 *   CMPXCHG8B/16B: ZF only.
 *   BSWAP with a 16-bit operand: *result 0.
 */

static inline uint32_t parity(uint64_t r)
{
    return __builtin_parity((unsigned)(r & 0xff)) ? 0 : FL_PF;
}

uint32_t emu_lazy_arith(const struct emu_cpu *c)
{
    uint64_t d = c->lf_dst, s = c->lf_src, r = c->lf_res;
    unsigned sh = c->lf_size * 8 - 1;
    uint32_t cf, of, af;

    switch (c->lf_op) {
    case LF_ADD:
    case LF_ADC:
        cf = (uint32_t)((((d & s) | ((d | s) & ~r)) >> sh) & 1);
        of = (uint32_t)((((d ^ r) & (s ^ r)) >> sh) & 1);
        af = (uint32_t)((d ^ s ^ r) & FL_AF);
        break;
    case LF_SUB:
    case LF_SBB:
        cf = (uint32_t)((((~d & s) | ((~d | s) & r)) >> sh) & 1);
        of = (uint32_t)((((d ^ s) & (d ^ r)) >> sh) & 1);
        af = (uint32_t)((d ^ s ^ r) & FL_AF);
        break;
    case LF_LOGIC:
        cf = of = af = 0;
        break;
    case LF_INC:
        cf = (uint32_t)(c->rflags & FL_CF);
        of = r == 1ULL << sh;
        af = (r & 0xf) == 0 ? FL_AF : 0;
        break;
    case LF_DEC:
        cf = (uint32_t)(c->rflags & FL_CF);
        of = d == 1ULL << sh;
        af = (r & 0xf) == 0xf ? FL_AF : 0;
        break;
    case LF_SHL:
        cf = (uint32_t)(((d << (s - 1)) >> sh) & 1);
        of = (uint32_t)((r >> sh) & 1) ^ cf;
        af = 0;
        break;
    case LF_SHR:
        cf = (uint32_t)((d >> (s - 1)) & 1);
        of = (uint32_t)((d >> sh) & 1);
        af = 0;
        break;
    case LF_SAR:
        cf = (uint32_t)(((uint64_t)(sext(d, (int)c->lf_size) >> (s - 1))) & 1);
        of = 0;
        af = 0;
        break;
    case LF_MUL:
        cf = of = (uint32_t)(s & 1);
        af = 0;
        break;
    default:
        return (uint32_t)(c->rflags & FL_ARITH);
    }
    return cf | (of ? FL_OF : 0) | af | parity(r) | (r == 0 ? FL_ZF : 0) |
           (((r >> sh) & 1) ? FL_SF : 0);
}

uint32_t emu_get_cf(const struct emu_cpu *c)
{
    switch (c->lf_op) {
    case LF_NONE:
    case LF_INC:
    case LF_DEC:
        return (uint32_t)(c->rflags & FL_CF);
    case LF_ADD:
        return c->lf_res < c->lf_dst;
    case LF_SUB:
        return c->lf_dst < c->lf_src;
    case LF_LOGIC:
        return 0;
    default:
        return emu_lazy_arith(c) & FL_CF;
    }
}

bool emu_cond(const struct emu_cpu *c, int cc)
{
    uint32_t op = c->lf_op, f;
    unsigned sh = c->lf_size * 8 - 1;
    bool r;

    if (op == LF_SUB) {
        uint64_t d = c->lf_dst, s = c->lf_src;
        int size = (int)c->lf_size;
        switch (cc >> 1) {
        case 1:
            r = d < s;
            goto out;
        case 2:
            r = d == s;
            goto out;
        case 3:
            r = d <= s;
            goto out;
        case 4:
            r = (c->lf_res >> sh) & 1;
            goto out;
        case 6:
            r = sext(d, size) < sext(s, size);
            goto out;
        case 7:
            r = sext(d, size) <= sext(s, size);
            goto out;
        default:
            break;
        }
    } else if (op == LF_LOGIC) {
        uint64_t res = c->lf_res;
        bool sf = (res >> sh) & 1;
        switch (cc >> 1) {
        case 0:
        case 1:
            r = false;
            goto out;
        case 2:
        case 3:
            r = res == 0;
            goto out;
        case 4:
        case 6:
            r = sf;
            goto out;
        case 7:
            r = res == 0 || sf;
            goto out;
        default:
            break;
        }
    } else if (op != LF_NONE && (cc >> 1) == 2) {
        r = c->lf_res == 0;
        goto out;
    }

    f = op == LF_NONE ? (uint32_t)c->rflags : emu_lazy_arith(c);
    switch (cc >> 1) {
    case 0:
        r = f & FL_OF;
        break;
    case 1:
        r = f & FL_CF;
        break;
    case 2:
        r = f & FL_ZF;
        break;
    case 3:
        r = f & (FL_CF | FL_ZF);
        break;
    case 4:
        r = f & FL_SF;
        break;
    case 5:
        r = f & FL_PF;
        break;
    case 6:
        r = !!(f & FL_SF) != !!(f & FL_OF);
        break;
    default:
        r = (f & FL_ZF) || !!(f & FL_SF) != !!(f & FL_OF);
        break;
    }
out:
    return r ^ (cc & 1);
}

void emu_flags_materialize(struct emu_cpu *c)
{
    if (c->lf_op != LF_NONE) {
        c->rflags = (c->rflags & ~(uint64_t)FL_ARITH) | emu_lazy_arith(c);
        c->lf_op = LF_NONE;
    }
}

uint64_t emu_get_rflags(struct emu_cpu *c)
{
    if (c->lf_op == LF_NONE)
        return c->rflags | 2;
    return (c->rflags & ~(uint64_t)FL_ARITH) | emu_lazy_arith(c) | 2;
}

void emu_set_rflags(struct emu_cpu *c, uint64_t v)
{
    c->rflags = v | 2;
    c->lf_op = LF_NONE;
}
