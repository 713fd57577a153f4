/* multiboot.c: Multiboot v1 loader: header scan, a.out kludge or ELF segments, info structure.
 *
 * Three phases, so a rejected image never leaves guest RAM half-written:
 *   1. parse:    find the header, turn the image into a list of segments (file bytes + bss)
 *                and an entry point; every offset and size is checked against the file;
 *   2. validate: every segment lies below 4 GiB, inside one RAM slot, clear of the info area
 *                and the reserved low area, and clear of every other segment;
 *   3. write:    copy the segments, zero their bss, write the memory map, info struct, boot
 *                loader name and command line into [MB_INFO_AREA_START, MB_INFO_AREA_END).
 * All guest RAM access goes through gmem_write()/gmem_ptr() with validated ranges.
 */
#include "boot/multiboot.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mem.h"

/* Header words and ELF structures are copied out with memcpy and used in host order. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "multiboot loader assumes an LE host");

/* Multiboot header flags. Bits 0-15 are "required": a loader must refuse an image that sets
 * one it does not understand. We have no modules (bit 0 is trivially met), always pass memory
 * info (bit 1) and, like QEMU, ignore the video mode request (bit 2). */
#define MB_HF_PAGE_ALIGN  (1u << 0)
#define MB_HF_MEMORY_INFO (1u << 1)
#define MB_HF_VIDEO_MODE  (1u << 2)
#define MB_HF_AOUT_KLUDGE (1u << 16)
#define MB_HF_REQUIRED    0xFFFFu
#define MB_HF_UNDERSTOOD  (MB_HF_PAGE_ALIGN | MB_HF_MEMORY_INFO | MB_HF_VIDEO_MODE)

#define MB_HEADER_MIN  12u /* magic, flags, checksum */
#define MB_HEADER_AOUT 32u /* ... header_addr, load_addr, load_end_addr, bss_end_addr, entry */

#define FOUR_GIB      0x100000000ULL
#define ONE_MIB       0x100000ULL
#define MB_FILE_LIMIT (1ULL << 30) /* largest kernel file multiboot_load_file reads */

/* Offsets in struct multiboot_info (spec section 3.3). */
enum {
    MBI_FLAGS = 0,
    MBI_MEM_LOWER = 4,
    MBI_MEM_UPPER = 8,
    MBI_CMDLINE = 16,
    MBI_MMAP_LENGTH = 44,
    MBI_MMAP_ADDR = 48,
    MBI_LOADER_NAME = 64,
    MBI_SIZE = 88,
};
/* Memory map entry: u32 size (= 20, excludes itself), u64 base, u64 length, u32 type. */
#define MB_MMAP_ENTRY_SIZE 24u
#define MB_MMAP_MAX        (4 + MEM_MAX_SLOTS)

_Static_assert(MB_MMAP_ADDR + MB_MMAP_MAX * MB_MMAP_ENTRY_SIZE <= MB_INFO_ADDR, "mmap fits");
_Static_assert(MB_INFO_ADDR + MBI_SIZE <= MB_LOADER_NAME, "info struct fits");
_Static_assert(MB_LOADER_NAME + sizeof("tandem") <= MB_CMDLINE_ADDR, "loader name fits");
_Static_assert(MB_INFO_AREA_END <= MB_LOW_RESERVED_START, "info area is in usable low RAM");

/* Where a message goes, and the file name to put in it. */
struct mb_ctx {
    char *err;
    size_t errlen;
    const char *name; /* NULL for an in-memory image */
};

/* One range of guest RAM to fill: file bytes [offset, offset + filesz), then zeroes to memsz. */
struct mb_seg {
    uint64_t paddr, memsz, offset, filesz;
    unsigned index; /* program header index */
    char what[24];  /* "ELF segment 3" or "a.out image", for messages */
};

struct mb_header {
    size_t offset; /* in the file */
    uint32_t flags;
    uint32_t header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr; /* a.out kludge */
};

struct mb_mmap {
    uint64_t addr, len;
    uint32_t type;
};

