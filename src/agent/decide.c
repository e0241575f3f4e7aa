#include "agent/decide.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *ha_action_name(HaAction a) {
    static const char *const names[] = {
        [HA_NONE] = "none",
        [HA_FATAL] = "fatal",
        [HA_WRITE_INITIALIZE] = "write_initialize",
        [HA_BOOTSTRAP] = "bootstrap",
        [HA_CLONE] = "clone",
        [HA_START] = "start",
        [HA_ACQUIRE_LOCK] = "acquire_lock",
        [HA_UPDATE_LOCK] = "update_lock",
        [HA_UPDATE_LOCK_ONLY] = "update_lock_only",
        [HA_RELEASE_LOCK] = "release_lock",
        [HA_DEMOTE] = "demote",
        [HA_FOLLOW] = "follow",
        [HA_SWITCHOVER] = "switchover",
        [HA_CLEAR_FAILOVER] = "clear_failover",
        [HA_FAILSAFE] = "failsafe",
    };
    return (size_t)a < ELEMENTSOF(names) && names[a] ? names[a] : "?";
}

const char *demote_mode_name(DemoteMode m) {
    switch (m) {
    case DEMOTE_GRACEFUL: return "graceful";
    case DEMOTE_IMMEDIATE: return "immediate";
    case DEMOTE_IMMEDIATE_NOLOCK: return "immediate-nolock";
    case DEMOTE_OFFLINE: return "offline";
    }
    return "?";
}

