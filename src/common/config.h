/* patroni.yml, read unchanged (spec §3). One declarative table (config_table.c: local_table[])
 * drives parsing, defaults, type and range validation, the dump (`pgha --print-config`) and the
 * diff on reload; the dynamic configuration (`bootstrap.dcs`, the DCS `/config` key) has a table
 * of its own (dyn_table[]) and the timing rule of spec §4.1. The implementation's files are
 * listed in config_int.h. */
#pragma once

#include <stdbool.h>

#include "common/util.h"
#include "common/yamltree.h"

/* Warnings and errors found while loading, each one naming file:line and the key's dotted path. */
typedef struct CfgDiag {
    StrList warnings;
    StrList errors;
} CfgDiag;

void cfg_diag_clear(CfgDiag *d);
void cfg_diag_log(const CfgDiag *d); /* warnings as WARNING, errors as ERROR */

typedef enum SyncMode { SYNC_OFF = 0, SYNC_ON, SYNC_QUORUM } SyncMode;
typedef enum WatchdogMode { WATCHDOG_OFF = 0, WATCHDOG_AUTOMATIC, WATCHDOG_REQUIRED } WatchdogMode;
typedef enum VerifyClient { VERIFY_NONE = 0, VERIFY_OPTIONAL, VERIFY_REQUIRED } VerifyClient;

const char *sync_mode_to_string(SyncMode m);
const char *watchdog_mode_to_string(WatchdogMode m);

/* The dynamic configuration (spec §3.7): `/config` in the DCS, or bootstrap.dcs. */
typedef struct DynConfig {
    long long ttl, loop_wait, retry_timeout;
    long long maximum_lag_on_failover;
    long long maximum_lag_on_syncnode;
    long long max_timelines_history;
    long long primary_start_timeout;
    long long primary_stop_timeout;
    int synchronous_mode; /* SyncMode */
    bool synchronous_mode_strict;
    long long synchronous_node_count;
    bool failsafe_mode;
    bool check_timeline;
    bool pause;
    long long member_slots_ttl; /* seconds */
    bool use_pg_rewind;
    bool use_slots;
    YNode *parameters; /* postgresql.parameters (map) or NULL */
    YNode *pg_hba;     /* postgresql.pg_hba (list) or NULL */
    YNode *pg_ident;
    YNode *recovery_conf;
    YNode *slots; /* permanent slots, from the first non-empty alias */
    YNode *ignore_slots;
    YNode *standby_cluster;
    YNode *raw;       /* the whole object as given (after timing adjustments) */
    bool present[64]; /* which dyn_table entries were given */
} DynConfig;

/* Parse and validate a dynamic configuration object. Applies the §4.1 minimums and the rule
 * loop_wait + 2*retry_timeout <= ttl exactly as Patroni does, with a warning saying what changed,
 * and writes the adjusted values into ret->raw. Returns 0, or -EINVAL with errors in diag. */
int dyn_config_parse(const YNode *obj, DynConfig *ret, CfgDiag *diag);
/* The same, with the shorter minimums of pgha.allow_short_ttl (ttl >= 5, retry_timeout >= 1). */
int dyn_config_parse_ex(const YNode *obj, bool allow_short_ttl, DynConfig *ret, CfgDiag *diag);
void dyn_config_defaults(DynConfig *ret);
void dyn_config_free(DynConfig *c);
bool dyn_config_is_set(const DynConfig *c, const char *path);
/* Patroni's is_standby_cluster: standby_cluster is a map whose host, port or restore_command is truthy. */
bool dyn_is_standby_cluster(const DynConfig *c);
/* standby_cluster.<key> as a string (a number's source text), NULL when absent, null or falsy. */
const char *dyn_standby_str(const DynConfig *c, const char *key);
/* standby_cluster.port (5432 when absent, or when it is not a port number: *ret_valid false then) */
int dyn_standby_port(const DynConfig *c, bool *ret_valid);

