/* REST health checks (spec §2.3), the `lag` parameter and the GET /cluster document (§2.4), as
 * pure functions of a published snapshot or a cluster view. The snapshot fields follow what the HA
 * thread publishes (ha.c publish()): `sync_standby` = our name is in /sync, `quorum_standby` =
 * additionally synchronous_mode is quorum; `tags` = the effective tags, numbers as raw JSON. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "unit_helpers.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/snapshot.h"
#include "common/util.h"
#include "common/yamltree.h"
#include "dcs/cluster.h"
#include "pg/pg.h"
#include "restapi/restapi.h"

/* the monotonic clock of the health checks' requests */
#define T_NOW ((usec_t)1000 * USEC_PER_SEC)
/* ------------------------------------------------------------------------------------------------
 * health_check_code */

typedef struct HealthRow {
    const char *desc;
    const char *path;  /* query string stripped, as the server passes it */
    const char *query; /* "lag=10MB&tag_foo=bar", or NULL */
    /* the snapshot */
    const char *state, *role;
    bool pg_running, in_recovery;
    long long replayed;
    bool has_optime;
    long long optime;
    bool pause, has_cluster, is_leader, standby_cluster, sync_standby, quorum_standby;
    const char *tags_yaml; /* effective tags, as YAML */
    int code;
    long long latest_end; /* pg_stat_wal_receiver.latest_end_lsn (0: none) */
} HealthRow;

#define MB (1024LL * 1024)

/* A running primary holding the lock; a running streaming replica 0 bytes behind /status. */
#define PRIMARY "running", "primary", true, false, 0, true, 5000
#define REPLICA "running", "replica", true, true, 5000, true, 5000
#define REPLICA_BEHIND_20MB "running", "replica", true, true, 5000, true, 5000 + 20 * MB
/* pause, has_cluster, is_leader, standby_cluster, sync_standby, quorum_standby */
#define LEADER false, true, true, false, false, false
#define NOT_LEADER false, true, false, false, false, false
#define SYNC false, true, false, false, true, false
#define QUORUM false, true, false, false, true, true

#define TAGS                                                                                   \
    "foo: bar\nflag: true\ncustom_off: false\nnosync: false\nclonefrom: false\nversion: 1.4\n" \
    "count: 5\nprecise: 1.23456789\nbig: 1.0e+16\nempty: ''\n"

