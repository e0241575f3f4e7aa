/* config: the declarative table, both seed fixtures, type errors with file:line and dotted path,
 * unknown keys, the timing rule, environment overrides, directory configs, diff and dump,
 * host:port parsing and slot names. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <sys/stat.h>

#include "common/config.h"
#include "unit_helpers.h"

static char *g_dir; /* one temporary directory for the whole group */

static int group_setup(void **state) {
    (void)state;
    g_dir = tmpdir_make();
    return g_dir ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    g_dir = tmpdir_remove(g_dir);
    return 0;
}

/* ---- a fake environment ---- */

/* userdata: a NULL-terminated array of "NAME=value" strings */
static char *fake_getenv(const char *name, void *userdata) {
    const char *const *kv = userdata;
    size_t l = strlen(name);
    for (; kv && *kv; kv++)
        if (strncmp(*kv, name, l) == 0 && (*kv)[l] == '=')
            return xstrdup(*kv + l + 1);
    return NULL;
}

/* the names of the fake environment (EnvLister) */
static void fake_listenv(StrList *ret, void *userdata) {
    for (const char *const *kv = userdata; kv && *kv; kv++) {
        const char *eq = strchr(*kv, '=');
        _cleanup_free_ char *name = xstrndup(*kv, (size_t)(eq - *kv));
        strlist_add(ret, name);
    }
}

static const char *const no_env[] = {NULL};

/* ---- a small valid configuration, by sections ---- */

#define BASE_TOP "scope: demo\nname: node1\n"
#define BASE_RESTAPI "restapi:\n  listen: 127.0.0.1:8008\n"
#define BASE_ETCD3 "etcd3:\n  hosts: 127.0.0.1:2379\n"
#define BASE_PG                                 \
    "postgresql:\n"                             \
    "  listen: 127.0.0.1:5432\n"                \
    "  data_dir: /nonexistent/pgha-unit/data\n" \
    "  authentication:\n"                       \
    "    superuser:\n"                          \
    "      username: postgres\n"                \
    "    replication:\n"                        \
    "      username: replicator\n"
#define BASE BASE_TOP BASE_RESTAPI BASE_ETCD3 BASE_PG

/* Load `text` from a file named `name` in the test directory, with the given environment.
 * Returns config_load's result; *ret_path (optional) gets the file's path. */
static int load_text_env(const char *name, const char *text, const char *const *env, PghaConfig *cfg, CfgDiag *diag,
                         char **ret_path) {
    char *path = write_file(g_dir, name, text);
    CfgSource src;
    cfg_source_init(&src, path, fake_getenv, (void *)env);
    int r = config_load(&src, cfg, diag);
    cfg_source_free(&src);
    if (ret_path)
        *ret_path = path;
    else
        free(path);
    return r;
}

static int load_text(const char *text, PghaConfig *cfg, CfgDiag *diag, char **ret_path) {
    return load_text_env("patroni.yml", text, no_env, cfg, diag, ret_path);
}

static int load_seed(const char *path, PghaConfig *cfg, CfgDiag *diag) {
    CfgSource src;
    cfg_source_init(&src, path, fake_getenv, (void *)no_env);
    int r = config_load(&src, cfg, diag);
    cfg_source_free(&src);
    return r;
}

static void assert_no_diag(const CfgDiag *d) {
    print_list("warning", &d->warnings);
    print_list("error", &d->errors);
    assert_int_equal(d->warnings.n, 0);
    assert_int_equal(d->errors.n, 0);
}

static void test_base_is_valid(void **state) {
    (void)state;
    PghaConfig cfg;
    CfgDiag diag = {0};
    assert_int_equal(load_text(BASE, &cfg, &diag, NULL), 0);
    assert_no_diag(&diag);
    /* defaults and derived values */
    assert_string_equal(cfg.namespace_, "/service");
    assert_string_equal(cfg.restapi.connect_address, "127.0.0.1:8008");
    assert_int_equal(cfg.restapi.verify_client, VERIFY_NONE);
    assert_int_equal(cfg.restapi.request_queue_size, 128);
    assert_int_equal(cfg.etcd3.port, 2379);
    assert_string_equal(cfg.etcd3.protocol, "http");
    assert_string_equal(cfg.postgresql.config_dir, "/nonexistent/pgha-unit/data");
    assert_string_equal(cfg.postgresql.bin_dir, "");
    assert_string_equal(cfg.postgresql.database, "postgres");
    assert_string_equal(cfg.postgresql.bin_name.pg_ctl, "pg_ctl");
    assert_string_equal(cfg.postgresql.rewind.username, "postgres");
    assert_null(cfg.postgresql.rewind.password);
    assert_int_equal(cfg.postgresql.pg_ctl_timeout, 60);
    assert_int_equal(cfg.postgresql.create_replica_methods.n, 1);
    assert_string_equal(cfg.postgresql.create_replica_methods.v[0], "basebackup");
    assert_int_equal(cfg.watchdog.mode, WATCHDOG_AUTOMATIC);
    assert_string_equal(cfg.watchdog.device, "/dev/watchdog");
    assert_int_equal(cfg.watchdog.safety_margin, 5);
    assert_int_equal(cfg.tags.failover_priority, 1);
    assert_false(cfg.tags.nofailover);
    assert_null(cfg.tags.all);
    assert_string_equal(cfg.log.type, "plain");
    assert_string_equal(cfg.log.level, "INFO");
    assert_int_equal(cfg.log.file_num, 4);
    assert_int_equal(cfg.log.file_size, 25000000);
    assert_string_equal(cfg.bootstrap.method, "initdb");
    assert_null(cfg.bootstrap.dcs);
    /* no bootstrap.dcs: the dynamic defaults */
    assert_int_equal(cfg.bootstrap.dyn.ttl, 30);
    assert_int_equal(cfg.bootstrap.dyn.loop_wait, 10);
    assert_int_equal(cfg.bootstrap.dyn.retry_timeout, 10);
    assert_true(cfg.bootstrap.dyn.use_slots);
    assert_true(config_is_set(&cfg, "name"));
    assert_false(config_is_set(&cfg, "namespace"));
    assert_false(config_is_set(&cfg, "no.such.key"));
    config_free(&cfg);
    cfg_diag_clear(&diag);
}

/* ---- the seed fixtures ---- */

static void check_seed(const char *file, const char *name, const char *ip, const char *hba0, const char *hba2) {
    PghaConfig cfg;
    CfgDiag diag = {0};
    int r = load_seed(file, &cfg, &diag);
    print_list("warning", &diag.warnings);
    print_list("error", &diag.errors);
    assert_int_equal(r, 0);
    assert_int_equal(diag.errors.n, 0);

    /* the only complaint is the one Patroni makes too: the timing rule */
    assert_int_equal(diag.warnings.n, 1);
    _cleanup_free_ char *where = xasprintf("%s:20: bootstrap.dcs: ", file);
    assert_true(str_startswith(diag.warnings.v[0], where));
    assert_non_null(strstr(diag.warnings.v[0], "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\""));
    assert_non_null(strstr(diag.warnings.v[0], "ttl=60 and retry_timeout=27. Adjusting loop_wait from 10 to 6"));

    assert_string_equal(cfg.source, file);
    assert_string_equal(cfg.name, name);
    assert_string_equal(cfg.scope, "postgres-cluster");
    assert_string_equal(cfg.namespace_, "/service/");

    _cleanup_free_ char *api = xasprintf("%s:8008", ip);
    assert_string_equal(cfg.restapi.listen, api);
    assert_string_equal(cfg.restapi.connect_address, api);
    assert_string_equal(cfg.restapi.username, "patroni");
    assert_string_equal(cfg.restapi.password, "123456");
    assert_int_equal(cfg.restapi.verify_client, VERIFY_NONE);

    assert_int_equal(cfg.etcd3.hosts.n, 3);
    assert_string_equal(cfg.etcd3.hosts.v[0], "192.168.2.96:2379");
    assert_string_equal(cfg.etcd3.hosts.v[1], "192.168.2.91:2379");
    assert_string_equal(cfg.etcd3.hosts.v[2], "192.168.2.98:2379");
    assert_null(cfg.etcd3.host);
    assert_int_equal(cfg.etcd3.port, 2379);

    /* bootstrap.dcs: timing adjusted, legacy name understood, everything else as written */
    const DynConfig *dyn = &cfg.bootstrap.dyn;
    assert_int_equal(dyn->ttl, 60);
    assert_int_equal(dyn->loop_wait, 6);
    assert_int_equal(dyn->retry_timeout, 27);
    assert_int_equal(dyn->maximum_lag_on_failover, 2048576);
    assert_int_equal(dyn->primary_start_timeout, 300);
    assert_int_equal(dyn->synchronous_mode, SYNC_ON);
    assert_false(dyn->synchronous_mode_strict);
    assert_int_equal(dyn->synchronous_node_count, 1);
    assert_false(dyn->use_pg_rewind);
    assert_true(dyn->use_slots);
    assert_true(dyn_config_is_set(dyn, "primary_start_timeout"));
    assert_false(dyn_config_is_set(dyn, "primary_stop_timeout"));
    assert_non_null(dyn->parameters);
    assert_int_equal(ynode_get(dyn->parameters, "max_connections")->i, 800);
    assert_int_equal(ynode_get(dyn->parameters, "huge_pages")->type, Y_BOOL);
    assert_false(ynode_get(dyn->parameters, "huge_pages")->b);
    assert_true(ynode_get(dyn->parameters, "hot_standby_feedback")->b);
    assert_string_equal(ynode_get(dyn->parameters, "shared_buffers")->text, "5GB");
    assert_string_equal(ynode_get(dyn->parameters, "checkpoint_timeout")->text, "15min");
    assert_int_equal(ynode_get(dyn->parameters, "wal_keep_segments")->i, 130);
    assert_string_equal(ynode_get(dyn->parameters, "log_line_prefix")->text, "%m [%p] %q%u@%d ");

    cJSON *j = ynode_to_json(cfg.bootstrap.dcs);
    _cleanup_free_ char *js = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    assert_true(str_startswith(js, "{\"ttl\":60,\"loop_wait\":6,\"retry_timeout\":27,"
                                   "\"maximum_lag_on_failover\":2048576,\"master_start_timeout\":300,"
                                   "\"synchronous_mode\":true,"));
    assert_non_null(strstr(js, "\"checkpoint_completion_target\":0.9,"));
    assert_non_null(strstr(js, "\"huge_pages\":false,"));
    assert_non_null(strstr(js, "\"synchronous_commit\":true,"));
    assert_non_null(strstr(js, "\"shared_buffers\":\"5GB\","));
    assert_non_null(strstr(js, "\"seq_page_cost\":1,"));
    assert_null(strstr(js, "primary_start_timeout")); /* written to /config as the owners wrote it */

    assert_string_equal(cfg.bootstrap.method, "initdb");
    const YNode *initdb = cfg.bootstrap.initdb;
    assert_int_equal(initdb->type, Y_SEQ);
    assert_int_equal(initdb->n, 3);
    assert_string_equal(ynode_get(initdb->items[0], "encoding")->text, "UTF8");
    assert_string_equal(ynode_get(initdb->items[1], "locale")->text, "en_US.UTF-8");
    assert_string_equal(initdb->items[2]->text, "data-checksums");
    assert_int_equal(cfg.bootstrap.pg_hba->n, 3);
    assert_string_equal(cfg.bootstrap.pg_hba->items[0]->text, hba0);
    assert_string_equal(cfg.bootstrap.pg_hba->items[1]->text, "host replication replicator 127.0.0.1/32 md5");
    assert_string_equal(cfg.bootstrap.pg_hba->items[2]->text, hba2);

    _cleanup_free_ char *pglisten = xasprintf("%s,127.0.0.1:5432", ip);
    assert_string_equal(cfg.postgresql.listen, pglisten);
    StrList addrs = {0};
    int port = 0;
    assert_int_equal(parse_listen(cfg.postgresql.listen, &addrs, &port), 0);
    assert_int_equal(addrs.n, 2);
    assert_string_equal(addrs.v[0], ip);
    assert_string_equal(addrs.v[1], "127.0.0.1");
    assert_int_equal(port, 5432);
    strlist_clear(&addrs);
    _cleanup_free_ char *pgconn = xasprintf("%s:5432", ip);
    assert_string_equal(cfg.postgresql.connect_address, pgconn);
    assert_true(cfg.postgresql.use_unix_socket);
    assert_false(cfg.postgresql.use_unix_socket_repl);
    assert_string_equal(cfg.postgresql.data_dir, "/var/lib/postgresql/16/main");
    assert_string_equal(cfg.postgresql.bin_dir, "/usr/lib/postgresql/16/bin");
    assert_string_equal(cfg.postgresql.config_dir, "/etc/postgresql/16/main");
    assert_string_equal(cfg.postgresql.pgpass, "/var/lib/postgresql/.pgpass_patroni");
    /* unquoted numbers as passwords are the strings the owners typed */
    assert_string_equal(cfg.postgresql.superuser.username, "postgres");
    assert_string_equal(cfg.postgresql.superuser.password, "123456");
    assert_string_equal(cfg.postgresql.replication.username, "replicator");
    assert_string_equal(cfg.postgresql.replication.password, "123456");
    assert_string_equal(cfg.postgresql.rewind.username, "postgres");
    assert_string_equal(cfg.postgresql.rewind.password, "123456");
    assert_string_equal(ynode_get(cfg.postgresql.parameters, "unix_socket_directories")->text, "/var/run/postgresql");
    assert_false(cfg.postgresql.remove_data_directory_on_rewind_failure);
    assert_false(cfg.postgresql.remove_data_directory_on_diverged_timelines);
    assert_int_equal(cfg.postgresql.create_replica_methods.n, 1);
    assert_string_equal(cfg.postgresql.create_replica_methods.v[0], "basebackup");
    assert_string_equal(ynode_get(cfg.postgresql.basebackup, "max-rate")->text, "100M");
    assert_string_equal(ynode_get(cfg.postgresql.basebackup, "checkpoint")->text, "fast");

    /* `mode: off` is YAML false, which means off */
    assert_int_equal(cfg.watchdog.mode, WATCHDOG_OFF);
    assert_string_equal(cfg.watchdog.device, "/dev/watchdog");
    assert_int_equal(cfg.watchdog.safety_margin, 5);

    assert_false(cfg.tags.nofailover);
    assert_false(cfg.tags.noloadbalance);
    assert_false(cfg.tags.clonefrom);
    assert_false(cfg.tags.nosync);
    assert_false(cfg.tags.nostream);
    assert_int_equal(cfg.tags.failover_priority, 1);
    assert_true(config_is_set(&cfg, "tags.nofailover"));
    assert_false(config_is_set(&cfg, "tags.nostream"));
    assert_int_equal(cfg.tags.all->n, 4);

    assert_string_equal(cfg.log.level, "INFO");
    assert_false(config_is_set(&cfg, "log"));
    config_free(&cfg);
    cfg_diag_clear(&diag);
}

