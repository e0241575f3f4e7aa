/* What this node tells others: its member key, the leader's /status and /history, and the snapshot
 * the REST API answers from. */
#include "agent/ha_int.h"

#include <string.h>
#include <time.h>

#include "agent/snapshot.h"

static char *conn_url(const Ha *h) {
    const PghaConfig *cfg = cfg_of(h);
    _cleanup_free_ char *host = NULL;
    int port = 5432;
    if (cfg->postgresql.connect_address) {
        (void)parse_host_port(cfg->postgresql.connect_address, 5432, &host, &port);
    } else {
        StrList addrs = {0};
        (void)parse_listen(cfg->postgresql.listen, &addrs, &port);
        host = xstrdup(addrs.n ? addrs.v[0] : "127.0.0.1");
        strlist_clear(&addrs);
    }
    if (host && strchr(host, ':'))
        return xasprintf("postgres://[%s]:%d/%s", host, port, cfg->postgresql.database);
    return xasprintf("postgres://%s:%d/%s", host ? host : "127.0.0.1", port, cfg->postgresql.database);
}

char *member_conn_url(const Ha *h) { return conn_url(h); }

char *api_url(const Ha *h) {
    const PghaConfig *cfg = cfg_of(h);
    return xasprintf("%s://%s/patroni", cfg->restapi.certfile ? "https" : "http", cfg->restapi.connect_address);
}

/* Effective tags as Patroni publishes them: predefined booleans only when true. */
static cJSON *effective_tags(const Ha *h) {
    const PghaConfig *cfg = cfg_of(h);
    cJSON *t = cJSON_CreateObject();
    static const char *const bool_tags[] = {"nofailover", "clonefrom", "noloadbalance", "nosync", "nostream"};
    const YNode *all = cfg->tags.all;
    for (size_t i = 0; all && i < all->n; i++) {
        const char *k = all->keys[i];
        bool predefined = false;
        for (size_t b = 0; b < ELEMENTSOF(bool_tags); b++)
            if (strcmp(k, bool_tags[b]) == 0)
                predefined = true;
        if (predefined) {
            bool v = false;
            if (strcmp(k, "nofailover") == 0)
                v = cfg->tags.nofailover;
            else if (strcmp(k, "clonefrom") == 0)
                v = cfg->tags.clonefrom;
            else if (strcmp(k, "noloadbalance") == 0)
                v = cfg->tags.noloadbalance;
            else if (strcmp(k, "nosync") == 0)
                v = cfg->tags.nosync || h->sync.leaving;
            else
                v = cfg->tags.nostream;
            if (v)
                cJSON_AddTrueToObject(t, k);
            continue;
        }
        if (strcmp(k, "failover_priority") == 0 || strcmp(k, "sync_priority") == 0) {
            char buf[32];
            bool failover = strcmp(k, "failover_priority") == 0;
            snprintf(buf, sizeof buf, "%lld", failover ? cfg->tags.failover_priority : cfg->tags.sync_priority);
            cJSON_AddItemToObject(t, k, cJSON_CreateRaw(buf));
            continue;
        }
        if (all->items[i]->type != Y_NULL)
            cJSON_AddItemToObject(t, k, ynode_to_json(all->items[i]));
    }
    if (config_is_set(cfg, "tags.failover_priority") && !cJSON_GetObjectItemCaseSensitive(t, "nofailover") &&
        cfg->tags.nofailover)
        cJSON_AddTrueToObject(t, "nofailover");
    if (config_is_set(cfg, "tags.sync_priority") && !cJSON_GetObjectItemCaseSensitive(t, "nosync") && cfg->tags.nosync)
        cJSON_AddTrueToObject(t, "nosync");
    if (h->sync.leaving && !cJSON_GetObjectItemCaseSensitive(t, "nosync"))
        cJSON_AddTrueToObject(t, "nosync");
    return t;
}

