/* log: Patroni's line format (Python logging's %-style attributes), json output, level
 * filtering, the heartbeat line, and the rotating log file of log.dir. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <regex.h>
#include <sys/stat.h>
#include <time.h>

#include "common/log.h"
#include "unit_helpers.h"

/* 2025-09-13 20:15:40,885 UTC */
/* the steady-state line of a leader */
#define LEADER_FMT "no action. I am (%s), the leader with the lock"

#define T0 ((usec_t)1757794540 * USEC_PER_SEC + 885 * USEC_PER_MSEC)

/* ---- capturing what the logger emits ---- */

typedef struct Captured {
    StrList messages;
    StrList lines;
    int levels[64];
} Captured;

static Captured cap;

static void sink(LogLevel level, const char *message, const char *line, void *userdata) {
    Captured *c = userdata;
    if (c->messages.n < ELEMENTSOF(c->levels))
        c->levels[c->messages.n] = (int)level;
    strlist_add(&c->messages, message);
    strlist_add(&c->lines, line);
}

static void cap_clear(void) {
    strlist_clear(&cap.messages);
    strlist_clear(&cap.lines);
}

static int setup(void **state) {
    (void)state;
    log_reset();
    log_heartbeat_set_interval(300 * USEC_PER_SEC);
    log_set_sink(sink, &cap);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    log_set_sink(NULL, NULL);
    log_reset();
    cap_clear();
    return 0;
}

static int group_setup(void **state) {
    (void)state;
    /* timestamps are local time, as in Python's logging: pin the zone */
    setenv("TZ", "UTC", 1);
    tzset();
    return 0;
}

static LogSettings defaults(void) { return (LogSettings){.level = LOG_INFO, .file_num = -1, .mode = -1}; }

static void assert_matches(const char *s, const char *pattern) {
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int r = regexec(&re, s, 0, NULL, 0);
    regfree(&re);
    if (r != 0)
        print_error("'%s' does not match /%s/\n", s, pattern);
    assert_int_equal(r, 0);
}

/* ---- formatting ---- */

static void test_default_format(void **state) {
    (void)state;
    _cleanup_free_ char *now = log_format_record(LOG_INFO, now_realtime(), __FILE__, __LINE__, __func__, "hello");
    assert_matches(now, "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2},[0-9]{3} INFO: hello$");

    _cleanup_free_ char *fixed = log_format_record(LOG_INFO, T0, __FILE__, __LINE__, __func__,
                                                   "no action. I am (ptrn-1), the leader with the lock");
    assert_string_equal(fixed, "2025-09-13 20:15:40,885 INFO: no action. I am (ptrn-1), the leader with the lock");

    const struct {
        LogLevel level;
        const char *name;
    } levels[] = {{LOG_DEBUG, "DEBUG"},
                  {LOG_INFO, "INFO"},
                  {LOG_WARNING, "WARNING"},
                  {LOG_ERROR, "ERROR"},
                  {LOG_CRITICAL, "CRITICAL"}};
    for (size_t i = 0; i < ELEMENTSOF(levels); i++) {
        _cleanup_free_ char *s = log_format_record(levels[i].level, T0 + 5 * USEC_PER_MSEC - 885 * USEC_PER_MSEC, NULL,
                                                   0, NULL, "m");
        _cleanup_free_ char *want = xasprintf("2025-09-13 20:15:40,005 %s: m", levels[i].name);
        assert_string_equal(s, want);
    }
    /* a message with a percent sign is data, not format */
    _cleanup_free_ char *pct = log_format_record(LOG_INFO, T0, NULL, 0, NULL, "100%(message)s %d");
    assert_string_equal(pct, "2025-09-13 20:15:40,885 INFO: 100%(message)s %d");
}

