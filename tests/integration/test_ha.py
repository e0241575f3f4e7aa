"""The HA engine against real etcd, PostgreSQL 15 and pgha processes (issue: HA engine).

One 3-node cluster is shared by the scenarios of this module, in order: bootstrap, postmaster crash,
node loss with failover and pg_rewind rejoin, SIGTERM of the primary's agent, and the loss of every
etcd member. Before each scenario the cluster is checked (every agent running, one leader, every other
node streaming from it) and built anew when it is not healthy, so that one failed scenario does not fail
the following ones; no scenario depends on what an earlier one did. Timings: ttl 20 (Patroni's minimum),
loop_wait 2, retry_timeout 3."""

import os
import re
import subprocess
import time

import pytest

import pghatest as h
from hacluster import HaCluster, SharedCluster

pytestmark = pytest.mark.needs_root

TTL = 20


def build_cluster(basedir):
    c = HaCluster(basedir, n=3)
    try:
        c.start(["node1"])
        c.wait_leader(60)
        c.start(["node2", "node3"])
        c.wait_healthy(120)
    except BaseException:
        c.destroy(keep=h.keep_requested())
        raise
    return c


@pytest.fixture(scope="module")
def shared_cluster(request, run_dir):
    shared = SharedCluster(run_dir, "ha", build_cluster)
    yield shared
    shared.close(keep=request.session.testsfailed > 0 and h.keep_requested())


@pytest.fixture
def cluster(shared_cluster):
    """The module's cluster, healthy (rebuilt if the previous scenario left it broken)."""
    return shared_cluster.acquire()


def current_timeline(cluster, name):
    """The timeline a primary writes WAL on."""
    return cluster.sql(name, "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int")[0][0]


def controldata_sysid(node):
    out = subprocess.run([f"{h.find_pg_bindir()}/pg_controldata", "-D", node.data_dir], capture_output=True,
                         text=True, env={"LANG": "C", "LC_ALL": "C"}, check=True).stdout
    for line in out.splitlines():
        if line.startswith("Database system identifier:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no system identifier in pg_controldata output")


def test_bootstrap_one_primary_two_streaming_replicas(cluster):
    leader = cluster.wait_healthy()
    assert leader == "node1"
    assert cluster.primaries() == ["node1"]
    # /initialize holds the system identifier, the same on every node
    sysid = controldata_sysid(cluster.nodes["node1"])
    h.wait_until(lambda: cluster.etcd.get(cluster.key("initialize")) == sysid, 30,
                 msg=f"/initialize to hold the system identifier {sysid}")
    for n in ("node2", "node3"):
        assert controldata_sysid(cluster.nodes[n]) == sysid
    # /config is bootstrap.dcs, written as compact JSON
    want = cluster.nodes["node1"].config["bootstrap"]["dcs"]
    cluster.wait_value("config", lambda v: v == want, 30, msg="/config to be bootstrap.dcs")
    # member keys in Patroni's format
    m = cluster.wait_value("members/node2", lambda m: m and m.get("role") == "replica" and m.get("state") == "running"
                           and m.get("replication_state") == "streaming", 30,
                           msg="members/node2 to be a running, streaming replica")
    assert m["version"] == "4.0.6"
    assert m["conn_url"] == f"postgres://127.0.0.1:{cluster.nodes['node2'].pg_port}/postgres"
    assert m["api_url"].endswith("/patroni")
    # REST: leader and replica health checks answer from the snapshot
    assert cluster.nodes["node1"].rest("GET", "/primary").status_code == 200
    assert cluster.nodes["node2"].rest("GET", "/primary").status_code == 503
    h.wait_until(lambda: cluster.nodes["node2"].rest("GET", "/replica").status_code == 200, 30)
    st = cluster.nodes["node2"].rest("GET", "/patroni").json()
    assert st["role"] == "replica" and st["database_system_identifier"] == sysid
    # data written on the primary reaches the replicas
    cluster.sql("node1", "CREATE TABLE t (id int PRIMARY KEY)")
    cluster.sql("node1", "INSERT INTO t VALUES (1)")
    for n in ("node2", "node3"):
        h.wait_until(lambda n=n: cluster.sql(n, "SELECT count(*) FROM t")[0][0] == 1, 30)
    check_positions_and_readiness(cluster)


