#include "common/log.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_FORMAT "%(asctime)s %(levelname)s: %(message)s"
#define DEFAULT_FILE_SIZE 25000000LL
#define DEFAULT_FILE_NUM 4

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static struct {
    bool json;
    LogLevel level;
    char *format;
    cJSON *format_json;
    char *dateformat;
    cJSON *static_fields;
    char *dir;
    char *path;
    long long file_size;
    int file_num;
    int mode;
    FILE *file;
    long long written;
    LogSink sink;
    void *sink_data;
    usec_t hb_interval;
    usec_t hb_last;
    char *hb_msg;
} L = {.level = LOG_INFO,
       .file_size = DEFAULT_FILE_SIZE,
       .file_num = DEFAULT_FILE_NUM,
       .mode = -1,
       .hb_interval = 300 * USEC_PER_SEC};

static const struct {
    LogLevel level;
    const char *name;
} level_names[] = {
    {LOG_DEBUG, "DEBUG"}, {LOG_INFO, "INFO"},         {LOG_WARNING, "WARNING"},
    {LOG_ERROR, "ERROR"}, {LOG_CRITICAL, "CRITICAL"},
};

const char *log_level_to_string(LogLevel l) {
    for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
        if (level_names[i].level == l)
            return level_names[i].name;
    return "NOTSET";
}

int log_level_from_string(const char *s, LogLevel *ret) {
    if (!s)
        return -EINVAL;
    for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
        if (strcasecmp(s, level_names[i].name) == 0) {
            *ret = level_names[i].level;
            return 0;
        }
    if (strcasecmp(s, "WARN") == 0) {
        *ret = LOG_WARNING;
        return 0;
    }
    if (strcasecmp(s, "FATAL") == 0) {
        *ret = LOG_CRITICAL;
        return 0;
    }
    long long v;
    if (parse_ll(s, &v) == 0 && v >= 0 && v <= 50) {
        *ret = (LogLevel)v;
        return 0;
    }
    return -EINVAL;
}

static void close_file_locked(void) {
    if (L.file)
        fclose(L.file);
    L.file = NULL;
    L.written = 0;
}

static int open_file_locked(void) {
    int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC;
    int fd = open(L.path, flags, L.mode >= 0 ? (mode_t)L.mode : 0644);
    if (fd < 0)
        return -errno;
    if (L.mode >= 0)
        (void)fchmod(fd, (mode_t)L.mode);
    struct stat st;
    L.written = fstat(fd, &st) == 0 ? (long long)st.st_size : 0;
    L.file = fdopen(fd, "a");
    if (!L.file) {
        int r = -errno;
        close(fd);
        return r;
    }
    setvbuf(L.file, NULL, _IOLBF, 0);
    return 0;
}

/* Python's RotatingFileHandler: patroni.log -> patroni.log.1 -> ... -> patroni.log.<file_num>. */
static void rotate_locked(void) {
    close_file_locked();
    for (int i = L.file_num - 1; i >= 1; i--) {
        char *from = xasprintf("%s.%d", L.path, i);
        char *to = xasprintf("%s.%d", L.path, i + 1);
        (void)rename(from, to);
        free(from);
        free(to);
    }
    if (L.file_num > 0) {
        char *to = xasprintf("%s.1", L.path);
        (void)rename(L.path, to);
        free(to);
    } else {
        (void)truncate(L.path, 0);
    }
    (void)open_file_locked();
}

static void free_settings_locked(void) {
    free(L.format);
    cJSON_Delete(L.format_json);
    free(L.dateformat);
    cJSON_Delete(L.static_fields);
    free(L.dir);
    free(L.path);
    L.format = L.dateformat = L.dir = L.path = NULL;
    L.format_json = L.static_fields = NULL;
    close_file_locked();
}

