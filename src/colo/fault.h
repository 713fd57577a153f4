/* fault.h: test-only fault injection at named COLO protocol points (off unless configured).
 *
 * TANDEM_COLO_FAULT="POINT:N:ACTION[,POINT:N:ACTION...]" in the environment of a tandem
 * process: when checkpoint N (1-based; 0 = every checkpoint) reaches POINT, ACTION happens:
 *   kill  _exit(137) at once, as if the host died (no cleanup, sockets reset by the kernel)
 *   hang  stop making progress forever (the process stays alive and silent, like SIGSTOP)
 * and, where the code at that point supports it (primary points before data leaves):
 *   corrupt   flip one bit of the data about to be sent (p-before-send: RAM, p-before-size:
 *             device state)
 *   badmsg    send an unknown message code instead of the next message (p-before-request;
 *             s-link-send: a frame-link record of an unknown kind)
 *   truncate  send half of the device state, then close the stream (p-mid-devbuf)
 *   eio       the I/O at that point fails with EIO (s-disk-apply: the secondary's image write;
 *             p-disk-log: the primary cannot log the write for the secondary)
 *   inject    p-before-send: a foreign section (a "disk-sync" write) is slipped into the RAM
 *             segment, whose checksum is then broken: nothing of it may reach the secondary
 *   baddev    p-before-size: the device buffer ends in a section the secondary cannot load,
 *             behind a valid checksum (it must be rejected with no device changed)
 *   sleepMS   only the calling thread sleeps MS milliseconds, then goes on (hb-beat: a stall
 *             of the heartbeat thread alone; p-handover, s-mid-apply: a slow step)
 * POINT names are listed in fault.c (colo_fault_points). Unknown names are rejected at start.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Parse the environment once. 0, or -EINVAL with a message logged. */
int colo_fault_init(void);
enum colo_fault_action {
    COLO_FAULT_NONE = 0,
    COLO_FAULT_CORRUPT,
    COLO_FAULT_BADMSG,
    COLO_FAULT_TRUNCATE,
    COLO_FAULT_EIO,
    COLO_FAULT_INJECT,
    COLO_FAULT_BADDEV,
};

/* Called at each protocol point: kills or hangs here, or returns the action the caller must
 * carry out (COLO_FAULT_NONE almost always). */
enum colo_fault_action colo_fault_point(const char *point, uint64_t checkpoint);
/* The known point names, NULL-terminated (for --help and the tests). */
extern const char *const colo_fault_points[];
