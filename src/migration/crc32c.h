/* crc32c.h: CRC-32C (Castagnoli), the checksum that guards every migration stream segment. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/*
 * Chainable like zlib's crc32(): crc32c(crc32c(0, a), b) == crc32c(0, a || b), and
 * crc32c(0, "123456789", 9) == 0xe3069283. Uses the SSE4.2 instruction when the CPU has it.
 */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The portable table-driven path, exported so tests can check it against the fast path. */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);
