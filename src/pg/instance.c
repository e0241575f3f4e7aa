/* The local PostgreSQL instance: postmaster, connection, control operations (see instance.h). */
#include "pg/instance.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int pg_instance_init(PgInstance *pg, const PghaConfig *cfg, char **ret_error) {
    *pg = (PgInstance){.cfg = cfg, .pidfd = -1, .bin_dir = xstrdup(cfg->postgresql.bin_dir)};
    _cleanup_free_ char *postgres = pg_bin(pg->bin_dir, cfg->postgresql.bin_name.postgres);
    int v = pg_bin_version(postgres);
    if (v < 0) {
        *ret_error = xasprintf("cannot run %s --version: %s; check postgresql.bin_dir", postgres, strerror(-v));
        return -EINVAL;
    }
    pg->major = v >= 100000 ? v / 10000 : v / 100;
    int dmaj = pg_data_dir_major(cfg->postgresql.data_dir);
    if (dmaj > 0 && dmaj != pg->major) {
        *ret_error = xasprintf("the data directory %s is PostgreSQL %d but %s is %d", cfg->postgresql.data_dir, dmaj,
                               postgres, pg->major);
        return -EINVAL;
    }
    return 0;
}

void pg_instance_done(PgInstance *pg) {
    pg_instance_close_conn(pg);
    if (pg->pidfd >= 0)
        close(pg->pidfd);
    pg->pidfd = -1;
    free(pg->bin_dir);
    pg->bin_dir = NULL;
}

void pg_local_conn_params(const PghaConfig *cfg, PgConnParams *p, char *hostbuf, size_t hostlen) {
    StrList addrs = {0};
    int port = 5432;
    (void)parse_listen(cfg->postgresql.listen, &addrs, &port);
    const char *host = addrs.n ? addrs.v[0] : "127.0.0.1";
    if (strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0)
        host = "::1";
    snprintf(hostbuf, hostlen, "%s", host);
    if (cfg->postgresql.use_unix_socket) {
        const YNode *sd = cfg->postgresql.parameters ? ynode_get(cfg->postgresql.parameters, "unix_socket_directories")
                                                     : NULL;
        if (sd && sd->type == Y_STR) {
            _cleanup_free_ char *first = xstrdup(sd->text);
            char *comma = strchr(first, ',');
            if (comma)
                *comma = '\0';
            str_trim(first);
            if (*first)
                snprintf(hostbuf, hostlen, "%s", first);
        } else {
            snprintf(hostbuf, hostlen, "/var/run/postgresql");
        }
    }
    strlist_clear(&addrs);
    *p = (PgConnParams){.host = hostbuf,
                        .port = port,
                        .user = cfg->postgresql.superuser.username,
                        .password = cfg->postgresql.superuser.password,
                        .dbname = cfg->postgresql.database,
                        .application_name = "Patroni",
                        .connect_timeout = 3,
                        .ssl = &cfg->postgresql.superuser,
                        /* a local connection needs no Kerberos: skipping it saves its start-up cost */
                        .gssencmode_default = "disable"};
}

PGconn *pg_instance_connect_db(const PgInstance *pg, const char *dbname, const char *application_name,
                               char **ret_error) {
    PgConnParams p;
    char host[256];
    pg_local_conn_params(pg->cfg, &p, host, sizeof host);
    if (dbname)
        p.dbname = dbname;
    if (application_name)
        p.application_name = application_name;
    return pg_connect(&p, ret_error);
}

void pg_instance_close_conn(PgInstance *pg) {
    if (pg->conn)
        PQfinish(pg->conn);
    pg->conn = NULL;
}

PGconn *pg_instance_conn(PgInstance *pg, char **ret_error) {
    if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK)
        return pg->conn;
    pg_instance_close_conn(pg);
    pg->conn = pg_instance_connect_db(pg, NULL, NULL, ret_error);
    return pg->conn;
}

/* Only the postmaster is reaped: a waitpid(-1) could steal the child of a worker thread's run_command
 * (pg_basebackup, pg_rewind) and make its outcome unknown. Callbacks are double-forked. */
static void reap(PgInstance *pg) {
    if (pg->pid > 0)
        (void)waitpid(pg->pid, NULL, WNOHANG);
}

