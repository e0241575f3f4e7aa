/* The watchdog device (watchdog.mode, spec §3.8, §4.13): the policy over a driver (common/watchdog_dev.h).
 *
 * While this node leads, a hardware or software watchdog resets the machine if the HA loop stops
 * renewing the leader lease: the device is armed with a timeout of ttl - safety_margin (ttl / 2 with
 * safety_margin -1) when the node becomes (or is) the lock holder and not paused, kept alive after
 * every successful lease renewal, and disarmed (the magic close) once PostgreSQL no longer runs as the
 * primary (a demotion, a pause, a clean shutdown). The HA thread alone calls these functions: the
 * keepalive comes from the loop itself, so that a stuck loop lets the device fire.
 *
 * mode `automatic` uses the device when it can and otherwise runs without it (a warning, once);
 * `required` never leads without it: the node then publishes watchdog_failed, and the others treat it as
 * not eligible. A failed activation is not tried again until the configuration is reloaded (SIGHUP), as
 * Patroni does, so that an unusable device is not opened (and the log filled) every cycle.
 *
 * Log lines keep Patroni's (patroni/watchdog/base.py). */
#pragma once

#include <stdbool.h>

#include "common/config.h"
#include "common/util.h"
#include "common/watchdog_dev.h"

typedef struct WatchdogSettings {
    int mode; /* WatchdogMode */
    const char *device;
    long long safety_margin; /* -1: the timeout is ttl / 2 */
    long long ttl, loop_wait;
    /* monotonic: the device must have fired by then (the leader lease's end less the margin by which a
     * primary is fenced early: lease_fence_at()); 0 without a lease. A timeout that would reach past it is
     * cut to the whole seconds left (at least 1). */
    usec_t fire_by;
} WatchdogSettings;

typedef struct Watchdog {
    const WatchdogDriver *drv; /* NULL: no driver on this platform */
    bool armed;                /* the device is open (and so armed) */
    int fd;                    /* ... its handle */
    char *device;              /* ... its path */
    WatchdogInfo info;         /* ... what it supports */
    int timeout;               /* ... its timeout in effect (s) */
    int base;                  /* ... the timeout the settings gave it (timeout: shorter, cut to the lease) */
    long long wanted;          /* ... the timeout the settings asked for */
    usec_t last_keepalive;     /* monotonic: the activation or the last keepalive */
    bool given_up;             /* an activation failed: not tried again until a reload; while armed (mode
                                * required, a new timeout could not be made safe): the node must not lead */
    bool failed;               /* mode required and the watchdog unusable (watchdog_check()) */
    char *failed_why;          /* ... why, as last logged */
} Watchdog;

/* The timeout the settings ask for: ttl - safety_margin, or ttl / 2 with safety_margin -1. */
long long watchdog_timeout(const WatchdogSettings *s);

void watchdog_init(Watchdog *w, const WatchdogDriver *drv);
/* Disarm a device still armed, free the rest. */
void watchdog_free(Watchdog *w);

static inline bool watchdog_is_running(const Watchdog *w) { return w->armed; }
/* Armed, but mode `required` and the timeout could no longer be made safe: the node must stop leading. */
static inline bool watchdog_unsafe(const Watchdog *w) { return w->armed && w->given_up; }

/* Once per cycle: is the mode `required` and the watchdog unusable (the timeout leaves no room for
 * loop_wait, the device is missing, not a character device or not writable, an activation failed)?
 * Only the device's path is looked at (opening it would arm it). Logged when the answer or its reason
 * changes; the result is kept in w->failed (published as watchdog_failed). */
bool watchdog_check(Watchdog *w, const WatchdogSettings *s);

/* Arm the device with the settings' timeout (Patroni's activate()). True when the node may lead: the
 * device is armed with a safe timeout, or the mode is `off`, or `automatic` without a usable device.
 * False: `required` and no safe watchdog. Does nothing while armed. */
bool watchdog_activate(Watchdog *w, const WatchdogSettings *s);

/* After a successful lease renewal, while armed: reset the device's timer, with a timeout that ends by
 * s->fire_by. Applies what changed in the settings meanwhile (a new device or mode off: disarmed, armed
 * again; a new ttl: the timeout, checked as at activation: when it cannot be made safe, `automatic`
 * disarms and `required` stays armed with given_up set, which watchdog_unsafe() reports). */
void watchdog_keepalive(Watchdog *w, const WatchdogSettings *s);

/* Disarm (the magic close). A device that cannot be disarmed gets a last keepalive and is closed: it
 * then resets the machine after its timeout (Patroni does the same). */
void watchdog_disable(Watchdog *w);

/* The agent exits while PostgreSQL may still run as a primary (it could not be stopped): the device is
 * closed without being disarmed, so that it fences the node once the lease is gone. */
void watchdog_leave_armed(Watchdog *w);

/* The configuration was reloaded: an activation that failed may be tried again; mode off disarms now. */
void watchdog_reloaded(Watchdog *w, const WatchdogSettings *s);

/* Monotonic time at which the armed device fires without another keepalive; 0 when not armed. */
usec_t watchdog_fires_at(const Watchdog *w);
