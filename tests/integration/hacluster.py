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

    def logs(self):
        return {n: node.log_text() for n, node in self.nodes.items()}


def timed(fn):
    t = time.monotonic()
    r = fn()
    return r, time.monotonic() - t
