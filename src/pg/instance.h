/* The local PostgreSQL instance as one object: its binaries and version, the postmaster (pid and a
 * pidfd that becomes readable when it exits), the agent's libpq connection to it, and the control
 * operations (start, stop with escalation, reload, promote). Mechanism only: nothing here decides,
 * knows the DCS or logs; every call returns 0 / negative errno and says why in *ret_error. */
#pragma once

#include <libpq-fe.h>
#include <stdbool.h>
#include <sys/types.h>

#include "common/config.h"
#include "pg/pg.h"

typedef struct PgInstance {
    const PghaConfig *cfg; /* borrowed: the agent's configuration (replaced on reload) */
    char *bin_dir;
    int major;    /* 13..17, from `postgres --version` */
    pid_t pid;    /* the postmaster we watch, 0 when none */
    int pidfd;    /* -1 when none */
    PGconn *conn; /* the agent's connection (status queries, control statements) */
} PgInstance;

/* The binaries' version; refuses a data directory of another major version. */
int pg_instance_init(PgInstance *pg, const PghaConfig *cfg, char **ret_error);
void pg_instance_done(PgInstance *pg);

/* The agent's local connection parameters: the unix socket when use_unix_socket, else the first
 * listen address (a wildcard becomes loopback). */
void pg_local_conn_params(const PghaConfig *cfg, PgConnParams *p, char *hostbuf, size_t hostlen);
/* A connection to another database of the local server (logical slots live in one). Caller PQfinish()es. */
PGconn *pg_instance_connect_db(const PgInstance *pg, const char *dbname, const char *application_name,
                               char **ret_error);

/* The open connection, reconnecting when it broke: NULL with *ret_error set when PostgreSQL does not answer. */
PGconn *pg_instance_conn(PgInstance *pg, char **ret_error);
void pg_instance_close_conn(PgInstance *pg);

/* Watch pid as our postmaster. Returns 0, or -errno when no pidfd could be opened (its exit is then
 * noticed by polling). */
int pg_instance_attach(PgInstance *pg, pid_t pid);
/* Forget the postmaster (it exited or was stopped): closes the pidfd and the connection. */
void pg_instance_forget(PgInstance *pg);
/* Is the watched postmaster alive? (reaps it when it is our child and exited) */
bool pg_instance_alive(PgInstance *pg);
/* A postmaster of our data directory that runs without us (agent restarted): its postmaster.pid. */
bool pg_instance_find_running(const PgInstance *pg, PidFile *ret);

/* Spawn the postmaster with the configuration file and the command-line options; attach to it. */
int pg_instance_start(PgInstance *pg, const StrList *args, char **ret_error);

/* Ask the postmaster to stop (`mode`) and wait up to `limit`: 0 (stopped and forgotten) or -ETIMEDOUT (still
 * running: the caller escalates, to an immediate stop and then to pg_instance_kill()). */
int pg_instance_stop(PgInstance *pg, PgStopMode mode, usec_t limit);
/* Ask the postmaster to stop (`mode`) without waiting: the caller watches it go (pidfd, pg_instance_alive())
 * and escalates when it takes too long. 0, or -errno of kill(). */
int pg_instance_signal_stop(PgInstance *pg, PgStopMode mode);
/* IDENTIFY_SYSTEM over a replication connection to the local server, with the replication user (as Patroni
 * does to learn a running replica's timeline: the one it replays, which pg_control's checkpoint timeline
 * only reflects after a restartpoint). 0 with *ret_tli and *ret_lsn, or -errno with *ret_error. */
int pg_instance_identify_system(const PgInstance *pg, long long *ret_tli, long long *ret_lsn, char **ret_error);
/* What pgha asks a remote primary (a standby cluster's standby_cluster host:port) before rewinding from it
 * (Patroni's _check_timeline_and_lsn() with the remote member). */
