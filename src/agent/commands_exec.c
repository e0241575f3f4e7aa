/* The HA loop carries out the commands queued for it (commands.h): the validation that needs the
 * cluster view, the DCS writes, the reload request. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <string.h>

#include "agent/commands.h"
#include "agent/ha_int.h"

static const char *action_of(const Command *c) {
    return c->kind == CMD_FAILOVER && !c->leader ? "failover" : "switchover";
}

static void run_failover(Ha *h, Command *c, const Cluster *cl) {
    log_info("received %s request with leader=%s candidate=%s scheduled_at=%s",
             c->kind == CMD_FAILOVER ? "failover" : "switchover", c->leader ? c->leader : "None",
             c->candidate ? c->candidate : "None", c->scheduled_at ? c->scheduled_at : "None");
    char *body = NULL;
    bool paused = false;
    if (cl->config)
        (void)json_get_bool(cl->config, "pause", &paused);
    int code = failover_request_check(c, paused, (double)now_realtime() / 1e6, &body);
    if (code) {
        command_complete(h->commands, c, code, body, false);
        return;
    }
    if (!c->scheduled_at) {
        const char **names = NULL;
        size_t n = 0;
        code = failover_precheck(c, cl, dyn_of(h), &body, &names, &n);
        if (code) {
            command_complete(h->commands, c, code, body, false);
            return;
        }
        /* the considered members must have answered GET /patroni within 2 s, eligible: the submitter
         * probed them (the loop does not wait for other members' REST APIs) */
        bool good = false;
        for (size_t i = 0; i < c->n_good && !good; i++)
            for (size_t j = 0; j < n && !good; j++)
                if (streq(c->good[i], names[j]))
                    good = true;
        free(names);
        if (!good) {
            command_complete(h->commands, c, 412,
                             xasprintf("%s is not possible: no good candidates have been found", action_of(c)), false);
            return;
        }
    }
    /* Patroni writes the parsed time in ISO format */
    _cleanup_free_ char *at = failover_scheduled_iso(c->scheduled_at);
    _cleanup_free_ char *json = cluster_encode_failover(c->leader, c->candidate, at);
    if (dcs_set_failover(h->dcs, json, 0) != 1) {
        log_error("failed to write failover key into DCS: %s", dcs_error(h->dcs));
        command_complete(h->commands, c, 503, xstrdup("failed to write failover key into DCS"), false);
        return;
    }
    h->next_cycle = now_monotonic(); /* act on it now */
    if (c->scheduled_at) {
        command_complete(h->commands, c, 202, xstrdup("Switchover scheduled"), false);
        return;
    }
    c->old_leader = xstrdup(cl->leader ? cl->leader->name : "");
    int lw = loop_wait_s(h);
    c->wait_s = 2 * (lw > 10 ? lw : 10);
    command_complete(h->commands, c, 0, NULL, false);
}

static void run_delete_switchover(Ha *h, Command *c, const Cluster *cl) {
    if (!cl->failover.scheduled_at) {
        command_complete(h->commands, c, 404, xstrdup("no switchover is scheduled"), false);
        return;
    }
    if (dcs_set_failover(h->dcs, "{}", cl->failover.version) != 1) {
        command_complete(h->commands, c, 409, NULL, false);
        return;
    }
    command_complete(h->commands, c, 200, xstrdup("scheduled switchover deleted"), false);
}

static void run_patch_config(Ha *h, Command *c, const Cluster *cl) {
    if (!cl->has_config || cl->config_version <= 0 || !cl->config) {
        command_complete(h->commands, c, 503, NULL, false);
        return;
    }
    cJSON *cfg = cJSON_Duplicate(cl->config, true);
    if (config_patch(cfg, c->body)) {
        _cleanup_free_ char *json = json_dumps(cfg, false);
        if (dcs_set_config(h->dcs, json, cl->config_version) != 1) {
            cJSON_Delete(cfg);
            command_complete(h->commands, c, 409, NULL, false);
            return;
        }
        h->next_cycle = now_monotonic();
    }
    char *body = json_dumps(cfg, true);
    cJSON_Delete(cfg);
    command_complete(h->commands, c, 200, body, true);
}

