/* seg.c: segment register loads and their descriptor checks, GDT/LDT/TSS access, LGDT/LIDT/LTR/
 * LLDT, the I/O permission check, and the mode cache (emu_mode_changed).
 */
#include <string.h>

#include "accel/emu/cpu.h"
#include "accel/emu/sys.h"
#include "core/log.h"

void emu_seg_from_desc(struct kvm_segment *s, uint16_t sel, uint64_t desc, uint64_t desc_hi)
{
    uint32_t limit = (uint32_t)(desc & 0xffff) | (uint32_t)((desc >> 32) & 0xf0000);

    memset(s, 0, sizeof(*s));
    s->selector = sel;
    s->base = ((desc >> 16) & 0xffffff) | (((desc >> 56) & 0xff) << 24);
    if (!DESC_S(desc))
        s->base |= (desc_hi & 0xffffffffULL) << 32;
    s->g = (desc >> 55) & 1;
    s->limit = s->g ? (limit << 12) | 0xfff : limit;
    s->type = (uint8_t)DESC_TYPE(desc);
    s->s = (uint8_t)DESC_S(desc);
    s->dpl = (uint8_t)DESC_DPL(desc);
    s->present = (uint8_t)DESC_P(desc);
    s->avl = (desc >> 52) & 1;
    s->l = (uint8_t)DESC_L(desc);
    s->db = (uint8_t)DESC_DB(desc);
    s->unusable = !s->present;
}

void emu_seg_null(struct kvm_segment *s, uint16_t sel)
{
    memset(s, 0, sizeof(*s));
    s->selector = sel;
    s->dpl = (uint8_t)SEL_RPL(sel);
    s->unusable = 1;
}

void emu_seg_flat(struct kvm_segment *s, uint16_t sel, bool code, unsigned dpl, bool l64)
{
    memset(s, 0, sizeof(*s));
    s->selector = sel;
    s->base = 0;
    s->limit = 0xffffffffu;
    s->type = code ? 0xb : 0x3; /* execute/read or read/write, accessed */
    s->s = 1;
    s->dpl = (uint8_t)dpl;
    s->present = 1;
    s->g = 1;
    s->l = code && l64;
    s->db = !(code && l64);
}

/* Linear address of the descriptor of sel (the caller checked the limit). */
static uint64_t desc_la(const struct emu_cpu *c, uint16_t sel)
{
    return ((sel & 4) ? c->ldt.base : c->gdt.base) + (sel & ~7u);
}

uint64_t emu_read_desc_ext(struct emu_cpu *c, uint16_t sel, int fault_vec, uint32_t ext)
{
    uint64_t limit;

    if (sel & 4) {
        if (c->ldt.unusable || SEL_NULL(c->ldt.selector))
            emu_raise(c, fault_vec, SEL_ERR(sel) | ext);
        limit = c->ldt.limit;
    } else {
        limit = c->gdt.limit;
    }
    if ((uint64_t)(sel & ~7u) + 7 > limit)
        emu_raise(c, fault_vec, SEL_ERR(sel) | ext);
    return emu_read_sys(c, desc_la(c, sel), 8);
}

uint64_t emu_read_descriptor(struct emu_cpu *c, uint16_t sel, int fault_vec)
{
    return emu_read_desc_ext(c, sel, fault_vec, 0);
}

void emu_desc_set_accessed(struct emu_cpu *c, uint16_t sel, uint64_t desc)
{
    if (desc & DESC_ACCESSED)
        return;
    emu_write_sys(c, desc_la(c, sel) + 5, (uint8_t)((desc >> 40) | 1), 1);
}

void emu_load_cs(struct emu_cpu *c, uint16_t sel, uint64_t desc, unsigned cpl)
{
    emu_seg_from_desc(&c->seg[S_CS], (uint16_t)((sel & ~3u) | cpl), desc | DESC_ACCESSED, 0);
    c->cpl = (uint8_t)cpl;
}

