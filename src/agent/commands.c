/* The command queue between a submitter (the REST API) and the HA loop, and the pure validation of
 * the commands (spec §2.5, §2.6). */
#include "agent/commands.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/json.h"
#include "common/util.h"

struct CommandQueue {
    pthread_mutex_t lock;
    pthread_cond_t done;
    Command *head, *tail;
    size_t n;
    int timeout_ms;
    void (*wake)(void *ud);
    void *ud;
    bool closed;
    char failsafe_leader[128]; /* POST /failsafe: who asked last, and when (monotonic; 0: never) */
    usec_t failsafe_at;
};

void command_failsafe_record(CommandQueue *q, const char *leader, usec_t at) {
    pthread_mutex_lock(&q->lock);
    snprintf(q->failsafe_leader, sizeof q->failsafe_leader, "%s", leader);
    q->failsafe_at = at;
    pthread_mutex_unlock(&q->lock);
}

const char *command_failsafe_leader(CommandQueue *q, usec_t since, char *buf, size_t len) {
    pthread_mutex_lock(&q->lock);
    bool recent = q->failsafe_at && q->failsafe_at >= since && q->failsafe_leader[0];
    if (recent)
        snprintf(buf, len, "%s", q->failsafe_leader);
    pthread_mutex_unlock(&q->lock);
    return recent ? buf : NULL;
}

CommandQueue *command_queue_new(void (*wake)(void *ud), void *ud) {
    CommandQueue *q = xcalloc(1, sizeof *q);
    pthread_mutex_init(&q->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&q->done, &attr);
    pthread_condattr_destroy(&attr);
    q->wake = wake;
    q->ud = ud;
    q->timeout_ms = 30000;
    return q;
}

static void command_free(Command *c) {
    free(c->leader);
    free(c->candidate);
    free(c->scheduled_at);
    cJSON_Delete(c->body);
    free(c->result);
    free(c->old_leader);
    for (size_t i = 0; i < c->n_good; i++)
        free(c->good[i]);
    free(c->good);
    free(c);
}

void command_queue_close(CommandQueue *q) {
    pthread_mutex_lock(&q->lock);
    q->closed = true;
    pthread_mutex_unlock(&q->lock);
    /* commands nobody carried out: answer them so that a waiting submitter returns */
    Command *c;
    while ((c = command_queue_pop(q)))
        command_complete(q, c, 503, NULL, false);
}

void command_queue_free(CommandQueue *q) {
    if (!q)
        return;
    command_queue_close(q);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->done);
    free(q);
}

Command *command_new(CommandKind kind) {
    Command *c = xcalloc(1, sizeof *c);
    c->kind = kind;
    c->refs = 1;
    return c;
}

/* Two holders at most (the submitter, the queue until the loop completes the command). */
static pthread_mutex_t refs_lock = PTHREAD_MUTEX_INITIALIZER;

void command_unref(Command *c) {
    if (!c)
        return;
    pthread_mutex_lock(&refs_lock);
    bool last = --c->refs == 0;
    pthread_mutex_unlock(&refs_lock);
    if (last)
        command_free(c);
}

void command_queue_set_timeout(CommandQueue *q, int timeout_ms) {
    pthread_mutex_lock(&q->lock);
    q->timeout_ms = timeout_ms;
    pthread_mutex_unlock(&q->lock);
}

size_t command_queue_length(CommandQueue *q) {
    pthread_mutex_lock(&q->lock);
    size_t n = q->n;
    pthread_mutex_unlock(&q->lock);
    return n;
}

int command_enqueue(CommandQueue *q, Command *c) {
    pthread_mutex_lock(&q->lock);
    if (!q->closed && q->n >= COMMAND_QUEUE_MAX) {
        pthread_mutex_unlock(&q->lock);
        return -EBUSY;
    }
    pthread_mutex_lock(&refs_lock);
    c->refs++; /* the queue's */
    pthread_mutex_unlock(&refs_lock);
    if (q->closed) {
        pthread_mutex_unlock(&q->lock);
        command_complete(q, c, 503, NULL, false);
        return 0;
    }
    c->state = CMD_QUEUED;
    c->next = NULL;
    if (q->tail)
        q->tail->next = c;
    else
        q->head = c;
    q->tail = c;
    q->n++;
    pthread_mutex_unlock(&q->lock);
    q->wake(q->ud);
    return 0;
}

