/* test_stage.c: the secondary's restricted checkpoint loaders, the all-or-nothing device load,
 * and the inject/baddev checkpoints of craft.c, on a fake machine.
 *
 * The fake machine is the real registry (devstate_init: "ram", "cpu" x 2, "x86-chips", the
 * inventory devices) over a VM built by hand with two fake devices, plus fake "disk-sync" (writes
 * its image at once, as disk.c's initial sync) and "disk" (stages, as disk.c's epoch log)
 * entries. Each refusal is also run through the machine's full loader, the one secondary.c
 * used before stage.c, to document what it did with the same bytes.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "colo/craft.h"
#include "colo/stage.h"
#include "core/vm.h"
#include "migration/be.h"
#include "migration/crc32c.h"
#include "migration/devstate.h"
#include "migration/ram.h"
#include "migration/section.h"

#define RAM_PAGE  4096u
#define RAM_PAGES 8u
#define RAM_SIZE  ((uint64_t)RAM_PAGE * RAM_PAGES)
#define IMG_SIZE  8192u
#define NCPUS     2

/* ---- fake devices ---- */

struct fake_uart {
    uint8_t regs[8];
    uint8_t ier;
};

static int uart_post_load(void *opaque, uint32_t version_id)
{
    const struct fake_uart *u = opaque;

    return u->ier & 0xf0 ? -EINVAL : 0;
}

static const struct vmstate_field uart_fields[] = {
    VMS_BUFFER(struct fake_uart, regs, 8),
    VMS_U8(struct fake_uart, ier),
    VMS_END,
};

static const struct vmstate_desc uart_vmsd = {
    .name = "fake-uart",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = uart_fields,
    .post_load = uart_post_load,
};

struct fake_nic {
    uint32_t status;
    uint16_t qhead; /* must stay below qsize: the "field out of range" of these tests */
    uint16_t qsize;
    uint64_t ring;
    uint8_t mac[6];
    uint16_t fifo_len;
    uint8_t fifo[16];
    uint64_t extra; /* subsection, sent only when non-zero */
};

/* Test knob: the nic's post_load fails (-EIO) from its nic_fail_from-th call on (0: never). */
static int nic_post_loads, nic_fail_from;

static int nic_post_load(void *opaque, uint32_t version_id)
{
    const struct fake_nic *n = opaque;

    nic_post_loads++;
    if (nic_fail_from && nic_post_loads >= nic_fail_from)
        return -EIO;
    return n->qhead < n->qsize ? 0 : -ERANGE;
}

static bool nic_extra_needed(const void *opaque)
{
    const struct fake_nic *n = opaque;

    return n->extra != 0;
}

static const struct vmstate_field nic_extra_fields[] = {
    VMS_U64(struct fake_nic, extra),
    VMS_END,
};

static const struct vmstate_desc nic_extra_vmsd = {
    .name = "fake-nic-extra",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = nic_extra_fields,
    .needed = nic_extra_needed,
};

static const struct vmstate_desc *const nic_subsections[] = {&nic_extra_vmsd, NULL};

static const struct vmstate_field nic_fields[] = {
    VMS_U32(struct fake_nic, status),
    VMS_U16(struct fake_nic, qhead),
    VMS_U16(struct fake_nic, qsize),
    VMS_U64(struct fake_nic, ring),
    VMS_BUFFER(struct fake_nic, mac, 6),
    VMS_U16(struct fake_nic, fifo_len),
    VMS_VBUFFER(struct fake_nic, fifo, 16, fifo_len),
    VMS_END,
};

static const struct vmstate_desc nic_vmsd = {
    .name = "fake-nic",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = nic_fields,
    .subsections = nic_subsections,
    .post_load = nic_post_load,
};

/* ---- fake disk: disk.c's record format, "disk-sync" writes at once, "disk" stages ---- */

struct fake_disk {
    uint8_t image[IMG_SIZE];
    uint8_t staged[IMG_SIZE];
    int nstaged;
};

