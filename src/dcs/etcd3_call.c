/* The etcd client's call policy: a unary call with its deadline, failover between the endpoints, the
 * auth token and re-authentication; and the connection (API version, authentication, members).
 *
 * The watch always follows the endpoint the caller side last used successfully: when a request fails
 * over to another etcd member, the watch is told to reconnect there, so a frozen member (SIGSTOP keeps
 * its sockets open) cannot leave the cache silently stale while the leader lease is renewed elsewhere. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "dcs/etcd3_int.h"

typedef enum Outcome {
    OUT_OK,      /* a JSON answer without error */
    OUT_NEXT,    /* this endpoint is unusable now: try the next one */
    OUT_RETRY,   /* try the same endpoint again (DeadlineExceeded, FailedPrecondition) */
    OUT_REAUTH,  /* the token is invalid or expired */
    OUT_FAIL,    /* a definite error from etcd: stop */
    OUT_FOREIGN, /* the answer came from another etcd cluster than the one known: like OUT_NEXT, not used */
} Outcome;

/* The header's cluster_id: a uint64 that the gateway writes as a decimal string (half of all ids are past
 * the range of a long long). */
static bool header_cluster_id(const cJSON *hdr, unsigned long long *ret) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(hdr, "cluster_id");
    if (!cJSON_IsString(it) || !it->valuestring[0] || it->valuestring[0] == '-')
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(it->valuestring, &end, 10);
    if (errno || *end)
        return false;
    *ret = v;
    return true;
}

