"""A real n-member etcd 3.4 cluster on loopback, and a small client over the v3 JSON gateway.

Timing: members run with --heartbeat-interval 100 --election-timeout 1000 (ms). Those are etcd's own
defaults, kept on purpose: on a loaded 2-core machine a shorter election timeout lets a slow heartbeat
(PostgreSQL + several agents busy at once) trigger needless leader elections, which make tests flaky;
a longer one would only slow down tests that stop or pause the etcd leader (a new leader is elected
about 1-2 s after the old one stops answering). Both values can be passed to EtcdCluster().

Each cluster gets a unique --initial-cluster-token (pid + random), its own ports (pghatest.ports) and
its own data directories, so clusters of different tests or of concurrent runs can never join each
other.
"""

import base64
import os
import shutil
import signal
import tempfile
import time
import uuid

import requests

from . import ports as _ports
from .proc import Proc
from .util import http_session, tail_file, wait_until

ETCD_BIN = os.environ.get("PGHATEST_ETCD", "/usr/bin/etcd")


class EtcdError(RuntimeError):
    """The gateway answered with an error (non-200 status or an 'error' field)."""

    def __init__(self, msg, status=None, body=None):
        super().__init__(msg)
        self.status = status
        self.body = body


def b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def unb64(s):
    return base64.b64decode(s).decode("utf-8", "replace")


def prefix_range_end(prefix):
    """range_end for a prefix: the prefix with its last byte incremented (carrying over 0xff)."""
    b = bytearray(prefix.encode() if isinstance(prefix, str) else prefix)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return b"\0"  # whole keyspace


class EtcdMember:
    def __init__(self, cluster, index, client_port, peer_port, data_dir, log_path):
        self.cluster = cluster
        self.index = index
        self.name = f"{cluster.name_prefix}{index}"
        self.client_port = client_port
        self.peer_port = peer_port
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc = None
        self.state = "new"  # new | running | paused | stopped | killed

    @property
    def client_url(self):
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self):
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def endpoint(self):
        return f"127.0.0.1:{self.client_port}"

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def __repr__(self):
        return f"<EtcdMember {self.name} {self.endpoint} {self.state} pid={self.pid}>"


