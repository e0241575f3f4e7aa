/* restapi: a reload that moves the REST server. The new daemon starts first; only when it is up the old one
 * stops accepting (the old port is refused at once) and is stopped in the background. When the new one cannot
 * start (the address is taken) the running one keeps answering and rest_reload() says so. Real sockets on
 * 127.0.0.1. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "restapi/restapi.h"
#include "unit_helpers.h"

/* A port nobody listens on now (the kernel's choice). */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* A listening socket on a port of its own, without SO_REUSEPORT: nobody else can bind the port. */
static int occupy_port(int *ret_port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *ret_port = ntohs(sa.sin_port);
    return fd;
}

/* The HTTP status of GET /liveness on 127.0.0.1:port, or -1 when the connection is refused. */
static int http_status(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 10};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    static const char req[] = "GET /liveness HTTP/1.1\r\nHost: pgha\r\nConnection: close\r\n\r\n";
    assert_int_equal(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    char buf[256] = "";
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    int code = -2; /* connected, no status line */
    if (n > 0 && sscanf(buf, "HTTP/1.%*d %d", &code) != 1)
        code = -2;
    return code;
}

static void config_on(PghaConfig *cfg, int port, const char *extra) {
    _cleanup_free_ char *yaml = xasprintf("restapi:\n  listen: 127.0.0.1:%d\n%s", port, extra ? extra : "");
    load_config(cfg, "node1", yaml);
}

static void test_listen_moves(void **state) {
    (void)state;
    int p1 = free_port(), p2 = free_port();
    assert_int_not_equal(p1, p2);
    PghaConfig c1, c2, c3;
    config_on(&c1, p1, NULL);
    char *err = NULL;
    RestServer *r = rest_start(&c1, NULL, NULL, &err);
    if (!r)
        print_error("%s\n", err);
    assert_non_null(r);
    int code = http_status(p1);
    assert_true(code >= 200); /* whatever the health of a node without a snapshot: it answers */

    /* the same settings: nothing moves */
    assert_int_equal(rest_reload(r, &c1), 0);
    assert_int_equal(http_status(p1), code);

    /* a new port: answered there, refused on the old one at once */
    config_on(&c2, p2, NULL);
    assert_int_equal(rest_reload(r, &c2), 0);
    assert_int_equal(http_status(p2), code);
    assert_int_equal(http_status(p1), -1);

    /* a port that is taken: the running server stays where it is */
    int p3 = 0;
    int busy = occupy_port(&p3);
    config_on(&c3, p3, NULL);
    assert_int_equal(rest_reload(r, &c3), -1);
    assert_int_equal(http_status(p2), code);

    /* a bad TLS setting is refused the same way, before anything moves */
    PghaConfig c4;
    config_on(&c4, p1, "  certfile: /nonexistent/pgha-unit/server.crt\n");
    assert_int_equal(rest_reload(r, &c4), -1);
    assert_int_equal(http_status(p2), code);
    assert_int_equal(http_status(p1), -1);

    /* back to the first port, and a new listen backlog on the same port restarts in place */
    assert_int_equal(rest_reload(r, &c1), 0);
    assert_int_equal(http_status(p1), code);
    assert_int_equal(http_status(p2), -1);
    PghaConfig c5;
    config_on(&c5, p1, "  request_queue_size: 16\n");
    assert_int_equal(rest_reload(r, &c5), 0);
    assert_int_equal(http_status(p1), code);

    rest_stop(r);
    close(busy);
    config_free(&c1);
    config_free(&c2);
    config_free(&c3);
    config_free(&c4);
    config_free(&c5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listen_moves),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
