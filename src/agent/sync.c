#include "agent/sync.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"

bool strlist_same_set(const StrList *a, const StrList *b) {
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        bool found = false;
        for (size_t k = 0; k < b->n && !found; k++)
            found = strcasecmp(a->v[i], b->v[k]) == 0;
        if (!found)
            return false;
    }
    return true;
}

typedef struct Row {
    const char *name;
    const char *sync_state;
    long long lsn;
    bool nofailover;
} Row;

static int state_rank(const char *s) {
    /* reverse string order: sync > quorum > potential > async */
    if (!s)
        return 0;
    if (strcmp(s, "sync") == 0)
        return 4;
    if (strcmp(s, "quorum") == 0)
        return 3;
    if (strcmp(s, "potential") == 0)
        return 2;
    if (strcmp(s, "async") == 0)
        return 1;
    return 0;
}

static int cmp_rows(const void *pa, const void *pb) {
    const Row *a = pa, *b = pb;
    if (a->nofailover != b->nofailover)
        return a->nofailover ? 1 : -1;
    int sa = state_rank(a->sync_state), sb = state_rank(b->sync_state);
    if (sa != sb)
        return sb - sa;
    if (a->lsn != b->lsn)
        return a->lsn > b->lsn ? -1 : 1;
    return strcmp(a->name, b->name);
}

void sync_pick(const cJSON *replication, const Cluster *c, const char *me, const char *synchronous_commit,
               long long count, long long max_lag_on_syncnode, long long primary_lsn, const StrList *current_ssn,
               StrList *ret_picked, StrList *ret_confirmed) {
    *ret_picked = (StrList){0};
    *ret_confirmed = (StrList){0};
    const char *lsn_field = "flush_lsn";
    if (synchronous_commit && strcmp(synchronous_commit, "remote_apply") == 0)
        lsn_field = "replay_lsn";
    else if (synchronous_commit && strcmp(synchronous_commit, "remote_write") == 0)
        lsn_field = "write_lsn";
    int n = cJSON_GetArraySize(replication);
    Row *rows = xcalloc((size_t)n + 1, sizeof(Row));
    size_t nr = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, replication) {
        const char *app = json_get_string(r, "application_name");
        const char *state = json_get_string(r, "state");
        if (!app || !state || strcmp(state, "streaming") != 0 || strcasecmp(app, me) == 0)
            continue;
        const Member *m = NULL;
        for (size_t i = 0; c && i < c->n_members; i++)
            if (strcasecmp(c->members[i].name, app) == 0)
                m = &c->members[i];
        if (!m || !streq(m->state, "running") || member_tag_bool(m, "nosync") || member_tag_bool(m, "nostream"))
            continue;
        if (m->tags) {
            const char *rf = json_get_string(m->tags, "replicatefrom");
            if (rf && strcasecmp(rf, me) != 0)
                continue; /* cascading from another member: not ours to make synchronous */
        }
        long long lsn = 0;
        (void)json_get_ll(r, lsn_field, &lsn);
        rows[nr++] = (Row){.name = m->name, .sync_state = json_get_string(r, "sync_state"), .lsn = lsn,
                           .nofailover = member_nofailover(m)};
    }
    qsort(rows, nr, sizeof(Row), cmp_rows);
    long long best = nr ? rows[0].lsn : 0;
    for (size_t i = 0; i < nr; i++)
        if (rows[i].lsn > best)
            best = rows[i].lsn;
    long long ref = nr == 1 ? primary_lsn : best;
    for (size_t i = 0; i < nr && (long long)ret_picked->n < count; i++) {
        if (max_lag_on_syncnode > 0 && ref - rows[i].lsn > max_lag_on_syncnode)
            continue;
        strlist_add(ret_picked, rows[i].name);
        if (rows[i].sync_state && strcmp(rows[i].sync_state, "sync") == 0 && current_ssn) {
            for (size_t k = 0; k < current_ssn->n; k++)
                if (strcasecmp(current_ssn->v[k], rows[i].name) == 0) {
                    strlist_add(ret_confirmed, rows[i].name);
                    break;
                }
        }
    }
    free(rows);
}

static bool plain_name(const char *s) {
    if (!*s || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (const char *p = s; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '$'))
            return false;
    return strcasecmp(s, "first") != 0 && strcasecmp(s, "any") != 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

char *sync_render_ssn(const StrList *names, long long count, bool strict) {
    if (!names || names->n == 0)
        return xstrdup(strict ? "*" : "");
    StrList sorted;
    strlist_copy(&sorted, names);
    qsort(sorted.v, sorted.n, sizeof(char *), cmp_str);
    StrBuf b;
    sb_init(&b);
    if (sorted.n > 1)
        sb_addf(&b, "%lld (", count < (long long)sorted.n ? count : (long long)sorted.n);
    for (size_t i = 0; i < sorted.n; i++) {
        if (i)
            sb_addc(&b, ',');
        if (plain_name(sorted.v[i]))
            sb_add(&b, sorted.v[i]);
        else {
            sb_addc(&b, '"');
            for (const char *p = sorted.v[i]; *p; p++) {
                if (*p == '"')
                    sb_addc(&b, '"');
                sb_addc(&b, *p);
            }
            sb_addc(&b, '"');
        }
    }
    if (sorted.n > 1)
        sb_addc(&b, ')');
    strlist_clear(&sorted);
    return sb_steal(&b);
}

void sync_parse_ssn(const char *ssn, StrList *ret) {
    *ret = (StrList){0};
    if (!ssn)
        return;
    const char *p = ssn;
    while (isspace((unsigned char)*p))
        p++;
    /* skip "FIRST n (", "ANY n (", "n (" */
    const char *paren = strchr(p, '(');
    if (paren)
        p = paren + 1;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (!*p || *p == ')')
            break;
        StrBuf b;
        sb_init(&b);
        if (*p == '"') {
            p++;
            while (*p) {
                if (*p == '"' && p[1] == '"') {
                    sb_addc(&b, '"');
                    p += 2;
                } else if (*p == '"') {
                    p++;
                    break;
                } else {
                    sb_addc(&b, *p++);
                }
            }
        } else {
            while (*p && *p != ',' && *p != ')' && !isspace((unsigned char)*p))
                sb_addc(&b, *p++);
        }
        if (b.len)
            strlist_add(ret, b.s);
        sb_free(&b);
    }
}
