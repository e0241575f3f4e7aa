/* The Patroni-compatible REST API on restapi.listen (libmicrohttpd). Health checks and the status
 * document are answered from the agent's published snapshot in microseconds; /cluster, /history
 * and /config from the DCS cache. */
#pragma once

#include <stdbool.h>

#include "agent/commands.h"
#include "agent/snapshot.h"
#include "common/config.h"
#include "dcs/dcs.h"

typedef struct RestServer RestServer;

/* commands: the HA loop's queue for the command endpoints (NULL: they answer 501). */
RestServer *rest_start(const PghaConfig *cfg, Dcs *dcs, CommandQueue *commands, char **ret_error);
void rest_stop(RestServer *r);
/* Apply a reloaded configuration. The access settings (allowlist, authentication, headers) change in the
 * running server. A new listen address, request_queue_size or TLS setting, or certificate files whose
 * content changed, start a new daemon first; when it is up the old one stops accepting and is stopped once
 * its requests are answered (in the background). 0; -1 when the new daemon or TLS material failed (logged):
 * the running daemon and its settings stay. */
int rest_reload(RestServer *r, const PghaConfig *cfg);

/* ---- pure helpers, exposed for tests ---- */

typedef struct QueryParam {
    const char *key, *value;
} QueryParam;

/* The HTTP code of a health-check path (spec §2.3) for a snapshot and query parameters at `now` (monotonic:
 * the leader's lease is evaluated per request, as Patroni's is_leader()). */
int health_check_code(const Snapshot *s, const char *path, const QueryParam *params, size_t n_params, usec_t now);
/* GET /readiness (Patroni 4.1's replication check): 200 for the lock holder, and for a running streaming
 * replica not further behind than `lag` (parse_lag(); default maximum_lag_on_failover) from the leader's
 * position (the /status optime or the WAL end its WAL receiver heard of, whichever is further), measured
 * from the replayed position, or the received one with mode=write; else 503 with Patroni's reason in why
 * (may be NULL). */
int readiness_code(const Snapshot *s, const QueryParam *params, size_t n_params, char *why, size_t why_len, usec_t now);
/* GET /liveness (spec §2.4): 200 when paused or when the next scheduled HA cycle (monotonic) is less than
 * ttl (primary) or 2 x ttl (otherwise) overdue at `now`, else 503. */
int liveness_code(const Snapshot *s, usec_t now);
/* "1048576", "1024kB", "10MB": bytes, or -1 when invalid. */
long long parse_lag(const char *s);

/* GET /cluster body (spec §2.4), Python's spaced JSON. */
char *cluster_to_json(const Cluster *c, const char *scope, bool paused);
