/* REST restart and reinitialize, and the scheduled restart (spec §2.7, §4.14), carried out by the HA loop
 * without blocking it: the stop is watched across cycles (stop_postgres_begin), so that a lock holder
 * keeps renewing its lease while PostgreSQL shuts down and starts again, and the waiting request is
 * answered when the restart is over (or has failed, or the start outlasted its timeout). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <string.h>

#include "agent/ha_int.h"

static const char *current_role(const Ha *h) { return streq(h->pg.role, "promoted") ? "primary" : h->pg.role; }

/* The long action under way, as Patroni's async executor names it, or NULL. */
static const char *busy_action(const Ha *h) {
    if (h->restart.phase == RESTART_REINIT_STOPPING)
        return "reinitialize";
    if (h->restart.phase != RESTART_IDLE)
        return "restart";
    if (h->stepdown.phase != STEPDOWN_IDLE)
        return "switchover";
    if (h->demote_cluster.active)
        return "demote-cluster";
    if (h->pg.promoting)
        return "promote";
    const char *t = task_name(h->work.task.kind);
    if (t)
        return t;
    return h->work.bootstrap_pending ? "bootstrap" : NULL;
}

/* The long action decide() sees: the whole restart, the start included (a lock holder renews its lease and
 * does nothing else until it is over; the restart's own wait bounds the start). */
const char *restart_action(const Ha *h) {
    switch (h->restart.phase) {
    case RESTART_IDLE: return NULL;
    case RESTART_REINIT_STOPPING: return "reinitialize";
    default: return "restart";
    }
}

/* Patroni's restart_matches(): the filters of a request against the node as it is now. */
static bool restart_matches(const Ha *h, const cJSON *req) {
    const char *why = NULL;
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(req, "role");
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(req, "postgres_version");
    long long v = 0;
    char *err = NULL;
    if (cJSON_IsString(role) && !streq(role->valuestring, current_role(h)))
        why = "host role mismatch";
    if (cJSON_IsString(version) && postgres_version_to_int(version->valuestring, &v, &err) == 0 &&
        v <= h->pg.server_version)
        why = "postgres version mismatch";
    free(err);
    if (cJSON_GetObjectItemCaseSensitive(req, "restart_pending") && !h->pg.pending_restart)
        why = "pending restart flag is not set";
    if (why)
        log_info("not proceeding with the restart: %s", why);
    return !why;
}

/* The restart is over: answer the request waiting for it (if any) and give back what it borrowed. */
static void finish(Ha *h, int code, const char *msg) {
    HaRestart *r = &h->restart;
    if (r->cmd)
        command_complete(h->commands, r->cmd, code, xstrdup(msg), false);
    else if (code != 200)
        log_warning("scheduled restart: %s", msg);
    r->cmd = NULL;
    r->phase = RESTART_IDLE;
    local_set_quiet(h, false);
    sync_leave_end(h);
}

/* The restart failed. When PostgreSQL is down afterwards, a former primary steps down as Patroni's
 * post_recover() does: the leader key is removed (a lock holder that cannot start must not keep it), the
 * role is demoted, and the callbacks the restart held back are run. */
static void fail(Ha *h, const char *msg) {
    char state[96];
    snprintf(state, sizeof state, "restart failed (%s)", h->pg.state);
    set_state(h, state);
    bool down = h->pg.inst.pid <= 0, was_primary = h->restart.as_primary;
    finish(h, 503, msg);
    if (!down)
        return;
    run_callback(h, "on_stop", h->pg.role);
    if (was_primary) {
        bool mine = is_lock_holder(h) && h->view.lock_valid_until > now_monotonic();
        if (mine)
            log_warning("removed leader key after trying and failing to start postgres");
        demote_finish(h, mine ? DEMOTE_IMMEDIATE : DEMOTE_IMMEDIATE_NOLOCK, mine);
        if (mine) /* Patroni's post_recover(): the lock holder that cannot start reports its demotion */
            run_callback(h, "on_role_change", "demoted");
    }
}

static void begin_stop(Ha *h) {
    HaRestart *r = &h->restart;
    r->phase = RESTART_STOPPING;
    r->phase_began = now_monotonic();
    if (h->pg.inst.pid > 0 && stop_postgres_begin(h, PG_STOP_FAST, "restart requested") < 0)
        fail(h, "restart failed");
}

/* Start a restart (immediate REST request when cmd is set, else a scheduled one): NULL, or why not (a
 * 503 body, caller frees). */
