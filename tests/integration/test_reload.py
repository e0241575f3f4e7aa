"""Live reload (SIGHUP) of the REST server and of the tags (issue 14): a new restapi.listen is answered at once
and the old address refused, the member key advertises the new api_url and the tags in the cycle right after
the reload, the leader keeps its key, lease and ownership; a renewed certificate file at the same path is
served after a reload; an address in use or a certificate that does not fit leaves the running server as it
is (never no API). New etcd3 settings (hosts, credentials) are tested and taken on the same lease; a wrong
password or another etcd cluster are refused and the running etcd client stays. Short timings: ttl 10 (raised
to 20 by pgha, as by Patroni), loop_wait 2, retry_timeout 4."""

import base64
import os
import shutil
import socket
import ssl
import time

import pytest
import requests

import subprocess

import pghatest as h
from etcdx import ETCDCTL_BIN
from hacluster import HaCluster
from test_rest_security import assert_clean_shutdown, make_pki, rest_port

pytestmark = pytest.mark.needs_root

TIMINGS = {"dcs": {"ttl": 10, "loop_wait": 2, "retry_timeout": 4}}

_count = iter(range(1000))


@pytest.fixture
def short_base(run_dir):
    """A short directory: PostgreSQL's unix socket path must stay under 108 bytes."""
    return run_dir.subdir(f"rl{next(_count)}")


def openssl(*args, cwd):
    """openssl with its stderr in the failure (a busy machine: a generous timeout)."""
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, f"openssl {' '.join(args)}: exit {p.returncode}: {p.stderr}"


def status(url, verify=False):
    """The HTTP status of GET url, or None when the connection is refused."""
    try:
        return requests.get(url, timeout=5, verify=verify).status_code
    except requests.exceptions.ConnectionError:
        return None


def leader_key(c):
    kv = c.etcd.get_kv(c.key("leader"))
    assert kv and kv["value"] == "node1", kv
    return kv["lease"], kv["create_revision"]


def test_listen_and_tags_reload(etcd_cluster, short_base, unique_name):
    c = HaCluster(short_base, n=1, scope=unique_name, etcd=etcd_cluster, bootstrap=TIMINGS)
    try:
        node = c.nodes["node1"]
        node.start()
        assert c.wait_leader(90) == "node1"
        old = rest_port(node)
        h.wait_until(lambda: status(f"http://127.0.0.1:{old}/primary") == 200, 60, msg="node1 answering as primary")
        key = leader_key(c)

        # a new port and tags: the API moves, the member key follows in the next cycle
        new = h.allocate_ports(1)[0]
        cfg = node.config
        cfg["restapi"]["listen"] = cfg["restapi"]["connect_address"] = f"127.0.0.1:{new}"
        cfg["tags"] = {"nofailover": True, "datacenter": "west"}
        node.write_config()
        t0 = time.monotonic()
        node.reload()
        text = node.wait_for_log(f"REST API: listening on 127.0.0.1:{new} (was 127.0.0.1:{old})", 30)
        assert "takes effect after a restart" not in text, text[-3000:]
        assert status(f"http://127.0.0.1:{new}/primary") == 200
        assert status(f"http://127.0.0.1:{old}/primary") is None  # refused at once
        c.wait_value("members/node1", lambda m: m and m["api_url"] == f"http://127.0.0.1:{new}/patroni"
                     and m.get("tags") == {"nofailover": True, "datacenter": "west"}, timeout=15)
        assert time.monotonic() - t0 < 8  # the cycle right after the reload, not a later one
        assert leader_key(c) == key  # same lease, never lost

        # an address that is taken: logged, the server stays on the port it answers on, and so does api_url
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        try:
            cfg["restapi"]["listen"] = cfg["restapi"]["connect_address"] = f"127.0.0.1:{taken}"
            cfg["tags"]["datacenter"] = "east"
            node.write_config()
            node.reload()
            text = node.wait_for_log("the REST API keeps its previous listen address and TLS settings", 30)
            assert f"REST API: cannot listen on 127.0.0.1:{taken} (address in use or not available); keeping " \
                   f"the running server on 127.0.0.1:{new}" in text, text[-3000:]
            assert status(f"http://127.0.0.1:{new}/primary") == 200
            m = c.wait_value("members/node1", lambda m: m and m.get("tags", {}).get("datacenter") == "east",
                             timeout=15)  # the rest of the reload applied
            assert m["api_url"] == f"http://127.0.0.1:{new}/patroni"
        finally:
            busy.close()
        assert leader_key(c) == key
        assert status(f"http://127.0.0.1:{new}/primary") == 200
        text = node.log_text()
        assert "demot" not in text.lower(), text[-3000:]
        assert_clean_shutdown(node)
    finally:
        c.destroy()


