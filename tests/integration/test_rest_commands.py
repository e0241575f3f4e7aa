"""REST command endpoints (spec §2.5-2.7): POST /switchover and /failover with Patroni's validation and
answers, a scheduled switchover and DELETE /switchover, PATCH and PUT /config, POST /reload; and Debian's
patronictl (3.0) driving a switchover and edit-config through them. A 2-node cluster."""

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


def rest_port(node):
    return int(node.config["restapi"]["listen"].rsplit(":", 1)[1])


def call(node, method, path, body=None, timeout=180, raw=False):
    """(status, body text) of one request; a dict body is sent as JSON with its Content-Length."""
    c = http.client.HTTPConnection("127.0.0.1", rest_port(node), timeout=timeout)
    try:
        data = body if raw or body is None else json.dumps(body)
        c.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


@pytest.fixture
def cluster(etcd_cluster, run_dir, unique_name):
    c = HaCluster(run_dir.subdir(unique_name[-8:]), n=2, scope=unique_name, etcd=etcd_cluster)
    yield c
    c.destroy()


def iso(delta_s):
    return (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=delta_s)).isoformat()


def test_rest_commands(cluster):
    c = cluster
    c.start()
    leader = c.wait_healthy(120)
    other = next(n for n in c.nodes if n != leader)
    ln, on = c.nodes[leader], c.nodes[other]

    # validation (spec §2.6), in Patroni's order, with its plain-text bodies
    cases = [
        ("/failover", {"leader": leader}, 400, "Failover could be performed only to a specific candidate"),
        ("/switchover", {"candidate": other}, 400, "Switchover could be performed only from a specific leader"),
        ("/failover", {"candidate": other, "scheduled_at": iso(3600)}, 400, "Failover can't be scheduled"),
        ("/switchover", {"leader": leader, "scheduled_at": "2030-01-01T00:00:00"}, 400,
         "Timezone information is mandatory for the scheduled switchover"),
        ("/switchover", {"leader": leader, "scheduled_at": iso(-3600)}, 422, "Cannot schedule switchover in the past"),
        ("/switchover", {"leader": leader, "scheduled_at": "soon"}, 422,
         "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601"),
        ("/switchover", {"leader": leader, "candidate": leader}, 400, "Switchover target and source are the same"),
        ("/switchover", {"leader": other, "candidate": leader}, 412, "leader name does not match"),
        ("/switchover", {"leader": leader, "candidate": "nosuch"}, 412, "candidate does not exists"),
    ]
    for path, body, code, text in cases:
        assert call(on, "POST", path, body) == (code, text), (path, body)
    assert call(ln, "POST", "/switchover", "{nope", raw=True)[0] == 400
    assert call(ln, "POST", "/switchover", "{}", raw=True)[0] == 400
    assert call(ln, "DELETE", "/switchover") == (404, "no switchover is scheduled")
    # a member's view of the leader is not needed: the failover key stayed untouched
    assert not (c.value("failover") or {}).get("member")
    # POST /reload answers at once (queued, not waited for)
    assert call(ln, "POST", "/reload", {}, timeout=5) == (202, "reload scheduled")

    # a scheduled switchover, then its cancellation
    at = iso(3600)
    assert call(on, "POST", "/switchover", {"leader": leader, "candidate": other, "scheduled_at": at}) == \
        (202, "Switchover scheduled")
    fo = c.wait_value("failover", lambda v: (v or {}).get("scheduled_at") is not None, 60)
    assert fo["leader"] == leader and fo["member"] == other and fo["scheduled_at"] == at
    assert call(ln, "DELETE", "/switchover") == (200, "scheduled switchover deleted")
    c.wait_value("failover", lambda v: v == {}, 60)
    # scheduled_at is written as Patroni does: the parsed time in ISO format
    t = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0) + datetime.timedelta(hours=2)
    assert call(on, "POST", "/switchover", {"leader": leader, "scheduled_at": t.strftime("%Y-%m-%d %H:%MZ")}) == \
        (202, "Switchover scheduled")
    fo = c.wait_value("failover", lambda v: (v or {}).get("scheduled_at") is not None, 60)
    assert fo["scheduled_at"] == t.strftime("%Y-%m-%dT%H:%M:00+00:00"), fo
    assert call(ln, "DELETE", "/switchover") == (200, "scheduled switchover deleted")
    c.wait_value("failover", lambda v: v == {}, 60)

    # an immediate switchover to a named candidate
    assert call(ln, "POST", "/switchover", {"leader": leader, "candidate": other}) == \
        (200, f'Successfully switched over to "{other}"')
    assert c.wait_healthy(120) == other
    c.wait_value("failover", lambda v: v in ({}, None), 60)
    assert "received switchover request with leader=%s candidate=%s scheduled_at=None" % (leader, other) in \
        ln.log_text() + on.log_text()

    # PATCH /config: merge, null deletes, the full result answered (Python's spacing)
    assert call(ln, "PATCH", "/config", "[1]", raw=True)[0] == 400
    conn = http.client.HTTPConnection("127.0.0.1", rest_port(ln), timeout=10)
    conn.putrequest("PATCH", "/config")
    conn.endheaders()
    assert conn.getresponse().status == 411
    conn.close()
    code, text = call(ln, "PATCH", "/config", {"loop_wait": 3, "postgresql": {"parameters": {"max_connections": None}}})
    assert code == 200, text
    cfg = json.loads(text)
    assert cfg["loop_wait"] == 3 and "max_connections" not in cfg["postgresql"]["parameters"]
    assert '"loop_wait": 3' in text
    c.wait_value("config", lambda v: v == cfg, 60)
    assert json.loads(h.http_get(f"http://127.0.0.1:{rest_port(on)}/config").text) == cfg
    for n in c.nodes.values():
        h.wait_until(lambda n=n: "loop_wait=3" in n.log_text(), 30, msg="the agents to take loop_wait 3")

    # PUT /config: replaces the whole value
    cfg["loop_wait"] = 2
    cfg["maximum_lag_on_failover"] = 2097152
    code, text = call(on, "PUT", "/config", cfg)
    assert code == 200 and json.loads(text) == cfg
    c.wait_value("config", lambda v: v == cfg, 60)

    # POST /reload: the SIGHUP path
    before = ln.log_text().count("configuration reloaded")
    assert call(ln, "POST", "/reload", {}) == (202, "reload scheduled")
    h.wait_until(lambda: ln.log_text().count("configuration reloaded") > before, 60, msg="the reload")

    # Debian's patronictl against the cluster
    if not shutil.which("patronictl"):
        pytest.skip("patronictl is not installed")
    pcfg = os.path.join(c.basedir, "patronictl.yml")
    with open(pcfg, "w") as f:
        f.write(f"scope: {c.scope}\nnamespace: /service/\netcd3:\n  hosts: {','.join(c.etcd.endpoints)}\n")
    out = subprocess.run(["patronictl", "-c", pcfg, "switchover", "--force", "--leader", other, "--candidate", leader],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f'Successfully switched over to "{leader}"' in out.stdout, out.stdout
    assert c.wait_healthy(120) == leader
    out = subprocess.run(["patronictl", "-c", pcfg, "edit-config", "--force", "--set", "loop_wait=3"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    c.wait_value("config", lambda v: (v or {}).get("loop_wait") == 3, 60)
    c.check_healthy(60)

    # a manual failover to a named candidate (no leader in the request)
    assert call(c.nodes[other], "POST", "/failover", {"candidate": other}) == \
        (200, f'Successfully failed over to "{other}"')
    assert c.wait_healthy(120) == other
    c.wait_value("failover", lambda v: v in ({}, None), 60)

    # SIGTERM: exit 0, and a sanitizer build reports no error or leak (the queue, the command threads)
    for name in [other, leader]:
        node = c.nodes[name]
        assert node.stop(timeout=60) == 0
        text = node.log_text()
        assert "Sanitizer" not in text and "runtime error" not in text, text[-3000:]