static int disk_records(struct stream_reader *sr, struct fake_disk *d, bool stage)
{
    for (;;) {
        uint8_t tag = sr_get_u8(sr);
        uint64_t off;
        uint32_t len;

        if (sr_error(sr) || tag == 0)
            break;
        off = sr_get_u64(sr);
        len = sr_get_u32(sr);
        if (sr_error(sr))
            break;
        if (tag != 1 || len == 0 || off % 512 || off > IMG_SIZE || len > IMG_SIZE - off) {
            sr_fail(sr, -EBADMSG, "fake disk: bad record");
            break;
        }
        sr_get_bytes(sr, (stage ? d->staged : d->image) + off, len);
        d->nstaged += stage;
    }
    return sr_error(sr);
}

static int sync_load(struct stream_reader *sr, void *opaque, enum stream_tag type, uint32_t v)
{
    return disk_records(sr, opaque, false);
}

static int epoch_load(struct stream_reader *sr, void *opaque, enum stream_tag type, uint32_t v)
{
    return disk_records(sr, opaque, true);
}

static const struct stream_iter_ops sync_ops = {
    .version_id = 1, .minimum_version_id = 1, .load = sync_load};
static const struct stream_iter_ops epoch_ops = {
    .version_id = 1, .minimum_version_id = 1, .load = epoch_load};

/* ---- a fake machine ---- */

struct world {
    struct vm *vm;
    struct devstate ds;
    struct ram_sink ram;
    uint8_t ram_host[RAM_SIZE];
    struct fake_uart uart;
    struct fake_nic nic;
    struct fake_disk disk;
    int ncommands;
};

/* What a failed load must leave exactly as it was. */
struct snapshot {
    struct x86_cpu_state cpu[NCPUS];
    struct x86_vm_state chips;
    struct fake_uart uart;
    struct fake_nic nic;
    uint8_t image[IMG_SIZE];
};

static int count_command(void *opaque, enum stream_cmd cmd, const uint8_t *payload, uint16_t len)
{
    struct world *w = opaque;

    w->ncommands++;
    return 0;
}

/* Distinct, valid state derived from seed. */
static void fill(struct world *w, uint8_t seed)
{
    for (int i = 0; i < NCPUS; i++) {
        w->ds.cpu[i].regs.rax = 0x1000u * seed + (unsigned)i;
        w->ds.cpu[i].regs.rip = 0xfff0u + seed;
        memset(w->ds.cpu[i].xsave, seed + i, sizeof(w->ds.cpu[i].xsave));
        w->ds.cpu[i].nmsrs = 1;
        w->ds.cpu[i].msrs[0].index = 0x10;
        w->ds.cpu[i].msrs[0].data = seed;
    }
    w->ds.chips.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
    w->ds.chips.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
    w->ds.chips.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
    w->ds.chips.clock.clock = 1000000u * seed;
    memset(w->uart.regs, seed, sizeof(w->uart.regs));
    w->uart.ier = seed & 0x0f;
    w->nic.status = 0x100u + seed;
    w->nic.qhead = seed;
    w->nic.qsize = 128;
    w->nic.ring = 0x200000u + seed;
    memset(w->nic.mac, seed, sizeof(w->nic.mac));
    w->nic.fifo_len = 3;
    memset(w->nic.fifo, seed, 3);
    w->nic.extra = 0;
    for (uint64_t p = 0; p < RAM_PAGES; p++)
        memset(w->ram_host + p * RAM_PAGE, (int)(seed + p), RAM_PAGE);
}

static struct world *world_new(uint8_t seed)
{
    struct world *w = calloc(1, sizeof(*w));
    struct stream_section sync = {.idstr = "disk-sync", .iter = &sync_ops};
    struct stream_section epoch = {.idstr = "disk", .iter = &epoch_ops};

