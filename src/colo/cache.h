/* cache.h: the secondary's colo cache: incoming checkpoint pages staged until the whole
 * checkpoint arrived, then copied into guest RAM.
 *
 * The cache is a sparse anonymous mapping as large as guest RAM: only pages that arrive become
 * resident, and every applied page is given back (MADV_DONTNEED). So the secondary holds guest
 * RAM plus the pages of one checkpoint, not a second full copy (QEMU's cache is 1x RAM more).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct guest_mem;

struct colo_run {
    uint64_t offset, len;
};

struct colo_cache {
    uint8_t *base;
    uint64_t size;
    struct colo_run *runs; /* what the current checkpoint delivered, in arrival order */
    size_t nruns, cap;
    uint64_t bytes; /* staged bytes in the current checkpoint */
};

int colo_cache_init(struct colo_cache *c, uint64_t size);
void colo_cache_destroy(struct colo_cache *c);
/* Forget the staged runs (a new checkpoint begins, or a bad one is dropped) and free them. */
void colo_cache_discard(struct colo_cache *c);
/* ram_sink.loaded callback: a run landed in the cache. -ENOMEM if it cannot be recorded: the
 * run is not staged (its pages are given back) and the checkpoint must be rejected. */
int colo_cache_loaded(void *opaque, uint64_t offset, uint64_t len);
/* Copy every staged run into guest RAM, then discard. */
void colo_cache_apply(struct colo_cache *c, struct guest_mem *mem);
