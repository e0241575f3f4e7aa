"""Synchronous replication against real etcd, PostgreSQL 15 and pgha (spec §4.10, §1.2 `/sync`, §2.2/§2.3).

The promise of synchronous mode is that no commit acknowledged to a client is lost by a failover. These
scenarios check it end to end, for `synchronous_mode: on`, `on` + `synchronous_mode_strict` and `quorum`
(synchronous_node_count 1, and 2 for `quorum2`):

* zero loss under repeated failover: a writer inserts sequential ids through whichever node is primary and
  records every id whose COMMIT returned (without the "canceling wait for synchronous replication" warning);
  the primary's agent and postmaster are killed with SIGKILL together, a replica takes over, the killed node
  rejoins (pg_rewind) — three times; after each failover every acknowledged id must be on the new primary,
  and the new primary must have been allowed to win by `/sync` as it stood before the kill;
* the synchronous standby dies (mode specific, see each helper): `/sync` and synchronous_standby_names are
  sampled every 0.2 s and the §4.10 invariant is checked on every sample;
* on mode only: a replica that lags behind must not be named in `/sync` before it has the WAL that the
  acknowledged commits need (the "reached the primary's flush LSN recorded when synchronous_standby_names
  last changed" rule of §4.10); a standby being shut down leaves sync duty before its PostgreSQL stops.

One 3-node cluster per mode is shared by the scenarios of that mode (module-scoped, parametrised fixture);
before each scenario it is checked (agents running, streaming, the mode's steady state) and built anew
when it is not healthy, so that a failed scenario does not fail the following ones.
Timings: ttl 10 (pgha.allow_short_ttl), loop_wait 1, retry_timeout 4 (loop_wait + 2*retry_timeout <= ttl).

Quorum mode: the scenarios skip (with the reason) when the agent does not run `synchronous_mode: quorum` as
quorum commit, i.e. synchronous_standby_names never becomes `ANY n (...)` with a matching `/sync.quorum`.

The figures (acknowledged writes, failover and rejoin times) are printed; run pytest with -s to see them.
A failover time is measured up to the first acknowledged write on the new primary. A commit left waiting
for a standby that is gone is released only by a later reply of a standby, which PostgreSQL sends when new
WAL arrives or after wal_receiver_status_interval (10 s); the writer cancels such a commit after 5 s (not
acknowledged), so figures that include one (quorum2: the pre-promotion ANY 2 waits for the dead primary
until the new leader reduces it) are about 5 s longer than the database was unwritable.
"""

import itertools
import json
import os
import re
import signal
import threading
import time

import psycopg2
import pytest

import pghatest as h
from hacluster import HaCluster, SharedCluster

pytestmark = pytest.mark.needs_root

TTL = 10
LOOP_WAIT = 1
RETRY_TIMEOUT = 4
FAILOVERS = 2

# fixture parameter -> (synchronous mode settings of /config, synchronous_node_count)
MODES = {
    "on": ({"synchronous_mode": True}, 1),
    "strict": ({"synchronous_mode": True, "synchronous_mode_strict": True}, 1),
    "quorum": ({"synchronous_mode": "quorum"}, 1),
    "quorum2": ({"synchronous_mode": "quorum"}, 2),
}
SYNC_WARNING = "synchronous replication"  # "canceling [the] wait for synchronous replication ..."
COMMIT_TIMEOUT = 5.0  # client-side: a commit still waiting then is cancelled (and not acknowledged)
IDS = itertools.count(1)  # ids unique across the writers of a run (a key clash would look like an outage)


# ------------------------------------------------------------------------------------------ helpers


def parse_ssn(value):
    """synchronous_standby_names -> (kind, num, names): kind '' (empty), '*', 'FIRST' or 'ANY'; names
    lower-cased, quotes removed; '*' inside a list is returned as the name '*'."""
    s = (value or "").strip()
    if not s:
        return "", 0, []
    if s == "*":
        return "*", 1, ["*"]
    kind, num = "FIRST", 1
    m = re.match(r"^(?:(ANY|FIRST)\s+)?(\d+)\s*\((.*)\)\s*$", s, re.I | re.S)
    if m:
        kind = (m.group(1) or "FIRST").upper()
        num = int(m.group(2))
        s = m.group(3)
    names = [n.strip() for n in re.findall(r'"(?:[^"]|"")*"|[^,\s]+', s)]
    names = [n[1:-1].replace('""', '"') if n.startswith('"') else n.lower() for n in names]
    return kind, num, names


def sync_names(sync):
    """The standbys of a parsed /sync value (lower case), [] for None."""
    if not sync or not sync.get("sync_standby"):
        return []
    return [n.strip().lower() for n in sync["sync_standby"].split(",") if n.strip()]