static void test_seed_ptrn1(void **state) {
    (void)state;
    check_seed(SEED_FIXTURE("ptrn-1.yml"), "ptrn-1", "192.168.2.96", "host all all 192.168.0.0/16 md5",
               "host replication replicator 192.168.0.0/16 md5");
}

static void test_seed_ptrn2(void **state) {
    (void)state;
    check_seed(SEED_FIXTURE("ptrn-2.yml"), "ptrn-2", "192.168.2.91", "host all all 0.0.0.0/0 md5",
               "host replication replicator 10.0.2.0/24 md5");
}

static void test_seed_fixtures_differ_only_where_expected(void **state) {
    (void)state;
    PghaConfig a, b;
    CfgDiag diag = {0};
    assert_int_equal(load_seed(SEED_FIXTURE("ptrn-1.yml"), &a, &diag), 0);
    assert_int_equal(load_seed(SEED_FIXTURE("ptrn-2.yml"), &b, &diag), 0);
    CfgChange *ch = NULL;
    size_t n = config_diff(&a, &b, &ch);
    const char *expected[] = {"name",
                              "restapi.listen",
                              "restapi.connect_address",
                              "bootstrap.pg_hba",
                              "postgresql.listen",
                              "postgresql.connect_address"};
    for (size_t i = 0; i < n; i++)
        print_error("changed: %s\n", ch[i].path);
    assert_int_equal(n, ELEMENTSOF(expected));
    for (size_t i = 0; i < n; i++)
        assert_string_equal(ch[i].path, expected[i]);
    config_changes_free(ch, n);
    config_free(&a);
    config_free(&b);
    cfg_diag_clear(&diag);
}

/* ---- every type error names file:line and the dotted path ---- */

typedef struct ErrCase {
    const char *text;     /* appended to BASE: a later top-level key replaces the earlier one */
    const char *path;     /* dotted path the message must name */
    const char *fragment; /* and what it must say */
} ErrCase;

static const ErrCase type_errors[] = {
    {"bootstrap:\n  dcs:\n    loop_wait: 10\n    ttl: abc  # BAD\n", "bootstrap.dcs.ttl",
     "expected an integer, got 'abc'"},
    {"bootstrap:\n  dcs:\n    retry_timeout: [1]  # BAD\n", "bootstrap.dcs.retry_timeout",
     "expected an integer, got a list"},
    {"bootstrap:\n  dcs:\n    synchronous_mode: maybe  # BAD\n", "bootstrap.dcs.synchronous_mode",
     "expected on, off or quorum, got 'maybe'"},
    {"bootstrap:\n  dcs:\n    synchronous_node_count: 0  # BAD\n", "bootstrap.dcs.synchronous_node_count",
     "0 is out of range"},
    {"bootstrap:\n  dcs:\n    maximum_lag_on_failover: -1  # BAD\n", "bootstrap.dcs.maximum_lag_on_failover",
     "-1 is out of range"},
    {"bootstrap:\n  dcs:\n    member_slots_ttl: 5 parsecs  # BAD\n", "bootstrap.dcs.member_slots_ttl",
     "expected a duration"},
    /* beyond long long (found by fuzzing: undefined behaviour in the conversion / the multiplication) */
    {"bootstrap:\n  dcs:\n    member_slots_ttl: -6e19  # BAD\n", "bootstrap.dcs.member_slots_ttl",
     "expected a duration (e.g. 1800, 30min, 2h), got '-6e19'"},
    {"bootstrap:\n  dcs:\n    member_slots_ttl: 9223372036854775807d  # BAD\n", "bootstrap.dcs.member_slots_ttl",
     "'9223372036854775807d' is out of range"},
    {"bootstrap:\n  dcs:\n    postgresql:\n      use_slots: sometimes  # BAD\n", "bootstrap.dcs.postgresql.use_slots",
     "expected a boolean"},
    {"bootstrap:\n  dcs:\n    postgresql:\n      parameters: [a]  # BAD\n", "bootstrap.dcs.postgresql.parameters",
     "expected a mapping, got a list"},
    {"bootstrap:\n  dcs: [ttl, 30]  # BAD\n", "bootstrap.dcs", "expected a mapping, got a list"},
    {"bootstrap:\n  initdb:\n    - encoding: UTF8\n    - pgdata: /elsewhere  # BAD\n", "bootstrap.initdb",
     "option 'pgdata' is set by pgha itself"},
    {"bootstrap:\n  initdb:\n    nosync: true  # BAD\n", "bootstrap.initdb", "option 'nosync' is set by pgha itself"},
    {"bootstrap:\n  initdb: data-checksums  # BAD\n", "bootstrap.initdb", "expected a list of options or a mapping"},
    {"bootstrap:\n  pg_hba: host all all 0.0.0.0/0 md5  # BAD\n", "bootstrap.pg_hba", "expected a list, got a string"},
    {"bootstrap:\n  method: custom  # BAD\n", "bootstrap.method",
     "needs a 'bootstrap.custom' section with a 'command'"},
    {"restapi:\n  listen: [127.0.0.1:8008, 127.0.0.2:8008]  # BAD\n", "restapi.listen",
     "expected a string, got a list"},
    {"restapi:\n  listen: 127.0.0.1:http  # BAD\n", "restapi.listen", "'127.0.0.1:http' is not a valid host:port"},
    {"restapi:\n  listen: 127.0.0.1:8008\n  connect_address: 127.0.0.1:0  # BAD\n", "restapi.connect_address",
     "is not a valid host:port"},
    {"restapi:\n  listen: 127.0.0.1:8008\n  verify_client: maybe  # BAD\n", "restapi.verify_client",
     "'maybe' is not one of: none, optional, required"},
    {"restapi:\n  listen: 127.0.0.1:8008\n  request_queue_size: 5000  # BAD\n", "restapi.request_queue_size",
     "5000 is out of range (0..4096)"},
    {"restapi:\n  listen: 127.0.0.1:8008\n  allowlist: {a: b}  # BAD\n", "restapi.allowlist",
     "expected a list or a comma-separated string, got a mapping"},
    {"restapi:\n  listen: 127.0.0.1:8008\n  allowlist_include_members: sure  # BAD\n",
     "restapi.allowlist_include_members", "expected a boolean (true/false, on/off, yes/no), got 'sure'"},
    {"restapi:\n  listen: 127.0.0.1:8008\n  http_extra_headers: [a]  # BAD\n", "restapi.http_extra_headers",
     "expected a mapping, got a list"},
    {"ctl:\n  insecure: maybe  # BAD\n", "ctl.insecure", "expected a boolean"},
    {"etcd3:\n  hosts: 127.0.0.1:2379\n  port: 70000  # BAD\n", "etcd3.port", "70000 is out of range (1..65535)"},
    {"etcd3:\n  hosts: 127.0.0.1:2379\n  port: abc  # BAD\n", "etcd3.port", "expected an integer, got 'abc'"},
    {"etcd3:\n  hosts: [127.0.0.1:2379, 'h:99999']  # BAD\n", "etcd3.hosts", "'h:99999' is not a valid host[:port]"},
    {"etcd3:\n  hosts: 127.0.0.1:2379\n  protocol: gopher  # BAD\n", "etcd3.protocol",
     "'gopher' is not one of: http, https"},
    {"etcd3:\n  url: ftp://127.0.0.1:2379  # BAD\n", "etcd3.url", "must start with http:// or https://"},
    {"etcd3:\n  port: 2379  # BAD\n", "etcd3", "one of 'host', 'hosts', 'url', 'proxy' or 'srv' is required"},
    {"etcd3:\n  host: 127.0.0.1:2379\n  use_proxies: 2  # BAD\n", "etcd3.use_proxies", "expected a boolean"},
    {BASE_PG "  pg_ctl_timeout: -5  # BAD\n", "postgresql.pg_ctl_timeout", "-5 is out of range (1..86400)"},
    {BASE_PG "  pg_ctl_timeout: 1.5  # BAD\n", "postgresql.pg_ctl_timeout", "expected an integer, got '1.5'"},
    {BASE_PG "  parameters:\n    - max_connections=100  # BAD\n", "postgresql.parameters",
     "expected a mapping, got a list"},
    {BASE_PG "  pg_hba: {a: b}  # BAD\n", "postgresql.pg_hba", "expected a list, got a mapping"},
    {BASE_PG "  use_unix_socket: maybe  # BAD\n", "postgresql.use_unix_socket", "expected a boolean"},
    {BASE_PG "  basebackup:\n    - format: tar  # BAD\n", "postgresql.basebackup", "option 'format' is set by pgha"},
    {BASE_PG "  create_replica_methods: [wal_g]\n  wal_g: /usr/bin/wal-g  # BAD\n", "postgresql.wal_g",
     "a replica method section must be a mapping, got a string"},
    {"postgresql:\n  listen: 127.0.0.1  # BAD\n  data_dir: /d\n  authentication:\n    superuser:\n"
     "      username: postgres\n    replication:\n      username: replicator\n",
     "postgresql.listen", "'127.0.0.1' is not a valid address[,address...]:port"},
    {"postgresql:\n  listen: 127.0.0.1:5432\n  data_dir: /d\n  authentication:\n    superuser:  # BAD\n"
     "      password: x\n    replication:\n      username: replicator\n",
     "postgresql.authentication.superuser.username", "is required"},
    {"watchdog:\n  mode: sometimes  # BAD\n", "watchdog.mode", "'sometimes' is not one of: off, automatic, required"},
    {"watchdog:\n  mode: automatic\n  safety_margin: -2  # BAD\n", "watchdog.safety_margin", "-2 is out of range"},
    {"tags:\n  nofailover: perhaps  # BAD\n", "tags.nofailover",
     "expected a boolean (true/false, on/off, yes/no), got 'perhaps'"},
    {"tags:\n  failover_priority: high  # BAD\n", "tags.failover_priority", "expected an integer, got 'high'"},
    {"tags: [nofailover]  # BAD\n", "tags", "expected a mapping, got a list"},
    {"log:\n  level: LOUD  # BAD\n", "log.level", "'LOUD' is not one of: DEBUG, INFO, WARNING, ERROR, CRITICAL"},
    {"log:\n  traceback_level: 99  # BAD\n", "log.traceback_level", "'99' is not one of"},
    {"log:\n  type: xml  # BAD\n", "log.type", "'xml' is not one of: plain, json"},
    {"log:\n  file_num: -1  # BAD\n", "log.file_num", "-1 is out of range"},
    {"log:\n  format: 12  # BAD\n", "log.format", "expected a string, a list or a mapping"},
    {"log:\n  static_fields: [a]  # BAD\n", "log.static_fields", "expected a mapping, got a list"},
    {"citus:\n  group: -1  # BAD\n", "citus.group", "-1 is out of range"},
    {"name: [a, b]  # BAD\n", "name", "expected a string, got a list"},
    {"name: a/b  # BAD\n", "name", "'a/b' must not contain '/'"},
    {"scope: ''  # BAD\n", "scope", "must not be empty"},
    {"namespace: {a: 1}  # BAD\n", "namespace", "expected a string, got a mapping"},
};

