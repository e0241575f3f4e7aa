/* The value types of the configuration tables: converting a YAML node into an entry's field (with
 * the type and range checks), freeing it, and rendering it as text for the dump and the diff. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/config_int.h"

const char *sync_mode_to_string(SyncMode m) {
    switch (m) {
    case SYNC_ON: return "on";
    case SYNC_QUORUM: return "quorum";
    default: return "off";
    }
}

const char *watchdog_mode_to_string(WatchdogMode m) {
    switch (m) {
    case WATCHDOG_AUTOMATIC: return "automatic";
    case WATCHDOG_REQUIRED: return "required";
    default: return "off";
    }
}

/* ------------------------------------------------------------------------------------------ */
/* from YAML                                                                                   */

const char *cfg_describe(const YNode *n) {
    switch (n->type) {
    case Y_NULL: return "null";
    case Y_BOOL: return "a boolean";
    case Y_INT: return "an integer";
    case Y_FLOAT: return "a float";
    case Y_STR: return "a string";
    case Y_MAP: return "a mapping";
    case Y_SEQ: return "a list";
    }
    return "a value";
}

/* Patroni's parse_bool: on/off, true/false, yes/no, 1/0, any case. */
static int bool_from_node(const YNode *n, bool *ret) {
    if (n->type == Y_BOOL) {
        *ret = n->b;
        return 0;
    }
    if (n->type == Y_INT && (n->i == 0 || n->i == 1)) {
        *ret = n->i == 1;
        return 0;
    }
    if (n->type == Y_STR) {
        static const char *const t[] = {"on", "true", "yes", "1", NULL};
        static const char *const f[] = {"off", "false", "no", "0", NULL};
        for (int i = 0; t[i]; i++)
            if (strcasecmp(n->text, t[i]) == 0) {
                *ret = true;
                return 0;
            }
        for (int i = 0; f[i]; i++)
            if (strcasecmp(n->text, f[i]) == 0) {
                *ret = false;
                return 0;
            }
    }
    return -EINVAL;
}

static int int_from_node(const YNode *n, long long *ret) {
    if (n->type == Y_INT) {
        *ret = n->i;
        return 0;
    }
    if (n->type == Y_STR) {
        _cleanup_free_ char *t = str_trim(xstrdup(n->text));
        return parse_ll(t, ret);
    }
    /* a whole float within long long's range (converting one outside it is undefined behaviour) */
    if (n->type == Y_FLOAT && n->d >= -9223372036854775808.0 && n->d < 9223372036854775808.0 &&
        n->d == (double)(long long)n->d) {
        *ret = (long long)n->d;
        return 0;
    }
    return -EINVAL;
}

/* "30min", "2h", "90s", "1d", "500ms" or a plain number of seconds. */
static int duration_from_node(const YNode *n, long long *ret) {
    if (int_from_node(n, ret) == 0)
        return 0;
    if (n->type != Y_STR)
        return -EINVAL;
    _cleanup_free_ char *t = str_trim(xstrdup(n->text));
    char *end;
    errno = 0;
    long long v = strtoll(t, &end, 10);
    if (end == t || errno)
        return -EINVAL;
    while (*end == ' ')
        end++;
    static const struct {
        const char *unit;
        long long num, den;
    } units[] = {{"ms", 1, 1000}, {"s", 1, 1}, {"min", 60, 1}, {"h", 3600, 1}, {"d", 86400, 1}};
    for (size_t i = 0; i < ELEMENTSOF(units); i++)
        if (strcmp(end, units[i].unit) == 0) {
            long long scaled;
            if (__builtin_mul_overflow(v, units[i].num, &scaled))
                return -ERANGE;
            *ret = scaled / units[i].den;
            return 0;
        }
    return -EINVAL;
}

/* A scalar rendered as text: the source text for plain scalars (so `password: 0123` stays 0123). */
static char *str_from_node(const YNode *n) {
    if (!ynode_is_scalar(n) || n->type == Y_NULL)
        return NULL;
    if (n->type == Y_STR)
        return xstrdup(n->text);
    return xstrdup(n->text ? n->text : "");
}

void cfg_free_value(const CfgEntry *e, void *base) {
    if (e->offset == NO_OFFSET)
        return;
    void *p = (char *)base + e->offset;
    switch (e->type) {
    case CT_STR:
    case CT_ENUM:
        if (e->flags & CF_INDEX)
            break;
        free(*(char **)p);
        *(char **)p = NULL;
        break;
    case CT_STRLIST: strlist_clear((StrList *)p); break;
    case CT_MAP:
    case CT_LIST:
    case CT_ANY: *(YNode **)p = ynode_free(*(YNode **)p); break;
    default: break;
    }
}

