/* vm.c: VM lifetime (engine, RAM, vCPUs), device inventory, run state and guest-driven events. */
#include "core/vm.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accel/accel.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/vcpu.h"

int vm_create(struct vm *vm, const struct vm_config *cfg, struct loop *loop)
{
    const struct accel_ops *ops;
    int err;

    memset(vm, 0, sizeof(*vm));
    vm->loop = loop;
    atomic_init(&vm->exit_status, -1);
    pthread_mutex_init(&vm->lock, NULL);
    pthread_mutex_init(&vm->dev_lock, NULL);
    /* pause.c's timed re-kick waits run on CLOCK_MONOTONIC: a wall-clock step never
     * stretches them. */
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) || pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) ||
        pthread_cond_init(&vm->cond_paused, &ca))
        return -EINVAL;
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&vm->cond_resume, NULL);
    bus_init(&vm->pio, "pio", 0x10000);
    bus_init(&vm->mmio, "mmio", 0);
    vm->state = VM_PRELAUNCH;

    if (cfg->ncpus < 1 || cfg->ncpus > VM_MAX_CPUS) {
        log_err("vm: --cpus must be between 1 and %d", VM_MAX_CPUS);
        return -EINVAL;
    }
    ops = accel_select(&cfg->accel);
    if (!ops)
        return -ENODEV;
    vm->accel_cfg = cfg->accel;
    err = ops->vm_init(vm, &cfg->accel);
    if (err)
        goto err;
    vm->accel = ops;
    err = gmem_init(&vm->mem, cfg->mem_size);
    if (err) {
        log_err("vm: cannot allocate %llu bytes of guest RAM: %s",
                (unsigned long long)cfg->mem_size, strerror(-err));
        goto err;
    }
    err = ops->mem_register(vm);
    if (err)
        goto err;
    vm->ncpus = cfg->ncpus;
    for (int i = 0; i < cfg->ncpus; i++) {
        err = vcpu_create(vm, i, &vm->vcpus[i]);
        if (err)
            goto err;
    }
    return 0;

err:
    vm_destroy(vm);
    return err;
}

int vm_irq_line(struct vm *vm, uint32_t gsi, int level)
{
    if (!vm->accel)
        return 0;
    return vm->accel->irq_line(vm, gsi, level);
}

void vm_shutdown_vcpus(struct vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    atomic_store(&vm->quit, true);
    for (int i = 0; i < vm->ncpus; i++)
        if (vm->vcpus[i])
            vcpu_kick(vm->vcpus[i]);
    pthread_cond_broadcast(&vm->cond_resume);
    pthread_mutex_unlock(&vm->lock);
    for (int i = 0; i < vm->ncpus; i++) {
        struct vcpu *v = vm->vcpus[i];
        if (v && v->thread_started) {
            pthread_join(v->thread, NULL);
            v->thread_started = false;
        }
    }
}

void vm_destroy(struct vm *vm)
{
    vm_shutdown_vcpus(vm);
    for (unsigned i = vm->ndevices; i-- > 0;)
        if (vm->devices[i].destroy)
            vm->devices[i].destroy(vm->devices[i].opaque);
    vm->ndevices = 0;
    for (int i = 0; i < vm->ncpus; i++) {
        vcpu_destroy(vm->vcpus[i]);
        vm->vcpus[i] = NULL;
    }
    vm->ncpus = 0;
    if (vm->accel)
        vm->accel->vm_destroy(vm);
    vm->accel = NULL;
    gmem_destroy(&vm->mem);
    bus_destroy(&vm->pio);
    bus_destroy(&vm->mmio);
}

int vm_add_device(struct vm *vm, const struct vm_device *dev)
{
    if (vm->ndevices >= VM_MAX_DEVICES)
        return -ENOSPC;
    if (vm_find_device(vm, dev->name, dev->instance))
        return -EEXIST;
    vm->devices[vm->ndevices++] = *dev;
    return 0;
}

struct vm_device *vm_find_device(struct vm *vm, const char *name, uint32_t instance)
{
    for (unsigned i = 0; i < vm->ndevices; i++)
        if (vm->devices[i].instance == instance && !strcmp(vm->devices[i].name, name))
            return &vm->devices[i];
    return NULL;
}

void *vm_device_state(struct vm *vm, const char *name, uint32_t instance)
{
    struct vm_device *d = vm_find_device(vm, name, instance);

    return d ? d->opaque : NULL;
}

int vm_start(struct vm *vm, bool start_paused)
{
    int err;

    if (vm->boot) {
        err = vm->boot(vm, vm->boot_opaque);
        if (err)
            return err;
    }
    pthread_mutex_lock(&vm->lock);
    if (start_paused) {
        vm->pause_depth++;
        vm->user_paused = true;
    }
    pthread_mutex_unlock(&vm->lock);
    for (int i = 0; i < vm->ncpus; i++) {
        err = vcpu_start_thread(vm->vcpus[i]);
        if (err) {
            log_err("vm: cannot start vcpu%d thread: %s", i, strerror(-err));
            return err;
        }
    }
    if (!start_paused)
        vm_set_state(vm, VM_RUNNING);
    return 0;
}

struct state_note {
    struct vm *vm;
    enum vm_runstate old, now;
};

static void state_note_cb(void *opaque)
{
    struct state_note *n = opaque;

    if (n->vm->hooks.state_changed)
        n->vm->hooks.state_changed(n->vm->hooks.opaque, n->old, n->now);
    free(n);
}

void vm_set_state(struct vm *vm, enum vm_runstate s)
{
    struct state_note *n;
    enum vm_runstate old;

    pthread_mutex_lock(&vm->lock);
    old = vm->state;
    vm->state = s;
    pthread_mutex_unlock(&vm->lock);
    if (old == s || !vm->loop)
        return;
    n = malloc(sizeof(*n));
    if (!n)
        return;
    *n = (struct state_note){vm, old, s};
    if (loop_call(vm->loop, state_note_cb, n) < 0)
        free(n);
}