static void test_type_errors_name_file_line_and_path(void **state) {
    (void)state;
    for (size_t k = 0; k < ELEMENTSOF(type_errors); k++) {
        const ErrCase *c = &type_errors[k];
        _cleanup_free_ char *text = xasprintf("%s%s", BASE, c->text);
        int line = line_of(text, "# BAD");
        assert_true(line > 0);
        PghaConfig cfg;
        CfgDiag diag = {0};
        _cleanup_free_ char *path = NULL;
        int r = load_text(text, &cfg, &diag, &path);
        _cleanup_free_ char *want = xasprintf("%s:%d: %s: ", path, line, c->path);
        if (r != -EINVAL || diag.errors.n != 1 || !str_startswith(diag.errors.v[0], want) ||
            !strstr(diag.errors.v[0], c->fragment)) {
            print_error("case %zu (%s): r=%d, want one error starting '%s' and containing '%s'\n", k, c->path, r, want,
                        c->fragment);
            print_list("error", &diag.errors);
        }
        assert_int_equal(r, -EINVAL);
        assert_int_equal(diag.errors.n, 1);
        assert_true(str_startswith(diag.errors.v[0], want));
        assert_non_null(strstr(diag.errors.v[0], c->fragment));
        /* and nothing else: a rejected value does not leave a zero behind that other checks trip on */
        print_list("warning", &diag.warnings);
        assert_int_equal(diag.warnings.n, 0);
        config_free(&cfg);
        cfg_diag_clear(&diag);
    }

    /* a bad list item rejects the whole list, so no DCS host is left either: a second error */
    const char *text = BASE "etcd3:\n  hosts: [127.0.0.1:2379, [nested]]\n";
    PghaConfig cfg;
    CfgDiag diag = {0};
    _cleanup_free_ char *path = NULL;
    assert_int_equal(load_text(text, &cfg, &diag, &path), -EINVAL);
    assert_int_equal(diag.errors.n, 2);
    _cleanup_free_ char *want = xasprintf("%s:%d: etcd3.hosts: list item 1: expected a string, got a list", path,
                                          line_of(text, "[nested]"));
    assert_string_equal(diag.errors.v[0], want);
    assert_non_null(strstr(diag.errors.v[1], "etcd3: one of 'host', 'hosts', 'url', 'proxy' or 'srv' is required"));
    config_free(&cfg);
    cfg_diag_clear(&diag);
}

/* ---- missing keys and wrong shapes of the whole file ---- */

typedef struct MissingCase {
    const char *text;
    size_t nerrors;
    const char *fragments[3]; /* each must be in some error */
} MissingCase;

static const MissingCase missing_cases[] = {
    {BASE "name: null\n", 1, {"missing required key 'name'"}},
    {BASE "scope:\n", 1, {"missing required key 'scope'"}},
    {BASE "restapi:\n  connect_address: 127.0.0.1:8008\n", 1, {"missing required key 'restapi.listen'"}},
    {BASE "restapi: ~\n", 2, {"missing required key 'restapi'", "missing required key 'restapi.listen'"}},
    {BASE "postgresql:\n  listen: 127.0.0.1:5432\n  authentication:\n    superuser:\n      username: p\n"
          "    replication:\n      username: r\n",
     1,
     {"missing required key 'postgresql.data_dir'"}},
    {BASE "postgresql:\n  listen: 127.0.0.1:5432\n  data_dir: /d\n",
     1,
     {"missing required key 'postgresql.authentication'"}},
    {BASE_TOP BASE_RESTAPI BASE_PG, 1, {"missing required section 'etcd3'"}},
    {BASE_TOP BASE_RESTAPI BASE_PG "consul:\n  host: 127.0.0.1:8500\n",
     1,
     {"consul: pgha supports only the etcd3 DCS (etcd v3 API); use an 'etcd3' section instead"}},
    {BASE_TOP BASE_RESTAPI BASE_PG "etcd:\n  host: 127.0.0.1:2379\n", 1, {"etcd: pgha supports only the etcd3 DCS"}},
    {BASE "restapi: 127.0.0.1:8008\n",
     2,
     {"restapi: expected a mapping, got a string", "missing required key 'restapi.listen'"}},
};

static void test_missing_and_misshapen(void **state) {
    (void)state;
    for (size_t k = 0; k < ELEMENTSOF(missing_cases); k++) {
        const MissingCase *c = &missing_cases[k];
        PghaConfig cfg;
        CfgDiag diag = {0};
        _cleanup_free_ char *path = NULL;
        int r = load_text(c->text, &cfg, &diag, &path);
        if (r != -EINVAL || diag.errors.n != c->nerrors) {
            print_error("case %zu: r=%d\n", k, r);
            print_list("error", &diag.errors);
        }
        assert_int_equal(r, -EINVAL);
        assert_int_equal(diag.errors.n, c->nerrors);
        for (size_t i = 0; i < ELEMENTSOF(c->fragments) && c->fragments[i]; i++) {
            int at = find_entry_with(&diag.errors, c->fragments[i], (const char *)NULL);
            if (at < 0) {
                print_error("case %zu: no error contains '%s'\n", k, c->fragments[i]);
                print_list("error", &diag.errors);
            }
            assert_true(at >= 0);
            assert_true(str_startswith(diag.errors.v[at], path)); /* every message names the file */
        }
        config_free(&cfg);
        cfg_diag_clear(&diag);
    }
}

static void test_root_must_be_a_mapping(void **state) {
    (void)state;
    const struct {
        const char *text, *what;
    } cases[] = {{"- a\n- b\n", "got a list"}, {"just a string\n", "got a string"}, {"42\n", "got an integer"}};
    for (size_t k = 0; k < ELEMENTSOF(cases); k++) {
        PghaConfig cfg;
        CfgDiag diag = {0};
        _cleanup_free_ char *path = NULL;
        assert_int_equal(load_text(cases[k].text, &cfg, &diag, &path), -EINVAL);
        assert_int_equal(diag.errors.n, 1);
        _cleanup_free_ char *want = xasprintf("%s:1: the configuration must be a mapping", path);
        assert_true(str_startswith(diag.errors.v[0], want));
        assert_non_null(strstr(diag.errors.v[0], cases[k].what));
        config_free(&cfg);
        cfg_diag_clear(&diag);
    }

    /* an empty file is an empty mapping: every required key is missing */
    PghaConfig cfg;
    CfgDiag diag = {0};
    assert_int_equal(load_text("", &cfg, &diag, NULL), -EINVAL);
    assert_true(find_entry_with(&diag.errors, "missing required key 'name'", (const char *)NULL) >= 0);
    assert_true(find_entry_with(&diag.errors, "missing required section 'etcd3'", (const char *)NULL) >= 0);
    config_free(&cfg);
    cfg_diag_clear(&diag);

    /* invalid YAML: the parser's file:line, nothing else */
    _cleanup_free_ char *path = NULL;
    assert_int_equal(load_text(BASE "tags:\n  a: [1, 2\n", &cfg, &diag, &path), -EINVAL);
    assert_int_equal(diag.errors.n, 1);
    _cleanup_free_ char *want = xasprintf("%s:", path);
    assert_true(str_startswith(diag.errors.v[0], want));
    assert_non_null(strstr(diag.errors.v[0], "invalid YAML"));
    config_free(&cfg);
    cfg_diag_clear(&diag);

    /* not a mapping at all */
    assert_int_equal(config_from_tree(NULL, "x.yml", &cfg, &diag), -EINVAL);
    assert_string_equal(diag.errors.v[0], "x.yml: the configuration must be a mapping, got nothing");
    config_free(&cfg);
    cfg_diag_clear(&diag);
}

/* ---- unknown keys and other things worth a warning, not an error ---- */

