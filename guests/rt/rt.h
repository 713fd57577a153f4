/* rt.h: the test guests' mini-runtime (serial, printf, exit, command line, memory map). */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "../../src/core/mix.h"

/* Exit values shared by all guests (written to the debug-exit port 0xf4). */
#define RT_EXIT_OK        0 /* finished normally */
#define RT_EXIT_CONFIG    2 /* bad command line or not enough RAM */
#define RT_EXIT_CORRUPT   3 /* the guest's self-check failed */
#define RT_EXIT_EXCEPTION 4 /* a CPU exception reached the runtime's IDT */

#define RT_DEBUG_EXIT_PORT 0xf4
#define RT_COM1            0x3f8

/* Lowest address the guests use for their work regions (above the image and the boot info). */
#define RT_REGION_BASE (16ull << 20)

/* Guest entry point, called in ring 3 (IOPL=3, IF=0) once the runtime is set up. Its return
 * value is passed to rt_exit(). */
int main(void);

/* Port I/O works from ring 3: natively where the CPU honours IOPL=3, otherwise the #GP it
 * raises reaches rt_trap (ring 0), which performs the access and resumes after the
 * instruction. Some software KVMs (kvm_pvm) run guest ring 3 with IOPL=0. */
static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline void outw(uint16_t port, uint16_t v)
{
    __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline void outl(uint16_t port, uint32_t v)
{
    __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port) : "memory");
    return v;
}

static inline uint16_t inw(uint16_t port)
{
    uint16_t v;
    __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port) : "memory");
    return v;
}

static inline uint32_t inl(uint16_t port)
{
    uint32_t v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port) : "memory");
    return v;
}

/* 1 if ring-3 in/out run natively (IOPL=3 honoured), 0 if each one traps to ring 0. */
int rt_io_native(void);
/* RFLAGS.IOPL as ring 3 sees it (pushfq). */
unsigned rt_iopl(void);
/* Set RFLAGS.IOPL for ring 3 (0..3), from ring 0 (entered by a faulting hlt, see rt_wait_irq).
 * With IOPL < 3 every ring-3 in/out raises #GP and is emulated by rt_trap. */
void rt_set_iopl(unsigned iopl);
/* in/out instructions rt_trap has emulated so far (each one a #GP from ring 3). */
uint64_t rt_io_traps(void);
/* From ring 0, load an IDT with limit 0 and raise #UD: a triple fault, so the machine resets
 * (or, with tandem --no-reboot / QEMU -no-reboot, the VMM exits). */
_Noreturn void rt_triple_fault(void);

/* Stop the vCPU for good (hlt from ring 3 traps; ring 0 then halts with IF=0). */
_Noreturn void rt_halt(void);

/* A 64-bit finalizer (MurmurHash3's fmix64): the guests' one mixing function, so their hash
 * chains and stamps are identical wherever they run; the VMM's own (header-only, shared). */
static inline uint64_t rt_mix64(uint64_t x)
{
    return mix64(x);
}

/* Compiler barrier: keeps busy loops and ordered stores from being optimised away. */
static inline void rt_barrier(void)
{
    __asm__ volatile("" : : : "memory");
}

/* Serial output on COM1 (no UART programming; polls LSR.THRE with a bounded wait). */
void rt_putc(char c);
void rt_write(const char *s, size_t n);
void rt_puts(const char *s); /* no newline appended */

/* printf subset: %d %i %u %x %X %c %s %p %%, length l/ll/z, flags 0 and -, field width,
 * precision for %s (.N or .*). */
