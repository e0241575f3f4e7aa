/* systemd notifications (the sd_notify protocol, without libsystemd): readiness, reload, stop and watchdog notifications.
 * Every call is a no-op when NOTIFY_SOCKET is not set (not started by systemd). */
#pragma once

#include <stdbool.h>

#include "common/util.h"

void sdn_ready(const char *status);
void sdn_reloading(void); /* RELOADING=1 + MONOTONIC_USEC, then call sdn_ready() */
void sdn_stopping(void);
void sdn_status(const char *status);
void sdn_watchdog(void);
/* The interval at which WATCHDOG=1 must be sent (half of WatchdogSec), or 0 when disabled. */
usec_t sdn_watchdog_interval(void);

/* The watchdog keeper: with WatchdogSec set, a thread sends WATCHDOG=1 every half WatchdogSec while the
 * HA loop's promise holds: the loop promises, at every turn, to come back within the time a cycle may
 * take (sdn_watchdog_alive_until), and a bounded long step on its thread (a stop of PostgreSQL, a
 * script) extends the promise for its own bound (sdn_watchdog_extend). A loop that breaks its promise
 * (stuck) is no longer vouched for, and systemd restarts the agent WatchdogSec later; a frozen process
 * sends nothing at all. Deadlines are monotonic. sdn_watchdog_start(): 1 started, 0 not needed (no
 * watchdog), negative errno. */
int sdn_watchdog_start(void);
void sdn_watchdog_stop(void);
void sdn_watchdog_alive_until(usec_t deadline);
void sdn_watchdog_extend(usec_t deadline);
