/* heartbeat.c: the heartbeat thread: send beats, watch for the peer's, report a loss once. */
#include "colo/heartbeat.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"

#define HB_MAGIC 0x48425431u /* "HBT1" */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void *hb_thread(void *arg)
{
    struct heartbeat *hb = arg;
    uint64_t last_rx = now_ms(), last_tx = 0;
    uint8_t in[8];
    size_t have = 0;
    uint32_t seq = 0;
    const char *why = NULL;

    pthread_setname_np(pthread_self(), "colo/hb");
    while (!atomic_load(&hb->stop)) {
        struct pollfd p[2] = {{.fd = hb->fd, .events = POLLIN},
                              {.fd = hb->wake[0], .events = POLLIN}};
        uint64_t now = now_ms();
        int wait;

        if (now - last_tx >= hb->interval_ms) {
            uint8_t beat[8];
            put_be32(beat, HB_MAGIC);
            put_be32(beat + 4, seq++);
            /* Nonblocking: a full socket buffer means the peer is not reading, which the
             * timeout below catches; a beat is never worth blocking for. */
            if (send(hb->fd, beat, sizeof(beat), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 &&
                errno != EAGAIN) {
                why = "heartbeat connection broken";
                break;
            }
            hb->beats_tx++;
            last_tx = now;
        }
        if (now - last_rx > hb->timeout_ms) {
            why = "heartbeat timeout";
            break;
        }
        wait = (int)(hb->interval_ms - (now - last_tx));
        if (wait > (int)(hb->timeout_ms - (now - last_rx)))
            wait = (int)(hb->timeout_ms - (now - last_rx)) + 1;
        if (wait < 1)
            wait = 1;
        if (poll(p, 2, wait) < 0 && errno != EINTR) {
            why = "heartbeat poll failed";
            break;
        }
        if (p[1].revents)
            break;
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(hb->fd, in + have, sizeof(in) - have, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                why = "peer closed the heartbeat connection";
                break;
            }
            if (n > 0) {
                have += (size_t)n;
                if (have == sizeof(in)) {
                    if (get_be32(in) != HB_MAGIC) {
                        why = "garbage on the heartbeat connection";
                        break;
                    }
                    have = 0;
                    hb->beats_rx++;
                    last_rx = now_ms();
                }
            }
        }
    }
    if (why && !atomic_load(&hb->stop)) {
        log_warn("colo: peer lost: %s", why);
        hb->lost(hb->opaque, why);
    }
    return NULL;
}

int heartbeat_start(struct heartbeat *hb, int fd, uint64_t interval_ms, uint64_t timeout_ms,
                    void (*lost)(void *opaque, const char *why), void *opaque)
{
    int r;

    memset(hb, 0, sizeof(*hb));
    hb->fd = fd;
    hb->interval_ms = interval_ms;
    hb->timeout_ms = timeout_ms;
    hb->lost = lost;
    hb->opaque = opaque;
    if (pipe2(hb->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        close(fd);
        return -errno;
    }
    r = pthread_create(&hb->thread, NULL, hb_thread, hb);
    if (r) {
        close(fd);
        close(hb->wake[0]);
        close(hb->wake[1]);
        return -r;
    }
    hb->running = true;
    return 0;
}

void heartbeat_stop(struct heartbeat *hb)
{
    if (!hb->running)
        return;
    atomic_store(&hb->stop, true);
    if (write(hb->wake[1], "x", 1) < 0) {
        /* the thread also notices stop at its next wakeup */
    }
    pthread_join(hb->thread, NULL);
    close(hb->fd);
    close(hb->wake[0]);
    close(hb->wake[1]);
    hb->running = false;
}
