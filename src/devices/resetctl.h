/* resetctl.h: guest-initiated reset paths: port 0xcf9 (reset control) and the 8042 pulse (0x64). */
#pragma once

struct vm;

int resetctl_create(struct vm *vm);
