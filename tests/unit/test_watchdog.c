/* The watchdog device's policy (src/agent/watchdog.c) through a fake driver table: the timeout it asks for
 * (ttl - safety_margin, ttl / 2), what it does with a device that is missing, not a watchdog, refuses the
 * timeout or keeps a longer or shorter one, `required` against `automatic`, the keepalive and the magic
 * close, the `required` check published as watchdog_failed, and Patroni's log lines. Then the Linux
 * driver itself on paths that are not watchdogs (a missing file, a regular file, a directory, /dev/null):
 * these machines have no watchdog device to arm. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "agent/watchdog.h"
#include "common/log.h"
#include "unit_helpers.h"

/* ---- the fake device ---- */

typedef struct FakeDev {
    StrList calls;
    int check;            /* check(): 0 or -errno */
    int open;             /* open(): a handle or -errno */
    int support;          /* get_support(): 0 or -errno */
    uint32_t options;     /* ... WD_OPT_* */
    uint32_t firmware;    /* ... firmware_version */
    const char *identity; /* ... */
    int set_timeout;      /* set_timeout(): 0 or -errno */
    int timeout;          /* the timeout in effect (set_timeout() sets it when it succeeds) */
    int get_timeout;      /* get_timeout(): 0 or -errno */
    int keepalive;        /* keepalive(): 0 or -errno */
    int magic_close;      /* magic_close(): 0 or -errno */
    bool open_now;        /* a handle is open */
} FakeDev;

static FakeDev dev;

static int f_check(const char *device) {
    strlist_addf(&dev.calls, "check(%s)", device);
    return dev.check;
}

static int f_open(const char *device) {
    strlist_addf(&dev.calls, "open(%s)", device);
    if (dev.open >= 0)
        dev.open_now = true;
    return dev.open;
}

static int f_get_support(int fd, WatchdogInfo *ret) {
    assert_int_equal(fd, dev.open);
    strlist_add(&dev.calls, "get_support");
    if (dev.support < 0)
        return dev.support;
    *ret = (WatchdogInfo){.options = dev.options, .firmware_version = dev.firmware};
    snprintf(ret->identity, sizeof ret->identity, "%s", dev.identity ? dev.identity : "");
    return 0;
}

static int f_set_timeout(int fd, int seconds) {
    assert_int_equal(fd, dev.open);
    strlist_addf(&dev.calls, "set_timeout(%d)", seconds);
    if (dev.set_timeout == 0)
        dev.timeout = seconds;
    return dev.set_timeout;
}

static int f_get_timeout(int fd, int *ret) {
    assert_int_equal(fd, dev.open);
    strlist_add(&dev.calls, "get_timeout");
    *ret = dev.timeout;
    return dev.get_timeout;
}

static int f_keepalive(int fd) {
    assert_int_equal(fd, dev.open);
    assert_true(dev.open_now);
    strlist_add(&dev.calls, "keepalive");
    return dev.keepalive;
}

static int f_magic_close(int fd) {
    assert_int_equal(fd, dev.open);
    strlist_add(&dev.calls, "magic_close");
    dev.open_now = false;
    return dev.magic_close;
}

static void f_close(int fd) {
    assert_int_equal(fd, dev.open);
    strlist_add(&dev.calls, "close");
    dev.open_now = false;
}

static const WatchdogDriver fake_driver = {
    .check = f_check,
    .open = f_open,
    .get_support = f_get_support,
    .set_timeout = f_set_timeout,
    .get_timeout = f_get_timeout,
    .keepalive = f_keepalive,
    .magic_close = f_magic_close,
    .close = f_close,
};

/* softdog as Linux has it: the timeout can be set, the magic close disarms it */
static void dev_softdog(void) {
    strlist_clear(&dev.calls);
    dev = (FakeDev){.open = 7,
                    .options = WD_OPT_SETTIMEOUT | WD_OPT_MAGICCLOSE,
                    .identity = "Software Watchdog",
                    .timeout = 60};
}

