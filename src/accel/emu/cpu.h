/* cpu.h: tandem's x86-64 interpreter: the CPU record and the contract between its files.
 *
 * Files (one concept each):
 *   decode.c   prefixes, opcode maps, ModRM/SIB/displacement/immediate -> struct emu_insn
 *   exec*.c    instruction semantics by group (alu, shift, muldiv, bit, string, control, system)
 *   flags.c    lazy flags: flags are computed from the last operation's inputs only when read
 *   mmu.c      linear -> physical (paging modes, A/D bits, NX, U/S, R/W, WP), the software TLB,
 *              guest memory access (RAM through host pointers, anything else to the MMIO hook),
 *              exact dirty tracking
 *   seg.c      segment register loads and descriptor checks, GDT/LDT/TSS access
 *   excp.c     exception and interrupt delivery through the IDT (stack switch, IST, error codes,
 *              double and triple fault), IRET, far JMP/CALL/RET, SYSCALL/SYSRET
 *   msr.c      RDMSR/WRMSR and the MSR model; cpuid.c: the documented CPUID model
 *   lapic.c    the local APIC (per vCPU) and its timer; ioapic.c: the I/O APIC (per VM)
 *
 * Error model: an instruction either completes or faults with *no* architectural state changed
 * (registers, RIP, flags, and memory writes of that instruction; a REP string instruction
 * commits per iteration). A fault is raised with emu_raise(), which longjmps to the handler set
 * by emu_exec(); emu_exec() then delivers the exception through the guest IDT with RIP pointing
 * at the faulting instruction (traps: after it). Nothing in here ever exits the process.
 *
 * Threads: an emu_cpu is touched only by its vCPU thread, except the fields marked "atomic"
 * (exit_request, irq_pending), which other threads set to kick the vCPU or post interrupts.
 */
#pragma once

#include <linux/kvm.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct guest_mem;
struct emu_lapic;
struct emu_vm;

/* General-purpose register numbers, in encoding order. */
enum {
    R_AX,
    R_CX,
    R_DX,
    R_BX,
    R_SP,
    R_BP,
    R_SI,
    R_DI,
    R_R8,
    R_R9,
    R_R10,
    R_R11,
    R_R12,
    R_R13,
    R_R14,
    R_R15
};
/* Segment registers, in encoding order (ModRM reg of MOV Sreg). */
enum { S_ES, S_CS, S_SS, S_DS, S_FS, S_GS, S_NONE = 7 };

/* Exception vectors. */
enum {
    EXC_DE = 0,
    EXC_DB = 1,
    EXC_NMI = 2,
    EXC_BP = 3,
    EXC_OF = 4,
    EXC_BR = 5,
    EXC_UD = 6,
    EXC_NM = 7,
    EXC_DF = 8,
    EXC_TS = 10,
    EXC_NP = 11,
    EXC_SS = 12,
    EXC_GP = 13,
    EXC_PF = 14,
    EXC_MF = 16,
    EXC_AC = 17,
    EXC_MC = 18,
    EXC_XM = 19,
};

/* RFLAGS bits. */
#define FL_CF    0x0001u
#define FL_PF    0x0004u
#define FL_AF    0x0010u
#define FL_ZF    0x0040u
#define FL_SF    0x0080u
#define FL_TF    0x0100u
#define FL_IF    0x0200u
#define FL_DF    0x0400u
#define FL_OF    0x0800u
#define FL_IOPL  0x3000u
#define FL_NT    0x4000u
#define FL_RF    0x10000u
#define FL_VM    0x20000u
#define FL_AC    0x40000u
#define FL_VIF   0x80000u
#define FL_VIP   0x100000u
#define FL_ID    0x200000u
#define FL_ARITH (FL_CF | FL_PF | FL_AF | FL_ZF | FL_SF | FL_OF)

