/* excp.c: exception and interrupt delivery through the IDT (real mode, 32-bit and 64-bit gates,
 * stack switch, IST, error codes, double and triple fault), IRET, far JMP/CALL/RET and
 * SYSCALL/SYSRET.
 *
 * Every operation reads and checks everything (descriptors, TSS, new stack) and writes the new
 * stack before it changes a register, so a fault on the way leaves the CPU as it was. Delivery
 * catches faults of its own with a setjmp of its own (see emu_deliver and docs/emulator.md).
 */
#include <setjmp.h>
#include <string.h>

#include "accel/emu/cpu.h"
#include "accel/emu/sys.h"
#include "core/log.h"

enum event_kind { EV_EXCEPTION, EV_SOFT, EV_EXTERNAL };
/* fault_depth values: the class of the event being delivered, for the #DF rules. */
enum { CL_NONE, CL_BENIGN, CL_CONTRIB, CL_PF, CL_DF };

static bool log_task_gate, log_v86, log_call_gate, log_task_switch;

_Noreturn void emu_raise(struct emu_cpu *c, int vec, uint32_t err)
{
    c->fault_vec = vec;
    c->fault_err = err;
    longjmp(c->fault_jmp, 1);
}

bool emu_vec_has_error(int vec)
{
    return vec == EXC_DF || (vec >= EXC_TS && vec <= EXC_PF) || vec == EXC_AC || vec == 21;
}

static int exc_class(int vec, enum event_kind kind)
{
    if (kind != EV_EXCEPTION)
        return CL_BENIGN;
    switch (vec) {
    case EXC_DE:
    case EXC_TS:
    case EXC_NP:
    case EXC_SS:
    case EXC_GP:
        return CL_CONTRIB;
    case EXC_PF:
        return CL_PF;
    case EXC_DF:
        return CL_DF;
    default:
        return CL_BENIGN;
    }
}

/* ---- a stack being pushed or popped: memory at once, RSP only when the caller commits ---- */

struct stk {
    uint64_t sp;   /* the whole RSP */
    uint64_t mask; /* the bits the stack size changes: 0xffff, 0xffffffff or all */
    uint64_t base;
    bool user;
    uint32_t ext; /* EXT for a #SS of the stack address */
};

static void stk_cur(const struct emu_cpu *c, struct stk *s)
{
    s->sp = c->r[R_SP];
    s->user = c->cpl == 3;
    s->ext = 0;
    if (c->code64) {
        s->mask = ~0ULL;
        s->base = 0;
    } else {
        s->mask = c->seg[S_SS].db ? 0xffffffffULL : 0xffffULL;
        s->base = c->seg[S_SS].base;
    }
}

static uint64_t stk_la(struct emu_cpu *c, const struct stk *s)
{
    if (s->mask == ~0ULL) {
        if (!emu_canonical(s->sp))
            emu_raise(c, EXC_SS, s->ext);
        return s->sp;
    }
    return (s->base + (s->sp & s->mask)) & 0xffffffffULL;
}

static void stk_push(struct emu_cpu *c, struct stk *s, uint64_t v, int size)
{
    s->sp = (s->sp & ~s->mask) | ((s->sp - (uint64_t)size) & s->mask);
    emu_write_priv(c, stk_la(c, s), v, size, s->user);
}

static uint64_t stk_pop(struct emu_cpu *c, struct stk *s, int size)
{
    uint64_t v = emu_read_priv(c, stk_la(c, s), size, s->user);

    s->sp = (s->sp & ~s->mask) | ((s->sp + (uint64_t)size) & s->mask);
    return v;
}

static void stk_skip(struct stk *s, uint64_t n)
{
    s->sp = (s->sp & ~s->mask) | ((s->sp + n) & s->mask);
}

/* ---- delivery ---- */

static uint64_t tss_read(struct emu_cpu *c, uint32_t off, int len, uint32_t ext)
{
    if (c->tr.unusable || (uint64_t)off + (uint64_t)len - 1 > c->tr.limit)
        emu_raise(c, EXC_TS, SEL_ERR(c->tr.selector) | ext);
    return emu_read_sys(c, c->tr.base + off, len);
}

static void triple_fault(struct emu_cpu *c, const char *why)
{
    log_info("emu: cpu %d: triple fault (%s)", c->id, why);
    c->stop = EMU_STOP_SHUTDOWN;
}

