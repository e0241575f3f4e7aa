/* The executor: one function per HaAction carries out what decide() chose. What to do when an action
 * does not go as planned (a lost race, a failed renewal) is decided by decide_lock_failure(). */
#include "agent/ha_int.h"
#include "common/sdnotify.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void after_lock_acquired(Ha *h, usec_t sent) {
    lease_renewed(h, sent);
    const Cluster *c = h->view.cluster;
    if (c && c->failover.present && !failover_is_empty(&c->failover)) {
        if (dyn_of(h)->pause && c->failover.leader && c->failover.candidate) {
            /* paused: keep the candidate so that the next cycle does not release the lock mid-promotion */
            char *json = cluster_encode_failover(NULL, c->failover.candidate, c->failover.scheduled_at);
            (void)dcs_set_failover(h->dcs, json, c->failover.version);
            free(json);
        } else {
            (void)dcs_set_failover(h->dcs, "{}", c->failover.version);
        }
    }
}

/* After PostgreSQL stopped for a demotion: the role, the callbacks, and (release) /status with the
 * shutdown checkpoint and the leader key given back. A switchover gets here through stepdown.c. */
void demote_finish(Ha *h, DemoteMode mode, bool release) { demote_finish_at(h, mode, release, -1); }

/* checkpoint: the shutdown checkpoint the caller has just read from pg_control, or -1 to read it here (a
 * handover saves the second pg_controldata: the replicas wait for the key) */
void demote_finish_at(Ha *h, DemoteMode mode, bool release, long long checkpoint) {
    watchdog_disable(&h->wd); /* PostgreSQL no longer runs as the primary: nothing left to fence */
    set_role(h, "demoted");
    if ((unsigned)mode < AGENT_DEMOTE_MODES)
        h->counters.demotions[mode]++;
    sync_forget(h);
    /* no callback here: on_stop ran with the stop, on_role_change (replica) follows the next start (Patroni's
     * demote() and follow()) */
    if (checkpoint < 0) {
        refresh_controldata(h);
        checkpoint = h->pg.cd.checkpoint_lsn;
    }
    if (release) {
        if (mode == DEMOTE_GRACEFUL && checkpoint > 0)
            write_status_optime_only(h, checkpoint);
        bool ff = dcs_suspend_fail_fast(); /* the release is tried even after a failure in this cycle */
        if (dcs_delete_leader(h->dcs) < 0) {
            log_warning("failed to delete the leader key: %s", dcs_error(h->dcs));
        } else {
            log_info("Leader key released");
            view_reread(h); /* this cycle's decisions must not see the key as ours any more */
        }
        dcs_restore_fail_fast(ff);
    }
    lease_lost(h);
    failsafe_licence_end(h);
}

bool may_be_primary(const Ha *h) {
    if (h->pg.inst.pid <= 0)
        return false;
    if (h->pg.st.ok)
        return !h->pg.st.in_recovery || h->pg.promoting;
    return streq(h->pg.role, "primary") || streq(h->pg.role, "promoted") || h->pg.promoting ||
           (h->pg.starting && h->pg.start_as_primary) || h->pg.adopted_primary;
}

usec_t before_stop_limit(const Ha *h, usec_t now) {
    usec_t limit = (usec_t)cfg_of(h)->postgresql.pg_ctl_timeout * USEC_PER_SEC;
    if (!may_be_primary(h) && !is_lock_holder(h))
        return limit;
    usec_t until = h->view.lock_valid_until, fence = lease_fence_at(h), reserve = (usec_t)loop_wait_s(h) * USEC_PER_SEC;
    if (!until || now >= fence)
        return 0; /* no lease left, or the fence point passed: the stop comes now */
    usec_t end = until > reserve ? until - reserve : 0;
    if (fence < end)
        end = fence;
    usec_t left = end > now ? end - now : 0;
    return left < limit ? left : limit;
}

/* Stop being primary at once (the lock is lost, PostgreSQL is unfit, or the DCS is gone). A planned
 * switchover does not come here: stepdown.c stops PostgreSQL while the lease is renewed. */
void demote(Ha *h, DemoteMode mode) {
    bool release = mode == DEMOTE_GRACEFUL || mode == DEMOTE_IMMEDIATE;
    publish_stopping(h);     /* before anything that may block: the health checks stop saying "primary" now */
    restart_abort(h);        /* a restart under way ends here: the demotion decides how PostgreSQL comes back */
    stepdown_abort(h);       /* ... and a switchover's stop becomes this one */
    demote_cluster_abort(h); /* ... and so does a demote-cluster's */
    int sr = stop_postgres(h, mode == DEMOTE_GRACEFUL || mode == DEMOTE_OFFLINE ? PG_STOP_FAST : PG_STOP_IMMEDIATE,
                           demote_mode_name(mode));
    if (sr < 0) {
        log_error("could not stop PostgreSQL for the demotion; keeping the leader key");
        return;
    }
    demote_finish(h, mode, release);
    if (mode == DEMOTE_OFFLINE) {
        /* read-only, without upstream, until the DCS comes back */
        (void)start_postgres(h, false, NULL);
    }
}

bool enforce_watchdog(Ha *h, char *message, size_t message_len) {
    if (dyn_of(h)->pause || (watchdog_is_running(&h->wd) && !watchdog_unsafe(&h->wd)))
        return true;
    WatchdogSettings ws = watchdog_settings(h);
    if (!watchdog_unsafe(&h->wd) && watchdog_activate(&h->wd, &ws))
        return true;
    char buf[128];
    if (!message) {
        message = buf;
        message_len = sizeof buf;
    }
    /* whatever may run as the primary (a promotion under way, a primary that did not answer) is stopped */
    if (may_be_primary(h)) {
        snprintf(message, message_len, "Demoting self because watchdog could not be activated");
        log_info("%s", message);
        demote(h, DEMOTE_IMMEDIATE);
    } else {
        snprintf(message, message_len, "Not promoting self because watchdog could not be activated");
        if (message == buf) /* (a cycle's decision message is logged with the cycle) */
            log_info("%s", message);
        bool ff = dcs_suspend_fail_fast(); /* a release: tried even after a failure in this cycle */
        if (dcs_delete_leader(h->dcs) < 0)
            log_warning("failed to delete the leader key: %s", dcs_error(h->dcs));
        else
            view_reread(h);
        dcs_restore_fail_fast(ff);
        lease_lost(h);
    }
    return false;
}

