/* x86.h: x86 boot state: the Multiboot entry registers, set through the engine's state record. */
#pragma once

#include <stdint.h>

struct vcpu;

/* Multiboot v1 entry state: 32-bit flat protected mode, paging off, EAX magic, EBX info. */
int x86_setup_multiboot_regs(struct vcpu *v, uint32_t entry, uint32_t mbi_addr);