static char *restart_begin(Ha *h, const cJSON *req, Command *cmd) {
    if (!restart_matches(h, req))
        return xstrdup("restart conditions are not satisfied");
    const char *busy = busy_action(h);
    if (busy)
        return xasprintf("%s already in progress", busy);
    if (h->pg.starting)
        return xstrdup("postgres is still starting");
    if (!h->pg.sysid[0]) /* no (valid) data directory: nothing to start, and nothing may be written into it */
        return xstrdup("restart failed");
    HaRestart *r = &h->restart;
    long long timeout = 0;
    if (!json_item_ll(cJSON_GetObjectItemCaseSensitive(req, "timeout"), &timeout) || timeout <= 0)
        timeout = dyn_of(h)->primary_start_timeout;
    r->timeout = timeout;
    r->wait = timeout > 0 ? timeout : cfg_of(h)->postgresql.pg_ctl_timeout;
    r->cmd = cmd;
    r->as_primary = h->pg.inst.pid > 0 && (streq(current_role(h), "primary"));
    snprintf(r->target, sizeof r->target, "%s", h->pg.following_set ? h->pg.following : "");
    log_info("restarting PostgreSQL%s", cmd ? " (REST API request)" : " (scheduled)");
    local_set_quiet(h, true); /* on_restart instead of on_stop and on_start */
    set_state(h, "restarting");
    if (!is_lock_holder(h) && sync_leave_begin(h)) {
        r->phase = RESTART_LEAVING_SYNC;
        r->phase_began = now_monotonic();
        return NULL;
    }
    begin_stop(h);
    return NULL;
}

/* PostgreSQL stopped: start it again as what it was. A primary only when it still holds the lease (renewed
 * right before: the view may be a cycle old) and pg_control does not say it last ran in recovery (a stop
 * during a promotion); a replica following its upstream. */
static bool start_again(Ha *h, usec_t now) {
    HaRestart *r = &h->restart;
    refresh_controldata(h);
    if (!h->pg.sysid[0]) {
        fail(h, "restart failed");
        return false;
    }
    bool as_primary = r->as_primary && !(h->pg.have_controldata && pg_state_was_replica(h->pg.cd.state));
    if (as_primary && !dyn_of(h)->pause) {
        bool lease = is_lock_holder(h) && h->view.lock_valid_until > now;
        usec_t sent = now_monotonic();
        if (!lease || dcs_update_leader(h->dcs, NULL) != 1) {
            /* the lease went while PostgreSQL stopped: the HA loop decides how it comes back */
            log_warning("restart: no longer the leader; not starting PostgreSQL as a primary");
            if (lease)
                lease_lost(h);
            fail(h, "restart failed");
            return false;
        }
        lease_renewed(h, sent);
        if (!enforce_watchdog(h, NULL, 0)) { /* `required` without it: the key was given back */
            fail(h, "restart failed");
            return false;
        }
    }
    const char *target = NULL;
    if (!as_primary)
        target = r->target[0]                                 ? r->target
                 : h->view.cluster && h->view.cluster->leader ? h->view.cluster->leader->name
                                                              : NULL;
    if (target && streq(target, cfg_of(h)->name))
        /* never follow ourselves: the standby leader of a standby cluster follows the remote primary */
        target = dyn_is_standby_cluster(dyn_of(h)) && is_lock_holder(h) && !cfg_of(h)->tags.nostream ? FOLLOW_REMOTE
                                                                                                     : NULL;
    if (start_postgres(h, as_primary, target) < 0) {
        fail(h, "restart failed");
        return false;
    }
    local_set_start_timeout(h, r->timeout);
    r->phase = RESTART_STARTING;
    r->phase_began = now;
    return true;
}

/* reinitialize: once PostgreSQL stopped, the removal and the clone run in a worker */
static void reinit_step(Ha *h) {
    HaRestart *r = &h->restart;
    if (h->pg.inst.pid > 0) {
        if ((!h->pg.stopping || h->pg.stop_mode != PG_STOP_IMMEDIATE) &&
            stop_postgres_begin(h, PG_STOP_IMMEDIATE, "reinitialize") < 0) {
            log_error("reinitialize: PostgreSQL could not be stopped");
            r->phase = RESTART_IDLE;
        }
        return;
    }
    r->phase = RESTART_IDLE;
    log_info("reinitializing: cloning the data directory again");
    local_data_replaced(h);
    write_pgpass(h);
    set_state(h, "creating replica");
    set_role(h, "uninitialized");
    task_start(h, TASK_REINIT, r->reinit_host, r->reinit_port, false);
}

