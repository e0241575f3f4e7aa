/* Processes: the postmaster, and the PostgreSQL tools pgha runs (initdb, pg_ctl, pg_controldata,
 * pg_basebackup, pg_rewind, callbacks). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pg/pg.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

int pg_pidfd(pid_t pid) {
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    return fd < 0 ? -errno : fd;
}

bool pg_is_postmaster_of(pid_t pid, const char *data_dir) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* argv[0] ends in "postgres" and a -D/--pgdata argument names our data directory */
    const char *argv0 = buf;
    const char *base = strrchr(argv0, '/');
    base = base ? base + 1 : argv0;
    if (strncmp(base, "postgres", 8) != 0)
        return false;
    char want[4096];
    if (!realpath(data_dir, want))
        snprintf(want, sizeof want, "%s", data_dir);
    for (size_t off = strlen(buf) + 1; off < n; off += strlen(buf + off) + 1) {
        const char *arg = buf + off;
        const char *dir = NULL;
        if ((strcmp(arg, "-D") == 0 || strcmp(arg, "--pgdata") == 0) && off + strlen(arg) + 1 < n)
            dir = buf + off + strlen(arg) + 1;
        else if (strncmp(arg, "--pgdata=", 9) == 0)
            dir = arg + 9;
        if (dir) {
            char got[4096];
            if (!realpath(dir, got))
                snprintf(got, sizeof got, "%s", dir);
            if (strcmp(got, want) == 0)
                return true;
        }
    }
    return false;
}

bool pg_process_alive(pid_t pid) {
    if (pid <= 0)
        return false;
    if (kill(pid, 0) == 0)
        return true;
    return errno == EPERM;
}

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* In a child before exec: the agent's etcd and REST sockets (libcurl does not set FD_CLOEXEC) must not
 * leak into PostgreSQL or the tools. */
static void close_inherited_fds(void) {
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
        for (int fd = 3; fd < 1024; fd++)
            (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static void reset_child_signals(void) {
    close_inherited_fds();
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            signal(s, SIG_DFL); /* SIGPIPE included: the agent ignores it, its children must not */
}

int pg_spawn_postmaster(const char *postgres_path, const char *data_dir, const char *config_file,
                        const StrList *args, pid_t *ret_pid, char **ret_error) {
    StrList argv = {0};
    strlist_add(&argv, postgres_path);
    strlist_add(&argv, "-D");
    strlist_add(&argv, data_dir);
    if (config_file) {
        _cleanup_free_ char *cf = xasprintf("--config-file=%s", config_file);
        strlist_add(&argv, cf);
    }
    for (size_t i = 0; args && i < args->n; i++)
        strlist_add(&argv, args->v[i]);
    char **av = xcalloc(argv.n + 1, sizeof(char *));
    for (size_t i = 0; i < argv.n; i++)
        av[i] = argv.v[i];
    int errpipe[2];
    if (pipe2(errpipe, O_CLOEXEC) < 0) {
        *ret_error = xasprintf("pipe: %s", strerror(errno));
        free(av);
        strlist_clear(&argv);
        return -errno;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        *ret_error = xasprintf("fork: %s", strerror(e));
        close(errpipe[0]);
        close(errpipe[1]);
        free(av);
        strlist_clear(&argv);
        return -e;
    }
    if (pid == 0) {
        reset_child_signals();
        setsid();
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            dup2(devnull, 0);
            close(devnull);
        }
        execv(av[0], av);
        int e = errno;
        (void)!write(errpipe[1], &e, sizeof e);
        _exit(127);
    }
    close(errpipe[1]);
    int child_errno = 0;
    ssize_t n = read(errpipe[0], &child_errno, sizeof child_errno);
    close(errpipe[0]);
    free(av);
    if (n == (ssize_t)sizeof child_errno) {
        *ret_error = xasprintf("cannot execute %s: %s", argv.v[0], strerror(child_errno));
        (void)waitpid(pid, NULL, 0);
        strlist_clear(&argv);
        return -child_errno;
    }
    strlist_clear(&argv);
    *ret_pid = pid;
    return 0;
}

int pg_signal_stop(pid_t pid, PgStopMode mode, usec_t timeout) {
    int sig = mode == PG_STOP_SMART ? SIGTERM : mode == PG_STOP_FAST ? SIGINT : SIGQUIT;
    if (kill(pid, sig) < 0)
        return errno == ESRCH ? -ESRCH : -errno;
    int fd = pg_pidfd(pid);
    usec_t end = now_monotonic() + timeout;
    while (now_monotonic() < end) {
        /* reap it if it is our child */
        (void)waitpid(pid, NULL, WNOHANG);
        if (!pg_process_alive(pid)) {
            if (fd >= 0)
                close(fd);
            return 0;
        }
        if (fd >= 0) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            (void)poll(&p, 1, 100);
        } else {
            usleep(50 * 1000);
        }
    }
    if (fd >= 0)
        close(fd);
    return -ETIMEDOUT;
}

int run_command(const StrList *argv, const StrList *extra_env, usec_t timeout, char **ret_output) {
    if (ret_output)
        *ret_output = NULL;
    int out[2];
    if (pipe2(out, O_CLOEXEC) < 0)
        return -errno;
    char **av = xcalloc(argv->n + 1, sizeof(char *));
    for (size_t i = 0; i < argv->n; i++)
        av[i] = argv->v[i];
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(out[0]);
        close(out[1]);
        free(av);
        return -e;
    }
    if (pid == 0) {
        reset_child_signals();
        setpgid(0, 0);
        dup2(out[1], 1);
        dup2(out[1], 2);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            dup2(devnull, 0);
            close(devnull);
        }
        for (size_t i = 0; extra_env && i < extra_env->n; i++)
            putenv(extra_env->v[i]);
        execvp(av[0], av);
        dprintf(2, "cannot execute %s: %s\n", av[0], strerror(errno));
        _exit(127);
    }
    free(av);
    close(out[1]);
    StrBuf b;
    sb_init(&b);
    usec_t end = now_monotonic() + timeout;
    bool timed_out = false;
    for (;;) {
        usec_t now = now_monotonic();
        if (now >= end) {
            timed_out = true;
            break;
        }
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        int pr = poll(&p, 1, (int)((end - now) / USEC_PER_MSEC) + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        char buf[4096];
        ssize_t n = read(out[0], buf, sizeof buf);
        if (n <= 0)
            break;
        if (b.len < 4 * 1024 * 1024)
            sb_addn(&b, buf, (size_t)n);
    }
    close(out[0]);
    int status = 0;
    if (timed_out) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
    }
    pid_t w;
    while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        ;
    if (w < 0) {
        if (ret_output)
            *ret_output = sb_steal(&b);
        else
            sb_free(&b);
        return -ECHILD; /* reaped by someone else: the outcome is unknown */
    }
    if (ret_output && !*ret_output)
        *ret_output = sb_steal(&b);
    else
        sb_free(&b);
    if (timed_out)
        return -ETIMEDOUT;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
