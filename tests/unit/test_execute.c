/* The executor (src/agent/execute.c, with the real sync_exec.c and view.c) against fakes of the pg and
 * dcs interfaces and of the agent files around it (fakes.h): for each HaAction, the calls it makes in
 * order, including what it does when the lock race is lost or a renewal fails (decide_lock_failure()).
 * Each test builds a struct Ha from patroni.yml, /config and the DCS keys as etcd holds them, scripts
 * the fakes' results, runs execute() once and compares the whole event log. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "unit_helpers.h"

/* The keys in order get mod_revision 10, 11, ...: a key's version is 10 + its index. */
#define cluster_of(keys, max) cluster_of_keys(keys, max, BASE, 10)

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fakes.h"

/* ------------------------------------------------------------------------------------------------
 * fixtures */

#define BASE "/service/demo"
#define SYSID "7401234567890123456"

/* A member key as Patroni 4.0.6 writes it (spec §1.2). */
#define MEMBER(host, state, role)                                                          \
    "{\"conn_url\":\"postgres://" host ":5432/postgres\",\"api_url\":\"http://" host       \
    ":8008/patroni\",\"state\":\"" state "\",\"role\":\"" role "\",\"version\":\"4.0.6\"," \
    "\"xlog_location\":5000,\"timeline\":1}"

#define K_INIT \
    { "initialize", SYSID }
#define K_LEADER(n) \
    { "leader", n }
#define K_M1 \
    { "members/node1", MEMBER("10.0.0.1", "running", "primary") }
#define K_M2 \
    { "members/node2", MEMBER("10.0.0.2", "running", "replica") }
#define K_M3 \
    { "members/node3", MEMBER("10.0.0.3", "running", "replica") }
#define K_STATUS \
    { "status", "{\"optime\":5000}" }
#define K_FAILOVER(json) \
    { "failover", json }
#define K_SYNC(json) \
    { "sync", json }
#define K_SYNC_N1_N2 K_SYNC("{\"leader\":\"node1\",\"sync_standby\":\"node2\"}")
#define K_HISTORY_TL3 \
    { "history", "[[1,100,\"no recovery target specified\"],[2,200,\"no recovery target\"]]" }

/* node1 leads; node1 leads with node2 (this node) as the leader; nobody leads */
#define LOCKED K_INIT, K_LEADER("node1"), K_M1, K_M2, K_M3, K_STATUS
#define MINE K_INIT, K_LEADER("node2"), K_M1, K_M2, K_M3, K_STATUS
#define UNLOCKED K_INIT, K_M1, K_M2, K_M3, K_STATUS

/* One executor run: the agent, its struct Ha, the cycle's LocalState and the decision. */
typedef struct T {
    Agent a;
    Ha h;
    LocalState l;
    Decision d;
} T;

/* node2 with /config `dyn_yaml` (NULL: defaults) and the DCS keys; PostgreSQL not running. */
#define T_INIT(t, dyn_yaml, ...)                       \
    do {                                               \
        const Kv keys_[] = {__VA_ARGS__};              \
        t_init(t, dyn_yaml, keys_, ELEMENTSOF(keys_)); \
    } while (0)

static void t_init(T *t, const char *dyn_yaml, const Kv *keys, size_t n) {
    fake_reset();
    *t = (T){0};
    load_config(&t->a.cfg, "node2", NULL);
    t->h.a = &t->a;
    t->h.dcs = FAKE_DCS;
    t->h.wake_fd = -1;
    t->h.pg.inst.pidfd = -1;
    t->h.pg.inst.major = 16;
    t->h.pg.inst.conn = FAKE_CONN;
    load_dyn(&t->h.view.dyn, dyn_yaml);
    t->h.view.dyn_loaded = true;
    t->h.view.cluster = cluster_of(keys, n);
    t->l.sysid = SYSID;
    t->l.timeline = 1;
}

/* A running primary / replica (following node1), as observe_pg() leaves it. */
static void t_primary(T *t) {
    t->h.pg.inst.pid = 4242;
    t->h.pg.st.ok = true;
    t->h.pg.st.in_recovery = false;
    t->h.pg.st.timeline = 1;
    t->h.pg.st.flush_lsn = 0x2000000;
    snprintf(t->h.pg.st.synchronous_commit, sizeof t->h.pg.st.synchronous_commit, "on");
    snprintf(t->h.pg.role, sizeof t->h.pg.role, "primary");
    t->l.pg_running = t->l.pg_ready = true;
    t->l.in_recovery = false;
}

static void t_replica(T *t) {
    t->h.pg.inst.pid = 4242;
    t->h.pg.st.ok = true;
    t->h.pg.st.in_recovery = true;
    t->h.pg.st.timeline = 1;
    t->h.pg.st.receive_lsn = t->h.pg.st.replay_lsn = 0x1000000;
    snprintf(t->h.pg.role, sizeof t->h.pg.role, "replica");
    snprintf(t->h.pg.following, sizeof t->h.pg.following, "node1");
    t->l.pg_running = t->l.pg_ready = true;
    t->l.in_recovery = true;
    t->l.following = "node1";
}

static void t_run(T *t, HaAction action) {
    t->d.action = action;
    fake_events_clear();
    execute(&t->h, &t->d, &t->l);
}

static void t_free(T *t) {
    stepdown_free(&t->h); /* a CHECKPOINT thread left running */
    view_free(&t->h.view);
    cJSON_Delete(t->h.pg.st.replication);
    free(t->h.sync.ssn);
    config_free(&t->a.cfg);
    fake_done();
}

/* Take the handover's probes of the candidate (and the 100 ms pauses between them) out of the event log:
 * how many probes there were. */
static int drop_probes(void) {
    int n = 0;
    size_t j = 0;
    for (size_t i = 0; i < fake.events.n; i++) {
        bool probe = strcmp(fake.events.v[i], "probe_members") == 0;
        n += probe;
        if (probe || strcmp(fake.events.v[i], "usleep(100000)") == 0)
            free(fake.events.v[i]);
        else
            fake.events.v[j++] = fake.events.v[i];
    }
    fake.events.n = j;
    return n;
}

/* usleep() is faked (logged, not waited): a real wait for the CHECKPOINT thread */
static void usleep_real(long us) {
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = us % 1000000 * 1000};
    nanosleep(&ts, NULL);
}

static bool lease_held(const T *t) { return t->h.view.lock_valid_until > now_monotonic(); }

/* The event log must be exactly `want` (NULL-terminated). */
static void expect_events_(const char *const *want, const char *file, int line) {
    size_t n = 0;
    while (want[n])
        n++;
    bool same = n == fake.events.n;
    for (size_t i = 0; same && i < n; i++)
        same = strcmp(want[i], fake.events.v[i]) == 0;
    if (same)
        return;
    print_error("%s:%d: unexpected calls\n", file, line);
    for (size_t i = 0; i < n || i < fake.events.n; i++)
        print_error("  %2zu  want %-60s got %s\n", i, i < n ? want[i] : "-",
                    i < fake.events.n ? fake.events.v[i] : "-");
    fail();
}

#define EXPECT_EVENTS(...) expect_events_((const char *const[]){__VA_ARGS__, NULL}, __FILE__, __LINE__)
#define EXPECT_NO_EVENTS() expect_events_((const char *const[]){NULL}, __FILE__, __LINE__)

/* /sync naming only `me` */
#define SYNC_ONLY(me) "{\"leader\":\"" me "\",\"quorum\":0,\"sync_standby\":null}"
#define SYNC_ONLY_NODE2_AT(version) "dcs_set_sync_state(" SYNC_ONLY("node2") ", " #version ")"

/* The calls of a demotion after the stop (demote()): the role, pg_control (no callback: on_stop came with
 * the stop, on_role_change comes with the next start, as in Patroni's demote() and follow()). */
#define DEMOTED "set_role(demoted)", "refresh_controldata"
/* ... when the caller has just read the shutdown checkpoint (a handover) */
#define DEMOTED_AT "set_role(demoted)"

/* ------------------------------------------------------------------------------------------------
 * HA_ACQUIRE_LOCK */

static void test_acquire_won_replica_promotes(void **state) {
    (void)state;
    T t;
    T_INIT(&t, NULL, UNLOCKED);
    t_replica(&t);
    t_run(&t, HA_ACQUIRE_LOCK);
    EXPECT_EVENTS("dcs_attempt_to_acquire_leader", "promote_postgres");
    assert_true(lease_held(&t));
    assert_true(t.h.pg.promoting);
    t_free(&t);

    /* a failover key is cleared once the lock is ours, before the promotion */
    T_INIT(&t, NULL, UNLOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node2\"}"));
    t_replica(&t);
    t_run(&t, HA_ACQUIRE_LOCK);
    EXPECT_EVENTS("dcs_attempt_to_acquire_leader", "dcs_set_failover({}, 15)", "promote_postgres");
    t_free(&t);

    /* paused: the candidate stays so that the next cycle does not release the lock mid-promotion */
    T_INIT(&t, "pause: true\n", UNLOCKED, K_FAILOVER("{\"leader\":\"node1\",\"member\":\"node2\"}"));
    t_replica(&t);
    t_run(&t, HA_ACQUIRE_LOCK);
    EXPECT_EVENTS("dcs_attempt_to_acquire_leader", "dcs_set_failover({\"member\":\"node2\"}, 15)", "promote_postgres");
    t_free(&t);

    /* a running primary that wins (after a DCS outage) has nothing to promote */
    T_INIT(&t, NULL, UNLOCKED);
    t_primary(&t);
    t_run(&t, HA_ACQUIRE_LOCK);
    EXPECT_EVENTS("dcs_attempt_to_acquire_leader");
    assert_true(lease_held(&t));
    t_free(&t);
}

static void test_acquire_won_promotion_fails(void **state) {
    (void)state;
    T t;
    T_INIT(&t, NULL, UNLOCKED);
    t_replica(&t);
    fake.promote = -EIO;
    t_run(&t, HA_ACQUIRE_LOCK);
    /* the key goes back at once: another member may take over, and this one stays out of the race for a
     * ttl (the back-off starts now: is_healthiest_node() says no until then) */
    EXPECT_EVENTS("dcs_attempt_to_acquire_leader", "promote_postgres", "dcs_delete_leader");
    assert_false(lease_held(&t));
    assert_true(t.h.promote_failed_at > 0);
    assert_true(now_monotonic() - t.h.promote_failed_at < 5 * USEC_PER_SEC);
    t_free(&t);
}

/* Synchronous mode: /sync names only us, then synchronous_standby_names is in force, then the promotion. */
static void test_acquire_won_sync_mode(void **state) {
    (void)state;
    T t;
    T_INIT(&t, "synchronous_mode: true\n", UNLOCKED, K_SYNC_N1_N2);
    t_replica(&t);
    t_run(&t, HA_ACQUIRE_LOCK);
    EXPECT_EVENTS("dcs_attempt_to_acquire_leader", SYNC_ONLY_NODE2_AT(15),
                  "write_configuration(replica, node1, ssn='')", "reload_postgres", "usleep(100000)",
                  "promote_postgres");
    t_free(&t);

    /* strict: commits wait for a standby from the first one on */
    T_INIT(&t, "synchronous_mode: true\nsynchronous_mode_strict: true\n", UNLOCKED);
    t_replica(&t);
    t_run(&t, HA_ACQUIRE_LOCK);
    EXPECT_EVENTS("dcs_attempt_to_acquire_leader", SYNC_ONLY_NODE2_AT(0),
                  "write_configuration(replica, node1, ssn='*')", "reload_postgres", "usleep(100000)",
                  "promote_postgres");
    t_free(&t);

    /* /sync cannot be written (someone changed it): no promotion this cycle, the lock is kept */
    T_INIT(&t, "synchronous_mode: true\n", UNLOCKED, K_SYNC_N1_N2);
    t_replica(&t);
    fake.set_sync = 0;
    t_run(&t, HA_ACQUIRE_LOCK);
    EXPECT_EVENTS("dcs_attempt_to_acquire_leader", SYNC_ONLY_NODE2_AT(15));
    assert_non_null(strstr(t.d.message, "postponing the promotion"));
    assert_true(lease_held(&t));
    assert_false(t.h.pg.promoting);
    t_free(&t);
}

/* Quorum mode: /sync stays as the old leader wrote it; synchronous_standby_names covers it before the
 * promotion. */
static void test_acquire_won_quorum_mode(void **state) {
    (void)state;
    T t;
    T_INIT(&t, "synchronous_mode: quorum\n", UNLOCKED,
           K_SYNC("{\"leader\":\"node1\",\"quorum\":1,\"sync_standby\":\"node2,node3\"}"));
    t_replica(&t);
    t_run(&t, HA_ACQUIRE_LOCK);
    EXPECT_EVENTS("dcs_attempt_to_acquire_leader", "write_configuration(replica, node1, ssn='ANY 1 (node1,node3)')",
                  "reload_postgres", "usleep(100000)", "promote_postgres");
    assert_true(t.h.sync.grace_until > now_monotonic());
    t_free(&t);
}