/* Exposed for tests: Patroni's adjustment of the three timings. Appends warnings to diag. */
void dyn_adjust_timeouts(long long *ttl, long long *loop_wait, long long *retry_timeout, CfgDiag *diag);

typedef struct PgAuth {
    char *username, *password;
    char *sslmode, *sslcert, *sslkey, *sslpassword, *sslrootcert, *sslcrl, *sslcrldir;
    char *gssencmode, *channel_binding, *sslnegotiation;
} PgAuth;

typedef struct PghaConfig {
    char *source; /* file or directory it came from, for messages */

    char *name, *scope, *namespace_;

    struct {
        char *listen, *connect_address;
        char *username, *password;
        char *certfile, *keyfile, *keyfile_password, *cafile, *ciphers;
        int verify_client; /* VerifyClient */
        StrList allowlist;
        bool allowlist_include_members;
        YNode *http_extra_headers, *https_extra_headers;
        long long request_queue_size;
        char *server_tokens; /* original | productonly | minimal (Patroni 4.1) */
    } restapi;

    struct {
        char *username, *password;
        bool insecure;
        char *cacert, *certfile, *keyfile, *keyfile_password;
    } ctl;

    struct {
        char *host;
        StrList hosts;
        long long port;
        char *url, *proxy, *srv, *srv_suffix, *protocol;
        bool use_proxies;
        char *username, *password;
        char *cacert, *cert, *key;
    } etcd3;

    struct {
        char *method;
        YNode *dcs;    /* raw bootstrap.dcs after timing adjustment: written to /config */
        DynConfig dyn; /* parsed bootstrap.dcs */
        YNode *initdb; /* list or map of initdb options */
        YNode *pg_hba; /* list of lines */
        char *post_bootstrap;
        YNode *method_section; /* bootstrap.<method> for a custom method */
    } bootstrap;

    struct {
        char *listen, *connect_address, *proxy_address;
        char *data_dir, *config_dir, *bin_dir, *pgpass, *database;
        char *custom_conf, *pre_promote, *before_stop;
        struct {
            char *pg_ctl, *initdb, *pg_controldata, *pg_basebackup, *postgres, *pg_isready, *pg_rewind;
        } bin_name;
        PgAuth superuser, replication, rewind;
        YNode *parameters, *pg_hba, *pg_ident, *recovery_conf;
        struct {
            char *on_start, *on_stop, *on_restart, *on_reload, *on_role_change;
        } callbacks;
        StrList create_replica_methods;
        YNode *basebackup;
        YNode *replica_methods; /* map: method name -> its section, for custom methods */
        bool use_unix_socket, use_unix_socket_repl;
        long long pg_ctl_timeout;
        bool use_pg_rewind;
        bool remove_data_directory_on_rewind_failure;
        bool remove_data_directory_on_diverged_timelines;
    } postgresql;

    struct {
        int mode; /* WatchdogMode */
        char *device;
        long long safety_margin;
    } watchdog;

    struct {
        YNode *all; /* the whole tags map (custom tags included) */
        bool nofailover, clonefrom, noloadbalance, nosync, nostream;
        long long failover_priority;
        long long sync_priority; /* Patroni 4.1: higher is preferred as a synchronous standby; <= 0 = nosync */
        char *replicatefrom;
    } tags;

    struct {
        char *type, *level, *traceback_level, *dateformat, *dir;
        YNode *format; /* string, list or map */
        YNode *static_fields, *loggers;
        long long max_queue_size, file_num, file_size, mode;
    } log;

    struct {
        long long group;
        char *database;
    } citus;

    struct {
        bool allow_short_ttl; /* pgha.allow_short_ttl: accept ttl down to 5 s (pgha-only key) */
        /* pgha.follow_etcd_cluster_change: the etcd client follows a new etcd cluster id after ttl of answers
         * only from it (pgha-only key; off: the cluster id stays pinned until a restart) */
        bool follow_etcd_cluster_change;
    } pgha;

    bool present[192]; /* which local_table entries were given */
} PghaConfig;

