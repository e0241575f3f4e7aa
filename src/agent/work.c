/* Long actions in worker threads, so that the HA loop keeps renewing the lease and answering: initdb,
 * pg_basebackup, pg_rewind, and the CHECKPOINT after a promotion; what follows when they finish
 * (including the rest of a bootstrap: roles, post_bootstrap, the DCS keys). */
#include "agent/ha_int.h"
#include "common/sdnotify.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Patroni's create_replica() (in the worker thread): create_replica_methods in order until one succeeds
 * (t->method: which). `basebackup` is pg_basebackup(); another method runs its command
 * (pg_replica_method_argv) after the data directory was emptied, unless keep_data. Without a source (no
 * leader), only the methods that need none (no_leader). */
static int create_replica(const PghaConfig *cfg, Task *t, const char *bin_dir, char **ret_error) {
    const char *dir = cfg->postgresql.data_dir;
    const StrList *methods = t->methods.n ? &t->methods : &cfg->postgresql.create_replica_methods;
    bool source = t->host[0] != '\0';
    _cleanup_free_ char *connstring = source ? pg_replication_dsn(cfg, t->host, t->port) : xstrdup("");
    StrList env = {0};
    if (cfg->postgresql.pgpass)
        strlist_addf(&env, "PGPASSFILE=%s", cfg->postgresql.pgpass);
    int r = -ENOENT;
    for (size_t i = 0; i < methods->n && !pg_child_cancelled(); i++) {
        const char *m = methods->v[i];
        const YNode *section = ynode_get(cfg->postgresql.replica_methods, m);
        if (!source && !pg_replica_method_without_leader(m, section))
            continue;
        free(*ret_error);
        *ret_error = NULL;
        if (strcmp(m, "basebackup") == 0) {
            r = pg_basebackup(cfg, bin_dir, t->host, t->port, ret_error);
            if (r == 0) {
                t->method = xstrdup(m);
                break;
            }
            log_error("Error when fetching backup: %s", *ret_error);
            continue;
        }
        if (!pg_data_dir_empty(dir)) {
            if (ynode_truthy(ynode_get(section, "keep_data"))) {
                log_info("Leaving data directory uncleaned");
            } else if ((r = pg_remove_data_directory(dir, ret_error)) < 0) {
                log_error("%s", *ret_error);
                continue;
            }
        }
        StrList argv = {0};
        r = pg_replica_method_argv(m, section, cfg->scope, dir, connstring, &argv, ret_error);
        if (r == 0)
            r = pg_run_method(&argv, &env, ret_error);
        strlist_clear(&argv);
        if (r == 0) {
            t->method = xstrdup(m);
            break;
        }
        log_error("Error creating replica using method %s: %s", m, *ret_error);
        if (r > 0)
            r = -EIO;
    }
    strlist_clear(&env);
    if (t->method)
        return 0;
    if (!*ret_error)
        *ret_error = xstrdup(pg_child_cancelled() ? "creating the replica was cancelled"
                                                  : "no replica method can work without a leader");
    return r < 0 ? r : -ECANCELED;
}

static void *task_main(void *arg) {
    Task *t = arg;
    Ha *h = t->ha;
    const PghaConfig *cfg = cfg_of(h);
    char *err = NULL;
    int r = 0;
    pg_child_bind(&t->child);
    switch (t->kind) {
    case TASK_BOOTSTRAP:
        if (cfg->bootstrap.method_section) {
            const YNode *cmd = ynode_get(cfg->bootstrap.method_section, "command");
            _cleanup_free_ char *line = cmd ? ynode_scalar_string(cmd) : NULL;
            log_info("Running custom bootstrap script: %s", line ? line : "");
            r = pg_custom_bootstrap(cfg, &err);
        } else {
            r = pg_initdb(cfg, h->pg.inst.bin_dir, &err);
        }
        break;
    case TASK_REINIT: /* the data directory is emptied by each method (not by one with keep_data), as in Patroni */
    case TASK_CLONE: r = create_replica(cfg, t, h->pg.inst.bin_dir, &err); break;
    case TASK_REWIND:
        if (t->crash_recovery)
            r = pg_crash_recovery(cfg, h->pg.inst.bin_dir, &err);
        if (r == 0 && t->source_tli > 0) /* a remote primary: its checkpoint after the promotion first */
            r = pg_remote_checkpoint(cfg, t->host, t->port, t->source_tli, &err);
        if (r == 0)
            r = pg_rewind(cfg, h->pg.inst.bin_dir, t->host, t->port, &err);
        break;
    default: break;
    }
    pg_child_bind(NULL);
    t->result = r;
    t->error = err;
    t->done = true;
    ha_wake(h);
    return NULL;
}