class SyncCluster(HaCluster):
    def __init__(self, basedir, mode):
        settings, node_count = MODES[mode]
        dcs = {"ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT,
               "synchronous_node_count": node_count, **settings}
        super().__init__(basedir, n=3, scope="synctest", bootstrap={"dcs": dcs},
                         pgha={"allow_short_ttl": True})
        self.mode = mode
        self.quorum = settings["synchronous_mode"] == "quorum"
        self.node_count = node_count

    def sync(self):
        try:
            v = self.etcd.get(self.key("sync"))
        except Exception:  # noqa: BLE001
            return None
        return json.loads(v) if v else None

    def ssn(self, name):
        return self.sql(name, "SHOW synchronous_standby_names")[0][0]

    def replication(self, name):
        """{application_name: (state, sync_state, flush_lsn)} from pg_stat_replication on `name`."""
        rows = self.sql(name, "SELECT application_name, state, sync_state, flush_lsn::text FROM pg_stat_replication")
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def steady(self, leader):
        """The mode's steady state on a healthy 3-node cluster, or None: /sync names this leader and the
        expected standbys, synchronous_standby_names agrees, PostgreSQL reports them sync/quorum."""
        s = self.sync()
        if not s or (s.get("leader") or "").lower() != leader:
            return None
        try:
            kind, num, names = parse_ssn(self.ssn(leader))
            repl = self.replication(leader)
        except psycopg2.Error:
            return None
        voters = sync_names(s)
        others = sorted(n for n in self.nodes if n != leader)
        if self.quorum:
            numsync = min(self.node_count, len(others))
            ok = (kind == "ANY" and num == numsync and sorted(names) == others and sorted(voters) == others
                  and s.get("quorum") == len(others) - numsync
                  and all(repl.get(n, ("", ""))[1] == "quorum" for n in others))
        else:
            ok = (len(voters) == min(self.node_count, 2) and sorted(names) == sorted(voters)
                  and s.get("quorum", 0) == 0 and all(repl.get(n, ("", ""))[1] == "sync" for n in voters))
        return s if ok else None

    def wait_steady(self, timeout=90):
        """Also brings back what an earlier scenario of the module left stopped (after a failure)."""
        for name, node in self.nodes.items():
            if not node.is_running():
                node.start()
        leader = self.wait_healthy(timeout)
        return leader, h.wait_until(lambda: self.steady(leader), timeout, interval=0.2,
                                    msg=f"synchronous steady state ({self.mode}) on {leader}: "
                                        f"/sync={self.sync()}")

    def wait_caught_up(self, primary, timeout=60):
        """Every running replica has replayed the primary's current WAL position."""
        lsn = self.sql(primary, "SELECT pg_current_wal_lsn()::text")[0][0]

        def done():
            for n in self.nodes:
                if n == primary or not self.nodes[n].is_running():
                    continue
                try:
                    if not self.sql(n, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))[0][0]:
                        return False
                except psycopg2.Error:
                    return False
            return True
        h.wait_until(done, timeout, msg=f"replicas to replay {lsn} of {primary}")

    def missing(self, name, ids):
        """The ids of `ids` not present in table zl on node `name`."""
        rows = self.sql(name, "SELECT a FROM unnest(%s::bigint[]) a WHERE NOT EXISTS (SELECT 1 FROM zl WHERE id = a)",
                        (list(ids),))
        return sorted(r[0] for r in rows)

    def node_of_pid_role(self, name, needle):
        """PIDs of the processes of `name`'s postmaster whose title contains needle (e.g. 'walreceiver')."""
        pm = self.nodes[name].postmaster_pid()
        out = []
        for p in h.descendants(pm) if pm else []:
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    if needle.encode() in f.read():
                        out.append(p)
            except OSError:
                pass
        return out


