/* output.h: where a NIC's transmitted frames go: a hook so COLO can hold output until a checkpoint.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/*
 * send: one Ethernet frame (no virtio header) made of iov[0, n). The buffers are guest RAM and
 * stay valid only during the call: an implementation that holds frames copies them. Returns the
 * bytes sent or queued, or -errno (the frame is dropped and counted; the guest is not told).
 * Called with the NIC's lock held, on the main loop (or a vCPU thread without ioeventfd): it must
 * not block for long.
 */
struct net_output {
    int (*send)(void *opaque, const struct iovec *iov, int n);
    void *opaque;
};

/* Where a NIC's received frames come from, when not its tap (see virtio_net_set_input). */
struct net_input {
    void (*ready)(void *opaque);
    void *opaque;
};

/* A look at every frame the tap delivers (see virtio_net_set_rx_hook): frame is a copy of len
 * bytes; return true to have the guest get the (rewritten) copy. Device lock held. */
struct net_rx_hook {
    bool (*seen)(void *opaque, uint8_t *frame, size_t len);
    void *opaque;
};
