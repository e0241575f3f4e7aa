#include "common/sdnotify.h"

#include <stdio.h>
#include <systemd/sd-daemon.h>

void sdn_ready(const char *status) {
    if (status)
        (void)sd_notifyf(0, "READY=1\nSTATUS=%s", status);
    else
        (void)sd_notify(0, "READY=1");
}

void sdn_reloading(void) {
    (void)sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)now_monotonic());
}

void sdn_stopping(void) { (void)sd_notify(0, "STOPPING=1"); }

void sdn_status(const char *status) { (void)sd_notifyf(0, "STATUS=%s", status); }

void sdn_watchdog(void) { (void)sd_notify(0, "WATCHDOG=1"); }

usec_t sdn_watchdog_interval(void) {
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0)
        return 0;
    return usec / 2;
}
