/* The HA loop's state and the functions its files share (private to src/agent).
 *
 * struct Ha is made of parts, each owned (written) by one file:
 *   HaLocal  local.c      the local PostgreSQL as the agent sees it (instance, status, role, state)
 *   HaView   view.c       the cluster view from the DCS, the dynamic configuration, the lease deadline
 *   HaSync   sync_exec.c  synchronous replication on the primary (synchronous_standby_names, /sync)
 *   HaSlots  slots_exec.c replication slots
 *   HaWork   work.c       long actions in worker threads (bootstrap, clone, rewind, the post-promote CHECKPOINT)
 *   HaRestart restart.c   REST restart (carried over cycles), the scheduled restart, reinitialize
 *   HaStepdown stepdown.c a planned switchover on the leader (CHECKPOINT, stop, release; the lease renewed)
 *   HaDemoteCluster stepdown.c demote-cluster: the stop of a primary that becomes a standby leader (lease renewed)
 *   HaPublished publish.c what this node last wrote for others (/status)
 *   Watchdog   watchdog.c  the watchdog device (armed by execute.c and work.c, kept alive by view.c's
 *                          lease_renewed(), disarmed by execute.c and ha.c)
 *   the rest ha.c         the loop's own timing and flags
 * Other files read any part. */
#pragma once

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "agent/agent.h"
#include "agent/commands.h"
#include "agent/decide.h"
#include "agent/slots.h"
#include "agent/snapshot.h"
#include "agent/sync.h"
#include "agent/watchdog.h"
#include "common/json.h"
#include "common/log.h"
#include "dcs/dcs.h"
#include "pg/instance.h"
#include "pg/pg.h"

typedef struct Ha Ha;

/* ---- HaLocal (local.c) ---- */
typedef struct HaLocal {
    PgInstance inst;
    bool starting; /* spawned, not yet answering */
    bool start_as_primary;
    usec_t start_began;
    bool promoting;
    usec_t promote_sent;   /* when pg_promote() was sent (monotonic) */
    usec_t promote_nudged; /* when the startup process was last woken for it */
    /* a postmaster adopted after an agent restart that ran as a primary (postmaster.pid said "ready", or
     * pg_control "in production"): may be one until its status query answers */
    bool adopted_primary;
    bool expect_stop; /* we stopped it: its exit is no crash */
    bool crashed;
    PgStatus st;        /* the status query of this cycle */
    bool status_cached; /* it timed out: `st` is the previous answer (decide_keep_cached_status) */
    /* the highest timeline this postmaster (by its start time) reported as a replica: the status query's
     * value falls back to the last restartpoint's when the walreceiver is not connected */
    long long replica_tl;
    double replica_tl_start;
    char sysid[32];
    bool have_controldata;
    ControlData cd;
    char state[64];      /* member state: running, stopped, starting, ... */
    char role[32];       /* primary, replica, uninitialized, demoted, promoted */
    char following[128]; /* the member replication points at ("" = none) */
    bool following_set;  /* false after an agent restart until the configuration is written */
    bool pending_restart;
    cJSON *pending_reason; /* {"guc":{"old_value":..,"new_value":..}} */
    /* pg_control's settings at the last start in recovery (Patroni's effective_configuration): parameters
     * configured lower run with pg_control's values and count as pending a restart */
    bool effective_set;
    ControlData effective_cd;
    /* a custom bootstrap's point-in-time recovery that promotes (or stops) at its target, or recovery files a
     * restore tool left: started with hot_standby off (Patroni's effective_configuration) */
    bool effective_hot_standby_off;
    usec_t not_answering_since;
    bool diverged;      /* a replica whose WAL went past the leader's timeline switch: rewind it */
    bool rewind_failed; /* pg_rewind failed and the data directory was kept: do not loop on it */
    bool diverged_reported;
    bool rewind_unusable_logged; /* use_pg_rewind is on but pg_rewind cannot be used: said once */
    /* a stop that the loop watches instead of waiting for it (stop_postgres_begin) */
    bool stopping;
    PgStopMode stop_mode;
    usec_t stop_began;
    bool quiet;                 /* a restart: no on_stop/on_start callbacks (on_restart follows) */
    long long start_timeout;    /* s: the limit of the current start when a restart set one, else 0 */
    bool stop_patient;          /* a switchover's stop: not escalated (local_set_stop_patience) */
    usec_t not_streaming_since; /* a running replica not streaming on the cluster's timeline: since when */
    long long server_version;   /* the last one PostgreSQL reported (150005) */
    PgCallbacks callbacks;      /* the callback executor */
    bool cb_called;             /* on_start, on_stop, on_restart or on_role_change was due once (Patroni's cb_called) */
    bool start_role_change;     /* the start under way reports on_role_change, not on_start (Patroni's follow()) */
    bool reload_requested;      /* the agent's configuration was reloaded: PostgreSQL reloads (and on_reload runs) */
    char stop_role[32];         /* the role when the last stop began (on_stop reports it) */
} HaLocal;

