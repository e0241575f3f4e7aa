/* demote-cluster, promote-cluster (patronictl 4.1's change_cluster_role): PATCH /config on the leader with
 * standby_cluster set (demote: the cluster becomes a standby cluster following a remote primary) or removed
 * (promote: the standby leader is promoted), then the outcome watched in etcd: the leader's member key says
 * role standby_leader (demote) or primary (promote). */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/json.h"
#include "ctl/ctl_int.h"

static const char *leader_role(const Cluster *cl) {
    return cl && cl->leader && cl->leader->member ? cl->leader->member->role : NULL;
}

/* `standby`: the standby_cluster object to set (demote), or NULL (promote). Takes it over. */
static int change_cluster_role(Ctl *c, const char *cluster_name, bool force, cJSON *standby) {
    bool demote = standby != NULL;
    const char *verb = demote ? "demote" : "promote", *noun = demote ? "demotion" : "promotion";
    const char *target = demote ? "standby_leader" : "primary";
    int rc = CTL_ERROR;
    Cluster *cl = NULL;
    cJSON *body = cJSON_CreateObject();
    cJSON_AddItemToObject(body, "standby_cluster", standby ? standby : cJSON_CreateNull());
    if (ctl_connect(c, cluster_name) < 0 || !(cl = ctl_read_cluster(c)))
        goto out;
    const char *scope = c->cfg.scope;
    if (!cl->leader || cl->leader->corrupt || !cl->leader->member) {
        ctl_error("Cluster has no leader, %s is not possible", noun);
        goto out;
    }
    if (streq(leader_role(cl), target)) {
        ctl_error("Cluster is already in the required state");
        goto out;
    }
    printf("Current cluster topology\n");
    ctl_print_members(cl, scope);
    if (!force) {
        char *q = xasprintf("Are you sure you want to %s %s cluster?", verb, scope);
        int yes = ctl_confirm(q);
        free(q);
        if (yes < 0) {
            rc = ctl_aborted();
            goto out;
        }
        if (!yes) {
            ctl_error("Aborted cluster %s", noun);
            goto out;
        }
    }
    char *json = json_dumps(body, false);
    RestResponse r;
    ctl_rest(c, cl->leader->member, "PATCH", "config", json, 30000, &r);
    free(json);
    if (r.status != 200) {
        if (!r.status)
            ctl_error("Failed to %s %s cluster: %s: %s", verb, scope, r.url ? r.url : "", r.error ? r.error : "");
        else
            ctl_error("Failed to %s %s cluster: /config PATCH status code=%ld, (%s)", verb, scope, r.status,
                      r.body ? r.body : "");
        ctl_rest_auth_failed(&r, cl->leader->name);
        rest_response_clear(&r);
        goto out;
    }
    rest_response_clear(&r);
    /* the leader acts on it within a cycle; a demotion restarts PostgreSQL: give it ttl and two cycles */
    long long loop_wait = ctl_config_ll(cl, "loop_wait", 10), ttl = ctl_config_ll(cl, "ttl", 30);
    usec_t until = now_monotonic() + (usec_t)(ttl + 2 * loop_wait) * USEC_PER_SEC;
    for (;;) {
        Cluster *now = ctl_read_cluster(c);
        if (now) {
            cluster_free(cl);
            cl = now;
        }
        if (now && streq(leader_role(now), target)) {
            ctl_say("cluster is successfully %sd", verb);
            rc = CTL_OK;
            break;
        }
        if (now_monotonic() >= until) {
            ctl_say("cluster is not %sd yet: the leader %s is %s", verb, cl->leader ? cl->leader->name : "(none)",
                    leader_role(cl) ? leader_role(cl) : "(unknown role)");
            rc = CTL_UNKNOWN;
            break;
        }
        ctl_say("waiting for the cluster to be %sd", verb);
        sleep(1);
    }
    ctl_print_members(cl, scope);
out:
    cJSON_Delete(body);
    cluster_free(cl);
    return rc;
}

int cmd_demote_cluster(Ctl *c, int argc, char **argv) {
    static const struct option opts[] = {{"host", required_argument, NULL, 'H'},
                                         {"port", required_argument, NULL, 'P'},
                                         {"restore-command", required_argument, NULL, 'r'},
                                         {"primary-slot-name", required_argument, NULL, 's'},
                                         {"force", no_argument, NULL, 'f'},
                                         {"group", required_argument, NULL, 'g'},
                                         {0}};
    const char *host = NULL, *restore = NULL, *slot = NULL;
    long long port = 0;
    bool force = false;
    int o;
    while ((o = ctl_getopt(argc, argv, "", opts)) != -1) {
        switch (o) {
        case 'H': host = optarg; break;
        case 'r': restore = optarg; break;
        case 's': slot = optarg; break;
        case 'f': force = true; break;
        case 'g': break;
        case 'P':
            if (parse_ll(optarg, &port) < 0 || port <= 0 || port > 65535) {
                ctl_error("Invalid value for '--port': '%s' is not a valid port number", optarg);
                return CTL_USAGE;
            }
            break;
        default: return CTL_USAGE;
        }
    }
    if (optind + 1 < argc) {
        ctl_error("Got unexpected extra argument (%s)", argv[optind + 1]);
        return CTL_USAGE;
    }
    if ((!host || !*host) && !port && (!restore || !*restore)) {
        ctl_error("At least --host, --port or --restore-command should be specified");
        return CTL_ERROR; /* (patronictl: a ClickException, exit 1) */
    }
    cJSON *sc = cJSON_CreateObject();
    if (host && *host)
        cJSON_AddStringToObject(sc, "host", host);
    if (port)
        cJSON_AddNumberToObject(sc, "port", (double)port);
    if (slot && *slot)
        cJSON_AddStringToObject(sc, "primary_slot_name", slot);
    if (restore && *restore)
        cJSON_AddStringToObject(sc, "restore_command", restore);
    return change_cluster_role(c, optind < argc ? argv[optind] : NULL, force, sc);
}

int cmd_promote_cluster(Ctl *c, int argc, char **argv) {
    static const struct option opts[] = {{"force", no_argument, NULL, 'f'},
                                         {"group", required_argument, NULL, 'g'},
                                         {0}};
    bool force = false;
    int o;
    while ((o = ctl_getopt(argc, argv, "", opts)) != -1) {
        if (o == 'f')
            force = true;
        else if (o != 'g')
            return CTL_USAGE;
    }
    if (optind + 1 < argc) {
        ctl_error("Got unexpected extra argument (%s)", argv[optind + 1]);
        return CTL_USAGE;
    }
    return change_cluster_role(c, optind < argc ? argv[optind] : NULL, force, NULL);
}
