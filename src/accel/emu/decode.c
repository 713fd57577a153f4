/* decode.c: x86 prefixes, opcode maps, ModRM/SIB/displacement and immediates -> struct emu_insn. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "accel/emu/insn.h"

/* Opcode attributes. */
#define M     0x001       /* ModRM follows */
#define IMMS  1           /* immediate kind in bits 1-3 */
#define IB    (1 << IMMS) /* imm8, sign-extended */
#define IW    (2 << IMMS) /* imm16, zero-extended */
#define IZ    (3 << IMMS) /* imm16/32 by operand size, sign-extended */
#define IV    (4 << IMMS) /* imm16/32/64 by operand size */
#define MO    (5 << IMMS) /* moffs: address-size offset */
#define PT    (6 << IMMS) /* far pointer: offset16/32 then selector16 */
#define EN    (7 << IMMS) /* ENTER: imm16 then imm8 */
#define IMASK (7 << IMMS)
#define D64   0x010 /* 64-bit mode: operand size defaults to 64 (66 gives 16) */
#define F64   0x020 /* 64-bit mode: operand size is always 64 (near branches) */
#define N64   0x040 /* #UD in 64-bit mode */
#define RG    0x080 /* ModRM.mod ignored: always register operands (MOV CRn/DRn) */
#define G3    0x100 /* F6/F7: immediate only for /0 and /1 */
#define LK    0x200 /* LOCK allowed with a memory destination (groups: see lock_ok) */

struct opent {
    uint16_t f;
    emu_handler fn;
};

#define U                                                                                          \
    {                                                                                              \
        0, ex_unimpl                                                                               \
    }
#define ALU(base)                                                                                  \
    [base] = {M | LK, ex_alu}, [base + 1] = {M | LK, ex_alu}, [base + 2] = {M, ex_alu},            \
    [base + 3] = {M, ex_alu}, [base + 4] = {IB, ex_alu}, [base + 5] = {IZ, ex_alu}

