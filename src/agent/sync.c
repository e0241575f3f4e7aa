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
    long long sync_priority; /* Patroni 4.1's tag: higher first */
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
    if (a->sync_priority != b->sync_priority)
        return a->sync_priority > b->sync_priority ? -1 : 1;
    int sa = state_rank(a->sync_state), sb = state_rank(b->sync_state);
    if (sa != sb)
        return sb - sa;
    if (a->lsn != b->lsn)
        return a->lsn > b->lsn ? -1 : 1;
    return strcmp(a->name, b->name);
}

static bool ci_contains(const StrList *l, const char *s) {
    for (size_t i = 0; l && i < l->n; i++)
        if (strcasecmp(l->v[i], s) == 0)
            return true;
    return false;
}

/* The eligible pg_stat_replication rows, ranked (spec §4.10 "candidate ranking"), lag filter applied. */
static Row *collect_rows(const cJSON *replication, const Cluster *c, const char *me, const char *synchronous_commit,
                         long long max_lag_on_syncnode, long long primary_lsn, size_t *ret_n) {
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
        if (!m || !streq(m->state, "running") || member_nosync(m) || member_tag_bool(m, "nostream"))
            continue;
        if (m->tags) {
            const char *rf = json_get_string(m->tags, "replicatefrom");
            if (rf && strcasecmp(rf, me) != 0)
                continue; /* cascading from another member: not ours to make synchronous */
        }
        bool dup = false;
        for (size_t i = 0; i < nr && !dup; i++)
            dup = strcasecmp(rows[i].name, m->name) == 0;
        if (dup)
            continue; /* two walsenders with one application_name: count the member once */
        long long lsn = 0;
        (void)json_get_ll(r, lsn_field, &lsn);
        rows[nr++] = (Row){.name = m->name,
                           .sync_state = json_get_string(r, "sync_state"),
                           .lsn = lsn,
                           .nofailover = member_nofailover(m),
                           .sync_priority = member_sync_priority(m)};
    }
    qsort(rows, nr, sizeof(Row), cmp_rows);
    long long best = 0;
    for (size_t i = 0; i < nr; i++)
        if (rows[i].lsn > best)
            best = rows[i].lsn;
    long long ref = nr == 1 ? primary_lsn : best;
    size_t kept = 0;
    for (size_t i = 0; i < nr; i++)
        if (!(max_lag_on_syncnode > 0 && ref - rows[i].lsn > max_lag_on_syncnode))
            rows[kept++] = rows[i];
    *ret_n = kept;
    return rows;
}

void sync_pick(const cJSON *replication, const Cluster *c, const char *me, const char *synchronous_commit,
               long long count, long long max_lag_on_syncnode, long long primary_lsn, const StrList *current_ssn,
               const StrList *in_sync, long long confirm_lsn, StrList *ret_picked, StrList *ret_confirmed) {
    *ret_picked = (StrList){0};
    *ret_confirmed = (StrList){0};
    size_t nr;
    Row *rows = collect_rows(replication, c, me, synchronous_commit, max_lag_on_syncnode, primary_lsn, &nr);
    for (size_t i = 0; i < nr && (long long)ret_picked->n < count; i++) {
        strlist_add(ret_picked, rows[i].name);
        /* confirmed: PostgreSQL reports it sync under the synchronous_standby_names in force, and it
         * already was in /sync or has flushed everything the primary had when that value was set
         * (every commit acknowledged before it became synchronous) */
        if (rows[i].sync_state && strcmp(rows[i].sync_state, "sync") == 0 && ci_contains(current_ssn, rows[i].name) &&
            (ci_contains(in_sync, rows[i].name) || rows[i].lsn >= confirm_lsn))
            strlist_add(ret_confirmed, rows[i].name);
    }
    free(rows);
}

