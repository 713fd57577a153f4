/* stream_corpus_gen.c: writes valid sample streams into a directory to seed stream_fuzz. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migration/be.h"
#include "migration/section.h"
#include "migration/stream.h"
#include "sample_state.h"

static int write_file(const char *dir, const char *name, struct stream_writer *sw)
{
    char path[4096];
    const uint8_t *data;
    size_t len;
    int fd, r = 0;

    if (sw_error(sw)) {
        fprintf(stderr, "%s: %s\n", name, sw_errmsg(sw));
        return sw_error(sw);
    }
    data = sw_buf_data(sw, &len);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    if (write(fd, data, len) != (ssize_t)len)
        r = -EIO;
    close(fd);
    sw_buf_reset(sw);
    return r;
}

int main(int argc, char **argv)
{
    struct sample_world *w = calloc(1, sizeof(*w));
    struct stream_writer sw;
    struct ram_source src;
    uint8_t cookie[4] = {0, 0, 0, 1};
    int r = 0;

    if (argc != 2 || !w || stream_writer_init_buf(&sw, 0) < 0) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    sample_world_init(w);
    sample_fill(&w->dev);
    w->tiny[0].value = 7;
    w->tiny[1].value = 0xffffffff;
    memset(w->ram_host + 2 * SAMPLE_RAM_PAGE, 0x5a, SAMPLE_RAM_PAGE); /* one data page */
    w->ram_host[11 * SAMPLE_RAM_PAGE + 17] = 1;                       /* and a sparse one */
    src = (struct ram_source){
        .host = w->ram_host, .ram_size = SAMPLE_RAM_SIZE, .page_size = SAMPLE_RAM_PAGE};

    /* 1: everything: commands, RAM START/END, all FULL sections */
    sample_write_stream(&sw, w);
    r |= write_file(argv[1], "full", &sw);

    /* 2: one FULL section, no subsection (extra == 0), ping */
    w->dev.extra = 0;
    stream_put_header(&sw);
    stream_save_section(&sw, 1, "sample", 0, &sample_vmsd, &w->dev);
    stream_put_command(&sw, STREAM_CMD_PING, cookie, sizeof(cookie));
    stream_put_eof(&sw);
    r |= write_file(argv[1], "sample-nosub", &sw);

    /* 3: two checkpoints, the second re-sending a FULL section and a RAM PART */
    stream_put_header(&sw);
    stream_put_command(&sw, STREAM_CMD_OPEN_RETURN_PATH, NULL, 0);
    ram_save_open(&sw, STREAM_TAG_SECTION_START, 9, "ram", 0, &src);
    ram_save_pages(&sw, &src, 0, 4);
    ram_save_close(&sw, 9, RAM_END_ROUND);
    stream_save_section(&sw, 2, "tiny", 1, &tiny_vmsd, &w->tiny[1]);
    stream_put_eof(&sw);
    ram_save_open(&sw, STREAM_TAG_SECTION_PART, 9, NULL, 0, &src);
    ram_save_pages(&sw, &src, 10, 2);
    ram_save_close(&sw, 9, 0);
    stream_save_section(&sw, 2, "tiny", 1, &tiny_vmsd, &w->tiny[1]);
    stream_put_eof(&sw);
    r |= write_file(argv[1], "two-checkpoints", &sw);

    /* 4: the smallest valid stream */
    stream_put_header(&sw);
    stream_put_eof(&sw);
    r |= write_file(argv[1], "empty", &sw);

    stream_writer_destroy(&sw);
    free(w);
    return r ? 1 : 0;
}
