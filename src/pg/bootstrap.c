/* initdb, roles, pg_basebackup, crash recovery, pg_rewind. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pg/pg.h"

char *pg_bin(const char *bin_dir, const char *name) {
    if (!bin_dir || !*bin_dir)
        return xstrdup(name);
    size_t l = strlen(bin_dir);
    return xasprintf("%s%s%s", bin_dir, bin_dir[l - 1] == '/' ? "" : "/", name);
}

void pg_render_options(const YNode *opts, StrList *ret) {
    if (!opts)
        return;
    for (size_t i = 0; i < opts->n; i++) {
        const YNode *it = opts->items[i];
        const char *key = NULL;
        const YNode *val = NULL;
        if (opts->type == Y_MAP) {
            key = opts->keys[i];
            val = it;
        } else if (ynode_is_scalar(it) && it->type != Y_NULL) {
            _cleanup_free_ char *k = ynode_scalar_string(it);
            _cleanup_free_ char *o = xasprintf("--%s", k);
            strlist_add(ret, o);
            continue;
        } else if (it->type == Y_MAP && it->n == 1) {
            key = it->keys[0];
            val = it->items[0];
        }
        if (!key)
            continue;
        _cleanup_free_ char *v = val && val->type != Y_NULL ? ynode_scalar_string(val) : NULL;
        _cleanup_free_ char *o = v ? xasprintf("--%s=%s", key, v) : xasprintf("--%s", key);
        strlist_add(ret, o);
    }
}

static char *output_tail(char *out) {
    if (!out)
        return xstrdup("");
    str_trim(out);
    size_t l = strlen(out);
    if (l > 2000)
        memmove(out, out + l - 2000, 2001);
    return out;
}

/* Run a PostgreSQL tool; on failure *ret_error says what failed, its exit code and its output's tail.
 * Clears argv. */
static int run_tool(StrList *argv, usec_t timeout, char **ret_error, const char *what) {
    char *out = NULL;
    int r = run_command(argv, NULL, timeout, &out);
    strlist_clear(argv);
    if (r != 0) {
        char *tail = output_tail(out); /* out itself, or a new "" when there was none */
        *ret_error = xasprintf("%s failed (exit %d): %s", what, r, tail);
        if (tail != out)
            free(tail);
    }
    free(out);
    return r == 0 ? 0 : r < 0 ? r : -EIO;
}

int pg_initdb(const PghaConfig *cfg, const char *bin_dir, char **ret_error) {
    const char *dir = cfg->postgresql.data_dir;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        *ret_error = xasprintf("cannot create %s: %s", dir, strerror(errno));
        return -errno;
    }
    (void)chmod(dir, 0700);
    char pwfile[] = "/tmp/pgha-pwfile-XXXXXX";
    int fd = mkstemp(pwfile);
    if (fd < 0) {
        *ret_error = xasprintf("cannot create a password file: %s", strerror(errno));
        return -errno;
    }
    const char *pw = cfg->postgresql.superuser.password ? cfg->postgresql.superuser.password : "";
    (void)!write(fd, pw, strlen(pw));
    (void)!write(fd, "\n", 1);
    close(fd);
    StrList argv = {0};
    _cleanup_free_ char *initdb = pg_bin(bin_dir, cfg->postgresql.bin_name.initdb);
    strlist_add(&argv, initdb);
    _cleanup_free_ char *d = xasprintf("--pgdata=%s", dir);
    strlist_add(&argv, d);
    pg_render_options(cfg->bootstrap.initdb, &argv);
    if (cfg->postgresql.superuser.username) {
        _cleanup_free_ char *u = xasprintf("--username=%s", cfg->postgresql.superuser.username);
        strlist_add(&argv, u);
    }
    if (cfg->postgresql.superuser.password) {
        _cleanup_free_ char *p = xasprintf("--pwfile=%s", pwfile);
        strlist_add(&argv, p);
    }
    int r = run_tool(&argv, 600 * USEC_PER_SEC, ret_error, "initdb");
    unlink(pwfile);
    return r;
}

static char *quote_literal(PGconn *c, const char *s) {
    char *q = PQescapeLiteral(c, s, strlen(s));
    char *r = xstrdup(q ? q : "''");
    PQfreemem(q);
    return r;
}

static char *quote_ident(PGconn *c, const char *s) {
    char *q = PQescapeIdentifier(c, s, strlen(s));
    char *r = xstrdup(q ? q : "\"\"");
    PQfreemem(q);
    return r;
}

