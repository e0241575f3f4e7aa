#include "common/config.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

/* ------------------------------------------------------------------------------------------ */
/* diagnostics                                                                                 */

void cfg_diag_clear(CfgDiag *d) {
    strlist_clear(&d->warnings);
    strlist_clear(&d->errors);
}

void cfg_diag_log(const CfgDiag *d) {
    for (size_t i = 0; i < d->warnings.n; i++)
        log_warning("%s", d->warnings.v[i]);
    for (size_t i = 0; i < d->errors.n; i++)
        log_error("%s", d->errors.v[i]);
}

static void diag_add(StrList *l, const YNode *where, const char *fallback_source, const char *path,
                     const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));
static void diag_add(StrList *l, const YNode *where, const char *fallback_source, const char *path,
                     const char *fmt, va_list ap) {
    _cleanup_free_ char *msg = xvasprintf(fmt, ap);
    _cleanup_free_ char *loc = NULL;
    if (where && where->file && *where->file)
        loc = where->line > 0 ? xasprintf("%s:%d", where->file, where->line) : xstrdup(where->file);
    else if (fallback_source)
        loc = xstrdup(fallback_source);
    _cleanup_free_ char *line = NULL;
    if (loc && path)
        line = xasprintf("%s: %s: %s", loc, path, msg);
    else if (loc)
        line = xasprintf("%s: %s", loc, msg);
    else if (path)
        line = xasprintf("%s: %s", path, msg);
    else
        line = xstrdup(msg);
    strlist_add(l, line);
}