/* ---- HaView (view.c) ---- */
typedef struct HaView {
    Cluster *cluster;     /* NULL when the DCS could not be read this cycle */
    Cluster *last_locked; /* the last view with a leader: the candidate set of the next race */
    DynConfig dyn;
    long long dyn_version;
    bool dyn_loaded;
    long long dcs_last_seen;
    usec_t cluster_read_at;
    usec_t lock_valid_until; /* monotonic: our lease counts until then */
} HaView;

/* ---- HaPublished (publish.c) ---- */
typedef struct HaPublished {
    char *last_status; /* last /status value we wrote */
} HaPublished;

/* ---- HaSync (sync_exec.c) ---- */
typedef struct HaSync {
    char *ssn;          /* synchronous_standby_names while pgha manages it (synchronous mode), else NULL */
    long long flush;    /* primary flush LSN when ssn last took effect (0: not known yet) */
    usec_t grace_until; /* quorum mode after a promotion: remove no voter before this */
    bool leaving;       /* about to stop: publish nosync so that the leader releases us first */
} HaSync;

/* ---- HaSlots (slots_exec.c) ---- */
/* A copied logical slot waiting for its readiness check, with the catalog_xmin its original had on the
 * primary when the primary's physical slot for us first held one (0: not yet). */
typedef struct PendingSlot {
    char *name;
    long long primary_xmin;
} PendingSlot;

typedef struct HaSlots {
    PgSlot *rows; /* pg_replication_slots as read this cycle */
    size_t n_rows;
    bool rows_ok;
    bool synced;         /* slots_sync() ran this cycle */
    int timeout_ms;      /* of the next statement of slots_sync(): what is left of the cycle's budget */
    usec_t deadline;     /* lock holder: the slot work of this cycle ends here (monotonic; 0 no limit) */
    RetainTimers retain; /* leader: when each member slot was last seen (retain_slots) */
    char *errors_logged;
    bool enforce_hsf;     /* hot_standby_feedback forced on: this node (or a cascade below it) carries them */
    StrList recopy;       /* advance failed for lack of WAL or invalidation: copy again */
    PendingSlot *unready; /* copies not yet known to be safe to use after a failover */
    size_t n_unready;
    bool check_local;    /* after a (re)start: check the local logical slots' readiness again */
    usec_t copy_after;   /* back-off after a refused or failed copy */
    StrList copy_logged; /* copy notes already logged (cleared when there is nothing to copy) */
} HaSlots;

/* ---- HaWork (work.c) ---- */
typedef enum TaskKind { TASK_NONE, TASK_BOOTSTRAP, TASK_CLONE, TASK_REWIND, TASK_REINIT } TaskKind;

typedef struct Task {
    TaskKind kind;
    pthread_t thread;
    _Atomic bool done;
    int result;
    char *error;
    char host[256];
    int port;
    bool crash_recovery;  /* rewind: finish crash recovery first */
    long long source_tli; /* rewind from a standby cluster's remote primary: its timeline (its checkpoint first) */
    char *method;         /* clone, reinitialize: the replica method that created the data directory */
    StrList methods;      /* clone, reinitialize in a standby cluster: standby_cluster.create_replica_methods
                          * (default basebackup) instead of postgresql.create_replica_methods */
    PgChild child;        /* the tool it runs, stopped at shutdown */
    Ha *ha;
} Task;

