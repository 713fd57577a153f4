/* channel.h: migration channels: tcp:HOST:PORT, unix:PATH and file:PATH, both directions. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

enum chan_kind { CHAN_INVALID = 0, CHAN_TCP, CHAN_UNIX, CHAN_FILE };

struct chan_uri {
    enum chan_kind kind;
    char host[256];
    char port[16];
    char path[256];
};

/* "tcp:HOST:PORT" (HOST may be [v6]), "unix:PATH", "file:PATH". */
int chan_parse_uri(const char *uri, struct chan_uri *out, char *err, size_t errlen);
/* Outgoing: a connected socket (TCP_NODELAY) or a file opened for writing. Returns fd or -errno. */
int chan_connect(const struct chan_uri *u, int timeout_ms, char *err, size_t errlen);
/* Incoming: a listening socket, or (file) the snapshot opened for reading. Returns fd or -errno. */
int chan_listen(const struct chan_uri *u, char *err, size_t errlen);
/* Accept one connection on a listening socket (TCP_NODELAY set). Returns fd or -errno. */
int chan_accept(int lfd);
/* Socket options every replication socket wants: no Nagle, keepalive. */
void chan_tune_socket(int fd);
