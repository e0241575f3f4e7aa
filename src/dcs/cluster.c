#include "dcs/cluster.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "common/log.h"

void dcs_kv_free_contents(DcsKv *kv) {
    free(kv->key);
    free(kv->value);
    free(kv->lease);
    *kv = (DcsKv){0};
}

char *dcs_base_path(const char *namespace_, const char *scope) {
    _cleanup_free_ char *joined = xasprintf("/%s/%s", namespace_ ? namespace_ : "service", scope ? scope : "");
    StrBuf b;
    sb_init(&b);
    for (const char *p = joined; *p; p++)
        if (!(*p == '/' && b.len > 0 && b.s[b.len - 1] == '/'))
            sb_addc(&b, *p);
    char *r = sb_steal(&b);
    size_t l = strlen(r);
    if (l > 1 && r[l - 1] == '/')
        r[l - 1] = '\0';
    return r;
}

/* ---- corrupt values are reported once per key and revision ---- */

static pthread_mutex_t warned_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char key[128];
    long long rev;
} warned[64];
static unsigned warned_next;

/* Once per (key, revision): the cluster is decoded every loop and at every REST request. */
static bool first_report(const char *key, long long rev) {
    pthread_mutex_lock(&warned_lock);
    for (size_t i = 0; i < ELEMENTSOF(warned); i++)
        if (warned[i].rev == rev && strncmp(warned[i].key, key, sizeof warned[i].key - 1) == 0) {
            pthread_mutex_unlock(&warned_lock);
            return false;
        }
    unsigned slot = warned_next++ % ELEMENTSOF(warned);
    snprintf(warned[slot].key, sizeof warned[slot].key, "%s", key);
    warned[slot].rev = rev;
    pthread_mutex_unlock(&warned_lock);
    return true;
}

static void warn_corrupt(const char *key, long long rev, const char *what) {
    if (first_report(key, rev))
        log_warning("ignoring the value of %s in the DCS (revision %lld): %s", key, rev, what);
}

/* ---- members ---- */

void member_free_contents(Member *m) {
    free(m->name);
    free(m->conn_url);
    free(m->api_url);
    free(m->proxy_url);
    free(m->state);
    free(m->role);
    free(m->version);
    free(m->replication_state);
    free(m->session);
    cJSON_Delete(m->tags);
    cJSON_Delete(m->pending_restart_reason);
    cJSON_Delete(m->scheduled_restart);
    cJSON_Delete(m->data);
    *m = (Member){0};
}

static char *dup_json_string(const cJSON *o, const char *k) { return xstrdup(json_get_string(o, k)); }

/* The `application_name` query parameter of a legacy bare-URL member value (percent-decoded). */
static char *query_param(const char *url, const char *name) {
    const char *q = strchr(url, '?');
    if (!q)
        return NULL;
    size_t nl = strlen(name);
    for (const char *p = q + 1; *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            StrBuf b;
            sb_init(&b);
            for (size_t i = nl + 1; i < len; i++) {
                if (p[i] == '%' && i + 2 < len && isxdigit((unsigned char)p[i + 1]) &&
                    isxdigit((unsigned char)p[i + 2])) {
                    char hex[3] = {p[i + 1], p[i + 2], 0};
                    sb_addc(&b, (char)strtol(hex, NULL, 16));
                    i += 2;
                } else {
                    sb_addc(&b, p[i] == '+' ? ' ' : p[i]);
                }
            }
            return sb_steal(&b);
        }
        if (!amp)
            break;
        p = amp + 1;
    }
    return NULL;
}

