/* cmds_migration.h: QMP migration commands (QEMU's QAPI names and shapes) and MIGRATION events. */
#pragma once

struct qmp_server;
struct migration;

int qmp_register_migration_commands(struct qmp_server *s, struct migration *m);