/* Take c out of the queue (it is queued; q->lock held). */
static void unlink_locked(CommandQueue *q, Command *c) {
    Command *prev = NULL;
    for (Command *i = q->head; i; prev = i, i = i->next) {
        if (i != c)
            continue;
        if (prev)
            prev->next = c->next;
        else
            q->head = c->next;
        if (q->tail == c)
            q->tail = prev;
        c->next = NULL;
        q->n--;
        return;
    }
}

int command_submit(CommandQueue *q, Command *c, int timeout_ms) {
    int r = command_enqueue(q, c);
    if (r < 0)
        return r;
    pthread_mutex_lock(&q->lock);
    if (timeout_ms <= 0)
        timeout_ms = q->timeout_ms;
    pthread_mutex_unlock(&q->lock);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    r = 0;
    bool cancelled = false;
    pthread_mutex_lock(&q->lock);
    while (c->state != CMD_DONE) {
        if (r == 0)
            r = pthread_cond_timedwait(&q->done, &q->lock, &until);
        else if (c->state == CMD_QUEUED) {
            /* not taken in time: it never runs */
            unlink_locked(q, c);
            c->state = CMD_DONE;
            cancelled = true;
        } else {
            pthread_cond_wait(&q->done, &q->lock); /* running: the loop bounds it */
        }
    }
    pthread_mutex_unlock(&q->lock);
    if (cancelled) {
        command_unref(c); /* the queue's */
        return -ETIMEDOUT;
    }
    return 0;
}

Command *command_queue_pop(CommandQueue *q) {
    pthread_mutex_lock(&q->lock);
    Command *c = q->head;
    if (c) {
        q->head = c->next;
        if (!q->head)
            q->tail = NULL;
        c->next = NULL;
        q->n--;
        c->state = CMD_RUNNING;
    }
    pthread_mutex_unlock(&q->lock);
    return c;
}

void command_complete(CommandQueue *q, Command *c, int code, char *result, bool json) {
    pthread_mutex_lock(&q->lock);
    if (c->state != CMD_DONE) {
        c->code = code;
        free(c->result);
        c->result = result;
        c->json = json;
        c->state = CMD_DONE;
    } else {
        free(result);
    }
    pthread_cond_broadcast(&q->done);
    pthread_mutex_unlock(&q->lock);
    command_unref(c);
}

/* ---- validation ---- */

/* A field of the request as Patroni reads it (`data.get(key)`, then its truth value): absent when
 * missing or falsy (null, false, 0, "", [], {}); a string as it is; any other value as its JSON text,
 * so that it fails where Patroni's comparison or timestamp parsing fails (a numeric scheduled_at is
 * refused, not taken as "no schedule": that would switch over at once). */
static char *request_field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v))
        return NULL;
    if (cJSON_IsString(v))
        return v->valuestring[0] ? xstrdup(v->valuestring) : NULL;
    if (cJSON_IsNumber(v) && v->valuedouble == 0)
        return NULL;
    if ((cJSON_IsArray(v) || cJSON_IsObject(v)) && !v->child)
        return NULL;
    return cJSON_PrintUnformatted(v);
}

int failover_request_parse(const char *body, Command *c) {
    cJSON *o = body ? json_parse(body) : NULL;
    if (!o || !cJSON_IsObject(o) || !o->child) {
        cJSON_Delete(o);
        return 400;
    }
    c->leader = request_field(o, "leader");
    c->candidate = request_field(o, "candidate");
    if (!c->candidate)
        c->candidate = request_field(o, "member");
    c->scheduled_at = request_field(o, "scheduled_at");
    cJSON_Delete(o);
    return 0;
}

/* 0 with *ret (s since the epoch) and *ret_off (the timezone's offset in s); 1: no timezone; -EINVAL:
 * unparsable. */
