/* The local PostgreSQL as the HA loop drives it: the files it is started with, start, stop, promote,
 * observation, configuration changes. The mechanism is src/pg's (PgInstance); this file adds what the
 * agent decides around it: its state and role strings, callbacks, scripts, and what it logs. */
#include "agent/ha_int.h"
#include "common/sdnotify.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static void local_forget(Ha *h);

void set_state(Ha *h, const char *state) { snprintf(h->pg.state, sizeof h->pg.state, "%s", state); }

void set_role(Ha *h, const char *role) { snprintf(h->pg.role, sizeof h->pg.role, "%s", role); }

/* The server parameters, with hot_standby_feedback forced on while this node is to carry logical slots
 * (Patroni's enforce_hot_standby_feedback). */
static YNode *build_params(Ha *h, StrList *warnings) {
    YNode *params = pg_build_parameters(cfg_of(h), dyn_of(h)->parameters, h->pg.inst.major, warnings);
    if (h->slots.enforce_hsf)
        ynode_set(params, "hot_standby_feedback", ynode_new_str("on", "parameters", 0));
    if (h->pg.effective_set)
        (void)pg_effective_parameters(params, &h->pg.effective_cd, h->pg.inst.major, NULL, NULL, NULL);
    if (h->pg.effective_hot_standby_off)
        ynode_set(params, "hot_standby", ynode_new_str("off", "parameters", 0));
    return params;
}

/* A custom bootstrap's start in recovery (its recovery_conf, or keep_existing_recovery_conf: the files a restore
 * tool left)? *hot_standby_off: Patroni's rule for it, off when recovery_target_action is promote or shutdown, or
 * pause_at_recovery_target is false, and always with keep_existing_recovery_conf ("trust that pgBackRest does the
 * right thing"): a recovery that does not pause at its target needs no read-only queries, and without hot_standby
 * PostgreSQL does not stop at a parameter change record asking for more than this server is configured with. */
static bool custom_bootstrap_recovers(Ha *h, bool *hot_standby_off) {
    const YNode *m = cfg_of(h)->bootstrap.method_section;
    *hot_standby_off = false;
    if (!h->work.custom_bootstrap || !m)
        return false;
    const YNode *keep = ynode_get(m, "keep_existing_recovery_conf");
    if (keep && ynode_truthy(keep)) {
        *hot_standby_off = true;
        return true;
    }
    const YNode *rc = ynode_get(m, "recovery_conf");
    if (!rc || rc->type != Y_MAP)
        return false;
    const YNode *action = ynode_get(rc, "recovery_target_action");
    const YNode *pause = ynode_get(rc, "pause_at_recovery_target");
    *hot_standby_off = (action && ynode_is_scalar(action) && action->text &&
                        (strcasecmp(action->text, "promote") == 0 || strcasecmp(action->text, "shutdown") == 0)) ||
                       (pause && !ynode_truthy(pause));
    return true;
}

/* Before a start: in recovery (a replica, or a custom bootstrap's recovery), the settings pg_control requires
 * (Patroni's effective_configuration, with its log line); as a primary, the configured ones. */
static void prepare_effective_configuration(Ha *h, bool as_primary) {
    h->pg.effective_set = false;
    h->pg.effective_hot_standby_off = false;
    bool hot_standby_off = false;
    if (as_primary && !custom_bootstrap_recovers(h, &hot_standby_off))
        return;
    if (hot_standby_off) {
        log_info("starting the custom bootstrap's recovery with hot_standby = off");
        h->pg.effective_hot_standby_off = true;
    }
    ControlData cd;
    char *err = NULL;
    if (pg_instance_controldata(&h->pg.inst, &cd, &err) < 0) {
        log_warning("cannot read pg_control before starting in recovery (%s): starting with the configured "
                    "max_connections and its kind",
                    err);
        free(err);
        return;
    }
    StrList warnings = {0}, names = {0}, control = {0}, configured = {0};
    YNode *params = pg_build_parameters(cfg_of(h), dyn_of(h)->parameters, h->pg.inst.major, &warnings);
    int n = pg_effective_parameters(params, &cd, h->pg.inst.major, &names, &control, &configured);
    for (size_t i = 0; i < names.n; i++)
        log_info("%s value in pg_controldata: %s, in the global configuration: %s. pg_controldata value will be "
                 "used. Setting 'Pending restart' flag",
                 names.v[i], control.v[i], configured.v[i]);
    ynode_free(params);
    strlist_clear(&warnings);
    strlist_clear(&names);
    strlist_clear(&control);
    strlist_clear(&configured);
    if (n > 0) {
        h->pg.effective_cd = cd;
        h->pg.effective_set = true;
    }
}

/* Adds the parameters running with pg_control's values instead of the configured ones to the pending
 * restart reasons (old_value: the running value, new_value: the configured one, as Patroni reports them). */
static void add_effective_pending(Ha *h) {
    if (!h->pg.effective_set)
        return;
    StrList warnings = {0}, names = {0}, control = {0}, configured = {0};
    YNode *params = pg_build_parameters(cfg_of(h), dyn_of(h)->parameters, h->pg.inst.major, &warnings);
    (void)pg_effective_parameters(params, &h->pg.effective_cd, h->pg.inst.major, &names, &control, &configured);
    for (size_t i = 0; i < names.n; i++) {
        if (!h->pg.pending_reason)
            h->pg.pending_reason = cJSON_CreateObject();
        cJSON_DeleteItemFromObjectCaseSensitive(h->pg.pending_reason, names.v[i]);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "old_value", control.v[i]);
        cJSON_AddStringToObject(e, "new_value", configured.v[i]);
        cJSON_AddItemToObject(h->pg.pending_reason, names.v[i], e);
        h->pg.pending_restart = true;
    }
    ynode_free(params);
    strlist_clear(&warnings);
    strlist_clear(&names);
    strlist_clear(&control);
    strlist_clear(&configured);
}

