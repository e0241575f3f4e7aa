/* Fake of the local PostgreSQL's statements and pg_control helpers (src/pg/instance.h, src/pg/pg.h)
 * the executor calls. The pure helpers (pg_format_lsn, pg_state_*) behave as src/pg's: they live in
 * files that also spawn processes, which a unit test must not link. */
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

int pg_remove_data_directory(const char *data_dir, char **ret_error) {
    (void)ret_error;
    fake_event("pg_remove_data_directory(%s)", data_dir);
    return 0;
}

/* ---- pure helpers (not logged) ---- */

void pg_format_lsn(long long lsn, char *buf, size_t len) {
    unsigned long long u = (unsigned long long)lsn;
    snprintf(buf, len, "%llX/%llX", u >> 32, u & 0xFFFFFFFFULL);
}

bool pg_state_was_primary(const char *s) {
    return streq(s, "in production") || streq(s, "shut down") || streq(s, "shutting down") ||
           streq(s, "in crash recovery");
}

bool pg_state_was_replica(const char *s) {
    return streq(s, "in archive recovery") || streq(s, "shut down in recovery");
}

bool pg_state_needs_crash_recovery(const char *s) {
    return streq(s, "in production") || streq(s, "in crash recovery");
}
