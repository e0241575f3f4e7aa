/* A watchdog device driver: the mechanism behind watchdog.mode (the policy, when to arm, keep alive and
 * disarm it, is src/agent/watchdog.c). Every call returns 0 (or a handle) on success and a negative errno
 * on failure; nothing here logs.
 *
 * Opening a watchdog device arms it: from then on it must be kept alive more often than its timeout, or
 * the machine is reset. Writing the magic character 'V' before the close disarms it (when the device
 * supports it: WD_OPT_MAGICCLOSE); a close without it, or the process dying, leaves it armed. */
#pragma once

#include <stdint.h>

/* the options of <linux/watchdog.h> (WDIOF_*) the policy looks at */
#define WD_OPT_SETTIMEOUT 0x0080u /* the timeout can be set (WDIOC_SETTIMEOUT) */
#define WD_OPT_MAGICCLOSE 0x0100u /* 'V' before the close disarms it */

typedef struct WatchdogInfo {
    uint32_t options; /* WD_OPT_* (WDIOF_*) */
    uint32_t firmware_version;
    char identity[33]; /* "Software Watchdog", "iTCO_wdt", ... */
} WatchdogInfo;

typedef struct WatchdogDriver {
    /* Without opening it (that would arm it): can this process use `device` at all? It exists
     * (-ENOENT), is a character device (-ENOTTY) and may be written (-EACCES). */
    int (*check)(const char *device);
    /* Open, and so arm, the device: a handle >= 0. The handle is not inherited by child processes (a
     * child holding it would keep the device from being disarmed). */
    int (*open)(const char *device);
    /* What the device is and supports (WDIOC_GETSUPPORT): fails on anything that is not a watchdog. */
    int (*get_support)(int fd, WatchdogInfo *ret);
    int (*set_timeout)(int fd, int seconds); /* WDIOC_SETTIMEOUT (1 .. 65534 s) */
    int (*get_timeout)(int fd, int *ret_seconds);
    int (*keepalive)(int fd);
    /* Disarm with the magic character, then close; the handle is closed whatever the result. */
    int (*magic_close)(int fd);
    /* Close without disarming: an armed device then fires after its timeout. */
    void (*close)(int fd);
} WatchdogDriver;

/* Linux: open(2), ioctl(2) and write(2) on the device node (softdog, iTCO_wdt, a BMC's, ...). */
extern const WatchdogDriver watchdog_linux_driver;
