/* Synchronous replication (spec §4.10): synchronous_standby_names rendering and parsing, choosing
 * and confirming synchronous standbys, and quorum mode. The quorum tests end with a model check:
 * random histories of commits, replicas streaming / lagging / disconnecting / dying, HA cycles of
 * the primary (sync_quorum_plan applied as ha.c applies it, /sync first) and failovers decided by
 * the real is_healthiest_node(); after every event, every replica that would win the race if the
 * primary died now must hold every commit acknowledged so far. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

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

#define assert_list(l, csv)                                                                             \
    do {                                                                                                \
        char *j_ = joined(l);                                                                           \
        assert_string_equal(j_, csv);                                                                   \
        free(j_);                                                                                       \
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
    QuorumInput in = {.me = "n0", .sync = &s->sync, .ssn = &s->ssn, .active = &a, .confirmed = &cf,
                      .wanted = wanted, .strict = strict, .grace = grace};
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

#define STEP(s, active, confirmed, wanted, strict, grace, expect)                                       \
    do {                                                                                                \
        char *got_ = step(s, active, confirmed, wanted, strict, grace);                                 \
        if (strcmp(got_, expect) != 0)                                                                  \
            print_error("line %d: got '%s', expected '%s'\n", __LINE__, got_, expect);                  \
        assert_string_equal(got_, expect);                                                              \
        free(got_);                                                                                     \
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
        {"n0", "n1,n2", "n1", 1, false, "n0,n2", 1},    /* steady 3 nodes, ANY 1 */
        {"n0", "n1,n2,n3", "n1", 1, false, "n0,n2,n3", 2}, /* 4 nodes, ANY 2 */
        {"n0", "n1,n2,n3", "n1", 2, false, "n0,n2,n3", 1},
        {"n0", "n1", "n1", 0, false, "n0", 1},
        {"n0", "n1,n2", "n3", 2, false, "n0,n1,n2", 1}, /* not a voter: one more */
        {"n0", "n1,n2", "n1", 2, false, "n0,n2", 0},    /* quorum = everybody: unprotected is covered */
        {"n0", "n1,n2", "n1", 2, true, "n0,n2", 1},
        {"n0", "", "n1", 0, true, "n0", 1},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        SyncState s = {.present = true, .leader = (char *)rows[i].leader, .quorum = rows[i].q,
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
 * the model check */

#define NN 5 /* n0..n4 */

typedef struct Model {
    PghaConfig cfg[NN];
    DynConfig dyn;
    int leader;
    int alive[NN];          /* 0 dead, 1 up but not streaming, 2 streaming from the leader */
    long long flush[NN];    /* the leader's: its WAL end */
    long long div_lsn[NN];  /* > 0: its WAL diverged from the leader's history after this LSN */
    long long ssn_flush;
    SyncState sync;
    SsnValue ssn;
    int grace;
    long long pending[64];
    size_t n_pending;
    long long acked_max;
    long long wanted;
    bool strict;
    unsigned seed, seed0;
    long long failovers, blocked, acks;
} Model;

static const char *nm(int i) {
    static const char *const names[NN] = {"n0", "n1", "n2", "n3", "n4"};
    return names[i];
}

static unsigned rnd(Model *m, unsigned n) {
    m->seed = m->seed * 1103515245u + 12345u;
    return (m->seed >> 16) % n;
}

static void load_cfg(PghaConfig *cfg, const char *name) {
    _cleanup_free_ char *text = xasprintf("scope: demo\nname: %s\nrestapi:\n  listen: 127.0.0.1:8008\n"
                                          "etcd3:\n  hosts: 127.0.0.1:2379\npostgresql:\n  listen: 127.0.0.1:5432\n"
                                          "  data_dir: /nonexistent/pgha-unit/data\n"
                                          "  authentication:\n    superuser:\n      username: postgres\n"
                                          "    replication:\n      username: replicator\n",
                                          name);
    char *err = NULL;
    YNode *root = yaml_parse_string(text, strlen(text), "patroni.yml", &err);
    assert_non_null(root);
    CfgDiag diag = {0};
    assert_int_equal(config_from_tree(root, "patroni.yml", cfg, &diag), 0);
    cfg_diag_clear(&diag);
    ynode_free(root);
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
    LocalState l = {.sysid = "1", .pg_running = true, .pg_ready = true, .in_recovery = true, .timeline = 1,
                    .wal_position = m->flush[c]};
    PeerStatus peers[NN];
    size_t n = 0;
    for (int i = 0; i < NN; i++)
        if (i != c && i != m->leader && m->alive[i])
            peers[n++] = (PeerStatus){.name = nm(i), .reachable = true, .wal_position = m->flush[i],
                                      .failover_priority = 1};
    /* the last view with a leader this node saw: the leader that just vanished */
    Leader last_leader = {.name = (char *)nm(m->leader)};
    Cluster last = {.leader = &last_leader};
    Observation o = {.cfg = &m->cfg[c], .dyn = &m->dyn, .cluster = &cl, .last_locked = &last, .local = &l,
                     .peers = peers, .n_peers = n, .peers_probed = true};
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
            free(v);
            free(sn);
            fail();
        }
    }
}

