/* etcd v3 through its gRPC JSON gateway (spec §1.4), over libcurl + cJSON.
 *
 * Two connections: the caller's (HA thread, REST handlers, pgha-ctl; serialised by req_lock)
 * and the watch thread's streaming /watch. The watch always follows the endpoint the caller
 * side last used successfully: when a request fails over to another etcd member, the watch is
 * told to reconnect there, so a frozen member (SIGSTOP keeps its sockets open) cannot leave the
 * cache silently stale while the leader lease is renewed elsewhere. */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/base64.h"
#include "common/json.h"
#include "common/log.h"
#include "dcs/dcs.h"
#include "dcs/curlinit.h"

#define MAX_RESPONSE (64u * 1024 * 1024)

typedef struct Conn {
    CURL *curl;
    struct curl_slist *headers;
    char *token_in_headers;
} Conn;

struct Dcs {
    /* configuration */
    char *name;
    char *base;          /* /service/batman */
    char *prefix_key;    /* /service/batman/ */
    char *range_end;     /* /service/batman0 */
    char *protocol;      /* http or https */
    StrList configured;  /* endpoints from the configuration, as base URLs */
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
    char *api_prefix;    /* "/v3" */
    char *token;
    long long cluster_id;
    long long raft_term;
    usec_t members_refreshed;
    char last_error[1024]; /* under lock: the last error of any thread (the watch thread's, for others) */

    /* the caller-side connection */
    pthread_mutex_t req_lock;
    usec_t op_deadline; /* under req_lock: the deadline of the current multi-request operation, or 0 */
    Conn conn;

    /* lease and member key */
    long long lease_id;
    long long lease_ttl;
    usec_t lease_refreshed;
    char *member_value;   /* last value written to our member key */
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

    /* statistics */
    _Atomic unsigned long long st_requests, st_sent, st_received, st_events, st_reconnects;
};


static void set_error(Dcs *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* dcs_error() is per thread: the HA loop, the REST threads and the watch thread each call into the
 * client, and one shared buffer would let one thread's message be overwritten (or read half-written)
 * by another's. */
static _Thread_local char thread_error[1024];

static void set_error(Dcs *d, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(thread_error, sizeof thread_error, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&d->lock);
    memcpy(d->last_error, thread_error, sizeof d->last_error);
    pthread_mutex_unlock(&d->lock);
}

const char *dcs_error(const Dcs *d) {
    (void)d;
    return thread_error;
}
const char *dcs_base_path_of(const Dcs *d) { return d->base; }
long long dcs_lease_id(const Dcs *d) { return d->lease_id; }

void dcs_get_stats(Dcs *d, DcsStats *ret) {
    *ret = (DcsStats){.requests = d->st_requests, .bytes_sent = d->st_sent, .bytes_received = d->st_received,
                      .watch_events = d->st_events, .watch_reconnects = d->st_reconnects};
}

const char *dcs_endpoint(Dcs *d, char *buf, size_t len) {
    pthread_mutex_lock(&d->lock);
    snprintf(buf, len, "%s", d->endpoints.n ? d->endpoints.v[d->current % d->endpoints.n] : "");
    pthread_mutex_unlock(&d->lock);
    return buf;
}

void dcs_set_timings(Dcs *d, int ttl, int loop_wait, int retry_timeout) {
    d->ttl = ttl > 0 ? ttl : 30;
    d->loop_wait = loop_wait > 0 ? loop_wait : 10;
    d->retry_timeout = retry_timeout > 0 ? retry_timeout : 10;
}

/* ---- endpoints from the configuration ---- */

static char *endpoint_url(const char *protocol, const char *hostport, long long default_port) {
    _cleanup_free_ char *host = NULL;
    int port;
    if (parse_host_port(hostport, (int)default_port, &host, &port) < 0)
        return NULL;
    if (strchr(host, ':'))
        return xasprintf("%s://[%s]:%d", protocol, host, port);
    return xasprintf("%s://%s:%d", protocol, host, port);
}

/* "http(s)://[user:pass@]host[:port]" -> base URL, credentials. */
static char *parse_url(const char *url, char **user, char **pass) {
    const char *scheme_end = strstr(url, "://");
    if (!scheme_end)
        return NULL;
    _cleanup_free_ char *scheme = xstrndup(url, (size_t)(scheme_end - url));
    const char *rest = scheme_end + 3;
    const char *slash = strchr(rest, '/');
    _cleanup_free_ char *authority = slash ? xstrndup(rest, (size_t)(slash - rest)) : xstrdup(rest);
    char *hostport = authority;
    char *at = strrchr(authority, '@');
    if (at) {
        *at = '\0';
        char *colon = strchr(authority, ':');
        if (colon) {
            *colon = '\0';
            *pass = xstrdup(colon + 1);
        }
        *user = xstrdup(authority);
        hostport = at + 1;
    }
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)
        return NULL;
    return endpoint_url(scheme, hostport, 2379);
}

Dcs *dcs_new(const PghaConfig *cfg, char **ret_error) {
    pgha_curl_global_init();
    Dcs *d = xcalloc(1, sizeof *d);
    pthread_mutex_init(&d->lock, NULL);
    pthread_mutex_init(&d->req_lock, NULL);
    pthread_mutex_init(&d->cache_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cache_cond, &ca);
    pthread_condattr_destroy(&ca);
    d->name = xstrdup(cfg->name);
    d->base = dcs_base_path(cfg->namespace_, cfg->scope);
    d->prefix_key = xasprintf("%s/", d->base);
    d->range_end = xasprintf("%s0", d->base);
    d->username = xstrdup(cfg->etcd3.username);
    d->password = xstrdup(cfg->etcd3.password);
    d->cacert = xstrdup(cfg->etcd3.cacert);
    d->cert = xstrdup(cfg->etcd3.cert);
    d->key = xstrdup(cfg->etcd3.key);
    d->use_proxies = cfg->etcd3.use_proxies;
    d->user_agent = xasprintf("pgha/%s (Patroni/%s compatible)", PGHA_VERSION, PGHA_PATRONI_VERSION);
    dcs_set_timings(d, 30, 10, 10);

    const char *protocol = cfg->etcd3.protocol ? cfg->etcd3.protocol : "http";
    if (!config_is_set(cfg, "etcd3.protocol") && (cfg->etcd3.cacert || cfg->etcd3.cert))
        protocol = "https";
    d->protocol = xstrdup(protocol);

    if (cfg->etcd3.srv) {
        *ret_error = xstrdup("etcd3.srv (DNS SRV discovery) is not supported by pgha; list the members in "
                             "etcd3.hosts instead");
        return dcs_free(d);
    }
    const char *url = cfg->etcd3.proxy ? cfg->etcd3.proxy : cfg->etcd3.url;
    if (url) {
        char *user = NULL, *pass = NULL;
        char *ep = parse_url(url, &user, &pass);
        if (!ep) {
            free(user);
            free(pass);
            *ret_error = xasprintf("etcd3.%s: '%s' is not a valid URL", cfg->etcd3.proxy ? "proxy" : "url", url);
            return dcs_free(d);
        }
        strlist_add(&d->configured, ep);
        free(ep);
        if (user && !d->username) {
            d->username = user;
            user = NULL;
        }
        if (pass && !d->password) {
            d->password = pass;
            pass = NULL;
        }
        free(user);
        free(pass);
        if (cfg->etcd3.proxy)
            d->use_proxies = true;
    }
    for (size_t i = 0; i < cfg->etcd3.hosts.n; i++) {
        char *ep = endpoint_url(protocol, cfg->etcd3.hosts.v[i], cfg->etcd3.port);
        if (!ep) {
            *ret_error = xasprintf("etcd3.hosts: '%s' is not a valid host[:port]", cfg->etcd3.hosts.v[i]);
            return dcs_free(d);
        }
        if (!strlist_contains(&d->configured, ep))
            strlist_add(&d->configured, ep);
        free(ep);
    }
    if (cfg->etcd3.host) {
        char *ep = endpoint_url(protocol, cfg->etcd3.host, cfg->etcd3.port);
        if (!ep) {
            *ret_error = xasprintf("etcd3.host: '%s' is not a valid host[:port]", cfg->etcd3.host);
            return dcs_free(d);
        }
        if (!strlist_contains(&d->configured, ep))
            strlist_add(&d->configured, ep);
        free(ep);
    }
    if (d->configured.n == 0) {
        *ret_error = xstrdup("no etcd endpoint configured (etcd3.host, hosts, url or proxy)");
        return dcs_free(d);
    }
    strlist_copy(&d->endpoints, &d->configured);
    d->api_prefix = xstrdup("/v3");
    return d;
}