static void test_unknown_keys_warn(void **state) {
    (void)state;
    const char *text = BASE_TOP "restapi:\n"
                                "  listen: 127.0.0.1:8008\n"
                                "  lisen: typo  # UNKNOWN1\n" BASE_ETCD3 "consul:  # CONSUL\n"
                                "  host: 127.0.0.1:8500\n"
                                "bootstrap:\n"
                                "  dcs:\n"
                                "    loop_wiat: 5  # UNKNOWN2\n"
                                "    postgresql:\n"
                                "      anything_goes: 1\n"
                                "  users:  # USERS\n"
                                "    admin: {password: x}\n"
                                "postgresql:\n"
                                "  listen: 127.0.0.1:5432\n"
                                "  data_dir: /d\n"
                                "  use_slots: false  # USESLOTS\n"
                                "  parameters:\n"
                                "    max_connections: 100  # GUC\n"
                                "    work_mem: 4MB\n"
                                "  authentication:\n"
                                "    superuser: {username: postgres}\n"
                                "    replication: {username: replicator}\n"
                                "    rewind: {username: rewinder, colour: blue}  # UNKNOWN3\n"
                                "  bin_name:\n"
                                "    pg_ctll: pg_ctl  # UNKNOWN5\n"
                                "  wal: {command: x}  # UNKNOWN6\n"
                                "  create_replica_methods: wal_g, basebackup\n"
                                "  wal_g: {command: wal-g}\n"
                                "foo:  # UNKNOWN4\n"
                                "  bar: 1\n";
    PghaConfig cfg;
    CfgDiag diag = {0};
    _cleanup_free_ char *path = NULL;
    int r = load_text(text, &cfg, &diag, &path);
    print_list("warning", &diag.warnings);
    print_list("error", &diag.errors);
    assert_int_equal(r, 0);
    assert_int_equal(diag.errors.n, 0);
    const struct {
        const char *marker, *path, *fragment;
    } want[] = {
        {"# UNKNOWN1", "restapi.lisen", "unknown configuration key, ignored"},
        {"# UNKNOWN2", "bootstrap.dcs.loop_wiat", "unknown configuration key, ignored"},
        {"# UNKNOWN3", "postgresql.authentication.rewind.colour", "unknown configuration key, ignored"},
        {"# UNKNOWN4", "foo", "unknown configuration key, ignored"},
        {"# UNKNOWN5", "postgresql.bin_name.pg_ctll", "unknown configuration key, ignored"},
        {"# UNKNOWN6", "postgresql.wal", "unknown configuration key, ignored"},
        {"# CONSUL", "consul", "pgha supports only the etcd3 DCS; this section is ignored"},
        {"# USERS", "bootstrap.users", "removed in Patroni 4.0"},
        {"# USESLOTS", "postgresql.use_slots", "taken only from the dynamic configuration"},
        {"# GUC", "postgresql.parameters", "'max_connections' is controlled by pgha"},
    };
    for (size_t i = 0; i < ELEMENTSOF(want); i++) {
        int line = line_of(text, want[i].marker);
        /* mappings start on their first key's line */
        if (strcmp(want[i].marker, "# CONSUL") == 0 || strcmp(want[i].marker, "# USERS") == 0 ||
            strcmp(want[i].marker, "# UNKNOWN4") == 0)
            line++;
        _cleanup_free_ char *prefix = xasprintf("%s:%d: %s: ", path, line, want[i].path);
        int at = find_entry_with(&diag.warnings, prefix, want[i].fragment, (const char *)NULL);
        if (at < 0)
            print_error("no warning '%s...%s'\n", prefix, want[i].fragment);
        assert_true(at >= 0);
    }
    assert_int_equal(diag.warnings.n, ELEMENTSOF(want));
    /* the unknown bootstrap.dcs key is still in what would be written to /config */
    assert_non_null(ynode_get(cfg.bootstrap.dcs, "loop_wiat"));
    config_free(&cfg);
    cfg_diag_clear(&diag);
}

static void test_custom_methods_are_not_unknown(void **state) {
    (void)state;
    const char *text = BASE_TOP BASE_RESTAPI BASE_ETCD3
        "bootstrap:\n"
        "  method: from_backup\n"
        "  from_backup:\n"
        "    command: /usr/local/bin/restore\n"
        "    keep_existing_recovery_conf: true\n"
        "    recovery_conf: {restore_command: cp x y}\n"
        "postgresql:\n"
        "  listen: '[::1],127.0.0.1:5432'\n"
        "  data_dir: /d\n"
        "  authentication: {superuser: {username: p}, replication: {username: r}}\n"
        "  create_replica_methods: [wal_g, basebackup]\n"
        "  wal_g:\n"
        "    command: wal-g backup-fetch\n"
        "    no_master: 1\n";
    PghaConfig cfg;
    CfgDiag diag = {0};
    assert_int_equal(load_text(text, &cfg, &diag, NULL), 0);
    assert_no_diag(&diag);
    assert_string_equal(cfg.bootstrap.method, "from_backup");
    assert_string_equal(ynode_get(cfg.bootstrap.method_section, "command")->text, "/usr/local/bin/restore");
    assert_int_equal(cfg.postgresql.create_replica_methods.n, 2);
    assert_string_equal(ynode_get_path(cfg.postgresql.replica_methods, "wal_g.command")->text, "wal-g backup-fetch");
    assert_null(ynode_get(cfg.postgresql.replica_methods, "basebackup"));
    config_free(&cfg);
    cfg_diag_clear(&diag);

    /* a listed method without a section: its command defaults to its name, with a warning */
    assert_int_equal(load_text(BASE "  create_replica_methods: wal_e\n", &cfg, &diag, NULL), 0);
    assert_int_equal(diag.warnings.n, 1);
    assert_non_null(strstr(diag.warnings.v[0], "method 'wal_e' has no 'postgresql.wal_e' section"));
    config_free(&cfg);
    cfg_diag_clear(&diag);
}

static void test_value_spellings(void **state) {
    (void)state;
    const struct {
        const char *yaml;
        int mode;
    } wd[] = {{"off", WATCHDOG_OFF},        {"false", WATCHDOG_OFF},         {"'off'", WATCHDOG_OFF},
              {"disabled", WATCHDOG_OFF},   {"Disable", WATCHDOG_OFF},       {"automatic", WATCHDOG_AUTOMATIC},
              {"auto", WATCHDOG_AUTOMATIC}, {"required", WATCHDOG_REQUIRED}, {"REQUIRE", WATCHDOG_REQUIRED}};
    for (size_t i = 0; i < ELEMENTSOF(wd); i++) {
        _cleanup_free_ char *text = xasprintf(BASE "watchdog:\n  mode: %s\n", wd[i].yaml);
        PghaConfig cfg;
        CfgDiag diag = {0};
        assert_int_equal(load_text(text, &cfg, &diag, NULL), 0);
        assert_int_equal(cfg.watchdog.mode, wd[i].mode);
        config_free(&cfg);
        cfg_diag_clear(&diag);
    }
    const struct {
        const char *yaml;
        int mode;
    } sm[] = {{"on", SYNC_ON}, {"true", SYNC_ON},       {"'yes'", SYNC_ON},
              {"1", SYNC_ON},  {"off", SYNC_OFF},       {"'FALSE'", SYNC_OFF},
              {"0", SYNC_OFF}, {"quorum", SYNC_QUORUM}, {"Quorum", SYNC_QUORUM}};
    for (size_t i = 0; i < ELEMENTSOF(sm); i++) {
        _cleanup_free_ char *text = xasprintf(BASE "bootstrap:\n  dcs:\n    synchronous_mode: %s\n", sm[i].yaml);
        PghaConfig cfg;
        CfgDiag diag = {0};
        assert_int_equal(load_text(text, &cfg, &diag, NULL), 0);
        assert_int_equal(cfg.bootstrap.dyn.synchronous_mode, sm[i].mode);
        config_free(&cfg);
        cfg_diag_clear(&diag);
    }
    /* quoted numbers, strings for booleans, and text kept as written for strings */
    PghaConfig cfg;
    CfgDiag diag = {0};
    assert_int_equal(load_text(BASE "restapi:\n  listen: 127.0.0.1:8008\n  authentication:\n"
                                    "    username: 0123\n    password: 1.50\n  request_queue_size: '7'\n"
                                    "  allowlist: 10.0.0.0/8, 127.0.0.1\n  allowlist_include_members: 'Yes'\n"
                                    "etcd3:\n  host: '[::1]:2379'\n  port: 0x95b\n"
                                    "tags:\n  nosync: 1\n  failover_priority: 0\n  zone: a\n",
                               &cfg, &diag, NULL),
                     0);
    assert_no_diag(&diag);
    assert_string_equal(cfg.restapi.username, "0123"); /* not 83 */
    assert_string_equal(cfg.restapi.password, "1.50"); /* not 1.5 */
    assert_int_equal(cfg.restapi.request_queue_size, 7);
    assert_int_equal(cfg.restapi.allowlist.n, 2);
    assert_string_equal(cfg.restapi.allowlist.v[1], "127.0.0.1");
    assert_true(cfg.restapi.allowlist_include_members);
    assert_string_equal(cfg.etcd3.host, "[::1]:2379");
    assert_int_equal(cfg.etcd3.port, 2395);
    assert_true(cfg.tags.nosync);
    /* failover_priority <= 0 without an explicit nofailover means nofailover */
    assert_true(cfg.tags.nofailover);
    assert_string_equal(ynode_get(cfg.tags.all, "zone")->text, "a");
    config_free(&cfg);
    cfg_diag_clear(&diag);

    /* an explicit nofailover wins over failover_priority, with a warning */
    assert_int_equal(load_text(BASE "tags:\n  nofailover: false\n  failover_priority: 0\n", &cfg, &diag, NULL), 0);
    assert_false(cfg.tags.nofailover);
    assert_int_equal(diag.warnings.n, 1);
    assert_non_null(strstr(diag.warnings.v[0], "nofailover=false contradicts failover_priority=0"));
    config_free(&cfg);
    cfg_diag_clear(&diag);

    /* sync_priority (Patroni 4.1): the same rules for nosync */
    assert_int_equal(load_text(BASE "tags:\n  sync_priority: 0\n", &cfg, &diag, NULL), 0);
    assert_no_diag(&diag);
    assert_true(cfg.tags.nosync);
    assert_int_equal(cfg.tags.sync_priority, 0);
    config_free(&cfg);
    assert_int_equal(load_text(BASE "tags:\n  sync_priority: 3\n", &cfg, &diag, NULL), 0);
    assert_no_diag(&diag);
    assert_false(cfg.tags.nosync);
    assert_int_equal(cfg.tags.sync_priority, 3);
    config_free(&cfg);
    assert_int_equal(load_text(BASE "tags:\n  nosync: true\n  sync_priority: 2\n", &cfg, &diag, NULL), 0);
    assert_true(cfg.tags.nosync);
    assert_int_equal(diag.warnings.n, 1);
    assert_non_null(strstr(diag.warnings.v[0], "nosync=true contradicts sync_priority=2"));
    config_free(&cfg);
    cfg_diag_clear(&diag);
    assert_int_equal(load_text(BASE "tags:\n  sync_priority: first  # BAD\n", &cfg, &diag, NULL), -EINVAL);
    config_free(&cfg);
    cfg_diag_clear(&diag);
}

/* ---- the timing rule (spec §4.1) ---- */