typedef struct HaWork {
    Task task;
    bool bootstrap_pending; /* initdb done or running: roles, post_bootstrap and the DCS keys follow */
    /* the bootstrap of a standby cluster: a clone of the remote primary instead of initdb, started in recovery;
     * then only the DCS keys (Patroni's bootstrap_standby_leader) */
    bool standby_bootstrap;
    /* a custom bootstrap (bootstrap.<method>) until post_bootstrap finished: PostgreSQL starts with the
     * method's recovery_conf (or the recovery files it left) and a pg_hba.conf that trusts local connections */
    bool custom_bootstrap;
    /* the CHECKPOINT after a promotion (pg_rewind on other nodes needs it): run in a thread */
    pthread_t checkpoint_thread;
    bool checkpoint_running;
    _Atomic bool checkpoint_done;
    bool checkpoint_pending; /* published as checkpoint_after_promote: false */
} HaWork;

/* ---- HaRestart (restart.c) ---- */
typedef enum RestartPhase {
    RESTART_IDLE,
    RESTART_LEAVING_SYNC,
    RESTART_STOPPING,
    RESTART_STARTING,
    RESTART_REINIT_STOPPING, /* reinitialize: PostgreSQL stops, then the removal and the clone */
} RestartPhase;

typedef struct HaRestart {
    RestartPhase phase;
    usec_t phase_began;
    Command *cmd;          /* the POST /restart waiting for the outcome, or NULL (a scheduled restart) */
    long long timeout;     /* s: the start's limit (the request's timeout, else primary_start_timeout) */
    bool as_primary;       /* PostgreSQL ran as the primary when the restart began */
    char target[128];      /* a replica's upstream when the restart began */
    long long wait;        /* s: how long the restart waits for the start (timeout, or pg_ctl_timeout when 0) */
    char reinit_host[256]; /* reinitialize: the clone's source once PostgreSQL stopped */
    int reinit_port;
    cJSON *scheduled;    /* the scheduled restart, as published in the member key, or NULL */
    double scheduled_at; /* its time (epoch s) */
} HaRestart;

/* ---- HaStepdown (stepdown.c) ---- */
typedef enum StepdownPhase {
    STEPDOWN_IDLE,
    STEPDOWN_CHECKPOINT, /* a CHECKPOINT in a worker thread */
    STEPDOWN_STOPPING,   /* the fast stop, watched, never escalated while the lease is ours */
    STEPDOWN_HANDOVER,   /* stopped cleanly: waiting for the candidate to confirm the shutdown checkpoint */
    STEPDOWN_RELEASED,   /* released while the postmaster still finished: a replica once it has exited */
} StepdownPhase;

typedef struct HaStepdown {
    StepdownPhase phase;
    usec_t began, stopped_at;
    usec_t next_early_look; /* STOPPING: when pg_control is looked at again (stepdown_between_cycles) */
    char candidate[128];
    pthread_t thread; /* the CHECKPOINT */
    bool thread_running;
    _Atomic bool checkpoint_done;
    char *checkpoint_error; /* written by the thread before checkpoint_done */
} HaStepdown;

/* demote-cluster (stepdown.c): a primary whose cluster became a standby cluster stops (fast, watched, the lease
 * renewed) and starts in recovery following the remote primary as the standby leader */
typedef struct HaDemoteCluster {
    bool active;      /* the stop was asked for; the start follows once the postmaster has exited */
    char target[128]; /* whom to follow then (FOLLOW_REMOTE, or "" with nostream) */
    usec_t began;
} HaDemoteCluster;

/* ---- HaFailsafe (failsafe.c, view.c) ---- */
/* Failsafe mode (spec §4.12). A primary that cannot reach the DCS runs on a licence instead of its lease: the
 * lease's fence point carried over when the DCS fails, then extended by each survival decision (every other
 * member of /failsafe accepted our POST /failsafe), never past ttl from the sending of the POSTs. */
/* The time a round of POST /failsafe may take: 2 s per attempt, one retry. */
#define FAILSAFE_POST_BUDGET (4 * USEC_PER_SEC)

