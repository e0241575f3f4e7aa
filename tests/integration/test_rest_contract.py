"""The REST API contract (spec §2.1-2.4): every GET/HEAD/OPTIONS endpoint and every health-check rule of
§2.3, with status codes, headers and JSON documents, on one 2-node cluster taken through its states in
order: a primary and a streaming replica (with ?lag=, tag filters, noloadbalance, a pending restart),
synchronous and quorum mode, a paused cluster (and a switchover in it), a cluster without a leader, and
nodes that lost the DCS (paused, then not paused). Then the server's robustness: slow and idle clients,
oversized and malformed requests, garbage bodies on the command endpoints, while the leader keeps its
lease, load-balancer probes answer fast and health checks write nothing to the log.

Where pgha differs from Patroni on purpose or through libmicrohttpd, the test accepts both and says so:
status-only answers (HEAD, OPTIONS, /liveness, /readiness) carry Date/Content-Length/Connection headers
(Patroni writes the bare status line), and the protocol version of an answer is HTTP/1.1.
Not checked here: /metrics (test_metrics.py), the command endpoints' own rules (test_rest_commands.py),
authentication and TLS (test_rest_security.py), and what Patroni 4.1 adds to /readiness, /cluster and
/patroni (receive/replay LSN and lag): documents may carry extra fields, and /readiness is asserted only
where Patroni 4.0 and 4.1 agree.

Timings: ttl 10 (pgha.allow_short_ttl), loop_wait 2, retry_timeout 3."""

import base64
import concurrent.futures
import json
import re
import socket
import threading
import time
import uuid

import pytest

import pghatest as h
from hacluster import HaCluster, SharedCluster

pytestmark = pytest.mark.needs_root

TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 2, 3
DCS = {"ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT}
# node2's tags: a string, a float, a custom boolean, and a predefined boolean that is false (Patroni
# publishes only the true ones, and a tag filter treats a false one as absent)
NODE2_TAGS = {"dc": "east", "weight": 1.5, "flag": True, "nosync": False}
NODE2_PUBLISHED_TAGS = {"dc": "east", "weight": 1.5, "flag": True}

# the health checks of §2.3 (and a path no rule matches)
PATHS = ["/", "/primary", "/master", "/read-write", "/leader", "/standby-leader", "/standby_leader", "/replica",
         "/read-only", "/health", "/sync", "/synchronous", "/async", "/asynchronous", "/quorum", "/read-only-sync",
         "/read-only-synchronous", "/read-only-quorum", "/no-such-check"]
LEADERISH = {"/", "/primary", "/master", "/read-write", "/leader"}


def codes(ok, default=503):
    """{path: code} for PATHS: 200 for those in `ok`, else `default`."""
    return {p: 200 if p in ok else default for p in PATHS}


# The expected codes per state (§2.3 applied by hand; each state's reasoning is in its test)
PRIMARY = codes(LEADERISH | {"/read-only", "/health", "/read-only-sync", "/read-only-synchronous", "/read-only-quorum"})
REPLICA_ASYNC = codes({"/replica", "/read-only", "/health", "/async", "/asynchronous"})
REPLICA_SYNC = codes({"/replica", "/read-only", "/health", "/sync", "/synchronous", "/read-only-sync",
                      "/read-only-synchronous"})
REPLICA_QUORUM = codes({"/replica", "/read-only", "/health", "/quorum", "/read-only-quorum"})

# Field order of the status document (§2.2) and of /cluster (§2.4); other fields may come in between
STATUS_ORDER = ["state", "postmaster_start_time", "role", "server_version", "xlog", "sync_standby", "quorum_standby",
                "timeline", "replication_state", "replication", "pause", "cluster_unlocked",
                "failsafe_mode_is_active", "dcs_last_seen", "tags", "database_system_identifier", "pending_restart",
                "pending_restart_reason", "patroni", "scheduled_restart", "watchdog_failed", "logger_queue_size",
                "logger_records_lost"]
MEMBER_ORDER = ["name", "role", "state", "api_url", "host", "port", "timeline", "pending_restart",
                "pending_restart_reason", "scheduled_restart", "tags", "lag"]
CLUSTER_ORDER = ["members", "pause", "scheduled_switchover", "scope"]
# the headers libmicrohttpd puts on a status-only answer (Patroni sends none)
MHD_HEADERS = {"date", "content-length", "connection"}
# what a health check or status request would leave in the log if it were logged
PROBE_WORDS = ["/primary", "/replica", "/health", "/patroni", "/readiness", "/liveness", "/read-only", "/leader",
               "/cluster", "/history", "/failsafe", "/async", "/sync", "/quorum", "/no-such-check", "GET ", "HEAD ",
               "OPTIONS "]


# ------------------------------------------------------------------------------------------ HTTP helpers


class Resp:
    def __init__(self, raw):
        self.raw = raw
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        parts = self.status_line.split(" ", 2)
        self.version = parts[0]
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        self.reason = parts[2] if len(parts) > 2 else ""
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()

    @property
    def text(self):
        return self.body.decode()

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Resp {self.status_line!r} {self.headers} {self.body[:300]!r}>"


def rest_port(node):
    return int(node.config["restapi"]["listen"].rsplit(":", 1)[1])


def raw_exchange(port, data, timeout=20):
    """Send raw bytes, read until the server closes; returns (bytes received, seconds until closed)."""
    t0 = time.monotonic()
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
        return out, time.monotonic() - t0
    finally:
        s.close()


def call(node, method, path, body=None, headers=None, timeout=20):
    """One HTTP/1.0 request (the server closes after answering, as Patroni's HTTP/1.0 server does)."""
    hdrs = dict(headers or {})
    if body is not None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        hdrs.setdefault("Content-Length", str(len(body)))
    req = f"{method} {path} HTTP/1.0\r\n".encode() + b"".join(
        f"{k}: {v}\r\n".encode() for k, v in hdrs.items()) + b"\r\n" + (body or b"")
    raw, _ = raw_exchange(rest_port(node), req, timeout)
    return Resp(raw)


def get_json(node, path):
    r = call(node, "GET", path)
    assert r.status == 200, r
    return r.json()


def status(node):
    return get_json(node, "/patroni")


def status_of(raw):
    line = raw.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    return int(parts[1]) if line.startswith("HTTP/") and len(parts) > 1 and parts[1].isdigit() else None


def check_order(keys, order, what):
    known = [k for k in keys if k in order]
    assert known == sorted(known, key=order.index), f"{what}: fields out of Patroni's order: {keys}"


def check_status_only(r, code, what):
    """A status-only answer (HEAD, OPTIONS, /liveness, /readiness): the status line, no body, none of
    our headers (libmicrohttpd's Date/Content-Length/Connection are tolerated)."""
    assert r.status == code, f"{what}: {r}"
    assert r.body == b"", f"{what}: a status-only answer has no body: {r}"
    extra = set(r.headers) - MHD_HEADERS
    assert not extra, f"{what}: headers beyond the status line: {extra}"
    assert r.headers.get("content-length", "0") == "0", f"{what}: {r}"


def check_json_answer(r, code, what):
    assert r.status == code, f"{what}: {r}"
    assert r.headers.get("content-type") == "application/json", f"{what}: {r}"
    assert r.headers.get("server", "").startswith("pgha/"), f"{what}: {r}"  # server_tokens: Original
    assert int(r.headers["content-length"]) == len(r.body), f"{what}: {r}"
    # Python's json.dumps spacing
    assert r.body.startswith(b'{"') or r.body.startswith(b"["), f"{what}: {r}"
    if len(r.json()) > 1 and isinstance(r.json(), dict):
        assert b'", "' in r.body or b', "' in r.body, f"{what}: not Python's spacing: {r.body[:200]!r}"
        assert b'": ' in r.body and b'":"' not in r.body, f"{what}: not Python's spacing: {r.body[:200]!r}"
    return r.json()


def check_error_page(r, code, what):
    """Python's send_error(): an HTML page, text/html;charset=utf-8."""
    assert r.status == code, f"{what}: {r}"
    assert r.headers.get("content-type") == "text/html;charset=utf-8", f"{what}: {r}"
    assert f"Error code: {code}".encode() in r.body, f"{what}: {r}"


def health_codes(node, paths=PATHS, query=""):
    """{path: (GET code, HEAD code, OPTIONS code)}; the GET answers carry the status document, the others
    are status-only."""
    out = {}
    for p in paths:
        g = call(node, "GET", p + query)
        doc = check_json_answer(g, g.status, f"GET {p}{query} on {node.name}")
        assert doc["patroni"]["name"] == node.name
        hd = call(node, "HEAD", p + query)
        check_status_only(hd, hd.status, f"HEAD {p}{query}")
        op = call(node, "OPTIONS", p + query)
        check_status_only(op, op.status, f"OPTIONS {p}{query}")
        out[p] = (g.status, hd.status, op.status)
    return out


def check_codes(node, expected, query="", what=""):
    got = health_codes(node, list(expected), query)
    wrong = {p: got[p] for p in expected if got[p] != (expected[p],) * 3}
    assert not wrong, f"{what} on {node.name}: (GET, HEAD, OPTIONS) differ from the expected " \
                      f"{ {p: expected[p] for p in wrong} }: {wrong}"


def wait_codes(node, expected, timeout=60, query="", what=""):
    """Wait until GET answers every path with its expected code, then check GET, HEAD and OPTIONS."""
    last = {}

    def done():
        got = {p: call(node, "GET", p + query).status for p in expected}
        last.clear()
        last.update({p: (got[p], c) for p, c in expected.items() if got[p] != c})
        return not last
    try:
        h.wait_until(done, timeout, interval=0.3, msg=f"{what}: the expected health-check codes on {node.name}")
    except h.WaitTimeout as e:
        raise h.WaitTimeout(f"{e}; (got, expected) where they differ: {last}; /patroni: {status(node)}") from None
    check_codes(node, expected, query, what)


def code(node, path, method="GET"):
    return call(node, method, path).status


def closes_without_answer(node, path):
    """True when the server closes the connection without answering (Patroni: an exception in the
    handler, e.g. the DCS cannot be read)."""
    raw, _ = raw_exchange(rest_port(node), f"GET {path} HTTP/1.0\r\n\r\n".encode(), 15)
    return raw == b""


# ------------------------------------------------------------------------------------------ the cluster


class ContractCluster(HaCluster):
    def __init__(self, basedir, etcd):
        super().__init__(basedir, n=2, scope=f"contract-{uuid.uuid4().hex[:6]}", etcd=etcd,
                         bootstrap={"dcs": DCS}, pgha={"allow_short_ttl": True},
                         node_overrides={"node2": {"tags": NODE2_TAGS}})
        self.baseline_config = None

    def roles(self):
        """(leader node, replica node)."""
        leader = self.leader()
        other = next(n for n in self.nodes if n != leader)
        return self.nodes[leader], self.nodes[other]

    def patch_config(self, node, patch):
        r = call(node, "PATCH", "/config", patch, timeout=60)
        assert r.status == 200, r
        return r.json()

    def wait_streaming_status(self, node, timeout=60):
        """The replica's agent publishes it as streaming (its snapshot, not just pg_stat_replication)."""
        return h.wait_until(lambda: (lambda s: s if s.get("replication_state") == "streaming" else None)(
            status(node)), timeout, msg=f"{node.name}'s /patroni to show a streaming replica")

    def reset(self):
        """Back to the baseline between scenarios: etcd running, /config as bootstrapped, no empty leader key,
        one leader, the other node streaming and published as such."""
        self.etcd.ensure_all_running()
        kv = self.etcd.get_kv(self.key("leader"))
        if kv is not None and kv["value"] == "":
            self.etcd.delete(self.key("leader"))
        if self.baseline_config is not None and self.etcd.get(self.key("config")) != self.baseline_config:
            self.etcd.put(self.key("config"), self.baseline_config)
        self.check_healthy(60)
        leader, replica = self.roles()
        h.wait_until(lambda: status(leader).get("pause") is None and code(leader, "/primary") == 200, 60,
                     msg="the leader to answer /primary, unpaused")
        self.wait_streaming_status(replica)
        h.wait_until(lambda: [(x["application_name"], x["state"]) for x in status(leader).get("replication", [])]
                     == [(replica.name, "streaming")], 30, msg="the leader's /patroni to list the streaming replica")


def build(etcd):
    def build_cluster(basedir):
        c = ContractCluster(basedir, etcd)
        try:
            c.start(["node1"])
            c.wait_leader(60)
            c.start(["node2"])
            c.wait_healthy(120)
            c.baseline_config = c.wait_value("config", lambda v: v is not None and "ttl" in v, 30) and \
                c.etcd.get(c.key("config"))
            c.reset()
        except BaseException:
            c.destroy(keep=h.keep_requested())
            raise
        return c
    return build_cluster


@pytest.fixture(scope="module")
def shared_cluster(request, run_dir, _etcd_session):
    shared = SharedCluster(run_dir, "contract", build(_etcd_session), check=lambda c: c.reset())
    yield shared
    shared.close(keep=request.session.testsfailed > 0 and h.keep_requested())


@pytest.fixture
def cluster(shared_cluster, etcd_cluster):
    return shared_cluster.acquire()


def log_sizes(c):
    return {n: len(node.log_text()) for n, node in c.nodes.items()}


def new_log(c, sizes):
    return {n: node.log_text()[sizes[n]:] for n, node in c.nodes.items()}


def check_probes_not_logged(c, sizes):
    for name, text in new_log(c, sizes).items():
        hits = [line for line in text.splitlines() if any(w in line for w in PROBE_WORDS)]
        assert not hits, f"{name}: health checks / status requests were logged: {hits[:5]}"


# ------------------------------------------------------------------------------------------ 1. healthy


def test_primary_and_replica(cluster):
    """§2.2-2.4 on a healthy cluster: every health check by GET/HEAD/OPTIONS, the documents, the other
    GET endpoints, unknown methods; ?lag= against a replica whose replay is paused; tag filters;
    noloadbalance; a pending restart with its reason."""
    c = cluster
    sizes = log_sizes(c)
    leader, replica = c.roles()
    assert replica.name == "node2", "node2 (with the tags) is expected to be the replica of a fresh cluster"
    scope = c.scope

    # ---- health checks: the primary holds the lock; the replica is running, streaming, async
    check_codes(leader, PRIMARY, what="primary")
    check_codes(replica, REPLICA_ASYNC, what="replica")
    # the query string is not part of the path; rules match substrings; tags are ignored for leader checks
    assert code(leader, "/primary?foo=bar") == 200 and code(leader, "/leaderboard") == 200
    assert code(replica, "/replica/anything") == 200 and code(replica, "/xreplicax") == 200
    assert code(replica, "/healthz") == 200 and code(replica, "/sync/") == 503 and code(replica, "/async/x") == 503
    # HEAD and OPTIONS always go through the health-check table (no /patroni or /liveness handler)
    for method in ("HEAD", "OPTIONS"):
        for path in ("/patroni", "/liveness", "/readiness", "/cluster", "/config", "/history", "/metrics"):
            r = call(leader, method, path)
            check_status_only(r, 503, f"{method} {path}")
        check_status_only(call(leader, method, "/leader/x"), 200, f"{method} /leader/x")

    # ---- GET /patroni on both (§2.2)
    sysid = c.etcd.get(c.key("initialize"))
    version = int(c.sql(leader.name, "SHOW server_version_num")[0][0])
    for node in (leader, replica):
        r = call(node, "GET", "/patroni")
        doc = check_json_answer(r, 200, f"GET /patroni on {node.name}")
        check_order(list(doc), STATUS_ORDER, f"/patroni of {node.name}")
        assert doc["state"] == "running"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00:00", doc["postmaster_start_time"]), doc
        assert doc["server_version"] == version
        assert doc["timeline"] == 1
        assert doc["database_system_identifier"] == sysid
        assert doc["patroni"] == {"version": "4.0.6", "scope": scope, "name": node.name}
        assert abs(doc["dcs_last_seen"] - time.time()) < 3 * LOOP_WAIT + 5
        for absent in ("pause", "cluster_unlocked", "failsafe_mode_is_active", "sync_standby", "quorum_standby",
                       "pending_restart", "watchdog_failed"):
            assert absent not in doc, (node.name, absent, doc)
        # GET /patroni/<anything> is /patroni
        assert call(node, "GET", "/patroni/x?y=1").json()["patroni"]["name"] == node.name
    p = status(leader)
    assert p["role"] == "primary" and set(p["xlog"]) >= {"location"} and p["xlog"]["location"] > 0
    assert "replication_state" not in p and "tags" not in p
    assert [(x["application_name"], x["state"], x["sync_state"]) for x in p["replication"]] == \
        [(replica.name, "streaming", "async")]
    assert set(p["replication"][0]) >= {"usename", "application_name", "client_addr", "state", "sync_state",
                                        "sync_priority"}
    check_order(list(p["replication"][0]), ["usename", "application_name", "client_addr", "state", "sync_state",
                                            "sync_priority"], "replication")
    r = status(replica)
    assert r["role"] == "replica" and r["replication_state"] == "streaming"
    x = r["xlog"]
    check_order(list(x), ["received_location", "replayed_location", "replayed_timestamp", "paused"], "xlog")
    assert x["received_location"] >= x["replayed_location"] > 0 and x["paused"] is False
    assert "location" not in x and "replication" not in r
    assert r["tags"] == NODE2_PUBLISHED_TAGS  # nosync: false is not published

    # ---- /liveness and /readiness: status-only, 200 on a healthy primary and replica
    for node in (leader, replica):
        for path in ("/liveness", "/readiness"):
            check_status_only(call(node, "GET", path), 200, f"GET {path} on {node.name}")

    # ---- GET /cluster (§2.4): the same from both nodes
    for node in (leader, replica):
        doc = check_json_answer(call(node, "GET", "/cluster"), 200, f"GET /cluster on {node.name}")
        check_order(list(doc), CLUSTER_ORDER, "/cluster")
        assert "pause" not in doc and "scheduled_switchover" not in doc and doc["scope"] == scope
        assert [m["name"] for m in doc["members"]] == ["node1", "node2"]  # sorted by name
        ms = {m["name"]: m for m in doc["members"]}
        for m in doc["members"]:
            check_order(list(m), MEMBER_ORDER, f"/cluster member {m['name']}")
            n = c.nodes[m["name"]]
            assert m["api_url"] == f"{n.rest_url}/patroni"
            assert m["host"] == "127.0.0.1" and m["port"] == n.pg_port and m["timeline"] == 1
        lm, rm = ms[leader.name], ms[replica.name]
        assert (lm["role"], lm["state"]) == ("leader", "running") and "lag" not in lm and "tags" not in lm
        assert (rm["role"], rm["state"]) == ("replica", "streaming")
        assert isinstance(rm["lag"], int) and rm["lag"] >= 0
        assert rm["tags"] == NODE2_PUBLISHED_TAGS

    # ---- /history, /config, /failsafe
    for node in (leader, replica):
        assert check_json_answer(call(node, "GET", "/history"), 200, "GET /history") == []  # timeline 1
        cfg = check_json_answer(call(node, "GET", "/config"), 200, "GET /config")
        assert cfg == json.loads(c.etcd.get(c.key("config")))
        assert {k: cfg[k] for k in DCS} == DCS
        check_error_page(call(node, "GET", "/failsafe"), 502, "GET /failsafe without the key")
    c.etcd.put(c.key("failsafe"), json.dumps({leader.name: leader.rest_url + "/patroni"}))
    try:
        h.wait_until(lambda: call(replica, "GET", "/failsafe").status == 200, 30, msg="GET /failsafe 200")
        assert check_json_answer(call(replica, "GET", "/failsafe"), 200, "GET /failsafe") == \
            {leader.name: leader.rest_url + "/patroni"}
    finally:
        c.etcd.delete(c.key("failsafe"))
    h.wait_until(lambda: call(replica, "GET", "/failsafe").status == 502, 30, msg="GET /failsafe 502 again")
    # /config missing in the DCS: send_error(502) (spec §2.4)
    raw_config = c.etcd.get(c.key("config"))
    c.etcd.delete(c.key("config"))
    try:
        h.wait_until(lambda: call(leader, "GET", "/config").status == 502, 30, msg="GET /config 502")
        check_error_page(call(leader, "GET", "/config"), 502, "GET /config without the key")
    finally:
        c.etcd.put(c.key("config"), raw_config)
    h.wait_until(lambda: call(leader, "GET", "/config").status == 200, 30, msg="GET /config 200 again")

    # ---- methods that no endpoint has: 501 "Unsupported method", Python's error page
    for method, path in (("FOO", "/patroni"), ("POST", "/patroni"), ("PUT", "/primary"), ("DELETE", "/config"),
                         ("PATCH", "/cluster"), ("POST", "/no-such-endpoint"), ("TRACE", "/"), ("get", "/primary")):
        check_error_page(call(leader, method, path, body="{}" if method in ("POST", "PUT", "PATCH") else None),
                         501, f"{method} {path}")

    # ---- tag filters (§2.3 rule 6) on the replica, and where they are ignored or apply on the primary
    tag_cases = [("tag_dc=east", 200), ("tag_dc=west", 503), ("tag_weight=1.5", 200), ("tag_weight=1.50", 503),
                 ("tag_flag=true", 200), ("tag_flag=True", 503), ("tag_nosync=false", 503), ("tag_missing=x", 503),
                 ("tag_dc=east&tag_flag=true", 200), ("tag_dc=east&tag_flag=false", 503), ("other=1", 200)]
    for q, want in tag_cases:
        for path in ("/replica", "/read-only", "/health", "/async"):
            got = (code(replica, f"{path}?{q}"), code(replica, f"{path}?{q}", "HEAD"))
            assert got == (want, want), f"{path}?{q} on the replica: {got}, expected {want}"
    assert code(replica, "/primary?tag_dc=east") == 503  # not a primary whatever the tags
    assert code(leader, "/primary?tag_dc=west") == 200 and code(leader, "/leader?tag_x=y") == 200  # ignored
    assert code(leader, "/read-only?tag_dc=east") == 503  # applied: the primary has no tag dc
    assert code(leader, "/health?tag_dc=east") == 503 and code(leader, "/read-only") == 200

    # ---- ?lag= (§2.3 rule 2): the replica's replay paused while the primary writes WAL
    c.sql(replica.name, "SELECT pg_wal_replay_pause()")
    try:
        c.sql(leader.name, "CREATE TABLE IF NOT EXISTS contract_lag (id int, pad text)")
        c.sql(leader.name, "INSERT INTO contract_lag SELECT g, repeat('x', 200) FROM generate_series(1, 15000) g")
        mib = 1024 * 1024

        def lagging():
            s = status(replica)
            opt = json.loads(c.etcd.get(c.key("status")) or "{}").get("optime", 0)
            x = s["xlog"]
            # received goes on while replay is paused
            return (s, opt) if x["paused"] is True and opt > x["replayed_location"] + 2 * mib and \
                x["received_location"] > x["replayed_location"] + 2 * mib and \
                code(replica, "/replica?lag=1MB") == 503 else None
        s, optime = h.wait_until(lagging, 60, interval=0.5, msg="the replica to lag more than 2 MiB behind /status")
        lag_cases = [("/replica", "", 200), ("/replica", "?lag=1GB", 200), ("/replica", "?lag=100MB", 200),
                     ("/replica", "?lag=1MB", 503), ("/replica", "?lag=1048576", 503), ("/replica", "?lag=1024kB", 503),
                     ("/replica", "?lag=1024%20kB", 503), ("/replica", "?lag=0", 503),
                     ("/replica", "?lag=nonsense", 200), ("/replica", "?lag=10mb", 200),
                     ("/read-only", "?lag=1MB", 503), ("/read-only", "?lag=1GB", 200),
                     ("/async", "?lag=1MB", 503), ("/asynchronous", "?lag=1GB", 200), ("/health", "?lag=1MB", 200),
                     ("/replica", "?lag=1MB&tag_dc=east", 503), ("/replica", "?lag=1GB&tag_dc=east", 200)]
        for path, q, want in lag_cases:
            got = (code(replica, path + q), code(replica, path + q, "OPTIONS"))
            assert got == (want, want), f"{path}{q} on a replica {optime - s['xlog']['replayed_location']} B " \
                                        f"behind: {got}, expected {want}"
        # the primary's checks do not depend on lag
        assert code(leader, "/read-only?lag=0") == 200 and code(leader, "/replica?lag=1GB") == 503
        # /cluster's lag is against the member's xlog_location, the *received* position (Patroni's
        # max(received, replayed)): the paused replay does not show there
        rm = next(m for m in get_json(leader, "/cluster")["members"] if m["name"] == replica.name)
        assert isinstance(rm["lag"], int) and 0 <= rm["lag"] < optime - s["xlog"]["replayed_location"], rm
    finally:
        c.sql(replica.name, "SELECT pg_wal_replay_resume()")
    h.wait_until(lambda: code(replica, "/replica?lag=64kB") == 200 and status(replica)["xlog"]["paused"] is False,
                 60, msg="the replica to catch up")

    # ---- noloadbalance (a reload of node2's tags): no /replica, no /read-only, still /health
    cfg = replica.config
    cfg["tags"]["noloadbalance"] = True
    replica.write_config()
    replica.reload()
    try:
        wait_codes(replica, codes({"/health"}), 30, what="noloadbalance")
        assert status(replica)["tags"] == {**NODE2_PUBLISHED_TAGS, "noloadbalance": True}
        assert code(replica, "/health?tag_noloadbalance=true") == 200
    finally:
        del cfg["tags"]["noloadbalance"]
        replica.write_config()
        replica.reload()
    wait_codes(replica, REPLICA_ASYNC, 30, what="loadbalanced again")

    # ---- a pending restart and its reason, in /patroni and /cluster (§2.2, §2.4)
    c.patch_config(leader, {"postgresql": {"parameters": {"max_connections": 60}}})
    try:
        reason = {"max_connections": {"old_value": "50", "new_value": "60"}}
        for node in (leader, replica):
            doc = h.wait_until(lambda node=node: (lambda s: s if s.get("pending_restart") else None)(status(node)),
                               30, msg=f"{node.name} to report a pending restart")
            assert doc["pending_restart_reason"] == reason, doc
            check_order(list(doc), STATUS_ORDER, "/patroni with a pending restart")
        h.wait_until(lambda: all(m.get("pending_restart") is True and m.get("pending_restart_reason") == reason
                                 for m in get_json(leader, "/cluster")["members"]), 30,
                     msg="/cluster to show both pending restarts")
    finally:
        c.patch_config(leader, {"postgresql": {"parameters": {"max_connections": 50}}})
    for node in (leader, replica):
        h.wait_until(lambda node=node: "pending_restart" not in status(node), 30,
                     msg=f"{node.name}'s pending restart to clear")

    # nothing of the above was logged as a request
    check_probes_not_logged(c, sizes)


# ------------------------------------------------------------------------------------------ 2. sync modes


def test_synchronous_and_quorum_modes(cluster):
    """§2.3's /sync, /async, /quorum, /read-only-sync, /read-only-quorum rules; sync_standby /
    quorum_standby in /patroni; the members' roles in /cluster."""
    c = cluster
    leader, replica = c.roles()
    try:
        c.patch_config(leader, {"synchronous_mode": True})
        h.wait_until(lambda: status(replica).get("sync_standby") is True, 60,
                     msg="the replica to be published as sync_standby")
        wait_codes(replica, REPLICA_SYNC, 30, what="synchronous mode, the sync standby")
        check_codes(leader, PRIMARY, what="synchronous mode, the primary")
        s = status(replica)
        assert "quorum_standby" not in s
        check_order(list(s), STATUS_ORDER, "/patroni of a sync standby")
        roles = {m["name"]: m["role"] for m in get_json(replica, "/cluster")["members"]}
        assert roles == {leader.name: "leader", replica.name: "sync_standby"}
        assert [x["sync_state"] for x in status(leader)["replication"]] == ["sync"]

        c.patch_config(leader, {"synchronous_mode": "quorum"})
        h.wait_until(lambda: status(replica).get("quorum_standby") is True, 60,
                     msg="the replica to be published as quorum_standby")
        wait_codes(replica, REPLICA_QUORUM, 30, what="quorum mode, the quorum standby")
        check_codes(leader, PRIMARY, what="quorum mode, the primary")
        assert "sync_standby" not in status(replica)
        roles = {m["name"]: m["role"] for m in get_json(leader, "/cluster")["members"]}
        assert roles == {leader.name: "leader", replica.name: "quorum_standby"}
    finally:
        c.patch_config(leader, {"synchronous_mode": None})
    h.wait_until(lambda: not ({"sync_standby", "quorum_standby"} & set(status(replica))), 60,
                 msg="the replica to be asynchronous again")
    wait_codes(replica, REPLICA_ASYNC, 30, what="asynchronous again")


# ------------------------------------------------------------------------------------------ 3. paused


def test_paused_cluster(cluster):
    """pause: true in /config: pause in /patroni and /cluster, the same health checks (the leader keeps
    the lock), /liveness 200; a switchover to a named candidate works and the old primary comes back as
    a replica (Patroni's demote() restarts it even in pause); /history records it."""
    c = cluster
    leader, replica = c.roles()
    c.patch_config(leader, {"pause": True})
    try:
        for node in (leader, replica):
            h.wait_until(lambda node=node: status(node).get("pause") is True, 30, msg=f"{node.name} paused")
            check_order(list(status(node)), STATUS_ORDER, "/patroni paused")
            doc = get_json(node, "/cluster")
            assert doc["pause"] is True
            check_order(list(doc), CLUSTER_ORDER, "/cluster paused")
            check_status_only(call(node, "GET", "/liveness"), 200, "GET /liveness paused")
        check_codes(leader, PRIMARY, what="paused, the primary")
        check_codes(replica, REPLICA_ASYNC, what="paused, the replica")
        assert "cluster_unlocked" not in status(leader)

        # a switchover while paused (a candidate is required): the old primary restarts as a replica
        old_tl = status(leader)["timeline"]
        r = call(leader, "POST", "/switchover", {"leader": leader.name, "candidate": replica.name}, timeout=120)
        assert (r.status, r.text) == (200, f'Successfully switched over to "{replica.name}"'), r
        new_leader, new_replica = replica, leader
        wait_codes(new_leader, PRIMARY, 60, what="paused, the new primary")
        c.wait_streaming_status(new_replica, 90)
        wait_codes(new_replica, REPLICA_ASYNC, 30, what="paused, the old primary back as a replica")
        s = status(new_leader)
        assert s["timeline"] == old_tl + 1 and s["pause"] is True
        assert "pending_restart" not in s, s  # the recovery parameters a promotion drops do not count
        hist = h.wait_until(lambda: (lambda v: v if v else None)(get_json(new_replica, "/history")), 30,
                            msg="/history to record the switchover")
        assert len(hist[-1]) == 5 and hist[-1][0] == old_tl and hist[-1][4] == new_leader.name, hist
        assert isinstance(hist[-1][1], int) and isinstance(hist[-1][2], str), hist
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", hist[-1][3]), hist
    finally:
        c.patch_config(c.roles()[0], {"pause": None})
    leader, replica = c.roles()
    h.wait_until(lambda: "pause" not in status(leader) and "pause" not in get_json(leader, "/cluster"), 30,
                 msg="unpaused")


# ------------------------------------------------------------------------------------------ 4. no leader


def test_cluster_without_leader(cluster):
    """A paused cluster whose leader key is empty (Patroni reads that as unlocked; the create-if-absent
    race fails while it exists, so nobody takes it: a deterministic leaderless cluster): nobody is
    leader or primary for the health checks, the primary is not a replica either, cluster_unlocked."""
    c = cluster
    leader, replica = c.roles()
    c.patch_config(leader, {"pause": True})
    try:
        for node in (leader, replica):
            h.wait_until(lambda node=node: status(node).get("pause") is True, 30, msg=f"{node.name} paused")
        c.etcd.put(c.key("leader"), "")
        for node in (leader, replica):
            h.wait_until(lambda node=node: status(node).get("cluster_unlocked") is True, 30,
                         msg=f"{node.name}: cluster_unlocked")
        # the primary without the lock: every leader check fails; /read-only falls back to the replica
        # rule (503: it is a primary); /async needs a replica too
        wait_codes(leader, codes({"/health"}), 30, what="no leader, the primary")
        # the replica: the replica rules as before (the cluster is known, it is not synchronous)
        wait_codes(replica, REPLICA_ASYNC, 30, what="no leader, the replica")
        s = status(leader)
        assert s["role"] == "primary" and s["pause"] is True
        check_order(list(s), STATUS_ORDER, "/patroni without a leader")
        # a paused replica stays with its primary (Patroni leaves it alone)
        assert status(replica)["replication_state"] == "streaming"
        doc = get_json(replica, "/cluster")
        ms = {m["name"]: m for m in doc["members"]}
        assert ms[leader.name]["role"] == "replica" and ms[leader.name]["state"] == "running"
        assert "lag" in ms[leader.name] and "lag" in ms[replica.name]  # no lock holder: lag for everyone
        assert ms[replica.name]["state"] == "streaming" and doc["pause"] is True
        for node in (leader, replica):
            check_status_only(call(node, "GET", "/liveness"), 200, "GET /liveness without a leader")
        # (Patroni 4.0 answers /readiness 200 here for the primary; 4.1's replication check 503: not asserted)
        check_status_only(call(replica, "GET", "/readiness"), 200, "GET /readiness of the replica")
    finally:
        kv = c.etcd.get_kv(c.key("leader"))
        if kv is not None and kv["value"] == "":
            c.etcd.delete(c.key("leader"))
    # the paused primary takes the free key again (its system identifier matches /initialize)
    assert c.wait_leader(30) == leader.name
    wait_codes(leader, PRIMARY, 30, what="the lock taken back")
    c.patch_config(leader, {"pause": None})


# ------------------------------------------------------------------------------------------ 5. robustness


class Monitor(threading.Thread):
    """Meanwhile: a load balancer's GET /primary every 0.2 s, the leader key and its lease every 0.5 s."""

    def __init__(self, c, leader):
        super().__init__(daemon=True)
        self.c, self.leader = c, leader
        self.stop = threading.Event()
        self.probes, self.leases, self.errors = [], [], []

    def run(self):
        next_lease = 0
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                r = call(self.leader, "GET", "/primary", timeout=5)
                self.probes.append((r.status, time.monotonic() - t))
            except Exception as e:  # noqa: BLE001 - recorded, judged after
                self.probes.append((repr(e), time.monotonic() - t))
            if t >= next_lease:
                next_lease = t + 0.5
                try:
                    kv = self.c.etcd.get_kv(self.c.key("leader"))
                    ttl = self.c.etcd.lease_ttl(kv["lease"]) if kv else None
                    self.leases.append((kv and kv["value"], kv and kv["lease"], ttl))
                except Exception as e:  # noqa: BLE001
                    self.errors.append(repr(e))
            self.stop.wait(0.2)


FOLLOW_ACTION = re.compile(r"INFO: (PAUSE: )?I am \(\w+\), a secondary, and following a leader")


def follow_actions(node):
    """How often the agent acted to follow its leader (the no-action line says "no action. I am ...")."""
    return len(FOLLOW_ACTION.findall(node.log_text()))


def idle_connections(port, n, partial=b"", gap=0.02):
    """n connections that send `partial` (maybe nothing) and then nothing: each must be closed by the
    server (connection timeout 10 s) without an answer. Returns the seconds until the last was closed."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        if partial:
            s.sendall(partial)
        socks.append(s)
        time.sleep(gap)  # accumulating, not a SYN flood beyond the listen backlog (request_queue_size)
    t0 = time.monotonic()
    got = []
    for s in socks:
        try:
            data = s.recv(65536)
            got.append(data)
        except (ConnectionResetError, socket.timeout) as e:
            got.append(repr(e).encode())
        finally:
            s.close()
    assert all(g == b"" for g in got), f"idle connections got answers: {[g for g in got if g][:3]}"
    return time.monotonic() - t0


def slow_request(port, interval=1.0, slow_bytes=12):
    """A client that sends its request line at once and then a header a byte per `interval` (longer in
    all than the server's 10 s inactivity timeout, never idle that long): it is answered normally."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(b"GET /patroni HTTP/1.0\r\nX-Slow: ")
        for b in b"abcdefghijklmnopqrstuvwxyz"[:slow_bytes]:
            time.sleep(interval)
            s.sendall(bytes([b]))
        s.sendall(b"\r\n\r\n")
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return Resp(out)
    finally:
        s.close()


# malformed requests: a clear 4xx (505 for an unknown HTTP version, 501 for an unknown method) or, when
# libmicrohttpd cannot parse a request line at all, a closed connection
BROKEN = [
    (b"GARBAGE\r\n\r\n", {None, 400}),
    (b"GET\r\n\r\n", {None, 400}),
    (b"GET /\r\n\r\n", {None, 400}),  # HTTP/0.9
    (b"GET /primary HTTP/9.9\r\n\r\n", {505}),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {505}),
    (b"get /primary HTTP/1.0\r\n\r\n", {501}),
    (b"G" * 5000 + b" /primary HTTP/1.0\r\n\r\n", {501, 400, 431}),
    (b"GET /primary HTTP/1.1\r\nno colon\r\n\r\n", {400}),
    (b"GET /primary HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", {400}),
    (b"POST /switchover HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", {400}),
    (b"POST /switchover HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", {400, 413}),
    (b"POST /switchover HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", {400}),
    (b"\x00\x01\x02\x03\x04\r\n\r\n", {None, 400}),
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 64, {None, 400}),  # TLS to a plain port
    (b"GET /primary HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n", {431, 413, 400}),
    (b"GET /" + b"p" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", {414, 431, 413, 400}),
    (b"GET /primary HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 50) for i in range(2000))
     + b"\r\n", {431, 413, 400}),
    # bodies beyond the 64 KiB bound: 413 before the body is read, or (chunked) a closed connection
    (b"PATCH /config HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n" + b"{" * 1000, {413}),
    (b"PUT /config HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     + (b"%x\r\n%s\r\n" % (60000, b"y" * 60000)) * 3 + b"0\r\n\r\n", {None, 413}),
]


def test_robustness(cluster):
    """Abuse of the leader's REST port, all at once: idle and half-sent connections, a slow client,
    malformed and oversized requests, garbage bodies on the command endpoints. Each gets its 4xx (or a
    closed connection), nothing hangs, and meanwhile GET /primary answers fast, the leader renews its
    lease, the replica stays steady, and no health check or status request is logged."""
    c = cluster
    leader, replica = c.roles()
    port = rest_port(leader)
    lease0 = c.etcd.get_kv(c.key("leader"))["lease"]
    sizes = log_sizes(c)
    followed = follow_actions(replica)

    mon = Monitor(c, leader)
    mon.start()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(BROKEN) + 8)
    try:
        idle = pool.submit(idle_connections, port, 200)
        half = pool.submit(idle_connections, port, 50, b"GET /patroni HTTP/1.1\r\nHost: x\r\n")
        slow = pool.submit(slow_request, port)
        broken = []
        for req, want in BROKEN:
            broken.append((req, want, pool.submit(raw_exchange, port, req, 30)))
            time.sleep(0.02)

        # garbage bodies on the command endpoints, one after the other (the commands queue for the HA loop)
        bad_json = ["{nope", "[1, 2]", '"x"', "null", "{}", "\x00\xff\xfe", "{\"a\": 1", "1e999999"]
        for path, method in (("/switchover", "POST"), ("/failover", "POST"), ("/config", "PATCH"),
                             ("/config", "PUT")):
            for body in bad_json:
                r = call(leader, method, path, body.encode("latin-1"), timeout=60)
                check_error_page(r, 400, f"{method} {path} {body!r}")
            # no Content-Length: 411
            r = call(leader, method, path, timeout=60)
            check_error_page(r, 411, f"{method} {path} without a body")
        # values of the wrong type, read as Patroni reads them: refused, never carried out
        L, R = leader.name, replica.name
        unparsable = "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601"
        for path, body, want in [
            ("/switchover", {"leader": L, "candidate": R, "scheduled_at": 1893456000}, (422, unparsable)),
            ("/switchover", {"leader": L, "candidate": R, "scheduled_at": True}, (422, unparsable)),
            ("/switchover", {"leader": L, "candidate": R, "scheduled_at": {"at": "2030-01-01T00:00:00Z"}},
             (422, unparsable)),
            ("/failover", {"candidate": R, "scheduled_at": 12}, (400, "Failover can't be scheduled")),
            ("/switchover", {"leader": 5}, (412, "leader name does not match")),
            ("/switchover", {"leader": L, "candidate": 7}, (412, "candidate does not exists")),
            ("/failover", {"candidate": [R]}, (412, "candidate does not exists")),
            ("/switchover", {"leader": None, "candidate": R}, (400, "Switchover could be performed only from a "
                                                                    "specific leader")),
        ]:
            r = call(leader, "POST", path, body, timeout=60)
            assert (r.status, r.text) == want, (path, body, r)
            assert r.headers.get("content-type") == "text/html"
        # POST /reload does not read its body (as Patroni)
        r = call(leader, "POST", "/reload", b"{nope", timeout=30)
        assert (r.status, r.text) == (202, "reload scheduled"), r

        # the malformed and oversized requests
        for req, want, fut in broken:
            raw, took = fut.result(timeout=60)
            st = status_of(raw)
            assert st in want, f"{req[:60]!r}: answered {raw[:200]!r}, expected one of {want}"
            assert st is not None or raw == b"", f"{req[:60]!r}: garbage answer {raw[:200]!r}"
            assert took < 15, f"{req[:60]!r}: the connection stayed open {took:.1f} s"
            if st is not None:
                # one status line; the body a short libmicrohttpd page (its 0.9.75 repeats the header block
                # of an answer to a bad Content-Length; only the status line is relied on)
                assert raw.split(b"\r\n", 1)[0].startswith(b"HTTP/1."), raw[:200]
        r = slow.result(timeout=60)
        assert r.status == 200 and r.json()["patroni"]["name"] == leader.name, r
        assert idle.result(timeout=60) < 25 and half.result(timeout=60) < 25
    finally:
        pool.shutdown(wait=True)
        mon.stop.set()
        mon.join(10)

    # the load balancer's probes: every one answered 200, fast
    assert mon.probes, "no probe ran"
    bad = [p for p in mon.probes if p[0] != 200]
    assert not bad, f"GET /primary failed during the abuse: {bad[:5]}"
    worst = max(t for _, t in mon.probes)
    assert worst < 1.0, f"GET /primary took {worst:.2f} s during the abuse"
    # the leader key: held by the leader on the same lease throughout, renewed (its TTL rose again)
    assert not mon.errors, mon.errors[:3]
    assert {(v, lease) for v, lease, _ in mon.leases} == {(leader.name, lease0)}, mon.leases
    ttls = [t for _, _, t in mon.leases]
    assert min(ttls) >= TTL - LOOP_WAIT - RETRY_TIMEOUT, f"the lease ran low: {ttls}"
    assert any(b > a for a, b in zip(ttls, ttls[1:])), f"the lease was not renewed meanwhile: {ttls}"
    assert c.leader() == leader.name and leader.is_running() and replica.is_running()
    assert c.etcd.get_kv(c.key("leader"))["lease"] == lease0
    # the replica stayed steady: no new "following" action (it used to follow again every other cycle)
    assert follow_actions(replica) == followed, "the replica followed its unchanged leader again"
    # nothing of it went to the log as a request; no sanitizer report
    check_probes_not_logged(c, sizes)
    for name, text in new_log(c, sizes).items():
        assert "Sanitizer" not in text and "runtime error" not in text, (name, text[-3000:])
    check_codes(leader, PRIMARY, what="after the abuse")


# ------------------------------------------------------------------------------------------ 6. DCS lost


def _pause_etcd(c):
    for i in range(len(c.etcd.members)):
        c.etcd.pause_member(i)


def _resume_etcd(c):
    for i in range(len(c.etcd.members)):
        if c.etcd.members[i].state == "paused":
            c.etcd.resume_member(i)


def test_dcs_lost_while_paused(cluster):
    """Every etcd member frozen (SIGSTOP) in a paused cluster: the primary keeps running and, without a
    cluster view and paused, answers the leader checks from its role (§2.3 rule 4); the replica keeps
    streaming; /cluster, /history, /config, /failsafe close the connection (the DCS cannot be read)."""
    c = cluster
    leader, replica = c.roles()
    c.patch_config(leader, {"pause": True})
    for node in (leader, replica):
        h.wait_until(lambda node=node: status(node).get("pause") is True, 30, msg=f"{node.name} paused")
    seen = status(leader)["dcs_last_seen"]
    paused_at = time.time()
    _pause_etcd(c)
    try:
        # primary: role primary, no cluster view, paused -> leader/primary 200; the rules that need the
        # cluster view (/sync, /async, /quorum, /read-only-sync, /read-only-quorum) 503
        # once its lock has run out (is_leader false) and without a cluster view
        h.wait_until(lambda: code(leader, "/readiness") == 503, 3 * TTL, msg="the primary's lock to run out")
        wait_codes(leader, codes(LEADERISH | {"/read-only", "/health"}), 3 * TTL, what="DCS lost, paused, primary")
        wait_codes(replica, codes({"/replica", "/read-only", "/health"}), 3 * TTL, what="DCS lost, paused, replica")
        for node in (leader, replica):
            s = status(node)
            assert s["cluster_unlocked"] is True and s["pause"] is True, s
            h.wait_until(lambda node=node: all(closes_without_answer(node, p) for p in
                                               ("/cluster", "/history", "/config", "/failsafe")), 3 * TTL,
                         msg=f"{node.name}: /cluster, /history, /config, /failsafe to close without an answer")
            check_status_only(call(node, "GET", "/liveness"), 200, "GET /liveness (paused)")
        check_status_only(call(leader, "GET", "/readiness"), 503, "GET /readiness of a primary without the DCS")
        s = status(leader)
        assert s["role"] == "primary" and s["state"] == "running"
        # the last successful read: the watch cache may serve a read or two before the cycle's own etcd
        # requests time out and the cache is dropped; then it stops advancing
        last_seen = s["dcs_last_seen"]
        assert seen <= last_seen <= paused_at + LOOP_WAIT + RETRY_TIMEOUT + 1, (seen, paused_at, s)
        # the replica keeps streaming from the primary that still runs
        r = status(replica)
        assert r["role"] == "replica" and r["replication_state"] == "streaming", r
        assert [x["application_name"] for x in status(leader).get("replication", [])] == [replica.name]
        assert status(leader)["dcs_last_seen"] == last_seen
    finally:
        _resume_etcd(c)
    # back: the primary holds the lock again
    h.wait_until(lambda: c.leader() == leader.name, 60, msg="the lock back on the primary")
    wait_codes(leader, PRIMARY, 60, what="the DCS back")
    c.patch_config(leader, {"pause": None})
    for node in (leader, replica):
        h.wait_until(lambda node=node: "pause" not in status(node), 30, msg=f"{node.name} unpaused")


def test_dcs_lost_not_paused(cluster):
    """Every etcd member frozen, not paused: the primary demotes itself (a read-only replica without
    upstream) within ttl; without a cluster view every leader check is 503 on both nodes, the replica
    checks answer from the role; after etcd returns there is one leader again."""
    c = cluster
    leader, replica = c.roles()
    _pause_etcd(c)
    try:
        dcs_lost = codes({"/replica", "/read-only", "/health"})
        wait_codes(leader, dcs_lost, 3 * TTL, what="DCS lost, the demoted primary")
        wait_codes(replica, dcs_lost, 3 * TTL, what="DCS lost, the replica")
        for node in (leader, replica):
            s = status(node)
            assert s["role"] == "replica" and s["cluster_unlocked"] is True and "pause" not in s, s
            check_status_only(call(node, "GET", "/liveness"), 200, "GET /liveness without the DCS")
            assert closes_without_answer(node, "/cluster")
        check_status_only(call(leader, "GET", "/readiness"), 503, "GET /readiness of the demoted primary")
    finally:
        _resume_etcd(c)
    # the old leader key may outlive the pause (etcd does not expire leases while it is stopped): wait
    # for a key that names a running primary, whichever node won
    h.wait_until(lambda: (lambda l: l and c.is_primary(l))(c.leader()), 90, msg="a leader that is a primary")
    c.check_healthy(90)
    new_leader, new_replica = c.roles()
    wait_codes(new_leader, PRIMARY, 60, what="a leader again")
    c.wait_streaming_status(new_replica, 90)
    wait_codes(new_replica, REPLICA_ASYNC, 30, what="a replica again")
