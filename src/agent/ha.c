/* The HA loop (DESIGN.md): one thread that observes (DCS cache, local PostgreSQL, peers when a race
 * needs them), calls decide(), carries the decision out (execute.c), publishes a snapshot and touches
 * the member key. It sleeps until loop_wait has passed or something wakes it: a watch event, the
 * postmaster exiting (pidfd), a signal (SIGHUP reloads and runs a cycle at once). */
#include "agent/ha.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "agent/ha_int.h"
#include "agent/probe.h"
#include "agent/snapshot.h"
#include "common/sdnotify.h"
#include "dcs/curlinit.h"

void ha_wake(void *ud) {
    Ha *h = ud;
    uint64_t one = 1;
    (void)!write(h->wake_fd, &one, sizeof one);
}

void ha_commands_wake(void *ud) {
    Ha *h = ud;
    uint64_t one = 1;
    (void)!write(h->cmd_fd, &one, sizeof one);
}

static void run_cycle(Ha *h, bool stale) {
    h->tilt = stale;
    /* the lease deadline is hard: checked before each step that may block (TILT never suppresses it); the
     * cycle's DCS calls end by it (dcs_set_lease_deadline), and after the first failure the rest of them are
     * not tried: each could take retry_timeout */
    dcs_set_fail_fast(true);
    (void)fence_expired_lease(h);
    usec_t now = now_monotonic();
    const usec_t began = now;
    const usec_t fence_before = primary_fence_at(h); /* a failsafe licence starts from it (§4.12) */
    /* 1. the cluster view */
    view_read_cluster(h, now);
    (void)fence_expired_lease(h);
    now = now_monotonic(); /* the read may have waited (for the watch cache) */
    if (h->view.cluster)
        update_enforce_hsf(h);

    /* 2. long actions */
    /* a stale (TILT) cycle observes only: nothing that starts PostgreSQL or writes to the DCS */
    if (!stale)
        finish_task(h);
    finish_post_promote_checkpoint(h, false);

    /* 3. the local PostgreSQL */
    LocalState l;
    observe_pg(h, &l);
    if (!stale) {
        /* both steps run, whatever the first did */
        bool restarted = restart_step(h);
        bool stepped_down = stepdown_step(h);
        bool demoted = demote_cluster_step(h);
        if (restarted || stepped_down || demoted)
            observe_pg(h, &l); /* PostgreSQL was started again, or stopped for a switchover */
    }
    l.async_action = task_name(h->work.task.kind);
    if (!l.async_action)
        l.async_action = restart_action(h);
    if (!l.async_action)
        l.async_action = stepdown_action(h);
    if (!l.async_action)
        l.async_action = demote_cluster_action(h);
    if (h->work.bootstrap_pending && !l.async_action)
        l.async_action = "bootstrap";
    l.leader_lock_valid = h->view.lock_valid_until > now;
    /* the watchdog: off while paused (spec §4.3 step 2); `required` and unusable keeps this node out of
     * the race (and it says so in GET /patroni) */
    WatchdogSettings ws = watchdog_settings(h);
    if (dyn_of(h)->pause)
        watchdog_disable(&h->wd);
    l.watchdog_failed = watchdog_check(&h->wd, &ws);
    l.promote_backoff = h->promote_failed_at && now - h->promote_failed_at < (usec_t)ttl_s(h) * USEC_PER_SEC;

    if (stale) {
        /* observe only */
    } else if (h->work.bootstrap_pending && h->work.task.kind == TASK_NONE && l.pg_ready && l.in_recovery &&
               !h->work.standby_bootstrap) {
        /* a custom bootstrap with recovery_conf: PostgreSQL replays until its recovery target */
        log_info("waiting for end of recovery after bootstrap");
    } else if (h->work.bootstrap_pending && h->work.task.kind == TASK_NONE && l.pg_ready) {
        post_bootstrap(h);
        observe_pg(h, &l);
        l.async_action = NULL;
        view_reread(h); /* the keys the bootstrap wrote */
    } else if (h->work.bootstrap_pending && h->work.task.kind == TASK_NONE && !l.pg_running && !h->fatal) {
        bootstrap_abandon(h);
    }

    /* 4. peers, when a race or a switchover needs them */
    Observation o = {.cfg = cfg_of(h),
                     .dyn = dyn_of(h),
                     .cluster = h->view.cluster,
                     .last_locked = h->view.last_locked,
                     .local = &l,
                     .stale_tick = stale,
                     .now = now};
    /* failsafe mode: a replica that accepted a leader's POST /failsafe less than ttl ago does not race (§4.12);
     * a promise once given holds even if failsafe_mode was switched off meanwhile (POSTs are accepted only
     * while it is on) */
    /* cppcheck-suppress variableScope ; o.failsafe_leader points into it until decide() below */
    char fs_leader[128];
    if (!stale)
        o.failsafe_leader = failsafe_window_leader(h, fs_leader, sizeof fs_leader);
    PeerStatus *peers = NULL;
    if (decide_needs_peers(&o)) {
        /* with failsafe mode, the members of /failsafe too (their member keys may have expired meanwhile) */
        const cJSON *fs = dyn_of(h)->failsafe_mode && h->view.cluster ? h->view.cluster->failsafe : NULL;
        peers = probe_members_with(h->view.cluster, h->view.last_locked, fs, cfg_of(h)->name, cfg_of(h), 2000,
                                   &o.n_peers);
        o.peers = peers;
        o.peers_probed = true;
    }
    if (h->view.cluster && h->view.cluster->failover.scheduled_at) {
        double at;
        if (parse_iso8601(h->view.cluster->failover.scheduled_at, &at) == 0) {
            double wall = (double)now_realtime() / 1e6;
            double lw = loop_wait_s(h);
            o.scheduled_stale = wall - at > (double)(long long)(1.5 * lw);
            o.scheduled_due = !o.scheduled_stale && at - wall <= 0;
            if (!o.scheduled_due && !o.scheduled_stale && at - wall <= lw)
                h->next_cycle = now + (usec_t)((at - wall) * 1e6) + 1000; /* wake up exactly then */
        } else {
            o.scheduled_stale = true; /* unparsable: Patroni drops it as well */
        }
    }
    /* failsafe mode: the DCS error path of a running primary asks the members first (§4.3 step 15) */
    if (dyn_of(h)->failsafe_mode && !stale) {
        if (!h->view.cluster && !dyn_of(h)->pause && l.pg_running && l.pg_ready && !l.in_recovery &&
            fence_before > now_monotonic()) {
            failsafe_carry_licence(h, fence_before);
            o.failsafe_survived = failsafe_check(h, primary_fence_at(h));
            if (fence_expired_lease(h)) /* the POSTs ran into the fence point: stopped already */
                observe_pg(h, &l);
            o.now = now_monotonic();
        }
    }
    Decision d;
    decide(&o, &d);
    slots_new_cycle(h);
    if (!h->fatal)
        execute(h, &d, &l);
    free(peers);
    (void)fence_expired_lease(h);
    /* armed only while this node holds the lease or may run a primary: a lost race, a released key, a
     * failed promotion leave nothing to fence (a primary that could not be stopped keeps it armed) */
    if (watchdog_is_running(&h->wd) && h->view.lock_valid_until <= now_monotonic() && !may_be_primary(h))
        watchdog_disable(&h->wd);
    /* a scheduled restart, in a cluster with a leader (spec §4.3 step 12) */
    if (!h->fatal && !stale && h->view.cluster && h->view.cluster->leader)
        restart_evaluate_scheduled(h);
    /* replication slots on every node whose PostgreSQL runs (the leader did it with its lock update) */
    if (!h->fatal && !stale && h->work.task.kind == TASK_NONE && !h->work.bootstrap_pending &&
        (d.action == HA_NONE || d.action == HA_UPDATE_LOCK || d.action == HA_UPDATE_LOCK_ONLY ||
         d.action == HA_CLEAR_FAILOVER || d.action == HA_FOLLOW))
        slots_sync(h);

    if (!h->fatal && (d.action == HA_NONE || d.action == HA_UPDATE_LOCK))
        if (!stale)
            apply_config_changes(h);

    /* 5. our member key, the snapshot, the summary line */
    (void)fence_expired_lease(h);
    if (h->view.cluster && !h->fatal && !stale) {
        /* re-read what the action changed (role, lsn) before publishing */
        if (d.action != HA_NONE && h->pg.inst.pid > 0 && !h->pg.starting) {
            LocalState l2;
            observe_pg(h, &l2);
        }
        touch_member(h);
    }
    agent_counters_observe_cycle(&h->counters, (double)(now_monotonic() - began) / USEC_PER_SEC);
    publish(h);
    if (d.action == HA_NONE || d.action == HA_UPDATE_LOCK || d.action == HA_UPDATE_LOCK_ONLY)
        log_heartbeat(LOG_INFO, now_monotonic(), "%s", d.message);
    else
        log_info("%s", d.message);
    sdn_watchdog();
    dcs_set_fail_fast(false);
}

