/* The watchdog device's policy (watchdog.h): Patroni's Watchdog facade and its checks
 * (patroni/watchdog/base.py), over a driver table. */
#include "agent/watchdog.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#define DEFAULT_DEVICE "/dev/watchdog"

long long watchdog_timeout(const WatchdogSettings *s) {
    return s->safety_margin == -1 ? s->ttl / 2 : s->ttl - s->safety_margin;
}

void watchdog_init(Watchdog *w, const WatchdogDriver *drv) { *w = (Watchdog){.drv = drv, .fd = -1}; }

/* Patroni's describe(): "Software Watchdog (firmware 1) at /dev/watchdog1" */
static void describe(const Watchdog *w, const char *device, bool have_info, char *buf, size_t len) {
    const char *identity = have_info && w->info.identity[0] ? w->info.identity : "Linux watchdog device";
    char fw[32] = "";
    if (have_info && w->info.firmware_version)
        snprintf(fw, sizeof fw, " (firmware %u)", (unsigned)w->info.firmware_version);
    bool other = device && strcmp(device, DEFAULT_DEVICE) != 0;
    snprintf(buf, len, "%s%s%s%s", identity, fw, other ? " at " : "", other ? device : "");
}

/* what a failed check() means */
static const char *check_error(int r) { return r == -ENOTTY ? "not a character device" : strerror(-r); }

static bool can_be_disabled(const Watchdog *w) { return (w->info.options & WD_OPT_MAGICCLOSE) != 0; }

/* Disarm the open device, forget it. */
static void disarm(Watchdog *w) {
    if (!w->armed)
        return;
    if (!can_be_disabled(w)) {
        /* give the administrator a full timeout to clean up (Patroni) */
        (void)w->drv->keepalive(w->fd);
        log_warning("Watchdog implementation can't be disabled. System will reboot after %d seconds when watchdog "
                    "times out.",
                    w->timeout);
        w->drv->close(w->fd);
    } else {
        int r = w->drv->magic_close(w->fd);
        if (r < 0)
            log_error("Error while disabling watchdog: %s", strerror(-r));
    }
    w->armed = false;
    w->fd = -1;
    free(w->device);
    w->device = NULL;
    w->timeout = 0;
    w->last_keepalive = 0;
}

void watchdog_disable(Watchdog *w) {
    if (!w->armed)
        return;
    char what[128];
    describe(w, w->device, true, what, sizeof what);
    disarm(w);
    log_info("%s disabled", what);
}

void watchdog_leave_armed(Watchdog *w) {
    if (!w->armed)
        return;
    log_error("PostgreSQL may still run as a primary: leaving the watchdog armed, it resets this machine within "
              "%d s",
              w->timeout);
    w->drv->close(w->fd);
    w->armed = false;
    w->fd = -1;
    free(w->device);
    w->device = NULL;
}

void watchdog_free(Watchdog *w) {
    watchdog_disable(w);
    free(w->failed_why);
    w->failed_why = NULL;
}

usec_t watchdog_fires_at(const Watchdog *w) {
    return w->armed ? w->last_keepalive + (usec_t)w->timeout * USEC_PER_SEC : 0;
}

/* The first part of Patroni's _activate(): open the device and set its timeout. Returns the timeout in
 * effect, or -1 (logged; the device is closed again). */
