/* The etcd v3 client's insides, shared by its files (none of this is seen above src/dcs):
 *
 *   etcd3.c        the dcs.h operations: the client from the configuration, reads, the lease, writes
 *   etcd3_reload.c a reload of the client's settings: tested on a side connection, then swapped
 *   etcd3_call.c   the call policy: per-call deadline, endpoint rotation, auth token and re-auth; connect
 *   etcd3_http.c   the transport: libcurl handles, TLS, socket options, one HTTP exchange
 *   etcd3_codec.c  the JSON of etcd requests and replies (base64 keys, range/txn/lease bodies, kvs)
 *   etcd3_watch.c  the watch thread and the cache it keeps
 *
 * Locks: req_lock (the caller-side connection, the lease, the member key) is taken before lock (endpoints,
 * token, last error) or cache_lock (the cache and the watch's state), never while holding either. The client
 * settings (protocol, configured, use_proxies, username, password, cacert, cert, key) change only under
 * req_lock and lock both (a reload's swap): read them under either. reload_lock is a leaf: nothing is taken
 * while holding it. */
#pragma once

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "common/util.h"
#include "dcs/dcs.h"

#define MAX_RESPONSE (64u * 1024 * 1024)

/* What of the configuration makes the client: endpoints, credentials, TLS files (dcs_new, dcs_reload). */
typedef struct ClientSettings {
    char *protocol;
    StrList configured;
    bool use_proxies;
    char *username, *password;
    char *cacert, *cert, *key;
} ClientSettings;

typedef struct Conn {
    CURL *curl;
    struct curl_slist *headers;
    char *token_in_headers;
} Conn;

struct Dcs {
    /* configuration */
    char *name;
    char *base;         /* /service/batman */
    char *prefix_key;   /* /service/batman/ */
    char *range_end;    /* /service/batman0 */
    char *protocol;     /* http or https */
    StrList configured; /* endpoints from the configuration, as base URLs */
    bool use_proxies;
    char *username, *password;
    char *cacert, *cert, *key;
    char *user_agent;

    /* timings (seconds) */
    _Atomic int ttl, loop_wait, retry_timeout;

    /* shared client state, under lock */
    pthread_mutex_t lock;
    StrList endpoints;
    size_t current;
    char *api_prefix; /* "/v3" */
    char *token;
    unsigned long long cluster_id; /* of the last answer (etcd's uint64; 0: none yet) */
    long long raft_term;
    usec_t cluster_seen;             /* the last answer from cluster_id (monotonic) */
    unsigned long long cluster_next; /* another cluster that every answer since cluster_seen came from, or 0 */
    usec_t cluster_next_since;       /* the clock of cluster_next: cluster_seen, or its first answer after another */
    bool cluster_pinned;             /* never follows another cluster (a reload's side client) */
    usec_t members_refreshed;
    char last_error[1024]; /* under lock: the last error of any thread (the watch thread's, for others) */

    /* the caller-side connection */
    pthread_mutex_t req_lock;
    usec_t op_deadline;         /* under req_lock: the deadline of the current multi-request operation, or 0 */
    const _Atomic bool *cancel; /* a side client's (etcd3_reload.c): etcd3_call() ends when it becomes true */
    Conn conn;

    /* lease and member key */
    long long lease_id;
    long long lease_ttl;
    _Atomic bool lease_stale; /* the client followed a new etcd cluster (etcd3_call.c, any thread): the HA thread's
                               * next renewal grants a new lease there */
    usec_t lease_refreshed;
    char *member_value; /* last value written to our member key */
    long long member_lease;

    /* watch and cache, under cache_lock */
    pthread_mutex_t cache_lock;
    pthread_cond_t cache_cond;
    DcsKv *cache;
    size_t n_cache;
    long long cache_revision;
    bool cache_ready;
    pthread_t watch_thread;
    bool watch_running;
    _Atomic bool watch_stop;
    _Atomic bool watch_reconnect;
    char *watch_endpoint; /* under lock */
    DcsWakeFn wake;
    void *wake_data;

    /* a reload of the settings (etcd3_reload.c), under reload_lock */
    pthread_mutex_t reload_lock;
    pthread_cond_t reload_cond;
    pthread_t reload_thread;
    bool reload_thread_started, reload_busy;
    _Atomic bool reload_stop;
    ClientSettings *reload_queued;  /* the settings waiting for their test, or NULL */
    unsigned long long reload_seq;  /* bumped by every dcs_reload(): a test of older settings is not applied */
    unsigned long long reload_done; /* tests finished (applied or not) */
    int reload_result;              /* of the last finished test: 1 swapped, or a negative errno */
    unsigned settings_gen;          /* bumped by every swap (under req_lock and lock): the watch makes a new handle */
    ClientSettings *reload_testing; /* a copy of the settings under test, or NULL */
    unsigned long long reload_testing_seq; /* the reload_seq of that test (it is applied only while they agree) */
    usec_t reload_retry_at;                /* the queued settings timed out: tested again then (monotonic), or 0 */
    char *reload_refusal; /* why the settings in the file are not in use, or NULL (dcs_reload_status) */