static const struct opent map0[256] = {
    ALU(0x00),
    ALU(0x08),
    ALU(0x10),
    ALU(0x18),
    ALU(0x20),
    ALU(0x28),
    ALU(0x30),
    ALU(0x38),
    [0x06] = {N64, ex_push_sreg},
    [0x07] = {N64, ex_pop_sreg},
    [0x0e] = {N64, ex_push_sreg},
    [0x0f] = U, /* escape, handled by the decoder */
    [0x16] = {N64, ex_push_sreg},
    [0x17] = {N64, ex_pop_sreg},
    [0x1e] = {N64, ex_push_sreg},
    [0x1f] = {N64, ex_pop_sreg},
    [0x26] = U,
    [0x27] = {N64, ex_unimpl},
    [0x2e] = U,
    [0x2f] = {N64, ex_unimpl},
    [0x36] = U,
    [0x37] = {N64, ex_unimpl},
    [0x3e] = U,
    [0x3f] = {N64, ex_unimpl},
    [0x40 ... 0x4f] = {0, ex_incdec_r},
    [0x50 ... 0x57] = {D64, ex_push_r},
    [0x58 ... 0x5f] = {D64, ex_pop_r},
    [0x60] = {N64, ex_pusha},
    [0x61] = {N64, ex_popa},
    [0x62] = {M | N64, ex_unimpl},
    [0x63] = {M, ex_movsxd},
    [0x64 ... 0x67] = U,
    [0x68] = {IZ | D64, ex_push_imm},
    [0x69] = {M | IZ, ex_imul3},
    [0x6a] = {IB | D64, ex_push_imm},
    [0x6b] = {M | IB, ex_imul3},
    [0x6c ... 0x6d] = {0, ex_ins},
    [0x6e ... 0x6f] = {0, ex_outs},
    [0x70 ... 0x7f] = {IB | F64, ex_jcc},
    [0x80] = {M | IB | LK, ex_grp1},
    [0x81] = {M | IZ | LK, ex_grp1},
    [0x82] = {M | IB | LK | N64, ex_grp1},
    [0x83] = {M | IB | LK, ex_grp1},
    [0x84 ... 0x85] = {M, ex_test},
    [0x86 ... 0x87] = {M | LK, ex_xchg},
    [0x88 ... 0x8b] = {M, ex_mov},
    [0x8c] = {M, ex_mov_sreg},
    [0x8d] = {M, ex_lea},
    [0x8e] = {M, ex_mov_sreg},
    [0x8f] = {M | D64, ex_pop_rm},
    [0x90 ... 0x97] = {0, ex_xchg_ax},
    [0x98] = {0, ex_cbw},
    [0x99] = {0, ex_cwd},
    [0x9a] = {PT | N64, ex_far_ptr},
    [0x9b] = {0, ex_nop},
    [0x9c] = {D64, ex_pushf},
    [0x9d] = {D64, ex_popf},
    [0x9e] = {0, ex_sahf},
    [0x9f] = {0, ex_lahf},
    [0xa0 ... 0xa3] = {MO, ex_mov_moffs},
    [0xa4 ... 0xa5] = {0, ex_movs},
    [0xa6 ... 0xa7] = {0, ex_cmps},
    [0xa8] = {IB, ex_test},
    [0xa9] = {IZ, ex_test},
    [0xaa ... 0xab] = {0, ex_stos},
    [0xac ... 0xad] = {0, ex_lods},
    [0xae ... 0xaf] = {0, ex_scas},
    [0xb0 ... 0xb7] = {IB, ex_mov_r_imm},
    [0xb8 ... 0xbf] = {IV, ex_mov_r_imm},
    [0xc0] = {M | IB, ex_shift},
    [0xc1] = {M | IB, ex_shift},
    [0xc2] = {IW | F64, ex_ret},
    [0xc3] = {F64, ex_ret},
    [0xc4 ... 0xc5] = {M | N64, ex_unimpl},
    [0xc6] = {M | IB, ex_mov_rm_imm},
    [0xc7] = {M | IZ, ex_mov_rm_imm},
    [0xc8] = {EN | D64, ex_enter},
    [0xc9] = {D64, ex_leave},
    [0xca] = {IW, ex_retf},
    [0xcb] = {0, ex_retf},
    [0xcc] = {0, ex_int},
    [0xcd] = {IB, ex_int},
    [0xce] = {N64, ex_int},
    [0xcf] = {0, ex_iret},
    [0xd0 ... 0xd3] = {M, ex_shift},
    [0xd4 ... 0xd5] = {IB | N64, ex_unimpl},
    [0xd6] = {N64, ex_unimpl},
    [0xd7] = {0, ex_xlat},
    [0xd8 ... 0xdf] = {M, ex_unimpl},
    [0xe0 ... 0xe2] = {IB | F64, ex_loop},
    [0xe3] = {IB | F64, ex_jcxz},
    [0xe4 ... 0xe7] = {IB, ex_in_out},
    [0xe8] = {IZ | F64, ex_call_rel},
    [0xe9] = {IZ | F64, ex_jmp_rel},
    [0xea] = {PT | N64, ex_far_ptr},
    [0xeb] = {IB | F64, ex_jmp_rel},
    [0xec ... 0xef] = {0, ex_in_out},
    [0xf0] = U,
    [0xf1] = {0, ex_unimpl},
    [0xf2 ... 0xf3] = U,
    [0xf4] = {0, ex_hlt},
    [0xf5] = {0, ex_flagop},
    [0xf6] = {M | G3 | LK, ex_grp3},
    [0xf7] = {M | G3 | LK, ex_grp3},
    [0xf8 ... 0xfd] = {0, ex_flagop},
    [0xfe] = {M | LK, ex_grp4},
    [0xff] = {M | LK, ex_grp5},
};

