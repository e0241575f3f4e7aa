/* libpq: connections with timeouts, queries with a statement timeout, the status query. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "pg/pg.h"

/* Make a connection whose statement timed out unusable, so that the caller drops it (PQstatus is
 * then CONNECTION_BAD): shutdown() the socket instead of waiting for the server. */
static void PQreset_socket_close(PGconn *c) {
    int fd = PQsocket(c);
    if (fd >= 0)
        (void)shutdown(fd, SHUT_RDWR);
    (void)PQconsumeInput(c);
}

static void add_kv(const char **keys, const char **vals, int *n, const char *k, const char *v) {
    if (v && *n < 30) {
        keys[*n] = k;
        vals[*n] = v;
        (*n)++;
    }
}

PGconn *pg_connect(const PgConnParams *p, char **ret_error) {
    const char *keys[32];
    const char *vals[32];
    int n = 0;
    char port[16], timeout[16];
    snprintf(port, sizeof port, "%d", p->port);
    snprintf(timeout, sizeof timeout, "%d", p->connect_timeout > 0 ? p->connect_timeout : 3);
#define KV(k, v) add_kv(keys, vals, &n, (k), (v))
    KV("host", p->host);
    KV("port", port);
    KV("user", p->user);
    KV("password", p->password);
    if (p->replication) {
        KV("replication", "true");
    } else {
        KV("dbname", p->dbname ? p->dbname : "postgres");
        KV("options", "-c statement_timeout=0 -c search_path=pg_catalog");
    }
    KV("application_name", p->application_name ? p->application_name : "Patroni");
    KV("connect_timeout", timeout);
    if (p->ssl) {
        KV("sslmode", p->ssl->sslmode);
        KV("sslcert", p->ssl->sslcert);
        KV("sslkey", p->ssl->sslkey);
        KV("sslpassword", p->ssl->sslpassword);
        KV("sslrootcert", p->ssl->sslrootcert);
        KV("sslcrl", p->ssl->sslcrl);
        KV("gssencmode", p->ssl->gssencmode ? p->ssl->gssencmode : p->gssencmode_default);
        KV("channel_binding", p->ssl->channel_binding);
    }
    if (!p->ssl && p->gssencmode_default)
        KV("gssencmode", p->gssencmode_default);
#undef KV
    keys[n] = NULL;
    vals[n] = NULL;
    PGconn *c = PQconnectdbParams(keys, vals, 0);
    if (!c) {
        *ret_error = xstrdup("out of memory in libpq");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        *ret_error = str_trim(xstrdup(PQerrorMessage(c)));
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* One statement with a client-side deadline too: a hung server (all its processes stopped, a dead
 * disk) must not block the HA loop. On timeout the connection is left unusable (the caller resets it). */
static PGresult *exec_with_deadline(PGconn *c, const char *sql, int n_params, const char *const *params, int timeout_ms,
                                    char **ret_error) {
    int sent = n_params > 0 ? PQsendQueryParams(c, sql, n_params, NULL, params, NULL, NULL, 0) : PQsendQuery(c, sql);
    if (!sent) {
        *ret_error = str_trim(xstrdup(PQerrorMessage(c)));
        return NULL;
    }
    usec_t deadline = now_monotonic() + (usec_t)(timeout_ms > 0 ? timeout_ms + 1000 : 3600 * 1000) * USEC_PER_MSEC;
    PGresult *last = NULL;
    for (;;) {
        while (!PQisBusy(c)) {
            PGresult *r = PQgetResult(c);
            if (!r)
                return last;
            PQclear(last);
            last = r;
        }
        usec_t now = now_monotonic();
        if (now >= deadline) {
            PQclear(last);
            *ret_error = xasprintf("PostgreSQL did not answer within %d ms", timeout_ms + 1000);
            PQreset_socket_close(c);
            return NULL;
        }
        struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
        int pr = poll(&p, 1, (int)((deadline - now) / USEC_PER_MSEC) + 1);
        if (pr < 0 && errno != EINTR) {
            PQclear(last);
            *ret_error = xasprintf("poll: %s", strerror(errno));
            return NULL;
        }
        if (!PQconsumeInput(c)) {
            PQclear(last);
            *ret_error = str_trim(xstrdup(PQerrorMessage(c)));
            return NULL;
        }
    }
}

PGresult *pg_exec_deadline(PGconn *c, const char *sql, int timeout_ms, char **ret_error) {
    return exec_with_deadline(c, sql, 0, NULL, timeout_ms, ret_error);
}

long long pg_value_ll(const PGresult *r, int row, int col) {
    long long v = 0;
    if (parse_ll(PQgetvalue(r, row, col), &v) < 0)
        return 0;
    return v;
}

double pg_value_double(const PGresult *r, int row, int col) {
    double v = 0;
    if (parse_double(PQgetvalue(r, row, col), &v) < 0)
        return 0;
    return v;
}

PGresult *pg_query(PGconn *c, const char *sql, int timeout_ms, char **ret_error) {
    return pg_query_params(c, sql, 0, NULL, timeout_ms, ret_error);
}

PGresult *pg_query_params(PGconn *c, const char *sql, int n_params, const char *const *params, int timeout_ms,
                          char **ret_error) {
    char set[64];
    snprintf(set, sizeof set, "SET statement_timeout = %d", timeout_ms > 0 ? timeout_ms : 0);
    PGresult *r = exec_with_deadline(c, set, 0, NULL, 5000, ret_error);
    if (!r)
        return NULL;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        *ret_error = str_trim(xstrdup(PQerrorMessage(c)));
        PQclear(r);
        return NULL;
    }
    PQclear(r);
    r = exec_with_deadline(c, sql, n_params, params, timeout_ms, ret_error);
    if (!r)
        return NULL;
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        _cleanup_free_ char *msg = str_trim(xstrdup(PQerrorMessage(c)));
        *ret_error = state ? xasprintf("%s (SQLSTATE %s)", msg, state) : xstrdup(msg);
        PQclear(r);
        return NULL;
    }
    return r;
}

