/* insn.h: the interpreter's decoded-instruction record and the helpers its exec files share. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "accel/emu/cpu.h"

struct emu_insn;
typedef void (*emu_handler)(struct emu_cpu *c, struct emu_insn *i);

/* One decoded instruction. Filled by emu_decode() field by field (never memset): every field
 * below is valid after decode. c->rip already points past the instruction when the handler
 * runs; faults restore it from c->insn_start. */
struct emu_insn {
    emu_handler fn; /* semantics (from the opcode map) */
    uint64_t ea;    /* memory operand: offset in seg, truncated to the address size */
    uint64_t imm;   /* first immediate: ib sign-extended, iw zero-extended, iz sign-extended */
    uint64_t imm2;  /* second immediate: far pointer selector, ENTER nesting level */
    uint16_t op;    /* map << 8 | opcode byte (map 0: one byte, 1: 0F, 2: 0F38, 3: 0F3A) */
    uint8_t len;    /* bytes */
    uint8_t opsize; /* 2, 4 or 8 (the size of the non-byte forms) */
    uint8_t asize;  /* address size 2, 4 or 8 */
    uint8_t seg;    /* segment of the memory operand (default or override) */
    uint8_t rep;    /* 0, 0xF2 or 0xF3 (the last one) */
    uint8_t lock;   /* F0 seen (already checked against the opcode) */
    uint8_t rex;    /* the REX byte in effect, or 0 */
    uint8_t p66;    /* 66 seen */
    uint8_t mod;    /* ModRM.mod (3: register operand); 3 when there is no ModRM */
    uint8_t reg;    /* ModRM.reg | REX.R << 3 */
    uint8_t rm;     /* ModRM.rm | REX.B << 3 (mod 3), or the opcode's low 3 bits | REX.B */
    uint8_t modrm;  /* the raw ModRM byte */
    /* The memory operand's address: disp + base + (idx << scale) (+ next RIP if riprel),
     * truncated to asize; recomputed into ea before every execution. */
    uint8_t base; /* NOREG: none */
    uint8_t idx;  /* NOREG: none */
    uint8_t scale;
    uint8_t riprel;
    uint8_t eak; /* decoded blocks: EAK_* (how the block loop forms ea) */
    int32_t disp;
};
/* eak: EAK_NONE: no memory operand or ea is a constant set at decode (64-bit RIP-relative,
 * absolute); EAK_GEN: computed from the registers before every execution. */
enum { EAK_NONE = 0, EAK_GEN = 1 };
#define NOREG 0xff

/* ---- self-modifying code ----
 * The linear bytes [emu_smc_lo, +emu_smc_len) of the decoded block being run (exec.c). A store
 * by an instruction into them ends the block after that instruction, so the next one is
 * decoded from the new bytes. Every store of the exec files goes through emu_write below (or
 * checks before it takes a host pointer for an atomic access). */
extern _Thread_local uint64_t emu_smc_lo __attribute__((tls_model("initial-exec")));
extern _Thread_local uint64_t emu_smc_len __attribute__((tls_model("initial-exec")));
void emu_smc_hit(struct emu_cpu *c);

static inline void emu_smc_check(struct emu_cpu *c, uint64_t la, int len)
{
    if (__builtin_expect(la + (uint64_t)len - 1 - emu_smc_lo < emu_smc_len + (uint64_t)len - 1, 0))
        emu_smc_hit(c);
}

static inline void emu_write_smc(struct emu_cpu *c, uint64_t la, uint64_t v, int len)
{
    emu_smc_check(c, la, len);
    emu_write_inline(c, la, v, len);
}

#undef emu_write
#define emu_write(c, la, v, len) emu_write_smc((c), (la), (v), (len))

/* ---- lazy flags (flags.c) ----
 * The last flag-setting operation is recorded as (lf_op, lf_dst, lf_src, lf_res, lf_size), the
 * values truncated to lf_size bytes; lf_op LF_NONE means c->rflags holds every flag. See the
 * table in flags.c for what each op means and for the undefined-flag choices. */
