#include <stdarg.h>
#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static void oom(void) {
    static const char msg[] = "pgha: out of memory\n";
    (void)!fwrite(msg, 1, sizeof msg - 1, stderr);
    abort();
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p)
        oom();
    return p;
}

void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom();
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *r = realloc(p, n ? n : 1);
    if (!r)
        oom();
    return r;
}

char *xstrdup(const char *s) {
    if (!s)
        return NULL;
    char *r = strdup(s);
    if (!r)
        oom();
    return r;
}

char *xstrndup(const char *s, size_t n) {
    char *r = strndup(s, n);
    if (!r)
        oom();
    return r;
}

char *xvasprintf(const char *fmt, va_list ap) {
    char *r = NULL;
    if (vasprintf(&r, fmt, ap) < 0)
        oom();
    return r;
}

char *xasprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *r = xvasprintf(fmt, ap);
    va_end(ap);
    return r;
}

void sb_init(StrBuf *b) { *b = (StrBuf){0}; }

static void sb_reserve(StrBuf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->s = xrealloc(b->s, cap);
    b->cap = cap;
}

void sb_addn(StrBuf *b, const char *s, size_t n) {
    sb_reserve(b, n);
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void sb_add(StrBuf *b, const char *s) { sb_addn(b, s, strlen(s)); }

void sb_addc(StrBuf *b, char c) { sb_addn(b, &c, 1); }

void sb_vaddf(StrBuf *b, const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return;
    sb_reserve(b, (size_t)n);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void sb_addf(StrBuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    sb_vaddf(b, fmt, ap);
    va_end(ap);
}

char *sb_steal(StrBuf *b) {
    char *r = b->s ? b->s : xstrdup("");
    *b = (StrBuf){0};
    return r;
}

void sb_free(StrBuf *b) {
    free(b->s);
    *b = (StrBuf){0};
}

void strlist_add(StrList *l, const char *s) {
    l->v = xrealloc(l->v, (l->n + 1) * sizeof(char *));
    l->v[l->n++] = xstrdup(s);
}

void strlist_addf(StrList *l, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = xvasprintf(fmt, ap);
    va_end(ap);
    l->v = xrealloc(l->v, (l->n + 1) * sizeof(char *));
    l->v[l->n++] = s;
}

void strlist_clear(StrList *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    *l = (StrList){0};
}

void strlist_copy(StrList *dst, const StrList *src) {
    *dst = (StrList){0};
    for (size_t i = 0; i < src->n; i++)
        strlist_add(dst, src->v[i]);
}

bool strlist_equal(const StrList *a, const StrList *b) {
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i]) != 0)
            return false;
    return true;
}

bool strlist_contains(const StrList *l, const char *s) {
    for (size_t i = 0; i < l->n; i++)
        if (streq(l->v[i], s))
            return true;
    return false;
}

char *strlist_join(const StrList *l, const char *sep) {
    StrBuf b;
    sb_init(&b);
    for (size_t i = 0; i < l->n; i++) {
        if (i)
            sb_add(&b, sep);
        sb_add(&b, l->v[i]);
    }
    return sb_steal(&b);
}

bool streq(const char *a, const char *b) {
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

bool strcaseeq(const char *a, const char *b) {
    if (!a || !b)
        return a == b;
    return strcasecmp(a, b) == 0;
}

bool str_startswith(const char *s, const char *prefix) { return s && strncmp(s, prefix, strlen(prefix)) == 0; }

char *str_trim(char *s) {
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    char *b = s;
    while (*b && isspace((unsigned char)*b))
        b++;
    if (b != s)
        memmove(s, b, strlen(b) + 1);
    return s;
}

int parse_ll(const char *s, long long *ret) {
    if (!s || !*s)
        return -EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    if (end == s || *end != '\0' || isspace((unsigned char)*s))
        return -EINVAL;
    *ret = v;
    return 0;
}

long long ll_add_sat(long long a, long long b) {
    long long r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? LLONG_MAX : LLONG_MIN;
    return r;
}

long long ll_sub_sat(long long a, long long b) {
    long long r;
    if (__builtin_sub_overflow(a, b, &r))
        return b < 0 ? LLONG_MAX : LLONG_MIN;
    return r;
}

int parse_double(const char *s, double *ret) {
    if (!s || !*s)
        return -EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno == ERANGE)
        return -ERANGE;
    if (end == s || *end != '\0' || isspace((unsigned char)*s) || !isfinite(v))
        return -EINVAL;
    *ret = v;
    return 0;
}

static usec_t now_clock(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (usec_t)ts.tv_sec * USEC_PER_SEC + (usec_t)ts.tv_nsec / 1000;
}

usec_t now_monotonic(void) { return now_clock(CLOCK_MONOTONIC); }
usec_t now_realtime(void) { return now_clock(CLOCK_REALTIME); }
