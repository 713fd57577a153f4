/* vm.h: the virtual machine: its engine (accel/), RAM, vCPUs, buses, devices, run state and the
 * pause barrier.
 *
 * Threads: the main loop owns run-state changes requested over QMP; each vCPU runs its own
 * engine run loop; migration/COLO threads pause and resume through the same barrier. Guest events
 * (debug-exit, reset, triple fault) are posted to the main loop with loop_call().
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "accel/accel.h"
#include "core/bus.h"
#include "core/mem.h"

struct loop;
struct vcpu;
struct vmstate_desc;

/* QEMU's RunState names, so query-status answers what QMP clients expect. */
enum vm_runstate {
    VM_PRELAUNCH = 0,
    VM_RUNNING,
    VM_PAUSED,
    VM_SHUTDOWN,
    VM_INMIGRATE,
    VM_POSTMIGRATE,
    VM_FINISH_MIGRATE,
    VM_COLO,
    VM_INTERNAL_ERROR,
    VM_RESTORE_VM,
    VM_RUNSTATE__MAX
};
const char *vm_runstate_name(enum vm_runstate s);

/* A migratable, resettable device. The inventory is kept apart from address dispatch. */
struct vm_device {
    const char *name;  /* section name in the stream, e.g. "serial" */
    uint32_t instance; /* instance id */
    const struct vmstate_desc *vmsd;
    void *opaque;
    void (*reset)(void *opaque);
    void (*destroy)(void *opaque);
};

#define VM_MAX_DEVICES 32
#define VM_MAX_CPUS    16

/* Notifications for the control plane (QMP maps these to events). Called on the main loop. */
struct vm_hooks {
    void *opaque;
    void (*state_changed)(void *opaque, enum vm_runstate old, enum vm_runstate now);
    void (*guest_reset)(void *opaque);
    /* reason: "guest-shutdown", "host-qmp-quit", "guest-reset"... */
    void (*shutdown)(void *opaque, const char *reason);
};

struct vm_config {
    uint64_t mem_size;
    int ncpus;
    struct accel_config accel;
};

struct vm {
    /* The CPU engine; NULL only in unit tests that build a VM by hand (no vCPUs, no lines). */
    const struct accel_ops *accel;
    void *accel_vm; /* the engine's own VM record */
    struct accel_config accel_cfg;
    struct guest_mem mem;
    struct bus pio;
    struct bus mmio;
    struct loop *loop;

    int ncpus;
    struct vcpu *vcpus[VM_MAX_CPUS];

    struct vm_device devices[VM_MAX_DEVICES];
    unsigned ndevices;

    /* Device emulation that runs outside the vCPU threads (main-loop I/O: virtio queues, tap
     * RX) holds this while it touches device state or guest RAM; a checkpoint holds it while
     * it captures RAM and device state, so the two never interleave. */
    pthread_mutex_t dev_lock;

    /* Pause barrier (see pause.c). */
    pthread_mutex_t lock;
    pthread_cond_t cond_paused; /* a vCPU parked, or left */
    pthread_cond_t cond_resume; /* pause_depth dropped to 0 */
    int pause_depth;            /* >0: every vCPU must park */
    int nparked;                /* vCPUs currently parked */
    int nrunning_threads;       /* vCPU threads alive */
    atomic_bool quit;           /* vCPU threads must exit */

    enum vm_runstate state; /* protected by lock; changed via vm_set_state */
    bool user_paused;       /* a `stop` (or -S / incoming) holds one pause_depth */
    struct vm_hooks hooks;

    /* Loads the kernel and sets boot registers; run at start and at every system reset. */
    int (*boot)(struct vm *vm, void *opaque);
    void *boot_opaque;
    bool no_reboot; /* a guest reset ends the process instead (like QEMU -no-reboot) */

    /* Exit status requested by the guest (debug-exit) or QMP quit; -1 = none yet. */
    atomic_int exit_status;
    atomic_bool reset_pending;
    char internal_error[256];
};

/* Choose the engine, create its VM, RAM, interrupt controllers, buses and vCPUs (threads not
 * started). */
int vm_create(struct vm *vm, const struct vm_config *cfg, struct loop *loop);
void vm_destroy(struct vm *vm);

/* Run the boot hook, start the vCPU threads; with start_paused they park until vm_cont. */
int vm_start(struct vm *vm, bool start_paused);
/* Stop and join the vCPU threads (process exit). */
void vm_shutdown_vcpus(struct vm *vm);

/* Register a device in the inventory (for reset and migration). */
int vm_add_device(struct vm *vm, const struct vm_device *dev);
struct vm_device *vm_find_device(struct vm *vm, const char *name, uint32_t instance);
/* The state struct (opaque) of that device, or NULL. */
void *vm_device_state(struct vm *vm, const char *name, uint32_t instance);

/* Pause barrier: every vCPU is out of its engine (pending I/O completed) when vm_pause returns.
 * Nestable: the vCPUs run again only when every pause has been matched by a resume. */
int vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);

/* The caller holds a vm_pause(): hand it over to the user, as if `stop` had been issued (a
 * later `cont` releases it), and enter state s. */
void vm_hold_stopped(struct vm *vm, enum vm_runstate s);

/* Run-state transitions; fire hooks.state_changed on the main loop. */
void vm_set_state(struct vm *vm, enum vm_runstate s);
enum vm_runstate vm_get_state(struct vm *vm);

/* QMP-facing operations (main loop thread). */
int vm_stop(struct vm *vm); /* running -> paused (STOP) */
int vm_cont(struct vm *vm); /* paused -> running (RESUME) */
int vm_system_reset(struct vm *vm);
/* Ask the main loop to end the process with status (guest debug-exit or QMP quit). */
void vm_request_exit(struct vm *vm, int status, const char *reason);
/* Interrupt line (IOAPIC pin gsi) to level through the engine; a no-op without one. */
int vm_irq_line(struct vm *vm, uint32_t gsi, int level);

/* Dirty logging (core/dirty.c): the engine's log of CPU writes ∪ the VMM bitmap of device
 * writes. harvest ORs the pages dirtied since the last harvest into out (npages bits, by RAM
 * offset), clearing both sources; returns the newly set bits or -errno. */
int vm_dirty_log_start(struct vm *vm);
int vm_dirty_log_stop(struct vm *vm);
long vm_dirty_harvest(struct vm *vm, unsigned long *out);

/* From a vCPU thread: the guest asked for a reset (triple fault, port 0xcf9, 0x64). */
void vm_request_reset(struct vm *vm);
/* From a vCPU thread: the guest did something we cannot emulate. */
void vm_internal_error(struct vm *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
