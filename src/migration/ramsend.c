/* ramsend.c: walk a dirty bitmap word by word and send runs of set pages. */
#include "migration/ramsend.h"

#include "core/mem.h"

static bool page_zero(const struct ram_source *src, uint64_t p)
{
    return ram_is_zero(src->host + p * src->page_size, src->page_size);
}

/* Send pages [first, first + n); with skip_zero only its runs of non-zero pages. */
static int send_run(struct stream_writer *sw, const struct ram_source *src, uint64_t first,
                    uint64_t n, bool skip_zero, struct ramsend_stats *st)
{
    uint64_t end = first + n, p = first;

    if (!skip_zero) {
        for (uint64_t q = first; st && q < end; q++) {
            if (page_zero(src, q))
                st->zero++;
            else
                st->normal++;
        }
        return ram_save_pages(sw, src, first, n);
    }
    while (p < end) {
        uint64_t start = p;

        /* A page the guest writes after this test is dirty in the log: a later round sends
         * it. One the guest zeroes before the copy still goes out right (as a ZERO record). */
        while (p < end && page_zero(src, p))
            p++;
        if (st)
            st->skipped += p - start;
        start = p;
        while (p < end && !page_zero(src, p))
            p++;
        if (p == start)
            continue;
        if (st)
            st->normal += p - start;
        if (ram_save_pages(sw, src, start, p - start))
            return sw_error(sw);
    }
    return sw_error(sw);
}

int ram_send_bitmap_flags(struct stream_writer *sw, const struct ram_source *src,
                          unsigned long *bitmap, uint64_t npages, unsigned flags,
                          struct ramsend_stats *st, int (*progress)(void *opaque), void *opaque)
{
    uint64_t nlongs = BITMAP_LONGS(npages);
    bool skip_zero = flags & RAMSEND_SKIP_ZERO;

    for (uint64_t w = 0; w < nlongs; w++) {
        unsigned long bits = bitmap[w];

        bitmap[w] = 0;
        while (bits) {
            unsigned shift = (unsigned)__builtin_ctzl(bits);
            unsigned long run = bits >> shift;
            /* Length of the run of ones starting at shift (within this word). */
            unsigned len =
                run == ~0UL ? (unsigned)BITS_PER_LONG - shift : (unsigned)__builtin_ctzl(~run);
            uint64_t first = w * BITS_PER_LONG + shift;
            uint64_t n = len;

            bits &= len >= BITS_PER_LONG ? 0 : ~(((1UL << len) - 1) << shift);
            if (first >= npages)
                break;
            if (first + n > npages)
                n = npages - first;
            if (send_run(sw, src, first, n, skip_zero, st))
                return sw_error(sw);
        }
        if (progress && w % 64 == 63) {
            int r = progress(opaque);
            if (r)
                return r;
        }
    }
    return sw_error(sw);
}

int ram_send_bitmap(struct stream_writer *sw, const struct ram_source *src, unsigned long *bitmap,
                    uint64_t npages, struct ramsend_stats *st, int (*progress)(void *opaque),
                    void *opaque)
{
    return ram_send_bitmap_flags(sw, src, bitmap, npages, 0, st, progress, opaque);
}
