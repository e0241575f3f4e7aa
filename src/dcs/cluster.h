/* The cluster as Patroni keeps it in the DCS (spec §1.1-1.2, §1.5): decoding of every key into
 * structs, and encoding of the values pgha writes, byte-compatible with Patroni (compact JSON,
 * field order, Python's escaping). Backend-independent: the input is a list of key/value pairs. */
#pragma once

#include <stdbool.h>

#include "common/util.h"

typedef struct cJSON cJSON;

/* One key as a DCS backend returns it. */
typedef struct DcsKv {
    char *key;   /* absolute key */
    char *value; /* decoded value, NUL-terminated */
    size_t value_len;
    long long mod_revision;
    long long create_revision;
    char *lease; /* lease id (decimal) or NULL */
} DcsKv;

void dcs_kv_free_contents(DcsKv *kv);

typedef struct Member {
    char *name;
    char *conn_url, *api_url, *proxy_url;
    char *state, *role, *version;
    bool has_xlog_location;
    long long xlog_location;
    bool has_replay_lsn, has_receive_lsn; /* replicas, Patroni 4.1: pg_last_wal_replay_lsn(), */
    long long replay_lsn, receive_lsn;    /* max(pg_last_wal_receive_lsn(), written_lsn) */
    char *replication_state;
    bool has_timeline;
    long long timeline;
    cJSON *tags; /* object, or NULL */
    bool pending_restart;
    cJSON *pending_restart_reason; /* object, or NULL */
    cJSON *scheduled_restart;      /* object, or NULL */
    bool pause;
    bool checkpoint_after_promote_false; /* published `checkpoint_after_promote: false` */
    bool watchdog_failed;
    cJSON *data;        /* the whole decoded object (empty object when unparsable) */
    long long revision; /* mod_revision (Patroni calls it the member version) */
    char *session;      /* lease */
} Member;

typedef struct Leader {
    char *name;
    long long version;
    char *session;
    const Member *member; /* borrowed from Cluster.members, or NULL */
    bool corrupt;         /* the key exists but names nobody (empty, NUL byte): name is "",
                                      the holder is unknown */
} Leader;

typedef struct Failover {
    bool present;             /* key exists */
    char *leader, *candidate; /* candidate is the key's `member` field */
    char *scheduled_at;       /* as stored */
    long long version;
} Failover;

typedef struct SyncState {
    bool present; /* key exists */
    char *leader; /* NULL: no sync state */
    long long quorum;
    StrList members; /* sync_standby, split on ',' */
    long long version;
} SyncState;

typedef struct ClusterStatus {
    bool has_optime;
    long long optime;
    cJSON *slots; /* object name -> lsn, or NULL */
    StrList retain_slots;
    long long version;
} ClusterStatus;

typedef struct Cluster {
    bool has_initialize;
    char *initialize; /* "" while bootstrapping, then the system identifier */
    bool has_config;
    cJSON *config;            /* object; {} when unparsable */
    long long config_version; /* 0 when missing or unparsable */
    Leader *leader;           /* NULL: unlocked */
    Member *members;
    size_t n_members;
    Failover failover;
    SyncState sync;
    bool has_history;
    cJSON *history; /* array or NULL */
    long long history_version;
    ClusterStatus status;
    cJSON *failsafe;    /* object or NULL */
    long long revision; /* DCS revision the view was read at */
} Cluster;

/* Base path of a cluster: "/" + namespace + "/" + scope with repeated slashes collapsed. */
char *dcs_base_path(const char *namespace_, const char *scope);

/* Build the view from every key under `base` + "/". Unknown keys are ignored; a corrupt value
 * is logged once (per key and revision) and treated as absent. */
Cluster *cluster_from_kvs(const DcsKv *kvs, size_t n, const char *base);
Cluster *cluster_free(Cluster *c);

const Member *cluster_get_member(const Cluster *c, const char *name);
bool cluster_is_unlocked(const Cluster *c);
/* Timeline from /history: last entry + 1; [] -> 1; absent -> 0. */
long long cluster_timeline(const Cluster *c);
bool failover_is_empty(const Failover *f);
bool sync_matches(const SyncState *s, const char *name); /* leader or standby, case-insensitive */

/* Member helpers. */
bool member_tag_bool(const Member *m, const char *tag);
bool member_nofailover(const Member *m);
long long member_failover_priority(const Member *m);
/* Patroni 4.1's sync_priority (1 when not set or not an integer; 0 with nosync) and nosync (the nosync
 * tag when set, else sync_priority <= 0). */
long long member_sync_priority(const Member *m);
bool member_nosync(const Member *m);
/* Host and port from conn_url ("postgres://host:port/db"). Returns false when unknown. */
bool member_conn_host_port(const Member *m, char **ret_host, int *ret_port);

/* Decode one member value (exposed for tests and the REST layer). */
void member_decode(Member *m, const char *name, const char *value);
void member_free_contents(Member *m);

/* Encoders. All return compact JSON in Patroni's field order (caller frees). */
char *cluster_encode_member(const Member *m);
char *cluster_encode_failover(const char *leader, const char *candidate, const char *scheduled_at);
char *cluster_encode_sync(const char *leader, long long quorum, const StrList *standbys);
char *cluster_encode_status(long long optime, const cJSON *slots, const StrList *retain_slots);
