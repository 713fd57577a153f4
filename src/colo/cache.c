/* cache.c: sparse page staging for incoming checkpoints, applied to guest RAM in one pass. */
#include "colo/cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/log.h"
#include "core/mem.h"

int colo_cache_init(struct colo_cache *c, uint64_t size)
{
    memset(c, 0, sizeof(*c));
    c->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (c->base == MAP_FAILED) {
        c->base = NULL;
        return -errno;
    }
    madvise(c->base, size, MADV_DONTDUMP);
    c->size = size;
    return 0;
}

void colo_cache_destroy(struct colo_cache *c)
{
    if (c->base)
        munmap(c->base, c->size);
    free(c->runs);
    memset(c, 0, sizeof(*c));
}

static void release(struct colo_cache *c, uint64_t off, uint64_t len)
{
    uint64_t start = off & ~(PAGE_SIZE - 1);
    uint64_t end = (off + len + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);

    madvise(c->base + start, end - start, MADV_DONTNEED);
}

void colo_cache_discard(struct colo_cache *c)
{
    for (size_t i = 0; i < c->nruns; i++)
        release(c, c->runs[i].offset, c->runs[i].len);
    c->nruns = 0;
    c->bytes = 0;
}

int colo_cache_loaded(void *opaque, uint64_t offset, uint64_t len)
{
    struct colo_cache *c = opaque;

    /* The RAM loader checked offset + len <= size before writing. */
    if (c->nruns && c->runs[c->nruns - 1].offset + c->runs[c->nruns - 1].len == offset) {
        c->runs[c->nruns - 1].len += len;
    } else {
        if (c->nruns == c->cap) {
            size_t ncap = c->cap ? c->cap * 2 : 256;
            struct colo_run *nr = realloc(c->runs, ncap * sizeof(*nr));
            if (!nr) {
                /* An untracked run would never be applied: fail the checkpoint instead. */
                log_err("colo: out of memory tracking cache runs (%zu staged)", c->nruns);
                release(c, offset, len);
                return -ENOMEM;
            }
            c->runs = nr;
            c->cap = ncap;
        }
        c->runs[c->nruns++] = (struct colo_run){offset, len};
    }
    c->bytes += len;
    return 0;
}

void colo_cache_apply(struct colo_cache *c, struct guest_mem *mem)
{
    for (size_t i = 0; i < c->nruns; i++)
        memcpy(mem->base + c->runs[i].offset, c->base + c->runs[i].offset, c->runs[i].len);
    colo_cache_discard(c);
}
