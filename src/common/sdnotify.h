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
