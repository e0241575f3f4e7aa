/* The configuration files pgha manages, as Patroni writes them. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pg/pg.h"

typedef struct Controlled {
    const char *name;
    const char *def;
    long long min; /* numeric minimum, or LLONG_MIN for non-numeric */
    const char *const *enum_values;
    int min_major; /* only for majors >= this (0 = all) */
    int max_major; /* only for majors <= this (0 = all) */
} Controlled;

static const char *const wal_levels[] = {"hot_standby", "replica", "logical", NULL};
static const char *const bools[] = {"on", "off", "true", "false", "yes", "no", "1", "0", NULL};

static const Controlled controlled_gucs[] = {
    {"hot_standby", "on", LLONG_MIN, bools, 0, 0},
    {"wal_level", "hot_standby", LLONG_MIN, wal_levels, 0, 0},
    {"max_connections", "100", 25, NULL, 0, 0},
    {"max_wal_senders", "10", 3, NULL, 0, 0},
    {"wal_keep_segments", "8", 1, NULL, 0, 12},
    {"wal_keep_size", "128MB", LLONG_MIN, NULL, 13, 0},
    {"max_prepared_transactions", "0", 0, NULL, 0, 0},
    {"max_locks_per_transaction", "64", 32, NULL, 0, 0},
    {"track_commit_timestamp", "off", LLONG_MIN, bools, 0, 0},
    {"max_replication_slots", "10", 4, NULL, 0, 0},
    {"max_worker_processes", "8", 2, NULL, 0, 0},
    {"wal_log_hints", "on", LLONG_MIN, bools, 0, 0},
};

static void set_param(YNode *params, const char *name, const char *value) {
    ynode_set(params, name, ynode_new_str(value, "parameters", 0));
}

static const char *param_get(const YNode *params, const char *name) {
    const YNode *v = ynode_get(params, name);
    return v && v->type == Y_STR ? v->text : NULL;
}

/* "2080MB" for 130 segments of 16 MB: what Patroni writes. */
static char *segments_to_size(const char *segments) {
    long long n;
    if (parse_ll(segments, &n) < 0 || n < 0)
        return NULL;
    return xasprintf("%lldMB", n * 16);
}

YNode *pg_build_parameters(const PghaConfig *cfg, const YNode *dyn_parameters, int major, StrList *warnings) {
    YNode *params = ynode_new(Y_MAP, "parameters", 0);
    /* dynamic first */
    for (size_t i = 0; dyn_parameters && dyn_parameters->type == Y_MAP && i < dyn_parameters->n; i++) {
        _cleanup_free_ char *v = pg_guc_value_string(dyn_parameters->items[i]);
        if (v)
            set_param(params, dyn_parameters->keys[i], v);
    }
    /* local on top, except the controlled ones */
    const YNode *local = cfg->postgresql.parameters;
    for (size_t i = 0; local && i < local->n; i++) {
        if (config_is_controlled_guc(local->keys[i]))
            continue;
        _cleanup_free_ char *v = pg_guc_value_string(local->items[i]);
        if (v)
            set_param(params, local->keys[i], v);
    }
    /* version translation: wal_keep_segments does not exist on 13+ */
    if (major >= 13) {
        const char *seg = param_get(params, "wal_keep_segments");
        if (seg) {
            if (!param_get(params, "wal_keep_size")) {
                _cleanup_free_ char *size = segments_to_size(seg);
                if (size)
                    set_param(params, "wal_keep_size", size);
            }
            ynode_remove(params, "wal_keep_segments");
        }
    } else if (major > 0) {
        ynode_remove(params, "wal_keep_size");
    }
    /* controlled GUCs: validated, defaults */
    for (size_t i = 0; i < ELEMENTSOF(controlled_gucs); i++) {
        const Controlled *g = &controlled_gucs[i];
        if ((g->min_major && major > 0 && major < g->min_major) || (g->max_major && major > g->max_major))
            continue;
        const char *v = param_get(params, g->name);
        bool valid = v != NULL;
        if (v && g->enum_values) {
            valid = false;
            for (int k = 0; g->enum_values[k]; k++)
                if (strcasecmp(v, g->enum_values[k]) == 0)
                    valid = true;
            if (valid && strcmp(g->name, "hot_standby") == 0 &&
                !(strcasecmp(v, "on") == 0 || strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0 ||
                  strcmp(v, "1") == 0))
                valid = false; /* must be on */
        } else if (v && g->min != LLONG_MIN) {
            long long n;
            valid = parse_ll(v, &n) == 0 && n >= g->min;
        }
        if (v && !valid && warnings) {
            _cleanup_free_ char *w = xasprintf("postgresql.parameters.%s: invalid value '%s', using the default '%s'",
                                               g->name, v, g->def);
            strlist_add(warnings, w);
        }
        if (!valid) {
            const char *def = g->def;
            if (strcmp(g->name, "wal_level") == 0 && (major == 0 || major >= 10))
                def = "replica";
            set_param(params, g->name, def);
        }
    }
    if (major >= 10) {
        const char *wl = param_get(params, "wal_level");
        if (wl && strcasecmp(wl, "hot_standby") == 0)
            set_param(params, "wal_level", "replica");
    }
    /* listen_addresses, port, cluster_name */
    StrList addrs = {0};
    int port = 5432;
    if (cfg->postgresql.listen && parse_listen(cfg->postgresql.listen, &addrs, &port) == 0) {
        _cleanup_free_ char *joined = strlist_join(&addrs, ",");
        set_param(params, "listen_addresses", joined);
        char p[16];
        snprintf(p, sizeof p, "%d", port);
        set_param(params, "port", p);
    }
    strlist_clear(&addrs);
    set_param(params, "cluster_name", cfg->scope ? cfg->scope : "");
    /* hba/ident files live in config_dir */
    if (cfg->postgresql.config_dir && cfg->postgresql.data_dir &&
        strcmp(cfg->postgresql.config_dir, cfg->postgresql.data_dir) != 0) {
        if (!param_get(params, "hba_file")) {
            _cleanup_free_ char *p = xasprintf("%s/pg_hba.conf", cfg->postgresql.config_dir);
            set_param(params, "hba_file", p);
        }
        if (!param_get(params, "ident_file")) {
            _cleanup_free_ char *p = xasprintf("%s/pg_ident.conf", cfg->postgresql.config_dir);
            set_param(params, "ident_file", p);
        }
    }
    return params;
}