static void run_put_config(Ha *h, Command *c, const Cluster *cl) {
    _cleanup_free_ char *json = json_dumps(c->body, false);
    bool same = cl->has_config && cl->config && cJSON_Compare(cl->config, c->body, true);
    if (!same) {
        if (dcs_set_config(h->dcs, json, 0) != 1) {
            command_complete(h->commands, c, 502, NULL, false);
            return;
        }
        h->next_cycle = now_monotonic();
    }
    command_complete(h->commands, c, 200, json_dumps(c->body, true), true);
}

/* A command's DCS calls must end before the next cycle is due (the lease renewal, TILT, the watchdog
 * count on it): one runs only when this much is left, its calls bounded by the cycle's start. */
#define COMMAND_MIN_BUDGET (1 * USEC_PER_SEC)

static void commands_run_one(Ha *h, bool forced) {
    usec_t now = now_monotonic();
    /* the submitters' wait: the loop's worst case (a cycle with a demotion waits pg_ctl_timeout) */
    long long pg_ctl_timeout = cfg_of(h)->postgresql.pg_ctl_timeout > 0 ? cfg_of(h)->postgresql.pg_ctl_timeout : 60;
    long long wait_s = pg_ctl_timeout + 2LL * dyn_of(h)->retry_timeout + loop_wait_s(h) + 5;
    command_queue_set_timeout(h->commands, (int)(wait_s * 1000));
    if (command_queue_length(h->commands) == 0)
        return;
    if (!forced && (h->next_cycle <= now || h->next_cycle - now < COMMAND_MIN_BUDGET))
        return; /* after the next cycle */
    Command *c = command_queue_pop(h->commands);
    if (!c)
        return;
    if (c->kind == CMD_RELOAD) {
        h->reload_pending = true;
        command_complete(h->commands, c, 202, xstrdup("reload scheduled"), false);
    } else if (c->kind == CMD_RESTART || c->kind == CMD_DELETE_RESTART) {
        dcs_set_call_deadline(h->next_cycle); /* the member key, a fresh /sync: before the next cycle */
        restart_command(h, c);                /* no cluster read: it acts on the local PostgreSQL */
        dcs_set_call_deadline(0);
    } else {
        dcs_set_call_deadline(h->next_cycle);
        /* a fresh read: the decisions below must not act on a stale view */
        Cluster *cl = NULL;
        if (dcs_read_cluster(h->dcs, false, &cl) < 0) {
            /* Patroni: an unhandled exception closes the connection without an answer */
            log_error("cannot read the cluster for a REST command: %s", dcs_error(h->dcs));
            command_complete(h->commands, c, -1, NULL, false);
        } else {
            switch (c->kind) {
            case CMD_SWITCHOVER:
            case CMD_FAILOVER: run_failover(h, c, cl); break;
            case CMD_DELETE_SWITCHOVER: run_delete_switchover(h, c, cl); break;
            case CMD_PATCH_CONFIG: run_patch_config(h, c, cl); break;
            case CMD_PUT_CONFIG: run_put_config(h, c, cl); break;
            case CMD_REINITIALIZE: reinit_command(h, c, cl); break;
            case CMD_RELOAD:
            case CMD_RESTART:
            case CMD_DELETE_RESTART: break;
            }
            cluster_free(cl);
        }
        dcs_set_call_deadline(0);
    }
    /* one command per pass: the next one on the next pass */
    if (command_queue_length(h->commands) > 0)
        ha_commands_wake(h);
}

void commands_run(Ha *h) { commands_run_one(h, false); }

void commands_run_after_cycle(Ha *h) {
    usec_t now = now_monotonic();
    /* a loop_wait that leaves less than the budget after each cycle (loop_wait 1 with a cycle of a few hundred
     * ms) would starve the commands for good: right after a cycle whose successor was planned in the future,
     * the successor waits for one command (its DCS calls stay capped at the lease's fence point). Not when the
     * next cycle is due at once (after TILT, a hand-over, a cycle that overran: the renewal comes first). */
    bool forced = command_queue_length(h->commands) > 0 && h->next_cycle > now &&
                  h->next_cycle - now < COMMAND_MIN_BUDGET;
    if (forced)
        h->next_cycle = now + COMMAND_MIN_BUDGET;
    commands_run_one(h, forced);
}