void write_pgpass(Ha *h) {
    const PghaConfig *cfg = cfg_of(h);
    if (!cfg->postgresql.pgpass)
        return;
    StrList lines = {0};
    const PgAuth *auths[] = {&cfg->postgresql.replication, &cfg->postgresql.superuser, &cfg->postgresql.rewind};
    for (size_t i = 0; i < ELEMENTSOF(auths); i++)
        if (auths[i]->username && auths[i]->password) {
            _cleanup_free_ char *l = pg_pgpass_line("*", "*", auths[i]->username, auths[i]->password);
            if (!strlist_contains(&lines, l))
                strlist_add(&lines, l);
        }
    char *err = NULL;
    if (pg_write_pgpass(cfg->postgresql.pgpass, &lines, &err) < 0) {
        log_error("%s", err);
        free(err);
    }
    strlist_clear(&lines);
}

/* With config_dir outside data_dir, the files initdb or pg_basebackup left in data_dir are the
 * starting point of the ones in config_dir (Patroni's behaviour with a Debian-style layout). */
static void prepare_config_dir(Ha *h) {
    StrList warnings = {0};
    pg_prepare_config_dir(cfg_of(h), &warnings);
    for (size_t i = 0; i < warnings.n; i++)
        log_warning("%s", warnings.v[i]);
    strlist_clear(&warnings);
}

/* The recovery settings of a standby leader (Patroni's build_recovery_params with a RemoteMember): primary_conninfo
 * to standby_cluster host/port with the replication credentials (application_name = our name), primary_slot_name
 * only when standby_cluster names one (and use_slots), restore_command, archive_cleanup_command and
 * recovery_min_apply_delay from standby_cluster. */
static void remote_recovery(Ha *h, YNode *recovery, bool with_slot) {
    const PghaConfig *cfg = cfg_of(h);
    const DynConfig *dyn = dyn_of(h);
    const char *host = dyn_standby_str(dyn, "host"), *port_s = dyn_standby_str(dyn, "port");
    if (host || port_s) {
        bool valid;
        int port = dyn_standby_port(dyn, &valid);
        if (!valid)
            log_warning("standby_cluster.port %s is not a port number; using 5432", port_s);
        _cleanup_free_ char *ci = pg_primary_conninfo(cfg, host, port);
        const char *slot = dyn_standby_str(dyn, "primary_slot_name");
        if (slot && use_slots(h) && with_slot) {
            _cleanup_free_ char *name = slot_name_from_member_name(slot);
            ynode_set(recovery, "primary_slot_name", ynode_new_str(name, "recovery", 0));
            if (host && strchr(host, ',')) { /* several hosts: the slot is on the remote primary */
                char *ci2 = xasprintf("%s target_session_attrs=read-write", ci);
                free(ci);
                ci = ci2;
            }
        }
        ynode_set(recovery, "primary_conninfo", ynode_new_str(ci, "recovery", 0));
    }
    static const char *const keys[] = {"restore_command", "archive_cleanup_command", "recovery_min_apply_delay"};
    for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
        const char *v = dyn_standby_str(dyn, keys[i]);
        if (v)
            ynode_set(recovery, keys[i], ynode_new_str(v, "recovery", 0));
    }
}

/* Write postgresql.conf (and standby.signal) for a start as primary or as a replica of `target` (a member, or
 * FOLLOW_REMOTE: the remote primary of a standby cluster). */
