/* Replication slots: the statements and the state file (spec §4.11). Which slots a node should have
 * is the agent's plan (agent/slots.c); this file only carries out single steps. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pg/pg.h"

void pg_slots_free(PgSlot *slots, size_t n) {
    for (size_t i = 0; slots && i < n; i++) {
        free(slots[i].name);
        free(slots[i].plugin);
        free(slots[i].database);
    }
    free(slots);
}

static long long ll_value(const PGresult *r, int row, int col) {
    long long v = 0;
    if (!PQgetisnull(r, row, col) && parse_ll(PQgetvalue(r, row, col), &v) < 0)
        v = 0;
    return v;
}

/* `lost` is the expression of column 9: wal_status exists from PostgreSQL 13 on. */
#define SLOTS_SQL(lost)                                                             \
    "SELECT slot_name, slot_type, plugin, database, active, xmin IS NOT NULL,"      \
    " COALESCE(pg_catalog.pg_wal_lsn_diff(restart_lsn, '0/0')::bigint, 0),"         \
    " COALESCE(pg_catalog.pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::bigint, 0)," \
    " COALESCE(catalog_xmin::text::bigint, 0), " lost " FROM pg_catalog.pg_replication_slots WHERE NOT temporary"

static const char slots_sql[] = SLOTS_SQL("wal_status IS NOT DISTINCT FROM 'lost'");
static const char slots_sql_pre13[] = SLOTS_SQL("false");

int pg_slots_read(PGconn *c, int timeout_ms, PgSlot **ret, size_t *ret_n, char **ret_error) {
    *ret = NULL;
    *ret_n = 0;
    PGresult *r = pg_query(c, PQserverVersion(c) >= 130000 ? slots_sql : slots_sql_pre13, timeout_ms, ret_error);
    if (!r)
        return -EIO;
    int n = PQntuples(r);
    PgSlot *rows = n > 0 ? xcalloc((size_t)n, sizeof *rows) : NULL;
    for (int i = 0; i < n; i++) {
        PgSlot *s = &rows[i];
        s->name = xstrdup(PQgetvalue(r, i, 0));
        s->logical = strcmp(PQgetvalue(r, i, 1), "logical") == 0;
        s->plugin = PQgetisnull(r, i, 2) ? NULL : xstrdup(PQgetvalue(r, i, 2));
        s->database = PQgetisnull(r, i, 3) ? NULL : xstrdup(PQgetvalue(r, i, 3));
        s->active = PQgetvalue(r, i, 4)[0] == 't';
        s->has_xmin = PQgetvalue(r, i, 5)[0] == 't';
        s->restart_lsn = ll_value(r, i, 6);
        s->confirmed_flush_lsn = ll_value(r, i, 7);
        s->catalog_xmin = ll_value(r, i, 8);
        s->lost = PQgetvalue(r, i, 9)[0] == 't';
    }
    PQclear(r);
    *ret = rows;
    *ret_n = (size_t)n;
    return 0;
}

/* A statement on one slot: 0, or -EIO with *ret_error set. */
static int slot_statement(PGconn *c, const char *sql, const char *const *params, int n_params, int timeout_ms,
                          PGresult **ret, char **ret_error) {
    *ret = pg_query_params(c, sql, n_params, params, timeout_ms, ret_error);
    return *ret ? 0 : -EIO;
}

int pg_slot_drop(PGconn *c, const char *name, int timeout_ms, char **ret_error) {
    static const char sql[] =
        "WITH s AS (SELECT slot_name, active FROM pg_catalog.pg_replication_slots WHERE slot_name = $1),"
        " d AS (SELECT pg_catalog.pg_drop_replication_slot(slot_name) IS NULL AS dropped FROM s WHERE NOT active)"
        " SELECT s.active, d.dropped IS NOT NULL FROM s LEFT JOIN d ON true";
    const char *params[] = {name};
    PGresult *r;
    if (slot_statement(c, sql, params, 1, timeout_ms, &r, ret_error) < 0)
        return -EIO;
    int ret = 1; /* no row: the slot is already gone */
    if (PQntuples(r) > 0)
        ret = PQgetvalue(r, 0, 1)[0] == 't' ? 1 : PQgetvalue(r, 0, 0)[0] == 't' ? 0 : -EIO;
    PQclear(r);
    if (ret < 0)
        *ret_error = xstrdup("the slot was neither active nor dropped");
    return ret;
}