static void deliver_real(struct emu_cpu *c, int vec)
{
    uint64_t fl = emu_get_rflags(c), v;
    struct stk s;

    if ((uint64_t)vec * 4 + 3 > c->idt.limit)
        emu_raise(c, EXC_GP, 0);
    v = emu_read_sys(c, c->idt.base + (uint64_t)vec * 4, 4);
    stk_cur(c, &s);
    stk_push(c, &s, fl, 2);
    stk_push(c, &s, c->seg[S_CS].selector, 2);
    stk_push(c, &s, c->rip, 2);
    c->seg[S_CS].selector = (uint16_t)(v >> 16);
    c->seg[S_CS].base = (v >> 16) << 4;
    c->r[R_SP] = s.sp;
    c->rip = v & 0xffff;
    emu_set_rflags(c, fl & ~(uint64_t)(FL_IF | FL_TF | FL_AC | FL_RF));
}

/* Protected-mode and long-mode delivery. */
static void deliver_prot(struct emu_cpu *c, int vec, bool has_err, uint32_t err,
                         enum event_kind kind)
{
    bool lm = c->long_mode;
    uint32_t ext = kind == EV_SOFT ? 0 : 1, idt_err = (uint32_t)vec * 8 + 2 + ext;
    uint64_t gsize = lm ? 16 : 8, lo, hi = 0, off, cd, ssd = 0, fl;
    uint16_t sel, ss = 0;
    unsigned type, new_cpl, ist, size;
    bool outer;
    struct stk s;

    if ((uint64_t)vec * gsize + gsize - 1 > c->idt.limit)
        emu_raise(c, EXC_GP, idt_err);
    lo = emu_read_sys(c, c->idt.base + (uint64_t)vec * gsize, 8);
    if (lm)
        hi = emu_read_sys(c, c->idt.base + (uint64_t)vec * gsize + 8, 8);
    type = DESC_TYPE(lo);
    if (!lm && type == 5 && !DESC_S(lo)) {
        emu_log_once(&log_task_gate, "task gates are not implemented");
        triple_fault(c, "task gate");
        return;
    }
    if (DESC_S(lo) || (type != 0xe && type != 0xf && (lm || (type != 6 && type != 7))))
        emu_raise(c, EXC_GP, idt_err);
    if (kind == EV_SOFT && DESC_DPL(lo) < c->cpl)
        emu_raise(c, EXC_GP, (uint32_t)vec * 8 + 2);
    if (!DESC_P(lo))
        emu_raise(c, EXC_NP, idt_err);
    sel = (uint16_t)(lo >> 16);
    off = (lo & 0xffff) | ((lo >> 32) & 0xffff0000ULL) | ((hi & 0xffffffffULL) << 32);
    ist = lm ? (unsigned)(lo >> 32) & 7 : 0;

    if (SEL_NULL(sel))
        emu_raise(c, EXC_GP, ext);
    cd = emu_read_desc_ext(c, sel, EXC_GP, ext);
    if (!DESC_CODE(cd) || DESC_DPL(cd) > c->cpl)
        emu_raise(c, EXC_GP, SEL_ERR(sel) | ext);
    if (!DESC_P(cd))
        emu_raise(c, EXC_NP, SEL_ERR(sel) | ext);
    if (lm && (!DESC_L(cd) || DESC_DB(cd)))
        emu_raise(c, EXC_GP, SEL_ERR(sel) | ext);
    new_cpl = DESC_CONF(cd) ? c->cpl : DESC_DPL(cd);
    outer = new_cpl < c->cpl;
    if (lm && !emu_canonical(off))
        emu_raise(c, EXC_GP, ext);

