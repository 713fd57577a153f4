/* mmu.c: linear -> physical translation (all x86 paging modes, A/D bits, NX, U/S, R/W, WP,
 * SMEP), the software TLB, guest memory access (RAM by host pointer, the rest to the APICs, the
 * ioeventfds or the MMIO hook) and exact dirty tracking by TLB generation (docs/emulator.md).
 */
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "accel/emu/apic.h"
#include "accel/emu/cpu.h"
#include "accel/emu/sys.h"
#include "core/log.h"
#include "core/mem.h"

#define PTE_P    0x1ULL
#define PTE_RW   0x2ULL
#define PTE_US   0x4ULL
#define PTE_A    0x20ULL
#define PTE_D    0x40ULL
#define PTE_PS   0x80ULL
#define PTE_NX   (1ULL << 63)
#define PTE_ADDR 0x000ffffffffff000ULL
/* MAXPHYADDR is 40 (CPUID 0x80000008): address bits 51:40 of an entry are reserved. */
#define RSVD_PHYS          0x000fff0000000000ULL
#define APIC_ADDR          0x000000fffffff000ULL
#define APIC_GLOBAL_ENABLE 0x800ULL

/* One paging-structure entry the walk used, for the A/D update after the checks. */
struct pt_ref {
    uint64_t gpa;
    uint8_t *host; /* NULL: the table is not in RAM (no A/D update) */
    uint64_t val;
    bool wide; /* 8-byte entry */
    bool no_a; /* a PAE PDPTE: has no accessed bit (bit 5 is reserved there) */
};

struct walk {
    uint64_t gpa;   /* the 4 KiB guest-physical page of the address */
    unsigned shift; /* page size of the leaf: 12, 21, 22 or 30 */
    bool user, writable, nx, dirty;
};

void emu_log_once(bool *done, const char *what)
{
    if (*done)
        return;
    *done = true;
    log_warn("emu: %s (logged once)", what);
}

/* ---- dirty tracking ---- */

static void mark_gpa(struct emu_cpu *c, uint64_t gpa)
{
    uint64_t off, page;

    if (!atomic_load_explicit(&c->vm->logging, memory_order_relaxed))
        return;
    off = gmem_gpa_to_offset(c->mem, gpa);
    if (off == UINT64_MAX)
        return;
    page = off >> PAGE_SHIFT;
    __atomic_fetch_or(&c->mem->vmm_dirty[page / BITS_PER_LONG], 1UL << (page % BITS_PER_LONG),
                      __ATOMIC_RELAXED);
}

/* A write through e is about to happen: mark its page once per dirty generation. */
static void note_write(struct emu_cpu *c, struct emu_tlb_entry *e)
{
    uint64_t gen = atomic_load_explicit(&c->vm->dirty_gen, memory_order_relaxed);

    if (e->dirty_gen == gen)
        return;
    mark_gpa(c, e->gpa);
    e->dirty_gen = gen;
}

/* ---- physical access ---- */

static bool is_apic_page(const struct emu_cpu *c, uint64_t gpa)
{
    return c->lapic && (c->apic_base & APIC_GLOBAL_ENABLE) &&
           (gpa & ~0xfffULL) == (c->apic_base & APIC_ADDR);
}

/* Host address of [gpa, gpa + len) when it is RAM (and not shadowed by the APIC page). */
static uint8_t *ram_ptr(const struct emu_cpu *c, uint64_t gpa, uint64_t len)
{
    if (is_apic_page(c, gpa))
        return NULL;
    return gmem_ptr(c->mem, gpa, len);
}

static void io_one(struct emu_cpu *c, uint64_t gpa, void *data, uint32_t len, bool is_write)
{
    struct emu_vm *vm = c->vm;

    if (is_apic_page(c, gpa)) {
        emu_lapic_mmio(c->lapic, (uint32_t)(gpa & 0xfff), data, len, is_write);
        return;
    }
    if (vm && vm->ioapic && gpa >= EMU_IOAPIC_BASE && gpa < EMU_IOAPIC_BASE + 0x20) {
        emu_ioapic_mmio(vm->ioapic, (uint32_t)(gpa - EMU_IOAPIC_BASE), data, len, is_write);
        return;
    }
    if (is_write && vm) {
        for (unsigned i = 0; i < vm->nioeventfds; i++) {
            const struct emu_ioeventfd *f = &vm->ioeventfds[i];
            uint64_t v = 0, one = 1;

            if (f->addr != gpa || f->len != len)
                continue;
            memcpy(&v, data, len);
            if (v != f->datamatch)
                continue;
            if (write(f->fd, &one, sizeof(one)) < 0)
                log_debug("emu: ioeventfd write failed");
            return;
        }
    }
    if (c->io.mmio)
        c->io.mmio(c->io.opaque, gpa, data, len, is_write);
    else if (!is_write)
        memset(data, 0xff, len);
}

