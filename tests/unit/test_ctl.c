/* pgha-ctl's pure parts: YAML as PyYAML dumps it, tables (prettytable, tsv, json, yaml), the member table
 * of list/topology with Patroni 4.1's positions, the unified diff, --set paths, --dcs-url, scheduled
 * timestamps and Python's equality of configuration values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "common/json.h"
#include "ctl/ctl_int.h"
#include "unit_helpers.h"

static char *dump_json(const char *json, bool flow) {
    cJSON *j = json_parse(json);
    assert_non_null(j);
    char *s = yaml_dump(j, flow);
    cJSON_Delete(j);
    return s;
}

static void expect_yaml(const char *json, bool flow, const char *want) {
    char *s = dump_json(json, flow);
    assert_string_equal(s, want);
    free(s);
}

static void test_yaml_dump(void **state) {
    (void)state;
    /* sorted keys, indentless sequences, nested mappings */
    expect_yaml("{\"ttl\":30,\"loop_wait\":10,\"postgresql\":{\"use_pg_rewind\":true,\"parameters\":"
                "{\"wal_level\":\"replica\",\"max_connections\":100}},\"slots\":{}}",
                false,
                "loop_wait: 10\n"
                "postgresql:\n"
                "  parameters:\n"
                "    max_connections: 100\n"
                "    wal_level: replica\n"
                "  use_pg_rewind: true\n"
                "slots: {}\n"
                "ttl: 30\n");
    expect_yaml("{\"pg_hba\":[\"host all all 0.0.0.0/0 md5\",\"local all all trust\"],\"x\":[{\"b\":1,\"a\":[1,2]}]}",
                false,
                "pg_hba:\n"
                "- host all all 0.0.0.0/0 md5\n"
                "- local all all trust\n"
                "x:\n"
                "- a:\n"
                "  - 1\n"
                "  - 2\n"
                "  b: 1\n");
    /* strings that would read back as something else are quoted */
    expect_yaml("{\"a\":\"on\",\"b\":\"123\",\"c\":\"\",\"d\":\"1.5\",\"e\":\"null\",\"f\":\"x: y\",\"g\":\"it's\","
                "\"h\":\"2024-01-01\",\"i\":\"8MB\",\"j\":\"-1\",\"k\":\"- x\",\"l\":\"a\\nb\",\"m\":\"tab\\there\"}",
                false,
                "a: 'on'\nb: '123'\nc: ''\nd: '1.5'\ne: 'null'\nf: 'x: y'\ng: it's\nh: '2024-01-01'\ni: 8MB\n"
                "j: '-1'\nk: '- x'\nl: 'a\n\n  b'\nm: \"tab\\there\"\n");
    expect_yaml("{\"n\":null,\"f\":1.5,\"big\":12345678901234567,\"neg\":-3,\"t\":false}", false,
                "big: 12345678901234567\nf: 1.5\nn: null\nneg: -3\nt: false\n");
    /* flow style (tags in tsv and topology) */
    expect_yaml("{\"nofailover\":true,\"zone\":\"a b\",\"clonefrom\":false}", true,
                "{clonefrom: false, nofailover: true, zone: a b}\n");
    expect_yaml("{}", false, "{}\n");
    expect_yaml("[]", false, "[]\n");
    expect_yaml("[{\"Member\":\"n1\",\"TL\":1},{\"Member\":\"n2\"}]", false, "- Member: n1\n  TL: 1\n- Member: n2\n");
}

