/* run_command(): PATH lookup, the environment given to the child, exec failures, timeouts, and
 * cancellation of a running child's process group from another thread (shutdown during a clone). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "unit_helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "pg/pg.h"

static int run(const char *const *args, const StrList *env, usec_t timeout, char **out) {
    StrList argv = {0};
    for (size_t i = 0; args[i]; i++)
        strlist_add(&argv, args[i]);
    int r = run_command(&argv, env, timeout, out);
    strlist_clear(&argv);
    return r;
}

static void test_path_lookup_and_output(void **state) {
    (void)state;
    char *out = NULL;
    const char *args[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    assert_int_equal(run(args, NULL, 10 * USEC_PER_SEC, &out), 3);
    assert_non_null(strstr(out, "out\n"));
    assert_non_null(strstr(out, "err\n"));
    free(out);
}

static void test_extra_env_adds_and_replaces(void **state) {
    (void)state;
    setenv("PGHA_TEST_KEEP", "kept", 1);
    setenv("PGHA_TEST_REPLACE", "old", 1);
    StrList env = {0};
    strlist_add(&env, "PGHA_TEST_REPLACE=new");
    strlist_add(&env, "PGHA_TEST_ADD=added");
    char *out = NULL;
    const char *args[] = {
        "/bin/sh", "-c",
        "echo \"$PGHA_TEST_KEEP $PGHA_TEST_REPLACE $PGHA_TEST_ADD\"; env | grep -c '^PGHA_TEST_REPLACE='", NULL};
    assert_int_equal(run(args, &env, 10 * USEC_PER_SEC, &out), 0);
    assert_string_equal(out, "kept new added\n1\n");
    free(out);
    strlist_clear(&env);
    /* the agent's own environment is untouched */
    assert_string_equal(getenv("PGHA_TEST_REPLACE"), "old");
    assert_null(getenv("PGHA_TEST_ADD"));
}

static void test_missing_program_is_reported(void **state) {
    (void)state;
    char *out = NULL;
    const char *args[] = {"pgha-no-such-program-anywhere", NULL};
    assert_int_equal(run(args, NULL, 10 * USEC_PER_SEC, &out), 127);
    assert_non_null(strstr(out, "cannot execute pgha-no-such-program-anywhere"));
    free(out);
    const char *args2[] = {"/nonexistent/dir/tool", NULL};
    assert_int_equal(run(args2, NULL, 10 * USEC_PER_SEC, &out), 127);
    assert_non_null(strstr(out, "No such file"));
    free(out);
}

static void test_timeout_kills_the_group(void **state) {
    (void)state;
    char *out = NULL;
    const char *args[] = {"/bin/sh", "-c", "sleep 30 & sleep 30", NULL};
    usec_t t0 = now_monotonic();
    assert_int_equal(run(args, NULL, 300 * USEC_PER_MSEC, &out), -ETIMEDOUT);
    assert_true(now_monotonic() - t0 < 5 * USEC_PER_SEC);
    free(out);
}

/* A script that closes its output and then hangs (`exec >/dev/null; sleep`: a before_stop or pre_promote
 * whose output goes elsewhere): the timeout bounds the whole run, not only the reading of the output;
 * the group is killed. */
static void test_timeout_after_output_closed(void **state) {
    (void)state;
    char *out = NULL;
    const char *args[] = {"/bin/sh", "-c", "echo before; exec >/dev/null 2>&1; sleep 30", NULL};
    usec_t t0 = now_monotonic();
    assert_int_equal(run(args, NULL, 300 * USEC_PER_MSEC, &out), -ETIMEDOUT);
    assert_true(now_monotonic() - t0 < 5 * USEC_PER_SEC);
    assert_non_null(out);
    assert_non_null(strstr(out, "before\n")); /* what it wrote before is kept */
    free(out);
    /* a quick command that closed its output still reports its exit status */
    const char *quick[] = {"/bin/sh", "-c", "exec >/dev/null 2>&1; sleep 0.2; exit 4", NULL};
    assert_int_equal(run(quick, NULL, 10 * USEC_PER_SEC, NULL), 4);
}

