/* test_mmu.c: the emulator's system side (mmu.c, seg.c, excp.c, msr.c, cpuid.c) over real guest
 * RAM: page walks in every paging mode, A/D bits, #PF error codes and CR2, exact dirty marking
 * by generation, MMIO and ioeventfd routing, a ring-3 -> ring-0 interrupt with IRETQ back,
 * #DF escalation and the triple fault. The interpreter's and the APICs' functions are faked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "accel/emu/apic.h"
#include "accel/emu/cpu.h"
#include "accel/emu/sys.h"
#include "core/mem.h"

/* ---- fakes of the interpreter (flags.c), the glue and the APICs ---- */

uint64_t emu_get_rflags(struct emu_cpu *c)
{
    return c->rflags | 2;
}

void emu_set_rflags(struct emu_cpu *c, uint64_t v)
{
    c->rflags = v | 2;
}

uint64_t emu_cpu_time_ns(struct emu_cpu *c)
{
    (void)c;
    return 5000;
}

void emu_lapic_mmio(struct emu_lapic *l, uint32_t off, void *data, uint32_t len, bool is_write)
{
    (void)l, (void)off, (void)data, (void)len, (void)is_write;
}

void emu_lapic_set_base(struct emu_lapic *l, uint64_t apic_base)
{
    (void)l, (void)apic_base;
}

void emu_lapic_set_cr8(struct emu_lapic *l, uint64_t cr8)
{
    (void)l, (void)cr8;
}

uint64_t emu_lapic_get_cr8(struct emu_lapic *l)
{
    (void)l;
    return 0;
}

void emu_lapic_set_tsc_deadline(struct emu_lapic *l, uint64_t tsc)
{
    (void)l, (void)tsc;
}

uint64_t emu_lapic_get_tsc_deadline(struct emu_lapic *l)
{
    (void)l;
    return 0;
}

void emu_ioapic_mmio(struct emu_ioapic *io, uint32_t off, void *data, uint32_t len, bool is_write)
{
    (void)io, (void)off, (void)data, (void)len, (void)is_write;
}

/* ---- fixture ---- */

#define RAM (32ULL << 20)

static struct guest_mem mem;
static struct emu_vm vm;
static struct emu_cpu *c;

static uint64_t mmio_gpa, mmio_val;
static int mmio_calls;

static void fake_mmio(void *opaque, uint64_t gpa, void *data, uint32_t len, bool is_write)
{
    (void)opaque;
    mmio_calls++;
    mmio_gpa = gpa;
    if (is_write) {
        mmio_val = 0;
        memcpy(&mmio_val, data, len);
    } else {
        memset(data, 0xab, len);
    }
}

static int setup(void **state)
{
    (void)state;
    if (gmem_init(&mem, RAM))
        return -1;
    memset(&vm, 0, sizeof(vm));
    vm.mem = &mem;
    vm.ncpus = 1;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -1;
    c->mem = &mem;
    c->vm = &vm;
    c->io.mmio = fake_mmio;
    vm.cpus[0] = c;
    mmio_calls = 0;
    emu_msr_reset(c);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(c);
    gmem_destroy(&mem);
    return 0;
}

static uint64_t *p64(uint64_t gpa)
{
    return gmem_ptr(&mem, gpa, 8);
}

static uint32_t *p32(uint64_t gpa)
{
    return gmem_ptr(&mem, gpa, 4);
}

static bool dirty(uint64_t gpa)
{
    return bitmap_test(mem.vmm_dirty, gmem_gpa_to_offset(&mem, gpa) >> PAGE_SHIFT);
}

static void clear_dirty(void)
{
    memset(mem.vmm_dirty, 0, BITMAP_LONGS(mem.npages) * sizeof(unsigned long));
}

/* Run one access with a landing pad: 0, or -1 with c->fault_vec/fault_err set. */
static int t_read(uint64_t la, int len, uint64_t *v)
{
    if (setjmp(c->fault_jmp) == 0) {
        *v = emu_read(c, la, len);
        return 0;
    }
    return -1;
}

static int t_write(uint64_t la, uint64_t v, int len)
{
    if (setjmp(c->fault_jmp) == 0) {
        emu_write(c, la, v, len);
        return 0;
    }
    return -1;
}

