/* A driver for the DCS layer, used by the integration tests (tests/integration/test_dcs.py) and
 * bench/dcs. It links the production objects: what it exercises is what pgha runs.
 *
 *   dcs-tool [--ttl N --loop-wait N --retry-timeout N] CONFIG COMMAND [ARGS]
 *
 * Commands print one JSON object per line on stdout:
 *   race SECONDS          try to take the leader key once; print {"won":bool}; then renew it (if
 *                         won) every loop_wait for SECONDS, printing each renewal result
 *   hold SECONDS STATE    take the leader key if free, write our member key (role/state), renew
 *                         for SECONDS, then exit WITHOUT releasing (the lease expires in etcd)
 *   member SECONDS JSON   write our member key with JSON and keep the lease alive for SECONDS
 *   watch SECONDS         run the watch; print every change of the cached view as
 *                         {"t":..,"revision":..,"keys":{rel:value}} and each wake-up {"wake":..}
 *   cluster               read the cluster once (linearizable) and print the decoded view
 *   put KEY VALUE | get KEY | delete KEY      raw access below the cluster base
 *   ops                   run every operation once and print each result and its duration
 *   steady SECONDS ROLE   emulate one node of a steady cluster (leader: update_leader +
 *                         touch_member each loop; replica: touch_member each loop, with a
 *                         changing xlog_location), then print the request/byte statistics */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/json.h"
#include "common/log.h"
#include "dcs/dcs.h"

static volatile sig_atomic_t stop;
static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static double now_s(void) { return (double)now_realtime() / 1e6; }

/* A whole-number option, checked: a typo must not silently become 0. */
static bool int_arg(const char *s, int *ret) {
    long long v;
    if (parse_ll(s, &v) < 0 || v < 0 || v > INT_MAX)
        return false;
    *ret = (int)v;
    return true;
}

static void print_result(const char *op, int r, double secs, Dcs *d) {
    StrBuf b;
    sb_init(&b);
    sb_add(&b, "{\"op\":");
    json_add_string(&b, op);
    sb_addf(&b, ",\"result\":%d,\"seconds\":%.3f", r, secs);
    if (r < 0) {
        sb_add(&b, ",\"error\":");
        json_add_string(&b, dcs_error(d));
    }
    sb_addc(&b, '}');
    puts(b.s);
    fflush(stdout);
    sb_free(&b);
}

static char *cluster_json(const Cluster *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "revision", (double)c->revision);
    if (c->has_initialize)
        cJSON_AddStringToObject(o, "initialize", c->initialize);
    if (c->leader) {
        cJSON_AddStringToObject(o, "leader", c->leader->name);
        cJSON_AddStringToObject(o, "leader_session", c->leader->session ? c->leader->session : "");
        if (c->leader->corrupt)
            cJSON_AddBoolToObject(o, "leader_unknown_holder", true);
    }
    cJSON *m = cJSON_AddObjectToObject(o, "members");
    for (size_t i = 0; i < c->n_members; i++)
        cJSON_AddItemToObject(m, c->members[i].name, cJSON_Duplicate(c->members[i].data, true));
    if (c->config)
        cJSON_AddItemToObject(o, "config", cJSON_Duplicate(c->config, true));
    if (!failover_is_empty(&c->failover)) {
        cJSON *f = cJSON_AddObjectToObject(o, "failover");
        if (c->failover.leader)
            cJSON_AddStringToObject(f, "leader", c->failover.leader);
        if (c->failover.candidate)
            cJSON_AddStringToObject(f, "member", c->failover.candidate);
        if (c->failover.scheduled_at)
            cJSON_AddStringToObject(f, "scheduled_at", c->failover.scheduled_at);
    }
    if (c->sync.leader) {
        cJSON *s = cJSON_AddObjectToObject(o, "sync");
        cJSON_AddStringToObject(s, "leader", c->sync.leader);
        cJSON_AddNumberToObject(s, "quorum", (double)c->sync.quorum);
        cJSON *arr = cJSON_AddArrayToObject(s, "members");
        for (size_t i = 0; i < c->sync.members.n; i++)
            cJSON_AddItemToArray(arr, cJSON_CreateString(c->sync.members.v[i]));
    }
    if (c->has_history)
        cJSON_AddItemToObject(o, "history", cJSON_Duplicate(c->history, true));
    cJSON_AddNumberToObject(o, "timeline", (double)cluster_timeline(c));
    if (c->status.has_optime)
        cJSON_AddNumberToObject(o, "optime", (double)c->status.optime);
    if (c->status.slots)
        cJSON_AddItemToObject(o, "slots", cJSON_Duplicate(c->status.slots, true));
    if (c->status.retain_slots.n) {
        cJSON *arr = cJSON_AddArrayToObject(o, "retain_slots");
        for (size_t i = 0; i < c->status.retain_slots.n; i++)
            cJSON_AddItemToArray(arr, cJSON_CreateString(c->status.retain_slots.v[i]));
    }
    if (c->failsafe)
        cJSON_AddItemToObject(o, "failsafe", cJSON_Duplicate(c->failsafe, true));
    char *s = json_dumps(o, false);
    cJSON_Delete(o);
    return s;
}

