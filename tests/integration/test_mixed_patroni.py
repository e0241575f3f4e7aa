"""A mixed cluster, as in the middle of a migration (docs/migration.md): node1 runs Debian's Patroni 3.0.2, node2 and
node3 run pgha, all on one scope in etcd. Patroni bootstraps the cluster (the cluster being migrated), the pgha nodes
clone from it and stream; then it fails over both ways:

1. the Patroni primary is killed (agent and postmaster, SIGKILL): pgha's node2 takes the leader key and promotes;
   node3 (pgha) and, once restarted, node1 (Patroni, rewound) follow it;
2. the pgha primary is killed the same way: Patroni's node1 promotes; node3 (pgha) follows it.

node3 is tagged nofailover, so that each failover has exactly one candidate of the other kind. A row committed
before each failover (and replicated to the candidate) is on the new primary; both patronictl and pgha-ctl list
the mixed cluster. Timing: ttl 20 (Patroni's minimum), loop_wait 2, retry_timeout 3. About 1.5 minutes."""

import os
import json
import shutil
import threading
import time
import uuid

import pytest

import pghatest as h
from hacluster import HaCluster

pytestmark = pytest.mark.needs_root

PATRONI = "/usr/bin/patroni"
PATRONICTL = "/usr/bin/patronictl"
TTL = 20


class OrphanReaper(threading.Thread):
    """The harness makes the test process a child subreaper: a postmaster Patroni starts through pg_ctl becomes our
    child. Unreaped, its zombie keeps Patroni (psutil) and pgha believing it runs; init would reap it at once."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.1):
            h.proc.reap_orphans()


@pytest.fixture
def mixed(request, tmp_base, etcd_cluster):
    if not os.access(PATRONI, os.X_OK) or not shutil.which("patronictl"):
        pytest.fail("Debian's patroni is not installed (scripts/install-deps.sh installs it)")
    reaper = OrphanReaper()
    reaper.start()
    c = HaCluster(tmp_base, n=3, scope=f"mixed-{uuid.uuid4().hex[:6]}", etcd=etcd_cluster,
                  node_overrides={"node3": {"tags": {"nofailover": True}}})
    c.nodes["node1"].bin, c.nodes["node1"].ctl_bin = PATRONI, PATRONICTL
    try:
        yield c
    finally:
        c.destroy(keep=h.keep_requested() and request.node.rep_call.failed if hasattr(request.node, "rep_call")
                  else False)
        reaper.stop.set()
        reaper.join(5)


def agent_of(c, name):
    """What /patroni says the member runs: pgha's Server header names pgha, Patroni's names BaseHTTP."""
    return c.nodes[name].rest("GET", "/patroni").headers.get("Server", "")


def commit_and_replicate(c, primary, replica, value):
    c.sql(primary, "CREATE TABLE IF NOT EXISTS mixed (v text)")
    c.sql(primary, "INSERT INTO mixed VALUES (%s)", (value,))
    h.wait_until(lambda: c.sql(replica, "SELECT count(*) FROM mixed WHERE v = %s", (value,))[0][0] == 1, 30,
                 msg=f"{value!r} replicated to {replica}")


def failover(c, old, new):
    """SIGKILL old's agent and postmaster; new must take the key and run as the only primary. Returns seconds."""
    t = time.monotonic()
    c.nodes[old].kill9()
    assert c.wait_leader(TTL + 30, exclude=(old,)) == new
    h.wait_until(lambda: c.is_primary(new), 30, msg=f"{new} to run as the primary")
    return time.monotonic() - t


def test_mixed_patroni_and_pgha_fail_over_both_ways(mixed):
    c = mixed
    # the Patroni cluster being migrated: Patroni bootstraps, the pgha nodes clone from it
    c.start(["node1"])
    assert c.wait_leader(90) == "node1"
    c.start(["node2", "node3"])
    c.wait_healthy(120)
    assert "pgha" not in agent_of(c, "node1") and "pgha" in agent_of(c, "node2")
    # both tools see the mixed cluster: patronictl 3.0.2 (node1's) and pgha-ctl (node2's)
    for node in ("node1", "node2"):
        rows = json.loads(c.nodes[node].ctl("-c", c.nodes[node].config_path, "list", "-f", "json").stdout)
        roles = {r["Member"]: (r["Role"], r["State"]) for r in rows}
        assert roles["node1"] == ("Leader", "running"), (node, rows)
        assert {roles["node2"][0], roles["node3"][0]} == {"Replica"}, (node, rows)
    m1 = c.wait_value("members/node1", lambda m: m and m.get("role") in ("master", "primary"), 30,
                      msg="Patroni's member key")
    assert m1["state"] == "running"

    # 1. Patroni primary lost -> pgha promotes
    commit_and_replicate(c, "node1", "node2", "before-failover-1")
    took = failover(c, "node1", "node2")
    print(f"\nPatroni -> pgha failover: {took:.1f} s")
    assert c.sql("node2", "SELECT count(*) FROM mixed WHERE v = 'before-failover-1'")[0][0] == 1
    c.nodes["node1"].start()  # Patroni again: rewinds and follows pgha's primary
    c.wait_streaming("node2", ["node1", "node3"], 120)
    assert c.primaries() == ["node2"]

    # 2. pgha primary lost -> Patroni promotes (node3 is nofailover)
    commit_and_replicate(c, "node2", "node1", "before-failover-2")
    took = failover(c, "node2", "node1")
    print(f"pgha -> Patroni failover: {took:.1f} s")
    assert c.sql("node1", "SELECT count(*) FROM mixed WHERE v = 'before-failover-2'")[0][0] == 1
    c.wait_streaming("node1", ["node3"], 60)
    assert c.primaries() == ["node1"]
    c.wait_value("members/node3", lambda m: m and m.get("state") in ("running", "streaming")
                 and m.get("role") == "replica", 30, msg="node3 (pgha) a running replica of Patroni's primary")
