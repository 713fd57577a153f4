/* cmds_accel.h: QMP commands that name the CPU engine: query-kvm (as QEMU) and query-accel. */
#pragma once

struct qmp_server;
struct vm;

/* query-kvm: {enabled, present}; query-accel: {name, icount}. Returns 0 or -errno. */
int qmp_register_accel_commands(struct qmp_server *s, struct vm *vm);