void member_decode(Member *m, const char *name, const char *value) {
    m->name = xstrdup(name);
    if (value && str_startswith(value, "postgres")) {
        /* Patroni's parse_connection_string(): the URL without its query, api_url from the query */
        size_t q = strcspn(value, "?#");
        StrBuf b;
        sb_init(&b);
        sb_addn(&b, value, q);
        if (value[q] == '?' && strchr(value + q, '#'))
            sb_add(&b, strchr(value + q, '#'));
        else if (value[q] == '#')
            sb_add(&b, value + q);
        m->conn_url = sb_steal(&b);
        m->api_url = query_param(value, "application_name");
        m->data = cJSON_CreateObject();
        cJSON_AddStringToObject(m->data, "conn_url", m->conn_url);
        if (m->api_url)
            cJSON_AddStringToObject(m->data, "api_url", m->api_url);
        else
            cJSON_AddNullToObject(m->data, "api_url");
        return;
    }
    cJSON *o = value ? json_parse(value) : NULL;
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        m->data = cJSON_CreateObject();
        return;
    }
    m->data = o;
    m->conn_url = dup_json_string(o, "conn_url");
    m->api_url = dup_json_string(o, "api_url");
    m->proxy_url = dup_json_string(o, "proxy_url");
    m->state = dup_json_string(o, "state");
    m->role = dup_json_string(o, "role");
    m->version = dup_json_string(o, "version");
    m->replication_state = dup_json_string(o, "replication_state");
    m->has_xlog_location = json_get_ll(o, "xlog_location", &m->xlog_location);
    m->has_replay_lsn = json_get_ll(o, "replay_lsn", &m->replay_lsn);
    m->has_receive_lsn = json_get_ll(o, "receive_lsn", &m->receive_lsn);
    m->has_timeline = json_get_ll(o, "timeline", &m->timeline);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "tags");
    if (cJSON_IsObject(t))
        m->tags = cJSON_Duplicate(t, true);
    bool b;
    if (json_get_bool(o, "pending_restart", &b))
        m->pending_restart = b;
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "pending_restart_reason");
    if (cJSON_IsObject(r))
        m->pending_restart_reason = cJSON_Duplicate(r, true);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "scheduled_restart");
    if (cJSON_IsObject(s))
        m->scheduled_restart = cJSON_Duplicate(s, true);
    if (json_get_bool(o, "pause", &b))
        m->pause = b;
    /* Patroni's readers only test `'checkpoint_after_promote' not in data` */
    m->checkpoint_after_promote_false = cJSON_GetObjectItemCaseSensitive(o, "checkpoint_after_promote") != NULL;
    if (json_get_bool(o, "watchdog_failed", &b))
        m->watchdog_failed = b;
}

/* Python's bool() of a decoded JSON value, as Patroni applies it to the tags it reads from the DCS. */
static bool value_truthy(const cJSON *v) {
    if (!v || cJSON_IsNull(v))
        return false;
    if (cJSON_IsBool(v))
        return cJSON_IsTrue(v);
    if (cJSON_IsString(v))
        return v->valuestring && v->valuestring[0];
    if (cJSON_IsNumber(v))
        return v->valuedouble != 0;
    if (cJSON_IsRaw(v)) /* an integer beyond 2^53 */
        return true;
    return v->child != NULL; /* non-empty array or object */
}

bool member_tag_bool(const Member *m, const char *tag) {
    return m && m->tags && value_truthy(cJSON_GetObjectItemCaseSensitive(m->tags, tag));
}

/* patroni/tags.py: a boolean tag (`nofailover`, `nosync`) set to anything but null decides; otherwise the
 * priority tag (`failover_priority`, `sync_priority`) <= 0. */
static const cJSON *bool_tag(const Member *m, const char *name) {
    const cJSON *nf = m && m->tags ? cJSON_GetObjectItemCaseSensitive(m->tags, name) : NULL;
    return cJSON_IsNull(nf) ? NULL : nf;
}

/* The priority tag as an integer, 1 when absent or not an integer. */
static long long priority_tag(const Member *m, const char *name) {
    long long v = 1;
    if (m && m->tags) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(m->tags, name);
        if (!json_item_ll(p, &v) && !(cJSON_IsString(p) && parse_ll(p->valuestring, &v) == 0))
            v = 1;
    }
    return v;
}

