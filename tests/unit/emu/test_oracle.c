/* test_oracle.c: single-instruction differential tests of the emu interpreter against Unicorn.
 *
 * Both engines start from the same 64-bit CPL 0 state (flat segments, identity-mapped memory,
 * random registers, flags and data), execute one instruction (oracle_forms.c lists them), and
 * must end with the same GPRs, RIP, RFLAGS (minus the flags the SDM leaves undefined) and data
 * pages, or raise the same exception. See docs/emu-oracle.md.
 *
 * How each engine executes exactly one instruction:
 *   Unicorn: uc_emu_start(count=1) is unusable here (with a count hook, every new translation
 *   costs ~0.6 ms in Unicorn 2.0.1), so the code region is filled with INT3 and Unicorn runs
 *   until the first interrupt: vector 3 at the byte after the instruction (or at a branch
 *   target) means "completed" and RIP is the INT3 address; any other vector is the
 *   instruction's exception. Unicorn runs a REP string instruction to completion this way (its
 *   count=1 single step would run one iteration: RIP stays, RCX decrements), so the tandem side
 *   calls emu_exec(c, 1) until RIP moves, with RCX kept small.
 *   tandem: emu_exec(c, 1); an exception is delivered through an IDT whose handlers sit at
 *   EXC_BASE + 16 * vector (each a HLT), so the vector is read back from RIP.
 *
 * Environment (manual runs): TANDEM_ORACLE_SEED (default 0x7a4d3e1), TANDEM_ORACLE_ITERS
 * (states per form, default 500), TANDEM_ORACLE_FORM (substring filter on form names),
 * TANDEM_ORACLE_VERBOSE=1 (one line per form), TANDEM_ORACLE_RAW=1 (no Unicorn quirk handling),
 * TANDEM_ORACLE_ALL=1 (also forms whose CPUID feature tandem does not report).
 *
 * Unicorn discrepancies (Unicorn's own deviations from the SDM, decided by the SDM text; the
 * evidence is in docs/emu-oracle.md) are listed above unicorn_skip() below: Unicorn's result is
 * corrected to the SDM's where that is simple, else the state is skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <unicorn/unicorn.h>

#include "accel/emu/cpu.h"
#include "emu_test.h"
#include "core/mem.h"
#include "oracle_forms.h"

/* ---- the guest layout (identity-mapped, the same linear addresses in both engines) ---- */
#define RAM_SIZE (4ULL << 20)
#define PML4     0x1000ULL /* then PDPT at 0x2000, PD at 0x3000 (2 MiB pages) */
#define GDT_BASE 0x4000ULL
#define IDT_BASE 0x5000ULL
#define EXC_BASE 0x6000ULL /* 32 handler stubs of 16 bytes */
#define TSS_BASE 0x7000ULL
#define IST_TOP  0xa000ULL  /* exception stack (tandem only) */
#define FS_BASE  0x10000ULL /* FS/GS bases: only base + offset lands in mapped memory */
#define GS_BASE  0x30000ULL
#define DATA     0x100000ULL /* two data pages, then the stack page */
#define DATA_LEN 0x3000
#define STACK    0x102000ULL
#define CODE     0x200000ULL
#define CODE_LEN 0x20000
#define EA_LO    (DATA + 0x200) /* memory operands land in [EA_LO, EA_HI) */
#define EA_HI    (DATA + 0x1e00)
#define PAD      16 /* INT3 bytes after the instruction in Unicorn */

#define VEC_NONE     (-1)
#define VEC_SHUTDOWN (-2)
#define VEC_ERROR    (-3)
#define VEC_ORACLE   (-4) /* Unicorn stopped for a reason this test does not understand */

struct state {
    uint64_t r[16];
    uint64_t rip, rfl;
};

struct result {
    struct state s;
    int vec;
    uint8_t mem[DATA_LEN];
    char note[200];
};

/* One generated instruction and the facts the checks need about it. */
struct gen {
    const struct oracle_form *f;
    int osz;  /* operand size in bytes */
    bool mem; /* the r/m operand is memory */
    bool rex_on, a32, lock;
    uint8_t rex;
    int lim;  /* registers 0..lim-1 usable (8 for byte registers without REX) */
    int regf; /* ModRM.reg register operand, or -1 */
    int rmr;  /* r/m register operand, or -1 */
    int plus; /* +r register, or -1 */
    int cc;
    int seg; /* 0 or the override prefix 0x64/0x65 */
    uint64_t segbase;
    uint64_t ea;       /* linear address of the memory operand */
    unsigned ea_align; /* required alignment of ea, 0 = any */
    uint8_t modrm, sib;
    bool has_sib, riprel;
    int disp_len;
    int32_t disp;
    int base, index;
    uint64_t imm;
    int immlen;
    int count;           /* shift count before masking, -1 = none */
    uint16_t reserved;   /* registers the set-up owns: never base/index */
    uint16_t undef_regs; /* GPRs the SDM leaves undefined for this input */
    uint64_t undef_fl;   /* RFLAGS bits the SDM leaves undefined for this input */
    uint8_t b[24];
    int len;
};

/* ---- deterministic PRNG (splitmix64 seeding xorshift64*) ---- */
static uint64_t rng;

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dULL;
}

static unsigned rndn(unsigned n)
{
    return (unsigned)(rnd() % n);
}

/* Register values biased towards the edges of every operand size. */
static uint64_t rnd_val(void)
{
    static const uint64_t edge[] = {
        0,
        1,
        2,
        0x7f,
        0x80,
        0xff,
        0x7fff,
        0x8000,
        0xffff,
        0x7fffffff,
        0x80000000,
        0xffffffff,
        0x7fffffffffffffffULL,
        0x8000000000000000ULL,
        ~0ULL,
        ~0ULL - 1,
        0x100,
        0x10000,
    };
    uint64_t e = edge[rndn(sizeof(edge) / sizeof(edge[0]))];

    switch (rndn(8)) {
    case 0:
        return e;
    case 1:
        return e ^ (rnd() << 32); /* an edge in the low half, noise above */
    case 2:
        return rnd() & 0xff;
    case 3:
        return (uint64_t) - (int64_t)(rnd() & 0xff);
    case 4:
        return e + (rnd() & 3) - 2;
    default:
        return rnd();
    }
}

static uint64_t mask_of(int size)
{
    return size == 8 ? ~0ULL : (1ULL << (8 * size)) - 1;
}

static uint64_t sext(uint64_t v, int size)
{
    int sh = 64 - 8 * size;
    return (uint64_t)((int64_t)(v << sh) >> sh);
}

/* Byte registers 4-7 without REX are AH CH DH BH. */
static uint64_t reg_get(const struct gen *g, const struct state *s, int n, int size)
{
    if (size == 1 && !g->rex_on && n >= 4 && n < 8)
        return (s->r[n - 4] >> 8) & 0xff;
    return s->r[n] & mask_of(size);
}

static void reg_put(const struct gen *g, struct state *s, int n, int size, uint64_t v)
{
    if (size == 1 && !g->rex_on && n >= 4 && n < 8) {
        s->r[n - 4] = (s->r[n - 4] & ~0xff00ULL) | ((v & 0xff) << 8);
        return;
    }
    s->r[n] = (s->r[n] & ~mask_of(size)) | (v & mask_of(size));
}

static uint64_t mem_get(const uint8_t *img, uint64_t la, int size)
{
    uint64_t v = 0;
    memcpy(&v, img + (la - DATA), (size_t)size);
    return v;
}

