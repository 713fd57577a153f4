/* test_multiboot.c: Multiboot v1 loader: valid ELF/a.out images, info structure, hostile images. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "boot/multiboot.h"
#include "core/mem.h"

#define RAM_SIZE  (32ULL << 20)
#define IMG_CAP   (64u << 10)
#define FILL      0xAA /* guest RAM before each test, to see bss zeroing and untouched RAM */
#define KERNEL_PA 0x100000u

struct fx {
    struct guest_mem m;
    uint8_t img[IMG_CAP];
    size_t size;
    char err[256];
    struct mb_load_result res;
};

/* --- image builders ---------------------------------------------------------------------- */

/* One program header to put in a test ELF; the file bytes are pat(offset). */
struct tseg {
    uint32_t type;
    uint64_t offset, vaddr, paddr, filesz, memsz;
    uint32_t flags;
};

static uint8_t pat(uint64_t off)
{
    return (uint8_t)(off * 31 + 7);
}

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* A multiboot header at off; checksum right unless bad_sum. */
static void put_mb_header(uint8_t *img, size_t off, uint32_t flags, bool bad_sum)
{
    put32(img + off, MB_HEADER_MAGIC);
    put32(img + off + 4, flags);
    put32(img + off + 8, (uint32_t)(0u - MB_HEADER_MAGIC - flags) + (bad_sum ? 1u : 0u));
}

/* ELF header at 0, multiboot header (flags) right after it, program headers after that, then
 * the segments' file bytes where their offsets say. Returns the file size. */
static size_t build_elf(uint8_t *img, bool is64, uint16_t machine, uint64_t entry,
                        const struct tseg *segs, unsigned n, uint32_t mb_flags)
{
    size_t ehsz = is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
    size_t phsz = is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
    size_t mb_off = ehsz, phoff = (ehsz + 12 + 7) & ~(size_t)7;
    size_t size = phoff + n * phsz;

    memset(img, 0, IMG_CAP);
    if (is64) {
        Elf64_Ehdr e = {.e_type = ET_EXEC,
                        .e_machine = machine,
                        .e_version = EV_CURRENT,
                        .e_entry = entry,
                        .e_phoff = phoff,
                        .e_ehsize = sizeof(e),
                        .e_phentsize = sizeof(Elf64_Phdr),
                        .e_phnum = (uint16_t)n};
        memcpy(e.e_ident, ELFMAG, SELFMAG);
        e.e_ident[EI_CLASS] = ELFCLASS64;
        e.e_ident[EI_DATA] = ELFDATA2LSB;
        e.e_ident[EI_VERSION] = EV_CURRENT;
        memcpy(img, &e, sizeof(e));
    } else {
        Elf32_Ehdr e = {.e_type = ET_EXEC,
                        .e_machine = machine,
                        .e_version = EV_CURRENT,
                        .e_entry = (uint32_t)entry,
                        .e_phoff = (uint32_t)phoff,
                        .e_ehsize = sizeof(e),
                        .e_phentsize = sizeof(Elf32_Phdr),
                        .e_phnum = (uint16_t)n};
        memcpy(e.e_ident, ELFMAG, SELFMAG);
        e.e_ident[EI_CLASS] = ELFCLASS32;
        e.e_ident[EI_DATA] = ELFDATA2LSB;
        e.e_ident[EI_VERSION] = EV_CURRENT;
        memcpy(img, &e, sizeof(e));
    }
    put_mb_header(img, mb_off, mb_flags, false);
    for (unsigned i = 0; i < n; i++) {
        const struct tseg *s = &segs[i];
        uint8_t *ph = img + phoff + i * phsz;
        if (is64) {
            Elf64_Phdr p = {s->type,  s->flags,  s->offset, s->vaddr,
                            s->paddr, s->filesz, s->memsz,  0x1000};
            memcpy(ph, &p, sizeof(p));
        } else {
            Elf32_Phdr p = {s->type,
                            (uint32_t)s->offset,
                            (uint32_t)s->vaddr,
                            (uint32_t)s->paddr,
                            (uint32_t)s->filesz,
                            (uint32_t)s->memsz,
                            s->flags,
                            0x1000};
            memcpy(ph, &p, sizeof(p));
        }
        /* file bytes, clipped to the buffer (hostile headers may point anywhere) */
        for (uint64_t k = 0; k < s->filesz && s->offset + k < IMG_CAP; k++)
            img[s->offset + k] = pat(s->offset + k);
        if (s->filesz && s->offset + s->filesz <= IMG_CAP && s->offset + s->filesz > size)
            size = s->offset + s->filesz;
    }
    return size;
}

/* Typical ELF32 kernel: text at 1 MiB (file 0x1000), data+bss at 1 MiB + 0x3000. */
static const struct tseg two_segs[2] = {
    {PT_LOAD, 0x1000, KERNEL_PA, KERNEL_PA, 0x1800, 0x1800, PF_R | PF_X},
    {PT_LOAD, 0x3000, KERNEL_PA + 0x3000, KERNEL_PA + 0x3000, 0x400, 0x2000, PF_R | PF_W},
};

static size_t build_elf32(struct fx *f, const struct tseg *segs, unsigned n, uint64_t entry)
{
    f->size = build_elf(f->img, false, EM_386, entry, segs, n, 0x3);
    return f->size;
}

