/* etcd v3 through its gRPC JSON gateway (spec §1.4), over libcurl + cJSON: the operations of dcs.h.
 *
 * Two connections: the caller's (HA thread, REST handlers, pgha-ctl; serialised by req_lock) and the
 * watch thread's streaming /watch. The client is split over etcd3*.c along the lines that etcd3_int.h
 * describes: this file has the client from the configuration, the reads, the lease and the writes. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/json.h"
#include "common/log.h"
#include "dcs/curlinit.h"
#include "dcs/etcd3_int.h"

/* dcs_error() is per thread: the HA loop, the REST threads and the watch thread each call into the
 * client, and one shared buffer would let one thread's message be overwritten (or read half-written)
 * by another's. */
static _Thread_local char thread_error[1024];

void etcd3_set_error(Dcs *d, const char *fmt, ...) {
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
    *ret = (DcsStats){.requests = d->st_requests,
                      .request_errors = d->st_request_errors,
                      .request_seconds = (double)d->st_request_usec / USEC_PER_SEC,
                      .bytes_sent = d->st_sent,
                      .bytes_received = d->st_received,
                      .watch_events = d->st_events,
                      .watch_reconnects = d->st_reconnects};
}

const char *etcd3_current_endpoint_locked(const Dcs *d) {
    return d->endpoints.n ? d->endpoints.v[d->current % d->endpoints.n] : NULL;
}

const char *dcs_endpoint(Dcs *d, char *buf, size_t len) {
    pthread_mutex_lock(&d->lock);
    const char *ep = etcd3_current_endpoint_locked(d);
    snprintf(buf, len, "%s", ep ? ep : "");
    pthread_mutex_unlock(&d->lock);
    return buf;
}