static const HealthRow health_rows[] = {
    /* the lock holder */
    {"leader: / is /primary", "/", NULL, PRIMARY, LEADER, NULL, 200},
    {"leader: empty path is /primary", "", NULL, PRIMARY, LEADER, NULL, 200},
    {"leader: /primary", "/primary", NULL, PRIMARY, LEADER, NULL, 200},
    {"leader: /master still works", "/master", NULL, PRIMARY, LEADER, NULL, 200},
    {"leader: /read-write", "/read-write", NULL, PRIMARY, LEADER, NULL, 200},
    {"leader: /leader", "/leader", NULL, PRIMARY, LEADER, NULL, 200},
    {"leader: /standby-leader", "/standby-leader", NULL, PRIMARY, LEADER, NULL, 503},
    {"leader: /standby_leader", "/standby_leader", NULL, PRIMARY, LEADER, NULL, 503},
    {"leader: /replica", "/replica", NULL, PRIMARY, LEADER, NULL, 503},
    {"leader: /read-only", "/read-only", NULL, PRIMARY, LEADER, NULL, 200},
    {"leader: /health", "/health", NULL, PRIMARY, LEADER, NULL, 200},
    {"leader: /sync", "/sync", NULL, PRIMARY, LEADER, NULL, 503},
    {"leader: /synchronous", "/synchronous", NULL, PRIMARY, LEADER, NULL, 503},
    {"leader: /async (replica_code)", "/async", NULL, PRIMARY, LEADER, NULL, 503},
    {"leader: /quorum", "/quorum", NULL, PRIMARY, LEADER, NULL, 503},
    {"leader: /read-only-sync", "/read-only-sync", NULL, PRIMARY, LEADER, NULL, 200},
    {"leader: /read-only-synchronous", "/read-only-synchronous", NULL, PRIMARY, LEADER, NULL, 200},
    {"leader: /read-only-quorum", "/read-only-quorum", NULL, PRIMARY, LEADER, NULL, 200},
    {"leader: HEAD /patroni goes through the table", "/patroni", NULL, PRIMARY, LEADER, NULL, 503},
    {"leader: HEAD /liveness goes through the table", "/liveness", NULL, PRIMARY, LEADER, NULL, 503},
    {"leader: unknown path", "/nonsense", NULL, PRIMARY, LEADER, NULL, 503},
    {"leader: substring routing (/primary/x)", "/primary/anything", NULL, PRIMARY, LEADER, NULL, 200},
    {"leader: substring routing (/foo-leader)", "/foo-leader", NULL, PRIMARY, LEADER, NULL, 200},
    {"leader: exact match for /sync (/sync/x is unknown)", "/sync/x", NULL, PRIMARY, LEADER, NULL, 503},
    {"leader: the lag of ?lag= does not matter", "/primary", "lag=0", "running", "primary", true, false, 0, true,
     90 * MB, LEADER, NULL, 200},
    {"leader: tag filter ignored on /primary", "/primary", "tag_foo=nomatch", PRIMARY, LEADER, TAGS, 200},
    {"leader: tag filter ignored on /leader", "/leader", "tag_missing=x", PRIMARY, LEADER, TAGS, 200},
    {"leader: tag filter applied on /read-only", "/read-only", "tag_foo=nomatch", PRIMARY, LEADER, TAGS, 503},
    {"leader: tag filter applied on /read-only (match)", "/read-only", "tag_foo=bar", PRIMARY, LEADER, TAGS, 200},
    {"leader: tag filter applied on /health", "/health", "tag_foo=nomatch", PRIMARY, LEADER, TAGS, 503},
    {"leader: noloadbalance does not affect /primary", "/primary", NULL, PRIMARY, LEADER, "noloadbalance: true\n", 200},
    {"leader without the cluster view (DCS not read within ttl), not paused", "/primary", NULL, "running", "primary",
     true, false, 0, false, 0, false, false, true, false, false, false, NULL, 200},

    /* /primary reflects lock ownership, not pg_is_in_recovery() */
    {"a running primary that does not hold the lock: /primary", "/primary", NULL, PRIMARY, NOT_LEADER, NULL, 503},
    {"a running primary that does not hold the lock: /leader", "/leader", NULL, PRIMARY, NOT_LEADER, NULL, 503},
    {"a running primary that does not hold the lock: /read-write", "/read-write", NULL, PRIMARY, NOT_LEADER, NULL, 503},
    {"a running primary that does not hold the lock: /read-only", "/read-only", NULL, PRIMARY, NOT_LEADER, NULL, 503},
    {"a running primary that does not hold the lock: /health", "/health", NULL, PRIMARY, NOT_LEADER, NULL, 200},
    {"lock holder still in recovery (promoting): /primary", "/primary", NULL, REPLICA, LEADER, NULL, 200},
    {"lock holder still in recovery (promoting): /replica", "/replica", NULL, REPLICA, LEADER, NULL, 200},

    /* a replica */
    {"replica: /replica", "/replica", NULL, REPLICA, NOT_LEADER, NULL, 200},
    {"replica: /read-only", "/read-only", NULL, REPLICA, NOT_LEADER, NULL, 200},
    {"replica: /", "/", NULL, REPLICA, NOT_LEADER, NULL, 503},
    {"replica: /primary", "/primary", NULL, REPLICA, NOT_LEADER, NULL, 503},
    {"replica: /master", "/master", NULL, REPLICA, NOT_LEADER, NULL, 503},
    {"replica: /read-write", "/read-write", NULL, REPLICA, NOT_LEADER, NULL, 503},
    {"replica: /leader", "/leader", NULL, REPLICA, NOT_LEADER, NULL, 503},
    {"replica: /standby-leader", "/standby-leader", NULL, REPLICA, NOT_LEADER, NULL, 503},
    {"replica: /health", "/health", NULL, REPLICA, NOT_LEADER, NULL, 200},
    {"replica: /async", "/async", NULL, REPLICA, NOT_LEADER, NULL, 200},
    {"replica: /asynchronous", "/asynchronous", NULL, REPLICA, NOT_LEADER, NULL, 200},
    {"replica: /sync", "/sync", NULL, REPLICA, NOT_LEADER, NULL, 503},
    {"replica: /quorum", "/quorum", NULL, REPLICA, NOT_LEADER, NULL, 503},
    {"replica: /read-only-sync", "/read-only-sync", NULL, REPLICA, NOT_LEADER, NULL, 503},
    {"replica: /read-only-quorum", "/read-only-quorum", NULL, REPLICA, NOT_LEADER, NULL, 503},
    {"replica: unknown path", "/unknown", NULL, REPLICA, NOT_LEADER, NULL, 503},
    {"replica: /async needs the cluster view", "/async", NULL, "running", "replica", true, true, 5000, true, 5000,
     false, false, false, false, false, false, NULL, 503},
    {"replica: /replica does not need the cluster view", "/replica", NULL, "running", "replica", true, true, 5000,
     false, 0, false, false, false, false, false, false, NULL, 200},

    /* noloadbalance */
    {"noloadbalance: /replica", "/replica", NULL, REPLICA, NOT_LEADER, "noloadbalance: true\n", 503},
    {"noloadbalance: /read-only", "/read-only", NULL, REPLICA, NOT_LEADER, "noloadbalance: true\n", 503},
    {"noloadbalance: /async", "/async", NULL, REPLICA, NOT_LEADER, "noloadbalance: true\n", 503},
    {"noloadbalance: /health is still 200", "/health", NULL, REPLICA, NOT_LEADER, "noloadbalance: true\n", 200},

    /* ?lag= */
    {"lag: 20MB behind, no limit", "/replica", NULL, REPLICA_BEHIND_20MB, NOT_LEADER, NULL, 200},
    {"lag: 20MB behind, lag=10MB", "/replica", "lag=10MB", REPLICA_BEHIND_20MB, NOT_LEADER, NULL, 503},
    {"lag: 20MB behind, lag=30MB", "/replica", "lag=30MB", REPLICA_BEHIND_20MB, NOT_LEADER, NULL, 200},
    {"lag: exactly the limit is not lagging", "/replica", "lag=20MB", REPLICA_BEHIND_20MB, NOT_LEADER, NULL, 200},
    {"lag: in plain bytes", "/replica", "lag=20971519", REPLICA_BEHIND_20MB, NOT_LEADER, NULL, 503},
    {"lag: in kB", "/replica", "lag=20480kB", REPLICA_BEHIND_20MB, NOT_LEADER, NULL, 200},
    {"lag: invalid means unlimited", "/replica", "lag=lots", REPLICA_BEHIND_20MB, NOT_LEADER, NULL, 200},
    {"lag: affects /read-only", "/read-only", "lag=1MB", REPLICA_BEHIND_20MB, NOT_LEADER, NULL, 503},
    {"lag: affects /async", "/async", "lag=1MB", REPLICA_BEHIND_20MB, NOT_LEADER, NULL, 503},
    {"lag: does not affect /health", "/health", "lag=1MB", REPLICA_BEHIND_20MB, NOT_LEADER, NULL, 200},
    {"lag: missing /status optime counts as 0", "/replica", "lag=0", "running", "replica", true, true, 5000, false, 0,
     NOT_LEADER, NULL, 200},
    {"lag: missing replayed location counts as 0", "/replica", "lag=4999", "running", "replica", true, true, 0, true,
     5000, NOT_LEADER, NULL, 503},
    {"lag: lag=0 and in sync", "/replica", "lag=0", REPLICA, NOT_LEADER, NULL, 200},
    {"lag: the first ?lag= counts", "/replica", "lag=10MB&lag=30MB", REPLICA_BEHIND_20MB, NOT_LEADER, NULL, 503},
    {"lag: an empty ?lag= is skipped", "/replica", "lag=&lag=10MB", REPLICA_BEHIND_20MB, NOT_LEADER, NULL, 503},
    {"lag: the /status optime of a stale cluster view is not used", "/replica", "lag=10MB", "running", "replica", true,
     true, 5000, true, 5000 + 20 * MB, false, false, false, false, false, false, NULL, 200},
    /* Patroni 4.1: the leader's WAL end the WAL receiver heard of (latest_end_lsn) when further than /status */
    {"lag (4.1): the receiver's latest_end_lsn 20MB ahead", "/replica", "lag=10MB", REPLICA, NOT_LEADER, NULL, 503,
     5000 + 20 * MB},
    {"lag (4.1): the receiver's latest_end_lsn within the limit", "/replica", "lag=30MB", REPLICA, NOT_LEADER, NULL,
     200, 5000 + 20 * MB},
    {"lag (4.1): a latest_end_lsn behind /status does not lower it", "/replica", "lag=10MB", REPLICA_BEHIND_20MB,
     NOT_LEADER, NULL, 503, 5000},
    {"lag (4.1): latest_end_lsn counts without a cluster view", "/replica", "lag=10MB", "running", "replica", true,
     true, 5000, false, 0, false, false, false, false, false, false, NULL, 503, 5000 + 20 * MB},

    /* not running */
    {"stopped replica: /replica", "/replica", NULL, "stopped", "replica", false, false, 0, true, 5000, NOT_LEADER, NULL,
     503},
    {"stopped replica: /read-only", "/read-only", NULL, "stopped", "replica", false, false, 0, true, 5000, NOT_LEADER,
     NULL, 503},
    {"stopped replica: /health", "/health", NULL, "stopped", "replica", false, false, 0, true, 5000, NOT_LEADER, NULL,
     503},
    {"starting replica: /replica", "/replica", NULL, "starting", "replica", true, true, 5000, true, 5000, NOT_LEADER,
     NULL, 503},
    {"starting replica: /health", "/health", NULL, "starting", "replica", true, true, 5000, true, 5000, NOT_LEADER,
     NULL, 503},
    {"uninitialized: /replica", "/replica", NULL, "stopped", "uninitialized", false, false, 0, false, 0, NOT_LEADER,
     NULL, 503},

    /* synchronous and quorum standbys */
    {"sync standby: /sync", "/sync", NULL, REPLICA, SYNC, NULL, 200},
    {"sync standby: /synchronous", "/synchronous", NULL, REPLICA, SYNC, NULL, 200},
    {"sync standby: /async", "/async", NULL, REPLICA, SYNC, NULL, 503},
    {"sync standby: /quorum", "/quorum", NULL, REPLICA, SYNC, NULL, 503},
    {"sync standby: /read-only-sync", "/read-only-sync", NULL, REPLICA, SYNC, NULL, 200},
    {"sync standby: /read-only-synchronous", "/read-only-synchronous", NULL, REPLICA, SYNC, NULL, 200},
    {"sync standby: /read-only-quorum", "/read-only-quorum", NULL, REPLICA, SYNC, NULL, 503},
    {"sync standby: /replica", "/replica", NULL, REPLICA, SYNC, NULL, 200},
    {"sync standby: /read-only", "/read-only", NULL, REPLICA, SYNC, NULL, 200},
    {"sync standby lagging: /sync?lag=1MB", "/sync", "lag=1MB", REPLICA_BEHIND_20MB, SYNC, NULL, 503},
    {"sync standby with noloadbalance: /sync", "/sync", NULL, REPLICA, SYNC, "noloadbalance: true\n", 503},
    {"sync standby without the cluster view: /sync", "/sync", NULL, REPLICA, false, false, false, false, true, false,
     NULL, 503},
    {"sync standby without the cluster view: /read-only-sync", "/read-only-sync", NULL, REPLICA, false, false, false,
     false, true, false, NULL, 503},
    {"quorum standby: /quorum", "/quorum", NULL, REPLICA, QUORUM, NULL, 200},
    {"quorum standby: /sync", "/sync", NULL, REPLICA, QUORUM, NULL, 503},
    {"quorum standby: /async", "/async", NULL, REPLICA, QUORUM, NULL, 503},
    {"quorum standby: /read-only-quorum", "/read-only-quorum", NULL, REPLICA, QUORUM, NULL, 200},
    {"quorum standby: /read-only-sync", "/read-only-sync", NULL, REPLICA, QUORUM, NULL, 503},
    {"quorum standby lagging: /read-only-quorum?lag=1MB", "/read-only-quorum", "lag=1MB", REPLICA_BEHIND_20MB, QUORUM,
     NULL, 503},
    {"sync standby tag filter: /sync", "/sync", "tag_foo=other", REPLICA, SYNC, TAGS, 503},
    {"quorum standby tag filter: /read-only-quorum", "/read-only-quorum", "tag_foo=bar", REPLICA, QUORUM, TAGS, 200},

    /* tag filters (on a healthy replica) */
    {"tag: string match", "/replica", "tag_foo=bar", REPLICA, NOT_LEADER, TAGS, 200},
    {"tag: string mismatch", "/replica", "tag_foo=baz", REPLICA, NOT_LEADER, TAGS, 503},
    {"tag: case matters for strings", "/replica", "tag_foo=BAR", REPLICA, NOT_LEADER, TAGS, 503},
    {"tag: not configured", "/replica", "tag_missing=x", REPLICA, NOT_LEADER, TAGS, 503},
    {"tag: no tags at all", "/replica", "tag_foo=bar", REPLICA, NOT_LEADER, NULL, 503},
    {"tag: boolean true compares as \"true\"", "/replica", "tag_flag=true", REPLICA, NOT_LEADER, TAGS, 200},
    {"tag: boolean true is not \"True\"", "/replica", "tag_flag=True", REPLICA, NOT_LEADER, TAGS, 503},
    {"tag: boolean true is not \"1\"", "/replica", "tag_flag=1", REPLICA, NOT_LEADER, TAGS, 503},
    {"tag: custom false compares as \"false\"", "/replica", "tag_custom_off=false", REPLICA, NOT_LEADER, TAGS, 200},
    {"tag: predefined false (nosync) counts as absent", "/replica", "tag_nosync=false", REPLICA, NOT_LEADER, TAGS, 503},
    {"tag: predefined false (clonefrom) counts as absent", "/replica", "tag_clonefrom=false", REPLICA, NOT_LEADER, TAGS,
     503},
    {"tag: predefined true (nofailover)", "/replica", "tag_nofailover=true", REPLICA, NOT_LEADER, "nofailover: true\n",
     200},
    {"tag: nofailover false is kept when failover_priority is set", "/replica", "tag_nofailover=false", REPLICA,
     NOT_LEADER, "nofailover: false\nfailover_priority: 1\n", 200},
    {"tag: failover_priority as str()", "/replica", "tag_failover_priority=1", REPLICA, NOT_LEADER,
     "nofailover: false\nfailover_priority: 1\n", 200},
    {"tag: nosync false is kept when sync_priority is set (Patroni 4.1)", "/replica", "tag_nosync=false", REPLICA,
     NOT_LEADER, "nosync: false\nsync_priority: 2\n", 200},
    {"tag: sync_priority as str()", "/replica", "tag_sync_priority=2", REPLICA, NOT_LEADER,
     "nosync: false\nsync_priority: 2\n", 200},
    {"tag: integer as str()", "/replica", "tag_count=5", REPLICA, NOT_LEADER, TAGS, 200},
    {"tag: float as str()", "/replica", "tag_version=1.4", REPLICA, NOT_LEADER, TAGS, 200},
    {"tag: float with many digits as repr()", "/replica", "tag_precise=1.23456789", REPLICA, NOT_LEADER, TAGS, 200},
    {"tag: large float as repr()", "/replica", "tag_big=1e+16", REPLICA, NOT_LEADER, TAGS, 200},
    {"tag: empty string", "/replica", "tag_empty=", REPLICA, NOT_LEADER, TAGS, 200},
    {"tag: every filter must match", "/replica", "tag_foo=bar&tag_flag=true&tag_count=5", REPLICA, NOT_LEADER, TAGS,
     200},
    {"tag: one mismatch is enough", "/replica", "tag_foo=bar&tag_flag=false", REPLICA, NOT_LEADER, TAGS, 503},
    {"tag: other parameters are not tags", "/replica", "foo=nomatch&tagfoo=x", REPLICA, NOT_LEADER, TAGS, 200},
    {"tag: applied on /async", "/async", "tag_foo=baz", REPLICA, NOT_LEADER, TAGS, 503},
    {"tag: applied on /health", "/health", "tag_foo=bar", REPLICA, NOT_LEADER, TAGS, 200},
    {"tag: a lagging replica without ?lag= matches", "/replica", "tag_foo=bar", REPLICA_BEHIND_20MB, NOT_LEADER, TAGS,
     200},
    {"tag: a match does not rescue a 503 (lagging)", "/replica", "tag_foo=bar&lag=1MB", REPLICA_BEHIND_20MB, NOT_LEADER,
     TAGS, 503},

    /* paused, no valid cluster view: the role decides */
    {"paused without cluster: primary /primary", "/primary", NULL, "running", "primary", true, false, 0, false, 0, true,
     false, false, false, false, false, NULL, 200},
    {"paused without cluster: primary /leader", "/leader", NULL, "running", "primary", true, false, 0, false, 0, true,
     false, false, false, false, false, NULL, 200},
    {"paused without cluster: primary /read-only", "/read-only", NULL, "running", "primary", true, false, 0, false, 0,
     true, false, false, false, false, false, NULL, 200},
    {"paused without cluster: primary /standby-leader", "/standby-leader", NULL, "running", "primary", true, false, 0,
     false, 0, true, false, false, false, false, false, NULL, 503},
    {"paused without cluster: replica /leader", "/leader", NULL, "running", "replica", true, true, 5000, false, 0, true,
     false, false, false, false, false, NULL, 503},
    {"paused without cluster: replica /replica", "/replica", NULL, "running", "replica", true, true, 5000, false, 0,
     true, false, false, false, false, false, NULL, 200},
    {"paused without cluster: the role wins over is_leader", "/primary", NULL, "running", "replica", true, true, 5000,
     false, 0, true, false, true, false, false, false, NULL, 503},
    {"paused without cluster: standby leader /standby-leader", "/standby-leader", NULL, "running", "standby_leader",
     true, true, 5000, false, 0, true, false, false, true, false, false, NULL, 200},
    {"paused without cluster: standby leader /leader", "/leader", NULL, "running", "standby_leader", true, true, 5000,
     false, 0, true, false, false, true, false, false, NULL, 200},
    {"paused without cluster: standby leader /primary", "/primary", NULL, "running", "standby_leader", true, true, 5000,
     false, 0, true, false, false, true, false, false, NULL, 503},
    {"paused with a cluster view: the lock decides", "/primary", NULL, "running", "primary", true, false, 0, true, 0,
     true, true, false, false, false, false, NULL, 503},
    {"not paused, no cluster view, not leader: /primary", "/primary", NULL, "running", "primary", true, false, 0, false,
     0, false, false, false, false, false, false, NULL, 503},

    /* standby cluster */
    {"standby leader: /standby-leader", "/standby-leader", NULL, "running", "standby_leader", true, true, 5000, true,
     5000, false, true, true, true, false, false, NULL, 200},
    {"standby leader: /standby_leader", "/standby_leader", NULL, "running", "standby_leader", true, true, 5000, true,
     5000, false, true, true, true, false, false, NULL, 200},
    {"standby leader: /leader", "/leader", NULL, "running", "standby_leader", true, true, 5000, true, 5000, false, true,
     true, true, false, false, NULL, 200},
    {"standby leader: /primary", "/primary", NULL, "running", "standby_leader", true, true, 5000, true, 5000, false,
     true, true, true, false, false, NULL, 503},
    {"standby leader: /replica", "/replica", NULL, "running", "standby_leader", true, true, 5000, true, 5000, false,
     true, true, true, false, false, NULL, 503},
    {"standby leader: /read-only", "/read-only", NULL, "running", "standby_leader", true, true, 5000, true, 5000, false,
     true, true, true, false, false, NULL, 200},
    {"standby leader reported as replica: /standby-leader", "/standby-leader", NULL, "running", "replica", true, true,
     5000, true, 5000, false, true, true, true, false, false, NULL, 200},
    {"standby cluster lock holder not running as a replica: /standby-leader", "/standby-leader", NULL, "running",
     "primary", true, false, 0, true, 5000, false, true, true, true, false, false, NULL, 503},
    {"standby cluster replica: /replica", "/replica", NULL, "running", "replica", true, true, 5000, true, 5000, false,
     true, false, true, false, false, NULL, 200},
    {"standby cluster replica: /standby-leader", "/standby-leader", NULL, "running", "replica", true, true, 5000, true,
     5000, false, true, false, true, false, false, NULL, 503},
    {"standby cluster replica: /leader", "/leader", NULL, "running", "replica", true, true, 5000, true, 5000, false,
     true, false, true, false, false, NULL, 503},
};

