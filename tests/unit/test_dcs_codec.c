/* The DCS codec (spec §1.1, §1.2, §1.5, §7): decoding every key Patroni 4.0 writes under the cluster
 * prefix, encoding the values pgha writes byte for byte as Patroni does, the Python-compatible JSON
 * writer and the strict base64 used by the etcd gateway. Corrupt values must never crash, leak or
 * take other keys down with them. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>

#include "common/base64.h"
#include "common/json.h"
#include "common/util.h"
#include "dcs/cluster.h"
#include "dcs/etcd3_int.h"

/* ------------------------------------------------------------------------------------------------
 * helpers */

#define BASE "/service/batman"
#define K(rel) BASE "/" rel

/* NULL-safe string comparison: `expected` NULL means "must be NULL". */
#define assert_str(actual, expected)                 \
    do {                                             \
        const char *a_ = (actual), *e_ = (expected); \
        if (!e_) {                                   \
            assert_null(a_);                         \
        } else {                                     \
            assert_non_null(a_);                     \
            assert_string_equal(a_, e_);             \
        }                                            \
    } while (0)

#define assert_ll(actual, expected) assert_true((long long)(actual) == (long long)(expected))

/* Compact JSON of a cJSON item (as pgha writes it) compared with `expected`. */
#define assert_json(item, expected)           \
    do {                                      \
        char *j_ = json_dumps((item), false); \
        assert_str(j_, (expected));           \
        free(j_);                             \
    } while (0)

typedef struct KvSpec {
    const char *key;   /* absolute */
    const char *value; /* NULL: no value */
    long long rev;
    const char *lease;
    size_t len; /* 0: strlen(value); otherwise bytes of `value` (may contain NUL) */
} KvSpec;

static Cluster *load(const KvSpec *spec, size_t n) {
    DcsKv *kvs = xcalloc(n ? n : 1, sizeof *kvs);
    for (size_t i = 0; i < n; i++) {
        kvs[i].key = spec[i].key ? xstrdup(spec[i].key) : NULL;
        if (spec[i].value) {
            size_t len = spec[i].len ? spec[i].len : strlen(spec[i].value);
            kvs[i].value = xmalloc(len + 1);
            memcpy(kvs[i].value, spec[i].value, len);
            kvs[i].value[len] = '\0';
            kvs[i].value_len = len;
        }
        kvs[i].mod_revision = spec[i].rev;
        kvs[i].create_revision = spec[i].rev;
        kvs[i].lease = spec[i].lease ? xstrdup(spec[i].lease) : NULL;
    }
    Cluster *c = cluster_from_kvs(kvs, n, BASE);
    for (size_t i = 0; i < n; i++)
        dcs_kv_free_contents(&kvs[i]);
    free(kvs);
    assert_non_null(c);
    return c;
}

#define LOAD(...) load((const KvSpec[]){__VA_ARGS__}, sizeof((const KvSpec[]){__VA_ARGS__}) / sizeof(KvSpec))

/* One member key decoded through cluster_from_kvs. */
static Cluster *load_member(const char *name, const char *value) {
    _cleanup_free_ char *key = xasprintf(K("members/%s"), name);
    KvSpec kv = {key, value, 7, "1234", 0};
    Cluster *c = load(&kv, 1);
    assert_int_equal(c->n_members, 1);
    assert_str(c->members[0].name, name);
    return c;
}

static void assert_member_empty(const Member *m) {
    assert_null(m->conn_url);
    assert_null(m->api_url);
    assert_null(m->proxy_url);
    assert_null(m->state);
    assert_null(m->role);
    assert_null(m->version);
    assert_null(m->replication_state);
    assert_false(m->has_xlog_location);
    assert_false(m->has_timeline);
    assert_null(m->tags);
    assert_false(m->pending_restart);
    assert_null(m->pending_restart_reason);
    assert_null(m->scheduled_restart);
    assert_false(m->pause);
    assert_false(m->checkpoint_after_promote_false);
    assert_json(m->data, "{}");
}

static Member decode(const char *value) {
    Member m = {0};
    member_decode(&m, "m", value);
    return m;
}

/* ------------------------------------------------------------------------------------------------
 * spec §1.2 examples, verbatim */

#define EX_MEMBER_REPLICA                                                                               \
    "{\"conn_url\":\"postgres://10.0.0.2:5432/postgres\",\"api_url\":\"http://10.0.0.2:8008/patroni\"," \
    "\"state\":\"running\",\"role\":\"replica\",\"version\":\"4.0.6\",\"xlog_location\":67420024,"      \
    "\"replication_state\":\"streaming\",\"timeline\":3}"

#define EX_CONFIG                                                                              \
    "{\"ttl\":30,\"loop_wait\":10,\"retry_timeout\":10,\"maximum_lag_on_failover\":1048576,"   \
    "\"postgresql\":{\"use_pg_rewind\":true,\"use_slots\":true,\"parameters\":{\"wal_level\":" \
    "\"replica\",\"hot_standby\":\"on\"}}}"

#define EX_STATUS                                                             \
    "{\"optime\":67393608,\"slots\":{\"node1\":67393608,\"node2\":67393608}," \
    "\"retain_slots\":[\"node1\",\"node2\"]}"

#define EX_FAILOVER "{\"leader\":\"node1\",\"member\":\"node2\",\"scheduled_at\":\"2025-06-01T12:00:00+00:00\"}"

#define EX_SYNC1 "{\"leader\":\"node1\",\"quorum\":0,\"sync_standby\":\"node2\"}"
#define EX_SYNC2 "{\"leader\":\"node1\",\"quorum\":1,\"sync_standby\":\"node2,node3,node4\"}"
#define EX_SYNC3 "{\"leader\":\"node1\",\"quorum\":0,\"sync_standby\":null}"

#define EX_HISTORY "[[1,25623960,\"no recovery target specified\",\"2024-08-28T19:39:26.417254+00:00\",\"node2\"]]"

#define EX_FAILSAFE "{\"node1\":\"http://10.0.0.1:8008/patroni\",\"node2\":\"http://10.0.0.2:8008/patroni\"}"

/* ------------------------------------------------------------------------------------------------
 * base64 */

static void check_b64(const char *plain, const char *encoded) {
    char *e = base64_encode(plain, strlen(plain));
    assert_string_equal(e, encoded);
    free(e);
    size_t len = 999;
    char *d = base64_decode(encoded, &len);
    assert_non_null(d);
    assert_int_equal(len, strlen(plain));
    assert_memory_equal(d, plain, len);
    assert_int_equal(d[len], '\0');
    free(d);
}

static void test_base64_rfc4648_vectors(void **state) {
    (void)state;
    check_b64("", "");
    check_b64("f", "Zg==");
    check_b64("fo", "Zm8=");
    check_b64("foo", "Zm9v");
    check_b64("foob", "Zm9vYg==");
    check_b64("fooba", "Zm9vYmE=");
    check_b64("foobar", "Zm9vYmFy");
    /* a key as the etcd gateway sends it */
    check_b64(K("leader"), "L3NlcnZpY2UvYmF0bWFuL2xlYWRlcg==");
    check_b64(EX_MEMBER_REPLICA, "eyJjb25uX3VybCI6InBvc3RncmVzOi8vMTAuMC4wLjI6NTQzMi9wb3N0Z3JlcyIsImFwaV91cmwiOiJodHRw"
                                 "Oi8vMTAuMC4wLjI6ODAwOC9wYXRyb25pIiwic3RhdGUiOiJydW5uaW5nIiwicm9sZSI6InJlcGxpY2EiLCJ2"
                                 "ZXJzaW9uIjoiNC4wLjYiLCJ4bG9nX2xvY2F0aW9uIjo2NzQyMDAyNCwicmVwbGljYXRpb25fc3RhdGUiOiJz"
                                 "dHJlYW1pbmciLCJ0aW1lbGluZSI6M30=");
    /* ret_len is optional */
    char *d = base64_decode("Zm9v", NULL);
    assert_string_equal(d, "foo");
    free(d);
}

static void test_base64_all_bytes(void **state) {
    (void)state;
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    char *e = base64_encode(all, sizeof all);
    assert_string_equal(e, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BB"
                           "QkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKD"
                           "hIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6ChoqOkpaanqKmqq6ytrq+wsbKztLW2t7i5uru8vb6/wMHCw8TF"
                           "xsfIycrLzM3Oz9DR0tPU1dbX2Nna29zd3t/g4eLj5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7/P3+/w==");
    free(e);
    /* every length (all three padding cases) and every byte value at every position */
    for (size_t off = 0; off < 3; off++)
        for (size_t n = 0; n + off <= sizeof all; n++) {
            unsigned char buf[256];
            for (size_t i = 0; i < n; i++)
                buf[i] = all[(i * 7 + off * 85 + n) & 255];
            char *enc = base64_encode(buf, n);
            assert_int_equal(strlen(enc), 4 * ((n + 2) / 3));
            size_t pad = n % 3 == 0 ? 0 : 3 - n % 3;
            for (size_t i = 0; enc[i]; i++) {
                if (i >= strlen(enc) - pad)
                    assert_int_equal(enc[i], '=');
                else
                    assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", enc[i]));
            }
            size_t len = 0;
            char *dec = base64_decode(enc, &len);
            assert_non_null(dec);
            assert_int_equal(len, n);
            if (n)
                assert_memory_equal(dec, buf, n);
            assert_int_equal(dec[n], '\0');
            free(dec);
            free(enc);
        }
}

static void test_base64_invalid(void **state) {
    (void)state;
    static const char *const bad[] = {
        "Z",                                                  /* bad length */
        "Zg",       "Zg=",  "Zm9vY",    "Zm9vYmFy=", "Zm9\n", /* newline is not tolerated */
        "Zm9v\n",   " Zm9", "Zm9 ",     "Zm9-",               /* url-safe alphabet is not base64 */
        "Zm9_",     "Zm9*", "Zm9\xc3",  "Zg=a",               /* data after '=' */
        "Z===",                                               /* at most two padding characters */
        "====",     "=Zm9", "Zg==Zm9v",                       /* padding in the middle */
        "Zm8=Zm8=",
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        size_t len = 4242;
        char *d = base64_decode(bad[i], &len);
        if (d)
            print_message("accepted invalid base64 #%zu \"%s\"\n", i, bad[i]);
        assert_null(d);
        assert_int_equal(len, 4242); /* untouched on error */
    }
}

/* ------------------------------------------------------------------------------------------------
 * JSON writer (Python json.dumps) and getters */

static void check_str(const char *in, const char *expected) {
    StrBuf b;
    sb_init(&b);
    json_add_string(&b, in);
    char *s = sb_steal(&b);
    if (strcmp(s, expected) != 0)
        print_message("json_add_string: got %s expected %s\n", s, expected);
    assert_string_equal(s, expected);
    free(s);
}

