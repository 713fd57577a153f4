/* virtio.h: constants from the virtio 1.x specification shared by the transport and the devices. */
#pragma once

/* Device status bits (spec 2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01u
#define VIRTIO_STATUS_DRIVER      0x02u
#define VIRTIO_STATUS_DRIVER_OK   0x04u
#define VIRTIO_STATUS_FEATURES_OK 0x08u
#define VIRTIO_STATUS_NEEDS_RESET 0x40u
#define VIRTIO_STATUS_FAILED      0x80u
#define VIRTIO_STATUS_ALL                                                                          \
    (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK |                  \
     VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)

/* Transport-independent feature bits (spec 6). */
#define VIRTIO_F_RING_INDIRECT_DESC 28
#define VIRTIO_F_RING_EVENT_IDX     29
#define VIRTIO_F_VERSION_1          32

#define VIRTIO_BIT(b) (1ULL << (b))

/* Device IDs (spec 5). */
#define VIRTIO_ID_NET   1u
#define VIRTIO_ID_BLOCK 2u

/* InterruptStatus bits (spec 4.2.2). */
#define VIRTIO_INT_VRING  0x1u
#define VIRTIO_INT_CONFIG 0x2u