static const struct opent map1[256] = {
    [0x00] = {M, ex_grp6},
    [0x01] = {M, ex_grp7},
    [0x02 ... 0x04] = {M, ex_unimpl},
    [0x05] = {0, ex_syscall},
    [0x06] = {0, ex_clts},
    [0x07] = {0, ex_sysret},
    [0x08 ... 0x09] = {0, ex_wbinvd},
    [0x0a] = U,
    [0x0b] = {0, ex_ud},
    [0x0c] = U,
    [0x0d] = {M, ex_nop},
    [0x0e ... 0x0f] = U,
    [0x10 ... 0x17] = {M, ex_unimpl},
    [0x18 ... 0x1f] = {M, ex_nop},
    [0x20] = {M | RG, ex_mov_cr},
    [0x21] = {M | RG, ex_mov_dr},
    [0x22] = {M | RG, ex_mov_cr},
    [0x23] = {M | RG, ex_mov_dr},
    [0x24 ... 0x2f] = {M, ex_unimpl},
    [0x30] = {0, ex_wrmsr},
    [0x31] = {0, ex_rdtsc},
    [0x32] = {0, ex_rdmsr},
    [0x33 ... 0x37] = U,
    [0x38 ... 0x3f] = U, /* 0F 38 / 0F 3A escapes, handled by the decoder */
    [0x40 ... 0x4f] = {M, ex_cmov},
    [0x50 ... 0x7f] = {M, ex_unimpl},
    [0x80 ... 0x8f] = {IZ | F64, ex_jcc},
    [0x90 ... 0x9f] = {M, ex_setcc},
    [0xa0] = {D64, ex_push_sreg},
    [0xa1] = {D64, ex_pop_sreg},
    [0xa2] = {0, ex_cpuid},
    [0xa3] = {M, ex_bt},
    [0xa4] = {M | IB, ex_shld},
    [0xa5] = {M, ex_shld},
    [0xa6 ... 0xa7] = U,
    [0xa8] = {D64, ex_push_sreg},
    [0xa9] = {D64, ex_pop_sreg},
    [0xaa] = U,
    [0xab] = {M | LK, ex_bt},
    [0xac] = {M | IB, ex_shld},
    [0xad] = {M, ex_shld},
    [0xae] = {M, ex_grp15},
    [0xaf] = {M, ex_imul2},
    [0xb0 ... 0xb1] = {M | LK, ex_cmpxchg},
    [0xb2] = {M, ex_lfp},
    [0xb3] = {M | LK, ex_bt},
    [0xb4 ... 0xb5] = {M, ex_lfp},
    [0xb6 ... 0xb7] = {M, ex_movzx},
    [0xb8] = {M, ex_popcnt},
    [0xb9] = {M, ex_ud},
    [0xba] = {M | IB | LK, ex_bt_imm},
    [0xbb] = {M | LK, ex_bt},
    [0xbc] = {M, ex_bsf},
    [0xbd] = {M, ex_bsr},
    [0xbe ... 0xbf] = {M, ex_movsx},
    [0xc0 ... 0xc1] = {M | LK, ex_xadd},
    [0xc2 ... 0xc6] = {M, ex_unimpl},
    [0xc7] = {M | LK, ex_grp9},
    [0xc8 ... 0xcf] = {0, ex_bswap},
    [0xd0 ... 0xfe] = {M, ex_unimpl},
    [0xff] = {M, ex_ud},
};

static const struct opent ent_movbe = {M, ex_movbe};
static const struct opent ent_m = {M, ex_unimpl};
static const struct opent ent_mib = {M | IB, ex_unimpl};

/* LOCK is allowed only on these read-modify-write forms (and only with a memory operand). */
static bool lock_ok(unsigned op, unsigned reg)
{
    switch (op) {
    case 0x38: /* CMP writes nothing */
    case 0x39:
        return false;
    case 0x80:
    case 0x81:
    case 0x82:
    case 0x83:
        return reg != 7;
    case 0xf6:
    case 0xf7:
        return reg == 2 || reg == 3;
    case 0xfe:
    case 0xff:
        return reg < 2;
    case 0x1ba:
        return reg >= 5;
    case 0x1c7:
        return reg == 1;
    default:
        return true;
    }
}

/* The instruction bytes: read straight from the guest page when the instruction cannot run off
 * its end (the common case), else from a zero-padded copy of what the fetch returned. The decoder
 * reads at most DECODE_SPAN bytes (prefixes are capped at 15), so it never checks bounds while
 * decoding; afterwards emu_decode() checks the length (15 bytes, else #GP(0)) and, for the copy,
 * whether bytes beyond what could be fetched were used (then it raises the fetch fault for them:
 * only bytes the instruction really has can fault). */
#define DECODE_SPAN EMU_DECODE_SPAN

struct fbuf {
    const uint8_t *p;
    unsigned pos;
};

static inline uint8_t fb_u8(struct fbuf *f)
{
    return f->p[f->pos++];
}

static inline uint16_t fb_u16(struct fbuf *f)
{
    uint16_t v;
    memcpy(&v, f->p + f->pos, 2);
    f->pos += 2;
    return v;
}