static void test_json_string_escaping(void **state) {
    (void)state;
    check_str("", "\"\"");
    check_str("plain ascii ~!@#$%^&*()_+", "\"plain ascii ~!@#$%^&*()_+\"");
    check_str("a\"b\\c/d", "\"a\\\"b\\\\c/d\""); /* '/' is not escaped by Python */
    check_str("l1\nl2\tt\rr\bb\ff", "\"l1\\nl2\\tt\\rr\\bb\\ff\"");
    check_str("\x01\x02\x1b\x1f", "\"\\u0001\\u0002\\u001b\\u001f\"");
    check_str(" ~", "\" ~\"");
    check_str("\x7f", "\"\\u007f\""); /* ensure_ascii escapes everything outside ' '..'~' */
    check_str("caf\xc3\xa9", "\"caf\\u00e9\"");
    check_str("\xe2\x82\xac", "\"\\u20ac\"");
    check_str("Zo\xc3\xab \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \x7f",
              "\"Zo\\u00eb \\u65e5\\u672c \\ud83d\\ude00 \\u007f\"");
    check_str("\xef\xbf\xbf\xf4\x8f\xbf\xbf", "\"\\uffff\\udbff\\udfff\"");
    check_str("\xf0\x90\x80\x80", "\"\\ud800\\udc00\""); /* U+10000, the first surrogate pair */
    /* invalid UTF-8 never produces a valid-looking character: each bad byte is U+FFFD */
    check_str("\xff", "\"\\ufffd\"");
    check_str("\x80x", "\"\\ufffdx\"");
    check_str("\xe2\x82"
              "A",
              "\"\\ufffdA\"");
    check_str("\xf8\x88\x80\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\"");
    check_str("\xfe\xbf\xbf", "\"\\ufffd\\ufffd\\ufffd\"");
    check_str("\xf4\x90\x80\x80", "\"\\ufffd\""); /* > U+10FFFF */
    /* overlong forms and encoded surrogates are invalid too (found by fuzzing: 0xC1 0x9E, an overlong '^',
     * was written as \u005e, and an encoded surrogate as a lone \ud800 that cJSON cannot read back) */
    check_str("\xc1\x9e", "\"\\ufffd\"");
    check_str("\xc0\xa2", "\"\\ufffd\""); /* an overlong '"' */
    check_str("\xe0\x80\xaf", "\"\\ufffd\"");
    check_str("\xf0\x82\x82\xac", "\"\\ufffd\"");
    check_str("\xed\xa0\x80", "\"\\ufffd\"");
    check_str("\xed\xbf\xbf", "\"\\ufffd\"");
    check_str("\xc2\x80\xe0\xa0\x80\xee\x80\x80", "\"\\u0080\\u0800\\ue000\""); /* the smallest valid ones */
}

static void test_json_dumps_separators(void **state) {
    (void)state;
    const char *compact =
        "{\"a\":1,\"b\":[1,2,{\"c\":null}],\"d\":{\"e\":true,\"f\":false},\"g\":\"x\",\"h\":{},\"i\":[],"
        "\"\\u043a\\u043b\\u044e\\u0447\":\"\\u00e9\",\"n\":-17,\"f2\":[1.5,0.1,-2.25,1e+300,1e-07,123456789.125]}";
    const char *spaced = "{\"a\": 1, \"b\": [1, 2, {\"c\": null}], \"d\": {\"e\": true, \"f\": false}, \"g\": \"x\", "
                         "\"h\": {}, \"i\": [], \"\\u043a\\u043b\\u044e\\u0447\": \"\\u00e9\", \"n\": -17, "
                         "\"f2\": [1.5, 0.1, -2.25, 1e+300, 1e-07, 123456789.125]}";
    cJSON *o = cJSON_Parse(compact);
    assert_non_null(o);
    assert_json(o, compact);
    char *s = json_dumps(o, true);
    assert_string_equal(s, spaced);
    free(s);
    cJSON_Delete(o);
    /* the spaced text parses back to the same compact text */
    o = cJSON_Parse(spaced);
    assert_json(o, compact);
    cJSON_Delete(o);

    s = json_dumps(NULL, false);
    assert_string_equal(s, "null");
    free(s);
    cJSON *str = cJSON_CreateString("tab\there");
    assert_json(str, "\"tab\\there\"");
    cJSON_Delete(str);
    cJSON *big = cJSON_CreateNumber(4503599627370496.0); /* 2^52: printed as an integer */
    assert_json(big, "4503599627370496");
    cJSON_Delete(big);
    /* a number beyond double's range is infinity once parsed: written so that it parses again (found by
     * fuzzing: "inf" was written, which no JSON parser, Python's included, accepts) */
    o = json_parse("{\"a\":1e999,\"b\":[-1e400]}");
    assert_non_null(o);
    assert_json(o, "{\"a\":1e999,\"b\":[-1e999]}");
    s = json_dumps(o, false);
    cJSON *again = json_parse(s);
    assert_non_null(again);
    assert_json(again, s);
    cJSON_Delete(again);
    free(s);
    cJSON_Delete(o);
}

static void test_json_getters(void **state) {
    (void)state;
    cJSON *o = cJSON_Parse("{\"s\":\"str\",\"i\":42,\"neg\":-7,\"f\":1.5,\"fi\":3.0,\"b\":true,\"bf\":false,\"n\":null,"
                           "\"a\":[1],\"o\":{},\"is\":\"12345678901234567\",\"bad\":\"12x\",\"huge\":1e300}");
    assert_non_null(o);
    long long v = 0;
    bool b = false;

    assert_str(json_get_string(o, "s"), "str");
    assert_null(json_get_string(o, "i"));
    assert_null(json_get_string(o, "n"));
    assert_null(json_get_string(o, "missing"));
    assert_null(json_get_string(NULL, "s"));
    assert_null(json_get_string(o, "S")); /* case-sensitive */

    assert_true(json_get_ll(o, "i", &v));
    assert_ll(v, 42);
    assert_true(json_get_ll(o, "neg", &v));
    assert_ll(v, -7);
    assert_true(json_get_ll(o, "fi", &v));
    assert_ll(v, 3);
    v = 99;
    assert_false(json_get_ll(o, "f", &v));
    assert_false(json_get_ll(o, "s", &v));
    assert_false(json_get_ll(o, "b", &v));
    assert_false(json_get_ll(o, "n", &v));
    assert_false(json_get_ll(o, "a", &v));
    assert_false(json_get_ll(o, "is", &v));
    assert_false(json_get_ll(o, "huge", &v));
    assert_false(json_get_ll(o, "missing", &v));
    assert_ll(v, 99); /* untouched on failure */

    assert_true(json_get_bool(o, "b", &b));
    assert_true(b);
    assert_true(json_get_bool(o, "bf", &b));
    assert_false(b);
    b = true;
    assert_false(json_get_bool(o, "i", &b));
    assert_false(json_get_bool(o, "s", &b));
    assert_false(json_get_bool(o, "n", &b));
    assert_true(b);

    assert_true(json_get_i64str(o, "is", &v));
    assert_ll(v, 12345678901234567LL);
    assert_true(json_get_i64str(o, "i", &v));
    assert_ll(v, 42);
    assert_false(json_get_i64str(o, "bad", &v));
    assert_false(json_get_i64str(o, "f", &v));
    assert_false(json_get_i64str(o, "missing", &v));

    assert_false(json_item_ll(NULL, &v));
    cJSON *raw = cJSON_CreateRaw("9223372036854775807");
    assert_true(json_item_ll(raw, &v));
    assert_ll(v, 9223372036854775807LL);
    cJSON_Delete(raw);
    cJSON_Delete(o);
}

/* ------------------------------------------------------------------------------------------------
 * base path */

static void test_base_path(void **state) {
    (void)state;
    static const struct {
        const char *ns, *scope, *expected;
    } cases[] = {
        {"/service", "batman", "/service/batman"},
        {"service", "batman", "/service/batman"},
        {"/service/", "batman", "/service/batman"},
        {"//service//", "batman", "/service/batman"},
        {NULL, "batman", "/service/batman"},
        {"", "batman", "/batman"},
        {"/a/b", "c", "/a/b/c"},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        char *p = dcs_base_path(cases[i].ns, cases[i].scope);
        assert_string_equal(p, cases[i].expected);
        free(p);
    }
}

/* ------------------------------------------------------------------------------------------------
 * members */

static void test_member_replica_example(void **state) {
    (void)state;
    Cluster *c = LOAD({K("members/node2"), EX_MEMBER_REPLICA, 42, "7587862082198364433", 0});
    assert_int_equal(c->n_members, 1);
    const Member *m = &c->members[0];
    assert_str(m->name, "node2");
    assert_str(m->conn_url, "postgres://10.0.0.2:5432/postgres");
    assert_str(m->api_url, "http://10.0.0.2:8008/patroni");
    assert_str(m->state, "running");
    assert_str(m->role, "replica");
    assert_str(m->version, "4.0.6");
    assert_null(m->proxy_url);
    assert_true(m->has_xlog_location);
    assert_ll(m->xlog_location, 67420024);
    assert_false(m->has_replay_lsn); /* a 4.0 member key has no replay_lsn/receive_lsn */
    assert_false(m->has_receive_lsn);
    assert_str(m->replication_state, "streaming");
    assert_true(m->has_timeline);
    assert_ll(m->timeline, 3);
    assert_null(m->tags);
    assert_false(m->pending_restart);
    assert_null(m->pending_restart_reason);
    assert_null(m->scheduled_restart);
    assert_false(m->pause);
    assert_false(m->checkpoint_after_promote_false);
    assert_false(m->watchdog_failed);
    assert_ll(m->revision, 42);
    assert_str(m->session, "7587862082198364433");
    assert_json(m->data, EX_MEMBER_REPLICA);
    assert_ptr_equal(cluster_get_member(c, "node2"), m);
    assert_null(cluster_get_member(c, "node1"));
    assert_null(cluster_get_member(c, NULL));
    assert_false(member_nofailover(m));
    assert_ll(member_failover_priority(m), 1);

    /* byte-for-byte round trip */
    char *enc = cluster_encode_member(m);
    assert_string_equal(enc, EX_MEMBER_REPLICA);
    free(enc);

    char *host = NULL;
    int port = 0;
    assert_true(member_conn_host_port(m, &host, &port));
    assert_str(host, "10.0.0.2");
    assert_int_equal(port, 5432);
    free(host);
    cluster_free(c);
}

/* Every optional field, in Patroni's order (replay_lsn and receive_lsn: Patroni 4.1). */
#define EX_MEMBER_FULL                                                                                            \
    "{\"conn_url\":\"postgres://[fe80::1]:5433/postgres\",\"api_url\":\"https://node1.example:8008/patroni\","    \
    "\"state\":\"running\",\"role\":\"standby_leader\",\"version\":\"4.0.6\","                                    \
    "\"proxy_url\":\"postgres://10.0.0.100:6432/postgres\",\"checkpoint_after_promote\":false,"                   \
    "\"tags\":{\"nofailover\":true,\"failover_priority\":0,\"replicatefrom\":\"node3\",\"dc\":\"Z\\u00fcrich\"}," \
    "\"pending_restart\":true,\"pending_restart_reason\":{\"max_connections\":{\"old_value\":\"100\","            \
    "\"new_value\":\"200\"}},\"xlog_location\":4611686018427387905,\"replay_lsn\":4611686018427387000,"           \
    "\"receive_lsn\":4611686018427387905,\"replication_state\":"                                                  \
    "\"in archive recovery\",\"timeline\":12,\"scheduled_restart\":{\"schedule\":"                                \
    "\"2025-06-01T12:00:00+00:00\",\"timeout\":60,\"role\":\"replica\",\"postmaster_start_time\":"                \
    "\"2025-05-01 10:00:00.123456+00:00\"},\"pause\":true}"