static void diag_error(CfgDiag *d, const YNode *where, const char *src, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void diag_error(CfgDiag *d, const YNode *where, const char *src, const char *path, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    diag_add(&d->errors, where, src, path, fmt, ap);
    va_end(ap);
}

static void diag_warn(CfgDiag *d, const YNode *where, const char *src, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void diag_warn(CfgDiag *d, const YNode *where, const char *src, const char *path, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    diag_add(&d->warnings, where, src, path, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------------------------ */
/* the declarative tables                                                                      */

typedef enum CfgType {
    CT_SECTION,   /* a mapping that holds other entries */
    CT_STR,
    CT_INT,
    CT_BOOL,
    CT_STRLIST,   /* list of scalars, or one comma-separated string */
    CT_MAP,       /* raw mapping kept as a YNode */
    CT_LIST,      /* raw list kept as a YNode */
    CT_ANY,       /* raw value of any shape */
    CT_DURATION,  /* seconds: an integer or "30min", "2h", "90s", "1d" */
    CT_SYNCMODE,
    CT_WATCHDOG,
    CT_ENUM,      /* a string among `choices` */
} CfgType;

enum {
    CF_REQUIRED = 1 << 0,
    CF_SECRET = 1 << 1,
    CF_RESTART = 1 << 2,  /* a change needs a pgha restart */
    CF_HOSTPORT = 1 << 3, /* host:port */
    CF_LISTEN = 1 << 4,   /* addr[,addr...]:port */
    CF_NOWARN = 1 << 5,   /* accepted and ignored (an implementation detail of Patroni) */
    CF_INDEX = 1 << 6,    /* CT_ENUM stored as the int index into choices, not as a string */
};

typedef struct CfgEntry {
    const char *path;
    CfgType type;
    size_t offset;
    const char *def;        /* default, parsed like a YAML plain scalar; NULL: absent */
    long long min, max;     /* CT_INT / CT_DURATION bounds (min > max: unbounded) */
    unsigned flags;
    const char *const *choices;
    const char *alias;      /* legacy name accepted when `path` is absent */
} CfgEntry;

#define NOB 1, 0 /* no bounds */
#define L(field) offsetof(PghaConfig, field)
#define D(field) offsetof(DynConfig, field)
#define NO_OFFSET ((size_t)-1)

static const char *const protocol_choices[] = {"http", "https", NULL};
static const char *const verify_choices[] = {"none", "optional", "required", NULL};
static const char *const log_type_choices[] = {"plain", "json", NULL};

#define AUTH_ENTRIES(kind)                                                                             \
    {"postgresql.authentication." #kind, CT_SECTION, NO_OFFSET, NULL, NOB, 0, NULL, NULL},             \
    {"postgresql.authentication." #kind ".username", CT_STR, L(postgresql.kind.username), NULL, NOB,   \
     0, NULL, NULL},                                                                                   \
    {"postgresql.authentication." #kind ".password", CT_STR, L(postgresql.kind.password), NULL, NOB,   \
     CF_SECRET, NULL, NULL},                                                                           \
    {"postgresql.authentication." #kind ".sslmode", CT_STR, L(postgresql.kind.sslmode), NULL, NOB, 0,  \
     NULL, NULL},                                                                                      \
    {"postgresql.authentication." #kind ".sslcert", CT_STR, L(postgresql.kind.sslcert), NULL, NOB, 0,  \
     NULL, NULL},                                                                                      \
    {"postgresql.authentication." #kind ".sslkey", CT_STR, L(postgresql.kind.sslkey), NULL, NOB, 0,    \
     NULL, NULL},                                                                                      \
    {"postgresql.authentication." #kind ".sslpassword", CT_STR, L(postgresql.kind.sslpassword), NULL,  \
     NOB, CF_SECRET, NULL, NULL},                                                                      \
    {"postgresql.authentication." #kind ".sslrootcert", CT_STR, L(postgresql.kind.sslrootcert), NULL,  \
     NOB, 0, NULL, NULL},                                                                              \
    {"postgresql.authentication." #kind ".sslcrl", CT_STR, L(postgresql.kind.sslcrl), NULL, NOB, 0,    \
     NULL, NULL},                                                                                      \
    {"postgresql.authentication." #kind ".sslcrldir", CT_STR, L(postgresql.kind.sslcrldir), NULL, NOB, \
     0, NULL, NULL},                                                                                   \
    {"postgresql.authentication." #kind ".gssencmode", CT_STR, L(postgresql.kind.gssencmode), NULL,    \
     NOB, 0, NULL, NULL},                                                                              \
    {"postgresql.authentication." #kind ".channel_binding", CT_STR,                                    \
     L(postgresql.kind.channel_binding), NULL, NOB, 0, NULL, NULL},                                    \
    {"postgresql.authentication." #kind ".sslnegotiation", CT_STR, L(postgresql.kind.sslnegotiation),  \
     NULL, NOB, 0, NULL, NULL}

static const CfgEntry local_table[] = {
    {"name", CT_STR, L(name), NULL, NOB, CF_REQUIRED | CF_RESTART, NULL, NULL},
    {"scope", CT_STR, L(scope), NULL, NOB, CF_REQUIRED | CF_RESTART, NULL, NULL},
    {"namespace", CT_STR, L(namespace_), "/service", NOB, CF_RESTART, NULL, NULL},

    {"restapi", CT_SECTION, NO_OFFSET, NULL, NOB, CF_REQUIRED, NULL, NULL},
    {"restapi.listen", CT_STR, L(restapi.listen), NULL, NOB, CF_REQUIRED | CF_HOSTPORT, NULL, NULL},
    {"restapi.connect_address", CT_STR, L(restapi.connect_address), NULL, NOB, CF_HOSTPORT, NULL, NULL},
    {"restapi.authentication", CT_SECTION, NO_OFFSET, NULL, NOB, 0, NULL, NULL},
    {"restapi.authentication.username", CT_STR, L(restapi.username), NULL, NOB, 0, NULL, NULL},
    {"restapi.authentication.password", CT_STR, L(restapi.password), NULL, NOB, CF_SECRET, NULL, NULL},
    {"restapi.certfile", CT_STR, L(restapi.certfile), NULL, NOB, 0, NULL, NULL},
    {"restapi.keyfile", CT_STR, L(restapi.keyfile), NULL, NOB, 0, NULL, NULL},
    {"restapi.keyfile_password", CT_STR, L(restapi.keyfile_password), NULL, NOB, CF_SECRET, NULL, NULL},
    {"restapi.cafile", CT_STR, L(restapi.cafile), NULL, NOB, 0, NULL, NULL},
    {"restapi.ciphers", CT_STR, L(restapi.ciphers), NULL, NOB, 0, NULL, NULL},
    {"restapi.verify_client", CT_ENUM, L(restapi.verify_client), "none", NOB, CF_INDEX, verify_choices,
     NULL},
    {"restapi.allowlist", CT_STRLIST, L(restapi.allowlist), NULL, NOB, 0, NULL, NULL},
    {"restapi.allowlist_include_members", CT_BOOL, L(restapi.allowlist_include_members), "false", NOB, 0,
     NULL, NULL},
    {"restapi.http_extra_headers", CT_MAP, L(restapi.http_extra_headers), NULL, NOB, 0, NULL, NULL},
    {"restapi.https_extra_headers", CT_MAP, L(restapi.https_extra_headers), NULL, NOB, 0, NULL, NULL},
    {"restapi.request_queue_size", CT_INT, L(restapi.request_queue_size), "5", 0, 4096, CF_RESTART, NULL,
     NULL},

    {"ctl", CT_SECTION, NO_OFFSET, NULL, NOB, 0, NULL, NULL},
    {"ctl.authentication", CT_SECTION, NO_OFFSET, NULL, NOB, 0, NULL, NULL},
    {"ctl.authentication.username", CT_STR, L(ctl.username), NULL, NOB, 0, NULL, NULL},
    {"ctl.authentication.password", CT_STR, L(ctl.password), NULL, NOB, CF_SECRET, NULL, NULL},
    {"ctl.insecure", CT_BOOL, L(ctl.insecure), "false", NOB, 0, NULL, NULL},
    {"ctl.cacert", CT_STR, L(ctl.cacert), NULL, NOB, 0, NULL, NULL},
    {"ctl.certfile", CT_STR, L(ctl.certfile), NULL, NOB, 0, NULL, NULL},
    {"ctl.keyfile", CT_STR, L(ctl.keyfile), NULL, NOB, 0, NULL, NULL},
    {"ctl.keyfile_password", CT_STR, L(ctl.keyfile_password), NULL, NOB, CF_SECRET, NULL, NULL},

    {"etcd3", CT_SECTION, NO_OFFSET, NULL, NOB, 0, NULL, NULL},
    {"etcd3.host", CT_STR, L(etcd3.host), NULL, NOB, CF_HOSTPORT, NULL, NULL},
    {"etcd3.hosts", CT_STRLIST, L(etcd3.hosts), NULL, NOB, 0, NULL, NULL},
    {"etcd3.port", CT_INT, L(etcd3.port), "2379", 1, 65535, 0, NULL, NULL},
    {"etcd3.url", CT_STR, L(etcd3.url), NULL, NOB, 0, NULL, NULL},
    {"etcd3.proxy", CT_STR, L(etcd3.proxy), NULL, NOB, 0, NULL, NULL},
    {"etcd3.srv", CT_STR, L(etcd3.srv), NULL, NOB, 0, NULL, "etcd3.discovery_srv"},
    {"etcd3.srv_suffix", CT_STR, L(etcd3.srv_suffix), NULL, NOB, 0, NULL, NULL},
    {"etcd3.protocol", CT_ENUM, L(etcd3.protocol), "http", NOB, 0, protocol_choices, NULL},
    {"etcd3.use_proxies", CT_BOOL, L(etcd3.use_proxies), "false", NOB, 0, NULL, NULL},
    {"etcd3.username", CT_STR, L(etcd3.username), NULL, NOB, 0, NULL, NULL},
    {"etcd3.password", CT_STR, L(etcd3.password), NULL, NOB, CF_SECRET, NULL, NULL},
    {"etcd3.cacert", CT_STR, L(etcd3.cacert), NULL, NOB, 0, NULL, "etcd3.ca_cert"},
    {"etcd3.cert", CT_STR, L(etcd3.cert), NULL, NOB, 0, NULL, "etcd3.cert_file"},
    {"etcd3.key", CT_STR, L(etcd3.key), NULL, NOB, 0, NULL, "etcd3.key_file"},

    {"bootstrap", CT_SECTION, NO_OFFSET, NULL, NOB, 0, NULL, NULL},
    {"bootstrap.method", CT_STR, L(bootstrap.method), "initdb", NOB, 0, NULL, NULL},
    {"bootstrap.dcs", CT_MAP, L(bootstrap.dcs), NULL, NOB, 0, NULL, NULL},
    {"bootstrap.initdb", CT_ANY, L(bootstrap.initdb), NULL, NOB, 0, NULL, NULL},
    {"bootstrap.pg_hba", CT_LIST, L(bootstrap.pg_hba), NULL, NOB, 0, NULL, NULL},
    {"bootstrap.post_bootstrap", CT_STR, L(bootstrap.post_bootstrap), NULL, NOB, 0, NULL,
     "bootstrap.post_init"},

    {"postgresql", CT_SECTION, NO_OFFSET, NULL, NOB, CF_REQUIRED, NULL, NULL},
    {"postgresql.listen", CT_STR, L(postgresql.listen), NULL, NOB, CF_REQUIRED | CF_LISTEN, NULL, NULL},
    {"postgresql.connect_address", CT_STR, L(postgresql.connect_address), NULL, NOB, CF_HOSTPORT, NULL,
     NULL},
    {"postgresql.proxy_address", CT_STR, L(postgresql.proxy_address), NULL, NOB, CF_HOSTPORT, NULL, NULL},
    {"postgresql.data_dir", CT_STR, L(postgresql.data_dir), NULL, NOB, CF_REQUIRED | CF_RESTART, NULL,
     NULL},
    {"postgresql.config_dir", CT_STR, L(postgresql.config_dir), NULL, NOB, CF_RESTART, NULL, NULL},
    {"postgresql.bin_dir", CT_STR, L(postgresql.bin_dir), "", NOB, 0, NULL, NULL},
    {"postgresql.pgpass", CT_STR, L(postgresql.pgpass), NULL, NOB, 0, NULL, NULL},
    {"postgresql.database", CT_STR, L(postgresql.database), "postgres", NOB, 0, NULL, NULL},
    {"postgresql.custom_conf", CT_STR, L(postgresql.custom_conf), NULL, NOB, 0, NULL, NULL},
    {"postgresql.pre_promote", CT_STR, L(postgresql.pre_promote), NULL, NOB, 0, NULL, NULL},
    {"postgresql.before_stop", CT_STR, L(postgresql.before_stop), NULL, NOB, 0, NULL, NULL},
    {"postgresql.bin_name", CT_SECTION, NO_OFFSET, NULL, NOB, 0, NULL, NULL},
    {"postgresql.bin_name.pg_ctl", CT_STR, L(postgresql.bin_name.pg_ctl), "pg_ctl", NOB, 0, NULL, NULL},
    {"postgresql.bin_name.initdb", CT_STR, L(postgresql.bin_name.initdb), "initdb", NOB, 0, NULL, NULL},
    {"postgresql.bin_name.pg_controldata", CT_STR, L(postgresql.bin_name.pg_controldata), "pg_controldata",
     NOB, 0, NULL, NULL},
    {"postgresql.bin_name.pg_basebackup", CT_STR, L(postgresql.bin_name.pg_basebackup), "pg_basebackup",
     NOB, 0, NULL, NULL},
    {"postgresql.bin_name.postgres", CT_STR, L(postgresql.bin_name.postgres), "postgres", NOB, 0, NULL,
     NULL},
    {"postgresql.bin_name.pg_isready", CT_STR, L(postgresql.bin_name.pg_isready), "pg_isready", NOB, 0,
     NULL, NULL},
    {"postgresql.bin_name.pg_rewind", CT_STR, L(postgresql.bin_name.pg_rewind), "pg_rewind", NOB, 0, NULL,
     NULL},
    {"postgresql.authentication", CT_SECTION, NO_OFFSET, NULL, NOB, CF_REQUIRED, NULL, NULL},
    AUTH_ENTRIES(superuser),
    AUTH_ENTRIES(replication),
    AUTH_ENTRIES(rewind),
    {"postgresql.parameters", CT_MAP, L(postgresql.parameters), NULL, NOB, 0, NULL, NULL},
    {"postgresql.pg_hba", CT_LIST, L(postgresql.pg_hba), NULL, NOB, 0, NULL, NULL},
    {"postgresql.pg_ident", CT_LIST, L(postgresql.pg_ident), NULL, NOB, 0, NULL, NULL},
    {"postgresql.recovery_conf", CT_MAP, L(postgresql.recovery_conf), NULL, NOB, 0, NULL, NULL},
    {"postgresql.callbacks", CT_SECTION, NO_OFFSET, NULL, NOB, 0, NULL, NULL},
    {"postgresql.callbacks.on_start", CT_STR, L(postgresql.callbacks.on_start), NULL, NOB, 0, NULL, NULL},
    {"postgresql.callbacks.on_stop", CT_STR, L(postgresql.callbacks.on_stop), NULL, NOB, 0, NULL, NULL},
    {"postgresql.callbacks.on_restart", CT_STR, L(postgresql.callbacks.on_restart), NULL, NOB, 0, NULL,
     NULL},
    {"postgresql.callbacks.on_reload", CT_STR, L(postgresql.callbacks.on_reload), NULL, NOB, 0, NULL, NULL},
    {"postgresql.callbacks.on_role_change", CT_STR, L(postgresql.callbacks.on_role_change), NULL, NOB, 0,
     NULL, NULL},
    {"postgresql.create_replica_methods", CT_STRLIST, L(postgresql.create_replica_methods), NULL, NOB, 0,
     NULL, "postgresql.create_replica_method"},
    {"postgresql.basebackup", CT_ANY, L(postgresql.basebackup), NULL, NOB, 0, NULL, NULL},
    {"postgresql.use_unix_socket", CT_BOOL, L(postgresql.use_unix_socket), "false", NOB, 0, NULL, NULL},
    {"postgresql.use_unix_socket_repl", CT_BOOL, L(postgresql.use_unix_socket_repl), "false", NOB, 0, NULL,
     NULL},
    {"postgresql.pg_ctl_timeout", CT_INT, L(postgresql.pg_ctl_timeout), "60", 1, 86400, 0, NULL, NULL},
    {"postgresql.use_pg_rewind", CT_BOOL, L(postgresql.use_pg_rewind), "false", NOB, 0, NULL, NULL},
    {"postgresql.remove_data_directory_on_rewind_failure", CT_BOOL,
     L(postgresql.remove_data_directory_on_rewind_failure), "false", NOB, 0, NULL, NULL},
    {"postgresql.remove_data_directory_on_diverged_timelines", CT_BOOL,
     L(postgresql.remove_data_directory_on_diverged_timelines), "false", NOB, 0, NULL, NULL},

    {"watchdog", CT_SECTION, NO_OFFSET, NULL, NOB, 0, NULL, NULL},
    {"watchdog.mode", CT_WATCHDOG, L(watchdog.mode), "automatic", NOB, 0, NULL, NULL},
    {"watchdog.device", CT_STR, L(watchdog.device), "/dev/watchdog", NOB, 0, NULL, NULL},
    {"watchdog.safety_margin", CT_INT, L(watchdog.safety_margin), "5", -1, 86400, 0, NULL, NULL},

    {"tags", CT_MAP, L(tags.all), NULL, NOB, 0, NULL, NULL},
    {"tags.nofailover", CT_BOOL, L(tags.nofailover), "false", NOB, 0, NULL, NULL},
    {"tags.clonefrom", CT_BOOL, L(tags.clonefrom), "false", NOB, 0, NULL, NULL},
    {"tags.noloadbalance", CT_BOOL, L(tags.noloadbalance), "false", NOB, 0, NULL, NULL},
    {"tags.nosync", CT_BOOL, L(tags.nosync), "false", NOB, 0, NULL, NULL},
    {"tags.nostream", CT_BOOL, L(tags.nostream), "false", NOB, 0, NULL, NULL},
    {"tags.failover_priority", CT_INT, L(tags.failover_priority), "1", NOB, 0, NULL, NULL},
    {"tags.replicatefrom", CT_STR, L(tags.replicatefrom), NULL, NOB, 0, NULL, NULL},

    {"log", CT_SECTION, NO_OFFSET, NULL, NOB, 0, NULL, NULL},
    {"log.type", CT_ENUM, L(log.type), "plain", NOB, 0, log_type_choices, NULL},
    {"log.level", CT_STR, L(log.level), "INFO", NOB, 0, NULL, NULL},
    {"log.traceback_level", CT_STR, L(log.traceback_level), "ERROR", NOB, 0, NULL, NULL},
    {"log.format", CT_ANY, L(log.format), NULL, NOB, 0, NULL, NULL},
    {"log.dateformat", CT_STR, L(log.dateformat), NULL, NOB, 0, NULL, NULL},
    {"log.static_fields", CT_MAP, L(log.static_fields), NULL, NOB, 0, NULL, NULL},
    {"log.max_queue_size", CT_INT, L(log.max_queue_size), "1000", 1, 1000000, CF_NOWARN, NULL, NULL},
    {"log.dir", CT_STR, L(log.dir), NULL, NOB, 0, NULL, NULL},
    {"log.mode", CT_INT, L(log.mode), NULL, 0, 07777, 0, NULL, NULL},
    {"log.file_num", CT_INT, L(log.file_num), "4", 0, 1000, 0, NULL, NULL},
    {"log.file_size", CT_INT, L(log.file_size), "25000000", 1, 1LL << 40, 0, NULL, NULL},
    {"log.loggers", CT_MAP, L(log.loggers), NULL, NOB, 0, NULL, NULL},

    {"pgha", CT_SECTION, NO_OFFSET, NULL, NOB, 0, NULL, NULL},
    {"pgha.allow_short_ttl", CT_BOOL, L(pgha.allow_short_ttl), "false", NOB, 0, NULL, NULL},

    {"citus", CT_SECTION, NO_OFFSET, NULL, NOB, 0, NULL, NULL},
    {"citus.group", CT_INT, L(citus.group), NULL, 0, 1000000, CF_RESTART, NULL, NULL},
    {"citus.database", CT_STR, L(citus.database), NULL, NOB, 0, NULL, NULL},
};

static const CfgEntry dyn_table[] = {
    {"ttl", CT_INT, D(ttl), "30", NOB, 0, NULL, NULL},
    {"loop_wait", CT_INT, D(loop_wait), "10", NOB, 0, NULL, NULL},
    {"retry_timeout", CT_INT, D(retry_timeout), "10", NOB, 0, NULL, NULL},
    {"maximum_lag_on_failover", CT_INT, D(maximum_lag_on_failover), "1048576", 0, LLONG_MAX, 0, NULL, NULL},
    {"maximum_lag_on_syncnode", CT_INT, D(maximum_lag_on_syncnode), "-1", -1, LLONG_MAX, 0, NULL, NULL},
    {"max_timelines_history", CT_INT, D(max_timelines_history), "0", 0, LLONG_MAX, 0, NULL, NULL},
    {"primary_start_timeout", CT_INT, D(primary_start_timeout), "300", 0, LLONG_MAX, 0, NULL,
     "master_start_timeout"},
    {"primary_stop_timeout", CT_INT, D(primary_stop_timeout), "0", 0, LLONG_MAX, 0, NULL,
     "master_stop_timeout"},
    {"synchronous_mode", CT_SYNCMODE, D(synchronous_mode), "off", NOB, 0, NULL, NULL},
    {"synchronous_mode_strict", CT_BOOL, D(synchronous_mode_strict), "false", NOB, 0, NULL, NULL},
    {"synchronous_node_count", CT_INT, D(synchronous_node_count), "1", 1, 1000, 0, NULL, NULL},
    {"failsafe_mode", CT_BOOL, D(failsafe_mode), "false", NOB, 0, NULL, NULL},
    {"check_timeline", CT_BOOL, D(check_timeline), "false", NOB, 0, NULL, NULL},
    {"pause", CT_BOOL, D(pause), "false", NOB, 0, NULL, NULL},
    {"member_slots_ttl", CT_DURATION, D(member_slots_ttl), "1800", 0, LLONG_MAX, 0, NULL, NULL},
    {"postgresql", CT_SECTION, NO_OFFSET, NULL, NOB, 0, NULL, NULL},
    {"postgresql.use_pg_rewind", CT_BOOL, D(use_pg_rewind), "false", NOB, 0, NULL, NULL},
    {"postgresql.use_slots", CT_BOOL, D(use_slots), "true", NOB, 0, NULL, NULL},
    {"postgresql.parameters", CT_MAP, D(parameters), NULL, NOB, 0, NULL, NULL},
    {"postgresql.pg_hba", CT_LIST, D(pg_hba), NULL, NOB, 0, NULL, NULL},
    {"postgresql.pg_ident", CT_LIST, D(pg_ident), NULL, NOB, 0, NULL, NULL},
    {"postgresql.recovery_conf", CT_MAP, D(recovery_conf), NULL, NOB, 0, NULL, NULL},
    {"slots", CT_MAP, D(slots), NULL, NOB, 0, NULL, NULL},
    {"ignore_slots", CT_LIST, D(ignore_slots), NULL, NOB, 0, NULL, NULL},
    {"standby_cluster", CT_MAP, D(standby_cluster), NULL, NOB, 0, NULL, NULL},
};

_Static_assert(ELEMENTSOF(local_table) <= sizeof(((PghaConfig *)0)->present), "present[] too small");
_Static_assert(ELEMENTSOF(dyn_table) <= sizeof(((DynConfig *)0)->present), "present[] too small");

/* Keys under `postgresql` that the dynamic configuration may carry but the local one uses too. */
static const char *const dyn_known_top[] = {
    "ttl", "loop_wait", "retry_timeout", "maximum_lag_on_failover", "maximum_lag_on_syncnode",
    "max_timelines_history", "primary_start_timeout", "master_start_timeout", "primary_stop_timeout",
    "master_stop_timeout", "synchronous_mode", "synchronous_mode_strict", "synchronous_node_count",
    "failsafe_mode", "check_timeline", "pause", "member_slots_ttl", "postgresql", "slots", "permanent_slots",
    "permanent_replication_slots", "ignore_slots", "standby_cluster", NULL};

/* GUCs only the dynamic configuration may set (spec §3.7.1). */
static const char *const controlled_gucs[] = {
    "listen_addresses", "port", "cluster_name", "hot_standby", "wal_level", "max_connections",
    "max_wal_senders", "wal_keep_segments", "wal_keep_size", "max_prepared_transactions",
    "max_locks_per_transaction", "track_commit_timestamp", "max_replication_slots", "max_worker_processes",
    "wal_log_hints", NULL};

static bool in_list(const char *const *list, const char *s) {
    for (; *list; list++)
        if (strcmp(*list, s) == 0)
            return true;
    return false;
}

const char *sync_mode_to_string(SyncMode m) {
    switch (m) {
    case SYNC_ON: return "on";
    case SYNC_QUORUM: return "quorum";
    default: return "off";
    }
}

const char *watchdog_mode_to_string(WatchdogMode m) {
    switch (m) {
    case WATCHDOG_AUTOMATIC: return "automatic";
    case WATCHDOG_REQUIRED: return "required";
    default: return "off";
    }
}

/* ------------------------------------------------------------------------------------------ */
/* value conversion                                                                            */

/* The node's type with its article, for "got %s". */
static const char *describe(const YNode *n) {
    switch (n->type) {
    case Y_NULL: return "null";
    case Y_BOOL: return "a boolean";
    case Y_INT: return "an integer";
    case Y_FLOAT: return "a float";
    case Y_STR: return "a string";
    case Y_MAP: return "a mapping";
    case Y_SEQ: return "a list";
    }
    return "a value";
}

/* Patroni's parse_bool: on/off, true/false, yes/no, 1/0, any case. */
static int bool_from_node(const YNode *n, bool *ret) {
    if (n->type == Y_BOOL) {
        *ret = n->b;
        return 0;
    }
    if (n->type == Y_INT && (n->i == 0 || n->i == 1)) {
        *ret = n->i == 1;
        return 0;
    }
    if (n->type == Y_STR) {
        static const char *const t[] = {"on", "true", "yes", "1", NULL}, *const f[] = {"off", "false", "no", "0", NULL};
        for (int i = 0; t[i]; i++)
            if (strcasecmp(n->text, t[i]) == 0) {
                *ret = true;
                return 0;
            }
        for (int i = 0; f[i]; i++)
            if (strcasecmp(n->text, f[i]) == 0) {
                *ret = false;
                return 0;
            }
    }
    return -EINVAL;
}

static int int_from_node(const YNode *n, long long *ret) {
    if (n->type == Y_INT) {
        *ret = n->i;
        return 0;
    }
    if (n->type == Y_STR) {
        _cleanup_free_ char *t = str_trim(xstrdup(n->text));
        return parse_ll(t, ret);
    }
    if (n->type == Y_FLOAT && n->d == (double)(long long)n->d) {
        *ret = (long long)n->d;
        return 0;
    }
    return -EINVAL;
}

/* "30min", "2h", "90s", "1d", "500ms" or a plain number of seconds. */
static int duration_from_node(const YNode *n, long long *ret) {
    if (int_from_node(n, ret) == 0)
        return 0;
    if (n->type != Y_STR)
        return -EINVAL;
    _cleanup_free_ char *t = str_trim(xstrdup(n->text));
    char *end;
    errno = 0;
    long long v = strtoll(t, &end, 10);
    if (end == t || errno)
        return -EINVAL;
    while (*end == ' ')
        end++;
    static const struct {
        const char *unit;
        long long num, den;
    } units[] = {{"ms", 1, 1000}, {"s", 1, 1}, {"min", 60, 1}, {"h", 3600, 1}, {"d", 86400, 1}};
    for (size_t i = 0; i < ELEMENTSOF(units); i++)
        if (strcmp(end, units[i].unit) == 0) {
            *ret = v * units[i].num / units[i].den;
            return 0;
        }
    return -EINVAL;
}

/* A scalar rendered as text: the source text for plain scalars (so `password: 0123` stays 0123). */
static char *str_from_node(const YNode *n) {
    if (!ynode_is_scalar(n) || n->type == Y_NULL)
        return NULL;
    if (n->type == Y_STR)
        return xstrdup(n->text);
    return xstrdup(n->text ? n->text : "");
}


static void free_value(const CfgEntry *e, void *base) {
    if (e->offset == NO_OFFSET)
        return;
    void *p = (char *)base + e->offset;
    switch (e->type) {
    case CT_STR:
    case CT_ENUM:
        if (e->flags & CF_INDEX)
            break;
        free(*(char **)p);
        *(char **)p = NULL;
        break;
    case CT_STRLIST: strlist_clear((StrList *)p); break;
    case CT_MAP: case CT_LIST: case CT_ANY:
        *(YNode **)p = ynode_free(*(YNode **)p);
        break;
    default: break;
    }
}

/* Set one entry from a node. Returns false (and records an error) when the value is invalid. */
static bool set_value(const CfgEntry *e, void *base, const YNode *n, const char *src, CfgDiag *diag) {
    void *p = (char *)base + e->offset;
    const char *path = e->path;
    switch (e->type) {
    case CT_SECTION:
        if (n->type != Y_MAP) {
            diag_error(diag, n, src, path, "expected a mapping, got %s", describe(n));
            return false;
        }
        return true;
    case CT_STR: {
        char *s = str_from_node(n);
        if (!s) {
            diag_error(diag, n, src, path, "expected a string, got %s", describe(n));
            return false;
        }
        if (e->flags & CF_HOSTPORT) {
            _cleanup_free_ char *host = NULL;
            int port;
            if (parse_host_port(s, -1, &host, &port) < 0) {
                diag_error(diag, n, src, path, "'%s' is not a valid host:port", s);
                free(s);
                return false;
            }
        }
        if (e->flags & CF_LISTEN) {
            StrList addrs = {0};
            int port;
            int r = parse_listen(s, &addrs, &port);
            strlist_clear(&addrs);
            if (r < 0) {
                diag_error(diag, n, src, path, "'%s' is not a valid address[,address...]:port", s);
                free(s);
                return false;
            }
        }
        free(*(char **)p);
        *(char **)p = s;
        return true;
    }
    case CT_ENUM: {
        _cleanup_free_ char *s = str_from_node(n);
        for (int i = 0; s && e->choices[i]; i++)
            if (strcasecmp(s, e->choices[i]) == 0) {
                if (e->flags & CF_INDEX) {
                    *(int *)p = i;
                } else {
                    free(*(char **)p);
                    *(char **)p = xstrdup(e->choices[i]);
                }
                return true;
            }
        StrBuf b;
        sb_init(&b);
        for (int i = 0; e->choices[i]; i++)
            sb_addf(&b, "%s%s", i ? ", " : "", e->choices[i]);
        diag_error(diag, n, src, path, "'%s' is not one of: %s", s ? s : describe(n), b.s);
        sb_free(&b);
        return false;
    }
    case CT_INT:
    case CT_DURATION: {
        long long v;
        int r = e->type == CT_INT ? int_from_node(n, &v) : duration_from_node(n, &v);
        if (r < 0) {
            _cleanup_free_ char *s = ynode_scalar_string(n);
            if (r == -ERANGE)
                diag_error(diag, n, src, path, "'%s' is out of range", s);
            else if (s)
                diag_error(diag, n, src, path, "expected %s, got '%s'",
                           e->type == CT_INT ? "an integer" : "a duration (e.g. 1800, 30min, 2h)", s);
            else
                diag_error(diag, n, src, path, "expected %s, got %s",
                           e->type == CT_INT ? "an integer" : "a duration", describe(n));
            return false;
        }
        if (e->min <= e->max && (v < e->min || v > e->max)) {
            diag_error(diag, n, src, path, "%lld is out of range (%lld..%lld)", v, e->min, e->max);
            return false;
        }
        *(long long *)p = v;
        return true;
    }
    case CT_BOOL: {
        bool v;
        if (bool_from_node(n, &v) < 0) {
            _cleanup_free_ char *s = ynode_scalar_string(n);
            if (s)
                diag_error(diag, n, src, path, "expected a boolean (true/false, on/off, yes/no), got '%s'", s);
            else
                diag_error(diag, n, src, path, "expected a boolean, got %s", describe(n));
            return false;
        }
        *(bool *)p = v;
        return true;
    }
    case CT_SYNCMODE: {
        bool v;
        if (bool_from_node(n, &v) == 0) {
            *(int *)p = v ? SYNC_ON : SYNC_OFF;
            return true;
        }
        if (n->type == Y_STR && strcasecmp(n->text, "quorum") == 0) {
            *(int *)p = SYNC_QUORUM;
            return true;
        }
        _cleanup_free_ char *s = ynode_scalar_string(n);
        diag_error(diag, n, src, path, "expected on, off or quorum, got '%s'", s ? s : describe(n));
        return false;
    }
    case CT_WATCHDOG: {
        if (n->type == Y_BOOL) {
            /* YAML `off` is false; Patroni treats `true` like any other unexpected value */
            *(int *)p = n->b ? WATCHDOG_AUTOMATIC : WATCHDOG_OFF;
            return true;
        }
        _cleanup_free_ char *s = str_from_node(n);
        static const struct {
            const char *name;
            WatchdogMode m;
        } modes[] = {{"off", WATCHDOG_OFF}, {"disable", WATCHDOG_OFF}, {"disabled", WATCHDOG_OFF},
                     {"automatic", WATCHDOG_AUTOMATIC}, {"auto", WATCHDOG_AUTOMATIC},
                     {"required", WATCHDOG_REQUIRED}, {"require", WATCHDOG_REQUIRED}};
        for (size_t i = 0; s && i < ELEMENTSOF(modes); i++)
            if (strcasecmp(s, modes[i].name) == 0) {
                *(int *)p = modes[i].m;
                return true;
            }
        diag_error(diag, n, src, path, "'%s' is not one of: off, automatic, required", s ? s : describe(n));
        return false;
    }
    case CT_STRLIST: {
        StrList l = {0};
        if (n->type == Y_SEQ) {
            for (size_t i = 0; i < n->n; i++) {
                _cleanup_free_ char *s = str_from_node(n->items[i]);
                if (!s) {
                    diag_error(diag, n->items[i], src, path, "list item %zu: expected a string, got %s", i,
                               describe(n->items[i]));
                    strlist_clear(&l);
                    return false;
                }
                strlist_add(&l, str_trim(s));
            }
        } else if (ynode_is_scalar(n)) {
            _cleanup_free_ char *s = str_from_node(n);
            char *save = NULL;
            for (char *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
                if (*str_trim(tok))
                    strlist_add(&l, tok);
        } else {
            diag_error(diag, n, src, path, "expected a list or a comma-separated string, got %s", describe(n));
            return false;
        }
        strlist_clear((StrList *)p);
        *(StrList *)p = l;
        return true;
    }
    case CT_MAP:
    case CT_LIST:
    case CT_ANY:
        if (e->type == CT_MAP && n->type != Y_MAP) {
            diag_error(diag, n, src, path, "expected a mapping, got %s", describe(n));
            return false;
        }
        if (e->type == CT_LIST && n->type != Y_SEQ) {
            diag_error(diag, n, src, path, "expected a list, got %s", describe(n));
            return false;
        }
        ynode_free(*(YNode **)p);
        *(YNode **)p = ynode_clone(n);
        return true;
    }
    return false;
}

static const YNode *entry_node(const CfgEntry *e, const YNode *root, const char **ret_name) {
    *ret_name = e->path;
    const YNode *n = ynode_get_path(root, e->path);
    if ((!n || n->type == Y_NULL) && e->alias) {
        const YNode *a = ynode_get_path(root, e->alias);
        if (a && a->type != Y_NULL) {
            *ret_name = e->alias;
            return a;
        }
    }
    return n;
}

/* The dotted path a message names: tables for a nested object (bootstrap.dcs) are keyed
 * relative to it, the user knows the key by its full path. */
static char *full_path(const char *prefix, const char *path) {
    return prefix ? xasprintf("%s.%s", prefix, path) : xstrdup(path);
}

static void set_default(const CfgEntry *e, void *base, const char *src, CfgDiag *diag) {
    if (!e->def || e->offset == NO_OFFSET)
        return;
    YNode *d = ynode_new_scalar(e->def, false, "default", 0);
    if (e->type == CT_STR || e->type == CT_ENUM)
        d->type = Y_STR; /* defaults like "off" are strings here */
    (void)set_value(e, base, d, src, diag);
    ynode_free(d);
}

/* Apply a table: defaults for absent keys, conversion and validation for present ones.
 * `prefix` (or NULL) is where `root` sits in the file, for messages. */
static void apply_table(const CfgEntry *table, size_t n_entries, const YNode *root, const char *prefix, void *base,
                        bool *present, const char *src, CfgDiag *diag) {
    for (size_t i = 0; i < n_entries; i++) {
        const CfgEntry *e = &table[i];
        const char *name;
        const YNode *n = entry_node(e, root, &name);
        present[i] = n && n->type != Y_NULL;
        if (present[i]) {
            _cleanup_free_ char *path = full_path(prefix, name);
            CfgEntry copy = *e;
            copy.path = path;
            /* a rejected value is reported; the default stands in, so that later checks (the
             * timing rule) see a sane value rather than a zero and add misleading messages */
            if ((e->type == CT_SECTION || e->offset != NO_OFFSET) && !set_value(&copy, base, n, src, diag))
                set_default(e, base, src, diag);
            continue;
        }
        if (e->flags & CF_REQUIRED) {
            _cleanup_free_ char *path = full_path(prefix, e->path);
            diag_error(diag, NULL, src, NULL, "missing required key '%s'", path);
            continue;
        }
        set_default(e, base, src, diag);
    }
}

static const CfgEntry *find_entry(const CfgEntry *table, size_t n, const char *path) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(table[i].path, path) == 0 || (table[i].alias && strcmp(table[i].alias, path) == 0))
            return &table[i];
    return NULL;
}

static bool is_prefix_of_entry(const CfgEntry *table, size_t n, const char *path) {
    size_t l = strlen(path);
    for (size_t i = 0; i < n; i++)
        if (strncmp(table[i].path, path, l) == 0 && table[i].path[l] == '.')
            return true;
    return false;
}

/* Warn about keys no entry knows. `allowed(path)` may accept extra keys (custom sections). */
typedef bool (*AllowFn)(const char *path, const YNode *root);

static void warn_unknown(const CfgEntry *table, size_t n_entries, const YNode *map, const char *prefix,
                         const char *display_prefix, const YNode *root, AllowFn allowed, const char *src,
                         CfgDiag *diag) {
    for (size_t i = 0; i < map->n; i++) {
        _cleanup_free_ char *path = prefix ? xasprintf("%s.%s", prefix, map->keys[i]) : xstrdup(map->keys[i]);
        const CfgEntry *e = find_entry(table, n_entries, path);
        const YNode *v = map->items[i];
        if (e && e->type != CT_SECTION && e->type != CT_MAP)
            continue;
        if (e && e->type == CT_MAP && !is_prefix_of_entry(table, n_entries, path))
            continue;
        if (e || is_prefix_of_entry(table, n_entries, path)) {
            if (v->type == Y_MAP)
                warn_unknown(table, n_entries, v, path, display_prefix, root, allowed, src, diag);
            continue;
        }
        if (allowed && allowed(path, root))
            continue;
        _cleanup_free_ char *shown = full_path(display_prefix, path);
        diag_warn(diag, v, src, shown, "unknown configuration key, ignored");
    }
}

/* ------------------------------------------------------------------------------------------ */
/* dynamic configuration                                                                       */

void dyn_config_free(DynConfig *c) {
    for (size_t i = 0; i < ELEMENTSOF(dyn_table); i++)
        free_value(&dyn_table[i], c);
    c->raw = ynode_free(c->raw);
}

/* The timing rule; warnings name `where`/`path` when given. */
static void adjust_timeouts_at(const YNode *where, const char *src, const char *path, long long *ttl,
                               long long *loop_wait, long long *retry_timeout, bool short_ttl, CfgDiag *diag) {
    /* Patroni's minimums; with pgha.allow_short_ttl the fast profile of bench/failover is allowed */
    struct {
        const char *name;
        long long min;
    } mins[] = {{"loop_wait", 1}, {"retry_timeout", short_ttl ? 1 : 3}, {"ttl", short_ttl ? 5 : 20}};
    long long *vals[] = {loop_wait, retry_timeout, ttl};
    for (size_t i = 0; i < ELEMENTSOF(mins); i++)
        if (*vals[i] < mins[i].min) {
            diag_warn(diag, where, src, path, "%s=%lld can't be smaller than %lld, the value is set to %lld",
                      mins[i].name, *vals[i], mins[i].min, mins[i].min);
            *vals[i] = mins[i].min;
        }
    if (1 + 2 * *retry_timeout > *ttl) {
        long long rt = (*ttl - 1) / 2;
        diag_warn(diag, where, src, path,
                  "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl=%lld. "
                  "Adjusting loop_wait from %lld to 1 and retry_timeout from %lld to %lld",
                  *ttl, *loop_wait, *retry_timeout, rt);
        *loop_wait = 1;
        *retry_timeout = rt;
    } else if (*loop_wait + 2 * *retry_timeout > *ttl) {
        long long lw = *ttl - 2 * *retry_timeout;
        diag_warn(diag, where, src, path,
                  "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl=%lld and "
                  "retry_timeout=%lld. Adjusting loop_wait from %lld to %lld",
                  *ttl, *retry_timeout, *loop_wait, lw);
        *loop_wait = lw;
    }
}

void dyn_adjust_timeouts(long long *ttl, long long *loop_wait, long long *retry_timeout, CfgDiag *diag) {
    adjust_timeouts_at(NULL, NULL, NULL, ttl, loop_wait, retry_timeout, false, diag);
}

void dyn_config_defaults(DynConfig *ret) {
    CfgDiag d = {0};
    YNode *empty = ynode_new(Y_MAP, "defaults", 0);
    (void)dyn_config_parse(empty, ret, &d);
    ynode_free(empty);
    cfg_diag_clear(&d);
}

static bool dyn_allowed(const char *path, const YNode *root) {
    (void)root;
    /* postgresql.* in /config may carry anything the local postgresql section can (spec §3.1) */
    if (str_startswith(path, "postgresql."))
        return true;
    const char *dot = strchr(path, '.');
    if (!dot)
        return in_list(dyn_known_top, path);
    _cleanup_free_ char *top = xstrndup(path, (size_t)(dot - path));
    return in_list(dyn_known_top, top);
}

/* `prefix`: where obj sits in a file (bootstrap.dcs), or NULL for /config itself. */
static int dyn_parse_at(const YNode *obj, const char *prefix, bool short_ttl, DynConfig *ret, CfgDiag *diag) {
    *ret = (DynConfig){0};
    size_t nerr = diag->errors.n;
    const char *src = obj && obj->file && *obj->file ? obj->file : "dynamic configuration";
    if (!obj || obj->type != Y_MAP) {
        diag_error(diag, obj, src, prefix, "the dynamic configuration must be a mapping");
        YNode *empty = ynode_new(Y_MAP, src, 0);
        apply_table(dyn_table, ELEMENTSOF(dyn_table), empty, prefix, ret, ret->present, src, diag);
        ret->raw = empty;
        return -EINVAL;
    }
    apply_table(dyn_table, ELEMENTSOF(dyn_table), obj, prefix, ret, ret->present, src, diag);
    warn_unknown(dyn_table, ELEMENTSOF(dyn_table), obj, NULL, prefix, obj, dyn_allowed, src, diag);

    /* permanent slots: first non-empty of permanent_replication_slots, permanent_slots, slots */
    static const char *const slot_keys[] = {"permanent_replication_slots", "permanent_slots", "slots"};
    for (size_t i = 0; i < ELEMENTSOF(slot_keys); i++) {
        const YNode *s = ynode_get(obj, slot_keys[i]);
        if (s && s->type == Y_MAP && s->n > 0) {
            ynode_free(ret->slots);
            ret->slots = ynode_clone(s);
            break;
        }
    }

    ret->raw = ynode_clone(obj);
    long long ttl = ret->ttl, lw = ret->loop_wait, rt = ret->retry_timeout;
    adjust_timeouts_at(obj, src, prefix, &ttl, &lw, &rt, short_ttl, diag);
    if (short_ttl && ttl < 20)
        diag_warn(diag, obj, src, prefix,
                  "ttl=%lld is below Patroni's minimum of 20 (allowed by pgha.allow_short_ttl); Patroni nodes "
                  "would use 20", ttl);
    const struct {
        const char *key;
        long long before, after;
    } adj[] = {{"ttl", ret->ttl, ttl}, {"loop_wait", ret->loop_wait, lw}, {"retry_timeout", ret->retry_timeout, rt}};
    for (size_t i = 0; i < ELEMENTSOF(adj); i++)
        if (adj[i].before != adj[i].after)
            ynode_set(ret->raw, adj[i].key, ynode_new_int(adj[i].after, src, 0));
    ret->ttl = ttl;
    ret->loop_wait = lw;
    ret->retry_timeout = rt;
    return diag->errors.n > nerr ? -EINVAL : 0;
}

int dyn_config_parse(const YNode *obj, DynConfig *ret, CfgDiag *diag) {
    return dyn_parse_at(obj, NULL, false, ret, diag);
}

int dyn_config_parse_ex(const YNode *obj, bool allow_short_ttl, DynConfig *ret, CfgDiag *diag) {
    return dyn_parse_at(obj, NULL, allow_short_ttl, ret, diag);
}

bool dyn_config_is_set(const DynConfig *c, const char *path) {
    for (size_t i = 0; i < ELEMENTSOF(dyn_table); i++)
        if (strcmp(dyn_table[i].path, path) == 0)
            return c->present[i];
    return false;
}

/* ------------------------------------------------------------------------------------------ */
/* local configuration                                                                         */

static const char *const other_dcs[] = {"etcd", "consul", "zookeeper", "exhibitor", "kubernetes", "raft", NULL};

static bool local_allowed(const char *path, const YNode *root) {
    /* custom tags are published as they are (spec §3.8) */
    if (str_startswith(path, "tags."))
        return true;
    /* a local use_slots is reported by post_process: it only counts in the dynamic configuration */
    if (streq(path, "postgresql.use_slots"))
        return true;
    /* other DCS sections are reported by post_process, not as unknown keys */
    for (int i = 0; other_dcs[i]; i++)
        if (streq(path, other_dcs[i]) || (str_startswith(path, other_dcs[i]) && path[strlen(other_dcs[i])] == '.'))
            return true;
    /* custom replica methods: postgresql.<method> for every listed method (warn_unknown does not
     * look inside an allowed section, so only the section itself is asked about) */
    if (str_startswith(path, "postgresql.")) {
        const char *m = path + strlen("postgresql.");
        const YNode *l = ynode_get_path(root, "postgresql.create_replica_methods");
        if (!l)
            l = ynode_get_path(root, "postgresql.create_replica_method");
        if (l && l->type == Y_SEQ)
            for (size_t i = 0; i < l->n; i++)
                if (l->items[i]->type == Y_STR && strcmp(l->items[i]->text, m) == 0)
                    return true;
        if (l && l->type == Y_STR) {
            _cleanup_free_ char *list = xstrdup(l->text);
            char *save = NULL;
            for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
                if (strcmp(str_trim(tok), m) == 0)
                    return true;
        }
    }
    /* a custom bootstrap method: bootstrap.<method> */
    if (str_startswith(path, "bootstrap.")) {
        const char *m = path + strlen("bootstrap.");
        const YNode *meth = ynode_get_path(root, "bootstrap.method");
        if (meth && meth->type == Y_STR && streq(meth->text, m))
            return true;
        if (strcmp(m, "users") == 0)
            return true; /* reported separately */
    }
    return false;
}

void config_free(PghaConfig *c) {
    for (size_t i = 0; i < ELEMENTSOF(local_table); i++)
        free_value(&local_table[i], c);
    dyn_config_free(&c->bootstrap.dyn);
    c->bootstrap.method_section = ynode_free(c->bootstrap.method_section);
    c->postgresql.replica_methods = ynode_free(c->postgresql.replica_methods);
    free(c->source);
    c->source = NULL;
}

bool config_is_set(const PghaConfig *c, const char *path) {
    for (size_t i = 0; i < ELEMENTSOF(local_table); i++)
        if (strcmp(local_table[i].path, path) == 0)
            return c->present[i];
    return false;
}

static void post_process(const YNode *root, PghaConfig *c, const char *src, CfgDiag *diag) {
    /* DCS: only etcd3 is implemented */
    bool have_etcd3 = ynode_get(root, "etcd3") != NULL;
    for (int i = 0; other_dcs[i]; i++) {
        const YNode *s = ynode_get(root, other_dcs[i]);
        if (!s)
            continue;
        if (have_etcd3)
            diag_warn(diag, s, src, other_dcs[i], "pgha supports only the etcd3 DCS; this section is ignored");
        else
            diag_error(diag, s, src, other_dcs[i],
                       "pgha supports only the etcd3 DCS (etcd v3 API); use an 'etcd3' section instead");
    }
    if (!have_etcd3) {
        bool reported = false;
        for (int i = 0; other_dcs[i]; i++)
            reported |= ynode_get(root, other_dcs[i]) != NULL;
        if (!reported)
            diag_error(diag, NULL, src, NULL, "missing required section 'etcd3' (the DCS configuration)");
    } else if (!c->etcd3.host && c->etcd3.hosts.n == 0 && !c->etcd3.url && !c->etcd3.proxy && !c->etcd3.srv) {
        diag_error(diag, ynode_get(root, "etcd3"), src, "etcd3",
                   "one of 'host', 'hosts', 'url', 'proxy' or 'srv' is required");
    }
    for (size_t i = 0; i < c->etcd3.hosts.n; i++) {
        _cleanup_free_ char *h = NULL;
        int port;
        if (parse_host_port(c->etcd3.hosts.v[i], 2379, &h, &port) < 0)
            diag_error(diag, ynode_get_path(root, "etcd3.hosts"), src, "etcd3.hosts", "'%s' is not a valid host[:port]",
                       c->etcd3.hosts.v[i]);
    }
    for (const char *const *k = (const char *const[]){"etcd3.url", "etcd3.proxy", NULL}; *k; k++) {
        const char *u = strcmp(*k, "etcd3.url") == 0 ? c->etcd3.url : c->etcd3.proxy;
        if (u && !str_startswith(u, "http://") && !str_startswith(u, "https://"))
            diag_error(diag, ynode_get_path(root, *k), src, *k, "'%s' must start with http:// or https://", u);
    }

    if (c->postgresql.superuser.username == NULL && config_is_set(c, "postgresql.authentication"))
        diag_error(diag, ynode_get_path(root, "postgresql.authentication"), src,
                   "postgresql.authentication.superuser.username", "is required");
    if (c->postgresql.replication.username == NULL && config_is_set(c, "postgresql.authentication"))
        diag_error(diag, ynode_get_path(root, "postgresql.authentication"), src,
                   "postgresql.authentication.replication.username", "is required");
    /* rewind credentials default to the superuser's */
    if (!c->postgresql.rewind.username) {
        c->postgresql.rewind.username = xstrdup(c->postgresql.superuser.username);
        if (!c->postgresql.rewind.password)
            c->postgresql.rewind.password = xstrdup(c->postgresql.superuser.password);
    }
    if (!c->postgresql.config_dir)
        c->postgresql.config_dir = xstrdup(c->postgresql.data_dir);
    if (!c->restapi.connect_address && c->restapi.listen)
        c->restapi.connect_address = xstrdup(c->restapi.listen);
    if (c->postgresql.create_replica_methods.n == 0)
        strlist_add(&c->postgresql.create_replica_methods, "basebackup");

    /* custom replica methods: their sections */
    c->postgresql.replica_methods = ynode_new(Y_MAP, src, 0);
    for (size_t i = 0; i < c->postgresql.create_replica_methods.n; i++) {
        const char *m = c->postgresql.create_replica_methods.v[i];
        if (strcmp(m, "basebackup") == 0)
            continue;
        const YNode *s = ynode_get(ynode_get(root, "postgresql"), m);
        if (s && s->type != Y_MAP) {
            _cleanup_free_ char *path = xasprintf("postgresql.%s", m);
            diag_error(diag, s, src, path, "a replica method section must be a mapping, got %s", describe(s));
            continue;
        }
        if (s)
            ynode_set(c->postgresql.replica_methods, m, ynode_clone(s));
        else
            diag_warn(diag, ynode_get_path(root, "postgresql.create_replica_methods"), src,
                      "postgresql.create_replica_methods",
                      "method '%s' has no 'postgresql.%s' section; its command defaults to '%s'", m, m, m);
    }

    /* the bootstrap method */
    if (c->bootstrap.method && strcmp(c->bootstrap.method, "initdb") != 0) {
        const YNode *s = ynode_get(ynode_get(root, "bootstrap"), c->bootstrap.method);
        if (!s || s->type != Y_MAP || !ynode_get(s, "command"))
            diag_error(diag, ynode_get_path(root, "bootstrap.method"), src, "bootstrap.method",
                       "custom bootstrap method '%s' needs a 'bootstrap.%s' section with a 'command'",
                       c->bootstrap.method, c->bootstrap.method);
        else
            c->bootstrap.method_section = ynode_clone(s);
    }
    if (ynode_get_path(root, "bootstrap.users"))
        diag_warn(diag, ynode_get_path(root, "bootstrap.users"), src, "bootstrap.users",
                  "bootstrap.users was removed in Patroni 4.0 and is ignored; create users in post_bootstrap");

    /* initdb / basebackup options: a list of strings and one-key maps, or a map */
    static const char *const initdb_forbidden[] = {"pgdata", "nosync", "pwfile", "sync-only", "version", NULL};
    static const char *const bb_forbidden[] = {"pgdata", "format", "wal-method", "xlog-method", "gzip", "version",
                                               "compress", "dbname", "host", "port", "username", "password", NULL};
    const struct {
        const char *path;
        const YNode *opts;
        const char *const *forbidden;
    } optsets[] = {{"bootstrap.initdb", c->bootstrap.initdb, initdb_forbidden},
                   {"postgresql.basebackup", c->postgresql.basebackup, bb_forbidden}};
    for (size_t k = 0; k < ELEMENTSOF(optsets); k++) {
        const YNode *o = optsets[k].opts;
        if (!o)
            continue;
        if (o->type != Y_SEQ && o->type != Y_MAP) {
            diag_error(diag, o, src, optsets[k].path, "expected a list of options or a mapping, got %s", describe(o));
            continue;
        }
        for (size_t i = 0; i < o->n; i++) {
            const YNode *it = o->items[i];
            const char *key = NULL;
            if (o->type == Y_MAP)
                key = o->keys[i];
            else if (it->type == Y_STR || it->type == Y_INT)
                key = it->text;
            else if (it->type == Y_MAP && it->n == 1)
                key = it->keys[0];
            else {
                diag_error(diag, it, src, optsets[k].path,
                           "item %zu: expected an option name or a one-key mapping (e.g. 'encoding: UTF8')", i);
                continue;
            }
            if (in_list(optsets[k].forbidden, key))
                diag_error(diag, it, src, optsets[k].path, "option '%s' is set by pgha itself and is not allowed", key);
        }
    }

    /* bootstrap.dcs: the dynamic configuration, with the timing rule */
    if (c->bootstrap.dcs) {
        (void)dyn_parse_at(c->bootstrap.dcs, "bootstrap.dcs", c->pgha.allow_short_ttl, &c->bootstrap.dyn, diag);
        ynode_free(c->bootstrap.dcs);
        c->bootstrap.dcs = ynode_clone(c->bootstrap.dyn.raw);
    } else {
        dyn_config_defaults(&c->bootstrap.dyn);
    }

    /* local parameters that only the dynamic configuration may set */
    if (c->postgresql.parameters)
        for (size_t i = 0; i < c->postgresql.parameters->n; i++) {
            const char *g = c->postgresql.parameters->keys[i];
            if (in_list(controlled_gucs, g))
                diag_warn(diag, c->postgresql.parameters->items[i], src, "postgresql.parameters",
                          "'%s' is controlled by pgha and can only be set in the dynamic configuration "
                          "(bootstrap.dcs or /config); the local value is ignored", g);
        }
    if (ynode_get_path(root, "postgresql.use_slots"))
        diag_warn(diag, ynode_get_path(root, "postgresql.use_slots"), src, "postgresql.use_slots",
                  "use_slots is taken only from the dynamic configuration; the local value is ignored");

    /* log level */
    LogLevel lvl;
    if (c->log.level && log_level_from_string(c->log.level, &lvl) < 0)
        diag_error(diag, ynode_get_path(root, "log.level"), src, "log.level",
                   "'%s' is not one of: DEBUG, INFO, WARNING, ERROR, CRITICAL", c->log.level);
    if (c->log.traceback_level && log_level_from_string(c->log.traceback_level, &lvl) < 0)
        diag_error(diag, ynode_get_path(root, "log.traceback_level"), src, "log.traceback_level",
                   "'%s' is not one of: DEBUG, INFO, WARNING, ERROR, CRITICAL", c->log.traceback_level);
    if (c->log.format && c->log.format->type != Y_STR && c->log.format->type != Y_SEQ &&
        c->log.format->type != Y_MAP)
        diag_error(diag, c->log.format, src, "log.format", "expected a string, a list or a mapping");

    /* names */
    if (c->name && !*c->name)
        diag_error(diag, ynode_get(root, "name"), src, "name", "must not be empty");
    if (c->scope && !*c->scope)
        diag_error(diag, ynode_get(root, "scope"), src, "scope", "must not be empty");
    if (c->name && strchr(c->name, '/'))
        diag_error(diag, ynode_get(root, "name"), src, "name", "'%s' must not contain '/'", c->name);
    if (c->scope && strchr(c->scope, '/'))
        diag_error(diag, ynode_get(root, "scope"), src, "scope", "'%s' must not contain '/'", c->scope);

    /* watchdog: timeout must leave room for loop_wait */
    if (c->watchdog.mode == WATCHDOG_REQUIRED && c->bootstrap.dcs) {
        long long margin = c->watchdog.safety_margin;
        long long timeout = margin == -1 ? c->bootstrap.dyn.ttl / 2 : c->bootstrap.dyn.ttl - margin;
        if (timeout < c->bootstrap.dyn.loop_wait)
            diag_warn(diag, ynode_get(root, "watchdog"), src, "watchdog",
                      "watchdog timeout %lld s (ttl - safety_margin) is shorter than loop_wait %lld s: "
                      "the watchdog is unusable and a 'required' node will never become leader",
                      timeout, c->bootstrap.dyn.loop_wait);
    }
    /* tags: failover_priority <= 0 behaves as nofailover unless nofailover is set explicitly */
    if (config_is_set(c, "tags.nofailover") && config_is_set(c, "tags.failover_priority") &&
        c->tags.nofailover == (c->tags.failover_priority > 0))
        diag_warn(diag, ynode_get(root, "tags"), src, "tags",
                  "nofailover=%s contradicts failover_priority=%lld; nofailover wins",
                  c->tags.nofailover ? "true" : "false", c->tags.failover_priority);
    if (!config_is_set(c, "tags.nofailover") && config_is_set(c, "tags.failover_priority") &&
        c->tags.failover_priority <= 0)
        c->tags.nofailover = true;
    if (c->tags.replicatefrom && c->name && strcmp(c->tags.replicatefrom, c->name) == 0)
        diag_warn(diag, ynode_get(root, "tags"), src, "tags.replicatefrom", "a member cannot replicate from itself");
}

int config_from_tree(const YNode *root, const char *source, PghaConfig *ret, CfgDiag *diag) {
    *ret = (PghaConfig){0};
    ret->source = xstrdup(source);
    size_t nerr = diag->errors.n;
    if (!root || root->type != Y_MAP) {
        diag_error(diag, root, source, NULL, "the configuration must be a mapping, got %s",
                   root ? describe(root) : "nothing");
        return -EINVAL;
    }
    apply_table(local_table, ELEMENTSOF(local_table), root, NULL, ret, ret->present, source, diag);
    warn_unknown(local_table, ELEMENTSOF(local_table), root, NULL, NULL, root, local_allowed, source, diag);
    post_process(root, ret, source, diag);
    return diag->errors.n > nerr ? -EINVAL : 0;
}

int config_load(const CfgSource *src, PghaConfig *ret, CfgDiag *diag) {
    size_t nerr = diag->errors.n;
    YNode *root = cfg_source_load_tree(src, diag);
    if (!root || diag->errors.n > nerr) {
        ynode_free(root);
        *ret = (PghaConfig){0};
        return -EINVAL;
    }
    int r = config_from_tree(root, src->path ? src->path : "PATRONI_CONFIGURATION", ret, diag);
    ynode_free(root);
    return r;
}

/* ------------------------------------------------------------------------------------------ */
/* sources: file, directory, PATRONI_CONFIGURATION                                             */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

YNode *cfg_source_load_tree(const CfgSource *src, CfgDiag *diag) {
    YNode *root = NULL;
    struct stat st;
    if (src->path && stat(src->path, &st) == 0 && S_ISDIR(st.st_mode)) {
        DIR *d = opendir(src->path);
        if (!d) {
            diag_error(diag, NULL, src->path, NULL, "cannot open directory: %s", strerror(errno));
            return NULL;
        }
        StrList files = {0};
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if ((l > 4 && strcmp(de->d_name + l - 4, ".yml") == 0) ||
                (l > 5 && strcmp(de->d_name + l - 5, ".yaml") == 0)) {
                _cleanup_free_ char *p = xasprintf("%s/%s", src->path, de->d_name);
                struct stat fst;
                if (stat(p, &fst) == 0 && S_ISREG(fst.st_mode))
                    strlist_add(&files, p);
            }
        }
        closedir(d);
        if (files.n > 1) /* files.v is NULL when the directory has none, and qsort's base must not be */
            qsort(files.v, files.n, sizeof(char *), cmp_str);
        root = ynode_new(Y_MAP, src->path, 0);
        for (size_t i = 0; i < files.n; i++) {
            char *err = NULL;
            YNode *t = yaml_parse_file(files.v[i], &err);
            if (!t) {
                strlist_add(&diag->errors, err);
                free(err);
                continue;
            }
            if (t->type != Y_MAP)
                diag_error(diag, t, files.v[i], NULL, "the configuration must be a mapping, got %s", describe(t));
            else
                ynode_merge(root, t);
            ynode_free(t);
        }
        if (files.n == 0)
            diag_error(diag, NULL, src->path, NULL, "no *.yml or *.yaml files in this directory");
        strlist_clear(&files);
    } else if (src->path && access(src->path, F_OK) == 0) {
        char *err = NULL;
        root = yaml_parse_file(src->path, &err);
        if (!root) {
            strlist_add(&diag->errors, err);
            free(err);
            return NULL;
        }
    } else if (src->path && src->env_configuration == NULL && (!src->env_overlay || src->env_overlay->n == 0)) {
        diag_error(diag, NULL, src->path, NULL, "no such file or directory");
        return NULL;
    } else if (src->env_configuration) {
        char *err = NULL;
        root = yaml_parse_string(src->env_configuration, strlen(src->env_configuration),
                                 "environment variable PATRONI_CONFIGURATION", &err);
        if (!root) {
            strlist_add(&diag->errors, err);
            free(err);
            return NULL;
        }
    } else {
        root = ynode_new(Y_MAP, "environment", 0); /* PATRONI_* variables alone */
    }
    if (root->type == Y_NULL) {
        ynode_free(root);
        root = ynode_new(Y_MAP, src->path ? src->path : "environment", 0);
    }
    if (root->type == Y_MAP && src->env_overlay)
        ynode_merge(root, src->env_overlay);
    return root;
}

/* ------------------------------------------------------------------------------------------ */
/* environment checks for --validate-config                                                    */

static void check_listen_port(const char *what, const char *host, int port, bool ignore_port, const YNode *where,
                              const char *src, CfgDiag *diag) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    const char *h = (!host || !*host || strcmp(host, "*") == 0) ? NULL : host;
    int r = getaddrinfo(h, portstr, &hints, &res);
    if (r != 0) {
        diag_error(diag, where, src, what, "cannot resolve '%s': %s", host, gai_strerror(r));
        return;
    }
    /* bind, never connect: validation sends no traffic anywhere */
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            if (errno == EADDRINUSE && !ignore_port)
                diag_error(diag, where, src, what, "port %d on '%s' is already in use", port, host ? host : "*");
            else if (errno == EADDRNOTAVAIL)
                diag_warn(diag, where, src, what, "address '%s' is not configured on this host", host);
        }
        close(fd);
        break;
    }
    freeaddrinfo(res);
}