static void test_timing_rule_table(void **state) {
    (void)state;
    const struct {
        long long ttl, lw, rt;
        long long ttl2, lw2, rt2;
        size_t nwarn;
        const char *fragment;
    } cases[] = {
        /* valid values are left alone */
        {30, 10, 10, 30, 10, 10, 0, NULL},
        {20, 1, 3, 20, 1, 3, 0, NULL},
        {30, 4, 13, 30, 4, 13, 0, NULL},
        {100, 10, 45, 100, 10, 45, 0, NULL},
        /* minimums: loop_wait 1, retry_timeout 3, ttl 20 */
        {30, 0, 10, 30, 1, 10, 1, "loop_wait=0 can't be smaller than 1, the value is set to 1"},
        {30, 10, 2, 30, 10, 3, 1, "retry_timeout=2 can't be smaller than 3, the value is set to 3"},
        {10, 5, 5, 20, 5, 5, 1, "ttl=10 can't be smaller than 20, the value is set to 20"},
        {-5, -1, -1, 20, 1, 3, 3, "can't be smaller than"},
        /* loop_wait reduced first */
        {60, 10, 27, 60, 6, 27, 1,
         "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl=60 and retry_timeout=27. "
         "Adjusting loop_wait from 10 to 6"},
        {30, 10, 11, 30, 8, 11, 1, "Adjusting loop_wait from 10 to 8"},
        {100, 100, 3, 100, 94, 3, 1, "Adjusting loop_wait from 100 to 94"},
        /* even loop_wait 1 is too long: loop_wait 1, retry_timeout (ttl-1)//2 */
        {20, 10, 10, 20, 1, 9, 1,
         "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl=20. "
         "Adjusting loop_wait from 10 to 1 and retry_timeout from 10 to 9"},
        {30, 10, 15, 30, 1, 14, 1, "Adjusting loop_wait from 10 to 1 and retry_timeout from 15 to 14"},
        {31, 5, 16, 31, 1, 15, 1, "retry_timeout from 16 to 15"},
        {60, 1, 30, 60, 1, 29, 1, "retry_timeout from 30 to 29"},
        /* minimums first, then the rule */
        {5, 10, 10, 20, 1, 9, 2, "ttl=5 can't be smaller than 20"},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        long long ttl = cases[i].ttl, lw = cases[i].lw, rt = cases[i].rt;
        CfgDiag diag = {0};
        dyn_adjust_timeouts(&ttl, &lw, &rt, &diag);
        if (ttl != cases[i].ttl2 || lw != cases[i].lw2 || rt != cases[i].rt2 || diag.warnings.n != cases[i].nwarn) {
            print_error("case %zu: (%lld,%lld,%lld) -> (%lld,%lld,%lld)\n", i, cases[i].ttl, cases[i].lw, cases[i].rt,
                        ttl, lw, rt);
            print_list("warning", &diag.warnings);
        }
        assert_int_equal(ttl, cases[i].ttl2);
        assert_int_equal(lw, cases[i].lw2);
        assert_int_equal(rt, cases[i].rt2);
        assert_int_equal(diag.warnings.n, cases[i].nwarn);
        assert_int_equal(diag.errors.n, 0);
        assert_true(lw + 2 * rt <= ttl); /* the invariant the rule protects */
        if (cases[i].fragment)
            assert_true(find_entry_with(&diag.warnings, cases[i].fragment, (const char *)NULL) >= 0);
        cfg_diag_clear(&diag);
    }
}

static YNode *yaml(const char *text) {
    char *err = NULL;
    YNode *n = yaml_parse_string(text, strlen(text), "dyn", &err);
    assert_non_null(n);
    return n;
}

static void test_dyn_config_parse(void **state) {
    (void)state;
    DynConfig d;
    CfgDiag diag = {0};

    /* defaults */
    dyn_config_defaults(&d);
    assert_int_equal(d.ttl, 30);
    assert_int_equal(d.loop_wait, 10);
    assert_int_equal(d.retry_timeout, 10);
    assert_int_equal(d.maximum_lag_on_failover, 1048576);
    assert_int_equal(d.maximum_lag_on_syncnode, -1);
    assert_int_equal(d.max_timelines_history, 0);
    assert_int_equal(d.primary_start_timeout, 300);
    assert_int_equal(d.primary_stop_timeout, 0);
    assert_int_equal(d.synchronous_mode, SYNC_OFF);
    assert_int_equal(d.synchronous_node_count, 1);
    assert_int_equal(d.member_slots_ttl, 1800);
    assert_true(d.use_slots);
    assert_false(d.use_pg_rewind);
    assert_false(d.pause);
    assert_false(dyn_config_is_set(&d, "ttl"));
    dyn_config_free(&d);

    /* the adjusted values are what would be written to /config */
    YNode *o = yaml("ttl: 20\nloop_wait: 10\nretry_timeout: 10\nextra_key: kept\n");
    assert_int_equal(dyn_config_parse(o, &d, &diag), 0);
    assert_int_equal(d.loop_wait, 1);
    assert_int_equal(d.retry_timeout, 9);
    cJSON *j = ynode_to_json(d.raw);
    _cleanup_free_ char *js = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    assert_string_equal(js, "{\"ttl\":20,\"loop_wait\":1,\"retry_timeout\":9,\"extra_key\":\"kept\"}");
    assert_int_equal(ynode_get(o, "loop_wait")->i, 10); /* the input is not modified */
    assert_int_equal(diag.warnings.n, 2);               /* the rule, and the unknown key */
    assert_true(find_entry_with(&diag.warnings, "extra_key: unknown configuration key", (const char *)NULL) >= 0);
    dyn_config_free(&d);
    ynode_free(o);
    cfg_diag_clear(&diag);

    /* a minimum raised is written back too */
    o = yaml("ttl: 10\nretry_timeout: 3\n");
    assert_int_equal(dyn_config_parse(o, &d, &diag), 0);
    assert_int_equal(ynode_get(d.raw, "ttl")->i, 20);
    assert_null(ynode_get(d.raw, "loop_wait")); /* untouched values are not added */
    dyn_config_free(&d);
    ynode_free(o);
    cfg_diag_clear(&diag);

    /* legacy names are used only when the new one is absent */
    o = yaml("master_start_timeout: 120\nmaster_stop_timeout: 5\n");
    assert_int_equal(dyn_config_parse(o, &d, &diag), 0);
    assert_int_equal(d.primary_start_timeout, 120);
    assert_int_equal(d.primary_stop_timeout, 5);
    assert_true(dyn_config_is_set(&d, "primary_start_timeout"));
    assert_int_equal(diag.warnings.n, 0);
    dyn_config_free(&d);
    ynode_free(o);
    o = yaml("primary_start_timeout: 60\nmaster_start_timeout: 120\n");
    assert_int_equal(dyn_config_parse(o, &d, &diag), 0);
    assert_int_equal(d.primary_start_timeout, 60);
    dyn_config_free(&d);
    ynode_free(o);
    o = yaml("primary_start_timeout: 0\n");
    assert_int_equal(dyn_config_parse(o, &d, &diag), 0);
    assert_int_equal(d.primary_start_timeout, 0);
    dyn_config_free(&d);
    ynode_free(o);

    /* durations */
    const struct {
        const char *v;
        long long s;
    } durs[] = {{"90", 90},   {"'120'", 120}, {"90s", 90},   {"30min", 1800},
                {"2h", 7200}, {"1d", 86400},  {"1500ms", 1}, {"0", 0}};
    for (size_t i = 0; i < ELEMENTSOF(durs); i++) {
        _cleanup_free_ char *t = xasprintf("member_slots_ttl: %s\n", durs[i].v);
        o = yaml(t);
        assert_int_equal(dyn_config_parse(o, &d, &diag), 0);
        assert_int_equal(d.member_slots_ttl, durs[i].s);
        dyn_config_free(&d);
        ynode_free(o);
    }
    assert_int_equal(diag.warnings.n, 0);

    /* permanent slots: the first non-empty of the three names */
    o = yaml("permanent_replication_slots: {}\npermanent_slots:\n  s1: {type: physical}\nslots:\n  s2: null\n");
    assert_int_equal(dyn_config_parse(o, &d, &diag), 0);
    assert_non_null(ynode_get(d.slots, "s1"));
    assert_null(ynode_get(d.slots, "s2"));
    dyn_config_free(&d);
    ynode_free(o);
    o = yaml("slots:\n  s2: null\nignore_slots: [{name: x}]\nstandby_cluster: {host: h, port: 5432}\n"
             "check_timeline: on\nfailsafe_mode: yes\npause: true\n");
    assert_int_equal(dyn_config_parse(o, &d, &diag), 0);
    assert_non_null(ynode_get(d.slots, "s2"));
    assert_int_equal(d.ignore_slots->n, 1);
    assert_string_equal(ynode_get(d.standby_cluster, "host")->text, "h");
    assert_true(d.check_timeline && d.failsafe_mode && d.pause);
    dyn_config_free(&d);
    ynode_free(o);
    assert_int_equal(diag.warnings.n, 0);
    assert_int_equal(diag.errors.n, 0);

    /* not a mapping: an error, and the defaults */
    o = yaml("[1, 2]\n");
    assert_int_equal(dyn_config_parse(o, &d, &diag), -EINVAL);
    assert_int_equal(diag.errors.n, 1);
    assert_non_null(strstr(diag.errors.v[0], "the dynamic configuration must be a mapping"));
    assert_int_equal(d.ttl, 30);
    assert_non_null(d.raw);
    dyn_config_free(&d);
    ynode_free(o);
    cfg_diag_clear(&diag);
}

/* ---- environment overrides ---- */

static void test_env_overrides(void **state) {
    (void)state;
    const char *const env[] = {
        "PATRONI_NAME=node9",
        "PATRONI_RESTAPI_LISTEN=0.0.0.0:8010",
        "PATRONI_RESTAPI_USERNAME=admin",
        "PATRONI_RESTAPI_PASSWORD=apipass",
        "PATRONI_SUPERUSER_PASSWORD=s3cret",
        "PATRONI_REPLICATION_SSLMODE=require",
        "PATRONI_REWIND_CHANNEL_BINDING=require",
        "PATRONI_ETCD3_HOSTS=h1:2379,h2:2379",
        "PATRONI_LOG_LEVEL=DEBUG",
        "PATRONI_LOG_STATIC_FIELDS={app: pgha}",
        "PATRONI_LOG_FORMAT=[asctime, message]",
        "PATRONI_RESTAPI_ALLOWLIST_INCLUDE_MEMBERS=on",
        "PATRONI_RESTAPI_REQUEST_QUEUE_SIZE=10",
        "PATRONI_CTL_INSECURE=true",
        "PATRONI_POSTGRESQL_BIN_PG_ISREADY=my_isready",
        "PATRONI_TAGS_NOFAILOVER=true", /* no such variable: tags have none */
        "UNRELATED=1",
        NULL,
    };
    PghaConfig cfg;
    CfgDiag diag = {0};
    CfgSource src;
    _cleanup_free_ char *path = write_file(g_dir, "env.yml", BASE);
    cfg_source_init(&src, path, fake_getenv, (void *)env);
    assert_int_equal(config_load(&src, &cfg, &diag), 0);
    assert_no_diag(&diag);
    assert_string_equal(cfg.name, "node9");
    assert_string_equal(cfg.scope, "demo"); /* from the file */
    assert_string_equal(cfg.restapi.listen, "0.0.0.0:8010");
    assert_string_equal(cfg.restapi.username, "admin");
    assert_string_equal(cfg.restapi.password, "apipass");
    assert_string_equal(cfg.postgresql.superuser.username, "postgres"); /* merged, not replaced */
    assert_string_equal(cfg.postgresql.superuser.password, "s3cret");
    assert_string_equal(cfg.postgresql.replication.sslmode, "require");
    assert_string_equal(cfg.postgresql.rewind.channel_binding, "require");
    assert_int_equal(cfg.etcd3.hosts.n, 2);
    assert_string_equal(cfg.etcd3.hosts.v[0], "h1:2379");
    assert_string_equal(cfg.etcd3.hosts.v[1], "h2:2379");
    assert_string_equal(cfg.log.level, "DEBUG");
    assert_string_equal(ynode_get(cfg.log.static_fields, "app")->text, "pgha");
    assert_int_equal(cfg.log.format->type, Y_SEQ);
    assert_true(cfg.restapi.allowlist_include_members);
    assert_int_equal(cfg.restapi.request_queue_size, 10);
    assert_true(cfg.ctl.insecure);
    assert_string_equal(cfg.postgresql.bin_name.pg_isready, "my_isready");
    assert_false(cfg.tags.nofailover);

    /* what was used, and nothing else */
    assert_int_equal(src.env_consumed.n, 15);
    for (size_t i = 0; env[i]; i++) {
        _cleanup_free_ char *name = xstrndup(env[i], (size_t)(strchr(env[i], '=') - env[i]));
        bool used = strcmp(name, "PATRONI_TAGS_NOFAILOVER") != 0 && strcmp(name, "UNRELATED") != 0;
        assert_int_equal(strlist_contains(&src.env_consumed, name), used);
    }
    assert_null(src.env_configuration);
    config_free(&cfg);
    cfg_diag_clear(&diag);
    cfg_source_free(&src);
}

