/* handover.h: the hand-over from the initial precopy to COLO, on both sides, in one place.
 *
 * Primary, in the migration stream:
 *   header, OPEN_RETURN_PATH, ENABLE_COLO, COLO_SESSION (heartbeat settings + a fresh token)
 *   -> return path: the secondary's disk hashes -> RAM rounds with the chunks that differ
 *   -> final stage (paused, dev_lock held): the last disk chunks, and in the same critical
 *      section every disk switches from write tracking to epoch-1 logging (no write is ever
 *      neither sent nor logged) -> devices, EOF -> LOADED -> colo_primary_run.
 * Secondary: the two commands arrive through colo_handover_on_command; the session's settings
 * override the local x-heartbeat-* parameters (the primary's are the pair's).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migration/format.h"

struct migration;
struct stream_writer;
struct stream_reader;
struct vm;

/* Primary, before the first RAM round: the commands, then the disk hashes (sets *disks when
 * there are disks to sync). 0, or < 0 with err set. */
int colo_handover_begin(struct migration *m, struct stream_writer *sw, struct stream_reader *rp,
                        bool *disks, char *err, size_t errlen);
/* Primary, final stage (VM paused, dev_lock held): the last disk chunks; every disk logs epoch
 * 1 from here on. */
int colo_handover_final(struct vm *vm, struct stream_writer *sw);
/* Secondary: ENABLE_COLO (answers with the disk hashes on fd) and COLO_SESSION. Sets *colo on
 * ENABLE_COLO. 0, or < 0 (the load fails) with the reason in the migration's error. */
int colo_handover_on_command(struct migration *m, enum stream_cmd cmd, const uint8_t *payload,
                             uint16_t len, int fd, bool *colo);
/* Secondary, before COLO starts: did the primary send its session? */
bool colo_handover_session_ok(void);
