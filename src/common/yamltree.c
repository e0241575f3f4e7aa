#include "common/yamltree.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "common/util.h"

const char *ytype_name(YType t) {
    switch (t) {
    case Y_NULL: return "null";
    case Y_BOOL: return "boolean";
    case Y_INT: return "integer";
    case Y_FLOAT: return "float";
    case Y_STR: return "string";
    case Y_MAP: return "mapping";
    case Y_SEQ: return "list";
    }
    return "?";
}

/* ---- PyYAML's YAML 1.1 implicit resolvers ---- */

static regex_t re_bool, re_int, re_float, re_null;
static pthread_once_t re_once = PTHREAD_ONCE_INIT;

static void compile_resolvers(void) {
    int r = 0;
    r |= regcomp(&re_bool, "^(yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$",
                 REG_EXTENDED | REG_NOSUB);
    r |= regcomp(&re_int,
                 "^([-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|"
                 "[-+]?[1-9][0-9_]*(:[0-5]?[0-9])+)$",
                 REG_EXTENDED | REG_NOSUB);
    r |= regcomp(&re_float,
                 "^([-+]?([0-9][0-9_]*)\\.[0-9_]*([eE][-+][0-9]+)?|\\.[0-9_]+([eE][-+][0-9]+)?|"
                 "[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\\.[0-9_]*|[-+]?\\.(inf|Inf|INF)|\\.(nan|NaN|NAN))$",
                 REG_EXTENDED | REG_NOSUB);
    r |= regcomp(&re_null, "^(~|null|Null|NULL)$", REG_EXTENDED | REG_NOSUB);
    if (r != 0)
        abort();
}

static char *strip_underscores(const char *s) {
    char *r = xmalloc(strlen(s) + 1), *o = r;
    for (; *s; s++)
        if (*s != '_')
            *o++ = *s;
    *o = '\0';
    return r;
}

/* int() of PyYAML's construct_yaml_int. Returns false on overflow. */
static bool construct_int(const char *text, long long *ret) {
    _cleanup_free_ char *v = strip_underscores(text);
    int sign = 1;
    char *p = v;
    if (*p == '-' || *p == '+') {
        if (*p == '-')
            sign = -1;
        p++;
    }
    errno = 0;
    unsigned long long u = 0;
    if (strcmp(p, "0") == 0) {
        *ret = 0;
        return true;
    } else if (strncmp(p, "0b", 2) == 0) {
        u = strtoull(p + 2, NULL, 2);
    } else if (strncmp(p, "0x", 2) == 0) {
        u = strtoull(p + 2, NULL, 16);
    } else if (p[0] == '0') {
        u = strtoull(p + 1, NULL, 8);
    } else if (strchr(p, ':')) {
        /* sexagesimal: 1:30 == 90 */
        unsigned long long base = 1, total = 0;
        char *parts[64], *save = NULL;
        int n = 0;
        for (char *tok = strtok_r(p, ":", &save); tok && n < 64; tok = strtok_r(NULL, ":", &save))
            parts[n++] = tok;
        for (int i = n - 1; i >= 0; i--) {
            total += strtoull(parts[i], NULL, 10) * base;
            base *= 60;
        }
        u = total;
    } else {
        u = strtoull(p, NULL, 10);
    }
    if (errno == ERANGE || u > (unsigned long long)LLONG_MAX + (sign < 0 ? 1ULL : 0ULL))
        return false;
    *ret = sign < 0 ? (long long)(0ULL - u) : (long long)u;
    return true;
}

static double construct_float(const char *text) {
    _cleanup_free_ char *v = strip_underscores(text);
    char *p = v;
    double sign = 1;
    if (*p == '-' || *p == '+') {
        if (*p == '-')
            sign = -1;
        p++;
    }
    if (strcasecmp(p, ".inf") == 0)
        return sign * INFINITY;
    if (strcasecmp(p, ".nan") == 0)
        return NAN;
    if (strchr(p, ':')) {
        double base = 1, total = 0;
        char *parts[64], *save = NULL;
        int n = 0;
        for (char *tok = strtok_r(p, ":", &save); tok && n < 64; tok = strtok_r(NULL, ":", &save))
            parts[n++] = tok;
        for (int i = n - 1; i >= 0; i--) {
            total += strtod(parts[i], NULL) * base;
            base *= 60;
        }
        return sign * total;
    }
    return sign * strtod(p, NULL);
}

