#!/usr/bin/python3
"""pgha chaos runner: a 3-host cluster in network namespaces, a client workload, nemeses, a checker.

    sudo /usr/bin/python3 tests/chaos/chaos.py --duration 240 --seed 1 --report /tmp/chaos.json

Hosts pghac-n1..n3 (10.77.0.1-3) each run an etcd member, PostgreSQL 15 and pgha; the client namespace
pghac-cl (10.77.0.100) runs the workload (workload.py); the runner itself uses 10.77.0.254 on the bridge
pghac-br. Phases cycle through the synchronous modes (--modes) and use_pg_rewind settings (--rewind),
applied with PATCH /config; in each phase nemeses (nemesis.py) run one after the other, each followed
by healing (the fault undone, then the cluster healthy: one leader, the only primary, every other node
streaming, /sync set up in a synchronous mode). At the end the workload stops, the replicas catch up,
every node is read, and checker.py gives the verdict (exit status 0 only when it is ok).

Everything is torn down in a finally path and at exit, also on Ctrl-C/SIGTERM: the workload, agents,
PostgreSQL, etcd (by PID, through the harness registry; then whatever is left in our namespaces), the
namespaces, veths, the bridge and the run directory /tmp/pghac-run-<pid>. Logs, the history, the events
and the verdict are copied to --artifacts first (default /tmp/pghac-artifacts/<time>-seed<N>), always
when the run failed, and on success only with --keep-artifacts. A run killed with SIGKILL is cleaned
up by the next one (only names with the pghac prefix), under the lock /tmp/pghac.lock.
"""

import argparse
import atexit
import json
import os
import random
import shutil
import signal
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cluster as cl  # noqa: E402
import checker  # noqa: E402
import netns  # noqa: E402
import nemesis as nm  # noqa: E402

import pghatest as h  # noqa: E402
from pghatest.proc import reap_orphans  # noqa: E402

MODES = {"off": {"synchronous_mode": False, "synchronous_mode_strict": False},
         "on": {"synchronous_mode": True, "synchronous_mode_strict": False},
         "strict": {"synchronous_mode": True, "synchronous_mode_strict": True},
         "quorum": {"synchronous_mode": "quorum", "synchronous_mode_strict": False}}


def log(msg):
    print(f"{time.strftime('%H:%M:%S')} chaos: {msg}", flush=True)


class Events:
    def __init__(self, path):
        self.f = open(path, "a")

    def write(self, k, **kw):
        rec = {"k": k, "t": time.monotonic(), "wall": time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}", **kw}
        self.f.write(json.dumps(rec, default=str) + "\n")
        self.f.flush()
        return rec

    def close(self):
        self.f.close()


def find_build(arg):
    for d in [arg, os.environ.get("PGHA_BUILD_DIR"), os.path.join(HERE, "..", "..", "build"), "/tmp/bch"]:
        if d and os.access(os.path.join(d, "src", "pgha"), os.X_OK):
            return os.path.abspath(d)
    raise SystemExit("pgha is not built: pass --build-dir (meson setup build && ninja -C build)")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=240, help="seconds of faults (not counting setup and checks)")
    ap.add_argument("--modes", default="off,on,strict,quorum", help="synchronous modes, cycled by phase")
    ap.add_argument("--rewind", default="on,off", help="use_pg_rewind values, cycled by phase")
    ap.add_argument("--phase", type=float, default=0, help="seconds per phase (default: duration / number of modes)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--nemeses", default=",".join(nm.DEFAULT), help="comma-separated subset of the catalogue")
    ap.add_argument("--first", default="", help="nemeses to run first (then the shuffled cycle)")
    ap.add_argument("--unfenced", action="store_true", help="also the nemeses unsafe without a watchdog")
    ap.add_argument("--ttl", type=int, default=10)
    ap.add_argument("--loop-wait", type=int, default=2)
    ap.add_argument("--retry-timeout", type=int, default=4)
    ap.add_argument("--quiet", type=float, default=3, help="seconds of calm after each heal")
    ap.add_argument("--heal-timeout", type=float, default=90)
    ap.add_argument("--report", help="write the verdict (JSON) here")
    ap.add_argument("--artifacts", help="where logs, history and verdict are copied")
    ap.add_argument("--keep-artifacts", action="store_true", help="copy artifacts also when the run passed")
    ap.add_argument("--build-dir")
    ap.add_argument("--fail-on-async-loss", action="store_true")
    return ap.parse_args(argv)


