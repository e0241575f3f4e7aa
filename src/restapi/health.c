/* Health checks (spec §2.3) and the /cluster document (§2.4). Pure functions of a snapshot or a
 * cluster view. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/json.h"
#include "common/yamltree.h"
#include "restapi/restapi.h"

long long parse_lag(const char *s) {
    if (!s || !*s)
        return -1;
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v >= 0) || v > 9e15)
        return -1;
    while (*end == ' ')
        end++;
    static const struct {
        const char *unit;
        double mult;
    } units[] = {{"", 1},
                 {"B", 1},
                 {"kB", 1024.0},
                 {"MB", 1024.0 * 1024},
                 {"GB", 1024.0 * 1024 * 1024},
                 {"TB", 1024.0 * 1024 * 1024 * 1024}};
    for (size_t i = 0; i < ELEMENTSOF(units); i++)
        if (strcmp(end, units[i].unit) == 0) {
            double bytes = v * units[i].mult;
            /* beyond long long (9e15TB): no lag is that large; the conversion would be undefined */
            return bytes < 9.2e18 ? (long long)bytes : LLONG_MAX;
        }
    return -1;
}

/* Python's truth value of a tag value. */
static bool tag_truthy(const cJSON *v) {
    long long n;
    if (cJSON_IsFalse(v) || cJSON_IsNull(v) || (cJSON_IsString(v) && !v->valuestring[0]))
        return false;
    if ((cJSON_IsNumber(v) || cJSON_IsRaw(v)) && json_item_ll(v, &n) && n == 0)
        return false;
    return true;
}

static bool tag_matches(const Snapshot *s, const char *key, const char *want) {
    if (!s->tags)
        return false;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->tags, key);
    if (!v || cJSON_IsNull(v))
        return false;
    /* the configured tags are filtered like the published ones: a predefined boolean tag that is
     * false counts as absent (nofailover is kept when failover_priority is set, nosync when sync_priority is);
     * custom tags stay */
    static const char *const predefined[] = {"clonefrom", "nofailover", "noloadbalance", "nosync", "nostream"};
    if (!tag_truthy(v))
        for (size_t i = 0; i < ELEMENTSOF(predefined); i++)
            if (strcmp(key, predefined[i]) == 0 &&
                !(strcmp(key, "nofailover") == 0 && cJSON_GetObjectItemCaseSensitive(s->tags, "failover_priority")) &&
                !(strcmp(key, "nosync") == 0 && cJSON_GetObjectItemCaseSensitive(s->tags, "sync_priority")))
                return false;
    /* non-string values compare as str(v).lower() */
    char buf[64];
    const char *have = NULL;
    if (cJSON_IsString(v))
        have = v->valuestring;
    else if (cJSON_IsBool(v))
        have = cJSON_IsTrue(v) ? "true" : "false";
    else if (cJSON_IsRaw(v)) { /* numbers as the YAML layer wrote them: Python's repr */
        snprintf(buf, sizeof buf, "%s", v->valuestring);
        for (char *p = buf; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        have = buf;
    } else if (cJSON_IsNumber(v)) {
        long long n;
        if (json_item_ll(v, &n))
            snprintf(buf, sizeof buf, "%lld", n);
        else
            py_float_repr(v->valuedouble, buf, sizeof buf);
        have = buf;
    }
    return have && strcmp(have, want) == 0;
}

static bool tag_filter_ok(const Snapshot *s, const QueryParam *params, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (str_startswith(params[i].key, "tag_") &&
            !tag_matches(s, params[i].key + 4, params[i].value ? params[i].value : ""))
            return false;
    return true;
}

/* The first non-empty value of a query parameter, as Patroni reads it (parse_qs() drops blank values,
 * `path_query.get(key)[0]`), or NULL. */
static const char *first_param(const QueryParam *params, size_t n, const char *key) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(params[i].key, key) == 0 && params[i].value && params[i].value[0])
            return params[i].value;
    return NULL;
}

/* Patroni 4.1's leader_optime: the /status optime of a valid cluster view, or the upstream's WAL end the
 * replica's WAL receiver last heard of (pg_stat_wal_receiver.latest_end_lsn) when that is further. */
static long long leader_optime(const Snapshot *s) {
    long long optime = s->has_cluster && s->has_optime ? s->cluster_optime : 0;
    long long end = s->pg_running && s->in_recovery ? s->latest_end_lsn : 0;
    return end > optime ? end : optime;
}