__attribute__((format(printf, 3, 4))) static int fail(const struct mb_ctx *c, int rc,
                                                      const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!c->err || c->errlen == 0)
        return rc;
    if (c->name)
        n = snprintf(c->err, c->errlen, "multiboot: %s: ", c->name);
    else
        n = snprintf(c->err, c->errlen, "multiboot: ");
    if (n < 0 || (size_t)n >= c->errlen)
        return rc;
    va_start(ap, fmt);
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return rc;
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, sizeof(v));
}

static void put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, sizeof(v));
}

/* The first header (4-byte aligned, checksum right) wholly inside the first 8192 bytes.
 * A magic with a wrong checksum is skipped, as QEMU does, but remembered for the message. */
static int find_header(const struct mb_ctx *c, const uint8_t *img, size_t size, struct mb_header *h)
{
    size_t limit = size < MB_SEARCH_LIMIT ? size : MB_SEARCH_LIMIT;
    size_t bad_sum_at = SIZE_MAX;

    for (size_t i = 0; limit >= MB_HEADER_MIN && i <= limit - MB_HEADER_MIN; i += 4) {
        uint32_t magic = get32(img + i), flags = get32(img + i + 4), sum = get32(img + i + 8);
        uint32_t bad;

        if (magic != MB_HEADER_MAGIC)
            continue;
        if ((uint32_t)(magic + flags + sum) != 0) {
            if (bad_sum_at == SIZE_MAX)
                bad_sum_at = i;
            continue;
        }
        memset(h, 0, sizeof(*h));
        h->offset = i;
        h->flags = flags;
        bad = flags & MB_HF_REQUIRED & ~MB_HF_UNDERSTOOD;
        if (bad)
            return fail(c, -ENOEXEC,
                        "header flags 0x%08" PRIx32 " require features this loader lacks "
                        "(bits 0x%04" PRIx32 ")",
                        flags, bad);
        if (flags & MB_HF_AOUT_KLUDGE) {
            if (limit - i < MB_HEADER_AOUT)
                return fail(c, -ENOEXEC,
                            "header at offset 0x%zx sets the a.out kludge (flags bit 16) but "
                            "its address fields are cut off by the %s",
                            i, size < MB_SEARCH_LIMIT ? "end of the file" : "8192-byte limit");
            h->header_addr = get32(img + i + 12);
            h->load_addr = get32(img + i + 16);
            h->load_end_addr = get32(img + i + 20);
            h->bss_end_addr = get32(img + i + 24);
            h->entry_addr = get32(img + i + 28);
        }
        return 0;
    }
    if (bad_sum_at != SIZE_MAX)
        return fail(c, -ENOEXEC, "header magic at offset 0x%zx has a bad checksum", bad_sum_at);
    return fail(c, -ENOEXEC, "no header in the first %u bytes", MB_SEARCH_LIMIT);
}

/* a.out kludge: one segment from the header's addresses (checked as QEMU does, plus file end). */
static int parse_aout(const struct mb_ctx *c, size_t size, const struct mb_header *h,
                      struct mb_seg *seg, uint64_t *entry)
{
    uint64_t delta, text_off, load_size, mem_size;