class EtcdCluster:
    """n etcd members on 127.0.0.1 with their own ports and data dirs under basedir.

    EtcdCluster(n=3, basedir=..., start=True): starts all members and waits until each one's /health
    says healthy. Use as a context manager or call destroy().
    """

    def __init__(self, n=3, basedir=None, start=True, heartbeat_ms=100, election_ms=1000, name_prefix="e",
                 extra_args=(), start_timeout=30.0, allocator=None):
        if basedir is None:
            basedir = tempfile.gettempdir()
        os.makedirs(basedir, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="etcd-", dir=basedir)
        os.chmod(self.dir, 0o755)
        self.n = n
        self.name_prefix = name_prefix
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.token = f"pghatest-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._alloc = allocator or _ports.default_allocator()
        self._ports = self._alloc.allocate(2 * n)
        self.members = []
        for i in range(n):
            d = os.path.join(self.dir, f"{name_prefix}{i}")
            os.makedirs(d, exist_ok=True)
            self.members.append(EtcdMember(self, i, self._ports[2 * i], self._ports[2 * i + 1],
                                           os.path.join(d, "data"), os.path.join(d, "etcd.log")))
        self._destroyed = False
        if start:
            try:
                self.start()
            except BaseException:
                self.destroy()
                raise

    # ------------------------------------------------------------------ addresses
    @property
    def endpoints(self):
        """["127.0.0.1:<client port>", ...] of all members."""
        return [m.endpoint for m in self.members]

    @property
    def client_urls(self):
        return [m.client_url for m in self.members]

    @property
    def peer_urls(self):
        return [m.peer_url for m in self.members]

    def initial_cluster(self):
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def __repr__(self):
        return f"<EtcdCluster {self.token} {self.members}>"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.destroy()

    # ------------------------------------------------------------------ lifecycle
    def _command(self, m, state):
        return [
            ETCD_BIN,
            "--name", m.name,
            "--data-dir", m.data_dir,
            "--listen-client-urls", m.client_url,
            "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url,
            "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", self.initial_cluster(),
            "--initial-cluster-state", state,
            "--initial-cluster-token", self.token,
            "--heartbeat-interval", str(self.heartbeat_ms),
            "--election-timeout", str(self.election_ms),
            "--logger", "zap",
            "--log-outputs", "stderr",
        ] + self.extra_args

    def _spawn(self, m, state):
        m.proc = Proc(self._command(m, state), m.log_path, label=f"etcd {m.name} ({self.token[-12:]})").start()
        m.state = "running"

    def start(self):
        """Start all members (cluster state 'new') concurrently and wait until all are healthy."""
        for m in self.members:
            if m.state == "new":
                self._spawn(m, "new")
        self.wait_healthy(timeout=self.start_timeout)
        return self

    def member(self, i):
        return self.members[i]

    def health(self, i, timeout=1.0):
        """True if member i answers GET /health with health "true" within timeout."""
        try:
            r = http_session().get(self.members[i].client_url + "/health", timeout=timeout)
            return r.status_code == 200 and r.json().get("health") in ("true", True)
        except (requests.RequestException, ValueError):
            return False

    def wait_healthy(self, members=None, timeout=30.0):
        """Wait until every member in `members` (default: all that should be running) is healthy."""
        idx = list(range(self.n)) if members is None else list(members)
        idx = [i for i in idx if self.members[i].state == "running"]
        deadline = time.monotonic() + timeout
        for i in idx:
            m = self.members[i]
            remaining = max(0.1, deadline - time.monotonic())
            try:
                wait_until(lambda: self._check_alive(m) and self.health(i), remaining, interval=0.1,
                           msg=f"etcd member {m.name} ({m.client_url}) to report healthy")
            except AssertionError as e:
                raise AssertionError(f"{e}\n--- {m.log_path} (last 60 lines) ---\n{tail_file(m.log_path, 60)}") from None
        return True

    def _check_alive(self, m):
        if m.proc is None or not m.proc.is_running():
            raise AssertionError(f"etcd member {m.name} exited with code {m.proc.returncode if m.proc else None}")
        return True

    def stop_member(self, i, timeout=15.0):
        """SIGTERM member i and wait for it to exit."""
        m = self.members[i]
        if m.proc is not None and m.proc.is_running():
            if m.state == "paused":
                m.proc.resume()
            m.proc.stop(signal.SIGTERM, timeout=timeout)
        m.state = "stopped"

    def kill_member(self, i):
        """SIGKILL member i (its whole process tree) and wait until it is gone."""
        m = self.members[i]
        if m.proc is not None:
            m.proc.kill()
        m.state = "killed"

    def start_member(self, i, wait=True, timeout=30.0):
        """(Re)start member i with --initial-cluster-state existing and the same data dir/ports."""
        m = self.members[i]
        if m.proc is not None and m.proc.is_running():
            raise RuntimeError(f"etcd member {m.name} is already running")
        self._spawn(m, "existing")
        if wait:
            self.wait_healthy([i], timeout=timeout)

    def pause_member(self, i):
        """SIGSTOP member i: it keeps its sockets open, so clients time out instead of being refused."""
        m = self.members[i]
        m.proc.pause()
        m.state = "paused"

    def resume_member(self, i):
        m = self.members[i]
        m.proc.resume()
        m.state = "running"

    def running_members(self):
        return [m.index for m in self.members if m.state == "running" and m.proc and m.proc.is_running()]

    def ensure_all_running(self, timeout=30.0):
        """Resume paused members, restart stopped/killed/crashed ones, wait until all are healthy."""
        for m in self.members:
            if m.state == "paused":
                self.resume_member(m.index)
            elif m.proc is None or not m.proc.is_running():
                self._spawn(m, "existing" if os.path.isdir(m.data_dir) else "new")
        self.wait_healthy(timeout=timeout)

    def pids(self):
        return [m.pid for m in self.members if m.proc is not None and m.proc.is_running()]

    def log_paths(self):
        return [m.log_path for m in self.members]

    def destroy(self, remove_dir=True):
        """Stop every member (SIGKILL after a short grace), release ports, remove the data dirs."""
        if self._destroyed:
            return
        for m in self.members:
            if m.proc is not None and m.proc.is_running():
                if m.state == "paused":
                    m.proc.resume()
                m.proc.stop(signal.SIGTERM, timeout=5.0)
            m.state = "stopped"
        self._alloc.release(*self._ports)
        if remove_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        self._destroyed = True

    # ------------------------------------------------------------------ v3 JSON gateway
    def call(self, path, body, member=None, timeout=2.0):
        """POST body (dict) to /v3/<path> of member `member` (index), or of the first running member that
        answers when member is None. Returns the parsed JSON; raises EtcdError or requests exceptions."""
        if member is not None:
            return self._call_one(self.members[member], path, body, timeout)
        errors = []
        for i in self.running_members() or range(self.n):
            try:
                return self._call_one(self.members[i], path, body, timeout)
            except (requests.RequestException, EtcdError) as e:
                errors.append(f"{self.members[i].name}: {e}")
        raise EtcdError(f"no etcd member answered {path}: " + "; ".join(errors))

    @staticmethod
    def _call_one(m, path, body, timeout):
        url = f"{m.client_url}/v3/{path.lstrip('/')}"
        r = http_session().post(url, json=body, timeout=timeout)
        try:
            data = r.json()
        except ValueError:
            raise EtcdError(f"{url}: HTTP {r.status_code}: {r.text[:500]}", r.status_code, r.text) from None
        if r.status_code != 200 or (isinstance(data, dict) and "error" in data and "header" not in data):
            raise EtcdError(f"{url}: HTTP {r.status_code}: {data}", r.status_code, data)
        return data

    def get(self, key, member=None, serializable=False, timeout=2.0):
        """Value of key as str, or None if absent."""
        body = {"key": b64(key)}
        if serializable:
            body["serializable"] = True
        kvs = self.call("kv/range", body, member, timeout).get("kvs", [])
        return unb64(kvs[0].get("value", "")) if kvs else None

    def get_kv(self, key, member=None, serializable=False, timeout=2.0):
        """The raw kv dict of key (key/value decoded; revisions/lease as the gateway sends them) or None."""
        body = {"key": b64(key)}
        if serializable:
            body["serializable"] = True
        kvs = self.call("kv/range", body, member, timeout).get("kvs", [])
        if not kvs:
            return None
        kv = dict(kvs[0])
        kv["key"] = unb64(kv["key"])
        kv["value"] = unb64(kv.get("value", ""))
        return kv

    def get_prefix(self, prefix, member=None, serializable=False, timeout=2.0):
        """{key: value} (both str) of every key starting with prefix."""
        body = {"key": b64(prefix), "range_end": base64.b64encode(prefix_range_end(prefix)).decode()}
        if serializable:
            body["serializable"] = True
        kvs = self.call("kv/range", body, member, timeout).get("kvs", [])
        return {unb64(kv["key"]): unb64(kv.get("value", "")) for kv in kvs}

    def put(self, key, value, member=None, lease=None, timeout=2.0):
        """Put key=value; returns the header revision (int)."""
        body = {"key": b64(key), "value": b64(value)}
        if lease is not None:
            body["lease"] = str(lease)
        data = self.call("kv/put", body, member, timeout)
        return int(data.get("header", {}).get("revision", 0))

    def delete(self, key, member=None, timeout=2.0):
        """Delete one key; returns the number of keys deleted."""
        data = self.call("kv/deleterange", {"key": b64(key)}, member, timeout)
        return int(data.get("deleted", 0))

    def delete_prefix(self, prefix, member=None, timeout=2.0):
        """Delete every key starting with prefix; returns the number of keys deleted."""
        body = {"key": b64(prefix), "range_end": base64.b64encode(prefix_range_end(prefix)).decode()}
        data = self.call("kv/deleterange", body, member, timeout)
        return int(data.get("deleted", 0))

    def lease_grant(self, ttl, member=None):
        """Grant a lease; returns its ID (str, as the gateway sends int64s)."""
        return self.call("lease/grant", {"TTL": int(ttl)}, member)["ID"]

    def lease_ttl(self, lease_id, member=None):
        """Remaining TTL (int seconds, -1 if the lease is gone)."""
        data = self.call("lease/timetolive", {"ID": str(lease_id)}, member)
        return int(data.get("TTL", -1))

    def member_list(self, member=None):
        """Members as the cluster reports them: [{"name", "ID", "peerURLs", "clientURLs"}, ...]."""
        return self.call("cluster/member/list", {}, member).get("members", [])

    def status(self, i, timeout=2.0):
        """POST /v3/maintenance/status of member i (its own view: leader ID, raft term, ...)."""
        return self.call("maintenance/status", {}, i, timeout)

    def leader_index(self, timeout=2.0):
        """Index of the current raft leader as seen by the first member that answers."""
        ids = {}
        for i in self.running_members():
            try:
                st = self.status(i, timeout)
            except (requests.RequestException, EtcdError):
                continue
            ids[st["header"]["member_id"]] = i
            leader = st.get("leader")
            if leader in ids:
                return ids[leader]
            for j in self.running_members():
                if j not in ids.values():
                    try:
                        ids[self.status(j, timeout)["header"]["member_id"]] = j
                    except (requests.RequestException, EtcdError):
                        pass
            if leader in ids:
                return ids[leader]
        return None
