/* devstate.h: the non-RAM machine state as stream sections: vCPUs, in-kernel chips, devices. */
#pragma once

#include <stddef.h>

#include "arch/x86_state.h"
#include "core/vm.h"
#include "migration/ram.h"
#include "migration/section.h"

#define DEVSTATE_MAX_SECTIONS (VM_MAX_CPUS + 3 * VM_MAX_DEVICES + 2)
#define DEVSTATE_RAM_INDEX    0 /* registry entry 0 is always "ram" */

/*
 * vCPU and chip state is staged here: captured from KVM before saving, and loaded from the
 * stream into these copies, validated, and applied to KVM only when the whole segment arrived
 * with a good checksum (devstate_apply). Inventory devices load straight into their state
 * structs; callers load them only from a complete, verified segment.
 */
struct devstate {
    struct vm *vm;
    struct x86_cpu_state cpu[VM_MAX_CPUS];
    struct x86_vm_state chips;
    struct stream_section reg[DEVSTATE_MAX_SECTIONS];
    size_t nreg;
};

/* Build the registry: "ram" (an iterative entry whose opaque is sink; may be NULL when the
 * registry only saves), "cpu" × ncpus, "x86-chips", then every inventory device. */
int devstate_init(struct devstate *ds, struct vm *vm, struct ram_sink *sink);
/* Append a registry entry (e.g. COLO's disk sections). 0 or -ENOSPC. */
int devstate_add(struct devstate *ds, const struct stream_section *s);
/* Read every vCPU and the chips from KVM into the staging copies (VM paused). */
int devstate_capture(struct devstate *ds);
/* Write every non-RAM section as FULL sections (after devstate_capture). Returns sw_error(). */
int devstate_save(struct devstate *ds, struct stream_writer *sw);
/* Push the staged vCPU and chip state into KVM (VM paused). */
int devstate_apply(struct devstate *ds);