/* The configuration's command lines (pre_promote, before_stop, post_bootstrap) as Patroni runs them:
 * shlex-split, no shell, the extra argument appended as one word. */
static void test_run_split(void **state) {
    (void)state;
    char *out = NULL;
    /* quotes group words; $HOME, `>` and `;` are plain words (no shell) */
    assert_int_equal(run_split("/bin/echo 'a  b' \"$HOME\" '>' x\\;y", "host=h dbname=postgres", NULL,
                               10 * USEC_PER_SEC, &out),
                     0);
    assert_string_equal(out, "a  b $HOME > x;y host=h dbname=postgres\n");
    free(out);
    /* the exit status */
    assert_int_equal(run_split("/bin/sh -c 'exit 3'", NULL, NULL, 10 * USEC_PER_SEC, NULL), 3);
    /* an open quote, an empty line: refused with the reason, nothing run */
    assert_int_equal(run_split("/bin/echo 'unbalanced", NULL, NULL, 10 * USEC_PER_SEC, &out), -EINVAL);
    assert_non_null(strstr(out, "cannot split the command line"));
    free(out);
    assert_int_equal(run_split("   ", NULL, NULL, 10 * USEC_PER_SEC, &out), -EINVAL);
    free(out);
}

/* A process that looks like `<argv0> <args...>` in /proc/<pid>/cmdline and sleeps (dash, renamed). */
static pid_t spawn_named(const char *const *argv) {
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0); /* its sleep goes with it (reap_named) */
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) { /* not the test's output: the TAP reader waits for its end */
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execv("/bin/sh", (char *const *)argv);
        _exit(127);
    }
    usleep(100000); /* until it has exec'ed */
    return pid;
}

static void reap_named(pid_t pid) {
    kill(-pid, SIGKILL);
    (void)waitpid(pid, NULL, 0);
}

/* Taking over a running postmaster from postmaster.pid (pg_instance_find_running): only a postmaster of
 * this data directory, as Patroni's PostmasterProcess.from_pidfile() checks it: not a single-user
 * backend (`postgres --single`: crash recovery, or someone's maintenance), and started when
 * postmaster.pid says (within 3 s: a pid reused by another process is not it). */
static void test_postmaster_of(void **state) {
    (void)state;
    char *dir = tmpdir_make();
    time_t now = time(NULL);
    const char *pm[] = {"/usr/lib/postgresql/15/bin/postgres", "-c", "sleep 30; true", "-D", dir, NULL};
    pid_t p = spawn_named(pm);
    assert_true(pg_is_postmaster_of(p, dir, (long long)now));
    assert_true(pg_is_postmaster_of(p, dir, 0)); /* no start time in postmaster.pid: not compared */
    assert_false(pg_is_postmaster_of(p, "/nonexistent/other", (long long)now));
    /* started an hour before the process did: the pid was reused */
    assert_false(pg_is_postmaster_of(p, dir, (long long)now - 3600));
    reap_named(p);

    const char *single[] = {"postgres", "-c", "sleep 30; true", "--single", "-D", dir, NULL};
    p = spawn_named(single);
    assert_false(pg_is_postmaster_of(p, dir, (long long)now));
    reap_named(p);
    tmpdir_remove(dir);
}

/* pg_checkpoint_end()'s reading of pg_waldump's output (stdout and stderr together), as Patroni's
 * _get_checkpoint_end(): the record at the checkpoint, then the error about the next one names where the
 * checkpoint record ends (PostgreSQL 15's output; 16 says "expected at least"). */