    fl = emu_get_rflags(c);
    if (fl & FL_VM) {
        emu_log_once(&log_v86, "interrupts from virtual-8086 mode are not implemented");
        triple_fault(c, "virtual-8086 mode");
        return;
    }
    s.user = new_cpl == 3;
    s.ext = ext;
    if (lm) {
        /* 64-bit: 8-byte pushes on a 16-byte aligned stack, SS:RSP always pushed. */
        if (ist)
            s.sp = tss_read(c, 0x24 + 8 * (ist - 1), 8, ext);
        else if (outer)
            s.sp = tss_read(c, 4 + 8 * new_cpl, 8, ext);
        else
            s.sp = c->r[R_SP];
        s.sp &= ~0xfULL;
        s.mask = ~0ULL;
        s.base = 0;
        stk_push(c, &s, c->seg[S_SS].selector, 8);
        stk_push(c, &s, c->r[R_SP], 8);
        stk_push(c, &s, fl, 8);
        stk_push(c, &s, c->seg[S_CS].selector, 8);
        stk_push(c, &s, c->rip, 8);
        if (has_err)
            stk_push(c, &s, err, 8);
    } else {
        size = (type & 8) ? 4 : 2;
        if (outer) {
            if (c->tr.type & 8) { /* 32-bit TSS */
                s.sp = tss_read(c, 4 + 8 * new_cpl, 4, ext);
                ss = (uint16_t)tss_read(c, 8 + 8 * new_cpl, 2, ext);
            } else {
                s.sp = tss_read(c, 2 + 4 * new_cpl, 2, ext);
                ss = (uint16_t)tss_read(c, 4 + 4 * new_cpl, 2, ext);
            }
            ssd = emu_check_ss(c, ss, new_cpl, EXC_TS, ext);
            s.mask = DESC_DB(ssd) ? 0xffffffffULL : 0xffffULL;
            s.base = ((ssd >> 16) & 0xffffff) | (((ssd >> 56) & 0xff) << 24);
            stk_push(c, &s, c->seg[S_SS].selector, (int)size);
            stk_push(c, &s, c->r[R_SP], (int)size);
        } else {
            stk_cur(c, &s);
            s.user = new_cpl == 3;
            s.ext = ext;
        }
        stk_push(c, &s, fl, (int)size);
        stk_push(c, &s, c->seg[S_CS].selector, (int)size);
        stk_push(c, &s, c->rip, (int)size);
        if (has_err)
            stk_push(c, &s, err, (int)size);
        off &= size == 4 ? 0xffffffffULL : 0xffffULL;
    }

    /* Commit: the accessed bits first (they can fault), then registers. */
    emu_desc_set_accessed(c, sel, cd);
    if (outer && !lm)
        emu_desc_set_accessed(c, ss, ssd);
    if (outer && lm)
        emu_seg_null(&c->seg[S_SS], (uint16_t)new_cpl);
    else if (outer)
        emu_seg_from_desc(&c->seg[S_SS], ss, ssd | DESC_ACCESSED, 0);
    emu_load_cs(c, sel, cd | DESC_ACCESSED, new_cpl);
    c->r[R_SP] = s.sp;
    c->rip = off;
    fl &= ~(uint64_t)(FL_TF | FL_NT | FL_RF | FL_VM);
    if (!(type & 1))
        fl &= ~(uint64_t)FL_IF;
    emu_set_rflags(c, fl);
    emu_mode_changed(c);
}

static void deliver_event(struct emu_cpu *c, int vec, bool has_err, uint32_t err,
                          enum event_kind kind)
{
    jmp_buf outer;
    volatile int v = vec;
    volatile bool he = has_err;
    volatile uint32_t e = err;
    volatile enum event_kind k = kind;
    int first, second, nv;

    memcpy(outer, c->fault_jmp, sizeof(outer));
    for (;;) {
        c->fault_depth = exc_class(v, k);
        if (setjmp(c->fault_jmp) == 0) {
            if (c->cr0 & CR0_PE)
                deliver_prot(c, v, he, e, k);
            else
                deliver_real(c, v);
            break;
        }
        if (k == EV_SOFT) {
            /* A fault while delivering INT n/INT3/INTO is a fault of that instruction: exec.c
             * puts RIP back on it and delivers the new exception. */
            c->fault_depth = CL_NONE;
            memcpy(c->fault_jmp, outer, sizeof(outer));
            longjmp(c->fault_jmp, 1);
        }
        first = exc_class(v, k);
        nv = c->fault_vec;
        second = exc_class(nv, EV_EXCEPTION);
        if (first == CL_DF) {
            triple_fault(c, "fault while delivering #DF");
            break;
        }
        if ((first == CL_CONTRIB && second == CL_CONTRIB) ||
            (first == CL_PF && second != CL_BENIGN)) {
            v = EXC_DF;
            he = true;
            e = 0;
        } else {
            v = nv;
            he = emu_vec_has_error(nv);
            e = c->fault_err;
        }
        k = EV_EXCEPTION;
    }
    c->fault_depth = CL_NONE;
    memcpy(c->fault_jmp, outer, sizeof(outer));
}

void emu_deliver(struct emu_cpu *c, int vec, bool has_err, uint32_t err, bool soft)
{
    deliver_event(c, vec, has_err && (c->cr0 & CR0_PE), err, soft ? EV_SOFT : EV_EXCEPTION);
}