/* How long one HA cycle may take before the agent counts as stuck (the systemd watchdog): its DCS work
 * (loop_wait + 2 x retry_timeout <= ttl: a cycle that takes longer has lost the lease anyway) plus
 * 5 s. Longer steps that are bounded on their own (a stop of PostgreSQL, a script) extend it
 * themselves (local.c). */
static usec_t cycle_budget(const Ha *h) {
    return (usec_t)(loop_wait_s(h) + 2 * dyn_of(h)->retry_timeout + 5) * USEC_PER_SEC;
}

/* A switchover or failover may hand over to this replica: the leader asks for its WAL position (GET /patroni)
 * until it has the old primary's shutdown checkpoint, so its snapshot is refreshed between cycles too. */
static bool switchover_candidate(const Ha *h) {
    const Cluster *c = h->view.cluster;
    if (!c || failover_is_empty(&c->failover) || is_lock_holder(h) || !h->pg.st.ok || !h->pg.st.in_recovery)
        return false;
    const char *me = cfg_of(h)->name;
    return c->failover.candidate ? streq(c->failover.candidate, me) : !cfg_of(h)->tags.nofailover;
}

/* A standby whose walreceiver has just failed (the old primary stopped or died) may note the promote request and
 * then sleep wal_retrieve_retry_interval (5 s) before it acts on it; PostgreSQL's log shows "received promote
 * request", then "waiting for WAL to become available". Look every 200 ms while the promotion is pending and wake
 * it when it sleeps there (not when the lease's fence point is near: the query may take a while). */
