/* Pure helpers of pgha-ctl: the unified diff edit-config shows, scheduled timestamps, edit-config's
 * --set paths, --dcs-url, and Python's equality of configuration values. */
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "agent/commands.h"
#include "common/json.h"
#include "common/yamltree.h"
#include "ctl/ctl_int.h"

char *ctl_read_stream(FILE *f) {
    StrBuf b;
    sb_init(&b);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sb_addn(&b, buf, n);
    return sb_steal(&b);
}

/* ---- unified diff (difflib.unified_diff with n=3) ---- */

typedef struct Opcode {
    char tag; /* 'e'qual, 'r'eplace, 'd'elete, 'i'nsert */
    size_t i1, i2, j1, j2;
} Opcode;

static void split_text(const char *s, StrList *ret) {
    /* difflib input: string.rstrip('\n').split('\n') */
    size_t len = strlen(s);
    while (len && s[len - 1] == '\n')
        len--;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++)
        if (i == len || s[i] == '\n') {
            char *line = xstrndup(s + start, i - start);
            strlist_add(ret, line);
            free(line);
            start = i + 1;
        }
}

/* The change between a[ci..i) and b[cj..j): replaced, deleted or inserted lines. */
static char change_tag(size_t ci, size_t i, size_t cj, size_t j) {
    if (ci < i && cj < j)
        return 'r';
    return ci < i ? 'd' : 'i';
}

/* Opcodes from a longest common subsequence of the lines. */
static Opcode *diff_opcodes(const StrList *a, const StrList *b, size_t *ret_n) {
    size_t n = a->n, m = b->n;
    size_t *lcs = xcalloc((n + 1) * (m + 1), sizeof(size_t));
#define L(i, j) lcs[(i) * (m + 1) + (j)]
    for (size_t i = n; i-- > 0;)
        for (size_t j = m; j-- > 0;)
            L(i, j) = streq(a->v[i], b->v[j]) ? L(i + 1, j + 1) + 1
                                              : (L(i + 1, j) > L(i, j + 1) ? L(i + 1, j) : L(i, j + 1));
    Opcode *ops = xcalloc(n + m + 2, sizeof(Opcode));
    size_t k = 0, i = 0, j = 0, ci = 0, cj = 0;
    for (;;) {
        bool end = i == n || j == m;
        if (!end && streq(a->v[i], b->v[j])) {
            if (ci < i || cj < j)
                ops[k++] = (Opcode){change_tag(ci, i, cj, j), ci, i, cj, j};
            size_t si = i, sj = j;
            while (i < n && j < m && streq(a->v[i], b->v[j])) {
                i++;
                j++;
            }
            ops[k++] = (Opcode){'e', si, i, sj, j};
            ci = i;
            cj = j;
        } else if (end) {
            i = n;
            j = m;
            if (ci < i || cj < j)
                ops[k++] = (Opcode){change_tag(ci, i, cj, j), ci, i, cj, j};
            break;
        } else if (L(i + 1, j) >= L(i, j + 1)) {
            i++;
        } else {
            j++;
        }
    }
#undef L
    free(lcs);
    *ret_n = k;
    return ops;
}

static void add_range(StrBuf *b, size_t start, size_t stop) {
    size_t beginning = start + 1, length = stop - start;
    if (length == 1)
        sb_addf(b, "%zu", beginning);
    else
        sb_addf(b, "%zu,%zu", length ? beginning : beginning - 1, length);
}