void touch_member(Ha *h) {
    Member m = {0};
    m.conn_url = conn_url(h);
    m.api_url = api_url(h);
    m.state = xstrdup(h->pg.state);
    m.role = xstrdup(h->pg.role);
    m.version = xstrdup(PGHA_PATRONI_VERSION);
    m.proxy_url = cfg_of(h)->postgresql.proxy_address
                      ? xasprintf("postgres://%s/%s", cfg_of(h)->postgresql.proxy_address,
                                  cfg_of(h)->postgresql.database)
                      : NULL;
    m.tags = effective_tags(h);
    if (h->pg.st.ok && h->work.task.kind == TASK_NONE) {
        m.has_xlog_location = true;
        m.xlog_location = h->pg.st.wal_position;
        if (h->pg.st.in_recovery) { /* Patroni 4.1: only the positions that are known (not 0) */
            m.has_replay_lsn = h->pg.st.replay_lsn != 0;
            m.replay_lsn = h->pg.st.replay_lsn;
            m.has_receive_lsn = h->pg.st.last_receive_lsn != 0;
            m.receive_lsn = h->pg.st.last_receive_lsn;
        }
        if (h->pg.st.in_recovery && h->pg.st.streaming)
            m.replication_state = xstrdup("streaming");
        m.has_timeline = h->pg.st.timeline > 0;
        m.timeline = h->pg.st.timeline;
    }
    m.pause = dyn_of(h)->pause;
    m.checkpoint_after_promote_false = h->work.checkpoint_pending;
    m.pending_restart = h->pg.pending_restart;
    m.pending_restart_reason = h->pg.pending_reason ? cJSON_Duplicate(h->pg.pending_reason, true) : NULL;
    m.scheduled_restart = h->restart.scheduled ? cJSON_Duplicate(h->restart.scheduled, true) : NULL;
    char *json = cluster_encode_member(&m);
    member_free_contents(&m);
    if (dcs_touch_member(h->dcs, json) < 0)
        log_warning("failed to update the member key: %s", dcs_error(h->dcs));
    free(json);
}

/* /history from the timeline history file of the current timeline (spec §4.9). */
void update_history(Ha *h) {
    const Cluster *c = h->view.cluster;
    long long tl = h->pg.st.timeline;
    if (!c || tl <= 0)
        return;
    int n = c->history ? cJSON_GetArraySize(c->history) : -1;
    if (tl == 1) {
        /* as Patroni: no /history without a timeline switch; only a stale one (entries left from an
         * earlier incarnation of the cluster) is reset to [] */
        if (n > 0)
            (void)dcs_set_history(h->dcs, "[]");
        return;
    }
    if (n > 0) {
        const cJSON *last = cJSON_GetArrayItem(c->history, n - 1);
        long long last_tl = 0;
        if (cJSON_IsArray(last) && json_item_ll(cJSON_GetArrayItem(last, 0), &last_tl) && last_tl == tl - 1 &&
            cJSON_GetArraySize(last) >= 5)
            return;
    }
    const PghaConfig *cfg = cfg_of(h);
    PgTimelineSwitch *sw = NULL;
    size_t n_sw = 0;
    time_t mtime;
    char *err = NULL;
    if (pg_read_timeline_history(cfg->postgresql.data_dir, tl, &sw, &n_sw, &mtime, &err) < 0) {
        log_debug("%s", err);
        free(err);
        return;
    }
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < n_sw; i++) {
        cJSON *e = cJSON_CreateArray();
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", sw[i].tli);
        cJSON_AddItemToArray(e, cJSON_CreateRaw(buf));
        snprintf(buf, sizeof buf, "%lld", sw[i].lsn);
        cJSON_AddItemToArray(e, cJSON_CreateRaw(buf));
        cJSON_AddItemToArray(e, cJSON_CreateString(sw[i].reason));
        cJSON_AddItemToArray(arr, e);
    }
    pg_timeline_history_free(sw, n_sw);
    int m = cJSON_GetArraySize(arr);
    /* older entries keep what the DCS already has; the newest gets the timestamp and our name */
    for (int i = 0; i < m; i++) {
        cJSON *e = cJSON_GetArrayItem(arr, i);
        const cJSON *old = n > i ? cJSON_GetArrayItem(c->history, i) : NULL;
        if (i == m - 1) {
            struct tm tm;
            localtime_r(&mtime, &tm);
            char ts[64], tz[8];
            strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
            strftime(tz, sizeof tz, "%z", &tm);
            char iso[80];
            snprintf(iso, sizeof iso, "%s%.3s:%.2s", ts, tz, tz + 3);
            cJSON_AddItemToArray(e, cJSON_CreateString(iso));
            cJSON_AddItemToArray(e, cJSON_CreateString(cfg->name));
        } else if (cJSON_IsArray(old) && cJSON_GetArraySize(old) >= 4) {
            for (int k = 3; k < cJSON_GetArraySize(old); k++)
                cJSON_AddItemToArray(e, cJSON_Duplicate(cJSON_GetArrayItem(old, k), true));
        }
    }
    long long keep = dyn_of(h)->max_timelines_history;
    while (keep > 0 && cJSON_GetArraySize(arr) > keep)
        cJSON_DeleteItemFromArray(arr, 0);
    char *json = json_dumps(arr, false);
    cJSON_Delete(arr);
    if (dcs_set_history(h->dcs, json) < 0)
        log_warning("failed to update /history: %s", dcs_error(h->dcs));
    free(json);
}