/* Patroni's _bool_tag(): the boolean tag when set, else whether the priority tag is set and <= 0. */
static bool bool_or_priority(const Member *m, const char *bool_name, const char *priority_name) {
    if (!m || !m->tags)
        return false;
    const cJSON *b = bool_tag(m, bool_name);
    if (b)
        return value_truthy(b);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(m->tags, priority_name);
    return p && !cJSON_IsNull(p) && priority_tag(m, priority_name) <= 0;
}

long long member_failover_priority(const Member *m) {
    return value_truthy(bool_tag(m, "nofailover")) ? 0 : priority_tag(m, "failover_priority");
}

bool member_nofailover(const Member *m) { return bool_or_priority(m, "nofailover", "failover_priority"); }

long long member_sync_priority(const Member *m) {
    return value_truthy(bool_tag(m, "nosync")) ? 0 : priority_tag(m, "sync_priority");
}

bool member_nosync(const Member *m) { return bool_or_priority(m, "nosync", "sync_priority"); }

bool member_conn_host_port(const Member *m, char **ret_host, int *ret_port) {
    *ret_host = NULL;
    *ret_port = 0;
    if (!m || !m->conn_url)
        return false;
    const char *p = strstr(m->conn_url, "://");
    if (!p)
        return false;
    p += 3;
    /* urlparse: the netloc ends at '/', '?' or '#'; the host follows the last '@' in it */
    _cleanup_free_ char *netloc = xstrndup(p, strcspn(p, "/?#"));
    char *at = strrchr(netloc, '@');
    char *hp = at ? at + 1 : netloc;
    const char *portstr = NULL;
    char *host;
    if (hp[0] == '[') {
        char *close = strchr(hp, ']');
        if (!close)
            return false;
        *close = '\0';
        host = xstrdup(hp + 1);
        if (close[1] == ':')
            portstr = close + 2;
    } else {
        char *colon = strrchr(hp, ':');
        if (colon) {
            *colon = '\0';
            portstr = colon + 1;
        }
        host = xstrdup(hp);
    }
    if (!*host) {
        free(host);
        return false;
    }
    /* as Patroni's `r.port or 5432`: an empty port or port 0 means the default, an invalid one is an error */
    long long port = 0;
    if (portstr && *portstr &&
        (strspn(portstr, "0123456789") != strlen(portstr) || parse_ll(portstr, &port) < 0 || port > 65535)) {
        free(host);
        return false;
    }
    if (port == 0)
        port = 5432;
    *ret_host = host;
    *ret_port = (int)port;
    return true;
}

/* ---- the other keys ---- */

/* Python's int() of a decoded JSON value: integers, floats truncated toward zero, true, and decimal
 * strings (surrounding whitespace allowed). */
static bool py_int(const cJSON *v, long long *ret) {
    if (json_item_ll(v, ret))
        return true;
    if (cJSON_IsBool(v)) {
        *ret = cJSON_IsTrue(v);
        return true;
    }
    if (cJSON_IsNumber(v) && isfinite(v->valuedouble) && fabs(v->valuedouble) < 9.2e18) {
        *ret = (long long)v->valuedouble;
        return true;
    }
    if (cJSON_IsString(v) && v->valuestring) {
        _cleanup_free_ char *t = xstrdup(v->valuestring);
        return parse_ll(str_trim(t), ret) == 0;
    }
    return false;
}

static void decode_failover(Failover *f, const DcsKv *kv) {
    f->present = true;
    f->version = kv->mod_revision;
    cJSON *o = json_parse(kv->value);
    if (cJSON_IsObject(o)) {
        f->leader = dup_json_string(o, "leader");
        f->candidate = dup_json_string(o, "member");
        f->scheduled_at = dup_json_string(o, "scheduled_at");
    } else if (!o && kv->value[0]) {
        /* legacy "leader:candidate": Patroni splits on ':' and strips each part */
        _cleanup_free_ char *copy = xstrdup(kv->value);
        char *colon = strchr(copy, ':');
        if (colon) {
            *colon = '\0';
            char *end = strchr(colon + 1, ':');
            if (end)
                *end = '\0';
            f->candidate = xstrdup(str_trim(colon + 1));
        }
        f->leader = xstrdup(str_trim(copy));
    } else if (o) {
        warn_corrupt(kv->key, kv->mod_revision, "not a JSON object");
    }
    cJSON_Delete(o);
    if (f->leader && !*f->leader) {
        free(f->leader);
        f->leader = NULL;
    }
    if (f->candidate && !*f->candidate) {
        free(f->candidate);
        f->candidate = NULL;
    }
}