const char *task_name(TaskKind k) {
    switch (k) {
    case TASK_BOOTSTRAP: return "bootstrap";
    case TASK_CLONE: return "clone";
    case TASK_REWIND: return "rewind";
    case TASK_REINIT: return "reinitialize";
    default: return NULL;
    }
}

/* Patroni's create_replica() with a RemoteMember: in a standby cluster the methods are
 * standby_cluster.create_replica_methods, else basebackup. */
void standby_replica_methods(Ha *h, StrList *ret) {
    const YNode *sc = dyn_of(h)->standby_cluster;
    const YNode *list = sc && sc->type == Y_MAP ? ynode_get(sc, "create_replica_methods") : NULL;
    for (size_t i = 0; list && list->type == Y_SEQ && i < list->n; i++)
        if (list->items[i]->type == Y_STR && list->items[i]->text && list->items[i]->text[0])
            strlist_add(ret, list->items[i]->text);
    if (ret->n == 0)
        strlist_add(ret, "basebackup");
}

void task_start(Ha *h, TaskKind kind, const char *host, int port, bool crash_recovery) {
    task_start_rewind(h, kind, host, port, crash_recovery, 0);
}

void task_start_rewind(Ha *h, TaskKind kind, const char *host, int port, bool crash_recovery, long long source_tli) {
    Task *t = &h->work.task;
    free(t->error);
    free(t->method);
    strlist_clear(&t->methods);
    *t = (Task){.kind = kind, .ha = h, .port = port, .crash_recovery = crash_recovery, .source_tli = source_tli};
    if ((kind == TASK_CLONE || kind == TASK_REINIT) && dyn_is_standby_cluster(dyn_of(h)))
        standby_replica_methods(h, &t->methods);
    pg_child_init(&t->child);
    snprintf(t->host, sizeof t->host, "%s", host ? host : "");
    if (pthread_create(&t->thread, NULL, task_main, t) != 0) {
        log_error("cannot start the %s task: %s", task_name(kind), strerror(errno));
        pg_child_destroy(&t->child);
        t->kind = TASK_NONE;
    }
}

/* Whom a fresh clone follows (Patroni's _get_node_to_follow after clone()): the remote primary for the standby
 * leader being bootstrapped, and in a standby cluster without a leader (not paused); else the leader. */
static const char *clone_follow_target(Ha *h) {
    const Cluster *c = h->view.cluster;
    if (cfg_of(h)->tags.nostream)
        return NULL;
    if (h->work.standby_bootstrap || (dyn_is_standby_cluster(dyn_of(h)) && !(c && c->leader) && !dyn_of(h)->pause))
        return FOLLOW_REMOTE;
    return c && c->leader ? c->leader->name : NULL;
}

/* Whom a rewound node follows: the leader; in a standby cluster the standby leader itself (or, while nobody holds
 * the key, every member) the remote primary it was rewound from. */
static const char *rewind_follow_target(Ha *h) {
    const Cluster *c = h->view.cluster;
    if (dyn_is_standby_cluster(dyn_of(h)))
        return is_lock_holder(h) && !cfg_of(h)->tags.nostream ? FOLLOW_REMOTE : clone_follow_target(h);
    return c && c->leader ? c->leader->name : NULL;
}

static void start_after_rewind(Ha *h) {
    /* the lock holder of a standby cluster starts as the standby leader (execute_start does the same) */
    if (start_postgres(h, false, rewind_follow_target(h)) == 0 && is_lock_holder(h) &&
        dyn_is_standby_cluster(dyn_of(h)))
        set_role(h, "standby_leader");
}

static void *checkpoint_main(void *arg) {
    Ha *h = arg;
    char *err = NULL;
    PGconn *c = pg_instance_connect_db(&h->pg.inst, NULL, "Patroni checkpoint", &err);
    if (c) {
        (void)pg_checkpoint(c, 0, &err);
        PQfinish(c);
    }
    if (err) {
        log_warning("CHECKPOINT after promote failed: %s", err);
        free(err);
    }
    h->work.checkpoint_done = true;
    ha_wake(h);
    return NULL;
}

void start_post_promote_checkpoint(Ha *h) {
    if (h->work.checkpoint_running)
        return;
    h->work.checkpoint_done = false;
    h->work.checkpoint_pending = true;
    if (pthread_create(&h->work.checkpoint_thread, NULL, checkpoint_main, h) == 0)
        h->work.checkpoint_running = true;
    else
        h->work.checkpoint_pending = false;
}