void config_validate_environment(const PghaConfig *c, bool ignore_listen_port, CfgDiag *diag) {
    const char *src = c->source;
    if (c->restapi.listen) {
        _cleanup_free_ char *host = NULL;
        int port;
        if (parse_host_port(c->restapi.listen, -1, &host, &port) == 0)
            check_listen_port("restapi.listen", host, port, ignore_listen_port, NULL, src, diag);
    }
    if (c->postgresql.listen) {
        StrList addrs = {0};
        int port;
        if (parse_listen(c->postgresql.listen, &addrs, &port) == 0)
            for (size_t i = 0; i < addrs.n; i++)
                check_listen_port("postgresql.listen", addrs.v[i], port, ignore_listen_port, NULL, src, diag);
        strlist_clear(&addrs);
    }
    if (c->postgresql.bin_dir && *c->postgresql.bin_dir) {
        struct stat st;
        if (stat(c->postgresql.bin_dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
            diag_warn(diag, NULL, src, "postgresql.bin_dir", "directory '%s' does not exist on this host",
                      c->postgresql.bin_dir);
        } else {
            const char *bins[] = {c->postgresql.bin_name.pg_ctl, c->postgresql.bin_name.initdb,
                                  c->postgresql.bin_name.pg_controldata, c->postgresql.bin_name.pg_basebackup,
                                  c->postgresql.bin_name.postgres, c->postgresql.bin_name.pg_isready,
                                  c->postgresql.bin_name.pg_rewind};
            for (size_t i = 0; i < ELEMENTSOF(bins); i++) {
                _cleanup_free_ char *p = xasprintf("%s/%s", c->postgresql.bin_dir, bins[i]);
                if (access(p, X_OK) < 0)
                    diag_warn(diag, NULL, src, "postgresql.bin_dir", "'%s' is missing or not executable", p);
            }
        }
    }
    if (c->postgresql.data_dir) {
        struct stat st;
        if (stat(c->postgresql.data_dir, &st) == 0 && !S_ISDIR(st.st_mode))
            diag_error(diag, NULL, src, "postgresql.data_dir", "'%s' exists and is not a directory",
                       c->postgresql.data_dir);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* dump and diff                                                                               */

static char *value_string(const CfgEntry *e, const void *base, bool present, bool show_secrets) {
    if (e->offset == NO_OFFSET)
        return NULL;
    /* A number or flag neither given nor defaulted has no value, whatever its zeroed field holds:
     * `log.mode: 0` is not "no mode", and `citus.group: 0` would enable Citus. (Pointers are NULL.) */
    bool by_value = e->type == CT_INT || e->type == CT_DURATION || e->type == CT_BOOL || e->type == CT_SYNCMODE ||
                    e->type == CT_WATCHDOG || (e->type == CT_ENUM && (e->flags & CF_INDEX));
    if (by_value && !present && !e->def)
        return NULL;
    const void *p = (const char *)base + e->offset;
    switch (e->type) {
    case CT_STR: {
        const char *s = *(char *const *)p;
        if (!s)
            return NULL;
        return (e->flags & CF_SECRET) && !show_secrets ? xstrdup("********") : xstrdup(s);
    }
    case CT_ENUM:
        if (e->flags & CF_INDEX)
            return xstrdup(e->choices[*(const int *)p]);
        return xstrdup(*(char *const *)p);
    case CT_INT:
    case CT_DURATION: return xasprintf("%lld", *(const long long *)p);
    case CT_BOOL: return xstrdup(*(const bool *)p ? "true" : "false");
    case CT_SYNCMODE: return xstrdup(sync_mode_to_string(*(const int *)p));
    case CT_WATCHDOG: return xstrdup(watchdog_mode_to_string(*(const int *)p));
    case CT_STRLIST: {
        const StrList *l = p;
        if (l->n == 0)
            return NULL;
        _cleanup_free_ char *j = strlist_join(l, ", ");
        return xasprintf("[%s]", j);
    }
    case CT_MAP:
    case CT_LIST:
    case CT_ANY: {
        const YNode *n = *(YNode *const *)p;
        if (!n)
            return NULL;
        cJSON *j = ynode_to_json(n);
        char *s = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        return s;
    }
    case CT_SECTION: return NULL;
    }
    return NULL;
}

static void yaml_quote(StrBuf *b, const char *s) {
    /* JSON-style double quotes are valid YAML */
    cJSON *j = cJSON_CreateString(s);
    char *q = cJSON_PrintUnformatted(j);
    sb_add(b, q);
    free(q);
    cJSON_Delete(j);
}

char *config_dump(const PghaConfig *c, bool show_secrets) {
    StrBuf b;
    sb_init(&b);
    sb_addf(&b, "# effective local configuration of %s (defaults included)\n", c->source ? c->source : "?");
    for (size_t i = 0; i < ELEMENTSOF(local_table); i++) {
        const CfgEntry *e = &local_table[i];
        _cleanup_free_ char *v = value_string(e, c, c->present[i], show_secrets);
        if (!v)
            continue;
        if (e->type == CT_STR || e->type == CT_ENUM) {
            sb_addf(&b, "%s: ", e->path);
            yaml_quote(&b, v);
            sb_addc(&b, '\n');
        } else {
            sb_addf(&b, "%s: %s\n", e->path, v);
        }
    }
    return sb_steal(&b);
}

size_t config_diff(const PghaConfig *a, const PghaConfig *b, CfgChange **ret_changes) {
    CfgChange *changes = NULL;
    size_t n = 0;
    for (size_t i = 0; i < ELEMENTSOF(local_table); i++) {
        const CfgEntry *e = &local_table[i];
        if (e->offset == NO_OFFSET)
            continue;
        _cleanup_free_ char *va = value_string(e, a, a->present[i], true);
        _cleanup_free_ char *vb = value_string(e, b, b->present[i], true);
        if (streq(va, vb))
            continue;
        changes = xrealloc(changes, (n + 1) * sizeof *changes);
        bool secret = e->flags & CF_SECRET;
        changes[n++] = (CfgChange){
            .path = e->path,
            .old_value = secret ? xstrdup(va ? "********" : "(unset)") : xstrdup(va ? va : "(unset)"),
            .new_value = secret ? xstrdup(vb ? "********" : "(unset)") : xstrdup(vb ? vb : "(unset)"),
            .needs_restart = e->flags & CF_RESTART,
        };
    }
    *ret_changes = changes;
    return n;
}

void config_keep_restart_values(PghaConfig *next, const PghaConfig *running) {
    for (size_t i = 0; i < ELEMENTSOF(local_table); i++) {
        const CfgEntry *e = &local_table[i];
        if (!(e->flags & CF_RESTART) || e->offset == NO_OFFSET)
            continue;
        void *dst = (char *)next + e->offset;
        const void *src = (const char *)running + e->offset;
        switch (e->type) {
        case CT_STR:
            free(*(char **)dst);
            *(char **)dst = xstrdup(*(char *const *)src);
            break;
        case CT_INT:
            *(long long *)dst = *(const long long *)src;
            break;
        default:
            break;
        }
        next->present[i] = running->present[i];
    }
}

void config_changes_free(CfgChange *changes, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(changes[i].old_value);
        free(changes[i].new_value);
    }
    free(changes);
}

/* ------------------------------------------------------------------------------------------ */
/* host:port, listen, slot names                                                               */

static int parse_port(const char *s, int *ret) {
    long long v;
    if (parse_ll(s, &v) < 0 || v < 1 || v > 65535)
        return -EINVAL;
    *ret = (int)v;
    return 0;
}

int parse_host_port(const char *s, int default_port, char **ret_host, int *ret_port) {
    if (!s || !*s)
        return -EINVAL;
    const char *colon;
    char *host;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close)
            return -EINVAL;
        host = xstrndup(s + 1, (size_t)(close - s - 1));
        colon = close[1] == ':' ? close + 1 : NULL;
        if (!colon && close[1] != '\0') {
            free(host);
            return -EINVAL;
        }
    } else {
        colon = strrchr(s, ':');
        if (colon && strchr(s, ':') != colon) { /* bare IPv6 without brackets and without a port */
            colon = NULL;
            host = xstrdup(s);
        } else {
            host = colon ? xstrndup(s, (size_t)(colon - s)) : xstrdup(s);
        }
    }
    int port = default_port;
    if (colon && parse_port(colon + 1, &port) < 0) {
        free(host);
        return -EINVAL;
    }
    if (port < 0 || strpbrk(host, " \t/,")) {
        free(host);
        return -EINVAL;
    }
    *ret_host = host;
    *ret_port = port;
    return 0;
}

