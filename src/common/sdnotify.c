/* The sd_notify protocol (systemd's documented, stable interface, sd_notify(3) and
 * systemd.exec(5) "$NOTIFY_SOCKET", "$WATCHDOG_USEC"): one datagram of "KEY=VALUE\n" lines sent to the
 * AF_UNIX socket named by $NOTIFY_SOCKET ('@' = abstract namespace). Written here rather than linking
 * libsystemd, which with its compression and crypto libraries costs about 0.7 MB of resident memory in
 * a process that only ever sends these few messages (systemd's man page recommends the same). */
#include "common/sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void notify(const char *fmt, ...) {
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof sa.sun_path)
        return; /* vsock and other forms are not used for services */
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof msg)
        n = (int)sizeof msg - 1;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    ssize_t rc;
    do
        rc = sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&sa,
                    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
    while (rc < 0 && errno == EINTR);
    close(fd);
}

void sdn_ready(const char *status) {
    if (status)
        notify("READY=1\nSTATUS=%s", status);
    else
        notify("READY=1");
}

void sdn_reloading(void) { notify("RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)now_monotonic()); }

void sdn_stopping(void) { notify("STOPPING=1"); }

void sdn_status(const char *status) { notify("STATUS=%s", status); }

void sdn_watchdog(void) { notify("WATCHDOG=1"); }

/* Half of $WATCHDOG_USEC when the watchdog is meant for this process ($WATCHDOG_PID absent or ours),
 * else 0: what sd_watchdog_enabled() tells. */
usec_t sdn_watchdog_interval(void) {
    const char *u = getenv("WATCHDOG_USEC");
    if (!u || !*u)
        return 0;
    char *end;
    errno = 0;
    unsigned long long usec = strtoull(u, &end, 10);
    if (errno || *end || usec == 0)
        return 0;
    const char *p = getenv("WATCHDOG_PID");
    if (p && *p) {
        errno = 0;
        unsigned long long pid = strtoull(p, &end, 10);
        if (errno || *end || pid != (unsigned long long)getpid())
            return 0;
    }
    return (usec_t)(usec / 2);
}