static void test_custom_format(void **state) {
    (void)state;
    LogSettings s = defaults();
    s.format = "%(levelname)-8s|%(process)d|%%|%(message)s|%(name)s|%(filename)s:%(lineno)d|%(funcName)s|"
               "%(module)s|%(levelno)s|%(msecs)03d|%(levelname)5.2s|%(created)f|%(unknown)s|%(asctime)s";
    assert_int_equal(log_configure(&s), 0);
    _cleanup_free_ char *line = log_format_record(LOG_INFO, T0, "src/agent/ha.c", 42, "ha_cycle", "hello");
    _cleanup_free_ char *want = xasprintf("INFO    |%d|%%|hello|patroni|ha.c:42|ha_cycle|ha|20|885|   IN|"
                                          "1757794540.885000|%%(unknown)s|2025-09-13 20:15:40,885",
                                          (int)getpid());
    assert_string_equal(line, want);

    /* left and right alignment, numbers with widths */
    s.format = "[%(levelname)8s] [%(lineno)5d] [%(levelno)-4d] %(message)s";
    assert_int_equal(log_configure(&s), 0);
    _cleanup_free_ char *l2 = log_format_record(LOG_WARNING, T0, "x.c", 7, "f", "m");
    assert_string_equal(l2, "[ WARNING] [    7] [30  ] m");

    /* dateformat replaces the default, without milliseconds (Python's datefmt) */
    s = defaults();
    s.dateformat = "%d/%m/%Y %H.%M.%S";
    assert_int_equal(log_configure(&s), 0);
    _cleanup_free_ char *l3 = log_format_record(LOG_ERROR, T0, NULL, 0, NULL, "boom");
    assert_string_equal(l3, "13/09/2025 20.15.40 ERROR: boom");

    /* log_reset brings the default back */
    log_reset();
    _cleanup_free_ char *l4 = log_format_record(LOG_INFO, T0, NULL, 0, NULL, "x");
    assert_string_equal(l4, "2025-09-13 20:15:40,885 INFO: x");
}

static void test_json_format(void **state) {
    (void)state;
    cJSON *fields = cJSON_Parse("{\"app\":\"pgha\",\"dc\":1,\"message\":\"never overrides\"}");
    LogSettings s = defaults();
    s.json = true;
    s.static_fields = fields;
    assert_int_equal(log_configure(&s), 0);
    cJSON_Delete(fields); /* log_configure keeps its own copy */
    _cleanup_free_ char *line = log_format_record(LOG_INFO, T0, NULL, 0, NULL, "hello");
    assert_string_equal(line, "{\"asctime\":\"2025-09-13 20:15:40,885\",\"levelname\":\"INFO\",\"message\":\"hello\","
                              "\"app\":\"pgha\",\"dc\":1}");

    /* messages are escaped */
    _cleanup_free_ char *esc = log_format_record(LOG_WARNING, T0, NULL, 0, NULL, "say \"hi\"\n\tand \\ bye");
    cJSON *j = cJSON_Parse(esc);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "message")->valuestring, "say \"hi\"\n\tand \\ bye");
    assert_string_equal(cJSON_GetObjectItem(j, "levelname")->valuestring, "WARNING");
    cJSON_Delete(j);

    /* a %-format string picks the fields */
    s = defaults();
    s.json = true;
    s.format = "%(levelname)s %(lineno)d %(bogus)s";
    assert_int_equal(log_configure(&s), 0);
    _cleanup_free_ char *l2 = log_format_record(LOG_ERROR, T0, "f.c", 12, NULL, "m");
    assert_string_equal(l2, "{\"levelname\":\"ERROR\",\"lineno\":12,\"message\":\"m\"}");

    /* a list of fields */
    cJSON *list = cJSON_Parse("[\"levelname\",\"message\",\"process\"]");
    s = defaults();
    s.json = true;
    s.format_json = list;
    assert_int_equal(log_configure(&s), 0);
    cJSON_Delete(list);
    _cleanup_free_ char *l3 = log_format_record(LOG_INFO, T0, NULL, 0, NULL, "m");
    _cleanup_free_ char *want3 = xasprintf("{\"levelname\":\"INFO\",\"message\":\"m\",\"process\":%d}", (int)getpid());
    assert_string_equal(l3, want3);

    /* a map renames them */
    cJSON *map = cJSON_Parse("{\"asctime\":\"@timestamp\",\"levelname\":\"level\",\"message\":\"msg\"}");
    s = defaults();
    s.json = true;
    s.format_json = map;
    s.dateformat = "%Y-%m-%dT%H:%M:%SZ";
    assert_int_equal(log_configure(&s), 0);
    cJSON_Delete(map);
    _cleanup_free_ char *l4 = log_format_record(LOG_DEBUG, T0, NULL, 0, NULL, "m");
    assert_string_equal(l4, "{\"@timestamp\":\"2025-09-13T20:15:40Z\",\"level\":\"DEBUG\",\"msg\":\"m\"}");
}

