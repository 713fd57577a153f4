/* virtq.c: split virtqueues: descriptor walking (direct and indirect), used ring, event idx. */
#include "virtio/virtq.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/mem.h"
#include "virtio/virtio.h"

#define DESC_SIZE 16u

/* Offsets inside the rings. */
#define AVAIL_IDX             2u
#define AVAIL_RING            4u
#define USED_IDX              2u
#define USED_RING             4u
#define USED_ELEM_SIZE        8u
#define AVAIL_USED_EVENT(num) (AVAIL_RING + 2u * (uint32_t)(num))
#define USED_AVAIL_EVENT(num) (USED_RING + USED_ELEM_SIZE * (uint32_t)(num))

/* One guest descriptor, loaded once. */
struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

/* Single loads and stores of aligned guest words: the guest may change them concurrently, so
 * each is read exactly once (no compiler re-fetch) and never torn. */
static uint16_t ld16(const uint8_t *p)
{
    return le16toh(__atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_RELAXED));
}

static uint16_t ld16_acquire(const uint8_t *p)
{
    return le16toh(__atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_ACQUIRE));
}

static void st16(uint8_t *p, uint16_t v)
{
    __atomic_store_n((uint16_t *)(void *)p, htole16(v), __ATOMIC_RELAXED);
}

static void st32(uint8_t *p, uint32_t v)
{
    __atomic_store_n((uint32_t *)(void *)p, htole32(v), __ATOMIC_RELAXED);
}

static void read_desc(const uint8_t *table, uint32_t i, struct desc *d)
{
    const uint8_t *p = table + (uint64_t)i * DESC_SIZE;

    d->addr = le64toh(__atomic_load_n((const uint64_t *)(const void *)p, __ATOMIC_RELAXED));
    d->len = le32toh(__atomic_load_n((const uint32_t *)(const void *)(p + 8), __ATOMIC_RELAXED));
    d->flags = ld16(p + 12);
    d->next = ld16(p + 14);
}

__attribute__((format(printf, 2, 3))) static int fail(struct virtq *q, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(q->error, sizeof(q->error), fmt, ap);
    va_end(ap);
    q->broken = true;
    return -EIO;
}

uint64_t virtq_desc_size(uint16_t num)
{
    return (uint64_t)DESC_SIZE * num;
}

uint64_t virtq_avail_size(uint16_t num)
{
    return AVAIL_RING + 2ULL * num + 2; /* flags, idx, ring[num], used_event */
}

uint64_t virtq_used_size(uint16_t num)
{
    return USED_RING + (uint64_t)USED_ELEM_SIZE * num + 2; /* flags, idx, ring[num], avail_event */
}

void virtq_reset(struct virtq *q)
{
    memset(q, 0, sizeof(*q));
}

int virtq_start(struct virtq *q, struct guest_mem *mem, uint16_t max, uint64_t features)
{
    uint16_t num = q->num;

    q->mem = mem;
    q->desc = q->avail = q->used = NULL;
    q->broken = false;
    q->error[0] = '\0';
    q->event_idx = features & VIRTIO_BIT(VIRTIO_F_RING_EVENT_IDX);
    q->indirect = features & VIRTIO_BIT(VIRTIO_F_RING_INDIRECT_DESC);
    if (!num || num > max || num > VIRTQ_SIZE_LIMIT || (num & (num - 1))) {
        fail(q, "queue size %u invalid (a power of two up to %u)", num, max);
        return -EINVAL;
    }
    if (q->desc_gpa % 16 || q->avail_gpa % 2 || q->used_gpa % 4) {
        fail(q, "misaligned rings (desc 0x%llx, avail 0x%llx, used 0x%llx)",
             (unsigned long long)q->desc_gpa, (unsigned long long)q->avail_gpa,
             (unsigned long long)q->used_gpa);
        return -EINVAL;
    }
    q->desc = gmem_ptr(mem, q->desc_gpa, virtq_desc_size(num));
    q->avail = gmem_ptr(mem, q->avail_gpa, virtq_avail_size(num));
    q->used = gmem_ptr(mem, q->used_gpa, virtq_used_size(num));
    if (!q->desc || !q->avail || !q->used) {
        q->desc = q->avail = q->used = NULL;
        fail(q, "rings outside RAM (desc 0x%llx, avail 0x%llx, used 0x%llx, size %u)",
             (unsigned long long)q->desc_gpa, (unsigned long long)q->avail_gpa,
             (unsigned long long)q->used_gpa, num);
        return -EINVAL;
    }
    return 0;
}

