/* announce.c: gratuitous RARP from every NIC, in spaced rounds, so the LAN follows a moved guest.
 *
 * Every announce in progress is one struct announce on a list owned by the main loop (only the
 * loop thread reads or changes it) with one one-shot timer armed for its next round. */
#include "net/announce.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/loop.h"
#include "core/vm.h"
#include "net/tap.h"
#include "net/virtio_net.h"
#include "virtio/virtio_mmio.h"

#define ETH_P_RARP 0x8035
#define RARP_LEN   60 /* the Ethernet minimum; QEMU sends 60 bytes too */

_Static_assert(VIRTIO_MMIO_SLOTS <= 32, "NIC instances must fit net_announce_params.nics");

struct announce {
    struct announce *next;
    struct vm *vm;
    struct net_announce_params p;
    char *id;      /* owned copy of p.id */
    uint32_t done; /* rounds sent */
    int timer;     /* armed for the next round, 0 when none */
};

static struct announce *active; /* main loop only */

static void rarp_frame(uint8_t f[RARP_LEN], const uint8_t mac[6])
{
    memset(f, 0, RARP_LEN);
    memset(f, 0xff, 6);    /* broadcast */
    memcpy(f + 6, mac, 6); /* from the guest's MAC */
    f[12] = ETH_P_RARP >> 8;
    f[13] = ETH_P_RARP & 0xff;
    f[15] = 1;              /* htype Ethernet */
    f[16] = 0x08;           /* ptype IPv4 */
    f[18] = 6;              /* hlen */
    f[19] = 4;              /* plen */
    f[21] = 3;              /* reverse request */
    memcpy(f + 22, mac, 6); /* sender hardware address */
    memcpy(f + 32, mac, 6); /* target hardware address */
}

static void send_round(struct announce *a)
{
    for (uint32_t i = 0; i < VIRTIO_MMIO_SLOTS; i++) {
        struct virtio_net *n;
        uint8_t f[RARP_LEN];
        struct iovec iov = {.iov_base = f, .iov_len = sizeof(f)};

        if (!(a->p.nics & (1u << i)))
            continue;
        n = virtio_net_find(a->vm, i);
        if (!n)
            break;
        rarp_frame(f, n->mac);
        tap_send(&n->tap, &iov, 1);
        if (a->done == 0)
            log_info("net: announcing %02x:%02x:%02x:%02x:%02x:%02x on %s: %u round(s)", n->mac[0],
                     n->mac[1], n->mac[2], n->mac[3], n->mac[4], n->mac[5], n->tap.ifname,
                     a->p.rounds);
    }
    a->done++;
    log_debug("net: announce round %u/%u sent", a->done, a->p.rounds);
}

static void unlink_free(struct announce *a)
{
    for (struct announce **pp = &active; *pp; pp = &(*pp)->next) {
        if (*pp == a) {
            *pp = a->next;
            break;
        }
    }
    if (a->timer > 0)
        loop_del_timer(a->vm->loop, a->timer);
    free(a->id);
    free(a);
}

/* After round k (k = done - 1): min(initial + k * step, max), as QEMU's timer step. */
static uint64_t next_delay_ms(const struct announce *a)
{
    uint64_t k = a->done - 1, d = a->p.initial_ms;

    if (a->p.step_ms && k > (UINT64_MAX - d) / a->p.step_ms)
        return a->p.max_ms;
    d += k * a->p.step_ms;
    return d < a->p.max_ms ? d : a->p.max_ms;
}

static void round_cb(void *opaque)
{
    struct announce *a = opaque;
    int id;

    a->timer = 0; /* one-shot: the loop dropped it */
    send_round(a);
    if (a->done >= a->p.rounds) {
        log_info("net: announce finished: %u round(s)", a->done);
        unlink_free(a);
        return;
    }
    id = loop_add_timer(a->vm->loop, next_delay_ms(a), 0, round_cb, a);
    if (id < 0) {
        log_warn("net: announce stops after round %u/%u: %s", a->done, a->p.rounds, strerror(-id));
        unlink_free(a);
        return;
    }
    a->timer = id;
}

int net_announce_start(struct vm *vm, const struct net_announce_params *p)
{
    struct announce *a = calloc(1, sizeof(*a));

    if (!a)
        return -ENOMEM;
    a->vm = vm;
    a->p = *p;
    if (p->id) {
        a->id = strdup(p->id);
        if (!a->id) {
            free(a);
            return -ENOMEM;
        }
    }
    a->p.id = a->id;
    /* QEMU: a new announce under the same name restarts it. */
    for (struct announce *o = active; a->id && o; o = o->next) {
        if (o->vm == vm && o->id && !strcmp(o->id, a->id)) {
            unlink_free(o);
            break;
        }
    }
    if (!a->p.rounds) {
        free(a->id);
        free(a);
        return 0;
    }
    a->next = active;
    active = a;
    round_cb(a);
    return 0;
}

void net_announce_defaults(struct net_announce_params *p)
{
    *p = (struct net_announce_params){.initial_ms = NET_ANNOUNCE_INITIAL_MS,
                                      .max_ms = NET_ANNOUNCE_MAX_MS,
                                      .step_ms = NET_ANNOUNCE_STEP_MS,
                                      .rounds = NET_ANNOUNCE_ROUNDS,
                                      .nics = UINT32_MAX};
}

static void announce_all_cb(void *opaque)
{
    struct vm *vm = opaque;
    struct net_announce_params p;

    net_announce_defaults(&p);
    if (net_announce_start(vm, &p) < 0)
        log_warn("net: cannot announce the guest's MACs: out of memory");
}

void net_announce_all(struct vm *vm)
{
    /* Callers: the migration thread (incoming done) and the COLO secondary (takeover); the
     * rounds belong to the main loop, as do the timers. */
    if (!vm->loop || loop_call(vm->loop, announce_all_cb, vm) < 0)
        log_warn("net: cannot schedule the MAC announcement");
}
