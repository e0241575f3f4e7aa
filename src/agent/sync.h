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
 * streaming, a member that is running, not nosync, not us, not cascading elsewhere; members without
 * nofailover first, then sync_state (sync > quorum > potential > async), then LSN (flush, or write /
 * replay per synchronous_commit). `confirmed` gets the picked rows that PostgreSQL reports `sync`
 * and that are listed in `current_ssn` (a parsed synchronous_standby_names). */
void sync_pick(const cJSON *replication, const Cluster *c, const char *me, const char *synchronous_commit,
               long long count, long long max_lag_on_syncnode, long long primary_lsn, const StrList *current_ssn,
               StrList *ret_picked, StrList *ret_confirmed);

/* synchronous_standby_names for a set of names (spec §4.10 rendering). `names` NULL/empty with
 * strict gives "*"; empty without strict gives "" (no synchronous standby). */
char *sync_render_ssn(const StrList *names, long long count, bool strict);

/* The member names listed in a synchronous_standby_names value ("*" gives {"*"}). */
void sync_parse_ssn(const char *ssn, StrList *ret);

bool strlist_same_set(const StrList *a, const StrList *b);
