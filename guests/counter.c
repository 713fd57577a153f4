/* counter.c: extends a hash chain over a RAM region and keeps re-verifying it (torn-state check).
 */
#include "rt.h"

/*
 * State in registers (global register variables r12..r15, which nothing in this file spills
 * and the runtime preserves): tick t, chain c, region digest D, last slot written.
 * State in RAM:
 *   slots     the region: mem/32 records of 32 bytes, 128 per 4 KiB page
 *   pagedig   per page: sum of the slot hashes of its 128 slots
 *   chunkdig  per chunk of 64 pages: sum of its page digests
 *   mirror    a copy of the register state, rewritten at the end of every tick
 * Invariants between ticks: D == sum(chunkdig) == sum(pagedig) == sum(slot hashes), the slot
 * written last re-derives c, mirror == registers, no record claims a tick beyond t.
 *
 * Tick t: slot i = pick(c); the record {t, c, hash of the slot's old content, self-check}
 * replaces the slot; the digests move by (new hash - old hash); c = H(c, i, new hash).
 * Before each tick the loop checks the mirror, the last record against c, sum(chunkdig)
 * against D, and re-hashes one chunk (round robin: the whole region every nchunks ticks);
 * every `full` ticks it re-hashes and checks every record. Any RAM page or register taken
 * from another instant than the rest breaks one of these sums (see docs/guests.md).
 */

#define PAGE_BYTES      4096ull
#define SLOT_BYTES      32ull
#define SLOTS_PER_PAGE  (PAGE_BYTES / SLOT_BYTES)
#define PAGES_PER_CHUNK 64ull /* default of chunk= */

struct slot {
    uint64_t tick;  /* tick that wrote it; 0 = initial pattern */
    uint64_t prev;  /* chain value before that tick (initial pattern: pattern(i)) */
    uint64_t old;   /* hash of the slot's content before that tick (initial pattern: 0) */
    uint64_t check; /* record_check(i, tick, prev, old) */
};

_Static_assert(sizeof(struct slot) == SLOT_BYTES, "slot layout");

/* Region geometry: set once before the first tick. */
static struct slot *slots;
static uint64_t *pagedig, *chunkdig;
static uint64_t nslots, npages, nchunks;
static uint64_t chunk_pages; /* chunk=: pages re-hashed per tick (default PAGES_PER_CHUNK) */

/* The loop state lives in callee-saved registers for the guest's whole life, so a checkpoint
 * that pairs RAM from one instant with registers from another pairs two different states. */
register uint64_t r_tick __asm__("r12");   /* ticks done */
register uint64_t r_chain __asm__("r13");  /* chain value */
register uint64_t r_digest __asm__("r14"); /* region digest: sum of all slot hashes */
register uint64_t r_last __asm__("r15");   /* slot written by tick t */

/* RAM copy of the registers (tick, chain, digest, last slot), rewritten after every tick. */
static volatile uint64_t mirror[4];

/* Options. */
static uint64_t ticks, every, full, delay, poison, tear;
static uint64_t saved[4]; /* tear=: the registers of tick `tear` */

/* One word into a running hash: a bijection of w for a fixed h. */
static inline uint64_t absorb(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 32);
}

static inline uint64_t slot_hash(uint64_t i, const struct slot *s)
{
    uint64_t h = absorb(i * 0xd6e8feb86659fd93ull + 0x5eed, s->tick);
    h = absorb(h, s->prev);
    h = absorb(h, s->old);
    return rt_mix64(absorb(h, s->check));
}

static inline uint64_t record_check(uint64_t i, uint64_t tick, uint64_t prev, uint64_t old)
{
    return rt_mix64(absorb(absorb(absorb(i ^ 0xa0761d6478bd642full, tick), prev), old));
}

static inline uint64_t pattern(uint64_t i)
{
    return rt_mix64(i + 0xe7037ed1a0b428dbull);
}

static inline uint64_t chain_next(uint64_t prev, uint64_t i, uint64_t h)
{
    return rt_mix64(absorb(absorb(prev, i), h));
}

/* Slot for the next record: uniform over the region, decided by the chain. */
static inline uint64_t pick(uint64_t chain)
{
    return (uint64_t)(((unsigned __int128)chain * nslots) >> 64);
}

