/* blkcheck.c: writes self-describing disk blocks through virtio-blk and proves none was lost. */
#include "rt.h"
#include "virtio.h"

/*
 * The disk is a sequence of 512-byte sectors: sector 0 is the superblock, sector b (1..N) is
 * data block b. A block is one sector, because a sector is what a disk writes atomically.
 *
 * History. Write number g (g = 1, 2, ...: the generation) goes to block target(g), a hash of
 * (seed, g), and stores {magic, lba, g, checksum} followed by a payload that depends only on
 * (seed, lba, g). So the whole history is a function of the seed: writing generation g twice
 * writes the same bytes, and after a crash the guest can recompute which generation each block
 * must hold. Writes are issued one at a time: the next request is made only after the previous
 * one was acknowledged.
 *
 * Superblock {magic, nblocks, seed, acked, reserve}: written before generation reserve+1 is
 * issued, with acked = the last acknowledged generation and reserve = acked + RESERVE_STEP. So
 * every generation on the disk is <= the superblock's reserve, and every generation <= its
 * acked was acknowledged.
 *
 * Invariant checked at start (with D = the highest generation found on the disk, and
 * F = max(superblock.acked, ack= from the command line, the last `ack gen=` the previous run
 * printed)):
 *   - every block is either all zeros (never written) or has a valid header: magic, checksum
 *     over the whole sector, lba = its position, payload as derived from (seed, lba, gen);
 *   - its gen <= superblock.reserve, and target(gen) = its lba;
 *   - the disk is exactly the result of writes 1..D: each block holds the last generation <= D
 *     that targeted it (zeros if none);
 *   - D >= F: no acknowledged write was lost (each block holds a generation >= the last
 *     acknowledged one that targeted it).
 * A VMM killed at any point leaves such a disk (acknowledged writes have reached the host file;
 * the one in flight either landed or not). Host power loss is only covered for writes followed
 * by an acknowledged FLUSH (flush=K), and not by the prefix rule.
 *
 * Then the run resumes at generation D+1 (re-issuing a write that had not landed writes the
 * same bytes), after recording {acked = D, reserve = D + RESERVE_STEP}.
 *
 * Big writes (big=K): after every K-th generation g of a run, ONE request writes the big area,
 * BIG_SECTORS sectors right after the data blocks, each sector {BIG_MAGIC, lba, g, checksum} +
 * a payload of (seed, lba, g); it is read back, and `big ok tag=g` printed. The superblock
 * keeps the last acknowledged tag (big). At start, with B = max(superblock.big, bigack=), every
 * big-area sector is zeros (only if B = 0) or valid with B <= tag <= D (a request this large
 * may land in part, so sectors may hold different tags).
 */

#define SECTOR       512u
#define MAX_BLOCKS   65536u
#define RESERVE_STEP 256u
#define READ_BATCH   64u /* sectors per read request while verifying */
#define ACK_EVERY    64u
#define BIG_BYTES    (5u << 20) /* one request, more than one COLO log record (4 MiB) */
#define BIG_SECTORS  (BIG_BYTES / SECTOR)

#define BLOCK_MAGIC 0x6b636568636b6c62ull /* "blkcheck" */
#define SUPER_MAGIC 0x7265707573636b62ull /* "bkcsuper" */
#define BIG_MAGIC   0x676962636b636c62ull /* "blckcbig" */

#define VIRTIO_BLK_F_RO    5
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_T_IN    0
#define VIRTIO_BLK_T_OUT   1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_S_OK    0

struct block_hdr {
    uint64_t magic;
    uint64_t lba;
    uint64_t gen;
    uint64_t csum; /* over the sector with this field 0 */
};

struct superblock {
    uint64_t magic;
    uint64_t nblocks;
    uint64_t seed;
    uint64_t acked;
    uint64_t reserve;
    uint64_t csum; /* over the sector with this field 0 */
    uint64_t big;  /* the last acknowledged big write's tag (0: none; absent on older disks) */
};