def test_renewed_certificate_reload(etcd_cluster, short_base, unique_name):
    pki = make_pki(os.path.join(short_base, "pki"))
    d = os.path.dirname(pki["ca.crt"])
    live = os.path.join(d, "live.crt")
    shutil.copy(pki["server.crt"], live)
    os.chmod(live, 0o644)
    # the renewal of the server certificate (same key, a new serial), installed later
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "renewed.crt", "-days", "3", "-extfile", "server.ext", cwd=d)
    renewed = os.path.join(d, "renewed.crt")
    c = HaCluster(short_base, n=1, scope=unique_name, etcd=etcd_cluster, bootstrap=TIMINGS,
                  restapi={"certfile": live, "keyfile": pki["server.key"]})
    try:
        node = c.nodes["node1"]
        node.start()
        assert c.wait_leader(90) == "node1"
        port = rest_port(node)
        url = f"https://127.0.0.1:{port}/primary"
        h.wait_until(lambda: status(url, verify=pki["ca.crt"]) == 200, 60, msg="node1 answering as primary")
        key = leader_key(c)

        def served():
            return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", port), timeout=5))

        def der(path):
            with open(path) as f:
                return ssl.PEM_cert_to_DER_cert(f.read())
        assert served() == der(pki["server.crt"])

        # the certificate renewed in place (same path, same key): served after the reload
        assert der(renewed) != der(pki["server.crt"])
        shutil.copy(renewed, live + ".tmp")
        os.chmod(live + ".tmp", 0o644)
        os.replace(live + ".tmp", live)
        node.reload()
        node.wait_for_log(f"REST API: listening on 127.0.0.1:{port} with new TLS settings", 30)
        h.wait_until(lambda: served() == der(renewed), 10, msg="the renewed certificate served")
        assert status(url, verify=pki["ca.crt"]) == 200

        # a certificate that does not fit the key: refused before anything moves, the renewed one stays
        shutil.copy(pki["client.crt"], live + ".tmp")
        os.chmod(live + ".tmp", 0o644)
        os.replace(live + ".tmp", live)
        node.reload()
        text = node.wait_for_log("keeping the running server and its settings", 30)
        assert f"REST API: restapi: cannot use certificate '{live}' with key" in text, text[-3000:]
        assert served() == der(renewed)
        assert status(url, verify=pki["ca.crt"]) == 200
        assert leader_key(c) == key
        assert_clean_shutdown(node)
    finally:
        c.destroy()


def etcdctl(cluster, *args, user=None):
    """etcdctl (API 3) against every member of cluster."""
    cmd = [ETCDCTL_BIN, "--endpoints", ",".join(cluster.client_urls), "--dial-timeout", "2s",
           "--command-timeout", "5s"]
    if user:
        cmd += ["--user", user]
    p = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, ETCDCTL_API="3"))
    assert p.returncode == 0, f"etcdctl {' '.join(args)}: exit {p.returncode}: {p.stdout}{p.stderr}"
    return p.stdout


def root_call(cluster, path, body):
    """POST body to /v3/<path> as etcd's root user (authentication is on)."""
    url = cluster.client_urls[0]
    token = requests.post(f"{url}/v3/auth/authenticate", json={"name": "root", "password": "rootpw"},
                          timeout=5).json()["token"]
    return requests.post(f"{url}/v3/{path}", json=body, headers={"Authorization": token}, timeout=5).json()


def root_kv(cluster, key):
    """The kv of key (value, lease, create_revision), or None."""
    kvs = root_call(cluster, "kv/range", {"key": base64.b64encode(key.encode()).decode()}).get("kvs") or []
    if not kvs:
        return None
    return {"value": base64.b64decode(kvs[0]["value"]).decode(), "lease": kvs[0].get("lease"),
            "create_revision": kvs[0].get("create_revision")}


