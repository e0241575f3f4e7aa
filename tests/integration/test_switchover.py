"""A planned switchover keeps the lease (issue 11): the old primary runs a CHECKPOINT and stops PostgreSQL while it
renews its leader key, releases the key only once PostgreSQL stopped, the candidate promotes once, and the old
primary follows it without pg_rewind. The CHECKPOINT is held up (the checkpointer process stopped) for longer
than the ttl: Patroni 4.0 would let the lease expire meanwhile and the candidate promote while the old primary
still runs."""

import json
import os
import signal
import time

import pytest

import pghatest as h
from hacluster import HaCluster

pytestmark = pytest.mark.needs_root

TTL = 12


@pytest.fixture
def cluster(etcd_cluster, run_dir, unique_name):
    c = HaCluster(run_dir.subdir(unique_name[-8:]), n=2, scope=unique_name, etcd=etcd_cluster,
                  bootstrap={"dcs": {"ttl": TTL, "loop_wait": 2, "retry_timeout": 3}})
    yield c
    c.destroy()


def checkpointer_of(postmaster):
    for pid in h.descendants(postmaster):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"checkpointer" in f.read():
                    return pid
        except OSError:
            continue
    return None


def test_switchover_keeps_the_lease(cluster):
    c = cluster
    c.start()
    leader = c.wait_healthy(120)
    other = next(n for n in c.nodes if n != leader)
    ln, on = c.nodes[leader], c.nodes[other]
    c.wait_streaming(leader, [other])
    c.sql(leader, "CREATE TABLE t (i int)")
    c.sql(leader, "INSERT INTO t SELECT generate_series(1, 10000)")
    key_before = c.etcd.get_kv(c.key("leader"))

    # hold the CHECKPOINT up: the checkpointer stops until we let it go
    ckpt = checkpointer_of(ln.postmaster_pid())
    assert ckpt, "no checkpointer process found"
    os.kill(ckpt, signal.SIGSTOP)
    try:
        c.etcd.put(c.key("failover"), json.dumps({"leader": leader, "member": other}))
        h.wait_until(lambda: "switchover: running a CHECKPOINT" in ln.log_text(), 30, msg="the switchover to begin")
        # longer than the ttl: the leader key stays the old leader's (renewed), nobody promotes
        until = time.monotonic() + TTL + 6
        while time.monotonic() < until:
            kv = c.etcd.get_kv(c.key("leader"))
            assert kv and kv["value"] == leader and kv["create_revision"] == key_before["create_revision"], kv
            assert c.is_primary(leader) and not c.is_primary(other)
            time.sleep(0.5)
    finally:
        os.kill(ckpt, signal.SIGCONT)

    # released after the stop, the candidate promotes, the old primary follows it without pg_rewind
    h.wait_until(lambda: c.leader() == other, 60, msg="the candidate to take the leader key")
    assert c.wait_healthy(120) == other
    c.wait_streaming(other, [leader])
    text = ln.log_text()
    assert "switchover: PostgreSQL stopped after" in text and "Leader key released" in text, text[-3000:]
    assert "pg_rewind" not in text.split("switchover: running a CHECKPOINT", 1)[1], text[-3000:]
    # the old primary stopped before the key was released: the new primary has every row
    assert c.sql(other, "SELECT count(*) FROM t")[0][0] == 10000
    # it stepped down for good: no promotion of its own afterwards
    assert "promoted" not in ln.log_text().split("Leader key released", 1)[1]