int rt_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int rt_vprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
int rt_snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int rt_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Write v to the debug-exit port (tandem exits with v, QEMU's isa-debug-exit with (v<<1)|1),
 * then halt for good if nobody listens. */
_Noreturn void rt_exit(unsigned v);

/* Command line: the multiboot cmdline string, split at spaces into tokens; key=value tokens
 * are the guest's options (the first token is usually the image path and is ignored). */
const char *rt_cmdline(void);
/* Value of key=value as a number: decimal or 0x-hex, optional suffix K, M, G (powers of 1024).
 * Returns def when the key is absent; a malformed value prints an error and exits with
 * RT_EXIT_CONFIG. */
uint64_t rt_arg_u64(const char *key, uint64_t def);
/* 1 if key or key=... appears on the command line. */
int rt_arg_present(const char *key);

/* Memory, from the multiboot info (memory map if present, else mem_lower/mem_upper). */
int rt_have_meminfo(void);
uint64_t rt_ram_bytes(void); /* total bytes of available RAM */
/* 1 if [base, base+len) lies entirely in available RAM. */
int rt_ram_usable(uint64_t base, uint64_t len);
/* First byte after the loaded image (text, data, bss and stacks). */
uint64_t rt_image_end(void);

/* irq mode (docs/guests.md "irq mode"): device interrupts through the I/O APIC and the local
 * xAPIC, taken only while the guest sleeps in rt_wait_irq (ring 3 keeps IF=0). */
#define RT_LAPIC_BASE   0xFEE00000u
#define RT_IOAPIC_BASE  0xFEC00000u
#define RT_IRQ_VEC_BASE 0x40 /* rt_irq_route hands out RT_IRQ_VEC_BASE + 0 .. RT_IRQ_NVEC - 1 */
#define RT_IRQ_NVEC     8    /* = NIRQ in entry.S */
#define RT_IRQ_SPURIOUS 0xff /* the local APIC's spurious vector */

/* Route pin of the I/O APIC at ioapic to the next free vector (fixed, physical destination
 * APIC id 0, level-triggered, active high) and install its IDT gate; each interrupt then calls
 * handler(arg) in ring 0 (it must make the device drop its line), counts, and writes the local
 * APIC's EOI. The first call enables the local APIC (SVR, TPR=0, LINT0 masked). Returns the
 * vector, or -1 after printing why (no I/O APIC there, no such pin, vectors used up). */
int rt_irq_route(uintptr_t ioapic, unsigned pin, void (*handler)(void *), void *arg);
/* A vector for an interrupt the local APIC raises itself (its timer): the next free stub's IDT
 * gate, handler(arg) (may be NULL) called in ring 0, counted and EOIed like a routed one. The
 * first call enables the local APIC. Returns the vector, or -1 after printing why. */
int rt_irq_local(void (*handler)(void *), void *arg);
/* Interrupts taken so far (all routed vectors). */
uint64_t rt_irq_count(void);
/* Sleep until an interrupt has been taken after rt_irq_count() returned seen: returns at once
 * if the count already moved, else enters ring 0 and waits there (sti; hlt). Read seen before
 * looking for work; an interrupt raised after that is not lost (see docs/guests.md). */
void rt_wait_irq(uint64_t seen);

/* Time (timer.c). The TSC, readable from ring 3; its rate from CPUID leaf 0x15 or 0x16, else
 * assumed 1000 MHz (tandem's emulator: 1 GHz, and leaf 0x16 says so). */
static inline uint64_t rt_rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
    return (uint64_t)hi << 32 | lo;
}
uint64_t rt_tsc_mhz(void);
/* irq mode: the local APIC timer as a wake-up for rt_wait_irq: one-shot, unmasked, stopped
 * until armed; its interrupt has no handler (being counted ends the sleep). Returns its vector,
 * or -1 (no vector left). Programmed from ring 3 through the xAPIC page: no ring-0 code is
 * added besides the shared interrupt stub. */
int rt_timer_setup(void);
/* One timer interrupt ns from now (at least 1 ns, at most ~68 s); 0 stops the timer. Counts
 * assume a 1 GHz APIC timer clock (tandem's emulator, KVM's in-kernel APIC): elsewhere the
 * interrupt comes early or late, so callers re-check their deadlines against the TSC. */
void rt_timer_arm(uint64_t ns);

/* Freestanding string helpers (GCC may also emit calls to the mem* ones). */
void *memset(void *d, int c, size_t n);
void *memcpy(void *restrict d, const void *restrict s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);