/* 1 when the statement returned a row (the slot was created), 0 when none (it existed). */
static int slot_create(PGconn *c, const char *sql, const char *const *params, int n_params, int timeout_ms,
                       char **ret_error) {
    PGresult *r;
    if (slot_statement(c, sql, params, n_params, timeout_ms, &r, ret_error) < 0)
        return -EIO;
    int created = PQntuples(r) > 0;
    PQclear(r);
    return created;
}

int pg_slot_create_physical(PGconn *c, const char *name, int timeout_ms, char **ret_error) {
    static const char sql[] =
        "SELECT pg_catalog.pg_create_physical_replication_slot($1, true) WHERE NOT EXISTS (SELECT 1 FROM"
        " pg_catalog.pg_replication_slots WHERE slot_type = 'physical' AND slot_name = $1)";
    const char *params[] = {name};
    return slot_create(c, sql, params, 1, timeout_ms, ret_error);
}

int pg_slot_create_logical(PGconn *c, const char *name, const char *plugin, int timeout_ms, char **ret_error) {
    static const char sql[] =
        "SELECT pg_catalog.pg_create_logical_replication_slot($1, $2) WHERE NOT EXISTS"
        " (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_type = 'logical' AND slot_name = $1)";
    const char *params[] = {name, plugin};
    return slot_create(c, sql, params, 2, timeout_ms, ret_error);
}

int pg_slot_advance(PGconn *c, const char *name, long long lsn, int timeout_ms, char **ret_error) {
    char pos[32];
    pg_format_lsn(lsn, pos, sizeof pos);
    const char *params[] = {name, pos};
    PGresult *r;
    if (slot_statement(c, "SELECT pg_catalog.pg_replication_slot_advance($1, $2::pg_lsn)", params, 2, timeout_ms, &r,
                       ret_error) < 0)
        return -EIO;
    PQclear(r);
    return 0;
}

int pg_slot_copy_settings(PGconn *c, PgSlotCopySettings *ret, char **ret_error) {
    PGresult *r = pg_query(c,
                           "SELECT pg_catalog.current_setting('wal_level') = 'logical',"
                           " pg_catalog.current_setting('hot_standby_feedback')::boolean,"
                           " pg_catalog.current_setting('max_replication_slots')::bigint - (SELECT count(*) FROM"
                           " pg_catalog.pg_replication_slots WHERE NOT temporary),"
                           " (SELECT setting::bigint FROM pg_catalog.pg_settings WHERE name = 'wal_segment_size')",
                           2000, ret_error);
    if (!r)
        return -EIO;
    if (PQntuples(r) != 1) {
        PQclear(r);
        *ret_error = xstrdup("no result");
        return -EPROTO;
    }
    *ret = (PgSlotCopySettings){.wal_level_logical = PQgetvalue(r, 0, 0)[0] == 't',
                                .hot_standby_feedback = PQgetvalue(r, 0, 1)[0] == 't',
                                .free_slots = ll_value(r, 0, 2),
                                .wal_segment_size = ll_value(r, 0, 3)};
    PQclear(r);
    return 0;
}

/* Slot names as one parameter for `slot_name = ANY(pg_catalog.string_to_array($1, ','))`: PostgreSQL allows only
 * lower-case letters, digits and underscores in them. */
static char *names_param(const StrList *names) { return strlist_join(names, ","); }

int pg_slot_states_read(PGconn *c, const StrList *names, PgSlotState **ret, size_t *ret_n, char **ret_error) {
    *ret = NULL;
    *ret_n = 0;
    static const char sql[] =
        "SELECT slot_name, slot_type, datname, plugin,"
        " COALESCE(pg_catalog.pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::bigint, 0),"
        " pg_catalog.pg_read_binary_file('pg_replslot/' || slot_name || '/state'),"
        " COALESCE(pg_catalog.pg_wal_lsn_diff(restart_lsn, '0/0')::bigint, 0)"
        " FROM pg_catalog.pg_get_replication_slots() JOIN pg_catalog.pg_database ON datoid = oid"
        " WHERE NOT pg_catalog.pg_is_in_recovery() AND slot_name = ANY(pg_catalog.string_to_array($1, ','))";
    _cleanup_free_ char *list = names_param(names);
    const char *params[] = {list};
    PGresult *r = pg_query_params(c, sql, 1, params, 2000, ret_error);
    if (!r)
        return -EIO;
    int n = PQntuples(r);
    PgSlotState *rows = n > 0 ? xcalloc((size_t)n, sizeof *rows) : NULL;
    for (int i = 0; i < n; i++) {
        PgSlotState *s = &rows[i];
        s->name = xstrdup(PQgetvalue(r, i, 0));
        s->type = xstrdup(PQgetvalue(r, i, 1));
        s->database = PQgetisnull(r, i, 2) ? NULL : xstrdup(PQgetvalue(r, i, 2));
        s->plugin = PQgetisnull(r, i, 3) ? NULL : xstrdup(PQgetvalue(r, i, 3));
        s->confirmed_flush_lsn = ll_value(r, i, 4);
        s->restart_lsn = ll_value(r, i, 6);
        if (!PQgetisnull(r, i, 5)) {
            size_t len = 0;
            unsigned char *bytes = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 5), &len);
            if (bytes) {
                s->state = xmalloc(len ? len : 1);
                memcpy(s->state, bytes, len);
                s->state_len = len;
                PQfreemem(bytes);
            }
        }
    }
    PQclear(r);
    *ret = rows;
    *ret_n = (size_t)n;
    return 0;
}

