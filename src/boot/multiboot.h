/* multiboot.h: load a Multiboot (v1) kernel image into guest RAM and build its info structure.
 *
 * Accepts what QEMU's `-kernel` multiboot loader accepts: a header (magic 0x1BADB002, checksum)
 * in the first 8192 bytes, then either the a.out kludge (flags bit 16: addresses from the
 * header) or an ELF32 i386 file loaded by p_paddr. ELF64 x86-64 is accepted as an extension
 * (every segment and the entry must lie below 4 GiB). See docs/boot.md.
 *
 * The image is hostile input: every field is checked before one byte of guest RAM is written,
 * so a rejected image leaves guest RAM untouched.
 *
 * At entry the vCPU must be in 32-bit protected mode (flat CS/DS, paging off, IF=0) with
 * EAX = MB_BOOTLOADER_MAGIC, EBX = res->mbi_addr and EIP = res->entry; that setup is the
 * caller's (arch) job.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct guest_mem;

#define MB_HEADER_MAGIC     0x1BADB002u /* in the image */
#define MB_BOOTLOADER_MAGIC 0x2BADB002u /* in EAX at entry */
#define MB_SEARCH_LIMIT     8192u       /* the header lies wholly within these first bytes */

/* Low-memory area the loader owns for the info structure; loaded segments may not touch it.
 * Layout (QEMU puts its memory map at 0x9000 and the info struct at 0x9500 too). */
#define MB_INFO_AREA_START 0x9000u
#define MB_MMAP_ADDR       0x9000u /* memory map entries (24 bytes each) */
#define MB_INFO_ADDR       0x9500u /* struct multiboot_info (EBX) */
#define MB_LOADER_NAME     0x9580u /* "tandem" */
#define MB_CMDLINE_ADDR    0x9600u /* command line, NUL-terminated */
#define MB_INFO_AREA_END   0xB000u /* exclusive */
#define MB_CMDLINE_MAX     (MB_INFO_AREA_END - MB_CMDLINE_ADDR) /* bytes, including the NUL */

/* Not RAM in the map handed to the guest (EBDA, VGA, option ROMs, BIOS); segments may not
 * load here either. */
#define MB_LOW_RESERVED_START 0x9FC00u
#define MB_LOW_RESERVED_END   0x100000u

/* multiboot_info.flags bits set by this loader */
#define MBI_FLAG_MEM         (1u << 0)
#define MBI_FLAG_CMDLINE     (1u << 2)
#define MBI_FLAG_MMAP        (1u << 6)
#define MBI_FLAG_LOADER_NAME (1u << 9)

/* memory map entry types */
#define MB_MMAP_AVAILABLE 1u
#define MB_MMAP_RESERVED  2u

struct mb_load_result {
    uint32_t entry;      /* EIP at entry */
    uint32_t mbi_addr;   /* EBX at entry */
    uint64_t load_start; /* lowest loaded gpa */
    uint64_t load_end;   /* highest loaded gpa + 1, bss included */
};

/* Load image[0, size) into m and write the info structure with cmdline (NULL = "") verbatim.
 * Returns 0, -ENOEXEC (not a loadable multiboot image: the reason is in err), -E2BIG (cmdline
 * longer than MB_CMDLINE_MAX - 1), -EINVAL (bad arguments) or -ENOMEM. err (may be NULL)
 * always receives a NUL-terminated message on failure; res is written only on success. */
int multiboot_load(struct guest_mem *m, const void *image, size_t size, const char *cmdline,
                   struct mb_load_result *res, char *err, size_t errlen);

/* Read the kernel at path and load it. Like QEMU, the guest's command line is
 * "<path> <cmdline>" (so "<path> " when cmdline is NULL or empty). File errors return -errno
 * with the path in err. */
int multiboot_load_file(struct guest_mem *m, const char *path, const char *cmdline,
                        struct mb_load_result *res, char *err, size_t errlen);
