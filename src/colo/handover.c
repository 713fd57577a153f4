/* handover.c: the hand-over from precopy to COLO: session parameters, disk-sync ends, commands. */
#include "migration/be.h"
#include "colo/handover.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <stdio.h>
#include <string.h>

#include "colo/colo.h"
#include "colo/disk.h"
#include "core/log.h"
#include "migration/migrate.h"
#include "migration/section.h"
#include "migration/stream.h"

/* Version 2: heartbeat interval, timeout, token, be32 mode (0 periodic, 1 hybrid), be32
 * x-compare-timeout in ms (36 bytes; version 1 had no mode and is not understood). */
#define SESSION_VERSION 2
#define SESSION_LEN     36

static bool session_ok;

int colo_handover_begin(struct migration *m, struct stream_writer *sw, struct stream_reader *rp,
                        bool *disks, char *err, size_t errlen)
{
    struct hb_params *hp = &colo_state.hbp;
    uint8_t payload[SESSION_LEN];
    int r;

    *disks = false;
    if (m->params.colo_hybrid && colo_disk_count(m->vm)) {
        snprintf(err, errlen,
                 "x-colo-mode hybrid does not support disks yet (the secondary VM would write "
                 "them): use periodic mode with --disk");
        return -ENOTSUP;
    }
    colo_state.hybrid = m->params.colo_hybrid != 0;
    colo_state.compare_timeout_ms = (uint32_t)m->params.compare_timeout_ms;
    /* A new token per session: a heartbeat of an older session (or anyone else) is refused. */
    hp->interval_ms = (uint32_t)m->params.heartbeat_interval_ms;
    hp->timeout_ms = (uint32_t)m->params.heartbeat_timeout_ms;
    if (gnutls_rnd(GNUTLS_RND_KEY, hp->token, sizeof(hp->token)) < 0) {
        snprintf(err, errlen, "cannot make a COLO session token");
        return -EIO;
    }
    be32_store(payload, SESSION_VERSION);
    be32_store(payload + 4, hp->interval_ms);
    be32_store(payload + 8, hp->timeout_ms);
    memcpy(payload + 12, hp->token, sizeof(hp->token));
    be32_store(payload + 28, colo_state.hybrid ? 1 : 0);
    be32_store(payload + 32, colo_state.compare_timeout_ms);
    stream_put_command(sw, STREAM_CMD_ENABLE_COLO, NULL, 0);
    stream_put_command(sw, STREAM_CMD_COLO_SESSION, payload, sizeof(payload));
    r = sw_flush(sw);
    if (r) {
        snprintf(err, errlen, "%s", sw_errmsg(sw));
        return r;
    }
    if (!colo_disk_count(m->vm))
        return 0;
    sr_set_timeout_ms(rp, 60000);
    r = colo_disk_sync_begin(m->vm, rp, err, errlen);
    if (!r)
        *disks = true;
    return r;
}

int colo_handover_final(struct vm *vm, struct stream_writer *sw)
{
    return colo_disk_sync_send(vm, sw, true);
}

int colo_handover_on_command(struct migration *m, enum stream_cmd cmd, const uint8_t *payload,
                             uint16_t len, int fd, bool *colo)
{
    struct hb_params *hp = &colo_state.hbp;
    uint32_t version, interval, timeout, mode, cmp_ms;

    if (!m->caps.x_colo) {
        migration_set_error(m, "the source enabled COLO but x-colo is not set here");
        return -EPERM;
    }
    switch (cmd) {
    case STREAM_CMD_ENABLE_COLO:
        *colo = true;
        session_ok = false;
        /* Disk initial sync: tell the primary what our images hold, chunk by chunk. */
        return colo_disk_send_hashes(m->vm, fd);
    case STREAM_CMD_COLO_SESSION:
        if (!*colo || len != SESSION_LEN) {
            migration_set_error(m, "COLO session parameters out of place");
            return -EBADMSG;
        }
        version = be32_load(payload);
        interval = be32_load(payload + 4);
        timeout = be32_load(payload + 8);
        mode = be32_load(payload + 28);
        cmp_ms = be32_load(payload + 32);
        if (version != SESSION_VERSION || !interval || timeout <= interval || mode > 1 ||
            (mode == 1 && !cmp_ms)) {
            migration_set_error(m,
                                "COLO session parameters not understood (version %u, "
                                "heartbeat %u/%u ms)",
                                version, interval, timeout);
            return -EBADMSG;
        }
        if (interval != m->params.heartbeat_interval_ms ||
            timeout != m->params.heartbeat_timeout_ms)
            log_info("colo: secondary: the primary's heartbeat settings rule: interval %u ms, "
                     "timeout %u ms",
                     interval, timeout);
        hp->interval_ms = interval;
        hp->timeout_ms = timeout;
        memcpy(hp->token, payload + 12, sizeof(hp->token));
        colo_state.hybrid = mode == 1;
        colo_state.compare_timeout_ms = cmp_ms;
        pthread_mutex_lock(&m->lock);
        m->params.heartbeat_interval_ms = interval;
        m->params.heartbeat_timeout_ms = timeout;
        pthread_mutex_unlock(&m->lock);
        session_ok = true;
        return 0;
    default:
        return -EBADMSG;
    }
}

bool colo_handover_session_ok(void)
{
    return session_ok;
}