int liveness_code(const Snapshot *s, usec_t now) {
    if (s->pause)
        return 200;
    usec_t threshold = (usec_t)(s->ttl > 0 ? s->ttl : 30) * USEC_PER_SEC;
    if (!(s->pg_running && !s->in_recovery))
        threshold *= 2; /* Patroni tolerates a stuck loop longer on a replica */
    return s->next_cycle + threshold > now ? 200 : 503;
}

int health_check_code(const Snapshot *s, const char *path, const QueryParam *params, size_t n_params, usec_t now) {
    if (!path || !*path || strcmp(path, "/") == 0)
        path = "/primary";
    long long lag = parse_lag(first_param(params, n_params, "lag"));
    bool running = s->state && strcmp(s->state, "running") == 0;
    const char *role = s->pg_running
                           ? (s->in_recovery ? (s->standby_cluster && s->role ? s->role : "replica") : "primary")
                           : (s->role ? s->role : "");
    long long replayed = s->pg_running && s->in_recovery ? s->replayed_location : 0;
    bool lagging = lag >= 0 && leader_optime(s) > ll_add_sat(replayed, lag);
    bool noloadbalance = s->tags && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s->tags, "noloadbalance"));
    int replica_code = (!noloadbalance && !lagging && strcmp(role, "replica") == 0 && running) ? 200 : 503;
    int leader_code = 503, primary_code = 503, standby_leader_code = 503;
    if (!s->has_cluster && s->pause) {
        leader_code = (strcmp(role, "primary") == 0 || strcmp(role, "standby_leader") == 0) ? 200 : 503;
        primary_code = strcmp(role, "primary") == 0 ? 200 : 503;
        standby_leader_code = strcmp(role, "standby_leader") == 0 ? 200 : 503;
    } else if (snapshot_is_leader(s, now)) {
        leader_code = 200;
        if (s->standby_cluster) {
            primary_code = replica_code = 503;
            standby_leader_code = (strcmp(role, "replica") == 0 || strcmp(role, "standby_leader") == 0) ? 200 : 503;
        } else {
            primary_code = 200;
            standby_leader_code = 503;
        }
    }
    int code;
    bool apply_tags = true;
    if (strstr(path, "standby_leader") || strstr(path, "standby-leader")) {
        code = standby_leader_code;
        apply_tags = false;
    } else if (strstr(path, "leader")) {
        code = leader_code;
        apply_tags = false;
    } else if (strstr(path, "master") || strstr(path, "primary") || strstr(path, "read-write")) {
        code = primary_code;
        apply_tags = false;
    } else if (strstr(path, "replica")) {
        code = replica_code;
    } else if (strstr(path, "read-only") && !strstr(path, "sync") && !strstr(path, "quorum")) {
        code = (primary_code == 200 || standby_leader_code == 200) ? 200 : replica_code;
    } else if (strstr(path, "health")) {
        code = running ? 200 : 503;
    } else if (s->has_cluster && (strcmp(path, "/sync") == 0 || strcmp(path, "/synchronous") == 0) && s->sync_standby &&
               !s->quorum_standby) {
        code = replica_code;
    } else if (s->has_cluster && strcmp(path, "/quorum") == 0 && s->quorum_standby) {
        code = replica_code;
    } else if (s->has_cluster && (strcmp(path, "/async") == 0 || strcmp(path, "/asynchronous") == 0) &&
               !s->sync_standby && !s->quorum_standby) {
        code = replica_code;
    } else if (s->has_cluster && strcmp(path, "/read-only-quorum") == 0) {
        code = (primary_code == 200 || standby_leader_code == 200) ? 200 : s->quorum_standby ? replica_code : 503;
    } else if (s->has_cluster &&
               (strcmp(path, "/read-only-sync") == 0 || strcmp(path, "/read-only-synchronous") == 0)) {
        code = (primary_code == 200 || standby_leader_code == 200) ? 200
               : (s->sync_standby && !s->quorum_standby)           ? replica_code
                                                                   : 503;
    } else {
        code = 503;
        apply_tags = false;
    }
    if (code == 200 && apply_tags && !tag_filter_ok(s, params, n_params))
        code = 503;
    return code;
}