YNode *ynode_new(YType type, const char *file, int line) {
    YNode *n = xcalloc(1, sizeof *n);
    n->type = type;
    n->file = xstrdup(file ? file : "");
    n->line = line;
    return n;
}

YNode *ynode_new_str(const char *s, const char *file, int line) {
    YNode *n = ynode_new(Y_STR, file, line);
    n->text = xstrdup(s);
    n->quoted = true;
    return n;
}

YNode *ynode_new_int(long long v, const char *file, int line) {
    YNode *n = ynode_new(Y_INT, file, line);
    n->i = v;
    n->text = xasprintf("%lld", v);
    return n;
}

YNode *ynode_new_bool(bool v, const char *file, int line) {
    YNode *n = ynode_new(Y_BOOL, file, line);
    n->b = v;
    n->text = xstrdup(v ? "true" : "false");
    return n;
}

YNode *ynode_new_scalar(const char *text, bool quoted, const char *file, int line) {
    pthread_once(&re_once, compile_resolvers);
    YNode *n = ynode_new(Y_STR, file, line);
    n->text = xstrdup(text);
    n->quoted = quoted;
    if (quoted)
        return n;
    if (text[0] == '\0' || regexec(&re_null, text, 0, NULL, 0) == 0) {
        n->type = Y_NULL;
    } else if (regexec(&re_bool, text, 0, NULL, 0) == 0) {
        n->type = Y_BOOL;
        n->b = strchr("yYtT", text[0]) != NULL ||
               ((text[0] == 'o' || text[0] == 'O') && (text[1] == 'n' || text[1] == 'N'));
    } else if (regexec(&re_int, text, 0, NULL, 0) == 0) {
        long long v;
        if (construct_int(text, &v)) {
            n->type = Y_INT;
            n->i = v;
        } else {
            /* Python would give a big integer; keep the digits, as a float for comparisons */
            n->type = Y_FLOAT;
            n->d = strtod(text, NULL);
        }
    } else if (regexec(&re_float, text, 0, NULL, 0) == 0) {
        n->type = Y_FLOAT;
        n->d = construct_float(text);
    }
    return n;
}

YNode *ynode_free(YNode *n) {
    if (!n)
        return NULL;
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys)
            free(n->keys[i]);
        ynode_free(n->items[i]);
    }
    free(n->keys);
    free(n->items);
    free(n->text);
    free(n->file);
    free(n);
    return NULL;
}

YNode *ynode_clone(const YNode *src) {
    if (!src)
        return NULL;
    YNode *n = ynode_new(src->type, src->file, src->line);
    n->text = xstrdup(src->text);
    n->quoted = src->quoted;
    n->b = src->b;
    n->i = src->i;
    n->d = src->d;
    n->n = src->n;
    if (src->n) {
        n->items = xcalloc(src->n, sizeof(YNode *));
        if (src->keys)
            n->keys = xcalloc(src->n, sizeof(char *));
        for (size_t i = 0; i < src->n; i++) {
            n->items[i] = ynode_clone(src->items[i]);
            if (src->keys)
                n->keys[i] = xstrdup(src->keys[i]);
        }
    }
    return n;
}

YNode *ynode_get(const YNode *map, const char *key) {
    if (!map || map->type != Y_MAP)
        return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0)
            return map->items[i];
    return NULL;
}

YNode *ynode_get_path(const YNode *root, const char *dotted) {
    _cleanup_free_ char *copy = xstrdup(dotted);
    const YNode *cur = root;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ".", &save); tok; tok = strtok_r(NULL, ".", &save)) {
        cur = ynode_get(cur, tok);
        if (!cur)
            return NULL;
    }
    return (YNode *)cur;
}

void ynode_set(YNode *map, const char *key, YNode *val) {
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0) {
            ynode_free(map->items[i]);
            map->items[i] = val;
            return;
        }
    map->keys = xrealloc(map->keys, (map->n + 1) * sizeof(char *));
    map->items = xrealloc(map->items, (map->n + 1) * sizeof(YNode *));
    map->keys[map->n] = xstrdup(key);
    map->items[map->n] = val;
    map->n++;
}

void ynode_append(YNode *seq, YNode *val) {
    seq->items = xrealloc(seq->items, (seq->n + 1) * sizeof(YNode *));
    seq->items[seq->n++] = val;
}