static int parse_timestamp(const char *s, double *ret, long *ret_off) {
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%dT%H:%M", &tm);
    if (!p)
        p = strptime(s, "%Y-%m-%d %H:%M", &tm);
    if (!p)
        return -EINVAL;
    if (*p == ':') {
        int sec;
        int n = 0;
        if (sscanf(p + 1, "%2d%n", &sec, &n) < 1)
            return -EINVAL;
        tm.tm_sec = sec;
        p += 1 + n;
    }
    double frac = 0;
    if (*p == '.') {
        char *end;
        frac = strtod(p, &end);
        p = end;
    }
    long off = 0;
    if (*p == '\0')
        return 1;
    if (*p == 'Z' && p[1] == '\0') {
        /* UTC */
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        int hh = 0, mm = 0, n = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &hh, &mm, &n) == 2 || sscanf(p + 1, "%2d%2d%n", &hh, &mm, &n) == 2 ||
            sscanf(p + 1, "%2d%n", &hh, &n) == 1) {
            if (p[1 + n] != '\0')
                return -EINVAL;
        } else {
            return -EINVAL;
        }
        off = sign * (hh * 3600L + mm * 60L);
    } else {
        return -EINVAL;
    }
    *ret = (double)timegm(&tm) - (double)off + frac;
    *ret_off = off;
    return 0;
}

char *failover_scheduled_iso(const char *s) {
    double at = 0;
    long off = 0;
    if (!s || parse_timestamp(s, &at, &off) != 0)
        return NULL;
    double local = at + (double)off;
    time_t secs = (time_t)floor(local);
    long usec = lround((local - (double)secs) * 1e6);
    if (usec >= 1000000) {
        secs++;
        usec -= 1000000;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    char date[64], frac[32] = "";
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    if (usec)
        snprintf(frac, sizeof frac, ".%06ld", usec);
    long a = off < 0 ? -off : off;
    return xasprintf("%s%s%c%02ld:%02ld", date, frac, off < 0 ? '-' : '+', a / 3600, a % 3600 / 60);
}

/* Patroni's parse_schedule(): 0 with *ret_iso, else the code with *ret_body. */
static int schedule_check(const char *v, const char *action, double now, char **ret_iso, char **ret_body) {
    double at = 0;
    long off = 0;
    int r = v ? parse_timestamp(v, &at, &off) : -EINVAL;
    if (r == 1) {
        *ret_body = xasprintf("Timezone information is mandatory for the scheduled %s", action);
        return 400;
    }
    if (r < 0) {
        *ret_body = xstrdup(
            "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601");
        return 422;
    }
    if (at < now) {
        *ret_body = xasprintf("Cannot schedule %s in the past", action);
        return 422;
    }
    if (ret_iso)
        *ret_iso = failover_scheduled_iso(v);
    return 0;
}

int postgres_version_to_int(const char *s, long long *ret, char **ret_error) {
    long long c[4];
    size_t n = 0;
    const char *p = s;
    bool numeric = true;
    for (;;) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0 || v > 999 || (*end != '.' && *end != '\0')) {
            numeric = false;
            break;
        }
        if (n < ELEMENTSOF(c))
            c[n] = v;
        n++;
        if (*end == '\0')
            break;
        p = end + 1;
    }
    /* Patroni's messages: a part that is not a number, then the wrong number of parts (or 9.6) */
    if (!numeric) {
        *ret_error = xasprintf("Invalid PostgreSQL version: %s", s);
        return -EINVAL;
    }
    if (n < 2 || (n == 2 && c[0] < 10) || n > 3) {
        *ret_error = xasprintf("Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: %s", s);
        return -EINVAL;
    }
    if (n == 2) {
        c[2] = c[1];
        c[1] = 0;
    }
    *ret = c[0] * 10000 + c[1] * 100 + c[2];
    return 0;
}

