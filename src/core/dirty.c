/* dirty.c: dirty-page logging for a whole VM: the engine's log of CPU writes ∪ the VMM bitmap of
 * device writes, harvested together (migration rounds, COLO checkpoints). */
#include <errno.h>

#include "core/log.h"
#include "core/vm.h"

int vm_dirty_log_start(struct vm *vm)
{
    int err;

    if (!vm->accel)
        return -ENODEV;
    if (vm->mem.logging)
        return 0;
    err = vm->accel->dirty_log(vm, true);
    if (err)
        return err;
    vm->mem.logging = true;
    return 0;
}

int vm_dirty_log_stop(struct vm *vm)
{
    int err;

    if (!vm->accel || !vm->mem.logging)
        return 0;
    err = vm->accel->dirty_log(vm, false);
    if (err)
        return err;
    vm->mem.logging = false;
    return 0;
}

long vm_dirty_harvest(struct vm *vm, unsigned long *out)
{
    long added, r;

    /* The VMM bitmap first, then the engine. The emulator's CPU marks this bitmap itself, once
     * per TLB entry per generation; its harvest starts a new generation and waits until every
     * vCPU has seen it. Taking the bitmap before that handshake is what makes it exact: a store
     * before the handshake is visible to the caller's copy, a store after it marks again. */
    added = gmem_harvest_vmm(&vm->mem, out);
    if (vm->accel && vm->mem.logging) {
        r = vm->accel->dirty_harvest(vm, out);
        if (r < 0)
            return r;
        added += r;
    }
    return added;
}
