/* Synchronous replication (spec §4.10): synchronous_standby_names rendering and parsing, choosing
 * and confirming synchronous standbys, and quorum mode. The quorum tests end with a model check:
 * random histories of commits, replicas streaming / lagging / disconnecting / dying, HA cycles of
 * the primary (the real sync_process() of sync_exec.c, its DCS and PostgreSQL faked by the model) and
 * failovers decided by the real is_healthiest_node() (the winner runs the real sync_before_promote());
 * after every event and after every single write of /sync or synchronous_standby_names, every replica
 * that would win the race if the primary died now must hold every commit acknowledged so far. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "unit_helpers.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/decide.h"
#include "agent/sync.h"
#include "common/config.h"
#include "common/util.h"
#include "common/yamltree.h"
#include "dcs/cluster.h"
#include "fakes.h"

static StrList list_of(const char *csv) {
    StrList l = {0};
    if (!csv || !*csv)
        return l;
    char *dup = xstrdup(csv), *save = NULL;
    for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save))
        strlist_add(&l, t);
    free(dup);
    return l;
}

static char *joined(const StrList *l) { return strlist_join(l, ","); }

#define assert_list(l, csv)           \
    do {                              \
        char *j_ = joined(l);         \
        assert_string_equal(j_, csv); \
        free(j_);                     \
    } while (0)

/* ------------------------------------------------------------------------------------------------
 * rendering and parsing */

static void test_render(void **state) {
    (void)state;
    StrList one = list_of("node2"), two = list_of("node3,node2"), odd = list_of("Node-2,any,first,x$1");
    char *s;
    assert_string_equal(s = sync_render_ssn(&one, 1, false), "node2"), free(s);
    assert_string_equal(s = sync_render_ssn(&two, 1, false), "1 (node2,node3)"), free(s);
    assert_string_equal(s = sync_render_ssn(&two, 5, false), "2 (node2,node3)"), free(s);
    assert_string_equal(s = sync_render_ssn(NULL, 1, true), "*"), free(s);
    assert_string_equal(s = sync_render_ssn(NULL, 1, false), ""), free(s);
    assert_string_equal(s = sync_render_ssn(&odd, 1, false), "1 (\"Node-2\",\"any\",\"first\",x$1)"), free(s);
    assert_string_equal(s = sync_render_ssn_quorum(&one, 1, false), "ANY 1 (node2)"), free(s);
    assert_string_equal(s = sync_render_ssn_quorum(&two, 1, false), "ANY 1 (node2,node3)"), free(s);
    assert_string_equal(s = sync_render_ssn_quorum(&two, 3, false), "ANY 2 (node2,node3)"), free(s);
    assert_string_equal(s = sync_render_ssn_quorum(NULL, 0, true), "ANY 1 (*)"), free(s);
    assert_string_equal(s = sync_render_ssn_quorum(&two, 0, false), ""), free(s);
    strlist_clear(&one);
    strlist_clear(&two);
    strlist_clear(&odd);
}

static void test_parse(void **state) {
    (void)state;
    static const struct {
        const char *in;
        long long num;
        bool star;
        const char *names;
    } rows[] = {
        {"", 0, false, ""},
        {"   ", 0, false, ""},
        {"node2", 1, false, "node2"},
        {"node2, node3", 1, false, "node2,node3"},
        {"2 (node2,node3)", 2, false, "node2,node3"},
        {"FIRST 2 (a, \"B c\")", 2, false, "a,B c"},
        {"ANY 1 (node2,node3)", 1, false, "node2,node3"},
        {"any 2 (\"x\"\"y\",z)", 2, false, "x\"y,z"},
        {"*", 1, true, ""},
        {"ANY 1 (*)", 1, true, ""},
        {"\"*\"", 1, false, "*"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        SsnValue v;
        sync_parse_ssn_full(rows[i].in, &v);
        if (v.num != rows[i].num || v.star != rows[i].star)
            print_error("row %zu: %s -> num %lld star %d\n", i, rows[i].in, v.num, v.star);
        assert_int_equal(v.num, rows[i].num);
        assert_int_equal(v.star, rows[i].star);
        assert_list(&v.names, rows[i].names);
        ssn_value_clear(&v);
    }
    /* round trip */
    StrList names = list_of("b-1,a,ANY");
    char *r = sync_render_ssn_quorum(&names, 2, false);
    SsnValue v;
    sync_parse_ssn_full(r, &v);
    assert_int_equal(v.num, 2);
    assert_list(&v.names, "ANY,a,b-1");
    ssn_value_clear(&v);
    free(r);
    strlist_clear(&names);
}

/* ------------------------------------------------------------------------------------------------
 * choosing standbys */

static Cluster *members_cluster(const char *names, const char *nosync) {
    Cluster *c = xcalloc(1, sizeof *c);
    StrList l = list_of(names);
    c->members = xcalloc(l.n + 1, sizeof(Member));
    for (size_t i = 0; i < l.n; i++) {
        Member *m = &c->members[c->n_members++];
        m->name = xstrdup(l.v[i]);
        m->state = xstrdup("running");
        if (nosync && strcmp(nosync, l.v[i]) == 0)
            m->tags = cJSON_Parse("{\"nosync\":true}");
    }
    strlist_clear(&l);
    return c;
}

static cJSON *replication(const char *spec) {
    /* "name:state:sync_state:flush;..." */
    cJSON *a = cJSON_CreateArray();
    char *dup = xstrdup(spec), *save = NULL;
    for (char *t = strtok_r(dup, ";", &save); t; t = strtok_r(NULL, ";", &save)) {
        char name[64], st[32], ss[32];
        long long lsn;
        assert_int_equal(sscanf(t, "%63[^:]:%31[^:]:%31[^:]:%lld", name, st, ss, &lsn), 4);
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "application_name", name);
        cJSON_AddStringToObject(r, "state", st);
        cJSON_AddStringToObject(r, "sync_state", ss);
        cJSON_AddNumberToObject(r, "flush_lsn", (double)lsn);
        cJSON_AddNumberToObject(r, "write_lsn", (double)lsn);
        cJSON_AddNumberToObject(r, "replay_lsn", (double)lsn);
        cJSON_AddItemToArray(a, r);
    }
    free(dup);
    return a;
}