/* a.out kludge: header at hoff in a file of size bytes loaded at load_addr from offset 0. */
static size_t build_aout(struct fx *f, size_t size, size_t hoff, uint32_t load_addr,
                         uint32_t load_end, uint32_t bss_end, uint32_t entry)
{
    memset(f->img, 0, IMG_CAP);
    for (size_t k = 0; k < size; k++)
        f->img[k] = pat(k);
    put_mb_header(f->img, hoff, 0x00010003, false);
    put32(f->img + hoff + 12, load_addr + (uint32_t)hoff); /* header_addr */
    put32(f->img + hoff + 16, load_addr);
    put32(f->img + hoff + 20, load_end);
    put32(f->img + hoff + 24, bss_end);
    put32(f->img + hoff + 28, entry);
    f->size = size;
    return size;
}

/* --- fixture and checks ------------------------------------------------------------------ */

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    if (!f || gmem_init(&f->m, RAM_SIZE) != 0) {
        free(f);
        return -1;
    }
    memset(f->m.base, FILL, RAM_SIZE);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    gmem_destroy(&f->m);
    free(f);
    return 0;
}

static int load(struct fx *f, const char *cmdline)
{
    memset(&f->res, 0, sizeof(f->res));
    return multiboot_load(&f->m, f->img, f->size, cmdline, &f->res, f->err, sizeof(f->err));
}

static const uint8_t *ram(struct fx *f, uint64_t gpa, uint64_t len)
{
    const uint8_t *p = gmem_ptr(&f->m, gpa, len);
    assert_non_null(p);
    return p;
}

/* Rejected with -ENOEXEC and a message containing what. */
static void expect_reject(struct fx *f, const char *what)
{
    int rc = load(f, "x");

    if (rc != -ENOEXEC || !strstr(f->err, what))
        print_error("rc %d, err \"%s\", wanted \"%s\"\n", rc, f->err, what);
    assert_int_equal(rc, -ENOEXEC);
    assert_non_null(strstr(f->err, what));
    assert_non_null(strstr(f->err, "multiboot: "));
}

static void check_file_bytes(struct fx *f, uint64_t gpa, uint64_t offset, uint64_t len)
{
    const uint8_t *p = ram(f, gpa, len);

    for (uint64_t k = 0; k < len; k++)
        if (p[k] != pat(offset + k))
            fail_msg("byte at gpa 0x%llx is 0x%02x, want 0x%02x", (unsigned long long)(gpa + k),
                     p[k], pat(offset + k));
}

static void check_fill(struct fx *f, uint64_t gpa, uint64_t len, uint8_t v)
{
    const uint8_t *p = ram(f, gpa, len);

    for (uint64_t k = 0; k < len; k++)
        if (p[k] != v)
            fail_msg("byte at gpa 0x%llx is 0x%02x, want 0x%02x", (unsigned long long)(gpa + k),
                     p[k], v);
}

static bool page_dirty(struct fx *f, uint64_t gpa)
{
    return bitmap_test(f->m.vmm_dirty, gmem_gpa_to_offset(&f->m, gpa) >> PAGE_SHIFT);
}

/* --- valid images ------------------------------------------------------------------------ */

static void test_elf32_one_segment(void **state)
{
    struct fx *f = *state;
    struct tseg s = {PT_LOAD, 0x1000, KERNEL_PA, KERNEL_PA, 0x200, 0x1000, PF_R | PF_X};

    build_elf32(f, &s, 1, KERNEL_PA + 0x10);
    assert_int_equal(load(f, "console=ttyS0"), 0);
    assert_string_equal(f->err, "");
    assert_int_equal(f->res.entry, KERNEL_PA + 0x10);
    assert_int_equal(f->res.mbi_addr, MB_INFO_ADDR);
    assert_int_equal(f->res.load_start, KERNEL_PA);
    assert_int_equal(f->res.load_end, KERNEL_PA + 0x1000);
    check_file_bytes(f, KERNEL_PA, 0x1000, 0x200);
    check_fill(f, KERNEL_PA + 0x200, 0x1000 - 0x200, 0); /* bss */
    check_fill(f, KERNEL_PA + 0x1000, 0x100, FILL);      /* nothing past memsz */
    check_fill(f, KERNEL_PA - 0x100, 0x100, FILL);
    assert_true(page_dirty(f, KERNEL_PA));
    assert_true(page_dirty(f, MB_INFO_ADDR));
    assert_false(page_dirty(f, 2 * KERNEL_PA));
}

static void test_elf32_two_segments(void **state)
{
    struct fx *f = *state;

    build_elf32(f, two_segs, 2, KERNEL_PA);
    assert_int_equal(load(f, NULL), 0);
    assert_int_equal(f->res.entry, KERNEL_PA);
    assert_int_equal(f->res.load_start, KERNEL_PA);
    assert_int_equal(f->res.load_end, KERNEL_PA + 0x5000);
    check_file_bytes(f, KERNEL_PA, 0x1000, 0x1800);
    check_fill(f, KERNEL_PA + 0x1800, 0x1800, FILL); /* the gap is not touched */
    check_file_bytes(f, KERNEL_PA + 0x3000, 0x3000, 0x400);
    check_fill(f, KERNEL_PA + 0x3400, 0x1c00, 0);
    /* NULL cmdline: flag still set, empty string */
    assert_string_equal((const char *)ram(f, MB_CMDLINE_ADDR, 1), "");
}

