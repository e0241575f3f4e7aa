/* GET /metrics (spec §2.9): the exposition rendered from hand-built snapshots, compared byte for byte
 * (Patroni's part: HELP texts, order, labels, the space after patroni_postgres_server_version, Python float
 * repr, the zero-padded version; then patroni_master, Patroni 4.1's patroni_postgres_state and pgha's own
 * metrics), the timestamp parser and the REST endpoint label. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "unit_helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/snapshot.h"
#include "common/util.h"
#include "restapi/metrics.h"

#define NOW ((usec_t)100 * USEC_PER_SEC)

static Snapshot *base_snapshot(void) {
    Snapshot *s = snapshot_new();
    s->scope = xstrdup("demo");
    s->name = xstrdup("node1");
    s->dcs_last_seen = 1748772000;
    s->ttl = 30;
    s->loop_wait = 10;
    return s;
}

/* compare line by line first, for a readable failure */
static void assert_text(const char *got, const char *want) {
    const char *g = got, *w = want;
    int line = 1;
    while (*g && *w) {
        size_t gl = strcspn(g, "\n"), wl = strcspn(w, "\n");
        if (gl != wl || strncmp(g, w, gl) != 0) {
            print_error("line %d differs:\n got: %.*s\nwant: %.*s\n", line, (int)gl, g, (int)wl, w);
            fail();
        }
        g += gl + (g[gl] ? 1 : 0);
        w += wl + (w[wl] ? 1 : 0);
        line++;
    }
    assert_string_equal(got, want);
}

