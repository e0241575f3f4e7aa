/* slots_plan(), slots_status_slots() and retain_update() (spec §4.11, §1.2 /status): one table of
 * complete situations — the DCS keys exactly as etcd holds them, /config, this node's name, role,
 * PostgreSQL version and tags, the rows of pg_replication_slots — and the expected slots and actions
 * rendered as short strings. Pure: no PostgreSQL, no DCS, time is injected. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "unit_helpers.h"

#define cluster_of(keys, max) cluster_of_keys(keys, max, BASE, 10)

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/slots.h"
#include "common/config.h"
#include "common/json.h"
#include "common/util.h"
#include "common/yamltree.h"
#include "dcs/cluster.h"

#define BASE "/service/demo"

#define MEMBER(host, role, extra)                                                    \
    "{\"conn_url\":\"postgres://" host ":5432/postgres\",\"api_url\":\"http://" host \
    ":8008/patroni\",\"state\":\"running\",\"role\":\"" role "\",\"version\":\"4.0.6\"" extra "}"

/* clang-format off */
#define K_CONFIG(json) {"config", json}
#define K_LEADER(n) {"leader", n}
#define K_M1 {"members/node1", MEMBER("10.0.0.1", "primary", ",\"xlog_location\":9000,\"timeline\":1")}
#define K_M2 {"members/node2", MEMBER("10.0.0.2", "replica", ",\"xlog_location\":7000,\"timeline\":1")}
#define K_M3 {"members/node3", MEMBER("10.0.0.3", "replica", ",\"xlog_location\":6000,\"timeline\":1")}
/* clang-format on */
#define K_M3_FROM2                                                                                               \
    {                                                                                                            \
        "members/node3", MEMBER("10.0.0.3", "replica",                                                           \
                                ",\"tags\":{\"replicatefrom\":\"node2\"},\"xlog_location\":6500,\"timeline\":1") \
    }
#define K_M3_NOSTREAM                                                                                         \
    {                                                                                                         \
        "members/node3",                                                                                      \
            MEMBER("10.0.0.3", "replica", ",\"tags\":{\"nostream\":true},\"xlog_location\":1,\"timeline\":1") \
    }
/* clang-format off */
#define K_STATUS(json) {"status", json}
/* clang-format on */
#define STATUS_STD \
    "{\"optime\":9000,\"slots\":{\"node1\":9000,\"node2\":7000,\"node3\":6000},\"retain_slots\":[\"node1\",\"node2\",\"node3\"]}"
#define CLUSTER3 K_CONFIG("{}"), K_LEADER("node1"), K_M1, K_M2, K_M3, K_STATUS(STATUS_STD)

/* clang-format off */
#define ROW_PHYS(n, lsn) {.name = n, .restart_lsn = lsn}
/* clang-format on */

typedef struct Case {
    const char *desc;
    const char *me; /* default node1 */
    SlotRole role;
    int pg_major; /* default 16 */
    bool nofailover, nostream;
    const char *replicatefrom;
    bool paused;
    const char *dyn_yaml; /* NULL: defaults */
    Kv keys[10];
    PgSlot rows[8]; /* terminated by a NULL name */
    long long replay_lsn;
    const char *expected; /* "name:p|l:a1|a0|a-:lsn[:perm]" joined with spaces, in plan order */
    const char *actions;  /* "drop(reason) create-p create-l(db,plugin) advance(lsn)" per name */
    const char *errors;   /* substring expected in the joined errors, or NULL for none */
    const char *copy;     /* joined names of the slots to copy from the primary, or NULL */
    const char *recopy;   /* names (space separated) whose advance failed for lack of WAL, or NULL */
} Case;

typedef struct World {
    Cluster *cluster;
    DynConfig dyn;
    PgSlot rows[8];
    size_t n_rows;
    StrList recopy;
    SlotsInput in;
} World;

static void world_build(World *w, const Case *k) {
    *w = (World){0};
    w->cluster = cluster_of(k->keys, ELEMENTSOF(k->keys));
    load_dyn(&w->dyn, k->dyn_yaml);
    for (size_t i = 0; i < ELEMENTSOF(k->rows) && k->rows[i].name; i++)
        w->rows[w->n_rows++] = k->rows[i];
    w->in = (SlotsInput){.cluster = w->cluster,
                         .dyn = &w->dyn,
                         .name = k->me ? k->me : "node1",
                         .role = k->role,
                         .pg_major = k->pg_major ? k->pg_major : 16,
                         .nofailover = k->nofailover,
                         .nostream = k->nostream,
                         .replicatefrom = k->replicatefrom,
                         .paused = k->paused,
                         .slots = w->rows,
                         .n_slots = w->n_rows,
                         .replay_lsn = k->replay_lsn,
                         .recopy = &w->recopy};
    if (k->recopy) {
        _cleanup_free_ char *names = xstrdup(k->recopy);
        for (char *save = NULL, *t = strtok_r(names, " ", &save); t; t = strtok_r(NULL, " ", &save))
            strlist_add(&w->recopy, t);
    }
}

static void world_free(World *w) {
    strlist_clear(&w->recopy);
    cluster_free(w->cluster);
    dyn_config_free(&w->dyn);
}

static char *render_expected(const SlotsPlan *p) {
    StrBuf b;
    sb_init(&b);
    for (size_t i = 0; i < p->n_expected; i++) {
        const ExpectedSlot *e = &p->expected[i];
        sb_addf(&b, "%s%s:%s:%s:%lld%s", i ? " " : "", e->name, e->logical ? "l" : "p",
                e->expected_active == 1   ? "a1"
                : e->expected_active == 0 ? "a0"
                                          : "a-",
                e->lsn, e->permanent ? ":perm" : "");
    }
    return sb_steal(&b);
}

static char *render_actions(const SlotsPlan *p) {
    static const char *const reasons[] = {"unknown", "mismatch", "xmin", "no-restart-lsn", "lost"};
    StrBuf b;
    sb_init(&b);
    for (size_t i = 0; i < p->n_actions; i++) {
        const SlotAction *a = &p->actions[i];
        if (i)
            sb_addc(&b, ' ');
        switch (a->kind) {
        case SLOT_ACT_DROP: sb_addf(&b, "%s:drop(%s)", a->name, reasons[a->reason]); break;
        case SLOT_ACT_CREATE_PHYSICAL: sb_addf(&b, "%s:create-p", a->name); break;
        case SLOT_ACT_CREATE_LOGICAL: sb_addf(&b, "%s:create-l(%s,%s)", a->name, a->database, a->plugin); break;
        case SLOT_ACT_ADVANCE:
            sb_addf(&b, "%s:advance(%lld%s%s)", a->name, a->lsn, a->logical ? "," : "", a->logical ? a->database : "");
            break;
        }
    }
    return sb_steal(&b);
}

