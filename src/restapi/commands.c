/* The command endpoints: parse the request, hand it to the HA loop, wait (bounded) for its answer; an
 * immediate switchover is then followed in the DCS watch cache, as Patroni polls the DCS. */
#include "restapi/commands.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "agent/probe.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"

static void text(RestReply *r, unsigned code, const char *s) {
    r->code = code;
    r->body = xstrdup(s);
    r->content_type = "text/html";
}

static void error_page(RestReply *r, unsigned code) {
    r->code = code;
    r->error_page = true;
}

/* Patroni's _read_json_content(): Content-Length is mandatory (411), the body a non-empty object (400). */
static cJSON *read_json(const char *body, size_t len, bool has_length, RestReply *r) {
    if (!has_length) {
        error_page(r, 411);
        return NULL;
    }
    cJSON *o = len ? json_parse(body) : NULL;
    if (!o || !cJSON_IsObject(o) || !o->child) {
        cJSON_Delete(o);
        error_page(r, 400);
        return NULL;
    }
    return o;
}

/* Patroni's _read_json_content(body_is_optional=True): no or zero Content-Length is {} (NULL here), else
 * a JSON object (400 otherwise). Returns false with the error reply set. */
static bool read_optional_json(const char *body, size_t len, bool has_length, cJSON **ret, RestReply *r) {
    *ret = NULL;
    if (!has_length || len == 0)
        return true;
    cJSON *o = json_parse(body);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        error_page(r, 400);
        return false;
    }
    *ret = o;
    return true;
}

/* Patroni's parse_bool(): true, 1, "true", "on", "yes", "1" (any case). */
static bool truthy(const cJSON *v) {
    if (cJSON_IsBool(v))
        return cJSON_IsTrue(v);
    if (cJSON_IsNumber(v))
        return v->valuedouble == 1.0;
    if (cJSON_IsString(v))
        return strcaseeq(v->valuestring, "true") || strcaseeq(v->valuestring, "on") ||
               strcaseeq(v->valuestring, "yes") || streq(v->valuestring, "1");
    return false;
}

/* Submit and wait (the queue's timeout: the loop's worst case); false with a 503 reply when the queue is
 * full or the loop did not take the command in time (it then never runs). */
static bool submit(CommandQueue *q, Command *c, RestReply *r) {
    int e = command_submit(q, c, 0);
    if (e == -EBUSY) {
        log_warning("REST API: the HA loop's command queue is full");
        text(r, 503, "Too many commands are waiting for the HA loop; try again later");
        return false;
    }
    if (e < 0) {
        log_warning("REST API: the HA loop did not take the command in time; it was dropped");
        text(r, 503, "The HA loop did not take the command in time; it was not carried out");
        return false;
    }
    return true;
}

/* Patroni's "no good candidates" check needs the considered members' GET /patroni (2 s): asked here,
 * not in the HA loop. The loop checks the candidates again against a fresh cluster view. */
static void probe_candidates(Dcs *dcs, const PghaConfig *probe_cfg, Command *c) {
    Cluster *cl = NULL;
    if (!probe_cfg || dcs_get_cluster_cached(dcs, &cl) < 0)
        return;
    /* a request the loop will refuse anyway (400, 422) needs no probe */
    bool paused = false;
    char *err = NULL;
    if (cl->config)
        (void)json_get_bool(cl->config, "pause", &paused);
    int code = failover_request_check(c, paused, (double)now_realtime() / 1e6, &err);
    free(err);
    if (code) {
        cluster_free(cl);
        return;
    }
    /* every member but the leader (in parallel, 2 s at most): the loop keeps those it considers */
    size_t n_peers = 0;
    const char *leader = cl->leader && cl->leader->name[0] ? cl->leader->name : "";
    PeerStatus *peers = probe_members(cl, NULL, leader, probe_cfg, 2000, &n_peers);
    c->good = xcalloc(n_peers + 1, sizeof *c->good);
    for (size_t i = 0; i < n_peers; i++)
        if (peers[i].reachable && !peers[i].nofailover && !peers[i].watchdog_failed)
            c->good[c->n_good++] = xstrdup(peers[i].name);
    free(peers);
    cluster_free(cl);
}

static void reply_from(const Command *c, RestReply *r) {
    if (c->code < 0) {
        r->close = true; /* the loop could not read the cluster: Patroni closes the connection */
    } else if (c->result) {
        r->code = (unsigned)c->code;
        r->body = xstrdup(c->result);
        r->content_type = c->json ? "application/json" : "text/html";
    } else {
        error_page(r, (unsigned)c->code);
    }
}

/* Watch the cache once per second for the outcome of an immediate switchover / failover (spec §2.6). */
static void watch_outcome(Dcs *dcs, const _Atomic bool *stopping, const Command *c, bool failover, RestReply *r) {
    for (int i = 0; i < c->wait_s && !atomic_load(stopping); i++) {
        sleep(1);
        Cluster *cl = NULL;
        if (dcs_get_cluster_cached(dcs, &cl) < 0)
            continue;
        const char *now_leader = cl->leader && cl->leader->name[0] ? cl->leader->name : NULL;
        if (now_leader && !streq(now_leader, c->old_leader)) {
            r->code = 200;
            if (!c->candidate || streq(c->candidate, now_leader))
                r->body = xasprintf(failover ? "Successfully failed over to \"%s\""
                                             : "Successfully switched over to \"%s\"",
                                    now_leader);
            else
                r->body = xasprintf(failover ? "Failed over to \"%s\" instead of \"%s\""
                                             : "Switched over to \"%s\" instead of \"%s\"",
                                    now_leader, c->candidate);
            r->content_type = "text/html";
            cluster_free(cl);
            return;
        }
        bool gone = failover_is_empty(&cl->failover);
        cluster_free(cl);
        if (gone) {
            text(r, 503, failover ? "Failover failed" : "Switchover failed");
            return;
        }
    }
    text(r, 503, failover ? "Failover status unknown" : "Switchover status unknown");
}

