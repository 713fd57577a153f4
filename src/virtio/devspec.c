/* devspec.c: "key=value,..." device option strings (--disk, --net). */
#include "virtio/devspec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void devspec_free(char *values[], unsigned nkeys)
{
    for (unsigned i = 0; i < nkeys; i++) {
        free(values[i]);
        values[i] = NULL;
    }
}

int devspec_parse(const char *opt, const char *spec, const char *const keys[], unsigned nkeys,
                  char *values[], char *err, size_t errlen)
{
    const char *p = spec;
    int r = -EINVAL;

    for (unsigned i = 0; i < nkeys; i++)
        values[i] = NULL;
    if (!*spec) {
        snprintf(err, errlen, "%s: empty value", opt);
        return -EINVAL;
    }
    while (*p) {
        const char *eq = strchr(p, '='), *end = strchr(p, ',');
        size_t klen;
        unsigned i;

        if (!end)
            end = p + strlen(p);
        if (!eq || eq > end) {
            snprintf(err, errlen, "%s: expected key=value, got '%.*s'", opt, (int)(end - p), p);
            goto fail;
        }
        klen = (size_t)(eq - p);
        for (i = 0; i < nkeys; i++)
            if (strlen(keys[i]) == klen && !strncmp(keys[i], p, klen))
                break;
        if (i == nkeys) {
            snprintf(err, errlen, "%s: unknown key '%.*s'", opt, (int)klen, p);
            goto fail;
        }
        if (values[i]) {
            snprintf(err, errlen, "%s: '%s' given twice", opt, keys[i]);
            goto fail;
        }
        if (eq + 1 == end) {
            snprintf(err, errlen, "%s: '%s' needs a value", opt, keys[i]);
            goto fail;
        }
        values[i] = strndup(eq + 1, (size_t)(end - eq - 1));
        if (!values[i]) {
            snprintf(err, errlen, "%s: out of memory", opt);
            r = -ENOMEM;
            goto fail;
        }
        p = *end ? end + 1 : end;
        if (*end && !*p) {
            snprintf(err, errlen, "%s: trailing ','", opt);
            goto fail;
        }
    }
    return 0;

fail:
    devspec_free(values, nkeys);
    return r;
}

int devspec_bool(const char *value, bool *out)
{
    static const char *const yes[] = {"on", "yes", "true", "1"};
    static const char *const no[] = {"off", "no", "false", "0"};

    for (unsigned i = 0; i < 4; i++) {
        if (!strcmp(value, yes[i])) {
            *out = true;
            return 0;
        }
        if (!strcmp(value, no[i])) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}
