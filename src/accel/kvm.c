/* kvm.c: the KVM engine: /dev/kvm VM with in-kernel irqchip and PIT, memory slots and the dirty
 * log, vCPU run/kick, interrupt lines, ioeventfd and irqfd. State get/set is in kvm_state.c. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "accel/accel.h"
#include "accel/kvm_int.h"
#include "core/log.h"
#include "core/vcpu.h"
#include "core/vm.h"

/* The kick signal: its handler does nothing; its only job is to make KVM_RUN return -EINTR. */
#define SIG_KICK SIGUSR1

static void kick_handler(int sig)
{
    (void)sig;
}

static int install_kick_handler(void)
{
    static bool done;
    struct sigaction sa;

    if (done)
        return 0;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = kick_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: KVM_RUN must come back with EINTR */
    if (sigaction(SIG_KICK, &sa, NULL) < 0)
        return -errno;
    done = true;
    return 0;
}

static void kvm_vm_destroy(struct vm *vm)
{
    struct kvm_vm *k = vm->accel_vm;

    if (!k)
        return;
    if (k->vm_fd >= 0)
        close(k->vm_fd);
    if (k->kvm_fd >= 0)
        close(k->kvm_fd);
    free(k->scratch);
    free(k);
    vm->accel_vm = NULL;
}