static const char expected_primary[] =
    "# HELP patroni_version Patroni semver without periods.\n"
    "# TYPE patroni_version gauge\n"
    "patroni_version{scope=\"demo\",name=\"node1\"} 040006\n"
    "# HELP patroni_postgres_running Value is 1 if Postgres is running, 0 otherwise.\n"
    "# TYPE patroni_postgres_running gauge\n"
    "patroni_postgres_running{scope=\"demo\",name=\"node1\"} 1\n"
    "# HELP patroni_postmaster_start_time Epoch seconds since Postgres started.\n"
    "# TYPE patroni_postmaster_start_time gauge\n"
    "patroni_postmaster_start_time{scope=\"demo\",name=\"node1\"} 1724873966.352526\n"
    "# HELP patroni_primary Value is 1 if this node is the leader, 0 otherwise.\n"
    "# TYPE patroni_primary gauge\n"
    "patroni_primary{scope=\"demo\",name=\"node1\"} 1\n"
    "# HELP patroni_master Value is 1 if this node is the leader, 0 otherwise.\n"
    "# TYPE patroni_master gauge\n"
    "patroni_master{scope=\"demo\",name=\"node1\"} 1\n"
    "# HELP patroni_xlog_location Current location of the Postgres transaction log, 0 if this node is not the leader.\n"
    "# TYPE patroni_xlog_location counter\n"
    "patroni_xlog_location{scope=\"demo\",name=\"node1\"} 67420024\n"
    "# HELP patroni_standby_leader Value is 1 if this node is the standby_leader, 0 otherwise.\n"
    "# TYPE patroni_standby_leader gauge\n"
    "patroni_standby_leader{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_replica Value is 1 if this node is a replica, 0 otherwise.\n"
    "# TYPE patroni_replica gauge\n"
    "patroni_replica{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_sync_standby Value is 1 if this node is a sync standby, 0 otherwise.\n"
    "# TYPE patroni_sync_standby gauge\n"
    "patroni_sync_standby{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_quorum_standby Value is 1 if this node is a quorum standby, 0 otherwise.\n"
    "# TYPE patroni_quorum_standby gauge\n"
    "patroni_quorum_standby{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_xlog_received_location Current location of the received Postgres transaction log, 0 if this node is not a replica.\n"
    "# TYPE patroni_xlog_received_location counter\n"
    "patroni_xlog_received_location{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_xlog_replayed_location Current location of the replayed Postgres transaction log, 0 if this node is not a replica.\n"
    "# TYPE patroni_xlog_replayed_location counter\n"
    "patroni_xlog_replayed_location{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_xlog_replayed_timestamp Current timestamp of the replayed Postgres transaction log, 0 if null.\n"
    "# TYPE patroni_xlog_replayed_timestamp gauge\n"
    "patroni_xlog_replayed_timestamp{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_xlog_paused Value is 1 if the Postgres xlog is paused, 0 otherwise.\n"
    "# TYPE patroni_xlog_paused gauge\n"
    "patroni_xlog_paused{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_postgres_streaming Value is 1 if Postgres is streaming, 0 otherwise.\n"
    "# TYPE patroni_postgres_streaming gauge\n"
    "patroni_postgres_streaming{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_postgres_in_archive_recovery Value is 1 if Postgres is replicating from archive, 0 otherwise.\n"
    "# TYPE patroni_postgres_in_archive_recovery gauge\n"
    "patroni_postgres_in_archive_recovery{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_postgres_server_version Version of Postgres (if running), 0 otherwise.\n"
    "# TYPE patroni_postgres_server_version gauge\n"
    "patroni_postgres_server_version {scope=\"demo\",name=\"node1\"} 150004\n"
    "# HELP patroni_cluster_unlocked Value is 1 if the cluster is unlocked, 0 if locked.\n"
    "# TYPE patroni_cluster_unlocked gauge\n"
    "patroni_cluster_unlocked{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_failsafe_mode_is_active Value is 1 if failsafe mode is active, 0 if inactive.\n"
    "# TYPE patroni_failsafe_mode_is_active gauge\n"
    "patroni_failsafe_mode_is_active{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_postgres_timeline Postgres timeline of this node (if running), 0 otherwise.\n"
    "# TYPE patroni_postgres_timeline counter\n"
    "patroni_postgres_timeline{scope=\"demo\",name=\"node1\"} 3\n"
    "# HELP patroni_dcs_last_seen Epoch timestamp when DCS was last contacted successfully by Patroni.\n"
    "# TYPE patroni_dcs_last_seen gauge\n"
    "patroni_dcs_last_seen{scope=\"demo\",name=\"node1\"} 1748772000\n"
    "# HELP patroni_pending_restart Value is 1 if the node needs a restart, 0 otherwise.\n"
    "# TYPE patroni_pending_restart gauge\n"
    "patroni_pending_restart{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_is_paused Value is 1 if auto failover is disabled, 0 otherwise.\n"
    "# TYPE patroni_is_paused gauge\n"
    "patroni_is_paused{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_postgres_state Numeric representation of Postgres state.\n"
    "# Values: 0=initdb, 1=initdb_failed, 2=custom_bootstrap, 3=custom_bootstrap_failed, 4=creating_replica, 5=running, 6=starting, 7=bootstrap_starting, 8=start_failed, 9=restarting, 10=restart_failed, 11=stopping, 12=stopped, 13=stop_failed, 14=crashed\n"
    "# TYPE patroni_postgres_state gauge\n"
    "patroni_postgres_state{scope=\"demo\",name=\"node1\"} 5\n"
    "# HELP pgha_ha_cycle_last_duration_seconds Duration of the last HA loop cycle.\n"
    "# TYPE pgha_ha_cycle_last_duration_seconds gauge\n"
    "pgha_ha_cycle_last_duration_seconds{scope=\"demo\",name=\"node1\"} 0.0625\n"
    "# HELP pgha_ha_cycle_duration_seconds Duration of the HA loop cycles.\n"
    "# TYPE pgha_ha_cycle_duration_seconds histogram\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"0.005\"} 0\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"0.01\"} 0\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"0.025\"} 0\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"0.05\"} 0\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"0.1\"} 1\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"0.25\"} 2\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"0.5\"} 2\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"1.0\"} 2\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"2.5\"} 3\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"5.0\"} 3\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"10.0\"} 3\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"30.0\"} 3\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"+Inf\"} 3\n"
    "pgha_ha_cycle_duration_seconds_sum{scope=\"demo\",name=\"node1\"} 2.8125\n"
    "pgha_ha_cycle_duration_seconds_count{scope=\"demo\",name=\"node1\"} 3\n"
    "# HELP pgha_promotions_total Promotions of this node to primary (failovers and switchovers it won) since the agent started.\n"
    "# TYPE pgha_promotions_total counter\n"
    "pgha_promotions_total{scope=\"demo\",name=\"node1\"} 1\n"
    "# HELP pgha_demotions_total Demotions of this node since the agent started, by mode (graceful: switchover; immediate: unfit primary; immediate-nolock: lost the leader lock; offline: DCS unreachable).\n"
    "# TYPE pgha_demotions_total counter\n"
    "pgha_demotions_total{scope=\"demo\",name=\"node1\",mode=\"graceful\"} 1\n"
    "pgha_demotions_total{scope=\"demo\",name=\"node1\",mode=\"immediate\"} 0\n"
    "pgha_demotions_total{scope=\"demo\",name=\"node1\",mode=\"immediate-nolock\"} 0\n"
    "pgha_demotions_total{scope=\"demo\",name=\"node1\",mode=\"offline\"} 0\n"
    "# HELP pgha_leader_lease_age_seconds Seconds since this node last renewed its leader lease; only present while it holds the leader lock.\n"
    "# TYPE pgha_leader_lease_age_seconds gauge\n"
    "pgha_leader_lease_age_seconds{scope=\"demo\",name=\"node1\"} 2.5\n"
    "# HELP pgha_ttl_seconds The effective ttl of the leader lease.\n"
    "# TYPE pgha_ttl_seconds gauge\n"
    "pgha_ttl_seconds{scope=\"demo\",name=\"node1\"} 30\n"
    "# HELP pgha_loop_wait_seconds The effective loop_wait of the HA loop.\n"
    "# TYPE pgha_loop_wait_seconds gauge\n"
    "pgha_loop_wait_seconds{scope=\"demo\",name=\"node1\"} 10\n"
    "# HELP pgha_watchdog_active Value is 1 if the watchdog device is armed (this node leads with watchdog.mode automatic or required), 0 otherwise.\n"
    "# TYPE pgha_watchdog_active gauge\n"
    "pgha_watchdog_active{scope=\"demo\",name=\"node1\"} 1\n"
    "# HELP pgha_watchdog_failed Value is 1 if watchdog.mode is required and the watchdog is unusable (this node will not become the leader), 0 otherwise.\n"
    "# TYPE pgha_watchdog_failed gauge\n"
    "pgha_watchdog_failed{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP pgha_dcs_requests_total Requests sent to the DCS, the watch stream not included.\n"
    "# TYPE pgha_dcs_requests_total counter\n"
    "pgha_dcs_requests_total{scope=\"demo\",name=\"node1\"} 120\n"
    "# HELP pgha_dcs_request_errors_total DCS requests that got no answer (connection error, timeout) or an HTTP error status.\n"
    "# TYPE pgha_dcs_request_errors_total counter\n"
    "pgha_dcs_request_errors_total{scope=\"demo\",name=\"node1\"} 2\n"
    "# HELP pgha_dcs_request_seconds_total Time spent in DCS requests, summed.\n"
    "# TYPE pgha_dcs_request_seconds_total counter\n"
    "pgha_dcs_request_seconds_total{scope=\"demo\",name=\"node1\"} 1.5\n"
    "# HELP pgha_dcs_sent_bytes_total Bytes of request bodies sent to the DCS.\n"
    "# TYPE pgha_dcs_sent_bytes_total counter\n"
    "pgha_dcs_sent_bytes_total{scope=\"demo\",name=\"node1\"} 4096\n"
    "# HELP pgha_dcs_received_bytes_total Bytes received from the DCS, the watch stream included.\n"
    "# TYPE pgha_dcs_received_bytes_total counter\n"
    "pgha_dcs_received_bytes_total{scope=\"demo\",name=\"node1\"} 65536\n"
    "# HELP pgha_dcs_watch_events_total Events received on the DCS watch stream.\n"
    "# TYPE pgha_dcs_watch_events_total counter\n"
    "pgha_dcs_watch_events_total{scope=\"demo\",name=\"node1\"} 7\n"
    "# HELP pgha_dcs_watch_reconnects_total Reconnections of the DCS watch stream.\n"
    "# TYPE pgha_dcs_watch_reconnects_total counter\n"
    "pgha_dcs_watch_reconnects_total{scope=\"demo\",name=\"node1\"} 1\n"
    "# HELP pgha_rest_requests_total REST API requests by endpoint (first path segment of a known route, else other) and status code (none: closed without a response).\n"
    "# TYPE pgha_rest_requests_total counter\n"
    "pgha_rest_requests_total{scope=\"demo\",name=\"node1\",endpoint=\"root\",code=\"200\"} 1\n"
    "pgha_rest_requests_total{scope=\"demo\",name=\"node1\",endpoint=\"patroni\",code=\"other\"} 1\n"
    "pgha_rest_requests_total{scope=\"demo\",name=\"node1\",endpoint=\"metrics\",code=\"200\"} 2\n"
    "pgha_rest_requests_total{scope=\"demo\",name=\"node1\",endpoint=\"cluster\",code=\"none\"} 1\n"
    "pgha_rest_requests_total{scope=\"demo\",name=\"node1\",endpoint=\"primary\",code=\"503\"} 1\n"
    "pgha_rest_requests_total{scope=\"demo\",name=\"node1\",endpoint=\"other\",code=\"404\"} 1\n";

