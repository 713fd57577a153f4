/* proto.c: send and receive COLO messages; anything unexpected is a protocol error. */
#include "colo/proto.h"

#include <errno.h>

#include "core/log.h"
#include "migration/stream.h"

static const char *const names[COLO_MSG__MAX] = {
    [COLO_MSG_CHECKPOINT_READY] = "checkpoint-ready",
    [COLO_MSG_CHECKPOINT_REQUEST] = "checkpoint-request",
    [COLO_MSG_CHECKPOINT_REPLY] = "checkpoint-reply",
    [COLO_MSG_VMSTATE_SEND] = "vmstate-send",
    [COLO_MSG_VMSTATE_SIZE] = "vmstate-size",
    [COLO_MSG_VMSTATE_RECEIVED] = "vmstate-received",
    [COLO_MSG_VMSTATE_LOADED] = "vmstate-loaded",
};

const char *colo_msg_name(uint32_t msg)
{
    return msg < COLO_MSG__MAX ? names[msg] : "unknown";
}

int colo_send_msg(struct stream_writer *sw, enum colo_msg msg)
{
    log_debug("colo: send '%s'", colo_msg_name(msg));
    sw_put_u32(sw, (uint32_t)msg);
    return sw_flush(sw);
}

int colo_expect_msg(struct stream_reader *sr, enum colo_msg expect)
{
    uint32_t msg = sr_get_u32(sr);
    int r = sr_error(sr);

    if (r)
        return r;
    log_debug("colo: receive '%s'", colo_msg_name(msg));
    if (msg != (uint32_t)expect) {
        sr_fail(sr, -EPROTO, "unexpected COLO message %u (%s), expected %s", msg,
                colo_msg_name(msg), colo_msg_name(expect));
        return -EPROTO;
    }
    return 0;
}
