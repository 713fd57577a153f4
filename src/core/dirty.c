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
    long added = 0, r;

    /* The engine first: the emulator's CPU marks the VMM bitmap itself, and its harvest makes
     * sure every store before this instant is in that bitmap before we take it. */
    if (vm->accel && vm->mem.logging) {
        r = vm->accel->dirty_harvest(vm, out);
        if (r < 0)
            return r;
        added += r;
    }
    added += gmem_harvest_vmm(&vm->mem, out);
    return added;
}
