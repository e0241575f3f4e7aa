#include "common/json.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/yamltree.h"

void json_add_string(StrBuf *b, const char *s) {
    sb_addc(b, '"');
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        switch (c) {
        case '"':
            sb_add(b, "\\\"");
            p++;
            continue;
        case '\\':
            sb_add(b, "\\\\");
            p++;
            continue;
        case '\n':
            sb_add(b, "\\n");
            p++;
            continue;
        case '\r':
            sb_add(b, "\\r");
            p++;
            continue;
        case '\t':
            sb_add(b, "\\t");
            p++;
            continue;
        case '\b':
            sb_add(b, "\\b");
            p++;
            continue;
        case '\f':
            sb_add(b, "\\f");
            p++;
            continue;
        default: break;
        }
        if (c < 0x20) {
            sb_addf(b, "\\u%04x", c);
            p++;
            continue;
        }
        if (c == 0x7F) { /* ensure_ascii escapes everything outside ' '..'~' */
            sb_add(b, "\\u007f");
            p++;
            continue;
        }
        if (c < 0x80) {
            sb_addc(b, (char)c);
            p++;
            continue;
        }
        /* decode UTF-8; invalid bytes are written as U+FFFD */
        unsigned cp;
        int extra;
        if (c >= 0xF8) {
            sb_add(b, "\\ufffd");
            p++;
            continue;
        } else if (c >= 0xF0) {
            cp = c & 0x07;
            extra = 3;
        } else if (c >= 0xE0) {
            cp = c & 0x0F;
            extra = 2;
        } else if (c >= 0xC0) {
            cp = c & 0x1F;
            extra = 1;
        } else {
            sb_add(b, "\\ufffd");
            p++;
            continue;
        }
        p++;
        int k = 0;
        for (; k < extra && (*p & 0xC0) == 0x80; k++, p++)
            cp = (cp << 6) | (*p & 0x3F);
        /* invalid as UTF-8 (as Python's decoder says): truncated, beyond U+10FFFF, a surrogate, or an overlong
         * form (0xC1 0x9E for '^' would come out as an escaped ASCII character) */
        static const unsigned min_cp[] = {0, 0x80, 0x800, 0x10000};
        if (k < extra || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp < min_cp[extra]) {
            sb_add(b, "\\ufffd");
            continue;
        }
        if (cp >= 0x10000) {
            cp -= 0x10000;
            sb_addf(b, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
        } else {
            sb_addf(b, "\\u%04x", cp);
        }
    }
    sb_addc(b, '"');
}

