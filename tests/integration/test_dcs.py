"""The DCS layer (src/dcs) against real etcd 3.4, through build/tests/dcs-tool, which links the production
objects (issue: DCS layer). Also the compatibility of the key layout with Debian's patronictl (3.0.2) in
both directions, and pgha-ctl.

  * leader race: two clients released at the same moment, exactly one wins, every round
  * lease expiry: kill -9 of a holder removes the leader and member keys after ttl
  * the watch delivers every change in order and survives the loss of the member it is connected to
  * one member stopped, killed or frozen (SIGSTOP): every operation still works within retry_timeout
  * every member stopped: each call fails within retry_timeout with an error naming etcd and the
    endpoints, and works again when they return
  * etcd with authentication (username/password, wrong password, expired tokens, tokens invalidated under a
    running agent) and with TLS (CA + client certificate)
  * keys written by pgha are read by patronictl and pgha-ctl; keys in Patroni's format (spec §1.2) are
    decoded by pgha

Needs etcd 3.4 (/usr/bin/etcd, etcdctl), openssl and `ninja -C build` (dcs-tool, pgha-ctl); the
patronictl half of the compatibility test needs Debian's patroni package. Runs in about 70 s.
"""

import json
import os
import signal
import threading
import time

import pytest

import etcdx
import pghatest as h

pytestmark = pytest.mark.skipif(not os.access(etcdx.dcs_tool_path(), os.X_OK),
                                reason=f"{etcdx.dcs_tool_path()} is not built (ninja -C build tests/dcs-tool)")

NS = "/service"
SLACK = 1.0  # seconds of scheduling slack on top of retry_timeout


def key(scope, rel):
    return f"{NS}/{scope}/{rel}"


def config(tmp_base, name, scope, hosts, **etcd3):
    return etcdx.write_dcs_config(os.path.join(tmp_base, f"{name}-{scope}.yml"), name, scope, hosts, etcd3=etcd3)


def ops_results(run):
    """{op: result line} of a `dcs-tool ops` run (connect included)."""
    res = {o["op"]: o for o in run.objects if "op" in o}
    assert "connect" in res, f"no ops output: {run}"
    return res


OPS = ["connect", "read_cluster", "acquire", "update_leader", "touch_member", "initialize", "set_config",
       "set_failover", "set_sync", "set_history", "set_status", "delete_leader", "cancel_initialization"]


def assert_all_ops_work(run, retry_timeout):
    res = ops_results(run)
    assert list(res) == OPS, run
    for op, o in res.items():
        assert o["result"] >= 0, f"{op} failed: {o.get('error')}\n{run}"
        assert o["seconds"] <= retry_timeout + SLACK, f"{op} took {o['seconds']} s > retry_timeout {retry_timeout}"
    assert run.rc == 0, run
    return res


@pytest.fixture
def cleanup_scopes(etcd_cluster):
    scopes = []
    yield scopes
    etcd_cluster.ensure_all_running()
    for s in scopes:
        try:
            etcd_cluster.delete_prefix(f"{NS}/{s}/")
        except Exception:  # noqa: BLE001 - best effort
            pass


@pytest.fixture
def bg(tmp_base):
    """start(args, label, stopped=False) -> etcdx.BgProcess; all are stopped at the end of the test."""
    procs = []

    def start(args, label, stopped=False):
        p = etcdx.BgProcess(args, os.path.join(tmp_base, f"{label}.stderr"), label=label, stopped=stopped)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop(timeout=5)


# ------------------------------------------------------------------------------------------------ leader race