static void mem_put(uint8_t *img, uint64_t la, int size, uint64_t v)
{
    memcpy(img + (la - DATA), &v, (size_t)size);
}

/* ---- the two engines ---- */
static struct guest_mem gmem;
static struct emu_vm *vm;
static struct emu_cpu *cpu;
static uc_engine *uc;
static uc_context *uc_ctx; /* the initial CPU state, restored after an exception */
static int uc_vec;
static uint64_t uc_vec_rip;
static bool uc_has[8], tandem_has[8]; /* by enum oracle_need */

/* The glue accel/emu.c provides in tandem; weak so that a linked accel/emu.c wins. */
__attribute__((weak)) void emu_cpu_notify(struct emu_cpu *c)
{
    atomic_store(&c->exit_request, true);
}

__attribute__((weak)) uint64_t emu_cpu_time_ns(struct emu_cpu *c)
{
    struct timespec ts;
    (void)c;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t uc_bad_addr;

static bool uc_unmapped(uc_engine *u, uc_mem_type type, uint64_t addr, int size, int64_t value,
                        void *opaque)
{
    (void)u, (void)type, (void)size, (void)value, (void)opaque;
    uc_bad_addr = addr;
    return false;
}

static void uc_intr(uc_engine *u, uint32_t intno, void *opaque)
{
    (void)opaque;
    if (uc_vec < 0) {
        uc_vec = (int)intno;
        uc_reg_read(u, UC_X86_REG_RIP, &uc_vec_rip);
    }
    uc_emu_stop(u);
}

static const int uc_gpr[16] = {
    UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_RBX, UC_X86_REG_RSP, UC_X86_REG_RBP,
    UC_X86_REG_RSI, UC_X86_REG_RDI, UC_X86_REG_R8,  UC_X86_REG_R9,  UC_X86_REG_R10, UC_X86_REG_R11,
    UC_X86_REG_R12, UC_X86_REG_R13, UC_X86_REG_R14, UC_X86_REG_R15,
};
static int uc_regs[18];

static void put64(uint64_t gpa, uint64_t v)
{
    memcpy(gmem.base + gpa, &v, 8);
}

static int tandem_init(void)
{
    if (gmem_init(&gmem, RAM_SIZE) < 0)
        return -1;
    /* Page tables: 2 MiB pages identity-mapping [0, 4 MiB), user-accessible. */
    put64(PML4, 0x2000 | 0x7);
    put64(0x2000, 0x3000 | 0x7);
    put64(0x3000, 0x000000 | 0x87 | 0x60);
    put64(0x3008, 0x200000 | 0x87 | 0x60);
    /* GDT: null, 64-bit code (8), data (0x10), TSS (0x28). */
    put64(GDT_BASE + 0x08, 0x00af9a000000ffffULL);
    put64(GDT_BASE + 0x10, 0x00cf92000000ffffULL);
    put64(GDT_BASE + 0x28, 0x0000890000000067ULL | ((TSS_BASE & 0xffffff) << 16));
    /* IDT: vectors 0-31 -> interrupt gates at EXC_BASE + 16 * vector, each a HLT, on IST 1
     * (the test's RSP may point anywhere when the instruction faults). */
    for (uint64_t v = 0; v < 32; v++) {
        uint64_t h = EXC_BASE + 16 * v;
        put64(IDT_BASE + 16 * v, (h & 0xffff) | (8ULL << 16) | (1ULL << 32) | (0x8eULL << 40) |
                                     ((h >> 16 & 0xffff) << 48));
        put64(IDT_BASE + 16 * v + 8, h >> 32);
        memset(gmem.base + h, 0xf4, 16);
    }
    put64(TSS_BASE + 4, STACK + 0xf00); /* RSP0 */
    put64(TSS_BASE + 0x24, IST_TOP);    /* IST1 */

    cpu = calloc(1, sizeof(*cpu));
    vm = calloc(1, sizeof(*vm));
    if (!cpu || !vm)
        return -1;
    vm->mem = &gmem;
    vm->ncpus = 1;
    vm->cpus[0] = cpu;
    cpu->mem = &gmem;
    cpu->vm = vm;
    cpu->cr0 = CR0_PE | CR0_PG | CR0_ET | CR0_NE | CR0_WP;
    cpu->cr3 = PML4;
    cpu->cr4 = CR4_PAE;
    cpu->efer = EFER_LME | EFER_LMA | EFER_SCE;
    cpu->xcr0 = 1;
    cpu->pat = 0x0007040600070406ULL;
    cpu->apic_base = 0xfee00900ULL;
    cpu->seg[S_CS] = (struct kvm_segment){.base = 0,
                                          .limit = 0xffffffff,
                                          .selector = 8,
                                          .type = 0xb,
                                          .present = 1,
                                          .dpl = 0,
                                          .db = 0,
                                          .s = 1,
                                          .l = 1,
                                          .g = 1};
    emu_test_seg_flat(&cpu->seg[S_SS], 0x10, 3, 0);
    emu_test_seg_flat(&cpu->seg[S_DS], 0x10, 3, 0);
    emu_test_seg_flat(&cpu->seg[S_ES], 0x10, 3, 0);
    emu_test_seg_flat(&cpu->seg[S_FS], 0x10, 3, FS_BASE);
    emu_test_seg_flat(&cpu->seg[S_GS], 0x10, 3, GS_BASE);
    cpu->tr = (struct kvm_segment){
        .base = TSS_BASE, .limit = 0x67, .selector = 0x28, .type = 0xb, .present = 1};
    cpu->ldt = (struct kvm_segment){.unusable = 1, .type = 2};
    cpu->gdt = (struct kvm_dtable){.base = GDT_BASE, .limit = 0x37};
    cpu->idt = (struct kvm_dtable){.base = IDT_BASE, .limit = 32 * 16 - 1};
    cpu->cpl = 0;
    emu_mode_changed(cpu);
    emu_set_rflags(cpu, 0x2);
    return 0;
}

static int unicorn_init(void)
{
    static uint8_t cc[CODE_LEN];
    uc_hook h;
    uint64_t v;

    if (uc_open(UC_ARCH_X86, UC_MODE_64, &uc) != UC_ERR_OK)
        return -1;
    /* The code region is not writable by the guest: a stray write would corrupt later states. */
    if (uc_mem_map(uc, CODE, CODE_LEN, UC_PROT_READ | UC_PROT_EXEC) ||
        uc_mem_map(uc, DATA, DATA_LEN, UC_PROT_ALL))
        return -1;
    memset(cc, 0xcc, sizeof(cc));
    uc_mem_write(uc, CODE, cc, sizeof(cc));
    if (uc_hook_add(uc, &h, UC_HOOK_INTR, (void *)uc_intr, NULL, 1, 0) ||
        uc_hook_add(uc, &h, UC_HOOK_MEM_UNMAPPED, (void *)uc_unmapped, NULL, 1, 0))
        return -1;
    v = FS_BASE;
    uc_reg_write(uc, UC_X86_REG_FS_BASE, &v);
    v = GS_BASE;
    uc_reg_write(uc, UC_X86_REG_GS_BASE, &v);
    if (uc_context_alloc(uc, &uc_ctx) || uc_context_save(uc, uc_ctx))
        return -1;
    for (int i = 0; i < 16; i++)
        uc_regs[i] = uc_gpr[i];
    uc_regs[16] = UC_X86_REG_RIP;
    uc_regs[17] = UC_X86_REG_RFLAGS;
    return 0;
}

/* CPUID in Unicorn: run the instruction. */
static void uc_cpuid(uint32_t leaf, uint32_t out[4])
{
    static const uint8_t insn[] = {0x0f, 0xa2, 0xcc};
    uint64_t a = leaf, c = 0, r[4];
    uc_mem_write(uc, CODE, insn, sizeof(insn));
    uc_ctl_remove_cache(uc, CODE, CODE + 16);
    uc_reg_write(uc, UC_X86_REG_RAX, &a);
    uc_reg_write(uc, UC_X86_REG_RCX, &c);
    uc_vec = -1;
    uc_emu_start(uc, CODE, 0, 0, 0);
    uc_reg_read(uc, UC_X86_REG_RAX, &r[0]);
    uc_reg_read(uc, UC_X86_REG_RBX, &r[1]);
    uc_reg_read(uc, UC_X86_REG_RCX, &r[2]);
    uc_reg_read(uc, UC_X86_REG_RDX, &r[3]);
    for (int i = 0; i < 4; i++)
        out[i] = (uint32_t)r[i];
    static const uint8_t cc3[3] = {0xcc, 0xcc, 0xcc};
    uc_mem_write(uc, CODE, cc3, sizeof(cc3));
    uc_ctl_remove_cache(uc, CODE, CODE + 16);
}

static void features(void (*cpuid)(uint32_t, uint32_t[4]), bool *has)
{
    uint32_t l1[4], l7[4], e1[4];
    cpuid(1, l1);
    cpuid(7, l7);
    cpuid(0x80000001, e1);
    has[N_NONE] = true;
    has[N_POPCNT] = l1[2] >> 23 & 1;
    has[N_MOVBE] = l1[2] >> 22 & 1;
    has[N_CX16] = l1[2] >> 13 & 1;
    has[N_BMI1] = l7[1] >> 3 & 1;
    has[N_LZCNT] = e1[2] >> 5 & 1;
    has[N_LAHF] = e1[2] & 1;
}

static void tandem_cpuid(uint32_t leaf, uint32_t out[4])
{
    emu_cpuid(cpu, leaf, 0, out);
}

/* ---- instruction generation ---- */

static int pick_count(void)
{
    static const int c[] = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 255};
    return rndn(4) == 0 ? (int)rndn(256) : c[rndn(sizeof(c) / sizeof(c[0]))];
}