bool fence_expired_lease(Ha *h) {
    usec_t fence = primary_fence_at(h), until = h->view.lock_valid_until;
    if (!fence || dyn_of(h)->pause)
        return false;
    usec_t now = now_monotonic();
    if (now < fence || !may_be_primary(h))
        return false;
    if (h->failsafe.licence_until >= fence)
        log_error("failsafe mode: no survival decision before the licence ran out (%.1f s ago): stopping "
                  "PostgreSQL now",
                  (double)(now - fence) / USEC_PER_SEC);
    else if (now >= until)
        log_error("the leader lease ran out %.1f s ago without a renewal: stopping PostgreSQL now",
                  (double)(now - until) / USEC_PER_SEC);
    else
        log_error("the leader lease runs out in %.1f s without a renewal: stopping PostgreSQL now",
                  (double)(until - now) / USEC_PER_SEC);
    demote(h, DEMOTE_IMMEDIATE_NOLOCK);
    if (h->pg.inst.pid <= 0) {
        lease_lost(h);
        failsafe_licence_end(h);
        (void)start_postgres(h, false, NULL); /* read-only, without upstream, until the DCS tells more */
    }
    return true;
}

/* pg_control of a stopped node that last ran as a replica */
static bool was_replica_before(Ha *h) { return h->pg.have_controldata && pg_state_was_replica(h->pg.cd.state); }

/* The LSN at which timeline `tl` ended in the cluster's history (/history entries [tl, lsn, ...]). */
static bool history_switch_lsn(const Cluster *c, long long tl, long long *ret) {
    if (!c || !c->has_history || !cJSON_IsArray(c->history))
        return false;
    const cJSON *e;
    cJSON_ArrayForEach(e, c->history) {
        long long etl, lsn;
        if (cJSON_IsArray(e) && json_item_ll(cJSON_GetArrayItem(e, 0), &etl) && etl == tl &&
            json_item_ll(cJSON_GetArrayItem(e, 1), &lsn)) {
            *ret = lsn;
            return true;
        }
    }
    return false;
}

/* Spec §4.8 (Patroni's check of timeline and LSN): a node on an older timeline than the cluster's
 * whose WAL went past the point where the leader's history left that timeline has diverged; it
 * cannot stream from the leader until it is rewound. */
/* Is my_lsn on my_tl past the point where the cluster's history left my_tl? (no log) */
static bool wal_past_switch(Ha *h, long long my_tl, long long my_lsn, long long *ret_switch) {
    const Cluster *c = h->view.cluster;
    long long ctl = cluster_timeline(c);
    if (my_tl <= 0 || my_lsn <= 0 || ctl <= my_tl || !history_switch_lsn(c, my_tl, ret_switch))
        return false;
    return my_lsn > *ret_switch;
}

static bool wal_diverged(Ha *h, long long my_tl, long long my_lsn) {
    long long switch_lsn;
    if (!wal_past_switch(h, my_tl, my_lsn, &switch_lsn))
        return false;
    char mine[32], sw[32];
    pg_format_lsn(my_lsn, mine, sizeof mine);
    pg_format_lsn(switch_lsn, sw, sizeof sw);
    log_warning("my WAL position %s on timeline %lld is past the point %s where the cluster's history left "
                "timeline %lld: it diverged from the leader",
                mine, my_tl, sw, my_tl);
    return true;
}

/* Patroni's can_rewind: use_pg_rewind, pg_control says wal_log_hints = on or data checksums, and the
 * pg_rewind binary runs. */
static bool can_rewind(Ha *h) {
    const PghaConfig *cfg = cfg_of(h);
    if (!(dyn_of(h)->use_pg_rewind || cfg->postgresql.use_pg_rewind))
        return false;
    if (!h->pg.have_controldata || !(h->pg.cd.wal_log_hints || h->pg.cd.data_checksum_version != 0))
        return false;
    return pg_rewind_usable(cfg, h->pg.inst.bin_dir);
}

/* use_pg_rewind is on but pg_rewind cannot be used: said once */
static void warn_rewind_unusable(Ha *h) {
    if ((dyn_of(h)->use_pg_rewind || cfg_of(h)->postgresql.use_pg_rewind) && !h->pg.rewind_unusable_logged) {
        log_warning("use_pg_rewind is on but pg_rewind cannot be used: it needs wal_log_hints = on or data "
                    "checksums, and the pg_rewind binary; a diverged node cannot be repaired");
        h->pg.rewind_unusable_logged = true;
    }
}

/* Patroni's can_rewind_or_reinitialize_allowed */
static bool rewind_or_reinitialize_allowed(Ha *h) {
    return cfg_of(h)->postgresql.remove_data_directory_on_diverged_timelines || can_rewind(h);
}

/* The standby leader of a standby cluster: Patroni checks a node's WAL for divergence only against a leader that
 * runs as a primary (_check_timeline_and_lsn returns at once otherwise). A standby leader replays the remote's
 * timelines and reports them late (its timeline is its last restartpoint's while it restores from an archive):
 * a healthy replica streaming the remote's new timeline would look diverged and be rewound or removed. */
static bool member_is_standby_leader(const Member *m) { return m && m->role && strcmp(m->role, "standby_leader") == 0; }

/* A running replica following the leader: stop it when its WAL diverged, so that the next cycle
 * starts it again through pg_rewind (execute_start). */