/* ---- captured log lines ---- */

static StrList logged;

static void sink(LogLevel level, const char *message, const char *line, void *ud) {
    (void)line;
    (void)ud;
    strlist_addf(&logged, "%s: %s", log_level_to_string(level), message);
}

static int setup(void **state) {
    (void)state;
    log_reset();
    log_set_sink(sink, NULL);
    dev_softdog();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    log_set_sink(NULL, NULL);
    log_reset();
    strlist_clear(&logged);
    strlist_clear(&dev.calls);
    return 0;
}

/* The calls since the last look, as "a, b, c"; cleared. */
static char *calls(void) {
    char *s = strlist_join(&dev.calls, ", ");
    strlist_clear(&dev.calls);
    return s;
}

#define assert_calls(want)                 \
    do {                                   \
        char *got_ = calls();              \
        assert_string_equal(got_, (want)); \
        free(got_);                        \
    } while (0)

/* Some line logged since the last look contains `part`; the lines are then forgotten. */
static bool logged_has(const char *part) {
    bool found = false;
    for (size_t i = 0; i < logged.n; i++)
        if (strstr(logged.v[i], part))
            found = true;
    if (!found)
        for (size_t i = 0; i < logged.n; i++)
            print_message("  logged: %s\n", logged.v[i]);
    strlist_clear(&logged);
    return found;
}

static WatchdogSettings settings(int mode) {
    return (WatchdogSettings){.mode = mode, .device = "/dev/watchdog", .safety_margin = 5, .ttl = 30, .loop_wait = 10};
}

/* ---- the timeout ---- */

static void test_timeout(void **state) {
    (void)state;
    WatchdogSettings s = settings(WATCHDOG_AUTOMATIC);
    assert_int_equal(watchdog_timeout(&s), 25); /* ttl - safety_margin */
    s.safety_margin = -1;
    assert_int_equal(watchdog_timeout(&s), 15); /* ttl / 2 */
    s.ttl = 31;
    assert_int_equal(watchdog_timeout(&s), 15);
    s.safety_margin = 0;
    assert_int_equal(watchdog_timeout(&s), 31);
}

/* ---- arming, keeping alive, disarming ---- */

static void test_activate_keepalive_disable(void **state) {
    (void)state;
    Watchdog w;
    watchdog_init(&w, &fake_driver);
    WatchdogSettings s = settings(WATCHDOG_REQUIRED);
    assert_false(watchdog_is_running(&w));
    assert_int_equal(watchdog_fires_at(&w), 0);
    usec_t before = now_monotonic();
    assert_true(watchdog_activate(&w, &s));
    assert_calls("check(/dev/watchdog), open(/dev/watchdog), get_support, set_timeout(25), get_timeout");
    assert_true(watchdog_is_running(&w));
    assert_true(dev.open_now);
    assert_int_equal(w.timeout, 25);
    assert_true(logged_has("INFO: Software Watchdog activated with 25 second timeout, timing slack 15 seconds"));
    usec_t fires = watchdog_fires_at(&w);
    assert_true(fires >= before + 25 * USEC_PER_SEC && fires <= now_monotonic() + 25 * USEC_PER_SEC);
    /* armed: activating again does nothing */
    assert_true(watchdog_activate(&w, &s));
    assert_calls("");
    assert_false(watchdog_check(&w, &s));
    assert_calls(""); /* armed: the path is not looked at */
    /* each keepalive moves the deadline */
    watchdog_keepalive(&w, &s);
    watchdog_keepalive(&w, &s);
    assert_calls("keepalive, keepalive");
    assert_true(watchdog_fires_at(&w) >= fires);
    /* disarmed with the magic close */
    watchdog_disable(&w);
    assert_calls("magic_close");
    assert_false(watchdog_is_running(&w));
    assert_false(dev.open_now);
    assert_int_equal(watchdog_fires_at(&w), 0);
    assert_true(logged_has("INFO: Software Watchdog disabled"));
    /* not armed: keepalive and disable do nothing */
    watchdog_keepalive(&w, &s);
    watchdog_disable(&w);
    assert_calls("");
    /* and it can be armed again */
    assert_true(watchdog_activate(&w, &s));
    assert_calls("check(/dev/watchdog), open(/dev/watchdog), get_support, set_timeout(25), get_timeout");
    watchdog_free(&w);
    assert_calls("magic_close");
}