enum vm_runstate vm_get_state(struct vm *vm)
{
    enum vm_runstate s;

    pthread_mutex_lock(&vm->lock);
    s = vm->state;
    pthread_mutex_unlock(&vm->lock);
    return s;
}

int vm_stop(struct vm *vm)
{
    bool hold;

    pthread_mutex_lock(&vm->lock);
    hold = !vm->user_paused;
    vm->user_paused = true;
    pthread_mutex_unlock(&vm->lock);
    if (hold)
        vm_pause(vm);
    if (vm_get_state(vm) == VM_RUNNING)
        vm_set_state(vm, VM_PAUSED);
    return 0;
}

void vm_hold_stopped(struct vm *vm, enum vm_runstate s)
{
    bool drop;

    pthread_mutex_lock(&vm->lock);
    drop = vm->user_paused; /* the user holds one already: ours is not needed */
    vm->user_paused = true;
    pthread_mutex_unlock(&vm->lock);
    if (drop)
        vm_resume(vm);
    vm_set_state(vm, s);
}

int vm_cont(struct vm *vm)
{
    enum vm_runstate s = vm_get_state(vm);
    bool release;

    switch (s) {
    case VM_INMIGRATE:
        return -EBUSY; /* QEMU: the incoming migration has not finished */
    case VM_COLO:
        return -EPERM; /* a standby runs only when it takes over: it would diverge */
    case VM_INTERNAL_ERROR:
    case VM_SHUTDOWN:
        return -EINVAL;
    default:
        break;
    }
    pthread_mutex_lock(&vm->lock);
    release = vm->user_paused;
    vm->user_paused = false;
    pthread_mutex_unlock(&vm->lock);
    vm_set_state(vm, VM_RUNNING);
    if (release)
        vm_resume(vm);
    return 0;
}

int vm_system_reset(struct vm *vm)
{
    int err = 0;

    if (vm_get_state(vm) == VM_COLO)
        return -EPERM; /* a COLO standby: its state is the primary's, never its own */
    vm_pause(vm);
    /* Device work and checkpoints hold dev_lock: a reset is one step between two of them,
     * never half inside a checkpoint's capture (or an apply). */
    pthread_mutex_lock(&vm->dev_lock);
    log_info("vm: system reset");
    for (unsigned i = 0; i < vm->ndevices; i++)
        if (vm->devices[i].reset)
            vm->devices[i].reset(vm->devices[i].opaque);
    for (int i = 0; i < vm->ncpus && !err; i++)
        err = vm->accel->vcpu_reset(vm->vcpus[i]);
    if (!err && vm->boot)
        err = vm->boot(vm, vm->boot_opaque);
    pthread_mutex_unlock(&vm->dev_lock);
    vm_resume(vm);
    if (err)
        vm_internal_error(vm, "system reset failed: %s", strerror(-err));
    return err;
}

struct exit_note {
    struct vm *vm;
    char reason[32];
};

static void exit_note_cb(void *opaque)
{
    struct exit_note *n = opaque;

    vm_set_state(n->vm, VM_SHUTDOWN);
    if (n->vm->hooks.shutdown)
        n->vm->hooks.shutdown(n->vm->hooks.opaque, n->reason);
    loop_quit(n->vm->loop);
    free(n);
}

void vm_request_exit(struct vm *vm, int status, const char *reason)
{
    struct exit_note *n;
    int none = -1;

    /* First request wins: a guest that keeps writing the port does not change the status. */
    if (!atomic_compare_exchange_strong(&vm->exit_status, &none, status))
        return;
    /* Stop the vCPUs from running further guest code; they are joined at process exit. */
    pthread_mutex_lock(&vm->lock);
    atomic_store(&vm->quit, true);
    for (int i = 0; i < vm->ncpus; i++)
        vcpu_kick(vm->vcpus[i]);
    pthread_cond_broadcast(&vm->cond_resume);
    pthread_mutex_unlock(&vm->lock);
    if (!vm->loop)
        return;
    n = calloc(1, sizeof(*n));
    if (!n) {
        loop_quit(vm->loop);
        return;
    }
    n->vm = vm;
    snprintf(n->reason, sizeof(n->reason), "%s", reason);
    if (loop_call(vm->loop, exit_note_cb, n) < 0) {
        free(n);
        loop_quit(vm->loop);
    }
}

static void reset_cb(void *opaque)
{
    struct vm *vm = opaque;

    atomic_store(&vm->reset_pending, false);
    if (vm->no_reboot) {
        vm_request_exit(vm, 0, "guest-reset");
        return;
    }
    if (vm_system_reset(vm) == 0 && vm->hooks.guest_reset)
        vm->hooks.guest_reset(vm->hooks.opaque);
}

void vm_request_reset(struct vm *vm)
{
    bool expected = false;

    if (!atomic_compare_exchange_strong(&vm->reset_pending, &expected, true))
        return;
    if (!vm->loop || loop_call(vm->loop, reset_cb, vm) < 0)
        atomic_store(&vm->reset_pending, false);
}

static void internal_error_cb(void *opaque)
{
    struct vm *vm = opaque;

    /* QEMU leaves the VM paused in internal-error for inspection; so do we. */
    vm_stop(vm);
    vm_set_state(vm, VM_INTERNAL_ERROR);
}

void vm_internal_error(struct vm *vm, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(vm->internal_error, sizeof(vm->internal_error), fmt, ap);
    va_end(ap);
    log_err("%s", vm->internal_error);
    if (vm->loop)
        loop_call(vm->loop, internal_error_cb, vm);
}
