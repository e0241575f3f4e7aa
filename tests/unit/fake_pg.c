/* Fake of the local PostgreSQL's statements (src/pg/instance.h, src/pg/pg.h) the executor calls. The
 * pure helpers (LSNs, pg_control states) are the real ones: src/pg/lsn.c is linked. */
#include "fakes.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int pg_checkpoint(PGconn *c, int timeout_ms, char **ret_error) {
    (void)c;
    (void)timeout_ms;
    fake_event("pg_checkpoint");
    if (fake.checkpoint < 0)
        *ret_error = xstrdup("fake CHECKPOINT failure");
    return fake.checkpoint;
}

/* The switchover's CHECKPOINT thread connects here: no connection (and no event: another thread). */
PGconn *pg_instance_connect_db(const PgInstance *pg, const char *dbname, const char *application_name,
                               char **ret_error) {
    (void)pg;
    (void)dbname;
    (void)application_name;
    *ret_error = xstrdup("fake: no connection");
    return NULL;
}

int pg_current_flush_lsn(PGconn *c, long long *ret, char **ret_error) {
    fake_event("pg_current_flush_lsn");
    if (fake.hooks.current_flush_lsn)
        return fake.hooks.current_flush_lsn(fake.hooks.ud, c, ret);
    if (fake.flush_result < 0) {
        *ret_error = xstrdup("fake pg_current_wal_flush_lsn() failure");
        return fake.flush_result;
    }
    *ret = fake.flush_lsn;
    return 0;
}

int pg_emit_wake_message(PGconn *c, char **ret_error) {
    (void)c;
    (void)ret_error;
    fake_event("pg_emit_wake_message");
    return 0;
}

void PQfinish(PGconn *c) { (void)c; }

int pg_instance_identify_system(const PgInstance *pg, long long *ret_tli, long long *ret_lsn, char **ret_error) {
    (void)pg;
    fake_event("pg_instance_identify_system");
    if (fake.identify < 0) {
        *ret_error = xstrdup("fake: no replication connection");
        return fake.identify;
    }
    *ret_tli = fake.identify_tli;
    *ret_lsn = 0;
    return 0;
}

bool pg_control_says_shut_down(const char *data_dir) {
    (void)data_dir;
    return fake.have_controldata && strcmp(fake.cd.state, "shut down") == 0;
}

int pg_remote_timeline(const PghaConfig *cfg, const char *host, int port, int connect_timeout_s, PgRemoteTimeline *ret,
                       char **ret_error) {
    (void)cfg;
    (void)connect_timeout_s;
    fake_event("pg_remote_timeline(%s:%d)", host, port);
    *ret = (PgRemoteTimeline){0};
    if (fake.remote < 0) {
        *ret_error = xstrdup("fake: the remote does not answer");
        return fake.remote;
    }
    ret->in_recovery = fake.remote_in_recovery;
    ret->tli = fake.remote_tli;
    snprintf(ret->sysid, sizeof ret->sysid, "%s", fake.remote_sysid ? fake.remote_sysid : "");
    if (fake.remote_history)
        pg_parse_timeline_history(fake.remote_history, strlen(fake.remote_history), &ret->history, &ret->n_history);
    return 0;
}

void pg_remote_timeline_free(PgRemoteTimeline *r) {
    pg_timeline_history_free(r->history, r->n_history);
    *r = (PgRemoteTimeline){0};
}

void pg_parse_timeline_history(const char *text, size_t len, PgTimelineSwitch **ret, size_t *ret_n) {
    /* (the real parser is tested in test_process; this one reads "tli lsn" lines well formed) */
    *ret = NULL;
    *ret_n = 0;
    char *copy = xstrndup(text, len), *save = NULL;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        long long tli, lsn;
        char lsn_s[32];
        if (sscanf(l, "%lld %31s", &tli, lsn_s) != 2 || pg_parse_lsn(lsn_s, &lsn) < 0)
            continue;
        *ret = xrealloc(*ret, (*ret_n + 1) * sizeof **ret);
        (*ret)[(*ret_n)++] = (PgTimelineSwitch){.tli = tli, .lsn = lsn, .reason = xstrdup("")};
    }
    free(copy);
}

void pg_timeline_history_free(PgTimelineSwitch *h, size_t n) {
    for (size_t i = 0; h && i < n; i++)
        free(h[i].reason);
    free(h);
}

bool pg_rewind_usable(const PghaConfig *cfg, const char *bin_dir) {
    (void)cfg;
    (void)bin_dir;
    return !fake.rewind_unusable;
}

long long pg_checkpoint_end(const PghaConfig *cfg, const char *bin_dir, long long tl, long long lsn) {
    (void)cfg;
    (void)bin_dir;
    fake_event("pg_checkpoint_end(%lld, %llX)", tl, (unsigned long long)lsn);
    return fake.checkpoint_end;
}