static void nudge_promotion(Ha *h) {
    usec_t now = now_monotonic();
    if (!h->pg.promoting || !h->pg.st.ok || !h->pg.st.in_recovery || now - h->pg.promote_nudged < 200 * USEC_PER_MSEC)
        return;
    usec_t fence = lease_fence_at(h);
    if (fence && fence < now + 3 * USEC_PER_SEC)
        return;
    h->pg.promote_nudged = now;
    char *err = NULL;
    int r = pg_instance_wake_startup(&h->pg.inst, &err);
    if (r == 0)
        log_info("still in recovery %.1f s after the promote request, waiting for wal_retrieve_retry_interval: woke "
                 "PostgreSQL's startup process",
                 (double)(now - h->pg.promote_sent) / USEC_PER_SEC);
    else if (r != -EAGAIN)
        log_debug("cannot wake the startup process: %s", err ? err : strerror(-r));
    free(err);
}

/* Between cycles: has PostgreSQL finished starting or promoting (or died)? */
static bool quick_check(Ha *h) {
    bool was_starting = h->pg.starting, was_promoting = h->pg.promoting;
    LocalState l;
    observe_pg(h, &l);
    nudge_promotion(h);
    publish(h);
    return (was_starting && !h->pg.starting) || (was_promoting && !h->pg.promoting) || h->pg.inst.pid <= 0;
}

/* ---- startup and shutdown ---- */