    if (h->header_addr < h->load_addr)
        return fail(c, -ENOEXEC,
                    "a.out kludge: header_addr 0x%" PRIx32 " is below load_addr 0x%" PRIx32,
                    h->header_addr, h->load_addr);
    delta = h->header_addr - h->load_addr;
    if (delta > h->offset)
        return fail(c, -ENOEXEC,
                    "a.out kludge: header_addr - load_addr = 0x%" PRIx64
                    " but the header is at file offset 0x%zx (load would start before the file)",
                    delta, h->offset);
    text_off = h->offset - delta;
    if (h->load_end_addr) {
        if (h->load_end_addr < h->load_addr)
            return fail(c, -ENOEXEC,
                        "a.out kludge: load_end_addr 0x%" PRIx32 " is below load_addr 0x%" PRIx32,
                        h->load_end_addr, h->load_addr);
        load_size = (uint64_t)h->load_end_addr - h->load_addr;
        if (load_size > size - text_off)
            return fail(c, -ENOEXEC,
                        "a.out kludge: load_end_addr 0x%" PRIx32 " needs 0x%" PRIx64
                        " bytes from file offset 0x%" PRIx64 ", the file has only 0x%zx",
                        h->load_end_addr, load_size, text_off, size);
    } else {
        load_size = size - text_off; /* load_end_addr 0: to the end of the file */
    }
    if (h->bss_end_addr) {
        if ((uint64_t)h->bss_end_addr < h->load_addr + load_size)
            return fail(c, -ENOEXEC,
                        "a.out kludge: bss_end_addr 0x%" PRIx32
                        " is below the end of the loaded text 0x%" PRIx64,
                        h->bss_end_addr, h->load_addr + load_size);
        mem_size = (uint64_t)h->bss_end_addr - h->load_addr;
    } else {
        mem_size = load_size;
    }
    if (mem_size == 0)
        return fail(c, -ENOEXEC, "a.out kludge: nothing to load (empty text and no bss)");
    *seg = (struct mb_seg){
        .paddr = h->load_addr, .memsz = mem_size, .offset = text_off, .filesz = load_size};
    snprintf(seg->what, sizeof(seg->what), "a.out image");
    /* QEMU does not check the entry point; neither do we (it is 32-bit by construction). */
    *entry = h->entry_addr;
    return 0;
}

/* One program header, widened to 64 bits. */
struct mb_phdr {
    uint32_t type, flags;
    uint64_t offset, vaddr, paddr, filesz, memsz;
};

static void read_phdr(const uint8_t *p, bool is64, struct mb_phdr *ph)
{
    if (is64) {
        Elf64_Phdr e;
        memcpy(&e, p, sizeof(e));
        *ph = (struct mb_phdr){e.p_type,  e.p_flags,  e.p_offset, e.p_vaddr,
                               e.p_paddr, e.p_filesz, e.p_memsz};
    } else {
        Elf32_Phdr e;
        memcpy(&e, p, sizeof(e));
        *ph = (struct mb_phdr){e.p_type,  e.p_flags,  e.p_offset, e.p_vaddr,
                               e.p_paddr, e.p_filesz, e.p_memsz};
    }
}