static void test_primary(void **state) {
    (void)state;
    Snapshot *s = base_snapshot();
    s->state = xstrdup("running");
    s->role = xstrdup("primary");
    s->pg_running = true;
    s->server_version = 150004;
    s->postmaster_start_time = xstrdup("2024-08-28 19:39:26.352526+00:00");
    s->postmaster_start_epoch = 1724873966.352526;
    s->has_timeline = true;
    s->timeline = 3;
    s->xlog_location = 67420024;
    s->has_cluster = true;
    s->leader_until = NOW + 5 * USEC_PER_SEC;
    s->lease_renewed_at = NOW - 5 * USEC_PER_SEC / 2;
    s->watchdog_active = true;
    agent_counters_observe_cycle(&s->counters, 0.25);
    agent_counters_observe_cycle(&s->counters, 2.5);
    agent_counters_observe_cycle(&s->counters, 0.0625);
    s->counters.promotions = 1;
    s->counters.demotions[0] = 1;
    s->dcs_stats = (DcsStats){.requests = 120,
                              .request_errors = 2,
                              .request_seconds = 1.5,
                              .bytes_sent = 4096,
                              .bytes_received = 65536,
                              .watch_events = 7,
                              .watch_reconnects = 1};
    rest_metrics_reset();
    rest_metrics_count("/metrics", 200);
    rest_metrics_count("/metrics", 200);
    rest_metrics_count("/primary", 503);
    rest_metrics_count("/foo/bar", 404);
    rest_metrics_count("/", 200);
    rest_metrics_count("/cluster", 0);
    rest_metrics_count("/patroni/x", 299);
    char *text = metrics_render(s, NOW);
    assert_text(text, expected_primary);
    free(text);
    snapshot_unref(s);
    rest_metrics_reset();
}

