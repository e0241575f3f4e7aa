/* The commands that act on members through their REST API: restart, reload, reinit, flush; and remove
 * (the cluster's keys deleted from etcd after three confirmations). */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/commands.h"
#include "common/json.h"
#include "ctl/ctl_int.h"

/* patronictl's get_members(): the members named (all of the role when none is named, except for a
 * reinit, which asks), the table printed first. NULL with the error printed (*rc set). */
static const Member **get_members(const Cluster *cl, const char *scope, StrList *names, CtlRole role, bool force,
                                  const char *action, size_t *ret_n, int *rc) {
    size_t n_cand;
    const Member **cand = ctl_members_with_role(cl, role, &n_cand);
    *rc = CTL_ERROR;
    if (!names->n && !n_cand) {
        ctl_error("%s cluster doesn't have any members", scope);
        free(cand);
        return NULL;
    }
    ctl_print_members(cl, scope);
    for (size_t i = 0; i < names->n; i++)
        if (!cluster_get_member(cl, names->v[i])) {
            ctl_error("%s is not a member of cluster %s", names->v[i], scope);
            free(cand);
            return NULL;
        }
    StrList chosen = {0};
    for (size_t i = 0; i < n_cand; i++)
        if (names->n ? strlist_contains(names, cand[i]->name) : !streq(action, "reinitialize"))
            strlist_add(&chosen, cand[i]->name);
    if (names->n && !chosen.n) {
        ctl_error("No %s among provided members", ctl_role_name(role));
        free(cand);
        return NULL;
    }
    if (!chosen.n && !force) {
        StrList all = {0};
        for (size_t i = 0; i < n_cand; i++)
            strlist_add(&all, cand[i]->name);
        char *list = strlist_join(&all, ", "), *q = xasprintf("Which member do you want to %s [%s]?", action, list);
        char *answer = ctl_prompt(q, "");
        free(list);
        free(q);
        strlist_clear(&all);
        if (!answer) {
            *rc = ctl_aborted();
            free(cand);
            return NULL;
        }
        strlist_add(&chosen, answer);
        free(answer);
    }
    if (!chosen.n) {
        ctl_error("no member to %s: name them", action);
        free(cand);
        return NULL;
    }
    const Member **out = xcalloc(n_cand + 1, sizeof *out);
    size_t n = 0;
    for (size_t i = 0; i < n_cand; i++)
        if (strlist_contains(&chosen, cand[i]->name))
            out[n++] = cand[i];
    for (size_t i = 0; i < chosen.n; i++) {
        bool known = false;
        for (size_t k = 0; k < n; k++)
            known |= streq(out[k]->name, chosen.v[i]);
        if (!known) {
            ctl_error("%s is not a member of cluster", chosen.v[i]);
            free(out);
            out = NULL;
            break;
        }
    }
    strlist_clear(&chosen);
    free(cand);
    *ret_n = n;
    return out;
}

static char *member_names(const Member **ms, size_t n) {
    StrList l = {0};
    for (size_t i = 0; i < n; i++)
        strlist_add(&l, ms[i]->name);
    char *s = strlist_join(&l, ", ");
    strlist_clear(&l);
    return s;
}

/* patronictl's confirm_members_action(): CTL_OK to go on. */
static int confirm_members(const Member **ms, size_t n, bool force, const char *action, const char *scheduled,
                           bool pending) {
    if (force)
        return CTL_OK;
    char *names = member_names(ms, n), *q;
    if (scheduled && pending)
        q = xstrdup("The nodes needing a restart will be identified at the scheduled time, and might be different "
                    "from the ones showing pending restart right now. Is this fine?");
    else if (scheduled)
        q = xasprintf("Are you sure you want to schedule %s of members %s at %s?", action, names, scheduled);
    else
        q = xasprintf("Are you sure you want to %s members %s?", action, names);
    int yes = ctl_confirm(q);
    free(q);
    free(names);
    if (yes < 0)
        return ctl_aborted();
    if (!yes) {
        ctl_error("Aborted %s%s", scheduled ? "scheduled " : "", action);
        return CTL_ERROR;
    }
    return CTL_OK;
}

/* check_response(): prints Success/Failed; false on an HTTP error or no answer. */
static bool check_response(const RestResponse *r, const char *member, const char *action, bool silent) {
    if (!r->status) {
        printf("Failed: %s for member %s, (%s: %s)\n", action, member, r->url, r->error);
        return false;
    }
    if (r->status >= 400) {
        printf("Failed: %s for member %s, status code=%ld, (%s)\n", action, member, r->status, r->body);
        ctl_rest_auth_failed(r, member);
        return false;
    }
    if (!silent)
        printf("Success: %s for member %s\n", action, member);
    return true;
}