/* ELF: PT_LOAD segments by physical address. *segs is allocated (free it) even on failure. */
static int parse_elf(const struct mb_ctx *c, const uint8_t *img, size_t size, struct mb_seg **segs,
                     unsigned *nseg, uint64_t *entry)
{
    bool is64;
    uint64_t phoff, e_entry, table_len, table_end;
    unsigned phnum, phentsize, machine;
    size_t ehdr_size, phdr_size;

    *segs = NULL;
    *nseg = 0;
    if (size < EI_NIDENT || memcmp(img, ELFMAG, SELFMAG) != 0)
        return fail(c, -ENOEXEC,
                    "header flags lack the a.out kludge (bit 16) and the image is "
                    "not ELF");
    if (img[EI_CLASS] != ELFCLASS32 && img[EI_CLASS] != ELFCLASS64)
        return fail(c, -ENOEXEC, "unsupported ELF class %u", img[EI_CLASS]);
    if (img[EI_DATA] != ELFDATA2LSB)
        return fail(c, -ENOEXEC, "ELF image is not little-endian");
    is64 = img[EI_CLASS] == ELFCLASS64;
    ehdr_size = is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
    phdr_size = is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
    if (size < ehdr_size)
        return fail(c, -ENOEXEC, "ELF header truncated (file has %zu of %zu bytes)", size,
                    ehdr_size);
    if (is64) {
        Elf64_Ehdr e;
        memcpy(&e, img, sizeof(e));
        machine = e.e_machine;
        e_entry = e.e_entry;
        phoff = e.e_phoff;
        phnum = e.e_phnum;
        phentsize = e.e_phentsize;
        /* Extension: QEMU refuses x86-64 images outright. */
        if (machine != EM_X86_64)
            return fail(c, -ENOEXEC, "ELF64 machine %u is not x86-64 (%u)", machine, EM_X86_64);
    } else {
        Elf32_Ehdr e;
        memcpy(&e, img, sizeof(e));
        machine = e.e_machine;
        e_entry = e.e_entry;
        phoff = e.e_phoff;
        phnum = e.e_phnum;
        phentsize = e.e_phentsize;
        if (machine != EM_386)
            return fail(c, -ENOEXEC, "ELF32 machine %u is not i386 (%u)", machine, EM_386);
    }
    if (phnum == 0)
        return fail(c, -ENOEXEC, "ELF has no program headers");
    if (phnum == PN_XNUM)
        return fail(c, -ENOEXEC, "ELF uses extended program header numbering (PN_XNUM)");
    if (phentsize < phdr_size)
        return fail(c, -ENOEXEC, "ELF e_phentsize %u is smaller than a program header (%zu)",
                    phentsize, phdr_size);
    table_len = (uint64_t)phnum * phentsize; /* < 2^32: no overflow */
    if (__builtin_add_overflow(phoff, table_len, &table_end) || table_end > size)
        return fail(c, -ENOEXEC,
                    "ELF program header table (%u entries of %u bytes at offset 0x%" PRIx64
                    ") extends past the end of the file (%zu bytes)",
                    phnum, phentsize, phoff, size);

    *segs = calloc(phnum, sizeof(**segs));
    if (!*segs)
        return fail(c, -ENOMEM, "out of memory for %u program headers", phnum);
    *entry = e_entry;
    for (unsigned i = 0; i < phnum; i++) {
        struct mb_phdr ph;
        struct mb_seg *s;

        read_phdr(img + phoff + (uint64_t)i * phentsize, is64, &ph);
        if (ph.type != PT_LOAD)
            continue;
        if (ph.filesz > ph.memsz)
            return fail(c, -ENOEXEC,
                        "ELF segment %u: p_filesz 0x%" PRIx64 " exceeds p_memsz 0x%" PRIx64, i,
                        ph.filesz, ph.memsz);
        /* As QEMU: e_entry is virtual; if an executable segment is linked at a different
         * physical address and holds the entry, translate it. */
        if (ph.vaddr != ph.paddr && (ph.flags & PF_X) && e_entry >= ph.vaddr &&
            e_entry - ph.vaddr < ph.filesz)
            *entry = e_entry - ph.vaddr + ph.paddr;
        if (ph.memsz == 0)
            continue; /* empty segments are ignored, as QEMU does */
        if (ph.filesz && (ph.offset > size || ph.filesz > size - ph.offset))
            return fail(c, -ENOEXEC,
                        "ELF segment %u: file bytes [0x%" PRIx64 ", +0x%" PRIx64
                        ") lie outside the file (%zu bytes)",
                        i, ph.offset, ph.filesz, size);
        s = &(*segs)[(*nseg)++];
        *s = (struct mb_seg){.paddr = ph.paddr,
                             .memsz = ph.memsz,
                             .offset = ph.offset,
                             .filesz = ph.filesz,
                             .index = i};
        snprintf(s->what, sizeof(s->what), "ELF segment %u", i);
    }
    if (*nseg == 0)
        return fail(c, -ENOEXEC, "ELF has no non-empty PT_LOAD segment");
    return 0;
}

static bool overlaps(uint64_t a, uint64_t a_end, uint64_t b, uint64_t b_end)
{
    return a < b_end && b < a_end;
}

static int cmp_seg(const void *pa, const void *pb)
{
    const struct mb_seg *a = pa, *b = pb;

    if (a->paddr != b->paddr)
        return a->paddr < b->paddr ? -1 : 1;
    return 0;
}

/* Every segment below 4 GiB, in one RAM slot, clear of the loader's areas and of each other.
 * Sorts segs by address. */
