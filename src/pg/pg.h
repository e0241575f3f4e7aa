/* The local PostgreSQL: binaries, data directory, the postmaster process, libpq status queries,
 * and the configuration files pgha manages (spec §3.6, §3.7.1). Nothing here knows about the
 * DCS or the HA loop; every function returns 0/negative errno with a message in *ret_error or
 * the instance's `error` buffer, and the agent decides what to log. */
#pragma once

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include "common/config.h"
#include "common/util.h"

typedef struct cJSON cJSON;

/* ---- pg_controldata ---- */

typedef struct ControlData {
    char state[64];             /* "in production", "shut down", "shut down in recovery", ... */
    char sysid[32];             /* Database system identifier */
    long long checkpoint_lsn;   /* Latest checkpoint location */
    long long redo_lsn;         /* Latest checkpoint's REDO location */
    long long checkpoint_tli;   /* Latest checkpoint's TimeLineID */
    long long min_recovery_lsn; /* Minimum recovery ending location */
    long long min_recovery_tli;
    bool wal_log_hints;
    int data_checksum_version;
    /* the settings recovery needs at least (Patroni's effective_configuration); -1: not printed */
    long long max_connections, max_prepared_xacts, max_locks_per_xact, max_worker_processes, max_wal_senders;
} ControlData;

int pg_controldata(const char *bin_path, const char *data_dir, ControlData *ret, char **ret_error);
/* A cheap look at global/pg_control without pg_controldata: does it say "shut down" (a primary's clean
 * shutdown checkpoint is written)? false also when the file cannot be read. */
bool pg_control_says_shut_down(const char *data_dir);
/* "16/B374D848" -> absolute byte position. */
int pg_parse_lsn(const char *s, long long *ret);
void pg_format_lsn(long long lsn, char *buf, size_t len);

/* ---- data directory ---- */

bool pg_data_dir_empty(const char *dir); /* missing or empty */
int pg_data_dir_major(const char *dir);  /* from PG_VERSION: 15, 16, ... or -errno */
/* `postgres --version` of a binary directory: 150005 style, or -errno. */
int pg_bin_version(const char *postgres_path);

/* postmaster.pid */
typedef struct PidFile {
    pid_t pid;
    long long start_time; /* epoch seconds */
    int port;
    char socket_dir[256];
    char listen[256];
    char status[16]; /* "starting", "stopping", "ready", "standby", "" */
} PidFile;
int pg_read_pid_file(const char *data_dir, PidFile *ret);

/* pg_wal/<tl>.history: the switches that led to timeline `tl`, oldest first, and the file's mtime. */
typedef struct PgTimelineSwitch {
    long long tli; /* the timeline that ended */
    long long lsn; /* where it ended */
    char *reason;
} PgTimelineSwitch;
int pg_read_timeline_history(const char *data_dir, long long tl, PgTimelineSwitch **ret, size_t *ret_n,
                             time_t *ret_mtime, char **ret_error);
void pg_timeline_history_free(PgTimelineSwitch *h, size_t n);
/* The same from a history file's text (of len bytes, not NUL-terminated: TIMELINE_HISTORY's content); lines
 * that are not "<tli> <lsn> [reason]" are skipped. */
void pg_parse_timeline_history(const char *text, size_t len, PgTimelineSwitch **ret, size_t *ret_n);
/* Where the oldest WAL segment file in <data_dir>/pg_wal starts (an LSN; segment files of any timeline,
 * named as PostgreSQL's XLogFileName()), for segments of seg_size bytes. 0 when there is none or the
 * directory cannot be read. A copied logical slot needs the WAL from its restart_lsn on: PostgreSQL
 * decodes from there (pg_replication_slot_advance, and the consumer after a promotion). */
long long pg_oldest_wal_lsn(const char *data_dir, long long seg_size);

/* ---- the postmaster process ---- */

typedef enum PgStopMode { PG_STOP_SMART, PG_STOP_FAST, PG_STOP_IMMEDIATE } PgStopMode;

