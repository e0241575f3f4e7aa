"""Standby clusters (spec §4.2 B3, §4.4 U1/L2): a 1-node primary cluster A and a 2-node standby cluster B (its own
scope in the same etcd) bootstrapped from A through standby_cluster host/port.

The scenarios run in order on one module-scoped pair of clusters (each needs the state the previous one left):
  1. B's lock holder is the standby leader: in recovery, streaming from A, member key role standby_leader,
     /standby-leader 200 and /primary 503; B's replica streams from B's leader (cascade); a row written on A
     appears on both B nodes; /initialize of B is A's system identifier.
  2. B's standby leader dies (agent and postmaster killed): B's replica becomes the new standby leader, re-pointed
     at A and not promoted; the old node comes back as its replica.
  3. `pgha-ctl switchover` inside B: the standby leader hands the key over without a restart, the candidate
     becomes the standby leader following A, the old one its replica.
  4. the remote changes to a copy of A promoted on its own (a diverged timeline): B's members are rewound from it.
  5. `pgha-ctl demote-cluster` on A is refused (no --host/--restore-command), then `pgha-ctl promote-cluster` on B:
     B's leader promotes (timeline 2) and accepts writes, B's other node streams from it.
  6. `pgha-ctl demote-cluster` on B (restore_command only), with B's replica's WAL receiver frozen so that the fast
     stop takes longer than ttl: the leader key keeps its lease and create_revision all along (renewed while the
     stop is watched), nobody else takes it; B's primary then starts as the standby leader; its replica keeps
     streaming from it.
Timings: ttl 10, loop_wait 2, retry_timeout 3 (pgha.allow_short_ttl)."""

import json
import os
import signal
import threading
import time

import pytest

import pghatest as h
from hacluster import HaCluster

pytestmark = pytest.mark.needs_root

DCS = {"ttl": 10, "loop_wait": 2, "retry_timeout": 3}


@pytest.fixture(scope="module")
def clusters(request, run_dir, _etcd_session):
    # A keeps a permanent physical slot for B's standby leader (standby_cluster.primary_slot_name)
    a = HaCluster(run_dir.subdir("standby", "a"), n=1, scope="stbyA", etcd=_etcd_session,
                  bootstrap={"dcs": dict(DCS, slots={"dr": {"type": "physical"}})}, pgha={"allow_short_ttl": True})
    b = None
    try:
        a.start()
        a.wait_healthy(60)
        a_port = a.nodes["node1"].pg_port
        remote = {"host": "127.0.0.1", "port": a_port, "primary_slot_name": "dr"}
        b = HaCluster(run_dir.subdir("standby", "b"), n=2, scope="stbyB", etcd=_etcd_session,
                      bootstrap={"dcs": dict(DCS, standby_cluster=remote, postgresql={"use_pg_rewind": True})},
                      pgha={"allow_short_ttl": True})
        b.start(["node1"])
        b.wait_leader(90)
        b.start(["node2"])
        yield a, b
    finally:
        keep = request.session.testsfailed > 0 and h.keep_requested()
        for c in (b, a):
            if c is not None:
                c.destroy(keep=keep)
                _etcd_session.delete_prefix(f"/service/{c.scope}/")


def in_recovery(c, name):
    try:
        return c.sql(name, "SELECT pg_is_in_recovery()")[0][0]
    except Exception:  # noqa: BLE001 - not running yet
        return None


def member_role(c, name):
    m = c.member(name)
    return m and m.get("role")


def remote_slot_user(a):
    """The application_name of the walsender using A's slot dr (None: the slot is not in use)."""
    rows = a.sql("node1", "SELECT r.application_name FROM pg_replication_slots s JOIN pg_stat_replication r "
                          "ON r.pid = s.active_pid WHERE s.slot_name = 'dr'")
    return rows[0][0] if rows else None


def wait_standby_leader(b, exclude=(), timeout=60):
    leader = b.wait_leader(timeout, exclude=exclude)
    h.wait_until(lambda: member_role(b, leader) == "standby_leader", timeout,
                 msg=f"{leader}'s member key to say role standby_leader")
    return leader


def wait_row(c, name, value, timeout=60):
    def seen():
        try:
            return c.sql(name, "SELECT 1 FROM standby_probe WHERE v = %s", (value,)) == [(1,)]
        except Exception:  # noqa: BLE001 - the table may not be there yet
            return False
    h.wait_until(seen, timeout, msg=f"row {value} on {c.scope}/{name}")


