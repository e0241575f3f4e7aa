#!/usr/bin/python3
"""The chaos checker: reads the workload's history, the runner's event log and the final reads of every
node, and returns a verdict (a JSON-able dict). Usable alone: checker.py RUN_DIR [--report FILE].

Definitions (all times are CLOCK_MONOTONIC seconds of the one machine, taken by the client; a write w
has a send time s(w), taken before the statement is sent, and an end time e(w), taken after its answer
arrived; its commit happened somewhere in [s(w), e(w)]):

lost        acknowledged writes (result "ack") absent from the final primary after healing. A write
            acknowledged while a synchronous mode guaranteed it (from the moment the runner saw the
            mode in force: /sync naming a standby, until the next mode change was requested) counts
            in `lost`; one acknowledged under `synchronous_mode: off` (or while a mode change was in
            progress) counts in `lost_async` instead: asynchronous replication may lose what the
            replicas had not received (Patroni's maximum_lag_on_failover), so it is reported, and only
            fails the run with --fail-on-async-loss.
unexpected  values present on any node that were never sent, or whose write definitely failed
            (read-only error). Indeterminate writes (timeout, lost connection, warning) may be present
            or absent.
divergent   after healing and catching up, a node whose set of values differs from the primary's.

Two primaries, from the writes. An era is (node, timeline): the acknowledged writes a node made on one
timeline (the timeline is returned by the INSERT itself). Timelines only grow along a healthy
cluster's history, so an era on a lower timeline must be over before an era on a higher one begins.
For eras O = (A, t1) and N = (B, t2) with A != B and t1 < t2, the cluster had two primaries at once
when some write of O was *sent* after some write of N was *acknowledged*:
        min over N of e(w)  <  max over O of s(w)
(then that write of O committed after a write of N had committed: both nodes were accepting and
acknowledging writes at one instant). Each such pair is reported with the offending writes of O
(those sent after N's first acknowledgement) and the interval [first ack of N, last ack of those].
Eras of two nodes on the *same* timeline (a timeline fork) are reported as forks, and as two primaries
when they definitely overlap: min e(O) < max s(N) and min e(N) < max s(O).
This never reports a violation that latency alone could explain: every inequality is between a time
known to be after one commit and a time known to be before the other.

Two primaries, from GET /primary (polled every ~100 ms per node; a poll has send time s and answer
time e). A run is a maximal sequence of consecutive polls of one node all answered 200 (any other
answer, or none, ends it); the node claimed to be primary throughout [e(first), s(last)] (assuming it
did between two consecutive 200s ~100 ms apart). Two runs of different nodes R1, R2 overlap when
        e(first of R1) < s(last of R2)  and  e(first of R2) < s(last of R1)
(a single poll of one node falls inside a run of the other). Each overlap is reported.

Timing proof (events "timing" of the runner): before cutting the leader L off (from etcd and its peers,
or stopping every etcd member), the runner watched L's lease with LeaseTimeToLive until it saw a
renewal (the remaining TTL went up between two polls); `renewal_lb` is the send time of the poll before
that, a lower bound of the last renewal etcd processed. deadline = renewal_lb + ttl, when the lease
can first have expired. The fault holds past the deadline. It passes when every acknowledgement from L
received after the cut (e(w)), and every 200 from L's /primary received after the cut (e), came before
the deadline. Using answer times (late) and a lower bound of the renewal (early) makes the check strict.
etcd reports the remaining TTL in whole seconds, so a renewal shortly after the observed one could
stay invisible; no renewal can get through after the cut, though, so cut + ttl (+50 ms for a request
already in flight) is the latest possible expiry. A violation is *definite* (counted in
timing_violations, fails the run) when the old leader acknowledged or answered 200 after cut + ttl;
past renewal_lb + ttl only, it is *marginal* (timing_marginal, reported). The runner cuts right after
it sees the renewal (the leader's own rules first), so the two deadlines are typically < 0.3 s apart.
"""

import argparse
import json
import os
import sys
from collections import Counter, defaultdict


CUT_SLACK = 0.05  # a keepalive already on its way when the cut was made may still reach etcd


def load_jsonl(path):
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line cut by a kill
    return out


