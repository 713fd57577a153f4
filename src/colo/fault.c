/* fault.c: TANDEM_COLO_FAULT parsing and the kill/hang actions for fault-injection tests. */
#include "colo/fault.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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
    "s-after-apply", "s-after-loaded",
    /* both sides */
    "hb-beat",      /* the heartbeat thread, N = beats received so far */
    "p-handover",   /* primary: between the final precopy stage and the first COLO epoch */
    "s-disk-apply", /* secondary: between two staged disk writes of an apply */
    "p-disk-log",   /* primary: logging a guest write for the current epoch */
    "s-link-send",  /* hybrid secondary: sending an SVM frame, N = the SVM's generation */
    NULL};

#define MAX_FAULTS 8

enum action {
    ACT_KILL,
    ACT_HANG,
    ACT_CORRUPT,
    ACT_BADMSG,
    ACT_TRUNCATE,
    ACT_EIO,
    ACT_INJECT,
    ACT_BADDEV,
    ACT_SLEEP
};

static const char *const action_names[] = {"kill", "hang",   "corrupt", "badmsg", "truncate",
                                           "eio",  "inject", "baddev",  "sleep"};

struct fault {
    char point[32];
    uint64_t n;
    enum action action;
    unsigned sleep_ms; /* ACT_SLEEP: "sleepMS" */
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
        char point[32], action[16];
        unsigned long long n;
        unsigned ms = 0;
        int a = -1;
        if (nfaults < MAX_FAULTS && sscanf(tok, "%31[a-z-]:%llu:%15s", point, &n, action) == 3 &&
            known(point)) {
            for (int i = 0; i < (int)(sizeof(action_names) / sizeof(action_names[0])); i++)
                if (i != ACT_SLEEP && !strcmp(action, action_names[i]))
                    a = i;
            if (sscanf(action, "sleep%u", &ms) == 1 && ms > 0 && ms <= 600000)
                a = ACT_SLEEP;
        }
        if (a < 0) {
            log_err("TANDEM_COLO_FAULT: bad entry '%s' (POINT:N:kill|hang|corrupt|badmsg|"
                    "truncate|eio|inject|baddev|sleepMS)",
                    tok);
            return -EINVAL;
        }
        snprintf(faults[nfaults].point, sizeof(faults[nfaults].point), "%s", point);
        faults[nfaults].n = n;
        faults[nfaults].action = (enum action)a;
        faults[nfaults].sleep_ms = ms;
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
        case ACT_EIO:
            return COLO_FAULT_EIO;
        case ACT_INJECT:
            return COLO_FAULT_INJECT;
        case ACT_BADDEV:
            return COLO_FAULT_BADDEV;
        case ACT_SLEEP: {
            /* Only the calling thread stops (the heartbeat thread, or one step of a side). */
            struct timespec ts = {.tv_sec = faults[i].sleep_ms / 1000,
                                  .tv_nsec = (long)(faults[i].sleep_ms % 1000) * 1000000L};
            while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
            }
            log_warn("colo: fault injection: woke at %s of checkpoint %llu", point,
                     (unsigned long long)checkpoint);
            return COLO_FAULT_NONE;
        }
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
