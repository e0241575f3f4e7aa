"""Custom bootstrap and replica creation methods, and the callbacks (issue 14), on a 2-node cluster against real
etcd and PostgreSQL 15:

* node1 bootstraps with a custom `bootstrap.method`: a script that records its arguments and runs initdb itself with
  a superuser password the agent does not know (pg_hba.conf trusts the agent while the bootstrap runs; the roles
  get the configured passwords after), with a `recovery_conf` whose restore_command logs its calls: PostgreSQL
  starts in archive recovery, ends it and is promoted (timeline 2);
* node2 is created by `create_replica_methods: [np, clone]`: `np` (no_params, fails) is tried first, then `clone`
  (a script wrapping pg_basebackup with its --connstring); POST /reinitialize runs them again, and with keep_data
  the old data directory is still there when `clone` starts;
* every callback is recorded, in order, on both nodes through: bootstrap, clone, reinitialize, a switchover,
  POST /restart, POST /reload, an agent killed and started again (on_start for the postmaster it takes over),
  the agents' stop. The expected order is Patroni 4.0's (comments below)."""

import os
import shutil

import pytest

import pghatest as h
from hacluster import HaCluster

pytestmark = pytest.mark.needs_root

BOOT = """#!/bin/sh
# a custom bootstrap: records its arguments, creates the cluster with its own superuser password
printf '%s\\n' "$@" > {out}/boot.args
for a in "$@"; do case "$a" in --datadir=*) D="${{a#--datadir=}}";; esac; done
echo not-the-configured-password > {out}/pw
{bindir}/initdb -D "$D" -U postgres --pwfile={out}/pw --auth-local=scram-sha-256 --auth-host=scram-sha-256 \\
    -E UTF8 --locale=C.UTF-8 > {out}/initdb.log 2>&1 || exit 1
touch "$D/promote"  # a trigger file a restore may leave: the agent removes it
"""

NP = """#!/bin/sh
# a replica method that fails: the next one is tried
{{ echo ---; printf '%s\\n' "$@"; }} >> {out}/np.args
exit 3
"""

CLONE = """#!/bin/sh
# a replica method wrapping pg_basebackup
{{ echo ---; printf '%s\\n' "$@"; }} >> {out}/clone.args
for a in "$@"; do
    case "$a" in --datadir=*) D="${{a#--datadir=}}";; --connstring=*) C="${{a#--connstring=}}";; esac
done
if [ -f "$D/PG_VERSION" ]; then echo kept >> {out}/clone.kept; fi
rm -rf "$D"
mkdir -m 700 "$D"
exec {bindir}/pg_basebackup -D "$D" -X stream -d "$C"
"""

CB = """#!/bin/sh
# callbacks: cb.sh FILE action role scope
f="$1"
shift
echo "$*" >> "$f"
"""


def write_script(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)


def lines(path):
    try:
        with open(path) as f:
            return [line.rstrip("\n") for line in f]
    except FileNotFoundError:
        return []


def blocks(path):
    """The argument lists a script recorded, one per call."""
    out = []
    for line in lines(path):
        if line == "---":
            out.append([])
        else:
            out[-1].append(line)
    return out