static void test_env_lists(void **state) {
    (void)state;
    const struct {
        const char *hosts;
        size_t n;
        const char *last;
    } forms[] = {
        {"h1:2379,h2:2379", 2, "h2:2379"},   {"h1:2379, h2:2379 ,h3", 3, "h3"}, {"[h1:2379, 'h2:2380']", 2, "h2:2380"},
        {"['[::1]:2379']", 1, "[::1]:2379"}, {"single:2379", 1, "single:2379"},
    };
    for (size_t i = 0; i < ELEMENTSOF(forms); i++) {
        _cleanup_free_ char *var = xasprintf("PATRONI_ETCD3_HOSTS=%s", forms[i].hosts);
        const char *const env[] = {var, "PATRONI_RESTAPI_ALLOWLIST=10.0.0.0/8,127.0.0.1", NULL};
        PghaConfig cfg;
        CfgDiag diag = {0};
        assert_int_equal(load_text_env("hosts.yml", BASE, env, &cfg, &diag, NULL), 0);
        assert_no_diag(&diag);
        assert_int_equal(cfg.etcd3.hosts.n, forms[i].n);
        assert_string_equal(cfg.etcd3.hosts.v[forms[i].n - 1], forms[i].last);
        assert_int_equal(cfg.restapi.allowlist.n, 2);
        config_free(&cfg);
        cfg_diag_clear(&diag);
    }
    /* the YAML form of the allowlist */
    const char *const env[] = {"PATRONI_RESTAPI_ALLOWLIST=[10.0.0.0/8, 127.0.0.1, localhost]", NULL};
    PghaConfig cfg;
    CfgDiag diag = {0};
    assert_int_equal(load_text_env("allow.yml", BASE, env, &cfg, &diag, NULL), 0);
    assert_int_equal(cfg.restapi.allowlist.n, 3);
    assert_string_equal(cfg.restapi.allowlist.v[2], "localhost");
    config_free(&cfg);
    cfg_diag_clear(&diag);
}

static void test_env_pgha_alias_wins(void **state) {
    (void)state;
    const char *const env[] = {"PATRONI_NAME=from-patroni", "PGHA_NAME=from-pgha", "PGHA_SCOPE=pgha-scope", NULL};
    PghaConfig cfg;
    CfgDiag diag = {0};
    CfgSource src;
    _cleanup_free_ char *path = write_file(g_dir, "alias.yml", BASE);
    cfg_source_init(&src, path, fake_getenv, (void *)env);
    assert_int_equal(config_load(&src, &cfg, &diag), 0);
    assert_string_equal(cfg.name, "from-pgha");
    assert_string_equal(cfg.scope, "pgha-scope");
    assert_true(strlist_contains(&src.env_consumed, "PATRONI_NAME"));
    assert_true(strlist_contains(&src.env_consumed, "PGHA_NAME"));
    assert_true(strlist_contains(&src.env_consumed, "PGHA_SCOPE"));
    assert_int_equal(src.env_consumed.n, 3);
    /* the value remembers which variable it came from */
    assert_string_equal(ynode_get(src.env_overlay, "name")->file, "environment variable PGHA_NAME");
    config_free(&cfg);
    cfg_diag_clear(&diag);
    cfg_source_free(&src);
}

static void test_env_etcd3_credentials_quirk(void **state) {
    (void)state;
    /* alone, PATRONI_ETCD3_USERNAME/PASSWORD are not read at all */
    const char *const alone[] = {"PATRONI_ETCD3_USERNAME=u", "PATRONI_ETCD3_PASSWORD=p", NULL};
    CfgSource src;
    PghaConfig cfg;
    CfgDiag diag = {0};
    _cleanup_free_ char *path = write_file(g_dir, "quirk.yml", BASE);
    cfg_source_init(&src, path, fake_getenv, (void *)alone);
    assert_int_equal(config_load(&src, &cfg, &diag), 0);
    assert_null(cfg.etcd3.username);
    assert_null(cfg.etcd3.password);
    assert_int_equal(src.env_consumed.n, 0);
    config_free(&cfg);
    cfg_source_free(&src);

    /* with another PATRONI_ETCD3_* variable they are */
    const char *const with[] = {"PATRONI_ETCD3_USERNAME=u", "PATRONI_ETCD3_PASSWORD=p", "PATRONI_ETCD3_PROTOCOL=https",
                                NULL};
    cfg_source_init(&src, path, fake_getenv, (void *)with);
    assert_int_equal(config_load(&src, &cfg, &diag), 0);
    assert_string_equal(cfg.etcd3.username, "u");
    assert_string_equal(cfg.etcd3.password, "p");
    assert_string_equal(cfg.etcd3.protocol, "https");
    assert_int_equal(src.env_consumed.n, 3);
    config_free(&cfg);
    cfg_source_free(&src);
    assert_no_diag(&diag);
}

static bool diag_has(const StrList *l, const char *fragment) {
    for (size_t i = 0; i < l->n; i++)
        if (strstr(l->v[i], fragment))
            return true;
    return false;
}

/* PATRONI_<user>_PASSWORD / _OPTIONS: Patroni's bootstrap.users, read, consumed and reported as ignored */
static void test_env_users(void **state) {
    (void)state;
    const char *const env[] = {
        "PATRONI_admin_PASSWORD=strongpasswd",
        "PATRONI_admin_OPTIONS=createrole,createdb",
        "PATRONI_APP_USER_PASSWORD=s3",
        "PATRONI_APP_USER_OPTIONS=[login]",
        "PATRONI_EMPTY_PASSWORD=",           /* no password: no user */
        "PATRONI_SUPERUSER_PASSWORD=su",     /* postgresql.authentication.superuser */
        "PATRONI_SUPERUSER_SSLPASSWORD=ssl", /* ditto */
        "PATRONI_RESTAPI_PASSWORD=api",      /* restapi.authentication */
        "PATRONI_ETCD3_PASSWORD=dcs",        /* alone: not read (the quirk), and never a user */
        "PATRONI__PASSWORD=x",               /* no user name */
        "OTHER_PASSWORD=y",
        NULL,
    };
    CfgSource src;
    PghaConfig cfg;
    CfgDiag diag = {0};
    _cleanup_free_ char *path = write_file(g_dir, "users.yml", BASE);
    cfg_source_init_env(&src, path, fake_getenv, fake_listenv, (void *)env);
    const YNode *users = ynode_get_path(src.env_overlay, "bootstrap.users");
    assert_non_null(users);
    assert_int_equal(users->n, 2);
    assert_string_equal(ynode_get_path(users, "admin.password")->text, "strongpasswd");
    const YNode *opts = ynode_get_path(users, "admin.options");
    assert_int_equal(opts->type, Y_SEQ);
    assert_int_equal(opts->n, 2);
    assert_string_equal(opts->items[1]->text, "createdb");
    assert_string_equal(ynode_get_path(users, "APP_USER.password")->text, "s3");
    assert_string_equal(ynode_get_path(users, "APP_USER.options")->items[0]->text, "login");
    for (const char *const *n = (const char *const[]){"PATRONI_admin_PASSWORD", "PATRONI_admin_OPTIONS",
                                                      "PATRONI_APP_USER_PASSWORD", "PATRONI_APP_USER_OPTIONS",
                                                      "PATRONI_SUPERUSER_PASSWORD", "PATRONI_RESTAPI_PASSWORD", NULL};
         *n; n++)
        assert_true(strlist_contains(&src.env_consumed, *n));
    assert_false(strlist_contains(&src.env_consumed, "PATRONI_ETCD3_PASSWORD"));
    assert_false(strlist_contains(&src.env_consumed, "PATRONI__PASSWORD"));
    assert_false(strlist_contains(&src.env_consumed, "PATRONI_EMPTY_PASSWORD"));
    /* Patroni 4 has no bootstrap.users: a warning says so, and the rest loads */
    assert_int_equal(config_load(&src, &cfg, &diag), 0);
    assert_int_equal(diag.errors.n, 0);
    assert_true(diag_has(&diag.warnings, "bootstrap.users was removed in Patroni 4.0 and is ignored"));
    assert_int_equal(diag.warnings.n, 1);
    assert_string_equal(cfg.postgresql.superuser.password, "su");
    assert_string_equal(cfg.restapi.password, "api");
    config_free(&cfg);
    cfg_diag_clear(&diag);
    cfg_source_free(&src);

    /* with a getter of its own and no lister, nothing is enumerated */
    cfg_source_init(&src, path, fake_getenv, (void *)env);
    assert_null(ynode_get_path(src.env_overlay, "bootstrap.users"));
    cfg_source_free(&src);
}

/* Patroni's generic PATRONI_<DCS>_<SUFFIX>: the other DCS sections exist, so pgha can say it does not
 * support them; unknown etcd3 suffixes become keys it warns about */
static void test_env_other_dcs(void **state) {
    (void)state;
    const char *const env[] = {
        "PATRONI_CONSUL_HOST=127.0.0.1:8500",
        "PATRONI_CONSUL_REGISTER_SERVICE=true",
        "PATRONI_CONSUL_CHECKS=a,b",
        "PATRONI_KUBERNETES_LABELS={app: pg}",
        "PATRONI_RAFT_SELF_ADDR=10.0.0.1:2222",
        "PATRONI_RAFT_PARTNER_ADDRS=10.0.0.2:2222,10.0.0.3:2222",
        "PATRONI_ETCD3_KEY_PASSWORD=kp",
        "PATRONI_CITUS_HOST=x", /* citus: GROUP and DATABASE only */
        "PATRONI_NOPE=1",
        NULL,
    };
    CfgSource src;
    PghaConfig cfg;
    CfgDiag diag = {0};
    _cleanup_free_ char *path = write_file(g_dir, "otherdcs.yml", BASE);
    cfg_source_init_env(&src, path, fake_getenv, fake_listenv, (void *)env);
    const YNode *o = src.env_overlay;
    assert_string_equal(ynode_get_path(o, "consul.host")->text, "127.0.0.1:8500");
    assert_int_equal(ynode_get_path(o, "consul.checks")->type, Y_SEQ);
    assert_int_equal(ynode_get_path(o, "consul.checks")->n, 2);
    assert_int_equal(ynode_get_path(o, "kubernetes.labels")->type, Y_MAP);
    assert_string_equal(ynode_get_path(o, "raft.self_addr")->text, "10.0.0.1:2222");
    assert_string_equal(ynode_get_path(o, "etcd3.key_password")->text, "kp");
    assert_null(ynode_get(o, "citus"));
    assert_false(strlist_contains(&src.env_consumed, "PATRONI_CITUS_HOST"));
    assert_false(strlist_contains(&src.env_consumed, "PATRONI_NOPE"));
    assert_true(strlist_contains(&src.env_consumed, "PATRONI_CONSUL_REGISTER_SERVICE"));
    /* the file has etcd3: the other sections are ignored with a warning each */
    assert_int_equal(config_load(&src, &cfg, &diag), 0);
    assert_true(diag_has(&diag.warnings, "consul: pgha supports only the etcd3 DCS; this section is ignored"));
    assert_true(diag_has(&diag.warnings, "kubernetes: pgha supports only the etcd3 DCS"));
    assert_true(diag_has(&diag.warnings, "raft: pgha supports only the etcd3 DCS"));
    assert_true(diag_has(&diag.warnings, "etcd3.key_password: unknown configuration key, ignored"));
    config_free(&cfg);
    cfg_diag_clear(&diag);
    cfg_source_free(&src);

    /* without an etcd3 section anywhere: an error naming the section */
    const char *const only[] = {"PATRONI_CONSUL_HOST=127.0.0.1:8500", NULL};
    _cleanup_free_ char *noetcd = write_file(g_dir, "noetcd.yml", BASE_TOP BASE_RESTAPI BASE_PG);
    cfg_source_init_env(&src, noetcd, fake_getenv, fake_listenv, (void *)only);
    assert_int_equal(config_load(&src, &cfg, &diag), -EINVAL);
    assert_true(diag_has(&diag.errors, "pgha supports only the etcd3 DCS (etcd v3 API)"));
    config_free(&cfg);
    cfg_diag_clear(&diag);
    cfg_source_free(&src);
}

