/* entry.S: multiboot header, 32-bit entry, long mode setup, IDT stubs and the drop to ring 3. */

#define MB_MAGIC 0x1BADB002
/* bit 0: page-align modules, bit 1: memory info, bit 16: a.out kludge address fields */
#define MB_FLAGS 0x00010003

#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_UDATA 0x18
#define SEL_UCODE 0x20
#define SEL_TSS   0x28

#define NVEC 32       /* exception gates filled at boot */
#define IDT_ENTRIES 256 /* the rest stay not present until irq.c installs its gates (irq mode) */
#define NIRQ 8        /* device interrupt stubs: RT_IRQ_NVEC in rt.h */

#define MSR_EFER 0xC0000080

/* ---- multiboot v1 header (first in the image, so within the first 8 KiB of the file) ---- */
    .section .multiboot, "a"
    .balign 4
mb_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)
    .long mb_header         /* header_addr */
    .long __image_start     /* load_addr */
    .long __data_end        /* load_end_addr */
    .long __image_end       /* bss_end_addr */
    .long _start            /* entry_addr */

/* ---- 32-bit entry: EAX = 0x2BADB002, EBX = info, flat CS/DS, paging off; no stack ---- */
    .section .text.entry, "ax"
    .code32
    .globl _start
_start:
    cli
    movl %eax, rt_mb_magic
    movl %ebx, rt_mb_info

    /* TSS descriptor base (the image lies below 16 MiB: base bits 24..63 stay 0) */
    movl $tss, %eax
    movw %ax, gdt_tss + 2
    shrl $16, %eax
    movb %al, gdt_tss + 4
    lgdt gdt_ptr32

    movl $pml4, %eax
    movl %eax, %cr3
    movl $0x20, %eax                    /* CR4.PAE only */
    movl %eax, %cr4
    movl $MSR_EFER, %ecx                /* EFER.LME */
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl $0x80010031, %eax              /* CR0: PG WP NE ET PE */
    movl %eax, %cr0
    ljmp $SEL_KCODE, $long_entry

    .code64
long_entry:
    movl $SEL_KDATA, %eax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    movq $stack0_top, %rsp
    movl $SEL_TSS, %eax
    ltr %ax

    /* IDT: interrupt gates to the stubs in isr_table */
    movq $idt, %rdi
    movq $isr_table, %rsi
    movl $NVEC, %ecx
1:  movq (%rsi), %rax
    movw %ax, (%rdi)
    movw $SEL_KCODE, 2(%rdi)
    movw $0x8e00, 4(%rdi)
    shrq $16, %rax
    movw %ax, 6(%rdi)
    shrq $16, %rax
    movl %eax, 8(%rdi)
    addq $8, %rsi
    addq $16, %rdi
    decl %ecx
    jnz 1b
    lidt idt_ptr

    /* ring 3, IOPL=3, IF=0 */
    pushq $(SEL_UDATA | 3)
    pushq $stack3_top
    pushq $0x3002
    pushq $(SEL_UCODE | 3)
    pushq $user_entry
    iretq

user_entry:
    xorl %ebp, %ebp
    call rt_start
    ud2

/* void rt_wait_irq(uint64_t seen), ring 3: hlt raises #GP; rt_trap recognises this address,
 * sleeps in ring 0 unless the interrupt count already differs from seen (RDI), and resumes at
 * the ret. A fault, not `int $n`: that one raises #UD from ring 3 on kvm_pvm hosts. */
    .globl rt_wait_irq, rt_wait_hlt
rt_wait_irq:
rt_wait_hlt:
    hlt
    ret

/* long rt_ring0_call(uint64_t op, uint64_t arg), ring 3: the same way into ring 0 for the few
 * services ring 3 cannot do itself (trap.c: ring0_service): hlt raises #GP, rt_trap recognises
 * this address, does op with arg (RDI, RSI) and resumes at the ret with the result in RAX. */
    .globl rt_ring0_call, rt_ring0_hlt
rt_ring0_call:
rt_ring0_hlt:
    hlt
    ret

