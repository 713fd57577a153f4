/* dirty.c: dirties a chosen number of distinct pages per round, for dirty-tracking benchmarks. */
#include "rt.h"

/*
 * The region is a ring of npages pages. Write number k (counting from 0 over the whole run)
 * goes to page k % npages, so the pages of one round are distinct (pages <= npages) and
 * consecutive rounds sweep the region. Each write stores a stamp {k, H(k, page)} at the
 * page's start after checking the stamp left there by write k - npages: a page that lost a
 * write (or came back from another instant) is reported as CORRUPT.
 */

#define PAGE_BYTES 4096ull

struct stamp {
    uint64_t k;    /* write number */
    uint64_t hash; /* stamp_hash(k, page) */
};

static uint64_t stamp_hash(uint64_t k, uint64_t page)
{
    return rt_mix64(k ^ (page * 0x9e3779b97f4a7c15ull) ^ 0x6469727479ull);
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) & ~(a - 1);
}

int main(void)
{
    uint64_t mem = rt_arg_u64("mem", 64ull << 20);
    uint64_t pages = rt_arg_u64("pages", 256);
    uint64_t rounds = rt_arg_u64("rounds", 0);
    uint64_t every = rt_arg_u64("every", 1);
    uint64_t delay = rt_arg_u64("delay", 0);

    if (mem < PAGE_BYTES || mem % PAGE_BYTES || mem > (1ull << 32)) {
        rt_printf("dirty: mem=%lu must be a multiple of 4K, at least 4K and at most 4G\n", mem);
        return RT_EXIT_CONFIG;
    }
    uint64_t npages = mem / PAGE_BYTES;
    if (!pages || pages > npages) {
        rt_printf("dirty: pages=%lu must be 1..%lu (the pages in mem=%lu)\n", pages, npages, mem);
        return RT_EXIT_CONFIG;
    }
    if (!every)
        every = 1;

    uint64_t base = align_up(rt_image_end(), 2ull << 20);
    if (base < RT_REGION_BASE)
        base = RT_REGION_BASE;
    if (!rt_have_meminfo() || !rt_ram_usable(base, mem)) {
        rt_printf("dirty: mem=%lu at 0x%lx does not fit in RAM (%lu bytes)\n", mem, base,
                  rt_ram_bytes());
        return RT_EXIT_CONFIG;
    }
    char *region = (char *)(uintptr_t)base;

    rt_printf("dirty start mem=%lu base=0x%lx pages=%lu rounds=%lu every=%lu delay=%lu ram=%lu\n",
              mem, base, pages, rounds, every, delay, rt_ram_bytes());

    uint64_t k = 0;
    for (uint64_t r = 1;; r++) {
        for (uint64_t j = 0; j < pages; j++, k++) {
            uint64_t p = k % npages;
            struct stamp *s = (struct stamp *)(region + p * PAGE_BYTES);
            if (k >= npages) {
                uint64_t want = k - npages;
                if (s->k != want || s->hash != stamp_hash(want, p)) {
                    rt_printf("CORRUPT page %lu round=%lu stamp=%lu/0x%lx want=%lu\n", p, r, s->k,
                              s->hash, want);
                    return RT_EXIT_CORRUPT;
                }
            }
            s->k = k;
            s->hash = stamp_hash(k, p);
        }
        if (r % every == 0 || r == rounds)
            rt_printf("round %lu\n", r);
        if (r == rounds) {
            rt_printf("done\n");
            return RT_EXIT_OK;
        }
        for (uint64_t i = 0; i < delay; i++)
            rt_barrier();
    }
}