def test_leader_race_exactly_one_wins(etcd_cluster, tmp_base, unique_name, bg, cleanup_scopes):
    c = etcd_cluster
    rounds = 20
    wins = {"a": 0, "b": 0}
    for i in range(rounds):
        scope = f"{unique_name}-r{i}"
        cleanup_scopes.append(scope)
        procs = {}
        for name in ("a", "b"):
            cfg = config(tmp_base, name, scope, c.endpoints)
            procs[name] = bg(etcdx.tool_args(cfg, "race", "0"), f"race-{i}-{name}", stopped=True)
        for p in procs.values():
            p.wait_stopped()
        # release both at the same moment, in alternating order
        for name in (("a", "b") if i % 2 == 0 else ("b", "a")):
            procs[name].cont()
        results = {}
        for name, p in procs.items():
            assert p.wait(15) == 0, f"round {i}: dcs-tool {name} failed: {p.lines}"
            objs = [o for _, o in p.objects() if "won" in o]
            assert len(objs) == 1, f"round {i}: {name} printed {p.lines}"
            results[name] = objs[0]
        assert all(r["result"] in (0, 1) for r in results.values()), f"round {i}: an error: {results}"
        winners = [n for n, r in results.items() if r["won"]]
        assert len(winners) == 1, f"round {i}: winners {winners}: {results}"
        wins[winners[0]] += 1
        kv = c.get_kv(key(scope, "leader"))
        assert kv is not None and kv["value"] == winners[0], f"round {i}: leader key {kv}, winner {winners}"
        assert int(kv.get("lease", 0)) != 0, f"round {i}: the leader key has no lease: {kv}"
        assert c.lease_ttl(kv["lease"]) > 0, f"round {i}: the leader key's lease is not alive"
    print(f"wins over {rounds} rounds: {wins}")


# ------------------------------------------------------------------------------------------------ lease expiry


def test_lease_expiry_removes_leader_and_member_keys(etcd_cluster, tmp_base, unique_name, bg, cleanup_scopes):
    c = etcd_cluster
    ttl, loop_wait = 6, 1
    cleanup_scopes.append(unique_name)
    cfg = config(tmp_base, "holder", unique_name, c.endpoints)
    p = bg(etcdx.tool_args(cfg, "hold", "60", "running", ttl=ttl, loop_wait=loop_wait, retry_timeout=2), "hold")
    _, first = p.wait_line(lambda o: "leader" in o, 10)
    assert first["leader"] is True and first["member"] == 1, first
    lk, mk = key(unique_name, "leader"), key(unique_name, "members/holder")
    leader, member = c.get_kv(lk), c.get_kv(mk)
    assert leader["value"] == "holder"
    assert json.loads(member["value"])["role"] == "primary"
    # both keys on the one lease the holder reported
    assert leader["lease"] == member["lease"] == first["lease"]
    time.sleep(2.5)  # a few renewals
    assert c.get(lk) == "holder"
    p.kill(signal.SIGKILL)
    t_kill = time.monotonic()
    p.wait(10)
    gone = {}
    deadline = t_kill + ttl + 6
    while len(gone) < 2 and time.monotonic() < deadline:
        kvs = c.get_prefix(f"{NS}/{unique_name}/")
        now = time.monotonic() - t_kill
        for k in (lk, mk):
            if k not in kvs and k not in gone:
                gone[k] = now
        time.sleep(0.05)
    print(f"ttl {ttl}: leader key gone {gone.get(lk)} s, member key gone {gone.get(mk)} s after kill -9")
    assert lk in gone and mk in gone, f"keys still there {ttl + 6} s after kill -9: {gone}"
    for k, t in gone.items():
        assert ttl - 1 <= t <= ttl + 3, f"{k} disappeared {t:.2f} s after kill -9 (ttl {ttl})"
    assert abs(gone[lk] - gone[mk]) < 0.5, f"one lease, but the keys went at different times: {gone}"


# ------------------------------------------------------------------------------------------------ watch