/* Patroni's parse_int(value, 's'): a number, or a number with a unit (ms, s, min, h, d); rounded. */
static bool seconds_of(const cJSON *v, long long *ret) {
    double x;
    if (cJSON_IsNumber(v)) {
        x = v->valuedouble;
    } else if (cJSON_IsString(v)) {
        char *end;
        errno = 0;
        x = strtod(v->valuestring, &end);
        if (end == v->valuestring || errno)
            return false;
        while (*end == ' ')
            end++;
        static const struct {
            const char *unit;
            double factor;
        } units[] = {{"", 1}, {"ms", 0.001}, {"s", 1}, {"min", 60}, {"h", 3600}, {"d", 86400}};
        size_t i = 0;
        while (i < ELEMENTSOF(units) && strcmp(end, units[i].unit) != 0)
            i++;
        if (i == ELEMENTSOF(units))
            return false;
        x *= units[i].factor;
    } else {
        return false;
    }
    if (!isfinite(x) || fabs(x) > 1e12)
        return false;
    *ret = llround(x);
    return true;
}

int restart_request_check(const cJSON *req, bool paused, double now, cJSON **ret_norm, char **ret_body) {
    *ret_norm = NULL;
    *ret_body = NULL;
    if (paused && cJSON_GetObjectItemCaseSensitive(req, "schedule")) {
        *ret_body = xstrdup("Can't schedule restart in the paused state");
        return 500;
    }
    cJSON *norm = cJSON_CreateObject();
    for (const cJSON *k = req ? req->child : NULL; k; k = k->next) { /* no body: {} */
        const char *key = k->string;
        int code = 0;
        if (streq(key, "schedule")) {
            char *iso = NULL;
            code = schedule_check(cJSON_IsString(k) ? k->valuestring : NULL, "restart", now, &iso, ret_body);
            if (!code)
                cJSON_AddItemToObject(norm, key, cJSON_CreateString(iso));
            free(iso);
        } else if (streq(key, "role")) {
            if (!cJSON_IsString(k) || !(streq(k->valuestring, "primary") || streq(k->valuestring, "standby_leader") ||
                                        streq(k->valuestring, "replica"))) {
                *ret_body = xstrdup("PostgreSQL role should be either primary, standby_leader, or replica");
                code = 400;
            } else {
                cJSON_AddItemToObject(norm, key, cJSON_Duplicate(k, true));
            }
        } else if (streq(key, "postgres_version")) {
            long long v;
            if (!cJSON_IsString(k)) {
                _cleanup_free_ char *text = cJSON_PrintUnformatted(k);
                *ret_body = xasprintf("Invalid PostgreSQL version: %s", text);
                code = 400;
            } else if (postgres_version_to_int(k->valuestring, &v, ret_body) < 0) {
                code = 400;
            } else {
                cJSON_AddItemToObject(norm, key, cJSON_Duplicate(k, true));
            }
        } else if (streq(key, "timeout")) {
            long long t;
            if (!seconds_of(k, &t) || t <= 0) {
                *ret_body = xstrdup("Timeout should be a positive number of seconds");
                code = 400;
            } else {
                cJSON_AddItemToObject(norm, key, cJSON_CreateNumber((double)t));
            }
        } else if (streq(key, "restart_pending")) {
            cJSON_AddItemToObject(norm, key, cJSON_Duplicate(k, true));
        } else {
            *ret_body = xasprintf("Unknown filter for the scheduled restart: %s", key);
            code = 400;
        }
        if (code) {
            cJSON_Delete(norm);
            return code;
        }
    }
    *ret_norm = norm;
    return 0;
}

int failover_request_check(const Command *c, bool paused, double now, char **ret_body) {
    bool failover = c->kind == CMD_FAILOVER;
    *ret_body = NULL;
    if (failover && !c->candidate) {
        *ret_body = xstrdup("Failover could be performed only to a specific candidate");
        return 400;
    }
    if (!failover && !c->leader) {
        *ret_body = xstrdup("Switchover could be performed only from a specific leader");
        return 400;
    }
    if (c->scheduled_at) {
        if (failover) {
            *ret_body = xstrdup("Failover can't be scheduled");
            return 400;
        }
        if (paused) {
            *ret_body = xstrdup("Can't schedule switchover in the paused state");
            return 400;
        }
        int r = schedule_check(c->scheduled_at, "switchover", now, NULL, ret_body);
        if (r)
            return r;
    }
    if (paused && !c->candidate) {
        *ret_body = xstrdup("Switchover is possible only to a specific candidate in a paused state");
        return 400;
    }
    if (c->leader && c->candidate && streq(c->leader, c->candidate)) {
        *ret_body = xstrdup("Switchover target and source are the same");
        return 400;
    }
    return 0;
}