static int open_and_set_timeout(Watchdog *w, const WatchdogSettings *s, long long timeout) {
    char what[128];
    describe(w, s->device, false, what, sizeof what);
    if (!w->drv) {
        log_warning("Could not activate %s: watchdog is not supported on this platform", what);
        return -1;
    }
    int r = w->drv->check(s->device);
    if (r < 0) {
        log_warning("Could not activate %s: Can't open watchdog device: %s", what, check_error(r));
        return -1;
    }
    int fd = w->drv->open(s->device);
    if (fd < 0) {
        log_warning("Could not activate %s: Can't open watchdog device: %s", what, strerror(-fd));
        return -1;
    }
    w->info = (WatchdogInfo){0};
    r = w->drv->get_support(fd, &w->info);
    if (r < 0) {
        /* not a watchdog (ENOTTY): nothing is written to it, not even the magic character; any other error
         * comes from a watchdog, armed by the open: disarmed with the magic character (if it knows it) */
        log_warning("Could not activate %s: it does not answer as a watchdog device (WDIOC_GETSUPPORT: %s)", what,
                    strerror(-r));
        if (r == -ENOTTY)
            w->drv->close(fd);
        else if ((r = w->drv->magic_close(fd)) < 0)
            log_error("Error while disabling watchdog: %s", strerror(-r));
        return -1;
    }
    w->armed = true;
    w->fd = fd;
    w->device = xstrdup(s->device);
    w->last_keepalive = now_monotonic();
    describe(w, s->device, true, what, sizeof what);
    int actual = 0;
    if (w->info.options & WD_OPT_SETTIMEOUT) {
        r = w->drv->set_timeout(fd, timeout > 0 && timeout < 0xFFFF ? (int)timeout : 0);
        if (r < 0) {
            log_warning("Could not activate %s: cannot set the timeout to %lld s: %s", what, timeout, strerror(-r));
            disarm(w);
            return -1;
        }
    }
    r = w->drv->get_timeout(fd, &actual);
    if (r < 0) {
        log_warning("Could not activate %s: cannot read its timeout: %s", what, strerror(-r));
        disarm(w);
        return -1;
    }
    w->timeout = actual;
    if (!can_be_disabled(w))
        log_warning("Watchdog implementation can't be disabled. Watchdog will trigger after pgha loses leader key.");
    /* a device whose timeout cannot be set may have one shorter than the loop's period */
    if (actual < s->loop_wait) {
        log_error("loop_wait of %lld seconds is too long for watchdog %d second timeout", s->loop_wait, actual);
        if (can_be_disabled(w)) {
            log_info("Disabling watchdog due to unsafe timeout.");
            disarm(w);
            return -1;
        }
    }
    return actual;
}

/* The longest timeout (s) that fires by s->fire_by when set `now`: whole seconds, at least 1. */
static long long lease_cap(const WatchdogSettings *s, usec_t now) {
    if (!s->fire_by)
        return LLONG_MAX;
    if (s->fire_by < now + USEC_PER_SEC)
        return 1;
    return (long long)((s->fire_by - now) / USEC_PER_SEC);
}

/* Reset the device's timer so that it fires by s->fire_by: its base timeout, or the whole seconds left of
 * the lease when that is shorter (setting the timeout also resets the timer); `fresh`: the timer was just
 * reset, no plain keepalive is needed. False when the timeout could not be set (logged); a failed plain
 * keepalive is logged and the device stays armed. */
static bool fit_to_lease(Watchdog *w, const WatchdogSettings *s, usec_t now, bool fresh) {
    long long cap = lease_cap(s, now);
    int want = (long long)w->base < cap ? w->base : (int)cap;
    if (want != w->timeout && (w->info.options & WD_OPT_SETTIMEOUT)) {
        int actual = 0;
        int r = w->drv->set_timeout(w->fd, want);
        if (r == 0)
            r = w->drv->get_timeout(w->fd, &actual);
        if (r < 0) {
            log_error("Error while sending keepalive: cannot set the watchdog timeout to %d s: %s", want, strerror(-r));
            return false;
        }
        w->timeout = actual;
        w->last_keepalive = now;
        if (want < w->base)
            log_info("watchdog timeout set to %d seconds: the leader lease ends sooner than %d seconds", actual,
                     w->base);
        else
            log_info("watchdog timeout set to %d seconds", actual);
        return true;
    }
    if (want < w->timeout)
        log_warning("the watchdog's timeout of %d s cannot be set: it may fire after the leader lease ends (in "
                    "%lld s)",
                    w->timeout, cap);
    if (fresh)
        return true; /* the timer was just reset (armed, or a new timeout set) */
    int r = w->drv->keepalive(w->fd);
    if (r < 0) {
        log_error("Error while sending keepalive: %s", strerror(-r));
        return true;
    }
    w->last_keepalive = now;
    return true;
}

