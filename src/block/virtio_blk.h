/* virtio_blk.h: virtio-blk device over a raw image: IN, OUT, FLUSH, GET_ID; a COLO write hook.
 *
 * Requests are served synchronously in the queue's notify handler (main loop, or the vCPU
 * thread without ioeventfd) under the device lock: a write is acknowledged (status byte, used
 * ring, interrupt) only after pwritev returned for all of it. So nothing is in flight once
 * virtio_mmio_stop returned, and a checkpoint needs no drain.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "block/raw.h"
#include "virtio/virtio_mmio.h"

struct vm;

#define VIRTIO_BLK_F_SEG_MAX  2
#define VIRTIO_BLK_F_RO       5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH    9

#define VIRTIO_BLK_T_IN     0u
#define VIRTIO_BLK_T_OUT    1u
#define VIRTIO_BLK_T_FLUSH  4u
#define VIRTIO_BLK_T_GET_ID 8u

#define VIRTIO_BLK_S_OK     0u
#define VIRTIO_BLK_S_IOERR  1u
#define VIRTIO_BLK_S_UNSUPP 2u

#define VIRTIO_BLK_SECTOR    512u
#define VIRTIO_BLK_QUEUE_MAX 256u
#define VIRTIO_BLK_SEG_MAX   (VIRTIO_BLK_QUEUE_MAX - 2) /* + header + status = one full chain */
#define VIRTIO_BLK_ID_BYTES  20u
#define VIRTIO_BLK_HDR_BYTES 16u

/* Config space offsets (spec 5.2.4). */
#define VIRTIO_BLK_CFG_CAPACITY 0
#define VIRTIO_BLK_CFG_SEG_MAX  12
#define VIRTIO_BLK_CFG_BLK_SIZE 20
#define VIRTIO_BLK_CFG_LEN      24

/*
 * COLO disk replication hook, run for each accepted write under the device lock.
 *
 * write: BEFORE the local write, with the guest's data (iov points into guest RAM and is valid
 *   only during the call: copy what must be kept). A negative return fails the request with
 *   IOERR, the image untouched.
 * source (optional): right after write returned 0: the buffers (n returned, *iov set) holding
 *   the hook's copy of those very bytes, which the device then writes instead of guest RAM, so
 *   the local image gets exactly what the hook copied even if the guest changes its buffer
 *   meanwhile. 0: write from guest RAM.
 * done (optional): right after the local write (before any flush), with its result (0 or
 *   -errno), for every write that returned 0; still before the guest can see the completion.
 *
 * A checkpoint never falls between write and done: requests run on the main loop under
 * vm->dev_lock (which a checkpoint holds) or on a vCPU thread inside an MMIO exit (which a
 * pause waits for).
 */
struct blk_write_hook {
    int (*write)(void *opaque, uint64_t offset, const struct iovec *iov, unsigned n, uint64_t len);
    unsigned (*source)(void *opaque, const struct iovec **iov);
    void (*done)(void *opaque, uint64_t offset, uint64_t len, int result);
    void *opaque;
};

/* One request, split out of its chain (buffers point into guest RAM). */
struct virtio_blk_req {
    uint32_t type;
    uint64_t sector;
    struct iovec out[VIRTIO_BLK_QUEUE_MAX]; /* readable data after the header */
    unsigned n_out;
    uint64_t out_len;
    struct iovec in[VIRTIO_BLK_QUEUE_MAX]; /* writable data before the status byte */
    unsigned n_in;
    uint64_t in_len;
    struct iovec status; /* the last writable byte */
};

struct virtio_blk {
    struct virtio_mmio vdev; /* first: see VIRTIO_MMIO_FIRST_MEMBER */
    /* Migrated, and checked against the local image on load. */
    uint64_t capacity; /* sectors */
    bool readonly;
    /* Host side. */
    struct raw_disk disk;
    uint32_t instance;
    char id[VIRTIO_BLK_ID_BYTES + 1];
    struct blk_write_hook write_hook;
    struct iovec iov[VIRTIO_BLK_QUEUE_MAX]; /* the chain being served */
    struct virtio_blk_req req;
    uint64_t nreads, nwrites, nflushes, nerrors;
};

/* --disk spec "path=FILE[,readonly=on]": opens the image, takes the next virtio-mmio slot and an
 * inventory entry ("virtio-blk", instance = index among disks). -EINVAL for a bad spec. */
int virtio_blk_create(struct vm *vm, const char *spec, char *err, size_t errlen);
/* The disk with this instance number, or NULL. */
struct virtio_blk *virtio_blk_find(struct vm *vm, uint32_t instance);
/* Image locks follow the guest across a migration: the destination takes them when the guest
 * arrives (waiting up to timeout_ms for the source to let go), the source drops them when it
 * has left. Returns the number of disks left unlocked. */
int virtio_blk_lock_all(struct vm *vm, int timeout_ms);
void virtio_blk_unlock_all(struct vm *vm);
/* Install (or clear, with NULL) the COLO write hook. Any thread. */
void virtio_blk_set_write_hook(struct virtio_blk *b, const struct blk_write_hook *hook);

/* Split a chain into header, data and status. 0, or -EINVAL (reason in why) when it cannot be a
 * request at all: fewer than 16 readable header bytes or no writable status byte. */
int virtio_blk_parse(const struct iovec *iov, const struct virtq_chain *c,
                     struct virtio_blk_req *req, const char **why);
/* Execute a parsed request; returns the status byte. *written: data bytes put in guest buffers
 * (marked dirty). Bad sectors, unaligned lengths and writes to a read-only disk are IOERR. */
uint8_t virtio_blk_execute(struct virtio_blk *b, struct virtio_blk_req *req, uint32_t *written);