typedef struct HaFailsafe {
    usec_t licence_until; /* monotonic: the fence point of a primary running on failsafe (0: none) */
    bool active;          /* a survival decision was made since the last lease renewal (failsafe_mode_is_active) */
    usec_t round_sent;    /* when the last round of POST /failsafe was sent */
    cJSON *key;           /* the /failsafe object of the last cluster view read, or NULL */
} HaFailsafe;

struct Ha {
    Agent *a;
    Dcs *dcs;
    int wake_fd;
    int cmd_fd;             /* a command was queued: run it without a cycle */
    CommandQueue *commands; /* REST commands (commands_exec.c) */
    HaLocal pg;
    HaView view;
    HaSync sync;
    HaSlots slots;
    HaWork work;
    HaRestart restart;
    HaStepdown stepdown;
    HaDemoteCluster demote_cluster;
    HaPublished published;
    Watchdog wd;
    HaFailsafe failsafe;
    /* the loop (ha.c) */
    usec_t next_cycle;
    usec_t last_cycle;
    bool reload_pending;
    bool tilt; /* this cycle is stale (TILT): observe only */
    bool fatal;
    usec_t promote_failed_at; /* a promotion failed and the key was given back: out of the race for a ttl */
    AgentCounters counters;   /* GET /metrics: cycles (ha.c), promotions (local.c), demotions (execute.c) */
};

static inline const PghaConfig *cfg_of(const Ha *h) { return &h->a->cfg; }

/* ha.c */
void ha_wake(void *ud);

/* view.c */
int parse_iso8601(const char *s, double *ret);
const DynConfig *dyn_of(const Ha *h);
int loop_wait_s(const Ha *h);
int ttl_s(const Ha *h);
bool use_slots(const Ha *h);
const Member *member_by_name(const Ha *h, const char *name);
bool member_host_port(const Member *m, char *host, size_t hostlen, int *port);
bool is_lock_holder(const Ha *h);
/* The lease counts from the renewal's send time (taken before the call, so before any wait for the
 * connection); it also caps the HA thread's DCS calls (dcs_set_lease_deadline) at lease_fence_at(). */
void lease_renewed(Ha *h, usec_t sent_at);
void lease_lost(Ha *h);
/* The lease deadline is hard: a primary stops this long before its lease runs out (2 s, at most ttl/4), so
 * that it has stopped taking writes by the time anyone else can take the key. */
usec_t lease_fence_margin(const Ha *h);
/* lock_valid_until less that margin (monotonic), or 0 without a lease: when a primary is fenced, the end of
 * its DCS calls' time, and the end of its "leader" answers to health checks. */
usec_t lease_fence_at(const Ha *h);
/* Until when (monotonic) the lease holder may go on with optional work in a cycle (the slots): the fence point
 * less retry_timeout, the worst case of the renewal that must follow; 0 without a lease (no limit). */
usec_t lease_work_deadline(const Ha *h);
/* The point where a primary is fenced (fence_expired_lease): the lease's fence point or, running on failsafe,
 * the failsafe licence, whichever is later; 0 with neither. */
usec_t primary_fence_at(const Ha *h);
/* The DCS failed on a primary with failsafe mode on: the fence point it had (primary_fence_at() before the
 * failure) stays its licence while the survival decision is made. */
void failsafe_carry_licence(Ha *h, usec_t fence);
/* The survival decision passed (the POSTs were sent at h->failsafe.round_sent): the licence runs until the next
 * decision is due (loop_wait, retry_timeout for its DCS calls, FAILSAFE_POST_BUDGET, the fence margin), never
 * past round_sent + ttl less the fence margin: every member that accepted promised not to race for ttl from its
 * receipt. Meanwhile the DCS calls end FAILSAFE_POST_BUDGET before the licence does. */
