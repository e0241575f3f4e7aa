/* libFuzzer target: the REST request path (src/restapi, src/agent/commands.c). libmicrohttpd parses the
 * HTTP itself; what pgha does with a request is fuzzed here, from a raw request:
 *
 *   - the request line and headers are split as libmicrohttpd hands them over (path percent-decoded,
 *     query arguments decoded with '+' as a space, at most 32 of them as server.c collects them);
 *   - a safe method (GET, HEAD, OPTIONS) goes where server.c's handle_get() sends it: the health checks
 *     (health_check_code, readiness_code, liveness_code) for four snapshots (primary leader, streaming
 *     replica with tags, synchronous standby of a standby cluster, paused and stopped), the status
 *     document, /metrics, /cluster, /history, /config;
 *   - an unsafe method goes through the access decision (Basic credentials of the Authorization header,
 *     the Content-Length bound of unsafe_request_start) and then rest_command(): the real command
 *     endpoints with the real command queue, whose HA loop side is played here synchronously (from the
 *     queue's wake callback) with the loop's own validation: failover_request_check, failover_precheck
 *     against a cluster view, the scheduled time, config_patch of PATCH /config and the dynamic
 *     configuration parsed from the result, restart_request_check.
 *
 * Input: an HTTP/1.1 request ("METHOD target HTTP/1.1", header lines, an empty line, the body). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent/commands.h"
#include "agent/snapshot.h"
#include "common/base64.h"
#include "common/config.h"
#include "common/json.h"
#include "common/yamltree.h"
#include "fuzz_common.h"
#include "restapi/access.h"
#include "restapi/commands.h"
#include "restapi/metrics.h"
#include "restapi/restapi.h"

#define BASE "/service/batman"
#define MAX_PARAMS 32 /* server.c's Params */
#define MAX_BODY (64 * 1024)
/* The wall clock of the run (2025-01-01T00:00:00Z): a scheduled time is checked against it. */
#define NOW_S 1735689600.0

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static Snapshot *snaps[4];
static Cluster *cluster;
static DynConfig dyn_off, dyn_strict;
static CommandQueue *queue;

/* ---- fixtures ---- */

static cJSON *parse_or_die(const char *s) {
    cJSON *j = json_parse(s);
    if (!j)
        abort();
    return j;
}

static Snapshot *make_snapshot(int kind) {
    Snapshot *s = snapshot_new();
    s->scope = xstrdup("batman");
    s->name = xasprintf("pg%d", kind + 1);
    s->state = xstrdup(kind == 3 ? "stopped" : "running");
    s->role = xstrdup(kind == 0 ? "primary" : kind == 2 ? "standby_leader" : "replica");
    s->pg_running = kind != 3;
    s->in_recovery = kind != 0;
    s->server_version = 160004;
    s->postmaster_start_time = xstrdup("2024-08-28 19:39:26.352526+00:00");
    s->postmaster_start_epoch = 1724873966.352526;
    s->has_timeline = true;
    s->timeline = 3;
    s->xlog_location = 0x3000060;
    s->received_location = 0x3000000;
    s->replayed_location = 0x2fff000;
    s->latest_end_lsn = kind == 1 ? 0x3000100 : 0;
    s->replayed_timestamp = kind == 1 ? xstrdup("2025-01-01 00:00:00.000000+00:00") : NULL;
    s->replication_state = kind == 1 || kind == 2 ? xstrdup("streaming") : NULL;
    if (kind == 0)
        s->replication = parse_or_die("[{\"usename\":\"replicator\",\"application_name\":\"pg2\",\"client_addr\":"
                                      "\"10.0.0.2\",\"state\":\"streaming\",\"sync_state\":\"sync\","
                                      "\"sync_priority\":1}]");
    s->pause = kind == 3;
    s->has_cluster = kind != 3;
    s->cluster_unlocked = false;
    s->dcs_last_seen = 1735689600;
    if (kind == 1)
        s->tags = parse_or_die("{\"nofailover\":false,\"noloadbalance\":false,\"clonefrom\":true,\"zone\":\"a\","
                               "\"failover_priority\":2,\"weight\":1.5}");
    else if (kind == 2)
        s->tags = parse_or_die("{\"nosync\":true,\"noloadbalance\":true}");
    s->sysid = xstrdup("7400000000000000001");
    s->sync_standby = kind == 2;
    s->quorum_standby = false;
    s->pending_restart = kind == 1;
    if (kind == 1) {
        s->pending_restart_reason = parse_or_die("{\"max_connections\":{\"old_value\":\"100\",\"new_value\":\"200\"}}");
        s->scheduled_restart = parse_or_die("{\"schedule\":\"2025-01-02T00:00:00+00:00\",\"role\":\"replica\"}");
    }
    s->leader_until = kind == 0 || kind == 2 ? 3000000 : 0; /* the requests below come at 2 s: within the lease */
    s->has_optime = true;
    s->cluster_optime = 0x3000060;
    s->standby_cluster = kind == 2;
    s->maximum_lag_on_failover = 1048576;
    s->next_cycle = 1000000;
    s->ttl = 30;
    s->loop_wait = 10;
    s->published = 1000000;
    return s;
}

