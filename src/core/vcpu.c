/* vcpu.c: per-vCPU thread: the engine's run loop, exit dispatch to the PIO/MMIO buses, and
 * parking at the barrier (pause.c). Nothing here knows which engine runs. */
#include "core/vcpu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accel/accel.h"
#include "core/log.h"
#include "core/vm.h"

int vcpu_create(struct vm *vm, int id, struct vcpu **out)
{
    struct vcpu *v = calloc(1, sizeof(*v));
    int err;

    if (!v)
        return -ENOMEM;
    v->vm = vm;
    v->id = id;
    err = vm->accel->vcpu_init(v);
    if (err) {
        free(v);
        return err;
    }
    *out = v;
    return 0;
}

void vcpu_destroy(struct vcpu *v)
{
    if (!v)
        return;
    v->vm->accel->vcpu_destroy(v);
    free(v);
}

void vcpu_kick(struct vcpu *v)
{
    if (v)
        v->vm->accel->vcpu_kick(v);
}

void vcpu_pio(struct vcpu *v, uint16_t port, void *data, uint32_t size, bool is_write)
{
    if (bus_dispatch(&v->vm->pio, port, data, size, is_write) == -ENOENT)
        log_debug("vcpu%d: unmapped port %s 0x%x size %u", v->id, is_write ? "write" : "read", port,
                  size);
}

void vcpu_mmio(struct vcpu *v, uint64_t gpa, void *data, uint32_t len, bool is_write)
{
    if (bus_dispatch(&v->vm->mmio, gpa, data, len, is_write))
        log_debug("vcpu%d: unmapped mmio %s 0x%llx len %u", v->id, is_write ? "write" : "read",
                  (unsigned long long)gpa, len);
}

/* Handle one exit. Returns false when the vCPU cannot continue (internal error). */
static bool handle_exit(struct vcpu *v, struct accel_exit *e)
{
    switch (e->reason) {
    case ACCEL_EXIT_PIO: {
        uint8_t *data = e->pio.data;
        for (uint32_t i = 0; i < e->pio.count; i++, data += e->pio.size)
            vcpu_pio(v, e->pio.port, data, e->pio.size, e->pio.is_write);
        return true;
    }
    case ACCEL_EXIT_MMIO:
        vcpu_mmio(v, e->mmio.gpa, e->mmio.data, e->mmio.len, e->mmio.is_write);
        return true;
    case ACCEL_EXIT_NONE:
    case ACCEL_EXIT_KICKED:
    case ACCEL_EXIT_HLT: /* a pause point */
        return true;
    case ACCEL_EXIT_SHUTDOWN:
        log_info("vcpu%d: triple fault, resetting", v->id);
        vm_request_reset(v->vm);
        return true;
    case ACCEL_EXIT_RESET:
        vm_request_reset(v->vm);
        return true;
    case ACCEL_EXIT_POWEROFF:
        vm_request_exit(v->vm, 0, "guest-shutdown");
        return true;
    case ACCEL_EXIT_INTERNAL_ERROR:
        vm_internal_error(v->vm, "vcpu%d: %s", v->id, e->msg);
        return false;
    }
    vm_internal_error(v->vm, "vcpu%d: unknown exit %d", v->id, (int)e->reason);
    return false;
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *v = arg;
    struct vm *vm = v->vm;
    const struct accel_ops *ops = vm->accel;
    struct accel_exit e;
    bool alive = true;
    bool io_pending = false;

    while (alive) {
        pthread_mutex_lock(&vm->lock);
        if ((vm->pause_depth > 0 || atomic_load(&vm->quit)) && io_pending) {
            pthread_mutex_unlock(&vm->lock);
            if (ops->vcpu_complete_io)
                ops->vcpu_complete_io(v);
            io_pending = false;
            continue;
        }
        if (vm->pause_depth > 0 || atomic_load(&vm->quit)) {
            v->parked = true;
            __atomic_fetch_add(&vm->nparked, 1, __ATOMIC_RELEASE);
            pthread_cond_broadcast(&vm->cond_paused);
            while (vm->pause_depth > 0 && !atomic_load(&vm->quit))
                pthread_cond_wait(&vm->cond_resume, &vm->lock);
            __atomic_fetch_sub(&vm->nparked, 1, __ATOMIC_RELEASE);
            v->parked = false;
            if (atomic_load(&vm->quit)) {
                pthread_mutex_unlock(&vm->lock);
                break;
            }
        }
        /* Under the lock: a pauser kicks under the same lock, after raising pause_depth. */
        ops->vcpu_arm(v);
        pthread_mutex_unlock(&vm->lock);

        int r = ops->vcpu_run(v, &e);
        io_pending = false;
        if (r < 0) {
            vm_internal_error(vm, "vcpu%d: %s run: %s", v->id, ops->name, strerror(-r));
            alive = false;
            break;
        }
        v->exits++;
        io_pending = e.reason == ACCEL_EXIT_PIO || e.reason == ACCEL_EXIT_MMIO;
        alive = handle_exit(v, &e);
    }

    if (!alive) {
        /* Stay parked as a dead vCPU so the barrier still counts us. */
        pthread_mutex_lock(&vm->lock);
        v->parked = true;
        __atomic_fetch_add(&vm->nparked, 1, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&vm->cond_paused);
        while (!atomic_load(&vm->quit))
            pthread_cond_wait(&vm->cond_resume, &vm->lock);
        __atomic_fetch_sub(&vm->nparked, 1, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&vm->lock);
    }
    pthread_mutex_lock(&vm->lock);
    __atomic_fetch_sub(&vm->nrunning_threads, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&vm->cond_paused);
    pthread_mutex_unlock(&vm->lock);
    return NULL;
}

int vcpu_start_thread(struct vcpu *v)
{
    char name[16];
    int err;

    pthread_mutex_lock(&v->vm->lock);
    __atomic_fetch_add(&v->vm->nrunning_threads, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&v->vm->lock);
    err = pthread_create(&v->thread, NULL, vcpu_thread, v);
    if (err) {
        pthread_mutex_lock(&v->vm->lock);
        __atomic_fetch_sub(&v->vm->nrunning_threads, 1, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&v->vm->lock);
        return -err;
    }
    snprintf(name, sizeof(name), "vcpu%d", v->id);
    pthread_setname_np(v->thread, name);
    v->thread_started = true;
    return 0;
}
