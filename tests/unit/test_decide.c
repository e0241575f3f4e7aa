/* decide() and is_healthiest_node() (spec §4.2-4.8, DESIGN.md "The decision is a pure function"):
 * one table per decision area. Every row is a complete observation — the DCS keys exactly as etcd
 * holds them, the local PostgreSQL state, the peers' answers to GET /patroni, patroni.yml and
 * /config — and the expected action, demote mode, target and a substring of the summary line.
 * Time is injected (Observation.now); nothing sleeps, nothing touches the network. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "unit_helpers.h"

#define cluster_of(keys, max) cluster_of_keys(keys, max, BASE, 10)

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "agent/decide.h"
#include "agent/probe.h"
#include "common/config.h"
#include "common/util.h"
#include "common/yamltree.h"
#include "dcs/cluster.h"

/* ------------------------------------------------------------------------------------------------
 * fixtures */

#define BASE "/service/demo"
#define SYSID "7401234567890123456"
#define OTHER_SYSID "7409999999999999999"
#define NOW ((usec_t)1748772000 * USEC_PER_SEC)

/* A member key as Patroni 4.0.6 writes it (spec §1.2). */
#define MEMBER(host, state, role, extra)                                             \
    "{\"conn_url\":\"postgres://" host ":5432/postgres\",\"api_url\":\"http://" host \
    ":8008/patroni\",\"state\":\"" state "\",\"role\":\"" role "\",\"version\":\"4.0.6\"" extra "}"

/* clang-format off */
#define K_INIT {"initialize", SYSID, 0}
#define K_LEADER(n) {"leader", n}
#define K_LEADER_NUL {"leader", "node1\0junk", 10}
#define K_M1 {"members/node1", MEMBER("10.0.0.1", "running", "primary", ",\"xlog_location\":5000,\"timeline\":1")}
#define K_M2 {"members/node2", MEMBER("10.0.0.2", "running", "replica", ",\"xlog_location\":5000,\"timeline\":1")}
#define K_M3 {"members/node3", MEMBER("10.0.0.3", "running", "replica", ",\"xlog_location\":5000,\"timeline\":1")}
#define K_STATUS(optime) {"status", "{\"optime\":" #optime "}"}
#define K_FAILOVER(json) {"failover", json}
#define K_SYNC(json) {"sync", json}
#define K_HISTORY_TL3 {"history", "[[1,100,\"no recovery target specified\"],[2,200,\"no recovery target specified\"]]"}
/* clang-format on */

/* The usual views: node1 holds the lock; or nobody does (node1's member key expired with it). */
#define LOCKED K_INIT, K_LEADER("node1"), K_M1, K_M2, K_M3, K_STATUS(5000)
#define UNLOCKED K_INIT, K_M2, K_M3, K_STATUS(5000)

/* Local PostgreSQL states. */
#define PG_REPLICA_ANY_TL .sysid = SYSID, .pg_running = true, .pg_ready = true, .in_recovery = true
#define PG_PRIMARY_ANY_TL .sysid = SYSID, .pg_running = true, .pg_ready = true, .in_recovery = false
#define PG_REPLICA PG_REPLICA_ANY_TL, .timeline = 1
#define PG_PRIMARY PG_PRIMARY_ANY_TL, .timeline = 1
#define PG_STOPPED .sysid = SYSID, .timeline = 1
#define PG_STARTING .sysid = SYSID, .pg_running = true, .pg_starting = true, .timeline = 1

/* A peer's answer to GET /patroni: a reachable replica with the default failover_priority. */
/* clang-format off */
#define PEER(n, wal) {.name = n, .reachable = true, .wal_position = wal, .failover_priority = 1}
/* clang-format on */

/* Inputs shared by both tables. */
typedef struct Input {
    const char *me;          /* default node2 */
    const char *local_yaml;  /* appended to patroni.yml (tags, watchdog) */
    bool no_bootstrap;       /* patroni.yml without a bootstrap section */
    const char *dyn_yaml;    /* the dynamic configuration; NULL = defaults */
    bool no_dcs;             /* the DCS could not be read */
    Kv keys[12];             /* relative key -> value, as etcd holds them */
    const char *last_leader; /* leader of the last locked view, NULL = none */
    LocalState local;
    PeerStatus peers[4]; /* terminated by a NULL name */
    bool stale;
    bool failsafe_survived;      /* every /failsafe member accepted our POST this cycle */
    const char *failsafe_leader; /* a leader whose POST /failsafe we accepted less than ttl ago */
} Input;

typedef struct DecideRow {
    const char *desc;
    Input in;
    HaAction action;
    DemoteMode mode;    /* checked for HA_DEMOTE and HA_SWITCHOVER */
    bool as_primary;    /* checked for HA_START */
    const char *target; /* NULL: not checked; "" = nobody */
    const char *msg;    /* substring of the message; NULL: not checked */
} DecideRow;

typedef struct HealthiestRow {
    const char *desc;
    Input in;
    bool healthy;
    const char *why; /* substring of the reason when not healthy; NULL: not checked */
} HealthiestRow;

/* Everything one row needs, built from its Input and freed afterwards. */
typedef struct World {
    PghaConfig cfg;
    DynConfig dyn;
    Cluster *cluster;
    Cluster *last_locked;
    Observation o;
} World;

static void load_member_config(PghaConfig *cfg, const Input *in) {
    _cleanup_free_ char *extra = xasprintf("%s%s", in->no_bootstrap ? "" : "bootstrap:\n  dcs:\n    ttl: 30\n",
                                           in->local_yaml ? in->local_yaml : "");
    load_config(cfg, in->me ? in->me : "node2", extra);
}

static void world_build(World *w, const Input *in) {
    *w = (World){0};
    load_member_config(&w->cfg, in);
    load_dyn(&w->dyn, in->dyn_yaml);
    if (!in->no_dcs)
        w->cluster = cluster_of(in->keys, ELEMENTSOF(in->keys));
    if (in->last_leader) {
        const Kv keys[] = {K_INIT, {"leader", in->last_leader, 0}};
        w->last_locked = cluster_of(keys, ELEMENTSOF(keys));
    }
    size_t n_peers = 0;
    while (n_peers < ELEMENTSOF(in->peers) && in->peers[n_peers].name)
        n_peers++;
    w->o = (Observation){
        .cfg = &w->cfg,
        .dyn = &w->dyn,
        .cluster = w->cluster,
        .last_locked = w->last_locked,
        .local = &in->local,
        .peers = in->peers,
        .n_peers = n_peers,
        .peers_probed = n_peers > 0,
        .stale_tick = in->stale,
        .failsafe_survived = in->failsafe_survived,
        .failsafe_leader = in->failsafe_leader,
        .now = NOW,
    };
}

static void world_free(World *w) {
    cluster_free(w->cluster);
    cluster_free(w->last_locked);
    dyn_config_free(&w->dyn);
    config_free(&w->cfg);
}

static bool check_decision(const DecideRow *r, const Decision *d) {
    if (d->action != r->action)
        return false;
    if ((r->action == HA_DEMOTE || r->action == HA_SWITCHOVER) && d->demote_mode != r->mode)
        return false;
    if (r->action == HA_START && d->as_primary != r->as_primary)
        return false;
    if (r->target && strcmp(d->target, r->target) != 0)
        return false;
    if (r->msg && !strstr(d->message, r->msg))
        return false;
    return true;
}

static void run_decide_rows(const DecideRow *rows, size_t n) {
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        const DecideRow *r = &rows[i];
        World w;
        world_build(&w, &r->in);
        Decision d;
        decide(&w.o, &d);
        if (!check_decision(r, &d)) {
            failed++;
            print_error("row %zu FAILED: %s\n"
                        "   expected: action=%s mode=%s as_primary=%d target=%s message~\"%s\"\n"
                        "   got:      action=%s mode=%s as_primary=%d target=\"%s\" message=\"%s\"\n",
                        i, r->desc, ha_action_name(r->action), demote_mode_name(r->mode), r->as_primary,
                        r->target ? r->target : "(any)", r->msg ? r->msg : "(any)", ha_action_name(d.action),
                        demote_mode_name(d.demote_mode), d.as_primary, d.target, d.message);
        }
        world_free(&w);
    }
    assert_int_equal(failed, 0);
}

static void run_healthiest_rows(const HealthiestRow *rows, size_t n) {
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        const HealthiestRow *r = &rows[i];
        World w;
        world_build(&w, &r->in);
        char why[256];
        bool got = is_healthiest_node(&w.o, why, sizeof why);
        if (got != r->healthy || (!got && r->why && !strstr(why, r->why))) {
            failed++;
            print_error("row %zu FAILED: %s\n   expected: %s%s%s\n   got:      %s (%s)\n", i, r->desc,
                        r->healthy ? "healthiest" : "not healthiest", r->why ? ", why~" : "", r->why ? r->why : "",
                        got ? "healthiest" : "not healthiest", why);
        }
        world_free(&w);
    }
    assert_int_equal(failed, 0);
}

/* ------------------------------------------------------------------------------------------------
 * the stale tick and the DCS error path (§4.3 step 1 and 15) */

static const DecideRow tilt_and_dcs_rows[] = {
    {"stale tick: a replica only observes",
     {.keys = {LOCKED}, .local = {PG_REPLICA, .following = "node2"}, .stale = true},
     HA_NONE,
     0,
     false,
     "",
     "woke up late"},
    {"stale tick: a primary without the lock is not demoted on a stale view",
     {.keys = {LOCKED}, .local = {PG_PRIMARY}, .stale = true},
     HA_NONE,
     0,
     false,
     "",
     "woke up late"},
    {"stale tick wins over the DCS error path",
     {.no_dcs = true, .local = {PG_PRIMARY}, .stale = true},
     HA_NONE,
     0,
     false,
     NULL,
     "woke up late"},
    {"DCS unreachable, running primary -> demote offline",
     {.no_dcs = true, .local = {PG_PRIMARY}},
     HA_DEMOTE,
     DEMOTE_OFFLINE,
     false,
     NULL,
     "DCS is not accessible"},
    {"DCS unreachable, replica -> nothing",
     {.no_dcs = true, .local = {PG_REPLICA}},
     HA_NONE,
     0,
     false,
     NULL,
     "DCS is not accessible"},
    {"DCS unreachable, PostgreSQL stopped -> nothing",
     {.no_dcs = true, .local = {PG_STOPPED}},
     HA_NONE,
     0,
     false,
     NULL,
     "DCS is not accessible"},
    {"DCS unreachable, paused primary -> keeps running",
     {.no_dcs = true, .dyn_yaml = "pause: true\n", .local = {PG_PRIMARY}},
     HA_NONE,
     0,
     false,
     NULL,
     "PAUSE: DCS is not accessible"},
};

static void test_tilt_and_dcs_error(void **state) {
    (void)state;
    run_decide_rows(tilt_and_dcs_rows, ELEMENTSOF(tilt_and_dcs_rows));
}

/* ------------------------------------------------------------------------------------------------
 * A primary that does not answer or is still starting, without the lock or the DCS: fenced (issue 12,
 * findings 4 and 8); primary_start_timeout 0 fails over instead of starting the primary again (§4.8 recover) */

#define PG_UNANSWERING_PRIMARY PG_STARTING, .maybe_primary = true

static const DecideRow fencing_rows[] = {
    {"DCS unreachable, a primary whose status query fails -> fenced (immediate)",
     {.no_dcs = true, .local = {PG_UNANSWERING_PRIMARY}},
     HA_DEMOTE,
     DEMOTE_IMMEDIATE_NOLOCK,
     false,
     NULL,
     "DCS is not accessible"},
    {"DCS unreachable, a replica being promoted -> fenced (immediate)",
     {.no_dcs = true, .local = {PG_REPLICA, .maybe_primary = true}},
     HA_DEMOTE,
     DEMOTE_IMMEDIATE_NOLOCK,
     false,
     NULL,
     "promoting"},
    {"DCS unreachable, paused, a replica being promoted -> left alone",
     {.no_dcs = true, .dyn_yaml = "pause: true\n", .local = {PG_REPLICA, .maybe_primary = true}},
     HA_NONE,
     0,
     false,
     NULL,
     "PAUSE: DCS is not accessible"},
    {"DCS unreachable, a replica starting -> nothing",
     {.no_dcs = true, .local = {PG_STARTING}},
     HA_NONE,
     0,
     false,
     NULL,
     "DCS is not accessible"},
    {"DCS unreachable, paused, a primary that does not answer -> left alone",
     {.no_dcs = true, .dyn_yaml = "pause: true\n", .local = {PG_UNANSWERING_PRIMARY}},
     HA_NONE,
     0,
     false,
     NULL,
     "PAUSE: DCS is not accessible"},
    {"another member holds the lock, a primary whose status query fails -> fenced",
     {.keys = {LOCKED}, .local = {PG_UNANSWERING_PRIMARY}},
     HA_DEMOTE,
     DEMOTE_IMMEDIATE_NOLOCK,
     false,
     "node1",
     "do not have the lock"},
    {"another member holds the lock, PostgreSQL still starting as a primary -> stopped",
     {.keys = {LOCKED}, .local = {PG_UNANSWERING_PRIMARY, .start_timed_out = false}},
     HA_DEMOTE,
     DEMOTE_IMMEDIATE_NOLOCK,
     false,
     "node1",
     "starting"},
    {"nobody holds the lock (it expired), PostgreSQL starting as a primary -> stopped",
     {.keys = {UNLOCKED}, .local = {PG_UNANSWERING_PRIMARY}},
     HA_DEMOTE,
     DEMOTE_IMMEDIATE_NOLOCK,
     false,
     "",
     NULL},
    {"another member holds the lock, paused, starting as a primary -> left alone",
     {.dyn_yaml = "pause: true\n", .keys = {LOCKED}, .local = {PG_UNANSWERING_PRIMARY}},
     HA_NONE,
     0,
     false,
     NULL,
     "starting"},
    {"another member holds the lock, a replica starting -> nothing",
     {.keys = {LOCKED}, .local = {PG_STARTING}},
     HA_NONE,
     0,
     false,
     NULL,
     "starting"},
    {"a restart in progress on a primary that lost the lock -> fenced",
     {.keys = {LOCKED}, .local = {PG_UNANSWERING_PRIMARY, .async_action = "restart"}},
     HA_DEMOTE,
     DEMOTE_IMMEDIATE_NOLOCK,
     false,
     NULL,
     "without the lock"},
    {"primary_start_timeout 0: the stopped primary fails over when a replica can take over",
     {.me = "node1",
      .dyn_yaml = "primary_start_timeout: 0\n",
      .keys = {LOCKED},
      .local = {PG_STOPPED, .was_primary = true},
      .peers = {PEER("node2", 5000)}},
     HA_DEMOTE,
     DEMOTE_IMMEDIATE,
     false,
     NULL,
     "fail over after a crash"},
    {"primary_start_timeout 0, nobody can take over -> start the primary again",
     {.me = "node1",
      .dyn_yaml = "primary_start_timeout: 0\n",
      .keys = {LOCKED},
      .local = {PG_STOPPED, .was_primary = true},
      .peers = {{.name = "node2", .reachable = false, .failover_priority = 1}}},
     HA_START,
     0,
     true,
     NULL,
     "starting primary after failure"},
    {"primary_start_timeout 0, paused -> nothing (the key is released in pause)",
     {.me = "node1",
      .dyn_yaml = "primary_start_timeout: 0\npause: true\n",
      .keys = {LOCKED},
      .local = {PG_STOPPED, .was_primary = true},
      .peers = {PEER("node2", 5000)}},
     HA_RELEASE_LOCK,
     0,
     false,
     NULL,
     NULL},
};

