/* section.c: writes and loads the framed stream; the loader treats every byte as hostile. */
#include "migration/section.h"

/*
 * What the loader remembers per registry entry, and which records each state accepts:
 *
 *   unbound --START/FULL (id, idstr+instance, version)--> bound to id
 *
 *   vmstate entry, bound:   FULL id   (once per segment)
 *   iterative entry, bound:  closed --START id--> open --PART id--> open --END id--> closed
 *
 *   every segment: seen := false for all; EOF checks the CRC and ends the segment.
 *
 * Anything else (an id bound to another entry, an entry re-bound to a new id, PART/END while
 * closed, FULL twice in a segment, a version outside the entry's range) fails the load.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "migration/be.h"
#include "migration/crc32c.h"

/* Per registry entry, the loader's view of that section. */
struct stream_loader_slot {
    uint32_t section_id; /* 0: not bound yet (0 is never a valid id) */
    uint32_t version_id; /* from its START or FULL */
    bool open;           /* iterative: between START and END */
    bool seen;           /* appeared in the current segment */
};

/* Fixed payload length of each command; -1 marks ids that are not commands. */
static const int cmd_payload_len[STREAM_CMD__MAX] = {
    [STREAM_CMD_INVALID] = -1,    [STREAM_CMD_OPEN_RETURN_PATH] = 0, [STREAM_CMD_PING] = 4,
    [STREAM_CMD_ENABLE_COLO] = 0, [STREAM_CMD_COLO_SESSION] = 36,
};

_Static_assert(STREAM_CMD_PAYLOAD_MAX <= UINT16_MAX, "command payload length is a u16");

int stream_cmd_payload_len(uint16_t cmd)
{
    if (cmd >= STREAM_CMD__MAX)
        return -1;
    return cmd_payload_len[cmd];
}

static bool is_section_tag(int tag)
{
    return tag >= STREAM_TAG_SECTION_START && tag <= STREAM_TAG_SECTION_FULL;
}

/* ---- writing ---- */

int stream_put_header(struct stream_writer *sw)
{
    sw_put_bytes(sw, STREAM_MAGIC, STREAM_MAGIC_LEN);
    sw_put_u32(sw, STREAM_FORMAT_VERSION);
    return sw_error(sw);
}

void stream_put_section_header(struct stream_writer *sw, enum stream_tag type, uint32_t section_id,
                               const char *idstr, uint32_t instance_id, uint32_t version_id)
{
    if (!is_section_tag((int)type) || section_id == 0) {
        sw_fail(sw, -EINVAL, "bad section header (tag 0x%02x, id %u)", (unsigned)type, section_id);
        return;
    }
    sw_put_u8(sw, (uint8_t)type);
    sw_put_u32(sw, section_id);
    if (type == STREAM_TAG_SECTION_START || type == STREAM_TAG_SECTION_FULL) {
        sw_put_name(sw, idstr);
        sw_put_u32(sw, instance_id);
        sw_put_u32(sw, version_id);
    }
}

void stream_put_section_footer(struct stream_writer *sw, uint32_t section_id)
{
    sw_put_u8(sw, STREAM_TAG_FOOTER);
    sw_put_u32(sw, section_id);
}

int stream_save_section(struct stream_writer *sw, uint32_t section_id, const char *idstr,
                        uint32_t instance_id, const struct vmstate_desc *desc, void *opaque)
{
    stream_put_section_header(sw, STREAM_TAG_SECTION_FULL, section_id, idstr, instance_id,
                              desc->version_id);
    vmstate_save(sw, desc, opaque);
    stream_put_section_footer(sw, section_id);
    return sw_error(sw);
}

int stream_put_command(struct stream_writer *sw, enum stream_cmd cmd, const void *payload,
                       uint16_t len)
{
    int want = stream_cmd_payload_len((uint16_t)cmd);

    if (want < 0 || want != len || (len && !payload)) {
        sw_fail(sw, -EINVAL, "command %d with %u payload bytes is not valid", (int)cmd, len);
        return sw_error(sw);
    }
    sw_put_u8(sw, STREAM_TAG_COMMAND);
    sw_put_u16(sw, (uint16_t)cmd);
    sw_put_u16(sw, len);
    sw_put_bytes(sw, payload, len);
    return sw_error(sw);
}

int stream_put_eof(struct stream_writer *sw)
{
    sw_put_u8(sw, STREAM_TAG_EOF);
    /* The checksum covers the EOF tag itself, so a segment cut right after it still fails. */
    sw_put_u32(sw, sw_checksum(sw));
    sw_checksum_reset(sw);
    return sw_error(sw);
}

int stream_buf_verify(const void *buf, size_t len)
{
    const uint8_t *b = buf;

    if (!b || len < 5 || b[len - 5] != STREAM_TAG_EOF)
        return -EBADMSG;
    if (crc32c(0, b, len - 4) != be32_load(b + len - 4))
        return -EILSEQ;
    return 0;
}

/* ---- loading ---- */

