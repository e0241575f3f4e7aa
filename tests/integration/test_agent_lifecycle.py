"""The agent as a process: systemd notifications, configuration reload (SIGHUP), changes of the dynamic
configuration, pause mode, and a data directory that belongs to another cluster."""

import json
import os
import pwd
import signal
import socket
import time

import psycopg2
import pytest

import pghatest as h
from hacluster import HaCluster

pytestmark = pytest.mark.needs_root


_count = iter(range(1000))


@pytest.fixture
def short_base(run_dir):
    """A short directory: PostgreSQL's unix socket path must stay under 108 bytes."""
    return run_dir.subdir(f"lc{next(_count)}")


@pytest.fixture
def single(request, etcd_cluster, short_base, unique_name):
    """A one-node cluster with its own scope on the shared etcd cluster."""
    c = HaCluster(short_base, n=1, scope=unique_name, etcd=etcd_cluster)
    yield c
    c.destroy()


def test_systemd_notifications(single, short_base):
    sock_dir = os.path.join(short_base, "notify")
    h.make_dir(sock_dir, owner="postgres", mode=0o755)
    path = os.path.join(sock_dir, "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    os.chmod(path, 0o777)
    s.settimeout(0.5)
    msgs = []

    def drain(until, stop_when=None):
        while time.monotonic() < until:
            try:
                m = s.recv(4096).decode()
            except socket.timeout:
                continue
            msgs.append((time.monotonic(), m))
            if stop_when and stop_when(m):
                return

    node = single.nodes["node1"]
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}
    node.start(env=env)
    try:
        drain(time.monotonic() + 60, lambda m: "READY=1" in m)
        assert any("READY=1" in m for _, m in msgs), msgs
        t_ready = time.monotonic()
        drain(t_ready + 3.5)
        pings = [t for t, m in msgs if "WATCHDOG=1" in m and t >= t_ready]
        assert len(pings) >= 2, f"expected a WATCHDOG=1 ping every second (WatchdogSec=2), got {msgs}"
        node.reload()
        drain(time.monotonic() + 5, lambda m: "READY=1" in m and "RELOADING" not in m)
        assert any("RELOADING=1" in m and "MONOTONIC_USEC=" in m for _, m in msgs)
        node.stop(timeout=60)
        drain(time.monotonic() + 2)
        assert any("STOPPING=1" in m for _, m in msgs)
    finally:
        s.close()


def test_sighup_reload_applies_parameters_and_keeps_running_config_when_broken(single):
    node = single.nodes["node1"]
    node.start()
    single.wait_healthy()
    assert single.sql("node1", "SHOW work_mem")[0][0] == "4MB"
    node.config["postgresql"]["parameters"]["work_mem"] = "12MB"
    node.write_config()
    node.reload()
    h.wait_until(lambda: single.sql("node1", "SHOW work_mem")[0][0] == "12MB", 20,
                 msg="work_mem reloaded to 12MB")
    assert "configuration changed" in node.log_text()
    # a broken file: reported, the agent keeps running with what it had
    with open(node.config_path, "a") as f:
        f.write("\npostgresql: [this is: not valid\n")
    node.reload()
    node.wait_for_log("keeping the running configuration", 20)
    time.sleep(2)
    assert node.is_running()
    assert single.sql("node1", "SHOW work_mem")[0][0] == "12MB"
    assert single.leader() == "node1"


def test_dynamic_configuration_change_reloads_and_reports_pending_restart(single):
    node = single.nodes["node1"]
    node.start()
    single.wait_healthy()
    cfg = single.wait_value("config", lambda v: v and "parameters" in v.get("postgresql", {}), 30,
                            msg="/config (bootstrap.dcs)")
    cfg["postgresql"]["parameters"]["max_connections"] = 60         # needs a restart
    cfg["postgresql"]["parameters"]["log_min_duration_statement"] = 1234  # reloadable
    single.etcd.put(single.key("config"), json.dumps(cfg, separators=(",", ":")))
    h.wait_until(lambda: single.sql("node1", "SHOW log_min_duration_statement")[0][0] == "1234ms", 30)
    m = h.wait_until(lambda: (lambda m: m if m and m.get("pending_restart") else None)(single.member("node1")), 30,
                     msg="pending_restart in the member key")
    assert m["pending_restart_reason"]["max_connections"] == {"old_value": "50", "new_value": "60"}
    assert node.rest("GET", "/patroni").json().get("pending_restart") is True


def test_pause_mode_takes_no_automatic_action(single):
    node = single.nodes["node1"]
    node.start()
    single.wait_healthy()
    cfg = single.wait_value("config", lambda v: v and "postgresql" in v, 30, msg="/config (bootstrap.dcs)")
    cfg["pause"] = True
    single.etcd.put(single.key("config"), json.dumps(cfg, separators=(",", ":")))
    h.wait_until(lambda: single.member("node1").get("pause") is True, 20, msg="pause in the member key")
    pm = node.kill_postmaster()
    assert pm
    node.wait_for_log("PAUSE: postgres is not running", 20)
    time.sleep(5)
    assert node.postmaster_pid() is None, "paused: the agent must not start PostgreSQL on its own"
    # resume: the agent starts it again
    del cfg["pause"]
    single.etcd.put(single.key("config"), json.dumps(cfg, separators=(",", ":")))
    h.wait_until(lambda: single.writable("node1"), 60, msg="node1 writable after resume")


def test_data_directory_of_another_cluster_is_refused_and_kept(request, etcd_cluster, short_base, unique_name):
    tmp_base = short_base
    c = HaCluster(tmp_base, n=2, scope=unique_name, etcd=etcd_cluster)
    try:
        c.start(["node1"])
        c.wait_healthy()
        # node2's data directory comes from an unrelated initdb
        foreign = h.PgNode("foreign", tmp_base)
        foreign.initdb()
        n2 = c.nodes["node2"]
        os.makedirs(os.path.dirname(n2.data_dir), exist_ok=True)
        os.rename(foreign.data_dir, n2.data_dir)
        marker = os.path.join(n2.data_dir, "keep-me")
        with open(marker, "w") as f:
            f.write("precious")
        before = sorted(os.listdir(n2.data_dir))
        n2.start()
        rc = n2.wait(60)
        assert rc not in (0, None), "the agent must refuse a data directory of another cluster"
        assert "system ID mismatch" in n2.log_text()
        assert sorted(os.listdir(n2.data_dir)) == before
        with open(marker) as f:
            assert f.read() == "precious"
        assert c.leader() == "node1"
    finally:
        c.destroy()


def test_failed_bootstrap_is_cancelled_so_that_another_node_can_bootstrap(etcd_cluster, short_base, unique_name):
    c = HaCluster(short_base, n=2, scope=unique_name, etcd=etcd_cluster,
                  node_overrides={"node1": {"bootstrap": {"post_bootstrap": "/bin/false"}}})
    try:
        n1 = c.nodes["node1"]
        n1.start()
        rc = n1.wait(90)
        assert rc not in (0, None)
        assert "post_bootstrap" in n1.log_text() and "cancelling the bootstrap" in n1.log_text()
        assert c.etcd.get(c.key("initialize")) is None, "the initialize key must be released"
        assert c.leader() is None
        parent = os.path.dirname(n1.data_dir)
        assert any(d.startswith("data_") for d in os.listdir(parent)), "the failed data directory is kept aside"
        assert n1.postmaster_pid() is None
        c.start(["node2"])
        assert c.wait_leader(90) == "node2"
        h.wait_until(lambda: c.writable("node2"), 60)
    finally:
        c.destroy()