static void decode_sync(SyncState *s, const DcsKv *kv) {
    s->present = true;
    s->version = kv->mod_revision;
    cJSON *o = json_parse(kv->value);
    if (!cJSON_IsObject(o)) {
        if (kv->value[0])
            warn_corrupt(kv->key, kv->mod_revision, "not a JSON object");
        cJSON_Delete(o);
        return;
    }
    const char *leader = json_get_string(o, "leader");
    if (!leader || !*leader) {
        cJSON_Delete(o);
        return;
    }
    /* SyncState.from_node(): `int(quorum) if leader and quorum else 0`; when int() raises, the whole
     * state is empty */
    s->quorum = 0;
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(o, "quorum");
    if (value_truthy(q) && !py_int(q, &s->quorum)) {
        warn_corrupt(kv->key, kv->mod_revision, "the quorum is not an integer");
        s->quorum = 0;
        cJSON_Delete(o);
        return;
    }
    s->leader = xstrdup(leader);
    const char *names = json_get_string(o, "sync_standby");
    if (names) {
        _cleanup_free_ char *copy = xstrdup(names);
        char *save = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
            if (*str_trim(tok))
                strlist_add(&s->members, tok);
    }
    cJSON_Delete(o);
}

static void decode_status(ClusterStatus *st, const DcsKv *kv) {
    st->version = kv->mod_revision;
    cJSON *o = json_parse(kv->value);
    long long v;
    if (o && json_item_ll(o, &v)) {
        st->has_optime = true;
        st->optime = v;
    } else if (cJSON_IsObject(o)) {
        st->has_optime = json_get_ll(o, "optime", &st->optime);
        cJSON *slots = cJSON_GetObjectItemCaseSensitive(o, "slots");
        if (cJSON_IsString(slots)) {
            cJSON *p = json_parse(slots->valuestring);
            if (cJSON_IsObject(p))
                st->slots = p;
            else
                cJSON_Delete(p);
        } else if (cJSON_IsObject(slots)) {
            st->slots = cJSON_Duplicate(slots, true);
        }
        cJSON *retain = cJSON_GetObjectItemCaseSensitive(o, "retain_slots");
        cJSON *parsed = NULL;
        if (cJSON_IsString(retain))
            retain = parsed = json_parse(retain->valuestring);
        if (cJSON_IsArray(retain)) {
            const cJSON *it;
            cJSON_ArrayForEach(it, retain)
                if (cJSON_IsString(it))
                    strlist_add(&st->retain_slots, it->valuestring);
        }
        cJSON_Delete(parsed);
    } else {
        warn_corrupt(kv->key, kv->mod_revision, "not a status object");
    }
    cJSON_Delete(o);
}

/* A key given twice (etcd never answers so; a proxy or a fake might): the later value replaces the earlier,
 * whose decoded contents are freed first. */
static void failover_clear(Failover *f) {
    free(f->leader);
    free(f->candidate);
    free(f->scheduled_at);
    *f = (Failover){0};
}

static void sync_clear(SyncState *s) {
    free(s->leader);
    strlist_clear(&s->members);
    *s = (SyncState){0};
}

static void status_clear(ClusterStatus *st) {
    cJSON_Delete(st->slots);
    strlist_clear(&st->retain_slots);
    *st = (ClusterStatus){0};
}