static void test_mode_off(void **state) {
    (void)state;
    Watchdog w;
    watchdog_init(&w, &fake_driver);
    WatchdogSettings s = settings(WATCHDOG_OFF);
    dev.check = -ENOENT;
    assert_true(watchdog_activate(&w, &s));
    assert_false(watchdog_check(&w, &s));
    assert_calls(""); /* the device is never touched */
    assert_false(watchdog_is_running(&w));
    watchdog_free(&w);
}

static void test_describe(void **state) {
    (void)state;
    Watchdog w;
    watchdog_init(&w, &fake_driver);
    WatchdogSettings s = settings(WATCHDOG_AUTOMATIC);
    s.device = "/dev/watchdog1";
    dev.firmware = 2;
    dev.identity = "iTCO_wdt";
    assert_true(watchdog_activate(&w, &s));
    assert_true(logged_has("iTCO_wdt (firmware 2) at /dev/watchdog1 activated with 25 second timeout"));
    watchdog_free(&w);
    strlist_clear(&dev.calls);
}

/* ---- a missing device, a device that is no watchdog ---- */

static void test_missing_device(void **state) {
    (void)state;
    Watchdog w;
    watchdog_init(&w, &fake_driver);
    dev.check = -ENOENT;

    /* automatic: warned once, runs without it; not tried again */
    WatchdogSettings s = settings(WATCHDOG_AUTOMATIC);
    assert_false(watchdog_check(&w, &s));
    assert_calls("");
    assert_true(watchdog_activate(&w, &s));
    assert_calls("check(/dev/watchdog)");
    assert_false(watchdog_is_running(&w));
    assert_true(logged_has(
        "WARNING: Could not activate Linux watchdog device: Can't open watchdog device: No such file or directory"));
    assert_true(watchdog_activate(&w, &s));
    assert_calls("");
    assert_int_equal(logged.n, 0);
    assert_false(watchdog_check(&w, &s)); /* automatic never fails the node */

    /* required: refused; watchdog_failed, said once; tried again after a reload */
    watchdog_reloaded(&w, &s);
    s = settings(WATCHDOG_REQUIRED);
    assert_true(watchdog_check(&w, &s));
    assert_calls("check(/dev/watchdog)");
    assert_true(w.failed);
    assert_true(logged_has("WARNING: Watchdog device is not usable: /dev/watchdog: No such file or directory"));
    assert_true(watchdog_check(&w, &s));
    assert_int_equal(logged.n, 0); /* the same reason: not logged again */
    strlist_clear(&dev.calls);
    assert_false(watchdog_activate(&w, &s));
    assert_calls("check(/dev/watchdog)");
    assert_true(logged_has("ERROR: Configuration requires watchdog, but watchdog could not be configured."));
    assert_false(watchdog_activate(&w, &s));
    assert_calls("");
    assert_true(watchdog_check(&w, &s));
    assert_true(logged_has("Watchdog device is not usable: its activation failed"));
    /* the device appears (softdog loaded) and the configuration is reloaded */
    dev.check = 0;
    watchdog_reloaded(&w, &s);
    assert_false(watchdog_check(&w, &s));
    assert_true(logged_has("INFO: the watchdog device /dev/watchdog is usable again"));
    strlist_clear(&dev.calls);
    assert_true(watchdog_activate(&w, &s));
    assert_true(watchdog_is_running(&w));
    watchdog_free(&w);
    strlist_clear(&dev.calls);
}