static inline uint32_t fb_u32(struct fbuf *f)
{
    uint32_t v;
    memcpy(&v, f->p + f->pos, 4);
    f->pos += 4;
    return v;
}

static inline uint64_t fb_u64(struct fbuf *f)
{
    uint64_t v;
    memcpy(&v, f->p + f->pos, 8);
    f->pos += 8;
    return v;
}

static inline uint64_t fb_sized(struct fbuf *f, int size)
{
    switch (size) {
    case 2:
        return fb_u16(f);
    case 4:
        return fb_u32(f);
    default:
        return fb_u64(f);
    }
}

/* 16-bit addressing: [BX+SI] [BX+DI] [BP+SI] [BP+DI] [SI] [DI] [BP]/disp16 [BX]. */
static void modrm16(struct fbuf *f, struct emu_insn *i, unsigned rm)
{
    static const uint8_t base[8] = {R_BX, R_BX, R_BP, R_BP, R_SI, R_DI, R_BP, R_BX};
    static const uint8_t index[8] = {R_SI, R_DI, R_SI, R_DI, NOREG, NOREG, NOREG, NOREG};

    if (i->mod == 0 && rm == 6) {
        i->disp = fb_u16(f);
        i->seg = S_DS;
        return;
    }
    i->base = base[rm];
    i->idx = index[rm];
    i->seg = (rm == 2 || rm == 3 || rm == 6) ? S_SS : S_DS;
    if (i->mod == 1)
        i->disp = (int8_t)fb_u8(f);
    else if (i->mod == 2)
        i->disp = fb_u16(f);
}

/* 32/64-bit addressing. */
static void modrm32(struct emu_cpu *c, struct fbuf *f, struct emu_insn *i, unsigned rm,
                    unsigned rex)
{
    unsigned b = NOREG;

    if (rm == 4) {
        uint8_t sib = fb_u8(f);
        unsigned idx = ((sib >> 3) & 7) | ((rex & 2) << 2);
        unsigned bs = sib & 7;
        if (bs == 5 && i->mod == 0)
            i->disp = (int32_t)fb_u32(f);
        else
            b = bs | ((rex & 1) << 3);
        if (idx != 4) {
            i->idx = (uint8_t)idx;
            i->scale = sib >> 6;
        }
    } else if (rm == 5 && i->mod == 0) {
        i->disp = (int32_t)fb_u32(f);
        i->riprel = c->code64;
        return;
    } else {
        b = rm | ((rex & 1) << 3);
    }
    i->base = (uint8_t)b;
    if (b == R_SP || b == R_BP)
        i->seg = S_SS;
    if (i->mod == 1)
        i->disp = (int8_t)fb_u8(f);
    else if (i->mod == 2)
        i->disp = (int32_t)fb_u32(f);
}

/* Prefix bytes: 0 = not a prefix. */
enum { P_NONE, P_66, P_67, P_LOCK, P_REP, P_SEG, P_SEG64, P_REX };
static const uint8_t prefix_kind[256] = {
    [0x26] = P_SEG,          [0x2e] = P_SEG,   [0x36] = P_SEG,   [0x3e] = P_SEG,
    [0x40 ... 0x4f] = P_REX, [0x64] = P_SEG64, [0x65] = P_SEG64, [0x66] = P_66,
    [0x67] = P_67,           [0xf0] = P_LOCK,  [0xf2] = P_REP,   [0xf3] = P_REP,
};

/* Decode one instruction from f (see struct fbuf); i->len is left to the caller. False when the
 * instruction raises #GP(0) for its length (15 prefixes). */
