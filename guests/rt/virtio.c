/* virtio.c: virtio-mmio v2 driver: probe, feature handshake, split queues, used ring, irq mode. */
#include "virtio.h"

#include "rt.h"

/* Registers (virtio 1.x, 4.2.2), 32-bit accesses only. */
#define REG_MAGIC         0x000
#define REG_VERSION       0x004
#define REG_DEVICE_ID     0x008
#define REG_DEV_FEATURES  0x010
#define REG_DEV_FEAT_SEL  0x014
#define REG_DRV_FEATURES  0x020
#define REG_DRV_FEAT_SEL  0x024
#define REG_QUEUE_SEL     0x030
#define REG_QUEUE_NUM_MAX 0x034
#define REG_QUEUE_NUM     0x038
#define REG_QUEUE_READY   0x044
#define REG_QUEUE_NOTIFY  0x050
#define REG_INT_STATUS    0x060
#define REG_INT_ACK       0x064
#define REG_STATUS        0x070
#define REG_QUEUE_DESC    0x080
#define REG_QUEUE_DRIVER  0x090
#define REG_QUEUE_DEVICE  0x0a0
#define REG_CONFIG_GEN    0x0fc
#define REG_CONFIG        0x100

#define MAGIC 0x74726976u /* "virt" */

#define STATUS_ACKNOWLEDGE 1u
#define STATUS_DRIVER      2u
#define STATUS_DRIVER_OK   4u
#define STATUS_FEATURES_OK 8u
#define STATUS_NEEDS_RESET 0x40u

#define DESC_F_NEXT  1u
#define DESC_F_WRITE 2u

#define AVAIL_F_NO_INTERRUPT 1u

static uint32_t rd(const struct vio_dev *d, uint32_t off)
{
    return *(volatile const uint32_t *)(d->base + off);
}

static void wr(const struct vio_dev *d, uint32_t off, uint32_t v)
{
    *(volatile uint32_t *)(d->base + off) = v;
}

static void wr64(const struct vio_dev *d, uint32_t off, uint64_t v)
{
    wr(d, off, (uint32_t)v);
    wr(d, off + 4, (uint32_t)(v >> 32));
}

int vio_find(uint32_t device_id, struct vio_dev *d)
{
    for (unsigned slot = 0; slot < VIO_PROBE_SLOTS; slot++) {
        struct vio_dev t = {.base = VIO_MMIO_BASE + slot * VIO_SLOT_SIZE};

        if (rd(&t, REG_MAGIC) != MAGIC || rd(&t, REG_DEVICE_ID) != device_id)
            continue;
        uint32_t version = rd(&t, REG_VERSION);
        if (version != 2) {
            rt_printf("virtio: device %u at 0x%lx is version %u, not 2 (QEMU: -global "
                      "virtio-mmio.force-legacy=false); skipped\n",
                      device_id, (unsigned long)t.base, version);
            continue;
        }
        t.device_id = device_id;
        *d = t;
        return 0;
    }
    return -1;
}

