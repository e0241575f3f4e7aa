/* The Linux watchdog driver (Documentation/watchdog/watchdog-api.rst): the device node is opened
 * write-only, configured and asked about with ioctl(2), kept alive by writing to it, and disarmed by
 * writing 'V' before the close. */
#include "common/watchdog_dev.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/watchdog.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(WD_OPT_SETTIMEOUT == WDIOF_SETTIMEOUT, "WD_OPT_SETTIMEOUT is WDIOF_SETTIMEOUT");
_Static_assert(WD_OPT_MAGICCLOSE == WDIOF_MAGICCLOSE, "WD_OPT_MAGICCLOSE is WDIOF_MAGICCLOSE");

static int linux_check(const char *device) {
    struct stat st;
    if (!device || !*device)
        return -EINVAL;
    if (stat(device, &st) < 0)
        return -errno;
    if (!S_ISCHR(st.st_mode))
        return -ENOTTY; /* a regular file or a directory is no watchdog */
    if (faccessat(AT_FDCWD, device, W_OK, AT_EACCESS) < 0)
        return -errno;
    return 0;
}

static int linux_open(const char *device) {
    /* O_CLOEXEC: pg_ctl, the callbacks and PostgreSQL itself must not inherit it: the device is only
     * released (and so disarmed by the magic close) when the last descriptor of it is closed */
    int fd = open(device, O_WRONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    return fd; /* the caller's handle: closed by magic_close() or close() */
}

static int linux_get_support(int fd, WatchdogInfo *ret) {
    struct watchdog_info wi;
    memset(&wi, 0, sizeof wi);
    if (ioctl(fd, WDIOC_GETSUPPORT, &wi) < 0)
        return -errno;
    *ret = (WatchdogInfo){.options = wi.options, .firmware_version = wi.firmware_version};
    size_t n = 0;
    while (n < sizeof wi.identity && wi.identity[n])
        n++;
    memcpy(ret->identity, wi.identity, n);
    ret->identity[n] = '\0';
    return 0;
}

static int linux_set_timeout(int fd, int seconds) {
    if (seconds <= 0 || seconds >= 0xFFFF)
        return -EINVAL;
    int t = seconds; /* the driver may round it: get_timeout() tells */
    return ioctl(fd, WDIOC_SETTIMEOUT, &t) < 0 ? -errno : 0;
}

static int linux_get_timeout(int fd, int *ret_seconds) {
    int t = 0;
    if (ioctl(fd, WDIOC_GETTIMEOUT, &t) < 0)
        return -errno;
    *ret_seconds = t;
    return 0;
}

static int write_one(int fd, char c) {
    for (;;) {
        ssize_t n = write(fd, &c, 1);
        if (n == 1)
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 ? -errno : -EIO;
    }
}

static int linux_keepalive(int fd) { return write_one(fd, '1'); }

static int linux_magic_close(int fd) {
    int r = write_one(fd, 'V');
    if (close(fd) < 0 && r == 0 && errno != EINTR)
        r = -errno;
    return r;
}

static void linux_close(int fd) { (void)close(fd); }

const WatchdogDriver watchdog_linux_driver = {
    .check = linux_check,
    .open = linux_open,
    .get_support = linux_get_support,
    .set_timeout = linux_set_timeout,
    .get_timeout = linux_get_timeout,
    .keepalive = linux_keepalive,
    .magic_close = linux_magic_close,
    .close = linux_close,
};