/* The effective tags as the HA thread publishes them: YAML scalars converted like ha.c does. */
static cJSON *tags_from_yaml(const char *yaml) {
    char *err = NULL;
    YNode *n = yaml_parse_string(yaml, strlen(yaml), "tags", &err);
    if (!n)
        print_error("tags: %s\n", err);
    assert_non_null(n);
    cJSON *j = ynode_to_json(n);
    ynode_free(n);
    assert_true(cJSON_IsObject(j));
    return j;
}

static Snapshot *snapshot_of(const HealthRow *r) {
    Snapshot *s = snapshot_new();
    s->scope = xstrdup("demo");
    s->name = xstrdup("node2");
    s->state = xstrdup(r->state);
    s->role = xstrdup(r->role);
    s->pg_running = r->pg_running;
    s->in_recovery = r->in_recovery;
    if (r->pg_running && !r->in_recovery)
        s->xlog_location = 5000;
    s->received_location = r->replayed;
    s->replayed_location = r->replayed;
    s->has_optime = r->has_optime;
    s->cluster_optime = r->optime;
    s->pause = r->pause;
    s->has_cluster = r->has_cluster;
    s->leader_until = r->is_leader ? T_NOW + 10 * USEC_PER_SEC : 0;
    s->standby_cluster = r->standby_cluster;
    s->sync_standby = r->sync_standby;
    s->quorum_standby = r->quorum_standby;
    s->tags = r->tags_yaml ? tags_from_yaml(r->tags_yaml) : NULL;
    s->latest_end_lsn = r->latest_end;
    return s;
}