/* A running primary that lost the race asks etcd whose key it is before it demotes. */
static void test_acquire_lost_primary(void **state) {
    (void)state;
    T t;
    T_INIT(&t, NULL, UNLOCKED);
    t_primary(&t);
    fake.acquire = 0;
    fake.raw_value = "node1";
    t_run(&t, HA_ACQUIRE_LOCK);
    /* someone else's: immediate stop, no key to delete, no restart */
    EXPECT_EVENTS("dcs_attempt_to_acquire_leader", "dcs_get_raw(leader)", "publish_stopping",
                  "stop_postgres(immediate)", DEMOTED);
    assert_non_null(strstr(t.d.message, "another member was faster"));
    assert_false(lease_held(&t));
    assert_string_equal(t.h.pg.role, "demoted");
    t_free(&t);

    /* the key is mine after all: the cache lagged our own write */
    T_INIT(&t, NULL, UNLOCKED);
    t_primary(&t);
    fake.acquire = 0;
    fake.raw_value = "node2";
    t_run(&t, HA_ACQUIRE_LOCK);
    EXPECT_EVENTS("dcs_attempt_to_acquire_leader", "dcs_get_raw(leader)");
    assert_string_equal(t.d.message, "the leader lock is already mine");
    assert_true(lease_held(&t));
    t_free(&t);

    /* the re-read fails or finds no key: nobody says it is ours, demote */
    for (int r = -EIO; r <= 0; r += EIO) {
        T_INIT(&t, NULL, UNLOCKED);
        t_primary(&t);
        fake.acquire = 0;
        fake.get_raw = r;
        fake.raw_value = "node2";
        t_run(&t, HA_ACQUIRE_LOCK);
        EXPECT_EVENTS("dcs_attempt_to_acquire_leader", "dcs_get_raw(leader)", "publish_stopping",
                      "stop_postgres(immediate)", DEMOTED);
        t_free(&t);
    }
}

/* The DCS failed during the race: a running primary goes read-only until the DCS comes back. */
static void test_acquire_dcs_error_primary(void **state) {
    (void)state;
    T t;
    T_INIT(&t, NULL, UNLOCKED);
    t_primary(&t);
    fake.acquire = -ETIMEDOUT;
    t_run(&t, HA_ACQUIRE_LOCK);
    EXPECT_EVENTS("dcs_attempt_to_acquire_leader", "publish_stopping", "stop_postgres(fast)", DEMOTED,
                  "start_postgres(replica, -)");
    assert_non_null(strstr(t.d.message, "fake DCS error"));
    t_free(&t);
}

/* Nothing to undo on a replica or in a paused cluster. */
static void test_acquire_lost_nothing_to_undo(void **state) {
    (void)state;
    for (int r = -EIO; r <= 0; r += EIO) {
        T t;
        T_INIT(&t, NULL, UNLOCKED);
        t_replica(&t);
        fake.acquire = r;
        t_run(&t, HA_ACQUIRE_LOCK);
        EXPECT_EVENTS("dcs_attempt_to_acquire_leader");
        assert_false(t.h.pg.promoting);
        t_free(&t);

        T_INIT(&t, "pause: true\n", UNLOCKED);
        t_primary(&t);
        fake.acquire = r;
        t_run(&t, HA_ACQUIRE_LOCK);
        EXPECT_EVENTS("dcs_attempt_to_acquire_leader");
        t_free(&t);
    }
}

/* ------------------------------------------------------------------------------------------------
 * HA_UPDATE_LOCK, HA_UPDATE_LOCK_ONLY, HA_CLEAR_FAILOVER */

static void test_update_lock_primary(void **state) {
    (void)state;
    T t;
    T_INIT(&t, NULL, MINE);
    t_primary(&t);
    t_run(&t, HA_UPDATE_LOCK);
    /* the renewal published at once (the health checks' fence point moves on: no 503 near the old one, L3);
     * the leader's per-cycle work: slots before /status (it publishes their positions), then /history */
    EXPECT_EVENTS("dcs_update_leader", "publish", "slots_sync", "update_status", "update_history");
    assert_true(lease_held(&t));
    t_free(&t);

    T_INIT(&t, NULL, MINE, K_FAILOVER("{\"leader\":\"node2\",\"member\":\"node9\"}"));
    t_primary(&t);
    t_run(&t, HA_CLEAR_FAILOVER);
    EXPECT_EVENTS("dcs_update_leader", "publish", "dcs_set_failover({}, 16)", "slots_sync", "update_status",
                  "update_history");
    t_free(&t);

    /* renewing while a start or a long action runs: nothing else */
    T_INIT(&t, NULL, MINE);
    t.h.pg.inst.pid = 4242;
    t.l.pg_running = t.l.pg_starting = true;
    t_run(&t, HA_UPDATE_LOCK_ONLY);
    EXPECT_EVENTS("dcs_update_leader", "publish");
    t_free(&t);

    /* a replica holding the key promotes, after the compare-and-set on etcd (no view: the cached key, whose
     * keepalive alone would do for a renewal, may have been deleted since) */
    T_INIT(&t, NULL, MINE);
    t_replica(&t);
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader(no view)", "publish", "promote_postgres");
    t_free(&t);
    /* ... and does not when the key is not ours any more */
    T_INIT(&t, NULL, MINE);
    t_replica(&t);
    fake.update_leader = 0;
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader(no view)");
    assert_false(lease_held(&t));
    t_free(&t);
}

static cJSON *replication_rows(const char *spec) {
    /* "name:sync_state:flush;..." */
    cJSON *a = cJSON_CreateArray();
    char *dup = xstrdup(spec), *save = NULL;
    for (char *tok = strtok_r(dup, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
        char name[64], ss[32];
        long long lsn;
        assert_int_equal(sscanf(tok, "%63[^:]:%31[^:]:%lld", name, ss, &lsn), 3);
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "application_name", name);
        cJSON_AddStringToObject(r, "state", "streaming");
        cJSON_AddStringToObject(r, "sync_state", ss);
        cJSON_AddNumberToObject(r, "flush_lsn", (double)lsn);
        cJSON_AddNumberToObject(r, "write_lsn", (double)lsn);
        cJSON_AddNumberToObject(r, "replay_lsn", (double)lsn);
        cJSON_AddItemToArray(a, r);
    }
    free(dup);
    return a;
}

/* Synchronous mode (not quorum) on the renewing primary: /sync first, then synchronous_standby_names. */
static void test_update_lock_primary_sync(void **state) {
    (void)state;
    T t;
    /* no /sync yet, node3 streams: /sync = {me, nobody}, then node3 becomes the synchronous standby */
    T_INIT(&t, "synchronous_mode: true\n", MINE);
    t_primary(&t);
    t.h.pg.st.replication = replication_rows("node3:async:33554432");
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader", "publish", "slots_sync", "update_status", "update_history",
                  SYNC_ONLY_NODE2_AT(0), "write_configuration(primary, -, ssn='node3')", "reload_postgres",
                  "usleep(100000)", "pg_current_flush_lsn", "pg_emit_wake_message");
    assert_string_equal(t.h.sync.ssn, "node3");
    assert_int_equal(t.h.sync.flush, fake.flush_lsn);
    t_free(&t);

    /* the synchronous standby node3 disconnected, node1 streams: node3 leaves /sync before it leaves
     * synchronous_standby_names */
    T_INIT(&t, "synchronous_mode: true\n", MINE, K_SYNC("{\"leader\":\"node2\",\"sync_standby\":\"node3\"}"));
    t_primary(&t);
    snprintf(t.h.pg.st.synchronous_standby_names, sizeof t.h.pg.st.synchronous_standby_names, "node3");
    t.h.pg.st.replication = replication_rows("node1:async:33554432");
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader", "publish", "slots_sync", "update_status", "update_history",
                  SYNC_ONLY_NODE2_AT(16), "write_configuration(primary, -, ssn='node1')", "reload_postgres",
                  "usleep(100000)", "pg_current_flush_lsn", "pg_emit_wake_message");
    t_free(&t);

    /* the shrinking /sync write fails: synchronous_standby_names stays as it is */
    T_INIT(&t, "synchronous_mode: true\n", MINE, K_SYNC("{\"leader\":\"node2\",\"sync_standby\":\"node3\"}"));
    t_primary(&t);
    snprintf(t.h.pg.st.synchronous_standby_names, sizeof t.h.pg.st.synchronous_standby_names, "node3");
    t.h.pg.st.replication = replication_rows("node1:async:33554432");
    fake.set_sync = 0;
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader", "publish", "slots_sync", "update_status", "update_history",
                  SYNC_ONLY_NODE2_AT(16));
    t_free(&t);

    /* node1 is now reported sync under ssn 'node1' and has reached the flush LSN of the change: /sync
     * grows */
    T_INIT(&t, "synchronous_mode: true\n", MINE, K_SYNC("{\"leader\":\"node2\",\"sync_standby\":null}"));
    t_primary(&t);
    snprintf(t.h.pg.st.synchronous_standby_names, sizeof t.h.pg.st.synchronous_standby_names, "node1");
    t.h.pg.st.replication = replication_rows("node1:sync:33554432");
    t.h.sync.ssn = xstrdup("node1");
    t.h.sync.flush = 33554432;
    fake.write_configuration = 0; /* postgresql.conf already says so: no reload */
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader", "publish", "slots_sync", "update_status", "update_history",
                  "write_configuration(primary, -, ssn='node1')",
                  "dcs_set_sync_state({\"leader\":\"node2\",\"quorum\":0,\"sync_standby\":\"node1\"}, 16)");
    t_free(&t);
}

static void test_update_lock_fails(void **state) {
    (void)state;
    T t;
    /* while starting as primary: stop the start, nothing else */
    for (int r = -EIO; r <= 0; r += EIO) {
        T_INIT(&t, NULL, MINE);
        t.h.pg.inst.pid = 4242;
        t.h.pg.starting = t.h.pg.start_as_primary = true;
        t.l.pg_running = t.l.pg_starting = true;
        fake.update_leader = r;
        t_run(&t, HA_UPDATE_LOCK_ONLY);
        EXPECT_EVENTS("dcs_update_leader", "stop_postgres(immediate)");
        assert_false(lease_held(&t));
        t_free(&t);
    }

    /* a running primary whose key is someone else's now: immediate stop, nothing to release */
    T_INIT(&t, NULL, MINE);
    t_primary(&t);
    fake.update_leader = 0;
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader", "publish_stopping", "stop_postgres(immediate)", DEMOTED);
    assert_false(lease_held(&t));
    t_free(&t);

    /* the DCS failed: read-only without upstream */
    T_INIT(&t, NULL, MINE);
    t_primary(&t);
    fake.update_leader = -ETIMEDOUT;
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader", "publish_stopping", "stop_postgres(fast)", DEMOTED,
                  "start_postgres(replica, -)");
    t_free(&t);

    /* a running primary whose status query fails (it is taken for "starting"), the key lost or etcd gone:
     * fenced, immediate */
    for (int r = -ETIMEDOUT; r <= 0; r += ETIMEDOUT) {
        T_INIT(&t, NULL, MINE);
        t_primary(&t);
        t.h.pg.st.ok = false;
        t.l.pg_ready = false;
        t.l.pg_starting = t.l.maybe_primary = true;
        fake.update_leader = r;
        t_run(&t, HA_UPDATE_LOCK_ONLY);
        EXPECT_EVENTS("dcs_update_leader", "publish_stopping", "stop_postgres(immediate)", DEMOTED);
        t_free(&t);
    }

    /* the stop fails: the demotion stops there (the key is not ours anyway) */
    T_INIT(&t, NULL, MINE);
    t_primary(&t);
    fake.update_leader = 0;
    fake.stop = -ETIMEDOUT;
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader", "publish_stopping", "stop_postgres(immediate)");
    t_free(&t);

    /* a replica (about to promote: no view), a paused primary: nothing to undo */
    T_INIT(&t, NULL, MINE);
    t_replica(&t);
    fake.update_leader = 0;
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader(no view)");
    t_free(&t);
    T_INIT(&t, "pause: true\n", MINE);
    t_primary(&t);
    fake.update_leader = -EIO;
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader");
    t_free(&t);
}

/* ------------------------------------------------------------------------------------------------
 * Agent shutdown on the lock holder (stepdown_shutdown) */

/* Where `event` is in the event log (its first occurrence at or after `from`), or -1. */
static int event_at(const char *event, size_t from) {
    for (size_t i = from; i < fake.events.n; i++)
        if (strcmp(fake.events.v[i], event) == 0)
            return (int)i;
    return -1;
}

/* The event log without the repeated looks at pg_control and the peers and the snapshots published (renewals
 * and the release publish one each), the renewals counted. */
static int drop_shutdown_polls(void) {
    int renewals = 0;
    size_t j = 0;
    for (size_t i = 0; i < fake.events.n; i++) {
        const char *e = fake.events.v[i];
        bool renewal = strcmp(e, "dcs_update_leader(no view)") == 0;
        renewals += renewal;
        if (renewal || strcmp(e, "refresh_controldata") == 0 || strcmp(e, "probe_members") == 0 ||
            strcmp(e, "publish") == 0)
            free(fake.events.v[i]);
        else
            fake.events.v[j++] = fake.events.v[i];
    }
    fake.events.n = j;
    return renewals;
}

static void t_shutdown_primary(T *t, const char *dyn_yaml, const Kv *extra, int shut_down_at, int exit_at) {
    Kv keys[] = {MINE, {NULL, NULL}};
    if (extra)
        keys[ELEMENTSOF(keys) - 1] = *extra;
    t_init(t, dyn_yaml, keys, extra ? ELEMENTSOF(keys) : ELEMENTSOF(keys) - 1);
    t_primary(t);
    t->h.view.lock_valid_until = now_monotonic() + 30 * USEC_PER_SEC;
    fake.have_controldata = true;
    fake.cd.checkpoint_lsn = 0x5000000;
    snprintf(fake.cd.state, sizeof fake.cd.state, "in production");
    fake.observe_shut_down_at = shut_down_at;
    fake.observe_exit_at = exit_at;
    fake_events_clear();
}