/* ---- levels ---- */

static void test_level_names(void **state) {
    (void)state;
    const struct {
        const char *s;
        int level;
    } ok[] = {{"DEBUG", LOG_DEBUG},       {"debug", LOG_DEBUG},
              {"Info", LOG_INFO},         {"WARNING", LOG_WARNING},
              {"warn", LOG_WARNING},      {"ERROR", LOG_ERROR},
              {"CRITICAL", LOG_CRITICAL}, {"fatal", LOG_CRITICAL},
              {"20", LOG_INFO},           {"0", 0},
              {"50", LOG_CRITICAL}};
    for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
        LogLevel l = (LogLevel)-1;
        assert_int_equal(log_level_from_string(ok[i].s, &l), 0);
        assert_int_equal(l, ok[i].level);
    }
    const char *bad[] = {"LOUD", "", "51", "-1", "INFO ", "2O"};
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        LogLevel l = LOG_ERROR;
        assert_int_equal(log_level_from_string(bad[i], &l), -EINVAL);
        assert_int_equal(l, LOG_ERROR);
    }
    LogLevel l;
    assert_int_equal(log_level_from_string(NULL, &l), -EINVAL);
    assert_string_equal(log_level_to_string(LOG_WARNING), "WARNING");
    assert_string_equal(log_level_to_string((LogLevel)25), "NOTSET");
}

static void test_level_filtering(void **state) {
    (void)state;
    assert_int_equal(log_get_level(), LOG_INFO);
    log_debug("not shown at INFO");
    log_info("shown %d", 1);
    assert_int_equal(cap.messages.n, 1);
    assert_string_equal(cap.messages.v[0], "shown 1");
    assert_int_equal(cap.levels[0], LOG_INFO);
    assert_matches(cap.lines.v[0], "^[0-9-]{10} [0-9:]{8},[0-9]{3} INFO: shown 1$");

    LogSettings s = defaults();
    s.level = LOG_WARNING;
    assert_int_equal(log_configure(&s), 0);
    assert_int_equal(log_get_level(), LOG_WARNING);
    log_debug("no");
    log_info("no");
    log_warning("w");
    log_error("e");
    log_critical("c");
    assert_int_equal(cap.messages.n, 4);
    assert_string_equal(cap.messages.v[1], "w");
    assert_int_equal(cap.levels[1], LOG_WARNING);
    assert_non_null(strstr(cap.lines.v[1], " WARNING: w"));
    assert_int_equal(cap.levels[2], LOG_ERROR);
    assert_int_equal(cap.levels[3], LOG_CRITICAL);
    assert_non_null(strstr(cap.lines.v[3], " CRITICAL: c"));

    s.level = LOG_DEBUG;
    assert_int_equal(log_configure(&s), 0);
    log_debug("d");
    assert_int_equal(cap.messages.n, 5);
    assert_int_equal(cap.levels[4], LOG_DEBUG);

    /* level 0 in the settings means the default */
    s.level = 0;
    assert_int_equal(log_configure(&s), 0);
    assert_int_equal(log_get_level(), LOG_INFO);

    /* logging does not clobber errno (callers log with %m-style messages and then test errno) */
    errno = EAGAIN;
    log_info("errno %d", errno);
    assert_int_equal(errno, EAGAIN);
}

/* ---- the heartbeat line ---- */