static void conn_free(Conn *c) {
    if (c->curl)
        curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->headers);
    free(c->token_in_headers);
    *c = (Conn){0};
}

static void cache_clear_locked(Dcs *d) {
    for (size_t i = 0; i < d->n_cache; i++)
        dcs_kv_free_contents(&d->cache[i]);
    free(d->cache);
    d->cache = NULL;
    d->n_cache = 0;
}

Dcs *dcs_free(Dcs *d) {
    if (!d)
        return NULL;
    dcs_stop_watch(d);
    conn_free(&d->conn);
    cache_clear_locked(d);
    free(d->name);
    free(d->base);
    free(d->prefix_key);
    free(d->range_end);
    free(d->protocol);
    strlist_clear(&d->configured);
    strlist_clear(&d->endpoints);
    free(d->username);
    free(d->password);
    free(d->cacert);
    free(d->cert);
    free(d->key);
    free(d->user_agent);
    free(d->api_prefix);
    free(d->token);
    free(d->member_value);
    free(d->watch_endpoint);
    pthread_mutex_destroy(&d->lock);
    pthread_mutex_destroy(&d->req_lock);
    pthread_mutex_destroy(&d->cache_lock);
    pthread_cond_destroy(&d->cache_cond);
    free(d);
    return NULL;
}

/* ---- HTTP ---- */

typedef struct Body {
    StrBuf buf;
    bool overflow;
    Dcs *d;
} Body;

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *ud) {
    Body *b = ud;
    size_t n = size * nmemb;
    if (b->buf.len + n > MAX_RESPONSE) {
        b->overflow = true;
        return 0;
    }
    sb_addn(&b->buf, ptr, n);
    return n;
}

/* TCP keepalive as Patroni sets it on etcd sockets (spec §1.4). */
static int sockopt_cb(void *ud, curl_socket_t fd, curlsocktype purpose) {
    Dcs *d = ud;
    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKOPT_OK;
    int ttl = d->ttl, lw = d->loop_wait, rt = d->retry_timeout;
    int on = 1, idle = lw + rt, intvl = (ttl - idle) / 3, cnt = 3;
    unsigned user_timeout = (unsigned)ttl * 1000u;
    if (intvl < 1)
        intvl = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    return CURL_SOCKOPT_OK;
}

static void conn_prepare(Dcs *d, Conn *c, const char *token) {
    if (!c->curl)
        c->curl = curl_easy_init();
    if (!c->curl)
        abort();
    if (!c->headers || !streq(c->token_in_headers, token)) {
        curl_slist_free_all(c->headers);
        c->headers = curl_slist_append(NULL, "Content-Type: application/json");
        c->headers = curl_slist_append(c->headers, "Expect:");
        if (token) {
            _cleanup_free_ char *h = xasprintf("authorization: %s", token);
            c->headers = curl_slist_append(c->headers, h);
        }
        free(c->token_in_headers);
        c->token_in_headers = xstrdup(token);
    }
    CURL *h = c->curl;
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(h, CURLOPT_USERAGENT, d->user_agent);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, sockopt_cb);
    curl_easy_setopt(h, CURLOPT_SOCKOPTDATA, d);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (d->cacert)
        curl_easy_setopt(h, CURLOPT_CAINFO, d->cacert);
    if (d->cert)
        curl_easy_setopt(h, CURLOPT_SSLCERT, d->cert);
    if (d->key)
        curl_easy_setopt(h, CURLOPT_SSLKEY, d->key);
}

typedef enum Outcome {
    OUT_OK,          /* a JSON answer without error */
    OUT_NEXT,        /* this endpoint is unusable now: try the next one */
    OUT_RETRY,       /* try the same endpoint again (DeadlineExceeded, FailedPrecondition) */
    OUT_REAUTH,      /* the token is invalid or expired */
    OUT_FAIL,        /* a definite error from etcd: stop */
} Outcome;

/* One POST to one endpoint. */
static Outcome post_once(Dcs *d, Conn *c, const char *endpoint, const char *path, const char *body,
                         long timeout_ms, const char *token, cJSON **ret, int *ret_grpc, char *err, size_t errlen) {
    *ret = NULL;
    *ret_grpc = 0;
    conn_prepare(d, c, token);
    _cleanup_free_ char *url = xasprintf("%s%s", endpoint, path);
    Body b = {.d = d};
    sb_init(&b.buf);
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, curl_err);
    d->st_requests++;
    d->st_sent += strlen(body);
    CURLcode rc = curl_easy_perform(c->curl);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, NULL);
    d->st_received += b.buf.len;
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s: %s", endpoint, b.overflow ? "response larger than 64 MiB" : (curl_err[0] ? curl_err : curl_easy_strerror(rc)));
        sb_free(&b.buf);
        return OUT_NEXT;
    }
    long status = 0;
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    cJSON *j = b.buf.s ? cJSON_ParseWithLength(b.buf.s, b.buf.len) : NULL;
    if (!cJSON_IsObject(j)) {
        snprintf(err, errlen, "%s: HTTP %ld with a response that is not a JSON object", endpoint, status);
        cJSON_Delete(j);
        sb_free(&b.buf);
        return OUT_NEXT;
    }
    sb_free(&b.buf);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (e) {
        long long code = 0;
        (void)json_get_ll(j, "code", &code);
        const char *msg = json_get_string(j, "message");
        if (!msg)
            msg = cJSON_IsString(e) ? e->valuestring : "unknown error";
        *ret_grpc = (int)code;
        snprintf(err, errlen, "%s: %s (gRPC code %lld)", endpoint, msg, code);
        Outcome o = OUT_FAIL;
        /* Unavailable, and Canceled: a member shutting down answers "grpc: the client connection is
         * closing" (code 1) for a moment; the next member can serve the request */
        if (code == 14 || code == 1)
            o = OUT_NEXT;
        else if (code == 16 || strstr(msg, "invalid auth token") || strstr(msg, "revision of auth store is old") ||
                 strstr(msg, "user name is empty") || (code == 7 && strstr(msg, "permission denied")))
            o = OUT_REAUTH;
        else if (code == 4 || code == 9)
            o = OUT_RETRY;
        cJSON_Delete(j); /* msg points into j */
        return o;
    }
    if (status >= 400) {
        snprintf(err, errlen, "%s: HTTP %ld", endpoint, status);
        cJSON_Delete(j);
        return OUT_NEXT;
    }
    /* a member with a lower raft term than one seen before for the same cluster is stale */
    const cJSON *hdr = cJSON_GetObjectItemCaseSensitive(j, "header");
    long long cid = 0, term = 0;
    if (hdr && json_get_i64str(hdr, "cluster_id", &cid) && json_get_i64str(hdr, "raft_term", &term)) {
        pthread_mutex_lock(&d->lock);
        bool stale = cid == d->cluster_id && term < d->raft_term;
        if (cid != d->cluster_id || term > d->raft_term) {
            d->cluster_id = cid;
            d->raft_term = term;
        }
        pthread_mutex_unlock(&d->lock);
        if (stale) {
            snprintf(err, errlen, "%s: raft term %lld is older than %lld seen before; the member is stale",
                     endpoint, term, d->raft_term);
            cJSON_Delete(j);
            return OUT_NEXT;
        }
    }
    *ret = j;
    return OUT_OK;
}

static int authenticate_locked(Dcs *d, Conn *c, const char *endpoint, long timeout_ms, char *err, size_t errlen);

/* A unary call with failover between endpoints, bounded by retry_timeout. The caller holds
 * req_lock. Returns 0 and the answer, or a negative errno with dcs_error() set.
 *
 * Like Patroni's api_execute(): a round tries the endpoints in turn, each with the time left split
 * over as many of them as get at least 1 s (1-node clusters up to 3 tries, 2-node clusters up to 2
 * per node); when a round fails everywhere, it pauses (0.1 s, doubling up to 1 s) and starts another
 * one with the time that is left, on the endpoints after the last one tried, until the deadline. A
 * single round is not enough: while etcd elects a new leader every member fails or times out for a
 * second or two, and giving up then leaves part of retry_timeout unused. */
