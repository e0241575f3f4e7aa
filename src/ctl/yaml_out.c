/* YAML as PyYAML's yaml.safe_dump(data, default_flow_style=..., allow_unicode=True) writes it, which is
 * what patronictl prints for show-config, edit-config, `-f yaml` and the tags column: mapping keys
 * sorted, two-space indentation, sequences inside a mapping not indented, and a string quoted only when
 * it would not read back as the same string (PyYAML's analysis of scalars, simplified: no line folding
 * at 200 columns). */
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/yamltree.h"
#include "ctl/ctl_int.h"

static regex_t re_timestamp;
static pthread_once_t re_once = PTHREAD_ONCE_INIT;

static void compile_timestamp(void) {
    /* PyYAML's implicit timestamp resolver (yamltree does not construct timestamps: it reads them as
     * strings, but PyYAML would read such a plain scalar as a date, so it is quoted) */
    if (regcomp(&re_timestamp,
                "^([0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}"
                "(\\.[0-9]*)?([ \t]*(Z|[-+][0-9]{1,2}(:[0-9]{2})?))?)$",
                REG_EXTENDED | REG_NOSUB) != 0)
        abort();
}

static int cmp_keys(const void *a, const void *b) {
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

/* The children of an object sorted by key (sort_keys=True). */
static const cJSON **sorted_children(const cJSON *o, size_t *ret_n) {
    size_t n = (size_t)cJSON_GetArraySize(o), i = 0;
    const cJSON **v = xcalloc(n + 1, sizeof *v);
    const cJSON *e;
    cJSON_ArrayForEach(e, o)
        v[i++] = e;
    qsort(v, n, sizeof *v, cmp_keys);
    *ret_n = n;
    return v;
}

typedef enum Style { PLAIN, SINGLE, DOUBLE } Style;

static Style choose_style(const char *s, bool flow) {
    if (!*s)
        return SINGLE;
    bool special = false, line_break = false;
    size_t len = strlen(s);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\n')
            line_break = true;
        else if (*p < 0x20 || *p == 0x7F)
            special = true;
    }
    if (special)
        return DOUBLE;
    bool plain = !line_break;
    if (s[0] == ' ' || s[len - 1] == ' ')
        plain = false;
    if (strchr("#,[]{}&*!|>'\"%@`", s[0]))
        plain = false;
    if (strchr("-?:", s[0]) && (s[1] == '\0' || s[1] == ' '))
        plain = false;
    if (strncmp(s, "---", 3) == 0 || strncmp(s, "...", 3) == 0)
        plain = false;
    if (strstr(s, ": ") || strstr(s, " #") || s[len - 1] == ':')
        plain = false;
    if (flow && strpbrk(s, ",[]{}"))
        plain = false;
    if (plain) {
        /* it must read back as a string: not a bool, int, float, null, timestamp, `=` or `<<` */
        pthread_once(&re_once, compile_timestamp);
        YNode *n = ynode_new_scalar(s, false, "", 0);
        bool is_str = n->type == Y_STR;
        ynode_free(n);
        if (!is_str || regexec(&re_timestamp, s, 0, NULL, 0) == 0 || strcmp(s, "=") == 0 || strcmp(s, "<<") == 0)
            plain = false;
    }
    return plain ? PLAIN : SINGLE;
}

static void add_indent(StrBuf *b, int indent) {
    for (int i = 0; i < indent; i++)
        sb_addc(b, ' ');
}

/* A string scalar; indent: the indentation of continuation lines. */
static void add_string(StrBuf *b, const char *s, bool flow, int indent) {
    switch (choose_style(s, flow)) {
    case PLAIN: sb_add(b, s); break;
    case SINGLE:
        sb_addc(b, '\'');
        for (const char *p = s; *p; p++) {
            if (*p == '\'') {
                sb_add(b, "''");
            } else if (*p == '\n') {
                /* a run of k line breaks is written as k+1 breaks, then the indentation */
                sb_addc(b, '\n');
                while (*p == '\n') {
                    sb_addc(b, '\n');
                    p++;
                }
                add_indent(b, indent);
                p--;
            } else {
                sb_addc(b, *p);
            }
        }
        sb_addc(b, '\'');
        break;
    case DOUBLE:
        sb_addc(b, '"');
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
            switch (*p) {
            case '"': sb_add(b, "\\\""); break;
            case '\\': sb_add(b, "\\\\"); break;
            case '\n': sb_add(b, "\\n"); break;
            case '\t': sb_add(b, "\\t"); break;
            case '\r': sb_add(b, "\\r"); break;
            case 0: sb_add(b, "\\0"); break;
            default:
                if (*p < 0x20 || *p == 0x7F)
                    sb_addf(b, "\\x%02X", *p);
                else
                    sb_addc(b, (char)*p);
            }
        }
        sb_addc(b, '"');
        break;
    }
}