bool restart_step(Ha *h) {
    HaRestart *r = &h->restart;
    usec_t now = now_monotonic();
    switch (r->phase) {
    case RESTART_IDLE: return false;
    case RESTART_LEAVING_SYNC:
        if (!sync_leave_named(h)) {
            log_info("released from synchronous duty");
        } else if (now - r->phase_began > 2 * (usec_t)loop_wait_s(h) * USEC_PER_SEC) {
            log_warning("still named in /sync after %d s; restarting anyway", 2 * loop_wait_s(h));
        } else {
            h->next_cycle = now + 2 * USEC_PER_SEC < h->next_cycle ? now + 2 * USEC_PER_SEC : h->next_cycle;
            return false;
        }
        begin_stop(h);
        return false;
    case RESTART_STOPPING:
        if (h->pg.inst.pid > 0) {
            /* still stopping (observe_pg escalates when it takes too long); a postmaster adopted meanwhile is
             * asked to stop as well */
            if (!h->pg.stopping)
                begin_stop(h);
            return false;
        }
        return start_again(h, now);
    case RESTART_STARTING:
        if (h->pg.st.ok && !h->pg.starting) {
            log_info("PostgreSQL restarted");
            run_callback(h, "on_restart", current_role(h));
            finish(h, 200, "restarted successfully");
        } else if (h->pg.inst.pid <= 0) {
            fail(h, "restart failed");
        } else if (now - r->phase_began > (usec_t)r->wait * USEC_PER_SEC) {
            /* still starting: the HA loop goes on with it (a lock holder with a failover target demotes once
             * the start outlasts `timeout`); as in Patroni, a start that outlasts a timeout failed */
            finish(h, 503, r->timeout > 0 ? "restart failed" : "postgres is still starting");
        }
        return false;
    case RESTART_REINIT_STOPPING: reinit_step(h); return false;
    }
    return false;
}

void restart_abort(Ha *h) {
    if (h->restart.phase == RESTART_IDLE)
        return;
    if (h->restart.phase == RESTART_REINIT_STOPPING) {
        log_warning("the reinitialize was interrupted before the clone began");
        h->restart.phase = RESTART_IDLE;
        return;
    }
    log_warning("the restart was interrupted");
    finish(h, 503, "restart failed");
}

/* ---- scheduled restart ---- */

/* The scheduled restart changed: the member key and GET /patroni say so at once. */
static void scheduled_changed(Ha *h) {
    touch_member(h);
    publish(h);
}

static void scheduled_clear(Ha *h) {
    cJSON_Delete(h->restart.scheduled);
    h->restart.scheduled = NULL;
    h->restart.scheduled_at = 0;
    scheduled_changed(h);
}

static void schedule(Ha *h, Command *c, cJSON *req) {
    HaRestart *r = &h->restart;
    if (r->scheduled) {
        cJSON_Delete(req);
        command_complete(h->commands, c, 409, xstrdup("Another restart is already scheduled"), false);
        return;
    }
    /* the postmaster's start time, to cancel the restart when one happens meanwhile */
    if (h->pg.st.ok && h->pg.st.postmaster_start_str[0])
        cJSON_AddStringToObject(req, "postmaster_start_time", h->pg.st.postmaster_start_str);
    else
        cJSON_AddNullToObject(req, "postmaster_start_time");
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(req, "schedule");
    if (!cJSON_IsString(at) || parse_iso8601(at->valuestring, &r->scheduled_at) < 0)
        r->scheduled_at = 0;
    r->scheduled = req;
    scheduled_changed(h);
    h->next_cycle = now_monotonic(); /* evaluate it (and wake up in time) */
    command_complete(h->commands, c, 202, xstrdup("Restart scheduled"), false);
}