/* One POST to one endpoint. */
static Outcome post_once(Dcs *d, Conn *c, const char *endpoint, const char *path, const char *body, long timeout_ms,
                         const char *token, cJSON **ret, int *ret_grpc, char *err, size_t errlen) {
    *ret = NULL;
    *ret_grpc = 0;
    cJSON *j = NULL;
    long status = 0;
    if (etcd3_http_fetch(d, c, token, endpoint, path, body, timeout_ms, &j, &status, err, errlen) < 0)
        return OUT_NEXT;
    if (!cJSON_IsObject(j)) {
        snprintf(err, errlen, "%s: HTTP %ld with a response that is not a JSON object", endpoint, status);
        cJSON_Delete(j);
        return OUT_NEXT;
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    /* etcd 3.6's grpc-gateway v2 dropped the "error" field of unary errors: {"code": 9, "message": "..."}
     * (etcd-io/etcd#21100); no answer of a successful call has both; a gRPC code (0-16) with an HTTP error
     * status, not a proxy's {"code": 503, ...} (that one goes on to the next member) */
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(j, "code");
    bool status_only = !e && status >= 400 && cJSON_IsNumber(sc) && sc->valuedouble >= 0 && sc->valuedouble <= 16 &&
                       cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "message"));
    if (e || status_only) {
        /* a unary call's error: {"error": "...", "code": 14, "message": "..."} (3.6: without "error"); a stream's
         * (the keepalive's):
         * {"error": {"grpc_code": 14, "http_code": 503, "message": "...", "http_status": "..."}} */
        long long code = 0;
        const char *msg = NULL;
        if (cJSON_IsObject(e)) {
            /* (etcd 3.6's grpc-gateway v2 says "code") */
            if (!json_get_ll(e, "grpc_code", &code))
                (void)json_get_ll(e, "code", &code);
            msg = json_get_string(e, "message");
        } else {
            (void)json_get_ll(j, "code", &code);
            msg = json_get_string(j, "message");
            if (!msg && cJSON_IsString(e))
                msg = e->valuestring;
        }
        if (!msg)
            msg = "unknown error";
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
    /* The cluster id is pinned: the first answer names the cluster, an answer from another one is refused (our
     * lease and leader key live in the first; a lease or leader key made elsewhere would make a second primary).
     * Only with pgha.follow_etcd_cluster_change (off by default: a decision of one node alone, which a member
     * rebuilt by mistake as a new cluster could mislead) does the client follow, once, for longer than the
     * lease's ttl since the last answer from the known cluster, every answer came from one and the same other
     * cluster (an etcd restored from a snapshot, a DNS name or VIP moved): by then the lease there has expired
     * and a primary has demoted. Patroni follows at once. A reload's side client never follows. A member with a lower raft term than one seen before is stale. (A
     * keepalive's header is under "result".) */
    const cJSON *hdr = cJSON_GetObjectItemCaseSensitive(j, "header");
    if (!hdr)
        hdr = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "result"), "header");
    unsigned long long cid = 0;
    long long term = 0;
    if (hdr && header_cluster_id(hdr, &cid) && cid != 0) {
        bool has_term = json_get_i64str(hdr, "raft_term", &term);
        usec_t now = now_monotonic();
        pthread_mutex_lock(&d->lock);
        /* the lease of the known cluster lasts its ttl from the last keepalive, which came before that answer */
        long long ttl = d->ttl > d->lease_ttl ? d->ttl : d->lease_ttl;
        unsigned long long known = d->cluster_id;
        long long seen = d->raft_term;
        bool foreign = known != 0 && cid != known;
        bool adopted = false;
        if (!foreign) {
            d->cluster_seen = now;
            d->cluster_next = 0;
        } else if (!d->cluster_pinned) {
            if (d->cluster_next != cid) {
                /* the first other cluster since the known one answered: the clock runs from that answer; one
                 * after yet another cluster: from now */
                d->cluster_next_since = d->cluster_next ? now : d->cluster_seen;
                d->cluster_next = cid;
            }
            adopted = now - d->cluster_next_since > (usec_t)ttl * USEC_PER_SEC;
        }
        bool stale = !foreign && has_term && term < seen;
        if (adopted) {
            d->cluster_id = cid;
            d->raft_term = has_term ? term : 0;
            d->cluster_seen = now;
            d->cluster_next = 0;
            d->members_refreshed = 0; /* the new cluster's members, on the next read */
        } else if (!foreign && (known == 0 || (has_term && term > seen))) {
            d->cluster_id = cid;
            if (has_term)
                d->raft_term = term;
        }
        pthread_mutex_unlock(&d->lock);
        if (adopted) {
            /* the next renewal grants a new lease there (the lease is the HA thread's; this may be the watch's
             * read), the member key is written with it, and the watch rebuilds its cache from the new cluster */
            log_error("etcd cluster ID changed from %llx to %llx (no answer from the former for more than %lld s): "
                      "following it with a new lease",
                      known, cid, ttl);
            d->lease_stale = true;
            d->watch_reconnect = true;
        } else if (foreign) {
            snprintf(err, errlen, "%s: another etcd cluster (id %llx, expected %llx)", endpoint, cid, known);
            cJSON_Delete(j);
            return OUT_FOREIGN;
        }
        if (stale) {
            snprintf(err, errlen, "%s: raft term %lld is older than %lld seen before; the member is stale", endpoint,
                     term, seen);
            cJSON_Delete(j);
            return OUT_NEXT;
        }
    }
    *ret = j;
    return OUT_OK;
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
        /* only etcd's refusals of the credentials (invalid user or password, unauthenticated, permission denied)
         * are -EACCES; anything else (a leader election's timeout, a member shutting down, another cluster) is
         * this endpoint's trouble: the caller moves on */
        if (o == OUT_REAUTH || (o == OUT_FAIL && (grpc == 3 || grpc == 7 || grpc == 16)))
            return -EACCES;
        return o == OUT_FOREIGN ? -EXDEV : -ETIMEDOUT;
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

/* Make ep the endpoint in use when it is in the list (caller holds lock); false when it is not. */
static bool select_endpoint(Dcs *d, const char *ep) {
    bool found = false;
    for (size_t i = 0; i < d->endpoints.n; i++)
        if (strcmp(d->endpoints.v[i], ep) == 0) {
            d->current = i;
            found = true;
        }
    return found;
}

/* Like Patroni's api_execute(): a round tries the endpoints in turn, each with the time left split
 * over as many of them as get at least 1 s (1-node clusters up to 3 tries, 2-node clusters up to 2
 * per node; 0.5 s when the caller's deadline leaves less than retry_timeout: etcd3_round_plan); when a round
 * fails everywhere, it pauses (0.1 s, doubling up to 1 s) and starts another one with the time that is left,
 * on the endpoints after the last one tried, until the deadline. A
 * single round is not enough: while etcd elects a new leader every member fails or times out for a
 * second or two, and giving up then leaves part of retry_timeout unused. */
