/* dcs_reload() (src/dcs/etcd3_reload.c): new etcd3 settings are tested on a side connection by the client's
 * own thread and swapped in only when they work and reach the etcd cluster the client already talks to; the
 * lease and member key stay. Wrong credentials, unreachable endpoints and another etcd cluster leave the
 * running client as it is, with the reason logged. dcs_reload() itself does no network I/O.
 *
 * The etcd servers here are small HTTP servers (libmicrohttpd) that answer the few requests of the test the
 * way etcd's JSON gateway does: /version, /v3/auth/authenticate, /v3/kv/range, /v3/kv/txn, /v3/lease/grant,
 * /v3/lease/keepalive and /v3/cluster/member/list, each with the header of their cluster id; they count what they were asked. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "unit_helpers.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "dcs/dcs.h"
#include "dcs/etcd3_int.h"

/* ---- a small etcd ---- */

typedef struct FakeEtcd {
    struct MHD_Daemon *mhd;
    int port;
    char url[64];
    char hostport[64];
    const char *cluster_id; /* as etcd writes it: a decimal string */
    const char *password;   /* authentication on, user "pgha" with this password; NULL: off */
    long delay_ms;          /* every answer this late */
    const char *peer;       /* the client URL of another member, listed in the member list; NULL: none */
    bool read_only;         /* the user may read, not write (a txn is refused: permission denied) */
    long member_delay_ms;   /* the member list this late */
    int auth_code;          /* authenticate answers this gRPC error (4: a leader election's timeout); 0: none */
    bool keepalive_down;    /* the keepalive answers the gateway's stream error: Unavailable (gRPC code 14) */
    _Atomic int arrivals;   /* requests come in (counted before the delay) */
    _Atomic int versions, auths, ranges, keepalives, member_lists, txns, grants;
} FakeEtcd;

typedef struct Upload {
    StrBuf body;
} Upload;