/* `written` is the expression of column 17: pg_stat_wal_receiver.written_lsn exists from PostgreSQL 13 on. */
#define STATUS_SQL(written)                                                                                       \
    "SELECT pg_catalog.current_setting('server_version_num')::int,"                                               \
    " pg_catalog.to_char(pg_catalog.pg_postmaster_start_time(), 'YYYY-MM-DD HH24:MI:SS.US'),"                     \
    " pg_catalog.to_char(pg_catalog.pg_postmaster_start_time(), 'TZH:TZM'),"                                      \
    " extract(epoch from pg_catalog.pg_postmaster_start_time())::float8,"                                         \
    " pg_catalog.pg_is_in_recovery(),"                                                                            \
    " CASE WHEN pg_catalog.pg_is_in_recovery() THEN GREATEST(w.received_tli,"                                     \
    "   (SELECT timeline_id FROM pg_catalog.pg_control_checkpoint()),"                                            \
    "   (SELECT min_recovery_end_timeline FROM pg_catalog.pg_control_recovery()))"                                \
    "   ELSE ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_flush_lsn()), 1, 8))" \
    "   ::bit(32)::int END,"                                                                                      \
    " CASE WHEN pg_catalog.pg_is_in_recovery() THEN 0"                                                            \
    "   ELSE pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_flush_lsn(), '0/0')::bigint END,"               \
    " COALESCE(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_receive_lsn(), '0/0')::bigint, 0),"              \
    " COALESCE(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_replay_lsn(), '0/0')::bigint, 0),"               \
    " pg_catalog.pg_is_in_recovery() AND pg_catalog.pg_is_wal_replay_paused(),"                                   \
    " pg_catalog.to_char(pg_catalog.pg_last_xact_replay_timestamp(), 'YYYY-MM-DD HH24:MI:SS.USTZH:TZM'),"         \
    " COALESCE(w.status, ''), COALESCE(w.slot_name, ''), COALESCE(w.conninfo, ''),"                               \
    " pg_catalog.current_setting('synchronous_standby_names'),"                                                   \
    " pg_catalog.current_setting('synchronous_commit'),"                                                          \
    " (SELECT pg_catalog.json_agg(r) FROM (SELECT usename, application_name,"                                     \
    "   pg_catalog.host(client_addr) AS client_addr, state, sync_state, sync_priority,"                           \
    "   pg_catalog.pg_wal_lsn_diff(write_lsn, '0/0')::bigint AS write_lsn,"                                       \
    "   pg_catalog.pg_wal_lsn_diff(flush_lsn, '0/0')::bigint AS flush_lsn,"                                       \
    "   pg_catalog.pg_wal_lsn_diff(replay_lsn, '0/0')::bigint AS replay_lsn"                                      \
    "   FROM pg_catalog.pg_stat_replication ORDER BY application_name) r),"                                       \
    " " written ","                                                                                               \
    " COALESCE(pg_catalog.pg_wal_lsn_diff(w.latest_end_lsn, '0/0')::bigint, 0)"                                   \
    " FROM (SELECT 1) AS dummy LEFT JOIN pg_catalog.pg_stat_get_wal_receiver() AS w ON true"