void failsafe_licence_extend(Ha *h);
/* The licence ends: a lease renewal (the lease is the licence again), a demotion, a fence. */
void failsafe_licence_end(Ha *h);
void view_read_cluster(Ha *h, usec_t now);
/* The watchdog's settings: watchdog.* of the local configuration, ttl and loop_wait of the dynamic one. */
WatchdogSettings watchdog_settings(const Ha *h);
void refresh_dynamic_config(Ha *h);
void view_reread(Ha *h);
/* ... from the watch cache only (no wait, no network call); the view is kept when the cache is not ready */
void view_reread_cached(Ha *h);
void view_free(HaView *v);

/* local.c */
void set_state(Ha *h, const char *state);
void set_role(Ha *h, const char *role);
PGconn *local_conn(Ha *h);
void write_pgpass(Ha *h);
int write_configuration(Ha *h, bool as_primary, const char *target);
void reload_postgres(Ha *h);
void run_callback(Ha *h, const char *action, const char *role);
int start_postgres(Ha *h, bool as_primary, const char *target);
int stop_postgres(Ha *h, PgStopMode mode, const char *why);
int stop_postgres_begin(Ha *h, PgStopMode mode, const char *why);
void local_set_quiet(Ha *h, bool quiet);
void local_set_start_timeout(Ha *h, long long s);
void local_set_stop_patience(Ha *h, bool patient);
int promote_postgres(Ha *h);
void refresh_controldata(Ha *h);
void observe_pg(Ha *h, LocalState *l);
void apply_config_changes(Ha *h);
void local_config_reloaded(Ha *h);
void local_mark_diverged(Ha *h);
void local_divergence_reported(Ha *h);
void local_rewind_finished(Ha *h, bool ok);
void local_data_replaced(Ha *h);
void remove_data_directory(Ha *h);
void local_free(HaLocal *l);

/* stepdown.c */
const char *stepdown_action(const Ha *h);
void stepdown_begin(Ha *h, const char *candidate);
bool stepdown_step(Ha *h);
void stepdown_abort(Ha *h);
/* Between cycles, while PostgreSQL stops for a switchover: has pg_control got the clean shutdown and the
 * candidate the shutdown checkpoint? Then the key is released at once (true: run a cycle now). */
bool stepdown_between_cycles(Ha *h);
bool stepdown_stopping(const Ha *h);
int stepdown_shutdown(Ha *h); /* agent shutdown on the lock holder: stop, hand over early */
void stepdown_free(Ha *h);
const char *demote_cluster_action(const Ha *h); /* "demote-cluster" while its stop runs, or NULL */
void demote_cluster_begin(Ha *h, const char *target);
bool demote_cluster_step(Ha *h); /* the postmaster has exited: the start as standby leader (true) */
void demote_cluster_abort(Ha *h);

/* restart.c */
const char *restart_action(const Ha *h);
bool restart_step(Ha *h);
void restart_abort(Ha *h);
void restart_evaluate_scheduled(Ha *h);
void restart_command(Ha *h, Command *c);
void reinit_command(Ha *h, Command *c, const Cluster *cl);
void restart_free(HaRestart *r);

/* publish.c */
char *api_url(const Ha *h);
char *member_conn_url(const Ha *h); /* postgres://host:port/dbname, as in the member key */
void touch_member(Ha *h);
void update_history(Ha *h);
void update_status(Ha *h);
void write_status_optime_only(Ha *h, long long optime);
void publish(Ha *h);
/* Before PostgreSQL stops on a node that is or may be the primary (a demotion, a switchover, any stop): a
 * snapshot that no longer says "leader" (the health checks answer 503 from now on) and shows PostgreSQL as
 * stopping, published before the first step that may block. */
void publish_stopping(Ha *h);
void publish_free(HaPublished *p);

/* work.c */
const char *task_name(TaskKind k);
void task_start(Ha *h, TaskKind kind, const char *host, int port, bool crash_recovery);
/* ... a rewind from a standby cluster's remote primary on timeline source_tli (its checkpoint after the promotion
 * is made sure of first) */
void task_start_rewind(Ha *h, TaskKind kind, const char *host, int port, bool crash_recovery, long long source_tli);
/* standby_cluster.create_replica_methods (default basebackup): what a clone uses in a standby cluster */
void standby_replica_methods(Ha *h, StrList *ret);
void task_stop(Ha *h);
void finish_task(Ha *h);
void start_post_promote_checkpoint(Ha *h);
void finish_post_promote_checkpoint(Ha *h, bool wait);
void post_bootstrap(Ha *h);
void bootstrap_begin(Ha *h);
void standby_bootstrap_begin(Ha *h);
void bootstrap_abandon(Ha *h);