/* A register in [0, lim) not in the reserved set and not `other`; -1 if none. */
static int pick_reg(const struct gen *g, uint16_t avoid, int other, bool (*ok)(int))
{
    int cand[16], n = 0;
    for (int r = 0; r < g->lim; r++)
        if (!(avoid >> r & 1) && r != other && (!ok || ok(r)))
            cand[n++] = r;
    return n ? cand[rndn((unsigned)n)] : -1;
}

static bool ok_plain_base(int r)
{
    return (r & 7) != 4 && (r & 7) != 5; /* mod 00: 100 = SIB, 101 = RIP-relative */
}

static bool ok_disp_base(int r)
{
    return (r & 7) != 4;
}

static bool ok_index(int r)
{
    return r != 4; /* index 100 without REX.X = none */
}

static uint64_t addr_val(const struct gen *g, uint64_t v)
{
    return g->a32 ? (v & 0xffffffffULL) | (rnd() << 32) : v;
}

/* Choose an addressing form for the memory operand and set its registers so that the linear
 * address is g->ea (inside the data pages). */
static void gen_addr(struct gen *g, struct state *s)
{
    uint64_t target = EA_LO + rnd() % (EA_HI - EA_LO);
    if (rndn(8) == 0) /* straddle the page boundary between the data pages */
        target = DATA + 0x1000 - 1 - rndn(16);
    if (g->ea_align)
        target &= ~(uint64_t)(g->ea_align - 1);
    g->ea = target;
    uint64_t off = target - g->segbase; /* the effective address to produce */
    g->base = g->index = -1;
    g->has_sib = g->riprel = false;
    g->disp = 0;
    g->disp_len = 0;

    if (g->f->setup == ST_RSP_BASE) { /* [rsp + disp8]: PUSH reads before, POP writes after */
        g->has_sib = true;
        g->disp_len = 1;
        g->disp = (int32_t)rndn(0x80);
        g->base = R_SP;
        g->modrm = 0x44;
        g->sib = 0x24;
        g->ea = s->r[R_SP] + (uint64_t)g->disp;
        return;
    }

    for (;;) {
        unsigned kind = rndn(8);
        int mod, b;
        if (kind <= 2) { /* [base], [base + disp8], [base + disp32] */
            mod = (int)kind;
            b = pick_reg(g, g->reserved, -1, mod == 0 ? ok_plain_base : ok_disp_base);
            if (b < 0)
                continue;
            g->disp_len = mod == 0 ? 0 : mod == 1 ? 1 : 4;
            g->disp = mod == 1 ? (int8_t)rnd() : mod == 2 ? (int32_t)rnd() : 0;
            g->base = b;
            s->r[b] = addr_val(g, off - (uint64_t)(int64_t)g->disp);
            g->modrm = (uint8_t)(mod << 6 | (b & 7));
            return;
        }
        if (kind <= 5) { /* SIB */
            mod = (int)rndn(3);
            int scale = (int)rndn(4);
            int x = rndn(8) == 0 ? -1 : pick_reg(g, g->reserved, -1, ok_index);
            bool nobase = false;
            b = pick_reg(g, g->reserved, x, NULL);
            if (b < 0)
                continue;
            if (mod == 0 && (b & 7) == 5)
                nobase = true;
            uint64_t xv = 0;
            if (x >= 0) {
                xv = (uint64_t)((int64_t)rndn(0x2000) - 0x1000);
                s->r[x] = addr_val(g, xv);
            }
            g->disp_len = mod == 1 ? 1 : (mod == 2 || nobase) ? 4 : 0;
            g->disp = mod == 1 ? (int8_t)rnd() : mod == 2 ? (int32_t)rnd() : 0;
            if (nobase)
                g->disp = (int32_t)(uint32_t)(off - (xv << scale));
            else {
                g->base = b;
                s->r[b] = addr_val(g, off - (uint64_t)(int64_t)g->disp - (xv << scale));
            }
            g->index = x;
            g->has_sib = true;
            g->modrm = (uint8_t)(mod << 6 | 4);
            g->sib = (uint8_t)(scale << 6 | ((x < 0 ? 4 : x) & 7) << 3 | (b & 7));
            if (nobase && g->lim == 16 && (rnd() & 1))
                g->base = 8 | 5; /* REX.B set on a base field that names no register */
            if (nobase && g->base < 0)
                g->base = -1;
            return;
        }
        if (kind == 6) { /* RIP-relative: the displacement is patched after assembly */
            g->riprel = true;
            g->disp_len = 4;
            g->modrm = 0x05;
            return;
        }
        /* [disp32] through SIB with no base and no index */
        g->has_sib = true;
        g->disp_len = 4;
        g->disp = (int32_t)(uint32_t)off;
        g->modrm = 0x04;
        g->sib = (uint8_t)(rndn(4) << 6 | 4 << 3 | 5);
        if (g->lim == 16 && (rnd() & 1))
            g->base = 8 | 5;
        return;
    }
}

static uint64_t code_target(uint64_t rip, int len)
{
    for (;;) {
        uint64_t t = CODE + 0x100 + rnd() % (CODE_LEN - 0x200);
        if (t < rip || t >= rip + (uint64_t)len)
            return t;
    }
}

static bool rep_form(const struct gen *g)
{
    return (g->f->flags & X_STR) && g->f->pfx;
}