int stream_load_header(struct stream_reader *sr)
{
    uint8_t magic[STREAM_MAGIC_LEN];
    uint32_t version;

    sr_get_bytes(sr, magic, sizeof(magic));
    version = sr_get_u32(sr);
    if (sr_error(sr))
        return sr_error(sr);
    if (memcmp(magic, STREAM_MAGIC, STREAM_MAGIC_LEN) != 0) {
        sr_fail(sr, -EBADMSG, "not a tandem stream (bad magic)");
        return sr_error(sr);
    }
    if (version < STREAM_FORMAT_MIN_VERSION || version > STREAM_FORMAT_VERSION)
        sr_fail(sr, -EPROTONOSUPPORT, "stream format version %u not in [%u, %u]", version,
                STREAM_FORMAT_MIN_VERSION, STREAM_FORMAT_VERSION);
    return sr_error(sr);
}

int stream_loader_init(struct stream_loader *ld, const struct stream_section *reg, size_t nreg)
{
    memset(ld, 0, sizeof(*ld));
    for (size_t i = 0; i < nreg; i++) {
        const struct stream_section *e = &reg[i];

        if (!stream_name_ok(e->idstr) || !e->desc == !e->iter ||
            (e->desc && vmstate_check(e->desc) < 0) ||
            (e->iter && (!e->iter->load || e->iter->minimum_version_id > e->iter->version_id))) {
            log_err("stream registry entry %zu (%s) is invalid", i, e->idstr ? e->idstr : "?");
            return -EINVAL;
        }
        for (size_t j = 0; j < i; j++)
            if (reg[j].instance_id == e->instance_id && strcmp(reg[j].idstr, e->idstr) == 0) {
                log_err("stream registry: %s instance %u listed twice", e->idstr, e->instance_id);
                return -EINVAL;
            }
    }
    ld->slots = calloc(nreg ? nreg : 1, sizeof(*ld->slots));
    if (!ld->slots)
        return -ENOMEM;
    ld->reg = reg;
    ld->nreg = nreg;
    return 0;
}

void stream_loader_destroy(struct stream_loader *ld)
{
    free(ld->slots);
    ld->slots = NULL;
    ld->nreg = 0;
}

void stream_loader_set_command_handler(struct stream_loader *ld, stream_cmd_fn fn, void *opaque)
{
    ld->on_command = fn;
    ld->cmd_opaque = opaque;
}

bool stream_loader_seen(const struct stream_loader *ld, size_t index)
{
    return index < ld->nreg && ld->slots[index].seen;
}

static size_t find_by_name(const struct stream_loader *ld, const char *idstr, uint32_t instance)
{
    for (size_t i = 0; i < ld->nreg; i++)
        if (ld->reg[i].instance_id == instance && strcmp(ld->reg[i].idstr, idstr) == 0)
            return i;
    return ld->nreg;
}

static size_t find_by_id(const struct stream_loader *ld, uint32_t section_id)
{
    for (size_t i = 0; i < ld->nreg; i++)
        if (ld->slots[i].section_id == section_id)
            return i;
    return ld->nreg;
}

/*
 * START/FULL header after the tag: binds section_id to the named registry entry. Returns the
 * entry's index, or ld->nreg after recording the error.
 */
static size_t load_named_header(struct stream_loader *ld, struct stream_reader *sr, uint8_t tag,
                                uint32_t section_id)
{
    char idstr[STREAM_NAME_MAX + 1];
    const struct stream_section *e;
    struct stream_loader_slot *s;
    uint32_t instance, version, vmin, vmax;
    size_t i, other;

    sr_get_name(sr, idstr);
    instance = sr_get_u32(sr);
    version = sr_get_u32(sr);
    if (sr_error(sr))
        return ld->nreg;
    i = find_by_name(ld, idstr, instance);
    if (i == ld->nreg) {
        sr_fail(sr, -EBADMSG, "unknown section %s instance %u", idstr, instance);
        return ld->nreg;
    }
    e = &ld->reg[i];
    s = &ld->slots[i];
    other = find_by_id(ld, section_id);
    if (other != ld->nreg && other != i) {
        sr_fail(sr, -EBADMSG, "section id %u of %s already belongs to %s", section_id, idstr,
                ld->reg[other].idstr);
        return ld->nreg;
    }
    if (s->section_id && s->section_id != section_id) {
        sr_fail(sr, -EBADMSG, "section %s re-declared as id %u (was %u)", idstr, section_id,
                s->section_id);
        return ld->nreg;
    }
    if (tag == STREAM_TAG_SECTION_FULL ? !e->desc : !e->iter) {
        sr_fail(sr, -EBADMSG, "section %s sent as %s", idstr,
                tag == STREAM_TAG_SECTION_FULL ? "FULL but is iterative" : "START but is FULL");
        return ld->nreg;
    }
    if (s->seen && tag == STREAM_TAG_SECTION_FULL) {
        sr_fail(sr, -EBADMSG, "section %s sent twice in one segment", idstr);
        return ld->nreg;
    }
    if (s->open) {
        sr_fail(sr, -EBADMSG, "section %s started while already open", idstr);
        return ld->nreg;
    }
    vmin = e->desc ? e->desc->minimum_version_id : e->iter->minimum_version_id;
    vmax = e->desc ? e->desc->version_id : e->iter->version_id;
    if (version < vmin || version > vmax) {
        sr_fail(sr, -EPROTONOSUPPORT, "section %s version %u not in [%u, %u]", idstr, version, vmin,
                vmax);
        return ld->nreg;
    }
    s->section_id = section_id;
    s->version_id = version;
    s->open = tag == STREAM_TAG_SECTION_START;
    return i;
}

