/* sample_state.c: sample vmstate tables covering every field kind, shared by tests and fuzzer. */
#include "sample_state.h"

#include <errno.h>
#include <string.h>

#include "migration/be.h"

static int queue_post_load(void *opaque, uint32_t version_id)
{
    const struct sample_queue *q = opaque;

    return q->head < SAMPLE_QUEUE_MAX && q->tail < SAMPLE_QUEUE_MAX ? 0 : -ERANGE;
}

static const struct vmstate_field queue_fields[] = {
    VMS_U16(struct sample_queue, head),
    VMS_U16(struct sample_queue, tail),
    VMS_U64(struct sample_queue, addr),
    VMS_END,
};

static const struct vmstate_desc queue_vmsd = {
    .name = "sample-queue",
    .fields = queue_fields,
    .post_load = queue_post_load,
};

/* The custom kind: a little-endian u32 with a range check, to show the escape hatch. */
static int le_put(struct stream_writer *sw, const void *field, size_t size)
{
    uint32_t v;
    uint8_t b[4];

    memcpy(&v, field, sizeof(v));
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    sw_put_bytes(sw, b, sizeof(b));
    return sw_error(sw);
}

static int le_get(struct stream_reader *sr, void *field, size_t size)
{
    uint8_t b[4];
    uint32_t v;

    sr_get_bytes(sr, b, sizeof(b));
    if (sr_error(sr))
        return sr_error(sr);
    v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    if (v > SAMPLE_LE_MAX)
        return -ERANGE;
    memcpy(field, &v, sizeof(v));
    return 0;
}

static const struct vmstate_info le32_info = {
    .name = "le32",
    .size = sizeof(uint32_t),
    .put = le_put,
    .get = le_get,
};

static bool extra_needed(const void *opaque)
{
    const struct sample_dev *s = opaque;

    return s->extra != 0;
}

static const struct vmstate_field extra_fields[] = {
    VMS_U64(struct sample_dev, extra),
    VMS_END,
};

const struct vmstate_desc sample_extra_vmsd = {
    .name = "sample-extra",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = extra_fields,
    .needed = extra_needed,
};

static const struct vmstate_desc *const sample_subsections[] = {&sample_extra_vmsd, NULL};

static int sample_pre_save(void *opaque)
{
    struct sample_dev *s = opaque;

    s->pre_save_calls++;
    return s->fail_pre_save ? -EIO : 0;
}

static int sample_post_load(void *opaque, uint32_t version_id)
{
    struct sample_dev *s = opaque;

    s->post_load_calls++;
    return s->mode <= SAMPLE_MODE_MAX ? 0 : -EINVAL;
}

static const struct vmstate_field sample_fields[] = {
    VMS_U8(struct sample_dev, mode),
    VMS_U16(struct sample_dev, ctrl),
    VMS_U32(struct sample_dev, status),
    VMS_U64(struct sample_dev, counter),
    VMS_I32(struct sample_dev, delta),
    VMS_I64(struct sample_dev, big),
    VMS_BOOL(struct sample_dev, enabled),
    VMS_BUFFER(struct sample_dev, mac, 6),
    VMS_U32_ARRAY(struct sample_dev, regs, 3),
    VMS_STRUCT(struct sample_dev, main_q, struct sample_queue, &queue_vmsd),
    VMS_STRUCT_ARRAY(struct sample_dev, q, struct sample_queue, 2, &queue_vmsd),
    VMS_U16(struct sample_dev, fifo_len),
    VMS_VBUFFER(struct sample_dev, fifo, SAMPLE_FIFO_MAX, fifo_len),
    VMS_CUSTOM(struct sample_dev, le_value, &le32_info),
    VMS_U32_V(struct sample_dev, added_v2, 2),
    VMS_END,
};

const struct vmstate_desc sample_vmsd = {
    .name = "sample",
    .version_id = 2,
    .minimum_version_id = 1,
    .fields = sample_fields,
    .subsections = sample_subsections,
    .pre_save = sample_pre_save,
    .post_load = sample_post_load,
};

