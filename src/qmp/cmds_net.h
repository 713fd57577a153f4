/* cmds_net.h: QMP for the network: announce-self (QEMU's RARP announcement, on request). */
#pragma once

struct qmp_server;
struct vm;

/* announce-self {initial, max, rounds, step, interfaces, id}. Returns 0 or -errno. */
int qmp_register_net_commands(struct qmp_server *s, struct vm *vm);