void restart_evaluate_scheduled(Ha *h) {
    HaRestart *r = &h->restart;
    if (!r->scheduled || busy_action(h))
        return;
    const cJSON *was = cJSON_GetObjectItemCaseSensitive(r->scheduled, "postmaster_start_time");
    if (cJSON_IsString(was) && h->pg.st.ok && h->pg.st.postmaster_start_str[0] &&
        !streq(was->valuestring, h->pg.st.postmaster_start_str)) {
        log_info("Cancelling scheduled restart: postgres restart has already happened at %s",
                 h->pg.st.postmaster_start_str);
        scheduled_clear(h);
        return;
    }
    if (dyn_of(h)->pause)
        return;
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(r->scheduled, "schedule");
    double wall = (double)now_realtime() / 1e6, delta = r->scheduled_at - wall;
    int lw = loop_wait_s(h);
    if (r->scheduled_at <= 0) {
        log_warning("Incorrect value of scheduled_at: %s", cJSON_IsString(at) ? at->valuestring : "?");
        scheduled_clear(h);
        return;
    }
    if (delta > lw) {
        log_info("Awaiting restart at %s (in %.0f seconds)", at->valuestring, delta);
        return;
    }
    if (delta < -(double)(long long)(1.5 * lw)) {
        log_warning("Found a stale restart value, cleaning up: %s", at->valuestring);
        scheduled_clear(h);
        return;
    }
    if (delta > 0) { /* wake up exactly then */
        usec_t when = now_monotonic() + (usec_t)(delta * 1e6) + 1000;
        if (when < h->next_cycle)
            h->next_cycle = when;
        return;
    }
    log_info("Manual scheduled restart at %s", at->valuestring);
    cJSON *req = r->scheduled;
    r->scheduled = NULL;
    char *why = restart_begin(h, req, NULL);
    if (why)
        log_warning("Scheduled restart: %s", why);
    free(why);
    cJSON_Delete(req);
    r->scheduled_at = 0;
    scheduled_changed(h);
}

/* ---- the commands ---- */

void restart_command(Ha *h, Command *c) {
    if (c->kind == CMD_DELETE_RESTART) {
        if (!h->restart.scheduled) {
            command_complete(h->commands, c, 404, xstrdup("no restarts are scheduled"), false);
            return;
        }
        scheduled_clear(h);
        command_complete(h->commands, c, 200, xstrdup("scheduled restart deleted"), false);
        return;
    }
    if (c->body)
        log_info("received restart request: %s", c->body->child ? "with filters" : "{}");
    cJSON *req = NULL;
    char *body = NULL;
    int code = restart_request_check(c->body, dyn_of(h)->pause, (double)now_realtime() / 1e6, &req, &body);
    if (code) {
        command_complete(h->commands, c, code, body, false);
        return;
    }
    if (cJSON_GetObjectItemCaseSensitive(req, "schedule")) {
        schedule(h, c, req);
        return;
    }
    char *why = restart_begin(h, req, c);
    cJSON_Delete(req);
    if (why)
        command_complete(h->commands, c, 503, why, false);
    /* else answered when the restart is over (restart_step) */
}

/* Patroni's reinitialize(): only on a member that follows a leader; `force` cancels a running long
 * action first. Stops PostgreSQL at once; the data directory is removed and cloned again in a worker. */
void reinit_command(Ha *h, Command *c, const Cluster *cl) {
    log_info("received reinitialize request%s", c->force ? " (force)" : "");
    if (!cl->leader || cl->leader->corrupt) {
        command_complete(h->commands, c, 503, xstrdup("Cluster has no leader, can not reinitialize"), false);
        return;
    }
    if (streq(cl->leader->name, cfg_of(h)->name)) {
        command_complete(h->commands, c, 503, xstrdup("I am the leader, can not reinitialize"), false);
        return;
    }
    const char *busy = busy_action(h);
    if (busy && c->force && !h->work.bootstrap_pending) {
        log_info("cancelling the %s: reinitialize with force", busy);
        restart_abort(h);
        stepdown_abort(h);
        task_stop(h);
        busy = busy_action(h);
    }
    if (busy) {
        command_complete(h->commands, c, 503, xasprintf("%s already in progress", busy), false);
        return;
    }
    const char *src = c->from_leader ? cl->leader->name : decide_clone_source(cl, cfg_of(h)->name);
    const Member *m = cluster_get_member(cl, src);
    char host[256];
    int port;
    if (!m || !member_host_port(m, host, sizeof host, &port)) {
        command_complete(h->commands, c, 503, xasprintf("cannot reinitialize: the address of %s is unknown", src),
                         false);
        return;
    }
    /* the stop is watched (restart_step), then the removal and the clone run in a worker */
    HaRestart *r = &h->restart;
    log_info("reinitialize: stopping PostgreSQL, then cloning from %s '%s'",
             streq(src, cl->leader->name) ? "leader" : "replica", src);
    snprintf(r->reinit_host, sizeof r->reinit_host, "%s", host);
    r->reinit_port = port;
    r->phase = RESTART_REINIT_STOPPING;
    r->phase_began = now_monotonic();
    reinit_step(h); /* the stop begins, or (not running) the clone */
    command_complete(h->commands, c, 200, xstrdup("reinitialize started"), false);
}

void restart_free(HaRestart *r) {
    cJSON_Delete(r->scheduled);
    r->scheduled = NULL;
}
