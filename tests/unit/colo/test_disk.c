/* test_disk.c: COLO disk replication through a fake VM's virtio-blk: a write between the final
 * sync and colo_disk_epochs_begin belongs to checkpoint 1; a 5 MiB write is split into records
 * and replicated; a write the image refuses leaves the log; a write that cannot be logged is not
 * failed but breaks replication (limit, injected EIO); the secondary bounds its staging; a failed
 * apply tears the image at the second write (s-disk-apply). Each checkpoint is carried to the
 * image by the real loader and apply, as on the secondary. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "block/virtio_blk.h"
#include "colo/colo.h"
#include "colo/disk.h"
#include "colo/fault.h"
#include "fakevm.h"
#include "migration/devstate.h"
#include "migration/migrate.h"
#include "migration/section.h"
#include "migration/stream.h"
#include "virtio/virtio.h"
#include "virtio/virtio_mmio.h"

#define IMAGE    (8u << 20)
#define MiB      (1u << 20)
#define HDR      0x20000ULL
#define STATUS   0x30000ULL
#define DATA     0x100000ULL /* up to 6 MiB of write data */
#define BASE     VIRTIO_MMIO_BASE
#define FEATURES (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_BLK_F_FLUSH))

struct fx {
    struct vm vm;
    struct test_ring r;
    struct migration mig;
    char path[64];
    int fd;
    struct virtio_blk *blk;
};