static void free_cluster(Cluster *c) {
    for (size_t i = 0; i < c->n_members; i++) {
        free(c->members[i].name);
        free(c->members[i].state);
        cJSON_Delete(c->members[i].tags);
    }
    free(c->members);
    strlist_clear(&c->sync.members);
    free(c->sync.leader);
    free(c);
}

static void test_pick_and_confirm(void **state) {
    (void)state;
    Cluster *c = members_cluster("node1,node2,node3,node4", "node4");
    cJSON *rep = replication("node2:streaming:sync:900;node3:streaming:potential:1000;node4:streaming:async:1000;"
                             "ghost:streaming:async:1000;node1:streaming:async:1000");
    StrList ssn = list_of("node2"), in_sync = {0}, picked, confirmed;
    /* node2 is sync and listed but has not reached the flush LSN of the ssn change (950) and is
     * not in /sync yet: not confirmed */
    sync_pick(rep, c, "node1", "on", 1, -1, 1000, &ssn, &in_sync, 950, &picked, &confirmed);
    assert_list(&picked, "node2");
    assert_int_equal(confirmed.n, 0);
    strlist_clear(&picked);
    strlist_clear(&confirmed);
    /* once in /sync it stays confirmed while PostgreSQL reports it sync */
    strlist_add(&in_sync, "node2");
    sync_pick(rep, c, "node1", "on", 1, -1, 1000, &ssn, &in_sync, 950, &picked, &confirmed);
    assert_list(&confirmed, "node2");
    strlist_clear(&picked);
    strlist_clear(&confirmed);
    /* two wanted: sync first, then by LSN; nosync node4, unknown ghost and ourselves never */
    sync_pick(rep, c, "node1", "on", 2, -1, 1000, &ssn, &in_sync, 0, &picked, &confirmed);
    assert_list(&picked, "node2,node3");
    strlist_clear(&picked);
    strlist_clear(&confirmed);
    /* maximum_lag_on_syncnode drops node2 (100 behind the best) */
    sync_pick(rep, c, "node1", "on", 1, 50, 1000, &ssn, &in_sync, 0, &picked, &confirmed);
    assert_list(&picked, "node3");
    strlist_clear(&picked);
    strlist_clear(&confirmed);
    /* quorum rows: every eligible one; confirmed = reached the LSN */
    StrList active;
    sync_quorum_rows(rep, c, "node1", "on", 1, -1, 1000, 950, &active, &confirmed);
    assert_list(&active, "node2,node3");
    assert_list(&confirmed, "node3");
    strlist_clear(&active);
    strlist_clear(&confirmed);
    strlist_clear(&ssn);
    strlist_clear(&in_sync);
    cJSON_Delete(rep);
    free_cluster(c);
}

/* Patroni 4.1's sync_priority tag: 0 (or less) = never synchronous, higher preferred before
 * sync_state and LSN; nofailover members still come last; an explicit nosync wins over it. */