static void test_fencing_rows(void **state) {
    (void)state;
    run_decide_rows(fencing_rows, ELEMENTSOF(fencing_rows));
}

/* ------------------------------------------------------------------------------------------------
 * a long action is running (§4.3 step 5) */

static const DecideRow long_action_rows[] = {
    {"long action on the lock holder -> renew the lock only",
     {.me = "node1", .keys = {LOCKED}, .local = {PG_PRIMARY, .async_action = "restart"}},
     HA_UPDATE_LOCK_ONLY,
     0,
     false,
     NULL,
     "restart in progress"},
    {"long action on a paused lock holder -> renew the lock only",
     {.me = "node1", .dyn_yaml = "pause: true\n", .keys = {LOCKED}, .local = {PG_PRIMARY, .async_action = "restart"}},
     HA_UPDATE_LOCK_ONLY,
     0,
     false,
     NULL,
     "restart in progress"},
    {"long action on a primary without the lock -> demote immediate-nolock",
     {.keys = {LOCKED}, .local = {PG_PRIMARY, .async_action = "restart"}},
     HA_DEMOTE,
     DEMOTE_IMMEDIATE_NOLOCK,
     false,
     NULL,
     "restart in progress"},
    {"long action on a paused primary without the lock -> nothing",
     {.dyn_yaml = "pause: true\n", .keys = {LOCKED}, .local = {PG_PRIMARY, .async_action = "restart"}},
     HA_NONE,
     0,
     false,
     NULL,
     "restart in progress"},
    {"long action on a replica -> nothing",
     {.keys = {LOCKED}, .local = {PG_REPLICA, .async_action = "rewind"}},
     HA_NONE,
     0,
     false,
     NULL,
     "rewind in progress"},
    {"clone running on an empty data directory -> nothing",
     {.keys = {LOCKED}, .local = {.data_dir_empty = true, .async_action = "clone"}},
     HA_NONE,
     0,
     false,
     NULL,
     "clone in progress"},
    {"bootstrap running: the new primary has no leader key yet and is not demoted",
     {.keys = {{"initialize", ""}}, .local = {PG_PRIMARY, .async_action = "bootstrap"}},
     HA_NONE,
     0,
     false,
     NULL,
     "bootstrap in progress"},
};

static void test_long_action(void **state) {
    (void)state;
    run_decide_rows(long_action_rows, ELEMENTSOF(long_action_rows));
}

/* ------------------------------------------------------------------------------------------------
 * empty data directory: bootstrap decisions B1-B6 (§4.2) */

static const DecideRow bootstrap_rows[] = {
    {"B1: data directory not accessible -> report, no action",
     {.keys = {LOCKED}, .local = {.data_dir_error = true}},
     HA_NONE,
     0,
     false,
     NULL,
     "data directory is not accessible"},
    {"empty data directory on the lock holder -> release the leader key first",
     {.me = "node1", .keys = {LOCKED}, .local = {.data_dir_empty = true}},
     HA_RELEASE_LOCK,
     0,
     false,
     NULL,
     "data directory is empty"},
    {"B2: paused with an empty data directory -> no action",
     {.dyn_yaml = "pause: true\n", .keys = {LOCKED}, .local = {.data_dir_empty = true}},
     HA_NONE,
     0,
     false,
     NULL,
     "running with empty data directory"},
    {"B2: paused, unlocked, no initialize -> no bootstrap",
     {.dyn_yaml = "pause: true\n", .local = {.data_dir_empty = true}},
     HA_NONE,
     0,
     false,
     NULL,
     "running with empty data directory"},
    {"B3: unlocked, no initialize key -> race for /initialize",
     {.local = {.data_dir_empty = true}},
     HA_BOOTSTRAP,
     0,
     false,
     NULL,
     "bootstrap"},
    {"B3: other members but no leader and no initialize -> race",
     {.keys = {K_M3}, .local = {.data_dir_empty = true}},
     HA_BOOTSTRAP,
     0,
     false,
     NULL,
     NULL},
    {"B3: a nofailover node never bootstraps",
     {.local_yaml = "tags:\n  nofailover: true\n", .local = {.data_dir_empty = true}},
     HA_NONE,
     0,
     false,
     NULL,
     "waiting for leader to bootstrap"},
    {"B3: failover_priority 0 behaves as nofailover",
     {.local_yaml = "tags:\n  failover_priority: 0\n", .local = {.data_dir_empty = true}},
     HA_NONE,
     0,
     false,
     NULL,
     "waiting for leader to bootstrap"},
    {"B3: watchdog required but unusable -> never bootstraps (it could not lead the new cluster)",
     {.local_yaml = "watchdog:\n  mode: required\n", .local = {.data_dir_empty = true, .watchdog_failed = true}},
     HA_NONE,
     0,
     false,
     NULL,
     "waiting for leader to bootstrap"},
    {"B3: watchdog automatic and unusable -> bootstraps all the same",
     {.local_yaml = "watchdog:\n  mode: automatic\n", .local = {.data_dir_empty = true, .watchdog_failed = true}},
     HA_BOOTSTRAP,
     0,
     false,
     NULL,
     "bootstrap"},
    {"B3: no bootstrap section in patroni.yml -> never bootstraps",
     {.no_bootstrap = true, .local = {.data_dir_empty = true}},
     HA_NONE,
     0,
     false,
     NULL,
     "waiting for leader to bootstrap"},
    {"B3 lost: initialize is \"\" (another node won the race) -> wait",
     {.keys = {{"initialize", ""}}, .local = {.data_dir_empty = true}},
     HA_NONE,
     0,
     false,
     NULL,
     "waiting for leader to bootstrap"},
    {"B6: initialized cluster without a leader -> wait",
     {.keys = {UNLOCKED}, .local = {.data_dir_empty = true}},
     HA_NONE,
     0,
     false,
     NULL,
     "waiting for leader to bootstrap"},
    {"B5: initialized cluster without a leader, a no_leader replica method -> clone without leader",
     {.keys = {UNLOCKED}, .local = {.data_dir_empty = true, .clone_without_leader = true}},
     HA_CLONE,
     0,
     false,
     "",
     "trying to bootstrap (without leader)"},
    {"B5: a no_leader method, no initialize key, not allowed to bootstrap -> clone without leader",
     {.no_bootstrap = true, .local = {.data_dir_empty = true, .clone_without_leader = true}},
     HA_CLONE,
     0,
     false,
     "",
     "(without leader)"},
    {"B5: a no_leader method but a bootstrap is under way (initialize \"\") -> wait",
     {.keys = {{"initialize", ""}}, .local = {.data_dir_empty = true, .clone_without_leader = true}},
     HA_NONE,
     0,
     false,
     NULL,
     "waiting for leader to bootstrap"},
    {"B4: a leader exists -> clone from the leader",
     {.keys = {LOCKED}, .local = {.data_dir_empty = true}},
     HA_CLONE,
     0,
     false,
     "node1",
     "leader node1"},
    {"B4: clone from a running clonefrom member",
     {.keys = {K_INIT,
               K_LEADER("node1"),
               K_M1,
               {"members/node3", MEMBER("10.0.0.3", "running", "replica", ",\"tags\":{\"clonefrom\":true}")}},
      .local = {.data_dir_empty = true}},
     HA_CLONE,
     0,
     false,
     "node3",
     "replica node3"},
    {"B4: a clonefrom member that is not running is not a source",
     {.keys = {K_INIT,
               K_LEADER("node1"),
               K_M1,
               {"members/node3", MEMBER("10.0.0.3", "stopped", "replica", ",\"tags\":{\"clonefrom\":true}")}},
      .local = {.data_dir_empty = true}},
     HA_CLONE,
     0,
     false,
     "node1",
     NULL},
    {"B4: a member without clonefrom is not a source",
     {.keys = {LOCKED}, .local = {.data_dir_empty = true}},
     HA_CLONE,
     0,
     false,
     "node1",
     NULL},
    {"B4: never clone from myself",
     {.me = "node3",
      .keys = {K_INIT,
               K_LEADER("node1"),
               K_M1,
               {"members/node3", MEMBER("10.0.0.3", "running", "replica", ",\"tags\":{\"clonefrom\":true}")}},
      .local = {.data_dir_empty = true}},
     HA_CLONE,
     0,
     false,
     "node1",
     NULL},
    {"B4: the clonefrom leader is the leader anyway",
     {.keys = {K_INIT,
               K_LEADER("node1"),
               {"members/node1", MEMBER("10.0.0.1", "running", "primary", ",\"tags\":{\"clonefrom\":true}")}},
      .local = {.data_dir_empty = true}},
     HA_CLONE,
     0,
     false,
     "node1",
     "leader node1"},
    {"B4: a nofailover node clones too",
     {.local_yaml = "tags:\n  nofailover: true\n", .keys = {LOCKED}, .local = {.data_dir_empty = true}},
     HA_CLONE,
     0,
     false,
     "node1",
     NULL},
};

static void test_bootstrap(void **state) {
    (void)state;
    run_decide_rows(bootstrap_rows, ELEMENTSOF(bootstrap_rows));
}

/* ------------------------------------------------------------------------------------------------
 * existing data directory: the system identifier checks (§4.2 step 4) */

static const DecideRow sysid_rows[] = {
    {"sysid in pg_control is invalid -> suggest reinitialize",
     {.keys = {LOCKED}, .local = {.sysid = "12345", .pg_running = false}},
     HA_NONE,
     0,
     false,
     NULL,
     "system ID is invalid; consider doing reinitialize"},
    {"sysid unknown -> suggest reinitialize",
     {.keys = {LOCKED}, .local = {.sysid = NULL}},
     HA_NONE,
     0,
     false,
     NULL,
     "system ID is invalid"},
    {"sysid differs from /initialize -> fatal",
     {.keys = {{"initialize", OTHER_SYSID}, K_LEADER("node1"), K_M1}, .local = {PG_REPLICA}},
     HA_FATAL,
     0,
     false,
     NULL,
     "system ID mismatch"},
    {"sysid differs, unlocked -> fatal",
     {.keys = {{"initialize", OTHER_SYSID}}, .local = {PG_PRIMARY}},
     HA_FATAL,
     0,
     false,
     NULL,
     OTHER_SYSID " != " SYSID},
    {"paused sysid mismatch on the lock holder -> release the leader key",
     {.me = "node1",
      .dyn_yaml = "pause: true\n",
      .keys = {{"initialize", OTHER_SYSID}, K_LEADER("node1"), K_M1},
      .local = {PG_PRIMARY}},
     HA_RELEASE_LOCK,
     0,
     false,
     NULL,
     "system ID mismatch"},
    {"paused sysid mismatch on another node -> warn only",
     {.dyn_yaml = "pause: true\n",
      .keys = {{"initialize", OTHER_SYSID}, K_LEADER("node1"), K_M1},
      .local = {PG_REPLICA}},
     HA_NONE,
     0,
     false,
     NULL,
     "system ID mismatch"},
    {"no initialize key, unlocked, PostgreSQL stopped -> publish our sysid",
     {.keys = {K_M3}, .local = {PG_STOPPED}},
     HA_WRITE_INITIALIZE,
     0,
     false,
     NULL,
     SYSID},
    {"no initialize key, unlocked, running primary -> publish our sysid",
     {.local = {PG_PRIMARY}},
     HA_WRITE_INITIALIZE,
     0,
     false,
     NULL,
     SYSID},
    {"no initialize key, unlocked, running replica -> fatal: start the primary first",
     {.local = {PG_REPLICA}},
     HA_FATAL,
     0,
     false,
     NULL,
     "start the primary first"},
    {"no initialize key, unlocked, running replica that has run here (cb_called) -> writes it back",
     {.local = {PG_REPLICA, .cb_called = true}},
     HA_WRITE_INITIALIZE,
     0,
     false,
     NULL,
     SYSID},
    {"no initialize key but paused -> nothing is written (no promotion in pause either)",
     {.dyn_yaml = "pause: true\n", .local = {PG_REPLICA}},
     HA_NONE,
     0,
     false,
     NULL,
     NULL},
    {"matching sysid on a locked cluster -> normal processing",
     {.keys = {LOCKED}, .local = {PG_REPLICA, .following = "node1"}},
     HA_NONE,
     0,
     false,
     "node1",
     "following a leader"},
};

static void test_sysid(void **state) {
    (void)state;
    run_decide_rows(sysid_rows, ELEMENTSOF(sysid_rows));
}

/* ------------------------------------------------------------------------------------------------
 * PostgreSQL not running (§4.3 step 10, §4.8 recover) and still starting (step 6) */

