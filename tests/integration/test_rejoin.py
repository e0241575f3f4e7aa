"""A replica whose WAL went past the new leader's fork point (it received more than the node that was
promoted) is detected and rewound, as Patroni's timeline/LSN check does, instead of being left unable
to stream."""

import pytest

import pghatest as h
from hacluster import HaCluster

pytestmark = pytest.mark.needs_root


@pytest.fixture
def cluster(request, run_dir, etcd_cluster, unique_name):
    # a short directory: PostgreSQL's unix socket path must stay under 108 bytes
    c = HaCluster(run_dir.subdir("rejoin"), n=3, scope=unique_name, etcd=etcd_cluster,
                  bootstrap={"dcs": {"maximum_lag_on_failover": 104857600}})
    yield c
    c.destroy(keep=request.session.testsfailed > 0 and h.keep_requested())


def walreceiver_pid(cluster, name):
    rows = cluster.sql(name, "SELECT pid FROM pg_stat_wal_receiver")
    return rows[0][0] if rows else None


def test_a_replica_that_received_more_than_the_new_leader_is_rewound(cluster):
    c = cluster
    c.start(["node1"])
    assert c.wait_leader(60) == "node1"
    c.start(["node2", "node3"])
    c.wait_streaming("node1", ["node2", "node3"], 120)
    c.sql("node1", "CREATE TABLE t (id int PRIMARY KEY, what text)")
    c.sql("node1", "INSERT INTO t VALUES (1, 'everywhere')")
    for n in ("node2", "node3"):
        h.wait_until(lambda n=n: c.sql(n, "SELECT count(*) FROM t")[0][0] == 1, 30, msg=f"row 1 on {n}")

    # node2 stops receiving (its walsender ended, its replication login refused: a SIGSTOP would not
    # do, the kernel keeps what was sent in the socket); node3 gets rows that node2 will never have
    c.sql("node1", "ALTER ROLE replicator NOLOGIN")
    h.wait_until(lambda: c.sql("node2", "SELECT NOT rolcanlogin FROM pg_roles WHERE rolname = 'replicator'")[0][0],
                 30, msg="NOLOGIN on node2")
    c.sql("node1", "SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = 'node2'")
    c.sql("node1", "INSERT INTO t SELECT g, 'only on node1 and node3' FROM generate_series(2, 200) g")
    h.wait_until(lambda: c.sql("node3", "SELECT count(*) FROM t")[0][0] == 200, 30, msg="rows on node3")
    assert c.sql("node2", "SELECT count(*) FROM t")[0][0] == 1
    assert "node2" not in c.streaming_replicas("node1")
    # node3's agent freezes (its REST API does not answer the race), its PostgreSQL keeps running
    c.nodes["node3"].pause()
    c.nodes["node1"].kill9(postmaster=True)

    try:
        assert c.wait_leader(90, exclude=("node1",)) == "node2"
        h.wait_until(lambda: c.writable("node2"), 60, msg="node2 accepting writes")
        c.sql("node2", "ALTER ROLE replicator LOGIN")
        c.sql("node2", "INSERT INTO t VALUES (1000, 'after the failover')")
        # the entry of node2's promotion (timeline 1 -> 2), not any value
        c.wait_value("history", lambda v: isinstance(v, list) and v and isinstance(v[-1], list) and len(v[-1]) == 5
                     and v[-1][0] == 1 and v[-1][4] == "node2", 30, msg="/history to record node2's promotion")
    finally:
        c.nodes["node3"].resume()

    # node3 is on timeline 1 past the point where node2's timeline 2 starts: it must be rewound. (Its walreceiver
    # may show as streaming from node2 for a moment before that: it asks from the start of its WAL segment, which
    # node2 has on timeline 1. So the divergence is waited for first, then the streaming after the rewind.)
    h.wait_until(lambda: "pg_rewind finished" in c.nodes["node3"].log_text(), 120, msg="node3 to be rewound")
    c.wait_streaming("node2", ["node3"], 120)
    log = c.nodes["node3"].log_text()
    assert "diverged from the leader" in log
    assert "pg_rewind" in log
    rows = c.sql("node3", "SELECT id FROM t ORDER BY id")
    assert [r[0] for r in rows] == [1, 1000], "node3 has node2's history, not the rows node2 never had"
    assert c.sql("node3", "SELECT pg_is_in_recovery()")[0][0] is True