void emu_deliver_interrupt(struct emu_cpu *c, int vec)
{
    c->halted = false;
    deliver_event(c, vec, false, 0, EV_EXTERNAL);
}

/* ---- far transfers ---- */

/* The checks every new code segment ends with: present (#NP), and not both L and D in long
 * mode (#GP); returns the descriptor. */
static uint64_t code_present(struct emu_cpu *c, uint64_t d, uint16_t sel)
{
    if (!DESC_P(d))
        emu_raise(c, EXC_NP, SEL_ERR(sel));
    if (c->long_mode && DESC_L(d) && DESC_DB(d))
        emu_raise(c, EXC_GP, SEL_ERR(sel));
    return d;
}

/* The checks of a far JMP/CALL target (same privilege only; gates are not implemented). */
static uint64_t check_far_target(struct emu_cpu *c, uint16_t sel)
{
    uint64_t d;

    if (SEL_NULL(sel))
        emu_raise(c, EXC_GP, 0);
    d = emu_read_descriptor(c, sel, EXC_GP);
    if (!DESC_S(d)) {
        if (DESC_TYPE(d) == 4 || DESC_TYPE(d) == 0xc)
            emu_log_once(&log_call_gate, "far transfers through call gates are not implemented");
        else
            emu_log_once(&log_task_switch, "task switches are not implemented");
        emu_raise(c, EXC_GP, SEL_ERR(sel));
    }
    if (!DESC_CODE(d))
        emu_raise(c, EXC_GP, SEL_ERR(sel));
    if (DESC_CONF(d) ? DESC_DPL(d) > c->cpl : SEL_RPL(sel) > c->cpl || DESC_DPL(d) != c->cpl)
        emu_raise(c, EXC_GP, SEL_ERR(sel));
    return code_present(c, d, sel);
}

/* The target offset as the new code segment sees it. */
static uint64_t target_ip(struct emu_cpu *c, uint64_t d, uint64_t ip)
{
    if (c->long_mode && DESC_L(d)) {
        if (!emu_canonical(ip))
            emu_raise(c, EXC_GP, 0);
        return ip;
    }
    return ip & 0xffffffffULL;
}

static void load_real_cs(struct emu_cpu *c, uint16_t sel)
{
    c->seg[S_CS].selector = sel;
    c->seg[S_CS].base = (uint64_t)sel << 4;
}

static bool real_or_v86(const struct emu_cpu *c)
{
    return !(c->cr0 & CR0_PE) || (c->rflags & FL_VM);
}

void emu_far_jmp(struct emu_cpu *c, uint16_t sel, uint64_t off)
{
    uint64_t d;

    if (real_or_v86(c)) {
        load_real_cs(c, sel);
        c->rip = off;
        return;
    }
    d = check_far_target(c, sel);
    off = target_ip(c, d, off);
    emu_desc_set_accessed(c, sel, d);
    emu_load_cs(c, sel, d | DESC_ACCESSED, c->cpl);
    c->rip = off;
    emu_mode_changed(c);
}

void emu_far_call(struct emu_cpu *c, uint16_t sel, uint64_t off, int opsize)
{
    struct stk s;
    uint64_t d = 0;

    if (!real_or_v86(c)) {
        d = check_far_target(c, sel);
        off = target_ip(c, d, off);
    }
    stk_cur(c, &s);
    stk_push(c, &s, c->seg[S_CS].selector, opsize);
    stk_push(c, &s, c->rip, opsize);
    if (real_or_v86(c)) {
        load_real_cs(c, sel);
    } else {
        emu_desc_set_accessed(c, sel, d);
        emu_load_cs(c, sel, d | DESC_ACCESSED, c->cpl);
    }
    c->r[R_SP] = s.sp;
    c->rip = off;
    emu_mode_changed(c);
}

/* The checks of a return CS (RET far, IRET): RPL >= CPL, code, DPL rules, present. */
static uint64_t check_return_cs(struct emu_cpu *c, uint16_t sel)
{
    uint64_t d;

    if (SEL_NULL(sel))
        emu_raise(c, EXC_GP, 0);
    if (SEL_RPL(sel) < c->cpl)
        emu_raise(c, EXC_GP, SEL_ERR(sel));
    d = emu_read_descriptor(c, sel, EXC_GP);
    if (!DESC_CODE(d))
        emu_raise(c, EXC_GP, SEL_ERR(sel));
    if (DESC_CONF(d) ? DESC_DPL(d) > SEL_RPL(sel) : DESC_DPL(d) != SEL_RPL(sel))
        emu_raise(c, EXC_GP, SEL_ERR(sel));
    return code_present(c, d, sel);
}