/* Segments listed out of address order, one below 1 MiB and one empty (ignored). */
static void test_elf32_unordered_low_and_empty(void **state)
{
    struct fx *f = *state;
    const struct tseg s[4] = {
        {PT_LOAD, 0x2000, 0x200000, 0x200000, 0x100, 0x100, PF_R},
        {PT_NOTE, 0x2000, 0, 0, 0x10, 0x10, PF_R},
        {PT_LOAD, 0x1000, 0x20000, 0x20000, 0x100, 0x200, PF_R | PF_X},
        {PT_LOAD, 0, 0x200000, 0x200000, 0, 0, PF_R}, /* memsz 0 at a taken address */
    };

    build_elf32(f, s, 4, 0x20000);
    assert_int_equal(load(f, ""), 0);
    assert_int_equal(f->res.load_start, 0x20000);
    assert_int_equal(f->res.load_end, 0x200100);
    check_file_bytes(f, 0x20000, 0x1000, 0x100);
    check_fill(f, 0x20100, 0x100, 0);
    check_file_bytes(f, 0x200000, 0x2000, 0x100);
}

static void test_info_struct(void **state)
{
    struct fx *f = *state;
    const uint8_t *mbi, *mm;
    static const struct {
        uint64_t addr, len;
        uint32_t type;
    } want[4] = {
        {0, 0x9fc00, 1},
        {0x9fc00, 0x400, 2},
        {0xf0000, 0x10000, 2},
        {0x100000, RAM_SIZE - 0x100000, 1},
    };

    build_elf32(f, two_segs, 2, KERNEL_PA);
    assert_int_equal(load(f, "console=ttyS0 quiet"), 0);
    mbi = ram(f, f->res.mbi_addr, 88);
    assert_int_equal(get32(mbi + 0), (1u << 0) | (1u << 2) | (1u << 6) | (1u << 9));
    assert_int_equal(get32(mbi + 4), 640);
    assert_int_equal(get32(mbi + 8), (RAM_SIZE >> 10) - 1024);
    assert_int_equal(get32(mbi + 12), 0); /* no boot device */
    assert_int_equal(get32(mbi + 20), 0); /* no modules */
    assert_string_equal((const char *)ram(f, get32(mbi + 16), 20), "console=ttyS0 quiet");
    assert_string_equal((const char *)ram(f, get32(mbi + 64), 7), "tandem");
    assert_int_equal(get32(mbi + 44), 4 * 24);
    mm = ram(f, get32(mbi + 48), 4 * 24);
    for (unsigned i = 0; i < 4; i++) {
        const uint8_t *e = mm + i * 24;
        assert_int_equal(get32(e), 20);
        assert_true(get64(e + 4) == want[i].addr);
        assert_true(get64(e + 12) == want[i].len);
        assert_int_equal(get32(e + 20), want[i].type);
    }
    /* everything the guest is told about lies inside the documented area */
    assert_true(get32(mbi + 48) >= MB_INFO_AREA_START);
    assert_true(get32(mbi + 16) + sizeof("console=ttyS0 quiet") <= MB_INFO_AREA_END);
    /* the rest of the area is cleared (no FILL left) */
    check_fill(f, MB_MMAP_ADDR + 4 * 24, MB_INFO_ADDR - (MB_MMAP_ADDR + 4 * 24), 0);
    check_fill(f, MB_CMDLINE_ADDR + 20, MB_INFO_AREA_END - MB_CMDLINE_ADDR - 20, 0);
}

/* RAM above the 3 GiB hole shows up as a fifth map entry; mem_upper stops at the hole. */
static void test_info_high_ram(void **state)
{
    struct guest_mem m;
    struct mb_load_result res;
    uint8_t *img = calloc(1, IMG_CAP);
    char err[256];
    const uint8_t *mbi, *e;
    uint64_t size = MEM_LOW_LIMIT + (16ULL << 20);
    size_t n;

    (void)state;
    assert_non_null(img);
    assert_int_equal(gmem_init(&m, size), 0);
    n = build_elf(img, false, EM_386, KERNEL_PA, two_segs, 2, 0x3);
    assert_int_equal(multiboot_load(&m, img, n, "hi", &res, err, sizeof(err)), 0);
    mbi = gmem_ptr(&m, res.mbi_addr, 88);
    assert_non_null(mbi);
    assert_int_equal(get32(mbi + 8), (MEM_LOW_LIMIT >> 10) - 1024);
    assert_int_equal(get32(mbi + 44), 5 * 24);
    e = gmem_ptr(&m, get32(mbi + 48) + 3 * 24, 48);
    assert_non_null(e);
    assert_true(get64(e + 4) == 0x100000 && get64(e + 12) == MEM_LOW_LIMIT - 0x100000);
    assert_true(get64(e + 24 + 4) == MEM_HIGH_START && get64(e + 24 + 12) == (16ULL << 20));
    assert_int_equal(get32(e + 24 + 20), 1);
    gmem_destroy(&m);
    free(img);
}