int write_configuration(Ha *h, bool as_primary, const char *target) {
    const PghaConfig *cfg = cfg_of(h);
    /* copied first: callers pass h->pg.following itself (apply_config_changes), and snprintf() from a
     * buffer into itself is undefined (glibc empties it: the next cycle then "followed" again and
     * reloaded PostgreSQL, and an unlocked cluster lost its primary_conninfo) */
    char next[sizeof h->pg.following];
    snprintf(next, sizeof next, "%s", as_primary || !target ? "" : target);
    prepare_config_dir(h);
    StrList warnings = {0};
    YNode *params = build_params(h, &warnings);
    sync_config_params(h, params, as_primary);
    for (size_t i = 0; i < warnings.n; i++)
        log_warning("%s", warnings.v[i]);
    strlist_clear(&warnings);
    YNode *recovery = NULL;
    /* a custom bootstrap starts with the method's recovery_conf (standby_mode is its signal file), or the
     * recovery files the restore left (keep_existing_recovery_conf): they are left as they are */
    bool custom_bootstrap = as_primary && h->work.custom_bootstrap;
    const YNode *boot_rc = custom_bootstrap ? ynode_get(cfg->bootstrap.method_section, "recovery_conf") : NULL;
    if (boot_rc && boot_rc->type == Y_MAP) {
        recovery = ynode_new(Y_MAP, "recovery", 0);
        for (size_t i = 0; i < boot_rc->n; i++)
            if (strcasecmp(boot_rc->keys[i], "standby_mode") != 0)
                ynode_set(recovery, boot_rc->keys[i], ynode_clone(boot_rc->items[i]));
    }
    if (!as_primary) {
        recovery = ynode_new(Y_MAP, "recovery", 0);
        const Member *m = target && !follow_is_remote(target) ? member_by_name(h, target) : NULL;
        char host[256];
        int port;
        if (follow_is_remote(target)) {
            remote_recovery(h, recovery, streq(target, FOLLOW_REMOTE));
        } else if (m && member_host_port(m, host, sizeof host, &port)) {
            _cleanup_free_ char *ci = pg_primary_conninfo(cfg, host, port);
            ynode_set(recovery, "primary_conninfo", ynode_new_str(ci, "recovery", 0));
            if (use_slots(h) && !cfg->tags.nostream) {
                _cleanup_free_ char *slot = slot_name_from_member_name(cfg->name);
                ynode_set(recovery, "primary_slot_name", ynode_new_str(slot, "recovery", 0));
            }
        }
        if (m && dyn_is_standby_cluster(dyn_of(h))) {
            /* a member followed in a standby cluster: the WAL archive of the remote too (Patroni's
             * _get_node_to_follow copies these two from standby_cluster) */
            static const char *const keys[] = {"restore_command", "archive_cleanup_command"};
            for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const char *v = dyn_standby_str(dyn_of(h), keys[i]);
                if (v && v[0])
                    ynode_set(recovery, keys[i], ynode_new_str(v, "recovery", 0));
            }
        }
        ynode_set(recovery, "recovery_target_timeline", ynode_new_str("latest", "recovery", 0));
        const YNode *rc = cfg->postgresql.recovery_conf ? cfg->postgresql.recovery_conf : dyn_of(h)->recovery_conf;
        for (size_t i = 0; rc && i < rc->n; i++)
            if (!ynode_get(recovery, rc->keys[i]))
                ynode_set(recovery, rc->keys[i], ynode_clone(rc->items[i]));
    }
    char *err = NULL;
    /* unchanged content: nothing to write (and nothing to reload) */
    int r = pg_update_postgresql_conf(cfg, params, recovery, &err);
    bool changed = r == 1;
    if (r > 0)
        r = 0;
    if (r == 0 && !custom_bootstrap)
        r = pg_set_standby_signal(cfg->postgresql.data_dir, !as_primary, &err);
    /* pg_hba / pg_ident: the local configuration wins over the dynamic one */
    const YNode *hba = cfg->postgresql.pg_hba ? cfg->postgresql.pg_hba : dyn_of(h)->pg_hba;
    if (r == 0 && custom_bootstrap) {
        PgConnParams p;
        char host[256];
        pg_local_conn_params(cfg, &p, host, sizeof host);
        r = pg_custom_bootstrap_hba(cfg->postgresql.config_dir, p.host, true, &err);
    } else if (r == 0 && hba) {
        _cleanup_free_ char *path = xasprintf("%s/pg_hba.conf", cfg->postgresql.config_dir);
        r = pg_write_hba(path, hba, false, &err);
    }
    const YNode *ident = cfg->postgresql.pg_ident ? cfg->postgresql.pg_ident : dyn_of(h)->pg_ident;
    if (r == 0 && ident) {
        _cleanup_free_ char *path = xasprintf("%s/pg_ident.conf", cfg->postgresql.config_dir);
        r = pg_write_hba(path, ident, false, &err);
    }
    if (r < 0) {
        log_error("cannot write the PostgreSQL configuration: %s", err);
        free(err);
    }
    ynode_free(params);
    ynode_free(recovery);
    memcpy(h->pg.following, next, sizeof next);
    h->pg.following_set = true;
    write_pgpass(h);
    return r < 0 ? r : changed ? 1 : 0;
}

/* Patroni's call_nowait(): `<command> <action> <role> <scope>` (the command split as shlex.split() does, no
 * shell), run without waiting through the callback executor; nothing while bootstrapping. The role
 * `promoted` is reported as `primary`. */
void run_callback(Ha *h, const char *action, const char *role) {
    const PghaConfig *cfg = cfg_of(h);
    if (h->work.bootstrap_pending)
        return;
    const char *cmd = NULL;
    if (strcmp(action, "on_start") == 0)
        cmd = cfg->postgresql.callbacks.on_start;
    else if (strcmp(action, "on_stop") == 0)
        cmd = cfg->postgresql.callbacks.on_stop;
    else if (strcmp(action, "on_restart") == 0)
        cmd = cfg->postgresql.callbacks.on_restart;
    else if (strcmp(action, "on_reload") == 0)
        cmd = cfg->postgresql.callbacks.on_reload;
    else if (strcmp(action, "on_role_change") == 0)
        cmd = cfg->postgresql.callbacks.on_role_change;
    if (strcmp(action, "on_reload") != 0)
        h->pg.cb_called = true;
    if (!cmd)
        return;
    if (streq(role, "promoted"))
        role = "primary";
    StrList argv = {0};
    char *err = NULL;
    int r = pg_shlex_split(cmd, &argv, &err);
    if (r == 0) {
        strlist_add(&argv, action);
        strlist_add(&argv, role);
        strlist_add(&argv, cfg->scope);
        r = pg_callback_run(&h->pg.callbacks, strcmp(action, "on_reload") == 0, &argv, &err);
    }
    if (r < 0) {
        log_error("callback %s %s %s %s failed: %s", cmd, action, role, cfg->scope, err);
        free(err);
    }
    strlist_clear(&argv);
}

