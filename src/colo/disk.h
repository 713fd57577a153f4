/* disk.h: COLO disk replication for every virtio-blk.
 *
 * Initial sync (during the first precopy, x-colo only):
 *   secondary, on ENABLE_COLO: return path <- DISK_HASHES (SHA-256 of every 64 KiB chunk)
 *   primary: chunks whose hash differs, or that the guest writes meanwhile, are sent as
 *   "disk-sync" sections (START with the first pass, END in the paused final stage); the
 *   secondary writes them to its image.
 * Hand-over: the final sync switches every disk from write tracking to epoch logging in one
 *   critical section (the disk's lock, inside the paused final stage), so no write is ever
 *   neither sent by the sync nor logged. Writes logged before the first checkpoint are epoch 1.
 * Checkpoints: each write the primary accepts is copied into the log of the current epoch
 *   BEFORE it reaches the primary's image (and the image is written from that copy); a write
 *   the image then refuses is taken back out of the log. Checkpoint N carries epoch N's log as
 *   a "disk" section inside its RAM segment. The secondary stages it with the RAM and writes it
 *   to its image (and syncs) only while applying checkpoint N, so after a failover its disk is
 *   exactly its last applied checkpoint.
 * Limits: x-colo-disk-log-max (migrate-set-parameters; bytes per disk and epoch) bounds the
 *   primary's log and the secondary's staging. A write the primary cannot log (the log would
 *   pass the limit, no memory, or the fault p-disk-log:N:eio) is NOT failed: it reaches the
 *   primary's image, the disk's replication is marked broken, colo_request_leave is called and
 *   every later checkpoint fails (colo_disk_close_epoch returns -ENOSPC) until colo_disk_stop.
 *   The secondary rejects a checkpoint whose staged writes for one disk pass its own
 *   x-colo-disk-log-max (set it as on the primary: it is the secondary's memory bound).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct devstate;
struct stream_reader;
struct stream_writer;
struct vm;

#define COLO_DISK_CHUNK       (64u << 10)
#define COLO_DISK_HASH_LEN    32
#define RP_MSG_DISK_HASHES    0x44485348u /* "DHSH" */
#define COLO_DISK_LOG_SOFT    (64u << 20) /* log bytes that ask for an early checkpoint (or max/2) */
#define COLO_DISK_LOG_DEFAULT (1024ull << 20) /* x-colo-disk-log-max when no migration is set */
#define COLO_DISK_REC_MAX     (4u << 20)      /* a logged write is split into records this big */

/* Number of virtio-blk devices. */
unsigned colo_disk_count(struct vm *vm);
/* Add the "disk-sync" and "disk" loader entries for every disk (secondary and any incoming). */
int colo_disk_register(struct devstate *ds, struct vm *vm);

/* Secondary, on ENABLE_COLO: hash every disk and send the hashes on the return path fd. */
int colo_disk_send_hashes(struct vm *vm, int fd);
/* Primary, after ENABLE_COLO: read the secondary's hashes, start tracking writes, and mark
 * the chunks that differ. */
int colo_disk_sync_begin(struct vm *vm, struct stream_reader *rp, char *err, size_t errlen);
/* Primary: send the chunks marked so far (START on the first call, END when final). The final
 * call (VM paused, dev_lock held) also switches every disk from tracking to epoch logging,
 * with the limit x-colo-disk-log-max read from the migration at that moment. */
int colo_disk_sync_send(struct vm *vm, struct stream_writer *sw, bool final);
/* Primary: make sure every disk logs writes per epoch. A no-op for a disk the final sync
 * already switched (its log of epoch 1 is kept). */
void colo_disk_epochs_begin(struct vm *vm);
/* Primary, vCPUs paused, dev_lock held: close the current epoch (its writes belong to this
 * checkpoint). -ENOSPC once a disk's replication broke (a write was not logged): this
 * checkpoint and every later one must not be sent. 0 otherwise. */
int colo_disk_close_epoch(struct vm *vm);
/* Primary, after resume: append the closed epoch's "disk" sections to the checkpoint. Fails
 * the writer too (-ENOSPC) when a disk's replication broke. */
int colo_disk_save_epoch(struct vm *vm, struct stream_writer *sw);
/* Primary leaving COLO (or a failed migration): stop tracking and logging, drop logs, forget
 * a broken replication. */
void colo_disk_stop(struct vm *vm);

/* Secondary: forget the staged writes of a checkpoint that did not complete. */
void colo_disk_discard(struct vm *vm);
/* Secondary, applying complete checkpoint n: write the staged writes in order and sync. The
 * fault point s-disk-apply (checkpoint n) is passed once per apply, between the first and the
 * second staged write; eio there fails the second write. A failure (-EIO or -errno) after the
 * first write reached the image leaves the image TORN: part of checkpoint n on top of n-1, a
 * state neither side ever had; the caller must not let this standby take over. */
int colo_disk_apply(struct vm *vm, uint64_t n);
/* Secondary: sync the initial image after the precopy. */
int colo_disk_sync_done(struct vm *vm);

/* Primary: the figures of the initial sync in progress or last run (all disks together), for
 * query-migrate's "colo-disk": what a re-protection costs. Zeroed by colo_disk_sync_begin. */
struct colo_disk_sync_stats {
    uint64_t chunks;        /* COLO_DISK_CHUNK chunks of every disk */
    uint64_t chunks_differ; /* their hashes differed (logged: "disk%u: N of M chunks differ") */
    uint64_t chunks_sent;   /* chunk records sent: the differing ones, and those the guest wrote
                               during the sync (a chunk may be sent more than once) */
    uint64_t bytes_sent;    /* bytes of the disk-sync sections in the stream */
};
void colo_disk_sync_stats(struct colo_disk_sync_stats *out);