typedef struct PgRemoteTimeline {
    bool in_recovery;          /* pg_is_in_recovery(): nothing else is asked then */
    char sysid[32];            /* IDENTIFY_SYSTEM's systemid */
    long long tli;             /* ... and timeline */
    PgTimelineSwitch *history; /* TIMELINE_HISTORY of that timeline (above 1) */
    size_t n_history;
} PgRemoteTimeline;
/* pg_is_in_recovery() with the rewind credentials, then IDENTIFY_SYSTEM and (above timeline 1) TIMELINE_HISTORY over
 * a replication connection with the replication credentials; each connection waits connect_timeout_s at most, each
 * command 5 s. 0, or a negative errno with *ret_error. Free with pg_remote_timeline_free(). */
int pg_remote_timeline(const PghaConfig *cfg, const char *host, int port, int connect_timeout_s, PgRemoteTimeline *ret,
                       char **ret_error);
void pg_remote_timeline_free(PgRemoteTimeline *r);
/* Before pg_rewind from a remote primary promoted to timeline `tli`: its pg_control must say so (before PostgreSQL
 * 16 pg_rewind reads the source's timeline there, and the checkpoint after a promotion is a spread one): when it
 * does not yet, a CHECKPOINT is run there with the rewind credentials (Patroni does the same). 0, or -EAGAIN with
 * *ret_error when it still does not. */
int pg_remote_checkpoint(const PghaConfig *cfg, const char *host, int port, long long tli, char **ret_error);
/* SIGKILL the postmaster (a hung one: stopped, or stuck in the kernel) and wait up to 5 s for it to go. */
int pg_instance_kill(PgInstance *pg);
/* SIGHUP to the postmaster. */
int pg_instance_reload(PgInstance *pg);
/* Promote with pg_promote() over the agent's connection (no fork/exec on the failover path). */
int pg_instance_promote(PgInstance *pg, char **ret_error);
/* Wake a promoting standby's startup process when it sleeps out wal_retrieve_retry_interval (wait event
 * RecoveryRetrieveRetryInterval) with SIGUSR2, the signal the postmaster forwards a promote request with: after
 * its walreceiver failed it may note the promote request and then sleep there (5 s by default) before it acts on
 * it, and nothing else wakes it. 0 when woken, -EAGAIN when it does not sleep there. */
int pg_instance_wake_startup(PgInstance *pg, char **ret_error);
/* Promote with `pg_ctl promote -W` (when pg_promote() could not be used). */
int pg_instance_promote_pg_ctl(PgInstance *pg, char **ret_error);
/* pg_controldata of the data directory. */
int pg_instance_controldata(const PgInstance *pg, ControlData *ret, char **ret_error);

/* pg_control states (the "Database cluster state" line). */
/* The last run was a primary: in production, shut down, shutting down, in crash recovery. */
bool pg_state_was_primary(const char *state);
/* The last run was a replica: in archive recovery, shut down in recovery. */
bool pg_state_was_replica(const char *state);
/* A primary that did not shut down cleanly: in production, in crash recovery. */
bool pg_state_needs_crash_recovery(const char *state);

/* ---- statements the agent runs (each with a statement timeout) ---- */

/* pg_current_wal_flush_lsn() as a byte position. */
int pg_current_flush_lsn(PGconn *c, long long *ret, char **ret_error);
/* A tiny WAL record (pg_logical_emit_message): every standby replies at once, so that commits waiting
 * on a changed synchronous_standby_names are released without waiting for wal_receiver_status_interval. */
int pg_emit_wake_message(PGconn *c, char **ret_error);
/* CHECKPOINT with a statement timeout (0: none). */
int pg_checkpoint(PGconn *c, int timeout_ms, char **ret_error);
/* Parameters waiting for a restart, except the recovery ones and hot_standby (as Patroni): names and
 * running values (parallel lists). */
int pg_pending_restart(PGconn *c, StrList *ret_names, StrList *ret_settings, char **ret_error);
/* A boolean setting (current_setting(name)::boolean). */
int pg_setting_bool(PGconn *c, const char *name, bool *ret, char **ret_error);