    assert_non_null(w);
    w->vm = calloc(1, sizeof(*w->vm));
    assert_non_null(w->vm);
    w->vm->ncpus = NCPUS;
    w->vm->devices[0] = (struct vm_device){
        .name = "fake-uart", .instance = 0, .vmsd = &uart_vmsd, .opaque = &w->uart};
    w->vm->devices[1] =
        (struct vm_device){.name = "fake-nic", .instance = 0, .vmsd = &nic_vmsd, .opaque = &w->nic};
    w->vm->ndevices = 2;
    w->ram = (struct ram_sink){.host = w->ram_host, .ram_size = RAM_SIZE, .page_size = RAM_PAGE};
    assert_int_equal(devstate_init(&w->ds, w->vm, &w->ram), 0);
    sync.opaque = epoch.opaque = &w->disk;
    assert_int_equal(devstate_add(&w->ds, &sync), 0);
    assert_int_equal(devstate_add(&w->ds, &epoch), 0);
    fill(w, seed);
    return w;
}

static void world_free(struct world *w)
{
    free(w->vm);
    free(w);
}

static void snap(const struct world *w, struct snapshot *s)
{
    memcpy(s->cpu, w->ds.cpu, sizeof(s->cpu));
    s->chips = w->ds.chips;
    s->uart = w->uart;
    s->nic = w->nic;
    memcpy(s->image, w->disk.image, IMG_SIZE);
}

static void assert_unchanged(const struct world *w, const struct snapshot *before)
{
    struct snapshot now;

    snap(w, &now);
    assert_memory_equal(now.cpu, before->cpu, sizeof(now.cpu));
    assert_memory_equal(&now.chips, &before->chips, sizeof(now.chips));
    assert_memory_equal(&now.uart, &before->uart, sizeof(now.uart));
    assert_memory_equal(&now.nic, &before->nic, sizeof(now.nic));
    assert_memory_equal(now.image, before->image, IMG_SIZE);
}

/* The machine's full loader (what secondary.c ran before stage.c) on one segment. */
static int full_load(struct world *w, const uint8_t *buf, size_t len)
{
    struct stream_loader ld;
    struct stream_reader sr;
    int r;

    assert_int_equal(stream_loader_init(&ld, w->ds.reg, w->ds.nreg), 0);
    stream_loader_set_command_handler(&ld, count_command, w);
    stream_reader_init_buf(&sr, buf, len);
    r = stream_load_segment(&ld, &sr);
    stream_reader_destroy(&sr);
    stream_loader_destroy(&ld);
    return r;
}

/* The stage's RAM loader on one segment; the refusal's message goes to msg. */
static int stage_ram(struct colo_stage *st, const uint8_t *buf, size_t len, char *msg, size_t n)
{
    struct stream_reader sr;
    int r;

    stream_reader_init_buf(&sr, buf, len);
    r = colo_stage_load_ram(st, &sr);
    snprintf(msg, n, "%s", sr_errmsg(&sr));
    if (!r)
        assert_int_equal(sr_remaining(&sr), 0);
    stream_reader_destroy(&sr);
    return r;
}

/* ---- the primary's side: segments as primary.c and disk.c write them ---- */

static struct stream_writer *writer_new(void)
{
    struct stream_writer *sw = calloc(1, sizeof(*sw));

    assert_non_null(sw);
    assert_int_equal(stream_writer_init_buf(sw, 4096), 0);
    return sw;
}

static void writer_free(struct stream_writer *sw)
{
    stream_writer_destroy(sw);
    free(sw);
}

/* RAM START (every page of p's RAM), RAM END (empty), as primary_checkpoint. */
static void put_ram(struct stream_writer *sw, const struct world *p)
{
    struct ram_source src = {.host = p->ram_host, .ram_size = RAM_SIZE, .page_size = RAM_PAGE};

    ram_save_open(sw, STREAM_TAG_SECTION_START, 1, "ram", 0, &src);
    ram_save_pages(sw, &src, 0, RAM_PAGES);
    ram_save_close(sw, 1, RAM_END_ROUND);
    ram_save_open(sw, STREAM_TAG_SECTION_END, 1, "ram", 0, &src);
    ram_save_close(sw, 1, 0);
}

