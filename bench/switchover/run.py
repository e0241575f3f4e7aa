#!/usr/bin/python3
"""Planned-switchover benchmark (issue 11; run by hand, as root, not in CI).

Two 3-node clusters on loopback share one 3-member etcd cluster: pgha (scope bench-pgha, from
$PGHA_BUILD_DIR, default build-rel/) and Debian's Patroni 3.0.2 (scope bench-patroni), each with its own
ports and data directories, both with the same timings (default ttl 30, loop_wait 10, retry_timeout 10).
One writer per node on a persistent connection inserts a new id every 20 ms and retries every 20 ms on
error (a write succeeds only on the primary; a session on a standby keeps its connection, as it becomes
writable after promotion). --runs switchovers per cluster, alternating direction between node1 and node2,
the two clusters taking turns. Per switchover:

  unavailability   last acknowledged write on the old primary -> first acknowledged write on the new one
  CLI              wall time of `pgha-ctl switchover --force --leader X --candidate Y`
                   (`patronictl switchover --force --leader X --candidate Y` for Patroni)
  old streams      start of the CLI -> pg_stat_replication on the new primary shows the old one 'streaming'
                   (polled every 20 ms); also given from the first write on the new primary
  pg_rewind        whether the old primary's agent logged "running pg_rewind" during the switchover
  pgha phases      from the agents' logs: CHECKPOINT start, "stopping PostgreSQL", "releasing the leader
                   key", the candidate's "promoted self" and "promotion complete"

  sudo /usr/bin/python3 bench/switchover/run.py [--runs 5] [--json FILE]

Prints a table of medians and writes a JSON report (every run, with the agents' log lines around it).
"""

