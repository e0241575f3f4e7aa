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

/* When the process started (epoch seconds, from /proc: its start in clock ticks after boot, and the boot
 * time), or 0 when unknown. */
static long long process_start_time(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* the fields after the command name "(comm)": state is field 3, starttime field 22 */
    const char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p++;
    for (int field = 3; field <= 22 && p; field++) {
        while (*p == ' ')
            p++;
        if (field == 22)
            break;
        p = strchr(p, ' ');
    }
    if (!p)
        return 0;
    char *end = NULL;
    unsigned long long ticks = strtoull(p, &end, 10);
    if (end == p)
        return 0;
    long long btime = 0;
    f = fopen("/proc/stat", "re");
    if (!f)
        return 0;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "btime ", 6) == 0) {
            (void)parse_ll(str_trim(line + 6), &btime);
            break;
        }
    fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    if (btime <= 0 || hz <= 0)
        return 0;
    return btime + (long long)(ticks / (unsigned long long)hz);
}

bool pg_is_postmaster_of(pid_t pid, const char *data_dir, long long pidfile_start_time) {
    /* as Patroni's PostmasterProcess: the process started when postmaster.pid says (within 3 s), or the
     * pid was reused by another process */
    if (pidfile_start_time > 0) {
        long long started = process_start_time(pid);
        if (started > 0 && llabs(started - pidfile_start_time) > 3)
            return false;
    }
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
    /* a single-user backend (`postgres --single`: crash recovery, maintenance) is no postmaster: it
     * writes its pid negated into postmaster.pid (pg_read_pid_file() refuses that), and its argument
     * list says so too */
    for (size_t off = strlen(buf) + 1; off < n; off += strlen(buf + off) + 1)
        if (strcmp(buf + off, "--single") == 0)
            return false;
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

/* A zombie (exited, not reaped yet: a postmaster taken over after an agent restart is not our child, and its
 * exit is reaped by init or a subreaper, maybe late) has ended: it runs nothing. */
static bool process_is_zombie(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* "pid (comm) S ...": comm may hold spaces and parentheses */
    return p && p[1] == ' ' && p[2] == 'Z';
}

bool pg_process_alive(pid_t pid) {
    if (pid <= 0)
        return false;
    if (kill(pid, 0) == 0)
        return !process_is_zombie(pid);
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

int pg_spawn_postmaster(const char *postgres_path, const char *data_dir, const char *config_file, const StrList *args,
                        pid_t *ret_pid, char **ret_error) {
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

/* ---- cancellable children ---- */

static _Thread_local PgChild *bound_child;

void pg_child_init(PgChild *c) {
    pthread_mutex_init(&c->lock, NULL);
    c->pid = 0;
    c->cancelled = false;
}

void pg_child_destroy(PgChild *c) { pthread_mutex_destroy(&c->lock); }

void pg_child_bind(PgChild *c) { bound_child = c; }

void pg_child_cancel(PgChild *c, int sig) {
    pthread_mutex_lock(&c->lock);
    c->cancelled = true;
    if (c->pid > 0)
        (void)kill(-c->pid, sig); /* the group exists until run_command reaps its leader */
    pthread_mutex_unlock(&c->lock);
}

bool pg_child_cancelled(void) {
    PgChild *c = bound_child;
    if (!c)
        return false;
    pthread_mutex_lock(&c->lock);
    bool r = c->cancelled;
    pthread_mutex_unlock(&c->lock);
    return r;
}

/* ---- run_command ---- */

/* The environment for the child: ours, with extra ("NAME=value") added or replacing. The strings are
 * borrowed, only the array is allocated. */
static char **build_envp(const StrList *extra) {
    extern char **environ;
    size_t n = 0;
    while (environ && environ[n])
        n++;
    size_t ne = extra ? extra->n : 0;
    char **envp = xcalloc(n + ne + 1, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool replaced = false;
        for (size_t j = 0; j < ne && !replaced; j++) {
            const char *eq = strchr(extra->v[j], '=');
            size_t len = eq ? (size_t)(eq - extra->v[j]) : strlen(extra->v[j]);
            replaced = strncmp(environ[i], extra->v[j], len) == 0 && environ[i][len] == '=';
        }
        if (!replaced)
            envp[k++] = environ[i];
    }
    for (size_t j = 0; j < ne; j++)
        if (strchr(extra->v[j], '='))
            envp[k++] = extra->v[j];
    envp[k] = NULL;
    return envp;
}

/* execvp's lookup, done before fork(): the first executable PATH entry, else the name itself (execve
 * then fails with ENOENT, reported to the caller). */
static char *resolve_path(const char *name) {
    if (strchr(name, '/'))
        return xstrdup(name);
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path;;) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        char *cand = len ? xasprintf("%.*s/%s", (int)len, p, name) : xasprintf("./%s", name);
        if (access(cand, X_OK) == 0)
            return cand;
        free(cand);
        if (!colon)
            break;
        p = colon + 1;
    }
    return xstrdup(name);
}

int run_command(const StrList *argv, const StrList *extra_env, usec_t timeout, char **ret_output) {
    if (ret_output)
        *ret_output = NULL;
    if (!argv || argv->n == 0)
        return -EINVAL;
    PgChild *child = bound_child;
    if (pg_child_cancelled())
        return -ECANCELED;
    int out[2], errpipe[2];
    if (pipe2(out, O_CLOEXEC) < 0)
        return -errno;
    if (pipe2(errpipe, O_CLOEXEC) < 0) {
        int e = errno;
        close(out[0]);
        close(out[1]);
        return -e;
    }
    char **av = xcalloc(argv->n + 1, sizeof(char *));
    for (size_t i = 0; i < argv->n; i++)
        av[i] = argv->v[i];
    char **envp = build_envp(extra_env);
    char *path = resolve_path(av[0]);
    if (child)
        pthread_mutex_lock(&child->lock); /* publish the pid before anyone can cancel without it */
    pid_t pid = fork();
    if (pid == 0) {
        /* async-signal-safe calls only from here on */
        reset_child_signals();
        setpgid(0, 0);
        dup2(out[1], 1);
        dup2(out[1], 2);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            dup2(devnull, 0);
            close(devnull);
        }
        execve(path, av, envp);
        int e = errno;
        (void)!write(errpipe[1], &e, sizeof e);
        _exit(127);
    }
    int fork_errno = errno;
    if (pid > 0) {
        (void)setpgid(pid, pid); /* also here, so that a kill(-pid) right after fork finds the group */
        if (child) {
            child->pid = pid;
            if (child->cancelled)
                (void)kill(-pid, SIGTERM);
        }
    }
    if (child)
        pthread_mutex_unlock(&child->lock);
    free(av);
    free(envp);
    close(out[1]);
    close(errpipe[1]);
    if (pid < 0) {
        free(path);
        close(out[0]);
        close(errpipe[0]);
        return -fork_errno;
    }
    StrBuf b;
    sb_init(&b);
    int child_errno = 0;
    ssize_t en;
    while ((en = read(errpipe[0], &child_errno, sizeof child_errno)) < 0 && errno == EINTR)
        ;
    close(errpipe[0]);
    bool exec_failed = en == (ssize_t)sizeof child_errno;
    if (exec_failed)
        sb_addf(&b, "cannot execute %s: %s\n", path, strerror(child_errno));
    free(path);
    /* The timeout bounds the whole run: reading the output until EOF, then waiting for the exit (a
     * script may close or redirect its output and go on: `exec >/dev/null; sleep 1000`). The exit is
     * noticed without reaping (waitid WNOWAIT): the pid stays ours, and published, until waitpid below. */
    usec_t end = now_monotonic() + timeout;
    bool timed_out = false, eof = exec_failed;
    int pfd = pg_pidfd(pid);
    for (;;) {
        if (eof) {
            siginfo_t si = {0};
            int wr = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
            if (wr < 0 && errno == EINTR)
                continue;
            if (wr < 0 || si.si_pid == pid)
                break; /* exited (or not ours to wait for: waitpid below says so) */
        }
        usec_t now = now_monotonic();
        if (now >= end) {
            timed_out = true;
            break;
        }
        int ms = (int)((end - now) / USEC_PER_MSEC) + 1;
        if (eof && pfd < 0 && ms > 50)
            ms = 50; /* no pidfd (old kernel): look again every 50 ms */
        struct pollfd p = {.fd = eof ? pfd : out[0], .events = POLLIN};
        int pr = poll(&p, 1, ms);
        if (pr <= 0 || eof)
            continue;
        char buf[4096];
        ssize_t n = read(out[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            eof = true;
            continue;
        }
        if (b.len < 4 * 1024 * 1024)
            sb_addn(&b, buf, (size_t)n);
    }
    if (pfd >= 0)
        close(pfd);
    close(out[0]);
    int status = 0;
    if (timed_out) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
    }
    /* the pid stays ours until it is reaped: unpublish it first, so that a cancel cannot hit a reused pid */
    if (child) {
        pthread_mutex_lock(&child->lock);
        child->pid = 0;
        pthread_mutex_unlock(&child->lock);
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

int run_split(const char *line, const char *extra_arg, const StrList *extra_env, usec_t timeout, char **ret_output) {
    if (ret_output)
        *ret_output = NULL;
    StrList argv = {0};
    char *err = NULL;
    if (pg_shlex_split(line, &argv, &err) < 0 || argv.n == 0) {
        if (ret_output)
            *ret_output = xasprintf("cannot split the command line: %s", err ? err : "it is empty");
        free(err);
        strlist_clear(&argv);
        return -EINVAL;
    }
    if (extra_arg)
        strlist_add(&argv, extra_arg);
    int r = run_command(&argv, extra_env, timeout, ret_output);
    strlist_clear(&argv);
    return r;
}

/* The previous callback of a slot, its whole process group: its leader is reaped only here, so the group
 * id cannot have been reused. A leader that does not go within a second (stuck in the kernel) is left. */
static void end_previous(pid_t *slot) {
    pid_t pid = *slot;
    *slot = 0;
    if (pid <= 0)
        return;
    (void)kill(-pid, SIGKILL);
    (void)kill(pid, SIGKILL);
    for (int i = 0; i < 100; i++) {
        pid_t w = waitpid(pid, NULL, WNOHANG);
        if (w == pid || (w < 0 && errno != EINTR))
            return;
        usleep(10 * 1000);
    }
}

int pg_callback_run(PgCallbacks *cb, bool reload_slot, const StrList *argv, char **ret_error) {
    if (!argv || argv->n == 0) {
        *ret_error = xstrdup("empty command");
        return -EINVAL;
    }
    pid_t *slot = reload_slot ? &cb->reload_pid : &cb->pid;
    end_previous(slot);
    /* everything the child needs is prepared before fork (only async-signal-safe calls after it) */
    char **av = xcalloc(argv->n + 1, sizeof(char *));
    for (size_t i = 0; i < argv->n; i++)
        av[i] = argv->v[i];
    char *path = resolve_path(av[0]);
    extern char **environ;
    int errpipe[2];
    if (pipe2(errpipe, O_CLOEXEC) < 0) {
        int e = errno;
        *ret_error = xasprintf("pipe: %s", strerror(e));
        free(av);
        free(path);
        return -e;
    }
    pid_t pid = fork();
    if (pid == 0) {
        reset_child_signals(); /* also closes the agent's descriptors on exec */
        setsid();              /* a process group of its own: the next callback ends it with its children */
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            dup2(devnull, 0);
            close(devnull);
        }
        execve(path, av, environ);
        int e = errno;
        (void)!write(errpipe[1], &e, sizeof e);
        _exit(127);
    }
    int fork_errno = errno;
    close(errpipe[1]);
    free(av);
    if (pid < 0) {
        close(errpipe[0]);
        *ret_error = xasprintf("fork: %s", strerror(fork_errno));
        free(path);
        return -fork_errno;
    }
    int child_errno = 0;
    ssize_t n;
    while ((n = read(errpipe[0], &child_errno, sizeof child_errno)) < 0 && errno == EINTR)
        ;
    close(errpipe[0]);
    if (n == (ssize_t)sizeof child_errno) {
        *ret_error = xasprintf("cannot execute %s: %s", path, strerror(child_errno));
        free(path);
        (void)waitpid(pid, NULL, 0);
        return -child_errno;
    }
    free(path);
    *slot = pid;
    return 0;
}
