/* Replication slots (spec §4.11): the pure part. From the cluster view, the dynamic configuration,
 * this node's name, role, PostgreSQL version and tags, and the rows of pg_replication_slots, work out
 * which slots this node should have (member slots, retained member slots, permanent slots) and the
 * actions that get it there: drop, create, advance. Also what the leader publishes in /status
 * (`slots`, `retain_slots`). Nothing here talks to PostgreSQL or the DCS; ha.c executes the plan. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/util.h"
#include "dcs/cluster.h"
#include "pg/pg.h"

typedef struct cJSON cJSON;

typedef enum SlotRole {
    SLOT_ROLE_REPLICA,
    SLOT_ROLE_PRIMARY,        /* PostgreSQL runs as a primary */
    SLOT_ROLE_STANDBY_LEADER, /* lock holder of a standby cluster */
} SlotRole;

typedef struct SlotsInput {
    const Cluster *cluster;
    const DynConfig *dyn;
    const char *name; /* this node's member name */
    SlotRole role;
    int pg_major;              /* 13, 16, ...; "advance" features need 11 */
    bool nofailover, nostream; /* this node's tags */
    const char *replicatefrom;
    bool paused;
    const PgSlot *slots; /* pg_replication_slots */
    size_t n_slots;
    long long replay_lsn;  /* replicas: logical slots are not advanced past it */
    const StrList *recopy; /* replicas: logical slots whose advance failed because their WAL is gone or
                                    * they were invalidated (SQLSTATE 58P01, 55000): copied again, not advanced */
} SlotsInput;

/* A slot this node should have. */
typedef struct ExpectedSlot {
    char *name;
    bool logical;
    char *database, *plugin; /* logical */
    long long lsn;           /* position published by the leader (0: unknown) */
    int expected_active;     /* 1: something streams from it here, 0: nothing should, -1: unknown */
    bool permanent;
} ExpectedSlot;

typedef enum SlotActionKind {
    SLOT_ACT_DROP,
    SLOT_ACT_CREATE_PHYSICAL,
    SLOT_ACT_CREATE_LOGICAL,
    SLOT_ACT_ADVANCE, /* pg_replication_slot_advance(name, lsn); logical ones in `database` */
} SlotActionKind;

typedef enum SlotDropReason {
    SLOT_DROP_UNKNOWN,        /* not expected, not ignored */
    SLOT_DROP_MISMATCH,       /* type/plugin/database differ from the configuration: recreated */
    SLOT_DROP_XMIN,           /* physical, not expected to be active, but holds an xmin: recreated */
    SLOT_DROP_NO_RESTART_LSN, /* physical without restart_lsn (created by someone else): recreated later */
    SLOT_DROP_LOST,           /* physical, wal_status 'lost' (Patroni 4.1): recreated at once */
} SlotDropReason;

typedef struct SlotAction {
    SlotActionKind kind;
    SlotDropReason reason; /* SLOT_ACT_DROP */
    char *name;
    bool logical;
    char *database, *plugin;
    long long lsn; /* SLOT_ACT_ADVANCE */
    char *detail;  /* the log line's explanation (drops), or NULL */
} SlotAction;

typedef struct SlotsPlan {
    ExpectedSlot *expected;
    size_t n_expected;
    SlotAction *actions; /* in execution order; a create after a failed drop of the same name is skipped */
    size_t n_actions;
    StrList errors; /* configuration problems (bad permanent slots, conflicting member names) */
    StrList copy;   /* replicas: logical slots to copy from the primary (missing here, or in
                                    * `recopy`, and with a position in /status.slots) */
} SlotsPlan;

/* The plan for one HA cycle. With no /config in the DCS nothing is managed (empty plan). */
void slots_plan(const SlotsInput *in, SlotsPlan *ret);
void slots_plan_free(SlotsPlan *p);
const ExpectedSlot *slots_plan_find(const SlotsPlan *p, const char *name);

/* Patroni's should_enforce_hot_standby_feedback(): this node is supposed to carry permanent logical
 * slots as a replica, or one of its cascading members is (PostgreSQL 11+, not in a standby cluster).
 * The role in `in` does not matter (the answer must not change on promotion). */
bool slots_enforce_hot_standby_feedback(const SlotsInput *in);

/* The physical slot on the primary that carries this node's feedback: our own member slot, or that of
 * the member we cascade from (get_slot_name_on_primary). NULL (nostream, a replicatefrom loop). */
