/* The data directory: pg_controldata, PG_VERSION, postmaster.pid, binary versions. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pg/pg.h"

bool pg_data_dir_empty(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT; /* any other error: we do not know, so it is not empty */
    struct dirent *de;
    bool empty = true;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.' && strcmp(de->d_name, "lost+found") != 0) {
            empty = false;
            break;
        }
    closedir(d);
    return empty;
}

int pg_data_dir_major(const char *dir) {
    _cleanup_free_ char *p = xasprintf("%s/PG_VERSION", dir);
    FILE *f = fopen(p, "re");
    if (!f)
        return -errno;
    char buf[32] = "";
    bool ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    if (!ok)
        return -EINVAL;
    int major = 0, minor = 0;
    if (sscanf(buf, "%d.%d", &major, &minor) < 1)
        return -EINVAL;
    return major >= 10 ? major : major * 100 + minor; /* 9.6 -> 906 */
}

int pg_bin_version(const char *postgres_path) {
    StrList argv = {0};
    strlist_add(&argv, postgres_path);
    strlist_add(&argv, "--version");
    char *out = NULL;
    int r = run_command(&argv, NULL, 10 * USEC_PER_SEC, &out);
    strlist_clear(&argv);
    int v = -EINVAL;
    if (r == 0 && out) {
        /* "postgres (PostgreSQL) 15.5 (Debian 15.5-0+deb12u1)" */
        const char *p = strstr(out, "(PostgreSQL) ");
        int major = 0, minor = 0, patch = 0;
        if (p && sscanf(p + 13, "%d.%d.%d", &major, &minor, &patch) >= 2)
            v = major >= 10 ? major * 10000 + minor : major * 10000 + minor * 100 + patch;
    } else if (r > 0) {
        v = -ENOEXEC;
    } else if (r < 0) {
        v = r;
    }
    free(out);
    return v;
}

/* The head of ControlFileData (src/include/catalog/pg_control.h), the same in PostgreSQL 9.6 to 17:
 * system_identifier (8 bytes), pg_control_version (4), catalog_version_no (4), state (DBState, 4), and
 * DB_SHUTDOWNED = 1. The checkpointer rewrites the file in one write(); a torn read can only make this
 * answer "not yet", and a "yes" is confirmed with pg_controldata by the caller. */
bool pg_control_says_shut_down(const char *data_dir) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/global/pg_control", data_dir) >= (int)sizeof path)
        return false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    unsigned char head[20];
    ssize_t n = pread(fd, head, sizeof head, 0);
    close(fd);
    if (n != (ssize_t)sizeof head)
        return false;
    int32_t state;
    memcpy(&state, head + 16, sizeof state);
    return state == 1;
}

int pg_controldata(const char *bin_path, const char *data_dir, ControlData *ret, char **ret_error) {
    *ret = (ControlData){.max_connections = -1,
                         .max_prepared_xacts = -1,
                         .max_locks_per_xact = -1,
                         .max_worker_processes = -1,
                         .max_wal_senders = -1};
    StrList argv = {0}, env = {0};
    strlist_add(&argv, bin_path);
    strlist_add(&argv, "-D");
    strlist_add(&argv, data_dir);
    strlist_add(&env, "LANG=C");
    strlist_add(&env, "LC_ALL=C");
    char *out = NULL;
    int r = run_command(&argv, &env, 30 * USEC_PER_SEC, &out);
    strlist_clear(&argv);
    if (r != 0) {
        *ret_error = xasprintf("pg_controldata failed (%d): %s", r, out ? str_trim(out) : "");
        free(out);
        strlist_clear(&env);
        return r < 0 ? r : -EIO;
    }
    strlist_clear(&env);
    if (strstr(out, "CRC checksum does not match")) {
        /* pg_controldata only warns (and exits 0): a file read while being written, or a corrupt one */
        *ret_error = xasprintf("pg_controldata: the CRC of pg_control does not match its contents");
        free(out);
        return -EIO;
    }
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        char *key = str_trim(line), *val = str_trim(colon + 1);
        long long v;
        if (strcmp(key, "Database cluster state") == 0)
            snprintf(ret->state, sizeof ret->state, "%s", val);
        else if (strcmp(key, "Database system identifier") == 0)
            snprintf(ret->sysid, sizeof ret->sysid, "%s", val);
        else if (strcmp(key, "Latest checkpoint location") == 0)
            (void)pg_parse_lsn(val, &ret->checkpoint_lsn);
        else if (strcmp(key, "Latest checkpoint's REDO location") == 0)
            (void)pg_parse_lsn(val, &ret->redo_lsn);
        else if (strcmp(key, "Latest checkpoint's TimeLineID") == 0)
            (void)parse_ll(val, &ret->checkpoint_tli);
        else if (strcmp(key, "Minimum recovery ending location") == 0)
            (void)pg_parse_lsn(val, &ret->min_recovery_lsn);
        else if (strcmp(key, "Min recovery ending loc's timeline") == 0)
            (void)parse_ll(val, &ret->min_recovery_tli);
        else if (strcmp(key, "wal_log_hints setting") == 0)
            ret->wal_log_hints = strcmp(val, "on") == 0;
        else if (strcmp(key, "Data page checksum version") == 0)
            ret->data_checksum_version = parse_ll(val, &v) == 0 && v >= 0 && v <= INT_MAX ? (int)v : 0;
        else if (strcmp(key, "max_connections setting") == 0)
            ret->max_connections = parse_ll(val, &v) == 0 && v >= 0 ? v : -1;
        else if (strcmp(key, "max_prepared_xacts setting") == 0)
            ret->max_prepared_xacts = parse_ll(val, &v) == 0 && v >= 0 ? v : -1;
        else if (strcmp(key, "max_locks_per_xact setting") == 0)
            ret->max_locks_per_xact = parse_ll(val, &v) == 0 && v >= 0 ? v : -1;
        else if (strcmp(key, "max_worker_processes setting") == 0)
            ret->max_worker_processes = parse_ll(val, &v) == 0 && v >= 0 ? v : -1;
        else if (strcmp(key, "max_wal_senders setting") == 0)
            ret->max_wal_senders = parse_ll(val, &v) == 0 && v >= 0 ? v : -1;
    }
    free(out);
    if (!ret->sysid[0]) {
        *ret_error = xstrdup("pg_controldata printed no system identifier");
        return -EPROTO;
    }
    return 0;
}

