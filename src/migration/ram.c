/* ram.c: writes and loads the RAM section; every offset and count is checked before use. */
#include "migration/ram.h"

#include <errno.h>
#include <string.h>

/* Sender splits runs at this many pages so a record never needs more than a u32 count. */
#define RAM_MAX_RUN_PAGES (1u << 20)

bool ram_is_zero(const uint8_t *p, size_t len)
{
    uint64_t acc = 0;
    size_t i = 0;

    /* Word at a time, or-ing eight words before each test; pages are usually either all zero
     * or non-zero in their first bytes, so the early exit matters more than the width. */
    for (; i + 64 <= len; i += 64) {
        uint64_t w[8];

        memcpy(w, p + i, sizeof(w));
        acc = w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7];
        if (acc)
            return false;
    }
    for (; i < len; i++)
        if (p[i])
            return false;
    return true;
}

static bool geometry_ok(uint64_t ram_size, uint32_t page_size)
{
    return page_size >= 512 && (page_size & (page_size - 1)) == 0 && ram_size % page_size == 0;
}

/* ---- sender ---- */

int ram_save_open(struct stream_writer *sw, enum stream_tag type, uint32_t section_id,
                  const char *idstr, uint32_t instance_id, const struct ram_source *src)
{
    if (!geometry_ok(src->ram_size, src->page_size)) {
        sw_fail(sw, -EINVAL, "ram: bad geometry (%llu bytes, page %u)",
                (unsigned long long)src->ram_size, src->page_size);
        return sw_error(sw);
    }
    stream_put_section_header(sw, type, section_id, idstr, instance_id, RAM_SECTION_VERSION);
    if (type == STREAM_TAG_SECTION_START) {
        sw_put_u64(sw, src->ram_size);
        sw_put_u32(sw, src->page_size);
    }
    return sw_error(sw);
}

static void put_run(struct stream_writer *sw, const struct ram_source *src, bool zero,
                    uint64_t page, uint64_t n)
{
    uint64_t off = page * src->page_size;

    sw_put_u8(sw, zero ? RAM_REC_ZERO : RAM_REC_PAGES);
    sw_put_u64(sw, off);
    sw_put_u32(sw, (uint32_t)n);
    if (!zero)
        sw_put_bytes(sw, src->host + off, (size_t)(n * src->page_size));
}

int ram_save_pages(struct stream_writer *sw, const struct ram_source *src, uint64_t first_page,
                   uint64_t npages)
{
    uint64_t total = src->page_size ? src->ram_size / src->page_size : 0;
    uint64_t end, run_start, p;
    bool run_zero = false;

    if (!geometry_ok(src->ram_size, src->page_size) ||
        __builtin_add_overflow(first_page, npages, &end) || end > total) {
        sw_fail(sw, -EINVAL, "ram: pages [%llu, +%llu) outside RAM", (unsigned long long)first_page,
                (unsigned long long)npages);
        return sw_error(sw);
    }
    run_start = first_page;
    for (p = first_page; p < end && !sw_error(sw); p++) {
        bool z = ram_is_zero(src->host + p * src->page_size, src->page_size);

        if (p == run_start) {
            run_zero = z;
        } else if (z != run_zero || p - run_start == RAM_MAX_RUN_PAGES) {
            put_run(sw, src, run_zero, run_start, p - run_start);
            run_start = p;
            run_zero = z;
        }
    }
    if (p > run_start && !sw_error(sw))
        put_run(sw, src, run_zero, run_start, p - run_start);
    return sw_error(sw);
}

int ram_save_close(struct stream_writer *sw, uint32_t section_id, unsigned int flags)
{
    if (flags & ~RAM_END_FLAGS_ALL) {
        sw_fail(sw, -EINVAL, "ram: unknown end flags 0x%x", flags);
        return sw_error(sw);
    }
    sw_put_u8(sw, RAM_REC_END);
    sw_put_u8(sw, (uint8_t)flags);
    stream_put_section_footer(sw, section_id);
    return sw_error(sw);
}

/* ---- receiver ---- */

