/* section.h: stream framing (header, sections, commands, EOF checksum) and the section loader. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migration/format.h"
#include "migration/stream.h"
#include "migration/vmstate.h"

/*
 * Sender                                  Receiver (struct stream_loader)
 *   stream_put_header                       stream_load_header
 *   { stream_save_section (FULL)            stream_load_segment: records until EOF,
 *     | START/PART/END via the iterative      dispatching each section to the registry
 *       section's own writer (ram.h)          entry named by idstr + instance, and each
 *     | stream_put_command }*                 command to the command handler
 *   stream_put_eof  (checksum, resets)      checks the checksum, returns 0
 *   ... next checkpoint: more records, stream_put_eof ...
 *
 * Section ids are chosen by the sender (non-zero u32) and bound to a registry entry by the first
 * START or FULL that names it; the binding lasts for the loader's lifetime, so later checkpoints
 * can send FULL again (same id) or PART/END by id alone.
 */

/* ---- writing ---- */

int stream_put_header(struct stream_writer *sw);

/* START/FULL carry idstr, instance_id and version_id; PART/END ignore them. */
void stream_put_section_header(struct stream_writer *sw, enum stream_tag type, uint32_t section_id,
                               const char *idstr, uint32_t instance_id, uint32_t version_id);
void stream_put_section_footer(struct stream_writer *sw, uint32_t section_id);

/* One complete FULL section: header at desc->version_id, vmstate_save, footer. */
int stream_save_section(struct stream_writer *sw, uint32_t section_id, const char *idstr,
                        uint32_t instance_id, const struct vmstate_desc *desc, void *opaque);

/* A COMMAND record; len must be the command's fixed payload length. */
int stream_put_command(struct stream_writer *sw, enum stream_cmd cmd, const void *payload,
                       uint16_t len);
/* Payload length of a known command, or -1 for an unknown/invalid id. */
int stream_cmd_payload_len(uint16_t cmd);

/* Ends the segment: EOF tag + CRC-32C of every byte since the last checksum point; resets it. */
int stream_put_eof(struct stream_writer *sw);

/*
 * Checks, before parsing anything, that buf is one whole segment: it ends with an EOF record
 * whose checksum matches all the bytes before it. Lets a receiver refuse a corrupt checkpoint
 * buffer before a single device is touched. 0, -EBADMSG or -EILSEQ.
 */
int stream_buf_verify(const void *buf, size_t len);

/* ---- loading ---- */

/* Reads and checks magic and format version. Returns sr_error(). */
int stream_load_header(struct stream_reader *sr);

/* An iterative section (START/PART/END), such as RAM: loads one payload, up to but not
 * including the section footer. 0 or -errno (sr's sticky error is set if not already). */
struct stream_iter_ops {
    uint32_t version_id;
    uint32_t minimum_version_id;
    int (*load)(struct stream_reader *sr, void *opaque, enum stream_tag type, uint32_t version_id);
};

/* One registry entry: exactly one of desc (FULL sections) or iter (START/PART/END). */
struct stream_section {
    const char *idstr;
    uint32_t instance_id;
    const struct vmstate_desc *desc;
    const struct stream_iter_ops *iter;
    void *opaque;
};

/* Called for each COMMAND after its id and length were checked. 0 or -errno. */
typedef int (*stream_cmd_fn)(void *opaque, enum stream_cmd cmd, const uint8_t *payload,
                             uint16_t len);

struct stream_loader_slot;

struct stream_loader {
    const struct stream_section *reg;
    size_t nreg;
    struct stream_loader_slot *slots; /* one per registry entry */
    stream_cmd_fn on_command;         /* NULL: any COMMAND is an error */
    void *cmd_opaque;
};

/*
 * Validates the registry (names, one of desc/iter, no duplicate idstr + instance, vmstate_check
 * of every table) and allocates per-entry state. reg must outlive the loader. 0, -EINVAL or
 * -ENOMEM.
 */
int stream_loader_init(struct stream_loader *ld, const struct stream_section *reg, size_t nreg);
void stream_loader_destroy(struct stream_loader *ld);
void stream_loader_set_command_handler(struct stream_loader *ld, stream_cmd_fn fn, void *opaque);

/*
 * Loads records until an EOF record and checks its checksum. Rejects unknown tags, unknown
 * idstr + instance, section ids bound to another entry, an entry sent twice in one segment,
 * FULL for an iterative entry or START/PART/END for a vmstate one, PART/END of a section that
 * is not open, versions outside the entry's range, a footer naming another section, unknown
 * commands or bad command lengths. Returns sr_error(); the message says what and where.
 */
int stream_load_segment(struct stream_loader *ld, struct stream_reader *sr);

/* Whether registry entry index appeared in the last (or current) segment. */
bool stream_loader_seen(const struct stream_loader *ld, size_t index);