static void run_case(const Case *k) {
    World w;
    world_build(&w, k);
    SlotsPlan p;
    slots_plan(&w.in, &p);
    _cleanup_free_ char *exp = render_expected(&p);
    _cleanup_free_ char *act = render_actions(&p);
    _cleanup_free_ char *errs = strlist_join(&p.errors, " | ");
    _cleanup_free_ char *nc = strlist_join(&p.copy, " ");
    bool ok = streq(exp, k->expected) && streq(act, k->actions) &&
              (k->errors ? strstr(errs, k->errors) != NULL : p.errors.n == 0) && streq(nc, k->copy ? k->copy : "");
    if (!ok)
        print_error("case: %s\n  expected: %s\n      want: %s\n   actions: %s\n      want: %s\n    errors: %s\n"
                    "      want: %s\n      copy: %s\n      want: %s\n",
                    k->desc, exp, k->expected, act, k->actions, errs, k->errors ? k->errors : "(none)", nc,
                    k->copy ? k->copy : "");
    slots_plan_free(&p);
    world_free(&w);
    assert_true(ok);
}

static void run_cases(const Case *cases, size_t n) {
    for (size_t i = 0; i < n; i++)
        run_case(&cases[i]);
}

/* ------------------------------------------------------------------------------------------------
 * member slots */

static const Case member_cases[] = {
    {.desc = "leader, empty pg_replication_slots: a slot for every other member, expected active",
     .role = SLOT_ROLE_PRIMARY,
     .keys = {CLUSTER3},
     .expected = "node2:p:a1:7000 node3:p:a1:6000",
     .actions = "node2:create-p node3:create-p"},
    {.desc = "leader, slots in place and active: nothing to do (active slots are never advanced)",
     .role = SLOT_ROLE_PRIMARY,
     .keys = {CLUSTER3},
     .rows = {ROW_PHYS("node2", 100), ROW_PHYS("node3", 100)},
     .expected = "node2:p:a1:7000 node3:p:a1:6000",
     .actions = ""},
    {.desc = "replica: slots for the leader and the third member, advanced to /status.slots",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .keys = {CLUSTER3},
     .rows = {ROW_PHYS("node1", 5000), ROW_PHYS("node3", 6000)},
     .expected = "node1:p:a0:9000 node3:p:a0:6000",
     .actions = "node1:advance(9000)"},
    {.desc = "replica: missing slots are created, our own slot (after a failover) is dropped",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .keys = {CLUSTER3},
     .rows = {ROW_PHYS("node2", 5000)},
     .expected = "node1:p:a0:9000 node3:p:a0:6000",
     .actions = "node2:drop(unknown) node1:create-p node3:create-p"},
    {.desc = "replica: an inactive slot holding an xmin is dropped and recreated",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .keys = {CLUSTER3},
     .rows = {{.name = "node1", .restart_lsn = 5000, .has_xmin = true}, ROW_PHYS("node3", 6000)},
     .expected = "node1:p:a0:9000 node3:p:a0:6000",
     .actions = "node1:drop(xmin) node1:create-p"},
    {.desc = "replica without a leader: the xmin is left alone (and no advance through it)",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .keys = {K_CONFIG("{}"), K_M2, K_M3, K_STATUS(STATUS_STD)},
     .rows = {{.name = "node3", .restart_lsn = 5000, .has_xmin = true}},
     .expected = "node3:p:a0:6000 node1:p:a-:0",
     .actions = "node1:create-p"},
    {.desc = "leader: a member slot whose wal_status is 'lost' is dropped and recreated at once",
     .role = SLOT_ROLE_PRIMARY,
     .keys = {CLUSTER3},
     .rows = {{.name = "node2", .restart_lsn = 100, .lost = true}, ROW_PHYS("node3", 100)},
     .expected = "node2:p:a1:7000 node3:p:a1:6000",
     .actions = "node2:drop(lost) node2:create-p"},
    {.desc = "replica: a lost member slot too (and not advanced)",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .keys = {CLUSTER3},
     .rows = {ROW_PHYS("node1", 9000), {.name = "node3", .restart_lsn = 5000, .lost = true}},
     .expected = "node1:p:a0:9000 node3:p:a0:6000",
     .actions = "node3:drop(lost) node3:create-p"},
    {.desc = "leader: an unknown lost slot is dropped as unknown; a lost slot of an ignored name is kept",
     .role = SLOT_ROLE_PRIMARY,
     .dyn_yaml = "ignore_slots:\n- name: keepme\n",
     .keys = {CLUSTER3},
     .rows = {ROW_PHYS("node2", 100),
              ROW_PHYS("node3", 100),
              {.name = "stray", .lost = true},
              {.name = "keepme", .lost = true}},
     .expected = "node2:p:a1:7000 node3:p:a1:6000",
     .actions = "stray:drop(unknown)"},
    {.desc = "replica: a physical slot without restart_lsn (made by someone else) is dropped, recreated next cycle",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .keys = {CLUSTER3},
     .rows = {ROW_PHYS("node1", 0), ROW_PHYS("node3", 6000)},
     .expected = "node1:p:a0:9000 node3:p:a0:6000",
     .actions = "node1:drop(no-restart-lsn)"},
    {.desc = "PostgreSQL 10: no retention on replicas, the leader keeps slots for its streaming members",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .pg_major = 10,
     .keys = {K_CONFIG("{}"), K_LEADER("node1"), K_M1, K_M2, K_M3, K_STATUS("{\"optime\":9000}")},
     .rows = {ROW_PHYS("node1", 5000)},
     .expected = "",
     .actions = "node1:drop(unknown)"},
    {.desc = "member_slots_ttl 0 on a replica: no member slots, unknown ones dropped",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .dyn_yaml = "member_slots_ttl: 0\n",
     .keys = {CLUSTER3},
     .rows = {ROW_PHYS("node1", 5000), ROW_PHYS("node3", 5000)},
     .expected = "node1:p:a-:0 node3:p:a-:0",
     .actions = ""},
    {.desc = "member_slots_ttl 0, /status without retain_slots: the replica drops member slots",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .dyn_yaml = "member_slots_ttl: 0\n",
     .keys = {K_CONFIG("{}"), K_LEADER("node1"), K_M1, K_M2, K_M3, K_STATUS("{\"optime\":9000}")},
     .rows = {ROW_PHYS("node1", 5000), ROW_PHYS("node3", 5000)},
     .expected = "",
     .actions = "node1:drop(unknown) node3:drop(unknown)"},
    {.desc = "paused: unknown slots are kept",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .paused = true,
     .dyn_yaml = "member_slots_ttl: 0\n",
     .keys = {K_CONFIG("{}"), K_LEADER("node1"), K_M1, K_M2, K_M3, K_STATUS("{\"optime\":9000}")},
     .rows = {ROW_PHYS("node1", 5000)},
     .expected = "",
     .actions = ""},
    {.desc = "nostream member: no slot anywhere",
     .role = SLOT_ROLE_PRIMARY,
     .keys = {K_CONFIG("{}"), K_LEADER("node1"), K_M1, K_M2, K_M3_NOSTREAM, K_STATUS("{\"optime\":9000}")},
     .rows = {ROW_PHYS("node3", 100)},
     .expected = "node2:p:a1:0",
     .actions = "node3:drop(unknown) node2:create-p"},
    {.desc = "cascade without retention: the leader has no slot for node3, node2 has it (active)",
     .role = SLOT_ROLE_PRIMARY,
     .dyn_yaml = "member_slots_ttl: 0\n",
     .keys = {K_CONFIG("{}"), K_LEADER("node1"), K_M1, K_M2, K_M3_FROM2, K_STATUS("{\"optime\":9000}")},
     .expected = "node2:p:a1:0",
     .actions = "node2:create-p"},
    {.desc = "cascade without retention, on node2",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .dyn_yaml = "member_slots_ttl: 0\n",
     .keys = {K_CONFIG("{}"), K_LEADER("node1"), K_M1, K_M2, K_M3_FROM2, K_STATUS("{\"optime\":9000}")},
     .expected = "node3:p:a1:6500",
     .actions = "node3:create-p"},
    {.desc = "cascade with retention: the leader keeps node3's slot inactive, advanced to node3's own position",
     .role = SLOT_ROLE_PRIMARY,
     .keys = {K_CONFIG("{}"), K_LEADER("node1"), K_M1, K_M2, K_M3_FROM2, K_STATUS(STATUS_STD)},
     .rows = {ROW_PHYS("node2", 7000), ROW_PHYS("node3", 6000)},
     .expected = "node2:p:a1:7000 node3:p:a0:6500",
     .actions = "node3:advance(6500)"},
    {.desc = "nofailover replica with retention: only the members that stream from it, nothing retained",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .nofailover = true,
     .keys = {K_CONFIG("{}"), K_LEADER("node1"), K_M1, K_M2, K_M3_FROM2, K_STATUS(STATUS_STD)},
     .rows = {ROW_PHYS("node1", 5000)},
     .expected = "node3:p:a1:6500",
     .actions = "node1:drop(unknown) node3:create-p"},
    {.desc = "retain_slots: a vanished member's slot stays expected (created if missing), never our own",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .keys =
         {K_CONFIG("{}"), K_LEADER("node1"), K_M1, K_M2,
          K_STATUS(
              "{\"optime\":9000,\"slots\":{\"node1\":9000,\"node3\":6000},\"retain_slots\":[\"node1\",\"node2\",\"node3\"]}")},
     .rows = {ROW_PHYS("node1", 9000)},
     .expected = "node1:p:a0:9000 node3:p:a-:0",
     .actions = "node3:create-p"},
    {.desc = "retain_slots on the leader: kept, not advanced (no position for it)",
     .role = SLOT_ROLE_PRIMARY,
     .keys =
         {K_CONFIG("{}"), K_LEADER("node1"), K_M1, K_M2,
          K_STATUS(
              "{\"optime\":9000,\"slots\":{\"node2\":7000,\"node3\":6000},\"retain_slots\":[\"node1\",\"node2\",\"node3\"]}")},
     .rows = {ROW_PHYS("node2", 7000), ROW_PHYS("node3", 5000)},
     .expected = "node2:p:a1:7000 node3:p:a-:0",
     .actions = ""},
    {.desc = "the member slot left the retention: dropped everywhere",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .keys = {K_CONFIG("{}"), K_LEADER("node1"), K_M1, K_M2,
              K_STATUS("{\"optime\":9000,\"slots\":{\"node1\":9000},\"retain_slots\":[\"node1\",\"node2\"]}")},
     .rows = {ROW_PHYS("node1", 9000), ROW_PHYS("node3", 5000)},
     .expected = "node1:p:a0:9000",
     .actions = "node3:drop(unknown)"},
    {.desc = "use_slots false: nothing expected, everything not ignored is dropped",
     .role = SLOT_ROLE_PRIMARY,
     .dyn_yaml = "postgresql:\n  use_slots: false\n",
     .keys = {CLUSTER3},
     .rows = {ROW_PHYS("node2", 7000)},
     .expected = "",
     .actions = "node2:drop(unknown)"},
    {.desc = "no /config in the DCS: slots are not managed",
     .role = SLOT_ROLE_PRIMARY,
     .keys = {K_LEADER("node1"), K_M1, K_M2},
     .rows = {ROW_PHYS("junk", 7000)},
     .expected = "",
     .actions = ""},
    {.desc = "a leader older than 4.0 publishes no member positions: the member's xlog_location is used",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .keys = {K_CONFIG("{}"),
              K_LEADER("node1"),
              {"members/node1",
               "{\"conn_url\":\"postgres://10.0.0.1:5432/postgres\",\"api_url\":\"http://10.0.0.1:8008/"
               "patroni\",\"state\":\"running\",\"role\":\"primary\",\"version\":\"3.3.2\","
               "\"xlog_location\":9000}"},
              K_M2,
              K_M3,
              K_STATUS("{\"optime\":9000}")},
     .rows = {ROW_PHYS("node1", 100), ROW_PHYS("node3", 100)},
     .expected = "node1:p:a0:9000 node3:p:a0:6000",
     .actions = "node1:advance(9000) node3:advance(6000)"},
    {.desc = "two member names map to one slot name: reported",
     .role = SLOT_ROLE_PRIMARY,
     .keys = {K_CONFIG("{}"),
              K_LEADER("node1"),
              K_M1,
              {"members/db-1", MEMBER("10.0.0.4", "replica", "")},
              {"members/db.1", MEMBER("10.0.0.5", "replica", "")}},
     .rows = {ROW_PHYS("db_1", 100)},
     .expected = "db_1:p:a1:0",
     .actions = "",
     .errors = "Following cluster members share a replication slot name: db-1, db.1 map to db_1"},
};