/*
 * Reads one run header and checks it against the sink: page-aligned offset, npages >= 1, and
 * offset + npages * page_size <= ram_size without overflow. On success *len is the byte length.
 */
static bool get_run(struct stream_reader *sr, const struct ram_sink *rs, uint64_t *off,
                    uint64_t *len)
{
    uint64_t o = sr_get_u64(sr);
    uint32_t n = sr_get_u32(sr);
    uint64_t l, end;

    if (sr_error(sr))
        return false;
    if (n == 0 || o % rs->page_size != 0 ||
        __builtin_mul_overflow((uint64_t)n, (uint64_t)rs->page_size, &l) ||
        __builtin_add_overflow(o, l, &end) || end > rs->ram_size) {
        sr_fail(sr, -EBADMSG, "ram: run at 0x%llx of %u pages is outside RAM (0x%llx bytes)",
                (unsigned long long)o, n, (unsigned long long)rs->ram_size);
        return false;
    }
    *off = o;
    *len = l;
    return true;
}

/* Tell the sink's observer about a run; if it cannot record it, the load fails. */
static void loaded_fail(struct stream_reader *sr, struct ram_sink *rs, uint64_t off, uint64_t len)
{
    int r = rs->loaded(rs->loaded_opaque, off, len);

    if (r < 0)
        sr_fail(sr, r, "ram: the run at 0x%llx (%llu bytes) cannot be recorded: %s",
                (unsigned long long)off, (unsigned long long)len, strerror(-r));
}

static int ram_load(struct stream_reader *sr, void *opaque, enum stream_tag type,
                    uint32_t version_id)
{
    struct ram_sink *rs = opaque;
    uint64_t off, len;

    if (!rs->host || !geometry_ok(rs->ram_size, rs->page_size)) {
        sr_fail(sr, -EINVAL, "ram: receiver has no valid RAM to load into");
        return sr_error(sr);
    }
    if (type == STREAM_TAG_SECTION_START) {
        uint64_t size = sr_get_u64(sr);
        uint32_t page = sr_get_u32(sr);

        if (sr_error(sr))
            return sr_error(sr);
        if (size != rs->ram_size || page != rs->page_size) {
            sr_fail(sr, -EBADMSG, "ram: sender has %llu bytes in %u-byte pages, we have %llu/%u",
                    (unsigned long long)size, page, (unsigned long long)rs->ram_size,
                    rs->page_size);
            return sr_error(sr);
        }
    }
    while (!sr_error(sr)) {
        uint8_t rec = sr_get_u8(sr);
        uint8_t flags;

        if (sr_error(sr))
            break;
        switch (rec) {
        case RAM_REC_PAGES:
            if (!get_run(sr, rs, &off, &len))
                break;
            sr_get_bytes(sr, rs->host + off, (size_t)len);
            if (sr_error(sr))
                break;
            rs->data_pages += len / rs->page_size;
            if (rs->loaded)
                loaded_fail(sr, rs, off, len);
            break;
        case RAM_REC_ZERO:
            if (!get_run(sr, rs, &off, &len))
                break;
            /* The target may hold an older, non-zero copy (the COLO cache): clear it. */
            memset(rs->host + off, 0, (size_t)len);
            rs->zero_pages += len / rs->page_size;
            if (rs->loaded)
                loaded_fail(sr, rs, off, len);
            break;
        case RAM_REC_END:
            flags = sr_get_u8(sr);
            if (sr_error(sr))
                break;
            if (flags & ~RAM_END_FLAGS_ALL) {
                sr_fail(sr, -EBADMSG, "ram: unknown end flags 0x%02x", flags);
                break;
            }
            if (flags & RAM_END_ROUND)
                rs->rounds++;
            return 0;
        default:
            sr_fail(sr, -EBADMSG, "ram: unknown record 0x%02x", rec);
            break;
        }
    }
    return sr_error(sr);
}

const struct stream_iter_ops ram_iter_ops = {
    .version_id = RAM_SECTION_VERSION,
    .minimum_version_id = RAM_SECTION_VERSION,
    .load = ram_load,
};
