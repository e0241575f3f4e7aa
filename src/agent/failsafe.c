/* Failsafe mode (spec §4.12): the /failsafe key the lock holder keeps, the POST /failsafe round of a primary
 * that cannot reach the DCS, and the window in which a replica that accepted such a POST does not race. The
 * decisions are pure (failsafe_survives(), decide()); the licence the survival gives is kept in view.c next to
 * the lease it stands in for. */
#include "agent/ha_int.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#include "agent/probe.h"

#define FAILSAFE_TIMEOUT_MS 2000L /* per attempt (Patroni: timeout=2, retries=1): FAILSAFE_POST_BUDGET */
#define FAILSAFE_ATTEMPTS 2

void failsafe_remember_key(Ha *h) {
    const Cluster *c = h->view.cluster;
    cJSON_Delete(h->failsafe.key);
    h->failsafe.key = c && cJSON_IsObject(c->failsafe) ? cJSON_Duplicate(c->failsafe, true) : NULL;
}

void failsafe_free(HaFailsafe *f) {
    cJSON_Delete(f->key);
    *f = (HaFailsafe){0};
}

const char *failsafe_window_leader(Ha *h, char *buf, size_t len) {
    usec_t now = now_monotonic(), ttl = (usec_t)ttl_s(h) * USEC_PER_SEC;
    return command_failsafe_leader(h->commands, now > ttl ? now - ttl + 1 : 1, buf, len);
}

/* Patroni's get_endpoint_url(): the scheme and authority of api_url, then /failsafe. */
static char *failsafe_url(const char *api_url) {
    const char *p = strstr(api_url, "://");
    p = p ? p + 3 : api_url;
    size_t n = (size_t)(p - api_url) + strcspn(p, "/?#");
    return xasprintf("%.*s/failsafe", (int)n, api_url);
}

typedef struct FailsafePost {
    const char *name;
    char *url;
    CURL *h;
    StrBuf body;
    int attempts;
    bool done, accepted;
} FailsafePost;

static long attempt_timeout_ms(usec_t deadline) {
    usec_t now = now_monotonic();
    long left = deadline > now ? (long)((deadline - now) / USEC_PER_MSEC) : 0;
    return left < FAILSAFE_TIMEOUT_MS ? left : FAILSAFE_TIMEOUT_MS;
}