static void test_aout_kludge(void **state)
{
    struct fx *f = *state;

    /* load_end_addr 0: the whole file from the text start; bss past it */
    build_aout(f, 0x3000, 0x40, KERNEL_PA, 0, KERNEL_PA + 0x5000, KERNEL_PA + 0x80);
    assert_int_equal(load(f, "a"), 0);
    assert_int_equal(f->res.entry, KERNEL_PA + 0x80);
    assert_int_equal(f->res.load_start, KERNEL_PA);
    assert_int_equal(f->res.load_end, KERNEL_PA + 0x5000);
    check_file_bytes(f, KERNEL_PA + 0x40 + 32, 0x40 + 32, 0x3000 - 0x60);
    assert_int_equal(get32(ram(f, KERNEL_PA + 0x40, 4)), MB_HEADER_MAGIC);
    check_fill(f, KERNEL_PA + 0x3000, 0x2000, 0);
    check_fill(f, KERNEL_PA + 0x5000, 0x10, FILL);
}

static void test_aout_text_offset(void **state)
{
    struct fx *f = *state;

    /* The text starts 0x100 bytes into the file (header_addr - load_addr = 0x100 < offset),
     * and load_end_addr stops before the end of the file; no bss. */
    build_aout(f, 0x2000, 0x200, 0x300000, 0x300000 + 0x800, 0, 0x300000);
    put32(f->img + 0x200 + 12, 0x300000 + 0x100); /* header_addr */
    assert_int_equal(load(f, "a"), 0);
    assert_int_equal(f->res.load_start, 0x300000);
    assert_int_equal(f->res.load_end, 0x300800);
    check_file_bytes(f, 0x300000, 0x100, 0x100); /* text_off = 0x200 - 0x100 */
    check_fill(f, 0x300800, 0x100, FILL);
}

static void test_aout_kludge_wins_over_elf(void **state)
{
    struct fx *f = *state;

    /* An ELF file with bit 16 set is loaded by the header's addresses, as QEMU does. */
    build_elf32(f, two_segs, 2, KERNEL_PA);
    put_mb_header(f->img, sizeof(Elf32_Ehdr), 0x00010000, false);
    put32(f->img + 52 + 12, 0x400000 + 52); /* header_addr: file offset 0 at 0x400000 */
    put32(f->img + 52 + 16, 0x400000);
    put32(f->img + 52 + 20, 0);
    put32(f->img + 52 + 24, 0);
    put32(f->img + 52 + 28, 0x400000);
    assert_int_equal(load(f, "a"), 0);
    assert_int_equal(f->res.load_start, 0x400000);
    assert_int_equal(f->res.entry, 0x400000);
    assert_memory_equal(ram(f, 0x400000, 4), ELFMAG, 4);
}

static void test_entry_translated_from_vaddr(void **state)
{
    struct fx *f = *state;
    struct tseg s = {PT_LOAD, 0x1000, 0xC0100000, KERNEL_PA, 0x100, 0x100, PF_R | PF_X};

    build_elf32(f, &s, 1, 0xC0100010);
    assert_int_equal(load(f, "a"), 0);
    assert_int_equal(f->res.entry, KERNEL_PA + 0x10);
    /* outside the segment's file bytes (QEMU bounds it by p_filesz, not p_memsz): left alone */
    s.memsz = 0x200;
    build_elf32(f, &s, 1, 0xC0100100);
    assert_int_equal(load(f, "a"), 0);
    assert_int_equal(f->res.entry, 0xC0100100);
    build_elf32(f, &s, 1, 0xC00FFFFF);
    assert_int_equal(load(f, "a"), 0);
    assert_int_equal(f->res.entry, 0xC00FFFFF);
    /* not executable: left alone (as QEMU) */
    s.flags = PF_R;
    build_elf32(f, &s, 1, 0xC0100010);
    assert_int_equal(load(f, "a"), 0);
    assert_int_equal(f->res.entry, 0xC0100010);
}

static void test_entry_outside_image_allowed(void **state)
{
    struct fx *f = *state;
    struct tseg s = {PT_LOAD, 0x1000, KERNEL_PA, KERNEL_PA, 0x100, 0x100, PF_R | PF_X};

    build_elf32(f, &s, 1, 0xFFFFFFF0);
    assert_int_equal(load(f, "a"), 0);
    assert_int_equal(f->res.entry, 0xFFFFFFF0);
}

static void test_elf64_extension(void **state)
{
    struct fx *f = *state;
    struct tseg s = {PT_LOAD, 0x1000, KERNEL_PA, KERNEL_PA, 0x300, 0x800, PF_R | PF_X};

    f->size = build_elf(f->img, true, EM_X86_64, KERNEL_PA + 4, &s, 1, 0x3);
    assert_int_equal(load(f, "a"), 0);
    assert_int_equal(f->res.entry, KERNEL_PA + 4);
    check_file_bytes(f, KERNEL_PA, 0x1000, 0x300);
    check_fill(f, KERNEL_PA + 0x300, 0x500, 0);

    f->size = build_elf(f->img, true, EM_X86_64, 0x100000000ULL, &s, 1, 0x3);
    expect_reject(f, "entry point 0x100000000 is above 4 GiB");
    f->size = build_elf(f->img, true, EM_386, KERNEL_PA, &s, 1, 0x3);
    expect_reject(f, "ELF64 machine 3 is not x86-64");
    s.paddr = 0xFFFFFFFFFFFFF000ULL;
    s.memsz = 0x2000;
    f->size = build_elf(f->img, true, EM_X86_64, KERNEL_PA, &s, 1, 0x3);
    expect_reject(f, "ends beyond 4 GiB");
}