static void test_shutdown_releases_early(void **state) {
    (void)state;
    T t;
    /* pg_control says "shut down" while the postmaster still runs (archiving, say), and a replica has the
     * shutdown checkpoint: the key is released before the postmaster exits (Patroni's on_shutdown), and the
     * health checks are told at once (a snapshot published after the release) */
    t_shutdown_primary(&t, NULL, NULL, 2, 6);
    fake.n_peers = 1;
    fake.peers[0] = (PeerStatus){.name = "node3", .reachable = true, .wal_position = 0x5000028};
    assert_int_equal(stepdown_shutdown(&t.h), 0);
    int deleted = event_at("dcs_delete_leader", 0);
    assert_true(deleted > 0);
    assert_true(event_at("publish", (size_t)deleted) > deleted);
    assert_true(event_at("publish", (size_t)deleted) < event_at("postmaster exited", 0));
    assert_int_equal(drop_shutdown_polls(), 0);
    EXPECT_EVENTS("stop_postgres_begin(fast)", "set_role(demoted)", "write_status_optime_only(83886080)",
                  "dcs_delete_leader", "dcs_get_cluster", "postmaster exited");
    assert_false(lease_held(&t));
    assert_false(t.h.pg.stop_patient);
    t_free(&t);

    /* no replica has it yet: the key is kept until the postmaster has exited, then released with /status */
    t_shutdown_primary(&t, NULL, NULL, 2, 6);
    fake.n_peers = 1;
    fake.peers[0] = (PeerStatus){.name = "node3", .reachable = true, .wal_position = 0x5000000};
    assert_int_equal(stepdown_shutdown(&t.h), 0);
    drop_shutdown_polls();
    EXPECT_EVENTS("stop_postgres_begin(fast)", "postmaster exited", "write_status_optime_only(83886080)",
                  "dcs_delete_leader");
    t_free(&t);

    /* synchronous mode: only the synchronous standby (node3) counts; node1 having the checkpoint is not enough */
    const Kv sync = K_SYNC("{\"leader\":\"node2\",\"sync_standby\":\"node3\"}");
    t_shutdown_primary(&t, "synchronous_mode: true\n", &sync, 2, 6);
    fake.n_peers = 2;
    fake.peers[0] = (PeerStatus){.name = "node1", .reachable = true, .wal_position = 0x5000028};
    fake.peers[1] = (PeerStatus){.name = "node3", .reachable = true, .wal_position = 0x4000000};
    assert_int_equal(stepdown_shutdown(&t.h), 0);
    drop_shutdown_polls();
    EXPECT_EVENTS("stop_postgres_begin(fast)", "postmaster exited", "write_status_optime_only(83886080)",
                  "dcs_delete_leader");
    t_free(&t);

    /* a switchover to node3 is pending: node3 is the only member that may take the key, so node1 having the
     * checkpoint is not enough (Patroni's get_failover_candidates()) */
    const Kv failover = K_FAILOVER("{\"leader\":\"node2\",\"member\":\"node3\"}");
    t_shutdown_primary(&t, NULL, &failover, 2, 6);
    fake.n_peers = 2;
    fake.peers[0] = (PeerStatus){.name = "node1", .reachable = true, .wal_position = 0x5000028};
    fake.peers[1] = (PeerStatus){.name = "node3", .reachable = true, .wal_position = 0x4000000};
    assert_int_equal(stepdown_shutdown(&t.h), 0);
    drop_shutdown_polls();
    EXPECT_EVENTS("stop_postgres_begin(fast)", "postmaster exited", "write_status_optime_only(83886080)",
                  "dcs_delete_leader");
    t_free(&t);
}

static void test_shutdown_keeps_lease(void **state) {
    (void)state;
    T t;
    /* a shutdown checkpoint longer than loop_wait (1 s here, ~2.5 s of stop): the lease is renewed meanwhile
     * (at the loop's pace: 1-3 renewals on a busy machine), so that no replica promotes without the last WAL
     * (Patroni lets it lapse) */
    t_shutdown_primary(&t, "loop_wait: 1\n", NULL, 0, 25);
    assert_int_equal(stepdown_shutdown(&t.h), 0);
    assert_in_range(drop_shutdown_polls(), 1, 3);
    EXPECT_EVENTS("stop_postgres_begin(fast)", "postmaster exited", "dcs_delete_leader");
    t_free(&t);

    /* the last renewal was more than loop_wait ago: renewed at once, not loop_wait after the stop began */
    t_shutdown_primary(&t, "loop_wait: 1\n", NULL, 0, 3);
    t.h.view.lock_valid_until = now_monotonic() + 28 * USEC_PER_SEC; /* renewed 2 s ago (ttl 30) */
    assert_int_equal(stepdown_shutdown(&t.h), 0);
    assert_int_equal(drop_shutdown_polls(), 1);
    t_free(&t);

    /* the renewal fails until the lease runs out: tried (at once: the last renewal is 28.8 s old, then each
     * loop_wait), not renewed; nothing written or deleted after the exit (the lapsed lease took the key) */
    t_shutdown_primary(&t, "loop_wait: 1\n", NULL, 0, 15);
    fake.update_leader = -EIO;
    t.h.view.lock_valid_until = now_monotonic() + USEC_PER_SEC + 200 * USEC_PER_MSEC;
    assert_int_equal(stepdown_shutdown(&t.h), 0);
    assert_in_range(drop_shutdown_polls(), 1, 3);
    EXPECT_EVENTS("stop_postgres_begin(fast)", "postmaster exited");
    t_free(&t);

    /* the key turned out to be someone else's: the lease is dropped at once, nothing released or written */
    t_shutdown_primary(&t, NULL, NULL, 2, 6);
    t.h.view.lock_valid_until = now_monotonic() + 19 * USEC_PER_SEC; /* renewed 11 s ago: renewed at once */
    fake.update_leader = 0;
    fake.n_peers = 1;
    fake.peers[0] = (PeerStatus){.name = "node3", .reachable = true, .wal_position = 0x5000028};
    assert_int_equal(stepdown_shutdown(&t.h), 0);
    assert_int_equal(drop_shutdown_polls(), 1);
    assert_false(lease_held(&t));
    assert_int_equal(event_at("write_status_optime_only(83886080)", 0), -1);
    t_free(&t);

    /* the stop cannot begin: the key is kept */
    t_shutdown_primary(&t, NULL, NULL, 0, 0);
    fake.stop = -EPERM;
    assert_int_equal(stepdown_shutdown(&t.h), -1);
    EXPECT_EVENTS("stop_postgres_begin(fast)");
    t_free(&t);
}

/* ------------------------------------------------------------------------------------------------
 * HA_SWITCHOVER, HA_DEMOTE, HA_RELEASE_LOCK */

/* The lease deadline is hard (issue 12, finding 2): past the fence point (the lease's end less the margin) a
 * primary stops at once, immediate, and comes back read-only without upstream; the cycle's DCS calls are
 * bounded by that point. */
static void test_lease_fence(void **state) {
    (void)state;
    T t;
    usec_t margin = 2 * USEC_PER_SEC;

    /* a renewal bounds the rest of the cycle's DCS calls by the new fence point */
    T_INIT(&t, NULL, MINE);
    t_primary(&t);
    t_run(&t, HA_UPDATE_LOCK);
    assert_true(lease_held(&t));
    assert_int_equal(fake.lease_deadline, t.h.view.lock_valid_until - margin);
    /* far from the lease's end: nothing */
    fake_events_clear();
    assert_false(fence_expired_lease(&t.h));
    EXPECT_NO_EVENTS();
    t_free(&t);

    /* within the margin: stopped now, before anything else; the DCS calls no longer bounded */
    T_INIT(&t, NULL, MINE);
    t_primary(&t);
    t.h.view.lock_valid_until = now_monotonic() + margin / 2;
    fake_events_clear();
    assert_true(fence_expired_lease(&t.h));
    EXPECT_EVENTS("publish_stopping", "stop_postgres(immediate)", DEMOTED, "start_postgres(replica, -)");
    assert_int_equal(t.h.view.lock_valid_until, 0);
    assert_int_equal(fake.lease_deadline, 0);
    t_free(&t);

    /* run out already; a primary that does not answer (its status query fails) is fenced too */
    T_INIT(&t, NULL, MINE);
    t_primary(&t);
    t.h.pg.st.ok = false;
    t.h.view.lock_valid_until = now_monotonic() - USEC_PER_SEC;
    fake_events_clear();
    assert_true(fence_expired_lease(&t.h));
    EXPECT_EVENTS("publish_stopping", "stop_postgres(immediate)", DEMOTED, "start_postgres(replica, -)");
    t_free(&t);

    /* a replica holding the key (promotion not begun), a paused primary, no lease at all: nothing */
    T_INIT(&t, NULL, MINE);
    t_replica(&t);
    t.h.view.lock_valid_until = now_monotonic() - USEC_PER_SEC;
    fake_events_clear();
    assert_false(fence_expired_lease(&t.h));
    EXPECT_NO_EVENTS();
    t_free(&t);
    T_INIT(&t, "pause: true\n", MINE);
    t_primary(&t);
    t.h.view.lock_valid_until = now_monotonic() - USEC_PER_SEC;
    fake_events_clear();
    assert_false(fence_expired_lease(&t.h));
    EXPECT_NO_EVENTS();
    t_free(&t);
    T_INIT(&t, NULL, MINE);
    t_primary(&t);
    fake_events_clear();
    assert_false(fence_expired_lease(&t.h));
    EXPECT_NO_EVENTS();
    t_free(&t);

    /* the renewal failed (DCS error) with the fence point passed meanwhile: no fast stop (it could outlast the
     * lease), the immediate one, then read-only without upstream */
    T_INIT(&t, NULL, MINE);
    t_primary(&t);
    t.h.view.lock_valid_until = now_monotonic() + margin / 2;
    fake.update_leader = -ETIMEDOUT;
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader", "publish_stopping", "stop_postgres(immediate)", DEMOTED,
                  "start_postgres(replica, -)");
    t_free(&t);
}

/* Failsafe mode (spec §4.12): a renewal that fails on a DCS error asks the members (failsafe_check(), scripted);
 * when all accept, the primary runs on, on a licence that fence_expired_lease() enforces like the lease. */
static void test_failsafe(void **state) {
    (void)state;
    T t;
    usec_t margin = 2 * USEC_PER_SEC;

    /* every member accepted: no demotion; the licence runs past the lease's fence point, bounded by ttl */
    T_INIT(&t, "failsafe_mode: true\n", MINE);
    t_primary(&t);
    t.h.view.lock_valid_until = now_monotonic() + 5 * USEC_PER_SEC;
    fake.update_leader = -ETIMEDOUT;
    fake.failsafe_ok = true;
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader", "failsafe_check(in time)", "publish");
    assert_non_null(strstr(t.d.message, "continue to run as a leader because failsafe mode is enabled"));
    assert_true(t.h.failsafe.active);
    assert_int_equal(t.h.view.lock_valid_until, 0); /* the lease is gone: the licence stands in for it */
    usec_t licence = t.h.failsafe.licence_until;
    assert_true(licence > now_monotonic() + 5 * USEC_PER_SEC);
    assert_true(licence <= t.h.failsafe.round_sent + 30 * USEC_PER_SEC - margin);
    assert_int_equal(primary_fence_at(&t.h), licence);
    fake_events_clear();
    assert_false(fence_expired_lease(&t.h));
    EXPECT_NO_EVENTS();
    /* no new survival decision before the licence ran out: fenced like an expired lease */
    t.h.failsafe.licence_until = now_monotonic() - 1;
    assert_true(fence_expired_lease(&t.h));
    EXPECT_EVENTS("publish_stopping", "stop_postgres(immediate)", DEMOTED, "start_postgres(replica, -)");
    assert_int_equal(t.h.failsafe.licence_until, 0);
    assert_false(t.h.failsafe.active);
    t_free(&t);

    /* a member did not accept: demoted as without failsafe mode (read-only without upstream) */
    T_INIT(&t, "failsafe_mode: true\n", MINE);
    t_primary(&t);
    t.h.view.lock_valid_until = now_monotonic() + 5 * USEC_PER_SEC;
    fake.update_leader = -ETIMEDOUT;
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader", "failsafe_check(in time)", "publish_stopping", "stop_postgres(fast)", DEMOTED,
                  "start_postgres(replica, -)");
    assert_int_equal(t.h.failsafe.licence_until, 0);
    assert_false(t.h.failsafe.active);
    t_free(&t);

    /* the POSTs ran into the fence point (the scripted check takes longer than the licence left): no fast stop */
    T_INIT(&t, "failsafe_mode: true\n", MINE);
    t_primary(&t);
    t.h.view.lock_valid_until = now_monotonic() + margin + 50 * USEC_PER_MSEC; /* the fence point 50 ms away */
    fake.update_leader = -ETIMEDOUT;
    fake.failsafe_ok = true;
    fake.failsafe_delay_us = 100000;
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader", "failsafe_check(in time)", "publish_stopping", "stop_postgres(immediate)",
                  DEMOTED, "start_postgres(replica, -)");
    t_free(&t);

    /* the fence point passed before the renewal failed: no POSTs, fenced at once */
    T_INIT(&t, "failsafe_mode: true\n", MINE);
    t_primary(&t);
    t.h.view.lock_valid_until = now_monotonic() + margin / 2;
    fake.update_leader = -ETIMEDOUT;
    fake.failsafe_ok = true;
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader", "publish_stopping", "stop_postgres(immediate)", DEMOTED,
                  "start_postgres(replica, -)");
    t_free(&t);

    /* failsafe mode off: no POSTs whatever the members would say */
    T_INIT(&t, NULL, MINE);
    t_primary(&t);
    t.h.view.lock_valid_until = now_monotonic() + 5 * USEC_PER_SEC;
    fake.update_leader = -ETIMEDOUT;
    fake.failsafe_ok = true;
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader", "publish_stopping", "stop_postgres(fast)", DEMOTED,
                  "start_postgres(replica, -)");
    t_free(&t);

    /* the key is someone else's (a lost compare-and-swap, no DCS error): no failsafe */
    T_INIT(&t, "failsafe_mode: true\n", MINE);
    t_primary(&t);
    t.h.view.lock_valid_until = now_monotonic() + 5 * USEC_PER_SEC;
    fake.update_leader = 0;
    fake.failsafe_ok = true;
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader", "publish_stopping", "stop_postgres(immediate)", DEMOTED);
    t_free(&t);

    /* HA_FAILSAFE (the DCS could not be read, every member accepted): the licence until the next decision is due
     * (loop_wait 10 + retry_timeout 10 + 2 x 2 s + the margin), never past the round's send time + ttl less the
     * margin; the DCS calls end 4 s before it, leaving time for the next round */
    T_INIT(&t, "failsafe_mode: true\n", MINE);
    t_primary(&t);
    t.h.failsafe.round_sent = now_monotonic();
    t_run(&t, HA_FAILSAFE);
    EXPECT_EVENTS("publish");
    assert_true(t.h.failsafe.active);
    assert_true(t.h.failsafe.licence_until >= t.h.failsafe.round_sent + 26 * USEC_PER_SEC);
    assert_true(t.h.failsafe.licence_until <= now_monotonic() + 26 * USEC_PER_SEC);
    assert_int_equal(fake.lease_deadline, t.h.failsafe.licence_until - 4 * USEC_PER_SEC);
    /* the round sent long ago: ttl bounds it */
    t.h.failsafe.round_sent = now_monotonic() - 20 * USEC_PER_SEC;
    t_run(&t, HA_FAILSAFE);
    assert_int_equal(t.h.failsafe.licence_until, t.h.failsafe.round_sent + 28 * USEC_PER_SEC);
    /* a successful renewal: the lease is the licence again, failsafe no longer active; /failsafe kept */
    fake.update_leader = 1;
    t_run(&t, HA_UPDATE_LOCK);
    assert_true(lease_held(&t));
    assert_int_equal(t.h.failsafe.licence_until, 0);
    assert_false(t.h.failsafe.active);
    assert_string_equal(fake.events.v[1], "failsafe_update_key");
    t_free(&t);
}

