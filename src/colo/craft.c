/* craft.c: builds the malformed checkpoints of the inject and baddev fault-injection actions. */
#include "colo/craft.h"

#include <errno.h>
#include <string.h>

#include "migration/section.h"
#include "migration/vmstate.h"

#define EOF_LEN           5     /* tag + be32 CRC-32C */
#define SYNC_SECTION_ID   0x100 /* + disk index: "disk-sync" (docs/stream.md, disk.c) */
#define DISK_REC_END      0
#define DISK_REC_WRITE    1
#define DISK_SYNC_VERSION 1

void colo_craft_marker(uint8_t out[COLO_CRAFT_MARKER_LEN])
{
    static const char m[] = COLO_CRAFT_MARKER;

    for (size_t i = 0; i < COLO_CRAFT_MARKER_LEN; i++)
        out[i] = (uint8_t)m[i % (sizeof(m) - 1)];
}

/*
 * sw must be a memory writer whose segment is still open: records written, EOF not yet. One
 * that already ends in a valid EOF was closed too early (what we append would form a second
 * segment that nobody checks as part of this checkpoint). 0 or -EINVAL.
 */
static int check_open(struct stream_writer *sw)
{
    const uint8_t *data;
    size_t len;

    if (sw->fd >= 0 || sw_error(sw))
        return -EINVAL;
    data = sw_buf_data(sw, &len);
    if (len >= EOF_LEN && stream_buf_verify(data, len) == 0)
        return -EINVAL;
    return 0;
}

int colo_craft_inject(struct stream_writer *ramseg, uint64_t off)
{
    uint8_t marker[COLO_CRAFT_MARKER_LEN];
    int r;

    if (off % COLO_CRAFT_MARKER_LEN)
        return -EINVAL;
    r = check_open(ramseg);
    if (r)
        return r;
    colo_craft_marker(marker);
    /* A whole section, START then END, exactly as the initial sync sends one. */
    stream_put_section_header(ramseg, STREAM_TAG_SECTION_START, SYNC_SECTION_ID, "disk-sync", 0,
                              DISK_SYNC_VERSION);
    sw_put_u8(ramseg, DISK_REC_WRITE);
    sw_put_u64(ramseg, off);
    sw_put_u32(ramseg, COLO_CRAFT_MARKER_LEN);
    sw_put_bytes(ramseg, marker, sizeof(marker));
    sw_put_u8(ramseg, DISK_REC_END);
    stream_put_section_footer(ramseg, SYNC_SECTION_ID);
    stream_put_section_header(ramseg, STREAM_TAG_SECTION_END, SYNC_SECTION_ID, NULL, 0, 0);
    sw_put_u8(ramseg, DISK_REC_END);
    stream_put_section_footer(ramseg, SYNC_SECTION_ID);
    return sw_error(ramseg);
}

int colo_craft_baddev(struct stream_writer *devbuf, const struct devstate *ds)
{
    const struct stream_section *e = NULL;
    uint32_t id = 0;
    int r;

    for (size_t i = 0; i < ds->nreg; i++)
        if (ds->reg[i].desc && ds->reg[i].opaque == &ds->chips) {
            e = &ds->reg[i];
            id = (uint32_t)(i + 1); /* devstate_save's numbering */
            break;
        }
    if (!e)
        return -EINVAL;
    r = check_open(devbuf);
    if (r)
        return r;
    stream_put_section_header(devbuf, STREAM_TAG_SECTION_FULL, id, e->idstr, e->instance_id,
                              e->desc->version_id + 1);
    /* The chips table has no pre_save: saving reads the staged copy and changes nothing. */
    vmstate_save(devbuf, e->desc, e->opaque);
    stream_put_section_footer(devbuf, id);
    return sw_error(devbuf);
}
