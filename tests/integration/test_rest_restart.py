"""REST restart and reinitialize (spec §2.7, §4.14) on a 2-node cluster with Basic authentication on:
POST /restart's validation and filters, an immediate restart of the replica and of the primary (which keeps its
leader key: the lease is renewed while PostgreSQL stops and starts), a scheduled restart (stored in the member
key, 409 for a second one, DELETE, carried out at its time), POST /reinitialize (refused on the leader, a new
clone on the replica); then Debian's patronictl (3.0) driving restart, reload, reinit, pause/resume, failover,
switchover and edit-config through the authenticated API."""

import base64
import datetime
import http.client
import json
import os
import shutil
import subprocess

import pytest

import pghatest as h
from hacluster import HaCluster

pytestmark = pytest.mark.needs_root

USER, PASSWORD = "admin", "s3cret-restart"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


def rest_port(node):
    return int(node.config["restapi"]["listen"].rsplit(":", 1)[1])


def call(node, method, path, body=None, timeout=180, raw=False, auth=True):
    """(status, body text) of one request; a dict body is sent as JSON with its Content-Length."""
    c = http.client.HTTPConnection("127.0.0.1", rest_port(node), timeout=timeout)
    try:
        data = body if raw or body is None else json.dumps(body)
        headers = dict(AUTH) if auth else {}
        if data:
            headers["Content-Type"] = "application/json"
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def patroni(node):
    return json.loads(h.http_get(f"http://127.0.0.1:{rest_port(node)}/patroni").text)


def started_at(node, timeout=60):
    """The postmaster start time GET /patroni reports once the node runs (its snapshot may lag a cycle behind
    what pg_stat_replication on the leader already shows)."""
    return h.wait_until(lambda: patroni(node).get("state") == "running" and patroni(node).get("postmaster_start_time"),
                        timeout, msg=f"{node.name} to report running")


def iso(delta_s):
    return (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=delta_s)).isoformat()


@pytest.fixture
def cluster(etcd_cluster, run_dir, unique_name):
    c = HaCluster(run_dir.subdir(unique_name[-8:]), n=2, scope=unique_name, etcd=etcd_cluster,
                  restapi={"authentication": {"username": USER, "password": PASSWORD}})
    yield c
    c.destroy()


def wait_restarted(c, name, before, timeout=60):
    """Until the member runs again with a postmaster start time other than `before`."""
    node = c.nodes[name]

    def check():
        p = patroni(node)
        return p.get("state") == "running" and p.get("postmaster_start_time") not in (None, before)
    h.wait_until(check, timeout, msg=f"{name} to run again after the restart")


def test_restart_and_reinitialize(cluster):
    c = cluster
    c.start()
    leader = c.wait_healthy(120)
    other = next(n for n in c.nodes if n != leader)
    ln, on = c.nodes[leader], c.nodes[other]
    c.wait_streaming(leader, [other])

    # unsafe endpoints need the credentials
    for method, path in (("POST", "/restart"), ("DELETE", "/restart"), ("POST", "/reinitialize")):
        assert call(on, method, path, {}, auth=False)[0] == 401, (method, path)

    # validation, key by key in the order received (spec §2.7)
    cases = [
        ({"role": "master"}, 400, "PostgreSQL role should be either primary, standby_leader, or replica"),
        ({"timeout": 0}, 400, "Timeout should be a positive number of seconds"),
        ({"postgres_version": "9.6"}, 400, "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 9.6"),
        ({"nosuch": 1, "role": "master"}, 400, "Unknown filter for the scheduled restart: nosuch"),
        ({"schedule": "2030-01-01T00:00:00"}, 400, "Timezone information is mandatory for the scheduled restart"),
        ({"schedule": iso(-3600)}, 422, "Cannot schedule restart in the past"),
        # the filters that do not match this node
        ({"role": "primary"}, 503, "restart conditions are not satisfied"),
        ({"postgres_version": "15.0"}, 503, "restart conditions are not satisfied"),
        ({"restart_pending": True}, 503, "restart conditions are not satisfied"),
    ]
    for body, code, text in cases:
        assert call(on, "POST", "/restart", body) == (code, text), body
    assert call(on, "POST", "/restart", "{nope", raw=True)[0] == 400
    assert call(on, "POST", "/restart", "[1]", raw=True)[0] == 400
    assert call(on, "DELETE", "/restart") == (404, "no restarts are scheduled")

    # an immediate restart of the replica (no body at all): answered when it runs again
    before = started_at(on)
    assert call(on, "POST", "/restart") == (200, "restarted successfully")
    wait_restarted(c, other, before, 30)  # GET /patroni shows it at the end of that cycle
    c.wait_streaming(leader, [other])

    # the primary: it keeps the leader key while PostgreSQL stops and starts again
    key_before = c.etcd.get_kv(c.key("leader"))
    before = started_at(ln)
    assert call(ln, "POST", "/restart", {"role": "primary", "timeout": "1min"}) == (200, "restarted successfully")
    key_after = c.etcd.get_kv(c.key("leader"))
    # the same key (never deleted and taken again), renewed while PostgreSQL restarted
    assert key_after["value"] == leader and key_after["create_revision"] == key_before["create_revision"], \
        (key_before, key_after)
    wait_restarted(c, leader, before, 30)
    assert patroni(ln)["role"] == "primary"
    h.wait_until(lambda: h.http_get(f"http://127.0.0.1:{rest_port(ln)}/primary").status_code == 200, 30,
                 msg="/primary to answer 200 after the restart")
    assert c.wait_healthy(60) == leader
    assert "PostgreSQL restarted" in ln.log_text()

    # a scheduled restart: in the member key (with the postmaster's start time), 409, DELETE
    at = iso(3600)
    assert call(on, "POST", "/restart", {"schedule": at, "role": "replica"}) == (202, "Restart scheduled")
    m = c.wait_value(f"members/{other}", lambda v: "scheduled_restart" in (v or {}), 30)
    sr = m["scheduled_restart"]
    assert list(sr) == ["schedule", "role", "postmaster_start_time"], sr
    assert sr["role"] == "replica" and sr["postmaster_start_time"] == patroni(on)["postmaster_start_time"]
    assert patroni(on)["scheduled_restart"] == {"schedule": sr["schedule"], "role": "replica"}
    assert call(on, "POST", "/restart", {"schedule": iso(7200)}) == (409, "Another restart is already scheduled")
    assert call(on, "DELETE", "/restart") == (200, "scheduled restart deleted")
    c.wait_value(f"members/{other}", lambda v: v and "scheduled_restart" not in v, 30)

    # ... and one carried out at its time
    before = started_at(on)
    assert call(on, "POST", "/restart", {"schedule": iso(6)}) == (202, "Restart scheduled")
    wait_restarted(c, other, before, 60)
    c.wait_value(f"members/{other}", lambda v: v and "scheduled_restart" not in v and v.get("state") == "running", 30)
    assert "Manual scheduled restart at" in on.log_text()

    # reinitialize: refused on the leader; on the replica a new clone
    assert call(ln, "POST", "/reinitialize", {}) == (503, "I am the leader, can not reinitialize")
    marker = os.path.join(on.data_dir, "pgha-reinit-marker")
    with open(marker, "w") as f:
        f.write("gone after the reinitialize\n")
    assert call(on, "POST", "/reinitialize", {"force": True}) == (200, "reinitialize started")
    h.wait_until(lambda: not os.path.exists(marker) and patroni(on).get("state") == "running", 120,
                 msg="the replica to be cloned again and running")
    c.wait_streaming(leader, [other])
    c.check_healthy(60)