static bool check_running_replica(Ha *h) {
    if (h->tilt || dyn_of(h)->pause || h->pg.inst.pid <= 0 || !h->pg.st.ok || !h->pg.st.in_recovery ||
        h->work.task.kind != TASK_NONE || !h->view.cluster || !h->view.cluster->leader ||
        h->view.cluster->leader->corrupt || is_lock_holder(h) ||
        member_is_standby_leader(member_by_name(h, h->view.cluster->leader->name)))
        return false;
    long long lsn = h->pg.st.replay_lsn > 0 ? h->pg.st.replay_lsn : h->pg.st.receive_lsn, tl = h->pg.st.timeline;
    long long switch_lsn;
    if (h->pg.diverged_reported || !wal_past_switch(h, tl, lsn, &switch_lsn))
        return false;
    /* While the WAL receiver is down (its leader just stopped: a switchover) the status query's timeline is
     * pg_control's, which lags the one replayed until a restartpoint: ask the server (IDENTIFY_SYSTEM, as
     * Patroni does). Without that answer only a streaming replica's timeline is trusted. */
    long long itl = 0, ilsn = 0;
    char *err = NULL;
    if (pg_instance_identify_system(&h->pg.inst, &itl, &ilsn, &err) == 0) {
        tl = itl;
    } else {
        /* then the status query's timeline: right while streaming, and once the receiver has not streamed
         * for a ttl (a switchover's gap is seconds; a diverged replica never streams again) */
        usec_t since = h->pg.not_streaming_since;
        bool trusted = h->pg.st.streaming || (since && now_monotonic() - since > (usec_t)ttl_s(h) * USEC_PER_SEC);
        if (!trusted)
            log_info("cannot ask the replica for the timeline it replays (%s); checking again later", err);
        free(err);
        if (!trusted)
            return false;
    }
    if (!wal_diverged(h, tl, lsn))
        return false;
    refresh_controldata(h); /* wal_log_hints and checksums, for can_rewind() */
    if (h->pg.rewind_failed || !rewind_or_reinitialize_allowed(h)) {
        log_error("this replica cannot stream from the leader until it is rebuilt: %s",
                  h->pg.rewind_failed ? "pg_rewind failed"
                                      : "pg_rewind cannot be used (use_pg_rewind, wal_log_hints or data checksums, "
                                        "the pg_rewind binary) and remove_data_directory_on_diverged_timelines is "
                                        "off");
        local_divergence_reported(h);
        return false;
    }
    local_mark_diverged(h);
    (void)stop_postgres(h, PG_STOP_FAST, "the replica's WAL diverged from the leader's timeline");
    return true;
}

typedef enum RewindNeed { REWIND_NOT_NEEDED, REWIND_NEEDED, REWIND_UNKNOWN_YET } RewindNeed;

/* A leader member key that says it runs as a primary: role primary (or Patroni 3.x's master). Its timeline is
 * then the new one (read from its WAL file name right after the promotion). */
static bool leader_is_primary(const Member *m) {
    return m && m->role && (strcmp(m->role, "primary") == 0 || strcmp(m->role, "master") == 0);
}

/* ... and the promotion's checkpoint is done (no `checkpoint_after_promote: false`): pg_rewind needs it. */
static bool leader_promoted(const Member *m) { return leader_is_primary(m) && !m->checkpoint_after_promote_false; }

/* Spec §4.8, Patroni's _check_timeline_and_lsn(): has the WAL of this stopped node diverged from the
 * leader's? Our position from pg_control as Patroni reads it (a former replica: the minimum recovery
 * ending location and its timeline; a former primary, cleanly shut down: the latest checkpoint); the
 * leader's timeline from its member key and its history from /history (once /history reaches that
 * timeline: right after a promotion it may still lag). A higher timeline than the leader's diverged,
 * the same one did not; otherwise the history decides: the switch away from our timeline must lie at
 * or after our position (a replica: replayed not past it; a former primary: the checkpoint before it,
 * and the checkpoint record ends exactly there, pg_waldump), or our timeline is not in it at all. */
/* Our position as Patroni's _get_local_timeline_lsn() reads pg_control: a former replica, its minimum recovery ending
 * location and its timeline; a former primary cleanly shut down, the latest checkpoint. False when it is not known
 * (not shut down cleanly: crash recovery comes first; Patroni makes no decision then). */
static bool local_timeline_lsn(Ha *h, bool *in_recovery, long long *tl, long long *lsn) {
    const ControlData *cd = &h->pg.cd;
    if (strcmp(cd->state, "shut down in recovery") == 0 || strcmp(cd->state, "in archive recovery") == 0) {
        *in_recovery = true;
        *tl = cd->min_recovery_tli;
        *lsn = cd->min_recovery_lsn;
        if (*tl <= 0 || *lsn <= 0) { /* it was a primary when it crashed */
            *in_recovery = false;
            *tl = cd->checkpoint_tli;
            *lsn = cd->checkpoint_lsn;
        }
    } else if (strcmp(cd->state, "shut down") == 0) {
        *in_recovery = false;
        *tl = cd->checkpoint_tli;
        *lsn = cd->checkpoint_lsn;
    } else {
        return false;
    }
    return *tl > 0 && *lsn > 0;
}

/* The history of the leader's timeline decides (its timeline is above ours): the switch away from our timeline
 * must lie at or after our position (a replica: replayed not past it; a former primary: the checkpoint before it,
 * and the checkpoint record ends exactly there, pg_waldump), or our timeline is not in it at all. */
static RewindNeed history_decides(Ha *h, const PgTimelineSwitch *hist, size_t n, bool in_recovery, long long tl,
                                  long long lsn) {
    for (size_t i = 0; i < n; i++) {
        if (hist[i].tli == tl) {
            long long sw = hist[i].lsn;
            if (in_recovery)
                return lsn > sw ? REWIND_NEEDED : REWIND_NOT_NEEDED;
            if (lsn >= sw)
                return REWIND_NEEDED;
            long long end = pg_checkpoint_end(cfg_of(h), h->pg.inst.bin_dir, tl, lsn);
            return end != sw ? REWIND_NEEDED : REWIND_NOT_NEEDED;
        }
        if (hist[i].tli > tl)
            return REWIND_NEEDED;
    }
    return REWIND_NEEDED;
}

