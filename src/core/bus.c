/* bus.c: sorted, non-overlapping address ranges with one callback signature; bounds-checked
 * dispatch. */
#include "core/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void bus_init(struct bus *b, const char *name, uint64_t limit)
{
    memset(b, 0, sizeof(*b));
    b->name = name;
    b->limit = limit;
}

void bus_destroy(struct bus *b)
{
    free(b->regions);
    b->regions = NULL;
    b->n = b->cap = 0;
}

/* Last address of [base, base+len) or false if the range is empty, wraps, or passes the limit. */
static bool range_ok(const struct bus *b, uint64_t base, uint64_t len, uint64_t *last)
{
    if (len == 0 || __builtin_add_overflow(base, len - 1, last))
        return false;
    return b->limit == 0 || *last < b->limit;
}

int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_io_fn fn, void *opaque,
                 const char *name)
{
    uint64_t last;
    unsigned i;

    if (!fn || !range_ok(b, base, len, &last))
        return -EINVAL;
    for (i = 0; i < b->n; i++) {
        const struct bus_region *r = &b->regions[i];
        uint64_t rlast = r->base + (r->len - 1);
        if (base <= rlast && r->base <= last)
            return -EEXIST;
        if (r->base > base)
            break;
    }
    if (b->n == b->cap) {
        unsigned ncap = b->cap ? b->cap * 2 : 8;
        struct bus_region *nr = realloc(b->regions, ncap * sizeof(*nr));
        if (!nr)
            return -ENOMEM;
        b->regions = nr;
        b->cap = ncap;
    }
    memmove(&b->regions[i + 1], &b->regions[i], (b->n - i) * sizeof(*b->regions));
    b->regions[i] = (struct bus_region){base, len, fn, opaque, name};
    b->n++;
    return 0;
}

int bus_unregister(struct bus *b, uint64_t base)
{
    for (unsigned i = 0; i < b->n; i++) {
        if (b->regions[i].base == base) {
            memmove(&b->regions[i], &b->regions[i + 1], (b->n - i - 1) * sizeof(*b->regions));
            b->n--;
            return 0;
        }
    }
    return -ENOENT;
}

const struct bus_region *bus_find(const struct bus *b, uint64_t addr, uint64_t len)
{
    unsigned lo = 0, hi = b->n;
    uint64_t last;

    if (!range_ok(b, addr, len, &last))
        return NULL;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        const struct bus_region *r = &b->regions[mid];
        if (addr < r->base) {
            hi = mid;
        } else if (addr - r->base >= r->len) {
            lo = mid + 1;
        } else {
            /* addr is inside r: the access must end inside r too */
            return last - r->base < r->len ? r : NULL;
        }
    }
    return NULL;
}

int bus_dispatch(struct bus *b, uint64_t addr, void *data, uint32_t len, bool is_write)
{
    const struct bus_region *r;
    uint64_t last;

    if (len != 1 && len != 2 && len != 4 && len != 8) {
        /* Defined result for a read we cannot deliver: all-ones, as for unmapped space. */
        if (!is_write && len <= 8)
            memset(data, 0xff, len);
        return -EINVAL;
    }
    if (!range_ok(b, addr, len, &last)) {
        if (!is_write)
            memset(data, 0xff, len);
        return -EINVAL;
    }
    r = bus_find(b, addr, len);
    if (!r) {
        if (!is_write)
            memset(data, 0xff, len);
        return -ENOENT;
    }
    r->fn(r->opaque, addr - r->base, data, len, is_write);
    return 0;
}
