/* stream_fuzz.c: libFuzzer target feeding arbitrary bytes to the migration stream loader. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "migration/section.h"
#include "migration/stream.h"
#include "sample_state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The registry is the sample one: "sample" (every field kind, a subsection, a variable buffer,
 * a custom field, post_load checks), "tiny" x2, and "ram" over a 64 KiB fake RAM. Besides
 * "no crash, no leak, no UB" the target checks that whatever a segment loads successfully
 * satisfies the invariants the post_load hooks promise.
 */
static void check_invariants(const struct sample_world *w, const struct stream_loader *ld)
{
    const struct sample_dev *d = &w->dev;

    if (!stream_loader_seen(ld, SAMPLE_REG_SAMPLE))
        return;
    if (d->mode > SAMPLE_MODE_MAX || d->fifo_len > SAMPLE_FIFO_MAX ||
        d->main_q.head >= SAMPLE_QUEUE_MAX || d->q[1].tail >= SAMPLE_QUEUE_MAX ||
        d->le_value > SAMPLE_LE_MAX)
        __builtin_trap();
    for (size_t i = d->fifo_len; i < SAMPLE_FIFO_MAX; i++)
        if (d->fifo[i])
            __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sample_world *w;
    struct stream_loader ld;
    struct stream_reader sr;

    if (!w) {
        w = malloc(sizeof(*w)); /* kept across runs: 64 KiB of fake RAM */
        if (!w)
            return 0;
    }
    sample_world_init(w);
    if (stream_loader_init(&ld, w->reg, SAMPLE_REG_N) < 0)
        __builtin_trap();
    stream_loader_set_command_handler(&ld, sample_on_command, w);
    stream_reader_init_buf(&sr, data, size);
    if (stream_load_header(&sr) == 0) {
        while (stream_load_segment(&ld, &sr) == 0) {
            check_invariants(w, &ld);
            if (sr_remaining(&sr) == 0)
                break;
        }
    }
    /* Every failure carries an errno and a message; the reader never runs past the input. */
    if (sr_error(&sr) >= 0 && sr_remaining(&sr) != 0)
        __builtin_trap();
    if (sr_offset(&sr) > size)
        __builtin_trap();
    stream_buf_verify(data, size);
    stream_loader_destroy(&ld);
    return 0;
}