LSN = re.compile(r"^[0-9A-F]+/[0-9A-F]+$")


def parse_lsn(s):
    hi, lo = s.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def check_positions_and_readiness(cluster):
    """Patroni 4.1: the replicas publish receive_lsn and replay_lsn in their member keys, GET /cluster shows
    receive/replay/lsn positions and lags for every member but the leader, /readiness is 200 on the leader
    and on a streaming replica that is not behind."""
    flush = cluster.sql("node1", "SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint")[0][0]
    for n in ("node2", "node3"):
        m = cluster.wait_value(f"members/{n}", lambda m: m and m.get("replay_lsn", 0) >= flush
                               and m.get("receive_lsn", 0) >= flush, 30,
                               msg=f"members/{n} to publish receive_lsn and replay_lsn at {flush} or later")
        assert m["xlog_location"] == max(m["receive_lsn"], m["replay_lsn"])
        assert list(m).index("xlog_location") < list(m).index("replay_lsn") < list(m).index("receive_lsn") \
            < list(m).index("replication_state"), list(m)
    leader_key = cluster.member("node1")
    assert "receive_lsn" not in leader_key and "replay_lsn" not in leader_key
    # /status, the members and the leader's WAL position all settle (an idle primary writes little WAL)

    def settled():
        body = cluster.nodes["node1"].rest("GET", "/cluster").json()
        members = {m["name"]: m for m in body["members"]}
        for n in ("node2", "node3"):
            m = members[n]
            if not all(isinstance(m.get(k), str) and LSN.match(m[k]) for k in ("receive_lsn", "replay_lsn", "lsn")):
                return None
            if (m.get("receive_lag"), m.get("replay_lag"), m.get("lag")) != (0, 0, 0):
                return None
        return members
    members = h.wait_until(settled, 30, msg="GET /cluster to show both replicas with their positions, none behind")
    for k in ("receive_lsn", "receive_lag", "replay_lsn", "replay_lag", "lsn", "lag"):
        assert k not in members["node1"], members["node1"]
    # (lag 0 only says "not behind /status": the leader publishes its optime once per cycle, and a WAL
    # segment switch moves the replicas ahead of it by 16 MB at once)
    cluster.wait_value("status", lambda v: v and v.get("optime", 0) >= flush, 30,
                       msg=f"/status optime to reach the flush position {flush}")
    for n in ("node2", "node3"):
        assert parse_lsn(members[n]["lsn"]) >= flush
        assert parse_lsn(members[n]["replay_lsn"]) <= parse_lsn(members[n]["lsn"])
    # GET /patroni has no new fields in 4.1
    st = cluster.nodes["node2"].rest("GET", "/patroni").json()
    assert "latest_end_lsn" not in st and "receive_lsn" not in st
    assert st["xlog"]["received_location"] >= st["xlog"]["replayed_location"] >= flush
    # /readiness: the leader, and the replicas once they stream and are not behind
    assert cluster.nodes["node1"].rest("GET", "/readiness").status_code == 200
    for n in ("node2", "node3"):
        h.wait_until(lambda n=n: cluster.nodes[n].rest("GET", "/readiness").status_code == 200, 30,
                     msg=f"{n}: GET /readiness 200")
        h.wait_until(lambda n=n: cluster.nodes[n].rest("GET", "/readiness?lag=0&mode=write").status_code == 200, 30,
                     msg=f"{n}: GET /readiness?lag=0&mode=write 200")