static void test_waldump_record_end(void **state) {
    (void)state;
    const char *pg15 =
        "rmgr: XLOG        len (rec/tot):    114/   114, tx:          0, lsn: 0/01500790, prev 0/01500718, desc: "
        "CHECKPOINT_SHUTDOWN redo 0/1500790; tli 1; prev tli 1; fpw true; shutdown\n"
        "pg_waldump: error: error in WAL record at 0/1500790: invalid record length at 0/1500808: wanted 24, got 0\n";
    assert_int_equal(pg_waldump_record_end(pg15, 0x1500790), 0x1500808);
    const char *pg16 =
        "rmgr: XLOG        len (rec/tot):    114/   114, tx:          0, lsn: 1/0A000028, prev 1/0A000000, "
        "desc: CHECKPOINT_SHUTDOWN redo 1/A000028; shutdown\n"
        "pg_waldump: error: error in WAL record at 1/A000028: invalid record length at 1/A0000A0: "
        "expected at least 24, got 0\n";
    assert_int_equal(pg_waldump_record_end(pg16, 0x10A000028LL), 0x10A0000A0LL);
    /* another record, another error, nothing: unknown */
    assert_int_equal(pg_waldump_record_end(pg15, 0x1500718), 0);
    assert_int_equal(pg_waldump_record_end("pg_waldump: error: could not find file", 0x1500790), 0);
    assert_int_equal(pg_waldump_record_end(NULL, 0x1500790), 0);
}

/* Running (not gone, not a zombie waiting for whoever adopted it). */
static bool alive(pid_t pid) {
    for (int i = 0; i < 50; i++) {
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "re");
        if (!f)
            return false;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')');
        if (p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'))
            return false;
        usleep(20000);
    }
    return true;
}

typedef struct {
    PgChild child;
    int result;
    pid_t grandchild;
} CancelArg;

static void *cancel_worker(void *arg) {
    CancelArg *c = arg;
    pg_child_bind(&c->child);
    char *out = NULL;
    /* a tool that ignores nothing and has a child of its own, like pg_basebackup's WAL streamer */
    const char *args[] = {"/bin/sh", "-c", "sleep 60 & echo $!; wait", NULL};
    c->result = run(args, NULL, 120 * USEC_PER_SEC, &out);
    if (out)
        c->grandchild = (pid_t)strtol(out, NULL, 10);
    free(out);
    /* once cancelled, nothing more runs in this thread */
    const char *again[] = {"/bin/true", NULL};
    int r = run(again, NULL, 10 * USEC_PER_SEC, NULL);
    assert_int_equal(r, -ECANCELED);
    assert_true(pg_child_cancelled());
    pg_child_bind(NULL);
    return NULL;
}

static void test_cancel_kills_the_running_child_group(void **state) {
    (void)state;
    CancelArg c = {0};
    pg_child_init(&c.child);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cancel_worker, &c), 0);
    /* wait until the child runs */
    for (int i = 0; i < 200; i++) {
        pthread_mutex_lock(&c.child.lock);
        pid_t p = c.child.pid;
        pthread_mutex_unlock(&c.child.lock);
        if (p > 0)
            break;
        usleep(10000);
    }
    usleep(100000);
    usec_t t0 = now_monotonic();
    pg_child_cancel(&c.child, SIGTERM);
    pthread_join(t, NULL);
    assert_true(now_monotonic() - t0 < 5 * USEC_PER_SEC);
    assert_int_equal(c.result, 128 + SIGTERM);
    assert_true(c.grandchild > 0);
    /* the whole group went (its signal handled, the orphan reaped by init: a moment on a busy machine) */
    for (int i = 0; i < 300 && alive(c.grandchild); i++)
        usleep(10000);
    assert_false(alive(c.grandchild));
    pg_child_destroy(&c.child);
}

/* pg_control's state word (the switchover's cheap look) and pg_controldata's CRC warning. */
static void write_bytes(const char *path, const void *data, size_t len, mode_t mode) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