void finish_post_promote_checkpoint(Ha *h, bool wait) {
    if (!h->work.checkpoint_running || (!wait && !h->work.checkpoint_done))
        return;
    pthread_join(h->work.checkpoint_thread, NULL);
    h->work.checkpoint_running = false;
    h->work.checkpoint_pending = false;
}

/* Give /initialize back (a cleanup: tried even after a DCS call of the cycle failed). */
static void cancel_initialization(Ha *h) {
    bool ff = dcs_suspend_fail_fast();
    (void)dcs_cancel_initialization(h->dcs);
    dcs_restore_fail_fast(ff);
}

void finish_task(Ha *h) {
    Task *t = &h->work.task;
    if (t->kind == TASK_NONE || !t->done)
        return;
    pthread_join(t->thread, NULL);
    pg_child_destroy(&t->child);
    strlist_clear(&t->methods);
    TaskKind kind = t->kind;
    int r = t->result;
    char *err = t->error;
    _cleanup_free_ char *method = t->method;
    t->error = NULL;
    t->method = NULL;
    t->kind = TASK_NONE;
    bool from_leader = t->host[0] != '\0';
    const PghaConfig *cfg = cfg_of(h);
    switch (kind) {
    case TASK_BOOTSTRAP:
        if (r < 0) {
            log_error("%s%s", cfg->bootstrap.method_section ? "custom bootstrap failed: " : "", err);
            set_state(h, cfg->bootstrap.method_section ? "custom bootstrap failed" : "initdb failed");
            cancel_initialization(h);
            char *e2 = NULL;
            if (pg_move_data_directory_aside(cfg->postgresql.data_dir, &e2) < 0) {
                log_error("%s", e2);
                free(e2);
            }
            log_critical("bootstrap failed; the initialize key was released so that another node can try");
            h->fatal = true;
            break;
        }
        /* hba additions from bootstrap.pg_hba (unless postgresql.pg_hba replaces the file); into the
         * data directory, so that replicas cloned from it have them too */
        if (!cfg->postgresql.pg_hba && cfg->bootstrap.pg_hba) {
            _cleanup_free_ char *path = xasprintf("%s/pg_hba.conf", cfg->postgresql.data_dir);
            char *e2 = NULL;
            if (pg_write_hba(path, cfg->bootstrap.pg_hba, true, &e2) < 0) {
                log_error("%s", e2);
                free(e2);
            }
        }
        refresh_controldata(h);
        set_state(h, "initializing new cluster");
        h->work.custom_bootstrap = cfg->bootstrap.method_section != NULL;
        if (start_postgres(h, true, NULL) < 0) {
            cancel_initialization(h);
            h->fatal = true;
        }
        h->work.task.kind = TASK_NONE;
        h->work.task.result = 1; /* post-bootstrap pending: see post_bootstrap() */
        break;
    case TASK_REINIT: /* the data directory was cloned again (its sysid is read again below) */
    case TASK_CLONE:
        if (r < 0) {
            log_error("failed to bootstrap %s: %s",
                      h->work.standby_bootstrap ? "from the remote primary of the standby cluster"
                      : from_leader             ? "from the leader"
                                                : "(without leader)",
                      err);
            set_state(h, "stopped");
            remove_data_directory(h);        /* what a failed method left (Patroni removes it too) */
            if (h->work.standby_bootstrap) { /* Patroni: cancel_initialization(), a fatal error */
                h->work.bootstrap_pending = h->work.standby_bootstrap = false;
                cancel_initialization(h);
                log_critical("bootstrap of the standby leader failed; the initialize key was released so that "
                             "another node can try");
                h->fatal = true;
            }
            break;
        }
        log_info("replica has been created using %s", method ? method : "basebackup");
        local_data_replaced(h);
        refresh_controldata(h);
        (void)start_postgres(h, false, clone_follow_target(h));
        break;
    case TASK_REWIND:
        if (r == -EAGAIN) {
            /* the remote is not ready for it (its checkpoint after the promotion, or it did not answer): nothing was
             * changed; PostgreSQL stays stopped and the next cycle checks again (Patroni's Rewind.execute) */
            log_warning("not rewinding now: %s; trying again at the next cycle", err);
            refresh_controldata(h);
            set_state(h, "stopped");
            break;
        }
        if (r < 0) {
            log_error("%s", err);
            if (cfg->postgresql.remove_data_directory_on_rewind_failure ||
                cfg->postgresql.remove_data_directory_on_diverged_timelines) {
                log_warning("removing the data directory after the pg_rewind failure, as configured");
                remove_data_directory(h);
            } else {
                log_warning("pg_rewind failed; starting as a replica anyway");
                local_rewind_finished(h, false);
                refresh_controldata(h);
                start_after_rewind(h);
            }
            break;
        }
        log_info("pg_rewind finished");
        local_rewind_finished(h, true);
        refresh_controldata(h);
        start_after_rewind(h);
        break;
    default: break;
    }
    free(err);
}