/* Non-RAM access: natural sizes go as one access, anything else byte by byte. */
static void phys_io(struct emu_cpu *c, uint64_t gpa, uint8_t *data, int len, bool is_write)
{
    if (len == 1 || len == 2 || len == 4 || len == 8) {
        io_one(c, gpa, data, (uint32_t)len, is_write);
        return;
    }
    for (int i = 0; i < len; i++)
        io_one(c, gpa + (uint64_t)i, data + i, 1, is_write);
}

uint64_t emu_phys_read(struct emu_cpu *c, uint64_t gpa, int len)
{
    uint8_t *p = ram_ptr(c, gpa, (uint64_t)len);
    uint8_t buf[8] = {0};
    uint64_t v = 0;

    if (p)
        return emu_host_ld(p, len);
    phys_io(c, gpa, buf, len, false);
    memcpy(&v, buf, (size_t)len);
    return v;
}

void emu_phys_write(struct emu_cpu *c, uint64_t gpa, uint64_t v, int len)
{
    uint8_t *p = ram_ptr(c, gpa, (uint64_t)len);

    if (p) {
        mark_gpa(c, gpa);
        if (((gpa + (uint64_t)len - 1) ^ gpa) >> PAGE_SHIFT)
            mark_gpa(c, gpa + (uint64_t)len - 1);
        emu_host_st(p, v, len);
        return;
    }
    phys_io(c, gpa, (uint8_t *)&v, len, true);
}

/* ---- page walk ---- */

static uint64_t pt_load(struct emu_cpu *c, struct pt_ref *r)
{
    int len = r->wide ? 8 : 4;

    r->host = ram_ptr(c, r->gpa, (uint64_t)len);
    if (!r->host)
        r->val = emu_phys_read(c, r->gpa, len);
    else if (r->wide)
        r->val = __atomic_load_n((uint64_t *)(void *)r->host, __ATOMIC_RELAXED);
    else
        r->val = __atomic_load_n((uint32_t *)(void *)r->host, __ATOMIC_RELAXED);
    return r->val;
}

/* Set A (and D) in an entry as hardware does: a locked OR, and the table page is dirty. */
static void pt_set(struct emu_cpu *c, const struct pt_ref *r, uint64_t bits)
{
    if ((r->val & bits) == bits || !r->host || r->no_a)
        return;
    mark_gpa(c, r->gpa);
    if (r->wide)
        __atomic_fetch_or((uint64_t *)(void *)r->host, bits, __ATOMIC_RELAXED);
    else
        __atomic_fetch_or((uint32_t *)(void *)r->host, (uint32_t)bits, __ATOMIC_RELAXED);
}

/* Translate la for acc at privilege user. On success fills w, sets the A bits of every entry
 * used and D of the leaf for a write; on a fault returns false with the #PF error code. */