/* Set-up before addressing: registers the instruction reads implicitly. */
static void setup_pre(struct gen *g, struct state *s, uint8_t *img)
{
    const struct oracle_form *f = g->f;
    (void)img;
    switch (f->setup) {
    case ST_COUNT1:
        g->count = 1;
        break;
    case ST_SHIFT_CL:
    case ST_SHIFT_IMM:
        do
            g->count = pick_count();
        while (f->rule == U_SHXD && g->osz == 2 && (g->count & 31) > 16);
        if (f->setup == ST_SHIFT_CL) {
            g->reserved |= 1 << R_CX;
            s->r[R_CX] = (s->r[R_CX] & ~0xffULL) | (uint64_t)g->count;
        } else {
            g->imm = (uint64_t)g->count;
        }
        break;
    case ST_CX16:
        g->ea_align = rndn(8) ? 16 : 0; /* misaligned: #GP(0) */
        g->reserved |= 1 << R_AX | 1 << R_DX;
        break;
    case ST_DIV:
    case ST_IDIV:
    case ST_CX8:
        g->reserved |= 1 << R_AX | 1 << R_DX;
        break;
    case ST_CMPXCHG:
        g->reserved |= 1 << R_AX;
        break;
    case ST_RSP_BASE:
        g->reserved |= 1 << R_SP;
        break;
    case ST_BT_REG:
        if (g->mem)
            g->reserved |= (uint16_t)(1 << g->regf);
        break;
    case ST_LEAVE:
    case ST_ENTER:
        g->reserved |= 1 << R_BP;
        s->r[R_BP] = STACK + 0x600 + rndn(0x600);
        break;
    case ST_XLAT: {
        g->reserved |= 1 << R_BX | 1 << R_AX;
        uint64_t t = EA_LO + rndn(0x1000) - g->segbase;
        s->r[R_BX] = addr_val(g, t);
        break;
    }
    case ST_RCX_SMALL: {
        static const uint64_t v[] = {0, 1, 2, 0x100000000ULL, 0x100000001ULL};
        g->reserved |= 1 << R_CX;
        if (rnd() & 1)
            s->r[R_CX] = v[rndn(5)];
        break;
    }
    case ST_STR: {
        g->reserved |= 1 << R_SI | 1 << R_DI | 1 << R_CX | 1 << R_AX;
        s->r[R_SI] = addr_val(g, EA_LO + rndn(0x1c00) - g->segbase);
        s->r[R_DI] = addr_val(g, EA_LO + rndn(0x1c00));
        if (rep_form(g)) {
            uint64_t n = rndn(10);
            s->r[R_CX] = g->a32 ? (rnd() << 32) | n : n;
        }
        break;
    }
    default:
        break;
    }
    if (f->group == G_STACK || f->group == G_BRANCH)
        g->reserved |= 1 << R_SP;
}

/* Fill n elements of size sz from la in the direction DF gives, and maybe spoil one. */
static void fill_run(const struct gen *g, const struct state *s, uint8_t *img, uint64_t la,
                     uint64_t n, const uint8_t *src_or_null, uint64_t src_la, uint64_t val)
{
    bool df = s->rfl & FL_DF;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t d = df ? la - i * (uint64_t)g->osz : la + i * (uint64_t)g->osz;
        if (src_or_null) {
            uint64_t sa = df ? src_la - i * (uint64_t)g->osz : src_la + i * (uint64_t)g->osz;
            memmove(img + (d - DATA), src_or_null + (sa - DATA), (size_t)g->osz);
        } else {
            mem_put(img, d, g->osz, val);
        }
    }
    if (n && (rnd() & 1)) {
        uint64_t i = rnd() % n;
        uint64_t d = df ? la - i * (uint64_t)g->osz : la + i * (uint64_t)g->osz;
        img[d - DATA + rndn((unsigned)g->osz)] ^= (uint8_t)(1 + rndn(255));
    }
}

/* Set-up after addressing: values that depend on the operands. */
static void setup_post(struct gen *g, struct state *s, uint8_t *img)
{
    const struct oracle_form *f = g->f;
    int sz = g->osz;

    if (g->mem && rndn(4) == 0) /* an edge value in memory */
        mem_put(img, g->ea, sz, rnd_val());

    switch (f->setup) {
    case ST_DIV:
    case ST_IDIV: {
        uint64_t d = g->mem ? mem_get(img, g->ea, sz) : reg_get(g, s, g->rmr, sz);
        if (d == 0 && rndn(16)) {
            d = rnd_val() & mask_of(sz);
            if (!d)
                d = 3;
            if (g->mem)
                mem_put(img, g->ea, sz, d);
            else
                reg_put(g, s, g->rmr, sz, d);
        }
        uint64_t lo = sz == 1 ? s->r[R_AX] & 0xff : s->r[R_AX] & mask_of(sz);
        uint64_t hi;
        if (f->setup == ST_DIV)
            hi = rndn(8) == 0 || !d ? rnd() & mask_of(sz) : rnd() % d;
        else
            hi = rndn(8) == 0 ? rnd() & mask_of(sz) : (sext(lo, sz) >> 63 ? mask_of(sz) : 0);
        if (sz == 1)
            s->r[R_AX] = (s->r[R_AX] & ~0xff00ULL) | (hi & 0xff) << 8;
        else
            s->r[R_DX] = (s->r[R_DX] & ~mask_of(sz)) | (hi & mask_of(sz));
        break;
    }
    case ST_CMPXCHG:
        if (rnd() & 1) {
            uint64_t d = g->mem ? mem_get(img, g->ea, sz) : reg_get(g, s, g->rmr, sz);
            s->r[R_AX] = (s->r[R_AX] & ~mask_of(sz)) | d;
        }
        break;
    case ST_CX8:
        if (rnd() & 1) {
            s->r[R_AX] = (s->r[R_AX] & ~0xffffffffULL) | mem_get(img, g->ea, 4);
            s->r[R_DX] = (s->r[R_DX] & ~0xffffffffULL) | mem_get(img, g->ea + 4, 4);
        }
        break;
    case ST_CX16:
        if (rnd() & 1) {
            s->r[R_AX] = mem_get(img, g->ea, 8);
            s->r[R_DX] = mem_get(img, g->ea + 8, 8);
        }
        break;
    case ST_BT_REG:
        if (g->mem) {
            uint64_t off = (uint64_t)((int64_t)rndn(4096) - 2048);
            s->r[g->regf] = (s->r[g->regf] & ~mask_of(sz)) | (off & mask_of(sz));
        }
        break;
    case ST_BRANCH_IND: {
        uint64_t t = code_target(s->rip, 16);
        if (!g->mem && g->rmr == R_SP) /* CALL RSP would push into the code region */
            g->rmr = R_BX;
        if (g->mem)
            mem_put(img, g->ea, 8, t);
        else
            s->r[g->rmr] = t;
        break;
    }
    case ST_RET:
        mem_put(img, s->r[R_SP], 8, code_target(s->rip, 16));
        break;
    case ST_POPF:
        mem_put(img, s->r[R_SP], 8, rnd() & ~(uint64_t)FL_TF);
        break;
    case ST_STR: {
        uint64_t n = rep_form(g) ? (s->r[R_CX] & (g->a32 ? 0xffffffffULL : ~0ULL)) : 1;
        uint64_t si = (s->r[R_SI] & (g->a32 ? 0xffffffffULL : ~0ULL)) + g->segbase;
        uint64_t di = s->r[R_DI] & (g->a32 ? 0xffffffffULL : ~0ULL);
        uint8_t op = f->op[0] & 0xfe;
        if (n > 16)
            n = 16;
        if (op == 0xa6 && (rnd() & 1))
            fill_run(g, s, img, di, n, img, si, 0);
        if (op == 0xae && (rnd() & 1))
            fill_run(g, s, img, di, n, NULL, 0, s->r[R_AX] & mask_of(sz));
        break;
    }
    default:
        break;
    }
}