static int exec_sql(PGconn *c, const char *sql, char **ret_error) {
    PGresult *r = pg_query(c, sql, 30000, ret_error);
    if (!r)
        return -EIO;
    PQclear(r);
    return 0;
}

/* CREATE ROLE if missing, ALTER ROLE otherwise (Patroni's create_or_update_role). */
static int create_or_update_role(PGconn *c, const char *name, const char *password, const char *options,
                                 char **ret_error) {
    _cleanup_free_ char *ident = quote_ident(c, name);
    _cleanup_free_ char *lit = quote_literal(c, name);
    _cleanup_free_ char *pw = password ? quote_literal(c, password) : NULL;
    _cleanup_free_ char *sql = xasprintf("SET synchronous_commit = 'local'; "
                                         "DO $$ BEGIN "
                                         "IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s) THEN "
                                         "CREATE ROLE %s WITH %s%s%s; "
                                         "ELSE ALTER ROLE %s WITH %s%s%s; END IF; END $$",
                                         lit, ident, options, pw ? " PASSWORD " : "", pw ? pw : "", ident, options,
                                         pw ? " PASSWORD " : "", pw ? pw : "");
    return exec_sql(c, sql, ret_error);
}

int pg_create_roles(PGconn *c, const PghaConfig *cfg, int major, char **ret_error) {
    const PgAuth *su = &cfg->postgresql.superuser, *repl = &cfg->postgresql.replication, *rw = &cfg->postgresql.rewind;
    int r = 0;
    if (su->username && su->password)
        r = create_or_update_role(c, su->username, su->password, "SUPERUSER LOGIN", ret_error);
    if (r == 0 && repl->username && !streq(repl->username, su->username))
        r = create_or_update_role(c, repl->username, repl->password, "REPLICATION LOGIN", ret_error);
    if (r == 0 && major >= 11 && rw->username && !streq(rw->username, su->username)) {
        r = create_or_update_role(c, rw->username, rw->password, "LOGIN", ret_error);
        if (r == 0) {
            _cleanup_free_ char *id = quote_ident(c, rw->username);
            _cleanup_free_ char *sql = xasprintf(
                "GRANT EXECUTE ON function pg_catalog.pg_ls_dir(text, boolean, boolean) TO %s; "
                "GRANT EXECUTE ON function pg_catalog.pg_stat_file(text, boolean) TO %s; "
                "GRANT EXECUTE ON function pg_catalog.pg_read_binary_file(text) TO %s; "
                "GRANT EXECUTE ON function pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) TO %s",
                id, id, id, id);
            r = exec_sql(c, sql, ret_error);
        }
    }
    return r;
}

static char *conninfo(const PgAuth *a, const char *host, int port, const char *dbname, const char *passfile) {
    StrBuf b;
    sb_init(&b);
    sb_addf(&b, "host=%s port=%d dbname=%s", host, port, dbname ? dbname : "postgres");
    if (a->username)
        sb_addf(&b, " user=%s", a->username);
    if (passfile)
        sb_addf(&b, " passfile=%s", passfile);
    if (a->sslmode)
        sb_addf(&b, " sslmode=%s", a->sslmode);
    if (a->sslcert)
        sb_addf(&b, " sslcert=%s", a->sslcert);
    if (a->sslkey)
        sb_addf(&b, " sslkey=%s", a->sslkey);
    if (a->sslrootcert)
        sb_addf(&b, " sslrootcert=%s", a->sslrootcert);
    return sb_steal(&b);
}

static int clear_dir_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    if (ftw->level == 0)
        return 0;
    return remove(path) < 0 ? -1 : 0;
}

