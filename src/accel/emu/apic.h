/* apic.h: the emulator's interrupt controllers: one local APIC per vCPU (with its timer) and one
 * I/O APIC per VM. Device lines reach the I/O APIC, which routes them to a local APIC, which the
 * vCPU polls at instruction-batch boundaries. State travels in KVM's ABI structs (the same
 * record the KVM backend saves), so snapshots move between backends.
 *
 * Threads: every function may be called from any thread unless noted; each controller has its
 * own mutex. Posting an interrupt calls emu_cpu_notify() on the target vCPU.
 */
#pragma once

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

struct emu_cpu;
struct emu_vm;
struct emu_lapic;
struct emu_ioapic;

#define EMU_LAPIC_BASE  0xFEE00000ULL
#define EMU_IOAPIC_BASE 0xFEC00000ULL
#define EMU_IOAPIC_PINS 24

/* ---- local APIC (lapic.c) ---- */
int emu_lapic_create(struct emu_cpu *c, struct emu_lapic **out);
void emu_lapic_destroy(struct emu_lapic *l);
/* Power-on state (xAPIC mode, software-disabled, APIC id = c->id). */
void emu_lapic_reset(struct emu_lapic *l);
/* An access to the 4 KiB APIC page (off = address - APIC base). vCPU thread only. */
void emu_lapic_mmio(struct emu_lapic *l, uint32_t off, void *data, uint32_t len, bool is_write);
/* The vector the CPU should take now (highest IRR above the processor priority), or -1.
 * Fires an expired timer first. vCPU thread only. */
int emu_lapic_pending(struct emu_lapic *l);
/* The CPU took vec: IRR -> ISR. vCPU thread only. */
void emu_lapic_ack(struct emu_lapic *l, int vec);
/* Post a fixed interrupt (from the I/O APIC or another vCPU); level: trigger mode, so that the
 * EOI is forwarded to the I/O APIC. Wakes the vCPU. Dropped while the APIC is hardware- or
 * software-disabled; a vector below 16 is dropped and flagged in the ESR. */
void emu_lapic_post(struct emu_lapic *l, int vec, bool level);
/* emu_lapic_post() that tells whether the APIC accepted the interrupt (the I/O APIC sets
 * remote IRR only for an accepted level interrupt). */
bool emu_lapic_deliver(struct emu_lapic *l, int vec, bool level);
/* Does this APIC match an interrupt message's destination? Physical: APIC id or 0xFF
 * (broadcast). Logical: LDR against dest in the flat (DFR model 0xF) or cluster (0x0) model. */
bool emu_lapic_match_dest(struct emu_lapic *l, uint8_t dest, bool logical);
/* Next timer expiry in emu_cpu_time_ns() units, or UINT64_MAX when no timer is armed (or its
 * LVT is masked). An expired timer is fired here (its vector goes to the IRR) and the call
 * returns the current time once, so the caller re-checks emu_lapic_pending() before sleeping;
 * the next call returns the following expiry. Ask again after the vCPU ran (the guest may have
 * re-armed). vCPU thread only. */
uint64_t emu_lapic_deadline(struct emu_lapic *l);
/* TSC-deadline mode: the IA32_TSC_DEADLINE MSR (msr.c forwards it here). The value is stored
 * even outside TSC-deadline mode (it only counts in that mode; get returns 0 outside it), so a
 * restore may set the MSR before or after the register page. Mirrored in c->tsc_deadline
 * (cleared when it fires). vCPU thread only. */
void emu_lapic_set_tsc_deadline(struct emu_lapic *l, uint64_t tsc);
uint64_t emu_lapic_get_tsc_deadline(struct emu_lapic *l);
/* IA32_APIC_BASE changed (enable bit, base moved). Clearing the enable bit resets the
 * registers; while disabled, MMIO reads 0 and ignores writes and nothing is delivered. The
 * caller (msr.c) keeps c->apic_base and routes the page from it. */
void emu_lapic_set_base(struct emu_lapic *l, uint64_t apic_base);
/* CR8 = TPR[7:4] (MOV to/from CR8 in 64-bit mode). */
void emu_lapic_set_cr8(struct emu_lapic *l, uint64_t cr8);
uint64_t emu_lapic_get_cr8(struct emu_lapic *l);
/* State in KVM's layout (the 1 KiB register page, KVM_GET_LAPIC semantics: timer current count
 * is computed at save; set restarts the timer from the saved current count). The TSC deadline
 * is not part of it (an MSR). Call with the vCPU stopped; set does not notify the vCPU. */
void emu_lapic_get(struct emu_lapic *l, struct kvm_lapic_state *s);
int emu_lapic_set(struct emu_lapic *l, const struct kvm_lapic_state *s);

/* ---- I/O APIC (ioapic.c) ---- */
int emu_ioapic_create(struct emu_vm *vm, struct emu_ioapic **out);
void emu_ioapic_destroy(struct emu_ioapic *io);
void emu_ioapic_reset(struct emu_ioapic *io);
/* Access to the I/O APIC's MMIO window (IOREGSEL at 0x00, IOWIN at 0x10). */
void emu_ioapic_mmio(struct emu_ioapic *io, uint32_t off, void *data, uint32_t len, bool is_write);
/* A device line changed (pin 0..23). Edge: delivered on 0->1. Level: delivered while high and
 * not waiting for an EOI (remote IRR). */
void emu_ioapic_set_irq(struct emu_ioapic *io, int pin, int level);
/* A local APIC EOIed a level-triggered vector: clear remote IRR of the pins routed to it and
 * deliver again if a line is still high. Calls eoi_notify for each such pin. */
void emu_ioapic_eoi(struct emu_ioapic *io, int vec);
/* Optional hook for irqfd resampling: called (outside the lock) with each pin whose remote IRR
 * an EOI cleared. */
void emu_ioapic_set_eoi_notify(struct emu_ioapic *io, void (*fn)(void *opaque, int pin),
                               void *opaque);
void emu_ioapic_get(struct emu_ioapic *io, struct kvm_ioapic_state *s);
int emu_ioapic_set(struct emu_ioapic *io, const struct kvm_ioapic_state *s);