static const struct vmstate_field tiny_fields[] = {
    VMS_U32(struct tiny_dev, value),
    VMS_END,
};

const struct vmstate_desc tiny_vmsd = {
    .name = "tiny",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = tiny_fields,
};

void sample_fill(struct sample_dev *s)
{
    memset(s, 0, sizeof(*s));
    s->mode = 2;
    s->ctrl = 0x1234;
    s->status = 0xdeadbeef;
    s->counter = 0x0102030405060708ull;
    s->delta = -2;
    s->big = -0x100000000ll;
    s->enabled = true;
    memcpy(s->mac, "\x52\x54\x00\x12\x34\x56", 6);
    s->regs[0] = 1;
    s->regs[1] = 2;
    s->regs[2] = 0xffffffff;
    s->main_q = (struct sample_queue){.head = 3, .tail = 4, .addr = 0x1000};
    s->q[0] = (struct sample_queue){.head = 5, .tail = 6, .addr = 0x2000};
    s->q[1] = (struct sample_queue){.head = 7, .tail = 8, .addr = 0x3000};
    s->fifo_len = 3;
    memcpy(s->fifo, "abc", 3);
    s->le_value = 0x00012345;
    s->added_v2 = 0xcafef00d;
    s->extra = 0x1122334455667788ull;
}

void sample_world_init(struct sample_world *w)
{
    memset(w, 0, sizeof(*w));
    w->ram = (struct ram_sink){
        .host = w->ram_host, .ram_size = SAMPLE_RAM_SIZE, .page_size = SAMPLE_RAM_PAGE};
    w->reg[SAMPLE_REG_SAMPLE] =
        (struct stream_section){.idstr = "sample", .desc = &sample_vmsd, .opaque = &w->dev};
    w->reg[SAMPLE_REG_TINY0] =
        (struct stream_section){.idstr = "tiny", .desc = &tiny_vmsd, .opaque = &w->tiny[0]};
    w->reg[SAMPLE_REG_TINY1] = (struct stream_section){
        .idstr = "tiny", .instance_id = 1, .desc = &tiny_vmsd, .opaque = &w->tiny[1]};
    w->reg[SAMPLE_REG_RAM] =
        (struct stream_section){.idstr = "ram", .iter = &ram_iter_ops, .opaque = &w->ram};
}

int sample_on_command(void *opaque, enum stream_cmd cmd, const uint8_t *payload, uint16_t len)
{
    struct sample_world *w = opaque;

    w->ncommands++;
    w->last_cmd = (uint16_t)cmd;
    if (cmd == STREAM_CMD_PING && len == 4)
        w->last_ping = be32_load(payload);
    return 0;
}

int sample_write_stream(struct stream_writer *sw, struct sample_world *w)
{
    struct ram_source src = {
        .host = w->ram_host, .ram_size = SAMPLE_RAM_SIZE, .page_size = SAMPLE_RAM_PAGE};
    uint8_t cookie[4];

    be32_store(cookie, 0xabcd0001);
    stream_put_header(sw);
    stream_put_command(sw, STREAM_CMD_ENABLE_COLO, NULL, 0);
    ram_save_open(sw, STREAM_TAG_SECTION_START, 10, "ram", 0, &src);
    ram_save_pages(sw, &src, 0, SAMPLE_RAM_PAGES / 2);
    ram_save_close(sw, 10, 0);
    stream_save_section(sw, 1, "sample", 0, &sample_vmsd, &w->dev);
    stream_save_section(sw, 2, "tiny", 0, &tiny_vmsd, &w->tiny[0]);
    stream_save_section(sw, 3, "tiny", 1, &tiny_vmsd, &w->tiny[1]);
    ram_save_open(sw, STREAM_TAG_SECTION_END, 10, NULL, 0, &src);
    ram_save_pages(sw, &src, SAMPLE_RAM_PAGES / 2, SAMPLE_RAM_PAGES / 2);
    ram_save_close(sw, 10, RAM_END_ROUND);
    stream_put_command(sw, STREAM_CMD_PING, cookie, sizeof(cookie));
    return stream_put_eof(sw);
}
