"""Replication slots (spec §4.11, /status §1.2) against real etcd, PostgreSQL and pgha processes.

One 3-node cluster with ttl 10 (pgha.allow_short_ttl), loop_wait 2, member_slots_ttl 15, wal_level logical
and two permanent slots (one physical, one logical with test_decoding). In order: the slots of a healthy
cluster on every node and in /status; the logical slot copied to the replicas (hot_standby_feedback forced
on there) and advanced to what a consumer confirmed on the primary; kill -9 of the primary (agent and
postmaster): the new primary's copy returns exactly the changes the consumer had not confirmed, and the slots
of the new topology; the dead member's slot retained for member_slots_ttl, then dropped everywhere; the
member comes back and gets its slot again.

The logical slot is created on the primary right after the bootstrap, before the replicas are cloned: its
restart_lsn is in WAL that pg_basebackup never gives them (a base backup starts in a new segment). A copy
would need that WAL (PostgreSQL decodes from restart_lsn), so the replicas copy the slot only once a
consumer has moved it on the primary past WAL they have."""

import json
import os
import shutil
import subprocess
import time

import pytest

import pghatest as h
from hacluster import HaCluster

pytestmark = pytest.mark.needs_root

TTL = 10
MEMBER_SLOTS_TTL = 15
PERM_PHYS = "perm_phys"
PERM_LOGICAL = "perm_logical"
DCS = {
    "ttl": TTL,
    "loop_wait": 2,
    "retry_timeout": 3,
    "member_slots_ttl": MEMBER_SLOTS_TTL,
    "slots": {
        PERM_PHYS: {"type": "physical"},
        PERM_LOGICAL: {"type": "logical", "database": "postgres", "plugin": "test_decoding"},
    },
    "ignore_slots": [{"name": "unmanaged"}],
    "postgresql": {"parameters": {"wal_level": "logical"}},
}


class Slots:
    """The module's cluster and what the scenarios so far have done to it. The scenarios build on each
    other; when one fails, the next gets a new cluster and first redoes what it builds on (its
    predecessors' steps), so that one failure does not make the rest fail too."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.generation = 0
        self.cluster = None
        self.done = set()  # steps done on this cluster: "tables", "consumed"

    def build(self):
        self.generation += 1
        c = HaCluster(self.run_dir.subdir(f"slots-{self.generation}"), n=3, bootstrap={"dcs": DCS},
                      pgha={"allow_short_ttl": True})
        c.start(["node1"])
        c.wait_leader(60)
        c.start(["node2", "node3"])
        self.cluster = c
        self.done = set()


@pytest.fixture(scope="module")
def state(request, run_dir):
    s = Slots(run_dir)
    s.failed_before = request.session.testsfailed
    yield s
    if s.cluster:
        s.cluster.destroy(keep=request.session.testsfailed > 0 and h.keep_requested())


@pytest.fixture
def cluster(request, state):
    """The module's cluster, or a new one when a scenario of this session failed since it was handed out."""
    if state.cluster is None or request.session.testsfailed > state.failed_before:
        if state.cluster is not None:
            state.cluster.destroy(keep=h.keep_requested())
        state.build()
    state.failed_before = request.session.testsfailed
    return state.cluster


def slots(cluster, name):
    """{slot_name: slot_type} of a node's PostgreSQL (temporary slots left out)."""
    try:
        rows = cluster.sql(name, "SELECT slot_name, slot_type FROM pg_replication_slots WHERE NOT temporary")
    except Exception:  # noqa: BLE001 - the node may be restarting
        return None
    return {r[0]: r[1] for r in rows}


def status(cluster):
    v = cluster.etcd.get(cluster.key("status"))
    return json.loads(v) if v else {}


def expected_slots(node, nodes, primary, logical=True):
    """What a node should have: physical slots for every other member and both permanent slots (the
    replicas have a copy of the primary's logical slot, once it can be copied)."""
    want = {n: "physical" for n in nodes if n != node}
    want[PERM_PHYS] = "physical"
    if logical:
        want[PERM_LOGICAL] = "logical"
    return want


