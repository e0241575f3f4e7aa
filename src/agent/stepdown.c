/* A planned switchover on the leader (spec §4.7, issue "planned operations that keep the lease"): the
 * leader steps down without letting its lease lapse. A CHECKPOINT runs first in a worker thread (so that
 * the shutdown checkpoint is short), then PostgreSQL is asked to stop (fast, not escalated while the lease is
 * ours) and watched; the HA loop keeps renewing the leader key all along (decide() sees the long action
 * "switchover"). Once PostgreSQL has stopped cleanly and the candidate confirms it received the shutdown
 * checkpoint, /status is written with that checkpoint and the leader key deleted, so that the candidate,
 * woken by the watch, promotes at once and the old primary follows it without pg_rewind. Otherwise the
 * switchover is given up and PostgreSQL starts again as the primary. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "agent/ha_int.h"
#include "agent/probe.h"
#include "common/sdnotify.h"

/* How long the stopped primary waits for the candidate to confirm it has the shutdown checkpoint. */
#define HANDOVER_WAIT (10 * USEC_PER_SEC)

static void *checkpoint_main(void *arg) {
    Ha *h = arg;
    char *err = NULL;
    PGconn *c = pg_instance_connect_db(&h->pg.inst, NULL, "pgha switchover checkpoint", &err);
    if (c) {
        /* no statement timeout: the loop stops waiting after pg_ctl_timeout and stops PostgreSQL anyway */
        (void)pg_checkpoint(c, 0, &err);
        PQfinish(c);
    }
    h->stepdown.checkpoint_error = err;
    atomic_store(&h->stepdown.checkpoint_done, true);
    ha_wake(h);
    return NULL;
}

/* The checkpoint thread has ended: collect it (wait = block until it ends). */
static void join_checkpoint(Ha *h, bool wait) {
    HaStepdown *s = &h->stepdown;
    if (!s->thread_running || (!wait && !atomic_load(&s->checkpoint_done)))
        return;
    pthread_join(s->thread, NULL);
    s->thread_running = false;
    if (s->checkpoint_error) {
        log_warning("CHECKPOINT before the switchover failed: %s", s->checkpoint_error);
        free(s->checkpoint_error);
        s->checkpoint_error = NULL;
    }
}

const char *stepdown_action(const Ha *h) { return h->stepdown.phase != STEPDOWN_IDLE ? "switchover" : NULL; }

void stepdown_begin(Ha *h, const char *candidate) {
    HaStepdown *s = &h->stepdown;
    if (s->phase != STEPDOWN_IDLE)
        return;
    if (s->thread_running) {
        log_info("switchover deferred: the CHECKPOINT of an interrupted switchover still runs");
        return;
    }
    snprintf(s->candidate, sizeof s->candidate, "%s", candidate ? candidate : "");
    s->began = now_monotonic();
    atomic_store(&s->checkpoint_done, false);
    s->checkpoint_error = NULL;
    log_info("switchover: running a CHECKPOINT before stopping PostgreSQL%s%s", candidate ? "; candidate " : "",
             candidate ? candidate : "");
    if (pthread_create(&s->thread, NULL, checkpoint_main, h) == 0) {
        s->thread_running = true;
        s->phase = STEPDOWN_CHECKPOINT;
    } else {
        log_warning("cannot start the CHECKPOINT thread: %s; stopping PostgreSQL without it", strerror(errno));
        s->phase = STEPDOWN_CHECKPOINT; /* the next step stops at once */
        s->began -= (usec_t)cfg_of(h)->postgresql.pg_ctl_timeout * USEC_PER_SEC + 1;
    }
    publish(h); /* from now on the health checks no longer count this node as the leader */
}

void stepdown_abort(Ha *h) {
    HaStepdown *s = &h->stepdown;
    if (s->phase == STEPDOWN_IDLE)
        return;
    if (s->phase != STEPDOWN_RELEASED) /* released: handed over, the postmaster still finishing */
        log_warning("the switchover was interrupted");
    s->phase = STEPDOWN_IDLE; /* the thread, if still running, is collected when it ends */
    local_set_stop_patience(h, false);
}

/* The switchover cannot be completed (PostgreSQL did not stop cleanly, the candidate does not have the shutdown
 * checkpoint): the leader key is still ours, so PostgreSQL starts again as the primary and /failover is
 * cleared, as after a switchover whose candidate did not promote. */
