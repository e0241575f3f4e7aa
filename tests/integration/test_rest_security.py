"""REST API security and robustness (spec §2.1): Basic authentication and the allowlist on unsafe endpoints,
unauthenticated health checks, extra headers and the Server header, HTTPS with a CA made here by openssl,
verify_client: required, clear startup errors for bad TLS settings, bounded requests and malformed ones,
and the leader keeping its lease through all of it."""

import base64
import http.client
import os
import socket
import ssl
import subprocess
import time

import pytest
import requests

import pghatest as h
from hacluster import HaCluster

pytestmark = pytest.mark.needs_root

USER, PASSWORD = "pgha-admin", "s3cr:et"
AUTH = (USER, PASSWORD)
# a restart request that passes access control and changes nothing on a primary: its filter does not match
REPLICA_ONLY = "{\"role\":\"replica\"}"
NOT_MATCHING = "restart conditions are not satisfied"

_count = iter(range(1000))


@pytest.fixture
def short_base(run_dir):
    """A short directory: PostgreSQL's unix socket path must stay under 108 bytes."""
    return run_dir.subdir(f"rs{next(_count)}")


# ------------------------------------------------------------------------------------------ helpers


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d):
    """A CA, a server certificate for 127.0.0.1 (key encrypted with a password and in the clear), a client
    certificate signed by the CA and a self-signed one it does not know. Returns the paths."""
    h.make_dir(d, mode=0o755)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=pgha test CA",
             cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=pgha test {name}",
                 cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    _openssl("pkey", "-in", "server.key", "-aes256", "-passout", "pass:keypass", "-out", "server.enc.key", cwd=d)
    _openssl("req", "-x509", *ec, "-keyout", "rogue.key", "-out", "rogue.crt", "-days", "2", "-subj", "/CN=rogue",
             cwd=d)
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)  # the agent runs as postgres
    return {k: os.path.join(d, k) for k in os.listdir(d)}


def raw_request(port, method, path, headers=None, body=None, source="127.0.0.1", timeout=10):
    """One HTTP request from a chosen loopback source address; returns (status, headers dict, body str)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
    finally:
        c.close()


def raw_bytes(port, data, timeout=20):
    """Send raw bytes (the peer may stop reading early) and return everything it answers before closing."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out.decode(errors="replace")
    finally:
        s.close()


def status_of(raw):
    line = raw.split("\r\n", 1)[0]
    return int(line.split()[1]) if line.startswith("HTTP/") else None


def rest_port(node):
    return int(node.config["restapi"]["listen"].rsplit(":", 1)[1])


def lease_of(cluster, leader):
    """The leader key's lease id and its remaining TTL."""
    kv = cluster.etcd.get_kv(cluster.key("leader"))
    assert kv and kv["value"] == leader, kv
    return kv["lease"], cluster.etcd.lease_ttl(kv["lease"])


def assert_clean_shutdown(node):
    """SIGTERM: the agent exits 0, and a sanitizer build reports no error or leak."""
    assert node.stop(timeout=60) == 0
    text = node.log_text()
    assert "Sanitizer" not in text and "runtime error" not in text, text[-3000:]


# ------------------------------------------------------------------------------------------ HTTP


@pytest.fixture
def http_cluster(etcd_cluster, short_base, unique_name):
    c = HaCluster(short_base, n=1, scope=unique_name, etcd=etcd_cluster, restapi={
        "authentication": {"username": USER, "password": PASSWORD},
        "allowlist": ["127.0.0.1/32", "::1"],
        "http_extra_headers": {"X-Frame-Options": "DENY", "X-Pgha-Test": "http"},
        "https_extra_headers": {"Strict-Transport-Security": "max-age=31536000"},
        "server_tokens": "ProductOnly",
        "request_queue_size": 64,
    })
    yield c
    c.destroy()