bool ynode_remove(YNode *map, const char *key) {
    if (!map || map->type != Y_MAP)
        return false;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0) {
            free(map->keys[i]);
            ynode_free(map->items[i]);
            memmove(&map->keys[i], &map->keys[i + 1], (map->n - i - 1) * sizeof(char *));
            memmove(&map->items[i], &map->items[i + 1], (map->n - i - 1) * sizeof(YNode *));
            map->n--;
            return true;
        }
    return false;
}

void ynode_merge(YNode *dst, const YNode *src) {
    if (!dst || !src || dst->type != Y_MAP || src->type != Y_MAP)
        return;
    for (size_t i = 0; i < src->n; i++) {
        const YNode *sv = src->items[i];
        YNode *dv = ynode_get(dst, src->keys[i]);
        if (sv->type == Y_NULL)
            ynode_remove(dst, src->keys[i]);
        else if (dv && dv->type == Y_MAP && sv->type == Y_MAP)
            ynode_merge(dv, sv);
        else
            ynode_set(dst, src->keys[i], ynode_clone(sv));
    }
}

bool ynode_is_scalar(const YNode *n) { return n && n->type != Y_MAP && n->type != Y_SEQ; }

bool ynode_truthy(const YNode *v) {
    if (!v)
        return false;
    switch (v->type) {
    case Y_NULL: return false;
    case Y_BOOL: return v->b;
    case Y_INT: return v->i != 0;
    case Y_FLOAT: return v->d != 0.0;
    case Y_STR: return v->text && v->text[0];
    default: return v->n > 0;
    }
}

void py_float_repr(double d, char *buf, size_t len) {
    if (isnan(d)) {
        snprintf(buf, len, "nan");
        return;
    }
    if (isinf(d)) {
        snprintf(buf, len, d < 0 ? "-inf" : "inf");
        return;
    }
    /* shortest precision that round-trips */
    char tmp[64];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    if (p > 17)
        p = 17;
    char *e = strchr(tmp, 'e');
    int exp10 = e ? (int)strtol(e + 1, NULL, 10) : 0;
    if (exp10 >= -4 && exp10 < 16) {
        int decimals = p - 1 - exp10;
        if (decimals < 0)
            decimals = 0;
        snprintf(buf, len, "%.*f", decimals, d);
        size_t used = strlen(buf);
        if (!strchr(buf, '.') && used < len)
            snprintf(buf + used, len - used, ".0");
    } else {
        /* Python: mantissa digits, 'e', sign, at least two exponent digits */
        char mant[40];
        snprintf(mant, sizeof mant, "%.*s", (int)(e - tmp), tmp);
        snprintf(buf, len, "%se%c%02d", mant, exp10 < 0 ? '-' : '+', abs(exp10));
    }
}

char *ynode_scalar_string(const YNode *n) {
    if (!n)
        return NULL;
    switch (n->type) {
    case Y_NULL: return xstrdup("None");
    case Y_BOOL: return xstrdup(n->b ? "True" : "False");
    case Y_INT: return xasprintf("%lld", n->i);
    case Y_FLOAT: {
        char buf[64];
        py_float_repr(n->d, buf, sizeof buf);
        return xstrdup(buf);
    }
    case Y_STR: return xstrdup(n->text);
    default: return NULL;
    }
}

bool ynode_equal(const YNode *a, const YNode *b) {
    if (!a || !b)
        return a == b;
    if (a->type != b->type || a->n != b->n)
        return false;
    switch (a->type) {
    case Y_NULL: return true;
    case Y_BOOL: return a->b == b->b;
    case Y_INT: return a->i == b->i;
    case Y_FLOAT: return a->d == b->d || (isnan(a->d) && isnan(b->d));
    case Y_STR: return strcmp(a->text, b->text) == 0;
    case Y_MAP:
        for (size_t i = 0; i < a->n; i++)
            if (!ynode_equal(a->items[i], ynode_get(b, a->keys[i])))
                return false;
        return true;
    case Y_SEQ:
        for (size_t i = 0; i < a->n; i++)
            if (!ynode_equal(a->items[i], b->items[i]))
                return false;
        return true;
    }
    return false;
}