def test_standby_leader_follows_remote_primary(clusters):
    a, b = clusters
    leader = wait_standby_leader(b)
    replica = next(n for n in b.nodes if n != leader)
    assert in_recovery(b, leader) is True
    # /initialize of B: the system identifier of the clone, i.e. A's
    a_sysid = a.sql("node1", "SELECT system_identifier::text FROM pg_control_system()")[0][0]
    assert b.etcd.get(b.key("initialize")) == a_sysid
    # the standby leader streams from A under its own name, through A's slot dr (standby_cluster.primary_slot_name)
    a.wait_streaming("node1", [leader], 60)
    h.wait_until(lambda: remote_slot_user(a) == leader, 30, msg=f"A's slot dr to be used by {leader}")
    # B's replica cascades from B's leader
    b.wait_streaming(leader, [replica], 90)
    # data written on A reaches both B nodes
    a.sql("node1", "CREATE TABLE IF NOT EXISTS standby_probe (v int)")
    a.sql("node1", "INSERT INTO standby_probe VALUES (1)")
    wait_row(b, leader, 1)
    wait_row(b, replica, 1)
    # health checks
    ln, rn = b.nodes[leader], b.nodes[replica]
    h.wait_until(lambda: ln.rest("GET", "/standby-leader").status_code == 200, 30, msg="/standby-leader 200")
    assert ln.rest("GET", "/primary").status_code == 503
    assert ln.rest("GET", "/leader").status_code == 200
    assert rn.rest("GET", "/standby-leader").status_code == 503
    assert rn.rest("GET", "/replica").status_code == 200
    assert ln.rest("GET", "/patroni").json()["role"] == "standby_leader"
    h.wait_until(lambda: member_role(b, replica) == "replica", 30, msg=f"{replica}'s member key to say role replica")
    # /status: the standby leader publishes its WAL position
    st = b.wait_value("status", lambda v: isinstance(v, dict) and v.get("optime", 0) > 0, 30)
    assert st["optime"] > 0
    # no synchronous replication, no promotion: still exactly one primary across both clusters
    assert b.primaries() == []


def test_standby_leader_failover_inside_standby_cluster(clusters):
    a, b = clusters
    old = wait_standby_leader(b)
    new = next(n for n in b.nodes if n != old)
    b.wait_streaming(old, [new], 90)
    b.nodes[old].kill9(postmaster=True)
    leader = wait_standby_leader(b, exclude=(old,), timeout=60)
    assert leader == new
    assert in_recovery(b, new) is True, "the new standby leader must not be promoted"
    assert "promoted self to a standby leader by acquiring session lock" in b.nodes[new].log_text()
    # re-pointed at A: it streams from A and gets A's new rows
    a.wait_streaming("node1", [new], 60)
    a.sql("node1", "INSERT INTO standby_probe VALUES (2)")
    wait_row(b, new, 2)
    assert b.primaries() == []
    # the old standby leader comes back as a replica of the new one
    b.nodes[old].start()
    b.wait_streaming(new, [old], 120)
    wait_row(b, old, 2)
    h.wait_until(lambda: member_role(b, old) == "replica", 30, msg=f"{old}'s member key to say role replica")


def test_switchover_inside_standby_cluster(clusters):
    """`pgha-ctl switchover` inside the standby cluster (Patroni supports it): the standby leader hands the key to
    the candidate without restarting PostgreSQL (Patroni restarts it: a standby has nothing to flush), the
    candidate becomes the standby leader following A, the old one streams from it; nobody is promoted."""
    a, b = clusters
    old = wait_standby_leader(b)
    new = next(n for n in b.nodes if n != old)
    b.wait_streaming(old, [new], 90)
    started = b.sql(old, "SELECT pg_postmaster_start_time()::text")[0][0]
    node = b.nodes[new]
    r = node.ctl("-c", node.config_path, "switchover", b.scope, "--leader", old, "--candidate", new, "--force",
                 timeout=90)
    assert r.returncode == 0 and f'Successfully switched over to "{new}"' in r.stdout, r.stdout
    assert wait_standby_leader(b, exclude=(old,), timeout=30) == new
    assert in_recovery(b, new) is True, "the new standby leader must not be promoted"
    assert "switchover: demoting myself" in b.nodes[old].log_text()
    # the failover key is cleared by the new standby leader
    b.wait_value("failover", lambda v: not v, 30)
    # the old standby leader kept running (no restart), now a replica of the new one; the new one streams from A
    # through the slot dr, which the old one let go of at the handover
    b.wait_streaming(new, [old], 90)
    a.wait_streaming("node1", [new], 60)
    h.wait_until(lambda: remote_slot_user(a) == new, 30, msg=f"A's slot dr to be used by {new}")
    assert "letting go of the remote's replication slot dr" in b.nodes[old].log_text()
    assert b.sql(old, "SELECT pg_postmaster_start_time()::text")[0][0] == started
    a.sql("node1", "INSERT INTO standby_probe VALUES (10)")
    wait_row(b, new, 10)
    wait_row(b, old, 10)
    h.wait_until(lambda: member_role(b, old) == "replica", 30, msg=f"{old}'s member key to say role replica")
    assert b.nodes[old].rest("GET", "/standby-leader").status_code == 503
    assert node.rest("GET", "/standby-leader").status_code == 200
    assert b.primaries() == []