static void do_failover(CommandQueue *q, Dcs *dcs, const PghaConfig *probe_cfg, const _Atomic bool *stopping,
                        CommandKind kind, const char *body, size_t len, bool has_length, RestReply *r) {
    cJSON *o = read_json(body, len, has_length, r);
    if (!o)
        return;
    cJSON_Delete(o);
    Command *c = command_new(kind);
    (void)failover_request_parse(body, c);
    if (!c->scheduled_at)
        probe_candidates(dcs, probe_cfg, c);
    if (submit(q, c, r)) {
        if (c->code == 0)
            watch_outcome(dcs, stopping, c, kind == CMD_FAILOVER && !c->leader, r);
        else
            reply_from(c, r);
    }
    command_unref(c);
}

static void do_simple(CommandQueue *q, CommandKind kind, cJSON *body, RestReply *r) {
    Command *c = command_new(kind);
    c->body = body;
    if (submit(q, c, r))
        reply_from(c, r);
    command_unref(c);
}

void rest_failsafe_post(CommandQueue *q, const Snapshot *s, const char *body, size_t len, bool has_length,
                        RestReply *r) {
    if (!s || !s->failsafe_mode) {
        error_page(r, 502);
        return;
    }
    cJSON *o = read_json(body, len, has_length, r);
    if (!o)
        return;
    const char *name = json_get_string(o, "name");
    if (!name || !*name || strlen(name) >= 128) {
        cJSON_Delete(o);
        text(r, 400, "a member name is required");
        return;
    }
    if (streq(s->state, "running") && s->pg_running && !s->in_recovery) {
        cJSON_Delete(o);
        text(r, 500, "Running as a leader");
        return;
    }
    command_failsafe_record(q, name, now_monotonic());
    cJSON_Delete(o);
    long long rec = s->pg_running ? s->received_location : 0, rep = s->pg_running ? s->replayed_location : 0;
    r->lsn = rec > rep ? rec : rep;
    text(r, 200, "Accepted");
}

bool rest_command(CommandQueue *q, Dcs *dcs, const PghaConfig *probe_cfg, const _Atomic bool *stopping,
                  const char *method, const char *url, const char *body, size_t len, bool has_length, RestReply *r) {
    *r = (RestReply){0};
    const char *p = url[0] == '/' ? url + 1 : url;
    size_t seg = strcspn(p, "/");
    char first[32];
    if (seg >= sizeof first)
        return false;
    memcpy(first, p, seg);
    first[seg] = '\0';
    if (streq(method, "POST") && (streq(first, "switchover") || streq(first, "failover"))) {
        do_failover(q, dcs, probe_cfg, stopping, streq(first, "failover") ? CMD_FAILOVER : CMD_SWITCHOVER, body, len,
                    has_length, r);
    } else if (streq(method, "DELETE") && streq(first, "switchover")) {
        do_simple(q, CMD_DELETE_SWITCHOVER, NULL, r);
    } else if ((streq(method, "PATCH") || streq(method, "PUT")) && streq(first, "config")) {
        cJSON *o = read_json(body, len, has_length, r);
        if (o)
            do_simple(q, streq(method, "PATCH") ? CMD_PATCH_CONFIG : CMD_PUT_CONFIG, o, r);
    } else if (streq(method, "POST") && streq(first, "restart")) {
        /* answered when the restart is over (the loop bounds it: pg_ctl_timeout, then the start's timeout) */
        cJSON *o;
        if (read_optional_json(body, len, has_length, &o, r))
            do_simple(q, CMD_RESTART, o, r);
    } else if (streq(method, "DELETE") && streq(first, "restart")) {
        do_simple(q, CMD_DELETE_RESTART, NULL, r);
    } else if (streq(method, "POST") && streq(first, "reinitialize")) {
        cJSON *o;
        if (read_optional_json(body, len, has_length, &o, r)) {
            Command *c = command_new(CMD_REINITIALIZE);
            c->force = truthy(cJSON_GetObjectItemCaseSensitive(o, "force"));
            c->from_leader = truthy(cJSON_GetObjectItemCaseSensitive(o, "from_leader"));
            cJSON_Delete(o);
            if (submit(q, c, r))
                reply_from(c, r);
            command_unref(c);
        }
    } else if (streq(method, "POST") && streq(first, "failsafe")) {
        /* answered here: the HA loop only reads what was recorded */
        Snapshot *s = snapshot_current();
        rest_failsafe_post(q, s, body, len, has_length, r);
        snapshot_unref(s);
    } else if (streq(method, "POST") && streq(first, "reload")) {
        /* queued, not waited for (and never dropped): it runs even if the loop is busy now */
        Command *c = command_new(CMD_RELOAD);
        int e = command_enqueue(q, c);
        command_unref(c);
        if (e < 0)
            text(r, 503, "Too many commands are waiting for the HA loop; try again later");
        else
            text(r, 202, "reload scheduled");
    } else {
        return false;
    }
    return true;
}
