/* vmstate.c: the one saver and the one loader that walk vmstate tables. */
#include "migration/vmstate.h"

#include <errno.h>
#include <string.h>

#include "core/log.h"
#include "migration/format.h"

/* Nesting deeper than this is a table bug (or a cycle); vmstate_check reports it. */
#define VMS_MAX_DEPTH 16

static bool kind_is_scalar(enum vmstate_kind k)
{
    return k >= VMS_KIND_U8 && k <= VMS_KIND_BOOL;
}

static size_t scalar_size(enum vmstate_kind k)
{
    switch (k) {
    case VMS_KIND_U8:
    case VMS_KIND_BOOL:
        return 1;
    case VMS_KIND_U16:
        return 2;
    case VMS_KIND_U32:
    case VMS_KIND_I32:
        return 4;
    case VMS_KIND_U64:
    case VMS_KIND_I64:
        return 8;
    default:
        return 0;
    }
}

/* Reads a VBUFFER's length member (u8/u16/u32 in host order). */
static uint32_t read_len(enum vmstate_kind k, const uint8_t *p)
{
    uint8_t v8;
    uint16_t v16;
    uint32_t v32;

    switch (k) {
    case VMS_KIND_U8:
        memcpy(&v8, p, sizeof(v8));
        return v8;
    case VMS_KIND_U16:
        memcpy(&v16, p, sizeof(v16));
        return v16;
    default:
        memcpy(&v32, p, sizeof(v32));
        return v32;
    }
}

/* ---- save ---- */

/* Two's complement reinterpretation: signed values travel as their unsigned bit pattern. */
static void put_scalar(struct stream_writer *sw, enum vmstate_kind k, const uint8_t *p)
{
    uint8_t v8;
    uint16_t v16;
    uint32_t v32;
    uint64_t v64;

    switch (k) {
    case VMS_KIND_U8:
        memcpy(&v8, p, 1);
        sw_put_u8(sw, v8);
        break;
    case VMS_KIND_BOOL:
        memcpy(&v8, p, 1); /* read the byte, not the bool: no trap representation */
        sw_put_u8(sw, v8 != 0);
        break;
    case VMS_KIND_U16:
        memcpy(&v16, p, 2);
        sw_put_u16(sw, v16);
        break;
    case VMS_KIND_U32:
    case VMS_KIND_I32:
        memcpy(&v32, p, 4);
        sw_put_u32(sw, v32);
        break;
    case VMS_KIND_U64:
    case VMS_KIND_I64:
        memcpy(&v64, p, 8);
        sw_put_u64(sw, v64);
        break;
    default:
        sw_fail(sw, -EINVAL, "vmstate: kind %d is not a scalar", (int)k);
        break;
    }
}

static void save_unit(struct stream_writer *sw, const struct vmstate_desc *d, uint8_t *base,
                      int depth);

static void save_field(struct stream_writer *sw, const struct vmstate_field *f, uint8_t *base,
                       int depth)
{
    uint8_t *p = base + f->offset;
    uint32_t len;

    switch (f->kind) {
    case VMS_KIND_U8:
    case VMS_KIND_U16:
    case VMS_KIND_U32:
    case VMS_KIND_U64:
    case VMS_KIND_I32:
    case VMS_KIND_I64:
    case VMS_KIND_BOOL:
        put_scalar(sw, f->kind, p);
        break;
    case VMS_KIND_BUFFER:
        sw_put_bytes(sw, p, f->size);
        break;
    case VMS_KIND_ARRAY:
        for (uint32_t i = 0; i < f->count; i++)
            put_scalar(sw, f->elem, p + (size_t)i * f->size);
        break;
    case VMS_KIND_STRUCT:
        save_unit(sw, f->desc, p, depth + 1);
        break;
    case VMS_KIND_STRUCT_ARRAY:
        for (uint32_t i = 0; i < f->count && !sw_error(sw); i++)
            save_unit(sw, f->desc, p + (size_t)i * f->size, depth + 1);
        break;
    case VMS_KIND_VBUFFER:
        len = read_len(f->elem, base + f->len_offset);
        if (len > f->count) {
            sw_fail(sw, -EINVAL, "vmstate: field %s: length %u exceeds %u", f->name, len, f->count);
            break;
        }
        sw_put_bytes(sw, p, len);
        break;
    case VMS_KIND_CUSTOM: {
        int r = f->info->put(sw, p, f->size);

        if (r < 0)
            sw_fail(sw, r, "vmstate: field %s: %s put failed", f->name, f->info->name);
        break;
    }
    default:
        sw_fail(sw, -EINVAL, "vmstate: field %s: bad kind %d", f->name, (int)f->kind);
        break;
    }
}