int log_configure(const LogSettings *s) {
    int r = 0;
    pthread_mutex_lock(&log_lock);
    free_settings_locked();
    L.json = s->json;
    L.level = s->level ? s->level : LOG_INFO;
    L.format = xstrdup(s->format);
    L.format_json = s->format_json ? cJSON_Duplicate(s->format_json, true) : NULL;
    L.dateformat = xstrdup(s->dateformat);
    L.static_fields = s->static_fields ? cJSON_Duplicate(s->static_fields, true) : NULL;
    L.file_size = s->file_size > 0 ? s->file_size : DEFAULT_FILE_SIZE;
    L.file_num = s->file_num >= 0 ? s->file_num : DEFAULT_FILE_NUM;
    L.mode = s->mode;
    if (s->dir && *s->dir) {
        L.dir = xstrdup(s->dir);
        (void)mkdir(L.dir, 0755);
        L.path = xasprintf("%s/patroni.log", L.dir);
        r = open_file_locked();
    }
    pthread_mutex_unlock(&log_lock);
    if (r < 0)
        log_error("could not open log file %s/patroni.log: %s; logging to stderr", s->dir, strerror(-r));
    return r;
}

void log_reset(void) {
    pthread_mutex_lock(&log_lock);
    free_settings_locked();
    L.json = false;
    L.level = LOG_INFO;
    L.file_size = DEFAULT_FILE_SIZE;
    L.file_num = DEFAULT_FILE_NUM;
    L.mode = -1;
    free(L.hb_msg);
    L.hb_msg = NULL;
    L.hb_last = 0;
    pthread_mutex_unlock(&log_lock);
}

LogLevel log_get_level(void) {
    pthread_mutex_lock(&log_lock);
    LogLevel l = L.level;
    pthread_mutex_unlock(&log_lock);
    return l;
}

void log_set_sink(LogSink sink, void *userdata) {
    pthread_mutex_lock(&log_lock);
    L.sink = sink;
    L.sink_data = userdata;
    pthread_mutex_unlock(&log_lock);
}

/* ---- record formatting (Python logging's %-style attributes) ---- */

typedef struct Record {
    LogLevel level;
    usec_t realtime;
    const char *file;
    int line;
    const char *func;
    const char *message;
    char asctime[96];
} Record;

/* log.format and log.dateformat are user-supplied formats: the conversions are validated by the
 * renderer itself, so the non-literal format warnings are silenced for these two functions. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static void format_asctime(Record *r, const char *dateformat) {
    time_t t = (time_t)(r->realtime / USEC_PER_SEC);
    struct tm tm;
    localtime_r(&t, &tm);
    if (dateformat && *dateformat) {
        if (strftime(r->asctime, sizeof r->asctime, dateformat, &tm) == 0)
            r->asctime[0] = '\0';
    } else {
        char base[64];
        strftime(base, sizeof base, "%Y-%m-%d %H:%M:%S", &tm);
        snprintf(r->asctime, sizeof r->asctime, "%s,%03u", base,
                 (unsigned)((r->realtime % USEC_PER_SEC) / USEC_PER_MSEC));
    }
}

static const char *basename_of(const char *p) {
    const char *s = p ? strrchr(p, '/') : NULL;
    return s ? s + 1 : (p ? p : "");
}

/* Returns true and fills *str or *num for a known attribute. */
static bool record_attr(const Record *r, const char *name, const char **str, double *num, bool *is_num, char *tmp,
                        size_t tmplen) {
    *is_num = false;
    if (strcmp(name, "asctime") == 0)
        *str = r->asctime;
    else if (strcmp(name, "levelname") == 0)
        *str = log_level_to_string(r->level);
    else if (strcmp(name, "message") == 0)
        *str = r->message;
    else if (strcmp(name, "name") == 0)
        *str = "patroni";
    else if (strcmp(name, "filename") == 0)
        *str = basename_of(r->file);
    else if (strcmp(name, "pathname") == 0)
        *str = r->file ? r->file : "";
    else if (strcmp(name, "module") == 0) {
        snprintf(tmp, tmplen, "%s", basename_of(r->file));
        char *dot = strrchr(tmp, '.');
        if (dot)
            *dot = '\0';
        *str = tmp;
    } else if (strcmp(name, "funcName") == 0)
        *str = r->func ? r->func : "";
    else if (strcmp(name, "processName") == 0)
        *str = "MainProcess";
    else if (strcmp(name, "threadName") == 0) {
        char n[32] = "";
        if (pthread_getname_np(pthread_self(), n, sizeof n) != 0 || !*n)
            snprintf(n, sizeof n, "Thread-%ld", (long)syscall(SYS_gettid));
        snprintf(tmp, tmplen, "%s", n);
        *str = tmp;
    } else {
        *is_num = true;
        if (strcmp(name, "levelno") == 0)
            *num = r->level;
        else if (strcmp(name, "lineno") == 0)
            *num = r->line;
        else if (strcmp(name, "process") == 0)
            *num = getpid();
        else if (strcmp(name, "thread") == 0)
            *num = (double)syscall(SYS_gettid);
        else if (strcmp(name, "created") == 0)
            *num = (double)r->realtime / 1e6;
        else if (strcmp(name, "msecs") == 0)
            *num = (double)((r->realtime % USEC_PER_SEC) / USEC_PER_MSEC);
        else if (strcmp(name, "relativeCreated") == 0)
            *num = 0;
        else
            return false;
    }
    return true;
}