static void test_member_all_fields_roundtrip(void **state) {
    (void)state;
    Cluster *c = load_member("node1", EX_MEMBER_FULL);
    const Member *m = &c->members[0];
    assert_str(m->conn_url, "postgres://[fe80::1]:5433/postgres");
    assert_str(m->api_url, "https://node1.example:8008/patroni");
    assert_str(m->role, "standby_leader");
    assert_str(m->proxy_url, "postgres://10.0.0.100:6432/postgres");
    assert_true(m->checkpoint_after_promote_false);
    assert_non_null(m->tags);
    assert_str(json_get_string(m->tags, "dc"), "Z\xc3\xbcrich");
    assert_true(m->pending_restart);
    assert_json(m->pending_restart_reason, "{\"max_connections\":{\"old_value\":\"100\",\"new_value\":\"200\"}}");
    assert_true(m->has_xlog_location);
    assert_ll(m->xlog_location, 4611686018427387905LL); /* 2^62 + 1, exact */
    assert_true(m->has_replay_lsn);
    assert_ll(m->replay_lsn, 4611686018427387000LL);
    assert_true(m->has_receive_lsn);
    assert_ll(m->receive_lsn, 4611686018427387905LL);
    assert_str(m->replication_state, "in archive recovery");
    assert_ll(m->timeline, 12);
    assert_non_null(m->scheduled_restart);
    assert_str(json_get_string(m->scheduled_restart, "postmaster_start_time"), "2025-05-01 10:00:00.123456+00:00");
    assert_true(m->pause);
    assert_true(member_nofailover(m));
    assert_ll(member_failover_priority(m), 0);
    assert_json(m->data, EX_MEMBER_FULL);

    char *enc = cluster_encode_member(m);
    assert_string_equal(enc, EX_MEMBER_FULL);
    free(enc);

    char *host = NULL;
    int port = 0;
    assert_true(member_conn_host_port(m, &host, &port));
    assert_str(host, "fe80::1");
    assert_int_equal(port, 5433);
    free(host);
    cluster_free(c);
}

static void test_member_encode_omits_and_exact(void **state) {
    (void)state;
    /* false-valued flags from the DCS are not re-emitted (Patroni writes them only when true) */
    Member m = decode("{\"conn_url\":\"postgres://h:5432/postgres\",\"api_url\":\"http://h:8008/patroni\","
                      "\"state\":\"stopped\",\"role\":\"uninitialized\",\"version\":\"4.0.6\","
                      "\"tags\":{},\"pending_restart\":false,\"pause\":false}");
    assert_false(m.checkpoint_after_promote_false);
    assert_false(m.pending_restart);
    assert_false(m.pause);
    char *enc = cluster_encode_member(&m);
    assert_string_equal(enc, "{\"conn_url\":\"postgres://h:5432/postgres\",\"api_url\":\"http://h:8008/patroni\","
                             "\"state\":\"stopped\",\"role\":\"uninitialized\",\"version\":\"4.0.6\"}");
    free(enc);
    member_free_contents(&m);

    /* checkpoint_after_promote: readers only look at its presence (Patroni: `'checkpoint_after_promote' not in
     * data`, spec: "until a primary leader no longer shows it"); pgha writes it only as false */
    static const char *const cap[] = {"false", "true", "0", "null"};
    for (size_t i = 0; i < ELEMENTSOF(cap); i++) {
        _cleanup_free_ char *v = xasprintf("{\"role\":\"primary\",\"checkpoint_after_promote\":%s}", cap[i]);
        m = decode(v);
        assert_true(m.checkpoint_after_promote_false);
        enc = cluster_encode_member(&m);
        assert_non_null(strstr(enc, ",\"version\":\"4.0.6\",\"checkpoint_after_promote\":false}"));
        free(enc);
        member_free_contents(&m);
    }

    /* integers are written exactly, whatever their size */
    Member big = {0};
    big.conn_url = (char *)"postgres://10.0.0.2:5432/postgres";
    big.api_url = (char *)"http://10.0.0.2:8008/patroni";
    big.state = (char *)"running";
    big.role = (char *)"primary";
    big.version = (char *)"4.0.6";
    big.has_xlog_location = true;
    big.xlog_location = (1LL << 62) + 1;
    big.has_timeline = true;
    big.timeline = 4294967295LL;
    enc = cluster_encode_member(&big);
    assert_string_equal(enc, "{\"conn_url\":\"postgres://10.0.0.2:5432/postgres\",\"api_url\":"
                             "\"http://10.0.0.2:8008/patroni\",\"state\":\"running\",\"role\":\"primary\","
                             "\"version\":\"4.0.6\",\"xlog_location\":4611686018427387905,\"timeline\":4294967295}");
    free(enc);
    big.xlog_location = INT64_MAX;
    enc = cluster_encode_member(&big);
    assert_non_null(strstr(enc, ",\"xlog_location\":9223372036854775807,"));
    free(enc);
    /* non-ASCII is escaped as Python's ensure_ascii does */
    big.state = (char *)"restart failed (running)";
    big.conn_url = (char *)"postgres://h\xc3\xb6st:5432/postgres";
    enc = cluster_encode_member(&big);
    assert_non_null(strstr(enc, "\"conn_url\":\"postgres://h\\u00f6st:5432/postgres\""));
    assert_non_null(strstr(enc, "\"state\":\"restart failed (running)\""));
    free(enc);
}

static void test_member_legacy_url(void **state) {
    (void)state;
    Cluster *c = load_member(
        "old", "postgres://replicator:secret@10.0.0.3:5432/postgres?application_name=http://10.0.0.3:8008/patroni");
    const Member *m = &c->members[0];
    /* Patroni: urlunparse without the query; api_url from application_name */
    assert_str(m->conn_url, "postgres://replicator:secret@10.0.0.3:5432/postgres");
    assert_str(m->api_url, "http://10.0.0.3:8008/patroni");
    assert_json(m->data, "{\"conn_url\":\"postgres://replicator:secret@10.0.0.3:5432/postgres\","
                         "\"api_url\":\"http://10.0.0.3:8008/patroni\"}");
    assert_null(m->state);
    assert_false(m->has_xlog_location);
    char *host = NULL;
    int port = 0;
    assert_true(member_conn_host_port(m, &host, &port));
    assert_str(host, "10.0.0.3");
    assert_int_equal(port, 5432);
    free(host);
    cluster_free(c);

    /* percent-encoded, among other parameters */
    c = load_member("old2", "postgres://10.0.0.4:5433/postgres?sslmode=disable&application_name="
                            "http%3A%2F%2F10.0.0.4%3A8008%2Fpatroni&x=y");
    m = &c->members[0];
    assert_str(m->conn_url, "postgres://10.0.0.4:5433/postgres");
    assert_str(m->api_url, "http://10.0.0.4:8008/patroni");
    cluster_free(c);

    /* without application_name: no api_url */
    c = load_member("old3", "postgres://10.0.0.5:5432/postgres");
    m = &c->members[0];
    assert_str(m->conn_url, "postgres://10.0.0.5:5432/postgres");
    assert_null(m->api_url);
    assert_true(member_conn_host_port(m, &host, &port));
    assert_str(host, "10.0.0.5");
    free(host);
    cluster_free(c);

    /* no path: the query's own slashes must not be taken for the path */
    c = load_member("old4", "postgres://u@10.0.0.6:6543?application_name=http://10.0.0.6:8008/patroni");
    m = &c->members[0];
    assert_str(m->conn_url, "postgres://u@10.0.0.6:6543");
    assert_str(m->api_url, "http://10.0.0.6:8008/patroni");
    assert_true(member_conn_host_port(m, &host, &port));
    assert_str(host, "10.0.0.6");
    assert_int_equal(port, 6543);
    free(host);
    cluster_free(c);
}

static void check_host_port(const char *conn_url, const char *host, int port) {
    Member m = {0};
    m.conn_url = (char *)conn_url;
    char *h = (char *)"junk";
    int p = -1;
    bool ok = member_conn_host_port(&m, &h, &p);
    if (!host) {
        assert_false(ok);
        assert_null(h);
        assert_int_equal(p, 0);
        return;
    }
    if (!ok)
        print_message("member_conn_host_port(%s) failed\n", conn_url);
    assert_true(ok);
    assert_str(h, host);
    assert_int_equal(p, port);
    free(h);
}

static void test_member_conn_host_port(void **state) {
    (void)state;
    check_host_port("postgres://10.0.0.2:5432/postgres", "10.0.0.2", 5432);
    check_host_port("postgres://db1.example.com:6432/app", "db1.example.com", 6432);
    check_host_port("postgres://db1/postgres", "db1", 5432);
    check_host_port("postgres://db1", "db1", 5432);
    check_host_port("postgres://db1:/postgres", "db1", 5432);  /* empty port → default (urlparse: None) */
    check_host_port("postgres://db1:0/postgres", "db1", 5432); /* Patroni: `r.port or 5432` */
    check_host_port("postgres://[fe80::1]:5433/postgres", "fe80::1", 5433);
    check_host_port("postgres://[::1]/postgres", "::1", 5432);
    check_host_port("postgres://[2001:db8::5]:65535/postgres", "2001:db8::5", 65535);
    check_host_port("postgres://user@10.0.0.7:5434/postgres", "10.0.0.7", 5434);
    check_host_port("postgres://user:p4ss@[::1]:5435/postgres", "::1", 5435);
    check_host_port("postgresql://replicator@host-a:5432/postgres", "host-a", 5432);
    check_host_port("postgres://u:p@ss@db2:5433/postgres", "db2", 5433); /* urlparse: last '@' */
    check_host_port("postgres://db3:5434?sslmode=require", "db3", 5434); /* netloc ends at '?' or '#' */
    check_host_port("postgres://db4#frag", "db4", 5432);
    check_host_port("postgres://db5:5435/postgres?options=a@b:1/c", "db5", 5435);
    /* nothing usable */
    check_host_port(NULL, NULL, 0);
    check_host_port("", NULL, 0);
    check_host_port("10.0.0.2:5432", NULL, 0);
    check_host_port("postgres:///postgres", NULL, 0);
    check_host_port("postgres://[fe80::1/postgres", NULL, 0);
    /* a port that is not a port is not silently truncated into another one */
    check_host_port("postgres://db1:4294967297/postgres", NULL, 0);
    check_host_port("postgres://db1:65536/postgres", NULL, 0);
    check_host_port("postgres://db1:-5/postgres", NULL, 0);
    check_host_port("postgres://db1:abc/postgres", NULL, 0);

    char *h = (char *)"junk";
    int p = -1;
    assert_false(member_conn_host_port(NULL, &h, &p));
    assert_null(h);
}

static void check_failover_tags(const char *tags, bool nofailover, long long priority) {
    _cleanup_free_ char *value = xasprintf("{\"conn_url\":\"postgres://h/p\",\"tags\":%s}", tags);
    Member m = decode(value);
    if (member_nofailover(&m) != nofailover || member_failover_priority(&m) != priority)
        print_message("tags %s: nofailover=%d priority=%lld\n", tags, member_nofailover(&m),
                      member_failover_priority(&m));
    assert_true(member_nofailover(&m) == nofailover);
    assert_ll(member_failover_priority(&m), priority);
    member_free_contents(&m);
}

