#!/usr/bin/python3
"""REST API benchmark (run by hand, as root; not in CI): wrk against the health-check and status endpoints of
a running pgha cluster and, in the same run and against the same etcd, of a Debian Patroni (3.0.2) cluster.

Set-up, all on 127.0.0.1: a 3-member etcd cluster; scope `bench-pgha`: 2 nodes (PostgreSQL 15 + pgha, a
primary and a streaming replica); scope `bench-patroni`: 2 nodes (PostgreSQL 15 + /usr/bin/patroni, a primary
and a streaming replica). Patroni's default timings unless told otherwise (ttl 30, loop_wait 10,
retry_timeout 10). The clusters come from the integration-test harness (tests/integration/pghatest).

For every endpoint and agent, one wrk run (--threads, --connections, --duration, --latency) against the node
where the endpoint answers 200 (/primary, /patroni, /metrics: the leader; /replica?lag=1MB: the replica; the
status is checked before the run), and meanwhile:
  - latency: wrk's percentiles, which wrk corrects for coordinated omission, and the p99 of the same requests
    without that correction (rawlatency.lua undoes it in wrk's done() hook);
  - errors: wrk's "Non-2xx or 3xx responses" apart from its socket errors (connect, read, write, timeout: no
    answer within --timeout), and the kernel's count of listen-queue overflows (whole machine);
  - the serving agent's RSS (max over the run, /proc/<pid>/status) and CPU (utime+stime, % of one core), the
    CPU of its PostgreSQL (postmaster and children), of wrk, and of everything on the machine this run did not
    start (other users of the machine: the figures are only meaningful when that is near 0);
  - the serving agent's lease renewals: its member key's lease (the leader key rides on the same lease, for
    pgha and for Patroni) is polled every 0.2 s through the etcd v3 JSON gateway (/v3/lease/timetolive); a
    renewal is the remaining TTL jumping back up. Reported: the longest gap between successive renewals from
    the last one before the run to the first one after it, and the lowest remaining TTL seen.
--baseline adds mhd_baseline.c (libmicrohttpd with pgha's options, answering pgha's /primary body with no
other work) on /primary: the floor set by libmicrohttpd, the kernel and the machine.

    sudo /usr/bin/python3 bench/rest/run.py [--build build-dev] [--duration 10] [--connections 64]
                                            [--threads 2] [--endpoints primary,replica,patroni,metrics]
                                            [--agents pgha,patroni] [--baseline] [--request-queue-size N]
                                            [--out /tmp/rest-bench]

Installs wrk and patroni with apt-get when they are missing. Writes OUT.json (everything, including wrk's
raw output) and OUT.txt (the table); prints the table and the targets of issue 10.
"""

import argparse
import base64
import datetime
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

ENDPOINTS = {  # name -> (path, which node answers 200)
    "primary": ("/primary", "leader"),
    "replica": ("/replica?lag=1MB", "replica"),
    "patroni": ("/patroni", "leader"),
    "metrics": ("/metrics", "leader"),
}
PATRONI, PATRONICTL = "/usr/bin/patroni", "/usr/bin/patronictl"


# ------------------------------------------------------------------------------------------ set-up


def apt_install(packages):
    """apt-get install, with an apt-get update first when the package lists are stale."""
    print(f"installing {' '.join(packages)} with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, stdout=subprocess.DEVNULL, check=True)
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)


def ensure_tools(agents, install):
    missing = []
    if not shutil.which("wrk"):
        missing.append("wrk")
    if "patroni" in agents and not os.access(PATRONI, os.X_OK):
        missing.append("patroni")
    if missing:
        if not install:
            raise SystemExit(f"missing: {', '.join(missing)} (apt-get install {' '.join(missing)})")
        apt_install(missing)
    for prog, hint in (("/usr/bin/etcd", "etcd-server"), ("/usr/lib/postgresql/15/bin/pg_ctl", "postgresql-15")):
        if not os.access(prog, os.X_OK):
            raise SystemExit(f"{prog} not found: run scripts/install-deps.sh (Debian package {hint})")


