/* mmu.h: TLB-hit fast paths for guest memory access, inlined into the interpreter (cpu.h
 * includes this at its end). A hit is: one compare of the entry's tag, one test of its rights
 * (which include "RAM-backed" and, for writes, "D bit set"), a page-offset bound and, for a
 * write, one relaxed load of the dirty generation. Everything else goes to mmu.c's slow paths.
 *
 * emu_read, emu_write and emu_fetch are macros over the inline versions here; the out-of-line
 * functions of the same names (mmu.c) stay for callers that take their address.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* struct emu_tlb_entry rights (perm): bit (acc + 3 * user) for acc in enum emu_access. */
#define EMU_TLB_R   0x01u /* supervisor read */
#define EMU_TLB_W   0x02u /* supervisor write (and the leaf's D bit is set) */
#define EMU_TLB_X   0x04u /* supervisor fetch */
#define EMU_TLB_UR  0x08u /* user read */
#define EMU_TLB_UW  0x10u /* user write (and D set) */
#define EMU_TLB_UX  0x20u /* user fetch */
#define EMU_TLB_RAM 0x40u /* host != NULL: the fast path may touch the page directly */

uint64_t emu_read_slow(struct emu_cpu *c, uint64_t la, int len, bool user);
void emu_write_slow(struct emu_cpu *c, uint64_t la, uint64_t v, int len, bool user);
int emu_fetch_slow(struct emu_cpu *c, uint64_t la, uint8_t *buf, int len);

static inline struct emu_tlb_entry *emu_tlb_slot(struct emu_cpu *c, uint64_t la)
{
    return &c->tlb[(la >> 12) & (EMU_TLB_SIZE - 1)];
}

/* Host-endian loads and stores of 1/2/4/8 bytes (x86 guests on little-endian hosts only). */
static inline uint64_t emu_host_ld(const uint8_t *p, int len)
{
    uint8_t b;
    uint16_t w;
    uint32_t d;
    uint64_t q;

    switch (len) {
    case 1:
        b = *p;
        return b;
    case 2:
        memcpy(&w, p, 2);
        return w;
    case 4:
        memcpy(&d, p, 4);
        return d;
    default:
        memcpy(&q, p, 8);
        return q;
    }
}

static inline void emu_host_st(uint8_t *p, uint64_t v, int len)
{
    uint16_t w = (uint16_t)v;
    uint32_t d = (uint32_t)v;

    switch (len) {
    case 1:
        *p = (uint8_t)v;
        break;
    case 2:
        memcpy(p, &w, 2);
        break;
    case 4:
        memcpy(p, &d, 4);
        break;
    default:
        memcpy(p, &v, 8);
        break;
    }
}

static inline uint64_t emu_read_inline(struct emu_cpu *c, uint64_t la, int len)
{
    const struct emu_tlb_entry *e = emu_tlb_slot(c, la);
    unsigned need = (c->cpl == 3 ? EMU_TLB_UR : EMU_TLB_R) | EMU_TLB_RAM;
    unsigned off = la & 0xfff;

    if (__builtin_expect(e->tag == ((la & ~0xfffULL) | 1) && (e->perm & need) == need &&
                             off <= 4096u - (unsigned)len,
                         1))
        return emu_host_ld(e->host + off, len);
    return emu_read_slow(c, la, len, c->cpl == 3);
}

static inline void emu_write_inline(struct emu_cpu *c, uint64_t la, uint64_t v, int len)
{
    struct emu_tlb_entry *e = emu_tlb_slot(c, la);
    unsigned need = (c->cpl == 3 ? EMU_TLB_UW : EMU_TLB_W) | EMU_TLB_RAM;
    unsigned off = la & 0xfff;

    if (__builtin_expect(e->tag == ((la & ~0xfffULL) | 1) && (e->perm & need) == need &&
                             off <= 4096u - (unsigned)len &&
                             e->dirty_gen ==
                                 atomic_load_explicit(&c->vm->dirty_gen, memory_order_relaxed),
                         1)) {
        emu_host_st(e->host + off, v, len);
        return;
    }
    emu_write_slow(c, la, v, len, c->cpl == 3);
}

static inline int emu_fetch_inline(struct emu_cpu *c, uint64_t la, uint8_t *buf, int len)
{
    const struct emu_tlb_entry *e = emu_tlb_slot(c, la);
    unsigned need = (c->cpl == 3 ? EMU_TLB_UX : EMU_TLB_X) | EMU_TLB_RAM;
    unsigned off = la & 0xfff;

    if (__builtin_expect(e->tag == ((la & ~0xfffULL) | 1) && (e->perm & need) == need &&
                             off <= 4096u - (unsigned)len,
                         1)) {
        memcpy(buf, e->host + off, (size_t)len);
        return len;
    }
    return emu_fetch_slow(c, la, buf, len);
}

#define emu_read(c, la, len)       emu_read_inline((c), (la), (len))
#define emu_write(c, la, v, len)   emu_write_inline((c), (la), (v), (len))
#define emu_fetch(c, la, buf, len) emu_fetch_inline((c), (la), (buf), (len))
