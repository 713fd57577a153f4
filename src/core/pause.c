/* pause.c: the pause barrier: kick every vCPU out of KVM_RUN and wait until all have parked.
 *
 * Protocol (all under vm->lock):
 *   pauser:  pause_depth++; for each vCPU: immediate_exit = 1, signal; wait nparked == threads
 *   vCPU:    if pause_depth: finish pending I/O, park (nparked++) until pause_depth == 0
 *            else immediate_exit = 0, unlock, KVM_RUN
 * A vCPU that clears immediate_exit does so before the pauser can set it (same lock), and
 * the pauser's signal comes after; so either KVM_RUN sees immediate_exit or the signal
 * interrupts it. Nothing is lost and the wait is bounded by one exit of each vCPU.
 * This is the checkpoint primitive: it is nestable (migration and a user `stop` may overlap).
 */
#include <errno.h>
#include <time.h>

#include "core/log.h"
#include "core/loop.h"
#include "core/vcpu.h"
#include "core/vm.h"

#define PAUSE_SPIN_NS 200000ull /* 200 µs */

int vm_pause(struct vm *vm)
{
    uint64_t waited_ms = 0;

    pthread_mutex_lock(&vm->lock);
    vm->pause_depth++;
    for (int i = 0; i < vm->ncpus; i++)
        vcpu_kick(vm->vcpus[i]);
    if (vm->nparked < vm->nrunning_threads) {
        /* A running vCPU parks within microseconds of its kick (the emulator stops at the next
         * block, KVM at KVM_RUN's return): poll briefly with the lock released rather than
         * sleep on the condition variable, whose wake-up costs more than the wait itself. */
        uint64_t t0 = now_ns();
        pthread_mutex_unlock(&vm->lock);
        while (__atomic_load_n(&vm->nparked, __ATOMIC_ACQUIRE) <
                   __atomic_load_n(&vm->nrunning_threads, __ATOMIC_ACQUIRE) &&
               now_ns() - t0 < PAUSE_SPIN_NS)
            __builtin_ia32_pause();
        pthread_mutex_lock(&vm->lock);
    }
    while (vm->nparked < vm->nrunning_threads) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts); /* cond_paused's clock (vm_init) */
        ts.tv_nsec += 10 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (pthread_cond_timedwait(&vm->cond_paused, &vm->lock, &ts) == ETIMEDOUT) {
            /* A kick cannot be lost by design; re-kicking only guards against surprises. */
            waited_ms += 10;
            for (int i = 0; i < vm->ncpus; i++)
                if (!vm->vcpus[i]->parked)
                    vcpu_kick(vm->vcpus[i]);
            if (waited_ms % 1000 == 0)
                log_warn("pause: %d of %d vCPUs parked after %llu ms", vm->nparked,
                         vm->nrunning_threads, (unsigned long long)waited_ms);
        }
    }
    pthread_mutex_unlock(&vm->lock);
    return 0;
}

void vm_resume(struct vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    if (vm->pause_depth > 0 && --vm->pause_depth == 0)
        pthread_cond_broadcast(&vm->cond_resume);
    pthread_mutex_unlock(&vm->lock);
}
