"""Smoke tests of the harness itself against real etcd 3.4 and PostgreSQL 15 (no pgha needed)."""

import json
import os
import pwd
import signal
import stat
import subprocess
import sys
import time

import psycopg2
import pytest
import requests

import pghatest as h

HERE = os.path.dirname(os.path.abspath(__file__))


def _gone(pid, starttime):
    """True if the process is gone: no /proc entry (not even a zombie), or the PID now belongs to
    another process. os.kill(pid, 0) must fail unless the PID was reused."""
    h.pid_alive(pid, starttime)  # reaps it if it is a zombie child of ours (orphans come to us)
    st = h.proc_stat(pid)
    if st is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return st["starttime"] != starttime


def _snapshot(pids):
    return [(p, h.proc_stat(p)["starttime"]) for p in pids if h.proc_stat(p)]


# ------------------------------------------------------------------------------------------------ etcd


def test_etcd_cluster_healthy_and_replicating(etcd_cluster, unique_name):
    c = etcd_cluster
    assert len(c.members) == 3
    assert len(set(c.endpoints)) == 3 and all(e.startswith("127.0.0.1:") for e in c.endpoints)
    for i in range(3):
        r = h.http_get(c.client_urls[i] + "/health", timeout=2)
        assert r.status_code == 200 and r.json()["health"] == "true", r.text
        assert c.member(i).proc.is_running()

    prefix = f"/pghatest/{unique_name}/"
    rev = c.put(prefix + "a", "value-ä", member=0)
    assert rev > 0
    # Linearizable read through another member sees the write at once.
    assert c.get(prefix + "a", member=2) == "value-ä"
    # Member 2's local (serializable) copy catches up too.
    h.wait_until(lambda: c.get(prefix + "a", member=2, serializable=True) == "value-ä", 5,
                 msg="serializable read on e2")
    c.put(prefix + "b", "2", member=1)
    c.put(prefix.rstrip("/") + "0", "outside the prefix", member=1)
    assert c.get_prefix(prefix, member=2) == {prefix + "a": "value-ä", prefix + "b": "2"}
    assert c.get(prefix + "missing") is None

    members = c.member_list(member=1)
    assert len(members) == 3
    assert sorted(m["name"] for m in members) == ["e0", "e1", "e2"]
    assert sorted(u for m in members for u in m["clientURLs"]) == sorted(c.client_urls)
    assert sorted(u for m in members for u in m["peerURLs"]) == sorted(c.peer_urls)

    assert c.delete_prefix(prefix) == 2
    assert c.get_prefix(prefix) == {}
    assert c.delete(prefix.rstrip("/") + "0") == 1


def test_etcd_stopped_member_and_rejoin(etcd_cluster, unique_name):
    c = etcd_cluster
    key = f"/pghatest/{unique_name}/k"
    victim = c.leader_index()  # the hard case: the others must elect a new leader
    assert victim is not None
    others = [i for i in range(3) if i != victim]
    c.stop_member(victim)
    assert not c.member(victim).proc.is_running()
    with pytest.raises(requests.exceptions.ConnectionError):
        h.http_get(c.client_urls[victim] + "/health", timeout=1)

    # Writes and reads keep working through the remaining two once they have a leader.
    h.wait_until(lambda: c.put(key, "written while down", member=others[0]) > 0, 15,
                 msg="a put through a surviving member")
    assert c.get(key, member=others[1]) == "written while down"
    assert c.leader_index() in others

    c.start_member(victim)  # waits for /health
    assert c.health(victim)
    # The restarted member replicates what it missed.
    h.wait_until(lambda: c.get(key, member=victim, serializable=True) == "written while down", 10,
                 msg="restarted member to catch up")
    c.put(key, "after rejoin", member=victim)
    assert c.get(key, member=others[0]) == "after rejoin"
    assert len(c.member_list(member=victim)) == 3
    c.delete_prefix(f"/pghatest/{unique_name}/")


