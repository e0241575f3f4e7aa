#!/usr/bin/python3
"""Failover benchmark (run by hand, as root): a real 3-node cluster (3 etcd members, PostgreSQL 15 +
pgha on each node) on loopback, with Patroni's default timings unless told otherwise.

Figures, each the median of --runs runs:
  node loss      kill -9 of the primary's agent and postmaster together; time to the first acknowledged
                 write on the new primary, total and after the old lease expired (the moment etcd deletes
                 the leader key, seen by `etcdctl watch`)
  postmaster     kill -9 of the primary's postmaster alone; time until the same node accepts writes
  steady state   resident memory and CPU of the agents over --steady seconds

Writers: one per node, each on a persistent connection, inserting ids unique across runs, retrying every
20 ms on error (TESTING-NOTES.md).

  sudo /usr/bin/python3 bench/failover/run.py [--ttl 30 --loop-wait 10 --retry-timeout 10] [--runs 5]

The fast profile (ttl 5, loop_wait 1, retry_timeout 2, pgha.allow_short_ttl) with the proof that it does
not fail over spuriously on a loaded machine:

  sudo /usr/bin/python3 bench/failover/run.py --ttl 5 --loop-wait 1 --retry-timeout 2 --allow-short-ttl --stress 120

--stress N runs, before the node-loss runs and for N seconds: stress-ng on both cores and the disk, one etcd
member stopped and started again, another frozen (SIGSTOP) and resumed, a bulk load followed by a
CHECKPOINT on the primary, and fails if the leader changed or a DELETE of the leader key was seen.
"""

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))

import psycopg2  # noqa: E402

import pghatest as h  # noqa: E402
from hacluster import HaCluster  # noqa: E402

IDS = itertools.count(1)
IDS_LOCK = threading.Lock()


class Writer(threading.Thread):
    """One writer per node on a persistent connection. A read-only error keeps the connection (a session
    on a standby becomes writable after promotion without reconnecting); any other error reconnects."""

    def __init__(self, cluster, name):
        super().__init__(daemon=True)
        self.cluster, self.name = cluster, name
        self.acks = []  # (monotonic time, connection opened at)
        self.stop = False

    def run(self):
        conn, opened = None, 0.0
        while not self.stop:
            try:
                if conn is None:
                    conn = self.cluster.connect(self.name, timeout=1)
                    conn.autocommit = True
                    opened = time.monotonic()
                with IDS_LOCK:
                    i = next(IDS)
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO bench (id) VALUES (%s)", (i,))
                self.acks.append((time.monotonic(), opened))
                time.sleep(0.02)
            except psycopg2.errors.ReadOnlySqlTransaction:
                time.sleep(0.02)
            except psycopg2.Error:
                try:
                    if conn is not None:
                        conn.close()
                except psycopg2.Error:
                    pass
                conn = None
                time.sleep(0.02)


class LeaderWatch(threading.Thread):
    """`etcdctl watch` on the leader key: the time of every DELETE."""

    def __init__(self, cluster):
        super().__init__(daemon=True)
        self.deletes = []
        self.proc = subprocess.Popen(["etcdctl", "--endpoints", ",".join(cluster.etcd.endpoints), "watch",
                                      cluster.key("leader")], stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "ETCDCTL_API": "3"})

    def run(self):
        for line in self.proc.stdout:
            if line.strip() == "DELETE":
                self.deletes.append(time.monotonic())

    def close(self):
        self.proc.terminate()
        self.proc.wait(5)


def first_ack_after(writers, t, exclude=(), only=None, new_connection=False):
    """The first commit acknowledged after t (on a connection opened after t when new_connection)."""
    best = None
    for w in writers:
        if w.name in exclude or (only and w.name != only):
            continue
        for a, opened in list(w.acks):
            if a > t and (not new_connection or opened > t):
                best = a if best is None else min(best, a)
                break
    return best