/* "a=1&b=2" -> params (pointing into the copy `buf`). */
static size_t parse_query(char *buf, QueryParam *params, size_t max) {
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, "&", &save); tok && n < max; tok = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(tok, '=');
        if (eq)
            *eq++ = '\0';
        params[n++] = (QueryParam){.key = tok, .value = eq ? eq : ""};
    }
    return n;
}

static void test_health_check_code(void **state) {
    (void)state;
    size_t failed = 0;
    for (size_t i = 0; i < ELEMENTSOF(health_rows); i++) {
        const HealthRow *r = &health_rows[i];
        Snapshot *s = snapshot_of(r);
        char buf[256] = "";
        QueryParam params[8];
        if (r->query)
            snprintf(buf, sizeof buf, "%s", r->query);
        size_t n = parse_query(buf, params, ELEMENTSOF(params));
        int code = health_check_code(s, r->path, n ? params : NULL, n, T_NOW);
        if (code != r->code) {
            failed++;
            print_error("row %zu FAILED: %s: %s%s%s -> %d, expected %d\n", i, r->desc, r->path, r->query ? "?" : "",
                        r->query ? r->query : "", code, r->code);
        }
        snapshot_unref(s);
    }
    assert_int_equal(failed, 0);
}

/* The leader's lease is evaluated per request (issue 12): a snapshot published while the lease ran says
 * "primary" until the lease's end, not for as long as the HA thread is held up before publishing again. */
static void test_health_lease_per_request(void **state) {
    (void)state;
    Snapshot *s = snapshot_new();
    s->state = xstrdup("running");
    s->role = xstrdup("primary");
    s->pg_running = true;
    s->has_cluster = true;
    s->xlog_location = 5000;
    s->leader_until = T_NOW + 3 * USEC_PER_SEC;
    static const char *const leaderish[] = {"/", "/primary", "/master", "/leader", "/read-write", "/read-only"};
    for (size_t i = 0; i < ELEMENTSOF(leaderish); i++) {
        assert_int_equal(health_check_code(s, leaderish[i], NULL, 0, T_NOW), 200);
        assert_int_equal(health_check_code(s, leaderish[i], NULL, 0, T_NOW + 3 * USEC_PER_SEC - 1), 200);
        /* the same snapshot, once the lease has run out */
        assert_int_equal(health_check_code(s, leaderish[i], NULL, 0, T_NOW + 3 * USEC_PER_SEC), 503);
        assert_int_equal(health_check_code(s, leaderish[i], NULL, 0, T_NOW + 60 * USEC_PER_SEC), 503);
    }
    assert_int_equal(readiness_code(s, NULL, 0, NULL, 0, T_NOW), 200);
    assert_int_equal(readiness_code(s, NULL, 0, NULL, 0, T_NOW + 3 * USEC_PER_SEC), 503);
    /* not the leader (demoting, stopping, or never): 503 whatever the time */
    s->leader_until = 0;
    assert_int_equal(health_check_code(s, "/primary", NULL, 0, T_NOW), 503);
    snapshot_unref(s);
}

/* ------------------------------------------------------------------------------------------------
 * parse_lag */

static void test_parse_lag(void **state) {
    (void)state;
    static const struct {
        const char *in;
        long long out;
    } rows[] = {
        {"1048576", 1048576},
        {"0", 0},
        {"100B", 100},
        {"1kB", 1024},
        {"1024kB", 1048576},
        {"10MB", 10 * MB},
        {"1GB", 1024 * MB},
        {"2TB", 2 * 1024 * 1024 * MB},
        {"", -1},
        {NULL, -1},
        {"abc", -1},
        {"MB", -1},
        {"10XB", -1},
        {"10mb", -1},
        {"10 MBs", -1},
        /* beyond long long once multiplied (found by fuzzing: an undefined conversion): as large as can be */
        {"9999999TB", LLONG_MAX},
        {"9e15TB", LLONG_MAX},
        {"9e15", 9000000000000000LL},
    };
    size_t failed = 0;
    for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
        long long got = parse_lag(rows[i].in);
        if (got != rows[i].out) {
            failed++;
            print_error("parse_lag(%s%s%s) = %lld, expected %lld\n", rows[i].in ? "\"" : "",
                        rows[i].in ? rows[i].in : "NULL", rows[i].in ? "\"" : "", got, rows[i].out);
        }
    }
    assert_int_equal(failed, 0);
    /* the saturating arithmetic the health checks apply to positions read from the DCS */
    assert_true(ll_add_sat(LLONG_MAX, 1) == LLONG_MAX);
    assert_true(ll_add_sat(LLONG_MIN, -1) == LLONG_MIN);
    assert_true(ll_add_sat(5, -7) == -2);
    assert_true(ll_sub_sat(LLONG_MAX, -1) == LLONG_MAX);
    assert_true(ll_sub_sat(LLONG_MIN, 1) == LLONG_MIN);
    assert_true(ll_sub_sat(-5, 7) == -12);
}

/* ------------------------------------------------------------------------------------------------
 * GET /readiness (Patroni 4.1, api.py _readiness()) */

typedef struct ReadyRow {
    const char *desc;
    const char *query; /* "lag=10MB&mode=write", or NULL */
    /* the snapshot */
    const char *state;
    bool pg_running, in_recovery, streaming;
    long long received, replayed, latest_end;
    bool has_cluster, has_optime;
    long long optime;
    bool is_leader, failsafe;
    long long maximum_lag_on_failover;
    int code;
    const char *why; /* Patroni's reason, logged at debug level there */
} ReadyRow;

