/* dcs_reload() (src/dcs/etcd3.c): new etcd3 endpoints, credentials or TLS files make the client drop its
 * token and connection and take the new settings; its lease and member key stay. Nothing changed: nothing
 * is touched. Settings that cannot be used: the running client stays. No etcd runs: the new endpoint
 * refuses connections (a reload that reaches no etcd behaves like an outage). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "unit_helpers.h"

#include "dcs/dcs.h"
#include "dcs/etcd3_int.h"

static void test_reload_swaps_settings_and_keeps_the_lease(void **state) {
    (void)state;
    PghaConfig c1, c2, c3, c4;
    load_config(&c1, "node1", NULL);
    char *err = NULL;
    Dcs *d = dcs_new(&c1, &err);
    assert_non_null(d);
    dcs_set_timings(d, 10, 2, 1);
    d->token = xstrdup("old-token");
    d->lease_id = 42;
    d->member_value = xstrdup("{\"state\":\"running\"}");
    d->member_lease = 42;

    /* the same settings: nothing is touched */
    assert_int_equal(dcs_reload(d, &c1), 0);
    assert_string_equal(d->token, "old-token");
    assert_int_equal(d->configured.n, 1);
    assert_string_equal(d->configured.v[0], "http://127.0.0.1:2379");

    /* new hosts, credentials and TLS files (https from cacert): taken, the token dropped, the lease kept */
    load_config(&c2, "node1",
                "etcd3:\n  hosts: [127.0.0.1:1, 127.0.0.1:2]\n  username: pgha\n  password: secret\n"
                "  cacert: /nonexistent/ca.crt\n");
    assert_int_equal(dcs_reload(d, &c2), 0);
    assert_int_equal(d->configured.n, 2);
    assert_string_equal(d->configured.v[0], "https://127.0.0.1:1");
    assert_string_equal(d->configured.v[1], "https://127.0.0.1:2");
    assert_true(strlist_equal(&d->endpoints, &d->configured));
    assert_string_equal(d->protocol, "https");
    assert_string_equal(d->username, "pgha");
    assert_string_equal(d->password, "secret");
    assert_string_equal(d->cacert, "/nonexistent/ca.crt");
    assert_null(d->token);
    assert_int_equal(d->lease_id, 42);
    assert_int_equal(d->member_lease, 42);
    assert_string_equal(d->member_value, "{\"state\":\"running\"}");

    /* settings that cannot be used: refused, the running client stays as it is */
    load_config(&c3, "node1", "etcd3:\n  srv: etcd.example.com\n");
    assert_int_equal(dcs_reload(d, &c3), -EINVAL);
    load_config(&c4, "node1", "etcd3:\n  host: 127.0.0.1:1\n  hosts: []\n  proxy: http://127.0.0.1:3\n");
    assert_int_equal(dcs_reload(d, &c4), 0); /* a proxy: no member discovery, one more endpoint */
    assert_true(d->use_proxies);
    assert_int_equal(d->configured.n, 2);
    assert_string_equal(d->configured.v[0], "http://127.0.0.1:3");
    assert_string_equal(d->configured.v[1], "http://127.0.0.1:1");
    assert_null(d->username); /* taken away too */
    assert_int_equal(dcs_reload(d, &c2), 0);
    assert_int_equal(d->configured.n, 2);
    assert_string_equal(d->configured.v[0], "https://127.0.0.1:1");
    assert_string_equal(d->username, "pgha");
    assert_int_equal(d->lease_id, 42);

    d->lease_id = 0; /* dcs_free() would revoke it */
    dcs_free(d);
    config_free(&c1);
    config_free(&c2);
    config_free(&c3);
    config_free(&c4);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reload_swaps_settings_and_keeps_the_lease),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