static _Noreturn void corrupt(const char *what, uint64_t tick, uint64_t a, uint64_t b, uint64_t x)
{
    rt_printf("CORRUPT %s tick=%lu 0x%lx 0x%lx 0x%lx\n", what, tick, a, b, x);
    rt_exit(RT_EXIT_CORRUPT);
}

static uint64_t page_sum(uint64_t p)
{
    uint64_t sum = 0, i = p * SLOTS_PER_PAGE;
    for (uint64_t k = 0; k < SLOTS_PER_PAGE; k++, i++)
        sum += slot_hash(i, &slots[i]);
    return sum;
}

static uint64_t chunk_end(uint64_t k)
{
    uint64_t end = (k + 1) * chunk_pages;
    return end < npages ? end : npages;
}

/* Before every tick: the cheap checks that tie RAM to the registers. */
static void check_registers(void)
{
    if (mirror[0] != r_tick || mirror[1] != r_chain || mirror[2] != r_digest || mirror[3] != r_last)
        corrupt("mirror (RAM copy of the registers differs)", r_tick, mirror[0], mirror[1],
                r_chain);

    const struct slot *s = &slots[r_last];
    if (r_tick &&
        (s->tick != r_tick || s->check != record_check(r_last, s->tick, s->prev, s->old) ||
         chain_next(s->prev, r_last, slot_hash(r_last, s)) != r_chain))
        corrupt("last-record (does not re-derive the chain)", r_tick, r_last, s->tick, r_chain);

    uint64_t sum = 0;
    for (uint64_t k = 0; k < nchunks; k++)
        sum += chunkdig[k];
    if (sum != r_digest)
        corrupt("digest (sum of chunk digests != register)", r_tick, sum, r_digest, 0);
}

/* Re-hash chunk k's pages against pagedig and its page digests against chunkdig. */
static void check_chunk(uint64_t k)
{
    uint64_t sum = 0;
    for (uint64_t p = k * chunk_pages; p < chunk_end(k); p++) {
        uint64_t h = page_sum(p);
        if (h != pagedig[p])
            corrupt("page (content != page digest)", r_tick, p, h, pagedig[p]);
        sum += pagedig[p];
    }
    if (sum != chunkdig[k])
        corrupt("chunk (page digests != chunk digest)", r_tick, k, sum, chunkdig[k]);
}

/* Every record well-formed and not from the future, and the whole region sums to d. */
static void check_full(void)
{
    uint64_t total = 0;
    for (uint64_t i = 0; i < nslots; i++) {
        const struct slot *s = &slots[i];
        if (s->check != record_check(i, s->tick, s->prev, s->old))
            corrupt("record (bad self-check)", r_tick, i, s->tick, s->check);
        if (s->tick > r_tick)
            corrupt("record (from the future)", r_tick, i, s->tick, 0);
        if (!s->tick && (s->prev != pattern(i) || s->old))
            corrupt("record (bad initial pattern)", r_tick, i, s->prev, s->old);
        total += slot_hash(i, s);
    }
    if (total != r_digest)
        corrupt("region (full re-hash != register digest)", r_tick, total, r_digest, 0);
    for (uint64_t k = 0; k < nchunks; k++)
        check_chunk(k);
}

/* Fill the region with the initial pattern and build the digests and D. */
static void init_region(void)
{
    r_digest = 0;
    for (uint64_t k = 0; k < nchunks; k++)
        chunkdig[k] = 0;
    for (uint64_t p = 0; p < npages; p++) {
        uint64_t sum = 0;
        for (uint64_t i = p * SLOTS_PER_PAGE; i < (p + 1) * SLOTS_PER_PAGE; i++) {
            struct slot *s = &slots[i];
            s->tick = 0;
            s->prev = pattern(i);
            s->old = 0;
            s->check = record_check(i, 0, s->prev, 0);
            sum += slot_hash(i, s);
        }
        pagedig[p] = sum;
        chunkdig[p / chunk_pages] += sum;
        r_digest += sum;
    }
}

