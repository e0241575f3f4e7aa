/* Synchronous replication on the primary (spec §4.10): which standbys are synchronous, in what order
 * /sync and synchronous_standby_names change so that no acknowledged commit is lost (the plans are
 * sync.c's), and a standby leaving synchronous duty before it stops. */
#include "agent/ha_int.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

bool sync_mode_on(const Ha *h) {
    const DynConfig *d = dyn_of(h);
    return d->synchronous_mode != SYNC_OFF && !dyn_is_standby_cluster(d);
}

/* synchronous_standby_names in the postgresql.conf pgha writes (`params`: the server parameters). With
 * no value known yet (a start), a primary in strict mode gets '*' (ANY 1 (*) in quorum mode), as
 * Patroni's get_server_parameters() does: no commit is acknowledged before a standby confirms it, until
 * sync_process() picks the standbys. */
void sync_config_params(const Ha *h, YNode *params, bool as_primary) {
    if (h->sync.ssn) {
        /* owned by pgha in synchronous mode: the user's value does not apply (spec §3.7.1) */
        if (*h->sync.ssn)
            ynode_set(params, "synchronous_standby_names", ynode_new_str(h->sync.ssn, "sync", 0));
        else
            ynode_remove(params, "synchronous_standby_names");
    } else if (sync_mode_on(h)) {
        const DynConfig *d = dyn_of(h);
        if (as_primary && d->synchronous_mode_strict)
            ynode_set(params, "synchronous_standby_names",
                      ynode_new_str(d->synchronous_mode == SYNC_QUORUM ? "ANY 1 (*)" : "*", "sync", 0));
        else
            ynode_remove(params, "synchronous_standby_names");
    }
}

static void set_ssn(Ha *h, const char *ssn) {
    if (streq(h->sync.ssn, ssn))
        return;
    free(h->sync.ssn);
    h->sync.ssn = xstrdup(ssn);
}

static long long current_flush_lsn(Ha *h) {
    PGconn *c = local_conn(h);
    if (!c)
        return 0;
    char *err = NULL;
    long long v = 0;
    if (pg_current_flush_lsn(c, &v, &err) < 0) {
        log_warning("could not read the current WAL flush position: %s", err);
        free(err);
        return 0;
    }
    return v;
}

/* Write synchronous_standby_names now and reload, so that PostgreSQL uses it before /sync moves.
 * Records the flush LSN from when it took effect: a standby that reaches it holds every commit
 * acknowledged before the change. */
static void apply_ssn(Ha *h, const char *ssn) {
    set_ssn(h, ssn);
    int r = write_configuration(h, true, NULL);
    if (r == 1 && h->pg.inst.pid > 0) {
        log_info("synchronous_standby_names = '%s'", ssn);
        reload_postgres(h);
        usleep(100 * 1000);
        long long f = current_flush_lsn(h);
        /* unknown: nobody counts as caught up until the next cycle records it */
        h->sync.flush = f > 0 ? f : 0;
        /* Commits already waiting are released only when a standby reports again, which it does when
         * WAL arrives (or after wal_receiver_status_interval, 10 s). A tiny WAL record makes every
         * standby reply within the WAL writer's delay instead. */
        PGconn *c = local_conn(h);
        char *err = NULL;
        if (c && pg_emit_wake_message(c, &err) < 0)
            log_debug("could not write a WAL record to wake the standbys: %s", err);
        free(err);
    }
}

static int write_sync_q(Ha *h, long long quorum, const StrList *standbys, long long *version) {
    char *json = cluster_encode_sync(cfg_of(h)->name, quorum, standbys);
    long long nv = 0;
    int r = dcs_set_sync_state(h->dcs, json, *version, &nv);
    if (r == 1) {
        *version = nv;
        log_info("/sync = %s", json);
    } else {
        log_warning("failed to write /sync%s%s", r < 0 ? ": " : " (it changed meanwhile)",
                    r < 0 ? dcs_error(h->dcs) : "");
    }
    free(json);
    return r;
}

static int write_sync(Ha *h, const StrList *standbys, long long *version) {
    return write_sync_q(h, 0, standbys, version);
}

/* Before a replica promotes in synchronous mode: /sync names only us, and the first commits wait
 * for a standby (strict) or go through (not strict) until one is confirmed. */