/* Where a configuration comes from: a file, a directory of .yml/.yaml files, or (path absent)
 * PATRONI_CONFIGURATION; plus the environment overrides, captured once at startup so that a
 * reload sees the same environment (as Patroni does). */
typedef struct CfgSource {
    char *path;
    YNode *env_overlay;      /* PATRONI_* / PGHA_* overrides, a map */
    char *env_configuration; /* PATRONI_CONFIGURATION text, or NULL */
    StrList env_consumed;    /* names of the variables used */
} CfgSource;

typedef char *(*EnvGetter)(const char *name, void *userdata);

/* The names of the variables in the environment (added to ret). */
typedef void (*EnvLister)(StrList *ret, void *userdata);

/* Build a source from `path` and the process environment (getter NULL = getenv, and the names from environ;
 * with a getter of its own, nothing that needs the names: the DCS sections other than etcd3 and
 * PATRONI_<user>_PASSWORD). */
void cfg_source_init(CfgSource *src, const char *path, EnvGetter get, void *userdata);
/* The same with a lister of the names (NULL: none). */
void cfg_source_init_env(CfgSource *src, const char *path, EnvGetter get, EnvLister list, void *userdata);
void cfg_source_free(CfgSource *src);
/* Remove the consumed variables from the environment, so they do not leak to PostgreSQL. */
void cfg_source_unset_env(const CfgSource *src);

/* Read the YAML (file, directory or PATRONI_CONFIGURATION) and merge the overlay. */
YNode *cfg_source_load_tree(const CfgSource *src, CfgDiag *diag);

/* Full load: tree -> typed config with defaults, validation, warnings. 0 or -EINVAL. */
int config_load(const CfgSource *src, PghaConfig *ret, CfgDiag *diag);
int config_from_tree(const YNode *root, const char *source, PghaConfig *ret, CfgDiag *diag);
void config_free(PghaConfig *c);
bool config_is_set(const PghaConfig *c, const char *path);

/* Environment checks made by `--validate-config` only: listen ports free (unless
 * ignore_listen_port), bin_dir has the binaries, data_dir usable. Adds to diag. */
void config_validate_environment(const PghaConfig *c, bool ignore_listen_port, CfgDiag *diag);

/* The effective local configuration as YAML (secrets masked unless show_secrets). */
char *config_dump(const PghaConfig *c, bool show_secrets);

/* What changed between two configurations: one line per changed key ("restapi.listen:
 * '127.0.0.1:8008' -> '127.0.0.1:8009'"), and whether any of them needs a pgha restart. */
typedef struct CfgChange {
    const char *path;
    char *old_value, *new_value;
    bool needs_restart;
} CfgChange;
size_t config_diff(const PghaConfig *a, const PghaConfig *b, CfgChange **ret_changes);
void config_changes_free(CfgChange *changes, size_t n);
/* Keep the running values of the keys that need a restart of pgha (name, scope, data_dir, ...)
 * in a configuration loaded by a reload. */
void config_keep_restart_values(PghaConfig *next, const PghaConfig *running);
/* The same for the keys of the REST server's socket and TLS (restapi.listen, connect_address, certfile &
 * co.): kept when a reload could not start the server with the new ones. */
void config_keep_restapi_values(PghaConfig *next, const PghaConfig *running);

/* host:port helpers. `listen` may carry several comma-separated addresses before the port. */
int parse_host_port(const char *s, int default_port, char **ret_host, int *ret_port);
int parse_listen(const char *s, StrList *ret_addresses, int *ret_port);

/* Member slot name for a member name (spec §3.7 / §7.9). */
char *slot_name_from_member_name(const char *name);

/* The GUCs only the dynamic configuration may set (spec §3.7.1), NULL-terminated: pgha writes them
 * itself (with Patroni's defaults) and passes most of them on the postmaster's command line. */
extern const char *const config_controlled_gucs[];
bool config_is_controlled_guc(const char *name);
