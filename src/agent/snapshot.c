#include "agent/snapshot.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/json.h"

const double agent_cycle_bucket_bounds[AGENT_CYCLE_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                               0.5,   1,    2.5,   5,    10,  30};

void agent_counters_observe_cycle(AgentCounters *c, double seconds) {
    if (seconds < 0)
        seconds = 0;
    c->cycles++;
    c->cycle_seconds_sum += seconds;
    c->cycle_last_seconds = seconds;
    for (size_t i = 0; i < AGENT_CYCLE_BUCKETS; i++) {
        if (seconds <= agent_cycle_bucket_bounds[i]) {
            c->cycle_buckets[i]++;
            break;
        }
    }
}

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static Snapshot *current;

Snapshot *snapshot_new(void) {
    Snapshot *s = xcalloc(1, sizeof *s);
    atomic_init(&s->refs, 1);
    return s;
}

Snapshot *snapshot_ref(Snapshot *s) {
    if (s)
        atomic_fetch_add(&s->refs, 1);
    return s;
}

void snapshot_unref(Snapshot *s) {
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    free(s->scope);
    free(s->name);
    free(s->state);
    free(s->role);
    free(s->postmaster_start_time);
    cJSON_Delete(s->scheduled_restart);
    free(s->replayed_timestamp);
    free(s->replication_state);
    cJSON_Delete(s->replication);
    cJSON_Delete(s->tags);
    cJSON_Delete(s->pending_restart_reason);
    free(s->sysid);
    free(s);
}

void snapshot_publish(Snapshot *s) {
    pthread_mutex_lock(&current_lock);
    Snapshot *old = current;
    current = s;
    pthread_mutex_unlock(&current_lock);
    snapshot_unref(old);
}

Snapshot *snapshot_current(void) {
    pthread_mutex_lock(&current_lock);
    Snapshot *s = snapshot_ref(current);
    pthread_mutex_unlock(&current_lock);
    return s;
}

static cJSON *raw_ll(long long v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    return cJSON_CreateRaw(buf);
}

char *snapshot_status_json(const Snapshot *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "state", s->state ? s->state : "stopped");
    if (s->pg_running) {
        if (s->postmaster_start_time)
            cJSON_AddStringToObject(o, "postmaster_start_time", s->postmaster_start_time);
        const char *role = s->in_recovery ? "replica" : "primary";
        if (s->standby_cluster && s->in_recovery && s->role)
            role = s->role;
        cJSON_AddStringToObject(o, "role", role);
        cJSON_AddItemToObject(o, "server_version", raw_ll(s->server_version));
        cJSON *x = cJSON_AddObjectToObject(o, "xlog");
        if (!s->in_recovery) {
            cJSON_AddItemToObject(x, "location", raw_ll(s->xlog_location));
        } else {
            cJSON_AddItemToObject(x, "received_location", raw_ll(s->received_location));
            cJSON_AddItemToObject(x, "replayed_location", raw_ll(s->replayed_location));
            if (s->replayed_timestamp)
                cJSON_AddStringToObject(x, "replayed_timestamp", s->replayed_timestamp);
            else
                cJSON_AddNullToObject(x, "replayed_timestamp");
            cJSON_AddBoolToObject(x, "paused", s->replay_paused);
        }
        if (s->in_recovery && s->sync_standby)
            cJSON_AddTrueToObject(o, s->quorum_standby ? "quorum_standby" : "sync_standby");
        if (s->has_timeline)
            cJSON_AddItemToObject(o, "timeline", raw_ll(s->timeline));
        else
            cJSON_AddNullToObject(o, "timeline");
        if (s->in_recovery && s->replication_state)
            cJSON_AddStringToObject(o, "replication_state", s->replication_state);
        if (s->replication && cJSON_GetArraySize(s->replication) > 0) {
            cJSON *arr = cJSON_AddArrayToObject(o, "replication");
            const cJSON *r;
            cJSON_ArrayForEach(r, s->replication) {
                cJSON *e = cJSON_CreateObject();
                static const char *const keys[] = {"usename", "application_name", "client_addr",
                                                   "state",   "sync_state",       "sync_priority"};
                for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, keys[i]);
                    cJSON_AddItemToObject(e, keys[i], v ? cJSON_Duplicate(v, true) : cJSON_CreateNull());
                }
                cJSON_AddItemToArray(arr, e);
            }
        }
    } else {
        cJSON_AddStringToObject(o, "role", s->role ? s->role : "uninitialized");
    }
    if (s->pause)
        cJSON_AddTrueToObject(o, "pause");
    if (s->cluster_unlocked || !s->has_cluster)
        cJSON_AddTrueToObject(o, "cluster_unlocked");
    if (s->failsafe_active)
        cJSON_AddTrueToObject(o, "failsafe_mode_is_active");
    cJSON_AddItemToObject(o, "dcs_last_seen", raw_ll(s->dcs_last_seen));
    if (s->tags && cJSON_GetArraySize(s->tags) > 0)
        cJSON_AddItemToObject(o, "tags", cJSON_Duplicate(s->tags, true));
    if (s->sysid)
        cJSON_AddStringToObject(o, "database_system_identifier", s->sysid);
    if (s->pending_restart) {
        cJSON_AddTrueToObject(o, "pending_restart");
        if (s->pending_restart_reason)
            cJSON_AddItemToObject(o, "pending_restart_reason", cJSON_Duplicate(s->pending_restart_reason, true));
    }
    if (s->scheduled_restart)
        cJSON_AddItemToObject(o, "scheduled_restart", cJSON_Duplicate(s->scheduled_restart, true));
    cJSON *p = cJSON_AddObjectToObject(o, "patroni");
    cJSON_AddStringToObject(p, "version", PGHA_PATRONI_VERSION);
    cJSON_AddStringToObject(p, "scope", s->scope ? s->scope : "");
    cJSON_AddStringToObject(p, "name", s->name ? s->name : "");
    if (s->watchdog_failed)
        cJSON_AddTrueToObject(o, "watchdog_failed");
    char *out = json_dumps(o, true);
    cJSON_Delete(o);
    return out;
}
