/* virtq.h: split virtqueues: walking hostile descriptor chains and publishing used buffers.
 *
 * Guest memory layout of a queue of size N (spec 2.7), all little-endian:
 *
 *   descriptor table (16-byte aligned)  N x { u64 addr; u32 len; u16 flags; u16 next; }
 *   available ring   (2-byte aligned)   u16 flags; u16 idx; u16 ring[N]; u16 used_event;
 *   used ring        (4-byte aligned)   u16 flags; u16 idx; N x { u32 id; u32 len; }; u16
 * avail_event;
 *
 * The guest owns the descriptor table and the available ring and may change them at any time,
 * from another vCPU, while we read them. So every guest word is loaded exactly once into a local
 * (no double fetch), every index is bounded before use, and every address goes through gmem_ptr.
 * A chain that breaks the rules marks the queue broken with a reason; the transport then puts the
 * device into NEEDS_RESET. We never follow a broken queue again until the driver resets it.
 *
 * Threads: a queue is used under its device's lock only.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct guest_mem;

#define VIRTQ_DESC_F_NEXT          1u
#define VIRTQ_DESC_F_WRITE         2u
#define VIRTQ_DESC_F_INDIRECT      4u
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1u

/* Largest queue the spec allows (split rings: a power of two up to 32768). */
#define VIRTQ_SIZE_LIMIT 32768u
/* Bound on the bytes one chain may describe: a hostile chain cannot make a device loop over GiBs.
 */
#define VIRTQ_MAX_CHAIN_BYTES (128ULL << 20)

struct virtq {
    /* Programmed by the driver through the transport (migrated). */
    uint16_t num; /* queue size; a power of two */
    bool ready;
    uint64_t desc_gpa, avail_gpa, used_gpa;
    /* Device progress (migrated). last_avail_idx is the truth: buffers not yet used are simply
     * popped again from the ring after a restore. */
    uint16_t last_avail_idx;
    uint16_t used_idx;
    uint16_t signalled_used; /* used_idx when we last interrupted (event idx) */
    bool signalled_used_valid;

    /* Derived by virtq_start (not migrated). */
    struct guest_mem *mem;
    bool event_idx; /* VIRTIO_F_RING_EVENT_IDX negotiated */
    bool indirect;  /* VIRTIO_F_RING_INDIRECT_DESC negotiated */
    uint8_t *desc;  /* host pointers to the three areas, checked in RAM at start */
    uint8_t *avail;
    uint8_t *used;
    bool broken;
    char error[128];
};

/* One popped chain. Its buffers are the caller's iov[0, n_out + n_in): device-readable ones
 * first (n_out, out_len bytes), then device-writable ones (n_in, in_len bytes). */
struct virtq_chain {
    uint16_t head;
    unsigned n_out, n_in;
    uint64_t out_len, in_len;
};

/* Bytes each area occupies for a queue of size num. */
uint64_t virtq_desc_size(uint16_t num);
uint64_t virtq_avail_size(uint16_t num);
uint64_t virtq_used_size(uint16_t num);

/* Forget everything (driver reset). */
void virtq_reset(struct virtq *q);

/* Validate num (power of two, 1..max) and the three areas (aligned, inside RAM) and cache their
 * host pointers. features: the negotiated feature bits. 0, or -EINVAL with q->error set. */
int virtq_start(struct virtq *q, struct guest_mem *mem, uint16_t max, uint64_t features);

/*
 * Pop the next available chain into iov (capacity max_iov). Returns 1 with *c filled, 0 if the
 * ring is empty, or -EIO if the guest broke the rules (q->broken set, reason in q->error):
 * avail idx more than num ahead, head or next out of range, a loop or a chain longer than num
 * descriptors, a buffer outside RAM, a readable buffer after a writable one, more than
 * VIRTQ_MAX_CHAIN_BYTES, or a bad indirect table (feature not negotiated, length not a nonzero
 * multiple of 16, misaligned, outside RAM, nested, combined with NEXT).
 * Zero-length buffers are legal and produce no iovec.
 */
int virtq_pop(struct virtq *q, struct virtq_chain *c, struct iovec *iov, unsigned max_iov);

/* Give back the last n popped chains (they are popped again later). */
void virtq_unpop(struct virtq *q, uint16_t n);

/* Chains the driver made available that we have not popped yet (0 if the index is bogus). */
uint16_t virtq_avail_pending(struct virtq *q);

/* Write used element number used_idx + offset (not yet visible to the driver). */
void virtq_fill(struct virtq *q, uint16_t offset, uint16_t head, uint32_t len);
/* Publish count filled elements (one release store of used->idx). */
void virtq_flush(struct virtq *q, uint16_t count);
/* virtq_fill(0) + virtq_flush(1). */
void virtq_push(struct virtq *q, uint16_t head, uint32_t len);

/* With event idx: tell the driver to kick us for anything past last_avail_idx (avail_event).
 * Then a full barrier, so the caller's following virtq_avail_pending sees a racing addition. */
void virtq_enable_kicks(struct virtq *q);

/* After flushing: should the driver be interrupted? Applies used_event (event idx) or
 * VIRTQ_AVAIL_F_NO_INTERRUPT, and records what was signalled. */
bool virtq_should_notify(struct virtq *q);

/* Mark the first len bytes of the buffers iov[0, n) dirty: the device wrote them. Each iov_base
 * must point into q->mem (as virtq_pop returns them). */
void virtq_mark_written(struct virtq *q, const struct iovec *iov, unsigned n, uint64_t len);

/* Validate migrated fields before use (post_load): a ready queue is started again. 0/-EINVAL. */
int virtq_post_load(struct virtq *q, struct guest_mem *mem, uint16_t max, uint64_t features);