int start_postgres(Ha *h, bool as_primary, const char *target) {
    prepare_effective_configuration(h, as_primary);
    if (write_configuration(h, as_primary, target) < 0)
        return -EIO;
    StrList warnings = {0};
    YNode *params = build_params(h, &warnings);
    strlist_clear(&warnings);
    StrList args = {0};
    pg_cmdline_options(params, &args);
    ynode_free(params);
    char *err = NULL;
    int r = pg_instance_start(&h->pg.inst, &args, &err);
    strlist_clear(&args);
    if (r < 0) {
        log_error("cannot start PostgreSQL: %s", err);
        free(err);
        set_state(h, "start failed");
        return r;
    }
    /* Patroni's follow(): a node that ran as a primary (or was demoted) and starts as a replica once callbacks
     * have run reports on_role_change instead of on_start, when the start completes (observe_pg) */
    h->pg.start_role_change = !as_primary && h->pg.cb_called &&
                              (streq(h->pg.role, "primary") || streq(h->pg.role, "promoted") ||
                               streq(h->pg.role, "demoted"));
    pid_t pid = h->pg.inst.pid;
    if (h->pg.inst.pidfd < 0)
        log_warning("cannot watch the postmaster %d with a pidfd; its exit is noticed at the next cycle", (int)pid);
    h->pg.starting = true;
    slots_postgres_started(h);
    h->pg.start_as_primary = as_primary;
    h->pg.start_timeout = 0; /* a restart sets its own after this */
    h->pg.start_began = now_monotonic();
    h->pg.expect_stop = false;
    h->pg.crashed = false;
    set_state(h, "starting");
    log_info("postmaster pid=%d", (int)pid);
    return 0;
}

static const char *stop_mode_name(PgStopMode mode) {
    return mode == PG_STOP_FAST ? "fast" : mode == PG_STOP_IMMEDIATE ? "immediate" : "smart";
}

/* The before_stop script runs on the HA thread before the stop signal, limited by pg_ctl_timeout; on a node
 * that is or may be a primary (promoting, starting as one) or holds the lock, also by its lease and the fence
 * point (before_stop_limit): without a lease left, or past the fence point, it is stopped without it. */
static void before_stop(Ha *h, PgStopMode mode, const char *why) {
    const PghaConfig *cfg = cfg_of(h);
    /* on_stop reports the role PostgreSQL had when it was asked to stop (a switchover may release the key,
     * and demote, before the postmaster has exited) */
    snprintf(h->pg.stop_role, sizeof h->pg.stop_role, "%s", h->pg.role);
    if (may_be_primary(h) || is_lock_holder(h))
        publish_stopping(h); /* before the script: the health checks stop saying "primary" now */
    if (cfg->postgresql.before_stop && *cfg->postgresql.before_stop) { /* (empty: none, as Patroni) */
        usec_t limit = before_stop_limit(h, now_monotonic());
        if (limit < USEC_PER_SEC) {
            log_warning("not running the before_stop script: the leader lease leaves no time for it");
        } else {
            char *out = NULL;
            sdn_watchdog_extend(now_monotonic() + limit + 5 * USEC_PER_SEC);
            int r = run_split(cfg->postgresql.before_stop, NULL, NULL, limit, &out);
            if (r != 0)
                log_warning("before_stop script exited with %d: %s", r, out ? str_trim(out) : "");
            free(out);
        }
    }
    log_info("stopping PostgreSQL (%s)%s%s", stop_mode_name(mode), why ? ": " : "", why ? why : "");
    h->pg.expect_stop = true;
}

/* Ask PostgreSQL to stop and return: observe_pg() notices the exit (the pidfd wakes the loop) and
 * escalates a fast stop that outlasts pg_ctl_timeout to an immediate one, and that after 10 s to
 * SIGKILL. Meanwhile the loop goes on (a lock holder keeps renewing its lease). */
int stop_postgres_begin(Ha *h, PgStopMode mode, const char *why) {
    if (h->pg.inst.pid <= 0)
        return -ESRCH;
    if (h->pg.stopping) { /* already under way: only ever escalated (fast -> immediate) */
        if (mode > h->pg.stop_mode) {
            log_info("stopping PostgreSQL (%s)%s%s", stop_mode_name(mode), why ? ": " : "", why ? why : "");
            (void)pg_instance_signal_stop(&h->pg.inst, mode);
            h->pg.stop_mode = mode;
            h->pg.stop_began = now_monotonic();
        }
        return 0;
    }
    before_stop(h, mode, why);
    int r = pg_instance_signal_stop(&h->pg.inst, mode);
    if (r < 0 && r != -ESRCH) {
        log_error("cannot signal the postmaster %d: %s", (int)h->pg.inst.pid, strerror(-r));
        set_state(h, "stop failed");
        return r;
    }
    h->pg.stopping = true;
    h->pg.stop_mode = mode;
    h->pg.stop_began = now_monotonic();
    pg_status_free(&h->pg.st);
    h->pg.st = (PgStatus){0};
    if (!h->pg.quiet)
        set_state(h, "stopping"); /* a restart shows "restarting" */
    return 0;
}

void local_set_quiet(Ha *h, bool quiet) { h->pg.quiet = quiet; }

void local_set_start_timeout(Ha *h, long long s) { h->pg.start_timeout = s; }

void local_set_stop_patience(Ha *h, bool patient) { h->pg.stop_patient = patient; }

/* A stop begun by stop_postgres_begin() that is still under way: escalate when it takes too long. */
static void watch_stop(Ha *h) {
    if (h->pg.stop_patient)
        return;
    usec_t now = now_monotonic();
    usec_t limit = (usec_t)cfg_of(h)->postgresql.pg_ctl_timeout * USEC_PER_SEC;
    if (h->pg.stop_mode != PG_STOP_IMMEDIATE && now - h->pg.stop_began > limit) {
        log_warning("PostgreSQL did not stop within pg_ctl_timeout; sending an immediate shutdown");
        (void)pg_instance_signal_stop(&h->pg.inst, PG_STOP_IMMEDIATE);
        h->pg.stop_mode = PG_STOP_IMMEDIATE;
        h->pg.stop_began = now;
    } else if (h->pg.stop_mode == PG_STOP_IMMEDIATE && now - h->pg.stop_began > 10 * USEC_PER_SEC) {
        log_error("PostgreSQL did not stop; killing the postmaster (pid %d)", (int)h->pg.inst.pid);
        if (pg_instance_kill(&h->pg.inst) == 0) {
            local_forget(h);
            set_state(h, "stopped");
        }
    }
}