#define CR0_PE         0x1u
#define CR0_MP         0x2u
#define CR0_EM         0x4u
#define CR0_TS         0x8u
#define CR0_ET         0x10u
#define CR0_NE         0x20u
#define CR0_WP         0x10000u
#define CR0_AM         0x40000u
#define CR0_NW         0x20000000u
#define CR0_CD         0x40000000u
#define CR0_PG         0x80000000u
#define CR4_PSE        0x10u
#define CR4_PAE        0x20u
#define CR4_PGE        0x80u
#define CR4_OSFXSR     0x200u
#define CR4_OSXMMEXCPT 0x400u
#define CR4_FSGSBASE   0x10000u
#define CR4_OSXSAVE    0x40000u
#define CR4_SMEP       0x100000u
#define CR4_SMAP       0x200000u
#define EFER_SCE       0x1u
#define EFER_LME       0x100u
#define EFER_LMA       0x400u
#define EFER_NXE       0x800u

/* Page-fault error code bits. */
#define PF_P    0x1u
#define PF_W    0x2u
#define PF_U    0x4u
#define PF_RSVD 0x8u
#define PF_I    0x10u

/* Kinds of memory access, for permission checks and #PF error codes. */
enum emu_access { ACC_READ = 0, ACC_WRITE = 1, ACC_EXEC = 2 };

/* One software-TLB entry: a 4 KiB virtual page -> host page (RAM) or none (MMIO). Only mmu.c
 * and its inline fast paths (mmu.h) look inside. */
struct emu_tlb_entry {
    uint64_t tag;       /* linear page address | 1 (valid); 0 = empty */
    uint8_t *host;      /* host address of the page, NULL for MMIO/unbacked */
    uint64_t gpa;       /* guest-physical page address */
    uint64_t dirty_gen; /* dirty-log generation in which this page was last marked */
    uint32_t perm;      /* EMU_TLB_* rights (mmu.h); write rights imply the leaf's D bit */
    uint8_t shift;      /* size of the guest page it came from: 12, 21, 22 or 30 */
};
#define EMU_TLB_SIZE 512 /* direct-mapped, a power of two */

/* What emu_exec() stopped for. */
enum emu_stop {
    EMU_STOP_NONE = 0,
    EMU_STOP_BUDGET,   /* executed max instructions */
    EMU_STOP_REQUEST,  /* exit_request was set (kick) */
    EMU_STOP_HLT,      /* HLT executed (RIP past it); c->halted is set */
    EMU_STOP_IRQ,      /* something changed interrupt deliverability (STI, POPF, IRET, LAPIC
                        * TPR/EOI write, ...): the caller re-checks pending interrupts */
    EMU_STOP_SHUTDOWN, /* triple fault */
    EMU_STOP_RESET,    /* the guest asked for a reset by other means */
    EMU_STOP_ERROR,    /* an internal error; c->error holds a message */
};

/* Host services an emu_cpu calls back into (set by the accelerator glue, accel/emu.c). */
struct emu_io {
    void *opaque;
    /* Port I/O, after the IOPL/bitmap check passed. len 1, 2 or 4. */
    void (*pio)(void *opaque, uint16_t port, void *data, uint32_t len, bool is_write);
    /* Physical access outside RAM and outside the LAPIC page. len 1, 2, 4 or 8. */
    void (*mmio)(void *opaque, uint64_t gpa, void *data, uint32_t len, bool is_write);
};

struct emu_cpu {
    /* --- architectural state --- */
    uint64_t r[16];
    uint64_t rip;
    /* RFLAGS without the arithmetic flags' lazy part: read with emu_get_rflags() and write with
     * emu_set_rflags(); only flags.c looks at the lazy fields. */
    uint64_t rflags;
    struct kvm_segment seg[6]; /* ES CS SS DS FS GS: selector + hidden part */
    struct kvm_segment tr, ldt;
    struct kvm_dtable gdt, idt;
    uint64_t cr0, cr2, cr3, cr4, cr8, efer;
    uint64_t dr[8]; /* DR0-3, (4, 5 unused), DR6, DR7 */
    uint64_t xcr0;
    uint8_t cpl; /* current privilege level (CS.DPL normally) */
    /* MSRs beyond EFER (msr.c). */
    uint64_t star, lstar, cstar, sfmask, kernel_gs_base;
    uint64_t sysenter_cs, sysenter_esp, sysenter_eip;
    uint64_t pat, misc_enable, tsc_aux, apic_base, tsc_offset, tsc_deadline;
    /* FXSAVE image (512 bytes): FPU/SSE are not executed (#UD/#NM), but the state is kept so a
     * snapshot round-trips with KVM. */
    _Alignas(16) uint8_t fxsave[512];

