/* emu.c: the emulator engine: tandem's interpreter (emu/) behind the accel ops: the vCPU run loop
 * (interrupts at batch boundaries, HLT sleep, kicks), the I/O APIC lines, ioeventfds, and exact
 * dirty logging.
 *
 * Run loop, per vcpu_run():
 *   clear exit_request; if kicked: return KICKED
 *   publish the dirty generation (seen_gen), mark in_exec
 *   IF=1 and no shadow and the LAPIC has a vector: deliver it (wakes a halted CPU)
 *   halted: sleep until kicked, notified (an interrupt was posted) or the LAPIC timer is due
 *   else: emu_exec(a batch) and map its stop reason to an exit
 * Port and MMIO accesses never leave the loop: the interpreter calls the buses from inside the
 * instruction (vcpu_pio/vcpu_mmio), so every instruction is atomic with respect to a pause.
 *
 * Exact dirty tracking: the CPU marks a page in mem->vmm_dirty on the first write through a TLB
 * entry in each dirty generation (mmu.c). A harvest takes the bitmap (core/dirty.c), then bumps
 * the generation and waits until every vCPU is outside emu_exec or has started a new batch
 * having loaded the new generation. A store is therefore either before that handshake (its page
 * was marked in this or an older generation, so it is in the bitmap just taken or an earlier
 * one, and its data reaches the caller's copy, made after the handshake, through the
 * release/acquire on seen_gen) or after it (it compares against the new generation and marks
 * again). No store is lost, at the cost of one compare per store.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "accel/accel.h"
#include "accel/emu_int.h"
#include "arch/x86_state.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/vcpu.h"
#include "core/vm.h"

/* Instructions per batch: interrupts, timers and the dirty handshake are looked at between
 * batches, kicks within one instruction. */
#define EMU_BATCH 20000

uint64_t emu_cpu_time_ns(struct emu_cpu *c)
{
    struct emu_vcpu *ev = emu_vcpu_of(c);

    if (c->vm->icount)
        return c->icount + ev->warp_ns;
    return now_ns() - ev->time_base;
}

void emu_cpu_notify(struct emu_cpu *c)
{
    struct emu_vcpu *ev = emu_vcpu_of(c);

    atomic_store(&c->exit_request, true);
    pthread_mutex_lock(&ev->lock);
    pthread_cond_signal(&ev->cond);
    pthread_mutex_unlock(&ev->lock);
}

/* ---- the bus callbacks the interpreter calls ---- */

static void emu_pio(void *opaque, uint16_t port, void *data, uint32_t len, bool is_write)
{
    vcpu_pio(opaque, port, data, len, is_write);
}

static void emu_mmio(void *opaque, uint64_t gpa, void *data, uint32_t len, bool is_write)
{
    vcpu_mmio(opaque, gpa, data, len, is_write);
}

/* ---- VM ---- */

static void emu_vm_destroy(struct vm *vm)
{
    struct emu_vmctx *x = vm->accel_vm;

    if (!x)
        return;
    if (x->evm.ioapic)
        emu_ioapic_destroy(x->evm.ioapic);
    pthread_mutex_destroy(&x->lock);
    free(x);
    vm->accel_vm = NULL;
}

static int emu_vm_init(struct vm *vm, const struct accel_config *cfg)
{
    struct emu_vmctx *x = calloc(1, sizeof(*x));
    int err;

    if (!x)
        return -ENOMEM;
    pthread_mutex_init(&x->lock, NULL);
    vm->accel_vm = x;
    x->evm.icount = cfg->icount;
    x->evm.mem = &vm->mem;
    atomic_init(&x->evm.dirty_gen, 1);
    err = emu_ioapic_create(&x->evm, &x->evm.ioapic);
    if (err) {
        emu_vm_destroy(vm);
        return err;
    }
    return 0;
}

static int emu_mem_register(struct vm *vm)
{
    (void)vm; /* the interpreter reads vm->mem's slots directly */
    return 0;
}

