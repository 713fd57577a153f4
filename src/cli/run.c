/* run.c: `tandem run`: options, machine assembly (RAM, vCPUs, devices, loader, QMP), main loop. */
#include "cli/run.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "arch/x86.h"
#include "block/virtio_blk.h"
#include "block/raw.h"
#include "boot/multiboot.h"
#include "cli/options.h"
#include "cluster/cluster.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/vcpu.h"
#include "core/vm.h"
#include "devices/debugexit.h"
#include "devices/resetctl.h"
#include "devices/serial.h"
#include "migration/migrate.h"
#include "net/virtio_net.h"
#include "qmp/cmds_migration.h"
#include "qmp/cmds_colo.h"
#include "qmp/cmds_accel.h"
#include "colo/colo.h"
#include "colo/fault.h"
#include "qmp/cmds_net.h"
#include "qmp/cmds_reprotect.h"
#include "colo/reprotect.h"
#include "qmp/cmds_vm.h"
#include "qmp/server.h"
#include "virtio/virtio_mmio.h"

struct run_opts {
    const char *kernel;
    const char *append;
    const char *serial;
    const char *qmp;
    const char *incoming;
    const char *colo_fence;
    char cluster_group[CLUSTER_GROUP_MAX]; /* --cluster corosync: the CPG group, else "" */
    const char *colo_reprotect;
    struct accel_config accel;
    uint64_t mem;
    long cpus;
    bool paused;
    bool no_reboot;
    const char *disks[VIRTIO_MMIO_SLOTS]; /* --disk specs, in order */
    const char *nets[VIRTIO_MMIO_SLOTS];  /* --net specs, in order */
    int ndisks, nnets;
};

static void run_usage(FILE *f)
{
    fprintf(
        f,
        "Usage: tandem run --kernel FILE [OPTIONS]\n"
        "       tandem run --incoming URI [OPTIONS]\n"
        "\n"
        "Run a virtual machine that boots a Multiboot (v1) ELF image, on KVM or on tandem's\n"
        "own x86-64 emulator.\n"
        "\n"
        "  -k, --kernel FILE     Multiboot image to boot (required unless --incoming;\n"
        "                        with --incoming it is used again on a guest reset)\n"
        "  -a, --append CMDLINE  kernel command line (passed as \"FILE CMDLINE\", as QEMU does)\n"
        "  -m, --memory SIZE     guest RAM; suffix K/M/G, bare number = MiB (default 256M)\n"
        "  -c, --cpus N          vCPUs, 1-%d (default 1)\n"
        "      --accel ENGINE    kvm, emu or auto (default auto: KVM when /dev/kvm opens,\n"
        "                        else the emulator, said once on stderr); emu,icount=on makes\n"
        "                        guest time follow the instruction count (deterministic)\n"
        "      --serial BACKEND  COM1: stdio, file:PATH or none (default stdio)\n"
        "      --qmp unix:PATH   QMP control socket (QEMU wire protocol)\n"
        "      --disk path=FILE[,readonly=on]  virtio-blk on a raw image (repeatable)\n"
        "      --net tap=IFNAME[,mac=MAC]      virtio-net on a tap device (repeatable)\n"
        "      --incoming URI    wait for a migration: tcp:HOST:PORT, unix:PATH, file:PATH\n"
        "                        (a snapshot), or defer (then QMP migrate-incoming)\n"
        "      --colo-fence CMD  COLO: run CMD (sh -c, TANDEM_COLO_ROLE=primary|secondary) when\n"
        "                        the peer is lost; a secondary takes over, a primary runs on,\n"
        "                        only if it exits 0 (default: no fence; docs/colo.md)\n"
        "      --cluster corosync[,group=NAME]  join corosync's CPG group NAME (default\n"
        "                        tandem: name it after the VM) and follow votequorum; COLO's\n"
        "                        failover policy then asks the cluster (default: off)\n"
        "      --colo-reprotect URI  COLO: whenever this VM runs unprotected after a failover\n"
        "                        (it took over, or left COLO unfenced), connect to URI (tcp: or\n"
        "                        unix:) every second and start a new session as primary when a\n"
        "                        new secondary accepts (docs/colo.md, \"Re-protection\")\n"
        "  -S, --paused          start paused; `cont` over QMP starts the vCPUs\n"
        "      --no-reboot       exit instead of rebooting when the guest resets\n"
        "  -v, --verbose         more logging (repeat for debug); or TANDEM_LOG=error|warning|\n"
        "                        info|debug\n"
        "  -h, --help            this text\n"
        "  -V, --version         print the version\n"
        "\n"
        "Exit status: the value the guest writes to the debug-exit port 0xf4; 0 after QMP\n"
        "`quit`; 1 on a VMM error; 2 on a usage error; 128+N after signal N.\n",
        VM_MAX_CPUS);
}