static void add_group(StrBuf *b, const Opcode *g, size_t n, const StrList *a, const StrList *bl) {
    sb_add(b, "@@ -");
    add_range(b, g[0].i1, g[n - 1].i2);
    sb_add(b, " +");
    add_range(b, g[0].j1, g[n - 1].j2);
    sb_add(b, " @@\n");
    for (size_t k = 0; k < n; k++) {
        if (g[k].tag == 'e')
            for (size_t i = g[k].i1; i < g[k].i2; i++)
                sb_addf(b, " %s\n", a->v[i]);
        if (g[k].tag == 'r' || g[k].tag == 'd')
            for (size_t i = g[k].i1; i < g[k].i2; i++)
                sb_addf(b, "-%s\n", a->v[i]);
        if (g[k].tag == 'r' || g[k].tag == 'i')
            for (size_t j = g[k].j1; j < g[k].j2; j++)
                sb_addf(b, "+%s\n", bl->v[j]);
    }
}

char *unified_diff(const char *before, const char *after) {
    StrList a = {0}, bl = {0};
    split_text(before, &a);
    split_text(after, &bl);
    size_t n_ops;
    Opcode *ops = diff_opcodes(&a, &bl, &n_ops);
    const size_t ctx = 3;
    /* get_grouped_opcodes(): trim the leading and trailing equal runs to the context, split at
     * equal runs longer than twice the context */
    if (n_ops && ops[0].tag == 'e') {
        ops[0].i1 = ops[0].i2 > ctx && ops[0].i2 - ctx > ops[0].i1 ? ops[0].i2 - ctx : ops[0].i1;
        ops[0].j1 = ops[0].j2 > ctx && ops[0].j2 - ctx > ops[0].j1 ? ops[0].j2 - ctx : ops[0].j1;
    }
    if (n_ops && ops[n_ops - 1].tag == 'e') {
        Opcode *o = &ops[n_ops - 1];
        o->i2 = o->i1 + ctx < o->i2 ? o->i1 + ctx : o->i2;
        o->j2 = o->j1 + ctx < o->j2 ? o->j1 + ctx : o->j2;
    }
    StrBuf b;
    sb_init(&b);
    Opcode *group = xcalloc(n_ops + 2, sizeof(Opcode));
    size_t gn = 0;
    bool changed = false;
    for (size_t k = 0; k < n_ops; k++) {
        Opcode o = ops[k];
        changed |= o.tag != 'e';
        if (o.tag == 'e' && o.i2 - o.i1 > 2 * ctx) {
            group[gn++] = (Opcode){'e', o.i1, o.i1 + ctx, o.j1, o.j1 + ctx};
            if (!(gn == 1 && group[0].tag == 'e'))
                add_group(&b, group, gn, &a, &bl);
            gn = 0;
            o.i1 = o.i2 - ctx;
            o.j1 = o.j2 - ctx;
        }
        group[gn++] = o;
    }
    if (gn && !(gn == 1 && group[0].tag == 'e'))
        add_group(&b, group, gn, &a, &bl);
    free(group);
    free(ops);
    strlist_clear(&a);
    strlist_clear(&bl);
    if (!changed) {
        sb_free(&b);
        return NULL;
    }
    char *hunks = sb_steal(&b);
    char *out = xasprintf("--- \n+++ \n%s", hunks);
    free(hunks);
    return out;
}

/* ---- scheduled timestamps ---- */

int ctl_parse_scheduled(const char *s, char **ret_iso, char **ret_error) {
    *ret_iso = NULL;
    if (!s || !*s || streq(s, "now"))
        return 0;
    char *iso = failover_scheduled_iso(s);
    if (!iso) {
        /* without a timezone: local time (dateutil's tzlocal()) */
        char *utc = xasprintf("%sZ", s);
        char *probe = failover_scheduled_iso(utc);
        free(utc);
        if (probe) {
            struct tm tm;
            time_t now = time(NULL);
            localtime_r(&now, &tm);
            long off = tm.tm_gmtoff, a = off < 0 ? -off : off;
            char *local = xasprintf("%s%c%02ld:%02ld", s, off < 0 ? '-' : '+', a / 3600, a % 3600 / 60);
            iso = failover_scheduled_iso(local);
            free(local);
            free(probe);
        }
    }
    if (!iso) {
        *ret_error = xasprintf(
            "Unable to parse scheduled timestamp (%s). It should be in an unambiguous format (e.g. ISO 8601)", s);
        return -1;
    }
    *ret_iso = iso;
    return 0;
}