def test_standby_cluster_rewound_from_a_diverged_remote(clusters, run_dir):
    """Patroni's divergence repair in a standby cluster: a stopped member's WAL is checked against the remote
    primary (its timeline and history over the replication protocol) and rewound from it. The new remote A2 is a
    copy of A promoted on its own (timeline 2, forked at P); B replayed A's WAL past P, so after the switch to A2
    (PATCH /config standby_cluster.port) its standby leader cannot follow (PostgreSQL: "forked off ... before current
    recovery point"). B's agents are restarted (clean stops): each member is rewound from A2 before it starts; B then
    follows A2 and has A2's rows, not A's after P."""
    a, b = clusters
    leader = wait_standby_leader(b)
    other = next(n for n in b.nodes if n != leader)
    b.wait_streaming(leader, [other], 90)
    a_port = a.nodes["node1"].pg_port
    a2 = h.PgNode("a2", run_dir.subdir("standby", "a2"), superuser="postgres", password="pghatest-super",
                  auth="md5")
    try:
        a2._run([a2.bin("pg_basebackup"), "-D", a2.data_dir, "-X", "stream", "-c", "fast", "-d",
                 f"host=127.0.0.1 port={a_port} user=replicator password=pghatest-repl"])
        open(os.path.join(a2.data_dir, "standby.signal"), "w").close()
        os.chown(os.path.join(a2.data_dir, "standby.signal"), *a2._pg_ids())
        a2.start()
        a2._run([a2.bin("pg_ctl"), "promote", "-w", "-D", a2.data_dir])
        h.wait_until(lambda: a2.sql_value("SELECT NOT pg_is_in_recovery()"), 30, msg="A2 promoted")
        assert a2.sql_value("SELECT timeline_id FROM pg_control_checkpoint()") >= 1
        # A goes on past the fork point; B replays it
        a.sql("node1", "INSERT INTO standby_probe VALUES (20)")
        wait_row(b, leader, 20)
        wait_row(b, other, 20)
        a2.sql("INSERT INTO standby_probe VALUES (21)")
        # B now follows A2 (its slot dr does not exist there)
        r = b.nodes[leader].rest("PATCH", "/config", {"standby_cluster": {"port": a2.port, "primary_slot_name": None}},
                                 timeout=30)
        assert r.status_code == 200, r.text
        # clean stops (pg_control's minimum recovery point is where replay ended), the replica first: the leader's
        # agent then releases the key with nobody left to take it
        for n in (other, leader):
            b.nodes[n].stop()
        assert b.leader() is None
        b.start([leader])
        h.wait_until(lambda: "pg_rewind finished" in b.nodes[leader].log_text(), 90,
                     msg=f"{leader} to be rewound from A2")
        log = b.nodes[leader].log_text()
        assert f"running pg_rewind from 127.0.0.1:{a2.port}" in log, log[-3000:]
        assert "diverged from the remote primary's timeline 2" in log
        assert wait_standby_leader(b, timeout=60) == leader
        b.start([other])
        h.wait_until(lambda: "pg_rewind finished" in b.nodes[other].log_text(), 90,
                     msg=f"{other} to be rewound from A2")
        b.wait_streaming(leader, [other], 90)
        # B follows A2: A2's rows arrive, A's row past the fork point is gone; nobody was promoted
        a2.sql("INSERT INTO standby_probe VALUES (22)")
        for n in (leader, other):
            wait_row(b, n, 22)
            assert b.sql(n, "SELECT count(*) FROM standby_probe WHERE v = 20")[0][0] == 0
            assert b.sql(n, "SELECT count(*) FROM standby_probe WHERE v = 21")[0][0] == 1
        assert b.primaries() == []
    finally:
        a2.destroy()


