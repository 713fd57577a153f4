/* mem.h: guest RAM: one memfd, mapped shared, registered with the engine in slots; dirty = the
 * engine's log ∪ the VMM bitmap (core/dirty.c).
 *
 * Layout: RAM occupies guest-physical [0, min(size, 3 GiB)); anything above continues at 4 GiB,
 * leaving [3 GiB, 4 GiB) for MMIO (virtio-mmio at 0xFEB00000, IOAPIC, LAPIC).
 * Pages are numbered by their offset in the memfd ("ram offset"), so dirty bitmaps are dense.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PAGE_SHIFT     12
#define PAGE_SIZE      (1ULL << PAGE_SHIFT)
#define MEM_LOW_LIMIT  0xC0000000ULL /* 3 GiB: start of the MMIO hole */
#define MEM_HIGH_START 0x100000000ULL
#define MEM_MAX_SLOTS  2

struct mem_slot {
    uint32_t slot;       /* slot id (KVM's, for that engine) */
    uint64_t gpa;        /* guest-physical start */
    uint64_t size;       /* bytes */
    uint64_t ram_offset; /* offset in the memfd / host mapping */
};

struct guest_mem {
    int memfd;
    uint8_t *base; /* host mapping of the whole memfd */
    uint64_t size; /* bytes of RAM */
    uint64_t npages;
    unsigned nslots;
    struct mem_slot slots[MEM_MAX_SLOTS];
    bool logging; /* dirty logging is on (vm_dirty_log_start) */
    /* Pages written by device emulation, and by the emulator's CPU (one bit per page, by ram
     * offset). Atomic ops only. */
    unsigned long *vmm_dirty;
};

#define BITS_PER_LONG       (8 * sizeof(unsigned long))
#define BITMAP_LONGS(nbits) (((nbits) + BITS_PER_LONG - 1) / BITS_PER_LONG)

int gmem_init(struct guest_mem *m, uint64_t size);
void gmem_destroy(struct guest_mem *m);

/* Host pointer for [gpa, gpa+len) or NULL if any byte is outside RAM or the range spans slots.
 * Every guest-supplied address goes through here (or gmem_read/gmem_write). */
void *gmem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);
/* ram offset for a gpa, or -1 (as UINT64_MAX) if outside RAM. */
uint64_t gmem_gpa_to_offset(const struct guest_mem *m, uint64_t gpa);
/* gpa for a ram offset (always valid for offset < size). */
uint64_t gmem_offset_to_gpa(const struct guest_mem *m, uint64_t offset);

int gmem_read(const struct guest_mem *m, uint64_t gpa, void *buf, size_t len);
/* Device-emulation write into guest RAM: copies and marks the pages dirty. */
int gmem_write(struct guest_mem *m, uint64_t gpa, const void *buf, size_t len);
/* Mark [gpa, gpa+len) dirty in the VMM bitmap (for devices that write through gmem_ptr). */
void gmem_mark_dirty(struct guest_mem *m, uint64_t gpa, uint64_t len);

/* OR the VMM bitmap into out (npages bits) and clear it. Returns the newly set bits in out. */
long gmem_harvest_vmm(struct guest_mem *m, unsigned long *out);

static inline bool bitmap_test(const unsigned long *map, uint64_t bit)
{
    return (map[bit / BITS_PER_LONG] >> (bit % BITS_PER_LONG)) & 1;
}
static inline void bitmap_set(unsigned long *map, uint64_t bit)
{
    map[bit / BITS_PER_LONG] |= 1UL << (bit % BITS_PER_LONG);
}
static inline void bitmap_clear_bit(unsigned long *map, uint64_t bit)
{
    map[bit / BITS_PER_LONG] &= ~(1UL << (bit % BITS_PER_LONG));
}
