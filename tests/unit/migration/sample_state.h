/* sample_state.h: sample devices whose vmstate tables exercise every field kind (tests, fuzzer). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "migration/ram.h"
#include "migration/section.h"
#include "migration/vmstate.h"

#define SAMPLE_FIFO_MAX  8
#define SAMPLE_QUEUE_MAX 64 /* a queue index at or above this is rejected by post_load */
#define SAMPLE_MODE_MAX  3
#define SAMPLE_LE_MAX    1000000

struct sample_queue {
    uint16_t head;
    uint16_t tail;
    uint64_t addr;
};

struct sample_dev {
    uint8_t mode;
    uint16_t ctrl;
    uint32_t status;
    uint64_t counter;
    int32_t delta;
    int64_t big;
    bool enabled;
    uint8_t mac[6];
    uint32_t regs[3];
    struct sample_queue main_q;
    struct sample_queue q[2];
    uint16_t fifo_len;
    uint8_t fifo[SAMPLE_FIFO_MAX];
    uint32_t le_value; /* custom: 4 bytes little-endian, <= SAMPLE_LE_MAX */
    uint32_t added_v2; /* field added in version 2 */
    uint64_t extra;    /* subsection "sample-extra", sent only when non-zero */
    int pre_save_calls;
    int post_load_calls;
    int fail_pre_save; /* test knob: pre_save returns -EIO */
};

struct tiny_dev {
    uint32_t value;
};

extern const struct vmstate_desc sample_vmsd; /* version 2, minimum 1 */
extern const struct vmstate_desc sample_extra_vmsd;
extern const struct vmstate_desc tiny_vmsd; /* version 1 */

/* Fills every field with distinct recognisable values (extra non-zero: subsection sent). */
void sample_fill(struct sample_dev *s);

/* A small fake RAM for RAM section tests and the fuzzer. */
#define SAMPLE_RAM_PAGE  4096u
#define SAMPLE_RAM_PAGES 16u
#define SAMPLE_RAM_SIZE  ((uint64_t)SAMPLE_RAM_PAGE * SAMPLE_RAM_PAGES)

/* Registry indexes of sample_registry_init. */
enum { SAMPLE_REG_SAMPLE = 0, SAMPLE_REG_TINY0, SAMPLE_REG_TINY1, SAMPLE_REG_RAM, SAMPLE_REG_N };

struct sample_world {
    struct sample_dev dev;
    struct tiny_dev tiny[2];
    struct ram_sink ram;
    uint8_t ram_host[SAMPLE_RAM_SIZE];
    struct stream_section reg[SAMPLE_REG_N];
    int ncommands;
    uint16_t last_cmd;
    uint32_t last_ping;
};

/* Zeroes w and fills in the registry: "sample"/0, "tiny"/0, "tiny"/1, "ram"/0. */
void sample_world_init(struct sample_world *w);
/* A stream_cmd_fn that records commands into the sample_world passed as opaque. */
int sample_on_command(void *opaque, enum stream_cmd cmd, const uint8_t *payload, uint16_t len);

/* Writes a complete valid stream (header, sections, RAM, a command, EOF) for w's state. */
int sample_write_stream(struct stream_writer *sw, struct sample_world *w);