cJSON *ynode_to_json(const YNode *n) {
    if (!n)
        return cJSON_CreateNull();
    char buf[64];
    switch (n->type) {
    case Y_NULL: return cJSON_CreateNull();
    case Y_BOOL: return cJSON_CreateBool(n->b);
    case Y_INT: snprintf(buf, sizeof buf, "%lld", n->i); return cJSON_CreateRaw(buf);
    case Y_FLOAT:
        if (!isfinite(n->d)) /* json.dumps writes Infinity/NaN, which no JSON parser reads */
            return cJSON_CreateNull();
        py_float_repr(n->d, buf, sizeof buf);
        return cJSON_CreateRaw(buf);
    case Y_STR: return cJSON_CreateString(n->text);
    case Y_MAP: {
        cJSON *o = cJSON_CreateObject();
        for (size_t i = 0; i < n->n; i++)
            cJSON_AddItemToObject(o, n->keys[i], ynode_to_json(n->items[i]));
        return o;
    }
    case Y_SEQ: {
        cJSON *a = cJSON_CreateArray();
        for (size_t i = 0; i < n->n; i++)
            cJSON_AddItemToArray(a, ynode_to_json(n->items[i]));
        return a;
    }
    }
    return cJSON_CreateNull();
}

YNode *ynode_from_json(const cJSON *j, const char *file) {
    if (!j || cJSON_IsNull(j))
        return ynode_new(Y_NULL, file, 0);
    if (cJSON_IsBool(j))
        return ynode_new_bool(cJSON_IsTrue(j), file, 0);
    if (cJSON_IsRaw(j))
        return ynode_new_scalar(j->valuestring, false, file, 0);
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) < 9.2e18)
            return ynode_new_int((long long)d, file, 0);
        YNode *n = ynode_new(Y_FLOAT, file, 0);
        char buf[64];
        py_float_repr(d, buf, sizeof buf);
        n->text = xstrdup(buf);
        n->d = d;
        return n;
    }
    if (cJSON_IsString(j))
        return ynode_new_str(j->valuestring, file, 0);
    if (cJSON_IsArray(j)) {
        YNode *s = ynode_new(Y_SEQ, file, 0);
        const cJSON *it;
        cJSON_ArrayForEach(it, j)
            ynode_append(s, ynode_from_json(it, file));
        return s;
    }
    YNode *m = ynode_new(Y_MAP, file, 0);
    const cJSON *it;
    cJSON_ArrayForEach(it, j)
        ynode_set(m, it->string ? it->string : "", ynode_from_json(it, file));
    return m;
}

/* ---- building the tree from libyaml events ---- */

typedef struct Anchor {
    char *name;
    YNode *node; /* a copy of the anchored node as it was when complete: the tree's own may be replaced
                    (a duplicate key) and freed before an alias refers to it */
} Anchor;

/* Aliases expand to copies: at most this many nodes in all, against documents that nest aliases to
 * grow exponentially ("billion laughs"). A configuration has hundreds. */
#define YAML_MAX_ALIAS_NODES 100000

typedef struct Builder {
    yaml_parser_t parser;
    const char *filename;
    Anchor *anchors;
    size_t n_anchors;
    size_t alias_nodes; /* nodes copied for aliases so far */
    char *error;
} Builder;

