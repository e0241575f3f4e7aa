"""pgha-ctl (issue 11) against a running 2-node cluster with REST authentication on, reused by every case:
list/topology in every format (the JSON carries the table's data), watch mode, show-config/edit-config
(--set, --pg, --apply, --replace, stdin, $EDITOR, the diff and the prompt), pause/resume, switchover and
failover (the outcome watched in etcd, the exit code), a scheduled switchover and flush, restart (immediate,
scheduled, flushed), reload, reinit --wait, history, dsn, query, version, remove with its confirmations;
and the errors: etcd unreachable, unknown member, an unhealthy candidate, wrong credentials (401), usage."""

import json
import os
import re
import signal
import subprocess
import time
import uuid

import pytest
import yaml

import pghatest as h
from hacluster import HaCluster

pytestmark = pytest.mark.needs_root

USER, PASSWORD = "admin", "ctl-s3cret"


def ctl_bin():
    return os.path.join(h.build_dir(), "src", "pgha-ctl")


class Ctl:
    def __init__(self, c, cfg):
        self.c, self.cfg = c, cfg

    def run(self, *args, cfg=None, input=None, env=None, timeout=180):
        full_env = dict(os.environ, **(env or {}))
        full_env.pop("PATRONICTL_CONFIG_FILE", None)
        full_env.pop("DCS_URL", None)
        cmd = [ctl_bin()] + (["-c", cfg or self.cfg] if cfg is not False else []) + list(args)
        r = subprocess.run(cmd, capture_output=True, text=True, input=input if input is not None else "",
                           env=full_env, timeout=timeout)
        r.out = r.stdout + r.stderr
        return r

    def ok(self, *args, **kw):
        r = self.run(*args, **kw)
        assert r.returncode == 0, (args, r.returncode, r.out)
        return r.stdout


def write_cfg(path, c, auth=(USER, PASSWORD)):
    text = f"scope: {c.scope}\nnamespace: /service/\netcd3:\n  hosts: {','.join(c.etcd.endpoints)}\n"
    if auth:
        text += f"ctl:\n  authentication:\n    username: {auth[0]}\n    password: {auth[1]}\n"
    with open(path, "w") as f:
        f.write(text)
    return path


@pytest.fixture(scope="module")
def cluster(run_dir, _etcd_session):
    if not os.access(ctl_bin(), os.X_OK):
        pytest.skip("pgha-ctl is not built")
    scope = "ctl" + uuid.uuid4().hex[:6]
    c = HaCluster(run_dir.subdir(scope), n=2, scope=scope, etcd=_etcd_session,
                  restapi={"authentication": {"username": USER, "password": PASSWORD}})
    try:
        c.start()
        c.wait_healthy(120)
        c.ctl = Ctl(c, write_cfg(os.path.join(c.basedir, "ctl.yml"), c))
        yield c
    finally:
        c.destroy(keep=h.keep_requested())


@pytest.fixture
def c(cluster):
    """The shared cluster, healthy (one leader, the other streaming) at the start of each case."""
    cluster.check_healthy(90)
    h.wait_until(lambda: all((cluster.member(n) or {}).get("state") == "running" for n in cluster.nodes), 60,
                 msg="both member keys running")
    return cluster


def other_than(c, name):
    return next(n for n in c.nodes if n != name)