/* A postmaster adopted after an agent restart (role "uninitialized", not starting) whose status query fails: a
 * primary when it ran as one (postmaster.pid "ready", or pg_control "in production"), so that it is fenced
 * without the lock instead of waiting as "starting" forever (H3). */
static void test_may_be_primary_adopted(void **state) {
    (void)state;
    T t;
    T_INIT(&t, NULL, LOCKED);
    t.h.pg.inst.pid = 4242;
    snprintf(t.h.pg.role, sizeof t.h.pg.role, "uninitialized");
    assert_false(may_be_primary(&t.h)); /* adopted as a replica ("standby"), or starting */
    t.h.pg.adopted_primary = true;
    assert_true(may_be_primary(&t.h));
    /* once it answers, its answer counts */
    t.h.pg.st.ok = t.h.pg.st.in_recovery = true;
    assert_false(may_be_primary(&t.h));
    t.h.pg.st.ok = t.h.pg.st.in_recovery = false;
    t.h.pg.inst.pid = 0; /* gone */
    assert_false(may_be_primary(&t.h));
    t_free(&t);
}

/* before_stop's time (M1): on whatever may be a primary or holds the lock, capped by the lease (less a
 * loop_wait) and the fence point; not run at all without a lease or past the fence point. */
static void test_before_stop_limit(void **state) {
    (void)state;
    T t;
    usec_t now = now_monotonic(), s = USEC_PER_SEC;

    /* a replica without the lock: pg_ctl_timeout */
    T_INIT(&t, NULL, LOCKED);
    t_replica(&t);
    assert_int_equal(before_stop_limit(&t.h, now), (usec_t)t.a.cfg.postgresql.pg_ctl_timeout * s);
    t_free(&t);

    /* a running primary with 30 s of lease: 30 - loop_wait */
    T_INIT(&t, NULL, MINE);
    t_primary(&t);
    t.h.view.lock_valid_until = now + 30 * s;
    assert_int_equal(before_stop_limit(&t.h, now), 20 * s);
    t_free(&t);

    /* promoting (still in recovery), "promoted" and not answering, starting as a primary: capped likewise */
    T_INIT(&t, NULL, MINE);
    t_replica(&t);
    t.h.pg.promoting = true;
    snprintf(t.h.pg.role, sizeof t.h.pg.role, "promoted");
    t.h.view.lock_valid_until = now + 30 * s;
    assert_int_equal(before_stop_limit(&t.h, now), 20 * s);
    t.h.pg.st.ok = false;
    assert_int_equal(before_stop_limit(&t.h, now), 20 * s);
    t.h.pg.promoting = false;
    snprintf(t.h.pg.role, sizeof t.h.pg.role, "replica");
    t.h.pg.starting = t.h.pg.start_as_primary = true;
    assert_int_equal(before_stop_limit(&t.h, now), 20 * s);
    t_free(&t);

    /* the lock holder's replica (not yet promoting): capped too */
    T_INIT(&t, NULL, MINE);
    t_replica(&t);
    t.h.view.lock_valid_until = now + 30 * s;
    assert_int_equal(before_stop_limit(&t.h, now), 20 * s);
    t_free(&t);

    /* a short ttl: the fence point (ttl - margin) comes before the lease less loop_wait */
    T_INIT(&t, "ttl: 8\nloop_wait: 1\nretry_timeout: 2\n", MINE);
    t_primary(&t);
    t.h.view.lock_valid_until = now + 3 * s;
    assert_int_equal(before_stop_limit(&t.h, now), 1 * s); /* 3 s less the 2 s margin */
    t_free(&t);

    /* the fence point passed, or no lease at all: not run (a promoting node too) */
    T_INIT(&t, NULL, MINE);
    t_primary(&t);
    t.h.view.lock_valid_until = now + USEC_PER_SEC;
    assert_int_equal(before_stop_limit(&t.h, now), 0);
    t.h.view.lock_valid_until = 0;
    assert_int_equal(before_stop_limit(&t.h, now), 0);
    t_free(&t);
    T_INIT(&t, NULL, LOCKED);
    t_replica(&t);
    t.h.pg.promoting = true;
    assert_int_equal(before_stop_limit(&t.h, now), 0);
    t_free(&t);
}

/* Giving the leader key back is tried even after a DCS call of the cycle failed (the cycle's fail-fast mode is
 * suspended for it, and restored after), M3. */
static void test_release_not_fail_fast(void **state) {
    (void)state;
    T t;
    /* an immediate demotion that releases the key (demote_finish_at) */
    T_INIT(&t, NULL, MINE);
    t_primary(&t);
    dcs_set_fail_fast(true);
    t.d.demote_mode = DEMOTE_IMMEDIATE;
    t_run(&t, HA_DEMOTE);
    EXPECT_EVENTS("publish_stopping", "stop_postgres(immediate)", DEMOTED, "dcs_delete_leader", "dcs_get_cluster");
    assert_true(fake.fail_fast);
    t_free(&t);
    /* a failed promotion gives the key back */
    T_INIT(&t, NULL, UNLOCKED);
    t_replica(&t);
    dcs_set_fail_fast(true);
    fake.promote = -EIO;
    t_run(&t, HA_ACQUIRE_LOCK);
    EXPECT_EVENTS("dcs_attempt_to_acquire_leader", "promote_postgres", "dcs_delete_leader");
    assert_true(fake.fail_fast);
    t_free(&t);
    /* HA_RELEASE_LOCK */
    T_INIT(&t, NULL, MINE);
    dcs_set_fail_fast(true);
    t_run(&t, HA_RELEASE_LOCK);
    EXPECT_EVENTS("dcs_delete_leader");
    assert_true(fake.fail_fast);
    /* ... while a renewal stays in the cycle's mode */
    t_primary(&t);
    t_run(&t, HA_UPDATE_LOCK_ONLY);
    assert_string_equal(fake.events.v[0], "dcs_update_leader [fail-fast]");
    t_free(&t);
}

/* The lease holder's optional work (the slot actions, H1) stops retry_timeout before the fence point, so that
 * the renewal that follows still has its worst case; no lease, no limit. */
static void test_lease_work_deadline(void **state) {
    (void)state;
    T t;
    T_INIT(&t, NULL, MINE);
    t_primary(&t);
    assert_int_equal(lease_work_deadline(&t.h), 0);
    t_run(&t, HA_UPDATE_LOCK);
    usec_t margin = 2 * USEC_PER_SEC, retry = (usec_t)t.h.view.dyn.retry_timeout * USEC_PER_SEC;
    assert_int_equal(lease_work_deadline(&t.h), t.h.view.lock_valid_until - margin - retry);
    t.h.view.lock_valid_until = margin + 1; /* (a fence point closer than retry_timeout: at once) */
    assert_int_equal(lease_work_deadline(&t.h), 1);
    t_free(&t);
}

static void test_switchover(void **state) {
    (void)state;
    T t;
    T_INIT(&t, NULL, MINE, K_FAILOVER("{\"leader\":\"node2\",\"member\":\"node3\"}"));
    t_primary(&t);
    t.h.sync.ssn = xstrdup("node3");
    fake.have_controldata = true;
    fake.cd.checkpoint_lsn = 0x5000000;
    snprintf(t.d.message, sizeof t.d.message, "manual failover: demoting myself");
    t_run(&t, HA_SWITCHOVER);
    /* renewed; the CHECKPOINT runs in a thread; the leader's per-cycle work (slots, /status, /sync) waits: the
     * handover publishes what counts; a snapshot without the leader's lease is published at once (the health
     * checks no longer count this node as the primary from the start of the switchover) */
    EXPECT_EVENTS("dcs_update_leader", "publish");
    assert_string_equal(stepdown_action(&t.h), "switchover");
    /* the next cycles: the CHECKPOINT is done, the stop begun and watched; the lease still ours */
    for (int i = 0; i < 500 && !atomic_load(&t.h.stepdown.checkpoint_done); i++)
        usleep_real(10 * 1000);
    fake_events_clear();
    assert_false(stepdown_step(&t.h));
    EXPECT_EVENTS("publish_stopping", "stop_postgres_begin(fast)");
    assert_false(stepdown_step(&t.h)); /* still stopping */
    assert_true(lease_held(&t));
    /* PostgreSQL stopped cleanly, but the candidate does not confirm the shutdown checkpoint yet: wait
     * (the key is kept and renewed) */
    t.h.pg.inst.pid = 0;
    snprintf(fake.cd.state, sizeof fake.cd.state, "shut down");
    fake.n_peers = 1;
    fake.peers[0] = (PeerStatus){.name = "node3", .reachable = true, .wal_position = 0x5000000};
    fake_events_clear();
    assert_false(stepdown_step(&t.h));
    /* asked every 100 ms for 2 s, then at the next cycle */
    assert_int_equal(drop_probes(), 21);
    EXPECT_EVENTS("refresh_controldata");
    assert_true(lease_held(&t));
    /* it has it: /status with the shutdown checkpoint, the key deleted, a replica without upstream */
    fake.peers[0].wal_position = 0x5000028;
    fake_events_clear();
    assert_true(stepdown_step(&t.h));
    EXPECT_EVENTS("refresh_controldata", "probe_members", DEMOTED_AT, "write_status_optime_only(83886080)",
                  "dcs_delete_leader", "dcs_get_cluster" /* the view read again: the key is no longer ours */,
                  "start_postgres(replica, -)");
    assert_false(lease_held(&t));
    assert_null(t.h.sync.ssn); /* not ours to manage any more */
    assert_null(stepdown_action(&t.h));
    t_free(&t);

    /* pg_control says "shut down" while the postmaster still finishes (its archiver, say) and the candidate has
     * the shutdown checkpoint: released at once (spec §4.8), a replica once the postmaster has exited */
    T_INIT(&t, NULL, MINE, K_FAILOVER("{\"leader\":\"node2\",\"member\":\"node3\"}"));
    t_primary(&t);
    fake.have_controldata = true;
    fake.cd.checkpoint_lsn = 0x5000000;
    t_run(&t, HA_SWITCHOVER);
    for (int i = 0; i < 500 && !atomic_load(&t.h.stepdown.checkpoint_done); i++)
        usleep_real(10 * 1000);
    stepdown_step(&t.h);
    fake.n_peers = 1;
    fake.peers[0] = (PeerStatus){.name = "node3", .reachable = true, .wal_position = 0x5000000};
    fake_events_clear();
    assert_false(stepdown_between_cycles(&t.h)); /* pg_control: not yet */
    EXPECT_NO_EVENTS();
    snprintf(fake.cd.state, sizeof fake.cd.state, "shut down");
    t.h.stepdown.next_early_look = 0;            /* looked at every 20 ms */
    assert_false(stepdown_between_cycles(&t.h)); /* the candidate does not have it yet */
    EXPECT_EVENTS("refresh_controldata", "probe_members");
    assert_false(stepdown_between_cycles(&t.h)); /* asked again 100 ms later, not at once */
    fake.peers[0].wal_position = 0x5000028;
    fake_events_clear();
    t.h.stepdown.next_early_look = 0;
    assert_true(stepdown_between_cycles(&t.h));
    EXPECT_EVENTS("refresh_controldata", "probe_members", DEMOTED_AT, "write_status_optime_only(83886080)",
                  "dcs_delete_leader", "dcs_get_cluster", "publish");
    assert_false(t.h.pg.stop_patient); /* no lease to protect: a stop that hangs is escalated as usual */
    assert_false(lease_held(&t));
    assert_string_equal(stepdown_action(&t.h), "switchover");
    fake_events_clear();
    assert_false(stepdown_step(&t.h)); /* the postmaster still runs */
    EXPECT_NO_EVENTS();
    t.h.pg.inst.pid = 0;
    assert_true(stepdown_step(&t.h));
    EXPECT_EVENTS("start_postgres(replica, -)");
    assert_null(stepdown_action(&t.h));
    t_free(&t);

    /* the candidate never confirms it, or the stop was not clean: the switchover is given up, PostgreSQL
     * starts again as the primary (the key is still ours) and /failover is cleared */
    for (int unclean = 0; unclean <= 1; unclean++) {
        T_INIT(&t, NULL, MINE, K_FAILOVER("{\"leader\":\"node2\",\"member\":\"node3\"}"));
        t_primary(&t);
        fake.have_controldata = true;
        fake.cd.checkpoint_lsn = 0x5000000;
        snprintf(fake.cd.state, sizeof fake.cd.state, "%s", unclean ? "in production" : "shut down");
        t_run(&t, HA_SWITCHOVER);
        for (int i = 0; i < 500 && !atomic_load(&t.h.stepdown.checkpoint_done); i++)
            usleep_real(10 * 1000);
        stepdown_step(&t.h);
        t.h.pg.inst.pid = 0;
        fake_events_clear();
        stepdown_step(&t.h);
        if (unclean) { /* at once */
            EXPECT_EVENTS("refresh_controldata", "dcs_set_failover({}, 16)", "dcs_update_leader(no view)",
                          "start_postgres(primary, -)");
        } else { /* after waiting 10 s for the confirmation */
            t.h.stepdown.stopped_at -= 11 * USEC_PER_SEC;
            fake_events_clear();
            stepdown_step(&t.h);
            assert_int_equal(drop_probes(), 21);
            EXPECT_EVENTS("refresh_controldata", "dcs_set_failover({}, 16)", "dcs_update_leader(no view)",
                          "start_postgres(primary, -)");
        }
        assert_true(lease_held(&t));
        assert_null(stepdown_action(&t.h));
        t_free(&t);
    }

    /* the lease ran out while PostgreSQL stopped: nothing is released, /status not written */
    T_INIT(&t, NULL, MINE, K_FAILOVER("{\"leader\":\"node2\",\"member\":\"node3\"}"));
    t_primary(&t);
    t_run(&t, HA_SWITCHOVER);
    for (int i = 0; i < 500 && !atomic_load(&t.h.stepdown.checkpoint_done); i++)
        usleep_real(10 * 1000);
    stepdown_step(&t.h);
    t.h.view.lock_valid_until = 0;
    t.h.pg.inst.pid = 0;
    fake_events_clear();
    stepdown_step(&t.h);
    EXPECT_EVENTS(DEMOTED);
    t_free(&t);

    /* the renewal fails: no switchover, the lock failure path (someone else's key: stop) */
    T_INIT(&t, NULL, MINE);
    t_primary(&t);
    fake.update_leader = 0;
    t_run(&t, HA_SWITCHOVER);
    EXPECT_EVENTS("dcs_update_leader", "publish_stopping", "stop_postgres(immediate)", DEMOTED);
    t_free(&t);
}

