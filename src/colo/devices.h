/* devices.h: what COLO does to the VM's devices: hold NIC output on the primary, keep the
 * secondary's devices idle, and bring them up (with a MAC announcement) at takeover. */
#pragma once

#include <stdint.h>

struct colo;
struct vm;

/* Primary: route every NIC's transmit path through its output buffer (all of them: a VM has at
 * most COLO_MAX_NICS, colo.h). */
void colo_devices_primary_start(struct colo *c, struct vm *vm);
/* Primary, vCPUs paused: output from now on belongs to the next epoch. */
void colo_devices_close_epoch(struct colo *c);
/* Primary: checkpoint `epoch` reached the secondary; its output may leave. */
void colo_devices_release(struct colo *c, uint64_t epoch);
/* Primary leaving COLO: release everything held, restore direct transmit. */
void colo_devices_primary_stop(struct colo *c, struct vm *vm);
/* Primary losing its secondary: drop every held frame and console byte (the secondary never
 * had the state that made them); returns how many frames were dropped. Still holding after. */
uint64_t colo_devices_discard(struct colo *c);
/* Secondary: no device work (tap RX, queue kicks) may touch the standby VM between checkpoints. */
void colo_devices_secondary_start(struct vm *vm);
/* Secondary takeover: devices run again, and each NIC announces its MAC (RARP, as QEMU's
 * announce-self) so the LAN's switches send the guest's traffic here. */
void colo_devices_takeover(struct vm *vm);
