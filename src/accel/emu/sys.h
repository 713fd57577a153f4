/* sys.h: helpers shared by the system side of the emulator (mmu.c, seg.c, excp.c, msr.c) and
 * nothing else: descriptor fields, privileged memory access, segment-loading steps.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "accel/emu/cpu.h"

/* Descriptor fields of the low 8 bytes. */
#define DESC_TYPE(d)  ((unsigned)((d) >> 40) & 0xfu)
#define DESC_S(d)     ((unsigned)((d) >> 44) & 1u)
#define DESC_DPL(d)   ((unsigned)((d) >> 45) & 3u)
#define DESC_P(d)     ((unsigned)((d) >> 47) & 1u)
#define DESC_L(d)     ((unsigned)((d) >> 53) & 1u)
#define DESC_DB(d)    ((unsigned)((d) >> 54) & 1u)
#define DESC_CODE(d)  (DESC_S(d) && (DESC_TYPE(d) & 8u))
#define DESC_CONF(d)  (DESC_CODE(d) && (DESC_TYPE(d) & 4u))  /* conforming code */
#define DESC_READ(d)  (!DESC_CODE(d) || (DESC_TYPE(d) & 2u)) /* data, or readable code */
#define DESC_WDATA(d) (DESC_S(d) && !(DESC_TYPE(d) & 8u) && (DESC_TYPE(d) & 2u))
#define DESC_ACCESSED (1ULL << 40)

#define SEL_RPL(s)  ((unsigned)(s)&3u)
#define SEL_NULL(s) (((s)&0xfffcu) == 0)
#define SEL_ERR(s)  ((uint32_t)(s)&0xfffcu)

/* Linear memory with explicit privilege (user = the U/S check of a CPL 3 access). */
uint64_t emu_read_priv(struct emu_cpu *c, uint64_t la, int len, bool user);
void emu_write_priv(struct emu_cpu *c, uint64_t la, uint64_t v, int len, bool user);

static inline bool emu_canonical(uint64_t la)
{
    return (uint64_t)(((int64_t)(la << 16)) >> 16) == la;
}

/* la + n as the current mode wraps linear addresses (32 bits outside long mode). */
static inline uint64_t emu_la_add(const struct emu_cpu *c, uint64_t la, uint64_t n)
{
    return c->long_mode ? la + n : (la + n) & 0xffffffffULL;
}

/* seg.c: emu_read_descriptor() with ext (the EXT bit) in its error code. */
uint64_t emu_read_desc_ext(struct emu_cpu *c, uint16_t sel, int fault_vec, uint32_t ext);
/* seg.c: set the descriptor's accessed bit in the table (when clear). */
void emu_desc_set_accessed(struct emu_cpu *c, uint16_t sel, uint64_t desc);
/* seg.c: a null selector's hidden part (unusable), rpl in the selector and DPL. */
void emu_seg_null(struct kvm_segment *s, uint16_t sel);
/* seg.c: load CS from a checked code descriptor at privilege cpl (selector RPL := cpl); the
 * caller set the accessed bit first (emu_desc_set_accessed) so that nothing faults after. */
void emu_load_cs(struct emu_cpu *c, uint16_t sel, uint64_t desc, unsigned cpl);
/* seg.c: after a return to an outer level, null ES/DS/FS/GS the new CPL may not use. */
void emu_seg_check_outer(struct emu_cpu *c);
/* seg.c: check a selector for SS at privilege cpl (gp_vec, or #SS when not present, with ext
 * in the error code) and return its descriptor. */
uint64_t emu_check_ss(struct emu_cpu *c, uint16_t sel, unsigned cpl, int gp_vec, uint32_t ext);
/* seg.c: flat 4 GiB segment attributes (SYSCALL/SYSRET). */
void emu_seg_flat(struct kvm_segment *s, uint16_t sel, bool code, unsigned dpl, bool l64);

/* mmu.c: log each condition once per process. */
void emu_log_once(bool *done, const char *what);
