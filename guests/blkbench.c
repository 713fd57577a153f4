/* blkbench.c: virtio-blk write benchmark: random 4 KiB writes, then a sequential write. */
#include "rt.h"
#include "virtio.h"

/*
 * Phase 1 writes rand= blocks of 4 KiB at random 4 KiB-aligned offsets inside the first span=
 * bytes of the disk: write number i (0-based) goes to byte offset
 *     4096 * (rt_mix64(seed ^ (i + 1) * 0x9e3779b97f4a7c15) % (span / 4096))
 * (mix = the splitmix64 finaliser below), so a host-side benchmark can replay the same offsets.
 * Phase 2 writes seq= bytes from offset 0 in requests of bs= bytes. Up to depth= requests are in
 * flight (1: each one is issued after the previous one completed). Each phase ends with a FLUSH
 * if the device offers it (and with flush=K also after every K writes); with `writethrough`
 * FLUSH is not negotiated, so the device must make every write durable before completing it.
 *
 * For a host that timestamps the console: each phase starts right after the `... start` line's
 * newline and has ended when the first byte of the `... done` line arrives. The done lines
 * also carry the phase's duration in TSC cycles (rdtsc from ring 3), c= in all and f= in the
 * final FLUSH.
 */

#define SECTOR      512u
#define BLOCK       4096u
#define MAX_BS      (1u << 20)
#define MAX_DEPTH   32u
#define CHECK_EVERY (1ul << 20)

#define VIRTIO_BLK_F_RO    5
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_T_OUT   1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_S_OK    0

struct blk_req_hdr {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

struct slot {
    struct blk_req_hdr hdr;
    volatile uint8_t status;
    int busy;
};

static struct vio_dev dev;
static struct vio_queue vq;
static struct slot slots[MAX_DEPTH];
static int slot_of_head[VIO_QUEUE_SIZE];
static uint8_t data[MAX_BS] __attribute__((aligned(4096)));
static unsigned depth, inflight;
static uint64_t flush_every, writes_since_flush;
static int can_flush;

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi)::"memory");
    return (uint64_t)hi << 32 | lo;
}

static _Noreturn void device_failed(const char *what, uint64_t sector, unsigned status)
{
    rt_printf("FAIL %s sector=%lu status=%u\n", what, sector, status);
    rt_exit(VIO_EXIT_DEVICE);
}

/* Wait for one completion, check it and free its slot. */
static void reap_one(void)
{
    uint32_t len;
    int head;
    for (unsigned long spins = 1; (head = vio_reap(&vq, &len)) < 0; spins++) {
        if (spins % CHECK_EVERY == 0 && vio_needs_reset(&dev))
            device_failed("(the device needs a reset)", 0, 0);
    }
    struct slot *s = &slots[slot_of_head[head]];
    if (s->status != VIRTIO_BLK_S_OK)
        device_failed(s->hdr.type == VIRTIO_BLK_T_FLUSH ? "flush" : "write", s->hdr.sector,
                      s->status);
    s->busy = 0;
    inflight--;
}

static void drain(void)
{
    while (inflight)
        reap_one();
}

/* Make one request available (not kicked); waits for a free slot first. */
static void submit(uint32_t type, uint64_t sector, const void *buf, uint32_t len)
{
    struct vio_buf b[3];
    unsigned n = 0, i;

    while (inflight >= depth)
        reap_one();
    for (i = 0; slots[i].busy; i++)
        ;
    slots[i].hdr = (struct blk_req_hdr){.type = type, .sector = sector};
    slots[i].status = 0xff;
    slots[i].busy = 1;
    b[n++] = (struct vio_buf){&slots[i].hdr, sizeof(slots[i].hdr), 0};
    if (len)
        b[n++] = (struct vio_buf){buf, len, 0};
    b[n++] = (struct vio_buf){(const void *)&slots[i].status, 1, 1};
    int head = vio_submit(&vq, b, n);
    if (head < 0) {
        rt_printf("FAIL no free descriptors\n");
        rt_exit(VIO_EXIT_DEVICE);
    }
    slot_of_head[head] = (int)i;
    inflight++;
}

static void flush(void)
{
    drain();
    submit(VIRTIO_BLK_T_FLUSH, 0, NULL, 0);
    vio_kick(&vq);
    drain();
    writes_since_flush = 0;
}