static void add_kv(DcsKv *kvs, size_t *n, const char *rel, const char *value, const char *lease) {
    kvs[*n] = (DcsKv){.key = xasprintf(BASE "/%s", rel),
                      .value = xstrdup(value),
                      .value_len = strlen(value),
                      .mod_revision = (long long)*n + 10,
                      .create_revision = (long long)*n + 10,
                      .lease = lease ? xstrdup(lease) : NULL};
    (*n)++;
}

static Cluster *make_cluster(void) {
    DcsKv kvs[16];
    size_t n = 0;
    add_kv(kvs, &n, "initialize", "7400000000000000001", NULL);
    add_kv(kvs, &n, "config",
           "{\"ttl\":30,\"loop_wait\":10,\"retry_timeout\":10,\"maximum_lag_on_failover\":1048576,"
           "\"synchronous_mode\":true,\"postgresql\":{\"use_pg_rewind\":true,\"parameters\":{\"max_connections\":100,"
           "\"wal_level\":\"replica\"}},\"tags\":null}",
           NULL);
    add_kv(kvs, &n, "leader", "pg1", "7587862099435517000");
    add_kv(kvs, &n, "members/pg1",
           "{\"conn_url\":\"postgres://10.0.0.1:5432/postgres\",\"api_url\":\"http://10.0.0.1:8008/patroni\","
           "\"state\":\"running\",\"role\":\"primary\",\"version\":\"4.0.6\",\"xlog_location\":50331744,"
           "\"timeline\":3}",
           "7587862099435517000");
    add_kv(kvs, &n, "members/pg2",
           "{\"conn_url\":\"postgres://10.0.0.2:5432/postgres\",\"api_url\":\"http://10.0.0.2:8008/patroni\","
           "\"state\":\"running\",\"role\":\"replica\",\"version\":\"4.0.6\",\"xlog_location\":50331648,"
           "\"replication_state\":\"streaming\",\"timeline\":3,\"tags\":{\"clonefrom\":true}}",
           "7587862099435517001");
    add_kv(kvs, &n, "members/pg3",
           "{\"conn_url\":\"postgres://10.0.0.3:5432/postgres\",\"api_url\":\"http://10.0.0.3:8008/patroni\","
           "\"state\":\"running\",\"role\":\"replica\",\"version\":\"4.0.6\",\"tags\":{\"nofailover\":true}}",
           "7587862099435517002");
    add_kv(kvs, &n, "sync", "{\"leader\":\"pg1\",\"quorum\":0,\"sync_standby\":\"pg2\"}", NULL);
    add_kv(kvs, &n, "status", "{\"optime\":50331744,\"slots\":{\"pg2\":50331648},\"retain_slots\":[\"pg2\",\"pg3\"]}",
           NULL);
    add_kv(kvs, &n, "history",
           "[[1,25165984,\"no recovery target specified\",\"2024-08-28T19:39:26.352526+00:00\","
           "\"pg2\"],[2,33554592,\"no recovery target specified\"]]",
           NULL);
    add_kv(kvs, &n, "failover",
           "{\"leader\":\"pg1\",\"member\":\"pg2\",\"scheduled_at\":\"2025-01-02T00:00:00+00:00\"}", NULL);
    Cluster *c = cluster_from_kvs(kvs, n, BASE);
    for (size_t i = 0; i < n; i++)
        dcs_kv_free_contents(&kvs[i]);
    return c;
}

/* ---- the HA loop's side of the command queue, run synchronously from its wake callback ---- */

static bool cluster_paused(void) {
    bool paused = false;
    (void)json_get_bool(cluster->config, "pause", &paused);
    return paused;
}

static void dynamic_config_of(const cJSON *config) {
    YNode *n = ynode_from_json(config, "DCS /config");
    DynConfig dyn;
    CfgDiag diag = {0};
    (void)dyn_config_parse(n, &dyn, &diag);
    dyn_config_free(&dyn);
    cfg_diag_clear(&diag);
    ynode_free(n);
}

