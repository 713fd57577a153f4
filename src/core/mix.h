/* mix.h: a 64-bit integer mixer (MurmurHash3's finalizer), for hash tables keyed by numbers. */
#pragma once

#include <stdint.h>

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}
