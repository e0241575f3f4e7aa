/* REST restart/reinitialize and the scheduled restart (restart.c, commands.c's request check) against
 * the fakes: the request rules of spec §2.7 key by key, a restart carried over cycles (the stop begun,
 * PostgreSQL started again as what it was, the request answered when it runs), the filters, the
 * scheduled restart's life (202/409/DELETE, due, stale, overtaken by another restart), reinitialize's
 * refusals and its force. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "unit_helpers.h"
// clang-format on
#include <errno.h>
#include <string.h>
#include <time.h>

#include "fakes.h"

#define BASE "/service/demo"
#define cluster_of(keys, max) cluster_of_keys(keys, max, BASE, 10)

#define MEMBER(host, state, role)                                                          \
    "{\"conn_url\":\"postgres://" host ":5432/postgres\",\"api_url\":\"http://" host       \
    ":8008/patroni\",\"state\":\"" state "\",\"role\":\"" role "\",\"version\":\"4.0.6\"," \
    "\"xlog_location\":5000,\"timeline\":1}"

static const Kv LOCKED_BY_NODE1[] = {{"initialize", "7401234567890123456"},
                                     {"leader", "node1"},
                                     {"members/node1", MEMBER("10.0.0.1", "running", "primary")},
                                     {"members/node2", MEMBER("10.0.0.2", "running", "replica")},
                                     {"members/node3", MEMBER("10.0.0.3", "running", "replica")},
                                     {NULL, NULL}};
static const Kv LOCKED_BY_NODE2[] = {{"initialize", "7401234567890123456"},
                                     {"leader", "node2"},
                                     {"members/node1", MEMBER("10.0.0.1", "running", "replica")},
                                     {"members/node2", MEMBER("10.0.0.2", "running", "primary")},
                                     {NULL, NULL}};
static const Kv UNLOCKED[] = {{"initialize", "7401234567890123456"},
                              {"members/node2", MEMBER("10.0.0.2", "running", "replica")},
                              {NULL, NULL}};

static const Kv *read_keys;

static Cluster *read_hook(void *ud) {
    (void)ud;
    return cluster_of(read_keys, 16);
}

void ha_commands_wake(void *ud) { (void)ud; }

typedef struct T {
    Agent a;
    Ha h;
} T;

/* node2, PostgreSQL 15.5 running as `role` (a replica follows node1), the view from `keys`. */
static void t_init(T *t, const char *role, const Kv *keys) {
    fake_reset();
    *t = (T){0};
    load_config(&t->a.cfg, "node2", NULL);
    t->h.a = &t->a;
    t->h.dcs = FAKE_DCS;
    t->h.wake_fd = t->h.cmd_fd = -1;
    t->h.pg.inst.pidfd = -1;
    t->h.pg.inst.pid = 4242;
    load_dyn(&t->h.view.dyn, NULL);
    t->h.view.dyn_loaded = true;
    t->h.view.cluster = cluster_of(keys, 16);
    t->h.commands = command_queue_new(ha_commands_wake, &t->h);
    snprintf(t->h.pg.role, sizeof t->h.pg.role, "%s", role);
    snprintf(t->h.pg.state, sizeof t->h.pg.state, "running");
    bool replica = strcmp(role, "replica") == 0;
    t->h.pg.st = (PgStatus){.ok = true, .server_version = 150005, .in_recovery = replica};
    snprintf(t->h.pg.st.postmaster_start_str, sizeof t->h.pg.st.postmaster_start_str,
             "2026-12-06 10:00:00.123456+00:00");
    t->h.pg.server_version = 150005;
    snprintf(t->h.pg.sysid, sizeof t->h.pg.sysid, "7401234567890123456");
    t->h.pg.following_set = true;
    snprintf(t->h.pg.following, sizeof t->h.pg.following, "%s", replica ? "node1" : "");
    fake.started_pid = 4343;
    read_keys = keys;
    fake.hooks.read_cluster = read_hook;
}

static void t_done(T *t) {
    restart_abort(&t->h); /* a restart left running answers its request */
    restart_free(&t->h.restart);
    command_queue_free(t->h.commands);
    view_free(&t->h.view);
    cJSON_Delete(t->h.pg.st.replication);
    config_free(&t->a.cfg);
    fake_done();
}