static const DecideRow pg_state_rows[] = {
    {"lock holder that was primary -> start as primary again",
     {.me = "node1", .keys = {LOCKED}, .local = {PG_STOPPED, .was_primary = true, .crashed = true}},
     HA_START,
     0,
     true,
     "",
     "starting primary after failure"},
    {"lock holder that was a replica -> start read-only, promotion follows next cycle",
     {.me = "node1", .keys = {LOCKED}, .local = {PG_STOPPED}},
     HA_START,
     0,
     false,
     "",
     "starting as readonly because i had the session lock"},
    {"replica stopped -> start following the leader",
     {.keys = {LOCKED}, .local = {PG_STOPPED}},
     HA_START,
     0,
     false,
     "node1",
     "following node1"},
    {"former primary stopped, someone else has the lock -> start as a replica of the leader",
     {.keys = {LOCKED}, .local = {PG_STOPPED, .was_primary = true}},
     HA_START,
     0,
     false,
     "node1",
     NULL},
    {"replicatefrom -> start following that member",
     {.local_yaml = "tags:\n  replicatefrom: node3\n", .keys = {LOCKED}, .local = {PG_STOPPED}},
     HA_START,
     0,
     false,
     "node3",
     NULL},
    {"nostream -> start following nobody",
     {.local_yaml = "tags:\n  nostream: true\n", .keys = {LOCKED}, .local = {PG_STOPPED}},
     HA_START,
     0,
     false,
     "",
     NULL},
    {"stopped, cluster unlocked -> start as a replica without upstream",
     {.keys = {UNLOCKED}, .local = {PG_STOPPED}},
     HA_START,
     0,
     false,
     "",
     "starting as a secondary"},
    {"paused, stopped lock holder -> release the leader key",
     {.me = "node1", .dyn_yaml = "pause: true\n", .keys = {LOCKED}, .local = {PG_STOPPED, .was_primary = true}},
     HA_RELEASE_LOCK,
     0,
     false,
     NULL,
     "PAUSE: "},
    {"paused, stopped replica -> nothing",
     {.dyn_yaml = "pause: true\n", .keys = {LOCKED}, .local = {PG_STOPPED}},
     HA_NONE,
     0,
     false,
     NULL,
     "PAUSE: postgres is not running"},
    {"paused, stopped by our own demotion (a switchover) -> start as a replica of the new leader",
     {.dyn_yaml = "pause: true\n", .keys = {LOCKED}, .local = {PG_STOPPED, .was_primary = true, .just_demoted = true}},
     HA_START,
     0,
     false,
     "node1",
     "PAUSE: starting after demotion following node1"},
    {"paused, demoted, nobody took the key yet -> start as a replica without upstream",
     {.dyn_yaml = "pause: true\n",
      .keys = {UNLOCKED},
      .local = {PG_STOPPED, .was_primary = true, .just_demoted = true}},
     HA_START,
     0,
     false,
     "",
     "PAUSE: starting after demotion"},
    {"starting lock holder -> renew the lock",
     {.me = "node1", .keys = {LOCKED}, .local = {PG_STARTING}},
     HA_UPDATE_LOCK_ONLY,
     0,
     false,
     NULL,
     "starting"},
    {"start timed out on the lock holder, a healthy replica exists -> demote immediate",
     {.me = "node1", .keys = {LOCKED}, .local = {PG_STARTING, .start_timed_out = true}, .peers = {PEER("node2", 5000)}},
     HA_DEMOTE,
     DEMOTE_IMMEDIATE,
     false,
     NULL,
     "timed out"},
    {"start timed out, but no member can take over -> keep waiting",
     {.me = "node1",
      .keys = {LOCKED},
      .local = {PG_STARTING, .start_timed_out = true},
      .peers = {{.name = "node2", .reachable = false, .failover_priority = 1},
                {.name = "node3", .reachable = true, .nofailover = true, .wal_position = 5000}}},
     HA_UPDATE_LOCK_ONLY,
     0,
     false,
     NULL,
     "failover is not possible"},
    {"start timed out, the only other member lags too far behind -> keep waiting",
     {.me = "node1",
      .keys = {K_INIT, K_LEADER("node1"), K_M1, K_M2, K_STATUS(50000000)},
      .local = {PG_STARTING, .start_timed_out = true},
      .peers = {PEER("node2", 5000)}},
     HA_UPDATE_LOCK_ONLY,
     0,
     false,
     NULL,
     "failover is not possible"},
    {"start timed out in pause -> keep waiting",
     {.me = "node1",
      .dyn_yaml = "pause: true\n",
      .keys = {LOCKED},
      .local = {PG_STARTING, .start_timed_out = true},
      .peers = {PEER("node2", 5000)}},
     HA_UPDATE_LOCK_ONLY,
     0,
     false,
     NULL,
     NULL},
    {"replica still starting -> nothing",
     {.keys = {LOCKED}, .local = {PG_STARTING}},
     HA_NONE,
     0,
     false,
     NULL,
     "starting"},
};

static void test_pg_not_running_or_starting(void **state) {
    (void)state;
    run_decide_rows(pg_state_rows, ELEMENTSOF(pg_state_rows));
}

/* ------------------------------------------------------------------------------------------------
 * table U: no leader key (§4.4) */

static const DecideRow table_u_rows[] = {
    {"U1: healthiest replica -> acquire the lock (and promote)",
     {.keys = {UNLOCKED}, .local = {PG_REPLICA, .wal_position = 5000}, .peers = {PEER("node3", 4000)}},
     HA_ACQUIRE_LOCK,
     0,
     false,
     NULL,
     "promoted self to leader by acquiring session lock"},
    {"U1: running primary (lock expired) -> acquire the lock",
     {.keys = {UNLOCKED}, .local = {PG_PRIMARY, .wal_position = 5000}, .peers = {PEER("node3", 4000)}},
     HA_ACQUIRE_LOCK,
     0,
     false,
     NULL,
     "acquired session lock as a leader"},
    {"U1: sole member, no peers -> acquire",
     {.keys = {K_INIT, K_M2}, .local = {PG_REPLICA, .wal_position = 5000}},
     HA_ACQUIRE_LOCK,
     0,
     false,
     NULL,
     NULL},
    {"U2 basis: a primary that is not the healthiest (timeline behind) demotes immediate-nolock",
     {.keys = {UNLOCKED, K_HISTORY_TL3}, .local = {PG_PRIMARY_ANY_TL, .timeline = 2, .wal_position = 5000}},
     HA_DEMOTE,
     DEMOTE_IMMEDIATE_NOLOCK,
     false,
     NULL,
     "not the healthiest"},
    {"U3: a peer is ahead -> no acquire",
     {.keys = {UNLOCKED}, .local = {PG_REPLICA, .wal_position = 5000}, .peers = {PEER("node3", 6000)}},
     HA_NONE,
     0,
     false,
     NULL,
     "not the healthiest"},
    {"U3: nofailover -> no acquire",
     {.local_yaml = "tags:\n  nofailover: true\n", .keys = {UNLOCKED}, .local = {PG_REPLICA, .wal_position = 9000}},
     HA_NONE,
     0,
     false,
     NULL,
     "nofailover"},
    {"U3: failover request for another, healthy member -> no acquire",
     {.keys = {UNLOCKED, K_FAILOVER("{\"member\":\"node3\"}")},
      .local = {PG_REPLICA, .wal_position = 9000},
      .peers = {PEER("node3", 5000)}},
     HA_NONE,
     0,
     false,
     NULL,
     "node3"},
    {"U3: lagging beyond maximum_lag_on_failover -> no acquire",
     {.keys = {K_INIT, K_M2, K_STATUS(50000000)}, .local = {PG_REPLICA, .wal_position = 5000}},
     HA_NONE,
     0,
     false,
     NULL,
     "maximum_lag_on_failover"},
    {"U3: paused replica -> no acquire",
     {.dyn_yaml = "pause: true\n", .keys = {UNLOCKED}, .local = {PG_REPLICA, .wal_position = 9000}},
     HA_NONE,
     0,
     false,
     NULL,
     "PAUSE: "},
    {"U3: paused primary that is not the healthiest (/initialize not ours) is not demoted",
     {.dyn_yaml = "pause: true\n",
      .keys = {K_M2, K_STATUS(5000), {"initialize", "garbage"}},
      .local = {PG_PRIMARY, .wal_position = 5000}},
     HA_NONE,
     0,
     false,
     NULL,
     "PAUSE: "},
    {"paused primary with matching sysid -> takes the free lock",
     {.dyn_yaml = "pause: true\n", .keys = {UNLOCKED}, .local = {PG_PRIMARY, .wal_position = 5000}},
     HA_ACQUIRE_LOCK,
     0,
     false,
     NULL,
     "acquired session lock as a leader"},
    {"paused switchover: the named candidate takes the lock",
     {.dyn_yaml = "pause: true\n",
      .keys = {UNLOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node2\"}")},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {PEER("node3", 5000)}},
     HA_ACQUIRE_LOCK,
     0,
     false,
     NULL,
     "promoted self to leader by acquiring session lock"},
    {"paused switchover: the other replicas wait",
     {.me = "node3",
      .dyn_yaml = "pause: true\n",
      .keys = {UNLOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node2\"}")},
      .local = {PG_REPLICA, .wal_position = 9000}},
     HA_NONE,
     0,
     false,
     NULL,
     NULL},
};

static void test_table_u(void **state) {
    (void)state;
    run_decide_rows(table_u_rows, ELEMENTSOF(table_u_rows));
}

/* ------------------------------------------------------------------------------------------------
 * table L: a leader key exists (§4.4) */

static const DecideRow table_l_rows[] = {
    {"corrupt leader key (NUL byte): a replica keeps its upstream, nobody promotes",
     {.me = "node2", .keys = {K_INIT, K_LEADER_NUL, K_M1, K_M2, K_M3, K_STATUS(5000)}, .local = {PG_REPLICA}},
     HA_NONE,
     0,
     false,
     NULL,
     "the leader key names no member"},
    {"corrupt leader key (NUL byte): a primary without the lock demotes, following nobody",
     {.me = "node1", .keys = {K_INIT, K_LEADER_NUL, K_M1, K_M2, K_M3, K_STATUS(5000)}, .local = {PG_PRIMARY}},
     HA_DEMOTE,
     DEMOTE_IMMEDIATE_NOLOCK,
     false,
     "",
     "demoting self because I do not have the lock"},
    {"corrupt leader key (NUL byte): no clone from it",
     {.me = "node2",
      .keys = {K_INIT, K_LEADER_NUL, K_M1, K_M2, K_M3, K_STATUS(5000)},
      .local = {.data_dir_empty = true}},
     HA_NONE,
     0,
     false,
     "",
     "not cloning"},
    {"corrupt leader key (NUL byte): PostgreSQL down starts as a standby without upstream",
     {.me = "node2",
      .keys = {K_INIT, K_LEADER_NUL, K_M1, K_M2, K_M3, K_STATUS(5000)},
      .local = {.sysid = SYSID, .pg_running = false}},
     HA_START,
     0,
     false,
     "",
     "starting as a secondary"},
    {"L1: paused lock holder, PostgreSQL not primary -> release the lock",
     {.me = "node1", .dyn_yaml = "pause: true\n", .keys = {LOCKED}, .local = {PG_REPLICA}},
     HA_RELEASE_LOCK,
     0,
     false,
     NULL,
     "PAUSE: "},
    {"L1: paused lock holder that is the failover candidate -> wait (keep the lock)",
     {.me = "node1",
      .dyn_yaml = "pause: true\n",
      .keys = {LOCKED, K_FAILOVER("{\"member\":\"node1\"}")},
      .local = {PG_REPLICA}},
     HA_UPDATE_LOCK_ONLY,
     0,
     false,
     NULL,
     "waiting"},
    {"L2: primary lock holder -> update the lock",
     {.me = "node1", .keys = {LOCKED}, .local = {PG_PRIMARY}},
     HA_UPDATE_LOCK,
     0,
     false,
     NULL,
     "no action. I am (node1), the leader with the lock"},
    {"L2: paused primary lock holder -> update the lock, PAUSE: prefix",
     {.me = "node1", .dyn_yaml = "pause: true\n", .keys = {LOCKED}, .local = {PG_PRIMARY}},
     HA_UPDATE_LOCK,
     0,
     false,
     NULL,
     "PAUSE: no action. I am (node1), the leader with the lock"},
    {"L2: replica lock holder -> update the lock and promote",
     {.me = "node1", .keys = {LOCKED}, .local = {PG_REPLICA}},
     HA_UPDATE_LOCK,
     0,
     false,
     NULL,
     "promoted self to leader because I had the session lock"},
    {"L2: the leader key is matched by the bare member name",
     {.me = "node1", .keys = {K_INIT, K_LEADER("node1")}, .local = {PG_PRIMARY}},
     HA_UPDATE_LOCK,
     0,
     false,
     NULL,
     "the leader with the lock"},
    {"L5: primary, someone else holds the lock -> demote immediate-nolock",
     {.keys = {LOCKED}, .local = {PG_PRIMARY}},
     HA_DEMOTE,
     DEMOTE_IMMEDIATE_NOLOCK,
     false,
     NULL,
     "do not have the lock"},
    {"L5: paused primary without the lock -> keep running",
     {.dyn_yaml = "pause: true\n", .keys = {LOCKED}, .local = {PG_PRIMARY}},
     HA_NONE,
     0,
     false,
     NULL,
     "continue to run as primary without lock"},
    {"L5: replica following nobody -> follow the leader",
     {.keys = {LOCKED}, .local = {PG_REPLICA}},
     HA_FOLLOW,
     0,
     false,
     "node1",
     "following a leader (node1)"},
    {"L5: replica following another member -> follow the leader",
     {.keys = {LOCKED}, .local = {PG_REPLICA, .following = "node3"}},
     HA_FOLLOW,
     0,
     false,
     "node1",
     NULL},
    {"L5: replicatefrom -> cascade from that member",
     {.local_yaml = "tags:\n  replicatefrom: node3\n", .keys = {LOCKED}, .local = {PG_REPLICA, .following = "node1"}},
     HA_FOLLOW,
     0,
     false,
     "node3",
     "cascade"},
    {"L5: replicatefrom, already cascading -> nothing",
     {.local_yaml = "tags:\n  replicatefrom: node3\n", .keys = {LOCKED}, .local = {PG_REPLICA, .following = "node3"}},
     HA_NONE,
     0,
     false,
     "node3",
     "following a leader (node1)"},
    {"L5: replicatefrom a member that does not exist -> the leader",
     {.local_yaml = "tags:\n  replicatefrom: node9\n", .keys = {LOCKED}, .local = {PG_REPLICA, .following = "node1"}},
     HA_NONE,
     0,
     false,
     "node1",
     NULL},
    {"L5: nostream -> follow nobody",
     {.local_yaml = "tags:\n  nostream: true\n", .keys = {LOCKED}, .local = {PG_REPLICA, .following = "node1"}},
     HA_FOLLOW,
     0,
     false,
     "",
     NULL},
    {"L5: already following the leader -> nothing",
     {.keys = {LOCKED}, .local = {PG_REPLICA, .following = "node1"}},
     HA_NONE,
     0,
     false,
     "node1",
     "no action. I am (node2), a secondary, and following a leader (node1)"},
    {"L5: paused replica following the leader -> nothing, PAUSE: prefix",
     {.dyn_yaml = "pause: true\n", .keys = {LOCKED}, .local = {PG_REPLICA, .following = "node1"}},
     HA_NONE,
     0,
     false,
     "node1",
     "PAUSE: no action"},
};

static void test_table_l(void **state) {
    (void)state;
    run_decide_rows(table_l_rows, ELEMENTSOF(table_l_rows));
}

/* ------------------------------------------------------------------------------------------------
 * the status query ran into its statement_timeout (Patroni 4.1): the cached role stands */

static const DecideRow status_cached_rows[] = {
    {"timed-out status query on the primary lock holder: keep the lock, no demotion",
     {.me = "node1", .keys = {LOCKED}, .local = {PG_PRIMARY, .status_cached = true, .wal_position = 5000}},
     HA_UPDATE_LOCK,
     0,
     false,
     NULL,
     "the leader with the lock (the status query timed out: cached role)"},
    {"timed-out status query on the primary lock holder: a pending switchover waits",
     {.me = "node1",
      .keys = {LOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node2\"}")},
      .local = {PG_PRIMARY, .status_cached = true, .wal_position = 5000},
      .peers = {PEER("node2", 5000), PEER("node3", 5000)}},
     HA_UPDATE_LOCK,
     0,
     false,
     NULL,
     "cached role"},
    {"timed-out status query on a replica lock holder: keep the lock, no promotion yet",
     {.me = "node1", .keys = {LOCKED}, .local = {PG_REPLICA, .status_cached = true}},
     HA_UPDATE_LOCK_ONLY,
     0,
     false,
     NULL,
     "not promoting yet: the status query timed out"},
    {"timed-out status query on a replica: still follows the leader",
     {.me = "node2", .keys = {LOCKED}, .local = {PG_REPLICA, .status_cached = true, .following = "node1"}},
     HA_NONE,
     0,
     false,
     "node1",
     "a secondary, and following a leader (node1)"},
    {"timed-out status query on a replica in an unlocked cluster: no race on a cached position",
     {.keys = {UNLOCKED},
      .local = {PG_REPLICA, .status_cached = true, .wal_position = 5000},
      .peers = {PEER("node3", 4000)}},
     HA_NONE,
     0,
     false,
     NULL,
     "the status query timed out"},
    {"timed-out status query on a primary in an unlocked cluster: it races as the primary",
     {.keys = {UNLOCKED},
      .local = {PG_PRIMARY, .status_cached = true, .wal_position = 5000},
      .peers = {PEER("node3", 4000)}},
     HA_ACQUIRE_LOCK,
     0,
     false,
     NULL,
     "acquired session lock as a leader"},
    {"timed-out status query on a primary without the lock (someone else holds it): demote",
     {.me = "node3", .keys = {LOCKED}, .local = {PG_PRIMARY, .status_cached = true}},
     HA_DEMOTE,
     DEMOTE_IMMEDIATE_NOLOCK,
     false,
     NULL,
     "demoting self because I do not have the lock"},
};