static void test_pick_sync_priority(void **state) {
    (void)state;
    Cluster *c = members_cluster("node1,node2,node3,node4,node5", NULL);
    c->members[1].tags = cJSON_Parse("{\"sync_priority\":1}");     /* node2: the default */
    c->members[2].tags = cJSON_Parse("{\"sync_priority\":5}");     /* node3: preferred */
    c->members[3].tags = cJSON_Parse("{\"sync_priority\":0}");     /* node4: never */
    c->members[4].tags = cJSON_Parse("{\"sync_priority\":\"3\"}"); /* node5: as a string */
    cJSON *rep = replication("node2:streaming:sync:1000;node3:streaming:async:500;node4:streaming:async:2000;"
                             "node5:streaming:async:900");
    StrList ssn = list_of("node2"), in_sync = list_of("node2"), picked, confirmed;
    /* node3 (5) before node5 (3) before node2 (1, though sync and ahead); node4 never */
    sync_pick(rep, c, "node1", "on", 4, -1, 2000, &ssn, &in_sync, 0, &picked, &confirmed);
    assert_list(&picked, "node3,node5,node2");
    assert_list(&confirmed, "node2");
    strlist_clear(&picked);
    strlist_clear(&confirmed);
    sync_pick(rep, c, "node1", "on", 1, -1, 2000, &ssn, &in_sync, 0, &picked, &confirmed);
    assert_list(&picked, "node3");
    assert_int_equal(confirmed.n, 0);
    strlist_clear(&picked);
    strlist_clear(&confirmed);
    /* quorum mode: the same order, node4 left out */
    StrList active;
    sync_quorum_rows(rep, c, "node1", "on", 1, -1, 2000, 0, &active, &confirmed);
    assert_list(&active, "node3,node5,node2");
    strlist_clear(&active);
    strlist_clear(&confirmed);
    /* nofailover still ranks last, whatever the priority; an explicit nosync: false beats sync_priority 0 */
    cJSON_Delete(c->members[2].tags);
    c->members[2].tags = cJSON_Parse("{\"sync_priority\":5,\"nofailover\":true}");
    cJSON_Delete(c->members[3].tags);
    c->members[3].tags = cJSON_Parse("{\"sync_priority\":0,\"nosync\":false}");
    sync_pick(rep, c, "node1", "on", 4, -1, 2000, &ssn, &in_sync, 0, &picked, &confirmed);
    assert_list(&picked, "node5,node2,node4,node3");
    strlist_clear(&picked);
    strlist_clear(&confirmed);
    /* the member helpers */
    assert_int_equal(member_sync_priority(&c->members[0]), 1);
    assert_false(member_nosync(&c->members[0]));
    assert_int_equal(member_sync_priority(&c->members[3]), 0);
    assert_false(member_nosync(&c->members[3]));
    cJSON_Delete(c->members[3].tags);
    c->members[3].tags = cJSON_Parse("{\"sync_priority\":7,\"nosync\":true}");
    assert_int_equal(member_sync_priority(&c->members[3]), 0);
    assert_true(member_nosync(&c->members[3]));
    cJSON_Delete(c->members[3].tags);
    c->members[3].tags = cJSON_Parse("{\"sync_priority\":-1}");
    assert_true(member_nosync(&c->members[3]));
    strlist_clear(&ssn);
    strlist_clear(&in_sync);
    cJSON_Delete(rep);
    free_cluster(c);
}

/* ------------------------------------------------------------------------------------------------
 * quorum plan, step by step */

typedef struct QState {
    SyncState sync;
    SsnValue ssn;
} QState;

static void qstate_set(QState *s, const char *leader, long long q, const char *voters, long long num, const char *names,
                       bool star) {
    free(s->sync.leader);
    strlist_clear(&s->sync.members);
    ssn_value_clear(&s->ssn);
    s->sync.present = true;
    s->sync.leader = leader ? xstrdup(leader) : NULL;
    s->sync.quorum = q;
    s->sync.members = list_of(voters);
    s->ssn.num = num;
    s->ssn.names = list_of(names);
    s->ssn.star = star;
}

static void qstate_free(QState *s) {
    free(s->sync.leader);
    strlist_clear(&s->sync.members);
    ssn_value_clear(&s->ssn);
    *s = (QState){0};
}

/* One plan step applied to `s`; returns a description "sync:q:voters ssn:num:names" of what changed. */
static char *step(QState *s, const char *active, const char *confirmed, long long wanted, bool strict, bool grace) {
    StrList a = list_of(active), cf = list_of(confirmed);
    QuorumInput in = {.me = "n0",
                      .sync = &s->sync,
                      .ssn = &s->ssn,
                      .active = &a,
                      .confirmed = &cf,
                      .wanted = wanted,
                      .strict = strict,
                      .grace = grace};
    QuorumPlan p;
    sync_quorum_plan(&in, &p);
    StrBuf b;
    sb_init(&b);
    if (p.write_sync) {
        char *v = joined(&p.voters);
        sb_addf(&b, "sync:%lld:%s", p.quorum, v);
        free(v);
        free(s->sync.leader);
        s->sync.leader = xstrdup("n0");
        s->sync.quorum = p.quorum;
        strlist_clear(&s->sync.members);
        strlist_copy(&s->sync.members, &p.voters);
    }
    if (p.write_ssn) {
        char *r = sync_render_ssn_quorum(&p.ssn.names, p.ssn.num, p.ssn.star);
        sb_addf(&b, "%sssn:%s", b.len ? " " : "", r);
        free(r);
        ssn_value_clear(&s->ssn);
        s->ssn = p.ssn;
        p.ssn = (SsnValue){0};
    }
    quorum_plan_clear(&p);
    strlist_clear(&a);
    strlist_clear(&cf);
    return sb_steal(&b);
}

#define STEP(s, active, confirmed, wanted, strict, grace, expect)                      \
    do {                                                                               \
        char *got_ = step(s, active, confirmed, wanted, strict, grace);                \
        if (strcmp(got_, expect) != 0)                                                 \
            print_error("line %d: got '%s', expected '%s'\n", __LINE__, got_, expect); \
        assert_string_equal(got_, expect);                                             \
        free(got_);                                                                    \
    } while (0)