/* One step of the chain, then the test hooks. */
static void tick(void)
{
    uint64_t i = pick(r_chain);
    struct slot *s = &slots[i];
    uint64_t h_old = slot_hash(i, s);
    r_tick++;
    s->tick = r_tick;
    s->prev = r_chain;
    s->old = h_old;
    s->check = record_check(i, r_tick, r_chain, h_old);
    uint64_t h_new = slot_hash(i, s);
    uint64_t delta = h_new - h_old;
    pagedig[i / SLOTS_PER_PAGE] += delta;
    chunkdig[i / SLOTS_PER_PAGE / chunk_pages] += delta;
    r_digest += delta;
    r_chain = chain_next(r_chain, i, h_new);
    r_last = i;
    mirror[0] = r_tick;
    mirror[1] = r_chain;
    mirror[2] = r_digest;
    mirror[3] = r_last;

    /* test hooks (docs/guests.md): fake the damage a torn checkpoint would do */
    if (r_tick == poison) /* one RAM write lost behind the digests' back */
        slots[pick(rt_mix64(r_chain))].old ^= 1;
    if (tear && r_tick == tear) {
        saved[0] = r_tick;
        saved[1] = r_chain;
        saved[2] = r_digest;
        saved[3] = r_last;
    }
    if (tear && r_tick == tear + 3) { /* registers and mirror from tick `tear`, RAM from now */
        r_tick = saved[0];
        r_chain = saved[1];
        r_digest = saved[2];
        r_last = saved[3];
        for (int k = 0; k < 4; k++)
            mirror[k] = saved[k];
    }
    for (uint64_t k = 0; k < delay; k++)
        rt_barrier();
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) & ~(a - 1);
}

int main(void)
{
    uint64_t mem = rt_arg_u64("mem", 16ull << 20);
    ticks = rt_arg_u64("ticks", 0);
    every = rt_arg_u64("every", 4096);
    delay = rt_arg_u64("delay", 0);
    poison = rt_arg_u64("poison", 0);
    tear = rt_arg_u64("tear", 0);
    chunk_pages = rt_arg_u64("chunk", PAGES_PER_CHUNK);

    if (mem < PAGE_BYTES || mem % PAGE_BYTES || mem > (1ull << 32)) {
        rt_printf("counter: mem=%lu must be a multiple of 4K, at least 4K and at most 4G\n", mem);
        return RT_EXIT_CONFIG;
    }
    if (!every)
        every = 1;
    if (!chunk_pages || chunk_pages > (1ull << 20)) {
        rt_printf("counter: chunk=%lu must be 1..1M pages\n", chunk_pages);
        return RT_EXIT_CONFIG;
    }
    npages = mem / PAGE_BYTES;
    nslots = npages * SLOTS_PER_PAGE;
    nchunks = (npages + chunk_pages - 1) / chunk_pages;
    full = rt_arg_u64("full", 16 * nchunks);

    uint64_t base = align_up(rt_image_end(), 2ull << 20);
    if (base < RT_REGION_BASE)
        base = RT_REGION_BASE;
    uint64_t meta = align_up((npages + nchunks) * sizeof(uint64_t), PAGE_BYTES);
    if (!rt_have_meminfo() || !rt_ram_usable(base, mem + meta)) {
        rt_printf("counter: mem=%lu (+%lu metadata) at 0x%lx does not fit in RAM (%lu bytes)\n",
                  mem, meta, base, rt_ram_bytes());
        return RT_EXIT_CONFIG;
    }
    slots = (struct slot *)(uintptr_t)base;
    pagedig = (uint64_t *)(uintptr_t)(base + mem);
    chunkdig = pagedig + npages;

    rt_printf("counter start mem=%lu base=0x%lx slots=%lu chunks=%lu every=%lu full=%lu "
              "ticks=%lu ram=%lu\n",
              mem, base, nslots, nchunks, every, full, ticks, rt_ram_bytes());

    init_region();
    r_tick = 0;
    r_chain = rt_mix64(nslots ^ 0x7a6e64656d);
    r_last = 0;
    mirror[0] = r_tick;
    mirror[1] = r_chain;
    mirror[2] = r_digest;
    mirror[3] = r_last;

    for (;;) {
        check_registers();
        check_chunk(r_tick % nchunks);
        if (full && r_tick % full == 0)
            check_full();

        if (ticks && r_tick == ticks) {
            if (r_tick % every)
                rt_printf("tick %lu chain=%016lx\n", r_tick, r_chain);
            rt_printf("done\n");
            rt_exit(RT_EXIT_OK); /* never return: r12..r15 are not the caller's any more */
        }
        tick();

        if (r_tick % every == 0)
            rt_printf("tick %lu chain=%016lx\n", r_tick, r_chain);
    }
}
