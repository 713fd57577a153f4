/* craft.h: malformed checkpoints for COLO fault-injection tests (the primary's inject, baddev).
 *
 * Both append one more section to a segment that is still open in a memory writer (its records
 * written, its EOF not yet), as the primary's RAM segment and device buffer are just before
 * stream_put_eof; the caller then ends the segment as usual, so its checksum covers the extra
 * section:
 *
 *   inject: RAM segment   ... disk END, [disk-sync START/END, disk 0: one 512-byte write], EOF
 *   baddev: device buffer ... last device, [FULL x86-chips again, version + 1], EOF
 *
 * Test use only: nothing here runs unless TANDEM_COLO_FAULT asks for it.
 */
#pragma once

#include <stdint.h>

#include "migration/devstate.h"
#include "migration/stream.h"

#define COLO_CRAFT_MARKER     "TANDEM-INJECTED"
#define COLO_CRAFT_MARKER_LEN 512 /* one sector: the marker repeated (last copy cut short) */

/* The 512 bytes colo_craft_inject writes: COLO_CRAFT_MARKER over and over. */
void colo_craft_marker(uint8_t out[COLO_CRAFT_MARKER_LEN]);

/*
 * Appends to the open RAM segment a foreign "disk-sync" section of disk 0 (section id 0x100,
 * the one the initial sync bound: docs/stream.md) carrying one write of the marker at byte
 * offset off (a multiple of 512, within the disk). The caller ends the segment and then breaks
 * its checksum, best inside the CRC itself, so that every record before the EOF still parses:
 * a secondary must refuse the section itself, never mind the checksum. A full loader would
 * write the marker to disk 0 at once. 0, -EINVAL (off not sector-aligned, or sw not an open
 * memory segment: nothing appended), or sw_error().
 */
int colo_craft_inject(struct stream_writer *ramseg, uint64_t off);

/*
 * Appends to the open device buffer a last section the secondary cannot load: the
 * "x86-chips" section again (same section id as devstate_save gives it, payload from
 * ds->chips, the staged copy, so no live device is read while the guest runs) at version
 * chips + 1. The loader refuses it at its header ("sent twice in one segment"; the version
 * would be refused next), after every other section of the buffer was applied: exactly the
 * failure an all-or-nothing load must undo. The caller ends the segment: its checksum is
 * valid. 0, -EINVAL (no x86-chips entry, or sw not an open memory segment: nothing appended),
 * or sw_error().
 */
int colo_craft_baddev(struct stream_writer *devbuf, const struct devstate *ds);