static void test_demote_modes(void **state) {
    (void)state;
    T t;
    T_INIT(&t, NULL, MINE);
    t_primary(&t);
    t.d.demote_mode = DEMOTE_IMMEDIATE;
    t_run(&t, HA_DEMOTE);
    EXPECT_EVENTS("publish_stopping", "stop_postgres(immediate)", DEMOTED, "dcs_delete_leader", "dcs_get_cluster");
    t_free(&t);

    T_INIT(&t, NULL, MINE);
    t_primary(&t);
    t.d.demote_mode = DEMOTE_IMMEDIATE_NOLOCK;
    t_run(&t, HA_DEMOTE);
    EXPECT_EVENTS("publish_stopping", "stop_postgres(immediate)", DEMOTED);
    t_free(&t);

    T_INIT(&t, NULL, MINE);
    t_primary(&t);
    t.d.demote_mode = DEMOTE_OFFLINE;
    t_run(&t, HA_DEMOTE);
    EXPECT_EVENTS("publish_stopping", "stop_postgres(fast)", DEMOTED, "start_postgres(replica, -)");
    t_free(&t);

    /* graceful (not what a switchover uses: stepdown.c) without a checkpoint location in pg_control: no
     * /status write */
    T_INIT(&t, NULL, MINE);
    t_primary(&t);
    t.d.demote_mode = DEMOTE_GRACEFUL;
    t_run(&t, HA_DEMOTE);
    EXPECT_EVENTS("publish_stopping", "stop_postgres(fast)", DEMOTED, "dcs_delete_leader", "dcs_get_cluster");
    t_free(&t);

    /* the stop fails: the key is kept */
    T_INIT(&t, NULL, MINE);
    t_primary(&t);
    t.d.demote_mode = DEMOTE_IMMEDIATE;
    fake.stop = -ETIMEDOUT;
    t_run(&t, HA_DEMOTE);
    EXPECT_EVENTS("publish_stopping", "stop_postgres(immediate)");
    t_free(&t);
}

static void test_release_lock(void **state) {
    (void)state;
    T t;
    T_INIT(&t, NULL, MINE);
    t.h.view.lock_valid_until = now_monotonic() + 30 * USEC_PER_SEC;
    t_run(&t, HA_RELEASE_LOCK);
    EXPECT_EVENTS("dcs_delete_leader");
    assert_false(lease_held(&t));
    t_free(&t);
}

/* A switchover inside a standby cluster (decision.standby_leader): renewed, then the key released with
 * PostgreSQL left running in recovery (no stop, no checkpoint: nothing to flush), the role replica. */
static void test_standby_leader_handover(void **state) {
    (void)state;
    const char *dyn = "standby_cluster:\n  host: 10.9.9.9\n  port: 5433\n";
    T t;
    T_INIT(&t, dyn, MINE, K_FAILOVER("{\"leader\":\"node2\",\"member\":\"node3\"}"));
    t_replica(&t);
    snprintf(t.h.pg.role, sizeof t.h.pg.role, "standby_leader");
    t.d.standby_leader = true;
    snprintf(t.d.target, sizeof t.d.target, "node3");
    snprintf(t.d.message, sizeof t.d.message, "switchover: demoting myself");
    t_run(&t, HA_SWITCHOVER);
    EXPECT_EVENTS("dcs_update_leader", "dcs_delete_leader", "dcs_get_cluster" /* the view: the key not ours */,
                  "set_role(replica)", "run_callback(on_role_change, replica)", "publish");
    assert_false(lease_held(&t));
    assert_int_equal(t.h.pg.inst.pid, 4242); /* still running */
    t_free(&t);

    /* with standby_cluster.primary_slot_name: the remote's slot is let go of at once (still streaming from the
     * remote, without it, until the new standby leader holds the key), so that the new one's WAL receiver does not
     * find it active */
    T_INIT(&t, "standby_cluster:\n  host: 10.9.9.9\n  port: 5433\n  primary_slot_name: dr\n", MINE,
           K_FAILOVER("{\"leader\":\"node2\",\"member\":\"node3\"}"));
    t_replica(&t);
    snprintf(t.h.pg.role, sizeof t.h.pg.role, "standby_leader");
    t.d.standby_leader = true;
    t_run(&t, HA_SWITCHOVER);
    EXPECT_EVENTS("dcs_update_leader", "dcs_delete_leader", "write_configuration(replica, " FOLLOW_REMOTE_NO_SLOT ")",
                  "reload_postgres", "dcs_get_cluster", "set_role(replica)", "run_callback(on_role_change, replica)",
                  "publish");
    t_free(&t);
    /* ... not with use_slots off (the slot was never used) */
    T_INIT(
        &t,
        "standby_cluster:\n  host: 10.9.9.9\n  port: 5433\n  primary_slot_name: dr\npostgresql:\n  use_slots: false\n",
        MINE, K_FAILOVER("{\"leader\":\"node2\",\"member\":\"node3\"}"));
    t_replica(&t);
    snprintf(t.h.pg.role, sizeof t.h.pg.role, "standby_leader");
    t.d.standby_leader = true;
    t_run(&t, HA_SWITCHOVER);
    EXPECT_EVENTS("dcs_update_leader", "dcs_delete_leader", "dcs_get_cluster", "set_role(replica)",
                  "run_callback(on_role_change, replica)", "publish");
    t_free(&t);

    /* the release fails: still the standby leader (the lease kept), the next cycle decides again */
    T_INIT(&t, dyn, MINE, K_FAILOVER("{\"leader\":\"node2\",\"member\":\"node3\"}"));
    t_replica(&t);
    snprintf(t.h.pg.role, sizeof t.h.pg.role, "standby_leader");
    fake.delete_leader = -ETIMEDOUT;
    t.d.standby_leader = true;
    t_run(&t, HA_SWITCHOVER);
    EXPECT_EVENTS("dcs_update_leader", "dcs_delete_leader");
    assert_true(lease_held(&t));
    assert_string_equal(t.h.pg.role, "standby_leader");
    t_free(&t);

    /* the candidate never took the key and this node took it back: re-pointed at the remote with the slot again */
    T_INIT(&t, "standby_cluster:\n  host: 10.9.9.9\n  port: 5433\n  primary_slot_name: dr\n", MINE);
    t_replica(&t);
    snprintf(t.h.pg.following, sizeof t.h.pg.following, FOLLOW_REMOTE_NO_SLOT);
    t.h.pg.following_set = true;
    t.d.standby_leader = true;
    snprintf(t.d.target, sizeof t.d.target, FOLLOW_REMOTE);
    t_run(&t, HA_UPDATE_LOCK);
    assert_true(fake.events.n >= 4);
    assert_string_equal(fake.events.v[2], "write_configuration(replica, " FOLLOW_REMOTE ")");
    assert_string_equal(fake.events.v[3], "reload_postgres");
    t_free(&t);

    /* PostgreSQL not ready (starting): postponed, nothing released */
    T_INIT(&t, dyn, MINE, K_FAILOVER("{\"leader\":\"node2\",\"member\":\"node3\"}"));
    t_replica(&t);
    t.l.pg_ready = false;
    t.d.standby_leader = true;
    t_run(&t, HA_SWITCHOVER);
    EXPECT_EVENTS("dcs_update_leader");
    assert_true(lease_held(&t));
    t_free(&t);
}

/* ------------------------------------------------------------------------------------------------
 * HA_FOLLOW, HA_START, HA_CLONE, HA_BOOTSTRAP, HA_WRITE_INITIALIZE, HA_NONE, HA_FATAL */

static void test_follow(void **state) {
    (void)state;
    T t;
    /* PostgreSQL 13+ reloads primary_conninfo */
    T_INIT(&t, NULL, LOCKED);
    t_replica(&t);
    snprintf(t.d.target, sizeof t.d.target, "node3");
    t_run(&t, HA_FOLLOW);
    EXPECT_EVENTS("write_configuration(replica, node3)", "reload_postgres");
    assert_string_equal(t.h.pg.following, "node3");
    t_free(&t);

    /* before 13: a restart */
    T_INIT(&t, NULL, LOCKED);
    t_replica(&t);
    t.h.pg.inst.major = 12;
    snprintf(t.d.target, sizeof t.d.target, "node1");
    t_run(&t, HA_FOLLOW);
    EXPECT_EVENTS("write_configuration(replica, node1)", "stop_postgres(fast)", "start_postgres(replica, node1)");
    t_free(&t);

    /* the configuration cannot be written: nothing else */
    T_INIT(&t, NULL, LOCKED);
    t_replica(&t);
    fake.write_configuration = -EIO;
    t_run(&t, HA_FOLLOW);
    EXPECT_EVENTS("write_configuration(replica, -)");
    t_free(&t);

    /* a replica whose WAL went past the leader's timeline switch (the server confirms the timeline it
     * replays): stopped, to be rewound */
    T_INIT(&t, "postgresql:\n  use_pg_rewind: true\n", LOCKED, K_HISTORY_TL3);
    t_replica(&t);
    t.h.pg.st.replay_lsn = 150;
    fake.identify_tli = t.h.pg.st.timeline;
    fake.have_controldata = true;
    fake.cd.wal_log_hints = true;
    snprintf(t.d.target, sizeof t.d.target, "node1");
    t_run(&t, HA_FOLLOW);
    EXPECT_EVENTS("pg_instance_identify_system", "refresh_controldata", "stop_postgres(fast)");
    assert_true(t.h.pg.diverged);
    t_free(&t);

    /* ... but pg_rewind cannot be used (no wal_log_hints, no checksums) and nothing may be removed: it is
     * reported once and left running */
    T_INIT(&t, "postgresql:\n  use_pg_rewind: true\n", LOCKED, K_HISTORY_TL3);
    t_replica(&t);
    t.h.pg.st.replay_lsn = 150;
    fake.identify_tli = t.h.pg.st.timeline;
    fake.have_controldata = true;
    snprintf(t.d.target, sizeof t.d.target, "node1");
    t_run(&t, HA_FOLLOW);
    EXPECT_EVENTS("pg_instance_identify_system", "refresh_controldata", "write_configuration(replica, node1)",
                  "reload_postgres");
    assert_false(t.h.pg.diverged);
    assert_true(t.h.pg.diverged_reported);
    t_free(&t);

    /* the status query's timeline lags (WAL receiver down, no restartpoint yet on the new timeline): the
     * server replays the leader's timeline, nothing diverged (a switchover's old primary, following) */
    T_INIT(&t, "postgresql:\n  use_pg_rewind: true\n", LOCKED, K_HISTORY_TL3);
    t_replica(&t);
    t.h.pg.st.replay_lsn = 150;
    fake.identify_tli = 3;
    snprintf(t.d.target, sizeof t.d.target, "node1");
    t_run(&t, HA_FOLLOW);
    EXPECT_EVENTS("pg_instance_identify_system", "write_configuration(replica, node1)", "reload_postgres");
    assert_false(t.h.pg.diverged);
    t_free(&t);

    /* no replication connection to ask: only a streaming replica's timeline is trusted */
    T_INIT(&t, "postgresql:\n  use_pg_rewind: true\n", LOCKED, K_HISTORY_TL3);
    t_replica(&t);
    t.h.pg.st.replay_lsn = 150;
    t.h.pg.st.streaming = false;
    fake.identify = -ENOTCONN;
    snprintf(t.d.target, sizeof t.d.target, "node1");
    t_run(&t, HA_FOLLOW);
    EXPECT_EVENTS("pg_instance_identify_system", "write_configuration(replica, node1)", "reload_postgres");
    assert_false(t.h.pg.diverged);
    /* ... or one whose receiver has not streamed for a ttl (a diverged replica never streams again) */
    t.h.pg.not_streaming_since = now_monotonic() - (usec_t)(ttl_s(&t.h) + 1) * USEC_PER_SEC;
    fake.have_controldata = true;
    fake.cd.data_checksum_version = 1;
    t_run(&t, HA_FOLLOW);
    EXPECT_EVENTS("pg_instance_identify_system", "refresh_controldata", "stop_postgres(fast)");
    assert_true(t.h.pg.diverged);
    t_free(&t);
}