int pg_effective_parameters(YNode *params, const ControlData *cd, int major, StrList *ret_names, StrList *ret_control,
                            StrList *ret_configured) {
    const struct {
        const char *name;
        long long control;
        int since; /* major version from which pg_control records it */
    } checks[] = {
        {"max_connections", cd->max_connections, 0},
        {"max_prepared_transactions", cd->max_prepared_xacts, 0},
        {"max_locks_per_transaction", cd->max_locks_per_xact, 0},
        {"max_worker_processes", cd->max_worker_processes, 0},
        {"max_wal_senders", cd->max_wal_senders, 12},
    };
    int n = 0;
    for (size_t i = 0; i < ELEMENTSOF(checks); i++) {
        if (major > 0 && major < checks[i].since)
            continue;
        const char *v = param_get(params, checks[i].name);
        long long configured;
        if (checks[i].control < 0 || !v || parse_ll(v, &configured) < 0 || checks[i].control <= configured)
            continue;
        char cv[32];
        snprintf(cv, sizeof cv, "%lld", checks[i].control);
        if (ret_names)
            strlist_add(ret_names, checks[i].name);
        if (ret_control)
            strlist_add(ret_control, cv);
        if (ret_configured)
            strlist_add(ret_configured, v); /* before set_param() frees it */
        set_param(params, checks[i].name, cv);
        n++;
    }
    return n;
}

static int cmp_keys(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int write_file_atomic(const char *path, const char *content, mode_t mode, char **ret_error) {
    _cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        *ret_error = xasprintf("cannot write %s: %s", tmp, strerror(errno));
        return -errno;
    }
    size_t len = strlen(content), off = 0;
    while (off < len) {
        ssize_t n = write(fd, content + off, len - off);
        if (n < 0) {
            int e = errno;
            *ret_error = xasprintf("cannot write %s: %s", tmp, strerror(e));
            close(fd);
            unlink(tmp);
            return -e;
        }
        off += (size_t)n;
    }
    if (fsync(fd) < 0 || close(fd) < 0) {
        int e = errno;
        *ret_error = xasprintf("cannot write %s: %s", tmp, strerror(e));
        unlink(tmp);
        return -e;
    }
    if (rename(tmp, path) < 0) {
        int e = errno;
        *ret_error = xasprintf("cannot rename %s to %s: %s", tmp, path, strerror(e));
        unlink(tmp);
        return -e;
    }
    return 0;
}

