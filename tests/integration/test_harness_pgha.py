"""The PghaNode wrapper and make_node_config(): checked against a stub agent (always) and against the real
pgha binary's config validator (when it is built)."""

import os
import pwd
import shutil
import signal
import stat

import pytest
import yaml

import pghatest as h

HERE = os.path.dirname(os.path.abspath(__file__))


def test_dump_yaml_fallback_matches_pyyaml():
    cfg = h.make_node_config("node1", "demo", ["127.0.0.1:2379", "127.0.0.1:2380"], 15432, 18008, "/tmp/x",
                             tags={"nofailover": True, "failover_priority": 0},
                             bootstrap={"dcs": {"ttl": 30}, "pg_hba": None})
    cfg["odd"] = {"on": "off", "yes": "no", "num": "123", "neg": "-1", "colon": "a: b", "hash": "x # y",
                  "quote": 'say "hi"', "empty": "", "null": None, "float": 1.5, "list": [], "map": {},
                  "nested": [{"a": [1, "2"]}, ["x"]], "unicode": "ä€"}
    text = h.dump_yaml(cfg, use_pyyaml=False)
    assert yaml.safe_load(text) == cfg
    assert yaml.safe_load(h.dump_yaml(cfg)) == cfg
    assert cfg["bootstrap"]["dcs"]["ttl"] == 30 and cfg["bootstrap"]["dcs"]["loop_wait"] == 2
    assert "pg_hba" not in cfg["bootstrap"]
    assert cfg["tags"] == {"nofailover": True, "failover_priority": 0}
    assert cfg["etcd3"]["hosts"] == ["127.0.0.1:2379", "127.0.0.1:2380"]
    assert cfg["postgresql"]["data_dir"] == "/tmp/x/node1/data"
    assert cfg["postgresql"]["parameters"]["unix_socket_directories"] == "/tmp/x/node1"


@pytest.mark.needs_root
def test_pgha_wrapper_with_stub_agent(tmp_base, unique_name):
    stub = os.path.join(tmp_base, "stub_agent")
    shutil.copy(os.path.join(HERE, "stub_agent.py"), stub)
    os.chmod(stub, 0o755)
    pg_port, rest_port = h.allocate_ports(2)
    cfg = h.make_node_config("stub1", unique_name, ["127.0.0.1:9"], pg_port, rest_port, tmp_base)
    node = h.PghaNode(cfg, tmp_base, build=(stub, "/bin/true"))
    try:
        node.start()
        h.wait_until(lambda: node.rest("GET", "/health", timeout=1).status_code == 200, 60,
                     msg="stub agent REST /health")
        assert node.rest("GET", "/health").json()["stub"] is True
        assert node.rest("GET", "/nope").status_code == 404

        pg_uid = pwd.getpwnam("postgres").pw_uid
        st = os.stat(node.config_path)
        assert st.st_uid == pg_uid and stat.S_IMODE(st.st_mode) == 0o600
        with open(node.config_path) as f:
            assert yaml.safe_load(f) == cfg
        with open(f"/proc/{node.pid}/status") as f:
            assert [ln.split()[1] for ln in f if ln.startswith("Uid:")] == [str(pg_uid)]

        node.reload()
        node.wait_for_log("stub-agent: SIGHUP", timeout=10)

        pm = node.postmaster_pid()
        assert pm is not None and h.port_open(pg_port)
        assert h.proc_stat(pm)["ppid"] == node.pid, "the stub runs postgres as its child, like pgha"

        # Agent crash alone: its PostgreSQL survives.
        agent_pid, none = node.kill9(postmaster=False)
        assert none is None and not h.pid_alive(agent_pid)
        assert node.returncode == -signal.SIGKILL
        assert node.postmaster_pid() == pm and h.pid_alive(pm)

        # Restarted agent adopts it; then agent and postmaster die together.
        node.start()
        node.wait_for_log(f"adopting running postmaster {pm}", timeout=30)
        agent_pid, killed_pm = node.kill9(postmaster=True)
        assert killed_pm == pm
        assert not h.pid_alive(agent_pid) and not h.pid_alive(pm)
        assert not node.is_running() and node.postmaster_pid() is None
        h.wait_until(lambda: not h.port_open(pg_port), 10, msg="postgres port to close")

        # Restart on the same data dir (crash recovery), then a clean SIGTERM stop: the stub stops its
        # postgres.
        node.start()
        h.wait_until(lambda: node.rest("GET", "/health", timeout=1).status_code == 200, 60,
                     msg="stub agent REST /health after restart")
        pm2 = node.postmaster_pid()
        assert pm2 not in (None, pm)
        assert node.stop(timeout=30) == 0
        assert node.postmaster_pid() is None and not h.pid_alive(pm2)
        assert "stub-agent: exit" in node.log_text()

        # stop() leaves PostgreSQL alone when the agent leaves it running (kill_leftovers=False).
        node.start(env={"STUB_LEAVE_PG": "1"})
        h.wait_until(lambda: node.rest("GET", "/health", timeout=1).status_code == 200, 60,
                     msg="stub agent REST /health (leave-pg mode)")
        pm3 = node.postmaster_pid()
        assert node.stop(timeout=30) == 0
        assert node.postmaster_pid() == pm3, "stop() must not kill the postgres the agent left running"
        assert node.log_text().count("=== pghatest") == 4, "one start banner per start"
    finally:
        node.destroy()
        h.release_ports(pg_port, rest_port)
    assert not os.path.exists(node.dir)


@pytest.mark.needs_root
def test_generated_config_passes_pgha_validation(pgha_node_factory, unique_name, tmp_base):
    """The real pgha accepts the config the harness writes (skipped until pgha is built)."""
    pg_port, rest_port = h.allocate_ports(2)
    try:
        node = pgha_node_factory(h.make_node_config("node1", unique_name, ["127.0.0.1:2379"], pg_port, rest_port,
                                                    tmp_base))
        node.write_config()
        cp = h.run_as([node.bin, "--validate-config", node.config_path], user="postgres", check=False, timeout=30)
        assert cp.returncode == 0, cp.stdout
        assert "configuration is valid" in cp.stdout
    finally:
        h.release_ports(pg_port, rest_port)
