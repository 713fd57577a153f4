/* ring.c: the guest side of split rings, for tests (little-endian stores through gmem). */
#include "ring.h"

#include <string.h>

void put16(struct guest_mem *m, uint64_t gpa, uint16_t v)
{
    memcpy(gmem_ptr(m, gpa, 2), &v, 2);
}

void put32(struct guest_mem *m, uint64_t gpa, uint32_t v)
{
    memcpy(gmem_ptr(m, gpa, 4), &v, 4);
}

void put64(struct guest_mem *m, uint64_t gpa, uint64_t v)
{
    memcpy(gmem_ptr(m, gpa, 8), &v, 8);
}

uint16_t get16(struct guest_mem *m, uint64_t gpa)
{
    uint16_t v;

    memcpy(&v, gmem_ptr(m, gpa, 2), 2);
    return v;
}

uint32_t get32(struct guest_mem *m, uint64_t gpa)
{
    uint32_t v;

    memcpy(&v, gmem_ptr(m, gpa, 4), 4);
    return v;
}

static void ring_place(struct test_ring *r, struct guest_mem *mem, uint16_t num, uint64_t desc,
                       uint64_t avail, uint64_t used)
{
    memset(r, 0, sizeof(*r));
    r->mem = mem;
    r->num = num;
    r->desc = desc;
    r->avail = avail;
    r->used = used;
    memset(gmem_ptr(mem, r->desc, 16ULL * num), 0, 16ULL * num);
    memset(gmem_ptr(mem, r->avail, 6 + 2ULL * num), 0, 6 + 2ULL * num);
    memset(gmem_ptr(mem, r->used, 6 + 8ULL * num), 0, 6 + 8ULL * num);
}

void ring_init(struct test_ring *r, struct guest_mem *mem, uint16_t num)
{
    ring_place(r, mem, num, RING_DESC_GPA, RING_AVAIL_GPA, RING_USED_GPA);
}

void ring_init_at(struct test_ring *r, struct guest_mem *mem, uint16_t num, uint64_t base)
{
    ring_place(r, mem, num, base, base + 0x1000, base + 0x2000);
}

void ring_desc(struct test_ring *r, uint64_t table_gpa, uint16_t i, uint64_t addr, uint32_t len,
               uint16_t flags, uint16_t next)
{
    uint64_t p = table_gpa + 16ULL * i;

    put64(r->mem, p, addr);
    put32(r->mem, p + 8, len);
    put16(r->mem, p + 12, flags);
    put16(r->mem, p + 14, next);
}

void ring_avail(struct test_ring *r, uint16_t head)
{
    put16(r->mem, r->avail + 4 + 2ULL * (r->avail_idx % r->num), head);
    r->avail_idx++;
    put16(r->mem, r->avail + 2, r->avail_idx);
}

void ring_set_avail_idx(struct test_ring *r, uint16_t idx)
{
    r->avail_idx = idx;
    put16(r->mem, r->avail + 2, idx);
}

void ring_set_avail_flags(struct test_ring *r, uint16_t flags)
{
    put16(r->mem, r->avail, flags);
}

void ring_set_used_event(struct test_ring *r, uint16_t v)
{
    put16(r->mem, r->avail + 4 + 2ULL * r->num, v);
}

uint16_t ring_used_idx(struct test_ring *r)
{
    return get16(r->mem, r->used + 2);
}

uint16_t ring_avail_event(struct test_ring *r)
{
    return get16(r->mem, r->used + 4 + 8ULL * r->num);
}

void ring_used_elem(struct test_ring *r, uint16_t i, uint32_t *id, uint32_t *len)
{
    uint64_t p = r->used + 4 + 8ULL * (i % r->num);

    *id = get32(r->mem, p);
    *len = get32(r->mem, p + 4);
}

bool page_dirty(struct guest_mem *m, uint64_t gpa)
{
    uint64_t off = gmem_gpa_to_offset(m, gpa);

    return off != UINT64_MAX && bitmap_test(m->vmm_dirty, off >> PAGE_SHIFT);
}

void clear_dirty(struct guest_mem *m)
{
    memset(m->vmm_dirty, 0, BITMAP_LONGS(m->npages) * sizeof(unsigned long));
}