static void test_quorum_plan(void **state) {
    (void)state;
    QState s = {0};
    /* a new primary without /sync and asynchronous: two replicas appear. /sync first with quorum 2
     * (commits so far were not synchronous: only the primary has them), then ANY 1 */
    qstate_set(&s, NULL, 0, "", 0, "", false);
    STEP(&s, "n1,n2", "", 1, false, false, "sync:2:n1,n2 ssn:ANY 1 (n1,n2)");
    /* both reach the flush LSN of the change: quorum falls to its steady value 1 */
    STEP(&s, "n1,n2", "", 1, false, false, ""); /* nobody confirmed yet: nothing written */
    /* one that holds everything acknowledged before the change is enough for ANY 1 */
    STEP(&s, "n1,n2", "n1", 1, false, false, "sync:1:n1,n2");
    STEP(&s, "n1,n2", "n1,n2", 1, false, false, "");
    /* n2 dies: n1 alone may not win until it has confirmed what n2 alone may have acknowledged */
    STEP(&s, "n1", "n1", 1, false, false, "sync:1:n1 ssn:ANY 1 (n1)");
    STEP(&s, "n1", "", 1, false, false, "");
    STEP(&s, "n1", "n1", 1, false, false, "sync:0:n1");
    /* n2 is back and a third replica joins */
    STEP(&s, "n1,n2,n3", "n1,n2,n3", 1, false, false, "sync:2:n1,n2,n3 ssn:ANY 1 (n1,n2,n3)");
    STEP(&s, "n1,n2,n3", "n1,n2,n3", 1, false, false, "");
    /* synchronous_node_count 2: ANY 2, quorum 1 once two confirm */
    STEP(&s, "n1,n2,n3", "n1,n2,n3", 2, false, false, "ssn:ANY 2 (n1,n2,n3)");
    STEP(&s, "n1,n2,n3", "n1", 2, false, false, ""); /* quorum stays 2 until two confirm */
    STEP(&s, "n1,n2,n3", "n1,n2,n3", 2, false, false, "sync:1:n1,n2,n3");
    /* back to 1: the quorum rises first, then ANY 1 */
    STEP(&s, "n1,n2,n3", "n1,n2,n3", 1, false, false, "sync:2:n1,n2,n3 ssn:ANY 1 (n1,n2,n3)");
    /* every replica gone, not strict: asynchronous, nobody else may win */
    STEP(&s, "", "", 1, false, false, "sync:0: ssn:");
    STEP(&s, "", "", 1, false, false, "");
    /* strict: ANY 1 (*) and no voter */
    STEP(&s, "", "", 1, true, false, "ssn:ANY 1 (*)");
    STEP(&s, "n2", "", 1, true, false, "sync:1:n2 ssn:ANY 1 (n2)");
    STEP(&s, "n2", "n2", 1, true, false, "sync:0:n2");
    qstate_free(&s);

    /* just promoted (grace): /sync taken over with the voters of the pre-promotion value */
    qstate_set(&s, "old", 1, "n0,n2", 1, "n2,old", false);
    STEP(&s, "", "", 1, false, true, "sync:2:n2,old");
    STEP(&s, "", "", 1, false, true, "");
    /* after the grace period the gone ones are removed, the reconnected ones stay */
    STEP(&s, "n2", "n2", 1, false, false, "sync:1:n2 ssn:ANY 1 (n2)");
    qstate_free(&s);
}

static void test_quorum_pre_promote(void **state) {
    (void)state;
    static const struct {
        const char *leader, *voters, *me;
        long long q;
        bool strict;
        const char *names;
        long long num;
    } rows[] = {
        {"n0", "n1,n2", "n1", 1, false, "n0,n2", 1},       /* steady 3 nodes, ANY 1 */
        {"n0", "n1,n2,n3", "n1", 1, false, "n0,n2,n3", 2}, /* 4 nodes, ANY 2 */
        {"n0", "n1,n2,n3", "n1", 2, false, "n0,n2,n3", 1}, {"n0", "n1", "n1", 0, false, "n0", 1},
        {"n0", "n1,n2", "n3", 2, false, "n0,n1,n2", 1}, /* not a voter: one more */
        {"n0", "n1,n2", "n1", 2, false, "n0,n2", 0},    /* quorum = everybody: unprotected is covered */
        {"n0", "n1,n2", "n1", 2, true, "n0,n2", 1},        {"n0", "", "n1", 0, true, "n0", 1},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        SyncState s = {.present = true,
                       .leader = (char *)rows[i].leader,
                       .quorum = rows[i].q,
                       .members = list_of(rows[i].voters)};
        StrList names;
        long long num;
        sync_quorum_pre_promote(&s, rows[i].me, rows[i].strict, &names, &num);
        char *j = joined(&names);
        if (strcmp(j, rows[i].names) != 0 || num != rows[i].num)
            print_error("row %zu: %s %lld\n", i, j, num);
        assert_string_equal(j, rows[i].names);
        assert_int_equal(num, rows[i].num);
        free(j);
        strlist_clear(&names);
        strlist_clear(&s.members);
    }
}

/* ------------------------------------------------------------------------------------------------
 * the model check
 *
 * The primary's HA cycle is the REAL sync_process() (sync_exec.c) and a promotion runs the REAL
 * sync_before_promote(); the fakes of the DCS and of the local PostgreSQL (fakes.h) are hooked to the
 * model: dcs_set_sync_state() / dcs_delete_sync_state() write the model's /sync (compare-and-swap on
 * its version), write_configuration() writes the node's postgresql.conf, reload_postgres() puts its
 * synchronous_standby_names in force (releasing the commits it satisfies), pg_current_flush_lsn() is
 * the node's WAL end. The safety property is checked after every one of those writes, so that an
 * executor that writes in the wrong order fails even when the cycle as a whole ends safe. */

#define NN 5 /* n0..n4 */