static bool has_event(const char *prefix) {
    for (size_t i = 0; i < fake.events.n; i++)
        if (strncmp(fake.events.v[i], prefix, strlen(prefix)) == 0)
            return true;
    return false;
}

/* Queue a command with a JSON body and let the loop take it (the next cycle far away). */
static Command *run(T *t, CommandKind kind, const char *body) {
    Command *c = command_new(kind);
    if (body)
        c->body = json_parse(body);
    assert_int_equal(command_enqueue(t->h.commands, c), 0);
    t->h.next_cycle = now_monotonic() + 10 * USEC_PER_SEC;
    commands_run(&t->h);
    return c;
}

static void assert_answer(const Command *c, int code, const char *text) {
    assert_int_equal(c->code, code);
    assert_non_null(c->result);
    assert_string_equal(c->result, text);
}

/* ---- the request rules ---- */

static int check(const char *body, bool paused, char **ret_body, cJSON **ret_norm) {
    cJSON *req = json_parse(body);
    assert_non_null(req);
    int r = restart_request_check(req, paused, (double)time(NULL), ret_norm, ret_body);
    cJSON_Delete(req);
    return r;
}

static void test_request_rules(void **state) {
    (void)state;
    char *b = NULL;
    cJSON *n = NULL;
    /* accepted: keys in the order received, schedule in ISO format, timeout as int seconds */
    assert_int_equal(check("{\"restart_pending\":true,\"schedule\":\"2099-01-02 03:04+02\",\"timeout\":\"2min\","
                           "\"role\":\"replica\",\"postgres_version\":\"16.1\"}",
                           false, &b, &n),
                     0);
    _cleanup_free_ char *json = json_dumps(n, false);
    assert_string_equal(json, "{\"restart_pending\":true,\"schedule\":\"2099-01-02T03:04:00+02:00\",\"timeout\":120,"
                              "\"role\":\"replica\",\"postgres_version\":\"16.1\"}");
    cJSON_Delete(n);
    static const struct {
        const char *body;
        bool paused;
        int code;
        const char *text;
    } bad[] = {
        {"{\"schedule\":\"2099-01-01T00:00+00:00\"}", true, 500, "Can't schedule restart in the paused state"},
        {"{\"schedule\":\"2099-01-01T00:00\"}", false, 400,
         "Timezone information is mandatory for the scheduled restart"},
        {"{\"schedule\":\"2001-01-01T00:00Z\"}", false, 422, "Cannot schedule restart in the past"},
        {"{\"schedule\":\"tomorrow\"}", false, 422,
         "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601"},
        {"{\"schedule\":42}", false, 422,
         "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601"},
        {"{\"role\":\"master\"}", false, 400, "PostgreSQL role should be either primary, standby_leader, or replica"},
        {"{\"postgres_version\":\"9.6\"}", false, 400,
         "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 9.6"},
        {"{\"postgres_version\":\"15.x\"}", false, 400, "Invalid PostgreSQL version: 15.x"},
        {"{\"timeout\":0}", false, 400, "Timeout should be a positive number of seconds"},
        {"{\"timeout\":\"soon\"}", false, 400, "Timeout should be a positive number of seconds"},
        {"{\"timeout\":true}", false, 400, "Timeout should be a positive number of seconds"},
        /* the first bad key decides */
        {"{\"force\":true,\"role\":\"master\"}", false, 400, "Unknown filter for the scheduled restart: force"},
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        b = NULL;
        n = NULL;
        int code = check(bad[i].body, bad[i].paused, &b, &n);
        if (code != bad[i].code || !b || strcmp(b, bad[i].text) != 0)
            fail_msg("%s: %d %s", bad[i].body, code, b ? b : "(null)");
        assert_null(n);
        free(b);
    }
    /* paused: an immediate restart is allowed */
    b = NULL;
    assert_int_equal(check("{\"timeout\":30}", true, &b, &n), 0);
    cJSON_Delete(n);
}