static bool decode_bytes(struct emu_cpu *c, struct fbuf *fb, struct emu_insn *i)
{
    struct fbuf f = *fb;
    unsigned b, rex = 0, p66 = 0, p67 = 0, rep = 0, lock = 0, seg = S_NONE, map = 0, fl;
    const struct opent *e;
    bool m64 = c->code64;

    for (;;) {
        unsigned k;
        b = fb_u8(&f);
        k = prefix_kind[b];
        if (__builtin_expect(k == P_NONE, 1) || (k == P_REX && !m64))
            break;
        if (f.pos >= 15)
            return false;
        if (k == P_REX) {
            rex = b;
            continue;
        }
        rex = 0; /* a REX prefix counts only right before the opcode */
        switch (k) {
        case P_66:
            p66 = 1;
            break;
        case P_67:
            p67 = 1;
            break;
        case P_LOCK:
            lock = 1;
            break;
        case P_REP:
            rep = b;
            break;
        case P_SEG:
            if (!m64)
                seg = (b >> 3) & 3;
            break;
        default:
            seg = b - 0x60;
            break;
        }
    }

    if (b != 0x0f) {
        e = &map0[b];
    } else {
        b = fb_u8(&f);
        if (b == 0x38) {
            map = 2;
            b = fb_u8(&f);
            e = (b == 0xf0 || b == 0xf1) && rep != 0xf2 ? &ent_movbe : &ent_m;
        } else if (b == 0x3a) {
            map = 3;
            b = fb_u8(&f);
            e = &ent_mib;
        } else {
            map = 1;
            e = &map1[b];
        }
    }
    fl = e->f;
    i->fn = e->fn;
    i->op = (uint16_t)(map << 8 | b);
    i->rep = (uint8_t)rep;
    i->lock = (uint8_t)lock;
    i->rex = (uint8_t)rex;
    i->p66 = (uint8_t)p66;

    if (m64) {
        if ((fl & F64) || (rex & 8))
            i->opsize = 8;
        else if (p66)
            i->opsize = 2;
        else
            i->opsize = (fl & D64) ? 8 : 4;
        i->asize = p67 ? 4 : 8;
        if (fl & N64)
            i->fn = ex_ud;
    } else {
        i->opsize = (c->code32 ^ p66) ? 4 : 2;
        i->asize = (c->code32 ^ p67) ? 4 : 2;
    }

    i->mod = 3;
    i->reg = 0;
    i->modrm = 0;
    i->rm = (uint8_t)((b & 7) | ((rex & 1) << 3));
    i->ea = 0;
    i->seg = S_DS;
    i->base = NOREG;
    i->idx = NOREG;
    i->scale = 0;
    i->riprel = 0;
    i->eak = EAK_NONE;
    i->disp = 0;
    if (fl & M) {
        unsigned m = fb_u8(&f);
        i->modrm = (uint8_t)m;
        i->mod = (uint8_t)(m >> 6);
        i->reg = (uint8_t)(((m >> 3) & 7) | ((rex & 4) << 1));
        if (fl & RG)
            i->mod = 3;
        if (i->mod == 3)
            i->rm = (uint8_t)((m & 7) | ((rex & 1) << 3));
        else if (i->asize == 2)
            modrm16(&f, i, m & 7);
        else
            modrm32(c, &f, i, m & 7, rex);
        if ((fl & G3) && ((m >> 3) & 7) < 2)
            fl |= (b & 1) ? IZ : IB;
    }
    if (seg != S_NONE)
        i->seg = (uint8_t)seg;

    switch (fl & IMASK) {
    case IB:
        i->imm = (uint64_t)(int8_t)fb_u8(&f);
        break;
    case IW:
        i->imm = fb_u16(&f);
        break;
    case IZ:
        i->imm = i->opsize == 2 ? (uint64_t)(int16_t)fb_u16(&f) : (uint64_t)(int32_t)fb_u32(&f);
        break;
    case IV:
        i->imm = fb_sized(&f, i->opsize);
        break;
    case MO:
        i->imm = fb_sized(&f, i->asize);
        break;
    case PT:
        i->imm = i->opsize == 2 ? fb_u16(&f) : fb_u32(&f);
        i->imm2 = fb_u16(&f);
        break;
    case EN:
        i->imm = fb_u16(&f);
        i->imm2 = fb_u8(&f);
        break;
    default:
        break;
    }
    fb->pos = f.pos;
    /* Specialized handlers where the operation is known now. */
    if (map == 0) {
        if (b < 0x40 && (b & 7) < 6)
            i->fn = emu_alu_handlers[b >> 3];
        else if (b >= 0x80 && b <= 0x83 && i->fn == ex_grp1)
            i->fn = emu_alu_imm_handlers[i->reg & 7];
    }
    if (lock && (!(fl & LK) || i->mod == 3 || !lock_ok(i->op, i->reg & 7)))
        i->fn = ex_ud;
    return true;
}

/* Specialised handlers for the decoded form (after blk_continues looked at the generic one). */
static void specialize(struct emu_cpu *c, struct emu_insn *i)
{
    if (i->fn == ex_ud || i->fn == ex_unimpl)
        return;
    emu_spec_alu(i);
    emu_spec_shift(i);
    emu_spec_imul(i);
    emu_spec_control(i, c->code64);
}