static void test_member_failover_rules(void **state) {
    (void)state;
    /* patroni/tags.py: an explicit nofailover wins; otherwise failover_priority <= 0 means nofailover;
     * failover_priority is 0 whenever nofailover is truthy, 1 when missing or unparsable */
    check_failover_tags("{}", false, 1);
    check_failover_tags("{\"nofailover\":true}", true, 0);
    check_failover_tags("{\"nofailover\":false}", false, 1);
    check_failover_tags("{\"nofailover\":false,\"failover_priority\":0}", false, 0);
    check_failover_tags("{\"nofailover\":true,\"failover_priority\":5}", true, 0);
    check_failover_tags("{\"failover_priority\":0}", true, 0);
    check_failover_tags("{\"failover_priority\":-1}", true, -1);
    check_failover_tags("{\"failover_priority\":1}", false, 1);
    check_failover_tags("{\"failover_priority\":7}", false, 7);
    check_failover_tags("{\"failover_priority\":\"3\"}", false, 3);
    check_failover_tags("{\"failover_priority\":\"0\"}", true, 0);
    check_failover_tags("{\"failover_priority\":\"abc\"}", false, 1);
    check_failover_tags("{\"failover_priority\":null}", false, 1);
    check_failover_tags("{\"failover_priority\":[1]}", false, 1);
    /* nofailover: null is "not set" (dict.get() is None) → failover_priority decides */
    check_failover_tags("{\"nofailover\":null,\"failover_priority\":0}", true, 0);
    check_failover_tags("{\"nofailover\":null}", false, 1);
    /* Python truthiness of whatever is stored */
    check_failover_tags("{\"nofailover\":1}", true, 0);
    check_failover_tags("{\"nofailover\":0,\"failover_priority\":0}", false, 0);
    check_failover_tags("{\"nofailover\":\"\"}", false, 1);
    check_failover_tags("{\"nofailover\":\"false\"}", true, 0); /* bool("false") is True */
    check_failover_tags("{\"nofailover\":[]}", false, 1);
    check_failover_tags("{\"nofailover\":{\"x\":1}}", true, 0);

    /* no tags at all, tags of the wrong type, no member */
    Member m = decode("{\"tags\":[\"nofailover\"]}");
    assert_null(m.tags);
    assert_false(member_nofailover(&m));
    assert_ll(member_failover_priority(&m), 1);
    assert_false(member_tag_bool(&m, "nofailover"));
    assert_json(m.data, "{\"tags\":[\"nofailover\"]}");
    member_free_contents(&m);
    assert_false(member_nofailover(NULL));
    assert_ll(member_failover_priority(NULL), 1);
}

static void test_member_tag_bool(void **state) {
    (void)state;
    Member m = decode("{\"tags\":{\"noloadbalance\":true,\"nosync\":false,\"clonefrom\":true,\"nostream\":1,"
                      "\"custom\":\"x\",\"empty\":\"\",\"zero\":0,\"nul\":null,\"list\":[],\"obj\":{\"a\":1}}}");
    assert_true(member_tag_bool(&m, "noloadbalance"));
    assert_false(member_tag_bool(&m, "nosync"));
    assert_true(member_tag_bool(&m, "clonefrom"));
    assert_true(member_tag_bool(&m, "nostream"));
    assert_true(member_tag_bool(&m, "custom"));
    assert_false(member_tag_bool(&m, "empty"));
    assert_false(member_tag_bool(&m, "zero"));
    assert_false(member_tag_bool(&m, "nul"));
    assert_false(member_tag_bool(&m, "list"));
    assert_true(member_tag_bool(&m, "obj"));
    assert_false(member_tag_bool(&m, "missing"));
    assert_false(member_tag_bool(&m, "NOLOADBALANCE")); /* case-sensitive keys */
    member_free_contents(&m);
    assert_false(member_tag_bool(NULL, "nosync"));
    m = decode("{}");
    assert_false(member_tag_bool(&m, "nosync"));
    member_free_contents(&m);
}

static void test_member_corrupt_values(void **state) {
    (void)state;
    static const char *const corrupt[] = {
        "",
        "{",
        "{\"conn_url\":\"postgres://10.0.0.2:5432/postgres\",\"api_url\":\"http://10.0.0.2:8008/pat", /* truncated */
        "{\"conn_url\":\"postgres://10.0.0.2:5432/postgres\",",
        "{\"state\":\"running\"",
        "null",
        "true",
        "42",
        "\"a string\"",
        "[1,2,3]",
        "[{\"conn_url\":\"postgres://x/y\"}]",
        "{'state':'running'}",              /* not JSON */
        "{\"state\":\"running\"} trailing", /* json.loads: "Extra data" */
        "{\"state\":\"running\"}{\"role\":\"primary\"}",
        "{\"state\":\"running\",}",
        "\xff\xfe{}",
        "Postgres://10.0.0.2:5432/postgres", /* the legacy prefix is case-sensitive */
        " {\"state\":",
    };
    for (size_t i = 0; i < ELEMENTSOF(corrupt); i++) {
        Cluster *c = load_member("bad", corrupt[i]);
        if (cJSON_GetArraySize(c->members[0].data) != 0)
            print_message("corrupt member value #%zu accepted: %s\n", i, corrupt[i]);
        assert_member_empty(&c->members[0]);
        assert_ll(c->members[0].revision, 7);
        assert_str(c->members[0].session, "1234");
        char *enc = cluster_encode_member(&c->members[0]);
        cJSON *back = cJSON_Parse(enc); /* still valid JSON */
        assert_true(cJSON_IsObject(back));
        cJSON_Delete(back);
        free(enc);
        cluster_free(c);
    }
    /* whitespace around a valid document is fine for json.loads */
    Cluster *c = load_member("ws", " \n{\"state\":\"running\"}\n ");
    assert_str(c->members[0].state, "running");
    cluster_free(c);

    /* member_decode on its own */
    Member m = {0};
    member_decode(&m, "x", NULL);
    assert_str(m.name, "x");
    assert_member_empty(&m);
    member_free_contents(&m);
}

static void test_member_wrong_types(void **state) {
    (void)state;
    const char *value = "{\"conn_url\":5,\"api_url\":[\"http://x\"],\"state\":null,\"role\":true,\"version\":4.0,"
                        "\"proxy_url\":{},\"xlog_location\":\"0/4000000\",\"replication_state\":1,"
                        "\"tags\":[\"nofailover\"],\"timeline\":3.5,\"pending_restart\":\"yes\","
                        "\"pending_restart_reason\":[1],\"scheduled_restart\":\"soon\",\"pause\":1,"
                        "\"checkpoint_after_promote\":0}";
    Cluster *c = load_member("w", value);
    const Member *m = &c->members[0];
    assert_null(m->conn_url);
    assert_null(m->api_url);
    assert_null(m->state);
    assert_null(m->role);
    assert_null(m->version);
    assert_null(m->proxy_url);
    assert_false(m->has_xlog_location);
    assert_null(m->replication_state);
    assert_null(m->tags);
    assert_false(m->has_timeline);
    assert_false(m->pending_restart);
    assert_null(m->pending_restart_reason);
    assert_null(m->scheduled_restart);
    assert_false(m->pause);
    assert_true(m->checkpoint_after_promote_false);    /* present, whatever its value */
    assert_int_equal(cJSON_GetArraySize(m->data), 15); /* kept as read */
    assert_false(member_nofailover(m));
    char *h = NULL;
    int p = 0;
    assert_false(member_conn_host_port(m, &h, &p));
    char *enc = cluster_encode_member(m);
    cJSON *back = cJSON_Parse(enc);
    assert_true(cJSON_IsObject(back));
    assert_null(cJSON_GetObjectItem(back, "xlog_location"));
    assert_null(cJSON_GetObjectItem(back, "timeline"));
    assert_null(cJSON_GetObjectItem(back, "tags"));
    cJSON_Delete(back);
    free(enc);
    cluster_free(c);

    /* an integral float is still an integer position/timeline (Python compares 3.0 == 3) */
    c = load_member("f", "{\"xlog_location\":67420024.0,\"timeline\":3.0,\"xlog_location_str\":\"67420024\"}");
    assert_true(c->members[0].has_xlog_location);
    assert_ll(c->members[0].xlog_location, 67420024);
    assert_true(c->members[0].has_timeline);
    assert_ll(c->members[0].timeline, 3);
    cluster_free(c);
}

static void test_member_unknown_fields(void **state) {
    (void)state;
    const char *value = "{\"conn_url\":\"postgres://10.0.0.2:5432/postgres\",\"zz_future\":{\"a\":[1,{\"b\":null}]},"
                        "\"api_url\":\"http://10.0.0.2:8008/patroni\",\"state\":\"running\",\"role\":\"replica\","
                        "\"version\":\"4.0.6\",\"xlog_location\":67420024,\"replication_state\":\"streaming\","
                        "\"timeline\":3,\"watchdog_failed\":true,\"conn_kwargs\":{\"host\":\"x\"},\"\":\"\","
                        "\"\\u00e9\":\"\\ud83d\\ude00\"}";
    Cluster *c = load_member("node2", value);
    const Member *m = &c->members[0];
    assert_str(m->state, "running");
    assert_ll(m->xlog_location, 67420024);
    assert_ll(m->timeline, 3);
    assert_true(m->watchdog_failed);
    /* everything is kept in data, re-serialised exactly */
    assert_json(m->data, value);
    assert_json(cJSON_GetObjectItemCaseSensitive(m->data, "zz_future"), "{\"a\":[1,{\"b\":null}]}");
    /* the encoder writes only Patroni's fields: the spec's example again */
    char *enc = cluster_encode_member(m);
    assert_string_equal(enc, EX_MEMBER_REPLICA);
    free(enc);
    cluster_free(c);
}

static void test_member_huge_values(void **state) {
    (void)state;
    const size_t mib = 1024 * 1024;
    /* a valid 1 MiB member value */
    StrBuf b;
    sb_init(&b);
    sb_add(&b, "{\"conn_url\":\"postgres://10.0.0.2:5432/postgres\",\"api_url\":\"http://10.0.0.2:8008/patroni\","
               "\"state\":\"running\",\"role\":\"replica\",\"version\":\"4.0.6\",\"tags\":{\"blob\":\"");
    while (b.len < mib)
        sb_add(&b, "abcdefghijklmnopqrstuvwxyz012345");
    sb_add(&b, "\"},\"xlog_location\":4611686018427387903,\"timeline\":2147483648}");
    char *big = sb_steal(&b);
    Cluster *c = load_member("big", big);
    const Member *m = &c->members[0];
    assert_str(m->state, "running");
    assert_true(m->has_xlog_location);
    assert_ll(m->xlog_location, 4611686018427387903LL); /* 2^62 - 1 */
    assert_ll(m->timeline, 2147483648LL);
    const char *blob = json_get_string(m->tags, "blob");
    assert_non_null(blob);
    assert_true(strlen(blob) >= mib - 200);
    char *enc = cluster_encode_member(m);
    assert_true(strlen(enc) > mib);
    assert_non_null(strstr(enc, ",\"xlog_location\":4611686018427387903,\"timeline\":2147483648}"));
    free(enc);
    assert_json(m->data, big);
    cluster_free(c);
    free(big);

    /* 1 MiB of garbage, of unterminated string, of nesting */
    char *junk = xmalloc(mib + 1);
    for (size_t i = 0; i < mib; i++)
        junk[i] = (char)('!' + (i * 31) % 90);
    junk[mib] = '\0';
    c = load_member("junk", junk);
    assert_member_empty(&c->members[0]);
    cluster_free(c);
    junk[0] = '{';
    junk[1] = '"';
    for (size_t i = 2; i < mib; i++)
        junk[i] = 'x';
    c = load_member("unterminated", junk);
    assert_member_empty(&c->members[0]);
    cluster_free(c);
    memset(junk, '[', mib);
    c = load_member("deep", junk);
    assert_member_empty(&c->members[0]);
    cluster_free(c);
    for (size_t i = 0; i < mib; i++)
        junk[i] = "{\"a\":"[i % 5];
    c = load_member("deepobj", junk);
    assert_member_empty(&c->members[0]);
    cluster_free(c);
    free(junk);

    /* numbers at and beyond the edges of int64 */
    c = load_member("edge", "{\"xlog_location\":9223372036854775807,\"timeline\":-9223372036854775808}");
    assert_true(c->members[0].has_xlog_location);
    assert_ll(c->members[0].xlog_location, INT64_MAX);
    assert_true(c->members[0].has_timeline);
    assert_ll(c->members[0].timeline, INT64_MIN);
    assert_json(c->members[0].data, "{\"xlog_location\":9223372036854775807,\"timeline\":-9223372036854775808}");
    cluster_free(c);
    c = load_member("over", "{\"xlog_location\":18446744073709551617,\"timeline\":1e400,\"x\":"
                            "123456789012345678901234567890}");
    assert_non_null(c->members[0].data); /* not representable: no crash, no wrapped value */
    if (c->members[0].has_xlog_location)
        assert_true(c->members[0].xlog_location > 0);
    cluster_free(c);
}

