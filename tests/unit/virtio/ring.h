/* ring.h: test helpers that play the guest: build split rings and descriptors in a guest_mem. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "core/mem.h"
#include "virtio/virtq.h"

/* A queue of size num whose areas live at fixed guest addresses (see ring.c). */
struct test_ring {
    struct guest_mem *mem;
    uint16_t num;
    uint64_t desc, avail, used;
    uint16_t avail_idx; /* the driver's next avail index */
};

#define RING_DESC_GPA  0x1000ULL
#define RING_AVAIL_GPA 0x3000ULL
#define RING_USED_GPA  0x4000ULL
#define RING_DATA_GPA  0x10000ULL /* free area for buffers and tables */

void ring_init(struct test_ring *r, struct guest_mem *mem, uint16_t num);
/* The same with the areas at base (desc), base + 0x1000 (avail), base + 0x2000 (used). */
void ring_init_at(struct test_ring *r, struct guest_mem *mem, uint16_t num, uint64_t base);
/* Write descriptor i of the table at table_gpa. */
void ring_desc(struct test_ring *r, uint64_t table_gpa, uint16_t i, uint64_t addr, uint32_t len,
               uint16_t flags, uint16_t next);
/* Make head available (ring slot, then idx). */
void ring_avail(struct test_ring *r, uint16_t head);
/* Set avail->idx directly (hostile jumps). */
void ring_set_avail_idx(struct test_ring *r, uint16_t idx);
void ring_set_avail_flags(struct test_ring *r, uint16_t flags);
void ring_set_used_event(struct test_ring *r, uint16_t v);
uint16_t ring_used_idx(struct test_ring *r);
uint16_t ring_avail_event(struct test_ring *r);
/* Used element i: id and len. */
void ring_used_elem(struct test_ring *r, uint16_t i, uint32_t *id, uint32_t *len);

void put16(struct guest_mem *m, uint64_t gpa, uint16_t v);
void put32(struct guest_mem *m, uint64_t gpa, uint32_t v);
void put64(struct guest_mem *m, uint64_t gpa, uint64_t v);
uint16_t get16(struct guest_mem *m, uint64_t gpa);
uint32_t get32(struct guest_mem *m, uint64_t gpa);
/* Is the page holding gpa dirty in the VMM bitmap? */
bool page_dirty(struct guest_mem *m, uint64_t gpa);
void clear_dirty(struct guest_mem *m);