static void test_start(void **state) {
    (void)state;
    T t;
    /* as primary: make sure of the key first (a compare-and-set, not the view's word) */
    T_INIT(&t, NULL, MINE);
    t.d.as_primary = true;
    t_run(&t, HA_START);
    EXPECT_EVENTS("dcs_update_leader(no view)", "start_postgres(primary, -)");
    assert_true(lease_held(&t));
    t_free(&t);

    /* ... a former replica starts as one and is promoted by a later cycle */
    T_INIT(&t, NULL, MINE);
    t.d.as_primary = true;
    t.h.pg.have_controldata = true;
    snprintf(t.h.pg.cd.state, sizeof t.h.pg.cd.state, "shut down in recovery");
    t_run(&t, HA_START);
    EXPECT_EVENTS("dcs_update_leader(no view)", "start_postgres(replica, -)");
    t_free(&t);

    /* ... the key is not ours: as a replica, without upstream */
    for (int r = -EIO; r <= 0; r += EIO) {
        T_INIT(&t, NULL, MINE);
        t.d.as_primary = true;
        fake.update_leader = r;
        t_run(&t, HA_START);
        EXPECT_EVENTS("dcs_update_leader(no view)", "start_postgres(replica, -)");
        assert_false(lease_held(&t));
        t_free(&t);
    }

    /* a replica of node1 */
    T_INIT(&t, NULL, LOCKED);
    snprintf(t.d.target, sizeof t.d.target, "node1");
    t_run(&t, HA_START);
    EXPECT_EVENTS("start_postgres(replica, node1)");
    t_free(&t);
}

/* ------------------------------------------------------------------------------------------------
 * A former primary (or replica) rejoining a new leader: rewound or rebuilt only when its WAL diverged
 * (spec §4.8, Patroni's _check_timeline_and_lsn() and can_rewind) */

/* node1 leads on timeline 2 after a promotion at 0/50000A0 (the end of node2's shutdown checkpoint) */
#define M1_TL(role, tl)                                                                                            \
    {                                                                                                              \
        "members/node1", "{\"conn_url\":\"postgres://10.0.0.1:5432/postgres\",\"api_url\":\"http://10.0.0.1:8008/" \
                         "patroni\",\"state\":\"running\",\"role\":\"" role "\",\"timeline\":" #tl "}"             \
    }
#define K_HISTORY_TL2 \
    { "history", "[[1,83886240,\"no recovery target specified\"]]" }
#define SWITCH_LSN 0x50000A0LL
#define LOCKED_TL2(role) K_INIT, K_LEADER("node1"), M1_TL(role, 2), K_M2, K_M3, K_STATUS, K_HISTORY_TL2

#define REWIND_EVENTS "write_pgpass", "set_state(running custom bootstrap script)", "task_start(rewind, 10.0.0.1:5432)"

/* node2 stopped: pg_control says `state`, the checkpoint at `lsn` on timeline 1 */
static void t_stopped(T *t, const char *state, long long lsn, bool wal_log_hints) {
    t->h.pg.have_controldata = true;
    snprintf(t->h.pg.cd.state, sizeof t->h.pg.cd.state, "%s", state);
    t->h.pg.cd.checkpoint_tli = 1;
    t->h.pg.cd.checkpoint_lsn = lsn;
    t->h.pg.cd.wal_log_hints = wal_log_hints;
    snprintf(t->d.target, sizeof t->d.target, "node1");
}

#define USE_PG_REWIND "postgresql:\n  use_pg_rewind: true\n"

static void test_rejoin(void **state) {
    (void)state;
    T t;
    /* a planned switchover: the new leader has node2's shutdown checkpoint, whose record ends where the
     * leader's timeline 2 begins: nothing diverged, nothing is removed or rewound */
    for (int i = 0; i < 2; i++) {
        T_INIT(&t, i ? USE_PG_REWIND : NULL, LOCKED_TL2("primary"));
        t.a.cfg.postgresql.remove_data_directory_on_diverged_timelines = !i; /* a local setting */
        t_stopped(&t, "shut down", 0x5000028, true);
        fake.checkpoint_end = SWITCH_LSN;
        t_run(&t, HA_START);
        EXPECT_EVENTS("pg_checkpoint_end(1, 5000028)", "start_postgres(replica, node1)");
        t_free(&t);
    }

    /* a cascade (replicatefrom: node3, a replica): the WAL is compared with the leader's (node1), not the
     * upstream's, whose member key never says primary (the node waited forever before) */
    T_INIT(&t, USE_PG_REWIND, LOCKED_TL2("primary"));
    t_stopped(&t, "shut down", 0x5000028, true);
    snprintf(t.d.target, sizeof t.d.target, "node3");
    fake.checkpoint_end = SWITCH_LSN;
    t_run(&t, HA_START);
    EXPECT_EVENTS("pg_checkpoint_end(1, 5000028)", "start_postgres(replica, node3)");
    t_free(&t);
    /* ... and a diverged one is rewound from the leader */
    T_INIT(&t, USE_PG_REWIND, LOCKED_TL2("primary"));
    t_stopped(&t, "shut down", SWITCH_LSN + 0x1000, true);
    snprintf(t.d.target, sizeof t.d.target, "node3");
    t_run(&t, HA_START);
    EXPECT_EVENTS(REWIND_EVENTS);
    t_free(&t);

    /* the leader's promotion checkpoint is still running (checkpoint_after_promote: false): its timeline is
     * already the new one, so a node that did not diverge follows at once */
    T_INIT(&t, USE_PG_REWIND, K_INIT, K_LEADER("node1"),
           {"members/node1", "{\"conn_url\":\"postgres://10.0.0.1:5432/postgres\",\"api_url\":\"http://10.0.0.1:8008/"
                             "patroni\",\"role\":\"primary\",\"state\":\"running\",\"timeline\":2,"
                             "\"checkpoint_after_promote\":false}"},
           K_M2, K_M3, K_STATUS, K_HISTORY_TL2);
    t_stopped(&t, "shut down", 0x5000028, true);
    fake.checkpoint_end = SWITCH_LSN;
    t_run(&t, HA_START);
    EXPECT_EVENTS("pg_checkpoint_end(1, 5000028)", "start_postgres(replica, node1)");
    t_free(&t);

    /* the checkpoint record ends past the switch (the new leader did not get it): diverged */
    T_INIT(&t, NULL, LOCKED_TL2("primary"));
    t.a.cfg.postgresql.remove_data_directory_on_diverged_timelines = true;
    t_stopped(&t, "shut down", 0x5000028, false);
    fake.checkpoint_end = SWITCH_LSN + 0x78;
    t_run(&t, HA_START);
    EXPECT_EVENTS("pg_checkpoint_end(1, 5000028)", "remove_data_directory");
    t_free(&t);

    /* its checkpoint is at or past the switch: diverged; rewound when pg_rewind can be used */
    T_INIT(&t, USE_PG_REWIND, LOCKED_TL2("primary"));
    t_stopped(&t, "shut down", SWITCH_LSN + 0x1000, true);
    t_run(&t, HA_START);
    EXPECT_EVENTS(REWIND_EVENTS);
    t_free(&t);

    /* ... a leader key of Patroni 3.x (role master) counts as a primary */
    T_INIT(&t, USE_PG_REWIND, LOCKED_TL2("master"));
    t_stopped(&t, "shut down", SWITCH_LSN + 0x1000, true);
    t_run(&t, HA_START);
    EXPECT_EVENTS(REWIND_EVENTS);
    t_free(&t);

    /* ... but never against the standby leader of a standby cluster (Patroni checks only against a primary):
     * it replays the remote's timelines and reports them late, so a healthy replica would look diverged */
    T_INIT(&t, USE_PG_REWIND, LOCKED_TL2("standby_leader"));
    t_stopped(&t, "shut down in recovery", SWITCH_LSN + 0x1000, true);
    t.h.pg.cd.min_recovery_tli = 3;
    t.h.pg.cd.min_recovery_lsn = SWITCH_LSN + 0x1000;
    t_run(&t, HA_START);
    EXPECT_EVENTS("start_postgres(replica, node1)");
    t_free(&t);
    /* ... not even a crashed node (a rewind would follow crash recovery against a primary) */
    T_INIT(&t, USE_PG_REWIND, LOCKED_TL2("standby_leader"));
    t_stopped(&t, "in production", SWITCH_LSN + 0x1000, true);
    t_run(&t, HA_START);
    EXPECT_EVENTS("start_postgres(replica, node1)");
    t_free(&t);

    /* ... data checksums instead of wal_log_hints do as well */
    T_INIT(&t, USE_PG_REWIND, LOCKED_TL2("primary"));
    t_stopped(&t, "shut down", SWITCH_LSN + 0x1000, false);
    t.h.pg.cd.data_checksum_version = 1;
    t_run(&t, HA_START);
    EXPECT_EVENTS(REWIND_EVENTS);
    t_free(&t);

    /* ... without wal_log_hints and checksums pg_rewind cannot work (Patroni's can_rewind): with
     * remove_data_directory_on_diverged_timelines the data directory goes, without it the node starts
     * as it is */
    T_INIT(&t, USE_PG_REWIND, LOCKED_TL2("primary"));
    t.a.cfg.postgresql.remove_data_directory_on_diverged_timelines = true;
    t_stopped(&t, "shut down", SWITCH_LSN + 0x1000, false);
    t_run(&t, HA_START);
    EXPECT_EVENTS("remove_data_directory");
    t_free(&t);
    T_INIT(&t, USE_PG_REWIND, LOCKED_TL2("primary"));
    t_stopped(&t, "shut down", SWITCH_LSN + 0x1000, false);
    t_run(&t, HA_START);
    EXPECT_EVENTS("start_postgres(replica, node1)");
    t_free(&t);
    /* ... nor when the pg_rewind binary does not run */
    T_INIT(&t, USE_PG_REWIND, LOCKED_TL2("primary"));
    t_stopped(&t, "shut down", SWITCH_LSN + 0x1000, true);
    fake.rewind_unusable = true;
    t_run(&t, HA_START);
    EXPECT_EVENTS("start_postgres(replica, node1)");
    t_free(&t);

    /* the same timeline as the leader (the primary's agent restarted, someone else took the key before
     * any promotion... or a replica): nothing diverged */
    T_INIT(&t, NULL, K_INIT, K_LEADER("node1"), M1_TL("primary", 1), K_M2, K_M3, K_STATUS);
    t.a.cfg.postgresql.remove_data_directory_on_diverged_timelines = true;
    t_stopped(&t, "shut down", SWITCH_LSN + 0x1000, false);
    t_run(&t, HA_START);
    EXPECT_EVENTS("start_postgres(replica, node1)");
    t_free(&t);

    /* a former replica that replayed only up to the switch: nothing diverged; past it: diverged */
    T_INIT(&t, NULL, LOCKED_TL2("primary"));
    t.a.cfg.postgresql.remove_data_directory_on_diverged_timelines = true;
    t_stopped(&t, "shut down in recovery", 0x4000000, false);
    t.h.pg.cd.min_recovery_tli = 1;
    t.h.pg.cd.min_recovery_lsn = SWITCH_LSN;
    t_run(&t, HA_START);
    EXPECT_EVENTS("start_postgres(replica, node1)");
    t.h.pg.cd.min_recovery_lsn = SWITCH_LSN + 1;
    t_run(&t, HA_START);
    EXPECT_EVENTS("remove_data_directory");
    t_free(&t);

    /* the leader has not finished its promotion, or /history does not reach its timeline yet: no decision,
     * nothing started, removed or rewound this cycle */
    T_INIT(&t, NULL, LOCKED_TL2("replica"));
    t.a.cfg.postgresql.remove_data_directory_on_diverged_timelines = true;
    t_stopped(&t, "shut down", 0x5000028, false);
    t_run(&t, HA_START);
    EXPECT_NO_EVENTS();
    t_free(&t);
    T_INIT(&t, NULL, K_INIT, K_LEADER("node1"), M1_TL("primary", 2), K_M2, K_M3, K_STATUS);
    t.a.cfg.postgresql.remove_data_directory_on_diverged_timelines = true;
    t_stopped(&t, "shut down", 0x5000028, false);
    t_run(&t, HA_START);
    EXPECT_NO_EVENTS();
    t_free(&t);

    /* a crashed former primary: its position is known only after crash recovery. With pg_rewind the rewind
     * task finishes crash recovery and pg_rewind finds out; without it nothing is removed on a guess */
    T_INIT(&t, USE_PG_REWIND, LOCKED_TL2("primary"));
    t_stopped(&t, "in production", 0x5000028, true);
    t_run(&t, HA_START);
    EXPECT_EVENTS("write_pgpass", "set_state(running custom bootstrap script)",
                  "task_start(rewind, 10.0.0.1:5432, crash recovery)");
    t_free(&t);
    T_INIT(&t, NULL, LOCKED_TL2("primary"));
    t.a.cfg.postgresql.remove_data_directory_on_diverged_timelines = true;
    t_stopped(&t, "in production", 0x5000028, false);
    t_run(&t, HA_START);
    EXPECT_EVENTS("start_postgres(replica, node1)");
    t_free(&t);

    /* neither use_pg_rewind nor remove_data_directory_on_diverged_timelines: no check at all */
    T_INIT(&t, NULL, LOCKED_TL2("primary"));
    t_stopped(&t, "shut down", SWITCH_LSN + 0x1000, true);
    t_run(&t, HA_START);
    EXPECT_EVENTS("start_postgres(replica, node1)");
    t_free(&t);
}