/* pre_save, then every field. Nested descriptions and subsection bodies both come here. */
static void save_unit(struct stream_writer *sw, const struct vmstate_desc *d, uint8_t *base,
                      int depth)
{
    if (sw_error(sw))
        return;
    if (depth > VMS_MAX_DEPTH) {
        sw_fail(sw, -EINVAL, "vmstate: %s: nested too deep", d->name);
        return;
    }
    if (depth > 0 && d->subsections) {
        sw_fail(sw, -EINVAL, "vmstate: %s: only a root description may have subsections", d->name);
        return;
    }
    if (d->pre_save) {
        int r = d->pre_save(base);

        if (r < 0) {
            sw_fail(sw, r, "vmstate: %s: pre_save failed", d->name);
            return;
        }
    }
    for (const struct vmstate_field *f = d->fields; f->kind != VMS_KIND_END; f++) {
        save_field(sw, f, base, depth);
        if (sw_error(sw))
            return;
    }
}

int vmstate_save(struct stream_writer *sw, const struct vmstate_desc *desc, void *opaque)
{
    save_unit(sw, desc, opaque, 0);
    for (size_t i = 0; desc->subsections && desc->subsections[i] && !sw_error(sw); i++) {
        const struct vmstate_desc *s = desc->subsections[i];

        if (s->needed && !s->needed(opaque))
            continue;
        sw_put_u8(sw, STREAM_TAG_SUBSECTION);
        sw_put_name(sw, s->name);
        sw_put_u32(sw, s->version_id);
        /* depth 1: a subsection body may not carry subsections of its own */
        save_unit(sw, s, opaque, 1);
    }
    return sw_error(sw);
}

/* ---- load ---- */

static void get_scalar(struct stream_reader *sr, const struct vmstate_field *f, enum vmstate_kind k,
                       uint8_t *p)
{
    uint8_t v8;
    uint16_t v16;
    uint32_t v32;
    uint64_t v64;
    bool b;

    switch (k) {
    case VMS_KIND_U8:
        v8 = sr_get_u8(sr);
        if (!sr_error(sr))
            memcpy(p, &v8, 1);
        break;
    case VMS_KIND_BOOL:
        v8 = sr_get_u8(sr);
        if (sr_error(sr))
            break;
        if (v8 > 1) {
            sr_fail(sr, -EBADMSG, "field %s: bool value %u", f->name, v8);
            break;
        }
        b = v8;
        memcpy(p, &b, sizeof(b));
        break;
    case VMS_KIND_U16:
        v16 = sr_get_u16(sr);
        if (!sr_error(sr))
            memcpy(p, &v16, 2);
        break;
    case VMS_KIND_U32:
    case VMS_KIND_I32:
        v32 = sr_get_u32(sr);
        if (!sr_error(sr))
            memcpy(p, &v32, 4);
        break;
    case VMS_KIND_U64:
    case VMS_KIND_I64:
        v64 = sr_get_u64(sr);
        if (!sr_error(sr))
            memcpy(p, &v64, 8);
        break;
    default:
        sr_fail(sr, -EINVAL, "field %s: kind %d is not a scalar", f->name, (int)k);
        break;
    }
}

static void load_unit(struct stream_reader *sr, const struct vmstate_desc *d, uint8_t *base,
                      uint32_t version, int depth);