int stop_postgres(Ha *h, PgStopMode mode, const char *why) {
    if (h->pg.inst.pid <= 0)
        return 0;
    if (!h->pg.stopping) /* a stop begun earlier ran it already */
        before_stop(h, mode, why);
    set_state(h, "stopping");
    usec_t limit = (usec_t)cfg_of(h)->postgresql.pg_ctl_timeout * USEC_PER_SEC;
    if (mode == PG_STOP_IMMEDIATE && limit > 10 * USEC_PER_SEC)
        limit = 10 * USEC_PER_SEC; /* an immediate stop is a demotion with the lease ticking */
    /* the stop, the immediate stop after it and the kill: bounded, the systemd watchdog waits for them */
    sdn_watchdog_extend(now_monotonic() + limit + 25 * USEC_PER_SEC);
    int r = pg_instance_stop(&h->pg.inst, mode, limit);
    if (r == -ETIMEDOUT && mode != PG_STOP_IMMEDIATE) {
        log_warning("PostgreSQL did not stop within pg_ctl_timeout; sending an immediate shutdown");
        r = pg_instance_stop(&h->pg.inst, PG_STOP_IMMEDIATE, 10 * USEC_PER_SEC);
    }
    if (r == -ETIMEDOUT) {
        /* a hung postmaster (stopped, or stuck in the kernel): fence it */
        log_error("PostgreSQL did not stop; killing the postmaster (pid %d)", (int)h->pg.inst.pid);
        r = pg_instance_kill(&h->pg.inst);
    }
    if (r < 0) {
        set_state(h, "stop failed");
        return r;
    }
    local_forget(h);
    set_state(h, "stopped");
    if (!h->pg.quiet)
        run_callback(h, "on_stop", h->pg.stop_role);
    return 0;
}

int promote_postgres(Ha *h) {
    const PghaConfig *cfg = cfg_of(h);
    if (cfg->postgresql.pre_promote && *cfg->postgresql.pre_promote) { /* (empty: none, as Patroni) */
        /* it runs while we hold the lock: it may not outlive the lease, and the lock is renewed
         * (and checked) before PostgreSQL is promoted */
        usec_t now = now_monotonic();
        usec_t left = h->view.lock_valid_until > now ? h->view.lock_valid_until - now : 0;
        usec_t limit = left > (usec_t)loop_wait_s(h) * USEC_PER_SEC ? left - (usec_t)loop_wait_s(h) * USEC_PER_SEC
                                                                    : USEC_PER_SEC;
        /* ... nor the armed watchdog (its timeout may be shorter than the lease: safety_margin -1) */
        usec_t fires = watchdog_fires_at(&h->wd);
        if (fires) {
            usec_t wleft = fires > now + 2 * USEC_PER_SEC ? fires - now - 2 * USEC_PER_SEC : USEC_PER_SEC;
            if (wleft < limit)
                limit = wleft;
        }
        char *out = NULL;
        sdn_watchdog_extend(now_monotonic() + limit + 5 * USEC_PER_SEC);
        int r = run_split(cfg->postgresql.pre_promote, NULL, NULL, limit, &out);
        if (r != 0) {
            log_error("pre_promote script failed (%d): %s", r, out ? str_trim(out) : "");
            free(out);
            return -ECANCELED; /* the caller gives the key back and backs off (execute.c) */
        }
        free(out);
        usec_t sent = now_monotonic();
        if (dcs_update_leader(h->dcs, NULL) != 1) {
            log_error("lost the leader lock while pre_promote ran: not promoting");
            lease_lost(h);
            return -ECANCELED;
        }
        lease_renewed(h, sent);
    }
    char *err = NULL;
    int r = pg_instance_promote(&h->pg.inst, &err);
    if (r < 0) {
        if (r != -ENOTCONN)
            log_warning("pg_promote() failed (%s); trying pg_ctl promote", err);
        free(err);
        err = NULL;
        if (pg_instance_promote_pg_ctl(&h->pg.inst, &err) < 0) {
            log_error("%s", err);
            free(err);
            return -EIO;
        }
    }
    h->pg.promoting = true;
    h->pg.promote_sent = h->pg.promote_nudged = now_monotonic();
    h->counters.promotions++;
    set_role(h, "promoted");
    slots_on_promote(h);
    run_callback(h, "on_role_change", "primary");
    return 0;
}

void refresh_controldata(Ha *h) {
    char *err = NULL;
    h->pg.have_controldata = pg_instance_controldata(&h->pg.inst, &h->pg.cd, &err) == 0;
    if (h->pg.have_controldata)
        snprintf(h->pg.sysid, sizeof h->pg.sysid, "%s", h->pg.cd.sysid);
    else {
        log_debug("pg_controldata: %s", err);
        free(err);
    }
}

/* Empty as Patroni means it: missing, or nothing but dot-files and lost+found. A directory with other
 * files but no PG_VERSION is not empty (its system identifier is then invalid: no action), and a
 * directory we cannot read is an error, never "empty" (DESIGN.md invariant 4). */
static bool data_dir_empty(Ha *h) {
    if (h->pg.inst.pid > 0)
        return false;
    return pg_data_dir_empty(cfg_of(h)->postgresql.data_dir);
}

