/* The pure parts of the command endpoints (spec §2.5, §2.6): request parsing, the order of the
 * switchover / failover checks, Patroni's patch_config() merge; and the queue between a submitter and
 * the loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>

#include "agent/commands.h"
#include "agent/snapshot.h"
#include "common/json.h"
#include "restapi/commands.h"
#include "unit_helpers.h"

#define NOW 1800000000.0 /* 2027-01-15T08:00:00Z */

static Command *req(CommandKind kind, const char *body) {
    Command *c = command_new(kind);
    assert_int_equal(failover_request_parse(body, c), 0);
    return c;
}

static void check_req(CommandKind kind, const char *body, bool paused, int code, const char *msg) {
    Command *c = req(kind, body);
    char *out = NULL;
    assert_int_equal(failover_request_check(c, paused, NOW, &out), code);
    if (msg)
        assert_string_equal(out, msg);
    else
        assert_null(out);
    free(out);
    command_unref(c);
}

static void test_parse(void **state) {
    (void)state;
    Command *c = command_new(CMD_SWITCHOVER);
    assert_int_equal(failover_request_parse("[]", c), 400);
    assert_int_equal(failover_request_parse("{}", c), 400);
    assert_int_equal(failover_request_parse("nope", c), 400);
    assert_int_equal(failover_request_parse("{\"leader\":\"a\",\"member\":\"b\",\"scheduled_at\":\"\"}", c), 0);
    assert_string_equal(c->leader, "a");
    assert_string_equal(c->candidate, "b"); /* member is an alias of candidate */
    assert_null(c->scheduled_at);
    command_unref(c);
    c = req(CMD_SWITCHOVER, "{\"candidate\":\"c\",\"member\":\"b\"}");
    assert_string_equal(c->candidate, "c");
    assert_null(c->leader);
    command_unref(c);
    /* values of other types, as Patroni reads them: falsy ones are absent, the others are kept (as their
     * JSON text) and fail the checks that follow */
    c = req(CMD_SWITCHOVER, "{\"leader\":null,\"candidate\":false,\"member\":0,\"scheduled_at\":[]}");
    assert_null(c->leader);
    assert_null(c->candidate);
    assert_null(c->scheduled_at);
    command_unref(c);
    c = req(CMD_SWITCHOVER, "{\"leader\":5,\"candidate\":[\"x\"],\"scheduled_at\":{\"a\":1}}");
    assert_string_equal(c->leader, "5");
    assert_string_equal(c->candidate, "[\"x\"]");
    assert_string_equal(c->scheduled_at, "{\"a\":1}");
    command_unref(c);
}

static void test_check_order(void **state) {
    (void)state;
    check_req(CMD_FAILOVER, "{\"leader\":\"a\"}", false, 400,
              "Failover could be performed only to a specific candidate");
    check_req(CMD_SWITCHOVER, "{\"candidate\":\"b\"}", false, 400,
              "Switchover could be performed only from a specific leader");
    /* step 1 wins over step 2 */
    check_req(CMD_FAILOVER, "{\"scheduled_at\":\"2020-01-01T00:00:00Z\"}", false, 400,
              "Failover could be performed only to a specific candidate");
    check_req(CMD_FAILOVER, "{\"candidate\":\"b\",\"scheduled_at\":\"2030-01-01T00:00:00Z\"}", false, 400,
              "Failover can't be scheduled");
    check_req(CMD_SWITCHOVER, "{\"leader\":\"a\",\"scheduled_at\":\"2030-01-01T00:00:00Z\"}", true, 400,
              "Can't schedule switchover in the paused state");
    check_req(CMD_SWITCHOVER, "{\"leader\":\"a\",\"scheduled_at\":\"2030-01-01T00:00:00\"}", false, 400,
              "Timezone information is mandatory for the scheduled switchover");
    check_req(CMD_SWITCHOVER, "{\"leader\":\"a\",\"scheduled_at\":\"2020-01-01T00:00:00+02:00\"}", false, 422,
              "Cannot schedule switchover in the past");
    check_req(CMD_SWITCHOVER, "{\"leader\":\"a\",\"scheduled_at\":\"tomorrow\"}", false, 422,
              "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601");
    check_req(CMD_SWITCHOVER, "{\"leader\":\"a\",\"scheduled_at\":\"2030-01-01 00:00+0100\"}", false, 0, NULL);
    check_req(CMD_SWITCHOVER, "{\"leader\":\"a\"}", true, 400,
              "Switchover is possible only to a specific candidate in a paused state");
    check_req(CMD_SWITCHOVER, "{\"leader\":\"a\",\"candidate\":\"a\"}", false, 400,
              "Switchover target and source are the same");
    check_req(CMD_FAILOVER, "{\"leader\":\"a\",\"candidate\":\"a\"}", false, 400,
              "Switchover target and source are the same");
    check_req(CMD_FAILOVER, "{\"candidate\":\"b\"}", true, 0, NULL);
    /* a scheduled_at that is not a string is refused, never taken as "at once" */
    check_req(CMD_SWITCHOVER, "{\"leader\":\"a\",\"candidate\":\"b\",\"scheduled_at\":1893456000}", false, 422,
              "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601");
    check_req(CMD_SWITCHOVER, "{\"leader\":\"a\",\"scheduled_at\":true}", false, 422,
              "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601");
    check_req(CMD_SWITCHOVER, "{\"leader\":\"a\",\"candidate\":\"b\",\"scheduled_at\":{\"at\":1}}", true, 400,
              "Can't schedule switchover in the paused state");
    check_req(CMD_FAILOVER, "{\"candidate\":\"b\",\"scheduled_at\":12}", false, 400, "Failover can't be scheduled");
}