static void ha_cycle(Model *m) {
    if (m->ssn_flush <= 0)
        m->ssn_flush = m->flush[m->leader];
    StrList active = {0}, confirmed = {0};
    for (int i = 0; i < NN; i++) {
        if (i == m->leader || m->alive[i] != 2)
            continue;
        strlist_add(&active, nm(i));
        if (m->flush[i] >= m->ssn_flush)
            strlist_add(&confirmed, nm(i));
    }
    QuorumInput in = {.me = nm(m->leader), .sync = &m->sync, .ssn = &m->ssn, .active = &active,
                      .confirmed = &confirmed, .wanted = m->wanted, .strict = m->strict, .grace = m->grace > 0};
    if (m->grace > 0)
        m->grace--;
    QuorumPlan p;
    sync_quorum_plan(&in, &p);
    if (p.write_sync) {
        free(m->sync.leader);
        m->sync.leader = xstrdup(nm(m->leader));
        m->sync.quorum = p.quorum;
        strlist_clear(&m->sync.members);
        strlist_copy(&m->sync.members, &p.voters);
        check_safe(m, "a /sync write");
    }
    if (p.write_ssn) {
        ssn_value_clear(&m->ssn);
        m->ssn = p.ssn;
        p.ssn = (SsnValue){0};
        m->ssn_flush = m->flush[m->leader];
        release_commits(m);
        check_safe(m, "a synchronous_standby_names change");
    }
    quorum_plan_clear(&p);
    strlist_clear(&active);
    strlist_clear(&confirmed);
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
    /* the winner sets its pre-promotion value; /sync stays until after the promotion */
    StrList names;
    long long num;
    sync_quorum_pre_promote(&m->sync, nm(w), m->strict, &names, &num);
    ssn_value_clear(&m->ssn);
    m->ssn.num = num;
    m->ssn.names = names;
    m->ssn.star = m->strict && names.n == 0;
    if (m->ssn.star)
        m->ssn.num = 1;
    m->leader = w;
    m->alive[old] = 0;
    for (int i = 0; i < NN; i++)
        if (i != w && m->flush[i] > m->flush[w] && (m->div_lsn[i] == 0 || m->div_lsn[i] > m->flush[w]))
            m->div_lsn[i] = m->flush[w];
    m->n_pending = 0; /* never acknowledged: lost with the old primary, which is allowed */
    m->ssn_flush = 0;
    m->grace = 2;
    for (int i = 0; i < NN; i++)
        if (i != w && m->alive[i] == 2)
            m->alive[i] = 1; /* they reconnect to the new primary later */
    check_safe(m, "a promotion");
}

static void model_run(unsigned seed, int nodes, long long wanted, bool strict, long long *stats) {
    Model *m = xcalloc(1, sizeof *m);
    m->seed = m->seed0 = seed;
    for (int i = 0; i < NN; i++)
        load_cfg(&m->cfg[i], nm(i));
    dyn_config_defaults(&m->dyn);
    m->dyn.synchronous_mode = SYNC_QUORUM;
    m->dyn.synchronous_mode_strict = strict;
    m->dyn.check_timeline = false;
    m->dyn.maximum_lag_on_failover = LLONG_MAX / 4;
    m->wanted = wanted;
    m->strict = strict;
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
        }
        if (getenv("SYNC_MODEL_TRACE") && m->seed0 == (unsigned)atoi(getenv("SYNC_MODEL_TRACE"))) {
            char *v = joined(&m->sync.members), *sn = joined(&m->ssn.names);
            fprintf(stderr, "e=%u r=%d leader=%s flush=[%lld %lld %lld %lld %lld] alive=[%d %d %d %d %d] acked=%lld "
                    "sync=%s/%lld/%s ssn=%lld%s(%s) F=%lld\n", e, r, nm(m->leader), m->flush[0], m->flush[1],
                    m->flush[2], m->flush[3], m->flush[4], m->alive[0], m->alive[1], m->alive[2], m->alive[3],
                    m->alive[4], m->acked_max, m->sync.leader, m->sync.quorum, v, m->ssn.num, m->ssn.star ? "*" : "",
                    sn, m->ssn_flush);
            free(v);
            free(sn);
        }
        check_safe(m, "an event");
    }
    stats[0] += m->failovers;
    stats[1] += m->blocked;
    stats[2] += m->acks;
    for (int i = 0; i < NN; i++)
        config_free(&m->cfg[i]);
    dyn_config_free(&m->dyn);
    free(m->sync.leader);
    strlist_clear(&m->sync.members);
    ssn_value_clear(&m->ssn);
    free(m);
}

static void test_quorum_model(void **state) {
    (void)state;
    long long stats[3] = {0};
    for (unsigned seed = 1; seed <= 300; seed++) {
        model_run(seed, 3, 1, false, stats);
        model_run(seed + 1000, 4, 2, false, stats);
        model_run(seed + 2000, 5, 1 + seed % 3, seed % 2, stats);
        model_run(seed + 3000, 3, 1, true, stats);
    }
    /* the histories exercised what they should: failovers that happened, failovers refused, commits */
    print_message("# model: %lld failovers, %lld refused, %lld acknowledged commits\n", stats[0], stats[1], stats[2]);
    assert_true(stats[0] > 100);
    assert_true(stats[1] > 10);
    assert_true(stats[2] > 1000);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_pick_and_confirm),
        cmocka_unit_test(test_quorum_plan),
        cmocka_unit_test(test_quorum_pre_promote),
        cmocka_unit_test(test_quorum_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
