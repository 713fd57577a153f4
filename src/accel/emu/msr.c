/* msr.c: control registers (MOV CR, with long-mode activation) and the MSR model (RDMSR/WRMSR,
 * the TSC); the list of MSRs and their behaviour is in docs/emulator.md, "MSRs".
 */
#include "accel/emu/apic.h"
#include "accel/emu/cpu.h"
#include "accel/emu/sys.h"

#define MSR_TSC               0x10
#define MSR_APIC_BASE         0x1b
#define MSR_FEATURE_CONTROL   0x3a
#define MSR_UCODE_REV         0x8b
#define MSR_PLATFORM_INFO     0xce
#define MSR_MTRRCAP           0xfe
#define MSR_SYSENTER_CS       0x174
#define MSR_SYSENTER_ESP      0x175
#define MSR_SYSENTER_EIP      0x176
#define MSR_MCG_CAP           0x179
#define MSR_MCG_STATUS        0x17a
#define MSR_MISC_ENABLE       0x1a0
#define MSR_DEBUGCTL          0x1d9
#define MSR_MTRR_PHYS_FIRST   0x200
#define MSR_MTRR_PHYS_LAST    0x20f
#define MSR_MTRR_FIX64K       0x250
#define MSR_MTRR_FIX16K_80000 0x258
#define MSR_MTRR_FIX16K_A0000 0x259
#define MSR_MTRR_FIX4K_FIRST  0x268
#define MSR_MTRR_FIX4K_LAST   0x26f
#define MSR_PAT               0x277
#define MSR_MTRR_DEF_TYPE     0x2ff
#define MSR_TSC_DEADLINE      0x6e0
#define MSR_EFER              0xc0000080
#define MSR_STAR              0xc0000081
#define MSR_LSTAR             0xc0000082
#define MSR_CSTAR             0xc0000083
#define MSR_SFMASK            0xc0000084
#define MSR_FS_BASE           0xc0000100
#define MSR_GS_BASE           0xc0000101
#define MSR_KERNEL_GS_BASE    0xc0000102
#define MSR_TSC_AUX           0xc0000103

#define APIC_BASE_BSP    0x100ULL
#define APIC_BASE_EXTD   0x400ULL
#define APIC_BASE_ENABLE 0x800ULL
#define APIC_BASE_ADDR   0x000000fffffff000ULL

/* CR4 bits the model supports (matching CPUID): VME and PVI are not (no virtual-8086 mode). */
#define CR4_VALID                                                                                  \
    (0x4ULL /* TSD */ | 0x8ULL /* DE */ | CR4_PSE | CR4_PAE | 0x40ULL /* MCE */ | CR4_PGE |        \
     0x100ULL /* PCE */ | CR4_OSFXSR | CR4_OSXMMEXCPT | CR4_SMEP)

/* Power-on values of the MSRs this file owns. */
void emu_msr_reset(struct emu_cpu *c)
{
    c->efer = 0;
    c->star = c->lstar = c->cstar = c->sfmask = c->kernel_gs_base = 0;
    c->sysenter_cs = c->sysenter_esp = c->sysenter_eip = 0;
    c->pat = 0x0007040600070406ULL;
    c->misc_enable = 0x1801; /* fast strings; BTS and PEBS unavailable */
    c->tsc_aux = 0;
    c->tsc_deadline = 0;
    c->apic_base = EMU_LAPIC_BASE | APIC_BASE_ENABLE | (c->id == 0 ? APIC_BASE_BSP : 0);
    if (c->lapic)
        emu_lapic_set_base(c->lapic, c->apic_base);
    emu_tlb_flush(c);
}

uint64_t emu_read_cr(struct emu_cpu *c, int cr)
{
    switch (cr) {
    case 0:
        return c->cr0;
    case 2:
        return c->cr2;
    case 3:
        return c->cr3;
    case 4:
        return c->cr4;
    case 8:
        if (c->lapic)
            c->cr8 = emu_lapic_get_cr8(c->lapic);
        return c->cr8;
    default:
        emu_raise(c, EXC_UD, 0);
    }
}