/* Common options: -r ROLE, --force, --group; positional CLUSTER MEMBER... */
typedef struct MemberArgs {
    CtlRole role;
    bool force;
    StrList names;
} MemberArgs;

/* Connect to the cluster named by the first positional argument (required) and read it. */
static Cluster *open_cluster(Ctl *c, int argc, char **argv, MemberArgs *a) {
    if (optind >= argc) {
        ctl_error("Missing argument 'CLUSTER_NAME'.");
        return NULL;
    }
    for (int i = optind + 1; i < argc; i++)
        strlist_add(&a->names, argv[i]);
    if (ctl_connect(c, argv[optind]) < 0)
        return NULL;
    return ctl_read_cluster(c);
}

int cmd_restart(Ctl *c, int argc, char **argv) {
    static const struct option opts[] = {{"role", required_argument, NULL, 'r'},
                                         {"any", no_argument, NULL, 'A'},
                                         {"scheduled", required_argument, NULL, 'S'},
                                         {"pg-version", required_argument, NULL, 'V'},
                                         {"pending", no_argument, NULL, 'P'},
                                         {"timeout", required_argument, NULL, 'T'},
                                         {"force", no_argument, NULL, 'F'},
                                         {"group", required_argument, NULL, 'g'},
                                         {0}};
    MemberArgs a = {.role = ROLE_ANY};
    bool any = false, pending = false;
    const char *scheduled = NULL, *version = NULL, *timeout = NULL;
    int o;
    while ((o = ctl_getopt(argc, argv, "r:", opts)) != -1) {
        switch (o) {
        case 'r':
            if (ctl_role_arg(optarg, &a.role) < 0)
                return CTL_USAGE;
            break;
        case 'A': any = true; break;
        case 'S': scheduled = optarg; break;
        case 'V': version = optarg; break;
        case 'P': pending = true; break;
        case 'T': timeout = optarg; break;
        case 'F': a.force = true; break;
        case 'g': break;
        default: return CTL_USAGE;
        }
    }
    int rc = CTL_ERROR;
    char *sched_in = NULL, *ver_in = NULL, *iso = NULL, *err = NULL;
    const Member **ms = NULL;
    size_t n = 0;
    cJSON *content = cJSON_CreateObject();
    Cluster *cl = open_cluster(c, argc, argv, &a);
    if (!cl || !(ms = get_members(cl, c->cfg.scope, &a.names, a.role, a.force, "restart", &n, &rc)))
        goto out;
    rc = CTL_ERROR;
    if (!scheduled && !a.force && !(scheduled = sched_in = ctl_prompt_when("restart", ""))) {
        rc = ctl_aborted();
        goto out;
    }
    if (ctl_parse_scheduled(scheduled, &iso, &err) < 0) {
        ctl_error("%s", err);
        goto out;
    }
    if (pending) {
        cJSON_AddTrueToObject(content, "restart_pending");
        /* a scheduled restart finds the members needing it at its time */
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (iso || ms[i]->pending_restart)
                ms[k++] = ms[i];
        n = k;
    }
    if (any && n > 1) {
        srand((unsigned)time(NULL) ^ (unsigned)getpid());
        ms[0] = ms[(size_t)rand() % n];
        n = 1;
    }
    char *when = iso ? xstrdup(iso) : NULL;
    if (when && strchr(when, 'T'))
        *strchr(when, 'T') = ' '; /* str(datetime) */
    rc = confirm_members(ms, n, a.force, "restart", when, pending);
    free(when);
    if (rc != CTL_OK)
        goto out;
    rc = CTL_ERROR;
    if (!version && !a.force) {
        version = ver_in = ctl_prompt("Restart if the PostgreSQL version is less than provided (e.g. 9.5.2) ", "");
        if (!ver_in) {
            rc = ctl_aborted();
            goto out;
        }
    }
    if (version && *version) {
        long long v;
        if (postgres_version_to_int(version, &v, &err) < 0) {
            ctl_error("%s", err);
            goto out;
        }
        cJSON_AddStringToObject(content, "postgres_version", version);
    }
    if (iso) {
        if (ctl_is_paused(cl)) {
            ctl_error("Can't schedule restart in the paused state");
            goto out;
        }
        cJSON_AddStringToObject(content, "schedule", iso);
    }
    if (timeout)
        cJSON_AddStringToObject(content, "timeout", timeout);
    char *body = json_dumps(content, true);
    rc = CTL_OK;
    for (size_t i = 0; i < n; i++) {
        RestResponse r;
        if (iso && a.force && ms[i]->scheduled_restart) {
            ctl_rest(c, ms[i], "DELETE", "restart", NULL, 30000, &r);
            check_response(&r, ms[i]->name, "flush scheduled restart", true);
            rest_response_clear(&r);
        }
        ctl_rest(c, ms[i], "POST", "restart", body, 0, &r);
        if (r.status == 200)
            printf("Success: restart on member %s\n", ms[i]->name);
        else if (r.status == 202)
            printf("Success: restart scheduled on member %s\n", ms[i]->name);
        else if (r.status == 409)
            printf("Failed: another restart is already scheduled on member %s\n", ms[i]->name);
        else if (!r.status)
            printf("Failed: restart for member %s, (%s: %s)\n", ms[i]->name, r.url, r.error);
        else
            printf("Failed: restart for member %s, status code=%ld, (%s)\n", ms[i]->name, r.status, r.body);
        if (r.status != 200 && r.status != 202) {
            ctl_rest_auth_failed(&r, ms[i]->name);
            rc = CTL_ERROR;
        }
        rest_response_clear(&r);
    }
    free(body);
out:
    fflush(stdout);
    cJSON_Delete(content);
    strlist_clear(&a.names);
    free(ms);
    free(sched_in);
    free(ver_in);
    free(iso);
    free(err);
    cluster_free(cl);
    return rc;
}