/* Input-dependent undefined flags and registers (see the rows in oracle_forms.c). */
static void undefined(struct gen *g, const struct state *s, const uint8_t *img)
{
    const struct oracle_form *f = g->f;
    int bits = 8 * g->osz;
    int c = g->count < 0 ? 0 : g->count & (g->osz == 8 ? 63 : 31);

    g->undef_fl = f->undef;
    switch (f->rule) {
    case U_SHL:
        if (c)
            g->undef_fl |= FL_AF;
        if (c > 1)
            g->undef_fl |= FL_OF;
        if (c >= bits)
            g->undef_fl |= FL_CF;
        break;
    case U_SAR:
        if (c)
            g->undef_fl |= FL_AF;
        if (c > 1)
            g->undef_fl |= FL_OF;
        break;
    case U_ROT:
        if (c > 1)
            g->undef_fl |= FL_OF;
        break;
    case U_SHXD:
        if (c)
            g->undef_fl |= FL_AF;
        if (c > 1)
            g->undef_fl |= FL_OF;
        break;
    case U_BSF: {
        uint64_t src = g->mem ? mem_get(img, g->ea, g->osz) : reg_get(g, s, g->rmr, g->osz);
        if (!src)
            g->undef_regs |= (uint16_t)(1 << g->regf);
        break;
    }
    case U_BSWAP16:
        g->undef_regs |= (uint16_t)(1 << g->plus);
        break;
    default:
        break;
    }
}

static void emit(struct gen *g, uint8_t b)
{
    g->b[g->len++] = b;
}

static void emit_n(struct gen *g, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        emit(g, (uint8_t)(v >> (8 * i)));
}

/* Draw one state and instruction for form f at operand size osz. */
static void generate(struct gen *g, const struct oracle_form *f, int osz, bool mem, struct state *s,
                     uint8_t *img)
{
    memset(g, 0, sizeof(*g));
    g->f = f;
    g->osz = osz;
    g->mem = mem;
    g->regf = g->rmr = g->plus = g->cc = g->base = g->index = -1;
    g->count = -1;

    for (int i = 0; i < DATA_LEN; i += 8) {
        uint64_t v = rnd();
        memcpy(img + i, &v, 8);
    }
    for (int i = 0; i < 16; i++)
        s->r[i] = rnd_val();
    s->r[R_SP] = STACK + 0x400 + rndn(0x800);
    if (rndn(4))
        s->r[R_SP] &= ~7ULL;
    s->rfl = 0x2 | (rnd() & (FL_ARITH | FL_DF | FL_IF));
    s->rip = CODE + 0x8000 + rndn(CODE_LEN - 0x10000);

    bool has8 = osz == 1 || ((f->flags & X_RM8) && !mem);
    bool addr_user = mem || (f->flags & X_STR) || f->setup == ST_XLAT || f->imm == I_MOFFS ||
                     f->setup == ST_RCX_SMALL;
    g->rex_on = has8 ? (rnd() & 1) : rndn(8) == 0;
    g->lim = has8 && !g->rex_on ? 8 : 16;
    g->a32 = addr_user && rndn(6) == 0;
    if ((mem || ((f->flags & X_STR) && (f->op[0] & 0xfe) != 0xaa && (f->op[0] & 0xfe) != 0xae) ||
         f->setup == ST_XLAT || f->imm == I_MOFFS) &&
        !(f->flags & X_NOSEG) && rndn(6) == 0) {
        g->seg = (rnd() & 1) ? 0x64 : 0x65;
        g->segbase = g->seg == 0x64 ? FS_BASE : GS_BASE;
    } else if ((f->flags & X_STR) && ((f->op[0] & 0xfe) == 0xaa || (f->op[0] & 0xfe) == 0xae) &&
               rndn(8) == 0) {
        g->seg = 0x64; /* ignored for the ES:RDI operand of STOS/SCAS */
    }
    /* LOCK on a lockable memory form; rarely on a register destination or a form that does not
     * take it (#UD: "the LOCK prefix can be prepended only to [...] and only to those forms of
     * the instructions where the destination operand is a memory operand", SDM Vol. 2 LOCK). */
    g->lock = (f->flags & X_LOCK) ? (mem ? rndn(3) == 0 : rndn(32) == 0) : rndn(64) == 0;
    if (f->modrm == MR_REG)
        g->regf = (int)rndn((unsigned)g->lim);
    if (f->flags & X_PLUSR)
        g->plus = (int)rndn((unsigned)g->lim);
    if (f->flags & X_CC)
        g->cc = (int)rndn(16);

    setup_pre(g, s, img);
    if (f->modrm != MR_NONE) {
        if (mem)
            gen_addr(g, s);
        else
            g->rmr = (int)rndn((unsigned)g->lim);
    }

    /* immediates */
    switch (f->imm) {
    case I_8:
        g->immlen = 1;
        if (f->setup != ST_SHIFT_IMM)
            g->imm = rnd_val();
        break;
    case I_Z:
        g->immlen = osz == 2 ? 2 : 4;
        g->imm = rnd_val();
        break;
    case I_16:
        g->immlen = 2;
        g->imm = rnd();
        break;
    case I_V:
        g->immlen = osz;
        g->imm = rnd_val();
        break;
    case I_REL8:
        g->immlen = 1;
        break;
    case I_REL32:
        g->immlen = 4;
        break;
    case I_MOFFS: {
        g->immlen = g->a32 ? 4 : 8;
        g->ea = EA_LO + rndn((unsigned)(EA_HI - EA_LO));
        g->imm = g->ea - g->segbase;
        break;
    }
    case I_ENTER:
        g->immlen = 3;
        g->imm = rndn(0x100) | (uint64_t)(rndn(8) ? rndn(4) : rndn(32)) << 16;
        break;
    default:
        break;
    }

    setup_post(g, s, img);

    /* prefixes (legacy ones in random order), REX, opcode, ModRM, SIB, displacement, imm */
    uint8_t pre[6];
    int np = 0;
    if (osz == 2 || (osz == 8 && !(f->flags & X_D64) && rndn(8) == 0))
        pre[np++] = 0x66; /* with REX.W, 66h is ignored */
    if (g->lock)
        pre[np++] = 0xf0;
    if (g->a32)
        pre[np++] = 0x67;
    if (g->seg)
        pre[np++] = (uint8_t)g->seg;
    if (f->pfx)
        pre[np++] = f->pfx;
    for (int i = np - 1; i > 0; i--) {
        int j = (int)rndn((unsigned)i + 1);
        uint8_t t = pre[i];
        pre[i] = pre[j];
        pre[j] = t;
    }
    for (int i = 0; i < np; i++)
        emit(g, pre[i]);

    uint8_t rex = 0;
    if (osz == 8 && (!(f->flags & X_D64) || (rnd() & 1)))
        rex |= 8;
    if (g->regf >= 8)
        rex |= 4;
    if (g->index >= 8)
        rex |= 2;
    if (g->rmr >= 8 || g->base >= 8 || g->plus >= 8)
        rex |= 1;
    if (rex || g->rex_on) {
        g->rex_on = true;
        emit(g, 0x40 | rex);
    }
    g->rex = rex;

    for (int i = 0; i < f->nop; i++) {
        uint8_t o = f->op[i];
        if (i == f->nop - 1) {
            if (f->flags & X_CC)
                o |= (uint8_t)g->cc;
            if (f->flags & X_PLUSR)
                o |= (uint8_t)(g->plus & 7);
        }
        emit(g, o);
    }
    if (f->modrm != MR_NONE) {
        int reg = f->modrm == MR_REG ? g->regf & 7 : f->digit;
        if (mem)
            emit(g, (uint8_t)(g->modrm | reg << 3));
        else
            emit(g, (uint8_t)(0xc0 | reg << 3 | (g->rmr & 7)));
        if (mem && g->has_sib)
            emit(g, g->sib);
    }
    int disp_at = g->len;
    if (mem)
        emit_n(g, (uint64_t)(int64_t)g->disp, g->disp_len);
    int imm_at = g->len;
    emit_n(g, g->imm, g->immlen);

    if (mem && g->riprel) {
        uint64_t d = g->ea - g->segbase - (s->rip + (uint64_t)g->len);
        g->disp = (int32_t)(uint32_t)d;
        memcpy(g->b + disp_at, &g->disp, 4);
    }
    if (f->imm == I_REL8 || f->imm == I_REL32) {
        /* a target inside the code region and outside the instruction itself */
        for (;;) {
            int64_t rel = f->imm == I_REL8 ? (int8_t)rnd() : (int64_t)rndn(0xe000) - 0x7000;
            uint64_t t = s->rip + (uint64_t)g->len + (uint64_t)rel;
            if (t < s->rip || t >= s->rip + (uint64_t)g->len) {
                g->imm = (uint64_t)rel;
                memcpy(g->b + imm_at, &rel, (size_t)g->immlen);
                break;
            }
        }
    }
    undefined(g, s, img);
}