static void test_postgres_version(void **state) {
    (void)state;
    long long v;
    char *err = NULL;
    assert_int_equal(postgres_version_to_int("15.2", &v, &err), 0);
    assert_int_equal(v, 150002);
    assert_int_equal(postgres_version_to_int("9.6.24", &v, &err), 0);
    assert_int_equal(v, 90624);
    assert_int_equal(postgres_version_to_int("16.0.1", &v, &err), 0);
    assert_int_equal(v, 160001);
    const char *bad[] = {"15", "9.6", "1.2.3.4", "", "15.", "a.b", "15.-1"};
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        err = NULL;
        assert_int_equal(postgres_version_to_int(bad[i], &v, &err), -EINVAL);
        assert_non_null(err);
        free(err);
    }
}

/* ---- immediate restarts ---- */

static void test_replica_restart_over_cycles(void **state) {
    (void)state;
    T t;
    t_init(&t, "replica", LOCKED_BY_NODE1);
    Command *c = run(&t, CMD_RESTART, "{\"timeout\":45}");
    /* the stop is begun, not waited for; the request waits */
    assert_true(has_event("stop_postgres_begin(fast)"));
    assert_int_equal(c->state, CMD_RUNNING);
    assert_string_equal(t.h.pg.state, "restarting");
    assert_true(t.h.pg.quiet); /* no on_stop / on_start */
    assert_non_null(restart_action(&t.h));
    /* still stopping: nothing more */
    assert_false(restart_step(&t.h));
    /* the postmaster exited: started again following the same upstream, with the request's timeout */
    t.h.pg.inst.pid = 0;
    assert_true(restart_step(&t.h));
    assert_true(has_event("start_postgres(replica, node1)"));
    assert_int_equal(t.h.pg.start_timeout, 45);
    assert_string_equal(restart_action(&t.h), "restart"); /* the start too: the lease renewed, nothing else */
    /* still starting */
    assert_false(restart_step(&t.h));
    assert_int_equal(c->state, CMD_RUNNING);
    /* running again: on_restart, the answer */
    t.h.pg.starting = false;
    t.h.pg.st.ok = true;
    restart_step(&t.h);
    assert_true(has_event("run_callback(on_restart, replica)"));
    assert_answer(c, 200, "restarted successfully");
    assert_false(t.h.pg.quiet);
    assert_int_equal(t.h.restart.phase, RESTART_IDLE);
    command_unref(c);
    t_done(&t);
}

/* The standby leader of a standby cluster restarts following the remote primary again, never nobody (its own
 * name, the leader key's, is not a target). */
static const Kv STANDBY_LOCKED_BY_NODE2[] = {{"initialize", "7401234567890123456"},
                                             {"leader", "node2"},
                                             {"members/node2", MEMBER("10.0.0.2", "running", "standby_leader")},
                                             {NULL, NULL}};

static void test_standby_leader_restart_follows_the_remote(void **state) {
    (void)state;
    for (int known = 0; known < 2; known++) {
        T t;
        t_init(&t, "replica", STANDBY_LOCKED_BY_NODE2);
        dyn_config_free(&t.h.view.dyn);
        load_dyn(&t.h.view.dyn, "standby_cluster:\n  host: 10.9.0.1\n  port: 5432\n");
        /* after an agent restart the upstream is not known until the configuration is written again */
        t.h.pg.following_set = known;
        snprintf(t.h.pg.following, sizeof t.h.pg.following, "%s", known ? FOLLOW_REMOTE : "");
        t.h.view.lock_valid_until = now_monotonic() + 20 * USEC_PER_SEC;
        Command *c = run(&t, CMD_RESTART, "{}");
        assert_true(has_event("stop_postgres_begin(fast)"));
        t.h.pg.inst.pid = 0;
        assert_true(restart_step(&t.h));
        assert_true(has_event("start_postgres(replica, " FOLLOW_REMOTE ")"));
        command_unref(c);
        t_done(&t);
    }
}

