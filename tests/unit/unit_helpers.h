/* Helpers shared by the unit tests: temporary directories and files, string checks.
 * Include after <cmocka.h>. Everything here is static inline so that a test file may use any
 * subset without unused-function warnings. */
#pragma once

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/util.h"
#include "common/yamltree.h"
#include "dcs/cluster.h"

/* The seed fixtures live in the repository, in tests/fixtures/seed/. */
#define SEED_FIXTURE(name) SOURCE_ROOT "/tests/fixtures/seed/" name

/* A fresh directory under $TMPDIR (or /tmp); free with tmpdir_remove(). */
static inline char *tmpdir_make(void) {
    const char *base = getenv("TMPDIR");
    char *tmpl = xasprintf("%s/pgha-unit-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpl)) {
        fprintf(stderr, "mkdtemp(%s): %s\n", tmpl, strerror(errno));
        free(tmpl);
        return NULL;
    }
    return tmpl;
}

static inline int rm_entry_(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Remove the directory and everything in it, then free the path. Returns NULL. */
static inline char *tmpdir_remove(char *dir) {
    if (dir)
        (void)nftw(dir, rm_entry_, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
    return NULL;
}

/* Write `content` to dir/name (replacing it); returns the path (caller frees). */
static inline char *write_file(const char *dir, const char *name, const char *content) {
    char *path = xasprintf("%s/%s", dir, name);
    char *tmp = xasprintf("%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, strlen(content), f), strlen(content));
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0); /* atomic, as an editor or config manager would do */
    free(tmp);
    return path;
}

static inline char *read_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    StrBuf b;
    sb_init(&b);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sb_addn(&b, buf, n);
    fclose(f);
    return sb_steal(&b);
}

/* True when `s` contains every one of the NULL-terminated needles. */
static inline bool contains_all_v(const char *s, va_list ap) {
    for (const char *needle = va_arg(ap, const char *); needle; needle = va_arg(ap, const char *))
        if (!s || !strstr(s, needle))
            return false;
    return true;
}

/* Index of the first entry of `l` that contains all the needles (NULL-terminated), or -1. */
static inline int find_entry_with(const StrList *l, ...) {
    for (size_t i = 0; i < l->n; i++) {
        va_list ap;
        va_start(ap, l);
        bool ok = contains_all_v(l->v[i], ap);
        va_end(ap);
        if (ok)
            return (int)i;
    }
    return -1;
}

static inline void print_list(const char *what, const StrList *l) {
    for (size_t i = 0; i < l->n; i++)
        print_error("%s[%zu]: %s\n", what, i, l->v[i]);
}

/* Line number (1-based) of the first line of `text` that contains `marker`, or 0. */
static inline int line_of(const char *text, const char *marker) {
    const char *hit = strstr(text, marker);
    if (!hit)
        return 0;
    int line = 1;
    for (const char *p = text; p < hit; p++)
        if (*p == '\n')
            line++;
    return line;
}

/* A dynamic configuration from its YAML text (NULL: the defaults); any error fails the test. */
static inline void load_dyn(DynConfig *dyn, const char *yaml) {
    if (!yaml) {
        dyn_config_defaults(dyn);
        return;
    }
    char *err = NULL;
    YNode *n = yaml_parse_string(yaml, strlen(yaml), "/config", &err);
    if (!n)
        print_error("/config: %s\n", err);
    assert_non_null(n);
    CfgDiag diag = {0};
    int r = dyn_config_parse(n, dyn, &diag);
    for (size_t i = 0; i < diag.errors.n; i++)
        print_error("/config: %s\n", diag.errors.v[i]);
    assert_int_equal(r, 0);
    cfg_diag_clear(&diag);
    ynode_free(n);
}

/* A test member's configuration: scope demo, the given name, loopback addresses, a data directory that
 * does not exist, superuser and replication users; `extra` (YAML, may be NULL) is appended. */
static inline void load_config(PghaConfig *cfg, const char *name, const char *extra) {
    char *text = xasprintf("scope: demo\n"
                           "name: %s\n"
                           "restapi:\n  listen: 127.0.0.1:8008\n"
                           "etcd3:\n  hosts: 127.0.0.1:2379\n"
                           "postgresql:\n"
                           "  listen: 127.0.0.1:5432\n"
                           "  data_dir: /nonexistent/pgha-unit/data\n"
                           "  authentication:\n"
                           "    superuser:\n      username: postgres\n"
                           "    replication:\n      username: replicator\n"
                           "%s",
                           name, extra ? extra : "");
    char *err = NULL;
    YNode *root = yaml_parse_string(text, strlen(text), "patroni.yml", &err);
    if (!root)
        print_error("patroni.yml: %s\n", err);
    assert_non_null(root);
    CfgDiag diag = {0};
    int r = config_from_tree(root, "patroni.yml", cfg, &diag);
    for (size_t i = 0; i < diag.errors.n; i++)
        print_error("patroni.yml: %s\n", diag.errors.v[i]);
    assert_int_equal(r, 0);
    cfg_diag_clear(&diag);
    ynode_free(root);
    free(text);
}

/* A DCS key of a test cluster: its path below the cluster's base and its value (len 0: strlen(value);
 * otherwise the value holds NUL bytes). */
typedef struct Kv {
    const char *rel, *value;
    size_t len;
} Kv;

/* The cluster view etcd would give for these keys under `base`: in order they get mod_revision
 * first_rev, first_rev + 1, ...; the leader and member keys carry a lease. Stops after max keys or at
 * the first key without a path. */
static inline Cluster *cluster_of_keys(const Kv *keys, size_t max, const char *base, long long first_rev) {
    DcsKv *kvs = xcalloc(max + 1, sizeof *kvs);
    size_t n = 0;
    for (size_t i = 0; i < max && keys[i].rel; i++, n++) {
        size_t len = keys[i].len ? keys[i].len : strlen(keys[i].value);
        kvs[n].key = xasprintf("%s/%s", base, keys[i].rel);
        kvs[n].value = xcalloc(1, len + 1);
        memcpy(kvs[n].value, keys[i].value, len);
        kvs[n].value_len = len;
        kvs[n].mod_revision = kvs[n].create_revision = first_rev + (long long)i;
        if (strcmp(keys[i].rel, "leader") == 0 || strncmp(keys[i].rel, "members/", 8) == 0)
            kvs[n].lease = xstrdup("7587862073874340106");
    }
    Cluster *c = cluster_from_kvs(kvs, n, base);
    for (size_t i = 0; i < n; i++)
        dcs_kv_free_contents(&kvs[i]);
    free(kvs);
    assert_non_null(c);
    return c;
}