/* ---- running ---- */

static void run_unicorn(const struct gen *g, const struct state *in, const uint8_t *img,
                        struct result *out)
{
    uint8_t buf[sizeof(g->b) + PAD];
    uint64_t vals[18];
    void *ptrs[18];
    size_t n = (size_t)g->len + PAD;

    memcpy(buf, g->b, (size_t)g->len);
    memset(buf + g->len, 0xcc, PAD);
    uc_mem_write(uc, in->rip, buf, n);
    uc_ctl_remove_cache(uc, in->rip, in->rip + n);
    uc_mem_write(uc, DATA, img, DATA_LEN);
    memcpy(vals, in->r, sizeof(in->r));
    vals[16] = in->rip;
    vals[17] = in->rfl;
    for (int i = 0; i < 18; i++)
        ptrs[i] = &vals[i];
    uc_reg_write_batch(uc, uc_regs, ptrs, 18);

    uc_vec = -1;
    uc_err err = uc_emu_start(uc, in->rip, 0, 0, 0);

    uc_reg_read_batch(uc, uc_regs, ptrs, 18);
    memcpy(out->s.r, vals, sizeof(out->s.r));
    out->s.rip = vals[16];
    out->s.rfl = vals[17];
    uc_mem_read(uc, DATA, out->mem, DATA_LEN);
    out->note[0] = 0;
    if (uc_vec == 3) {
        out->vec = VEC_NONE;
        out->s.rip = uc_vec_rip - 1;
    } else if (uc_vec >= 0) {
        out->vec = uc_vec;
        out->s.rip = uc_vec_rip;
    } else if (err == UC_ERR_INSN_INVALID) {
        out->vec = EXC_UD;
    } else if (err == UC_ERR_FETCH_UNMAPPED && out->s.rip != in->rip) {
        out->vec = VEC_NONE;
    } else if (err == UC_ERR_READ_UNMAPPED || err == UC_ERR_WRITE_UNMAPPED ||
               err == UC_ERR_WRITE_PROT) {
        out->vec = EXC_PF;
        snprintf(out->note, sizeof(out->note), "unicorn: %s at %llx, rip %llx", uc_strerror(err),
                 (unsigned long long)uc_bad_addr, (unsigned long long)out->s.rip);
    } else {
        out->vec = VEC_ORACLE;
        snprintf(out->note, sizeof(out->note), "unicorn stopped: %s", uc_strerror(err));
    }

    /* Unicorn hands exceptions to the hook without delivering them, so QEMU's "exception in
     * flight" is never cleared and the next contributory fault would become #DF: start over. */
    if (uc_vec != 3)
        uc_context_restore(uc, uc_ctx);
    memset(buf, 0xcc, n);
    uc_mem_write(uc, in->rip, buf, n);
    uc_ctl_remove_cache(uc, in->rip, in->rip + n);
}

static void run_tandem(const struct gen *g, const struct state *in, const uint8_t *img,
                       struct result *out)
{
    struct emu_cpu *c = cpu;
    enum emu_stop why = EMU_STOP_NONE;
    bool loop = (g->f->flags & X_STR) && g->f->pfx;

    memcpy(gmem.base + in->rip, g->b, (size_t)g->len);
    memset(gmem.base + in->rip + g->len, 0xcc, PAD);
    memcpy(gmem.base + DATA, img, DATA_LEN);
    memcpy(c->r, in->r, sizeof(c->r));
    c->rip = in->rip;
    emu_set_rflags(c, in->rfl);
    c->halted = false;
    c->shadow = 0;
    c->fault_depth = 0;
    c->error[0] = 0;
    atomic_store(&c->exit_request, false);
    for (int i = 0; i < (loop ? 80 : 1); i++) {
        c->stop = EMU_STOP_NONE;
        why = emu_exec(c, 1);
        if (why == EMU_STOP_SHUTDOWN || why == EMU_STOP_ERROR || c->rip != in->rip)
            break;
    }
    memcpy(out->s.r, c->r, sizeof(c->r));
    out->s.rip = c->rip;
    out->s.rfl = emu_get_rflags(c);
    memcpy(out->mem, gmem.base + DATA, DATA_LEN);
    out->note[0] = 0;
    out->vec = VEC_NONE;
    if (c->rip >= EXC_BASE && c->rip <= EXC_BASE + 32 * 16)
        out->vec = (int)((c->rip - EXC_BASE) / 16);
    if (why == EMU_STOP_SHUTDOWN)
        out->vec = VEC_SHUTDOWN;
    if (why == EMU_STOP_ERROR) {
        out->vec = VEC_ERROR;
        snprintf(out->note, sizeof(out->note), "emu error: %s", c->error);
    }
    memset(gmem.base + in->rip, 0xcc, (size_t)g->len);
}

/* ---- comparing and reporting ---- */

static const char *const reg_name[16] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                         "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};

static const char *vec_name(int v, char *buf, size_t n)
{
    static const char *const exc[32] = {"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD",
                                        "#NM", "#DF", "9",   "#TS", "#NP", "#SS", "#GP",
                                        "#PF", "15",  "#MF", "#AC", "#MC", "#XM"};
    if (v == VEC_NONE)
        return "none";
    if (v == VEC_SHUTDOWN)
        return "triple fault";
    if (v == VEC_ERROR)
        return "EMU_STOP_ERROR";
    if (v == VEC_ORACLE)
        return "unicorn anomaly";
    snprintf(buf, n, "%s (vector %d)", v < 32 && exc[v] ? exc[v] : "?", v);
    return buf;
}

static char form_name[96];
static uint64_t form_seed;