static void test_member_slots(void **state) {
    (void)state;
    run_cases(member_cases, ELEMENTSOF(member_cases));
}

/* ------------------------------------------------------------------------------------------------
 * permanent slots and ignore_slots */

#define PERM_YAML \
    "slots:\n"    \
    "  perm_p:\n" \
    "  perm_l:\n    type: logical\n    database: postgres\n    plugin: test_decoding\n"

/* Patroni 4.1's cluster_type on permanent slots: `primary` only outside a standby cluster, `standby` only in
 * one; physical and logical alike. */
#define CT_YAML                                                                                        \
    "slots:\n"                                                                                         \
    "  p_any: {type: physical}\n"                                                                      \
    "  p_primary: {type: physical, cluster_type: primary}\n"                                           \
    "  p_standby: {type: physical, cluster_type: standby}\n"                                           \
    "  l_standby: {type: logical, database: postgres, plugin: test_decoding, cluster_type: standby}\n" \
    "  l_primary: {type: logical, database: postgres, plugin: test_decoding, cluster_type: primary}\n"
static const Case cluster_type_cases[] = {
    {.desc = "cluster_type: a primary cluster's primary keeps no standby-only slot",
     .role = SLOT_ROLE_PRIMARY,
     .dyn_yaml = CT_YAML,
     .keys = {CLUSTER3},
     .rows = {ROW_PHYS("node2", 100), ROW_PHYS("node3", 100), ROW_PHYS("p_standby", 100)},
     .expected = "node2:p:a1:7000 node3:p:a1:6000 p_any:p:a1:0:perm p_primary:p:a1:0:perm "
                 "l_primary:l:a-:0:perm",
     .actions = "p_standby:drop(unknown) p_any:create-p p_primary:create-p l_primary:create-l(postgres,test_decoding)"},
    {.desc = "cluster_type: a primary cluster's replica neither",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .dyn_yaml = CT_YAML,
     .keys = {CLUSTER3},
     .rows = {ROW_PHYS("node1", 9000), ROW_PHYS("node3", 6000), ROW_PHYS("p_any", 1), ROW_PHYS("p_primary", 1)},
     .expected = "node1:p:a0:9000 node3:p:a0:6000 p_any:p:a0:0:perm p_primary:p:a0:0:perm "
                 "l_primary:l:a-:0:perm",
     .actions = ""},
    {.desc = "cluster_type: the standby leader of a standby cluster keeps only the untyped and standby physical ones",
     .role = SLOT_ROLE_STANDBY_LEADER,
     .dyn_yaml = "standby_cluster:\n  host: 10.1.1.1\n" CT_YAML,
     .keys = {CLUSTER3},
     .rows = {ROW_PHYS("node2", 100), ROW_PHYS("node3", 100), ROW_PHYS("p_primary", 100)},
     .expected = "node2:p:a1:7000 node3:p:a1:6000 p_any:p:a1:0:perm p_standby:p:a1:0:perm",
     .actions = "p_primary:drop(unknown) p_any:create-p p_standby:create-p"},
};

