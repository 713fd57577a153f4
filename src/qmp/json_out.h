/* json_out.h: JSON text in QEMU's QMP spelling ({"a": 1, "b": [2, 3]}), always pure ASCII. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct json_object;

/*
 * Serialize obj the way QEMU's QMP server does: ": " and ", " separators, no spaces inside
 * brackets, '/' not escaped, control and non-ASCII characters as \uXXXX (invalid UTF-8 becomes
 * U+FFFD), strings taken with their full length (json-c allows embedded NULs). pretty: one
 * member per line, 4-space indent. Non-finite doubles, which JSON cannot carry, print as null.
 * On success *out is a malloc'd NUL-terminated string of *len bytes (len may be NULL).
 * Returns 0 or -ENOMEM.
 */
int qmp_json_format(struct json_object *obj, bool pretty, char **out, size_t *len);