uint64_t emu_check_ss(struct emu_cpu *c, uint16_t sel, unsigned cpl, int gp_vec, uint32_t ext)
{
    uint64_t d;

    if (SEL_NULL(sel) || SEL_RPL(sel) != cpl)
        emu_raise(c, gp_vec, SEL_ERR(sel) | ext);
    d = emu_read_desc_ext(c, sel, gp_vec, ext);
    if (!DESC_WDATA(d) || DESC_DPL(d) != cpl)
        emu_raise(c, gp_vec, SEL_ERR(sel) | ext);
    if (!DESC_P(d))
        emu_raise(c, EXC_SS, SEL_ERR(sel) | ext);
    return d;
}

void emu_seg_check_outer(struct emu_cpu *c)
{
    static const int regs[] = {S_ES, S_DS, S_FS, S_GS};

    for (unsigned i = 0; i < 4; i++) {
        struct kvm_segment *s = &c->seg[regs[i]];
        bool data_or_nc = !s->s || !(s->type & 8) || !(s->type & 4);

        if (!s->unusable && data_or_nc && s->dpl < c->cpl)
            emu_seg_null(s, 0);
    }
}

void emu_load_seg(struct emu_cpu *c, int sreg, uint16_t sel)
{
    struct kvm_segment *s = &c->seg[sreg];
    uint64_t d;

    if (!(c->cr0 & CR0_PE) || (c->rflags & FL_VM)) {
        /* Real (and virtual-8086) mode: only the selector and base; limits and attributes keep
         * what protected mode left ("unreal mode"). */
        s->selector = sel;
        s->base = (uint64_t)sel << 4;
        s->unusable = 0;
        s->present = 1;
        return;
    }
    if (SEL_NULL(sel)) {
        if (sreg == S_SS && !(c->code64 && c->cpl != 3 && SEL_RPL(sel) == c->cpl))
            emu_raise(c, EXC_GP, 0);
        emu_seg_null(s, sel);
        if (sreg == S_SS)
            s->dpl = c->cpl;
        return;
    }
    if (sreg == S_SS) {
        d = emu_check_ss(c, sel, c->cpl, EXC_GP, 0);
    } else {
        d = emu_read_descriptor(c, sel, EXC_GP);
        if (!DESC_S(d) || !DESC_READ(d))
            emu_raise(c, EXC_GP, SEL_ERR(sel));
        if (!DESC_CONF(d) && (SEL_RPL(sel) > DESC_DPL(d) || c->cpl > DESC_DPL(d)))
            emu_raise(c, EXC_GP, SEL_ERR(sel));
        if (!DESC_P(d))
            emu_raise(c, EXC_NP, SEL_ERR(sel));
    }
    emu_desc_set_accessed(c, sel, d);
    emu_seg_from_desc(s, sel, d | DESC_ACCESSED, 0);
}

void emu_lgdt_lidt(struct emu_cpu *c, bool idt, uint64_t la, int opsize)
{
    struct kvm_dtable *t = idt ? &c->idt : &c->gdt;
    uint16_t limit;
    uint64_t base;

    if ((c->cr0 & CR0_PE) && c->cpl != 0)
        emu_raise(c, EXC_GP, 0);
    limit = (uint16_t)emu_read(c, la, 2);
    if (c->code64) {
        base = emu_read(c, emu_la_add(c, la, 2), 8);
        if (!emu_canonical(base))
            emu_raise(c, EXC_GP, 0);
    } else {
        base = emu_read(c, emu_la_add(c, la, 2), 4);
        if (opsize == 2)
            base &= 0xffffff;
    }
    t->limit = limit;
    t->base = base;
}

/* A system descriptor's 16 bytes in long mode, its 8 otherwise. */
static uint64_t sys_desc(struct emu_cpu *c, uint16_t sel, uint64_t *hi)
{
    uint64_t d = emu_read_descriptor(c, sel, EXC_GP);

    *hi = 0;
    if (c->long_mode) {
        if ((uint64_t)(sel & ~7u) + 15 > c->gdt.limit)
            emu_raise(c, EXC_GP, SEL_ERR(sel));
        *hi = emu_read_sys(c, c->gdt.base + (sel & ~7u) + 8, 8);
        if ((*hi >> 40) & 0x1f) /* the type field of the upper half must be 0 */
            emu_raise(c, EXC_GP, SEL_ERR(sel));
    }
    return d;
}