char *pg_render_postgresql_conf(const PghaConfig *cfg, const YNode *params, const YNode *recovery) {
    StrBuf b;
    sb_init(&b);
    sb_add(&b, "# Do not edit this file manually!\n# It will be overwritten by Patroni!\n");
    _cleanup_free_ char *inc = pg_guc_quote(cfg->postgresql.custom_conf ? cfg->postgresql.custom_conf
                                                                        : "postgresql.base.conf");
    sb_addf(&b, "include %s\n\n", inc);
    char **keys = xcalloc(params->n + 1, sizeof(char *));
    for (size_t i = 0; i < params->n; i++)
        keys[i] = params->keys[i];
    qsort(keys, params->n, sizeof(char *), cmp_keys);
    for (size_t i = 0; i < params->n; i++) {
        const char *v = param_get(params, keys[i]);
        if (!v)
            continue;
        _cleanup_free_ char *q = pg_guc_quote(v);
        sb_addf(&b, "%s = %s\n", keys[i], q);
    }
    free(keys);
    if (recovery && recovery->n) {
        sb_add(&b, "\n# recovery.conf\n");
        for (size_t i = 0; i < recovery->n; i++) {
            _cleanup_free_ char *v = pg_guc_value_string(recovery->items[i]);
            if (!v)
                continue;
            _cleanup_free_ char *q = pg_guc_quote(v);
            sb_addf(&b, "%s = %s\n", recovery->keys[i], q);
        }
    }
    return sb_steal(&b);
}

int pg_write_postgresql_conf(const PghaConfig *cfg, const YNode *params, const YNode *recovery, char **ret_error) {
    const char *dir = cfg->postgresql.config_dir;
    _cleanup_free_ char *conf = xasprintf("%s/postgresql.conf", dir);
    _cleanup_free_ char *base = xasprintf("%s/postgresql.base.conf", dir);
    /* keep the original configuration (from initdb or the packager) as postgresql.base.conf */
    struct stat st;
    if (!cfg->postgresql.custom_conf && stat(base, &st) < 0) {
        if (stat(conf, &st) == 0) {
            if (rename(conf, base) < 0) {
                *ret_error = xasprintf("cannot rename %s to %s: %s", conf, base, strerror(errno));
                return -errno;
            }
        } else {
            int fd = open(base, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
            if (fd >= 0)
                close(fd);
        }
    }
    _cleanup_free_ char *text = pg_render_postgresql_conf(cfg, params, recovery);
    return write_file_atomic(conf, text, 0600, ret_error);
}

int pg_write_hba(const char *path, const YNode *lines, bool append, char **ret_error) {
    StrBuf b;
    sb_init(&b);
    if (append) {
        FILE *f = fopen(path, "re");
        if (f) {
            char buf[4096];
            size_t n;
            while ((n = fread(buf, 1, sizeof buf, f)) > 0)
                sb_addn(&b, buf, n);
            fclose(f);
            if (b.len && b.s[b.len - 1] != '\n')
                sb_addc(&b, '\n');
        }
    } else {
        sb_add(&b, "# Do not edit this file manually!\n# It will be overwritten by Patroni!\n");
    }
    for (size_t i = 0; lines && i < lines->n; i++) {
        _cleanup_free_ char *l = ynode_scalar_string(lines->items[i]);
        if (l)
            sb_addf(&b, "%s\n", l);
    }
    int r = write_file_atomic(path, b.s ? b.s : "", 0600, ret_error);
    sb_free(&b);
    return r;
}

static void pgpass_escape(StrBuf *b, const char *s) {
    for (; s && *s; s++) {
        if (*s == ':' || *s == '\\')
            sb_addc(b, '\\');
        sb_addc(b, *s);
    }
}

char *pg_pgpass_line(const char *host, const char *port, const char *user, const char *password) {
    StrBuf b;
    sb_init(&b);
    pgpass_escape(&b, host ? host : "*");
    sb_addc(&b, ':');
    pgpass_escape(&b, port ? port : "*");
    sb_add(&b, ":*:");
    pgpass_escape(&b, user ? user : "*");
    sb_addc(&b, ':');
    pgpass_escape(&b, password ? password : "");
    return sb_steal(&b);
}

int pg_write_pgpass(const char *path, const StrList *lines, char **ret_error) {
    StrBuf b;
    sb_init(&b);
    for (size_t i = 0; i < lines->n; i++)
        sb_addf(&b, "%s\n", lines->v[i]);
    int r = write_file_atomic(path, b.s ? b.s : "", 0600, ret_error);
    sb_free(&b);
    return r;
}

int pg_set_standby_signal(const char *data_dir, bool standby, char **ret_error) {
    _cleanup_free_ char *p = xasprintf("%s/standby.signal", data_dir);
    if (standby) {
        int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
            *ret_error = xasprintf("cannot create %s: %s", p, strerror(errno));
            return -errno;
        }
        close(fd);
    } else if (unlink(p) < 0 && errno != ENOENT) {
        *ret_error = xasprintf("cannot remove %s: %s", p, strerror(errno));
        return -errno;
    }
    return 0;
}

