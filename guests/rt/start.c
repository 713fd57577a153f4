/* start.c: ring-3 startup, boot information (command line, memory map) and exit. */
#include "rt.h"

/* Multiboot v1 information structure (the fields the runtime reads). */
struct mb_info {
    uint32_t flags;
    uint32_t mem_lower; /* KiB below 1 MiB */
    uint32_t mem_upper; /* KiB from 1 MiB to the first hole */
    uint32_t boot_device;
    uint32_t cmdline;
    uint32_t mods_count;
    uint32_t mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length;
    uint32_t mmap_addr;
};

struct mb_mmap_entry {
    uint32_t size; /* of the rest of the entry */
    uint64_t base;
    uint64_t len;
    uint32_t type;
} __attribute__((packed));

#define MB_BOOTLOADER_MAGIC 0x2BADB002u
#define MBI_FLAG_MEM        (1u << 0)
#define MBI_FLAG_CMDLINE    (1u << 2)
#define MBI_FLAG_MMAP       (1u << 6)
#define MB_MMAP_AVAILABLE   1u

#define CMDLINE_MAX 1024
#define MMAP_MAX    64

struct ram_range {
    uint64_t base, end;
};

/* Set by entry.S before anything else (in .data, so clearing .bss keeps them). */
extern uint32_t rt_mb_magic, rt_mb_info;
extern char __bss_start[], __bss_end[], __image_end[];

/* Copies of the boot information: the info structure may lie where a guest puts its data. */
static char cmdline[CMDLINE_MAX];
static struct ram_range ram[MMAP_MAX];
static unsigned nram;
static int have_meminfo;

void rt_start(void);

/* ---- exit ---- */

_Noreturn void rt_exit(unsigned v)
{
    outb(RT_DEBUG_EXIT_PORT, (uint8_t)v);
    rt_halt();
}

/* ---- command line ---- */

const char *rt_cmdline(void)
{
    return cmdline;
}

/* Find key's token; returns its value (after '='), "" for a bare key, or NULL. */
static const char *arg_find(const char *key, size_t *vlen)
{
    size_t klen = strlen(key);
    const char *p = cmdline;

    while (*p) {
        while (*p == ' ')
            p++;
        const char *tok = p;
        while (*p && *p != ' ')
            p++;
        size_t tlen = (size_t)(p - tok);
        if (tlen >= klen && !strncmp(tok, key, klen) && (tlen == klen || tok[klen] == '=')) {
            const char *v = tlen == klen ? tok + klen : tok + klen + 1;
            *vlen = (size_t)(p - v);
            return v;
        }
    }
    return NULL;
}

int rt_arg_present(const char *key)
{
    size_t vlen;
    return arg_find(key, &vlen) != NULL;
}

uint64_t rt_arg_u64(const char *key, uint64_t def)
{
    size_t vlen;
    const char *v = arg_find(key, &vlen);
    if (!v)
        return def;

    const char *p = v, *end = v + vlen;
    unsigned base = 10;
    uint64_t x = 0;
    int ndig = 0;
    if (end - p > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    }
    for (; p < end; p++, ndig++) {
        unsigned d;
        if (*p >= '0' && *p <= '9')
            d = (unsigned)(*p - '0');
        else if (base == 16 && *p >= 'a' && *p <= 'f')
            d = (unsigned)(*p - 'a' + 10);
        else if (base == 16 && *p >= 'A' && *p <= 'F')
            d = (unsigned)(*p - 'A' + 10);
        else
            break;
        if (x > (UINT64_MAX - d) / base)
            goto bad;
        x = x * base + d;
    }
    if (!ndig)
        goto bad;
    if (p < end) {
        unsigned shift;
        switch (*p) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        default:
            goto bad;
        }
        if (++p != end || x > (UINT64_MAX >> shift))
            goto bad;
        x <<= shift;
    }
    return x;
bad:
    rt_printf("bad argument %s=%.*s\n", key, (int)vlen, v);
    rt_exit(RT_EXIT_CONFIG);
}

/* ---- memory ---- */

int rt_have_meminfo(void)
{
    return have_meminfo;
}

uint64_t rt_ram_bytes(void)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < nram; i++)
        n += ram[i].end - ram[i].base;
    return n;
}

int rt_ram_usable(uint64_t base, uint64_t len)
{
    uint64_t cur = base, end = base + len;
    if (end < base)
        return 0;
    /* walk from range to range, so touching adjacent entries count as one */
    while (cur < end) {
        unsigned i;
        for (i = 0; i < nram; i++)
            if (ram[i].base <= cur && cur < ram[i].end)
                break;
        if (i == nram)
            return 0;
        cur = ram[i].end;
    }
    return 1;
}

uint64_t rt_image_end(void)
{
    return (uint64_t)(uintptr_t)__image_end;
}

static void add_ram(uint64_t base, uint64_t end)
{
    if (end > base && nram < MMAP_MAX)
        ram[nram++] = (struct ram_range){base, end};
}

static void read_boot_info(void)
{
    if (rt_mb_magic != MB_BOOTLOADER_MAGIC) {
        rt_printf("rt: bad multiboot magic 0x%x, no boot information\n", rt_mb_magic);
        return;
    }
    const struct mb_info *mbi = (const struct mb_info *)(uintptr_t)rt_mb_info;

    if (mbi->flags & MBI_FLAG_CMDLINE) {
        const char *s = (const char *)(uintptr_t)mbi->cmdline;
        size_t i;
        for (i = 0; i < CMDLINE_MAX - 1 && s[i]; i++)
            cmdline[i] = s[i];
        cmdline[i] = '\0';
    }
    if (mbi->flags & MBI_FLAG_MMAP) {
        uintptr_t p = mbi->mmap_addr, end = p + mbi->mmap_length;
        while (p + sizeof(struct mb_mmap_entry) <= end) {
            const struct mb_mmap_entry *e = (const struct mb_mmap_entry *)p;
            if (e->type == MB_MMAP_AVAILABLE)
                add_ram(e->base, e->base + e->len);
            p += e->size + 4;
        }
        have_meminfo = 1;
    } else if (mbi->flags & MBI_FLAG_MEM) {
        add_ram(0, (uint64_t)mbi->mem_lower << 10);
        add_ram(1u << 20, (1u << 20) + ((uint64_t)mbi->mem_upper << 10));
        have_meminfo = 1;
    }
}

/* Ring 3 (IOPL=3, IF=0) on the runtime's stack, straight from entry.S. */
void rt_start(void)
{
    for (char *p = __bss_start; p < __bss_end; p++)
        *(volatile char *)p = 0;
    read_boot_info();
    rt_exit((unsigned)main());
}