void dcs_set_timings(Dcs *d, int ttl, int loop_wait, int retry_timeout) {
    pthread_mutex_lock(&d->lock); /* the three together (the reload's test copies them under lock) */
    d->ttl = ttl > 0 ? ttl : 30;
    d->loop_wait = loop_wait > 0 ? loop_wait : 10;
    d->retry_timeout = retry_timeout > 0 ? retry_timeout : 10;
    pthread_mutex_unlock(&d->lock);
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

void etcd3_settings_free(ClientSettings *s) {
    free(s->protocol);
    strlist_clear(&s->configured);
    free(s->username);
    free(s->password);
    free(s->cacert);
    free(s->cert);
    free(s->key);
    *s = (ClientSettings){0};
}

int etcd3_settings_from_config(const PghaConfig *cfg, ClientSettings *s, char **ret_error) {
    *s = (ClientSettings){0};
    s->username = xstrdup(cfg->etcd3.username);
    s->password = xstrdup(cfg->etcd3.password);
    s->cacert = xstrdup(cfg->etcd3.cacert);
    s->cert = xstrdup(cfg->etcd3.cert);
    s->key = xstrdup(cfg->etcd3.key);
    s->use_proxies = cfg->etcd3.use_proxies;
    const char *protocol = cfg->etcd3.protocol ? cfg->etcd3.protocol : "http";
    if (!config_is_set(cfg, "etcd3.protocol") && (cfg->etcd3.cacert || cfg->etcd3.cert))
        protocol = "https";
    s->protocol = xstrdup(protocol);

    if (cfg->etcd3.srv) {
        *ret_error = xstrdup("etcd3.srv (DNS SRV discovery) is not supported by pgha; list the members in "
                             "etcd3.hosts instead");
        return -EINVAL;
    }
    const char *url = cfg->etcd3.proxy ? cfg->etcd3.proxy : cfg->etcd3.url;
    if (url) {
        char *user = NULL, *pass = NULL;
        char *ep = parse_url(url, &user, &pass);
        if (!ep) {
            free(user);
            free(pass);
            *ret_error = xasprintf("etcd3.%s: '%s' is not a valid URL", cfg->etcd3.proxy ? "proxy" : "url", url);
            return -EINVAL;
        }
        strlist_add(&s->configured, ep);
        free(ep);
        if (user && !s->username) {
            s->username = user;
            user = NULL;
        }
        if (pass && !s->password) {
            s->password = pass;
            pass = NULL;
        }
        free(user);
        free(pass);
        if (cfg->etcd3.proxy)
            s->use_proxies = true;
    }
    for (size_t i = 0; i < cfg->etcd3.hosts.n; i++) {
        char *ep = endpoint_url(protocol, cfg->etcd3.hosts.v[i], cfg->etcd3.port);
        if (!ep) {
            *ret_error = xasprintf("etcd3.hosts: '%s' is not a valid host[:port]", cfg->etcd3.hosts.v[i]);
            return -EINVAL;
        }
        if (!strlist_contains(&s->configured, ep))
            strlist_add(&s->configured, ep);
        free(ep);
    }
    if (cfg->etcd3.host) {
        char *ep = endpoint_url(protocol, cfg->etcd3.host, cfg->etcd3.port);
        if (!ep) {
            *ret_error = xasprintf("etcd3.host: '%s' is not a valid host[:port]", cfg->etcd3.host);
            return -EINVAL;
        }
        if (!strlist_contains(&s->configured, ep))
            strlist_add(&s->configured, ep);
        free(ep);
    }
    if (s->configured.n == 0) {
        *ret_error = xstrdup("no etcd endpoint configured (etcd3.host, hosts, url or proxy)");
        return -EINVAL;
    }
    return 0;
}

#define SWAP_FIELD(a, b)          \
    do {                          \
        __typeof__(a) tmp_ = (a); \
        (a) = (b);                \
        (b) = tmp_;               \
    } while (0)

void etcd3_settings_swap(Dcs *d, ClientSettings *s) {
    SWAP_FIELD(d->protocol, s->protocol);
    SWAP_FIELD(d->configured, s->configured);
    SWAP_FIELD(d->use_proxies, s->use_proxies);
    SWAP_FIELD(d->username, s->username);
    SWAP_FIELD(d->password, s->password);
    SWAP_FIELD(d->cacert, s->cacert);
    SWAP_FIELD(d->cert, s->cert);
    SWAP_FIELD(d->key, s->key);
}

bool etcd3_settings_same(const Dcs *d, const ClientSettings *s) {
    return streq(d->protocol, s->protocol) && strlist_equal(&d->configured, &s->configured) &&
           d->use_proxies == s->use_proxies && streq(d->username, s->username) && streq(d->password, s->password) &&
           streq(d->cacert, s->cacert) && streq(d->cert, s->cert) && streq(d->key, s->key);
}

Dcs *dcs_new(const PghaConfig *cfg, char **ret_error) {
    pgha_curl_global_init();
    Dcs *d = xcalloc(1, sizeof *d);
    pthread_mutex_init(&d->lock, NULL);
    pthread_mutex_init(&d->req_lock, NULL);
    pthread_mutex_init(&d->cache_lock, NULL);
    pthread_mutex_init(&d->reload_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cache_cond, &ca);
    pthread_cond_init(&d->reload_cond, &ca);
    pthread_condattr_destroy(&ca);
    d->name = xstrdup(cfg->name);
    d->base = dcs_base_path(cfg->namespace_, cfg->scope);
    d->prefix_key = xasprintf("%s/", d->base);
    d->range_end = xasprintf("%s0", d->base);
    d->user_agent = xasprintf("pgha/%s (Patroni/%s compatible)", PGHA_VERSION, PGHA_PATRONI_VERSION);
    dcs_set_timings(d, 30, 10, 10);
    ClientSettings s;
    int r = etcd3_settings_from_config(cfg, &s, ret_error);
    etcd3_settings_swap(d, &s);
    etcd3_settings_free(&s);
    if (r < 0)
        return dcs_free(d);
    strlist_copy(&d->endpoints, &d->configured);
    d->api_prefix = xstrdup("/v3");
    d->cluster_pinned = !cfg->pgha.follow_etcd_cluster_change;
    return d;
}

Dcs *dcs_free(Dcs *d) {
    if (!d)
        return NULL;
    etcd3_reload_stop(d);
    dcs_stop_watch(d);
    etcd3_conn_free(&d->conn);
    etcd3_cache_clear_locked(d);
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
    pthread_mutex_destroy(&d->reload_lock);
    pthread_cond_destroy(&d->cache_cond);
    pthread_cond_destroy(&d->reload_cond);
    free(d);
    return NULL;
}

/* ---- reads ---- */

static char *full_key(const Dcs *d, const char *rel) { return xasprintf("%s/%s", d->base, rel); }

int etcd3_range_prefix_locked(Dcs *d, bool linearizable, DcsKv **ret_kvs, size_t *ret_n, long long *ret_rev) {
    cJSON *req = etcd3_key_request(d->prefix_key, d->range_end);
    if (!linearizable)
        cJSON_AddTrueToObject(req, "serializable");
    cJSON *resp = NULL;
    int r = etcd3_call(d, "/kv/range", req, &resp);
    cJSON_Delete(req);
    if (r < 0)
        return r;
    *ret_kvs = etcd3_decode_kvs(resp, ret_n);
    *ret_rev = etcd3_header_revision(resp);
    cJSON_Delete(resp);
    return 0;
}

Cluster *etcd3_cluster_of(const Dcs *d, const DcsKv *kvs, size_t n, long long revision) {
    Cluster *c = cluster_from_kvs(kvs, n, d->base);
    if (revision > c->revision)
        c->revision = revision;
    return c;
}

int dcs_read_cluster(Dcs *d, bool linearizable, Cluster **ret) {
    *ret = NULL;
    if (etcd3_req_lock(d, 0) < 0)
        return -ETIMEDOUT;
    DcsKv *kvs = NULL;
    size_t n = 0;
    long long rev = 0;
    int r = etcd3_range_prefix_locked(d, linearizable, &kvs, &n, &rev);
    /* after the read, not before: after a failure everywhere a refresh first would spend a second
     * retry_timeout on the same unreachable endpoints */
    if (r == 0)
        etcd3_maybe_refresh_members_locked(d);
    pthread_mutex_unlock(&d->req_lock);
    if (r < 0)
        return r;
    *ret = etcd3_cluster_of(d, kvs, n, rev);
    etcd3_free_kvs(kvs, n);
    return 0;
}

/* ---- lease ---- */

static int grant_lease_locked(Dcs *d) {
    cJSON *req = cJSON_CreateObject();
    cJSON_AddNumberToObject(req, "TTL", d->ttl);
    cJSON *resp = NULL;
    usec_t sent = now_monotonic();
    int r = etcd3_call(d, "/lease/grant", req, &resp);
    cJSON_Delete(req);
    if (r < 0)
        return r;
    long long id = 0, ttl = 0;
    if (!json_get_i64str(resp, "ID", &id) || id == 0) {
        const char *error = json_get_string(resp, "error");
        etcd3_set_error(d, "etcd granted no lease: %s", error ? error : "no ID");
        cJSON_Delete(resp);
        return -EPROTO;
    }
    (void)json_get_i64str(resp, "TTL", &ttl);
    cJSON_Delete(resp);
    d->lease_id = id;
    d->lease_ttl = d->ttl;
    d->lease_refreshed = sent; /* the lease runs from when the grant was sent */
    log_debug("granted lease %lld with TTL %lld", id, ttl);
    return 1;
}

static int refresh_lease_locked(Dcs *d, bool force) {
    if (atomic_exchange(&d->lease_stale, false))
        d->lease_id = 0; /* the client follows a new etcd cluster (etcd3_call.c): the old lease is not there */
    if (d->lease_id == 0 || d->lease_ttl != d->ttl)
        return grant_lease_locked(d); /* first use, or ttl changed: a new lease */
    /* renewed once per HA cycle: compare with a little slack, the cycle is loop_wait long */
    if (!force && now_monotonic() - d->lease_refreshed + 500 * USEC_PER_MSEC < (usec_t)d->loop_wait * USEC_PER_SEC)
        return 1;
    usec_t sent = now_monotonic();
    cJSON *req = etcd3_lease_request(d->lease_id);
    cJSON *resp = NULL;
    int r = etcd3_call(d, "/lease/keepalive", req, &resp);
    cJSON_Delete(req);
    if (r < 0)
        return r;
    long long ttl = 0;
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(resp, "result");
    (void)json_get_i64str(result, "TTL", &ttl);
    cJSON_Delete(resp);
    if (atomic_exchange(&d->lease_stale, false)) { /* the answer came from a new etcd cluster, now followed */
        d->lease_id = 0;
        return grant_lease_locked(d);
    }
    if (ttl <= 0) {
        log_warning("lease %lld has expired; granting a new one", d->lease_id);
        d->lease_id = 0;
        return grant_lease_locked(d);
    }
    d->lease_refreshed = sent; /* the lease runs from when the keepalive was sent */
    return 1;
}

/* Like dcs_lease_id(): the lease is used by the calling (HA) thread only, which wrote these itself. */
usec_t dcs_lease_refreshed_at(Dcs *d) { return d->lease_id ? d->lease_refreshed : 0; }

int dcs_refresh_lease(Dcs *d, bool force) {
    if (etcd3_req_lock(d, 0) < 0)
        return -ETIMEDOUT;
    int r = refresh_lease_locked(d, force);
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

int dcs_revoke_lease(Dcs *d) {
    if (etcd3_req_lock(d, 0) < 0)
        return -ETIMEDOUT;
    int r = 1;
    if (d->lease_id) {
        cJSON *req = etcd3_lease_request(d->lease_id);
        cJSON *resp = NULL;
        r = etcd3_call(d, "/lease/revoke", req, &resp);
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

static int put_locked(Dcs *d, const char *key, const char *value, long long lease, long long *ret_rev) {
    cJSON *req = etcd3_put_request(key, value, lease);
    cJSON *resp = NULL;
    int r = etcd3_call(d, "/kv/put", req, &resp);
    cJSON_Delete(req);
    if (r < 0)
        return r;
    long long rev = etcd3_header_revision(resp);
    etcd3_cache_apply_own(d, key, value, lease, rev);
    if (ret_rev)
        *ret_rev = rev;
    cJSON_Delete(resp);
    return 1;
}

static int delete_locked(Dcs *d, const char *key, const char *range_end) {
    cJSON *req = etcd3_key_request(key, range_end);
    cJSON *resp = NULL;
    int r = etcd3_call(d, "/kv/deleterange", req, &resp);
    cJSON_Delete(req);
    if (r < 0)
        return r;
    if (!range_end)
        etcd3_cache_apply_own(d, key, NULL, 0, etcd3_header_revision(resp));
    cJSON_Delete(resp);
    return 1;
}

/* Run a txn; 1 when it succeeded, 0 when the compare failed, with the answer in *ret_resp. */
static int txn_locked(Dcs *d, cJSON *t, cJSON **ret_resp) {
    int r = etcd3_call(d, "/kv/txn", t, ret_resp);
    if (r < 0)
        return r;
    return etcd3_txn_succeeded(*ret_resp) ? 1 : 0;
}

/* A compare-and-swap txn t (freed here) on key: 1 when it succeeded, with the write (value, or NULL for
 * a delete) applied to the cache and its revision in *ret_rev; 0 when the compare failed (our view was
 * stale), and the watch rebuilds its cache. */
static int cas_txn_locked(Dcs *d, cJSON *t, const char *key, const char *value, long long lease, long long *ret_rev) {
    cJSON *resp = NULL;
    int r = txn_locked(d, t, &resp);
    cJSON_Delete(t);
    if (r == 1) {
        long long rev = etcd3_header_revision(resp);
        etcd3_cache_apply_own(d, key, value, lease, rev);
        if (ret_rev)
            *ret_rev = rev;
    } else if (r == 0) {
        etcd3_cas_lost(d);
    }
    cJSON_Delete(resp);
    return r;
}

int dcs_attempt_to_acquire_leader(Dcs *d) {
    if (etcd3_req_lock(d, 0) < 0)
        return -ETIMEDOUT;
    _cleanup_free_ char *key = full_key(d, "leader");
    int r = refresh_lease_locked(d, false);
    for (int attempt = 0; r >= 0 && attempt < 2; attempt++) {
        cJSON *put = etcd3_put_request(key, d->name, d->lease_id);
        cJSON *t = etcd3_txn(etcd3_compare_absent(key), put, "request_put", NULL);
        r = cas_txn_locked(d, t, key, d->name, d->lease_id, NULL);
        if (r == -ENOENT && attempt == 0) { /* "requested lease not found" */
            d->lease_id = 0;
            r = grant_lease_locked(d);
            continue;
        }
        break;
    }
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

int dcs_update_leader(Dcs *d, const Cluster *c) {
    /* The wait for the caller-side connection (the watch thread may be reading the prefix through it,
     * for at most half of retry_timeout: etcd3_watch.c) is bounded on its own against the monotonic
     * clock; the keepalive and the txn then share a deadline of retry_timeout from when the connection
     * is ours, so that the wait does not eat it. Both end by the caller's (lease) deadline. The worst
     * case, 1.5 x retry_timeout, is within the timing rule loop_wait + 2*retry_timeout <= ttl. */
    int lr = etcd3_req_lock(d, now_monotonic() + (usec_t)d->retry_timeout * USEC_PER_SEC);
    if (lr < 0)
        return lr;
    d->op_deadline = etcd3_caller_deadline(now_monotonic() + (usec_t)d->retry_timeout * USEC_PER_SEC);
    _cleanup_free_ char *key = full_key(d, "leader");
    int r = refresh_lease_locked(d, true);
    if (r >= 0) {
        _cleanup_free_ char *lease = xasprintf("%lld", d->lease_id);
        if (c && c->leader && streq(c->leader->name, d->name) && streq(c->leader->session, lease)) {
            r = 1; /* the keepalive is the renewal */
        } else {
            cJSON *inner = c ? etcd3_txn(etcd3_compare_absent(key), etcd3_put_request(key, d->name, d->lease_id),
                                         "request_put", NULL)
                             : NULL;
            cJSON *put = etcd3_put_request(key, d->name, d->lease_id);
            cJSON *t = etcd3_txn(etcd3_compare_value(key, d->name), put, "request_put", inner);
            cJSON *resp = NULL;
            r = txn_locked(d, t, &resp);
            cJSON_Delete(t);
            if (r == 0) {
                const cJSON *responses = cJSON_GetObjectItemCaseSensitive(resp, "responses");
                const cJSON *first = cJSON_GetArrayItem(responses, 0);
                if (etcd3_txn_succeeded(cJSON_GetObjectItemCaseSensitive(first, "response_txn")))
                    r = 1;
            }
            if (r == 1)
                etcd3_cache_apply_own(d, key, d->name, d->lease_id, etcd3_header_revision(resp));
            cJSON_Delete(resp);
        }
    }
    d->op_deadline = 0;
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

int dcs_delete_leader(Dcs *d) {
    if (etcd3_req_lock(d, 0) < 0)
        return -ETIMEDOUT;
    _cleanup_free_ char *key = full_key(d, "leader");
    cJSON *del = etcd3_key_request(key, NULL);
    cJSON *t = etcd3_txn(etcd3_compare_value(key, d->name), del, "request_delete_range", NULL);
    int r = cas_txn_locked(d, t, key, NULL, 0, NULL);
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

int dcs_take_leader(Dcs *d) {
    if (etcd3_req_lock(d, 0) < 0)
        return -ETIMEDOUT;
    _cleanup_free_ char *key = full_key(d, "leader");
    int r = refresh_lease_locked(d, false);
    if (r >= 0)
        r = put_locked(d, key, d->name, d->lease_id, NULL);
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

int dcs_touch_member(Dcs *d, const char *json) {
    if (etcd3_req_lock(d, 0) < 0)
        return -ETIMEDOUT;
    _cleanup_free_ char *rel = xasprintf("members/%s", d->name);
    _cleanup_free_ char *key = full_key(d, rel);
    int r = refresh_lease_locked(d, false);
    if (r >= 0) {
        bool same = streq(d->member_value, json) && d->member_lease == d->lease_id;
        if (same) {
            /* the key may have vanished (lease expired while we were away): check the cache */
            pthread_mutex_lock(&d->cache_lock);
            if (d->cache_ready && !etcd3_cache_find_locked(d, key))
                same = false;
            pthread_mutex_unlock(&d->cache_lock);
        }
        if (!same) {
            r = put_locked(d, key, json, d->lease_id, NULL);
            if (r == -ENOENT) { /* our lease vanished */
                d->lease_id = 0;
                r = grant_lease_locked(d);
                if (r >= 0)
                    r = put_locked(d, key, json, d->lease_id, NULL);
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

int dcs_initialize(Dcs *d, bool create_new, const char *sysid) {
    if (etcd3_req_lock(d, 0) < 0)
        return -ETIMEDOUT;
    _cleanup_free_ char *key = full_key(d, "initialize");
    const char *value = sysid ? sysid : "";
    int r;
    if (create_new) {
        cJSON *put = etcd3_put_request(key, value, 0);
        cJSON *t = etcd3_txn(etcd3_compare_absent(key), put, "request_put", NULL);
        r = cas_txn_locked(d, t, key, value, 0, NULL);
    } else {
        r = put_locked(d, key, value, 0, NULL);
    }
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

int dcs_cancel_initialization(Dcs *d) {
    if (etcd3_req_lock(d, 0) < 0)
        return -ETIMEDOUT;
    _cleanup_free_ char *key = full_key(d, "initialize");
    int r = delete_locked(d, key, NULL);
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

static int cas_put(Dcs *d, const char *rel, const char *json, long long version, long long *ret_rev) {
    if (etcd3_req_lock(d, 0) < 0)
        return -ETIMEDOUT;
    _cleanup_free_ char *key = full_key(d, rel);
    int r;
    long long rev = 0;
    if (version > 0) {
        cJSON *put = etcd3_put_request(key, json, 0);
        cJSON *t = etcd3_txn(etcd3_compare_mod(key, version), put, "request_put", NULL);
        r = cas_txn_locked(d, t, key, json, 0, &rev);
    } else {
        r = put_locked(d, key, json, 0, &rev);
    }
    if (r == 1 && ret_rev)
        *ret_rev = rev;
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

int dcs_set_config(Dcs *d, const char *json, long long version) { return cas_put(d, "config", json, version, NULL); }
int dcs_set_failover(Dcs *d, const char *json, long long version) {
    return cas_put(d, "failover", json, version, NULL);
}
int dcs_set_sync_state(Dcs *d, const char *json, long long version, long long *ret_new_version) {
    return cas_put(d, "sync", json, version, ret_new_version);
}
int dcs_set_history(Dcs *d, const char *json) { return cas_put(d, "history", json, 0, NULL); }
int dcs_set_status(Dcs *d, const char *json) { return cas_put(d, "status", json, 0, NULL); }
int dcs_set_failsafe(Dcs *d, const char *json) { return cas_put(d, "failsafe", json, 0, NULL); }

int dcs_delete_sync_state(Dcs *d, long long version) {
    if (etcd3_req_lock(d, 0) < 0)
        return -ETIMEDOUT;
    _cleanup_free_ char *key = full_key(d, "sync");
    int r;
    if (version > 0) {
        cJSON *del = etcd3_key_request(key, NULL);
        cJSON *t = etcd3_txn(etcd3_compare_mod(key, version), del, "request_delete_range", NULL);
        r = cas_txn_locked(d, t, key, NULL, 0, NULL);
    } else {
        r = delete_locked(d, key, NULL);
    }
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

int dcs_delete_cluster(Dcs *d) {
    if (etcd3_req_lock(d, 0) < 0)
        return -ETIMEDOUT;
    int r = delete_locked(d, d->prefix_key, d->range_end);
    pthread_mutex_unlock(&d->req_lock);
    if (r == 1)
        etcd3_cas_lost(d); /* rebuild the cache from scratch */
    return r;
}

int dcs_put_raw(Dcs *d, const char *rel_key, const char *value, bool with_lease) {
    if (etcd3_req_lock(d, 0) < 0)
        return -ETIMEDOUT;
    _cleanup_free_ char *key = full_key(d, rel_key);
    int r = with_lease ? refresh_lease_locked(d, false) : 1;
    if (r >= 0)
        r = put_locked(d, key, value, with_lease ? d->lease_id : 0, NULL);
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

int dcs_delete_raw(Dcs *d, const char *rel_key) {
    if (etcd3_req_lock(d, 0) < 0)
        return -ETIMEDOUT;
    _cleanup_free_ char *key = full_key(d, rel_key);
    int r = delete_locked(d, key, NULL);
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

int dcs_get_raw(Dcs *d, const char *rel_key, char **ret_value, long long *ret_mod_revision) {
    *ret_value = NULL;
    if (etcd3_req_lock(d, 0) < 0)
        return -ETIMEDOUT;
    _cleanup_free_ char *key = full_key(d, rel_key);
    cJSON *req = etcd3_key_request(key, NULL);
    cJSON *resp = NULL;
    int r = etcd3_call(d, "/kv/range", req, &resp);
    cJSON_Delete(req);
    pthread_mutex_unlock(&d->req_lock);
    if (r < 0)
        return r;
    const cJSON *kv = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(resp, "kvs"), 0);
    DcsKv out;
    r = 0;
    if (kv && etcd3_decode_kv(kv, &out)) {
        *ret_value = TAKE_PTR(out.value);
        if (ret_mod_revision)
            *ret_mod_revision = out.mod_revision;
        dcs_kv_free_contents(&out);
        r = 1;
    }
    cJSON_Delete(resp);
    return r;
}
