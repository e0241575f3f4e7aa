"""Fencing by the leader lease (issue 12): a primary that cannot renew its lease stops taking writes, and
stops answering 200 on /primary, before anyone else can take over, i.e. before its last successful renewal
(counted from when that renewal was sent) + ttl.

Timing proof: a writer commits on the primary all along, /primary and /metrics are polled every 50 ms, and
every etcd member is frozen (SIGSTOP: clients time out instead of being refused). The last renewal's send
time comes from pgha_leader_lease_age_seconds (the lease is counted from the send time; CLOCK_MONOTONIC,
the same clock as Python's time.monotonic()). The figures are printed (pytest -s shows them).

Timings: ttl 10 (pgha.allow_short_ttl), loop_wait 2, retry_timeout 4 (loop_wait + 2*retry_timeout = ttl)."""

import re
import threading
import time

import psycopg2
import pytest

import pghatest as h
from hacluster import HaCluster

pytestmark = pytest.mark.needs_root

TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 2, 4
DCS = {"ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT}

LEASE_AGE = re.compile(r"^pgha_leader_lease_age_seconds(?:\{[^}]*\})? ([0-9.eE+-]+)$", re.M)


@pytest.fixture
def cluster(tmp_base):
    c = HaCluster(tmp_base, n=2, bootstrap={"dcs": DCS}, pgha={"allow_short_ttl": True})
    try:
        c.start(["node1"])
        c.wait_leader(60)
        c.start(["node2"])
        c.wait_healthy(120)
        yield c
    finally:
        # whatever happened: no member left frozen, every process stopped
        for m in c.etcd.members:
            if m.state == "paused":
                try:
                    c.etcd.resume_member(m.index)
                except Exception:  # noqa: BLE001 - tear down the rest anyway
                    pass
        c.destroy(keep=h.keep_requested())


class Observer:
    """Background threads: a writer on the primary (last acknowledged commit), and a poller of /primary
    (last 200) and /metrics (the latest renewal's send time seen). Times are time.monotonic()."""

    def __init__(self, cluster, name):
        self.c, self.name, self.node = cluster, name, cluster.nodes[name]
        self.stop = threading.Event()
        self.last_ack = None
        self.acks = 0
        self.last_200 = None
        self.renewal_sent = None
        self.errors = []
        self.threads = [threading.Thread(target=self._write, daemon=True),
                        threading.Thread(target=self._poll, daemon=True)]

    def __enter__(self):
        self.c.sql(self.name, "CREATE TABLE IF NOT EXISTS fence_probe (id serial, at timestamptz DEFAULT now())")
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(10)

    def _write(self):
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = self.c.connect(self.name, timeout=1)
                    conn.autocommit = True
                    with conn.cursor() as cur:
                        cur.execute("SET statement_timeout = '1s'")
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO fence_probe DEFAULT VALUES")
                self.last_ack = time.monotonic()  # the commit was acknowledged
                self.acks += 1
                time.sleep(0.01)
            except psycopg2.Error as e:
                self.errors.append(f"{time.monotonic():.3f} {type(e).__name__}: {str(e).strip()[:100]}")
                try:
                    if conn is not None:
                        conn.close()
                except psycopg2.Error:
                    pass
                conn = None
                time.sleep(0.05)

    def _poll(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                if self.node.rest("GET", "/primary", timeout=1).status_code == 200:
                    self.last_200 = t0  # answered 200 to a request sent at t0 or later
            except Exception:  # noqa: BLE001 - a refused or timed-out check is not a 200
                pass
            t1 = time.monotonic()
            try:
                m = LEASE_AGE.search(self.node.rest("GET", "/metrics", timeout=1).text)
                if m:
                    # rendered between t1 and now: the send time is at most t1 - age late, at least now - age
                    sent = time.monotonic() - float(m.group(1))
                    if self.renewal_sent is None or sent > self.renewal_sent + 0.001:
                        self.renewal_sent = sent
            except Exception:  # noqa: BLE001
                pass
            elapsed = time.monotonic() - t1
            time.sleep(max(0.0, 0.05 - elapsed))


def test_primary_fenced_before_its_lease_can_expire(cluster):
    c = cluster
    leader = c.wait_leader(30)
    with Observer(c, leader) as obs:
        h.wait_until(lambda: obs.acks > 20 and obs.renewal_sent is not None and obs.last_200 is not None, 30,
                     msg="the writer committing, /primary 200 and the lease age published")
        time.sleep(3 * LOOP_WAIT)  # a few renewals with writes (busy cycles: /status and the member key change)
        frozen_at = time.monotonic()
        for i in range(len(c.etcd.members)):
            c.etcd.pause_member(i)
        try:
            # the primary must stop acknowledging writes and answering 200 on /primary: wait for both
            h.wait_until(lambda: obs.last_ack is not None and time.monotonic() - obs.last_ack > 3
                         and obs.last_200 is not None and time.monotonic() - obs.last_200 > 3, 4 * TTL,
                         msg="the primary to stop acknowledging writes and answering 200 on /primary")
            # the last renewal may be observed a little after it was made: let the poller catch up
            time.sleep(1)
        finally:
            for i in range(len(c.etcd.members)):
                if c.etcd.members[i].state == "paused":
                    c.etcd.resume_member(i)
    renewal, deadline = obs.renewal_sent, obs.renewal_sent + TTL
    figures = (f"ttl {TTL}, loop_wait {LOOP_WAIT}, retry_timeout {RETRY_TIMEOUT}; relative to the freeze: "
               f"last renewal sent {renewal - frozen_at:+.2f} s, lease end (sent + ttl) {deadline - frozen_at:+.2f} s, "
               f"last acknowledged write {obs.last_ack - frozen_at:+.2f} s, "
               f"last /primary 200 {obs.last_200 - frozen_at:+.2f} s; "
               f"margins before the lease end: writes {deadline - obs.last_ack:.2f} s, "
               f"/primary {deadline - obs.last_200:.2f} s")
    print("\nfencing figures: " + figures)
    log = c.nodes[leader].log_text()
    assert obs.last_ack < deadline, f"a write was acknowledged after the lease could expire: {figures}\n" + \
        "\n".join(obs.errors[-5:]) + "\n" + log[-3000:]
    assert obs.last_200 < deadline, f"/primary answered 200 after the lease could expire: {figures}\n" + log[-3000:]
    # the cluster comes back with one primary
    h.wait_until(lambda: (lambda l: l and c.is_primary(l))(c.leader()), 90, msg="a leader that is a primary")
    c.check_healthy(90)