static int parse_member_args(int argc, char **argv, MemberArgs *a, bool *from_leader, bool *wait) {
    static const struct option opts[] = {{"role", required_argument, NULL, 'r'},  {"force", no_argument, NULL, 'F'},
                                         {"from-leader", no_argument, NULL, 'L'}, {"wait", no_argument, NULL, 'w'},
                                         {"group", required_argument, NULL, 'g'}, {0}};
    int o;
    while ((o = ctl_getopt(argc, argv, from_leader ? "" : "r:", opts)) != -1) {
        if (o == 'r' && !from_leader) {
            if (ctl_role_arg(optarg, &a->role) < 0)
                return -1;
        } else if (o == 'F') {
            a->force = true;
        } else if ((o == 'L' || o == 'w') && from_leader) {
            *(o == 'L' ? from_leader : wait) = true;
        } else if (o != 'g') {
            return -1;
        }
    }
    return 0;
}

int cmd_reload(Ctl *c, int argc, char **argv) {
    MemberArgs a = {.role = ROLE_ANY};
    if (parse_member_args(argc, argv, &a, NULL, NULL) < 0)
        return CTL_USAGE;
    int rc = CTL_ERROR;
    size_t n = 0;
    const Member **ms = NULL;
    Cluster *cl = open_cluster(c, argc, argv, &a);
    if (cl && (ms = get_members(cl, c->cfg.scope, &a.names, a.role, a.force, "reload", &n, &rc)) &&
        (rc = confirm_members(ms, n, a.force, "reload", NULL, false)) == CTL_OK) {
        for (size_t i = 0; i < n; i++) {
            RestResponse r;
            ctl_rest(c, ms[i], "POST", "reload", NULL, 30000, &r);
            if (r.status == 200) {
                printf("No changes to apply on member %s\n", ms[i]->name);
            } else if (r.status == 202) {
                printf("Reload request received for member %s and will be processed within %lld seconds\n", ms[i]->name,
                       ctl_config_ll(cl, "loop_wait", 10));
            } else {
                if (r.status)
                    printf("Failed: reload for member %s, status code=%ld, (%s)\n", ms[i]->name, r.status, r.body);
                else
                    printf("Failed: reload for member %s, (%s: %s)\n", ms[i]->name, r.url, r.error);
                ctl_rest_auth_failed(&r, ms[i]->name);
                rc = CTL_ERROR;
            }
            rest_response_clear(&r);
        }
    }
    strlist_clear(&a.names);
    free(ms);
    cluster_free(cl);
    return rc;
}