static void test_cluster_type(void **state) {
    (void)state;
    run_cases(cluster_type_cases, ELEMENTSOF(cluster_type_cases));
}

static const Case permanent_cases[] = {
    {.desc = "primary: permanent physical and logical slots are created",
     .role = SLOT_ROLE_PRIMARY,
     .dyn_yaml = PERM_YAML,
     .keys = {CLUSTER3},
     .rows = {ROW_PHYS("node2", 100), ROW_PHYS("node3", 100)},
     .expected = "node2:p:a1:7000 node3:p:a1:6000 perm_p:p:a1:0:perm perm_l:l:a-:0:perm",
     .actions = "perm_p:create-p perm_l:create-l(postgres,test_decoding)"},
    {.desc = "primary: a permanent physical slot whose wal_status is 'lost' is recreated",
     .role = SLOT_ROLE_PRIMARY,
     .dyn_yaml = PERM_YAML,
     .keys = {CLUSTER3},
     .rows = {ROW_PHYS("node2", 100),
              ROW_PHYS("node3", 100),
              {.name = "perm_p", .restart_lsn = 50, .lost = true},
              {.name = "perm_l", .logical = true, .plugin = "test_decoding", .database = "postgres"}},
     .expected = "node2:p:a1:7000 node3:p:a1:6000 perm_p:p:a1:0:perm perm_l:l:a-:0:perm",
     .actions = "perm_p:drop(lost) perm_p:create-p"},
    {.desc = "replica: physical permanent slot kept and advanced, the logical one (in /status) is to be copied",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .dyn_yaml = PERM_YAML,
     .keys = {K_CONFIG("{}"), K_LEADER("node1"), K_M1, K_M2, K_M3,
              K_STATUS("{\"optime\":9000,\"slots\":{\"node1\":9000,\"node3\":6000,\"perm_p\":8000,\"perm_l\":8500}}")},
     .rows = {ROW_PHYS("node1", 9000), ROW_PHYS("node3", 6000), ROW_PHYS("perm_p", 100)},
     .expected = "node1:p:a0:9000 node3:p:a0:6000 perm_p:p:a0:8000:perm perm_l:l:a-:8500:perm",
     .actions = "perm_p:advance(8000)",
     .copy = "perm_l"},
    {.desc = "replica with a copy of the logical slot: advanced, never past the replay position",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .dyn_yaml = PERM_YAML,
     .replay_lsn = 8200,
     .keys = {K_CONFIG("{}"), K_LEADER("node1"), K_M1, K_M2, K_M3,
              K_STATUS("{\"optime\":9000,\"slots\":{\"node1\":9000,\"node3\":6000,\"perm_p\":8000,\"perm_l\":8500}}")},
     .rows = {ROW_PHYS("node1", 9000),
              ROW_PHYS("node3", 6000),
              ROW_PHYS("perm_p", 8000),
              {.name = "perm_l",
               .logical = true,
               .database = "postgres",
               .plugin = "test_decoding",
               .confirmed_flush_lsn = 7000}},
     .expected = "node1:p:a0:9000 node3:p:a0:6000 perm_p:p:a0:8000:perm perm_l:l:a-:8500:perm",
     .actions = "perm_l:advance(8200,postgres)"},
    {.desc = "replica: a logical slot the leader does not publish (not created there yet) is not copied",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .dyn_yaml = PERM_YAML,
     .keys = {K_CONFIG("{}"), K_LEADER("node1"), K_M1, K_M2, K_M3,
              K_STATUS("{\"optime\":9000,\"slots\":{\"node1\":9000,\"node3\":6000,\"perm_p\":8000}}")},
     .rows = {ROW_PHYS("node1", 9000), ROW_PHYS("node3", 6000), ROW_PHYS("perm_p", 8000)},
     .expected = "node1:p:a0:9000 node3:p:a0:6000 perm_p:p:a0:8000:perm perm_l:l:a-:0:perm",
     .actions = ""},
    {.desc = "replica: the copy's advance failed for lack of WAL: copied again, not advanced",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .dyn_yaml = PERM_YAML,
     .replay_lsn = 9000,
     .recopy = "perm_l other",
     .keys = {K_CONFIG("{}"), K_LEADER("node1"), K_M1, K_M2, K_M3,
              K_STATUS("{\"optime\":9000,\"slots\":{\"node1\":9000,\"node3\":6000,\"perm_p\":8000,\"perm_l\":8500}}")},
     .rows = {ROW_PHYS("node1", 9000),
              ROW_PHYS("node3", 6000),
              ROW_PHYS("perm_p", 8000),
              {.name = "perm_l",
               .logical = true,
               .database = "postgres",
               .plugin = "test_decoding",
               .confirmed_flush_lsn = 7000}},
     .expected = "node1:p:a0:9000 node3:p:a0:6000 perm_p:p:a0:8000:perm perm_l:l:a-:8500:perm",
     .actions = "",
     .copy = "perm_l"},
    {.desc = "replica: a local slot of that name with another plugin is dropped, then copied",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .dyn_yaml = PERM_YAML,
     .replay_lsn = 9000,
     .keys = {K_CONFIG("{}"), K_LEADER("node1"), K_M1, K_M2, K_M3,
              K_STATUS("{\"optime\":9000,\"slots\":{\"node1\":9000,\"node3\":6000,\"perm_p\":8000,\"perm_l\":8500}}")},
     .rows = {ROW_PHYS("node1", 9000),
              ROW_PHYS("node3", 6000),
              ROW_PHYS("perm_p", 8000),
              {.name = "perm_l",
               .logical = true,
               .database = "postgres",
               .plugin = "pgoutput",
               .confirmed_flush_lsn = 7000}},
     .expected = "node1:p:a0:9000 node3:p:a0:6000 perm_p:p:a0:8000:perm perm_l:l:a-:8500:perm",
     .actions = "perm_l:drop(mismatch)",
     .copy = "perm_l"},
    {.desc = "nostream replica: no logical slots (it has no slot on the primary to protect them)",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .nostream = true,
     .dyn_yaml = PERM_YAML,
     .keys = {K_CONFIG("{}"), K_LEADER("node1"), K_M1, K_M2, K_M3,
              K_STATUS("{\"optime\":9000,\"slots\":{\"perm_p\":8000,\"perm_l\":8500}}")},
     .expected = "node1:p:a0:0 node3:p:a0:0 perm_p:p:a0:8000:perm",
     .actions = "node1:create-p node3:create-p perm_p:create-p"},
    {.desc = "nofailover replica: no permanent slots",
     .me = "node2",
     .role = SLOT_ROLE_REPLICA,
     .nofailover = true,
     .dyn_yaml = PERM_YAML,
     .keys = {CLUSTER3},
     .rows = {ROW_PHYS("perm_p", 100)},
     .expected = "",
     .actions = "perm_p:drop(unknown)"},
    {.desc = "type/plugin/database mismatch: dropped and recreated",
     .role = SLOT_ROLE_PRIMARY,
     .dyn_yaml = PERM_YAML,
     .keys = {CLUSTER3},
     .rows = {ROW_PHYS("node2", 100),
              ROW_PHYS("node3", 100),
              {.name = "perm_p", .logical = true, .database = "postgres", .plugin = "test_decoding"},
              {.name = "perm_l", .logical = true, .database = "other", .plugin = "test_decoding"}},
     .expected = "node2:p:a1:7000 node3:p:a1:6000 perm_p:p:a1:0:perm perm_l:l:a-:0:perm",
     .actions = "perm_p:drop(mismatch) perm_p:create-p perm_l:drop(mismatch) perm_l:create-l(postgres,test_decoding)"},
    {.desc = "a permanent physical slot named like a member is the member slot; never for ourselves",
     .role = SLOT_ROLE_PRIMARY,
     .dyn_yaml = "slots:\n  node2: {type: physical}\n  node1:\n",
     .keys = {CLUSTER3},
     .rows = {ROW_PHYS("node2", 100), ROW_PHYS("node3", 100)},
     .expected = "node2:p:a1:7000 node3:p:a1:6000",
     .actions = ""},
    {.desc = "permanent slot of a cascading member: not expected active on the leader",
     .role = SLOT_ROLE_PRIMARY,
     .dyn_yaml = "member_slots_ttl: 0\nslots:\n  node3:\n",
     .keys = {K_CONFIG("{}"), K_LEADER("node1"), K_M1, K_M2, K_M3_FROM2, K_STATUS("{\"optime\":9000}")},
     .rows = {ROW_PHYS("node2", 100), ROW_PHYS("node3", 100)},
     .expected = "node2:p:a1:0 node3:p:a0:6500:perm",
     .actions = "node3:advance(6500)"},
    {.desc = "invalid names and values are reported and skipped",
     .role = SLOT_ROLE_PRIMARY,
     .dyn_yaml = "slots:\n  Bad-Name:\n  num: 5\n",
     .keys = {CLUSTER3},
     .rows = {ROW_PHYS("node2", 100), ROW_PHYS("node3", 100)},
     .expected = "node2:p:a1:7000 node3:p:a1:6000",
     .actions = "",
     .errors = "Invalid permanent replication slot name 'Bad-Name'"},
    {.desc = "a logical permanent slot named like a member conflicts",
     .role = SLOT_ROLE_PRIMARY,
     .dyn_yaml = "slots:\n  node2: {type: logical, database: postgres, plugin: x}\n",
     .keys = {CLUSTER3},
     .rows = {ROW_PHYS("node2", 100), ROW_PHYS("node3", 100)},
     .expected = "node2:p:a1:7000 node3:p:a1:6000",
     .actions = "",
     .errors = "is conflicting with physical replication slot for cluster member"},
    {.desc = "PostgreSQL 10 primary: logical permanent slots are not supported",
     .role = SLOT_ROLE_PRIMARY,
     .pg_major = 10,
     .dyn_yaml = PERM_YAML,
     .keys = {CLUSTER3},
     .rows = {ROW_PHYS("node2", 100), ROW_PHYS("node3", 100), ROW_PHYS("perm_p", 100)},
     .expected = "node2:p:a1:7000 node3:p:a1:6000 perm_p:p:a1:0:perm",
     .actions = "",
     .errors = "Following slots will not be created: ['perm_l']"},
    {.desc = "ignore_slots: matchers on name, database, type",
     .role = SLOT_ROLE_PRIMARY,
     .dyn_yaml = "ignore_slots:\n  - name: ext1\n  - database: appdb\n  - type: physical\n    name: ext3\n"
                 "  - name: ext4\n    plugin: wal2json\n",
     .keys = {CLUSTER3},
     .rows = {ROW_PHYS("node2", 100),
              ROW_PHYS("node3", 100),
              ROW_PHYS("ext1", 1),
              {.name = "ext2", .logical = true, .database = "appdb", .plugin = "pgoutput"},
              ROW_PHYS("ext3", 1),
              {.name = "ext4", .logical = true, .database = "appdb2", .plugin = "pgoutput"}},
     .expected = "node2:p:a1:7000 node3:p:a1:6000",
     .actions = "ext4:drop(unknown)"},
};

