/* GET /metrics: Patroni 4.0.6's exposition byte for byte (spec §2.9), patroni_master after patroni_primary
 * (Patroni 3.x's name, still used by public alert rules), Patroni 4.1's patroni_postgres_state last, then
 * pgha's own metrics. */
#include "restapi/metrics.h"

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/yamltree.h"

/* ---- REST request counters: endpoint x status code, atomics (the REST threads count, a scrape reads) ----
 * The endpoint is the request path's first segment when it names one of Patroni's routes (spec §2.3-2.8),
 * so that the label set stays bounded whatever clients ask for. */

static const char *const endpoints[] = {
    "root",
    "patroni",
    "metrics",
    "liveness",
    "readiness",
    "cluster",
    "history",
    "config",
    "failsafe",
    "health",
    "primary",
    "master",
    "leader",
    "read-write",
    "standby-leader",
    "standby_leader",
    "replica",
    "read-only",
    "synchronous",
    "sync",
    "read-only-sync",
    "read-only-synchronous",
    "quorum",
    "read-only-quorum",
    "asynchronous",
    "async",
    "switchover",
    "failover",
    "restart",
    "reload",
    "reinitialize",
    "sigterm",
    "mpp",
    "citus",
    "other",
};
#define N_ENDPOINTS ELEMENTSOF(endpoints)
#define ENDPOINT_OTHER (N_ENDPOINTS - 1)

/* the codes the server answers with; anything else counts as "other", no response as "none" */
static const unsigned codes[] = {200, 201, 202, 400, 401, 403, 404, 405, 409, 411, 412, 500, 501, 502, 503};
#define N_CODES (ELEMENTSOF(codes) + 2)
#define CODE_OTHER ELEMENTSOF(codes)
#define CODE_NONE (ELEMENTSOF(codes) + 1)

static _Atomic unsigned long long rest_requests[N_ENDPOINTS][N_CODES];

static size_t endpoint_index(const char *url) {
    const char *p = url && url[0] == '/' ? url + 1 : url ? url : "";
    size_t seg = strcspn(p, "/?");
    if (seg == 0)
        return 0; /* "/" */
    for (size_t i = 1; i < ENDPOINT_OTHER; i++)
        if (strlen(endpoints[i]) == seg && strncmp(p, endpoints[i], seg) == 0)
            return i;
    return ENDPOINT_OTHER;
}

const char *rest_metrics_endpoint(const char *url) { return endpoints[endpoint_index(url)]; }

void rest_metrics_count(const char *url, unsigned code) {
    size_t c = code == 0 ? CODE_NONE : CODE_OTHER;
    for (size_t i = 0; i < ELEMENTSOF(codes) && code; i++)
        if (codes[i] == code)
            c = i;
    atomic_fetch_add_explicit(&rest_requests[endpoint_index(url)][c], 1, memory_order_relaxed);
}

void rest_metrics_count_connection(struct MHD_Connection *conn, const char *url) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
    rest_metrics_count(url, ci ? ci->http_status : 0);
}

void rest_metrics_reset(void) {
    for (size_t e = 0; e < N_ENDPOINTS; e++)
        for (size_t c = 0; c < N_CODES; c++)
            atomic_store(&rest_requests[e][c], 0);
}

/* ---- value rendering ---- */