static int t_fetch(uint64_t la, uint8_t *buf, int len)
{
    if (setjmp(c->fault_jmp) == 0) {
        emu_fetch(c, la, buf, len);
        return 0;
    }
    return -1;
}

/* A macro, so that a failure names the line of the check. */
#define expect_pf(r, want_err, want_cr2)                                                           \
    do {                                                                                           \
        assert_int_equal((r), -1);                                                                 \
        assert_int_equal(c->fault_vec, EXC_PF);                                                    \
        assert_int_equal(c->fault_err, (want_err));                                                \
        assert_int_equal(c->cr2, (want_cr2));                                                      \
    } while (0)

/* ---- paging modes ---- */

static void test_no_paging(void **state)
{
    uint64_t v;

    (void)state;
    v = 0x1122334455667788ULL;
    memcpy(p64(0x1234), &v, sizeof(v)); /* unaligned on purpose */
    assert_int_equal(t_read(0x1234, 8, &v), 0);
    assert_int_equal(v, 0x1122334455667788ULL);
    assert_int_equal(t_write(0x2ffe, 0xaabbccdd, 4), 0); /* crosses a page */
    {
        uint32_t w;
        memcpy(&w, p32(0x2ffe), sizeof(w));
        assert_int_equal(w, 0xaabbccdd);
    }
    /* The MMIO hole goes to the hook. */
    assert_int_equal(t_read(0xd0000010, 4, &v), 0);
    assert_int_equal(v, 0xabababab);
    assert_int_equal(mmio_gpa, 0xd0000010);
    assert_int_equal(t_write(0xd0000020, 0x55, 2), 0);
    assert_int_equal(mmio_val, 0x55);
}

static void test_paging32(void **state)
{
    uint64_t v;

    (void)state;
    c->cr0 = CR0_PE | CR0_PG;
    c->cr4 = CR4_PSE;
    c->cr3 = 0x10000;
    emu_mode_changed(c);
    *p32(0x10000 + 1 * 4) = 0x11000 | 7;     /* PDE 1 -> PT, user, writable */
    *p32(0x11000 + 0 * 4) = 0x20000 | 7;     /* la 0x400000 -> 0x20000 */
    *p32(0x11000 + 1 * 4) = 0x21000 | 1;     /* la 0x401000 read-only supervisor */
    *p32(0x10000 + 2 * 4) = 0xc00000 | 0x83; /* 4 MiB page at la 0x800000 */
    *p32(0x10000 + 3 * 4) = 0x600000 | 0x83; /* bit 21 set: reserved */
    *p32(0x20010) = 0xdeadbeef;
    *p32(0xc01234) = 0xfeedf00d;

    assert_int_equal(t_read(0x400010, 4, &v), 0);
    assert_int_equal(v, 0xdeadbeef);
    assert_true(*p32(0x10004) & 0x20);  /* A on the PDE */
    assert_true(*p32(0x11000) & 0x20);  /* A on the PTE */
    assert_false(*p32(0x11000) & 0x40); /* no D for a read */
    assert_int_equal(t_write(0x400010, 1, 4), 0);
    assert_true(*p32(0x11000) & 0x40); /* D after the write */
    assert_int_equal(*p32(0x20010), 1);
    assert_int_equal(t_read(0x801234, 4, &v), 0);
    assert_int_equal(v, 0xfeedf00d);

    /* Read-only page: a supervisor write passes with WP=0, faults with WP=1. */
    assert_int_equal(t_write(0x401000, 2, 1), 0);
    emu_write_cr(c, 0, c->cr0 | CR0_WP);
    expect_pf(t_write(0x401000, 3, 1), PF_P | PF_W, 0x401000);
    /* User access to a supervisor page. */
    c->cpl = 3;
    expect_pf(t_read(0x401008, 1, &v), PF_P | PF_U, 0x401008);
    c->cpl = 0;
    expect_pf(t_read(0xc00000, 4, &v), PF_P | PF_RSVD, 0xc00000);
    expect_pf(t_read(0x1000000, 4, &v), 0, 0x1000000);
    /* Without PSE the PS bit is ignored: PDE 2 is then a page-table pointer. */
    *p32(0xc00000) = 0x22000 | 7;
    *p32(0x22000) = 0x5a5a;
    emu_write_cr(c, 4, 0);
    assert_int_equal(t_read(0x800000, 4, &v), 0);
    assert_int_equal(v, 0x5a5a);
}