/* Unary errors as etcd 3.6's grpc-gateway v2 writes them: {"code": .., "message": ..}, no "error" field. */
static _Atomic bool v36_errors;

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status, char *json) {
    const char *cut = v36_errors && status >= 400 ? strstr(json, "{\"error\":\"") : NULL;
    if (cut == json) { /* drop `"error":"...",` */
        const char *code = strstr(json, ",\"code\":");
        if (code) {
            char *v2 = xasprintf("{%s", code + 1);
            free(json);
            json = v2;
        }
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, "Content-Type", "application/json");
    enum MHD_Result r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

static char *header(const FakeEtcd *e) {
    return xasprintf("\"header\":{\"cluster_id\":\"%s\",\"member_id\":\"1\",\"revision\":\"7\",\"raft_term\":\"2\"}",
                     e->cluster_id);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    (void)version;
    FakeEtcd *e = cls;
    Upload *up = *con_cls;
    if (!up) {
        up = xcalloc(1, sizeof *up);
        sb_init(&up->body);
        *con_cls = up;
        return MHD_YES;
    }
    if (*upload_size) {
        sb_addn(&up->body, upload_data, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    e->arrivals++;
    if (e->delay_ms)
        usleep((useconds_t)e->delay_ms * 1000);
    const char *body = up->body.s ? up->body.s : "";
    _cleanup_free_ char *hdr = header(e);
    const char *token = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    bool token_ok = !e->password || (token && streq(token, "tok-pgha"));
    if (streq(method, "GET") && streq(url, "/version")) {
        e->versions++;
        return answer(conn, 200, xstrdup("{\"etcdserver\":\"3.4.30\",\"etcdcluster\":\"3.4.0\"}"));
    }
    if (streq(url, "/v3/auth/authenticate")) {
        e->auths++;
        if (e->auth_code)
            return answer(conn, 503,
                          xasprintf("{\"error\":\"etcdserver: request timed out\",\"code\":%d,"
                                    "\"message\":\"etcdserver: request timed out\"}",
                                    e->auth_code));
        if (!e->password)
            return answer(conn, 400,
                          xstrdup("{\"error\":\"etcdserver: authentication is not enabled\",\"code\":9,"
                                  "\"message\":\"etcdserver: authentication is not enabled\"}"));
        _cleanup_free_ char *good = xasprintf("{\"name\":\"pgha\",\"password\":\"%s\"}", e->password);
        if (!streq(body, good))
            return answer(conn, 400,
                          xstrdup("{\"error\":\"etcdserver: authentication failed, invalid user ID or password\","
                                  "\"code\":3,\"message\":\"etcdserver: authentication failed, invalid user ID or "
                                  "password\"}"));
        return answer(conn, 200, xasprintf("{%s,\"token\":\"tok-pgha\"}", hdr));
    }
    if (!token_ok && !token)
        return answer(conn, 400,
                      xstrdup("{\"error\":\"etcdserver: user name is empty\",\"code\":3,"
                              "\"message\":\"etcdserver: user name is empty\"}"));
    if (!token_ok)
        return answer(conn, 401,
                      xstrdup("{\"error\":\"etcdserver: invalid auth token\",\"code\":16,"
                              "\"message\":\"etcdserver: invalid auth token\"}"));
    if (streq(url, "/v3/kv/range")) {
        e->ranges++;
        return answer(conn, 200, xasprintf("{%s,\"count\":\"0\"}", hdr));
    }
    if (streq(url, "/v3/kv/txn")) {
        e->txns++;
        if (e->read_only)
            return answer(conn, 403,
                          xstrdup("{\"error\":\"etcdserver: permission denied\",\"code\":7,"
                                  "\"message\":\"etcdserver: permission denied\"}"));
        return answer(conn, 200, xasprintf("{%s,\"succeeded\":false}", hdr));
    }
    if (streq(url, "/v3/lease/grant")) {
        e->grants++;
        return answer(conn, 200, xasprintf("{%s,\"ID\":\"77\",\"TTL\":\"10\"}", hdr));
    }
    if (streq(url, "/v3/lease/keepalive")) {
        e->keepalives++;
        if (e->keepalive_down) /* a stream's error: an object, no top-level code */
            return answer(conn, 200,
                          xstrdup("{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"etcdserver: no "
                                  "leader\",\"http_status\":\"Service Unavailable\"}}"));
        return answer(conn, 200, xasprintf("{\"result\":{%s,\"ID\":\"42\",\"TTL\":\"10\"}}", hdr));
    }
    if (streq(url, "/v3/cluster/member/list")) {
        e->member_lists++;
        if (e->member_delay_ms)
            usleep((useconds_t)e->member_delay_ms * 1000);
        _cleanup_free_ char *peer = e->peer
                                        ? xasprintf(",{\"ID\":\"2\",\"name\":\"f\",\"clientURLs\":[\"%s\"]}", e->peer)
                                        : xstrdup("");
        return answer(conn, 200,
                      xasprintf("{%s,\"members\":[{\"ID\":\"1\",\"name\":\"e\",\"clientURLs\":[\"%s\"]}%s]}", hdr,
                                e->url, peer));
    }
    return answer(conn, 404, xstrdup("{\"error\":\"not found\",\"code\":5,\"message\":\"not found\"}"));
}

static void request_done(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode t) {
    (void)cls;
    (void)conn;
    (void)t;
    Upload *up = *con_cls;
    if (up) {
        sb_free(&up->body);
        free(up);
    }
    *con_cls = NULL;
}

static void fake_start_on(FakeEtcd *e, const char *cluster_id, const char *password, int port) {
    *e = (FakeEtcd){.cluster_id = cluster_id, .password = password};
    e->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG, 0,
                              NULL, NULL, handler, e, MHD_OPTION_NOTIFY_COMPLETED, request_done, NULL,
                              MHD_OPTION_SOCK_ADDR,
                              (struct sockaddr *)&(struct sockaddr_in){.sin_family = AF_INET,
                                                                       .sin_port = htons((uint16_t)port),
                                                                       .sin_addr.s_addr = htonl(INADDR_LOOPBACK)},
                              MHD_OPTION_END);
    assert_non_null(e->mhd);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(e->mhd, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(info);
    e->port = info->port;
    snprintf(e->url, sizeof e->url, "http://127.0.0.1:%d", e->port);
    snprintf(e->hostport, sizeof e->hostport, "127.0.0.1:%d", e->port);
}

static void fake_start(FakeEtcd *e, const char *cluster_id, const char *password) {
    fake_start_on(e, cluster_id, password, 0);
}

/* A port that accepts connections (the kernel's backlog) and never answers: its socket, *ret_port. */
static int silent_port(int *ret_port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *ret_port = ntohs(a.sin_port);
    return fd;
}

static void fake_stop(FakeEtcd *e) {
    if (e->mhd)
        MHD_stop_daemon(e->mhd);
    e->mhd = NULL;
}

/* ---- the log (written by the client's test thread too) ---- */

static pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;
static StrList g_msgs;

static void sink(LogLevel level, const char *message, const char *line, void *ud) {
    (void)level;
    (void)line;
    (void)ud;
    pthread_mutex_lock(&g_log_lock);
    strlist_add(&g_msgs, message);
    pthread_mutex_unlock(&g_log_lock);
}

/* A logged message with every one of the NULL-terminated needles. */
static bool logged(const char *first, ...) {
    pthread_mutex_lock(&g_log_lock);
    bool found = false;
    for (size_t i = 0; i < g_msgs.n && !found; i++) {
        va_list ap;
        va_start(ap, first);
        found = strstr(g_msgs.v[i], first) && contains_all_v(g_msgs.v[i], ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&g_log_lock);
    return found;
}

static void log_forget(void) {
    pthread_mutex_lock(&g_log_lock);
    strlist_clear(&g_msgs);
    pthread_mutex_unlock(&g_log_lock);
}

static int setup(void **state) {
    (void)state;
    log_set_sink(sink, NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    log_set_sink(NULL, NULL);
    log_forget();
    return 0;
}

/* ---- helpers ---- */

static PghaConfig g_cfgs[16];
static size_t g_ncfg;

/* A configuration with this etcd3 section (freed by cfgs_free). */
static PghaConfig *cfg_with(const char *etcd3) {
    assert_true(g_ncfg < ELEMENTSOF(g_cfgs));
    PghaConfig *c = &g_cfgs[g_ncfg++];
    _cleanup_free_ char *extra = xasprintf("etcd3:\n%s", etcd3);
    load_config(c, "node1", extra);
    return c;
}

static void cfgs_free(void) {
    for (size_t i = 0; i < g_ncfg; i++)
        config_free(&g_cfgs[i]);
    g_ncfg = 0;
}

/* A client on etcd e that holds lease 42 and has read the cluster there (so it knows e's cluster id). */
static Dcs *client_on(FakeEtcd *e) {
    _cleanup_free_ char *sec = xasprintf("  hosts: [%s]\n", e->hostport);
    char *err = NULL;
    Dcs *d = dcs_new(cfg_with(sec), &err);
    assert_non_null(d);
    dcs_set_timings(d, 10, 2, 2);
    d->lease_id = 42;
    d->lease_ttl = 10;
    d->lease_refreshed = now_monotonic();
    d->member_value = xstrdup("{\"state\":\"running\"}");
    d->member_lease = 42;
    Cluster *c = NULL;
    assert_int_equal(dcs_read_cluster(d, false, &c), 0);
    cluster_free(c);
    assert_int_equal(dcs_refresh_lease(d, true), 1);
    assert_int_equal(e->keepalives, 1);
    return d;
}

static int reload_and_wait(Dcs *d, const PghaConfig *cfg) {
    int r = dcs_reload(d, cfg);
    if (r <= 0)
        return r;
    int result = 0;
    assert_int_equal(etcd3_reload_wait(d, now_monotonic() + 10 * USEC_PER_SEC, &result), 0);
    return result;
}

static void client_free(Dcs *d) {
    d->lease_id = 0;
    dcs_free(d);
}

/* Wait (up to 5 s) until a counter of a server passes `before` (the server's threads count). */
static void wait_past(_Atomic int *counter, int before) {
    for (int i = 0; i < 500 && atomic_load(counter) <= before; i++)
        usleep(10 * 1000);
    assert_true(atomic_load(counter) > before);
}

/* ---- tests ---- */

/* Another member of the same cluster, then credentials: tested, swapped, the lease kept and renewed there. */
static void test_same_cluster_swapped_lease_kept(void **state) {
    (void)state;
    FakeEtcd a, b, c;
    /* a cluster id past the range of a long long (etcd's ids are uint64) */
    fake_start(&a, "11501223385591834874", NULL);
    fake_start(&b, "11501223385591834874", NULL);
    fake_start(&c, "11501223385591834874", "s3cret");
    Dcs *d = client_on(&a);

    /* the same settings: nothing to test */
    _cleanup_free_ char *same = xasprintf("  hosts: [%s]\n", a.hostport);
    assert_int_equal(dcs_reload(d, cfg_with(same)), 0);
    assert_int_equal(a.versions, 0);

    _cleanup_free_ char *sb = xasprintf("  hosts: [%s]\n", b.hostport);
    b.peer = c.url; /* b's cluster lists another member: the client takes both, as a connect does */
    assert_int_equal(reload_and_wait(d, cfg_with(sb)), 1);
    assert_int_equal(b.member_lists, 1);
    assert_int_equal(d->endpoints.n, 2);
    assert_string_equal(d->endpoints.v[0], b.url);
    assert_string_equal(d->endpoints.v[1], c.url);
    assert_true(
        logged("etcd client reloaded: ", b.url, "etcd cluster 9f9c8dbbac9de8fa; lease 42 kept", (const char *)NULL));
    assert_int_equal(b.versions, 1);
    assert_int_equal(b.ranges, 1); /* the read that named the cluster */
    assert_int_equal(d->configured.n, 1);
    assert_string_equal(d->configured.v[0], b.url);
    assert_int_equal(d->lease_id, 42);
    assert_int_equal(d->member_lease, 42);
    assert_string_equal(d->member_value, "{\"state\":\"running\"}");
    /* the next renewal goes to the new member, with the same lease */
    assert_int_equal(dcs_refresh_lease(d, true), 1);
    assert_int_equal(b.keepalives, 1);
    assert_int_equal(a.keepalives, 1);
    assert_int_equal(d->lease_id, 42);

    /* credentials where authentication is on: the token from the test is used */
    _cleanup_free_ char *sc = xasprintf("  hosts: [%s]\n  username: pgha\n  password: s3cret\n", c.hostport);
    assert_int_equal(reload_and_wait(d, cfg_with(sc)), 1);
    assert_string_equal(d->username, "pgha");
    assert_string_equal(d->token, "tok-pgha");
    assert_int_equal(c.auths, 1);
    assert_int_equal(dcs_refresh_lease(d, true), 1);
    assert_int_equal(c.keepalives, 1);
    assert_int_equal(c.auths, 1); /* no second authentication: the token was good */

    client_free(d);
    fake_stop(&a);
    fake_stop(&b);
    fake_stop(&c);
    cfgs_free();
}

/* Refused credentials, no credentials where they are needed, unreachable endpoints, another etcd cluster,
 * settings that cannot be used: the running client stays, with the reason logged; the lease works on. */
static void test_refused_settings_keep_the_running_client(void **state) {
    (void)state;
    FakeEtcd a, auth, other;
    fake_start(&a, "1111", NULL);
    fake_start(&auth, "1111", "s3cret");
    fake_start(&other, "2222", NULL);
    Dcs *d = client_on(&a);

    _cleanup_free_ char *wrong = xasprintf("  hosts: [%s]\n  username: pgha\n  password: wrong\n", auth.hostport);
    assert_int_equal(reload_and_wait(d, cfg_with(wrong)), -EACCES);
    assert_true(logged("new etcd3 settings (", auth.url, ") not applied: authentication failed",
                       "invalid user ID or password", "keeping the running etcd client", (const char *)NULL));
    _cleanup_free_ char *none = xasprintf("  hosts: [%s]\n", auth.hostport);
    assert_int_equal(reload_and_wait(d, cfg_with(none)), -EACCES);
    assert_true(logged("not applied: authentication failed", "user name is empty", (const char *)NULL));

    /* a refused port and one that accepts and never answers: never past retry_timeout (2 s) */
    int silent = 0;
    int sfd = silent_port(&silent);
    _cleanup_free_ char *unreach = xasprintf("  hosts: [127.0.0.1:1, 127.0.0.1:%d]\n", silent);
    usec_t t0 = now_monotonic();
    assert_int_equal(reload_and_wait(d, cfg_with(unreach)), -ETIMEDOUT);
    usec_t took = now_monotonic() - t0;
    assert_true(took >= 1500 * USEC_PER_MSEC); /* the silent one had its time */
    assert_true(took < 2500 * USEC_PER_MSEC);
    close(sfd);
    assert_true(
        logged("not applied: etcd is not reachable there", "127.0.0.1:1", "tested again in 2 s", (const char *)NULL));

    _cleanup_free_ char *so = xasprintf("  hosts: [%s]\n", other.hostport);
    assert_int_equal(reload_and_wait(d, cfg_with(so)), -EXDEV);
    assert_true(logged("not applied: another etcd cluster there: ", other.url,
                       "another etcd cluster (id 8ae, expected 457)", "restart pgha to move to another etcd cluster",
                       (const char *)NULL));
    /* a list whose first endpoint is of our cluster and another of another one: refused as well */
    _cleanup_free_ char *mixed = xasprintf("  hosts: [%s, %s]\n", a.hostport, other.hostport);
    assert_int_equal(reload_and_wait(d, cfg_with(mixed)), -EXDEV);
    assert_int_equal(other.ranges, 2);

    /* a read-only role: authenticated and read, but it may not write the leader key: refused */
    auth.read_only = true;
    _cleanup_free_ char *ro = xasprintf("  hosts: [%s]\n  username: pgha\n  password: s3cret\n", auth.hostport);
    assert_int_equal(reload_and_wait(d, cfg_with(ro)), -EACCES);
    assert_int_equal(auth.txns, 1);
    assert_true(logged("not applied: authentication failed: the new etcd user cannot write /service/demo/...",
                       "permission denied", (const char *)NULL));
    _cleanup_free_ char *status = dcs_reload_status(d);
    assert_non_null(status);
    assert_non_null(strstr(status, "cannot write /service/demo/"));

    assert_int_equal(dcs_reload(d, cfg_with("  srv: etcd.example.com\n")), -EINVAL);
    assert_true(logged("new etcd3 settings not applied: etcd3.srv", (const char *)NULL));

    /* through it all: the first client, its lease renewed there */
    assert_int_equal(d->configured.n, 1);
    assert_string_equal(d->configured.v[0], a.url);
    assert_null(d->username);
    assert_null(d->token);
    assert_int_equal(d->lease_id, 42);
    assert_int_equal(dcs_refresh_lease(d, true), 1);
    assert_int_equal(a.keepalives, 2);
    assert_int_equal(auth.keepalives + other.keepalives, 0);

    /* a client that never reached etcd (no lease) takes any cluster */
    client_free(d);
    char *err = NULL;
    d = dcs_new(cfg_with("  hosts: [127.0.0.1:1]\n"), &err);
    assert_non_null(d);
    dcs_set_timings(d, 10, 2, 2);
    assert_int_equal(reload_and_wait(d, cfg_with(so)), 1);
    assert_string_equal(d->configured.v[0], other.url);

    client_free(d);
    fake_stop(&a);
    fake_stop(&auth);
    fake_stop(&other);
    cfgs_free();
}

/* dcs_reload() returns at once while etcd answers slowly; the swap waits for the test; a reload back to the
 * running settings meanwhile means the test's result is not applied; dcs_free() does not wait for a slow test. */
static void test_reload_does_not_block_and_is_superseded(void **state) {
    (void)state;
    FakeEtcd a, slow;
    fake_start(&a, "1111", NULL);
    fake_start(&slow, "1111", NULL);
    Dcs *d = client_on(&a);
    dcs_set_timings(d, 10, 2, 5);
    slow.delay_ms = 700;

    _cleanup_free_ char *ss = xasprintf("  hosts: [%s]\n", slow.hostport);
    _cleanup_free_ char *sa = xasprintf("  hosts: [%s]\n", a.hostport);
    usec_t t0 = now_monotonic();
    assert_int_equal(dcs_reload(d, cfg_with(ss)), 1);
    assert_true(now_monotonic() - t0 < 200 * USEC_PER_MSEC);
    /* the lease is renewed meanwhile, on the running client */
    assert_int_equal(dcs_refresh_lease(d, true), 1);
    assert_int_equal(a.keepalives, 2);
    assert_string_equal(d->configured.v[0], a.url);
    for (int i = 0; i < 500 && slow.arrivals == 0; i++)
        usleep(10 * 1000);
    assert_int_equal(slow.arrivals, 1); /* the test under way */
    /* back to the running settings before the test ends: not applied */
    assert_int_equal(dcs_reload(d, cfg_with(sa)), 0);
    int result = 0;
    assert_int_equal(etcd3_reload_wait(d, now_monotonic() + 10 * USEC_PER_SEC, &result), 0);
    assert_int_equal(result, -ECANCELED);
    assert_string_equal(d->configured.v[0], a.url);

    /* a slow test under way when the client is freed: ended at once */
    /* cppcheck-suppress redundantAssignment ; the server's thread read the first value */
    slow.delay_ms = 3000;
    int before = slow.arrivals;
    assert_int_equal(dcs_reload(d, cfg_with(ss)), 1);
    wait_past(&slow.arrivals, before); /* the test under way */
    t0 = now_monotonic();
    client_free(d);
    assert_true(now_monotonic() - t0 < 1500 * USEC_PER_MSEC); /* (the test alone: up to retry_timeout, 5 s) */

    fake_stop(&a);
    fake_stop(&slow);
    cfgs_free();
}

/* The running client pins its etcd cluster: an answer from another cluster (here to a keepalive, whose header is
 * under "result") is never taken; the request goes on to the next endpoint. */
static void test_running_client_pins_its_cluster(void **state) {
    (void)state;
    FakeEtcd a, other;
    fake_start(&a, "1111", NULL);
    fake_start(&other, "2222", NULL);
    Dcs *d = client_on(&a);
    strlist_clear(&d->endpoints);
    strlist_add(&d->endpoints, other.url);
    strlist_add(&d->endpoints, a.url);
    d->current = 0;
    assert_int_equal(dcs_refresh_lease(d, true), 1);
    assert_int_equal(other.keepalives, 1);
    assert_int_equal(a.keepalives, 2);
    assert_int_equal(d->cluster_id, 0x457);
    /* with our cluster gone, the other one does not make the renewal succeed */
    fake_stop(&a);
    d->current = 0;
    assert_true(dcs_refresh_lease(d, true) != 1);
    assert_int_equal(d->cluster_id, 0x457);
    assert_non_null(strstr(dcs_error(d), "another etcd cluster (id 8ae, expected 457)"));
    client_free(d);
    fake_stop(&other);
    cfgs_free();
}

/* A login that fails for another reason than the credentials (a timeout during a leader election) moves on to
 * the next endpoint; the same settings reloaded again during a test keep it; a test cancelled during the member
 * lookup is not applied and ends at once. */
static void test_login_trouble_same_settings_and_cancel(void **state) {
    (void)state;
    FakeEtcd a, busy, b;
    fake_start(&a, "1111", NULL);
    fake_start(&busy, "1111", "s3cret");
    fake_start(&b, "1111", "s3cret");
    Dcs *d = client_on(&a);
    busy.auth_code = 4;
    _cleanup_free_ char *s2 = xasprintf("  hosts: [%s, %s]\n  username: pgha\n  password: s3cret\n", busy.hostport,
                                        b.hostport);
    assert_int_equal(reload_and_wait(d, cfg_with(s2)), 1);
    assert_int_equal(busy.auths, 1);
    assert_string_equal(d->configured.v[1], b.url);

    /* another SIGHUP with the same settings while they are tested: the test goes on and is applied */
    b.delay_ms = 300;
    _cleanup_free_ char *sb = xasprintf("  hosts: [%s]\n  username: pgha\n  password: s3cret\n", b.hostport);
    int before = b.arrivals;
    assert_int_equal(dcs_reload(d, cfg_with(sb)), 1);
    wait_past(&b.arrivals, before);
    assert_int_equal(dcs_reload(d, cfg_with(sb)), 1);
    int result = 0;
    assert_int_equal(etcd3_reload_wait(d, now_monotonic() + 10 * USEC_PER_SEC, &result), 0);
    assert_int_equal(result, 1);
    assert_int_equal(d->configured.n, 1);
    assert_false(logged("superseded", (const char *)NULL));

    /* cancelled (dcs_free) while the members are looked up: ends at once, not applied */
    /* cppcheck-suppress redundantAssignment ; the server's threads read the first value */
    b.delay_ms = 0;
    a.member_delay_ms = 3000;
    dcs_set_timings(d, 10, 2, 5);
    _cleanup_free_ char *sa = xasprintf("  hosts: [%s]\n  username: pgha\n  password: s3cret\n", a.hostport);
    before = a.member_lists;
    log_forget();
    assert_int_equal(dcs_reload(d, cfg_with(sa)), 1);
    wait_past(&a.member_lists, before); /* the lookup under way */
    usec_t t0 = now_monotonic();
    client_free(d);
    assert_true(now_monotonic() - t0 < 1500 * USEC_PER_MSEC);
    assert_false(logged("etcd client reloaded", (const char *)NULL));
    fake_stop(&a);
    fake_stop(&busy);
    fake_stop(&b);
    cfgs_free();
}

/* Settings refused because etcd did not answer are tested again every loop_wait while the file asks for them,
 * and the refusal is visible (dcs_reload_status) until they are taken. */
static void test_timed_out_settings_are_retried(void **state) {
    (void)state;
    FakeEtcd a, b;
    fake_start(&a, "1111", NULL);
    fake_start(&b, "1111", NULL);
    int port = b.port;
    fake_stop(&b); /* a member not up yet */
    Dcs *d = client_on(&a);
    dcs_set_timings(d, 10, 1, 2);
    _cleanup_free_ char *sb = xasprintf("  hosts: [127.0.0.1:%d]\n", port);
    assert_int_equal(reload_and_wait(d, cfg_with(sb)), -ETIMEDOUT);
    _cleanup_free_ char *status = dcs_reload_status(d);
    assert_non_null(status);
    assert_non_null(strstr(status, "etcd is not reachable there"));
    assert_false(logged("still not reachable", (const char *)NULL));
    /* tested again a loop_wait (1 s) later, still refused (the port is closed: the test ends at once) */
    for (int i = 0; i < 300 && !logged("still not reachable", (const char *)NULL); i++)
        usleep(10 * 1000);
    assert_true(logged("not applied: etcd is not reachable there", "still not reachable", "tested again in 1 s",
                       (const char *)NULL));
    assert_string_equal(d->configured.v[0], a.url);
    fake_start_on(&b, "1111", NULL, port);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    bool taken = false;
    for (int i = 0; i < 100 && !taken; i++) {
        usleep(50 * 1000);
        pthread_mutex_lock(&d->lock);
        taken = d->configured.n == 1 && streq(d->configured.v[0], url);
        pthread_mutex_unlock(&d->lock);
    }
    assert_true(taken);
    assert_true(logged("etcd client reloaded: ", url, (const char *)NULL));
    assert_null(dcs_reload_status(d));
    client_free(d);
    fake_stop(&a);
    fake_stop(&b);
    cfgs_free();
}

/* Make url the client's only endpoint. */
static void use_only(Dcs *d, const char *url) {
    pthread_mutex_lock(&d->lock);
    strlist_clear(&d->endpoints);
    strlist_add(&d->endpoints, url);
    d->current = 0;
    pthread_mutex_unlock(&d->lock);
}

/* A renewal that may take 300 ms. */
static int short_renewal(Dcs *d) {
    dcs_set_call_deadline(now_monotonic() + 300 * USEC_PER_MSEC);
    int r = dcs_refresh_lease(d, true);
    dcs_set_call_deadline(0);
    return r;
}

static void sleep_until(usec_t t) {
    usec_t now = now_monotonic();
    if (now < t)
        usleep((useconds_t)(t - now));
}

/* The running client follows a new etcd cluster id (an etcd restored from a snapshot, a DNS name moved) once,
 * for longer than ttl since the last answer from the known cluster, every answer came from one and the same
 * other cluster: before, its answers are refused; an answer from the known cluster resets the clock and one from
 * yet another cluster restarts it. Then the raft term and the lease are reset: a new lease is granted there. */
/* By default (pgha.follow_etcd_cluster_change off) another cluster is refused however long it alone answers. */
static void test_client_stays_pinned_by_default(void **state) {
    (void)state;
    FakeEtcd a, other;
    fake_start(&a, "1111", NULL);
    fake_start(&other, "2222", NULL);
    Dcs *d = client_on(&a);
    dcs_set_timings(d, 2, 1, 2);
    d->lease_ttl = 2;
    use_only(d, other.url);
    for (int i = 0; i < 2; i++) {
        assert_true(short_renewal(d) != 1);
        assert_non_null(strstr(dcs_error(d), "another etcd cluster (id 8ae, expected 457)"));
        sleep_until(now_monotonic() + 1600 * USEC_PER_MSEC); /* 3.2 s in all: past the ttl of 2 s */
    }
    assert_true(short_renewal(d) != 1);
    assert_int_equal(d->cluster_id, 0x457);
    assert_int_equal(other.grants, 0);
    assert_false(logged("cluster ID changed", (const char *)NULL));
    client_free(d);
    fake_stop(&a);
    fake_stop(&other);
    cfgs_free();
}

static void test_client_follows_a_new_cluster_after_ttl(void **state) {
    (void)state;
    FakeEtcd a, other, third;
    fake_start(&a, "1111", NULL);
    fake_start(&other, "2222", NULL);
    fake_start(&third, "3333", NULL);
    Dcs *d = client_on(&a);
    usec_t t0 = now_monotonic(); /* the last answer from 1111 */
    dcs_set_timings(d, 2, 1, 2);
    d->lease_ttl = 2;
    assert_true(d->cluster_pinned); /* pgha.follow_etcd_cluster_change is off by default */
    pthread_mutex_lock(&d->lock);
    d->cluster_pinned = false; /* as with it on */
    pthread_mutex_unlock(&d->lock);

    use_only(d, other.url);
    assert_true(short_renewal(d) != 1);
    assert_non_null(strstr(dcs_error(d), "another etcd cluster (id 8ae, expected 457)"));
    /* an answer from the known cluster resets the clock */
    sleep_until(t0 + 1200 * USEC_PER_MSEC);
    use_only(d, a.url);
    assert_int_equal(short_renewal(d), 1);
    usec_t ta = now_monotonic();
    pthread_mutex_lock(&d->lock);
    d->raft_term = 99; /* the old cluster's term: not compared with the new cluster's */
    pthread_mutex_unlock(&d->lock);
    use_only(d, other.url);
    sleep_until(ta + 1000 * USEC_PER_MSEC); /* 2.2 s after t0 */
    assert_true(short_renewal(d) != 1);
    assert_non_null(strstr(dcs_error(d), "another etcd cluster (id 8ae, expected 457)"));
    /* yet another cluster restarts the clock */
    sleep_until(ta + 1600 * USEC_PER_MSEC);
    use_only(d, third.url);
    assert_true(short_renewal(d) != 1);
    assert_non_null(strstr(dcs_error(d), "another etcd cluster (id d05, expected 457)"));
    sleep_until(ta + 2400 * USEC_PER_MSEC);
    use_only(d, other.url);
    usec_t t2 = now_monotonic();
    assert_true(short_renewal(d) != 1);
    assert_int_equal(d->cluster_id, 0x457);
    assert_int_equal(d->lease_id, 42);
    assert_int_equal(other.grants, 0);
    assert_false(logged("cluster ID changed", (const char *)NULL));

    /* the same other cluster alone for longer than ttl: followed, with a new lease */
    sleep_until(t2 + 2200 * USEC_PER_MSEC);
    assert_int_equal(short_renewal(d), 1);
    assert_int_equal(d->cluster_id, 0x8ae);
    assert_int_equal(d->raft_term, 2);
    assert_int_equal(d->lease_id, 77);
    assert_int_equal(other.grants, 1);
    assert_true(logged("etcd cluster ID changed from 457 to 8ae", (const char *)NULL));
    assert_int_equal(dcs_refresh_lease(d, true), 1); /* renewed there */
    assert_int_equal(d->lease_id, 77);
    /* now the former cluster is the foreign one */
    use_only(d, a.url);
    assert_true(short_renewal(d) != 1);
    assert_non_null(strstr(dcs_error(d), "another etcd cluster (id 457, expected 8ae)"));
    assert_int_equal(a.grants, 0);

    client_free(d);
    fake_stop(&a);
    fake_stop(&other);
    fake_stop(&third);
    cfgs_free();
}

/* Settings X under test, a reload back to the running settings R (X's test is superseded), then X again: X is
 * tested anew and taken, not dropped as "already under test". */
static void test_repeated_reload_after_a_reload_back(void **state) {
    (void)state;
    FakeEtcd a, slow;
    fake_start(&a, "1111", NULL);
    fake_start(&slow, "1111", NULL);
    Dcs *d = client_on(&a);
    dcs_set_timings(d, 10, 2, 5);
    slow.delay_ms = 200;
    _cleanup_free_ char *ss = xasprintf("  hosts: [%s]\n", slow.hostport);
    _cleanup_free_ char *sa = xasprintf("  hosts: [%s]\n", a.hostport);
    assert_int_equal(dcs_reload(d, cfg_with(ss)), 1);
    wait_past(&slow.arrivals, 0); /* X's test under way */
    assert_int_equal(dcs_reload(d, cfg_with(sa)), 0);
    assert_int_equal(dcs_reload(d, cfg_with(ss)), 1);
    int result = 0;
    assert_int_equal(etcd3_reload_wait(d, now_monotonic() + 10 * USEC_PER_SEC, &result), 0);
    assert_int_equal(result, 1);
    assert_string_equal(d->configured.v[0], slow.url);
    assert_true(logged("tested but not applied: the settings changed again meanwhile", (const char *)NULL));
    assert_true(logged("etcd client reloaded: ", slow.url, (const char *)NULL));
    client_free(d);
    fake_stop(&a);
    fake_stop(&slow);
    cfgs_free();
}

/* The gateway's stream error (the keepalive's: {"error": {"grpc_code": 14, ...}}) is read like a unary one:
 * Unavailable moves the renewal on to the next member. */
static void test_keepalive_stream_error_tries_the_next_member(void **state) {
    (void)state;
    FakeEtcd a, b;
    fake_start(&a, "1111", NULL);
    fake_start(&b, "1111", NULL);
    Dcs *d = client_on(&a);
    a.keepalive_down = true;
    assert_true(short_renewal(d) != 1); /* a alone */
    assert_non_null(strstr(dcs_error(d), "etcdserver: no leader (gRPC code 14)"));
    pthread_mutex_lock(&d->lock);
    strlist_add(&d->endpoints, b.url);
    d->current = 0;
    pthread_mutex_unlock(&d->lock);
    int before = a.keepalives;
    assert_int_equal(dcs_refresh_lease(d, true), 1);
    assert_int_equal(a.keepalives, before + 1);
    assert_int_equal(b.keepalives, 1);
    assert_int_equal(d->lease_id, 42);
    client_free(d);
    fake_stop(&a);
    fake_stop(&b);
    cfgs_free();
}

/* etcd 3.6 (grpc-gateway v2) answers unary errors without the "error" field (etcd-io/etcd#21100): an expired token
 * is still re-authenticated. */
static void test_etcd36_error_answers(void **state) {
    (void)state;
    FakeEtcd a;
    fake_start(&a, "1111", "s3cret");
    v36_errors = true;
    _cleanup_free_ char *sec = xasprintf("  hosts: [%s]\n  username: pgha\n  password: s3cret\n", a.hostport);
    char *err = NULL;
    Dcs *d = dcs_new(cfg_with(sec), &err);
    assert_non_null(d);
    dcs_set_timings(d, 10, 2, 2);
    d->token = xstrdup("tok-expired");
    Cluster *c = NULL;
    int auths = a.auths;
    assert_int_equal(dcs_read_cluster(d, false, &c), 0); /* invalid auth token (401, code 16): logged in again */
    cluster_free(c);
    assert_int_equal(a.auths, auths + 1);
    assert_string_equal(d->token, "tok-pgha");
    v36_errors = false;
    client_free(d);
    fake_stop(&a);
    cfgs_free();
}

/* A token that etcd no longer takes, and a login that fails on the first member for another reason than the
 * credentials (a leader election's time-out): the next member gets its own login, and the call succeeds. */
static void test_reauth_after_a_failed_login_on_another_member(void **state) {
    (void)state;
    FakeEtcd busy, b;
    fake_start(&busy, "1111", "s3cret");
    fake_start(&b, "1111", "s3cret");
    busy.auth_code = 4;
    _cleanup_free_ char *sec = xasprintf("  hosts: [%s, %s]\n  username: pgha\n  password: s3cret\n", busy.hostport,
                                         b.hostport);
    char *err = NULL;
    Dcs *d = dcs_new(cfg_with(sec), &err);
    assert_non_null(d);
    dcs_set_timings(d, 10, 2, 2);
    d->token = xstrdup("tok-expired");
    Cluster *c = NULL;
    assert_int_equal(dcs_read_cluster(d, false, &c), 0);
    cluster_free(c);
    assert_int_equal(busy.auths, 1);
    assert_int_equal(b.auths, 1);
    assert_string_equal(d->token, "tok-pgha");
    client_free(d);
    fake_stop(&busy);
    fake_stop(&b);
    cfgs_free();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_same_cluster_swapped_lease_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_settings_keep_the_running_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_does_not_block_and_is_superseded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_running_client_pins_its_cluster, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_trouble_same_settings_and_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timed_out_settings_are_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_stays_pinned_by_default, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_follows_a_new_cluster_after_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repeated_reload_after_a_reload_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_stream_error_tries_the_next_member, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reauth_after_a_failed_login_on_another_member, setup, teardown),
        cmocka_unit_test_setup_teardown(test_etcd36_error_answers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
