/* The declarative tables of the configuration: one entry per key of patroni.yml (local_table)
 * and of the dynamic configuration (dyn_table) with its dotted path, type, default, bounds and
 * flags; and applying a table to a YAML tree (defaults, conversion, unknown keys). */
#include <limits.h>
#include <stddef.h>
#include <string.h>

#include "common/config_int.h"

#define NOB 1, 0 /* no bounds */
#define L(field) offsetof(PghaConfig, field)
#define D(field) offsetof(DynConfig, field)

static const char *const protocol_choices[] = {"http", "https", NULL};
static const char *const verify_choices[] = {"none", "optional", "required", NULL};
static const char *const server_tokens_choices[] = {"original", "productonly", "minimal", NULL};
static const char *const log_type_choices[] = {"plain", "json", NULL};

#define AUTH_ENTRIES(kind)                                                                                               \
    {"postgresql.authentication." #kind, CT_SECTION, NO_OFFSET, NULL, NOB, 0, NULL, NULL},                               \
        {"postgresql.authentication." #kind ".username", CT_STR, L(postgresql.kind.username), NULL, NOB, 0, NULL, NULL}, \
        {"postgresql.authentication." #kind ".password",                                                                 \
         CT_STR,                                                                                                         \
         L(postgresql.kind.password),                                                                                    \
         NULL,                                                                                                           \
         NOB,                                                                                                            \
         CF_SECRET,                                                                                                      \
         NULL,                                                                                                           \
         NULL},                                                                                                          \
        {"postgresql.authentication." #kind ".sslmode", CT_STR, L(postgresql.kind.sslmode), NULL, NOB, 0, NULL, NULL},   \
        {"postgresql.authentication." #kind ".sslcert", CT_STR, L(postgresql.kind.sslcert), NULL, NOB, 0, NULL, NULL},   \
        {"postgresql.authentication." #kind ".sslkey", CT_STR, L(postgresql.kind.sslkey), NULL, NOB, 0, NULL, NULL},     \
        {"postgresql.authentication." #kind ".sslpassword",                                                              \
         CT_STR,                                                                                                         \
         L(postgresql.kind.sslpassword),                                                                                 \
         NULL,                                                                                                           \
         NOB,                                                                                                            \
         CF_SECRET,                                                                                                      \
         NULL,                                                                                                           \
         NULL},                                                                                                          \
        {"postgresql.authentication." #kind ".sslrootcert",                                                              \
         CT_STR,                                                                                                         \
         L(postgresql.kind.sslrootcert),                                                                                 \
         NULL,                                                                                                           \
         NOB,                                                                                                            \
         0,                                                                                                              \
         NULL,                                                                                                           \
         NULL},                                                                                                          \
        {"postgresql.authentication." #kind ".sslcrl", CT_STR, L(postgresql.kind.sslcrl), NULL, NOB, 0, NULL, NULL},     \
        {"postgresql.authentication." #kind ".sslcrldir",                                                                \
         CT_STR,                                                                                                         \
         L(postgresql.kind.sslcrldir),                                                                                   \
         NULL,                                                                                                           \
         NOB,                                                                                                            \
         0,                                                                                                              \
         NULL,                                                                                                           \
         NULL},                                                                                                          \
        {"postgresql.authentication." #kind ".gssencmode",                                                               \
         CT_STR,                                                                                                         \
         L(postgresql.kind.gssencmode),                                                                                  \
         NULL,                                                                                                           \
         NOB,                                                                                                            \
         0,                                                                                                              \
         NULL,                                                                                                           \
         NULL},                                                                                                          \
        {"postgresql.authentication." #kind ".channel_binding",                                                          \
         CT_STR,                                                                                                         \
         L(postgresql.kind.channel_binding),                                                                             \
         NULL,                                                                                                           \
         NOB,                                                                                                            \
         0,                                                                                                              \
         NULL,                                                                                                           \
         NULL},                                                                                                          \
    {                                                                                                                    \
        "postgresql.authentication." #kind ".sslnegotiation", CT_STR, L(postgresql.kind.sslnegotiation), NULL, NOB, 0,   \
            NULL, NULL                                                                                                   \
    }

static const CfgEntry local_table[] = {
    {"name", CT_STR, L(name), NULL, NOB, CF_REQUIRED | CF_RESTART, NULL, NULL},
    {"scope", CT_STR, L(scope), NULL, NOB, CF_REQUIRED | CF_RESTART, NULL, NULL},
    {"namespace", CT_STR, L(namespace_), "/service", NOB, CF_RESTART, NULL, NULL},

    {"restapi", CT_SECTION, NO_OFFSET, NULL, NOB, CF_REQUIRED, NULL, NULL},
    {"restapi.listen", CT_STR, L(restapi.listen), NULL, NOB, CF_REQUIRED | CF_HOSTPORT | CF_RESTAPI, NULL, NULL},
    {"restapi.connect_address", CT_STR, L(restapi.connect_address), NULL, NOB, CF_HOSTPORT | CF_RESTAPI, NULL, NULL},
    {"restapi.authentication", CT_SECTION, NO_OFFSET, NULL, NOB, 0, NULL, NULL},
    {"restapi.authentication.username", CT_STR, L(restapi.username), NULL, NOB, 0, NULL, NULL},
    {"restapi.authentication.password", CT_STR, L(restapi.password), NULL, NOB, CF_SECRET, NULL, NULL},
    {"restapi.certfile", CT_STR, L(restapi.certfile), NULL, NOB, CF_RESTAPI, NULL, NULL},
    {"restapi.keyfile", CT_STR, L(restapi.keyfile), NULL, NOB, CF_RESTAPI, NULL, NULL},
    {"restapi.keyfile_password", CT_STR, L(restapi.keyfile_password), NULL, NOB, CF_SECRET | CF_RESTAPI, NULL, NULL},
    {"restapi.cafile", CT_STR, L(restapi.cafile), NULL, NOB, CF_RESTAPI, NULL, NULL},
    {"restapi.ciphers", CT_STR, L(restapi.ciphers), NULL, NOB, CF_RESTAPI, NULL, NULL},
    {"restapi.verify_client", CT_ENUM, L(restapi.verify_client), "none", NOB, CF_INDEX | CF_RESTAPI, verify_choices,
     NULL},
    {"restapi.allowlist", CT_STRLIST, L(restapi.allowlist), NULL, NOB, 0, NULL, NULL},
    {"restapi.allowlist_include_members", CT_BOOL, L(restapi.allowlist_include_members), "false", NOB, 0, NULL, NULL},
    {"restapi.http_extra_headers", CT_MAP, L(restapi.http_extra_headers), NULL, NOB, 0, NULL, NULL},
    {"restapi.https_extra_headers", CT_MAP, L(restapi.https_extra_headers), NULL, NOB, 0, NULL, NULL},
    {"restapi.request_queue_size", CT_INT, L(restapi.request_queue_size), "128", 0, 4096, CF_RESTAPI, NULL, NULL},
    {"restapi.server_tokens", CT_ENUM, L(restapi.server_tokens), "original", NOB, 0, server_tokens_choices, NULL},

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
    {"etcd3.srv", CT_STR, L(etcd3.srv), NULL, NOB, CF_RESTART, NULL, "etcd3.discovery_srv"},
    {"etcd3.srv_suffix", CT_STR, L(etcd3.srv_suffix), NULL, NOB, CF_RESTART, NULL, NULL},
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
    {"bootstrap.post_bootstrap", CT_STR, L(bootstrap.post_bootstrap), NULL, NOB, 0, NULL, "bootstrap.post_init"},

    {"postgresql", CT_SECTION, NO_OFFSET, NULL, NOB, CF_REQUIRED, NULL, NULL},
    {"postgresql.listen", CT_STR, L(postgresql.listen), NULL, NOB, CF_REQUIRED | CF_LISTEN, NULL, NULL},
    {"postgresql.connect_address", CT_STR, L(postgresql.connect_address), NULL, NOB, CF_HOSTPORT, NULL, NULL},
    {"postgresql.proxy_address", CT_STR, L(postgresql.proxy_address), NULL, NOB, CF_HOSTPORT, NULL, NULL},
    {"postgresql.data_dir", CT_STR, L(postgresql.data_dir), NULL, NOB, CF_REQUIRED | CF_RESTART, NULL, NULL},
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
    {"postgresql.bin_name.pg_controldata", CT_STR, L(postgresql.bin_name.pg_controldata), "pg_controldata", NOB, 0,
     NULL, NULL},
    {"postgresql.bin_name.pg_basebackup", CT_STR, L(postgresql.bin_name.pg_basebackup), "pg_basebackup", NOB, 0, NULL,
     NULL},
    {"postgresql.bin_name.postgres", CT_STR, L(postgresql.bin_name.postgres), "postgres", NOB, 0, NULL, NULL},
    {"postgresql.bin_name.pg_isready", CT_STR, L(postgresql.bin_name.pg_isready), "pg_isready", NOB, 0, NULL, NULL},
    {"postgresql.bin_name.pg_rewind", CT_STR, L(postgresql.bin_name.pg_rewind), "pg_rewind", NOB, 0, NULL, NULL},
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
    {"postgresql.callbacks.on_restart", CT_STR, L(postgresql.callbacks.on_restart), NULL, NOB, 0, NULL, NULL},
    {"postgresql.callbacks.on_reload", CT_STR, L(postgresql.callbacks.on_reload), NULL, NOB, 0, NULL, NULL},
    {"postgresql.callbacks.on_role_change", CT_STR, L(postgresql.callbacks.on_role_change), NULL, NOB, 0, NULL, NULL},
    {"postgresql.create_replica_methods", CT_STRLIST, L(postgresql.create_replica_methods), NULL, NOB, 0, NULL,
     "postgresql.create_replica_method"},
    {"postgresql.basebackup", CT_ANY, L(postgresql.basebackup), NULL, NOB, 0, NULL, NULL},
    {"postgresql.use_unix_socket", CT_BOOL, L(postgresql.use_unix_socket), "false", NOB, 0, NULL, NULL},
    {"postgresql.use_unix_socket_repl", CT_BOOL, L(postgresql.use_unix_socket_repl), "false", NOB, 0, NULL, NULL},
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
    {"tags.sync_priority", CT_INT, L(tags.sync_priority), "1", NOB, 0, NULL, NULL},
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
    {"pgha.follow_etcd_cluster_change", CT_BOOL, L(pgha.follow_etcd_cluster_change), "false", NOB, 0, NULL, NULL},

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
    {"primary_start_timeout", CT_INT, D(primary_start_timeout), "300", 0, LLONG_MAX, 0, NULL, "master_start_timeout"},
    {"primary_stop_timeout", CT_INT, D(primary_stop_timeout), "0", 0, LLONG_MAX, 0, NULL, "master_stop_timeout"},
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

const CfgTable cfg_local = {local_table, ELEMENTSOF(local_table)};
const CfgTable cfg_dyn = {dyn_table, ELEMENTSOF(dyn_table)};

/* ------------------------------------------------------------------------------------------ */
/* applying a table                                                                            */

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
    (void)cfg_set_value(e, base, d, src, diag);
    ynode_free(d);
}

void cfg_apply_table(const CfgTable *t, const YNode *root, const char *prefix, void *base, bool *present,
                     const char *src, CfgDiag *diag) {
    for (size_t i = 0; i < t->n; i++) {
        const CfgEntry *e = &t->v[i];
        const char *name;
        const YNode *n = entry_node(e, root, &name);
        present[i] = n && n->type != Y_NULL;
        if (present[i]) {
            _cleanup_free_ char *path = full_path(prefix, name);
            CfgEntry copy = *e;
            copy.path = path;
            /* a rejected value is reported; the default stands in, so that later checks (the
             * timing rule) see a sane value rather than a zero and add misleading messages */
            bool settable = e->type == CT_SECTION || e->offset != NO_OFFSET;
            if (settable && !cfg_set_value(&copy, base, n, src, diag))
                set_default(e, base, src, diag);
            continue;
        }
        if (e->flags & CF_REQUIRED) {
            _cleanup_free_ char *path = full_path(prefix, e->path);
            cfg_diag_error(diag, NULL, src, NULL, "missing required key '%s'", path);
            continue;
        }
        set_default(e, base, src, diag);
    }
}

static const CfgEntry *find_entry(const CfgTable *t, const char *path) {
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].path, path) == 0 || (t->v[i].alias && strcmp(t->v[i].alias, path) == 0))
            return &t->v[i];
    return NULL;
}

static bool is_prefix_of_entry(const CfgTable *t, const char *path) {
    size_t l = strlen(path);
    for (size_t i = 0; i < t->n; i++)
        if (strncmp(t->v[i].path, path, l) == 0 && t->v[i].path[l] == '.')
            return true;
    return false;
}

/* `map` sits at `prefix` (relative to the table, NULL for `root` itself). */
static void warn_unknown_at(const CfgTable *t, const YNode *map, const char *prefix, const char *display_prefix,
                            const YNode *root, AllowFn allowed, const char *src, CfgDiag *diag) {
    for (size_t i = 0; i < map->n; i++) {
        _cleanup_free_ char *path = full_path(prefix, map->keys[i]);
        const CfgEntry *e = find_entry(t, path);
        const YNode *v = map->items[i];
        if (e && e->type != CT_SECTION && e->type != CT_MAP)
            continue;
        if (e && e->type == CT_MAP && !is_prefix_of_entry(t, path))
            continue;
        if (e || is_prefix_of_entry(t, path)) {
            if (v->type == Y_MAP)
                warn_unknown_at(t, v, path, display_prefix, root, allowed, src, diag);
            continue;
        }
        if (allowed && allowed(path, root))
            continue;
        _cleanup_free_ char *shown = full_path(display_prefix, path);
        cfg_diag_warn(diag, v, src, shown, "unknown configuration key, ignored");
    }
}

void cfg_warn_unknown(const CfgTable *t, const YNode *root, const char *display_prefix, AllowFn allowed,
                      const char *src, CfgDiag *diag) {
    warn_unknown_at(t, root, NULL, display_prefix, root, allowed, src, diag);
}

bool cfg_table_is_set(const CfgTable *t, const bool *present, const char *path) {
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].path, path) == 0)
            return present[i];
    return false;
}

void cfg_table_free(const CfgTable *t, void *base) {
    for (size_t i = 0; i < t->n; i++)
        cfg_free_value(&t->v[i], base);
}
