/* agent: load at startup, and SIGHUP's reload — validate, then swap; on any error keep the
 * running configuration, count the failure and say why. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "agent/agent.h"
#include "unit_helpers.h"

extern char **environ;

static char *g_dir;
static char *g_path;
static StrList g_msgs;  /* messages the logger emitted */
static StrList g_lines; /* ... as formatted */

static void sink(LogLevel level, const char *message, const char *line, void *userdata) {
    (void)level;
    (void)userdata;
    strlist_add(&g_msgs, message);
    strlist_add(&g_lines, line);
}

/* The agent reads the real environment: make sure nothing from outside leaks in. */
static void clear_patroni_env(void) {
    StrList names = {0};
    for (char **e = environ; *e; e++)
        if (str_startswith(*e, "PATRONI_") || str_startswith(*e, "PGHA_")) {
            _cleanup_free_ char *name = xstrndup(*e, strcspn(*e, "="));
            strlist_add(&names, name);
        }
    for (size_t i = 0; i < names.n; i++)
        unsetenv(names.v[i]);
    strlist_clear(&names);
    unsetenv("NOTIFY_SOCKET"); /* sd_notify goes nowhere */
}

static int setup(void **state) {
    (void)state;
    clear_patroni_env();
    g_dir = tmpdir_make();
    if (!g_dir)
        return -1;
    g_path = xasprintf("%s/patroni.yml", g_dir);
    log_reset();
    log_set_sink(sink, NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    log_set_sink(NULL, NULL);
    log_reset();
    strlist_clear(&g_msgs);
    strlist_clear(&g_lines);
    free(g_path);
    g_path = NULL;
    g_dir = tmpdir_remove(g_dir);
    return 0;
}

#define GOOD                                                      \
    "scope: demo\n"                                               \
    "name: node1\n"                                               \
    "restapi:\n"                                                  \
    "  listen: 127.0.0.1:8008\n"                                  \
    "  authentication: {username: patroni, password: '123456'}\n" \
    "etcd3:\n"                                                    \
    "  hosts: 127.0.0.1:2379,127.0.0.1:2380\n"                    \
    "bootstrap:\n"                                                \
    "  dcs: {ttl: 60, loop_wait: 10, retry_timeout: 27}\n"        \
    "postgresql:\n"                                               \
    "  listen: 127.0.0.1:5432\n"                                  \
    "  data_dir: /nonexistent/pgha-unit/data\n"                   \
    "  authentication:\n"                                         \
    "    superuser: {username: postgres, password: 123456}\n"     \
    "    replication: {username: replicator, password: rep}\n"    \
    "tags:\n"                                                     \
    "  nosync: false\n"

static void put_config(const char *text) { free(write_file(g_dir, "patroni.yml", text)); }

static bool logged(const char *a, const char *b) { return find_entry_with(&g_msgs, a, b, (const char *)NULL) >= 0; }

static void start(Agent *a, const char *text) {
    put_config(text);
    int r = agent_init(a, g_path);
    print_list("log", &g_msgs);
    assert_int_equal(r, 0);
    assert_int_equal(a->reloads, 0);
    assert_int_equal(a->failed_reloads, 0);
    strlist_clear(&g_msgs);
    strlist_clear(&g_lines);
}

static void test_good_reload_swaps(void **state) {
    (void)state;
    Agent a;
    start(&a, GOOD);
    assert_string_equal(a.cfg.name, "node1");
    assert_string_equal(a.cfg.restapi.listen, "127.0.0.1:8008");
    assert_int_equal(a.cfg.bootstrap.dyn.loop_wait, 6);

    /* nothing changed */
    assert_int_equal(agent_reload(&a), 0);
    assert_int_equal(a.reloads, 1);
    assert_true(logged("Reloading configuration from ", g_path));
    assert_true(logged("configuration reloaded, nothing changed", NULL));

    /* a reloadable change */
    put_config(GOOD "restapi:\n  listen: 127.0.0.1:8009\n  authentication: {username: patroni, password: changed}\n"
                    "tags:\n  nosync: true\n");
    assert_int_equal(agent_reload(&a), 0);
    assert_int_equal(a.reloads, 2);
    assert_int_equal(a.failed_reloads, 0);
    assert_string_equal(a.cfg.restapi.listen, "127.0.0.1:8009");
    assert_string_equal(a.cfg.restapi.password, "changed");
    assert_true(a.cfg.tags.nosync);
    assert_true(logged("configuration changed: restapi.listen: 127.0.0.1:8008 -> 127.0.0.1:8009", NULL));
    assert_true(logged("configuration changed: restapi.authentication.password: ******** -> ********", NULL));
    assert_true(logged("configuration changed: tags.nosync: false -> true", NULL));
    assert_false(logged("changed", "takes effect after a restart"));
    assert_int_equal(find_entry_with(&g_lines, "123456", (const char *)NULL), -1); /* no secret in any line */

    /* a change that needs a restart of pgha says so */
    put_config(GOOD "name: node2\n");
    assert_int_equal(agent_reload(&a), 0);
    assert_int_equal(a.reloads, 3);
    assert_true(logged("configuration changed: name: node1 -> node2 (takes effect after a restart of pgha)", NULL));
    assert_true(logged("some changes need a restart of pgha", NULL));

    /* the log section is applied on reload */
    assert_int_equal(log_get_level(), LOG_INFO);
    put_config(GOOD "log:\n  level: WARNING\n");
    assert_int_equal(agent_reload(&a), 0);
    assert_int_equal(log_get_level(), LOG_WARNING);
    agent_done(&a);
}

typedef struct BadCase {
    const char *what;
    const char *text;   /* NULL: remove the file */
    const char *reason; /* what the log must say */
} BadCase;

static void test_bad_reload_keeps_old_config(void **state) {
    (void)state;
    const BadCase bad[] = {
        {"invalid YAML", GOOD "tags:\n  nosync: [true\n", "invalid YAML"},
        {"a type error", GOOD "restapi:\n  listen: [127.0.0.1:8009]\n",
         "restapi.listen: expected a string, got a list"},
        {"an out-of-range value", GOOD "bootstrap:\n  dcs: {ttl: abc}\n", "bootstrap.dcs.ttl: expected an integer"},
        {"a missing key", GOOD "name: ~\n", "missing required key 'name'"},
        {"a bad log level", GOOD "log:\n  level: LOUD\n", "log.level: 'LOUD' is not one of"},
        {"not a mapping", "- just\n- a list\n", "the configuration must be a mapping"},
        {"a removed file", NULL, "no such file or directory"},
    };
    Agent a;
    start(&a, GOOD "log:\n  level: DEBUG\n");
    assert_int_equal(log_get_level(), LOG_DEBUG);
    _cleanup_free_ char *before = config_dump(&a.cfg, true);

    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        strlist_clear(&g_msgs);
        strlist_clear(&g_lines);
        if (bad[i].text)
            put_config(bad[i].text);
        else
            assert_int_equal(unlink(g_path), 0);
        int r = agent_reload(&a);
        if (r != -EINVAL || !logged(bad[i].reason, NULL)) {
            print_error("%s: r=%d\n", bad[i].what, r);
            print_list("log", &g_msgs);
        }
        assert_int_equal(r, -EINVAL);
        assert_int_equal(a.failed_reloads, i + 1);
        assert_int_equal(a.reloads, 0);
        /* every old value is still there */
        _cleanup_free_ char *after = config_dump(&a.cfg, true);
        assert_string_equal(after, before);
        assert_string_equal(a.cfg.name, "node1");
        assert_string_equal(a.cfg.restapi.listen, "127.0.0.1:8008");
        assert_int_equal(a.cfg.bootstrap.dyn.ttl, 60);
        assert_int_equal(a.cfg.bootstrap.dyn.loop_wait, 6);
        assert_int_equal(log_get_level(), LOG_DEBUG); /* the log settings too */
        /* the log says why, names the file, and says what happens */
        assert_true(logged(bad[i].reason, NULL));
        if (bad[i].text)
            assert_true(logged(g_path, bad[i].reason));
        assert_true(logged("new configuration is invalid; keeping the running configuration", NULL));
        assert_true(find_entry_with(&g_lines, " ERROR: new configuration is invalid; keeping the running configuration",
                                    (const char *)NULL) >= 0);
    }

    /* a good file again is taken */
    put_config(GOOD "name: node3\n");
    assert_int_equal(agent_reload(&a), 0);
    assert_int_equal(a.reloads, 1);
    assert_int_equal(a.failed_reloads, ELEMENTSOF(bad));
    /* a new name needs a restart of pgha: the running value stays, the log says so */
    assert_string_equal(a.cfg.name, "node1");
    assert_true(logged("configuration changed: name: node1 -> node3 (takes effect after a restart of pgha)", NULL));
    assert_int_equal(log_get_level(), LOG_INFO); /* the new file has no log section */
    agent_done(&a);
}