static bool wait_for_dcs(Ha *h) {
    int sfd = h->a->signal_fd;
    usec_t last_log = 0;
    for (;;) {
        /* waiting for etcd at start-up is no hang: the systemd watchdog is kept quiet meanwhile */
        sdn_watchdog_extend(now_monotonic() + (usec_t)(dyn_of(h)->retry_timeout + 10) * USEC_PER_SEC);
        int r = dcs_connect(h->dcs);
        if (r == 0)
            return true;
        if (r == -EACCES || r == -EPROTONOSUPPORT) {
            log_critical("%s", dcs_error(h->dcs));
            return false;
        }
        if (now_monotonic() - last_log > 30 * USEC_PER_SEC || !last_log) {
            log_info("waiting on etcd: %s", dcs_error(h->dcs));
            last_log = now_monotonic();
        }
        struct pollfd p = {.fd = sfd, .events = POLLIN};
        if (poll(&p, 1, 2000) > 0) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
                if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT || si.ssi_signo == SIGQUIT) {
                    h->a->stopping = true;
                    return false;
                }
        }
    }
}

/* Patroni refuses to start when a live node already uses our name (spec §3.2). */
static bool duplicate_name(Ha *h) {
    Cluster *c = NULL;
    if (dcs_read_cluster(h->dcs, false, &c) < 0)
        return false;
    const Member *m = cluster_get_member(c, cfg_of(h)->name);
    bool dup = false;
    if (m && m->api_url) {
        char *url = NULL;
        dup = probe_liveness(m->api_url, cfg_of(h), 3000, &url);
        if (dup)
            log_critical("Can't start; there is already a node named '%s' running (%s answers)", cfg_of(h)->name, url);
        free(url);
    }
    cluster_free(c);
    return dup;
}

Ha *ha_new(Agent *a, int *ret_code) {
    Ha *h = xcalloc(1, sizeof *h);
    *h = (Ha){.a = a, .wake_fd = -1, .cmd_fd = -1, .pg.inst.pidfd = -1, .slots.check_local = true};
    watchdog_init(&h->wd, &watchdog_linux_driver);
    *ret_code = 1;
    const PghaConfig *cfg = &a->cfg;
    char *err = NULL;
    if (pg_instance_init(&h->pg.inst, cfg, &err) < 0) {
        log_critical("%s", err);
        free(err);
        return ha_free(h);
    }
    if (h->pg.inst.major < 13 || h->pg.inst.major > 17)
        log_warning("PostgreSQL %d is outside the supported range 13-17", h->pg.inst.major);
    h->dcs = dcs_new(cfg, &err);
    if (!h->dcs) {
        log_critical("%s", err);
        free(err);
        return ha_free(h);
    }
    const DynConfig *bd = &cfg->bootstrap.dyn;
    dcs_set_timings(h->dcs, (int)bd->ttl, (int)bd->loop_wait, (int)bd->retry_timeout);
    h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    h->cmd_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    h->commands = command_queue_new(ha_commands_wake, h);
    set_state(h, "stopped");
    set_role(h, "uninitialized");
    pgha_curl_global_init();
    if (!wait_for_dcs(h)) {
        *ret_code = a->stopping ? 0 : 1;
        return ha_free(h);
    }
    if (duplicate_name(h))
        return ha_free(h);
    *ret_code = 0;
    return h;
}

Dcs *ha_dcs(Ha *h) { return h->dcs; }

CommandQueue *ha_commands(Ha *h) { return h->commands; }

static void shutdown_ha(Ha *h) {
    sdn_stopping();
    const PghaConfig *cfg = cfg_of(h);
    task_stop(h);
    /* the cycle's view predates what the cycle did (the cache has our own writes): the key as it is now */
    view_reread_cached(h);
    bool paused = dyn_of(h)->pause;
    bool leader = is_lock_holder(h);
    if (paused) {
        log_info("leaving PostgreSQL running and the leader key in place: the cluster is paused");
        watchdog_disable(&h->wd);
    } else if (h->pg.inst.pid > 0) {
        if (leader) {
            (void)stepdown_shutdown(h);
        } else {
            leave_sync_duty(h);
            if (stop_postgres(h, PG_STOP_FAST, "pgha is shutting down") < 0)
                log_error("PostgreSQL could not be stopped");
        }
    } else if (leader) {
        (void)dcs_delete_leader(h->dcs);
    }
    (void)cfg;
    /* disarmed once PostgreSQL no longer runs as the primary; one that could not be stopped is left to the
     * device, which fences it after the lease is gone */
    if (!paused && may_be_primary(h))
        watchdog_leave_armed(&h->wd);
    else
        watchdog_disable(&h->wd);
    if (!paused) {
        set_state(h, "stopped");
        touch_member(h);
    }
}