bool cfg_set_value(const CfgEntry *e, void *base, const YNode *n, const char *src, CfgDiag *diag) {
    /* a section has no value (NO_OFFSET): base + NO_OFFSET would be pointer arithmetic out of bounds */
    void *p = e->offset == NO_OFFSET ? NULL : (char *)base + e->offset;
    const char *path = e->path;
    switch (e->type) {
    case CT_SECTION:
        if (n->type != Y_MAP) {
            cfg_diag_error(diag, n, src, path, "expected a mapping, got %s", cfg_describe(n));
            return false;
        }
        return true;
    case CT_STR: {
        char *s = str_from_node(n);
        if (!s) {
            cfg_diag_error(diag, n, src, path, "expected a string, got %s", cfg_describe(n));
            return false;
        }
        if (e->flags & CF_HOSTPORT) {
            _cleanup_free_ char *host = NULL;
            int port;
            if (parse_host_port(s, -1, &host, &port) < 0) {
                cfg_diag_error(diag, n, src, path, "'%s' is not a valid host:port", s);
                free(s);
                return false;
            }
        }
        if (e->flags & CF_LISTEN) {
            StrList addrs = {0};
            int port;
            int r = parse_listen(s, &addrs, &port);
            strlist_clear(&addrs);
            if (r < 0) {
                cfg_diag_error(diag, n, src, path, "'%s' is not a valid address[,address...]:port", s);
                free(s);
                return false;
            }
        }
        free(*(char **)p);
        *(char **)p = s;
        return true;
    }
    case CT_ENUM: {
        _cleanup_free_ char *s = str_from_node(n);
        for (int i = 0; s && e->choices[i]; i++)
            if (strcasecmp(s, e->choices[i]) == 0) {
                if (e->flags & CF_INDEX) {
                    *(int *)p = i;
                } else {
                    free(*(char **)p);
                    *(char **)p = xstrdup(e->choices[i]);
                }
                return true;
            }
        StrBuf b;
        sb_init(&b);
        for (int i = 0; e->choices[i]; i++)
            sb_addf(&b, "%s%s", i ? ", " : "", e->choices[i]);
        cfg_diag_error(diag, n, src, path, "'%s' is not one of: %s", s ? s : cfg_describe(n), b.s);
        sb_free(&b);
        return false;
    }
    case CT_INT:
    case CT_DURATION: {
        long long v;
        int r = e->type == CT_INT ? int_from_node(n, &v) : duration_from_node(n, &v);
        if (r < 0) {
            _cleanup_free_ char *s = ynode_scalar_string(n);
            if (r == -ERANGE)
                cfg_diag_error(diag, n, src, path, "'%s' is out of range", s);
            else if (s)
                cfg_diag_error(diag, n, src, path, "expected %s, got '%s'",
                               e->type == CT_INT ? "an integer" : "a duration (e.g. 1800, 30min, 2h)", s);
            else
                cfg_diag_error(diag, n, src, path, "expected %s, got %s",
                               e->type == CT_INT ? "an integer" : "a duration", cfg_describe(n));
            return false;
        }
        if (e->min <= e->max && (v < e->min || v > e->max)) {
            cfg_diag_error(diag, n, src, path, "%lld is out of range (%lld..%lld)", v, e->min, e->max);
            return false;
        }
        *(long long *)p = v;
        return true;
    }
    case CT_BOOL: {
        bool v;
        if (bool_from_node(n, &v) < 0) {
            _cleanup_free_ char *s = ynode_scalar_string(n);
            if (s)
                cfg_diag_error(diag, n, src, path, "expected a boolean (true/false, on/off, yes/no), got '%s'", s);
            else
                cfg_diag_error(diag, n, src, path, "expected a boolean, got %s", cfg_describe(n));
            return false;
        }
        *(bool *)p = v;
        return true;
    }
    case CT_SYNCMODE: {
        bool v;
        if (bool_from_node(n, &v) == 0) {
            *(int *)p = v ? SYNC_ON : SYNC_OFF;
            return true;
        }
        if (n->type == Y_STR && strcasecmp(n->text, "quorum") == 0) {
            *(int *)p = SYNC_QUORUM;
            return true;
        }
        _cleanup_free_ char *s = ynode_scalar_string(n);
        cfg_diag_error(diag, n, src, path, "expected on, off or quorum, got '%s'", s ? s : cfg_describe(n));
        return false;
    }
    case CT_WATCHDOG: {
        if (n->type == Y_BOOL) {
            /* YAML `off` is false; Patroni treats `true` like any other unexpected value */
            *(int *)p = n->b ? WATCHDOG_AUTOMATIC : WATCHDOG_OFF;
            return true;
        }
        _cleanup_free_ char *s = str_from_node(n);
        static const struct {
            const char *name;
            WatchdogMode m;
        } modes[] = {{"off", WATCHDOG_OFF},         {"disable", WATCHDOG_OFF},
                     {"disabled", WATCHDOG_OFF},    {"automatic", WATCHDOG_AUTOMATIC},
                     {"auto", WATCHDOG_AUTOMATIC},  {"required", WATCHDOG_REQUIRED},
                     {"require", WATCHDOG_REQUIRED}};
        for (size_t i = 0; s && i < ELEMENTSOF(modes); i++)
            if (strcasecmp(s, modes[i].name) == 0) {
                *(int *)p = modes[i].m;
                return true;
            }
        cfg_diag_error(diag, n, src, path, "'%s' is not one of: off, automatic, required", s ? s : cfg_describe(n));
        return false;
    }
    case CT_STRLIST: {
        StrList l = {0};
        if (n->type == Y_SEQ) {
            for (size_t i = 0; i < n->n; i++) {
                _cleanup_free_ char *s = str_from_node(n->items[i]);
                if (!s) {
                    cfg_diag_error(diag, n->items[i], src, path, "list item %zu: expected a string, got %s", i,
                                   cfg_describe(n->items[i]));
                    strlist_clear(&l);
                    return false;
                }
                strlist_add(&l, str_trim(s));
            }
        } else if (ynode_is_scalar(n)) {
            _cleanup_free_ char *s = str_from_node(n);
            char *save = NULL;
            for (char *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
                if (*str_trim(tok))
                    strlist_add(&l, tok);
        } else {
            cfg_diag_error(diag, n, src, path, "expected a list or a comma-separated string, got %s", cfg_describe(n));
            return false;
        }
        strlist_clear((StrList *)p);
        *(StrList *)p = l;
        return true;
    }
    case CT_MAP:
    case CT_LIST:
    case CT_ANY:
        if (e->type == CT_MAP && n->type != Y_MAP) {
            cfg_diag_error(diag, n, src, path, "expected a mapping, got %s", cfg_describe(n));
            return false;
        }
        if (e->type == CT_LIST && n->type != Y_SEQ) {
            cfg_diag_error(diag, n, src, path, "expected a list, got %s", cfg_describe(n));
            return false;
        }
        ynode_free(*(YNode **)p);
        *(YNode **)p = ynode_clone(n);
        return true;
    }
    return false;
}

/* ------------------------------------------------------------------------------------------ */
/* to text                                                                                     */

char *cfg_value_string(const CfgEntry *e, const void *base, bool present, bool show_secrets) {
    if (e->offset == NO_OFFSET)
        return NULL;
    /* A number or flag neither given nor defaulted has no value, whatever its zeroed field holds:
     * `log.mode: 0` is not "no mode", and `citus.group: 0` would enable Citus. (Pointers are NULL.) */
    bool by_value = e->type == CT_INT || e->type == CT_DURATION || e->type == CT_BOOL || e->type == CT_SYNCMODE ||
                    e->type == CT_WATCHDOG || (e->type == CT_ENUM && (e->flags & CF_INDEX));
    if (by_value && !present && !e->def)
        return NULL;
    const void *p = (const char *)base + e->offset;
    switch (e->type) {
    case CT_STR: {
        const char *s = *(char *const *)p;
        if (!s)
            return NULL;
        return (e->flags & CF_SECRET) && !show_secrets ? xstrdup(CFG_SECRET_MASK) : xstrdup(s);
    }
    case CT_ENUM:
        if (e->flags & CF_INDEX)
            return xstrdup(e->choices[*(const int *)p]);
        return xstrdup(*(char *const *)p);
    case CT_INT:
    case CT_DURATION: return xasprintf("%lld", *(const long long *)p);
    case CT_BOOL: return xstrdup(*(const bool *)p ? "true" : "false");
    case CT_SYNCMODE: return xstrdup(sync_mode_to_string(*(const int *)p));
    case CT_WATCHDOG: return xstrdup(watchdog_mode_to_string(*(const int *)p));
    case CT_STRLIST: {
        const StrList *l = p;
        if (l->n == 0)
            return NULL;
        _cleanup_free_ char *j = strlist_join(l, ", ");
        return xasprintf("[%s]", j);
    }
    case CT_MAP:
    case CT_LIST:
    case CT_ANY: {
        const YNode *n = *(YNode *const *)p;
        if (!n)
            return NULL;
        cJSON *j = ynode_to_json(n);
        char *s = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        return s;
    }
    case CT_SECTION: return NULL;
    }
    return NULL;
}
