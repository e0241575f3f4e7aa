"""Patroni 4.1 behaviour (issue 14) against real etcd, PostgreSQL 15 and pgha.

One 3-node cluster (ttl 10 with pgha.allow_short_ttl, loop_wait 2, synchronous_mode on,
max_slot_wal_keep_size 1MB and wal_keep_size 0) with the tags node2 `sync_priority: 0` and node3
`sync_priority: 2`; in order:

* sync_priority: node3 becomes the synchronous standby, node2 never does (its member key publishes the tag
  and nosync), not even when node3 goes away;
* a statement timeout of the status query (its 2 s statement_timeout, provoked by a lock on pg_authid that
  pg_stat_replication needs) keeps the cached role: the leader keeps the lock and its member key stays
  `running`/`primary`, with Patroni's "falling back to cached role" warning; it recovers when the lock goes;
* a member slot whose WAL is gone (wal_status `lost`: node2 stopped, WAL switched past
  max_slot_wal_keep_size, CHECKPOINT) is dropped and created again by the leader;
* `pgha --validate-config --print` (no cluster): the effective configuration, environment included;
* (Patroni 4.0's effective_configuration) /config lowers max_connections from 50 to 40 and node2 alone is
  restarted: pg_control records the primary's 50, so node2 starts in recovery with 50 (PostgreSQL refuses to
  run a standby with less), logs Patroni's line and reports the parameter as pending a restart (50 -> 40);
  back to 50, nothing is pending.

About 90 s.
"""

import os
import subprocess
import time

import pytest

import pghatest as h
from hacluster import HaCluster

pytestmark = pytest.mark.needs_root

DCS = {
    "ttl": 10,
    "loop_wait": 2,
    "retry_timeout": 3,
    "synchronous_mode": True,
    "postgresql": {"parameters": {"max_slot_wal_keep_size": "1MB", "wal_keep_size": "0"}},
}


@pytest.fixture(scope="module")
def cluster(request, run_dir):
    c = HaCluster(run_dir.subdir("patroni41"), n=3, bootstrap={"dcs": DCS}, pgha={"allow_short_ttl": True},
                  node_overrides={"node2": {"tags": {"sync_priority": 0}},
                                  "node3": {"tags": {"sync_priority": 2}}})
    c.start(["node1"])
    c.wait_leader(60)
    c.start(["node2", "node3"])
    yield c
    c.destroy(keep=request.session.testsfailed > 0 and h.keep_requested())


def test_sync_priority_picks_the_synchronous_standby(cluster):
    leader = cluster.wait_healthy()
    assert leader == "node1"
    cluster.wait_value("sync", lambda v: v and v.get("sync_standby") == "node3", 30,
                       msg="/sync to name node3 (sync_priority 2)")
    # the tags as published (Patroni 4.1 keeps nosync next to sync_priority)
    m2, m3 = cluster.member("node2"), cluster.member("node3")
    assert m2["tags"] == {"sync_priority": 0, "nosync": True}, m2
    assert m3["tags"] == {"sync_priority": 2}, m3
    ssn = cluster.sql("node1", "SHOW synchronous_standby_names")[0][0]
    assert ssn == "node3", ssn
    # node3 gone: node2 (sync_priority 0) is never chosen; /sync names nobody
    cluster.nodes["node3"].stop()
    cluster.wait_value("sync", lambda v: v is not None and not v.get("sync_standby"), 30,
                       msg="/sync without a standby once node3 is gone")
    time.sleep(4)  # two more cycles: still nobody
    v = cluster.value("sync")
    assert not v.get("sync_standby"), v
    cluster.nodes["node3"].start()
    cluster.wait_value("sync", lambda v: v and v.get("sync_standby") == "node3", 60,
                       msg="/sync to name node3 again")


def test_replica_starts_with_pg_control_settings(cluster):
    leader = cluster.wait_healthy()
    node = cluster.nodes["node2"]
    nodes = list(cluster.nodes)

    def reason(name):
        return ((cluster.member(name) or {}).get("pending_restart_reason") or {}).get("max_connections")

    try:
        h.http_json("PATCH", f"{cluster.nodes[leader].rest_url}/config",
                    {"postgresql": {"parameters": {"max_connections": 40}}}, expect_status=200)
        for name in nodes:
            h.wait_until(lambda: reason(name) == {"old_value": "50", "new_value": "40"}, 30,
                         msg=f"{name} to report max_connections 50 -> 40 pending a restart")
        mark = len(node.log_text())
        r = node.rest("POST", "/restart", {}, timeout=90)
        assert r.status_code == 200, (r.status_code, r.text)
        cluster.wait_streaming(leader, [n for n in nodes if n != leader], 60)
        assert cluster.sql("node2", "SHOW max_connections")[0][0] == "50"
        assert ("max_connections value in pg_controldata: 50, in the global configuration: 40. pg_controldata "
                "value will be used. Setting 'Pending restart' flag") in node.log_text()[mark:]
        h.wait_until(lambda: reason("node2") == {"old_value": "50", "new_value": "40"}, 30,
                     msg="node2 still pending a restart (50 -> 40) after it")
        assert cluster.member("node2")["pending_restart"] is True
    finally:
        h.http_json("PATCH", f"{cluster.nodes[leader].rest_url}/config",
                    {"postgresql": {"parameters": {"max_connections": 50}}}, expect_status=200)
    for name in nodes:
        h.wait_until(lambda: not (cluster.member(name) or {}).get("pending_restart"), 30,
                     msg=f"nothing pending on {name} with max_connections back at 50")