def version_of(cmd):
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=20).stdout
        return out.strip().splitlines()[0] if out.strip() else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_info(build):
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    buildtype = "?"
    try:
        with open(os.path.join(build, "meson-info", "intro-buildoptions.json")) as f:
            buildtype = next(o["value"] for o in json.load(f) if o["name"] == "buildtype")
    except (OSError, StopIteration, ValueError, KeyError):
        pass
    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True).stdout.strip() or "?"
    os_name = "?"
    try:
        with open("/etc/os-release") as f:
            os_name = next(l.split("=", 1)[1].strip().strip('"') for l in f if l.startswith("PRETTY_NAME="))
    except (OSError, StopIteration):
        pass
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "os": os_name,
        "kernel": platform.release(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "loadavg_before": open("/proc/loadavg").read().split()[:3],
        "pgha_build": build,
        "pgha_buildtype": buildtype,
        "pgha_commit": commit,
        "pgha_version": version_of([os.path.join(build, "src", "pgha"), "--version"]),
        "patroni_version": version_of([PATRONI, "--version"]) if os.access(PATRONI, os.X_OK) else None,
        "postgresql": version_of(["/usr/lib/postgresql/15/bin/postgres", "--version"]),
        "etcd": version_of(["/usr/bin/etcd", "--version"]),
        "wrk": version_of(["wrk", "--version"]),
    }


def build_cluster(h, HaCluster, etcd, basedir, scope, agent, nodes, timings, extra=None):
    """A HaCluster (for its helpers: leader, sql, wait_streaming) whose nodes run `agent`."""
    c = HaCluster(basedir, n=0, scope=scope, etcd=etcd)
    ports = h.allocate_ports(2 * nodes)
    binaries = (PATRONI, PATRONICTL) if agent == "patroni" else None
    for i in range(nodes):
        name = f"{agent}{i + 1}"
        cfg = h.make_node_config(name, scope, etcd.endpoints, ports[2 * i], ports[2 * i + 1], basedir,
                                 bootstrap={"dcs": timings}, **(extra or {}))
        c.nodes[name] = h.PghaNode(cfg, basedir, build=binaries)
    return c


def start_cluster(h, c, timeout=240):
    names = list(c.nodes)
    c.start(names[:1])
    leader = c.wait_leader(timeout)
    c.start(names[1:])
    c.wait_streaming(leader, names[1:], timeout)
    return leader


# ------------------------------------------------------------------------------------------ measures


def proc_ticks(pid, user_only=False):
    """utime+stime (or utime alone) of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + (0 if user_only else int(fields[12]))


def proc_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


def tree_ticks(h, pid):
    """{pid: utime+stime ticks} of pid and its descendants (those that exist right now)."""
    out = {}
    if pid is None:
        return out
    for p in [pid] + h.descendants(pid):
        try:
            out[p] = proc_ticks(p)
        except (OSError, ValueError):
            pass
    return out


def system_ticks():
    """(busy, steal) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal


class ProcSampler(threading.Thread):
    """RSS of the serving process every 0.25 s; CPU (utime+stime) of it, of its PostgreSQL, of wrk, of
    everything this run started, and of the whole machine, between begin() and end()."""

    def __init__(self, h, pid, pg_pid):
        super().__init__(daemon=True)
        self.h, self.pid, self.pg_pid = h, pid, pg_pid
        self.rss = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                self.rss.append(proc_rss_kb(self.pid))
            except (OSError, StopIteration):
                pass
            self.halt.wait(0.25)

    def _snap(self):
        return (time.monotonic(), (proc_ticks(self.pid), proc_ticks(self.pid, True)), tree_ticks(self.h, self.pg_pid),
                tree_ticks(self.h, os.getpid()), resource.getrusage(resource.RUSAGE_CHILDREN), system_ticks())

    def begin(self):
        self.s0 = self._snap()
        self.start()

    def end(self):
        s1 = self._snap()
        self.halt.set()
        self.join(5)
        (t0, a0, pg0, ours0, ch0, sys0), (t1, a1, pg1, ours1, ch1, sys1) = self.s0, s1
        hz, wall = os.sysconf("SC_CLK_TCK"), t1 - t0

        def pct(ticks):
            return round(ticks / hz / wall * 100, 1)
        pg = sum(v - pg0.get(p, 0) for p, v in pg1.items())
        # wrk has exited (and been waited for) by now: it is in RUSAGE_CHILDREN, no longer in our tree
        wrk_s = (ch1.ru_utime + ch1.ru_stime) - (ch0.ru_utime + ch0.ru_stime)
        ours = sum(v - ours0.get(p, 0) for p, v in ours1.items()) + wrk_s * hz
        busy, steal = sys1[0] - sys0[0], sys1[1] - sys0[1]
        return {
            "rss_kb_max": max(self.rss) if self.rss else None,
            "rss_kb_end": self.rss[-1] if self.rss else None,
            "cpu_percent": pct(a1[0] - a0[0]),
            # user mode only: the agent's own code and libraries, without the kernel's TCP work (part of which
            # is charged to whichever process runs when a softirq comes)
            "user_cpu_percent": pct(a1[1] - a0[1]),
            "pg_cpu_percent": pct(pg),
            "wrk_cpu_percent": round(wrk_s / wall * 100, 1),
            # everything else the machine did meanwhile (other users of this machine): busy time of all CPUs
            # minus what this run started (agents, PostgreSQL, etcd, wrk, this script), in % of one core
            "other_cpu_percent": max(0.0, pct(busy - ours)),
            "steal_percent": pct(steal),
        }