def pretty_rows(text):
    """The rows of the first pretty table in text as lists of cells (header first)."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows and line.startswith("+") and len(rows) > 1 and not line.startswith("+-"):
            break
    return rows


# ------------------------------------------------------------------------------------------------ reading


def test_list_every_format_carries_the_same_data(c):
    leader = c.leader()
    replica = other_than(c, leader)
    # the replica's positions reach the member key within a loop
    h.wait_until(lambda: (c.member(replica) or {}).get("xlog_location"), 30, msg="the replica's position")
    data = json.loads(c.ctl.ok("list", "-f", "json"))
    by_name = {m["Member"]: m for m in data}
    assert set(by_name) == {leader, replica}, data
    assert by_name[leader]["Role"] == "Leader" and by_name[leader]["State"] == "running", data
    # the leader row has no positions (empty values are left out); the replica has Patroni 4.1's
    assert not any(k in by_name[leader] for k in ("Receive LSN", "Receive Lag", "Replay LSN", "Replay Lag"))
    rep = by_name[replica]
    assert rep["Role"] == "Replica" and rep["State"] == "streaming" and isinstance(rep["TL"], int), rep
    assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", rep["Receive LSN"]) and isinstance(rep["Receive Lag"], int), rep
    assert all(m["Cluster"] == c.scope for m in data)
    port = {n: node.pg_port for n, node in c.nodes.items()}
    assert {m["Member"]: m["Host"] for m in data} == {n: f"127.0.0.1:{p}" for n, p in port.items()}

    # pretty: the same values, the cluster in the title, the two lag columns named "Lag"
    out = c.ctl.ok("list")
    sysid = c.etcd.get(c.key("initialize"))
    assert out.splitlines()[0].startswith(f"+ Cluster: {c.scope} ({sysid}) -"), out
    rows = pretty_rows(out)
    header = rows[0]
    assert header[:6] == ["Member", "Host", "Role", "State", "TL", "Receive LSN"] and header.count("Lag") == 2, out
    names = list(header)
    names[names.index("Lag")] = "Receive Lag"
    names[names.index("Lag")] = "Replay Lag"
    for row in rows[1:]:
        cells = dict(zip(names, row))
        want = by_name[cells["Member"]]
        for k, v in cells.items():
            assert str(want.get(k, "")) == v, (k, v, want, out)

    # tsv: every column, the cluster in each row, empty values as empty strings
    lines = c.ctl.ok("list", "-f", "tsv").splitlines()
    cols = lines[0].split("\t")
    assert cols == ["Cluster", "Member", "Host", "Role", "State", "TL", "Receive LSN", "Receive Lag", "Replay LSN",
                    "Replay Lag"], lines
    for line in lines[1:]:
        cells = dict(zip(cols, line.split("\t")))
        want = by_name[cells["Member"]]
        assert all(str(want.get(k, "")) == v for k, v in cells.items()), (cells, want)

    # yaml: the same objects
    assert yaml.safe_load(c.ctl.ok("list", "-f", "yaml")) == data

    # -e adds the extended columns, -t a timestamp line first
    ext = c.ctl.ok("list", "-e", "-f", "tsv").splitlines()[0].split("\t")
    assert ext[-4:] == ["Pending restart", "Pending restart reason", "Scheduled restart", "Tags"], ext
    out = c.ctl.ok("list", "-t")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", out.splitlines()[0]), out

    # two clusters named: two tables
    out = c.ctl.ok("list", c.scope, c.scope)
    assert out.count(f"+ Cluster: {c.scope} ") == 2, out

    # topology: the leader first, the replica under it
    rows = pretty_rows(c.ctl.ok("topology"))
    assert [r[0] for r in rows[1:]] == [leader, f"+ {replica}"], rows

    # the node's own configuration file works too (restapi.authentication as the credentials)
    assert json.loads(c.ctl.ok("list", "-f", "json", cfg=c.nodes[leader].config_path)) == data


def test_list_watch_refreshes(c):
    p = subprocess.Popen([ctl_bin(), "-c", c.ctl.cfg, "list", "-w", "0.5"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(2.6)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=10)
    assert out.count(f"+ Cluster: {c.scope} ") >= 3, out + err


def test_show_config_and_edit_config(c, tmp_path):
    cfg = c.value("config")
    assert yaml.safe_load(c.ctl.ok("show-config")) == cfg

    # --set and --pg: a diff, then written (compare-and-set) without asking with --force
    out = c.ctl.ok("edit-config", "--force", "--set", "maximum_lag_on_failover=2097152", "--pg",
                   "work_mem=8MB", "-s", "postgresql.parameters.auto_explain.log_min_duration=-1")
    assert "-maximum_lag_on_failover: 1048576" in out and "+maximum_lag_on_failover: 2097152" in out, out
    assert "+    work_mem: 8MB" in out and out.rstrip().endswith("Configuration changed"), out
    assert out.startswith("--- \n+++ \n@@ "), out
    new = c.wait_value("config", lambda v: (v or {}).get("maximum_lag_on_failover") == 2097152, 30)
    assert new["postgresql"]["parameters"]["work_mem"] == "8MB"
    assert new["postgresql"]["parameters"]["auto_explain.log_min_duration"] == -1
    # the same change again: nothing to do
    assert c.ctl.ok("edit-config", "--force", "-s", "maximum_lag_on_failover=2097152").strip() == "Not changed"
    # a prompt answered "no" changes nothing
    r = c.ctl.run("edit-config", "-s", "loop_wait=3", input="n\n")
    assert "Apply these changes? [y/N]: " in r.stdout and r.returncode == 1, r.out
    assert c.value("config")["loop_wait"] == 2
    # --apply a file (null removes a key), from stdin only with --force
    patch = tmp_path / "patch.yml"
    patch.write_text("postgresql:\n  parameters:\n    work_mem: null\n    auto_explain.log_min_duration: null\n")
    c.ctl.ok("edit-config", "--force", "--apply", str(patch))
    c.wait_value("config", lambda v: "work_mem" not in v["postgresql"]["parameters"], 30)
    r = c.ctl.run("edit-config", "--apply", "-", input="maximum_lag_on_failover: 1048576\n")
    assert "Use --force option to apply changes" in r.stdout and r.returncode == 1, r.out
    c.ctl.ok("edit-config", "--apply", "-", "--force", input="maximum_lag_on_failover: 1048576\n")
    c.wait_value("config", lambda v: v["maximum_lag_on_failover"] == 1048576, 30)
    # --replace: the file becomes the configuration
    whole = dict(c.value("config"), check_timeline=True)
    repl = tmp_path / "whole.yml"
    repl.write_text(yaml.safe_dump(whole))
    c.ctl.ok("edit-config", "--force", "--replace", str(repl))
    assert c.wait_value("config", lambda v: v.get("check_timeline") is True, 30) == whole
    # $EDITOR: a script that edits the temporary file; the answer "y" applies it
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\ncase \"$1\" in */%s-config-*.yaml) ;; *) exit 3;; esac\n"
                      "sed -i 's/^check_timeline: true/check_timeline: false/' \"$1\"\n" % c.scope)
    editor.chmod(0o755)
    out = c.ctl.ok("edit-config", input="y\n", env={"EDITOR": str(editor)})
    assert "-check_timeline: true\n+check_timeline: false" in out and "Configuration changed" in out, out
    c.wait_value("config", lambda v: v.get("check_timeline") is False, 30)
    # an editor that fails
    r = c.ctl.run("edit-config", env={"EDITOR": "false"})
    assert r.returncode == 1 and "Error: Editor exited with return code 1" in r.stderr, r.out
    c.ctl.ok("edit-config", "--force", "-s", "check_timeline=null")


def test_pause_resume(c):
    out = c.ctl.ok("pause", "--wait")
    assert "'pause' request sent, waiting until it is recognized by all nodes" in out, out
    assert "Success: cluster management is paused" in out, out
    assert c.value("config").get("pause") is True
    assert " Maintenance mode: on" in c.ctl.ok("list")
    # a request the leader refuses: exit code 3, its answer shown
    r = c.ctl.run("switchover", "--force")
    assert r.returncode == 3, r.out
    assert "Switchover failed, details: 400, Switchover is possible only to a specific candidate in a paused state" \
        in r.stdout, r.out
    r = c.ctl.run("pause")
    assert r.returncode == 1 and r.stderr.strip() == "Error: Cluster is already paused", r.out
    assert "Success: cluster management is resumed" in c.ctl.ok("resume", "--wait")
    assert "pause" not in c.value("config")
    r = c.ctl.run("resume")
    assert r.returncode == 1 and "Error: Cluster is not paused" in r.stderr, r.out


# ------------------------------------------------------------------------------------------------ switching


def test_switchover_and_failover_report_the_outcome(c):
    leader = c.leader()
    other = other_than(c, leader)
    # interactively: primary, candidate, time, confirmation
    r = c.ctl.run("switchover", input=f"\n{other}\nnow\ny\n")
    assert r.returncode == 0, r.out
    assert f"Primary [{leader}]: " in r.stdout and f"Candidate ['{other}'] []: " in r.stdout, r.out
    assert f"Are you sure you want to switchover cluster {c.scope}, demoting current leader {leader}?" in r.stdout
    assert f'Successfully switched over to "{other}"' in r.stdout, r.out
    assert f"switchover done: {other} holds the leader key and runs as the primary" in r.stdout, r.out
    assert c.leader() == other
    c.check_healthy(90)
    h.wait_until(lambda: (c.member(leader) or {}).get("state") == "running", 60, msg="the old leader running")
    # failover back with --force
    r = c.ctl.run("failover", "--candidate", leader, "--force")
    assert r.returncode == 0, r.out
    assert f"failover done: {leader} holds the leader key and runs as the primary" in r.stdout, r.out
    assert c.leader() == leader
    # the history has both
    hist = json.loads(c.ctl.ok("history", "-f", "json"))
    assert [e["New Leader"] for e in hist[-2:]] == [other, leader], hist
    assert all(isinstance(e["TL"], int) and isinstance(e["LSN"], int) for e in hist), hist
    tsv = c.ctl.ok("history", "-f", "tsv").splitlines()
    assert tsv[0] == "TL\tLSN\tReason\tTimestamp\tNew Leader" and len(tsv) == len(hist) + 1, tsv
    assert yaml.safe_load(c.ctl.ok("history", "-f", "yaml")) == hist
    assert pretty_rows(c.ctl.ok("history"))[0] == ["TL", "LSN", "Reason", "Timestamp", "New Leader"]


def test_scheduled_switchover_and_flush(c):
    leader = c.leader()
    other = other_than(c, leader)
    at = "2099-01-01T00:00:00+00:00"
    r = c.ctl.run("switchover", "--leader", leader, "--candidate", other, "--scheduled", at, "--force")
    assert r.returncode == 0 and "Switchover scheduled" in r.stdout, r.out
    out = c.ctl.ok("list")
    assert f" Switchover scheduled at: {at}\n                    from: {leader}\n                      to: {other}" \
        in out, out
    assert "Success: scheduled switchover deleted" in c.ctl.ok("flush", c.scope, "switchover", "--force")
    assert "No pending scheduled switchover" in c.ctl.ok("flush", c.scope, "switchover", "--force")
    assert c.leader() == leader


# ------------------------------------------------------------------------------------------------ members


def test_restart_reload_reinit(c):
    leader = c.leader()
    other = other_than(c, leader)
    node = c.nodes[other]
    before = c.member(other)

    out = c.ctl.ok("restart", c.scope, other, "--force")
    assert f"Success: restart on member {other}" in out and out.startswith("+ Cluster: "), out
    # scheduled: published in the member key, shown by list -e, then flushed
    out = c.ctl.ok("restart", c.scope, other, "--scheduled", "2099-01-01T00:00:00+00:00", "--force")
    assert f"Success: restart scheduled on member {other}" in out, out
    h.wait_until(lambda: (c.member(other) or {}).get("scheduled_restart"), 30, msg="the scheduled restart")
    ext = {m["Member"]: m for m in json.loads(c.ctl.ok("list", "-e", "-f", "json"))}
    assert ext[other]["Scheduled restart"] == "2099-01-01T00:00:00+00:00", ext
    out = c.ctl.ok("flush", c.scope, other, "restart", "--force")
    assert f"Success: flush scheduled restart for member {other}" in out, out
    # asked interactively and declined
    r = c.ctl.run("restart", c.scope, other, input="now\nn\n")
    assert r.returncode == 1 and f"Are you sure you want to restart members {other}? [y/N]: " in r.stdout, r.out
    assert "Error: Aborted restart" in r.stderr, r.out

    out = c.ctl.ok("reload", c.scope, "--force")
    for n in c.nodes:
        assert f"Reload request received for member {n} and will be processed within 2 seconds" in out, out

    # reinit: replicas only; --wait until the new clone runs
    r = c.ctl.run("reinit", c.scope, leader, "--force")
    assert r.returncode == 1 and "Error: No replica among provided members" in r.stderr, r.out
    out = c.ctl.ok("reinit", c.scope, other, "--force", "--wait", timeout=300)
    assert f"Success: reinitialize for member {other}" in out, out
    assert f"Waiting for reinitialize to complete on: {other}" in out, out
    assert f"Reinitialize is completed on: {other}" in out, out
    assert node.is_running() and before
    c.wait_streaming(leader, [other], 90)


def test_dsn_query_version(c):
    leader = c.leader()
    other = other_than(c, leader)
    assert c.ctl.ok("dsn").strip() == f"host=127.0.0.1 port={c.nodes[leader].pg_port}"
    assert c.ctl.ok("dsn", "-r", "replica").strip() == f"host=127.0.0.1 port={c.nodes[other].pg_port}"
    assert c.ctl.ok("dsn", "-m", other).strip() == f"host=127.0.0.1 port={c.nodes[other].pg_port}"

    env = {"PGPASSWORD": "pghatest-super"}
    out = c.ctl.ok("query", "-U", "postgres", "-c", "SELECT 1 AS one, NULL AS n, true AS t, 'x' AS s", env=env)
    assert out.splitlines() == ["one\tn\tt\ts", "1\tNone\tTrue\tx"], out
    out = c.ctl.ok("query", "-U", "postgres", "-r", "replica", "--format", "json", "-c",
                   "SELECT pg_is_in_recovery() AS r", env=env)
    assert json.loads(out) == [{"r": True}], out
    out = c.ctl.ok("query", "-U", "postgres", "-m", leader, "-d", "postgres", "--delimiter", ";", "-c",
                   "SELECT 1 AS a, 2 AS b", env=env)
    assert out.splitlines() == ["a;b", "1;2"], out
    r = c.ctl.run("query", "-U", "postgres", "-c", "SELECT * FROM no_such_table", env=env)
    assert r.returncode == 1 and re.search(r"\d\d:\d\d:\d\d\tERROR, SQLSTATE: 42P01", r.stdout), r.out
    r = c.ctl.run("query", "-U", "postgres", "-r", "primary", "-m", leader, "-c", "SELECT 1", env=env)
    assert r.returncode == 2 and "--role and --member are mutually exclusive options" in r.stderr, r.out

    out = c.ctl.ok("version", c.scope)
    lines = out.splitlines()
    assert lines[0].startswith("pgha-ctl version ") and lines[1] == "", out
    assert any(re.fullmatch(rf"{leader}: Patroni [\d.]+ PostgreSQL \d+\.\d+", l) for l in lines), out
    assert c.ctl.ok("version", cfg=False).startswith("pgha-ctl version ")


def test_remove_asks_three_times(c):
    scope = "rm" + uuid.uuid4().hex[:6]
    base = f"/service/{scope}"
    c.etcd.put(f"{base}/initialize", "7401234567890123456")
    c.etcd.put(f"{base}/config", '{"ttl":30}')
    c.etcd.put(f"{base}/leader", "ghost")
    c.etcd.put(f"{base}/members/ghost", '{"conn_url":"postgres://127.0.0.1:5999/postgres","api_url":'
                                        '"http://127.0.0.1:8999/patroni","state":"running","role":"primary"}')
    r = c.ctl.run("remove", scope, input=f"{scope}\nYes I am aware\nnobody\n")
    assert r.returncode == 1 and "Error: You did not specify the current leader of the cluster" in r.stderr, r.out
    assert c.etcd.get(f"{base}/initialize")
    r = c.ctl.run("remove", scope, input="other\n")
    assert r.returncode == 1 and "Error: Cluster names specified do not match" in r.stderr, r.out
    r = c.ctl.run("remove", scope, input=f"{scope}\nyes\n")
    assert r.returncode == 1 and 'Error: You did not exactly type "Yes I am aware"' in r.stderr, r.out
    r = c.ctl.run("remove", scope, input=f"{scope}\nYes I am aware\nghost\n")
    assert r.returncode == 0, r.out
    assert "Please confirm the cluster name to remove: " in r.stdout, r.out
    assert c.etcd.get_prefix(base + "/") in ({}, [], None), "the cluster's keys are gone"


# ------------------------------------------------------------------------------------------------ errors


def test_errors_name_the_problem(c, tmp_path):
    leader = c.leader()
    other = other_than(c, leader)
    # etcd unreachable
    port = h.allocate_ports(1)[0]
    try:
        r = c.ctl.run("--dcs-url", f"etcd3://127.0.0.1:{port}", "list", c.scope, cfg=False, timeout=60)
    finally:
        h.release_ports(port)
    assert r.returncode == 1 and f"Error: etcd is unreachable (127.0.0.1:{port})" in r.stderr, r.out
    assert "Traceback" not in r.out
    # --dcs-url to the real etcd works without a file
    ep = c.etcd.endpoints[0].split("://")[-1]
    assert json.loads(c.ctl.ok("--dcs-url", f"etcd3://{ep}/service", "list", c.scope, "-f", "json", cfg=False))
    r = c.ctl.run("--dcs-url", "consul://127.0.0.1:8500", "list", c.scope, cfg=False)
    assert r.returncode == 1 and "etcd v3 only" in r.stderr, r.out
    # a configuration file that does not exist
    r = c.ctl.run("list", cfg=str(tmp_path / "nope.yml"))
    assert r.returncode == 1 and "not existing or no read rights" in r.stderr, r.out
    # PATRONICTL_CONFIG_FILE
    r = subprocess.run([ctl_bin(), "list", "-f", "json"], capture_output=True, text=True,
                       env=dict(os.environ, PATRONICTL_CONFIG_FILE=c.ctl.cfg), timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout), r.stdout + r.stderr
    # unknown members
    r = c.ctl.run("restart", c.scope, "nobody", "--force")
    assert r.returncode == 1 and f"Error: nobody is not a member of cluster {c.scope}" in r.stderr, r.out
    r = c.ctl.run("switchover", "--candidate", "nobody", "--force")
    assert r.returncode == 1, r.out
    assert f"Error: Member nobody does not exist in cluster {c.scope} or is tagged as nofailover" in r.stderr
    r = c.ctl.run("switchover", "--leader", other, "--candidate", leader, "--force")
    assert r.returncode == 1 and f"Error: Member {other} is not the leader of cluster {c.scope}" in r.stderr, r.out
    r = c.ctl.run("dsn", "-m", "nobody")
    assert r.returncode == 1 and "nobody is not a member of cluster" in r.stderr, r.out
    r = c.ctl.run("failover", "--force")
    assert r.returncode == 1 and "Error: Failover could be performed only to a specific candidate" in r.stderr
    # a candidate that is not healthy (a member key of a stopped node, without a lease)
    c.etcd.put(c.key("members/zombie"), '{"conn_url":"postgres://127.0.0.1:5999/postgres","api_url":'
                                        '"http://127.0.0.1:8999/patroni","state":"stopped","role":"replica"}')
    try:
        r = c.ctl.run("switchover", "--candidate", "zombie", "--force")
        assert r.returncode == 1 and "Error: candidate zombie is not healthy: its PostgreSQL is stopped" \
            in r.stderr, r.out
    finally:
        c.etcd.delete(c.key("members/zombie"))
    # wrong credentials: 401, named, non-zero
    bad = write_cfg(str(tmp_path / "bad.yml"), c, auth=(USER, "wrong"))
    r = c.ctl.run("restart", c.scope, other, "--force", cfg=bad)
    assert r.returncode == 1 and f"Error: authentication failed on member {other} (401" in r.stderr, r.out
    r = c.ctl.run("switchover", "--candidate", other, "--force", cfg=bad)
    assert r.returncode == 1 and f"Error: authentication failed on member {leader} (401" in r.stderr, r.out
    assert c.leader() == leader
    r = c.ctl.run("pause", cfg=bad)
    assert r.returncode == 1 and "(401" in r.stderr and "Failed: pause cluster management status code=401" \
        in r.stdout, r.out
    # usage errors: exit code 2
    for args, text in ((["nosuch"], "No such command 'nosuch'"),
                       (["list", "-f", "xml"], "'xml' is not one of"),
                       (["dsn", "-r", "king"], "'king' is not one of")):
        r = c.ctl.run(*args)
        assert r.returncode == 2 and text in r.stderr, (args, r.out)


def test_tls_client_certificate_and_insecure(_etcd_session, run_dir, tmp_path):
    """HTTPS with verify_client required: pgha-ctl presents ctl.certfile/keyfile and checks the server with
    ctl.cacert; without the CA it refuses the server unless -k; without a certificate the agent refuses it."""
    from test_rest_security import make_pki
    scope = "tls" + uuid.uuid4().hex[:5]
    base = run_dir.subdir(scope)
    pki = make_pki(os.path.join(base, "pki"))
    c = HaCluster(base, n=1, scope=scope, etcd=_etcd_session, restapi={
        "certfile": pki["server.crt"], "keyfile": pki["server.key"], "cafile": pki["ca.crt"],
        "verify_client": "required", "authentication": {"username": USER, "password": PASSWORD}},
        ctl={"certfile": pki["client.crt"], "keyfile": pki["client.key"], "cacert": pki["ca.crt"]})
    try:
        c.start()
        assert c.wait_leader(90) == "node1"
        h.wait_until(lambda: (c.member("node1") or {}).get("state") == "running", 60, msg="node1 running")

        def cfg(name, **ctl):
            text = (f"scope: {scope}\nnamespace: /service/\netcd3:\n  hosts: {','.join(c.etcd.endpoints)}\n"
                    f"ctl:\n  authentication:\n    username: {USER}\n    password: {PASSWORD}\n")
            text += "".join(f"  {k}: {v}\n" for k, v in ctl.items())
            path = tmp_path / name
            path.write_text(text)
            return Ctl(c, str(path))

        full = cfg("full.yml", certfile=pki["client.crt"], keyfile=pki["client.key"], cacert=pki["ca.crt"])
        out = full.ok("reload", scope, "--force")
        assert "Reload request received for member node1" in out, out
        assert re.search(r"node1: Patroni [\d.]+ PostgreSQL", full.ok("version", scope)), "GET /patroni over TLS"
        # the node's own file (restapi.cafile, ctl's client certificate) works as it is
        assert "Reload request received" in full.ok("reload", scope, "--force", cfg=c.nodes["node1"].config_path)
        # no CA: the server's certificate is not trusted, unless -k
        no_ca = cfg("noca.yml", certfile=pki["client.crt"], keyfile=pki["client.key"])
        r = no_ca.run("reload", scope, "--force")
        assert r.returncode == 1 and "Failed: reload for member node1, (https://127.0.0.1:" in r.stdout, r.out
        assert "Reload request received" in no_ca.ok("-k", "reload", scope, "--force")
        # no client certificate: refused by the agent
        no_cert = cfg("nocert.yml", cacert=pki["ca.crt"])
        r = no_cert.run("reload", scope, "--force")
        assert r.returncode == 1 and "Failed: reload for member node1" in r.stdout, r.out
    finally:
        c.destroy(keep=h.keep_requested())