static void test_pae(void **state)
{
    uint64_t v;
    uint8_t b[4];

    (void)state;
    c->cr0 = CR0_PE | CR0_PG | CR0_WP;
    c->cr4 = CR4_PAE;
    c->cr3 = 0x30000;
    c->efer = EFER_NXE;
    emu_mode_changed(c);
    *p64(0x30000) = 0x31000 | 1;                        /* PDPTE 0 */
    *p64(0x31000) = 0x32000 | 7;                        /* PDE 0 -> PT */
    *p64(0x32000 + 5 * 8) = 0x40000 | 7 | (1ULL << 63); /* la 0x5000, NX */
    *p64(0x32000 + 6 * 8) = 0x41000 | 7;                /* la 0x6000 */
    *p64(0x31000 + 8) = 0x600000 | 0x83;                /* 2 MiB at la 0x200000 */
    *p64(0x601000) = 42;

    assert_int_equal(t_read(0x5000, 8, &v), 0);
    expect_pf(t_fetch(0x5000, b, 4), PF_P | PF_I, 0x5000);
    assert_int_equal(t_fetch(0x6000, b, 4), 0);
    assert_int_equal(t_read(0x201000, 8, &v), 0);
    assert_int_equal(v, 42);
    /* The NX bit is reserved without EFER.NXE (and the EFER write flushes the TLB). */
    assert_int_equal(emu_wrmsr(c, 0xc0000080, 0), 0);
    expect_pf(t_read(0x5000, 8, &v), PF_P | PF_RSVD, 0x5000);
    assert_int_equal(*p64(0x30000), 0x31000 | 1); /* no A bit in a PAE PDPTE */
    /* Not present PDPTE. */
    expect_pf(t_read(0x40000000, 8, &v), 0, 0x40000000);
}

/* ---- long mode: tables shared by the following tests ---- */

#define PML4  0x1000
#define PDPT  0x2000
#define PD    0x3000
#define PT    0x4000
#define GDT   0x5000
#define IDT   0x6000
#define TSS   0x7000
#define USTK  0x9000
#define KSTK  0x3ff000ULL /* supervisor 2 MiB page at 0x200000 */
#define ISTK  0x380000ULL
#define HNDLR 0x100000ULL

static uint64_t seg_desc(uint32_t base, uint32_t limit, unsigned type, unsigned dpl, unsigned l,
                         unsigned db)
{
    return (limit & 0xffff) | ((uint64_t)(base & 0xffffff) << 16) | ((uint64_t)type << 40) |
           (1ULL << 44) | ((uint64_t)dpl << 45) | (1ULL << 47) |
           ((uint64_t)((limit >> 16) & 0xf) << 48) | ((uint64_t)l << 53) | ((uint64_t)db << 54) |
           (1ULL << 55) | ((uint64_t)(base >> 24) << 56);
}

static void set_gate(int vec, uint64_t off, unsigned dpl, unsigned ist, bool present)
{
    p64(IDT + vec * 16)[0] = (off & 0xffff) | (0x08ULL << 16) | ((uint64_t)ist << 32) |
                             (0xeULL << 40) | ((uint64_t)dpl << 45) | ((uint64_t)present << 47) |
                             (((off >> 16) & 0xffff) << 48);
    p64(IDT + vec * 16 + 8)[0] = off >> 32;
}

static void load(int sreg, uint16_t sel)
{
    emu_seg_from_desc(&c->seg[sreg], sel, *p64(GDT + (sel & ~7u)), 0);
}