def test_etcd_paused_member_times_out(etcd_cluster, unique_name):
    c = etcd_cluster
    key = f"/pghatest/{unique_name}/k"
    victim = c.leader_index()
    others = [i for i in range(3) if i != victim]
    c.pause_member(victim)
    try:
        assert c.member(victim).proc.is_running()  # stopped, not dead
        t0 = time.monotonic()
        with pytest.raises(requests.exceptions.Timeout):
            h.http_get(c.client_urls[victim] + "/health", timeout=1.0)
        elapsed = time.monotonic() - t0
        # A timeout, not a refusal: the socket is open but nobody answers.
        assert elapsed >= 0.9, elapsed
        with pytest.raises(requests.exceptions.Timeout):
            c.get(key, member=victim, timeout=0.5)

        h.wait_until(lambda: c.put(key, "while paused", member=others[0]) > 0, 15,
                     msg="a put through a live member while the leader is paused")
        assert c.get(key, member=others[1]) == "while paused"
    finally:
        c.resume_member(victim)
    h.wait_until(lambda: c.health(victim), 15, msg="resumed member to answer /health")
    h.wait_until(lambda: c.get(key, member=victim) == "while paused", 10, msg="resumed member to serve reads")
    c.delete_prefix(f"/pghatest/{unique_name}/")


def test_fresh_etcd_is_separate(fresh_etcd, etcd_cluster, unique_name):
    key = f"/pghatest/{unique_name}/only-in-fresh"
    fresh_etcd.put(key, "1")
    assert fresh_etcd.get(key) == "1"
    assert etcd_cluster.get(key) is None
    assert set(fresh_etcd.endpoints).isdisjoint(etcd_cluster.endpoints)
    assert fresh_etcd.token != etcd_cluster.token
    assert len(fresh_etcd.member_list()) == 3


# ------------------------------------------------------------------------------------------------ PostgreSQL


@pytest.mark.needs_root
def test_postgres_lifecycle_and_crash(pg_node_factory):
    pg = pg_node_factory("pg1")
    pg_uid = pwd.getpwnam("postgres").pw_uid

    st = os.stat(pg.data_dir)
    assert st.st_uid == pg_uid and stat.S_IMODE(st.st_mode) == 0o700
    pid = pg.postmaster_pid()
    assert pid is not None
    with open(f"/proc/{pid}/status") as f:
        uids = [line.split()[1:3] for line in f if line.startswith("Uid:")][0]
    assert uids == [str(pg_uid)] * 2, "postmaster must run as postgres"

    assert pg.sql("SELECT 1") == [(1,)]
    version = int(pg.sql_value("SHOW server_version_num"))
    assert 150000 <= version < 160000
    assert pg.sql_value("SHOW listen_addresses") == "127.0.0.1"
    assert pg.sql_value("SHOW unix_socket_directories") == pg.dir
    assert pg.sql_value("SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = 'postgres'") == "UTF8"
    assert pg.is_ready()

    pg.sql("CREATE TABLE t (id int PRIMARY KEY)")
    pg.sql("INSERT INTO t SELECT generate_series(1, 100)")
    backends = h.descendants(pid)
    assert backends, "a running postmaster has auxiliary processes"

    killed = pg.kill9_postmaster()  # waits for postmaster + backends to exit and the port to close
    assert killed == pid
    assert not h.pid_alive(pid)
    assert all(not h.pid_alive(b) for b in backends)
    assert pg.postmaster_pid() is None
    assert not pg.is_ready()
    assert not h.port_open(pg.port)
    with pytest.raises(psycopg2.OperationalError):
        pg.sql("SELECT 1")

    pg.start()
    assert pg.postmaster_pid() not in (None, pid)
    assert pg.sql_value("SELECT count(*) FROM t") == 100
    assert "not properly shut down" in pg.log_text() or "automatic recovery" in pg.log_text()

    new_pid = pg.postmaster_pid()
    pg.destroy()
    assert not h.pid_alive(new_pid)
    assert not os.path.exists(pg.dir)
    assert not h.port_open(pg.port)


# ------------------------------------------------------------------------------------------------ cleanup


