#include "agent/slots.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "common/yamltree.h"
#include "pg/pg.h"

/* ------------------------------------------------------------------------------------------ */
/* helpers                                                                                     */

static bool can_advance(const SlotsInput *in) { return in->pg_major >= 11; }
static bool is_leader_role(SlotRole r) { return r == SLOT_ROLE_PRIMARY || r == SLOT_ROLE_STANDBY_LEADER; }
static bool standby_cluster(const DynConfig *d) { return dyn_is_standby_cluster(d); }

static const char *member_replicatefrom(const Member *m) {
    const char *rf = m->tags ? json_get_string(m->tags, "replicatefrom") : NULL;
    return rf && *rf ? rf : NULL;
}

static bool has_member(const Cluster *c, const char *name) {
    for (size_t i = 0; name && i < c->n_members; i++)
        if (streq(c->members[i].name, name))
            return true;
    return false;
}

static const Member *find_member(const Cluster *c, const char *name) {
    for (size_t i = 0; name && i < c->n_members; i++)
        if (streq(c->members[i].name, name))
            return &c->members[i];
    return NULL;
}

/* /status.slots[name] as an integer; 0 when absent or not a number (Patroni's foolproof parse_int). */
static long long status_lsn(const Cluster *c, const char *name) {
    const cJSON *v = c->status.slots ? cJSON_GetObjectItemCaseSensitive(c->status.slots, name) : NULL;
    long long r = 0;
    if (v && json_item_ll(v, &r) && r > 0)
        return r;
    if (cJSON_IsString(v) && v->valuestring) {
        char *end;
        long long x = strtoll(v->valuestring, &end, 10);
        if (end != v->valuestring && *end == '\0' && x > 0)
            return x;
    }
    return 0;
}

/* A member key's Patroni version older than 4.0 (it does not publish member slots in /status). */
static bool version_before_4(const char *v) {
    if (!v || !*v)
        return false;
    char *end;
    long major = strtol(v, &end, 10);
    return end != v && major < 4;
}

static const char *ynode_str(const YNode *map, const char *key) {
    const YNode *v = map && map->type == Y_MAP ? ynode_get(map, key) : NULL;
    return v && v->type == Y_STR && v->text && v->text[0] ? v->text : NULL;
}

/* Patroni's slot_name_re: ^[a-z0-9_]{1,63}$ */
static bool valid_slot_name(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > 63)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return false;
    return true;
}

static const PgSlot *find_row(const SlotsInput *in, const char *name) {
    for (size_t i = 0; i < in->n_slots; i++)
        if (streq(in->slots[i].name, name))
            return &in->slots[i];
    return NULL;
}

/* compare_slots(): physical slots match on the type, logical ones on database and plugin too. */
static bool row_matches(const PgSlot *row, const ExpectedSlot *e) {
    if (row->logical != e->logical)
        return false;
    return !e->logical || (streq(row->database, e->database) && streq(row->plugin, e->plugin));
}