int pg_read_pid_file(const char *data_dir, PidFile *ret) {
    *ret = (PidFile){0};
    _cleanup_free_ char *p = xasprintf("%s/postmaster.pid", data_dir);
    FILE *f = fopen(p, "re");
    if (!f)
        return -errno;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < 8) {
        str_trim(line);
        long long v = 0;
        bool num = parse_ll(line, &v) == 0;
        switch (n) {
        case 0: ret->pid = num && v >= INT_MIN && v <= INT_MAX ? (pid_t)v : 0; break;
        case 2: ret->start_time = num ? v : 0; break;
        case 3: ret->port = num && v >= 0 && v <= 65535 ? (int)v : 0; break;
        case 4: snprintf(ret->socket_dir, sizeof ret->socket_dir, "%.255s", line); break;
        case 5: snprintf(ret->listen, sizeof ret->listen, "%.255s", line); break;
        case 7: snprintf(ret->status, sizeof ret->status, "%.15s", line); break;
        default: break;
        }
        n++;
    }
    fclose(f);
    return ret->pid > 0 ? 0 : -EINVAL;
}

void pg_parse_timeline_history(const char *text, size_t len, PgTimelineSwitch **ret, size_t *ret_n) {
    *ret = NULL;
    *ret_n = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char line[2048];
        if (n >= sizeof line)
            n = sizeof line - 1;
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl ? nl + 1 : end;
        char *l = str_trim(line);
        if (!*l || *l == '#')
            continue;
        char *save = NULL;
        char *tli = strtok_r(l, "\t ", &save), *lsn = strtok_r(NULL, "\t ", &save), *reason = strtok_r(NULL, "", &save);
        long long tv, lv;
        if (!tli || !lsn || parse_ll(tli, &tv) < 0 || pg_parse_lsn(lsn, &lv) < 0)
            continue;
        *ret = xrealloc(*ret, (*ret_n + 1) * sizeof **ret);
        (*ret)[(*ret_n)++] = (PgTimelineSwitch){.tli = tv,
                                                .lsn = lv,
                                                .reason = xstrdup(reason ? str_trim(reason) : "")};
    }
}

int pg_read_timeline_history(const char *data_dir, long long tl, PgTimelineSwitch **ret, size_t *ret_n,
                             time_t *ret_mtime, char **ret_error) {
    *ret = NULL;
    *ret_n = 0;
    _cleanup_free_ char *path = xasprintf("%s/pg_wal/%08llX.history", data_dir, (unsigned long long)tl);
    FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        *ret_error = xasprintf("cannot open %s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    *ret_mtime = fstat(fileno(f), &st) == 0 ? st.st_mtime : time(NULL);
    StrBuf b = {0};
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sb_addn(&b, buf, n);
    fclose(f);
    pg_parse_timeline_history(b.s ? b.s : "", b.len, ret, ret_n);
    sb_free(&b);
    return 0;
}

void pg_timeline_history_free(PgTimelineSwitch *h, size_t n) {
    for (size_t i = 0; h && i < n; i++)
        free(h[i].reason);
    free(h);
}

long long pg_oldest_wal_lsn(const char *data_dir, long long seg_size) {
    /* a power of two from 1 MB to 1 GB, as PostgreSQL allows */
    if (seg_size < (1LL << 20) || seg_size > (1LL << 30) || (seg_size & (seg_size - 1)))
        return 0;
    _cleanup_free_ char *path = xasprintf("%s/pg_wal", data_dir);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    long long segs_per_id = 0x100000000LL / seg_size, oldest = -1;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        if (strlen(n) != 24 || strspn(n, "0123456789ABCDEF") != 24)
            continue;
        char log[9], seg[9];
        memcpy(log, n + 8, 8);
        memcpy(seg, n + 16, 8);
        log[8] = seg[8] = '\0';
        long long lo = strtoll(log, NULL, 16), se = strtoll(seg, NULL, 16);
        if (se >= segs_per_id)
            continue;
        long long segno = lo * segs_per_id + se;
        if (oldest < 0 || segno < oldest)
            oldest = segno;
    }
    closedir(d);
    return oldest < 0 ? 0 : oldest * seg_size;
}