void observe_pg(Ha *h, LocalState *l) {
    *l = (LocalState){0};
    bool was_cached = h->pg.status_cached; /* the last status query timed out as well */
    h->pg.status_cached = false;
    const PghaConfig *cfg = cfg_of(h);
    struct stat st;
    bool exists = stat(cfg->postgresql.data_dir, &st) == 0;
    if (exists ? !S_ISDIR(st.st_mode) : errno != ENOENT) {
        l->data_dir_error = true;
        return;
    }
    if (exists) { /* (st is only valid then: a missing directory is simply empty) */
        DIR *dd = opendir(cfg->postgresql.data_dir);
        if (!dd) {
            l->data_dir_error = true;
            return;
        }
        closedir(dd);
    }
    l->data_dir_empty = data_dir_empty(h);
    l->cb_called = h->pg.cb_called;
    /* the list the clone uses: standby_cluster's in a standby cluster (task_start) */
    if (dyn_is_standby_cluster(dyn_of(h))) {
        StrList methods = {0};
        standby_replica_methods(h, &methods);
        l->clone_without_leader = pg_replica_methods_without_leader(cfg, &methods);
        strlist_clear(&methods);
    } else {
        l->clone_without_leader = pg_replica_methods_without_leader(cfg, NULL);
    }
    if (l->data_dir_empty) {
        if (h->pg.inst.pid <= 0)
            set_role(h, "uninitialized");
        h->pg.sysid[0] = '\0';
        return;
    }
    if (!h->pg.sysid[0] || !h->pg.inst.pid)
        refresh_controldata(h);
    l->sysid = h->pg.sysid[0] ? h->pg.sysid : NULL;

    if (h->pg.inst.pid > 0 && !pg_instance_alive(&h->pg.inst)) {
        bool expected = h->pg.expect_stop, was_stopping = h->pg.stopping;
        local_forget(h);
        if (!expected) {
            log_warning("postmaster is not running (it exited on its own)");
            h->pg.crashed = true;
            set_state(h, "crashed");
        } else {
            set_state(h, "stopped");
            if (was_stopping) {
                log_info("PostgreSQL stopped");
                if (!h->pg.quiet)
                    run_callback(h, "on_stop", h->pg.stop_role[0] ? h->pg.stop_role : h->pg.role);
            }
        }
    }
    if (h->pg.stopping) {
        /* a stop under way: no queries (the server refuses them); escalate when it takes too long */
        watch_stop(h);
        if (h->pg.inst.pid > 0) {
            l->pg_running = true;
            l->maybe_primary = may_be_primary(h);
            return;
        }
    }
    if (h->pg.inst.pid <= 0) {
        /* adopt a postmaster that runs without us (agent restarted) */
        PidFile pf;
        if (pg_instance_find_running(&h->pg.inst, &pf)) {
            log_info("found an already running postmaster (pid %d); taking it over", (int)pf.pid);
            if (pg_instance_attach(&h->pg.inst, pf.pid) < 0)
                log_warning("cannot watch the postmaster %d with a pidfd; its exit is noticed at the next cycle",
                            (int)pf.pid);
            h->pg.starting = strcmp(pf.status, "ready") != 0 && strcmp(pf.status, "standby") != 0;
            /* it ran as a primary: until its status query answers, it may be one (fenced without the lock);
             * pg_control was read at the start of this observation (no postmaster was known then) */
            h->pg.adopted_primary = strcmp(pf.status, "standby") != 0 &&
                                    (strcmp(pf.status, "ready") == 0 ||
                                     (h->pg.have_controldata && streq(h->pg.cd.state, "in production")));
            if (h->pg.starting)
                h->pg.start_began = now_monotonic();
        }
    }
    l->pg_running = h->pg.inst.pid > 0;
    l->crashed = h->pg.crashed;
    l->just_demoted = strcmp(h->pg.role, "demoted") == 0 && !h->pg.crashed;
    if (!l->pg_running) {
        refresh_controldata(h);
        l->timeline = h->pg.cd.checkpoint_tli;
        l->wal_position = h->pg.cd.checkpoint_lsn;
        l->was_primary = h->pg.have_controldata && pg_state_was_primary(h->pg.cd.state);
        pg_status_free(&h->pg.st);
        h->pg.st = (PgStatus){0};
        if (strcmp(h->pg.state, "crashed") != 0)
            set_state(h, "stopped");
        return;
    }
    PGconn *c = local_conn(h);
    if (c) {
        PgStatus fresh;
        char *err = NULL;
        int r = pg_query_status(c, &fresh, &err);
        if (r == 0) {
            pg_status_free(&h->pg.st);
            h->pg.st = fresh;
        } else if (decide_keep_cached_status(r, h->pg.st.ok && !h->pg.starting)) {
            /* a slow server, not a dead one: the last answer stands (the connection stays usable) */
            if (!was_cached)
                log_warning("Failed to determine PostgreSQL state from the connection, falling back to cached role "
                            "(%s)",
                            err);
            else
                log_debug("status query failed again: %s", err);
            h->pg.status_cached = true;
            pg_status_free(&fresh);
        } else {
            log_debug("status query failed: %s", err);
            pg_status_free(&fresh);
            pg_status_free(&h->pg.st);
            h->pg.st = (PgStatus){0};
            pg_instance_close_conn(&h->pg.inst);
        }
        free(err);
    } else {
        pg_status_free(&h->pg.st);
        h->pg.st = (PgStatus){0};
    }
    l->status_cached = h->pg.status_cached;
    if (h->pg.st.ok && h->pg.st.in_recovery) {
        /* a replica's timeline never goes back while its postmaster runs; without a walreceiver the query
         * reports the last restartpoint's, which may precede the switch to the leader's timeline (taken for
         * divergence, a healthy replica was stopped and rewound when its leader restarted) */
        if (h->pg.replica_tl_start == h->pg.st.postmaster_start_time && h->pg.st.timeline < h->pg.replica_tl)
            h->pg.st.timeline = h->pg.replica_tl;
        h->pg.replica_tl = h->pg.st.timeline;
        h->pg.replica_tl_start = h->pg.st.postmaster_start_time;
    }
    if (h->pg.st.ok)
        h->pg.adopted_primary = false; /* its answer says what it is from now on */
    if (h->pg.starting && h->pg.st.ok) {
        h->pg.starting = false;
        h->pg.start_timeout = 0;
        log_info("PostgreSQL is running%s", h->pg.st.in_recovery ? " as a replica" : "");
        /* (a standby leader started as one reports that role, as Patroni's follow(role='standby_leader')) */
        const char *cb_role = !h->pg.st.in_recovery                 ? "primary"
                              : streq(h->pg.role, "standby_leader") ? "standby_leader"
                                                                    : "replica";
        if (!h->pg.quiet && h->pg.start_role_change)
            run_callback(h, "on_role_change", cb_role);
        else if (!h->pg.quiet)
            run_callback(h, "on_start", cb_role);
        h->pg.start_role_change = false;
    } else if (!h->pg.cb_called && h->pg.st.ok && !h->pg.starting && !h->pg.quiet && h->work.task.kind == TASK_NONE &&
               !h->work.bootstrap_pending) {
        /* a postmaster this agent did not start (taken over after an agent restart): Patroni's first cycle calls
         * on_start for it (not cb_called yet), once */
        run_callback(h, "on_start",
                     !h->pg.st.in_recovery                 ? "primary"
                     : streq(h->pg.role, "standby_leader") ? "standby_leader"
                                                           : "replica");
    }
    l->pg_starting = h->pg.starting;
    l->pg_ready = h->pg.st.ok;
    if (h->pg.st.ok) {
        h->pg.server_version = h->pg.st.server_version;
        /* streaming on the cluster's timeline (not merely the old one up to its end, as a diverged replica's
         * receiver does again and again) */
        if (!h->pg.st.in_recovery || (h->pg.st.streaming && h->pg.st.timeline >= cluster_timeline(h->view.cluster)))
            h->pg.not_streaming_since = 0;
        else if (!h->pg.not_streaming_since)
            h->pg.not_streaming_since = now_monotonic();
        set_state(h, "running");
        l->in_recovery = h->pg.st.in_recovery;
        l->timeline = h->pg.st.timeline;
        l->wal_position = h->pg.st.wal_position;
        if (!h->pg.st.in_recovery) {
            if (h->pg.promoting) {
                log_info("promotion complete: PostgreSQL is a primary on timeline %lld", h->pg.st.timeline);
                start_post_promote_checkpoint(h);
                /* the replica's settings leave postgresql.conf now, with a reload but without on_reload: the
                 * agent's housekeeping, not a reload Patroni would make (it leaves them in the file) */
                if (h->pg.following_set && write_configuration(h, true, NULL) == 1)
                    reload_postgres(h);
            }
            h->pg.promoting = false;
            set_role(h, "primary");
        } else if (!h->pg.promoting &&
                   !(streq(h->pg.role, "standby_leader") && is_lock_holder(h) && dyn_is_standby_cluster(dyn_of(h)))) {
            /* (the standby leader's role is set by the HA loop: standby_leader_step). A standby leader that lost
             * the key (taken by another member, or a release whose answer was lost) is a replica now: Patroni's
             * follow() calls on_role_change for it (not the lock holder of a cluster being promoted: its
             * on_role_change is the primary's) */
            bool was_standby_leader = streq(h->pg.role, "standby_leader");
            /* without a cluster view (the DCS does not answer) nothing is known about the key: the role stays,
             * as in Patroni's DCS error path; while paused too (Patroni's follow() keeps it then) */
            if (!was_standby_leader || (h->view.cluster && !dyn_of(h)->pause)) {
                set_role(h, "replica");
                if (was_standby_leader && !is_lock_holder(h))
                    run_callback(h, "on_role_change", "replica");
            }
        }
    } else if (h->pg.starting) {
        set_state(h, "starting");
        /* the lock holder's start (as a primary, or read-only to be promoted) is limited by
         * primary_start_timeout (0: fail over at once when someone can), as in Patroni */
        long long limit = h->pg.start_timeout > 0                       ? h->pg.start_timeout
                          : h->pg.start_as_primary || is_lock_holder(h) ? dyn_of(h)->primary_start_timeout
                                                                        : cfg->postgresql.pg_ctl_timeout;
        l->start_timed_out = now_monotonic() - h->pg.start_began > (usec_t)limit * USEC_PER_SEC;
    } else {
        /* running but not answering (crash recovery, or a hung server): like a start, with a limit:
         * a lock holder whose PostgreSQL has not answered for ttl lets a healthy replica take over */
        l->pg_starting = true;
        set_state(h, "starting");
        usec_t now = now_monotonic();
        if (!h->pg.not_answering_since)
            h->pg.not_answering_since = now;
        if (now - h->pg.not_answering_since > (usec_t)ttl_s(h) * USEC_PER_SEC) {
            l->start_timed_out = true;
            log_warning("PostgreSQL has not answered for %.0f s", (double)(now - h->pg.not_answering_since) / 1e6);
        }
    }
    if (h->pg.st.ok || h->pg.inst.pid <= 0 || h->pg.starting)
        h->pg.not_answering_since = 0;
    l->maybe_primary = may_be_primary(h);
    l->following = h->pg.following_set ? (h->pg.following[0] ? h->pg.following : NULL) : NULL;
    /* unknown after an agent restart until the configuration is written again */
    l->following_unknown = !h->pg.following_set && h->pg.st.ok && h->pg.st.in_recovery;
}