static void test_permanent_slots(void **state) {
    (void)state;
    run_cases(permanent_cases, ELEMENTSOF(permanent_cases));
}

/* ------------------------------------------------------------------------------------------------
 * /status slots */

static char *status_slots_for(const Case *k, long long own) {
    World w;
    world_build(&w, k);
    SlotsPlan p;
    slots_plan(&w.in, &p);
    cJSON *o = slots_status_slots(&w.in, &p, own);
    char *s = o ? json_dumps(o, false) : xstrdup("null");
    cJSON_Delete(o);
    slots_plan_free(&p);
    world_free(&w);
    return s;
}

static void test_status_slots(void **state) {
    (void)state;
    Case k = {.role = SLOT_ROLE_PRIMARY,
              .dyn_yaml = PERM_YAML,
              .keys = {CLUSTER3},
              .rows = {ROW_PHYS("node2", 7100),
                       ROW_PHYS("ignored", 5),
                       ROW_PHYS("node3", 0),
                       {.name = "perm_l",
                        .logical = true,
                        .database = "postgres",
                        .plugin = "test_decoding",
                        .restart_lsn = 1,
                        .confirmed_flush_lsn = 8800},
                       ROW_PHYS("perm_p", 6600)}};
    /* the managed slots in pg_replication_slots order (a NULL position is left out), our own last */
    _cleanup_free_ char *s = status_slots_for(&k, 9100);
    assert_string_equal(s, "{\"node2\":7100,\"perm_l\":8800,\"perm_p\":6600,\"node1\":9100}");
    /* member_slots_ttl 0: permanent slots only */
    k.dyn_yaml = "member_slots_ttl: 0\n" PERM_YAML;
    _cleanup_free_ char *s0 = status_slots_for(&k, 9100);
    assert_string_equal(s0, "{\"perm_l\":8800,\"perm_p\":6600}");
    /* PostgreSQL 10: nothing */
    k.pg_major = 10;
    _cleanup_free_ char *s10 = status_slots_for(&k, 9100);
    assert_string_equal(s10, "null");
    /* the /status value as written */
    k.pg_major = 16;
    k.dyn_yaml = NULL;
    World w;
    world_build(&w, &k);
    SlotsPlan p;
    slots_plan(&w.in, &p);
    cJSON *o = slots_status_slots(&w.in, &p, 9100);
    StrList retain = {0};
    strlist_add(&retain, "node3");
    strlist_add(&retain, "node1");
    _cleanup_free_ char *json = cluster_encode_status(9100, o, &retain);
    assert_string_equal(json, "{\"optime\":9100,\"slots\":{\"node2\":7100,\"node1\":9100},"
                              "\"retain_slots\":[\"node1\",\"node3\"]}");
    cJSON_Delete(o);
    strlist_clear(&retain);
    slots_plan_free(&p);
    world_free(&w);
}