int sync_before_promote(Ha *h) {
    if (!sync_mode_on(h))
        return 0;
    const DynConfig *d = dyn_of(h);
    h->sync.flush = 0; /* recorded again on the first cycle as primary */
    if (d->synchronous_mode == SYNC_QUORUM) {
        /* /sync stays as it is until after the promotion; the first commits wait for enough of
         * the former voters that the old /sync still covers them (spec §4.10) */
        h->sync.grace_until = now_monotonic() + (usec_t)loop_wait_s(h) * USEC_PER_SEC + 2 * USEC_PER_SEC;
        const SyncState *s = h->view.cluster ? &h->view.cluster->sync : NULL;
        _cleanup_free_ char *ssn = NULL;
        if (s && s->leader) {
            StrList names;
            long long num;
            sync_quorum_pre_promote(s, cfg_of(h)->name, d->synchronous_mode_strict, &names, &num);
            ssn = sync_render_ssn_quorum(&names, num, d->synchronous_mode_strict && names.n == 0);
            strlist_clear(&names);
        } else {
            ssn = xstrdup(d->synchronous_mode_strict ? "ANY 1 (*)" : "");
        }
        set_ssn(h, ssn);
    } else {
        long long version = h->view.cluster && h->view.cluster->sync.present ? h->view.cluster->sync.version : 0;
        StrList none = {0};
        if (write_sync(h, &none, &version) != 1)
            return -EAGAIN;
        set_ssn(h, d->synchronous_mode_strict ? "*" : "");
    }
    /* in force before the promotion, so that no commit is acknowledged unprotected in strict mode */
    if (write_configuration(h, false, h->pg.following[0] ? h->pg.following : NULL) == 1 && h->pg.inst.pid > 0) {
        log_info("synchronous_standby_names = '%s' before the promotion", h->sync.ssn);
        reload_postgres(h);
        usleep(100 * 1000);
    }
    return 0;
}

/* Quorum mode on the primary (spec §4.10): one /sync write and/or one synchronous_standby_names
 * change per cycle, each safe on its own (sync_quorum_plan). */
static void sync_process_quorum(Ha *h) {
    const Cluster *c = h->view.cluster;
    const DynConfig *d = dyn_of(h);
    const char *me = cfg_of(h)->name;
    if (h->sync.flush <= 0)
        h->sync.flush = h->pg.st.flush_lsn > 0 ? h->pg.st.flush_lsn : 0;
    SsnValue cur;
    sync_parse_ssn_full(h->pg.st.synchronous_standby_names, &cur);
    StrList active, confirmed;
    sync_quorum_rows(h->pg.st.replication, c, me, h->pg.st.synchronous_commit, d->synchronous_node_count,
                     d->maximum_lag_on_syncnode, h->pg.st.flush_lsn, h->sync.flush > 0 ? h->sync.flush : LLONG_MAX,
                     &active, &confirmed);
    QuorumInput in = {.me = me,
                      .sync = &c->sync,
                      .ssn = &cur,
                      .active = &active,
                      .confirmed = &confirmed,
                      .wanted = d->synchronous_node_count,
                      .strict = d->synchronous_mode_strict,
                      .grace = now_monotonic() < h->sync.grace_until};
    QuorumPlan plan;
    sync_quorum_plan(&in, &plan);
    long long version = c->sync.present ? c->sync.version : 0;
    if (plan.write_sync && write_sync_q(h, plan.quorum, &plan.voters, &version) != 1)
        goto out;
    if (plan.write_ssn) {
        _cleanup_free_ char *ssn = sync_render_ssn_quorum(&plan.ssn.names, plan.ssn.num, plan.ssn.star);
        apply_ssn(h, ssn);
    }
out:
    quorum_plan_clear(&plan);
    ssn_value_clear(&cur);
    strlist_clear(&active);
    strlist_clear(&confirmed);
}

void sync_process(Ha *h) {
    const Cluster *c = h->view.cluster;
    const DynConfig *d = dyn_of(h);
    const char *me = cfg_of(h)->name;
    if (!c || !h->pg.st.ok || h->pg.st.in_recovery)
        return;
    if (!sync_mode_on(h)) {
        if (h->sync.ssn) {
            /* synchronous mode was switched off: drop /sync, give synchronous_standby_names back */
            if (c->sync.present)
                (void)dcs_delete_sync_state(h->dcs, c->sync.version);
            free(h->sync.ssn);
            h->sync.ssn = NULL;
            (void)write_configuration(h, true, NULL);
            if (h->pg.inst.pid > 0)
                reload_postgres(h);
        }
        return;
    }
    if (!h->sync.ssn)
        h->sync.ssn = xstrdup(h->pg.st.synchronous_standby_names);
    if (d->synchronous_mode == SYNC_QUORUM) {
        sync_process_quorum(h);
        return;
    }
    if (h->sync.flush <= 0)
        h->sync.flush = h->pg.st.flush_lsn > 0 ? h->pg.st.flush_lsn : 0;
    long long version = c->sync.present ? c->sync.version : 0;
    StrList in_sync = {0}; /* /sync standbys, when /sync is ours */
    if (!c->sync.leader) {
        StrList none = {0};
        if (write_sync(h, &none, &version) != 1)
            return;
    } else if (strcasecmp(c->sync.leader, me) != 0) {
        StrList none = {0};
        if (write_sync(h, &none, &version) != 1)
            return;
    } else {
        strlist_copy(&in_sync, &c->sync.members);
    }
    StrList current;
    sync_parse_ssn(h->pg.st.synchronous_standby_names, &current);
    long long count = d->synchronous_node_count;
    StrList picked, confirmed;
    sync_pick(h->pg.st.replication, c, me, h->pg.st.synchronous_commit, count, d->maximum_lag_on_syncnode,
              h->pg.st.flush_lsn, &current, &in_sync, h->sync.flush > 0 ? h->sync.flush : LLONG_MAX, &picked,
              &confirmed);
    /* a standby already in /sync stays confirmed while PostgreSQL reports it sync */
    if (strlist_same_set(&picked, &in_sync) && !strlist_same_set(&in_sync, &confirmed)) {
        if (write_sync(h, &confirmed, &version) == 1) {
            strlist_clear(&in_sync);
            strlist_copy(&in_sync, &confirmed);
        } else
            goto out;
    }
    bool ssn_ok = strlist_same_set(&picked, &current) && (long long)picked.n <= count;
    if (strlist_same_set(&picked, &in_sync) && ssn_ok)
        goto out;
    /* shrink /sync first: a member leaves /sync before it leaves synchronous_standby_names */
    {
        StrList keep = {0};
        for (size_t i = 0; i < in_sync.n; i++)
            if (strlist_contains(&confirmed, in_sync.v[i]))
                strlist_add(&keep, in_sync.v[i]);
        if (keep.n != in_sync.n) {
            if (write_sync(h, &keep, &version) != 1) {
                strlist_clear(&keep);
                goto out;
            }
            strlist_clear(&in_sync);
            in_sync = keep;
        } else {
            strlist_clear(&keep);
        }
    }
    /* then synchronous_standby_names: the picked standbys (or "*" in strict mode without any) */
    {
        _cleanup_free_ char *ssn = sync_render_ssn(&picked, count, d->synchronous_mode_strict);
        apply_ssn(h, ssn);
    }
    /* and /sync grows only with what PostgreSQL confirms as synchronous (next cycles) */
    if (confirmed.n && !strlist_same_set(&confirmed, &in_sync)) {
        StrList grow = {0};
        for (size_t i = 0; i < confirmed.n; i++)
            if (strlist_contains(&current, confirmed.v[i]))
                strlist_add(&grow, confirmed.v[i]);
        if (grow.n && !strlist_same_set(&grow, &in_sync))
            (void)write_sync(h, &grow, &version);
        strlist_clear(&grow);
    }
out:
    strlist_clear(&in_sync);
    strlist_clear(&current);
    strlist_clear(&picked);
    strlist_clear(&confirmed);
}