/* PostgreSQL down: no server_version, so no streaming/archive-recovery metrics; the rest is 0 */
static const char expected_stopped[] =
    "# HELP patroni_version Patroni semver without periods.\n"
    "# TYPE patroni_version gauge\n"
    "patroni_version{scope=\"demo\",name=\"node1\"} 040006\n"
    "# HELP patroni_postgres_running Value is 1 if Postgres is running, 0 otherwise.\n"
    "# TYPE patroni_postgres_running gauge\n"
    "patroni_postgres_running{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_postmaster_start_time Epoch seconds since Postgres started.\n"
    "# TYPE patroni_postmaster_start_time gauge\n"
    "patroni_postmaster_start_time{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_primary Value is 1 if this node is the leader, 0 otherwise.\n"
    "# TYPE patroni_primary gauge\n"
    "patroni_primary{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_master Value is 1 if this node is the leader, 0 otherwise.\n"
    "# TYPE patroni_master gauge\n"
    "patroni_master{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_xlog_location Current location of the Postgres transaction log, 0 if this node is not the leader.\n"
    "# TYPE patroni_xlog_location counter\n"
    "patroni_xlog_location{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_standby_leader Value is 1 if this node is the standby_leader, 0 otherwise.\n"
    "# TYPE patroni_standby_leader gauge\n"
    "patroni_standby_leader{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_replica Value is 1 if this node is a replica, 0 otherwise.\n"
    "# TYPE patroni_replica gauge\n"
    "patroni_replica{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_sync_standby Value is 1 if this node is a sync standby, 0 otherwise.\n"
    "# TYPE patroni_sync_standby gauge\n"
    "patroni_sync_standby{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_quorum_standby Value is 1 if this node is a quorum standby, 0 otherwise.\n"
    "# TYPE patroni_quorum_standby gauge\n"
    "patroni_quorum_standby{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_xlog_received_location Current location of the received Postgres transaction log, 0 if this node is not a replica.\n"
    "# TYPE patroni_xlog_received_location counter\n"
    "patroni_xlog_received_location{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_xlog_replayed_location Current location of the replayed Postgres transaction log, 0 if this node is not a replica.\n"
    "# TYPE patroni_xlog_replayed_location counter\n"
    "patroni_xlog_replayed_location{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_xlog_replayed_timestamp Current timestamp of the replayed Postgres transaction log, 0 if null.\n"
    "# TYPE patroni_xlog_replayed_timestamp gauge\n"
    "patroni_xlog_replayed_timestamp{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_xlog_paused Value is 1 if the Postgres xlog is paused, 0 otherwise.\n"
    "# TYPE patroni_xlog_paused gauge\n"
    "patroni_xlog_paused{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_postgres_server_version Version of Postgres (if running), 0 otherwise.\n"
    "# TYPE patroni_postgres_server_version gauge\n"
    "patroni_postgres_server_version {scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_cluster_unlocked Value is 1 if the cluster is unlocked, 0 if locked.\n"
    "# TYPE patroni_cluster_unlocked gauge\n"
    "patroni_cluster_unlocked{scope=\"demo\",name=\"node1\"} 1\n"
    "# HELP patroni_failsafe_mode_is_active Value is 1 if failsafe mode is active, 0 if inactive.\n"
    "# TYPE patroni_failsafe_mode_is_active gauge\n"
    "patroni_failsafe_mode_is_active{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_postgres_timeline Postgres timeline of this node (if running), 0 otherwise.\n"
    "# TYPE patroni_postgres_timeline counter\n"
    "patroni_postgres_timeline{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP patroni_dcs_last_seen Epoch timestamp when DCS was last contacted successfully by Patroni.\n"
    "# TYPE patroni_dcs_last_seen gauge\n"
    "patroni_dcs_last_seen{scope=\"demo\",name=\"node1\"} 1748772000\n"
    "# HELP patroni_pending_restart Value is 1 if the node needs a restart, 0 otherwise.\n"
    "# TYPE patroni_pending_restart gauge\n"
    "patroni_pending_restart{scope=\"demo\",name=\"node1\"} 1\n"
    "# HELP patroni_is_paused Value is 1 if auto failover is disabled, 0 otherwise.\n"
    "# TYPE patroni_is_paused gauge\n"
    "patroni_is_paused{scope=\"demo\",name=\"node1\"} 1\n"
    "# HELP patroni_postgres_state Numeric representation of Postgres state.\n"
    "# Values: 0=initdb, 1=initdb_failed, 2=custom_bootstrap, 3=custom_bootstrap_failed, 4=creating_replica, 5=running, 6=starting, 7=bootstrap_starting, 8=start_failed, 9=restarting, 10=restart_failed, 11=stopping, 12=stopped, 13=stop_failed, 14=crashed\n"
    "# TYPE patroni_postgres_state gauge\n"
    "patroni_postgres_state{scope=\"demo\",name=\"node1\"} 12\n"
    "# HELP pgha_ha_cycle_last_duration_seconds Duration of the last HA loop cycle.\n"
    "# TYPE pgha_ha_cycle_last_duration_seconds gauge\n"
    "pgha_ha_cycle_last_duration_seconds{scope=\"demo\",name=\"node1\"} 0.0\n"
    "# HELP pgha_ha_cycle_duration_seconds Duration of the HA loop cycles.\n"
    "# TYPE pgha_ha_cycle_duration_seconds histogram\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"0.005\"} 0\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"0.01\"} 0\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"0.025\"} 0\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"0.05\"} 0\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"0.1\"} 0\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"0.25\"} 0\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"0.5\"} 0\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"1.0\"} 0\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"2.5\"} 0\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"5.0\"} 0\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"10.0\"} 0\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"30.0\"} 0\n"
    "pgha_ha_cycle_duration_seconds_bucket{scope=\"demo\",name=\"node1\",le=\"+Inf\"} 0\n"
    "pgha_ha_cycle_duration_seconds_sum{scope=\"demo\",name=\"node1\"} 0.0\n"
    "pgha_ha_cycle_duration_seconds_count{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP pgha_promotions_total Promotions of this node to primary (failovers and switchovers it won) since the agent started.\n"
    "# TYPE pgha_promotions_total counter\n"
    "pgha_promotions_total{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP pgha_demotions_total Demotions of this node since the agent started, by mode (graceful: switchover; immediate: unfit primary; immediate-nolock: lost the leader lock; offline: DCS unreachable).\n"
    "# TYPE pgha_demotions_total counter\n"
    "pgha_demotions_total{scope=\"demo\",name=\"node1\",mode=\"graceful\"} 0\n"
    "pgha_demotions_total{scope=\"demo\",name=\"node1\",mode=\"immediate\"} 0\n"
    "pgha_demotions_total{scope=\"demo\",name=\"node1\",mode=\"immediate-nolock\"} 0\n"
    "pgha_demotions_total{scope=\"demo\",name=\"node1\",mode=\"offline\"} 0\n"
    "# HELP pgha_leader_lease_age_seconds Seconds since this node last renewed its leader lease; only present while it holds the leader lock.\n"
    "# TYPE pgha_leader_lease_age_seconds gauge\n"
    "# HELP pgha_ttl_seconds The effective ttl of the leader lease.\n"
    "# TYPE pgha_ttl_seconds gauge\n"
    "pgha_ttl_seconds{scope=\"demo\",name=\"node1\"} 30\n"
    "# HELP pgha_loop_wait_seconds The effective loop_wait of the HA loop.\n"
    "# TYPE pgha_loop_wait_seconds gauge\n"
    "pgha_loop_wait_seconds{scope=\"demo\",name=\"node1\"} 10\n"
    "# HELP pgha_watchdog_active Value is 1 if the watchdog device is armed (this node leads with watchdog.mode automatic or required), 0 otherwise.\n"
    "# TYPE pgha_watchdog_active gauge\n"
    "pgha_watchdog_active{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP pgha_watchdog_failed Value is 1 if watchdog.mode is required and the watchdog is unusable (this node will not become the leader), 0 otherwise.\n"
    "# TYPE pgha_watchdog_failed gauge\n"
    "pgha_watchdog_failed{scope=\"demo\",name=\"node1\"} 1\n"
    "# HELP pgha_dcs_requests_total Requests sent to the DCS, the watch stream not included.\n"
    "# TYPE pgha_dcs_requests_total counter\n"
    "pgha_dcs_requests_total{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP pgha_dcs_request_errors_total DCS requests that got no answer (connection error, timeout) or an HTTP error status.\n"
    "# TYPE pgha_dcs_request_errors_total counter\n"
    "pgha_dcs_request_errors_total{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP pgha_dcs_request_seconds_total Time spent in DCS requests, summed.\n"
    "# TYPE pgha_dcs_request_seconds_total counter\n"
    "pgha_dcs_request_seconds_total{scope=\"demo\",name=\"node1\"} 0.0\n"
    "# HELP pgha_dcs_sent_bytes_total Bytes of request bodies sent to the DCS.\n"
    "# TYPE pgha_dcs_sent_bytes_total counter\n"
    "pgha_dcs_sent_bytes_total{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP pgha_dcs_received_bytes_total Bytes received from the DCS, the watch stream included.\n"
    "# TYPE pgha_dcs_received_bytes_total counter\n"
    "pgha_dcs_received_bytes_total{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP pgha_dcs_watch_events_total Events received on the DCS watch stream.\n"
    "# TYPE pgha_dcs_watch_events_total counter\n"
    "pgha_dcs_watch_events_total{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP pgha_dcs_watch_reconnects_total Reconnections of the DCS watch stream.\n"
    "# TYPE pgha_dcs_watch_reconnects_total counter\n"
    "pgha_dcs_watch_reconnects_total{scope=\"demo\",name=\"node1\"} 0\n"
    "# HELP pgha_rest_requests_total REST API requests by endpoint (first path segment of a known route, else other) and status code (none: closed without a response).\n"
    "# TYPE pgha_rest_requests_total counter\n";