static int setup(void **state)
{
    static struct fx f;
    char spec[128], err[256] = "";

    memset(&f, 0, sizeof(f));
    if (fake_vm_init(&f.vm, 16ULL << 20))
        return -1;
    snprintf(f.path, sizeof(f.path), "/tmp/tandem-colo-disk-XXXXXX");
    f.fd = mkstemp(f.path);
    if (f.fd < 0 || ftruncate(f.fd, IMAGE))
        return -1;
    snprintf(spec, sizeof(spec), "path=%s", f.path);
    if (virtio_blk_create(&f.vm, spec, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    f.blk = virtio_blk_find(&f.vm, 0);
    ring_init(&f.r, &f.vm.mem, 8);
    if (!(driver_setup(&f.vm, BASE, FEATURES, &f.r) & VIRTIO_STATUS_DRIVER_OK))
        return -1;
    /* The process's migration, whose x-colo-disk-log-max the disk reads. */
    migration_init(&f.mig, &f.vm, NULL);
    colo_init(&f.mig, &f.vm);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    colo_disk_stop(&f->vm);
    colo_disk_discard(&f->vm);
    colo_state.mode = COLO_MODE_NONE;
    colo_state.leave_requested = false;
    unsetenv("TANDEM_COLO_FAULT");
    colo_fault_init();
    fake_vm_destroy(&f->vm);
    close(f->fd);
    unlink(f->path);
    return 0;
}

/* Byte i of pattern `seed`. */
static uint8_t pat(unsigned seed, uint64_t i)
{
    return (uint8_t)(seed * 37u + (i * 7u) + (i >> 9));
}

/* The guest writes len bytes of pattern seed at sector; returns the status byte. */
static uint8_t guest_write(struct fx *f, uint64_t sector, uint32_t len, unsigned seed)
{
    uint8_t st = 0xee, *p = gmem_ptr(&f->vm.mem, DATA, len);

    for (uint32_t i = 0; i < len; i++)
        p[i] = pat(seed, i);
    put32(&f->vm.mem, HDR, VIRTIO_BLK_T_OUT);
    put32(&f->vm.mem, HDR + 4, 0);
    put64(&f->vm.mem, HDR + 8, sector);
    gmem_write(&f->vm.mem, STATUS, &st, 1);
    ring_desc(&f->r, f->r.desc, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
    ring_desc(&f->r, f->r.desc, 1, DATA, len, VIRTQ_DESC_F_NEXT, 2);
    ring_desc(&f->r, f->r.desc, 2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
    ring_avail(&f->r, 0);
    mmio_wr(&f->vm, BASE + VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    assert_int_equal(ring_used_idx(&f->r), f->r.avail_idx); /* served synchronously */
    gmem_read(&f->vm.mem, STATUS, &st, 1);
    return st;
}

/* Does the image hold pattern seed (seed < 0: zeros) over [off, off + len)? */
static bool image_holds(struct fx *f, uint64_t off, uint32_t len, int seed)
{
    uint8_t *buf = malloc(len);
    bool ok = buf && pread(f->fd, buf, len, (off_t)off) == (ssize_t)len;

    for (uint32_t i = 0; ok && i < len; i++)
        ok = buf[i] == (seed < 0 ? 0 : pat((unsigned)seed, i));
    free(buf);
    return ok;
}

static void zero_image(struct fx *f)
{
    assert_int_equal(ftruncate(f->fd, 0), 0);
    assert_int_equal(ftruncate(f->fd, IMAGE), 0);
}

/* The primary's side up to COLO: the secondary's hashes (here: of this very image) over a
 * socket, tracking, the first sync pass and the final one (the hand-over). */
static void primary_handover(struct fx *f)
{
    struct stream_reader rp;
    struct stream_writer sw;
    char err[256] = "";
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(colo_disk_send_hashes(&f->vm, sv[0]), 0);
    assert_int_equal(stream_reader_init_fd(&rp, sv[1]), 0);
    assert_int_equal(colo_disk_sync_begin(&f->vm, &rp, err, sizeof(err)), 0);
    assert_int_equal(stream_writer_init_buf(&sw, 1 << 16), 0);
    assert_int_equal(colo_disk_sync_send(&f->vm, &sw, false), 0);
    assert_int_equal(colo_disk_sync_send(&f->vm, &sw, true), 0);
    stream_writer_destroy(&sw);
    stream_reader_destroy(&rp);
    close(sv[0]);
    close(sv[1]);
}

/* Checkpoint n's disk sections, as the primary appends them to its RAM segment, + EOF. */
static void checkpoint(struct fx *f, struct stream_writer *cp)
{
    assert_int_equal(stream_writer_init_buf(cp, 1 << 16), 0);
    assert_int_equal(colo_disk_close_epoch(&f->vm), 0);
    assert_int_equal(colo_disk_save_epoch(&f->vm, cp), 0);
    stream_put_eof(cp);
}

/* The secondary's side: load the segment (staging the writes), 0 or the load's error. */
static int stage(struct fx *f, struct stream_writer *cp, char *why, size_t whylen)
{
    struct devstate *ds = calloc(1, sizeof(*ds));
    struct stream_loader ld;
    struct stream_reader sr;
    const uint8_t *data;
    size_t len;
    int r;

    assert_non_null(ds);
    assert_int_equal(colo_disk_register(ds, &f->vm), 0);
    assert_int_equal(stream_loader_init(&ld, ds->reg, ds->nreg), 0);
    data = sw_buf_data(cp, &len);
    stream_reader_init_buf(&sr, data, len);
    r = stream_load_segment(&ld, &sr);
    if (why)
        snprintf(why, whylen, "%s", sr_errmsg(&sr));
    stream_reader_destroy(&sr);
    stream_loader_destroy(&ld);
    free(ds);
    return r;
}

/* Carry checkpoint n to a blank image (the secondary's, in effect) and apply it. */
static void replicate(struct fx *f, struct stream_writer *cp, uint64_t n)
{
    zero_image(f);
    assert_int_equal(stage(f, cp, NULL, 0), 0);
    assert_int_equal(colo_disk_apply(&f->vm, n), 0);
}

/* The hand-over gap: the final sync ends with dev_lock released, COLO's first epoch is begun
 * later; a write served in between (ioeventfd on the main loop) must be in checkpoint 1. */
static void test_write_between_final_sync_and_epochs_is_checkpoint_1(void **state)
{
    struct fx *f = *state;
    struct stream_writer cp;

    primary_handover(f);
    assert_int_equal(guest_write(f, 16, 4096, 1), VIRTIO_BLK_S_OK);
    colo_disk_epochs_begin(&f->vm); /* a no-op for a disk already logging: keeps the write */
    assert_int_equal(guest_write(f, 64, 512, 2), VIRTIO_BLK_S_OK);
    checkpoint(f, &cp);
    colo_disk_stop(&f->vm);
    replicate(f, &cp, 1);
    assert_true(image_holds(f, 16 * 512, 4096, 1));
    assert_true(image_holds(f, 64 * 512, 512, 2));
    stream_writer_destroy(&cp);
}

/* A 5 MiB write (more than one record may hold) succeeds and reaches the secondary whole. */
static void test_big_write_is_split_and_replicated(void **state)
{
    struct fx *f = *state;
    struct stream_writer cp;

    primary_handover(f);
    colo_disk_epochs_begin(&f->vm);
    assert_int_equal(guest_write(f, 8, 5 * MiB, 3), VIRTIO_BLK_S_OK);
    assert_true(image_holds(f, 8 * 512, 5 * MiB, 3));
    checkpoint(f, &cp);
    colo_disk_stop(&f->vm);
    replicate(f, &cp, 1);
    assert_true(image_holds(f, 8 * 512, 5 * MiB, 3));
    stream_writer_destroy(&cp);
}

/* A write the primary's image refuses (IOERR to the guest) is taken back out of the log; the
 * writes around it stay. */
static void test_failed_local_write_leaves_the_log(void **state)
{
    struct fx *f = *state;
    struct stream_writer cp;
    int rw = f->blk->disk.fd, ro = open(f->path, O_RDONLY);

    assert_true(ro >= 0);
    primary_handover(f);
    colo_disk_epochs_begin(&f->vm);
    assert_int_equal(guest_write(f, 8, 1024, 4), VIRTIO_BLK_S_OK);
    f->blk->disk.fd = ro; /* the image refuses writes (EBADF) */
    assert_int_equal(guest_write(f, 100, 2048, 5), VIRTIO_BLK_S_IOERR);
    f->blk->disk.fd = rw;
    assert_int_equal(guest_write(f, 200, 512, 6), VIRTIO_BLK_S_OK);
    checkpoint(f, &cp);
    colo_disk_stop(&f->vm);
    replicate(f, &cp, 1);
    assert_true(image_holds(f, 8 * 512, 1024, 4));
    assert_true(image_holds(f, 100 * 512, 2048, -1));
    assert_true(image_holds(f, 200 * 512, 512, 6));
    stream_writer_destroy(&cp);
    close(ro);
}

/* Replication broke: the write went through, the primary asked to leave COLO, and no
 * checkpoint can be made until the disks are stopped. */
static void assert_broken(struct fx *f)
{
    struct stream_writer cp;

    assert_true(colo_state.leave_requested);
    assert_int_equal(colo_disk_close_epoch(&f->vm), -ENOSPC);
    assert_int_equal(stream_writer_init_buf(&cp, 1 << 10), 0);
    assert_int_equal(colo_disk_save_epoch(&f->vm, &cp), -ENOSPC);
    stream_writer_destroy(&cp);
    assert_int_equal(colo_disk_close_epoch(&f->vm), -ENOSPC); /* and stays so */
    colo_disk_stop(&f->vm);
    assert_int_equal(colo_disk_close_epoch(&f->vm), 0);
}

static void test_log_over_the_limit_breaks_replication_not_the_write(void **state)
{
    struct fx *f = *state;

    f->mig.params.colo_disk_log_max = 1 * MiB;
    colo_state.mode = COLO_MODE_PRIMARY; /* colo_request_leave acts only on a primary */
    primary_handover(f);
    colo_disk_epochs_begin(&f->vm);
    assert_int_equal(guest_write(f, 8, MiB / 2, 7), VIRTIO_BLK_S_OK);
    assert_false(colo_state.leave_requested);
    assert_int_equal(guest_write(f, 4096, MiB, 8), VIRTIO_BLK_S_OK);
    assert_true(image_holds(f, 4096 * 512, MiB, 8));
    assert_broken(f);
}

static void test_injected_log_eio_breaks_replication_not_the_write(void **state)
{
    struct fx *f = *state;

    setenv("TANDEM_COLO_FAULT", "p-disk-log:2:eio", 1);
    assert_int_equal(colo_fault_init(), 0);
    colo_state.mode = COLO_MODE_PRIMARY;
    primary_handover(f);
    colo_disk_epochs_begin(&f->vm);
    assert_int_equal(guest_write(f, 8, 512, 9), VIRTIO_BLK_S_OK);
    assert_false(colo_state.leave_requested);
    assert_int_equal(guest_write(f, 16, 512, 10), VIRTIO_BLK_S_OK); /* logged write 2 */
    assert_true(image_holds(f, 16 * 512, 512, 10));
    assert_broken(f);
}

/* The secondary stages at most its own x-colo-disk-log-max per disk and checkpoint. */
static void test_secondary_rejects_a_checkpoint_over_its_limit(void **state)
{
    struct fx *f = *state;
    struct stream_writer cp;
    char why[256] = "";

    primary_handover(f);
    colo_disk_epochs_begin(&f->vm);
    assert_int_equal(guest_write(f, 8, MiB, 11), VIRTIO_BLK_S_OK);
    assert_int_equal(guest_write(f, 4096, MiB, 12), VIRTIO_BLK_S_OK);
    checkpoint(f, &cp);
    colo_disk_stop(&f->vm);
    f->mig.params.colo_disk_log_max = 2 * MiB - 512;
    zero_image(f);
    assert_int_equal(stage(f, &cp, why, sizeof(why)), -EFBIG);
    assert_non_null(strstr(why, "x-colo-disk-log-max"));
    colo_disk_discard(&f->vm);
    assert_int_equal(colo_disk_apply(&f->vm, 1), 0); /* nothing staged: nothing written */
    assert_true(image_holds(f, 8 * 512, MiB, -1));
    /* exactly the limit is fine */
    f->mig.params.colo_disk_log_max = 2 * MiB;
    replicate(f, &cp, 1);
    assert_true(image_holds(f, 4096 * 512, MiB, 12));
    stream_writer_destroy(&cp);
}

/* s-disk-apply:N:eio fails the second staged write of checkpoint N: the first is on the image,
 * the rest not (torn); other checkpoints apply whole. */
static void test_apply_eio_tears_at_the_second_write(void **state)
{
    struct fx *f = *state;
    struct stream_writer cp;

    primary_handover(f);
    colo_disk_epochs_begin(&f->vm);
    assert_int_equal(guest_write(f, 8, 512, 13), VIRTIO_BLK_S_OK);
    assert_int_equal(guest_write(f, 16, 512, 14), VIRTIO_BLK_S_OK);
    assert_int_equal(guest_write(f, 24, 512, 15), VIRTIO_BLK_S_OK);
    checkpoint(f, &cp);
    colo_disk_stop(&f->vm);
    setenv("TANDEM_COLO_FAULT", "s-disk-apply:3:eio", 1);
    assert_int_equal(colo_fault_init(), 0);
    zero_image(f);
    assert_int_equal(stage(f, &cp, NULL, 0), 0);
    assert_int_equal(colo_disk_apply(&f->vm, 3), -EIO);
    assert_true(image_holds(f, 8 * 512, 512, 13));
    assert_true(image_holds(f, 16 * 512, 512, -1));
    assert_true(image_holds(f, 24 * 512, 512, -1));
    colo_disk_discard(&f->vm);
    replicate(f, &cp, 2);
    assert_true(image_holds(f, 16 * 512, 512, 14));
    assert_true(image_holds(f, 24 * 512, 512, 15));
    stream_writer_destroy(&cp);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_write_between_final_sync_and_epochs_is_checkpoint_1),
        T(test_big_write_is_split_and_replicated),
        T(test_failed_local_write_leaves_the_log),
        T(test_log_over_the_limit_breaks_replication_not_the_write),
        T(test_injected_log_eio_breaks_replication_not_the_write),
        T(test_secondary_rejects_a_checkpoint_over_its_limit),
        T(test_apply_eio_tears_at_the_second_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
