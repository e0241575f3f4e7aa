#!/usr/bin/python3
"""Summary of bench/dcs/run.sh: per-node etcd load of a steady 3-node cluster, compared with Patroni.

Input: the one-line JSON statistics each `dcs-tool steady` prints, and the etcd members' /metrics
before and after the run (concatenated, all members)."""

import argparse
import json
import re
import sys


def load_stats(path):
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{") and '"requests"' in line:
                return json.loads(line)
    raise SystemExit(f"{path}: no statistics line")


METRIC = re.compile(r'^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$')


def load_metrics(path):
    """{(name, method): summed value} over every member for the metrics we use."""
    out = {}
    with open(path) as f:
        for line in f:
            m = METRIC.match(line.strip())
            if not m:
                continue
            name = m["name"]
            if name not in ("grpc_server_started_total", "etcd_network_client_grpc_received_bytes_total",
                            "etcd_network_client_grpc_sent_bytes_total"):
                continue
            method = ""
            if m["labels"]:
                lm = re.search(r'grpc_method="([^"]+)"', m["labels"])
                method = lm.group(1) if lm else ""
            out[(name, method)] = out.get((name, method), 0.0) + float(m["value"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ttl", type=int, required=True)
    ap.add_argument("--loop-wait", type=int, required=True)
    ap.add_argument("--retry-timeout", type=int, required=True)
    ap.add_argument("--metrics-before")
    ap.add_argument("--metrics-after")
    ap.add_argument("--window-before")
    ap.add_argument("--window-after")
    ap.add_argument("--window-seconds", type=float)
    ap.add_argument("stats", nargs="+")
    a = ap.parse_args()

    nodes = [load_stats(p) for p in a.stats]
    lw = a.loop_wait
    print(f"Steady 3-node cluster, ttl {a.ttl}, loop_wait {lw}, retry_timeout {a.retry_timeout}; per node, "
          f"measured by the client (request and response bodies, watch stream included):")
    print()
    hdr = f"{'node':<6} {'role':<8} {'seconds':>7} {'loops':>5} {'requests':>8} {'req/s':>7} {'req/loop':>8} " \
          f"{'sent B':>8} {'recv B':>8} {'bytes/s':>8} {'B/loop':>7}"
    print(hdr)
    print("-" * len(hdr))
    tot_req = tot_bytes = tot_secs = 0.0
    for i, n in enumerate(nodes):
        b = n["bytes_sent"] + n["bytes_received"]
        loops = max(1, n["loops"])
        print(f"node{i:<2} {n['role']:<8} {n['seconds']:>7.1f} {n['loops']:>5} {n['requests']:>8} "
              f"{n['requests_per_s']:>7.3f} {n['requests_per_loop']:>8.2f} {n['bytes_sent']:>8} "
              f"{n['bytes_received']:>8} {n['bytes_per_s']:>8.1f} {b / loops:>7.0f}")
        tot_req += n["requests"]
        tot_bytes += b
        tot_secs = max(tot_secs, n["seconds"])
    print()
    patroni = 2.0
    print(f"Patroni's steady load per node: one lease keepalive + one member-key update per loop_wait = "
          f"{patroni:.0f} requests per loop = {patroni / lw:.3f} req/s at loop_wait {lw}")
    print("  (Patroni 4.0's leader also rewrites /status each loop while the WAL position moves: 3 per loop;")
    print("   and the leader's keepalive is forced by update_leader, the replicas' at most once per loop_wait.)")
    for i, n in enumerate(nodes):
        ratio = n["requests_per_loop"] / patroni
        print(f"  node{i} ({n['role']}): {n['requests_per_loop']:.2f} requests per loop = {ratio:.2f} x Patroni's 2")

    if a.metrics_before and a.metrics_after:
        before, after = load_metrics(a.metrics_before), load_metrics(a.metrics_after)
        delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
        calls = {m: v for (name, m), v in delta.items() if name == "grpc_server_started_total" and v > 0}
        unary = sum(v for m, v in calls.items() if m != "Watch")
        grpc_bytes = sum(v for (name, _), v in delta.items() if name.startswith("etcd_network_client_grpc"))
        print()
        print(f"Server side (etcd /metrics, all members, the whole run): {int(unary)} gRPC calls "
              f"other than watches ({', '.join(f'{m} {int(v)}' for m, v in sorted(calls.items()))});")
        print(f"  per node {unary / len(nodes) / tot_secs:.3f} calls/s, gRPC bytes per node "
              f"{grpc_bytes / len(nodes) / tot_secs:.1f} B/s (the JSON gateway's internal gRPC traffic)")
    if a.window_before and a.window_after and a.window_seconds:
        before, after = load_metrics(a.window_before), load_metrics(a.window_after)
        delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
        calls = {m: v for (name, m), v in delta.items()
                 if name == "grpc_server_started_total" and v > 0 and m != "Watch"}
        total = sum(calls.values())
        grpc_bytes = sum(v for (name, _), v in delta.items() if name.startswith("etcd_network_client_grpc"))
        secs, n = a.window_seconds, len(nodes)
        per_s = total / n / secs
        print()
        print(f"Steady state only (etcd /metrics over {secs:.1f} s from 1.5 loops after the start to half a loop "
              f"before the end, no start-up or shut-down requests), per node:")
        print(f"  {per_s:.3f} requests/s = {per_s * lw:.2f} per loop ("
              + ", ".join(f"{m} {v / n / secs * lw:.2f}" for m, v in sorted(calls.items())) + " per loop); "
              f"{grpc_bytes / n / secs:.1f} B/s of gRPC behind the JSON gateway")
        print(f"  Patroni: {patroni:.2f} per loop ({patroni / lw:.3f} requests/s)")
    print()
    print(f"All nodes, whole run: {tot_req / tot_secs:.3f} req/s, {tot_bytes / tot_secs:.1f} B/s in total")


if __name__ == "__main__":
    sys.exit(main())