def test_watch_delivers_every_change_and_survives_member_loss(etcd_cluster, tmp_base, unique_name, bg,
                                                              cleanup_scopes):
    c = etcd_cluster
    cleanup_scopes.append(unique_name)
    ck = key(unique_name, "config")
    c.put(ck, json.dumps({"v": -1}))
    # only member 0 is configured: the client starts there and learns the others from the member list
    cfg = config(tmp_base, "watcher", unique_name, [c.endpoints[0]])
    w = bg(etcdx.tool_args(cfg, "watch", "60", ttl=10, loop_wait=2, retry_timeout=3), "watch")
    w.wait_line(lambda o: (o.get("view") or {}).get("config") == {"v": -1}, 10, msg="the initial view")
    ports = [m.client_port for m in c.members]
    peers = etcdx.tcp_peers(w.pid)
    assert peers and set(peers) <= {ports[0]}, f"watch should be connected to member 0 ({ports[0]}): {peers}"

    written = []
    for i in range(6):
        c.put(ck, json.dumps({"v": i}), member=1)
        written.append(i)
        time.sleep(0.2)
    t_stop = time.time()
    c.stop_member(0)
    for i in range(6, 14):
        c.put(ck, json.dumps({"v": i}), member=1)
        written.append(i)
        time.sleep(0.2)
    last = written[-1]
    w.wait_line(lambda o: (o.get("view") or {}).get("config") == {"v": last}, 10, msg=f"value {last} in the watch")
    peers_after = etcdx.tcp_peers(w.pid)
    assert peers_after and ports[0] not in peers_after and set(peers_after) <= set(ports[1:]), \
        f"after the stop the watch should use member 1 or 2 ({ports[1:]}): {peers_after}"
    w.stop()
    seen = []
    for t, o in w.objects():
        v = ((o.get("view") or {}).get("config") or {}).get("v")
        if v is not None and v >= 0 and (not seen or seen[-1][1] != v):
            seen.append((t, v))
    values = [v for _, v in seen]
    stats = [o for _, o in w.objects() if "watch_reconnects" in o]
    gap = [round(t - t_stop, 3) for t, v in seen if v >= 6][:1]
    print(f"watch saw {values}; first value after the stop seen {gap} s after it; stats {stats}")
    assert values == written, f"watch output {values} != written {written}"
    assert stats and stats[-1]["watch_reconnects"] >= 1, stats
    errors = [o for _, o in w.objects() if "error" in o]
    assert not errors or all(o["error"] == "cache not ready" for o in errors), errors


# ------------------------------------------------------------------------------------------------ member failures


def _leader_first(c):
    """The hosts list with the raft leader first (the client starts there)."""
    li = c.leader_index()
    assert li is not None
    return li, [c.endpoints[li]] + [e for i, e in enumerate(c.endpoints) if i != li]


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_operations_work_with_one_member_down(etcd_cluster, tmp_base, unique_name, how, cleanup_scopes):
    c = etcd_cluster
    cleanup_scopes.append(unique_name)
    rt = 3
    li, hosts = _leader_first(c)
    cfg = config(tmp_base, "n1", unique_name, hosts)
    assert_all_ops_work(etcdx.dcs_tool(cfg, "ops", retry_timeout=rt), rt)
    # the raft leader, which is also the first configured endpoint: SIGTERM hands raft leadership over;
    # SIGKILL forces an election while the client is already talking to the cluster
    if how == "stop":
        c.stop_member(li)
    else:
        c.kill_member(li)
    run = etcdx.dcs_tool(cfg, "ops", retry_timeout=rt)
    res = assert_all_ops_work(run, rt)
    print(f"{how} of the raft leader: slowest op {max(o['seconds'] for o in res.values()):.2f} s")
    c.start_member(li)