/* Start `postgres -D data_dir --config-file=... <args>` in its own session. Returns its pid. */
int pg_spawn_postmaster(const char *postgres_path, const char *data_dir, const char *config_file, const StrList *args,
                        pid_t *ret_pid, char **ret_error);
/* A pidfd that becomes readable when the process exits (works for non-children too), or -errno. */
int pg_pidfd(pid_t pid);
bool pg_process_alive(pid_t pid);
/* Is pid the postmaster of data_dir (and not another process that reuses a stale pid)? Its command line
 * is `postgres ... -D data_dir` without --single, and it started within 3 s of pidfile_start_time
 * (postmaster.pid's start time; 0: not compared). */
bool pg_is_postmaster_of(pid_t pid, const char *data_dir, long long pidfile_start_time);
/* Signal the postmaster and wait up to timeout for it to exit. 0, -ETIMEDOUT, -ESRCH. */
int pg_signal_stop(pid_t pid, PgStopMode mode, usec_t timeout);

/* Run a command, wait for it (up to timeout: reading its output and waiting for its exit together; its
 * process group is SIGKILLed after), capture stdout+stderr. Returns the
 * exit status (>= 0), or -errno (-ECANCELED: cancelled through the thread's PgChild before it ran).
 * argv[0] without a '/' is looked up in PATH; extra_env ("NAME=value") adds to or replaces the
 * environment. Everything the child needs is prepared before fork(): between fork() and execve() the
 * child calls only async-signal-safe functions (the agent is multi-threaded). The child runs in a
 * process group of its own. */
int run_command(const StrList *argv, const StrList *extra_env, usec_t timeout, char **ret_output);
/* run_command() of a command line of the configuration (before_stop, pre_promote, post_bootstrap) as Patroni
 * runs it: split as Python's shlex.split() does, no shell (`$VAR`, `&&`, `>` are plain words), `extra_arg`
 * (or NULL) appended. A line that cannot be split (an open quote) or is empty: -EINVAL, the reason in
 * *ret_output. */
int run_split(const char *line, const char *extra_arg, const StrList *extra_env, usec_t timeout, char **ret_output);
/* Patroni's CallbackExecutor: callbacks run without being waited for, one at a time: starting one kills
 * the previous one (of its slot; on_reload has a slot of its own) with its process group (its children),
 * whether it still runs or has left children behind. Used by one thread. */
typedef struct PgCallbacks {
    pid_t pid;        /* the last callback (a process group leader, reaped by the next run), 0 when none */
    pid_t reload_pid; /* the last on_reload callback */
} PgCallbacks;
/* Start argv (argv[0] looked up in PATH) in its own session, stdin /dev/null. 0, or -errno (and
 * *ret_error) when it could not be started. */
int pg_callback_run(PgCallbacks *cb, bool reload_slot, const StrList *argv, char **ret_error);

/* A long-running tool (pg_basebackup, pg_rewind) that another thread may have to stop: a worker thread
 * binds a PgChild with pg_child_bind(); run_command() in that thread then publishes its child's pid
 * there, and pg_child_cancel() from any thread kills the child's process group and makes the thread's
 * later run_command() calls fail with -ECANCELED. */
typedef struct PgChild {
    pthread_mutex_t lock;
    pid_t pid; /* the running child (its process group), 0 when none */
    bool cancelled;
} PgChild;
void pg_child_init(PgChild *c);
void pg_child_destroy(PgChild *c);
void pg_child_bind(PgChild *c); /* for the calling thread; NULL unbinds */
/* Mark cancelled and send sig to the running child's process group (if any). */
void pg_child_cancel(PgChild *c, int sig);
/* Has the calling thread's bound PgChild been cancelled? */
bool pg_child_cancelled(void);

/* ---- connections and the status query ---- */