static void give_up(Ha *h, const char *why) {
    HaStepdown *s = &h->stepdown;
    s->phase = STEPDOWN_IDLE;
    log_warning("switchover failed: %s; starting PostgreSQL again as the primary", why);
    if (h->view.cluster && !failover_is_empty(&h->view.cluster->failover))
        (void)dcs_set_failover(h->dcs, "{}", h->view.cluster->failover.version);
    usec_t sent = now_monotonic();
    if (h->view.lock_valid_until > sent && dcs_update_leader(h->dcs, NULL) == 1) {
        lease_renewed(h, sent);
        if (enforce_watchdog(h, NULL, 0)) {
            (void)start_postgres(h, true, NULL);
            return;
        }
        log_warning("switchover: the watchdog could not be armed; starting as a replica");
    } else {
        log_warning("switchover: the leader key is no longer ours; starting as a replica");
    }
    demote_finish(h, DEMOTE_GRACEFUL, false);
    (void)start_postgres(h, false, NULL);
}

/* Has a failover target received the shutdown checkpoint? `candidate` names the member ("" = any eligible
 * member; in synchronous mode only a synchronous standby, as Patroni's is_failover_possible()). Its REST
 * API is asked (timeout_ms): its received/replayed position must be past the checkpoint record's start. */
static bool target_has(Ha *h, const char *candidate, long long checkpoint, long timeout_ms) {
    const Cluster *c = h->view.cluster;
    bool sync_only = dyn_of(h)->synchronous_mode != SYNC_OFF && c && c->sync.leader;
    size_t n = 0;
    PeerStatus *peers = probe_members(c, NULL, cfg_of(h)->name, cfg_of(h), timeout_ms, &n);
    bool ok = false;
    for (size_t i = 0; i < n && !ok; i++) {
        const PeerStatus *p = &peers[i];
        if (candidate[0] ? !streq(p->name, candidate) : sync_only && !sync_matches(&c->sync, p->name))
            continue;
        ok = p->reachable && !p->is_primary && !p->nofailover && !p->watchdog_failed && p->wal_position > checkpoint;
    }
    free(peers);
    return ok;
}

static bool candidate_has(Ha *h, long long checkpoint) { return target_has(h, h->stepdown.candidate, checkpoint, 500); }

/* PostgreSQL stopped: hand over once it is known that the candidate can continue from its last record. */
static bool hand_over(Ha *h) {
    HaStepdown *s = &h->stepdown;
    usec_t now = now_monotonic();
    if (!is_lock_holder(h) || h->view.lock_valid_until <= now) {
        /* the lease ran out meanwhile (etcd unreachable): nothing of ours to release */
        s->phase = STEPDOWN_IDLE;
        log_warning("switchover: PostgreSQL stopped, but the leader key is no longer ours");
        demote_finish(h, DEMOTE_GRACEFUL, false);
        return true;
    }
    refresh_controldata(h);
    if (!h->pg.have_controldata || !streq(h->pg.cd.state, "shut down")) {
        give_up(h, "PostgreSQL did not shut down cleanly");
        return true;
    }
    long long checkpoint = h->pg.cd.checkpoint_lsn;
    if (checkpoint <= 0) {
        give_up(h, "pg_control has no checkpoint location");
        return true;
    }
    /* the candidate refreshes its status often during a switchover: ask again every 100 ms for up to 2 s
     * (the lease was renewed this cycle; each probe waits at most 0.5 s), then once per cycle */
    bool has = candidate_has(h, checkpoint);
    usec_t until = now_monotonic() + 2 * USEC_PER_SEC;
    for (int i = 0; i < 20 && !has && now_monotonic() < until; i++) {
        usleep(100 * 1000);
        has = candidate_has(h, checkpoint);
    }
    if (!has) {
        if (now - s->stopped_at > HANDOVER_WAIT) {
            give_up(h, "the candidate did not receive the shutdown checkpoint");
            return true;
        }
        log_info("switchover: waiting for %s to confirm the shutdown checkpoint",
                 s->candidate[0] ? s->candidate : "a candidate");
        usec_t again = now + USEC_PER_SEC;
        if (again < h->next_cycle)
            h->next_cycle = again;
        return false;
    }
    s->phase = STEPDOWN_IDLE;
    log_info("switchover: PostgreSQL stopped after %.1f s and the candidate has its shutdown checkpoint; releasing "
             "the leader key",
             (double)(now - s->began) / USEC_PER_SEC);
    demote_finish_at(h, DEMOTE_GRACEFUL, true, checkpoint);
    /* a replica without upstream until the new leader holds the key (also when paused) */
    (void)start_postgres(h, false, NULL);
    h->next_cycle = now_monotonic();
    return true;
}