static void test_check_reasons(void **state) {
    (void)state;
    Watchdog w;
    watchdog_init(&w, &fake_driver);
    WatchdogSettings s = settings(WATCHDOG_REQUIRED);
    dev.check = -ENOTTY; /* a regular file */
    assert_true(watchdog_check(&w, &s));
    assert_true(logged_has("/dev/watchdog: not a character device"));
    dev.check = -EACCES;
    assert_true(watchdog_check(&w, &s));
    assert_true(logged_has("/dev/watchdog: Permission denied")); /* a new reason: logged */
    /* the timeout leaves no room for loop_wait: ttl 30 - 25 = 5 < 10 */
    dev.check = 0;
    s.safety_margin = 25;
    assert_true(watchdog_check(&w, &s));
    assert_true(logged_has("its timeout of 5 s (ttl 30 - safety_margin 25) is shorter than loop_wait 10 s"));
    s.safety_margin = 5;
    assert_false(watchdog_check(&w, &s));
    assert_false(w.failed);
    /* no driver on this platform */
    Watchdog none;
    watchdog_init(&none, NULL);
    assert_true(watchdog_check(&none, &s));
    assert_true(logged_has("watchdog is not supported on this platform"));
    assert_false(watchdog_activate(&none, &s));
    s.mode = WATCHDOG_AUTOMATIC;
    none.given_up = false;
    assert_true(watchdog_activate(&none, &s));
    assert_false(watchdog_is_running(&none));
    watchdog_free(&none);
    watchdog_free(&w);
    strlist_clear(&dev.calls);
    strlist_clear(&logged);
}

static void test_not_a_watchdog(void **state) {
    (void)state;
    Watchdog w;
    watchdog_init(&w, &fake_driver);
    WatchdogSettings s = settings(WATCHDOG_REQUIRED);
    dev.support = -ENOTTY; /* /dev/null, a tty: the ioctl is not understood */
    assert_false(watchdog_activate(&w, &s));
    /* closed without writing to it: not even the magic character goes to a device that is no watchdog */
    assert_calls("check(/dev/watchdog), open(/dev/watchdog), get_support, close");
    assert_false(watchdog_is_running(&w));
    assert_true(logged_has("does not answer as a watchdog device (WDIOC_GETSUPPORT: Inappropriate ioctl"));
    assert_true(watchdog_check(&w, &s));
    watchdog_free(&w);

    /* any other error comes from a watchdog, armed by the open: disarmed with the magic character */
    watchdog_init(&w, &fake_driver);
    dev.support = -EIO;
    assert_false(watchdog_activate(&w, &s));
    assert_calls("check(/dev/watchdog), open(/dev/watchdog), get_support, magic_close");
    assert_false(dev.open_now);
    assert_false(watchdog_is_running(&w));
    watchdog_free(&w);
}

/* ---- the device and the timeout ---- */

static void test_refused_timeout(void **state) {
    (void)state;
    Watchdog w;
    watchdog_init(&w, &fake_driver);
    WatchdogSettings s = settings(WATCHDOG_REQUIRED);
    dev.set_timeout = -EINVAL; /* beyond the hardware's range */
    assert_false(watchdog_activate(&w, &s));
    assert_calls("check(/dev/watchdog), open(/dev/watchdog), get_support, set_timeout(25), magic_close");
    assert_true(logged_has("Could not activate Software Watchdog: cannot set the timeout to 25 s: Invalid argument"));
    assert_false(watchdog_is_running(&w));
    /* automatic: runs without it */
    s.mode = WATCHDOG_AUTOMATIC;
    watchdog_reloaded(&w, &s);
    assert_true(watchdog_activate(&w, &s));
    assert_false(watchdog_is_running(&w));
    watchdog_free(&w);
    strlist_clear(&dev.calls);
}