/* a running, streaming replica: received/replayed 10 MB, latest_end_lsn unknown, cluster view valid */
#define R_STREAMING "running", true, true, true, 10 * MB, 10 * MB, 0, true, true
#define NOT_RUNNING "PostgreSQL is not running"
#define NOT_STREAMING "PostgreSQL replication state is not streaming"

static const ReadyRow ready_rows[] = {
    /* the lock holder is ready whatever else */
    {"leader: a running primary", NULL, "running", true, false, false, 0, 0, 0, true, true, 10 * MB, true, false, MB,
     200, NULL},
    {"leader: even when PostgreSQL is not running", NULL, "stopped", false, false, false, 0, 0, 0, false, false, 0,
     true, false, MB, 200, NULL},
    {"leader: a standby leader", NULL, R_STREAMING, 90 * MB, true, false, MB, 200, NULL},
    /* PostgreSQL must run */
    {"stopped replica", NULL, "stopped", false, false, false, 0, 0, 0, true, true, 10 * MB, false, false, MB, 503,
     NOT_RUNNING},
    {"starting replica", NULL, "starting", false, false, false, 0, 0, 0, true, true, 10 * MB, false, false, MB, 503,
     NOT_RUNNING},
    {"crashed replica", NULL, "crashed", false, false, false, 0, 0, 0, true, true, 10 * MB, false, false, MB, 503,
     NOT_RUNNING},
    /* ... and stream */
    {"a primary without the lock", NULL, "running", true, false, false, 0, 0, 0, true, true, 10 * MB, false, false, MB,
     503, NOT_STREAMING},
    {"a replica whose WAL receiver does not stream", NULL, "running", true, true, false, 10 * MB, 10 * MB, 0, true,
     true, 10 * MB, false, false, MB, 503, NOT_STREAMING},
    {"running but the status query failed", NULL, "running", false, false, false, 0, 0, 0, true, true, 10 * MB, false,
     false, MB, 503, NOT_STREAMING},
    /* a streaming replica */
    {"in sync", NULL, R_STREAMING, 10 * MB, false, false, MB, 200, NULL},
    {"ahead of /status", NULL, R_STREAMING, 5 * MB, false, false, MB, 200, NULL},
    {"exactly maximum_lag_on_failover behind", NULL, R_STREAMING, 11 * MB, false, false, MB, 200, NULL},
    {"one byte more", NULL, R_STREAMING, 11 * MB + 1, false, false, MB, 503,
     "Replication apply lag 1048577 exceeds maximum allowable 1048576"},
    {"maximum_lag_on_failover from the dynamic configuration", NULL, R_STREAMING, 15 * MB, false, false, 8 * MB, 200,
     NULL},
    {"lag=10MB", "lag=10MB", R_STREAMING, 15 * MB, false, false, MB, 200, NULL},
    {"lag=1kB", "lag=1kB", R_STREAMING, 15 * MB, false, false, MB, 503,
     "Replication apply lag 5242880 exceeds maximum allowable 1024"},
    {"lag=0 in sync", "lag=0", R_STREAMING, 10 * MB, false, false, MB, 200, NULL},
    {"lag=0 one byte behind", "lag=0", R_STREAMING, 10 * MB + 1, false, false, MB, 503,
     "Replication apply lag 1 exceeds maximum allowable 0"},
    {"an invalid lag is maximum_lag_on_failover", "lag=lots", R_STREAMING, 15 * MB, false, false, MB, 503,
     "Replication apply lag 5242880 exceeds maximum allowable 1048576"},
    {"an empty lag is maximum_lag_on_failover", "lag=", R_STREAMING, 15 * MB, false, false, MB, 503,
     "Replication apply lag 5242880 exceeds maximum allowable 1048576"},
    {"the first lag counts", "lag=10MB&lag=1kB", R_STREAMING, 15 * MB, false, false, MB, 200, NULL},
    /* mode=write measures from the received position */
    {"apply lag by default", NULL, "running", true, true, true, 20 * MB, 10 * MB, 0, true, true, 20 * MB, false, false,
     MB, 503, "Replication apply lag 10485760 exceeds maximum allowable 1048576"},
    {"mode=write", "mode=write", "running", true, true, true, 20 * MB, 10 * MB, 0, true, true, 20 * MB, false, false,
     MB, 200, NULL},
    {"mode=write lagging", "mode=write&lag=1MB", "running", true, true, true, 20 * MB, 10 * MB, 0, true, true, 30 * MB,
     false, false, MB, 503, "Replication write lag 10485760 exceeds maximum allowable 1048576"},
    {"mode=apply", "mode=apply", "running", true, true, true, 20 * MB, 10 * MB, 0, true, true, 20 * MB, false, false,
     MB, 503, "Replication apply lag 10485760 exceeds maximum allowable 1048576"},
    {"mode=WRITE is apply", "mode=WRITE", "running", true, true, true, 20 * MB, 10 * MB, 0, true, true, 20 * MB, false,
     false, MB, 503, "Replication apply lag 10485760 exceeds maximum allowable 1048576"},
    /* the leader's position: the /status optime, or the WAL receiver's latest_end_lsn when further */
    {"latest_end_lsn ahead of /status", NULL, "running", true, true, true, 10 * MB, 10 * MB, 14 * MB, true, true,
     10 * MB, false, false, MB, 503, "Replication apply lag 4194304 exceeds maximum allowable 1048576"},
    {"latest_end_lsn behind /status", NULL, "running", true, true, true, 10 * MB, 10 * MB, 9 * MB, true, true, 14 * MB,
     false, false, MB, 503, "Replication apply lag 4194304 exceeds maximum allowable 1048576"},
    {"no /status optime, no latest_end_lsn", NULL, "running", true, true, true, 10 * MB, 10 * MB, 0, true, false, 0,
     false, false, MB, 200, NULL},
    /* without a valid cluster view (DCS not read within ttl) */
    {"no cluster view, no latest_end_lsn", NULL, "running", true, true, true, 10 * MB, 10 * MB, 0, false, true, 10 * MB,
     false, false, MB, 503, "DCS is not accessible"},
    {"no cluster view, failsafe mode active", NULL, "running", true, true, true, 10 * MB, 10 * MB, 0, false, true,
     10 * MB, false, true, MB, 200, NULL},
    {"no cluster view, the WAL receiver knows the leader's position", NULL, "running", true, true, true, 10 * MB,
     10 * MB, 10 * MB, false, false, 0, false, false, MB, 200, NULL},
    {"no cluster view: a stale /status optime is not used", NULL, "running", true, true, true, 10 * MB, 10 * MB,
     10 * MB, false, true, 90 * MB, false, false, MB, 200, NULL},
    {"no cluster view, lagging behind latest_end_lsn", NULL, "running", true, true, true, 10 * MB, 10 * MB, 12 * MB,
     false, false, 0, false, false, MB, 503, "Replication apply lag 2097152 exceeds maximum allowable 1048576"},
};

static void test_readiness(void **state) {
    (void)state;
    size_t failed = 0;
    for (size_t i = 0; i < ELEMENTSOF(ready_rows); i++) {
        const ReadyRow *r = &ready_rows[i];
        Snapshot *s = snapshot_new();
        s->state = xstrdup(r->state);
        s->pg_running = r->pg_running;
        s->in_recovery = r->in_recovery;
        s->replication_state = r->streaming ? xstrdup("streaming") : NULL;
        s->received_location = r->received;
        s->replayed_location = r->replayed;
        s->latest_end_lsn = r->latest_end;
        s->has_cluster = r->has_cluster;
        s->has_optime = r->has_optime;
        s->cluster_optime = r->optime;
        s->leader_until = r->is_leader ? T_NOW + 10 * USEC_PER_SEC : 0;
        s->failsafe_active = r->failsafe;
        s->maximum_lag_on_failover = r->maximum_lag_on_failover;
        char buf[256] = "", why[128];
        QueryParam params[8];
        if (r->query)
            snprintf(buf, sizeof buf, "%s", r->query);
        size_t n = parse_query(buf, params, ELEMENTSOF(params));
        int code = readiness_code(s, n ? params : NULL, n, why, sizeof why, T_NOW);
        const char *want_why = r->why ? r->why : "";
        if (code != r->code || strcmp(why, want_why) != 0) {
            failed++;
            print_error("row %zu FAILED: %s: /readiness%s%s -> %d \"%s\", expected %d \"%s\"\n", i, r->desc,
                        r->query ? "?" : "", r->query ? r->query : "", code, why, r->code, want_why);
        }
        /* the reason is optional */
        assert_int_equal(readiness_code(s, n ? params : NULL, n, NULL, 0, T_NOW), code);
        snapshot_unref(s);
    }
    assert_int_equal(failed, 0);
}