struct blk_req_hdr {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

static struct vio_dev dev;
static struct vio_queue vq;
static struct blk_req_hdr req_hdr;
static volatile uint8_t req_status;
static uint64_t wbuf[SECTOR / 8];
static uint64_t rbuf[READ_BATCH * SECTOR / 8];
static uint64_t disk_gen[MAX_BLOCKS + 1]; /* generation found on the disk, per block */
static uint64_t want_gen[MAX_BLOCKS + 1]; /* generation the history says, per block */
static uint64_t bigbuf[BIG_BYTES / 8];

static uint64_t nblocks, seed;
static uint64_t big_acked; /* the superblock's big */
static int irq_mode;       /* irq=1: sleep in rt_wait_irq until a request completes */

static uint64_t target(uint64_t gen)
{
    return 1 + rt_mix64(seed ^ (gen * 0x9e3779b97f4a7c15ull)) % nblocks;
}

/* Hash of n 64-bit words. */
static uint64_t hash_words(const uint64_t *w, unsigned n)
{
    uint64_t h = 0x626c6b636865636bull;
    for (unsigned i = 0; i < n; i++)
        h = rt_mix64(h ^ w[i]) + i;
    return h;
}

static uint64_t sector_csum(const uint64_t *s, unsigned csum_word)
{
    uint64_t copy[SECTOR / 8];
    memcpy(copy, s, SECTOR);
    copy[csum_word] = 0;
    return hash_words(copy, SECTOR / 8);
}

/* The bytes of sector lba at generation gen (magic: a data block's or the big area's). */
static void make_sector(uint64_t *s, uint64_t magic, uint64_t lba, uint64_t gen)
{
    struct block_hdr *h = (struct block_hdr *)s;
    uint64_t x = rt_mix64(seed ^ rt_mix64(lba ^ rt_mix64(gen)));

    h->magic = magic;
    h->lba = lba;
    h->gen = gen;
    h->csum = 0;
    for (unsigned i = sizeof(*h) / 8; i < SECTOR / 8; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        s[i] = rt_mix64(x);
    }
    h->csum = sector_csum(s, 3);
}

static void make_block(uint64_t *s, uint64_t lba, uint64_t gen)
{
    make_sector(s, BLOCK_MAGIC, lba, gen);
}

/* ---- requests (one at a time) ---- */

static void wait_used(const char *what, uint64_t sector)
{
    uint32_t len;
    for (unsigned long spins = 1;; spins++) {
        uint64_t seen = rt_irq_count(); /* before looking: see rt_wait_irq */
        if (vio_reap(&vq, &len) >= 0)
            break;
        /* irq mode: a device that stopped would leave us asleep, so look before each sleep */
        if ((irq_mode || spins % (1ul << 20) == 0) && vio_needs_reset(&dev)) {
            rt_printf("FAIL %s sector=%lu: the device needs a reset\n", what, sector);
            rt_exit(VIO_EXIT_DEVICE);
        }
        if (irq_mode)
            rt_wait_irq(seen);
    }
    if (req_status != VIRTIO_BLK_S_OK) {
        rt_printf("FAIL %s sector=%lu status=%u\n", what, sector, req_status);
        rt_exit(VIO_EXIT_DEVICE);
    }
}

static void request(uint32_t type, uint64_t sector, void *data, uint32_t len)
{
    static const char *const names[] = {
        [VIRTIO_BLK_T_IN] = "read", [VIRTIO_BLK_T_OUT] = "write", [VIRTIO_BLK_T_FLUSH] = "flush"};
    struct vio_buf b[3];
    unsigned n = 0;

    req_hdr = (struct blk_req_hdr){.type = type, .sector = sector};
    req_status = 0xff;
    b[n++] = (struct vio_buf){&req_hdr, sizeof(req_hdr), 0};
    if (len)
        b[n++] = (struct vio_buf){data, len, type == VIRTIO_BLK_T_IN};
    b[n++] = (struct vio_buf){(const void *)&req_status, 1, 1};
    if (vio_submit(&vq, b, n) < 0) {
        rt_printf("FAIL %s: no free descriptors\n", names[type]);
        rt_exit(VIO_EXIT_DEVICE);
    }
    vio_kick(&vq);
    wait_used(names[type], sector);
}

static void write_super(uint64_t acked, uint64_t reserve)
{
    struct superblock *sb = (struct superblock *)wbuf;

    memset(wbuf, 0, sizeof(wbuf));
    *sb = (struct superblock){.magic = SUPER_MAGIC,
                              .nblocks = nblocks,
                              .seed = seed,
                              .acked = acked,
                              .reserve = reserve,
                              .big = big_acked};
    sb->csum = sector_csum(wbuf, 5);
    request(VIRTIO_BLK_T_OUT, 0, wbuf, SECTOR);
}

/* ---- verification ---- */

static _Noreturn void corrupt(void)
{
    rt_exit(RT_EXIT_CORRUPT);
}

static int all_zero(const uint64_t *s)
{
    for (unsigned i = 0; i < SECTOR / 8; i++)
        if (s[i])
            return 0;
    return 1;
}

/* Check block lba's bytes on their own; record its generation. */
static void check_block(const uint64_t *s, uint64_t lba, uint64_t reserve)
{
    const struct block_hdr *h = (const struct block_hdr *)s;

    if (all_zero(s)) {
        disk_gen[lba] = 0;
        return;
    }
    if (h->magic != BLOCK_MAGIC || h->csum != sector_csum(s, 3)) {
        rt_printf("CORRUPT block %lu: bad %s (magic 0x%lx gen %lu)\n", lba,
                  h->magic != BLOCK_MAGIC ? "magic" : "checksum", h->magic, h->gen);
        corrupt();
    }
    if (h->lba != lba || !h->gen || h->gen > reserve || target(h->gen) != lba) {
        rt_printf("CORRUPT block %lu: header lba=%lu gen=%lu (reserve %lu, gen targets %lu)\n", lba,
                  h->lba, h->gen, reserve, h->gen ? target(h->gen) : 0);
        corrupt();
    }
    make_block(wbuf, lba, h->gen);
    if (memcmp(wbuf, s, SECTOR)) {
        rt_printf("CORRUPT block %lu gen=%lu: payload differs from its generation\n", lba, h->gen);
        corrupt();
    }
    disk_gen[lba] = h->gen;
}

/* Verify the data blocks against the history; returns D, the highest generation on the disk. */
static uint64_t verify(uint64_t acked, uint64_t reserve)
{
    uint64_t d = 0;

    for (uint64_t lba = 1; lba <= nblocks; lba += READ_BATCH) {
        uint64_t n = nblocks + 1 - lba < READ_BATCH ? nblocks + 1 - lba : READ_BATCH;
        request(VIRTIO_BLK_T_IN, lba, rbuf, (uint32_t)(n * SECTOR));
        for (uint64_t i = 0; i < n; i++) {
            check_block(rbuf + i * (SECTOR / 8), lba + i, reserve);
            if (disk_gen[lba + i] > d)
                d = disk_gen[lba + i];
        }
    }
    if (d < acked) {
        rt_printf("CORRUPT acknowledged gen=%lu lost: the newest block on the disk has gen=%lu\n",
                  acked, d);
        corrupt();
    }
    for (uint64_t lba = 1; lba <= nblocks; lba++)
        want_gen[lba] = 0;
    for (uint64_t g = 1; g <= d; g++)
        want_gen[target(g)] = g;
    for (uint64_t lba = 1; lba <= nblocks; lba++) {
        if (disk_gen[lba] != want_gen[lba]) {
            rt_printf("CORRUPT block %lu: gen=%lu, but writes 1..%lu leave gen=%lu there (%s)\n",
                      lba, disk_gen[lba], d, want_gen[lba],
                      want_gen[lba] <= acked ? "an acknowledged write was lost"
                                             : "writes landed out of order");
            corrupt();
        }
    }
    return d;
}

/* Read the superblock: 1 if present (fills acked/reserve), 0 on a blank disk. */
static int read_super(uint64_t *acked, uint64_t *reserve)
{
    const struct superblock *sb = (const struct superblock *)rbuf;

    request(VIRTIO_BLK_T_IN, 0, rbuf, SECTOR);
    if (all_zero(rbuf))
        return 0;
    if (sb->magic != SUPER_MAGIC || sb->csum != sector_csum(rbuf, 5) || !sb->nblocks ||
        sb->nblocks > MAX_BLOCKS || sb->acked > sb->reserve) {
        rt_printf("CORRUPT superblock: magic 0x%lx nblocks %lu acked %lu reserve %lu\n", sb->magic,
                  sb->nblocks, sb->acked, sb->reserve);
        corrupt();
    }
    nblocks = sb->nblocks;
    seed = sb->seed;
    big_acked = sb->big;
    *acked = sb->acked;
    *reserve = sb->reserve;
    return 1;
}

/* ---- the big area ---- */

/* Check the big area against acknowledged tag b and the newest generation d; returns the
 * lowest tag found (0: all zeros). */
static uint64_t verify_big(uint64_t b, uint64_t d)
{
    uint64_t first = nblocks + 1, low = 0;

    for (uint64_t lba = first; lba < first + BIG_SECTORS; lba += READ_BATCH) {
        request(VIRTIO_BLK_T_IN, lba, rbuf, READ_BATCH * SECTOR);
        for (uint64_t i = 0; i < READ_BATCH; i++) {
            const uint64_t *s = rbuf + i * (SECTOR / 8);
            const struct block_hdr *h = (const struct block_hdr *)s;
            if (all_zero(s)) {
                if (b) {
                    rt_printf("CORRUPT big sector %lu: zeros, but big tag=%lu was acknowledged\n",
                              lba + i, b);
                    corrupt();
                }
                continue;
            }
            if (h->magic != BIG_MAGIC || h->csum != sector_csum(s, 3) || h->lba != lba + i ||
                !h->gen || h->gen < b || h->gen > d) {
                rt_printf("CORRUPT big sector %lu: magic 0x%lx lba %lu tag %lu (acknowledged %lu, "
                          "newest gen %lu)\n",
                          lba + i, h->magic, h->lba, h->gen, b, d);
                corrupt();
            }
            make_sector(wbuf, BIG_MAGIC, lba + i, h->gen);
            if (memcmp(wbuf, s, SECTOR)) {
                rt_printf("CORRUPT big sector %lu tag=%lu: payload differs from its tag\n", lba + i,
                          h->gen);
                corrupt();
            }
            if (!low || h->gen < low)
                low = h->gen;
        }
    }
    return low;
}

/* One request of BIG_BYTES tagged gen, then read back. */
static void big_write(uint64_t gen)
{
    uint64_t first = nblocks + 1;

    for (uint64_t i = 0; i < BIG_SECTORS; i++)
        make_sector(bigbuf + i * (SECTOR / 8), BIG_MAGIC, first + i, gen);
    request(VIRTIO_BLK_T_OUT, first, bigbuf, BIG_BYTES);
    for (uint64_t i = 0; i < BIG_SECTORS; i += READ_BATCH) {
        request(VIRTIO_BLK_T_IN, first + i, rbuf, READ_BATCH * SECTOR);
        if (memcmp(rbuf, bigbuf + i * (SECTOR / 8), READ_BATCH * SECTOR)) {
            rt_printf("CORRUPT big write tag=%lu: read back at sector %lu differs\n", gen,
                      first + i);
            corrupt();
        }
    }
    big_acked = gen;
    rt_printf("big ok tag=%lu\n", gen);
}

/* ---- main ---- */

static void open_disk(uint64_t *capacity, int *can_flush)
{
    if (vio_find(VIRTIO_ID_BLOCK, &dev) < 0) {
        rt_printf("blkcheck: no virtio-blk device\n");
        rt_exit(RT_EXIT_CONFIG);
    }
    irq_mode = vio_irq_setup(&dev, "blkcheck");
    if (vio_start(&dev, (1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_RO)) < 0 ||
        vio_queue_init(&dev, &vq, 0) < 0 || vio_driver_ok(&dev) < 0)
        rt_exit(VIO_EXIT_DEVICE);
    if (dev.features & (1ull << VIRTIO_BLK_F_RO)) {
        rt_printf("blkcheck: the disk is read-only\n");
        rt_exit(RT_EXIT_CONFIG);
    }
    *capacity = vio_cfg64(&dev, 0);
    *can_flush = (dev.features & (1ull << VIRTIO_BLK_F_FLUSH)) != 0;
}

int main(void)
{
    uint64_t want_blocks = rt_arg_u64("blocks", 0);
    uint64_t writes = rt_arg_u64("writes", 0);
    uint64_t flush = rt_arg_u64("flush", 0);
    uint64_t ack_arg = rt_arg_u64("ack", 0);
    uint64_t big = rt_arg_u64("big", 0);
    uint64_t bigack_arg = rt_arg_u64("bigack", 0);
    uint64_t capacity, acked, reserve, d;
    int can_flush;

    open_disk(&capacity, &can_flush);
    if (flush && !can_flush) {
        rt_printf("blkcheck: flush=%lu, but the device does not offer FLUSH\n", flush);
        return RT_EXIT_CONFIG;
    }
    int existing = read_super(&acked, &reserve);
    if (existing) {
        if (want_blocks && want_blocks != nblocks) {
            rt_printf("blkcheck: blocks=%lu, but the disk was made with blocks=%lu\n", want_blocks,
                      nblocks);
            return RT_EXIT_CONFIG;
        }
    } else {
        nblocks = want_blocks ? want_blocks : 1024;
        seed = rt_arg_u64("seed", 1);
        acked = reserve = 0;
    }
    if (nblocks > MAX_BLOCKS || nblocks + 1 > capacity) {
        rt_printf("blkcheck: blocks=%lu needs %lu sectors (at most %u blocks); the disk has %lu\n",
                  nblocks, nblocks + 1, MAX_BLOCKS, capacity);
        return RT_EXIT_CONFIG;
    }
    uint64_t bigb = big_acked > bigack_arg ? big_acked : bigack_arg;
    if ((big || bigb) && nblocks + 1 + BIG_SECTORS > capacity) {
        rt_printf("blkcheck: big writes need %u sectors after the blocks; the disk has %lu\n",
                  BIG_SECTORS, capacity);
        return RT_EXIT_CONFIG;
    }
    rt_printf("blkcheck start blocks=%lu seed=%lu capacity=%lu %s acked=%lu reserve=%lu ack=%lu\n",
              nblocks, seed, capacity, existing ? "existing" : "blank", acked, reserve, ack_arg);

    d = verify(acked > ack_arg ? acked : ack_arg, reserve);
    rt_printf("verify ok blocks=%lu gen=%lu\n", nblocks, d);
    if (big || bigb)
        rt_printf("verify big ok tag=%lu\n", verify_big(bigb, d));
    big_acked = bigb; /* kept in the superblock from now on */

    /* Resume after the last generation on the disk. */
    uint64_t gen = d;
    reserve = gen + RESERVE_STEP;
    write_super(gen, reserve);
    for (uint64_t n = 1; !writes || n <= writes; n++) {
        gen++;
        if (gen > reserve) {
            reserve = gen - 1 + RESERVE_STEP;
            write_super(gen - 1, reserve);
        }
        uint64_t lba = target(gen);
        make_block(wbuf, lba, gen);
        request(VIRTIO_BLK_T_OUT, lba, wbuf, SECTOR);
        request(VIRTIO_BLK_T_IN, lba, rbuf, SECTOR);
        if (memcmp(wbuf, rbuf, SECTOR)) {
            rt_printf("CORRUPT block %lu gen=%lu: read back differs from what was written\n", lba,
                      gen);
            corrupt();
        }
        if (flush && n % flush == 0)
            request(VIRTIO_BLK_T_FLUSH, 0, NULL, 0);
        if (n % ACK_EVERY == 0 || n == writes)
            rt_printf("ack gen=%lu\n", gen);
        if (big && n % big == 0)
            big_write(gen);
    }
    if (irq_mode)
        rt_printf("done irqs=%lu\n", rt_irq_count());
    else
        rt_printf("done\n");
    return RT_EXIT_OK;
}
