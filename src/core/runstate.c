/* runstate.c: QEMU's RunState names for the VM's run states (query-status, events). */
#include "core/vm.h"

static const char *const runstate_names[VM_RUNSTATE__MAX] = {
    [VM_PRELAUNCH] = "prelaunch",
    [VM_RUNNING] = "running",
    [VM_PAUSED] = "paused",
    [VM_SHUTDOWN] = "shutdown",
    [VM_INMIGRATE] = "inmigrate",
    [VM_POSTMIGRATE] = "postmigrate",
    [VM_FINISH_MIGRATE] = "finish-migrate",
    [VM_COLO] = "colo",
    [VM_INTERNAL_ERROR] = "internal-error",
    [VM_RESTORE_VM] = "restore-vm",
};

const char *vm_runstate_name(enum vm_runstate s)
{
    return (unsigned)s < VM_RUNSTATE__MAX ? runstate_names[s] : "unknown";
}