static char *member_json(const PghaConfig *cfg, const char *role, const char *state, long long xlog) {
    Member m = {0};
    _cleanup_free_ char *host = NULL;
    int port = 5432;
    (void)parse_host_port(cfg->postgresql.connect_address ? cfg->postgresql.connect_address : cfg->postgresql.listen,
                          5432, &host, &port);
    m.conn_url = xasprintf("postgres://%s:%d/%s", host ? host : "127.0.0.1", port, cfg->postgresql.database);
    m.api_url = xasprintf("http://%s/patroni", cfg->restapi.connect_address);
    m.state = xstrdup(state);
    m.role = xstrdup(role);
    m.has_xlog_location = xlog >= 0;
    m.xlog_location = xlog;
    m.has_timeline = true;
    m.timeline = 1;
    if (strcmp(role, "replica") == 0)
        m.replication_state = xstrdup("streaming");
    char *s = cluster_encode_member(&m);
    member_free_contents(&m);
    return s;
}

static void wake_cb(void *ud) {
    (void)ud;
    printf("{\"wake\":%.3f}\n", now_s());
    fflush(stdout);
}

static void sleep_until_stop(double seconds) {
    for (double t = 0; t < seconds && !stop; t += 0.05)
        usleep(50 * 1000);
}

int main(int argc, char **argv) {
    int ttl = 10, loop_wait = 2, retry_timeout = 3;
    static const struct option opts[] = {{"ttl", required_argument, NULL, 't'},
                                         {"loop-wait", required_argument, NULL, 'l'},
                                         {"retry-timeout", required_argument, NULL, 'r'},
                                         {0}};
    int c;
    bool ok = true;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case 't': ok = int_arg(optarg, &ttl); break;
        case 'l': ok = int_arg(optarg, &loop_wait); break;
        case 'r': ok = int_arg(optarg, &retry_timeout); break;
        default: return 2;
        }
        if (!ok) {
            fprintf(stderr, "dcs-tool: %s is not a valid number of seconds\n", optarg);
            return 2;
        }
    }
    if (argc - optind < 2) {
        fprintf(stderr, "usage: dcs-tool [--ttl N --loop-wait N --retry-timeout N] CONFIG COMMAND [ARGS]\n");
        return 2;
    }
    const char *cmd = argv[optind + 1];
    char **args = argv + optind + 2;
    int nargs = argc - optind - 2;
    /* the commands that run for a while take SECONDS first */
    double secs = 0;
    bool timed = strcmp(cmd, "race") == 0 || strcmp(cmd, "hold") == 0 || strcmp(cmd, "member") == 0 ||
                 strcmp(cmd, "watch") == 0 || strcmp(cmd, "steady") == 0;
    if (timed && nargs >= 1 && (parse_double(args[0], &secs) < 0 || secs < 0)) {
        fprintf(stderr, "dcs-tool: %s is not a valid number of seconds\n", args[0]);
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    LogSettings ls = {.level = getenv("DCS_TOOL_DEBUG") ? LOG_DEBUG : LOG_WARNING, .file_num = -1, .mode = -1};
    log_configure(&ls);

    CfgSource src;
    cfg_source_init(&src, argv[optind], NULL, NULL);
    PghaConfig cfg;
    CfgDiag diag = {0};
    if (config_load(&src, &cfg, &diag) < 0) {
        cfg_diag_log(&diag);
        return 2;
    }
    cfg_diag_clear(&diag);
    char *err = NULL;
    Dcs *d = dcs_new(&cfg, &err);
    if (!d) {
        fprintf(stderr, "dcs-tool: %s\n", err);
        return 2;
    }
    dcs_set_timings(d, ttl, loop_wait, retry_timeout);
    int rc = 0;
    usec_t t0 = now_monotonic();
    int r = dcs_connect(d);
    if (r < 0 && strcmp(cmd, "ops") != 0) {
        fprintf(stderr, "dcs-tool: %s\n", dcs_error(d));
        rc = 1;
        goto out;
    }
    if (strcmp(cmd, "ops") == 0)
        print_result("connect", r, (double)(now_monotonic() - t0) / 1e6, d);

    if (strcmp(cmd, "race") == 0 && nargs >= 1) {
        r = dcs_attempt_to_acquire_leader(d);
        printf("{\"won\":%s,\"result\":%d,\"t\":%.3f}\n", r == 1 ? "true" : "false", r, now_s());
        fflush(stdout);
        usec_t end = now_monotonic() + (usec_t)(secs * 1e6);
        while (r == 1 && !stop && now_monotonic() < end) {
            sleep_until_stop(loop_wait);
            Cluster *cl = NULL;
            if (dcs_read_cluster(d, false, &cl) < 0) {
                print_result("update_leader", -1, 0, d);
                continue;
            }
            int u = dcs_update_leader(d, cl);
            cluster_free(cl);
            print_result("update_leader", u, 0, d);
        }
    } else if (strcmp(cmd, "hold") == 0 && nargs >= 2) {
        r = dcs_attempt_to_acquire_leader(d);
        bool leader = r == 1;
        _cleanup_free_ char *mj = member_json(&cfg, leader ? "primary" : "replica", args[1], 50331648);
        int t = dcs_touch_member(d, mj);
        printf("{\"leader\":%s,\"member\":%d,\"lease\":\"%lld\",\"t\":%.3f}\n", leader ? "true" : "false", t,
               dcs_lease_id(d), now_s());
        fflush(stdout);
        usec_t end = now_monotonic() + (usec_t)(secs * 1e6);
        while (!stop && now_monotonic() < end) {
            sleep_until_stop(loop_wait);
            Cluster *cl = NULL;
            if (dcs_get_cluster(d, &cl) == 0) {
                if (leader)
                    (void)dcs_update_leader(d, cl);
                else
                    (void)dcs_refresh_lease(d, false);
                (void)dcs_touch_member(d, mj);
                cluster_free(cl);
            }
        }
    } else if (strcmp(cmd, "member") == 0 && nargs >= 2) {
        r = dcs_touch_member(d, args[1]);
        print_result("touch_member", r, 0, d);
        usec_t end = now_monotonic() + (usec_t)(secs * 1e6);
        while (!stop && now_monotonic() < end) {
            sleep_until_stop(loop_wait);
            (void)dcs_refresh_lease(d, false);
        }
    } else if (strcmp(cmd, "watch") == 0 && nargs >= 1) {
        dcs_start_watch(d, wake_cb, NULL);
        usec_t end = now_monotonic() + (usec_t)(secs * 1e6);
        char *last = NULL;
        while (!stop && now_monotonic() < end) {
            Cluster *cl = NULL;
            if (dcs_get_cluster(d, &cl) == 0) {
                char *j = cluster_json(cl);
                cluster_free(cl);
                if (!streq(j, last)) {
                    printf("{\"t\":%.3f,\"view\":%s}\n", now_s(), j);
                    fflush(stdout);
                    free(last);
                    last = j;
                } else {
                    free(j);
                }
            } else {
                printf("{\"t\":%.3f,\"error\":\"%s\"}\n", now_s(), "cache not ready");
                fflush(stdout);
            }
            usleep(20 * 1000);
        }
        free(last);
        DcsStats st;
        dcs_get_stats(d, &st);
        printf("{\"watch_events\":%llu,\"watch_reconnects\":%llu}\n", st.watch_events, st.watch_reconnects);
        dcs_stop_watch(d);
    } else if (strcmp(cmd, "cluster") == 0) {
        Cluster *cl = NULL;
        r = dcs_read_cluster(d, true, &cl);
        if (r < 0) {
            fprintf(stderr, "dcs-tool: %s\n", dcs_error(d));
            rc = 1;
        } else {
            char *j = cluster_json(cl);
            puts(j);
            free(j);
            cluster_free(cl);
        }
    } else if (strcmp(cmd, "put") == 0 && nargs >= 2) {
        r = dcs_put_raw(d, args[0], args[1], false);
        print_result("put", r, 0, d);
        rc = r < 0;
    } else if (strcmp(cmd, "get") == 0 && nargs >= 1) {
        char *v = NULL;
        long long rev = 0;
        r = dcs_get_raw(d, args[0], &v, &rev);
        if (r == 1)
            printf("%s\n", v);
        free(v);
        rc = r == 1 ? 0 : 1;
    } else if (strcmp(cmd, "delete") == 0 && nargs >= 1) {
        r = dcs_delete_raw(d, args[0]);
        print_result("delete", r, 0, d);
    } else if (strcmp(cmd, "ops") == 0) {
        struct {
            const char *name;
        } ops[] = {{"read_cluster"}, {"acquire"},    {"update_leader"}, {"touch_member"},
                   {"initialize"},   {"set_config"}, {"set_failover"},  {"set_sync"},
                   {"set_history"},  {"set_status"}, {"delete_leader"}, {"cancel_initialization"}};
        for (size_t i = 0; i < ELEMENTSOF(ops); i++) {
            usec_t t = now_monotonic();
            Cluster *cl = NULL;
            const char *op = ops[i].name;
            if (strcmp(op, "read_cluster") == 0) {
                r = dcs_read_cluster(d, false, &cl);
            } else if (strcmp(op, "acquire") == 0) {
                r = dcs_attempt_to_acquire_leader(d);
            } else if (strcmp(op, "update_leader") == 0) {
                r = dcs_read_cluster(d, false, &cl);
                if (r >= 0)
                    r = dcs_update_leader(d, cl);
            } else if (strcmp(op, "touch_member") == 0) {
                _cleanup_free_ char *mj = member_json(&cfg, "primary", "running", (long long)now_monotonic());
                r = dcs_touch_member(d, mj);
            } else if (strcmp(op, "initialize") == 0) {
                r = dcs_initialize(d, false, "7401234567890123456");
            } else if (strcmp(op, "set_config") == 0) {
                r = dcs_set_config(d, "{\"ttl\":10,\"loop_wait\":2,\"retry_timeout\":3}", 0);
            } else if (strcmp(op, "set_failover") == 0) {
                r = dcs_set_failover(d, "{}", 0);
            } else if (strcmp(op, "set_sync") == 0) {
                _cleanup_free_ char *sj = cluster_encode_sync(cfg.name, 0, NULL);
                r = dcs_set_sync_state(d, sj, 0, NULL);
            } else if (strcmp(op, "set_history") == 0) {
                r = dcs_set_history(d, "[]");
            } else if (strcmp(op, "set_status") == 0) {
                _cleanup_free_ char *sj = cluster_encode_status(50331648, NULL, NULL);
                r = dcs_set_status(d, sj);
            } else if (strcmp(op, "delete_leader") == 0) {
                r = dcs_delete_leader(d);
            } else if (strcmp(op, "cancel_initialization") == 0) {
                r = dcs_cancel_initialization(d);
            }
            cluster_free(cl);
            print_result(op, r, (double)(now_monotonic() - t) / 1e6, d);
            if (r < 0)
                rc = 1;
        }
    } else if (strcmp(cmd, "steady") == 0 && nargs >= 2) {
        bool leader = strcmp(args[1], "leader") == 0;
        dcs_start_watch(d, NULL, NULL);
        if (leader && dcs_attempt_to_acquire_leader(d) != 1) {
            fprintf(stderr, "dcs-tool: could not take the leader key: %s\n", dcs_error(d));
            rc = 1;
            goto out;
        }
        DcsStats before;
        dcs_get_stats(d, &before);
        usec_t start = now_monotonic(), end = start + (usec_t)(secs * 1e6);
        long long xlog = 50331648;
        unsigned loops = 0;
        while (!stop && now_monotonic() < end) {
            Cluster *cl = NULL;
            if (dcs_get_cluster(d, &cl) == 0) {
                if (leader)
                    (void)dcs_update_leader(d, cl);
                else
                    (void)dcs_refresh_lease(d, false);
                xlog += 8192; /* a busy cluster: the position moves every loop */
                _cleanup_free_ char *mj = member_json(&cfg, leader ? "primary" : "replica", "running", xlog);
                (void)dcs_touch_member(d, mj);
                cluster_free(cl);
            }
            loops++;
            sleep_until_stop(loop_wait);
        }
        DcsStats after;
        dcs_get_stats(d, &after);
        double el = (double)(now_monotonic() - start) / 1e6;
        printf("{\"role\":\"%s\",\"seconds\":%.1f,\"loops\":%u,\"requests\":%llu,\"bytes_sent\":%llu,"
               "\"bytes_received\":%llu,\"requests_per_s\":%.3f,\"bytes_per_s\":%.1f,\"requests_per_loop\":%.2f}\n",
               args[1], el, loops, after.requests - before.requests, after.bytes_sent - before.bytes_sent,
               after.bytes_received - before.bytes_received, (double)(after.requests - before.requests) / el,
               (double)(after.bytes_sent - before.bytes_sent + after.bytes_received - before.bytes_received) / el,
               loops ? (double)(after.requests - before.requests) / loops : 0.0);
        if (leader)
            (void)dcs_delete_leader(d);
        dcs_stop_watch(d);
    } else {
        fprintf(stderr, "dcs-tool: unknown command or missing arguments: %s\n", cmd);
        rc = 2;
    }
out:
    dcs_free(d);
    config_free(&cfg);
    cfg_source_free(&src);
    free(err);
    return rc;
}