/* --wait: GET /patroni every 2 s until the member is no longer creating a replica and runs again. */
static int wait_reinit(Ctl *c, const Member **ms, size_t n, char **start_times) {
    int rc = CTL_OK;
    bool *done = xcalloc(n + 1, sizeof(bool));
    size_t left = n;
    char *shown = NULL;
    while (left) {
        StrList waiting = {0};
        for (size_t i = 0; i < n; i++)
            if (!done[i])
                strlist_add(&waiting, ms[i]->name);
        char *list = strlist_join(&waiting, ", ");
        strlist_clear(&waiting);
        if (!streq(list, shown))
            printf("Waiting for reinitialize to complete on: %s\n", list);
        fflush(stdout);
        free(shown);
        shown = list;
        sleep(2);
        for (size_t i = 0; i < n; i++) {
            if (done[i])
                continue;
            RestResponse r;
            ctl_rest(c, ms[i], "GET", "patroni", NULL, 10000, &r);
            cJSON *j = r.status == 200 ? json_parse(r.body) : NULL;
            const char *state = json_get_string(j, "state"), *started = json_get_string(j, "postmaster_start_time");
            /* finished: running again since the reinitialize (a new postmaster), or failed */
            if (state && strstr(state, "failed")) {
                printf("Reinitialize failed on: %s (state: %s)\n", ms[i]->name, state);
                rc = CTL_ERROR;
                done[i] = true;
                left--;
            } else if (streq(state, "running") && started && !streq(started, start_times[i])) {
                printf("Reinitialize is completed on: %s\n", ms[i]->name);
                done[i] = true;
                left--;
            }
            cJSON_Delete(j);
            rest_response_clear(&r);
        }
    }
    free(shown);
    free(done);
    return rc;
}

int cmd_reinit(Ctl *c, int argc, char **argv) {
    MemberArgs a = {.role = ROLE_REPLICA};
    bool from_leader = false, wait = false;
    if (parse_member_args(argc, argv, &a, &from_leader, &wait) < 0)
        return CTL_USAGE;
    int rc = CTL_ERROR;
    size_t n = 0, n_wait = 0;
    const Member **ms = NULL, **waits = NULL;
    char **starts = NULL;
    Cluster *cl = open_cluster(c, argc, argv, &a);
    if (!cl || !(ms = get_members(cl, c->cfg.scope, &a.names, a.role, a.force, "reinitialize", &n, &rc)) ||
        (rc = confirm_members(ms, n, a.force, "reinitialize", NULL, false)) != CTL_OK)
        goto out;
    waits = xcalloc(n + 1, sizeof *waits);
    starts = xcalloc(n + 1, sizeof *starts);
    for (size_t i = 0; i < n; i++) {
        RestResponse r;
        bool force = a.force, started;
        char *st = NULL;
        if (wait) {
            /* the postmaster it runs now, to tell the new one */
            ctl_rest(c, ms[i], "GET", "patroni", NULL, 10000, &r);
            cJSON *j = r.status == 200 ? json_parse(r.body) : NULL;
            const char *t = json_get_string(j, "postmaster_start_time");
            st = t ? xstrdup(t) : NULL;
            cJSON_Delete(j);
            rest_response_clear(&r);
        }
        for (;;) {
            char *body = xasprintf("{\"force\": %s, \"from_leader\": %s}", force ? "true" : "false",
                                   from_leader ? "true" : "false");
            ctl_rest(c, ms[i], "POST", "reinitialize", body, 60000, &r);
            free(body);
            started = check_response(&r, ms[i]->name, "reinitialize", false);
            size_t bl = r.body ? strlen(r.body) : 0;
            bool busy = !started && bl > 20 && streq(r.body + bl - 20, " already in progress");
            int yes = busy && !force ? ctl_confirm("Do you want to cancel it and reinitialize anyway?") : 0;
            rest_response_clear(&r);
            if (yes == 1) {
                force = true;
                continue;
            }
            break;
        }
        if (started && wait) {
            waits[n_wait] = ms[i];
            starts[n_wait++] = st;
        } else {
            free(st);
            if (!started)
                rc = CTL_ERROR;
        }
    }
    if (n_wait && wait_reinit(c, waits, n_wait, starts) != CTL_OK)
        rc = CTL_ERROR;
out:
    for (size_t i = 0; i < n_wait; i++)
        free(starts[i]);
    free(starts);
    free(waits);
    strlist_clear(&a.names);
    free(ms);
    cluster_free(cl);
    return rc;
}