@pytest.mark.needs_root
def test_teardown_leaves_no_processes(tmp_base):
    cluster = h.EtcdCluster(3, tmp_base)
    pg = h.PgNode("pgx", tmp_base)
    sh = None
    conn = None
    try:
        pg.initdb()
        pg.start()
        conn = pg.connect()  # one client backend more
        # A process tree where a grandchild left the process group/session (like a postmaster does).
        sh = h.Proc(["/bin/sh", "-c", "setsid sleep 300 & exec sleep 301"], os.path.join(tmp_base, "sh.log"),
                    label="sh tree").start()
        h.wait_until(lambda: len(h.descendants(sh.pid)) == 1, 5, msg="the setsid child")
        escaped = h.descendants(sh.pid)[0]
        assert h.proc_stat(escaped)["session"] != sh.pid

        pm = pg.postmaster_pid()
        pids = cluster.pids() + [pm] + h.descendants(pm) + [sh.pid, escaped]
        assert len(pids) >= 3 + 1 + 5 + 2
        recorded = _snapshot(pids)
        assert len(recorded) == len(pids)
        ports = [m.client_port for m in cluster.members] + [m.peer_port for m in cluster.members] + [pg.port]
    finally:
        if conn is not None:
            pass  # closed below, after the server is gone: the harness must not depend on it
        sh_rc = sh.stop() if sh is not None else None
        pg.destroy()
        cluster.destroy()
        if conn is not None:
            conn.close()

    assert sh_rc == -signal.SIGTERM
    left = [(p, s) for p, s in recorded if not _gone(p, s)]
    assert not left, f"still running after teardown: {[(p, h.proc_stat(p)) for p, _ in left]}"
    assert not os.path.exists(cluster.dir) and not os.path.exists(pg.dir)
    held = set(h.ports.default_allocator().held())
    assert not held.intersection(ports), "ports must be released"


def _run_cli_up(extra_args):
    """Start `python3 -m pghatest up ...` in its own session; return (Popen, parsed info line)."""
    p = subprocess.Popen([sys.executable, "-m", "pghatest", "up", *extra_args], cwd=HERE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    h.proc.register_pid(p.pid, "pghatest cli", p.pid)
    try:
        line = p.stdout.readline()
        if not line:
            p.wait(10)
            raise AssertionError(f"CLI printed nothing; exit {p.returncode}; stderr:\n{p.stderr.read()}")
        return p, json.loads(line)
    except BaseException:
        _cleanup_cli(p)
        raise


def _cleanup_cli(p):
    """If the CLI is still running (the test failed), kill it, then let reap_stale_runs() remove what it
    left (its detached postmaster, its run dir)."""
    if p.poll() is None:
        h.kill_tree(p.pid, pgid=p.pid)
        p.wait(10)
    h.reap_stale_runs()  # only acts on runs whose owner is dead
    h.proc.unregister_pid(p.pid)


def _cli_pids(info):
    pids = list(info["etcd"]["pids"])
    for n in info.get("pg", []):
        pids += [n["postmaster_pid"], *n["children"]]
    return pids


@pytest.mark.needs_root
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_interrupted_run_cleans_up(sig):
    """A harness process that gets SIGTERM/SIGINT tears down everything it started and its run dir."""
    p, info = _run_cli_up(["--etcd", "3", "--pg", "1"])
    try:
        recorded = _snapshot(_cli_pids(info))
        assert len(recorded) >= 3 + 1 + 5
        assert os.path.isdir(info["run_dir"])
        os.kill(p.pid, sig)
        p.wait(60)
        err = p.stderr.read()
        assert p.returncode == 0, err
        left = [(pid, s) for pid, s in recorded if not _gone(pid, s)]
        assert not left, f"still running: {left}\n{err}"
        assert not os.path.exists(info["run_dir"])
    finally:
        _cleanup_cli(p)


@pytest.mark.needs_root
def test_sigkilled_run_is_reaped_later():
    """After a SIGKILL of the harness process, its direct children die with it (parent-death signal) and
    a later run's reap_stale_runs() kills what is left (the detached postmaster) and removes its dir."""
    p, info = _run_cli_up(["--etcd", "1", "--pg", "1"])
    try:
        recorded = _snapshot(_cli_pids(info))
        pm = info["pg"][0]["postmaster_pid"]
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        etcd_pid = info["etcd"]["pids"][0]
        h.wait_until(lambda: not h.pid_alive(etcd_pid), 10, msg="etcd to die with its parent")
        assert h.pid_alive(pm), "the detached postmaster outlives a SIGKILLed harness"
        actions = h.reap_stale_runs()
        # (A concurrent run's reap_stale_runs() may have got there first.)
        assert any(str(pm) in a for a in actions) or not h.pid_alive(pm), actions
        h.wait_until(lambda: all(_gone(pid, s) for pid, s in recorded), 15, msg="leftovers to be killed")
        assert not os.path.exists(info["run_dir"])
    finally:
        _cleanup_cli(p)
