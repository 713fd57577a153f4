/* accel.c: choosing the CPU engine: --accel parsing, /dev/kvm detection, auto selection. */
#include "accel/accel.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

int accel_parse(const char *s, struct accel_config *cfg, char *msg, unsigned msglen)
{
    char buf[64];
    char *opt, *save = NULL;

    memset(cfg, 0, sizeof(*cfg));
    if (strlen(s) >= sizeof(buf)) {
        snprintf(msg, msglen, "--accel: value too long");
        return -EINVAL;
    }
    snprintf(buf, sizeof(buf), "%s", s);
    opt = strtok_r(buf, ",", &save);
    if (!opt || !strcmp(opt, "auto"))
        cfg->kind = ACCEL_AUTO;
    else if (!strcmp(opt, "kvm"))
        cfg->kind = ACCEL_KVM;
    else if (!strcmp(opt, "emu") || !strcmp(opt, "tcg"))
        cfg->kind = ACCEL_EMU;
    else {
        snprintf(msg, msglen, "--accel: unknown engine '%s' (kvm, emu or auto)", opt);
        return -EINVAL;
    }
    while ((opt = strtok_r(NULL, ",", &save))) {
        if (!strcmp(opt, "icount=on") || !strcmp(opt, "icount")) {
            cfg->icount = true;
        } else if (!strcmp(opt, "icount=off")) {
            cfg->icount = false;
        } else {
            snprintf(msg, msglen, "--accel: unknown option '%s' (icount=on|off)", opt);
            return -EINVAL;
        }
    }
    if (cfg->icount && cfg->kind == ACCEL_KVM) {
        snprintf(msg, msglen, "--accel: icount needs the emulator (emu), not kvm");
        return -EINVAL;
    }
    return 0;
}

bool accel_kvm_present(void)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

    if (fd < 0)
        return false;
    close(fd);
    return true;
}

const struct accel_ops *accel_select(const struct accel_config *cfg)
{
    static bool said;

    switch (cfg->kind) {
    case ACCEL_KVM:
        return &accel_kvm_ops;
    case ACCEL_EMU:
        return &accel_emu_ops;
    case ACCEL_AUTO:
        break;
    }
    if (!cfg->icount && accel_kvm_present())
        return &accel_kvm_ops;
    if (!said) {
        said = true;
        fprintf(stderr,
                "tandem: /dev/kvm is not available (%s); using the emulator (--accel emu)\n",
                cfg->icount ? "icount asked for" : strerror(errno));
    }
    return &accel_emu_ops;
}