def test_patronictl_with_authentication(cluster):
    """patronictl 3.0 with the node's own configuration file (restapi.authentication), as an operator runs it."""
    if not shutil.which("patronictl"):
        pytest.skip("patronictl is not installed")
    c = cluster
    c.start()
    leader = c.wait_healthy(120)
    other = next(n for n in c.nodes if n != leader)
    on = c.nodes[other]
    c.wait_streaming(leader, [other])
    pcfg = os.path.join(c.basedir, "patronictl.yml")
    with open(pcfg, "w") as f:
        f.write(f"scope: {c.scope}\nnamespace: /service/\netcd3:\n  hosts: {','.join(c.etcd.endpoints)}\n"
                f"restapi:\n  authentication:\n    username: {USER}\n    password: {PASSWORD}\n")

    def ctl(*args, timeout=180):
        out = subprocess.run(["patronictl", "-c", pcfg, *args], capture_output=True, text=True, timeout=timeout)
        assert out.returncode == 0, (args, out.stdout + out.stderr)
        return out.stdout

    # restart of the replica
    before = started_at(on)
    out = ctl("restart", c.scope, other, "--force")
    assert f"Success: restart on member {other}" in out, out
    assert patroni(on)["postmaster_start_time"] != before
    # reload of both
    out = ctl("reload", c.scope, "--force")
    assert "Reload request received for member" in out, out
    # reinit of the replica, waited for
    out = ctl("reinit", c.scope, other, "--force", "--wait")
    assert f"Success: reinitialize for member {other}" in out, out
    h.wait_until(lambda: patroni(on).get("state") == "running", 120, msg="the reinitialized replica to run")
    c.wait_streaming(leader, [other])
    # pause / resume
    ctl("pause", c.scope, "--wait")
    c.wait_value("config", lambda v: (v or {}).get("pause") is True, 30)
    ctl("resume", c.scope, "--wait")
    c.wait_value("config", lambda v: not (v or {}).get("pause"), 30)
    # edit-config
    ctl("edit-config", c.scope, "--force", "--set", "maximum_lag_on_failover=2097152")
    c.wait_value("config", lambda v: (v or {}).get("maximum_lag_on_failover") == 2097152, 30)
    # failover to the replica (patronictl 3.0 names the healthy leader: a switchover), switchover back
    c.check_healthy(60)
    out = ctl("failover", c.scope, "--candidate", other, "--force")
    assert f'Successfully switched over to "{other}"' in out, out
    assert c.wait_healthy(120) == other
    out = ctl("switchover", c.scope, "--leader", other, "--candidate", leader, "--force")
    assert f'Successfully switched over to "{leader}"' in out, out
    assert c.wait_healthy(120) == leader
    # a promotion leaves no restart pending (the recovery parameters do not count, as in Patroni)
    for n in c.nodes.values():
        h.wait_until(lambda n=n: patroni(n).get("state") == "running", 60, msg=f"{n.name} to run")
        assert not patroni(n).get("pending_restart"), patroni(n)
    # without the credentials, the same command fails (401)
    with open(pcfg, "w") as f:
        f.write(f"scope: {c.scope}\nnamespace: /service/\netcd3:\n  hosts: {','.join(c.etcd.endpoints)}\n")
    out = subprocess.run(["patronictl", "-c", pcfg, "restart", c.scope, other, "--force"], capture_output=True,
                         text=True, timeout=60)
    assert "401" in out.stdout + out.stderr, out.stdout + out.stderr