    /* Interrupt shadow after STI / MOV SS / POP SS: no interrupt before the next instruction. */
    uint8_t shadow;
    bool halted;
    /* Pending exception (for the state record; emu delivers at once so it is normally none). */
    bool nmi_pending;

    /* --- lazy flags (flags.c) --- */
    uint64_t lf_res, lf_src, lf_dst; /* result and operands of the last flag-setting op */
    uint32_t lf_op;                  /* enum in flags.c; 0 = rflags holds every flag */
    uint32_t lf_size;                /* operand size in bytes */

    /* --- mode cache, refreshed by emu_mode_changed() after CR0/CR4/EFER/CS changes --- */
    uint8_t long_mode; /* EFER.LMA */
    uint8_t code64;    /* LMA && CS.L */
    uint8_t code32;    /* !code64 && CS.D */
    uint8_t paging;    /* CR0.PG */

    /* --- software TLB (mmu.c) --- */
    struct emu_tlb_entry tlb[EMU_TLB_SIZE];

    /* --- execution bookkeeping --- */
    uint64_t icount;     /* instructions retired (deterministic time with icount=on) */
    uint64_t insn_start; /* RIP of the instruction being executed */
    jmp_buf fault_jmp;   /* emu_raise() lands here */
    int fault_vec;       /* added by interpreter: set by emu_raise() before the longjmp */
    uint32_t fault_err;  /* added by interpreter: its error code (if the vector has one) */
    enum emu_stop stop;  /* set by an instruction to end the batch after it */
    int fault_depth;     /* 0, or the class of the exception being delivered (double fault) */
    char error[160];

    /* --- wiring --- */
    int id;
    struct guest_mem *mem;
    struct emu_vm *vm;       /* shared: IOAPIC, dirty generation, ioeventfds */
    struct emu_lapic *lapic; /* this vCPU's local APIC */
    struct emu_io io;
    atomic_bool exit_request; /* atomic: set by another thread to stop at the next boundary */
    /* Set by unimplemented-opcode logging so each opcode is logged once per process. */
};

/* ---- exec: the interpreter loop (exec.c) ---- */

/* Reset to the architectural power-on state (real mode at F000:FFF0; tandem's loader then
 * sets the Multiboot entry state). */
void emu_cpu_reset(struct emu_cpu *c);
/* Execute up to max instructions. Delivers exceptions raised on the way; returns why it
 * stopped (also left in c->stop). Interrupts are not taken here: the caller does that between
 * batches with emu_deliver_interrupt(). */
enum emu_stop emu_exec(struct emu_cpu *c, uint64_t max);

/* ---- flags.c ---- */
uint64_t emu_get_rflags(struct emu_cpu *c);
void emu_set_rflags(struct emu_cpu *c, uint64_t v); /* raw: no privilege checks */

/* ---- faults (excp.c) ---- */

/* Abort the current instruction with exception vec (err used when the vector pushes one).
 * For #PF the caller sets c->cr2 first (mmu.c does). Never returns. */
_Noreturn void emu_raise(struct emu_cpu *c, int vec, uint32_t err);
/* Deliver an exception or interrupt through the IDT now (state is at an instruction boundary,
 * RIP is the return address). soft: INT n/INT3/INTO (DPL check against CPL, no error code).
 * Escalates to #DF and to a triple fault (c->stop = EMU_STOP_SHUTDOWN). */
void emu_deliver(struct emu_cpu *c, int vec, bool has_err, uint32_t err, bool soft);
/* Take an external interrupt vector (from the LAPIC); the caller checked IF and the shadow. */
void emu_deliver_interrupt(struct emu_cpu *c, int vec);
/* True if vec pushes an error code when raised as an exception. */
bool emu_vec_has_error(int vec);