/* The armed device's timeout can no longer be made safe: `automatic` runs without it (disarmed), `required`
 * keeps it armed (it still fences a stuck loop) and marks it given up: the node must not lead. */
static void give_up_armed(Watchdog *w, const WatchdogSettings *s) {
    w->given_up = true;
    if (s->mode == WATCHDOG_REQUIRED) {
        log_error("Configuration requires watchdog, but a safe watchdog timeout %lld could not be configured. "
                  "Watchdog timeout is %d.",
                  w->wanted, w->timeout);
        return;
    }
    log_info("Disabling watchdog due to unsafe timeout.");
    watchdog_disable(w);
}

/* The settings ask for another timeout while armed (a new ttl or safety_margin): checked as at activation.
 * The new value is recorded whatever happens (not tried again every renewal, a reload tries again). False
 * when it could not be made safe (give_up_armed(): `automatic` disarmed, `required` still armed). */
static bool change_timeout(Watchdog *w, const WatchdogSettings *s, long long timeout) {
    w->wanted = timeout;
    if (timeout < s->loop_wait) {
        log_warning("Watchdog not supported because leader TTL %lld is less than 2x loop_wait %lld", s->ttl,
                    s->loop_wait);
        give_up_armed(w, s);
        return false;
    }
    int actual = w->base;
    if (w->info.options & WD_OPT_SETTIMEOUT) {
        int r = w->drv->set_timeout(w->fd, timeout < 0xFFFF ? (int)timeout : 0);
        if (r == 0)
            r = w->drv->get_timeout(w->fd, &actual);
        if (r < 0) {
            log_error("Error while sending keepalive: cannot set the watchdog timeout to %lld s: %s", timeout,
                      strerror(-r));
            give_up_armed(w, s);
            return false;
        }
        w->last_keepalive = now_monotonic();
        w->timeout = actual;
    }
    w->base = actual;
    if (actual < s->loop_wait) {
        log_error("loop_wait of %lld seconds is too long for watchdog %d second timeout", s->loop_wait, actual);
        give_up_armed(w, s);
        return false;
    }
    if (actual > timeout) {
        if (s->mode == WATCHDOG_REQUIRED) {
            give_up_armed(w, s);
            return false;
        }
        log_warning("Watchdog timeout %d seconds does not ensure safe termination within %lld seconds", actual,
                    timeout);
    }
    log_info("watchdog timeout set to %d seconds", actual);
    return true;
}

bool watchdog_activate(Watchdog *w, const WatchdogSettings *s) {
    if (s->mode == WATCHDOG_OFF || w->armed)
        return true;
    bool required = s->mode == WATCHDOG_REQUIRED;
    if (w->given_up) /* said when it failed; watchdog_check() reports it for `required` */
        return !required;
    long long timeout = watchdog_timeout(s), slack = timeout - s->loop_wait;
    int actual = -1;
    if (slack < 0)
        log_warning("Watchdog not supported because leader TTL %lld is less than 2x loop_wait %lld", s->ttl,
                    s->loop_wait);
    else
        actual = open_and_set_timeout(w, s, timeout);
    if (actual >= 0 && actual > timeout) {
        if (required) {
            log_error("Configuration requires watchdog, but a safe watchdog timeout %lld could not be configured. "
                      "Watchdog timeout is %d.",
                      timeout, actual);
            disarm(w);
            w->given_up = true;
            return false;
        }
        log_warning("Watchdog timeout %d seconds does not ensure safe termination within %lld seconds", actual,
                    timeout);
    }
    if (!w->armed) {
        w->given_up = true;
        if (required) {
            log_error("Configuration requires watchdog, but watchdog could not be configured.");
            return false;
        }
        return true; /* automatic: without it */
    }
    w->wanted = timeout;
    w->base = w->timeout;
    char what[128];
    describe(w, w->device, true, what, sizeof what);
    log_info("%s activated with %d second timeout, timing slack %lld seconds", what, w->timeout, slack);
    /* the lease may end sooner than the timeout (acquired on a lease renewed a while ago) */
    if (!fit_to_lease(w, s, now_monotonic(), true)) {
        disarm(w);
        w->given_up = true;
        if (required) {
            log_error("Configuration requires watchdog, but watchdog could not be configured.");
            return false;
        }
    }
    return true;
}