enum {
    OPT_SERIAL = 256,
    OPT_QMP,
    OPT_NO_REBOOT,
    OPT_INCOMING,
    OPT_DISK,
    OPT_NET,
    OPT_COLO_FENCE,
    OPT_CLUSTER,
    OPT_COLO_REPROTECT,
    OPT_ACCEL
};

static int parse_opts(int argc, char **argv, struct run_opts *o)
{
    static const struct option longopts[] = {
        {"kernel", required_argument, NULL, 'k'},
        {"append", required_argument, NULL, 'a'},
        {"memory", required_argument, NULL, 'm'},
        {"cpus", required_argument, NULL, 'c'},
        {"serial", required_argument, NULL, OPT_SERIAL},
        {"qmp", required_argument, NULL, OPT_QMP},
        {"disk", required_argument, NULL, OPT_DISK},
        {"net", required_argument, NULL, OPT_NET},
        {"incoming", required_argument, NULL, OPT_INCOMING},
        {"colo-fence", required_argument, NULL, OPT_COLO_FENCE},
        {"cluster", required_argument, NULL, OPT_CLUSTER},
        {"colo-reprotect", required_argument, NULL, OPT_COLO_REPROTECT},
        {"accel", required_argument, NULL, OPT_ACCEL},
        {"paused", no_argument, NULL, 'S'},
        {"no-reboot", no_argument, NULL, OPT_NO_REBOOT},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c, verbose = 0;

    *o = (struct run_opts){.append = "", .serial = "stdio", .mem = 256ULL << 20, .cpus = 1};
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":k:a:m:c:SvhV", longopts, NULL)) != -1) {
        switch (c) {
        case 'k':
            o->kernel = optarg;
            break;
        case 'a':
            o->append = optarg;
            break;
        case 'm':
            if (parse_mem_size(optarg, &o->mem) || o->mem < (2ULL << 20) || o->mem % PAGE_SIZE) {
                fprintf(stderr, "tandem run: --memory: invalid size '%s' (e.g. 256M, 1G)\n",
                        optarg);
                return 2;
            }
            break;
        case 'c':
            if (parse_int_range(optarg, 1, VM_MAX_CPUS, &o->cpus)) {
                fprintf(stderr, "tandem run: --cpus: expected 1-%d, got '%s'\n", VM_MAX_CPUS,
                        optarg);
                return 2;
            }
            break;
        case OPT_SERIAL:
            o->serial = optarg;
            break;
        case OPT_QMP:
            o->qmp = optarg;
            break;
        case OPT_ACCEL: {
            char msg[128];
            if (accel_parse(optarg, &o->accel, msg, sizeof(msg))) {
                fprintf(stderr, "tandem run: %s\n", msg);
                return 2;
            }
            break;
        }
        case OPT_DISK:
        case OPT_NET:
            if (o->ndisks + o->nnets >= (int)VIRTIO_MMIO_SLOTS) {
                fprintf(stderr, "tandem run: at most %u --disk and --net in all\n",
                        VIRTIO_MMIO_SLOTS);
                return 2;
            }
            if (c == OPT_DISK)
                o->disks[o->ndisks++] = optarg;
            else
                o->nets[o->nnets++] = optarg;
            break;
        case OPT_INCOMING:
            o->incoming = optarg;
            break;
        case OPT_COLO_FENCE:
            o->colo_fence = optarg;
            break;
        case OPT_CLUSTER: {
            char msg[160];
            if (cluster_parse(optarg, o->cluster_group, msg, sizeof(msg)) < 0) {
                fprintf(stderr, "tandem run: %s\n", msg);
                return 2;
            }
            break;
        }
        case OPT_COLO_REPROTECT:
            o->colo_reprotect = optarg;
            break;
        case 'S':
            o->paused = true;
            break;
        case OPT_NO_REBOOT:
            o->no_reboot = true;
            break;
        case 'v':
            verbose++;
            break;
        case 'h':
            run_usage(stdout);
            return 1;
        case 'V':
            printf("tandem %s\n", TANDEM_VERSION);
            return 1;
        case ':':
            fprintf(stderr, "tandem run: option '%s' needs a value\n", argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "tandem run: unknown option '%s' (see --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tandem run: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!o->kernel && !o->incoming) {
        fprintf(stderr, "tandem run: --kernel FILE (or --incoming URI) is required\n");
        return 2;
    }
    if (verbose)
        log_set_level(verbose > 1 ? LOG_DEBUG : LOG_INFO);
    return 0;
}

struct machine {
    struct run_opts opts;
    struct loop *loop;
    struct vm vm;
    struct qmp_server *qmp;
    struct migration mig;
    int sigfd;
    int signal_status;
};

static int machine_boot(struct vm *vm, void *opaque)
{
    struct machine *m = opaque;
    struct mb_load_result res;
    char err[256] = "";
    int r;

    if (!m->opts.kernel) {
        log_err("reset: no --kernel to boot again");
        return -ENOENT;
    }
    r = multiboot_load_file(&vm->mem, m->opts.kernel, m->opts.append, &res, err, sizeof(err));
    if (r) {
        log_err("%s", err[0] ? err : strerror(-r));
        return r;
    }
    return x86_setup_multiboot_regs(vm->vcpus[0], res.entry, res.mbi_addr);
}

static void on_signal(void *opaque, uint32_t events)
{
    struct machine *m = opaque;
    struct signalfd_siginfo si;

    if (read(m->sigfd, &si, sizeof(si)) != sizeof(si))
        return;
    log_info("signal %u: shutting down", si.ssi_signo);
    m->signal_status = 128 + (int)si.ssi_signo;
    vm_request_exit(&m->vm, m->signal_status, "host-signal");
}

static void on_params_changed(struct migration *mig)
{
    if (colo_state.mode == COLO_MODE_PRIMARY)
        colo_request_checkpoint();
}

static int setup_signals(struct machine *m)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL))
        return -errno;
    m->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (m->sigfd < 0)
        return -errno;
    /* A QMP client that goes away must not kill us. */
    signal(SIGPIPE, SIG_IGN);
    return loop_add_fd(m->loop, m->sigfd, EPOLLIN, on_signal, m);
}

