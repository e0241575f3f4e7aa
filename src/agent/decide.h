/* The HA decision (spec §4.2-4.8) as a pure function: no I/O, time injected, so every row of the
 * decision tables is a table test (tests/unit/test_decide.c). The executor (ha.c) observes,
 * calls decide(), carries the decision out and logs decision.message. */
#pragma once

#include <stdbool.h>
#include <string.h>

#include "common/config.h"
#include "dcs/cluster.h"

/* The replication target "the remote primary of the standby cluster" (standby_cluster host/port, restore_command):
 * a name no member can have ('/' cannot be part of a member key), used where a member name says whom to follow. */
#define FOLLOW_REMOTE "/standby_cluster"
/* ... without standby_cluster.primary_slot_name: a standby leader that handed the key over lets go of the remote's
 * slot for its successor while it keeps streaming (and restoring) until the successor holds the key */
#define FOLLOW_REMOTE_NO_SLOT "/standby_cluster/no_slot"
static inline bool follow_is_remote(const char *t) {
    return t && (strcmp(t, FOLLOW_REMOTE) == 0 || strcmp(t, FOLLOW_REMOTE_NO_SLOT) == 0);
}

/* What the local node looks like this cycle. */
typedef struct LocalState {
    bool data_dir_empty;      /* no cluster in data_dir (missing, empty, no PG_VERSION) */
    bool data_dir_error;      /* data_dir not accessible */
    const char *sysid;        /* our system identifier, NULL when unknown */
    bool pg_running;          /* the postmaster is alive */
    bool pg_starting;         /* spawned, not yet accepting connections (or running but not answering) */
    bool maybe_primary;       /* running, and a primary or maybe one: it answers as one, or it does not answer
                               * and last ran as one, is promoting, or is starting as one */
    bool pg_ready;            /* the status query ran this cycle (or status_cached) */
    bool status_cached;       /* the status query ran into its statement_timeout: in_recovery, timeline and
                               * wal_position are the last answer's (decide_keep_cached_status) */
    bool in_recovery;         /* meaningful when pg_ready */
    long long timeline;       /* current timeline (running), or pg_control's (stopped) */
    long long wal_position;   /* primary: flush LSN; replica: max(receive, replay) */
    bool was_primary;         /* pg_control says the last run was a primary (stopped PG) */
    const char *async_action; /* name of a running long action (bootstrap, clone, rewind), or NULL */
    bool start_timed_out;     /* a start has exceeded primary_start_timeout */
    bool crashed;             /* the postmaster exited without us asking */
    bool just_demoted;        /* stopped by our demotion, not started since (started again even when paused) */
    const char *following;    /* member our replication currently points at, NULL = none */
    bool following_unknown;   /* running replica whose upstream we have not set since the agent started */
    bool leader_lock_valid;   /* we acquired/renewed the leader lock less than ttl ago */
    bool watchdog_failed;
    bool promote_backoff;      /* within ttl of a failed promotion (pre_promote or PostgreSQL's) */
    bool clone_without_leader; /* a replica method works without a leader (no_leader: from a backup) */
    bool cb_called;            /* a callback was due since the agent started (Patroni's cb_called): this agent
                                * has run PostgreSQL in this cluster before, it did not just join it */
} LocalState;

/* Another member's answer to GET /patroni during the leader race (spec §4.5 step 9). */
typedef struct PeerStatus {
    const char *name;
    bool reachable;         /* answered with an xlog object */
    bool is_primary;        /* role primary / not in recovery */
    long long wal_position; /* max(received, replayed) or location */
    bool nofailover;
    long long failover_priority;
    bool watchdog_failed;
} PeerStatus;

typedef struct Observation {
    const PghaConfig *cfg;
    const DynConfig *dyn;
    const Cluster *cluster;     /* NULL when the DCS could not be read */
    const Cluster *last_locked; /* the last view that had a leader (candidate set), may be NULL */
    const LocalState *local;
    const PeerStatus *peers; /* probed only when the cluster is unlocked */
    size_t n_peers;
    bool peers_probed;
    bool stale_tick; /* the loop woke far later than planned: observe, do not act */
    /* a scheduled switchover (failover key with scheduled_at), judged by the executor's wall clock */
    bool scheduled_due;   /* its time has come (within loop_wait) */
    bool scheduled_stale; /* it is more than 1.5 * loop_wait in the past */
    /* failsafe mode (spec §4.12), with dyn->failsafe_mode on: */
    bool failsafe_survived;      /* the DCS could not be read and every other member of /failsafe accepted our
                                  * POST /failsafe this cycle (failsafe_survives()) */
    const char *failsafe_leader; /* a member whose POST /failsafe we accepted less than ttl ago, or NULL */
    usec_t now;
} Observation;

