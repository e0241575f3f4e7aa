"""A whole pgha cluster for the HA scenarios: a 3-member etcd cluster and N pgha agents, each with its
PostgreSQL, plus the helpers the scenarios share (who is the leader, SQL on a node, waiting for streaming
replicas, a writer)."""

import json
import time

import psycopg2

import pghatest as h

SCOPE = "hatest"


class HaCluster:
    def __init__(self, basedir, n=3, scope=SCOPE, etcd=None, node_overrides=None, **overrides):
        self.basedir = basedir
        self.scope = scope
        self.own_etcd = etcd is None
        self.etcd = etcd or h.EtcdCluster(3, basedir)
        self.nodes = {}
        ports = h.allocate_ports(2 * n)
        for i in range(n):
            name = f"node{i + 1}"
            extra = dict(overrides)
            if node_overrides and name in node_overrides:
                extra = h.deep_merge(extra, node_overrides[name])
            cfg = h.make_node_config(name, scope, self.etcd.endpoints, ports[2 * i], ports[2 * i + 1], basedir,
                                     **extra)
            self.nodes[name] = h.PghaNode(cfg, basedir)

    # ------------------------------------------------------------------ lifecycle
    def start(self, names=None):
        for name in names or self.nodes:
            self.nodes[name].start()
        return self

    def destroy(self, keep=False):
        for node in self.nodes.values():
            try:
                node.destroy(remove_dir=not keep)
            except Exception:  # noqa: BLE001 - tear the rest down anyway
                pass
        if self.own_etcd:
            self.etcd.destroy(remove_dir=not keep)

    # ------------------------------------------------------------------ DCS
    def key(self, rel):
        return f"/service/{self.scope}/{rel}"

    def leader(self):
        try:
            return self.etcd.get(self.key("leader"))
        except Exception:  # noqa: BLE001 - etcd may be paused in a scenario
            return None

    def member(self, name):
        v = self.etcd.get(self.key(f"members/{name}"))
        return json.loads(v) if v else None

    def value(self, rel):
        """The JSON value of /<rel>, or None (missing, not JSON, or etcd unreachable)."""
        try:
            v = self.etcd.get(self.key(rel))
            return json.loads(v) if v is not None else None
        except Exception:  # noqa: BLE001 - etcd may be paused in a scenario, the value half-written
            return None

    def wait_value(self, rel, accept, timeout=30, msg=None):
        """Wait until /<rel> holds the value a scenario expects (accept(decoded value) is true; a missing
        key is None) and return it. Never "any value": a key may hold an older, legitimate value first."""
        last = []

        def check():
            v = self.value(rel)
            last[:] = [v]
            return (v,) if accept(v) else None
        try:
            return h.wait_until(check, timeout, msg=msg or f"the expected value of /{rel}")[0]
        except h.WaitTimeout as e:
            raise h.WaitTimeout(f"{e}; last value of /{rel}: {last[0] if last else None!r}") from None

    def wait_leader(self, timeout=60, exclude=()):
        return h.wait_until(lambda: (lambda l: l if l and l not in exclude else None)(self.leader()), timeout,
                            msg=f"a leader other than {exclude or 'nobody'}")

    # ------------------------------------------------------------------ PostgreSQL
    def connect(self, name, timeout=3):
        node = self.nodes[name]
        auth = node.config["postgresql"]["authentication"]["superuser"]
        return psycopg2.connect(host="127.0.0.1", port=node.pg_port, user=auth["username"],
                                password=auth["password"], dbname="postgres", connect_timeout=timeout)

    def sql(self, name, query, params=None, autocommit=True):
        conn = self.connect(name)
        try:
            conn.autocommit = autocommit
            with conn.cursor() as cur:
                cur.execute(query, params)
                rows = cur.fetchall() if cur.description else None
            if not autocommit:
                conn.commit()
            return rows
        finally:
            conn.close()

    def is_primary(self, name):
        try:
            return self.sql(name, "SELECT NOT pg_is_in_recovery()")[0][0]
        except psycopg2.Error:
            return False

    def writable(self, name):
        """True when a write commits on this node right now."""
        try:
            self.sql(name, "CREATE TABLE IF NOT EXISTS ha_probe (id int)")
            self.sql(name, "INSERT INTO ha_probe VALUES (1)")
            return True
        except psycopg2.Error:
            return False

    def primaries(self):
        return [n for n in self.nodes if self.nodes[n].is_running() and self.is_primary(n)]

    def streaming_replicas(self, primary):
        rows = self.sql(primary, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")
        return sorted(r[0] for r in rows)

    def wait_streaming(self, primary, replicas, timeout=90):
        want = sorted(replicas)
        return h.wait_until(lambda: self.streaming_replicas(primary) == want, timeout,
                            msg=f"{want} streaming from {primary}")

    def wait_healthy(self, timeout=120):
        """Every node running, one leader, all others streaming from it."""
        leader = self.wait_leader(timeout)
        h.wait_until(lambda: self.is_primary(leader), timeout, msg=f"{leader} to be a primary")
        others = [n for n in self.nodes if n != leader and self.nodes[n].is_running()]
        self.wait_streaming(leader, others, timeout)
        return leader

    def check_healthy(self, timeout=45):
        """What every scenario of a shared cluster may expect to find: every agent running, every etcd
        member up, one leader, the only primary, every other node streaming from it. Returns the leader;
        raises WaitTimeout (with what was seen) when the cluster does not get there within timeout."""
        stopped = [n for n, node in self.nodes.items() if not node.is_running()]
        if stopped:
            raise h.WaitTimeout(f"agents not running: {stopped}")
        if self.own_etcd:
            self.etcd.ensure_all_running()
        leader = self.wait_healthy(timeout)
        h.wait_until(lambda: self.primaries() == [leader], timeout, msg=f"{leader} to be the only primary")
        return leader

    def logs(self):
        return {n: node.log_text() for n, node in self.nodes.items()}


class SharedCluster:
    """One cluster for the scenarios of a module, healthy at the start of each: a scenario that failed
    must not fail the following ones (each then waiting out its timeouts on a broken cluster).

        shared = SharedCluster(run_dir, "ha", build)     # module fixture; build(basedir) -> started cluster
        c = shared.acquire()                             # function fixture, before each scenario
        shared.close(keep=...)                           # module teardown

    acquire() checks the current cluster (check(cluster), by default HaCluster.check_healthy) and, when
    that fails, destroys it and builds a new one in a new directory (<name>-2, <name>-3, ...). The first
    acquire() builds it. A pytest skip raised by build (the feature is missing) is remembered: every later
    acquire() skips with the same reason instead of building again. teardown(cluster), if given, runs
    before every destroy (the discarded clusters' too) and returns findings collected in .findings."""

    def __init__(self, run_dir, name, build, check=None, teardown=None):
        self.run_dir, self.name, self.build = run_dir, name, build
        self.check = check or (lambda c: c.check_healthy())
        self.teardown = teardown
        self.cluster = None
        self.generation = 0
        self.skip_reason = None
        self.findings = []
        self.rebuilds = []

    def _discard(self, keep):
        c, self.cluster = self.cluster, None
        if c is None:
            return
        if self.teardown:
            try:
                self.findings.extend(self.teardown(c) or [])
            except Exception as e:  # noqa: BLE001 - destroy it anyway
                self.findings.append(f"{c.basedir}: teardown failed: {e!r}")
        c.destroy(keep=keep)

    def acquire(self):
        import pytest
        if self.skip_reason:
            pytest.skip(self.skip_reason)
        if self.cluster is not None:
            try:
                self.check(self.cluster)
                return self.cluster
            except Exception as e:  # noqa: BLE001 - any failure: start over
                msg = f"{self.name}: the shared cluster in {self.cluster.basedir} is not healthy ({e}): rebuilding it"
                print(f"\npghatest: {msg}")
                self.rebuilds.append(msg)
                self._discard(keep=h.keep_requested())
        self.generation += 1
        sub = self.name if self.generation == 1 else f"{self.name}-{self.generation}"
        try:
            self.cluster = self.build(self.run_dir.subdir(sub))
        except pytest.skip.Exception as e:
            self.skip_reason = str(e.msg if hasattr(e, "msg") else e)
            raise
        return self.cluster

    def close(self, keep=False):
        self._discard(keep=keep)


def timed(fn):
    t = time.monotonic()
    r = fn()
    return r, time.monotonic() - t
