/* reprotect.h: re-protection: a VM that runs unprotected starts a new COLO session as primary.
 *
 * After a failover the survivor runs alone: a secondary that took over, or a primary that left
 * COLO without being fenced. Re-protecting it is one step instead of QEMU's five (docs/colo.md,
 * "Re-protection"): x-colo on, then the same path as `migrate`, toward a fresh `tandem run
 * --incoming` (x-colo set) on the other host, whose images may be old: the disk hash sync sends
 * only the chunks that differ, the first RAM round neither holes nor zero pages.
 *
 *   unprotected ──x-colo-reprotect {"uri"}──────────────────────────┐
 *        │                                                          v
 *        └──--colo-reprotect URI: connect every second ──accepted──> check ──> migrate (x-colo)
 *                                                                   │ refused: why, QMP error
 *   check: not in COLO, not fenced, the VM running, no migration in progress (a completed
 *   incoming one is joined), a tcp: or unix: URI, this process holds its images' locks.
 *
 * A session that fails, or ends later (its secondary lost), leaves the VM unprotected again:
 * the automatic mode tries again, any number of times.
 */
#pragma once

#include <stddef.h>

struct migration;

/* May this process start a COLO session toward uri as primary now? 0, or -errno with the
 * reason in err. Main loop thread. */
int colo_reprotect_check(struct migration *m, const char *uri, char *err, size_t errlen);

/* x-colo-reprotect: check, set x-colo, and migrate to uri over fd (a socket connected to uri,
 * owned by the call from now on) or, with fd < 0, over a connection of its own. Returns at
 * once; query-migrate and query-colo-status follow the session. Main loop thread. */
int colo_reprotect_start(struct migration *m, const char *uri, int fd, char *err, size_t errlen);

/* --colo-reprotect URI: from now on, whenever this process runs unprotected after it was in
 * COLO, try to connect to uri once a second (logged once per unprotected spell) and start the
 * session over the first connection accepted. 0, or -errno with err (a bad URI). */
int colo_reprotect_auto_start(struct migration *m, const char *uri, char *err, size_t errlen);
/* Stop trying (joins the thread); before the migration is destroyed. Safe without a start. */
void colo_reprotect_auto_stop(void);