static void load_section(struct stream_loader *ld, struct stream_reader *sr, uint8_t tag)
{
    uint32_t section_id = sr_get_u32(sr);
    const struct stream_section *e;
    struct stream_loader_slot *s;
    uint32_t footer_id;
    size_t i;
    int r;

    if (sr_error(sr))
        return;
    if (section_id == 0) {
        sr_fail(sr, -EBADMSG, "section id 0 is invalid");
        return;
    }
    if (tag == STREAM_TAG_SECTION_START || tag == STREAM_TAG_SECTION_FULL) {
        i = load_named_header(ld, sr, tag, section_id);
        if (i == ld->nreg)
            return;
    } else {
        i = find_by_id(ld, section_id);
        if (i == ld->nreg || !ld->slots[i].open) {
            sr_fail(sr, -EBADMSG, "section id %u is not an open iterative section", section_id);
            return;
        }
        if (tag == STREAM_TAG_SECTION_END)
            ld->slots[i].open = false;
    }
    e = &ld->reg[i];
    s = &ld->slots[i];
    s->seen = true;
    if (e->desc) {
        vmstate_load(sr, e->desc, e->opaque, s->version_id);
    } else {
        r = e->iter->load(sr, e->opaque, (enum stream_tag)tag, s->version_id);
        if (r < 0)
            sr_fail(sr, r, "section %s: load failed", e->idstr);
    }
    if (sr_error(sr))
        return;
    /* The footer proves both sides agreed on where this section's payload ends. */
    if (sr_get_u8(sr) != STREAM_TAG_FOOTER && !sr_error(sr)) {
        sr_fail(sr, -EBADMSG, "section %s: missing footer", e->idstr);
        return;
    }
    footer_id = sr_get_u32(sr);
    if (!sr_error(sr) && footer_id != section_id)
        sr_fail(sr, -EBADMSG, "section %s: footer names section %u, expected %u", e->idstr,
                footer_id, section_id);
}

static void load_command(struct stream_loader *ld, struct stream_reader *sr)
{
    uint8_t payload[STREAM_CMD_PAYLOAD_MAX];
    uint16_t cmd = sr_get_u16(sr);
    uint16_t len = sr_get_u16(sr);
    int want, r;

    if (sr_error(sr))
        return;
    want = stream_cmd_payload_len(cmd);
    if (want < 0) {
        sr_fail(sr, -EBADMSG, "unknown command %u", cmd);
        return;
    }
    if (len != want) {
        sr_fail(sr, -EBADMSG, "command %u: payload length %u, expected %d", cmd, len, want);
        return;
    }
    sr_get_bytes(sr, payload, len);
    if (sr_error(sr))
        return;
    if (!ld->on_command) {
        sr_fail(sr, -EBADMSG, "command %u not expected here", cmd);
        return;
    }
    r = ld->on_command(ld->cmd_opaque, (enum stream_cmd)cmd, payload, len);
    if (r < 0)
        sr_fail(sr, r, "command %u: handler failed", cmd);
}

static void load_eof(struct stream_reader *sr)
{
    uint32_t expect = sr_checksum(sr); /* covers everything through the EOF tag */
    uint32_t got = sr_get_u32(sr);

    if (sr_error(sr))
        return;
    if (got != expect) {
        sr_fail(sr, -EILSEQ, "checksum mismatch: stream says %08x, computed %08x", got, expect);
        return;
    }
    sr_checksum_reset(sr);
}

int stream_load_segment(struct stream_loader *ld, struct stream_reader *sr)
{
    for (size_t i = 0; i < ld->nreg; i++)
        ld->slots[i].seen = false;
    while (!sr_error(sr)) {
        uint8_t tag = sr_get_u8(sr);

        if (sr_error(sr))
            break;
        switch (tag) {
        case STREAM_TAG_EOF:
            load_eof(sr);
            return sr_error(sr);
        case STREAM_TAG_SECTION_START:
        case STREAM_TAG_SECTION_PART:
        case STREAM_TAG_SECTION_END:
        case STREAM_TAG_SECTION_FULL:
            load_section(ld, sr, tag);
            break;
        case STREAM_TAG_COMMAND:
            load_command(ld, sr);
            break;
        default:
            sr_fail(sr, -EBADMSG, "unexpected record tag 0x%02x", tag);
            break;
        }
    }
    return sr_error(sr);
}