static void run_failover(Command *c) {
    char *body = NULL;
    int code = failover_request_check(c, cluster_paused(), NOW_S, &body);
    if (!code && !c->scheduled_at) {
        for (int strict = 0; strict < 2 && !code; strict++) {
            free(body);
            body = NULL;
            const char **names = NULL;
            size_t n = 0;
            code = failover_precheck(c, cluster, strict ? &dyn_strict : &dyn_off, &body, &names, &n);
            free(names);
        }
    }
    if (!code) {
        char *at = failover_scheduled_iso(c->scheduled_at);
        if (c->scheduled_at && !at)
            abort(); /* failover_request_check accepted a time that does not convert */
        free(body);
        body = cluster_encode_failover(c->leader, c->candidate, at);
        free(at);
        /* not 0: that would make the submitter watch the DCS for the outcome */
        code = c->scheduled_at ? 202 : 200;
    }
    command_complete(queue, c, code, body, false);
}

static void run_command(Command *c) {
    switch (c->kind) {
    case CMD_SWITCHOVER:
    case CMD_FAILOVER: run_failover(c); break;
    case CMD_PATCH_CONFIG: {
        cJSON *cfg = cJSON_Duplicate(cluster->config, true);
        (void)config_patch(cfg, c->body);
        dynamic_config_of(cfg);
        char *body = json_dumps(cfg, true);
        cJSON_Delete(cfg);
        command_complete(queue, c, 200, body, true);
        break;
    }
    case CMD_PUT_CONFIG:
        dynamic_config_of(c->body);
        (void)cJSON_Compare(cluster->config, c->body, true);
        command_complete(queue, c, 200, json_dumps(c->body, true), true);
        break;
    case CMD_RESTART: {
        cJSON *norm = NULL;
        char *body = NULL;
        int code = restart_request_check(c->body, cluster_paused(), NOW_S, &norm, &body);
        if (!code) {
            free(body);
            body = json_dumps(norm, false);
            code = 200;
        }
        cJSON_Delete(norm);
        command_complete(queue, c, code, body, false);
        break;
    }
    case CMD_DELETE_SWITCHOVER:
        command_complete(queue, c, cluster->failover.scheduled_at ? 200 : 404, xstrdup("scheduled switchover deleted"),
                         false);
        break;
    case CMD_RELOAD: command_complete(queue, c, 202, xstrdup("reload scheduled"), false); break;
    case CMD_DELETE_RESTART:
    case CMD_REINITIALIZE: command_complete(queue, c, 200, xstrdup("ok"), false); break;
    }
}

static void loop_wake(void *ud) {
    (void)ud;
    Command *c;
    while ((c = command_queue_pop(queue)))
        run_command(c);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    for (int i = 0; i < 4; i++)
        snaps[i] = make_snapshot(i);
    cluster = make_cluster();
    dyn_config_defaults(&dyn_off);
    dyn_config_defaults(&dyn_strict);
    dyn_strict.synchronous_mode = SYNC_ON;
    queue = command_queue_new(loop_wake, NULL);
    return 0;
}

/* ---- the request ---- */

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* libmicrohttpd's unescaping: %XX decoded (an invalid escape stays as it is), '+' as a space in arguments. */
static void unescape(char *s, bool plus) {
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r == '%' && hexval(r[1]) >= 0 && hexval(r[2]) >= 0) {
            *w++ = (char)(hexval(r[1]) * 16 + hexval(r[2]));
            r += 2;
        } else {
            *w++ = plus && *r == '+' ? ' ' : *r;
        }
    }
    *w = '\0';
}

typedef struct Request {
    char *method, *path, *query;
    QueryParam params[MAX_PARAMS];
    size_t n_params;
    char *content_length, *authorization;
    const char *body;
    size_t body_len;
} Request;

static bool parse_request(char *text, size_t len, Request *r) {
    *r = (Request){0};
    char *end = text + len;
    char *eol = memchr(text, '\n', len);
    if (!eol)
        eol = end;
    *eol = '\0';
    if (eol > text && eol[-1] == '\r')
        eol[-1] = '\0';
    char *save = NULL;
    r->method = strtok_r(text, " ", &save);
    char *target = strtok_r(NULL, " ", &save);
    if (!r->method || !target)
        return false;
    /* headers up to the empty line */
    char *p = eol < end ? eol + 1 : end;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *line_end = nl ? nl : end;
        *line_end = '\0';
        if (line_end > p && line_end[-1] == '\r')
            line_end[-1] = '\0';
        char *line = p;
        p = nl ? nl + 1 : end;
        if (!*line)
            break;
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        if (strcasecmp(line, "Content-Length") == 0)
            r->content_length = value;
        else if (strcasecmp(line, "Authorization") == 0)
            r->authorization = value;
    }
    r->body = p;
    r->body_len = (size_t)(end - p);
    /* the path and the arguments */
    char *q = strchr(target, '?');
    if (q) {
        *q++ = '\0';
        r->query = q;
        char *asave = NULL;
        for (char *arg = strtok_r(q, "&", &asave); arg; arg = strtok_r(NULL, "&", &asave)) {
            char *eq = strchr(arg, '=');
            if (eq)
                *eq++ = '\0';
            unescape(arg, true);
            if (eq)
                unescape(eq, true);
            if (r->n_params < MAX_PARAMS)
                r->params[r->n_params++] = (QueryParam){arg, eq ? eq : ""};
        }
    }
    unescape(target, false);
    r->path = target;
    return true;
}