/* SS for a return to privilege rpl (popped ss); *ssd = 0 for a null SS allowed in 64-bit mode. */
static uint64_t check_return_ss(struct emu_cpu *c, uint16_t ss, unsigned rpl, uint64_t csd)
{
    if (SEL_NULL(ss)) {
        if (c->long_mode && DESC_L(csd) && rpl != 3 && SEL_RPL(ss) == rpl)
            return 0;
        emu_raise(c, EXC_GP, 0);
    }
    return emu_check_ss(c, ss, rpl, EXC_GP, 0);
}

/* Commit a return: CS, SS (when popped), RSP, RIP. */
static void commit_return(struct emu_cpu *c, uint16_t cs, uint64_t csd, bool load_ss, uint16_t ss,
                          uint64_t ssd, uint64_t sp, uint64_t ip)
{
    unsigned rpl = SEL_RPL(cs), old_cpl = c->cpl;

    emu_desc_set_accessed(c, cs, csd);
    if (load_ss && ssd)
        emu_desc_set_accessed(c, ss, ssd);
    emu_load_cs(c, cs, csd | DESC_ACCESSED, rpl);
    if (load_ss) {
        if (ssd)
            emu_seg_from_desc(&c->seg[S_SS], ss, ssd | DESC_ACCESSED, 0);
        else
            emu_seg_null(&c->seg[S_SS], ss);
        if (c->long_mode && DESC_L(csd))
            c->r[R_SP] = sp;
        else if (ssd && DESC_DB(ssd))
            c->r[R_SP] = sp & 0xffffffffULL;
        else
            c->r[R_SP] = (c->r[R_SP] & ~0xffffULL) | (sp & 0xffff);
    } else {
        c->r[R_SP] = sp;
    }
    if (rpl > old_cpl)
        emu_seg_check_outer(c);
    c->rip = ip;
}

void emu_far_ret(struct emu_cpu *c, int opsize, uint16_t pop_bytes)
{
    struct stk s;
    uint64_t ip, d, ssd = 0, sp;
    uint16_t cs, ss = 0;
    bool outer;

    stk_cur(c, &s);
    ip = stk_pop(c, &s, opsize);
    cs = (uint16_t)stk_pop(c, &s, opsize);
    if (real_or_v86(c)) {
        stk_skip(&s, pop_bytes);
        load_real_cs(c, cs);
        c->r[R_SP] = s.sp;
        c->rip = ip;
        return;
    }
    d = check_return_cs(c, cs);
    outer = SEL_RPL(cs) > c->cpl;
    stk_skip(&s, pop_bytes);
    sp = s.sp;
    if (outer) {
        sp = stk_pop(c, &s, opsize);
        ss = (uint16_t)stk_pop(c, &s, opsize);
        ssd = check_return_ss(c, ss, SEL_RPL(cs), d);
        sp += pop_bytes;
    }
    ip = target_ip(c, d, ip);
    commit_return(c, cs, d, outer, ss, ssd, sp, ip);
    emu_mode_changed(c);
}