static void test_stopped(void **state) {
    (void)state;
    Snapshot *s = base_snapshot();
    s->state = xstrdup("stopped");
    s->role = xstrdup("demoted");
    s->cluster_unlocked = true;
    s->pending_restart = true;
    s->pause = true;
    s->watchdog_failed = true;
    rest_metrics_reset();
    char *text = metrics_render(s, NOW);
    assert_text(text, expected_stopped);
    free(text);
    snapshot_unref(s);
}

static bool has_line(const char *text, const char *line) {
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p += n)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

#define LINE(m, v) m "{scope=\"demo\",name=\"node1\"} " v

static void test_replica(void **state) {
    (void)state;
    Snapshot *s = base_snapshot();
    s->state = xstrdup("running");
    s->role = xstrdup("replica");
    s->pg_running = true;
    s->in_recovery = true;
    s->server_version = 150004;
    s->postmaster_start_time = xstrdup("2025-06-01 12:00:00.000000+02:00");
    s->has_timeline = true;
    s->timeline = 4;
    s->xlog_location = 999; /* not a primary: not shown */
    s->received_location = 67420100;
    s->replayed_location = 67420024;
    s->replayed_timestamp = xstrdup("2025-06-01 10:00:00.5-05:00");
    s->replay_paused = true;
    s->replication_state = xstrdup("streaming");
    s->has_cluster = true;
    s->sync_standby = true;
    char *text = metrics_render(s, NOW);
    assert_true(has_line(text, LINE("patroni_postmaster_start_time", "1748772000.0")));
    assert_true(has_line(text, LINE("patroni_primary", "0")));
    assert_true(has_line(text, LINE("patroni_master", "0")));
    assert_true(has_line(text, LINE("patroni_replica", "1")));
    assert_true(has_line(text, LINE("patroni_xlog_location", "0")));
    assert_true(has_line(text, LINE("patroni_sync_standby", "1")));
    assert_true(has_line(text, LINE("patroni_quorum_standby", "0")));
    assert_true(has_line(text, LINE("patroni_xlog_received_location", "67420100")));
    assert_true(has_line(text, LINE("patroni_xlog_replayed_location", "67420024")));
    assert_true(has_line(text, LINE("patroni_xlog_replayed_timestamp", "1748790000.5")));
    assert_true(has_line(text, LINE("patroni_xlog_paused", "1")));
    assert_true(has_line(text, LINE("patroni_postgres_streaming", "1")));
    assert_true(has_line(text, LINE("patroni_postgres_in_archive_recovery", "0")));
    assert_true(has_line(text, LINE("patroni_postgres_timeline", "4")));
    assert_true(has_line(text, LINE("patroni_postgres_state", "5")));
    assert_null(strstr(text, "pgha_leader_lease_age_seconds{"));
    free(text);

    /* quorum commit: quorum_standby instead of sync_standby; a standby cluster's leader */
    s->quorum_standby = true;
    text = metrics_render(s, NOW);
    assert_true(has_line(text, LINE("patroni_sync_standby", "0")));
    assert_true(has_line(text, LINE("patroni_quorum_standby", "1")));
    free(text);
    s->standby_cluster = true;
    free(s->role);
    s->role = xstrdup("standby_leader");
    text = metrics_render(s, NOW);
    assert_true(has_line(text, LINE("patroni_standby_leader", "1")));
    assert_true(has_line(text, LINE("patroni_replica", "0")));
    free(text);
    snapshot_unref(s);
}