/* PostgreSQL is still finishing (its walsenders and archiver), but pg_control says "shut down": the
 * shutdown checkpoint is written and no commit can be acknowledged any more. Spec §4.8: as soon as the
 * candidate has that checkpoint the key is released, without waiting for the postmaster's exit; it starts
 * as a replica once it has exited (STEPDOWN_RELEASED). Otherwise nothing happens: asked again later, and
 * hand_over() decides once the postmaster has exited. */
static bool hand_over_early(Ha *h) {
    HaStepdown *s = &h->stepdown;
    usec_t now = now_monotonic();
    s->next_early_look = now + 100 * USEC_PER_MSEC;
    if (!is_lock_holder(h) || h->view.lock_valid_until <= now)
        return false;
    refresh_controldata(h);
    if (!h->pg.have_controldata || !streq(h->pg.cd.state, "shut down") || h->pg.cd.checkpoint_lsn <= 0 ||
        !target_has(h, s->candidate, h->pg.cd.checkpoint_lsn, 500))
        return false;
    log_info("switchover: PostgreSQL shut down cleanly after %.1f s and the candidate has its shutdown checkpoint; "
             "releasing the leader key while the postmaster finishes",
             (double)(now - s->began) / USEC_PER_SEC);
    s->phase = STEPDOWN_RELEASED;
    local_set_stop_patience(h, false); /* no lease to protect any more: the usual escalation */
    demote_finish_at(h, DEMOTE_GRACEFUL, true, h->pg.cd.checkpoint_lsn);
    publish(h);
    return true;
}

bool stepdown_stopping(const Ha *h) {
    return (h->stepdown.phase == STEPDOWN_STOPPING || h->stepdown.phase == STEPDOWN_RELEASED) && h->pg.inst.pid > 0;
}

bool stepdown_between_cycles(Ha *h) {
    HaStepdown *s = &h->stepdown;
    if (s->phase != STEPDOWN_STOPPING || h->pg.inst.pid <= 0 || now_monotonic() < s->next_early_look)
        return false;
    if (!pg_control_says_shut_down(cfg_of(h)->postgresql.data_dir)) {
        s->next_early_look = now_monotonic() + 20 * USEC_PER_MSEC;
        return false;
    }
    return hand_over_early(h);
}

bool stepdown_step(Ha *h) {
    HaStepdown *s = &h->stepdown;
    join_checkpoint(h, false);
    usec_t now = now_monotonic();
    switch (s->phase) {
    case STEPDOWN_IDLE: return false;
    case STEPDOWN_CHECKPOINT: {
        usec_t limit = (usec_t)cfg_of(h)->postgresql.pg_ctl_timeout * USEC_PER_SEC;
        bool late = now - s->began > limit;
        if (s->thread_running && !late)
            return false;
        if (late && s->thread_running)
            log_warning("switchover: the CHECKPOINT takes longer than pg_ctl_timeout; stopping PostgreSQL anyway");
        if (h->pg.inst.pid <= 0) {
            give_up(h, "PostgreSQL stopped on its own");
            return true;
        }
        /* no escalation to an immediate stop while the lease is ours: a clean stop is what makes the
         * handover safe, and there is no hurry */
        local_set_stop_patience(h, true);
        publish_stopping(h);
        if (stop_postgres_begin(h, PG_STOP_FAST, "switchover") < 0) {
            s->phase = STEPDOWN_IDLE;
            local_set_stop_patience(h, false);
            log_error("switchover: PostgreSQL could not be stopped; keeping the leader key");
            return false;
        }
        s->phase = STEPDOWN_STOPPING;
        return false;
    }
    case STEPDOWN_STOPPING:
        if (h->pg.inst.pid > 0) {
            /* the lease lost: the usual escalation (observe_pg) applies again */
            if (h->view.lock_valid_until <= now) {
                local_set_stop_patience(h, false);
                return false;
            }
            return pg_control_says_shut_down(cfg_of(h)->postgresql.data_dir) && hand_over_early(h);
        }
        s->phase = STEPDOWN_HANDOVER;
        s->stopped_at = now;
        return hand_over(h);
    case STEPDOWN_HANDOVER: return hand_over(h);
    case STEPDOWN_RELEASED:
        if (h->pg.inst.pid > 0)
            return false;
        s->phase = STEPDOWN_IDLE;
        local_set_stop_patience(h, false);
        /* a replica without upstream until the new leader holds the key (also when paused) */
        (void)start_postgres(h, false, NULL);
        h->next_cycle = now_monotonic();
        return true;
    }
    return false;
}