static void test_header_flags(void **state)
{
    struct fx *f = *state;
    struct tseg s = {PT_LOAD, 0x1000, KERNEL_PA, KERNEL_PA, 0x100, 0x100, PF_R | PF_X};

    /* video mode request (bit 2) is ignored, as QEMU does; upper optional bits too */
    f->size = build_elf(f->img, false, EM_386, KERNEL_PA, &s, 1, 0x7 | 0x00800000);
    assert_int_equal(load(f, "a"), 0);
    f->size = build_elf(f->img, false, EM_386, KERNEL_PA, &s, 1, 0);
    assert_int_equal(load(f, "a"), 0);
    /* an unknown required bit must be refused */
    f->size = build_elf(f->img, false, EM_386, KERNEL_PA, &s, 1, 0x3 | (1u << 3));
    expect_reject(f, "bits 0x0008");
    f->size = build_elf(f->img, false, EM_386, KERNEL_PA, &s, 1, 0x8000);
    expect_reject(f, "require features");
}

static void test_load_file(void **state)
{
    struct fx *f = *state;
    char path[] = "/tmp/tandem-mb-XXXXXX";
    char want[64];
    int fd;

    build_elf32(f, two_segs, 2, KERNEL_PA);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, f->img, f->size), (ssize_t)f->size);
    close(fd);

    assert_int_equal(
        multiboot_load_file(&f->m, path, "console=ttyS0", &f->res, f->err, sizeof(f->err)), 0);
    snprintf(want, sizeof(want), "%s console=ttyS0", path);
    assert_string_equal((const char *)ram(f, MB_CMDLINE_ADDR, strlen(want) + 1), want);
    check_file_bytes(f, KERNEL_PA + 0x3000, 0x3000, 0x400);

    /* like QEMU, an empty append still gets the separating space */
    assert_int_equal(multiboot_load_file(&f->m, path, NULL, &f->res, f->err, sizeof(f->err)), 0);
    snprintf(want, sizeof(want), "%s ", path);
    assert_string_equal((const char *)ram(f, MB_CMDLINE_ADDR, strlen(want) + 1), want);

    /* errors name the file */
    f->img[sizeof(Elf32_Ehdr) + 8] ^= 1; /* checksum */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, f->img, f->size), (ssize_t)f->size);
    close(fd);
    assert_int_equal(multiboot_load_file(&f->m, path, "", &f->res, f->err, sizeof(f->err)),
                     -ENOEXEC);
    assert_non_null(strstr(f->err, path));
    assert_non_null(strstr(f->err, "bad checksum"));
    unlink(path);

    assert_int_equal(multiboot_load_file(&f->m, path, "", &f->res, f->err, sizeof(f->err)),
                     -ENOENT);
    assert_non_null(strstr(f->err, path));
    assert_non_null(strstr(f->err, "cannot open"));
    assert_int_equal(multiboot_load_file(&f->m, "/tmp", "", &f->res, f->err, sizeof(f->err)),
                     -EINVAL);
    assert_non_null(strstr(f->err, "not a regular file"));
}

/* --- rejected images --------------------------------------------------------------------- */

static void test_reject_header(void **state)
{
    struct fx *f = *state;
    struct tseg s = {PT_LOAD, 0x3000, KERNEL_PA, KERNEL_PA, 0x100, 0x100, PF_R | PF_X};

    /* no header at all */
    build_elf32(f, &s, 1, KERNEL_PA);
    memset(f->img + sizeof(Elf32_Ehdr), 0, 12);
    expect_reject(f, "no header in the first 8192 bytes");
    /* bad checksum */
    build_elf32(f, &s, 1, KERNEL_PA);
    put_mb_header(f->img, sizeof(Elf32_Ehdr), 0x3, true);
    expect_reject(f, "header magic at offset 0x34 has a bad checksum");
    /* a good header after a bad one is found (QEMU scans on) */
    put_mb_header(f->img, 0x1000, 0x3, false);
    assert_int_equal(load(f, "a"), 0);
    /* just past the first 8192 bytes, or straddling the limit */
    memset(f->img + 0x1000, 0, 12);
    memset(f->img + sizeof(Elf32_Ehdr), 0, 12);
    put_mb_header(f->img, 8192, 0x3, false);
    f->size = 0x3100;
    expect_reject(f, "no header in the first 8192 bytes");
    memset(f->img + 8192, 0, 12);
    put_mb_header(f->img, 8188, 0x3, false);
    expect_reject(f, "no header in the first 8192 bytes");
    /* the last place it fits */
    memset(f->img + 8188, 0, 12);
    put_mb_header(f->img, 8180, 0x3, false);
    assert_int_equal(load(f, "a"), 0);
    /* unaligned */
    memset(f->img + 8180, 0, 12);
    put_mb_header(f->img, 0x102, 0x3, false);
    expect_reject(f, "no header");
    /* empty and tiny images */
    f->size = 0;
    expect_reject(f, "no header");
    f->size = 11;
    put_mb_header(f->img, 0, 0x3, false);
    expect_reject(f, "no header");
}

