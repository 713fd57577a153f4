/* test_cache.c: the secondary's colo cache when it cannot grow its run list: the checkpoint's
 * RAM segment must fail to load (a rejected checkpoint), never stage a silently shorter one.
 *
 * Linked with -Wl,--wrap=realloc: every realloc of the program goes through __wrap_realloc,
 * which fails while fail_realloc is set. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "colo/cache.h"
#include "core/mem.h"
#include "migration/ram.h"
#include "migration/section.h"
#include "migration/stream.h"

#define NPAGES 1024u /* room for more than the run list's first 256 entries */
#define RAMSZ  ((uint64_t)NPAGES * PAGE_SIZE)

void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);

static bool fail_realloc;
static unsigned realloc_failures;

void *__wrap_realloc(void *p, size_t n)
{
    if (fail_realloc) {
        realloc_failures++;
        return NULL;
    }
    return __real_realloc(p, n);
}

struct fixture {
    struct colo_cache cache;
    uint8_t *src;
    struct ram_source rs;
    struct ram_sink sink;
    struct stream_section reg;
    struct stream_writer sw;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (!f || colo_cache_init(&f->cache, RAMSZ))
        return -1;
    f->src = calloc(1, RAMSZ);
    if (!f->src || stream_writer_init_buf(&f->sw, 0) < 0)
        return -1;
    for (uint32_t i = 0; i < NPAGES; i++)
        memset(f->src + (size_t)i * PAGE_SIZE, 0x20 + (int)(i & 0x3f), PAGE_SIZE);
    f->rs = (struct ram_source){.host = f->src, .ram_size = RAMSZ, .page_size = PAGE_SIZE};
    /* As the secondary wires it: pages land in the cache, which is told of every run. */
    f->sink = (struct ram_sink){.host = f->cache.base,
                                .ram_size = RAMSZ,
                                .page_size = PAGE_SIZE,
                                .loaded = colo_cache_loaded,
                                .loaded_opaque = &f->cache};
    f->reg = (struct stream_section){.idstr = "ram", .iter = &ram_iter_ops, .opaque = &f->sink};
    fail_realloc = false;
    realloc_failures = 0;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    fail_realloc = false;
    stream_writer_destroy(&f->sw);
    colo_cache_destroy(&f->cache);
    free(f->src);
    free(f);
    return 0;
}

/* One checkpoint's RAM segment: every other page from page 0 (each its own run), nruns runs. */
static void put_segment(struct fixture *f, unsigned nruns)
{
    stream_put_header(&f->sw);
    ram_save_open(&f->sw, STREAM_TAG_SECTION_START, 1, "ram", 0, &f->rs);
    for (unsigned i = 0; i < nruns; i++)
        ram_save_pages(&f->sw, &f->rs, 2ull * i, 1);
    ram_save_close(&f->sw, 1, 0);
    assert_int_equal(stream_put_eof(&f->sw), 0);
}

/* Loads the segment; with fail set, realloc fails while (and only while) its records load. */
static int load_segment(struct fixture *f, bool fail)
{
    struct stream_loader ld;
    struct stream_reader sr;
    const uint8_t *data;
    size_t len;
    int r;

    assert_int_equal(stream_loader_init(&ld, &f->reg, 1), 0);
    data = sw_buf_data(&f->sw, &len);
    stream_reader_init_buf(&sr, data, len);
    r = stream_load_header(&sr);
    if (r == 0) {
        fail_realloc = fail;
        r = stream_load_segment(&ld, &sr);
        fail_realloc = false;
    }
    stream_reader_destroy(&sr);
    stream_loader_destroy(&ld);
    return r;
}

/* Sanity: with memory, every run is staged and the segment loads. */
static void test_runs_tracked(void **state)
{
    struct fixture *f = *state;

    put_segment(f, 300);
    assert_int_equal(load_segment(f, false), 0);
    assert_int_equal(f->cache.nruns, 300);
    assert_int_equal(f->cache.bytes, 300 * PAGE_SIZE);
    assert_memory_equal(f->cache.base + 2 * 299 * PAGE_SIZE, f->src + 2 * 299 * PAGE_SIZE,
                        PAGE_SIZE);
}

/* The first run of a checkpoint cannot be tracked: the segment must not load. */
static void test_first_run_untracked_fails_segment(void **state)
{
    struct fixture *f = *state;
    int r;

    put_segment(f, 4);
    r = load_segment(f, true);
    assert_true(realloc_failures > 0);
    assert_int_equal(r, -ENOMEM);
    assert_int_equal(f->cache.nruns, 0);
    assert_int_equal(f->cache.bytes, 0);
}

/* The 257th run needs a larger list and cannot get one: the checkpoint is rejected, and what
 * the cache reports staged is exactly what it can apply. */
static void test_growth_failure_fails_segment(void **state)
{
    struct fixture *f = *state;
    int r;

    put_segment(f, 256);
    assert_int_equal(load_segment(f, false), 0);
    assert_int_equal(f->cache.nruns, 256);
    colo_cache_discard(&f->cache);

    stream_writer_destroy(&f->sw);
    assert_true(stream_writer_init_buf(&f->sw, 0) >= 0);
    put_segment(f, 300);
    /* The list (256 entries) is kept across checkpoints, so only run 257 needs to grow it. */
    r = load_segment(f, true);
    assert_true(realloc_failures > 0);
    assert_int_equal(r, -ENOMEM);
    assert_int_equal(f->cache.nruns, 256);
    assert_int_equal(f->cache.bytes, 256 * PAGE_SIZE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_runs_tracked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_run_untracked_fails_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_growth_failure_fails_segment, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