static void builder_error(Builder *b, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void builder_error(Builder *b, int line, const char *fmt, ...) {
    if (b->error)
        return;
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    b->error = xasprintf("%s:%d: %s", b->filename, line, msg);
}

static void remember_anchor(Builder *b, const yaml_char_t *anchor, YNode *node) {
    if (!anchor)
        return;
    b->anchors = xrealloc(b->anchors, (b->n_anchors + 1) * sizeof(Anchor));
    b->anchors[b->n_anchors++] = (Anchor){xstrdup((const char *)anchor), ynode_clone(node)};
}

static size_t ynode_count(const YNode *n) {
    size_t c = 1;
    for (size_t i = 0; i < n->n; i++)
        c += ynode_count(n->items[i]);
    return c;
}

static YNode *find_anchor(Builder *b, const char *name) {
    for (size_t i = b->n_anchors; i > 0; i--)
        if (strcmp(b->anchors[i - 1].name, name) == 0)
            return b->anchors[i - 1].node;
    return NULL;
}

static bool next_event(Builder *b, yaml_event_t *ev) {
    if (!yaml_parser_parse(&b->parser, ev)) {
        builder_error(b, (int)b->parser.problem_mark.line + 1, "invalid YAML: %s%s%s",
                      b->parser.problem ? b->parser.problem : "parse error", b->parser.context ? " " : "",
                      b->parser.context ? b->parser.context : "");
        return false;
    }
    return true;
}

static YNode *build_node(Builder *b, yaml_event_t *ev, int depth);

static YNode *scalar_from_event(Builder *b, yaml_event_t *ev) {
    const char *value = (const char *)ev->data.scalar.value;
    int line = (int)ev->start_mark.line + 1;
    const char *tag = (const char *)ev->data.scalar.tag;
    bool quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
    YNode *n;
    if (tag && strcmp(tag, "!") != 0) {
        if (strcmp(tag, YAML_STR_TAG) == 0)
            n = ynode_new_str(value, b->filename, line);
        else if (strcmp(tag, YAML_INT_TAG) == 0 || strcmp(tag, YAML_BOOL_TAG) == 0 ||
                 strcmp(tag, YAML_FLOAT_TAG) == 0 || strcmp(tag, YAML_NULL_TAG) == 0) {
            n = ynode_new_scalar(value, false, b->filename, line);
            const char *want = strcmp(tag, YAML_INT_TAG) == 0     ? "integer"
                               : strcmp(tag, YAML_BOOL_TAG) == 0  ? "boolean"
                               : strcmp(tag, YAML_FLOAT_TAG) == 0 ? "float"
                                                                  : "null";
            if (strcmp(ytype_name(n->type), want) != 0 && !(n->type == Y_INT && strcmp(want, "float") == 0)) {
                builder_error(b, line, "value '%s' tagged %s is not a valid %s", value, tag, want);
            } else if (n->type == Y_INT && strcmp(want, "float") == 0) {
                n->type = Y_FLOAT;
                n->d = (double)n->i;
            }
        } else {
            builder_error(b, line, "unsupported YAML tag %s", tag);
            n = ynode_new_str(value, b->filename, line);
        }
    } else {
        n = ynode_new_scalar(value, quoted || (tag && strcmp(tag, "!") == 0), b->filename, line);
    }
    return n;
}

static YNode *build_mapping(Builder *b, yaml_event_t *start, int depth) {
    YNode *map = ynode_new(Y_MAP, b->filename, (int)start->start_mark.line + 1);
    for (;;) {
        yaml_event_t kev;
        if (!next_event(b, &kev))
            return ynode_free(map);
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            remember_anchor(b, start->data.mapping_start.anchor, map); /* complete: an alias inside is unknown */
            return map;
        }
        int kline = (int)kev.start_mark.line + 1;
        char *key = NULL;
        bool merge = false;
        if (kev.type == YAML_SCALAR_EVENT) {
            key = xstrdup((const char *)kev.data.scalar.value);
            merge = kev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && strcmp(key, "<<") == 0;
        } else if (kev.type == YAML_ALIAS_EVENT) {
            YNode *a = find_anchor(b, (const char *)kev.data.alias.anchor);
            if (a && ynode_is_scalar(a))
                key = xstrdup(a->text);
        }
        if (!key) {
            builder_error(b, kline, "mapping keys must be scalars");
            yaml_event_delete(&kev);
            return ynode_free(map);
        }
        yaml_event_delete(&kev);
        yaml_event_t vev;
        if (!next_event(b, &vev)) {
            free(key);
            return ynode_free(map);
        }
        YNode *val = build_node(b, &vev, depth + 1);
        yaml_event_delete(&vev);
        if (!val) {
            free(key);
            return ynode_free(map);
        }
        if (merge) {
            /* `<<: *base` or `<<: [*a, *b]`: keys already present win */
            YNode *srcs[64];
            size_t ns = 0;
            if (val->type == Y_MAP)
                srcs[ns++] = val;
            else if (val->type == Y_SEQ)
                for (size_t i = 0; i < val->n && ns < 64; i++)
                    if (val->items[i]->type == Y_MAP)
                        srcs[ns++] = val->items[i];
            for (size_t s = 0; s < ns; s++)
                for (size_t i = 0; i < srcs[s]->n; i++)
                    if (!ynode_get(map, srcs[s]->keys[i]))
                        ynode_set(map, srcs[s]->keys[i], ynode_clone(srcs[s]->items[i]));
            ynode_free(val);
        } else {
            ynode_set(map, key, val); /* duplicate keys: the last one wins, as in PyYAML */
        }
        free(key);
    }
}

