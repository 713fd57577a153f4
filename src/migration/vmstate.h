/* vmstate.h: declarative tables of migratable state, walked by one saver and one loader. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migration/stream.h"

/*
 * A device declares its state once:
 *
 *   static const struct vmstate_field uart_fields[] = {
 *       VMS_U8(struct uart, lcr),
 *       VMS_BUFFER(struct uart, fifo, 16),
 *       VMS_U32_V(struct uart, quirks, 2),     // added in version 2
 *       VMS_END,
 *   };
 *   const struct vmstate_desc uart_vmstate = {
 *       .name = "uart", .version_id = 2, .minimum_version_id = 1,
 *       .fields = uart_fields, .post_load = uart_post_load,
 *   };
 *
 * Wire encoding (all big-endian, no padding, no per-field tags): the fields in table order, each
 * only if its version_id <= the version being loaded; then, for a section's root description
 * only, its needed() subsections. See docs/stream.md.
 *
 * Versions: a root description (a section) and each subsection carry a version on the wire and
 * accept [minimum_version_id, version_id]. A nested description (VMS_STRUCT) has no version of
 * its own: its fields' version_ids count in the version of the section or subsection around it,
 * and its version_id/minimum_version_id are ignored.
 *
 * The macros check at compile time that the C type (and array length) of each member matches the
 * field kind, so the table and the struct cannot drift apart silently.
 */

enum vmstate_kind {
    VMS_KIND_END = 0, /* table terminator; never a valid field */
    VMS_KIND_U8,
    VMS_KIND_U16,
    VMS_KIND_U32,
    VMS_KIND_U64,
    VMS_KIND_I32,
    VMS_KIND_I64,
    VMS_KIND_BOOL,         /* one byte, 0 or 1; anything else is rejected on load */
    VMS_KIND_BUFFER,       /* uint8_t[size] */
    VMS_KIND_ARRAY,        /* count scalars of kind elem */
    VMS_KIND_STRUCT,       /* one nested struct described by desc */
    VMS_KIND_STRUCT_ARRAY, /* count nested structs */
    VMS_KIND_VBUFFER,      /* uint8_t[count]; the first *len bytes are sent (len <= count) */
    VMS_KIND_CUSTOM,       /* info->put / info->get */
    VMS_KIND__MAX,
};

/* Escape hatch for state no kind above describes. get must validate what it reads. */
struct vmstate_info {
    const char *name;
    size_t size; /* expected sizeof(field), or 0 for any */
    int (*put)(struct stream_writer *sw, const void *field, size_t size);
    int (*get)(struct stream_reader *sr, void *field, size_t size);
};

struct vmstate_desc;

struct vmstate_field {
    const char *name;
    enum vmstate_kind kind;
    enum vmstate_kind elem; /* ARRAY: element kind; VBUFFER: kind of the length member */
    uint32_t version_id;    /* version this field was added in (0: always present) */
    size_t offset;
    size_t size;       /* bytes of one element (scalar or struct), or of a BUFFER */
    uint32_t count;    /* ARRAY, STRUCT_ARRAY: elements; VBUFFER: capacity (bound on len) */
    size_t len_offset; /* VBUFFER: offset of the length member, an earlier field */
    const struct vmstate_desc *desc; /* STRUCT, STRUCT_ARRAY */
    const struct vmstate_info *info; /* CUSTOM */
};

struct vmstate_desc {
    const char *name; /* subsections: sent on the wire, unique within the parent */
    uint32_t version_id;
    uint32_t minimum_version_id;
    const struct vmstate_field *fields; /* ends with VMS_END */
    /* NULL-terminated. Only a section's root description may have subsections. */
    const struct vmstate_desc *const *subsections;
    /* Subsections: sent only when this returns true (NULL: always sent). */
    bool (*needed)(const void *opaque);
    int (*pre_save)(void *opaque);
    /*
     * Called after the fields (and, for a root, its subsections) are loaded: validate the
     * restored state against host invariants here. 0 or -errno; an error fails the load.
     */
    int (*post_load)(void *opaque, uint32_t version_id);
};

/* ---- field macros ---- */

/* Evaluates to offsetof(type, member) if &member has pointer type ptype, else fails to compile. */
#define VMS__OFFSET(type, member, ptype)                                                           \
    _Generic(&((type *)0)->member, ptype : offsetof(type, member))