static void test_parse_pg_timestamp(void **state) {
    (void)state;
    double v = 0;
    assert_true(parse_pg_timestamp("2024-08-28 19:39:26.352526+00:00", &v));
    assert_true(v == 1724873966.352526);
    assert_true(parse_pg_timestamp("2025-06-01 12:00:00+02:00", &v));
    assert_true(v == 1748772000.0);
    assert_true(parse_pg_timestamp("2025-06-01 10:00:00.5-05", &v));
    assert_true(v == 1748790000.5);
    assert_true(parse_pg_timestamp("2024-02-29 23:59:59.999999+05:30", &v));
    assert_true(v == 1709231399.999999);
    assert_true(parse_pg_timestamp("1970-01-01 00:00:00+00", &v));
    assert_true(v == 0.0);
    assert_false(parse_pg_timestamp("", &v));
    assert_false(parse_pg_timestamp("2024-08-28", &v));
    assert_false(parse_pg_timestamp("2024-13-28 19:39:26+00", &v));
    assert_false(parse_pg_timestamp("2024-08-28 19:39:26.+00", &v));
    assert_false(parse_pg_timestamp("2024-08-28 19:39:26+00:00 junk", &v));
    assert_false(parse_pg_timestamp(NULL, &v));
}

/* Patroni 4.1: patroni_postgres_state is the state's index in PostgresqlState, -1 for any other state */
static void test_postgres_state(void **state) {
    (void)state;
    static const struct {
        const char *state;
        const char *value;
    } rows[] = {
        {"initializing new cluster", "0"},
        {"initdb failed", "1"},
        {"running custom bootstrap script", "2"},
        {"custom bootstrap failed", "3"},
        {"creating replica", "4"},
        {"running", "5"},
        {"starting", "6"},
        {"starting after custom bootstrap", "7"},
        {"start failed", "8"},
        {"restarting", "9"},
        {"restart failed", "10"},
        {"stopping", "11"},
        {"stopped", "12"},
        {"stop failed", "13"},
        {"crashed", "14"},
        {"unknown", "-1"},
        {"restart failed (running)", "-1"},
        {NULL, "12"}, /* no state yet: reported as stopped */
    };
    for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
        Snapshot *s = base_snapshot();
        s->state = rows[i].state ? xstrdup(rows[i].state) : NULL;
        char *text = metrics_render(s, NOW);
        _cleanup_free_ char *line = xasprintf(LINE("patroni_postgres_state", "%s"), rows[i].value);
        if (!has_line(text, line))
            print_error("state \"%s\": no line \"%s\"\n", rows[i].state ? rows[i].state : "(null)", line);
        assert_true(has_line(text, line));
        free(text);
        snapshot_unref(s);
    }
}