static int check_segments(const struct mb_ctx *c, const struct guest_mem *m, struct mb_seg *segs,
                          unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        const struct mb_seg *s = &segs[i];
        uint64_t end;

        if (__builtin_add_overflow(s->paddr, s->memsz, &end) || end > FOUR_GIB)
            return fail(c, -ENOEXEC,
                        "%s at 0x%" PRIx64 " with size 0x%" PRIx64
                        " ends beyond 4 GiB (multiboot enters in 32-bit mode)",
                        s->what, s->paddr, s->memsz);
        if (!gmem_ptr(m, s->paddr, s->memsz))
            return fail(c, -ENOEXEC,
                        "%s [0x%" PRIx64 ", 0x%" PRIx64 ") is beyond guest RAM (%" PRIu64 " MiB)",
                        s->what, s->paddr, end, m->size >> 20);
        if (overlaps(s->paddr, end, MB_INFO_AREA_START, MB_INFO_AREA_END))
            return fail(c, -ENOEXEC,
                        "%s [0x%" PRIx64 ", 0x%" PRIx64
                        ") overlaps the multiboot info area [0x%x, 0x%x)",
                        s->what, s->paddr, end, MB_INFO_AREA_START, MB_INFO_AREA_END);
        if (overlaps(s->paddr, end, MB_LOW_RESERVED_START, MB_LOW_RESERVED_END))
            return fail(c, -ENOEXEC,
                        "%s [0x%" PRIx64 ", 0x%" PRIx64 ") overlaps the reserved area [0x%x, 0x%x)",
                        s->what, s->paddr, end, MB_LOW_RESERVED_START, MB_LOW_RESERVED_END);
    }
    /* Stable enough: equal addresses overlap anyway (memsz > 0), and both get named. */
    qsort(segs, n, sizeof(*segs), cmp_seg);
    for (unsigned i = 1; i < n; i++) {
        const struct mb_seg *a = &segs[i - 1], *b = &segs[i];
        if (b->paddr < a->paddr + a->memsz) {
            const struct mb_seg *later = a->index > b->index ? a : b;
            const struct mb_seg *earlier = later == a ? b : a;
            return fail(c, -ENOEXEC,
                        "%s [0x%" PRIx64 ", 0x%" PRIx64 ") overlaps %s [0x%" PRIx64 ", 0x%" PRIx64
                        ")",
                        later->what, later->paddr, later->paddr + later->memsz, earlier->what,
                        earlier->paddr, earlier->paddr + earlier->memsz);
        }
    }
    return 0;
}

/* The memory map handed to the guest, from the RAM slots. *mem_upper: KiB from 1 MiB to the
 * end of the low slot (the first hole). The low slot is known to cover 1 MiB. */
static unsigned build_mmap(const struct guest_mem *m, struct mb_mmap *e, uint32_t *mem_upper)
{
    unsigned n = 0;

    *mem_upper = 0;
    for (unsigned i = 0; i < m->nslots && i < MEM_MAX_SLOTS; i++) {
        const struct mem_slot *s = &m->slots[i];

        if (s->gpa != 0) {
            e[n++] = (struct mb_mmap){s->gpa, s->size, MB_MMAP_AVAILABLE};
            continue;
        }
        e[n++] = (struct mb_mmap){0, MB_LOW_RESERVED_START, MB_MMAP_AVAILABLE};
        e[n++] = (struct mb_mmap){MB_LOW_RESERVED_START, 0xA0000 - MB_LOW_RESERVED_START,
                                  MB_MMAP_RESERVED};
        e[n++] = (struct mb_mmap){0xF0000, MB_LOW_RESERVED_END - 0xF0000, MB_MMAP_RESERVED};
        if (s->size > ONE_MIB) {
            e[n++] = (struct mb_mmap){ONE_MIB, s->size - ONE_MIB, MB_MMAP_AVAILABLE};
            *mem_upper = (uint32_t)((s->size - ONE_MIB) >> 10);
        }
    }
    return n;
}

static bool low_ram_ok(const struct guest_mem *m)
{
    for (unsigned i = 0; i < m->nslots && i < MEM_MAX_SLOTS; i++)
        if (m->slots[i].gpa == 0)
            return m->slots[i].size >= ONE_MIB;
    return false;
}

