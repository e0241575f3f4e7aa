"""Who may be promoted (spec §4.5): a `nofailover` replica never is, and neither is a replica that lags
more than maximum_lag_on_failover behind the last known leader position."""

import os
import signal
import time

import pytest

import pghatest as h
from hacluster import HaCluster

pytestmark = pytest.mark.needs_root

TTL = 20


@pytest.fixture
def cluster(request, tmp_base):
    c = HaCluster(tmp_base, n=3, scope="eligibility",
                  bootstrap={"dcs": {"maximum_lag_on_failover": 1048576}},
                  node_overrides={"node2": {"tags": {"nofailover": True}}})
    c.start(["node1"])
    c.wait_leader(60)
    c.start(["node2", "node3"])
    yield c
    c.destroy()


def test_nofailover_and_lagging_replicas_are_never_promoted(cluster):
    leader = cluster.wait_healthy()
    assert leader == "node1"
    cluster.wait_value("members/node2", lambda m: m and m.get("tags") == {"nofailover": True}, 30,
                       msg="members/node2 to carry the nofailover tag")
    # make node3 lag: freeze its WAL receiver, then write well over maximum_lag_on_failover
    wr = cluster.sql("node3", "SELECT pid FROM pg_stat_wal_receiver")[0][0]
    os.kill(wr, signal.SIGSTOP)
    try:
        cluster.sql("node1", "CREATE TABLE big AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 20000) g")
        flush = cluster.sql("node1", "SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint")[0][0]
        # the leader publishes its position in /status
        cluster.wait_value("status", lambda v: v and v.get("optime", 0) >= flush, 30,
                           msg="/status optime to reach the primary's flush position")
        m = cluster.wait_value("members/node3", lambda m: m and "xlog_location" in m, 30,
                               msg="members/node3 to report its position")
        assert flush - m["xlog_location"] > 1048576
        check_lagging_replica_readiness(cluster, flush)
        cluster.nodes["node1"].kill9(postmaster=True)
        # the lease expires after ttl; then nobody may take over for a good while
        h.wait_until(lambda: cluster.leader() is None, TTL + 10, msg="the old leader key to expire")
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            assert cluster.leader() is None, "a replica that must not be promoted took the leader key"
            assert cluster.primaries() == []
            time.sleep(0.5)
        log2, log3 = cluster.nodes["node2"].log_text(), cluster.nodes["node3"].log_text()
        assert "nofailover" in log2
        assert "maximum_lag_on_failover" in log3
    finally:
        try:
            os.kill(wr, signal.SIGCONT)
        except ProcessLookupError:
            pass


def check_lagging_replica_readiness(cluster, flush):
    """Patroni 4.1 on a replica whose WAL receiver is frozen (still `streaming`) more than
    maximum_lag_on_failover behind: GET /readiness is 503 (unless ?lag= allows it), the other replica is
    ready, and GET /cluster shows node3's receive, replay and overall lag."""
    node2, node3 = cluster.nodes["node2"], cluster.nodes["node3"]
    h.wait_until(lambda: node3.rest("GET", "/readiness").status_code == 503, 30,
                 msg="node3: GET /readiness 503 while it lags more than maximum_lag_on_failover")
    assert node3.rest("GET", "/readiness?mode=write").status_code == 503
    assert node3.rest("GET", "/readiness?lag=1GB").status_code == 200
    assert node3.rest("GET", "/readiness?lag=1GB&mode=write").status_code == 200
    assert node3.rest("GET", "/replica?lag=1MB").status_code == 503
    assert node3.rest("GET", "/replica").status_code == 200
    h.wait_until(lambda: node2.rest("GET", "/readiness").status_code == 200, 30,
                 msg="node2: GET /readiness 200 (streaming, not behind)")
    assert cluster.nodes["node1"].rest("GET", "/readiness").status_code == 200

    def node3_behind():
        body = cluster.nodes["node1"].rest("GET", "/cluster").json()
        m = {x["name"]: x for x in body["members"]}["node3"]
        lags = [m.get(k) for k in ("receive_lag", "replay_lag", "lag")]
        return m if all(isinstance(v, int) and v > 1048576 for v in lags) else None
    m = h.wait_until(node3_behind, 30, msg="GET /cluster to show node3's receive, replay and overall lag")
    assert m["state"] == "streaming"
    for k in ("receive_lsn", "replay_lsn", "lsn"):
        hi, lo = m[k].split("/")
        assert flush - ((int(hi, 16) << 32) + int(lo, 16)) > 1048576, m