static void test_primary_restart_needs_the_lease(void **state) {
    (void)state;
    T t;
    t_init(&t, "primary", LOCKED_BY_NODE2);
    t.h.view.lock_valid_until = now_monotonic() + 30 * USEC_PER_SEC;
    Command *c = run(&t, CMD_RESTART, NULL);
    assert_true(has_event("stop_postgres_begin(fast)"));
    t.h.pg.inst.pid = 0;
    assert_true(restart_step(&t.h));
    assert_true(has_event("start_postgres(primary, -)"));
    /* the default start limit: primary_start_timeout */
    assert_int_equal(t.h.pg.start_timeout, t.h.view.dyn.primary_start_timeout);
    command_unref(c);
    t_done(&t);

    /* the lease ran out while PostgreSQL stopped: no start as a primary, the request fails */
    t_init(&t, "primary", LOCKED_BY_NODE2);
    t.h.view.lock_valid_until = now_monotonic() + 30 * USEC_PER_SEC;
    c = run(&t, CMD_RESTART, NULL);
    t.h.pg.inst.pid = 0;
    t.h.view.lock_valid_until = 0;
    assert_false(restart_step(&t.h));
    assert_false(has_event("start_postgres"));
    assert_answer(c, 503, "restart failed");
    assert_string_equal(t.h.pg.state, "restart failed (restarting)");
    command_unref(c);
    t_done(&t);
}

/* A primary restarted under `watchdog.mode: required` without a usable watchdog (no driver here): not started
 * as the primary, the key given back, the request fails */
static void test_primary_restart_needs_the_watchdog(void **state) {
    (void)state;
    T t;
    t_init(&t, "primary", LOCKED_BY_NODE2);
    config_free(&t.a.cfg);
    load_config(&t.a.cfg, "node2", "watchdog:\n  mode: required\n");
    watchdog_init(&t.h.wd, NULL);
    t.h.view.lock_valid_until = now_monotonic() + 30 * USEC_PER_SEC;
    Command *c = run(&t, CMD_RESTART, NULL);
    assert_true(has_event("stop_postgres_begin(fast)"));
    t.h.pg.inst.pid = 0;
    assert_false(restart_step(&t.h));
    assert_false(has_event("start_postgres"));
    assert_true(has_event("dcs_delete_leader"));
    assert_int_equal(t.h.view.lock_valid_until, 0);
    assert_answer(c, 503, "restart failed");
    command_unref(c);
    watchdog_free(&t.h.wd);
    t_done(&t);
}

static void test_start_timeout_and_failure(void **state) {
    (void)state;
    T t;
    t_init(&t, "replica", LOCKED_BY_NODE1);
    Command *c = run(&t, CMD_RESTART, "{\"timeout\":1}");
    t.h.pg.inst.pid = 0;
    restart_step(&t.h);
    assert_string_equal(restart_action(&t.h), "restart"); /* the start is part of the restart */
    t.h.restart.phase_began -= 2 * USEC_PER_SEC;          /* the start has taken 2 s */
    restart_step(&t.h);
    assert_answer(c, 503, "restart failed");   /* as Patroni: a start that outlasts its timeout failed */
    assert_int_equal(t.h.pg.start_timeout, 1); /* the loop keeps judging the start by it */
    command_unref(c);
    t_done(&t);

    t_init(&t, "replica", LOCKED_BY_NODE1);
    c = run(&t, CMD_RESTART, NULL);
    t.h.pg.inst.pid = 0;
    restart_step(&t.h);
    t.h.pg.inst.pid = 0; /* the new postmaster died */
    restart_step(&t.h);
    assert_answer(c, 503, "restart failed");
    command_unref(c);
    t_done(&t);

    /* a demotion interrupts it */
    t_init(&t, "replica", LOCKED_BY_NODE1);
    c = run(&t, CMD_RESTART, NULL);
    restart_abort(&t.h);
    assert_answer(c, 503, "restart failed");
    assert_int_equal(t.h.restart.phase, RESTART_IDLE);
    command_unref(c);
    t_done(&t);
}