/* ------------------------------------------------------------------------------------------------
 * The replica positions (Patroni 4.1: written_lsn preferred to pg_last_wal_receive_lsn()) */

static void test_status_positions(void **state) {
    (void)state;
    static const struct {
        const char *desc;
        bool in_recovery;
        long long flush, replay, receive, written;
        long long last_receive, received_location, wal_position;
    } rows[] = {
        {"written ahead of flushed", true, 0, 90, 100, 150, 150, 150, 150},
        {"a new WAL receiver's written position behind the flushed one", true, 0, 90, 200, 150, 200, 150, 200},
        {"no written_lsn (before 13, or no WAL receiver)", true, 0, 90, 100, 0, 100, 100, 100},
        {"only a written position", true, 0, 90, 0, 120, 120, 120, 120},
        {"nothing received: received_location falls back to replay", true, 0, 90, 0, 0, 0, 90, 90},
        {"replayed past what this WAL receiver wrote", true, 0, 300, 200, 150, 200, 150, 300},
        {"a primary: its flush position", false, 500, 0, 0, 0, 0, 0, 500},
    };
    for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
        PgStatus st = {.in_recovery = rows[i].in_recovery, .flush_lsn = rows[i].flush, .replay_lsn = rows[i].replay};
        pg_status_set_positions(&st, rows[i].receive, rows[i].written);
        if (st.last_receive_lsn != rows[i].last_receive || st.receive_lsn != rows[i].received_location ||
            st.wal_position != rows[i].wal_position || st.written_lsn != rows[i].written)
            print_error("row %zu (%s): last_receive %lld received_location %lld wal_position %lld\n", i, rows[i].desc,
                        st.last_receive_lsn, st.receive_lsn, st.wal_position);
        assert_true(st.last_receive_lsn == rows[i].last_receive);
        assert_true(st.receive_lsn == rows[i].received_location);
        assert_true(st.wal_position == rows[i].wal_position);
        assert_true(st.written_lsn == rows[i].written);
    }
}

/* ------------------------------------------------------------------------------------------------
 * GET /cluster */

#define BASE "/service/demo"
/* a member's receive and replay positions when its key has none (Patroni 4.0, or not a replica) */
#define U \
    "\"receive_lsn\": \"unknown\", \"receive_lag\": \"unknown\", \"replay_lsn\": \"unknown\", \"replay_lag\": \"unknown\", "

#define CLUSTER(...) \
    cluster_of_keys((const Kv[]){__VA_ARGS__}, sizeof((const Kv[]){__VA_ARGS__}) / sizeof(Kv), BASE, 100)

static bool pause_of(const Cluster *c) {
    const cJSON *p = c->config ? cJSON_GetObjectItemCaseSensitive(c->config, "pause") : NULL;
    return cJSON_IsTrue(p);
}

static void expect_json(Cluster *c, const char *expected) {
    char *got = cluster_to_json(c, "demo", pause_of(c));
    if (strcmp(got, expected) != 0)
        print_error("cluster_to_json:\n   got:      %s\n   expected: %s\n", got, expected);
    assert_string_equal(got, expected);
    free(got);
    cluster_free(c);
}

/* The §2.4 example, byte for byte: members given out of order, the leader without lag, a sync
 * standby whose lag comes from /status, a member without xlog_location, pause and a scheduled
 * switchover, scope last. */
static void test_cluster_json_three_members(void **state) {
    (void)state;
    Cluster *c = CLUSTER(
        {"members/node3",
         "{\"conn_url\":\"postgres://10.0.0.3/postgres\",\"api_url\":\"http://10.0.0.3:8008/patroni\","
         "\"state\":\"stopped\",\"role\":\"replica\",\"version\":\"4.0.6\",\"pending_restart\":true,"
         "\"pending_restart_reason\":{\"max_connections\":{\"old_value\":\"100\",\"new_value\":\"200\"}}}"},
        {"members/node1",
         "{\"conn_url\":\"postgres://10.0.0.1:5432/postgres\",\"api_url\":\"http://10.0.0.1:8008/patroni\","
         "\"state\":\"running\",\"role\":\"primary\",\"version\":\"4.0.6\",\"xlog_location\":67393608,"
         "\"timeline\":3,\"tags\":{\"clonefrom\":true}}"},
        {"members/node2",
         "{\"conn_url\":\"postgres://10.0.0.2:5433/postgres\",\"api_url\":\"http://10.0.0.2:8008/patroni\","
         "\"state\":\"running\",\"role\":\"replica\",\"version\":\"4.0.6\",\"xlog_location\":67390000,"
         "\"replication_state\":\"streaming\",\"timeline\":3}"},
        {"leader", "node1"}, {"initialize", "7401234567890123456"},
        {"config", "{\"ttl\":30,\"synchronous_mode\":true,\"pause\":true}"},
        {"sync", "{\"leader\":\"node1\",\"quorum\":0,\"sync_standby\":\"node2\"}"},
        {"status", "{\"optime\":67393608,\"slots\":{\"node2\":67390000}}"},
        {"failover", "{\"leader\":\"node1\",\"member\":\"node2\",\"scheduled_at\":\"2025-06-01T12:00:00+00:00\"}"}, );
    expect_json(
        c,
        "{\"members\": ["
        "{\"name\": \"node1\", \"role\": \"leader\", \"state\": \"running\", "
        "\"api_url\": \"http://10.0.0.1:8008/patroni\", \"host\": \"10.0.0.1\", \"port\": 5432, "
        "\"timeline\": 3, \"tags\": {\"clonefrom\": true}}, "
        "{\"name\": \"node2\", \"role\": \"sync_standby\", \"state\": \"streaming\", "
        "\"api_url\": \"http://10.0.0.2:8008/patroni\", \"host\": \"10.0.0.2\", \"port\": 5433, "
        "\"timeline\": 3, "
        "\"receive_lsn\": \"unknown\", \"receive_lag\": \"unknown\", \"replay_lsn\": \"unknown\", \"replay_lag\": \"unknown\", \"lag\": 3608, \"lsn\": \"0/4044A30\"}, "
        "{\"name\": \"node3\", \"role\": \"replica\", \"state\": \"stopped\", "
        "\"api_url\": \"http://10.0.0.3:8008/patroni\", \"host\": \"10.0.0.3\", \"port\": 5432, "
        "\"pending_restart\": true, \"pending_restart_reason\": "
        "{\"max_connections\": {\"old_value\": \"100\", \"new_value\": \"200\"}}, "
        "\"receive_lsn\": \"unknown\", \"receive_lag\": \"unknown\", \"replay_lsn\": \"unknown\", \"replay_lag\": \"unknown\", \"lsn\": \"unknown\", \"lag\": \"unknown\"}], "
        "\"pause\": true, "
        "\"scheduled_switchover\": {\"at\": \"2025-06-01T12:00:00+00:00\", \"from\": \"node1\", \"to\": \"node2\"}, "
        "\"scope\": \"demo\"}");
}

