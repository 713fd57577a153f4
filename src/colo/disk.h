/* disk.h: COLO disk replication for every virtio-blk.
 *
 * Initial sync (during the first precopy, x-colo only):
 *   secondary, on ENABLE_COLO: return path <- DISK_HASHES (SHA-256 of every 64 KiB chunk)
 *   primary: chunks whose hash differs, or that the guest writes meanwhile, are sent as
 *   "disk-sync" sections (START with the first pass, END in the paused final stage); the
 *   secondary writes them to its image.
 * Checkpoints: each write the primary accepts is copied into the log of the current epoch;
 *   checkpoint N carries epoch N's log as a "disk" section inside its RAM segment. The
 *   secondary stages it with the RAM and writes it to its image (and syncs) only while
 *   applying checkpoint N, so after a failover its disk is exactly its last applied checkpoint.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct devstate;
struct stream_reader;
struct stream_writer;
struct vm;

#define COLO_DISK_CHUNK    (64u << 10)
#define COLO_DISK_HASH_LEN 32
#define RP_MSG_DISK_HASHES 0x44485348u   /* "DHSH" */
#define COLO_DISK_LOG_SOFT (64u << 20)   /* log bytes that ask for an early checkpoint */
#define COLO_DISK_LOG_HARD (1024u << 20) /* beyond this a write fails (IOERR) */

/* Number of virtio-blk devices. */
unsigned colo_disk_count(struct vm *vm);
/* Add the "disk-sync" and "disk" loader entries for every disk (secondary and any incoming). */
int colo_disk_register(struct devstate *ds, struct vm *vm);

/* Secondary, on ENABLE_COLO: hash every disk and send the hashes on the return path fd. */
int colo_disk_send_hashes(struct vm *vm, int fd);
/* Primary, after ENABLE_COLO: read the secondary's hashes, start tracking writes, and mark
 * the chunks that differ. */
int colo_disk_sync_begin(struct vm *vm, struct stream_reader *rp, char *err, size_t errlen);
/* Primary: send the chunks marked so far (START on the first call, END when final). */
int colo_disk_sync_send(struct vm *vm, struct stream_writer *sw, bool final);
/* Primary: initial sync done; from now on writes are logged per epoch. */
void colo_disk_epochs_begin(struct vm *vm);
/* Primary, vCPUs paused: close the current epoch (its writes belong to this checkpoint). */
void colo_disk_close_epoch(struct vm *vm);
/* Primary, after resume: append the closed epoch's "disk" sections to the checkpoint. */
int colo_disk_save_epoch(struct vm *vm, struct stream_writer *sw);
/* Primary leaving COLO (or a failed migration): stop tracking, drop logs. */
void colo_disk_stop(struct vm *vm);

/* Secondary: forget the staged writes of a checkpoint that did not complete. */
void colo_disk_discard(struct vm *vm);
/* Secondary, applying a complete checkpoint: write the staged writes and sync. */
int colo_disk_apply(struct vm *vm);
/* Secondary: sync the initial image after the precopy. */
int colo_disk_sync_done(struct vm *vm);
