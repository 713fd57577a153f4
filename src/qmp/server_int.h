/* server_int.h: the server state shared inside src/qmp by server.c and client.c. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <sys/un.h>

#include "qmp/server.h"

struct qmp_client;
struct qmp_registry;

struct qmp_cleanup {
    void (*fn)(void *arg);
    void *arg;
    struct qmp_cleanup *next;
};

struct qmp_server {
    struct loop *loop;
    pthread_t owner; /* the loop thread */
    int listen_fd;
    int accept_timer; /* > 0 while accepting is paused (out of fds) */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct qmp_registry *reg;
    struct qmp_session *sessions; /* every live session (socket or attached), for events */
    struct qmp_client *clients;   /* socket clients, live and dead-but-not-freed */
    unsigned nclients;            /* live socket clients */
    int busy;                     /* server callbacks on the stack */
    bool freeing;
    struct qmp_cleanup *cleanups;
};

/*
 * Callback depth. Every entry from the loop (accept, client I/O, timers) and qmp_emit_event
 * enter and leave; killed clients are freed when the outermost one leaves.
 */
void qmp_server_enter(struct qmp_server *s);
void qmp_server_leave(struct qmp_server *s);

/* The sessions that receive events. */
void qmp_server_link_session(struct qmp_server *s, struct qmp_session *sess);
void qmp_server_unlink_session(struct qmp_server *s, struct qmp_session *sess);

/* {"QMP": {"version": ..., "capabilities": []}} */
int qmp_send_greeting(struct qmp_session *sess);