int run_main(int argc, char **argv)
{
    struct machine *m = calloc(1, sizeof(*m));
    struct vm_config cfg;
    char err[256] = "";
    int r, status = 1;

    if (!m)
        return 1;
    m->sigfd = -1;
    r = parse_opts(argc, argv, &m->opts);
    if (r) {
        free(m);
        return r == 1 ? 0 : r;
    }
    if (getenv("TANDEM_LOG")) {
        static const char *const levels[] = {"error", "warning", "info", "debug"};
        for (int i = 0; i < 4; i++)
            if (!strcmp(getenv("TANDEM_LOG"), levels[i]))
                log_set_level((enum log_level)i);
    }
    if (m->opts.kernel && access(m->opts.kernel, R_OK) < 0) {
        fprintf(stderr, "tandem run: --kernel: cannot read '%s': %s\n", m->opts.kernel,
                strerror(errno));
        free(m);
        return 2;
    }

    if (colo_fault_init() < 0) {
        fprintf(stderr, "tandem run: invalid TANDEM_COLO_FAULT (see docs/colo.md)\n");
        free(m);
        return 2;
    }
    m->loop = loop_new();
    if (!m->loop)
        goto out_free;
    if (setup_signals(m) < 0) {
        log_err("cannot set up signal handling");
        goto out_loop;
    }
    cfg = (struct vm_config){
        .mem_size = m->opts.mem, .ncpus = (int)m->opts.cpus, .accel = m->opts.accel};
    if (vm_create(&m->vm, &cfg, m->loop))
        goto out_loop;
    m->vm.boot = machine_boot;
    m->vm.boot_opaque = m;
    m->vm.no_reboot = m->opts.no_reboot;

    if (serial_create(&m->vm, m->opts.serial, err, sizeof(err)) < 0) {
        fprintf(stderr, "tandem run: %s\n", err);
        status = 2;
        goto out_vm;
    }
    /* An incoming guest's images are still locked by the source: lock them on arrival. */
    raw_defer_locks(m->opts.incoming != NULL);
    /* virtio-mmio slots in order: every --disk, then every --net (docs/virtio.md). */
    for (int i = 0; i < m->opts.ndisks + m->opts.nnets; i++) {
        int nd = m->opts.ndisks;
        if ((i < nd ? virtio_blk_create(&m->vm, m->opts.disks[i], err, sizeof(err))
                    : virtio_net_create(&m->vm, m->opts.nets[i - nd], err, sizeof(err))) < 0) {
            fprintf(stderr, "tandem run: %s\n", err);
            status = 2;
            goto out_vm;
        }
    }
    if (debugexit_create(&m->vm) < 0 || resetctl_create(&m->vm) < 0) {
        log_err("cannot create the platform devices");
        goto out_vm;
    }
    migration_init(&m->mig, &m->vm, m->loop);
    m->mig.colo_supported = true;
    m->mig.params_changed = on_params_changed;
    colo_init(&m->mig, &m->vm);
    colo_state.fence_cmd = m->opts.colo_fence;
    if (m->opts.qmp) {
        char path[256];
        if (qmp_parse_uri(m->opts.qmp, path, sizeof(path)) < 0) {
            fprintf(stderr, "tandem run: --qmp: expected unix:PATH, got '%s'\n", m->opts.qmp);
            status = 2;
            goto out_vm;
        }
        m->qmp = qmp_server_new(m->loop, path, err, sizeof(err));
        if (!m->qmp) {
            fprintf(stderr, "tandem run: --qmp: %s\n", err);
            goto out_vm;
        }
        if (qmp_register_vm_commands(m->qmp, &m->vm) < 0 ||
            qmp_register_accel_commands(m->qmp, &m->vm) < 0 ||
            qmp_register_net_commands(m->qmp, &m->vm) < 0 ||
            qmp_register_reprotect_commands(m->qmp, &m->mig) < 0)
            goto out_qmp;
        qmp_attach_vm_events(m->qmp, &m->vm);
        if (qmp_register_migration_commands(m->qmp, &m->mig) < 0 ||
            qmp_register_colo_commands(m->qmp) < 0)
            goto out_qmp;
    }

    /* Before the loop runs (QMP serves) and the guest starts: corosync not running is an error. */
    if (m->opts.cluster_group[0] &&
        cluster_start(m->opts.cluster_group, colo_cluster_event, NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "tandem run: --cluster: %s\n", err);
        goto out_qmp;
    }
    if (m->opts.incoming) {
        /* The state comes from the stream: no boot, vCPUs parked until it is applied. */
        m->vm.boot = NULL;
        if (vm_start(&m->vm, true) < 0)
            goto out_qmp;
        m->vm.boot = machine_boot;
        vm_set_state(&m->vm, VM_INMIGRATE);
        if (!strcmp(m->opts.incoming, "defer")) {
            m->mig.incoming_deferred = true;
        } else if (migrate_incoming_start(&m->mig, m->opts.incoming, err, sizeof(err)) < 0) {
            fprintf(stderr, "tandem run: --incoming: %s\n", err);
            status = 2;
            goto out_qmp;
        }
    } else if (vm_start(&m->vm, m->opts.paused) < 0) {
        goto out_qmp;
    }
    if (m->opts.colo_reprotect &&
        colo_reprotect_auto_start(&m->mig, m->opts.colo_reprotect, err, sizeof(err)) < 0) {
        fprintf(stderr, "tandem run: --colo-reprotect: %s\n", err);
        status = 2;
        goto out_qmp;
    }
    loop_run(m->loop);
    status = atomic_load(&m->vm.exit_status);
    if (status < 0)
        status = 0;

out_qmp:
    /* No cluster event reaches COLO from here on. */
    cluster_stop();
    colo_reprotect_auto_stop(); /* before the migration it starts goes */
    migration_destroy(&m->mig);
    vm_shutdown_vcpus(&m->vm);
    /* The threads are gone: their last notifications (SHUTDOWN, state) reach QMP, and none is
     * left queued (and leaked) behind loop_free. */
    loop_drain(m->loop);
    if (m->qmp)
        qmp_server_free(m->qmp);
out_vm:
    vm_destroy(&m->vm);
out_loop:
    if (m->sigfd >= 0)
        close(m->sigfd);
    loop_free(m->loop);
out_free:
    free(m);
    return status;
}