def test_operations_work_with_one_member_frozen(etcd_cluster, tmp_base, unique_name, bg, cleanup_scopes):
    c = etcd_cluster
    cleanup_scopes.append(unique_name)
    rt = 3
    li, hosts = _leader_first(c)
    cfg = config(tmp_base, "n1", unique_name, hosts)
    # 1. a client that starts while the raft leader (its first endpoint) is frozen: connect times out
    #    on it, the others elect a new leader meanwhile
    c.pause_member(li)
    run = etcdx.dcs_tool(cfg, "ops", retry_timeout=rt)
    res = assert_all_ops_work(run, rt)
    print(f"raft leader frozen: connect {res['connect']['seconds']:.2f} s, "
          f"slowest op {max(o['seconds'] for o in res.values()):.2f} s")
    c.resume_member(li)
    c.wait_healthy()

    # 2. the member a running leader talks to is frozen under it: the renewals move to another member
    #    within retry_timeout and the leader never loses its key
    fi = next(i for i in range(3) if i != c.leader_index())  # a follower this time
    scope2 = unique_name + "-b"
    cleanup_scopes.append(scope2)
    cfg2 = config(tmp_base, "n2", scope2, [c.endpoints[fi]])
    loop_wait = 1
    p = bg(etcdx.tool_args(cfg2, "race", "30", ttl=10, loop_wait=loop_wait, retry_timeout=rt), "race-frozen")
    _, won = p.wait_line(lambda o: "won" in o, 10)
    assert won["won"] is True, won
    lease = c.get_kv(key(scope2, "leader"))["lease"]
    p.wait_line(lambda o: o.get("op") == "update_leader", 5)
    assert set(etcdx.tcp_peers(p.pid)) == {c.members[fi].client_port}
    c.pause_member(fi)
    t_pause = time.time()
    time.sleep(rt + 2 * loop_wait + 1)
    c.resume_member(fi)
    p.stop()
    renewals = [(t, o) for t, o in p.objects() if o.get("op") == "update_leader"]
    failed = [o for _, o in renewals if o["result"] != 1]
    assert not failed, f"renewals failed while a member was frozen: {failed}"
    times = [t for t, _ in renewals]
    gaps = [b - a for a, b in zip(times, times[1:])]
    worst = max(gaps)
    print(f"follower frozen under a running leader: longest interval between renewals {worst:.2f} s "
          f"(loop_wait {loop_wait}, retry_timeout {rt})")
    assert worst <= loop_wait + rt + SLACK, f"a renewal took longer than retry_timeout: gaps {gaps}"
    assert any(t > t_pause + rt for t in times), "no renewal after the member was frozen"
    assert c.get_kv(key(scope2, "leader"))["lease"] == lease, "the leader key was lost and re-created"


def test_all_members_stopped_calls_fail_within_retry_timeout(etcd_cluster, tmp_base, unique_name, bg,
                                                             cleanup_scopes):
    c = etcd_cluster
    cleanup_scopes.append(unique_name)
    rt = 2
    cfg = config(tmp_base, "n1", unique_name, c.endpoints)
    # a running leader sees the outage and takes its key again when etcd is back
    p = bg(etcdx.tool_args(cfg, "race", "120", ttl=10, loop_wait=1, retry_timeout=rt), "race-outage")
    p.wait_line(lambda o: o.get("won") is True, 10)
    for i in range(3):
        c.stop_member(i)
    t_down = time.time() + 0.5  # a renewal answered just before the last member went away may print late
    run = etcdx.dcs_tool(cfg, "ops", retry_timeout=rt)
    res = ops_results(run)
    assert list(res) == OPS, run
    assert run.rc != 0
    for op, o in res.items():
        assert o["result"] < 0, f"{op} succeeded with every etcd member stopped: {o}"
        assert o["seconds"] <= rt + SLACK, f"{op} took {o['seconds']} s > retry_timeout {rt} + {SLACK}"
        err = o["error"]
        assert "etcd" in err and all(e in err for e in c.endpoints), f"{op}: unclear error: {err}"
    print("with every member stopped: " + ", ".join(f"{op} {o['seconds']:.2f} s" for op, o in res.items()))
    print(f"error: {res['read_cluster']['error']}")
    # the other commands say it on stderr and exit non-zero
    for cmd in (["cluster"], ["get", "config"], ["put", "config", "{}"]):
        r = etcdx.dcs_tool(cfg, *cmd, retry_timeout=rt)
        assert r.rc != 0 and r.seconds <= rt + SLACK + 0.5, r
        assert "etcd" in r.output and c.endpoints[0] in r.output, r

    t_up = time.time()
    for i in range(3):
        c.start_member(i, wait=False)
    c.wait_healthy()
    assert_all_ops_work(etcdx.dcs_tool(cfg, "ops", retry_timeout=rt), rt)
    # the long-running client recovers by itself
    h.wait_until(lambda: any(t > t_up and o.get("op") == "update_leader" and o["result"] == 1
                             for t, o in p.objects()), 15, msg="the running client to renew again")
    outage = [o for t, o in p.objects() if t_down < t < t_up and o.get("op") == "update_leader"]
    assert outage and all(o["result"] < 0 for o in outage), outage
    h.wait_until(lambda: c.get(key(unique_name, "leader")) == "n1", 10, msg="the leader key back")


# ------------------------------------------------------------------------------------------------ auth and TLS