/* One iterative disk section (START with one 512-byte write of byte v at off, END). */
static void put_disk(struct stream_writer *sw, const char *idstr, uint32_t id, uint64_t off,
                     uint8_t v)
{
    uint8_t data[512];

    memset(data, v, sizeof(data));
    stream_put_section_header(sw, STREAM_TAG_SECTION_START, id, idstr, 0, 1);
    sw_put_u8(sw, 1);
    sw_put_u64(sw, off);
    sw_put_u32(sw, sizeof(data));
    sw_put_bytes(sw, data, sizeof(data));
    sw_put_u8(sw, 0);
    stream_put_section_footer(sw, id);
    stream_put_section_header(sw, STREAM_TAG_SECTION_END, id, idstr, 0, 1);
    sw_put_u8(sw, 0);
    stream_put_section_footer(sw, id);
}

/* The device buffer of p, as primary_checkpoint: every FULL section, EOF. */
static void put_devices(struct stream_writer *sw, struct world *p)
{
    assert_int_equal(devstate_save(&p->ds, sw), 0);
}

static const uint8_t *finish(struct stream_writer *sw, size_t *len)
{
    assert_int_equal(stream_put_eof(sw), 0);
    return sw_buf_data(sw, len);
}

/* ---- fixture: a secondary (its stage) and a primary ---- */

struct fixture {
    struct world *s, *p;
    struct colo_stage st;
    struct stream_writer *sw;
    char err[512];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    nic_post_loads = nic_fail_from = 0;
    f->s = world_new(1);
    f->p = world_new(7);
    f->sw = writer_new();
    if (colo_stage_init(&f->st, &f->s->ds))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    colo_stage_destroy(&f->st);
    writer_free(f->sw);
    world_free(f->s);
    world_free(f->p);
    free(f);
    return 0;
}

/* ---- RAM segment ---- */

static void test_ram_segment_accepts_ram_and_disk(void **state)
{
    struct fixture *f = *state;
    struct snapshot before;
    const uint8_t *buf;
    char msg[256];
    size_t len;

    snap(f->s, &before);
    put_ram(f->sw, f->p);
    put_disk(f->sw, "disk", 0x200, 1024, 0xd1);
    buf = finish(f->sw, &len);
    assert_int_equal(stage_ram(&f->st, buf, len, msg, sizeof(msg)), 0);
    assert_memory_equal(f->s->ram_host, f->p->ram_host, RAM_SIZE);
    assert_int_equal(f->s->disk.nstaged, 1); /* staged, not written */
    assert_int_equal(f->s->disk.staged[1024], 0xd1);
    assert_unchanged(f->s, &before);

    /* The next checkpoint's segment binds the same ids again. */
    assert_int_equal(stage_ram(&f->st, buf, len, msg, sizeof(msg)), 0);
    assert_int_equal(f->s->disk.nstaged, 2);
}

static void test_ram_segment_refuses_device_section(void **state)
{
    struct fixture *f = *state;
    struct snapshot before;
    const uint8_t *buf;
    char msg[256];
    size_t len;

    snap(f->s, &before);
    put_ram(f->sw, f->p);
    assert_int_equal(stream_save_section(f->sw, 40, "fake-uart", 0, &uart_vmsd, &f->p->uart), 0);
    buf = finish(f->sw, &len);

    assert_int_equal(stage_ram(&f->st, buf, len, msg, sizeof(msg)), -EBADMSG);
    assert_non_null(strstr(msg, "fake-uart"));
    assert_unchanged(f->s, &before);

    /* The old full loader applied it straight into the live device. */
    assert_int_equal(full_load(f->s, buf, len), 0);
    assert_memory_equal(&f->s->uart, &f->p->uart, sizeof(f->s->uart));
    assert_memory_not_equal(&f->s->uart, &before.uart, sizeof(before.uart));
}

static void test_ram_segment_refuses_disk_sync(void **state)
{
    struct fixture *f = *state;
    struct snapshot before;
    const uint8_t *buf;
    char msg[256];
    size_t len;

    snap(f->s, &before);
    put_ram(f->sw, f->p);
    put_disk(f->sw, "disk-sync", 0x100, 512, 0xee);
    buf = finish(f->sw, &len);

    assert_int_equal(stage_ram(&f->st, buf, len, msg, sizeof(msg)), -EBADMSG);
    assert_non_null(strstr(msg, "disk-sync"));
    assert_unchanged(f->s, &before);

    /* The old full loader wrote the image at once. */
    assert_int_equal(full_load(f->s, buf, len), 0);
    assert_int_equal(f->s->disk.image[512], 0xee);
    assert_int_equal(f->s->disk.image[1023], 0xee);
}