static void test_env_configuration(void **state) {
    (void)state;
    _cleanup_free_ char *missing = xasprintf("%s/does-not-exist.yml", g_dir);
    const char *const env[] = {"PATRONI_CONFIGURATION=" BASE "tags:\n  zone: env\n", "PATRONI_NAME=from-var", NULL};
    CfgSource src;
    PghaConfig cfg;
    CfgDiag diag = {0};
    cfg_source_init(&src, missing, fake_getenv, (void *)env);
    assert_non_null(src.env_configuration);
    assert_true(strlist_contains(&src.env_consumed, "PATRONI_CONFIGURATION"));
    assert_int_equal(config_load(&src, &cfg, &diag), 0);
    assert_no_diag(&diag);
    assert_string_equal(cfg.name, "from-var"); /* the variables still override */
    assert_string_equal(cfg.scope, "demo");
    assert_string_equal(ynode_get(cfg.tags.all, "zone")->text, "env");
    config_free(&cfg);
    cfg_source_free(&src);

    /* errors inside it name the variable and the line */
    const char *const bad[] = {"PATRONI_CONFIGURATION=" BASE "log:\n  level: LOUD\n", NULL};
    cfg_source_init(&src, missing, fake_getenv, (void *)bad);
    assert_int_equal(config_load(&src, &cfg, &diag), -EINVAL);
    assert_int_equal(diag.errors.n, 1);
    _cleanup_free_ char *want = xasprintf("environment variable PATRONI_CONFIGURATION:%d: log.level: ",
                                          line_of(BASE "log:\n  level: LOUD\n", "LOUD"));
    assert_true(str_startswith(diag.errors.v[0], want));
    config_free(&cfg);
    cfg_source_free(&src);
    cfg_diag_clear(&diag);

    /* a file that exists wins over PATRONI_CONFIGURATION */
    _cleanup_free_ char *file = write_file(g_dir, "exists.yml", BASE "name: from-file\n");
    const char *const other[] = {"PATRONI_CONFIGURATION=" BASE "name: from-env\n", NULL};
    cfg_source_init(&src, file, fake_getenv, (void *)other);
    assert_int_equal(config_load(&src, &cfg, &diag), 0);
    assert_string_equal(cfg.name, "from-file");
    config_free(&cfg);
    cfg_source_free(&src);

    /* no file, no PATRONI_CONFIGURATION, no variables: an error naming the path */
    cfg_source_init(&src, missing, fake_getenv, (void *)no_env);
    assert_int_equal(config_load(&src, &cfg, &diag), -EINVAL);
    assert_int_equal(diag.errors.n, 1);
    _cleanup_free_ char *want2 = xasprintf("%s: no such file or directory", missing);
    assert_string_equal(diag.errors.v[0], want2);
    config_free(&cfg);
    cfg_source_free(&src);
    cfg_diag_clear(&diag);

    /* no path at all: the variables alone */
    const char *const vars[] = {"PATRONI_NAME=n",
                                "PATRONI_SCOPE=s",
                                "PATRONI_RESTAPI_LISTEN=127.0.0.1:8008",
                                "PATRONI_ETCD3_HOST=127.0.0.1:2379",
                                "PATRONI_POSTGRESQL_LISTEN=*:5432",
                                "PATRONI_POSTGRESQL_DATA_DIR=/d",
                                "PATRONI_SUPERUSER_USERNAME=postgres",
                                "PATRONI_REPLICATION_USERNAME=rep",
                                NULL};
    cfg_source_init(&src, NULL, fake_getenv, (void *)vars);
    assert_int_equal(config_load(&src, &cfg, &diag), 0);
    assert_no_diag(&diag);
    assert_string_equal(cfg.etcd3.host, "127.0.0.1:2379");
    assert_string_equal(cfg.postgresql.listen, "*:5432");
    config_free(&cfg);
    cfg_source_free(&src);
}

static void test_env_bad_values_name_the_variable(void **state) {
    (void)state;
    const struct {
        const char *var, *fragment;
    } cases[] = {
        {"PATRONI_ETCD3_PORT=abc",
         "environment variable PATRONI_ETCD3_PORT: etcd3.port: expected an integer, got 'abc'"},
        {"PATRONI_ETCD3_PORT=0", "environment variable PATRONI_ETCD3_PORT: etcd3.port: 0 is out of range"},
        {"PATRONI_RESTAPI_LISTEN=bogus",
         "environment variable PATRONI_RESTAPI_LISTEN: restapi.listen: 'bogus' is not a valid host:port"},
        {"PGHA_RESTAPI_REQUEST_QUEUE_SIZE=lots",
         "environment variable PGHA_RESTAPI_REQUEST_QUEUE_SIZE: restapi.request_queue_size: expected an integer"},
        {"PATRONI_RESTAPI_HTTP_EXTRA_HEADERS=not: [valid",
         "environment variable PATRONI_RESTAPI_HTTP_EXTRA_HEADERS: restapi.http_extra_headers: expected a mapping, "
         "got a string"},
        {"PATRONI_CTL_INSECURE=perhaps", "environment variable PATRONI_CTL_INSECURE: ctl.insecure: expected a boolean"},
        {"PATRONI_LOG_LEVEL=LOUD", "environment variable PATRONI_LOG_LEVEL: log.level: 'LOUD' is not one of"},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        const char *const env[] = {cases[i].var, NULL};
        PghaConfig cfg;
        CfgDiag diag = {0};
        int r = load_text_env("badenv.yml", BASE, env, &cfg, &diag, NULL);
        if (diag.errors.n != 1 || !strstr(diag.errors.v[0], cases[i].fragment)) {
            print_error("case %zu: want '%s'\n", i, cases[i].fragment);
            print_list("error", &diag.errors);
        }
        assert_int_equal(r, -EINVAL);
        assert_int_equal(diag.errors.n, 1);
        assert_true(str_startswith(diag.errors.v[0], cases[i].fragment));
        config_free(&cfg);
        cfg_diag_clear(&diag);
    }
}

/* ---- a directory of files ---- */

static void test_directory_config(void **state) {
    (void)state;
    _cleanup_free_ char *dir = xasprintf("%s/conf.d", g_dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    free(write_file(dir, "00-base.yml", BASE "tags:\n  nofailover: true\n  custom: x\n"));
    free(write_file(dir, "10-local.yml",
                    "name: node-last\npostgresql:\n  pgpass: /last/pgpass\ntags:\n  custom: null\n"));
    free(
        write_file(dir, "05-middle.yaml", "name: node-middle\npostgresql:\n  pgpass: /middle/pgpass\n  bin_dir: /b\n"));
    free(write_file(dir, "README.txt", "this: is: not: yaml\n"));
    _cleanup_free_ char *sub = xasprintf("%s/99-dir.yml", dir);
    assert_int_equal(mkdir(sub, 0700), 0); /* a directory named like a file is skipped */

    CfgSource src;
    PghaConfig cfg;
    CfgDiag diag = {0};
    cfg_source_init(&src, dir, fake_getenv, (void *)no_env);
    assert_int_equal(config_load(&src, &cfg, &diag), 0);
    assert_no_diag(&diag);
    assert_string_equal(cfg.source, dir);
    assert_string_equal(cfg.name, "node-last");                 /* later files win */
    assert_string_equal(cfg.postgresql.pgpass, "/last/pgpass"); /* nested keys merge */
    assert_string_equal(cfg.postgresql.bin_dir, "/b");          /* ... and keep the others */
    assert_string_equal(cfg.postgresql.data_dir, "/nonexistent/pgha-unit/data");
    assert_true(cfg.tags.nofailover);
    assert_null(ynode_get(cfg.tags.all, "custom")); /* null deletes */
    assert_int_equal(cfg.tags.all->n, 1);
    config_free(&cfg);

    /* an error in one file names that file */
    _cleanup_free_ char *bad = write_file(dir, "20-bad.yml", "restapi:\n  listen: [x]\n");
    assert_int_equal(config_load(&src, &cfg, &diag), -EINVAL);
    assert_int_equal(diag.errors.n, 1);
    _cleanup_free_ char *want = xasprintf("%s:2: restapi.listen: expected a string", bad);
    assert_true(str_startswith(diag.errors.v[0], want));
    config_free(&cfg);
    cfg_diag_clear(&diag);

    /* a file that is not a mapping, and one that is not YAML */
    free(write_file(dir, "20-bad.yml", "- a\n"));
    free(write_file(dir, "30-worse.yml", "a: [\n"));
    assert_int_equal(config_load(&src, &cfg, &diag), -EINVAL);
    assert_int_equal(diag.errors.n, 2);
    assert_true(find_entry_with(&diag.errors, "20-bad.yml:1: the configuration must be a mapping, got a list",
                                (const char *)NULL) >= 0);
    assert_true(find_entry_with(&diag.errors, "30-worse.yml:", "invalid YAML", (const char *)NULL) >= 0);
    config_free(&cfg);
    cfg_diag_clear(&diag);
    cfg_source_free(&src);

    /* a directory without YAML files */
    _cleanup_free_ char *empty = xasprintf("%s/empty.d", g_dir);
    assert_int_equal(mkdir(empty, 0700), 0);
    cfg_source_init(&src, empty, fake_getenv, (void *)no_env);
    assert_int_equal(config_load(&src, &cfg, &diag), -EINVAL);
    assert_true(find_entry_with(&diag.errors, "no *.yml or *.yaml files", (const char *)NULL) >= 0);
    config_free(&cfg);
    cfg_diag_clear(&diag);
    cfg_source_free(&src);
}

/* ---- diff and dump ---- */

static const CfgChange *find_change(const CfgChange *ch, size_t n, const char *path) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(ch[i].path, path) == 0)
            return &ch[i];
    return NULL;
}