int pg_instance_attach(PgInstance *pg, pid_t pid) {
    pg->pid = pid;
    pg->pidfd = pg_pidfd(pid);
    return pg->pidfd < 0 ? pg->pidfd : 0;
}

void pg_instance_forget(PgInstance *pg) {
    reap(pg);
    if (pg->pidfd >= 0)
        close(pg->pidfd);
    pg->pidfd = -1;
    pg->pid = 0;
    pg_instance_close_conn(pg);
}

bool pg_instance_alive(PgInstance *pg) {
    if (pg->pid <= 0)
        return false;
    reap(pg);
    return pg_process_alive(pg->pid);
}

bool pg_instance_find_running(const PgInstance *pg, PidFile *ret) {
    const char *dd = pg->cfg->postgresql.data_dir;
    return pg_read_pid_file(dd, ret) == 0 && pg_process_alive(ret->pid) &&
           pg_is_postmaster_of(ret->pid, dd, ret->start_time);
}

int pg_instance_start(PgInstance *pg, const StrList *args, char **ret_error) {
    const PghaConfig *cfg = pg->cfg;
    _cleanup_free_ char *postgres = pg_bin(pg->bin_dir, cfg->postgresql.bin_name.postgres);
    _cleanup_free_ char *conf = xasprintf("%s/postgresql.conf", cfg->postgresql.config_dir);
    /* a stale postmaster.pid of a dead postmaster blocks the start: PostgreSQL checks it itself */
    pid_t pid = 0;
    int r = pg_spawn_postmaster(postgres, cfg->postgresql.data_dir, conf, args, &pid, ret_error);
    if (r < 0)
        return r;
    (void)pg_instance_attach(pg, pid); /* without a pidfd its exit is noticed at the next cycle */
    return 0;
}

int pg_instance_stop(PgInstance *pg, PgStopMode mode, usec_t limit) {
    if (pg->pid <= 0)
        return 0;
    pg_instance_close_conn(pg);
    int r = pg_signal_stop(pg->pid, mode, limit);
    if (r == -ETIMEDOUT)
        return r;
    pg_instance_forget(pg);
    return 0;
}

int pg_instance_signal_stop(PgInstance *pg, PgStopMode mode) {
    if (pg->pid <= 0)
        return -ESRCH;
    pg_instance_close_conn(pg);
    int sig = mode == PG_STOP_SMART ? SIGTERM : mode == PG_STOP_FAST ? SIGINT : SIGQUIT;
    return kill(pg->pid, sig) < 0 ? -errno : 0;
}

int pg_instance_identify_system(const PgInstance *pg, long long *ret_tli, long long *ret_lsn, char **ret_error) {
    PgConnParams p;
    char host[256];
    pg_local_conn_params(pg->cfg, &p, host, sizeof host);
    p.user = pg->cfg->postgresql.replication.username;
    p.password = pg->cfg->postgresql.replication.password;
    p.ssl = &pg->cfg->postgresql.replication;
    p.application_name = "pgha identify";
    p.replication = true;
    PGconn *c = pg_connect(&p, ret_error);
    if (!c)
        return -ENOTCONN;
    int rc = -EPROTO;
    PGresult *r = PQexec(c, "IDENTIFY_SYSTEM");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) >= 3 &&
        pg_parse_lsn(PQgetvalue(r, 0, 2), ret_lsn) == 0) {
        *ret_tli = pg_value_ll(r, 0, 1);
        rc = *ret_tli > 0 ? 0 : -EPROTO;
    }
    if (rc < 0)
        *ret_error = xasprintf("IDENTIFY_SYSTEM failed: %s",
                               str_trim(PQerrorMessage(c))[0] ? PQerrorMessage(c) : "unexpected result");
    PQclear(r);
    PQfinish(c);
    return rc;
}

