#include "agent/probe.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <string.h>

#include "common/json.h"

typedef struct Probe {
    const char *name, *url;
    CURL *h;
    StrBuf body;
} Probe;

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *ud) {
    StrBuf *b = ud;
    size_t n = size * nmemb;
    if (b->len + n > 1024 * 1024)
        return 0;
    sb_addn(b, ptr, n);
    return n;
}

void probe_parse(const char *body, PeerStatus *p) {
    cJSON *j = body ? cJSON_Parse(body) : NULL;
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, "xlog");
    if (!cJSON_IsObject(j) || !cJSON_IsObject(x)) {
        p->reachable = false; /* no xlog: PostgreSQL is not running there */
        cJSON_Delete(j);
        return;
    }
    p->reachable = true;
    long long loc = 0, rec = 0, rep = 0;
    bool has_loc = json_get_ll(x, "location", &loc);
    (void)json_get_ll(x, "received_location", &rec);
    (void)json_get_ll(x, "replayed_location", &rep);
    const char *role = json_get_string(j, "role");
    p->is_primary = has_loc || (role && (strcmp(role, "primary") == 0 || strcmp(role, "master") == 0));
    p->wal_position = has_loc ? loc : (rec > rep ? rec : rep);
    /* as Patroni 4.0's Tags reads them (the same rules as for member keys, cluster.c): nofailover, when
     * set, decides by Python truthiness and wins over failover_priority */
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(j, "tags");
    Member tm = {.tags = cJSON_IsObject(tags) ? (cJSON *)tags : NULL};
    p->failover_priority = member_failover_priority(&tm);
    p->nofailover = member_nofailover(&tm);
    bool wf = false;
    if (json_get_bool(j, "watchdog_failed", &wf))
        p->watchdog_failed = wf;
    cJSON_Delete(j);
}

CURL *probe_new_handle(const char *url, const PghaConfig *cfg, long timeout_ms, StrBuf *body) {
    CURL *h = curl_easy_init();
    if (!h)
        return NULL;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    const char *user = cfg->ctl.username ? cfg->ctl.username : cfg->restapi.username;
    const char *pass = cfg->ctl.username ? cfg->ctl.password : cfg->restapi.password;
    if (user) {
        curl_easy_setopt(h, CURLOPT_USERNAME, user);
        curl_easy_setopt(h, CURLOPT_PASSWORD, pass ? pass : "");
    }
    if (cfg->ctl.insecure) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    const char *ca = cfg->ctl.cacert ? cfg->ctl.cacert : cfg->restapi.cafile;
    if (ca)
        curl_easy_setopt(h, CURLOPT_CAINFO, ca);
    if (cfg->ctl.certfile)
        curl_easy_setopt(h, CURLOPT_SSLCERT, cfg->ctl.certfile);
    if (cfg->ctl.keyfile)
        curl_easy_setopt(h, CURLOPT_SSLKEY, cfg->ctl.keyfile);
    if (cfg->ctl.keyfile_password)
        curl_easy_setopt(h, CURLOPT_KEYPASSWD, cfg->ctl.keyfile_password);
    return h;
}

bool probe_liveness(const char *api_url, const PghaConfig *cfg, long timeout_ms, char **ret_url) {
    char *base = xstrdup(api_url);
    char *p = strstr(base, "/patroni");
    if (p)
        *p = '\0';
    *ret_url = xasprintf("%s/liveness", base);
    free(base);
    StrBuf body;
    sb_init(&body);
    CURL *h = probe_new_handle(*ret_url, cfg, timeout_ms, &body);
    bool ok = h && curl_easy_perform(h) == CURLE_OK;
    if (h)
        curl_easy_cleanup(h);
    sb_free(&body);
    return ok;
}

static bool probed(const Probe *probes, size_t n, const char *name) {
    for (size_t k = 0; k < n; k++)
        if (streq(probes[k].name, name))
            return true;
    return false;
}