#define VMS__SCALAR(type, member, ctype, k, v)                                                     \
    {                                                                                              \
        .name = #member, .kind = (k), .version_id = (v),                                           \
        .offset = VMS__OFFSET(type, member, ctype *), .size = sizeof(ctype),                       \
    }

#define VMS__ARRAY(type, member, ctype, k, n, v)                                                   \
    {                                                                                              \
        .name = #member, .kind = VMS_KIND_ARRAY, .elem = (k), .version_id = (v),                   \
        .offset = VMS__OFFSET(type, member, ctype(*)[n]), .size = sizeof(ctype), .count = (n),     \
    }

#define VMS_U8_V(type, member, v)   VMS__SCALAR(type, member, uint8_t, VMS_KIND_U8, v)
#define VMS_U16_V(type, member, v)  VMS__SCALAR(type, member, uint16_t, VMS_KIND_U16, v)
#define VMS_U32_V(type, member, v)  VMS__SCALAR(type, member, uint32_t, VMS_KIND_U32, v)
#define VMS_U64_V(type, member, v)  VMS__SCALAR(type, member, uint64_t, VMS_KIND_U64, v)
#define VMS_I32_V(type, member, v)  VMS__SCALAR(type, member, int32_t, VMS_KIND_I32, v)
#define VMS_I64_V(type, member, v)  VMS__SCALAR(type, member, int64_t, VMS_KIND_I64, v)
#define VMS_BOOL_V(type, member, v) VMS__SCALAR(type, member, bool, VMS_KIND_BOOL, v)

#define VMS_U8(type, member)   VMS_U8_V(type, member, 0)
#define VMS_U16(type, member)  VMS_U16_V(type, member, 0)
#define VMS_U32(type, member)  VMS_U32_V(type, member, 0)
#define VMS_U64(type, member)  VMS_U64_V(type, member, 0)
#define VMS_I32(type, member)  VMS_I32_V(type, member, 0)
#define VMS_I64(type, member)  VMS_I64_V(type, member, 0)
#define VMS_BOOL(type, member) VMS_BOOL_V(type, member, 0)

/* Fixed arrays of scalars: the member must be exactly ctype[n]. */
#define VMS_U8_ARRAY_V(type, member, n, v)   VMS__ARRAY(type, member, uint8_t, VMS_KIND_U8, n, v)
#define VMS_U16_ARRAY_V(type, member, n, v)  VMS__ARRAY(type, member, uint16_t, VMS_KIND_U16, n, v)
#define VMS_U32_ARRAY_V(type, member, n, v)  VMS__ARRAY(type, member, uint32_t, VMS_KIND_U32, n, v)
#define VMS_U64_ARRAY_V(type, member, n, v)  VMS__ARRAY(type, member, uint64_t, VMS_KIND_U64, n, v)
#define VMS_I32_ARRAY_V(type, member, n, v)  VMS__ARRAY(type, member, int32_t, VMS_KIND_I32, n, v)
#define VMS_I64_ARRAY_V(type, member, n, v)  VMS__ARRAY(type, member, int64_t, VMS_KIND_I64, n, v)
#define VMS_BOOL_ARRAY_V(type, member, n, v) VMS__ARRAY(type, member, bool, VMS_KIND_BOOL, n, v)

#define VMS_U8_ARRAY(type, member, n)   VMS_U8_ARRAY_V(type, member, n, 0)
#define VMS_U16_ARRAY(type, member, n)  VMS_U16_ARRAY_V(type, member, n, 0)
#define VMS_U32_ARRAY(type, member, n)  VMS_U32_ARRAY_V(type, member, n, 0)
#define VMS_U64_ARRAY(type, member, n)  VMS_U64_ARRAY_V(type, member, n, 0)
#define VMS_I32_ARRAY(type, member, n)  VMS_I32_ARRAY_V(type, member, n, 0)
#define VMS_I64_ARRAY(type, member, n)  VMS_I64_ARRAY_V(type, member, n, 0)
#define VMS_BOOL_ARRAY(type, member, n) VMS_BOOL_ARRAY_V(type, member, n, 0)