typedef struct PgConnParams {
    const char *host; /* socket dir or address */
    int port;
    const char *user, *password, *dbname;
    const char *application_name;
    int connect_timeout;            /* seconds */
    const PgAuth *ssl;              /* sslmode etc., may be NULL */
    const char *gssencmode_default; /* when the credentials do not set gssencmode */
    bool replication;               /* a physical replication connection (walsender protocol, no dbname) */
} PgConnParams;

PGconn *pg_connect(const PgConnParams *p, char **ret_error);
/* Run a query with a statement timeout (ms). Returns the result (PGRES_TUPLES_OK or COMMAND_OK)
 * or NULL with *ret_error set (including the SQLSTATE). */
PGresult *pg_query(PGconn *c, const char *sql, int timeout_ms, char **ret_error);
/* The same with parameters $1..$n (text values; NULL is SQL NULL): no quoting of values by hand. */
PGresult *pg_query_params(PGconn *c, const char *sql, int n_params, const char *const *params, int timeout_ms,
                          char **ret_error);
/* A column of a result row as a number: 0 when it is NULL or not a number (what atoll()/atof()
 * gave for the "" of a NULL, without their undefined behaviour on out-of-range values). */
/* One command with a client-side deadline of timeout_ms (+1 s) and nothing else: no statement_timeout set first
 * (a replication command, say). NULL with *ret_error when it could not be sent or did not answer in time (the
 * connection is then unusable); otherwise the last result, whatever its status. */
PGresult *pg_exec_deadline(PGconn *c, const char *sql, int timeout_ms, char **ret_error);
long long pg_value_ll(const PGresult *r, int row, int col);
double pg_value_double(const PGresult *r, int row, int col);

typedef struct PgStatus {
    bool ok;                       /* the query ran */
    long long server_version;      /* 150005 */
    double postmaster_start_time;  /* epoch seconds with microseconds */
    char postmaster_start_str[64]; /* "2024-08-28 19:39:26.352526+00:00" */
    bool in_recovery;
    long long timeline;     /* primary: current; replica: receiver/replay timeline or 0 */
    long long wal_position; /* primary: flush LSN; replica: max(last_receive_lsn, replay_lsn) */
    long long flush_lsn;    /* primary */
    /* Replica positions as Patroni 4.1 computes them (0: unknown), see pg_status_set_positions(). */
    long long receive_lsn;      /* /patroni received_location: written_lsn, else pg_last_wal_receive_lsn(),
                                   else replay_lsn */
    long long replay_lsn;       /* pg_last_wal_replay_lsn() */
    long long last_receive_lsn; /* member key receive_lsn: max(pg_last_wal_receive_lsn(), written_lsn) */
    long long written_lsn;      /* pg_stat_wal_receiver.written_lsn (PostgreSQL 13+) */
    long long latest_end_lsn;   /* pg_stat_wal_receiver.latest_end_lsn: the upstream's WAL end it last reported */
    bool replay_paused;
    bool has_replay_timestamp;
    char replay_timestamp[64];
    bool streaming; /* WAL receiver streaming */
    char receiver_slot[128];
    char receiver_conninfo[1024];
    char synchronous_standby_names[1024];
    char synchronous_commit[32];
    cJSON *replication; /* pg_stat_replication rows, or NULL */
} PgStatus;

/* The status query (2 s statement_timeout): 0, -ETIME when it ran into its statement_timeout (SQLSTATE
 * 57014: the server answers but is slow; the connection stays usable), or another negative errno. */
int pg_query_status(PGconn *c, PgStatus *ret, char **ret_error);
/* The replica positions of a status from the raw values the status query read (0 for NULL): `receive` is
 * pg_last_wal_receive_lsn() (the flushed position), `written` pg_stat_wal_receiver.written_lsn (0 before
 * PostgreSQL 13 or without a WAL receiver); replay_lsn, flush_lsn and in_recovery are set already. Sets
 * written_lsn, last_receive_lsn, receive_lsn and wal_position as Patroni 4.1 does (pure). */
void pg_status_set_positions(PgStatus *s, long long receive, long long written);
void pg_status_free(PgStatus *s);