typedef struct Model {
    Agent agent[NN]; /* each node's patroni.yml */
    Ha ha[NN];       /* each node's agent: the leader's runs sync_process() */
    char conn[NN];   /* each node's connection (what local_conn() returns) */
    DynConfig dyn;
    int leader;
    int alive[NN];         /* 0 dead, 1 up but not streaming, 2 streaming from the leader */
    long long flush[NN];   /* the leader's: its WAL end */
    long long div_lsn[NN]; /* > 0: its WAL diverged from the leader's history after this LSN */
    SyncState sync;        /* /sync in the DCS */
    long long revision;    /* the DCS's revision counter */
    char *conf_ssn[NN];    /* synchronous_standby_names in each node's postgresql.conf */
    char *pg_ssn[NN];      /* ... as its PostgreSQL read it at the last reload */
    SsnValue ssn;          /* the leader's pg_ssn, parsed: what its commits wait for */
    int grace;
    long long pending[64];
    size_t n_pending;
    long long acked_max;
    long long wanted;
    unsigned seed, seed0;
    long long failovers, blocked, acks, writes;
} Model;

static const char *nm(int i) {
    static const char *const names[NN] = {"n0", "n1", "n2", "n3", "n4"};
    return names[i];
}

static unsigned rnd(Model *m, unsigned n) {
    m->seed = m->seed * 1103515245u + 12345u;
    return (m->seed >> 16) % n;
}

/* Commits waiting for synchronous replication are released when the value in force is satisfied. */
static void release_commits(Model *m) {
    size_t kept = 0;
    for (size_t i = 0; i < m->n_pending; i++) {
        long long lsn = m->pending[i];
        long long have = 0;
        for (int r = 0; r < NN; r++) {
            if (r == m->leader || m->alive[r] != 2 || m->flush[r] < lsn)
                continue; /* only a connected standby acknowledges */
            if (m->ssn.star ? m->alive[r] == 2 : strlist_contains(&m->ssn.names, nm(r)))
                have++;
        }
        if (m->ssn.num <= 0 || have >= m->ssn.num) {
            if (lsn > m->acked_max)
                m->acked_max = lsn;
            m->acks++;
        } else {
            m->pending[kept++] = lsn;
        }
    }
    m->n_pending = kept;
}

/* Would `c` win the race if the leader vanished now? (the real is_healthiest_node) */
static bool wins(Model *m, int c) {
    Cluster cl = {0};
    cl.sync = m->sync;
    LocalState l = {.sysid = "1",
                    .pg_running = true,
                    .pg_ready = true,
                    .in_recovery = true,
                    .timeline = 1,
                    .wal_position = m->flush[c]};
    PeerStatus peers[NN];
    size_t n = 0;
    for (int i = 0; i < NN; i++)
        if (i != c && i != m->leader && m->alive[i])
            peers[n++] = (PeerStatus){.name = nm(i),
                                      .reachable = true,
                                      .wal_position = m->flush[i],
                                      .failover_priority = 1};
    /* the last view with a leader this node saw: the leader that just vanished */
    Leader last_leader = {.name = (char *)nm(m->leader)};
    Cluster last = {.leader = &last_leader};
    Observation o = {.cfg = &m->agent[c].cfg,
                     .dyn = &m->dyn,
                     .cluster = &cl,
                     .last_locked = &last,
                     .local = &l,
                     .peers = peers,
                     .n_peers = n,
                     .peers_probed = true};
    char why[256];
    return is_healthiest_node(&o, why, sizeof why);
}

/* The property: every possible race winner holds every acknowledged commit. */
static void check_safe(Model *m, const char *after) {
    for (int c = 0; c < NN; c++) {
        if (c == m->leader || !m->alive[c] || !wins(m, c))
            continue;
        if (m->flush[c] < m->acked_max) {
            char *v = joined(&m->sync.members), *sn = joined(&m->ssn.names);
            print_error("seed %u after %s: %s would win with %lld < acknowledged %lld; /sync leader %s quorum %lld "
                        "voters %s; ssn num %lld star %d names %s\n",
                        m->seed0, after, nm(c), m->flush[c], m->acked_max, m->sync.leader, m->sync.quorum, v,
                        m->ssn.num, m->ssn.star, sn);
            print_error("the executor's calls of this cycle:\n");
            for (size_t i = 0; i < fake.events.n; i++)
                print_error("  %s\n", fake.events.v[i]);
            free(v);
            free(sn);
            fail();
        }
    }
}

static int node_of(Model *m, const Ha *h) {
    assert_true(h >= m->ha && h < m->ha + NN);
    return (int)(h - m->ha);
}

/* ---- the fakes' hooks: the model's DCS and PostgreSQL ---- */

static int model_set_sync(void *ud, const char *json, long long version, long long *ret_new_version) {
    Model *m = ud;
    if (version > 0 && version != m->sync.version)
        return 0; /* compare-and-swap lost */
    /* decoded as the agent reads /sync */
    DcsKv kv = {.key = (char *)"/service/demo/sync",
                .value = (char *)json,
                .value_len = strlen(json),
                .mod_revision = ++m->revision};
    Cluster *c = cluster_from_kvs(&kv, 1, "/service/demo");
    assert_non_null(c);
    assert_true(c->sync.present);
    free(m->sync.leader);
    strlist_clear(&m->sync.members);
    m->sync = c->sync;
    c->sync = (SyncState){0};
    cluster_free(c);
    *ret_new_version = m->sync.version;
    m->writes++;
    check_safe(m, "a /sync write");
    return 1;
}

static int model_delete_sync(void *ud, long long version) {
    Model *m = ud;
    if (version > 0 && version != m->sync.version)
        return 0;
    free(m->sync.leader);
    strlist_clear(&m->sync.members);
    m->sync = (SyncState){0};
    m->writes++;
    check_safe(m, "a /sync delete");
    return 1;
}

