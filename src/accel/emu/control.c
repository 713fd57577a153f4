/* control.c: branches, calls and returns, far transfers, LOOP/JCXZ, the stack instructions and
 * software interrupts. */
#include "accel/emu/insn.h"

/* A near branch target for operand size opsize, checked before anything is pushed. */
static uint64_t target(struct emu_cpu *c, uint64_t t, int opsize)
{
    if (opsize == 8) {
        if ((uint64_t)((int64_t)(t << 16) >> 16) != t)
            emu_raise(c, EXC_GP, 0);
        return t;
    }
    return t & szmask(opsize);
}

void ex_jcc(struct emu_cpu *c, struct emu_insn *i)
{
    if (emu_cond(c, i->op & 15))
        branch(c, c->rip + i->imm, i->opsize);
}

void ex_jmp_rel(struct emu_cpu *c, struct emu_insn *i)
{
    branch(c, c->rip + i->imm, i->opsize);
}

void ex_call_rel(struct emu_cpu *c, struct emu_insn *i)
{
    uint64_t t = target(c, c->rip + i->imm, i->opsize);
    push(c, c->rip, i->opsize);
    c->rip = t;
}

/* C3 RET, C2 RET imm16. */
void ex_ret(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize;
    uint64_t t = target(c, stack_peek(c, 0, size), size);
    sp_add(c, (uint64_t)size + (i->op == 0xc2 ? i->imm : 0));
    c->rip = t;
}

/* CB RETF, CA RETF imm16. */
void ex_retf(struct emu_cpu *c, struct emu_insn *i)
{
    emu_far_ret(c, i->opsize, i->op == 0xca ? (uint16_t)i->imm : 0);
}

/* 9A CALLF ptr16:16/32, EA JMPF ptr16:16/32 (not in 64-bit mode). */
void ex_far_ptr(struct emu_cpu *c, struct emu_insn *i)
{
    if (i->op == 0x9a)
        emu_far_call(c, (uint16_t)i->imm2, i->imm, i->opsize);
    else
        emu_far_jmp(c, (uint16_t)i->imm2, i->imm);
}

/* FF: /0 INC, /1 DEC, /2 CALL, /3 CALLF m16:x, /4 JMP, /5 JMPF m16:x, /6 PUSH. */
void ex_grp5(struct emu_cpu *c, struct emu_insn *i)
{
    int op = i->reg & 7, size = i->opsize;
    uint64_t t, off;
    uint16_t sel;

    if (c->code64) {
        if (op == 2 || op == 4)
            size = 8;
        else if (op == 6)
            size = i->p66 ? 2 : 8;
    }
    switch (op) {
    case 0:
    case 1:
        emu_incdec_rm(c, i, op == 1, size);
        break;
    case 2:
        t = target(c, rm_rd(c, i, size), size);
        push(c, c->rip, size);
        c->rip = t;
        break;
    case 4:
        branch(c, rm_rd(c, i, size), size);
        break;
    case 3:
    case 5:
        need_mem(c, i);
        off = emu_read(c, ea_la(c, i), size);
        sel = (uint16_t)emu_read(c, seg_la(c, i->seg, (i->ea + (uint64_t)size) & szmask(i->asize)),
                                 2);
        if (op == 3)
            emu_far_call(c, sel, off, size);
        else
            emu_far_jmp(c, sel, off);
        break;
    case 6:
        push(c, rm_rd(c, i, size), size);
        break;
    default:
        ex_ud(c, i);
    }
}

/* E0 LOOPNE, E1 LOOPE, E2 LOOP: count in rCX by address size. */
void ex_loop(struct emu_cpu *c, struct emu_insn *i)
{
    uint64_t cnt = (c->r[R_CX] - 1) & szmask(i->asize);
    bool take = cnt != 0;

    if (take && i->op != 0xe2)
        take = emu_cond(c, 4) == (i->op == 0xe1);
    if (take)
        branch(c, c->rip + i->imm, i->opsize);
    reg_wr_asize(c, R_CX, cnt, i->asize);
}

void ex_jcxz(struct emu_cpu *c, struct emu_insn *i)
{
    if ((c->r[R_CX] & szmask(i->asize)) == 0)
        branch(c, c->rip + i->imm, i->opsize);
}

void ex_push_r(struct emu_cpu *c, struct emu_insn *i)
{
    push(c, reg_rd(c, i, i->rm, i->opsize), i->opsize);
}

void ex_pop_r(struct emu_cpu *c, struct emu_insn *i)
{
    uint64_t v = stack_peek(c, 0, i->opsize);
    sp_add(c, (uint64_t)i->opsize);
    reg_wr(c, i, i->rm, v, i->opsize);
}

void ex_push_imm(struct emu_cpu *c, struct emu_insn *i)
{
    push(c, i->imm & szmask(i->opsize), i->opsize);
}

