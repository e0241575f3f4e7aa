/* Validation beyond the table's types and bounds: the diagnostics every rule writes to, Patroni's
 * timing rule (spec §4.1), and the rules across keys of the local configuration, with the values
 * derived from other keys. */
#include <stdarg.h>
#include <string.h>

#include "common/config_int.h"
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

static void diag_add(StrList *l, const YNode *where, const char *fallback_source, const char *path, const char *fmt,
                     va_list ap) __attribute__((format(printf, 5, 0)));
static void diag_add(StrList *l, const YNode *where, const char *fallback_source, const char *path, const char *fmt,
                     va_list ap) {
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

void cfg_diag_error(CfgDiag *d, const YNode *where, const char *src, const char *path, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    diag_add(&d->errors, where, src, path, fmt, ap);
    va_end(ap);
}

void cfg_diag_warn(CfgDiag *d, const YNode *where, const char *src, const char *path, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    diag_add(&d->warnings, where, src, path, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------------------------ */
/* the timing rule                                                                             */

void cfg_adjust_timeouts(const YNode *where, const char *src, const char *path, long long *ttl, long long *loop_wait,
                         long long *retry_timeout, bool short_ttl, CfgDiag *diag) {
    /* Patroni's minimums; with pgha.allow_short_ttl the fast profile of bench/failover is allowed */
    struct {
        const char *name;
        long long min;
    } mins[] = {{"loop_wait", 1}, {"retry_timeout", short_ttl ? 1 : 3}, {"ttl", short_ttl ? 5 : 20}};
    long long *vals[] = {loop_wait, retry_timeout, ttl};
    for (size_t i = 0; i < ELEMENTSOF(mins); i++)
        if (*vals[i] < mins[i].min) {
            cfg_diag_warn(diag, where, src, path, "%s=%lld can't be smaller than %lld, the value is set to %lld",
                          mins[i].name, *vals[i], mins[i].min, mins[i].min);
            *vals[i] = mins[i].min;
        }
    if (1 + 2 * *retry_timeout > *ttl) {
        long long rt = (*ttl - 1) / 2;
        cfg_diag_warn(diag, where, src, path,
                      "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl=%lld. "
                      "Adjusting loop_wait from %lld to 1 and retry_timeout from %lld to %lld",
                      *ttl, *loop_wait, *retry_timeout, rt);
        *loop_wait = 1;
        *retry_timeout = rt;
    } else if (*loop_wait + 2 * *retry_timeout > *ttl) {
        long long lw = *ttl - 2 * *retry_timeout;
        cfg_diag_warn(diag, where, src, path,
                      "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl=%lld and "
                      "retry_timeout=%lld. Adjusting loop_wait from %lld to %lld",
                      *ttl, *retry_timeout, *loop_wait, lw);
        *loop_wait = lw;
    }
    if (short_ttl && *ttl < 20)
        cfg_diag_warn(diag, where, src, path,
                      "ttl=%lld is below Patroni's minimum of 20 (allowed by pgha.allow_short_ttl); Patroni "
                      "nodes would use 20",
                      *ttl);
}

void dyn_adjust_timeouts(long long *ttl, long long *loop_wait, long long *retry_timeout, CfgDiag *diag) {
    cfg_adjust_timeouts(NULL, NULL, NULL, ttl, loop_wait, retry_timeout, false, diag);
}

/* ------------------------------------------------------------------------------------------ */
/* the local configuration                                                                     */

/* The DCS sections of Patroni other than etcd3: reported by check_dcs, not as unknown keys. */
static const char *const other_dcs[] = {"etcd", "consul", "zookeeper", "exhibitor", "kubernetes", "raft", NULL};

/* GUCs only the dynamic configuration may set (spec §3.7.1). */
const char *const config_controlled_gucs[] = {"listen_addresses",
                                              "port",
                                              "cluster_name",
                                              "hot_standby",
                                              "wal_level",
                                              "max_connections",
                                              "max_wal_senders",
                                              "wal_keep_segments",
                                              "wal_keep_size",
                                              "max_prepared_transactions",
                                              "max_locks_per_transaction",
                                              "track_commit_timestamp",
                                              "max_replication_slots",
                                              "max_worker_processes",
                                              "wal_log_hints",
                                              NULL};

static bool in_list(const char *const *list, const char *s);

bool config_is_controlled_guc(const char *name) { return in_list(config_controlled_gucs, name); }

static bool in_list(const char *const *list, const char *s) {
    for (; *list; list++)
        if (strcmp(*list, s) == 0)
            return true;
    return false;
}

bool cfg_local_allowed(const char *path, const YNode *root) {
    /* custom tags are published as they are (spec §3.8) */
    if (str_startswith(path, "tags."))
        return true;
    /* a local use_slots is reported by post_process: it only counts in the dynamic configuration */
    if (streq(path, "postgresql.use_slots"))
        return true;
    /* other DCS sections are reported by post_process, not as unknown keys */
    for (int i = 0; other_dcs[i]; i++) {
        size_t l = strlen(other_dcs[i]);
        if (strncmp(path, other_dcs[i], l) == 0 && (path[l] == '\0' || path[l] == '.'))
            return true;
    }
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

/* DCS: only etcd3 is implemented */
static void check_dcs(const YNode *root, const PghaConfig *c, const char *src, CfgDiag *diag) {
    bool have_etcd3 = ynode_get(root, "etcd3") != NULL;
    for (int i = 0; other_dcs[i]; i++) {
        const YNode *s = ynode_get(root, other_dcs[i]);
        if (!s)
            continue;
        if (have_etcd3)
            cfg_diag_warn(diag, s, src, other_dcs[i], "pgha supports only the etcd3 DCS; this section is ignored");
        else
            cfg_diag_error(diag, s, src, other_dcs[i],
                           "pgha supports only the etcd3 DCS (etcd v3 API); use an 'etcd3' section instead");
    }
    if (!have_etcd3) {
        bool reported = false;
        for (int i = 0; other_dcs[i]; i++)
            reported |= ynode_get(root, other_dcs[i]) != NULL;
        if (!reported)
            cfg_diag_error(diag, NULL, src, NULL, "missing required section 'etcd3' (the DCS configuration)");
    } else if (!c->etcd3.host && c->etcd3.hosts.n == 0 && !c->etcd3.url && !c->etcd3.proxy && !c->etcd3.srv) {
        cfg_diag_error(diag, ynode_get(root, "etcd3"), src, "etcd3",
                       "one of 'host', 'hosts', 'url', 'proxy' or 'srv' is required");
    }
    for (size_t i = 0; i < c->etcd3.hosts.n; i++) {
        _cleanup_free_ char *h = NULL;
        int port;
        /* a host without a port has etcd3.port */
        if (parse_host_port(c->etcd3.hosts.v[i], (int)c->etcd3.port, &h, &port) < 0)
            cfg_diag_error(diag, ynode_get_path(root, "etcd3.hosts"), src, "etcd3.hosts",
                           "'%s' is not a valid host[:port]", c->etcd3.hosts.v[i]);
    }
    const struct { const char *path, *url; } urls[] = {{"etcd3.url", c->etcd3.url}, {"etcd3.proxy", c->etcd3.proxy}};
    for (size_t i = 0; i < ELEMENTSOF(urls); i++) {
        const char *u = urls[i].url;
        if (u && !str_startswith(u, "http://") && !str_startswith(u, "https://"))
            cfg_diag_error(diag, ynode_get_path(root, urls[i].path), src, urls[i].path,
                           "'%s' must start with http:// or https://", u);
    }
}

/* credentials, and the keys whose default is another key's value */
static void derive_defaults(const YNode *root, PghaConfig *c, const char *src, CfgDiag *diag) {
    const struct {
        const char *path;
        const PgAuth *auth;
    } required[] = {{"postgresql.authentication.superuser.username", &c->postgresql.superuser},
                    {"postgresql.authentication.replication.username", &c->postgresql.replication}};
    for (size_t i = 0; i < ELEMENTSOF(required); i++)
        if (required[i].auth->username == NULL && config_is_set(c, "postgresql.authentication"))
            cfg_diag_error(diag, ynode_get_path(root, "postgresql.authentication"), src, required[i].path,
                           "is required");
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
}

/* custom replica and bootstrap methods, and the options of initdb and pg_basebackup */
static void check_methods(const YNode *root, PghaConfig *c, const char *src, CfgDiag *diag) {
    /* custom replica methods: their sections */
    c->postgresql.replica_methods = ynode_new(Y_MAP, src, 0);
    for (size_t i = 0; i < c->postgresql.create_replica_methods.n; i++) {
        const char *m = c->postgresql.create_replica_methods.v[i];
        if (strcmp(m, "basebackup") == 0)
            continue;
        const YNode *s = ynode_get(ynode_get(root, "postgresql"), m);
        if (s && s->type != Y_MAP) {
            _cleanup_free_ char *path = xasprintf("postgresql.%s", m);
            cfg_diag_error(diag, s, src, path, "a replica method section must be a mapping, got %s", cfg_describe(s));
            continue;
        }
        if (s)
            ynode_set(c->postgresql.replica_methods, m, ynode_clone(s));
        else
            cfg_diag_warn(diag, ynode_get_path(root, "postgresql.create_replica_methods"), src,
                          "postgresql.create_replica_methods",
                          "method '%s' has no 'postgresql.%s' section; its command defaults to '%s'", m, m, m);
    }

    /* the bootstrap method */
    if (c->bootstrap.method && strcmp(c->bootstrap.method, "initdb") != 0) {
        const YNode *s = ynode_get(ynode_get(root, "bootstrap"), c->bootstrap.method);
        if (!s || s->type != Y_MAP || !ynode_get(s, "command"))
            cfg_diag_error(diag, ynode_get_path(root, "bootstrap.method"), src, "bootstrap.method",
                           "custom bootstrap method '%s' needs a 'bootstrap.%s' section with a 'command'",
                           c->bootstrap.method, c->bootstrap.method);
        else
            c->bootstrap.method_section = ynode_clone(s);
    }
    if (ynode_get_path(root, "bootstrap.users"))
        cfg_diag_warn(diag, ynode_get_path(root, "bootstrap.users"), src, "bootstrap.users",
                      "bootstrap.users was removed in Patroni 4.0 and is ignored; create users in "
                      "post_bootstrap");

    /* initdb / basebackup options: a list of strings and one-key maps, or a map */
    static const char *const initdb_forbidden[] = {"pgdata", "nosync", "pwfile", "sync-only", "version", NULL};
    static const char *const bb_forbidden[] = {"pgdata",   "format",   "wal-method", "xlog-method", "gzip",
                                               "version",  "compress", "dbname",     "host",        "port",
                                               "username", "password", NULL};
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
            cfg_diag_error(diag, o, src, optsets[k].path, "expected a list of options or a mapping, got %s",
                           cfg_describe(o));
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
                cfg_diag_error(diag, it, src, optsets[k].path,
                               "item %zu: expected an option name or a one-key mapping (e.g. 'encoding: "
                               "UTF8')",
                               i);
                continue;
            }
            if (in_list(optsets[k].forbidden, key))
                cfg_diag_error(diag, it, src, optsets[k].path, "option '%s' is set by pgha itself and is not allowed",
                               key);
        }
    }
}

void cfg_post_process(const YNode *root, PghaConfig *c, const char *src, CfgDiag *diag) {
    check_dcs(root, c, src, diag);
    derive_defaults(root, c, src, diag);
    check_methods(root, c, src, diag);

    /* bootstrap.dcs: the dynamic configuration, with the timing rule */
    if (c->bootstrap.dcs) {
        (void)cfg_dyn_parse_at(c->bootstrap.dcs, "bootstrap.dcs", c->pgha.allow_short_ttl, &c->bootstrap.dyn, diag);
        ynode_free(c->bootstrap.dcs);
        c->bootstrap.dcs = ynode_clone(c->bootstrap.dyn.raw);
    } else {
        dyn_config_defaults(&c->bootstrap.dyn);
    }

    /* local parameters that only the dynamic configuration may set */
    if (c->postgresql.parameters)
        for (size_t i = 0; i < c->postgresql.parameters->n; i++) {
            const char *g = c->postgresql.parameters->keys[i];
            if (config_is_controlled_guc(g))
                cfg_diag_warn(diag, c->postgresql.parameters->items[i], src, "postgresql.parameters",
                              "'%s' is controlled by pgha and can only be set in the dynamic configuration "
                              "(bootstrap.dcs or /config); the local value is ignored",
                              g);
        }
    if (ynode_get_path(root, "postgresql.use_slots"))
        cfg_diag_warn(diag, ynode_get_path(root, "postgresql.use_slots"), src, "postgresql.use_slots",
                      "use_slots is taken only from the dynamic configuration; the local value is ignored");

    /* log levels */
    const struct {
        const char *path, *value;
    } levels[] = {{"log.level", c->log.level}, {"log.traceback_level", c->log.traceback_level}};
    for (size_t i = 0; i < ELEMENTSOF(levels); i++) {
        LogLevel lvl;
        if (levels[i].value && log_level_from_string(levels[i].value, &lvl) < 0)
            cfg_diag_error(diag, ynode_get_path(root, levels[i].path), src, levels[i].path,
                           "'%s' is not one of: DEBUG, INFO, WARNING, ERROR, CRITICAL", levels[i].value);
    }
    if (c->log.format && c->log.format->type != Y_STR && c->log.format->type != Y_SEQ && c->log.format->type != Y_MAP)
        cfg_diag_error(diag, c->log.format, src, "log.format", "expected a string, a list or a mapping");

    /* names */
    if (c->name && !*c->name)
        cfg_diag_error(diag, ynode_get(root, "name"), src, "name", "must not be empty");
    if (c->scope && !*c->scope)
        cfg_diag_error(diag, ynode_get(root, "scope"), src, "scope", "must not be empty");
    if (c->name && strchr(c->name, '/'))
        cfg_diag_error(diag, ynode_get(root, "name"), src, "name", "'%s' must not contain '/'", c->name);
    if (c->scope && strchr(c->scope, '/'))
        cfg_diag_error(diag, ynode_get(root, "scope"), src, "scope", "'%s' must not contain '/'", c->scope);

    /* watchdog: timeout must leave room for loop_wait */
    if (c->watchdog.mode == WATCHDOG_REQUIRED && c->bootstrap.dcs) {
        long long margin = c->watchdog.safety_margin;
        long long timeout = margin == -1 ? c->bootstrap.dyn.ttl / 2 : c->bootstrap.dyn.ttl - margin;
        if (timeout < c->bootstrap.dyn.loop_wait)
            cfg_diag_warn(diag, ynode_get(root, "watchdog"), src, "watchdog",
                          "watchdog timeout %lld s (ttl - safety_margin) is shorter than loop_wait %lld s: "
                          "the watchdog is unusable and a 'required' node will never become leader",
                          timeout, c->bootstrap.dyn.loop_wait);
    }
    /* tags: failover_priority <= 0 behaves as nofailover unless nofailover is set explicitly */
    if (config_is_set(c, "tags.nofailover") && config_is_set(c, "tags.failover_priority") &&
        c->tags.nofailover == (c->tags.failover_priority > 0))
        cfg_diag_warn(diag, ynode_get(root, "tags"), src, "tags",
                      "nofailover=%s contradicts failover_priority=%lld; nofailover wins",
                      c->tags.nofailover ? "true" : "false", c->tags.failover_priority);
    if (!config_is_set(c, "tags.nofailover") && config_is_set(c, "tags.failover_priority") &&
        c->tags.failover_priority <= 0)
        c->tags.nofailover = true;
    /* the same rule for sync_priority and nosync (Patroni 4.1) */
    if (config_is_set(c, "tags.nosync") && config_is_set(c, "tags.sync_priority") &&
        c->tags.nosync == (c->tags.sync_priority > 0))
        cfg_diag_warn(diag, ynode_get(root, "tags"), src, "tags",
                      "nosync=%s contradicts sync_priority=%lld; nosync wins", c->tags.nosync ? "true" : "false",
                      c->tags.sync_priority);
    if (!config_is_set(c, "tags.nosync") && config_is_set(c, "tags.sync_priority") && c->tags.sync_priority <= 0)
        c->tags.nosync = true;
    if (c->tags.replicatefrom && c->name && strcmp(c->tags.replicatefrom, c->name) == 0)
        cfg_diag_warn(diag, ynode_get(root, "tags"), src, "tags.replicatefrom",
                      "a member cannot replicate from itself");
}