static void test_filters_and_busy(void **state) {
    (void)state;
    static const struct {
        const char *body;
        const char *answer;
    } cases[] = {
        {"{\"role\":\"primary\"}", "restart conditions are not satisfied"},
        {"{\"postgres_version\":\"15.5\"}", "restart conditions are not satisfied"}, /* not older than 15.5 */
        {"{\"restart_pending\":true}", "restart conditions are not satisfied"},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        T t;
        t_init(&t, "replica", LOCKED_BY_NODE1);
        Command *c = run(&t, CMD_RESTART, cases[i].body);
        assert_answer(c, 503, cases[i].answer);
        assert_false(has_event("stop_postgres"));
        command_unref(c);
        t_done(&t);
    }
    /* the filters that match */
    T t;
    t_init(&t, "replica", LOCKED_BY_NODE1);
    t.h.pg.pending_restart = true;
    Command *c = run(&t, CMD_RESTART, "{\"role\":\"replica\",\"postgres_version\":\"15.6\",\"restart_pending\":true}");
    assert_true(has_event("stop_postgres_begin(fast)"));
    /* a second one while the first runs */
    Command *c2 = run(&t, CMD_RESTART, NULL);
    assert_answer(c2, 503, "restart already in progress");
    command_unref(c2);
    restart_abort(&t.h);
    command_unref(c);
    /* a long action */
    t.h.work.task.kind = TASK_CLONE;
    c = run(&t, CMD_RESTART, NULL);
    assert_answer(c, 503, "clone already in progress");
    command_unref(c);
    t_done(&t);
}

/* ---- scheduled restart ---- */

static char *iso_in(int seconds) {
    time_t at = time(NULL) + seconds;
    struct tm tm;
    gmtime_r(&at, &tm);
    char buf[64];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S+00:00", &tm);
    return xstrdup(buf);
}

static void test_scheduled_restart(void **state) {
    (void)state;
    T t;
    t_init(&t, "replica", LOCKED_BY_NODE1);
    _cleanup_free_ char *at = iso_in(3600);
    _cleanup_free_ char *body = xasprintf("{\"schedule\":\"%s\",\"role\":\"replica\"}", at);
    Command *c = run(&t, CMD_RESTART, body);
    assert_answer(c, 202, "Restart scheduled");
    command_unref(c);
    assert_true(has_event("touch_member"));
    /* published with the postmaster's start time last */
    _cleanup_free_ char *json = json_dumps(t.h.restart.scheduled, false);
    _cleanup_free_ char *want = xasprintf("{\"schedule\":\"%s\",\"role\":\"replica\","
                                          "\"postmaster_start_time\":\"2026-12-06 10:00:00.123456+00:00\"}",
                                          at);
    assert_string_equal(json, want);
    c = run(&t, CMD_RESTART, body);
    assert_answer(c, 409, "Another restart is already scheduled");
    command_unref(c);
    /* an hour away: nothing */
    restart_evaluate_scheduled(&t.h);
    assert_non_null(t.h.restart.scheduled);
    assert_false(has_event("stop_postgres"));
    /* due: the restart begins and the schedule is gone */
    t.h.restart.scheduled_at = (double)time(NULL) - 1;
    restart_evaluate_scheduled(&t.h);
    assert_null(t.h.restart.scheduled);
    assert_true(has_event("stop_postgres_begin(fast)"));
    assert_null(t.h.restart.cmd);
    t.h.pg.inst.pid = 0;
    restart_step(&t.h);
    t.h.pg.starting = false;
    t.h.pg.st.ok = true;
    restart_step(&t.h);
    assert_int_equal(t.h.restart.phase, RESTART_IDLE);
    /* DELETE: 404 now */
    c = run(&t, CMD_DELETE_RESTART, NULL);
    assert_answer(c, 404, "no restarts are scheduled");
    command_unref(c);
    t_done(&t);
}

