"""Failsafe mode (issue 14, spec §4.12): with every etcd member frozen, a primary whose peers all accept its
POST /failsafe keeps running (writes acknowledged, /primary 200, failsafe_mode_is_active) well past ttl; once
one peer stops answering it demotes before ttl has passed; when etcd is back the cluster heals with the same
leader. With failsafe_mode switched off the lease fences the primary as before (test_fencing.py).

A writer commits on the primary all along and /primary is polled every 50 ms (test_fencing.Observer); etcd is
frozen with SIGSTOP (clients time out instead of being refused), a replica's agent too (its PostgreSQL keeps
running: only its REST API stops answering). Timings: ttl 10, loop_wait 2, retry_timeout 4, as test_fencing."""

import time

import pytest

import pghatest as h
import test_fencing
from hacluster import HaCluster

pytestmark = pytest.mark.needs_root

TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 2, 4
DCS = {"ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT, "failsafe_mode": True}


@pytest.fixture
def cluster(tmp_base):
    c = HaCluster(tmp_base, n=3, bootstrap={"dcs": DCS}, pgha={"allow_short_ttl": True})
    try:
        c.start(["node1"])
        c.wait_leader(60)
        c.start(["node2", "node3"])
        c.wait_healthy(120)
        yield c
    finally:
        for node in c.nodes.values():  # whatever happened: no agent left frozen
            try:
                node.resume()
            except Exception:  # noqa: BLE001
                pass
        for m in c.etcd.members:
            if m.state == "paused":
                try:
                    c.etcd.resume_member(m.index)
                except Exception:  # noqa: BLE001 - tear down the rest anyway
                    pass
        c.destroy(keep=h.keep_requested())


def freeze_etcd(c):
    for i in range(len(c.etcd.members)):
        c.etcd.pause_member(i)


def thaw_etcd(c):
    for i in range(len(c.etcd.members)):
        if c.etcd.members[i].state == "paused":
            c.etcd.resume_member(i)


def patroni(node):
    try:
        r = node.rest("GET", "/patroni", timeout=1)
        return r.json() if r.status_code in (200, 503) else {}
    except Exception:  # noqa: BLE001 - a frozen or busy agent
        return {}


def test_failsafe_primary_survives_while_peers_answer(cluster):
    c = cluster
    leader = c.wait_leader(30)
    replicas = [n for n in c.nodes if n != leader]
    # the lock holder lists every member in /failsafe (name -> api_url), and GET /failsafe shows it
    fs = c.wait_value("failsafe", lambda v: isinstance(v, dict) and sorted(v) == sorted(c.nodes), 30,
                      msg="/failsafe naming every member")
    assert fs[leader] == c.nodes[leader].rest_url + "/patroni"
    assert c.nodes[replicas[0]].rest("GET", "/failsafe").json() == fs
    # POST /failsafe on a primary: refused
    r = c.nodes[leader].rest("POST", "/failsafe", body={"name": replicas[0]})
    assert (r.status_code, r.text) == (500, "Running as a leader")

    with test_fencing.Observer(c, leader) as obs:
        h.wait_until(lambda: obs.acks > 20 and obs.last_200 is not None, 30, msg="the writer and /primary 200")
        frozen_at = time.monotonic()
        freeze_etcd(c)
        try:
            # well past ttl: the primary keeps acknowledging writes and answering 200 on /primary
            h.wait_until(lambda: patroni(c.nodes[leader]).get("failsafe_mode_is_active") is True, 3 * TTL,
                         msg="failsafe_mode_is_active on the primary")
            time.sleep(2 * TTL)
            now = time.monotonic()
            log = c.nodes[leader].log_text()
            assert now - obs.last_ack < 2, f"writes stopped while every peer answered:\n{log[-3000:]}"
            assert now - obs.last_200 < 2, f"/primary stopped answering 200:\n{log[-3000:]}"
            assert now - frozen_at > 2 * TTL
            assert "continue to run as a leader because failsafe mode is enabled and all members are accessible" \
                in log
            for n in replicas:
                assert patroni(c.nodes[n]).get("failsafe_mode_is_active") is True, n
            m = c.nodes[leader].rest("GET", "/metrics").text
            assert 'patroni_failsafe_mode_is_active{scope="%s",name="%s"} 1' % (c.scope, leader) in m
            print(f"\nfailsafe: the primary ran {now - frozen_at:.1f} s with etcd frozen, "
                  f"{obs.acks} writes acknowledged")

            # one peer stops answering (its agent frozen): the primary demotes before ttl has passed
            stopped = replicas[0]
            c.nodes[stopped].pause()
            stopped_at = time.monotonic()
            h.wait_until(lambda: time.monotonic() - obs.last_ack > 3 and time.monotonic() - obs.last_200 > 3,
                         3 * TTL, msg="the primary to stop acknowledging writes once a peer does not answer")
            figures = (f"after the peer froze: last write {obs.last_ack - stopped_at:+.2f} s, "
                       f"last /primary 200 {obs.last_200 - stopped_at:+.2f} s (ttl {TTL})")
            print("failsafe: " + figures)
            log = c.nodes[leader].log_text()
            assert obs.last_ack - stopped_at < TTL, figures + "\n" + log[-3000:]
            assert obs.last_200 - stopped_at < TTL, figures + "\n" + log[-3000:]
            assert f"Request failed to {stopped}" in log
        finally:
            thaw_etcd(c)
            for n in c.nodes.values():
                n.resume()
    # etcd back: the same leader, every node streaming from it
    h.wait_until(lambda: c.leader() == leader and c.is_primary(leader), 90, msg=f"{leader} the primary again")
    assert c.check_healthy(90) == leader


def test_failsafe_off_fences_as_before(cluster):
    c = cluster
    leader = c.wait_leader(30)
    r = c.nodes[leader].rest("PATCH", "/config", body={"failsafe_mode": False})
    assert r.status_code == 200, r.text
    h.wait_until(lambda: c.nodes[leader].rest("POST", "/failsafe", body={"name": "x"}).status_code == 502, 30,
                 msg="POST /failsafe 502 once failsafe_mode is off")
    with test_fencing.Observer(c, leader) as obs:
        h.wait_until(lambda: obs.acks > 20 and obs.renewal_sent is not None and obs.last_200 is not None, 30,
                     msg="the writer committing, /primary 200 and the lease age published")
        time.sleep(2 * LOOP_WAIT)
        freeze_etcd(c)
        try:
            h.wait_until(lambda: time.monotonic() - obs.last_ack > 3 and time.monotonic() - obs.last_200 > 3,
                         4 * TTL, msg="the primary to stop acknowledging writes and answering 200 on /primary")
            time.sleep(1)
        finally:
            thaw_etcd(c)
    deadline = obs.renewal_sent + TTL
    log = c.nodes[leader].log_text()
    assert obs.last_ack < deadline, log[-3000:]
    assert obs.last_200 < deadline, log[-3000:]
    assert "failsafe mode is enabled" not in log
    h.wait_until(lambda: (lambda l: l and c.is_primary(l))(c.leader()), 90, msg="a leader that is a primary")
    c.check_healthy(90)