/* In a standby cluster a stopped member's WAL is checked against the remote primary's (Patroni's
 * _handle_rewind_or_reinitialize with get_remote_member()): its timeline and history over the replication protocol,
 * and pg_rewind from standby_cluster host:port when it diverged. */
#define STANDBY_REWIND "standby_cluster:\n  host: 10.9.9.9\n  port: 5433\npostgresql:\n  use_pg_rewind: true\n"
#define REMOTE_REWIND_EVENTS                                                                           \
    "pg_remote_timeline(10.9.9.9:5433)", "write_pgpass", "set_state(running custom bootstrap script)", \
        "task_start(rewind, 10.9.9.9:5433)", "  source timeline 2"
/* the standby leader renews its key before it asks the remote */
#define RENEWED "dcs_update_leader"

static void t_standby_stopped(T *t, long long min_recovery_lsn) {
    t_stopped(t, "shut down in recovery", 0x4000000, true);
    t->h.pg.cd.min_recovery_tli = 1;
    t->h.pg.cd.min_recovery_lsn = min_recovery_lsn;
    snprintf(t->d.target, sizeof t->d.target, FOLLOW_REMOTE);
    fake.remote_tli = 2;
    fake.remote_history = "1\t0/50000A0\tno recovery target specified\n";
}

static void test_standby_cluster_rewind(void **state) {
    (void)state;
    T t;
    /* the standby leader replayed past the point where the remote's timeline 2 left timeline 1: rewound from it */
    T_INIT(&t, STANDBY_REWIND, MINE);
    t_standby_stopped(&t, SWITCH_LSN + 0x1000);
    t_run(&t, HA_START);
    EXPECT_EVENTS(RENEWED, REMOTE_REWIND_EVENTS);
    t_free(&t);
    /* ... a replica of the standby leader too (checked against the remote, as Patroni does) */
    T_INIT(&t, STANDBY_REWIND, K_INIT, K_LEADER("node1"), K_M1, K_M2, K_M3, K_STATUS);
    t_standby_stopped(&t, SWITCH_LSN + 0x1000);
    snprintf(t.d.target, sizeof t.d.target, "node1");
    t_run(&t, HA_START);
    EXPECT_EVENTS(REMOTE_REWIND_EVENTS);
    t_free(&t);
    /* not past the switch: starts as the standby leader */
    T_INIT(&t, STANDBY_REWIND, MINE);
    t_standby_stopped(&t, SWITCH_LSN);
    t_run(&t, HA_START);
    EXPECT_EVENTS(RENEWED, "pg_remote_timeline(10.9.9.9:5433)", "start_postgres(replica, " FOLLOW_REMOTE ")",
                  "set_role(standby_leader)");
    t_free(&t);
    /* on the remote's timeline, or ahead of it */
    for (int tl = 2; tl <= 3; tl++) {
        T_INIT(&t, STANDBY_REWIND, MINE);
        t_standby_stopped(&t, SWITCH_LSN + 0x1000);
        t.h.pg.cd.min_recovery_tli = tl;
        t_run(&t, HA_START);
        if (tl == 2)
            EXPECT_EVENTS(RENEWED, "pg_remote_timeline(10.9.9.9:5433)", "start_postgres(replica, " FOLLOW_REMOTE ")",
                          "set_role(standby_leader)");
        else
            EXPECT_EVENTS(RENEWED, REMOTE_REWIND_EVENTS);
        t_free(&t);
    }
    /* the remote does not answer, is in recovery itself, or is another cluster (a wrong port): nothing decided, it
     * starts as it is (a crashed node too: no crash recovery and pg_rewind against it) */
    for (int i = 0; i < 6; i++) {
        T_INIT(&t, STANDBY_REWIND, MINE);
        t_standby_stopped(&t, SWITCH_LSN + 0x1000);
        snprintf(t.h.pg.cd.sysid, sizeof t.h.pg.cd.sysid, SYSID);
        fake.remote_sysid = SYSID;
        if (i % 3 == 1)
            fake.remote_in_recovery = true;
        else if (i % 3 == 2)
            fake.remote_sysid = "7409999999999999999";
        else
            fake.remote = -ENOTCONN;
        if (i >= 3)
            snprintf(t.h.pg.cd.state, sizeof t.h.pg.cd.state, "in production");
        t_run(&t, HA_START);
        EXPECT_EVENTS(RENEWED, "pg_remote_timeline(10.9.9.9:5433)", "start_postgres(replica, " FOLLOW_REMOTE ")",
                      "set_role(standby_leader)");
        t_free(&t);
    }
    /* the same system identifier: compared as usual; a crashed node is rewound after its crash recovery */
    T_INIT(&t, STANDBY_REWIND, MINE);
    t_standby_stopped(&t, SWITCH_LSN - 0x1000);
    snprintf(t.h.pg.cd.state, sizeof t.h.pg.cd.state, "in production");
    snprintf(t.h.pg.cd.sysid, sizeof t.h.pg.cd.sysid, SYSID);
    fake.remote_sysid = SYSID;
    t_run(&t, HA_START);
    EXPECT_EVENTS(RENEWED, "pg_remote_timeline(10.9.9.9:5433)", "write_pgpass",
                  "set_state(running custom bootstrap script)", "task_start(rewind, 10.9.9.9:5433, crash recovery)",
                  "  source timeline 2");
    t_free(&t);
    /* an archive-only standby cluster (restore_command, no host): nothing to compare with */
    T_INIT(&t, "standby_cluster:\n  restore_command: cp /a/%f %p\npostgresql:\n  use_pg_rewind: true\n", MINE);
    t_standby_stopped(&t, SWITCH_LSN + 0x1000);
    t_run(&t, HA_START);
    EXPECT_EVENTS(RENEWED, "start_postgres(replica, " FOLLOW_REMOTE ")", "set_role(standby_leader)");
    t_free(&t);
    /* pg_rewind cannot be used (no wal_log_hints nor checksums), or failed before: not asked, started as it is
     * (no removal of the data directory in a standby cluster, as Patroni) */
    for (int i = 0; i < 2; i++) {
        T_INIT(&t, STANDBY_REWIND, MINE);
        t.a.cfg.postgresql.remove_data_directory_on_diverged_timelines = true;
        t_standby_stopped(&t, SWITCH_LSN + 0x1000);
        if (i)
            t.h.pg.rewind_failed = true;
        else
            t.h.pg.cd.wal_log_hints = false;
        t_run(&t, HA_START);
        EXPECT_EVENTS(RENEWED, "start_postgres(replica, " FOLLOW_REMOTE ")", "set_role(standby_leader)");
        t_free(&t);
    }
}

static void test_clone(void **state) {
    (void)state;
    T t;
    T_INIT(&t, NULL, LOCKED);
    snprintf(t.d.target, sizeof t.d.target, "node1");
    t_run(&t, HA_CLONE);
    EXPECT_EVENTS("write_pgpass", "set_state(creating replica)", "task_start(clone, 10.0.0.1:5432)");
    assert_int_equal(t.h.work.task.kind, TASK_CLONE);
    t_free(&t);

    /* a member without a connection address, a member that is not there: nothing is started */
    T_INIT(&t, NULL, LOCKED, {"members/node4", "{\"state\":\"running\",\"role\":\"replica\"}"});
    snprintf(t.d.target, sizeof t.d.target, "node4");
    t_run(&t, HA_CLONE);
    EXPECT_NO_EVENTS();
    snprintf(t.d.target, sizeof t.d.target, "node9");
    t_run(&t, HA_CLONE);
    EXPECT_NO_EVENTS();
    assert_int_equal(t.h.work.task.kind, TASK_NONE);
    t_free(&t);
}

static void test_bootstrap_and_initialize(void **state) {
    (void)state;
    T t;
    T_INIT(&t, NULL, K_M2);
    t_run(&t, HA_BOOTSTRAP);
    EXPECT_EVENTS("dcs_initialize(create, \"\")", "set_state(initializing new cluster)", "task_start(bootstrap, -:0)");
    assert_true(t.h.work.bootstrap_pending);
    t_free(&t);

    for (int r = -EIO; r <= 0; r += EIO) {
        T_INIT(&t, NULL, K_M2);
        fake.initialize = r;
        t_run(&t, HA_BOOTSTRAP);
        EXPECT_EVENTS("dcs_initialize(create, \"\")");
        assert_false(t.h.work.bootstrap_pending);
        t_free(&t);
    }

    /* /initialize missing: created; present (empty during a bootstrap): updated */
    T_INIT(&t, NULL, K_M2);
    t_run(&t, HA_WRITE_INITIALIZE);
    EXPECT_EVENTS("dcs_initialize(create, \"" SYSID "\")");
    t_free(&t);
    T_INIT(&t, NULL, {"initialize", ""}, K_M2);
    t_run(&t, HA_WRITE_INITIALIZE);
    EXPECT_EVENTS("dcs_initialize(update, \"" SYSID "\")");
    t_free(&t);
}

static void test_none_and_fatal(void **state) {
    (void)state;
    T t;
    T_INIT(&t, NULL, LOCKED);
    t_replica(&t);
    t_run(&t, HA_NONE);
    EXPECT_NO_EVENTS();
    snprintf(t.d.message, sizeof t.d.message, "refusing to run");
    t_run(&t, HA_FATAL);
    EXPECT_NO_EVENTS();
    assert_true(t.h.fatal);
    t_run(&t, (HaAction)99); /* not an action: ignored */
    EXPECT_NO_EVENTS();
    t_free(&t);
}

/* ------------------------------------------------------------------------------------------------
 * The watchdog device (spec §4.6 step 1, §4.13) through a fake driver: armed before a promotion or a
 * start as the primary, kept alive after each renewal and only then, disarmed once PostgreSQL stopped;
 * `required` without it gives the key back (or demotes a running primary) */

static int wd_check_result;
static int wd_timeout_now;

static int wd_check(const char *device) {
    fake_event("wd_check(%s)", device);
    return wd_check_result;
}

static int wd_open(const char *device) {
    fake_event("wd_open(%s)", device);
    return 9;
}

static int wd_get_support(int fd, WatchdogInfo *ret) {
    assert_int_equal(fd, 9);
    fake_event("wd_get_support");
    *ret = (WatchdogInfo){.options = WD_OPT_SETTIMEOUT | WD_OPT_MAGICCLOSE};
    return 0;
}

static int wd_set_timeout(int fd, int seconds) {
    assert_int_equal(fd, 9);
    fake_event("wd_set_timeout(%d)", seconds);
    wd_timeout_now = seconds;
    return 0;
}

static int wd_get_timeout(int fd, int *ret) {
    assert_int_equal(fd, 9);
    fake_event("wd_get_timeout");
    *ret = wd_timeout_now;
    return 0;
}

static int wd_keepalive(int fd) {
    assert_int_equal(fd, 9);
    fake_event("wd_keepalive");
    return 0;
}

static int wd_magic_close(int fd) {
    assert_int_equal(fd, 9);
    fake_event("wd_magic_close");
    return 0;
}

static void wd_close(int fd) {
    assert_int_equal(fd, 9);
    fake_event("wd_close");
}

static const WatchdogDriver wd_fake = {
    .check = wd_check,
    .open = wd_open,
    .get_support = wd_get_support,
    .set_timeout = wd_set_timeout,
    .get_timeout = wd_get_timeout,
    .keepalive = wd_keepalive,
    .magic_close = wd_magic_close,
    .close = wd_close,
};

#define WD_ARMING \
    "wd_check(/dev/watchdog)", "wd_open(/dev/watchdog)", "wd_get_support", "wd_set_timeout(25)", "wd_get_timeout"

/* node2 with watchdog.mode `mode` on the fake device; `usable` false: the device is missing */
static void t_watchdog(T *t, const char *mode, bool usable) {
    config_free(&t->a.cfg);
    char *yaml = xasprintf("watchdog:\n  mode: %s\n", mode);
    load_config(&t->a.cfg, "node2", yaml);
    free(yaml);
    watchdog_init(&t->h.wd, &wd_fake);
    wd_check_result = usable ? 0 : -ENOENT;
}

/* ... armed already (this node leads) */
static void t_armed(T *t) {
    WatchdogSettings ws = watchdog_settings(&t->h);
    assert_true(watchdog_activate(&t->h.wd, &ws));
    assert_true(watchdog_is_running(&t->h.wd));
    t->h.view.lock_valid_until = now_monotonic() + 30 * USEC_PER_SEC;
    fake_events_clear();
}

static void t_wd_free(T *t) {
    watchdog_free(&t->h.wd);
    t_free(t);
}

