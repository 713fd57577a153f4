/* stage.h: the secondary's restricted checkpoint loaders: RAM segment, device buffer (all or
 * nothing).
 *
 * A COLO checkpoint is two segments, and each may carry only what belongs in it:
 *
 *   RAM segment   -> ram_ld: "ram" and "disk" (the epoch's write log) only, both staged
 *                    (colo cache, disk.c's staged log); no command, no device section, no
 *                    "disk-sync" (which would write the image at once)
 *   device buffer -> dev_ld: the FULL sections only (cpu, x86-chips, inventory devices)
 *
 * Anything else is refused where it appears, before the segment's checksum is even known:
 * with the machine's full loader a section in the wrong segment would be applied and only the
 * checksum at EOF would reject the checkpoint, too late.
 *
 * The device buffer loads all or nothing:
 *
 *   backup := every device section as it is now (the staged vCPU/chip copies, i.e. the last
 *             good checkpoint's, and the live device structs; every subsection included)
 *   load buf  --ok-->  0
 *     |fail
 *   restore backup  --ok-->  the load's error (devices exactly as before)
 *     |fail
 *   -ENOTRECOVERABLE (devices torn: the standby is unusable)
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "migration/devstate.h"
#include "migration/section.h"
#include "migration/stream.h"
#include "migration/vmstate.h"

struct colo_stage {
    struct stream_loader ram_ld; /* "ram", "disk"; no command handler */
    struct stream_loader dev_ld; /* every FULL entry of the machine's registry */
    struct stream_loader bak_ld; /* the same entries with the shadow tables, for restores */
    struct stream_writer backup; /* the device state before the load in progress */
    struct stream_section ram_reg[DEVSTATE_MAX_SECTIONS];
    struct stream_section dev_reg[DEVSTATE_MAX_SECTIONS];
    struct stream_section bak_reg[DEVSTATE_MAX_SECTIONS];
    size_t nram, ndev;
    /* Copies of the device tables whose subsections are always sent and that run no
     * pre_save: the backup must hold every field the new load could overwrite, and saving
     * it must not change a device. */
    struct vmstate_desc *shadow;
    const struct vmstate_desc **shadow_subs;
};

/* Builds the three loaders from ds->reg (ds and its registry must outlive the stage). 0, or
 * -EINVAL (a registry entry the loaders refuse) or -ENOMEM; on failure nothing is left to
 * destroy. */
int colo_stage_init(struct colo_stage *st, struct devstate *ds);
/* Safe on a zeroed stage and after a failed init. */
void colo_stage_destroy(struct colo_stage *st);

/*
 * Loads one RAM segment from sr, up to and including its EOF and checksum. A section other than
 * "ram"/"disk" or any command fails it with -EBADMSG and an sr_errmsg() naming it; other errors
 * as stream_load_segment. Whatever it staged before failing is the caller's to discard.
 */
int colo_stage_load_ram(struct colo_stage *st, struct stream_reader *sr);

/*
 * Loads a device buffer (one whole segment, already checked with stream_buf_verify) all or
 * nothing: it must hold every device section exactly once and nothing else. 0: all of it was
 * applied. Otherwise the devices and the staged vCPU/chip copies are exactly as before the
 * call and the load's error is returned (-EBADMSG for a section that has no business here, a
 * missing one or bytes after the EOF; -EPROTONOSUPPORT; a post_load's error...), or
 * -ENOTRECOVERABLE when even the restore failed. err says what happened.
 */
int colo_stage_load_devices(struct colo_stage *st, const uint8_t *buf, size_t len, char *err,
                            size_t errlen);