/* The decoded-instruction cache (see insn.h). */
_Thread_local struct emu_icache_ent emu_icache[EMU_IC_SIZE]
    __attribute__((tls_model("initial-exec")));

/* Cache miss or no direct host pointer: decode from memory (into the cache when the
 * instruction can be verified there later, else into scratch). */
struct emu_insn *emu_decode_slow(struct emu_cpu *c, struct emu_insn *scratch, uint64_t la,
                                 const uint8_t *p)
{
    struct fbuf f;

    f.pos = 0;
    if (p != NULL) {
        struct emu_icache_ent *e = emu_icache_slot(la);
        struct emu_insn *i = &e->i;
        uint64_t q0 = emu_load64(p), q1 = emu_load64(p + 8);

        e->mode = 0;
        f.p = p;
        if (!decode_bytes(c, &f, i) || f.pos > 15)
            emu_raise(c, EXC_GP, 0);
        specialize(c, i);
        i->len = (uint8_t)f.pos;
        e->m0 = f.pos >= 8 ? ~0ULL : (1ULL << (8 * f.pos)) - 1;
        e->m1 = f.pos > 8 ? (1ULL << (8 * (f.pos - 8))) - 1 : 0;
        e->b0 = q0 & e->m0;
        e->b1 = q1 & e->m1;
        e->la = la;
        e->mode = emu_icache_mode(c);
        if (i->mod != 3)
            emu_compute_ea(c, i);
        return i;
    } else {
        uint8_t buf[DECODE_SPAN];
        unsigned got;

        memset(buf, 0, sizeof(buf));
        got = (unsigned)emu_fetch(c, la, buf, 15);
        f.p = buf;
        if (!decode_bytes(c, &f, scratch))
            emu_raise(c, EXC_GP, 0);
        if (f.pos > got && got < 15) {
            /* The instruction goes on into a page that cannot be fetched: fault on it. */
            uint8_t b;
            emu_fetch(c, la + got, &b, 1);
        }
        if (f.pos > 15)
            emu_raise(c, EXC_GP, 0);
        specialize(c, scratch);
        scratch->len = (uint8_t)f.pos;
        if (scratch->mod != 3)
            emu_compute_ea(c, scratch);
        return scratch;
    }
}

/* ---- decoded blocks (see insn.h) ---- */

_Thread_local struct emu_blk_cache *emu_bc __attribute__((tls_model("initial-exec")));

/* True when the instruction always goes on to the next one (or faults), changing nothing that
 * decoding or running a block depends on: the block may go on after it. */
static bool blk_continues(const struct emu_insn *i)
{
    emu_handler fn = i->fn;

    if (fn == ex_mov || fn == ex_lea || fn == ex_mov_r_imm || fn == ex_mov_rm_imm ||
        fn == ex_movzx || fn == ex_movsx || fn == ex_movsxd || fn == ex_mov_moffs ||
        fn == ex_test || fn == ex_shift || fn == ex_imul2 || fn == ex_imul3 || fn == ex_grp3 ||
        fn == ex_push_r || fn == ex_pop_r || fn == ex_push_imm || fn == ex_pop_rm ||
        fn == ex_incdec_r || fn == ex_grp4 || fn == ex_xchg || fn == ex_xchg_ax || fn == ex_cbw ||
        fn == ex_cwd || fn == ex_cmov || fn == ex_setcc || fn == ex_cmpxchg || fn == ex_xadd ||
        fn == ex_bswap || fn == ex_movbe || fn == ex_xlat || fn == ex_shld || fn == ex_bt ||
        fn == ex_bt_imm || fn == ex_bsf || fn == ex_bsr || fn == ex_popcnt || fn == ex_enter ||
        fn == ex_leave || fn == ex_pushf || fn == ex_lahf || fn == ex_sahf || fn == ex_push_sreg ||
        fn == ex_nop || fn == ex_grp9)
        return true;
    if (fn == ex_alu || fn == ex_grp1)
        return true;
    for (int k = 0; k < 8; k++)
        if (fn == emu_alu_handlers[k] || fn == emu_alu_imm_handlers[k])
            return true;
    if (fn == ex_grp5) /* INC DEC PUSH; not the branches */
        return (i->reg & 7) < 2 || (i->reg & 7) == 6;
    if (fn == ex_flagop) /* not CLI/STI */
        return i->op != 0xfa && i->op != 0xfb;
    if (fn == ex_mov_sreg) /* MOV r/m, Sreg */
        return i->op == 0x8c;
    if (fn == ex_movs || fn == ex_cmps || fn == ex_stos || fn == ex_lods || fn == ex_scas)
        return i->rep == 0;
    return false;
}