enum emu_lf_op {
    LF_NONE = 0,
    LF_ADD,   /* res = dst + src (also used by XADD) */
    LF_ADC,   /* res = dst + src + CF_in */
    LF_SUB,   /* res = dst - src (SUB, CMP, NEG as 0 - src, CMPXCHG, SCAS/CMPS) */
    LF_SBB,   /* res = dst - src - CF_in */
    LF_LOGIC, /* AND/OR/XOR/TEST: CF = OF = AF = 0 */
    LF_INC,   /* res = dst + 1; CF lives in c->rflags */
    LF_DEC,   /* res = dst - 1; CF lives in c->rflags */
    LF_SHL,   /* res = dst << src (src = masked count, non-zero) */
    LF_SHR,   /* res = dst >> src */
    LF_SAR,   /* res = (signed)dst >> src */
    LF_MUL,   /* MUL/IMUL: src = 1 if CF = OF = 1; res = low half (for SF/ZF/PF) */
};

uint32_t emu_lazy_arith(const struct emu_cpu *c); /* the six arithmetic flags */
uint32_t emu_get_cf(const struct emu_cpu *c);     /* 0 or 1 */
bool emu_cond(const struct emu_cpu *c, int cc);   /* condition code 0-15 (Jcc order) */
/* Fold the lazy state into c->rflags (lf_op = LF_NONE), for instructions that change only some
 * arithmetic flags. */
void emu_flags_materialize(struct emu_cpu *c);

static inline uint64_t szmask(int size)
{
    return size >= 8 ? ~0ULL : (1ULL << (size * 8)) - 1;
}

static inline int64_t sext(uint64_t v, int size)
{
    switch (size) {
    case 1:
        return (int8_t)v;
    case 2:
        return (int16_t)v;
    case 4:
        return (int32_t)v;
    default:
        return (int64_t)v;
    }
}

static inline void lf_set(struct emu_cpu *c, uint32_t op, uint64_t dst, uint64_t src, uint64_t res,
                          int size)
{
    c->lf_op = op;
    c->lf_dst = dst;
    c->lf_src = src;
    c->lf_res = res;
    c->lf_size = (uint32_t)size;
}

/* INC/DEC keep CF: fold the current CF into rflags first. */
static inline void lf_set_incdec(struct emu_cpu *c, uint32_t op, uint64_t dst, uint64_t res,
                                 int size)
{
    uint64_t cf = emu_get_cf(c);
    c->rflags = (c->rflags & ~(uint64_t)FL_CF) | cf;
    lf_set(c, op, dst, 1, res, size);
}

/* Set the arithmetic flags in mask to the values in bits (other flags unchanged). */
static inline void flags_put(struct emu_cpu *c, uint32_t mask, uint32_t bits)
{
    emu_flags_materialize(c);
    c->rflags = (c->rflags & ~(uint64_t)mask) | (bits & mask);
}

/* ---- registers ---- */

/* Byte registers 4-7 are AH CH DH BH unless a REX prefix is present. */
static inline uint64_t reg_rd(const struct emu_cpu *c, const struct emu_insn *i, int r, int size)
{
    switch (size) {
    case 1:
        if (r >= 4 && r < 8 && !i->rex)
            return (c->r[r - 4] >> 8) & 0xff;
        return c->r[r] & 0xff;
    case 2:
        return c->r[r] & 0xffff;
    case 4:
        return (uint32_t)c->r[r];
    default:
        return c->r[r];
    }
}

/* 32-bit writes zero-extend to 64 bits; 8- and 16-bit writes merge. */
static inline void reg_wr(struct emu_cpu *c, const struct emu_insn *i, int r, uint64_t v, int size)
{
    switch (size) {
    case 1:
        if (r >= 4 && r < 8 && !i->rex)
            c->r[r - 4] = (c->r[r - 4] & ~0xff00ULL) | ((v & 0xff) << 8);
        else
            c->r[r] = (c->r[r] & ~0xffULL) | (v & 0xff);
        break;
    case 2:
        c->r[r] = (c->r[r] & ~0xffffULL) | (v & 0xffff);
        break;
    case 4:
        c->r[r] = (uint32_t)v;
        break;
    default:
        c->r[r] = v;
        break;
    }
}

/* Write a register as an address-sized quantity (RSI/RDI/RCX in string ops, SP). */
static inline void reg_wr_asize(struct emu_cpu *c, int r, uint64_t v, int asize)
{
    if (asize == 8)
        c->r[r] = v;
    else if (asize == 4)
        c->r[r] = (uint32_t)v;
    else
        c->r[r] = (c->r[r] & ~0xffffULL) | (v & 0xffff);
}

