/* The watch thread and its cache of the cluster prefix.
 *
 * The watch thread has a connection of its own for the streaming /watch; it reads the prefix through
 * the caller-side connection (under req_lock) before each watch, and follows the endpoint the caller
 * side last used successfully (etcd3_call.c). Our own writes go into the cache at once. */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "dcs/etcd3_int.h"

/* ---- the cache ---- */

DcsKv *etcd3_cache_find_locked(Dcs *d, const char *key) {
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

void etcd3_cache_clear_locked(Dcs *d) {
    for (size_t i = 0; i < d->n_cache; i++)
        dcs_kv_free_contents(&d->cache[i]);
    free(d->cache);
    d->cache = NULL;
    d->n_cache = 0;
}

void etcd3_cache_apply_own(Dcs *d, const char *key, const char *value, long long lease, long long revision) {
    pthread_mutex_lock(&d->cache_lock);
    if (d->cache_ready && revision > 0) {
        DcsKv *kv = etcd3_cache_find_locked(d, key);
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

void etcd3_cas_lost(Dcs *d) {
    pthread_mutex_lock(&d->cache_lock);
    bool running = d->watch_running;
    pthread_mutex_unlock(&d->cache_lock);
    if (running)
        d->watch_reconnect = true;
}

static void cache_set_ready(Dcs *d, bool ready) {
    pthread_mutex_lock(&d->cache_lock);
    d->cache_ready = ready;
    pthread_cond_broadcast(&d->cache_cond);
    pthread_mutex_unlock(&d->cache_lock);
}

int dcs_get_cluster_cached(Dcs *d, Cluster **ret) {
    *ret = NULL;
    pthread_mutex_lock(&d->cache_lock);
    if (!d->cache_ready) {
        pthread_mutex_unlock(&d->cache_lock);
        return -EAGAIN;
    }
    Cluster *c = etcd3_cluster_of(d, d->cache, d->n_cache, d->cache_revision);
    pthread_mutex_unlock(&d->cache_lock);
    *ret = c;
    return 0;
}

int dcs_get_cluster(Dcs *d, Cluster **ret) {
    *ret = NULL;
    pthread_mutex_lock(&d->cache_lock);
    if (d->watch_running) {
        /* waiting for the cache: no longer than retry_timeout, nor than the caller's (lease) deadline */
        usec_t deadline = etcd3_caller_deadline(now_monotonic() + (usec_t)d->retry_timeout * USEC_PER_SEC);
        struct timespec until = {.tv_sec = (time_t)(deadline / USEC_PER_SEC),
                                 .tv_nsec = (long)(deadline % USEC_PER_SEC) * 1000};
        if (!d->cache_ready && etcd3_caller_gate(d) < 0) {
            pthread_mutex_unlock(&d->cache_lock);
            return -ETIMEDOUT;
        }
        while (!d->cache_ready && d->watch_running) {
            if (pthread_cond_timedwait(&d->cache_cond, &d->cache_lock, &until) == ETIMEDOUT)
                break;
        }
        if (d->cache_ready) {
            Cluster *c = etcd3_cluster_of(d, d->cache, d->n_cache, d->cache_revision);
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
        etcd3_set_error(d, "the DCS cache was not ready within retry_timeout (%d s)%s%s", (int)d->retry_timeout,
                        last[0] ? "; last error: " : "", last);
        etcd3_caller_failed();
        return -ETIMEDOUT;
    }
    pthread_mutex_unlock(&d->cache_lock);
    return dcs_read_cluster(d, false, ret);
}

/* ---- the watch thread ---- */

static bool relevant_wake(Dcs *d, const char *rel, const DcsKv *old, const char *new_value) {
    if (strcmp(rel, "leader") == 0)
        return !old || !new_value || strcmp(old->value, new_value) != 0;
    if (strcmp(rel, "status") == 0 || strcmp(rel, "optime/leader") == 0) {
        if (!new_value)
            return false;
        _cleanup_free_ char *lk = xasprintf("%s/leader", d->base);
        DcsKv *leader = etcd3_cache_find_locked(d, lk);
        return !(leader && strcmp(leader->value, d->name) == 0);
    }
    if (strcmp(rel, "config") == 0)
        return old && new_value && strcmp(old->value, new_value) != 0;
    /* a switchover or failover asked for: the leader acts on it, the candidate gets ready (its status is
     * watched closely until the handover) */
    if (strcmp(rel, "failover") == 0)
        return new_value && (!old || strcmp(old->value, new_value) != 0);
    return false;
}

static void apply_event_locked(Dcs *d, const cJSON *ev, bool *wake) {
    const char *type = json_get_string(ev, "type");
    bool is_delete = type && strcmp(type, "DELETE") == 0;
    DcsKv kv;
    if (!etcd3_decode_kv(cJSON_GetObjectItemCaseSensitive(ev, "kv"), &kv))
        return;
    const char *rel = strncmp(kv.key, d->prefix_key, strlen(d->prefix_key)) == 0 ? kv.key + strlen(d->prefix_key) : "";
    DcsKv *old = etcd3_cache_find_locked(d, kv.key);
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

static void handle_message(WatchStream *s, const char *text, size_t len) {
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
    long long rev = etcd3_header_revision(res);
    pthread_mutex_lock(&d->cache_lock);
    const cJSON *ev;
    cJSON_ArrayForEach(ev, events) {
        apply_event_locked(d, ev, &wake);
        d->st_events++;
    }
    if (rev > d->cache_revision)
        d->cache_revision = rev;
    pthread_mutex_unlock(&d->cache_lock);
    cJSON_Delete(j);
    if (wake && d->wake)
        d->wake(d->wake_data);
}

/* The gateway streams JSON objects back to back; split them by brace depth. */
size_t etcd3_watch_stream_write(char *ptr, size_t size, size_t nmemb, void *ud) {
    WatchStream *s = ud;
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
    WatchStream *s = ud;
    return (s->d->watch_stop || s->d->watch_reconnect) ? 1 : 0;
}

static void *watch_main(void *arg) {
    Dcs *d = arg;
    (void)pthread_setname_np(pthread_self(), "pgha-watch");
    Conn wconn = {0};
    unsigned wgen = 0; /* the settings generation wconn was made with */
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
        /* the HA thread's leader renewal may be waiting for this connection: the read gets at most half
         * of retry_timeout (a failure is retried after the backoff; the HA loop reads by itself meanwhile) */
        dcs_set_call_deadline(now_monotonic() + (usec_t)d->retry_timeout * USEC_PER_SEC / 2);
        int r = etcd3_range_prefix_locked(d, false, &kvs, &n, &rev);
        dcs_set_call_deadline(0);
        /* cleared under req_lock, before settings_gen is read: a swap (which sets it under req_lock) after this
         * point is seen on the next round, one before it by the generation read below */
        d->watch_reconnect = false;
        pthread_mutex_lock(&d->lock);
        _cleanup_free_ char *endpoint = xstrdup(etcd3_current_endpoint_locked(d));
        free(d->watch_endpoint);
        d->watch_endpoint = xstrdup(endpoint);
        _cleanup_free_ char *token = xstrdup(d->token);
        _cleanup_free_ char *path = xasprintf("%s/watch", d->api_prefix);
        bool new_settings = wgen != d->settings_gen;
        wgen = d->settings_gen;
        pthread_mutex_unlock(&d->lock);
        /* the handle takes the TLS files here, under req_lock: a reload swaps them under req_lock and lock */
        if (new_settings)
            etcd3_conn_free(&wconn);
        etcd3_conn_prepare(d, &wconn, token);
        pthread_mutex_unlock(&d->req_lock);
        if (r < 0 || !endpoint) {
            cache_set_ready(d, false);
            etcd3_free_kvs(kvs, n);
            continue;
        }
        pthread_mutex_lock(&d->cache_lock);
        bool wake = false;
        /* compare with what we had, to wake the HA loop on a missed leader change */
        _cleanup_free_ char *lk = xasprintf("%s/leader", d->base);
        DcsKv *old_leader = etcd3_cache_find_locked(d, lk);
        const DcsKv *new_leader = NULL;
        for (size_t i = 0; i < n; i++)
            if (strcmp(kvs[i].key, lk) == 0)
                new_leader = &kvs[i];
        if (d->cache_ready && ((old_leader == NULL) != (new_leader == NULL) ||
                               (old_leader && new_leader && strcmp(old_leader->value, new_leader->value) != 0)))
            wake = true;
        etcd3_cache_clear_locked(d);
        d->cache = kvs;
        d->n_cache = n;
        d->cache_revision = rev;
        d->cache_ready = true;
        pthread_cond_broadcast(&d->cache_cond);
        pthread_mutex_unlock(&d->cache_lock);
        if (wake && d->wake)
            d->wake(d->wake_data);

        /* 2. the streaming watch from the next revision */
        cJSON *req = etcd3_watch_request(d->prefix_key, d->range_end, rev + 1);
        _cleanup_free_ char *body = cJSON_PrintUnformatted(req);
        cJSON_Delete(req);
        _cleanup_free_ char *url = xasprintf("%s%s", endpoint, path);
        WatchStream s = {.d = d};
        sb_init(&s.buf);
        char curl_err[CURL_ERROR_SIZE] = "";
        long connect_ms = (long)d->retry_timeout * 1000 / 3;
        if (connect_ms < 1000)
            connect_ms = 1000;
        curl_easy_setopt(wconn.curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(wconn.curl, CURLOPT_XFERINFOFUNCTION, stream_progress);
        curl_easy_setopt(wconn.curl, CURLOPT_XFERINFODATA, &s);
        CURLcode rc = etcd3_http_perform(d, &wconn, url, body, 0L, connect_ms, etcd3_watch_stream_write, &s, curl_err);
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
                const char *cur = etcd3_current_endpoint_locked(d);
                if (cur && strcmp(cur, endpoint) == 0)
                    d->current = (d->current + 1) % d->endpoints.n;
                pthread_mutex_unlock(&d->lock);
            }
        }
    }
    etcd3_conn_free(&wconn);
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