int readiness_code(const Snapshot *s, const QueryParam *params, size_t n_params, char *why, size_t why_len,
                   usec_t now) {
    char scratch[8];
    if (!why) {
        why = scratch;
        why_len = sizeof scratch;
    }
    why[0] = '\0';
    /* the leader is ready: it only became leader after bootstrap or once up as a standby */
    if (snapshot_is_leader(s, now))
        return 200;
    if (!streq(s->state, "running")) {
        snprintf(why, why_len, "PostgreSQL is not running");
        return 503;
    }
    if (!(s->pg_running && s->in_recovery && streq(s->replication_state, "streaming"))) {
        snprintf(why, why_len, "PostgreSQL replication state is not streaming");
        return 503;
    }
    if (!s->has_cluster && !s->latest_end_lsn) {
        if (s->failsafe_active)
            return 200;
        snprintf(why, why_len, "DCS is not accessible");
        return 503;
    }
    const char *mode_param = first_param(params, n_params, "mode");
    bool write = mode_param && strcmp(mode_param, "write") == 0;
    long long lag = ll_sub_sat(leader_optime(s), write ? s->received_location : s->replayed_location);
    const char *lag_param = first_param(params, n_params, "lag");
    long long max_lag = lag_param ? parse_lag(lag_param) : -1;
    if (max_lag < 0)
        max_lag = s->maximum_lag_on_failover;
    if (lag > max_lag) {
        snprintf(why, why_len, "Replication %s lag %lld exceeds maximum allowable %lld", write ? "write" : "apply", lag,
                 max_lag);
        return 503;
    }
    return 200;
}

static int cmp_members(const void *a, const void *b) {
    return strcmp((*(const Member *const *)a)->name, (*(const Member *const *)b)->name);
}

/* The parts of Patroni's global config (from the cluster's /config) that /cluster uses. */
static bool config_is_standby_cluster(const Cluster *c) {
    const cJSON *sc = c->config ? cJSON_GetObjectItemCaseSensitive(c->config, "standby_cluster") : NULL;
    if (!cJSON_IsObject(sc))
        return false;
    static const char *const keys[] = {"host", "port", "restore_command"};
    for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(sc, keys[i]);
        if (v && tag_truthy(v))
            return true;
    }
    return false;
}

static SyncMode config_sync_mode(const Cluster *c) {
    const cJSON *v = c->config ? cJSON_GetObjectItemCaseSensitive(c->config, "synchronous_mode") : NULL;
    long long n;
    if (cJSON_IsTrue(v))
        return SYNC_ON;
    if (cJSON_IsString(v)) {
        if (strcasecmp(v->valuestring, "quorum") == 0)
            return SYNC_QUORUM;
        static const char *const on[] = {"on", "true", "yes", "1"};
        for (size_t i = 0; i < ELEMENTSOF(on); i++)
            if (strcasecmp(v->valuestring, on[i]) == 0)
                return SYNC_ON;
    }
    if ((cJSON_IsNumber(v) || cJSON_IsRaw(v)) && json_item_ll(v, &n) && n == 1)
        return SYNC_ON;
    return SYNC_OFF;
}

/* Patroni's `cluster.sync.matches(name)`: the sync_standby names only, case-insensitively. */
static bool sync_standby_matches(const SyncState *s, const char *name) {
    if (!s->leader)
        return false;
    for (size_t i = 0; i < s->members.n; i++)
        if (strcasecmp(s->members.v[i], name) == 0)
            return true;
    return false;
}

static cJSON *raw_ll(long long v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    return cJSON_CreateRaw(buf);
}

/* Patroni's format_lsn(): "0/3000060" */
static void format_lsn(long long lsn, char *buf, size_t len) {
    unsigned long long u = (unsigned long long)lsn;
    snprintf(buf, len, "%llX/%llX", u >> 32, u & 0xFFFFFFFFULL);
}

/* Patroni 4.1's <prefix>lsn and <prefix>lag of a member that does not hold the lock: "unknown" for both when
 * the position is not known (absent or 0), else the formatted LSN and max(0, /status optime - lsn) (added
 * lag first, as Patroni's dict gets them). */