int parse_listen(const char *s, StrList *ret_addresses, int *ret_port) {
    if (!s || !*s)
        return -EINVAL;
    const char *colon = strrchr(s, ':');
    const char *close = strrchr(s, ']');
    if (!colon || (close && colon < close))
        return -EINVAL;
    int port;
    if (parse_port(colon + 1, &port) < 0)
        return -EINVAL;
    _cleanup_free_ char *addrs = xstrndup(s, (size_t)(colon - s));
    StrList l = {0};
    char *save = NULL;
    for (char *tok = strtok_r(addrs, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        str_trim(tok);
        size_t len = strlen(tok);
        if (len >= 2 && tok[0] == '[' && tok[len - 1] == ']') {
            tok[len - 1] = '\0';
            tok++;
        }
        if (!*tok || strpbrk(tok, " \t/")) {
            strlist_clear(&l);
            return -EINVAL;
        }
        strlist_add(&l, tok);
    }
    if (l.n == 0)
        strlist_add(&l, "*");
    *ret_addresses = l;
    *ret_port = port;
    return 0;
}

char *slot_name_from_member_name(const char *name) {
    StrBuf b;
    sb_init(&b);
    /* decode UTF-8 so that a non-ASCII character becomes one code point */
    const unsigned char *p = (const unsigned char *)name;
    while (*p) {
        unsigned cp = *p;
        int extra = 0;
        if (cp >= 0xF0) {
            cp &= 0x07;
            extra = 3;
        } else if (cp >= 0xE0) {
            cp &= 0x0F;
            extra = 2;
        } else if (cp >= 0xC0) {
            cp &= 0x1F;
            extra = 1;
        }
        p++;
        for (int i = 0; i < extra && (*p & 0xC0) == 0x80; i++, p++)
            cp = (cp << 6) | (*p & 0x3F);
        if (cp < 128 && isupper((int)cp))
            cp = (unsigned)tolower((int)cp);
        if ((cp >= 'a' && cp <= 'z') || (cp >= '0' && cp <= '9') || cp == '_')
            sb_addc(&b, (char)cp);
        else if (cp == '-' || cp == '.')
            sb_addc(&b, '_');
        else
            sb_addf(&b, "u%04u", cp);
    }
    char *s = sb_steal(&b);
    if (strlen(s) > 63)
        s[63] = '\0';
    return s;
}