/* The cache is freed when its thread exits. */
static pthread_once_t blk_once = PTHREAD_ONCE_INIT;
static pthread_key_t blk_key;
static bool blk_key_ok;

static void blk_free(void *p)
{
    struct emu_blk_cache *bc = p;

    emu_bc = NULL;
    free(bc->arena);
    free(bc);
}

static void blk_key_init(void)
{
    blk_key_ok = pthread_key_create(&blk_key, blk_free) == 0;
}

static struct emu_blk_cache *blk_cache(void)
{
    struct emu_blk_cache *bc = emu_bc;

    if (bc)
        return bc;
    if (pthread_once(&blk_once, blk_key_init) != 0 || !blk_key_ok)
        return NULL;
    bc = calloc(1, sizeof(*bc));
    if (!bc)
        return NULL;
    bc->arena = malloc(EMU_BLK_ARENA);
    if (!bc->arena || pthread_setspecific(blk_key, bc) != 0) {
        free(bc->arena);
        free(bc);
        return NULL;
    }
    emu_bc = bc;
    return bc;
}

/* The most a block can take in the arena. */
#define BLK_WORDS_MAX ((EMU_BLK_MAX * 15 + 7) / 8)
#define BLK_BYTES_MAX                                                                              \
    (sizeof(struct emu_block) + EMU_BLK_MAX * sizeof(struct emu_insn) + BLK_WORDS_MAX * 8)

struct emu_block *emu_block_build(struct emu_cpu *c, uint64_t la, const uint8_t *p)
{
    struct emu_blk_cache *bc = blk_cache();
    struct emu_block *b;
    unsigned off = 0, n = 0, nw;
    uint64_t *w;

    if (!bc)
        return NULL;
    if (EMU_BLK_ARENA - bc->used < BLK_BYTES_MAX) {
        memset(bc->tab, 0, sizeof(bc->tab));
        bc->used = 0;
    }
    b = (struct emu_block *)(void *)(bc->arena + bc->used);
    for (;;) {
        struct emu_insn *i = &b->insn[n];
        struct fbuf f;
        bool cont;

        f.p = p + off;
        f.pos = 0;
        if (!decode_bytes(c, &f, i) || f.pos > 15) {
            if (n == 0)
                emu_raise(c, EXC_GP, 0);
            break;
        }
        i->len = (uint8_t)f.pos;
        b->off[n] = (uint16_t)off;
        off += f.pos;
        n++;
        if (i->mod != 3) {
            uint64_t am = szmask(i->asize);
            if (i->riprel) /* 64-bit mode: RIP is the linear address */
                i->ea = (la + off + (uint64_t)(int64_t)i->disp) & am;
            else if (i->base == NOREG && i->idx == NOREG)
                i->ea = (uint64_t)(int64_t)i->disp & am;
            else
                i->eak = EAK_GEN;
        }
        cont = blk_continues(i);
        specialize(c, i);
        if (!cont || n == EMU_BLK_MAX || ((la + off) & 0xfff) > 4096 - EMU_DECODE_SPAN)
            break;
    }
    nw = (off + 7) / 8;
    w = (uint64_t *)(void *)&b->insn[n];
    for (unsigned k = 0; k < nw; k++)
        w[k] = emu_load64(p + 8 * k);
    b->lastmask = (off & 7) ? (1ULL << (8 * (off & 7))) - 1 : ~0ULL;
    w[nw - 1] &= b->lastmask;
    b->words = w;
    b->nwords = (uint16_t)nw;
    b->nbytes = (uint16_t)off;
    b->off[n] = (uint16_t)off;
    b->n = (uint8_t)n;
    b->la = la;
    b->mode = emu_icache_mode(c);
    bc->used += (sizeof(struct emu_block) + n * sizeof(struct emu_insn) + nw * 8 + 15) & ~15ul;
    bc->tab[emu_blk_hash(la)] = b;
    return b;
}