/* ---- exception stubs: push a dummy error code where the CPU pushes none, then the vector ---- */
.macro ISR vec
isr\vec:
    .if (\vec == 8) || (\vec == 10) || (\vec == 11) || (\vec == 12) || (\vec == 13) || \
        (\vec == 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
    .else
    pushq $0
    .endif
    pushq $\vec
    jmp isr_common
.endm

.altmacro
.set n, 0
.rept 32
    ISR %n
    .set n, n + 1
.endr

/* Save the caller-saved registers (struct rt_frame in start.c) and let rt_trap decide: it
 * returns when it emulated the faulting instruction (ring-3 port I/O), else it never returns.
 * The CPU aligned RSP to 16 before pushing its frame; 16 pushes keep it aligned for the call. */
isr_common:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    movq %rsp, %rdi
    call rt_trap
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    addq $16, %rsp                      /* vector, error code */
    iretq

/* ---- device interrupt stubs (irq mode; irq.c puts stub n in the IDT at RT_IRQ_VEC_BASE + n):
 * the same frame as an exception, with the stub's index where the vector goes ---- */
.macro IRQ n
irq\n:
    pushq $0
    pushq $\n
    jmp irq_common
.endm

.set n, 0
.rept NIRQ
    IRQ %n
    .set n, n + 1
.endr

/* rt_irq_dispatch(index) acknowledges the device and the local APIC. Only taken in ring 0,
 * inside rt_wait_irq's sleep (ring 3 runs with IF=0); 16 pushes keep RSP aligned for the call. */
irq_common:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    movq 72(%rsp), %rdi
    call rt_irq_dispatch
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    addq $16, %rsp
    iretq

/* The local APIC's spurious vector: no handler work, no EOI. */
    .globl rt_irq_spurious
rt_irq_spurious:
    iretq

    .section .rodata
    .balign 8
.macro ISRADDR vec
    .quad isr\vec
.endm
isr_table:
.set n, 0
.rept 32
    ISRADDR %n
    .set n, n + 1
.endr

.macro IRQADDR n
    .quad irq\n
.endm
    .globl rt_irq_stubs
rt_irq_stubs:
.set n, 0
.rept NIRQ
    IRQADDR %n
    .set n, n + 1
.endr

/* ---- descriptor tables and page tables (initialised data, never in .bss) ---- */
    .section .data
    .balign 16
gdt:
    .quad 0                             /* null */
    .quad 0x00af9a000000ffff            /* 0x08 kernel code, 64-bit */
    .quad 0x00cf92000000ffff            /* 0x10 kernel data */
    .quad 0x00cff2000000ffff            /* 0x18 user data */
    .quad 0x00affa000000ffff            /* 0x20 user code, 64-bit */
gdt_tss:                                /* 0x28 64-bit TSS (available), base filled at entry */
    .word 103, 0
    .byte 0, 0x89, 0, 0
    .long 0, 0
gdt_end:

    .balign 4
gdt_ptr32:                              /* lgdt from 32-bit code: 16-bit limit, 32-bit base */
    .word gdt_end - gdt - 1
    .long gdt

    .balign 8
idt_ptr:
    .word IDT_ENTRIES * 16 - 1
    .quad idt

    .balign 16
tss:
    .long 0
    .quad stack0_top                    /* rsp0 */
    .fill 88, 1, 0
    .word 0
    .word 104                           /* I/O map base beyond the limit: no bitmap (IOPL=3) */

    .globl rt_idt
    .balign 16
rt_idt:
idt:
    .fill IDT_ENTRIES * 16, 1, 0

    .globl rt_mb_magic, rt_mb_info
    .balign 4
rt_mb_magic:
    .long 0
rt_mb_info:
    .long 0

/* Identity map of the first 4 GiB with 2 MiB pages, user-accessible (ring 3 reaches RAM and
 * MMIO alike). 0xE0000000..4G (PCI hole, IOAPIC, LAPIC, MMIO devices) is uncached. */
    .section .data.pagetables, "aw"
    .balign 4096
pml4:
    .quad pdpt + 0x7
    .fill 511, 8, 0
pdpt:
    .quad pd + 0x0000 + 0x7
    .quad pd + 0x1000 + 0x7
    .quad pd + 0x2000 + 0x7
    .quad pd + 0x3000 + 0x7
    .fill 508, 8, 0
pd:
.set i, 0
.rept 2048
    .if i >= 1792
    .quad (i << 21) | 0x9f              /* P RW US PWT PCD PS */
    .else
    .quad (i << 21) | 0x87              /* P RW US PS */
    .endif
    .set i, i + 1
.endr

/* ---- stacks: not zeroed by the runtime (they are in use while it clears .bss) ---- */
    .section .stack, "aw", @nobits
    .balign 4096
stack0:
    .skip 16384
stack0_top:
stack3:
    .skip 65536
stack3_top:

    .section .note.GNU-stack, "", @progbits
