/* mirror.h: hybrid COLO's frame link: the primary's input frames to the secondary, the SVM's
 * output frames back to the primary, over one authenticated TCP connection.
 *
 * Wire (docs/stream.md, "Hybrid frame link"), both directions, one record per frame:
 *   be32 n (bytes after this field: 12 + frame length), u8 kind (1 input, 2 output), u8 nic,
 *   be16 0, be64 generation, frame (Ethernet, no virtio header; 14..MIRROR_FRAME_MAX bytes)
 * The generation is the number of checkpoints taken when the frame was made: the secondary
 * drops input older than the checkpoint it runs from, the primary drops SVM output of a
 * generation it already closed (docs/hybrid.md, "Generations").
 *
 * Sending never blocks: with nothing queued or being written, the caller's thread sends the
 * record at once (non-blocking, which saves a thread wakeup per frame); whatever the socket does
 * not take queues (at most MIRROR_QUEUE_MAX bytes) for a writer thread. A reader thread hands
 * every record to the callback. A malformed record or a broken connection
 * ends the link (mirror_broken); the checkpoint stream and the heartbeat judge the peer.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define MIRROR_FRAME_MAX 65536u      /* larger than any frame a NIC sends or a tap delivers */
#define MIRROR_QUEUE_MAX (16u << 20) /* bytes waiting for the writer */

enum mirror_kind { MIRROR_INPUT = 1, MIRROR_OUTPUT = 2 };

struct mirror_rec;

/* On the reader thread; frame is valid during the call (and may be changed in place). */
typedef void (*mirror_recv_fn)(void *opaque, enum mirror_kind kind, unsigned nic, uint64_t gen,
                               uint8_t *frame, size_t len);

struct mirror {
    int fd;
    pthread_t reader, writer;
    bool started;
    pthread_mutex_t lock; /* the queue and the flags */
    pthread_cond_t cond;
    struct mirror_rec *head, *tail;
    size_t queued; /* bytes */
    bool stopping, broken;
    bool writing; /* the writer thread is sending records it took off the queue */
    mirror_recv_fn fn;
    void *opaque;
    void (*on_broken)(void *opaque,
                      const char *why); /* optional; once, on the thread that saw it */
    /* counters (lock) */
    uint64_t sent, received, dropped;
};

/* Start both threads on fd (taken: closed by mirror_stop, or here on failure). on_broken
 * (optional) is told once when the link breaks by itself (not when stopped). */
int mirror_start(struct mirror *mi, int fd, mirror_recv_fn fn,
                 void (*on_broken)(void *opaque, const char *why), void *opaque);
/* Queue one frame, any thread, never blocks. 0; -ENOBUFS: MIRROR_QUEUE_MAX bytes already wait
 * (dropped, counted); -EPIPE: the link is down (dropped, counted); -EMSGSIZE. */
int mirror_send(struct mirror *mi, enum mirror_kind kind, unsigned nic, uint64_t gen,
                const struct iovec *iov, int iovcnt);
/* The link broke (peer gone, malformed record, write failed). */
bool mirror_broken(struct mirror *mi);
/* Stop and join both threads, close the fd, free the queue. Idempotent; not from the callback. */
void mirror_stop(struct mirror *mi);