static void test_status_cached(void **state) {
    (void)state;
    run_decide_rows(status_cached_rows, ELEMENTSOF(status_cached_rows));
    /* only a statement timeout keeps the last answer, and only when there is one */
    assert_true(decide_keep_cached_status(-ETIME, true));
    assert_false(decide_keep_cached_status(-ETIME, false));
    assert_false(decide_keep_cached_status(-EIO, true));
    assert_false(decide_keep_cached_status(-EPROTO, true));
}

/* ------------------------------------------------------------------------------------------------
 * manual switchover / failover on the lock holder (§4.7) */

#define LEADER1 .me = "node1"

static const DecideRow switchover_rows[] = {
    {"switchover to a healthy candidate -> demote graceful",
     {LEADER1, .keys = {LOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node2\"}")}, .local = {PG_PRIMARY},
      .peers = {PEER("node2", 5000), PEER("node3", 5000)}},
     HA_SWITCHOVER,
     DEMOTE_GRACEFUL,
     false,
     "node2",
     "switchover: demoting myself"},
    {"switchover without a candidate, a healthy replica exists -> demote graceful",
     {LEADER1, .keys = {LOCKED, K_FAILOVER("{\"leader\":\"node1\"}")}, .local = {PG_PRIMARY},
      .peers = {PEER("node3", 5000)}},
     HA_SWITCHOVER,
     DEMOTE_GRACEFUL,
     false,
     "",
     "switchover: demoting myself"},
    {"failover (no leader named) to a healthy candidate -> demote graceful",
     {LEADER1, .keys = {LOCKED, K_FAILOVER("{\"member\":\"node3\"}")}, .local = {PG_PRIMARY},
      .peers = {PEER("node3", 5000)}},
     HA_SWITCHOVER,
     DEMOTE_GRACEFUL,
     false,
     "node3",
     "manual failover: demoting myself"},
    {"the candidate is me -> clear the key",
     {LEADER1, .keys = {LOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node1\"}")}, .local = {PG_PRIMARY},
      .peers = {PEER("node2", 5000)}},
     HA_CLEAR_FAILOVER,
     0,
     false,
     NULL,
     "already the leader"},
    {"the leader name does not match -> clear the key",
     {LEADER1, .keys = {LOCKED, K_FAILOVER("{\"leader\":\"node3\",\"member\":\"node2\"}")}, .local = {PG_PRIMARY},
      .peers = {PEER("node2", 5000)}},
     HA_CLEAR_FAILOVER,
     0,
     false,
     NULL,
     "leader name does not match"},
    {"the candidate is unreachable -> clear the key",
     {LEADER1, .keys = {LOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node2\"}")}, .local = {PG_PRIMARY},
      .peers = {{.name = "node2", .failover_priority = 1}, PEER("node3", 5000)}},
     HA_CLEAR_FAILOVER,
     0,
     false,
     NULL,
     "no healthy members"},
    {"the candidate is tagged nofailover -> clear the key",
     {LEADER1, .keys = {LOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node2\"}")}, .local = {PG_PRIMARY},
      .peers = {{.name = "node2", .reachable = true, .nofailover = true, .wal_position = 5000}}},
     HA_CLEAR_FAILOVER,
     0,
     false,
     NULL,
     "no healthy members"},
    {"the candidate's watchdog failed -> clear the key",
     {LEADER1, .keys = {LOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node2\"}")}, .local = {PG_PRIMARY},
      .peers = {{.name = "node2",
                 .reachable = true,
                 .watchdog_failed = true,
                 .wal_position = 5000,
                 .failover_priority = 1}}},
     HA_CLEAR_FAILOVER,
     0,
     false,
     NULL,
     "no healthy members"},
    {"the candidate lags more than maximum_lag_on_failover -> clear the key",
     {LEADER1,
      .keys = {K_INIT, K_LEADER("node1"), K_M1, K_M2, K_STATUS(50000000),
               K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node2\"}")},
      .local = {PG_PRIMARY}, .peers = {PEER("node2", 5000)}},
     HA_CLEAR_FAILOVER,
     0,
     false,
     NULL,
     "no healthy members"},
    {"switchover without candidate and no other member -> clear the key",
     {LEADER1, .keys = {K_INIT, K_LEADER("node1"), K_M1, K_FAILOVER("{\"leader\":\"node1\"}")}, .local = {PG_PRIMARY}},
     HA_CLEAR_FAILOVER,
     0,
     false,
     NULL,
     "no healthy members"},
    {"paused: a switchover without candidate is refused",
     {LEADER1, .dyn_yaml = "pause: true\n", .keys = {LOCKED, K_FAILOVER("{\"leader\":\"node1\"}")},
      .local = {PG_PRIMARY}, .peers = {PEER("node2", 5000)}},
     HA_CLEAR_FAILOVER,
     0,
     false,
     NULL,
     "paused"},
    {"paused: a switchover to a named candidate proceeds",
     {LEADER1, .dyn_yaml = "pause: true\n", .keys = {LOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node2\"}")},
      .local = {PG_PRIMARY}, .peers = {PEER("node2", 5000)}},
     HA_SWITCHOVER,
     DEMOTE_GRACEFUL,
     false,
     "node2",
     "demoting myself"},
    {"a scheduled switchover is not acted on by decide()",
     {LEADER1,
      .keys = {LOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node2\","
                                  "\"scheduled_at\":\"2025-06-01T12:00:00+00:00\"}")},
      .local = {PG_PRIMARY}, .peers = {PEER("node2", 5000)}},
     HA_UPDATE_LOCK,
     0,
     false,
     NULL,
     "no action. I am (node1), the leader with the lock"},
    {"an empty failover key ({}) is no request",
     {LEADER1, .keys = {LOCKED, K_FAILOVER("{}")}, .local = {PG_PRIMARY}, .peers = {PEER("node2", 5000)}},
     HA_UPDATE_LOCK,
     0,
     false,
     NULL,
     "the leader with the lock"},
    {"synchronous mode: a switchover needs a /sync standby (async one only -> clear)",
     {LEADER1, .dyn_yaml = "synchronous_mode: true\n",
      .keys = {LOCKED, K_SYNC("{\"leader\":\"node1\",\"quorum\":0,\"sync_standby\":\"node3\"}"),
               K_FAILOVER("{\"leader\":\"node1\"}")},
      .local = {PG_PRIMARY}, .peers = {PEER("node2", 5000)}},
     HA_CLEAR_FAILOVER,
     0,
     false,
     NULL,
     "no healthy members"},
    {"synchronous mode: a switchover to the /sync standby proceeds",
     {LEADER1, .dyn_yaml = "synchronous_mode: true\n",
      .keys = {LOCKED, K_SYNC("{\"leader\":\"node1\",\"quorum\":0,\"sync_standby\":\"node3\"}"),
               K_FAILOVER("{\"leader\":\"node1\"}")},
      .local = {PG_PRIMARY}, .peers = {PEER("node2", 5000), PEER("node3", 5000)}},
     HA_SWITCHOVER,
     DEMOTE_GRACEFUL,
     false,
     NULL,
     "switchover: demoting myself"},
    {"synchronous mode: a manual failover (no leader) may go to an async member",
     {LEADER1, .dyn_yaml = "synchronous_mode: true\n",
      .keys = {LOCKED, K_SYNC("{\"leader\":\"node1\",\"quorum\":0,\"sync_standby\":\"node3\"}"),
               K_FAILOVER("{\"member\":\"node2\"}")},
      .local = {PG_PRIMARY}, .peers = {PEER("node2", 5000)}},
     HA_SWITCHOVER,
     DEMOTE_GRACEFUL,
     false,
     "node2",
     "manual failover: demoting myself"},
};

static void test_switchover_on_leader(void **state) {
    (void)state;
    run_decide_rows(switchover_rows, ELEMENTSOF(switchover_rows));
}

/* ------------------------------------------------------------------------------------------------
 * §4.5 "am I the healthiest node?" — me = node2, the cluster is unlocked */

#define SYNC_ON_NODE2 K_SYNC("{\"leader\":\"node1\",\"quorum\":0,\"sync_standby\":\"node2\"}")
#define SYNC_ON_NODE3 K_SYNC("{\"leader\":\"node1\",\"quorum\":0,\"sync_standby\":\"node3\"}")