@pytest.fixture
def setup(etcd_cluster, run_dir, unique_name):
    base = run_dir.subdir(unique_name[-8:])
    out = os.path.join(base, "out")
    os.makedirs(out)
    shutil.chown(out, "postgres", "postgres")
    bindir = h.find_pg_bindir()
    scripts = {}
    for name, text in (("boot", BOOT), ("np", NP), ("clone", CLONE), ("cb", CB)):
        scripts[name] = os.path.join(base, f"{name}.sh")
        write_script(scripts[name], text.format(out=out, bindir=bindir))

    def callbacks(node):
        cmd = f"{scripts['cb']} {out}/{node}.cb"
        # pre_promote and before_stop write to the same file (their order against the callbacks); split as shlex
        # does, without a shell: $HOME stays a word (Patroni runs them so)
        return {"callbacks": {a: cmd for a in ("on_start", "on_stop", "on_restart", "on_reload", "on_role_change")},
                "pre_promote": f"{cmd} pre_promote $HOME", "before_stop": f"{cmd} before_stop $HOME"}

    c = HaCluster(
        base, n=2, scope=unique_name, etcd=etcd_cluster,
        # archive recovery needs max_connections (and the like) at least as high as pg_control says (initdb: 100):
        # configured lower, the recovery runs with pg_control's values (Patroni's effective_configuration), and with
        # hot_standby off (recovery_target_action: promote)
        bootstrap={"dcs": {"postgresql": {"parameters": {"max_connections": 50}}},
                   "method": "custom_boot",
                   "custom_boot": {"command": scripts["boot"], "extra": "abc",
                                   "recovery_conf": {"restore_command": f"echo %f >> {out}/restore.log; false",
                                                     "recovery_target_action": "promote"}}},
        postgresql={"create_replica_methods": ["np", "clone"],
                    "np": {"command": scripts["np"], "no_params": True, "keep_data": True, "bucket": "b1"},
                    "clone": {"command": f"{scripts['clone']} --mode 'fast copy'", "keep_data": True,
                              "extra": "xyz"}},
        node_overrides={n: {"postgresql": callbacks(n)} for n in ("node1", "node2")})
    yield c, out
    c.destroy()


def wait_lines(path, want, timeout=30):
    """Until the file holds exactly `want` (it may be written a moment after the event)."""
    try:
        h.wait_until(lambda: lines(path) == want, timeout, msg=f"{path} to hold {want}")
    except h.WaitTimeout:
        assert lines(path) == want  # shows the difference


