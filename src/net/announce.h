/* announce.h: tell the LAN where the guest now lives: RARP frames from each NIC's MAC. */
#pragma once

struct vm;

/* Send ANNOUNCE_ROUNDS RARP broadcasts from every virtio-net's MAC (after an incoming migration
 * or a COLO takeover), so switches learn the guest's new port, as QEMU's announce-self does. */
void net_announce_all(struct vm *vm);
