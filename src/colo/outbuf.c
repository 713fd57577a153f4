/* outbuf.c: per-epoch queue of held transmit frames, released when their checkpoint is safe. */
#include "colo/outbuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

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
    pthread_mutex_destroy(&ob->lock);
}

void colo_outbuf_hold(struct colo_outbuf *ob, uint64_t first_epoch)
{
    pthread_mutex_lock(&ob->lock);
    ob->holding = true;
    ob->epoch = first_epoch;
    pthread_mutex_unlock(&ob->lock);
}

int colo_outbuf_send(void *opaque, const struct iovec *iov, int iovcnt)
{
    struct colo_outbuf *ob = opaque;
    struct colo_frame *f;
    size_t len = 0, off = 0;

    pthread_mutex_lock(&ob->lock);
    if (!ob->holding) {
        pthread_mutex_unlock(&ob->lock);
        return ob->send ? ob->send(ob->send_opaque, iov, iovcnt) : 0;
    }
    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    if (ob->coalesce && ob->tail && ob->tail->epoch == ob->epoch &&
        ob->tail->cap - ob->tail->len >= len) {
        f = ob->tail; /* append to this epoch's buffer */
        for (int i = 0; i < iovcnt; i++) {
            memcpy(f->data + f->len, iov[i].iov_base, iov[i].iov_len);
            f->len += iov[i].iov_len;
        }
        ob->bytes += len;
        pthread_mutex_unlock(&ob->lock);
        return (int)len;
    }
    size_t cap = ob->coalesce && len < 4096 ? 4096 : len;
    if (ob->bytes + len > COLO_OUTBUF_MAX_BYTES || !(f = malloc(sizeof(*f) + cap))) {
        ob->dropped_total++;
        pthread_mutex_unlock(&ob->lock);
        return 0; /* dropped, as a full transmit queue would; TCP retransmits */
    }
    for (int i = 0; i < iovcnt; i++) {
        memcpy(f->data + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
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
    pthread_mutex_unlock(&ob->lock);
    return (int)len;
}

uint64_t colo_outbuf_close_epoch(struct colo_outbuf *ob)
{
    uint64_t closed;

    pthread_mutex_lock(&ob->lock);
    closed = ob->epoch++;
    pthread_mutex_unlock(&ob->lock);
    return closed;
}

/* Detach the frames to send under the lock; transmit them outside it, in order. */
static void release_where(struct colo_outbuf *ob, bool all, uint64_t upto)
{
    struct colo_frame *list = NULL, **tail = &list;

    pthread_mutex_lock(&ob->lock);
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
    if (all)
        ob->holding = false;
    pthread_mutex_unlock(&ob->lock);
    for (struct colo_frame *f = list; f; f = f->next) {
        struct iovec iov = {.iov_base = f->data, .iov_len = f->len};
        if (ob->send)
            ob->send(ob->send_opaque, &iov, 1);
        ob->released_total++;
    }
    free_frames(list);
}

void colo_outbuf_release(struct colo_outbuf *ob, uint64_t upto)
{
    release_where(ob, false, upto);
}

void colo_outbuf_stop(struct colo_outbuf *ob)
{
    release_where(ob, true, 0);
}