/* The configuration may have changed (/config, a SIGHUP of pgha): rewrite postgresql.conf, reload
 * PostgreSQL, and find the changes that need a restart (pending_restart). */
void apply_config_changes(Ha *h) {
    if (h->pg.inst.pid <= 0)
        h->pg.reload_requested = false; /* nothing to reload (and no on_reload), as Patroni's failing pg_ctl reload */
    /* (not while bootstrapping: a custom bootstrap's recovery runs with the method's recovery_conf) */
    if (!h->pg.st.ok || h->pg.status_cached || h->pg.starting || h->work.task.kind != TASK_NONE ||
        h->pg.inst.pid <= 0 || !h->pg.following_set || h->work.bootstrap_pending)
        return;
    bool primary = !h->pg.st.in_recovery;
    /* a replica whose upstream cannot be resolved now (no cluster view: the DCS is unreachable) keeps
     * its configuration: rewritten, it would lose primary_conninfo and stop streaming from a primary
     * that still runs (Patroni leaves a replica alone when the DCS is not accessible) */
    if (!primary && h->pg.following[0] && !follow_is_remote(h->pg.following) && !member_by_name(h, h->pg.following))
        return;
    int r = write_configuration(h, primary, primary || !h->pg.following[0] ? NULL : h->pg.following);
    bool requested = h->pg.reload_requested;
    h->pg.reload_requested = false;
    if (r == 1 || (r == 0 && requested)) {
        log_info("Reloading PostgreSQL configuration.");
        reload_postgres(h);
        run_callback(h, "on_reload", h->pg.role);
        usleep(100 * 1000); /* let the postmaster read the file before pending_restart is queried */
    }
    PGconn *c = local_conn(h);
    if (!c)
        return;
    char *err = NULL;
    StrList names = {0}, settings = {0};
    if (pg_pending_restart(c, &names, &settings, &err) < 0) {
        log_debug("pending_restart query failed: %s", err);
        free(err);
        return;
    }
    cJSON_Delete(h->pg.pending_reason);
    h->pg.pending_reason = NULL;
    h->pg.pending_restart = names.n > 0;
    if (h->pg.pending_restart) {
        StrList warnings = {0};
        YNode *params = build_params(h, &warnings);
        strlist_clear(&warnings);
        h->pg.pending_reason = cJSON_CreateObject();
        for (size_t i = 0; i < names.n; i++) {
            const YNode *nv = ynode_get(params, names.v[i]);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "old_value", settings.v[i]);
            cJSON_AddStringToObject(e, "new_value", nv && nv->text ? nv->text : "");
            cJSON_AddItemToObject(h->pg.pending_reason, names.v[i], e);
        }
        ynode_free(params);
    }
    add_effective_pending(h);
    strlist_clear(&names);
    strlist_clear(&settings);
}

