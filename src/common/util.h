/* Small helpers shared by every module: allocation, strings, cleanup. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* Out-of-memory policy: abort (as tinc's xalloc). A daemon that cannot allocate a few bytes
 * cannot keep its lease safely either; systemd restarts it. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

#define _cleanup_(f) __attribute__((cleanup(f)))
#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

static inline void *take_ptr_(void **p) {
    void *r = *p;
    *p = NULL;
    return r;
}
#define TAKE_PTR(p) take_ptr_((void **)&(p))

static inline void freep(void *p) { free(*(void **)p); }
#define _cleanup_free_ _cleanup_(freep)

/* A growable string. */
typedef struct StrBuf {
    char *s;
    size_t len, cap;
} StrBuf;

void sb_init(StrBuf *b);
void sb_add(StrBuf *b, const char *s);
void sb_addn(StrBuf *b, const char *s, size_t n);
void sb_addc(StrBuf *b, char c);
void sb_addf(StrBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_vaddf(StrBuf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
char *sb_steal(StrBuf *b); /* returns the string ("" if empty), resets the buffer */
void sb_free(StrBuf *b);

/* A list of owned strings. */
typedef struct StrList {
    char **v;
    size_t n;
} StrList;

void strlist_add(StrList *l, const char *s);
void strlist_addf(StrList *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strlist_clear(StrList *l);
void strlist_copy(StrList *dst, const StrList *src);
bool strlist_equal(const StrList *a, const StrList *b);
bool strlist_contains(const StrList *l, const char *s);
char *strlist_join(const StrList *l, const char *sep);

bool streq(const char *a, const char *b);     /* NULL-safe */
bool strcaseeq(const char *a, const char *b); /* NULL-safe, ASCII case-insensitive */
bool str_startswith(const char *s, const char *prefix);
char *str_trim(char *s); /* in place, returns s */

/* Parse a whole string as an integer / non-negative number. Return 0 or -EINVAL/-ERANGE. */
int parse_ll(const char *s, long long *ret);
int parse_double(const char *s, double *ret);

/* a + b and a - b clamped to long long's range: WAL positions and lags read from the DCS or a peer may be
 * anything, and an overflow is undefined behaviour. */
long long ll_add_sat(long long a, long long b);
long long ll_sub_sat(long long a, long long b);

/* Monotonic and wall-clock time in microseconds. */
typedef uint64_t usec_t;
#define USEC_PER_SEC ((usec_t)1000000)
#define USEC_PER_MSEC ((usec_t)1000)
usec_t now_monotonic(void);
usec_t now_realtime(void);