static const HealthiestRow healthiest_rows[] = {
    /* the core check */
    {"no other member -> yes", {.keys = {UNLOCKED}, .local = {PG_REPLICA, .wal_position = 5000}}, true, NULL},
    {"all peers behind -> yes",
     {.keys = {UNLOCKED},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {PEER("node3", 4000), PEER("node4", 0)}},
     true,
     NULL},
    {"maximum_lag_on_failover exceeded (vs /status optime) -> no",
     {.keys = {K_INIT, K_M2, K_STATUS(2000000)}, .local = {PG_REPLICA, .wal_position = 951423}},
     false,
     "maximum_lag_on_failover"},
    {"lag exactly maximum_lag_on_failover -> yes",
     {.keys = {K_INIT, K_M2, K_STATUS(2000000)}, .local = {PG_REPLICA, .wal_position = 951424}},
     true,
     NULL},
    {"maximum_lag_on_failover from /config",
     {.dyn_yaml = "maximum_lag_on_failover: 100\n",
      .keys = {K_INIT, K_M2, K_STATUS(5101)},
      .local = {PG_REPLICA, .wal_position = 5000}},
     false,
     "maximum_lag_on_failover"},
    {"no /status optime -> no lag check",
     {.keys = {K_INIT, K_M2}, .local = {PG_REPLICA, .wal_position = 0}},
     true,
     NULL},
    {"check_timeline: my timeline is behind the cluster timeline -> no",
     {.dyn_yaml = "check_timeline: true\n",
      .keys = {UNLOCKED, K_HISTORY_TL3},
      .local = {PG_REPLICA_ANY_TL, .timeline = 2, .wal_position = 5000}},
     false,
     "timeline"},
    {"check_timeline: my timeline is unknown -> no",
     {.dyn_yaml = "check_timeline: true\n",
      .keys = {UNLOCKED, K_HISTORY_TL3},
      .local = {PG_REPLICA_ANY_TL, .timeline = 0, .wal_position = 5000}},
     false,
     "timeline"},
    {"check_timeline: on the cluster timeline -> yes",
     {.dyn_yaml = "check_timeline: true\n",
      .keys = {UNLOCKED, K_HISTORY_TL3},
      .local = {PG_REPLICA_ANY_TL, .timeline = 3, .wal_position = 5000}},
     true,
     NULL},
    {"check_timeline off: a timeline behind does not matter",
     {.keys = {UNLOCKED, K_HISTORY_TL3}, .local = {PG_REPLICA_ANY_TL, .timeline = 2, .wal_position = 5000}},
     true,
     NULL},
    {"a peer with a higher WAL position -> no",
     {.keys = {UNLOCKED},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {PEER("node3", 4000), PEER("node4", 5001)}},
     false,
     "node4"},
    {"a peer with failover_priority 0 but nofailover: false set explicitly is a candidate (nofailover wins) -> no",
     {.keys = {UNLOCKED},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {{.name = "node3", .reachable = true, .wal_position = 5001, .failover_priority = 0}}},
     false,
     "node3"},
    {"equal WAL, the peer has a higher failover_priority -> no",
     {.keys = {UNLOCKED},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {{.name = "node3", .reachable = true, .wal_position = 5000, .failover_priority = 2}}},
     false,
     "failover_priority"},
    {"equal WAL, higher priority, but it is the former leader -> yes",
     {.keys = {UNLOCKED},
      .last_leader = "node3",
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {{.name = "node3", .reachable = true, .wal_position = 5000, .failover_priority = 2}}},
     true,
     NULL},
    {"equal WAL, my failover_priority is higher -> yes",
     {.local_yaml = "tags:\n  failover_priority: 3\n",
      .keys = {UNLOCKED},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {{.name = "node3", .reachable = true, .wal_position = 5000, .failover_priority = 2}}},
     true,
     NULL},
    {"equal WAL and equal priority -> yes (the lock decides)",
     {.keys = {UNLOCKED}, .local = {PG_REPLICA, .wal_position = 5000}, .peers = {PEER("node3", 5000)}},
     true,
     NULL},
    {"a higher priority only counts at equal WAL (peer behind) -> yes",
     {.keys = {UNLOCKED},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {{.name = "node3", .reachable = true, .wal_position = 4999, .failover_priority = 9}}},
     true,
     NULL},
    {"a peer still running as primary -> no",
     {.keys = {UNLOCKED},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {{.name = "node1", .reachable = true, .is_primary = true, .wal_position = 100, .failover_priority = 1}}},
     false,
     "node1"},
    {"an unreachable peer is ignored",
     {.keys = {UNLOCKED},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {{.name = "node3", .reachable = false, .wal_position = 9000, .failover_priority = 1},
                {.name = "node1", .reachable = false, .is_primary = true, .failover_priority = 1}}},
     true,
     NULL},
    {"a nofailover peer is ignored even when ahead",
     {.keys = {UNLOCKED},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers =
          {{.name = "node3", .reachable = true, .nofailover = true, .wal_position = 9000, .failover_priority = 1}}},
     true,
     NULL},
    {"a peer with failover_priority 0 (and no nofailover tag: probe_parse() says nofailover) is ignored",
     {.keys = {UNLOCKED},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {{.name = "node3", .reachable = true, .wal_position = 9000, .nofailover = true}}},
     true,
     NULL},
    {"a peer whose watchdog failed is ignored",
     {.keys = {UNLOCKED},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {{.name = "node3",
                 .reachable = true,
                 .watchdog_failed = true,
                 .wal_position = 9000,
                 .failover_priority = 1}}},
     true,
     NULL},
    {"my own probe answer is ignored",
     {.keys = {UNLOCKED}, .local = {PG_REPLICA, .wal_position = 5000}, .peers = {PEER("node2", 9000)}},
     true,
     NULL},

    /* who may not race at all */
    {"nofailover -> no",
     {.local_yaml = "tags:\n  nofailover: true\n", .keys = {UNLOCKED}, .local = {PG_REPLICA, .wal_position = 5000}},
     false,
     "nofailover"},
    {"failover_priority 0 -> no",
     {.local_yaml = "tags:\n  failover_priority: 0\n", .keys = {UNLOCKED}, .local = {PG_REPLICA, .wal_position = 5000}},
     false,
     "nofailover"},
    {"within ttl of a failed promotion (pre_promote or PostgreSQL's) -> no",
     {.keys = {UNLOCKED}, .local = {PG_REPLICA, .wal_position = 5000, .promote_backoff = true}},
     false,
     "promotion failed"},
    {"watchdog required but unusable -> no",
     {.local_yaml = "watchdog:\n  mode: required\n",
      .keys = {UNLOCKED},
      .local = {PG_REPLICA, .wal_position = 5000, .watchdog_failed = true}},
     false,
     "watchdog"},
    {"watchdog automatic and unusable -> may still race",
     {.local_yaml = "watchdog:\n  mode: automatic\n",
      .keys = {UNLOCKED},
      .local = {PG_REPLICA, .wal_position = 5000, .watchdog_failed = true}},
     true,
     NULL},

    /* PostgreSQL is (still) a primary */
    {"running primary -> yes, even with peers ahead",
     {.keys = {UNLOCKED}, .local = {PG_PRIMARY, .wal_position = 5000}, .peers = {PEER("node3", 9000)}},
     true,
     NULL},
    {"running primary on a timeline behind the cluster timeline -> no",
     {.keys = {UNLOCKED, K_HISTORY_TL3}, .local = {PG_PRIMARY_ANY_TL, .timeline = 2, .wal_position = 5000}},
     false,
     "timeline"},
    {"running primary on the cluster timeline -> yes",
     {.keys = {UNLOCKED, K_HISTORY_TL3}, .local = {PG_PRIMARY_ANY_TL, .timeline = 3, .wal_position = 5000}},
     true,
     NULL},

    /* pause */
    {"paused primary, sysid matches /initialize -> yes",
     {.dyn_yaml = "pause: true\n", .keys = {UNLOCKED}, .local = {PG_PRIMARY, .wal_position = 5000}},
     true,
     NULL},
    {"paused primary, no /initialize -> yes",
     {.dyn_yaml = "pause: true\n", .keys = {K_M2}, .local = {PG_PRIMARY, .wal_position = 5000}},
     true,
     NULL},
    {"paused primary, /initialize is another cluster's -> no",
     {.dyn_yaml = "pause: true\n", .keys = {{"initialize", OTHER_SYSID}}, .local = {PG_PRIMARY, .wal_position = 5000}},
     false,
     NULL},
    {"paused primary, /initialize is \"\" (bootstrap race) -> yes",
     {.dyn_yaml = "pause: true\n", .keys = {{"initialize", ""}}, .local = {PG_PRIMARY, .wal_position = 5000}},
     true,
     NULL},
    {"paused primary, /initialize is not our sysid (not even a valid one) -> no",
     {.dyn_yaml = "pause: true\n", .keys = {{"initialize", "garbage"}}, .local = {PG_PRIMARY, .wal_position = 5000}},
     false,
     "differs from /initialize"},
    {"paused replica -> no",
     {.dyn_yaml = "pause: true\n", .keys = {UNLOCKED}, .local = {PG_REPLICA, .wal_position = 9000}},
     false,
     "paused"},
    {"paused, the failover candidate is me -> yes",
     {.dyn_yaml = "pause: true\n",
      .keys = {UNLOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node2\"}")},
      .local = {PG_REPLICA, .wal_position = 1000},
      .peers = {PEER("node3", 9000)}},
     true,
     NULL},
    {"paused, the failover candidate is another member -> no",
     {.dyn_yaml = "pause: true\n",
      .keys = {UNLOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node3\"}")},
      .local = {PG_REPLICA, .wal_position = 9000}},
     false,
     NULL},
    {"paused, a failover request without candidate -> no",
     {.dyn_yaml = "pause: true\n",
      .keys = {UNLOCKED, K_FAILOVER("{\"leader\":\"node1\"}")},
      .local = {PG_REPLICA, .wal_position = 9000}},
     false,
     NULL},
    {"paused and nofailover: a request naming me is ignored",
     {.local_yaml = "tags:\n  nofailover: true\n",
      .dyn_yaml = "pause: true\n",
      .keys = {UNLOCKED, K_FAILOVER("{\"member\":\"node2\"}")},
      .local = {PG_REPLICA, .wal_position = 9000}},
     false,
     NULL},
    {"paused primary, the candidate has no member key -> the stale request does not stop me",
     {.dyn_yaml = "pause: true\n",
      .keys = {UNLOCKED, K_FAILOVER("{\"member\":\"node9\"}")},
      .local = {PG_PRIMARY, .wal_position = 5000}},
     true,
     NULL},

    /* synchronous mode */
    {"synchronous mode: not in /sync -> no",
     {.dyn_yaml = "synchronous_mode: true\n",
      .keys = {UNLOCKED, SYNC_ON_NODE3},
      .local = {PG_REPLICA, .wal_position = 9000}},
     false,
     "synchronous"},
    {"synchronous mode: in /sync -> yes",
     {.dyn_yaml = "synchronous_mode: true\n",
      .keys = {UNLOCKED, SYNC_ON_NODE2},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {PEER("node3", 4000)}},
     true,
     NULL},
    {"synchronous mode: the /sync leader being ahead is ignored",
     {.dyn_yaml = "synchronous_mode: true\n",
      .keys = {UNLOCKED, SYNC_ON_NODE2},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {PEER("node1", 9000)}},
     true,
     NULL},
    {"synchronous mode: the /sync leader still primary -> no",
     {.dyn_yaml = "synchronous_mode: true\n",
      .keys = {UNLOCKED, SYNC_ON_NODE2},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers =
          {{.name = "node1", .reachable = true, .is_primary = true, .wal_position = 9000, .failover_priority = 1}}},
     false,
     "node1"},
    {"synchronous mode: an async member ahead is not compared",
     {.dyn_yaml = "synchronous_mode: true\n",
      .keys = {UNLOCKED, SYNC_ON_NODE2},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {PEER("node3", 9000)}},
     true,
     NULL},
    {"synchronous mode: another /sync standby ahead -> no",
     {.dyn_yaml = "synchronous_mode: true\n",
      .keys = {UNLOCKED, K_SYNC("{\"leader\":\"node1\",\"quorum\":0,\"sync_standby\":\"node2,node3\"}")},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {PEER("node3", 9000)}},
     false,
     "node3"},
    {"synchronous mode: no failover_priority rule between /sync members",
     {.dyn_yaml = "synchronous_mode: true\n",
      .keys = {UNLOCKED, K_SYNC("{\"leader\":\"node1\",\"quorum\":0,\"sync_standby\":\"node2,node3\"}")},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {{.name = "node3", .reachable = true, .wal_position = 5000, .failover_priority = 5}}},
     true,
     NULL},
    {"synchronous mode, /sync names matched case-insensitively",
     {.dyn_yaml = "synchronous_mode: true\n",
      .keys = {UNLOCKED, K_SYNC("{\"leader\":\"node1\",\"quorum\":0,\"sync_standby\":\"NODE2\"}")},
      .local = {PG_REPLICA, .wal_position = 5000}},
     true,
     NULL},
/* quorum mode: votes of {/sync leader} + voters whose WAL is not ahead of mine */
#define Q_SYNC K_SYNC("{\"leader\":\"node1\",\"quorum\":1,\"sync_standby\":\"node2,node3\"}")
    {"quorum: one voter not ahead of me is the quorum of 1 -> yes",
     {.dyn_yaml = "synchronous_mode: quorum\n",
      .keys = {UNLOCKED, Q_SYNC},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {PEER("node3", 5000)}},
     true,
     NULL},
    {"quorum: no voter reachable -> no",
     {.dyn_yaml = "synchronous_mode: quorum\n",
      .keys = {UNLOCKED, Q_SYNC},
      .local = {PG_REPLICA, .wal_position = 5000}},
     false,
     "quorum 1"},
    {"quorum: a voter ahead -> no",
     {.dyn_yaml = "synchronous_mode: quorum\n",
      .keys = {UNLOCKED, Q_SYNC},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {PEER("node3", 6000)}},
     false,
     "node3"},
    {"quorum: a non-voter does not vote",
     {.dyn_yaml = "synchronous_mode: quorum\n",
      .keys = {UNLOCKED, Q_SYNC, K_M3},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {PEER("node4", 4000)}},
     false,
     "quorum 1"},
    {"quorum: not a voter myself: one more vote needed",
     {.me = "node4",
      .dyn_yaml = "synchronous_mode: quorum\n",
      .keys = {UNLOCKED, Q_SYNC},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {PEER("node3", 5000)}},
     false,
     "quorum 1"},
    {"quorum: not a voter myself, two voters -> yes",
     {.me = "node4",
      .dyn_yaml = "synchronous_mode: quorum\n",
      .keys = {UNLOCKED, Q_SYNC},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {PEER("node3", 5000), PEER("node2", 4000)}},
     true,
     NULL},
    {"quorum: the former leader ahead is ignored but does not vote",
     {.dyn_yaml = "synchronous_mode: quorum\n",
      .keys = {UNLOCKED, Q_SYNC},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {PEER("node1", 9000)}},
     false,
     "quorum 1"},
    {"quorum: a nofailover voter does not vote",
     {.dyn_yaml = "synchronous_mode: quorum\n",
      .keys = {UNLOCKED, Q_SYNC},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {{.name = "node3", .reachable = true, .wal_position = 5000, .nofailover = true}}},
     false,
     "quorum 1"},
    {"quorum 0: alone is enough",
     {.dyn_yaml = "synchronous_mode: quorum\n",
      .keys = {UNLOCKED, K_SYNC("{\"leader\":\"node1\",\"quorum\":0,\"sync_standby\":\"node2\"}")},
      .local = {PG_REPLICA, .wal_position = 5000}},
     true,
     NULL},
    {"quorum: the /sync leader takes the lock back on its own WAL when nobody is ahead",
     {.me = "node1",
      .dyn_yaml = "synchronous_mode: quorum\n",
      .keys = {UNLOCKED, Q_SYNC},
      .local = {PG_REPLICA, .wal_position = 5000}},
     true,
     NULL},
    {"quorum: ...but not after another member held the lock since /sync was written",
     {.me = "node1",
      .dyn_yaml = "synchronous_mode: quorum\n",
      .keys = {UNLOCKED, Q_SYNC},
      .last_leader = "node3",
      .local = {PG_REPLICA, .wal_position = 5000}},
     false,
     "quorum 1"},
    {"synchronous mode without a /sync leader is not active",
     {.dyn_yaml = "synchronous_mode: true\n", .keys = {UNLOCKED}, .local = {PG_REPLICA, .wal_position = 5000}},
     true,
     NULL},

    /* manual failover / switchover requests while unlocked (§4.7 "no leader" variant) */
    {"the failover candidate is me -> yes, even when lagging",
     {.keys = {K_INIT, K_M2, K_M3, K_STATUS(90000000), K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node2\"}")},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {PEER("node3", 9000)}},
     true,
     NULL},
    {"a healthy named candidate -> no for the others",
     {.keys = {UNLOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node3\"}")},
      .local = {PG_REPLICA, .wal_position = 9000},
      .peers = {PEER("node3", 5000)}},
     false,
     "node3"},
    {"the named candidate is unreachable -> the others race without the lag limit",
     {.keys = {K_INIT, K_M2, K_M3, K_STATUS(90000000), K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node3\"}")},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {{.name = "node3", .failover_priority = 1}}},
     true,
     NULL},
    {"the named candidate is nofailover -> the most advanced of the others wins",
     {.keys = {UNLOCKED, K_FAILOVER("{\"member\":\"node3\"}")},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {{.name = "node3", .reachable = true, .nofailover = true, .wal_position = 9000}, PEER("node4", 6000)}},
     false,
     "node4"},
    {"switchover without candidate: the former leader is left out of the comparison",
     {.keys = {UNLOCKED, K_FAILOVER("{\"leader\":\"node1\"}")},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {PEER("node1", 9000), PEER("node3", 4000)}},
     true,
     NULL},
    {"switchover without candidate: a more advanced replica wins",
     {.keys = {UNLOCKED, K_FAILOVER("{\"leader\":\"node1\"}")},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {PEER("node3", 6000)}},
     false,
     "node3"},
    {"the former leader, another member can take over -> no",
     {.me = "node1",
      .keys = {UNLOCKED, K_FAILOVER("{\"leader\":\"node1\"}")},
      .local = {PG_REPLICA, .wal_position = 9000},
      .peers = {PEER("node2", 5000)}},
     false,
     "node2"},
    {"the former leader, nobody else is reachable -> yes",
     {.me = "node1",
      .keys = {UNLOCKED, K_FAILOVER("{\"leader\":\"node1\"}")},
      .local = {PG_REPLICA, .wal_position = 9000},
      .peers = {{.name = "node2", .failover_priority = 1},
                {.name = "node3", .reachable = true, .nofailover = true, .wal_position = 9000}}},
     true,
     NULL},
    {"the former leader, the only other member lags too far -> yes",
     {.me = "node1",
      .keys = {K_INIT, K_M2, K_STATUS(90000000), K_FAILOVER("{\"leader\":\"node1\"}")},
      .local = {PG_REPLICA, .wal_position = 90000000},
      .peers = {PEER("node2", 5000)}},
     true,
     NULL},
    {"the former leader in synchronous mode: only an async member could -> yes",
     {.me = "node1",
      .dyn_yaml = "synchronous_mode: true\n",
      .keys = {UNLOCKED, SYNC_ON_NODE2, K_FAILOVER("{\"leader\":\"node1\"}")},
      .local = {PG_REPLICA, .wal_position = 9000},
      .peers = {{.name = "node2", .failover_priority = 1}, PEER("node3", 9000)}},
     true,
     NULL},
    {"switchover in synchronous mode, I am not in /sync -> no",
     {.dyn_yaml = "synchronous_mode: true\n",
      .keys = {UNLOCKED, SYNC_ON_NODE3, K_FAILOVER("{\"leader\":\"node1\"}")},
      .local = {PG_REPLICA, .wal_position = 9000}},
     false,
     "synchronous"},
    {"switchover in quorum mode, I am not in /sync -> no",
     {.dyn_yaml = "synchronous_mode: quorum\n",
      .keys = {UNLOCKED, K_SYNC("{\"leader\":\"node1\",\"quorum\":0,\"sync_standby\":\"node3\"}"),
               K_FAILOVER("{\"leader\":\"node1\"}")},
      .local = {PG_REPLICA, .wal_position = 9000}},
     false,
     "synchronous"},
    {"failover to a named candidate in synchronous mode, I am not in /sync -> no",
     {.dyn_yaml = "synchronous_mode: true\n",
      .keys = {UNLOCKED, SYNC_ON_NODE3, K_FAILOVER("{\"member\":\"node4\"}")},
      .local = {PG_REPLICA, .wal_position = 9000},
      .peers = {{.name = "node4", .failover_priority = 1}}},
     false,
     NULL},
    {"a failover without leader in synchronous mode may go to an async member named in it",
     {.dyn_yaml = "synchronous_mode: true\n",
      .keys = {UNLOCKED, SYNC_ON_NODE3, K_FAILOVER("{\"member\":\"node2\"}")},
      .local = {PG_REPLICA, .wal_position = 1000}},
     true,
     NULL},
};

