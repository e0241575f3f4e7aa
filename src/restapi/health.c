/* Health checks (spec §2.3) and the /cluster document (§2.4). Pure functions of a snapshot or a
 * cluster view. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "restapi/restapi.h"

long long parse_lag(const char *s) {
    if (!s || !*s)
        return -1;
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0)
        return -1;
    while (*end == ' ')
        end++;
    static const struct {
        const char *unit;
        double mult;
    } units[] = {{"", 1}, {"B", 1}, {"kB", 1024.0}, {"MB", 1024.0 * 1024}, {"GB", 1024.0 * 1024 * 1024},
                 {"TB", 1024.0 * 1024 * 1024 * 1024}};
    for (size_t i = 0; i < ELEMENTSOF(units); i++)
        if (strcmp(end, units[i].unit) == 0)
            return (long long)(v * units[i].mult);
    return -1;
}

static bool tag_matches(const Snapshot *s, const char *key, const char *want) {
    if (!s->tags)
        return false;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->tags, key);
    if (!v)
        return false;
    /* predefined boolean tags set to false count as absent */
    if (cJSON_IsFalse(v))
        return false;
    char buf[64];
    const char *have = NULL;
    if (cJSON_IsString(v))
        have = v->valuestring;
    else if (cJSON_IsTrue(v))
        have = "true";
    else if (cJSON_IsNumber(v) || cJSON_IsRaw(v)) {
        long long n;
        if (json_item_ll(v, &n))
            snprintf(buf, sizeof buf, "%lld", n);
        else
            snprintf(buf, sizeof buf, "%g", v->valuedouble);
        have = buf;
    }
    return have && strcmp(have, want) == 0;
}

static bool tag_filter_ok(const Snapshot *s, const QueryParam *params, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (str_startswith(params[i].key, "tag_") && !tag_matches(s, params[i].key + 4, params[i].value ? params[i].value : ""))
            return false;
    return true;
}

int health_check_code(const Snapshot *s, const char *path, const QueryParam *params, size_t n_params) {
    if (!path || !*path || strcmp(path, "/") == 0)
        path = "/primary";
    long long lag = -1;
    for (size_t i = 0; i < n_params; i++)
        if (strcmp(params[i].key, "lag") == 0)
            lag = parse_lag(params[i].value);
    bool running = s->state && strcmp(s->state, "running") == 0;
    const char *role = s->pg_running ? (s->in_recovery ? (s->standby_cluster && s->role ? s->role : "replica") : "primary")
                                     : (s->role ? s->role : "");
    long long replayed = s->pg_running && s->in_recovery ? s->replayed_location : 0;
    bool lagging = lag >= 0 && (s->has_optime ? s->cluster_optime : 0) > replayed + lag;
    bool noloadbalance = s->tags && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s->tags, "noloadbalance"));
    int replica_code = (!noloadbalance && !lagging && strcmp(role, "replica") == 0 && running) ? 200 : 503;
    int leader_code = 503, primary_code = 503, standby_leader_code = 503;
    if (!s->has_cluster && s->pause) {
        leader_code = (strcmp(role, "primary") == 0 || strcmp(role, "standby_leader") == 0) ? 200 : 503;
        primary_code = strcmp(role, "primary") == 0 ? 200 : 503;
        standby_leader_code = strcmp(role, "standby_leader") == 0 ? 200 : 503;
    } else if (s->is_leader) {
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
    } else if (s->has_cluster && (strcmp(path, "/sync") == 0 || strcmp(path, "/synchronous") == 0) &&
               s->sync_standby && !s->quorum_standby) {
        code = replica_code;
    } else if (s->has_cluster && strcmp(path, "/quorum") == 0 && s->quorum_standby) {
        code = replica_code;
    } else if (s->has_cluster && (strcmp(path, "/async") == 0 || strcmp(path, "/asynchronous") == 0) &&
               !s->sync_standby && !s->quorum_standby) {
        code = replica_code;
    } else if (s->has_cluster && strcmp(path, "/read-only-quorum") == 0) {
        code = (primary_code == 200 || standby_leader_code == 200) ? 200 : s->quorum_standby ? replica_code : 503;
    } else if (s->has_cluster && (strcmp(path, "/read-only-sync") == 0 || strcmp(path, "/read-only-synchronous") == 0)) {
        code = (primary_code == 200 || standby_leader_code == 200) ? 200
               : (s->sync_standby && !s->quorum_standby) ? replica_code
                                                          : 503;
    } else {
        code = 503;
        apply_tags = false;
    }
    if (code == 200 && apply_tags && !tag_filter_ok(s, params, n_params))
        code = 503;
    return code;
}

static int cmp_members(const void *a, const void *b) {
    return strcmp((*(const Member *const *)a)->name, (*(const Member *const *)b)->name);
}

static cJSON *raw_ll(long long v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    return cJSON_CreateRaw(buf);
}

char *cluster_to_json(const Cluster *c, const char *scope, bool paused) {
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "members");
    const Member **sorted = xcalloc(c->n_members + 1, sizeof(Member *));
    for (size_t i = 0; i < c->n_members; i++)
        sorted[i] = &c->members[i];
    qsort(sorted, c->n_members, sizeof(Member *), cmp_members);
    const char *leader = c->leader ? c->leader->name : NULL;
    for (size_t i = 0; i < c->n_members; i++) {
        const Member *m = sorted[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", m->name);
        const char *role = "replica";
        bool is_leader = leader && strcmp(leader, m->name) == 0;
        if (is_leader)
            role = streq(m->role, "standby_leader") ? "standby_leader" : "leader";
        else if (c->sync.leader && sync_matches(&c->sync, m->name))
            role = c->sync.quorum > 0 ? "quorum_standby" : "sync_standby";
        cJSON_AddStringToObject(e, "role", role);
        const char *state = m->state ? m->state : "stopped";
        if (strcmp(role, "leader") != 0 && m->replication_state)
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
            if (!m->has_xlog_location) {
                cJSON_AddStringToObject(e, "lag", "unknown");
            } else {
                long long lag = (c->status.has_optime ? c->status.optime : 0) - m->xlog_location;
                cJSON_AddItemToObject(e, "lag", raw_ll(lag > 0 ? lag : 0));
            }
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