static void test_member_keys_and_names(void **state) {
    (void)state;
    Cluster *c = LOAD({K("members/node1"), "{\"role\":\"primary\"}", 10, "11", 0},
                      {K("members/node.2-x"), "{\"role\":\"replica\"}", 11, "12", 0},
                      {K("members/a/b"), "{\"role\":\"replica\"}", 12, "13", 0}, /* two slashes: ignored */
                      {K("members"), "{\"role\":\"replica\"}", 14, NULL, 0},
                      {K("members/x/"), "{\"role\":\"replica\"}", 15, NULL, 0},
                      {K("membersfoo"), "{\"role\":\"replica\"}", 16, NULL, 0},
                      {K("Members/y"), "{\"role\":\"replica\"}", 17, NULL, 0},
                      {K("members/n\xc3\xb6"
                         "de"),
                       "{\"role\":\"replica\"}", 18, NULL, 0},
                      {K("members/nolease"), "{}", 19, NULL, 0});
    assert_int_equal(c->n_members, 4);
    assert_str(c->members[0].name, "node1");
    assert_str(c->members[0].role, "primary");
    assert_str(c->members[0].session, "11");
    assert_str(c->members[1].name, "node.2-x");
    assert_ll(c->members[1].revision, 11);
    assert_str(c->members[2].name, "n\xc3\xb6"
                                   "de");
    assert_str(c->members[3].name, "nolease");
    assert_null(c->members[3].session);
    assert_json(c->members[3].data, "{}");
    assert_null(cluster_get_member(c, "a"));
    assert_null(cluster_get_member(c, "b"));
    assert_null(cluster_get_member(c, "NODE1"));
    cluster_free(c);
}

static void test_many_members(void **state) {
    (void)state;
    enum { N = 600 };
    KvSpec *spec = xcalloc(N + 1, sizeof *spec);
    char **keys = xcalloc(N, sizeof *keys), **values = xcalloc(N, sizeof *values);
    for (int i = 0; i < N; i++) {
        keys[i] = xasprintf(K("members/node%d"), i);
        values[i] = xasprintf("{\"conn_url\":\"postgres://10.0.%d.%d:5432/postgres\",\"xlog_location\":%d}", i / 256,
                              i % 256, i * 1000);
        spec[i] = (KvSpec){keys[i], values[i], 100 + i, NULL, 0};
    }
    spec[N] = (KvSpec){K("leader"), "node599", 5000, "77", 0};
    Cluster *c = load(spec, N + 1);
    assert_int_equal(c->n_members, N);
    for (int i = 0; i < N; i++) {
        _cleanup_free_ char *name = xasprintf("node%d", i);
        const Member *m = cluster_get_member(c, name);
        assert_non_null(m);
        assert_ll(m->xlog_location, i * 1000);
    }
    assert_non_null(c->leader);
    assert_ptr_equal(c->leader->member, cluster_get_member(c, "node599"));
    assert_ll(c->revision, 5000);
    cluster_free(c);
    for (int i = 0; i < N; i++) {
        free(keys[i]);
        free(values[i]);
    }
    free(keys);
    free(values);
    free(spec);
}

/* ------------------------------------------------------------------------------------------------
 * leader */

static void test_leader(void **state) {
    (void)state;
    Cluster *c = LOAD({K("members/node1"), EX_MEMBER_REPLICA, 20, "555", 0}, {K("leader"), "node1", 21, "555", 0},
                      {K("members/node2"), "{}", 22, "556", 0});
    assert_false(cluster_is_unlocked(c));
    assert_non_null(c->leader);
    assert_str(c->leader->name, "node1");
    assert_ll(c->leader->version, 21);
    assert_str(c->leader->session, "555");
    assert_non_null(c->leader->member);
    assert_ptr_equal(c->leader->member, cluster_get_member(c, "node1"));
    assert_str(c->leader->member->api_url, "http://10.0.0.2:8008/patroni");
    assert_ll(c->revision, 22);
    cluster_free(c);

    /* the leader key before the member key: still attached */
    c = LOAD({K("leader"), "node2", 30, "9", 0}, {K("members/node1"), "{}", 31, "8", 0},
             {K("members/node2"), "{\"role\":\"primary\"}", 32, "9", 0});
    assert_ptr_equal(c->leader->member, &c->members[1]);
    assert_str(c->leader->member->role, "primary");
    cluster_free(c);

    /* a leader without a member key still exists (name only) */
    c = LOAD({K("leader"), "ghost", 40, "10", 0}, {K("members/node1"), "{}", 41, "11", 0});
    assert_non_null(c->leader);
    assert_false(cluster_is_unlocked(c));
    assert_str(c->leader->name, "ghost");
    assert_null(c->leader->member);
    assert_ll(c->leader->version, 40);
    cluster_free(c);

    /* the name is a bare string, never JSON: matched exactly */
    c = LOAD({K("leader"), "\"node1\"", 40, NULL, 0}, {K("members/node1"), "{}", 41, NULL, 0});
    assert_str(c->leader->name, "\"node1\"");
    assert_null(c->leader->member);
    assert_null(c->leader->session);
    cluster_free(c);
    c = LOAD({K("leader"), "Node1", 40, NULL, 0}, {K("members/node1"), "{}", 41, NULL, 0});
    assert_null(c->leader->member);

    assert_false(c->leader->corrupt);
    cluster_free(c);

    /* empty: unlocked (spec §1.5) */
    c = LOAD({K("leader"), "", 50, "1", 0}, {K("members/node1"), "{}", 51, "1", 0});
    assert_null(c->leader);
    assert_true(cluster_is_unlocked(c));
    cluster_free(c);
    /* a NUL byte in it: locked by an unknown holder, never "unlocked" (a primary may still hold the lease) */
    c = LOAD({K("leader"), "node1\0junk", 52, "7", 10}, {K("members/node1"), "{}", 53, "7", 0});
    assert_non_null(c->leader);
    assert_false(cluster_is_unlocked(c));
    assert_true(c->leader->corrupt);
    assert_str(c->leader->name, "");
    assert_null(c->leader->member); /* not node1: the value is not a name */
    cluster_free(c);
    /* no key = unlocked */
    c = LOAD({K("members/node1"), "{}", 51, "1", 0});
    assert_null(c->leader);
    assert_true(cluster_is_unlocked(c));
    cluster_free(c);
    assert_true(cluster_is_unlocked(NULL));
}

/* ------------------------------------------------------------------------------------------------
 * config, initialize */

static void test_config(void **state) {
    (void)state;
    Cluster *c = LOAD({K("config"), EX_CONFIG, 3, NULL, 0});
    assert_true(c->has_config);
    assert_ll(c->config_version, 3);
    long long v;
    assert_true(json_get_ll(c->config, "ttl", &v));
    assert_ll(v, 30);
    assert_true(json_get_ll(c->config, "loop_wait", &v));
    assert_ll(v, 10);
    assert_true(json_get_ll(c->config, "retry_timeout", &v));
    assert_ll(v, 10);
    assert_true(json_get_ll(c->config, "maximum_lag_on_failover", &v));
    assert_ll(v, 1048576);
    const cJSON *pg = cJSON_GetObjectItemCaseSensitive(c->config, "postgresql");
    bool b = false;
    assert_true(json_get_bool(pg, "use_pg_rewind", &b));
    assert_true(b);
    assert_true(json_get_bool(pg, "use_slots", &b));
    assert_true(b);
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(pg, "parameters");
    assert_str(json_get_string(params, "wal_level"), "replica");
    assert_str(json_get_string(params, "hot_standby"), "on");
    assert_json(c->config, EX_CONFIG);
    cluster_free(c);

    /* spaced JSON is accepted too (readers accept any valid JSON) */
    c = LOAD({K("config"), "{ \"ttl\": 30, \"synchronous_mode\": \"quorum\" }", 4, NULL, 0});
    assert_json(c->config, "{\"ttl\":30,\"synchronous_mode\":\"quorum\"}");
    assert_ll(c->config_version, 4);
    cluster_free(c);

    /* not an object → {} with modify version 0 */
    static const char *const bad[] = {"[1,2]", "{\"ttl\":30", "", "null", "30", "\"x\"", "{\"ttl\":30} x", "ttl: 30"};
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        c = LOAD({K("config"), bad[i], 9, NULL, 0});
        assert_true(c->has_config);
        assert_non_null(c->config);
        assert_json(c->config, "{}");
        assert_ll(c->config_version, 0);
        cluster_free(c);
    }

    /* absent */
    c = LOAD({K("initialize"), "", 1, NULL, 0});
    assert_false(c->has_config);
    assert_null(c->config);
    assert_ll(c->config_version, 0);
    cluster_free(c);
}

static void test_initialize(void **state) {
    (void)state;
    Cluster *c = LOAD({K("initialize"), "", 5, NULL, 0});
    assert_true(c->has_initialize);
    assert_str(c->initialize, "");
    cluster_free(c);
    c = LOAD({K("initialize"), "7401234567890123456", 6, NULL, 0});
    assert_true(c->has_initialize);
    assert_str(c->initialize, "7401234567890123456"); /* as a string, not a (rounded) number */
    assert_ll(c->revision, 6);
    cluster_free(c);
    c = LOAD({K("config"), "{}", 6, NULL, 0});
    assert_false(c->has_initialize);
    assert_null(c->initialize);
    cluster_free(c);
}

/* ------------------------------------------------------------------------------------------------
 * status, optime/leader */