static void test_tables(void **state) {
    (void)state;
    static const char *const cols[] = {"Cluster", "Member", "TL", "Tags"};
    Table t;
    table_init(&t, cols, 4);
    table_set_right(&t, "TL");
    t.title = " Cluster: demo (7) ";
    cJSON *r1 = json_parse("[\"demo\",\"node1\",3,{\"nofailover\":true,\"zone\":\"a\"}]");
    cJSON *r2 = json_parse("[\"demo\",\"n2\",\"\",\"\"]");
    cJSON_AddItemToArray(t.rows, r1);
    cJSON_AddItemToArray(t.rows, r2);
    char *s = table_render(&t, FMT_PRETTY, "\t");
    /* the tags are YAML in block style: two lines, so rules between the rows */
    assert_string_equal(s, "+ Cluster: demo (7) -------------+\n"
                           "| Member | TL | Tags             |\n"
                           "+--------+----+------------------+\n"
                           "| node1  |  3 | nofailover: true |\n"
                           "|        |    | zone: a          |\n"
                           "+--------+----+------------------+\n"
                           "| n2     |    |                  |\n"
                           "+--------+----+------------------+\n");
    free(s);
    s = table_render(&t, FMT_TSV, "\t");
    assert_string_equal(s, "Cluster\tMember\tTL\tTags\ndemo\tnode1\t3\t{nofailover: true, zone: a}\ndemo\tn2\t\t\n");
    free(s);
    s = table_render(&t, FMT_JSON, NULL);
    /* empty values left out, ints stay ints, tags stay an object */
    assert_string_equal(s, "[{\"Cluster\": \"demo\", \"Member\": \"node1\", \"TL\": 3, \"Tags\": {\"nofailover\": "
                           "true, \"zone\": \"a\"}}, {\"Cluster\": \"demo\", \"Member\": \"n2\"}]\n");
    free(s);
    s = table_render(&t, FMT_YAML, NULL);
    assert_string_equal(s, "- Cluster: demo\n  Member: node1\n  TL: 3\n  Tags:\n    nofailover: true\n    zone: a\n"
                           "- Cluster: demo\n  Member: n2\n");
    free(s);
    table_free(&t);
    /* a title longer than the top border is cut */
    static const char *const one[] = {"A"};
    table_init(&t, one, 1);
    t.title = " Cluster: a-very-long-name (1234567890) ";
    cJSON_AddItemToArray(t.rows, json_parse("[\"x\"]"));
    s = table_render(&t, FMT_PRETTY, NULL);
    assert_string_equal(s, "+ Cl+\n| A |\n+---+\n| x |\n+---+\n");
    free(s);
    table_free(&t);
    /* without a title (history) empty values stay */
    static const char *const h[] = {"TL", "Reason"};
    table_init(&t, h, 2);
    cJSON_AddItemToArray(t.rows, json_parse("[1,\"\"]"));
    s = table_render(&t, FMT_JSON, NULL);
    assert_string_equal(s, "[{\"TL\": 1, \"Reason\": \"\"}]\n");
    free(s);
    table_free(&t);
}

static Cluster *make_cluster(const char *const kv[][2], size_t n) {
    DcsKv *kvs = calloc(n, sizeof *kvs);
    for (size_t i = 0; i < n; i++) {
        kvs[i].key = xasprintf("/service/demo/%s", kv[i][0]);
        kvs[i].value = xstrdup(kv[i][1]);
        kvs[i].value_len = strlen(kv[i][1]);
        kvs[i].mod_revision = kvs[i].create_revision = 1;
    }
    Cluster *c = cluster_from_kvs(kvs, n, "/service/demo");
    for (size_t i = 0; i < n; i++)
        dcs_kv_free_contents(&kvs[i]);
    free(kvs);
    return c;
}

static const char *const CLUSTER_KEYS[][2] = {
    {"initialize", "7401234567890123456"},
    {"config", "{\"ttl\":30,\"loop_wait\":10}"},
    {"leader", "node1"},
    {"status", "{\"optime\":67108864}"},
    {"members/node1",
     "{\"conn_url\":\"postgres://10.0.0.1:5432/postgres\",\"api_url\":\"http://10.0.0.1:8008/patroni\","
     "\"state\":\"running\",\"role\":\"primary\",\"version\":\"4.0.6\",\"xlog_location\":67108864,"
     "\"timeline\":3}"},
    /* Patroni 4.1: receive and replay positions; 1.5 MiB behind -> 2 (halves to even) */
    {"members/node2",
     "{\"conn_url\":\"postgres://10.0.0.2:5432/postgres\",\"api_url\":\"http://10.0.0.2:8008/patroni\","
     "\"state\":\"running\",\"role\":\"replica\",\"version\":\"4.1.0\",\"xlog_location\":65536000,"
     "\"receive_lsn\":65536000,\"replay_lsn\":65011712,\"replication_state\":\"streaming\","
     "\"timeline\":3,\"tags\":{\"replicatefrom\":\"node3\"}}"},
    /* older: only xlog_location, not streaming (replay); 2.5 MiB behind -> 2 */
    {"members/node3",
     "{\"conn_url\":\"postgres://10.0.0.3:5432/postgres\",\"api_url\":\"http://10.0.0.3:8008/patroni\","
     "\"state\":\"running\",\"role\":\"replica\",\"version\":\"4.0.6\",\"xlog_location\":64487424,"
     "\"timeline\":3,\"pending_restart\":true,\"pending_restart_reason\":{\"max_connections\":"
     "{\"old_value\":\"100\",\"new_value\":\"200\"}}}"},
    {"members/node4",
     "{\"conn_url\":\"postgres://10.0.0.4:5432/postgres\",\"api_url\":\"http://10.0.0.4:8008/patroni\","
     "\"state\":\"stopped\",\"role\":\"replica\",\"version\":\"4.0.6\"}"},
};