static int model_write_configuration(void *ud, Ha *h, bool as_primary, const char *target) {
    Model *m = ud;
    int i = node_of(m, h);
    const char *ssn = h->sync.ssn ? h->sync.ssn : "";
    if (streq(m->conf_ssn[i], ssn))
        return 0; /* unchanged: not written */
    free(m->conf_ssn[i]);
    m->conf_ssn[i] = xstrdup(ssn);
    m->writes++;
    check_safe(m, "a postgresql.conf write"); /* not in force before a reload */
    return 1;
}

static void model_reload(void *ud, Ha *h) {
    Model *m = ud;
    int i = node_of(m, h);
    free(m->pg_ssn[i]);
    m->pg_ssn[i] = xstrdup(m->conf_ssn[i]);
    if (i != m->leader)
        return; /* a replica's value waits for commits only once it is promoted */
    ssn_value_clear(&m->ssn);
    sync_parse_ssn_full(m->pg_ssn[i], &m->ssn);
    release_commits(m);
    check_safe(m, "a synchronous_standby_names change");
}

static int model_flush_lsn(void *ud, PGconn *c, long long *ret) {
    Model *m = ud;
    int i = (int)((const char *)c - m->conn);
    assert_true(i >= 0 && i < NN);
    *ret = m->flush[i];
    return 0;
}

/* The cluster as the DCS holds it: the members that are up, /sync as it is. */
static Cluster *model_view(Model *m) {
    DcsKv kvs[NN + 1] = {{0}};
    size_t n = 0;
    for (int i = 0; i < NN; i++) {
        if (!m->alive[i] && i != m->leader)
            continue;
        kvs[n].key = xasprintf("/service/demo/members/%s", nm(i));
        kvs[n].value = xstrdup("{\"state\":\"running\",\"role\":\"replica\"}");
        kvs[n].value_len = strlen(kvs[n].value);
        kvs[n].mod_revision = kvs[n].create_revision = 1;
        n++;
    }
    if (m->sync.present) {
        kvs[n].key = xstrdup("/service/demo/sync");
        kvs[n].value = cluster_encode_sync(m->sync.leader, m->sync.quorum, &m->sync.members);
        kvs[n].value_len = strlen(kvs[n].value);
        kvs[n].mod_revision = kvs[n].create_revision = m->sync.version;
        n++;
    }
    Cluster *c = cluster_from_kvs(kvs, n, "/service/demo");
    for (size_t i = 0; i < n; i++)
        dcs_kv_free_contents(&kvs[i]);
    assert_non_null(c);
    return c;
}

static void pg_status_clear(Ha *h) {
    cJSON_Delete(h->pg.st.replication);
    h->pg.st = (PgStatus){0};
}

/* One HA cycle of the primary: its status query (pg_stat_replication of the streaming replicas), the
 * view, then the real sync_process(). */
static void ha_cycle(Model *m) {
    Ha *h = &m->ha[m->leader];
    fake_events_clear();
    h->view.cluster = model_view(m);
    pg_status_clear(h);
    h->pg.st.ok = true;
    h->pg.st.in_recovery = false;
    h->pg.st.flush_lsn = h->pg.st.wal_position = m->flush[m->leader];
    snprintf(h->pg.st.synchronous_commit, sizeof h->pg.st.synchronous_commit, "on");
    snprintf(h->pg.st.synchronous_standby_names, sizeof h->pg.st.synchronous_standby_names, "%s", m->pg_ssn[m->leader]);
    h->pg.st.replication = cJSON_CreateArray();
    for (int i = 0; i < NN; i++) {
        if (i == m->leader || m->alive[i] != 2)
            continue;
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "application_name", nm(i));
        cJSON_AddStringToObject(r, "state", "streaming");
        cJSON_AddStringToObject(r, "sync_state", strlist_contains(&m->ssn.names, nm(i)) ? "quorum" : "async");
        cJSON_AddNumberToObject(r, "flush_lsn", (double)m->flush[i]);
        cJSON_AddNumberToObject(r, "write_lsn", (double)m->flush[i]);
        cJSON_AddNumberToObject(r, "replay_lsn", (double)m->flush[i]);
        cJSON_AddItemToArray(h->pg.st.replication, r);
    }
    /* the model's clock: the grace period after a promotion lasts two cycles */
    if (m->grace > 0) {
        m->grace--;
        h->sync.grace_until = now_monotonic() + 3600 * USEC_PER_SEC;
    } else {
        h->sync.grace_until = 0;
    }
    sync_process(h);
    cluster_free(h->view.cluster);
    h->view.cluster = NULL;
}