static void test_is_healthiest_node(void **state) {
    (void)state;
    run_healthiest_rows(healthiest_rows, ELEMENTSOF(healthiest_rows));
}

/* decide() and is_healthiest_node() only read their input: same observation, same answer. */
static void test_pure(void **state) {
    (void)state;
    const Input in = {.keys = {UNLOCKED}, .local = {PG_REPLICA, .wal_position = 5000}, .peers = {PEER("node3", 4000)}};
    World w;
    world_build(&w, &in);
    Decision a, b;
    decide(&w.o, &a);
    memset(&b, 0x5a, sizeof b);
    decide(&w.o, &b);
    assert_int_equal(a.action, HA_ACQUIRE_LOCK);
    assert_int_equal(b.action, a.action);
    assert_string_equal(b.message, a.message);
    assert_string_equal(b.target, a.target);
    char why[8];
    assert_true(is_healthiest_node(&w.o, why, sizeof why));
    world_free(&w);

    /* a reason longer than the buffer is truncated, not overflowed */
    const Input lag = {.keys = {K_INIT, K_M2, K_STATUS(90000000)}, .local = {PG_REPLICA, .wal_position = 5000}};
    world_build(&w, &lag);
    char small[8];
    assert_false(is_healthiest_node(&w.o, small, sizeof small));
    assert_int_equal(strlen(small), sizeof small - 1);
    world_free(&w);

    assert_string_equal(ha_action_name(HA_UPDATE_LOCK_ONLY), "update_lock_only");
    assert_string_equal(ha_action_name((HaAction)99), "?");
    assert_string_equal(demote_mode_name(DEMOTE_IMMEDIATE_NOLOCK), "immediate-nolock");
    assert_string_equal(demote_mode_name(DEMOTE_OFFLINE), "offline");
}

/* ------------------------------------------------------------------------------------------------
 * decide_lock_failure(): after a lost race or a failed renewal (spec §4.5, §4.7) */

#define RUNNING_PRIMARY .pg_running = true, .pg_ready = true, .in_recovery = false
#define RUNNING_REPLICA .pg_running = true, .pg_ready = true, .in_recovery = true
#define STARTING .pg_running = true, .pg_starting = true

typedef struct LockFailureRow {
    const char *desc;
    bool paused;
    LocalState local;
    HaAction action;
    LockFailure f;
    LockFailureAction want;
} LockFailureRow;

static const LockFailureRow lock_failure_rows[] = {
    {"race lost by a replica", false, {RUNNING_REPLICA}, HA_ACQUIRE_LOCK, {0}, LOCK_FAIL_NOTHING},
    {"race failed on a DCS error, replica",
     false,
     {RUNNING_REPLICA},
     HA_ACQUIRE_LOCK,
     {.dcs_error = true},
     LOCK_FAIL_NOTHING},
    {"race lost, PostgreSQL stopped", false, {0}, HA_ACQUIRE_LOCK, {0}, LOCK_FAIL_NOTHING},
    {"race lost, PostgreSQL starting",
     false,
     {STARTING},
     HA_ACQUIRE_LOCK,
     {.while_starting_as_primary = true},
     LOCK_FAIL_NOTHING},
    {"race lost by a primary, paused", true, {RUNNING_PRIMARY}, HA_ACQUIRE_LOCK, {0}, LOCK_FAIL_NOTHING},
    {"race lost by a primary: read the key first", false, {RUNNING_PRIMARY}, HA_ACQUIRE_LOCK, {0}, LOCK_FAIL_REREAD},
    {"race lost by a primary, the key names me",
     false,
     {RUNNING_PRIMARY},
     HA_ACQUIRE_LOCK,
     {.reread = true, .holder = "node2"},
     LOCK_FAIL_MINE},
    {"race lost by a primary, the key names another",
     false,
     {RUNNING_PRIMARY},
     HA_ACQUIRE_LOCK,
     {.reread = true, .holder = "node1"},
     LOCK_FAIL_DEMOTE_NOLOCK},
    {"race lost by a primary, no key or the read failed",
     false,
     {RUNNING_PRIMARY},
     HA_ACQUIRE_LOCK,
     {.reread = true},
     LOCK_FAIL_DEMOTE_NOLOCK},
    {"race lost by a primary, the key names me in another case",
     false,
     {RUNNING_PRIMARY},
     HA_ACQUIRE_LOCK,
     {.reread = true, .holder = "NODE2"},
     LOCK_FAIL_DEMOTE_NOLOCK},
    {"race failed on a DCS error, primary",
     false,
     {RUNNING_PRIMARY},
     HA_ACQUIRE_LOCK,
     {.dcs_error = true},
     LOCK_FAIL_DEMOTE_OFFLINE},
    {"race failed on a DCS error, primary, paused",
     true,
     {RUNNING_PRIMARY},
     HA_ACQUIRE_LOCK,
     {.dcs_error = true},
     LOCK_FAIL_NOTHING},
    {"renewal lost while starting as primary",
     false,
     {STARTING},
     HA_UPDATE_LOCK_ONLY,
     {.while_starting_as_primary = true},
     LOCK_FAIL_STOP_STARTING},
    {"renewal failed on a DCS error while starting as primary",
     false,
     {STARTING},
     HA_UPDATE_LOCK_ONLY,
     {.dcs_error = true, .while_starting_as_primary = true},
     LOCK_FAIL_STOP_STARTING},
    {"renewal lost while starting as primary, paused",
     true,
     {STARTING},
     HA_UPDATE_LOCK_ONLY,
     {.while_starting_as_primary = true},
     LOCK_FAIL_NOTHING},
    {"renewal lost while starting as a replica", false, {STARTING}, HA_UPDATE_LOCK_ONLY, {0}, LOCK_FAIL_NOTHING},
    {"renewal lost by a primary", false, {RUNNING_PRIMARY}, HA_UPDATE_LOCK, {0}, LOCK_FAIL_DEMOTE_NOLOCK},
    {"renewal failed on a DCS error, primary",
     false,
     {RUNNING_PRIMARY},
     HA_UPDATE_LOCK,
     {.dcs_error = true},
     LOCK_FAIL_DEMOTE_OFFLINE},
    {"renewal lost by a primary, paused",
     true,
     {RUNNING_PRIMARY},
     HA_UPDATE_LOCK,
     {.dcs_error = true},
     LOCK_FAIL_NOTHING},
    {"renewal lost before a switchover", false, {RUNNING_PRIMARY}, HA_SWITCHOVER, {0}, LOCK_FAIL_DEMOTE_NOLOCK},
    {"renewal failed before clearing the failover key",
     false,
     {RUNNING_PRIMARY},
     HA_CLEAR_FAILOVER,
     {.dcs_error = true},
     LOCK_FAIL_DEMOTE_OFFLINE},
    {"renewal lost: a renewal never reads the key again",
     false,
     {RUNNING_PRIMARY},
     HA_UPDATE_LOCK,
     {.reread = true, .holder = "node2"},
     LOCK_FAIL_DEMOTE_NOLOCK},
    {"renewal lost by a replica holding the key", false, {RUNNING_REPLICA}, HA_UPDATE_LOCK, {0}, LOCK_FAIL_NOTHING},
    {"renewal failed on a DCS error, replica",
     false,
     {RUNNING_REPLICA},
     HA_UPDATE_LOCK,
     {.dcs_error = true},
     LOCK_FAIL_NOTHING},
    {"renewal lost, a primary that does not answer: fenced",
     false,
     {STARTING, .maybe_primary = true},
     HA_UPDATE_LOCK_ONLY,
     {0},
     LOCK_FAIL_DEMOTE_NOLOCK},
    {"renewal failed on a DCS error, a primary that does not answer: fenced (immediate, not offline)",
     false,
     {STARTING, .maybe_primary = true},
     HA_UPDATE_LOCK_ONLY,
     {.dcs_error = true},
     LOCK_FAIL_DEMOTE_NOLOCK},
    {"renewal failed, a primary that does not answer, paused: left alone",
     true,
     {STARTING, .maybe_primary = true},
     HA_UPDATE_LOCK_ONLY,
     {.dcs_error = true},
     LOCK_FAIL_NOTHING},
    {"renewal failed, a replica starting: nothing", false, {STARTING}, HA_UPDATE_LOCK_ONLY, {0}, LOCK_FAIL_NOTHING},
    {"renewal lost while promoting: fenced",
     false,
     {RUNNING_REPLICA, .maybe_primary = true},
     HA_UPDATE_LOCK,
     {0},
     LOCK_FAIL_DEMOTE_NOLOCK},
    {"renewal failed on a DCS error while promoting: fenced (immediate, not offline)",
     false,
     {RUNNING_REPLICA, .maybe_primary = true},
     HA_UPDATE_LOCK_ONLY,
     {.dcs_error = true},
     LOCK_FAIL_DEMOTE_NOLOCK},
    {"race lost while promoting: read the key first",
     false,
     {RUNNING_REPLICA, .maybe_primary = true},
     HA_ACQUIRE_LOCK,
     {0},
     LOCK_FAIL_REREAD},
    {"race lost while promoting, the key names another: fenced",
     false,
     {RUNNING_REPLICA, .maybe_primary = true},
     HA_ACQUIRE_LOCK,
     {.reread = true, .holder = "node1"},
     LOCK_FAIL_DEMOTE_NOLOCK},
    {"race failed on a DCS error while promoting: fenced (immediate, not offline)",
     false,
     {RUNNING_REPLICA, .maybe_primary = true},
     HA_ACQUIRE_LOCK,
     {.dcs_error = true},
     LOCK_FAIL_DEMOTE_NOLOCK},
    {"renewal failed while promoting, paused: left alone",
     true,
     {RUNNING_REPLICA, .maybe_primary = true},
     HA_UPDATE_LOCK,
     {.dcs_error = true},
     LOCK_FAIL_NOTHING},
};

static void test_lock_failure(void **state) {
    (void)state;
    DynConfig dyn, paused;
    load_dyn(&dyn, NULL);
    load_dyn(&paused, "pause: true\n");
    size_t failed = 0;
    for (size_t i = 0; i < ELEMENTSOF(lock_failure_rows); i++) {
        const LockFailureRow *r = &lock_failure_rows[i];
        LockFailureAction got = decide_lock_failure(&r->local, r->paused ? &paused : &dyn, "node2", r->action, &r->f);
        if (got != r->want) {
            failed++;
            print_error("row %zu FAILED: %s: want %d, got %d\n", i, r->desc, r->want, got);
        }
    }
    dyn_config_free(&dyn);
    dyn_config_free(&paused);
    assert_int_equal(failed, 0);
}

/* ------------------------------------------------------------------------------------------------
 * decide_needs_peers(): is the cycle worth probing the other members' REST APIs? */

typedef struct NeedsPeersRow {
    const char *desc;
    Input in;
    bool want;
} NeedsPeersRow;

#define K_FAILOVER_TO_N3 K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node3\"}")

static const NeedsPeersRow needs_peers_rows[] = {
    {"unlocked: a race", {.keys = {UNLOCKED}, .local = {PG_REPLICA}}, true},
    {"unlocked, PostgreSQL stopped: a start first", {.keys = {UNLOCKED}, .local = {PG_STOPPED}}, false},
    {"unlocked, nofailover: no race",
     {.local_yaml = "tags:\n  nofailover: true\n", .keys = {UNLOCKED}, .local = {PG_REPLICA}},
     false},
    {"unlocked, nofailover, a failover key: a candidate may need us",
     {.local_yaml = "tags:\n  nofailover: true\n", .keys = {UNLOCKED, K_FAILOVER_TO_N3}, .local = {PG_REPLICA}},
     true},
    {"unlocked, DCS unreadable", {.no_dcs = true, .local = {PG_REPLICA}}, false},
    {"unlocked, failsafe mode, a leader asked in POST /failsafe: no race",
     {.dyn_yaml = "failsafe_mode: true\n", .keys = {UNLOCKED}, .local = {PG_REPLICA}, .failsafe_leader = "node1"},
     false},
    {"unlocked, failsafe mode switched off after a POST /failsafe: the promise stands, no race, no probes",
     {.keys = {UNLOCKED}, .local = {PG_REPLICA}, .failsafe_leader = "node1"},
     false},
    {"unlocked, empty data directory",
     {.keys = {UNLOCKED}, .local = {.data_dir_empty = true, .pg_running = true}},
     false},
    {"unlocked, a long action runs", {.keys = {UNLOCKED}, .local = {PG_REPLICA, .async_action = "clone"}}, false},
    {"unlocked, the failover key names me: I take the key without comparing",
     {.me = "node3", .keys = {UNLOCKED, K_FAILOVER_TO_N3}, .local = {PG_REPLICA}},
     false},
    {"locked by another", {.keys = {LOCKED}, .local = {PG_REPLICA}}, false},
    {"locked by another, a failover key", {.keys = {LOCKED, K_FAILOVER_TO_N3}, .local = {PG_REPLICA}}, false},
    {"mine, steady", {.me = "node1", .keys = {LOCKED}, .local = {PG_PRIMARY}}, false},
    {"mine, a start that timed out",
     {.me = "node1", .keys = {LOCKED}, .local = {PG_PRIMARY, .start_timed_out = true}},
     true},
    {"mine, a switchover", {.me = "node1", .keys = {LOCKED, K_FAILOVER_TO_N3}, .local = {PG_PRIMARY}}, true},
    {"mine, an empty failover key", {.me = "node1", .keys = {LOCKED, K_FAILOVER("{}")}, .local = {PG_PRIMARY}}, false},
    {"mine, PostgreSQL stopped, primary_start_timeout 0: fail over if someone can",
     {.me = "node1", .dyn_yaml = "primary_start_timeout: 0\n", .keys = {LOCKED}, .local = {PG_STOPPED}},
     true},
    {"mine, PostgreSQL stopped, the default primary_start_timeout: a start",
     {.me = "node1", .keys = {LOCKED}, .local = {PG_STOPPED}},
     false},
};

static void test_needs_peers(void **state) {
    (void)state;
    size_t failed = 0;
    for (size_t i = 0; i < ELEMENTSOF(needs_peers_rows); i++) {
        const NeedsPeersRow *r = &needs_peers_rows[i];
        World w;
        world_build(&w, &r->in);
        bool got = decide_needs_peers(&w.o);
        if (got != r->want) {
            failed++;
            print_error("row %zu FAILED: %s: want %d, got %d\n", i, r->desc, r->want, got);
        }
        world_free(&w);
    }
    assert_int_equal(failed, 0);
}

/* A peer's GET /patroni tags as Patroni 4.0's Tags reads them (patroni/tags.py): nofailover set (not
 * null) decides by Python truthiness, and wins over failover_priority; otherwise failover_priority <= 0
 * means nofailover. failover_priority is 0 under a true nofailover, else its integer value (a string of
 * digits counts), default 1. */