uint16_t virtq_avail_pending(struct virtq *q)
{
    if (!q->ready || q->broken || !q->avail)
        return 0;
    return (uint16_t)(ld16_acquire(q->avail + AVAIL_IDX) - q->last_avail_idx);
}

/*
 * Walk the chain at head. Direct descriptors come from the queue's table; the chain may end in
 * one descriptor that points to an indirect table (spec 2.7.5.3), whose entries are walked
 * instead. At most q->num buffers in all, so a loop is caught after num steps.
 */
static int walk_chain(struct virtq *q, uint16_t head, struct virtq_chain *c, struct iovec *iov,
                      unsigned max_iov)
{
    const uint8_t *table = q->desc;
    uint32_t table_size = q->num;
    uint32_t i = head;
    unsigned ndesc = 0, niov = 0;
    bool in_indirect = false, seen_write = false;
    struct desc d;
    void *p;

    memset(c, 0, sizeof(*c));
    c->head = head;
    for (;;) {
        read_desc(table, i, &d);
        if (d.flags & VIRTQ_DESC_F_INDIRECT) {
            if (!q->indirect)
                return fail(q, "head %u: indirect descriptor, feature not negotiated", head);
            if (in_indirect)
                return fail(q, "head %u: nested indirect table", head);
            if (d.flags & VIRTQ_DESC_F_NEXT)
                return fail(q, "head %u: indirect descriptor with NEXT", head);
            if (d.len == 0 || d.len % DESC_SIZE || d.len / DESC_SIZE > q->num)
                return fail(q, "head %u: indirect table length %u", head, d.len);
            if (d.addr % DESC_SIZE)
                return fail(q, "head %u: misaligned indirect table 0x%llx", head,
                            (unsigned long long)d.addr);
            table = gmem_ptr(q->mem, d.addr, d.len);
            if (!table)
                return fail(q, "head %u: indirect table 0x%llx+%u outside RAM", head,
                            (unsigned long long)d.addr, d.len);
            table_size = d.len / DESC_SIZE;
            i = 0;
            in_indirect = true;
            continue;
        }
        if (++ndesc > q->num)
            return fail(q, "head %u: chain longer than the queue size %u (a loop?)", head, q->num);
        if (d.flags & VIRTQ_DESC_F_WRITE)
            seen_write = true;
        else if (seen_write)
            return fail(q, "head %u: readable buffer after a writable one", head);
        if (d.len == 0)
            goto next; /* legal, and nothing to map */
        if (c->out_len + c->in_len + d.len > VIRTQ_MAX_CHAIN_BYTES)
            return fail(q, "head %u: chain longer than %llu bytes", head,
                        (unsigned long long)VIRTQ_MAX_CHAIN_BYTES);
        p = gmem_ptr(q->mem, d.addr, d.len);
        if (!p)
            return fail(q, "head %u: buffer 0x%llx+%u outside RAM", head,
                        (unsigned long long)d.addr, d.len);
        if (niov >= max_iov)
            return fail(q, "head %u: more than %u buffers", head, max_iov);
        iov[niov].iov_base = p;
        iov[niov].iov_len = d.len;
        niov++;
        if (d.flags & VIRTQ_DESC_F_WRITE) {
            c->n_in++;
            c->in_len += d.len;
        } else {
            c->n_out++;
            c->out_len += d.len;
        }
    next:
        if (!(d.flags & VIRTQ_DESC_F_NEXT))
            break;
        i = d.next;
        if (i >= table_size)
            return fail(q, "head %u: next %u out of range (table of %u)", head, i, table_size);
    }
    return 0;
}