/* ------------------------------------------------------------------------------------------------
 * retain_slots */

static char *retain_step(World *w, RetainTimers *t, double now, StrList *expired) {
    SlotsPlan p;
    slots_plan(&w->in, &p);
    cJSON *o = slots_status_slots(&w->in, &p, 9000);
    StrList r = {0};
    retain_update(t, &w->in, o, now, &r, expired);
    char *s = strlist_join(&r, ",");
    strlist_clear(&r);
    cJSON_Delete(o);
    slots_plan_free(&p);
    return s;
}

static void test_retain(void **state) {
    (void)state;
    /* the leader node1 sees node2 and node3; /status (written by a former leader) retains node4 */
    Case k = {.role = SLOT_ROLE_PRIMARY,
              .dyn_yaml = "member_slots_ttl: 15\nslots:\n  perm_p:\n",
              .keys = {K_CONFIG("{}"), K_LEADER("node1"), K_M1, K_M2, K_M3,
                       K_STATUS("{\"optime\":1,\"retain_slots\":[\"node2\",\"node4\"]}")},
              .rows = {ROW_PHYS("node2", 7000), ROW_PHYS("node3", 6000), ROW_PHYS("node4", 100),
                       ROW_PHYS("perm_p", 100)}};
    World w;
    world_build(&w, &k);
    RetainTimers t = {0};
    StrList expired = {0};
    /* first call of the term: node4's timer starts now; permanent slots are never retained */
    _cleanup_free_ char *r1 = retain_step(&w, &t, 100, &expired);
    assert_string_equal(r1, "node1,node2,node3,node4");
    /* 10 s later node3's key is gone (and its slot still exists) */
    world_free(&w);
    Case k2 = k;
    k2.keys[4] = (Kv){"status", "{\"optime\":1,\"retain_slots\":[\"node1\",\"node2\",\"node3\",\"node4\"]}"};
    k2.keys[5] = (Kv){0};
    world_build(&w, &k2);
    assert_null(cluster_get_member(w.cluster, "node3"));
    _cleanup_free_ char *r2 = retain_step(&w, &t, 110, &expired);
    assert_string_equal(r2, "node1,node2,node3,node4");
    assert_int_equal(expired.n, 0);
    /* 15 s after the start node4 expires; node3 (last seen at 100) too */
    _cleanup_free_ char *r3 = retain_step(&w, &t, 115, &expired);
    assert_string_equal(r3, "node1,node2");
    assert_int_equal(expired.n, 2);
    assert_true(strlist_contains(&expired, "node3") && strlist_contains(&expired, "node4"));
    strlist_clear(&expired);
    /* a new term (promotion): every name in /status starts again */
    retain_timers_clear(&t);
    _cleanup_free_ char *r4 = retain_step(&w, &t, 200, &expired);
    assert_string_equal(r4, "node1,node2,node3,node4");
    _cleanup_free_ char *r5 = retain_step(&w, &t, 214, &expired);
    assert_string_equal(r5, "node1,node2,node3,node4");
    _cleanup_free_ char *r6 = retain_step(&w, &t, 216, &expired);
    assert_string_equal(r6, "node1,node2");
    /* member_slots_ttl 0: nothing is retained */
    world_free(&w);
    k2.dyn_yaml = "member_slots_ttl: 0\n";
    world_build(&w, &k2);
    retain_timers_clear(&t);
    strlist_clear(&expired);
    _cleanup_free_ char *r7 = retain_step(&w, &t, 300, &expired);
    assert_string_equal(r7, "");
    strlist_clear(&expired);
    retain_timers_clear(&t);
    world_free(&w);
}

/* ------------------------------------------------------------------------------------------------
 * logical slots on replicas: hot_standby_feedback, the copy, readiness */

static bool hsf_for(const Case *k) {
    World w;
    world_build(&w, k);
    bool r = slots_enforce_hot_standby_feedback(&w.in);
    world_free(&w);
    return r;
}

static char *name_on_primary_for(const Case *k) {
    World w;
    world_build(&w, k);
    char *r = slots_name_on_primary(&w.in);
    world_free(&w);
    return r ? r : xstrdup("(none)");
}

