/* emu_test.h: helpers shared by the interpreter's unit tests (test_exec.c, test_oracle.c). */
#pragma once

#include <linux/kvm.h>
#include <stdint.h>

/* A flat 4 GiB ring-0 segment (32-bit, page-granular) of the given type at base. */
static inline void emu_test_seg_flat(struct kvm_segment *s, uint16_t sel, uint8_t type,
                                     uint64_t base)
{
    *s = (struct kvm_segment){.base = base,
                              .limit = 0xffffffff,
                              .selector = sel,
                              .type = type,
                              .present = 1,
                              .dpl = 0,
                              .db = 1,
                              .s = 1,
                              .g = 1};
}