/* ---- memory ---- */

/* Linear address of seg:off (see emu_linear in cpu.h); raises #GP(0)/#SS(0) when a 64-bit
 * address is not canonical. */
static inline uint64_t seg_la(struct emu_cpu *c, int seg, uint64_t off)
{
    if (c->code64) {
        uint64_t la = seg >= S_FS ? c->seg[seg].base + off : off;
        if ((uint64_t)((int64_t)(la << 16) >> 16) != la)
            emu_raise(c, seg == S_SS ? EXC_SS : EXC_GP, 0);
        return la;
    }
    return (uint32_t)(c->seg[seg].base + off);
}

static inline uint64_t ea_la(struct emu_cpu *c, const struct emu_insn *i)
{
    return seg_la(c, i->seg, i->ea);
}

/* The r/m operand. */
static inline uint64_t rm_rd(struct emu_cpu *c, const struct emu_insn *i, int size)
{
    if (i->mod == 3)
        return reg_rd(c, i, i->rm, size);
    return emu_read(c, ea_la(c, i), size);
}

static inline void rm_wr(struct emu_cpu *c, const struct emu_insn *i, uint64_t v, int size)
{
    if (i->mod == 3)
        reg_wr(c, i, i->rm, v, size);
    else
        emu_write(c, ea_la(c, i), v, size);
}

/* ---- atomics on host pointers from emu_atomic_ptr() ---- */

static inline uint64_t atomic_ld(void *p, int size)
{
    switch (size) {
    case 1:
        return __atomic_load_n((uint8_t *)p, __ATOMIC_SEQ_CST);
    case 2:
        return __atomic_load_n((uint16_t *)p, __ATOMIC_SEQ_CST);
    case 4:
        return __atomic_load_n((uint32_t *)p, __ATOMIC_SEQ_CST);
    default:
        return __atomic_load_n((uint64_t *)p, __ATOMIC_SEQ_CST);
    }
}

