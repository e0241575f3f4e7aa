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
        case '"': sb_add(b, "\\\""); p++; continue;
        case '\\': sb_add(b, "\\\\"); p++; continue;
        case '\n': sb_add(b, "\\n"); p++; continue;
        case '\r': sb_add(b, "\\r"); p++; continue;
        case '\t': sb_add(b, "\\t"); p++; continue;
        case '\b': sb_add(b, "\\b"); p++; continue;
        case '\f': sb_add(b, "\\f"); p++; continue;
        default: break;
        }
        if (c < 0x20) {
            sb_addf(b, "\\u%04x", c);
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
        if (c >= 0xF0 && c < 0xF8) {
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
        if (k < extra || cp > 0x10FFFF) {
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
        if (d == floor(d) && fabs(d) < 9.2e18) {
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