static void test_reload_sees_the_startup_environment(void **state) {
    (void)state;
    setenv("PATRONI_NAME", "from-env", 1);
    setenv("PGHA_RESTAPI_LISTEN", "127.0.0.1:8010", 1);
    Agent a;
    start(&a, GOOD);
    assert_string_equal(a.cfg.name, "from-env");
    assert_string_equal(a.cfg.restapi.listen, "127.0.0.1:8010");
    /* consumed variables are removed, so they do not reach PostgreSQL or callbacks */
    assert_null(getenv("PATRONI_NAME"));
    assert_null(getenv("PGHA_RESTAPI_LISTEN"));
    assert_true(strlist_contains(&a.source.env_consumed, "PATRONI_NAME"));
    /* ... and a reload still applies them */
    put_config(GOOD "name: from-file\n");
    assert_int_equal(agent_reload(&a), 0);
    assert_string_equal(a.cfg.name, "from-env");
    assert_string_equal(a.cfg.restapi.listen, "127.0.0.1:8010");
    agent_done(&a);
}

static void test_init_rejects_bad_config(void **state) {
    (void)state;
    put_config(GOOD "etcd3:\n  hosts: 127.0.0.1:2379\n  port: 70000\n");
    Agent a;
    assert_int_equal(agent_init(&a, g_path), -EINVAL);
    assert_true(logged(g_path, "etcd3.port: 70000 is out of range (1..65535)"));
    assert_true(logged("invalid configuration in ", "; not starting"));
    agent_done(&a);

    _cleanup_free_ char *missing = xasprintf("%s/missing.yml", g_dir);
    assert_int_equal(agent_init(&a, missing), -EINVAL);
    assert_true(logged(missing, "no such file or directory"));
    agent_done(&a);
}