/* server.c's handle_get(): the first path segment selects the handler, else the health check. */
static void handle_safe(const Request *r, bool status_only) {
    const char *p = r->path[0] == '/' ? r->path + 1 : r->path;
    size_t seg = strcspn(p, "/");
    char first[64];
    snprintf(first, sizeof first, "%.*s", (int)(seg < sizeof first - 1 ? seg : sizeof first - 1), p);
    for (size_t i = 0; i < ELEMENTSOF(snaps); i++) {
        Snapshot *s = snaps[i];
        char why[256];
        int code = health_check_code(s, r->path, r->params, r->n_params, 2000000);
        if (code != 200 && code != 503)
            abort();
        code = readiness_code(s, r->params, r->n_params, why, sizeof why, 2000000);
        if (code != 200 && code != 503)
            abort();
        (void)liveness_code(s, 2000000);
        rest_metrics_count(r->path, (unsigned)code);
        if (status_only)
            continue;
        if (strcmp(first, "patroni") == 0)
            free(snapshot_status_json(s));
        else if (strcmp(first, "metrics") == 0)
            free(metrics_render(s, 2000000));
    }
    if (status_only)
        return;
    if (strcmp(first, "cluster") == 0)
        free(cluster_to_json(cluster, "batman", cluster_paused()));
    else if (strcmp(first, "history") == 0)
        free(json_dumps(cluster->history, true));
    else if (strcmp(first, "config") == 0)
        free(json_dumps(cluster->config, true));
}

/* access.c's rest_security_check() with restapi.authentication set: the Basic credentials (which
 * libmicrohttpd decodes in the server) and the decision. */
static void access_check(const Request *r) {
    char *user = NULL, *pass = NULL;
    if (r->authorization && strncasecmp(r->authorization, "Basic ", 6) == 0) {
        size_t len = 0;
        char *decoded = base64_decode(r->authorization + 6, &len);
        char *colon = decoded && strlen(decoded) == len ? strchr(decoded, ':') : NULL;
        if (colon) {
            user = xstrndup(decoded, (size_t)(colon - decoded));
            pass = xstrdup(colon + 1);
        }
        free(decoded);
    }
    for (int allowlist = 0; allowlist < 2; allowlist++) {
        AccessRequest req = {
            .allowlist_active = allowlist,
            .client_allowed = true,
            .auth_username = "patroni",
            .auth_password = "s3cret",
            .auth_header_present = r->authorization != NULL,
            .username = user,
            .password = pass,
        };
        const char *reason = NULL;
        int code = access_decide(&req, &reason);
        if (code != 0 && (!reason || (code != 401 && code != 403)))
            abort();
    }
    free(user);
    free(pass);
}

static void handle_unsafe(const Request *r) {
    access_check(r);
    /* unsafe_request_start(): an invalid or too large Content-Length is answered there */
    long long len = 0;
    if (r->content_length && (parse_ll(r->content_length, &len) < 0 || len < 0))
        return;
    if ((unsigned long long)len > MAX_BODY)
        return;
    /* the body as server.c buffers it: NUL-terminated, as long as it was sent */
    char *body = xmalloc(r->body_len + 1);
    memcpy(body, r->body, r->body_len);
    body[r->body_len] = '\0';
    _Atomic bool stopping = false;
    RestReply reply;
    if (rest_command(queue, NULL, NULL, &stopping, r->method, r->path, body, r->body_len, r->content_length != NULL,
                     &reply)) {
        if (!reply.close && !reply.error_page && (reply.code < 100 || reply.code > 599 || !reply.body))
            abort();
        free(reply.body);
    }
    free(body);
    if (command_queue_length(queue) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = xmalloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    Request r;
    if (parse_request(text, size, &r)) {
        (void)rest_metrics_endpoint(r.path);
        if (strcmp(r.method, "GET") == 0)
            handle_safe(&r, false);
        else if (strcmp(r.method, "HEAD") == 0 || strcmp(r.method, "OPTIONS") == 0)
            handle_safe(&r, true);
        else
            handle_unsafe(&r);
    }
    free(text);
    return 0;
}