def test_etcd_with_authentication(tmp_base, unique_name):
    e = etcdx.SingleEtcd(tmp_base, extra_args=["--auth-token-ttl", "2"])
    try:
        e.etcdctl("user", "add", "root:rootpw")
        e.etcdctl("role", "add", "pgha")
        e.etcdctl("role", "grant-permission", "pgha", "--prefix=true", "readwrite", f"{NS}/{unique_name}/")
        e.etcdctl("user", "add", "pgha:s3cret")
        e.etcdctl("user", "grant-role", "pgha", "pgha")
        e.etcdctl("auth", "enable")
        assert "user name is empty" in e.etcdctl("get", "x", check=False).stderr

        good = config(tmp_base, "n1", unique_name, [e.endpoint], username="pgha", password="s3cret")
        run = etcdx.dcs_tool(good, "ops", retry_timeout=3)
        assert_all_ops_work(run, 3)
        got = e.etcdctl("get", key(unique_name, "config"), "--print-value-only", user="root:rootpw").stdout
        assert json.loads(got) == {"ttl": 10, "loop_wait": 2, "retry_timeout": 3}

        # tokens expire after 2 s of inactivity (--auth-token-ttl): a long-running client re-authenticates
        run = etcdx.dcs_tool(good, "race", "9", ttl=10, loop_wait=3, retry_timeout=3, timeout=30,
                             env={"DCS_TOOL_DEBUG": "1"})
        objs = run.objects
        assert objs[0].get("won") is True, run
        renewals = [o for o in objs if o.get("op") == "update_leader"]
        assert len(renewals) >= 2 and all(o["result"] == 1 for o in renewals), run
        assert "invalid auth token" in run.output and "authenticating again" in run.output, run

        # wrong password: an authentication error at once, no hang
        bad = config(tmp_base, "n2", unique_name, [e.endpoint], username="pgha", password="wrong")
        for cmd in (["ops"], ["cluster"]):
            # at once, not after retrying for retry_timeout (10 s); the bound leaves room for a loaded machine
            r = etcdx.dcs_tool(bad, *cmd, retry_timeout=10)
            assert r.rc != 0 and r.seconds < 5.0, r
            assert "authentication failed" in r.output, r
        # no credentials at all
        anon = config(tmp_base, "n3", unique_name, [e.endpoint])
        r = etcdx.dcs_tool(anon, "cluster", retry_timeout=3)
        assert r.rc != 0 and r.seconds <= 3 + SLACK and "user name is empty" in r.output, r
        # a user without permission on the prefix
        e.etcdctl("user", "add", "nobody:pw", user="root:rootpw")
        other = config(tmp_base, "n4", unique_name, [e.endpoint], username="nobody", password="pw")
        r = etcdx.dcs_tool(other, "cluster", retry_timeout=3)
        assert r.rc != 0 and r.seconds <= 3 + SLACK and "permission denied" in r.output, r
    finally:
        e.destroy()


def test_etcd_auth_token_invalidated_keeps_the_lease(tmp_base, unique_name):
    """Member discovery and the lease keepalive carry the token; when etcd invalidates it under a running
    agent (another user added: "revision of auth store is old"; auth disabled and enabled again: "invalid
    auth token"), the agent authenticates again and keeps renewing its lock. (etcd 3.4.42, 3.5.28 and 3.6.9
    refuse member/list and lease/keepalive without a token; the 3.4 here does not, so that part is only
    checked as "no failed member list".)"""
    e = etcdx.SingleEtcd(tmp_base)
    try:
        e.etcdctl("user", "add", "root:rootpw")
        e.etcdctl("role", "add", "pgha")
        e.etcdctl("role", "grant-permission", "pgha", "--prefix=true", "readwrite", f"{NS}/{unique_name}/")
        e.etcdctl("user", "add", "pgha:s3cret")
        e.etcdctl("user", "grant-role", "pgha", "pgha")
        e.etcdctl("auth", "enable")
        good = config(tmp_base, "n1", unique_name, [e.endpoint], username="pgha", password="s3cret")

        def bump_revision():
            e.etcdctl("user", "add", "other:pw", user="root:rootpw")

        def reenable():
            e.etcdctl("auth", "disable", user="root:rootpw")
            e.etcdctl("auth", "enable")

        timers = [threading.Timer(3, bump_revision), threading.Timer(7, reenable)]
        for t in timers:
            t.start()
        try:
            run = etcdx.dcs_tool(good, "race", "11", ttl=10, loop_wait=1, retry_timeout=3, timeout=40,
                                 env={"DCS_TOOL_DEBUG": "1"})
        finally:
            for t in timers:
                t.join()
        objs = run.objects
        assert objs[0].get("won") is True, run
        renewals = [o for o in objs if o.get("op") == "update_leader"]
        assert len(renewals) >= 8 and all(o["result"] == 1 for o in renewals), run
        assert "authenticating again" in run.output, run
        assert "revision of auth store is old" in run.output or "invalid auth token" in run.output, run
        assert "/cluster/member/list failed" not in run.output, run
    finally:
        e.destroy()