static void test_log_settings_from_config(void **state) {
    (void)state;
    Agent a;
    start(&a, GOOD);
    LogSettings s;
    agent_log_settings(&a.cfg, &s);
    assert_false(s.json);
    assert_int_equal(s.level, LOG_INFO);
    assert_null(s.format);
    assert_null(s.dir);
    assert_int_equal(s.file_num, 4);
    assert_int_equal(s.file_size, 25000000);
    assert_int_equal(s.mode, -1); /* not given: leave the umask alone */
    agent_done(&a);

    _cleanup_free_ char *text = xasprintf(GOOD "log:\n  type: json\n  level: debug\n  format: '%%(message)s'\n"
                                               "  dateformat: '%%H:%%M'\n  dir: %s/log\n  file_num: 2\n"
                                               "  file_size: 1000\n  mode: 0640\n",
                                          g_dir);
    start(&a, text);
    agent_log_settings(&a.cfg, &s);
    assert_true(s.json);
    assert_int_equal(s.level, LOG_DEBUG);
    assert_string_equal(s.format, "%(message)s");
    assert_string_equal(s.dateformat, "%H:%M");
    _cleanup_free_ char *logdir = xasprintf("%s/log", g_dir);
    assert_string_equal(s.dir, logdir);
    assert_int_equal(s.file_num, 2);
    assert_int_equal(s.file_size, 1000);
    assert_int_equal(s.mode, 0640);
    /* agent_init applied it: the log goes to the file, as json */
    log_warning("to the file");
    log_reset();
    _cleanup_free_ char *logfile = xasprintf("%s/patroni.log", logdir);
    _cleanup_free_ char *content = read_file(logfile);
    assert_non_null(content);
    assert_non_null(strstr(content, "{\"message\":\"to the file\"}\n"));
    agent_done(&a);
}

/* The REST server's answer to a reload (main.c: rest_reload()): what it was handed, and what it answers. */
typedef struct FakeRest {
    int answer;
    unsigned calls;
    char listen[64];
} FakeRest;

static int fake_rest_reload(void *ctx, const PghaConfig *cfg) {
    FakeRest *f = ctx;
    f->calls++;
    snprintf(f->listen, sizeof f->listen, "%s", cfg->restapi.listen);
    return f->answer;
}