/* Compare-and-swap *p from *old to v; on failure *old receives the current value. */
static inline bool atomic_cas(void *p, uint64_t *old, uint64_t v, int size)
{
    switch (size) {
    case 1: {
        uint8_t o = (uint8_t)*old;
        bool ok = __atomic_compare_exchange_n((uint8_t *)p, &o, (uint8_t)v, false, __ATOMIC_SEQ_CST,
                                              __ATOMIC_SEQ_CST);
        *old = o;
        return ok;
    }
    case 2: {
        uint16_t o = (uint16_t)*old;
        bool ok = __atomic_compare_exchange_n((uint16_t *)p, &o, (uint16_t)v, false,
                                              __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
        *old = o;
        return ok;
    }
    case 4: {
        uint32_t o = (uint32_t)*old;
        bool ok = __atomic_compare_exchange_n((uint32_t *)p, &o, (uint32_t)v, false,
                                              __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
        *old = o;
        return ok;
    }
    default:
        return __atomic_compare_exchange_n((uint64_t *)p, old, v, false, __ATOMIC_SEQ_CST,
                                           __ATOMIC_SEQ_CST);
    }
}

/* Read-modify-write of memory at la: begin returns the host pointer to use atomically (LOCK
 * with RAM behind la) or NULL (plain read now, plain write at commit). Usage:
 *     void *p = rmw_begin(c, la, size, i->lock, &old);
 *     do { res = f(old); } while (!rmw_commit(c, la, p, &old, res, size));
 * An unlocked commit is the write itself, so a read-only page faults before anything changed. */
static inline void *rmw_begin(struct emu_cpu *c, uint64_t la, int size, bool locked, uint64_t *old)
{
    void *p = NULL;

    if (locked) {
        emu_smc_check(c, la, size);
        p = emu_atomic_ptr(c, la, size);
    }
    *old = p ? atomic_ld(p, size) : emu_read(c, la, size);
    return p;
}

static inline bool rmw_commit(struct emu_cpu *c, uint64_t la, void *p, uint64_t *old, uint64_t v,
                              int size)
{
    if (!p) {
        emu_write(c, la, v, size);
        return true;
    }
    return atomic_cas(p, old, v, size);
}

/* ---- stack ---- */

static inline int stack_asize(const struct emu_cpu *c)
{
    return c->code64 ? 8 : (c->seg[S_SS].db ? 4 : 2);
}

/* Push v (size bytes); RSP changes only after the write succeeded. */
static inline void push(struct emu_cpu *c, uint64_t v, int size)
{
    int as = stack_asize(c);
    uint64_t sp = (c->r[R_SP] - (uint64_t)size) & szmask(as);
    emu_write(c, seg_la(c, S_SS, sp), v, size);
    reg_wr_asize(c, R_SP, sp, as);
}

/* Read the stack slot at RSP + off without popping. */
static inline uint64_t stack_peek(struct emu_cpu *c, uint64_t off, int size)
{
    int as = stack_asize(c);
    return emu_read(c, seg_la(c, S_SS, (c->r[R_SP] + off) & szmask(as)), size);
}

static inline void sp_add(struct emu_cpu *c, uint64_t n)
{
    int as = stack_asize(c);
    reg_wr_asize(c, R_SP, (c->r[R_SP] + n) & szmask(as), as);
}

static inline uint64_t pop(struct emu_cpu *c, int size)
{
    uint64_t v = stack_peek(c, 0, size);
    sp_add(c, (uint64_t)size);
    return v;
}

/* ---- control transfer ---- */

/* Near branch to target with operand size opsize (64-bit: canonical or #GP(0)). */
static inline void branch(struct emu_cpu *c, uint64_t target, int opsize)
{
    if (opsize == 8) {
        if ((uint64_t)((int64_t)(target << 16) >> 16) != target)
            emu_raise(c, EXC_GP, 0);
        c->rip = target;
    } else {
        c->rip = target & szmask(opsize);
    }
}

static inline void need_cpl0(struct emu_cpu *c)
{
    if (c->cpl != 0)
        emu_raise(c, EXC_GP, 0);
}

static inline void need_mem(struct emu_cpu *c, const struct emu_insn *i)
{
    if (i->mod == 3)
        emu_raise(c, EXC_UD, 0);
}

/* ---- port I/O (after emu_check_io) ---- */

static inline uint32_t pio_in(struct emu_cpu *c, uint16_t port, int size)
{
    uint32_t v = 0xffffffffu;
    if (c->io.pio)
        c->io.pio(c->io.opaque, port, &v, (uint32_t)size, false);
    return v & (uint32_t)szmask(size);
}

static inline void pio_out(struct emu_cpu *c, uint16_t port, uint32_t v, int size)
{
    if (c->io.pio)
        c->io.pio(c->io.opaque, port, &v, (uint32_t)size, true);
}

/* ---- decode.c: decoding and the decoded-instruction cache ----
 * The cache is per host thread (each vCPU runs on its own thread), direct-mapped by linear
 * address. An entry is used only if the mode matches and the bytes now in guest memory (read
 * through the current TLB, which also checks the fetch rights) equal the bytes it was decoded
 * from, so self- and cross-modifying code and remapped pages need no invalidation. The memory
 * operand's address is recomputed for every execution from the cached recipe. */
#define EMU_IC_SIZE     2048
#define EMU_DECODE_SPAN 32 /* the decoder reads at most this many bytes */

struct emu_icache_ent {
    struct emu_insn i;
    uint64_t la;
    uint64_t b0, b1; /* instruction bytes, masked to its length */
    uint64_t m0, m1; /* the masks */
    uint8_t mode;    /* 0: empty; else emu_icache_mode() */
};

/* initial-exec: the hot path reaches it with one %fs-relative access (the library is built
 * -fPIC, whose default TLS model would call __tls_get_addr). */
extern _Thread_local struct emu_icache_ent emu_icache[EMU_IC_SIZE]
    __attribute__((tls_model("initial-exec")));

struct emu_insn *emu_decode_slow(struct emu_cpu *c, struct emu_insn *scratch, uint64_t la,
                                 const uint8_t *p);

static inline uint8_t emu_icache_mode(const struct emu_cpu *c)
{
    return (uint8_t)(1 | c->code64 << 1 | c->code32 << 2);
}

static inline struct emu_icache_ent *emu_icache_slot(uint64_t la)
{
    return &emu_icache[(la ^ (la >> 11)) & (EMU_IC_SIZE - 1)];
}

static inline uint64_t emu_load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Effective address of the memory operand from the decoded recipe and the current registers
 * (c->rip is still the instruction's own address). */
static inline void emu_compute_ea(const struct emu_cpu *c, struct emu_insn *i)
{
    uint64_t ea = (uint64_t)(int64_t)i->disp;
    unsigned base = i->base, idx = i->idx, asize = i->asize;

    if (base != NOREG)
        ea += c->r[base];
    if (idx != NOREG)
        ea += c->r[idx] << i->scale;
    if (i->riprel)
        ea += c->rip + i->len;
    i->ea = asize == 8 ? ea : asize == 4 ? (uint32_t)ea : (uint16_t)ea;
}

/* Decode the instruction at c->rip (c->rip unchanged) and compute its memory operand's address.
 * Returns the decoded record: an entry of the decoded-instruction cache, or scratch. */
static inline struct emu_insn *emu_decode(struct emu_cpu *c, struct emu_insn *scratch)
{
    uint64_t la = c->code64 ? c->rip : (uint32_t)(c->seg[S_CS].base + c->rip);
    const struct emu_tlb_entry *t = emu_tlb_slot(c, la);
    unsigned need = (c->cpl == 3 ? EMU_TLB_UX : EMU_TLB_X) | EMU_TLB_RAM;
    const uint8_t *p = NULL;

    if (__builtin_expect(t->tag == ((la & ~0xfffULL) | 1) && (t->perm & need) == need &&
                             (la & 0xfff) <= 4096 - EMU_DECODE_SPAN,
                         1)) {
        struct emu_icache_ent *e = emu_icache_slot(la);
        p = t->host + (la & 0xfff);
        if (__builtin_expect(e->la == la && e->mode == emu_icache_mode(c) &&
                                 (emu_load64(p) & e->m0) == e->b0 &&
                                 (emu_load64(p + 8) & e->m1) == e->b1,
                             1)) {
            if (e->i.mod != 3)
                emu_compute_ea(c, &e->i);
            return &e->i;
        }
    }
    return emu_decode_slow(c, scratch, la, p);
}

/* ---- decoded blocks: decode.c builds them, exec.c runs them ----
 * A block is a run of up to EMU_BLK_MAX instructions decoded back to back from one page. It
 * ends after the first instruction that may do anything but fall through to the next one
 * (branches, string instructions with REP, anything that can change the mode, CS, IF, TF, the
 * interrupt shadow, paging or the TLB: see blk_continues in decode.c), or where the next
 * instruction would start in the last EMU_DECODE_SPAN bytes of the page. It is run only when
 * the mode matches and the bytes in guest memory (read through the current TLB, which checks
 * the fetch rights) equal the bytes it was decoded from, compared once per run of the block;
 * a store into the running block's own bytes ends it after the storing instruction
 * (emu_smc_check in mmu.h). The cache is per host thread: a hash table of pointers into an
 * arena that is emptied as a whole when it is full. */
#define EMU_BLK_MAX   64
#define EMU_BLK_HASH  4096
#define EMU_BLK_ARENA (4u << 20)

struct emu_block {
    uint64_t la;           /* linear address of the first byte */
    uint8_t mode;          /* emu_icache_mode() */
    uint8_t n;             /* instructions */
    uint16_t nbytes;       /* bytes, all on la's page */
    uint16_t nwords;       /* words[]: the bytes as 8-byte words, the last one masked */
    uint64_t lastmask;     /* mask of the last word */
    const uint64_t *words; /* in the arena, after insn[] */
    /* off[k]: offset of instruction k from the first byte (off[n] = nbytes). While a block runs,
     * only its last instruction sees c->rip and c->insn_start; exec.c derives them from off[]
     * where they are needed (a fault, a stop, the end of the block). */
    uint16_t off[EMU_BLK_MAX + 1];
    struct emu_insn insn[];
};

struct emu_blk_cache {
    struct emu_block *tab[EMU_BLK_HASH];
    uint8_t *arena;
    size_t used;
};

extern _Thread_local struct emu_blk_cache *emu_bc __attribute__((tls_model("initial-exec")));

static inline unsigned emu_blk_hash(uint64_t la)
{
    return (unsigned)((la ^ (la >> 12)) & (EMU_BLK_HASH - 1));
}

/* Decode the block at la (page bytes at p, readable up to the page end). Raises for the first
 * instruction like emu_decode(); NULL when no cache memory could be had. */
struct emu_block *emu_block_build(struct emu_cpu *c, uint64_t la, const uint8_t *p);

/* #UD for an opcode the interpreter does not implement (logged once per opcode). */
_Noreturn void ex_unimpl(struct emu_cpu *c, struct emu_insn *i);
/* #UD that the architecture defines (UD2, LOCK misuse, ...): not logged. */
_Noreturn void ex_ud(struct emu_cpu *c, struct emu_insn *i);

/* Fast forms: each replaces i->fn by a handler specialised for the decoded operand size and
 * form when one exists (decode.c calls them after decoding; see each file). */
void emu_spec_alu(struct emu_insn *i);
void emu_spec_shift(struct emu_insn *i);
void emu_spec_imul(struct emu_insn *i);
void emu_spec_control(struct emu_insn *i, bool m64);

/* ---- handlers, by file ---- */
/* alu.c */
/* ADD OR ADC SBB AND SUB XOR CMP: forms 00-3D, and 80-83 (by ModRM.reg); the decoder installs
 * these directly. */
extern const emu_handler emu_alu_handlers[8];
extern const emu_handler emu_alu_imm_handlers[8];
void emu_incdec_rm(struct emu_cpu *c, struct emu_insn *i, bool dec, int size);
void ex_alu(struct emu_cpu *c, struct emu_insn *i);
void ex_grp1(struct emu_cpu *c, struct emu_insn *i);
void ex_test(struct emu_cpu *c, struct emu_insn *i);
void ex_grp3(struct emu_cpu *c, struct emu_insn *i); /* F6/F7: TEST NOT NEG MUL IMUL DIV IDIV */
void ex_incdec_r(struct emu_cpu *c, struct emu_insn *i);
void ex_grp4(struct emu_cpu *c, struct emu_insn *i);
void ex_xchg(struct emu_cpu *c, struct emu_insn *i);
void ex_xchg_ax(struct emu_cpu *c, struct emu_insn *i); /* 90-97 incl. NOP and PAUSE */
void ex_mov(struct emu_cpu *c, struct emu_insn *i);
void ex_mov_rm_imm(struct emu_cpu *c, struct emu_insn *i);
void ex_mov_r_imm(struct emu_cpu *c, struct emu_insn *i);
void ex_mov_moffs(struct emu_cpu *c, struct emu_insn *i);
void ex_lea(struct emu_cpu *c, struct emu_insn *i);
void ex_movzx(struct emu_cpu *c, struct emu_insn *i);
void ex_movsx(struct emu_cpu *c, struct emu_insn *i);
void ex_movsxd(struct emu_cpu *c, struct emu_insn *i);
void ex_cbw(struct emu_cpu *c, struct emu_insn *i);
void ex_cwd(struct emu_cpu *c, struct emu_insn *i);
void ex_cmov(struct emu_cpu *c, struct emu_insn *i);
void ex_setcc(struct emu_cpu *c, struct emu_insn *i);
void ex_cmpxchg(struct emu_cpu *c, struct emu_insn *i);
void ex_grp9(struct emu_cpu *c, struct emu_insn *i); /* CMPXCHG8B/16B */
void ex_xadd(struct emu_cpu *c, struct emu_insn *i);
void ex_bswap(struct emu_cpu *c, struct emu_insn *i);
void ex_movbe(struct emu_cpu *c, struct emu_insn *i);
void ex_xlat(struct emu_cpu *c, struct emu_insn *i);
/* shift.c */
void ex_shift(struct emu_cpu *c, struct emu_insn *i);
void ex_shld(struct emu_cpu *c, struct emu_insn *i); /* SHLD/SHRD */
/* muldiv.c */
void emu_muldiv(struct emu_cpu *c, struct emu_insn *i, int size); /* F6/F7 /4-/7 */
void ex_imul2(struct emu_cpu *c, struct emu_insn *i);
void ex_imul3(struct emu_cpu *c, struct emu_insn *i);
/* bit.c */
void ex_bt(struct emu_cpu *c, struct emu_insn *i);
void ex_bt_imm(struct emu_cpu *c, struct emu_insn *i);
void ex_bsf(struct emu_cpu *c, struct emu_insn *i);
void ex_bsr(struct emu_cpu *c, struct emu_insn *i);
void ex_popcnt(struct emu_cpu *c, struct emu_insn *i);
/* string.c */
void ex_movs(struct emu_cpu *c, struct emu_insn *i);
void ex_cmps(struct emu_cpu *c, struct emu_insn *i);
void ex_stos(struct emu_cpu *c, struct emu_insn *i);
void ex_lods(struct emu_cpu *c, struct emu_insn *i);
void ex_scas(struct emu_cpu *c, struct emu_insn *i);
void ex_ins(struct emu_cpu *c, struct emu_insn *i);
void ex_outs(struct emu_cpu *c, struct emu_insn *i);
/* control.c */
void ex_jcc(struct emu_cpu *c, struct emu_insn *i);
void ex_jmp_rel(struct emu_cpu *c, struct emu_insn *i);
void ex_call_rel(struct emu_cpu *c, struct emu_insn *i);
void ex_ret(struct emu_cpu *c, struct emu_insn *i);
void ex_retf(struct emu_cpu *c, struct emu_insn *i);
void ex_grp5(struct emu_cpu *c, struct emu_insn *i);    /* FF: INC DEC CALL CALLF JMP JMPF PUSH */
void ex_far_ptr(struct emu_cpu *c, struct emu_insn *i); /* 9A CALLF / EA JMPF ptr16:16/32 */
void ex_loop(struct emu_cpu *c, struct emu_insn *i);
void ex_jcxz(struct emu_cpu *c, struct emu_insn *i);
void ex_push_r(struct emu_cpu *c, struct emu_insn *i);
void ex_pop_r(struct emu_cpu *c, struct emu_insn *i);
void ex_push_imm(struct emu_cpu *c, struct emu_insn *i);
void ex_pop_rm(struct emu_cpu *c, struct emu_insn *i);
void ex_push_sreg(struct emu_cpu *c, struct emu_insn *i);
void ex_pop_sreg(struct emu_cpu *c, struct emu_insn *i);
void ex_pusha(struct emu_cpu *c, struct emu_insn *i);
void ex_popa(struct emu_cpu *c, struct emu_insn *i);
void ex_pushf(struct emu_cpu *c, struct emu_insn *i);
void ex_popf(struct emu_cpu *c, struct emu_insn *i);
void ex_enter(struct emu_cpu *c, struct emu_insn *i);
void ex_leave(struct emu_cpu *c, struct emu_insn *i);
void ex_int(struct emu_cpu *c, struct emu_insn *i); /* INT3, INT n, INTO */
void ex_iret(struct emu_cpu *c, struct emu_insn *i);
/* system.c */
void ex_in_out(struct emu_cpu *c, struct emu_insn *i);
void ex_flagop(struct emu_cpu *c, struct emu_insn *i); /* CMC CLC STC CLI STI CLD STD */
void ex_lahf(struct emu_cpu *c, struct emu_insn *i);
void ex_sahf(struct emu_cpu *c, struct emu_insn *i);
void ex_hlt(struct emu_cpu *c, struct emu_insn *i);
void ex_nop(struct emu_cpu *c, struct emu_insn *i);
void ex_mov_sreg(struct emu_cpu *c, struct emu_insn *i); /* 8C, 8E */
void ex_lfp(struct emu_cpu *c, struct emu_insn *i);      /* LSS LFS LGS */
void ex_grp6(struct emu_cpu *c, struct emu_insn *i);
void ex_grp7(struct emu_cpu *c, struct emu_insn *i);
void ex_grp15(struct emu_cpu *c, struct emu_insn *i);
void ex_mov_cr(struct emu_cpu *c, struct emu_insn *i);
void ex_mov_dr(struct emu_cpu *c, struct emu_insn *i);
void ex_syscall(struct emu_cpu *c, struct emu_insn *i);
void ex_sysret(struct emu_cpu *c, struct emu_insn *i);
void ex_clts(struct emu_cpu *c, struct emu_insn *i);
void ex_wbinvd(struct emu_cpu *c, struct emu_insn *i);
void ex_rdmsr(struct emu_cpu *c, struct emu_insn *i);
void ex_wrmsr(struct emu_cpu *c, struct emu_insn *i);
void ex_rdtsc(struct emu_cpu *c, struct emu_insn *i);
void ex_cpuid(struct emu_cpu *c, struct emu_insn *i);