static void write_cr0(struct emu_cpu *c, uint64_t v)
{
    uint64_t old = c->cr0;

    if (v >> 32)
        emu_raise(c, EXC_GP, 0);
    v |= CR0_ET;
    if ((v & CR0_PG) && !(v & CR0_PE))
        emu_raise(c, EXC_GP, 0);
    if ((v & CR0_NW) && !(v & CR0_CD))
        emu_raise(c, EXC_GP, 0);
    if ((v & CR0_PG) && !(old & CR0_PG) && (c->efer & EFER_LME)) {
        /* Long-mode activation. */
        if (!(c->cr4 & CR4_PAE) || c->seg[S_CS].l)
            emu_raise(c, EXC_GP, 0);
        c->efer |= EFER_LMA;
    }
    if (!(v & CR0_PG) && (old & CR0_PG) && (c->efer & EFER_LMA)) {
        /* Leaving long mode: only from compatibility mode. */
        if (c->code64)
            emu_raise(c, EXC_GP, 0);
        c->efer &= ~(uint64_t)EFER_LMA;
    }
    c->cr0 = v;
    if ((old ^ v) & (CR0_PG | CR0_WP | CR0_PE))
        emu_tlb_flush(c);
}

static void write_cr4(struct emu_cpu *c, uint64_t v)
{
    uint64_t old = c->cr4;

    if (v & ~CR4_VALID)
        emu_raise(c, EXC_GP, 0);
    if ((c->efer & EFER_LMA) && !(v & CR4_PAE))
        emu_raise(c, EXC_GP, 0);
    c->cr4 = v;
    if ((old ^ v) & (CR4_PSE | CR4_PAE | CR4_PGE | CR4_SMEP))
        emu_tlb_flush(c);
}

void emu_write_cr(struct emu_cpu *c, int cr, uint64_t v)
{
    switch (cr) {
    case 0:
        write_cr0(c, v);
        break;
    case 2:
        c->cr2 = v;
        break;
    case 3:
        if (c->long_mode && (v & 0xffffff0000000000ULL)) /* above MAXPHYADDR (no PCID) */
            emu_raise(c, EXC_GP, 0);
        c->cr3 = c->long_mode ? v : v & 0xffffffffULL;
        emu_tlb_flush(c); /* global pages too (PGE is not modelled) */
        break;
    case 4:
        write_cr4(c, v);
        break;
    case 8:
        if (v & ~0xfULL)
            emu_raise(c, EXC_GP, 0);
        c->cr8 = v;
        if (c->lapic)
            emu_lapic_set_cr8(c->lapic, v);
        if (c->stop == EMU_STOP_NONE)
            c->stop = EMU_STOP_IRQ;
        break;
    default:
        emu_raise(c, EXC_UD, 0);
    }
    emu_mode_changed(c);
}

uint64_t emu_rdtsc(struct emu_cpu *c)
{
    return emu_cpu_time_ns(c) + c->tsc_offset;
}

int emu_rdmsr(struct emu_cpu *c, uint32_t msr, uint64_t *v)
{
    switch (msr) {
    case MSR_TSC:
        *v = emu_rdtsc(c);
        return 0;
    case MSR_APIC_BASE:
        *v = c->apic_base;
        return 0;
    case MSR_FEATURE_CONTROL:
        *v = 1; /* locked, VMX off */
        return 0;
    case MSR_UCODE_REV:
        *v = 0x1ULL << 32;
        return 0;
    case MSR_PLATFORM_INFO:
        *v = 10ULL << 8; /* maximum non-turbo ratio 10 x 100 MHz = the 1 GHz TSC */
        return 0;
    case MSR_MTRRCAP:
        *v = 0x508; /* 8 variable ranges, fixed ranges, write-combining */
        return 0;
    case MSR_SYSENTER_CS:
        *v = c->sysenter_cs;
        return 0;
    case MSR_SYSENTER_ESP:
        *v = c->sysenter_esp;
        return 0;
    case MSR_SYSENTER_EIP:
        *v = c->sysenter_eip;
        return 0;
    case MSR_MCG_CAP:
    case MSR_MCG_STATUS:
    case MSR_DEBUGCTL:
        *v = 0;
        return 0;
    case MSR_MISC_ENABLE:
        *v = c->misc_enable;
        return 0;
    case MSR_PAT:
        *v = c->pat;
        return 0;
    case MSR_TSC_DEADLINE:
        *v = c->lapic ? emu_lapic_get_tsc_deadline(c->lapic) : c->tsc_deadline;
        return 0;
    case MSR_EFER:
        *v = c->efer;
        return 0;
    case MSR_STAR:
        *v = c->star;
        return 0;
    case MSR_LSTAR:
        *v = c->lstar;
        return 0;
    case MSR_CSTAR:
        *v = c->cstar;
        return 0;
    case MSR_SFMASK:
        *v = c->sfmask;
        return 0;
    case MSR_FS_BASE:
        *v = c->seg[S_FS].base;
        return 0;
    case MSR_GS_BASE:
        *v = c->seg[S_GS].base;
        return 0;
    case MSR_KERNEL_GS_BASE:
        *v = c->kernel_gs_base;
        return 0;
    case MSR_TSC_AUX:
        *v = c->tsc_aux;
        return 0;
    default:
        break;
    }
    if ((msr >= MSR_MTRR_PHYS_FIRST && msr <= MSR_MTRR_PHYS_LAST) || msr == MSR_MTRR_FIX64K ||
        msr == MSR_MTRR_FIX16K_80000 || msr == MSR_MTRR_FIX16K_A0000 ||
        (msr >= MSR_MTRR_FIX4K_FIRST && msr <= MSR_MTRR_FIX4K_LAST) || msr == MSR_MTRR_DEF_TYPE) {
        *v = 0; /* MTRRs disabled: everything write-back as far as the emulator cares */
        return 0;
    }
    return -1;
}

