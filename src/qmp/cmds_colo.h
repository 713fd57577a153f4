/* cmds_colo.h: QMP for COLO: query-colo-status, x-colo-lost-heartbeat, x-colo-checkpoint,
 * and the COLO_EXIT event. */
#pragma once

struct qmp_server;

int qmp_register_colo_commands(struct qmp_server *s);