/* Spec §4.8, Patroni's _check_timeline_and_lsn(): has the WAL of this stopped node diverged from the
 * leader's? Our position from pg_control (local_timeline_lsn); the leader's timeline from its member key and
 * its history from /history (once /history reaches that timeline: right after a promotion it may still lag).
 * A higher timeline than the leader's diverged, the same one did not; otherwise the history decides. */
static RewindNeed check_timeline_and_lsn(Ha *h, const Member *leader) {
    bool in_recovery;
    long long tl, lsn;
    if (!local_timeline_lsn(h, &in_recovery, &tl, &lsn))
        return REWIND_NOT_NEEDED;
    if (!leader_is_primary(leader) || !leader->has_timeline || leader->timeline <= 0)
        return REWIND_UNKNOWN_YET;
    long long leader_tl = leader->timeline;
    if (tl > leader_tl)
        return REWIND_NEEDED;
    if (tl == leader_tl)
        return REWIND_NOT_NEEDED;
    const Cluster *c = h->view.cluster;
    if (cluster_timeline(c) < leader_tl)
        return REWIND_UNKNOWN_YET; /* /history does not reach the leader's timeline yet */
    PgTimelineSwitch *hist = NULL;
    size_t n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, c->history) {
        long long etl, sw;
        if (!cJSON_IsArray(e) || !json_item_ll(cJSON_GetArrayItem(e, 0), &etl) ||
            !json_item_ll(cJSON_GetArrayItem(e, 1), &sw))
            continue;
        hist = xrealloc(hist, (n + 1) * sizeof *hist);
        hist[n++] = (PgTimelineSwitch){.tli = etl, .lsn = sw};
    }
    RewindNeed need = history_decides(h, hist, n, in_recovery, tl, lsn);
    free(hist);
    return need;
}

/* In a standby cluster Patroni checks a stopped member's WAL against the remote primary
 * (_handle_rewind_or_reinitialize with get_remote_member()): the remote's timeline and history over a replication
 * connection, once it is known not to be in recovery. Only pg_rewind repairs it there (Patroni does not remove the
 * data directory on diverged timelines in a standby cluster), from standby_cluster host:port. A remote that does
 * not answer, answers from recovery, or is another cluster (its system identifier) decides nothing: the node starts
 * as it is. *ret_tli: the remote's timeline (its checkpoint after the promotion is made sure of before pg_rewind). */
static RewindNeed rewind_needed_remote(Ha *h, char *host, size_t host_len, int *port, long long *ret_tli) {
    const char *hst = dyn_standby_str(dyn_of(h), "host");
    bool valid;
    *port = dyn_standby_port(dyn_of(h), &valid);
    *ret_tli = 0;
    if (!hst || !valid || !h->pg.have_controldata)
        return REWIND_NOT_NEEDED; /* an archive-only standby cluster (restore_command): nothing to compare with */
    snprintf(host, host_len, "%s", hst);
    if (!can_rewind(h)) {
        warn_rewind_unusable(h);
        return REWIND_NOT_NEEDED;
    }
    if (h->pg.rewind_failed)
        return REWIND_NOT_NEEDED; /* not again after a failure: it starts as it is (Patroni's REWIND_STATUS.FAILED) */
    bool in_recovery = false;
    long long tl = 0, lsn = 0;
    bool crash = pg_state_needs_crash_recovery(h->pg.cd.state);
    if (!crash && !local_timeline_lsn(h, &in_recovery, &tl, &lsn))
        return REWIND_NOT_NEEDED;
    PgRemoteTimeline rt;
    char *err = NULL;
    if (pg_remote_timeline(cfg_of(h), host, *port, 3, &rt, &err) < 0) {
        log_warning("cannot check my WAL against the remote primary: %s", err);
        free(err);
        return REWIND_NOT_NEEDED;
    }
    RewindNeed need = REWIND_NOT_NEEDED;
    if (rt.in_recovery) {
        log_info("the remote primary %s:%d is in recovery: it cannot be used to check my WAL or for pg_rewind", host,
                 *port);
    } else if (h->pg.cd.sysid[0] && !streq(rt.sysid, h->pg.cd.sysid)) {
        log_error("the remote primary %s:%d is another cluster (system identifier %s, mine %s): not checking my WAL "
                  "against it, nor rewinding from it; check standby_cluster",
                  host, *port, rt.sysid, h->pg.cd.sysid);
    } else if (crash) {
        need = REWIND_NEEDED; /* the rewind task finishes crash recovery first; pg_rewind finds out the rest */
    } else if (tl > rt.tli) {
        need = REWIND_NEEDED;
    } else if (tl < rt.tli) {
        need = history_decides(h, rt.history, rt.n_history, in_recovery, tl, lsn);
    }
    if (need == REWIND_NEEDED && !crash) {
        char pos[32];
        pg_format_lsn(lsn, pos, sizeof pos);
        log_warning("my WAL position %s on timeline %lld diverged from the remote primary's timeline %lld", pos, tl,
                    rt.tli);
    }
    *ret_tli = rt.tli;
    pg_remote_timeline_free(&rt);
    return need;
}

/* Before a stopped node starts as a replica of `target`: does it have to be rewound (or rebuilt) first?
 * Only when rewinding or removing the data directory is possible at all, and only after its WAL is
 * found to have diverged (a planned switchover's former primary, whose shutdown checkpoint the new
 * leader has, did not). */