static Cluster *cluster3(const char *sync) {
    DcsKv kv[6] = {
        {.key = "/s/c/leader", .value = "a", .mod_revision = 5},
        {.key = "/s/c/members/a", .value = "{\"api_url\":\"http://127.0.0.1:1/patroni\",\"role\":\"primary\"}"},
        {.key = "/s/c/members/b", .value = "{\"api_url\":\"http://127.0.0.1:2/patroni\",\"role\":\"replica\"}"},
        {.key = "/s/c/members/c", .value = "{\"api_url\":\"http://127.0.0.1:3/patroni\",\"role\":\"replica\"}"},
        {.key = "/s/c/config", .value = "{\"ttl\":30}", .mod_revision = 3},
        {.key = "/s/c/sync", .value = (char *)(sync ? sync : "{}"), .mod_revision = 7},
    };
    for (size_t i = 0; i < 6; i++)
        kv[i].value_len = strlen(kv[i].value);
    return cluster_from_kvs(kv, 6, "/s/c");
}

static int precheck(CommandKind kind, const char *body, const Cluster *cl, int sync_mode, const char *msg,
                    size_t n_expected) {
    Command *c = req(kind, body);
    DynConfig dyn = {.synchronous_mode = sync_mode};
    char *out = NULL;
    const char **names = NULL;
    size_t n = 0;
    int code = failover_precheck(c, cl, &dyn, &out, &names, &n);
    if (msg)
        assert_string_equal(out, msg);
    else
        assert_null(out);
    assert_int_equal(n, n_expected);
    free(out);
    free(names);
    command_unref(c);
    return code;
}

static void test_precheck(void **state) {
    (void)state;
    Cluster *cl = cluster3("{\"leader\":\"a\",\"sync_standby\":\"c\"}");
    assert_int_equal(precheck(CMD_SWITCHOVER, "{\"leader\":\"b\"}", cl, SYNC_OFF, "leader name does not match", 0),
                     412);
    assert_int_equal(precheck(CMD_SWITCHOVER, "{\"leader\":\"a\",\"candidate\":\"b\"}", cl, SYNC_ON,
                              "candidate name does not match with sync_standby", 0),
                     412);
    /* quorum mode: not checked against /sync */
    assert_int_equal(precheck(CMD_SWITCHOVER, "{\"leader\":\"a\",\"candidate\":\"b\"}", cl, SYNC_QUORUM, NULL, 1), 0);
    assert_int_equal(precheck(CMD_SWITCHOVER, "{\"leader\":\"a\",\"candidate\":\"x\"}", cl, SYNC_OFF,
                              "candidate does not exists", 0),
                     412);
    /* a candidate or leader that is not a string names no member */
    assert_int_equal(precheck(CMD_SWITCHOVER, "{\"leader\":\"a\",\"candidate\":7}", cl, SYNC_OFF,
                              "candidate does not exists", 0),
                     412);
    assert_int_equal(precheck(CMD_SWITCHOVER, "{\"leader\":5}", cl, SYNC_OFF, "leader name does not match", 0), 412);
    assert_int_equal(precheck(CMD_FAILOVER, "{\"candidate\":\"b\"}", cl, SYNC_ON, NULL, 1), 0);
    assert_int_equal(precheck(CMD_SWITCHOVER, "{\"leader\":\"a\"}", cl, SYNC_ON, NULL, 1), 0);
    assert_int_equal(precheck(CMD_SWITCHOVER, "{\"leader\":\"a\"}", cl, SYNC_OFF, NULL, 2), 0);
    cluster_free(cl);
    cl = cluster3(NULL);
    assert_int_equal(precheck(CMD_SWITCHOVER, "{\"leader\":\"a\"}", cl, SYNC_ON,
                              "switchover is not possible: can not find sync_standby", 0),
                     412);
    cluster_free(cl);
    DcsKv kv[2] = {{.key = "/s/c/leader", .value = "a"}, {.key = "/s/c/members/a", .value = "{\"api_url\":\"x\"}"}};
    for (size_t i = 0; i < 2; i++)
        kv[i].value_len = strlen(kv[i].value);
    cl = cluster_from_kvs(kv, 2, "/s/c");
    assert_int_equal(precheck(CMD_SWITCHOVER, "{\"leader\":\"a\"}", cl, SYNC_OFF,
                              "switchover is not possible: cluster does not have members except leader", 0),
                     412);
    cluster_free(cl);
}