/* A synchronous standby about to stop asks to be released first (spec §4.10 "leaving sync duty"):
 * it publishes nosync and waits up to 2 x loop_wait until /sync no longer names it, so that the
 * primary moves the duty to another standby instead of finding out when commits start waiting. */
static bool named_in_sync(const Cluster *c, const char *me) {
    return c && c->sync.leader && sync_matches(&c->sync, me) && !strcaseeq(c->sync.leader, me);
}

void leave_sync_duty(Ha *h) {
    const char *me = cfg_of(h)->name;
    if (!sync_mode_on(h) || cfg_of(h)->tags.nosync || !h->pg.st.ok || !h->pg.st.in_recovery || dyn_of(h)->pause)
        return;
    Cluster *n = NULL;
    if (dcs_read_cluster(h->dcs, false, &n) < 0) /* fresh: /sync may have named us a moment ago */
        return;
    bool named = named_in_sync(n, me);
    cluster_free(n);
    if (!named)
        return;
    log_info("asking the leader to release me from synchronous duty before stopping");
    h->sync.leaving = true;
    touch_member(h);
    usec_t until = now_monotonic() + 2 * (usec_t)loop_wait_s(h) * USEC_PER_SEC;
    while (now_monotonic() < until) {
        usleep(200 * 1000);
        n = NULL;
        if (dcs_read_cluster(h->dcs, false, &n) < 0)
            continue;
        named = named_in_sync(n, me);
        cluster_free(n);
        if (!named) {
            log_info("released from synchronous duty");
            return;
        }
    }
    log_warning("still named in /sync after %d s; stopping anyway", 2 * loop_wait_s(h));
}

/* The same without waiting, for a restart that the loop carries on over several cycles:
 * sync_leave_begin() publishes nosync when /sync names us and says whether to wait;
 * sync_leave_named() tells from this cycle's view whether /sync still names us; sync_leave_end()
 * takes nosync back after the restart. */
bool sync_leave_begin(Ha *h) {
    /* paused or not (a paused primary still manages synchronous_standby_names), from a fresh /sync */
    if (!sync_mode_on(h) || cfg_of(h)->tags.nosync || !h->pg.st.ok || !h->pg.st.in_recovery)
        return false;
    Cluster *n = NULL;
    bool named = dcs_read_cluster(h->dcs, false, &n) < 0 ? named_in_sync(h->view.cluster, cfg_of(h)->name)
                                                         : named_in_sync(n, cfg_of(h)->name);
    cluster_free(n);
    if (!named)
        return false;
    log_info("asking the leader to release me from synchronous duty before restarting");
    h->sync.leaving = true;
    touch_member(h);
    return true;
}

bool sync_leave_named(const Ha *h) { return named_in_sync(h->view.cluster, cfg_of(h)->name); }

void sync_leave_end(Ha *h) {
    if (!h->sync.leaving)
        return;
    h->sync.leaving = false;
    touch_member(h);
}

/* Demoted or stopped: pgha no longer manages synchronous_standby_names. */
void sync_forget(Ha *h) {
    free(h->sync.ssn);
    h->sync.ssn = NULL;
}