/* CPL 3 in 64-bit mode, identity-mapped low 2 MiB (user), kernel stack page supervisor. */
static void long_mode_user(void)
{
    uint64_t tss;

    *p64(PML4) = PDPT | 7;
    *p64(PDPT) = PD | 7;
    *p64(PD) = 0 | 0x87;            /* 0-2 MiB: user, writable */
    *p64(PD + 8) = 0x200000 | 0x83; /* 2-4 MiB: supervisor */
    *p64(PD + 16) = PT | 7;         /* 4-6 MiB: 4 KiB pages */
    *p64(PT) = 0x500000 | 7;        /* la 0x400000 */
    *p64(PDPT + 8) = 0 | 0x87;      /* 1 GiB page: la 1 GiB -> 0 (RAM is small) */

    p64(GDT)[0] = 0;
    p64(GDT + 0x08)[0] = seg_desc(0, 0xfffff, 0xb, 0, 1, 0); /* kernel code */
    p64(GDT + 0x10)[0] = seg_desc(0, 0xfffff, 0x3, 0, 0, 1); /* kernel data */
    p64(GDT + 0x18)[0] = seg_desc(0, 0xfffff, 0x3, 3, 0, 1); /* user data */
    p64(GDT + 0x20)[0] = seg_desc(0, 0xfffff, 0xb, 3, 1, 0); /* user code 64 */
    tss = (0x67 & 0xffff) | ((uint64_t)TSS << 16) | (0x9ULL << 40) | (1ULL << 47);
    p64(GDT + 0x28)[0] = tss;
    p64(GDT + 0x30)[0] = 0;
    memset(gmem_ptr(&mem, TSS, 0x68), 0, 0x68);
    memcpy(gmem_ptr(&mem, TSS + 4, 8), &(uint64_t){KSTK}, 8);    /* RSP0 */
    memcpy(gmem_ptr(&mem, TSS + 0x24, 8), &(uint64_t){ISTK}, 8); /* IST1 */
    memset(gmem_ptr(&mem, IDT, 4096), 0, 4096);
    for (int v = 0; v < 32; v++)
        set_gate(v, HNDLR + 0x100 * (uint64_t)v, 0, 0, true);
    set_gate(0x20, HNDLR + 0x2000, 0, 0, true);
    set_gate(0x80, HNDLR + 0x8000, 3, 0, true);

    c->cr0 = CR0_PE | CR0_PG | CR0_WP | CR0_ET;
    c->cr4 = CR4_PAE;
    c->cr3 = PML4;
    c->efer = EFER_LME | EFER_LMA | EFER_NXE | EFER_SCE;
    c->gdt.base = GDT;
    c->gdt.limit = 0x37;
    c->idt.base = IDT;
    c->idt.limit = 0xfff;
    emu_seg_from_desc(&c->tr, 0x28, tss | (2ULL << 40), 0);
    load(S_CS, 0x23);
    load(S_SS, 0x1b);
    emu_seg_null(&c->seg[S_DS], 0);
    emu_seg_null(&c->seg[S_ES], 0);
    c->cpl = 3;
    c->r[R_SP] = USTK;
    c->rip = 0x401234;
    c->rflags = FL_IF | 2;
    emu_mode_changed(c);
    assert_true(c->code64);
}

static void test_long_mode_walk(void **state)
{
    uint64_t v;

    (void)state;
    long_mode_user();
    *p64(0x500008) = 77;
    assert_int_equal(t_read(0x400008, 8, &v), 0);
    assert_int_equal(v, 77);
    assert_true(*p64(PML4) & 0x20);
    assert_true(*p64(PDPT) & 0x20);
    assert_true(*p64(PD + 16) & 0x20);
    assert_true(*p64(PT) & 0x20);
    assert_false(*p64(PT) & 0x40);
    /* 1 GiB page. */
    *p64(0x123458) = 99;
    assert_int_equal(t_read(0x40123458, 8, &v), 0);
    assert_int_equal(v, 99);
    /* A split write whose second page is supervisor: nothing is written, CR2 = page 2. */
    *p64(0x1ffff8) = 0;
    expect_pf(t_write(0x1ffffc, 0x1111111122222222ULL, 8), PF_P | PF_W | PF_U, 0x200000);
    assert_int_equal(*p64(0x1ffff8), 0);
    /* Non-canonical: #GP(0), #SS(0) for the stack. */
    if (setjmp(c->fault_jmp) == 0)
        emu_linear(c, S_DS, 0x0000800000000000ULL, 8);
    assert_int_equal(c->fault_vec, EXC_GP);
    if (setjmp(c->fault_jmp) == 0)
        emu_linear(c, S_SS, 0xffff7fffffffffffULL, 8);
    assert_int_equal(c->fault_vec, EXC_SS);
    c->seg[S_FS].base = 0x1000;
    assert_int_equal(emu_linear(c, S_FS, 0x10, 8), 0x1010);
    assert_int_equal(emu_linear(c, S_DS, 0x1ffffffff, 4), 0xffffffff);
    /* Reserved bit (bit 45 above MAXPHYADDR 40) in the PT entry. */
    *p64(PT + 8) = 0x501000 | 7 | (1ULL << 45);
    expect_pf(t_read(0x401000, 8, &v), PF_P | PF_RSVD | PF_U, 0x401000);
    /* INVLPG of one 4 KiB piece of a 2 MiB page drops the whole page. */
    c->cpl = 0;
    assert_int_equal(t_read(0x200000, 8, &v), 0);
    assert_int_equal(t_read(0x3ff000, 8, &v), 0);
    *p64(PD + 8) = 0;
    emu_tlb_flush_page(c, 0x200010);
    expect_pf(t_read(0x3ff000, 8, &v), 0, 0x3ff000);
}

