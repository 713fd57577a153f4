/* ramsend.c: walk a dirty bitmap word by word and send runs of set pages. */
#include "migration/ramsend.h"

#include "core/mem.h"

int ram_send_bitmap(struct stream_writer *sw, const struct ram_source *src, unsigned long *bitmap,
                    uint64_t npages, struct ramsend_stats *st, int (*progress)(void *opaque),
                    void *opaque)
{
    uint64_t nlongs = BITMAP_LONGS(npages);

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
            for (uint64_t p = first; st && p < first + n; p++) {
                if (ram_is_zero(src->host + p * src->page_size, src->page_size))
                    st->zero++;
                else
                    st->normal++;
            }
            if (ram_save_pages(sw, src, first, n))
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