/* 8F /0: POP r/m; an RSP-based address is computed after the increment. */
void ex_pop_rm(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize;
    uint64_t v;

    if ((i->reg & 7) != 0)
        ex_unimpl(c, i);
    v = stack_peek(c, 0, size);
    if (i->mod == 3) {
        sp_add(c, (uint64_t)size);
        reg_wr(c, i, i->rm, v, size);
        return;
    }
    if (i->base == R_SP)
        i->ea = (i->ea + (uint64_t)size) & szmask(i->asize);
    emu_write(c, ea_la(c, i), v, size);
    sp_add(c, (uint64_t)size);
}

static int sreg_of(const struct emu_insn *i)
{
    switch (i->op) {
    case 0x1a0:
    case 0x1a1:
        return S_FS;
    case 0x1a8:
    case 0x1a9:
        return S_GS;
    default:
        return (i->op >> 3) & 3; /* 06/07 ES, 0E CS, 16/17 SS, 1E/1F DS */
    }
}

/* The selector is pushed zero-extended to the operand size. */
void ex_push_sreg(struct emu_cpu *c, struct emu_insn *i)
{
    push(c, c->seg[sreg_of(i)].selector, i->opsize);
}

void ex_pop_sreg(struct emu_cpu *c, struct emu_insn *i)
{
    int s = sreg_of(i);
    uint64_t v = stack_peek(c, 0, i->opsize);

    emu_load_seg(c, s, (uint16_t)v);
    sp_add(c, (uint64_t)i->opsize);
    if (s == S_SS)
        c->shadow = 1;
}

/* 60: PUSHA/PUSHAD (not in 64-bit mode): AX CX DX BX original-SP BP SI DI. */
void ex_pusha(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize, as = stack_asize(c);
    uint64_t am = szmask(as), sp = c->r[R_SP];

    for (int r = 0; r < 8; r++)
        emu_write(c, seg_la(c, S_SS, (sp - (uint64_t)(r + 1) * (uint64_t)size) & am),
                  c->r[r] & szmask(size), size);
    reg_wr_asize(c, R_SP, (sp - 8 * (uint64_t)size) & am, as);
}

/* 61: POPA/POPAD: DI SI BP (skip SP) BX DX CX AX. */
void ex_popa(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize;
    uint64_t v[8];

    for (int r = 0; r < 8; r++)
        v[7 - r] = stack_peek(c, (uint64_t)r * (uint64_t)size, size);
    for (int r = 0; r < 8; r++)
        if (r != R_SP)
            reg_wr(c, i, r, v[r], size);
    sp_add(c, 8 * (uint64_t)size);
}

void ex_pushf(struct emu_cpu *c, struct emu_insn *i)
{
    uint64_t f = emu_get_rflags(c) & ~(uint64_t)(FL_VM | FL_RF);
    push(c, f & szmask(i->opsize), i->opsize);
}

/* POPF: IOPL changes only at CPL 0, IF only when CPL <= IOPL; VM, VIF, VIP never; RF cleared. */
void ex_popf(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize;
    uint64_t v = stack_peek(c, 0, size), old = emu_get_rflags(c), nv;
    uint64_t mask = FL_ARITH | FL_TF | FL_DF | FL_NT | FL_AC | FL_ID;
    unsigned iopl = (unsigned)((old & FL_IOPL) >> 12);

    if (c->cpl == 0)
        mask |= FL_IOPL | FL_IF;
    else if (c->cpl <= iopl)
        mask |= FL_IF;
    if (size == 2)
        mask &= 0xffff;
    nv = ((old & ~mask) | (v & mask)) & ~(uint64_t)FL_RF;
    sp_add(c, (uint64_t)size);
    emu_set_rflags(c, nv);
    if ((old ^ nv) & FL_IF)
        c->stop = EMU_STOP_IRQ;
}

/* C8: ENTER imm16, imm8 (nesting level mod 32). Registers change only after every write. */
void ex_enter(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize, as = stack_asize(c);
    unsigned level = (unsigned)i->imm2 & 31;
    uint64_t am = szmask(as), sp = c->r[R_SP], bp = c->r[R_BP], frame;

    sp = (sp - (uint64_t)size) & am;
    emu_write(c, seg_la(c, S_SS, sp), bp & szmask(size), size);
    frame = sp;
    if (level > 0) {
        for (unsigned k = 1; k < level; k++) {
            uint64_t v;
            bp = (bp - (uint64_t)size) & am;
            v = emu_read(c, seg_la(c, S_SS, bp), size);
            sp = (sp - (uint64_t)size) & am;
            emu_write(c, seg_la(c, S_SS, sp), v, size);
        }
        sp = (sp - (uint64_t)size) & am;
        emu_write(c, seg_la(c, S_SS, sp), frame & szmask(size), size);
    }
    sp = (sp - i->imm) & am;
    reg_wr(c, i, R_BP, frame, size);
    reg_wr_asize(c, R_SP, sp, as);
}