static void test_fixed_longer_timeout(void **state) {
    (void)state;
    Watchdog w;
    watchdog_init(&w, &fake_driver);
    WatchdogSettings s = settings(WATCHDOG_REQUIRED);
    dev.options = WD_OPT_MAGICCLOSE; /* the timeout cannot be set: it stays 60 s */
    assert_false(watchdog_activate(&w, &s));
    assert_calls("check(/dev/watchdog), open(/dev/watchdog), get_support, get_timeout, magic_close");
    assert_true(logged_has("ERROR: Configuration requires watchdog, but a safe watchdog timeout 25 could not be "
                           "configured. Watchdog timeout is 60."));
    assert_false(watchdog_is_running(&w));
    assert_true(watchdog_check(&w, &s));
    /* automatic: kept, with a warning */
    s.mode = WATCHDOG_AUTOMATIC;
    watchdog_reloaded(&w, &s);
    assert_true(watchdog_activate(&w, &s));
    assert_true(watchdog_is_running(&w));
    assert_int_equal(w.timeout, 60);
    assert_true(logged_has("WARNING: Watchdog timeout 60 seconds does not ensure safe termination within 25 seconds"));
    watchdog_free(&w);
    strlist_clear(&dev.calls);
}

static void test_timeout_shorter_than_loop_wait(void **state) {
    (void)state;
    Watchdog w;
    watchdog_init(&w, &fake_driver);
    WatchdogSettings s = settings(WATCHDOG_AUTOMATIC);
    dev.options = WD_OPT_MAGICCLOSE;
    dev.timeout = 5; /* would fire between two keepalives */
    assert_true(watchdog_activate(&w, &s));
    assert_calls("check(/dev/watchdog), open(/dev/watchdog), get_support, get_timeout, magic_close");
    assert_false(watchdog_is_running(&w));
    assert_int_equal(logged.n, 2);
    assert_true(logged_has("ERROR: loop_wait of 10 seconds is too long for watchdog 5 second timeout"));
    /* (logged_has() forgot both: look again) */
    watchdog_reloaded(&w, &s);
    s.mode = WATCHDOG_REQUIRED;
    assert_false(watchdog_activate(&w, &s));
    assert_calls("check(/dev/watchdog), open(/dev/watchdog), get_support, get_timeout, magic_close");
    bool disabling = false;
    for (size_t i = 0; i < logged.n; i++)
        disabling |= strstr(logged.v[i], "INFO: Disabling watchdog due to unsafe timeout.") != NULL;
    assert_true(disabling);
    strlist_clear(&logged);
    watchdog_free(&w);
}

static void test_ttl_leaves_no_slack(void **state) {
    (void)state;
    Watchdog w;
    watchdog_init(&w, &fake_driver);
    WatchdogSettings s = settings(WATCHDOG_REQUIRED);
    s.safety_margin = -1;
    s.ttl = 18; /* ttl / 2 = 9 < loop_wait 10 */
    assert_false(watchdog_activate(&w, &s));
    assert_calls(""); /* the device is not opened */
    assert_true(logged_has("WARNING: Watchdog not supported because leader TTL 18 is less than 2x loop_wait 10"));
    watchdog_free(&w);
}

static void test_no_magic_close(void **state) {
    (void)state;
    Watchdog w;
    watchdog_init(&w, &fake_driver);
    WatchdogSettings s = settings(WATCHDOG_REQUIRED);
    dev.options = WD_OPT_SETTIMEOUT; /* nowayout: once armed, it cannot be stopped */
    assert_true(watchdog_activate(&w, &s));
    assert_true(logged_has("Watchdog implementation can't be disabled. Watchdog will trigger after pgha loses "
                           "leader key."));
    strlist_clear(&dev.calls);
    watchdog_disable(&w);
    /* a last keepalive gives the administrator a whole timeout, then it is closed (and will fire) */
    assert_calls("keepalive, close");
    assert_true(logged_has("System will reboot after 25 seconds when watchdog times out."));
    assert_false(watchdog_is_running(&w));
    watchdog_free(&w);
}

/* ---- what the keepalive applies ---- */