/* Agent shutdown on the lock holder (spec §4.8, Patroni's on_shutdown). PostgreSQL is stopped (fast,
 * escalated after pg_ctl_timeout as any stop) while the lease is renewed every loop_wait: Patroni lets it
 * lapse here, so that a shutdown checkpoint longer than the ttl lets a replica promote without the last
 * WAL. As soon as pg_control shows a clean shutdown and a failover target has received the shutdown
 * checkpoint, /status gets the checkpoint and the key is released, even while the postmaster still
 * finishes (archiving the backlog, say): the replicas race at once instead of after the postmaster's
 * exit. Otherwise the key is released once PostgreSQL has stopped. Returns 0 when PostgreSQL stopped,
 * < 0 when it could not be stopped (the key is kept, as Patroni does). */
int stepdown_shutdown(Ha *h) {
    const Cluster *c = h->view.cluster;
    /* a switchover or failover under way names the only member that may take the key (Patroni's
     * get_failover_candidates()): the release waits for that one */
    char candidate[128] = "";
    if (c && !failover_is_empty(&c->failover) && c->failover.candidate)
        snprintf(candidate, sizeof candidate, "%s", c->failover.candidate);
    if (stop_postgres_begin(h, PG_STOP_FAST, "pgha is shutting down") < 0) {
        log_error("PostgreSQL shutdown failed, leader key not removed");
        return -1;
    }
    usec_t began = now_monotonic(), period = (usec_t)loop_wait_s(h) * USEC_PER_SEC;
    sdn_watchdog_extend(began + ((usec_t)cfg_of(h)->postgresql.pg_ctl_timeout + 40) * USEC_PER_SEC);
    h->pg.stop_began = began; /* a switchover's stop under way: pg_ctl_timeout counts from now */
    publish(h);
    /* the next renewal loop_wait after the last one (at once when that is past) */
    usec_t ttl = (usec_t)ttl_s(h) * USEC_PER_SEC;
    usec_t last = h->view.lock_valid_until > ttl ? h->view.lock_valid_until - ttl : 0;
    usec_t next_renewal = last + period < began ? began : last + period, next_probe = 0;
    bool released = false;
    /* the escalation (immediate after pg_ctl_timeout, SIGKILL 10 s later) ends any stop that can end */
    usec_t give_up_at = began + ((usec_t)cfg_of(h)->postgresql.pg_ctl_timeout + 30) * USEC_PER_SEC;
    while (h->pg.inst.pid > 0) {
        if (now_monotonic() > give_up_at) {
            log_error("PostgreSQL shutdown failed%s", released ? "" : ", leader key not removed");
            return -1;
        }
        struct pollfd p = {.fd = h->pg.inst.pidfd, .events = POLLIN};
        (void)poll(&p, p.fd >= 0 ? 1 : 0, 100);
        LocalState l;
        observe_pg(h, &l); /* notices the exit; escalates a stop that outlasts pg_ctl_timeout */
        if (h->pg.inst.pid <= 0 || released)
            continue;
        usec_t now = now_monotonic();
        if (h->view.lock_valid_until <= now)
            continue; /* the lease ran out (etcd unreachable): nothing of ours to keep or release */
        if (now >= next_renewal) {
            next_renewal = now + period;
            int r = dcs_update_leader(h->dcs, NULL);
            if (r == 1) {
                lease_renewed(h, now);
            } else if (r == 0) {
                log_warning("the leader key is no longer ours while PostgreSQL shuts down");
                lease_lost(h);
            } else {
                log_warning("could not renew the leader lease while PostgreSQL shuts down: %s", dcs_error(h->dcs));
            }
            publish(h);
            if (r == 0)
                continue;
        }
        if (now < next_probe || !pg_control_says_shut_down(cfg_of(h)->postgresql.data_dir))
            continue;
        refresh_controldata(h);
        if (!h->pg.have_controldata || !streq(h->pg.cd.state, "shut down"))
            continue;
        /* the postmaster still runs, but the shutdown checkpoint is written: ask the failover targets */
        next_probe = now + 250 * USEC_PER_MSEC;
        long long checkpoint = h->pg.cd.checkpoint_lsn;
        if (checkpoint > 0 && target_has(h, candidate, checkpoint, 1000)) {
            log_info("PostgreSQL shut down cleanly and %s has its shutdown checkpoint; releasing the leader key "
                     "while the postmaster finishes",
                     candidate[0] ? candidate : "a replica");
            local_set_stop_patience(h, false);
            demote_finish_at(h, DEMOTE_GRACEFUL, true, checkpoint);
            publish(h);
            released = true;
        }
    }
    /* released after the exit only while the lease is ours: a lapsed lease took the key with it, and a key
     * someone else holds now must not get our /status */
    if (!released && is_lock_holder(h) && h->view.lock_valid_until > now_monotonic()) {
        refresh_controldata(h);
        if (h->pg.have_controldata && streq(h->pg.cd.state, "shut down") && h->pg.cd.checkpoint_lsn > 0)
            write_status_optime_only(h, h->pg.cd.checkpoint_lsn);
        if (dcs_delete_leader(h->dcs) == 1)
            log_info("Leader key released");
    }
    log_info("PostgreSQL stopped %.1f s after the shutdown began", (double)(now_monotonic() - began) / USEC_PER_SEC);
    return 0;
}