static void print_state(const char *tag, const struct state *s)
{
    printf("  %s:", tag);
    for (int i = 0; i < 16; i++)
        printf("%s%s=%016llx", i % 4 ? " " : "\n    ", reg_name[i], (unsigned long long)s->r[i]);
    printf("\n    rip=%016llx rflags=%016llx\n", (unsigned long long)s->rip,
           (unsigned long long)s->rfl);
}

/* Compare; on a mismatch print the evidence when `report` and return false. */
static bool check(const struct gen *g, const struct state *in, const uint8_t *img,
                  const struct result *u, const struct result *t, bool report, unsigned idx)
{
    char lines[2048];
    size_t n = 0;
    char b1[48], b2[48];
    bool exc = u->vec != VEC_NONE || t->vec != VEC_NONE;

#define LINE(...)                                                                                  \
    do {                                                                                           \
        if (n < sizeof(lines))                                                                     \
            n += (size_t)snprintf(lines + n, sizeof(lines) - n, __VA_ARGS__);                      \
    } while (0)

    if (u->vec != t->vec)
        LINE("    exception: unicorn %s, tandem %s\n", vec_name(u->vec, b1, sizeof(b1)),
             vec_name(t->vec, b2, sizeof(b2)));
    for (int i = 0; i < 16; i++) {
        if (g->undef_regs >> i & 1)
            continue;
        if (exc && i == R_SP)
            continue; /* tandem pushed an exception frame */
        if (u->s.r[i] != t->s.r[i])
            LINE("    %-6s unicorn %016llx tandem %016llx\n", reg_name[i],
                 (unsigned long long)u->s.r[i], (unsigned long long)t->s.r[i]);
    }
    if (!exc) {
        uint64_t m = ~g->undef_fl;
        if (u->s.rip != t->s.rip)
            LINE("    rip    unicorn %016llx tandem %016llx\n", (unsigned long long)u->s.rip,
                 (unsigned long long)t->s.rip);
        if ((u->s.rfl ^ t->s.rfl) & m)
            LINE("    rflags unicorn %016llx tandem %016llx (differ %llx, undefined %llx)\n",
                 (unsigned long long)u->s.rfl, (unsigned long long)t->s.rfl,
                 (unsigned long long)((u->s.rfl ^ t->s.rfl) & m), (unsigned long long)g->undef_fl);
        for (int i = 0; i < DATA_LEN; i++) {
            if (u->mem[i] == t->mem[i])
                continue;
            LINE("    memory at %llx: input/unicorn/tandem", (unsigned long long)(DATA + i));
            for (int k = i; k < i + 8 && k < DATA_LEN; k++)
                LINE(" %02x/%02x/%02x", img[k], u->mem[k], t->mem[k]);
            LINE("\n");
            break;
        }
    }
    if (!n)
        return true;
    if (report) {
        printf("MISMATCH %s: bytes", form_name);
        for (int i = 0; i < g->len; i++)
            printf(" %02x", g->b[i]);
        printf("\n  (TANDEM_ORACLE_SEED=0x%llx, state #%u", (unsigned long long)form_seed, idx);
        if (g->mem)
            printf(", memory operand at %llx = %016llx", (unsigned long long)g->ea,
                   (unsigned long long)mem_get(img, g->ea, 8));
        printf(")\n");
        print_state("input", in);
        if (u->note[0])
            printf("    %s\n", u->note);
        if (t->note[0])
            printf("    %s\n", t->note);
        printf("  differences (%s):\n%s", exc ? "exception outcome" : "completed", lines);
    }
    return false;
#undef LINE
}

/* ---- Unicorn's own deviations from the SDM (evidence in docs/emu-oracle.md) ----
 *
 * Q1 LOCK NEG m: Unicorn computes the arithmetic flags from the negation of the result (the
 *    original operand) instead of the result. SDM Vol. 2 NEG: "The CF flag set to 0 if the
 *    source operand is 0; otherwise it is set to 1. The OF, SF, ZF, AF, and PF flags are set
 *    according to the result." Corrected: the flags are recomputed here from the input.
 * Q2 CMPXCHG r/m32, r32: Unicorn zero-extends RAX when the comparison succeeds (SDM pseudocode:
 *    the accumulator is written only in the ELSE branch), and zero-extends a register
 *    destination when it fails (the SDM's "DEST <- TEMP" is a write-back for the bus; processors
 *    leave a register destination untouched, and QEMU later fixed both). Corrected: RAX (success)
 *    or the destination register (failure) keep their input values.
 * Q3 SHLD/SHRD r/m, r, imm8 with a RIP-relative memory operand: Unicorn forgets the imm8 when
 *    computing RIP + disp32 (SDM Vol. 2 2.2.1.6: RIP-relative addressing uses the address of
 *    the next instruction), so it accesses one byte too low. Skipped.
 * Q4 RET imm16: Unicorn sign-extends imm16 (SDM Vol. 2 RET: "pop imm16 bytes from stack", an
 *    unsigned count). Corrected: RSP + 0x10000 when imm16 >= 0x8000.
 * Q5 LAHF/SAHF with a REX prefix: Unicorn stores to / loads from SPL instead of AH (SDM Vol. 2
 *    LAHF: "AH <- RFLAGS(SF:ZF:0:AF:0:PF:1:CF)", SAHF: "RFLAGS(SF:ZF:0:AF:0:PF:1:CF) <- AH";
 *    REX selects no other register). Corrected: RSP keeps its input value and AH / the flags
 *    get the SDM's value.
 * Q6 LOCK on an instruction that does not take it, or with a register destination: the SDM
 *    requires #UD (Vol. 2 LOCK: "An undefined opcode exception will also be generated if the LOCK
 *    prefix is used with any instruction not in the above list"); Unicorn executes the
 *    instruction as if unlocked, and for some (f0 4d 33 d2, lock xor r10, r10) aborts the process
 *    in TCG ("tcg fatal error"). Unicorn is not run: the expected outcome is #UD with the
 *    registers unchanged.
 */
enum { QUIRK_NONE, QUIRK_FIXED, QUIRK_SKIP };

static bool parity_even(uint64_t v)
{
    return !(__builtin_popcountll(v & 0xff) & 1);
}

/* Before running: QUIRK_SKIP if the state hits a deviation the oracle cannot be corrected for,
 * QUIRK_UD if the SDM's outcome is #UD and Unicorn must not run. */
enum { QUIRK_UD = 3 };

static int unicorn_skip(const struct gen *g)
{
    const struct oracle_form *f = g->f;
    if (g->lock && (!(f->flags & X_LOCK) || !g->mem))
        return QUIRK_UD; /* Q6 */
    if (f->nop == 2 && f->op[0] == 0x0f && (f->op[1] == 0xa4 || f->op[1] == 0xac) && g->mem &&
        g->riprel)
        return QUIRK_SKIP; /* Q3 */
    return QUIRK_NONE;
}

/* After running: correct Unicorn's result to the SDM's where it deviates. */
static int unicorn_fix(const struct gen *g, const struct state *in, const uint8_t *img,
                       struct result *u)
{
    const struct oracle_form *f = g->f;
    int sz = g->osz;