static bool post_start(FailsafePost *p, CURLM *multi, const PghaConfig *cfg, const char *payload,
                       struct curl_slist *headers, usec_t deadline) {
    long ms = attempt_timeout_ms(deadline);
    if (ms <= 0)
        return false;
    sb_free(&p->body);
    sb_init(&p->body);
    p->h = probe_new_handle(p->url, cfg, ms, &p->body);
    if (!p->h)
        return false;
    curl_easy_setopt(p->h, CURLOPT_POSTFIELDS, payload);
    curl_easy_setopt(p->h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(p->h, CURLOPT_PRIVATE, p);
    p->attempts++;
    curl_multi_add_handle(multi, p->h);
    return true;
}

/* One attempt ended: accepted, refused (an answer that is not 200 "Accepted": no retry), or a transport
 * error (retried once while the deadline allows). Returns true when the member is settled. */
static bool post_finished(FailsafePost *p, CURLcode rc, CURLM *multi, const PghaConfig *cfg, const char *payload,
                          struct curl_slist *headers, usec_t deadline) {
    long code = 0;
    curl_easy_getinfo(p->h, CURLINFO_RESPONSE_CODE, &code);
    curl_multi_remove_handle(multi, p->h);
    curl_easy_cleanup(p->h);
    p->h = NULL;
    if (rc == CURLE_OK) {
        const char *text = p->body.s ? p->body.s : "";
        log_info("Got response from %s %s: %.200s", p->name, p->url, text);
        p->accepted = code == 200 && streq(text, "Accepted");
        return true;
    }
    log_warning("Request failed to %s: POST %s (%s)", p->name, p->url, curl_easy_strerror(rc));
    if (p->attempts < FAILSAFE_ATTEMPTS && post_start(p, multi, cfg, payload, headers, deadline))
        return false;
    return true;
}

static char *failsafe_payload(Ha *h) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", cfg_of(h)->name);
    char *conn = member_conn_url(h), *api = api_url(h);
    cJSON_AddStringToObject(o, "conn_url", conn);
    cJSON_AddStringToObject(o, "api_url", api);
    free(conn);
    free(api);
    /* Patroni sends its slots with its own name at its WAL position; the replicas here do not use them yet
     * (README: failsafe mode) */
    cJSON *slots = cJSON_AddObjectToObject(o, "slots");
    if (h->pg.st.ok && !h->pg.st.in_recovery && h->pg.st.flush_lsn > 0)
        cJSON_AddNumberToObject(slots, cfg_of(h)->name, (double)h->pg.st.flush_lsn);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

bool failsafe_check(Ha *h, usec_t deadline) {
    const char *me = cfg_of(h)->name;
    const cJSON *key = h->failsafe.key;
    h->failsafe.round_sent = now_monotonic();
    size_t n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, key)
        n++;
    FailsafePost *posts = xcalloc(n + 1, sizeof *posts);
    FailsafeAnswer *answers = xcalloc(n + 1, sizeof *answers);
    size_t k = 0;
    cJSON_ArrayForEach(e, key) {
        if (!e->string || streq(e->string, me))
            continue;
        posts[k].name = e->string;
        posts[k].url = cJSON_IsString(e) && e->valuestring[0] ? failsafe_url(e->valuestring) : NULL;
        k++;
    }
    char *payload = failsafe_payload(h);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    CURLM *multi = curl_multi_init();
    size_t pending = 0;
    for (size_t i = 0; i < k; i++) {
        if (posts[i].url && post_start(&posts[i], multi, cfg_of(h), payload, headers, deadline))
            pending++;
        else
            posts[i].done = true;
    }
    while (pending > 0) {
        int running = 0;
        if (curl_multi_perform(multi, &running) != CURLM_OK)
            break;
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            char *priv = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            FailsafePost *p = (FailsafePost *)(void *)priv;
            if (p && post_finished(p, msg->data.result, multi, cfg_of(h), payload, headers, deadline)) {
                p->done = true;
                pending--;
            }
        }
        if (pending > 0 && now_monotonic() >= deadline)
            break; /* the fence point: what has not answered by now has refused */
        if (pending > 0)
            curl_multi_poll(multi, NULL, 0, 50, NULL);
    }
    for (size_t i = 0; i < k; i++) {
        if (posts[i].h) {
            log_warning("Request failed to %s: POST %s (no answer before the fence point)", posts[i].name,
                        posts[i].url);
            curl_multi_remove_handle(multi, posts[i].h);
            curl_easy_cleanup(posts[i].h);
        }
        answers[i] = (FailsafeAnswer){.name = posts[i].name, .accepted = posts[i].accepted};
    }
    curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    free(payload);
    char why[256];
    bool ok = failsafe_survives(key, me, answers, k, why, sizeof why);
    if (!ok)
        log_warning("failsafe mode: not running on as the primary: %s", why);
    for (size_t i = 0; i < k; i++) {
        free(posts[i].url);
        sb_free(&posts[i].body);
    }
    free(posts);
    free(answers);
    return ok;
}

void failsafe_update_key(Ha *h) {
    const Cluster *c = h->view.cluster;
    if (!c)
        return;
    cJSON *want = cJSON_CreateObject();
    for (size_t i = 0; i < c->n_members; i++) {
        const Member *m = &c->members[i];
        if (m->api_url && *m->api_url && !cJSON_GetObjectItemCaseSensitive(want, m->name))
            cJSON_AddStringToObject(want, m->name, m->api_url);
    }
    if (!cJSON_GetObjectItemCaseSensitive(want, cfg_of(h)->name)) {
        char *url = api_url(h);
        cJSON_AddStringToObject(want, cfg_of(h)->name, url);
        free(url);
    }
    if (!c->failsafe || !cJSON_Compare(want, c->failsafe, true)) {
        char *json = cJSON_PrintUnformatted(want);
        if (dcs_set_failsafe(h->dcs, json) < 0)
            log_warning("failed to write the /failsafe key: %s", dcs_error(h->dcs));
        else {
            cJSON_Delete(h->failsafe.key);
            h->failsafe.key = cJSON_Duplicate(want, true); /* the survival decision uses what we wrote */
        }
        free(json);
    }
    cJSON_Delete(want);
}