/* ---- demote-cluster ---- */

/* Patroni's demote('demote-cluster'): a primary whose cluster became a standby cluster stops (fast, without the
 * CHECKPOINT of a switchover) and starts in recovery following the remote primary; the leader key stays ours, so
 * that the replicas keep following this node. The stop is watched across cycles as a switchover's is: decide()
 * sees the long action "demote-cluster" and renews the lease (the watchdog, armed while PostgreSQL may run as the
 * primary, is fed with it); a stop that outlasts pg_ctl_timeout is escalated (observe_pg), and one that reaches
 * the fence point without a renewal is ended at once (fence_expired_lease). */
const char *demote_cluster_action(const Ha *h) { return h->demote_cluster.active ? "demote-cluster" : NULL; }

void demote_cluster_begin(Ha *h, const char *target) {
    HaDemoteCluster *dc = &h->demote_cluster;
    if (dc->active)
        return;
    log_info("demoting to a standby cluster: stopping PostgreSQL and starting it in recovery, keeping the leader "
             "key");
    publish_stopping(h); /* the health checks stop saying "primary" now */
    restart_abort(h);
    stepdown_abort(h);
    if (stop_postgres_begin(h, PG_STOP_FAST, "demote-cluster") < 0) {
        log_error("could not stop PostgreSQL to demote it to a standby leader");
        return;
    }
    snprintf(dc->target, sizeof dc->target, "%s", target ? target : "");
    dc->active = true;
    dc->began = now_monotonic();
    publish(h);
}

void demote_cluster_abort(Ha *h) {
    if (!h->demote_cluster.active)
        return;
    h->demote_cluster.active = false;
    log_warning("demote-cluster was interrupted");
}

bool demote_cluster_step(Ha *h) {
    HaDemoteCluster *dc = &h->demote_cluster;
    if (!dc->active || h->pg.inst.pid > 0)
        return false;
    dc->active = false;
    watchdog_disable(&h->wd); /* a standby leader runs no primary: nothing to fence */
    set_role(h, "demoted");   /* (the start then reports on_role_change, as Patroni's follow()) */
    sync_forget(h);
    usec_t now = now_monotonic();
    if (!is_lock_holder(h) || h->view.lock_valid_until <= now) {
        log_warning("demote-cluster: PostgreSQL stopped, but the leader key is no longer ours; starting as a replica");
        lease_lost(h);
        failsafe_licence_end(h);
        (void)start_postgres(h, false, NULL);
    } else if (!dyn_is_standby_cluster(dyn_of(h))) {
        /* /config was flipped back while it stopped: no remote to follow; the next cycle starts the lock holder
         * as the primary it was (a compare-and-set first), not a standby leader that would promote at once */
        log_info("demote-cluster: PostgreSQL stopped, but the cluster is no longer a standby cluster; the next "
                 "cycle starts it");
    } else {
        log_info("demote-cluster: PostgreSQL stopped after %.1f s; starting it in recovery as the standby leader",
                 (double)(now - dc->began) / USEC_PER_SEC);
        /* the standby leader from the start (not a replica for a cycle) */
        if (start_postgres(h, false, dc->target[0] ? dc->target : NULL) == 0)
            set_role(h, "standby_leader");
    }
    h->next_cycle = now_monotonic();
    return true;
}

/* At shutdown (PostgreSQL stopped or left running when paused): collect the CHECKPOINT thread. */
void stepdown_free(Ha *h) { join_checkpoint(h, true); }
