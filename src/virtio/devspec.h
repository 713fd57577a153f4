/* devspec.h: parsing of device option strings of the form "key=value,key=value". */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/*
 * Parse spec against the allowed keys: values[i] receives a copy of the value of keys[i], or NULL
 * if absent. Empty specs, unknown or repeated keys, a missing '=' and empty values fail with
 * -EINVAL and a message naming opt ("--disk") in err. Values cannot contain ','.
 * On success the caller frees the values with devspec_free.
 */
int devspec_parse(const char *opt, const char *spec, const char *const keys[], unsigned nkeys,
                  char *values[], char *err, size_t errlen);
void devspec_free(char *values[], unsigned nkeys);

/* "on"/"off" (also yes/no, true/false, 1/0). 0 or -EINVAL. */
int devspec_bool(const char *value, bool *out);
