/* mem.c: guest RAM in a memfd, its slots, gpa translation, and the VMM dirty bitmap. */
#include "core/mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/log.h"

int gmem_init(struct guest_mem *m, uint64_t size)
{
    uint64_t low;
    int err;

    memset(m, 0, sizeof(*m));
    m->memfd = -1;
    if (size < (2ULL << 20) || size % PAGE_SIZE)
        return -EINVAL;
    m->memfd = memfd_create("tandem-ram", MFD_CLOEXEC);
    if (m->memfd < 0)
        return -errno;
    if (ftruncate(m->memfd, (off_t)size) < 0) {
        err = -errno;
        goto err_fd;
    }
    m->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, m->memfd, 0);
    if (m->base == MAP_FAILED) {
        err = -errno;
        m->base = NULL;
        goto err_fd;
    }
    m->size = size;
    m->npages = size / PAGE_SIZE;
    low = size < MEM_LOW_LIMIT ? size : MEM_LOW_LIMIT;
    m->slots[0] = (struct mem_slot){.slot = 0, .gpa = 0, .size = low, .ram_offset = 0};
    m->nslots = 1;
    if (size > low) {
        m->slots[1] = (struct mem_slot){
            .slot = 1, .gpa = MEM_HIGH_START, .size = size - low, .ram_offset = low};
        m->nslots = 2;
    }
    m->vmm_dirty = calloc(BITMAP_LONGS(m->npages), sizeof(unsigned long));
    if (!m->vmm_dirty) {
        err = -ENOMEM;
        goto err_map;
    }
    return 0;

err_map:
    free(m->vmm_dirty);
    munmap(m->base, size);
    m->base = NULL;
err_fd:
    close(m->memfd);
    m->memfd = -1;
    return err;
}

void gmem_destroy(struct guest_mem *m)
{
    if (m->base)
        munmap(m->base, m->size);
    if (m->memfd >= 0)
        close(m->memfd);
    free(m->vmm_dirty);
    memset(m, 0, sizeof(*m));
    m->memfd = -1;
}

uint64_t gmem_gpa_to_offset(const struct guest_mem *m, uint64_t gpa)
{
    for (unsigned i = 0; i < m->nslots; i++) {
        const struct mem_slot *s = &m->slots[i];
        if (gpa >= s->gpa && gpa - s->gpa < s->size)
            return s->ram_offset + (gpa - s->gpa);
    }
    return UINT64_MAX;
}

uint64_t gmem_offset_to_gpa(const struct guest_mem *m, uint64_t offset)
{
    for (unsigned i = 0; i < m->nslots; i++) {
        const struct mem_slot *s = &m->slots[i];
        if (offset >= s->ram_offset && offset - s->ram_offset < s->size)
            return s->gpa + (offset - s->ram_offset);
    }
    return UINT64_MAX;
}

void *gmem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
    for (unsigned i = 0; i < m->nslots; i++) {
        const struct mem_slot *s = &m->slots[i];
        uint64_t off;
        if (gpa < s->gpa)
            continue;
        off = gpa - s->gpa;
        if (off >= s->size || len > s->size - off)
            continue;
        return m->base + s->ram_offset + off;
    }
    return NULL;
}

int gmem_read(const struct guest_mem *m, uint64_t gpa, void *buf, size_t len)
{
    void *p = gmem_ptr(m, gpa, len);

    if (!p)
        return -EFAULT;
    memcpy(buf, p, len);
    return 0;
}

int gmem_write(struct guest_mem *m, uint64_t gpa, const void *buf, size_t len)
{
    void *p = gmem_ptr(m, gpa, len);

    if (!p)
        return -EFAULT;
    memcpy(p, buf, len);
    gmem_mark_dirty(m, gpa, len);
    return 0;
}

void gmem_mark_dirty(struct guest_mem *m, uint64_t gpa, uint64_t len)
{
    uint64_t off = gmem_gpa_to_offset(m, gpa);
    uint64_t first, last;

    if (off == UINT64_MAX || len == 0)
        return;
    if (len > m->size - off)
        len = m->size - off;
    first = off >> PAGE_SHIFT;
    last = (off + len - 1) >> PAGE_SHIFT;
    for (uint64_t p = first; p <= last; p++)
        __atomic_fetch_or(&m->vmm_dirty[p / BITS_PER_LONG], 1UL << (p % BITS_PER_LONG),
                          __ATOMIC_RELAXED);
}

long gmem_harvest_vmm(struct guest_mem *m, unsigned long *out)
{
    uint64_t nlongs = BITMAP_LONGS(m->npages);
    long added = 0;

    for (uint64_t w = 0; w < nlongs; w++) {
        unsigned long bits = __atomic_exchange_n(&m->vmm_dirty[w], 0UL, __ATOMIC_ACQ_REL);
        unsigned long fresh = bits & ~out[w];
        out[w] |= bits;
        added += __builtin_popcountl(fresh);
    }
    return added;
}
