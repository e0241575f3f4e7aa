"""A planned switchover keeps the lease (issue 11): the old primary runs a CHECKPOINT and stops PostgreSQL while it
renews its leader key, releases the key only once PostgreSQL stopped and the candidate has its shutdown
checkpoint, the candidate promotes once, and the old primary follows it without pg_rewind. The CHECKPOINT is held
up (the checkpointer process stopped) for longer than the ttl: the candidate must not promote meanwhile."""

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
    # released once PostgreSQL stopped, or when pg_control said "shut down" while the postmaster finished
    assert ("switchover: PostgreSQL stopped after" in text or "switchover: PostgreSQL shut down cleanly" in text) \
        and "Leader key released" in text, text[-3000:]
    assert "pg_rewind" not in text.split("switchover: running a CHECKPOINT", 1)[1], text[-3000:]
    # the old primary stopped before the key was released: the new primary has every row
    assert c.sql(other, "SELECT count(*) FROM t")[0][0] == 10000
    # it stepped down for good: no promotion of its own afterwards
    assert "promoted" not in ln.log_text().split("Leader key released", 1)[1]


@pytest.fixture
def cluster3(etcd_cluster, run_dir, unique_name):
    c = HaCluster(run_dir.subdir(unique_name[-8:]), n=3, scope=unique_name, etcd=etcd_cluster,
                  bootstrap={"dcs": {"ttl": TTL, "loop_wait": 2, "retry_timeout": 3}})
    yield c
    c.destroy()


def test_switchover_under_write_load_loses_nothing(cluster3):
    """A writer commits through the primary all along; in each synchronous mode a REST switchover hands over to
    a replica: every acknowledged commit is on the new primary, the old primary streams from it without
    pg_rewind."""
    from test_sync import Writer  # the zero-loss writer of the synchronous replication tests

    c = cluster3
    c.start()
    leader = c.wait_healthy(120)
    c.sql(leader, "CREATE TABLE zl (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
    port = lambda n: int(c.nodes[n].config["restapi"]["listen"].rsplit(":", 1)[1])  # noqa: E731
    for mode, strict in (("off", False), ("on", False), ("on", True), ("quorum", False)):
        patch = {"synchronous_mode": mode if mode != "on" else True, "synchronous_mode_strict": strict}
        r = h.http_request("PATCH", f"http://127.0.0.1:{port(leader)}/config", patch, timeout=60)
        assert r.status_code == 200, r.text
        if mode != "off":
            c.wait_value("sync", lambda v: v and v.get("leader") == leader and v.get("sync_standby"), 60)
        sync = c.value("sync") or {}
        standbys = (sync.get("sync_standby") or "").split(",") if mode != "off" else []
        others = [n for n in c.nodes if n != leader]
        candidate = next((n for n in others if n in standbys), others[0])
        c.wait_streaming(leader, others)
        w = Writer(c)
        w.start()
        try:
            h.wait_until(lambda: w.count(leader) >= 50, 60, msg="the writer to commit on the leader")
            before = c.nodes[leader].log_text()
            r = h.http_request("POST", f"http://127.0.0.1:{port(leader)}/switchover",
                               {"leader": leader, "candidate": candidate}, timeout=120)
            assert (r.status_code, r.text) == (200, f'Successfully switched over to "{candidate}"'), (mode, r.text)
            h.wait_until(lambda: w.count(candidate) >= 50, 60, msg="the writer to commit on the new primary")
        finally:
            w.stop()
            w.join(30)
        assert w.error is None, w.error
        ids = set(r[0] for r in c.sql(candidate, "SELECT id FROM zl"))
        lost = [i for i in w.ids() if i not in ids]
        assert not lost, f"{mode}: {len(lost)} acknowledged commits lost: {lost[:10]}"
        c.wait_streaming(candidate, [n for n in c.nodes if n != candidate], 90)
        after = c.nodes[leader].log_text()[len(before):]
        assert "pg_rewind" not in after and "diverged" not in after, (mode, after[-3000:])
        leader = candidate


def process_of(postmaster, name):
    for pid in h.descendants(postmaster):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if name.encode() in f.read():
                    return pid
        except OSError:
            continue
    return None


@pytest.fixture
def archiving_cluster(etcd_cluster, run_dir, unique_name):
    c = HaCluster(run_dir.subdir(unique_name[-8:]), n=2, scope=unique_name, etcd=etcd_cluster,
                  bootstrap={"dcs": {"ttl": TTL, "loop_wait": 2, "retry_timeout": 3,
                                     "postgresql": {"parameters": {"archive_mode": "on",
                                                                   "archive_command": "/bin/true"}}}})
    yield c
    c.destroy()


def test_agent_shutdown_releases_the_key_while_the_postmaster_finishes(archiving_cluster):
    """Spec §4.8 (Patroni's on_shutdown): SIGTERM of the primary's agent stops PostgreSQL; once pg_control says
    "shut down" and the replica has the shutdown checkpoint, the key is released although the postmaster still
    waits for its archiver (held here with SIGSTOP): the replica promotes without waiting for the postmaster."""
    c = archiving_cluster
    c.start()
    leader = c.wait_healthy(120)
    other = next(n for n in c.nodes if n != leader)
    ln = c.nodes[leader]
    c.wait_streaming(leader, [other])
    c.sql(leader, "CREATE TABLE t (i int)")
    c.sql(leader, "INSERT INTO t SELECT generate_series(1, 1000)")
    pm = ln.postmaster_pid()
    archiver = process_of(pm, "archiver")
    assert archiver, "no archiver process found"
    os.kill(archiver, signal.SIGSTOP)
    try:
        ln.proc.send_signal(signal.SIGTERM)
        # the replica takes the key and promotes while the old postmaster still runs
        h.wait_until(lambda: c.leader() == other, 30, msg="the replica to take the leader key")
        h.wait_until(lambda: c.writable(other), 30, interval=0.1, msg="the replica to be promoted")
        assert ln.postmaster_pid() == pm, "the old postmaster must still be finishing"
        text = ln.log_text()
        assert "a replica has its shutdown checkpoint; releasing the leader key" in text, text[-3000:]
    finally:
        os.kill(archiver, signal.SIGCONT)
    assert ln.wait(60) == 0
    assert ln.postmaster_pid() is None
    # nothing the old primary acknowledged is missing on the new one; the old primary rejoins without rewind
    assert c.sql(other, "SELECT count(*) FROM t")[0][0] == 1000
    ln.start()
    c.wait_streaming(other, [leader], 120)
    text = ln.log_text()
    assert "pg_rewind" not in text, text[text.find("received Terminated"):]
