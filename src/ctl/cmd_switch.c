/* switchover and failover: patronictl's checks and prompts, the request to the leader's REST API (the
 * failover key written directly when no REST API answers), then, unlike patronictl, the outcome watched
 * in etcd until it is known: the new leader holds the leader key and runs as the primary, or the
 * failover key was cleared without a change of leader. The REST answer alone decides nothing (the
 * agent gives up after 2 x max(10, loop_wait) s and may say "failed" while it is still under way). */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/json.h"
#include "ctl/ctl_int.h"

typedef struct Switch {
    const char *action; /* "switchover" or "failover" */
    const char *leader, *candidate, *scheduled;
    bool force;
    double timeout; /* 0: the default */
} Switch;

static bool config_truthy(const Cluster *cl, const char *key) {
    const cJSON *v = cl->config ? cJSON_GetObjectItemCaseSensitive(cl->config, key) : NULL;
    if (cJSON_IsString(v))
        return strcaseeq(v->valuestring, "on") || strcaseeq(v->valuestring, "true") ||
               strcaseeq(v->valuestring, "yes") || strcaseeq(v->valuestring, "quorum");
    if (cJSON_IsObject(v))
        return cJSON_GetArraySize(v) > 0;
    return cJSON_IsTrue(v);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *candidate_list(const StrList *names) {
    /* Python's repr() of a list of names: ['node2', 'node3'] */
    StrBuf b;
    sb_init(&b);
    sb_addc(&b, '[');
    for (size_t i = 0; i < names->n; i++)
        sb_addf(&b, "%s'%s'", i ? ", " : "", names->v[i]);
    sb_addc(&b, ']');
    return sb_steal(&b);
}

char *ctl_switch_phase(const Cluster *cl, const char *candidate, const char *old_leader, bool requested,
                       Outcome *outcome) {
    const char *holder = cl->leader && cl->leader->name && *cl->leader->name ? cl->leader->name : NULL;
    bool key_set = cl->failover.present && !failover_is_empty(&cl->failover);
    bool standby = config_truthy(cl, "standby_cluster");
    if (holder && !streq(holder, old_leader)) {
        const Member *m = cluster_get_member(cl, holder);
        const char *state = m && m->state ? m->state : "unknown", *role = m && m->role ? m->role : "unknown";
        bool runs = streq(state, "running") &&
                    (standby ? streq(role, "standby_leader") : streq(role, "primary") || streq(role, "master"));
        if (!runs)
            return xasprintf("%s holds the leader key (state: %s, role: %s)", holder, state, role);
        *outcome = !candidate || !*candidate || streq(holder, candidate) ? DONE : OTHER;
        return xasprintf("%s holds the leader key and runs as the %s", holder, standby ? "standby leader" : "primary");
    }
    if (!holder)
        return old_leader ? xasprintf("%s released the leader key; nobody holds it yet", old_leader)
                          : xstrdup("nobody holds the leader key yet");
    if (key_set)
        return xasprintf("the failover key asks %s to hand over to %s", holder,
                         candidate && *candidate ? candidate : "the healthiest replica");
    if (requested) {
        *outcome = FAILED;
        return xasprintf("the failover key was cleared and %s still holds the leader key", holder);
    }
    return xasprintf("%s holds the leader key; the request is on its way", holder);
}

static bool is_pending_answer(const RestResponse *r) {
    /* the agent's own wait ended: the outcome is still to be seen in etcd */
    return r->status == 503 && r->body &&
           (strstr(r->body, "status unknown") || streq(r->body, "Switchover failed") ||
            streq(r->body, "Failover failed"));
}

/* The failover key written directly (patronictl's fallback when no REST API answers). */
static int request_via_dcs(Ctl *c, const Switch *s, const char *iso) {
    char *fo = cluster_encode_failover(s->leader, s->candidate && *s->candidate ? s->candidate : NULL, iso);
    int r = dcs_set_failover(c->dcs, fo, 0);
    free(fo);
    if (r < 0) {
        ctl_error("cannot write the failover key in etcd (%s): %s", c->endpoints, dcs_error(c->dcs));
        return CTL_ERROR;
    }
    if (iso)
        ctl_say("Switchover scheduled");
    return -1;
}

/* What the REST answer means: an exit code when it ends the command, -1 when the outcome is to be
 * watched in etcd (*requested: the failover key has been written). */
static int rest_answer(Ctl *c, const Switch *s, const char *member, RestResponse *r, const char *iso, bool *requested) {
    if (!r->status) {
        ctl_say("Could not %s using Patroni api (%s: %s), falling back to DCS", s->action, r->url, r->error);
        int rc = request_via_dcs(c, s, iso);
        *requested = rc < 0;
        return rc >= 0 ? rc : iso ? CTL_OK : -1;
    }
    if (ctl_rest_auth_failed(r, member))
        return CTL_ERROR;
    if (r->status == 200 || r->status == 202) {
        ctl_say("%s", r->body);
        *requested = true;
        return r->status == 202 || iso ? CTL_OK : -1;
    }
    if (is_pending_answer(r)) {
        ctl_say("%s answered %ld %s; watching etcd for the outcome", member, r->status, r->body);
        *requested = true;
        return -1;
    }
    char *a = xstrdup(s->action);
    a[0] = (char)(a[0] - 32);
    printf("%s failed, details: %ld, %s\n", a, r->status, r->body);
    free(a);
    return CTL_FAILED;
}

static int verdict(const Switch *s, Outcome outcome, const char *last, double timeout) {
    switch (outcome) {
    case DONE: ctl_say("%s done: %s", s->action, last); return CTL_OK;
    case OTHER: ctl_say("%s done, but not to %s: %s", s->action, s->candidate, last); return CTL_OTHER_LEADER;
    case FAILED: ctl_say("%s failed: %s", s->action, last); return CTL_FAILED;
    default:
        ctl_say("%s still under way after %g s: %s (pgha-ctl list shows how it ends)", s->action, timeout,
                last ? last : "etcd did not answer");
        return CTL_UNKNOWN;
    }
}

static int watch_outcome(Ctl *c, const Switch *s, const Member *target, const char *old_leader, const char *body,
                         const char *iso, double timeout) {
    bool requested = false, rest_done = !target, etcd_down = false;
    RestCall *call = NULL;
    if (target) {
        call = ctl_rest_start(c, target, "POST", s->action, body, (long)(timeout * 1000) + 5000);
    } else {
        ctl_say("Could not %s using Patroni api (no REST API address known), falling back to DCS", s->action);
        int rc = request_via_dcs(c, s, iso);
        if (rc >= 0 || iso)
            return rc >= 0 ? rc : CTL_OK;
        requested = true;
    }
    usec_t deadline = now_monotonic() + (usec_t)(timeout * 1e6);
    char *last = NULL;
    Outcome outcome = PENDING;
    int rc = -1;
    while (rc < 0) {
        if (!rest_done) {
            RestResponse r;
            if (ctl_rest_poll(call, 500, &r)) {
                rest_done = true;
                rc = rest_answer(c, s, target->name, &r, iso, &requested);
                if (!r.status)
                    deadline = now_monotonic() + (usec_t)(timeout * 1e6);
                rest_response_clear(&r);
                if (rc >= 0)
                    break;
            }
        } else {
            struct timespec ts = {0, 500 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        Cluster *cl = NULL;
        if (dcs_read_cluster(c->dcs, true, &cl) < 0) {
            if (!etcd_down)
                ctl_say("etcd is unreachable (%s): %s; still waiting", c->endpoints, dcs_error(c->dcs));
            etcd_down = true;
        } else {
            etcd_down = false;
            char *p = ctl_switch_phase(cl, s->candidate, old_leader, requested && rest_done, &outcome);
            if (!streq(p, last))
                ctl_say("%s", p);
            free(last);
            last = p;
            cluster_free(cl);
        }
        if (outcome == PENDING && now_monotonic() >= deadline)
            outcome = UNKNOWN;
        if (outcome != PENDING)
            break;
    }
    if (rc < 0 && call && !rest_done) {
        /* the agent answers within a second of the change: print its answer too */
        RestResponse r;
        usec_t until = now_monotonic() + 3 * USEC_PER_SEC;
        while (now_monotonic() < until)
            if (ctl_rest_poll(call, 500, &r)) {
                if (r.status)
                    ctl_say("%s", r.body);
                rest_response_clear(&r);
                break;
            }
        /* a last look once the wait is over: it may have ended meanwhile */
        Cluster *cl = NULL;
        if (outcome == UNKNOWN && dcs_read_cluster(c->dcs, true, &cl) >= 0) {
            Outcome o = PENDING;
            char *p = ctl_switch_phase(cl, s->candidate, old_leader, requested, &o);
            if (o != PENDING && o != FAILED) {
                ctl_say("%s", p);
                free(last);
                last = p;
                outcome = o;
            } else {
                free(p);
            }
            cluster_free(cl);
        }
    }
    ctl_rest_free(call);
    if (rc < 0)
        rc = verdict(s, outcome, last, timeout);
    free(last);
    return rc;
}

static int do_switch(Ctl *c, int argc, char **argv, Switch *s) {
    static const struct option opts[] = {
        {"leader", required_argument, NULL, 'l'},    {"primary", required_argument, NULL, 'l'},
        {"candidate", required_argument, NULL, 'C'}, {"scheduled", required_argument, NULL, 'S'},
        {"force", no_argument, NULL, 'F'},           {"timeout", required_argument, NULL, 'T'},
        {"group", required_argument, NULL, 'g'},     {0}};
    bool switchover = streq(s->action, "switchover");
    int o;
    while ((o = ctl_getopt(argc, argv, "", opts)) != -1) {
        switch (o) {
        case 'l':
        case 'S':
            if (!switchover) {
                ctl_error("No such option: --%s", o == 'l' ? "leader" : "scheduled");
                return CTL_USAGE;
            }
            *(o == 'l' ? &s->leader : &s->scheduled) = optarg;
            break;
        case 'C': s->candidate = optarg; break;
        case 'F': s->force = true; break;
        case 'T':
            if (parse_double(optarg, &s->timeout) < 0 || s->timeout <= 0) {
                ctl_error("Invalid value for '--timeout': '%s' is not a positive number of seconds", optarg);
                return CTL_USAGE;
            }
            break;
        case 'g': break;
        default: return CTL_USAGE;
        }
    }
    if (ctl_connect(c, optind < argc ? argv[optind] : NULL) < 0)
        return CTL_ERROR;
    const char *scope = c->cfg.scope;
    Cluster *cl = ctl_read_cluster(c);
    if (!cl)
        return CTL_ERROR;
    int rc = CTL_ERROR;
    char *leader_in = NULL, *cand_in = NULL, *sched_in = NULL, *iso = NULL, *err = NULL, *body = NULL;
    StrList names = {0};
    printf("Current cluster topology\n");
    ctl_print_members(cl, scope);
    const char *holder = cl->leader && cl->leader->name && *cl->leader->name ? cl->leader->name : NULL;
    if (switchover) {
        if (!holder) {
            ctl_error("This cluster has no leader");
            goto out;
        }
        if (!s->leader && s->force)
            s->leader = holder;
        if (!s->leader) {
            if (!(s->leader = leader_in = ctl_prompt(
                      config_truthy(cl, "standby_cluster") ? "Standby Leader" : "Primary", holder))) {
                rc = ctl_aborted();
                goto out;
            }
        }
        if (!streq(s->leader, holder)) {
            ctl_error("Member %s is not the leader of cluster %s", s->leader, scope);
            goto out;
        }
    }
    for (size_t i = 0; i < cl->n_members; i++)
        if (!streq(cl->members[i].name, holder) && !member_nofailover(&cl->members[i]))
            strlist_add(&names, cl->members[i].name);
    qsort(names.v, names.n, sizeof(char *), cmp_str);
    if (!names.n) {
        ctl_error("No candidates found to %s to", s->action);
        goto out;
    }
    if (!s->candidate && !s->force) {
        char *list = candidate_list(&names), *text = xasprintf("Candidate %s", list);
        s->candidate = cand_in = ctl_prompt(text, "");
        free(list);
        free(text);
        if (!cand_in) {
            rc = ctl_aborted();
            goto out;
        }
    }
    if (!switchover && (!s->candidate || !*s->candidate)) {
        ctl_error("Failover could be performed only to a specific candidate");
        goto out;
    }
    if (s->candidate && *s->candidate) {
        if (!strlist_contains(&names, s->candidate)) {
            if (streq(s->candidate, holder))
                ctl_error("Member %s is already the leader of cluster %s", s->candidate, scope);
            else
                ctl_error("Member %s does not exist in cluster %s or is tagged as nofailover", s->candidate, scope);
            goto out;
        }
        const Member *m = cluster_get_member(cl, s->candidate);
        if (!streq(m->state, "running")) {
            ctl_error("candidate %s is not healthy: its PostgreSQL is %s", s->candidate,
                      m->state ? m->state : "unknown");
            goto out;
        }
    }
    if (!s->force && !switchover && config_truthy(cl, "synchronous_mode") && !config_truthy(cl, "standby_cluster") &&
        cl->sync.leader && !sync_matches(&cl->sync, s->candidate)) {
        char *q = xasprintf("Are you sure you want to failover to the asynchronous node %s?", s->candidate);
        int yes = ctl_confirm(q);
        free(q);
        if (yes <= 0) {
            rc = yes < 0 ? ctl_aborted() : CTL_ERROR;
            if (yes == 0)
                ctl_error("Aborting %s", s->action);
            goto out;
        }
    }
    if (switchover) {
        if (!s->scheduled && !s->force && !(s->scheduled = sched_in = ctl_prompt_when("switchover", " "))) {
            rc = ctl_aborted();
            goto out;
        }
        if (ctl_parse_scheduled(s->scheduled, &iso, &err) < 0) {
            ctl_error("%s", err);
            goto out;
        }
        if (iso && ctl_is_paused(cl)) {
            ctl_error("Can't schedule switchover in the paused state");
            goto out;
        }
    }
    if (!s->force) {
        char *demote = holder ? xasprintf(", demoting current leader %s", holder) : xstrdup("");
        char *q = iso ? xasprintf("Are you sure you want to schedule switchover of cluster %s at %s%s?", scope, iso,
                                  demote)
                      : xasprintf("Are you sure you want to %s cluster %s%s?", s->action, scope, demote);
        int yes = ctl_confirm(q);
        free(q);
        free(demote);
        if (yes <= 0) {
            rc = yes < 0 ? ctl_aborted() : CTL_ERROR;
            if (yes == 0)
                ctl_error("Aborting %s%s", iso ? "scheduled " : "", s->action);
            goto out;
        }
    }
    cJSON *req = cJSON_CreateObject();
    if (s->candidate && *s->candidate)
        cJSON_AddStringToObject(req, "candidate", s->candidate);
    if (switchover)
        cJSON_AddStringToObject(req, "leader", s->leader);
    if (iso)
        cJSON_AddStringToObject(req, "scheduled_at", iso);
    body = json_dumps(req, true);
    cJSON_Delete(req);
    /* to the leader; without one (a failover) to the candidate */
    const Member *target = cl->leader && cl->leader->member ? cl->leader->member : NULL;
    if (!holder)
        target = cluster_get_member(cl, s->candidate);
    if (target && !target->api_url)
        target = NULL;
    double timeout = s->timeout;
    if (!timeout) {
        long long loop_wait = ctl_config_ll(cl, "loop_wait", 10);
        timeout = (double)(ctl_config_ll(cl, "ttl", 30) + 4 * (loop_wait > 10 ? loop_wait : 10));
    }
    if (!s->leader)
        s->leader = holder;
    rc = watch_outcome(c, s, target, holder, body, iso, timeout);
    Cluster *after = ctl_read_cluster(c);
    if (after) {
        ctl_print_members(after, scope);
        cluster_free(after);
    }
out:
    fflush(stdout);
    strlist_clear(&names);
    free(leader_in);
    free(cand_in);
    free(sched_in);
    free(iso);
    free(err);
    free(body);
    cluster_free(cl);
    return rc;
}

int cmd_switchover(Ctl *c, int argc, char **argv) {
    Switch s = {.action = "switchover"};
    return do_switch(c, argc, argv, &s);
}

int cmd_failover(Ctl *c, int argc, char **argv) {
    Switch s = {.action = "failover"};
    return do_switch(c, argc, argv, &s);
}