char *slots_name_on_primary(const SlotsInput *in);

/* ---- copying logical slots to a replica (Patroni's copy_logical_slots) ---- */

/* One row of the copy query on the primary. */
typedef struct SlotCopySource {
    const char *name, *type, *database, *plugin;
    long long confirmed_flush_lsn; /* 0 when NULL */
    long long restart_lsn;         /* 0 when NULL */
    const unsigned char *state;    /* pg_replslot/<name>/state as read on the primary */
    size_t state_len;
    long long local_restart_lsn; /* a copy again (its WAL is gone here): the restart_lsn of the local slot */
} SlotCopySource;

/* What the copy needs from this replica's running PostgreSQL. */
typedef struct SlotCopyLocal {
    long long replay_lsn;
    bool wal_level_logical;    /* else PostgreSQL refuses to start with a logical slot */
    bool hot_standby_feedback; /* else the primary does not protect the copy's catalog_xmin */
    long long free_slots;      /* max_replication_slots minus the slots that exist (and are being copied) */
    long long oldest_wal_lsn;  /* where the oldest WAL segment in pg_wal here starts (0: not known) */
} SlotCopyLocal;

typedef enum SlotCopyVerdict {
    SLOT_COPY_OK,
    SLOT_COPY_WAIT,   /* not yet (this replica is behind the slot, feedback off, no free slot) */
    SLOT_COPY_REFUSE, /* the configuration does not match, or the state file is not valid */
} SlotCopyVerdict;

/* May the slot be copied now? `expected` is the plan's entry of that name (NULL: not expected).
 * *ret_msg explains WAIT and REFUSE. */
SlotCopyVerdict slot_copy_check(const ExpectedSlot *expected, const SlotCopySource *src, const SlotCopyLocal *local,
                                char **ret_msg);

/* Would PostgreSQL load this slot state file (ReplicationSlotOnDisk: magic, length, CRC-32C) and is it
 * the slot `name`? PostgreSQL PANICs at start-up on a bad one: it must be checked before it is
 * written. 0, or -EINVAL with *ret_error. */
int slot_state_validate(const unsigned char *data, size_t len, const char *name, char **ret_error);

/* CRC-32C (Castagnoli) as PostgreSQL computes it (pg_crc32c). */
uint32_t slot_crc32c(const unsigned char *data, size_t len);

/* Patroni's _ready_logical_slots(): a copied slot is safe to use after a failover once the primary's
 * physical slot for this node holds a catalog_xmin (hot_standby_feedback) that has overtaken the
 * catalog_xmin the primary's logical slot had when that feedback started, and is not newer than the
 * copy's own catalog_xmin: primary_logical <= primary_physical <= standby_logical (xids, modulo 2^32).
 * 0 (NULL) anywhere: not safe. */
bool slot_copy_safe(long long primary_logical_xmin, long long primary_physical_xmin, long long standby_logical_xmin);

/* Does a slot match an `ignore_slots` matcher (name/type/database/plugin, each optional)? */
bool slots_ignored(const YNode *ignore_slots, const PgSlot *s);

/* The leader's /status `slots` (spec §1.2): the managed slots that exist here with their position
 * (physical: restart_lsn, logical: confirmed_flush_lsn) plus our own member slot at `own_lsn`;
 * with member_slots_ttl 0 only permanent slots. NULL before PostgreSQL 11 or when empty. */
cJSON *slots_status_slots(const SlotsInput *in, const SlotsPlan *plan, long long own_lsn);

/* The leader's memory of member slots: when it last saw each (monotonic seconds). */
typedef struct RetainTimers {
    char **names;
    double *seen;
    size_t n;
    bool started; /* seeded from the DCS's retain_slots in this term as leader */
} RetainTimers;

void retain_timers_clear(RetainTimers *t);

/* Update the timers for one leader cycle and return the sorted `retain_slots` (spec §4.11): the
 * first call of a term (after retain_timers_clear) starts a timer for every name in the DCS's
 * retain_slots, so a new leader restarts them; member slots present in `published` (non-permanent,
 * member key present, our own included) are refreshed; timers older than member_slots_ttl expire
 * (names appended to `expired`). */
void retain_update(RetainTimers *t, const SlotsInput *in, const cJSON *published, double now, StrList *ret_retain,
                   StrList *ret_expired);