static PGconn *remote_connect(const PghaConfig *cfg, const char *host, int port, int connect_timeout_s,
                              bool replication, char **ret_error) {
    const PgAuth *a = replication ? &cfg->postgresql.replication : &cfg->postgresql.rewind;
    PgConnParams p = {.host = host,
                      .port = port,
                      .user = a->username,
                      .password = a->password,
                      .dbname = replication ? NULL : cfg->postgresql.database,
                      .application_name = "pgha rewind check",
                      .connect_timeout = connect_timeout_s,
                      .ssl = a,
                      .replication = replication};
    char *err = NULL;
    PGconn *c = pg_connect(&p, &err);
    if (!c) {
        *ret_error = xasprintf("cannot open a%s connection to %s:%d: %s", replication ? " replication" : "", host, port,
                               err);
        free(err);
    }
    return c;
}

static char *result_error(PGconn *c, const PGresult *r, const char *what, const char *host, int port) {
    const char *m = r ? PQresultErrorMessage(r) : NULL;
    if (!m || !*m)
        m = PQerrorMessage(c);
    _cleanup_free_ char *msg = xstrdup(m && *m ? m : "unexpected result");
    return xasprintf("%s on %s:%d failed: %s", what, host, port, str_trim(msg));
}

void pg_remote_timeline_free(PgRemoteTimeline *r) {
    pg_timeline_history_free(r->history, r->n_history);
    *r = (PgRemoteTimeline){0};
}

int pg_remote_timeline(const PghaConfig *cfg, const char *host, int port, int connect_timeout_s, PgRemoteTimeline *ret,
                       char **ret_error) {
    *ret = (PgRemoteTimeline){0};
    PGconn *c = remote_connect(cfg, host, port, connect_timeout_s, false, ret_error);
    if (!c)
        return -ENOTCONN;
    char *err = NULL;
    PGresult *r = pg_query(c, "SELECT pg_catalog.pg_is_in_recovery()", 5000, &err);
    if (!r) {
        *ret_error = xasprintf("pg_is_in_recovery() on %s:%d failed: %s", host, port, err);
        free(err);
        PQfinish(c);
        return -EPROTO;
    }
    ret->in_recovery = PQntuples(r) == 1 && streq(PQgetvalue(r, 0, 0), "t");
    PQclear(r);
    PQfinish(c);
    if (ret->in_recovery)
        return 0;
    if (!(c = remote_connect(cfg, host, port, connect_timeout_s, true, ret_error)))
        return -ENOTCONN;
    r = pg_exec_deadline(c, "IDENTIFY_SYSTEM", 5000, &err);
    if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) >= 2) {
        snprintf(ret->sysid, sizeof ret->sysid, "%s", PQgetvalue(r, 0, 0));
        ret->tli = pg_value_ll(r, 0, 1);
    }
    if (ret->tli <= 0) {
        *ret_error = err ? xasprintf("IDENTIFY_SYSTEM on %s:%d failed: %s", host, port, err)
                         : result_error(c, r, "IDENTIFY_SYSTEM", host, port);
        free(err);
        PQclear(r);
        PQfinish(c);
        return -EPROTO;
    }
    PQclear(r);
    int rc = 0;
    if (ret->tli > 1) {
        char cmd[64];
        snprintf(cmd, sizeof cmd, "TIMELINE_HISTORY %lld", ret->tli);
        r = pg_exec_deadline(c, cmd, 5000, &err);
        /* the file's bytes as they are (the walsender sends them raw, whatever the column's type) */
        if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) >= 2 &&
            !PQgetisnull(r, 0, 1)) {
            pg_parse_timeline_history(PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1), &ret->history,
                                      &ret->n_history);
        } else {
            *ret_error = err ? xasprintf("%s on %s:%d failed: %s", cmd, host, port, err)
                             : result_error(c, r, cmd, host, port);
            rc = -EPROTO;
        }
        free(err);
        PQclear(r);
    }
    PQfinish(c);
    if (rc < 0)
        pg_remote_timeline_free(ret);
    return rc;
}

static long long remote_checkpoint_tli(PGconn *c, char **ret_error) {
    PGresult *r = pg_query(c, "SELECT timeline_id FROM pg_catalog.pg_control_checkpoint()", 5000, ret_error);
    if (!r)
        return -1;
    long long tli = PQntuples(r) == 1 ? pg_value_ll(r, 0, 0) : 0;
    PQclear(r);
    return tli;
}

