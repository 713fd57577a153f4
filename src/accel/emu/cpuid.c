/* cpuid.c: the emulated CPU's fixed, documented CPUID model (docs/emulator.md, "CPUID model"):
 * a family 6 "GenuineIntel" with exactly the features the emulator implements or must claim.
 */
#include <string.h>

#include "accel/emu/cpu.h"

#define MAX_BASIC 0x16u
#define MAX_EXT   0x80000008u
#define HV_LEAF   0x40000000u

/* Leaf 1 EDX: FPU DE PSE TSC MSR PAE CX8 APIC SEP MTRR PGE CMOV PAT PSE36 CLFSH FXSR SSE SSE2. */
#define L1_EDX                                                                                     \
    ((1u << 0) | (1u << 2) | (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 8) |           \
     (1u << 9) | (1u << 11) | (1u << 12) | (1u << 13) | (1u << 15) | (1u << 16) | (1u << 17) |     \
     (1u << 19) | (1u << 24) | (1u << 25) | (1u << 26))
#define L1_EDX_HTT    (1u << 28)
#define L1_ECX_HYPERV (1u << 31)
/* Leaf 1 ECX: CMPXCHG16B and POPCNT, which the interpreter executes. */
#define L1_ECX (1u << 13 | 1u << 23)
/* 0x80000001 ECX: LAHF/SAHF in 64-bit mode, LZCNT (ABM). TZCNT needs BMI1, not claimed: F3 0F BC
 * then means BSF on hardware, which gives the same result for a non-zero source. */
#define E1_ECX      (1u << 0 | 1u << 5)
#define L7_EBX_SMEP (1u << 7)
/* 0x80000001 EDX: SYSCALL, NX, 1 GiB pages, RDTSCP, LM. */
#define E1_EDX ((1u << 11) | (1u << 20) | (1u << 26) | (1u << 27) | (1u << 29))

static void regs_str(uint32_t out[3], const char *s)
{
    memcpy(out, s, 12);
}

static unsigned ncpus(const struct emu_cpu *c)
{
    return c->vm && c->vm->ncpus > 0 ? (unsigned)c->vm->ncpus : 1;
}

/* Bits needed for an id below n (the x2APIC-topology shift). */
static unsigned id_bits(unsigned n)
{
    unsigned b = 0;

    while ((1u << b) < n)
        b++;
    return b;
}

/* Leaf 4: L1d, L1i (32 KiB, 8-way) and a unified L2 (256 KiB, 8-way), 64-byte lines. */
static void cache_leaf(const struct emu_cpu *c, uint32_t sub, uint32_t out[4])
{
    static const struct {
        uint32_t type, level, sets;
    } caches[] = {{1, 1, 64}, {2, 1, 64}, {3, 2, 512}};
    uint32_t cores = ncpus(c) - 1;

    if (sub >= 3)
        return;
    out[0] = caches[sub].type | (caches[sub].level << 5) | (1u << 8) | ((cores & 0x3f) << 26);
    out[1] = (7u << 22) | 63u; /* 8 ways, 1 partition, 64-byte line */
    out[2] = caches[sub].sets - 1;
}

static void basic(struct emu_cpu *c, uint32_t leaf, uint32_t sub, uint32_t out[4])
{
    unsigned n = ncpus(c);

    switch (leaf) {
    case 0:
        out[0] = MAX_BASIC;
        /* "GenuineIntel" in EBX, EDX, ECX (out[] is EAX, EBX, ECX, EDX). */
        memcpy(&out[1], "Genu", 4);
        memcpy(&out[3], "ineI", 4);
        memcpy(&out[2], "ntel", 4);
        break;
    case 1:
        out[0] = 0x000006f1; /* family 6, model 0x0f, stepping 1 */
        out[1] = (8u << 8) | ((n & 0xff) << 16) | ((uint32_t)(c->id & 0xff) << 24);
        out[2] = L1_ECX_HYPERV | L1_ECX;
        out[3] = L1_EDX | (n > 1 ? L1_EDX_HTT : 0);
        break;
    case 2:
        out[0] = 1; /* one iteration, no descriptors: see leaf 4 */
        break;
    case 4:
        cache_leaf(c, sub, out);
        break;
    case 6:
        out[0] = 1u << 2; /* ARAT: the APIC timer runs in every idle state */
        break;
    case 7:
        if (sub == 0)
            out[1] = L7_EBX_SMEP;
        break;
    case 0xb:
        /* Topology: one thread per core, ncpus cores in one package. */
        out[3] = (uint32_t)c->id;
        out[2] = sub & 0xff;
        if (sub == 0) {
            out[0] = 0;
            out[1] = 1;
            out[2] |= 1u << 8;
        } else if (sub == 1) {
            out[0] = id_bits(n);
            out[1] = n;
            out[2] |= 2u << 8;
        }
        break;
    case 0x16:
        out[0] = 1000; /* base MHz: the TSC's 1 GHz */
        out[1] = 1000;
        out[2] = 100; /* bus MHz */
        break;
    default:
        break; /* 3, 5, 8-0xa, 0xc-0x15: zero (not present) */
    }
}

static void extended(uint32_t leaf, uint32_t out[4])
{
    static const char brand[48] = "Tandem emulated x86-64 CPU";

    switch (leaf) {
    case 0x80000000:
        out[0] = MAX_EXT;
        break;
    case 0x80000001:
        out[3] = E1_EDX;
        out[2] = E1_ECX;
        break;
    case 0x80000002:
    case 0x80000003:
    case 0x80000004:
        memcpy(out, brand + 16 * (leaf - 0x80000002), 16);
        break;
    case 0x80000006:
        out[2] = (256u << 16) | (6u << 12) | 64u; /* 256 KiB, 8-way, 64-byte lines */
        break;
    case 0x80000007:
        out[3] = 1u << 8; /* invariant TSC */
        break;
    case 0x80000008:
        out[0] = (48u << 8) | 40u; /* 48-bit linear, 40-bit physical addresses */
        break;
    default:
        break;
    }
}

void emu_cpuid(struct emu_cpu *c, uint32_t leaf, uint32_t sub, uint32_t out[4])
{
    memset(out, 0, 4 * sizeof(uint32_t));
    if (leaf == HV_LEAF) {
        out[0] = HV_LEAF;
        regs_str(&out[1], "TandemEmuCPU");
        return;
    }
    if (leaf >= 0x80000000u && leaf <= MAX_EXT) {
        extended(leaf, out);
        return;
    }
    /* Anything above the basic range that is not defined: the highest basic leaf (Intel). */
    if (leaf > MAX_BASIC) {
        leaf = MAX_BASIC;
        sub = 0;
    }
    basic(c, leaf, sub, out);
}