/* ---- edit-config --set ---- */

cJSON *ctl_yaml_to_json(const char *text, const char *name, char **ret_error) {
    char *err = NULL;
    YNode *n = yaml_parse_string(text, strlen(text), name, &err);
    if (!n && err) {
        *ret_error = err;
        return NULL;
    }
    free(err);
    cJSON *j = ynode_to_json(n); /* an empty document is null */
    ynode_free(n);
    return j;
}

/* patronictl's set_path_value(): value NULL deletes; parents left empty by a deletion go too. */
static void set_path(cJSON *config, StrList *path, size_t at, cJSON *value, bool in_parameters) {
    char *key = NULL;
    bool last = at + 1 == path->n || in_parameters;
    if (in_parameters) {
        /* GUC names may contain dots: the rest of the path is one key */
        StrList rest = {0};
        for (size_t i = at; i < path->n; i++)
            strlist_add(&rest, path->v[i]);
        key = strlist_join(&rest, ".");
        strlist_clear(&rest);
    } else {
        key = xstrdup(path->v[at]);
    }
    if (last) {
        cJSON_DeleteItemFromObjectCaseSensitive(config, key);
        if (value)
            cJSON_AddItemToObject(config, key, value);
    } else {
        cJSON *sub = cJSON_GetObjectItemCaseSensitive(config, key);
        if (!cJSON_IsObject(sub)) {
            cJSON_DeleteItemFromObjectCaseSensitive(config, key);
            sub = cJSON_AddObjectToObject(config, key);
        }
        bool params = at == 1 && streq(path->v[0], "postgresql") && streq(key, "parameters");
        set_path(sub, path, at + 1, value, params);
        if (cJSON_GetArraySize(sub) == 0)
            cJSON_DeleteItemFromObjectCaseSensitive(config, key);
    }
    free(key);
}

int ctl_apply_set(cJSON *config, const char *pair, char **ret_error) {
    const char *eq = pair ? strchr(pair, '=') : NULL;
    if (!pair || !*pair || !eq) {
        *ret_error = xasprintf("Invalid parameter setting %s", pair ? pair : "None");
        return -1;
    }
    char *keypath = xstrndup(pair, (size_t)(eq - pair));
    str_trim(keypath);
    cJSON *value = ctl_yaml_to_json(eq + 1, "--set", ret_error);
    if (!value) {
        free(keypath);
        return -1;
    }
    if (cJSON_IsNull(value)) {
        cJSON_Delete(value);
        value = NULL;
    }
    StrList path = {0};
    const char *p = keypath;
    for (;;) {
        const char *dot = strchr(p, '.');
        char *part = dot ? xstrndup(p, (size_t)(dot - p)) : xstrdup(p);
        strlist_add(&path, part);
        free(part);
        if (!dot)
            break;
        p = dot + 1;
    }
    set_path(config, &path, 0, value, false);
    strlist_clear(&path);
    free(keypath);
    return 0;
}

/* ---- --dcs-url ---- */

