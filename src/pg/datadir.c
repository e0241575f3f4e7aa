/* The data directory: pg_controldata, PG_VERSION, postmaster.pid, binary versions. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

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

int pg_controldata(const char *bin_path, const char *data_dir, ControlData *ret, char **ret_error) {
    *ret = (ControlData){0};
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