int virtq_pop(struct virtq *q, struct virtq_chain *c, struct iovec *iov, unsigned max_iov)
{
    uint16_t avail_idx, pending, head;
    int r;

    if (q->broken)
        return -EIO;
    if (!q->ready || !q->avail)
        return 0;
    /* Acquire: the ring entry and descriptors were written before the index. */
    avail_idx = ld16_acquire(q->avail + AVAIL_IDX);
    pending = (uint16_t)(avail_idx - q->last_avail_idx);
    if (pending == 0)
        return 0;
    if (pending > q->num)
        return fail(q, "avail idx %u is %u ahead of %u (queue size %u)", avail_idx, pending,
                    q->last_avail_idx, q->num);
    head = ld16(q->avail + AVAIL_RING + 2u * (q->last_avail_idx % q->num));
    if (head >= q->num)
        return fail(q, "avail ring slot %u: head %u out of range", q->last_avail_idx % q->num,
                    head);
    r = walk_chain(q, head, c, iov, max_iov);
    if (r)
        return r;
    q->last_avail_idx++;
    return 1;
}

void virtq_unpop(struct virtq *q, uint16_t n)
{
    q->last_avail_idx = (uint16_t)(q->last_avail_idx - n);
}

void virtq_fill(struct virtq *q, uint16_t offset, uint16_t head, uint32_t len)
{
    uint32_t slot = (uint16_t)(q->used_idx + offset) % q->num;
    uint32_t off = USED_RING + USED_ELEM_SIZE * slot;

    st32(q->used + off, head);
    st32(q->used + off + 4, len);
    gmem_mark_dirty(q->mem, q->used_gpa + off, USED_ELEM_SIZE);
}

void virtq_flush(struct virtq *q, uint16_t count)
{
    q->used_idx = (uint16_t)(q->used_idx + count);
    /* Release: the elements and the data they describe are visible before the index. */
    __atomic_store_n((uint16_t *)(void *)(q->used + USED_IDX), htole16(q->used_idx),
                     __ATOMIC_RELEASE);
    gmem_mark_dirty(q->mem, q->used_gpa + USED_IDX, 2);
}

void virtq_push(struct virtq *q, uint16_t head, uint32_t len)
{
    virtq_fill(q, 0, head, len);
    virtq_flush(q, 1);
}

void virtq_enable_kicks(struct virtq *q)
{
    if (q->event_idx && q->used) {
        st16(q->used + USED_AVAIL_EVENT(q->num), q->last_avail_idx);
        gmem_mark_dirty(q->mem, q->used_gpa + USED_AVAIL_EVENT(q->num), 2);
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

bool virtq_should_notify(struct virtq *q)
{
    uint16_t old = q->signalled_used, now = q->used_idx, event;
    bool valid = q->signalled_used_valid;

    if (!q->avail)
        return false;
    /* Our used idx store must be visible before we read the driver's suppression state,
     * or both sides may decide the other one will act. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!q->event_idx)
        return !(ld16(q->avail) & VIRTQ_AVAIL_F_NO_INTERRUPT);
    q->signalled_used = now;
    q->signalled_used_valid = true;
    if (!valid)
        return true;
    event = ld16(q->avail + AVAIL_USED_EVENT(q->num));
    /* vring_need_event: did now move past event since old? */
    return (uint16_t)(now - event - 1) < (uint16_t)(now - old);
}

void virtq_mark_written(struct virtq *q, const struct iovec *iov, unsigned n, uint64_t len)
{
    for (unsigned i = 0; i < n && len; i++) {
        uint64_t seg = iov[i].iov_len < len ? iov[i].iov_len : len;
        uint64_t off = (uint64_t)((const uint8_t *)iov[i].iov_base - q->mem->base);

        gmem_mark_dirty(q->mem, gmem_offset_to_gpa(q->mem, off), seg);
        len -= seg;
    }
}

int virtq_post_load(struct virtq *q, struct guest_mem *mem, uint16_t max, uint64_t features)
{
    q->mem = mem;
    q->desc = q->avail = q->used = NULL;
    q->broken = false;
    q->error[0] = '\0';
    if (!q->ready)
        return 0;
    return virtq_start(q, mem, max, features);
}