static void failover(Model *m) {
    int old = m->leader;
    int winners[NN], nw = 0;
    for (int c = 0; c < NN; c++)
        if (c != old && m->alive[c] && wins(m, c))
            winners[nw++] = c;
    if (nw == 0) {
        m->blocked++;
        return; /* nobody may promote: the old primary comes back */
    }
    int w = winners[rnd(m, (unsigned)nw)];
    assert_true(m->flush[w] >= m->acked_max);
    m->failovers++;
    /* the winner sets its pre-promotion value (the real sync_before_promote); /sync stays until after
     * the promotion */
    Ha *h = &m->ha[w];
    fake_events_clear();
    h->view.cluster = model_view(m);
    snprintf(h->pg.following, sizeof h->pg.following, "%s", nm(old));
    assert_int_equal(sync_before_promote(h), 0);
    assert_true(h->sync.grace_until > now_monotonic());
    cluster_free(h->view.cluster);
    h->view.cluster = NULL;
    /* the promotion: its value is what the new primary's commits wait for */
    m->leader = w;
    ssn_value_clear(&m->ssn);
    sync_parse_ssn_full(m->pg_ssn[w], &m->ssn);
    m->alive[old] = 0;
    sync_forget(&m->ha[old]); /* it comes back as a replica: not its value to manage */
    for (int i = 0; i < NN; i++)
        if (i != w && m->flush[i] > m->flush[w] && (m->div_lsn[i] == 0 || m->div_lsn[i] > m->flush[w]))
            m->div_lsn[i] = m->flush[w];
    m->n_pending = 0; /* never acknowledged: lost with the old primary, which is allowed */
    m->grace = 2;
    for (int i = 0; i < NN; i++)
        if (i != w && m->alive[i] == 2)
            m->alive[i] = 1; /* they reconnect to the new primary later */
    check_safe(m, "a promotion");
}

static void model_run(unsigned seed, int nodes, long long wanted, bool strict, long long *stats) {
    Model *m = xcalloc(1, sizeof *m);
    m->seed = m->seed0 = seed;
    dyn_config_defaults(&m->dyn);
    m->dyn.synchronous_mode = SYNC_QUORUM;
    m->dyn.synchronous_mode_strict = strict;
    m->dyn.synchronous_node_count = wanted;
    m->dyn.check_timeline = false;
    m->dyn.maximum_lag_on_failover = LLONG_MAX / 4;
    for (int i = 0; i < NN; i++) {
        load_config(&m->agent[i].cfg, nm(i), NULL);
        Ha *h = &m->ha[i];
        h->a = &m->agent[i];
        h->dcs = FAKE_DCS;
        h->wake_fd = -1;
        h->pg.inst.pid = 1000 + i; /* running: a written configuration is reloaded */
        h->pg.inst.pidfd = -1;
        h->pg.inst.major = 16;
        h->pg.inst.conn = (PGconn *)&m->conn[i];
        h->view.dyn = m->dyn; /* shared with the model, freed once */
        h->view.dyn_loaded = true;
        m->conf_ssn[i] = xstrdup("");
        m->pg_ssn[i] = xstrdup("");
    }
    fake_reset();
    fake.hooks = (FakeHooks){.ud = m,
                             .set_sync_state = model_set_sync,
                             .delete_sync_state = model_delete_sync,
                             .write_configuration = model_write_configuration,
                             .reload_postgres = model_reload,
                             .current_flush_lsn = model_flush_lsn};
    m->wanted = wanted;
    m->leader = 0;
    m->flush[0] = 100;
    for (int i = 1; i < nodes; i++) {
        m->alive[i] = 2;
        m->flush[i] = 100;
    }
    m->alive[0] = 2;
    ha_cycle(m); /* synchronous mode is established before the first commit */
    for (int stepno = 0; stepno < 400; stepno++) {
        unsigned e = rnd(m, 100);
        int r = (int)rnd(m, (unsigned)nodes);
        if (e < 30) { /* a commit (or a few) */
            for (unsigned k = 1 + rnd(m, 3); k && m->n_pending < 60; k--)
                m->pending[m->n_pending++] = ++m->flush[m->leader];
            release_commits(m);
        } else if (e < 55) { /* a streaming replica flushes some or all of what it lacks */
            if (r != m->leader && m->alive[r] == 2 && m->flush[r] < m->flush[m->leader]) {
                long long gap = m->flush[m->leader] - m->flush[r];
                m->flush[r] += rnd(m, 2) ? gap : (long long)rnd(m, (unsigned)gap + 1);
                release_commits(m);
            }
        } else if (e < 70) { /* the HA loop of the primary */
            ha_cycle(m);
        } else if (e < 82) { /* a replica disconnects, dies, comes back */
            if (r != m->leader) {
                int to = (int)rnd(m, 3);
                if (to && m->div_lsn[r] > 0) {
                    /* diverged: pg_rewind back to where its history and the leader's part */
                    if (m->flush[r] > m->div_lsn[r])
                        m->flush[r] = m->div_lsn[r];
                    m->div_lsn[r] = 0;
                }
                m->alive[r] = to;
            }
        } else if (e < 86) { /* the primary dies */
            failover(m);
        } else if (e < 88) { /* synchronous_node_count changes */
            m->wanted = 1 + rnd(m, 3);
            m->dyn.synchronous_node_count = m->wanted;
            for (int i = 0; i < NN; i++)
                m->ha[i].view.dyn = m->dyn;
        }
        if (getenv("SYNC_MODEL_TRACE") && m->seed0 == (unsigned)strtoul(getenv("SYNC_MODEL_TRACE"), NULL, 10)) {
            char *v = joined(&m->sync.members), *sn = joined(&m->ssn.names);
            fprintf(stderr,
                    "e=%u r=%d leader=%s flush=[%lld %lld %lld %lld %lld] alive=[%d %d %d %d %d] acked=%lld "
                    "sync=%s/%lld/%s ssn=%lld%s(%s) F=%lld\n",
                    e, r, nm(m->leader), m->flush[0], m->flush[1], m->flush[2], m->flush[3], m->flush[4], m->alive[0],
                    m->alive[1], m->alive[2], m->alive[3], m->alive[4], m->acked_max, m->sync.leader, m->sync.quorum, v,
                    m->ssn.num, m->ssn.star ? "*" : "", sn, m->ha[m->leader].sync.flush);
            free(v);
            free(sn);
        }
        check_safe(m, "an event");
    }
    stats[0] += m->failovers;
    stats[1] += m->blocked;
    stats[2] += m->acks;
    stats[3] += m->writes;
    fake_reset();
    for (int i = 0; i < NN; i++) {
        pg_status_clear(&m->ha[i]);
        sync_forget(&m->ha[i]);
        config_free(&m->agent[i].cfg);
        free(m->conf_ssn[i]);
        free(m->pg_ssn[i]);
    }
    dyn_config_free(&m->dyn);
    free(m->sync.leader);
    strlist_clear(&m->sync.members);
    ssn_value_clear(&m->ssn);
    free(m);
}

