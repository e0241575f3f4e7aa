/* The command lines of the custom bootstrap and replica methods, as Patroni's bootstrap.py builds them
 * (_custom_bootstrap(), create_replica()): shlex splitting, the default arguments, no_params, the values
 * as Python prints them; and which methods work without a leader. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "unit_helpers.h"

#include "common/util.h"
#include "common/yamltree.h"
#include "pg/pg.h"

static YNode *yaml(const char *text) {
    char *err = NULL;
    YNode *n = yaml_parse_string(text, strlen(text), "test", &err);
    if (!n)
        fail_msg("%s", err);
    return n;
}

/* argv joined with '|' */
static char *joined(const StrList *l) { return strlist_join(l, "|"); }

static void check_split(const char *in, const char *want, size_t n) {
    StrList l = {0};
    char *err = NULL;
    assert_int_equal(pg_shlex_split(in, &l, &err), 0);
    assert_int_equal(l.n, n);
    char *got = joined(&l);
    assert_string_equal(got ? got : "", want);
    free(got);
    strlist_clear(&l);
}

static void test_shlex_split(void **state) {
    (void)state;
    check_split("/usr/bin/wal-g backup-fetch", "/usr/bin/wal-g|backup-fetch", 2);
    check_split("  a   b\tc  ", "a|b|c", 3);
    check_split("sh -c 'echo \"x y\"; exit 1'", "sh|-c|echo \"x y\"; exit 1", 3);
    check_split("a\"b c\"d", "ab cd", 1);
    check_split("\"a\\\"b\\\\c\\d\"", "a\"b\\c\\d", 1);
    check_split("a\\ b", "a b", 1);
    check_split("\"x\\$y\"", "x\\$y", 1); /* in "...", a backslash only escapes \\ and \" (unlike sh) */
    check_split("echo #not-a-comment", "echo|#not-a-comment", 2);
    check_split("''", "", 1);
    check_split("", "", 0);
    StrList l = {0};
    char *err = NULL;
    assert_int_equal(pg_shlex_split("echo 'open", &l, &err), -EINVAL);
    assert_non_null(strstr(err, "no closing quotation"));
    free(err);
    err = NULL;
    assert_int_equal(pg_shlex_split("echo \"open", &l, &err), -EINVAL);
    free(err);
    err = NULL;
    assert_int_equal(pg_shlex_split("trailing\\", &l, &err), -EINVAL);
    free(err);
    strlist_clear(&l);
}

static void check_replica(const char *method, const char *section_yaml, const char *connstring, const char *want) {
    YNode *sec = section_yaml ? yaml(section_yaml) : NULL;
    StrList l = {0};
    char *err = NULL;
    assert_int_equal(pg_replica_method_argv(method, sec, "demo", "/var/lib/pg/data", connstring, &l, &err), 0);
    char *got = joined(&l);
    assert_string_equal(got, want);
    free(got);
    strlist_clear(&l);
    ynode_free(sec);
}

static void test_replica_method_argv(void **state) {
    (void)state;
    /* the section's keys first (in order, not `command`), then scope, role, datadir, connstring */
    check_replica("wal_e", "command: patroni_wale_restore --x 'a b'\nenvdir: /etc/env\nthreshold_megabytes: 10240\n",
                  "host=h port=5432",
                  "patroni_wale_restore|--x|a b|--envdir=/etc/env|--threshold_megabytes=10240|"
                  "--scope=demo|--role=replica|--datadir=/var/lib/pg/data|--connstring=host=h port=5432");
    /* without a section or command: the method's name is the command */
    check_replica("restore.sh", NULL, "",
                  "restore.sh|--scope=demo|--role=replica|--datadir=/var/lib/pg/data|--connstring=");
    /* the option keys are passed along as Patroni does (Python's True/False/None), unless no_params */
    check_replica(
        "m", "command: run\nkeep_data: true\nno_leader: yes\nno_params: false\nx: null\nf: 1.5\n", "c",
        "run|--keep_data=True|--no_leader=True|--no_params=False|--x=None|--f=1.5|--scope=demo|--role=replica|"
        "--datadir=/var/lib/pg/data|--connstring=c");
    /* no_params: no defaults, and no_params, no_master, no_leader, keep_data left out; the others stay */
    check_replica("m", "command: run\nno_params: true\nkeep_data: true\nno_leader: true\nno_master: 1\nbucket: b1\n",
                  "c", "run|--bucket=b1");
    /* a key named like a default keeps its place and gets the default's value (dict.update) */
    check_replica("m", "command: run\ndatadir: /elsewhere\nother: 1\n", "c",
                  "run|--datadir=/var/lib/pg/data|--other=1|--scope=demo|--role=replica|--connstring=c");
    /* a bad command is an error, not a crash */
    YNode *sec = yaml("command: \"run 'x\"\n");
    StrList l = {0};
    char *err = NULL;
    assert_int_equal(pg_replica_method_argv("m", sec, "demo", "/d", "c", &l, &err), -EINVAL);
    free(err);
    strlist_clear(&l);
    ynode_free(sec);
    sec = yaml("command: '  '\n");
    err = NULL;
    assert_int_equal(pg_replica_method_argv("m", sec, "demo", "/d", "c", &l, &err), -EINVAL);
    assert_non_null(strstr(err, "empty command"));
    free(err);
    strlist_clear(&l);
    ynode_free(sec);
}