PeerStatus *probe_members(const Cluster *c, const Cluster *also, const char *me, const PghaConfig *cfg, long timeout_ms,
                          size_t *ret_n) {
    return probe_members_with(c, also, NULL, me, cfg, timeout_ms, ret_n);
}

PeerStatus *probe_members_with(const Cluster *c, const Cluster *also, const cJSON *extra, const char *me,
                               const PghaConfig *cfg, long timeout_ms, size_t *ret_n) {
    size_t cap = (c ? c->n_members : 0) + (also ? also->n_members : 0) + (size_t)cJSON_GetArraySize(extra);
    Probe *probes = xcalloc(cap + 1, sizeof(Probe));
    size_t n = 0;
    const Cluster *sources[] = {c, also};
    for (size_t s = 0; s < 2; s++) {
        const Cluster *src = sources[s];
        for (size_t i = 0; src && i < src->n_members; i++) {
            const Member *m = &src->members[i];
            if (streq(m->name, me) || !m->api_url || !*m->api_url || probed(probes, n, m->name))
                continue;
            probes[n++] = (Probe){.name = m->name, .url = m->api_url};
        }
    }
    const cJSON *fs = cJSON_IsObject(extra) ? extra : NULL, *e;
    cJSON_ArrayForEach(e, fs) {
        if (!e->string || streq(e->string, me) || !cJSON_IsString(e) || !e->valuestring[0] ||
            probed(probes, n, e->string))
            continue;
        probes[n++] = (Probe){.name = e->string, .url = e->valuestring};
    }
    CURLM *multi = curl_multi_init();
    for (size_t i = 0; i < n; i++) {
        Probe *p = &probes[i];
        sb_init(&p->body);
        p->h = probe_new_handle(p->url, cfg, timeout_ms, &p->body);
        curl_multi_add_handle(multi, p->h);
    }
    int running = 1;
    while (running) {
        if (curl_multi_perform(multi, &running) != CURLM_OK)
            break;
        if (running)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    PeerStatus *out = xcalloc(n + 1, sizeof(PeerStatus));
    for (size_t i = 0; i < n; i++) {
        Probe *p = &probes[i];
        long code = 0;
        curl_easy_getinfo(p->h, CURLINFO_RESPONSE_CODE, &code);
        out[i].name = p->name;
        out[i].failover_priority = 1;
        if (code > 0 && p->body.s)
            probe_parse(p->body.s, &out[i]);
        curl_multi_remove_handle(multi, p->h);
        curl_easy_cleanup(p->h);
        sb_free(&p->body);
    }
    curl_multi_cleanup(multi);
    free(probes);
    *ret_n = n;
    return out;
}

static char *dup_or_null(const char *s) { return s ? xstrdup(s) : NULL; }

PghaConfig *probe_config_dup(const PghaConfig *cfg) {
    PghaConfig *p = xcalloc(1, sizeof *p);
    p->ctl.username = dup_or_null(cfg->ctl.username);
    p->ctl.password = dup_or_null(cfg->ctl.password);
    p->ctl.insecure = cfg->ctl.insecure;
    p->ctl.cacert = dup_or_null(cfg->ctl.cacert);
    p->ctl.certfile = dup_or_null(cfg->ctl.certfile);
    p->ctl.keyfile = dup_or_null(cfg->ctl.keyfile);
    p->restapi.username = dup_or_null(cfg->restapi.username);
    p->restapi.password = dup_or_null(cfg->restapi.password);
    p->restapi.cafile = dup_or_null(cfg->restapi.cafile);
    return p;
}

void probe_config_free(PghaConfig *p) {
    if (!p)
        return;
    free(p->ctl.username);
    free(p->ctl.password);
    free(p->ctl.cacert);
    free(p->ctl.certfile);
    free(p->ctl.keyfile);
    free(p->restapi.username);
    free(p->restapi.password);
    free(p->restapi.cafile);
    free(p);
}