def test_etcd_settings_reload(short_base, unique_name, fresh_etcd):
    """etcd3 settings reloaded on a running leader (etcd3_reload.c): each new setting is tested on a side
    connection and taken only when it works and reaches the same etcd cluster. hosts moved to one member, then
    all three with credentials (authentication then switched on in etcd: the new credentials are in use);
    a wrong password and the hosts of another etcd cluster refused with the reason logged. The leader keeps
    its key and lease throughout, the lease kept alive after the refusals, the replica keeps following,
    nothing is written to the other cluster."""
    c = HaCluster(short_base, n=2, scope=unique_name, bootstrap=TIMINGS)  # an etcd cluster of its own
    try:
        node, replica = c.nodes["node1"], c.nodes["node2"]
        node.start()
        assert c.wait_leader(90) == "node1"
        replica.start()
        c.wait_streaming("node1", ["node2"], 120)
        port = rest_port(node)
        key = leader_key(c)
        eps = c.etcd.endpoints

        # another member of the same cluster, then all three with credentials (authentication still off)
        node.config["etcd3"]["hosts"] = [eps[1]]
        node.write_config()
        node.reload()
        node.wait_for_log(f"etcd client reloaded: http://{eps[1]} (tested on http://{eps[1]}", 30)
        for n in (node, replica):
            n.config["etcd3"].update({"hosts": eps, "username": "pgha", "password": "s3cret"})
            n.write_config()
            n.reload()
        everyone = ", ".join(f"http://{e}" for e in eps)
        for n in (node, replica):
            n.wait_for_log(f"etcd client reloaded: {everyone} (tested on", 30)
        assert leader_key(c) == key

        # authentication switched on in etcd: the agents go on with the credentials they were reloaded with
        etcdctl(c.etcd, "user", "add", "root:rootpw")
        etcdctl(c.etcd, "role", "add", "pgha")
        etcdctl(c.etcd, "role", "grant-permission", "pgha", "--prefix=true", "readwrite", c.key(""))
        etcdctl(c.etcd, "user", "add", "pgha:s3cret")
        etcdctl(c.etcd, "user", "grant-role", "pgha", "pgha")
        etcdctl(c.etcd, "role", "add", "pgro")
        etcdctl(c.etcd, "role", "grant-permission", "pgro", "--prefix=true", "read", c.key(""))
        etcdctl(c.etcd, "user", "add", "pgro:ro")
        etcdctl(c.etcd, "user", "grant-role", "pgro", "pgro")
        etcdctl(c.etcd, "auth", "enable")

        # a wrong password: refused, the running client stays
        node.config["etcd3"]["password"] = "wrong"
        node.write_config()
        node.reload()
        node.wait_for_log("not applied: authentication failed", 30)
        # a read-only role: it logs in and reads, but may not write the leader key: refused
        node.config["etcd3"].update({"username": "pgro", "password": "ro"})
        node.write_config()
        node.reload()
        node.wait_for_log("the new etcd user cannot write /service/", 30)
        # another etcd cluster (authentication off there: the credentials do not matter): refused
        node.config["etcd3"].update({"hosts": fresh_etcd.endpoints, "username": "pgha", "password": "s3cret"})
        node.write_config()
        node.reload()
        node.wait_for_log("not applied: another etcd cluster there", 30)

        # the lease kept alive by the running client (with the credentials taken before): over 10 s its time to
        # live stays near ttl (20 s: pgha raises ttl=10), where without a keepalive it would fall below 10
        ttls = []
        for _ in range(20):
            kv = root_kv(c.etcd, c.key("leader"))
            assert kv and kv["value"] == "node1" and (kv["lease"], kv["create_revision"]) == key, (kv, key)
            ttls.append(int(root_call(c.etcd, "lease/timetolive", {"ID": kv["lease"]})["TTL"]))
            time.sleep(0.5)
        assert min(ttls) >= 13, ttls
        assert status(f"http://127.0.0.1:{port}/primary") == 200
        assert c.streaming_replicas("node1") == ["node2"]
        assert fresh_etcd.get_prefix("/service/") == {}
        for n in (node, replica):
            text = n.log_text()
            assert "demot" not in text.lower() and "granting a new one" not in text, text[-3000:]
            assert "takes effect after a restart" not in text, text[-3000:]
        assert_clean_shutdown(replica)
        assert_clean_shutdown(node)
    finally:
        c.destroy()
