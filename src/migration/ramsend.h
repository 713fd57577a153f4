/* ramsend.h: send the pages of a dirty bitmap as RAM records (runs, zero pages as markers). */
#pragma once

#include <stdint.h>

#include "migration/ram.h"
#include "migration/stream.h"

struct ramsend_stats {
    uint64_t zero;    /* pages sent as zero markers */
    uint64_t normal;  /* pages sent with data */
    uint64_t skipped; /* zero pages left out (RAMSEND_SKIP_ZERO) */
};

/* Leave zero pages out instead of sending ZERO records: only for a receiver whose RAM is known
 * to be all zero (a fresh destination's first round). A page that is zero when read and written
 * later is dirty in the log, so a later round sends it. */
#define RAMSEND_SKIP_ZERO 1u

/*
 * Send every page whose bit is set in bitmap (npages bits), clearing the bits. Every 64 words
 * (4096 pages) progress(opaque) runs, if given; a non-zero return aborts with that value
 * (cancellation, rate limiting). Adds to *st (NULL: no counting, one pass less over the pages).
 * Returns 0, sw_error() or progress's value.
 */
int ram_send_bitmap(struct stream_writer *sw, const struct ram_source *src, unsigned long *bitmap,
                    uint64_t npages, struct ramsend_stats *st, int (*progress)(void *opaque),
                    void *opaque);
/* The same with flags (RAMSEND_SKIP_ZERO). */
int ram_send_bitmap_flags(struct stream_writer *sw, const struct ram_source *src,
                          unsigned long *bitmap, uint64_t npages, unsigned flags,
                          struct ramsend_stats *st, int (*progress)(void *opaque), void *opaque);
