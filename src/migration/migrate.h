/* migrate.h: live migration: parameters, capabilities, statistics, outgoing and incoming runs.
 *
 *   source (thread "mig/src")                destination (thread "mig/dst")
 *   connect ─────── header, OPEN_RETURN_PATH[, ENABLE_COLO] ──────> accept, check
 *   dirty log on; RAM START (every page)                              RAM -> guest RAM
 *   RAM PART × n (pages dirtied meanwhile)  until the rest fits downtime-limit
 *   pause vCPUs; RAM END; cpu × n, x86-chips, devices (FULL); EOF(crc) ─> verify crc, apply
 *                                       <──── return path: LOADED, status
 *   completed (source stays paused)                                   run (or enter COLO)
 *
 * A failure on either side before LOADED leaves the source running and the destination
 * exiting without ever running the guest.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct vm;
struct loop;
struct colo;

/* QAPI MigrationStatus names. */
enum mig_status {
    MIG_NONE = 0,
    MIG_SETUP,
    MIG_ACTIVE,
    MIG_DEVICE,
    MIG_COMPLETED,
    MIG_FAILED,
    MIG_CANCELLING,
    MIG_CANCELLED,
    MIG_COLO,
    MIG_STATUS__MAX
};
const char *mig_status_name(enum mig_status s);

/* Return-path messages (destination -> source), be32 code then payload. 0 is invalid. */
enum rp_msg {
    RP_MSG_INVALID = 0,
    RP_MSG_LOADED = 0x4c4f4144, /* "LOAD" + be32 status: 0 ok, else a positive errno */
};

struct mig_params {
    uint64_t downtime_limit_ms; /* default 300 (QEMU's) */
    uint64_t max_bandwidth;     /* bytes/s; 0 = unlimited (default) */
    uint32_t max_iterations;    /* x-max-iterations: give up (non-convergence) after this many */
    /* COLO (see src/colo) */
    uint64_t checkpoint_delay_ms;   /* x-checkpoint-delay */
    uint64_t heartbeat_interval_ms; /* x-heartbeat-interval (tandem) */
    uint64_t heartbeat_timeout_ms;  /* x-heartbeat-timeout (tandem) */
    uint64_t colo_disk_log_max;     /* x-colo-disk-log-max (tandem): bytes per disk and epoch */
    uint64_t colo_io_timeout_ms;    /* x-colo-io-timeout (tandem): stream waits, apply base */
    uint64_t colo_buffer_max;       /* x-colo-buffer-max (tandem): checkpoint buffer, bytes */
    uint64_t colo_hybrid; /* x-colo-mode (tandem): 0 "periodic", 1 "hybrid" (docs/hybrid.md) */
    uint64_t compare_timeout_ms; /* x-compare-timeout (tandem, hybrid): an unmatched frame's wait */
};

struct mig_caps {
    bool events;
    bool x_colo;
};

struct mig_stats {
    uint64_t transferred; /* bytes on the wire */
    uint64_t remaining;   /* bytes of dirty RAM still to send */
    uint64_t total;       /* bytes of guest RAM */
    uint64_t duplicate;   /* zero pages sent as markers */
    uint64_t normal;      /* pages sent with data */
    uint64_t normal_bytes;
    uint64_t dirty_pages_rate; /* pages/s dirtied during the last iteration */
    uint64_t dirty_sync_count; /* iterations */
    uint64_t mbps;             /* last iteration's throughput, Mbit/s */
    uint64_t start_ms;
    uint64_t setup_time_ms;
    uint64_t total_time_ms;
    uint64_t downtime_ms;
    uint64_t downtime_us;
    uint64_t zero_skipped; /* zero pages left out of the first round (the destination is fresh) */
    /* COLO's initial disk sync (colo/disk.h), when this run had one: query-migrate "colo-disk" */
    bool colo_disk;
    uint64_t disk_chunks, disk_chunks_differ, disk_chunks_sent, disk_bytes_sent;
};

struct migration {
    struct vm *vm;
    struct loop *loop;
    pthread_mutex_t lock; /* guards status, error, stats, params */
    enum mig_status status;
    char error[256];
    struct mig_params params;
    struct mig_caps caps;
    struct mig_stats stats;
    bool incoming;
    pthread_t thread;
    bool thread_running;
    atomic_bool cancel;
    int fd;        /* migration connection, -1 when none */
    int listen_fd; /* incoming: listening socket, -1 when none */
    char uri[300];
    /* Called on the main loop when the status changes (QMP: MIGRATION event). */
    void (*notify)(void *opaque, enum mig_status s);
    void *notify_opaque;
    /* Incoming ended: the process should exit with this status (1) on failure. */
    void (*incoming_failed)(void *opaque);
    struct colo *colo;      /* set when x-colo is on and the pair is running */
    bool colo_supported;    /* x-colo is offered in query-migrate-capabilities */
    bool incoming_deferred; /* --incoming defer: waiting for migrate-incoming */
    /* x-checkpoint-delay changed: COLO checkpoints at once (as QEMU). */
    void (*params_changed)(struct migration *m);
};

void migration_init(struct migration *m, struct vm *vm, struct loop *loop);
void migration_destroy(struct migration *m);

/* Start an outgoing migration to uri. Returns 0 or -errno with a message (QMP error). A VM that
 * arrived by an incoming migration (or a COLO secondary that took over) may be a source once
 * that run completed. */
int migrate_start(struct migration *m, const char *uri, char *err, size_t errlen);
/* The same over fd, a socket already connected to uri (which the run owns from now on, also
 * on failure); uri is still what a COLO primary connects to for the heartbeat. */
int migrate_start_fd(struct migration *m, const char *uri, int fd, char *err, size_t errlen);
int migrate_cancel(struct migration *m);
/* Start listening (or open the snapshot file) and load in the background; the VM must be
 * created with start_paused and be in state inmigrate. */
int migrate_incoming_start(struct migration *m, const char *uri, char *err, size_t errlen);

/* Status change (any thread): records it and posts the notification to the main loop. */
void migration_set_status(struct migration *m, enum mig_status s);
enum mig_status migration_get_status(struct migration *m);
/* Record a failure message (first wins until the next start). */
void migration_set_error(struct migration *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