static void test_cluster_json_rules(void **state) {
    (void)state;
    /* quorum mode: names in /sync are quorum_standby, even with quorum 0 (one voter); a member
     * ahead of /status has lag 0; the leader's replication_state is not its state; no pause, a
     * failover without scheduled_at is no scheduled switchover; a scheduled_restart is copied */
    expect_json(
        CLUSTER({"leader", "node1"},
                {"members/node1",
                 "{\"conn_url\":\"postgres://10.0.0.1:5432/postgres\",\"api_url\":\"http://10.0.0.1:8008/patroni\","
                 "\"state\":\"running\",\"role\":\"primary\",\"version\":\"4.0.6\",\"xlog_location\":1000,"
                 "\"replication_state\":\"streaming\"}"},
                {"members/node2",
                 "{\"conn_url\":\"postgres://10.0.0.2:5432/postgres\",\"api_url\":\"http://10.0.0.2:8008/patroni\","
                 "\"state\":\"running\",\"role\":\"replica\",\"version\":\"4.0.6\",\"xlog_location\":1200,"
                 "\"scheduled_restart\":{\"schedule\":\"2025-06-01T12:00:00+00:00\","
                 "\"postmaster_start_time\":\"2025-06-01 10:00:00.123456+00:00\"}}"},
                {"config", "{\"synchronous_mode\":\"quorum\"}"},
                {"sync", "{\"leader\":\"node1\",\"quorum\":0,\"sync_standby\":\"node2\"}"},
                {"status", "{\"optime\":1000}"}, {"failover", "{\"leader\":\"node1\",\"member\":\"node2\"}"}, ),
        "{\"members\": ["
        "{\"name\": \"node1\", \"role\": \"leader\", \"state\": \"running\", "
        "\"api_url\": \"http://10.0.0.1:8008/patroni\", \"host\": \"10.0.0.1\", \"port\": 5432}, "
        "{\"name\": \"node2\", \"role\": \"quorum_standby\", \"state\": \"running\", "
        "\"api_url\": \"http://10.0.0.2:8008/patroni\", \"host\": \"10.0.0.2\", \"port\": 5432, "
        "\"scheduled_restart\": {\"schedule\": \"2025-06-01T12:00:00+00:00\", "
        "\"postmaster_start_time\": \"2025-06-01 10:00:00.123456+00:00\"}, "
        "\"receive_lsn\": \"unknown\", \"receive_lag\": \"unknown\", \"replay_lsn\": \"unknown\", \"replay_lag\": \"unknown\", \"lag\": 0, \"lsn\": \"0/4B0\"}], "
        "\"scope\": \"demo\"}");

    /* synchronous_mode off: a leftover /sync does not make anyone a sync_standby; no /status:
     * lag against 0; an unparsable member value still lists the member */
    expect_json(
        CLUSTER({"leader", "node1"},
                {"members/node1",
                 "{\"conn_url\":\"postgres://10.0.0.1:5432/postgres\",\"api_url\":\"http://10.0.0.1:8008/patroni\","
                 "\"state\":\"running\",\"role\":\"primary\",\"version\":\"4.0.6\",\"xlog_location\":1000}"},
                {"members/node2",
                 "{\"conn_url\":\"postgres://10.0.0.2:5432/postgres\",\"api_url\":\"http://10.0.0.2:8008/patroni\","
                 "\"state\":\"running\",\"role\":\"replica\",\"version\":\"4.0.6\",\"xlog_location\":900}"},
                {"members/node4", "not json at all"}, {"config", "{\"synchronous_mode\":false}"},
                {"sync", "{\"leader\":\"node1\",\"quorum\":0,\"sync_standby\":\"node2\"}"}, ),
        "{\"members\": ["
        "{\"name\": \"node1\", \"role\": \"leader\", \"state\": \"running\", "
        "\"api_url\": \"http://10.0.0.1:8008/patroni\", \"host\": \"10.0.0.1\", \"port\": 5432}, "
        "{\"name\": \"node2\", \"role\": \"replica\", \"state\": \"running\", "
        "\"api_url\": \"http://10.0.0.2:8008/patroni\", \"host\": \"10.0.0.2\", \"port\": 5432, "
        "\"receive_lsn\": \"unknown\", \"receive_lag\": \"unknown\", \"replay_lsn\": \"unknown\", \"replay_lag\": \"unknown\", \"lag\": 0, \"lsn\": \"0/384\"}, "
        "{\"name\": \"node4\", \"role\": \"replica\", \"state\": \"\", \"api_url\": null, "
        "\"receive_lsn\": \"unknown\", \"receive_lag\": \"unknown\", \"replay_lsn\": \"unknown\", \"replay_lag\": \"unknown\", \"lsn\": \"unknown\", \"lag\": \"unknown\"}], "
        "\"scope\": \"demo\"}");

    /* standby cluster: the lock holder is standby_leader, shows its replication_state and no lag;
     * synchronous mode is ignored */
    expect_json(
        CLUSTER({"leader", "node1"},
                {"members/node1",
                 "{\"conn_url\":\"postgres://10.0.0.1:5432/postgres\",\"api_url\":\"http://10.0.0.1:8008/patroni\","
                 "\"state\":\"running\",\"role\":\"standby_leader\",\"version\":\"4.0.6\",\"xlog_location\":1000,"
                 "\"replication_state\":\"streaming\",\"timeline\":2}"},
                {"members/node2",
                 "{\"conn_url\":\"postgres://10.0.0.2:5432/postgres\",\"api_url\":\"http://10.0.0.2:8008/patroni\","
                 "\"state\":\"running\",\"role\":\"replica\",\"version\":\"4.0.6\",\"xlog_location\":1000,"
                 "\"replication_state\":\"streaming\",\"timeline\":2}"},
                {"config", "{\"synchronous_mode\":true,\"standby_cluster\":{\"host\":\"10.1.0.1\",\"port\":5432}}"},
                {"sync", "{\"leader\":\"node1\",\"quorum\":0,\"sync_standby\":\"node2\"}"},
                {"status", "{\"optime\":1000}"}, ),
        "{\"members\": ["
        "{\"name\": \"node1\", \"role\": \"standby_leader\", \"state\": \"streaming\", "
        "\"api_url\": \"http://10.0.0.1:8008/patroni\", \"host\": \"10.0.0.1\", \"port\": 5432, \"timeline\": 2}, "
        "{\"name\": \"node2\", \"role\": \"replica\", \"state\": \"streaming\", "
        "\"api_url\": \"http://10.0.0.2:8008/patroni\", \"host\": \"10.0.0.2\", \"port\": 5432, \"timeline\": 2, "
        "\"receive_lsn\": \"unknown\", \"receive_lag\": \"unknown\", \"replay_lsn\": \"unknown\", \"replay_lag\": \"unknown\", \"lag\": 0, \"lsn\": \"0/3E8\"}], "
        "\"scope\": \"demo\"}");

    /* no members at all, unlocked */
    expect_json(CLUSTER({"initialize", "7401234567890123456"}, ), "{\"members\": [], \"scope\": \"demo\"}");
}

/* Patroni 4.1: receive_lsn/receive_lag, replay_lsn/replay_lag, lsn/lag for every member that does not
 * hold the lock, from the member keys' receive_lsn, replay_lsn and xlog_location against the /status
 * optime; "unknown" for both when a position is absent or 0 (lsn first then, lag first otherwise, as
 * Patroni's dict gets them). */