static void test_reject_elf_header(void **state)
{
    struct fx *f = *state;
    struct tseg s = {PT_LOAD, 0x1000, KERNEL_PA, KERNEL_PA, 0x100, 0x100, PF_R | PF_X};

    /* not ELF, no kludge */
    build_elf32(f, &s, 1, KERNEL_PA);
    f->img[0] = 0x7e;
    expect_reject(f, "not ELF");
    /* truncated ELF header: the multiboot header sits inside it, the file ends at 40 bytes */
    build_elf32(f, &s, 1, KERNEL_PA);
    put_mb_header(f->img, 16, 0x3, false);
    f->size = 40;
    expect_reject(f, "ELF header truncated (file has 40 of 52 bytes)");
    /* wrong machine, class, byte order */
    f->size = build_elf(f->img, false, 40 /* EM_ARM */, KERNEL_PA, &s, 1, 0x3);
    expect_reject(f, "ELF32 machine 40 is not i386");
    f->size = build_elf(f->img, false, EM_X86_64, KERNEL_PA, &s, 1, 0x3);
    expect_reject(f, "ELF32 machine 62 is not i386");
    build_elf32(f, &s, 1, KERNEL_PA);
    f->img[EI_CLASS] = 3;
    expect_reject(f, "unsupported ELF class 3");
    build_elf32(f, &s, 1, KERNEL_PA);
    f->img[EI_DATA] = ELFDATA2MSB;
    expect_reject(f, "not little-endian");
}

static void set_phnum(struct fx *f, uint16_t n)
{
    memcpy(f->img + offsetof(Elf32_Ehdr, e_phnum), &n, 2);
}

static void test_reject_phdr_table(void **state)
{
    struct fx *f = *state;

    /* table cut off: the file ends inside the second program header */
    build_elf32(f, two_segs, 2, KERNEL_PA);
    f->size = 0x40 + 32 + 16;
    expect_reject(f, "extends past the end of the file");
    /* huge phnum */
    build_elf32(f, two_segs, 2, KERNEL_PA);
    set_phnum(f, 0x7fff);
    expect_reject(f, "32767 entries of 32 bytes");
    set_phnum(f, PN_XNUM);
    expect_reject(f, "PN_XNUM");
    set_phnum(f, 0);
    expect_reject(f, "no program headers");
    /* phoff wrapping 2^32 and past the file */
    build_elf32(f, two_segs, 2, KERNEL_PA);
    put32(f->img + offsetof(Elf32_Ehdr, e_phoff), 0xFFFFFFF0);
    expect_reject(f, "extends past the end of the file");
    /* phentsize too small */
    build_elf32(f, two_segs, 2, KERNEL_PA);
    f->img[offsetof(Elf32_Ehdr, e_phentsize)] = 16;
    expect_reject(f, "e_phentsize 16 is smaller");
    /* no PT_LOAD at all */
    {
        struct tseg s = {PT_NOTE, 0x1000, 0, 0, 0x10, 0x10, 0};
        build_elf32(f, &s, 1, KERNEL_PA);
        expect_reject(f, "no non-empty PT_LOAD");
    }
}

static void test_reject_segments(void **state)
{
    struct fx *f = *state;
    struct tseg s[2];

    /* offset past EOF, and offset + filesz past EOF, and offset + filesz wrapping */
    memcpy(s, two_segs, sizeof(s));
    s[1].offset = 0x100000;
    build_elf32(f, s, 2, KERNEL_PA);
    expect_reject(f, "ELF segment 1: file bytes [0x100000, +0x400) lie outside the file");
    memcpy(s, two_segs, sizeof(s));
    s[1].filesz = s[1].memsz = 0x1400;
    build_elf32(f, s, 2, KERNEL_PA);
    f->size = 0x3800;
    expect_reject(f, "ELF segment 1: file bytes");
    memcpy(s, two_segs, sizeof(s));
    build_elf32(f, s, 2, KERNEL_PA);
    put32(f->img + 0x40 + 32 + 4, 0xFFFFFF00); /* p_offset of segment 1 */
    expect_reject(f, "lie outside the file");
    /* filesz > memsz */
    memcpy(s, two_segs, sizeof(s));
    s[0].memsz = 0x1000;
    build_elf32(f, s, 2, KERNEL_PA);
    expect_reject(f, "ELF segment 0: p_filesz 0x1800 exceeds p_memsz 0x1000");
    /* overlap (through bss), listed in either order */
    memcpy(s, two_segs, sizeof(s));
    s[1].paddr = KERNEL_PA + 0x1000;
    build_elf32(f, s, 2, KERNEL_PA);
    expect_reject(f, "ELF segment 1 [0x101000, 0x103000) overlaps ELF segment 0");
    memcpy(s, two_segs, sizeof(s));
    s[0].paddr = KERNEL_PA + 0x4000; /* bss of segment 1 ends at +0x5000 */
    build_elf32(f, s, 2, KERNEL_PA);
    expect_reject(f, "ELF segment 1 [0x103000, 0x105000) overlaps ELF segment 0");
    memcpy(s, two_segs, sizeof(s));
    s[1].paddr = s[0].paddr;
    build_elf32(f, s, 2, KERNEL_PA);
    expect_reject(f, "overlaps ELF segment 0");
    /* beyond RAM, in RAM's last page but running off, and wrapping 4 GiB */
    memcpy(s, two_segs, sizeof(s));
    s[1].paddr = RAM_SIZE + 0x1000;
    build_elf32(f, s, 2, KERNEL_PA);
    expect_reject(f, "ELF segment 1 [0x2001000, 0x2003000) is beyond guest RAM (32 MiB)");
    s[1].paddr = RAM_SIZE - 0x1000;
    build_elf32(f, s, 2, KERNEL_PA);
    expect_reject(f, "beyond guest RAM");
    s[1].paddr = 0xFFFFF000;
    build_elf32(f, s, 2, KERNEL_PA);
    expect_reject(f, "ELF segment 1 at 0xfffff000 with size 0x2000 ends beyond 4 GiB");
    s[1].paddr = 0xC0000000; /* in the MMIO hole */
    build_elf32(f, s, 2, KERNEL_PA);
    expect_reject(f, "beyond guest RAM");
    /* on top of the info structure, and in the reserved area below 1 MiB */
    memcpy(s, two_segs, sizeof(s));
    s[1].paddr = 0x8000;
    build_elf32(f, s, 2, KERNEL_PA);
    expect_reject(f, "overlaps the multiboot info area [0x9000, 0xb000)");
    s[1].paddr = MB_INFO_AREA_END - 1;
    build_elf32(f, s, 2, KERNEL_PA);
    expect_reject(f, "multiboot info area");
    s[1].paddr = 0xA0000;
    build_elf32(f, s, 2, KERNEL_PA);
    expect_reject(f, "overlaps the reserved area [0x9fc00, 0x100000)");
    s[1].paddr = 0xFF000; /* runs into 1 MiB */
    build_elf32(f, s, 2, KERNEL_PA);
    expect_reject(f, "reserved area");
    /* right next to the info area is fine */
    s[1].paddr = MB_INFO_AREA_END;
    build_elf32(f, s, 2, KERNEL_PA);
    assert_int_equal(load(f, "a"), 0);
}