static void test_ram_segment_refuses_command(void **state)
{
    struct fixture *f = *state;
    const uint8_t *buf;
    char msg[256];
    size_t len;

    put_ram(f->sw, f->p);
    assert_int_equal(stream_put_command(f->sw, STREAM_CMD_ENABLE_COLO, NULL, 0), 0);
    buf = finish(f->sw, &len);

    assert_int_equal(stage_ram(&f->st, buf, len, msg, sizeof(msg)), -EBADMSG);
    assert_non_null(strstr(msg, "command 3"));
    assert_int_equal(f->s->ncommands, 0);

    /* The old full loader ran the command's handler. */
    assert_int_equal(full_load(f->s, buf, len), 0);
    assert_int_equal(f->s->ncommands, 1);
}

/* A refused segment that left RAM open must not spoil the next good one. */
static void test_ram_segment_refusal_leaves_loader_fresh(void **state)
{
    struct fixture *f = *state;
    struct ram_source src = {.host = f->p->ram_host, .ram_size = RAM_SIZE, .page_size = RAM_PAGE};
    struct stream_writer *good = writer_new();
    const uint8_t *buf;
    char msg[256];
    size_t len;

    ram_save_open(f->sw, STREAM_TAG_SECTION_START, 1, "ram", 0, &src);
    ram_save_close(f->sw, 1, 0); /* open, never ended */
    assert_int_equal(stream_save_section(f->sw, 99, "fake-uart", 0, &uart_vmsd, &f->p->uart), 0);
    buf = finish(f->sw, &len);
    assert_int_equal(stage_ram(&f->st, buf, len, msg, sizeof(msg)), -EBADMSG);

    put_ram(good, f->p);
    buf = finish(good, &len);
    assert_int_equal(stage_ram(&f->st, buf, len, msg, sizeof(msg)), 0);
    writer_free(good);
}

/* ---- device buffer ---- */

static void test_devices_good_buffer_applies_everything(void **state)
{
    struct fixture *f = *state;
    const uint8_t *buf;
    size_t len;

    f->p->nic.extra = 0x5555; /* the subsection travels too */
    put_devices(f->sw, f->p);
    buf = finish(f->sw, &len);
    assert_int_equal(stream_buf_verify(buf, len), 0);
    assert_int_equal(colo_stage_load_devices(&f->st, buf, len, f->err, sizeof(f->err)), 0);
    assert_string_equal(f->err, "");
    assert_memory_equal(f->s->ds.cpu, f->p->ds.cpu, sizeof(struct x86_cpu_state) * NCPUS);
    assert_memory_equal(&f->s->ds.chips, &f->p->ds.chips, sizeof(f->s->ds.chips));
    assert_memory_equal(&f->s->uart, &f->p->uart, sizeof(f->s->uart));
    assert_memory_equal(&f->s->nic, &f->p->nic, sizeof(f->s->nic));

    /* And again with the next checkpoint's buffer (same section ids, new values). The
     * subsection is sent again: one that is absent leaves the secondary's field as it was
     * (the loader's rule, not stage.c's). */
    fill(f->p, 9);
    f->p->nic.extra = 0x6666;
    sw_buf_reset(f->sw);
    put_devices(f->sw, f->p);
    buf = finish(f->sw, &len);
    assert_int_equal(colo_stage_load_devices(&f->st, buf, len, f->err, sizeof(f->err)), 0);
    assert_memory_equal(&f->s->nic, &f->p->nic, sizeof(f->s->nic));
    assert_memory_equal(f->s->ds.cpu, f->p->ds.cpu, sizeof(struct x86_cpu_state) * NCPUS);
}

/*
 * The last section (fake-nic, after cpu x 2, x86-chips and fake-uart were applied) fails in its
 * post_load, after its fields and subsection were written. Every device, and the staged vCPU
 * and chip copies, must be byte for byte as before, including the subsection field the
 * secondary's own state would not have sent (extra == 0 here, 0x5555 in the buffer).
 */