void emu_iret(struct emu_cpu *c, int opsize)
{
    struct stk s;
    uint64_t fl = emu_get_rflags(c), nf, ip, d, ssd = 0, sp, ch;
    uint16_t cs, ss = 0;
    bool pop_ss;
    unsigned cpl = c->cpl;

    if (fl & FL_VM) {
        emu_log_once(&log_v86, "virtual-8086 mode is not implemented");
        emu_raise(c, EXC_GP, 0);
    }
    if ((c->cr0 & CR0_PE) && (fl & FL_NT)) {
        if (!c->long_mode)
            emu_log_once(&log_task_switch, "task switches (IRET with NT) are not implemented");
        emu_raise(c, EXC_GP, 0);
    }
    stk_cur(c, &s);
    ip = stk_pop(c, &s, opsize);
    cs = (uint16_t)stk_pop(c, &s, opsize);
    nf = stk_pop(c, &s, opsize);
    if (opsize == 2)
        nf = (fl & ~0xffffULL) | (nf & 0xffff);

    if (!(c->cr0 & CR0_PE)) {
        ch = opsize == 2 ? 0xffffULL : 0x257fd5ULL; /* VM, VIF, VIP, RF kept */
        load_real_cs(c, cs);
        c->r[R_SP] = s.sp;
        c->rip = ip;
        emu_set_rflags(c, ((fl & ~ch) | (nf & ch)) | 2);
        if (!(fl & FL_IF) && (nf & FL_IF) && c->stop == EMU_STOP_NONE)
            c->stop = EMU_STOP_IRQ;
        return;
    }
    if (!c->long_mode && (nf & FL_VM) && cpl == 0 && opsize == 4) {
        emu_log_once(&log_v86, "virtual-8086 mode is not implemented");
        emu_raise(c, EXC_GP, 0);
    }
    d = check_return_cs(c, cs);
    pop_ss = c->code64 || SEL_RPL(cs) > cpl;
    sp = s.sp;
    if (pop_ss) {
        sp = stk_pop(c, &s, opsize);
        ss = (uint16_t)stk_pop(c, &s, opsize);
        ssd = check_return_ss(c, ss, SEL_RPL(cs), d);
    }
    ip = target_ip(c, d, ip);
    if (opsize == 2)
        ip &= 0xffff;

    /* Which flags IRET may change, by the (old) CPL and IOPL. */
    ch = FL_CF | FL_PF | FL_AF | FL_ZF | FL_SF | FL_TF | FL_DF | FL_OF | FL_NT;
    if (opsize != 2)
        ch |= FL_RF | FL_AC | FL_ID;
    if (cpl <= ((fl & FL_IOPL) >> 12))
        ch |= FL_IF;
    if (cpl == 0) {
        ch |= FL_IOPL;
        if (opsize != 2)
            ch |= FL_VIF | FL_VIP;
    }
    nf = ((fl & ~ch) | (nf & ch)) | 2;

    commit_return(c, cs, d, pop_ss, ss, ssd, sp, ip);
    emu_set_rflags(c, nf);
    emu_mode_changed(c);
    if (!(fl & FL_IF) && (nf & FL_IF) && c->stop == EMU_STOP_NONE)
        c->stop = EMU_STOP_IRQ;
}

/* ---- SYSCALL/SYSRET (Intel: 64-bit mode only) ---- */

void emu_syscall(struct emu_cpu *c)
{
    uint64_t fl;
    uint16_t sel = (uint16_t)((c->star >> 32) & 0xfffc);

    if (!(c->efer & EFER_SCE) || !c->code64)
        emu_raise(c, EXC_UD, 0);
    fl = emu_get_rflags(c);
    c->r[R_CX] = c->rip;
    c->r[R_R11] = fl;
    emu_seg_flat(&c->seg[S_CS], sel, true, 0, true);
    emu_seg_flat(&c->seg[S_SS], (uint16_t)(sel + 8), false, 0, false);
    c->cpl = 0;
    c->rip = c->lstar;
    emu_set_rflags(c, (fl & ~c->sfmask & ~(uint64_t)FL_RF) | 2);
    emu_mode_changed(c);
}

void emu_sysret(struct emu_cpu *c, int opsize)
{
    uint64_t fl = emu_get_rflags(c), nf;
    uint16_t base = (uint16_t)(c->star >> 48);

    if (!(c->efer & EFER_SCE) || !c->code64)
        emu_raise(c, EXC_UD, 0);
    if (c->cpl != 0)
        emu_raise(c, EXC_GP, 0);
    if (opsize == 8) {
        if (!emu_canonical(c->r[R_CX]))
            emu_raise(c, EXC_GP, 0);
        emu_seg_flat(&c->seg[S_CS], (uint16_t)((base + 16) | 3), true, 3, true);
        c->rip = c->r[R_CX];
    } else {
        emu_seg_flat(&c->seg[S_CS], (uint16_t)(base | 3), true, 3, false);
        c->rip = c->r[R_CX] & 0xffffffffULL;
    }
    emu_seg_flat(&c->seg[S_SS], (uint16_t)((base + 8) | 3), false, 3, false);
    c->cpl = 3;
    nf = (c->r[R_R11] & 0x3c7fd7ULL) | 2;
    emu_set_rflags(c, nf);
    emu_mode_changed(c);
    if (!(fl & FL_IF) && (nf & FL_IF) && c->stop == EMU_STOP_NONE)
        c->stop = EMU_STOP_IRQ;
}
