/* vcpu.c: per-vCPU thread: KVM_RUN, exit dispatch to the PIO/MMIO buses, and parking at the
 * barrier. */
#include "core/vcpu.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86.h"
#include "core/log.h"
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

int vcpu_create(struct vm *vm, int id, struct vcpu **out)
{
    struct vcpu *v = calloc(1, sizeof(*v));
    int err;

    if (!v)
        return -ENOMEM;
    v->vm = vm;
    v->id = id;
    v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, id);
    if (v->fd < 0) {
        err = -errno;
        log_err("vcpu%d: KVM_CREATE_VCPU: %s", id, strerror(errno));
        goto err_free;
    }
    v->run = mmap(NULL, (size_t)vm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (v->run == MAP_FAILED) {
        err = -errno;
        v->run = NULL;
        goto err_fd;
    }
    err = x86_vcpu_init(v);
    if (err)
        goto err_map;
    err = install_kick_handler();
    if (err)
        goto err_map;
    *out = v;
    return 0;

err_map:
    munmap(v->run, (size_t)vm->vcpu_mmap_size);
err_fd:
    close(v->fd);
err_free:
    free(v);
    return err;
}

void vcpu_destroy(struct vcpu *v)
{
    if (!v)
        return;
    if (v->run)
        munmap(v->run, (size_t)v->vm->vcpu_mmap_size);
    if (v->fd >= 0)
        close(v->fd);
    free(v);
}

void vcpu_kick(struct vcpu *v)
{
    __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    if (v->thread_started)
        pthread_kill(v->thread, SIG_KICK);
}

static void handle_io(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
    uint32_t size = run->io.size;

    /* data_offset and count come from the kernel; still keep them inside the run page. */
    if (run->io.data_offset + (uint64_t)size * run->io.count > (uint64_t)v->vm->vcpu_mmap_size)
        return;
    for (uint32_t i = 0; i < run->io.count; i++, data += size) {
        int r = bus_dispatch(&v->vm->pio, run->io.port, data, size, is_write);
        if (r == -ENOENT)
            log_debug("vcpu%d: unmapped port %s 0x%x size %u", v->id, is_write ? "write" : "read",
                      run->io.port, size);
    }
}

static void handle_mmio(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    int r = bus_dispatch(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len,
                         run->mmio.is_write);

    if (r)
        log_debug("vcpu%d: unmapped mmio %s 0x%llx len %u", v->id,
                  run->mmio.is_write ? "write" : "read", (unsigned long long)run->mmio.phys_addr,
                  run->mmio.len);
}

/* Handle one exit. Returns false when the vCPU cannot continue (internal error). */
static bool handle_exit(struct vcpu *v)
{
    struct kvm_run *run = v->run;

    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        handle_io(v);
        v->io_pending = true;
        return true;
    case KVM_EXIT_MMIO:
        handle_mmio(v);
        v->io_pending = true;
        return true;
    case KVM_EXIT_INTR:
        return true;
    case KVM_EXIT_HLT:
        /* Only without an in-kernel LAPIC; ours has one. Treat as a pause point. */
        return true;
    case KVM_EXIT_SHUTDOWN:
        log_info("vcpu%d: triple fault, resetting", v->id);
        vm_request_reset(v->vm);
        return true;
    case KVM_EXIT_SYSTEM_EVENT:
        if (run->system_event.type == KVM_SYSTEM_EVENT_RESET)
            vm_request_reset(v->vm);
        else
            vm_request_exit(v->vm, 0, "guest-shutdown");
        return true;
    case KVM_EXIT_FAIL_ENTRY:
        vm_internal_error(v->vm, "vcpu%d: entry failed, reason 0x%llx", v->id,
                          (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        return false;
    case KVM_EXIT_INTERNAL_ERROR:
        vm_internal_error(v->vm, "vcpu%d: KVM internal error, suberror %u", v->id,
                          run->internal.suberror);
        return false;
    default:
        vm_internal_error(v->vm, "vcpu%d: unhandled exit reason %u", v->id, run->exit_reason);
        return false;
    }
}

/* Complete an I/O instruction whose data we supplied, without running further guest code,
 * so the saved register state is consistent (see KVM API: KVM_EXIT_IO). */
static void complete_pending_io(struct vcpu *v)
{
    if (!v->io_pending)
        return;
    __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    if (ioctl(v->fd, KVM_RUN, 0) < 0 && errno != EINTR && errno != EAGAIN)
        log_warn("vcpu%d: completing I/O: %s", v->id, strerror(errno));
    v->io_pending = false;
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *v = arg;
    struct vm *vm = v->vm;
    bool alive = true;

    while (alive) {
        pthread_mutex_lock(&vm->lock);
        if ((vm->pause_depth > 0 || atomic_load(&vm->quit)) && v->io_pending) {
            pthread_mutex_unlock(&vm->lock);
            complete_pending_io(v);
            continue;
        }
        if (vm->pause_depth > 0 || atomic_load(&vm->quit)) {
            v->parked = true;
            vm->nparked++;
            pthread_cond_broadcast(&vm->cond_paused);
            while (vm->pause_depth > 0 && !atomic_load(&vm->quit))
                pthread_cond_wait(&vm->cond_resume, &vm->lock);
            vm->nparked--;
            v->parked = false;
            if (atomic_load(&vm->quit)) {
                pthread_mutex_unlock(&vm->lock);
                break;
            }
        }
        /* Cleared under the lock: a pauser sets it under the same lock before kicking. */
        __atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
        pthread_mutex_unlock(&vm->lock);

        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                v->io_pending = false;
                continue;
            }
            vm_internal_error(vm, "vcpu%d: KVM_RUN: %s", v->id, strerror(errno));
            alive = false;
            break;
        }
        v->io_pending = false;
        v->exits++;
        alive = handle_exit(v);
    }

    if (!alive) {
        /* Stay parked as a dead vCPU so the barrier still counts us. */
        pthread_mutex_lock(&vm->lock);
        v->parked = true;
        vm->nparked++;
        pthread_cond_broadcast(&vm->cond_paused);
        while (!atomic_load(&vm->quit))
            pthread_cond_wait(&vm->cond_resume, &vm->lock);
        vm->nparked--;
        pthread_mutex_unlock(&vm->lock);
    }
    pthread_mutex_lock(&vm->lock);
    vm->nrunning_threads--;
    pthread_cond_broadcast(&vm->cond_paused);
    pthread_mutex_unlock(&vm->lock);
    return NULL;
}

int vcpu_start_thread(struct vcpu *v)
{
    char name[16];
    int err;

    pthread_mutex_lock(&v->vm->lock);
    v->vm->nrunning_threads++;
    pthread_mutex_unlock(&v->vm->lock);
    err = pthread_create(&v->thread, NULL, vcpu_thread, v);
    if (err) {
        pthread_mutex_lock(&v->vm->lock);
        v->vm->nrunning_threads--;
        pthread_mutex_unlock(&v->vm->lock);
        return -err;
    }
    snprintf(name, sizeof(name), "vcpu%d", v->id);
    pthread_setname_np(v->thread, name);
    v->thread_started = true;
    return 0;
}