/* A pid that is gone, or a zombie (killed, waiting for whoever adopted it). */
static bool process_gone(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return true;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

static pid_t wait_pid_file(const char *path) {
    for (int i = 0; i < 500; i++) {
        FILE *f = fopen(path, "re");
        long v = 0;
        if (f) {
            int ok = fscanf(f, "%ld", &v);
            fclose(f);
            if (ok == 1 && v > 0)
                return (pid_t)v;
        }
        usleep(10 * 1000);
    }
    fail_msg("no pid in %s", path);
    return 0;
}

static int callback(PgCallbacks *cb, bool reload, const char *script, const char *action) {
    StrList argv = {0};
    strlist_add(&argv, "sh");
    strlist_add(&argv, "-c");
    strlist_add(&argv, script);
    strlist_add(&argv, action); /* $0 */
    strlist_add(&argv, "replica");
    strlist_add(&argv, "demo");
    char *err = NULL;
    int r = pg_callback_run(cb, reload, &argv, &err);
    if (r < 0) {
        assert_non_null(err);
        free(err);
    }
    strlist_clear(&argv);
    return r;
}

/* Patroni's CallbackExecutor: a new callback ends the previous one with its children; on_reload has a slot of
 * its own; the callback gets its arguments; an unknown command is an error. */
static void test_callback_executor(void **state) {
    (void)state;
    char dir[] = "/tmp/pgha-test-cb-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char p1[300], p2[300], args[300], script[1024];
    snprintf(p1, sizeof p1, "%s/child1", dir);
    snprintf(p2, sizeof p2, "%s/child2", dir);
    snprintf(args, sizeof args, "%s/args", dir);
    PgCallbacks cb = {0};

    /* a long on_start that started a child of its own */
    snprintf(script, sizeof script, "sleep 60 & echo $! > %s; wait", p1);
    assert_int_equal(callback(&cb, false, script, "on_start"), 0);
    pid_t first = cb.pid, child1 = wait_pid_file(p1);
    /* a long on_reload: its own slot */
    snprintf(script, sizeof script, "sleep 60 & echo $! > %s; wait", p2);
    assert_int_equal(callback(&cb, true, script, "on_reload"), 0);
    pid_t child2 = wait_pid_file(p2);
    /* the next callback ends the first one and its child, not the on_reload one */
    snprintf(script, sizeof script, "echo \"$0 $1 $2\" > %s", args);
    assert_int_equal(callback(&cb, false, script, "on_role_change"), 0);
    assert_true(cb.pid > 0 && cb.pid != first);
    for (int i = 0; i < 200 && !process_gone(child1); i++)
        usleep(10 * 1000);
    assert_true(process_gone(child1));
    assert_true(process_gone(first));
    assert_false(process_gone(child2));
    /* it ran with its arguments */
    for (int i = 0; i < 500; i++) {
        struct stat st;
        if (stat(args, &st) == 0 && st.st_size > 0)
            break;
        usleep(10 * 1000);
    }
    FILE *f = fopen(args, "re");
    assert_non_null(f);
    char line[128] = "";
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_string_equal(line, "on_role_change replica demo\n");
    /* the next on_reload ends the previous one */
    assert_int_equal(callback(&cb, true, "exit 0", "on_reload"), 0);
    for (int i = 0; i < 200 && !process_gone(child2); i++)
        usleep(10 * 1000);
    assert_true(process_gone(child2));

    /* a command that cannot be executed: an error, and the slot is free */
    StrList argv = {0};
    strlist_add(&argv, "/nonexistent/callback");
    char *err = NULL;
    assert_true(pg_callback_run(&cb, false, &argv, &err) < 0);
    assert_non_null(strstr(err, "cannot execute"));
    free(err);
    strlist_clear(&argv);
    assert_int_equal(cb.pid, 0);
    assert_int_equal(pg_callback_run(&cb, false, &argv, &err), -EINVAL); /* empty */
    free(err);
    (void)waitpid(cb.reload_pid, NULL, 0);

    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* A process that exited and was not reaped (a zombie: a taken-over postmaster whose reaper is late) is not alive. */
static void test_zombie_is_not_alive(void **state) {
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(0);
    assert_true(pg_process_alive(getpid()));
    /* until it has exited (a zombie: not reaped yet) */
    for (int i = 0; i < 500 && pg_process_alive(pid); i++)
        usleep(10 * 1000);
    assert_false(pg_process_alive(pid));
    assert_int_equal(kill(pid, 0), 0); /* it still exists, as a zombie */
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    assert_false(pg_process_alive(pid));
}

static void test_pg_control_state(void **state) {
    (void)state;
    char dir[] = "/tmp/pgha-test-control-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char global[256], control[300], script[300];
    snprintf(global, sizeof global, "%s/global", dir);
    snprintf(control, sizeof control, "%s/pg_control", global);
    snprintf(script, sizeof script, "%s/pg_controldata", dir);
    assert_false(pg_control_says_shut_down(dir)); /* no file */
    assert_int_equal(mkdir(global, 0700), 0);
    unsigned char head[8192] = {0};
    int32_t st = 1; /* DB_SHUTDOWNED */
    memcpy(head + 16, &st, sizeof st);
    write_bytes(control, head, 12, 0600); /* too short */
    assert_false(pg_control_says_shut_down(dir));
    write_bytes(control, head, sizeof head, 0600);
    assert_true(pg_control_says_shut_down(dir));
    st = 2; /* DB_SHUTDOWNED_IN_RECOVERY: a replica's, never a primary's clean shutdown */
    memcpy(head + 16, &st, sizeof st);
    write_bytes(control, head, sizeof head, 0600);
    assert_false(pg_control_says_shut_down(dir));
    st = 6; /* DB_IN_PRODUCTION */
    memcpy(head + 16, &st, sizeof st);
    write_bytes(control, head, sizeof head, 0600);
    assert_false(pg_control_says_shut_down(dir));

    /* pg_controldata warns about a CRC mismatch and exits 0: not taken as pg_control's contents */
    const char *bad = "#!/bin/sh\necho 'WARNING: Calculated CRC checksum does not match value stored in file.'\n"
                      "echo 'Database cluster state:               shut down'\n"
                      "echo 'Latest checkpoint location:           0/5000028'\n";
    write_bytes(script, bad, strlen(bad), 0700);
    ControlData cd;
    char *err = NULL;
    assert_int_equal(pg_controldata(script, dir, &cd, &err), -EIO);
    assert_non_null(strstr(err, "CRC"));
    free(err);
    err = NULL;
    const char *good = "#!/bin/sh\necho 'Database system identifier:           7312345678901234567'\n"
                       "echo 'Database cluster state:               shut down'\n"
                       "echo 'Latest checkpoint location:           0/5000028'\n";
    write_bytes(script, good, strlen(good), 0700);
    assert_int_equal(pg_controldata(script, dir, &cd, &err), 0);
    assert_string_equal(cd.state, "shut down");
    assert_int_equal(cd.checkpoint_lsn, 0x5000028);
    unlink(script);
    unlink(control);
    rmdir(global);
    rmdir(dir);
}

int main(void) {
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_lookup_and_output),
        cmocka_unit_test(test_extra_env_adds_and_replaces),
        cmocka_unit_test(test_missing_program_is_reported),
        cmocka_unit_test(test_timeout_kills_the_group),
        cmocka_unit_test(test_timeout_after_output_closed),
        cmocka_unit_test(test_run_split),
        cmocka_unit_test(test_cancel_kills_the_running_child_group),
        cmocka_unit_test(test_callback_executor),
        cmocka_unit_test(test_pg_control_state),
        cmocka_unit_test(test_zombie_is_not_alive),
        cmocka_unit_test(test_postmaster_of),
        cmocka_unit_test(test_waldump_record_end),
    };
    /* clang-format on */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