int pg_remote_checkpoint(const PghaConfig *cfg, const char *host, int port, long long tli, char **ret_error) {
    PGconn *c = remote_connect(cfg, host, port, 10, false, ret_error);
    if (!c)
        return -EAGAIN;
    char *err = NULL;
    long long have = remote_checkpoint_tli(c, &err);
    if (have >= 0 && have < tli) {
        PGresult *r = pg_query(c, "CHECKPOINT", 60 * 1000, &err); /* (longer: the next cycle asks again) */
        if (r) {
            PQclear(r);
            have = remote_checkpoint_tli(c, &err);
        }
    }
    PQfinish(c);
    if (have < 0 || err) {
        *ret_error = xasprintf("cannot make sure that %s:%d has run its checkpoint after the promotion: %s", host, port,
                               err ? err : "no answer");
        free(err);
        return -EAGAIN;
    }
    if (have < tli) {
        *ret_error = xasprintf("%s:%d has not run its checkpoint after the promotion yet (pg_control: timeline %lld, "
                               "not %lld)",
                               host, port, have, tli);
        return -EAGAIN;
    }
    return 0;
}

int pg_instance_kill(PgInstance *pg) {
    if (pg->pid <= 0)
        return 0;
    (void)kill(pg->pid, SIGKILL);
    int r = pg_signal_stop(pg->pid, PG_STOP_IMMEDIATE, 5 * USEC_PER_SEC);
    if (r == -ETIMEDOUT)
        return r;
    pg_instance_forget(pg);
    return 0;
}

int pg_instance_reload(PgInstance *pg) {
    if (pg->pid <= 0)
        return -ESRCH;
    return kill(pg->pid, SIGHUP) < 0 ? -errno : 0;
}

int pg_instance_promote(PgInstance *pg, char **ret_error) {
    PGconn *c = pg_instance_conn(pg, ret_error);
    if (!c)
        return -ENOTCONN;
    PGresult *r = pg_query(c, "SELECT pg_catalog.pg_promote(false)", 5000, ret_error);
    if (!r)
        return -EIO;
    bool ok = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!ok) {
        *ret_error = xstrdup("pg_promote() returned false");
        return -EIO;
    }
    return 0;
}

/* The parent pid of a process (from /proc/PID/stat), or -1. */
static pid_t parent_of(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* after "(comm)": state, then ppid */
    int ppid;
    return p && sscanf(p + 1, " %*c %d", &ppid) == 1 ? (pid_t)ppid : -1;
}

int pg_instance_wake_startup(PgInstance *pg, char **ret_error) {
    PGconn *c = pg_instance_conn(pg, ret_error);
    if (!c)
        return -ENOTCONN;
    /* only a startup process asleep in that wait: it is woken by nothing else */
    PGresult *r = pg_query(c,
                           "SELECT pid FROM pg_catalog.pg_stat_activity WHERE backend_type = 'startup'"
                           " AND wait_event = 'RecoveryRetrieveRetryInterval'",
                           2000, ret_error);
    if (!r)
        return -EIO;
    long pid = PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) ? strtol(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    PQclear(r);
    if (pid <= 0)
        return -EAGAIN; /* not asleep there (or recovery ended) */
    /* signal through a pidfd, and only our postmaster's child: the pid cannot be another process's by then */
    int fd = pg_pidfd((pid_t)pid);
    if (fd < 0)
        return fd == -ESRCH ? -EAGAIN : fd;
    int ret = 0;
    if (pg->pid <= 0 || parent_of((pid_t)pid) != pg->pid)
        ret = -EAGAIN;
    else if (syscall(SYS_pidfd_send_signal, fd, SIGUSR2, NULL, 0) < 0)
        ret = errno == ESRCH ? -EAGAIN : -errno;
    close(fd);
    if (ret < 0 && ret != -EAGAIN)
        *ret_error = xasprintf("cannot signal the startup process %ld: %s", pid, strerror(-ret));
    return ret;
}