/* The calling thread's caps on its calls' deadlines (dcs_set_call_deadline, dcs_set_lease_deadline), or 0,
 * and its fail-fast mode (dcs_set_fail_fast) with whether a call failed since it was set. */
static _Thread_local usec_t call_deadline, lease_deadline;
static _Thread_local bool fail_fast, failed;

void dcs_set_call_deadline(usec_t deadline) { call_deadline = deadline; }

void dcs_set_lease_deadline(usec_t deadline) { lease_deadline = deadline; }

void dcs_set_fail_fast(bool on) {
    fail_fast = on;
    failed = false;
}

bool dcs_suspend_fail_fast(void) {
    bool was = fail_fast;
    fail_fast = false;
    return was;
}

void dcs_restore_fail_fast(bool was_on) { fail_fast = was_on; }

usec_t etcd3_caller_deadline(usec_t deadline) {
    if (call_deadline && (!deadline || call_deadline < deadline))
        deadline = call_deadline;
    if (lease_deadline && (!deadline || lease_deadline < deadline))
        deadline = lease_deadline;
    return deadline;
}

void etcd3_caller_failed(void) { failed = true; /* (counted while suspended too; reset by dcs_set_fail_fast) */ }

int etcd3_caller_gate(Dcs *d) {
    if (!fail_fast || !failed)
        return 0;
    etcd3_set_error(d, "etcd: not asked again this cycle after a request failed");
    return -ETIMEDOUT;
}

int etcd3_req_lock(Dcs *d, usec_t limit) {
    int r = etcd3_caller_gate(d);
    if (r < 0)
        return r;
    usec_t deadline = etcd3_caller_deadline(limit);
    if (!deadline) {
        pthread_mutex_lock(&d->req_lock);
        return 0;
    }
    struct timespec until = {.tv_sec = (time_t)(deadline / USEC_PER_SEC),
                             .tv_nsec = (long)(deadline % USEC_PER_SEC) * 1000};
    if (pthread_mutex_clocklock(&d->req_lock, CLOCK_MONOTONIC, &until) == 0)
        return 0;
    etcd3_set_error(d, "the etcd connection stayed busy until the caller's deadline");
    etcd3_caller_failed();
    return -ETIMEDOUT;
}

void etcd3_round_plan(size_t n, int round, usec_t retry_timeout, usec_t left, EtcdRoundPlan *ret) {
    /* per-try timeout: the time left (retry_timeout in the first round, less when the caller's deadline comes
     * sooner) over the nodes, dropping nodes until it is at least 1 s */
    usec_t budget = round == 0 && retry_timeout < left ? retry_timeout : left;
    size_t nodes = n;
    while (nodes > 1 && budget / nodes < USEC_PER_SEC)
        nodes--;
    /* ... or 0.5 s when less than retry_timeout is left (a deadline near, the fence point): the endpoint in use
     * may be the one that does not answer, and the others must get their turn before the deadline */
    usec_t half = USEC_PER_SEC / 2;
    if (budget < retry_timeout && nodes < n && budget / (nodes + 1) >= half) {
        size_t more = (size_t)(budget / half);
        nodes = more < n ? more : n;
    }
    size_t tries = 1, max_tries = nodes >= 3 ? 1 : 4 - nodes;
    while (tries < max_tries && budget / nodes / (tries + 1) >= USEC_PER_SEC)
        tries++;
    *ret = (EtcdRoundPlan){.nodes = nodes, .tries = tries, .per_try = budget / nodes / tries};
}