static void load_field(struct stream_reader *sr, const struct vmstate_field *f, uint8_t *base,
                       uint32_t version, int depth)
{
    uint8_t *p = base + f->offset;
    uint32_t len;

    switch (f->kind) {
    case VMS_KIND_U8:
    case VMS_KIND_U16:
    case VMS_KIND_U32:
    case VMS_KIND_U64:
    case VMS_KIND_I32:
    case VMS_KIND_I64:
    case VMS_KIND_BOOL:
        get_scalar(sr, f, f->kind, p);
        break;
    case VMS_KIND_BUFFER:
        sr_get_bytes(sr, p, f->size);
        break;
    case VMS_KIND_ARRAY:
        for (uint32_t i = 0; i < f->count && !sr_error(sr); i++)
            get_scalar(sr, f, f->elem, p + (size_t)i * f->size);
        break;
    case VMS_KIND_STRUCT:
        load_unit(sr, f->desc, p, version, depth + 1);
        break;
    case VMS_KIND_STRUCT_ARRAY:
        for (uint32_t i = 0; i < f->count && !sr_error(sr); i++)
            load_unit(sr, f->desc, p + (size_t)i * f->size, version, depth + 1);
        break;
    case VMS_KIND_VBUFFER:
        /* The length member was loaded earlier from the same hostile stream: bound it. */
        len = read_len(f->elem, base + f->len_offset);
        if (len > f->count) {
            sr_fail(sr, -EBADMSG, "field %s: length %u exceeds %u", f->name, len, f->count);
            break;
        }
        sr_get_bytes(sr, p, len);
        memset(p + len, 0, f->count - len);
        break;
    case VMS_KIND_CUSTOM: {
        int r = f->info->get(sr, p, f->size);

        if (r < 0)
            sr_fail(sr, r, "field %s: %s get failed", f->name, f->info->name);
        break;
    }
    default:
        sr_fail(sr, -EINVAL, "field %s: bad kind %d", f->name, (int)f->kind);
        break;
    }
}

static void run_post_load(struct stream_reader *sr, const struct vmstate_desc *d, uint8_t *base,
                          uint32_t version)
{
    int r;

    if (sr_error(sr) || !d->post_load)
        return;
    r = d->post_load(base, version);
    if (r < 0)
        sr_fail(sr, r, "%s: post_load rejected the state (%s)", d->name, strerror(-r));
}

/* Fields present at version, then post_load. Nested descriptions and subsection bodies. */
static void load_unit(struct stream_reader *sr, const struct vmstate_desc *d, uint8_t *base,
                      uint32_t version, int depth)
{
    if (sr_error(sr))
        return;
    if (depth > VMS_MAX_DEPTH) {
        sr_fail(sr, -EINVAL, "%s: nested too deep", d->name);
        return;
    }
    if (depth > 0 && d->subsections) {
        sr_fail(sr, -EINVAL, "%s: only a root description may have subsections", d->name);
        return;
    }
    for (const struct vmstate_field *f = d->fields; f->kind != VMS_KIND_END; f++) {
        if (f->version_id > version)
            continue;
        load_field(sr, f, base, version, depth);
        if (sr_error(sr))
            return;
    }
    if (depth > 0)
        run_post_load(sr, d, base, version);
}

static bool version_ok(struct stream_reader *sr, const struct vmstate_desc *d, uint32_t version)
{
    if (version >= d->minimum_version_id && version <= d->version_id)
        return true;
    sr_fail(sr, -EPROTONOSUPPORT, "%s: version %u not in [%u, %u]", d->name, version,
            d->minimum_version_id, d->version_id);
    return false;
}

/*
 * Subsections follow the root's fields; the first byte that is not a SUBSECTION tag (or the end
 * of the input) ends the list and is left for the caller. They must come in table order, each
 * at most once, so a hostile stream cannot load one twice or skip back.
 */
static void load_subsections(struct stream_reader *sr, const struct vmstate_desc *d, uint8_t *base)
{
    char name[STREAM_NAME_MAX + 1];
    size_t next = 0;

    while (!sr_error(sr) && sr_peek_u8(sr) == STREAM_TAG_SUBSECTION) {
        const struct vmstate_desc *s = NULL;
        uint32_t version;
        size_t i;

        sr_get_u8(sr);
        sr_get_name(sr, name);
        version = sr_get_u32(sr);
        if (sr_error(sr))
            return;
        for (i = 0; d->subsections && d->subsections[i]; i++)
            if (strcmp(d->subsections[i]->name, name) == 0) {
                s = d->subsections[i];
                break;
            }
        if (!s) {
            sr_fail(sr, -EBADMSG, "%s: unknown subsection %s", d->name, name);
            return;
        }
        if (i < next) {
            sr_fail(sr, -EBADMSG, "%s: subsection %s repeated or out of order", d->name, name);
            return;
        }
        next = i + 1;
        if (!version_ok(sr, s, version))
            return;
        load_unit(sr, s, base, version, 1); /* runs the subsection's post_load */
    }
}

int vmstate_load(struct stream_reader *sr, const struct vmstate_desc *desc, void *opaque,
                 uint32_t version_id)
{
    if (sr_error(sr))
        return sr_error(sr);
    if (!version_ok(sr, desc, version_id))
        return sr_error(sr);
    load_unit(sr, desc, opaque, version_id, 0);
    load_subsections(sr, desc, opaque);
    run_post_load(sr, desc, opaque, version_id);
    return sr_error(sr);
}

