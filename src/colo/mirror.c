/* mirror.c: hybrid COLO's frame link: a queue and a writer thread out, a reader thread in. */
#include "colo/mirror.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "migration/be.h"

#define MIRROR_HDR 16 /* be32 n, kind, nic, be16 0, be64 gen */

struct mirror_rec {
    struct mirror_rec *next;
    size_t len; /* header + frame */
    uint8_t data[];
};

/* The reader's buffer: records are parsed from it; one recv usually brings whole records. */
struct rbuf {
    uint8_t *data;
    size_t cap, start, end;
};

/* Make n bytes available at rb->data + rb->start (n <= cap). 0, or -EPIPE / -errno. */
static int rbuf_need(int fd, struct rbuf *rb, size_t n)
{
    if (rb->end - rb->start >= n)
        return 0;
    if (rb->start + n > rb->cap) {
        memmove(rb->data, rb->data + rb->start, rb->end - rb->start);
        rb->end -= rb->start;
        rb->start = 0;
    }
    while (rb->end - rb->start < n) {
        ssize_t r = recv(fd, rb->data + rb->end, rb->cap - rb->end, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r == 0 ? -EPIPE : -errno;
        rb->end += (size_t)r;
    }
    return 0;
}

static void mark_broken(struct mirror *mi, const char *why)
{
    bool first;

    pthread_mutex_lock(&mi->lock);
    first = !mi->broken && !mi->stopping;
    if (first)
        log_warn("colo: frame link: %s", why);
    mi->broken = true;
    pthread_cond_broadcast(&mi->cond);
    pthread_mutex_unlock(&mi->lock);
    if (first && mi->on_broken)
        mi->on_broken(mi->opaque, why);
}

static void *reader_main(void *opaque)
{
    struct mirror *mi = opaque;
    struct rbuf rb = {.cap = 2 * (MIRROR_HDR + MIRROR_FRAME_MAX)};
    uint8_t *buf;
    char why[128];

    rb.data = malloc(rb.cap);
    if (!rb.data) {
        mark_broken(mi, "out of memory");
        return NULL;
    }
    for (;;) {
        uint32_t n;
        int r = rbuf_need(mi->fd, &rb, MIRROR_HDR);

        buf = rb.data + rb.start;
        if (r) {
            snprintf(why, sizeof(why), "the peer closed it (%s)", strerror(-r));
            break;
        }
        n = be32_load(buf);
        if (n < MIRROR_HDR - 4 + 14 || n > MIRROR_HDR - 4 + MIRROR_FRAME_MAX ||
            (buf[4] != MIRROR_INPUT && buf[4] != MIRROR_OUTPUT) || be16_load(buf + 6)) {
            snprintf(why, sizeof(why), "malformed record (length %u, kind %u): link closed", n,
                     buf[4]);
            break;
        }
        r = rbuf_need(mi->fd, &rb, n + 4);
        buf = rb.data + rb.start;
        if (r) {
            snprintf(why, sizeof(why), "the peer closed it mid-record (%s)", strerror(-r));
            break;
        }
        pthread_mutex_lock(&mi->lock);
        mi->received++;
        pthread_mutex_unlock(&mi->lock);
        mi->fn(mi->opaque, (enum mirror_kind)buf[4], buf[5], be64_load(buf + 8), buf + MIRROR_HDR,
               n - (MIRROR_HDR - 4));
        rb.start += n + 4;
        if (rb.start == rb.end)
            rb.start = rb.end = 0;
    }
    free(rb.data);
    mark_broken(mi, why);
    return NULL;
}

static int write_all(int fd, struct iovec *iov, int cnt)
{
    while (cnt) {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)(cnt > 64 ? 64 : cnt)};
        ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL); /* a closed peer is an error, not a signal */
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        while (cnt && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt) {
            iov->iov_base = (uint8_t *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

static void *writer_main(void *opaque)
{
    struct mirror *mi = opaque;
    struct iovec iov[64];

    for (;;) {
        struct mirror_rec *batch, *r;
        int cnt = 0, err;

        pthread_mutex_lock(&mi->lock);
        while (!mi->head && !mi->stopping && !mi->broken)
            pthread_cond_wait(&mi->cond, &mi->lock);
        if (mi->stopping || mi->broken) {
            pthread_mutex_unlock(&mi->lock);
            return NULL;
        }
        /* Take up to 64 records; the rest wait for the next round. */
        batch = mi->head;
        for (r = batch; r && cnt < 64; r = r->next)
            iov[cnt++] = (struct iovec){.iov_base = r->data, .iov_len = r->len};
        mi->head = r;
        if (!r)
            mi->tail = NULL;
        mi->writing = true;
        pthread_mutex_unlock(&mi->lock);
        err = write_all(mi->fd, iov, cnt);
        pthread_mutex_lock(&mi->lock);
        mi->writing = false;
        for (int i = 0; i < cnt; i++) {
            struct mirror_rec *next = batch->next;
            mi->queued -= batch->len;
            free(batch);
            batch = next;
        }
        if (!err)
            mi->sent += (uint64_t)cnt;
        pthread_mutex_unlock(&mi->lock);
        if (err) {
            char why[96];
            snprintf(why, sizeof(why), "write failed: %s", strerror(-err));
            mark_broken(mi, why);
            return NULL;
        }
    }
}

int mirror_start(struct mirror *mi, int fd, mirror_recv_fn fn,
                 void (*on_broken)(void *opaque, const char *why), void *opaque)
{
    int r;

    *mi = (struct mirror){.fd = fd, .fn = fn, .on_broken = on_broken, .opaque = opaque};
    pthread_mutex_init(&mi->lock, NULL);
    pthread_cond_init(&mi->cond, NULL);
    r = -pthread_create(&mi->reader, NULL, reader_main, mi);
    if (r)
        goto out;
    r = -pthread_create(&mi->writer, NULL, writer_main, mi);
    if (r) {
        shutdown(fd, SHUT_RDWR);
        pthread_join(mi->reader, NULL);
        goto out;
    }
    mi->started = true;
    return 0;
out:
    close(fd);
    mi->fd = -1;
    return r;
}

int mirror_send(struct mirror *mi, enum mirror_kind kind, unsigned nic, uint64_t gen,
                const struct iovec *iov, int iovcnt)
{
    struct mirror_rec *rec;
    size_t len = 0, off = MIRROR_HDR;
    int r = 0;

    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    if (len < 14 || len > MIRROR_FRAME_MAX || nic > 255)
        return -EMSGSIZE;
    pthread_mutex_lock(&mi->lock);
    if (!mi->started || mi->broken || mi->stopping)
        r = -EPIPE;
    else if (mi->queued + MIRROR_HDR + len > MIRROR_QUEUE_MAX)
        r = -ENOBUFS;
    if (r) {
        mi->dropped++;
        pthread_mutex_unlock(&mi->lock);
        return r;
    }
    pthread_mutex_unlock(&mi->lock);
    rec = malloc(sizeof(*rec) + MIRROR_HDR + len);
    if (!rec) {
        pthread_mutex_lock(&mi->lock);
        mi->dropped++;
        pthread_mutex_unlock(&mi->lock);
        return -ENOBUFS;
    }
    rec->next = NULL;
    rec->len = MIRROR_HDR + len;
    be32_store(rec->data, (uint32_t)(MIRROR_HDR - 4 + len));
    rec->data[4] = (uint8_t)kind;
    rec->data[5] = (uint8_t)nic;
    be16_store(rec->data + 6, 0);
    be64_store(rec->data + 8, gen);
    for (int i = 0; i < iovcnt; i++) {
        memcpy(rec->data + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    pthread_mutex_lock(&mi->lock);
    if (!mi->head && !mi->writing && !mi->broken && !mi->stopping) {
        /* Nothing ahead of it: send it from here, without waking the writer. */
        struct iovec one = {.iov_base = rec->data, .iov_len = rec->len};
        struct msghdr mh = {.msg_iov = &one, .msg_iovlen = 1};
        ssize_t w;
        do {
            w = sendmsg(mi->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        } while (w < 0 && errno == EINTR);
        if (w == (ssize_t)rec->len) {
            mi->sent++;
            pthread_mutex_unlock(&mi->lock);
            free(rec);
            return 0;
        }
        if (w > 0) {
            /* The rest goes first, from the writer. */
            memmove(rec->data, rec->data + w, rec->len - (size_t)w);
            rec->len -= (size_t)w;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            char why[96];
            snprintf(why, sizeof(why), "send failed: %s", strerror(errno));
            mi->dropped++;
            pthread_mutex_unlock(&mi->lock);
            free(rec);
            mark_broken(mi, why);
            return -EPIPE;
        }
    }
    if (mi->tail)
        mi->tail->next = rec;
    else
        mi->head = rec;
    mi->tail = rec;
    mi->queued += rec->len;
    pthread_cond_signal(&mi->cond);
    pthread_mutex_unlock(&mi->lock);
    return 0;
}

bool mirror_broken(struct mirror *mi)
{
    bool b;

    pthread_mutex_lock(&mi->lock);
    b = mi->broken || !mi->started;
    pthread_mutex_unlock(&mi->lock);
    return b;
}

void mirror_stop(struct mirror *mi)
{
    struct mirror_rec *r;

    if (!mi->started)
        return;
    pthread_mutex_lock(&mi->lock);
    mi->stopping = true;
    pthread_cond_broadcast(&mi->cond);
    pthread_mutex_unlock(&mi->lock);
    shutdown(mi->fd, SHUT_RDWR);
    pthread_join(mi->writer, NULL);
    pthread_join(mi->reader, NULL);
    close(mi->fd);
    mi->fd = -1;
    while ((r = mi->head)) {
        mi->head = r->next;
        free(r);
    }
    mi->tail = NULL;
    mi->queued = 0;
    mi->started = false;
}