static RewindNeed rewind_needed(Ha *h, const char *target) {
    const Member *m = member_by_name(h, target);
    if (!m || !h->pg.have_controldata || streq(target, cfg_of(h)->name) || member_is_standby_leader(m))
        return REWIND_NOT_NEEDED;
    if (!rewind_or_reinitialize_allowed(h)) {
        warn_rewind_unusable(h);
        return REWIND_NOT_NEEDED;
    }
    if (h->pg.diverged) /* a running replica found diverged and stopped for it */
        return REWIND_NEEDED;
    /* not shut down cleanly (a crashed primary): its position is known only after crash recovery. With
     * pg_rewind at hand the rewind task finishes crash recovery first and pg_rewind itself finds out
     * whether anything diverged (Patroni: crash recovery, then the check). Without it, nothing is
     * removed on a guess: it starts as a replica, and a running replica found diverged is handled then
     * (check_running_replica()). */
    if (pg_state_needs_crash_recovery(h->pg.cd.state))
        return can_rewind(h) ? REWIND_NEEDED : REWIND_NOT_NEEDED;
    return check_timeline_and_lsn(h, m);
}

static void execute_start(Ha *h, Decision *d) {
    const PghaConfig *cfg = cfg_of(h);
    if (d->as_primary) {
        /* the cached view says the key is ours: make sure before starting a primary (a compare-and-set
         * on etcd, not the keepalive alone: the view may predate a deletion of the key) */
        usec_t sent = now_monotonic();
        int r = dcs_update_leader(h->dcs, NULL);
        if (r != 1) {
            log_warning("could not renew the leader lock (%s): starting as a replica instead",
                        r < 0 ? dcs_error(h->dcs) : "someone else has it");
            lease_lost(h);
            (void)start_postgres(h, false, NULL);
            return;
        }
        lease_renewed(h, sent);
        /* armed before PostgreSQL runs as the primary (spec §4.13): `required` without a watchdog gives the
         * key back and starts read-only, without upstream, until the next cycle tells whom to follow */
        if (!enforce_watchdog(h, d->message, sizeof d->message)) {
            (void)start_postgres(h, false, NULL);
            return;
        }
        (void)start_postgres(h, !was_replica_before(h), NULL);
        return;
    }
    const char *target = d->target[0] ? d->target : NULL;
    /* the WAL is compared with, and rewound from, the leader's, whatever the upstream (a replicatefrom
     * member, a cascade: Patroni checks against cluster.leader too); in a standby cluster the remote primary's */
    const Cluster *c = h->view.cluster;
    const char *leader = target && c && c->leader && !c->leader->corrupt ? c->leader->name : NULL;
    /* pg_waldump and pg_rewind --help may run here (30 s and 10 s at most), the remote's check 2 x 3 s: the
     * systemd watchdog knows */
    sdn_watchdog_extend(now_monotonic() + 60 * USEC_PER_SEC);
    if (target && dyn_is_standby_cluster(dyn_of(h))) {
        /* the standby leader renews its key first (Patroni's recover() does): the remote's check may take a few
         * seconds */
        if (is_lock_holder(h)) {
            usec_t sent = now_monotonic();
            if (dcs_update_leader(h->dcs, h->view.cluster) == 1) {
                lease_renewed(h, sent);
            } else {
                lease_lost(h);
                view_reread_cached(h); /* (not the standby leader's role below) */
            }
        }
        char host[256];
        int port;
        long long tli;
        if (rewind_needed_remote(h, host, sizeof host, &port, &tli) == REWIND_NEEDED) {
            bool crash = pg_state_needs_crash_recovery(h->pg.cd.state);
            log_info("my WAL diverged from the remote primary's: running pg_rewind from %s:%d%s", host, port,
                     crash ? " (after crash recovery)" : "");
            write_pgpass(h);
            set_state(h, "running custom bootstrap script");
            task_start_rewind(h, TASK_REWIND, host, port, crash, tli); /* its checkpoint after the promotion first */
            return;
        }
        if (start_postgres(h, false, target) == 0 && is_lock_holder(h))
            set_role(h, "standby_leader");
        return;
    }
    RewindNeed need = leader ? rewind_needed(h, leader) : REWIND_NOT_NEEDED;
    if (need == REWIND_UNKNOWN_YET) { /* (the cycle's message: nothing starts) */
        snprintf(d->message, sizeof d->message,
                 "waiting for the leader %s to finish its promotion (and publish its timeline history) before "
                 "checking whether my WAL diverged",
                 leader);
        return;
    }
    if (need == REWIND_NEEDED) {
        const Member *m = member_by_name(h, leader);
        if (can_rewind(h)) {
            if (!leader_promoted(m)) {
                snprintf(d->message, sizeof d->message,
                         "waiting for the leader %s to finish its promotion before pg_rewind", leader);
                return;
            }
            char host[256];
            int port;
            if (member_host_port(m, host, sizeof host, &port)) {
                bool crash = pg_state_needs_crash_recovery(h->pg.cd.state);
                log_info("my WAL diverged from the leader's: running pg_rewind from %s%s", leader,
                         crash ? " (after crash recovery)" : "");
                write_pgpass(h);
                set_state(h, "running custom bootstrap script");
                task_start(h, TASK_REWIND, host, port, crash);
                return;
            }
        } else if (cfg->postgresql.remove_data_directory_on_diverged_timelines) {
            log_warning("my WAL diverged from the leader's and remove_data_directory_on_diverged_timelines is set: "
                        "removing the data directory to clone it again");
            remove_data_directory(h);
            return;
        }
    }
    /* the lock holder of a standby cluster starts as the standby leader, not as a replica for a cycle */
    if (start_postgres(h, false, target) == 0 && is_lock_holder(h) && dyn_is_standby_cluster(dyn_of(h)))
        set_role(h, "standby_leader");
}

static void execute_follow(Ha *h, const char *target) {
    /* PostgreSQL 13+ reloads primary_conninfo and primary_slot_name without a restart */
    if (write_configuration(h, false, target) < 0)
        return;
    if (h->pg.inst.major >= 13 && h->pg.inst.pid > 0) {
        reload_postgres(h);
    } else if (h->pg.inst.pid > 0) {
        (void)stop_postgres(h, PG_STOP_FAST, "restart to follow a new upstream");
        (void)start_postgres(h, false, target);
    }
}

