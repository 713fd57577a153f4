/* options.h: shared parsers for command-line values (sizes with suffixes, integers). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* "256M", "1G", "512K", "4096B"; a bare number means MiB (as QEMU's -m). */
int parse_mem_size(const char *s, uint64_t *out);
/* Decimal integer within [min, max]. */
int parse_int_range(const char *s, long min, long max, long *out);