static char *bootstrap_config_json(Ha *h) {
    const YNode *dcs = cfg_of(h)->bootstrap.dcs;
    if (!dcs)
        return xstrdup("{}");
    cJSON *j = ynode_to_json(dcs);
    char *s = json_dumps(j, false);
    cJSON_Delete(j);
    return s;
}

static void post_bootstrap_keys(Ha *h);

/* After a custom bootstrap's roles and post_bootstrap: the pg_hba.conf that was there comes back (or the
 * configured one), no recovery files are left, postgresql.conf is the primary's, and PostgreSQL reloads;
 * the agent reconnects with the password just set (Patroni's post_bootstrap). */
static void end_custom_bootstrap(Ha *h) {
    h->pg.effective_hot_standby_off = false; /* (postgresql.conf is written without it from now on) */
    const PghaConfig *cfg = cfg_of(h);
    h->work.custom_bootstrap = false;
    char *err = NULL;
    if (pg_custom_bootstrap_hba(cfg->postgresql.config_dir, NULL, false, &err) < 0 ||
        pg_remove_recovery_conf(cfg->postgresql.data_dir, &err) < 0) {
        log_error("%s", err);
        free(err);
    }
    (void)write_configuration(h, true, NULL);
    log_info("Reloading PostgreSQL configuration.");
    reload_postgres(h);
    sleep(1); /* as Patroni: give PostgreSQL a moment to read the files */
    pg_instance_close_conn(&h->pg.inst);
}

/* The bootstrap's keys are written even when a DCS call of the cycle failed before (fail-fast would refuse
 * them and leave /initialize holding our system identifier), and each is tried after another failed: a
 * tolerated /config timeout must not turn the leader key's write into a cancelled bootstrap. */
void post_bootstrap(Ha *h) {
    bool ff = dcs_suspend_fail_fast();
    post_bootstrap_keys(h);
    dcs_restore_fail_fast(ff);
}

static void post_bootstrap_keys(Ha *h) {
    const PghaConfig *cfg = cfg_of(h);
    PGconn *c = local_conn(h);
    char *err = NULL;
    char *json = NULL;
    if (h->work.standby_bootstrap)
        goto keys; /* a clone of the remote primary: its roles are the remote's, no post_bootstrap */
    if (!c || pg_create_roles(c, cfg, h->pg.inst.major, &err) < 0) {
        log_error("failed to create the roles after bootstrap: %s", err ? err : "no connection");
        free(err);
        goto cancel;
    }
    if (cfg->bootstrap.post_bootstrap && *cfg->bootstrap.post_bootstrap) { /* (empty: none) */
        PgConnParams p;
        char host[256];
        pg_local_conn_params(cfg, &p, host, sizeof host);
        _cleanup_free_ char *dsn = xasprintf("host=%s port=%d user=%s dbname=%s", p.host, p.port, p.user,
                                             p.dbname ? p.dbname : "postgres");
        StrList env = {0};
        if (cfg->postgresql.pgpass) {
            _cleanup_free_ char *e = xasprintf("PGPASSFILE=%s", cfg->postgresql.pgpass);
            strlist_add(&env, e);
        }
        strlist_add(&env, "PGOPTIONS=-c synchronous_commit=local -c statement_timeout=0");
        char *out = NULL;
        sdn_watchdog_extend(now_monotonic() + 3605 * USEC_PER_SEC);
        int r = run_split(cfg->bootstrap.post_bootstrap, dsn, &env, 3600 * USEC_PER_SEC, &out);
        strlist_clear(&env);
        if (r != 0) {
            log_error("post_bootstrap script %s failed (%d): %s", cfg->bootstrap.post_bootstrap, r,
                      out ? str_trim(out) : "");
            free(out);
            goto cancel;
        }
        free(out);
    }
    if (h->work.custom_bootstrap)
        end_custom_bootstrap(h);
    /* armed before this node takes the key as the primary (spec §4.2) */
    WatchdogSettings ws = watchdog_settings(h);
    if (!dyn_of(h)->pause && !watchdog_activate(&h->wd, &ws)) {
        log_error("Cancelling bootstrap because watchdog activation failed");
        goto cancel;
    }
keys:
    refresh_controldata(h);
    if (dcs_initialize(h->dcs, false, h->pg.sysid) < 0) {
        log_error("failed to write /initialize: %s", dcs_error(h->dcs));
        goto cancel;
    }
    json = bootstrap_config_json(h);
    if (dcs_set_config(h->dcs, json, 0) < 0)
        log_error("failed to write /config: %s", dcs_error(h->dcs));
    free(json);
    json = NULL;
    usec_t sent = now_monotonic();
    if (dcs_take_leader(h->dcs) < 0) {
        log_error("failed to take the leader key after bootstrap: %s", dcs_error(h->dcs));
        goto cancel;
    }
    lease_renewed(h, sent);
    set_role(h, h->work.standby_bootstrap ? "standby_leader" : "primary");
    log_info("initialized a new cluster");
    h->work.bootstrap_pending = h->work.standby_bootstrap = false;
    run_callback(h, "on_start", h->pg.role);
    return;
cancel:
    log_critical("cancelling the bootstrap");
    h->work.custom_bootstrap = h->work.standby_bootstrap = false;
    (void)stop_postgres(h, PG_STOP_IMMEDIATE, "bootstrap failed");
    watchdog_disable(&h->wd);
    (void)dcs_cancel_initialization(h->dcs);
    char *e2 = NULL;
    if (pg_move_data_directory_aside(cfg->postgresql.data_dir, &e2) < 0) {
        log_error("%s", e2);
        free(e2);
    }
    h->work.bootstrap_pending = false;
    h->fatal = true;
}