def test_postmaster_crash_restarts_the_same_primary(cluster):
    leader = cluster.wait_healthy()
    node = cluster.nodes[leader]
    pm = node.kill_postmaster()
    assert pm is not None
    t0 = time.monotonic()
    h.wait_until(lambda: cluster.writable(leader), 30, interval=0.05, msg=f"{leader} writable again")
    took = time.monotonic() - t0
    assert node.postmaster_pid() not in (None, pm)
    assert cluster.leader() == leader, "a postmaster crash must not fail over"
    assert took < TTL
    assert "postmaster is not running" in node.log_text()


def test_node_loss_fails_over_and_the_old_primary_rejoins_with_pg_rewind(cluster):
    old = cluster.wait_healthy()
    cluster.sql(old, "CREATE TABLE IF NOT EXISTS t_loss (id int PRIMARY KEY)")
    cluster.sql(old, "INSERT INTO t_loss SELECT coalesce(max(id), 0) + 1 FROM t_loss")
    rows = cluster.sql(old, "SELECT count(*) FROM t_loss")[0][0]
    old_tl = current_timeline(cluster, old)
    others = [n for n in cluster.nodes if n != old]
    cluster.nodes[old].kill9(postmaster=True)
    t0 = time.monotonic()
    new = cluster.wait_leader(TTL + 10, exclude=(old,))
    h.wait_until(lambda: cluster.writable(new), TTL + 5, interval=0.05, msg=f"{new} accepting writes")
    assert time.monotonic() - t0 < TTL + 5
    assert new in others
    third = [n for n in others if n != new][0]
    cluster.wait_streaming(new, [third], 60)
    assert cluster.sql(new, "SELECT count(*) FROM t_loss")[0][0] == rows
    assert current_timeline(cluster, new) == old_tl + 1
    # /history records the switch: its last entry is the timeline the new primary left, with its name
    # (the DCS may hold an older history first, or none at all on timeline 1)
    hist = cluster.wait_value("history", lambda v: isinstance(v, list) and v and isinstance(v[-1], list)
                              and len(v[-1]) == 5 and v[-1][0] == old_tl, 30,
                              msg=f"/history to record the switch from timeline {old_tl}")
    assert hist[-1][4] == new
    # the old primary comes back as a replica of the new one
    cluster.nodes[old].start()
    cluster.wait_streaming(new, [third, old], 120)
    assert not cluster.is_primary(old)
    assert "pg_rewind" in cluster.nodes[old].log_text()
    cluster.sql(new, "INSERT INTO t_loss SELECT max(id) + 1 FROM t_loss")
    h.wait_until(lambda: cluster.sql(old, "SELECT count(*) FROM t_loss")[0][0] == rows + 1, 30)


def test_sigterm_of_the_primary_agent_hands_over_without_waiting_for_ttl(cluster):
    old = cluster.wait_healthy()
    t0 = time.monotonic()
    assert cluster.nodes[old].stop(timeout=60) == 0
    new = cluster.wait_leader(TTL, exclude=(old,))
    h.wait_until(lambda: cluster.writable(new), 20, interval=0.05)
    took = time.monotonic() - t0
    assert took < TTL / 2, f"handover took {took:.1f}s; it must not wait for the lease to expire"
    assert cluster.nodes[old].postmaster_pid() is None, "the old primary's PostgreSQL must be stopped"
    cluster.nodes[old].start()
    others = [n for n in cluster.nodes if n != new]
    cluster.wait_streaming(new, others, 120)


def test_losing_every_etcd_member_demotes_the_primary_and_recovers(cluster):
    leader = cluster.wait_healthy()
    for i in range(3):
        cluster.etcd.pause_member(i)
    try:
        t0 = time.monotonic()
        h.wait_until(lambda: not cluster.writable(leader), TTL, interval=0.2,
                     msg=f"{leader} to stop accepting writes without etcd")
        assert time.monotonic() - t0 < TTL
        # nobody else became a primary meanwhile
        assert cluster.primaries() == []
    finally:
        for i in range(3):
            cluster.etcd.resume_member(i)
    new = cluster.wait_leader(TTL + 30)
    h.wait_until(lambda: cluster.primaries() == [new], 60, msg="exactly one primary after etcd returned")
    cluster.wait_streaming(new, [n for n in cluster.nodes if n != new], 120)
    assert cluster.primaries() == [new]