/* ---- replication slots (spec §4.11) ---- */

/* One row of pg_replication_slots (temporary slots are not listed). */
typedef struct PgSlot {
    char *name;
    bool logical;
    char *plugin, *database; /* logical slots only, else NULL */
    bool active;
    bool has_xmin;                 /* xmin IS NOT NULL (hot_standby_feedback through the slot) */
    long long restart_lsn;         /* 0 when NULL */
    long long confirmed_flush_lsn; /* 0 when NULL */
    long long catalog_xmin;        /* 0 when NULL (InvalidTransactionId) */
    bool lost;                     /* wal_status = 'lost' (PostgreSQL 13+): the WAL it kept was removed */
} PgSlot;

void pg_slots_free(PgSlot *slots, size_t n);

/* pg_replication_slots (without temporary slots). */
int pg_slots_read(PGconn *c, int timeout_ms, PgSlot **ret, size_t *ret_n, char **ret_error);
/* Drop a slot unless it is active: 1 dropped (or already gone), 0 active (kept), negative on error. */
int pg_slot_drop(PGconn *c, const char *name, int timeout_ms, char **ret_error);
/* Create a slot unless one of that name and type exists: 1 created, 0 it existed, negative on error. */
int pg_slot_create_physical(PGconn *c, const char *name, int timeout_ms, char **ret_error);
/* `c` is a connection to the slot's database. */
int pg_slot_create_logical(PGconn *c, const char *name, const char *plugin, int timeout_ms, char **ret_error);
/* pg_replication_slot_advance(); for a logical slot `c` is a connection to its database. */
int pg_slot_advance(PGconn *c, const char *name, long long lsn, int timeout_ms, char **ret_error);

/* What a replica needs before it copies logical slots. */
typedef struct PgSlotCopySettings {
    bool wal_level_logical;
    bool hot_standby_feedback;
    long long free_slots;       /* max_replication_slots - slots in use */
    long long wal_segment_size; /* bytes */
} PgSlotCopySettings;
int pg_slot_copy_settings(PGconn *c, PgSlotCopySettings *ret, char **ret_error);

/* A logical slot on the primary, with its state file (pg_replslot/<name>/state). */
typedef struct PgSlotState {
    char *name, *type, *database, *plugin; /* database, plugin may be NULL */
    long long confirmed_flush_lsn, restart_lsn;
    unsigned char *state; /* NULL when it could not be read */
    size_t state_len;
} PgSlotState;
/* On the primary (`c` connects to it with a role that may read files): the named slots. */
int pg_slot_states_read(PGconn *c, const StrList *names, PgSlotState **ret, size_t *ret_n, char **ret_error);
void pg_slot_states_free(PgSlotState *s, size_t n);
/* On the primary: catalog_xmin of the named slots (0 when NULL), as parallel lists; a slot that does not
 * exist is not listed. */
int pg_slot_catalog_xmins(PGconn *c, const StrList *names, StrList *ret_names, long long **ret_xmins, char **ret_error);
/* Write pg_replslot/<name>/state as PostgreSQL does (a .tmp directory, fsync, rename); PostgreSQL must
 * be stopped, and loads it at its next start. */
int pg_write_slot_state(const char *data_dir, const char *name, const unsigned char *data, size_t len,
                        char **ret_error);

/* ---- configuration files ---- */

/* A GUC value as PostgreSQL's configuration file wants it (quoted, escaped). */
char *pg_guc_quote(const char *value);
/* Render a YAML/JSON scalar as Patroni does: booleans -> on/off, numbers as written. */
char *pg_guc_value_string(const YNode *v);

/* ---- the files pgha writes (spec §3.6) ---- */

/* The effective server parameters: dynamic postgresql.parameters, local ones on top (except the
 * GUCs only the dynamic configuration may set), Patroni's controlled GUCs validated with their
 * defaults, listen_addresses/port from postgresql.listen, cluster_name = scope, and version
 * translation (wal_keep_segments -> wal_keep_size on 13+). Returns a map name -> string value;
 * warnings (invalid values replaced by defaults) are appended to `warnings`. */