static void test_reject_aout(void **state)
{
    struct fx *f = *state;

    build_aout(f, 0x1000, 0x40, KERNEL_PA, KERNEL_PA - 1, 0, KERNEL_PA);
    expect_reject(f, "load_end_addr 0xfffff is below load_addr 0x100000");
    build_aout(f, 0x1000, 0x40, KERNEL_PA, 0, 0, KERNEL_PA);
    put32(f->img + 0x40 + 12, KERNEL_PA - 4);
    expect_reject(f, "header_addr 0xffffc is below load_addr 0x100000");
    build_aout(f, 0x1000, 0x40, KERNEL_PA, 0, 0, KERNEL_PA);
    put32(f->img + 0x40 + 12, KERNEL_PA + 0x44);
    expect_reject(f, "load would start before the file");
    build_aout(f, 0x1000, 0x40, KERNEL_PA, KERNEL_PA + 0x1001, 0, KERNEL_PA);
    expect_reject(f, "needs 0x1001 bytes from file offset 0x0, the file has only 0x1000");
    build_aout(f, 0x1000, 0x40, KERNEL_PA, KERNEL_PA + 0x800, KERNEL_PA + 0x7ff, KERNEL_PA);
    expect_reject(f, "bss_end_addr 0x1007ff is below the end of the loaded text 0x100800");
    build_aout(f, 0x1000, 0x40, KERNEL_PA, 0, KERNEL_PA + 0xfff, KERNEL_PA);
    expect_reject(f, "bss_end_addr");
    build_aout(f, 0x1000, 0x40, 0xFFFFF800, 0, 0, KERNEL_PA);
    expect_reject(f, "a.out image at 0xfffff800 with size 0x1000 ends beyond 4 GiB");
    build_aout(f, 0x1000, 0x40, RAM_SIZE, 0, 0, KERNEL_PA);
    expect_reject(f, "a.out image [0x2000000, 0x2001000) is beyond guest RAM (32 MiB)");
    build_aout(f, 0x1000, 0x40, 0x9800, 0, 0, KERNEL_PA);
    expect_reject(f, "overlaps the multiboot info area");
    /* load_end_addr == load_addr and no bss */
    build_aout(f, 0x1000, 0x40, KERNEL_PA, KERNEL_PA, 0, KERNEL_PA);
    expect_reject(f, "nothing to load");
    /* kludge fields cut off by the end of the file and by the 8 KiB limit */
    build_aout(f, 0x1000, 0x40, KERNEL_PA, 0, 0, KERNEL_PA);
    f->size = 0x40 + 20;
    expect_reject(f, "cut off by the end of the file");
    build_aout(f, 0x3000, 0x40, KERNEL_PA, 0, 0, KERNEL_PA);
    memset(f->img + 0x40, 0, 32);
    put_mb_header(f->img, 8176, 0x00010003, false);
    expect_reject(f, "cut off by the 8192-byte limit");
}

static void test_reject_leaves_ram_untouched(void **state)
{
    struct fx *f = *state;
    struct tseg s[2];

    memcpy(s, two_segs, sizeof(s));
    s[1].paddr = KERNEL_PA + 0x1000; /* overlap: found only after both are parsed */
    build_elf32(f, s, 2, KERNEL_PA);
    expect_reject(f, "overlaps");
    check_fill(f, KERNEL_PA, 0x5000, FILL);
    check_fill(f, MB_INFO_AREA_START, MB_INFO_AREA_END - MB_INFO_AREA_START, FILL);
    for (uint64_t pg = 0; pg < f->m.npages; pg++)
        assert_false(bitmap_test(f->m.vmm_dirty, pg));
}

