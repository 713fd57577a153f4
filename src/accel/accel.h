/* accel.h: the CPU engine behind one ops table: KVM (kvm.c) or tandem's emulator (emu.c).
 *
 * Everything above this layer (buses, devices, migration, COLO, QMP) talks to the engine only
 * through these ops, and exchanges CPU and chip state in one record (arch/x86_state.h, KVM's ABI
 * structs), so a snapshot taken on one engine loads on the other.
 *
 * The run contract: vcpu_run() runs guest code until something needs the VMM and describes it
 * in one exit record. KVM returns PIO and MMIO exits (the common loop dispatches them to the
 * buses and the instruction completes on the next run); the emulator dispatches port and MMIO
 * accesses to the same buses itself, inside the instruction, so its instructions are atomic and
 * it never returns those two. Both return KICKED when vcpu_kick() asked them to stop: at an
 * instruction boundary for the emulator, at KVM_RUN's return for KVM (see pause.c).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct vcpu;
struct x86_cpu_state;
struct x86_vm_state;

enum accel_kind {
    ACCEL_AUTO = 0, /* KVM if /dev/kvm opens, else the emulator */
    ACCEL_KVM,
    ACCEL_EMU,
};

struct accel_config {
    enum accel_kind kind;
    bool icount; /* emu only: time follows the instruction count (deterministic) */
};

/* Parse "kvm", "emu", "auto", "emu,icount=on" into cfg. 0 or -EINVAL (msg says why). */
int accel_parse(const char *s, struct accel_config *cfg, char *msg, unsigned msglen);

enum accel_exit_reason {
    ACCEL_EXIT_NONE = 0,
    ACCEL_EXIT_PIO,            /* pio: dispatch, then run again to complete the instruction */
    ACCEL_EXIT_MMIO,           /* mmio: likewise */
    ACCEL_EXIT_HLT,            /* the vCPU halted with nothing to wake it (a pause point) */
    ACCEL_EXIT_SHUTDOWN,       /* triple fault: the machine resets */
    ACCEL_EXIT_RESET,          /* the guest asked for a reset */
    ACCEL_EXIT_POWEROFF,       /* the guest powered off */
    ACCEL_EXIT_INTERNAL_ERROR, /* cannot continue; msg says why */
    ACCEL_EXIT_KICKED,         /* vcpu_kick() */
};

struct accel_exit {
    enum accel_exit_reason reason;
    union {
        struct {
            uint16_t port;
            uint8_t size; /* 1, 2, 4 */
            uint8_t is_write;
            uint32_t count; /* string I/O: count items of size bytes at data */
            uint8_t *data;
        } pio;
        struct {
            uint64_t gpa;
            uint32_t len;
            uint8_t is_write;
            uint8_t *data;
        } mmio;
    };
    char msg[192];
};

struct accel_ops {
    const char *name; /* "kvm" or "emu" (query-accel) */

    /* VM: create the engine's VM and its interrupt controllers (before RAM is registered and
     * before any vCPU), destroy it (after every vCPU). */
    int (*vm_init)(struct vm *vm, const struct accel_config *cfg);
    void (*vm_destroy)(struct vm *vm);
    /* Make vm->mem's slots visible to the guest. */
    int (*mem_register)(struct vm *vm);

    /* Dirty logging: on/off, and harvest: OR the pages the *CPU* wrote since the last harvest
     * into out (one bit per page by RAM offset) and clear the engine's log. The VMM bitmap
     * (device writes) is handled above, in core/dirty.c. Returns newly set bits or -errno. */
    int (*dirty_log)(struct vm *vm, bool on);
    long (*dirty_harvest)(struct vm *vm, unsigned long *out);

    /* vCPU lifetime; reset restores the power-on state captured at creation. */
    int (*vcpu_init)(struct vcpu *v);
    void (*vcpu_destroy)(struct vcpu *v);
    int (*vcpu_reset)(struct vcpu *v);

    /* Run until an exit (vCPU thread). Returns 0 with e filled, or -errno (fatal). */
    int (*vcpu_run)(struct vcpu *v, struct accel_exit *e);
    /* Make the vCPU leave (or not enter) vcpu_run soon. Any thread; vm->lock held. */
    void (*vcpu_kick)(struct vcpu *v);
    /* Withdraw a previous kick before the next run. vCPU thread; vm->lock held. */
    void (*vcpu_arm)(struct vcpu *v);
    /* A PIO/MMIO exit was dispatched but the vCPU must park: finish that instruction without
     * running further guest code, so the saved state is consistent. May be NULL. */
    void (*vcpu_complete_io)(struct vcpu *v);

    /* Complete CPU and chip state (VM paused). get receives s zeroed (arch/x86_state.c); set
     * validates nothing: callers check first with x86_cpu_state_check / x86_vm_state_check. */
    int (*cpu_state_get)(struct vcpu *v, struct x86_cpu_state *s);
    int (*cpu_state_set)(struct vcpu *v, const struct x86_cpu_state *s);
    int (*vm_state_get)(struct vm *vm, struct x86_vm_state *s);
    int (*vm_state_set)(struct vm *vm, const struct x86_vm_state *s);

    /* Interrupt line gsi to level (IOAPIC pin; ISA IRQs below 16 also reach the PIC on KVM). */
    int (*irq_line)(struct vm *vm, uint32_t gsi, int level);
    /* ioeventfd: a guest write of len bytes equal to datamatch at MMIO addr signals fd instead
     * of an exit. -ENOSYS if the engine has none (the write then reaches the bus). */
    int (*ioeventfd)(struct vm *vm, uint64_t addr, uint32_t len, uint64_t datamatch, int fd,
                     bool assign);
    /* irqfd with resampling: a write to fd asserts gsi (level); the guest's EOI lowers it and
     * signals resample_fd. -ENOSYS if the engine has none (callers use irq_line). */
    int (*irqfd)(struct vm *vm, uint32_t gsi, int fd, int resample_fd, bool assign);
};

extern const struct accel_ops accel_kvm_ops;
extern const struct accel_ops accel_emu_ops;

/* Choose the engine for cfg: KVM when asked or (auto) when /dev/kvm opens, else the emulator.
 * auto says once on stderr which one it took. NULL with a message when kvm was required. */
const struct accel_ops *accel_select(const struct accel_config *cfg);
/* True when /dev/kvm exists and opens read-write (query-kvm's "present"). */
bool accel_kvm_present(void);