def stress(c, args, watch):
    """Load the machine and the DCS; the leader must stay where it is."""
    leader = c.wait_healthy(240)
    deletes_before = len(watch.deletes)
    t0 = time.monotonic()
    work = os.path.join(c.basedir, "stress")
    os.makedirs(work, exist_ok=True)
    sng = subprocess.Popen(["stress-ng", "--cpu", "2", "--hdd", "1", "--hdd-bytes", "256M", "--timeout",
                            f"{args.stress}s", "--temp-path", work, "--quiet"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    events = []
    try:
        third = args.stress / 3
        time.sleep(third / 2)
        c.etcd.stop_member(0)
        events.append("etcd member 0 stopped")
        time.sleep(third / 2)
        c.etcd.start_member(0)
        events.append("etcd member 0 started")
        c.etcd.pause_member(1)
        time.sleep(min(5, third / 2))
        c.etcd.resume_member(1)
        events.append("etcd member 1 frozen and resumed")
        c.sql(leader, "CREATE TABLE IF NOT EXISTS stress_load AS SELECT g, repeat('x', 200) AS pad "
                      "FROM generate_series(1, 1) g")
        c.sql(leader, "INSERT INTO stress_load SELECT g, repeat('x', 200) FROM generate_series(1, 1500000) g")
        tc = time.monotonic()
        c.sql(leader, "CHECKPOINT")
        events.append(f"bulk load + CHECKPOINT ({time.monotonic() - tc:.1f} s)")
        while time.monotonic() - t0 < args.stress:
            time.sleep(0.5)
    finally:
        sng.wait(args.stress + 60)
        c.etcd.ensure_all_running()
    changed = c.leader() != leader or len(watch.deletes) != deletes_before
    if changed:
        raise SystemExit(f"SPURIOUS FAILOVER under load: leader {leader} -> {c.leader()}, "
                         f"{len(watch.deletes) - deletes_before} leader key deletions; {events}")
    return (f"{args.stress} s of load ({'; '.join(events)}; stress-ng cpu x2 + hdd): leader {leader} kept the "
            f"lock, 0 spurious failovers")


def rss_cpu(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return rss, ticks / os.sysconf("SC_CLK_TCK")


def smaps(pid):
    """Rss, Pss and anonymous memory (kB) of the process, and the resident kB of each mapped file."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        roll = {l.split(":")[0]: int(l.split()[1]) for l in f if l.split()[-1] == "kB"}
    per_file, name = {}, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split()[0]
            if "-" in first and not first.endswith(":"):
                parts = line.split()
                name = os.path.basename(parts[5]) if len(parts) > 5 else "[anon]"
            elif first == "Rss:":
                per_file[name] = per_file.get(name, 0) + int(line.split()[1])
    return roll, per_file


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ttl", type=int, default=30)
    ap.add_argument("--loop-wait", type=int, default=10)
    ap.add_argument("--retry-timeout", type=int, default=10)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steady", type=int, default=60)
    ap.add_argument("--allow-short-ttl", action="store_true", help="set pgha.allow_short_ttl (ttl below 20)")
    ap.add_argument("--stress", type=int, default=0, help="seconds of load that must not cause a failover")
    ap.add_argument("--rss-only", action="store_true",
                    help="only the steady-state memory figures, with a per-mapping breakdown (no failover runs)")
    args = ap.parse_args()
    h.install_safety_net()
    rd = h.RunDir()
    extra = {"pgha": {"allow_short_ttl": True}} if args.allow_short_ttl else {}
    c = HaCluster(rd.path, n=3, scope="bench",
                  bootstrap={"dcs": {"ttl": args.ttl, "loop_wait": args.loop_wait,
                                     "retry_timeout": args.retry_timeout}}, **extra)
    failed = True
    try:
        c.start(["node1"])
        c.wait_leader(120)
        c.start(["node2", "node3"])
        leader = c.wait_healthy(240)
        c.sql(leader, "CREATE TABLE bench (id bigint PRIMARY KEY)")
        writers = [Writer(c, n) for n in c.nodes]
        for w in writers:
            w.start()
        watch = LeaderWatch(c)
        watch.start()
        time.sleep(2)

        # steady state first, while nothing happens
        pids = {n: c.nodes[n].pid for n in c.nodes}
        before = {n: rss_cpu(p) for n, p in pids.items()}
        time.sleep(args.steady)
        after = {n: rss_cpu(p) for n, p in pids.items()}
        if args.rss_only:
            for w in writers:
                w.stop = True
            watch.close()
            for n, p in pids.items():
                roll, per_file = smaps(p)
                cpu = (after[n][1] - before[n][1]) / args.steady * 100
                print(f"agent {n}: RSS {roll['Rss'] / 1024:.2f} MB, PSS {roll['Pss'] / 1024:.2f} MB, "
                      f"anonymous {roll['Anonymous'] / 1024:.2f} MB, CPU {cpu:.2f} % over {args.steady} s")
                top = sorted(per_file.items(), key=lambda kv: -kv[1])[:12]
                print("    " + ", ".join(f"{k} {v}" for k, v in top))
            print(f"\nreproduce: sudo /usr/bin/python3 bench/failover/run.py --rss-only --steady {args.steady}")
            failed = False
            return

        stress_report = None
        if args.stress:
            stress_report = stress(c, args, watch)

        total, after_expiry, crash = [], [], []
        for run in range(args.runs):
            old = c.wait_healthy(240)
            time.sleep(args.loop_wait + 1)
            t_kill = time.monotonic()
            c.nodes[old].kill9(postmaster=True)
            new = c.wait_leader(args.ttl + 60, exclude=(old,))
            h.wait_until(lambda: first_ack_after(writers, t_kill, exclude=(old,)) is not None, 60)
            t_write = first_ack_after(writers, t_kill, exclude=(old,))
            t_del = next((d for d in watch.deletes if d > t_kill), None)
            total.append(t_write - t_kill)
            if t_del is not None:
                after_expiry.append(t_write - t_del)
            print(f"node loss run {run + 1}: {old} -> {new}: first write after {t_write - t_kill:.2f} s, "
                  f"{(t_write - t_del) if t_del else float('nan'):.3f} s after the lease expired", flush=True)
            c.nodes[old].start()
            c.wait_streaming(new, [n for n in c.nodes if n != new], 240)

        for run in range(args.runs):
            leader = c.wait_healthy(240)
            time.sleep(2)
            t_kill = time.monotonic()
            c.nodes[leader].kill_postmaster()
            # the old backends died with the postmaster: only a connection opened after the kill counts
            h.wait_until(lambda: first_ack_after(writers, t_kill, only=leader, new_connection=True), 60,
                         interval=0.01)
            t_ok = first_ack_after(writers, t_kill, only=leader, new_connection=True)
            crash.append(t_ok - t_kill)
            assert c.leader() == leader
            print(f"postmaster crash run {run + 1}: {leader} writable again after {t_ok - t_kill:.3f} s", flush=True)

        for w in writers:
            w.stop = True
        watch.close()
        print()
        print(f"timings: ttl={args.ttl} loop_wait={args.loop_wait} retry_timeout={args.retry_timeout}, "
              f"{args.runs} runs each, medians:")
        print(f"  node loss: first acknowledged write on the new primary {statistics.median(total):.2f} s after the "
              f"kill; {statistics.median(after_expiry):.3f} s after the old lease expired "
              f"(min {min(after_expiry):.3f}, max {max(after_expiry):.3f})")
        print(f"  postmaster crash: same node writable again after {statistics.median(crash):.3f} s "
              f"(max {max(crash):.3f})")
        if stress_report:
            print(f"  stress: {stress_report}")
        for n in pids:
            rss = after[n][0]
            cpu = (after[n][1] - before[n][1]) / args.steady * 100
            print(f"  agent {n}: RSS {rss / 1024:.1f} MB, CPU {cpu:.2f} % over {args.steady} s")
        print(f"\nreproduce: sudo /usr/bin/python3 bench/failover/run.py --ttl {args.ttl} --loop-wait {args.loop_wait} "
              f"--retry-timeout {args.retry_timeout} --runs {args.runs} --steady {args.steady}"
              + (" --allow-short-ttl" if args.allow_short_ttl else "") + (f" --stress {args.stress}" if args.stress else ""))
        failed = False
    finally:
        c.destroy()
        rd.cleanup(failed=failed)


if __name__ == "__main__":
    main()