int cmd_flush(Ctl *c, int argc, char **argv) {
    MemberArgs a = {.role = ROLE_ANY};
    if (parse_member_args(argc, argv, &a, NULL, NULL) < 0)
        return CTL_USAGE;
    if (argc - optind < 2) {
        ctl_error("Missing argument '{restart|switchover}'.");
        return CTL_USAGE;
    }
    const char *target = argv[--argc];
    if (!streq(target, "restart") && !streq(target, "switchover")) {
        ctl_error("Invalid value for '{restart|switchover}': '%s' is not one of 'restart', 'switchover'.", target);
        return CTL_USAGE;
    }
    int rc = CTL_ERROR;
    size_t n = 0;
    const Member **ms = NULL;
    Cluster *cl = open_cluster(c, argc, argv, &a);
    if (!cl)
        goto out;
    if (streq(target, "restart")) {
        if (!(ms = get_members(cl, c->cfg.scope, &a.names, a.role, a.force, "flush", &n, &rc)) ||
            (rc = confirm_members(ms, n, a.force, "flush", NULL, false)) != CTL_OK)
            goto out;
        for (size_t i = 0; i < n; i++) {
            if (!ms[i]->scheduled_restart) {
                printf("No scheduled restart for member %s\n", ms[i]->name);
                continue;
            }
            RestResponse r;
            ctl_rest(c, ms[i], "DELETE", "restart", NULL, 30000, &r);
            if (!check_response(&r, ms[i]->name, "flush scheduled restart", false))
                rc = CTL_ERROR;
            rest_response_clear(&r);
        }
        goto out;
    }
    rc = CTL_OK;
    if (!cl->failover.present || !cl->failover.scheduled_at) {
        printf("No pending scheduled switchover\n");
        goto out;
    }
    ms = ctl_members_leader_first(cl, &n);
    for (size_t i = 0; i < n; i++) {
        RestResponse r;
        ctl_rest(c, ms[i], "DELETE", "switchover", NULL, 30000, &r);
        bool answered = r.status == 200 || r.status == 404;
        if (answered)
            printf("%s: %s\n", r.status == 200 ? "Success" : "Failed", r.body);
        else if (r.status)
            printf("Failed: member=%s, status_code=%ld, (%s)\n", ms[i]->name, r.status, r.body);
        else
            fprintf(stderr, "Warning: member %s is not accessible (%s: %s)\n", ms[i]->name, r.url, r.error);
        if (r.status && !answered)
            ctl_rest_auth_failed(&r, ms[i]->name);
        rc = r.status == 200 ? CTL_OK : CTL_ERROR;
        rest_response_clear(&r);
        if (answered)
            goto out;
    }
    char *ts = ctl_timestamp(5);
    printf("%s Could not find any accessible member of cluster %s\n", ts, c->cfg.scope);
    free(ts);
    if (dcs_set_failover(c->dcs, "{}", cl->failover.version) > 0) {
        rc = CTL_OK;
    } else {
        ctl_error("cannot clear the failover key in etcd (%s): %s", c->endpoints, dcs_error(c->dcs));
        rc = CTL_ERROR;
    }
out:
    strlist_clear(&a.names);
    free(ms);
    cluster_free(cl);
    return rc;
}

int cmd_remove(Ctl *c, int argc, char **argv) {
    CtlFormat fmt = FMT_PRETTY;
    if (ctl_format_opts(argc, argv, &fmt) != CTL_OK)
        return CTL_USAGE;
    MemberArgs a = {0};
    Cluster *cl = open_cluster(c, argc, argv, &a);
    strlist_clear(&a.names);
    if (!cl)
        return CTL_ERROR;
    const char *scope = c->cfg.scope;
    int rc = CTL_ERROR;
    char *out = ctl_members_output(cl, scope, false, fmt);
    fputs(out, stdout);
    free(out);
    char *answer = ctl_prompt("Please confirm the cluster name to remove", NULL), *q = NULL;
    if (!answer) {
        rc = ctl_aborted();
        goto done;
    }
    if (!streq(answer, scope)) {
        ctl_error("Cluster names specified do not match");
        goto done;
    }
    free(answer);
    q = xasprintf("You are about to remove all information in DCS for %s, please type: \"Yes I am aware\"", scope);
    if (!(answer = ctl_prompt(q, NULL))) {
        rc = ctl_aborted();
        goto done;
    }
    if (!streq(answer, "Yes I am aware")) {
        ctl_error("You did not exactly type \"Yes I am aware\"");
        goto done;
    }
    if (cl->leader && cl->leader->name && *cl->leader->name) {
        free(answer);
        if (!(answer = ctl_prompt("This cluster currently is healthy. Please specify the leader name to continue",
                                  NULL))) {
            rc = ctl_aborted();
            goto done;
        }
        if (!streq(answer, cl->leader->name)) {
            ctl_error("You did not specify the current leader of the cluster");
            goto done;
        }
    }
    if (dcs_delete_cluster(c->dcs) < 0)
        ctl_error("cannot delete the cluster %s from etcd (%s): %s", scope, c->endpoints, dcs_error(c->dcs));
    else
        rc = CTL_OK;
done:
    free(answer);
    free(q);
    cluster_free(cl);
    return rc;
}
