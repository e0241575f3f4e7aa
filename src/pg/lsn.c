/* Pure helpers about PostgreSQL's values: LSNs and pg_control's cluster states. No I/O (the unit tests
 * of the executor link this file with fakes of the rest of src/pg). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "pg/instance.h"
#include "pg/pg.h"

int pg_parse_lsn(const char *s, long long *ret) {
    unsigned long hi, lo;
    char extra;
    if (!s || sscanf(s, "%lX/%lX%c", &hi, &lo, &extra) != 2)
        return -EINVAL;
    *ret = (long long)(((unsigned long long)hi << 32) | (lo & 0xFFFFFFFFUL));
    return 0;
}

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

bool pg_state_needs_crash_recovery(const char *s) { return streq(s, "in production") || streq(s, "in crash recovery"); }

/* Patroni 4.1 (postgresql/__init__.py receive_lsn(), _wal_position(); api.py get_postgresql_status()):
 * the WAL receiver's written position is preferred to pg_last_wal_receive_lsn(), which is in fact the
 * flushed one. */
void pg_status_set_positions(PgStatus *s, long long receive, long long written) {
    s->written_lsn = written;
    if (receive && written)
        s->last_receive_lsn = receive > written ? receive : written;
    else
        s->last_receive_lsn = written ? written : receive;
    s->receive_lsn = written ? written : receive ? receive : s->replay_lsn;
    if (s->in_recovery)
        s->wal_position = s->last_receive_lsn > s->replay_lsn ? s->last_receive_lsn : s->replay_lsn;
    else
        s->wal_position = s->flush_lsn;
}