void pg_cmdline_options(const YNode *params, StrList *ret) {
    for (int i = 0; config_controlled_gucs[i]; i++) {
        const char *name = config_controlled_gucs[i];
        /* wal_keep_* stay in postgresql.conf, as Patroni does (they are not among its CMDLINE_OPTIONS) */
        if (streq(name, "wal_keep_segments") || streq(name, "wal_keep_size"))
            continue;
        const char *v = param_get(params, name);
        if (v) {
            _cleanup_free_ char *o = xasprintf("--%s=%s", name, v);
            strlist_add(ret, o);
        }
    }
}

static void conninfo_add(StrBuf *b, const char *key, const char *value) {
    if (!value || !*value)
        return;
    if (b->len)
        sb_addc(b, ' ');
    sb_addf(b, "%s=", key);
    bool quote = !*value || strpbrk(value, " \t'\\") != NULL;
    if (quote)
        sb_addc(b, '\'');
    for (const char *p = value; *p; p++) {
        if (*p == '\'' || *p == '\\')
            sb_addc(b, '\\');
        sb_addc(b, *p);
    }
    if (quote)
        sb_addc(b, '\'');
}

char *pg_primary_conninfo(const PghaConfig *cfg, const char *host, int port) {
    StrBuf b;
    sb_init(&b);
    const PgAuth *a = &cfg->postgresql.replication;
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    conninfo_add(&b, "dbname", cfg->postgresql.database);
    conninfo_add(&b, "user", a->username);
    conninfo_add(&b, "passfile", cfg->postgresql.pgpass);
    conninfo_add(&b, "host", host);
    conninfo_add(&b, "port", p);
    conninfo_add(&b, "sslmode", a->sslmode ? a->sslmode : "prefer");
    conninfo_add(&b, "sslcert", a->sslcert);
    conninfo_add(&b, "sslkey", a->sslkey);
    conninfo_add(&b, "sslrootcert", a->sslrootcert);
    conninfo_add(&b, "sslcrl", a->sslcrl);
    conninfo_add(&b, "application_name", cfg->name);
    conninfo_add(&b, "gssencmode", a->gssencmode ? a->gssencmode : "prefer");
    conninfo_add(&b, "channel_binding", a->channel_binding ? a->channel_binding : "prefer");
    return sb_steal(&b);
}

static char *read_small_file(const char *path) {
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    StrBuf b;
    sb_init(&b);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0 && b.len < 16 * 1024 * 1024)
        sb_addn(&b, buf, n);
    fclose(f);
    return sb_steal(&b);
}

int pg_update_postgresql_conf(const PghaConfig *cfg, const YNode *params, const YNode *recovery, char **ret_error) {
    _cleanup_free_ char *text = pg_render_postgresql_conf(cfg, params, recovery);
    _cleanup_free_ char *conf_path = xasprintf("%s/postgresql.conf", cfg->postgresql.config_dir);
    _cleanup_free_ char *current = read_small_file(conf_path);
    if (streq(text, current))
        return 0;
    int r = pg_write_postgresql_conf(cfg, params, recovery, ret_error);
    return r < 0 ? r : 1;
}

static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "re");
    if (!in)
        return -errno;
    int fd = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        fclose(in);
        return -e;
    }
    char buf[8192];
    size_t n;
    int r = 0;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (write(fd, buf, n) != (ssize_t)n) {
            r = -EIO;
            break;
        }
    fclose(in);
    if (close(fd) < 0 && r == 0)
        r = -errno;
    return r;
}

void pg_prepare_config_dir(const PghaConfig *cfg, StrList *warnings) {
    if (streq(cfg->postgresql.config_dir, cfg->postgresql.data_dir))
        return;
    if (mkdir(cfg->postgresql.config_dir, 0700) < 0 && errno != EEXIST)
        strlist_addf(warnings, "cannot create %s: %s", cfg->postgresql.config_dir, strerror(errno));
    static const struct {
        const char *from, *to;
    } files[] = {{"pg_hba.conf", "pg_hba.conf"},
                 {"pg_ident.conf", "pg_ident.conf"},
                 {"postgresql.conf", "postgresql.base.conf"}};
    for (size_t i = 0; i < ELEMENTSOF(files); i++) {
        _cleanup_free_ char *from = xasprintf("%s/%s", cfg->postgresql.data_dir, files[i].from);
        _cleanup_free_ char *to = xasprintf("%s/%s", cfg->postgresql.config_dir, files[i].to);
        struct stat st;
        if (stat(to, &st) == 0 || stat(from, &st) < 0)
            continue;
        int r = copy_file(from, to);
        if (r < 0)
            strlist_addf(warnings, "cannot copy %s to %s: %s", from, to, strerror(-r));
    }
}
