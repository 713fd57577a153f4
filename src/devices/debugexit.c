/* debugexit.c: debug-exit at port 0xf4 (like QEMU's isa-debug-exit, but the status is v itself). */
#include "devices/debugexit.h"

#include <string.h>

#include "core/log.h"
#include "core/vm.h"

#define DEBUGEXIT_PORT 0xf4
#define DEBUGEXIT_SIZE 4

static void debugexit_io(void *opaque, uint64_t off, void *data, uint32_t len, bool is_write)
{
    struct vm *vm = opaque;
    uint32_t v = 0;

    if (!is_write) {
        memset(data, 0xff, len);
        return;
    }
    memcpy(&v, data, len > sizeof(v) ? sizeof(v) : len);
    log_info("debug-exit: guest wrote %u", v);
    /* Process exit statuses are 8 bits; QEMU's (v<<1)|1 would lose the top bit too. */
    vm_request_exit(vm, (int)(v & 0xff), "guest-shutdown");
}

int debugexit_create(struct vm *vm)
{
    /* Stateless: nothing to migrate, so no inventory entry. */
    return bus_register(&vm->pio, DEBUGEXIT_PORT, DEBUGEXIT_SIZE, debugexit_io, vm, "debug-exit");
}