static bool walk(struct emu_cpu *c, uint64_t la, int acc, bool user, struct walk *w, uint32_t *err)
{
    bool nxe = c->efer & EFER_NXE, pae = c->cr4 & CR4_PAE, smep = c->cr4 & CR4_SMEP;
    uint64_t rsvd_nx = nxe ? 0 : PTE_NX, table, e, rsv;
    struct pt_ref ref[4];
    int n = 0;
    unsigned shift;
    bool us = true, rw = true, nx = false, leaf = false;
    uint32_t code = (acc == ACC_WRITE ? PF_W : 0) | (user ? PF_U : 0);

    if (acc == ACC_EXEC && (smep || (pae && nxe)))
        code |= PF_I;
    if (!c->paging) {
        *w = (struct walk){
            .gpa = la & ~0xfffULL, .shift = 12, .user = true, .writable = true, .dirty = true};
        return true;
    }

    if (!pae) {
        /* 32-bit paging: PD and PT of 1024 4-byte entries; 4 MiB pages with CR4.PSE. */
        ref[n] = (struct pt_ref){.gpa = (c->cr3 & 0xfffff000u) + ((la >> 22) & 0x3ff) * 4};
        e = pt_load(c, &ref[n++]);
        if (!(e & PTE_P))
            goto not_present;
        us = e & PTE_US;
        rw = e & PTE_RW;
        if ((e & PTE_PS) && (c->cr4 & CR4_PSE)) {
            if (e & 0x200000u) /* bit 21; bits 20:13 are PA[39:32] (PSE-36) */
                goto reserved;
            shift = 22;
            w->gpa = (e & 0xffc00000u) | ((e & 0x1fe000u) << 19) | (la & 0x3ff000u);
        } else {
            ref[n] = (struct pt_ref){.gpa = (e & 0xfffff000u) + ((la >> 12) & 0x3ff) * 4};
            e = pt_load(c, &ref[n++]);
            if (!(e & PTE_P))
                goto not_present;
            us = us && (e & PTE_US);
            rw = rw && (e & PTE_RW);
            shift = 12;
            w->gpa = e & 0xfffff000u;
        }
        goto check;
    }

    if (c->long_mode) {
        table = c->cr3 & PTE_ADDR & ~RSVD_PHYS;
        shift = 39;
    } else {
        /* PAE: the PDPTE (read at each walk here, not cached at the CR3 load). */
        ref[n] = (struct pt_ref){
            .gpa = (c->cr3 & 0xffffffe0u) + ((la >> 30) & 3) * 8, .wide = true, .no_a = true};
        e = pt_load(c, &ref[n]);
        if (!(e & PTE_P))
            goto not_present;
        if (e & (0x1e6ULL | PTE_NX | RSVD_PHYS)) /* bits 2:1, 8:5, 63:40 */
            goto reserved;
        n++;
        table = e & PTE_ADDR;
        shift = 21;
    }
    for (;;) {
        ref[n] = (struct pt_ref){.gpa = table + ((la >> shift) & 0x1ff) * 8, .wide = true};
        e = pt_load(c, &ref[n++]);
        if (!(e & PTE_P))
            goto not_present;
        rsv = RSVD_PHYS | rsvd_nx;
        if (shift == 39)
            rsv |= PTE_PS;
        leaf = shift == 12 || ((shift == 30 || shift == 21) && (e & PTE_PS));
        if (leaf && shift == 30)
            rsv |= 0x3fffe000ULL; /* bits 29:13 of a 1 GiB page */
        else if (leaf && shift == 21)
            rsv |= 0x1fe000ULL; /* bits 20:13 of a 2 MiB page */
        if (e & rsv)
            goto reserved;
        us = us && (e & PTE_US);
        rw = rw && (e & PTE_RW);
        nx = nx || (nxe && (e & PTE_NX));
        if (leaf)
            break;
        table = e & PTE_ADDR;
        shift -= 9;
    }
    w->gpa = (e & PTE_ADDR & ~((1ULL << shift) - 1)) | (la & ((1ULL << shift) - 1) & ~0xfffULL);

check:
    if (user) {
        if (!us || (acc == ACC_WRITE && !rw) || (acc == ACC_EXEC && nx))
            goto protection;
    } else {
        if (acc == ACC_WRITE && !rw && (c->cr0 & CR0_WP))
            goto protection;
        if (acc == ACC_EXEC && (nx || (smep && us)))
            goto protection;
    }
    for (int i = 0; i < n - 1; i++)
        pt_set(c, &ref[i], PTE_A);
    pt_set(c, &ref[n - 1], acc == ACC_WRITE ? PTE_A | PTE_D : PTE_A);
    w->shift = shift;
    w->user = us;
    w->writable = rw;
    w->nx = nx;
    w->dirty = acc == ACC_WRITE || (ref[n - 1].val & PTE_D);
    return true;

not_present:
    *err = code;
    return false;
reserved:
    *err = code | PF_P | PF_RSVD;
    return false;
protection:
    *err = code | PF_P;
    return false;
}

/* ---- the TLB ---- */

void emu_tlb_flush(struct emu_cpu *c)
{
    memset(c->tlb, 0, sizeof(c->tlb));
}

void emu_tlb_flush_page(struct emu_cpu *c, uint64_t la)
{
    struct emu_tlb_entry *e = emu_tlb_slot(c, la);

    if (e->tag == ((la & ~0xfffULL) | 1))
        e->tag = 0;
    /* A large page is cached as many 4 KiB entries: drop every one it produced. */
    for (unsigned i = 0; i < EMU_TLB_SIZE; i++) {
        e = &c->tlb[i];
        if (e->tag && e->shift > 12 && ((e->tag ^ la) >> e->shift) == 0)
            e->tag = 0;
    }
}