static void test_dirty_generation(void **state)
{
    uint64_t v;

    (void)state;
    long_mode_user();
    atomic_store(&vm.logging, true);
    atomic_store(&vm.dirty_gen, 5);
    assert_int_equal(t_read(0x100000, 8, &v), 0); /* fills the TLB, no write right yet */
    assert_false(dirty(0x100000));
    assert_int_equal(t_write(0x100000, 1, 8), 0);
    assert_true(dirty(0x100000));
    assert_true(dirty(PD)); /* the D bit update in the page directory */
    assert_true(*p64(PD) & 0x40);

    /* Same generation: the entry already marked its page, the fast path does not again. */
    clear_dirty();
    assert_int_equal(t_write(0x100008, 2, 8), 0);
    assert_false(dirty(0x100000));
    /* The harvest bumps the generation: the next write marks again. */
    atomic_store(&vm.dirty_gen, 6);
    assert_int_equal(t_write(0x100010, 3, 8), 0);
    assert_true(dirty(0x100000));

    /* Logging off: no marks, but the entry takes the generation all the same. */
    clear_dirty();
    atomic_store(&vm.logging, false);
    atomic_store(&vm.dirty_gen, 7);
    assert_int_equal(t_write(0x100018, 4, 8), 0);
    assert_false(dirty(0x100000));
    /* Hence the glue bumps the generation after turning logging on. */
    atomic_store(&vm.logging, true);
    atomic_store(&vm.dirty_gen, 8);
    assert_int_equal(t_write(0x100018, 4, 8), 0);
    assert_true(dirty(0x100000));

    /* emu_atomic_ptr and emu_phys_write mark too. */
    clear_dirty();
    atomic_store(&vm.dirty_gen, 9);
    if (setjmp(c->fault_jmp) == 0)
        assert_non_null(emu_atomic_ptr(c, 0x180000, 8));
    assert_true(dirty(0x180000));
    emu_phys_write(c, 0x1c0000, 5, 4);
    assert_true(dirty(0x1c0000));
}

static void test_ioeventfd(void **state)
{
    int fd = eventfd(0, EFD_NONBLOCK);
    uint64_t n = 0;

    (void)state;
    assert_true(fd >= 0);
    vm.ioeventfds[0] =
        (struct emu_ioeventfd){.addr = 0xd0001000, .len = 4, .datamatch = 7, .fd = fd};
    vm.nioeventfds = 1;
    assert_int_equal(t_write(0xd0001000, 7, 4), 0);
    assert_int_equal(read(fd, &n, 8), 8);
    assert_int_equal(n, 1);
    mmio_calls = 0;
    assert_int_equal(t_write(0xd0001000, 8, 4), 0); /* no match: to the bus */
    assert_int_equal(mmio_calls, 1);
    vm.nioeventfds = 0;
    close(fd);
}

/* ---- delivery ---- */