static bool pat_valid(uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        unsigned t = (unsigned)(v >> (8 * i)) & 0xff;
        if (t == 2 || t == 3 || t > 7)
            return false;
    }
    return true;
}

int emu_wrmsr(struct emu_cpu *c, uint32_t msr, uint64_t v)
{
    switch (msr) {
    case MSR_TSC:
        c->tsc_offset = v - emu_cpu_time_ns(c);
        return 0;
    case MSR_APIC_BASE:
        /* Reserved bits, x2APIC (not modelled); BSP is read-only. */
        if (v & ~(APIC_BASE_ADDR | APIC_BASE_ENABLE | APIC_BASE_BSP))
            return -1;
        c->apic_base = (v & ~APIC_BASE_BSP) | (c->apic_base & APIC_BASE_BSP);
        if (c->lapic)
            emu_lapic_set_base(c->lapic, c->apic_base);
        emu_tlb_flush(c); /* the APIC page is MMIO in the TLB */
        return 0;
    case MSR_UCODE_REV:
    case MSR_DEBUGCTL:
    case MSR_MTRR_DEF_TYPE:
        return 0; /* accepted and ignored */
    case MSR_MCG_STATUS:
        return v ? -1 : 0;
    case MSR_SYSENTER_CS:
        c->sysenter_cs = v & 0xffff;
        return 0;
    case MSR_SYSENTER_ESP:
    case MSR_SYSENTER_EIP:
        if (!emu_canonical(v))
            return -1;
        if (msr == MSR_SYSENTER_ESP)
            c->sysenter_esp = v;
        else
            c->sysenter_eip = v;
        return 0;
    case MSR_MISC_ENABLE:
        c->misc_enable = (c->misc_enable & 0x1800) | (v & ~0x1800ULL);
        return 0;
    case MSR_PAT:
        if (!pat_valid(v))
            return -1;
        c->pat = v;
        return 0;
    case MSR_TSC_DEADLINE:
        c->tsc_deadline = v;
        if (c->lapic)
            emu_lapic_set_tsc_deadline(c->lapic, v);
        return 0;
    case MSR_EFER:
        if (v & ~(uint64_t)(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE))
            return -1;
        if ((c->cr0 & CR0_PG) && ((v ^ c->efer) & EFER_LME))
            return -1;
        v = (v & ~(uint64_t)EFER_LMA) | (c->efer & EFER_LMA);
        if ((v ^ c->efer) & EFER_NXE)
            emu_tlb_flush(c);
        c->efer = v;
        emu_mode_changed(c);
        return 0;
    case MSR_STAR:
        c->star = v;
        return 0;
    case MSR_SFMASK:
        c->sfmask = v & 0xffffffffULL;
        return 0;
    case MSR_TSC_AUX:
        if (v >> 32)
            return -1;
        c->tsc_aux = v;
        return 0;
    case MSR_LSTAR:
    case MSR_CSTAR:
    case MSR_FS_BASE:
    case MSR_GS_BASE:
    case MSR_KERNEL_GS_BASE:
        if (!emu_canonical(v))
            return -1;
        if (msr == MSR_LSTAR)
            c->lstar = v;
        else if (msr == MSR_CSTAR)
            c->cstar = v;
        else if (msr == MSR_FS_BASE)
            c->seg[S_FS].base = v;
        else if (msr == MSR_GS_BASE)
            c->seg[S_GS].base = v;
        else
            c->kernel_gs_base = v;
        return 0;
    default:
        break;
    }
    if ((msr >= MSR_MTRR_PHYS_FIRST && msr <= MSR_MTRR_PHYS_LAST) || msr == MSR_MTRR_FIX64K ||
        msr == MSR_MTRR_FIX16K_80000 || msr == MSR_MTRR_FIX16K_A0000 ||
        (msr >= MSR_MTRR_FIX4K_FIRST && msr <= MSR_MTRR_FIX4K_LAST))
        return 0; /* ignored: reads stay 0 */
    return -1;
}
