/* The systemd watchdog (src/common/sdnotify.c, systemd/pgha.service): WatchdogSec well below the default
 * ttl, and the keeper thread that pings for the HA loop while the loop's promise to come back holds,
 * also through a long step of a cycle, and stops pinging when the promise is broken. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "unit_helpers.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/sdnotify.h"

/* The shipped unit: a stuck agent must be restarted well before its leader key expires (ttl 30 s by
 * default), and the keeper pings every WatchdogSec / 2. */
static void test_unit_file_watchdog_below_ttl(void **state) {
    (void)state;
    char *unit = read_file(SOURCE_ROOT "/systemd/pgha.service");
    assert_non_null(unit);
    const char *w = strstr(unit, "\nWatchdogSec=");
    assert_non_null(w);
    long sec = strtol(w + strlen("\nWatchdogSec="), NULL, 10);
    assert_true(sec > 0);
    assert_true(sec <= 10);
    free(unit);
}

/* WATCHDOG=1 datagrams that arrive within `ms` */
static int pings_within(int fd, int ms) {
    int n = 0;
    usec_t end = now_monotonic() + (usec_t)ms * USEC_PER_MSEC;
    for (usec_t now; (now = now_monotonic()) < end;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)((end - now) / USEC_PER_MSEC) + 1) <= 0)
            continue;
        char buf[256];
        ssize_t r = recv(fd, buf, sizeof buf - 1, 0);
        if (r > 0) {
            buf[r] = '\0';
            n += strstr(buf, "WATCHDOG=1") != NULL;
        }
    }
    return n;
}

static void test_keeper(void **state) {
    (void)state;
    char *dir = tmpdir_make();
    char *path = xasprintf("%s/notify", dir);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    setenv("NOTIFY_SOCKET", path, 1);
    setenv("WATCHDOG_USEC", "600000", 1); /* pings every 0.3 s */
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    assert_int_equal(sdn_watchdog_interval(), 300000);

    /* the loop promised to be back within 1.5 s: pinged meanwhile, though the loop itself is silent (a
     * long step of a cycle) */
    sdn_watchdog_alive_until(now_monotonic() + 1500 * USEC_PER_MSEC);
    assert_int_equal(sdn_watchdog_start(), 1);
    int n = pings_within(fd, 1400);
    assert_in_range(n, 3, 6);
    /* the promise is broken (the loop is stuck): no more pings */
    (void)pings_within(fd, 400);
    assert_int_equal(pings_within(fd, 1000), 0);
    /* a bounded long step extends it; an earlier deadline never shortens it */
    sdn_watchdog_extend(now_monotonic() + 1000 * USEC_PER_MSEC);
    sdn_watchdog_extend(now_monotonic() + 100 * USEC_PER_MSEC);
    assert_in_range(pings_within(fd, 900), 2, 4);
    sdn_watchdog_stop();
    sdn_watchdog_alive_until(now_monotonic() + 10 * USEC_PER_SEC);
    assert_int_equal(pings_within(fd, 700), 0); /* stopped */

    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    assert_int_equal(sdn_watchdog_start(), 0); /* no watchdog: no thread */
    close(fd);
    unlink(path);
    free(path);
    tmpdir_remove(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unit_file_watchdog_below_ttl),
        cmocka_unit_test(test_keeper),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