static int call(Dcs *d, const char *api, cJSON *body_json, cJSON **ret) {
    *ret = NULL;
    _cleanup_free_ char *body = cJSON_PrintUnformatted(body_json);
    usec_t start = now_monotonic();
    usec_t deadline = start + (usec_t)d->retry_timeout * USEC_PER_SEC;
    /* a multi-request operation (the leader update) shares one deadline */
    if (d->op_deadline && d->op_deadline < deadline)
        deadline = d->op_deadline;
    pthread_mutex_lock(&d->lock);
    StrList eps;
    strlist_copy(&eps, &d->endpoints);
    size_t first = eps.n ? d->current % eps.n : 0;
    _cleanup_free_ char *path = xasprintf("%s%s", d->api_prefix, api);
    pthread_mutex_unlock(&d->lock);
    if (eps.n == 0) {
        set_error(d, "etcd: no endpoint to send the request to");
        strlist_clear(&eps);
        return -ENOENT;
    }
    size_t n = eps.n;
    char **errs = xcalloc(n, sizeof(char *)); /* the latest error of each endpoint */
    bool reauthed = false;
    int result = -ETIMEDOUT;
    int last_grpc = 0;
    size_t next = first;
    usec_t pause = 100 * USEC_PER_MSEC;
    for (int round = 0; result == -ETIMEDOUT; round++) {
        usec_t now = now_monotonic();
        if (round > 0) {
            if (now + 150 * USEC_PER_MSEC >= deadline)
                break;
            usec_t s = deadline - now - 100 * USEC_PER_MSEC;
            usleep((useconds_t)(pause < s ? pause : s));
            pause = pause * 2 < USEC_PER_SEC ? pause * 2 : USEC_PER_SEC;
            now = now_monotonic();
        }
        if (now + 50 * USEC_PER_MSEC >= deadline)
            break;
        /* per-try timeout: the time left (all of retry_timeout in the first round) over the nodes,
         * dropping nodes until it is at least 1 s */
        usec_t left = deadline - now, budget = round == 0 ? (usec_t)d->retry_timeout * USEC_PER_SEC : left;
        size_t nodes = n;
        while (nodes > 1 && budget / nodes < USEC_PER_SEC)
            nodes--;
        size_t tries = 1, max_tries = nodes >= 3 ? 1 : 4 - nodes;
        while (tries < max_tries && budget / nodes / (tries + 1) >= USEC_PER_SEC)
            tries++;
        usec_t per_try = budget / nodes / tries;
        for (size_t k = 0; k < nodes * tries; k++) {
            now = now_monotonic();
            if (now + 50 * USEC_PER_MSEC >= deadline)
                break;
            left = deadline - now;
            long timeout_ms = (long)((per_try < left ? per_try : left) / USEC_PER_MSEC);
            size_t idx = next++ % n;
            const char *ep = eps.v[idx];
            char err[512] = "";
            pthread_mutex_lock(&d->lock);
            _cleanup_free_ char *token = xstrdup(d->token);
            pthread_mutex_unlock(&d->lock);
            cJSON *j = NULL;
            Outcome o = post_once(d, &d->conn, ep, path, body, timeout_ms, token, &j, &last_grpc, err, sizeof err);
            if (o == OUT_REAUTH && !reauthed && d->username) {
                reauthed = true;
                log_debug("etcd request %s: %s; authenticating again", api, err);
                char aerr[512] = "";
                if (authenticate_locked(d, &d->conn, ep, timeout_ms, aerr, sizeof aerr) == 0) {
                    pthread_mutex_lock(&d->lock);
                    free(token);
                    token = xstrdup(d->token);
                    pthread_mutex_unlock(&d->lock);
                    o = post_once(d, &d->conn, ep, path, body, timeout_ms, token, &j, &last_grpc, err, sizeof err);
                } else {
                    snprintf(err, sizeof err, "%s", aerr);
                    o = OUT_FAIL;
                }
            }
            for (int t = 0; o == OUT_RETRY && t < 3 && now_monotonic() + 100 * USEC_PER_MSEC < deadline; t++) {
                usleep(100 * 1000);
                o = post_once(d, &d->conn, ep, path, body, timeout_ms, token, &j, &last_grpc, err, sizeof err);
            }
            if (o == OUT_OK) {
                pthread_mutex_lock(&d->lock);
                /* remember the endpoint that works; the watch follows it */
                for (size_t i = 0; i < d->endpoints.n; i++)
                    if (strcmp(d->endpoints.v[i], ep) == 0)
                        d->current = i;
                bool moved = d->watch_endpoint && strcmp(d->watch_endpoint, ep) != 0;
                pthread_mutex_unlock(&d->lock);
                if (moved)
                    d->watch_reconnect = true;
                *ret = j;
                result = 0;
                break;
            }
            log_debug("etcd request %s failed: %s", api, err);
            free(errs[idx]);
            errs[idx] = xstrdup(err);
            if (o == OUT_FAIL || o == OUT_REAUTH) {
                result = last_grpc == 5 ? -ENOENT : (o == OUT_REAUTH || last_grpc == 7 || last_grpc == 16) ? -EACCES : -EIO;
                break;
            }
        }
    }
    if (result < 0) {
        double took = (double)(now_monotonic() - start) / 1e6;
        StrBuf errors;
        sb_init(&errors);
        for (size_t k = 0; k < n; k++) {
            const char *e = errs[(first + k) % n];
            if (!e)
                continue;
            if (errors.len)
                sb_add(&errors, "; ");
            sb_add(&errors, e);
        }
        if (result == -ETIMEDOUT)
            set_error(d, "etcd is not reachable (%.1f s, retry_timeout %d s): %s", took, (int)d->retry_timeout,
                      errors.len ? errors.s : "no endpoint answered");
        else
            set_error(d, "%s", errors.len ? errors.s : "etcd request failed");
        sb_free(&errors);
        if (result == -ETIMEDOUT) {
            /* every endpoint failed: look for the members again next time, and move the watch */
            pthread_mutex_lock(&d->lock);
            d->members_refreshed = 0;
            d->current = (first + 1) % n;
            pthread_mutex_unlock(&d->lock);
            d->watch_reconnect = true;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(errs[i]);
    free(errs);
    strlist_clear(&eps);
    return result;
}

static int authenticate_locked(Dcs *d, Conn *c, const char *endpoint, long timeout_ms, char *err, size_t errlen) {
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "name", d->username ? d->username : "");
    cJSON_AddStringToObject(req, "password", d->password ? d->password : "");
    _cleanup_free_ char *body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    pthread_mutex_lock(&d->lock);
    _cleanup_free_ char *path = xasprintf("%s/auth/authenticate", d->api_prefix);
    pthread_mutex_unlock(&d->lock);
    cJSON *j = NULL;
    int grpc = 0;
    Outcome o = post_once(d, c, endpoint, path, body, timeout_ms, NULL, &j, &grpc, err, errlen);
    if (o != OUT_OK) {
        if (strstr(err, "authentication is not enabled")) {
            pthread_mutex_lock(&d->lock);
            free(d->token);
            d->token = NULL;
            pthread_mutex_unlock(&d->lock);
            return 0;
        }
        return o == OUT_NEXT ? -ETIMEDOUT : -EACCES;
    }
    const char *token = json_get_string(j, "token");
    if (!token) {
        snprintf(err, errlen, "%s: authentication answer without a token", endpoint);
        cJSON_Delete(j);
        return -EPROTO;
    }
    pthread_mutex_lock(&d->lock);
    free(d->token);
    d->token = xstrdup(token);
    pthread_mutex_unlock(&d->lock);
    cJSON_Delete(j);
    return 0;
}

/* ---- connect: API version, members, authentication ---- */

static int get_version(Dcs *d, const char *endpoint, long timeout_ms, char *err, size_t errlen) {
    conn_prepare(d, &d->conn, NULL);
    _cleanup_free_ char *url = xasprintf("%s/version", endpoint);
    Body b = {.d = d};
    sb_init(&b.buf);
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(d->conn.curl, CURLOPT_URL, url);
    curl_easy_setopt(d->conn.curl, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(d->conn.curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(d->conn.curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(d->conn.curl, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(d->conn.curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(d->conn.curl, CURLOPT_ERRORBUFFER, curl_err);
    d->st_requests++;
    CURLcode rc = curl_easy_perform(d->conn.curl);
    curl_easy_setopt(d->conn.curl, CURLOPT_ERRORBUFFER, NULL);
    d->st_received += b.buf.len;
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s: %s", endpoint, curl_err[0] ? curl_err : curl_easy_strerror(rc));
        sb_free(&b.buf);
        return -ETIMEDOUT;
    }
    cJSON *j = b.buf.s ? cJSON_ParseWithLength(b.buf.s, b.buf.len) : NULL;
    sb_free(&b.buf);
    const char *server = json_get_string(j, "etcdserver"), *cluster = json_get_string(j, "etcdcluster");
    if (!server || !cluster) {
        snprintf(err, errlen, "%s: /version did not answer like etcd", endpoint);
        cJSON_Delete(j);
        return -EPROTO;
    }
    int smaj = 0, smin = 0, spatch = 0, cmaj = 0, cmin = 0;
    (void)sscanf(server, "%d.%d.%d", &smaj, &smin, &spatch);
    (void)sscanf(cluster, "%d.%d", &cmaj, &cmin);
    int r = 0;
    if (smaj < 3 || (smaj == 3 && smin == 0 && spatch < 4) || cmaj < 3) {
        snprintf(err, errlen, "%s: etcd %s (cluster %s) is too old; etcd >= 3.0.4 with the v3 API is required",
                 endpoint, server, cluster);
        r = -EPROTONOSUPPORT;
    } else {
        const char *prefix = (cmaj == 3 && cmin < 3) ? "/v3alpha" : (cmaj == 3 && cmin == 3) ? "/v3beta" : "/v3";
        pthread_mutex_lock(&d->lock);
        free(d->api_prefix);
        d->api_prefix = xstrdup(prefix);
        pthread_mutex_unlock(&d->lock);
    }
    cJSON_Delete(j);
    return r;
}

static void refresh_members_locked(Dcs *d) {
    if (d->use_proxies)
        return;
    cJSON *req = cJSON_CreateObject();
    cJSON *resp = NULL;
    int r = call(d, "/cluster/member/list", req, &resp);
    cJSON_Delete(req);
    if (r < 0)
        return;
    StrList urls = {0};
    const cJSON *members = cJSON_GetObjectItemCaseSensitive(resp, "members");
    const cJSON *m;
    cJSON_ArrayForEach(m, members) {
        const cJSON *cu = cJSON_GetObjectItemCaseSensitive(m, "clientURLs");
        const cJSON *u;
        cJSON_ArrayForEach(u, cu) if (cJSON_IsString(u) && !strlist_contains(&urls, u->valuestring))
            strlist_add(&urls, u->valuestring);
    }
    cJSON_Delete(resp);
    if (urls.n == 0) {
        strlist_clear(&urls);
        return;
    }
    pthread_mutex_lock(&d->lock);
    const char *cur = d->endpoints.n ? d->endpoints.v[d->current % d->endpoints.n] : NULL;
    size_t new_current = 0;
    for (size_t i = 0; cur && i < urls.n; i++)
        if (strcmp(urls.v[i], cur) == 0)
            new_current = i;
    strlist_clear(&d->endpoints);
    d->endpoints = urls;
    d->current = new_current;
    d->members_refreshed = now_monotonic();
    pthread_mutex_unlock(&d->lock);
}

static int connect_locked(Dcs *d) {
    usec_t deadline = now_monotonic() + (usec_t)d->retry_timeout * USEC_PER_SEC;
    StrBuf errors;
    sb_init(&errors);
    int r = -ETIMEDOUT;
    pthread_mutex_lock(&d->lock);
    StrList eps;
    strlist_copy(&eps, &d->endpoints);
    for (size_t i = 0; i < d->configured.n; i++)
        if (!strlist_contains(&eps, d->configured.v[i]))
            strlist_add(&eps, d->configured.v[i]);
    size_t first = d->current;
    pthread_mutex_unlock(&d->lock);
    for (size_t k = 0; k < eps.n; k++) {
        usec_t now = now_monotonic();
        if (now >= deadline)
            break;
        long timeout_ms = (long)((deadline - now) / USEC_PER_MSEC);
        long per_node = (long)d->retry_timeout * 1000 / (long)eps.n;
        if (per_node < 1000)
            per_node = 1000;
        if (timeout_ms > per_node)
            timeout_ms = per_node;
        const char *ep = eps.v[(first + k) % eps.n];
        char err[512] = "";
        r = get_version(d, ep, timeout_ms, err, sizeof err);
        if (r == 0 && d->username)
            r = authenticate_locked(d, &d->conn, ep, timeout_ms, err, sizeof err);
        if (r == 0) {
            pthread_mutex_lock(&d->lock);
            for (size_t i = 0; i < d->endpoints.n; i++)
                if (strcmp(d->endpoints.v[i], ep) == 0)
                    d->current = i;
            if (!strlist_contains(&d->endpoints, ep)) {
                strlist_add(&d->endpoints, ep);
                d->current = d->endpoints.n - 1;
            }
            pthread_mutex_unlock(&d->lock);
            break;
        }
        if (errors.len)
            sb_add(&errors, "; ");
        sb_add(&errors, err);
        if (r == -EACCES || r == -EPROTONOSUPPORT)
            break;
    }
    if (r == 0)
        refresh_members_locked(d);
    else
        set_error(d, "cannot connect to etcd: %s", errors.len ? errors.s : "no endpoint");
    sb_free(&errors);
    strlist_clear(&eps);
    return r;
}

int dcs_connect(Dcs *d) {
    pthread_mutex_lock(&d->req_lock);
    int r = connect_locked(d);
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

/* Re-discover members every 10*ttl, or after every endpoint failed. */
static void maybe_refresh_members_locked(Dcs *d) {
    pthread_mutex_lock(&d->lock);
    bool due = !d->use_proxies &&
               (d->members_refreshed == 0 ||
                now_monotonic() - d->members_refreshed > (usec_t)(10 * d->ttl) * USEC_PER_SEC);
    pthread_mutex_unlock(&d->lock);
    if (due)
        refresh_members_locked(d);
}

/* ---- request builders ---- */

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

static char *full_key(const Dcs *d, const char *rel) { return xasprintf("%s/%s", d->base, rel); }

static cJSON *put_request(const char *key, const char *value, long long lease) {
    cJSON *p = cJSON_CreateObject();
    add_b64(p, "key", key);
    add_b64(p, "value", value);
    if (lease)
        add_i64(p, "lease", lease);
    return p;
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

static cJSON *txn(cJSON *cmp, cJSON *success_op, const char *success_kind, cJSON *failure_txn) {
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

static long long header_revision(const cJSON *resp) {
    long long rev = 0;
    (void)json_get_i64str(cJSON_GetObjectItemCaseSensitive(resp, "header"), "revision", &rev);
    return rev;
}

/* ---- the cache ---- */

static DcsKv *cache_find_locked(Dcs *d, const char *key) {
    for (size_t i = 0; i < d->n_cache; i++)
        if (strcmp(d->cache[i].key, key) == 0)
            return &d->cache[i];
    return NULL;
}

static void cache_remove_locked(Dcs *d, const char *key) {
    for (size_t i = 0; i < d->n_cache; i++)
        if (strcmp(d->cache[i].key, key) == 0) {
            dcs_kv_free_contents(&d->cache[i]);
            d->cache[i] = d->cache[--d->n_cache];
            return;
        }
}

/* Apply our own successful write at once (spec §1.4): put (value != NULL) or delete. */
static void cache_apply_own(Dcs *d, const char *key, const char *value, long long lease, long long revision) {
    pthread_mutex_lock(&d->cache_lock);
    if (d->cache_ready && revision > 0) {
        DcsKv *kv = cache_find_locked(d, key);
        if (!value) {
            if (kv && kv->mod_revision < revision)
                cache_remove_locked(d, key);
        } else if (!kv || kv->mod_revision < revision) {
            if (!kv) {
                d->cache = xrealloc(d->cache, (d->n_cache + 1) * sizeof(DcsKv));
                kv = &d->cache[d->n_cache++];
                *kv = (DcsKv){.key = xstrdup(key), .create_revision = revision};
            }
            free(kv->value);
            free(kv->lease);
            kv->value = xstrdup(value);
            kv->value_len = strlen(value);
            kv->mod_revision = revision;
            kv->lease = lease ? xasprintf("%lld", lease) : NULL;
        }
    }
    pthread_mutex_unlock(&d->cache_lock);
}

static bool decode_kv(const cJSON *j, DcsKv *ret) {
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

/* Range over the cluster prefix. */
static int range_prefix_locked(Dcs *d, bool linearizable, DcsKv **ret_kvs, size_t *ret_n, long long *ret_rev) {
    cJSON *req = cJSON_CreateObject();
    add_b64(req, "key", d->prefix_key);
    add_b64(req, "range_end", d->range_end);
    if (!linearizable)
        cJSON_AddTrueToObject(req, "serializable");
    cJSON *resp = NULL;
    int r = call(d, "/kv/range", req, &resp);
    cJSON_Delete(req);
    if (r < 0)
        return r;
    const cJSON *kvs = cJSON_GetObjectItemCaseSensitive(resp, "kvs");
    size_t n = 0;
    DcsKv *out = xcalloc((size_t)cJSON_GetArraySize(kvs) + 1, sizeof(DcsKv));
    const cJSON *it;
    cJSON_ArrayForEach(it, kvs) {
        if (decode_kv(it, &out[n]))
            n++;
        else
            log_warning("etcd returned a key that is not valid base64; ignored");
    }
    *ret_rev = header_revision(resp);
    cJSON_Delete(resp);
    *ret_kvs = out;
    *ret_n = n;
    return 0;
}

static void free_kvs(DcsKv *kvs, size_t n) {
    for (size_t i = 0; i < n; i++)
        dcs_kv_free_contents(&kvs[i]);
    free(kvs);
}

int dcs_read_cluster(Dcs *d, bool linearizable, Cluster **ret) {
    *ret = NULL;
    pthread_mutex_lock(&d->req_lock);
    DcsKv *kvs = NULL;
    size_t n = 0;
    long long rev = 0;
    int r = range_prefix_locked(d, linearizable, &kvs, &n, &rev);
    /* after the read, not before: after a failure everywhere a refresh first would spend a second
     * retry_timeout on the same unreachable endpoints */
    if (r == 0)
        maybe_refresh_members_locked(d);
    pthread_mutex_unlock(&d->req_lock);
    if (r < 0)
        return r;
    *ret = cluster_from_kvs(kvs, n, d->base);
    if (rev > (*ret)->revision)
        (*ret)->revision = rev;
    free_kvs(kvs, n);
    return 0;
}

int dcs_get_cluster_cached(Dcs *d, Cluster **ret) {
    *ret = NULL;
    pthread_mutex_lock(&d->cache_lock);
    if (!d->cache_ready) {
        pthread_mutex_unlock(&d->cache_lock);
        return -EAGAIN;
    }
    Cluster *c = cluster_from_kvs(d->cache, d->n_cache, d->base);
    if (d->cache_revision > c->revision)
        c->revision = d->cache_revision;
    pthread_mutex_unlock(&d->cache_lock);
    *ret = c;
    return 0;
}

int dcs_get_cluster(Dcs *d, Cluster **ret) {
    *ret = NULL;
    pthread_mutex_lock(&d->cache_lock);
    if (d->watch_running) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += d->retry_timeout;
        while (!d->cache_ready && d->watch_running) {
            if (pthread_cond_timedwait(&d->cache_cond, &d->cache_lock, &until) == ETIMEDOUT)
                break;
        }
        if (d->cache_ready) {
            Cluster *c = cluster_from_kvs(d->cache, d->n_cache, d->base);
            if (d->cache_revision > c->revision)
                c->revision = d->cache_revision;
            pthread_mutex_unlock(&d->cache_lock);
            *ret = c;
            return 0;
        }
        pthread_mutex_unlock(&d->cache_lock);
        /* the watch could not rebuild the cache in time: the DCS is not usable now */
        char last[sizeof d->last_error];
        pthread_mutex_lock(&d->lock);
        memcpy(last, d->last_error, sizeof last);
        pthread_mutex_unlock(&d->lock);
        set_error(d, "the DCS cache was not ready within retry_timeout (%d s)%s%s", (int)d->retry_timeout,
                  last[0] ? "; last error: " : "", last);
        return -ETIMEDOUT;
    }
    pthread_mutex_unlock(&d->cache_lock);
    return dcs_read_cluster(d, false, ret);
}

/* ---- lease ---- */

static int grant_lease_locked(Dcs *d) {
    cJSON *req = cJSON_CreateObject();
    cJSON_AddNumberToObject(req, "TTL", d->ttl);
    cJSON *resp = NULL;
    int r = call(d, "/lease/grant", req, &resp);
    cJSON_Delete(req);
    if (r < 0)
        return r;
    long long id = 0, ttl = 0;
    if (!json_get_i64str(resp, "ID", &id) || id == 0) {
        set_error(d, "etcd granted no lease: %s", json_get_string(resp, "error") ? json_get_string(resp, "error") : "no ID");
        cJSON_Delete(resp);
        return -EPROTO;
    }
    (void)json_get_i64str(resp, "TTL", &ttl);
    cJSON_Delete(resp);
    d->lease_id = id;
    d->lease_ttl = d->ttl;
    d->lease_refreshed = now_monotonic();
    log_debug("granted lease %lld with TTL %lld", id, ttl);
    return 1;
}

static int refresh_lease_locked(Dcs *d, bool force) {
    if (d->lease_id == 0 || d->lease_ttl != d->ttl)
        return grant_lease_locked(d); /* first use, or ttl changed: a new lease */
    /* renewed once per HA cycle: compare with a little slack, the cycle is loop_wait long */
    if (!force && now_monotonic() - d->lease_refreshed + 500 * USEC_PER_MSEC < (usec_t)d->loop_wait * USEC_PER_SEC)
        return 1;
    usec_t sent = now_monotonic();
    cJSON *req = cJSON_CreateObject();
    add_i64(req, "ID", d->lease_id);
    cJSON *resp = NULL;
    int r = call(d, "/lease/keepalive", req, &resp);
    cJSON_Delete(req);
    if (r < 0)
        return r;
    long long ttl = 0;
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(resp, "result");
    (void)json_get_i64str(result, "TTL", &ttl);
    cJSON_Delete(resp);
    if (ttl <= 0) {
        log_warning("lease %lld has expired; granting a new one", d->lease_id);
        d->lease_id = 0;
        return grant_lease_locked(d);
    }
    d->lease_refreshed = sent; /* the lease runs from when the keepalive was sent */
    return 1;
}

int dcs_refresh_lease(Dcs *d, bool force) {
    pthread_mutex_lock(&d->req_lock);
    int r = refresh_lease_locked(d, force);
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

int dcs_revoke_lease(Dcs *d) {
    pthread_mutex_lock(&d->req_lock);
    int r = 1;
    if (d->lease_id) {
        cJSON *req = cJSON_CreateObject();
        add_i64(req, "ID", d->lease_id);
        cJSON *resp = NULL;
        r = call(d, "/lease/revoke", req, &resp);
        cJSON_Delete(req);
        cJSON_Delete(resp);
        if (r == -ENOENT)
            r = 0;
        if (r >= 0) {
            d->lease_id = 0;
            r = 1;
        }
    }
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

/* ---- writes ---- */

static int put_locked(Dcs *d, const char *key, const char *value, long long lease) {
    cJSON *req = put_request(key, value, lease);
    cJSON *resp = NULL;
    int r = call(d, "/kv/put", req, &resp);
    cJSON_Delete(req);
    if (r < 0)
        return r;
    cache_apply_own(d, key, value, lease, header_revision(resp));
    cJSON_Delete(resp);
    return 1;
}

static int delete_locked(Dcs *d, const char *key, const char *range_end) {
    cJSON *req = cJSON_CreateObject();
    add_b64(req, "key", key);
    if (range_end)
        add_b64(req, "range_end", range_end);
    cJSON *resp = NULL;
    int r = call(d, "/kv/deleterange", req, &resp);
    cJSON_Delete(req);
    if (r < 0)
        return r;
    if (!range_end)
        cache_apply_own(d, key, NULL, 0, header_revision(resp));
    cJSON_Delete(resp);
    return 1;
}

static bool txn_succeeded(const cJSON *resp) {
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "succeeded"));
}

/* Run a txn; 1 when it succeeded, 0 when the compare failed (and the cache may be stale). */
static int txn_locked(Dcs *d, cJSON *t, cJSON **ret_resp) {
    cJSON *resp = NULL;
    int r = call(d, "/kv/txn", t, &resp);
    if (r < 0)
        return r;
    int ok = txn_succeeded(resp) ? 1 : 0;
    if (ret_resp)
        *ret_resp = resp;
    else
        cJSON_Delete(resp);
    return ok;
}

/* A lost compare-and-swap means our view was stale: make the watch rebuild its cache. */
static void cas_lost(Dcs *d) {
    pthread_mutex_lock(&d->cache_lock);
    bool running = d->watch_running;
    pthread_mutex_unlock(&d->cache_lock);
    if (running)
        d->watch_reconnect = true;
}

int dcs_attempt_to_acquire_leader(Dcs *d) {
    pthread_mutex_lock(&d->req_lock);
    _cleanup_free_ char *key = full_key(d, "leader");
    int r = refresh_lease_locked(d, false);
    for (int attempt = 0; r >= 0 && attempt < 2; attempt++) {
        cJSON *t = txn(compare(key, "CREATE", "create_revision", "0", false), put_request(key, d->name, d->lease_id),
                       "request_put", NULL);
        cJSON *resp = NULL;
        r = txn_locked(d, t, &resp);
        cJSON_Delete(t);
        if (r == -ENOENT && attempt == 0) { /* "requested lease not found" */
            d->lease_id = 0;
            r = grant_lease_locked(d);
            continue;
        }
        if (r == 1)
            cache_apply_own(d, key, d->name, d->lease_id, header_revision(resp));
        else if (r == 0)
            cas_lost(d);
        cJSON_Delete(resp);
        break;
    }
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

int dcs_update_leader(Dcs *d, const Cluster *c) {
    /* The renewal as a whole (waiting for the connection the watch may be using, the keepalive and
     * the txn) fits in retry_timeout: the timing rule loop_wait + 2*retry_timeout <= ttl counts on it. */
    usec_t deadline = now_monotonic() + (usec_t)d->retry_timeout * USEC_PER_SEC;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += d->retry_timeout;
    if (pthread_mutex_timedlock(&d->req_lock, &until) != 0) {
        set_error(d, "the etcd connection stayed busy for retry_timeout (%d s)", (int)d->retry_timeout);
        return -ETIMEDOUT;
    }
    d->op_deadline = deadline;
    _cleanup_free_ char *key = full_key(d, "leader");
    int r = refresh_lease_locked(d, true);
    if (r >= 0) {
        _cleanup_free_ char *lease = xasprintf("%lld", d->lease_id);
        if (c && c->leader && streq(c->leader->name, d->name) && streq(c->leader->session, lease)) {
            r = 1; /* the keepalive is the renewal */
        } else {
            cJSON *inner = txn(compare(key, "CREATE", "create_revision", "0", false),
                               put_request(key, d->name, d->lease_id), "request_put", NULL);
            cJSON *t = txn(compare(key, "VALUE", "value", d->name, true), put_request(key, d->name, d->lease_id),
                           "request_put", inner);
            cJSON *resp = NULL;
            r = txn_locked(d, t, &resp);
            cJSON_Delete(t);
            if (r == 0) {
                const cJSON *responses = cJSON_GetObjectItemCaseSensitive(resp, "responses");
                const cJSON *first = cJSON_GetArrayItem(responses, 0);
                if (txn_succeeded(cJSON_GetObjectItemCaseSensitive(first, "response_txn")))
                    r = 1;
            }
            if (r == 1)
                cache_apply_own(d, key, d->name, d->lease_id, header_revision(resp));
            cJSON_Delete(resp);
        }
    }
    d->op_deadline = 0;
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

int dcs_delete_leader(Dcs *d) {
    pthread_mutex_lock(&d->req_lock);
    _cleanup_free_ char *key = full_key(d, "leader");
    cJSON *del = cJSON_CreateObject();
    add_b64(del, "key", key);
    cJSON *t = txn(compare(key, "VALUE", "value", d->name, true), del, "request_delete_range", NULL);
    cJSON *resp = NULL;
    int r = txn_locked(d, t, &resp);
    cJSON_Delete(t);
    if (r == 1)
        cache_apply_own(d, key, NULL, 0, header_revision(resp));
    else if (r == 0)
        cas_lost(d);
    cJSON_Delete(resp);
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

int dcs_take_leader(Dcs *d) {
    pthread_mutex_lock(&d->req_lock);
    _cleanup_free_ char *key = full_key(d, "leader");
    int r = refresh_lease_locked(d, false);
    if (r >= 0)
        r = put_locked(d, key, d->name, d->lease_id);
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

int dcs_touch_member(Dcs *d, const char *json) {
    pthread_mutex_lock(&d->req_lock);
    _cleanup_free_ char *rel = xasprintf("members/%s", d->name);
    _cleanup_free_ char *key = full_key(d, rel);
    int r = refresh_lease_locked(d, false);
    if (r >= 0) {
        bool same = streq(d->member_value, json) && d->member_lease == d->lease_id;
        if (same) {
            /* the key may have vanished (lease expired while we were away): check the cache */
            pthread_mutex_lock(&d->cache_lock);
            if (d->cache_ready && !cache_find_locked(d, key))
                same = false;
            pthread_mutex_unlock(&d->cache_lock);
        }
        if (!same) {
            r = put_locked(d, key, json, d->lease_id);
            if (r == -ENOENT) { /* our lease vanished */
                d->lease_id = 0;
                r = grant_lease_locked(d);
                if (r >= 0)
                    r = put_locked(d, key, json, d->lease_id);
            }
            if (r == 1) {
                free(d->member_value);
                d->member_value = xstrdup(json);
                d->member_lease = d->lease_id;
            }
        } else {
            r = 1;
        }
    }
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

static int create_if_absent_locked(Dcs *d, const char *key, const char *value, cJSON **ret_resp) {
    cJSON *t = txn(compare(key, "CREATE", "create_revision", "0", false), put_request(key, value, 0), "request_put", NULL);
    int r = txn_locked(d, t, ret_resp);
    cJSON_Delete(t);
    return r;
}

int dcs_initialize(Dcs *d, bool create_new, const char *sysid) {
    pthread_mutex_lock(&d->req_lock);
    _cleanup_free_ char *key = full_key(d, "initialize");
    int r;
    if (create_new) {
        cJSON *resp = NULL;
        r = create_if_absent_locked(d, key, sysid ? sysid : "", &resp);
        if (r == 1)
            cache_apply_own(d, key, sysid ? sysid : "", 0, header_revision(resp));
        else if (r == 0)
            cas_lost(d);
        cJSON_Delete(resp);
    } else {
        r = put_locked(d, key, sysid ? sysid : "", 0);
    }
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

int dcs_cancel_initialization(Dcs *d) {
    pthread_mutex_lock(&d->req_lock);
    _cleanup_free_ char *key = full_key(d, "initialize");
    int r = delete_locked(d, key, NULL);
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

static int cas_put(Dcs *d, const char *rel, const char *json, long long version, long long *ret_rev) {
    pthread_mutex_lock(&d->req_lock);
    _cleanup_free_ char *key = full_key(d, rel);
    int r;
    cJSON *resp = NULL;
    if (version > 0) {
        char v[32];
        snprintf(v, sizeof v, "%lld", version);
        cJSON *t = txn(compare(key, "MOD", "mod_revision", v, false), put_request(key, json, 0), "request_put", NULL);
        r = txn_locked(d, t, &resp);
        cJSON_Delete(t);
        if (r == 0)
            cas_lost(d);
    } else {
        cJSON *req = put_request(key, json, 0);
        r = call(d, "/kv/put", req, &resp);
        cJSON_Delete(req);
        if (r == 0)
            r = 1;
    }
    if (r == 1) {
        long long rev = header_revision(resp);
        cache_apply_own(d, key, json, 0, rev);
        if (ret_rev)
            *ret_rev = rev;
    }
    cJSON_Delete(resp);
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

int dcs_set_config(Dcs *d, const char *json, long long version) { return cas_put(d, "config", json, version, NULL); }
int dcs_set_failover(Dcs *d, const char *json, long long version) { return cas_put(d, "failover", json, version, NULL); }
int dcs_set_sync_state(Dcs *d, const char *json, long long version, long long *ret_new_version) {
    return cas_put(d, "sync", json, version, ret_new_version);
}
int dcs_set_history(Dcs *d, const char *json) { return cas_put(d, "history", json, 0, NULL); }
int dcs_set_status(Dcs *d, const char *json) { return cas_put(d, "status", json, 0, NULL); }
int dcs_set_failsafe(Dcs *d, const char *json) { return cas_put(d, "failsafe", json, 0, NULL); }

int dcs_delete_sync_state(Dcs *d, long long version) {
    pthread_mutex_lock(&d->req_lock);
    _cleanup_free_ char *key = full_key(d, "sync");
    int r;
    if (version > 0) {
        char v[32];
        snprintf(v, sizeof v, "%lld", version);
        cJSON *del = cJSON_CreateObject();
        add_b64(del, "key", key);
        cJSON *t = txn(compare(key, "MOD", "mod_revision", v, false), del, "request_delete_range", NULL);
        cJSON *resp = NULL;
        r = txn_locked(d, t, &resp);
        cJSON_Delete(t);
        if (r == 1)
            cache_apply_own(d, key, NULL, 0, header_revision(resp));
        else if (r == 0)
            cas_lost(d);
        cJSON_Delete(resp);
    } else {
        r = delete_locked(d, key, NULL);
    }
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

int dcs_delete_cluster(Dcs *d) {
    pthread_mutex_lock(&d->req_lock);
    int r = delete_locked(d, d->prefix_key, d->range_end);
    pthread_mutex_unlock(&d->req_lock);
    if (r == 1)
        cas_lost(d); /* rebuild the cache from scratch */
    return r;
}

int dcs_put_raw(Dcs *d, const char *rel_key, const char *value, bool with_lease) {
    pthread_mutex_lock(&d->req_lock);
    _cleanup_free_ char *key = full_key(d, rel_key);
    int r = with_lease ? refresh_lease_locked(d, false) : 1;
    if (r >= 0)
        r = put_locked(d, key, value, with_lease ? d->lease_id : 0);
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

int dcs_delete_raw(Dcs *d, const char *rel_key) {
    pthread_mutex_lock(&d->req_lock);
    _cleanup_free_ char *key = full_key(d, rel_key);
    int r = delete_locked(d, key, NULL);
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

int dcs_get_raw(Dcs *d, const char *rel_key, char **ret_value, long long *ret_mod_revision) {
    *ret_value = NULL;
    pthread_mutex_lock(&d->req_lock);
    _cleanup_free_ char *key = full_key(d, rel_key);
    cJSON *req = cJSON_CreateObject();
    add_b64(req, "key", key);
    cJSON *resp = NULL;
    int r = call(d, "/kv/range", req, &resp);
    cJSON_Delete(req);
    pthread_mutex_unlock(&d->req_lock);
    if (r < 0)
        return r;
    const cJSON *kv = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(resp, "kvs"), 0);
    DcsKv out;
    r = 0;
    if (kv && decode_kv(kv, &out)) {
        *ret_value = TAKE_PTR(out.value);
        if (ret_mod_revision)
            *ret_mod_revision = out.mod_revision;
        dcs_kv_free_contents(&out);
        r = 1;
    }
    cJSON_Delete(resp);
    return r;
}

/* ---- the watch thread ---- */

typedef struct Stream {
    Dcs *d;
    StrBuf buf;        /* bytes not yet parsed */
    bool ended;        /* the server ended the watch (error, cancel, compaction) */
    bool created;
    bool needs_resync; /* compacted: rebuild from a fresh range */
    long long last_revision;
} Stream;

static bool relevant_wake(Dcs *d, const char *rel, const DcsKv *old, const char *new_value) {
    if (strcmp(rel, "leader") == 0)
        return !old || !new_value || strcmp(old->value, new_value) != 0;
    if (strcmp(rel, "status") == 0 || strcmp(rel, "optime/leader") == 0) {
        if (!new_value)
            return false;
        _cleanup_free_ char *lk = xasprintf("%s/leader", d->base);
        DcsKv *leader = cache_find_locked(d, lk);
        return !(leader && strcmp(leader->value, d->name) == 0);
    }
    if (strcmp(rel, "config") == 0)
        return old && new_value && strcmp(old->value, new_value) != 0;
    return false;
}

static void apply_event_locked(Dcs *d, const cJSON *ev, bool *wake) {
    const char *type = json_get_string(ev, "type");
    bool is_delete = type && strcmp(type, "DELETE") == 0;
    DcsKv kv;
    if (!decode_kv(cJSON_GetObjectItemCaseSensitive(ev, "kv"), &kv))
        return;
    const char *rel = strncmp(kv.key, d->prefix_key, strlen(d->prefix_key)) == 0 ? kv.key + strlen(d->prefix_key) : "";
    DcsKv *old = cache_find_locked(d, kv.key);
    if (old && old->mod_revision >= kv.mod_revision) {
        dcs_kv_free_contents(&kv);
        return; /* not newer than what we have (e.g. our own write applied already) */
    }
    if (relevant_wake(d, rel, old, is_delete ? NULL : kv.value))
        *wake = true;
    if (is_delete) {
        if (old)
            cache_remove_locked(d, kv.key);
        dcs_kv_free_contents(&kv);
    } else if (old) {
        dcs_kv_free_contents(old);
        *old = kv;
    } else {
        d->cache = xrealloc(d->cache, (d->n_cache + 1) * sizeof(DcsKv));
        d->cache[d->n_cache++] = kv;
    }
}

static void handle_message(Stream *s, const char *text, size_t len) {
    Dcs *d = s->d;
    cJSON *j = cJSON_ParseWithLength(text, len);
    if (!j) {
        log_warning("etcd watch: could not parse a message of %zu bytes; reconnecting", len);
        s->ended = true;
        return;
    }
    if (cJSON_GetObjectItemCaseSensitive(j, "error")) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        const char *msg = json_get_string(e, "message");
        log_debug("etcd watch ended by the server: %s", msg ? msg : "error");
        s->ended = true;
        cJSON_Delete(j);
        return;
    }
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(j, "result");
    if (!res) {
        cJSON_Delete(j);
        return;
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res, "created")))
        s->created = true;
    long long compact = 0;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res, "canceled")) ||
        json_get_i64str(res, "compact_revision", &compact)) {
        s->ended = true;
        s->needs_resync = true;
        cJSON_Delete(j);
        return;
    }
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(res, "events");
    bool wake = false;
    long long rev = header_revision(res);
    pthread_mutex_lock(&d->cache_lock);
    const cJSON *ev;
    cJSON_ArrayForEach(ev, events) {
        apply_event_locked(d, ev, &wake);
        d->st_events++;
    }
    if (rev > d->cache_revision)
        d->cache_revision = rev;
    s->last_revision = d->cache_revision;
    pthread_mutex_unlock(&d->cache_lock);
    cJSON_Delete(j);
    if (wake && d->wake)
        d->wake(d->wake_data);
}

/* The gateway streams JSON objects back to back; split them by brace depth. */
static size_t stream_write(char *ptr, size_t size, size_t nmemb, void *ud) {
    Stream *s = ud;
    size_t n = size * nmemb;
    s->d->st_received += n;
    if (s->buf.len + n > MAX_RESPONSE)
        return 0;
    sb_addn(&s->buf, ptr, n);
    size_t start = 0, i = 0;
    int depth = 0;
    bool in_str = false, esc = false;
    for (; i < s->buf.len; i++) {
        char c = s->buf.s[i];
        if (in_str) {
            if (esc)
                esc = false;
            else if (c == '\\')
                esc = true;
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (c == '"')
            in_str = true;
        else if (c == '{') {
            if (depth++ == 0)
                start = i;
        } else if (c == '}' && depth > 0 && --depth == 0) {
            handle_message(s, s->buf.s + start, i - start + 1);
            /* drop what was consumed */
            size_t rest = s->buf.len - (i + 1);
            memmove(s->buf.s, s->buf.s + i + 1, rest);
            s->buf.len = rest;
            s->buf.s[rest] = '\0';
            i = (size_t)-1;
            start = 0;
        }
    }
    return s->ended ? 0 : n;
}

static int stream_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    Stream *s = ud;
    return (s->d->watch_stop || s->d->watch_reconnect) ? 1 : 0;
}

static void cache_set_ready(Dcs *d, bool ready) {
    pthread_mutex_lock(&d->cache_lock);
    d->cache_ready = ready;
    pthread_cond_broadcast(&d->cache_cond);
    pthread_mutex_unlock(&d->cache_lock);
}

static void *watch_main(void *arg) {
    Dcs *d = arg;
    (void)pthread_setname_np(pthread_self(), "pgha-watch");
    Conn wconn = {0};
    usec_t backoff = 0;
    while (!d->watch_stop) {
        if (backoff) {
            for (usec_t slept = 0; slept < backoff && !d->watch_stop; slept += 100 * USEC_PER_MSEC)
                usleep(100 * 1000);
            if (d->watch_stop)
                break;
        }
        backoff = USEC_PER_SEC;
        d->watch_reconnect = false;
        /* 1. a fresh range of the prefix */
        DcsKv *kvs = NULL;
        size_t n = 0;
        long long rev = 0;
        pthread_mutex_lock(&d->req_lock);
        int r = range_prefix_locked(d, false, &kvs, &n, &rev);
        pthread_mutex_lock(&d->lock);
        _cleanup_free_ char *endpoint = d->endpoints.n ? xstrdup(d->endpoints.v[d->current % d->endpoints.n]) : NULL;
        free(d->watch_endpoint);
        d->watch_endpoint = xstrdup(endpoint);
        _cleanup_free_ char *token = xstrdup(d->token);
        _cleanup_free_ char *path = xasprintf("%s/watch", d->api_prefix);
        pthread_mutex_unlock(&d->lock);
        pthread_mutex_unlock(&d->req_lock);
        d->watch_reconnect = false;
        if (r < 0 || !endpoint) {
            cache_set_ready(d, false);
            free_kvs(kvs, n);
            continue;
        }
        pthread_mutex_lock(&d->cache_lock);
        bool wake = false;
        /* compare with what we had, to wake the HA loop on a missed leader change */
        _cleanup_free_ char *lk = xasprintf("%s/leader", d->base);
        DcsKv *old_leader = cache_find_locked(d, lk);
        const DcsKv *new_leader = NULL;
        for (size_t i = 0; i < n; i++)
            if (strcmp(kvs[i].key, lk) == 0)
                new_leader = &kvs[i];
        if (d->cache_ready && ((old_leader == NULL) != (new_leader == NULL) ||
                               (old_leader && new_leader && strcmp(old_leader->value, new_leader->value) != 0)))
            wake = true;
        cache_clear_locked(d);
        d->cache = kvs;
        d->n_cache = n;
        d->cache_revision = rev;
        d->cache_ready = true;
        pthread_cond_broadcast(&d->cache_cond);
        pthread_mutex_unlock(&d->cache_lock);
        if (wake && d->wake)
            d->wake(d->wake_data);

        /* 2. the streaming watch from the next revision */
        cJSON *req = cJSON_CreateObject();
        cJSON *cr = cJSON_AddObjectToObject(req, "create_request");
        add_b64(cr, "key", d->prefix_key);
        add_b64(cr, "range_end", d->range_end);
        add_i64(cr, "start_revision", rev + 1);
        _cleanup_free_ char *body = cJSON_PrintUnformatted(req);
        cJSON_Delete(req);
        conn_prepare(d, &wconn, token);
        _cleanup_free_ char *url = xasprintf("%s%s", endpoint, path);
        Stream s = {.d = d, .last_revision = rev};
        sb_init(&s.buf);
        char curl_err[CURL_ERROR_SIZE] = "";
        long connect_ms = (long)d->retry_timeout * 1000 / 3;
        if (connect_ms < 1000)
            connect_ms = 1000;
        curl_easy_setopt(wconn.curl, CURLOPT_URL, url);
        curl_easy_setopt(wconn.curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(wconn.curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        curl_easy_setopt(wconn.curl, CURLOPT_TIMEOUT_MS, 0L);
        curl_easy_setopt(wconn.curl, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
        curl_easy_setopt(wconn.curl, CURLOPT_WRITEFUNCTION, stream_write);
        curl_easy_setopt(wconn.curl, CURLOPT_WRITEDATA, &s);
        curl_easy_setopt(wconn.curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(wconn.curl, CURLOPT_XFERINFOFUNCTION, stream_progress);
        curl_easy_setopt(wconn.curl, CURLOPT_XFERINFODATA, &s);
        curl_easy_setopt(wconn.curl, CURLOPT_ERRORBUFFER, curl_err);
        d->st_requests++;
        d->st_sent += strlen(body);
        CURLcode rc = curl_easy_perform(wconn.curl);
        curl_easy_setopt(wconn.curl, CURLOPT_ERRORBUFFER, NULL);
        sb_free(&s.buf);
        if (d->watch_stop)
            break;
        d->st_reconnects++;
        /* The cache is no longer kept current: not ready until the rebuild (Patroni's KVCache does
         * the same). A watch that was established is rebuilt at once, like Patroni; only a rebuild
         * that fails, or a stream that never got going, waits 1 s. Waiting after every end left the
         * stale cache in use for a second whenever a member shut down ("transport is closing"). */
        cache_set_ready(d, false);
        if (d->watch_reconnect) {
            backoff = 0; /* asked to follow another endpoint or to resync: at once */
            log_debug("etcd watch: reconnecting (endpoint changed or cache stale)");
        } else {
            log_debug("etcd watch on %s ended: %s", endpoint,
                      rc == CURLE_OK ? "closed by the server" : (curl_err[0] ? curl_err : curl_easy_strerror(rc)));
            if (s.needs_resync || s.created)
                backoff = 0;
            /* the member we watched may be gone: let the caller side pick the next one */
            if (rc != CURLE_OK && rc != CURLE_WRITE_ERROR) {
                pthread_mutex_lock(&d->lock);
                if (d->endpoints.n && strcmp(d->endpoints.v[d->current % d->endpoints.n], endpoint) == 0)
                    d->current = (d->current + 1) % d->endpoints.n;
                pthread_mutex_unlock(&d->lock);
            }
        }
    }
    conn_free(&wconn);
    return NULL;
}

int dcs_start_watch(Dcs *d, DcsWakeFn wake, void *userdata) {
    pthread_mutex_lock(&d->cache_lock);
    if (d->watch_running) {
        pthread_mutex_unlock(&d->cache_lock);
        return 0;
    }
    d->wake = wake;
    d->wake_data = userdata;
    d->watch_stop = false;
    d->watch_running = true;
    pthread_mutex_unlock(&d->cache_lock);
    int r = pthread_create(&d->watch_thread, NULL, watch_main, d);
    if (r != 0) {
        pthread_mutex_lock(&d->cache_lock);
        d->watch_running = false;
        pthread_mutex_unlock(&d->cache_lock);
        return -r;
    }
    return 0;
}

void dcs_stop_watch(Dcs *d) {
    pthread_mutex_lock(&d->cache_lock);
    bool running = d->watch_running;
    pthread_mutex_unlock(&d->cache_lock);
    if (!running)
        return;
    d->watch_stop = true;
    pthread_join(d->watch_thread, NULL);
    pthread_mutex_lock(&d->cache_lock);
    d->watch_running = false;
    d->cache_ready = false;
    pthread_cond_broadcast(&d->cache_cond);
    pthread_mutex_unlock(&d->cache_lock);
}

bool dcs_watch_ready(Dcs *d) {
    pthread_mutex_lock(&d->cache_lock);
    bool r = d->cache_ready;
    pthread_mutex_unlock(&d->cache_lock);
    return r;
}
