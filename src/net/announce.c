/* announce.c: gratuitous RARP from every NIC, so the LAN follows a moved guest. */
#include "net/announce.h"

#include <string.h>

#include "core/log.h"
#include "core/vm.h"
#include "net/tap.h"
#include "net/virtio_net.h"

#define ETH_P_RARP      0x8035
#define ANNOUNCE_ROUNDS 3
#define MAX_NICS        8

static void announce(struct virtio_net *n)
{
    uint8_t f[60];
    struct iovec iov = {.iov_base = f, .iov_len = sizeof(f)};

    memset(f, 0, sizeof(f));
    memset(f, 0xff, 6);       /* broadcast */
    memcpy(f + 6, n->mac, 6); /* from the guest's MAC */
    f[12] = ETH_P_RARP >> 8;
    f[13] = ETH_P_RARP & 0xff;
    f[15] = 1;                 /* htype Ethernet */
    f[16] = 0x08;              /* ptype IPv4 */
    f[18] = 6;                 /* hlen */
    f[19] = 4;                 /* plen */
    f[21] = 3;                 /* reverse request */
    memcpy(f + 22, n->mac, 6); /* sender hardware address */
    memcpy(f + 32, n->mac, 6); /* target hardware address */
    for (int r = 0; r < ANNOUNCE_ROUNDS; r++)
        tap_send(&n->tap, &iov, 1);
}

void net_announce_all(struct vm *vm)
{
    for (uint32_t i = 0; i < MAX_NICS; i++) {
        struct virtio_net *n = virtio_net_find(vm, i);
        if (!n)
            break;
        announce(n);
        log_info("net: announced %02x:%02x:%02x:%02x:%02x:%02x on %s", n->mac[0], n->mac[1],
                 n->mac[2], n->mac[3], n->mac[4], n->mac[5], n->tap.ifname);
    }
}
