/* REST API access control (spec §2.1): allowlist matching, the access decision, the Server header. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "restapi/access.h"

static Acl acl_of(const char *const *entries) {
    Acl acl = {0};
    for (size_t i = 0; entries[i]; i++) {
        char *err = NULL;
        assert_int_equal(acl_add(&acl, entries[i], &err), 0);
        assert_null(err);
    }
    return acl;
}

static void test_acl_ipv4(void **state) {
    (void)state;
    Acl acl = acl_of((const char *const[]){"10.0.0.0/8", "192.168.1.7", "172.16.5.4/12", " 127.0.0.1 ", NULL});
    assert_true(acl_match_text(&acl, "10.1.2.3"));
    assert_true(acl_match_text(&acl, "10.255.255.255"));
    assert_false(acl_match_text(&acl, "11.0.0.1"));
    assert_true(acl_match_text(&acl, "192.168.1.7"));
    assert_false(acl_match_text(&acl, "192.168.1.8"));
    /* host bits of a network are ignored (ip_network(strict=False)) */
    assert_true(acl_match_text(&acl, "172.31.0.1"));
    assert_false(acl_match_text(&acl, "172.32.0.1"));
    assert_true(acl_match_text(&acl, "127.0.0.1"));
    assert_false(acl_match_text(&acl, "127.0.0.2"));
    /* an IPv4-mapped IPv6 client (dual-stack socket) matches the IPv4 entries */
    assert_true(acl_match_text(&acl, "::ffff:10.9.8.7"));
    assert_false(acl_match_text(&acl, "::ffff:127.0.0.2"));
    assert_false(acl_match_text(&acl, "::1"));
    assert_false(acl_match_text(&acl, "not an address"));
    acl_clear(&acl);
}

static void test_acl_ipv6_and_prefixes(void **state) {
    (void)state;
    Acl acl = acl_of((const char *const[]){"fd00::/8", "2001:db8:1::/48", "[::1]", "192.0.2.0/25", NULL});
    assert_true(acl_match_text(&acl, "fd12:3456::1"));
    assert_false(acl_match_text(&acl, "fe80::1"));
    assert_true(acl_match_text(&acl, "2001:db8:1:ffff::1"));
    assert_false(acl_match_text(&acl, "2001:db8:2::1"));
    assert_true(acl_match_text(&acl, "::1"));
    assert_false(acl_match_text(&acl, "::2"));
    assert_true(acl_match_text(&acl, "192.0.2.127"));
    assert_false(acl_match_text(&acl, "192.0.2.128"));
    assert_false(acl_match_text(&acl, "10.0.0.1"));
    acl_clear(&acl);

    /* /0 matches every address of its family; a 0-entry list nothing */
    Acl all4 = acl_of((const char *const[]){"0.0.0.0/0", NULL});
    assert_true(acl_match_text(&all4, "203.0.113.9"));
    assert_false(acl_match_text(&all4, "2001:db8::1"));
    acl_clear(&all4);
    Acl empty = {0};
    assert_false(acl_match_text(&empty, "127.0.0.1"));

    /* a sockaddr as MHD gives it */
    Acl lo = acl_of((const char *const[]){"127.0.0.0/30", NULL});
    struct sockaddr_in sin = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.3", &sin.sin_addr);
    assert_true(acl_match(&lo, (struct sockaddr *)&sin));
    inet_pton(AF_INET, "127.0.0.4", &sin.sin_addr);
    assert_false(acl_match(&lo, (struct sockaddr *)&sin));
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6.sin6_addr);
    assert_true(acl_match(&lo, (struct sockaddr *)&sin6));
    assert_false(acl_match(&lo, NULL));
    acl_clear(&lo);
}

static void test_acl_invalid_and_hosts(void **state) {
    (void)state;
    const char *bad[] = {"10.0.0.0/33", "::/129", "10.0.0.0/x", "10.0.0.0/", "/8", "", "host.invalid./24", NULL};
    for (size_t i = 0; bad[i]; i++) {
        Acl acl = {0};
        char *err = NULL;
        assert_int_equal(acl_add(&acl, bad[i], &err), -EINVAL);
        assert_non_null(err);
        free(err);
        acl_clear(&acl);
    }
    /* a host name is resolved when added */
    Acl acl = acl_of((const char *const[]){"localhost", NULL});
    assert_true(acl_match_text(&acl, "127.0.0.1") || acl_match_text(&acl, "::1"));
    acl_clear(&acl);

    /* members' api_url hosts */
    Acl m = {0};
    assert_int_equal(acl_add_url_host(&m, "http://127.0.0.5:8008/patroni"), 0);
    assert_int_equal(acl_add_url_host(&m, "https://[fd00::7]:8009/patroni"), 0);
    assert_int_equal(acl_add_url_host(&m, "https://user:pw@10.1.1.1:8008/patroni"), 0);
    assert_int_equal(acl_add_url_host(&m, "http://:8008/patroni"), -EINVAL);
    assert_int_equal(acl_add_url_host(&m, NULL), -EINVAL);
    assert_true(acl_match_text(&m, "127.0.0.5"));
    assert_true(acl_match_text(&m, "fd00::7"));
    assert_true(acl_match_text(&m, "10.1.1.1"));
    assert_false(acl_match_text(&m, "127.0.0.1"));
    acl_clear(&m);
}