int ctl_parse_dcs_url(const char *url, char **ret_hostport, char **ret_namespace, char **ret_error) {
    *ret_hostport = *ret_namespace = NULL;
    static const struct {
        const char *scheme;
        int port;
    } defaults[] = {{"zookeeper", 2181}, {"exhibitor", 8181}, {"consul", 8500}, {"etcd", 2379}, {"etcd3", 2379}};
    const char *sep = strstr(url, "//");
    char *scheme = NULL;
    const char *rest = url;
    if (sep) {
        /* urlparse: a scheme is what precedes "://" */
        scheme = sep > url && sep[-1] == ':' ? xstrndup(url, (size_t)(sep - 1 - url)) : xstrdup("");
        rest = sep + 2;
    } else {
        scheme = xstrdup("");
    }
    size_t nl = strcspn(rest, "/?#");
    char *netloc = xstrndup(rest, nl);
    const char *path = rest + nl;
    char *host = NULL;
    long port = 0;
    char *at = strrchr(netloc, '@');
    char *hp = at ? at + 1 : netloc;
    char *colon = hp[0] == '[' ? strstr(hp, "]:") : strrchr(hp, ':');
    if (colon) {
        const char *ps = hp[0] == '[' ? colon + 2 : colon + 1;
        char *end;
        port = strtol(ps, &end, 10);
        if (*ps && (*end || port < 0 || port > 65535)) {
            *ret_error = xasprintf("Invalid --dcs-url %s: the port is not a number", url);
            free(scheme);
            free(netloc);
            return -1;
        }
        *(hp[0] == '[' ? colon + 1 : colon) = '\0';
    }
    host = xstrdup(*hp ? hp : "localhost");
    int rc = 0;
    if (!*scheme) {
        free(scheme);
        scheme = xstrdup("etcd");
        for (size_t i = 0; i < ELEMENTSOF(defaults); i++)
            if (port == defaults[i].port) {
                free(scheme);
                scheme = xstrdup(defaults[i].scheme);
                break;
            }
    }
    bool known = false;
    for (size_t i = 0; i < ELEMENTSOF(defaults); i++)
        known |= streq(scheme, defaults[i].scheme);
    if (!known) {
        *ret_error = xasprintf("Unknown dcs scheme: %s", scheme);
        rc = -1;
    } else if (!streq(scheme, "etcd") && !streq(scheme, "etcd3")) {
        *ret_error = xasprintf("pgha-ctl speaks etcd v3 only: the %s scheme of --dcs-url is not supported", scheme);
        rc = -1;
    } else {
        *ret_hostport = xasprintf("%s:%ld", host, port ? port : 2379);
        char *ns = xstrdup(path);
        str_trim(ns);
        if (*ns && !streq(ns, "/"))
            *ret_namespace = ns;
        else
            free(ns);
    }
    free(host);
    free(scheme);
    free(netloc);
    return rc;
}

/* ---- Python's == ---- */

static bool number_of(const cJSON *v, double *ret) {
    if (cJSON_IsNumber(v)) {
        *ret = v->valuedouble;
        return true;
    }
    if (cJSON_IsRaw(v)) {
        *ret = strtod(v->valuestring, NULL);
        return true;
    }
    return false;
}

bool ctl_json_equal(const cJSON *a, const cJSON *b) {
    double x, y;
    long long lx, ly;
    if (number_of(a, &x) && number_of(b, &y)) {
        if (json_item_ll(a, &lx) && json_item_ll(b, &ly) && x == floor(x) && y == floor(y))
            return lx == ly;
        return x == y;
    }
    if (cJSON_IsObject(a) && cJSON_IsObject(b)) {
        if (cJSON_GetArraySize(a) != cJSON_GetArraySize(b))
            return false;
        const cJSON *e;
        cJSON_ArrayForEach(e, a) {
            const cJSON *o = cJSON_GetObjectItemCaseSensitive(b, e->string);
            if (!o || !ctl_json_equal(e, o))
                return false;
        }
        return true;
    }
    if (cJSON_IsArray(a) && cJSON_IsArray(b)) {
        if (cJSON_GetArraySize(a) != cJSON_GetArraySize(b))
            return false;
        for (const cJSON *p = a->child, *q = b->child; p && q; p = p->next, q = q->next)
            if (!ctl_json_equal(p, q))
                return false;
        return true;
    }
    if (cJSON_IsString(a) && cJSON_IsString(b))
        return strcmp(a->valuestring, b->valuestring) == 0;
    if (cJSON_IsBool(a) && cJSON_IsBool(b))
        return cJSON_IsTrue(a) == cJSON_IsTrue(b);
    return cJSON_IsNull(a) && cJSON_IsNull(b);
}