static void test_devices_bad_last_section_restores_everything(void **state)
{
    struct fixture *f = *state;
    struct snapshot before;
    const uint8_t *buf;
    size_t len;

    assert_int_equal(f->s->nic.extra, 0);
    snap(f->s, &before);
    f->p->nic.qhead = 300; /* >= qsize: out of range */
    f->p->nic.extra = 0x5555;
    put_devices(f->sw, f->p);
    buf = finish(f->sw, &len);
    assert_int_equal(stream_buf_verify(buf, len), 0); /* a valid checksum: it gets this far */

    assert_int_equal(colo_stage_load_devices(&f->st, buf, len, f->err, sizeof(f->err)), -ERANGE);
    assert_non_null(strstr(f->err, "fake-nic"));
    assert_non_null(strstr(f->err, "restored"));
    assert_unchanged(f->s, &before);
    assert_int_equal(f->s->nic.extra, 0);

    /* The old full loader left the devices torn: the earlier sections in, the nic half in. */
    assert_int_equal(full_load(f->s, buf, len), -ERANGE);
    assert_memory_equal(&f->s->uart, &f->p->uart, sizeof(f->s->uart));
    assert_memory_equal(f->s->ds.cpu, f->p->ds.cpu, sizeof(struct x86_cpu_state) * NCPUS);
    assert_int_equal(f->s->nic.qhead, 300);
    assert_int_equal(f->s->nic.extra, 0x5555);
}

static void test_devices_refuse_other_sections(void **state)
{
    struct fixture *f = *state;
    struct snapshot before;
    const uint8_t *buf;
    size_t len;

    snap(f->s, &before);

    /* RAM in the device buffer */
    put_devices(f->sw, f->p);
    put_ram(f->sw, f->p);
    buf = finish(f->sw, &len);
    assert_int_equal(colo_stage_load_devices(&f->st, buf, len, f->err, sizeof(f->err)), -EBADMSG);
    assert_non_null(strstr(f->err, "ram"));
    assert_unchanged(f->s, &before);

    /* an initial-sync disk write */
    sw_buf_reset(f->sw);
    put_devices(f->sw, f->p);
    put_disk(f->sw, "disk-sync", 0x100, 0, 0xab);
    buf = finish(f->sw, &len);
    assert_int_equal(colo_stage_load_devices(&f->st, buf, len, f->err, sizeof(f->err)), -EBADMSG);
    assert_non_null(strstr(f->err, "disk-sync"));
    assert_unchanged(f->s, &before);

    /* an epoch log */
    sw_buf_reset(f->sw);
    put_devices(f->sw, f->p);
    put_disk(f->sw, "disk", 0x200, 0, 0xab);
    buf = finish(f->sw, &len);
    assert_int_equal(colo_stage_load_devices(&f->st, buf, len, f->err, sizeof(f->err)), -EBADMSG);
    assert_int_equal(f->s->disk.nstaged, 0);
    assert_unchanged(f->s, &before);

    /* a command */
    sw_buf_reset(f->sw);
    put_devices(f->sw, f->p);
    assert_int_equal(stream_put_command(f->sw, STREAM_CMD_ENABLE_COLO, NULL, 0), 0);
    buf = finish(f->sw, &len);
    assert_int_equal(colo_stage_load_devices(&f->st, buf, len, f->err, sizeof(f->err)), -EBADMSG);
    assert_int_equal(f->s->ncommands, 0);
    assert_unchanged(f->s, &before);

    /* and after all that, a good buffer still loads */
    sw_buf_reset(f->sw);
    put_devices(f->sw, f->p);
    buf = finish(f->sw, &len);
    assert_int_equal(colo_stage_load_devices(&f->st, buf, len, f->err, sizeof(f->err)), 0);
    assert_memory_equal(&f->s->nic, &f->p->nic, sizeof(f->s->nic));
}

/*
 * One good segment followed by more bytes is not one segment. stream_buf_verify checks only the
 * last EOF, over the whole buffer: a sender can make that pass and still hide a second segment
 * (here: the last CRC recomputed over everything), which the loader would never look at.
 */