class Writer(threading.Thread):
    """Inserts sequential ids through whichever node is primary right now and records every id whose COMMIT
    returned without error and without the "canceling wait for synchronous replication" warning."""

    def __init__(self, cluster, pause=0.005):
        super().__init__(daemon=True)
        self.c = cluster
        self.pause = pause
        self.conn = None
        self.acked = []            # (id, node, monotonic time)
        self.unacked = 0           # errors and sync-wait cancellations
        self.lock = threading.Lock()
        self.stop_evt = threading.Event()
        self.error = None

    def _connect_primary(self):
        for name in self.c.nodes:
            node = self.c.nodes[name]
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=node.pg_port, user="postgres",
                                        password="pghatest-super", dbname="postgres", connect_timeout=1)
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_is_in_recovery()")
                    if not cur.fetchone()[0]:
                        return conn, name
                conn.close()
            except psycopg2.Error:
                pass
        return None, None

    def run(self):
        name = None
        try:
            while not self.stop_evt.is_set():
                if self.conn is None:
                    self.conn, name = self._connect_primary()
                    if self.conn is None:
                        time.sleep(0.05)
                        continue
                conn = self.conn
                i = next(IDS)
                # statement_timeout does not cover the wait for the synchronous standby (PostgreSQL disables
                # it before the commit): a client-side cancel after COMMIT_TIMEOUT does
                timer = threading.Timer(COMMIT_TIMEOUT, conn.cancel)
                try:
                    del conn.notices[:]
                    timer.start()
                    with conn.cursor() as cur:
                        cur.execute("INSERT INTO zl (id) VALUES (%s)", (i,))
                    timer.cancel()
                    if any(SYNC_WARNING in n for n in conn.notices):
                        self.unacked += 1
                    else:
                        with self.lock:
                            self.acked.append((i, name, time.monotonic()))
                except psycopg2.Error:
                    timer.cancel()
                    self.unacked += 1
                    try:
                        conn.close()
                    except psycopg2.Error:
                        pass
                    self.conn = None
                    time.sleep(0.02)
                    continue
                time.sleep(self.pause)
        except Exception as e:  # noqa: BLE001 - reported by stop()
            self.error = e
        finally:
            if self.conn is not None:
                self.conn.close()

    def ids(self):
        with self.lock:
            return [a[0] for a in self.acked]

    def count(self, node=None):
        with self.lock:
            return sum(1 for a in self.acked if node is None or a[1] == node)

    def first_ack_after(self, t, node):
        with self.lock:
            for i, n, ta in self.acked:
                if ta > t and n == node:
                    return ta
        return None

    def stop(self):
        self.stop_evt.set()
        conn = self.conn
        if conn is not None:
            try:
                conn.cancel()  # a commit waiting for a synchronous standby
            except psycopg2.Error:
                pass
        self.join(30)
        assert not self.is_alive(), "the writer thread did not stop"
        assert self.error is None, f"writer thread failed: {self.error!r}"


class Sampler(threading.Thread):
    """Every ~0.2 s: synchronous_standby_names on `primary`, then /sync (with the leader key), then
    synchronous_standby_names again, plus pg_stat_replication — the timeline of a scenario."""

    def __init__(self, cluster, primary, interval=0.2):
        super().__init__(daemon=True)
        self.c, self.primary, self.interval = cluster, primary, interval
        self.samples = []
        self.stop_evt = threading.Event()
        self.error = None

    def run(self):
        conn = None
        t0 = time.monotonic()
        try:
            while not self.stop_evt.is_set():
                try:
                    if conn is None:
                        conn = self.c.connect(self.primary, timeout=1)
                        conn.autocommit = True
                    with conn.cursor() as cur:
                        cur.execute("SHOW synchronous_standby_names")
                        before = cur.fetchone()[0]
                        kv = self.c.etcd.get_prefix(self.c.key(""))
                        cur.execute("SHOW synchronous_standby_names")
                        after = cur.fetchone()[0]
                        cur.execute("SELECT application_name, sync_state FROM pg_stat_replication ORDER BY 1")
                        repl = ",".join(f"{a}:{s}" for a, s in cur.fetchall())
                    raw = kv.get(self.c.key("sync"))
                    self.samples.append({"t": round(time.monotonic() - t0, 2), "ssn_before": before,
                                         "sync": json.loads(raw) if raw else None, "ssn_after": after,
                                         "leader": kv.get(self.c.key("leader")), "repl": repl})
                except (psycopg2.Error, h.EtcdError, OSError) as e:
                    self.samples.append({"t": round(time.monotonic() - t0, 2), "error": str(e).strip()[:120]})
                    if conn is not None:
                        conn.close()
                    conn = None
                self.stop_evt.wait(self.interval)
        except Exception as e:  # noqa: BLE001
            self.error = e
        finally:
            if conn is not None:
                conn.close()

    def stop(self):
        self.stop_evt.set()
        self.join(15)
        assert self.error is None, f"sampler failed: {self.error!r}"
        return self.samples

    def timeline(self):
        out, last = [], None
        for s in self.samples:
            key = json.dumps({k: v for k, v in s.items() if k != "t"}, sort_keys=True)
            if key != last:
                out.append(f"  t={s['t']:6.2f} " + (f"error {s['error']}" if "error" in s else
                           f"ssn={s['ssn_before']!r}/{s['ssn_after']!r} /sync={s['sync']} repl={s['repl']}"))
                last = key
        return "\n".join(out)