static void render_percent_format(StrBuf *out, const char *fmt, const Record *r) {
    for (const char *p = fmt; *p;) {
        if (p[0] == '%' && p[1] == '%') {
            sb_addc(out, '%');
            p += 2;
            continue;
        }
        if (p[0] != '%' || p[1] != '(') {
            sb_addc(out, *p++);
            continue;
        }
        const char *close = strchr(p + 2, ')');
        if (!close) {
            sb_add(out, p);
            break;
        }
        char name[64];
        size_t nlen = (size_t)(close - (p + 2));
        if (nlen >= sizeof name)
            nlen = sizeof name - 1;
        memcpy(name, p + 2, nlen);
        name[nlen] = '\0';
        const char *q = close + 1;
        char spec[32] = "%";
        size_t sl = 1;
        while (*q && strchr("#0- +", *q) && sl < 20)
            spec[sl++] = *q++;
        while (*q && isdigit((unsigned char)*q) && sl < 26)
            spec[sl++] = *q++;
        if (*q == '.') {
            spec[sl++] = *q++;
            while (*q && isdigit((unsigned char)*q) && sl < 29)
                spec[sl++] = *q++;
        }
        char conv = *q ? *q++ : 's';
        const char *sval = NULL;
        double nval = 0;
        bool is_num = false;
        char tmp[128];
        if (!record_attr(r, name, &sval, &nval, &is_num, tmp, sizeof tmp)) {
            sb_addn(out, p, (size_t)(q - p)); /* unknown attribute: keep the text */
            p = q;
            continue;
        }
        if (strchr("sra", conv)) {
            char num[64];
            if (is_num) {
                if (nval == (long long)nval)
                    snprintf(num, sizeof num, "%lld", (long long)nval);
                else
                    snprintf(num, sizeof num, "%.6f", nval);
                sval = num;
            }
            spec[sl++] = 's';
            spec[sl] = '\0';
            sb_addf(out, spec, sval);
        } else if (strchr("dioxXuc", conv)) {
            if (conv == 'u' || conv == 'i' || conv == 'c')
                conv = 'd';
            spec[sl++] = 'l';
            spec[sl++] = 'l';
            spec[sl++] = conv;
            spec[sl] = '\0';
            sb_addf(out, spec, is_num ? (long long)nval : 0LL);
        } else {
            spec[sl++] = strchr("eEfFgG", conv) ? conv : 'f';
            spec[sl] = '\0';
            sb_addf(out, spec, is_num ? nval : 0.0);
        }
        p = q;
    }
}

#pragma GCC diagnostic pop

static void json_add_attr(cJSON *obj, const char *key, const char *attr, const Record *r) {
    const char *sval = NULL;
    double nval = 0;
    bool is_num = false;
    char tmp[128];
    if (!record_attr(r, attr, &sval, &nval, &is_num, tmp, sizeof tmp))
        return;
    if (is_num)
        cJSON_AddNumberToObject(obj, key, nval);
    else
        cJSON_AddStringToObject(obj, key, sval);
}

