/* outbuf.c: per-epoch queue of held transmit frames, released when their checkpoint is safe. */
#include "colo/outbuf.h"

#include <stdlib.h>
#include <string.h>

#include "colo/colo.h"
#include "core/log.h"

#define COALESCE_CAP 4096 /* a console buffer's first allocation */

struct colo_frame {
    struct colo_frame *next;
    uint64_t epoch;
    size_t len, cap;
    uint8_t data[];
};

void colo_outbuf_init(struct colo_outbuf *ob, colo_send_fn send, void *send_opaque)
{
    memset(ob, 0, sizeof(*ob));
    pthread_mutex_init(&ob->lock, NULL);
    pthread_mutex_init(&ob->send_lock, NULL);
    ob->send = send;
    ob->send_opaque = send_opaque;
}

static void free_frames(struct colo_frame *f)
{
    while (f) {
        struct colo_frame *n = f->next;
        free(f);
        f = n;
    }
}

void colo_outbuf_destroy(struct colo_outbuf *ob)
{
    free_frames(ob->head);
    ob->head = ob->tail = NULL;
    ob->bytes = 0;
    pthread_mutex_destroy(&ob->send_lock);
    pthread_mutex_destroy(&ob->lock);
}

void colo_outbuf_hold(struct colo_outbuf *ob, uint64_t first_epoch)
{
    pthread_mutex_lock(&ob->lock);
    ob->holding = true;
    ob->ckpt_asked = false;
    ob->epoch = first_epoch;
    pthread_mutex_unlock(&ob->lock);
}

static void copy_iov(uint8_t *dst, const struct iovec *iov, int iovcnt)
{
    for (int i = 0; i < iovcnt; i++) {
        memcpy(dst, iov[i].iov_base, iov[i].iov_len);
        dst += iov[i].iov_len;
    }
}

/* Queue one send (ob->lock held). Returns len, or 0 when it was dropped. */
static int enqueue(struct colo_outbuf *ob, const struct iovec *iov, int iovcnt, size_t len)
{
    struct colo_frame *f = ob->tail;
    size_t cap;

    /* bytes <= MAX always, so the subtraction cannot wrap. */
    if (len > COLO_OUTBUF_MAX_BYTES - ob->bytes) {
        ob->dropped_total++;
        return 0; /* dropped, as a full transmit queue would; TCP retransmits */
    }
    if (ob->coalesce && f && f->epoch == ob->epoch && f->cap - f->len >= len) {
        copy_iov(f->data + f->len, iov, iovcnt); /* append to this epoch's buffer */
        f->len += len;
        ob->bytes += len;
        return (int)len;
    }
    cap = ob->coalesce && len < COALESCE_CAP ? COALESCE_CAP : len;
    f = malloc(sizeof(*f) + cap);
    if (!f) {
        ob->dropped_total++;
        return 0;
    }
    copy_iov(f->data, iov, iovcnt);
    f->next = NULL;
    f->epoch = ob->epoch;
    f->len = len;
    f->cap = cap;
    if (ob->tail)
        ob->tail->next = f;
    else
        ob->head = f;
    ob->tail = f;
    ob->bytes += len;
    ob->held_total++;
    return (int)len;
}

int colo_outbuf_send(void *opaque, const struct iovec *iov, int iovcnt)
{
    struct colo_outbuf *ob = opaque;
    size_t len = 0;
    bool ask;
    int r;

    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    pthread_mutex_lock(&ob->lock);
    if (!ob->holding) {
        /* Pass-through: a stop drained the queue before it cleared holding, under this lock,
         * so nothing held can still be behind us. */
        pthread_mutex_unlock(&ob->lock);
        return ob->send ? ob->send(ob->send_opaque, iov, iovcnt) : 0;
    }
    r = enqueue(ob, iov, iovcnt, len);
    ask = !ob->ckpt_asked && ob->bytes >= COLO_OUTBUF_CKPT_BYTES;
    if (ask)
        ob->ckpt_asked = true;
    pthread_mutex_unlock(&ob->lock);
    /* Half full: a checkpoint now lets the buffer drain before frames drop. Outside ob->lock:
     * the engine's lock is never taken inside ours. */
    if (ask)
        colo_request_checkpoint_for(COLO_CKPT_QUEUE_FULL);
    return r;
}

uint64_t colo_outbuf_close_epoch(struct colo_outbuf *ob)
{
    uint64_t closed;

    pthread_mutex_lock(&ob->lock);
    closed = ob->epoch++;
    ob->ckpt_asked = false;
    pthread_mutex_unlock(&ob->lock);
    return closed;
}

/* Take the leading frames that may leave (ob->lock held), in order. */
static struct colo_frame *detach(struct colo_outbuf *ob, bool all, uint64_t upto)
{
    struct colo_frame *list = NULL, **tail = &list;

    while (ob->head && (all || ob->head->epoch <= upto)) {
        struct colo_frame *f = ob->head;
        ob->head = f->next;
        ob->bytes -= f->len;
        f->next = NULL;
        *tail = f;
        tail = &f->next;
    }
    if (!ob->head)
        ob->tail = NULL;
    return list;
}

/*
 * Detach under the lock, transmit outside it (the NIC keeps queueing meanwhile), and look
 * again until nothing is left to take. A stop clears holding only when it finds the queue empty
 * with the lock held: a frame sent while it drained is queued behind the held ones and sent by
 * this loop, never passed straight through ahead of them. send_lock keeps a second release from
 * sending its frames in the middle of ours.
 */
static void release_where(struct colo_outbuf *ob, bool all, uint64_t upto)
{
    uint64_t sent = 0;

    pthread_mutex_lock(&ob->send_lock);
    for (;;) {
        struct colo_frame *list;

        pthread_mutex_lock(&ob->lock);
        ob->released_total += sent;
        sent = 0;
        list = detach(ob, all, upto);
        if (!list) {
            if (all)
                ob->holding = false;
            pthread_mutex_unlock(&ob->lock);
            break;
        }
        pthread_mutex_unlock(&ob->lock);
        for (struct colo_frame *f = list; f; f = f->next) {
            struct iovec iov = {.iov_base = f->data, .iov_len = f->len};
            if (ob->send)
                ob->send(ob->send_opaque, &iov, 1);
            sent++;
        }
        free_frames(list);
    }
    pthread_mutex_unlock(&ob->send_lock);
}

void colo_outbuf_release(struct colo_outbuf *ob, uint64_t upto)
{
    release_where(ob, false, upto);
}

void colo_outbuf_stop(struct colo_outbuf *ob)
{
    release_where(ob, true, 0);
}

void colo_outbuf_discard(struct colo_outbuf *ob)
{
    struct colo_frame *list;
    uint64_t n = 0;

    pthread_mutex_lock(&ob->lock);
    list = ob->head;
    ob->head = ob->tail = NULL;
    ob->bytes = 0;
    for (struct colo_frame *f = list; f; f = f->next)
        n++;
    ob->discarded_total += n;
    pthread_mutex_unlock(&ob->lock);
    free_frames(list);
    if (n)
        log_info("colo: discarded %llu held output buffer(s)", (unsigned long long)n);
}

size_t colo_outbuf_held_bytes(struct colo_outbuf *ob)
{
    size_t b;

    pthread_mutex_lock(&ob->lock);
    b = ob->bytes;
    pthread_mutex_unlock(&ob->lock);
    return b;
}