/* Start a new dirty generation and wait until every vCPU has loaded it (or is outside the
 * interpreter, where it stores nothing). */
static void new_generation(struct emu_vmctx *x)
{
    uint64_t gen;

    pthread_mutex_lock(&x->lock);
    gen = atomic_fetch_add(&x->evm.dirty_gen, 1) + 1;
    for (int i = 0; i < x->evm.ncpus; i++) {
        struct emu_vcpu *ev;
        unsigned spins = 0;

        if (!x->evm.cpus[i])
            continue;
        ev = emu_vcpu_of(x->evm.cpus[i]);
        while (atomic_load(&ev->in_exec) && atomic_load(&ev->seen_gen) < gen) {
            atomic_store(&ev->cpu.exit_request, true); /* end its batch now */
            if (++spins > 64)
                sched_yield();
        }
    }
    pthread_mutex_unlock(&x->lock);
}

static int emu_dirty_log(struct vm *vm, bool on)
{
    struct emu_vmctx *x = vm->accel_vm;

    /* Logging first, then a generation: every TLB entry marks again on its next write, and no
     * vCPU can have loaded the new generation while logging was still off. */
    atomic_store(&x->evm.logging, on);
    new_generation(x);
    return 0;
}

/* The caller took the bitmap already (core/dirty.c); see the file comment for why. */
static long emu_dirty_harvest(struct vm *vm, unsigned long *out)
{
    (void)out;
    new_generation(vm->accel_vm);
    return 0;
}

/* ---- vCPU ---- */

static void emu_vcpu_destroy(struct vcpu *v)
{
    struct emu_vcpu *ev = v->accel_vcpu;
    struct emu_vmctx *x = v->vm->accel_vm;

    if (!ev)
        return;
    log_debug("emu: vcpu%d retired %llu instructions in %.3f s", v->id,
              (unsigned long long)ev->cpu.icount, (double)(now_ns() - ev->time_base) / 1e9);
    if (x && v->id < x->evm.ncpus)
        x->evm.cpus[v->id] = NULL;
    if (ev->cpu.lapic)
        emu_lapic_destroy(ev->cpu.lapic);
    pthread_cond_destroy(&ev->cond);
    pthread_mutex_destroy(&ev->lock);
    free(ev);
    v->accel_vcpu = NULL;
}

static int emu_vcpu_reset(struct vcpu *v)
{
    struct emu_vcpu *ev = v->accel_vcpu;
    struct emu_cpu *c = &ev->cpu;

    emu_cpu_reset(c);
    emu_lapic_reset(c->lapic);
    emu_msr_reset(c);
    c->halted = v->id != 0; /* application processors wait for INIT/SIPI */
    return 0;
}

static int emu_vcpu_init(struct vcpu *v)
{
    struct emu_vmctx *x = v->vm->accel_vm;
    struct emu_vcpu *ev;
    pthread_condattr_t ca;
    int err;

    if (v->id >= (int)(sizeof(x->evm.cpus) / sizeof(x->evm.cpus[0])))
        return -EINVAL;
    ev = aligned_alloc(64, (sizeof(*ev) + 63) & ~(size_t)63);
    if (!ev)
        return -ENOMEM;
    memset(ev, 0, sizeof(*ev));
    pthread_mutex_init(&ev->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ev->cond, &ca);
    pthread_condattr_destroy(&ca);
    ev->v = v;
    ev->time_base = now_ns();
    v->accel_vcpu = ev;
    ev->cpu.id = v->id;
    ev->cpu.mem = &v->vm->mem;
    ev->cpu.vm = &x->evm;
    ev->cpu.io = (struct emu_io){.opaque = v, .pio = emu_pio, .mmio = emu_mmio};
    err = emu_lapic_create(&ev->cpu, &ev->cpu.lapic);
    if (err)
        goto err;
    x->evm.cpus[v->id] = &ev->cpu;
    if (v->id >= x->evm.ncpus)
        x->evm.ncpus = v->id + 1;
    err = emu_vcpu_reset(v);
    if (err)
        goto err;
    return 0;

err:
    emu_vcpu_destroy(v);
    return err;
}

