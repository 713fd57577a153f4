/* incoming.c: the destination side: accept, load RAM and staged device state, verify, apply, run.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "block/virtio_blk.h"
#include "colo/colo.h"
#include "colo/disk.h"
#include "colo/handover.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/vm.h"
#include "migration/channel.h"
#include "migration/devstate.h"
#include "migration/migrate.h"
#include "migration/ram.h"
#include "migration/section.h"
#include "migration/stream.h"
#include "net/announce.h"
#include "virtio/virtio_mmio.h"

#define INCOMING_IO_TIMEOUT_MS 30000

struct incoming {
    struct migration *m;
    struct devstate ds;
    struct ram_sink sink;
    bool return_path;
    bool colo;
    bool is_file;
    int fd;
};

static int on_command(void *opaque, enum stream_cmd cmd, const uint8_t *payload, uint16_t len)
{
    struct incoming *in = opaque;

    switch (cmd) {
    case STREAM_CMD_OPEN_RETURN_PATH:
        if (in->is_file)
            return -EBADMSG;
        in->return_path = true;
        return 0;
    case STREAM_CMD_ENABLE_COLO:
    case STREAM_CMD_COLO_SESSION:
        return colo_handover_on_command(in->m, cmd, payload, len, in->fd, &in->colo);
    default:
        return -EBADMSG;
    }
}

static void send_loaded(int fd, int status)
{
    uint8_t msg[8];
    uint32_t code = RP_MSG_LOADED, st = (uint32_t)(status < 0 ? -status : status);

    for (int i = 0; i < 4; i++) {
        msg[i] = (uint8_t)(code >> (24 - 8 * i));
        msg[4 + i] = (uint8_t)(st >> (24 - 8 * i));
    }
    if (send(fd, msg, sizeof(msg), MSG_NOSIGNAL) != (ssize_t)sizeof(msg))
        log_warn("migration: cannot answer on the return path: %s", strerror(errno));
}

static void incoming_failed_cb(void *opaque)
{
    struct migration *m = opaque;

    if (m->incoming_failed)
        m->incoming_failed(m->vm);
    else
        vm_request_exit(m->vm, 1, "migration-failed");
}

static void incoming_done_cb(void *opaque)
{
    struct migration *m = opaque;

    /* The guest runs only now, with all of its state in place (QEMU's autostart), and the LAN
     * learns where it lives. */
    vm_set_state(m->vm, VM_PAUSED);
    virtio_cont_all(m->vm);
    vm_cont(m->vm);
    net_announce_all(m->vm);
}

/* Wait for the connection, waking up to notice a cancel. */
static int accept_conn(struct migration *m)
{
    struct pollfd p = {.fd = m->listen_fd, .events = POLLIN};

    while (!atomic_load(&m->cancel)) {
        int r = poll(&p, 1, 200);
        if (r < 0 && errno != EINTR)
            return -errno;
        if (r > 0)
            return chan_accept(m->listen_fd);
    }
    return -ECANCELED;
}