/* Far transfers and returns (excp.c), each raising on a fault before changing state. */
void emu_far_jmp(struct emu_cpu *c, uint16_t sel, uint64_t off);
void emu_far_call(struct emu_cpu *c, uint16_t sel, uint64_t off, int opsize);
void emu_far_ret(struct emu_cpu *c, int opsize, uint16_t pop_bytes);
void emu_iret(struct emu_cpu *c, int opsize);
void emu_syscall(struct emu_cpu *c);
void emu_sysret(struct emu_cpu *c, int opsize);

/* ---- segments (seg.c) ---- */

/* MOV/POP to ES, SS, DS, FS, GS with the protected-mode checks (#GP/#SS/#NP with selector
 * error codes). CS is loaded only by far transfers. */
void emu_load_seg(struct emu_cpu *c, int sreg, uint16_t sel);
/* Read the 8-byte descriptor for sel from the GDT/LDT (raises #GP(sel) beyond the limit). */
uint64_t emu_read_descriptor(struct emu_cpu *c, uint16_t sel, int fault_vec);
/* Fill a kvm_segment's hidden part from a descriptor (base/limit/attributes, 16-byte system
 * descriptors in long mode take the high half from desc_hi). */
void emu_seg_from_desc(struct kvm_segment *s, uint16_t sel, uint64_t desc, uint64_t desc_hi);
void emu_lgdt_lidt(struct emu_cpu *c, bool idt, uint64_t la, int opsize);
void emu_ltr(struct emu_cpu *c, uint16_t sel);
void emu_lldt(struct emu_cpu *c, uint16_t sel);
/* IOPL/TSS-bitmap check for IN/OUT/INS/OUTS: raises #GP(0) when not allowed. */
void emu_check_io(struct emu_cpu *c, uint16_t port, int len);
/* Recompute long_mode/code64/code32/paging; flush the TLB when paging state changed. */
void emu_mode_changed(struct emu_cpu *c);

/* ---- control registers and MSRs (msr.c) ---- */
void emu_write_cr(struct emu_cpu *c, int cr, uint64_t v); /* #GP on reserved bits */
uint64_t emu_read_cr(struct emu_cpu *c, int cr);
/* 0 on success; -1 if the MSR does not exist (the caller raises #GP(0)). */
int emu_rdmsr(struct emu_cpu *c, uint32_t msr, uint64_t *v);
int emu_wrmsr(struct emu_cpu *c, uint32_t msr, uint64_t v);
void emu_cpuid(struct emu_cpu *c, uint32_t leaf, uint32_t sub, uint32_t out[4]);
/* The TSC as the guest sees it (host time, or instruction count with icount=on). */
uint64_t emu_rdtsc(struct emu_cpu *c);

/* ---- memory (mmu.c) ---- */

/* Linear address of seg:off for the current mode (64-bit: FS/GS base only; else base + off
 * truncated to 32 bits). addr_size is 2, 4 or 8 (the instruction's address size). */
uint64_t emu_linear(struct emu_cpu *c, int sreg, uint64_t off, int addr_size);
/* Access linear memory with the current CPL's permissions (user = CPL 3), raising #PF.
 * Accesses may cross a page; len 1, 2, 4 or 8 (read/write) or up to 16 (bytes variants). */
uint64_t emu_read(struct emu_cpu *c, uint64_t la, int len);
void emu_write(struct emu_cpu *c, uint64_t la, uint64_t v, int len);
void emu_read_bytes(struct emu_cpu *c, uint64_t la, void *buf, int len);
void emu_write_bytes(struct emu_cpu *c, uint64_t la, const void *buf, int len);
/* Supervisor access regardless of CPL (descriptor tables, TSS, IDT, stacks in delivery). */
uint64_t emu_read_sys(struct emu_cpu *c, uint64_t la, int len);
void emu_write_sys(struct emu_cpu *c, uint64_t la, uint64_t v, int len);
/* Instruction fetch of up to len bytes at la (exec permission); returns bytes fetched
 * (fewer only if the next page faults *and* the bytes before suffice is unknown: the decoder
 * asks byte by byte at page ends, so a fault is raised only for bytes it needs). */