static void test_hot_standby_feedback(void **state) {
    (void)state;
    Case k = {.me = "node2", .role = SLOT_ROLE_REPLICA, .dyn_yaml = PERM_YAML, .keys = {CLUSTER3}};
    assert_true(hsf_for(&k));
    /* the same answer as a primary: nothing changes on promotion */
    k.role = SLOT_ROLE_PRIMARY;
    assert_true(hsf_for(&k));
    k.role = SLOT_ROLE_REPLICA;
    /* physical permanent slots only */
    k.dyn_yaml = "slots:\n  perm_p:\n";
    assert_false(hsf_for(&k));
    k.dyn_yaml = PERM_YAML;
    /* PostgreSQL 10, a standby cluster, nostream, nofailover: no logical slots here */
    k.pg_major = 10;
    assert_false(hsf_for(&k));
    k.pg_major = 0;
    k.dyn_yaml = "standby_cluster:\n  host: 10.1.1.1\n" PERM_YAML;
    assert_false(hsf_for(&k));
    k.dyn_yaml = PERM_YAML;
    k.nostream = true;
    assert_false(hsf_for(&k));
    k.nostream = false;
    k.nofailover = true;
    assert_false(hsf_for(&k));
    /* ... unless a member that cascades from it carries them */
    k.keys[4] = (Kv)K_M3_FROM2;
    assert_true(hsf_for(&k));
    /* no /config: nothing is managed */
    Case k2 = {.me = "node2", .role = SLOT_ROLE_REPLICA, .keys = {K_LEADER("node1"), K_M1, K_M2}};
    assert_false(hsf_for(&k2));

    /* the slot on the primary that carries our feedback */
    Case n = {.me = "node2", .role = SLOT_ROLE_REPLICA, .keys = {CLUSTER3}};
    _cleanup_free_ char *a = name_on_primary_for(&n);
    assert_string_equal(a, "node2");
    n.keys[4] = (Kv)K_M3_FROM2;
    n.me = "node3";
    n.replicatefrom = "node2";
    _cleanup_free_ char *b = name_on_primary_for(&n);
    assert_string_equal(b, "node2");
    n.nostream = true;
    _cleanup_free_ char *c = name_on_primary_for(&n);
    assert_string_equal(c, "(none)");
}

/* A state file as PostgreSQL 15 writes it: 16-byte header, then the persistent data (name first). */
static size_t make_state(unsigned char *buf, size_t size, const char *name) {
    assert_true(size >= 200);
    memset(buf, 0, size);
    size_t len = 16 + 184;
    uint32_t magic = 0x1051CA1u, version = 3, length = (uint32_t)(len - 16);
    memcpy(buf, &magic, 4);
    memcpy(buf + 8, &version, 4);
    memcpy(buf + 12, &length, 4);
    memcpy(buf + 16, name, strlen(name));
    uint32_t db = 5;
    memcpy(buf + 16 + 64, &db, 4);
    uint32_t crc = slot_crc32c(buf + 8, len - 8);
    memcpy(buf + 4, &crc, 4);
    return len;
}

static void expect_invalid(const unsigned char *data, size_t len, const char *name, const char *what) {
    char *err = NULL;
    assert_int_equal(slot_state_validate(data, len, name, &err), -EINVAL);
    if (!strstr(err, what))
        print_error("error: %s\n want: %s\n", err, what);
    assert_non_null(strstr(err, what));
    free(err);
}

static void test_slot_state_file(void **state) {
    (void)state;
    /* the check value of CRC-32C */
    assert_int_equal(slot_crc32c((const unsigned char *)"123456789", 9), 0xE3069283u);
    unsigned char buf[256];
    size_t len = make_state(buf, sizeof buf, "perm_l");
    char *err = NULL;
    assert_int_equal(slot_state_validate(buf, len, "perm_l", &err), 0);
    assert_null(err);
    expect_invalid(buf, len, "other", "is that of another slot ('perm_l')");
    expect_invalid(buf, 40, "perm_l", "too short (40 bytes)");
    expect_invalid(NULL, 0, "perm_l", "too short");
    expect_invalid(buf, len - 1, "perm_l", "declares 184 bytes of data but has 183");
    unsigned char bad[256];
    memcpy(bad, buf, sizeof bad);
    bad[100] ^= 1;
    expect_invalid(bad, len, "perm_l", "checksum mismatch");
    memcpy(bad, buf, sizeof bad);
    bad[0] ^= 0xff;
    expect_invalid(bad, len, "perm_l", "bad magic number");
    /* a name without its terminating NUL inside NameData */
    memcpy(bad, buf, sizeof bad);
    memset(bad + 16, 'a', 64);
    uint32_t crc = slot_crc32c(bad + 8, len - 8);
    memcpy(bad + 4, &crc, 4);
    expect_invalid(bad, len, "perm_l", "another slot");
}

static void test_slot_copy_check(void **state) {
    (void)state;
    unsigned char buf[256];
    size_t len = make_state(buf, sizeof buf, "perm_l");
    ExpectedSlot e = {.name = "perm_l",
                      .logical = true,
                      .database = "postgres",
                      .plugin = "test_decoding",
                      .permanent = true,
                      .lsn = 8500};
    SlotCopySource src = {.name = "perm_l",
                          .type = "logical",
                          .database = "postgres",
                          .plugin = "test_decoding",
                          .confirmed_flush_lsn = 8400,
                          .state = buf,
                          .state_len = len};
    SlotCopyLocal loc = {.replay_lsn = 9000, .wal_level_logical = true, .hot_standby_feedback = true, .free_slots = 3};
    char *msg = NULL;
    assert_int_equal(slot_copy_check(&e, &src, &loc, &msg), SLOT_COPY_OK);
    assert_null(msg);
#define EXPECT(verdict, what)                                           \
    do {                                                                \
        assert_int_equal(slot_copy_check(pe, &s2, &l2, &msg), verdict); \
        if (!strstr(msg, what))                                         \
            print_error("msg: %s\nwant: %s\n", msg, what);              \
        assert_non_null(strstr(msg, what));                             \
        free(msg);                                                      \
    } while (0)
    const ExpectedSlot *pe = NULL;
    SlotCopySource s2 = src;
    SlotCopyLocal l2 = loc;
    EXPECT(SLOT_COPY_REFUSE, "it is not a permanent logical slot of the configuration");
    pe = &e;
    s2.plugin = "pgoutput";
    EXPECT(SLOT_COPY_REFUSE, "due to the configuration mismatch: configuration={'type': 'logical', 'database': "
                             "'postgres', 'plugin': 'test_decoding'}, slot on the primary={'type': 'logical', "
                             "'database': 'postgres', 'plugin': 'pgoutput'}");
    s2 = src;
    s2.type = "physical";
    s2.database = s2.plugin = NULL;
    EXPECT(SLOT_COPY_REFUSE, "configuration mismatch");
    s2 = src;
    s2.state_len = len - 4;
    EXPECT(SLOT_COPY_REFUSE, "Will not copy the logical slot \"perm_l\": the state file of slot 'perm_l' declares");
    s2 = src;
    s2.state = NULL;
    s2.state_len = 0;
    EXPECT(SLOT_COPY_REFUSE, "too short");
    s2 = src;
    s2.confirmed_flush_lsn = 0;
    EXPECT(SLOT_COPY_REFUSE, "no confirmed_flush_lsn");
    s2 = src;
    l2.replay_lsn = 8399;
    EXPECT(SLOT_COPY_WAIT, "replayed up to 8399, the slot is at 8400 on the primary");
    l2 = loc;
    l2.hot_standby_feedback = false;
    EXPECT(SLOT_COPY_WAIT, "hot_standby_feedback is off");
    l2 = loc;
    l2.wal_level_logical = false;
    EXPECT(SLOT_COPY_WAIT, "wal_level is not logical");
    l2 = loc;
    l2.free_slots = 0;
    EXPECT(SLOT_COPY_WAIT, "max_replication_slots");
    /* copied again (the local copy's WAL is gone): only once the primary's slot has moved past it */
    l2 = loc;
    s2.restart_lsn = 5000;
    s2.local_restart_lsn = 5000;
    EXPECT(SLOT_COPY_WAIT, "its restart_lsn on the primary (5000) has not moved past that of the copy here (5000)");
    s2.restart_lsn = 5001;
    assert_int_equal(slot_copy_check(pe, &s2, &l2, &msg), SLOT_COPY_OK);
    /* the copy decodes from its restart_lsn: not copied while that WAL is not here (a replica cloned
     * after the slot was created never had it) */
    s2 = src;
    l2 = loc;
    s2.restart_lsn = 0x1500000;
    l2.oldest_wal_lsn = 0x2000000;
    EXPECT(SLOT_COPY_WAIT, "its restart_lsn on the primary (0/1500000) is older than the oldest WAL here (0/2000000)");
    l2.oldest_wal_lsn = 0x1000000;
    assert_int_equal(slot_copy_check(pe, &s2, &l2, &msg), SLOT_COPY_OK);
    l2.oldest_wal_lsn = 0; /* not known: not checked */
    s2.restart_lsn = 0x1500000;
    assert_int_equal(slot_copy_check(pe, &s2, &l2, &msg), SLOT_COPY_OK);
#undef EXPECT
}