static void test_heartbeat(void **state) {
    (void)state;
    const usec_t base = 1000 * USEC_PER_SEC;
    log_heartbeat(LOG_INFO, base, LEADER_FMT, "ptrn-1");
    assert_int_equal(cap.messages.n, 1);
    assert_string_equal(cap.messages.v[0], "no action. I am (ptrn-1), the leader with the lock");
    assert_matches(cap.lines.v[0], " INFO: no action\\. I am \\(ptrn-1\\), the leader with the lock$");

    /* the same line within the interval: suppressed */
    log_heartbeat(LOG_INFO, base + 10 * USEC_PER_SEC, LEADER_FMT, "ptrn-1");
    log_heartbeat(LOG_INFO, base + 300 * USEC_PER_SEC - 1, LEADER_FMT, "ptrn-1");
    assert_int_equal(cap.messages.n, 1);
    /* ... and again once the interval has passed */
    log_heartbeat(LOG_INFO, base + 300 * USEC_PER_SEC, LEADER_FMT, "ptrn-1");
    assert_int_equal(cap.messages.n, 2);
    /* the interval counts from the last time it was logged */
    log_heartbeat(LOG_INFO, base + 599 * USEC_PER_SEC, LEADER_FMT, "ptrn-1");
    assert_int_equal(cap.messages.n, 2);

    /* a changed line is logged at once, and so is the change back */
    log_heartbeat(LOG_INFO, base + 301 * USEC_PER_SEC, "no action. I am (%s), a secondary, and following a leader (%s)",
                  "ptrn-1", "ptrn-2");
    assert_int_equal(cap.messages.n, 3);
    assert_string_equal(cap.messages.v[2], "no action. I am (ptrn-1), a secondary, and following a leader (ptrn-2)");
    log_heartbeat(LOG_INFO, base + 302 * USEC_PER_SEC, "no action. I am (%s), a secondary, and following a leader (%s)",
                  "ptrn-1", "ptrn-2");
    assert_int_equal(cap.messages.n, 3);
    log_heartbeat(LOG_INFO, base + 303 * USEC_PER_SEC, LEADER_FMT, "ptrn-1");
    assert_int_equal(cap.messages.n, 4);

    /* a clock that went backwards does not silence it */
    log_heartbeat(LOG_INFO, base, LEADER_FMT, "ptrn-1");
    assert_int_equal(cap.messages.n, 5);

    /* a shorter interval */
    log_heartbeat_set_interval(10 * USEC_PER_SEC);
    log_heartbeat(LOG_INFO, base + 9 * USEC_PER_SEC, LEADER_FMT, "ptrn-1");
    assert_int_equal(cap.messages.n, 5);
    log_heartbeat(LOG_INFO, base + 10 * USEC_PER_SEC, LEADER_FMT, "ptrn-1");
    assert_int_equal(cap.messages.n, 6);

    /* reset forgets the last line */
    log_heartbeat_reset();
    log_heartbeat(LOG_INFO, base + 11 * USEC_PER_SEC, LEADER_FMT, "ptrn-1");
    assert_int_equal(cap.messages.n, 7);

    /* filtered by level: not shown and not remembered, so it appears as soon as the level allows */
    LogSettings s = defaults();
    s.level = LOG_WARNING;
    assert_int_equal(log_configure(&s), 0);
    log_heartbeat(LOG_INFO, base + 12 * USEC_PER_SEC, "quiet %d", 1);
    assert_int_equal(cap.messages.n, 7);
    s.level = LOG_INFO;
    assert_int_equal(log_configure(&s), 0);
    log_heartbeat(LOG_INFO, base + 13 * USEC_PER_SEC, "quiet %d", 1);
    assert_int_equal(cap.messages.n, 8);
    assert_string_equal(cap.messages.v[7], "quiet 1");
}

/* ---- log.dir: patroni.log with rotation ---- */

static off_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* The numbers of "line NN ..." lines in a file, appended to *nums. */
static void collect_lines(const char *path, int *nums, size_t *n) {
    _cleanup_free_ char *text = read_file(path);
    if (!text)
        return;
    for (char *p = strstr(text, "line "); p; p = strstr(p + 1, "line "))
        nums[(*n)++] = (int)strtol(p + 5, NULL, 10);
}