static void test_ct_streq(void **state) {
    (void)state;
    assert_true(ct_streq("secret", "secret"));
    assert_true(ct_streq("", ""));
    assert_false(ct_streq("secret", "secreT"));
    assert_false(ct_streq("secret", "secret2"));
    assert_false(ct_streq("secret2", "secret"));
    assert_false(ct_streq("", "x"));
    assert_false(ct_streq(NULL, "x"));
    assert_false(ct_streq("x", NULL));
}

static void test_access_decide_order(void **state) {
    (void)state;
    const char *reason = "unset";
    AccessRequest r = {0};
    /* nothing configured: allowed */
    assert_int_equal(access_decide(&r, &reason), 0);
    assert_null(reason);

    /* allowlist first: outside it, nothing else counts */
    r = (AccessRequest){.allowlist_active = true,
                        .client_allowed = false,
                        .https = true,
                        .verify_client = VERIFY_OPTIONAL,
                        .auth_username = "u",
                        .auth_password = "p"};
    assert_int_equal(access_decide(&r, &reason), 403);
    assert_string_equal(reason, "Access is denied");

    /* then the client certificate (https, optional or required) */
    r.client_allowed = true;
    assert_int_equal(access_decide(&r, &reason), 403);
    assert_string_equal(reason, "client certificate required");
    r.verify_client = VERIFY_REQUIRED;
    assert_int_equal(access_decide(&r, &reason), 403);
    /* not over plain HTTP, not with verify_client: none */
    r.https = false;
    assert_int_equal(access_decide(&r, &reason), 401);
    r.https = true;
    r.verify_client = VERIFY_NONE;
    assert_int_equal(access_decide(&r, &reason), 401);
    r.verify_client = VERIFY_REQUIRED;
    r.client_cert_valid = true;

    /* then Basic authentication */
    assert_int_equal(access_decide(&r, &reason), 401);
    assert_string_equal(reason, "no auth header received");
    r.auth_header_present = true; /* present but not Basic, or malformed: nothing decoded */
    assert_int_equal(access_decide(&r, &reason), 401);
    assert_string_equal(reason, "not authenticated");
    r.username = "u";
    r.password = "wrong";
    assert_int_equal(access_decide(&r, &reason), 401);
    assert_string_equal(reason, "not authenticated");
    r.username = "U";
    r.password = "p";
    assert_int_equal(access_decide(&r, &reason), 401);
    r.username = "u";
    assert_int_equal(access_decide(&r, &reason), 0);
    assert_null(reason);
}

static void test_access_decide_auth_only(void **state) {
    (void)state;
    const char *reason = NULL;
    AccessRequest r = {.auth_username = "admin", .auth_password = "pa:ss"};
    assert_int_equal(access_decide(&r, &reason), 401);
    assert_string_equal(reason, "no auth header received");
    r.auth_header_present = true;
    r.username = "admin";
    r.password = "pa:ss";
    assert_int_equal(access_decide(&r, &reason), 0);
    r.password = "pa";
    assert_int_equal(access_decide(&r, &reason), 401);
    /* no password configured: the empty password */
    r.auth_password = NULL;
    r.password = "";
    assert_int_equal(access_decide(&r, &reason), 0);
    /* no authentication configured: any header is ignored */
    r = (AccessRequest){.auth_header_present = true, .username = "x", .password = "y"};
    assert_int_equal(access_decide(&r, &reason), 0);
}

static void test_failsafe_post_skips_member_allowlist(void **state) {
    (void)state;
    assert_false(rest_access_checks_members("POST", "/failsafe"));
    assert_true(rest_access_checks_members("GET", "/failsafe"));
    assert_true(rest_access_checks_members("POST", "/switchover"));
    assert_false(rest_access_checks_members("POST", "/failsafe/x")); /* routed to /failsafe too */
    assert_true(rest_access_checks_members("POST", "/failsafex"));
    assert_true(rest_access_checks_members(NULL, NULL));
}

static void test_server_header(void **state) {
    (void)state;
    assert_string_equal(server_header_value(NULL), "pgha/" PGHA_VERSION);
    assert_string_equal(server_header_value("Original"), "pgha/" PGHA_VERSION);
    assert_string_equal(server_header_value("ProductOnly"), "Patroni");
    assert_string_equal(server_header_value("productonly"), "Patroni");
    assert_string_equal(server_header_value("MINIMAL"), "Patroni/" PGHA_PATRONI_VERSION);
    assert_null(server_header_value("full"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acl_ipv4),
        cmocka_unit_test(test_acl_ipv6_and_prefixes),
        cmocka_unit_test(test_acl_invalid_and_hosts),
        cmocka_unit_test(test_ct_streq),
        cmocka_unit_test(test_access_decide_order),
        cmocka_unit_test(test_access_decide_auth_only),
        cmocka_unit_test(test_server_header),
        cmocka_unit_test(test_failsafe_post_skips_member_allowlist),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
