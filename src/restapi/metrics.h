/* GET /metrics (spec §2.9): Patroni's Prometheus exposition, patroni_master beside patroni_primary,
 * patroni_postgres_state (Patroni 4.1), then pgha's own metrics (pgha_*). Rendered from the published snapshot and the REST request counters only:
 * a scrape never touches PostgreSQL or etcd. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "agent/snapshot.h"
#include "common/util.h"

struct MHD_Connection;

/* The exposition for snapshot s at monotonic time `now` (for the age of the lease renewal). Caller frees. */
char *metrics_render(const Snapshot *s, usec_t now);

/* Floats are rendered with py_float_repr() (common/yamltree.h), as Python's repr().
 * "2024-08-28 19:39:26.352526+00:00" (fraction and ":MM" of the offset optional) as epoch seconds,
 * computed as Python's (dt - epoch).total_seconds(). False when it cannot be parsed. */
bool parse_pg_timestamp(const char *s, double *ret_epoch);

/* The endpoint label of a request path: its first segment when it is a known route, "root" for "/",
 * otherwise "other" (bounded cardinality). */
const char *rest_metrics_endpoint(const char *url);
/* Count one request answered with `code` (0: the connection was closed without a response). */
void rest_metrics_count(const char *url, unsigned code);
/* Count a request with the status libmicrohttpd has queued on the connection (none: code 0). */
void rest_metrics_count_connection(struct MHD_Connection *conn, const char *url);
/* Zero the request counters (tests). */
void rest_metrics_reset(void);