static void emu_vcpu_kick(struct vcpu *v)
{
    struct emu_vcpu *ev = v->accel_vcpu;

    atomic_store(&ev->kicked, true);
    emu_cpu_notify(&ev->cpu);
}

static void emu_vcpu_arm(struct vcpu *v)
{
    struct emu_vcpu *ev = v->accel_vcpu;

    atomic_store(&ev->kicked, false);
}

/* Take a pending external interrupt if the CPU accepts one now. */
static void take_interrupt(struct emu_cpu *c)
{
    int vec;

    if (c->shadow || !(emu_get_rflags(c) & FL_IF))
        return;
    vec = emu_lapic_pending(c->lapic);
    if (vec < 0)
        return;
    emu_lapic_ack(c->lapic, vec);
    c->halted = false;
    c->stop = EMU_STOP_NONE;
    emu_deliver_interrupt(c, vec);
}

/* Sleep while halted: until kicked, notified, or the LAPIC timer is due. */
static void halt_wait(struct emu_vcpu *ev)
{
    struct emu_cpu *c = &ev->cpu;
    uint64_t deadline = emu_lapic_deadline(c->lapic);

    if (c->vm->icount) {
        /* Deterministic time: an idle CPU skips straight to its next timer. */
        if (deadline != UINT64_MAX) {
            uint64_t now = emu_cpu_time_ns(c);
            if (deadline > now)
                ev->warp_ns += deadline - now;
            return;
        }
        deadline = UINT64_MAX;
    }
    pthread_mutex_lock(&ev->lock);
    while (!atomic_load(&ev->kicked) && !atomic_load(&c->exit_request)) {
        if (deadline == UINT64_MAX || c->vm->icount) {
            pthread_cond_wait(&ev->cond, &ev->lock);
        } else {
            uint64_t now = emu_cpu_time_ns(c);
            uint64_t abs;
            struct timespec ts;

            if (now >= deadline)
                break;
            abs = now_ns() + (deadline - now);
            ts.tv_sec = (time_t)(abs / 1000000000ull);
            ts.tv_nsec = (long)(abs % 1000000000ull);
            pthread_cond_timedwait(&ev->cond, &ev->lock, &ts);
        }
    }
    pthread_mutex_unlock(&ev->lock);
}

static int emu_vcpu_run(struct vcpu *v, struct accel_exit *e)
{
    struct emu_vcpu *ev = v->accel_vcpu;
    struct emu_cpu *c = &ev->cpu;
    enum emu_stop stop;

    memset(e, 0, sizeof(*e));
    for (;;) {
        atomic_store(&c->exit_request, false);
        if (atomic_load(&ev->kicked)) {
            e->reason = ACCEL_EXIT_KICKED;
            return 0;
        }
        atomic_store(&ev->in_exec, true);
        atomic_store(&ev->seen_gen, atomic_load(&c->vm->dirty_gen));
        take_interrupt(c);
        if (c->stop == EMU_STOP_SHUTDOWN) {
            atomic_store(&ev->in_exec, false);
            c->stop = EMU_STOP_NONE;
            e->reason = ACCEL_EXIT_SHUTDOWN;
            return 0;
        }
        if (c->halted) {
            atomic_store(&ev->in_exec, false);
            halt_wait(ev);
            continue;
        }
        uint64_t budget = c->shadow ? 1 : EMU_BATCH;
        if (c->vm->icount) {
            /* End the batch exactly at the timer, so delivery does not depend on where
             * kicks split the run. */
            uint64_t deadline = emu_lapic_deadline(c->lapic), now = emu_cpu_time_ns(c);
            if (deadline != UINT64_MAX && deadline > now && deadline - now < budget)
                budget = deadline - now;
        }
        c->stop = EMU_STOP_NONE;
        stop = emu_exec(c, budget);
        atomic_store(&ev->in_exec, false);
        switch (stop) {
        case EMU_STOP_SHUTDOWN:
            c->stop = EMU_STOP_NONE;
            e->reason = ACCEL_EXIT_SHUTDOWN;
            return 0;
        case EMU_STOP_RESET:
            c->stop = EMU_STOP_NONE;
            e->reason = ACCEL_EXIT_RESET;
            return 0;
        case EMU_STOP_ERROR:
            c->stop = EMU_STOP_NONE;
            e->reason = ACCEL_EXIT_INTERNAL_ERROR;
            snprintf(e->msg, sizeof(e->msg), "emulator: %s", c->error);
            return 0;
        default:
            break; /* budget, request, HLT, IRQ window: look again */
        }
    }
}