static bool take_int(const char **p, int ndigits, long long *ret) {
    long long v = 0;
    for (int i = 0; i < ndigits; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += ndigits;
    *ret = v;
    return true;
}

/* days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil) */
static long long days_from_civil(long long y, long long m, long long d) {
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

bool parse_pg_timestamp(const char *s, double *ret_epoch) {
    if (!s)
        return false;
    const char *p = s;
    long long y, mo, d, h, mi, sec, usec = 0, oh = 0, om = 0;
    if (!take_int(&p, 4, &y) || *p++ != '-' || !take_int(&p, 2, &mo) || *p++ != '-' || !take_int(&p, 2, &d))
        return false;
    if ((*p != ' ' && *p != 'T') || !(p++, take_int(&p, 2, &h)) || *p++ != ':' || !take_int(&p, 2, &mi) ||
        *p++ != ':' || !take_int(&p, 2, &sec))
        return false;
    if (*p == '.') {
        p++;
        int n = 0;
        while (*p >= '0' && *p <= '9') {
            if (n < 6) {
                usec = usec * 10 + (*p - '0');
                n++;
            }
            p++;
        }
        if (n == 0)
            return false;
        for (; n < 6; n++)
            usec *= 10;
    }
    int sign = 0;
    if (*p == '+' || *p == '-') {
        sign = *p == '-' ? -1 : 1;
        p++;
        if (!take_int(&p, 2, &oh))
            return false;
        if (*p == ':')
            p++;
        if (*p && !take_int(&p, 2, &om))
            return false;
    } else if (*p == 'Z') {
        p++;
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return false;
    long long secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - sign * (oh * 3600 + om * 60);
    /* timedelta.total_seconds(): integer microseconds divided by 10**6, correctly rounded */
    *ret_epoch = (double)(secs * 1000000 + usec) / 1e6;
    return true;
}

/* ---- the exposition ---- */

typedef struct Out {
    StrBuf b;
    char labels[512]; /* {scope="..",name=".."} */
    char inner[500];  /* scope="..",name=".." */
} Out;

static void head(Out *o, const char *name, const char *type, const char *help) {
    sb_addf(&o->b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metric_ll(Out *o, const char *name, const char *type, const char *help, long long v) {
    head(o, name, type, help);
    sb_addf(&o->b, "%s%s %lld\n", name, o->labels, v);
}

static void metric_str(Out *o, const char *name, const char *type, const char *help, const char *v) {
    head(o, name, type, help);
    sb_addf(&o->b, "%s%s %s\n", name, o->labels, v);
}

static void metric_double(Out *o, const char *name, const char *type, const char *help, double v) {
    char buf[40];
    py_float_repr(v, buf, sizeof buf);
    metric_str(o, name, type, help, buf);
}

/* a label value with \, " and newline escaped (the text format's rules) */
static void add_label_value(StrBuf *b, const char *v) {
    for (const char *p = v ? v : ""; *p; p++) {
        if (*p == '\\' || *p == '"')
            sb_addc(b, '\\');
        if (*p == '\n')
            sb_add(b, "\\n");
        else
            sb_addc(b, *p);
    }
}

/* "4.0.6" -> "040006" (Python: ''.join(x.zfill(2) for x in version.split('.'))) */
static void padded_version(const char *v, char *buf, size_t len) {
    StrBuf b;
    sb_init(&b);
    const char *p = v;
    while (*p) {
        size_t n = strcspn(p, ".");
        if (n < 2)
            sb_addc(&b, '0');
        sb_addn(&b, p, n);
        p += n;
        if (*p == '.')
            p++;
    }
    char *s = sb_steal(&b);
    snprintf(buf, len, "%s", s);
    free(s);
}

/* Patroni 4.1's PostgresqlState (postgresql/misc.py) in index order: the member name lower-cased, the value */
static const struct {
    const char *name, *value;
} postgres_states[] = {
    {"initdb", "initializing new cluster"},
    {"initdb_failed", "initdb failed"},
    {"custom_bootstrap", "running custom bootstrap script"},
    {"custom_bootstrap_failed", "custom bootstrap failed"},
    {"creating_replica", "creating replica"},
    {"running", "running"},
    {"starting", "starting"},
    {"bootstrap_starting", "starting after custom bootstrap"},
    {"start_failed", "start failed"},
    {"restarting", "restarting"},
    {"restart_failed", "restart failed"},
    {"stopping", "stopping"},
    {"stopped", "stopped"},
    {"stop_failed", "stop failed"},
    {"crashed", "crashed"},
};

/* the status document's role (snapshot_status_json()) */
static const char *status_role(const Snapshot *s) {
    if (!s->pg_running)
        return s->role ? s->role : "uninitialized";
    if (!s->in_recovery)
        return "primary";
    if (s->standby_cluster && s->role)
        return s->role;
    return "replica";
}

static void render_patroni(Out *o, const Snapshot *s) {
    const bool run = s->pg_running, replica = run && s->in_recovery;
    const char *role = status_role(s);
    char buf[64];
    padded_version(PGHA_PATRONI_VERSION, buf, sizeof buf);
    metric_str(o, "patroni_version", "gauge", "Patroni semver without periods.", buf);
    metric_ll(o, "patroni_postgres_running", "gauge", "Value is 1 if Postgres is running, 0 otherwise.",
              streq(s->state ? s->state : "stopped", "running"));
    double start = 0;
    if (run && s->postmaster_start_time) {
        if (!parse_pg_timestamp(s->postmaster_start_time, &start))
            start = s->postmaster_start_epoch;
    }
    if (start != 0)
        metric_double(o, "patroni_postmaster_start_time", "gauge", "Epoch seconds since Postgres started.", start);
    else
        metric_ll(o, "patroni_postmaster_start_time", "gauge", "Epoch seconds since Postgres started.", 0);
    metric_ll(o, "patroni_primary", "gauge", "Value is 1 if this node is the leader, 0 otherwise.",
              streq(role, "primary"));
    metric_ll(o, "patroni_master", "gauge", "Value is 1 if this node is the leader, 0 otherwise.",
              streq(role, "primary"));
    metric_ll(o, "patroni_xlog_location", "counter",
              "Current location of the Postgres transaction log, 0 if this node is not the leader.",
              run && !s->in_recovery ? s->xlog_location : 0);
    metric_ll(o, "patroni_standby_leader", "gauge", "Value is 1 if this node is the standby_leader, 0 otherwise.",
              streq(role, "standby_leader"));
    metric_ll(o, "patroni_replica", "gauge", "Value is 1 if this node is a replica, 0 otherwise.",
              streq(role, "replica"));
    metric_ll(o, "patroni_sync_standby", "gauge", "Value is 1 if this node is a sync standby, 0 otherwise.",
              replica && s->sync_standby && !s->quorum_standby);
    metric_ll(o, "patroni_quorum_standby", "gauge", "Value is 1 if this node is a quorum standby, 0 otherwise.",
              replica && s->sync_standby && s->quorum_standby);
    metric_ll(o, "patroni_xlog_received_location", "counter",
              "Current location of the received Postgres transaction log, 0 if this node is not a replica.",
              replica ? s->received_location : 0);
    metric_ll(o, "patroni_xlog_replayed_location", "counter",
              "Current location of the replayed Postgres transaction log, 0 if this node is not a replica.",
              replica ? s->replayed_location : 0);
    double replayed = 0;
    if (replica && s->replayed_timestamp && parse_pg_timestamp(s->replayed_timestamp, &replayed) && replayed != 0)
        metric_double(o, "patroni_xlog_replayed_timestamp", "gauge",
                      "Current timestamp of the replayed Postgres transaction log, 0 if null.", replayed);
    else
        metric_ll(o, "patroni_xlog_replayed_timestamp", "gauge",
                  "Current timestamp of the replayed Postgres transaction log, 0 if null.", 0);
    metric_ll(o, "patroni_xlog_paused", "gauge", "Value is 1 if the Postgres xlog is paused, 0 otherwise.",
              replica && s->replay_paused);
    if (run && s->server_version >= 90600) {
        const char *rs = replica ? s->replication_state : NULL;
        metric_ll(o, "patroni_postgres_streaming", "gauge", "Value is 1 if Postgres is streaming, 0 otherwise.",
                  streq(rs, "streaming"));
        metric_ll(o, "patroni_postgres_in_archive_recovery", "gauge",
                  "Value is 1 if Postgres is replicating from archive, 0 otherwise.", streq(rs, "in archive recovery"));
    }
    /* Patroni writes a space between this one's name and its labels */
    head(o, "patroni_postgres_server_version", "gauge", "Version of Postgres (if running), 0 otherwise.");
    sb_addf(&o->b, "patroni_postgres_server_version %s %lld\n", o->labels, run ? s->server_version : 0);
    metric_ll(o, "patroni_cluster_unlocked", "gauge", "Value is 1 if the cluster is unlocked, 0 if locked.",
              s->cluster_unlocked || !s->has_cluster);
    metric_ll(o, "patroni_failsafe_mode_is_active", "gauge", "Value is 1 if failsafe mode is active, 0 if inactive.",
              s->failsafe_active);
    metric_ll(o, "patroni_postgres_timeline", "counter", "Postgres timeline of this node (if running), 0 otherwise.",
              run && s->has_timeline ? s->timeline : 0);
    metric_ll(o, "patroni_dcs_last_seen", "gauge",
              "Epoch timestamp when DCS was last contacted successfully by Patroni.", s->dcs_last_seen);
    metric_ll(o, "patroni_pending_restart", "gauge", "Value is 1 if the node needs a restart, 0 otherwise.",
              s->pending_restart);
    metric_ll(o, "patroni_is_paused", "gauge", "Value is 1 if auto failover is disabled, 0 otherwise.", s->pause);
    /* Patroni 4.1: the state as its index in PostgresqlState (indexes never change), -1 for any other */
    sb_add(&o->b, "# HELP patroni_postgres_state Numeric representation of Postgres state.\n# Values: ");
    long long state = -1;
    for (size_t i = 0; i < ELEMENTSOF(postgres_states); i++) {
        sb_addf(&o->b, "%s%zu=%s", i ? ", " : "", i, postgres_states[i].name);
        if (streq(s->state ? s->state : "stopped", postgres_states[i].value))
            state = (long long)i;
    }
    sb_add(&o->b, "\n# TYPE patroni_postgres_state gauge\n");
    sb_addf(&o->b, "patroni_postgres_state%s %lld\n", o->labels, state);
}

static void sample_double(Out *o, const char *name, const char *extra_labels, double v) {
    char buf[40];
    py_float_repr(v, buf, sizeof buf);
    if (extra_labels)
        sb_addf(&o->b, "%s{%s,%s} %s\n", name, o->inner, extra_labels, buf);
    else
        sb_addf(&o->b, "%s%s %s\n", name, o->labels, buf);
}

static void render_pgha(Out *o, const Snapshot *s, usec_t now) {
    const AgentCounters *c = &s->counters;
    head(o, "pgha_ha_cycle_last_duration_seconds", "gauge", "Duration of the last HA loop cycle.");
    sample_double(o, "pgha_ha_cycle_last_duration_seconds", NULL, c->cycle_last_seconds);

    head(o, "pgha_ha_cycle_duration_seconds", "histogram", "Duration of the HA loop cycles.");
    unsigned long long cum = 0;
    for (size_t i = 0; i < AGENT_CYCLE_BUCKETS; i++) {
        char le[40];
        py_float_repr(agent_cycle_bucket_bounds[i], le, sizeof le);
        cum += c->cycle_buckets[i];
        sb_addf(&o->b, "pgha_ha_cycle_duration_seconds_bucket{%s,le=\"%s\"} %llu\n", o->inner, le, cum);
    }
    sb_addf(&o->b, "pgha_ha_cycle_duration_seconds_bucket{%s,le=\"+Inf\"} %llu\n", o->inner, c->cycles);
    sample_double(o, "pgha_ha_cycle_duration_seconds_sum", NULL, c->cycle_seconds_sum);
    sb_addf(&o->b, "pgha_ha_cycle_duration_seconds_count%s %llu\n", o->labels, c->cycles);

    head(o, "pgha_promotions_total", "counter",
         "Promotions of this node to primary (failovers and switchovers it won) since the agent started.");
    sb_addf(&o->b, "pgha_promotions_total%s %llu\n", o->labels, c->promotions);
    head(o, "pgha_demotions_total", "counter",
         "Demotions of this node since the agent started, by mode (graceful: switchover; immediate: unfit "
         "primary; immediate-nolock: lost the leader lock; offline: DCS unreachable).");
    static const char *const modes[AGENT_DEMOTE_MODES] = {"graceful", "immediate", "immediate-nolock", "offline"};
    for (size_t i = 0; i < AGENT_DEMOTE_MODES; i++)
        sb_addf(&o->b, "pgha_demotions_total{%s,mode=\"%s\"} %llu\n", o->inner, modes[i], c->demotions[i]);

    head(o, "pgha_leader_lease_age_seconds", "gauge",
         "Seconds since this node last renewed its leader lease; only present while it holds the leader lock.");
    if (s->lease_renewed_at)
        sample_double(o, "pgha_leader_lease_age_seconds", NULL,
                      now > s->lease_renewed_at ? (double)(now - s->lease_renewed_at) / USEC_PER_SEC : 0.0);
    head(o, "pgha_ttl_seconds", "gauge", "The effective ttl of the leader lease.");
    sb_addf(&o->b, "pgha_ttl_seconds%s %lld\n", o->labels, s->ttl);
    head(o, "pgha_loop_wait_seconds", "gauge", "The effective loop_wait of the HA loop.");
    sb_addf(&o->b, "pgha_loop_wait_seconds%s %lld\n", o->labels, s->loop_wait);
    head(o, "pgha_watchdog_active", "gauge",
         "Value is 1 if the watchdog device is armed (this node leads with watchdog.mode automatic or required), 0 "
         "otherwise.");
    sb_addf(&o->b, "pgha_watchdog_active%s %d\n", o->labels, s->watchdog_active ? 1 : 0);
    head(o, "pgha_watchdog_failed", "gauge",
         "Value is 1 if watchdog.mode is required and the watchdog is unusable (this node will not become the "
         "leader), 0 otherwise.");
    sb_addf(&o->b, "pgha_watchdog_failed%s %d\n", o->labels, s->watchdog_failed ? 1 : 0);

    const DcsStats *d = &s->dcs_stats;
    head(o, "pgha_dcs_requests_total", "counter", "Requests sent to the DCS, the watch stream not included.");
    sb_addf(&o->b, "pgha_dcs_requests_total%s %llu\n", o->labels, d->requests);
    head(o, "pgha_dcs_request_errors_total", "counter",
         "DCS requests that got no answer (connection error, timeout) or an HTTP error status.");
    sb_addf(&o->b, "pgha_dcs_request_errors_total%s %llu\n", o->labels, d->request_errors);
    head(o, "pgha_dcs_request_seconds_total", "counter", "Time spent in DCS requests, summed.");
    sample_double(o, "pgha_dcs_request_seconds_total", NULL, d->request_seconds);
    head(o, "pgha_dcs_sent_bytes_total", "counter", "Bytes of request bodies sent to the DCS.");
    sb_addf(&o->b, "pgha_dcs_sent_bytes_total%s %llu\n", o->labels, d->bytes_sent);
    head(o, "pgha_dcs_received_bytes_total", "counter", "Bytes received from the DCS, the watch stream included.");
    sb_addf(&o->b, "pgha_dcs_received_bytes_total%s %llu\n", o->labels, d->bytes_received);
    head(o, "pgha_dcs_watch_events_total", "counter", "Events received on the DCS watch stream.");
    sb_addf(&o->b, "pgha_dcs_watch_events_total%s %llu\n", o->labels, d->watch_events);
    head(o, "pgha_dcs_watch_reconnects_total", "counter", "Reconnections of the DCS watch stream.");
    sb_addf(&o->b, "pgha_dcs_watch_reconnects_total%s %llu\n", o->labels, d->watch_reconnects);

    head(o, "pgha_rest_requests_total", "counter",
         "REST API requests by endpoint (first path segment of a known route, else other) and status code "
         "(none: closed without a response).");
    for (size_t e = 0; e < N_ENDPOINTS; e++) {
        for (size_t k = 0; k < N_CODES; k++) {
            unsigned long long n = atomic_load_explicit(&rest_requests[e][k], memory_order_relaxed);
            if (!n)
                continue;
            char code[16];
            if (k == CODE_OTHER)
                snprintf(code, sizeof code, "other");
            else if (k == CODE_NONE)
                snprintf(code, sizeof code, "none");
            else
                snprintf(code, sizeof code, "%u", codes[k]);
            sb_addf(&o->b, "pgha_rest_requests_total{%s,endpoint=\"%s\",code=\"%s\"} %llu\n", o->inner, endpoints[e],
                    code, n);
        }
    }
}

char *metrics_render(const Snapshot *s, usec_t now) {
    Out o;
    sb_init(&o.b);
    StrBuf l;
    sb_init(&l);
    sb_add(&l, "scope=\"");
    add_label_value(&l, s->scope);
    sb_add(&l, "\",name=\"");
    add_label_value(&l, s->name);
    sb_addc(&l, '"');
    char *inner = sb_steal(&l);
    snprintf(o.inner, sizeof o.inner, "%s", inner);
    snprintf(o.labels, sizeof o.labels, "{%s}", inner);
    free(inner);
    render_patroni(&o, s);
    render_pgha(&o, s, now);
    return sb_steal(&o.b);
}
