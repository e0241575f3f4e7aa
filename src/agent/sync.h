/* Synchronous replication, non-quorum mode (spec §4.10): the pure parts — choosing the synchronous
 * standbys among streaming replicas and rendering synchronous_standby_names in Patroni's syntax. The
 * HA loop (ha.c) applies them in the order that keeps every acknowledged commit covered by the
 * members named in /sync: a standby enters synchronous_standby_names and must be reported `sync` by
 * PostgreSQL before /sync names it; it leaves /sync before it leaves synchronous_standby_names. */
#pragma once

#include <stdbool.h>

#include "common/config.h"
#include "dcs/cluster.h"

typedef struct cJSON cJSON;

/* Rank the pg_stat_replication rows (status query JSON) of eligible members and pick `count`:
 * streaming, a member that is running, not nosync (nor sync_priority <= 0), not us, not cascading
 * elsewhere; members without nofailover first, then the higher sync_priority tag (Patroni 4.1; 1 when
 * not set), then sync_state (sync > quorum > potential > async), then LSN (flush, or write / replay per
 * synchronous_commit). `confirmed` gets the picked rows that PostgreSQL reports `sync`
 * and that are listed in `current_ssn` (a parsed synchronous_standby_names). */
void sync_pick(const cJSON *replication, const Cluster *c, const char *me, const char *synchronous_commit,
               long long count, long long max_lag_on_syncnode, long long primary_lsn, const StrList *current_ssn,
               const StrList *in_sync, long long confirm_lsn, StrList *ret_picked, StrList *ret_confirmed);

/* Quorum mode: every eligible row in rank order (nofailover members only while fewer than `count`
 * are listed) as `active`, and those whose LSN reached `confirm_lsn` (the primary's flush LSN when
 * synchronous_standby_names last changed: they hold every commit acknowledged before) as `confirmed`. */
void sync_quorum_rows(const cJSON *replication, const Cluster *c, const char *me, const char *synchronous_commit,
                      long long count, long long max_lag_on_syncnode, long long primary_lsn, long long confirm_lsn,
                      StrList *ret_active, StrList *ret_confirmed);

/* A synchronous_standby_names value: `num` of `names` ("ANY n (..)", "FIRST n (..)", "n (..)", a bare
 * list = 1); `star` for "*"; num 0 = asynchronous. */
typedef struct SsnValue {
    long long num;
    StrList names;
    bool star;
} SsnValue;

void sync_parse_ssn_full(const char *ssn, SsnValue *ret);
void ssn_value_clear(SsnValue *v);

/* Quorum-mode rendering: "ANY n (a,b)" (even for one name), "ANY 1 (*)" for star, "" for none. */
char *sync_render_ssn_quorum(const StrList *names, long long num, bool star);

/* Quorum mode (spec §4.10). The rule that keeps every acknowledged commit visible to a race winner:
 * a winner sees its own WAL and that of `quorum` other members of {leader} + voters, none ahead of
 * it; a commit is on the leader and on at least G voters, where G ("guarantee") is the smaller of
 * (a) for commits after the last synchronous_standby_names change: num - |names not voters|;
 * (b) for commits before it: the voters that have flushed up to the primary's flush LSN of that
 *     change (`confirmed`).
 * Then quorum >= |voters| - G makes the two sets overlap. */
long long sync_quorum_guarantee(const SsnValue *ssn, const StrList *voters, const StrList *confirmed);

typedef struct QuorumInput {
    const char *me;
    const SyncState *sync; /* /sync as read */
    const SsnValue *ssn;   /* synchronous_standby_names in force */
    const StrList *active; /* eligible streaming replicas (sync_quorum_rows) */
    const StrList *confirmed;
    long long wanted; /* synchronous_node_count */
    bool strict;
    bool grace; /* just promoted: take /sync over, remove nobody yet */
} QuorumInput;

typedef struct QuorumPlan {
    bool write_sync; /* first: /sync = {me, quorum, voters} */
    long long quorum;
    StrList voters;
    bool write_ssn; /* then: synchronous_standby_names = ssn */
    SsnValue ssn;
} QuorumPlan;

/* The next step toward ssn = voters = active, numsync = min(wanted, |active|), quorum = |active| -
 * numsync, each write safe on its own (a crash between the two keeps the rule above). The quorum
 * written is always |voters| - G, so it reaches its steady value once the replicas confirm. */
void sync_quorum_plan(const QuorumInput *in, QuorumPlan *out);
void quorum_plan_clear(QuorumPlan *p);

/* Before a race winner promotes in quorum mode (spec §4.10): synchronous_standby_names = ANY num
 * (names), names = ({/sync leader} + voters) - me, num = |that set| - quorum - 1 (+1 if I am not in
 * it); raised to 1 when strict; /sync is left alone until after the promotion. */
void sync_quorum_pre_promote(const SyncState *s, const char *me, bool strict, StrList *ret_names, long long *ret_num);

/* synchronous_standby_names for a set of names (spec §4.10 rendering). `names` NULL/empty with
 * strict gives "*"; empty without strict gives "" (no synchronous standby). */
char *sync_render_ssn(const StrList *names, long long count, bool strict);

/* The member names listed in a synchronous_standby_names value ("*" gives {"*"}). */
void sync_parse_ssn(const char *ssn, StrList *ret);

bool strlist_same_set(const StrList *a, const StrList *b);