def test_etcd_with_tls_and_client_certificate(tmp_base, unique_name):
    pki = etcdx.make_test_pki(os.path.join(tmp_base, "pki"))
    e = etcdx.SingleEtcd(tmp_base, tls=pki)
    try:
        tls = {"protocol": "https", "cacert": pki["ca"], "cert": pki["client"], "key": pki["client_key"]}
        cfg = config(tmp_base, "n1", unique_name, [e.endpoint], **tls)
        assert_all_ops_work(etcdx.dcs_tool(cfg, "ops", retry_timeout=3), 3)
        r = etcdx.dcs_tool(cfg, "cluster", retry_timeout=3)
        assert r.rc == 0 and r.objects[0]["config"] == {"ttl": 10, "loop_wait": 2, "retry_timeout": 3}, r
        # protocol is implied by cacert/cert when not given
        implied = config(tmp_base, "n2", unique_name, [e.endpoint],
                         **{k: v for k, v in tls.items() if k != "protocol"})
        assert etcdx.dcs_tool(implied, "cluster", retry_timeout=3).rc == 0
        # negative: no client certificate (etcd demands one), or a CA that did not sign the server's
        for name, bad in (("nocert", {"protocol": "https", "cacert": pki["ca"]}),
                          ("wrongca", dict(tls, cacert=pki["other_ca"]))):
            r = etcdx.dcs_tool(config(tmp_base, name, unique_name, [e.endpoint], **bad), "cluster",
                               retry_timeout=2)
            assert r.rc != 0 and r.seconds <= 2 + SLACK, r
            assert e.endpoint in r.output, r
    finally:
        e.destroy()


# ------------------------------------------------------------------------------------------------ compatibility


# as pgha writes a replica's key, with Patroni 4.1's replay_lsn and receive_lsn, which older readers ignore
REPLICA_JSON = ('{"conn_url":"postgres://127.0.0.1:5433/postgres","api_url":"http://127.0.0.1:8009/patroni",'
                '"state":"running","role":"replica","version":"4.0.6","xlog_location":50331648,'
                '"replay_lsn":50331000,"receive_lsn":50331648,"replication_state":"streaming","timeline":1}')