def without_logical(have):
    return {k: v for k, v in (have or {}).items() if k != PERM_LOGICAL} if have is not None else None


def copy_is_safe(cluster, node):
    """The last copy of the logical slot on node has been found safe to use after a failover (a readiness
    line logged after it, not one about an earlier copy)."""
    log = cluster.nodes[node].log_text()
    copied = log.rfind(f"Copied logical slot '{PERM_LOGICAL}' from the primary")
    return copied >= 0 and log.rfind(f"Logical slot {PERM_LOGICAL} is safe to be used after a failover") > copied


def wait_slots(cluster, node, want, timeout=60):
    return h.wait_until(lambda: slots(cluster, node) == want, timeout,
                        msg=f"slots on {node} to be {want} (have {slots(cluster, node)})")


def test_slots_on_every_node_and_in_status(cluster):
    leader = cluster.wait_healthy()
    assert leader == "node1"
    nodes = list(cluster.nodes)
    wait_slots(cluster, leader, expected_slots(leader, nodes, leader))
    for n in nodes:
        if n != leader:  # the logical slot: see the module's docstring and the next scenario
            want = expected_slots(n, nodes, leader, logical=False)
            h.wait_until(lambda n=n: without_logical(slots(cluster, n)) == want, 60,
                         msg=f"slots on {n} to be {want} (have {slots(cluster, n)})")
    # the replicas stream through their slots on the primary
    rows = cluster.sql(leader, "SELECT slot_name FROM pg_replication_slots WHERE active ORDER BY 1")
    assert [r[0] for r in rows] == ["node2", "node3"]
    # /status: optime, every managed slot of the leader with its position plus its own, retain_slots
    st = h.wait_until(lambda: (lambda s: s if set(s.get("slots", {})) == {"node1", "node2", "node3", PERM_PHYS,
                                                                             PERM_LOGICAL} else None)(status(cluster)),
                      30, msg="/status to publish the slots")
    assert list(st) == ["optime", "slots", "retain_slots"]
    assert st["retain_slots"] == ["node1", "node2", "node3"]
    assert all(isinstance(v, int) and v > 0 for v in st["slots"].values())
    # an unexpected slot is dropped everywhere, an ignored one is kept
    cluster.sql(leader, "SELECT pg_create_physical_replication_slot('stray', true)")
    cluster.sql(leader, "SELECT pg_create_physical_replication_slot('unmanaged', true)")
    cluster.sql("node2", "SELECT pg_create_physical_replication_slot('stray2', true)")
    h.wait_until(lambda: "stray" not in slots(cluster, leader) and "stray2" not in slots(cluster, "node2"), 20)
    assert "unmanaged" in slots(cluster, leader)
    cluster.sql(leader, "SELECT pg_drop_replication_slot('unmanaged')")
    assert "Trying to drop unknown replication slot 'stray'" in cluster.nodes[leader].log_text()
    # the replicas advance their copy of the leader's slot to the position the leader publishes
    cluster.sql(leader, "CREATE TABLE s (id int)")
    cluster.sql(leader, "INSERT INTO s SELECT generate_series(1, 1000)")
    cluster.sql(leader, "CHECKPOINT")
    optime = h.wait_until(lambda: (lambda s: s["slots"]["node1"] if s["slots"]["node1"] > st["slots"]["node1"]
                                   else None)(status(cluster)), 30)
    for n in ("node2", "node3"):
        h.wait_until(lambda n=n: cluster.sql(n, "SELECT pg_wal_lsn_diff(restart_lsn, '0/0')::bigint FROM "
                                                "pg_replication_slots WHERE slot_name = 'node1'")[0][0] >= optime,
                     30, msg=f"{n}'s slot node1 advanced to {optime}")
    # Debian's patronictl (Patroni 3.0) still reads the cluster with the 4.0 /status format
    if shutil.which("patronictl"):
        cfg = os.path.join(cluster.basedir, "patronictl.yml")
        with open(cfg, "w") as f:
            f.write(f"scope: {cluster.scope}\nnamespace: /service/\netcd3:\n  hosts: {','.join(cluster.etcd.endpoints)}\n")
        out = subprocess.run(["patronictl", "-c", cfg, "list", "-f", "json"], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert sorted(m["Member"] for m in json.loads(out.stdout)) == ["node1", "node2", "node3"]


def confirmed_flush(cluster, node):
    try:
        rows = cluster.sql(node, "SELECT pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::bigint FROM "
                                 "pg_replication_slots WHERE slot_name = %s", (PERM_LOGICAL,))
    except Exception:  # noqa: BLE001 - the node may be restarting to load a copied slot
        return None
    return rows[0][0] if rows else None


def test_logical_slot_is_copied_to_the_replicas_and_advanced(cluster, state):
    consume_and_copy(cluster, state)


def consume_and_copy(cluster, state):
    """Scenario 2's steps (scenario 3 redoes them on a new cluster): a consumer reads part of the
    changes on the primary; the replicas copy the logical slot and advance their copies to it."""
    leader = cluster.wait_healthy()
    replicas = [n for n in cluster.nodes if n != leader]
    for n in replicas:
        assert cluster.sql(n, "SHOW hot_standby_feedback")[0][0] == "on"
    # a consumer reads part of the changes on the primary: the rows 'a', not the rows 'b'
    cluster.sql(leader, "CREATE TABLE lt (id int PRIMARY KEY, v text)")
    cluster.sql(leader, "INSERT INTO lt SELECT g, 'a' FROM generate_series(1, 5) g")
    cluster.sql(leader, "CHECKPOINT")  # a running_xacts record: the slot's restart_lsn may move past it
    upto = cluster.sql(leader, "SELECT pg_current_wal_lsn()")[0][0]
    cluster.sql(leader, "INSERT INTO lt SELECT g, 'b' FROM generate_series(6, 10) g")
    got = [r[0] for r in cluster.sql(leader, "SELECT data FROM pg_logical_slot_get_changes(%s, %s, NULL)",
                                     (PERM_LOGICAL, upto))]
    assert sum("INSERT" in d and "'a'" in d for d in got) == 5 and not any("'b'" in d for d in got), got
    consumed = confirmed_flush(cluster, leader)
    # the leader publishes the position; the replicas copy the slot (now that its restart_lsn is in WAL
    # they have) or advance their copy to it (not further)
    h.wait_until(lambda: status(cluster).get("slots", {}).get(PERM_LOGICAL, 0) >= consumed, 30,
                 msg="/status to publish the consumed position")
    for n in replicas:
        wait_slots(cluster, n, expected_slots(n, list(cluster.nodes), leader))
        assert f"Copying logical slots ['{PERM_LOGICAL}'] from the primary {leader}" in cluster.nodes[n].log_text()
        h.wait_until(lambda n=n: confirmed_flush(cluster, n) == consumed, 60,
                     msg=f"{n}'s copy of {PERM_LOGICAL} advanced to {consumed} (at {confirmed_flush(cluster, n)})")
    # the copies are protected by the replicas' feedback (Patroni's readiness check): the copy that is
    # there now, not an earlier one
    for n in replicas:
        h.wait_until(lambda n=n: copy_is_safe(cluster, n), 40, msg=f"{n}'s copy to be safe to use")
    # and usable: the WAL from its restart_lsn is there (an advance that found it gone would have said so)
    for n in replicas:
        assert "has already been removed" not in cluster.nodes[n].log_text(), f"{n} lacks WAL of its copy"
    cluster.wait_streaming(leader, replicas, 60)
    for n in replicas:  # everything written so far has been replayed
        h.wait_until(lambda n=n: cluster.sql(n, "SELECT count(*) FROM lt")[0][0] == 10, 30)
    state.done.add("consumed")


def test_failover_moves_the_slots_and_the_dead_members_slot_expires(cluster, state):
    if "consumed" not in state.done:
        consume_and_copy(cluster, state)
    old = cluster.wait_healthy()
    nodes = list(cluster.nodes)
    cluster.nodes[old].kill9(postmaster=True)
    new = cluster.wait_leader(TTL + 15, exclude=(old,))
    h.wait_until(lambda: cluster.is_primary(new), 30)
    promoted = time.monotonic()
    third = [n for n in nodes if n not in (old, new)][0]
    # the consumer resumes on the new primary's copy of the logical slot: the rows it had not
    # confirmed are all there, the ones it had are not
    changes = [r[0] for r in cluster.sql(new, "SELECT data FROM pg_logical_slot_peek_changes(%s, NULL, NULL)",
                                         (PERM_LOGICAL,))]
    inserts = [d for d in changes if d.startswith("table public.lt: INSERT")]
    assert inserts == [f"table public.lt: INSERT: id[integer]:{i} v[text]:'b'" for i in range(6, 11)], changes
    assert "might be unsafe to use after promote" not in cluster.nodes[new].log_text()
    # the new primary: slots for the others (the dead one's retained), both permanent slots
    wait_slots(cluster, new, expected_slots(new, nodes, new), 30)
    wait_slots(cluster, third, expected_slots(third, nodes, new), 30)
    cluster.wait_streaming(new, [third], 60)
    rows = cluster.sql(new, "SELECT slot_name FROM pg_replication_slots WHERE active")
    assert [r[0] for r in rows] == [third]
    # the dead member's key expires with its lease; its slot stays in retain_slots for member_slots_ttl
    h.wait_until(lambda: cluster.member(old) is None, TTL + 10, msg=f"members/{old} to expire")
    assert old in status(cluster).get("retain_slots", [])
    assert old in slots(cluster, new) and old in slots(cluster, third)
    # ... then it is dropped on every node and no longer retained
    want_new = {k: v for k, v in expected_slots(new, nodes, new).items() if k != old}
    want_third = {k: v for k, v in expected_slots(third, nodes, new).items() if k != old}
    wait_slots(cluster, new, want_new, MEMBER_SLOTS_TTL + 20)
    wait_slots(cluster, third, want_third, 20)
    took = time.monotonic() - promoted
    assert took >= MEMBER_SLOTS_TTL - 1, f"the slot of {old} was dropped after {took:.1f}s"
    st = cluster.wait_value("status", lambda s: s and old not in s.get("retain_slots", [])
                            and old not in s.get("slots", {}), 10,
                            msg=f"/status to no longer retain nor publish the slot of {old}")
    assert sorted(st["retain_slots"]) == sorted([new, third])
    log = cluster.nodes[new].log_text()
    assert f"Replication slot '{old}' for absent cluster member is expired after {MEMBER_SLOTS_TTL} sec." in log
    assert f"Dropped replication slot '{old}'" in log
    # the member comes back (pg_rewind) and gets its slots again
    cluster.nodes[old].start()
    cluster.wait_streaming(new, [third, old], 120)
    for n in (new, third):
        wait_slots(cluster, n, expected_slots(n, nodes, new), 40)
    # the rejoined node may keep its old copy of the logical slot (pg_rewind leaves pg_replslot alone), or
    # copy it again
    want_old = {k: v for k, v in expected_slots(old, nodes, new).items() if k != PERM_LOGICAL}
    h.wait_until(lambda: {k: v for k, v in (slots(cluster, old) or {}).items() if k != PERM_LOGICAL} == want_old,
                 40, msg=f"slots on {old} to be {want_old} (have {slots(cluster, old)})")
    h.wait_until(lambda: sorted(status(cluster).get("retain_slots", [])) == sorted(nodes), 20)