    if (u->vec != VEC_NONE)
        return QUIRK_NONE;
    if (g->lock && f->nop == 1 && (f->op[0] & 0xfe) == 0xf6 && f->digit == 3) { /* Q1 */
        uint64_t m = mask_of(sz), x = mem_get(img, g->ea, sz), r = (0 - x) & m, fl = 0;
        fl |= x ? FL_CF : 0;
        fl |= parity_even(r) ? FL_PF : 0;
        fl |= (x & 0xf) ? FL_AF : 0;
        fl |= r ? 0 : FL_ZF;
        fl |= (r >> (8 * sz - 1)) & 1 ? FL_SF : 0;
        fl |= x == (1ULL << (8 * sz - 1)) ? FL_OF : 0;
        u->s.rfl = (u->s.rfl & ~(uint64_t)FL_ARITH) | fl;
        return QUIRK_FIXED;
    }
    if (f->nop == 2 && f->op[0] == 0x0f && f->op[1] == 0xb1 && sz == 4) { /* Q2 */
        uint64_t d = g->mem ? mem_get(img, g->ea, 4) : reg_get(g, in, g->rmr, 4);
        bool eq = (in->r[R_AX] & 0xffffffffULL) == d;
        if (eq && g->rmr != R_AX && u->s.r[R_AX] != in->r[R_AX]) {
            u->s.r[R_AX] = in->r[R_AX];
            return QUIRK_FIXED;
        }
        if (!eq && !g->mem && u->s.r[g->rmr] != in->r[g->rmr]) {
            u->s.r[g->rmr] = in->r[g->rmr];
            return QUIRK_FIXED;
        }
        return QUIRK_NONE;
    }
    if (f->nop == 1 && f->op[0] == 0xc2 && (g->imm & 0x8000)) { /* Q4 */
        u->s.r[R_SP] += 0x10000;
        return QUIRK_FIXED;
    }
    if (f->nop == 1 && (f->op[0] == 0x9f || f->op[0] == 0x9e) && g->rex_on) { /* Q5 */
        const uint64_t lo = FL_SF | FL_ZF | FL_AF | FL_PF | FL_CF;
        u->s.r[R_SP] = in->r[R_SP];
        if (f->op[0] == 0x9f)
            u->s.r[R_AX] = (in->r[R_AX] & ~0xff00ULL) | ((in->rfl & lo) | 2) << 8;
        else
            u->s.rfl = (in->rfl & ~lo) | (in->r[R_AX] >> 8 & lo);
        return QUIRK_FIXED;
    }
    return QUIRK_NONE;
}

/* ---- driver ---- */

static unsigned iters = 500;
static uint64_t seed = 0x7a4d3e1;
static const char *filter;
static bool verbose;
static bool raw; /* TANDEM_ORACLE_RAW=1: no quirk handling (to re-check a newer Unicorn) */
static bool all; /* TANDEM_ORACLE_ALL=1: run forms whose feature tandem's CPUID lacks */
static unsigned long total_states, total_forms, total_skipped;

static uint8_t img[DATA_LEN];
static struct result ru, rt;

struct form_stats {
    unsigned states, mismatches, exceptions, quirks;
};

static void run_form(const struct oracle_form *f, size_t idx, int osz, bool mem,
                     struct form_stats *st)
{
    struct gen g;
    struct state in;
    unsigned reported = 0;

    uint64_t x = seed ^ (idx * 0x100 + (uint64_t)osz * 4 + (mem ? 1 : 0)) * 0x9e3779b97f4a7c15ULL;
    form_seed = seed;
    rng = splitmix(&x) | 1;
    for (unsigned i = 0; i < iters; i++) {
        generate(&g, f, osz, mem, &in, img);
        int q = unicorn_skip(&g);
        if (!raw && q == QUIRK_SKIP) {
            st->quirks++;
            continue;
        }
        if (q == QUIRK_UD) { /* even with TANDEM_ORACLE_RAW: Unicorn may abort */
            ru.s = in;
            ru.vec = EXC_UD;
            ru.note[0] = 0;
            st->quirks++;
        } else {
            run_unicorn(&g, &in, img, &ru);
        }
        if (!raw && unicorn_fix(&g, &in, img, &ru) == QUIRK_FIXED)
            st->quirks++;
        run_tandem(&g, &in, img, &rt);
        st->states++;
        if (ru.vec != VEC_NONE && ru.vec == rt.vec)
            st->exceptions++;
        if (!check(&g, &in, img, &ru, &rt, reported < 3, i)) {
            st->mismatches++;
            reported++;
        }
    }
}

static unsigned group_failures;

static void test_group(void **state)
{
    int grp = *(int *)*state;
    unsigned failed_forms = 0;

    for (size_t i = 0; i < oracle_nforms; i++) {
        const struct oracle_form *f = &oracle_forms[i];
        if (f->group != grp)
            continue;
        for (int sz = 1; sz <= 8; sz <<= 1) {
            if (!(f->sizes & sz))
                continue;
            for (int m = 0; m < 2; m++) {
                bool mem = m == 1;
                if (f->modrm == MR_NONE ? mem : !(f->rm & (mem ? RM_MEM : RM_REG)))
                    continue;
                snprintf(form_name, sizeof(form_name), "%s [%d-bit%s]", f->name, 8 * sz,
                         f->modrm == MR_NONE ? ""
                         : mem               ? ", mem"
                                             : ", reg");
                if (filter && !strstr(form_name, filter))
                    continue;
                if (!uc_has[f->need] || (!tandem_has[f->need] && !all)) {
                    printf("SKIP %s: CPUID feature missing in %s\n", form_name,
                           !uc_has[f->need] ? "Unicorn (the oracle)" : "tandem");
                    total_skipped++;
                    continue;
                }
                struct form_stats st = {0};
                run_form(f, i, sz, mem, &st);
                total_forms++;
                total_states += st.states;
                if (verbose || st.mismatches)
                    printf("%-4s %-48s %u/%u states mismatched, %u exceptions, %u quirks\n",
                           st.mismatches ? "FAIL" : "ok", form_name, st.mismatches, st.states,
                           st.exceptions, st.quirks);
                if (st.mismatches)
                    failed_forms++;
            }
        }
    }
    fflush(stdout);
    group_failures += failed_forms;
    if (failed_forms)
        fail_msg("%u %s forms disagree with Unicorn (seed 0x%llx)", failed_forms,
                 oracle_group_names[grp], (unsigned long long)seed);
}

static int setup(void **state)
{
    const char *e;
    (void)state;
    if ((e = getenv("TANDEM_ORACLE_SEED")))
        seed = strtoull(e, NULL, 0);
    if ((e = getenv("TANDEM_ORACLE_ITERS")))
        iters = (unsigned)strtoul(e, NULL, 0);
    filter = getenv("TANDEM_ORACLE_FORM");
    verbose = (e = getenv("TANDEM_ORACLE_VERBOSE")) && *e == '1';
    raw = (e = getenv("TANDEM_ORACLE_RAW")) && *e == '1';
    all = (e = getenv("TANDEM_ORACLE_ALL")) && *e == '1';
    if (tandem_init() < 0 || unicorn_init() < 0)
        return -1;
    features(uc_cpuid, uc_has);
    features(tandem_cpuid, tandem_has);
    printf("oracle: seed 0x%llx, %u states per form\n", (unsigned long long)seed, iters);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    printf("oracle: %lu forms, %lu states, %lu forms skipped\n", total_forms, total_states,
           total_skipped);
    uc_context_free(uc_ctx);
    uc_close(uc);
    free(cpu);
    free(vm);
    gmem_destroy(&gmem);
    return 0;
}

static int groups[G_NGROUPS];

int main(void)
{
    struct CMUnitTest tests[G_NGROUPS];
    for (int i = 0; i < G_NGROUPS; i++) {
        groups[i] = i;
        tests[i] = (struct CMUnitTest){
            .name = oracle_group_names[i], .test_func = test_group, .initial_state = &groups[i]};
    }
    return cmocka_run_group_tests_name("emu_oracle", tests, setup, teardown);
}