/* ---- one function per action ---- */

static void do_none(Ha *h, Decision *d, const LocalState *l) {
    (void)d;
    (void)l;
    (void)check_running_replica(h);
}

static void do_fatal(Ha *h, Decision *d, const LocalState *l) {
    (void)l;
    log_critical("%s", d->message);
    h->fatal = true;
}

static void do_write_initialize(Ha *h, Decision *d, const LocalState *l) {
    (void)d;
    if (dcs_initialize(h->dcs, !(h->view.cluster && h->view.cluster->has_initialize), l->sysid) < 0)
        log_warning("failed to write /initialize: %s", dcs_error(h->dcs));
}

static void do_bootstrap(Ha *h, Decision *d, const LocalState *l) {
    (void)d;
    (void)l;
    int r = dcs_initialize(h->dcs, true, "");
    if (r == 1) {
        log_info("Lock owner: None; I am %s", cfg_of(h)->name);
        if (dyn_is_standby_cluster(dyn_of(h))) {
            log_info("trying to bootstrap a new standby leader");
            standby_bootstrap_begin(h);
            return;
        }
        log_info("trying to bootstrap a new cluster");
        set_state(h,
                  cfg_of(h)->bootstrap.method_section ? "running custom bootstrap script" : "initializing new cluster");
        bootstrap_begin(h);
    } else if (r == 0) {
        log_info("failed to acquire initialize lock");
    } else {
        log_warning("bootstrap: %s", dcs_error(h->dcs));
    }
}

static void do_clone(Ha *h, Decision *d, const LocalState *l) {
    (void)l;
    if (!d->target[0]) { /* B5: a replica method that needs no leader */
        write_pgpass(h);
        set_state(h, "creating replica");
        task_start(h, TASK_CLONE, NULL, 0, false);
        return;
    }
    const Member *m = member_by_name(h, d->target);
    char host[256];
    int port;
    if (!m || !member_host_port(m, host, sizeof host, &port)) {
        log_warning("cannot clone from %s: its connection address is unknown", d->target);
        return;
    }
    write_pgpass(h);
    set_state(h, "creating replica");
    task_start(h, TASK_CLONE, host, port, false);
}

static void do_start(Ha *h, Decision *d, const LocalState *l) {
    (void)l;
    /* PostgreSQL does not run: nothing to fence until it runs as the primary again (Patroni's recover()) */
    if (!d->as_primary)
        watchdog_disable(&h->wd);
    execute_start(h, d);
}

/* The lock is ours: a replica promotes (after /sync allows it). A failed promotion (pre_promote, or
 * PostgreSQL's promotion itself) gives the key back and keeps this node out of the race for a ttl, as
 * Patroni does after releasing the key voluntarily: the other members get their chance first. */
static void promote_with_lock(Ha *h, Decision *d) {
    if (sync_before_promote(h) < 0) {
        snprintf(d->message, sizeof d->message, "postponing the promotion: /sync could not be updated");
    } else if (promote_postgres(h) < 0) {
        h->promote_failed_at = now_monotonic();
        bool ff = dcs_suspend_fail_fast(); /* a release: tried even after a failure in this cycle */
        (void)dcs_delete_leader(h->dcs);
        dcs_restore_fail_fast(ff);
        lease_lost(h);
        snprintf(d->message, sizeof d->message,
                 "the promotion failed: released the leader key; not racing for it for ttl (%d s)", ttl_s(h));
    }
}

/* What decide_lock_failure() chose, carried out. */
/* fence: the primary's fence point before the failure (primary_fence_at()), the failsafe licence's start. */
static void on_lock_failure(Ha *h, Decision *d, const LocalState *l, LockFailure *f, usec_t sent, usec_t fence) {
    LockFailureAction a = decide_lock_failure(l, dyn_of(h), cfg_of(h)->name, d->action, f);
    if (a == LOCK_FAIL_REREAD) {
        /* our cache may lag our own write: ask etcd whose key it is before demoting */
        char *holder = NULL;
        if (dcs_get_raw(h->dcs, "leader", &holder, NULL) != 1) {
            free(holder);
            holder = NULL;
        }
        f->reread = true;
        f->holder = holder;
        a = decide_lock_failure(l, dyn_of(h), cfg_of(h)->name, d->action, f);
        free(holder);
        f->holder = NULL;
    }
    const char *why = f->dcs_error ? dcs_error(h->dcs) : NULL;
    char *why_copy = why ? xstrdup(why) : NULL;
    if (a == LOCK_FAIL_DEMOTE_OFFLINE && !f->lease_over && dyn_of(h)->failsafe_mode && fence > now_monotonic()) {
        /* the DCS error path (§4.3 step 15) with failsafe mode: ask the members before demoting */
        log_error("failed to update the leader lock%s%s: trying failsafe mode", why ? ": " : "", why ? why : "");
        failsafe_carry_licence(h, fence);
        f->failsafe_survived = failsafe_check(h, primary_fence_at(h));
        f->lease_over = !f->failsafe_survived && now_monotonic() >= primary_fence_at(h); /* no time for a fast stop */
        a = decide_lock_failure(l, dyn_of(h), cfg_of(h)->name, d->action, f);
    }
    why = why_copy;
    switch (a) {
    case LOCK_FAIL_FAILSAFE:
        failsafe_licence_extend(h);
        d->action = HA_FAILSAFE; /* no slot or configuration work on a primary running on failsafe */
        publish(h);
        snprintf(d->message, sizeof d->message,
                 "continue to run as a leader because failsafe mode is enabled and all members are accessible");
        break;
    case LOCK_FAIL_REREAD: /* (not returned twice) */
    case LOCK_FAIL_NOTHING:
        if (d->action != HA_ACQUIRE_LOCK)
            log_warning("failed to update the leader lock%s%s", why ? ": " : "", why ? why : "");
        break;
    case LOCK_FAIL_MINE:
        after_lock_acquired(h, sent);
        snprintf(d->message, sizeof d->message, "the leader lock is already mine");
        (void)enforce_watchdog(h, d->message, sizeof d->message); /* a primary keeps running: armed */
        view_reread_cached(h);
        break;
    case LOCK_FAIL_STOP_STARTING:
        log_error("failed to update the leader lock while starting as primary: stopping PostgreSQL");
        (void)stop_postgres(h, PG_STOP_IMMEDIATE, "lost the lock while starting");
        break;
    case LOCK_FAIL_DEMOTE_NOLOCK:
    case LOCK_FAIL_DEMOTE_OFFLINE:
        if (d->action != HA_ACQUIRE_LOCK)
            log_error("failed to update the leader lock%s%s: demoting", why ? ": " : "", why ? why : "");
        if (a == LOCK_FAIL_DEMOTE_OFFLINE && f->lease_over) {
            /* no time left for a fast stop: the lease ends (fence_expired_lease() does the same) */
            demote(h, DEMOTE_IMMEDIATE_NOLOCK);
            if (h->pg.inst.pid <= 0)
                (void)start_postgres(h, false, NULL);
            break;
        }
        demote(h, a == LOCK_FAIL_DEMOTE_OFFLINE ? DEMOTE_OFFLINE : DEMOTE_IMMEDIATE_NOLOCK);
        break;
    }
    free(why_copy);
}