static void *incoming_thread(void *arg)
{
    struct incoming *in = arg;
    struct migration *m = in->m;
    struct vm *vm = m->vm;
    struct stream_loader ld;
    struct stream_reader sr;
    bool ld_ok = false, sr_ok = false;
    int fd, r;

    pthread_setname_np(pthread_self(), "mig/dst");
    /* No device work (tap RX, kicks) on a VM whose state is still arriving; the devices
     * restart from their loaded state when the guest runs (virtio_cont_all). */
    virtio_stop_all(vm);
    if (in->is_file) {
        fd = m->listen_fd;
        m->listen_fd = -1;
    } else {
        fd = accept_conn(m);
        if (fd < 0) {
            migration_set_error(m, "accept: %s", strerror(-fd));
            r = fd;
            goto fail;
        }
        /* The listening socket stays open: a COLO primary connects again for the heartbeat. */
    }
    pthread_mutex_lock(&m->lock);
    m->fd = fd;
    m->stats.start_ms = now_ms();
    pthread_mutex_unlock(&m->lock);
    migration_set_status(m, MIG_ACTIVE);

    in->sink =
        (struct ram_sink){.host = vm->mem.base, .ram_size = vm->mem.size, .page_size = PAGE_SIZE};
    in->fd = fd;
    r = devstate_init(&in->ds, vm, &in->sink);
    if (!r)
        r = colo_disk_register(&in->ds, vm);
    if (!r)
        r = stream_loader_init(&ld, in->ds.reg, in->ds.nreg);
    if (r) {
        migration_set_error(m, "cannot set up the loader: %s", strerror(-r));
        goto fail;
    }
    ld_ok = true;
    stream_loader_set_command_handler(&ld, on_command, in);
    r = stream_reader_init_fd(&sr, fd);
    if (r)
        goto fail;
    sr_ok = true;
    sr_set_timeout_ms(&sr, INCOMING_IO_TIMEOUT_MS);
    r = stream_load_header(&sr);
    if (!r)
        r = stream_load_segment(&ld, &sr);
    if (r) {
        migration_set_error(m, "%s", sr_errmsg(&sr));
        goto fail_answer;
    }
    if (in->colo && !colo_handover_session_ok()) {
        r = -EPROTO;
        migration_set_error(m, "the primary enabled COLO but sent no COLO session");
        goto fail_answer;
    }
    /* Everything arrived and the checksum matched: only now touch the vCPUs. */
    r = devstate_apply(&in->ds);
    if (!r && in->colo)
        r = colo_disk_sync_done(vm);
    if (r) {
        migration_set_error(m, "cannot apply vCPU state: %s", strerror(-r));
        goto fail_answer;
    }
    pthread_mutex_lock(&m->lock);
    m->stats.total_time_ms = now_ms() - m->stats.start_ms;
    m->stats.transferred = sr_offset(&sr);
    m->stats.normal = in->sink.data_pages;
    m->stats.duplicate = in->sink.zero_pages;
    pthread_mutex_unlock(&m->lock);
    if (in->return_path)
        send_loaded(fd, 0);
    log_info("migration: loaded %llu data pages, %llu zero pages",
             (unsigned long long)in->sink.data_pages, (unsigned long long)in->sink.zero_pages);

    if (in->colo) {
        colo_secondary_run(m, fd, &sr, &ld, &in->ds);
        /* returns after failover (the VM runs on its own) or on shutdown */
    } else {
        /* The source lets go of the images once it has our LOADED. */
        virtio_blk_lock_all(vm, 5000);
        migration_set_status(m, MIG_COMPLETED);
        loop_call(m->loop, incoming_done_cb, m);
    }
    stream_reader_destroy(&sr);
    stream_loader_destroy(&ld);
    pthread_mutex_lock(&m->lock);
    m->fd = -1;
    if (m->listen_fd >= 0) {
        close(m->listen_fd);
        m->listen_fd = -1;
    }
    pthread_mutex_unlock(&m->lock);
    close(fd);
    m->incoming = false;
    free(in);
    return NULL;

fail_answer:
    if (in->return_path)
        send_loaded(fd, r);
fail:
    if (sr_ok)
        stream_reader_destroy(&sr);
    if (ld_ok)
        stream_loader_destroy(&ld);
    migration_set_status(m, MIG_FAILED);
    pthread_mutex_lock(&m->lock);
    if (m->fd >= 0) {
        close(m->fd);
        m->fd = -1;
    }
    if (m->listen_fd >= 0) {
        close(m->listen_fd);
        m->listen_fd = -1;
    }
    pthread_mutex_unlock(&m->lock);
    /* Never run a half-loaded VM: the process ends (QEMU does the same). */
    loop_call(m->loop, incoming_failed_cb, m);
    free(in);
    return NULL;
}

int migrate_incoming_start(struct migration *m, const char *uri, char *err, size_t errlen)
{
    struct incoming *in;
    struct chan_uri u;
    int fd, r;

    if (m->thread_running || migration_get_status(m) != MIG_NONE) {
        snprintf(err, errlen, "an incoming migration was already started");
        return -EBUSY;
    }
    r = chan_parse_uri(uri, &u, err, errlen);
    if (r)
        return r;
    fd = chan_listen(&u, err, errlen);
    if (fd < 0)
        return fd;
    in = calloc(1, sizeof(*in));
    if (!in) {
        close(fd);
        return -ENOMEM;
    }
    in->m = m;
    in->is_file = u.kind == CHAN_FILE;
    m->listen_fd = fd;
    m->incoming = true;
    snprintf(m->uri, sizeof(m->uri), "%s", uri);
    migration_set_status(m, MIG_SETUP);
    r = pthread_create(&m->thread, NULL, incoming_thread, in);
    if (r) {
        close(fd);
        m->listen_fd = -1;
        free(in);
        snprintf(err, errlen, "cannot start the incoming thread: %s", strerror(r));
        return -r;
    }
    m->thread_running = true;
    return 0;
}
