/* libFuzzer target: the etcd v3 client's handling of etcd's JSON replies (src/dcs/etcd3*.c). The real
 * client runs against a fake transport (this file replaces etcd3_http.c, the only part that talks to the
 * network): every request it sends is answered with the next reply of the input. A fixed sequence of DCS
 * operations runs as the agent makes them (connect: /version, authentication, the member list; the
 * cluster range; lease grant and keepalive; member put; the leader race, renewal and delete as txns;
 * compare-and-swap writes; raw reads; revoke), so the replies reach the call policy (gRPC error codes,
 * re-authentication, endpoint rotation, stale raft terms) and every decoder (range kvs, txn responses,
 * lease IDs). The cluster prefix is then read into the watch cache as the watch thread does, and the
 * watch stream chunks of the input are fed to the watch's stream parser (etcd3_watch_stream_write),
 * whose events update the cache the cluster view is built from.
 *
 * Input: sections separated by a line "%%". A section whose first line is "WATCH" is a chunk of the watch
 * stream (the rest of the section, as curl would deliver it); any other section is the next unary reply:
 * a first line with the HTTP status ("200", "400", ...; anything else: no answer, a transport error),
 * then the body. When the replies run out, every further request gets no answer.
 *
 * Waiting is cut out: usleep() is a no-op here and every operation runs under a 140 ms call deadline
 * (dcs_set_call_deadline), so a retry round never starts and no exec sleeps. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/json.h"
#include "common/yamltree.h"
#include "dcs/etcd3_int.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char config_yaml[] = "scope: batman\n"
                                  "name: pg1\n"
                                  "etcd3:\n"
                                  "  hosts: [127.0.0.1:2379, 127.0.0.2:2379]\n"
                                  "  username: root\n"
                                  "  password: secret\n"
                                  "restapi:\n"
                                  "  listen: 127.0.0.1:8008\n"
                                  "  connect_address: 127.0.0.1:8008\n"
                                  "postgresql:\n"
                                  "  listen: 127.0.0.1:5432\n"
                                  "  connect_address: 127.0.0.1:5432\n"
                                  "  data_dir: /var/lib/postgresql/data\n"
                                  "  authentication:\n"
                                  "    superuser: {username: postgres, password: pw}\n"
                                  "    replication: {username: replicator, password: pw}\n";

static PghaConfig cfg;

/* ---- the replies of this input ---- */

static FuzzSections secs;
static size_t next_reply, next_chunk;

static bool is_watch(const FuzzSection *s) { return s->len >= 5 && memcmp(s->s, "WATCH", 5) == 0; }

/* ---- the fake transport (etcd3_http.c's interface) ---- */

void etcd3_conn_prepare(Dcs *d, Conn *c, const char *token) {
    (void)d;
    (void)c;
    (void)token;
}

void etcd3_conn_free(Conn *c) { *c = (Conn){0}; }

CURLcode etcd3_http_perform(Dcs *d, Conn *c, const char *url, const char *body, long timeout_ms, long connect_ms,
                            curl_write_callback write_fn, void *write_data, char *curl_err) {
    (void)d;
    (void)c;
    (void)url;
    (void)body;
    (void)timeout_ms;
    (void)connect_ms;
    (void)write_fn;
    (void)write_data;
    snprintf(curl_err, CURL_ERROR_SIZE, "the fuzzer's transport streams nothing here");
    return CURLE_COULDNT_CONNECT;
}

int etcd3_http_fetch(Dcs *d, Conn *c, const char *token, const char *endpoint, const char *path, const char *body,
                     long timeout_ms, cJSON **ret, long *ret_status, char *err, size_t errlen) {
    (void)c;
    (void)token;
    (void)path;
    (void)timeout_ms;
    *ret = NULL;
    *ret_status = 0;
    d->st_requests++;
    if (body)
        d->st_sent += strlen(body);
    while (next_reply < secs.n && is_watch(&secs.v[next_reply]))
        next_reply++;
    if (next_reply >= secs.n) {
        snprintf(err, errlen, "%s: no answer (the input has no more replies)", endpoint);
        return -1;
    }
    const FuzzSection *s = &secs.v[next_reply++];
    const char *rest;
    size_t rest_len;
    char *status = fuzz_first_line(s, &rest, &rest_len);
    long long code = 0;
    bool answered = parse_ll(status, &code) == 0 && code >= 100 && code <= 599;
    free(status);
    if (!answered) {
        snprintf(err, errlen, "%s: connection refused", endpoint);
        return -1;
    }
    *ret_status = (long)code;
    d->st_received += rest_len;
    *ret = rest && rest_len ? cJSON_ParseWithLength(rest, rest_len) : NULL;
    return 0;
}