    /* statistics */
    _Atomic unsigned long long st_requests, st_sent, st_received, st_events, st_reconnects;
    _Atomic unsigned long long st_request_errors, st_request_usec; /* unary requests (etcd3_http_fetch) */
};

/* ---- etcd3.c ---- */

/* The settings from the configuration: 0, or -EINVAL with *ret_error (s is then to be freed all the same). */
int etcd3_settings_from_config(const PghaConfig *cfg, ClientSettings *s, char **ret_error);
void etcd3_settings_free(ClientSettings *s);
/* Exchange the settings of the client and s (the caller holds req_lock and lock, or owns d alone). */
void etcd3_settings_swap(Dcs *d, ClientSettings *s);
bool etcd3_settings_same(const Dcs *d, const ClientSettings *s);

/* Set this thread's dcs_error() and the client's last_error. */
void etcd3_set_error(Dcs *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The endpoint in use (caller holds lock), NULL when there is none. */
const char *etcd3_current_endpoint_locked(const Dcs *d);
/* Range over the cluster prefix (caller holds req_lock). */
int etcd3_range_prefix_locked(Dcs *d, bool linearizable, DcsKv **ret_kvs, size_t *ret_n, long long *ret_rev);
/* The cluster of these keys, at least at revision. */
Cluster *etcd3_cluster_of(const Dcs *d, const DcsKv *kvs, size_t n, long long revision);

/* ---- etcd3_http.c ---- */

/* The handle set up for a request: headers (with the auth token, if any), TLS files, socket options. */
void etcd3_conn_prepare(Dcs *d, Conn *c, const char *token);
void etcd3_conn_free(Conn *c);
/* One HTTP exchange on a prepared handle: a POST of body, or a GET when body is NULL. The answer goes
 * to write_fn; curl_err (CURL_ERROR_SIZE) receives curl's message. Counts the request and the bytes sent. */
CURLcode etcd3_http_perform(Dcs *d, Conn *c, const char *url, const char *body, long timeout_ms, long connect_ms,
                            curl_write_callback write_fn, void *write_data, char *curl_err);
/* One request to endpoint+path (GET when body is NULL) with the token, both timeouts timeout_ms, the
 * answer (at most MAX_RESPONSE) buffered. 0 with the HTTP status and the answer parsed as JSON (NULL when
 * it is not); -1 when there was no answer, with err set to "endpoint: why". */
int etcd3_http_fetch(Dcs *d, Conn *c, const char *token, const char *endpoint, const char *path, const char *body,
                     long timeout_ms, cJSON **ret, long *ret_status, char *err, size_t errlen);

/* ---- etcd3_call.c ---- */

/* A unary call to the API path api ("/kv/range") with failover between endpoints, bounded by
 * retry_timeout (and op_deadline). The caller holds req_lock. 0 and the answer, or a negative errno
 * with dcs_error() set. */
/* The calling thread's deadline: `deadline` (0: none) capped by dcs_set_call_deadline() and
 * dcs_set_lease_deadline(); 0 when there is none at all. */
usec_t etcd3_caller_deadline(usec_t deadline);
/* -ETIMEDOUT (with the error set) when the calling thread is in fail-fast mode and a call failed already. */
int etcd3_caller_gate(Dcs *d);
/* A call of the calling thread found etcd unreachable or ran out of time: in fail-fast mode (now or once it is
 * restored, dcs_restore_fail_fast), the next fail. */
void etcd3_caller_failed(void);
/* Take req_lock, waiting no longer than `limit` (monotonic, 0: none) and the calling thread's deadline:
 * 0, or -ETIMEDOUT with the error set (the lock not taken). Fails at once after a failure in fail-fast mode. */
int etcd3_req_lock(Dcs *d, usec_t limit);
/* How one round of etcd3_call() spends its time: `nodes` endpoints from the next one on, each tried `tries`
 * times with a timeout of `per_try` (never more than the time left). */
typedef struct EtcdRoundPlan {
    size_t nodes, tries;
    usec_t per_try;
} EtcdRoundPlan;
void etcd3_round_plan(size_t n, int round, usec_t retry_timeout, usec_t left, EtcdRoundPlan *ret);
int etcd3_parse_version(const char *endpoint, const char *server, const char *cluster, const char **ret_prefix,
                        char *err, size_t errlen);
int etcd3_call(Dcs *d, const char *api, cJSON *body_json, cJSON **ret);
/* dcs_connect() with req_lock held by the caller. */
int etcd3_connect_locked(Dcs *d);
/* Re-discover members every 10*ttl, or after every endpoint failed (caller holds req_lock). */
void etcd3_maybe_refresh_members_locked(Dcs *d);

/* What a test of new settings found (etcd3_probe): the endpoint that answered, the cluster behind it. */
typedef struct EtcdProbe {
    char *endpoint;
    char *api_prefix;
    char *token; /* NULL without credentials or when etcd has authentication off */
    unsigned long long cluster_id;
    long long raft_term;
    StrList members; /* the client URLs of the cluster's members (empty: not looked up, or through a proxy) */
} EtcdProbe;
void etcd3_probe_free(EtcdProbe *p);
/* Test the settings of the side client `side` (a Dcs of its own, no watch, used by this thread alone): the
 * configured endpoints in turn until `deadline` (monotonic), each asked /version, authenticated when a user
 * is set, and a serializable read of the leader key, whose answer names the cluster; then the members are
 * looked up there (not through a proxy), as a connect does. 0 with *ret filled;
 * -EACCES when etcd refused the credentials (or wants some); -ETIMEDOUT when no endpoint answered in time;
 * another negative errno for an answer that is not a usable etcd; dcs_error() says why. Stops early when
 * *cancel becomes true. */
int etcd3_probe(Dcs *side, usec_t deadline, const _Atomic bool *cancel, EtcdProbe *ret);

/* ---- etcd3_reload.c ---- */

/* Wait until no test of new settings is queued or running, at most until `deadline` (monotonic): 0, or
 * -ETIMEDOUT. *ret_result: the last test's outcome (1 swapped, or a negative errno). For tests. */
int etcd3_reload_wait(Dcs *d, usec_t deadline, int *ret_result);
/* Stop the test thread (dcs_free): a test under way ends at its next step. */
void etcd3_reload_stop(Dcs *d);

/* ---- etcd3_codec.c ---- */

/* {"key": key[, "range_end": range_end]}: a range or a delete. */
cJSON *etcd3_key_request(const char *key, const char *range_end);
cJSON *etcd3_put_request(const char *key, const char *value, long long lease);
/* {"ID": id}: a lease keepalive or revoke. */
cJSON *etcd3_lease_request(long long id);
/* A watch of [key, range_end) from start_revision on. */
cJSON *etcd3_watch_request(const char *key, const char *range_end, long long start_revision);
/* Compares: the key does not exist; its value is value; its mod_revision is version. */
cJSON *etcd3_compare_absent(const char *key);
cJSON *etcd3_compare_value(const char *key, const char *value);
cJSON *etcd3_compare_mod(const char *key, long long version);
/* A txn of one compare and one operation (success_kind: "request_put", ...), and on failure an
 * optional nested txn; takes ownership of its arguments. */
cJSON *etcd3_txn(cJSON *cmp, cJSON *success_op, const char *success_kind, cJSON *failure_txn);
long long etcd3_header_revision(const cJSON *resp);
bool etcd3_txn_succeeded(const cJSON *resp);
bool etcd3_decode_kv(const cJSON *j, DcsKv *ret);
/* The "kvs" of a range answer, without the entries that do not decode. */
DcsKv *etcd3_decode_kvs(const cJSON *resp, size_t *ret_n);
void etcd3_free_kvs(DcsKv *kvs, size_t n);

/* ---- etcd3_watch.c ---- */

/* Under cache_lock (or with the watch stopped, for dcs_free). */
DcsKv *etcd3_cache_find_locked(Dcs *d, const char *key);
void etcd3_cache_clear_locked(Dcs *d);
/* One streaming watch: the bytes not yet parsed and how it ended. */
typedef struct WatchStream {
    Dcs *d;
    StrBuf buf; /* bytes not yet parsed */
    bool ended; /* the server ended the watch (error, cancel, compaction) */
    bool created;
    bool needs_resync; /* compacted: rebuild from a fresh range */
} WatchStream;
/* The watch's curl write callback (ud: a WatchStream): splits the stream into messages and applies their
 * events to the cache; returns less than size * nmemb when the stream is to end. Exposed for the fuzzer. */
size_t etcd3_watch_stream_write(char *ptr, size_t size, size_t nmemb, void *ud);
/* Apply our own successful write at once (spec §1.4): put (value != NULL) or delete. */
void etcd3_cache_apply_own(Dcs *d, const char *key, const char *value, long long lease, long long revision);
/* A lost compare-and-swap means our view was stale: make the watch rebuild its cache. */
void etcd3_cas_lost(Dcs *d);