YNode *pg_build_parameters(const PghaConfig *cfg, const YNode *dyn_parameters, int major, StrList *warnings);
/* Patroni's effective_configuration for a start in recovery: a server in recovery refuses to run with
 * max_connections, max_prepared_transactions, max_locks_per_transaction, max_worker_processes or (12+)
 * max_wal_senders lower than the primary's, which pg_control records. Raises each such parameter of `params`
 * to pg_control's value; for each raised one, appends "name" to `ret_names`, pg_control's value to
 * `ret_control` and the configured one to `ret_configured` (any of them may be NULL). Returns how many. */
int pg_effective_parameters(YNode *params, const ControlData *cd, int major, StrList *ret_names, StrList *ret_control,
                            StrList *ret_configured);

/* postgresql.conf (including postgresql.base.conf, the original renamed on first use), with the
 * recovery settings appended when `recovery` is a non-NULL map. */
int pg_write_postgresql_conf(const PghaConfig *cfg, const YNode *params, const YNode *recovery, char **ret_error);
char *pg_render_postgresql_conf(const PghaConfig *cfg, const YNode *params, const YNode *recovery);
/* pg_write_postgresql_conf() unless the file already has that content: 1 written, 0 unchanged, or -errno. */
int pg_update_postgresql_conf(const PghaConfig *cfg, const YNode *params, const YNode *recovery, char **ret_error);
/* With config_dir outside data_dir: copy pg_hba.conf, pg_ident.conf and postgresql.conf (as
 * postgresql.base.conf) from data_dir where config_dir has none yet. Problems go to `warnings`. */
void pg_prepare_config_dir(const PghaConfig *cfg, StrList *warnings);
/* pg_hba.conf from a list of lines (replaces the file). */
int pg_write_hba(const char *path, const YNode *lines, bool append, char **ret_error);
/* The passfile: one line per (host, port, user, password); `*` matches anything. */
int pg_write_pgpass(const char *path, const StrList *lines, char **ret_error);
char *pg_pgpass_line(const char *host, const char *port, const char *user, const char *password);
int pg_set_standby_signal(const char *data_dir, bool standby, char **ret_error);
/* Controlled GUCs as --name=value options for the postmaster command line. */
void pg_cmdline_options(const YNode *params, StrList *ret);

/* The replication connection string to an upstream (libpq key=value form). */
char *pg_primary_conninfo(const PghaConfig *cfg, const char *host, int port);

/* ---- creating and repairing data directories ---- */

/* Options from bootstrap.initdb / postgresql.basebackup (a list of names and one-key maps, or a
 * map) as --name / --name=value arguments. */
void pg_render_options(const YNode *opts, StrList *ret);

/* initdb with the configured options, --username and a temporary --pwfile. */
int pg_initdb(const PghaConfig *cfg, const char *bin_dir, char **ret_error);
/* Superuser password, the replication role, the rewind role (spec §3.5). */
int pg_create_roles(PGconn *c, const PghaConfig *cfg, int major, char **ret_error);
/* pg_basebackup from host:port with the replication credentials; 2 attempts 5 s apart. */
int pg_basebackup(const PghaConfig *cfg, const char *bin_dir, const char *host, int port, char **ret_error);
/* A custom method's command (argv, cleared): run to its end (a day at most), stopped only through the
 * thread's PgChild. 0, the exit code, or -errno; on failure *ret_error says `<command> exited with code=N`
 * and the tail of its output. */
int pg_run_method(StrList *argv, const StrList *env, char **ret_error);
/* The connection string a replica method gets (--connstring): the replication credentials to host:port,
 * the password left to the passfile. */
