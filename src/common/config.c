/* Loading patroni.yml (a file, a directory of them, or PATRONI_CONFIGURATION, with the environment
 * overrides of config_env.c) into a PghaConfig through the table of config_table.c; and the other
 * uses of that table: the dump (`pgha --print-config`) and the diff on reload. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/config_int.h"

/* ------------------------------------------------------------------------------------------ */
/* the local configuration                                                                     */

void config_free(PghaConfig *c) {
    cfg_table_free(&cfg_local, c);
    dyn_config_free(&c->bootstrap.dyn);
    c->bootstrap.method_section = ynode_free(c->bootstrap.method_section);
    c->postgresql.replica_methods = ynode_free(c->postgresql.replica_methods);
    free(c->source);
    c->source = NULL;
}

bool config_is_set(const PghaConfig *c, const char *path) { return cfg_table_is_set(&cfg_local, c->present, path); }

int config_from_tree(const YNode *root, const char *source, PghaConfig *ret, CfgDiag *diag) {
    *ret = (PghaConfig){0};
    ret->source = xstrdup(source);
    size_t nerr = diag->errors.n;
    if (!root || root->type != Y_MAP) {
        cfg_diag_error(diag, root, source, NULL, "the configuration must be a mapping, got %s",
                       root ? cfg_describe(root) : "nothing");
        return -EINVAL;
    }
    cfg_apply_table(&cfg_local, root, NULL, ret, ret->present, source, diag);
    cfg_warn_unknown(&cfg_local, root, NULL, cfg_local_allowed, source, diag);
    cfg_post_process(root, ret, source, diag);
    return diag->errors.n > nerr ? -EINVAL : 0;
}

int config_load(const CfgSource *src, PghaConfig *ret, CfgDiag *diag) {
    size_t nerr = diag->errors.n;
    YNode *root = cfg_source_load_tree(src, diag);
    if (!root || diag->errors.n > nerr) {
        ynode_free(root);
        *ret = (PghaConfig){0};
        return -EINVAL;
    }
    int r = config_from_tree(root, src->path ? src->path : "PATRONI_CONFIGURATION", ret, diag);
    ynode_free(root);
    return r;
}

/* ------------------------------------------------------------------------------------------ */
/* sources: file, directory, PATRONI_CONFIGURATION                                             */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

YNode *cfg_source_load_tree(const CfgSource *src, CfgDiag *diag) {
    YNode *root = NULL;
    struct stat st;
    if (src->path && stat(src->path, &st) == 0 && S_ISDIR(st.st_mode)) {
        DIR *d = opendir(src->path);
        if (!d) {
            cfg_diag_error(diag, NULL, src->path, NULL, "cannot open directory: %s", strerror(errno));
            return NULL;
        }
        StrList files = {0};
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if ((l > 4 && strcmp(de->d_name + l - 4, ".yml") == 0) ||
                (l > 5 && strcmp(de->d_name + l - 5, ".yaml") == 0)) {
                _cleanup_free_ char *p = xasprintf("%s/%s", src->path, de->d_name);
                struct stat fst;
                if (stat(p, &fst) == 0 && S_ISREG(fst.st_mode))
                    strlist_add(&files, p);
            }
        }
        closedir(d);
        if (files.n > 1) /* files.v is NULL when the directory has none, and qsort's base must not be */
            qsort(files.v, files.n, sizeof(char *), cmp_str);
        root = ynode_new(Y_MAP, src->path, 0);
        for (size_t i = 0; i < files.n; i++) {
            char *err = NULL;
            YNode *t = yaml_parse_file(files.v[i], &err);
            if (!t) {
                strlist_add(&diag->errors, err);
                free(err);
                continue;
            }
            if (t->type != Y_MAP)
                cfg_diag_error(diag, t, files.v[i], NULL, "the configuration must be a mapping, got %s",
                               cfg_describe(t));
            else
                ynode_merge(root, t);
            ynode_free(t);
        }
        if (files.n == 0)
            cfg_diag_error(diag, NULL, src->path, NULL, "no *.yml or *.yaml files in this directory");
        strlist_clear(&files);
    } else if (src->path && access(src->path, F_OK) == 0) {
        char *err = NULL;
        root = yaml_parse_file(src->path, &err);
        if (!root) {
            strlist_add(&diag->errors, err);
            free(err);
            return NULL;
        }
    } else if (src->path && src->env_configuration == NULL && (!src->env_overlay || src->env_overlay->n == 0)) {
        cfg_diag_error(diag, NULL, src->path, NULL, "no such file or directory");
        return NULL;
    } else if (src->env_configuration) {
        char *err = NULL;
        root = yaml_parse_string(src->env_configuration, strlen(src->env_configuration),
                                 "environment variable PATRONI_CONFIGURATION", &err);
        if (!root) {
            strlist_add(&diag->errors, err);
            free(err);
            return NULL;
        }
    } else {
        root = ynode_new(Y_MAP, "environment", 0); /* PATRONI_* variables alone */
    }
    if (root->type == Y_NULL) {
        ynode_free(root);
        root = ynode_new(Y_MAP, src->path ? src->path : "environment", 0);
    }
    if (root->type == Y_MAP && src->env_overlay)
        ynode_merge(root, src->env_overlay);
    return root;
}