int emu_fetch(struct emu_cpu *c, uint64_t la, uint8_t *buf, int len);
/* Host pointer for an aligned naturally-sized RAM access at la that the caller will perform
 * atomically (LOCK, XCHG), after the permission checks and dirty marking; NULL when the target
 * is not RAM (the caller falls back to emu_read/emu_write). */
void *emu_atomic_ptr(struct emu_cpu *c, uint64_t la, int len);
void emu_tlb_flush(struct emu_cpu *c);
void emu_tlb_flush_page(struct emu_cpu *c, uint64_t la);
/* Guest-physical access (page walks, delivery of nothing else): RAM or MMIO hook. */
uint64_t emu_phys_read(struct emu_cpu *c, uint64_t gpa, int len);
void emu_phys_write(struct emu_cpu *c, uint64_t gpa, uint64_t v, int len);

/* ---- the VM-wide part shared by every emu_cpu (owned by accel/emu.c) ---- */
#define EMU_MAX_IOEVENTFDS 64
struct emu_ioeventfd {
    uint64_t addr;
    uint32_t len;
    uint64_t datamatch;
    int fd;
};

struct emu_vm {
    struct guest_mem *mem;
    /* Dirty logging: a TLB entry whose dirty_gen differs from dirty_gen here marks its page in
     * mem->vmm_dirty before the next write through it (see docs/architecture.md, "exact dirty
     * tracking"). Bumped by the harvest. */
    _Atomic uint64_t dirty_gen;
    atomic_bool logging;
    bool icount; /* --accel emu,icount=on: time follows the instruction count */
    struct emu_ioapic *ioapic;
    int ncpus;
    struct emu_cpu *cpus[16];
    /* ioeventfd equivalents: an MMIO write matching (addr, len, datamatch) signals fd instead of
     * reaching the bus. Read by vCPU threads, changed only while they are paused or not yet
     * started (registration happens at device setup). */
    unsigned nioeventfds;
    struct emu_ioeventfd ioeventfds[EMU_MAX_IOEVENTFDS];
};

/* Implemented by the glue (accel/emu.c): something (an interrupt) needs the vCPU's attention:
 * sets exit_request and wakes it from HLT. Callable from any thread. */
void emu_cpu_notify(struct emu_cpu *c);
/* The vCPU's clock in ns: host monotonic time, or with icount the instruction count (1 insn =
 * 1 ns). The TSC runs at 1 GHz on both (TSC = this + tsc_offset). */
uint64_t emu_cpu_time_ns(struct emu_cpu *c);

/* added by interpreter */
/* How emu_raise() (excp.c) hands a fault to emu_exec() (exec.c): it stores the vector and the
 * error code in c->fault_vec / c->fault_err and does longjmp(c->fault_jmp, 1). exec.c then sets
 * rip = insn_start and calls emu_deliver(c, fault_vec, emu_vec_has_error(fault_vec), fault_err,
 * false). INT n/INT3/INTO call emu_deliver(..., soft=true) from inside the instruction with RIP
 * already past it; a fault raised there lands in exec.c, which restores rip to the INT
 * instruction and delivers that fault. Faults count against emu_exec()'s budget.
 * The interpreter also reads TLB entries through mmu.h's emu_tlb_slot() and EMU_TLB_* rights:
 * instruction fetch (decode.c: X/UX + RAM) and REP MOVS/STOS runs (string.c: R/UR, W/UW + RAM
 * and the dirty_gen check of emu_write_inline). */

/* added by system */
/* emu_read, emu_write and emu_fetch are macros over static inline TLB-hit fast paths (mmu.h,
 * included here); the out-of-line functions of the same names still exist. Far transfers,
 * SYSCALL/SYSRET and emu_deliver(soft) expect c->rip already past the instruction. emu_deliver()
 * never raises for a hardware event: nested faults escalate inside it (#DF, triple fault); for
 * soft=true a fault of the delivery itself is re-raised to exec.c (RIP back to the INT). */
/* Power-on values of the MSRs (PAT, MISC_ENABLE, APIC_BASE with BSP for id 0, EFER, SYSCALL
 * and SYSENTER MSRs) and an empty TLB: the glue calls it after emu_cpu_reset() (msr.c). */
void emu_msr_reset(struct emu_cpu *c);
#include "accel/emu/mmu.h"