/* /status (spec §1.2), with the leader update: optime, the slots' positions, retain_slots. Written
 * only when the content changed. */
void update_status(Ha *h) {
    /* the primary, or the standby leader of a standby cluster (its optime: max(received, replayed)) */
    bool standby_leader = h->pg.st.ok && h->pg.st.in_recovery && is_lock_holder(h) && dyn_is_standby_cluster(dyn_of(h));
    if (!h->pg.st.ok || (h->pg.st.in_recovery && !standby_leader))
        return;
    long long optime = standby_leader ? h->pg.st.wal_position : h->pg.st.flush_lsn;
    cJSON *slots = NULL;
    SlotsInput in;
    slots_input(h, &in);
    if (h->slots.rows_ok) {
        SlotsPlan expected; /* only the expected set is used here: the actions ran in slots_sync() */
        slots_plan(&in, &expected);
        slots = slots_status_slots(&in, &expected, optime);
        slots_plan_free(&expected);
    }
    StrList retain = {0}, expired = {0};
    retain_update(&h->slots.retain, &in, slots, (double)now_monotonic() / USEC_PER_SEC, &retain, &expired);
    for (size_t i = 0; i < expired.n; i++)
        log_info("Replication slot '%s' for absent cluster member is expired after %lld sec.", expired.v[i],
                 dyn_of(h)->member_slots_ttl);
    char *json = cluster_encode_status(optime, slots, &retain);
    cJSON_Delete(slots);
    strlist_clear(&retain);
    strlist_clear(&expired);
    if (!streq(json, h->published.last_status)) {
        if (dcs_set_status(h->dcs, json) == 1) {
            free(h->published.last_status);
            h->published.last_status = json;
            json = NULL;
        }
    }
    free(json);
}

/* A /status write with only a new optime (demotion): slots and retain_slots as last published. */
void write_status_optime_only(Ha *h, long long optime) {
    const ClusterStatus *st = h->view.cluster ? &h->view.cluster->status : NULL;
    char *json = cluster_encode_status(optime, st ? st->slots : NULL, st ? &st->retain_slots : NULL);
    (void)dcs_set_status(h->dcs, json);
    free(json);
}

/* Does this node count as the leader for the health checks now, and until when? It holds the lock, the lease
 * runs (until the point where a primary fences itself), and it is not on its way out: no demotion, switchover
 * or stop of PostgreSQL under way. */
static usec_t leader_until(const Ha *h, usec_t now) {
    usec_t until = lease_fence_at(h); /* a primary stops then (fence_expired_lease) */
    bool leader = is_lock_holder(h);
    /* a primary running on failsafe (§4.12): the licence of its last survival decision (or, while the first is
     * made, the lease's fence point carried over), not longer */
    if (h->failsafe.licence_until > now && may_be_primary(h)) {
        leader = true;
        if (h->failsafe.licence_until > until)
            until = h->failsafe.licence_until;
    }
    if (!leader || until <= now || h->pg.stopping || h->stepdown.phase != STEPDOWN_IDLE)
        return 0;
    return until;
}

/* The snapshot of this moment; `stopping`: PostgreSQL is about to stop (a demotion, a switchover, a stop of a
 * primary), so it is published as stopping already, without the leader's lease and without WAL positions
 * (peers count it as not running, as Patroni's do when its status query fails during a stop). */