int pg_remove_data_directory(const char *data_dir, char **ret_error) {
    if (nftw(data_dir, clear_dir_cb, 32, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT) {
        *ret_error = xasprintf("cannot remove the contents of %s: %s", data_dir, strerror(errno));
        return -errno;
    }
    return 0;
}

int pg_move_data_directory_aside(const char *data_dir, char **ret_error) {
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    char suffix[32];
    strftime(suffix, sizeof suffix, "%Y-%m-%d-%H-%M-%S", &tm);
    _cleanup_free_ char *to = xasprintf("%s_%s", data_dir, suffix);
    if (rename(data_dir, to) < 0) {
        *ret_error = xasprintf("cannot rename %s to %s: %s", data_dir, to, strerror(errno));
        return -errno;
    }
    return 0;
}

int pg_basebackup(const PghaConfig *cfg, const char *bin_dir, const char *host, int port, char **ret_error) {
    const char *dir = cfg->postgresql.data_dir;
    _cleanup_free_ char *bin = pg_bin(bin_dir, cfg->postgresql.bin_name.pg_basebackup);
    _cleanup_free_ char *dsn = conninfo(&cfg->postgresql.replication, host, port, cfg->postgresql.database,
                                        cfg->postgresql.pgpass);
    int r = -EIO;
    for (int attempt = 0; attempt < 2 && !pg_child_cancelled(); attempt++) {
        for (int i = 0; attempt > 0 && i < 50 && !pg_child_cancelled(); i++)
            usleep(100 * 1000);
        if (pg_child_cancelled())
            break;
        (void)pg_remove_data_directory(dir, ret_error);
        free(*ret_error);
        *ret_error = NULL;
        if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
            *ret_error = xasprintf("cannot create %s: %s", dir, strerror(errno));
            return -errno;
        }
        (void)chmod(dir, 0700);
        StrList argv = {0};
        strlist_add(&argv, bin);
        _cleanup_free_ char *d = xasprintf("--pgdata=%s", dir);
        strlist_add(&argv, d);
        strlist_add(&argv, "-X");
        strlist_add(&argv, "stream");
        _cleanup_free_ char *db = xasprintf("--dbname=%s", dsn);
        strlist_add(&argv, db);
        pg_render_options(cfg->postgresql.basebackup, &argv);
        char *out = NULL;
        r = run_command(&argv, NULL, 24 * 3600 * USEC_PER_SEC, &out);
        strlist_clear(&argv);
        if (r == 0) {
            free(out);
            return 0;
        }
        free(*ret_error);
        *ret_error = xasprintf("pg_basebackup from %s:%d failed (exit %d): %s", host, port, r, output_tail(out));
        free(out);
    }
    if (pg_child_cancelled() && !*ret_error)
        *ret_error = xasprintf("pg_basebackup from %s:%d cancelled", host, port);
    char *ignored = NULL;
    (void)pg_remove_data_directory(dir, &ignored);
    free(ignored);
    return r < 0 ? r : -EIO;
}

int pg_crash_recovery(const PghaConfig *cfg, const char *bin_dir, char **ret_error) {
    _cleanup_free_ char *bin = pg_bin(bin_dir, cfg->postgresql.bin_name.postgres);
    StrList argv = {0};
    strlist_add(&argv, bin);
    strlist_add(&argv, "--single");
    strlist_add(&argv, "-D");
    strlist_add(&argv, cfg->postgresql.data_dir);
    _cleanup_free_ char *cf = xasprintf("--config-file=%s/postgresql.conf", cfg->postgresql.config_dir);
    strlist_add(&argv, cf);
    strlist_add(&argv, "-c");
    strlist_add(&argv, "archive_mode=on");
    strlist_add(&argv, "-c");
    strlist_add(&argv, "archive_command=false");
    strlist_add(&argv, "-c");
    strlist_add(&argv, "max_connections=100");
    strlist_add(&argv, cfg->postgresql.database ? cfg->postgresql.database : "postgres");
    return run_tool(&argv, 3600 * USEC_PER_SEC, ret_error, "crash recovery in single-user mode");
}

int pg_rewind(const PghaConfig *cfg, const char *bin_dir, const char *host, int port, char **ret_error) {
    _cleanup_free_ char *bin = pg_bin(bin_dir, cfg->postgresql.bin_name.pg_rewind);
    _cleanup_free_ char *dsn = conninfo(&cfg->postgresql.rewind, host, port, cfg->postgresql.database,
                                        cfg->postgresql.pgpass);
    StrList argv = {0};
    strlist_add(&argv, bin);
    _cleanup_free_ char *t = xasprintf("--target-pgdata=%s", cfg->postgresql.data_dir);
    strlist_add(&argv, t);
    _cleanup_free_ char *s = xasprintf("--source-server=%s", dsn);
    strlist_add(&argv, s);
    _cleanup_free_ char *what = xasprintf("pg_rewind from %s:%d", host, port);
    return run_tool(&argv, 3600 * USEC_PER_SEC, ret_error, what);
}

bool pg_rewind_usable(const PghaConfig *cfg, const char *bin_dir) {
    _cleanup_free_ char *bin = pg_bin(bin_dir, cfg->postgresql.bin_name.pg_rewind);
    StrList argv = {0};
    strlist_add(&argv, bin);
    strlist_add(&argv, "--help");
    int r = run_command(&argv, NULL, 10 * USEC_PER_SEC, NULL);
    strlist_clear(&argv);
    return r == 0;
}