/* No waiting in a fuzzer: the retry pauses of etcd3_call() return at once. */
int usleep(useconds_t usec) {
    (void)usec;
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    char *err = NULL;
    YNode *t = yaml_parse_string(config_yaml, strlen(config_yaml), "fuzz_etcd", &err);
    CfgDiag diag = {0};
    if (!t || config_from_tree(t, "fuzz_etcd", &cfg, &diag) < 0) {
        fprintf(stderr, "fuzz_etcd: the configuration does not load: %s\n", err ? err : "invalid");
        abort();
    }
    ynode_free(t);
    cfg_diag_clear(&diag);
    return 0;
}

static void deadline(void) { dcs_set_call_deadline(now_monotonic() + 140 * USEC_PER_MSEC); }

static void use_cluster(Cluster *c) {
    if (!c)
        return;
    (void)cluster_timeline(c);
    for (size_t i = 0; i < c->n_members; i++)
        free(cluster_encode_member(&c->members[i]));
    cluster_free(c);
}

/* The watch thread's rebuild (a range of the prefix into the cache), then the stream. */
static void watch(Dcs *d) {
    DcsKv *kvs = NULL;
    size_t n = 0;
    long long rev = 0;
    deadline();
    pthread_mutex_lock(&d->req_lock);
    int r = etcd3_range_prefix_locked(d, false, &kvs, &n, &rev);
    pthread_mutex_unlock(&d->req_lock);
    if (r < 0)
        return;
    pthread_mutex_lock(&d->cache_lock);
    etcd3_cache_clear_locked(d);
    d->cache = kvs;
    d->n_cache = n;
    d->cache_revision = rev;
    d->cache_ready = true;
    pthread_mutex_unlock(&d->cache_lock);

    WatchStream s = {.d = d};
    sb_init(&s.buf);
    for (; next_chunk < secs.n; next_chunk++) {
        FuzzSection *sec = &secs.v[next_chunk];
        if (!is_watch(sec))
            continue;
        const char *chunk;
        size_t len;
        free(fuzz_first_line(sec, &chunk, &len));
        if (!chunk || !len)
            continue;
        /* curl's buffer is writable and not NUL-terminated: hand over a copy of exactly len bytes */
        char *copy = xmalloc(len);
        memcpy(copy, chunk, len);
        size_t taken = etcd3_watch_stream_write(copy, 1, len, &s);
        free(copy);
        if (taken != len)
            break; /* the stream ended (error, cancel, compaction, a message that does not parse) */
    }
    sb_free(&s.buf);
    Cluster *c = NULL;
    if (dcs_get_cluster_cached(d, &c) == 0)
        use_cluster(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_split(data, size, &secs);
    next_reply = next_chunk = 0;
    char *err = NULL;
    Dcs *d = dcs_new(&cfg, &err);
    if (!d) {
        fprintf(stderr, "fuzz_etcd: dcs_new: %s\n", err);
        abort();
    }
    dcs_set_timings(d, 30, 10, 10);

    deadline();
    (void)dcs_connect(d);
    Cluster *c = NULL;
    deadline();
    if (dcs_read_cluster(d, false, &c) < 0)
        c = NULL;
    deadline();
    (void)dcs_touch_member(d, "{\"conn_url\":\"postgres://127.0.0.1:5432/postgres\",\"api_url\":"
                              "\"http://127.0.0.1:8008/patroni\",\"state\":\"running\",\"role\":\"replica\"}");
    deadline();
    (void)dcs_attempt_to_acquire_leader(d);
    deadline();
    (void)dcs_update_leader(d, c);
    use_cluster(c);
    deadline();
    (void)dcs_update_leader(d, NULL);
    deadline();
    (void)dcs_set_config(d, "{\"ttl\":30}", 5);
    deadline();
    long long rev = 0;
    (void)dcs_set_sync_state(d, "{\"leader\":\"pg1\",\"sync_standby\":null}", 0, &rev);
    deadline();
    (void)dcs_delete_sync_state(d, 7);
    deadline();
    char *value = NULL;
    (void)dcs_get_raw(d, "initialize", &value, &rev);
    free(value);
    deadline();
    (void)dcs_initialize(d, true, "7400000000000000001");
    deadline();
    (void)dcs_refresh_lease(d, true);
    deadline();
    (void)dcs_take_leader(d);
    deadline();
    (void)dcs_delete_leader(d);
    deadline();
    (void)dcs_revoke_lease(d);
    deadline();
    if (dcs_read_cluster(d, true, &c) == 0)
        use_cluster(c);
    watch(d);
    deadline();
    (void)dcs_delete_cluster(d);
    DcsStats st;
    dcs_get_stats(d, &st);
    char ep[256];
    (void)dcs_endpoint(d, ep, sizeof ep);
    (void)dcs_error(d);

    dcs_set_call_deadline(0);
    dcs_free(d);
    fuzz_sections_free(&secs);
    return 0;
}
