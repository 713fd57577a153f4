/* proto.h: the COLO checkpoint messages (be32 codes from the seeds) with timeouts both ways.
 *
 *   Primary                                   Secondary
 *                     <-- 0 checkpoint-ready     (once, after the initial state is loaded)
 *   1 checkpoint-request -->
 *                     <-- 2 checkpoint-reply     (SVM stopped)
 *   pause, copy dirty RAM + device state to local buffers, resume (speculative)
 *   3 vmstate-send -->  RAM segment (records + EOF with CRC-32C)  -> colo cache
 *   4 vmstate-size + be64 n -->  n bytes of device state (FULL sections + EOF/CRC) -> buffer
 *                     <-- 5 vmstate-received     (both verified)  => primary releases epoch N
 * output apply: cache -> RAM, load devices, vCPUs
 *                     <-- 6 vmstate-loaded
 */
#pragma once

#include <stdint.h>

struct stream_reader;
struct stream_writer;

enum colo_msg {
    COLO_MSG_CHECKPOINT_READY = 0,
    COLO_MSG_CHECKPOINT_REQUEST = 1,
    COLO_MSG_CHECKPOINT_REPLY = 2,
    COLO_MSG_VMSTATE_SEND = 3,
    COLO_MSG_VMSTATE_SIZE = 4,
    COLO_MSG_VMSTATE_RECEIVED = 5,
    COLO_MSG_VMSTATE_LOADED = 6,
    COLO_MSG__MAX
};

const char *colo_msg_name(uint32_t msg);
/* Send one message and flush. Returns sw_error(). */
int colo_send_msg(struct stream_writer *sw, enum colo_msg msg);
/* Receive a message and require it to be `expect`. 0, or -EPROTO for another value (the
 * reader's error names both), or the reader's error. */
int colo_expect_msg(struct stream_reader *sr, enum colo_msg expect);