import argparse
import datetime
import itertools
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
os.environ.setdefault("PGHA_BUILD_DIR", os.path.join(REPO, "build-rel"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import psycopg2  # noqa: E402

import pghatest as h  # noqa: E402
from pghatest.proc import reap_orphans  # noqa: E402
from hacluster import HaCluster  # noqa: E402

PATRONI = "/usr/bin/patroni"
PATRONICTL = "/usr/bin/patronictl"
IDS = itertools.count(1)
IDS_LOCK = threading.Lock()
# wall clock = monotonic + WALL_OFFSET (log lines carry wall-clock timestamps with milliseconds)
WALL_OFFSET = time.time() - time.monotonic()


class Writer(threading.Thread):
    """One writer per node on a persistent connection (bench/failover's writer)."""

    def __init__(self, cluster, name):
        super().__init__(daemon=True)
        self.cluster, self.name = cluster, name
        self.acks = []  # monotonic times of acknowledged commits
        self.stop = False

    def run(self):
        conn = None
        while not self.stop:
            try:
                if conn is None:
                    conn = self.cluster.connect(self.name, timeout=1)
                    conn.autocommit = True
                with IDS_LOCK:
                    i = next(IDS)
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO bench (id) VALUES (%s)", (i,))
                self.acks.append(time.monotonic())
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


class StreamPoller(threading.Thread):
    """Polls the candidate every 20 ms: the first moment it is a primary and pg_stat_replication shows the old
    primary 'streaming'."""

    def __init__(self, cluster, new, old):
        super().__init__(daemon=True)
        self.cluster, self.new, self.old = cluster, new, old
        self.t = None
        self.stop = False

    def run(self):
        conn = None
        while not self.stop and self.t is None:
            try:
                if conn is None:
                    conn = self.cluster.connect(self.new, timeout=1)
                    conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("SELECT NOT pg_is_in_recovery() AND EXISTS (SELECT 1 FROM pg_stat_replication "
                                "WHERE application_name = %s AND state = 'streaming')", (self.old,))
                    if cur.fetchone()[0]:
                        self.t = time.monotonic()
                        break
            except psycopg2.Error:
                try:
                    if conn is not None:
                        conn.close()
                except psycopg2.Error:
                    pass
                conn = None
            time.sleep(0.02)
        if conn is not None:
            conn.close()


LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (.*)$")


def reaper():
    """The harness makes this process a child subreaper, so a postmaster that Patroni starts (through an
    intermediate process that exits) becomes our child; unreaped, its zombie keeps psutil's is_running() true
    and Patroni's graceful demote waits for it forever ("manual failover: demote in progress")."""
    while True:
        reap_orphans()
        time.sleep(0.05)


def log_lines(text, since_wall, until_wall):
    """[(wall time, line)] of the log lines stamped within [since_wall, until_wall]."""
    out = []
    for line in text.splitlines():
        m = LOG_TS.match(line)
        if not m:
            continue
        t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if since_wall <= t <= until_wall:
            out.append((t, m.group(2)))
    return out


PG_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (\S+) (.*)$")


# the writers' failed attempts, not what the servers do
PG_NOISE = ("read-only transaction", "INSERT INTO bench", "the database system is", "terminating connection due to",
            "connection to client lost")


def pg_log_lines(node, since_wall, until_wall):
    """[(wall time, line)] of the node's PostgreSQL log (log_line_prefix '%m [%p] ') within the window."""
    params = node.config["postgresql"]["parameters"]
    path = os.path.join(params["log_directory"], params.get("log_filename", "postgresql.log"))
    out = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                m = PG_TS.match(line)
                if not m:
                    continue
                dt = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
                if m.group(2) in ("UTC", "GMT"):
                    dt = dt.replace(tzinfo=datetime.timezone.utc)
                t = dt.timestamp()
                if since_wall <= t <= until_wall and not any(n in m.group(3) for n in PG_NOISE):
                    out.append((t, m.group(3)))
    except OSError:
        pass
    return out


def first(lines, needle):
    return next((t for t, l in lines if needle in l), None)


def acks_of(writers, name):
    return next(w for w in writers if w.name == name).acks


def switchover(kind, c, writers, old, new, args):
    """One switchover old -> new on cluster c; returns the figures of the run."""
    node = c.nodes[old]
    poller = StreamPoller(c, new, old)
    poller.start()
    if kind == "pgha":
        cmd = [node.ctl_bin, "-c", node.config_path, "switchover", "--force", "--leader", old, "--candidate", new]
    else:
        cmd = [PATRONICTL, "-c", node.config_path, "switchover", "--force", "--leader", old, "--candidate", new]
    t0 = time.monotonic()
    cp = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                        timeout=180)
    t1 = time.monotonic()
    if cp.returncode != 0:
        poller.stop = True
        raise SystemExit(f"{kind}: switchover {old} -> {new} failed (exit {cp.returncode}):\n{cp.stdout}")
    new_acks, old_acks = acks_of(writers, new), acks_of(writers, old)
    h.wait_until(lambda: any(a > t0 for a in new_acks), 60, interval=0.02,
                 msg=f"{kind}: the first write on {new}")
    t_first_new = next(a for a in list(new_acks) if a > t0)
    before = [a for a in list(old_acks) if a < t_first_new]
    t_last_old = before[-1] if before else None
    h.wait_until(lambda: poller.t is not None, args.stream_timeout, interval=0.05,
                 msg=f"{kind}: {old} streaming from {new}")
    t_stream = poller.t
    time.sleep(0.5)  # let the logs catch up
    late_old_acks = [a for a in list(old_acks) if a > t_first_new]  # must be none: two primaries
    since, until = t0 + WALL_OFFSET - 0.5, t_stream + WALL_OFFSET + 0.3
    old_log = log_lines(node.log_text(), since, until)
    new_log = log_lines(c.nodes[new].log_text(), since, until)
    rewind = [l for _, l in old_log if "running pg_rewind" in l or "pg_rewind finished" in l]
    r = {
        "kind": kind, "old": old, "new": new,
        "unavailability_s": round(t_first_new - t_last_old, 3) if t_last_old else None,
        "last_write_old_s": round(t_last_old - t0, 3) if t_last_old else None,
        "first_write_new_s": round(t_first_new - t0, 3),
        "cli_s": round(t1 - t0, 3),
        "old_streaming_s": round(t_stream - t0, 3),
        "old_streaming_after_first_write_s": round(t_stream - t_first_new, 3),
        "pg_rewind": bool(rewind), "pg_rewind_lines": rewind,
        "writes_on_old_after_promotion": len(late_old_acks),
        "cli_output": cp.stdout.strip().splitlines()[-3:],
        "old_log": [[round(t - WALL_OFFSET - t0, 3), l] for t, l in old_log][:80],
        "new_log": [[round(t - WALL_OFFSET - t0, 3), l] for t, l in new_log][:80],
        "old_pg_log": [[round(t - WALL_OFFSET - t0, 3), l] for t, l in pg_log_lines(node, since, until)][:80],
        "new_pg_log": [[round(t - WALL_OFFSET - t0, 3), l] for t, l in pg_log_lines(c.nodes[new], since, until)][:80],
    }
    if kind == "pgha":
        ph = {"checkpoint_start": first(old_log, "switchover: running a CHECKPOINT"),
              "stop_start": first(old_log, "stopping PostgreSQL"),
              "release": first(old_log, "releasing the leader key"),
              "promoted_self": first(new_log, "promoted self"),
              "promotion_complete": first(new_log, "promotion complete")}
        r["phases_s"] = {k: (round(v - WALL_OFFSET - t0, 3) if v else None) for k, v in ph.items()}
    return r


def start_cluster(c, kind):
    c.start(["node1"])
    c.wait_leader(180)
    c.start(["node2", "node3"])


def fmt(v, unit="s"):
    return "-" if v is None else f"{v:.2f} {unit}"


def summary(runs):
    def med(key):
        vals = [r[key] for r in runs if r[key] is not None]
        return {"median": round(statistics.median(vals), 3), "min": min(vals), "max": max(vals)} if vals else None
    out = {k: med(k) for k in ("unavailability_s", "cli_s", "old_streaming_s", "old_streaming_after_first_write_s")}
    out["pg_rewind_runs"] = sum(r["pg_rewind"] for r in runs)
    out["writes_on_old_after_promotion"] = sum(r["writes_on_old_after_promotion"] for r in runs)
    if runs and "phases_s" in runs[0]:
        phases = {}
        for k in runs[0]["phases_s"]:
            vals = [r["phases_s"][k] for r in runs if r["phases_s"][k] is not None]
            phases[k] = round(statistics.median(vals), 3) if vals else None
        out["phases_median_s"] = phases
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ttl", type=int, default=30)
    ap.add_argument("--loop-wait", type=int, default=10)
    ap.add_argument("--retry-timeout", type=int, default=10)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--settle", type=float, default=5, help="seconds of writes between switchovers")
    ap.add_argument("--no-jitter", action="store_true",
                    help="do not add a random 0..loop_wait s to the settle time (without it, every switchover meets "
                         "the agents' cycles at about the same phase)")
    ap.add_argument("--stream-timeout", type=float, default=120)
    ap.add_argument("--no-patroni", action="store_true", help="pgha only")
    ap.add_argument("--json", default=None, help="JSON report path (default: print only)")
    args = ap.parse_args()
    h.install_safety_net()
    threading.Thread(target=reaper, daemon=True).start()
    rd = h.RunDir()
    timings = {"ttl": args.ttl, "loop_wait": args.loop_wait, "retry_timeout": args.retry_timeout}
    etcd, clusters, writers = None, {}, {}
    failed = True
    load_before = os.getloadavg()
    try:
        etcd = h.EtcdCluster(3, rd.path)
        kinds = ["pgha"] + ([] if args.no_patroni else ["patroni"])
        for kind in kinds:
            c = HaCluster(os.path.join(rd.path, kind), n=3, scope=f"bench-{kind}", etcd=etcd,
                          bootstrap={"dcs": dict(timings)})
            if kind == "patroni":
                for node in c.nodes.values():
                    node.bin, node.ctl_bin = PATRONI, PATRONICTL
            clusters[kind] = c
        for kind, c in clusters.items():
            start_cluster(c, kind)
        for kind, c in clusters.items():
            leader = c.wait_healthy(300)
            c.sql(leader, "CREATE TABLE bench (id bigint PRIMARY KEY)")
            writers[kind] = [Writer(c, n) for n in c.nodes]
            for w in writers[kind]:
                w.start()
        time.sleep(2)

        results = {k: [] for k in clusters}
        for run in range(args.runs):
            for kind, c in clusters.items():
                leader = c.wait_healthy(300)
                pair = ("node1", "node2") if run % 2 == 0 else ("node2", "node1")
                old, new = pair if leader == pair[0] else (leader, "node2" if leader != "node2" else "node1")
                jitter = 0.0 if args.no_jitter else random.uniform(0, args.loop_wait)
                time.sleep(args.settle + jitter)
                r = switchover(kind, c, writers[kind], old, new, args)
                r["jitter_s"] = round(jitter, 2)
                results[kind].append(r)
                ph = r.get("phases_s")
                print(f"{kind:8} run {run + 1}: {old} -> {new}: unavailable {fmt(r['unavailability_s'])}, "
                      f"CLI {fmt(r['cli_s'])}, old primary streaming after {fmt(r['old_streaming_s'])} "
                      f"({fmt(r['old_streaming_after_first_write_s'])} after the first write), "
                      f"pg_rewind {'YES' if r['pg_rewind'] else 'no'}"
                      + (f"; phases {ph}" if ph else ""), flush=True)
                if r["writes_on_old_after_promotion"]:
                    print(f"  !! {r['writes_on_old_after_promotion']} writes on {old} after {new}'s first write")

        for ws in writers.values():
            for w in ws:
                w.stop = True
        report = {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": {"uname": platform.uname()._asdict(), "cpus": os.cpu_count(),
                        "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
            "pgha_build": os.environ["PGHA_BUILD_DIR"],
            "timings": timings, "runs_per_cluster": args.runs, "jitter": not args.no_jitter,
            "summary": {k: summary(v) for k, v in results.items()},
            "runs": results,
        }
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=1)
        print()
        print(f"timings ttl={args.ttl} loop_wait={args.loop_wait} retry_timeout={args.retry_timeout}; "
              f"medians of {args.runs} switchovers (min-max)")
        print(f"| figure | {' | '.join(clusters)} | target |")
        print("|---|" + "---|" * len(clusters) + "---|")
        targets = {"unavailability_s": "< 0.7 s", "cli_s": "", "old_streaming_s": "< 5 s",
                   "old_streaming_after_first_write_s": ""}
        labels = {"unavailability_s": "unavailability (last write old -> first write new)",
                  "cli_s": "CLI total time", "old_streaming_s": "old primary streaming (from CLI start)",
                  "old_streaming_after_first_write_s": "old primary streaming (from first write on new)"}
        for key, label in labels.items():
            cells = []
            for kind in clusters:
                s = report["summary"][kind][key]
                cells.append(f"{s['median']:.2f} s ({s['min']:.2f}-{s['max']:.2f})" if s else "-")
            print(f"| {label} | {' | '.join(cells)} | {targets[key]} |")
        print(f"| pg_rewind on the old primary | "
              + " | ".join(f"{report['summary'][k]['pg_rewind_runs']} of {args.runs}" for k in clusters) + " | 0 |")
        if "pgha" in report["summary"]:
            print(f"pgha phases (median, s after the CLI start): {report['summary']['pgha']['phases_median_s']}")
        print(f"load average before {load_before}, after {os.getloadavg()}")
        print(f"\nreproduce: sudo /usr/bin/python3 bench/switchover/run.py --runs {args.runs} --ttl {args.ttl} "
              f"--loop-wait {args.loop_wait} --retry-timeout {args.retry_timeout}"
              + (" --no-jitter" if args.no_jitter else "") + (f" --json {args.json}" if args.json else ""))
        failed = False
    finally:
        for ws in writers.values():
            for w in ws:
                w.stop = True
        for c in clusters.values():
            try:
                c.destroy()
            except Exception as e:  # noqa: BLE001 - tear the rest down anyway
                print(f"cleanup: {e}", file=sys.stderr)
        if etcd is not None:
            etcd.destroy()
        rd.cleanup(failed=failed)


if __name__ == "__main__":
    main()
