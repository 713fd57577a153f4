/* announce.h: tell the LAN where the guest now lives: rounds of RARP frames from each NIC's MAC.
 *
 * As QEMU's announce (net/announce.c): round 0 goes out at once, and after round k the next
 * waits min(initial + k * step, max) ms, for `rounds` rounds; each round sends one RARP
 * broadcast from every chosen NIC. With QEMU's defaults (50, 550, 5, 100) the rounds leave at
 * 0, 50, 200, 450 and 800 ms: a switch that missed one (a link still coming up) sees the next.
 * The rounds run on the main loop's timers, so they never block the thread that asked.
 */
#pragma once

#include <stdint.h>

struct vm;

/* QEMU's defaults (migration parameters announce-initial, -max, -rounds, -step). */
#define NET_ANNOUNCE_INITIAL_MS 50
#define NET_ANNOUNCE_MAX_MS     550
#define NET_ANNOUNCE_ROUNDS     5
#define NET_ANNOUNCE_STEP_MS    100

/* QEMU's accepted ranges (migrate-set-parameters announce-*). */
#define NET_ANNOUNCE_MS_LIMIT     100000 /* initial, max */
#define NET_ANNOUNCE_STEP_LIMIT   10000
#define NET_ANNOUNCE_ROUNDS_LIMIT 1000

struct net_announce_params {
    uint64_t initial_ms, max_ms, step_ms;
    uint32_t rounds;
    uint32_t nics;  /* bit i: announce NIC instance i */
    const char *id; /* an announce with the same id stops this one's remaining rounds ("" is
                     * QMP's unnamed one); NULL: never replaced (copied; may be freed after) */
};

/* QEMU's defaults, on every NIC, without an id. */
void net_announce_defaults(struct net_announce_params *p);
/* Run one announce with p, its first round now. Main loop thread only. 0 or -ENOMEM. */
int net_announce_start(struct vm *vm, const struct net_announce_params *p);
/* After an incoming migration or a COLO takeover: net_announce_start with the defaults, on
 * every NIC, posted to the main loop (any thread may call it). */
void net_announce_all(struct vm *vm);