def test_patronictl_and_pgha_ctl_read_what_pgha_writes(etcd_cluster, tmp_base, unique_name, bg, cleanup_scopes):
    c = etcd_cluster
    cleanup_scopes.append(unique_name)
    cfg1 = etcdx.write_dcs_config(os.path.join(tmp_base, "node1.yml"), "node1", unique_name, c.endpoints,
                                  pg_port=5432, rest_port=8008)
    cfg2 = etcdx.write_dcs_config(os.path.join(tmp_base, "node2.yml"), "node2", unique_name, c.endpoints,
                                  pg_port=5433, rest_port=8009)
    leader = bg(etcdx.tool_args(cfg1, "hold", "60", "running", ttl=20, loop_wait=2, retry_timeout=3), "hold")
    _, first = leader.wait_line(lambda o: "leader" in o, 10)
    assert first["leader"] is True
    replica = bg(etcdx.tool_args(cfg2, "member", "60", REPLICA_JSON, ttl=20, loop_wait=2, retry_timeout=3),
                 "member")
    replica.wait_line(lambda o: o.get("op") == "touch_member" and o["result"] == 1, 10)
    # the replica key is stored byte for byte; the leader's status puts the replica 3 MiB behind
    assert c.get(key(unique_name, "members/node2")) == REPLICA_JSON
    r = etcdx.dcs_tool(cfg1, "put", "status", '{"optime":53477376}')
    assert r.rc == 0, r
    r = etcdx.dcs_tool(cfg1, "put", "initialize", "7401234567890123456")
    assert r.rc == 0, r

    expected = [
        {"Cluster": unique_name, "Member": "node1", "Host": "127.0.0.1:5432", "Role": "Leader", "State": "running",
         "TL": 1},
        {"Cluster": unique_name, "Member": "node2", "Host": "127.0.0.1:5433", "Role": "Replica",
         "State": "streaming", "TL": 1, "Lag in MB": 3},
    ]
    ctl = etcdx.run_cmd([etcdx.pgha_ctl_path(), "-c", cfg1, "list", "-f", "json"], timeout=30)
    assert ctl.rc == 0, ctl
    # pgha-ctl shows Patroni 4.1's columns: the receive and replay positions and their lags instead of "Lag in MB"
    # (a key without receive_lsn/replay_lsn: xlog_location is the receive position of a streaming replica)
    got = json.loads(ctl.output)
    positions = {k: got[1].pop(k, None) for k in ("Receive LSN", "Receive Lag", "Replay LSN", "Replay Lag")}
    assert got == [expected[0], {k: v for k, v in expected[1].items() if k != "Lag in MB"}], ctl
    assert positions["Receive LSN"] == "0/3000000" and positions["Receive Lag"] == 3, ctl
    assert positions["Replay LSN"] in ("unknown", "0/2FFFD78"), ctl

    if not os.access("/usr/bin/patronictl", os.X_OK):
        pytest.skip("patronictl not installed (Debian package patroni; scripts/install-deps.sh installs it): "
                    "the pgha-ctl half of this test passed")
    p = etcdx.run_cmd(["/usr/bin/patronictl", "-c", cfg1, "list", "-f", "json"], timeout=60)
    assert p.rc == 0, p
    got = json.loads(p.output[p.output.index("["):])
    # Patroni 3.0.2 predates replication_state (3.0.4): its State column is the member state
    expected_302 = [dict(expected[0]), dict(expected[1], State="running")]
    assert got == expected_302, p
    # and the pretty table, for the record
    pretty = etcdx.run_cmd(["/usr/bin/patronictl", "-c", cfg1, "list"], timeout=60)
    assert pretty.rc == 0 and "| node1  | 127.0.0.1:5432 | Leader " in pretty.output, pretty
    print(pretty.output)


# Exact values from spec §1.2.
SPEC_KEYS = {
    "initialize": "7401234567890123456",
    "leader": "node1",
    "members/node1": '{"conn_url":"postgres://10.0.0.1:5432/postgres","api_url":"http://10.0.0.1:8008/patroni",'
                     '"state":"running","role":"primary","version":"4.0.6","xlog_location":67393608,"timeline":3,'
                     '"tags":{"nosync":true,"failover_priority":2,"clonefrom":true,"zone":"a"},'
                     '"pending_restart":true,"pending_restart_reason":{"max_connections":'
                     '{"old_value":"100","new_value":"200"}}}',
    "members/node2": '{"conn_url":"postgres://10.0.0.2:5432/postgres","api_url":"http://10.0.0.2:8008/patroni",'
                     '"state":"running","role":"replica","version":"4.0.6","xlog_location":67420024,'
                     '"replication_state":"streaming","timeline":3}',
    "config": '{"ttl":30,"loop_wait":10,"retry_timeout":10,"maximum_lag_on_failover":1048576,"postgresql":'
              '{"use_pg_rewind":true,"use_slots":true,"parameters":{"wal_level":"replica","hot_standby":"on"}}}',
    "status": '{"optime":67393608,"slots":{"node1":67393608,"node2":67393608},"retain_slots":["node1","node2"]}',
    "failover": '{"leader":"node1","member":"node2","scheduled_at":"2025-06-01T12:00:00+00:00"}',
    "sync": '{"leader":"node1","quorum":1,"sync_standby":"node2,node3,node4"}',
    "history": '[[1,25623960,"no recovery target specified","2024-08-28T19:39:26.417254+00:00","node2"]]',
    "failsafe": '{"node1":"http://10.0.0.1:8008/patroni","node2":"http://10.0.0.2:8008/patroni"}',
    # ignored: not a key Patroni reads, and a member key with more than one '/'
    "members/node9/extra": '{"state":"running"}',
    "unrelated": "x",
}


