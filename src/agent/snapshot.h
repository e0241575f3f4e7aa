/* The agent's state as the HA thread last published it: immutable, reference-counted, read by
 * the REST threads without waiting on PostgreSQL, etcd or the HA thread. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>

#include "common/util.h"
#include "dcs/dcs.h"

typedef struct cJSON cJSON;

/* Upper bounds (le) of the HA cycle duration histogram buckets, in seconds (+Inf not included). */
#define AGENT_CYCLE_BUCKETS 12
extern const double agent_cycle_bucket_bounds[AGENT_CYCLE_BUCKETS];
#define AGENT_DEMOTE_MODES 4 /* DemoteMode values, indexed by them */

/* What the agent counts for GET /metrics: kept in the HA thread, copied into every snapshot. */
typedef struct AgentCounters {
    unsigned long long cycles;
    double cycle_seconds_sum;
    double cycle_last_seconds;
    unsigned long long cycle_buckets[AGENT_CYCLE_BUCKETS]; /* per bucket, not cumulative (above the last: none) */
    unsigned long long promotions;                         /* this node promoted (failover or switchover) */
    unsigned long long demotions[AGENT_DEMOTE_MODES];      /* by DemoteMode */
} AgentCounters;

/* Account one HA cycle of that many seconds. */
void agent_counters_observe_cycle(AgentCounters *c, double seconds);

typedef struct Snapshot {
    atomic_int refs;
    char *scope, *name;
    char *state;     /* member state: running, stopped, starting, crashed, ... */
    char *role;      /* primary, replica, uninitialized, demoted, promoted */
    bool pg_running; /* the status query ran */
    long long server_version;
    char *postmaster_start_time; /* "2024-08-28 19:39:26.352526+00:00" */
    double postmaster_start_epoch;
    bool in_recovery;
    bool has_timeline;
    long long timeline;
    long long xlog_location;                        /* primary */
    long long received_location, replayed_location; /* replica */
    long long latest_end_lsn;                       /* replica: the upstream's WAL end as its WAL receiver saw it */
    char *replayed_timestamp;                       /* NULL: null */
    bool replay_paused;
    char *replication_state; /* streaming / in archive recovery / NULL */
    cJSON *replication;      /* pg_stat_replication rows or NULL */
    bool pause;
    bool has_cluster; /* the DCS was read less than ttl ago */
    bool cluster_unlocked;
    bool failsafe_mode;      /* the dynamic configuration's failsafe_mode (POST /failsafe answers 502 without it) */
    bool failsafe_active;    /* failsafe_mode_is_active (spec §4.12) */
    long long dcs_last_seen; /* epoch seconds */
    cJSON *tags;             /* effective tags (object) or NULL */
    char *sysid;
    bool sync_standby, quorum_standby;
    bool pending_restart;
    cJSON *scheduled_restart;      /* the scheduled restart without postmaster_start_time, or NULL */
    cJSON *pending_restart_reason; /* {"<guc>": {"old_value": .., "new_value": ..}} or NULL */
    bool watchdog_failed;          /* watchdog.mode required and the watchdog unusable */
    bool watchdog_active;          /* the watchdog device is armed (pgha_watchdog_active) */
    /* monotonic: until then this node counts as the leader (it holds the lock and its lease runs until then,
     * less the margin by which a primary stops early: lease_fence_at()); 0 while it is not the leader or is
     * demoting or stopping. Evaluated per request (snapshot_is_leader): a snapshot published before the lease
     * ran out stops saying "leader" when it does, however long the HA thread is held up. */
    usec_t leader_until;
    bool has_optime;
    long long cluster_optime; /* /status optime */
    bool standby_cluster;
    long long maximum_lag_on_failover; /* the dynamic configuration's (the /readiness default) */
    usec_t next_cycle;                 /* monotonic time of the next scheduled HA cycle */
    long long ttl, loop_wait;
    usec_t published; /* monotonic */
    /* pgha's own metrics */
    usec_t lease_renewed_at; /* monotonic: the last renewal of our leader lease (0: not the leader) */
    AgentCounters counters;
    DcsStats dcs_stats;
} Snapshot;

Snapshot *snapshot_new(void);
Snapshot *snapshot_ref(Snapshot *s);
void snapshot_unref(Snapshot *s);

static inline bool snapshot_is_leader(const Snapshot *s, usec_t now) { return s->leader_until > now; }

/* The published one: publish takes ownership of s; current returns a reference (or NULL). */
void snapshot_publish(Snapshot *s);
Snapshot *snapshot_current(void);

/* The status document of GET /patroni (spec §2.2), Python's spaced JSON. Caller frees. */
char *snapshot_status_json(const Snapshot *s);
