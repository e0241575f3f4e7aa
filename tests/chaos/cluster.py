"""A pgha cluster in network namespaces: per host an etcd member, PostgreSQL and pgha on its own address.

Reuses the integration harness (tests/integration/pghatest): its Proc wrapper (own session, PID
registry with start times, pdeathsig, the safety net that kills everything at exit), make_node_config
and PghaNode. The only difference is a command prefix: every process is started through
`ip netns exec pghac-<host>` (which execs, so the registered PID is the process itself).

Addresses: host i has 10.77.0.i; etcd on :2379 (client) and :2380 (peer), PostgreSQL on :5432, the REST
API on :8008. The runner reaches them through its bridge address 10.77.0.254.
"""

import base64
import json
import os
import shutil
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import psycopg2  # noqa: E402
import requests  # noqa: E402

import pghatest as h  # noqa: E402
from pghatest.proc import Proc  # noqa: E402

SCOPE = "chaos"
PG_PORT = 5432
REST_PORT = 8008
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
SUPER_PASSWORD = "pghac-super"
ETCD_BIN = os.environ.get("PGHATEST_ETCD", "/usr/bin/etcd")

_session = requests.Session()
_session.trust_env = False  # never a proxy: everything is on 10.77.0.0/24


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def unb64(s):
    return base64.b64decode(s).decode("utf-8", "replace")


class NsProc(Proc):
    """pghatest's Proc, started inside a network namespace."""

    def __init__(self, ns, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ns = ns

    def command(self):
        return ["ip", "netns", "exec", self.ns] + super().command()


class NsPghaNode(h.PghaNode):
    def __init__(self, config, basedir, ns, build):
        super().__init__(config, basedir, build=build)
        self.ns = ns

    def start(self, extra_args=(), env=None):
        self.write_config()
        self.proc = NsProc(self.ns, [self.bin, *extra_args, self.config_path], self.log_path,
                           label=f"pgha {self.name}", user="postgres", env=env, cwd=self.dir).start()
        return self


class EtcdMember:
    def __init__(self, net, host, basedir, token):
        self.net, self.host, self.token = net, host, token
        self.name = f"e{host}"
        self.addr = net.addr[host]
        self.dir = os.path.join(basedir, f"etcd-{host}")
        os.makedirs(self.dir, exist_ok=True)
        self.data_dir = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "etcd.log")
        self.proc = None
        self.paused = False

    @property
    def url(self):
        return f"http://{self.addr}:{ETCD_CLIENT_PORT}"

    def command(self, state):
        cluster = ",".join(f"e{hh}=http://{self.net.addr[hh]}:{ETCD_PEER_PORT}" for hh in self.net.hosts)
        return [ETCD_BIN, "--name", self.name, "--data-dir", self.data_dir,
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", f"http://{self.addr}:{ETCD_PEER_PORT}",
                "--initial-advertise-peer-urls", f"http://{self.addr}:{ETCD_PEER_PORT}",
                "--initial-cluster", cluster, "--initial-cluster-state", state,
                "--initial-cluster-token", self.token,
                "--heartbeat-interval", "100", "--election-timeout", "1000",
                "--logger", "zap", "--log-outputs", "stderr"]

    def start(self, state="new"):
        self.proc = NsProc(self.net.ns(self.host), self.command(state), self.log_path,
                           label=f"etcd {self.name}").start()
        self.paused = False

    def is_running(self):
        return self.proc is not None and self.proc.is_running()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
        self.paused = False

    def health(self, timeout=1.0):
        try:
            r = _session.get(self.url + "/health", timeout=timeout)
            return r.status_code == 200 and r.json().get("health") in ("true", True)
        except (requests.RequestException, ValueError):
            return False

    def call(self, path, body, timeout=1.0):
        r = _session.post(f"{self.url}/v3/{path}", json=body, timeout=timeout)
        data = r.json()
        if r.status_code != 200 or ("error" in data and "header" not in data):
            raise RuntimeError(f"{self.url}/v3/{path}: HTTP {r.status_code}: {data}")
        return data


