/* cmds_vm.h: the QMP commands and events that drive and report a VM's run state. */
#pragma once

struct qmp_server;
struct vm;

/* query-status, stop, cont, system_reset, quit, query-version. Returns 0 or -errno. */
int qmp_register_vm_commands(struct qmp_server *s, struct vm *vm);

/*
 * Take vm->hooks (one subscriber: any previous hooks are replaced) so that run-state changes
 * become STOP / RESUME, guest resets RESET and the end of the process SHUTDOWN. The hooks are
 * cleared again when the server is freed.
 */
void qmp_attach_vm_events(struct qmp_server *s, struct vm *vm);
