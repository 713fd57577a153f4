/* heartbeat.h: a lightweight liveness channel between the pair, on its own connection.
 *
 * Each side sends an 8-byte beat ("HBT1" + be32 sequence) every interval and declares the peer
 * lost when nothing arrived for timeout, or at once when the connection closes (the peer's
 * kernel resets it when the process dies). A stopped peer (SIGSTOP, a hung host) is found by
 * the timeout. On loss the callback runs once, on the heartbeat thread.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct heartbeat {
    int fd;
    uint64_t interval_ms, timeout_ms;
    void (*lost)(void *opaque, const char *why);
    void *opaque;
    pthread_t thread;
    bool running;
    atomic_bool stop;
    int wake[2]; /* pipe: wakes the thread to stop */
    uint64_t beats_rx, beats_tx;
};

/* Takes ownership of fd. */
int heartbeat_start(struct heartbeat *hb, int fd, uint64_t interval_ms, uint64_t timeout_ms,
                    void (*lost)(void *opaque, const char *why), void *opaque);
void heartbeat_stop(struct heartbeat *hb);