static struct emu_tlb_entry *tlb_fill(struct emu_cpu *c, uint64_t la, const struct walk *w)
{
    struct emu_tlb_entry *e = emu_tlb_slot(c, la);
    bool wp = c->cr0 & CR0_WP, smep = c->cr4 & CR4_SMEP;
    unsigned perm = EMU_TLB_R;

    if (w->dirty && (w->writable || !wp))
        perm |= EMU_TLB_W;
    if (!w->nx && !(smep && w->user))
        perm |= EMU_TLB_X;
    if (w->user) {
        perm |= EMU_TLB_UR;
        if (w->writable && w->dirty)
            perm |= EMU_TLB_UW;
        if (!w->nx)
            perm |= EMU_TLB_UX;
    }
    e->host = ram_ptr(c, w->gpa, PAGE_SIZE);
    if (e->host)
        perm |= EMU_TLB_RAM;
    e->tag = (la & ~0xfffULL) | 1;
    e->gpa = w->gpa;
    e->dirty_gen = UINT64_MAX; /* never current: the first write through it marks */
    e->perm = perm;
    e->shift = (uint8_t)w->shift;
    return e;
}

static struct emu_tlb_entry *try_translate(struct emu_cpu *c, uint64_t la, int acc, bool user,
                                           uint32_t *err)
{
    struct emu_tlb_entry *e = emu_tlb_slot(c, la);
    struct walk w;

    if (e->tag == ((la & ~0xfffULL) | 1) && (e->perm & (1u << (acc + 3 * user))))
        return e;
    if (!walk(c, la, acc, user, &w, err))
        return NULL;
    return tlb_fill(c, la, &w);
}

static struct emu_tlb_entry *translate(struct emu_cpu *c, uint64_t la, int acc, bool user)
{
    uint32_t err = 0;
    struct emu_tlb_entry *e = try_translate(c, la, acc, user, &err);

    if (!e) {
        c->cr2 = la;
        emu_raise(c, EXC_PF, err);
    }
    return e;
}

/* ---- linear access ---- */

/* The linear address after la + n, wrapped as the current mode wraps. */
static uint64_t la_next(struct emu_cpu *c, uint64_t la, int n)
{
    uint64_t next = la + (uint64_t)n;

    if (!c->long_mode)
        return next & 0xffffffffULL;
    if (!emu_canonical(next))
        emu_raise(c, EXC_GP, 0);
    return next;
}

static void chunk(struct emu_cpu *c, struct emu_tlb_entry *e, uint64_t la, uint8_t *b, int n,
                  bool is_write)
{
    unsigned off = la & 0xfff;

    if (!e->host) {
        phys_io(c, e->gpa | off, b, n, is_write);
    } else if (is_write) {
        note_write(c, e);
        memcpy(e->host + off, b, (size_t)n);
    } else {
        memcpy(b, e->host + off, (size_t)n);
    }
}

/* Both pages of a split access are translated (and permission-checked) before any byte moves. */
static void lin_access(struct emu_cpu *c, uint64_t la, uint8_t *b, int len, int acc, bool user)
{
    int n1 = len;
    uint64_t la2 = 0;
    struct emu_tlb_entry *e1, *e2 = NULL;

    if ((la & 0xfff) + (uint64_t)len > PAGE_SIZE) {
        n1 = (int)(PAGE_SIZE - (la & 0xfff));
        la2 = la_next(c, la, n1);
    }
    e1 = translate(c, la, acc, user);
    if (n1 < len) {
        e2 = translate(c, la2, acc, user);
        /* Filling e2 never evicts e1: consecutive pages use different slots. */
    }
    chunk(c, e1, la, b, n1, acc == ACC_WRITE);
    if (e2)
        chunk(c, e2, la2, b + n1, len - n1, acc == ACC_WRITE);
}

uint64_t emu_read_slow(struct emu_cpu *c, uint64_t la, int len, bool user)
{
    uint8_t buf[8];
    uint64_t v = 0;

    lin_access(c, la, buf, len, ACC_READ, user);
    memcpy(&v, buf, (size_t)len);
    return v;
}

void emu_write_slow(struct emu_cpu *c, uint64_t la, uint64_t v, int len, bool user)
{
    lin_access(c, la, (uint8_t *)&v, len, ACC_WRITE, user);
}