static void test_watchdog_armed_before_promotion(void **state) {
    (void)state;
    T t;
    /* the race won: armed with ttl - safety_margin, then promoted */
    T_INIT(&t, NULL, UNLOCKED);
    t_watchdog(&t, "automatic", true);
    t_replica(&t);
    t_run(&t, HA_ACQUIRE_LOCK);
    EXPECT_EVENTS("dcs_attempt_to_acquire_leader", WD_ARMING, "promote_postgres");
    assert_true(watchdog_is_running(&t.h.wd));
    t_wd_free(&t);

    /* automatic without a device: promoted all the same (warned once) */
    T_INIT(&t, NULL, UNLOCKED);
    t_watchdog(&t, "automatic", false);
    t_replica(&t);
    t_run(&t, HA_ACQUIRE_LOCK);
    EXPECT_EVENTS("dcs_attempt_to_acquire_leader", "wd_check(/dev/watchdog)", "promote_postgres");
    assert_false(watchdog_is_running(&t.h.wd));
    t_wd_free(&t);

    /* required without a device: not promoted, the key given back at once */
    T_INIT(&t, NULL, UNLOCKED);
    t_watchdog(&t, "required", false);
    t_replica(&t);
    t_run(&t, HA_ACQUIRE_LOCK);
    EXPECT_EVENTS("dcs_attempt_to_acquire_leader", "wd_check(/dev/watchdog)", "dcs_delete_leader", "dcs_get_cluster");
    assert_string_equal(t.d.message, "Not promoting self because watchdog could not be activated");
    assert_false(lease_held(&t));
    assert_false(t.h.pg.promoting);
    t_wd_free(&t);

    /* ... the same when the key was ours already (HA_UPDATE_LOCK of a replica) */
    T_INIT(&t, NULL, MINE);
    t_watchdog(&t, "required", false);
    t_replica(&t);
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader(no view)", "publish", "wd_check(/dev/watchdog)", "dcs_delete_leader",
                  "dcs_get_cluster");
    assert_string_equal(t.d.message, "Not promoting self because watchdog could not be activated");
    t_wd_free(&t);

    /* a running primary that cannot arm a required watchdog is demoted (immediate, the key released) */
    T_INIT(&t, NULL, UNLOCKED);
    t_watchdog(&t, "required", false);
    t_primary(&t);
    t_run(&t, HA_ACQUIRE_LOCK);
    EXPECT_EVENTS("dcs_attempt_to_acquire_leader", "wd_check(/dev/watchdog)", "publish_stopping",
                  "stop_postgres(immediate)", DEMOTED, "dcs_delete_leader", "dcs_get_cluster");
    assert_string_equal(t.d.message, "Demoting self because watchdog could not be activated");
    t_wd_free(&t);

    /* paused: never armed (spec §4.15) */
    T_INIT(&t, "pause: true\n", MINE);
    t_watchdog(&t, "required", true);
    t_replica(&t);
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader(no view)", "publish", "promote_postgres");
    assert_false(watchdog_is_running(&t.h.wd));
    t_wd_free(&t);
}

/* The device never outlives the lease: the key acquired on a lease kept alive 12.5 s ago (the acquisition
 * sends no keepalive then) ends in 17.5 s, 15.5 s before the fence point: the device is armed with 25 s, then
 * cut to the whole seconds left. */
static void test_watchdog_fits_the_lease(void **state) {
    (void)state;
    T t;
    T_INIT(&t, NULL, UNLOCKED);
    t_watchdog(&t, "required", true);
    t_replica(&t);
    fake.lease_refreshed = now_monotonic() - 12 * USEC_PER_SEC - USEC_PER_SEC / 2;
    t_run(&t, HA_ACQUIRE_LOCK);
    EXPECT_EVENTS("dcs_attempt_to_acquire_leader", WD_ARMING, "wd_set_timeout(15)", "wd_get_timeout",
                  "promote_postgres");
    assert_true(watchdog_fires_at(&t.h.wd) <= lease_fence_at(&t.h));
    /* the next renewal (the lease 30 s long again): the full timeout, which also resets the timer */
    fake.lease_refreshed = 0;
    t_run(&t, HA_UPDATE_LOCK);
    assert_string_equal(fake.events.v[1], "wd_set_timeout(25)");
    t_wd_free(&t);
}

/* `required` and the device cannot be armed: whatever may run as the primary is stopped, not only a primary
 * that answered its status query (a promotion under way, a primary whose query failed) */
static void test_watchdog_demotes_what_may_be_primary(void **state) {
    (void)state;
    T t;
    /* a promotion under way: still in recovery for its status query */
    T_INIT(&t, NULL, MINE);
    t_watchdog(&t, "required", false);
    t_replica(&t);
    t.h.pg.promoting = true;
    t_run(&t, HA_UPDATE_LOCK_ONLY);
    EXPECT_EVENTS("dcs_update_leader", "publish", "wd_check(/dev/watchdog)", "publish_stopping",
                  "stop_postgres(immediate)", DEMOTED, "dcs_delete_leader", "dcs_get_cluster");
    assert_string_equal(t.d.message, "Demoting self because watchdog could not be activated");
    t_wd_free(&t);

    /* a primary that does not answer its status query */
    T_INIT(&t, NULL, MINE);
    t_watchdog(&t, "required", false);
    t_primary(&t);
    t.h.pg.st.ok = false;
    t.l.pg_ready = false;
    t_run(&t, HA_UPDATE_LOCK);
    assert_string_equal(t.d.message, "Demoting self because watchdog could not be activated");
    assert_true(fake.events.n >= 4);
    assert_string_equal(fake.events.v[3], "publish_stopping");
    t_wd_free(&t);
}

/* A primary kept or started without the cycle's HA_UPDATE_LOCK is armed all the same: a renewal of a
 * running primary of any kind (HA_UPDATE_LOCK_ONLY, HA_CLEAR_FAILOVER: a reload may have disarmed it), an
 * acquisition that turned out to be ours already */
static void test_watchdog_every_primary_path(void **state) {
    (void)state;
    HaAction actions[] = {HA_UPDATE_LOCK_ONLY, HA_CLEAR_FAILOVER};
    for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++) {
        T t;
        T_INIT(&t, NULL, MINE);
        t_watchdog(&t, "automatic", true);
        t_primary(&t);
        t_run(&t, actions[i]);
        assert_true(watchdog_is_running(&t.h.wd));
        t_wd_free(&t);
    }
    /* ... but not a replica's start under the lock */
    T t;
    T_INIT(&t, NULL, MINE);
    t_watchdog(&t, "automatic", true);
    t.l.pg_starting = true;
    t_run(&t, HA_UPDATE_LOCK_ONLY);
    assert_false(watchdog_is_running(&t.h.wd));
    t_wd_free(&t);

    /* the acquisition fails but the key is ours (LOCK_FAIL_MINE): a primary keeps running, armed */
    T_INIT(&t, NULL, UNLOCKED);
    t_watchdog(&t, "automatic", true);
    t_primary(&t);
    fake.acquire = 0;
    fake.get_raw = 1;
    fake.raw_value = "node2";
    t_run(&t, HA_ACQUIRE_LOCK);
    assert_string_equal(t.d.message, "the leader lock is already mine");
    assert_true(watchdog_is_running(&t.h.wd));
    t_wd_free(&t);

    /* a switchover given up (PostgreSQL did not stop cleanly): not started again as the primary without a
     * required watchdog; the key goes back, PostgreSQL starts as a replica */
    T_INIT(&t, NULL, MINE, K_FAILOVER("{\"leader\":\"node2\",\"member\":\"node3\"}"));
    t_watchdog(&t, "required", false);
    t_primary(&t);
    fake.have_controldata = true;
    fake.cd.checkpoint_lsn = 0x5000000;
    snprintf(fake.cd.state, sizeof fake.cd.state, "in production");
    t_run(&t, HA_SWITCHOVER);
    for (int i = 0; i < 500 && !atomic_load(&t.h.stepdown.checkpoint_done); i++)
        usleep_real(10 * 1000);
    stepdown_step(&t.h);
    t.h.pg.inst.pid = 0;
    fake_events_clear();
    stepdown_step(&t.h);
    assert_true(fake.events.n >= 6);
    assert_string_equal(fake.events.v[2], "dcs_update_leader(no view)");
    assert_string_equal(fake.events.v[3], "wd_check(/dev/watchdog)");
    assert_string_equal(fake.events.v[4], "dcs_delete_leader");
    assert_string_equal(fake.events.v[fake.events.n - 1], "start_postgres(replica, -)");
    assert_false(lease_held(&t));
    t_wd_free(&t);
}

static void test_watchdog_keepalive_after_renewal(void **state) {
    (void)state;
    T t;
    /* the leader's cycle: the keepalive right after the renewal, nothing armed again */
    T_INIT(&t, NULL, MINE);
    t_watchdog(&t, "required", true);
    t_primary(&t);
    t_armed(&t);
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader", "wd_keepalive", "publish", "slots_sync", "update_status", "update_history");
    /* a renewal while a start or a long action runs keeps it alive too */
    t.l.pg_starting = true;
    t.l.pg_ready = false;
    t_run(&t, HA_UPDATE_LOCK_ONLY);
    EXPECT_EVENTS("dcs_update_leader", "wd_keepalive", "publish");
    t_wd_free(&t);

    /* a failed renewal: no keepalive; the primary stops, then the device is disarmed */
    T_INIT(&t, NULL, MINE);
    t_watchdog(&t, "required", true);
    t_primary(&t);
    t_armed(&t);
    fake.update_leader = 0;
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader", "publish_stopping", "stop_postgres(immediate)", "wd_magic_close", DEMOTED);
    assert_false(watchdog_is_running(&t.h.wd));
    t_wd_free(&t);

    /* ... and when PostgreSQL cannot be stopped, the device stays armed: it fences the node */
    T_INIT(&t, NULL, MINE);
    t_watchdog(&t, "required", true);
    t_primary(&t);
    t_armed(&t);
    fake.update_leader = 0;
    fake.stop = -ETIMEDOUT;
    t_run(&t, HA_UPDATE_LOCK);
    EXPECT_EVENTS("dcs_update_leader", "publish_stopping", "stop_postgres(immediate)");
    assert_true(watchdog_is_running(&t.h.wd));
    t_wd_free(&t);
}

static void test_watchdog_disarmed_on_demotion(void **state) {
    (void)state;
    for (int mode = DEMOTE_GRACEFUL; mode <= DEMOTE_OFFLINE; mode++) {
        T t;
        T_INIT(&t, NULL, MINE);
        t_watchdog(&t, "automatic", true);
        t_primary(&t);
        t_armed(&t);
        t.d.demote_mode = (DemoteMode)mode;
        t_run(&t, HA_DEMOTE);
        /* after the stop, before anything else of the demotion */
        assert_true(fake.events.n >= 3);
        assert_string_equal(fake.events.v[1], mode == DEMOTE_GRACEFUL || mode == DEMOTE_OFFLINE
                                                  ? "stop_postgres(fast)"
                                                  : "stop_postgres(immediate)");
        assert_string_equal(fake.events.v[2], "wd_magic_close");
        assert_false(watchdog_is_running(&t.h.wd));
        t_wd_free(&t);
    }
}

static void test_watchdog_start(void **state) {
    (void)state;
    T t;
    /* the lock holder starts as the primary: armed first */
    T_INIT(&t, NULL, MINE);
    t_watchdog(&t, "required", true);
    t.d.as_primary = true;
    t_run(&t, HA_START);
    EXPECT_EVENTS("dcs_update_leader(no view)", WD_ARMING, "start_postgres(primary, -)");
    t_wd_free(&t);

    /* required without a device: the key goes back, PostgreSQL starts read-only without upstream */
    T_INIT(&t, NULL, MINE);
    t_watchdog(&t, "required", false);
    t.d.as_primary = true;
    t_run(&t, HA_START);
    EXPECT_EVENTS("dcs_update_leader(no view)", "wd_check(/dev/watchdog)", "dcs_delete_leader", "dcs_get_cluster",
                  "start_postgres(replica, -)");
    assert_false(lease_held(&t));
    t_wd_free(&t);

    /* a start as a replica: disarmed first (Patroni's recover()) */
    T_INIT(&t, NULL, LOCKED);
    t_watchdog(&t, "automatic", true);
    t_armed(&t);
    snprintf(t.d.target, sizeof t.d.target, "node1");
    t_run(&t, HA_START);
    EXPECT_EVENTS("wd_magic_close", "start_postgres(replica, node1)");
    t_wd_free(&t);
}

int main(void) {
    /* the executor's own log lines are not what these tests check */
    log_configure(&(LogSettings){.level = LOG_CRITICAL + 1, .file_num = 4, .mode = -1});
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acquire_won_replica_promotes),
        cmocka_unit_test(test_acquire_won_promotion_fails),
        cmocka_unit_test(test_acquire_won_sync_mode),
        cmocka_unit_test(test_acquire_won_quorum_mode),
        cmocka_unit_test(test_acquire_lost_primary),
        cmocka_unit_test(test_acquire_dcs_error_primary),
        cmocka_unit_test(test_acquire_lost_nothing_to_undo),
        cmocka_unit_test(test_update_lock_primary),
        cmocka_unit_test(test_update_lock_primary_sync),
        cmocka_unit_test(test_update_lock_fails),
        cmocka_unit_test(test_shutdown_releases_early),
        cmocka_unit_test(test_shutdown_keeps_lease),
        cmocka_unit_test(test_lease_fence),
        cmocka_unit_test(test_failsafe),
        cmocka_unit_test(test_switchover),
        cmocka_unit_test(test_demote_modes),
        cmocka_unit_test(test_release_lock),
        cmocka_unit_test(test_standby_leader_handover),
        cmocka_unit_test(test_follow),
        cmocka_unit_test(test_start),
        cmocka_unit_test(test_rejoin),
        cmocka_unit_test(test_standby_cluster_rewind),
        cmocka_unit_test(test_may_be_primary_adopted),
        cmocka_unit_test(test_before_stop_limit),
        cmocka_unit_test(test_release_not_fail_fast),
        cmocka_unit_test(test_lease_work_deadline),
        cmocka_unit_test(test_clone),
        cmocka_unit_test(test_bootstrap_and_initialize),
        cmocka_unit_test(test_none_and_fatal),
        cmocka_unit_test(test_watchdog_armed_before_promotion),
        cmocka_unit_test(test_watchdog_fits_the_lease),
        cmocka_unit_test(test_watchdog_demotes_what_may_be_primary),
        cmocka_unit_test(test_watchdog_every_primary_path),
        cmocka_unit_test(test_watchdog_keepalive_after_renewal),
        cmocka_unit_test(test_watchdog_disarmed_on_demotion),
        cmocka_unit_test(test_watchdog_start),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    log_reset();
    return r;
}