void watchdog_keepalive(Watchdog *w, const WatchdogSettings *s) {
    if (!w->armed)
        return;
    /* a changed configuration takes effect with a keepalive, so that the timeout matches the renewal */
    if (s->mode == WATCHDOG_OFF) {
        watchdog_disable(w);
        return;
    }
    if (!streq(w->device, s->device)) {
        watchdog_disable(w);
        (void)watchdog_activate(w, s); /* `required`: the next cycle acts on a failure */
        return;
    }
    usec_t now = now_monotonic(), before = w->last_keepalive;
    long long timeout = watchdog_timeout(s);
    if (timeout != w->wanted)
        (void)change_timeout(w, s, timeout);
    /* fresh: a new timeout was set by this call, which reset the timer (told by the call, not by the clock:
     * two calls may read the same microsecond); `required` and given up: still kept alive */
    if (w->armed && !fit_to_lease(w, s, now, w->last_keepalive != before))
        give_up_armed(w, s);
}

void watchdog_reloaded(Watchdog *w, const WatchdogSettings *s) {
    if (w->armed && w->given_up)
        w->wanted = -1; /* a timeout that could not be made safe: tried again at the next keepalive */
    w->given_up = false;
    if (s->mode == WATCHDOG_OFF)
        watchdog_disable(w); /* "Turning a watchdog off can always be done immediately" */
}

/* Why a `required` watchdog is unusable ("" when it is usable, or the mode is not `required`). */
static void unusable_reason(const Watchdog *w, const WatchdogSettings *s, char *why, size_t len) {
    why[0] = '\0';
    if (s->mode != WATCHDOG_REQUIRED)
        return;
    long long timeout = watchdog_timeout(s);
    if (timeout < s->loop_wait) {
        snprintf(why, len, "its timeout of %lld s (ttl %lld - safety_margin %lld) is shorter than loop_wait %lld s",
                 timeout, s->ttl, s->safety_margin, s->loop_wait);
        return;
    }
    if (w->given_up) {
        if (w->armed) {
            snprintf(why, len, "its timeout could not be made safe (tried again after a reload of the configuration)");
            return;
        }
        snprintf(why, len, "its activation failed (tried again after a reload of the configuration)");
        return;
    }
    if (w->armed)
        return;
    if (!w->drv) {
        snprintf(why, len, "watchdog is not supported on this platform");
        return;
    }
    int r = w->drv->check(s->device);
    if (r < 0)
        snprintf(why, len, "%s: %s", s->device, check_error(r));
}

bool watchdog_check(Watchdog *w, const WatchdogSettings *s) {
    char why[256];
    unusable_reason(w, s, why, sizeof why);
    bool failed = why[0] != '\0';
    if (failed && !streq(why, w->failed_why))
        log_warning("Watchdog device is not usable: %s; watchdog.mode is required: this node will not become the "
                    "leader",
                    why);
    else if (!failed && w->failed && s->mode == WATCHDOG_REQUIRED)
        log_info("the watchdog device %s is usable again", s->device);
    free(w->failed_why);
    w->failed_why = failed ? xstrdup(why) : NULL;
    w->failed = failed;
    return failed;
}