long long pg_waldump_record_end(const char *output, long long lsn) {
    char lsn8[32], lsn_str[32];
    snprintf(lsn8, sizeof lsn8, "%X/%08X", (unsigned)((unsigned long long)lsn >> 32), (unsigned)(lsn & 0xFFFFFFFF));
    pg_format_lsn(lsn, lsn_str, sizeof lsn_str);
    _cleanup_free_ char *rec = xasprintf(", lsn: %s, prev ", lsn8);
    _cleanup_free_ char *pattern = xasprintf("error in WAL record at %s: invalid record length at ", lsn_str);
    if (!output || !strstr(output, rec))
        return 0;
    const char *p = strstr(output, pattern);
    if (!p)
        return 0;
    p += strlen(pattern);
    /* "...invalid record length at 0/182E298: wanted 24, got 0" (before 16) or ": expected at least 24" */
    const char *colon = strchr(p, ':');
    if (!colon || (strncmp(colon, ": wanted ", 9) != 0 && strncmp(colon, ": expected at least ", 20) != 0))
        return 0;
    char buf[32];
    size_t len = (size_t)(colon - p);
    if (len == 0 || len >= sizeof buf)
        return 0;
    memcpy(buf, p, len);
    buf[len] = '\0';
    long long end = 0;
    return pg_parse_lsn(buf, &end) == 0 ? end : 0;
}

long long pg_checkpoint_end(const PghaConfig *cfg, const char *bin_dir, long long tl, long long lsn) {
    _cleanup_free_ char *bin = pg_bin(bin_dir, "pg_waldump");
    char lsn_str[32];
    pg_format_lsn(lsn, lsn_str, sizeof lsn_str);
    _cleanup_free_ char *t = xasprintf("%lld", tl);
    _cleanup_free_ char *wal = xasprintf("%s/pg_wal", cfg->postgresql.data_dir);
    StrList argv = {0}, env = {0};
    strlist_add(&argv, bin);
    strlist_add(&argv, "-t");
    strlist_add(&argv, t);
    strlist_add(&argv, "-s");
    strlist_add(&argv, lsn_str);
    strlist_add(&argv, "-n");
    strlist_add(&argv, "2");
    strlist_add(&argv, "-p");
    strlist_add(&argv, wal);
    strlist_add(&env, "LANG=C");
    strlist_add(&env, "LC_ALL=C");
    char *out = NULL;
    (void)run_command(&argv, &env, 30 * USEC_PER_SEC, &out);
    long long end = pg_waldump_record_end(out, lsn);
    free(out);
    strlist_clear(&argv);
    strlist_clear(&env);
    return end;
}

int pg_run_method(StrList *argv, const StrList *env, char **ret_error) {
    _cleanup_free_ char *cmd = xstrdup(argv->n ? argv->v[0] : "");
    char *out = NULL;
    int r = run_command(argv, env, 24 * 3600 * USEC_PER_SEC, &out);
    strlist_clear(argv);
    if (r != 0) {
        _cleanup_free_ char *why = r < 0 ? xstrdup(strerror(-r)) : xasprintf("exited with code=%d", r);
        *ret_error = xasprintf("%s %s%s%s", cmd, why, out && *out ? ": " : "", out ? output_tail(out) : "");
    }
    free(out);
    return r;
}

char *pg_replication_dsn(const PghaConfig *cfg, const char *host, int port) {
    return conninfo(&cfg->postgresql.replication, host, port, cfg->postgresql.database, NULL);
}

static int remove_file(const char *dir, const char *name, char **ret_error) {
    _cleanup_free_ char *p = xasprintf("%s/%s", dir, name);
    if (unlink(p) < 0 && errno != ENOENT) {
        *ret_error = xasprintf("cannot remove %s: %s", p, strerror(errno));
        return -errno;
    }
    return 0;
}

static int create_file(const char *dir, const char *name, char **ret_error) {
    _cleanup_free_ char *p = xasprintf("%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        *ret_error = xasprintf("cannot create %s: %s", p, strerror(errno));
        return -errno;
    }
    close(fd);
    return 0;
}

int pg_remove_recovery_conf(const char *data_dir, char **ret_error) {
    int r = remove_file(data_dir, "recovery.conf", ret_error);
    if (r == 0)
        r = remove_file(data_dir, "standby.signal", ret_error);
    if (r == 0)
        r = remove_file(data_dir, "recovery.signal", ret_error);
    return r;
}