static void check_bootstrap(const char *section_yaml, const char *want) {
    YNode *sec = yaml(section_yaml);
    StrList l = {0};
    char *err = NULL;
    assert_int_equal(pg_bootstrap_method_argv(sec, "demo", "/data", &l, &err), 0);
    char *got = joined(&l);
    assert_string_equal(got, want);
    free(got);
    strlist_clear(&l);
    ynode_free(sec);
}

static void test_bootstrap_method_argv(void **state) {
    (void)state;
    check_bootstrap("command: /bin/clone.sh --fast\nrecovery_conf:\n  restore_command: cp x y\n"
                    "keep_existing_recovery_conf: true\nbackup: latest\nscope: ignored\ndatadir: ignored\n",
                    "/bin/clone.sh|--fast|--scope=demo|--datadir=/data|--backup=latest");
    check_bootstrap("command: clone\nno_params: true\nbackup: latest\n", "clone|--backup=latest");
    /* no_params false: the defaults, and the key itself is reserved */
    check_bootstrap("command: clone\nno_params: false\n", "clone|--scope=demo|--datadir=/data");
    YNode *sec = yaml("no_params: true\n");
    StrList l = {0};
    char *err = NULL;
    assert_int_equal(pg_bootstrap_method_argv(sec, "demo", "/data", &l, &err), -EINVAL);
    assert_non_null(strstr(err, "no command"));
    free(err);
    strlist_clear(&l);
    ynode_free(sec);
}

static void test_truthy_and_without_leader(void **state) {
    (void)state;
    YNode *m = yaml("a: true\nb: false\nc: 0\nd: 2\ne: ''\nf: 'false'\ng: null\nh: [1]\ni: []\n");
    assert_true(ynode_truthy(ynode_get(m, "a")));
    assert_false(ynode_truthy(ynode_get(m, "b")));
    assert_false(ynode_truthy(ynode_get(m, "c")));
    assert_true(ynode_truthy(ynode_get(m, "d")));
    assert_false(ynode_truthy(ynode_get(m, "e")));
    assert_true(ynode_truthy(ynode_get(m, "f"))); /* a non-empty string, as in Python */
    assert_false(ynode_truthy(ynode_get(m, "g")));
    assert_true(ynode_truthy(ynode_get(m, "h")));
    assert_false(ynode_truthy(ynode_get(m, "i")));
    assert_false(ynode_truthy(ynode_get(m, "missing")));
    ynode_free(m);

    YNode *s = yaml("no_leader: true\n");
    assert_true(pg_replica_method_without_leader("restore", s));
    assert_false(pg_replica_method_without_leader("basebackup", s)); /* never basebackup */
    ynode_free(s);
    s = yaml("no_master: true\n"); /* Patroni 4.0 reads only no_leader */
    assert_false(pg_replica_method_without_leader("restore", s));
    ynode_free(s);
    assert_false(pg_replica_method_without_leader("restore", NULL));
}

/* Patroni's effective_configuration: in recovery, the settings pg_control records win when higher. */
static void test_effective_parameters(void **state) {
    (void)state;
    YNode *params = yaml("max_connections: '50'\nmax_prepared_transactions: '0'\nmax_locks_per_transaction: '64'\n"
                         "max_worker_processes: '8'\nmax_wal_senders: '10'\nwork_mem: 4MB\n");
    ControlData cd = {.max_connections = 100,
                      .max_prepared_xacts = 0,
                      .max_locks_per_xact = 128,
                      .max_worker_processes = -1, /* not printed: left alone */
                      .max_wal_senders = 20};
    StrList names = {0}, control = {0}, configured = {0};
    assert_int_equal(pg_effective_parameters(params, &cd, 15, &names, &control, &configured), 3);
    char *n = joined(&names), *c = joined(&control), *v = joined(&configured);
    assert_string_equal(n, "max_connections|max_locks_per_transaction|max_wal_senders");
    assert_string_equal(c, "100|128|20");
    assert_string_equal(v, "50|64|10");
    free(n), free(c), free(v);
    assert_string_equal(ynode_get(params, "max_connections")->text, "100");
    assert_string_equal(ynode_get(params, "max_prepared_transactions")->text, "0");
    assert_string_equal(ynode_get(params, "max_locks_per_transaction")->text, "128");
    assert_string_equal(ynode_get(params, "max_worker_processes")->text, "8");
    assert_string_equal(ynode_get(params, "work_mem")->text, "4MB");
    /* applied again: nothing left to raise */
    assert_int_equal(pg_effective_parameters(params, &cd, 15, NULL, NULL, NULL), 0);
    ynode_free(params);
    strlist_clear(&names), strlist_clear(&control), strlist_clear(&configured);
    /* before 12 pg_control has no max_wal_senders; a value that is not a number is left alone */
    params = yaml("max_connections: lots\nmax_wal_senders: '5'\n");
    assert_int_equal(pg_effective_parameters(params, &cd, 11, &names, NULL, NULL), 0);
    assert_string_equal(ynode_get(params, "max_wal_senders")->text, "5");
    ynode_free(params);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shlex_split),           cmocka_unit_test(test_replica_method_argv),
        cmocka_unit_test(test_bootstrap_method_argv), cmocka_unit_test(test_truthy_and_without_leader),
        cmocka_unit_test(test_effective_parameters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