static void test_keepalive_applies_changes(void **state) {
    (void)state;
    Watchdog w;
    watchdog_init(&w, &fake_driver);
    WatchdogSettings s = settings(WATCHDOG_AUTOMATIC);
    assert_true(watchdog_activate(&w, &s));
    strlist_clear(&dev.calls);
    /* a new ttl in /config: the timeout follows (setting it resets the timer) */
    s.ttl = 40;
    watchdog_keepalive(&w, &s);
    assert_calls("set_timeout(35), get_timeout");
    assert_int_equal(w.timeout, 35);
    watchdog_keepalive(&w, &s);
    assert_calls("keepalive");
    /* a failed keepalive is logged; the device stays armed */
    dev.keepalive = -EIO;
    watchdog_keepalive(&w, &s);
    assert_calls("keepalive");
    assert_true(logged_has("ERROR: Error while sending keepalive: Input/output error"));
    assert_true(watchdog_is_running(&w));
    dev.keepalive = 0;
    /* another device: disarmed, the new one armed */
    s.device = "/dev/watchdog1";
    watchdog_keepalive(&w, &s);
    assert_calls("magic_close, check(/dev/watchdog1), open(/dev/watchdog1), get_support, set_timeout(35), get_timeout");
    assert_true(watchdog_is_running(&w));
    /* mode off (a reload): disarmed at once */
    s.mode = WATCHDOG_OFF;
    watchdog_reloaded(&w, &s);
    assert_calls("magic_close");
    assert_false(watchdog_is_running(&w));
    watchdog_free(&w);
}

/* The device never outlives the leader lease: a lease that ends sooner than the timeout (acquired on a lease
 * renewed a while ago, a slow renewal, safety_margin 0) cuts the timeout to the whole seconds left before
 * s.fire_by; the next renewal gives it its full timeout back. */
static void test_fits_the_lease(void **state) {
    (void)state;
    Watchdog w;
    watchdog_init(&w, &fake_driver);
    WatchdogSettings s = settings(WATCHDOG_REQUIRED);
    /* armed with 18.5 s of lease left (before the fence margin): 18 s, not 25 */
    s.fire_by = now_monotonic() + 18 * USEC_PER_SEC + USEC_PER_SEC / 2;
    assert_true(watchdog_activate(&w, &s));
    assert_calls("check(/dev/watchdog), open(/dev/watchdog), get_support, set_timeout(25), get_timeout, "
                 "set_timeout(18), get_timeout");
    assert_int_equal(w.timeout, 18);
    assert_true(watchdog_fires_at(&w) <= s.fire_by);
    assert_true(logged_has("watchdog timeout set to 18 seconds: the leader lease ends sooner than 25 seconds"));
    /* a renewal: the lease is 30 s long again, the timeout back to 25 */
    s.fire_by = now_monotonic() + 28 * USEC_PER_SEC;
    watchdog_keepalive(&w, &s);
    assert_calls("set_timeout(25), get_timeout");
    assert_int_equal(w.timeout, 25);
    watchdog_keepalive(&w, &s);
    assert_calls("keepalive");
    /* a renewal slower than safety_margin: 21.5 s left */
    s.fire_by = now_monotonic() + 21 * USEC_PER_SEC + USEC_PER_SEC / 2;
    watchdog_keepalive(&w, &s);
    assert_calls("set_timeout(21), get_timeout");
    assert_true(watchdog_fires_at(&w) <= s.fire_by);
    /* the lease (almost) over: 1 s, the shortest the device takes */
    s.fire_by = now_monotonic() + USEC_PER_SEC / 2;
    watchdog_keepalive(&w, &s);
    assert_calls("set_timeout(1), get_timeout");
    /* safety_margin 0: the timeout would be the whole ttl; always cut to the lease */
    s.safety_margin = 0;
    s.fire_by = now_monotonic() + 28 * USEC_PER_SEC - USEC_PER_SEC / 10;
    watchdog_keepalive(&w, &s);
    assert_calls("set_timeout(30), get_timeout, set_timeout(27), get_timeout");
    assert_int_equal(w.base, 30);
    assert_int_equal(w.timeout, 27);
    assert_true(watchdog_fires_at(&w) <= s.fire_by);
    /* no lease known (fire_by 0): the full timeout */
    s.fire_by = 0;
    watchdog_keepalive(&w, &s);
    assert_calls("set_timeout(30), get_timeout");
    /* the cut cannot be set: `required` stays armed but gives up (the node must stop leading) */
    s.fire_by = now_monotonic() + 10 * USEC_PER_SEC + USEC_PER_SEC / 2;
    dev.set_timeout = -EINVAL;
    watchdog_keepalive(&w, &s);
    assert_calls("set_timeout(10)");
    assert_true(watchdog_is_running(&w));
    assert_true(watchdog_unsafe(&w));
    assert_true(watchdog_check(&w, &s));
    watchdog_free(&w);
    strlist_clear(&dev.calls);

    /* `automatic`: the device disarmed when the cut cannot be set at activation */
    dev_softdog();
    watchdog_init(&w, &fake_driver);
    s = settings(WATCHDOG_AUTOMATIC);
    s.fire_by = now_monotonic() + 12 * USEC_PER_SEC + USEC_PER_SEC / 2;
    dev.set_timeout = 0;
    assert_true(watchdog_activate(&w, &s));
    assert_int_equal(w.timeout, 12);
    dev.set_timeout = -EINVAL;
    s.fire_by = now_monotonic() + 11 * USEC_PER_SEC + USEC_PER_SEC / 2;
    watchdog_keepalive(&w, &s);
    assert_false(watchdog_is_running(&w));
    assert_false(dev.open_now);
    watchdog_free(&w);
    strlist_clear(&dev.calls);
    strlist_clear(&logged);
}