static void test_interrupt_iretq(void **state)
{
    uint64_t *frame;

    (void)state;
    long_mode_user();
    emu_deliver_interrupt(c, 0x20);
    assert_int_equal(c->stop, EMU_STOP_NONE);
    assert_int_equal(c->cpl, 0);
    assert_int_equal(c->seg[S_CS].selector, 0x08);
    assert_int_equal(c->rip, HNDLR + 0x2000);
    assert_int_equal(c->r[R_SP], KSTK - 40);
    assert_int_equal(c->seg[S_SS].selector, 0);
    assert_true(c->seg[S_SS].unusable);
    assert_false(c->rflags & FL_IF);
    frame = p64(c->r[R_SP]);
    assert_int_equal(frame[0], 0x401234);
    assert_int_equal(frame[1], 0x23);
    assert_true(frame[2] & FL_IF);
    assert_int_equal(frame[3], USTK);
    assert_int_equal(frame[4], 0x1b);
    assert_true(*p64(GDT + 0x08) & (1ULL << 40)); /* accessed */

    if (setjmp(c->fault_jmp) == 0)
        emu_iret(c, 8);
    else
        fail_msg("IRETQ faulted: vector %d error %#x", c->fault_vec, c->fault_err);
    assert_int_equal(c->cpl, 3);
    assert_int_equal(c->seg[S_CS].selector, 0x23);
    assert_int_equal(c->seg[S_SS].selector, 0x1b);
    assert_int_equal(c->r[R_SP], USTK);
    assert_int_equal(c->rip, 0x401234);
    assert_true(c->rflags & FL_IF);
    assert_true(c->code64);
    assert_int_equal(c->stop, EMU_STOP_IRQ);

    /* An exception with an error code on the same stack switch. */
    c->stop = EMU_STOP_NONE;
    emu_deliver(c, EXC_GP, true, 0x28, false);
    assert_int_equal(c->rip, HNDLR + 0x100 * EXC_GP);
    assert_int_equal(c->r[R_SP], KSTK - 48);
    assert_int_equal(p64(c->r[R_SP])[0], 0x28);

    /* INT 0x80 (gate DPL 3) from ring 3 is allowed; INT 0x21 (DPL 0) faults #GP(0x21*8+2) out
     * to the instruction's landing pad. */
    long_mode_user();
    emu_deliver(c, 0x80, false, 0, true);
    assert_int_equal(c->rip, HNDLR + 0x8000);
    long_mode_user();
    set_gate(0x21, HNDLR, 0, 0, true);
    if (setjmp(c->fault_jmp) == 0) {
        emu_deliver(c, 0x21, false, 0, true);
        fail_msg("INT 0x21 from ring 3 did not fault");
    }
    assert_int_equal(c->fault_vec, EXC_GP);
    assert_int_equal(c->fault_err, 0x21 * 8 + 2);
    assert_int_equal(c->cpl, 3);
}

static void test_double_fault(void **state)
{
    uint64_t *frame;

    (void)state;
    /* #GP with a not-present #GP gate: #NP(13*8+2+EXT), contributory twice: #DF. */
    long_mode_user();
    set_gate(EXC_GP, HNDLR, 0, 0, false);
    emu_deliver(c, EXC_GP, true, 0, false);
    assert_int_equal(c->rip, HNDLR + 0x100 * EXC_DF);
    assert_int_equal(p64(c->r[R_SP])[0], 0); /* #DF pushes 0 */

    /* #PF while pushing on a missing kernel stack, twice: #DF, delivered on IST1. */
    long_mode_user();
    memcpy(gmem_ptr(&mem, TSS + 4, 8), &(uint64_t){0x600000}, 8);
    set_gate(EXC_DF, HNDLR + 0x800, 0, 1, true);
    emu_deliver_interrupt(c, 0x20);
    assert_int_equal(c->stop, EMU_STOP_NONE);
    assert_int_equal(c->rip, HNDLR + 0x800);
    assert_int_equal(c->r[R_SP], ISTK - 48);
    assert_int_equal(c->cr2, 0x600000 - 8);
    frame = p64(c->r[R_SP]);
    assert_int_equal(frame[1], 0x401234);
    assert_int_equal(frame[2], 0x23);
    assert_int_equal(frame[4], USTK);

    /* Without the IST the #DF needs the missing stack too: triple fault, state untouched. */
    long_mode_user();
    memcpy(gmem_ptr(&mem, TSS + 4, 8), &(uint64_t){0x600000}, 8);
    emu_deliver_interrupt(c, 0x20);
    assert_int_equal(c->stop, EMU_STOP_SHUTDOWN);
    assert_int_equal(c->cpl, 3);
    assert_int_equal(c->rip, 0x401234);
    assert_int_equal(c->r[R_SP], USTK);
    assert_int_equal(c->fault_depth, 0);

    /* A benign first event: the #GP of a bad gate is delivered alone. */
    long_mode_user();
    c->stop = EMU_STOP_NONE;
    set_gate(0x30, HNDLR, 0, 0, true);
    p64(IDT + 0x30 * 16)[0] |= 1ULL << 44; /* S=1: not a gate */
    emu_deliver_interrupt(c, 0x30);
    assert_int_equal(c->rip, HNDLR + 0x100 * EXC_GP);
    assert_int_equal(p64(c->r[R_SP])[0], 0x30 * 8 + 2 + 1);
}