static void test_scheduled_restart_cancelled(void **state) {
    (void)state;
    T t;
    t_init(&t, "replica", LOCKED_BY_NODE1);
    _cleanup_free_ char *at = iso_in(3600);
    _cleanup_free_ char *body = xasprintf("{\"schedule\":\"%s\"}", at);
    command_unref(run(&t, CMD_RESTART, body));
    /* DELETE */
    Command *c = run(&t, CMD_DELETE_RESTART, NULL);
    assert_answer(c, 200, "scheduled restart deleted");
    command_unref(c);
    assert_null(t.h.restart.scheduled);
    /* stale (the loop was late by more than 1.5 x loop_wait) */
    command_unref(run(&t, CMD_RESTART, body));
    t.h.restart.scheduled_at = (double)time(NULL) - 60;
    restart_evaluate_scheduled(&t.h);
    assert_null(t.h.restart.scheduled);
    assert_false(has_event("stop_postgres"));
    /* PostgreSQL restarted meanwhile */
    command_unref(run(&t, CMD_RESTART, body));
    snprintf(t.h.pg.st.postmaster_start_str, sizeof t.h.pg.st.postmaster_start_str, "2026-12-06 11:00:00.000001+00:00");
    restart_evaluate_scheduled(&t.h);
    assert_null(t.h.restart.scheduled);
    /* the filters no longer match at the time: not restarted, the schedule dropped */
    _cleanup_free_ char *body2 = xasprintf("{\"schedule\":\"%s\",\"role\":\"primary\"}", at);
    command_unref(run(&t, CMD_RESTART, body2));
    t.h.restart.scheduled_at = (double)time(NULL);
    restart_evaluate_scheduled(&t.h);
    assert_null(t.h.restart.scheduled);
    assert_false(has_event("stop_postgres"));
    /* paused: it waits */
    command_unref(run(&t, CMD_RESTART, body));
    t.h.view.dyn.pause = true;
    t.h.restart.scheduled_at = (double)time(NULL);
    restart_evaluate_scheduled(&t.h);
    assert_non_null(t.h.restart.scheduled);
    t_done(&t);
}

/* ---- reinitialize ---- */

static void test_reinitialize(void **state) {
    (void)state;
    T t;
    t_init(&t, "replica", UNLOCKED);
    Command *c = run(&t, CMD_REINITIALIZE, NULL);
    assert_answer(c, 503, "Cluster has no leader, can not reinitialize");
    command_unref(c);
    t_done(&t);

    t_init(&t, "primary", LOCKED_BY_NODE2);
    c = run(&t, CMD_REINITIALIZE, NULL);
    assert_answer(c, 503, "I am the leader, can not reinitialize");
    command_unref(c);
    t_done(&t);

    /* a restart runs: refused without force, cancelled with it */
    t_init(&t, "replica", LOCKED_BY_NODE1);
    Command *r = run(&t, CMD_RESTART, NULL);
    c = run(&t, CMD_REINITIALIZE, NULL);
    assert_answer(c, 503, "restart already in progress");
    command_unref(c);
    fake_events_clear();
    c = command_new(CMD_REINITIALIZE);
    c->force = true;
    assert_int_equal(command_enqueue(t.h.commands, c), 0);
    commands_run(&t.h);
    assert_answer(r, 503, "restart failed");
    assert_answer(c, 200, "reinitialize started");
    /* stopped at once (watched), then removed and cloned from the leader in a worker */
    assert_true(has_event("stop_postgres_begin(immediate)"));
    assert_false(has_event("task_start"));
    assert_string_equal(restart_action(&t.h), "reinitialize");
    t.h.pg.inst.pid = 0;
    restart_step(&t.h);
    assert_true(has_event("local_data_replaced"));
    assert_true(has_event("task_start(reinitialize, 10.0.0.1:5432)"));
    assert_string_equal(t.h.pg.state, "creating replica");
    command_unref(c);
    command_unref(r);
    /* the clone runs: a second request says so */
    c = run(&t, CMD_REINITIALIZE, NULL);
    assert_answer(c, 503, "reinitialize already in progress");
    command_unref(c);
    t_done(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_rules),
        cmocka_unit_test(test_postgres_version),
        cmocka_unit_test(test_replica_restart_over_cycles),
        cmocka_unit_test(test_standby_leader_restart_follows_the_remote),
        cmocka_unit_test(test_primary_restart_needs_the_lease),
        cmocka_unit_test(test_primary_restart_needs_the_watchdog),
        cmocka_unit_test(test_start_timeout_and_failure),
        cmocka_unit_test(test_filters_and_busy),
        cmocka_unit_test(test_scheduled_restart),
        cmocka_unit_test(test_scheduled_restart_cancelled),
        cmocka_unit_test(test_reinitialize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