/* PyYAML's represent_float: repr() lower-cased, ".0" before an exponent without a dot. */
static void add_float(StrBuf *b, double d) {
    if (isnan(d)) {
        sb_add(b, ".nan");
        return;
    }
    if (isinf(d)) {
        sb_add(b, d > 0 ? ".inf" : "-.inf");
        return;
    }
    char buf[64];
    py_float_repr(d, buf, sizeof buf);
    for (char *p = buf; *p; p++)
        if (*p == 'E')
            *p = 'e';
    char *e = strchr(buf, 'e');
    if (e && !strchr(buf, '.')) {
        char tail[32];
        snprintf(tail, sizeof tail, "%s", e);
        snprintf(e, sizeof buf - (size_t)(e - buf), ".0%s", tail);
    }
    sb_add(b, buf);
}

static void add_scalar(StrBuf *b, const cJSON *v, bool flow, int indent) {
    long long n;
    if (cJSON_IsString(v))
        add_string(b, v->valuestring, flow, indent);
    else if (cJSON_IsBool(v))
        sb_add(b, cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsNull(v) || !v)
        sb_add(b, "null");
    else if (cJSON_IsRaw(v))
        sb_add(b, v->valuestring);
    else if (cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 9e15 &&
             json_item_ll(v, &n))
        sb_addf(b, "%lld", n);
    else
        add_float(b, v->valuedouble);
}

static bool is_collection(const cJSON *v) { return cJSON_IsObject(v) || cJSON_IsArray(v); }
static bool is_empty(const cJSON *v) { return cJSON_GetArraySize(v) == 0; }

static void add_flow(StrBuf *b, const cJSON *v) {
    if (cJSON_IsObject(v)) {
        size_t n;
        const cJSON **kids = sorted_children(v, &n);
        sb_addc(b, '{');
        for (size_t i = 0; i < n; i++) {
            if (i)
                sb_add(b, ", ");
            add_string(b, kids[i]->string, true, 2);
            sb_add(b, ": ");
            add_flow(b, kids[i]);
        }
        sb_addc(b, '}');
        free(kids);
    } else if (cJSON_IsArray(v)) {
        sb_addc(b, '[');
        const cJSON *e;
        bool first = true;
        cJSON_ArrayForEach(e, v) {
            if (!first)
                sb_add(b, ", ");
            first = false;
            add_flow(b, e);
        }
        sb_addc(b, ']');
    } else {
        add_scalar(b, v, true, 2);
    }
}

static void add_block(StrBuf *b, const cJSON *v, int indent, bool inline_first);

/* One entry's value after "key:" or "- ": a scalar or empty collection on the same line, else below. */
static void add_value(StrBuf *b, const cJSON *v, int indent, bool in_seq) {
    if (!is_collection(v) || is_empty(v)) {
        sb_addc(b, ' ');
        if (is_collection(v))
            sb_add(b, cJSON_IsObject(v) ? "{}" : "[]");
        else
            add_scalar(b, v, false, indent + 2);
        sb_addc(b, '\n');
        return;
    }
    if (in_seq) {
        /* "- key: value" / "- - item": the first entry on the dash's line */
        sb_addc(b, ' ');
        add_block(b, v, indent + 2, true);
        return;
    }
    sb_addc(b, '\n');
    /* a sequence in a mapping is not indented (PyYAML's indentless sequences) */
    add_block(b, v, cJSON_IsArray(v) ? indent : indent + 2, false);
}

/* A non-empty collection in block style at `indent`; inline_first: its first line follows a "- ". */
static void add_block(StrBuf *b, const cJSON *v, int indent, bool inline_first) {
    bool first = true;
    if (cJSON_IsObject(v)) {
        size_t n;
        const cJSON **kids = sorted_children(v, &n);
        for (size_t i = 0; i < n; i++) {
            if (!(first && inline_first))
                add_indent(b, indent);
            first = false;
            add_string(b, kids[i]->string, false, indent + 2);
            sb_addc(b, ':');
            add_value(b, kids[i], indent, false);
        }
        free(kids);
    } else {
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            if (!(first && inline_first))
                add_indent(b, indent);
            first = false;
            sb_addc(b, '-');
            add_value(b, e, indent, true);
        }
    }
}

char *yaml_dump(const cJSON *v, bool flow) {
    StrBuf b;
    sb_init(&b);
    if (is_collection(v) && !is_empty(v) && !flow) {
        add_block(&b, v, 0, false);
    } else if (is_collection(v)) {
        add_flow(&b, v);
        sb_addc(&b, '\n');
    } else {
        /* a scalar document ends with the document end marker */
        add_scalar(&b, v, false, 2);
        sb_add(&b, "\n...\n");
    }
    return sb_steal(&b);
}