static void test_probe_parse_tags(void **state) {
    (void)state;
    static const struct {
        const char *tags;
        bool nofailover;
        long long priority;
    } cases[] = {
        {"{}", false, 1},
        {"{\"nofailover\":true}", true, 0},
        {"{\"nofailover\":false}", false, 1},
        {"{\"nofailover\":null}", false, 1},
        {"{\"nofailover\":\"true\"}", true, 0},
        {"{\"nofailover\":\"yes\"}", true, 0},
        {"{\"nofailover\":\"on\"}", true, 0},
        {"{\"nofailover\":1}", true, 0},
        {"{\"nofailover\":0}", false, 1},
        {"{\"nofailover\":\"\"}", false, 1},
        {"{\"failover_priority\":0}", true, 0},
        {"{\"failover_priority\":-1}", true, -1},
        {"{\"failover_priority\":5}", false, 5},
        {"{\"failover_priority\":\"3\"}", false, 3},
        {"{\"failover_priority\":\"0\"}", true, 0},
        {"{\"nofailover\":false,\"failover_priority\":0}", false, 0},
        {"{\"nofailover\":true,\"failover_priority\":5}", true, 0},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        char *body = xasprintf("{\"state\":\"running\",\"role\":\"replica\",\"xlog\":{\"received_location\":100,"
                               "\"replayed_location\":100},\"tags\":%s}",
                               cases[i].tags);
        PeerStatus p = {0};
        probe_parse(body, &p);
        if (p.nofailover != cases[i].nofailover || p.failover_priority != cases[i].priority)
            print_error("tags %s: nofailover %d priority %lld, want %d %lld\n", cases[i].tags, p.nofailover,
                        p.failover_priority, cases[i].nofailover, cases[i].priority);
        assert_true(p.reachable);
        assert_int_equal(p.nofailover, cases[i].nofailover);
        assert_int_equal(p.failover_priority, cases[i].priority);
        free(body);
    }
}

/* ------------------------------------------------------------------------------------------------
 * failsafe mode (spec §4.3 steps 1 and 15, §4.5 step 8, §4.12) */

#define FAILSAFE_ON "failsafe_mode: true\n"
#define K_FAILSAFE(json) \
    { "failsafe", json }
#define FS_ALL                                                                                \
    "{\"node1\":\"http://10.0.0.1:8008/patroni\",\"node2\":\"http://10.0.0.2:8008/patroni\"," \
    "\"node3\":\"http://10.0.0.3:8008/patroni\"}"
#define FS_NOT_N2 "{\"node1\":\"http://10.0.0.1:8008/patroni\",\"node3\":\"http://10.0.0.3:8008/patroni\"}"

static const DecideRow failsafe_rows[] = {
    {"DCS unreachable, primary, failsafe mode, every member accepted -> runs on",
     {.no_dcs = true, .dyn_yaml = FAILSAFE_ON, .local = {PG_PRIMARY}, .failsafe_survived = true},
     HA_FAILSAFE,
     0,
     false,
     NULL,
     "continue to run as a leader because failsafe mode is enabled and all members are accessible"},
    {"DCS unreachable, primary, failsafe mode, a member did not accept -> demote offline",
     {.no_dcs = true, .dyn_yaml = FAILSAFE_ON, .local = {PG_PRIMARY}},
     HA_DEMOTE,
     DEMOTE_OFFLINE,
     false,
     NULL,
     "DCS is not accessible and I was a leader"},
    {"DCS unreachable, primary, failsafe mode off (a stray survival flag counts for nothing) -> demote offline",
     {.no_dcs = true, .local = {PG_PRIMARY}, .failsafe_survived = true},
     HA_DEMOTE,
     DEMOTE_OFFLINE,
     false,
     NULL,
     "DCS is not accessible"},
    {"DCS unreachable, paused primary, failsafe mode -> left alone",
     {.no_dcs = true, .dyn_yaml = FAILSAFE_ON "pause: true\n", .local = {PG_PRIMARY}, .failsafe_survived = true},
     HA_NONE,
     0,
     false,
     NULL,
     "PAUSE: DCS is not accessible"},
    {"DCS unreachable, a primary that does not answer, failsafe mode -> still fenced",
     {.no_dcs = true, .dyn_yaml = FAILSAFE_ON, .local = {PG_UNANSWERING_PRIMARY}, .failsafe_survived = true},
     HA_DEMOTE,
     DEMOTE_IMMEDIATE_NOLOCK,
     false,
     NULL,
     "DCS is not accessible"},
    {"DCS unreachable, replica, failsafe mode -> nothing",
     {.no_dcs = true, .dyn_yaml = FAILSAFE_ON, .local = {PG_REPLICA}, .failsafe_leader = "node1"},
     HA_NONE,
     0,
     false,
     NULL,
     "DCS is not accessible"},
    {"unlocked, a replica following the leader that asked in POST /failsafe -> no race",
     {.dyn_yaml = FAILSAFE_ON,
      .keys = {UNLOCKED, K_FAILSAFE(FS_ALL)},
      .local = {PG_REPLICA, .following = "node1"},
      .peers = {PEER("node3", 5000)},
      .failsafe_leader = "node1"},
     HA_NONE,
     0,
     false,
     "node1",
     "known from POST /failsafe"},
    {"unlocked, the leader that asked has a member key, not followed yet -> follow it",
     {.dyn_yaml = FAILSAFE_ON,
      .keys = {K_INIT, K_M1, K_M2, K_M3, K_STATUS(5000), K_FAILSAFE(FS_ALL)},
      .local = {PG_REPLICA, .following = "node3"},
      .failsafe_leader = "node1"},
     HA_FOLLOW,
     0,
     false,
     "node1",
     "known from POST /failsafe"},
    {"unlocked, the leader that asked has no member key -> no race, nothing else",
     {.dyn_yaml = FAILSAFE_ON, .keys = {UNLOCKED}, .local = {PG_REPLICA}, .failsafe_leader = "node1"},
     HA_NONE,
     0,
     false,
     NULL,
     "not racing"},
    {"unlocked, failsafe mode switched off after a POST /failsafe less than ttl ago: the promise stands, no race",
     {.keys = {UNLOCKED},
      .local = {PG_REPLICA, .wal_position = 5000},
      .peers = {PEER("node3", 5000)},
      .failsafe_leader = "node1"},
     HA_NONE,
     0,
     false,
     NULL,
     "asked in POST /failsafe less than ttl ago; not racing"},
    {"unlocked, the old primary itself (it asked the others) -> takes the key again",
     {.me = "node1",
      .dyn_yaml = FAILSAFE_ON,
      .keys = {UNLOCKED, K_FAILSAFE(FS_ALL)},
      .local = {PG_PRIMARY},
      .failsafe_leader = "node3"},
     HA_ACQUIRE_LOCK,
     0,
     false,
     NULL,
     "acquired session lock as a leader"},
    {"unlocked, failsafe mode, not in a non-empty /failsafe -> never wins",
     {.dyn_yaml = FAILSAFE_ON,
      .keys = {UNLOCKED, K_FAILSAFE(FS_NOT_N2)},
      .local = {PG_REPLICA},
      .peers = {PEER("node3", 5000)}},
     HA_NONE,
     0,
     false,
     NULL,
     "not in the /failsafe key"},
    {"unlocked, failsafe mode, old primary still answers as a primary -> no promotion",
     {.dyn_yaml = FAILSAFE_ON,
      .keys = {UNLOCKED, K_FAILSAFE(FS_ALL)},
      .local = {PG_REPLICA},
      .peers =
          {{.name = "node1", .reachable = true, .is_primary = true, .wal_position = 5000, .failover_priority = 1}}},
     HA_NONE,
     0,
     false,
     NULL,
     "node1 is still running as a primary"},
};

static void test_failsafe_decide(void **state) {
    (void)state;
    run_decide_rows(failsafe_rows, ELEMENTSOF(failsafe_rows));
}

static const HealthiestRow failsafe_healthiest_rows[] = {
    {"failsafe mode, named in /failsafe",
     {.dyn_yaml = FAILSAFE_ON, .keys = {UNLOCKED, K_FAILSAFE(FS_ALL)}, .local = {PG_REPLICA}},
     true,
     NULL},
    {"failsafe mode, not named in /failsafe",
     {.dyn_yaml = FAILSAFE_ON, .keys = {UNLOCKED, K_FAILSAFE(FS_NOT_N2)}, .local = {PG_REPLICA}},
     false,
     "not in the /failsafe key"},
    {"failsafe mode, not named in /failsafe, named candidate of a manual failover: still not (it may not have been "
     "asked whether the old primary runs on failsafe)",
     {.dyn_yaml = FAILSAFE_ON,
      .keys = {UNLOCKED, K_FAILSAFE(FS_NOT_N2), K_FAILOVER("{\"member\":\"node2\"}")},
      .local = {PG_REPLICA}},
     false,
     "not in the /failsafe key"},
    {"failsafe mode, an empty /failsafe does not exclude anyone",
     {.dyn_yaml = FAILSAFE_ON, .keys = {UNLOCKED, K_FAILSAFE("{}")}, .local = {PG_REPLICA}},
     true,
     NULL},
    {"failsafe mode off: /failsafe is not looked at",
     {.keys = {UNLOCKED, K_FAILSAFE(FS_NOT_N2)}, .local = {PG_REPLICA}},
     true,
     NULL},
    {"failsafe mode, a running primary not named in /failsafe (rule 3 comes first)",
     {.dyn_yaml = FAILSAFE_ON, .keys = {UNLOCKED, K_FAILSAFE(FS_NOT_N2)}, .local = {PG_PRIMARY}},
     true,
     NULL},
};

static void test_failsafe_healthiest(void **state) {
    (void)state;
    run_healthiest_rows(failsafe_healthiest_rows, ELEMENTSOF(failsafe_healthiest_rows));
}

/* The survival decision (failsafe_survives()) on the /failsafe key and the answers to POST /failsafe. */
static void test_failsafe_survival(void **state) {
    (void)state;
    cJSON *all = cJSON_Parse(FS_ALL), *not_me = cJSON_Parse(FS_NOT_N2), *single = cJSON_Parse("{\"node2\":\"u\"}");
    cJSON *array = cJSON_Parse("[\"node2\"]");
    char why[256];
    const FailsafeAnswer ok[] = {{"node1", true}, {"node3", true}};
    assert_true(failsafe_survives(all, "node2", ok, 2, why, sizeof why));
    /* one member answered 503 (or "Running as a leader", or something that is not "Accepted") */
    const FailsafeAnswer refused[] = {{"node1", true}, {"node3", false}};
    assert_false(failsafe_survives(all, "node2", refused, 2, why, sizeof why));
    assert_non_null(strstr(why, "node3 did not accept"));
    /* one member did not answer in time: no answer at all */
    assert_false(failsafe_survives(all, "node2", ok, 1, why, sizeof why));
    assert_non_null(strstr(why, "node3"));
    /* answers from members the key does not name count for nothing */
    const FailsafeAnswer strangers[] = {{"node1", true}, {"node9", true}};
    assert_false(failsafe_survives(all, "node2", strangers, 2, why, sizeof why));
    /* no key, a key that is not an object, a key without our name */
    assert_false(failsafe_survives(NULL, "node2", ok, 2, why, sizeof why));
    assert_non_null(strstr(why, "no /failsafe key"));
    assert_false(failsafe_survives(array, "node2", ok, 2, why, sizeof why));
    assert_false(failsafe_survives(not_me, "node2", ok, 2, why, sizeof why));
    assert_non_null(strstr(why, "does not name me"));
    /* a key naming only us: a single-member cluster runs on */
    assert_true(failsafe_survives(single, "node2", NULL, 0, why, sizeof why));
    cJSON_Delete(all);
    cJSON_Delete(not_me);
    cJSON_Delete(single);
    cJSON_Delete(array);
}

/* A renewal (or a race) that failed on a DCS error: failsafe mode keeps a running primary only with the
 * survival decision, and never one that is being started or promoted. */
static void test_failsafe_lock_failure(void **state) {
    (void)state;
    DynConfig on, off;
    load_dyn(&on, FAILSAFE_ON);
    load_dyn(&off, NULL);
    const LocalState primary = {RUNNING_PRIMARY}, promoting = {RUNNING_REPLICA, .maybe_primary = true};
    const LocalState replica = {RUNNING_REPLICA};
    LockFailure survived = {.dcs_error = true, .failsafe_survived = true}, refused = {.dcs_error = true};
    LockFailure lost = {.failsafe_survived = true}; /* a lost compare-and-swap is no DCS error */
    LockFailure starting = {.dcs_error = true, .failsafe_survived = true, .while_starting_as_primary = true};
    assert_int_equal(decide_lock_failure(&primary, &on, "node1", HA_UPDATE_LOCK, &survived), LOCK_FAIL_FAILSAFE);
    assert_int_equal(decide_lock_failure(&primary, &on, "node1", HA_ACQUIRE_LOCK, &survived), LOCK_FAIL_FAILSAFE);
    assert_int_equal(decide_lock_failure(&primary, &on, "node1", HA_UPDATE_LOCK, &refused), LOCK_FAIL_DEMOTE_OFFLINE);
    assert_int_equal(decide_lock_failure(&primary, &off, "node1", HA_UPDATE_LOCK, &survived), LOCK_FAIL_DEMOTE_OFFLINE);
    assert_int_equal(decide_lock_failure(&primary, &on, "node1", HA_UPDATE_LOCK, &lost), LOCK_FAIL_DEMOTE_NOLOCK);
    assert_int_equal(decide_lock_failure(&promoting, &on, "node1", HA_UPDATE_LOCK, &survived), LOCK_FAIL_DEMOTE_NOLOCK);
    assert_int_equal(decide_lock_failure(&primary, &on, "node1", HA_UPDATE_LOCK_ONLY, &starting),
                     LOCK_FAIL_STOP_STARTING);
    assert_int_equal(decide_lock_failure(&replica, &on, "node1", HA_UPDATE_LOCK, &survived), LOCK_FAIL_NOTHING);
    dyn_config_free(&on);
    dyn_config_free(&off);
}

/* ------------------------------------------------------------------------------------------------
 * standby clusters (§4.2 B3, §4.4 U1/L1/L2, Patroni's enforce_follow_remote_member) */

#define STANDBY_DYN "standby_cluster:\n  host: 10.9.9.9\n  port: 5433\n"

typedef struct StandbyRow {
    DecideRow r;
    bool standby_leader; /* Decision.standby_leader */
} StandbyRow;