class Runner:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed if args.seed is not None else random.randrange(1, 10 ** 6)
        self.rng = random.Random(self.seed)
        self.lock = None
        self.net = None
        self.cluster = None
        self.workload = None
        self.run_dir = None
        self.events = None
        self.fault_id = 0
        self.aborted = None
        self.mode = "off"

    # ------------------------------------------------------------------ setup / teardown
    def setup(self):
        if os.geteuid() != 0:
            raise SystemExit("run as root (network namespaces; PostgreSQL runs as postgres through setpriv)")
        self.lock = netns.RunLock(wait=0)
        netns.cleanup_stale(log)
        h.install_safety_net()  # also makes us a child subreaper: orphaned postmasters become our children
        atexit.register(self.teardown)
        # ... so reap them as init would, at once: a zombie postmaster looks alive to kill(pid, 0), and an
        # agent that took over an orphaned postmaster (after kill -9 of the agent) would wait for it forever.
        self.reaper_stop = threading.Event()
        threading.Thread(target=self._reaper, daemon=True).start()
        self.run_dir = f"/tmp/{netns.PREFIX}-run-{os.getpid()}"
        h.make_dir(self.run_dir, mode=0o755)
        build = find_build(self.args.build_dir)
        bin_dir = h.make_dir(os.path.join(self.run_dir, "bin"), mode=0o755)
        for b in ("pgha", "pgha-ctl"):
            shutil.copy(os.path.join(build, "src", b), bin_dir)
            os.chmod(os.path.join(bin_dir, b), 0o755)
        self.events = Events(os.path.join(self.run_dir, "events.jsonl"))
        a = self.args
        self.events.write("config", clock={"mono": time.monotonic(), "wall": time.time()}, seed=self.seed, ttl=a.ttl, loop_wait=a.loop_wait, retry_timeout=a.retry_timeout,
                          duration=a.duration, modes=a.modes, rewind=a.rewind, nemeses=a.nemeses, unfenced=a.unfenced,
                          build=build)
        log(f"seed {self.seed}, run dir {self.run_dir}, build {build}")
        self.net = netns.Net(["n1", "n2", "n3"])
        self.net.setup()
        self.cluster = cl.ChaosCluster(self.net, self.run_dir, bin_dir, a.ttl, a.loop_wait, a.retry_timeout, log=log)
        t = time.monotonic()
        leader = self.cluster.start()
        log(f"cluster up in {time.monotonic() - t:.1f}s, leader {leader}")
        self.cluster.sql(leader, "CREATE TABLE IF NOT EXISTS chaos (v bigint PRIMARY KEY, node text)")
        self.start_workload()

    def _reaper(self):
        while not self.reaper_stop.wait(0.1):
            try:
                reap_orphans()
            except Exception:  # noqa: BLE001
                pass

    def start_workload(self):
        args = ["/usr/bin/python3", os.path.join(HERE, "workload.py"), "--out",
                os.path.join(self.run_dir, "history.jsonl"), "--password", cl.SUPER_PASSWORD]
        for hh in self.net.hosts:
            args += ["--node", f"{hh}={self.net.addr[hh]}"]
        self.workload = cl.NsProc(self.net.ns(netns.CLIENT), args, os.path.join(self.run_dir, "workload.log"),
                                  label="chaos workload").start()
        time.sleep(1)
        if not self.workload.is_running():
            raise RuntimeError("the workload exited:\n" + h.tail_file(self.workload.log_path, 40))

    def stop_workload(self):
        if self.workload is not None and self.workload.is_running():
            self.workload.stop(signal.SIGTERM, timeout=20)

    def teardown(self):
        if self.lock is None:
            return
        try:
            self.stop_workload()
        except Exception as e:  # noqa: BLE001
            log(f"teardown: workload: {e}")
        if self.cluster is not None:
            self.cluster.destroy()
        try:
            h.kill_all_registered()
        except Exception as e:  # noqa: BLE001
            log(f"teardown: {e}")
        if self.net is not None:
            try:
                self.net.destroy()
            except Exception as e:  # noqa: BLE001
                log(f"teardown: network: {e}")
        if self.events is not None:
            self.events.close()
        if self.run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        self.lock.release()
        self.lock = None

    # ------------------------------------------------------------------ phases
    def set_mode(self, mode, rewind):
        c = self.cluster
        body = dict(MODES[mode])
        body["postgresql"] = {"use_pg_rewind": rewind}
        self.events.write("mode", mode=mode, rewind=rewind)
        self.mode = mode
        leader = c.wait_healthy(self.args.heal_timeout, None)
        r = c.rest(leader, "PATCH", "/config", body, timeout=10)
        if r.status_code != 200:
            raise RuntimeError(f"PATCH /config {body}: {r.status_code} {r.text[:300]}")

        def effective():
            l = c.leader()
            ssn = c.sql(l, "SHOW synchronous_standby_names")[0][0]
            if mode == "off":
                return ssn == ""
            return ssn != "" and not c.health_problems(mode)
        h.wait_until(effective, 60, interval=0.5, msg=f"synchronous mode {mode} in force")
        self.events.write("mode_effective", mode=mode, rewind=rewind)
        log(f"mode {mode}, use_pg_rewind {rewind}")

    def heal_wait(self, fid):
        c = self.cluster
        try:
            leader = c.wait_healthy(self.args.heal_timeout, self.mode)
            self.events.write("healthy", id=fid, leader=leader)
            return True
        except h.WaitTimeout as e:
            first = str(e)
        # Repair what an operator would: restart dead agents, reinitialize nodes that do not stream.
        log(f"fault {fid}: not healthy: {first}; repairing")
        self.events.write("note", id=fid, text=f"not healthy after {self.args.heal_timeout}s: {first}")
        for hh, node in c.nodes.items():
            if not node.is_running():
                node.start()
                self.events.write("note", id=fid, text=f"restarted agent {hh}")
        leader = c.leader()
        if leader in c.nodes:
            for p in c.health_problems(self.mode):
                for hh in c.hosts:
                    if p.startswith(f"{hh} not streaming"):
                        try:
                            r = c.rest(hh, "POST", "/reinitialize", {"force": True}, timeout=10)
                            self.events.write("note", id=fid, text=f"reinitialize {hh}: {r.status_code} {r.text[:200]}")
                        except Exception as ex:  # noqa: BLE001
                            self.events.write("note", id=fid, text=f"reinitialize {hh}: {ex}")
        try:
            leader = c.wait_healthy(self.args.heal_timeout, self.mode)
            self.events.write("healthy", id=fid, leader=leader, repaired=True)
            return True
        except h.WaitTimeout as e:
            self.events.write("heal_failed", id=fid, problems=str(e), first=first)
            log(f"fault {fid}: heal failed: {e}")
            return False

    def run_fault(self, name):
        self.fault_id += 1
        fid = self.fault_id
        nem = self.nemesis
        nem.mode = self.mode
        self.events.write("fault", id=fid, nemesis=name, mode=self.mode)
        log(f"fault {fid}: {name}")
        try:
            detail = nem.run(name, fid)
        except Exception as e:  # noqa: BLE001
            detail = {"error": f"{type(e).__name__}: {e}"}
            log(f"fault {fid}: {traceback.format_exc()}")
        self.events.write("undone", id=fid, nemesis=name, detail=detail)
        log(f"fault {fid}: {name} undone: {json.dumps(detail, default=str)}")
        ok = self.heal_wait(fid)
        time.sleep(self.args.quiet)
        return ok

    def chaos(self):
        a = self.args
        modes = [m.strip() for m in a.modes.split(",") if m.strip()]
        rewinds = [x.strip() in ("on", "true", "1") for x in a.rewind.split(",") if x.strip()]
        for m in modes:
            if m not in MODES:
                raise SystemExit(f"unknown mode {m}")
        names = [n.strip() for n in a.nemeses.split(",") if n.strip()]
        if a.unfenced:
            names += [n for n in nm.UNFENCED if n not in names]
        for n in names:
            if not hasattr(nm.Nemesis, "n_" + n.replace("-", "_")):
                raise SystemExit(f"unknown nemesis {n}")
        self.nemesis = nm.Nemesis(self.cluster, self.net, self.rng, self.events, log)
        phase_len = a.phase or max(1.0, a.duration / len(modes))
        # nemeses in a shuffled cycle: over a long run every kind comes up equally often
        order = [n.strip() for n in a.first.split(",") if n.strip()]
        for n in order:
            if n not in names:
                raise SystemExit(f"--first {n}: not among the nemeses")
        end = time.monotonic() + a.duration
        phase = 0
        while time.monotonic() < end and not self.aborted:
            # every (mode, rewind) pair within len(modes) x len(rewinds) phases; the rewind setting
            # alternates from one phase to the next so that a short run sees both
            mode = modes[phase % len(modes)]
            rewind = rewinds[(phase + phase // len(modes)) % len(rewinds)]
            phase += 1
            self.set_mode(mode, rewind)
            phase_end = min(end, time.monotonic() + phase_len)
            first = True
            while (first or time.monotonic() < phase_end) and not self.aborted:
                first = False
                if not order:
                    order = list(names)
                    self.rng.shuffle(order)
                if not self.run_fault(order.pop(0)):
                    self.aborted = f"the cluster did not heal after fault {self.fault_id}"

    def finish(self):
        c = self.cluster
        final = {"nodes": {}}
        try:
            leader = c.wait_healthy(self.args.heal_timeout, None)
            time.sleep(2)
        except h.WaitTimeout as e:
            final["error"] = str(e)
            leader = c.leader()
        self.stop_workload()
        self.events.write("final")
        try:
            c.wait_caught_up(60)
        except Exception as e:  # noqa: BLE001
            final.setdefault("error", f"replicas did not catch up: {e}")
        final["primary"] = leader
        for hh in c.hosts:
            try:
                final["nodes"][hh] = [r[0] for r in c.sql(hh, "SELECT v FROM chaos ORDER BY v", timeout=5)]
            except Exception as e:  # noqa: BLE001
                final["nodes"][hh] = None
                final.setdefault("read_errors", {})[hh] = str(e)
        with open(os.path.join(self.run_dir, "final.json"), "w") as f:
            json.dump(final, f)
        return checker.check_dir(self.run_dir, self.args.ttl, self.args.fail_on_async_loss)

    def save_artifacts(self, verdict, failed):
        a = self.args
        if not (failed or a.keep_artifacts or a.artifacts):
            return None
        dest = a.artifacts or os.path.join("/tmp/pghac-artifacts", time.strftime("%Y%m%d-%H%M%S") + f"-seed{self.seed}")
        os.makedirs(dest, exist_ok=True)
        for name in ("history.jsonl", "events.jsonl", "final.json", "workload.log"):
            p = os.path.join(self.run_dir, name)
            if os.path.exists(p):
                shutil.copy(p, dest)
        if self.cluster is not None:
            self.cluster.copy_logs(dest)
        if verdict is not None:
            with open(os.path.join(dest, "verdict.json"), "w") as f:
                json.dump(verdict, f, indent=2, sort_keys=True, default=str)
        return dest


def summary(v):
    lines = [f"faults: {v.get('faults_total')} {json.dumps(v.get('faults'), sort_keys=True)}",
             f"writes: {json.dumps(v.get('writes'))}",
             f"lost: {v.get('lost')}  lost_async: {v.get('lost_async')}  unexpected: {v.get('unexpected')}  "
             f"divergent: {v.get('divergent')}",
             f"two primaries: writes {len(v.get('two_primary_writes', []))}, /primary {len(v.get('two_primary_rest', []))}"
             f"  (timeline forks {len(v.get('timeline_forks', []))})",
             f"timing proofs: {len(v.get('timing', []))}, violations {v.get('timing_violations')}, "
             f"marginal {v.get('timing_marginal')}, unmeasured {v.get('timing_unmeasured')}"]
    for t in v.get("timing", []):
        lines.append(f"  {t['id']}:{t['nemesis']} leader {t['leader']}: margin ack {t.get('margin_ack')} s, "
                     f"/primary {t.get('margin_200')} s (cut {t['cut'] - t['renewal_lb'] if t.get('renewal_lb') else '?':.3} s "
                     f"after the renewal) -> {'ok' if t['ok'] else ('VIOLATION' if t.get('definite') else 'marginal')}")
    lines.append("verdict: " + ("OK" if v.get("ok") else "FAIL: " + "; ".join(v.get("problems", []))))
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    r = Runner(args)
    verdict = None
    failed = True
    t0 = time.monotonic()
    try:
        r.setup()
        r.chaos()
        verdict = r.finish()
        if r.aborted:
            verdict["problems"].append(f"aborted: {r.aborted}")
            verdict["ok"] = False
        verdict["seed"] = r.seed
        verdict["elapsed"] = round(time.monotonic() - t0, 1)
        verdict["args"] = vars(args)
        failed = not verdict["ok"]
    except KeyboardInterrupt:
        log("interrupted")
    except Exception:  # noqa: BLE001
        log(traceback.format_exc())
    finally:
        try:
            dest = r.save_artifacts(verdict, failed) if r.run_dir else None
            if dest:
                log(f"artifacts in {dest}")
        except Exception as e:  # noqa: BLE001
            log(f"saving artifacts: {e}")
        r.teardown()
    if verdict is not None:
        if args.report:
            with open(args.report, "w") as f:
                json.dump(verdict, f, indent=2, sort_keys=True, default=str)
        print(summary(verdict), flush=True)
    return 0 if verdict is not None and verdict["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