void sync_quorum_rows(const cJSON *replication, const Cluster *c, const char *me, const char *synchronous_commit,
                      long long count, long long max_lag_on_syncnode, long long primary_lsn, long long confirm_lsn,
                      StrList *ret_active, StrList *ret_confirmed) {
    *ret_active = (StrList){0};
    *ret_confirmed = (StrList){0};
    size_t nr;
    Row *rows = collect_rows(replication, c, me, synchronous_commit, max_lag_on_syncnode, primary_lsn, &nr);
    for (size_t i = 0; i < nr; i++) {
        /* nofailover members (ranked last) only while fewer than synchronous_node_count are picked */
        if (rows[i].nofailover && (long long)ret_active->n >= count)
            continue;
        strlist_add(ret_active, rows[i].name);
        if (rows[i].lsn >= confirm_lsn)
            strlist_add(ret_confirmed, rows[i].name);
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

static void add_name(StrBuf *b, const char *name) {
    if (plain_name(name)) {
        sb_add(b, name);
        return;
    }
    sb_addc(b, '"');
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            sb_addc(b, '"');
        sb_addc(b, *p);
    }
    sb_addc(b, '"');
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The names sorted, comma-separated, each quoted when it needs to be. */
static void add_sorted_names(StrBuf *b, const StrList *names) {
    StrList sorted;
    strlist_copy(&sorted, names);
    qsort(sorted.v, sorted.n, sizeof(char *), cmp_str);
    for (size_t i = 0; i < sorted.n; i++) {
        if (i)
            sb_addc(b, ',');
        add_name(b, sorted.v[i]);
    }
    strlist_clear(&sorted);
}

char *sync_render_ssn(const StrList *names, long long count, bool strict) {
    if (!names || names->n == 0)
        return xstrdup(strict ? "*" : "");
    StrBuf b;
    sb_init(&b);
    if (names->n > 1)
        sb_addf(&b, "%lld (", count < (long long)names->n ? count : (long long)names->n);
    add_sorted_names(&b, names);
    if (names->n > 1)
        sb_addc(&b, ')');
    return sb_steal(&b);
}

void ssn_value_clear(SsnValue *v) {
    strlist_clear(&v->names);
    *v = (SsnValue){0};
}

void sync_parse_ssn_full(const char *ssn, SsnValue *ret) {
    *ret = (SsnValue){0};
    if (!ssn)
        return;
    const char *p = ssn;
    while (isspace((unsigned char)*p))
        p++;
    if (!*p)
        return;
    /* "FIRST n (", "ANY n (", "n (" or a bare list (meaning 1 of the first listed) */
    const char *paren = strchr(p, '(');
    ret->num = 1;
    if (paren) {
        const char *q = p;
        if (strncasecmp(q, "any", 3) == 0 && isspace((unsigned char)q[3]))
            q += 3;
        else if (strncasecmp(q, "first", 5) == 0 && isspace((unsigned char)q[5]))
            q += 5;
        while (isspace((unsigned char)*q))
            q++;
        char *end;
        long long n = strtoll(q, &end, 10);
        if (end != q && n >= 0)
            ret->num = n;
        p = paren + 1;
    }
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (!*p || *p == ')')
            break;
        StrBuf b;
        sb_init(&b);
        bool quoted = *p == '"';
        if (quoted) {
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
        if (!quoted && strcmp(b.s ? b.s : "", "*") == 0)
            ret->star = true;
        else if (b.len)
            strlist_add(&ret->names, b.s);
        sb_free(&b);
    }
    if (!ret->star && ret->names.n == 0)
        ret->num = 0;
}

void sync_parse_ssn(const char *ssn, StrList *ret) {
    SsnValue v;
    sync_parse_ssn_full(ssn, &v);
    *ret = v.names;
    if (v.star)
        strlist_add(ret, "*");
}

char *sync_render_ssn_quorum(const StrList *names, long long num, bool star) {
    if (star)
        return xstrdup("ANY 1 (*)");
    if (!names || names->n == 0 || num <= 0)
        return xstrdup("");
    StrBuf b;
    sb_init(&b);
    sb_addf(&b, "ANY %lld (", num < (long long)names->n ? num : (long long)names->n);
    add_sorted_names(&b, names);
    sb_addc(&b, ')');
    return sb_steal(&b);
}

/* ---------------------------------------------------------------------------------------------- */
/* quorum mode                                                                                     */

static size_t count_not_in(const StrList *a, const StrList *b) {
    size_t n = 0;
    for (size_t i = 0; i < a->n; i++)
        if (!ci_contains(b, a->v[i]))
            n++;
    return n;
}

static size_t count_in(const StrList *a, const StrList *b) { return a->n - count_not_in(a, b); }

long long sync_quorum_guarantee(const SsnValue *ssn, const StrList *voters, const StrList *confirmed) {
    if (ssn->num <= 0 || ssn->star)
        return 0;
    long long g_new = ssn->num - (long long)count_not_in(&ssn->names, voters);
    long long g_old = (long long)count_in(voters, confirmed);
    long long g = g_new < g_old ? g_new : g_old;
    return g > 0 ? g : 0;
}

static long long quorum_for(const StrList *voters, long long guarantee) {
    long long q = (long long)voters->n - guarantee;
    return q > 0 ? q : 0;
}

void sync_quorum_plan(const QuorumInput *in, QuorumPlan *out) {
    *out = (QuorumPlan){0};
    const SyncState *s = in->sync;
    bool mine = s && s->leader && strcasecmp(s->leader, in->me) == 0;
    if (in->grace) {
        /* just promoted: the replicas have not reconnected yet. Take /sync over with the voters of
         * the synchronous_standby_names set before the promotion; drop nobody yet. */
        if (mine)
            return;
        for (size_t i = 0; i < in->ssn->names.n; i++)
            if (strcasecmp(in->ssn->names.v[i], in->me) != 0 && !ci_contains(&out->voters, in->ssn->names.v[i]))
                strlist_add(&out->voters, in->ssn->names.v[i]);
        out->quorum = quorum_for(&out->voters, sync_quorum_guarantee(in->ssn, &out->voters, in->confirmed));
        out->write_sync = true;
        return;
    }
    /* the steady state for the active replicas A: ssn = ANY min(wanted, |A|) (A), voters = A,
     * quorum = |A| - numsync (spec §4.10); strict without any replica: ANY 1 (*) */
    SsnValue next = {0};
    long long n = in->wanted < (long long)in->active->n ? in->wanted : (long long)in->active->n;
    if (n > 0) {
        next.num = n;
        strlist_copy(&next.names, in->active);
    } else if (in->strict) {
        next.num = 1;
        next.star = true;
    }
    StrList voters = {0};
    if (!next.star)
        strlist_copy(&voters, in->active);
    bool ssn_same = in->ssn->num == next.num && in->ssn->star == next.star &&
                    strlist_same_set(&in->ssn->names, &next.names);
    long long g = sync_quorum_guarantee(in->ssn, &voters, in->confirmed);
    if (!ssn_same) {
        /* /sync first, with a quorum that holds under the value in force and under the next one
         * (commits acknowledged after the change are on next.num of next.names) */
        long long g_next = next.star || next.num <= 0 ? 0 : next.num - (long long)count_not_in(&next.names, &voters);
        if (g_next < g)
            g = g_next;
        if (g < 0)
            g = 0;
        out->write_ssn = true;
        out->ssn = next;
    } else {
        ssn_value_clear(&next);
    }
    long long q = quorum_for(&voters, g);
    if (!mine || s->quorum != q || !strlist_same_set(&s->members, &voters)) {
        out->write_sync = true;
        out->quorum = q;
        out->voters = voters;
    } else {
        strlist_clear(&voters);
    }
}

void quorum_plan_clear(QuorumPlan *p) {
    strlist_clear(&p->voters);
    ssn_value_clear(&p->ssn);
}

void sync_quorum_pre_promote(const SyncState *s, const char *me, bool strict, StrList *ret_names, long long *ret_num) {
    *ret_names = (StrList){0};
    StrList set = {0};
    if (s->leader)
        strlist_add(&set, s->leader);
    for (size_t i = 0; i < s->members.n; i++)
        if (!ci_contains(&set, s->members.v[i]))
            strlist_add(&set, s->members.v[i]);
    bool in = ci_contains(&set, me);
    for (size_t i = 0; i < set.n; i++)
        if (strcasecmp(set.v[i], me) != 0)
            strlist_add(ret_names, set.v[i]);
    long long n = (long long)set.n - s->quorum - 1 + (in ? 0 : 1);
    if (strict && n < 1)
        n = 1;
    if (n > (long long)ret_names->n)
        n = (long long)ret_names->n;
    *ret_num = n > 0 ? n : 0;
    strlist_clear(&set);
}
