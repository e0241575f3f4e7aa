/* Custom bootstrap and replica creation methods (Patroni's postgresql/bootstrap.py): their command lines,
 * pure (tests/unit/test_methods.c). Running them: bootstrap.c. */
#include <errno.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/yamltree.h"
#include "pg/pg.h"

int pg_shlex_split(const char *s, StrList *ret, char **ret_error) {
    /* Python's shlex.split() (POSIX mode, no comments): words split at blanks; '...' literal; in "..." a
     * backslash escapes only \ and " (it stays before anything else); outside quotes it escapes any character */
    StrBuf w;
    sb_init(&w);
    bool in_word = false;
    for (const char *p = s ? s : ""; *p;) {
        char c = *p;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            if (in_word) {
                strlist_add(ret, w.s ? w.s : "");
                sb_free(&w);
                sb_init(&w);
                in_word = false;
            }
            p++;
            continue;
        }
        in_word = true;
        if (c == '\'') {
            const char *end = strchr(p + 1, '\'');
            if (!end) {
                sb_free(&w);
                *ret_error = xasprintf("no closing quotation in '%s'", s);
                return -EINVAL;
            }
            sb_addn(&w, p + 1, (size_t)(end - p - 1));
            p = end + 1;
        } else if (c == '"') {
            p++;
            for (;;) {
                if (!*p) {
                    sb_free(&w);
                    *ret_error = xasprintf("no closing quotation in '%s'", s);
                    return -EINVAL;
                }
                if (*p == '"') {
                    p++;
                    break;
                }
                if (*p == '\\' && (p[1] == '\\' || p[1] == '"')) {
                    sb_addn(&w, p + 1, 1);
                    p += 2;
                } else {
                    sb_addn(&w, p, 1);
                    p++;
                }
            }
        } else if (c == '\\') {
            if (!p[1]) {
                sb_free(&w);
                *ret_error = xasprintf("no escaped character in '%s'", s);
                return -EINVAL;
            }
            sb_addn(&w, p + 1, 1);
            p += 2;
        } else {
            sb_addn(&w, p, 1);
            p++;
        }
    }
    if (in_word)
        strlist_add(ret, w.s ? w.s : "");
    sb_free(&w);
    return 0;
}

/* A value as Python's str() prints it into `--key=value` (collections: compact JSON, where Python would
 * print its repr) */
static char *arg_value(const YNode *v) {
    if (!v)
        return xstrdup("None");
    if (ynode_is_scalar(v))
        return ynode_scalar_string(v);
    cJSON *j = ynode_to_json(v);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    char *r = xstrdup(s ? s : "");
    free(s);
    return r;
}

static void add_arg(StrList *argv, const char *key, const YNode *v) {
    _cleanup_free_ char *val = arg_value(v);
    strlist_addf(argv, "--%s=%s", key, val);
}

static bool is_one_of(const char *s, const char *const *set) {
    for (; *set; set++)
        if (strcmp(s, *set) == 0)
            return true;
    return false;
}

bool pg_replica_method_without_leader(const char *method, const YNode *section) {
    return strcmp(method, "basebackup") != 0 && ynode_truthy(ynode_get(section, "no_leader"));
}

bool pg_replica_methods_without_leader(const PghaConfig *cfg, const StrList *methods) {
    const StrList *m = methods ? methods : &cfg->postgresql.create_replica_methods;
    for (size_t i = 0; i < m->n; i++)
        if (pg_replica_method_without_leader(m->v[i], ynode_get(cfg->postgresql.replica_methods, m->v[i])))
            return true;
    return false;
}

int pg_replica_method_argv(const char *method, const YNode *section, const char *scope, const char *data_dir,
                           const char *connstring, StrList *ret, char **ret_error) {
    const YNode *cmd = ynode_get(section, "command");
    _cleanup_free_ char *cmd_s = cmd && ynode_is_scalar(cmd) && cmd->type != Y_NULL ? ynode_scalar_string(cmd)
                                                                                    : xstrdup(method);
    int r = pg_shlex_split(cmd_s, ret, ret_error);
    if (r < 0)
        return r;
    if (ret->n == 0) {
        *ret_error = xasprintf("replica method %s has an empty command", method);
        return -EINVAL;
    }
    /* Patroni: every key of the section but `command`, in order; without no_params, scope, role, datadir
     * and connstring are set in that dict (a key of the section keeps its place and gets the value), with
     * no_params the option keys are dropped */
    bool no_params = ynode_truthy(ynode_get(section, "no_params"));
    static const char *const fixed[] = {"scope", "role", "datadir", "connstring", NULL};
    static const char *const options[] = {"no_params", "no_master", "no_leader", "keep_data", NULL};
    const char *fixed_val[] = {scope, "replica", data_dir, connstring ? connstring : ""};
    bool fixed_done[4] = {false, false, false, false};
    for (size_t i = 0; section && section->type == Y_MAP && i < section->n; i++) {
        const char *k = section->keys[i];
        if (strcmp(k, "command") == 0 || (no_params && is_one_of(k, options)))
            continue;
        bool replaced = false;
        for (int f = 0; !no_params && fixed[f]; f++)
            if (strcmp(k, fixed[f]) == 0) {
                strlist_addf(ret, "--%s=%s", k, fixed_val[f]);
                fixed_done[f] = replaced = true;
            }
        if (!replaced)
            add_arg(ret, k, section->items[i]);
    }
    for (int f = 0; !no_params && fixed[f]; f++)
        if (!fixed_done[f])
            strlist_addf(ret, "--%s=%s", fixed[f], fixed_val[f]);
    return 0;
}

int pg_bootstrap_method_argv(const YNode *section, const char *scope, const char *data_dir, StrList *ret,
                             char **ret_error) {
    const YNode *cmd = ynode_get(section, "command");
    if (!cmd || !ynode_is_scalar(cmd) || cmd->type == Y_NULL) {
        *ret_error = xstrdup("the custom bootstrap method has no command");
        return -EINVAL;
    }
    _cleanup_free_ char *cmd_s = ynode_scalar_string(cmd);
    int r = pg_shlex_split(cmd_s, ret, ret_error);
    if (r < 0)
        return r;
    if (ret->n == 0) {
        *ret_error = xstrdup("the custom bootstrap method has an empty command");
        return -EINVAL;
    }
    if (!ynode_truthy(ynode_get(section, "no_params"))) {
        strlist_addf(ret, "--scope=%s", scope);
        strlist_addf(ret, "--datadir=%s", data_dir);
    }
    static const char *const reserved[] = {
        "command", "no_params", "keep_existing_recovery_conf", "recovery_conf", "scope", "datadir", NULL};
    for (size_t i = 0; section->type == Y_MAP && i < section->n; i++)
        if (!is_one_of(section->keys[i], reserved))
            add_arg(ret, section->keys[i], section->items[i]);
    return 0;
}