static char *render_json(const Record *r) {
    cJSON *obj = cJSON_CreateObject();
    if (L.format_json && cJSON_IsArray(L.format_json)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, L.format_json)
            if (cJSON_IsString(it))
                json_add_attr(obj, it->valuestring, it->valuestring, r);
    } else if (L.format_json && cJSON_IsObject(L.format_json)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, L.format_json)
            json_add_attr(obj, cJSON_IsString(it) ? it->valuestring : it->string, it->string, r);
    } else {
        const char *fmt = L.format ? L.format : DEFAULT_FORMAT;
        for (const char *p = strstr(fmt, "%("); p; p = strstr(p + 2, "%(")) {
            const char *close = strchr(p + 2, ')');
            if (!close)
                break;
            char *name = xstrndup(p + 2, (size_t)(close - p - 2));
            json_add_attr(obj, name, name, r);
            free(name);
        }
        if (!cJSON_GetObjectItemCaseSensitive(obj, "message"))
            json_add_attr(obj, "message", "message", r);
    }
    if (L.static_fields && cJSON_IsObject(L.static_fields)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, L.static_fields)
            if (!cJSON_GetObjectItemCaseSensitive(obj, it->string))
                cJSON_AddItemToObject(obj, it->string, cJSON_Duplicate(it, true));
    }
    char *s = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    return s;
}

static char *format_locked(LogLevel level, usec_t realtime, const char *file, int line, const char *func,
                           const char *message) {
    Record r = {.level = level, .realtime = realtime, .file = file, .line = line, .func = func, .message = message};
    format_asctime(&r, L.dateformat);
    if (L.json)
        return render_json(&r);
    StrBuf out;
    sb_init(&out);
    render_percent_format(&out, L.format ? L.format : DEFAULT_FORMAT, &r);
    return sb_steal(&out);
}

char *log_format_record(LogLevel level, usec_t realtime, const char *file, int line, const char *func,
                        const char *message) {
    pthread_mutex_lock(&log_lock);
    char *s = format_locked(level, realtime, file, line, func, message);
    pthread_mutex_unlock(&log_lock);
    return s;
}

static void emit_locked(LogLevel level, const char *file, int line, const char *func, const char *message) {
    char *formatted = format_locked(level, now_realtime(), file, line, func, message);
    if (L.file) {
        size_t n = strlen(formatted) + 1;
        if (L.file_size > 0 && L.written > 0 && L.written + (long long)n > L.file_size)
            rotate_locked();
    }
    FILE *f = L.file ? L.file : stderr;
    fputs(formatted, f);
    fputc('\n', f);
    fflush(f);
    if (L.file)
        L.written += (long long)strlen(formatted) + 1;
    if (L.sink)
        L.sink(level, message, formatted, L.sink_data);
    free(formatted);
}

void log_vmsg(LogLevel level, const char *file, int line, const char *func, const char *fmt, va_list ap) {
    int saved_errno = errno;
    pthread_mutex_lock(&log_lock);
    if (level >= L.level) {
        char *message = xvasprintf(fmt, ap);
        emit_locked(level, file, line, func, message);
        free(message);
    }
    pthread_mutex_unlock(&log_lock);
    errno = saved_errno;
}

void log_msg(LogLevel level, const char *file, int line, const char *func, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, file, line, func, fmt, ap);
    va_end(ap);
}

void log_heartbeat_set_interval(usec_t interval) {
    pthread_mutex_lock(&log_lock);
    L.hb_interval = interval;
    pthread_mutex_unlock(&log_lock);
}

void log_heartbeat_reset(void) {
    pthread_mutex_lock(&log_lock);
    free(L.hb_msg);
    L.hb_msg = NULL;
    L.hb_last = 0;
    pthread_mutex_unlock(&log_lock);
}

void log_heartbeat(LogLevel level, usec_t now, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *message = xvasprintf(fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&log_lock);
    bool changed = !streq(message, L.hb_msg);
    bool due = L.hb_last == 0 || now < L.hb_last || now - L.hb_last >= L.hb_interval;
    if ((changed || due) && level >= L.level) {
        emit_locked(level, __FILE__, __LINE__, __func__, message);
        free(L.hb_msg);
        L.hb_msg = message;
        L.hb_last = now;
        message = NULL;
    } else if (level < L.level) {
        /* filtered: remember nothing, so a later level change shows the line at once */
    }
    pthread_mutex_unlock(&log_lock);
    free(message);
}