static int kvm_vm_init(struct vm *vm, const struct accel_config *cfg)
{
    struct kvm_pit_config pit = {.flags = 0};
    struct kvm_vm *k = calloc(1, sizeof(*k));
    int err, api;

    (void)cfg;
    if (!k)
        return -ENOMEM;
    k->kvm_fd = k->vm_fd = -1;
    vm->accel_vm = k;
    k->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (k->kvm_fd < 0) {
        err = -errno;
        log_err("kvm: cannot open /dev/kvm: %s", strerror(errno));
        goto err;
    }
    api = ioctl(k->kvm_fd, KVM_GET_API_VERSION, 0);
    if (api != KVM_API_VERSION) {
        err = -ENOTSUP;
        log_err("kvm: API version %d, expected %d", api, KVM_API_VERSION);
        goto err;
    }
    k->vm_fd = ioctl(k->kvm_fd, KVM_CREATE_VM, 0);
    if (k->vm_fd < 0) {
        err = -errno;
        log_err("kvm: KVM_CREATE_VM: %s", strerror(errno));
        goto err;
    }
    k->mmap_size = ioctl(k->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (k->mmap_size <= 0) {
        err = -EINVAL;
        goto err;
    }
    /* Needed by VMX for real mode; harmless (and may be refused) elsewhere. */
    if (ioctl(k->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0)
        log_debug("kvm: KVM_SET_TSS_ADDR: %s (ignored)", strerror(errno));
    if (ioctl(k->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
        err = -errno;
        log_err("kvm: KVM_CREATE_IRQCHIP: %s", strerror(errno));
        goto err;
    }
    if (ioctl(k->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
        err = -errno;
        log_err("kvm: KVM_CREATE_PIT2: %s", strerror(errno));
        goto err;
    }
    err = install_kick_handler();
    if (err)
        goto err;
    return 0;

err:
    kvm_vm_destroy(vm);
    return err;
}

static int set_slot(struct vm *vm, const struct mem_slot *s, bool log)
{
    struct kvm_vm *k = vm->accel_vm;
    struct kvm_userspace_memory_region r = {
        .slot = s->slot,
        .flags = log ? KVM_MEM_LOG_DIRTY_PAGES : 0,
        .guest_phys_addr = s->gpa,
        .memory_size = s->size,
        .userspace_addr = (uint64_t)(uintptr_t)(vm->mem.base + s->ram_offset),
    };

    if (ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        return -errno;
    return 0;
}

static int kvm_mem_register(struct vm *vm)
{
    struct kvm_vm *k = vm->accel_vm;

    k->scratch = calloc(BITMAP_LONGS(vm->mem.npages), sizeof(unsigned long));
    if (!k->scratch)
        return -ENOMEM;
    for (unsigned i = 0; i < vm->mem.nslots; i++) {
        int err = set_slot(vm, &vm->mem.slots[i], false);
        if (err) {
            log_err("kvm: KVM_SET_USER_MEMORY_REGION slot %u: %s", i, strerror(-err));
            return err;
        }
    }
    return 0;
}

static int kvm_dirty_log(struct vm *vm, bool on)
{
    struct kvm_vm *k = vm->accel_vm;

    for (unsigned i = 0; i < vm->mem.nslots; i++) {
        int err = set_slot(vm, &vm->mem.slots[i], on);
        if (err)
            return err;
    }
    k->logging = on;
    return 0;
}

static long kvm_dirty_harvest(struct vm *vm, unsigned long *out)
{
    struct kvm_vm *k = vm->accel_vm;
    long added = 0;

    if (!k->logging)
        return 0;
    for (unsigned i = 0; i < vm->mem.nslots; i++) {
        const struct mem_slot *s = &vm->mem.slots[i];
        uint64_t first = s->ram_offset >> PAGE_SHIFT;
        uint64_t n = s->size >> PAGE_SHIFT;
        struct kvm_dirty_log dl = {.slot = s->slot, .dirty_bitmap = k->scratch};

        memset(k->scratch, 0, BITMAP_LONGS(n) * sizeof(unsigned long));
        if (ioctl(k->vm_fd, KVM_GET_DIRTY_LOG, &dl) < 0)
            return -errno;
        for (uint64_t w = 0; w < BITMAP_LONGS(n); w++) {
            unsigned long bits = k->scratch[w];
            while (bits) {
                uint64_t p = first + w * BITS_PER_LONG + (uint64_t)__builtin_ctzl(bits);
                bits &= bits - 1;
                if (p >= first + n)
                    break;
                if (!bitmap_test(out, p)) {
                    bitmap_set(out, p);
                    added++;
                }
            }
        }
    }
    return added;
}

static void kvm_vcpu_destroy(struct vcpu *v)
{
    struct kvm_vcpu *kv = v->accel_vcpu;
    struct kvm_vm *k = v->vm->accel_vm;

    if (!kv)
        return;
    if (kv->run)
        munmap(kv->run, (size_t)k->mmap_size);
    if (kv->fd >= 0)
        close(kv->fd);
    free(kv);
    v->accel_vcpu = NULL;
}

static int kvm_vcpu_init(struct vcpu *v)
{
    struct kvm_vm *k = v->vm->accel_vm;
    struct kvm_vcpu *kv = calloc(1, sizeof(*kv));
    int err;

    if (!kv)
        return -ENOMEM;
    kv->fd = -1;
    v->accel_vcpu = kv;
    kv->fd = ioctl(k->vm_fd, KVM_CREATE_VCPU, v->id);
    if (kv->fd < 0) {
        err = -errno;
        log_err("vcpu%d: KVM_CREATE_VCPU: %s", v->id, strerror(errno));
        goto err;
    }
    kv->run = mmap(NULL, (size_t)k->mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, kv->fd, 0);
    if (kv->run == MAP_FAILED) {
        err = -errno;
        kv->run = NULL;
        goto err;
    }
    err = kvm_vcpu_setup(v);
    if (err)
        goto err;
    return 0;

err:
    kvm_vcpu_destroy(v);
    return err;
}

static void kvm_vcpu_kick(struct vcpu *v)
{
    struct kvm_vcpu *kv = v->accel_vcpu;

    __atomic_store_n(&kv->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    if (v->thread_started)
        pthread_kill(v->thread, SIG_KICK);
}

static void kvm_vcpu_arm(struct vcpu *v)
{
    struct kvm_vcpu *kv = v->accel_vcpu;

    /* Cleared under vm->lock: a pauser sets it under the same lock before signalling. */
    __atomic_store_n(&kv->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
}

static void fill_exit(struct vcpu *v, struct accel_exit *e)
{
    struct kvm_vcpu *kv = v->accel_vcpu;
    struct kvm_vm *k = v->vm->accel_vm;
    struct kvm_run *run = kv->run;

    memset(e, 0, sizeof(*e));
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        /* data_offset and count come from the kernel; still keep them inside the run page. */
        if (run->io.data_offset + (uint64_t)run->io.size * run->io.count > (uint64_t)k->mmap_size) {
            e->reason = ACCEL_EXIT_NONE;
            return;
        }
        e->reason = ACCEL_EXIT_PIO;
        e->pio.port = run->io.port;
        e->pio.size = run->io.size;
        e->pio.count = run->io.count;
        e->pio.is_write = run->io.direction == KVM_EXIT_IO_OUT;
        e->pio.data = (uint8_t *)run + run->io.data_offset;
        kv->io_pending = true;
        return;
    case KVM_EXIT_MMIO:
        e->reason = ACCEL_EXIT_MMIO;
        e->mmio.gpa = run->mmio.phys_addr;
        e->mmio.len = run->mmio.len;
        e->mmio.is_write = run->mmio.is_write;
        e->mmio.data = run->mmio.data;
        kv->io_pending = true;
        return;
    case KVM_EXIT_INTR:
        e->reason = ACCEL_EXIT_KICKED;
        return;
    case KVM_EXIT_HLT:
        /* Only without an in-kernel LAPIC; ours has one. Treat as a pause point. */
        e->reason = ACCEL_EXIT_HLT;
        return;
    case KVM_EXIT_SHUTDOWN:
        e->reason = ACCEL_EXIT_SHUTDOWN;
        return;
    case KVM_EXIT_SYSTEM_EVENT:
        e->reason = run->system_event.type == KVM_SYSTEM_EVENT_RESET ? ACCEL_EXIT_RESET
                                                                     : ACCEL_EXIT_POWEROFF;
        return;
    case KVM_EXIT_FAIL_ENTRY:
        e->reason = ACCEL_EXIT_INTERNAL_ERROR;
        snprintf(e->msg, sizeof(e->msg), "entry failed, reason 0x%llx",
                 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        return;
    case KVM_EXIT_INTERNAL_ERROR:
        e->reason = ACCEL_EXIT_INTERNAL_ERROR;
        snprintf(e->msg, sizeof(e->msg), "KVM internal error, suberror %u", run->internal.suberror);
        return;
    default:
        e->reason = ACCEL_EXIT_INTERNAL_ERROR;
        snprintf(e->msg, sizeof(e->msg), "unhandled KVM exit reason %u", run->exit_reason);
        return;
    }
}

static int kvm_vcpu_run(struct vcpu *v, struct accel_exit *e)
{
    struct kvm_vcpu *kv = v->accel_vcpu;

    if (ioctl(kv->fd, KVM_RUN, 0) < 0) {
        kv->io_pending = false;
        if (errno == EINTR || errno == EAGAIN) {
            memset(e, 0, sizeof(*e));
            e->reason = ACCEL_EXIT_KICKED;
            return 0;
        }
        return -errno;
    }
    kv->io_pending = false;
    fill_exit(v, e);
    return 0;
}

/* Complete an I/O instruction whose data we supplied, without running further guest code,
 * so the saved register state is consistent (see KVM API: KVM_EXIT_IO). */
static void kvm_vcpu_complete_io(struct vcpu *v)
{
    struct kvm_vcpu *kv = v->accel_vcpu;

    if (!kv->io_pending)
        return;
    __atomic_store_n(&kv->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    if (ioctl(kv->fd, KVM_RUN, 0) < 0 && errno != EINTR && errno != EAGAIN)
        log_warn("vcpu%d: completing I/O: %s", v->id, strerror(errno));
    kv->io_pending = false;
}

static int kvm_irq_line(struct vm *vm, uint32_t gsi, int level)
{
    struct kvm_vm *k = vm->accel_vm;
    struct kvm_irq_level irq = {.irq = gsi, .level = (uint32_t)level};

    return ioctl(k->vm_fd, KVM_IRQ_LINE, &irq) < 0 ? -errno : 0;
}

static int kvm_ioeventfd(struct vm *vm, uint64_t addr, uint32_t len, uint64_t datamatch, int fd,
                         bool assign)
{
    struct kvm_vm *k = vm->accel_vm;
    struct kvm_ioeventfd io = {
        .datamatch = datamatch,
        .addr = addr,
        .len = len,
        .fd = fd,
        .flags = KVM_IOEVENTFD_FLAG_DATAMATCH | (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
    };

    return ioctl(k->vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

static int kvm_irqfd(struct vm *vm, uint32_t gsi, int fd, int resample_fd, bool assign)
{
    struct kvm_vm *k = vm->accel_vm;
    struct kvm_irqfd f = {
        .fd = (uint32_t)fd,
        .gsi = gsi,
        .flags = assign ? KVM_IRQFD_FLAG_RESAMPLE : KVM_IRQFD_FLAG_DEASSIGN,
        .resamplefd = assign ? (uint32_t)resample_fd : 0,
    };

    return ioctl(k->vm_fd, KVM_IRQFD, &f) < 0 ? -errno : 0;
}

const struct accel_ops accel_kvm_ops = {
    .name = "kvm",
    .vm_init = kvm_vm_init,
    .vm_destroy = kvm_vm_destroy,
    .mem_register = kvm_mem_register,
    .dirty_log = kvm_dirty_log,
    .dirty_harvest = kvm_dirty_harvest,
    .vcpu_init = kvm_vcpu_init,
    .vcpu_destroy = kvm_vcpu_destroy,
    .vcpu_reset = kvm_vcpu_reset,
    .vcpu_run = kvm_vcpu_run,
    .vcpu_kick = kvm_vcpu_kick,
    .vcpu_arm = kvm_vcpu_arm,
    .vcpu_complete_io = kvm_vcpu_complete_io,
    .cpu_state_get = kvm_cpu_state_get,
    .cpu_state_set = kvm_cpu_state_set,
    .vm_state_get = kvm_vm_state_get,
    .vm_state_set = kvm_vm_state_set,
    .irq_line = kvm_irq_line,
    .ioeventfd = kvm_ioeventfd,
    .irqfd = kvm_irqfd,
};
