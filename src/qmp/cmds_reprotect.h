/* cmds_reprotect.h: QMP x-colo-reprotect: a VM that runs unprotected becomes a COLO primary. */
#pragma once

struct qmp_server;
struct migration;

/* x-colo-reprotect {"uri": "tcp:HOST:PORT"} (docs/qmp.md, docs/colo.md "Re-protection").
 * Returns 0 or -errno. */
int qmp_register_reprotect_commands(struct qmp_server *s, struct migration *m);