static void test_cmdline_limits(void **state)
{
    struct fx *f = *state;
    char *cl = malloc(MB_CMDLINE_MAX + 1);

    assert_non_null(cl);
    build_elf32(f, two_segs, 2, KERNEL_PA);
    memset(cl, 'c', MB_CMDLINE_MAX - 1);
    cl[MB_CMDLINE_MAX - 1] = '\0';
    assert_int_equal(load(f, cl), 0);
    assert_string_equal((const char *)ram(f, MB_CMDLINE_ADDR, MB_CMDLINE_MAX), cl);
    cl[MB_CMDLINE_MAX - 1] = 'c';
    cl[MB_CMDLINE_MAX] = '\0';
    assert_int_equal(load(f, cl), -E2BIG);
    assert_non_null(strstr(f->err, "command line is longer than"));
    free(cl);
}

static void test_bad_arguments(void **state)
{
    struct fx *f = *state;
    char small[8];

    build_elf32(f, two_segs, 2, KERNEL_PA);
    assert_int_equal(multiboot_load(&f->m, NULL, 10, "", &f->res, f->err, sizeof(f->err)), -EINVAL);
    assert_int_equal(multiboot_load(&f->m, f->img, f->size, "", NULL, f->err, sizeof(f->err)),
                     -EINVAL);
    /* no message buffer, or a tiny one: still safe, still an error code */
    f->img[sizeof(Elf32_Ehdr)] ^= 1;
    assert_int_equal(multiboot_load(&f->m, f->img, f->size, "", &f->res, NULL, 0), -ENOEXEC);
    assert_int_equal(multiboot_load(&f->m, f->img, f->size, "", &f->res, small, sizeof(small)),
                     -ENOEXEC);
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

/* Every prefix of a valid image is rejected with a message or loads consistently. */
static void check_prefixes(struct fx *f, uint32_t entry, uint64_t load_start)
{
    size_t full = f->size;
    unsigned loaded = 0;

    for (size_t n = 0; n <= full; n++) {
        int rc;

        f->size = n;
        rc = load(f, "x");
        if (rc == 0) {
            assert_int_equal(f->res.entry, entry);
            assert_true(f->res.load_start == load_start);
            loaded++;
        } else {
            assert_int_equal(rc, -ENOEXEC);
            assert_non_null(strstr(f->err, "multiboot: "));
        }
    }
    assert_true(loaded >= 1); /* at least the whole image */
    f->size = full;
}

static void test_truncations(void **state)
{
    struct fx *f = *state;

    build_elf32(f, two_segs, 2, KERNEL_PA);
    check_prefixes(f, KERNEL_PA, KERNEL_PA);
    build_aout(f, 0x1200, 0x40, KERNEL_PA, 0, KERNEL_PA + 0x3000, KERNEL_PA + 0x80);
    check_prefixes(f, KERNEL_PA + 0x80, KERNEL_PA);
    {
        struct tseg s = {PT_LOAD, 0x1000, KERNEL_PA, KERNEL_PA, 0x300, 0x800, PF_R | PF_X};
        f->size = build_elf(f->img, true, EM_X86_64, KERNEL_PA, &s, 1, 0x3);
        check_prefixes(f, KERNEL_PA, KERNEL_PA);
    }
}

/* Random byte corruption of the headers: never a crash; what loads stays inside RAM. */
static void test_corruption(void **state)
{
    struct fx *f = *state;
    uint8_t orig[0x3400];
    uint32_t rng = 12345;

    build_elf32(f, two_segs, 2, KERNEL_PA);
    assert_true(f->size <= sizeof(orig));
    memcpy(orig, f->img, f->size);
    for (int iter = 0; iter < 20000; iter++) {
        int nflip, rc;

        memcpy(f->img, orig, f->size);
        rng = rng * 1103515245u + 12345u;
        nflip = 1 + (int)((rng >> 16) % 4);
        for (int k = 0; k < nflip; k++) {
            rng = rng * 1103515245u + 12345u;
            /* mostly the ELF, multiboot and program headers */
            f->img[(rng >> 8) % 0x80] = (uint8_t)(rng >> 24);
        }
        rc = load(f, "x");
        if (rc == 0) {
            assert_true(f->res.load_end <= RAM_SIZE);
            assert_true(f->res.load_start < f->res.load_end);
        } else {
            assert_int_equal(rc, -ENOEXEC);
            assert_true(f->err[0] != '\0');
        }
    }
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_elf32_one_segment),
        T(test_elf32_two_segments),
        T(test_elf32_unordered_low_and_empty),
        T(test_info_struct),
        cmocka_unit_test(test_info_high_ram),
        T(test_aout_kludge),
        T(test_aout_text_offset),
        T(test_aout_kludge_wins_over_elf),
        T(test_entry_translated_from_vaddr),
        T(test_entry_outside_image_allowed),
        T(test_elf64_extension),
        T(test_header_flags),
        T(test_load_file),
        T(test_reject_header),
        T(test_reject_elf_header),
        T(test_reject_phdr_table),
        T(test_reject_segments),
        T(test_reject_aout),
        T(test_reject_leaves_ram_untouched),
        T(test_cmdline_limits),
        T(test_bad_arguments),
        T(test_truncations),
        T(test_corruption),
    };
#undef T

    return cmocka_run_group_tests(tests, NULL, NULL);
}