static void test_status(void **state) {
    (void)state;
    Cluster *c = LOAD({K("status"), EX_STATUS, 8, NULL, 0}, {K("optime/leader"), "1", 9, NULL, 0});
    assert_true(c->status.has_optime);
    assert_ll(c->status.optime, 67393608);
    assert_ll(c->status.version, 8);
    assert_non_null(c->status.slots);
    assert_int_equal(cJSON_GetArraySize(c->status.slots), 2);
    long long v;
    assert_true(json_get_ll(c->status.slots, "node1", &v));
    assert_ll(v, 67393608);
    assert_true(json_get_ll(c->status.slots, "node2", &v));
    assert_ll(v, 67393608);
    assert_int_equal(c->status.retain_slots.n, 2);
    assert_str(c->status.retain_slots.v[0], "node1");
    assert_str(c->status.retain_slots.v[1], "node2");
    /* byte-for-byte round trip */
    char *enc = cluster_encode_status(c->status.optime, c->status.slots, &c->status.retain_slots);
    assert_string_equal(enc, EX_STATUS);
    free(enc);
    cluster_free(c);

    /* legacy bare integer */
    c = LOAD({K("status"), "67393608", 8, NULL, 0});
    assert_true(c->status.has_optime);
    assert_ll(c->status.optime, 67393608);
    assert_null(c->status.slots);
    assert_int_equal(c->status.retain_slots.n, 0);
    cluster_free(c);

    /* slots and retain_slots as JSON-encoded strings */
    c = LOAD({K("status"),
              "{\"optime\":100,\"slots\":\"{\\\"node1\\\":90,\\\"logical_x\\\":80}\","
              "\"retain_slots\":\"[\\\"node1\\\",\\\"node2\\\"]\"}",
              8, NULL, 0});
    assert_ll(c->status.optime, 100);
    assert_json(c->status.slots, "{\"node1\":90,\"logical_x\":80}");
    assert_int_equal(c->status.retain_slots.n, 2);
    assert_str(c->status.retain_slots.v[1], "node2");
    cluster_free(c);

    /* optime only */
    c = LOAD({K("status"), "{\"optime\":5}", 8, NULL, 0});
    assert_ll(c->status.optime, 5);
    assert_null(c->status.slots);
    assert_int_equal(c->status.retain_slots.n, 0);
    cluster_free(c);

    /* wrong types */
    c = LOAD({K("status"), "{\"optime\":\"abc\",\"slots\":[1,2],\"retain_slots\":{\"node1\":1}}", 8, NULL, 0});
    assert_false(c->status.has_optime);
    assert_null(c->status.slots);
    assert_int_equal(c->status.retain_slots.n, 0);
    cluster_free(c);
    c = LOAD({K("status"), "{\"optime\":1,\"slots\":\"{broken\",\"retain_slots\":\"[1,\\\"a\\\",null]\"}", 8, NULL, 0});
    assert_ll(c->status.optime, 1);
    assert_null(c->status.slots);
    assert_int_equal(c->status.retain_slots.n, 1); /* only the string entry */
    assert_str(c->status.retain_slots.v[0], "a");
    cluster_free(c);

    /* exact near 2^62 */
    c = LOAD({K("status"), "{\"optime\":4611686018427387905,\"slots\":{\"node1\":4611686018427387905}}", 8, NULL, 0});
    assert_ll(c->status.optime, 4611686018427387905LL);
    enc = cluster_encode_status(c->status.optime, c->status.slots, &c->status.retain_slots);
    assert_string_equal(enc, "{\"optime\":4611686018427387905,\"slots\":{\"node1\":4611686018427387905}}");
    free(enc);
    cluster_free(c);

    /* a present but corrupt status does not fall back to optime/leader (Patroni: `status or optime`) */
    static const char *const bad[] = {"", "{", "abc", "[1]", "null", "1.5", "{\"optime\":1}x"};
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        c = LOAD({K("status"), bad[i], 8, NULL, 0}, {K("optime/leader"), "500", 9, NULL, 0});
        assert_false(c->status.has_optime);
        assert_null(c->status.slots);
        assert_int_equal(c->status.retain_slots.n, 0);
        cluster_free(c);
    }

    /* status absent: optime/leader */
    c = LOAD({K("optime/leader"), "67393608", 12, NULL, 0});
    assert_true(c->status.has_optime);
    assert_ll(c->status.optime, 67393608);
    assert_ll(c->status.version, 12);
    assert_null(c->status.slots);
    cluster_free(c);
    c = LOAD({K("optime/leader"), "not a number", 12, NULL, 0});
    assert_false(c->status.has_optime);
    cluster_free(c);
    c = LOAD({K("members/x"), "{}", 12, NULL, 0});
    assert_false(c->status.has_optime);
    assert_null(c->status.slots);
    cluster_free(c);
}

static void test_encode_status(void **state) {
    (void)state;
    char *enc = cluster_encode_status(0, NULL, NULL);
    assert_string_equal(enc, "{\"optime\":0}");
    free(enc);
    cJSON *empty = cJSON_CreateObject();
    StrList none = {0};
    enc = cluster_encode_status(67393608, empty, &none); /* empty slots / retain_slots are omitted */
    assert_string_equal(enc, "{\"optime\":67393608}");
    free(enc);
    cJSON_Delete(empty);

    /* retain_slots sorted; slots kept in insertion order */
    cJSON *slots = cJSON_CreateObject();
    cJSON_AddNumberToObject(slots, "node2", 67393608);
    cJSON_AddNumberToObject(slots, "node1", 67393600);
    StrList retain = {0};
    strlist_add(&retain, "node2");
    strlist_add(&retain, "node1");
    enc = cluster_encode_status(67393608, slots, &retain);
    assert_string_equal(enc, "{\"optime\":67393608,\"slots\":{\"node2\":67393608,\"node1\":67393600},"
                             "\"retain_slots\":[\"node1\",\"node2\"]}");
    free(enc);
    assert_str(retain.v[0], "node2"); /* the caller's list is not reordered */
    enc = cluster_encode_status(1, NULL, &retain);
    assert_string_equal(enc, "{\"optime\":1,\"retain_slots\":[\"node1\",\"node2\"]}");
    free(enc);
    strlist_clear(&retain);
    cJSON_Delete(slots);
}

/* ------------------------------------------------------------------------------------------------
 * failover */

static Cluster *load_failover(const char *value) { return LOAD({K("failover"), value, 33, NULL, 0}); }

static void check_failover(const char *value, const char *leader, const char *candidate, const char *scheduled_at) {
    Cluster *c = load_failover(value);
    assert_true(c->failover.present);
    assert_ll(c->failover.version, 33);
    assert_str(c->failover.leader, leader);
    assert_str(c->failover.candidate, candidate);
    assert_str(c->failover.scheduled_at, scheduled_at);
    assert_true(failover_is_empty(&c->failover) == (!leader && !candidate));
    cluster_free(c);
}

static void test_failover_decode(void **state) {
    (void)state;
    check_failover(EX_FAILOVER, "node1", "node2", "2025-06-01T12:00:00+00:00");
    check_failover("{\"member\":\"node2\"}", NULL, "node2", NULL);
    check_failover("{\"leader\":\"node1\"}", "node1", NULL, NULL);
    check_failover("{}", NULL, NULL, NULL);
    check_failover("{\"leader\":\"\",\"member\":\"\"}", NULL, NULL, NULL);
    check_failover("{\"leader\":null,\"member\":5,\"candidate\":\"node3\"}", NULL, NULL, NULL); /* REST name ≠ key */
    check_failover("{ \"leader\" : \"node1\" , \"member\" : \"node2\" }", "node1", "node2", NULL);
    /* JSON that is not an object: no request (json.loads succeeded) */
    check_failover("null", NULL, NULL, NULL);
    check_failover("[\"node1\",\"node2\"]", NULL, NULL, NULL);
    check_failover("42", NULL, NULL, NULL);
    check_failover("\"node1:node2\"", NULL, NULL, NULL);
    check_failover("", NULL, NULL, NULL);
    /* not JSON: the legacy "leader:candidate" string, each part stripped */
    check_failover("node1:node2", "node1", "node2", NULL);
    check_failover(":node2", NULL, "node2", NULL);
    check_failover("node1:", "node1", NULL, NULL);
    check_failover(" node1 : node2 ", "node1", "node2", NULL);
    check_failover("node1:node2:node3", "node1", "node2", NULL);
    check_failover("node1", "node1", NULL, NULL);
    check_failover(":", NULL, NULL, NULL);
    check_failover("{\"leader\":\"node1\"", "{\"leader\"", "\"node1\"", NULL); /* truncated JSON, as Patroni */

    Cluster *c = LOAD({K("leader"), "node1", 1, NULL, 0});
    assert_false(c->failover.present);
    assert_true(failover_is_empty(&c->failover));
    cluster_free(c);
}

static void test_failover_encode(void **state) {
    (void)state;
    char *enc = cluster_encode_failover("node1", "node2", "2025-06-01T12:00:00+00:00");
    assert_string_equal(enc, EX_FAILOVER);
    free(enc);
    enc = cluster_encode_failover(NULL, "node2", NULL);
    assert_string_equal(enc, "{\"member\":\"node2\"}");
    free(enc);
    enc = cluster_encode_failover("node1", NULL, NULL);
    assert_string_equal(enc, "{\"leader\":\"node1\"}");
    free(enc);
    enc = cluster_encode_failover(NULL, "node2", "2025-06-01T12:00:00+00:00");
    assert_string_equal(enc, "{\"member\":\"node2\",\"scheduled_at\":\"2025-06-01T12:00:00+00:00\"}");
    free(enc);
    enc = cluster_encode_failover(NULL, NULL, NULL);
    assert_string_equal(enc, "{}");
    free(enc);
    enc = cluster_encode_failover("n\xc3\xb6"
                                  "de\"1",
                                  NULL, NULL);
    assert_string_equal(enc, "{\"leader\":\"n\\u00f6de\\\"1\"}");
    free(enc);
}

/* ------------------------------------------------------------------------------------------------
 * sync */