def _read_view(cfg):
    r = etcdx.dcs_tool(cfg, "cluster")
    assert r.rc == 0 and len(r.objects) == 1, r
    return r.objects[0]


def test_pgha_reads_keys_in_patroni_format(etcd_cluster, tmp_base, unique_name, cleanup_scopes):
    c = etcd_cluster
    cleanup_scopes.append(unique_name)
    lease = c.lease_grant(60)
    for rel, value in SPEC_KEYS.items():
        c.put(key(unique_name, rel), value, lease=lease if rel in ("leader", "members/node1") else None)
    # a key of another cluster whose name starts the same way must not leak in
    c.put(f"{NS}/{unique_name}x/leader", "intruder")
    cleanup_scopes.append(unique_name + "x")
    cfg = config(tmp_base, "reader", unique_name, c.endpoints)
    v = _read_view(cfg)
    assert v["initialize"] == "7401234567890123456"
    assert v["leader"] == "node1" and v["leader_session"] == str(int(lease))
    assert set(v["members"]) == {"node1", "node2"}
    for n in ("node1", "node2"):
        assert v["members"][n] == json.loads(SPEC_KEYS[f"members/{n}"])
    assert v["config"] == json.loads(SPEC_KEYS["config"])
    assert v["failover"] == {"leader": "node1", "member": "node2", "scheduled_at": "2025-06-01T12:00:00+00:00"}
    assert v["sync"] == {"leader": "node1", "quorum": 1, "members": ["node2", "node3", "node4"]}
    assert v["history"] == json.loads(SPEC_KEYS["history"])
    assert v["timeline"] == 2
    assert v["optime"] == 67393608
    assert v["slots"] == {"node1": 67393608, "node2": 67393608}
    assert v["retain_slots"] == ["node1", "node2"]
    assert v["failsafe"] == json.loads(SPEC_KEYS["failsafe"])

    # the other forms Patroni's readers accept (spec §1.2 reader rules)
    base = f"{NS}/{unique_name}/"
    for rel in ("status", "history", "failsafe", "members/node1"):
        c.delete(base + rel)
    c.put(base + "optime/leader", "67108864")  # legacy optime, used when /status is absent
    c.put(base + "failover", "node1:node2")  # legacy leader:candidate
    c.put(base + "sync", '{"leader":"node1","quorum":0,"sync_standby":null}')
    c.put(base + "members/node3", "postgres://10.0.0.3:5432/postgres?application_name=http://10.0.0.3:8008/patroni")
    c.put(base + "members/node4", "not json at all")
    v = _read_view(cfg)
    assert v["optime"] == 67108864 and "slots" not in v and "retain_slots" not in v
    assert v["failover"] == {"leader": "node1", "member": "node2"}
    assert v["sync"] == {"leader": "node1", "quorum": 0, "members": []}
    assert "history" not in v and v["timeline"] == 0 and "failsafe" not in v
    assert set(v["members"]) == {"node2", "node3", "node4"}
    assert v["members"]["node3"]["conn_url"] == "postgres://10.0.0.3:5432/postgres"
    assert v["members"]["node3"]["api_url"] == "http://10.0.0.3:8008/patroni"
    assert v["members"]["node4"] == {}
    assert v["leader"] == "node1"  # the leader object exists although its member key is gone

    c.put(base + "status", '{"optime":67500000,"slots":"{\\"s1\\":67500000}","retain_slots":"[\\"s1\\"]"}')
    c.put(base + "history", "[]")
    c.put(base + "failover", "{}")
    c.put(base + "leader", "")
    v = _read_view(cfg)
    assert v["optime"] == 67500000 and v["slots"] == {"s1": 67500000} and v["retain_slots"] == ["s1"]
    assert v["history"] == [] and v["timeline"] == 1
    assert "failover" not in v, "{} means no failover request"
    assert "leader" not in v, "an empty leader value means unlocked"