/* One write; with depth 1 it has completed on return, otherwise it is only issued. */
static void do_write(uint64_t offset, uint32_t len)
{
    submit(VIRTIO_BLK_T_OUT, offset / SECTOR, data, len);
    vio_kick(&vq);
    if (depth == 1)
        reap_one();
    if (flush_every && ++writes_since_flush == flush_every)
        flush();
}

/* Completes the phase; returns the TSC cycles spent in its final FLUSH (0 if none). */
static uint64_t end_phase(void)
{
    drain();
    if (!can_flush)
        return 0;
    uint64_t t = rdtsc();
    flush();
    return rdtsc() - t;
}

int main(void)
{
    uint64_t nrand = rt_arg_u64("rand", 10000);
    uint64_t seq = rt_arg_u64("seq", 64ull << 20);
    uint64_t bs = rt_arg_u64("bs", 128 << 10);
    uint64_t seed = rt_arg_u64("seed", 1);
    uint64_t span = rt_arg_u64("span", 0);
    uint64_t d = rt_arg_u64("depth", 1);
    int wt = rt_arg_present("writethrough");
    uint64_t capacity, t0, t1, f;

    flush_every = rt_arg_u64("flush", 0);
    if (!bs || bs % BLOCK || bs > MAX_BS || seq % bs || !d || d > MAX_DEPTH) {
        rt_printf("blkbench: bs= must be a multiple of 4K up to 1M dividing seq=; depth= 1..%u\n",
                  MAX_DEPTH);
        return RT_EXIT_CONFIG;
    }
    depth = (unsigned)d;
    if (vio_find(VIRTIO_ID_BLOCK, &dev) < 0) {
        rt_printf("blkbench: no virtio-blk device\n");
        return RT_EXIT_CONFIG;
    }
    if (vio_start(&dev, (wt ? 0 : 1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_RO)) < 0 ||
        vio_queue_init(&dev, &vq, 0) < 0 || vio_driver_ok(&dev) < 0)
        return VIO_EXIT_DEVICE;
    if (dev.features & (1ull << VIRTIO_BLK_F_RO)) {
        rt_printf("blkbench: the disk is read-only\n");
        return RT_EXIT_CONFIG;
    }
    can_flush = (dev.features & (1ull << VIRTIO_BLK_F_FLUSH)) != 0;
    if (flush_every && !can_flush) {
        rt_printf("blkbench: flush=%lu, but FLUSH is not negotiated\n", flush_every);
        return RT_EXIT_CONFIG;
    }
    capacity = vio_cfg64(&dev, 0) * SECTOR;
    if (!span)
        span = capacity;
    if (span % BLOCK || span < BLOCK || span > capacity || seq > capacity) {
        rt_printf("blkbench: span=%lu and seq=%lu must fit the disk (%lu bytes), span a multiple "
                  "of 4K\n",
                  span, seq, capacity);
        return RT_EXIT_CONFIG;
    }
    for (uint64_t i = 0; i < MAX_BS; i++)
        data[i] = (uint8_t)(rt_mix64(i / 8 + seed) >> (8 * (i % 8)));

    rt_printf("blkbench start cap=%lu rand=%lu span=%lu seq=%lu bs=%lu depth=%u flush=%s "
              "every=%lu io=%s\n",
              capacity, nrand, span, seq, bs, depth,
              wt          ? "writethrough"
              : can_flush ? "end"
                          : "none",
              flush_every, rt_io_native() ? "native" : "trap");

    rt_printf("rand start\n");
    t0 = rdtsc();
    for (uint64_t i = 0; i < nrand; i++)
        do_write(BLOCK * (rt_mix64(seed ^ ((i + 1) * 0x9e3779b97f4a7c15ull)) % (span / BLOCK)),
                 BLOCK);
    f = end_phase();
    t1 = rdtsc();
    rt_printf("rand done n=%lu c=%lu f=%lu\n", nrand, t1 - t0, f);

    rt_printf("seq start\n");
    t0 = rdtsc();
    for (uint64_t off = 0; off < seq; off += bs)
        do_write(off, (uint32_t)bs);
    f = end_phase();
    t1 = rdtsc();
    rt_printf("seq done b=%lu c=%lu f=%lu\n", seq, t1 - t0, f);
    rt_printf("done\n");
    return RT_EXIT_OK;
}