static void test_members_output(void **state) {
    (void)state;
    Cluster *cl = make_cluster(CLUSTER_KEYS, ELEMENTSOF(CLUSTER_KEYS));
    char *s = ctl_members_output(cl, "demo", false, FMT_PRETTY);
    assert_string_equal(
        s,
        "+ Cluster: demo (7401234567890123456) ----+----+-------------+-----+------------+-----+-----------------+---------------------------+----------------------+\n"
        "| Member | Host     | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag | Pending restart | Pending restart reason    | Tags                 |\n"
        "+--------+----------+---------+-----------+----+-------------+-----+------------+-----+-----------------+---------------------------+----------------------+\n"
        "| node1  | 10.0.0.1 | Leader  | running   |  3 |             |     |            |     |                 |                           |                      |\n"
        "| node2  | 10.0.0.2 | Replica | streaming |  3 |   0/3E80000 |   2 |  0/3E00000 |   2 |                 |                           | replicatefrom: node3 |\n"
        "| node3  | 10.0.0.3 | Replica | running   |  3 |     unknown |     |  0/3D80000 |   2 | *               | max_connections: 100->200 |                      |\n"
        "| node4  | 10.0.0.4 | Replica | stopped   |    |     unknown |     |    unknown |     |                 |                           |                      |\n"
        "+--------+----------+---------+-----------+----+-------------+-----+------------+-----+-----------------+---------------------------+----------------------+\n");
    free(s);
    s = ctl_members_output(cl, "demo", false, FMT_JSON);
    cJSON *j = json_parse(s);
    assert_non_null(j);
    char *row2 = json_dumps(cJSON_GetArrayItem(j, 1), true);
    assert_string_equal(row2, "{\"Cluster\": \"demo\", \"Member\": \"node2\", \"Host\": \"10.0.0.2\", \"Role\": "
                              "\"Replica\", \"State\": \"streaming\", \"TL\": 3, \"Receive LSN\": \"0/3E80000\", "
                              "\"Receive Lag\": 2, \"Replay LSN\": \"0/3E00000\", \"Replay Lag\": 2, \"Tags\": "
                              "{\"replicatefrom\": \"node3\"}}");
    free(row2);
    cJSON_Delete(j);
    free(s);
    /* topology: node2 cascades from node3 */
    s = ctl_members_output(cl, "demo", false, FMT_TOPOLOGY);
    assert_non_null(strstr(s, "| node1     |"));
    const char *a = strstr(s, "| + node3   |"), *b = strstr(s, "|   + node2 |"), *d = strstr(s, "| + node4   |");
    assert_true(a && b && d && a < b && b < d);
    assert_non_null(strstr(s, "| {replicatefrom: node3} |")); /* flow style in topology */
    free(s);
    size_t n;
    const Member **ms = ctl_members_with_role(cl, ROLE_REPLICA, &n);
    assert_int_equal(n, 3);
    assert_string_equal(ms[0]->name, "node2");
    free(ms);
    ms = ctl_members_with_role(cl, ROLE_STANDBY_LEADER, &n);
    assert_int_equal(n, 0);
    free(ms);
    ms = ctl_members_with_role(cl, ROLE_PRIMARY, &n);
    assert_int_equal(n, 1);
    free(ms);
    cluster_free(cl);
}

static void expect_diff(const char *a, const char *b, const char *want) {
    char *d = unified_diff(a, b);
    if (!want)
        assert_null(d);
    else
        assert_string_equal(d, want);
    free(d);
}