/* clang-format off */
static const StandbyRow standby_rows[] = {
    {{"standby cluster, empty data directory, nothing in the DCS: race to bootstrap the standby leader",
      {.dyn_yaml = STANDBY_DYN, .local = {.data_dir_empty = true}},
      HA_BOOTSTRAP, 0, false, NULL, "trying to bootstrap a new standby leader"}, false},
    {{"standby lock holder, a replica not yet following the remote: renew and re-point, no promotion",
      {.me = "node1", .dyn_yaml = STANDBY_DYN, .keys = {LOCKED}, .local = {PG_REPLICA, .following = "node2"}},
      HA_UPDATE_LOCK, 0, false, FOLLOW_REMOTE, "promoted self to a standby leader because i had the session lock"},
     true},
    {{"standby lock holder following the remote: no action",
      {.me = "node1", .dyn_yaml = STANDBY_DYN, .keys = {LOCKED}, .local = {PG_REPLICA, .following = FOLLOW_REMOTE}},
      HA_UPDATE_LOCK, 0, false, FOLLOW_REMOTE, "no action. I am (node1), the standby leader with the lock"}, true},
    {{"standby_cluster added to a running cluster: its primary is demoted, keeping the key (demote-cluster)",
      {.me = "node1", .dyn_yaml = STANDBY_DYN, .keys = {LOCKED}, .local = {PG_PRIMARY}},
      HA_UPDATE_LOCK, 0, false, FOLLOW_REMOTE, "cannot be a real primary in standby cluster"}, true},
    {{"standby_cluster added while paused: the primary is left alone",
      {.me = "node1", .dyn_yaml = STANDBY_DYN "pause: true\n", .keys = {LOCKED}, .local = {PG_PRIMARY}},
      HA_UPDATE_LOCK_ONLY, 0, false, NULL, "PAUSE: continue to run as primary without lock"}, false},
    {{"paused standby leader in recovery: keeps the key (no release as in a normal cluster)",
      {.me = "node1", .dyn_yaml = STANDBY_DYN "pause: true\n", .keys = {LOCKED},
       .local = {PG_REPLICA, .following = FOLLOW_REMOTE}},
      HA_UPDATE_LOCK, 0, false, FOLLOW_REMOTE, "PAUSE: no action. I am (node1), the standby leader"}, true},
    {{"standby leader with a switchover to a healthy member: hands the key over (Patroni's demote)",
      {.me = "node1", .dyn_yaml = STANDBY_DYN, .keys = {LOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node2\"}")},
       .local = {PG_REPLICA, .following = FOLLOW_REMOTE}, .peers = {PEER("node2", 5000)}},
      HA_SWITCHOVER, DEMOTE_GRACEFUL, false, "node2", "switchover: demoting myself"}, true},
    {{"standby leader with a failover (no leader named) to any member: hands the key over",
      {.me = "node1", .dyn_yaml = STANDBY_DYN, .keys = {LOCKED, K_FAILOVER("{\"member\":\"node2\"}")},
       .local = {PG_REPLICA, .following = FOLLOW_REMOTE}, .peers = {PEER("node2", 5000)}},
      HA_SWITCHOVER, DEMOTE_GRACEFUL, false, "node2", "manual failover: demoting myself"}, true},
    {{"standby leader with a switchover to an unreachable member: cleared, still following the remote",
      {.me = "node1", .dyn_yaml = STANDBY_DYN, .keys = {LOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node3\"}")},
       .local = {PG_REPLICA, .following = FOLLOW_REMOTE}, .peers = {PEER("node2", 5000)}},
      HA_CLEAR_FAILOVER, 0, false, FOLLOW_REMOTE, "no healthy members found"}, true},
    {{"standby leader with a switchover naming another leader: cleared",
      {.me = "node1", .dyn_yaml = STANDBY_DYN, .keys = {LOCKED, K_FAILOVER("{\"leader\":\"node3\",\"member\":\"node2\"}")},
       .local = {PG_REPLICA, .following = FOLLOW_REMOTE}, .peers = {PEER("node2", 5000)}},
      HA_CLEAR_FAILOVER, 0, false, FOLLOW_REMOTE, "leader name does not match"}, true},
    {{"standby cluster, strict synchronous_mode in /config: ignored for a switchover (no sync in a standby cluster)",
      {.me = "node1", .dyn_yaml = STANDBY_DYN "synchronous_mode: true\nsynchronous_mode_strict: true\n",
       .keys = {LOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node2\"}")},
       .local = {PG_REPLICA, .following = FOLLOW_REMOTE}, .peers = {PEER("node2", 5000)}},
      HA_SWITCHOVER, DEMOTE_GRACEFUL, false, "node2", "switchover: demoting myself"}, true},
    {{"standby cluster after the handover, the named candidate: takes the key as the standby leader",
      {.me = "node2", .dyn_yaml = STANDBY_DYN, .keys = {UNLOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node2\"}")},
       .local = {PG_REPLICA, .wal_position = 4000, .following = "node1"}, .peers = {PEER("node1", 5000)}},
      HA_ACQUIRE_LOCK, 0, false, FOLLOW_REMOTE, "promoted self to a standby leader by acquiring session lock"}, true},
    {{"standby cluster after the handover, the candidate is gone: the former standby leader takes the key back",
      {.me = "node1", .dyn_yaml = STANDBY_DYN, .keys = {UNLOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node2\"}")},
       .local = {PG_REPLICA, .wal_position = 5000, .following = FOLLOW_REMOTE}},
      HA_ACQUIRE_LOCK, 0, false, FOLLOW_REMOTE, "promoted self to a standby leader by acquiring session lock"}, true},
    {{"standby cluster after the handover, the former standby leader: waits for the candidate",
      {.me = "node1", .dyn_yaml = STANDBY_DYN, .keys = {UNLOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node2\"}")},
       .local = {PG_REPLICA, .wal_position = 5000, .following = FOLLOW_REMOTE}, .peers = {PEER("node2", 4000)}},
      HA_NONE, 0, false, NULL, "not the healthiest node (the failover candidate node2 is healthy)"}, false},
    {{"paused standby leader with a failover key: left alone (never cleared while paused)",
      {.me = "node1", .dyn_yaml = STANDBY_DYN "pause: true\n",
       .keys = {LOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node2\"}")},
       .local = {PG_REPLICA, .following = FOLLOW_REMOTE}, .peers = {PEER("node2", 5000)}},
      HA_UPDATE_LOCK, 0, false, FOLLOW_REMOTE, "PAUSE: no action. I am (node1), the standby leader"}, true},
    {{"standby leader with a scheduled switchover not yet due: left alone until its time",
      {.me = "node1", .dyn_yaml = STANDBY_DYN,
       .keys = {LOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node2\","
                                   "\"scheduled_at\":\"2025-06-01T12:00:00+00:00\"}")},
       .local = {PG_REPLICA, .following = FOLLOW_REMOTE}, .peers = {PEER("node2", 5000)}},
      HA_UPDATE_LOCK, 0, false, FOLLOW_REMOTE, "no action. I am (node1), the standby leader"}, true},
    {{"paused standby cluster without a leader key, a running primary: takes the key, not demoted",
      {.dyn_yaml = STANDBY_DYN "pause: true\n", .keys = {UNLOCKED}, .local = {PG_PRIMARY, .wal_position = 5000},
       .peers = {PEER("node3", 4000)}},
      HA_ACQUIRE_LOCK, 0, false, NULL, "PAUSE: continue to run as primary without lock"}, false},
    {{"standby cluster lost /initialize, a replica that has run here (cb_called): writes it back, keeps running",
      {.dyn_yaml = STANDBY_DYN, .keys = {K_M2, K_M3}, .local = {PG_REPLICA, .cb_called = true}},
      HA_WRITE_INITIALIZE, 0, false, NULL, "publishing system identifier"}, false},
    {{"standby cluster without /initialize, a replica joining (no callback yet): fatal, as Patroni",
      {.dyn_yaml = STANDBY_DYN, .keys = {K_M2, K_M3}, .local = {PG_REPLICA}},
      HA_FATAL, 0, false, NULL, "start the primary first"}, false},
    {{"standby cluster, empty data directory, initialized, no leader: waits for the standby leader",
      {.dyn_yaml = STANDBY_DYN, .keys = {K_INIT, K_M3}, .local = {.data_dir_empty = true}},
      HA_NONE, 0, false, NULL, "waiting for standby_leader to bootstrap"}, false},
    {{"standby leader with a timed-out status query: renews only",
      {.me = "node1", .dyn_yaml = STANDBY_DYN, .keys = {LOCKED},
       .local = {PG_REPLICA, .status_cached = true, .following = FOLLOW_REMOTE}},
      HA_UPDATE_LOCK_ONLY, 0, false, NULL, "cached role"}, false},
    {{"standby leader's PostgreSQL stopped (it ran as a primary): starts in recovery following the remote",
      {.me = "node1", .dyn_yaml = STANDBY_DYN, .keys = {LOCKED}, .local = {PG_STOPPED, .was_primary = true}},
      HA_START, 0, false, FOLLOW_REMOTE, "starting as a standby leader following the remote primary"}, false},
    {{"standby cluster unlocked, the healthiest replica: takes the key as the new standby leader",
      {.dyn_yaml = STANDBY_DYN, .keys = {UNLOCKED}, .local = {PG_REPLICA, .wal_position = 5000, .following = "node1"},
       .peers = {PEER("node3", 4000)}},
      HA_ACQUIRE_LOCK, 0, false, FOLLOW_REMOTE, "promoted self to a standby leader by acquiring session lock"}, true},
    {{"standby cluster unlocked, a nostream replica: takes the key, follows nobody",
      {.dyn_yaml = STANDBY_DYN, .local_yaml = "tags:\n  nostream: true\n", .keys = {UNLOCKED},
       .local = {PG_REPLICA, .wal_position = 5000}, .peers = {PEER("node3", 4000)}},
      HA_ACQUIRE_LOCK, 0, false, "", "standby leader"}, true},
    {{"standby cluster unlocked: check_timeline does not apply (the remote's timelines are not ours)",
      {.dyn_yaml = STANDBY_DYN "check_timeline: true\n", .keys = {UNLOCKED, K_HISTORY_TL3},
       .local = {PG_REPLICA_ANY_TL, .timeline = 1, .wal_position = 5000}, .peers = {PEER("node3", 4000)}},
      HA_ACQUIRE_LOCK, 0, false, FOLLOW_REMOTE, NULL}, true},
    {{"standby cluster unlocked, a stopped replica: starts following the remote",
      {.dyn_yaml = STANDBY_DYN, .keys = {UNLOCKED}, .local = {PG_STOPPED}},
      HA_START, 0, false, FOLLOW_REMOTE, "starting as a secondary following the remote primary"}, false},
    {{"standby cluster, a replica of the standby leader: follows it",
      {.dyn_yaml = STANDBY_DYN, .keys = {LOCKED}, .local = {PG_REPLICA, .following = "node1"}},
      HA_NONE, 0, false, "node1", "a secondary, and following a standby leader (node1)"}, false},
    {{"standby cluster, a replica pointed at the remote while unlocked: re-pointed at the new standby leader",
      {.dyn_yaml = STANDBY_DYN, .keys = {LOCKED}, .local = {PG_REPLICA, .following = FOLLOW_REMOTE}},
      HA_FOLLOW, 0, false, "node1", "following a standby leader (node1)"}, false},
    {{"standby cluster, a primary without the key: demoted at once",
      {.me = "node3", .dyn_yaml = STANDBY_DYN, .keys = {LOCKED}, .local = {PG_PRIMARY}},
      HA_DEMOTE, DEMOTE_IMMEDIATE_NOLOCK, false, NULL, NULL}, false},
    {{"standby_cluster removed (promote-cluster): the lock holder in recovery is promoted",
      {.me = "node1", .keys = {LOCKED}, .local = {PG_REPLICA, .following = FOLLOW_REMOTE}},
      HA_UPDATE_LOCK, 0, false, NULL, "promoted self to leader because I had the session lock"}, false},
    {{"standby_cluster with only primary_slot_name is no standby cluster (Patroni's is_standby_cluster)",
      {.me = "node1", .dyn_yaml = "standby_cluster:\n  primary_slot_name: x\n  host: ''\n", .keys = {LOCKED},
       .local = {PG_REPLICA}},
      HA_UPDATE_LOCK, 0, false, NULL, "promoted self to leader because I had the session lock"}, false},
    {{"standby_cluster with restore_command only is a standby cluster",
      {.me = "node1", .dyn_yaml = "standby_cluster:\n  restore_command: cp /a/%f %p\n", .keys = {LOCKED},
       .local = {PG_REPLICA}},
      HA_UPDATE_LOCK, 0, false, FOLLOW_REMOTE, "standby leader"}, true},
};
/* clang-format on */

static void test_standby_cluster(void **state) {
    (void)state;
    size_t failed = 0;
    for (size_t i = 0; i < ELEMENTSOF(standby_rows); i++) {
        const StandbyRow *r = &standby_rows[i];
        World w;
        world_build(&w, &r->r.in);
        Decision d;
        decide(&w.o, &d);
        if (!check_decision(&r->r, &d) || d.standby_leader != r->standby_leader) {
            failed++;
            print_error("row %zu FAILED: %s\n   expected: action=%s target=%s standby_leader=%d message~\"%s\"\n"
                        "   got:      action=%s target=\"%s\" standby_leader=%d message=\"%s\"\n",
                        i, r->r.desc, ha_action_name(r->r.action), r->r.target ? r->r.target : "(any)",
                        r->standby_leader, r->r.msg ? r->r.msg : "(any)", ha_action_name(d.action), d.target,
                        d.standby_leader, d.message);
        }
        world_free(&w);
    }
    assert_int_equal(failed, 0);
}

static void test_standby_cluster_config(void **state) {
    (void)state;
    static const struct {
        const char *yaml;
        bool standby;
    } cases[] = {
        {"standby_cluster:\n  host: h\n", true},
        {"standby_cluster:\n  port: 5432\n", true},
        {"standby_cluster:\n  restore_command: x\n", true},
        {"standby_cluster:\n  host: ''\n  port: 0\n  restore_command: null\n", false},
        {"standby_cluster:\n  primary_slot_name: s\n", false},
        {"ttl: 30\n", false},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        DynConfig d;
        load_dyn(&d, cases[i].yaml);
        assert_int_equal(dyn_is_standby_cluster(&d), cases[i].standby);
        dyn_config_free(&d);
    }
    DynConfig d;
    load_dyn(&d, "standby_cluster:\n  host: h\n  port: 5433\n  recovery_min_apply_delay: ''\n");
    assert_string_equal(dyn_standby_str(&d, "host"), "h");
    assert_string_equal(dyn_standby_str(&d, "port"), "5433");
    assert_null(dyn_standby_str(&d, "recovery_min_apply_delay"));
    assert_null(dyn_standby_str(&d, "restore_command"));
    dyn_config_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_standby_cluster),
        cmocka_unit_test(test_standby_cluster_config),
        cmocka_unit_test(test_failsafe_lock_failure),
        cmocka_unit_test(test_failsafe_decide),
        cmocka_unit_test(test_failsafe_healthiest),
        cmocka_unit_test(test_failsafe_survival),
        cmocka_unit_test(test_tilt_and_dcs_error),
        cmocka_unit_test(test_fencing_rows),
        cmocka_unit_test(test_long_action),
        cmocka_unit_test(test_bootstrap),
        cmocka_unit_test(test_sysid),
        cmocka_unit_test(test_pg_not_running_or_starting),
        cmocka_unit_test(test_table_u),
        cmocka_unit_test(test_table_l),
        cmocka_unit_test(test_status_cached),
        cmocka_unit_test(test_switchover_on_leader),
        cmocka_unit_test(test_is_healthiest_node),
        cmocka_unit_test(test_pure),
        cmocka_unit_test(test_lock_failure),
        cmocka_unit_test(test_needs_peers),
        cmocka_unit_test(test_probe_parse_tags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
