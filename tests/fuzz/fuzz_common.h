/* Shared by the libFuzzer targets (tests/fuzz/README.md): the section format of their inputs and quiet
 * logging. Header-only: every target is one translation unit plus the code under test. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

/* The inputs of the multi-part targets are sections separated by a line "%%" ("\n%%\n"); each section
 * is copied, NUL-terminated (it may hold NUL bytes of its own: len says how long it is). */
#define FUZZ_SEPARATOR "\n%%\n"
#define FUZZ_MAX_SECTIONS 64

typedef struct FuzzSection {
    char *s;
    size_t len;
} FuzzSection;

typedef struct FuzzSections {
    FuzzSection v[FUZZ_MAX_SECTIONS];
    size_t n;
} FuzzSections;

static inline void fuzz_split(const uint8_t *data, size_t size, FuzzSections *ret) {
    ret->n = 0;
    const char *p = (const char *)data, *end = p + size;
    const size_t seplen = strlen(FUZZ_SEPARATOR);
    while (ret->n < FUZZ_MAX_SECTIONS) {
        const char *sep = memmem(p, (size_t)(end - p), FUZZ_SEPARATOR, seplen);
        /* the last section takes the rest, separators included */
        if (ret->n == FUZZ_MAX_SECTIONS - 1)
            sep = NULL;
        size_t len = sep ? (size_t)(sep - p) : (size_t)(end - p);
        char *s = xmalloc(len + 1);
        memcpy(s, p, len);
        s[len] = '\0';
        ret->v[ret->n++] = (FuzzSection){s, len};
        if (!sep)
            break;
        p = sep + seplen;
    }
}

static inline void fuzz_sections_free(FuzzSections *f) {
    for (size_t i = 0; i < f->n; i++)
        free(f->v[i].s);
    f->n = 0;
}

/* The first line of s (the bytes up to '\n' or the end) as a new string; *ret_rest points after it
 * (NULL when there is no '\n'). */
static inline char *fuzz_first_line(const FuzzSection *sec, const char **ret_rest, size_t *ret_rest_len) {
    const char *nl = memchr(sec->s, '\n', sec->len);
    size_t l = nl ? (size_t)(nl - sec->s) : sec->len;
    *ret_rest = nl ? nl + 1 : NULL;
    *ret_rest_len = nl ? sec->len - l - 1 : 0;
    return xstrndup(sec->s, l);
}

/* Nothing is logged: the code under test logs what it rejects, which would only slow the fuzzer. */
static inline void fuzz_quiet_logs(void) {
    LogSettings s = {.level = (LogLevel)(LOG_CRITICAL + 10), .file_num = -1, .mode = -1};
    (void)log_configure(&s);
}