def test_status_query_timeout_keeps_the_cached_role(cluster):
    leader = cluster.wait_healthy()
    node = cluster.nodes[leader]
    before = len(node.log_text())
    conn = cluster.connect(leader)
    try:
        cur = conn.cursor()  # psycopg2: a transaction is open until the rollback
        cur.execute("LOCK TABLE pg_catalog.pg_authid IN ACCESS EXCLUSIVE MODE")
        h.wait_until(lambda: "falling back to cached role" in node.log_text()[before:], 20,
                     msg="the status query to time out")
        # three more cycles: still the leader, still a running primary in its member key
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            assert cluster.leader() == leader
            m = cluster.member(leader)
            assert m["state"] == "running" and m["role"] == "primary", m
            time.sleep(0.5)
        log = node.log_text()[before:]
        assert "(the status query timed out: cached role)" in log
        assert "demoting" not in log.lower()
        assert "SQLSTATE 57014" in log
    finally:
        conn.rollback()
        conn.close()
    mark = len(node.log_text())
    h.wait_until(lambda: "no action. I am (%s), the leader with the lock" % leader in node.log_text()[mark:], 20,
                 msg="a cycle with a fresh status")
    assert cluster.leader() == leader


def slot_state(cluster, node, slot):
    rows = cluster.sql(node, "SELECT wal_status, restart_lsn IS NULL FROM pg_replication_slots "
                             "WHERE slot_name = %s", (slot,))
    return rows[0] if rows else None


def test_lost_member_slot_is_recreated(cluster):
    leader = cluster.wait_healthy()
    assert leader == "node1"
    h.wait_until(lambda: (lambda s: s and s[0] in ("reserved", "extended") and not s[1])(
        slot_state(cluster, leader, "node2")), 30, msg="node2's slot on the leader in use")
    before = len(cluster.nodes[leader].log_text())
    cluster.nodes["node2"].stop()  # the agent stops its PostgreSQL: the slot is inactive, kept (member_slots_ttl)
    cluster.sql(leader, "CREATE TABLE IF NOT EXISTS lost_wal (x int)")
    seen = []

    def lost():
        for _ in range(3):
            cluster.sql(leader, "INSERT INTO lost_wal SELECT generate_series(1, 1000)")
            cluster.sql(leader, "SELECT pg_switch_wal()")
        cluster.sql(leader, "CHECKPOINT")
        log = cluster.nodes[leader].log_text()[before:]
        seen[:] = [slot_state(cluster, leader, "node2")]
        return "Dropping physical replication slot node2 because its wal_status is 'lost'" in log
    h.wait_until(lost, 60, interval=1, msg=f"node2's slot to be lost and dropped (last state {seen})")
    # created again at once, and not lost
    h.wait_until(lambda: (lambda s: s is not None and s[0] != "lost")(slot_state(cluster, leader, "node2")), 20,
                 msg="node2's slot created again")
    log = cluster.nodes[leader].log_text()[before:]
    assert "Created physical replication slot 'node2'" in log.split("because its wal_status is 'lost'", 1)[1]


def test_validate_config_print(pgha_node_factory, unique_name, tmp_base):
    pg_port, rest_port = h.allocate_ports(2)
    try:
        node = pgha_node_factory(h.make_node_config("node1", unique_name, ["127.0.0.1:2379"], pg_port, rest_port,
                                                    tmp_base, tags={"sync_priority": 3}))
        node.write_config()
        env = dict(os.environ, PATRONI_NAME="from-env", PATRONI_admin_PASSWORD="pw")
        cp = subprocess.run([node.bin, "--validate-config", "--print", "--ignore-listen-port", node.config_path],
                            capture_output=True, text=True, timeout=30, env=env)
        assert cp.returncode == 0, cp.stdout + cp.stderr
        out = cp.stdout
        assert "name: \"from-env\"" in out or "name: from-env" in out, out
        assert "tags.sync_priority: 3" in out, out
        assert "configuration is valid" in out
        secret = [ln for ln in out.splitlines() if ln.startswith("postgresql.authentication.superuser.password:")]
        assert secret and "********" in secret[0] and "pghatest-super" not in out, secret  # masked
        assert "bootstrap.users was removed in Patroni 4.0 and is ignored" in cp.stderr
        # without --print: the verdict only
        cp = subprocess.run([node.bin, "--validate-config", "--ignore-listen-port", node.config_path],
                            capture_output=True, text=True, timeout=30)
        assert cp.returncode == 0 and "tags.sync_priority" not in cp.stdout, cp.stdout
        # an invalid value: the error names it, nothing is printed
        bad = node.config_path + ".bad"
        with open(node.config_path) as f, open(bad, "w") as g:
            g.write(f.read() + "\nwatchdog:\n  mode: sometimes\n")
        cp = subprocess.run([node.bin, "--validate-config", "--print", bad], capture_output=True, text=True,
                            timeout=30)
        assert cp.returncode == 1, cp.stdout + cp.stderr
        assert "watchdog" in cp.stderr and "configuration is invalid" in cp.stderr
        assert "tags.sync_priority" not in cp.stdout
    finally:
        h.release_ports(pg_port, rest_port)