static void test_config_diff(void **state) {
    (void)state;
    PghaConfig a, b;
    CfgDiag diag = {0};
    assert_int_equal(load_text(BASE, &a, &diag, NULL), 0);
    assert_int_equal(load_text(BASE, &b, &diag, NULL), 0);
    CfgChange *ch = NULL;
    assert_int_equal(config_diff(&a, &b, &ch), 0);
    config_changes_free(ch, 0);
    config_free(&b);

    assert_int_equal(load_text(BASE "name: node2\n"
                                    "restapi:\n  listen: 127.0.0.1:8009\n  connect_address: 127.0.0.1:8008\n"
                                    "postgresql:\n  listen: 127.0.0.1:5432\n  data_dir: /other\n"
                                    "  authentication:\n    superuser: {username: postgres, password: pw}\n"
                                    "    replication: {username: replicator}\n"
                                    "tags: {nosync: true}\n"
                                    "bootstrap: {dcs: {loop_wait: 5}}\n",
                               &b, &diag, NULL),
                     0);
    assert_no_diag(&diag);
    size_t n = config_diff(&a, &b, &ch);
    for (size_t i = 0; i < n; i++)
        print_error("%s: %s -> %s%s\n", ch[i].path, ch[i].old_value, ch[i].new_value,
                    ch[i].needs_restart ? " (restart)" : "");
    const CfgChange *c = find_change(ch, n, "name");
    assert_non_null(c);
    assert_string_equal(c->old_value, "node1");
    assert_string_equal(c->new_value, "node2");
    assert_true(c->needs_restart);
    c = find_change(ch, n, "restapi.listen");
    assert_non_null(c);
    assert_string_equal(c->old_value, "127.0.0.1:8008");
    assert_string_equal(c->new_value, "127.0.0.1:8009");
    assert_false(c->needs_restart);                             /* the REST server is restarted, not pgha */
    assert_null(find_change(ch, n, "restapi.connect_address")); /* derived before, explicit now: same value */
    c = find_change(ch, n, "postgresql.data_dir");
    assert_non_null(c);
    assert_true(c->needs_restart);
    c = find_change(ch, n, "postgresql.config_dir"); /* follows data_dir */
    assert_non_null(c);
    assert_true(c->needs_restart);
    c = find_change(ch, n, "postgresql.authentication.superuser.password");
    assert_non_null(c);
    assert_string_equal(c->old_value, "(unset)");
    assert_string_equal(c->new_value, "********"); /* secrets never appear in the log */
    assert_non_null(find_change(ch, n, "postgresql.authentication.rewind.password"));
    c = find_change(ch, n, "tags.nosync");
    assert_non_null(c);
    assert_string_equal(c->old_value, "false");
    assert_string_equal(c->new_value, "true");
    assert_false(c->needs_restart);
    assert_non_null(find_change(ch, n, "tags"));
    c = find_change(ch, n, "bootstrap.dcs");
    assert_non_null(c);
    assert_string_equal(c->old_value, "(unset)");
    assert_string_equal(c->new_value, "{\"loop_wait\":5}");
    assert_null(find_change(ch, n, "scope"));
    assert_null(find_change(ch, n, "postgresql.listen"));
    assert_int_equal(n, 9);
    config_changes_free(ch, n);
    config_free(&a);
    config_free(&b);
    cfg_diag_clear(&diag);
}

static void test_config_dump(void **state) {
    (void)state;
    PghaConfig cfg;
    CfgDiag diag = {0};
    assert_int_equal(load_seed(SEED_FIXTURE("ptrn-1.yml"), &cfg, &diag), 0);
    _cleanup_free_ char *masked = config_dump(&cfg, false);
    _cleanup_free_ char *clear = config_dump(&cfg, true);
    assert_non_null(strstr(masked, "name: \"ptrn-1\"\n"));
    assert_non_null(strstr(masked, "restapi.authentication.username: \"patroni\"\n"));
    assert_non_null(strstr(masked, "restapi.authentication.password: \"********\"\n"));
    assert_non_null(strstr(masked, "postgresql.authentication.superuser.password: \"********\"\n"));
    assert_non_null(strstr(masked, "postgresql.authentication.replication.password: \"********\"\n"));
    assert_null(strstr(masked, "123456"));
    assert_non_null(strstr(masked, "etcd3.hosts: [192.168.2.96:2379, 192.168.2.91:2379, 192.168.2.98:2379]\n"));
    assert_non_null(strstr(masked, "watchdog.mode: off\n"));
    assert_non_null(strstr(masked, "bootstrap.dcs: {\"ttl\":60,\"loop_wait\":6,"));
    assert_non_null(strstr(clear, "restapi.authentication.password: \"123456\"\n"));
    assert_non_null(strstr(clear, "postgresql.authentication.superuser.password: \"123456\"\n"));
    /* keys neither given nor defaulted are not shown as if they were set (citus would be enabled) */
    assert_null(strstr(masked, "citus.group"));
    assert_null(strstr(masked, "log.mode"));
    assert_null(strstr(masked, "restapi.certfile"));

    /* the dump is YAML: it parses, and says what the configuration says */
    char *err = NULL;
    YNode *back = yaml_parse_string(clear, strlen(clear), "dump", &err);
    assert_non_null(back);
    assert_string_equal(ynode_get(back, "name")->text, "ptrn-1");
    assert_int_equal(ynode_get(back, "restapi.request_queue_size")->i, 128);
    assert_int_equal(ynode_get_path(ynode_get(back, "bootstrap.dcs"), "loop_wait")->i, 6);
    assert_string_equal(ynode_get(back, "postgresql.listen")->text, "192.168.2.96,127.0.0.1:5432");
    ynode_free(back);
    config_free(&cfg);
    cfg_diag_clear(&diag);

    /* with log.mode and citus given, they are shown */
    assert_int_equal(load_text(BASE "log:\n  mode: 0640\ncitus:\n  group: 0\n  database: citus\n", &cfg, &diag, NULL),
                     0);
    _cleanup_free_ char *d2 = config_dump(&cfg, false);
    assert_non_null(strstr(d2, "log.mode: 416\n"));
    assert_non_null(strstr(d2, "citus.group: 0\n"));
    config_free(&cfg);
    cfg_diag_clear(&diag);
}

/* ---- host:port, listen, slot names ---- */

static void test_parse_host_port(void **state) {
    (void)state;
    const struct {
        const char *s;
        int def;
        const char *host;
        int port;
    } ok[] = {
        {"127.0.0.1:8008", -1, "127.0.0.1", 8008},
        {"db.example.com:5432", -1, "db.example.com", 5432},
        {"[::1]:8008", -1, "::1", 8008},
        {"[fe80::1%eth0]:2379", -1, "fe80::1%eth0", 2379},
        {"[::1]", 2379, "::1", 2379},
        {"::1", 2379, "::1", 2379},
        {"etcd1", 2379, "etcd1", 2379},
        {"etcd1:65535", 2379, "etcd1", 65535},
        {"*:8008", -1, "*", 8008},
        {":8008", -1, "", 8008},
    };
    for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
        char *host = NULL;
        int port = 0;
        int r = parse_host_port(ok[i].s, ok[i].def, &host, &port);
        if (r != 0)
            print_error("'%s' rejected\n", ok[i].s);
        assert_int_equal(r, 0);
        assert_string_equal(host, ok[i].host);
        assert_int_equal(port, ok[i].port);
        free(host);
    }
    const struct {
        const char *s;
        int def;
    } bad[] = {
        {"", 2379},     {NULL, 2379},   {"etcd1", -1},  {"h:0", -1},      {"h:65536", -1}, {"h:-1", -1},
        {"h:abc", -1},  {"h:", -1},     {"[::1", 2379}, {"[::1]x", 2379}, {"[::1]:", -1},  {"a b:80", -1},
        {"a,b:80", -1}, {"h/x:80", -1}, {"h:80x", -1},  {"h: 80", -1},
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        char *host = (char *)"untouched";
        int port = 42;
        int r = parse_host_port(bad[i].s, bad[i].def, &host, &port);
        if (r != -EINVAL)
            print_error("'%s' accepted\n", bad[i].s ? bad[i].s : "(null)");
        assert_int_equal(r, -EINVAL);
        assert_string_equal(host, "untouched"); /* outputs untouched on failure */
        assert_int_equal(port, 42);
    }
}

static void test_parse_listen(void **state) {
    (void)state;
    const struct {
        const char *s;
        int port;
        size_t n;
        const char *addr[3];
    } ok[] = {
        {"192.168.2.96,127.0.0.1:5432", 5432, 2, {"192.168.2.96", "127.0.0.1"}},
        {"192.168.2.96, 127.0.0.1 :5432", 5432, 2, {"192.168.2.96", "127.0.0.1"}},
        {"127.0.0.1:5432", 5432, 1, {"127.0.0.1"}},
        {"*:5432", 5432, 1, {"*"}},
        {":5433", 5433, 1, {"*"}},
        {"[::1]:5432", 5432, 1, {"::1"}},
        {"[::1],127.0.0.1,[fe80::2]:6432", 6432, 3, {"::1", "127.0.0.1", "fe80::2"}},
        {"0.0.0.0,::,localhost:5432", 5432, 3, {"0.0.0.0", "::", "localhost"}},
    };
    for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
        StrList l = {0};
        int port = 0;
        int r = parse_listen(ok[i].s, &l, &port);
        if (r != 0)
            print_error("'%s' rejected\n", ok[i].s);
        assert_int_equal(r, 0);
        assert_int_equal(port, ok[i].port);
        assert_int_equal(l.n, ok[i].n);
        for (size_t k = 0; k < l.n; k++)
            assert_string_equal(l.v[k], ok[i].addr[k]);
        strlist_clear(&l);
    }
    const char *bad[] = {
        "",      NULL,       "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:pg",
        "[::1]", "a b:5432", "a/b:5432"};
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        StrList l = {0};
        int port = 42;
        int r = parse_listen(bad[i], &l, &port);
        if (r != -EINVAL)
            print_error("'%s' accepted\n", bad[i] ? bad[i] : "(null)");
        assert_int_equal(r, -EINVAL);
        assert_int_equal(l.n, 0);
        assert_int_equal(port, 42);
    }
}

static void test_slot_names(void **state) {
    (void)state;
    const struct {
        const char *member, *slot;
    } cases[] = {
        {"ptrn-1", "ptrn_1"},
        {"node-1.a", "node_1_a"},
        {"Node@", "nodeu0064"},
        {"UPPER_case", "upper_case"},
        {"a b", "au0032b"},
        {"x:y/z", "xu0058yu0047z"},
        {"caf\xc3\xa9", "cafu0233"},     /* é is one code point */
        {"\xe2\x82\xac", "u8364"},       /* € */
        {"\xf0\x9f\x98\x80", "u128512"}, /* more than four digits stay as they are */
        {"", ""},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        _cleanup_free_ char *s = slot_name_from_member_name(cases[i].member);
        assert_string_equal(s, cases[i].slot);
    }
    /* truncated to 63 characters, after the substitutions */
    char longname[101];
    memset(longname, 'a', 100);
    longname[100] = '\0';
    _cleanup_free_ char *s = slot_name_from_member_name(longname);
    assert_int_equal(strlen(s), 63);
    memset(longname, '@', 20);
    longname[20] = '\0';
    _cleanup_free_ char *s2 = slot_name_from_member_name(longname); /* 20 x "u0064" = 100 chars */
    assert_int_equal(strlen(s2), 63);
    assert_true(str_startswith(s2, "u0064u0064"));
    assert_string_equal(s2 + 60, "u00");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base_is_valid),
        cmocka_unit_test(test_seed_ptrn1),
        cmocka_unit_test(test_seed_ptrn2),
        cmocka_unit_test(test_seed_fixtures_differ_only_where_expected),
        cmocka_unit_test(test_type_errors_name_file_line_and_path),
        cmocka_unit_test(test_missing_and_misshapen),
        cmocka_unit_test(test_root_must_be_a_mapping),
        cmocka_unit_test(test_unknown_keys_warn),
        cmocka_unit_test(test_custom_methods_are_not_unknown),
        cmocka_unit_test(test_value_spellings),
        cmocka_unit_test(test_timing_rule_table),
        cmocka_unit_test(test_dyn_config_parse),
        cmocka_unit_test(test_env_overrides),
        cmocka_unit_test(test_env_lists),
        cmocka_unit_test(test_env_pgha_alias_wins),
        cmocka_unit_test(test_env_etcd3_credentials_quirk),
        cmocka_unit_test(test_env_users),
        cmocka_unit_test(test_env_other_dcs),
        cmocka_unit_test(test_env_configuration),
        cmocka_unit_test(test_env_bad_values_name_the_variable),
        cmocka_unit_test(test_directory_config),
        cmocka_unit_test(test_config_diff),
        cmocka_unit_test(test_config_dump),
        cmocka_unit_test(test_parse_host_port),
        cmocka_unit_test(test_parse_listen),
        cmocka_unit_test(test_slot_names),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