static void set(Decision *d, HaAction a, const char *target, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set(Decision *d, HaAction a, const char *target, const char *fmt, ...) {
    d->action = a;
    snprintf(d->target, sizeof d->target, "%s", target ? target : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->message, sizeof d->message, fmt, ap);
    va_end(ap);
}

static bool valid_sysid(const char *s) {
    if (!s || strlen(s) < 10)
        return false;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

static bool paused(const Observation *o) { return o->dyn && o->dyn->pause; }

static bool am_leader(const Observation *o) {
    return o->cluster && o->cluster->leader && streq(o->cluster->leader->name, o->cfg->name);
}

static bool pg_is_primary(const LocalState *l) { return l->pg_running && l->pg_ready && !l->in_recovery; }

/* A primary that does not answer (its status query fails, or it is still starting as a primary): as
 * dangerous as one that does when the lock is not ours; it is fenced (an immediate stop, escalated). */
static bool pg_unanswering_primary(const LocalState *l) { return l->pg_running && !l->pg_ready && l->maybe_primary; }

/* A replica being promoted (it still answers as one, but pg_promote() was called): it may be a primary any
 * moment; without the lock it is stopped at once like a primary (a node still in recovery loses nothing). */
static bool pg_promoting(const LocalState *l) {
    return l->pg_running && l->pg_ready && l->in_recovery && l->maybe_primary;
}

static bool sync_active(const Observation *o) {
    return o->dyn && o->dyn->synchronous_mode != SYNC_OFF && o->cluster && o->cluster->sync.leader &&
           !dyn_is_standby_cluster(o->dyn);
}

static bool nofailover(const PghaConfig *cfg) { return cfg->tags.nofailover; }

static bool standby_cluster(const Observation *o) { return o->dyn && dyn_is_standby_cluster(o->dyn); }

/* How a replication target is named in messages. */
static const char *target_label(const char *t) {
    return t && streq(t, FOLLOW_REMOTE) ? "the remote primary of the standby cluster" : t;
}

static bool failsafe_mode(const Observation *o) { return o->dyn && o->dyn->failsafe_mode; }

bool failsafe_survives(const cJSON *key, const char *me, const FailsafeAnswer *answers, size_t n, char *why,
                       size_t why_len) {
    if (!cJSON_IsObject(key)) {
        snprintf(why, why_len, "no /failsafe key is known");
        return false;
    }
    if (!cJSON_GetObjectItemCaseSensitive(key, me)) {
        snprintf(why, why_len, "the /failsafe key does not name me");
        return false;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, key) {
        if (!e->string || streq(e->string, me))
            continue;
        bool accepted = false;
        for (size_t i = 0; i < n && !accepted; i++)
            accepted = streq(answers[i].name, e->string) && answers[i].accepted;
        if (!accepted) {
            snprintf(why, why_len, "%s did not accept POST /failsafe", e->string);
            return false;
        }
    }
    why[0] = '\0';
    return true;
}

static const PeerStatus *find_peer(const Observation *o, const char *name) {
    for (size_t i = 0; i < o->n_peers; i++)
        if (streq(o->peers[i].name, name))
            return &o->peers[i];
    return NULL;
}

/* Patroni's failover_limitation(): reachable, not nofailover (probe_parse(): failover_priority <= 0
 * counts only when nofailover is not set), watchdog fine. */
static bool peer_eligible(const PeerStatus *p) { return p && p->reachable && !p->nofailover && !p->watchdog_failed; }

/* §4.5 is_failover_possible, for one probed peer: eligible, not a primary, and not lagging more
 * than maximum_lag_on_failover behind /status (a missing optime counts as 0). */
static bool peer_can_take_over(const Observation *o, const PeerStatus *p) {
    if (!peer_eligible(p) || p->is_primary)
        return false;
    const Cluster *c = o->cluster;
    long long optime = c && c->status.has_optime ? c->status.optime : 0;
    return !(o->dyn && ll_sub_sat(optime, p->wal_position) > o->dyn->maximum_lag_on_failover);
}

/* Could another member take over from us? Only `candidate` when given; only /sync members when
 * `sync_only`. */
static bool failover_possible(const Observation *o, const char *candidate, bool sync_only) {
    long long need = 1;
    if (!candidate && sync_active(o) && o->dyn->synchronous_mode == SYNC_QUORUM)
        need = o->cluster->sync.quorum + 1;
    long long found = 0;
    for (size_t i = 0; i < o->n_peers; i++) {
        const PeerStatus *p = &o->peers[i];
        if (streq(p->name, o->cfg->name) || (candidate && !streq(p->name, candidate)))
            continue;
        if (sync_only && !sync_matches(&o->cluster->sync, p->name))
            continue;
        if (peer_can_take_over(o, p) && ++found >= need)
            return true;
    }
    return false;
}

/* The leader of the previous locked view (the "former leader"). */
static const char *former_leader(const Observation *o) {
    if (sync_active(o))
        return o->cluster->sync.leader;
    if (o->last_locked && o->last_locked->leader)
        return o->last_locked->leader->name;
    return NULL;
}

/* §4.5 step 9. `skip` names a member to leave out (the former leader in the manual path). */
static bool core_check(const Observation *o, bool check_lag, const char *skip, char *why, size_t why_len) {
    const LocalState *l = o->local;
    long long mine = l->wal_position;
    const Cluster *c = o->cluster;
    if (check_lag && c && c->status.has_optime && o->dyn &&
        ll_sub_sat(c->status.optime, mine) > o->dyn->maximum_lag_on_failover) {
        snprintf(why, why_len,
                 "my wal position %lld is behind the last known leader position %lld by more "
                 "than maximum_lag_on_failover (%lld)",
                 mine, c->status.optime, o->dyn->maximum_lag_on_failover);
        return false;
    }
    if (o->dyn && o->dyn->check_timeline && !standby_cluster(o)) {
        long long ctl = cluster_timeline(c);
        if (l->timeline <= 0 || (ctl > 0 && l->timeline < ctl)) {
            snprintf(why, why_len, "my timeline %lld is behind the cluster timeline %lld", l->timeline, ctl);
            return false;
        }
    }
    bool sync = sync_active(o);
    bool quorum = sync && o->dyn->synchronous_mode == SYNC_QUORUM;
    long long my_priority = o->cfg->tags.failover_priority;
    const char *former = former_leader(o);
    /* quorum mode: I must see the WAL of /sync.quorum other members of {leader} + voters, none of
     * them ahead of me (votes start at -1 when I am not in that set) */
    long long votes = quorum && !sync_matches(&c->sync, o->cfg->name) ? -1 : 0;
    bool ahead = false;
    for (size_t i = 0; i < o->n_peers; i++) {
        const PeerStatus *p = &o->peers[i];
        if (streq(p->name, o->cfg->name) || (skip && streq(p->name, skip)))
            continue;
        if (sync && o->dyn->synchronous_mode == SYNC_ON && !sync_matches(&c->sync, p->name))
            continue; /* compare only against /sync members */
        if (!peer_eligible(p))
            continue;
        if (p->is_primary) {
            snprintf(why, why_len, "%s is still running as a primary", p->name);
            return false;
        }
        if (p->wal_position > mine) {
            if (sync && streq(p->name, c->sync.leader)) {
                ahead = true;
                continue; /* the former primary may be ahead: it is not a candidate */
            }
            snprintf(why, why_len, "%s has a higher wal position (%lld > %lld)", p->name, p->wal_position, mine);
            return false;
        }
        if (p->wal_position <= 0)
            continue;
        bool voter = quorum && sync_matches(&c->sync, p->name);
        if ((!sync || voter) && p->wal_position == mine && p->failover_priority > my_priority &&
            !streq(p->name, former)) {
            snprintf(why, why_len, "%s has the same wal position and a higher failover_priority (%lld > %lld)", p->name,
                     p->failover_priority, my_priority);
            return false;
        }
        if (voter)
            votes++;
    }
    /* the /sync leader may take the lock back on its own WAL (nobody ahead) only while /sync is
     * still its: not once another member has held the lock since (a promotion whose first /sync
     * write has not happened yet) */
    bool sync_leader_me = streq(c->sync.leader, o->cfg->name) &&
                          !(o->last_locked && o->last_locked->leader &&
                            !strcaseeq(o->last_locked->leader->name, c->sync.leader));
    if (quorum && votes < c->sync.quorum && !(!ahead && sync_leader_me)) {
        snprintf(why, why_len, "not enough synchronous replicas confirm my wal position (%lld of quorum %lld)",
                 votes < 0 ? 0 : votes, c->sync.quorum);
        return false;
    }
    return true;
}

/* §4.7 "on other nodes while unlocked": 1 = healthiest, 0 = not, -1 = not decisive (a stale
 * request in pause; continue with the other rules). */
static int manual_failover_no_leader(const Observation *o, char *why, size_t why_len) {
    const Cluster *c = o->cluster;
    const Failover *f = &c->failover;
    const char *me = o->cfg->name;
    if (f->candidate) {
        if (streq(f->candidate, me))
            return 1;
        if (paused(o)) {
            if (!cluster_get_member(c, f->candidate) && pg_is_primary(o->local)) {
                snprintf(why, why_len, "the failover candidate %s is not running", f->candidate);
                return -1;
            }
            snprintf(why, why_len, "the failover candidate is %s", f->candidate);
            return 0;
        }
        if (sync_active(o) && o->dyn->synchronous_mode == SYNC_ON && !sync_matches(&c->sync, me)) {
            snprintf(why, why_len, "the failover candidate is %s and I am not synchronous", f->candidate);
            return 0;
        }
        if (peer_eligible(find_peer(o, f->candidate))) {
            snprintf(why, why_len, "the failover candidate %s is healthy", f->candidate);
            return 0;
        }
    } else if (paused(o)) {
        snprintf(why, why_len, "a failover in the paused state needs a candidate");
        return 0;
    }
    if (f->leader && streq(f->leader, me)) {
        /* the former leader takes over again only if nobody else can */
        for (size_t i = 0; i < o->n_peers; i++) {
            const PeerStatus *p = &o->peers[i];
            if (!streq(p->name, me) && (!sync_active(o) || sync_matches(&c->sync, p->name)) &&
                peer_can_take_over(o, p)) {
                snprintf(why, why_len, "I am the former leader and %s can take over", p->name);
                return 0;
            }
        }
        return 1;
    }
    return core_check(o, false, f->leader, why, why_len) ? 1 : 0;
}

bool is_healthiest_node(const Observation *o, char *why, size_t why_len) {
    const LocalState *l = o->local;
    const Cluster *c = o->cluster;
    const char *me = o->cfg->name;
    why[0] = '\0';
    if (l->promote_backoff) {
        /* Patroni: "backoff: skip leader race after pre_promote script failure and releasing the lock
         * voluntarily"; here after any failed promotion */
        snprintf(why, why_len, "a promotion failed less than ttl ago");
        return false;
    }
    /* §4.5 step 2: in pause only a manual failover to a named candidate may move the leader */
    if (paused(o) && !nofailover(o->cfg) && c && !failover_is_empty(&c->failover) && !c->failover.scheduled_at) {
        int r = manual_failover_no_leader(o, why, why_len);
        if (r >= 0)
            return r > 0;
    }
    if (l->status_cached && !pg_is_primary(l)) {
        snprintf(why, why_len, "the status query timed out: my wal position is a cached one");
        return false;
    }
    if (pg_is_primary(l)) {
        if (paused(o)) {
            if (!c || !c->has_initialize || !c->initialize[0] || streq(c->initialize, l->sysid))
                return true;
            snprintf(why, why_len, "system ID %s differs from /initialize %s", l->sysid ? l->sysid : "(unknown)",
                     c->initialize);
            return false;
        }
        long long ctl = cluster_timeline(c);
        if (ctl > 0 && l->timeline < ctl) {
            snprintf(why, why_len, "I am a primary on timeline %lld, behind the cluster timeline %lld", l->timeline,
                     ctl);
            return false;
        }
        return true;
    }
    if (paused(o)) {
        snprintf(why, why_len, "the cluster is paused");
        return false;
    }
    if (nofailover(o->cfg)) {
        snprintf(why, why_len, "I am tagged nofailover");
        return false;
    }
    if (l->watchdog_failed && o->cfg->watchdog.mode == WATCHDOG_REQUIRED) {
        snprintf(why, why_len, "the watchdog is required but unusable");
        return false;
    }
    /* §4.5 step 8: a member the leader did not list in a non-empty /failsafe may not have been asked whether
     * the old primary still runs on failsafe; checked before a manual failover too (Patroni checks it after,
     * which lets a named candidate that joined late promote beside a primary running on failsafe) */
    if (failsafe_mode(o) && c && cJSON_IsObject(c->failsafe) && c->failsafe->child &&
        !cJSON_GetObjectItemCaseSensitive(c->failsafe, me)) {
        snprintf(why, why_len, "I am not in the /failsafe key");
        return false;
    }
    if (c && !failover_is_empty(&c->failover)) {
        /* a switchover in synchronous mode (quorum too): only /sync members may race */
        if (c->failover.leader && sync_active(o) && !sync_matches(&c->sync, me)) {
            snprintf(why, why_len, "a switchover is in progress and I am not a synchronous standby");
            return false;
        }
        return manual_failover_no_leader(o, why, why_len) > 0;
    }
    if (sync_active(o) && o->dyn->synchronous_mode == SYNC_ON && !sync_matches(&c->sync, me)) {
        snprintf(why, why_len, "I am not a synchronous standby (%s is the sync leader)", c->sync.leader);
        return false;
    }
    return core_check(o, true, NULL, why, why_len);
}

/* Where a replica should stream from: the replicatefrom member if it exists, else the leader. In a standby
 * cluster the standby leader (and, while nobody holds the key and the cluster is not paused, every member)
 * follows the remote primary (Patroni's _get_node_to_follow). */
static const char *follow_target(const Observation *o) {
    const Cluster *c = o->cluster;
    if (o->cfg->tags.nostream)
        return NULL;
    if (standby_cluster(o) && (am_leader(o) || (c && !c->leader && !paused(o))))
        return FOLLOW_REMOTE;
    if (o->cfg->tags.replicatefrom && cluster_get_member(c, o->cfg->tags.replicatefrom) &&
        !streq(o->cfg->tags.replicatefrom, o->cfg->name))
        return o->cfg->tags.replicatefrom;
    return c && c->leader && !c->leader->corrupt ? c->leader->name : NULL;
}

const char *decide_clone_source(const Cluster *c, const char *me) {
    for (size_t i = 0; i < c->n_members; i++) {
        const Member *m = &c->members[i];
        if (streq(m->name, me) || streq(m->name, c->leader->name))
            continue;
        if (member_tag_bool(m, "clonefrom") && streq(m->state, "running"))
            return m->name;
    }
    return c->leader->name;
}

/* A manual switchover/failover seen by the lock holder (§4.7). Returns true when it decided. */
static bool process_manual_failover(const Observation *o, Decision *d) {
    const Cluster *c = o->cluster;
    const Failover *f = &c->failover;
    const char *me = o->cfg->name;
    if (failover_is_empty(f))
        return false;
    if (f->scheduled_at) {
        if (o->scheduled_stale) {
            set(d, HA_CLEAR_FAILOVER, NULL, "Found a stale failover value, cleaning up: %s", f->scheduled_at);
            return true;
        }
        if (paused(o)) {
            set(d, HA_CLEAR_FAILOVER, NULL, "Can't run a scheduled switchover in the paused state; clearing it");
            return true;
        }
        if (!o->scheduled_due)
            return false; /* waiting for its time; the executor wakes up for it */
    }
    if (f->leader && !streq(f->leader, me)) {
        set(d, HA_CLEAR_FAILOVER, NULL, "leader name does not match: %s != %s; clearing the failover key", f->leader,
            me);
        return true;
    }
    if (f->candidate && streq(f->candidate, me)) {
        set(d, HA_CLEAR_FAILOVER, NULL, "manual failover: I am already the leader, no need to failover");
        return true;
    }
    if (paused(o) && !f->candidate) {
        set(d, HA_CLEAR_FAILOVER, NULL, "manual failover: no candidate given in the paused state");
        return true;
    }
    /* is a failover target possible? */
    bool sync_only = sync_active(o) && f->leader;
    if (!failover_possible(o, f->candidate, sync_only)) {
        set(d, HA_CLEAR_FAILOVER, NULL, "manual failover: no healthy members found, failover is not possible");
        return true;
    }
    d->demote_mode = DEMOTE_GRACEFUL;
    set(d, HA_SWITCHOVER, f->candidate, "%s: demoting myself", f->leader ? "switchover" : "manual failover");
    return true;
}

/* The lock holder of a standby cluster (§4.4 L2, Patroni's enforce_follow_remote_member): it renews the key
 * and stays in recovery following the remote primary; a primary (a normal cluster that standby_cluster was
 * added to) is demoted cleanly and keeps the key (demote-cluster). A switchover or failover inside the standby
 * cluster (Patroni's process_manual_failover_from_leader, same checks as a leader's) hands the key over
 * (HA_SWITCHOVER with standby_leader: the key is released, PostgreSQL keeps running in recovery); while paused
 * the request is left alone, as Patroni does. */
static void decide_standby_leader(const Observation *o, Decision *d) {
    const LocalState *l = o->local;
    const char *me = o->cfg->name;
    const char *pause_prefix = paused(o) ? "PAUSE: " : "";
    const char *t = o->cfg->tags.nostream ? NULL : FOLLOW_REMOTE;
    d->standby_leader = true;
    if (pg_is_primary(l) || pg_promoting(l)) {
        if (paused(o)) {
            d->standby_leader = false;
            set(d, HA_UPDATE_LOCK_ONLY, NULL, "%scontinue to run as primary without lock", pause_prefix);
            return;
        }
        set(d, HA_UPDATE_LOCK, t, "cannot be a real primary in standby cluster");
        return;
    }
    if (!paused(o) && process_manual_failover(o, d)) {
        if (d->action == HA_CLEAR_FAILOVER) /* (the renewal re-points at the remote as usual) */
            snprintf(d->target, sizeof d->target, "%s", t ? t : "");
        return;
    }
    if (!l->following_unknown && streq(t, l->following))
        set(d, HA_UPDATE_LOCK, t, "%sno action. I am (%s), the standby leader with the lock", pause_prefix, me);
    else
        set(d, HA_UPDATE_LOCK, t, "%spromoted self to a standby leader because i had the session lock", pause_prefix);
}

void decide(const Observation *o, Decision *d) {
    *d = (Decision){0};
    const LocalState *l = o->local;
    const Cluster *c = o->cluster;
    const char *me = o->cfg->name;
    const char *pause_prefix = paused(o) ? "PAUSE: " : "";

    if (o->stale_tick) {
        set(d, HA_NONE, NULL, "the HA loop woke up late; observing only this cycle");
        return;
    }

    /* DCS error path (§4.3 step 15) */
    if (!c) {
        if (pg_is_primary(l) && !paused(o) && failsafe_mode(o) && o->failsafe_survived) {
            set(d, HA_FAILSAFE, NULL,
                "continue to run as a leader because failsafe mode is enabled and all members are accessible");
        } else if (pg_is_primary(l) && !paused(o)) {
            d->demote_mode = DEMOTE_OFFLINE;
            set(d, HA_DEMOTE, NULL, "demoting self because DCS is not accessible and I was a leader");
        } else if (pg_unanswering_primary(l) && !paused(o)) {
            d->demote_mode = DEMOTE_IMMEDIATE_NOLOCK;
            set(d, HA_DEMOTE, NULL,
                "demoting self because DCS is not accessible and I was a leader (PostgreSQL does not answer)");
        } else if (pg_promoting(l) && !paused(o)) {
            d->demote_mode = DEMOTE_IMMEDIATE_NOLOCK;
            set(d, HA_DEMOTE, NULL, "demoting self because DCS is not accessible and I was promoting");
        } else {
            set(d, HA_NONE, NULL, "%sDCS is not accessible", pause_prefix);
        }
        return;
    }

    /* a long action is running (§4.3 step 5) */
    if (l->async_action) {
        if (am_leader(o) && strcmp(l->async_action, "bootstrap") != 0) {
            set(d, HA_UPDATE_LOCK_ONLY, NULL, "%s%s in progress", pause_prefix, l->async_action);
        } else if (!am_leader(o) && (pg_is_primary(l) || pg_unanswering_primary(l)) && !paused(o) &&
                   strcmp(l->async_action, "bootstrap") != 0) {
            d->demote_mode = DEMOTE_IMMEDIATE_NOLOCK;
            set(d, HA_DEMOTE, NULL, "%s in progress, but I am a primary without the lock: demoting", l->async_action);
        } else {
            set(d, HA_NONE, NULL, "%s%s in progress", pause_prefix, l->async_action);
        }
        return;
    }

    /* empty data directory: bootstrap or clone (§4.2 B1-B6) */
    if (l->data_dir_error) {
        set(d, HA_NONE, NULL, "data directory is not accessible");
        return;
    }
    if (l->data_dir_empty) {
        if (am_leader(o)) {
            set(d, HA_RELEASE_LOCK, NULL, "releasing the leader key: my data directory is empty");
            return;
        }
        if (paused(o)) {
            set(d, HA_NONE, NULL, "%srunning with empty data directory", pause_prefix);
            return;
        }
        /* (a node whose required watchdog is unusable would lead the new cluster without it: it waits) */
        if (!c->leader && !c->has_initialize && !nofailover(o->cfg) && config_is_set(o->cfg, "bootstrap") &&
            !(l->watchdog_failed && o->cfg->watchdog.mode == WATCHDOG_REQUIRED)) {
            set(d, HA_BOOTSTRAP, NULL,
                standby_cluster(o) ? "trying to bootstrap a new standby leader" : "trying to bootstrap a new cluster");
            return;
        }
        if (c->leader && c->leader->corrupt) {
            set(d, HA_NONE, NULL, "not cloning: the leader key names no member (locked by an unknown holder)");
            return;
        }
        if (c->leader) {
            const Member *lm = c->leader->member;
            if (lm && lm->state && strcmp(lm->state, "running") != 0 &&
                strcmp(decide_clone_source(o->cluster, o->cfg->name), c->leader->name) == 0) {
                set(d, HA_NONE, NULL, "waiting for the leader %s to be running before cloning from it",
                    c->leader->name);
                return;
            }
            const char *src = decide_clone_source(o->cluster, o->cfg->name);
            set(d, HA_CLONE, src, "trying to bootstrap from %s %s", streq(src, c->leader->name) ? "leader" : "replica",
                src);
            return;
        }
        /* B5: a replica method that needs no leader (a restore from a backup), unless a bootstrap is under
         * way (an empty /initialize) */
        if (l->clone_without_leader && !(c->has_initialize && !c->initialize[0])) {
            set(d, HA_CLONE, NULL, "trying to bootstrap (without leader)");
            return;
        }
        set(d, HA_NONE, NULL,
            standby_cluster(o) ? "waiting for standby_leader to bootstrap" : "waiting for leader to bootstrap");
        return;
    }

    /* the data directory belongs to this cluster? (§4.2 step 4) */
    if (!valid_sysid(l->sysid)) {
        set(d, HA_NONE, NULL,
            "data dir for the cluster is not empty, but system ID is invalid; consider doing "
            "reinitialize");
        return;
    }
    if (c->has_initialize && valid_sysid(c->initialize) && !streq(c->initialize, l->sysid)) {
        if (paused(o)) {
            if (am_leader(o))
                set(d, HA_RELEASE_LOCK, NULL, "system ID mismatch: node %s belongs to a different cluster: %s != %s",
                    me, c->initialize, l->sysid);
            else
                set(d, HA_NONE, NULL, "%ssystem ID mismatch: node %s belongs to a different cluster: %s != %s",
                    pause_prefix, me, c->initialize, l->sysid);
            return;
        }
        set(d, HA_FATAL, NULL, "system ID mismatch, node %s belongs to a different cluster: %s != %s", me,
            c->initialize, l->sysid);
        return;
    }
    if ((!c->has_initialize || !valid_sysid(c->initialize)) && !c->leader && !paused(o)) {
        /* an empty /initialize is what a bootstrap that died halfway leaves: as Patroni does, a node
         * with a valid data directory publishes its system identifier instead of waiting forever */
        /* (only on joining: a node that has run here, a standby cluster's replica say, writes it back) */
        if (l->pg_running && l->pg_ready && l->in_recovery && !l->cb_called) {
            set(d, HA_FATAL, NULL,
                "the cluster has no initialize key and this node runs as a replica; "
                "start the primary first");
            return;
        }
        set(d, HA_WRITE_INITIALIZE, NULL, "publishing system identifier %s as /initialize", l->sysid);
        return;
    }

    /* PostgreSQL not running: recover (§4.3 step 10, §4.8) */
    if (!l->pg_running) {
        if (paused(o)) {
            if (am_leader(o)) {
                set(d, HA_RELEASE_LOCK, NULL, "%spostgres is not running: releasing the leader key", pause_prefix);
            } else if (l->just_demoted) {
                /* a demotion (a switchover while paused) restarts PostgreSQL as a replica, as Patroni's
                 * demote() does: pause only keeps pgha from starting or stopping it on its own */
                const char *t = follow_target(o);
                set(d, HA_START, t, "%sstarting after demotion%s%s", pause_prefix, t ? " following " : "",
                    t ? target_label(t) : "");
            } else {
                set(d, HA_NONE, NULL, "%spostgres is not running", pause_prefix);
            }
            return;
        }
        /* primary_start_timeout 0: fail over rather than start the primary again, when someone can take over
         * (Patroni's recover()) */
        if (am_leader(o) && o->dyn && o->dyn->primary_start_timeout == 0 &&
            failover_possible(o, NULL, sync_active(o))) {
            d->demote_mode = DEMOTE_IMMEDIATE;
            set(d, HA_DEMOTE, NULL, "stopped PostgreSQL to fail over after a crash");
            return;
        }
        if (am_leader(o) && standby_cluster(o)) {
            /* the standby leader starts in recovery again, following the remote primary (never as a primary) */
            const char *t = follow_target(o);
            set(d, HA_START, t, "starting as a standby leader%s%s", t ? " following " : "", t ? target_label(t) : "");
            return;
        }
        if (am_leader(o) && l->was_primary) {
            d->as_primary = true;
            set(d, HA_START, NULL, "starting primary after failure");
            return;
        }
        if (am_leader(o)) {
            /* read-only, without upstream; the next cycle promotes (a new timeline) */
            set(d, HA_START, NULL, "starting as readonly because i had the session lock");
            return;
        }
        const char *t = follow_target(o);
        set(d, HA_START, t, "starting as a secondary%s%s", t ? " following " : "", t ? target_label(t) : "");
        return;
    }

    if (l->pg_starting) {
        if (am_leader(o)) {
            if (l->start_timed_out && !paused(o) && failover_possible(o, NULL, sync_active(o))) {
                d->demote_mode = DEMOTE_IMMEDIATE;
                set(d, HA_DEMOTE, NULL, "primary start timed out: failing over");
            } else if (l->start_timed_out && !paused(o)) {
                set(d, HA_UPDATE_LOCK_ONLY, NULL,
                    "primary start has timed out, but continuing to wait because failover is not possible");
            } else {
                set(d, HA_UPDATE_LOCK_ONLY, NULL, "%spostgres is starting", pause_prefix);
            }
        } else if (l->maybe_primary && !paused(o)) {
            /* starting (or not answering) as a primary without the lock: someone else may lead already */
            d->demote_mode = DEMOTE_IMMEDIATE_NOLOCK;
            set(d, HA_DEMOTE, c->leader && !c->leader->corrupt ? c->leader->name : NULL,
                "demoting self because I do not have the lock and PostgreSQL is starting (or not answering) as a "
                "primary");
        } else {
            set(d, HA_NONE, NULL, "%spostgres is starting", pause_prefix);
        }
        return;
    }

    /* unlocked (table U) */
    if (!c->leader && o->failsafe_leader && !streq(o->failsafe_leader, me) && !pg_is_primary(l) && !pg_promoting(l)) {
        /* §4.3 step 1: the leader that asked us in POST /failsafe less than ttl ago counts as the leader (it
         * may still run as the primary on failsafe): no race, follow it */
        const char *t = o->failsafe_leader;
        if (!l->following_unknown && streq(l->following, t)) {
            set(d, HA_NONE, t,
                "%sno action. I am (%s), a secondary, and following a leader (%s) known from POST "
                "/failsafe",
                pause_prefix, me, t);
        } else if (cluster_get_member(c, t) && !o->cfg->tags.nostream && !paused(o)) {
            set(d, HA_FOLLOW, t, "I am (%s), a secondary, and following a leader (%s) known from POST /failsafe", me,
                t);
        } else {
            set(d, HA_NONE, l->following, "%sno action: %s asked in POST /failsafe less than ttl ago; not racing",
                pause_prefix, t);
        }
        return;
    }
    if (!c->leader) {
        char why[256];
        if (is_healthiest_node(o, why, sizeof why)) {
            if (standby_cluster(o) && paused(o) && pg_is_primary(l)) {
                /* paused: a primary is not demoted (Patroni's follow() while paused); it takes the key as it is */
                set(d, HA_ACQUIRE_LOCK, NULL, "%scontinue to run as primary without lock", pause_prefix);
                return;
            }
            if (standby_cluster(o)) {
                /* the standby leader is gone and this is the healthiest member: it becomes the new standby leader,
                 * re-pointed at the remote primary, not promoted (Patroni's enforce_follow_remote_member) */
                d->standby_leader = true;
                set(d, HA_ACQUIRE_LOCK, o->cfg->tags.nostream ? NULL : FOLLOW_REMOTE,
                    "promoted self to a standby leader by acquiring session lock");
                return;
            }
            set(d, HA_ACQUIRE_LOCK, NULL,
                pg_is_primary(l) ? "acquired session lock as a leader"
                                 : "promoted self to leader by acquiring session lock");
            return;
        }
        if (pg_is_primary(l) && !paused(o)) {
            d->demote_mode = DEMOTE_IMMEDIATE_NOLOCK;
            set(d, HA_DEMOTE, NULL, "demoting self because I am not the healthiest node: %s", why);
            return;
        }
        set(d, HA_NONE, NULL, "%sI am (%s), not the healthiest node (%s); waiting for a new leader", pause_prefix, me,
            why);
        return;
    }

    /* locked by us (L1-L3) */
    if (am_leader(o)) {
        if (paused(o) && !pg_is_primary(l)) {
            if (c->failover.candidate && streq(c->failover.candidate, me)) {
                set(d, HA_UPDATE_LOCK_ONLY, NULL, "%swaiting to become the leader after a manual failover",
                    pause_prefix);
                return;
            }
            if (!standby_cluster(o)) {
                set(d, HA_RELEASE_LOCK, NULL, "%sreleasing the leader key: postgres is not running as primary",
                    pause_prefix);
                return;
            }
        }
        if (l->status_cached && standby_cluster(o)) {
            set(d, HA_UPDATE_LOCK_ONLY, NULL, "%sno action: the status query timed out (cached role)", pause_prefix);
            return;
        }
        if (l->status_cached) {
            /* the status query timed out: keep the role PostgreSQL last reported, change nothing */
            if (pg_is_primary(l))
                set(d, HA_UPDATE_LOCK, NULL,
                    "%sno action. I am (%s), the leader with the lock (the status query timed out: cached role)",
                    pause_prefix, me);
            else
                set(d, HA_UPDATE_LOCK_ONLY, NULL,
                    "%snot promoting yet: the status query timed out (cached role: replica)", pause_prefix);
            return;
        }
        if (standby_cluster(o)) {
            decide_standby_leader(o, d);
            return;
        }
        if (pg_is_primary(l) && process_manual_failover(o, d))
            return;
        if (pg_is_primary(l))
            set(d, HA_UPDATE_LOCK, NULL, "%sno action. I am (%s), the leader with the lock", pause_prefix, me);
        else
            set(d, HA_UPDATE_LOCK, NULL, "promoted self to leader because I had the session lock");
        return;
    }

    /* locked by someone else (L5) */
    if (pg_is_primary(l)) {
        if (paused(o)) {
            set(d, HA_NONE, NULL, "%scontinue to run as primary without lock", pause_prefix);
            return;
        }
        d->demote_mode = DEMOTE_IMMEDIATE_NOLOCK;
        set(d, HA_DEMOTE, c->leader->corrupt ? NULL : c->leader->name,
            "demoting self because I do not have the lock and I was a leader");
        return;
    }
    if (c->leader->corrupt) {
        set(d, HA_NONE, l->following, "%sno action: the leader key names no member (locked by an unknown holder)",
            pause_prefix);
        return;
    }
    const char *t = follow_target(o);
    const char *kind = standby_cluster(o) ? "standby leader" : "leader";
    if (l->following_unknown || !streq(t, l->following)) {
        set(d, HA_FOLLOW, t, "%sI am (%s), a secondary, and following a %s (%s)%s", pause_prefix, me, kind,
            c->leader->name, t && !streq(t, c->leader->name) ? " through a cascade" : "");
        return;
    }
    set(d, HA_NONE, t, "%sno action. I am (%s), a secondary, and following a %s (%s)", pause_prefix, me, kind,
        c->leader->name);
}

bool decide_keep_cached_status(int query_result, bool have_cached) { return query_result == -ETIME && have_cached; }

LockFailureAction decide_lock_failure(const LocalState *l, const DynConfig *dyn, const char *me, HaAction action,
                                      const LockFailure *f) {
    bool running_primary = l->pg_ready && !l->in_recovery && !dyn->pause;
    bool promoting = pg_promoting(l) && !dyn->pause;
    /* the DCS error path (§4.3 step 15): a running primary stays one when failsafe mode says it may */
    bool failsafe = f->dcs_error && running_primary && dyn->failsafe_mode && f->failsafe_survived &&
                    !f->while_starting_as_primary;
    if (action == HA_ACQUIRE_LOCK) {
        if (!running_primary && !promoting)
            return LOCK_FAIL_NOTHING;
        if (failsafe)
            return LOCK_FAIL_FAILSAFE;
        if (f->dcs_error)
            return promoting ? LOCK_FAIL_DEMOTE_NOLOCK : LOCK_FAIL_DEMOTE_OFFLINE;
        if (!f->reread)
            return LOCK_FAIL_REREAD;
        return streq(f->holder, me) ? LOCK_FAIL_MINE : LOCK_FAIL_DEMOTE_NOLOCK;
    }
    if (f->while_starting_as_primary && !dyn->pause)
        return LOCK_FAIL_STOP_STARTING;
    if (failsafe)
        return LOCK_FAIL_FAILSAFE;
    if (running_primary)
        return f->dcs_error ? LOCK_FAIL_DEMOTE_OFFLINE : LOCK_FAIL_DEMOTE_NOLOCK;
    /* a primary that does not answer, or a replica being promoted: fenced (immediate), whether the key is
     * lost or etcd is */
    if ((pg_unanswering_primary(l) && !dyn->pause) || promoting)
        return LOCK_FAIL_DEMOTE_NOLOCK;
    return LOCK_FAIL_NOTHING;
}

bool decide_needs_peers(const Observation *o) {
    const Cluster *c = o->cluster;
    const LocalState *l = o->local;
    if (!c || l->data_dir_empty || l->async_action)
        return false;
    bool mine = c->leader && streq(c->leader->name, o->cfg->name);
    if (!l->pg_running) /* a stopped lock holder with primary_start_timeout 0 fails over when someone can */
        return mine && o->dyn && o->dyn->primary_start_timeout == 0 && !paused(o);
    bool failover = !failover_is_empty(&c->failover);
    /* the named candidate of a switchover or failover takes the key without comparing itself with the others
     * (manual_failover_no_leader): no probes, which would wait for a dead former primary's host */
    if (!c->leader && failover && c->failover.candidate && streq(c->failover.candidate, o->cfg->name))
        return false;
    /* a leader known from POST /failsafe: decide() follows it without a race */
    if (!c->leader && o->failsafe_leader && !streq(o->failsafe_leader, o->cfg->name) &&
        !(l->pg_ready && !l->in_recovery))
        return false;
    return (!c->leader && !o->cfg->tags.nofailover) || (mine && l->start_timed_out) || (mine && failover) ||
           (!c->leader && failover);
}