int vio_start(struct vio_dev *d, uint64_t want)
{
    uint64_t offered;

    wr(d, REG_STATUS, 0);
    wr(d, REG_STATUS, STATUS_ACKNOWLEDGE);
    wr(d, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    wr(d, REG_DEV_FEAT_SEL, 0);
    offered = rd(d, REG_DEV_FEATURES);
    wr(d, REG_DEV_FEAT_SEL, 1);
    offered |= (uint64_t)rd(d, REG_DEV_FEATURES) << 32;
    if (!(offered & (1ull << VIRTIO_F_VERSION_1))) {
        rt_printf("virtio: device at 0x%lx does not offer VERSION_1\n", (unsigned long)d->base);
        wr(d, REG_STATUS, 0);
        return -1;
    }
    d->features = offered & (want | (1ull << VIRTIO_F_VERSION_1));
    wr(d, REG_DRV_FEAT_SEL, 0);
    wr(d, REG_DRV_FEATURES, (uint32_t)d->features);
    wr(d, REG_DRV_FEAT_SEL, 1);
    wr(d, REG_DRV_FEATURES, (uint32_t)(d->features >> 32));
    wr(d, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    if (!(rd(d, REG_STATUS) & STATUS_FEATURES_OK)) {
        rt_printf("virtio: device at 0x%lx refused features 0x%lx\n", (unsigned long)d->base,
                  (unsigned long)d->features);
        wr(d, REG_STATUS, 0);
        return -1;
    }
    return 0;
}

int vio_queue_init(struct vio_dev *d, struct vio_queue *q, uint32_t index)
{
    wr(d, REG_QUEUE_SEL, index);
    uint32_t max = rd(d, REG_QUEUE_NUM_MAX);
    if (!max || rd(d, REG_QUEUE_READY)) {
        rt_printf("virtio: device at 0x%lx: queue %u %s\n", (unsigned long)d->base, index,
                  max ? "already in use" : "does not exist");
        return -1;
    }
    uint32_t num = VIO_QUEUE_SIZE;
    while (num > max)
        num >>= 1;

    memset(q, 0, sizeof(*q));
    q->dev = d;
    q->index = index;
    q->num = (uint16_t)num;
    for (uint16_t i = 0; i < num; i++)
        q->desc[i].next = (uint16_t)(i + 1);
    q->free_head = 0;
    q->nfree = (uint16_t)num;
    q->avail.flags = d->irq ? 0 : AVAIL_F_NO_INTERRUPT;

    wr(d, REG_QUEUE_NUM, num);
    wr64(d, REG_QUEUE_DESC, (uintptr_t)q->desc);
    wr64(d, REG_QUEUE_DRIVER, (uintptr_t)&q->avail);
    wr64(d, REG_QUEUE_DEVICE, (uintptr_t)&q->used);
    wr(d, REG_QUEUE_READY, 1);
    if (rd(d, REG_QUEUE_READY) != 1 || vio_needs_reset(d)) {
        rt_printf("virtio: device at 0x%lx: queue %u refused\n", (unsigned long)d->base, index);
        return -1;
    }
    return 0;
}

void vio_queue_irq(struct vio_queue *q, int on)
{
    *(volatile uint16_t *)&q->avail.flags = on ? 0 : AVAIL_F_NO_INTERRUPT;
    __asm__ volatile("mfence" : : : "memory");
}

uint32_t vio_irq_ack(struct vio_dev *d)
{
    uint32_t st = rd(d, REG_INT_STATUS);
    if (st)
        wr(d, REG_INT_ACK, st);
    return st;
}

static void irq_handler(void *arg)
{
    vio_irq_ack(arg);
}

int vio_irq_setup(struct vio_dev *d, const char *who)
{
    uint64_t on = rt_arg_u64("irq", 0);
    uint64_t ioapic = rt_arg_u64("ioapic", RT_IOAPIC_BASE);
    uint64_t first = rt_arg_u64("irqpin", 16);
    if (on > 1) {
        rt_printf("%s: irq=%lu: say irq=0 (poll) or irq=1\n", who, on);
        rt_exit(RT_EXIT_CONFIG);
    }
    if (!on)
        return 0;
    uint64_t pin = first + (d->base - VIO_MMIO_BASE) / VIO_SLOT_SIZE;
    if (ioapic < 0xE0000000u || ioapic > 0xFFFFF000u || (ioapic & 0xf) || pin > 255) {
        rt_printf("%s: ioapic=0x%lx irqpin=%lu: not an I/O APIC address in 0xE0000000..4G, or "
                  "pin %lu beyond 255\n",
                  who, ioapic, first, pin);
        rt_exit(RT_EXIT_CONFIG);
    }
    int vec = rt_irq_route((uintptr_t)ioapic, (unsigned)pin, irq_handler, d);
    if (vec < 0)
        rt_exit(RT_EXIT_CONFIG);
    d->irq = 1;
    rt_printf("%s: irq mode, vector 0x%x, pin %lu, ioapic 0x%lx\n", who, vec, pin, ioapic);
    return 1;
}

int vio_driver_ok(struct vio_dev *d)
{
    wr(d, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    return vio_needs_reset(d) ? -1 : 0;
}

int vio_needs_reset(const struct vio_dev *d)
{
    return (rd(d, REG_STATUS) & STATUS_NEEDS_RESET) != 0;
}

/* The config space is read in 32-bit pieces (every transport takes those). */
uint32_t vio_cfg32(const struct vio_dev *d, uint32_t off)
{
    return rd(d, REG_CONFIG + off);
}

uint8_t vio_cfg8(const struct vio_dev *d, uint32_t off)
{
    return (uint8_t)(vio_cfg32(d, off & ~3u) >> (8 * (off & 3)));
}

uint64_t vio_cfg64(const struct vio_dev *d, uint32_t off)
{
    uint32_t gen, lo, hi;

    do {
        gen = rd(d, REG_CONFIG_GEN);
        lo = vio_cfg32(d, off);
        hi = vio_cfg32(d, off + 4);
    } while (rd(d, REG_CONFIG_GEN) != gen);
    return lo | (uint64_t)hi << 32;
}

int vio_submit(struct vio_queue *q, const struct vio_buf *b, unsigned n)
{
    if (!n || n > q->nfree)
        return -1;
    uint16_t head = q->free_head, i = head;
    for (unsigned k = 0; k < n; k++) {
        struct vring_desc *dsc = &q->desc[i];
        dsc->addr = (uintptr_t)b[k].addr;
        dsc->len = b[k].len;
        dsc->flags = (uint16_t)((b[k].writable ? DESC_F_WRITE : 0) | (k + 1 < n ? DESC_F_NEXT : 0));
        if (k + 1 < n)
            i = dsc->next;
    }
    q->free_head = q->desc[i].next;
    q->nfree = (uint16_t)(q->nfree - n);

    q->avail.ring[q->avail.idx % q->num] = head;
    /* The entry (and the descriptors) before the index: x86 keeps stores in order, the
     * compiler must too. */
    rt_barrier();
    *(volatile uint16_t *)&q->avail.idx = (uint16_t)(q->avail.idx + 1);
    return head;
}

void vio_kick(struct vio_queue *q)
{
    __asm__ volatile("mfence" : : : "memory");
    wr(q->dev, REG_QUEUE_NOTIFY, q->index);
}

int vio_reap(struct vio_queue *q, uint32_t *len)
{
    if (*(volatile uint16_t *)&q->used.idx == q->last_used)
        return -1;
    /* x86 does not reorder loads: the element is read after the index that published it. */
    rt_barrier();
    const volatile struct vring_used_elem *e = &q->used.ring[q->last_used % q->num];
    uint32_t head = e->id;
    *len = e->len;
    q->last_used++;

    /* Give the chain back: walk it to its last descriptor, splice it onto the free list. */
    uint16_t i = (uint16_t)head, n = 1;
    while (q->desc[i].flags & DESC_F_NEXT) {
        i = q->desc[i].next;
        n++;
    }
    q->desc[i].next = q->free_head;
    q->free_head = (uint16_t)head;
    q->nfree = (uint16_t)(q->nfree + n);
    return (int)head;
}
