#!/usr/bin/python3
"""The chaos workload: runs in the client namespace, writes a history (JSON lines) until SIGTERM.

Per node, two threads:
  * a writer that appends integers through that node: one shared counter hands out increasing values,
    each value is sent once, to one node, on a persistent connection (autocommit, short timeouts).
    Only a primary accepts it, so "the client writes through whichever node answers as primary" and at
    the same time every node is probed for writability all the time (two nodes that accept writes at
    once are seen as such, not hidden behind one client's choice of node);
  * a poller that asks GET /primary every ~100 ms.

History records (times: CLOCK_MONOTONIC seconds, shared by every process on the machine, so they
compare with the runner's event log):
  {"k":"w","n":node,"v":value,"s":send,"e":end,"r":result,"tl":timeline,"x":error}
     r = "ack"   committed and acknowledged (no warning)
         "warn"  returned with a warning (e.g. "canceling wait for synchronous replication": committed
                 locally, maybe not replicated): not an acknowledgement, the value may or may not survive
         "fail"  definitely not committed (read-only transaction: SQLSTATE 25006)
         "info"  indeterminate (connection lost, timeout, any other error during the statement)
     tl = the timeline the primary wrote the row on (from pg_walfile_name(pg_current_wal_lsn())).
  {"k":"p","n":node,"s":send,"e":end,"c":status}   c = HTTP status, or -1 for no answer
"""

import argparse
import itertools
import json
import signal
import sys
import threading
import time

import psycopg2
import requests

stop = threading.Event()
out_lock = threading.Lock()
counter_lock = threading.Lock()
counter = itertools.count(1)
out = None

INSERT = ("INSERT INTO chaos (v, node) VALUES (%s, %s) "
          "RETURNING substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)")


def emit(rec):
    line = json.dumps(rec, separators=(",", ":")) + "\n"
    with out_lock:
        out.write(line)
        out.flush()


def next_value():
    with counter_lock:
        return next(counter)


def writer(name, host, port, password, interval):
    conn = None
    while not stop.is_set():
        if conn is None:
            try:
                conn = psycopg2.connect(host=host, port=port, user="postgres", password=password, dbname="postgres",
                                        connect_timeout=2, tcp_user_timeout=3000, keepalives=1,
                                        keepalives_idle=2, keepalives_interval=1, keepalives_count=2,
                                        options="-c statement_timeout=3000", application_name="chaos-workload")
                conn.autocommit = True
            except psycopg2.Error:
                conn = None
                stop.wait(0.2)
                continue
        v = next_value()
        del conn.notices[:]
        s = time.monotonic()
        rec = {"k": "w", "n": name, "v": v, "s": s}
        try:
            with conn.cursor() as cur:
                cur.execute(INSERT, (v, name))
                tl = cur.fetchone()[0]
            rec["e"] = time.monotonic()
            rec["tl"] = int(tl, 16)
            warned = [n for n in conn.notices if "WARNING" in n]
            if warned:
                rec["r"] = "warn"
                rec["x"] = " ".join(w.strip() for w in warned)[:300]
            else:
                rec["r"] = "ack"
        except psycopg2.Error as e:
            rec["e"] = time.monotonic()
            rec["r"] = "fail" if e.pgcode == "25006" else "info"
            rec["x"] = (f"{e.pgcode or ''} {str(e).strip()}")[:300]
            if rec["r"] == "info":
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
                conn = None
        emit(rec)
        stop.wait(interval if rec["r"] == "ack" else 0.1)
    if conn is not None:
        conn.close()


def poller(name, host, port, interval):
    sess = requests.Session()
    sess.trust_env = False
    url = f"http://{host}:{port}/primary"
    while not stop.is_set():
        s = time.monotonic()
        try:
            code = sess.get(url, timeout=(1.0, 1.0)).status_code
        except requests.RequestException:
            code = -1
            sess.close()
            sess = requests.Session()
            sess.trust_env = False
        e = time.monotonic()
        emit({"k": "p", "n": name, "s": s, "e": e, "c": code})
        stop.wait(max(0.0, interval - (e - s)))


def main():
    global out
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", action="append", required=True, help="NAME=ADDRESS")
    ap.add_argument("--pg-port", type=int, default=5432)
    ap.add_argument("--rest-port", type=int, default=8008)
    ap.add_argument("--password", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--write-interval", type=float, default=0.02)
    ap.add_argument("--poll-interval", type=float, default=0.1)
    args = ap.parse_args()
    out = open(args.out, "a")

    def on_signal(signum, frame):
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threads = []
    for spec in args.node:
        name, addr = spec.split("=", 1)
        threads.append(threading.Thread(target=writer, args=(name, addr, args.pg_port, args.password,
                                                             args.write_interval), daemon=True))
        threads.append(threading.Thread(target=poller, args=(name, addr, args.rest_port, args.poll_interval),
                                        daemon=True))
    for t in threads:
        t.start()
    emit({"k": "start", "t": time.monotonic()})
    while not stop.is_set():
        stop.wait(0.5)
    for t in threads:
        t.join(10)
    emit({"k": "stop", "t": time.monotonic()})
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