static void expect_patch(const char *config, const char *patch, bool changed, const char *result) {
    cJSON *c = json_parse(config), *p = json_parse(patch);
    assert_int_equal(config_patch(c, p), changed);
    char *out = json_dumps(c, false);
    assert_string_equal(out, result);
    free(out);
    cJSON_Delete(c);
    cJSON_Delete(p);
}

static void test_patch(void **state) {
    (void)state;
    expect_patch("{\"ttl\":30,\"postgresql\":{\"parameters\":{\"max_connections\":100,\"work_mem\":\"4MB\"}}}",
                 "{\"postgresql\":{\"parameters\":{\"max_connections\":null}}}", true,
                 "{\"ttl\":30,\"postgresql\":{\"parameters\":{\"work_mem\":\"4MB\"}}}");
    /* string forms compared as Python's str(): 30 and "30" are the same */
    expect_patch("{\"ttl\":30}", "{\"ttl\":\"30\"}", false, "{\"ttl\":30}");
    expect_patch("{\"ttl\":30}", "{\"ttl\":20,\"loop_wait\":5}", true, "{\"ttl\":20,\"loop_wait\":5}");
    expect_patch("{\"a\":true}", "{\"a\":\"True\"}", false, "{\"a\":true}");
    /* null for a missing key changes nothing */
    expect_patch("{\"a\":1}", "{\"b\":null}", false, "{\"a\":1}");
    /* an object replaces a scalar */
    expect_patch("{\"a\":1}", "{\"a\":{\"b\":null}}", true, "{\"a\":{\"b\":null}}");
}

static int woken;
static void wake(void *ud) {
    (void)ud;
    woken++;
}

static void *loop_thread(void *arg) {
    CommandQueue *q = arg;
    Command *c;
    while (!(c = command_queue_pop(q)))
        usleep(1000);
    command_complete(q, c, 202, xstrdup("reload scheduled"), false);
    return NULL;
}

/* takes the command, then runs it for longer than the submitter's timeout */
static void *slow_loop_thread(void *arg) {
    CommandQueue *q = arg;
    Command *c;
    while (!(c = command_queue_pop(q)))
        usleep(1000);
    usleep(300 * 1000);
    command_complete(q, c, 200, xstrdup("slow"), false);
    return NULL;
}

static void test_queue(void **state) {
    (void)state;
    CommandQueue *q = command_queue_new(wake, NULL);
    /* nobody drains: the submitter gives up and the command is taken out of the queue (it never runs) */
    Command *c = command_new(CMD_PATCH_CONFIG);
    assert_int_equal(command_submit(q, c, 50), -ETIMEDOUT);
    assert_int_equal(woken, 1);
    assert_int_equal(command_queue_length(q), 0);
    assert_null(command_queue_pop(q));
    command_unref(c);
    /* a loop completes it */
    pthread_t t;
    pthread_create(&t, NULL, loop_thread, q);
    c = command_new(CMD_RELOAD);
    assert_int_equal(command_submit(q, c, 5000), 0);
    assert_int_equal(c->code, 202);
    assert_string_equal(c->result, "reload scheduled");
    command_unref(c);
    pthread_join(t, NULL);
    /* taken before the timeout: the submitter waits for the result */
    pthread_create(&t, NULL, slow_loop_thread, q);
    c = command_new(CMD_PUT_CONFIG);
    assert_int_equal(command_submit(q, c, 100), 0);
    assert_int_equal(c->code, 200);
    assert_string_equal(c->result, "slow");
    command_unref(c);
    pthread_join(t, NULL);
    /* bounded: beyond COMMAND_QUEUE_MAX a command is refused at once */
    for (int i = 0; i < COMMAND_QUEUE_MAX; i++) {
        c = command_new(CMD_RELOAD);
        assert_int_equal(command_enqueue(q, c), 0);
        command_unref(c); /* the queue keeps it */
    }
    assert_int_equal(command_queue_length(q), COMMAND_QUEUE_MAX);
    c = command_new(CMD_RELOAD);
    assert_int_equal(command_enqueue(q, c), -EBUSY);
    assert_int_equal(command_submit(q, c, 50), -EBUSY);
    command_unref(c);
    /* one pop takes one command */
    c = command_queue_pop(q);
    assert_non_null(c);
    assert_int_equal(command_queue_length(q), COMMAND_QUEUE_MAX - 1);
    command_complete(q, c, 202, NULL, false);
    /* closed: what is queued is answered (and freed), later submissions at once */
    command_queue_close(q);
    assert_int_equal(command_queue_length(q), 0);
    c = command_new(CMD_PATCH_CONFIG);
    assert_int_equal(command_submit(q, c, 5000), 0);
    assert_int_equal(c->code, 503);
    command_unref(c);
    command_queue_free(q);
}