/* At shutdown: like Patroni's cancellable subprocesses, a clone or rewind is stopped, not waited for
 * (pg_basebackup can run for hours). pg_basebackup's failure path removes the half-cloned data
 * directory; an interrupted pg_rewind leaves a data directory that the next start rewinds again (its
 * control file is only updated when it finishes). initdb is waited for. */
void task_stop(Ha *h) {
    Task *t = &h->work.task;
    if (t->kind == TASK_NONE)
        return;
    if (t->kind != TASK_BOOTSTRAP && !t->done) {
        log_info("stopping the %s task", task_name(t->kind));
        pg_child_cancel(&t->child, SIGTERM);
        for (int i = 0; i < 50 && !t->done; i++)
            usleep(100 * 1000);
        if (!t->done) {
            log_warning("the %s task did not stop within 5 s; killing it", task_name(t->kind));
            pg_child_cancel(&t->child, SIGKILL);
        }
    } else {
        log_info("waiting for the %s task to finish", task_name(t->kind));
    }
    pthread_join(t->thread, NULL);
    pg_child_destroy(&t->child);
    strlist_clear(&t->methods);
    free(t->error);
    t->error = NULL;
    free(t->method);
    t->method = NULL;
    t->kind = TASK_NONE;
}

/* HA_BOOTSTRAP won the /initialize race: initdb in a worker; roles, post_bootstrap and the DCS keys
 * follow once PostgreSQL runs (post_bootstrap()). */
void bootstrap_begin(Ha *h) {
    h->work.bootstrap_pending = true;
    task_start(h, TASK_BOOTSTRAP, NULL, 0, false);
}

/* HA_BOOTSTRAP won the /initialize race in a standby cluster: clone the remote primary (standby_cluster host/port,
 * its create_replica_methods) in a worker; PostgreSQL then starts in recovery following it, and the DCS keys
 * follow once it answers (post_bootstrap()). */
void standby_bootstrap_begin(Ha *h) {
    const DynConfig *dyn = dyn_of(h);
    const char *host = dyn_standby_str(dyn, "host"), *port_s = dyn_standby_str(dyn, "port");
    long long port = 5432;
    if (port_s && (parse_ll(port_s, &port) < 0 || port <= 0 || port > 65535)) {
        log_warning("standby_cluster.port %s is not a port number; using 5432", port_s);
        port = 5432;
    }
    h->work.bootstrap_pending = true;
    h->work.standby_bootstrap = true;
    write_pgpass(h);
    set_state(h, "creating replica");
    if (host)
        log_info("clone from remote member %s:%lld", host, port);
    else
        log_info("clone of the standby cluster's remote primary without a host (a replica method with no_leader)");
    task_start(h, TASK_CLONE, host, (int)port, false);
}

/* initdb finished but PostgreSQL did not start: give /initialize back for another node. */
void bootstrap_abandon(Ha *h) {
    log_error("PostgreSQL did not start after %s",
              cfg_of(h)->bootstrap.method_section ? "the custom bootstrap" : "initdb");
    h->work.bootstrap_pending = false;
    h->work.custom_bootstrap = false;
    h->work.standby_bootstrap = false;
    cancel_initialization(h);
    h->fatal = true;
}