Cluster *cluster_from_kvs(const DcsKv *kvs, size_t n, const char *base) {
    Cluster *c = xcalloc(1, sizeof *c);
    _cleanup_free_ char *prefix = xasprintf("%s/", base);
    size_t pl = strlen(prefix);
    const DcsKv *leader_kv = NULL, *optime_kv = NULL;
    bool have_status = false;
    for (size_t i = 0; i < n; i++) {
        const DcsKv *kv = &kvs[i];
        if (!kv->key || strncmp(kv->key, prefix, pl) != 0 || !kv->value)
            continue;
        if (kv->mod_revision > c->revision)
            c->revision = kv->mod_revision;
        const char *rel = kv->key + pl;
        if (strcmp(rel, "leader") == 0) {
            leader_kv = kv; /* a corrupt value still means a held key: decoded below */
            continue;
        }
        if (strlen(kv->value) != kv->value_len) {
            warn_corrupt(kv->key, kv->mod_revision, "value contains NUL bytes");
            continue;
        }
        if (strcmp(rel, "initialize") == 0) {
            c->has_initialize = true;
            free(c->initialize);
            c->initialize = xstrdup(kv->value);
        } else if (strcmp(rel, "config") == 0) {
            c->has_config = true;
            cJSON_Delete(c->config);
            cJSON *o = json_parse(kv->value);
            if (cJSON_IsObject(o)) {
                c->config = o;
                c->config_version = kv->mod_revision;
            } else {
                warn_corrupt(kv->key, kv->mod_revision, "the dynamic configuration is not a JSON object");
                cJSON_Delete(o);
                c->config = cJSON_CreateObject();
                c->config_version = 0;
            }
        } else if (strcmp(rel, "failover") == 0) {
            failover_clear(&c->failover);
            decode_failover(&c->failover, kv);
        } else if (strcmp(rel, "sync") == 0) {
            sync_clear(&c->sync);
            decode_sync(&c->sync, kv);
        } else if (strcmp(rel, "history") == 0) {
            cJSON_Delete(c->history);
            c->history = NULL;
            c->has_history = false;
            cJSON *o = json_parse(kv->value);
            if (cJSON_IsArray(o)) {
                c->has_history = true;
                c->history = o;
                c->history_version = kv->mod_revision;
            } else {
                warn_corrupt(kv->key, kv->mod_revision, "the history is not a JSON array");
                cJSON_Delete(o);
            }
        } else if (strcmp(rel, "status") == 0) {
            have_status = true;
            status_clear(&c->status);
            decode_status(&c->status, kv);
        } else if (strcmp(rel, "optime/leader") == 0) {
            optime_kv = kv;
        } else if (strcmp(rel, "failsafe") == 0) {
            cJSON_Delete(c->failsafe);
            c->failsafe = NULL;
            cJSON *o = json_parse(kv->value);
            if (cJSON_IsObject(o))
                c->failsafe = o;
            else {
                if (kv->value[0])
                    warn_corrupt(kv->key, kv->mod_revision, "not a JSON object");
                cJSON_Delete(o);
            }
        } else if (strncmp(rel, "members/", 8) == 0 && rel[8] && !strchr(rel + 8, '/')) {
            c->members = xrealloc(c->members, (c->n_members + 1) * sizeof(Member));
            Member *m = &c->members[c->n_members++];
            *m = (Member){0};
            member_decode(m, rel + 8, kv->value);
            if (cJSON_GetArraySize(m->data) == 0 && !m->conn_url)
                warn_corrupt(kv->key, kv->mod_revision, "the member data is not a JSON object");
            m->revision = kv->mod_revision;
            m->session = xstrdup(kv->lease);
        }
    }
    if (!have_status && optime_kv) {
        long long v;
        if (parse_ll(optime_kv->value, &v) == 0) {
            c->status.has_optime = true;
            c->status.optime = v;
            c->status.version = optime_kv->mod_revision;
        } else {
            warn_corrupt(optime_kv->key, optime_kv->mod_revision, "not an integer");
        }
    }
    /* an empty value means "unlocked" (spec §1.5, Patroni's reading; our create-if-absent race still
     * fails while the key exists, as Patroni's does) */
    if (leader_kv && leader_kv->value_len > 0) {
        c->leader = xcalloc(1, sizeof(Leader));
        c->leader->version = leader_kv->mod_revision;
        c->leader->session = xstrdup(leader_kv->lease);
        if (strlen(leader_kv->value) != leader_kv->value_len) {
            /* A NUL byte: not a member name (hand-written, or a bug elsewhere). The key, and perhaps the
             * lease of a primary that still runs, are there, so the cluster is locked by an unknown
             * holder: nobody promotes, follows or clones from it until the key is deleted or its lease
             * expires. */
            c->leader->corrupt = true;
            c->leader->name = xstrdup("");
            if (first_report(leader_kv->key, leader_kv->mod_revision))
                log_error(
                    "the leader key %s (revision %lld, lease %s) contains a NUL byte: the cluster is treated as "
                    "locked by an unknown holder; nobody takes over until the key is deleted or its lease expires",
                    leader_kv->key, leader_kv->mod_revision, leader_kv->lease ? leader_kv->lease : "none");
        } else {
            c->leader->name = xstrdup(leader_kv->value);
            c->leader->member = cluster_get_member(c, c->leader->name);
        }
    }
    return c;
}