static YNode *build_node(Builder *b, yaml_event_t *ev, int depth) {
    if (depth > 64) {
        builder_error(b, (int)ev->start_mark.line + 1, "nesting deeper than 64 levels");
        return NULL;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT: {
        YNode *n = scalar_from_event(b, ev);
        remember_anchor(b, ev->data.scalar.anchor, n);
        if (b->error)
            return ynode_free(n);
        return n;
    }
    case YAML_ALIAS_EVENT: {
        YNode *a = find_anchor(b, (const char *)ev->data.alias.anchor);
        if (!a) {
            builder_error(b, (int)ev->start_mark.line + 1, "unknown alias *%s", ev->data.alias.anchor);
            return NULL;
        }
        size_t size = ynode_count(a);
        if (size > YAML_MAX_ALIAS_NODES - b->alias_nodes) {
            builder_error(b, (int)ev->start_mark.line + 1, "aliases expand to more than %d nodes",
                          YAML_MAX_ALIAS_NODES);
            return NULL;
        }
        b->alias_nodes += size;
        return ynode_clone(a);
    }
    case YAML_SEQUENCE_START_EVENT: {
        YNode *seq = ynode_new(Y_SEQ, b->filename, (int)ev->start_mark.line + 1);
        for (;;) {
            yaml_event_t iev;
            if (!next_event(b, &iev))
                return ynode_free(seq);
            if (iev.type == YAML_SEQUENCE_END_EVENT) {
                yaml_event_delete(&iev);
                remember_anchor(b, ev->data.sequence_start.anchor, seq); /* complete, as a mapping's */
                return seq;
            }
            YNode *it = build_node(b, &iev, depth + 1);
            yaml_event_delete(&iev);
            if (!it)
                return ynode_free(seq);
            ynode_append(seq, it);
        }
    }
    case YAML_MAPPING_START_EVENT: return build_mapping(b, ev, depth);
    default: builder_error(b, (int)ev->start_mark.line + 1, "unexpected YAML event"); return NULL;
    }
}

YNode *yaml_parse_string(const char *text, size_t len, const char *filename, char **ret_error) {
    Builder b = {.filename = filename ? filename : "<string>"};
    YNode *root = NULL;
    bool have_doc = false;
    if (!yaml_parser_initialize(&b.parser)) {
        *ret_error = xstrdup("cannot initialise the YAML parser");
        return NULL;
    }
    yaml_parser_set_input_string(&b.parser, (const unsigned char *)text, len);
    for (;;) {
        yaml_event_t ev;
        if (!next_event(&b, &ev))
            break;
        yaml_event_type_t t = ev.type;
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (t == YAML_DOCUMENT_START_EVENT && have_doc) {
            builder_error(&b, (int)ev.start_mark.line + 1, "expected a single document in the stream");
            yaml_event_delete(&ev);
            break;
        }
        if (t == YAML_DOCUMENT_START_EVENT)
            have_doc = true;
        if (t == YAML_SCALAR_EVENT || t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT ||
            t == YAML_ALIAS_EVENT) {
            root = build_node(&b, &ev, 0);
            if (!root) {
                yaml_event_delete(&ev);
                break;
            }
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&b.parser);
    for (size_t i = 0; i < b.n_anchors; i++) {
        free(b.anchors[i].name);
        ynode_free(b.anchors[i].node);
    }
    free(b.anchors);
    if (b.error) {
        ynode_free(root);
        *ret_error = b.error;
        return NULL;
    }
    if (!root) /* an empty document is null */
        root = ynode_new(Y_NULL, b.filename, 1);
    return root;
}

YNode *yaml_parse_file(const char *path, char **ret_error) {
    FILE *f = fopen(path, "re");
    if (!f) {
        *ret_error = xasprintf("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    StrBuf sb;
    sb_init(&sb);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        sb_addn(&sb, buf, n);
        if (sb.len > 16 * 1024 * 1024) {
            fclose(f);
            sb_free(&sb);
            *ret_error = xasprintf("%s: file is larger than 16 MiB; not a configuration file", path);
            return NULL;
        }
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        sb_free(&sb);
        *ret_error = xasprintf("%s: read error", path);
        return NULL;
    }
    if (memchr(sb.s ? sb.s : "", '\0', sb.len)) {
        sb_free(&sb);
        *ret_error = xasprintf("%s: contains NUL bytes; not a YAML file", path);
        return NULL;
    }
    YNode *r = yaml_parse_string(sb.s ? sb.s : "", sb.len, path, ret_error);
    sb_free(&sb);
    return r;
}