def _windows(events, end_time):
    """Intervals [start, end) in which a synchronous mode guaranteed acknowledged writes."""
    wins = []
    cur = None
    for ev in events:
        if ev.get("k") == "mode":
            if cur is not None:
                wins.append((cur, ev["t"]))
                cur = None
        elif ev.get("k") == "mode_effective" and ev.get("mode") not in (None, "off"):
            cur = ev["t"]
    if cur is not None:
        wins.append((cur, end_time))
    return wins


def _in(wins, t):
    return any(a <= t < b for a, b in wins)


def _fault_at(faults, t):
    """Names of the faults whose [start, healthy] contains t (or the last fault before t)."""
    hits = [f for f in faults if f["t"] <= t <= f.get("end", float("inf"))]
    if hits:
        return [f"{f['id']}:{f['nemesis']}" for f in hits]
    before = [f for f in faults if f["t"] <= t]
    return [f"after {before[-1]['id']}:{before[-1]['nemesis']}"] if before else ["before any fault"]


def _add_wall(obj, offset):
    """Beside every monotonic time field (from, to, cut, heal, deadline, renewal_lb, last_ack, last_200), its
    wall-clock time (HH:MM:SS.mmm, local time) for reading the agents' logs."""
    import time as _t
    if isinstance(obj, list):
        for x in obj:
            _add_wall(x, offset)
    elif isinstance(obj, dict):
        for k in list(obj):
            v = obj[k]
            if k in ("from", "to", "cut", "heal", "deadline", "deadline_latest", "renewal_lb", "last_ack", "last_200") and \
                    isinstance(v, (int, float)):
                w = v + offset
                obj[k + "_wall"] = _t.strftime("%H:%M:%S", _t.localtime(w)) + f".{int(w * 1000) % 1000:03d}"
            elif isinstance(v, (dict, list)):
                _add_wall(v, offset)


