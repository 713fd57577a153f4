/* devices.c: COLO's device glue: output commit on the NICs, idle standby, takeover announce. */
#include "colo/devices.h"

#include <string.h>

#include "colo/colo.h"
#include "core/log.h"
#include "core/vm.h"
#include "devices/serial.h"
#include "net/announce.h"
#include "net/tap.h"
#include "net/virtio_net.h"
#include "virtio/virtio_mmio.h"

void colo_devices_primary_start(struct colo *c, struct vm *vm)
{
    c->nouts = 0;
    for (uint32_t i = 0; i < COLO_MAX_NICS; i++) {
        struct virtio_net *n = virtio_net_find(vm, i);
        struct net_output out;
        if (!n)
            break;
        colo_outbuf_init(&c->outbuf[i], tap_send, &n->tap);
        colo_outbuf_hold(&c->outbuf[i], 1);
        out = (struct net_output){.send = colo_outbuf_send, .opaque = &c->outbuf[i]};
        virtio_net_set_output(n, &out);
        c->nouts = i + 1;
    }
    if (c->nouts)
        log_info("colo: holding the output of %u NIC(s) until each checkpoint", c->nouts);
    /* The console is output too: what it showed must be what the secondary can reproduce. */
    c->console = serial_find(vm);
    if (c->console) {
        colo_outbuf_init(&c->console_out, serial_fd_send, c->console);
        c->console_out.coalesce = true;
        colo_outbuf_hold(&c->console_out, 1);
        serial_set_output(c->console, colo_outbuf_send, &c->console_out);
    }
}

void colo_devices_close_epoch(struct colo *c)
{
    for (unsigned i = 0; i < c->nouts; i++)
        colo_outbuf_close_epoch(&c->outbuf[i]);
    if (c->console)
        colo_outbuf_close_epoch(&c->console_out);
}

void colo_devices_release(struct colo *c, uint64_t epoch)
{
    for (unsigned i = 0; i < c->nouts; i++)
        colo_outbuf_release(&c->outbuf[i], epoch);
    if (c->console)
        colo_outbuf_release(&c->console_out, epoch);
}

uint64_t colo_devices_discard(struct colo *c)
{
    uint64_t n = 0;

    for (unsigned i = 0; i < c->nouts; i++) {
        uint64_t before = c->outbuf[i].discarded_total;
        colo_outbuf_discard(&c->outbuf[i]);
        n += c->outbuf[i].discarded_total - before;
    }
    if (c->console)
        colo_outbuf_discard(&c->console_out);
    return n;
}

void colo_devices_primary_stop(struct colo *c, struct vm *vm)
{
    for (uint32_t i = 0; i < c->nouts; i++) {
        struct virtio_net *n = virtio_net_find(vm, i);
        colo_outbuf_stop(&c->outbuf[i]);
        if (n)
            virtio_net_set_output(n, NULL);
        colo_outbuf_destroy(&c->outbuf[i]);
    }
    c->nouts = 0;
    if (c->console) {
        /* The vCPU thread reads the hook on every byte: switch it with the vCPUs parked, and
         * flush what was held before any new byte can follow. */
        vm_pause(vm);
        colo_outbuf_stop(&c->console_out);
        serial_set_output(c->console, NULL, NULL);
        vm_resume(vm);
        colo_outbuf_destroy(&c->console_out);
        c->console = NULL;
    }
}

void colo_devices_secondary_start(struct vm *vm)
{
    virtio_stop_all(vm);
}

void colo_devices_takeover(struct vm *vm)
{
    virtio_cont_all(vm);
    net_announce_all(vm);
}