static void test_unified_diff(void **state) {
    (void)state;
    expect_diff("a\nb\n", "a\nb\n", NULL);
    expect_diff("a\nb\nc\n", "a\nB\nc\n", "--- \n+++ \n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n");
    /* context of three lines, far changes in two hunks */
    /* as difflib gives them (checked with Python's difflib.unified_diff) */
    expect_diff("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n",
                "--- \n+++ \n@@ -1,3 +1,4 @@\n+0\n 1\n 2\n 3\n@@ -7,4 +8,3 @@\n 7\n 8\n 9\n-10\n");
    expect_diff("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n", "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n",
                "--- \n+++ \n@@ -1,3 +1,4 @@\n+0\n 1\n 2\n 3\n@@ -9,4 +10,3 @@\n 9\n 10\n 11\n-12\n");
    expect_diff("ttl: 30\n", "loop_wait: 5\nttl: 30\n", "--- \n+++ \n@@ -1 +1,2 @@\n+loop_wait: 5\n ttl: 30\n");
}

static void expect_set(const char *config, const char *pair, const char *want) {
    cJSON *c = json_parse(config);
    char *err = NULL;
    assert_int_equal(ctl_apply_set(c, pair, &err), 0);
    char *s = json_dumps(c, false);
    assert_string_equal(s, want);
    free(s);
    cJSON_Delete(c);
}

static void test_apply_set(void **state) {
    (void)state;
    expect_set("{\"ttl\":30}", "ttl=40", "{\"ttl\":40}");
    expect_set("{\"ttl\":30}", "postgresql.parameters.work_mem=8MB",
               "{\"ttl\":30,\"postgresql\":{\"parameters\":{\"work_mem\":\"8MB\"}}}");
    /* GUC names keep their dots; a value is YAML */
    expect_set("{}", "postgresql.parameters.auto_explain.log_min_duration=-1",
               "{\"postgresql\":{\"parameters\":{\"auto_explain.log_min_duration\":-1}}}");
    expect_set("{}", "synchronous_mode=on", "{\"synchronous_mode\":true}");
    expect_set("{}", "slots={a: {type: physical}}", "{\"slots\":{\"a\":{\"type\":\"physical\"}}}");
    /* null removes, and the parents it leaves empty */
    expect_set("{\"postgresql\":{\"parameters\":{\"work_mem\":\"8MB\"}},\"ttl\":30}",
               "postgresql.parameters.work_mem=null", "{\"ttl\":30}");
    cJSON *c = cJSON_CreateObject();
    char *err = NULL;
    assert_int_equal(ctl_apply_set(c, "ttl", &err), -1);
    assert_string_equal(err, "Invalid parameter setting ttl");
    free(err);
    cJSON_Delete(c);
}

static void test_dcs_url(void **state) {
    (void)state;
    char *hp, *ns, *err = NULL;
    assert_int_equal(ctl_parse_dcs_url("etcd3://10.0.0.1:2399/custom", &hp, &ns, &err), 0);
    assert_string_equal(hp, "10.0.0.1:2399");
    assert_string_equal(ns, "/custom");
    free(hp);
    free(ns);
    assert_int_equal(ctl_parse_dcs_url("localhost", &hp, &ns, &err), 0);
    assert_string_equal(hp, "localhost:2379");
    assert_null(ns);
    free(hp);
    assert_int_equal(ctl_parse_dcs_url("etcd://:2390/", &hp, &ns, &err), 0);
    assert_string_equal(hp, "localhost:2390");
    assert_null(ns);
    free(hp);
    assert_int_equal(ctl_parse_dcs_url("consul://h:8500", &hp, &ns, &err), -1);
    assert_non_null(strstr(err, "etcd v3 only"));
    free(err);
    assert_int_equal(ctl_parse_dcs_url("foo://h", &hp, &ns, &err), -1);
    assert_string_equal(err, "Unknown dcs scheme: foo");
    free(err);
}

static void test_scheduled(void **state) {
    (void)state;
    char *iso = NULL, *err = NULL;
    assert_int_equal(ctl_parse_scheduled("now", &iso, &err), 0);
    assert_null(iso);
    assert_int_equal(ctl_parse_scheduled(NULL, &iso, &err), 0);
    assert_null(iso);
    assert_int_equal(ctl_parse_scheduled("2030-01-01T10:00+02:00", &iso, &err), 0);
    assert_string_equal(iso, "2030-01-01T10:00:00+02:00");
    free(iso);
    setenv("TZ", "UTC", 1);
    tzset();
    assert_int_equal(ctl_parse_scheduled("2030-01-01 10:00", &iso, &err), 0);
    assert_string_equal(iso, "2030-01-01T10:00:00+00:00");
    free(iso);
    assert_int_equal(ctl_parse_scheduled("tomorrow", &iso, &err), -1);
    assert_string_equal(err, "Unable to parse scheduled timestamp (tomorrow). It should be in an unambiguous format "
                             "(e.g. ISO 8601)");
    free(err);
}