int pg_custom_bootstrap(const PghaConfig *cfg, char **ret_error) {
    const YNode *section = cfg->bootstrap.method_section;
    const char *dir = cfg->postgresql.data_dir;
    StrList argv = {0};
    int r = pg_bootstrap_method_argv(section, cfg->scope, dir, &argv, ret_error);
    if (r < 0) {
        strlist_clear(&argv);
        return r;
    }
    r = pg_run_method(&argv, NULL, ret_error);
    if (r != 0)
        return r < 0 ? r : -EIO;
    /* Patroni's _post_restore: no trigger file may be left, or PostgreSQL would promote at once */
    const YNode *rc = ynode_get(section, "recovery_conf");
    const YNode *trigger = ynode_get(rc, "promote_trigger_file");
    _cleanup_free_ char *tname = trigger && ynode_is_scalar(trigger) && ynode_truthy(trigger)
                                     ? ynode_scalar_string(trigger)
                                     : xstrdup("promote");
    _cleanup_free_ char *tpath = tname[0] == '/' ? xstrdup(tname) : xasprintf("%s/%s", dir, tname);
    if (unlink(tpath) < 0 && errno != ENOENT) {
        *ret_error = xasprintf("cannot remove %s: %s", tpath, strerror(errno));
        return -errno;
    }
    /* recovery_conf: recovery with it (standby_mode: a standby.signal, else a recovery.signal; the
     * parameters go into postgresql.conf with the start); without it, the recovery files the restore
     * left are removed unless keep_existing_recovery_conf */
    if (rc) {
        bool standby = ynode_truthy(ynode_get(rc, "standby_mode"));
        r = remove_file(dir, "recovery.conf", ret_error);
        if (r == 0)
            r = standby ? create_file(dir, "standby.signal", ret_error) : remove_file(dir, "standby.signal", ret_error);
        if (r == 0 && !standby)
            r = create_file(dir, "recovery.signal", ret_error);
        return r;
    }
    if (!ynode_truthy(ynode_get(section, "keep_existing_recovery_conf")))
        return pg_remove_recovery_conf(dir, ret_error);
    return 0;
}

/* pg_hba.conf during a custom bootstrap (Patroni's replace_pg_hba while running_custom_bootstrap): the
 * restored cluster's passwords are not known, so the agent's own connections are trusted: local ones and
 * those from the local address. The file that was there is kept aside and comes back afterwards. */
int pg_custom_bootstrap_hba(const char *config_dir, const char *local_host, bool on, char **ret_error) {
    _cleanup_free_ char *path = xasprintf("%s/pg_hba.conf", config_dir);
    _cleanup_free_ char *saved = xasprintf("%s/pg_hba.conf.pgha-bootstrap", config_dir);
    struct stat st;
    if (!on) {
        if (stat(saved, &st) < 0)
            return 0; /* nothing was kept aside: the file stays */
        if (rename(saved, path) < 0) {
            *ret_error = xasprintf("cannot rename %s to %s: %s", saved, path, strerror(errno));
            return -errno;
        }
        return 0;
    }
    if (stat(saved, &st) < 0 && stat(path, &st) == 0 && rename(path, saved) < 0) {
        *ret_error = xasprintf("cannot rename %s to %s: %s", path, saved, strerror(errno));
        return -errno;
    }
    YNode *lines = ynode_new(Y_SEQ, "pg_hba", 0);
    ynode_append(lines, ynode_new_str("local all all trust", "pg_hba", 0));
    if (local_host && local_host[0] && local_host[0] != '/') {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP}, *res = NULL;
        if (getaddrinfo(local_host, NULL, &hints, &res) == 0) {
            for (struct addrinfo *a = res; a; a = a->ai_next) {
                char ip[INET6_ADDRSTRLEN];
                if (getnameinfo(a->ai_addr, a->ai_addrlen, ip, sizeof ip, NULL, 0, NI_NUMERICHOST) == 0) {
                    _cleanup_free_ char *l = xasprintf("host all all %s/%d trust", ip,
                                                       a->ai_family == AF_INET6 ? 128 : 32);
                    ynode_append(lines, ynode_new_str(l, "pg_hba", 0));
                }
            }
            freeaddrinfo(res);
        }
    }
    int r = pg_write_hba(path, lines, false, ret_error);
    ynode_free(lines);
    return r;
}