class ChaosCluster:
    def __init__(self, net, basedir, bin_dir, ttl=10, loop_wait=2, retry_timeout=4, log=print):
        self.net = net
        self.basedir = basedir
        self.ttl, self.loop_wait, self.retry_timeout = ttl, loop_wait, retry_timeout
        self.log = log
        self.hosts = list(net.hosts)
        token = f"pghac-{os.getpid()}-{int(time.time())}"
        self.etcd = {hh: EtcdMember(net, hh, basedir, token) for hh in self.hosts}
        build = (os.path.join(bin_dir, "pgha"), os.path.join(bin_dir, "pgha-ctl"))
        endpoints = [f"{net.addr[hh]}:{ETCD_CLIENT_PORT}" for hh in self.hosts]
        subnet = f"{net.addr[self.hosts[0]].rsplit('.', 1)[0]}.0/24"
        self.nodes = {}
        for hh in self.hosts:
            addr = net.addr[hh]
            cfg = h.make_node_config(
                hh, SCOPE, endpoints, PG_PORT, REST_PORT, basedir,
                restapi={"listen": f"{addr}:{REST_PORT}", "connect_address": f"{addr}:{REST_PORT}"},
                pgha={"allow_short_ttl": True},
                bootstrap={
                    "dcs": {
                        "ttl": ttl, "loop_wait": loop_wait, "retry_timeout": retry_timeout,
                        "synchronous_node_count": 1,
                        "postgresql": {"parameters": {"wal_sender_timeout": "10s",
                                                      "wal_receiver_timeout": "10s"}},
                    },
                    "pg_hba": ["local all all trust",
                               f"host all all {subnet} md5",
                               f"host replication replicator {subnet} md5"],
                },
                postgresql={"listen": f"{addr}:{PG_PORT}", "connect_address": f"{addr}:{PG_PORT}",
                            "remove_data_directory_on_diverged_timelines": True,
                            "authentication": {"superuser": {"password": SUPER_PASSWORD}}},
            )
            self.nodes[hh] = NsPghaNode(cfg, basedir, net.ns(hh), build)

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout=120):
        for m in self.etcd.values():
            m.start("new")
        h.wait_until(lambda: all(m.health() for m in self.etcd.values()), 60, msg="etcd members healthy")
        first = self.hosts[0]
        self.nodes[first].start()
        h.wait_until(lambda: self.leader() == first, timeout, interval=0.5, msg=f"{first} to bootstrap")
        for hh in self.hosts[1:]:
            self.nodes[hh].start()
        return self.wait_healthy(timeout)

    def destroy(self):
        for n in self.nodes.values():
            try:
                if n.proc is not None and n.proc.is_running():
                    n.proc.resume()
                n.destroy(remove_dir=False)
            except Exception as e:  # noqa: BLE001
                self.log(f"destroy {n.name}: {e}")
        for m in self.etcd.values():
            try:
                if m.proc is not None and m.proc.is_running():
                    m.resume()
                    m.proc.stop(signal.SIGTERM, timeout=5)
            except Exception as e:  # noqa: BLE001
                self.log(f"destroy etcd {m.name}: {e}")

    # ------------------------------------------------------------------ etcd
    def etcd_call(self, path, body, timeout=1.0, exclude=()):
        """POST to the first etcd member (not paused, not in exclude) that answers."""
        errors = []
        for hh in self.hosts:
            m = self.etcd[hh]
            if hh in exclude or m.paused or not m.is_running():
                continue
            try:
                return m.call(path, body, timeout)
            except Exception as e:  # noqa: BLE001
                errors.append(f"{m.name}: {e}")
        raise RuntimeError("no etcd member answered: " + "; ".join(errors))

    def key(self, rel):
        return f"/service/{SCOPE}/{rel}"

    def get_kv(self, rel, timeout=1.0, exclude=()):
        kvs = self.etcd_call("kv/range", {"key": b64(self.key(rel))}, timeout, exclude).get("kvs", [])
        if not kvs:
            return None
        kv = dict(kvs[0])
        kv["value"] = unb64(kv.get("value", ""))
        return kv

    def leader(self, exclude=()):
        try:
            kv = self.get_kv("leader", exclude=exclude)
            return kv["value"] if kv else None
        except Exception:  # noqa: BLE001
            return None

    def value(self, rel):
        try:
            kv = self.get_kv(rel)
            return json.loads(kv["value"]) if kv else None
        except Exception:  # noqa: BLE001
            return None

    def lease_ttl(self, lease, exclude=(), timeout=1.0):
        data = self.etcd_call("lease/timetolive", {"ID": str(lease)}, timeout, exclude)
        return int(data.get("TTL", -1))

    # ------------------------------------------------------------------ REST / SQL
    def rest(self, hh, method, path, body=None, timeout=5.0):
        url = f"http://{self.net.addr[hh]}:{REST_PORT}{path}"
        return _session.request(method, url, json=body, timeout=timeout)

    def connect(self, hh, timeout=2):
        return psycopg2.connect(host=self.net.addr[hh], port=PG_PORT, user="postgres", password=SUPER_PASSWORD,
                                dbname="postgres", connect_timeout=timeout,
                                options="-c statement_timeout=5000")

    def sql(self, hh, query, params=None, timeout=2):
        conn = self.connect(hh, timeout)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def is_primary(self, hh):
        try:
            return self.sql(hh, "SELECT NOT pg_is_in_recovery()")[0][0]
        except psycopg2.Error:
            return False

    # ------------------------------------------------------------------ health
    def health_problems(self, sync_mode=None):
        """What keeps the cluster from being healthy (empty list: healthy): every etcd member and agent
        running, a leader that is the only primary, every other node streaming from it, and in a
        synchronous mode /sync naming the leader and at least one standby."""
        problems = []
        for hh, m in self.etcd.items():
            if m.paused or not m.is_running() or not m.health():
                problems.append(f"etcd {m.name} not healthy")
        for hh, n in self.nodes.items():
            if not n.is_running():
                problems.append(f"agent {hh} not running")
        if problems:
            return problems
        leader = self.leader()
        if leader not in self.nodes:
            return [f"no leader (key: {leader!r})"]
        try:
            if not self.is_primary(leader):
                return [f"leader {leader} is not a primary"]
            rows = self.sql(leader, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")
        except psycopg2.Error as e:
            return [f"leader {leader}: {str(e).strip()}"]
        streaming = {r[0] for r in rows}
        for hh in self.hosts:
            if hh == leader:
                continue
            if hh not in streaming:
                problems.append(f"{hh} not streaming from {leader}")
            elif self.is_primary(hh):
                problems.append(f"{hh} is a primary too")
        if not problems and sync_mode not in (None, "off"):
            sync = self.value("sync") or {}
            if sync.get("leader") != leader or not sync.get("sync_standby"):
                problems.append(f"/sync not set up for {leader}: {sync}")
        return problems

    def wait_healthy(self, timeout=90, sync_mode=None):
        last = []

        def check():
            p = self.health_problems(sync_mode)
            last[:] = p
            return not p
        try:
            h.wait_until(check, timeout, interval=0.5, msg="a healthy cluster")
        except h.WaitTimeout:
            raise h.WaitTimeout(f"cluster not healthy after {timeout}s: {last}") from None
        return self.leader()

    def wait_caught_up(self, timeout=60):
        """Wait until every replica has replayed everything the leader has written."""
        leader = self.leader()

        def check():
            target = self.sql(leader, "SELECT pg_current_wal_lsn()")[0][0]
            for hh in self.hosts:
                if hh == leader:
                    continue
                ok = self.sql(hh, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,))[0][0]
                if not ok:
                    return False
            return True
        h.wait_until(check, timeout, interval=0.5, msg="replicas to replay the leader's WAL")
        return leader

    def copy_logs(self, dest):
        """Copy every log of the run (agents, PostgreSQL, etcd) to dest."""
        os.makedirs(dest, exist_ok=True)
        for hh, n in self.nodes.items():
            for src, name in ((n.log_path, f"{hh}-pgha.log"),
                              (os.path.join(n.dir, "pg_log", "postgresql.log"), f"{hh}-postgresql.log")):
                if os.path.exists(src):
                    shutil.copy(src, os.path.join(dest, name))
        for hh, m in self.etcd.items():
            if os.path.exists(m.log_path):
                shutil.copy(m.log_path, os.path.join(dest, f"{hh}-etcd.log"))