static void test_json_equal(void **state) {
    (void)state;
    cJSON *a = json_parse("{\"a\":1,\"b\":{\"c\":[1,\"x\"]}}");
    cJSON *b = json_parse("{\"b\":{\"c\":[1.0,\"x\"]},\"a\":1}");
    char *err = NULL;
    cJSON *y = ctl_yaml_to_json("a: 1\nb:\n  c: [1, x]\n", "t", &err);
    assert_true(ctl_json_equal(a, b));
    assert_true(ctl_json_equal(a, y));
    cJSON *c = json_parse("{\"a\":1,\"b\":{\"c\":[1,\"y\"]}}");
    assert_false(ctl_json_equal(a, c));
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
    cJSON_Delete(y);
    CtlRole r;
    assert_int_equal(ctl_parse_role("standby-leader", &r), 0);
    assert_int_equal(r, ROLE_STANDBY_LEADER);
    assert_int_equal(ctl_parse_role("master", &r), -1);
    CtlFormat f;
    assert_int_equal(ctl_parse_format("yml", false, &f), 0);
    assert_int_equal(f, FMT_YAML);
    assert_int_equal(ctl_parse_format("topology", false, &f), -1);
}

static void expect_phase(const char *leader, const char *member_json, const char *failover, const char *cand,
                         bool requested, Outcome want, const char *text) {
    const char *kv[4][2] = {{"config", "{}"},
                            {"members/node1", "{\"state\":\"running\",\"role\":\"replica\"}"},
                            {"members/node2", member_json},
                            {"failover", failover}};
    Cluster *cl = make_cluster(kv, 4);
    if (leader) {
        cl->leader = xcalloc(1, sizeof(Leader));
        cl->leader->name = xstrdup(leader);
        cl->leader->member = cluster_get_member(cl, leader);
    }
    Outcome o = PENDING;
    char *p = ctl_switch_phase(cl, cand, "node1", requested, &o);
    assert_string_equal(p, text);
    assert_int_equal(o, want);
    free(p);
    cluster_free(cl);
}

static void test_switch_phase(void **state) {
    (void)state;
    const char *running = "{\"state\":\"running\",\"role\":\"primary\"}";
    const char *promoting = "{\"state\":\"running\",\"role\":\"promoted\"}";
    expect_phase("node1", running, "{}", "node2", false, PENDING,
                 "node1 holds the leader key; the request is on its way");
    expect_phase("node1", running, "{\"leader\":\"node1\",\"member\":\"node2\"}", "node2", true, PENDING,
                 "the failover key asks node1 to hand over to node2");
    expect_phase(NULL, running, "{\"leader\":\"node1\",\"member\":\"node2\"}", "node2", true, PENDING,
                 "node1 released the leader key; nobody holds it yet");
    expect_phase("node2", promoting, "{}", "node2", true, PENDING,
                 "node2 holds the leader key (state: running, role: promoted)");
    expect_phase("node2", running, "{}", "node2", true, DONE, "node2 holds the leader key and runs as the primary");
    expect_phase("node2", running, "{}", NULL, true, DONE, "node2 holds the leader key and runs as the primary");
    expect_phase("node2", running, "{}", "node3", true, OTHER, "node2 holds the leader key and runs as the primary");
    /* the key cleared without a change: failed, but only once the request was made */
    expect_phase("node1", running, "{}", "node2", true, FAILED,
                 "the failover key was cleared and node1 still holds the leader key");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yaml_dump),    cmocka_unit_test(test_tables),     cmocka_unit_test(test_members_output),
        cmocka_unit_test(test_unified_diff), cmocka_unit_test(test_apply_set),  cmocka_unit_test(test_dcs_url),
        cmocka_unit_test(test_scheduled),    cmocka_unit_test(test_json_equal), cmocka_unit_test(test_switch_phase),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