typedef enum HaAction {
    HA_NONE,             /* nothing to do (message says why) */
    HA_FATAL,            /* refuse to run: the message says why; the agent exits */
    HA_WRITE_INITIALIZE, /* publish our sysid as /initialize, then continue */
    HA_BOOTSTRAP,        /* race for /initialize; the winner runs initdb */
    HA_CLONE,            /* create a replica from `target` */
    HA_START,            /* start PostgreSQL: as primary if `as_primary`, else following `target` */
    HA_ACQUIRE_LOCK,     /* race for the leader key; promote when won, follow when lost */
    HA_UPDATE_LOCK,      /* renew; then promote when PG is a replica */
    HA_UPDATE_LOCK_ONLY, /* renew while a long action or a start runs */
    HA_RELEASE_LOCK,     /* delete our leader key */
    HA_DEMOTE,           /* stop being primary: `demote_mode` */
    HA_FOLLOW,           /* make replication point at `target` (NULL: nobody) */
    HA_SWITCHOVER,       /* a manual switchover/failover asks us to step down (graceful) */
    HA_CLEAR_FAILOVER,   /* the failover key is stale or not for us: clear it */
    HA_FAILSAFE,         /* the DCS is gone, every member accepted POST /failsafe: go on as the primary */
} HaAction;

typedef enum DemoteMode {
    DEMOTE_GRACEFUL,         /* switchover: fast stop with checkpoint, release, follow */
    DEMOTE_IMMEDIATE,        /* unfit to be primary: immediate stop, release */
    DEMOTE_IMMEDIATE_NOLOCK, /* lost the lock: immediate stop, nothing to release */
    DEMOTE_OFFLINE,          /* DCS unreachable: fast stop, restart read-only without upstream */
} DemoteMode;

typedef struct Decision {
    HaAction action;
    DemoteMode demote_mode;
    bool as_primary;     /* HA_START */
    bool standby_leader; /* HA_UPDATE_LOCK, HA_ACQUIRE_LOCK in a standby cluster: no promotion; run as the standby
                          * leader following `target` (FOLLOW_REMOTE, or "" with nostream), demoting a primary
                          * first (Patroni's demote-cluster: fast stop, the leader key kept) */
    char target[128];    /* member name for CLONE/START/FOLLOW, "" = none */
    char message[512];   /* the cycle's summary line */
} Decision;

const char *ha_action_name(HaAction a);
const char *demote_mode_name(DemoteMode m);

void decide(const Observation *o, Decision *ret);

/* The status query failed with `query_result` (pg_query_status(): -ETIME for a statement timeout, SQLSTATE
 * 57014). Keep the previous answer (`have_cached`: the same postmaster answered before) as PostgreSQL's
 * state instead of taking it for not answering? Patroni 4.1 falls back to the cached role on a timeout: a
 * slow but running primary keeps its lock (no "starting" state, no demotion after ttl); any other error
 * (connection lost, server gone) is no answer. decide() then acts on the cached role, but a cached replica
 * neither races for the lock nor promotes, and a cached primary runs no manual failover (stale data). */
bool decide_keep_cached_status(int query_result, bool have_cached);

/* After the lock race was lost or a renewal failed (spec §4.5, §4.7): what the executor does next. */
typedef enum LockFailureAction {
    LOCK_FAIL_NOTHING,        /* nothing to undo (a replica, a paused cluster) */
    LOCK_FAIL_REREAD,         /* a primary lost the race: read the leader key from etcd, then ask again */
    LOCK_FAIL_MINE,           /* the key is ours after all (the cache lagged our own write) */
    LOCK_FAIL_STOP_STARTING,  /* a start as primary is under way: stop it */
    LOCK_FAIL_DEMOTE_NOLOCK,  /* another member holds the key: immediate stop */
    LOCK_FAIL_DEMOTE_OFFLINE, /* the DCS is unreachable: stop, restart read-only without upstream */
    LOCK_FAIL_FAILSAFE,       /* the DCS is unreachable, failsafe mode kept us primary (failsafe_survived) */
} LockFailureAction;

typedef struct LockFailure {
    bool dcs_error;                 /* the call failed (not a lost compare-and-swap) */
    bool reread;                    /* the leader key was read again after a lost race... */
    const char *holder;             /* ... and named this member (NULL: nobody, or the read failed) */
    bool while_starting_as_primary; /* PostgreSQL is being started as a primary */
    bool lease_over;                /* (executor) the lease reached its fence point meanwhile: stop at once */
    bool failsafe_survived;         /* (executor) failsafe mode on and every /failsafe member accepted our POST */
} LockFailure;

/* `action` is the decision whose lock call failed: HA_ACQUIRE_LOCK or one of the renewals. */
LockFailureAction decide_lock_failure(const LocalState *l, const DynConfig *dyn, const char *me, HaAction action,
                                      const LockFailure *f);

/* A member to clone from (the cluster has a leader): a running `clonefrom` member other than `me` and the
 * leader, else the leader. */
const char *decide_clone_source(const Cluster *c, const char *me);

/* Does this cycle need the other members' /patroni answers (a race, a switchover, a start that timed
 * out)? The executor probes them only then. */
bool decide_needs_peers(const Observation *o);

/* One member's answer to our POST /failsafe (spec §4.12): accepted = HTTP 200 with the body "Accepted". */
typedef struct FailsafeAnswer {
    const char *name;
    bool accepted;
} FailsafeAnswer;

/* The survival decision of a primary that cannot reach the DCS (spec §4.12): true when `key` (the last known
 * /failsafe object) names `me` and every other member it names has an accepted answer in `answers`; a key
 * that names only `me` passes. Otherwise false with the reason in why. */
bool failsafe_survives(const cJSON *key, const char *me, const FailsafeAnswer *answers, size_t n, char *why,
                       size_t why_len);

/* Spec §4.5: may this node take the leader key? (pure; uses o->peers). */
bool is_healthiest_node(const Observation *o, char *why, size_t why_len);
