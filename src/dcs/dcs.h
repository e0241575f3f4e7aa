/* The DCS interface the HA loop uses (DESIGN.md). etcd v3 (etcd3.c) is the backend; nothing above
 * src/dcs knows it is etcd. Every call is bounded by retry_timeout.
 *
 * Return convention: 1 = done / won, 0 = a compare-and-swap lost (someone else's value is there),
 * negative errno = the DCS could not be used (unreachable, timed out, refused, protocol error);
 * dcs_error() then says why in one line. */
#pragma once

#include <stdbool.h>

#include "common/config.h"
#include "dcs/cluster.h"

typedef struct Dcs Dcs;

typedef struct DcsStats {
    unsigned long long requests;       /* unary requests (range, put, txn, lease, auth, ...) */
    unsigned long long request_errors; /* of those: no answer (transport error, timeout) or an HTTP error status */
    double request_seconds;            /* the time spent in them, summed */
    unsigned long long bytes_sent;     /* request bodies */
    unsigned long long bytes_received; /* response bodies, including the watch stream */
    unsigned long long watch_events;
    unsigned long long watch_reconnects;
} DcsStats;

/* Build a client from the configuration (etcd3 section, scope, namespace, name). No network I/O.
 * Returns NULL with *ret_error set when the DCS configuration cannot be used. */
Dcs *dcs_new(const PghaConfig *cfg, char **ret_error);
Dcs *dcs_free(Dcs *d);

/* ttl (lease TTL), loop_wait (keepalive interval), retry_timeout (deadline of every call), in s. */
void dcs_set_timings(Dcs *d, int ttl, int loop_wait, int retry_timeout);

/* Cap the deadline (monotonic, usec) of every request the calling thread makes from now on, on top of
 * retry_timeout; 0 removes the cap. The HA loop bounds a REST command's calls by its next cycle. */
void dcs_set_call_deadline(usec_t deadline);
/* A second cap of the same kind, kept by the HA loop at the point where its leader lease ends for it
 * (lease_fence_at(); 0: no lease): a call that would end later is useless, the primary stops then. It also
 * bounds the wait for the connection (req_lock, which the watch's rebuild holds for up to retry_timeout) and
 * for the watch cache. */
void dcs_set_lease_deadline(usec_t deadline);
/* The calling thread's "one failure ends it" mode (the HA cycle): once a request found etcd unreachable (or
 * ran into a deadline), every further call fails at once (-ETIMEDOUT) until the mode is set again. */
void dcs_set_fail_fast(bool on);
/* Calls that must be tried even after a failure (a cleanup, a release, the bootstrap's keys): the calling
 * thread's fail-fast mode off until dcs_restore_fail_fast() gives back the mode returned here. A failure
 * meanwhile still counts: restored to on, the calls after it fail at once. */
bool dcs_suspend_fail_fast(void);
void dcs_restore_fail_fast(bool was_on);

/* Find the API version, discover the etcd members, authenticate. */
int dcs_connect(Dcs *d);
/* A reloaded configuration: when the etcd3 endpoints, credentials or TLS files differ from the running ones,
 * they are handed to a thread of the client's own, which tests them on a side connection (connect,
 * authenticate, read, check the right to write: bounded by retry_timeout) and swaps them in under req_lock, keeping the lease, its id and
 * the member key, only when they work and reach the etcd cluster the client already talks to; otherwise the
 * running client stays and the reason is logged (etcd3_reload.c). No network I/O on the calling thread; a
 * test of older settings still under way is not applied. 1 when a test was started, 0 when nothing changed,
 * -EINVAL when the settings cannot be used (logged), another negative errno when no thread could start. */
int dcs_reload(Dcs *d, const PghaConfig *cfg);
/* Why the etcd3 settings of the last reload are not in use (refused, or not reachable yet and tested again every
 * loop_wait), or NULL when they are; to be freed. */
char *dcs_reload_status(Dcs *d);

/* The last error of a call made by the calling thread (a per-thread buffer, valid until its next call). */
const char *dcs_error(const Dcs *d);
const char *dcs_base_path_of(const Dcs *d);              /* "/service/batman" */
const char *dcs_endpoint(Dcs *d, char *buf, size_t len); /* the endpoint in use */
void dcs_get_stats(Dcs *d, DcsStats *ret);

/* The cluster view: from the watch cache when the watch runs (waiting up to retry_timeout for it
 * to be ready), otherwise a serializable range read. */
int dcs_get_cluster(Dcs *d, Cluster **ret);
/* The watch cache as it is, without waiting and without a network call: -EAGAIN when not ready. */
int dcs_get_cluster_cached(Dcs *d, Cluster **ret);
/* Always a fresh read (linearizable for pgha-ctl, serializable for the daemon). */
int dcs_read_cluster(Dcs *d, bool linearizable, Cluster **ret);

/* Leader lock (spec §1.3-1.4). */
int dcs_attempt_to_acquire_leader(Dcs *d);
/* Renew: 1 renewed, 0 the key is not ours, negative error. With the cycle's view `c` that says the key is
 * ours under our lease, the lease keepalive alone renews; otherwise a transaction puts the key when its
 * value is our name, or (with a view) when it is absent, as Patroni does. c == NULL: strictly "the key
 * still holds our name" (before starting or promoting a primary: a deleted key is never re-created). */
int dcs_update_leader(Dcs *d, const Cluster *c);
int dcs_delete_leader(Dcs *d);
int dcs_take_leader(Dcs *d); /* unconditional put with our lease (after bootstrap) */

/* The lease: granted on first use, kept alive at most once per loop_wait unless forced. */
int dcs_refresh_lease(Dcs *d, bool force);
long long dcs_lease_id(const Dcs *d); /* 0 when there is none */
/* Monotonic time at which the last grant or keepalive of our lease was sent (0: no lease): the lease
 * cannot expire before this + ttl. A write that attaches the lease without a keepalive (acquiring the
 * leader key) is valid only that long. */
usec_t dcs_lease_refreshed_at(Dcs *d);
int dcs_revoke_lease(Dcs *d);

/* Our member key (with the lease); written only when its value or the lease changed. */
int dcs_touch_member(Dcs *d, const char *json);

int dcs_initialize(Dcs *d, bool create_new, const char *sysid);
int dcs_cancel_initialization(Dcs *d);
/* version > 0: compare-and-swap on that mod_revision; otherwise an unconditional write. */
int dcs_set_config(Dcs *d, const char *json, long long version);
int dcs_set_failover(Dcs *d, const char *json, long long version);
int dcs_set_sync_state(Dcs *d, const char *json, long long version, long long *ret_new_version);
int dcs_delete_sync_state(Dcs *d, long long version);
int dcs_set_history(Dcs *d, const char *json);
int dcs_set_status(Dcs *d, const char *json);
int dcs_set_failsafe(Dcs *d, const char *json);
int dcs_delete_cluster(Dcs *d);

/* Raw access for tools and tests: put/get/delete of a key relative to the cluster base. */
int dcs_put_raw(Dcs *d, const char *rel_key, const char *value, bool with_lease);
int dcs_get_raw(Dcs *d, const char *rel_key, char **ret_value, long long *ret_mod_revision);
int dcs_delete_raw(Dcs *d, const char *rel_key);

/* Watch the cluster prefix in a background thread that keeps a cache and calls `wake` when the
 * leader key changes, /status changes while someone else leads, or /config changes. */
typedef void (*DcsWakeFn)(void *userdata);
int dcs_start_watch(Dcs *d, DcsWakeFn wake, void *userdata);
void dcs_stop_watch(Dcs *d);
bool dcs_watch_ready(Dcs *d);