def test_http_auth_allowlist_headers_and_bounds(http_cluster):
    c = http_cluster
    node = c.nodes["node1"]
    node.start()
    leader = c.wait_leader(90)
    assert leader == "node1"
    h.wait_until(lambda: c.is_primary("node1"), 60, msg="node1 to be a primary")
    port = rest_port(node)
    h.wait_until(lambda: raw_request(port, "GET", "/primary")[0] == 200, 30, msg="GET /primary 200")
    lease, _ = lease_of(c, leader)
    log_size = len(node.log_text())

    # safe endpoints: no authentication, from anywhere (also outside the allowlist); extra headers and Server
    for src in ("127.0.0.1", "127.0.0.2"):
        st, hdrs, body = raw_request(port, "GET", "/patroni", source=src)
        assert st == 200 and '"state": "running"' in body
        assert hdrs["x-frame-options"] == "DENY" and hdrs["x-pgha-test"] == "http"
        assert "strict-transport-security" not in hdrs  # https_extra_headers only with TLS
        assert hdrs["server"] == "Patroni"
        assert hdrs["content-type"] == "application/json"
    for method in ("HEAD", "OPTIONS"):
        st, hdrs, _ = raw_request(port, method, "/primary")
        assert st == 200
        assert "x-pgha-test" not in hdrs  # status-only responses carry no headers of ours
    assert raw_request(port, "GET", "/replica")[0] == 503
    assert raw_request(port, "GET", "/health")[0] == 200

    # unsafe endpoints: Basic authentication
    st, hdrs, body = raw_request(port, "POST", "/restart", body="{}")
    assert (st, body) == (401, "no auth header received")
    assert hdrs["www-authenticate"] == 'Basic realm="Patroni"'
    assert hdrs["x-pgha-test"] == "http" and hdrs["server"] == "Patroni"
    for auth in ((USER, "wrong"), ("nobody", PASSWORD), (USER, PASSWORD + "x"), (USER, PASSWORD[:-1])):
        r = requests.post(f"http://127.0.0.1:{port}/restart", json={}, auth=auth, timeout=5)
        assert (r.status_code, r.text) == (401, "not authenticated"), auth
        assert r.headers["WWW-Authenticate"] == 'Basic realm="Patroni"'
    st, _, body = raw_request(port, "DELETE", "/switchover", headers={"Authorization": "Bearer abc"})
    assert (st, body) == (401, "not authenticated")
    st, _, body = raw_request(port, "PATCH", "/config", headers={"Authorization": "Basic !!notbase64"}, body="{}")
    assert (st, body) == (401, "not authenticated")
    # the right credentials pass access control: to the command (harmless ones: filters that do not match,
    # nothing scheduled, the leader refusing to reinitialize itself)
    for method, path, body, want in (("POST", "/restart", {"role": "replica"}, (503, NOT_MATCHING)),
                                     ("DELETE", "/restart", None, (404, "no restarts are scheduled")),
                                     ("POST", "/reinitialize", {}, (503, "I am the leader, can not reinitialize"))):
        r = requests.request(method, f"http://127.0.0.1:{port}{path}", json=body, auth=AUTH, timeout=60)
        assert (r.status_code, r.text) == want, (method, path, r.status_code, r.text)
    r = requests.delete(f"http://127.0.0.1:{port}/switchover", auth=AUTH, timeout=60)
    assert (r.status_code, r.text) == (404, "no switchover is scheduled")
    r = requests.patch(f"http://127.0.0.1:{port}/config", json={"pause": False}, auth=AUTH, timeout=60)
    assert r.status_code == 200 and r.json().get("pause") is False, (r.status_code, r.text)

    # the allowlist comes first: outside it, even the right credentials get 403
    good = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    st, hdrs, body = raw_request(port, "POST", "/restart", headers={"Authorization": good}, body="{}",
                                 source="127.0.0.2")
    assert (st, body) == (403, "Access is denied")
    assert hdrs["x-pgha-test"] == "http"
    st, _, body = raw_request(port, "POST", "/restart%0aFAKE%20LOG%20LINE", body="{}", source="127.0.0.2")
    assert (st, body) == (403, "Access is denied")
    assert raw_request(port, "POST", "/restart", headers={"Authorization": good}, body=REPLICA_ONLY)[0] == 503

    # bounds: a body beyond 64 KiB, headers beyond the connection's memory: 4xx, at once
    # (only the headers are sent: the answer comes before the body is read)
    raw = raw_bytes(port, b"POST /restart HTTP/1.1\r\nHost: x\r\nAuthorization: " + good.encode() +
                    b"\r\nContent-Length: 1048576\r\n\r\n" + b"x" * 1000)
    assert status_of(raw) == 413, raw[:200]
    assert "Request body too large" in raw
    # the body bound applies after access control: without credentials the answer is still 401
    raw = raw_bytes(port, b"POST /restart HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
    assert status_of(raw) == 401, raw[:200]
    raw = raw_bytes(port, b"GET /patroni HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n")
    assert status_of(raw) in (400, 413, 431), raw[:200]
    raw = raw_bytes(port, b"GET /" + b"p" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(raw) in (400, 413, 414, 431), raw[:200]
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 50) for i in range(2000))
    raw = raw_bytes(port, b"GET /patroni HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert status_of(raw) in (400, 413, 431), raw[:200]
    # malformed requests: a clear 4xx (505 for an unknown HTTP version), or a closed connection
    for junk in (b"GARBAGE\r\n\r\n", b"GET /patroni HTTP/9.9\r\n\r\n", b"GET /patroni HTTP/1.1\r\nno colon\r\n\r\n",
                 b"POST /restart HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                 b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 64):
        raw = raw_bytes(port, junk)
        st = status_of(raw)
        assert st is None or 400 <= st < 500 or st == 505, (junk, raw[:200])  # 505: HTTP/9.9
        assert st is not None or raw == "", (junk, raw[:200])
    # a chunked body beyond the bound: the connection is closed, no hang
    chunk = b"%x\r\n%s\r\n" % (60000, b"y" * 60000)
    raw = raw_bytes(port, b"POST /restart HTTP/1.1\r\nHost: x\r\nAuthorization: " + good.encode() +
                    b"\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3 + b"0\r\n\r\n")
    assert status_of(raw) in (None, 413), raw[:200]
    # a client that sends nothing is dropped after the connection timeout (10 s)
    t0 = time.monotonic()
    assert raw_bytes(port, b"GET /patroni HTTP/1.1\r\n", timeout=30) == ""
    assert time.monotonic() - t0 < 25

    # health checks wrote nothing to the log; the refused commands did
    new_log = node.log_text()[log_size:]
    assert "/primary" not in new_log and "/patroni" not in new_log and "/health" not in new_log, new_log
    assert "POST /restart from 127.0.0.2 refused: 403 Access is denied" in new_log
    assert "POST /restart?FAKE LOG LINE from 127.0.0.2 refused" in new_log  # no line of the client's making

    # through all of it the agent kept running and kept its leader lease
    assert node.is_running()
    lease2, ttl = lease_of(c, leader)
    assert lease2 == lease and ttl > 0
    assert raw_request(port, "GET", "/primary")[0] == 200

    # a reload (SIGHUP) applies new access settings to the running server (a cafile without a certfile: no TLS,
    # the server is not restarted; test_reload.py moves it)
    cfg = node.config
    cfg["restapi"]["authentication"]["password"] = "n3w"
    cfg["restapi"]["allowlist"] = ["127.0.0.0/30"]
    cfg["restapi"]["http_extra_headers"] = {"X-Pgha-Test": "reloaded"}
    cfg["restapi"]["cafile"] = "/nonexistent/ca.crt"
    node.write_config()
    node.reload()
    text = node.wait_for_log("restapi.allowlist: [127.0.0.1/32, ::1] -> [127.0.0.0/30]\n", timeout=30)
    assert "restapi.cafile: (unset) -> /nonexistent/ca.crt\n" in text
    assert "need a restart of pgha" not in text and "REST API: listening on" not in text

    def new_settings_active():
        st, hdrs, _ = raw_request(port, "POST", "/restart", body=REPLICA_ONLY, source="127.0.0.2",
                                  headers={"Authorization": "Basic " + base64.b64encode(f"{USER}:n3w".encode()).decode()})
        return st == 503 and hdrs.get("x-pgha-test") == "reloaded"
    h.wait_until(new_settings_active, 15, msg="the reloaded credentials and allowlist")
    r = requests.post(f"http://127.0.0.1:{port}/restart", json={}, auth=AUTH, timeout=5)
    assert (r.status_code, r.text, r.headers["X-Pgha-Test"]) == (401, "not authenticated", "reloaded")
    assert raw_request(port, "POST", "/restart", body="{}", source="127.0.0.5")[0] == 403
    assert raw_request(port, "GET", "/patroni")[1]["x-pgha-test"] == "reloaded"
    assert_clean_shutdown(node)


# ------------------------------------------------------------------------------------------ HTTPS


@pytest.fixture
def pki(short_base):
    return make_pki(os.path.join(short_base, "pki"))


def test_https_verify_client_required(etcd_cluster, short_base, unique_name, pki):
    c = HaCluster(short_base, n=1, scope=unique_name, etcd=etcd_cluster, restapi={
        "certfile": pki["server.crt"],
        "keyfile": pki["server.enc.key"],
        "keyfile_password": "keypass",
        "cafile": pki["ca.crt"],
        "verify_client": "required",
        "allowlist_include_members": True,  # the members' api_url hosts: 127.0.0.1 only
        "authentication": {"username": USER, "password": PASSWORD},
        "http_extra_headers": {"X-Pgha-Test": "http"},
        "https_extra_headers": {"Strict-Transport-Security": "max-age=31536000", "X-Pgha-Test": "https"},
    }, ctl={"certfile": pki["client.crt"], "keyfile": pki["client.key"], "cacert": pki["ca.crt"]})
    try:
        node = c.nodes["node1"]
        node.start()
        assert c.wait_leader(90) == "node1"
        port = rest_port(node)
        base = f"https://127.0.0.1:{port}"
        client = (pki["client.crt"], pki["client.key"])

        def get(path, **kw):
            return requests.get(base + path, verify=pki["ca.crt"], timeout=5, **kw)

        h.wait_until(lambda: get("/primary", cert=client).status_code == 200, 60, msg="GET /primary over HTTPS")
        r = get("/patroni", cert=client)
        assert r.status_code == 200 and r.json()["role"] == "primary"
        assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
        assert r.headers["X-Pgha-Test"] == "https"  # https_extra_headers win over http_extra_headers
        assert r.headers["Server"].startswith("pgha/")  # server_tokens: Original (default)
        # the member publishes an https api_url
        assert c.member("node1")["api_url"] == f"https://127.0.0.1:{port}/patroni"

        # no client certificate, or one the CA did not sign: refused (connection closed, no answer)
        for cert in (None, (pki["rogue.crt"], pki["rogue.key"])):
            with pytest.raises(requests.exceptions.ConnectionError):
                get("/patroni", cert=cert)
            with pytest.raises(requests.exceptions.ConnectionError):
                requests.post(base + "/restart", json={}, auth=AUTH, verify=pki["ca.crt"], cert=cert, timeout=5)
        # the server certificate verifies against the CA only
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(base + "/patroni", cert=client, timeout=5)
        # plain HTTP on the TLS port gets nothing useful
        raw = raw_bytes(port, b"GET /patroni HTTP/1.0\r\n\r\n", timeout=15)
        assert "running" not in raw

        # with the certificate: Basic authentication still applies to unsafe endpoints
        r = requests.post(base + "/restart", json={}, verify=pki["ca.crt"], cert=client, timeout=5)
        assert (r.status_code, r.text) == (401, "no auth header received")
        assert r.headers["X-Pgha-Test"] == "https"
        r = requests.post(base + "/restart", json={}, auth=(USER, "x"), verify=pki["ca.crt"], cert=client, timeout=5)
        assert (r.status_code, r.text) == (401, "not authenticated")
        r = requests.post(base + "/restart", json={"role": "replica"}, auth=AUTH, verify=pki["ca.crt"], cert=client,
                          timeout=60)
        assert (r.status_code, r.text) == (503, NOT_MATCHING)
        # allowlist_include_members: a client at another address than the members' is refused first
        ctx = ssl.create_default_context(cafile=pki["ca.crt"])
        ctx.load_cert_chain(*client)
        good = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        for src, want in (("127.0.0.2", (403, "Access is denied")), ("127.0.0.1", (503, NOT_MATCHING))):
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, source_address=(src, 0), context=ctx)
            try:
                conn.request("POST", "/restart", body=REPLICA_ONLY, headers={"Authorization": good})
                resp = conn.getresponse()
                text = resp.read().decode()
                assert resp.status == want[0] and (want[1] is None or text == want[1]), (src, resp.status, text)
            finally:
                conn.close()
            assert get("/patroni", cert=client).status_code == 200
        assert node.is_running()
        assert_clean_shutdown(node)
    finally:
        c.destroy()


def test_tls_settings_errors_are_clear_startup_errors(etcd_cluster, short_base, unique_name, pki):
    cases = [
        ({"certfile": pki["server.crt"], "keyfile": pki["server.enc.key"], "keyfile_password": "wrong"},
         "wrong restapi.keyfile_password"),
        ({"certfile": pki["server.crt"], "keyfile": pki["server.enc.key"]}, "without restapi.keyfile_password"),
        ({"certfile": os.path.join(short_base, "missing.crt")}, "restapi.certfile: cannot open"),
        ({"certfile": pki["server.crt"], "keyfile": pki["client.key"]}, "cannot use certificate"),
        ({"certfile": pki["server.crt"], "keyfile": pki["server.key"], "verify_client": "required"},
         "restapi.verify_client needs restapi.cafile"),
        ({"certfile": pki["server.crt"], "keyfile": pki["server.key"], "cafile": pki["server.ext"],
          "verify_client": "optional"}, "restapi.cafile: no usable CA certificate"),
        ({"certfile": pki["server.crt"], "keyfile": pki["server.key"], "ciphers": "NOT-A-CIPHER-LIST:XYZ"},
         "restapi.ciphers"),
    ]
    ports = h.allocate_ports(2)
    for i, (restapi, message) in enumerate(cases):
        cfg = h.make_node_config(f"bad{i}", unique_name, etcd_cluster.endpoints, ports[0], ports[1], short_base,
                                 restapi=restapi)
        node = h.PghaNode(cfg, short_base)
        try:
            node.start()
            node.wait(timeout=60)
            assert node.returncode != 0
            text = node.log_text()
            assert message in text, text[-2000:]
            assert "REST API:" in text
            assert "AddressSanitizer" not in text and "runtime error" not in text
        finally:
            node.destroy()
