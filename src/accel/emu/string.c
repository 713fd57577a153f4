/* string.c: MOVS CMPS STOS LODS SCAS INS OUTS with REP/REPE/REPNE, committed per iteration. */
#include "accel/emu/insn.h"

/* A REP instruction commits RCX/RSI/RDI after every iteration, so a fault in the middle leaves
 * them consistent with RIP still at the instruction. A long REP also gives way to a kick
 * (exit_request): it stops between iterations with RIP at the instruction, which resumes. */
#define REP_YIELD_MASK 1023u

static inline bool rep_yield(struct emu_cpu *c, unsigned *n)
{
    if ((++*n & REP_YIELD_MASK) == 0 &&
        atomic_load_explicit(&c->exit_request, memory_order_relaxed)) {
        c->rip = c->insn_start;
        return true;
    }
    return false;
}

static inline int str_size(const struct emu_insn *i)
{
    return (i->op & 1) ? i->opsize : 1;
}

static inline uint64_t str_delta(const struct emu_cpu *c, int size)
{
    return (c->rflags & FL_DF) ? (uint64_t) - (int64_t)size : (uint64_t)size;
}

/* After one iteration of a REP: count down; the remaining count. */
static inline uint64_t rep_count(struct emu_cpu *c, const struct emu_insn *i)
{
    uint64_t cnt = (c->r[R_CX] - 1) & szmask(i->asize);
    reg_wr_asize(c, R_CX, cnt, i->asize);
    return cnt;
}

/* After one iteration: true when the instruction is finished (or yields to a kick). */
static inline bool rep_done(struct emu_cpu *c, const struct emu_insn *i, unsigned *n)
{
    return rep_count(c, i) == 0 || rep_yield(c, n);
}

static inline bool rep_empty(const struct emu_cpu *c, const struct emu_insn *i)
{
    return i->rep && (c->r[R_CX] & szmask(i->asize)) == 0;
}

void ex_movs(struct emu_cpu *c, struct emu_insn *i)
{
    int size = str_size(i), as = i->asize;
    uint64_t am = szmask(as), delta = str_delta(c, size);
    unsigned n = 0;

    if (rep_empty(c, i))
        return;
    for (;;) {
        uint64_t v = emu_read(c, seg_la(c, i->seg, c->r[R_SI] & am), size);
        emu_write(c, seg_la(c, S_ES, c->r[R_DI] & am), v, size);
        reg_wr_asize(c, R_SI, c->r[R_SI] + delta, as);
        reg_wr_asize(c, R_DI, c->r[R_DI] + delta, as);
        if (!i->rep || rep_done(c, i, &n))
            return;
    }
}

void ex_stos(struct emu_cpu *c, struct emu_insn *i)
{
    int size = str_size(i), as = i->asize;
    uint64_t am = szmask(as), delta = str_delta(c, size), v = c->r[R_AX] & szmask(size);
    unsigned n = 0;

    if (rep_empty(c, i))
        return;
    for (;;) {
        emu_write(c, seg_la(c, S_ES, c->r[R_DI] & am), v, size);
        reg_wr_asize(c, R_DI, c->r[R_DI] + delta, as);
        if (!i->rep || rep_done(c, i, &n))
            return;
    }
}

void ex_lods(struct emu_cpu *c, struct emu_insn *i)
{
    int size = str_size(i), as = i->asize;
    uint64_t am = szmask(as), delta = str_delta(c, size);
    unsigned n = 0;

    if (rep_empty(c, i))
        return;
    for (;;) {
        uint64_t v = emu_read(c, seg_la(c, i->seg, c->r[R_SI] & am), size);
        reg_wr(c, i, R_AX, v, size);
        reg_wr_asize(c, R_SI, c->r[R_SI] + delta, as);
        if (!i->rep || rep_done(c, i, &n))
            return;
    }
}

/* REPE (F3) continues while equal, REPNE (F2) while not equal. */
void ex_cmps(struct emu_cpu *c, struct emu_insn *i)
{
    int size = str_size(i), as = i->asize;
    uint64_t am = szmask(as), delta = str_delta(c, size);
    unsigned n = 0;

    if (rep_empty(c, i))
        return;
    for (;;) {
        uint64_t a = emu_read(c, seg_la(c, i->seg, c->r[R_SI] & am), size);
        uint64_t b = emu_read(c, seg_la(c, S_ES, c->r[R_DI] & am), size);
        reg_wr_asize(c, R_SI, c->r[R_SI] + delta, as);
        reg_wr_asize(c, R_DI, c->r[R_DI] + delta, as);
        lf_set(c, LF_SUB, a, b, (a - b) & szmask(size), size);
        if (!i->rep || rep_count(c, i) == 0 || (a == b) != (i->rep == 0xf3) || rep_yield(c, &n))
            return;
    }
}

void ex_scas(struct emu_cpu *c, struct emu_insn *i)
{
    int size = str_size(i), as = i->asize;
    uint64_t am = szmask(as), delta = str_delta(c, size), a = c->r[R_AX] & szmask(size);
    unsigned n = 0;

    if (rep_empty(c, i))
        return;
    for (;;) {
        uint64_t b = emu_read(c, seg_la(c, S_ES, c->r[R_DI] & am), size);
        reg_wr_asize(c, R_DI, c->r[R_DI] + delta, as);
        lf_set(c, LF_SUB, a, b, (a - b) & szmask(size), size);
        if (!i->rep || rep_count(c, i) == 0 || (a == b) != (i->rep == 0xf3) || rep_yield(c, &n))
            return;
    }
}

static inline int io_size(const struct emu_insn *i)
{
    return (i->op & 1) ? (i->opsize == 2 ? 2 : 4) : 1;
}

void ex_ins(struct emu_cpu *c, struct emu_insn *i)
{
    int size = io_size(i), as = i->asize;
    uint64_t am = szmask(as), delta = str_delta(c, size);
    uint16_t port = (uint16_t)c->r[R_DX];
    unsigned n = 0;

    if (rep_empty(c, i))
        return;
    emu_check_io(c, port, size);
    for (;;) {
        uint64_t la = seg_la(c, S_ES, c->r[R_DI] & am);
        emu_write(c, la, pio_in(c, port, size), size);
        reg_wr_asize(c, R_DI, c->r[R_DI] + delta, as);
        if (!i->rep || rep_done(c, i, &n))
            return;
    }
}

void ex_outs(struct emu_cpu *c, struct emu_insn *i)
{
    int size = io_size(i), as = i->asize;
    uint64_t am = szmask(as), delta = str_delta(c, size);
    uint16_t port = (uint16_t)c->r[R_DX];
    unsigned n = 0;

    if (rep_empty(c, i))
        return;
    emu_check_io(c, port, size);
    for (;;) {
        uint64_t v = emu_read(c, seg_la(c, i->seg, c->r[R_SI] & am), size);
        pio_out(c, port, (uint32_t)v, size);
        reg_wr_asize(c, R_SI, c->r[R_SI] + delta, as);
        if (!i->rep || rep_done(c, i, &n))
            return;
    }
}