/* A new timeout while armed is checked as at activation, and recorded either way (not retried, nor logged,
 * every renewal): `required` keeps the device armed but gives up (the node stops leading) when it cannot be
 * set, stays longer than asked, or is shorter than loop_wait; `automatic` disarms. A reload tries again. */
static void test_timeout_change_checked(void **state) {
    (void)state;
    Watchdog w;
    watchdog_init(&w, &fake_driver);
    WatchdogSettings s = settings(WATCHDOG_REQUIRED);
    assert_true(watchdog_activate(&w, &s));
    strlist_clear(&dev.calls);
    /* the device refuses the new timeout: given up once, then plain keepalives */
    dev.set_timeout = -EINVAL;
    s.ttl = 40;
    watchdog_keepalive(&w, &s);
    assert_calls("set_timeout(35), keepalive"); /* still armed: kept alive with the old timeout */
    assert_true(logged_has("cannot set the watchdog timeout to 35 s"));
    assert_true(watchdog_unsafe(&w));
    assert_true(watchdog_is_running(&w));
    watchdog_keepalive(&w, &s);
    assert_calls("keepalive");
    assert_int_equal(logged.n, 0);
    assert_true(watchdog_check(&w, &s));
    assert_true(logged_has("its timeout could not be made safe"));
    /* a reload: tried again */
    dev.set_timeout = 0;
    watchdog_reloaded(&w, &s);
    assert_false(watchdog_unsafe(&w));
    watchdog_keepalive(&w, &s);
    assert_calls("set_timeout(35), get_timeout");
    assert_false(watchdog_unsafe(&w));
    assert_false(watchdog_check(&w, &s));
    /* a lowered ttl on a device that keeps its timeout: longer than asked, `required` gives up */
    w.info.options &= ~WD_OPT_SETTIMEOUT;
    s.ttl = 30;
    watchdog_keepalive(&w, &s);
    assert_calls("keepalive");
    assert_true(watchdog_unsafe(&w));
    assert_true(logged_has("a safe watchdog timeout 25 could not be configured. Watchdog timeout is 35."));
    watchdog_free(&w);
    strlist_clear(&dev.calls);

    /* a new timeout shorter than loop_wait: `automatic` disarms, and does not arm again until a reload */
    dev_softdog();
    watchdog_init(&w, &fake_driver);
    s = settings(WATCHDOG_AUTOMATIC);
    assert_true(watchdog_activate(&w, &s));
    strlist_clear(&dev.calls);
    s.safety_margin = 22; /* 8 s < loop_wait 10 */
    watchdog_keepalive(&w, &s);
    assert_calls("magic_close");
    assert_false(watchdog_is_running(&w));
    assert_true(watchdog_activate(&w, &s));
    assert_calls("");
    watchdog_free(&w);
    strlist_clear(&dev.calls);
    strlist_clear(&logged);
}