static void add_error(SlotsPlan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_error(SlotsPlan *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *m = xvasprintf(fmt, ap);
    va_end(ap);
    strlist_add(&p->errors, m);
    free(m);
}

static ExpectedSlot *expected_add(SlotsPlan *p, const char *name) {
    p->expected = xrealloc(p->expected, (p->n_expected + 1) * sizeof *p->expected);
    ExpectedSlot *e = &p->expected[p->n_expected++];
    *e = (ExpectedSlot){.name = xstrdup(name), .expected_active = -1};
    return e;
}

const ExpectedSlot *slots_plan_find(const SlotsPlan *p, const char *name) {
    for (size_t i = 0; i < p->n_expected; i++)
        if (streq(p->expected[i].name, name))
            return &p->expected[i];
    return NULL;
}

static SlotAction *action_add(SlotsPlan *p, SlotActionKind kind, const char *name) {
    p->actions = xrealloc(p->actions, (p->n_actions + 1) * sizeof *p->actions);
    SlotAction *a = &p->actions[p->n_actions++];
    *a = (SlotAction){.kind = kind, .name = xstrdup(name)};
    return a;
}

static char *describe_row(const PgSlot *r) {
    if (r->logical)
        return xasprintf("{'type': 'logical', 'plugin': '%s', 'database': '%s'}", r->plugin ? r->plugin : "",
                         r->database ? r->database : "");
    return xstrdup("{'type': 'physical'}");
}

static char *describe_expected(const ExpectedSlot *e) {
    if (e->logical)
        return xasprintf("{'type': 'logical', 'plugin': '%s', 'database': '%s'}", e->plugin, e->database);
    return xstrdup("{'type': 'physical'}");
}

/* ------------------------------------------------------------------------------------------ */
/* permanent slots                                                                              */

typedef enum PermKind { PERM_PHYSICAL, PERM_LOGICAL, PERM_BAD } PermKind;

static PermKind perm_kind(const YNode *v, const char **ret_db, const char **ret_plugin) {
    *ret_db = *ret_plugin = NULL;
    if (!ynode_truthy(v))
        return PERM_PHYSICAL;
    if (v->type != Y_MAP)
        return PERM_BAD;
    const char *type = ynode_str(v, "type");
    const char *db = ynode_str(v, "database"), *plugin = ynode_str(v, "plugin");
    /* is_logical_slot: type defaults to logical, database and plugin set */
    if ((!type || streq(type, "logical")) && db && plugin) {
        *ret_db = db;
        *ret_plugin = plugin;
        return PERM_LOGICAL;
    }
    /* is_physical_slot: type defaults to physical */
    if (!type || streq(type, "physical"))
        return PERM_PHYSICAL;
    return PERM_BAD;
}

/* Patroni's get_slot_name_on_primary() is None: this node does not stream (nostream), or its
 * replicatefrom chain loops. */
static bool no_slot_on_primary(const SlotsInput *in) {
    const Cluster *c = in->cluster;
    StrList seen = {0};
    const char *name = in->name;
    bool nostream = in->nostream;
    const char *rf = in->replicatefrom;
    bool ret;
    for (;;) {
        strlist_add(&seen, name);
        if (nostream) {
            ret = true;
            break;
        }
        const Member *up = rf && !streq(rf, name) ? find_member(c, rf) : NULL;
        if (!up) {
            ret = false;
            break;
        }
        if (strlist_contains(&seen, up->name)) {
            ret = true;
            break;
        }
        name = up->name;
        nostream = member_tag_bool(up, "nostream");
        rf = member_replicatefrom(up);
    }
    strlist_clear(&seen);
    return ret;
}

/* Patroni 4.1: a permanent slot with `cluster_type: primary` exists only in a cluster that is not a standby
 * cluster, one with `cluster_type: standby` only in a standby cluster; without it, in both. */
static bool cluster_type_ok(const SlotsInput *in, const YNode *v) {
    const char *ct = ynode_str(v, "cluster_type");
    if (!ct)
        return true;
    return standby_cluster(in->dyn) ? !streq(ct, "primary") : !streq(ct, "standby");
}

/* Which permanent slots apply here (_get_permanent_slots): 0 none, 1 physical only, 2 all, 3 logical only
 * (kept on PostgreSQL < 11 to report that they are unsupported). */
static int permanent_scope(const SlotsInput *in) {
    if (!in->dyn->use_slots || in->nofailover || !in->dyn->slots || in->dyn->slots->type != Y_MAP)
        return 0;
    if (standby_cluster(in->dyn) || no_slot_on_primary(in))
        return can_advance(in) || in->role == SLOT_ROLE_STANDBY_LEADER ? 1 : 0;
    return can_advance(in) || in->role == SLOT_ROLE_PRIMARY ? 2 : 3;
}

static void merge_permanent(const SlotsInput *in, SlotsPlan *p) {
    int scope = permanent_scope(in);
    if (!scope)
        return;
    const Cluster *c = in->cluster;
    const YNode *slots = in->dyn->slots;
    _cleanup_free_ char *own = slot_name_from_member_name(in->name);
    StrList disabled = {0};
    for (size_t i = 0; i < slots->n; i++) {
        const char *name = slots->keys[i];
        const YNode *v = slots->items[i];
        const char *db, *plugin;
        PermKind kind = perm_kind(v, &db, &plugin);
        if (!cluster_type_ok(in, v) || (kind == PERM_PHYSICAL && scope == 3))
            continue;
        if (kind == PERM_LOGICAL && scope == 1)
            continue;
        if (!valid_slot_name(name)) {
            add_error(p,
                      "Invalid permanent replication slot name '%s'; slot name may only contain lower case letters, "
                      "numbers, and the underscore chars",
                      name);
            continue;
        }
        if (kind == PERM_PHYSICAL) {
            /* never a permanent slot for ourselves; a member slot of the same name wins */
            if (slots_plan_find(p, name) || streq(name, own))
                continue;
            /* physical: the larger of the published position and that of a cascading member of this name */
            long long lsn = status_lsn(c, name);
            bool cascading = false;
            for (size_t k = 0; k < c->n_members; k++) {
                const Member *m = &c->members[k];
                _cleanup_free_ char *mslot = slot_name_from_member_name(m->name);
                if (!streq(mslot, name))
                    continue;
                if (member_replicatefrom(m)) {
                    cascading = true;
                    if (m->has_xlog_location && m->xlog_location > lsn)
                        lsn = m->xlog_location;
                }
            }
            ExpectedSlot *e = expected_add(p, name);
            e->permanent = true;
            e->lsn = lsn;
            /* on the leader a permanent slot is expected to be active, unless it belongs to a cascading member */
            e->expected_active = !cascading && is_leader_role(in->role) ? 1 : 0;
        } else if (kind == PERM_LOGICAL) {
            if (!can_advance(in)) {
                strlist_add(&disabled, name);
            } else if (slots_plan_find(p, name)) {
                add_error(p,
                          "Permanent logical replication slot {'%s': {'database': '%s', 'plugin': '%s'}} is "
                          "conflicting with physical replication slot for cluster member",
                          name, db, plugin);
            } else {
                ExpectedSlot *e = expected_add(p, name);
                e->permanent = true;
                e->logical = true;
                e->database = xstrdup(db);
                e->plugin = xstrdup(plugin);
                e->lsn = status_lsn(c, name);
            }
        } else {
            _cleanup_free_ char *val = ynode_scalar_string(v);
            add_error(p, "Bad value for slot '%s' in permanent_slots: %s", name, val ? val : "(a collection)");
        }
    }
    if (disabled.n) {
        _cleanup_free_ char *list = strlist_join(&disabled, "', '");
        add_error(p,
                  "Permanent logical replication slots supported by Patroni only starting from PostgreSQL 11. "
                  "Following slots will not be created: ['%s'].",
                  list);
    }
    strlist_clear(&disabled);
}

/* ------------------------------------------------------------------------------------------ */
/* member slots                                                                                 */

static bool leader_filter(const SlotsInput *in, const Member *m) {
    const char *rf = member_replicatefrom(m);
    return !rf || streq(rf, in->name) || !has_member(in->cluster, rf);
}

static bool replica_filter(const SlotsInput *in, const Member *m) {
    const Leader *l = in->cluster->leader;
    return streq(member_replicatefrom(m), in->name) && !(l && streq(m->name, l->name));
}

static void member_slots(const SlotsInput *in, SlotsPlan *p) {
    if (!in->dyn->use_slots)
        return;
    const Cluster *c = in->cluster;
    bool leader = is_leader_role(in->role);
    bool retention = can_advance(in) && in->dyn->member_slots_ttl > 0;
    const Leader *l = c->leader;
    const Member *lm = l ? (l->member ? l->member : find_member(c, l->name)) : NULL;
    bool old_leader = lm && version_before_4(lm->version);
    size_t wanted = 0;
    for (size_t i = 0; i < c->n_members; i++) {
        const Member *m = &c->members[i];
        if (streq(m->name, in->name) || member_tag_bool(m, "nostream"))
            continue;
        bool active = leader ? leader_filter(in, m) : replica_filter(in, m);
        const char *rf = member_replicatefrom(m);
        if (retention) {
            /* a node that only cascades keeps slots only for the members that stream from it */
            if (in->nofailover && !streq(rf, in->name))
                continue;
        } else if (!active) {
            continue;
        }
        wanted++;
        _cleanup_free_ char *slot = slot_name_from_member_name(m->name);
        if (slots_plan_find(p, slot))
            continue; /* reported below */
        long long lsn = status_lsn(c, slot);
        /* the leader's slot for a cascading member does not move: its own report is the better source */
        if ((rf || old_leader) && m->has_xlog_location && m->xlog_location > lsn)
            lsn = m->xlog_location;
        ExpectedSlot *e = expected_add(p, slot);
        e->lsn = lsn;
        e->expected_active = active ? 1 : 0;
    }
    if (p->n_expected < wanted) {
        StrBuf b;
        sb_init(&b);
        StrList done = {0};
        for (size_t i = 0; i < c->n_members; i++) {
            _cleanup_free_ char *slot = slot_name_from_member_name(c->members[i].name);
            if (strlist_contains(&done, slot) || streq(c->members[i].name, in->name))
                continue;
            StrList names = {0};
            for (size_t k = 0; k < c->n_members; k++) {
                _cleanup_free_ char *s2 = slot_name_from_member_name(c->members[k].name);
                if (streq(s2, slot) && !streq(c->members[k].name, in->name))
                    strlist_add(&names, c->members[k].name);
            }
            if (names.n > 1) {
                _cleanup_free_ char *j = strlist_join(&names, ", ");
                sb_addf(&b, "%s%s map to %s", b.len ? "; " : "", j, slot);
            }
            strlist_clear(&names);
            strlist_add(&done, slot);
        }
        strlist_clear(&done);
        _cleanup_free_ char *txt = sb_steal(&b);
        add_error(p, "Following cluster members share a replication slot name: %s", txt);
    }
    /* retained slots of members that went away (not on nofailover nodes, never our own) */
    _cleanup_free_ char *own = slot_name_from_member_name(in->name);
    for (size_t i = 0; !in->nofailover && i < c->status.retain_slots.n; i++) {
        const char *s = c->status.retain_slots.v[i];
        if (!slots_plan_find(p, s) && !streq(s, own) && valid_slot_name(s))
            expected_add(p, s);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* ignore_slots                                                                                 */

bool slots_ignored(const YNode *ignore, const PgSlot *s) {
    if (!ignore || ignore->type != Y_SEQ)
        return false;
    for (size_t i = 0; i < ignore->n; i++) {
        const YNode *m = ignore->items[i];
        if (!m || m->type != Y_MAP)
            continue;
        const YNode *name = ynode_get(m, "name");
        if (name && name->type != Y_NULL && !(name->type == Y_STR && streq(name->text, s->name)))
            continue;
        const char *attrs[][2] = {{"database", s->database},
                                  {"plugin", s->plugin},
                                  {"type", s->logical ? "logical" : "physical"}};
        bool ok = true;
        for (size_t k = 0; ok && k < ELEMENTSOF(attrs); k++) {
            const YNode *v = ynode_get(m, attrs[k][0]);
            if (!ynode_truthy(v))
                continue;
            _cleanup_free_ char *want = ynode_scalar_string(v);
            ok = want && streq(want, attrs[k][1]);
        }
        if (ok)
            return true;
    }
    return false;
}

/* ------------------------------------------------------------------------------------------ */
/* the plan                                                                                     */

void slots_plan(const SlotsInput *in, SlotsPlan *p) {
    *p = (SlotsPlan){0};
    const Cluster *c = in->cluster;
    if (!c || !c->has_config)
        return;
    member_slots(in, p);
    merge_permanent(in, p);

    /* 1. slots nobody expects: dropped unless ignored or paused */
    for (size_t i = 0; i < in->n_slots; i++) {
        const PgSlot *r = &in->slots[i];
        if (slots_plan_find(p, r->name) || in->paused || slots_ignored(in->dyn->ignore_slots, r))
            continue;
        SlotAction *a = action_add(p, SLOT_ACT_DROP, r->name);
        a->reason = SLOT_DROP_UNKNOWN;
        a->logical = r->logical;
    }

    /* 2. expected slots: recreate on mismatch, create the missing ones, advance inactive ones */
    bool clean_inactive = c->leader && (!streq(c->leader->name, in->name) || in->role == SLOT_ROLE_PRIMARY);
    for (size_t i = 0; i < p->n_expected; i++) {
        const ExpectedSlot *e = &p->expected[i];
        const PgSlot *r = find_row(in, e->name);
        if (r && !row_matches(r, e)) {
            SlotAction *a = action_add(p, SLOT_ACT_DROP, e->name);
            a->reason = SLOT_DROP_MISMATCH;
            a->logical = r->logical;
            _cleanup_free_ char *from = describe_row(r), *to = describe_expected(e);
            a->detail = xasprintf("value is changing from %s to %s", from, to);
            r = NULL; /* gone once dropped */
        }
        if (!e->logical) {
            if (r && r->lost) {
                /* its WAL was removed (max_slot_wal_keep_size, an invalidation): useless as it is, and
                 * nothing advances it again; a new one retains WAL from now on */
                SlotAction *a = action_add(p, SLOT_ACT_DROP, e->name);
                a->reason = SLOT_DROP_LOST;
                a->detail = xstrdup("its wal_status is 'lost' (the WAL it retained was removed)");
                r = NULL;
            }
            if (r && can_advance(in) && clean_inactive && e->expected_active == 0 && r->has_xmin) {
                SlotAction *a = action_add(p, SLOT_ACT_DROP, e->name);
                a->reason = SLOT_DROP_XMIN;
                a->detail = xstrdup("it is not expected to be active but holds an xmin");
                r = NULL;
            }
            if (!r) {
                action_add(p, SLOT_ACT_CREATE_PHYSICAL, e->name);
            } else if (can_advance(in) && e->expected_active != 1 && !r->has_xmin) {
                if (r->restart_lsn <= 0) {
                    SlotAction *a = action_add(p, SLOT_ACT_DROP, e->name);
                    a->reason = SLOT_DROP_NO_RESTART_LSN;
                    a->detail = xstrdup("it has no restart_lsn (probably created by an external agent)");
                } else if (e->lsn > r->restart_lsn) {
                    SlotAction *a = action_add(p, SLOT_ACT_ADVANCE, e->name);
                    a->lsn = e->lsn;
                }
            }
            continue;
        }
        /* logical */
        if (in->role == SLOT_ROLE_PRIMARY) {
            if (!r) {
                SlotAction *a = action_add(p, SLOT_ACT_CREATE_LOGICAL, e->name);
                a->logical = true;
                a->database = xstrdup(e->database);
                a->plugin = xstrdup(e->plugin);
            }
        } else if (!r || (in->recopy && strlist_contains(in->recopy, e->name))) {
            /* only slots with a position published by the leader are copied (it has them) */
            if (e->lsn > 0 && in->role == SLOT_ROLE_REPLICA)
                strlist_add(&p->copy, e->name);
        } else {
            long long target = e->lsn < in->replay_lsn ? e->lsn : in->replay_lsn; /* not past replay */
            if (e->lsn > 0 && r->confirmed_flush_lsn < target) {
                SlotAction *a = action_add(p, SLOT_ACT_ADVANCE, e->name);
                a->logical = true;
                a->database = xstrdup(e->database);
                a->lsn = target;
            }
        }
    }
}

void slots_plan_free(SlotsPlan *p) {
    for (size_t i = 0; i < p->n_expected; i++) {
        free(p->expected[i].name);
        free(p->expected[i].database);
        free(p->expected[i].plugin);
    }
    free(p->expected);
    for (size_t i = 0; i < p->n_actions; i++) {
        free(p->actions[i].name);
        free(p->actions[i].database);
        free(p->actions[i].plugin);
        free(p->actions[i].detail);
    }
    free(p->actions);
    strlist_clear(&p->errors);
    strlist_clear(&p->copy);
    *p = (SlotsPlan){0};
}

/* ------------------------------------------------------------------------------------------ */
/* hot_standby_feedback, the slot on the primary                                                */

char *slots_name_on_primary(const SlotsInput *in) {
    if (!in->cluster || no_slot_on_primary(in))
        return NULL;
    /* follow replicatefrom up to the member that streams from the primary */
    const Cluster *c = in->cluster;
    const char *name = in->name, *rf = in->replicatefrom;
    for (size_t hops = 0; hops <= c->n_members; hops++) {
        const Member *up = rf && !streq(rf, name) ? find_member(c, rf) : NULL;
        if (!up)
            return slot_name_from_member_name(name);
        name = up->name;
        rf = member_replicatefrom(up);
    }
    return NULL; /* a loop: no_slot_on_primary() said there is none */
}

static bool enforce_hsf(const SlotsInput *in, StrList *seen) {
    strlist_add(seen, in->name);
    /* permanent logical slots expected here as a replica */
    SlotsInput r = *in;
    r.role = SLOT_ROLE_REPLICA;
    r.slots = NULL;
    r.n_slots = 0;
    r.recopy = NULL;
    SlotsPlan p;
    slots_plan(&r, &p);
    bool any = false;
    for (size_t i = 0; i < p.n_expected; i++)
        any = any || (p.expected[i].logical && p.expected[i].permanent);
    slots_plan_free(&p);
    if (any)
        return true;
    if (!in->dyn->use_slots || no_slot_on_primary(in))
        return false;
    /* a member that cascades from us and carries logical slots needs our feedback too */
    const Cluster *c = in->cluster;
    const Leader *l = c->leader;
    for (size_t i = 0; i < c->n_members; i++) {
        const Member *m = &c->members[i];
        if (!streq(member_replicatefrom(m), in->name) || (l && streq(m->name, l->name)) ||
            strlist_contains(seen, m->name))
            continue;
        SlotsInput mi = *in;
        mi.name = m->name;
        mi.nofailover = member_tag_bool(m, "nofailover");
        mi.nostream = member_tag_bool(m, "nostream");
        mi.replicatefrom = member_replicatefrom(m);
        if (enforce_hsf(&mi, seen))
            return true;
    }
    return false;
}

bool slots_enforce_hot_standby_feedback(const SlotsInput *in) {
    if (!in->cluster || !in->cluster->has_config || !can_advance(in) || standby_cluster(in->dyn))
        return false;
    StrList seen = {0};
    bool r = enforce_hsf(in, &seen);
    strlist_clear(&seen);
    return r;
}

/* ------------------------------------------------------------------------------------------ */
/* copying logical slots                                                                        */

uint32_t slot_crc32c(const unsigned char *data, size_t len) {
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        crc ^= data[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return crc ^ 0xFFFFFFFFu;
}

/* ReplicationSlotOnDisk (replication/slot.c): uint32 magic, pg_crc32c checksum, uint32 version,
 * uint32 length, then `length` bytes of ReplicationSlotPersistentData whose first member is the
 * slot's NameData (64 bytes). The checksum covers everything after itself. Native byte order: the
 * primary and its replicas share the platform. */
#define SLOT_MAGIC 0x1051CA1u
#define SLOT_CONSTANT_SIZE 16u
#define SLOT_NAMEDATALEN 64u

static uint32_t u32_at(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

int slot_state_validate(const unsigned char *data, size_t len, const char *name, char **ret_error) {
    if (!data || len < SLOT_CONSTANT_SIZE + SLOT_NAMEDATALEN) {
        *ret_error = xasprintf("the state file of slot '%s' is too short (%zu bytes)", name, data ? len : 0);
        return -EINVAL;
    }
    if (u32_at(data) != SLOT_MAGIC) {
        *ret_error = xasprintf("the state file of slot '%s' has a bad magic number %08x (expected %08x)", name,
                               u32_at(data), SLOT_MAGIC);
        return -EINVAL;
    }
    uint32_t length = u32_at(data + 12);
    if ((size_t)length != len - SLOT_CONSTANT_SIZE) {
        *ret_error = xasprintf("the state file of slot '%s' declares %u bytes of data but has %zu", name, length,
                               len - SLOT_CONSTANT_SIZE);
        return -EINVAL;
    }
    uint32_t want = u32_at(data + 4), got = slot_crc32c(data + 8, len - 8);
    if (want != got) {
        *ret_error = xasprintf("the state file of slot '%s' has a checksum mismatch (%08x, computed %08x)", name, want,
                               got);
        return -EINVAL;
    }
    const char *fname = (const char *)data + SLOT_CONSTANT_SIZE;
    if (!memchr(fname, '\0', SLOT_NAMEDATALEN) || !streq(fname, name)) {
        *ret_error = xasprintf("the state file of slot '%s' is that of another slot ('%.*s')", name,
                               (int)strnlen(fname, SLOT_NAMEDATALEN), fname);
        return -EINVAL;
    }
    return 0;
}

SlotCopyVerdict slot_copy_check(const ExpectedSlot *e, const SlotCopySource *s, const SlotCopyLocal *l,
                                char **ret_msg) {
    *ret_msg = NULL;
    if (!e || !e->logical || !e->permanent) {
        *ret_msg = xasprintf("Will not copy the slot \"%s\": it is not a permanent logical slot of the "
                             "configuration",
                             s->name);
        return SLOT_COPY_REFUSE;
    }
    if (!streq(s->type, "logical") || !streq(s->database, e->database) || !streq(s->plugin, e->plugin)) {
        *ret_msg = xasprintf("Will not copy the logical slot \"%s\" due to the configuration mismatch: "
                             "configuration={'type': 'logical', 'database': '%s', 'plugin': '%s'}, slot on the "
                             "primary={'type': '%s', 'database': '%s', 'plugin': '%s'}",
                             s->name, e->database, e->plugin, s->type ? s->type : "", s->database ? s->database : "",
                             s->plugin ? s->plugin : "");
        return SLOT_COPY_REFUSE;
    }
    char *err = NULL;
    if (slot_state_validate(s->state, s->state_len, s->name, &err) < 0) {
        *ret_msg = xasprintf("Will not copy the logical slot \"%s\": %s", s->name, err);
        free(err);
        return SLOT_COPY_REFUSE;
    }
    if (s->confirmed_flush_lsn <= 0) {
        *ret_msg = xasprintf("Will not copy the logical slot \"%s\": it has no confirmed_flush_lsn on the primary",
                             s->name);
        return SLOT_COPY_REFUSE;
    }
    /* copied again because the WAL from its restart_lsn is gone here: useless until the primary's
     * slot has moved past that position (else every cycle would restart PostgreSQL for nothing) */
    if (s->local_restart_lsn > 0 && s->restart_lsn <= s->local_restart_lsn) {
        *ret_msg = xasprintf("Not copying the logical slot \"%s\" again yet: its restart_lsn on the primary (%lld) has "
                             "not moved past that of the copy here (%lld), whose WAL is gone",
                             s->name, s->restart_lsn, s->local_restart_lsn);
        return SLOT_COPY_WAIT;
    }
    if (!l->wal_level_logical) {
        *ret_msg = xasprintf("Not copying the logical slot \"%s\" yet: wal_level is not logical here", s->name);
        return SLOT_COPY_WAIT;
    }
    if (!l->hot_standby_feedback) {
        *ret_msg = xasprintf("Not copying the logical slot \"%s\" yet: hot_standby_feedback is off here", s->name);
        return SLOT_COPY_WAIT;
    }
    /* the copy must not be ahead of this replica: after a promotion its position must exist here */
    if (l->replay_lsn < s->confirmed_flush_lsn) {
        *ret_msg = xasprintf("Not copying the logical slot \"%s\" yet: replayed up to %lld, the slot is at %lld on "
                             "the primary",
                             s->name, l->replay_lsn, s->confirmed_flush_lsn);
        return SLOT_COPY_WAIT;
    }
    /* the copy decodes from its restart_lsn: WAL this replica never had (it was cloned after the slot
     * was created) or has removed would make a copy that cannot be advanced nor used after a promotion */
    if (l->oldest_wal_lsn > 0 && s->restart_lsn > 0 && s->restart_lsn < l->oldest_wal_lsn) {
        char have[32], need[32];
        pg_format_lsn(s->restart_lsn, need, sizeof need);
        pg_format_lsn(l->oldest_wal_lsn, have, sizeof have);
        *ret_msg = xasprintf("Not copying the logical slot \"%s\" yet: its restart_lsn on the primary (%s) is older "
                             "than the oldest WAL here (%s); waiting for the slot to move on the primary",
                             s->name, need, have);
        return SLOT_COPY_WAIT;
    }
    if (l->free_slots <= 0) {
        *ret_msg = xasprintf("Not copying the logical slot \"%s\": max_replication_slots is reached here", s->name);
        return SLOT_COPY_WAIT;
    }
    return SLOT_COPY_OK;
}

/* TransactionIdPrecedesOrEquals() for normal xids: modulo 2^32 */
static bool xid_le(long long a, long long b) { return (int32_t)((uint32_t)a - (uint32_t)b) <= 0; }

bool slot_copy_safe(long long primary_logical, long long primary_physical, long long standby_logical) {
    if (primary_logical <= 0 || primary_physical <= 0 || standby_logical <= 0)
        return false;
    return xid_le(primary_logical, primary_physical) && xid_le(primary_physical, standby_logical);
}

/* ------------------------------------------------------------------------------------------ */
/* /status                                                                                      */

static cJSON *lsn_item(long long v) {
    if (v < (1LL << 53))
        return cJSON_CreateNumber((double)v);
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    return cJSON_CreateRaw(buf);
}

static void obj_set(cJSON *o, const char *k, long long v) {
    if (cJSON_GetObjectItemCaseSensitive(o, k))
        cJSON_ReplaceItemInObjectCaseSensitive(o, k, lsn_item(v));
    else
        cJSON_AddItemToObject(o, k, lsn_item(v));
}

/* maybe_filter_permanent_slots() with member_slots_ttl 0: physical permanent slots, and logical ones
 * whose name is not a member's slot name. */
static bool published_when_no_retention(const SlotsInput *in, const char *name) {
    const YNode *slots = in->dyn->slots;
    if (!in->dyn->use_slots || !slots || slots->type != Y_MAP || !ynode_get(slots, name) ||
        !cluster_type_ok(in, ynode_get(slots, name)))
        return false;
    SlotsInput as_replica = *in;
    as_replica.role = SLOT_ROLE_REPLICA;
    as_replica.name = "";
    as_replica.nofailover = as_replica.nostream = false;
    as_replica.replicatefrom = NULL;
    if (!permanent_scope(&as_replica))
        return false;
    const char *db, *plugin;
    PermKind k = perm_kind(ynode_get(slots, name), &db, &plugin);
    if (k == PERM_PHYSICAL)
        return true;
    if (k != PERM_LOGICAL)
        return false;
    for (size_t i = 0; i < in->cluster->n_members; i++) {
        _cleanup_free_ char *s = slot_name_from_member_name(in->cluster->members[i].name);
        if (streq(s, name))
            return false;
    }
    return true;
}

cJSON *slots_status_slots(const SlotsInput *in, const SlotsPlan *plan, long long own_lsn) {
    if (!can_advance(in) || !in->cluster)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; i < in->n_slots; i++) {
        const PgSlot *r = &in->slots[i];
        const ExpectedSlot *e = slots_plan_find(plan, r->name);
        if (!e || !row_matches(r, e))
            continue;
        long long v = r->logical ? r->confirmed_flush_lsn : r->restart_lsn;
        if (v > 0)
            obj_set(o, r->name, v);
    }
    _cleanup_free_ char *own = slot_name_from_member_name(in->name);
    if (own_lsn > 0)
        obj_set(o, own, own_lsn);
    if (in->dyn->member_slots_ttl <= 0) {
        cJSON *it = o->child;
        while (it) {
            cJSON *next = it->next;
            if (!published_when_no_retention(in, it->string))
                cJSON_Delete(cJSON_DetachItemViaPointer(o, it));
            it = next;
        }
    }
    if (!o->child) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* ------------------------------------------------------------------------------------------ */
/* retain_slots                                                                                 */

void retain_timers_clear(RetainTimers *t) {
    for (size_t i = 0; i < t->n; i++)
        free(t->names[i]);
    free(t->names);
    free(t->seen);
    *t = (RetainTimers){0};
}

static ssize_t timer_find(const RetainTimers *t, const char *name) {
    for (size_t i = 0; i < t->n; i++)
        if (streq(t->names[i], name))
            return (ssize_t)i;
    return -1;
}

static void timer_set(RetainTimers *t, const char *name, double now, bool only_if_new) {
    ssize_t i = timer_find(t, name);
    if (i >= 0) {
        if (!only_if_new)
            t->seen[i] = now;
        return;
    }
    t->names = xrealloc(t->names, (t->n + 1) * sizeof *t->names);
    t->seen = xrealloc(t->seen, (t->n + 1) * sizeof *t->seen);
    t->names[t->n] = xstrdup(name);
    t->seen[t->n] = now;
    t->n++;
}

static int cmp_strp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void retain_update(RetainTimers *t, const SlotsInput *in, const cJSON *published, double now, StrList *ret,
                   StrList *expired) {
    const Cluster *c = in->cluster;
    *ret = (StrList){0};
    /* a new term as leader: every name the DCS retains starts its timer now (spec: on promotion the
     * timers restart) */
    if (!t->started) {
        for (size_t i = 0; c && i < c->status.retain_slots.n; i++)
            timer_set(t, c->status.retain_slots.v[i], now, false);
        t->started = true;
    }
    if (c && published && published->child) {
        /* member slots we see now: members with a key (and streaming), ourselves even without a key */
        StrList members = {0};
        bool found_self = false;
        for (size_t i = 0; i < c->n_members; i++) {
            const Member *m = &c->members[i];
            if (streq(m->name, in->name))
                found_self = true;
            if (!member_tag_bool(m, "nostream")) {
                _cleanup_free_ char *s = slot_name_from_member_name(m->name);
                strlist_add(&members, s);
            }
        }
        if (!found_self) {
            _cleanup_free_ char *s = slot_name_from_member_name(in->name);
            strlist_add(&members, s);
        }
        const YNode *perm = in->dyn->slots && in->dyn->slots->type == Y_MAP ? in->dyn->slots : NULL;
        const cJSON *it;
        cJSON_ArrayForEach(it, published) {
            if (!strlist_contains(&members, it->string))
                continue;
            const char *db, *plugin;
            if (perm && ynode_get(perm, it->string) &&
                perm_kind(ynode_get(perm, it->string), &db, &plugin) == PERM_PHYSICAL)
                continue; /* only non-permanent member slots are retained */
            timer_set(t, it->string, now, false);
        }
        strlist_clear(&members);
    }
    /* expire */
    for (size_t i = 0; i < t->n;) {
        if (t->seen[i] + (double)in->dyn->member_slots_ttl <= now) {
            if (expired)
                strlist_add(expired, t->names[i]);
            free(t->names[i]);
            memmove(&t->names[i], &t->names[i + 1], (t->n - i - 1) * sizeof *t->names);
            memmove(&t->seen[i], &t->seen[i + 1], (t->n - i - 1) * sizeof *t->seen);
            t->n--;
        } else {
            i++;
        }
    }
    for (size_t i = 0; i < t->n; i++)
        strlist_add(ret, t->names[i]);
    if (ret->n > 1)
        qsort(ret->v, ret->n, sizeof *ret->v, cmp_strp);
}