static void test_devices_bytes_after_eof_refused(void **state)
{
    struct fixture *f = *state;
    struct snapshot before;
    uint8_t *buf;
    size_t len;

    snap(f->s, &before);
    put_devices(f->sw, f->p);
    assert_int_equal(stream_put_eof(f->sw), 0);
    put_devices(f->sw, f->p);
    buf = (uint8_t *)finish(f->sw, &len);
    be32_store(buf + len - 4, crc32c(0, buf, len - 4));
    assert_int_equal(stream_buf_verify(buf, len), 0);
    assert_int_equal(colo_stage_load_devices(&f->st, buf, len, f->err, sizeof(f->err)), -EBADMSG);
    assert_non_null(strstr(f->err, "after the segment's EOF"));
    assert_unchanged(f->s, &before);
}

/* A buffer that leaves one device out is not a whole checkpoint. */
static void test_devices_missing_section_refused(void **state)
{
    struct fixture *f = *state;
    struct snapshot before;
    const uint8_t *buf;
    size_t len;

    snap(f->s, &before);
    for (size_t i = 0; i < f->p->ds.nreg; i++) {
        const struct stream_section *e = &f->p->ds.reg[i];

        if (e->desc && strcmp(e->idstr, "fake-nic"))
            assert_int_equal(stream_save_section(f->sw, (uint32_t)(i + 1), e->idstr, e->instance_id,
                                                 e->desc, e->opaque),
                             0);
    }
    buf = finish(f->sw, &len);
    assert_int_equal(colo_stage_load_devices(&f->st, buf, len, f->err, sizeof(f->err)), -EBADMSG);
    assert_non_null(strstr(f->err, "no section fake-nic"));
    assert_unchanged(f->s, &before);

    /* The old full loader took it: every device but the nic moved on. */
    assert_int_equal(full_load(f->s, buf, len), 0);
    assert_memory_equal(&f->s->uart, &f->p->uart, sizeof(f->s->uart));
    assert_memory_equal(&f->s->nic, &before.nic, sizeof(before.nic));
}

/* The restore fails as well: a distinct error, so the engine marks the standby unusable. */
static void test_devices_restore_failure_is_unrecoverable(void **state)
{
    struct fixture *f = *state;
    const uint8_t *buf;
    size_t len;

    f->p->nic.qhead = 300;
    put_devices(f->sw, f->p);
    buf = finish(f->sw, &len);
    nic_fail_from = 2; /* the load's post_load fails on its own; the restore's is made to */
    assert_int_equal(colo_stage_load_devices(&f->st, buf, len, f->err, sizeof(f->err)),
                     -ENOTRECOVERABLE);
    assert_non_null(strstr(f->err, "restoring the previous device state failed"));
}

/* ---- craft.c ---- */

static void test_craft_inject_refused_by_stage(void **state)
{
    struct fixture *f = *state;
    uint8_t marker[COLO_CRAFT_MARKER_LEN];
    struct snapshot before;
    uint8_t *buf;
    size_t len;
    char msg[256];

    snap(f->s, &before);
    put_ram(f->sw, f->p);
    put_disk(f->sw, "disk", 0x200, 0, 0x11);
    assert_int_equal(colo_craft_inject(f->sw, 1024), 0); /* the segment still open */
    buf = (uint8_t *)finish(f->sw, &len);
    assert_int_equal(stream_buf_verify(buf, len), 0); /* valid until the caller breaks it */

    /* Even with a good checksum the stage refuses the foreign section. */
    assert_int_equal(stage_ram(&f->st, buf, len, msg, sizeof(msg)), -EBADMSG);
    assert_non_null(strstr(msg, "disk-sync"));
    assert_unchanged(f->s, &before);

    /* As the primary sends it: checksum broken inside the CRC (primary.c: ramlen - 2). */
    buf[len - 2] ^= 0x10;
    assert_int_equal(stream_buf_verify(buf, len), -EILSEQ);
    assert_int_equal(stage_ram(&f->st, buf, len, msg, sizeof(msg)), -EBADMSG);
    assert_non_null(strstr(msg, "disk-sync"));
    assert_unchanged(f->s, &before);

    /* The old full loader rejected the checkpoint too, but only at the EOF: after it had
     * written the marker into the image. */
    assert_int_equal(full_load(f->s, buf, len), -EILSEQ);
    colo_craft_marker(marker);
    assert_memory_equal(f->s->disk.image + 1024, marker, sizeof(marker));
    assert_memory_equal(marker, COLO_CRAFT_MARKER, strlen(COLO_CRAFT_MARKER));
}