static Snapshot *build(Ha *h, bool stopping) {
    const PghaConfig *cfg = cfg_of(h);
    Snapshot *s = snapshot_new();
    s->scope = xstrdup(cfg->scope);
    s->name = xstrdup(cfg->name);
    s->state = xstrdup(stopping && !streq(h->pg.state, "restarting") ? "stopping" : h->pg.state);
    s->role = xstrdup(h->pg.role);
    s->pg_running = h->pg.st.ok && !stopping;
    if (s->pg_running) {
        s->server_version = h->pg.st.server_version;
        s->postmaster_start_time = xstrdup(h->pg.st.postmaster_start_str);
        s->postmaster_start_epoch = h->pg.st.postmaster_start_time;
        s->in_recovery = h->pg.st.in_recovery;
        s->has_timeline = h->pg.st.timeline > 0;
        s->timeline = h->pg.st.timeline;
        s->xlog_location = h->pg.st.flush_lsn;
        s->received_location = h->pg.st.receive_lsn;
        s->replayed_location = h->pg.st.replay_lsn;
        s->replayed_timestamp = h->pg.st.has_replay_timestamp ? xstrdup(h->pg.st.replay_timestamp) : NULL;
        s->latest_end_lsn = h->pg.st.in_recovery ? h->pg.st.latest_end_lsn : 0;
        s->replay_paused = h->pg.st.replay_paused;
        s->replication_state = h->pg.st.in_recovery && h->pg.st.streaming ? xstrdup("streaming") : NULL;
        s->replication = h->pg.st.replication ? cJSON_Duplicate(h->pg.st.replication, true) : NULL;
    }
    s->pause = dyn_of(h)->pause;
    usec_t now = now_monotonic();
    s->has_cluster = h->view.cluster && now - h->view.cluster_read_at < (usec_t)ttl_s(h) * USEC_PER_SEC;
    s->cluster_unlocked = !h->view.cluster || !h->view.cluster->leader;
    s->dcs_last_seen = h->view.dcs_last_seen;
    s->tags = effective_tags(h);
    s->sysid = h->pg.sysid[0] ? xstrdup(h->pg.sysid) : NULL;
    s->pending_restart = h->pg.pending_restart;
    s->watchdog_failed = h->wd.failed;
    s->watchdog_active = watchdog_is_running(&h->wd);
    s->pending_restart_reason = h->pg.pending_reason ? cJSON_Duplicate(h->pg.pending_reason, true) : NULL;
    if (h->restart.scheduled) { /* GET /patroni shows it without postmaster_start_time */
        s->scheduled_restart = cJSON_Duplicate(h->restart.scheduled, true);
        cJSON_DeleteItemFromObjectCaseSensitive(s->scheduled_restart, "postmaster_start_time");
    }
    s->leader_until = stopping ? 0 : leader_until(h, now);
    s->failsafe_mode = dyn_of(h)->failsafe_mode;
    if (s->failsafe_mode) {
        /* the primary while it runs on failsafe; a replica while a leader's POST /failsafe is less than ttl old */
        char buf[128];
        s->failsafe_active = (h->failsafe.active && h->failsafe.licence_until > now && !stopping) ||
                             (h->commands && failsafe_window_leader(h, buf, sizeof buf) != NULL);
    }
    if (h->view.cluster && h->view.cluster->sync.leader && s->pg_running && h->pg.st.in_recovery &&
        sync_matches(&h->view.cluster->sync, cfg->name) && !strcaseeq(h->view.cluster->sync.leader, cfg->name)) {
        s->sync_standby = true;
        s->quorum_standby = dyn_of(h)->synchronous_mode == SYNC_QUORUM;
    }
    s->has_optime = h->view.cluster && h->view.cluster->status.has_optime;
    s->cluster_optime = s->has_optime ? h->view.cluster->status.optime : 0;
    s->standby_cluster = dyn_is_standby_cluster(dyn_of(h));
    s->maximum_lag_on_failover = dyn_of(h)->maximum_lag_on_failover;
    s->next_cycle = h->next_cycle;
    s->ttl = ttl_s(h);
    s->loop_wait = loop_wait_s(h);
    s->published = now;
    if (is_lock_holder(h) && h->view.lock_valid_until > now)
        s->lease_renewed_at = h->view.lock_valid_until - (usec_t)ttl_s(h) * USEC_PER_SEC;
    s->counters = h->counters;
    dcs_get_stats(h->dcs, &s->dcs_stats);
    return s;
}

void publish(Ha *h) { snapshot_publish(build(h, false)); }

void publish_stopping(Ha *h) { snapshot_publish(build(h, true)); }

void publish_free(HaPublished *p) {
    free(p->last_status);
    p->last_status = NULL;
}