/* POST /failsafe (spec §2.8): answered from the snapshot, the sender recorded for the loop without waiting. */
static void failsafe_post(CommandQueue *q, const Snapshot *s, const char *body, bool has_length, unsigned code,
                          const char *text, long long lsn) {
    RestReply r = {0};
    rest_failsafe_post(q, s, body, strlen(body), has_length, &r);
    assert_int_equal(r.code, code);
    if (text)
        assert_string_equal(r.body, text);
    else
        assert_true(r.error_page);
    assert_int_equal(r.lsn, lsn);
    free(r.body);
}

static void test_failsafe_post(void **state) {
    (void)state;
    CommandQueue *q = command_queue_new(wake, NULL);
    Snapshot *s = snapshot_new();
    s->state = xstrdup("running");
    s->pg_running = true;
    s->in_recovery = true;
    s->received_location = 5000;
    s->replayed_location = 4000;
    const char *body = "{\"name\":\"node1\",\"conn_url\":\"postgres://10.0.0.1:5432/postgres\","
                       "\"api_url\":\"http://10.0.0.1:8008/patroni\",\"slots\":{\"node1\":5000}}";
    char buf[128];
    /* failsafe_mode off: 502, nothing recorded */
    failsafe_post(q, s, body, true, 502, NULL, 0);
    failsafe_post(q, NULL, body, true, 502, NULL, 0);
    assert_null(command_failsafe_leader(q, 1, buf, sizeof buf));
    s->failsafe_mode = true;
    /* no Content-Length, no object, no name */
    failsafe_post(q, s, body, false, 411, NULL, 0);
    failsafe_post(q, s, "[1]", true, 400, NULL, 0);
    failsafe_post(q, s, "{\"slots\":{}}", true, 400, "a member name is required", 0);
    assert_null(command_failsafe_leader(q, 1, buf, sizeof buf));
    /* a replica accepts, with its WAL position (max of received and replayed) in the lsn header */
    usec_t before = now_monotonic();
    failsafe_post(q, s, body, true, 200, "Accepted", 5000);
    assert_string_equal(command_failsafe_leader(q, before, buf, sizeof buf), "node1");
    assert_null(command_failsafe_leader(q, now_monotonic() + 1, buf, sizeof buf)); /* older than asked for */
    /* a running primary refuses: there is a leader here */
    s->in_recovery = false;
    failsafe_post(q, s, "{\"name\":\"node3\"}", true, 500, "Running as a leader", 0);
    assert_string_equal(command_failsafe_leader(q, before, buf, sizeof buf), "node1");
    /* a stopped node accepts without an lsn header */
    s->pg_running = false;
    free(s->state);
    s->state = xstrdup("stopped");
    failsafe_post(q, s, "{\"name\":\"node3\"}", true, 200, "Accepted", 0);
    assert_string_equal(command_failsafe_leader(q, before, buf, sizeof buf), "node3");
    snapshot_unref(s);
    command_queue_free(q);
}

static void expect_iso(const char *in, const char *out) {
    char *s = failover_scheduled_iso(in);
    if (out)
        assert_string_equal(s, out);
    else
        assert_null(s);
    free(s);
}

static void test_scheduled_iso(void **state) {
    (void)state;
    /* Python's datetime.isoformat() of the parsed time, as Patroni writes scheduled_at */
    expect_iso("2030-01-01 00:00Z", "2030-01-01T00:00:00+00:00");
    expect_iso("2030-01-01T00:00:00Z", "2030-01-01T00:00:00+00:00");
    expect_iso("2030-01-01 00:00+0100", "2030-01-01T00:00:00+01:00");
    expect_iso("2030-06-30T23:59:30.250000-05:30", "2030-06-30T23:59:30.250000-05:30");
    expect_iso("2030-01-01T00:00:00", NULL);
    expect_iso("soon", NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),         cmocka_unit_test(test_check_order), cmocka_unit_test(test_precheck),
        cmocka_unit_test(test_patch),         cmocka_unit_test(test_queue),       cmocka_unit_test(test_failsafe_post),
        cmocka_unit_test(test_scheduled_iso),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