int failover_precheck(const Command *c, const Cluster *cl, const DynConfig *dyn, char **ret_body,
                      const char ***ret_candidates, size_t *ret_n) {
    /* /failover with a leader is a switchover */
    const char *action = c->kind == CMD_FAILOVER && !c->leader ? "failover" : "switchover";
    const char *leader = cl->leader && cl->leader->name[0] ? cl->leader->name : NULL;
    /* (a standby cluster runs no synchronous replication: Patroni's is_synchronous_mode) */
    bool sync_strict = dyn->synchronous_mode == SYNC_ON && !dyn_is_standby_cluster(dyn);
    *ret_body = NULL;
    *ret_candidates = NULL;
    *ret_n = 0;
    if (c->leader && !streq(c->leader, leader)) {
        *ret_body = xstrdup("leader name does not match");
        return 412;
    }
    const char **names = xcalloc(cl->n_members + 1, sizeof *names);
    size_t n = 0;
    if (c->candidate) {
        if (streq(action, "switchover") && sync_strict && !sync_matches(&cl->sync, c->candidate)) {
            free(names);
            *ret_body = xstrdup("candidate name does not match with sync_standby");
            return 412;
        }
        const Member *m = cluster_get_member(cl, c->candidate);
        if (!m) {
            free(names);
            *ret_body = xstrdup("candidate does not exists");
            return 412;
        }
        names[n++] = m->name;
    } else if (sync_strict) {
        for (size_t i = 0; i < cl->n_members; i++)
            if (sync_matches(&cl->sync, cl->members[i].name) && !streq(cl->members[i].name, leader))
                names[n++] = cl->members[i].name;
        if (n == 0) {
            free(names);
            *ret_body = xasprintf("%s is not possible: can not find sync_standby", action);
            return 412;
        }
    } else {
        for (size_t i = 0; i < cl->n_members; i++)
            if (!streq(cl->members[i].name, leader) && cl->members[i].api_url)
                names[n++] = cl->members[i].name;
        if (n == 0) {
            free(names);
            *ret_body = xasprintf("%s is not possible: cluster does not have members except leader", action);
            return 412;
        }
    }
    *ret_candidates = names;
    *ret_n = n;
    return 0;
}

/* Python's str() of a JSON scalar. */
static char *py_str(const cJSON *v) {
    if (cJSON_IsString(v))
        return xstrdup(v->valuestring);
    if (cJSON_IsBool(v))
        return xstrdup(cJSON_IsTrue(v) ? "True" : "False");
    if (cJSON_IsNull(v))
        return xstrdup("None");
    return json_dumps(v, true);
}

bool config_patch(cJSON *config, const cJSON *patch) {
    bool changed = false;
    const cJSON *p;
    cJSON_ArrayForEach(p, patch) {
        cJSON *cur = cJSON_GetObjectItemCaseSensitive(config, p->string);
        if (cJSON_IsNull(p)) {
            if (cur) {
                bool was_null = cJSON_IsNull(cur);
                cJSON_DeleteItemFromObjectCaseSensitive(config, p->string);
                changed |= !was_null;
            }
        } else if (cur) {
            if (cJSON_IsObject(p) && cJSON_IsObject(cur)) {
                changed |= config_patch(cur, p);
            } else {
                char *a = cJSON_IsObject(p) ? NULL : py_str(cur), *b = cJSON_IsObject(p) ? NULL : py_str(p);
                if (cJSON_IsObject(p) || !streq(a, b)) {
                    cJSON_ReplaceItemInObjectCaseSensitive(config, p->string, cJSON_Duplicate(p, true));
                    changed = true;
                }
                free(a);
                free(b);
            }
        } else {
            cJSON_AddItemToObject(config, p->string, cJSON_Duplicate(p, true));
            changed = true;
        }
    }
    return changed;
}