static void test_oldest_wal(void **state) {
    (void)state;
    char *dd = tmpdir_make();
    assert_non_null(dd);
    assert_true(pg_oldest_wal_lsn(dd, 16LL << 20) == 0); /* no pg_wal */
    char *wal = xasprintf("%s/pg_wal", dd);
    assert_int_equal(mkdir(wal, 0700), 0);
    assert_true(pg_oldest_wal_lsn(dd, 16LL << 20) == 0); /* empty */
    /* not segments: history, backup label, partial segment, lower case, archive_status */
    free(write_file(wal, "00000002.history", "1\t0/3000000\tno recovery target specified\n"));
    free(write_file(wal, "000000010000000000000001.00000028.backup", "x"));
    free(write_file(wal, "000000010000000000000001.partial", "x"));
    free(write_file(wal, "00000001000000000000000a", "x"));
    char *status = xasprintf("%s/archive_status", wal);
    assert_int_equal(mkdir(status, 0700), 0);
    free(status);
    assert_true(pg_oldest_wal_lsn(dd, 16LL << 20) == 0);
    /* any timeline; log and segment parts (256 segments of 16 MB per log id) */
    free(write_file(wal, "000000020000000100000003", "x"));
    free(write_file(wal, "0000000300000001000000FF", "x"));
    free(write_file(wal, "000000020000000200000000", "x"));
    assert_true(pg_oldest_wal_lsn(dd, 16LL << 20) == 0x103000000LL);
    free(write_file(wal, "000000010000000000000004", "x"));
    assert_true(pg_oldest_wal_lsn(dd, 16LL << 20) == 0x4000000LL);
    /* 64 MB segments: 64 per log id; a segment number past that is not a segment name */
    free(write_file(wal, "000000010000000000000040", "x"));
    assert_true(pg_oldest_wal_lsn(dd, 64LL << 20) == 0x10000000LL);
    /* an invalid segment size: not checked */
    assert_true(pg_oldest_wal_lsn(dd, 0) == 0);
    assert_true(pg_oldest_wal_lsn(dd, 3LL << 20) == 0);
    free(wal);
    dd = tmpdir_remove(dd);
}

/* A timeline history file's text (pg_wal/<tl>.history, or TIMELINE_HISTORY's content: not NUL-terminated). */
static void test_timeline_history_parse(void **state) {
    (void)state;
    const char text[] = "1\t0/3000000\tno recovery target specified\n"
                        "\n"
                        "# a comment\n"
                        "not a line\n"
                        "2\t0/5000A28\tbefore 2026-12-07 12:00:00+00\n"
                        "3\t1/0\tno recovery target specified"; /* no final newline */
    PgTimelineSwitch *h = NULL;
    size_t n = 0;
    pg_parse_timeline_history(text, sizeof text - 1, &h, &n);
    assert_int_equal(n, 3);
    assert_true(h[0].tli == 1 && h[0].lsn == 0x3000000LL);
    assert_string_equal(h[0].reason, "no recovery target specified");
    assert_true(h[1].tli == 2 && h[1].lsn == 0x5000A28LL);
    assert_string_equal(h[1].reason, "before 2026-12-07 12:00:00+00");
    assert_true(h[2].tli == 3 && h[2].lsn == 0x100000000LL);
    pg_timeline_history_free(h, n);
    /* only the first len bytes count */
    pg_parse_timeline_history(text, strlen("1\t0/3000000"), &h, &n);
    assert_int_equal(n, 1);
    assert_string_equal(h[0].reason, "");
    pg_timeline_history_free(h, n);
    pg_parse_timeline_history("", 0, &h, &n);
    assert_int_equal(n, 0);
    assert_null(h);
    /* from the file */
    char *dd = tmpdir_make();
    char *wal = xasprintf("%s/pg_wal", dd);
    assert_int_equal(mkdir(wal, 0700), 0);
    free(write_file(wal, "00000003.history", text));
    time_t mtime;
    char *err = NULL;
    assert_int_equal(pg_read_timeline_history(dd, 3, &h, &n, &mtime, &err), 0);
    assert_int_equal(n, 3);
    pg_timeline_history_free(h, n);
    assert_true(pg_read_timeline_history(dd, 4, &h, &n, &mtime, &err) < 0);
    assert_non_null(strstr(err, "00000004.history"));
    free(err);
    free(wal);
    (void)tmpdir_remove(dd);
}

static void test_slot_copy_safe(void **state) {
    (void)state;
    assert_true(slot_copy_safe(724, 724, 724));
    assert_true(slot_copy_safe(700, 724, 730));
    /* the feedback has not overtaken the primary's slot yet */
    assert_false(slot_copy_safe(730, 724, 724));
    /* the copy is older than what the primary protects for it */
    assert_false(slot_copy_safe(700, 724, 720));
    /* unknown (NULL) anywhere */
    assert_false(slot_copy_safe(0, 724, 724));
    assert_false(slot_copy_safe(724, 0, 724));
    assert_false(slot_copy_safe(724, 724, 0));
    /* xids wrap around */
    assert_true(slot_copy_safe(4294967290LL, 5, 10));
    assert_false(slot_copy_safe(10, 5, 4294967290LL));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_member_slots),
        cmocka_unit_test(test_permanent_slots),
        cmocka_unit_test(test_cluster_type),
        cmocka_unit_test(test_status_slots),
        cmocka_unit_test(test_retain),
        cmocka_unit_test(test_hot_standby_feedback),
        cmocka_unit_test(test_slot_state_file),
        cmocka_unit_test(test_slot_copy_check),
        cmocka_unit_test(test_oldest_wal),
        cmocka_unit_test(test_slot_copy_safe),
        cmocka_unit_test(test_timeline_history_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