/* ---- static check ---- */

static int check_unit(const struct vmstate_desc *d, uint32_t version, int depth);

static int check_field(const struct vmstate_desc *d, const struct vmstate_field *f,
                       uint32_t version, int depth)
{
    const char *why = NULL;

    if (!f->name)
        why = "field without a name";
    else if (f->kind <= VMS_KIND_END || f->kind >= VMS_KIND__MAX)
        why = "bad kind";
    else if (f->version_id > version)
        why = "field version above the description's version";
    else if (kind_is_scalar(f->kind) && f->size != scalar_size(f->kind))
        why = "scalar size does not match its kind";
    else if (f->kind == VMS_KIND_ARRAY &&
             (!kind_is_scalar(f->elem) || f->count == 0 || f->size != scalar_size(f->elem)))
        why = "array needs a scalar element kind and a non-zero count";
    else if (f->kind == VMS_KIND_BUFFER && f->size == 0)
        why = "empty buffer";
    else if ((f->kind == VMS_KIND_STRUCT || f->kind == VMS_KIND_STRUCT_ARRAY) && !f->desc)
        why = "struct field without a description";
    else if (f->kind == VMS_KIND_STRUCT_ARRAY && f->count == 0)
        why = "empty struct array";
    else if (f->kind == VMS_KIND_CUSTOM &&
             (!f->info || !f->info->get || !f->info->put || !f->info->name ||
              (f->info->size && f->info->size != f->size)))
        why = "custom field needs info with name, get, put and a matching size";
    if (!why && f->kind == VMS_KIND_VBUFFER) {
        const struct vmstate_field *l = d->fields;

        /* The length member must be loaded before the buffer, in every version that has both. */
        for (; l < f; l++)
            if (l->offset == f->len_offset && l->kind == f->elem)
                break;
        if (f->count == 0 || f->size != 1)
            why = "variable buffer needs a non-zero capacity";
        else if (l == f)
            why = "variable buffer's length member is not an earlier field of its kind";
        else if (l->version_id > f->version_id)
            why = "variable buffer's length member is newer than the buffer";
    }
    if (why) {
        log_err("vmstate %s: field %s: %s", d->name, f->name ? f->name : "?", why);
        return -EINVAL;
    }
    if (f->kind == VMS_KIND_STRUCT || f->kind == VMS_KIND_STRUCT_ARRAY)
        return check_unit(f->desc, version, depth + 1);
    return 0;
}

/* version: the version this unit's fields count in (its own, or its enclosing unit's). */
static int check_unit(const struct vmstate_desc *d, uint32_t version, int depth)
{
    int r;

    if (depth > VMS_MAX_DEPTH) {
        log_err("vmstate %s: nested deeper than %d (a cycle?)", d->name, VMS_MAX_DEPTH);
        return -EINVAL;
    }
    if (!stream_name_ok(d->name) || !d->fields) {
        log_err("vmstate %s: needs a printable name and a field table",
                d->name ? d->name : "(null)");
        return -EINVAL;
    }
    if (depth > 0 && d->subsections) {
        log_err("vmstate %s: only a root description may have subsections", d->name);
        return -EINVAL;
    }
    for (const struct vmstate_field *f = d->fields; f->kind != VMS_KIND_END; f++) {
        r = check_field(d, f, version, depth);
        if (r < 0)
            return r;
    }
    return 0;
}

static int check_versions(const struct vmstate_desc *d)
{
    if (d->minimum_version_id > d->version_id) {
        log_err("vmstate %s: minimum version %u above version %u", d->name, d->minimum_version_id,
                d->version_id);
        return -EINVAL;
    }
    return 0;
}

int vmstate_check(const struct vmstate_desc *desc)
{
    int r;

    if (!desc)
        return -EINVAL;
    r = check_unit(desc, desc->version_id, 0);
    if (r == 0)
        r = check_versions(desc);
    for (size_t i = 0; r == 0 && desc->subsections && desc->subsections[i]; i++) {
        const struct vmstate_desc *s = desc->subsections[i];

        r = check_unit(s, s->version_id, 1);
        if (r == 0)
            r = check_versions(s);
        for (size_t j = 0; r == 0 && j < i; j++)
            if (strcmp(desc->subsections[j]->name, s->name) == 0) {
                log_err("vmstate %s: subsection %s listed twice", desc->name, s->name);
                r = -EINVAL;
            }
    }
    return r;
}