/* The lock holder of a standby cluster after its lock was acquired or renewed (decision.standby_leader): a
 * primary is demoted (demote_cluster_begin, stepdown.c); a running replica is pointed at the remote primary and is the standby
 * leader from then on (Patroni's follow() with a RemoteMember: role standby_leader, on_role_change). */
static void standby_leader_step(Ha *h, Decision *d, const LocalState *l) {
    const char *target = d->target[0] ? d->target : NULL;
    if (!l->pg_ready || l->status_cached)
        return; /* starting, or not answering: the next cycle looks again */
    if (!l->in_recovery) {
        if (!dyn_of(h)->pause) /* paused: it continues to run as primary (decide() says so) */
            demote_cluster_begin(h, target);
        return;
    }
    if (h->pg.promoting)
        return; /* a promotion already sent finishes first; the next cycle demotes it */
    if (!h->pg.following_set || !streq(h->pg.following, target ? target : ""))
        execute_follow(h, target);
    if (!streq(h->pg.role, "standby_leader")) {
        set_role(h, "standby_leader");
        run_callback(h, "on_role_change", "standby_leader");
    }
}

/* A switchover or failover inside a standby cluster, seen by the standby leader after its renewal: nothing to
 * stop or flush (PostgreSQL is in recovery, every member replays the remote's WAL), so the key is released
 * with PostgreSQL left running, still following the remote until the new standby leader holds the key, then
 * following it (Patroni stops PostgreSQL for a graceful demote here: a restart that a standby does not need). */
static void standby_leader_handover(Ha *h, Decision *d, const LocalState *l) {
    if (!l->pg_ready || l->status_cached || !l->in_recovery || h->pg.promoting) {
        log_info("%s: postponed, PostgreSQL is not running in recovery", d->message);
        return; /* the next cycle decides again */
    }
    log_info("%s", d->message);
    bool ff = dcs_suspend_fail_fast(); /* the release is tried even after a failure in this cycle */
    int r = dcs_delete_leader(h->dcs);
    dcs_restore_fail_fast(ff);
    if (r < 0) {
        log_warning("failed to delete the leader key: %s", dcs_error(h->dcs));
        return; /* still the standby leader: the next cycle renews and decides again */
    }
    log_info("Leader key released");
    lease_lost(h);
    /* the remote's slot (standby_cluster.primary_slot_name) is the new standby leader's from now on: let go of it
     * at once (its WAL receiver would otherwise find the slot active and try again only after
     * wal_retrieve_retry_interval), still streaming from the remote, without the slot, and restoring from its
     * archive until the new standby leader holds the key; so do the replicas cascading from it */
    const char *slot = dyn_standby_str(dyn_of(h), "primary_slot_name");
    if (slot && use_slots(h) && !cfg_of(h)->tags.nostream) {
        _cleanup_free_ char *name = slot_name_from_member_name(slot);
        log_info("letting go of the remote's replication slot %s for the new standby leader", name);
        execute_follow(h, FOLLOW_REMOTE_NO_SLOT);
    }
    view_reread(h); /* the rest of the cycle must not see the key as ours */
    set_role(h, "replica");
    run_callback(h, "on_role_change", "replica");
    publish(h); /* /standby-leader answers 503 now; the key's watch wakes the loop for the new holder */
}

static void do_acquire_lock(Ha *h, Decision *d, const LocalState *l) {
    usec_t sent = now_monotonic();
    int r = dcs_attempt_to_acquire_leader(h->dcs);
    if (r == 1) {
        after_lock_acquired(h, sent);
        if (d->standby_leader) { /* no watchdog: a standby leader is no primary to fence */
            standby_leader_step(h, d, l);
        } else if (enforce_watchdog(h, d->message, sizeof d->message) && l->in_recovery) {
            promote_with_lock(h, d); /* (with the view decide() judged: /sync's version, the failover key) */
        }
        /* then the rest of the cycle sees the key as it is now (the cache has our own writes): its end would
         * otherwise take a new standby leader for a replica until the next cycle (its role and callbacks
         * flapping), and an agent stopped now would not release the key */
        view_reread_cached(h);
        return;
    }
    if (r == 0)
        snprintf(d->message, sizeof d->message, "failed to acquire the leader lock: another member was faster");
    else
        snprintf(d->message, sizeof d->message, "failed to acquire the leader lock: %s", dcs_error(h->dcs));
    LockFailure f = {.dcs_error = r < 0};
    on_lock_failure(h, d, l, &f, sent, primary_fence_at(h));
}

