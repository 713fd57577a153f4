/* bus.h: address-range dispatch for port I/O and MMIO exits.
 *
 * Regions are registered before the vCPUs start and never overlap. A guest access is
 * delivered only if it lies wholly inside one region; anything else is "unmapped":
 * reads return all-ones, writes are dropped, and the caller may log it.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* offset is relative to the region base; len is 1, 2, 4 or 8. */
typedef void (*bus_io_fn)(void *opaque, uint64_t offset, void *data, uint32_t len, bool is_write);

struct bus_region {
    uint64_t base;
    uint64_t len;
    bus_io_fn fn;
    void *opaque;
    const char *name;
};

struct bus {
    const char *name;           /* "pio" or "mmio", for messages */
    struct bus_region *regions; /* sorted by base */
    unsigned n, cap;
    uint64_t limit; /* highest valid address + 1 (0x10000 for pio), 0 = 2^64 */
};

void bus_init(struct bus *b, const char *name, uint64_t limit);
void bus_destroy(struct bus *b);
/* 0, -EINVAL (empty, wrapping or beyond limit), -EEXIST (overlap), -ENOMEM. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_io_fn fn, void *opaque,
                 const char *name);
int bus_unregister(struct bus *b, uint64_t base);
const struct bus_region *bus_find(const struct bus *b, uint64_t addr, uint64_t len);
/* 0 if a region handled it; -ENOENT if unmapped (read data filled with 0xff);
 * -EINVAL for a bad length or a wrapping range. */
int bus_dispatch(struct bus *b, uint64_t addr, void *data, uint32_t len, bool is_write);