/* slots_exec.c */
void slots_sync(Ha *h);
void slots_on_promote(Ha *h);
void update_enforce_hsf(Ha *h);
void slots_input(Ha *h, SlotsInput *in);
void slots_new_cycle(Ha *h);
void slots_postgres_started(Ha *h);
void slots_free(HaSlots *s);

/* sync_exec.c */
bool sync_mode_on(const Ha *h);
void sync_config_params(const Ha *h, YNode *params, bool as_primary);
int sync_before_promote(Ha *h);
void sync_process(Ha *h);
void leave_sync_duty(Ha *h);
bool sync_leave_begin(Ha *h);
bool sync_leave_named(const Ha *h);
void sync_leave_end(Ha *h);
void sync_forget(Ha *h);

/* failsafe.c */
/* Remember the /failsafe key of the cluster view just read (the survival decision uses the last one known). */
void failsafe_remember_key(Ha *h);
/* POST /failsafe to every other member of the last known /failsafe key, in parallel: 2 s per attempt, one retry
 * after a transport error, all of it ended by `deadline` (monotonic; an answer not in by then is a refusal).
 * Sets h->failsafe.round_sent. Returns the survival decision (failsafe_survives()). */
bool failsafe_check(Ha *h, usec_t deadline);
/* The lock holder, right after a successful lock update with failsafe mode on: write /failsafe (every member
 * with an api_url, and us) when it differs from the cluster view's. */
void failsafe_update_key(Ha *h);
/* The member whose POST /failsafe this node accepted less than ttl ago (copied into buf), or NULL. */
const char *failsafe_window_leader(Ha *h, char *buf, size_t len);
void failsafe_free(HaFailsafe *f);

/* commands_exec.c: at most one queued command, and only when its DCS calls can end before the next cycle
 * (next_cycle bounds them); re-wakes the loop (ha_commands_wake) when more wait. */
void commands_run(Ha *h);
/* Right after a cycle: one command, even when the next cycle is due sooner than the budget (then it waits). */
void commands_run_after_cycle(Ha *h);
/* ha.c: the queue's wake-up (no HA cycle) */
void ha_commands_wake(void *ud);

/* execute.c */
/* PostgreSQL runs and is, or may be, a primary: it answers as one, or does not answer and was one, is
 * promoting, or is starting as one. */
bool may_be_primary(const Ha *h);
/* How long the before_stop script may run before the stop signal (below 1 s: it is not run): pg_ctl_timeout;
 * on a node that is or may be a primary, or holds the lock, also the lease less a loop_wait (so that the next
 * cycle renews it in time) and never past the fence point; nothing without a lease left. */
usec_t before_stop_limit(const Ha *h, usec_t now);
/* The hard lease deadline: past lease_fence_at(), a primary (not paused) is stopped at once (immediate, then
 * SIGKILL; restarted read-only without upstream), whatever the cycle was doing, TILT or not. Returns true
 * when it fenced. Called before each step of a cycle that may block, and between cycles. */
bool fence_expired_lease(Ha *h);
void execute(Ha *h, Decision *d, const LocalState *l);
void demote(Ha *h, DemoteMode mode);
void demote_finish(Ha *h, DemoteMode mode, bool release);
void demote_finish_at(Ha *h, DemoteMode mode, bool release, long long checkpoint);
/* Before PostgreSQL runs, or keeps running, as the primary (the lock is ours; spec §4.6 step 1, §4.13): arm
 * the watchdog unless it is armed or the cluster is paused. Every path that starts or keeps a primary calls it
 * (the cycle's renewal, an acquisition, a restart's start, a failed switchover's start). False when `required`
 * cannot be met: whatever may run as the primary (may_be_primary()) has then been demoted (immediate),
 * otherwise the key was given back; said in `message` (may be NULL). */
bool enforce_watchdog(Ha *h, char *message, size_t message_len);