static const char status_sql[] = STATUS_SQL("COALESCE(pg_catalog.pg_wal_lsn_diff(w.written_lsn, '0/0')::bigint, 0)");
static const char status_sql_pre13[] = STATUS_SQL("0");

int pg_query_status(PGconn *c, PgStatus *ret, char **ret_error) {
    *ret = (PgStatus){0};
    PGresult *r = pg_query(c, PQserverVersion(c) >= 130000 ? status_sql : status_sql_pre13, 2000, ret_error);
    if (!r) /* query_canceled: the statement_timeout; the server runs and the connection stays usable */
        return *ret_error && strstr(*ret_error, "(SQLSTATE 57014)") ? -ETIME : -EIO;
    if (PQntuples(r) != 1) {
        *ret_error = xstrdup("the status query returned no row");
        PQclear(r);
        return -EPROTO;
    }
    ret->server_version = pg_value_ll(r, 0, 0);
    snprintf(ret->postmaster_start_str, sizeof ret->postmaster_start_str, "%s%s", PQgetvalue(r, 0, 1),
             PQgetvalue(r, 0, 2));
    ret->postmaster_start_time = pg_value_double(r, 0, 3);
    ret->in_recovery = PQgetvalue(r, 0, 4)[0] == 't';
    ret->timeline = pg_value_ll(r, 0, 5);
    ret->flush_lsn = pg_value_ll(r, 0, 6);
    long long receive = pg_value_ll(r, 0, 7);
    ret->replay_lsn = pg_value_ll(r, 0, 8);
    ret->replay_paused = PQgetvalue(r, 0, 9)[0] == 't';
    ret->has_replay_timestamp = !PQgetisnull(r, 0, 10);
    if (ret->has_replay_timestamp)
        snprintf(ret->replay_timestamp, sizeof ret->replay_timestamp, "%s", PQgetvalue(r, 0, 10));
    ret->streaming = strcmp(PQgetvalue(r, 0, 11), "streaming") == 0;
    snprintf(ret->receiver_slot, sizeof ret->receiver_slot, "%s", PQgetvalue(r, 0, 12));
    snprintf(ret->receiver_conninfo, sizeof ret->receiver_conninfo, "%s", PQgetvalue(r, 0, 13));
    snprintf(ret->synchronous_standby_names, sizeof ret->synchronous_standby_names, "%s", PQgetvalue(r, 0, 14));
    snprintf(ret->synchronous_commit, sizeof ret->synchronous_commit, "%s", PQgetvalue(r, 0, 15));
    if (!PQgetisnull(r, 0, 16))
        ret->replication = cJSON_Parse(PQgetvalue(r, 0, 16));
    ret->latest_end_lsn = pg_value_ll(r, 0, 18);
    pg_status_set_positions(ret, receive, pg_value_ll(r, 0, 17));
    ret->ok = true;
    PQclear(r);
    return 0;
}

void pg_status_free(PgStatus *s) {
    cJSON_Delete(s->replication);
    s->replication = NULL;
}

/* ---- GUC values ---- */

char *pg_guc_quote(const char *value) {
    StrBuf b;
    sb_init(&b);
    sb_addc(&b, '\'');
    for (const char *p = value; *p; p++) {
        if (*p == '\'')
            sb_add(&b, "''");
        else if (*p == '\\')
            sb_add(&b, "\\\\");
        else if (*p == '\n')
            sb_add(&b, "\\n");
        else
            sb_addc(&b, *p);
    }
    sb_addc(&b, '\'');
    return sb_steal(&b);
}

char *pg_guc_value_string(const YNode *v) {
    if (!v)
        return NULL;
    switch (v->type) {
    case Y_BOOL: return xstrdup(v->b ? "on" : "off");
    case Y_NULL: return NULL;
    case Y_INT:
    case Y_FLOAT:
    case Y_STR: return ynode_scalar_string(v);
    default: return NULL;
    }
}
