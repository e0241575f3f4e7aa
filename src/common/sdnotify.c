#include "common/sdnotify.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>
#include <time.h>

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

/* ---- the watchdog keeper ---- */

static pthread_t keeper;
static bool keeper_running;
static _Atomic bool keeper_stop;
static _Atomic usec_t alive_until;

void sdn_watchdog_alive_until(usec_t deadline) { atomic_store(&alive_until, deadline); }

void sdn_watchdog_extend(usec_t deadline) {
    usec_t cur = atomic_load(&alive_until);
    while (cur < deadline && !atomic_compare_exchange_weak(&alive_until, &cur, deadline))
        ;
}

static void *keeper_main(void *arg) {
    usec_t interval = *(usec_t *)arg;
    free(arg);
    (void)pthread_setname_np(pthread_self(), "pgha-sdwatchdog");
    usec_t next = 0;
    while (!atomic_load(&keeper_stop)) {
        usec_t now = now_monotonic();
        if (now >= next) {
            if (now < atomic_load(&alive_until))
                sdn_watchdog();
            next = now + interval;
        }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int sdn_watchdog_start(void) {
    usec_t interval = sdn_watchdog_interval();
    if (keeper_running || !interval)
        return 0;
    atomic_store(&keeper_stop, false);
    usec_t *arg = xmalloc(sizeof *arg);
    *arg = interval;
    int r = pthread_create(&keeper, NULL, keeper_main, arg);
    if (r != 0) {
        free(arg);
        return -r;
    }
    keeper_running = true;
    return 1;
}

void sdn_watchdog_stop(void) {
    if (!keeper_running)
        return;
    atomic_store(&keeper_stop, true);
    pthread_join(keeper, NULL);
    keeper_running = false;
}