/* Phase 3: nothing here can fail on a validated image, but errors are still propagated. */
static int write_image(struct guest_mem *m, const uint8_t *img, const struct mb_seg *segs,
                       unsigned n, const char *cmdline, size_t cmdlen)
{
    static const char loader_name[] = "tandem";
    struct mb_mmap map[MB_MMAP_MAX];
    uint8_t mmap_buf[MB_MMAP_MAX * MB_MMAP_ENTRY_SIZE];
    uint8_t mbi[MBI_SIZE] = {0};
    uint32_t mem_upper;
    unsigned nmap;
    uint8_t *p;
    int rc;

    for (unsigned i = 0; i < n; i++) {
        const struct mb_seg *s = &segs[i];
        if (s->filesz) {
            rc = gmem_write(m, s->paddr, img + s->offset, s->filesz);
            if (rc)
                return rc;
        }
        if (s->memsz > s->filesz) {
            p = gmem_ptr(m, s->paddr + s->filesz, s->memsz - s->filesz);
            if (!p)
                return -EFAULT;
            memset(p, 0, s->memsz - s->filesz);
            gmem_mark_dirty(m, s->paddr + s->filesz, s->memsz - s->filesz);
        }
    }

    /* Clear the whole area first so nothing from an earlier boot shows through. */
    p = gmem_ptr(m, MB_INFO_AREA_START, MB_INFO_AREA_END - MB_INFO_AREA_START);
    if (!p)
        return -EFAULT;
    memset(p, 0, MB_INFO_AREA_END - MB_INFO_AREA_START);
    gmem_mark_dirty(m, MB_INFO_AREA_START, MB_INFO_AREA_END - MB_INFO_AREA_START);

    nmap = build_mmap(m, map, &mem_upper);
    for (unsigned i = 0; i < nmap; i++) {
        uint8_t *e = mmap_buf + i * MB_MMAP_ENTRY_SIZE;
        put32(e, MB_MMAP_ENTRY_SIZE - 4);
        put64(e + 4, map[i].addr);
        put64(e + 12, map[i].len);
        put32(e + 20, map[i].type);
    }
    rc = gmem_write(m, MB_MMAP_ADDR, mmap_buf, nmap * MB_MMAP_ENTRY_SIZE);
    if (rc)
        return rc;
    rc = gmem_write(m, MB_LOADER_NAME, loader_name, sizeof(loader_name));
    if (rc)
        return rc;
    rc = gmem_write(m, MB_CMDLINE_ADDR, cmdline, cmdlen + 1);
    if (rc)
        return rc;

    put32(mbi + MBI_FLAGS, MBI_FLAG_MEM | MBI_FLAG_CMDLINE | MBI_FLAG_MMAP | MBI_FLAG_LOADER_NAME);
    put32(mbi + MBI_MEM_LOWER, 640);
    put32(mbi + MBI_MEM_UPPER, mem_upper);
    put32(mbi + MBI_CMDLINE, MB_CMDLINE_ADDR);
    put32(mbi + MBI_MMAP_LENGTH, nmap * MB_MMAP_ENTRY_SIZE);
    put32(mbi + MBI_MMAP_ADDR, MB_MMAP_ADDR);
    put32(mbi + MBI_LOADER_NAME, MB_LOADER_NAME);
    return gmem_write(m, MB_INFO_ADDR, mbi, sizeof(mbi));
}

static int load(const struct mb_ctx *c, struct guest_mem *m, const void *image, size_t size,
                const char *cmdline, struct mb_load_result *res)
{
    const uint8_t *img = image;
    struct mb_header h;
    struct mb_seg aout, *segs = NULL;
    unsigned nseg = 0;
    uint64_t entry = 0;
    size_t cmdlen;
    int rc;

    if (!m || !m->base || !res || (!image && size))
        return fail(c, -EINVAL, "bad arguments");
    if (!cmdline)
        cmdline = "";
    cmdlen = strnlen(cmdline, MB_CMDLINE_MAX);
    if (cmdlen >= MB_CMDLINE_MAX)
        return fail(c, -E2BIG, "command line is longer than %u bytes", MB_CMDLINE_MAX - 1);
    if (!low_ram_ok(m))
        return fail(c, -EINVAL, "guest RAM does not cover the first 1 MiB");

    rc = find_header(c, img, size, &h);
    if (rc)
        return rc;
    if (h.flags & MB_HF_AOUT_KLUDGE) {
        rc = parse_aout(c, size, &h, &aout, &entry);
        if (rc)
            return rc;
        rc = check_segments(c, m, &aout, 1);
        if (rc)
            return rc;
        rc = write_image(m, img, &aout, 1, cmdline, cmdlen);
        if (rc)
            return fail(c, rc, "writing guest RAM failed: %s", strerror(-rc));
        res->load_start = aout.paddr;
        res->load_end = aout.paddr + aout.memsz;
    } else {
        rc = parse_elf(c, img, size, &segs, &nseg, &entry);
        if (rc)
            goto out;
        rc = check_segments(c, m, segs, nseg);
        if (rc)
            goto out;
        if (entry >= FOUR_GIB) {
            rc = fail(c, -ENOEXEC,
                      "ELF entry point 0x%" PRIx64
                      " is above 4 GiB (multiboot enters in 32-bit mode)",
                      entry);
            goto out;
        }
        rc = write_image(m, img, segs, nseg, cmdline, cmdlen);
        if (rc) {
            rc = fail(c, rc, "writing guest RAM failed: %s", strerror(-rc));
            goto out;
        }
        /* sorted by check_segments, and disjoint */
        res->load_start = segs[0].paddr;
        res->load_end = segs[nseg - 1].paddr + segs[nseg - 1].memsz;
    }
    res->entry = (uint32_t)entry;
    res->mbi_addr = MB_INFO_ADDR;
out:
    free(segs);
    return rc;
}