static void test_syscall_sysret(void **state)
{
    (void)state;
    long_mode_user();
    c->star = (0x13ULL << 48) | (0x08ULL << 32);
    c->lstar = HNDLR + 0x4000;
    c->sfmask = FL_IF;
    c->cpl = 3;
    c->rip = 0x401000;
    if (setjmp(c->fault_jmp) == 0)
        emu_syscall(c);
    else
        fail();
    assert_int_equal(c->cpl, 0);
    assert_int_equal(c->rip, HNDLR + 0x4000);
    assert_int_equal(c->r[R_CX], 0x401000);
    assert_true(c->r[R_R11] & FL_IF);
    assert_false(c->rflags & FL_IF);
    assert_int_equal(c->seg[S_SS].selector, 0x10);
    if (setjmp(c->fault_jmp) == 0)
        emu_sysret(c, 8);
    else
        fail();
    assert_int_equal(c->cpl, 3);
    assert_int_equal(c->seg[S_CS].selector, 0x23);
    assert_int_equal(c->seg[S_SS].selector, 0x1b);
    assert_int_equal(c->rip, 0x401000);
    assert_true(c->code64);
    /* Non-canonical RCX: #GP(0) at CPL 0. */
    c->cpl = 0;
    c->r[R_CX] = 0x0000800000000000ULL;
    if (setjmp(c->fault_jmp) == 0)
        emu_sysret(c, 8);
    assert_int_equal(c->fault_vec, EXC_GP);
}

static void test_cr_msr_cpuid(void **state)
{
    uint32_t r[4];
    uint64_t v;

    (void)state;
    /* Long-mode activation: PG with LME and PAE sets LMA. */
    c->cr0 = CR0_PE | CR0_ET;
    assert_int_equal(emu_wrmsr(c, 0xc0000080, EFER_LME), 0);
    if (setjmp(c->fault_jmp) == 0) {
        emu_write_cr(c, 0, c->cr0 | CR0_PG); /* PAE clear: #GP */
        fail();
    }
    assert_int_equal(c->fault_vec, EXC_GP);
    emu_write_cr(c, 4, CR4_PAE);
    emu_write_cr(c, 0, c->cr0 | CR0_PG);
    assert_true(c->efer & EFER_LMA);
    assert_true(c->long_mode);
    assert_int_equal(emu_wrmsr(c, 0xc0000080, 0), -1); /* LME with paging on */
    if (setjmp(c->fault_jmp) == 0) {
        emu_write_cr(c, 4, 0); /* PAE in long mode */
        fail();
    }
    assert_int_equal(emu_wrmsr(c, 0xc0000100, 0x0000800000000000ULL), -1);
    assert_int_equal(emu_wrmsr(c, 0xc0000100, 0x1000), 0);
    assert_int_equal(c->seg[S_FS].base, 0x1000);
    assert_int_equal(emu_wrmsr(c, 0x10, 1000), 0);
    assert_int_equal(emu_rdtsc(c), 1000);
    assert_int_equal(emu_rdmsr(c, 0x1b, &v), 0);
    assert_int_equal(v, 0xfee00900);
    assert_int_equal(emu_rdmsr(c, 0x48, &v), -1);

    emu_cpuid(c, 0, 0, r);
    assert_memory_equal(&r[1], "Genu", 4);
    assert_memory_equal(&r[3], "ineI", 4);
    assert_memory_equal(&r[2], "ntel", 4);
    emu_cpuid(c, 0x40000000, 0, r);
    assert_memory_equal(&r[1], "TandemEmuCPU", 12);
    emu_cpuid(c, 0x80000001, 0, r);
    assert_true(r[3] & (1u << 29));
    emu_cpuid(c, 0x80000008, 0, r);
    assert_int_equal(r[0] & 0xff, 40);
    emu_cpuid(c, 0x16, 0, r);
    {
        uint32_t hi[4];
        emu_cpuid(c, 0x12345, 0, hi);
        assert_memory_equal(r, hi, sizeof(hi));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paging32, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pae, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_mode_walk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dirty_generation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ioeventfd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupt_iretq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_double_fault, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syscall_sysret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cr_msr_cpuid, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