static void test_craft_inject_bad_input(void **state)
{
    struct fixture *f = *state;
    struct stream_writer fdw;
    const uint8_t *buf;
    uint8_t *copy;
    size_t len, len2;

    put_ram(f->sw, f->p);
    buf = sw_buf_data(f->sw, &len);
    copy = malloc(len);
    assert_non_null(copy);
    memcpy(copy, buf, len);
    assert_int_equal(colo_craft_inject(f->sw, 100), -EINVAL); /* not sector-aligned */
    buf = sw_buf_data(f->sw, &len2);
    assert_int_equal(len2, len); /* nothing appended */
    assert_memory_equal(buf, copy, len);
    free(copy);

    /* closed too early: what follows would be a second, unchecked segment */
    finish(f->sw, &len);
    assert_int_equal(colo_craft_inject(f->sw, 0), -EINVAL);
    assert_int_equal(colo_craft_baddev(f->sw, &f->p->ds), -EINVAL);
    sw_buf_data(f->sw, &len2);
    assert_int_equal(len2, len);

    /* not a memory writer */
    assert_int_equal(stream_writer_init_fd(&fdw, 1), 0);
    assert_int_equal(colo_craft_inject(&fdw, 0), -EINVAL);
    stream_writer_destroy(&fdw);
}

static void test_craft_baddev_refused_all_or_nothing(void **state)
{
    struct fixture *f = *state;
    struct snapshot before;
    const uint8_t *buf;
    size_t len;

    snap(f->s, &before);
    put_devices(f->sw, f->p);
    assert_int_equal(colo_craft_baddev(f->sw, &f->p->ds), 0); /* the buffer still open */
    buf = finish(f->sw, &len);
    assert_int_equal(stream_buf_verify(buf, len), 0); /* behind a valid checksum */

    assert_int_equal(colo_stage_load_devices(&f->st, buf, len, f->err, sizeof(f->err)), -EBADMSG);
    assert_non_null(strstr(f->err, "x86-chips"));
    assert_unchanged(f->s, &before);

    /* The old full loader applied every section before the bad one: torn. */
    assert_int_not_equal(full_load(f->s, buf, len), 0);
    assert_memory_equal(&f->s->uart, &f->p->uart, sizeof(f->s->uart));
    assert_memory_equal(&f->s->nic, &f->p->nic, sizeof(f->s->nic));
    assert_memory_equal(&f->s->ds.chips, &f->p->ds.chips, sizeof(f->s->ds.chips));
}

static void test_craft_baddev_needs_chips(void **state)
{
    struct fixture *f = *state;
    struct devstate *ds = calloc(1, sizeof(*ds));
    size_t len, len2;

    assert_non_null(ds);
    put_devices(f->sw, f->p);
    sw_buf_data(f->sw, &len);
    assert_int_equal(colo_craft_baddev(f->sw, ds), -EINVAL); /* empty registry */
    sw_buf_data(f->sw, &len2);
    assert_int_equal(len2, len);
    free(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ram_segment_accepts_ram_and_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ram_segment_refuses_device_section, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ram_segment_refuses_disk_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ram_segment_refuses_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ram_segment_refusal_leaves_loader_fresh, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_devices_good_buffer_applies_everything, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_devices_bad_last_section_restores_everything, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_devices_refuse_other_sections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devices_bytes_after_eof_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devices_missing_section_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devices_restore_failure_is_unrecoverable, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_craft_inject_refused_by_stage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_craft_inject_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_craft_baddev_refused_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_craft_baddev_needs_chips, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
