/* client.h: one QMP socket client (internal to src/qmp; the server accepts, this serves). */
#pragma once

struct qmp_client;
struct qmp_server;

/* Serve the accepted, nonblocking fd: greeting sent, session linked for events. On failure
 * (-errno) the caller still owns fd. */
int qmp_client_new(struct qmp_server *s, int fd);
/* Disconnect now; the memory stays until qmp_clients_reap. Idempotent. */
void qmp_client_kill(struct qmp_client *c);
void qmp_clients_kill_all(struct qmp_server *s);
/* Free the killed clients. Only with no server callback on the stack. */
void qmp_clients_reap(struct qmp_server *s);