Cluster *cluster_free(Cluster *c) {
    if (!c)
        return NULL;
    free(c->initialize);
    cJSON_Delete(c->config);
    if (c->leader) {
        free(c->leader->name);
        free(c->leader->session);
        free(c->leader);
    }
    for (size_t i = 0; i < c->n_members; i++)
        member_free_contents(&c->members[i]);
    free(c->members);
    failover_clear(&c->failover);
    sync_clear(&c->sync);
    cJSON_Delete(c->history);
    status_clear(&c->status);
    cJSON_Delete(c->failsafe);
    free(c);
    return NULL;
}

const Member *cluster_get_member(const Cluster *c, const char *name) {
    for (size_t i = 0; c && name && i < c->n_members; i++)
        if (strcmp(c->members[i].name, name) == 0)
            return &c->members[i];
    return NULL;
}

bool cluster_is_unlocked(const Cluster *c) { return !c || !c->leader; }

long long cluster_timeline(const Cluster *c) {
    if (!c || !c->has_history)
        return 0;
    int n = cJSON_GetArraySize(c->history);
    if (n == 0)
        return 1;
    const cJSON *last = cJSON_GetArrayItem(c->history, n - 1);
    long long tl;
    /* a timeline that cannot be followed by another (hand-written) is no timeline */
    if (cJSON_IsArray(last) && json_item_ll(cJSON_GetArrayItem(last, 0), &tl) && tl < LLONG_MAX)
        return tl + 1;
    return 0;
}

bool failover_is_empty(const Failover *f) { return !f->present || (!f->leader && !f->candidate); }

bool sync_matches(const SyncState *s, const char *name) {
    if (!s->leader || !name)
        return false;
    if (strcasecmp(s->leader, name) == 0)
        return true;
    for (size_t i = 0; i < s->members.n; i++)
        if (strcasecmp(s->members.v[i], name) == 0)
            return true;
    return false;
}

/* ---- encoders ---- */

static void add_key(StrBuf *b, bool *first, const char *key) {
    if (!*first)
        sb_addc(b, ',');
    *first = false;
    json_add_string(b, key);
    sb_addc(b, ':');
}