/* C9: LEAVE: rSP = rBP, then pop rBP. */
void ex_leave(struct emu_cpu *c, struct emu_insn *i)
{
    int size = i->opsize, as = stack_asize(c);
    uint64_t am = szmask(as), bp = c->r[R_BP] & am;
    uint64_t v = emu_read(c, seg_la(c, S_SS, bp), size);

    reg_wr_asize(c, R_SP, (bp + (uint64_t)size) & am, as);
    reg_wr(c, i, R_BP, v, size);
}

/* CC INT3, CD INT n, CE INTO: delivered as software interrupts with RIP past the instruction. */
void ex_int(struct emu_cpu *c, struct emu_insn *i)
{
    switch (i->op) {
    case 0xcc:
        emu_deliver(c, EXC_BP, false, 0, true);
        break;
    case 0xcd:
        emu_deliver(c, (int)(i->imm & 0xff), false, 0, true);
        break;
    default:
        if (emu_get_rflags(c) & FL_OF)
            emu_deliver(c, EXC_OF, false, 0, true);
        break;
    }
}

void ex_iret(struct emu_cpu *c, struct emu_insn *i)
{
    emu_iret(c, i->opsize);
    c->stop = EMU_STOP_IRQ;
}

/* ---- fast forms (emu_spec_control) ---- */

/* PUSH/POP r64 in 64-bit mode (the stack is flat: SS adds nothing, RSP is 64 bits). */
static void ex_push_r64(struct emu_cpu *c, struct emu_insn *i)
{
    uint64_t sp = c->r[R_SP] - 8;
    emu_write(c, seg_la(c, S_SS, sp), c->r[i->rm], 8);
    c->r[R_SP] = sp;
}

static void ex_pop_r64(struct emu_cpu *c, struct emu_insn *i)
{
    uint64_t v = emu_read(c, seg_la(c, S_SS, c->r[R_SP]), 8);
    c->r[R_SP] += 8;
    c->r[i->rm] = v;
}

/* Jcc with the condition fixed: the usual cases after CMP/SUB and logic ops inline. */
#define JCC_FAST(name, cc, sub_expr, logic_expr)                                                   \
    static void ex_##name(struct emu_cpu *c, struct emu_insn *i)                                   \
    {                                                                                              \
        bool t;                                                                                    \
        if (c->lf_op == LF_SUB) {                                                                  \
            uint64_t d = c->lf_dst, s = c->lf_src;                                                 \
            (void)d;                                                                               \
            (void)s;                                                                               \
            t = (sub_expr);                                                                        \
        } else if (c->lf_op == LF_LOGIC) {                                                         \
            uint64_t res = c->lf_res;                                                              \
            (void)res;                                                                             \
            t = (logic_expr);                                                                      \
        } else {                                                                                   \
            t = emu_cond(c, cc);                                                                   \
        }                                                                                          \
        if (t)                                                                                     \
            branch(c, c->rip + i->imm, i->opsize);                                                 \
    }

static inline bool lf_sf(const struct emu_cpu *c, uint64_t v)
{
    return (v >> (c->lf_size * 8 - 1)) & 1;
}

static inline bool lf_lt(const struct emu_cpu *c, uint64_t d, uint64_t s)
{
    int size = (int)c->lf_size;
    return sext(d, size) < sext(s, size);
}

JCC_FAST(jb, 2, d < s, false)
JCC_FAST(jae, 3, d >= s, true)
JCC_FAST(je, 4, d == s, res == 0)
JCC_FAST(jne, 5, d != s, res != 0)
JCC_FAST(jbe, 6, d <= s, res == 0)
JCC_FAST(ja, 7, d > s, res != 0)
JCC_FAST(js, 8, lf_sf(c, c->lf_res), lf_sf(c, res))
JCC_FAST(jns, 9, !lf_sf(c, c->lf_res), !lf_sf(c, res))
JCC_FAST(jl, 12, lf_lt(c, d, s), lf_sf(c, res))
JCC_FAST(jge, 13, !lf_lt(c, d, s), !lf_sf(c, res))
JCC_FAST(jle, 14, d == s || lf_lt(c, d, s), res == 0 || lf_sf(c, res))
JCC_FAST(jg, 15, d != s && !lf_lt(c, d, s), res != 0 && !lf_sf(c, res))

void emu_spec_control(struct emu_insn *i, bool m64)
{
    static const emu_handler jcc[16] = {
        [2] = ex_jb, [3] = ex_jae, [4] = ex_je,  [5] = ex_jne,  [6] = ex_jbe,  [7] = ex_ja,
        [8] = ex_js, [9] = ex_jns, [12] = ex_jl, [13] = ex_jge, [14] = ex_jle, [15] = ex_jg,
    };
    unsigned op = i->op;

    if (m64 && i->opsize == 8 && op >= 0x50 && op <= 0x57)
        i->fn = ex_push_r64;
    else if (m64 && i->opsize == 8 && op >= 0x58 && op <= 0x5f)
        i->fn = ex_pop_r64;
    else if (((op >= 0x70 && op <= 0x7f) || (op >= 0x180 && op <= 0x18f)) && jcc[op & 15])
        i->fn = jcc[op & 15];
}