/* ------------------------------------------------------------------------------------------ */
/* dump and diff                                                                               */

static void yaml_quote(StrBuf *b, const char *s) {
    /* JSON-style double quotes are valid YAML */
    cJSON *j = cJSON_CreateString(s);
    char *q = cJSON_PrintUnformatted(j);
    sb_add(b, q);
    free(q);
    cJSON_Delete(j);
}

char *config_dump(const PghaConfig *c, bool show_secrets) {
    StrBuf b;
    sb_init(&b);
    sb_addf(&b, "# effective local configuration of %s (defaults included)\n", c->source ? c->source : "?");
    for (size_t i = 0; i < cfg_local.n; i++) {
        const CfgEntry *e = &cfg_local.v[i];
        _cleanup_free_ char *v = cfg_value_string(e, c, c->present[i], show_secrets);
        if (!v)
            continue;
        if (e->type == CT_STR || e->type == CT_ENUM) {
            sb_addf(&b, "%s: ", e->path);
            yaml_quote(&b, v);
            sb_addc(&b, '\n');
        } else {
            sb_addf(&b, "%s: %s\n", e->path, v);
        }
    }
    return sb_steal(&b);
}

size_t config_diff(const PghaConfig *a, const PghaConfig *b, CfgChange **ret_changes) {
    CfgChange *changes = NULL;
    size_t n = 0;
    for (size_t i = 0; i < cfg_local.n; i++) {
        const CfgEntry *e = &cfg_local.v[i];
        if (e->offset == NO_OFFSET)
            continue;
        _cleanup_free_ char *va = cfg_value_string(e, a, a->present[i], true);
        _cleanup_free_ char *vb = cfg_value_string(e, b, b->present[i], true);
        if (streq(va, vb))
            continue;
        changes = xrealloc(changes, (n + 1) * sizeof *changes);
        bool secret = e->flags & CF_SECRET;
        changes[n++] = (CfgChange){
            .path = e->path,
            .old_value = secret ? xstrdup(va ? CFG_SECRET_MASK : "(unset)") : xstrdup(va ? va : "(unset)"),
            .new_value = secret ? xstrdup(vb ? CFG_SECRET_MASK : "(unset)") : xstrdup(vb ? vb : "(unset)"),
            .needs_restart = e->flags & CF_RESTART,
        };
    }
    *ret_changes = changes;
    return n;
}

static void keep_values(PghaConfig *next, const PghaConfig *running, unsigned flag) {
    for (size_t i = 0; i < cfg_local.n; i++) {
        const CfgEntry *e = &cfg_local.v[i];
        if (!(e->flags & flag) || e->offset == NO_OFFSET)
            continue;
        void *dst = (char *)next + e->offset;
        const void *src = (const char *)running + e->offset;
        switch (e->type) {
        case CT_ENUM:
            if (e->flags & CF_INDEX) {
                *(int *)dst = *(const int *)src;
            } else {
                free(*(char **)dst);
                *(char **)dst = xstrdup(*(char *const *)src);
            }
            break;
        case CT_STR:
            free(*(char **)dst);
            *(char **)dst = xstrdup(*(char *const *)src);
            break;
        case CT_INT: *(long long *)dst = *(const long long *)src; break;
        case CT_BOOL: *(bool *)dst = *(const bool *)src; break;
        case CT_STRLIST:
            strlist_clear((StrList *)dst);
            strlist_copy((StrList *)dst, (const StrList *)src);
            break;
        default: break;
        }
        next->present[i] = running->present[i];
    }
}

void config_keep_restart_values(PghaConfig *next, const PghaConfig *running) { keep_values(next, running, CF_RESTART); }

void config_keep_restapi_values(PghaConfig *next, const PghaConfig *running) { keep_values(next, running, CF_RESTAPI); }

void config_changes_free(CfgChange *changes, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(changes[i].old_value);
        free(changes[i].new_value);
    }
    free(changes);
}
