/* Logging in Patroni's familiar line format:
 *   2025-09-13 20:15:40,885 INFO: no action. I am (ptrn-1), the leader with the lock
 * Configured by the `log` section of patroni.yml (spec §3.9): plain or json, level, format,
 * dateformat, static_fields, dir/file_size/file_num/mode (rotating file instead of stderr). */
#pragma once

#include <stdarg.h>
#include <stdbool.h>

#include "common/util.h"

typedef enum LogLevel {
    LOG_DEBUG = 10,
    LOG_INFO = 20,
    LOG_WARNING = 30,
    LOG_ERROR = 40,
    LOG_CRITICAL = 50,
} LogLevel;

const char *log_level_to_string(LogLevel l);
/* Accepts DEBUG, INFO, WARNING (WARN), ERROR, CRITICAL (FATAL), any case, or a number. */
int log_level_from_string(const char *s, LogLevel *ret);

typedef struct cJSON cJSON;

typedef struct LogSettings {
    bool json;                  /* log.type == json */
    LogLevel level;             /* log.level */
    const char *format;         /* log.format when it is a string (NULL: default) */
    const cJSON *format_json;   /* log.format when it is a list or map (json only) */
    const char *dateformat;     /* log.dateformat (NULL: Python logging's default) */
    const cJSON *static_fields; /* log.static_fields (json only) */
    const char *dir;            /* log.dir: log to <dir>/patroni.log with rotation */
    long long file_size;        /* log.file_size, bytes (default 25000000) */
    int file_num;               /* log.file_num (default 4) */
    int mode;                   /* log.mode, file mode or -1 */
} LogSettings;

/* Apply settings (thread-safe; may be called again on reload). Returns 0 or -errno when the log
 * file cannot be opened, in which case stderr stays in use and an error is logged. */
int log_configure(const LogSettings *s);
void log_reset(void); /* back to the defaults: plain, INFO, stderr */
LogLevel log_get_level(void);

void log_msg(LogLevel level, const char *file, int line, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void log_vmsg(LogLevel level, const char *file, int line, const char *func, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

#define log_debug(...) log_msg(LOG_DEBUG, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_critical(...) log_msg(LOG_CRITICAL, __FILE__, __LINE__, __func__, __VA_ARGS__)

/* The HA loop's steady-state summary line. Patroni logs it every loop_wait; we log it when it
 * changes and then at most every `interval` (default 300 s) while it stays the same. */
void log_heartbeat(LogLevel level, usec_t now, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void log_heartbeat_set_interval(usec_t interval);
void log_heartbeat_reset(void);

/* Tests: receive every record that passes the level filter, after formatting. */
typedef void (*LogSink)(LogLevel level, const char *message, const char *formatted_line, void *userdata);
void log_set_sink(LogSink sink, void *userdata);

/* Format a record the way the current settings would (exposed for tests). Caller frees. */
char *log_format_record(LogLevel level, usec_t realtime, const char *file, int line, const char *func,
                        const char *message);