void emu_ltr(struct emu_cpu *c, uint16_t sel)
{
    uint64_t d, hi;
    unsigned type;

    if (!(c->cr0 & CR0_PE) || (c->rflags & FL_VM))
        emu_raise(c, EXC_UD, 0);
    if (c->cpl != 0)
        emu_raise(c, EXC_GP, 0);
    if (SEL_NULL(sel))
        emu_raise(c, EXC_GP, 0);
    if (sel & 4)
        emu_raise(c, EXC_GP, SEL_ERR(sel));
    d = sys_desc(c, sel, &hi);
    type = DESC_TYPE(d);
    if (DESC_S(d) || (type != 9 && (type != 1 || c->long_mode)))
        emu_raise(c, EXC_GP, SEL_ERR(sel));
    if (!DESC_P(d))
        emu_raise(c, EXC_NP, SEL_ERR(sel));
    if (c->long_mode && !emu_canonical(((d >> 16) & 0xffffff) | (((d >> 56) & 0xff) << 24) |
                                       ((hi & 0xffffffffULL) << 32)))
        emu_raise(c, EXC_GP, SEL_ERR(sel));
    d |= 2ULL << 40; /* busy */
    emu_write_sys(c, c->gdt.base + (sel & ~7u) + 5, (uint8_t)(d >> 40), 1);
    emu_seg_from_desc(&c->tr, sel, d, hi);
}

void emu_lldt(struct emu_cpu *c, uint16_t sel)
{
    uint64_t d, hi;

    if (!(c->cr0 & CR0_PE) || (c->rflags & FL_VM))
        emu_raise(c, EXC_UD, 0);
    if (c->cpl != 0)
        emu_raise(c, EXC_GP, 0);
    if (SEL_NULL(sel)) {
        emu_seg_null(&c->ldt, sel);
        return;
    }
    if (sel & 4)
        emu_raise(c, EXC_GP, SEL_ERR(sel));
    d = sys_desc(c, sel, &hi);
    if (DESC_S(d) || DESC_TYPE(d) != 2)
        emu_raise(c, EXC_GP, SEL_ERR(sel));
    if (!DESC_P(d))
        emu_raise(c, EXC_NP, SEL_ERR(sel));
    emu_seg_from_desc(&c->ldt, sel, d, hi);
}

void emu_check_io(struct emu_cpu *c, uint16_t port, int len)
{
    uint64_t fl;
    uint32_t base, off;
    uint16_t bits;

    if (!(c->cr0 & CR0_PE))
        return;
    fl = emu_get_rflags(c);
    if (!(fl & FL_VM) && c->cpl <= ((fl & FL_IOPL) >> 12))
        return;
    /* The I/O permission bitmap of a 32/64-bit TSS: every bit of the accessed ports clear. */
    if (c->tr.unusable || !c->tr.present || (c->tr.type & 7) != 3 || c->tr.limit < 0x67)
        emu_raise(c, EXC_GP, 0);
    base = (uint32_t)emu_read_sys(c, c->tr.base + 0x66, 2);
    off = base + port / 8;
    if ((uint64_t)off + 1 > c->tr.limit)
        emu_raise(c, EXC_GP, 0);
    bits = (uint16_t)emu_read_sys(c, c->tr.base + off, 2);
    if ((bits >> (port & 7)) & ((1u << len) - 1))
        emu_raise(c, EXC_GP, 0);
}

void emu_mode_changed(struct emu_cpu *c)
{
    uint8_t paging = !!(c->cr0 & CR0_PG), long_mode = !!(c->efer & EFER_LMA);

    if (paging != c->paging || long_mode != c->long_mode)
        emu_tlb_flush(c);
    c->paging = paging;
    c->long_mode = long_mode;
    c->code64 = long_mode && c->seg[S_CS].l;
    c->code32 = !c->code64 && c->seg[S_CS].db;
    if (!(c->cr0 & CR0_PE))
        c->cpl = 0;
    else if (c->rflags & FL_VM)
        c->cpl = 3;
}