int pg_instance_promote_pg_ctl(PgInstance *pg, char **ret_error) {
    const PghaConfig *cfg = pg->cfg;
    StrList argv = {0};
    _cleanup_free_ char *pg_ctl = pg_bin(pg->bin_dir, cfg->postgresql.bin_name.pg_ctl);
    strlist_add(&argv, pg_ctl);
    strlist_add(&argv, "promote");
    strlist_add(&argv, "-W");
    strlist_add(&argv, "-D");
    strlist_add(&argv, cfg->postgresql.data_dir);
    char *out = NULL;
    int r = run_command(&argv, NULL, (usec_t)cfg->postgresql.pg_ctl_timeout * USEC_PER_SEC, &out);
    strlist_clear(&argv);
    if (r != 0) {
        *ret_error = xasprintf("pg_ctl promote failed (%d): %s", r, out ? str_trim(out) : "");
        free(out);
        return -EIO;
    }
    free(out);
    return 0;
}

int pg_instance_controldata(const PgInstance *pg, ControlData *ret, char **ret_error) {
    _cleanup_free_ char *bin = pg_bin(pg->bin_dir, pg->cfg->postgresql.bin_name.pg_controldata);
    return pg_controldata(bin, pg->cfg->postgresql.data_dir, ret, ret_error);
}

/* ---- statements ---- */

static int query_ll(PGconn *c, const char *sql, int timeout_ms, long long *ret, char **ret_error) {
    PGresult *r = pg_query(c, sql, timeout_ms, ret_error);
    if (!r)
        return -EIO;
    int rc = 0;
    if (PQntuples(r) != 1 || PQgetisnull(r, 0, 0) || parse_ll(PQgetvalue(r, 0, 0), ret) < 0) {
        *ret_error = xasprintf("unexpected result of %s", sql);
        rc = -EPROTO;
    }
    PQclear(r);
    return rc;
}

int pg_current_flush_lsn(PGconn *c, long long *ret, char **ret_error) {
    return query_ll(c, "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_flush_lsn(), '0/0')::bigint", 2000,
                    ret, ret_error);
}

int pg_emit_wake_message(PGconn *c, char **ret_error) {
    PGresult *r = pg_query(c,
                           "SELECT pg_catalog.pg_logical_emit_message(false, 'pgha', "
                           "'synchronous_standby_names changed')",
                           2000, ret_error);
    PQclear(r);
    return r ? 0 : -EIO;
}

int pg_checkpoint(PGconn *c, int timeout_ms, char **ret_error) {
    PGresult *r = pg_query(c, "CHECKPOINT", timeout_ms, ret_error);
    PQclear(r);
    return r ? 0 : -EIO;
}

int pg_pending_restart(PGconn *c, StrList *ret_names, StrList *ret_settings, char **ret_error) {
    /* as Patroni: the recovery parameters and hot_standby are not counted (a promoted primary's
     * postgresql.conf drops recovery_target_timeline, which stays pending until the next restart) */
    PGresult *r = pg_query(c,
                           "SELECT name, setting FROM pg_catalog.pg_settings WHERE pending_restart AND "
                           "pg_catalog.lower(name) <> ALL ('{archive_cleanup_command,pause_at_recovery_target,"
                           "primary_conninfo,primary_slot_name,promote_trigger_file,recovery_end_command,"
                           "recovery_min_apply_delay,recovery_target,recovery_target_action,"
                           "recovery_target_inclusive,recovery_target_lsn,recovery_target_name,"
                           "recovery_target_time,recovery_target_timeline,recovery_target_xid,restore_command,"
                           "standby_mode,trigger_file,hot_standby}'::text[])",
                           2000, ret_error);
    if (!r)
        return -EIO;
    for (int i = 0; i < PQntuples(r); i++) {
        strlist_add(ret_names, PQgetvalue(r, i, 0));
        strlist_add(ret_settings, PQgetvalue(r, i, 1));
    }
    PQclear(r);
    return 0;
}

int pg_setting_bool(PGconn *c, const char *name, bool *ret, char **ret_error) {
    const char *params[] = {name};
    PGresult *r = pg_query_params(c, "SELECT pg_catalog.current_setting($1)::boolean", 1, params, 2000, ret_error);
    if (!r)
        return -EIO;
    int rc = 0;
    if (PQntuples(r) == 1)
        *ret = PQgetvalue(r, 0, 0)[0] == 't';
    else {
        *ret_error = xasprintf("unexpected result of current_setting('%s')", name);
        rc = -EPROTO;
    }
    PQclear(r);
    return rc;
}