class LeaseMonitor(threading.Thread):
    """Polls the lease of a member key: a renewal is the remaining TTL jumping back up (or a new lease)."""

    def __init__(self, h, etcd, key, interval=0.2):
        super().__init__(daemon=True)
        self.etcd, self.key, self.interval = etcd, key, interval
        self.samples = []  # (monotonic, lease, ttl)
        self.renewals = []  # monotonic times
        self.errors = 0
        self.halt = threading.Event()
        import requests
        self.session = requests.Session()
        self.session.trust_env = False
        self.h = h

    def _call(self, path, body):
        for m in self.etcd.members:
            try:
                r = self.session.post(f"{m.client_url}/v3/{path}", json=body, timeout=1.0)
                if r.status_code == 200:
                    return r.json()
            except Exception:  # noqa: BLE001 - try the next member
                pass
        raise RuntimeError(f"no etcd member answered {path}")

    def run(self):
        lease, last_key_read, prev = None, 0.0, None
        while not self.halt.is_set():
            now = time.monotonic()
            try:
                if lease is None or now - last_key_read >= 1.0:
                    kvs = self._call("kv/range", {"key": base64.b64encode(self.key.encode()).decode()}).get("kvs", [])
                    lease = kvs[0].get("lease") if kvs else None
                    last_key_read = now
                if lease:
                    ttl = int(self._call("lease/timetolive", {"ID": lease}).get("TTL", -1))
                    t = time.monotonic()
                    self.samples.append((t, lease, ttl))
                    if prev is not None and (lease != prev[1] or ttl > prev[2]):
                        self.renewals.append(t)
                    prev = (t, lease, ttl)
            except Exception:  # noqa: BLE001 - counted; the next poll tries again
                self.errors += 1
            self.halt.wait(self.interval)

    def stop(self):
        self.halt.set()
        self.join(5)

    def wait_renewal_after(self, t, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(r > t for r in self.renewals):
                return True
            time.sleep(0.2)
        return False

    def report(self, t0, t1):
        """Renewals from the last one before t0 to the first one after t1, their longest gap, the lowest TTL."""
        before = [r for r in self.renewals if r <= t0]
        inside = [r for r in self.renewals if t0 < r <= t1]
        after = [r for r in self.renewals if r > t1]
        seq = before[-1:] + inside + after[:1]
        gaps = [b - a for a, b in zip(seq, seq[1:])]
        ttls = [ttl for t, _, ttl in self.samples if t0 <= t <= t1]
        return {
            "renewals_during_load": len(inside),
            "max_gap_s": round(max(gaps), 2) if gaps else None,
            "gaps_s": [round(g, 2) for g in gaps],
            "bounded": bool(before) and bool(after),
            "min_ttl_s": min(ttls) if ttls else None,
            "poll_errors": self.errors,
        }


UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    return float(m.group(1)) * UNIT[m.group(2)] if m else None


def parse_wrk(out):
    r = {"latency_ms": {}, "non_2xx_3xx": 0, "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}}
    for line in out.splitlines():
        s = line.strip()
        m = re.match(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", s)
        if m:
            r["latency_ms"].update(avg=ms(m.group(1)), stdev=ms(m.group(2)), max=ms(m.group(3)))
        m = re.match(r"(50|75|90|99)%\s+(\S+)$", s)
        if m:
            r["latency_ms"][f"p{m.group(1)}"] = ms(m.group(2))
        m = re.match(r"(\d+) requests in ([\d.]+)(\w+)", s)
        if m:
            r["requests"] = int(m.group(1))
            r["seconds"] = ms(m.group(2) + m.group(3)) / 1e3
        m = re.match(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", s)
        if m:
            r["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
        m = re.match(r"Non-2xx or 3xx responses: (\d+)", s)
        if m:
            r["non_2xx_3xx"] = int(m.group(1))
        m = re.match(r"Requests/sec:\s+([\d.]+)", s)
        if m:
            r["rps"] = float(m.group(1))
        if s.startswith("RAW-LATENCY "):
            try:
                raw = json.loads(s[len("RAW-LATENCY "):])
            except ValueError:
                raw = {"error": s}
            r["raw_latency_ms"] = raw if "error" in raw else {
                k[:-3]: v / 1e3 for k, v in raw.items() if k.endswith("_us") and k != "interval_us"}
            if "error" not in raw:
                r["raw_latency_ms"].update(count=raw["count"], interval_ms=raw["interval_us"] / 1e3,
                                           corrected_count=raw["corrected_count"])
    return r


def listen_counters():
    """The kernel's count of connections dropped because a listen queue was full (whole machine)."""
    out = {}
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
        for names, values in zip(lines[::2], lines[1::2]):
            if names.startswith("TcpExt:"):
                out = dict(zip(names.split()[1:], map(int, values.split()[1:])))
    except OSError:
        pass
    return out.get("ListenOverflows", 0), out.get("ListenDrops", 0)


def wrk(h, args, url, pid, pg_pid):
    """One wrk run against url while sampling pid (and its PostgreSQL); returns the result dict and the
    monotonic start and end of the run."""
    sampler = ProcSampler(h, pid, pg_pid)
    cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.duration}s", "--latency",
           "--timeout", f"{args.timeout}s", "-s", os.path.join(HERE, "rawlatency.lua"), url]
    lo0 = listen_counters()
    sampler.begin()
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       env={**os.environ, "WRK_CONNECTIONS": str(args.connections)})
    t1 = time.monotonic()
    res = sampler.end()
    lo1 = listen_counters()
    res["listen_overflows"] = lo1[0] - lo0[0]
    rps = parse_wrk(p.stdout).get("rps")
    # CPU time per answered request, the agent and its PostgreSQL together (robust to other load)
    res["cpu_us_per_request"] = round((res["cpu_percent"] + res["pg_cpu_percent"]) / 100 / rps * 1e6, 1) if rps else None
    res["user_us_per_request"] = round(res["user_cpu_percent"] / 100 / rps * 1e6, 2) if rps else None
    res["wrk_command"] = f"WRK_CONNECTIONS={args.connections} " + " ".join(cmd)
    res["wrk_output"] = p.stdout
    res.update(parse_wrk(p.stdout))
    return res, t0, t1


def check_status(h, url):
    try:
        return h.http_get(url, timeout=5).status_code
    except Exception as e:  # noqa: BLE001
        return f"error: {e}"


def response_head(h, url):
    """HTTP version and the framing headers of one answer (an HTTP/1.0 answer without Content-Length ends
    with the connection: wrk counts that end as a read error, see README)."""
    try:
        r = h.http_get(url, timeout=5)
        return {"status": r.status_code, "http_version": {10: "HTTP/1.0", 11: "HTTP/1.1"}.get(r.raw.version, "?"),
                "content_length": r.headers.get("Content-Length"), "connection": r.headers.get("Connection"),
                "body_bytes": len(r.content)}
    except Exception as e:  # noqa: BLE001
        return {"error": str(e)}


def run_one(h, args, agent, c, monitor_of, endpoint, roles):
    path, role = ENDPOINTS[endpoint]
    name = roles[role]
    node = c.nodes[name]
    url = node.rest_url + path
    res = {"agent": agent, "endpoint": endpoint, "url": url, "node": name, "role": role}
    res["response"] = response_head(h, url)
    res["status_before"] = res["response"].get("status", res["response"].get("error"))
    if res["status_before"] != 200:
        res["skipped"] = f"{path} on {name} answered {res['status_before']}, not 200"
        print(f"  {agent:8} {endpoint:8} skipped: {res['skipped']}", flush=True)
        return res
    out, t0, t1 = wrk(h, args, url, node.pid, node.postmaster_pid())
    res.update(out)
    res["status_after"] = check_status(h, url)
    # close the window with the first renewal after the load (at most a loop and a retry later)
    mon = monitor_of[name]
    mon.wait_renewal_after(t1, args.loop_wait + args.retry_timeout + 2)
    res["lease"] = mon.report(t0, t1)
    print_line(res)
    return res


def run_baseline(h, args, rd, body_url):
    """bench/rest/mhd_baseline.c (libmicrohttpd with pgha's options, a fixed body: pgha's /primary answer)."""
    src = os.path.join(HERE, "mhd_baseline.c")
    exe = os.path.join(rd.path, "mhd_baseline")
    body = os.path.join(rd.path, "baseline-body.json")
    res = {"agent": "baseline", "endpoint": "primary", "node": "mhd_baseline", "role": "-"}
    cc = subprocess.run(["cc", "-O2", "-o", exe, src, "-lmicrohttpd"], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True)
    if cc.returncode != 0:
        res["skipped"] = f"cannot build {src}: {cc.stdout.strip()[:300]}"
        print(f"  baseline skipped: {res['skipped']}", flush=True)
        return res
    with open(body, "wb") as f:
        f.write(h.http_get(body_url, timeout=5).content)
    port = h.allocate_port()
    proc = h.Proc([exe, str(port), body, str(args.request_queue_size or 128)], os.path.join(rd.path, "baseline.log"),
                  label="mhd_baseline").start()
    try:
        url = f"http://127.0.0.1:{port}/primary"
        res["url"] = url
        h.wait_until(lambda: check_status(h, url) == 200, 10, msg="mhd_baseline to answer")
        out, _, _ = wrk(h, args, url, proc.pid, None)
        res.update(out)
        res["lease"] = None
        print_line(res)
    finally:
        proc.stop()
        h.release_ports(port)
    return res


def print_line(res):
    lat, raw = res["latency_ms"], res.get("raw_latency_ms") or {}
    gap = res["lease"]["max_gap_s"] if res.get("lease") else "-"
    print(f"  {res['agent']:8} {res['endpoint']:8} {res.get('rps', 0):8.0f} req/s  p99 {lat.get('p99', float('nan')):8.2f} ms "
          f"(raw {raw.get('p99', float('nan')):7.2f} ms)  non-2xx/3xx {res['non_2xx_3xx']}  "
          f"socket errors {sum(res['socket_errors'].values())}  max renewal gap {gap} s  "
          f"(other load {res['other_cpu_percent']:.0f} %)", flush=True)


# ------------------------------------------------------------------------------------------ report


def eof_delimited(r):
    """An answer whose end is the connection's close (HTTP/1.0, no Content-Length): wrk counts a read error for
    each such answer although it parsed it completely (requests and read errors then match)."""
    resp = r.get("response") or {}
    return resp.get("http_version") == "HTTP/1.0" and not resp.get("content_length")


def table(results, info, args):
    lines = []
    lines.append(f"{args.threads} threads, {args.connections} connections, {args.duration} s per run; "
                 f"ttl {args.ttl}, loop_wait {args.loop_wait}, retry_timeout {args.retry_timeout}; "
                 f"restapi.request_queue_size {args.request_queue_size or 'default (128)'}")
    lines.append(f"{info['cpus']} CPUs ({info['cpu']}), {info['os']}, kernel {info['kernel']}; pgha "
                 f"{info['pgha_commit']} ({info['pgha_buildtype']} build); {info['patroni_version']}; "
                 f"{info['postgresql']}; {info['etcd']}; {info['wrk']}")
    lines.append("")
    hdr = ["agent", "endpoint", "req/s", "p50 ms", "p99 ms", "p99 raw ms", "max ms", "non-2xx/3xx", "socket err", "listen ovf",
           "RSS MB", "CPU %", "PG CPU %", "CPU us/req", "wrk CPU %", "other CPU %", "max renewal gap s", "min TTL s"]
    rows, skipped = [], []
    for r in results:
        if "skipped" in r:
            skipped.append(f"{r['agent']} {r['endpoint']}: skipped, {r['skipped']}")
            continue
        lat, se, raw = r["latency_ms"], r["socket_errors"], r.get("raw_latency_ms") or {}
        se_txt = "/".join(f"{k[0]}{v}" for k, v in se.items() if v) or "0"  # c=connect r=read w=write t=timeout
        if eof_delimited(r):
            se_txt += "*"
        lease = r.get("lease")
        if lease:
            gap = "?" if lease["max_gap_s"] is None else f"{lease['max_gap_s']:.1f}" + ("" if lease["bounded"] else " (open)")
            ttl = str(lease["min_ttl_s"])
        else:
            gap = ttl = "-"
        rows.append([r["agent"], r["endpoint"], f"{r.get('rps', 0):.0f}", f"{lat.get('p50', 0):.2f}",
                     f"{lat.get('p99', 0):.2f}", f"{raw['p99']:.2f}" if "p99" in raw else "?",
                     f"{lat.get('max', 0):.1f}", str(r["non_2xx_3xx"]), se_txt, str(r.get("listen_overflows", "?")),
                     f"{(r['rss_kb_max'] or 0) / 1024:.1f}", f"{r['cpu_percent']:.0f}", f"{r['pg_cpu_percent']:.0f}",
                     "?" if r.get("cpu_us_per_request") is None else f"{r['cpu_us_per_request']:.0f}",
                     f"{r['wrk_cpu_percent']:.0f}", f"{r['other_cpu_percent']:.0f}", gap, ttl])
    widths = [max([len(hdr[i])] + [len(row[i]) for row in rows]) for i in range(len(hdr))]
    lines.append("| " + " | ".join(hdr[i].ljust(widths[i]) for i in range(len(hdr))) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        lines.append("| " + " | ".join(row[i].ljust(widths[i]) for i in range(len(hdr))) + " |")
    lines.extend(skipped)
    if any(eof_delimited(r) for r in results if "skipped" not in r):
        lines.append("* HTTP/1.0 answers without Content-Length, ended by closing the connection: wrk counts one read "
                     "error per answer (they are complete; compare with req/s x duration), not failures.")
    lines.append("")
    lines.append("p50/p99/max: wrk --latency (wrk corrects for coordinated omission, see rawlatency.lua); p99 raw: the "
                 "same requests without that correction. socket errors: c=connect r=read w=write t=timeout (no "
                 "answer within --timeout); listen ovf: connections the kernel dropped because a listen queue was full "
                 "(TcpExtListenOverflows, whole machine; the client retries after 1 s). RSS: the serving process's max during the run. CPU: % of one core over "
                 "the run: the serving process, its PostgreSQL (postmaster and children), wrk, and everything else "
                 "on the machine that this run did not start; CPU us/req: CPU time of the process and its PostgreSQL "
                 "per answered request. Renewal gap: the serving agent's lease, from the last "
                 "renewal before the run to the first after it; min TTL: the lowest remaining TTL seen meanwhile.")
    return "\n".join(lines)


def targets(results, args):
    """Issue 10's targets, for pgha."""
    by = {(r["agent"], r["endpoint"]): r for r in results if "skipped" not in r}
    out = []
    pg, pa = by.get(("pgha", "primary")), by.get(("patroni", "primary"))
    if pg and pa and pa.get("rps"):
        ratio = pg["rps"] / pa["rps"]
        out.append(("/primary req/s >= 20x Patroni's", ratio >= 20, f"{ratio:.1f}x ({pg['rps']:.0f} vs {pa['rps']:.0f})"))
    mine = [r for r in results if r["agent"] == "pgha" and "skipped" not in r]
    if mine:
        worst = max(mine, key=lambda r: r["latency_ms"].get("p99", 1e9))
        p99 = worst["latency_ms"].get("p99", 1e9)
        raws = ", ".join(f"{r['endpoint']} {r['latency_ms'].get('p99', float('nan')):.2f}/"
                         f"{(r.get('raw_latency_ms') or {}).get('p99', float('nan')):.2f}" for r in mine)
        out.append(("p99 < 5 ms on every endpoint (wrk)", p99 < 5.0,
                    f"worst {p99:.2f} ms ({worst['endpoint']}); wrk/raw p99 in ms: {raws}"))
        errs = sum(r["non_2xx_3xx"] + sum(r["socket_errors"].values()) for r in mine)
        out.append(("zero errors", errs == 0, f"{errs} errors"))
        gaps = [r["lease"]["max_gap_s"] for r in mine if r["lease"]["max_gap_s"] is not None]
        open_ = [r["endpoint"] for r in mine if not r["lease"]["bounded"]]
        limit = args.loop_wait + 1
        ok = bool(gaps) and max(gaps) <= limit and not open_
        out.append((f"no lease renewal gap beyond loop_wait + 1 s = {limit} s", ok,
                    (f"longest {max(gaps):.1f} s" if gaps else "not measured")
                    + (f"; window not closed for {open_}" if open_ else "")))
    skipped = [f"{r['agent']} {r['endpoint']}" for r in results if "skipped" in r and r["agent"] == "pgha"]
    if skipped:
        out.append(("every endpoint measured", False, f"skipped: {skipped}"))
    return out


# ------------------------------------------------------------------------------------------ main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=2, help="wrk --timeout in seconds (default 2)")
    ap.add_argument("--endpoints", default="primary,replica,patroni,metrics",
                    help=f"comma-separated, of {','.join(ENDPOINTS)}")
    ap.add_argument("--agents", default="pgha,patroni", help="pgha and/or patroni")
    ap.add_argument("--baseline", action="store_true",
                    help="also measure mhd_baseline.c (libmicrohttpd with pgha's options and a fixed body) on /primary")
    ap.add_argument("--request-queue-size", type=int, default=None,
                    help="restapi.request_queue_size (the listen backlog) of the pgha nodes and the baseline "
                         "(default: not set, pgha's 128; Patroni 3.0.2 has no such setting and keeps 5)")
    ap.add_argument("--ttl", type=int, default=30)
    ap.add_argument("--loop-wait", type=int, default=10)
    ap.add_argument("--retry-timeout", type=int, default=10)
    ap.add_argument("--build", default=os.environ.get("PGHA_BUILD_DIR") or os.path.join(ROOT, "build"),
                    help="pgha build directory (default $PGHA_BUILD_DIR or <repo>/build)")
    ap.add_argument("--out", default=None,
                    help="report prefix: writes PREFIX.json and PREFIX.txt (default /tmp/pgha-bench-rest-<time>)")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install wrk/patroni when missing")
    args = ap.parse_args()
    endpoints = [e for e in args.endpoints.split(",") if e]
    agents = [a for a in args.agents.split(",") if a]
    bad = [e for e in endpoints if e not in ENDPOINTS] + [a for a in agents if a not in ("pgha", "patroni")]
    if bad or not endpoints or not agents:
        ap.error(f"unknown endpoints/agents: {bad}")
    if args.baseline and ("pgha" not in agents or "primary" not in endpoints):
        ap.error("--baseline needs the pgha agent and the primary endpoint (it serves pgha's /primary answer)")
    if os.geteuid() != 0:
        raise SystemExit("run as root (PostgreSQL runs as the postgres user through setpriv)")
    args.build = os.path.abspath(args.build)
    os.environ["PGHA_BUILD_DIR"] = args.build
    if "pgha" in agents and not os.access(os.path.join(args.build, "src", "pgha"), os.X_OK):
        raise SystemExit(f"{args.build}/src/pgha not found: meson setup {args.build} --buildtype=release && "
                         f"ninja -C {args.build}")
    ensure_tools(agents, not args.no_install)
    out = args.out or f"/tmp/pgha-bench-rest-{time.strftime('%Y%m%d-%H%M%S')}"

    import pghatest as h
    from hacluster import HaCluster

    info = machine_info(args.build)
    timings = {"ttl": args.ttl, "loop_wait": args.loop_wait, "retry_timeout": args.retry_timeout}
    h.install_safety_net()
    rd = h.RunDir()
    etcd, clusters, monitors, failed = None, {}, [], True
    try:
        etcd = h.EtcdCluster(3, rd.path)
        for agent in agents:
            extra = {}
            if agent == "pgha" and args.request_queue_size:
                extra = {"restapi": {"request_queue_size": args.request_queue_size}}
            clusters[agent] = build_cluster(h, HaCluster, etcd, rd.subdir(agent), f"bench-{agent}", agent, 2,
                                            timings, extra)
        roles = {}
        for agent, c in clusters.items():
            t = time.monotonic()
            leader = start_cluster(h, c)
            replica = next(n for n in c.nodes if n != leader)
            roles[agent] = {"leader": leader, "replica": replica}
            print(f"{agent}: leader {leader}, replica {replica} streaming ({time.monotonic() - t:.0f} s)", flush=True)
        # /replica?lag=... compares with the leader's position the agents see in etcd: wait until every endpoint
        # answers 200 where it is measured
        for agent, c in clusters.items():
            for ep in endpoints:
                path, role = ENDPOINTS[ep]
                url = c.nodes[roles[agent][role]].rest_url + path
                try:
                    h.wait_until(lambda: check_status(h, url) == 200, 3 * args.loop_wait + 30,
                                 msg=f"{url} to answer 200")
                except h.WaitTimeout as e:
                    print(f"warning: {e}", flush=True)
        monitor_of = {}
        for agent, c in clusters.items():
            for name in c.nodes:
                m = LeaseMonitor(h, etcd, c.key(f"members/{name}"))
                m.start()
                monitors.append(m)
                monitor_of[name] = m
        # a full loop of observed renewals before the first run
        time.sleep(args.loop_wait + 2)
        idle = {}
        for agent, c in clusters.items():
            for name, node in c.nodes.items():
                idle[name] = {"agent": agent, "role": "leader" if name == roles[agent]["leader"] else "replica",
                              "rss_kb": proc_rss_kb(node.pid)}
        print(f"\n{args.threads} threads, {args.connections} connections, {args.duration} s per run:", flush=True)
        results = []
        for ep in endpoints:
            if ep == "primary" and args.baseline:
                leader = clusters["pgha"].nodes[roles["pgha"]["leader"]]
                results.append(run_baseline(h, args, rd, leader.rest_url + "/primary"))
                time.sleep(2)
            for agent in agents:
                results.append(run_one(h, args, agent, clusters[agent], monitor_of, ep, roles[agent]))
                time.sleep(2)
        for agent, c in clusters.items():
            if c.leader() != roles[agent]["leader"]:
                print(f"WARNING: {agent}'s leader changed during the run: {roles[agent]['leader']} -> {c.leader()}")
        info["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
        report = {"machine": info, "options": vars(args), "roles": roles, "idle": idle, "results": results}
        txt = table(results, info, args)
        tg = targets(results, args) if "pgha" in agents else []
        report["targets"] = [{"target": t, "met": ok, "measured": m} for t, ok, m in tg]
        if tg:
            txt += "\n\nissue 10's targets (pgha):\n" + "\n".join(
                f"  [{'met' if ok else 'NOT MET'}] {t}: {m}" for t, ok, m in tg)
        txt += (f"\n\nload average before/after: {' '.join(info['loadavg_before'])} / {' '.join(info['loadavg_after'])}"
                f"\nreproduce: sudo /usr/bin/python3 bench/rest/run.py --build {os.path.relpath(args.build, ROOT)} "
                f"--duration {args.duration} --connections {args.connections} --threads {args.threads} "
                f"--endpoints {','.join(endpoints)} --agents {','.join(agents)} --ttl {args.ttl} "
                f"--loop-wait {args.loop_wait} --retry-timeout {args.retry_timeout}"
                + (" --baseline" if args.baseline else "")
                + (f" --request-queue-size {args.request_queue_size}" if args.request_queue_size else ""))
        with open(out + ".json", "w") as f:
            json.dump(report, f, indent=2)
        with open(out + ".txt", "w") as f:
            f.write(txt + "\n")
        print("\n" + txt)
        print(f"\nreport: {out}.json, {out}.txt")
        failed = False
    finally:
        for m in monitors:
            m.stop()
        for c in clusters.values():
            c.destroy()
        if etcd is not None:
            etcd.destroy()
        rd.cleanup(failed=failed)


if __name__ == "__main__":
    main()