/* The agent's connection to its PostgreSQL, or NULL (logged at debug level: observe_pg says the rest). */
PGconn *local_conn(Ha *h) {
    char *err = NULL;
    PGconn *c = pg_instance_conn(&h->pg.inst, &err);
    if (!c) {
        log_debug("cannot connect to the local PostgreSQL: %s", err);
        free(err);
    }
    return c;
}

/* The postmaster exited or was stopped: what we knew about the running server goes with it. */
static void local_forget(Ha *h) {
    pg_instance_forget(&h->pg.inst);
    pg_status_free(&h->pg.st);
    h->pg.st = (PgStatus){0};
    h->pg.starting = false;
    h->pg.promoting = false;
    h->pg.adopted_primary = false;
    h->pg.stopping = false;
    h->pg.stop_patient = false;
    h->pg.start_timeout = 0;
}

void reload_postgres(Ha *h) {
    int r = pg_instance_reload(&h->pg.inst);
    if (r < 0)
        log_warning("cannot reload PostgreSQL: %s", strerror(-r));
}

void local_free(HaLocal *l) {
    pg_instance_done(&l->inst);
    pg_status_free(&l->st);
    cJSON_Delete(l->pending_reason);
    l->pending_reason = NULL;
}

/* The configuration was reloaded (SIGHUP): the instance reads the new one; the passfile follows it. */
void local_config_reloaded(Ha *h) {
    h->pg.inst.cfg = cfg_of(h);
    h->pg.reload_requested = true; /* PostgreSQL reloads too, whether its files changed or not (Patroni) */
    write_pgpass(h);
}

/* A running replica found diverged: stopped, then rewound. */
void local_mark_diverged(Ha *h) { h->pg.diverged = true; }

/* A diverged replica that cannot be repaired here: reported once, it keeps running as it is. */
void local_divergence_reported(Ha *h) { h->pg.diverged_reported = true; }

/* pg_rewind ended: success clears the divergence; a failure is remembered so that it is not retried in a loop. */
void local_rewind_finished(Ha *h, bool ok) {
    h->pg.rewind_failed = !ok;
    if (ok) {
        h->pg.diverged = false;
        h->pg.diverged_reported = false;
    }
}

/* The data directory was replaced by a new clone (reinitialize, clone): what was known about the old one's
 * divergence goes. */
void local_data_replaced(Ha *h) {
    h->pg.diverged = false;
    h->pg.diverged_reported = false;
    h->pg.rewind_failed = false;
}

/* Remove the data directory (only where the configuration asks for it, DESIGN.md invariant 4): it is
 * cloned again. */
void remove_data_directory(Ha *h) {
    char *err = NULL;
    sdn_watchdog_extend(now_monotonic() + 3600 * USEC_PER_SEC); /* a large tree takes a while */
    if (pg_remove_data_directory(cfg_of(h)->postgresql.data_dir, &err) < 0) {
        log_error("%s", err);
        free(err);
    }
    h->pg.sysid[0] = '\0';
}