/* ---- lines and eventfds ---- */

static int emu_irq_line(struct vm *vm, uint32_t gsi, int level)
{
    struct emu_vmctx *x = vm->accel_vm;

    if (gsi >= EMU_IOAPIC_PINS)
        return -EINVAL;
    emu_ioapic_set_irq(x->evm.ioapic, (int)gsi, level);
    return 0;
}

static int emu_ioeventfd(struct vm *vm, uint64_t addr, uint32_t len, uint64_t datamatch, int fd,
                         bool assign)
{
    struct emu_vmctx *x = vm->accel_vm;
    struct emu_vm *evm = &x->evm;
    int err = 0;

    /* The interpreter compares the written value zero-extended to 64 bits. */
    if (len < 8)
        datamatch &= (1ull << (8 * len)) - 1;
    /* Changed only at device setup and teardown, with the vCPUs paused or not started. */
    pthread_mutex_lock(&x->lock);
    if (assign) {
        if (evm->nioeventfds >= EMU_MAX_IOEVENTFDS)
            err = -ENOSPC;
        else
            evm->ioeventfds[evm->nioeventfds++] =
                (struct emu_ioeventfd){.addr = addr, .len = len, .datamatch = datamatch, .fd = fd};
    } else {
        err = -ENOENT;
        for (unsigned i = 0; i < evm->nioeventfds; i++) {
            struct emu_ioeventfd *io = &evm->ioeventfds[i];
            if (io->addr == addr && io->len == len && io->datamatch == datamatch && io->fd == fd) {
                evm->ioeventfds[i] = evm->ioeventfds[--evm->nioeventfds];
                err = 0;
                break;
            }
        }
    }
    pthread_mutex_unlock(&x->lock);
    return err;
}

/* The I/O APIC lives in this process: a device's line is a function call, which is what KVM's
 * irqfd saves a VMM. Callers fall back to irq_line. */
static int emu_irqfd(struct vm *vm, uint32_t gsi, int fd, int resample_fd, bool assign)
{
    (void)vm;
    (void)gsi;
    (void)fd;
    (void)resample_fd;
    (void)assign;
    return -ENOSYS;
}

const struct accel_ops accel_emu_ops = {
    .name = "emu",
    .vm_init = emu_vm_init,
    .vm_destroy = emu_vm_destroy,
    .mem_register = emu_mem_register,
    .dirty_log = emu_dirty_log,
    .dirty_harvest = emu_dirty_harvest,
    .vcpu_init = emu_vcpu_init,
    .vcpu_destroy = emu_vcpu_destroy,
    .vcpu_reset = emu_vcpu_reset,
    .vcpu_run = emu_vcpu_run,
    .vcpu_kick = emu_vcpu_kick,
    .vcpu_arm = emu_vcpu_arm,
    .vcpu_complete_io = NULL,
    .cpu_state_get = emu_cpu_state_get,
    .cpu_state_set = emu_cpu_state_set,
    .vm_state_get = emu_vm_state_get,
    .vm_state_set = emu_vm_state_set,
    .irq_line = emu_irq_line,
    .ioeventfd = emu_ioeventfd,
    .irqfd = emu_irqfd,
};