static void add_position(cJSON *e, const char *prefix, long long lsn, long long cluster_lsn) {
    char lsn_key[32], lag_key[32];
    snprintf(lsn_key, sizeof lsn_key, "%slsn", prefix);
    snprintf(lag_key, sizeof lag_key, "%slag", prefix);
    if (!lsn) {
        cJSON_AddStringToObject(e, lsn_key, "unknown");
        cJSON_AddStringToObject(e, lag_key, "unknown");
        return;
    }
    char buf[40];
    format_lsn(lsn, buf, sizeof buf);
    cJSON_AddItemToObject(e, lag_key, raw_ll(cluster_lsn >= lsn ? ll_sub_sat(cluster_lsn, lsn) : 0));
    cJSON_AddStringToObject(e, lsn_key, buf);
}

char *cluster_to_json(const Cluster *c, const char *scope, bool paused) {
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "members");
    const Member **sorted = xcalloc(c->n_members + 1, sizeof(Member *));
    for (size_t i = 0; i < c->n_members; i++)
        sorted[i] = &c->members[i];
    qsort(sorted, c->n_members, sizeof(Member *), cmp_members);
    const char *leader = c->leader ? c->leader->name : NULL;
    bool standby_cluster = config_is_standby_cluster(c);
    SyncMode sync_mode = standby_cluster ? SYNC_OFF : config_sync_mode(c);
    for (size_t i = 0; i < c->n_members; i++) {
        const Member *m = sorted[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", m->name);
        const char *role = "replica";
        bool is_leader = leader && strcmp(leader, m->name) == 0;
        if (is_leader)
            role = standby_cluster ? "standby_leader" : "leader";
        else if (sync_mode != SYNC_OFF && sync_standby_matches(&c->sync, m->name))
            role = sync_mode == SYNC_QUORUM ? "quorum_standby" : "sync_standby";
        cJSON_AddStringToObject(e, "role", role);
        /* `(replication_state if role != 'leader' else '') or state`, '' when neither is known */
        const char *state = m->state ? m->state : "";
        if (strcmp(role, "leader") != 0 && m->replication_state && m->replication_state[0])
            state = m->replication_state;
        cJSON_AddStringToObject(e, "state", state);
        if (m->api_url)
            cJSON_AddStringToObject(e, "api_url", m->api_url);
        else
            cJSON_AddNullToObject(e, "api_url");
        char *host = NULL;
        int port = 0;
        if (member_conn_host_port(m, &host, &port)) {
            cJSON_AddStringToObject(e, "host", host);
            cJSON_AddItemToObject(e, "port", raw_ll(port));
        }
        free(host);
        if (m->has_timeline)
            cJSON_AddItemToObject(e, "timeline", raw_ll(m->timeline));
        if (m->pending_restart)
            cJSON_AddTrueToObject(e, "pending_restart");
        if (m->pending_restart_reason)
            cJSON_AddItemToObject(e, "pending_restart_reason", cJSON_Duplicate(m->pending_restart_reason, true));
        if (m->scheduled_restart)
            cJSON_AddItemToObject(e, "scheduled_restart", cJSON_Duplicate(m->scheduled_restart, true));
        if (m->tags && cJSON_GetArraySize(m->tags) > 0)
            cJSON_AddItemToObject(e, "tags", cJSON_Duplicate(m->tags, true));
        if (!is_leader) {
            long long cluster_lsn = c->status.has_optime ? c->status.optime : 0;
            add_position(e, "receive_", m->has_receive_lsn ? m->receive_lsn : 0, cluster_lsn);
            add_position(e, "replay_", m->has_replay_lsn ? m->replay_lsn : 0, cluster_lsn);
            add_position(e, "", m->has_xlog_location ? m->xlog_location : 0, cluster_lsn);
        }
        cJSON_AddItemToArray(arr, e);
    }
    free(sorted);
    if (paused)
        cJSON_AddTrueToObject(o, "pause");
    if (c->failover.present && c->failover.scheduled_at) {
        cJSON *sw = cJSON_AddObjectToObject(o, "scheduled_switchover");
        cJSON_AddStringToObject(sw, "at", c->failover.scheduled_at);
        if (c->failover.leader)
            cJSON_AddStringToObject(sw, "from", c->failover.leader);
        if (c->failover.candidate)
            cJSON_AddStringToObject(sw, "to", c->failover.candidate);
    }
    cJSON_AddStringToObject(o, "scope", scope ? scope : "");
    char *out = json_dumps(o, true);
    cJSON_Delete(o);
    return out;
}