def check(history, events, final, ttl, fail_on_async_loss=False):
    writes = [r for r in history if r.get("k") == "w" and "e" in r]
    polls = [r for r in history if r.get("k") == "p"]
    end_time = max([r["e"] for r in writes + polls] + [0])

    faults = []
    by_id = {}
    for ev in events:
        if ev.get("k") == "fault":
            f = dict(ev)
            faults.append(f)
            by_id[ev["id"]] = f
        elif ev.get("k") in ("healthy", "heal_failed") and ev.get("id") in by_id:
            by_id[ev["id"]]["end"] = ev["t"]

    verdict = {"faults": dict(Counter(f["nemesis"] for f in faults)), "faults_total": len(faults)}

    # ------------------------------------------------------------------ lost / unexpected
    results = Counter(r["r"] for r in writes)
    verdict["writes"] = {"attempted": len(writes), "acknowledged": results["ack"], "failed": results["fail"],
                         "indeterminate": results["info"], "warned": results["warn"]}
    attempted = {r["v"]: r for r in writes}
    acked = {r["v"]: r for r in writes if r["r"] == "ack"}
    wins = _windows(events, end_time + 1)
    primary = final.get("primary")
    sets = {n: set(v) for n, v in final.get("nodes", {}).items() if v is not None}
    if primary in sets:
        fin = sets[primary]
        lost_sync, lost_async = [], []
        for v, r in sorted(acked.items()):
            if v not in fin:
                (lost_sync if _in(wins, r["e"]) else lost_async).append(v)
        present = set().union(*sets.values())
        unexpected = sorted(v for v in present if v not in attempted or attempted[v]["r"] == "fail")
        verdict["lost"] = len(lost_sync)
        verdict["lost_values"] = [dict(acked[v], fault=_fault_at(faults, acked[v]["e"])) for v in lost_sync[:20]]
        verdict["lost_async"] = len(lost_async)
        verdict["lost_async_values"] = [dict(acked[v], fault=_fault_at(faults, acked[v]["e"]))
                                        for v in lost_async[:10]]
        verdict["unexpected"] = len(unexpected)
        verdict["unexpected_values"] = unexpected[:20]
        verdict["divergent"] = {n: {"missing": len(fin - s), "extra": len(s - fin)}
                                for n, s in sets.items() if s != fin}
        verdict["final_rows"] = {n: len(s) for n, s in sets.items()}
    else:
        verdict["lost"] = verdict["unexpected"] = None
        verdict["lost_async"] = None
        verdict["divergent"] = {}
        verdict["final_error"] = f"no final read of the primary ({primary!r}): {final.get('error')}"

    # ------------------------------------------------------------------ two primaries: writes
    eras = defaultdict(list)
    for r in acked.values():
        eras[(r["n"], r.get("tl"))].append(r)
    era_info = {}
    for k, ws in eras.items():
        era_info[k] = {"min_e": min(w["e"] for w in ws), "max_s": max(w["s"] for w in ws),
                       "first_s": min(w["s"] for w in ws), "last_e": max(w["e"] for w in ws), "n": len(ws)}
    two_w, forks = [], []
    keys = sorted(era_info, key=lambda k: (k[1] if k[1] is not None else -1, k[0]))
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if a[0] == b[0]:
                continue
            ia, ib = era_info[a], era_info[b]
            if a[1] == b[1]:
                forks.append({"timeline": a[1], "nodes": [a[0], b[0]]})
                if ia["min_e"] < ib["max_s"] and ib["min_e"] < ia["max_s"]:
                    two_w.append({"kind": "same timeline", "old": list(a), "new": list(b),
                                  "from": max(ia["min_e"], ib["min_e"]), "to": min(ia["max_s"], ib["max_s"]),
                                  "fault": _fault_at(faults, max(ia["min_e"], ib["min_e"]))})
                continue
            old, new = (a, b) if (a[1] or 0) < (b[1] or 0) else (b, a)
            first_new_ack = era_info[new]["min_e"]
            if first_new_ack < era_info[old]["max_s"]:
                bad = [w for w in eras[old] if w["s"] > first_new_ack]
                two_w.append({"old": list(old), "new": list(new), "from": first_new_ack,
                              "to": max(w["e"] for w in bad), "old_writes_after": len(bad),
                              "first_offending": min(bad, key=lambda w: w["s"]),
                              "fault": _fault_at(faults, first_new_ack)})
    verdict["eras"] = [{"node": k[0], "timeline": k[1], "acks": v["n"], "from": v["first_s"], "to": v["last_e"]}
                       for k, v in sorted(era_info.items(), key=lambda kv: kv[1]["first_s"])]
    verdict["two_primary_writes"] = two_w
    verdict["timeline_forks"] = forks

    # ------------------------------------------------------------------ two primaries: /primary
    runs = []
    by_node = defaultdict(list)
    for p in polls:
        by_node[p["n"]].append(p)
    for n, ps in by_node.items():
        ps.sort(key=lambda p: p["s"])
        cur = None
        for p in ps:
            if p["c"] == 200:
                if cur is None:
                    cur = {"n": n, "first_s": p["s"], "first_e": p["e"], "last_s": p["s"], "last_e": p["e"], "polls": 1}
                else:
                    cur.update(last_s=p["s"], last_e=p["e"], polls=cur["polls"] + 1)
            elif cur is not None:
                runs.append(cur)
                cur = None
        if cur is not None:
            runs.append(cur)
    runs.sort(key=lambda r: r["first_s"])
    two_p = []
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            if b["first_s"] > a["last_e"]:
                break
            if a["n"] != b["n"] and a["first_e"] < b["last_s"] and b["first_e"] < a["last_s"]:
                t = max(a["first_s"], b["first_s"])
                two_p.append({"nodes": [a["n"], b["n"]], "runs": [a, b],
                              "from": t, "to": min(a["last_e"], b["last_e"]), "fault": _fault_at(faults, t)})
    verdict["primary_runs"] = len(runs)
    verdict["two_primary_rest"] = two_p

    # ------------------------------------------------------------------ timing proofs
    timing = []
    for ev in events:
        if ev.get("k") != "timing":
            continue
        L, cut, heal = ev["leader"], ev["cut"], ev["heal"]
        item = {"id": ev["id"], "nemesis": ev["nemesis"], "leader": L, "cut": cut, "heal": heal,
                "renewal_lb": ev.get("renewal_lb"), "ttl": ttl}
        acks = [w["e"] for w in acked.values() if w["n"] == L and w["e"] >= cut and w["s"] < heal]
        p200 = [p["e"] for p in polls if p["n"] == L and p["c"] == 200 and p["e"] >= cut and p["s"] < heal]
        item["last_ack"] = max(acks) if acks else None
        item["last_200"] = max(p200) if p200 else None
        item["acks_after_cut"] = len(acks)
        if ev.get("renewal_lb") is None:
            item["ok"] = None
            item["why"] = "no renewal observed before the cut: deadline unknown"
        else:
            deadline = ev["renewal_lb"] + ttl
            latest = cut + ttl + CUT_SLACK
            item["deadline"] = deadline
            item["deadline_latest"] = latest
            item["margin_ack"] = None if item["last_ack"] is None else round(deadline - item["last_ack"], 3)
            item["margin_200"] = None if item["last_200"] is None else round(deadline - item["last_200"], 3)
            item["ok"] = all(m is None or m > 0 for m in (item["margin_ack"], item["margin_200"]))
            # past the deadline but not past cut + ttl: a renewal the TTL polls could not show (the
            # remaining TTL is reported in whole seconds) may have happened between renewal_lb and the cut
            item["definite"] = not item["ok"] and any(
                x is not None and x > latest for x in (item["last_ack"], item["last_200"]))
        timing.append(item)
    verdict["timing"] = timing
    verdict["timing_violations"] = sum(1 for t in timing if t["ok"] is False and t.get("definite"))
    verdict["timing_marginal"] = sum(1 for t in timing if t["ok"] is False and not t.get("definite"))
    verdict["timing_unmeasured"] = sum(1 for t in timing if t["ok"] is None)

    verdict["heal_failures"] = [ev for ev in events if ev.get("k") == "heal_failed"]
    verdict["notes"] = [ev for ev in events if ev.get("k") == "note"]

    clock = next((ev.get("clock") for ev in events if ev.get("k") == "config" and ev.get("clock")), None)
    if clock:
        off = clock["wall"] - clock["mono"]
        for k in ("two_primary_writes", "two_primary_rest", "timing", "lost_values", "lost_async_values"):
            _add_wall(verdict.get(k), off)

    problems = []
    if verdict["lost"] is None:
        problems.append("no final read")
    else:
        if verdict["lost"]:
            problems.append(f"{verdict['lost']} acknowledged writes lost")
        if fail_on_async_loss and verdict["lost_async"]:
            problems.append(f"{verdict['lost_async']} asynchronously acknowledged writes lost")
        if verdict["unexpected"]:
            problems.append(f"{verdict['unexpected']} unexpected values")
        if verdict["divergent"]:
            problems.append(f"divergent nodes: {verdict['divergent']}")
    if two_w:
        problems.append(f"{len(two_w)} two-primary intervals (acknowledged writes)")
    if two_p:
        problems.append(f"{len(two_p)} two-primary intervals (/primary 200)")
    if verdict["timing_violations"]:
        problems.append(f"{verdict['timing_violations']} timing-proof violations")
    if verdict["heal_failures"]:
        problems.append(f"{len(verdict['heal_failures'])} heal failures")
    verdict["problems"] = problems
    verdict["ok"] = not problems
    return verdict


def check_dir(run_dir, ttl=None, fail_on_async_loss=False):
    history = load_jsonl(os.path.join(run_dir, "history.jsonl"))
    events = load_jsonl(os.path.join(run_dir, "events.jsonl"))
    with open(os.path.join(run_dir, "final.json")) as f:
        final = json.load(f)
    if ttl is None:
        ttl = next((ev["ttl"] for ev in events if ev.get("k") == "config"), 10)
    return check(history, events, final, ttl, fail_on_async_loss)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="directory with history.jsonl, events.jsonl, final.json")
    ap.add_argument("--ttl", type=float)
    ap.add_argument("--fail-on-async-loss", action="store_true")
    ap.add_argument("--report")
    args = ap.parse_args()
    v = check_dir(args.run_dir, args.ttl, args.fail_on_async_loss)
    text = json.dumps(v, indent=2, sort_keys=True)
    if args.report:
        with open(args.report, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0 if v["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