static void test_sync_decode(void **state) {
    (void)state;
    Cluster *c = LOAD({K("sync"), EX_SYNC1, 44, NULL, 0});
    assert_true(c->sync.present);
    assert_ll(c->sync.version, 44);
    assert_str(c->sync.leader, "node1");
    assert_ll(c->sync.quorum, 0);
    assert_int_equal(c->sync.members.n, 1);
    assert_str(c->sync.members.v[0], "node2");
    assert_true(sync_matches(&c->sync, "node2"));
    assert_true(sync_matches(&c->sync, "NODE2"));
    assert_true(sync_matches(&c->sync, "Node1"));
    assert_false(sync_matches(&c->sync, "node3"));
    assert_false(sync_matches(&c->sync, "node"));
    assert_false(sync_matches(&c->sync, NULL));
    char *enc = cluster_encode_sync(c->sync.leader, c->sync.quorum, &c->sync.members);
    assert_string_equal(enc, EX_SYNC1);
    free(enc);
    cluster_free(c);

    c = LOAD({K("sync"), EX_SYNC2, 45, NULL, 0});
    assert_str(c->sync.leader, "node1");
    assert_ll(c->sync.quorum, 1);
    assert_int_equal(c->sync.members.n, 3);
    assert_str(c->sync.members.v[0], "node2");
    assert_str(c->sync.members.v[1], "node3");
    assert_str(c->sync.members.v[2], "node4");
    assert_true(sync_matches(&c->sync, "nOdE4"));
    enc = cluster_encode_sync(c->sync.leader, c->sync.quorum, &c->sync.members);
    assert_string_equal(enc, EX_SYNC2);
    free(enc);
    cluster_free(c);

    c = LOAD({K("sync"), EX_SYNC3, 46, NULL, 0});
    assert_true(c->sync.present);
    assert_str(c->sync.leader, "node1");
    assert_int_equal(c->sync.members.n, 0);
    assert_true(sync_matches(&c->sync, "node1"));
    assert_false(sync_matches(&c->sync, "node2"));
    enc = cluster_encode_sync(c->sync.leader, c->sync.quorum, &c->sync.members);
    assert_string_equal(enc, EX_SYNC3);
    free(enc);
    cluster_free(c);

    /* Patroni 3.0 format (no quorum), spaces and empty entries (SyncState._str_to_list) */
    c = LOAD({K("sync"), "{\"leader\":\"node1\",\"sync_standby\":\" node2 ,, node3,\"}", 47, NULL, 0});
    assert_ll(c->sync.quorum, 0);
    assert_int_equal(c->sync.members.n, 2);
    assert_str(c->sync.members.v[0], "node2");
    assert_str(c->sync.members.v[1], "node3");
    cluster_free(c);

    /* no leader: no sync state */
    static const char *const empty[] = {"{\"leader\":\"\",\"quorum\":0,\"sync_standby\":\"node2\"}",
                                        "{\"quorum\":1,\"sync_standby\":\"node2\"}",
                                        "{\"leader\":null,\"sync_standby\":\"node2\"}",
                                        "{\"leader\":[\"node1\"],\"sync_standby\":\"node2\"}",
                                        "{",
                                        "",
                                        "[]",
                                        "null",
                                        "node1"};
    for (size_t i = 0; i < ELEMENTSOF(empty); i++) {
        c = LOAD({K("sync"), empty[i], 48, NULL, 0});
        assert_true(c->sync.present);
        assert_null(c->sync.leader);
        assert_false(sync_matches(&c->sync, "node2"));
        assert_false(sync_matches(&c->sync, "node1"));
        cluster_free(c);
    }

    /* wrong types: sync_standby not a string → no standbys */
    c = LOAD({K("sync"), "{\"leader\":\"node1\",\"quorum\":1,\"sync_standby\":[\"node2\"]}", 49, NULL, 0});
    assert_str(c->sync.leader, "node1");
    assert_ll(c->sync.quorum, 1);
    assert_int_equal(c->sync.members.n, 0);
    assert_false(sync_matches(&c->sync, "node2"));
    cluster_free(c);
    /* quorum is int(quorum) when leader and quorum are truthy (SyncState.from_node); a quorum that int()
     * rejects makes the whole key "empty" rather than quorum 0 */
    static const struct {
        const char *quorum;
        bool valid;
        long long expected;
    } q[] = {{"0", true, 0},       {"2", true, 2},        {"null", true, 0}, {"false", true, 0},
             {"\"\"", true, 0},    {"[]", true, 0},       {"{}", true, 0},   {"\"3\"", true, 3},
             {"\" 4 \"", true, 4}, {"true", true, 1},     {"2.0", true, 2},  {"2.7", true, 2},
             {"\"x\"", false, 0},  {"\"2.5\"", false, 0}, {"[1]", false, 0}, {"{\"a\":1}", false, 0}};
    for (size_t i = 0; i < ELEMENTSOF(q); i++) {
        _cleanup_free_ char *v = xasprintf("{\"leader\":\"node1\",\"quorum\":%s,\"sync_standby\":\"node2,node3\"}",
                                           q[i].quorum);
        c = LOAD({K("sync"), v, 50, NULL, 0});
        if (q[i].valid != (c->sync.leader != NULL) || c->sync.quorum != q[i].expected)
            print_message("sync quorum %s: leader %s quorum %lld\n", q[i].quorum, c->sync.leader ? c->sync.leader : "-",
                          c->sync.quorum);
        assert_true(c->sync.present);
        if (q[i].valid) {
            assert_str(c->sync.leader, "node1");
            assert_int_equal(c->sync.members.n, 2);
            assert_true(sync_matches(&c->sync, "node3"));
        } else {
            assert_null(c->sync.leader);
            assert_int_equal(c->sync.members.n, 0);
            assert_false(sync_matches(&c->sync, "node3"));
        }
        assert_ll(c->sync.quorum, q[i].expected);
        cluster_free(c);
    }
    /* without a leader the quorum is not even looked at */
    c = LOAD({K("sync"), "{\"quorum\":\"x\",\"sync_standby\":\"node2\"}", 51, NULL, 0});
    assert_null(c->sync.leader);
    assert_ll(c->sync.quorum, 0);
    cluster_free(c);

    c = LOAD({K("leader"), "node1", 1, NULL, 0});
    assert_false(c->sync.present);
    assert_null(c->sync.leader);
    assert_false(sync_matches(&c->sync, "node1"));
    cluster_free(c);
}

static void test_sync_encode(void **state) {
    (void)state;
    StrList l = {0};
    strlist_add(&l, "node2");
    char *enc = cluster_encode_sync("node1", 0, &l);
    assert_string_equal(enc, EX_SYNC1);
    free(enc);
    strlist_clear(&l);
    strlist_add(&l, "node4");
    strlist_add(&l, "node2");
    strlist_add(&l, "node3");
    enc = cluster_encode_sync("node1", 1, &l);
    assert_string_equal(enc, EX_SYNC2);
    free(enc);
    assert_str(l.v[0], "node4"); /* the caller's list is not reordered */
    strlist_clear(&l);
    enc = cluster_encode_sync("node1", 0, &l);
    assert_string_equal(enc, EX_SYNC3);
    free(enc);
    enc = cluster_encode_sync("node1", 0, NULL);
    assert_string_equal(enc, EX_SYNC3);
    free(enc);
    /* sorted by code point, as Python's sorted() */
    strlist_add(&l, "b");
    strlist_add(&l, "B");
    strlist_add(&l, "a-1");
    strlist_add(&l, "\xc3\xa4");
    enc = cluster_encode_sync("node1", 2, &l);
    assert_string_equal(enc, "{\"leader\":\"node1\",\"quorum\":2,\"sync_standby\":\"B,a-1,b,\\u00e4\"}");
    free(enc);
    strlist_clear(&l);
}

/* ------------------------------------------------------------------------------------------------
 * history, failsafe */

static long long timeline_of(const char *history) {
    Cluster *c = history ? LOAD({K("history"), history, 60, NULL, 0}) : LOAD({K("initialize"), "1", 60, NULL, 0});
    long long tl = cluster_timeline(c);
    cluster_free(c);
    return tl;
}

static void test_history(void **state) {
    (void)state;
    Cluster *c = LOAD({K("history"), EX_HISTORY, 61, NULL, 0});
    assert_true(c->has_history);
    assert_ll(c->history_version, 61);
    assert_true(cJSON_IsArray(c->history));
    assert_int_equal(cJSON_GetArraySize(c->history), 1);
    const cJSON *e = cJSON_GetArrayItem(c->history, 0);
    assert_int_equal(cJSON_GetArraySize(e), 5);
    long long v;
    assert_true(json_item_ll(cJSON_GetArrayItem(e, 0), &v));
    assert_ll(v, 1);
    assert_true(json_item_ll(cJSON_GetArrayItem(e, 1), &v));
    assert_ll(v, 25623960);
    assert_string_equal(cJSON_GetArrayItem(e, 2)->valuestring, "no recovery target specified");
    assert_string_equal(cJSON_GetArrayItem(e, 3)->valuestring, "2024-08-28T19:39:26.417254+00:00");
    assert_string_equal(cJSON_GetArrayItem(e, 4)->valuestring, "node2");
    assert_json(c->history, EX_HISTORY);
    assert_ll(cluster_timeline(c), 2);
    cluster_free(c);

    /* 3-, 4- and 5-element entries mixed */
    const char *mixed = "[[1,25623960,\"no recovery target specified\"],"
                        "[2,33554592,\"no recovery target specified\",\"2024-08-29T10:00:00+00:00\"],"
                        "[3,50331808,\"no recovery target specified\",\"2024-08-30T10:00:00.5+00:00\",\"node1\"]]";
    c = LOAD({K("history"), mixed, 62, NULL, 0});
    assert_int_equal(cJSON_GetArraySize(c->history), 3);
    assert_ll(cluster_timeline(c), 4);
    assert_json(c->history, mixed);
    cluster_free(c);
    assert_ll(timeline_of("[[7,1,\"x\"]]"), 8);
    assert_ll(timeline_of("[[1,2,\"a\"],[2,3,\"b\",\"t\"]]"), 3);

    /* [] → timeline 1; absent → 0 */
    c = LOAD({K("history"), "[]", 63, NULL, 0});
    assert_true(c->has_history);
    assert_ll(cluster_timeline(c), 1);
    cluster_free(c);
    assert_ll(timeline_of(NULL), 0);
    assert_ll(cluster_timeline(NULL), 0);
    /* a timeline nothing can follow (found by fuzzing: tl + 1 overflowed) */
    assert_ll(timeline_of("[[9223372036854775807,1,\"x\"]]"), 0);
    assert_ll(timeline_of("[[9223372036854775806,1,\"x\"]]"), 9223372036854775807LL);

    /* not an array → absent */
    static const char *const bad[] = {"{\"1\":2}", "[[1,2,\"x\"]", "", "null", "5", "\"[]\"", "[[1,2]] x"};
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        c = LOAD({K("history"), bad[i], 64, NULL, 0});
        assert_false(c->has_history);
        assert_null(c->history);
        assert_ll(cluster_timeline(c), 0);
        cluster_free(c);
    }
    /* an array with unusable entries: timeline unknown (0), nothing crashes */
    assert_ll(timeline_of("[5]"), 0);
    assert_ll(timeline_of("[[]]"), 0);
    assert_ll(timeline_of("[[\"x\",1,\"r\"]]"), 0);
    assert_ll(timeline_of("[null]"), 0);
    assert_ll(timeline_of("[[1,2,\"a\"],{}]"), 0);
}

static void test_failsafe(void **state) {
    (void)state;
    Cluster *c = LOAD({K("failsafe"), EX_FAILSAFE, 70, NULL, 0});
    assert_non_null(c->failsafe);
    assert_str(json_get_string(c->failsafe, "node1"), "http://10.0.0.1:8008/patroni");
    assert_str(json_get_string(c->failsafe, "node2"), "http://10.0.0.2:8008/patroni");
    assert_json(c->failsafe, EX_FAILSAFE);
    cluster_free(c);
    c = LOAD({K("failsafe"), "{}", 70, NULL, 0});
    assert_json(c->failsafe, "{}");
    cluster_free(c);
    static const char *const bad[] = {"", "{", "[\"node1\"]", "null", "\"x\"", "{\"a\":\"b\"}]"};
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        c = LOAD({K("failsafe"), bad[i], 70, NULL, 0});
        assert_null(c->failsafe);
        cluster_free(c);
    }
}

/* ------------------------------------------------------------------------------------------------
 * the whole prefix */