/* Fixed byte buffer: the member must be exactly uint8_t[n]; all n bytes are sent. */
#define VMS_BUFFER_V(type, member, n, v)                                                           \
    {                                                                                              \
        .name = #member, .kind = VMS_KIND_BUFFER, .version_id = (v),                               \
        .offset = VMS__OFFSET(type, member, uint8_t(*)[n]), .size = (n),                           \
    }
#define VMS_BUFFER(type, member, n) VMS_BUFFER_V(type, member, n, 0)

/*
 * Variable-length buffer: member is uint8_t[max]; lenmember (uint8_t, uint16_t or uint32_t, an
 * earlier field of the same table) says how many bytes are used and sent. A length above max is
 * an error on save and on load; on load the unused tail is zeroed.
 */
#define VMS_VBUFFER_V(type, member, max, lenmember, v)                                             \
    {                                                                                              \
        .name = #member, .kind = VMS_KIND_VBUFFER, .version_id = (v),                              \
        .offset = VMS__OFFSET(type, member, uint8_t(*)[max]), .size = 1, .count = (max),           \
        .len_offset = offsetof(type, lenmember),                                                   \
        .elem = _Generic(&((type *)0)->lenmember, uint8_t *                                        \
                         : VMS_KIND_U8, uint16_t *                                                 \
                         : VMS_KIND_U16, uint32_t *                                                \
                         : VMS_KIND_U32),                                                          \
    }
#define VMS_VBUFFER(type, member, max, lenmember) VMS_VBUFFER_V(type, member, max, lenmember, 0)

/* Nested struct (member must be subtype) described by *vmsd. */
#define VMS_STRUCT_V(type, member, subtype, vmsd, v)                                               \
    {                                                                                              \
        .name = #member, .kind = VMS_KIND_STRUCT, .version_id = (v),                               \
        .offset = VMS__OFFSET(type, member, subtype *), .size = sizeof(subtype), .desc = (vmsd),   \
    }
#define VMS_STRUCT(type, member, subtype, vmsd) VMS_STRUCT_V(type, member, subtype, vmsd, 0)

/* Array of n nested structs (member must be subtype[n]). */
#define VMS_STRUCT_ARRAY_V(type, member, subtype, n, vmsd, v)                                      \
    {                                                                                              \
        .name = #member, .kind = VMS_KIND_STRUCT_ARRAY, .version_id = (v),                         \
        .offset = VMS__OFFSET(type, member, subtype(*)[n]), .size = sizeof(subtype), .count = (n), \
        .desc = (vmsd),                                                                            \
    }
#define VMS_STRUCT_ARRAY(type, member, subtype, n, vmsd)                                           \
    VMS_STRUCT_ARRAY_V(type, member, subtype, n, vmsd, 0)

/* Custom get/put on any member. */
#define VMS_CUSTOM_V(type, member, vinfo, v)                                                       \
    {                                                                                              \
        .name = #member, .kind = VMS_KIND_CUSTOM, .version_id = (v),                               \
        .offset = offsetof(type, member), .size = sizeof(((type *)0)->member), .info = (vinfo),    \
    }
#define VMS_CUSTOM(type, member, vinfo) VMS_CUSTOM_V(type, member, vinfo, 0)

#define VMS_END                                                                                    \
    {                                                                                              \
        .name = NULL, .kind = VMS_KIND_END                                                         \
    }

/* ---- walkers ---- */

/*
 * Appends desc's fields (and, as a root, its needed() subsections) to sw at desc->version_id.
 * The section header that carries the version is section.c's job. Returns sw_error() (a failing
 * pre_save or put also becomes the writer's sticky error).
 */
int vmstate_save(struct stream_writer *sw, const struct vmstate_desc *desc, void *opaque);

/*
 * Loads what vmstate_save wrote at version_id into opaque. Rejects a version outside
 * [minimum_version_id, version_id], lengths above their bound, non-0/1 bools, unknown,
 * repeated or out-of-order subsections, and anything post_load rejects. Returns sr_error(); on
 * failure opaque may be partly overwritten, so load into a staging copy when that matters.
 */
int vmstate_load(struct stream_reader *sr, const struct vmstate_desc *desc, void *opaque,
                 uint32_t version_id);

/*
 * Static sanity check of a table (run it from each device's unit test): names, version ranges,
 * field kinds, VBUFFER length members, nesting and subsection rules. 0 or -EINVAL (logged).
 */
int vmstate_check(const struct vmstate_desc *desc);
