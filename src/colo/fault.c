/* fault.c: TANDEM_COLO_FAULT parsing and the kill/hang actions for fault-injection tests. */
#include "colo/fault.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

const char *const colo_fault_points[] = {
    /* primary */
    "p-before-request", "p-after-request", "p-after-reply", "p-paused", "p-before-send",
    "p-mid-ram", "p-before-size", "p-mid-devbuf", "p-after-devbuf", "p-after-received",
    "p-after-loaded",
    /* secondary */
    "s-before-ready", "s-after-request", "s-after-reply", "s-mid-ram", "s-after-ram",
    "s-after-size", "s-mid-devbuf", "s-before-received", "s-after-received", "s-mid-apply",
    "s-after-apply", "s-after-loaded", NULL};

#define MAX_FAULTS 8

enum action { ACT_KILL, ACT_HANG, ACT_CORRUPT, ACT_BADMSG, ACT_TRUNCATE };

static const char *const action_names[] = {"kill", "hang", "corrupt", "badmsg", "truncate"};

struct fault {
    char point[32];
    uint64_t n;
    enum action action;
};

static struct fault faults[MAX_FAULTS];
static int nfaults;

static bool known(const char *p)
{
    for (int i = 0; colo_fault_points[i]; i++)
        if (!strcmp(colo_fault_points[i], p))
            return true;
    return false;
}

int colo_fault_init(void)
{
    const char *env = getenv("TANDEM_COLO_FAULT");
    char buf[512], *save = NULL;

    nfaults = 0;
    if (!env || !*env)
        return 0;
    snprintf(buf, sizeof(buf), "%s", env);
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char point[32], action[12];
        unsigned long long n;
        int a = -1;
        if (nfaults < MAX_FAULTS && sscanf(tok, "%31[a-z-]:%llu:%11s", point, &n, action) == 3 &&
            known(point))
            for (int i = 0; i < (int)(sizeof(action_names) / sizeof(action_names[0])); i++)
                if (!strcmp(action, action_names[i]))
                    a = i;
        if (a < 0) {
            log_err("TANDEM_COLO_FAULT: bad entry '%s' (POINT:N:kill|hang|corrupt|badmsg|"
                    "truncate)",
                    tok);
            return -EINVAL;
        }
        snprintf(faults[nfaults].point, sizeof(faults[nfaults].point), "%s", point);
        faults[nfaults].n = n;
        faults[nfaults].action = (enum action)a;
        nfaults++;
    }
    log_warn("colo: fault injection armed (%s) -- test use only", env);
    return 0;
}

enum colo_fault_action colo_fault_point(const char *point, uint64_t checkpoint)
{
    for (int i = 0; i < nfaults; i++) {
        if (strcmp(faults[i].point, point) || (faults[i].n && faults[i].n != checkpoint))
            continue;
        log_warn("colo: fault injection: %s at %s of checkpoint %llu",
                 action_names[faults[i].action], point, (unsigned long long)checkpoint);
        switch (faults[i].action) {
        case ACT_KILL:
            _exit(137);
        case ACT_CORRUPT:
            return COLO_FAULT_CORRUPT;
        case ACT_BADMSG:
            return COLO_FAULT_BADMSG;
        case ACT_TRUNCATE:
            return COLO_FAULT_TRUNCATE;
        case ACT_HANG:
            break;
        }
        /* The whole process stops, heartbeat thread included, exactly like SIGSTOP. */
        kill(getpid(), SIGSTOP);
        for (;;)
            pause();
    }
    return COLO_FAULT_NONE;
}