void pg_slot_states_free(PgSlotState *s, size_t n) {
    for (size_t i = 0; s && i < n; i++) {
        free(s[i].name);
        free(s[i].type);
        free(s[i].database);
        free(s[i].plugin);
        free(s[i].state);
    }
    free(s);
}

int pg_slot_catalog_xmins(PGconn *c, const StrList *names, StrList *ret_names, long long **ret_xmins,
                          char **ret_error) {
    *ret_xmins = NULL;
    static const char sql[] = "SELECT slot_name, COALESCE(catalog_xmin::text::bigint, 0) FROM"
                              " pg_catalog.pg_get_replication_slots() WHERE NOT pg_catalog.pg_is_in_recovery()"
                              " AND slot_name = ANY(pg_catalog.string_to_array($1, ','))";
    _cleanup_free_ char *list = names_param(names);
    const char *params[] = {list};
    PGresult *r = pg_query_params(c, sql, 1, params, 2000, ret_error);
    if (!r)
        return -EIO;
    int n = PQntuples(r);
    *ret_xmins = xcalloc((size_t)n + 1, sizeof **ret_xmins);
    for (int i = 0; i < n; i++) {
        strlist_add(ret_names, PQgetvalue(r, i, 0));
        (*ret_xmins)[i] = ll_value(r, i, 1);
    }
    PQclear(r);
    return 0;
}

/* ---- the state file ---- */

static int remove_tree_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) < 0 ? -1 : 0;
}

static int remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    return nftw(path, remove_tree_cb, 16, FTW_DEPTH | FTW_PHYS) < 0 ? -errno : 0;
}

static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return r;
}

/* A .tmp directory (PostgreSQL removes a leftover one at start-up), the file fsync'ed, the directory
 * renamed into place. Modes follow the data directory's (group access or not). */
int pg_write_slot_state(const char *dd, const char *name, const unsigned char *data, size_t len, char **err) {
    struct stat st;
    bool group = stat(dd, &st) == 0 && (st.st_mode & S_IRWXG);
    mode_t dmode = group ? 0750 : 0700, fmode = group ? 0640 : 0600;
    _cleanup_free_ char *base = xasprintf("%s/pg_replslot", dd);
    _cleanup_free_ char *tmp = xasprintf("%s/%s.tmp", base, name);
    _cleanup_free_ char *dir = xasprintf("%s/%s", base, name);
    _cleanup_free_ char *file = xasprintf("%s/state", tmp);
    int r = remove_tree(tmp);
    if (r < 0) {
        *err = xasprintf("cannot remove %s: %s", tmp, strerror(-r));
        return r;
    }
    if (mkdir(tmp, dmode) < 0 || chmod(tmp, dmode) < 0) {
        r = -errno;
        *err = xasprintf("cannot create %s: %s", tmp, strerror(-r));
        return r;
    }
    int fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, fmode);
    if (fd < 0) {
        r = -errno;
        *err = xasprintf("cannot create %s: %s", file, strerror(-r));
        return r;
    }
    size_t off = 0;
    while (r == 0 && off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            r = n < 0 ? -errno : -EIO;
        else
            off += (size_t)n;
    }
    if (r == 0 && (fchmod(fd, fmode) < 0 || fsync(fd) < 0))
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0)
        r = fsync_path(tmp);
    if (r == 0)
        r = remove_tree(dir);
    if (r == 0 && rename(tmp, dir) < 0)
        r = -errno;
    if (r == 0)
        r = fsync_path(dir);
    if (r == 0)
        r = fsync_path(base);
    if (r < 0) {
        *err = xasprintf("cannot write %s/state: %s", dir, strerror(-r));
        (void)remove_tree(tmp);
    }
    return r;
}