static void test_quorum_model(void **state) {
    (void)state;
    long long stats[4] = {0};
    for (unsigned seed = 1; seed <= 300; seed++) {
        model_run(seed, 3, 1, false, stats);
        model_run(seed + 1000, 4, 2, false, stats);
        model_run(seed + 2000, 5, 1 + seed % 3, seed % 2, stats);
        model_run(seed + 3000, 3, 1, true, stats);
    }
    /* the histories exercised what they should: failovers that happened, failovers refused, commits */
    print_message("# model: %lld failovers, %lld refused, %lld acknowledged commits\n", stats[0], stats[1], stats[2]);
    print_message("# model: %lld writes of /sync and postgresql.conf by the executor, each checked\n", stats[3]);
    assert_true(stats[0] > 100);
    assert_true(stats[1] > 10);
    assert_true(stats[2] > 1000);
    assert_true(stats[3] > 1000);
}

/* ------------------------------------------------------------------------------------------------
 * synchronous_standby_names in the postgresql.conf pgha writes (sync_config_params()) */

/* The value written for a start (`as_primary`) with /config `dyn_yaml` and `known` as the value pgha
 * manages (NULL: none known yet); the user's postgresql.parameters say 'userval'. "(none)": no line. */
static char *conf_ssn(const char *dyn_yaml, const char *known, bool as_primary) {
    Agent a = {0};
    Ha h = {0};
    load_config(&a.cfg, "node1", NULL);
    h.a = &a;
    load_dyn(&h.view.dyn, dyn_yaml);
    h.view.dyn_loaded = true;
    h.sync.ssn = known ? xstrdup(known) : NULL;
    YNode *params = ynode_new(Y_MAP, "test", 0);
    ynode_set(params, "synchronous_standby_names", ynode_new_str("userval", "test", 0));
    sync_config_params(&h, params, as_primary);
    const YNode *v = ynode_get(params, "synchronous_standby_names");
    char *r = xstrdup(v ? v->text : "(none)");
    ynode_free(params);
    free(h.sync.ssn);
    dyn_config_free(&h.view.dyn);
    config_free(&a.cfg);
    return r;
}

#define assert_conf_ssn(dyn, known, as_primary, want)  \
    do {                                               \
        char *got_ = conf_ssn(dyn, known, as_primary); \
        assert_string_equal(got_, want);               \
        free(got_);                                    \
    } while (0)

static void test_config_params(void **state) {
    (void)state;
    /* synchronous mode off: the user's value */
    assert_conf_ssn(NULL, NULL, true, "userval");
    /* on: what pgha manages, never the user's value */
    assert_conf_ssn("synchronous_mode: true\n", "node2", true, "node2");
    assert_conf_ssn("synchronous_mode: true\n", "", true, "(none)");
    assert_conf_ssn("synchronous_mode: true\n", NULL, true, "(none)");
    assert_conf_ssn("synchronous_mode: true\n", NULL, false, "(none)");
    assert_conf_ssn("synchronous_mode: true\nsynchronous_mode_strict: true\n", NULL, false, "(none)");
    /* strict, a primary starting with no value known: no commit acknowledged without a standby (Patroni's
     * get_server_parameters(): '*' for a primary or promoted node); ANY 1 (*) in quorum mode */
    assert_conf_ssn("synchronous_mode: true\nsynchronous_mode_strict: true\n", NULL, true, "*");
    assert_conf_ssn("synchronous_mode: quorum\nsynchronous_mode_strict: true\n", NULL, true, "ANY 1 (*)");
    /* ... a value known is kept (the promotion and sync_process() set it) */
    assert_conf_ssn("synchronous_mode: true\nsynchronous_mode_strict: true\n", "node2", true, "node2");
    /* a standby cluster has no synchronous mode */
    assert_conf_ssn("synchronous_mode: true\nsynchronous_mode_strict: true\nstandby_cluster:\n  host: x\n", NULL, true,
                    "userval");
}

int main(void) {
    /* the executor's log lines (sync_exec.c logs every write) are not what these tests check */
    log_configure(&(LogSettings){.level = LOG_CRITICAL + 1, .file_num = 4, .mode = -1});
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),           cmocka_unit_test(test_parse),
        cmocka_unit_test(test_pick_and_confirm), cmocka_unit_test(test_pick_sync_priority),
        cmocka_unit_test(test_quorum_plan),      cmocka_unit_test(test_quorum_pre_promote),
        cmocka_unit_test(test_quorum_model),     cmocka_unit_test(test_config_params),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    fake_done();
    log_reset();
    return r;
}