char *pg_replication_dsn(const PghaConfig *cfg, const char *host, int port);
/* Patroni's _custom_bootstrap(): bootstrap.<method>'s command with --scope, --datadir (unless no_params)
 * and --key=value for the other keys; then no promote trigger file; with recovery_conf a recovery.signal
 * (standby.signal with standby_mode), else the recovery files removed unless keep_existing_recovery_conf. */
int pg_custom_bootstrap(const PghaConfig *cfg, char **ret_error);
/* on: pg_hba.conf trusts local connections and those from local_host (its addresses) while a custom
 * bootstrap runs, the file that was there kept aside; off: that file back. */
int pg_custom_bootstrap_hba(const char *config_dir, const char *local_host, bool on, char **ret_error);
/* recovery.conf, standby.signal, recovery.signal removed (Patroni's remove_recovery_conf). */
int pg_remove_recovery_conf(const char *data_dir, char **ret_error);

/* ---- methods.c: the command lines of the custom methods (pure) ---- */

/* Python's shlex.split() (POSIX mode): words appended to *ret; -EINVAL on an unclosed quote. */
int pg_shlex_split(const char *s, StrList *ret, char **ret_error);
/* A custom replica method's command line, as Patroni builds it: shlex.split(command or the method's name),
 * then --key=value for the section's keys (not `command`), where without no_params scope, role=replica,
 * datadir and connstring are set (a key of the section with one of those names gets that value in its
 * place), and with no_params the keys no_params, no_master, no_leader and keep_data are left out. Values as
 * Python's str() prints them (True, False, None). */
int pg_replica_method_argv(const char *method, const YNode *section, const char *scope, const char *data_dir,
                           const char *connstring, StrList *ret, char **ret_error);
/* The custom bootstrap's command line: shlex.split(command), --scope and --datadir unless no_params, then
 * --key=value for the keys other than command, no_params, keep_existing_recovery_conf, recovery_conf, scope,
 * datadir. */
int pg_bootstrap_method_argv(const YNode *section, const char *scope, const char *data_dir, StrList *ret,
                             char **ret_error);
/* A method that works without a replication source: not basebackup, and its no_leader is true. */
bool pg_replica_method_without_leader(const char *method, const YNode *section);
/* Some method of create_replica_methods does (spec §4.2 B5). */
/* methods: the list that applies (standby_cluster's in a standby cluster), NULL for create_replica_methods */
bool pg_replica_methods_without_leader(const PghaConfig *cfg, const StrList *methods);

/* Finish crash recovery with a single-user postmaster so that pg_rewind can run. */
int pg_crash_recovery(const PghaConfig *cfg, const char *bin_dir, char **ret_error);
/* pg_rewind against host:port with the rewind credentials. */
int pg_rewind(const PghaConfig *cfg, const char *bin_dir, const char *host, int port, char **ret_error);
/* Patroni's can_rewind, the binary's part: `pg_rewind --help` runs and exits 0. */
bool pg_rewind_usable(const PghaConfig *cfg, const char *bin_dir);
/* Where the WAL record at `lsn` on timeline `tl` (a checkpoint) ends in the local pg_wal, read with
 * `pg_waldump -t tl -s lsn -n 2` as Patroni's _get_checkpoint_end() does (the error about the second
 * record names the position after the first); 0 when it cannot be told. */
long long pg_checkpoint_end(const PghaConfig *cfg, const char *bin_dir, long long tl, long long lsn);
/* ... the parsing of pg_waldump's output (stdout and stderr together), for tests. */
long long pg_waldump_record_end(const char *output, long long lsn);
/* Remove everything in the data directory (only on explicit configuration, see DESIGN inv. 4). */
int pg_remove_data_directory(const char *data_dir, char **ret_error);
/* Rename a failed bootstrap's data directory out of the way: <dir>_<YYYY-MM-DD-HH-MM-SS>. */
int pg_move_data_directory_aside(const char *data_dir, char **ret_error);
/* The path of a binary: bin_dir/name, or name (PATH) when bin_dir is empty. */
char *pg_bin(const char *bin_dir, const char *name);