uint64_t emu_read_priv(struct emu_cpu *c, uint64_t la, int len, bool user)
{
    const struct emu_tlb_entry *e = emu_tlb_slot(c, la);
    unsigned need = (user ? EMU_TLB_UR : EMU_TLB_R) | EMU_TLB_RAM;

    if (e->tag == ((la & ~0xfffULL) | 1) && (e->perm & need) == need &&
        (la & 0xfff) <= PAGE_SIZE - (unsigned)len)
        return emu_host_ld(e->host + (la & 0xfff), len);
    return emu_read_slow(c, la, len, user);
}

void emu_write_priv(struct emu_cpu *c, uint64_t la, uint64_t v, int len, bool user)
{
    emu_write_slow(c, la, v, len, user);
}

uint64_t(emu_read)(struct emu_cpu *c, uint64_t la, int len)
{
    return emu_read_inline(c, la, len);
}

void(emu_write)(struct emu_cpu *c, uint64_t la, uint64_t v, int len)
{
    emu_write_inline(c, la, v, len);
}

int(emu_fetch)(struct emu_cpu *c, uint64_t la, uint8_t *buf, int len)
{
    return emu_fetch_inline(c, la, buf, len);
}

uint64_t emu_read_sys(struct emu_cpu *c, uint64_t la, int len)
{
    return emu_read_priv(c, la, len, false);
}

void emu_write_sys(struct emu_cpu *c, uint64_t la, uint64_t v, int len)
{
    emu_write_slow(c, la, v, len, false);
}

void emu_read_bytes(struct emu_cpu *c, uint64_t la, void *buf, int len)
{
    if (len > 0)
        lin_access(c, la, buf, len, ACC_READ, c->cpl == 3);
}

void emu_write_bytes(struct emu_cpu *c, uint64_t la, const void *buf, int len)
{
    uint8_t tmp[16];

    if (len <= 0)
        return;
    if (len > (int)sizeof(tmp)) {
        /* Longer than the contract's 16 bytes: split, each part checked on its own. */
        for (int i = 0; i < len; i += 16) {
            int n = len - i < 16 ? len - i : 16;
            emu_write_bytes(c, la_next(c, la, i), (const uint8_t *)buf + i, n);
        }
        return;
    }
    memcpy(tmp, buf, (size_t)len);
    lin_access(c, la, tmp, len, ACC_WRITE, c->cpl == 3);
}

int emu_fetch_slow(struct emu_cpu *c, uint64_t la, uint8_t *buf, int len)
{
    bool user = c->cpl == 3;
    int n1 = len;
    uint64_t la2;
    uint32_t err;
    struct emu_tlb_entry *e;

    if (len <= 0)
        return 0;
    if ((la & 0xfff) + (uint64_t)len > PAGE_SIZE)
        n1 = (int)(PAGE_SIZE - (la & 0xfff));
    e = translate(c, la, ACC_EXEC, user);
    chunk(c, e, la, buf, n1, false);
    if (n1 == len)
        return len;
    la2 = la + (uint64_t)n1;
    if (!c->long_mode)
        la2 &= 0xffffffffULL;
    else if (!emu_canonical(la2))
        return n1;
    /* The bytes on the next page are needed only if the decoder says so: no fault here. */
    e = try_translate(c, la2, ACC_EXEC, user, &err);
    if (!e)
        return n1;
    chunk(c, e, la2, buf + n1, len - n1, false);
    return len;
}

void *emu_atomic_ptr(struct emu_cpu *c, uint64_t la, int len)
{
    struct emu_tlb_entry *e;

    if ((la & 0xfff) + (uint64_t)len > PAGE_SIZE)
        return NULL;
    e = translate(c, la, ACC_WRITE, c->cpl == 3);
    if (!e->host)
        return NULL;
    note_write(c, e);
    return e->host + (la & 0xfff);
}

uint64_t emu_linear(struct emu_cpu *c, int sreg, uint64_t off, int addr_size)
{
    uint64_t la;

    if (addr_size == 2)
        off &= 0xffff;
    else if (addr_size == 4)
        off &= 0xffffffffULL;
    if (c->code64) {
        la = off;
        if (sreg == S_FS || sreg == S_GS)
            la += c->seg[sreg].base;
        if (!emu_canonical(la))
            emu_raise(c, sreg == S_SS ? EXC_SS : EXC_GP, 0);
        return la;
    }
    /* Segment limits and rights are not checked (docs/emulator.md). */
    if (sreg >= 0 && sreg < 6)
        off += c->seg[sreg].base;
    return off & 0xffffffffULL;
}