int etcd3_call(Dcs *d, const char *api, cJSON *body_json, cJSON **ret) {
    *ret = NULL;
    int gate = etcd3_caller_gate(d);
    if (gate < 0)
        return gate;
    _cleanup_free_ char *body = cJSON_PrintUnformatted(body_json);
    usec_t start = now_monotonic();
    usec_t deadline = start + (usec_t)d->retry_timeout * USEC_PER_SEC;
    /* a multi-request operation (the leader update) shares one deadline */
    if (d->op_deadline && d->op_deadline < deadline)
        deadline = d->op_deadline;
    deadline = etcd3_caller_deadline(deadline);
    if (deadline <= start + 100 * USEC_PER_MSEC) {
        etcd3_set_error(d, "etcd: no time left for the request before the caller's deadline");
        etcd3_caller_failed();
        return -ETIMEDOUT;
    }
    pthread_mutex_lock(&d->lock);
    StrList eps;
    strlist_copy(&eps, &d->endpoints);
    size_t first = eps.n ? d->current % eps.n : 0;
    _cleanup_free_ char *path = xasprintf("%s%s", d->api_prefix, api);
    pthread_mutex_unlock(&d->lock);
    if (eps.n == 0) {
        etcd3_set_error(d, "etcd: no endpoint to send the request to");
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
        if (d->cancel && *d->cancel) {
            result = -ECANCELED;
            break;
        }
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
        usec_t left = deadline - now;
        EtcdRoundPlan plan;
        etcd3_round_plan(n, round, (usec_t)d->retry_timeout * USEC_PER_SEC, left, &plan);
        size_t nodes = plan.nodes, tries = plan.tries;
        usec_t per_try = plan.per_try;
        for (size_t k = 0; k < nodes * tries; k++) {
            if (d->cancel && *d->cancel) {
                result = -ECANCELED;
                break;
            }
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
                log_debug("etcd request %s: %s; authenticating again", api, err);
                char aerr[512] = "";
                int ar = authenticate_locked(d, &d->conn, ep, timeout_ms, aerr, sizeof aerr);
                /* one login per call, unless it failed for this endpoint's trouble (a leader election's
                 * time-out): the next endpoint may log in then */
                reauthed = ar == 0 || ar == -EACCES;
                if (ar == 0) {
                    pthread_mutex_lock(&d->lock);
                    free(token);
                    token = xstrdup(d->token);
                    pthread_mutex_unlock(&d->lock);
                    o = post_once(d, &d->conn, ep, path, body, timeout_ms, token, &j, &last_grpc, err, sizeof err);
                } else {
                    snprintf(err, sizeof err, "%s", aerr);
                    o = ar == -EACCES ? OUT_FAIL : OUT_NEXT; /* refused; else this endpoint's trouble */
                }
            }
            for (int t = 0; o == OUT_RETRY && t < 3 && now_monotonic() + 100 * USEC_PER_MSEC < deadline; t++) {
                usleep(100 * 1000);
                o = post_once(d, &d->conn, ep, path, body, timeout_ms, token, &j, &last_grpc, err, sizeof err);
            }
            if (o == OUT_OK) {
                pthread_mutex_lock(&d->lock);
                /* remember the endpoint that works; the watch follows it */
                (void)select_endpoint(d, ep);
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
                result = last_grpc == 5                                           ? -ENOENT
                         : (o == OUT_REAUTH || last_grpc == 7 || last_grpc == 16) ? -EACCES
                                                                                  : -EIO;
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
        if (result == -ECANCELED)
            etcd3_set_error(d, "etcd request %s cancelled", api);
        else if (result == -ETIMEDOUT)
            etcd3_set_error(d, "etcd is not reachable (%.1f s, retry_timeout %d s): %s", took, (int)d->retry_timeout,
                            errors.len ? errors.s : "no endpoint answered");
        else
            etcd3_set_error(d, "%s", errors.len ? errors.s : "etcd request failed");
        sb_free(&errors);
        if (result == -ETIMEDOUT) {
            etcd3_caller_failed();
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

/* ---- connect: API version, members, authentication ---- */

/* etcd's /version answer: 0 and *ret_prefix (the gateway's path by cluster version: 3.0-3.2 /v3alpha, 3.3
 * /v3beta, later and 4.x /v3), -EPROTONOSUPPORT for an etcd too old for the v3 API, -EAGAIN while a new
 * cluster is still forming (etcd says its cluster version is "not_decided" until its members agree: the
 * agents of a whole site starting at once after a power loss must wait for it, not exit), -EPROTO for
 * an answer that is not etcd's. */
int etcd3_parse_version(const char *endpoint, const char *server, const char *cluster, const char **ret_prefix,
                        char *err, size_t errlen) {
    *ret_prefix = NULL;
    if (!server || !cluster) {
        snprintf(err, errlen, "%s: /version did not answer like etcd", endpoint);
        return -EPROTO;
    }
    if (strcmp(cluster, "not_decided") == 0) {
        snprintf(err, errlen, "%s: etcd %s has no cluster version yet (the cluster is still forming)", endpoint,
                 server);
        return -EAGAIN;
    }
    int smaj = 0, smin = 0, spatch = 0, cmaj = 0, cmin = 0;
    (void)sscanf(server, "%d.%d.%d", &smaj, &smin, &spatch);
    (void)sscanf(cluster, "%d.%d", &cmaj, &cmin);
    if (smaj < 3 || (smaj == 3 && smin == 0 && spatch < 4) || cmaj < 3) {
        snprintf(err, errlen, "%s: etcd %s (cluster %s) is too old; etcd >= 3.0.4 with the v3 API is required",
                 endpoint, server, cluster);
        return -EPROTONOSUPPORT;
    }
    const char *prefix = "/v3";
    if (cmaj == 3 && cmin < 3)
        prefix = "/v3alpha";
    else if (cmaj == 3 && cmin == 3)
        prefix = "/v3beta";
    *ret_prefix = prefix;
    return 0;
}

static int get_version(Dcs *d, const char *endpoint, long timeout_ms, char *err, size_t errlen) {
    cJSON *j = NULL;
    long status = 0;
    int r = etcd3_http_fetch(d, &d->conn, NULL, endpoint, "/version", NULL, timeout_ms, &j, &status, err, errlen);
    if (r < 0)
        return -ETIMEDOUT;
    const char *prefix = NULL;
    r = etcd3_parse_version(endpoint, json_get_string(j, "etcdserver"), json_get_string(j, "etcdcluster"), &prefix, err,
                            errlen);
    if (r == 0) {
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
    int r = etcd3_call(d, "/cluster/member/list", req, &resp);
    cJSON_Delete(req);
    if (r < 0)
        return;
    StrList urls = {0};
    const cJSON *members = cJSON_GetObjectItemCaseSensitive(resp, "members");
    const cJSON *m;
    cJSON_ArrayForEach(m, members) {
        const cJSON *cu = cJSON_GetObjectItemCaseSensitive(m, "clientURLs");
        const cJSON *u;
        cJSON_ArrayForEach(u, cu)
            if (cJSON_IsString(u) && !strlist_contains(&urls, u->valuestring))
                strlist_add(&urls, u->valuestring);
    }
    cJSON_Delete(resp);
    if (urls.n == 0) {
        strlist_clear(&urls);
        return;
    }
    pthread_mutex_lock(&d->lock);
    const char *cur = etcd3_current_endpoint_locked(d);
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

int etcd3_connect_locked(Dcs *d) {
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
            if (!select_endpoint(d, ep)) {
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
        etcd3_set_error(d, "cannot connect to etcd: %s", errors.len ? errors.s : "no endpoint");
    sb_free(&errors);
    strlist_clear(&eps);
    return r;
}

int dcs_connect(Dcs *d) {
    pthread_mutex_lock(&d->req_lock);
    int r = etcd3_connect_locked(d);
    pthread_mutex_unlock(&d->req_lock);
    return r;
}

void etcd3_maybe_refresh_members_locked(Dcs *d) {
    pthread_mutex_lock(&d->lock);
    bool due = !d->use_proxies && (d->members_refreshed == 0 ||
                                   now_monotonic() - d->members_refreshed > (usec_t)(10 * d->ttl) * USEC_PER_SEC);
    pthread_mutex_unlock(&d->lock);
    if (due)
        refresh_members_locked(d);
}

/* ---- a test of new settings (a reload) ---- */

void etcd3_probe_free(EtcdProbe *p) {
    free(p->endpoint);
    free(p->api_prefix);
    free(p->token);
    strlist_clear(&p->members);
    *p = (EtcdProbe){0};
}

/* Ends the side connection's transfer at once when the test is cancelled (the client is being freed). */
static int probe_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    const _Atomic bool *cancel = ud;
    return *cancel ? 1 : 0;
}

/* An outcome of post_once() as the probe reports it. */
static int probe_outcome(Outcome o) {
    switch (o) {
    case OUT_OK: return 0;
    case OUT_REAUTH: return -EACCES;
    case OUT_FAIL: return -EIO;
    case OUT_FOREIGN: return -EXDEV;
    default: return -ETIMEDOUT;
    }
}

/* The milliseconds left until `until`, or 0 when less than 50 ms are. */
static long ms_left(usec_t until) {
    usec_t now = now_monotonic();
    return now + 50 * USEC_PER_MSEC < until ? (long)((until - now) / USEC_PER_MSEC) : 0;
}

/* Ask one endpoint of the new settings: with `full`, its /version, then authenticate (with a user), read the
 * leader key (the answer names the cluster: *ret_cid) and check that the user may write the cluster's keys;
 * else only authenticate and read (the cluster is the one the first endpoint named). */
static int probe_endpoint(Dcs *side, const char *ep, usec_t until, bool full, const char *read_body,
                          const char *write_body, unsigned long long *ret_cid, long long *ret_term, char *err,
                          size_t errlen) {
    int r = 0;
    if (full)
        r = get_version(side, ep, ms_left(until) ? ms_left(until) : 1, err, errlen);
    if (r == 0 && side->username) {
        long ms = ms_left(until);
        r = ms ? authenticate_locked(side, &side->conn, ep, ms, err, errlen) : -ETIMEDOUT;
        if (r == -ETIMEDOUT && !err[0])
            snprintf(err, errlen, "%s: no time left to authenticate", ep);
    }
    if (r < 0)
        return r;
    int grpc = 0;
    cJSON *j = NULL;
    long ms = ms_left(until);
    if (!ms) {
        snprintf(err, errlen, "%s: no time left to read from it", ep);
        return -ETIMEDOUT;
    }
    _cleanup_free_ char *path = xasprintf("%s/kv/range", side->api_prefix);
    r = probe_outcome(post_once(side, &side->conn, ep, path, read_body, ms, side->token, &j, &grpc, err, errlen));
    if (r == 0) {
        const cJSON *hdr = cJSON_GetObjectItemCaseSensitive(j, "header");
        if (!header_cluster_id(hdr, ret_cid) || *ret_cid == 0) {
            snprintf(err, errlen, "%s: the answer does not name its etcd cluster", ep);
            r = -EPROTO;
        }
        (void)json_get_i64str(hdr, "raft_term", ret_term);
    }
    cJSON_Delete(j);
    if (r < 0 || !full)
        return r;
    /* a write that etcd checks but never runs: a read-only role passes the read and fails here */
    ms = ms_left(until);
    if (!ms) {
        snprintf(err, errlen, "%s: no time left to check the write permission", ep);
        return -ETIMEDOUT;
    }
    free(path);
    path = xasprintf("%s/kv/txn", side->api_prefix);
    char werr[512] = "";
    r = probe_outcome(
        post_once(side, &side->conn, ep, path, write_body, ms, side->token, &j, &grpc, werr, sizeof werr));
    cJSON_Delete(j);
    if (r == -EACCES || (r == -EIO && grpc == 7))
        snprintf(err, errlen, "the new etcd user cannot write %s/...: %s", side->base, werr);
    else
        snprintf(err, errlen, "%s", werr);
    return r == -EIO && grpc == 7 ? -EACCES : r;
}

int etcd3_probe(Dcs *side, usec_t deadline, const _Atomic bool *cancel, EtcdProbe *ret) {
    *ret = (EtcdProbe){0};
    side->cancel = cancel;
    etcd3_conn_prepare(side, &side->conn, NULL);
    curl_easy_setopt(side->conn.curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(side->conn.curl, CURLOPT_XFERINFOFUNCTION, probe_progress);
    curl_easy_setopt(side->conn.curl, CURLOPT_XFERINFODATA, (void *)cancel);
    _cleanup_free_ char *leader = xasprintf("%s/leader", side->base);
    _cleanup_free_ char *member = xasprintf("%s/members/%s", side->base, side->name);
    cJSON *req = etcd3_key_request(leader, NULL);
    cJSON_AddTrueToObject(req, "serializable");
    cJSON_AddTrueToObject(req, "keys_only");
    _cleanup_free_ char *read_body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    /* version(leader) < 0 never holds: etcd checks the permissions of both branches and runs neither */
    cJSON *cmp = etcd3_compare_absent(leader);
    cJSON_ReplaceItemInObjectCaseSensitive(cmp, "target", cJSON_CreateString("VERSION"));
    cJSON_DeleteItemFromObjectCaseSensitive(cmp, "create_revision");
    cJSON_AddStringToObject(cmp, "version", "0");
    cJSON_AddStringToObject(cmp, "result", "LESS");
    req = etcd3_txn(cmp, etcd3_put_request(leader, "", 0), "request_put", NULL);
    cJSON *put = cJSON_CreateObject();
    cJSON_AddItemToObject(put, "request_put", etcd3_put_request(member, "", 0));
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(req, "success"), put);
    _cleanup_free_ char *write_body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    StrBuf errors;
    sb_init(&errors);
    int r = -ETIMEDOUT;
    /* credentials refused; an answer that is not a usable etcd; an endpoint of another etcd cluster */
    bool refused = false, other = false, foreign = false, found = false;
    size_t n = side->configured.n;
    for (size_t k = 0; k < n && !*cancel; k++) {
        usec_t now = now_monotonic();
        if (now + 50 * USEC_PER_MSEC >= deadline)
            break;
        /* the time left over the endpoints not tried yet, at least 1 s each (never past the deadline) */
        usec_t share = (deadline - now) / (n - k);
        if (share < USEC_PER_SEC)
            share = USEC_PER_SEC;
        usec_t until = now + share < deadline ? now + share : deadline;
        const char *ep = side->configured.v[k];
        char err[512] = "";
        unsigned long long cid = 0;
        long long term = 0;
        int er = probe_endpoint(side, ep, until, !found, read_body, write_body, &cid, &term, err, sizeof err);
        if (er == 0 && !found) {
            found = true;
            *ret = (EtcdProbe){.endpoint = xstrdup(ep),
                               .api_prefix = xstrdup(side->api_prefix),
                               .token = xstrdup(side->token),
                               .cluster_id = cid,
                               .raft_term = term};
            /* the members, as a connect looks them up (on the side connection: nothing is held meanwhile) */
            pthread_mutex_lock(&side->lock);
            (void)select_endpoint(side, ep);
            pthread_mutex_unlock(&side->lock);
            side->op_deadline = deadline;
            refresh_members_locked(side);
            side->op_deadline = 0;
            if (side->members_refreshed)
                strlist_copy(&ret->members, &side->endpoints);
            if (*cancel)
                break;
            pthread_mutex_lock(&side->lock);
            bool same = side->cluster_id == cid;
            pthread_mutex_unlock(&side->lock);
            if (!same) {
                snprintf(err, sizeof err, "%s: the member lookup reached another etcd cluster", ep);
                er = -EXDEV;
            }
        }
        if (er == 0)
            continue; /* every configured endpoint that answers is asked: none may be of another cluster */
        if (errors.len)
            sb_add(&errors, "; ");
        sb_add(&errors, err[0] ? err : ep);
        if (er == -EXDEV)
            foreign = true;
        else if (er == -EACCES && !found)
            refused = true; /* the same users on every member: the others would refuse them too */
        else if (er != -ETIMEDOUT && er != -EACCES)
            other = true;
        if (foreign || refused)
            break;
    }
    if (*cancel)
        r = -ECANCELED;
    else if (foreign)
        r = -EXDEV;
    else if (found)
        r = 0;
    else if (refused)
        r = -EACCES;
    else if (other)
        r = -EPROTO;
    else
        r = -ETIMEDOUT;
    if (r < 0) {
        etcd3_probe_free(ret);
        etcd3_set_error(side, "%s",
                        r == -ECANCELED ? "cancelled"
                        : errors.len    ? errors.s
                                        : "no endpoint was tried before the deadline");
    }
    sb_free(&errors);
    side->cancel = NULL;
    return r;
}
