/* options.c: parsers for command-line values, strict about junk and overflow. */
#include "cli/options.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>

int parse_mem_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    uint64_t mul = 1ULL << 20;

    if (!s || !isdigit((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        return -EINVAL;
    switch (toupper((unsigned char)*end)) {
    case '\0':
        break;
    case 'B':
        mul = 1;
        end++;
        break;
    case 'K':
        mul = 1ULL << 10;
        end++;
        break;
    case 'M':
        mul = 1ULL << 20;
        end++;
        break;
    case 'G':
        mul = 1ULL << 30;
        end++;
        break;
    case 'T':
        mul = 1ULL << 40;
        end++;
        break;
    default:
        return -EINVAL;
    }
    if (*end == 'i' || *end == 'I') /* accept MiB / GiB spellings */
        end++;
    if ((*end == 'B' || *end == 'b') && mul != 1)
        end++;
    if (*end)
        return -EINVAL;
    if (__builtin_mul_overflow((uint64_t)v, mul, out))
        return -ERANGE;
    return 0;
}

int parse_int_range(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    if (!s || !*s)
        return -EINVAL;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end)
        return -EINVAL;
    if (v < min || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}