char *cluster_encode_member(const Member *m) {
    StrBuf b;
    sb_init(&b);
    bool first = true;
    sb_addc(&b, '{');
    add_key(&b, &first, "conn_url");
    json_add_string(&b, m->conn_url ? m->conn_url : "");
    add_key(&b, &first, "api_url");
    json_add_string(&b, m->api_url ? m->api_url : "");
    add_key(&b, &first, "state");
    json_add_string(&b, m->state ? m->state : "stopped");
    add_key(&b, &first, "role");
    json_add_string(&b, m->role ? m->role : "uninitialized");
    add_key(&b, &first, "version");
    json_add_string(&b, m->version ? m->version : PGHA_PATRONI_VERSION);
    if (m->proxy_url) {
        add_key(&b, &first, "proxy_url");
        json_add_string(&b, m->proxy_url);
    }
    if (m->checkpoint_after_promote_false) {
        add_key(&b, &first, "checkpoint_after_promote");
        sb_add(&b, "false");
    }
    if (m->tags && cJSON_GetArraySize(m->tags) > 0) {
        add_key(&b, &first, "tags");
        json_add_value(&b, m->tags, false);
    }
    if (m->pending_restart) {
        add_key(&b, &first, "pending_restart");
        sb_add(&b, "true");
        if (m->pending_restart_reason) {
            add_key(&b, &first, "pending_restart_reason");
            json_add_value(&b, m->pending_restart_reason, false);
        }
    }
    if (m->has_xlog_location) {
        add_key(&b, &first, "xlog_location");
        sb_addf(&b, "%lld", m->xlog_location);
    }
    /* Patroni 4.1 (ha.py touch_member): a replica's replay and receive positions, when known */
    if (m->has_replay_lsn) {
        add_key(&b, &first, "replay_lsn");
        sb_addf(&b, "%lld", m->replay_lsn);
    }
    if (m->has_receive_lsn) {
        add_key(&b, &first, "receive_lsn");
        sb_addf(&b, "%lld", m->receive_lsn);
    }
    if (m->replication_state) {
        add_key(&b, &first, "replication_state");
        json_add_string(&b, m->replication_state);
    }
    if (m->has_timeline) {
        add_key(&b, &first, "timeline");
        sb_addf(&b, "%lld", m->timeline);
    }
    if (m->scheduled_restart) {
        add_key(&b, &first, "scheduled_restart");
        json_add_value(&b, m->scheduled_restart, false);
    }
    if (m->pause) {
        add_key(&b, &first, "pause");
        sb_add(&b, "true");
    }
    sb_addc(&b, '}');
    return sb_steal(&b);
}

char *cluster_encode_failover(const char *leader, const char *candidate, const char *scheduled_at) {
    StrBuf b;
    sb_init(&b);
    bool first = true;
    sb_addc(&b, '{');
    if (leader) {
        add_key(&b, &first, "leader");
        json_add_string(&b, leader);
    }
    if (candidate) {
        add_key(&b, &first, "member");
        json_add_string(&b, candidate);
    }
    if (scheduled_at) {
        add_key(&b, &first, "scheduled_at");
        json_add_string(&b, scheduled_at);
    }
    sb_addc(&b, '}');
    return sb_steal(&b);
}

static int cmp_strp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

char *cluster_encode_sync(const char *leader, long long quorum, const StrList *standbys) {
    StrBuf b;
    sb_init(&b);
    sb_add(&b, "{\"leader\":");
    json_add_string(&b, leader ? leader : "");
    sb_addf(&b, ",\"quorum\":%lld,\"sync_standby\":", quorum);
    if (standbys && standbys->n) {
        StrList sorted;
        strlist_copy(&sorted, standbys);
        qsort(sorted.v, sorted.n, sizeof(char *), cmp_strp);
        _cleanup_free_ char *joined = strlist_join(&sorted, ",");
        json_add_string(&b, joined);
        strlist_clear(&sorted);
    } else {
        sb_add(&b, "null");
    }
    sb_addc(&b, '}');
    return sb_steal(&b);
}

char *cluster_encode_status(long long optime, const cJSON *slots, const StrList *retain_slots) {
    StrBuf b;
    sb_init(&b);
    sb_addf(&b, "{\"optime\":%lld", optime);
    if (slots && cJSON_GetArraySize(slots) > 0) {
        sb_add(&b, ",\"slots\":");
        json_add_value(&b, slots, false);
    }
    if (retain_slots && retain_slots->n) {
        StrList sorted;
        strlist_copy(&sorted, retain_slots);
        qsort(sorted.v, sorted.n, sizeof(char *), cmp_strp);
        sb_add(&b, ",\"retain_slots\":[");
        for (size_t i = 0; i < sorted.n; i++) {
            if (i)
                sb_addc(&b, ',');
            json_add_string(&b, sorted.v[i]);
        }
        sb_addc(&b, ']');
        strlist_clear(&sorted);
    }
    sb_addc(&b, '}');
    return sb_steal(&b);
}