static void test_rest_server_refusal_keeps_its_keys(void **state) {
    (void)state;
    Agent a;
    start(&a, GOOD);
    FakeRest rest = {.answer = 0};
    a.on_reload = fake_rest_reload;
    a.on_reload_ctx = &rest;

    /* the REST server moved: the new listen address (and the connect address derived from it) apply, and no
     * restart of pgha is asked for the REST keys */
    put_config(GOOD "restapi:\n  listen: 127.0.0.1:8009\n  certfile: /etc/pgha/server.crt\n"
                    "  verify_client: optional\n  request_queue_size: 16\n");
    assert_int_equal(agent_reload(&a), 0);
    assert_int_equal(rest.calls, 1);
    assert_string_equal(rest.listen, "127.0.0.1:8009");
    assert_string_equal(a.cfg.restapi.listen, "127.0.0.1:8009");
    assert_string_equal(a.cfg.restapi.connect_address, "127.0.0.1:8009");
    assert_string_equal(a.cfg.restapi.certfile, "/etc/pgha/server.crt");
    assert_false(logged("changed", "takes effect after a restart"));
    assert_false(logged("keeps its previous listen address", NULL));

    /* it could not (address in use, a bad certificate): the keys of its socket and TLS keep their running
     * values (the member key goes on advertising where the API answers), everything else applies */
    strlist_clear(&g_msgs);
    rest.answer = -1;
    put_config(GOOD "restapi:\n  listen: 127.0.0.1:8010\n  connect_address: 10.0.0.1:8010\n"
                    "  authentication: {username: patroni, password: changed}\n"
                    "tags:\n  nosync: true\n");
    assert_int_equal(agent_reload(&a), 0);
    assert_int_equal(rest.calls, 2);
    assert_string_equal(rest.listen, "127.0.0.1:8010");
    assert_true(logged("the REST API keeps its previous listen address and TLS settings", NULL));
    assert_string_equal(a.cfg.restapi.listen, "127.0.0.1:8009");
    assert_string_equal(a.cfg.restapi.connect_address, "127.0.0.1:8009");
    assert_string_equal(a.cfg.restapi.certfile, "/etc/pgha/server.crt");
    assert_int_equal(a.cfg.restapi.verify_client, VERIFY_OPTIONAL);
    assert_int_equal(a.cfg.restapi.request_queue_size, 16);
    assert_string_equal(a.cfg.restapi.password, "changed");
    assert_true(a.cfg.tags.nosync);

    /* the etcd3 keys reload (the HA loop hands them to the etcd client, dcs_reload(), which tests them before it
     * takes them): no restart asked, the new values in force in the configuration; etcd3.srv still needs one */
    strlist_clear(&g_msgs);
    FakeRest rest2 = {.answer = 0};
    a.on_reload_ctx = &rest2;
    put_config(GOOD "etcd3:\n  hosts: [127.0.0.1:2381]\n  username: pgha\n  password: etcdpw\n  srv: etcd.example\n");
    assert_int_equal(agent_reload(&a), 0);
    assert_true(
        logged("configuration changed: etcd3.hosts: [127.0.0.1:2379, 127.0.0.1:2380] -> [127.0.0.1:2381]", NULL));
    assert_true(logged("configuration changed: etcd3.username: (unset) -> pgha", NULL));
    assert_false(logged("etcd3.hosts", "takes effect after a restart"));
    assert_false(logged("etcd3.username", "takes effect after a restart"));
    assert_false(logged("etcd3.password", "takes effect after a restart"));
    assert_true(
        logged("configuration changed: etcd3.srv: (unset) -> etcd.example (takes effect after a restart of pgha)",
               NULL));
    assert_int_equal(rest2.calls, 1);
    assert_int_equal(a.cfg.etcd3.hosts.n, 1);
    assert_string_equal(a.cfg.etcd3.username, "pgha");
    assert_null(a.cfg.etcd3.srv);
    assert_int_equal(find_entry_with(&g_lines, "etcdpw", (const char *)NULL), -1);
    agent_done(&a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_good_reload_swaps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_reload_keeps_old_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_sees_the_startup_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_rejects_bad_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_settings_from_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rest_server_refusal_keeps_its_keys, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