def check_nonquorum_invariant(sample):
    """Every name in /sync.sync_standby is in synchronous_standby_names (§4.10 invariant). The two SHOWs
    around the /sync read bracket it: a name that enters goes to ssn before /sync, one that leaves goes
    from /sync before ssn, so a correct agent always has it in one of them."""
    names = sync_names(sample["sync"])
    ssn = set(parse_ssn(sample["ssn_before"])[2]) | set(parse_ssn(sample["ssn_after"])[2])
    return [n for n in names if n not in ssn]


def quorum_invariant_ok(sample, leader, node_count):
    """§4.10 quorum invariant for one sample: |voters ∪ {leader} ∪ ssn_names ∪ {me}| <= quorum + numsync + 1
    and one name set contains the other (checked against either SHOW around the /sync read)."""
    s = sample["sync"]
    if not s or not s.get("leader"):
        return True
    voters = set(sync_names(s))
    for ssn in (sample["ssn_before"], sample["ssn_after"]):
        kind, num, names = parse_ssn(ssn)
        names = set(names) - {"*"}
        union = voters | {s["leader"].lower(), leader} | names
        if len(union) <= s.get("quorum", 0) + num + 1 and (voters <= names or names <= voters):
            return True
    return False


def rest_flags(c, name):
    try:
        st = c.nodes[name].rest("GET", "/patroni").json()
    except Exception:  # noqa: BLE001
        return None
    return bool(st.get("sync_standby")), bool(st.get("quorum_standby"))


# ------------------------------------------------------------------------------------------ fixture


def _quorum_works(c, leader):
    """In quorum mode the agent renders ANY n (...) and publishes /sync.quorum (§4.10); until then the
    scenarios have nothing to test."""
    try:
        h.wait_until(lambda: parse_ssn(c.ssn(leader))[0] == "ANY" and c.steady(leader), 30, interval=0.5)
        return None
    except h.WaitTimeout:
        return (f"synchronous_mode: quorum is not implemented by this pgha build: on {leader} "
                f"synchronous_standby_names={c.ssn(leader)!r}, /sync={c.sync()} (expected 'ANY n (...)' "
                f"and a quorum field)")