static void test_leave_armed(void **state) {
    (void)state;
    Watchdog w;
    watchdog_init(&w, &fake_driver);
    WatchdogSettings s = settings(WATCHDOG_REQUIRED);
    assert_true(watchdog_activate(&w, &s));
    strlist_clear(&dev.calls);
    /* the agent exits while PostgreSQL may still be a primary: no magic character */
    watchdog_leave_armed(&w);
    assert_calls("close");
    assert_false(watchdog_is_running(&w));
    assert_true(logged_has("leaving the watchdog armed"));
    watchdog_free(&w);
    assert_calls("");
}

static void test_disarm_error(void **state) {
    (void)state;
    Watchdog w;
    watchdog_init(&w, &fake_driver);
    WatchdogSettings s = settings(WATCHDOG_AUTOMATIC);
    assert_true(watchdog_activate(&w, &s));
    dev.magic_close = -EIO;
    watchdog_disable(&w);
    assert_true(logged_has("ERROR: Error while disabling watchdog: Input/output error"));
    assert_false(watchdog_is_running(&w));
    watchdog_free(&w);
    strlist_clear(&dev.calls);
}

/* ---- the Linux driver on what is not a watchdog ---- */

static void test_linux_driver_not_a_watchdog(void **state) {
    (void)state;
    const WatchdogDriver *d = &watchdog_linux_driver;
    char *dir = tmpdir_make();
    assert_non_null(dir);
    char *missing = xasprintf("%s/watchdog", dir);
    assert_int_equal(d->check(missing), -ENOENT);
    assert_int_equal(d->check(""), -EINVAL);
    assert_int_equal(d->check(dir), -ENOTTY); /* a directory */
    char *file = write_file(dir, "regular", "keep me\n");
    assert_int_equal(d->check(file), -ENOTTY); /* a regular file */
    /* /dev/null: a writable character device, but no watchdog */
    assert_int_equal(d->check("/dev/null"), 0);
    int fd = d->open("/dev/null");
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    WatchdogInfo info;
    assert_int_equal(d->get_support(fd, &info), -ENOTTY);
    int t;
    assert_int_equal(d->get_timeout(fd, &t), -ENOTTY);
    assert_int_equal(d->set_timeout(fd, 25), -ENOTTY);
    assert_int_equal(d->set_timeout(fd, 0), -EINVAL);
    assert_int_equal(d->set_timeout(fd, 70000), -EINVAL);
    d->close(fd);
    assert_int_equal(d->open(missing), -ENOENT);

    /* the policy over the real driver: `required` refuses; nothing was written to the regular file */
    Watchdog w;
    watchdog_init(&w, d);
    WatchdogSettings s = settings(WATCHDOG_REQUIRED);
    s.device = file;
    assert_true(watchdog_check(&w, &s));
    assert_false(watchdog_activate(&w, &s));
    s.device = "/dev/null";
    watchdog_reloaded(&w, &s);
    assert_false(watchdog_check(&w, &s)); /* it looks usable until it is tried */
    assert_false(watchdog_activate(&w, &s));
    assert_true(watchdog_check(&w, &s));
    assert_false(watchdog_is_running(&w));
    watchdog_free(&w);
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_size, 8);
    strlist_clear(&logged);
    free(file);
    free(missing);
    dir = tmpdir_remove(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_activate_keepalive_disable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mode_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_describe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_reasons, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_watchdog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fixed_longer_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_shorter_than_loop_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_leaves_no_slack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_magic_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_applies_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fits_the_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_change_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leave_armed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disarm_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_linux_driver_not_a_watchdog, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
