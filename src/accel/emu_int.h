/* emu_int.h: the emulator engine's private records, shared by emu.c (run loop, lines, dirty log)
 * and emu_state.c (the state record). */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "accel/emu/apic.h"
#include "accel/emu/cpu.h"

struct vcpu;
struct vm;
struct x86_cpu_state;
struct x86_vm_state;

/* One vCPU. cpu comes first so an emu_cpu pointer is also an emu_vcpu pointer. */
struct emu_vcpu {
    struct emu_cpu cpu;
    struct vcpu *v;
    /* HLT sleep: the vCPU waits on cond until kicked, notified or its timer is due. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    atomic_bool kicked; /* vcpu_kick() since the last vcpu_arm() */
    /* Dirty-log handshake (see emu.c, "exact dirty tracking"): the generation this vCPU loaded
     * at its last batch start, and whether it is inside emu_exec now. */
    _Atomic uint64_t seen_gen;
    atomic_bool in_exec;
    uint64_t warp_ns;   /* icount: time skipped while halted with a timer armed */
    uint64_t time_base; /* host: CLOCK_MONOTONIC at creation */
};

/* The VM: the shared emu_vm (IOAPIC, dirty generation, ioeventfds) and its owner's lock. */
struct emu_vmctx {
    struct emu_vm evm;
    pthread_mutex_t lock; /* ioeventfd table changes, harvest */
};

static inline struct emu_vcpu *emu_vcpu_of(struct emu_cpu *c)
{
    return (struct emu_vcpu *)c;
}

/* emu_state.c */
int emu_cpu_state_get(struct vcpu *v, struct x86_cpu_state *s);
int emu_cpu_state_set(struct vcpu *v, const struct x86_cpu_state *s);
int emu_vm_state_get(struct vm *vm, struct x86_vm_state *s);
int emu_vm_state_set(struct vm *vm, const struct x86_vm_state *s);