def test_promote_cluster(clusters):
    a, b = clusters
    leader = wait_standby_leader(b)
    other = next(n for n in b.nodes if n != leader)
    b.wait_streaming(leader, [other], 120)
    node = b.nodes[leader]
    # demote-cluster needs a remote: refused (exit 1, patronictl's ClickException), nothing changed
    r = a.nodes["node1"].ctl("-c", a.nodes["node1"].config_path, "demote-cluster", "--force")
    assert r.returncode == 1 and "At least --host, --port or --restore-command should be specified" in r.stdout, \
        r.stdout
    # promote-cluster on A (not a standby cluster): already in the required state
    r = a.nodes["node1"].ctl("-c", a.nodes["node1"].config_path, "promote-cluster", "--force")
    assert r.returncode == 1 and "Cluster is already in the required state" in r.stdout, r.stdout
    r = node.ctl("-c", node.config_path, "promote-cluster", "--force", timeout=90)
    assert r.returncode == 0, r.stdout
    assert "cluster is successfully promoted" in r.stdout, r.stdout
    cfg = json.loads(b.etcd.get(b.key("config")))
    assert "standby_cluster" not in cfg
    h.wait_until(lambda: b.is_primary(leader), 30, msg=f"{leader} promoted")
    assert b.leader() == leader
    h.wait_until(lambda: member_role(b, leader) == "primary", 30, msg=f"{leader}'s member key to say role primary")
    b.sql(leader, "INSERT INTO standby_probe VALUES (3)")
    b.wait_streaming(leader, [other], 90)
    wait_row(b, other, 3)
    assert sorted(b.primaries()) == [leader]
    assert node.rest("GET", "/primary").status_code == 200
    assert node.rest("GET", "/standby-leader").status_code == 503
    # A is untouched: its row 3 does not exist there, and it is still a primary
    assert a.is_primary("node1")
    assert a.sql("node1", "SELECT count(*) FROM standby_probe WHERE v = 3")[0][0] == 0


def test_demote_cluster(clusters):
    """After promote-cluster: `pgha-ctl demote-cluster` makes B a standby cluster again. B's primary is demoted
    cleanly (fast stop, restart in recovery) and keeps the leader key as the standby leader; its replica keeps
    following it. The remote is an archive whose restore_command finds nothing (`false`): B's timeline 2 cannot
    stream from A's timeline 1, and the demotion path is what is tested here."""
    a, b = clusters
    leader = b.wait_leader(30)
    other = next(n for n in b.nodes if n != leader)
    h.wait_until(lambda: b.is_primary(leader), 60, msg=f"{leader} to be B's primary (after promote-cluster)")
    b.wait_streaming(leader, [other], 90)
    node = b.nodes[leader]
    # a slow stop: the replica's WAL receiver frozen, the primary's walsender waits for it at shutdown (up to
    # wal_sender_timeout, 60 s). The stop is watched across cycles: the lease is renewed all along (same key,
    # same lease), nobody else takes the key, for longer than ttl
    key_before = b.etcd.get_kv(b.key("leader"))
    assert key_before and key_before["value"] == leader, key_before
    wr = b.sql(other, "SELECT pid FROM pg_stat_wal_receiver")[0][0]
    os.kill(wr, signal.SIGSTOP)
    result = {}
    ctl = threading.Thread(target=lambda: result.update(r=node.ctl("-c", node.config_path, "demote-cluster",
                                                                 "--restore-command", "false", "--force",
                                                                 timeout=120)))
    try:
        ctl.start()
        h.wait_until(lambda: "demote-cluster" in node.log_text() and "stopping PostgreSQL (fast)" in node.log_text(),
                     30, msg="the demote-cluster stop to begin")
        until = time.monotonic() + DCS["ttl"] + 6
        while time.monotonic() < until:
            kv = b.etcd.get_kv(b.key("leader"))
            assert kv and kv["value"] == leader, kv
            assert kv["create_revision"] == key_before["create_revision"], (kv, key_before)
            assert kv.get("lease") == key_before.get("lease"), (kv, key_before)
            assert not b.is_primary(other)
            time.sleep(0.5)
        assert "demote-cluster in progress" in node.log_text()
    finally:
        os.kill(wr, signal.SIGCONT)
        ctl.join(150)
    r = result["r"]
    # pgha-ctl waits a bounded time (as patronictl) and the stop outlasted it: it says so (exit 5)
    assert r.returncode == 5 and "cluster is not demoted yet" in r.stdout, r.stdout
    cfg = json.loads(b.etcd.get(b.key("config")))
    assert cfg["standby_cluster"] == {"restore_command": "false"}
    assert b.leader() == leader, "the leader key must stay with the demoted primary"
    h.wait_until(lambda: in_recovery(b, leader) is True, 30, msg=f"{leader} in recovery")
    assert "demoting to a standby cluster" in node.log_text()
    assert b.primaries() == []
    h.wait_until(lambda: node.rest("GET", "/standby-leader").status_code == 200, 30, msg="/standby-leader 200")
    assert node.rest("GET", "/primary").status_code == 503
    b.wait_streaming(leader, [other], 90)
    # again: already a standby cluster
    r = node.ctl("-c", node.config_path, "demote-cluster", "--host", "127.0.0.1", "--force")
    assert r.returncode == 1 and "Cluster is already in the required state" in r.stdout, r.stdout