def build_sync_cluster(basedir, mode):
    c = SyncCluster(basedir, mode)
    try:
        c.start(["node1"])
        c.wait_leader(60)
        c.start(["node2", "node3"])
        leader = c.wait_healthy(180)
        if c.quorum:
            reason = _quorum_works(c, leader)
            if reason:
                pytest.skip(reason)
        leader, _ = c.wait_steady(90)
        c.sql(leader, "CREATE TABLE zl (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
    except BaseException as e:
        # a failed setup is not attributed to a test: show the agents' and servers' logs here
        for name, node in (c.nodes.items() if isinstance(e, Exception) else ()):
            print(f"===== {name}: pgha.log (tail) =====\n" + "\n".join(node.log_text().splitlines()[-60:]))
            pglog = os.path.join(node.dir, "pg_log", "postgresql.log")
            if os.path.exists(pglog):
                with open(pglog, errors="replace") as f:
                    print(f"===== {name}: postgresql.log (tail) =====\n" + "".join(f.readlines()[-30:]))
        c.destroy(keep=isinstance(e, Exception) and h.keep_requested())
        raise
    return c


def check_sync_healthy(c, timeout=60):
    """Before each scenario: every agent running, one leader, the others streaming, the mode's steady
    state (a scenario may still restart what it stopped; a cluster that does not get there is rebuilt)."""
    leader = c.check_healthy(timeout)
    h.wait_until(lambda: c.steady(leader), timeout, interval=0.2,
                 msg=f"synchronous steady state ({c.mode}) on {leader}: /sync={c.sync()}")


@pytest.fixture(scope="module", params=list(MODES))
def shared_sc(request, run_dir):
    mode = request.param
    shared = SharedCluster(run_dir, f"sync-{mode}", lambda basedir: build_sync_cluster(basedir, mode),
                           check=check_sync_healthy, teardown=sanitizer_findings)
    yield shared
    shared.close(keep=request.session.testsfailed > 0 and h.keep_requested())
    assert not shared.findings, "sanitizer reports in the agents' logs:\n" + "\n".join(shared.findings[:40])


@pytest.fixture
def sc(shared_sc):
    """The mode's cluster, healthy and in its steady state (rebuilt if the previous scenario broke it)."""
    return shared_sc.acquire()


def sanitizer_findings(c):
    """Stop every agent (SIGTERM: a sanitizer build reports leaks at exit) and return the sanitizer lines of
    their logs (a build with -Dsanitize=true; nothing to find otherwise)."""
    out = []
    for name, node in c.nodes.items():
        try:
            if node.is_running():
                node.stop(timeout=30)
            for line in node.log_text().splitlines():
                if "Sanitizer" in line or "runtime error:" in line:
                    out.append(f"{name}: {line}")
        except Exception as e:  # noqa: BLE001 - the teardown goes on
            out.append(f"{name}: could not check ({e})")
    return out[:40]


def restart_and_rejoin(c, name, leader, timeout=90):
    t0 = time.monotonic()
    c.nodes[name].start()
    c.wait_streaming(leader, [n for n in c.nodes if n != leader], timeout)
    return time.monotonic() - t0


# ------------------------------------------------------------------------------------------ scenario 1


def test_zero_loss_under_repeated_failover(sc):
    c = sc
    w = Writer(c)
    figures = []
    w.start()
    try:
        for rnd in range(1, FAILOVERS + 1):
            old, before = c.wait_steady(120)
            # writes are flowing through this primary
            n0 = w.count(old)
            h.wait_until(lambda: w.count(old) >= n0 + 50, 30, msg=f"the writer to commit on {old}")
            before = c.steady(old)  # /sync as it stands right before the kill
            assert before, f"/sync left the steady state before the kill: {c.sync()}"
            ssn_before = c.ssn(old)
            t_kill = time.monotonic()
            c.nodes[old].kill9(postmaster=True)
            new = c.wait_leader(TTL + 30, exclude=(old,))
            t_leader = time.monotonic()
            h.wait_until(lambda: w.first_ack_after(t_kill, new), TTL + 30, interval=0.05,
                         msg=f"a write acknowledged by the new primary {new}")
            t_write = w.first_ack_after(t_kill, new)
            # the winner was allowed by /sync as it stood before the kill
            voters = sync_names(before)
            assert new in voters, f"{new} won, but /sync before the kill was {before} (ssn {ssn_before!r})"
            if c.quorum:
                kind, num, names = parse_ssn(ssn_before)
                assert kind == "ANY" and sorted(names) == sorted(voters)
                # a winner needs votes >= quorum among the other voters: with ANY num of |voters|,
                # every set of quorum+1 voters intersects every set of num acknowledging voters
                assert before["quorum"] + num >= len(voters), f"/sync {before} with ssn {ssn_before!r}"
            # zero losses: every acknowledged id is on the new primary
            acked = w.ids()
            missing = c.missing(new, acked)
            assert not missing, (f"round {rnd}: {len(missing)} acknowledged commits missing on {new} after "
                                 f"the failover from {old}: {missing[:20]}")
            rejoin = restart_and_rejoin(c, old, new)
            rewound = "pg_rewind" in c.nodes[old].log_text()
            figures.append((rnd, old, new, t_leader - t_kill, t_write - t_kill, rejoin, rewound, len(acked)))
        leader, _ = c.wait_steady(120)
    finally:
        w.stop()
    acked = w.ids()
    # all nodes converge on the same rows, and each has every acknowledged id
    c.wait_caught_up(leader)
    sums = {n: tuple(c.sql(n, "SELECT count(*), coalesce(sum(id), 0), coalesce(max(id), 0) FROM zl")[0])
            for n in c.nodes}
    assert len(set(sums.values())) == 1, f"the nodes did not converge: {sums}"
    for n in c.nodes:
        assert not c.missing(n, acked), f"acknowledged ids missing on {n}"
    print(f"\n[sync {c.mode}] {FAILOVERS} failovers (kill -9 of agent + postmaster), ttl {TTL}, loop_wait "
          f"{LOOP_WAIT}, retry_timeout {RETRY_TIMEOUT}:")
    for rnd, old, new, tl, tw, rj, rw, n in figures:
        print(f"  round {rnd}: {old} -> {new}: new leader key after {tl:.1f}s, first acknowledged write "
              f"after {tw:.1f}s; {old} rejoined in {rj:.1f}s{' (pg_rewind)' if rw else ''}; "
              f"{n} acknowledged so far, 0 missing")
    print(f"  total: {len(acked)} writes acknowledged, {w.unacked} not acknowledged (errors/cancelled waits), "
          f"0 lost; rows on every node: {sums[leader][0]}")
    assert len(acked) >= 100 * FAILOVERS


# ------------------------------------------------------------------------------------------ scenario 2


def _assert_nonquorum_invariant(sampler):
    bad = [(s["t"], s["sync"], s["ssn_before"], s["ssn_after"], v) for s in sampler.samples
           if "error" not in s for v in [check_nonquorum_invariant(s)] if v]
    assert not bad, ("names in /sync that were not in synchronous_standby_names: "
                     f"{bad[:5]}\ntimeline:\n{sampler.timeline()}")


def test_sync_standby_dies(sc):
    c = sc
    if c.mode == "on":
        _sync_standby_dies_on(c)
    elif c.mode == "strict":
        _both_standbys_die_strict(c)
    else:
        _quorum_voter_dies(c)


def _sync_standby_dies_on(c):
    leader, s = c.wait_steady(120)
    [victim] = sync_names(s)
    [other] = [n for n in c.nodes if n not in (leader, victim)]
    # REST flags (§2.2/§2.3)
    h.wait_until(lambda: rest_flags(c, victim) == (True, False) and rest_flags(c, other) == (False, False), 20)
    assert c.nodes[victim].rest("GET", "/sync").status_code == 200
    assert c.nodes[other].rest("GET", "/sync").status_code == 503
    assert c.nodes[other].rest("GET", "/async").status_code == 200
    sampler = Sampler(c, leader)
    w = Writer(c)
    sampler.start()
    w.start()
    try:
        h.wait_until(lambda: w.count() >= 50, 30)
        time.sleep(1)
        t0 = time.monotonic()
        c.nodes[victim].kill9(postmaster=True)
        h.wait_until(lambda: sync_names(c.sync()) == [other] and parse_ssn(c.ssn(leader))[2] == [other], 30,
                     interval=0.2, msg=f"/sync and synchronous_standby_names to name {other}")
        switched = time.monotonic() - t0
        n1 = w.count()
        h.wait_until(lambda: w.count() >= n1 + 50, 30, msg="writes to flow again")
        time.sleep(2)
    finally:
        w.stop()
        sampler.stop()
    _assert_nonquorum_invariant(sampler)
    # the stall: the longest gap between two acknowledged commits
    times = [a[2] for a in w.acked]
    stall = max(b - a for a, b in zip(times, times[1:]))
    assert not c.missing(leader, w.ids())
    assert rest_flags(c, other) == (True, False)
    print(f"\n[sync on] sync standby {victim} killed: /sync and ssn named {other} after {switched:.1f}s, "
          f"longest commit stall {stall:.1f}s, {len(w.acked)} acknowledged; "
          f"{len(sampler.samples)} samples, invariant held\n{sampler.timeline()}")
    rejoin = restart_and_rejoin(c, victim, leader)
    leader2, s2 = c.wait_steady(60)
    assert leader2 == leader
    print(f"  {victim} rejoined in {rejoin:.1f}s; /sync now {s2}")


def _both_standbys_die_strict(c):
    leader, s = c.wait_steady(120)
    [sync] = sync_names(s)
    [other] = [n for n in c.nodes if n not in (leader, sync)]
    sampler = Sampler(c, leader)
    sampler.start()
    result = {}

    def blocked_commit():
        try:
            conn = c.connect(leader)
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("INSERT INTO zl (id) VALUES (-1)")
            result["notices"] = list(conn.notices)
            result["done"] = time.monotonic()
            conn.close()
        except Exception as e:  # noqa: BLE001
            result["error"] = e
    t = threading.Thread(target=blocked_commit, daemon=True)
    try:
        c.nodes[other].kill9(postmaster=True)
        # the synchronous standby leaves gracefully (it asks to be released from sync duty first)
        assert c.nodes[sync].stop(timeout=60) == 0
        assert c.nodes[sync].postmaster_pid() is None
        h.wait_until(lambda: c.ssn(leader) == "*" and sync_names(c.sync()) == []
                     and (c.sync() or {}).get("leader") == leader, 20, interval=0.2,
                     msg=f"ssn '*' and an empty /sync of {leader}; ssn={c.ssn(leader)!r} /sync={c.sync()}")
        t.start()
        t.join(5)
        assert t.is_alive(), f"a commit returned without any synchronous standby: {result}"
        assert c.ssn(leader) == "*"
        waiting = c.sql(leader, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")[0][0]
        assert waiting >= 1
        assert c.leader() == leader and c.is_primary(leader)
        t_back = time.monotonic()
        c.nodes[sync].start()
        t.join(60)
        assert not t.is_alive(), f"the commit did not complete after {sync} returned"
        assert "error" not in result, result
        assert not any(SYNC_WARNING in n for n in result["notices"]), result["notices"]
        released = result["done"] - t_back
        # acknowledged by the returned standby: it has the row
        assert c.sql(sync, "SELECT count(*) FROM zl WHERE id = -1")[0][0] == 1
        h.wait_until(lambda: sync_names(c.sync()) == [sync], 30, msg=f"/sync to name {sync}")
        c.nodes[other].start()
        c.wait_streaming(leader, [sync, other], 90)
        c.wait_steady(60)
        time.sleep(1)
    finally:
        sampler.stop()
        if t.is_alive():
            t.join(1)
    _assert_nonquorum_invariant(sampler)
    print(f"\n[sync strict] both standbys down: ssn '*', a commit blocked; {sync} restarted and the commit "
          f"returned {released:.1f}s later\n{sampler.timeline()}")


def _quorum_voter_dies(c):
    leader, s = c.wait_steady(120)
    voters = sync_names(s)
    victim, other = voters[0], voters[1]
    # REST (§2.2/§2.3): in quorum mode the voters are quorum_standby (not sync_standby)
    for n in voters:
        h.wait_until(lambda n=n: rest_flags(c, n) == (False, True), 20, msg=f"{n}: quorum_standby only")
        assert c.nodes[n].rest("GET", "/quorum").status_code == 200
        assert c.nodes[n].rest("GET", "/read-only-quorum").status_code == 200
        assert c.nodes[n].rest("GET", "/sync").status_code == 503
        assert c.nodes[n].rest("GET", "/async").status_code == 503
    assert c.nodes[leader].rest("GET", "/quorum").status_code == 503
    sampler = Sampler(c, leader)
    w = Writer(c)
    sampler.start()
    w.start()
    try:
        h.wait_until(lambda: w.count() >= 50, 30)
        c.nodes[victim].kill9(postmaster=True)
        # |active| = 1: numsync = min(1, 1) = 1, quorum = 0, ssn ANY 1 (other)
        h.wait_until(lambda: sync_names(c.sync()) == [other] and c.sync().get("quorum") == 0
                     and parse_ssn(c.ssn(leader)) == ("ANY", 1, [other]), 30, interval=0.2,
                     msg=f"/sync and ssn to shrink to {other}: /sync={c.sync()} ssn={c.ssn(leader)!r}")
        n1 = w.count()
        h.wait_until(lambda: w.count() >= n1 + 50, 30)
        c.nodes[victim].start()
        c.wait_streaming(leader, voters, 90)
        c.wait_steady(60)
        time.sleep(1)
    finally:
        w.stop()
        sampler.stop()
    bad = [s for s in sampler.samples if "error" not in s and not quorum_invariant_ok(s, leader, c.node_count)]
    assert not bad, f"quorum invariant violated: {bad[:5]}\ntimeline:\n{sampler.timeline()}"
    assert not c.missing(leader, w.ids())
    print(f"\n[sync {c.mode}] voter {victim} killed and restarted; invariant held in {len(sampler.samples)} samples\n"
          f"{sampler.timeline()}")


# ------------------------------------------------------------------------------------------ scenario 3


def test_a_lagging_replica_enters_sync_only_once_it_has_the_acknowledged_commits(sc):
    """On mode: /sync = {A}; B's WAL receiver is frozen (SIGSTOP: it stays 'streaming' in
    pg_stat_replication but receives nothing); commits are acknowledged by A; A dies. The primary must not
    name B in /sync before B has flushed the WAL of those commits (§4.10: a standby is confirmed only after
    reaching the primary's flush LSN recorded when synchronous_standby_names changed): B in /sync may be
    promoted and would lose them. If B is named too early the test shows the loss: it kills the primary,
    kills B's WAL receiver (dropping the WAL still in its socket buffer) and counts the acknowledged commits
    missing on B once it has taken over."""
    c = sc
    if c.mode != "on":
        pytest.skip("one mode is enough for this scenario")
    leader, s = c.wait_steady(120)
    [a] = sync_names(s)
    [b] = [n for n in c.nodes if n not in (leader, a)]
    receivers = c.node_of_pid_role(b, "walreceiver")
    assert receivers, f"no walreceiver process on {b}"
    sampler = Sampler(c, leader)
    sampler.start()
    w = Writer(c)
    seen, early = [], None
    try:
        for p in receivers:
            os.kill(p, signal.SIGSTOP)
        w.start()
        h.wait_until(lambda: w.count() >= 50, 30)
        acked_lsn = c.sql(leader, "SELECT pg_current_wal_flush_lsn()::text")[0][0]
        c.nodes[a].kill9(postmaster=True)
        h.wait_until(lambda: parse_ssn(c.ssn(leader))[2] == [b], 20, interval=0.2,
                     msg=f"synchronous_standby_names to name {b}")
        # a few cycles with B still behind
        t0 = time.monotonic()
        while time.monotonic() < t0 + 6 * LOOP_WAIT + 2:
            st, sync_state, flush = c.replication(leader).get(b, (None, None, None))
            behind = c.sql(leader, "SELECT %s::pg_lsn > %s::pg_lsn", (acked_lsn, flush or "0/0"))[0][0]
            names = sync_names(c.sync())
            seen.append((round(time.monotonic() - t0, 1), names, sync_state, flush))
            if b in names and behind:
                early = f"{b} named in /sync with flush LSN {flush} < {acked_lsn}"
                break
            time.sleep(0.3)
        w.stop()
        lost = []
        if early:
            # what it means: the primary dies now and B takes over with the WAL it has flushed. (What the
            # primary sent meanwhile waits in B's socket buffer; it is dropped with the WAL receiver, like
            # WAL that never made it across the network.)
            c.nodes[leader].kill9(postmaster=True)
            for p in receivers:
                os.kill(p, signal.SIGKILL)
            new = c.wait_leader(TTL + 30, exclude=(leader,))
            h.wait_until(lambda: c.is_primary(new), 30)
            lost = c.missing(new, w.ids())
    finally:
        for p in receivers:
            try:
                os.kill(p, signal.SIGCONT)
            except ProcessLookupError:
                pass
        if w.is_alive():
            w.stop()
        sampler.stop()
    assert not early, (f"{early}, the WAL of commits acknowledged by {a} alone; after a failover to {b} "
                       f"{len(lost)} of {len(w.acked)} acknowledged commits are lost (ids {lost[:5]}...)\n"
                       f"observations (t, /sync, sync_state, flush): {seen}\ntimeline:\n{sampler.timeline()}")
    # once B catches up it becomes the synchronous standby
    h.wait_until(lambda: sync_names(c.sync()) == [b], 30, msg=f"/sync to name {b} after it caught up")
    assert not c.missing(leader, w.ids())
    restart_and_rejoin(c, a, leader)
    c.wait_steady(60)


# ------------------------------------------------------------------------------------------ scenario 4


def test_a_stopping_sync_standby_leaves_sync_duty_before_its_postgres_stops(sc):
    """§4.10 "Leaving sync duty" / §4.17: a replica whose agent is shut down while it is named in /sync first
    publishes tags.nosync, waits (up to 2 x loop_wait) until the primary dropped it from /sync, and only then
    stops PostgreSQL — so the primary is never left waiting for a standby that went away on purpose.
    Checked every 20 ms: pg_stat_replication on the primary, then /sync; the standby missing from the first
    while the later read of /sync still names it means it stopped streaming before it left sync duty."""
    c = sc
    if c.mode != "on":
        pytest.skip("one mode is enough for this scenario")
    leader, s = c.wait_steady(120)
    [victim] = sync_names(s)
    [other] = [n for n in c.nodes if n not in (leader, victim)]
    w = Writer(c)
    w.start()
    stopper = threading.Thread(target=lambda: c.nodes[victim].stop(timeout=60), daemon=True)
    polls, bad, nosync_seen = [], [], False
    conn = c.connect(leader)
    conn.autocommit = True
    try:
        h.wait_until(lambda: w.count() >= 50, 30)
        t0 = time.monotonic()
        stopper.start()
        while time.monotonic() < t0 + 30:
            with conn.cursor() as cur:
                cur.execute("SELECT application_name FROM pg_stat_replication")
                repl = sorted(r[0] for r in cur.fetchall())
            sync = c.sync()
            member = c.member(victim) or {}
            nosync_seen = nosync_seen or bool((member.get("tags") or {}).get("nosync"))
            p = (round(time.monotonic() - t0, 2), repl, sync_names(sync))
            if not polls or polls[-1][1:] != p[1:]:
                polls.append(p)
            if victim not in repl and victim in sync_names(sync):
                bad.append(p)
            if not stopper.is_alive() and sync_names(sync) == [other]:
                break
            time.sleep(0.02)
        n1 = w.count()
        h.wait_until(lambda: w.count() >= n1 + 20, 30, msg="writes to flow again")
    finally:
        conn.close()
        w.stop()
        stopper.join(60)
    times = [a[2] for a in w.acked]
    stall = max(b - a for a, b in zip(times, times[1:]))
    print(f"\n[sync on] {victim} stopped with SIGTERM: nosync tag seen: {nosync_seen}, longest commit stall "
          f"{stall:.1f}s; (t, streaming, /sync): {polls}")
    assert sync_names(c.sync()) == [other]
    assert not c.missing(leader, w.ids())
    c.wait_steady(60)  # brings the victim back
    assert not bad, (f"{victim} stopped streaming while /sync still named it (it did not leave sync duty "
                     f"first; nosync tag published: {nosync_seen}): first at {bad[0]}; (t, streaming, /sync): "
                     f"{polls}")