void json_add_value(StrBuf *b, const cJSON *v, bool spaced) {
    if (!v || cJSON_IsNull(v)) {
        sb_add(b, "null");
    } else if (cJSON_IsTrue(v)) {
        sb_add(b, "true");
    } else if (cJSON_IsFalse(v)) {
        sb_add(b, "false");
    } else if (cJSON_IsRaw(v)) {
        sb_add(b, v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (isinf(d)) {
            /* a literal beyond double's range (1e999) parses to infinity; Python would write Infinity, which
             * JSON (and cJSON) does not have: 1e999 reads back as infinity in both, and is valid JSON */
            sb_add(b, d < 0 ? "-1e999" : "1e999");
        } else if (isnan(d)) {
            sb_add(b, "null"); /* no JSON text parses to NaN; as ynode_to_json() */
        } else if (d == floor(d) && fabs(d) < 9.2e18) {
            sb_addf(b, "%lld", (long long)d);
        } else {
            char buf[64];
            py_float_repr(d, buf, sizeof buf);
            sb_add(b, buf);
        }
    } else if (cJSON_IsString(v)) {
        json_add_string(b, v->valuestring);
    } else if (cJSON_IsArray(v)) {
        sb_addc(b, '[');
        const cJSON *it;
        bool first = true;
        cJSON_ArrayForEach(it, v) {
            if (!first)
                sb_add(b, spaced ? ", " : ",");
            first = false;
            json_add_value(b, it, spaced);
        }
        sb_addc(b, ']');
    } else if (cJSON_IsObject(v)) {
        sb_addc(b, '{');
        const cJSON *it;
        bool first = true;
        cJSON_ArrayForEach(it, v) {
            if (!first)
                sb_add(b, spaced ? ", " : ",");
            first = false;
            json_add_string(b, it->string ? it->string : "");
            sb_add(b, spaced ? ": " : ":");
            json_add_value(b, it, spaced);
        }
        sb_addc(b, '}');
    } else {
        sb_add(b, "null");
    }
}

char *json_dumps(const cJSON *v, bool spaced) {
    StrBuf b;
    sb_init(&b);
    json_add_value(&b, v, spaced);
    return sb_steal(&b);
}

/* ---- parsing ---- */

#define EXACT_DOUBLE_LIMIT 9007199254740992.0 /* 2^53: every integer up to here is exact in a double */

static bool has_inexact_integer(const cJSON *v) {
    for (; v; v = v->next) {
        if (cJSON_IsNumber(v) && fabs(v->valuedouble) > EXACT_DOUBLE_LIMIT)
            return true;
        if (v->child && has_inexact_integer(v->child))
            return true;
    }
    return false;
}

/* The next number token of a valid JSON text, outside strings. */
static const char *next_number(const char **cursor, size_t *ret_len) {
    const char *p = *cursor;
    for (; *p; p++) {
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p[1])
                    p++;
            if (!*p)
                break;
        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            size_t n = strspn(p, "0123456789+-.eE");
            *cursor = p + n;
            *ret_len = n;
            return p;
        }
    }
    *cursor = p;
    return NULL;
}

/* Walk the tree in document order alongside the number tokens of the text; integer literals a double
 * cannot hold become raw items carrying the literal. */
static void exact_integers(cJSON *v, const char **cursor) {
    for (; v; v = v->next) {
        if (v->child)
            exact_integers(v->child, cursor);
        if (!cJSON_IsNumber(v))
            continue;
        size_t len;
        const char *tok = next_number(cursor, &len);
        if (!tok || len >= 32 || fabs(v->valuedouble) <= EXACT_DOUBLE_LIMIT || strcspn(tok, ".eE+") < len)
            continue;
        char buf[32];
        memcpy(buf, tok, len);
        buf[len] = '\0';
        long long ll;
        if (parse_ll(buf, &ll) < 0)
            continue; /* beyond int64: stays a double */
        char *lit = cJSON_malloc(len + 1);
        if (!lit)
            continue;
        memcpy(lit, buf, len + 1);
        v->type = cJSON_Raw;
        v->valuestring = lit;
    }
}

cJSON *json_parse(const char *s) {
    if (!s)
        return NULL;
    cJSON *v = cJSON_ParseWithOpts(s, NULL, true);
    if (v && has_inexact_integer(v)) {
        const char *cursor = s;
        exact_integers(v, &cursor);
    }
    return v;
}

const char *json_get_string(const cJSON *obj, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

bool json_item_ll(const cJSON *it, long long *ret) {
    if (cJSON_IsRaw(it))
        return parse_ll(it->valuestring, ret) == 0;
    if (!cJSON_IsNumber(it))
        return false;
    double d = it->valuedouble;
    if (!isfinite(d) || d != floor(d) || fabs(d) >= 9.2e18)
        return false;
    *ret = (long long)d;
    return true;
}

bool json_get_ll(const cJSON *obj, const char *key, long long *ret) {
    return json_item_ll(cJSON_GetObjectItemCaseSensitive(obj, key), ret);
}

bool json_get_bool(const cJSON *obj, const char *key, bool *ret) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsBool(it))
        return false;
    *ret = cJSON_IsTrue(it);
    return true;
}

bool json_get_i64str(const cJSON *obj, const char *key, long long *ret) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsString(it))
        return parse_ll(it->valuestring, ret) == 0;
    return json_item_ll(it, ret);
}