static void test_log_dir_rotation(void **state) {
    (void)state;
    char *dir = tmpdir_make();
    assert_non_null(dir);
    _cleanup_free_ char *logdir = xasprintf("%s/log", dir); /* created by log_configure */
    LogSettings s = defaults();
    s.dir = logdir;
    s.file_size = 300;
    s.file_num = 2;
    s.mode = 0600;
    assert_int_equal(log_configure(&s), 0);
    _cleanup_free_ char *log0 = xasprintf("%s/patroni.log", logdir);
    _cleanup_free_ char *log1 = xasprintf("%s/patroni.log.1", logdir);
    _cleanup_free_ char *log2 = xasprintf("%s/patroni.log.2", logdir);
    _cleanup_free_ char *log3 = xasprintf("%s/patroni.log.3", logdir);
    assert_int_equal(file_size(log0), 0);
    struct stat st;
    assert_int_equal(stat(log0, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    log_info("line %02d %s", 0, "first");
    _cleanup_free_ char *first = read_file(log0);
    assert_matches(first, "^[0-9-]{10} [0-9:]{8},[0-9]{3} INFO: line 00 first\n$");
    assert_int_equal(file_size(log1), -1);

    for (int i = 1; i < 30; i++)
        log_info("line %02d %s", i, "padding to make the record about sixty bytes");
    /* the sink sees every record, the file only the newest ones */
    assert_int_equal(cap.messages.n, 30);

    assert_true(file_size(log0) > 0);
    assert_true(file_size(log0) <= 300);
    assert_true(file_size(log1) > 0 && file_size(log1) <= 300);
    assert_true(file_size(log2) > 0 && file_size(log2) <= 300);
    assert_int_equal(file_size(log3), -1); /* file_num backups, no more */
    assert_int_equal(stat(log1, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* oldest in .2, newest in patroni.log, no gap and nothing out of order */
    int nums[64];
    size_t n = 0;
    collect_lines(log2, nums, &n);
    collect_lines(log1, nums, &n);
    collect_lines(log0, nums, &n);
    assert_true(n >= 3);
    assert_int_equal(nums[n - 1], 29);
    for (size_t i = 1; i < n; i++)
        assert_int_equal(nums[i], nums[i - 1] + 1);

    /* configuring again appends to the existing file */
    off_t before = file_size(log0);
    s.file_size = 1000000;
    assert_int_equal(log_configure(&s), 0);
    log_warning("line 30 after reconfigure");
    assert_true(file_size(log0) > before);
    _cleanup_free_ char *last = read_file(log0);
    assert_non_null(strstr(last, "WARNING: line 30 after reconfigure\n"));

    /* file_num 0: the file is cut, nothing is kept beside it */
    _cleanup_free_ char *dir2 = xasprintf("%s/log0", dir);
    s = defaults();
    s.dir = dir2;
    s.file_size = 200;
    s.file_num = 0;
    assert_int_equal(log_configure(&s), 0);
    for (int i = 0; i < 20; i++)
        log_info("line %02d %s", i, "padding to make the record about sixty bytes");
    _cleanup_free_ char *only = xasprintf("%s/patroni.log", dir2);
    _cleanup_free_ char *none = xasprintf("%s/patroni.log.1", dir2);
    assert_true(file_size(only) > 0 && file_size(only) <= 200);
    assert_int_equal(file_size(none), -1);
    _cleanup_free_ char *tail = read_file(only);
    assert_non_null(strstr(tail, "line 19 "));

    log_reset(); /* closes the file */
    dir = tmpdir_remove(dir);
}

static void test_log_dir_unusable(void **state) {
    (void)state;
    LogSettings s = defaults();
    s.dir = "/proc/pgha-no-such-dir";
    int r = log_configure(&s);
    assert_true(r < 0);
    /* the reason is logged, and logging goes on (to stderr) */
    assert_true(find_entry_with(&cap.messages, "could not open log file /proc/pgha-no-such-dir/patroni.log",
                                (const char *)NULL) >= 0);
    size_t n = cap.messages.n;
    log_info("still logging");
    assert_int_equal(cap.messages.n, n + 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_default_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_custom_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_filtering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_dir_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_dir_unusable, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
