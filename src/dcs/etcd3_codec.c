/* The JSON of the etcd v3 gateway: request bodies (keys and values in base64, 64-bit integers as
 * strings) and the parts of the answers the client reads. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "common/json.h"
#include "common/log.h"
#include "dcs/etcd3_int.h"

static void add_b64(cJSON *o, const char *field, const char *s) {
    char *b = base64_encode(s, strlen(s));
    cJSON_AddStringToObject(o, field, b);
    free(b);
}

static void add_i64(cJSON *o, const char *field, long long v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    cJSON_AddStringToObject(o, field, buf);
}

cJSON *etcd3_key_request(const char *key, const char *range_end) {
    cJSON *o = cJSON_CreateObject();
    add_b64(o, "key", key);
    if (range_end)
        add_b64(o, "range_end", range_end);
    return o;
}

cJSON *etcd3_put_request(const char *key, const char *value, long long lease) {
    cJSON *p = cJSON_CreateObject();
    add_b64(p, "key", key);
    add_b64(p, "value", value);
    if (lease)
        add_i64(p, "lease", lease);
    return p;
}

cJSON *etcd3_lease_request(long long id) {
    cJSON *o = cJSON_CreateObject();
    add_i64(o, "ID", id);
    return o;
}

cJSON *etcd3_watch_request(const char *key, const char *range_end, long long start_revision) {
    cJSON *cr = etcd3_key_request(key, range_end);
    add_i64(cr, "start_revision", start_revision);
    cJSON *req = cJSON_CreateObject();
    cJSON_AddItemToObject(req, "create_request", cr);
    return req;
}

static cJSON *compare(const char *key, const char *target, const char *field, const char *value, bool b64) {
    cJSON *c = cJSON_CreateObject();
    add_b64(c, "key", key);
    cJSON_AddStringToObject(c, "target", target);
    if (b64)
        add_b64(c, field, value);
    else
        cJSON_AddStringToObject(c, field, value);
    return c;
}

cJSON *etcd3_compare_absent(const char *key) { return compare(key, "CREATE", "create_revision", "0", false); }

cJSON *etcd3_compare_value(const char *key, const char *value) { return compare(key, "VALUE", "value", value, true); }

cJSON *etcd3_compare_mod(const char *key, long long version) {
    char v[32];
    snprintf(v, sizeof v, "%lld", version);
    return compare(key, "MOD", "mod_revision", v, false);
}

cJSON *etcd3_txn(cJSON *cmp, cJSON *success_op, const char *success_kind, cJSON *failure_txn) {
    cJSON *t = cJSON_CreateObject();
    cJSON *ca = cJSON_AddArrayToObject(t, "compare");
    cJSON_AddItemToArray(ca, cmp);
    cJSON *sa = cJSON_AddArrayToObject(t, "success");
    cJSON *op = cJSON_CreateObject();
    cJSON_AddItemToObject(op, success_kind, success_op);
    cJSON_AddItemToArray(sa, op);
    if (failure_txn) {
        cJSON *fa = cJSON_AddArrayToObject(t, "failure");
        cJSON *fop = cJSON_CreateObject();
        cJSON_AddItemToObject(fop, "request_txn", failure_txn);
        cJSON_AddItemToArray(fa, fop);
    }
    return t;
}

long long etcd3_header_revision(const cJSON *resp) {
    long long rev = 0;
    (void)json_get_i64str(cJSON_GetObjectItemCaseSensitive(resp, "header"), "revision", &rev);
    return rev;
}

bool etcd3_txn_succeeded(const cJSON *resp) {
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "succeeded"));
}

bool etcd3_decode_kv(const cJSON *j, DcsKv *ret) {
    *ret = (DcsKv){0};
    const char *k = json_get_string(j, "key");
    if (!k)
        return false;
    size_t klen;
    ret->key = base64_decode(k, &klen);
    const char *v = json_get_string(j, "value");
    ret->value = v ? base64_decode(v, &ret->value_len) : xstrdup("");
    if (!ret->key || !ret->value) {
        dcs_kv_free_contents(ret);
        return false;
    }
    (void)json_get_i64str(j, "mod_revision", &ret->mod_revision);
    (void)json_get_i64str(j, "create_revision", &ret->create_revision);
    long long lease = 0;
    if (json_get_i64str(j, "lease", &lease) && lease)
        ret->lease = xasprintf("%lld", lease);
    return true;
}

DcsKv *etcd3_decode_kvs(const cJSON *resp, size_t *ret_n) {
    const cJSON *kvs = cJSON_GetObjectItemCaseSensitive(resp, "kvs");
    size_t n = 0;
    DcsKv *out = xcalloc((size_t)cJSON_GetArraySize(kvs) + 1, sizeof(DcsKv));
    const cJSON *it;
    cJSON_ArrayForEach(it, kvs) {
        if (etcd3_decode_kv(it, &out[n]))
            n++;
        else
            log_warning("etcd returned a key that is not valid base64; ignored");
    }
    *ret_n = n;
    return out;
}

void etcd3_free_kvs(DcsKv *kvs, size_t n) {
    for (size_t i = 0; i < n; i++)
        dcs_kv_free_contents(&kvs[i]);
    free(kvs);
}