/* A SIGHUP is applied when no worker thread reads the configuration. */
static void maybe_reload(Ha *h) {
    if (!h->reload_pending || h->work.task.kind != TASK_NONE || h->work.checkpoint_running ||
        h->stepdown.thread_running)
        return;
    h->reload_pending = false;
    if (agent_reload(h->a) == 0) {
        local_config_reloaded(h);
        WatchdogSettings ws = watchdog_settings(h);
        watchdog_reloaded(&h->wd, &ws);
        /* new etcd3 settings: tested on a side connection by the client's own thread, swapped in only when
         * they reach the same etcd cluster (no network I/O here) */
        (void)dcs_reload(h->dcs, cfg_of(h));
    }
}

/* Signals: SIGHUP asks for a reload and a cycle now; SIGTERM/SIGINT/SIGQUIT stop the agent. Returns
 * true when the loop should run a cycle at once. */
static bool read_signals(Ha *h) {
    Agent *a = h->a;
    bool wake = false;
    struct signalfd_siginfo si;
    while (read(a->signal_fd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGHUP) {
            h->reload_pending = true;
            sdn_reloading();
            wake = true;
        } else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT || si.ssi_signo == SIGQUIT) {
            log_info("received %s, shutting down", strsignal((int)si.ssi_signo));
            a->stopping = true;
        }
    }
    return wake;
}

