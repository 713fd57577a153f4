/* cluster_probe.c: a member of a CPG group through tandem's Corosync client, for tests and labs:
 * prints every view it is told about as one JSON line, and obeys one-word commands on stdin.
 *
 *   cluster_probe [GROUP]          (default "tandem"; corosync must be reachable: same netns)
 *   stdout: {"seq":N,"up":B,"quorate":B,"joined":B,"nodeid":N,"nodes":N,"pid":OURPID,
 *            "npeers":N,"peers":[{"nodeid":N,"pid":N},...],"what":"..."}
 *           or, when cluster_start fails, {"error":"...","pid":OURPID} and exit status 1
 *   stdin:  leave | rejoin | get (print the current view, "what":"get") | quit; EOF = quit
 */
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cluster/cluster.h"

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void print_view(const struct cluster_view *v, const char *what)
{
    json_object *o = json_object_new_object(), *peers = json_object_new_array();

    json_object_object_add(o, "seq", json_object_new_uint64(v->seq));
    json_object_object_add(o, "up", json_object_new_boolean(v->up));
    json_object_object_add(o, "quorate", json_object_new_boolean(v->quorate));
    json_object_object_add(o, "joined", json_object_new_boolean(v->joined));
    json_object_object_add(o, "nodeid", json_object_new_uint64(v->nodeid));
    json_object_object_add(o, "nodes", json_object_new_uint64(v->nodes));
    json_object_object_add(o, "pid", json_object_new_int(getpid()));
    json_object_object_add(o, "npeers", json_object_new_uint64(v->npeers));
    for (unsigned i = 0; i < v->npeers && i < CLUSTER_MAX_PEERS; i++) {
        json_object *p = json_object_new_object();
        json_object_object_add(p, "nodeid", json_object_new_uint64(v->peer_nodeid[i]));
        json_object_object_add(p, "pid", json_object_new_uint64(v->peer_pid[i]));
        json_object_array_add(peers, p);
    }
    json_object_object_add(o, "peers", peers);
    json_object_object_add(o, "what", json_object_new_string(what));
    pthread_mutex_lock(&out_lock);
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    json_object_put(o);
}

static void on_view(void *opaque, const struct cluster_view *v, const char *what)
{
    print_view(v, what);
}

int main(int argc, char **argv)
{
    const char *group = argc > 1 ? argv[1] : CLUSTER_DEFAULT_GROUP;
    char err[256], line[64];
    struct cluster_view v;

    if (cluster_start(group, on_view, NULL, err, sizeof(err)) < 0) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "error", json_object_new_string(err));
        json_object_object_add(o, "pid", json_object_new_int(getpid()));
        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
        return 1;
    }
    while (fgets(line, sizeof(line), stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!strcmp(line, "leave")) {
            int r = cluster_leave_group();
            if (r)
                fprintf(stderr, "cluster_probe: leave: %s\n", strerror(-r));
        } else if (!strcmp(line, "rejoin")) {
            int r = cluster_rejoin_group();
            if (r)
                fprintf(stderr, "cluster_probe: rejoin: %s\n", strerror(-r));
        } else if (!strcmp(line, "get")) {
            cluster_get(&v);
            print_view(&v, "get");
        } else if (!strcmp(line, "quit")) {
            break;
        } else if (line[0]) {
            fprintf(stderr, "cluster_probe: unknown command '%s'\n", line);
        }
    }
    cluster_stop();
    return 0;
}