/* HA_UPDATE_LOCK, HA_UPDATE_LOCK_ONLY, HA_SWITCHOVER, HA_CLEAR_FAILOVER: renew, then the action's own part;
 * the leader's per-cycle work (slots, /status, /history, synchronous replication) follows a renewal. */
static void do_update_lock(Ha *h, Decision *d, const LocalState *l) {
    /* before a promotion, a one-off: the compare-and-set on etcd, not the keepalive alone that the cached
     * view would allow (it may predate a deletion of the key) */
    bool promote = d->action == HA_UPDATE_LOCK && !d->standby_leader && l->pg_ready && l->in_recovery &&
                   !h->pg.promoting;
    usec_t sent = now_monotonic();
    int r = dcs_update_leader(h->dcs, promote ? NULL : h->view.cluster);
    if (r != 1) {
        usec_t fence = primary_fence_at(h);
        bool over = fence && now_monotonic() >= fence;
        lease_lost(h);
        LockFailure f = {.dcs_error = r < 0,
                         .while_starting_as_primary = l->pg_starting && h->pg.start_as_primary,
                         .lease_over = over};
        on_lock_failure(h, d, l, &f, sent, fence);
        return;
    }
    lease_renewed(h, sent);
    if (dyn_of(h)->failsafe_mode)
        failsafe_update_key(h);     /* right after the lock update (§4.12) */
    if (d->action != HA_SWITCHOVER) /* (a switchover publishes its own at once: no longer the primary) */
        publish(h);                 /* the new fence point for the health checks now, not at the cycle's end */
    /* the lock holder runs (or is about to run) the primary: armed first (Patroni's enforce_primary_role);
     * the other renewals too while PostgreSQL may run as the primary (a reload may have disarmed it) */
    bool primary = !d->standby_leader &&
                   (d->action == HA_UPDATE_LOCK || (d->action != HA_SWITCHOVER && may_be_primary(h)));
    if (primary && !enforce_watchdog(h, d->message, sizeof d->message))
        return;
    if (d->standby_leader) {
        if (d->action == HA_SWITCHOVER) {
            standby_leader_handover(h, d, l);
            return;
        }
        if (d->action == HA_CLEAR_FAILOVER && h->view.cluster) {
            log_info("%s", d->message);
            (void)dcs_set_failover(h->dcs, "{}", h->view.cluster->failover.version);
        }
        standby_leader_step(h, d, l);
        /* /status: the standby leader's WAL position and its slots (Patroni's update_lock) */
        if (h->pg.st.ok && h->pg.st.in_recovery && !h->pg.status_cached && h->pg.inst.pid > 0 && !h->pg.starting) {
            slots_sync(h);
            update_status(h);
            /* /history from the timeline history files the remote's timeline switches left in pg_wal: a
             * stopped replica checks its WAL against it before it starts (check_timeline_and_lsn) */
            update_history(h);
        }
        return;
    }
    if (promote) {
        promote_with_lock(h, d);
    } else if (d->action == HA_SWITCHOVER) {
        log_info("%s", d->message);
        stepdown_begin(h, d->target[0] ? d->target : NULL); /* the lease is renewed until it is done */
    } else if (d->action == HA_CLEAR_FAILOVER && h->view.cluster) {
        log_info("%s", d->message);
        (void)dcs_set_failover(h->dcs, "{}", h->view.cluster->failover.version);
    }
    /* (not while stepping down: /sync and the slots stay as they are until the handover) */
    /* (nor on a cached status: the slots, /status and /sync would follow stale positions) */
    if (l->pg_ready && !l->in_recovery && !l->status_cached && !stepdown_action(h)) {
        slots_sync(h); /* before /status: it publishes the slots' positions */
        update_status(h);
        update_history(h);
        sync_process(h);
    }
}

static void do_release_lock(Ha *h, Decision *d, const LocalState *l) {
    (void)d;
    (void)l;
    bool ff = dcs_suspend_fail_fast(); /* a release: tried even after a failure in this cycle */
    (void)dcs_delete_leader(h->dcs);
    dcs_restore_fail_fast(ff);
    lease_lost(h);
}

static void do_demote(Ha *h, Decision *d, const LocalState *l) {
    (void)l;
    log_info("%s", d->message);
    demote(h, d->demote_mode);
}

static void do_failsafe(Ha *h, Decision *d, const LocalState *l) {
    (void)d;
    (void)l;
    failsafe_licence_extend(h);
    publish(h); /* the health checks see the new licence now */
}

static void do_follow(Ha *h, Decision *d, const LocalState *l) {
    (void)l;
    if (!check_running_replica(h))
        execute_follow(h, d->target[0] ? d->target : NULL);
}

typedef void (*ActionFn)(Ha *h, Decision *d, const LocalState *l);

static const ActionFn actions[] = {
    [HA_NONE] = do_none,
    [HA_FATAL] = do_fatal,
    [HA_WRITE_INITIALIZE] = do_write_initialize,
    [HA_BOOTSTRAP] = do_bootstrap,
    [HA_CLONE] = do_clone,
    [HA_START] = do_start,
    [HA_ACQUIRE_LOCK] = do_acquire_lock,
    [HA_UPDATE_LOCK] = do_update_lock,
    [HA_UPDATE_LOCK_ONLY] = do_update_lock,
    [HA_RELEASE_LOCK] = do_release_lock,
    [HA_DEMOTE] = do_demote,
    [HA_FOLLOW] = do_follow,
    [HA_SWITCHOVER] = do_update_lock,
    [HA_CLEAR_FAILOVER] = do_update_lock,
    [HA_FAILSAFE] = do_failsafe,
};

void execute(Ha *h, Decision *d, const LocalState *l) {
    if ((size_t)d->action < ELEMENTSOF(actions) && actions[d->action])
        actions[d->action](h, d, l);
}
