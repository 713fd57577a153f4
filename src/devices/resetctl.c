/* resetctl.c: the reset control register (0xcf9) and the keyboard controller's reset pulse (0x64).
 */
#include "devices/resetctl.h"

#include <string.h>

#include "core/vm.h"

#define RCR_PORT    0xcf9
#define I8042_CMD   0x64
#define RCR_SYS_RST 0x02
#define RCR_RST_CPU 0x04
#define I8042_PULSE 0xfe

static void rcr_io(void *opaque, uint64_t off, void *data, uint32_t len, bool is_write)
{
    struct vm *vm = opaque;
    uint8_t v = *(uint8_t *)data;

    if (!is_write) {
        memset(data, 0, len);
        return;
    }
    if (len == 1 && (v & RCR_RST_CPU))
        vm_request_reset(vm);
}

static void i8042_io(void *opaque, uint64_t off, void *data, uint32_t len, bool is_write)
{
    struct vm *vm = opaque;

    if (!is_write) {
        /* Status: output buffer empty, input buffer empty, system flag set. */
        memset(data, 0, len);
        *(uint8_t *)data = 0x04;
        return;
    }
    if (len == 1 && *(uint8_t *)data == I8042_PULSE)
        vm_request_reset(vm);
}

int resetctl_create(struct vm *vm)
{
    int r = bus_register(&vm->pio, RCR_PORT, 1, rcr_io, vm, "reset-control");

    if (r)
        return r;
    r = bus_register(&vm->pio, I8042_CMD, 1, i8042_io, vm, "i8042");
    if (r)
        bus_unregister(&vm->pio, RCR_PORT);
    return r;
}