def test_a_frozen_primary_agent_demotes_when_it_wakes_up(cluster):
    """SIGSTOP of the primary's agent (its PostgreSQL keeps running): a replica takes over after ttl; when
    the old agent resumes it sees, without acting on the stale view, that it lost the lock and demotes."""
    old = cluster.wait_healthy()
    cluster.nodes[old].pause()
    try:
        new = cluster.wait_leader(TTL + 15, exclude=(old,))
        h.wait_until(lambda: cluster.writable(new), 30, interval=0.1)
    finally:
        cluster.nodes[old].resume()
    h.wait_until(lambda: not cluster.is_primary(old), 30, msg=f"{old} to demote after waking up")
    h.wait_until(lambda: cluster.primaries() == [new], 30)
    cluster.wait_streaming(new, [n for n in cluster.nodes if n != new], 120)
    assert "woke up late" in cluster.nodes[old].log_text() or "delayed" in cluster.nodes[old].log_text()


def test_a_hung_primary_postgres_is_fenced_and_a_replica_takes_over(cluster):
    """Every process of the primary's PostgreSQL frozen (a hung server): its status query times out, the
    agent keeps the lock for ttl, then fences it (immediate stop, then SIGKILL) and releases the lock."""
    import signal as sig
    old = cluster.wait_healthy()
    pm = cluster.nodes[old].postmaster_pid()
    tree = [pm] + h.descendants(pm)
    for p in tree:
        try:
            os.kill(p, sig.SIGSTOP)
        except ProcessLookupError:
            pass
    try:
        new = cluster.wait_leader(TTL + 40, exclude=(old,))
        h.wait_until(lambda: cluster.writable(new), 30, interval=0.1)
        assert "has not answered" in cluster.nodes[old].log_text()
    finally:
        for p in tree:
            try:
                os.kill(p, sig.SIGCONT)
            except ProcessLookupError:
                pass
    cluster.wait_streaming(new, [n for n in cluster.nodes if n != new], 180)
    assert cluster.primaries() == [new]


def _basebackups(data_dir):
    """pids of the pg_basebackup processes (and their WAL streamers) writing into data_dir."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"pg_basebackup") and f"--pgdata={data_dir}".encode() in argv:
            found.append(int(d))
    return found


def test_sigterm_during_a_clone_stops_pg_basebackup_at_once(cluster, run_dir):
    """A replica cloning at 32 kB/s (pg_basebackup's lowest rate: many minutes for a fresh cluster) gets
    SIGTERM: the agent stops pg_basebackup's process group instead of waiting for the clone, exits
    within seconds, and leaves no half-cloned data directory that a later start could take as valid."""
    c = HaCluster(run_dir.subdir("clonestop"), n=2, scope="clonestop", etcd=cluster.etcd,
                  node_overrides={"node2": {"postgresql": {"basebackup": {"max-rate": "32k"}}}})
    try:
        c.start(["node1"])
        c.wait_leader(60)
        c.start(["node2"])
        node = c.nodes["node2"]
        h.wait_until(lambda: _basebackups(node.data_dir), 60, msg="pg_basebackup to start on node2")
        time.sleep(2)  # well into the copy
        assert _basebackups(node.data_dir), "the clone finished too early for this test"
        t0 = time.monotonic()
        assert node.stop(timeout=30) == 0
        took = time.monotonic() - t0
        assert took < 8, f"the agent took {took:.1f}s to stop during a clone"
        h.wait_until(lambda: not _basebackups(node.data_dir), 5, msg="pg_basebackup to be gone")
        assert not os.path.exists(os.path.join(node.data_dir, "PG_VERSION")), \
            "a half-cloned data directory was left behind"
        assert "stopping the clone task" in node.log_text()
        # the next start clones again
        node.start()
        h.wait_until(lambda: _basebackups(node.data_dir), 60, msg="pg_basebackup to start again on node2")
    finally:
        c.destroy(keep=False)
