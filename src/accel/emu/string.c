/* string.c: MOVS CMPS STOS LODS SCAS INS OUTS with REP/REPE/REPNE, committed per iteration. */
#include <string.h>

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

/* Host pointer for bytes at la (all within la's page) when the TLB maps the page RAM-backed with
 * the rights, and for a write also in the current dirty-log generation (as mmu.h's fast paths
 * require); else NULL (the caller goes through emu_read/emu_write once, which refills the TLB). */
static inline uint8_t *tlb_host(struct emu_cpu *c, uint64_t la, bool write)
{
    struct emu_tlb_entry *e = emu_tlb_slot(c, la);
    bool user = c->cpl == 3;
    unsigned need =
        (write ? (user ? EMU_TLB_UW : EMU_TLB_W) : (user ? EMU_TLB_UR : EMU_TLB_R)) | EMU_TLB_RAM;

    if (e->tag != ((la & ~0xfffULL) | 1) || (e->perm & need) != need)
        return NULL;
    if (write && e->dirty_gen != atomic_load_explicit(&c->vm->dirty_gen, memory_order_relaxed))
        return NULL;
    return e->host + (la & 0xfff);
}

/* Elements of size bytes from offset off (address size as) that fit in la's page and do not
 * wrap the offset register, at most cnt. */
static inline uint64_t page_run(uint64_t la, uint64_t off, int as, int size, uint64_t cnt)
{
    uint64_t n = (4096 - (la & 0xfff)) / (uint64_t)size;

    if (as == 4 && off + n * (uint64_t)size > 0x100000000ULL)
        n = (0x100000000ULL - off) / (uint64_t)size;
    return n < cnt ? n : cnt;
}

/* Forward REP with 32/64-bit addresses: whole runs within a page at a time through host
 * pointers. Anything else (a page not in the TLB, MMIO, an element crossing a page, DF=1,
 * 16-bit addresses) takes the per-element path. */
static inline bool rep_fast_ok(const struct emu_cpu *c, const struct emu_insn *i)
{
    return i->rep && i->asize != 2 && !(c->rflags & FL_DF);
}

/* Account n elements done by a fast run: registers advanced; true when the instruction is
 * finished (or yields to a kick with RIP at it). */
static bool run_done(struct emu_cpu *c, const struct emu_insn *i, uint64_t n, uint64_t cnt, bool si,
                     bool di, int size)
{
    int as = i->asize;
    uint64_t bytes = n * (uint64_t)size;

    if (si)
        reg_wr_asize(c, R_SI, c->r[R_SI] + bytes, as);
    if (di)
        reg_wr_asize(c, R_DI, c->r[R_DI] + bytes, as);
    reg_wr_asize(c, R_CX, cnt - n, as);
    if (cnt == n)
        return true;
    if (atomic_load_explicit(&c->exit_request, memory_order_relaxed)) {
        c->rip = c->insn_start;
        return true;
    }
    return false;
}

/* One fast MOVS run; false when it cannot be done through host pointers. */
static bool movs_run(struct emu_cpu *c, const struct emu_insn *i, int size, bool *done)
{
    int as = i->asize;
    uint64_t am = szmask(as);
    uint64_t cnt = c->r[R_CX] & am, si = c->r[R_SI] & am, di = c->r[R_DI] & am;
    uint64_t sla = seg_la(c, i->seg, si), dla = seg_la(c, S_ES, di);
    uint64_t k = page_run(sla, si, as, size, page_run(dla, di, as, size, cnt));
    const uint8_t *src = k ? tlb_host(c, sla, false) : NULL;
    uint8_t *dst = src ? tlb_host(c, dla, true) : NULL;
    uint64_t bytes = k * (uint64_t)size;

    if (!dst)
        return false;
    if (dst >= src + bytes || dst + bytes <= src) {
        memcpy(dst, src, bytes);
    } else {
        /* Overlapping: element by element, forward, as the instruction does. */
        for (uint64_t j = 0; j < bytes; j += (uint64_t)size) {
            uint64_t v;
            memcpy(&v, src + j, (size_t)size);
            memcpy(dst + j, &v, (size_t)size);
        }
    }
    *done = run_done(c, i, k, cnt, true, true, size);
    return true;
}

void ex_movs(struct emu_cpu *c, struct emu_insn *i)
{
    int size = str_size(i), as = i->asize;
    uint64_t am = szmask(as), delta = str_delta(c, size);
    unsigned n = 0;
    bool done = false;

    if (rep_empty(c, i))
        return;
    for (;;) {
        if (rep_fast_ok(c, i)) {
            while (movs_run(c, i, size, &done))
                if (done)
                    return;
        }
        uint64_t v = emu_read(c, seg_la(c, i->seg, c->r[R_SI] & am), size);
        emu_write(c, seg_la(c, S_ES, c->r[R_DI] & am), v, size);
        reg_wr_asize(c, R_SI, c->r[R_SI] + delta, as);
        reg_wr_asize(c, R_DI, c->r[R_DI] + delta, as);
        if (!i->rep || rep_count(c, i) == 0 || rep_yield(c, &n))
            return;
    }
}

/* One fast STOS run; false when it cannot be done through host pointers. */
static bool stos_run(struct emu_cpu *c, const struct emu_insn *i, int size, uint64_t v, bool *done)
{
    int as = i->asize;
    uint64_t am = szmask(as), cnt = c->r[R_CX] & am, di = c->r[R_DI] & am;
    uint64_t dla = seg_la(c, S_ES, di);
    uint64_t k = page_run(dla, di, as, size, cnt);
    uint8_t *dst = k ? tlb_host(c, dla, true) : NULL;

    if (!dst)
        return false;
    if (size == 1) {
        memset(dst, (int)v, k);
    } else {
        for (uint64_t j = 0; j < k; j++)
            memcpy(dst + j * (uint64_t)size, &v, (size_t)size);
    }
    *done = run_done(c, i, k, cnt, false, true, size);
    return true;
}

void ex_stos(struct emu_cpu *c, struct emu_insn *i)
{
    int size = str_size(i), as = i->asize;
    uint64_t am = szmask(as), delta = str_delta(c, size), v = c->r[R_AX] & szmask(size);
    unsigned n = 0;
    bool done = false;

    if (rep_empty(c, i))
        return;
    for (;;) {
        if (rep_fast_ok(c, i)) {
            while (stos_run(c, i, size, v, &done))
                if (done)
                    return;
        }
        emu_write(c, seg_la(c, S_ES, c->r[R_DI] & am), v, size);
        reg_wr_asize(c, R_DI, c->r[R_DI] + delta, as);
        if (!i->rep || rep_count(c, i) == 0 || rep_yield(c, &n))
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