int multiboot_load(struct guest_mem *m, const void *image, size_t size, const char *cmdline,
                   struct mb_load_result *res, char *err, size_t errlen)
{
    const struct mb_ctx c = {err, errlen, NULL};

    if (err && errlen)
        err[0] = '\0';
    return load(&c, m, image, size, cmdline, res);
}

/* Whole file into a malloc'd buffer; a copy, so the file changing under us cannot matter. */
static int read_file(const struct mb_ctx *c, const char *path, uint8_t **buf, size_t *size)
{
    struct stat st;
    size_t done = 0;
    int fd, rc;

    *buf = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        return fail(c, rc, "cannot open kernel: %s", strerror(-rc));
    }
    if (fstat(fd, &st) < 0) {
        rc = fail(c, -errno, "cannot stat kernel: %s", strerror(errno));
        goto out_close;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = fail(c, -EINVAL, "kernel is not a regular file");
        goto out_close;
    }
    if ((uint64_t)st.st_size > MB_FILE_LIMIT) {
        rc = fail(c, -EFBIG, "kernel is larger than %llu MiB", MB_FILE_LIMIT >> 20);
        goto out_close;
    }
    *size = (size_t)st.st_size;
    *buf = malloc(*size ? *size : 1);
    if (!*buf) {
        rc = fail(c, -ENOMEM, "out of memory for a %zu-byte kernel", *size);
        goto out_close;
    }
    while (done < *size) {
        ssize_t r = pread(fd, *buf + done, *size - done, (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = fail(c, -errno, "cannot read kernel: %s", strerror(errno));
            goto out_free;
        }
        if (r == 0) {
            rc = fail(c, -EIO, "kernel shrank while being read (%zu of %zu bytes)", done, *size);
            goto out_free;
        }
        done += (size_t)r;
    }
    close(fd);
    return 0;

out_free:
    free(*buf);
    *buf = NULL;
out_close:
    close(fd);
    return rc;
}

int multiboot_load_file(struct guest_mem *m, const char *path, const char *cmdline,
                        struct mb_load_result *res, char *err, size_t errlen)
{
    const struct mb_ctx c = {err, errlen, path};
    uint8_t *buf = NULL;
    char *full = NULL;
    size_t size = 0, len;
    int rc;

    if (err && errlen)
        err[0] = '\0';
    if (!path)
        return fail(&c, -EINVAL, "no kernel path");
    if (!cmdline)
        cmdline = "";
    /* QEMU hands the guest "<kernel path> <append>", even when append is empty. */
    len = strlen(path) + 1 + strlen(cmdline) + 1;
    full = malloc(len);
    if (!full)
        return fail(&c, -ENOMEM, "out of memory for the command line");
    snprintf(full, len, "%s %s", path, cmdline);

    rc = read_file(&c, path, &buf, &size);
    if (rc)
        goto out;
    rc = load(&c, m, buf, size, full, res);
out:
    free(buf);
    free(full);
    return rc;
}