static void test_cluster_json_positions(void **state) {
    (void)state;
    expect_json(
        CLUSTER({"leader", "node1"},
                {"members/node1",
                 "{\"conn_url\":\"postgres://10.0.0.1:5432/postgres\",\"api_url\":\"http://10.0.0.1:8008/patroni\","
                 "\"state\":\"running\",\"role\":\"primary\",\"version\":\"4.1.0\",\"xlog_location\":"
                 "97710246984,\"timeline\":1}"},
                /* 4.1 member key: behind on replay, in sync on receive */
                {"members/node2",
                 "{\"conn_url\":\"postgres://10.0.0.2:5432/postgres\",\"api_url\":\"http://10.0.0.2:8008/patroni\","
                 "\"state\":\"running\",\"role\":\"replica\",\"version\":\"4.1.0\",\"xlog_location\":"
                 "97710246984,\"replay_lsn\":97710240000,\"receive_lsn\":97710246984,"
                 "\"replication_state\":\"streaming\",\"timeline\":1}"},
                /* receive_lsn 0 is unknown; ahead of /status: lag 0 */
                {"members/node3",
                 "{\"conn_url\":\"postgres://10.0.0.3:5432/postgres\",\"api_url\":\"http://10.0.0.3:8008/patroni\","
                 "\"state\":\"running\",\"role\":\"replica\",\"version\":\"4.1.0\",\"xlog_location\":"
                 "97710250000,\"replay_lsn\":97710250000,\"receive_lsn\":0}"},
                /* xlog_location 0 is unknown too (4.1; 4.0 showed lag = optime) */
                {"members/node4",
                 "{\"conn_url\":\"postgres://10.0.0.4:5432/postgres\",\"api_url\":\"http://10.0.0.4:8008/patroni\","
                 "\"state\":\"starting\",\"role\":\"replica\",\"version\":\"4.0.6\",\"xlog_location\":0}"},
                {"status", "{\"optime\":97710246984}"}, ),
        "{\"members\": ["
        "{\"name\": \"node1\", \"role\": \"leader\", \"state\": \"running\", "
        "\"api_url\": \"http://10.0.0.1:8008/patroni\", \"host\": \"10.0.0.1\", \"port\": 5432, \"timeline\": 1}, "
        "{\"name\": \"node2\", \"role\": \"replica\", \"state\": \"streaming\", "
        "\"api_url\": \"http://10.0.0.2:8008/patroni\", \"host\": \"10.0.0.2\", \"port\": 5432, \"timeline\": 1, "
        "\"receive_lag\": 0, \"receive_lsn\": \"16/BFFC0C48\", \"replay_lag\": 6984, \"replay_lsn\": \"16/BFFBF100\", "
        "\"lag\": 0, \"lsn\": \"16/BFFC0C48\"}, "
        "{\"name\": \"node3\", \"role\": \"replica\", \"state\": \"running\", "
        "\"api_url\": \"http://10.0.0.3:8008/patroni\", \"host\": \"10.0.0.3\", \"port\": 5432, "
        "\"receive_lsn\": \"unknown\", \"receive_lag\": \"unknown\", \"replay_lag\": 0, \"replay_lsn\": \"16/BFFC1810\", "
        "\"lag\": 0, \"lsn\": \"16/BFFC1810\"}, "
        "{\"name\": \"node4\", \"role\": \"replica\", \"state\": \"starting\", "
        "\"api_url\": \"http://10.0.0.4:8008/patroni\", \"host\": \"10.0.0.4\", \"port\": 5432, " U
        "\"lsn\": \"unknown\", \"lag\": \"unknown\"}], "
        "\"scope\": \"demo\"}");

    /* no leader: every member gets the fields; no /status: lag against 0 is 0 */
    expect_json(
        CLUSTER({"members/node1", "{\"conn_url\":\"postgres://10.0.0.1:5432/postgres\",\"api_url\":null,"
                                  "\"state\":\"running\",\"role\":\"primary\",\"xlog_location\":4096}"}, ),
        "{\"members\": [{\"name\": \"node1\", \"role\": \"replica\", \"state\": \"running\", \"api_url\": null, "
        "\"host\": \"10.0.0.1\", \"port\": 5432, " U "\"lag\": 0, \"lsn\": \"0/1000\"}], \"scope\": \"demo\"}");
}

/* ------------------------------------------------------------------------------------------------
 * the status document (GET /patroni, spec §2.2): fields, their order, Python's spacing */

static void expect_status(const Snapshot *s, const char *want) {
    char *got = snapshot_status_json(s);
    if (strcmp(got, want) != 0)
        print_error("status document:\n got: %s\nwant: %s\n", got, want);
    assert_string_equal(got, want);
    free(got);
}

static void test_status_document(void **state) {
    (void)state;
    Snapshot *s = snapshot_new();
    s->scope = xstrdup("demo");
    s->name = xstrdup("node2");
    s->state = xstrdup("running");
    s->role = xstrdup("replica");
    s->pg_running = true;
    s->in_recovery = true;
    s->postmaster_start_time = xstrdup("2025-06-01 10:00:00.123456+00:00");
    s->server_version = 150004;
    s->received_location = 67420024;
    s->replayed_location = 67420000;
    s->has_timeline = true;
    s->timeline = 3;
    s->replication_state = xstrdup("streaming");
    s->sync_standby = true;
    s->has_cluster = true;
    s->dcs_last_seen = 1748772000;
    s->tags = tags_from_yaml("dc: east\n");
    s->sysid = xstrdup("7401234567890123456");
    s->pending_restart = true;
    s->pending_restart_reason = cJSON_Parse("{\"max_connections\":{\"old_value\":\"100\",\"new_value\":\"200\"}}");
    expect_status(
        s, "{\"state\": \"running\", \"postmaster_start_time\": \"2025-06-01 10:00:00.123456+00:00\", "
           "\"role\": \"replica\", \"server_version\": 150004, \"xlog\": {\"received_location\": 67420024, "
           "\"replayed_location\": 67420000, \"replayed_timestamp\": null, \"paused\": false}, "
           "\"sync_standby\": true, \"timeline\": 3, \"replication_state\": \"streaming\", "
           "\"dcs_last_seen\": 1748772000, \"tags\": {\"dc\": \"east\"}, "
           "\"database_system_identifier\": \"7401234567890123456\", \"pending_restart\": true, "
           "\"pending_restart_reason\": {\"max_connections\": {\"old_value\": \"100\", \"new_value\": \"200\"}}, "
           "\"patroni\": {\"version\": \"4.0.6\", \"scope\": \"demo\", \"name\": \"node2\"}}");
    snapshot_unref(s);

    /* PostgreSQL not running, paused, the DCS not read within ttl */
    s = snapshot_new();
    s->scope = xstrdup("demo");
    s->name = xstrdup("node1");
    s->state = xstrdup("stopped");
    s->role = xstrdup("demoted");
    s->pause = true;
    s->dcs_last_seen = 1748772000;
    expect_status(s, "{\"state\": \"stopped\", \"role\": \"demoted\", \"pause\": true, \"cluster_unlocked\": true, "
                     "\"dcs_last_seen\": 1748772000, "
                     "\"patroni\": {\"version\": \"4.0.6\", \"scope\": \"demo\", \"name\": \"node1\"}}");
    snapshot_unref(s);
}

/* ------------------------------------------------------------------------------------------------
 * GET /liveness */

static void test_liveness(void **state) {
    (void)state;
    const usec_t now = 1000 * USEC_PER_SEC;
    Snapshot *s = snapshot_new();
    s->ttl = 30;
    s->pg_running = true;
    s->in_recovery = false; /* a primary: the loop may be ttl overdue */
    s->next_cycle = now - 29 * USEC_PER_SEC;
    assert_int_equal(liveness_code(s, now), 200);
    s->next_cycle = now - 30 * USEC_PER_SEC;
    assert_int_equal(liveness_code(s, now), 503);
    s->pause = true; /* paused: a stuck loop does not matter */
    assert_int_equal(liveness_code(s, now), 200);
    s->pause = false;
    s->in_recovery = true; /* a replica: 2 x ttl */
    s->next_cycle = now - 59 * USEC_PER_SEC;
    assert_int_equal(liveness_code(s, now), 200);
    s->next_cycle = now - 60 * USEC_PER_SEC;
    assert_int_equal(liveness_code(s, now), 503);
    s->pg_running = false; /* PostgreSQL down: 2 x ttl as well */
    s->in_recovery = false;
    s->next_cycle = now - 45 * USEC_PER_SEC;
    assert_int_equal(liveness_code(s, now), 200);
    s->next_cycle = now + 2 * USEC_PER_SEC; /* the usual case: the next cycle is ahead */
    assert_int_equal(liveness_code(s, now), 200);
    snapshot_unref(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_liveness),
        cmocka_unit_test(test_status_document),
        cmocka_unit_test(test_health_check_code),
        cmocka_unit_test(test_health_lease_per_request),
        cmocka_unit_test(test_parse_lag),
        cmocka_unit_test(test_readiness),
        cmocka_unit_test(test_status_positions),
        cmocka_unit_test(test_cluster_json_positions),
        cmocka_unit_test(test_cluster_json_three_members),
        cmocka_unit_test(test_cluster_json_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