def test_custom_bootstrap_replica_methods_and_callbacks(setup):
    c, out = setup
    scope = c.scope
    n1, n2 = c.nodes["node1"], c.nodes["node2"]
    cb1, cb2 = f"{out}/node1.cb", f"{out}/node2.cb"

    # ---- the custom bootstrap
    c.start(["node1"])
    assert c.wait_leader(120) == "node1"
    h.wait_until(lambda: c.is_primary("node1"), 60, msg="node1 to be a primary")
    assert lines(f"{out}/boot.args") == [f"--scope={scope}", f"--datadir={n1.data_dir}", "--extra=abc"]
    log = n1.log_text()
    assert "Running custom bootstrap script: /" in log and "/boot.sh\n" in log
    # the recovery ran with the method's recovery_conf to its end: postgresql.conf was not rewritten meanwhile
    pglog = open(os.path.join(os.path.dirname(n1.data_dir), "pg_log", "postgresql.log")).read()
    assert "archive recovery complete" in pglog
    assert pglog.index("archive recovery complete") < pglog.find('"restore_command" removed') or \
        '"restore_command" removed' not in pglog.split("archive recovery complete")[0], pglog
    assert "initialized a new cluster" in log
    assert "starting the custom bootstrap's recovery with hot_standby = off" in log
    assert "max_connections value in pg_controldata: 100, in the global configuration: 50" in log, log
    assert c.sql("node1", "SHOW max_connections")[0][0] == "100"  # until a restart (pending_restart)
    # recovery_conf: archive recovery ran (restore_command was asked for WAL) and ended in a promotion
    assert lines(f"{out}/restore.log"), "restore_command was never called"
    assert c.sql("node1", "SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0].startswith("00000002")
    for f in ("recovery.signal", "standby.signal", "promote", "pg_hba.conf.pgha-bootstrap"):
        assert not os.path.exists(os.path.join(n1.data_dir, f)), f
    # the pg_hba.conf initdb wrote is back (plus bootstrap.pg_hba), not the bootstrap's trust file; the agent's
    # superuser (c.sql) and replication roles have the configured passwords
    with open(os.path.join(n1.data_dir, "pg_hba.conf")) as f:
        hba = f.read()
    assert "scram-sha-256" in hba and "host replication replicator 127.0.0.1/32 md5" in hba, hba
    # Patroni's ha.post_bootstrap(): no callbacks while bootstrapping, on_start once the cluster is initialized
    wait_lines(cb1, [f"on_start primary {scope}"])

    # ---- the replica methods: np (no_params: only its other keys; it fails), then clone
    c.start(["node2"])
    c.wait_streaming("node1", ["node2"], 120)
    assert blocks(f"{out}/np.args") == [["--bucket=b1"]]
    clone = blocks(f"{out}/clone.args")
    assert len(clone) == 1
    args = clone[0]
    # the command split as shlex does; the section's keys in order; then scope, role, datadir, connstring
    assert args[:5] == ["--mode", "fast copy", "--keep_data=True", "--extra=xyz", f"--scope={scope}"], args
    assert args[5:7] == ["--role=replica", f"--datadir={n2.data_dir}"], args
    assert args[7].startswith(f"--connstring=host=127.0.0.1 port={n1.pg_port} ") and "user=replicator" in args[7]
    log2 = n2.log_text()
    assert "Error creating replica using method np" in log2
    assert "replica has been created using clone" in log2
    wait_lines(cb2, [f"on_start replica {scope}"])

    # ---- reinitialize: the methods run again; keep_data leaves the old data directory to `clone`
    r = n2.rest("POST", "/reinitialize", {}, timeout=30)
    assert r.status_code == 200, r.text
    h.wait_until(lambda: len(blocks(f"{out}/clone.args")) == 2, 120, msg="clone to run again")
    c.wait_streaming("node1", ["node2"], 120)
    assert len(blocks(f"{out}/np.args")) == 2
    assert lines(f"{out}/clone.kept") == ["kept"]
    # Patroni's reinitialize: stop (on_stop), clone, start (on_start: the role stays replica)
    wait_lines(cb2, [f"on_start replica {scope}", "before_stop $HOME", f"on_stop replica {scope}",
                     f"on_start replica {scope}"])

    # ---- a switchover. Old primary (Patroni's demote('graceful')): stop() -> on_stop primary, then follow() with
    # role 'demoted' -> on_role_change replica instead of on_start. New primary (promote()): on_role_change primary.
    r = n1.rest("POST", "/switchover", {"leader": "node1", "candidate": "node2"}, timeout=120)
    assert (r.status_code, r.text) == (200, 'Successfully switched over to "node2"'), r.text
    c.wait_streaming("node2", ["node1"], 120)
    # before_stop before the stop, pre_promote before the promotion (both waited for, unlike the callbacks)
    wait_lines(cb1, [f"on_start primary {scope}", "before_stop $HOME", f"on_stop primary {scope}",
                     f"on_role_change replica {scope}"])
    cb2_now = [f"on_start replica {scope}", "before_stop $HOME", f"on_stop replica {scope}",
               f"on_start replica {scope}", "pre_promote $HOME", f"on_role_change primary {scope}"]
    wait_lines(cb2, cb2_now)

    # ---- POST /restart: on_restart only (Patroni's restart() blocks on_stop/on_start)
    def restart():
        r = n2.rest("POST", "/restart", {}, timeout=120)
        return None if r.status_code == 503 and "already in progress" in r.text else r  # the promotion's end
    r = h.wait_until(restart, 60, interval=1, msg="node2 to accept a restart")
    assert (r.status_code, r.text) == (200, "restarted successfully"), r.text
    cb2_now += ["before_stop $HOME", f"on_restart primary {scope}"]
    wait_lines(cb2, cb2_now)

    # ---- POST /reload: PostgreSQL reloads (Patroni's reload_config(sighup=True)) -> on_reload
    r = n2.rest("POST", "/reload", {}, timeout=30)
    assert r.status_code == 202, r.text
    cb2_now.append(f"on_reload primary {scope}")
    wait_lines(cb2, cb2_now)

    # ---- node1's agent killed (its PostgreSQL keeps running) and started again: it takes the postmaster over and
    # calls on_start for it once (Patroni's first cycle, cb_called still false)
    n1.kill9(postmaster=False)
    n1.start()
    cb1_now = [f"on_start primary {scope}", "before_stop $HOME", f"on_stop primary {scope}",
               f"on_role_change replica {scope}", f"on_start replica {scope}"]
    wait_lines(cb1, cb1_now)
    h.wait_until(lambda: "taking it over" in n1.log_text(), 30, msg="node1 to take its postmaster over")

    # ---- the agents stop: on_stop with the role PostgreSQL had
    n1.stop()
    n2.stop()
    wait_lines(cb1, cb1_now + ["before_stop $HOME", f"on_stop replica {scope}"])
    cb2_now += ["before_stop $HOME", f"on_stop primary {scope}"]
    wait_lines(cb2, cb2_now)
