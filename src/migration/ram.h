/* ram.h: the RAM section: runs of guest pages by RAM offset, zero pages sent as markers. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migration/section.h"
#include "migration/stream.h"

/*
 * RAM is an iterative section (START, PART*, END). Its payload is a list of records:
 *
 *   START payload prefix: u64 ram_size, u32 page_size   (must equal the receiver's)
 *   PAGES: 0x01 u64 offset u32 npages <npages * page_size bytes>
 *   ZERO:  0x02 u64 offset u32 npages                     (npages zero pages, no data)
 *   END:   0x03 u8 flags                                   (ends the payload; RAM_END_ROUND)
 *
 * Offsets are page-aligned byte offsets into one flat RAM of ram_size bytes. The receiver checks
 * alignment, npages >= 1, and offset + npages * page_size <= ram_size, with overflow-checked
 * arithmetic, before touching memory.
 */

/* Where a receiver puts incoming pages: guest RAM, or (COLO) the secondary's cache. */
struct ram_sink {
    uint8_t *host;      /* ram_size bytes */
    uint64_t ram_size;  /* multiple of page_size */
    uint32_t page_size; /* power of two */
    /* Optional: told about every run written (e.g. to set bits in a dirty bitmap). A negative
     * errno (it could not record the run) fails the load with that error. */
    int (*loaded)(void *opaque, uint64_t offset, uint64_t len);
    void *loaded_opaque;
    /* Filled in by the loader. */
    uint64_t rounds;     /* END records that carried RAM_END_ROUND */
    uint64_t data_pages; /* pages received with data */
    uint64_t zero_pages; /* pages received as zero markers */
};

/* The stream_iter_ops for a registry entry whose opaque is a struct ram_sink. */
extern const struct stream_iter_ops ram_iter_ops;

/* What a sender reads pages from. */
struct ram_source {
    const uint8_t *host;
    uint64_t ram_size;
    uint32_t page_size;
};

/*
 * Opens a RAM section payload: the section header (START carries idstr, instance and the RAM
 * geometry). Follow with ram_save_pages calls and one ram_save_close. Returns sw_error().
 */
int ram_save_open(struct stream_writer *sw, enum stream_tag type, uint32_t section_id,
                  const char *idstr, uint32_t instance_id, const struct ram_source *src);

/*
 * Sends npages pages from first_page on, as PAGES records for runs of non-zero pages and ZERO
 * records for runs of all-zero pages. Returns sw_error().
 */
int ram_save_pages(struct stream_writer *sw, const struct ram_source *src, uint64_t first_page,
                   uint64_t npages);

/* Ends the payload (END record with flags, e.g. RAM_END_ROUND) and the section. */
int ram_save_close(struct stream_writer *sw, uint32_t section_id, unsigned int flags);

/* True if the len bytes at p are all zero. */
bool ram_is_zero(const uint8_t *p, size_t len);