static void test_endpoint_label(void **state) {
    (void)state;
    assert_string_equal(rest_metrics_endpoint("/"), "root");
    assert_string_equal(rest_metrics_endpoint("/patroni"), "patroni");
    assert_string_equal(rest_metrics_endpoint("/patroni/anything"), "patroni");
    assert_string_equal(rest_metrics_endpoint("/metrics"), "metrics");
    assert_string_equal(rest_metrics_endpoint("/read-only-sync"), "read-only-sync");
    assert_string_equal(rest_metrics_endpoint("/read-only"), "read-only");
    assert_string_equal(rest_metrics_endpoint("/read-only-synchronous"), "read-only-synchronous");
    assert_string_equal(rest_metrics_endpoint("/sigterm"), "sigterm");
    assert_string_equal(rest_metrics_endpoint("/replicas"), "other");
    assert_string_equal(rest_metrics_endpoint("/patron"), "other");
    assert_string_equal(rest_metrics_endpoint("/../etc/passwd"), "other");
    assert_string_equal(rest_metrics_endpoint(""), "root");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_primary),        cmocka_unit_test(test_stopped),
        cmocka_unit_test(test_replica),        cmocka_unit_test(test_parse_pg_timestamp),
        cmocka_unit_test(test_postgres_state), cmocka_unit_test(test_endpoint_label),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