static void test_full_cluster(void **state) {
    (void)state;
    Cluster *c = LOAD({K("config"), EX_CONFIG, 2, NULL, 0}, {K("initialize"), "7401234567890123456", 3, NULL, 0},
                      {K("members/node1"),
                       "{\"conn_url\":\"postgres://10.0.0.1:5432/postgres\",\"api_url\":"
                       "\"http://10.0.0.1:8008/patroni\",\"state\":\"running\",\"role\":"
                       "\"primary\",\"version\":\"4.0.6\",\"xlog_location\":67393608,"
                       "\"timeline\":2}",
                       100, "7587862082198364433", 0},
                      {K("members/node2"), EX_MEMBER_REPLICA, 101, "7587862082198364434", 0},
                      {K("leader"), "node1", 90, "7587862082198364433", 0}, {K("status"), EX_STATUS, 102, NULL, 0},
                      {K("sync"), EX_SYNC1, 50, NULL, 0}, {K("history"), EX_HISTORY, 40, NULL, 0},
                      {K("failover"), "{}", 80, NULL, 0}, {K("failsafe"), EX_FAILSAFE, 81, NULL, 0},
                      /* ignored: unknown keys, keys outside the prefix, nested member keys */
                      {K("unknown"), "{\"x\":1}", 103, NULL, 0}, {K("optime/other"), "5", 104, NULL, 0},
                      {K("leader/x"), "node2", 105, NULL, 0}, {K("members/node3/extra"), "{}", 106, NULL, 0},
                      {"/service/batman2/leader", "node2", 500, NULL, 0},
                      {"/service/batman2/members/node9", "{}", 501, NULL, 0},
                      {"/service/other/members/node8", "{}", 502, NULL, 0}, {"/service/batman", "x", 503, NULL, 0},
                      {"service/batman/leader", "node2", 504, NULL, 0},
                      {"/SERVICE/batman/leader", "node2", 505, NULL, 0}, {NULL, "x", 506, NULL, 0},
                      {K("config"), NULL, 507, NULL, 0}); /* a key without value (keys_only) */
    assert_true(c->has_initialize);
    assert_str(c->initialize, "7401234567890123456");
    assert_true(c->has_config);
    assert_ll(c->config_version, 2);
    assert_int_equal(c->n_members, 2);
    assert_non_null(c->leader);
    assert_str(c->leader->name, "node1");
    assert_ptr_equal(c->leader->member, &c->members[0]);
    assert_str(c->leader->member->role, "primary");
    assert_ll(c->status.optime, 67393608);
    assert_str(c->sync.leader, "node1");
    assert_ll(cluster_timeline(c), 2);
    assert_true(c->failover.present);
    assert_true(failover_is_empty(&c->failover));
    assert_non_null(c->failsafe);
    assert_null(cluster_get_member(c, "node3"));
    assert_null(cluster_get_member(c, "node9"));
    assert_null(cluster_get_member(c, "node8"));
    /* the view's revision comes from the keys under the prefix */
    assert_true(c->revision >= 102 && c->revision < 500);
    cluster_free(c);

    /* nothing at all */
    c = load(NULL, 0);
    assert_false(c->has_initialize);
    assert_false(c->has_config);
    assert_null(c->leader);
    assert_int_equal(c->n_members, 0);
    assert_false(c->failover.present);
    assert_false(c->sync.present);
    assert_false(c->has_history);
    assert_false(c->status.has_optime);
    assert_null(c->failsafe);
    assert_ll(cluster_timeline(c), 0);
    cluster_free(c);
    assert_null(cluster_free(NULL));
}

static void test_embedded_nul_ignored(void **state) {
    (void)state;
    static const char member[] = "{\"conn_url\":\"postgres://x/y\"}\0{\"evil\":1}";
    static const char leader[] = "node1\0node2";
    static const char config[] = "{\"ttl\":30}\0";
    static const char init[] = "\0"
                               "7401234567890123456";
    Cluster *c = LOAD({K("members/node1"), member, 10, NULL, sizeof member - 1},
                      {K("members/node2"), "{}", 11, NULL, 0}, {K("leader"), leader, 12, NULL, sizeof leader - 1},
                      {K("config"), config, 13, NULL, sizeof config - 1},
                      {K("initialize"), init, 14, NULL, sizeof init - 1},
                      {K("failover"), "node1\0:node2", 15, NULL, 12},
                      {K("sync"), EX_SYNC1 "\0", 16, NULL, sizeof EX_SYNC1},
                      {K("history"), "[]\0[[1,2,\"x\"]]", 17, NULL, 14});
    assert_int_equal(c->n_members, 1);
    assert_str(c->members[0].name, "node2");
    /* the leader key is there: held by an unknown holder, neither node1 nor unlocked */
    assert_non_null(c->leader);
    assert_true(c->leader->corrupt);
    assert_false(cluster_is_unlocked(c));
    assert_str(c->leader->name, "");
    assert_false(c->has_config);
    assert_false(c->has_initialize);
    assert_false(c->failover.present);
    assert_false(c->sync.present);
    assert_false(c->has_history);
    cluster_free(c);
}

/* ------------------------------------------------------------------------------------------------
 * etcd3_round_plan(): how a round of a call spends its time over the endpoints (L1) */

#define S USEC_PER_SEC

static void test_round_plan(void **state) {
    (void)state;
    EtcdRoundPlan p;
    /* the whole retry_timeout left: as Patroni splits it (3 nodes: 1 try each; 1 node: 3 tries) */
    etcd3_round_plan(3, 0, 10 * S, 10 * S, &p);
    assert_int_equal(p.nodes, 3);
    assert_int_equal(p.tries, 1);
    assert_int_equal(p.per_try, 10 * S / 3);
    etcd3_round_plan(1, 0, 10 * S, 10 * S, &p);
    assert_int_equal(p.nodes, 1);
    assert_int_equal(p.tries, 3);
    /* the caller's deadline (the fence point) 3 s away: the first round splits those 3 s, not retry_timeout
     * (the current endpoint black-holed would take all of them) */
    etcd3_round_plan(3, 0, 10 * S, 3 * S, &p);
    assert_int_equal(p.nodes, 3);
    assert_int_equal(p.per_try, 1 * S);
    /* under 2 s left: still a second endpoint, and all three while each gets 0.5 s */
    etcd3_round_plan(3, 0, 10 * S, 1500 * USEC_PER_MSEC, &p);
    assert_int_equal(p.nodes, 3);
    assert_int_equal(p.per_try, 500 * USEC_PER_MSEC);
    etcd3_round_plan(3, 0, 10 * S, 1200 * USEC_PER_MSEC, &p);
    assert_int_equal(p.nodes, 2);
    assert_int_equal(p.tries, 1);
    assert_int_equal(p.per_try, 600 * USEC_PER_MSEC);
    /* later rounds: the time left, as before */
    etcd3_round_plan(3, 1, 10 * S, 4 * S, &p);
    assert_int_equal(p.nodes, 3);
    assert_int_equal(p.per_try, 4 * S / 3);
    /* a short retry_timeout with all of it left: unchanged (1 s per try) */
    etcd3_round_plan(3, 0, 2 * S, 2 * S, &p);
    assert_int_equal(p.nodes, 2);
    assert_int_equal(p.per_try, 1 * S);
}

/* etcd's /version: the gateway's path, too old, still forming (retried, not fatal), not etcd. */
static void test_parse_version(void **state) {
    (void)state;
    char err[256];
    const char *prefix;
    assert_int_equal(etcd3_parse_version("e", "3.4.23", "3.4.0", &prefix, err, sizeof err), 0);
    assert_string_equal(prefix, "/v3");
    assert_int_equal(etcd3_parse_version("e", "3.3.27", "3.3.0", &prefix, err, sizeof err), 0);
    assert_string_equal(prefix, "/v3beta");
    assert_int_equal(etcd3_parse_version("e", "3.2.32", "3.2.0", &prefix, err, sizeof err), 0);
    assert_string_equal(prefix, "/v3alpha");
    assert_int_equal(etcd3_parse_version("e", "3.6.4", "3.6.0", &prefix, err, sizeof err), 0);
    assert_string_equal(prefix, "/v3");
    /* a forming cluster: wait for it (the caller retries), do not refuse it as too old */
    assert_int_equal(etcd3_parse_version("e", "3.5.9", "not_decided", &prefix, err, sizeof err), -EAGAIN);
    assert_null(prefix);
    assert_non_null(strstr(err, "still forming"));
    assert_int_equal(etcd3_parse_version("e", "2.3.8", "2.3.0", &prefix, err, sizeof err), -EPROTONOSUPPORT);
    assert_int_equal(etcd3_parse_version("e", "3.0.3", "3.0.0", &prefix, err, sizeof err), -EPROTONOSUPPORT);
    assert_int_equal(etcd3_parse_version("e", NULL, "3.4.0", &prefix, err, sizeof err), -EPROTO);
}

/* A key given twice (not by etcd; by a proxy or a fake, found by fuzzing): the later value replaces the
 * earlier, and the earlier's decoded contents are freed (the sanitizer build checks for leaks). */
static void test_duplicate_keys(void **state) {
    (void)state;
    Cluster *c = LOAD({K("initialize"), "1", 2, NULL, 0}, {K("initialize"), "2", 3, NULL, 0},
                      {K("config"), "{\"ttl\":30}", 4, NULL, 0}, {K("config"), "{\"ttl\":20}", 5, NULL, 0},
                      {K("failover"), "{\"leader\":\"a\",\"member\":\"b\",\"scheduled_at\":\"x\"}", 6, NULL, 0},
                      {K("failover"), "{\"member\":\"c\"}", 7, NULL, 0},
                      {K("sync"), "{\"leader\":\"a\",\"sync_standby\":\"b,c\"}", 8, NULL, 0},
                      {K("sync"), "{\"leader\":\"b\",\"sync_standby\":\"c\"}", 9, NULL, 0},
                      {K("history"), "[[1,2,\"x\"]]", 10, NULL, 0}, {K("history"), "{}", 11, NULL, 0},
                      {K("status"), "{\"optime\":5,\"slots\":{\"a\":1},\"retain_slots\":[\"a\"]}", 12, NULL, 0},
                      {K("status"), "{\"optime\":6}", 13, NULL, 0}, {K("failsafe"), "{\"a\":\"u\"}", 14, NULL, 0},
                      {K("failsafe"), "{\"b\":\"v\"}", 15, NULL, 0});
    assert_str(c->initialize, "2");
    long long ttl = 0;
    assert_true(json_get_ll(c->config, "ttl", &ttl));
    assert_ll(ttl, 20);
    assert_ll(c->config_version, 5);
    assert_null(c->failover.leader);
    assert_str(c->failover.candidate, "c");
    assert_null(c->failover.scheduled_at);
    assert_ll(c->failover.version, 7);
    assert_str(c->sync.leader, "b");
    assert_int_equal(c->sync.members.n, 1);
    assert_str(c->sync.members.v[0], "c");
    assert_false(c->has_history); /* the later value is not an array */
    assert_null(c->history);
    assert_ll(c->status.optime, 6);
    assert_null(c->status.slots);
    assert_int_equal(c->status.retain_slots.n, 0);
    assert_json(c->failsafe, "{\"b\":\"v\"}");
    cluster_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64_rfc4648_vectors),
        cmocka_unit_test(test_base64_all_bytes),
        cmocka_unit_test(test_base64_invalid),
        cmocka_unit_test(test_json_string_escaping),
        cmocka_unit_test(test_json_dumps_separators),
        cmocka_unit_test(test_json_getters),
        cmocka_unit_test(test_base_path),
        cmocka_unit_test(test_member_replica_example),
        cmocka_unit_test(test_member_all_fields_roundtrip),
        cmocka_unit_test(test_member_encode_omits_and_exact),
        cmocka_unit_test(test_member_legacy_url),
        cmocka_unit_test(test_member_conn_host_port),
        cmocka_unit_test(test_member_failover_rules),
        cmocka_unit_test(test_member_tag_bool),
        cmocka_unit_test(test_member_corrupt_values),
        cmocka_unit_test(test_member_wrong_types),
        cmocka_unit_test(test_member_unknown_fields),
        cmocka_unit_test(test_member_huge_values),
        cmocka_unit_test(test_member_keys_and_names),
        cmocka_unit_test(test_many_members),
        cmocka_unit_test(test_leader),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_initialize),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_encode_status),
        cmocka_unit_test(test_failover_decode),
        cmocka_unit_test(test_failover_encode),
        cmocka_unit_test(test_sync_decode),
        cmocka_unit_test(test_sync_encode),
        cmocka_unit_test(test_history),
        cmocka_unit_test(test_failsafe),
        cmocka_unit_test(test_full_cluster),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_parse_version),
        cmocka_unit_test(test_embedded_nul_ignored),
        cmocka_unit_test(test_round_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