int ha_run(Ha *h) {
    Agent *a = h->a;
    int rc = 0;
    dcs_start_watch(h->dcs, ha_wake, h);
    sdn_watchdog_alive_until(now_monotonic() + cycle_budget(h));
    if (sdn_watchdog_start() < 0) /* started by main.c already; here for other callers */
        log_warning("cannot start the systemd watchdog thread: systemd may restart the agent");
    sdn_ready("running");
    log_info("pgha %s (Patroni %s compatible) started: member %s of cluster %s, PostgreSQL %d", PGHA_VERSION,
             PGHA_PATRONI_VERSION, a->cfg.name, a->cfg.scope, h->pg.inst.major);

    h->next_cycle = now_monotonic();
    h->last_cycle = 0;
    while (!a->stopping && !h->fatal) {
        if (fence_expired_lease(h))
            publish(h);
        usec_t now = now_monotonic();
        bool due = now >= h->next_cycle;
        if (!due) {
            usec_t wait = h->next_cycle - now;
            usec_t fence = primary_fence_at(h); /* wake up for the lease's end even when no cycle is due */
            if (fence && fence > now && fence - now < wait)
                wait = fence - now;
            /* while PostgreSQL starts or promotes, look often: that is where failover time goes */
            usec_t fast = h->pg.promoting || stepdown_stopping(h) ? 20 * USEC_PER_MSEC : 100 * USEC_PER_MSEC;
            /* (not a custom bootstrap's recovery with hot_standby off: it refuses connections until its end, each
             * try a FATAL line in its log) */
            bool quiet = h->work.bootstrap_pending && h->pg.effective_hot_standby_off;
            bool busy = !quiet && (h->pg.starting || h->pg.promoting || h->work.bootstrap_pending ||
                                   switchover_candidate(h) || stepdown_stopping(h));
            if (busy && wait > fast)
                wait = fast;
            /* the systemd watchdog keeper vouches for the loop until then (sdnotify.h) */
            sdn_watchdog_alive_until(now + wait + cycle_budget(h));
            struct pollfd p[4] = {{.fd = a->signal_fd, .events = POLLIN},
                                  {.fd = h->wake_fd, .events = POLLIN},
                                  {.fd = h->cmd_fd, .events = POLLIN},
                                  {.fd = h->pg.inst.pidfd, .events = POLLIN}};
            int pr = poll(p, h->pg.inst.pidfd >= 0 ? 4 : 3, (int)(wait / USEC_PER_MSEC) + 1);
            if (pr < 0 && errno != EINTR) {
                log_critical("poll: %s", strerror(errno));
                rc = 1;
                break;
            }
            bool woken = false;
            if (pr > 0 && (p[0].revents & POLLIN))
                woken = read_signals(h);
            if (a->stopping)
                break;
            if (pr > 0 && (p[1].revents & POLLIN)) {
                uint64_t v;
                (void)!read(h->wake_fd, &v, sizeof v);
                woken = true;
            }
            if (pr > 0 && (p[2].revents & POLLIN)) {
                uint64_t v;
                (void)!read(h->cmd_fd, &v, sizeof v); /* commands: run below, without a cycle */
            }
            if (pr > 0 && h->pg.inst.pidfd >= 0 && (p[3].revents & (POLLIN | POLLHUP)))
                woken = true; /* the postmaster exited: act now, not at the next loop */
            now = now_monotonic();
            if (!woken && now < h->next_cycle) {
                /* between cycles, while PostgreSQL starts or promotes, only look at PostgreSQL (no DCS
                 * traffic); a full cycle runs as soon as it is ready */
                commands_run(h); /* only when the next cycle is far enough away */
                maybe_reload(h);
                if (stepdown_between_cycles(h)) {
                    h->next_cycle = now_monotonic(); /* released: the cycle that follows the new leader */
                } else if (!busy || !quick_check(h))
                    continue;
            }
        }
        maybe_reload(h);
        now = now_monotonic();
        /* TILT: a cycle that starts far later than planned observes but does not act */
        bool stale = h->last_cycle && now - h->last_cycle > (usec_t)(loop_wait_s(h) + ttl_s(h) / 2) * USEC_PER_SEC &&
                     now - h->next_cycle > (usec_t)ttl_s(h) / 2 * USEC_PER_SEC;
        if (stale)
            log_warning("the HA loop was delayed by %.1f s; observing without acting this cycle",
                        (double)(now - h->next_cycle) / 1e6);
        h->last_cycle = now;
        sdn_watchdog_alive_until(now + cycle_budget(h));
        if (now >= h->next_cycle)
            h->next_cycle = now + (usec_t)loop_wait_s(h) * USEC_PER_SEC;
        run_cycle(h, stale);
        if (stale)
            h->next_cycle = now_monotonic(); /* act on fresh observations right away */
        /* commands after the cycle (the lease renewed), bounded by the next one */
        if (!a->stopping && !h->fatal)
            commands_run_after_cycle(h);
    }
    restart_abort(h);  /* answer a waiting POST /restart */
    stepdown_abort(h); /* shutdown_ha() stops PostgreSQL and releases the key */
    command_queue_close(h->commands);
    if (!h->fatal || h->pg.inst.pid > 0)
        shutdown_ha(h);
    if (h->fatal)
        rc = 1;
    return rc;
}

Ha *ha_free(Ha *h) {
    if (!h)
        return NULL;
    finish_post_promote_checkpoint(h, true);
    stepdown_free(h);
    watchdog_free(&h->wd); /* (PostgreSQL does not run here, or shutdown_ha() left the device armed) */
    if (h->dcs)
        dcs_stop_watch(h->dcs);
    snapshot_publish(NULL);
    local_free(&h->pg);
    command_queue_free(h->commands);
    if (h->wake_fd >= 0)
        close(h->wake_fd);
    if (h->cmd_fd >= 0)
        close(h->cmd_fd);
    view_free(&h->view);
    failsafe_free(&h->failsafe);
    publish_free(&h->published);
    dcs_free(h->dcs);
    slots_free(&h->slots);
    restart_free(&h->restart);
    sync_forget(h);
    free(h->work.task.error);
    free(h->work.task.method);
    sdn_stopping();
    log_info("pgha stopped");
    free(h);
    return NULL;
}
