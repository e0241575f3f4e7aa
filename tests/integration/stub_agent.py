#!/usr/bin/python3
"""A stand-in for the pgha binary, used only to test the harness's PghaNode wrapper.

It is NOT an HA agent. Given a patroni.yml it: initdb's the data dir if empty, starts postgres as its
own child in a new session (as pgha does) or adopts one that is already running on the data dir,
answers GET /health on restapi.listen, logs "stub-agent: SIGHUP" on SIGHUP, and on SIGTERM stops
PostgreSQL (unless STUB_LEAVE_PG=1) and exits 0.
Runs as the postgres user (the wrapper starts it through setpriv).
"""

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time

import yaml


def log(msg):
    print(f"stub-agent: {msg}", flush=True)


def running_postmaster(data):
    try:
        with open(os.path.join(data, "postmaster.pid")) as f:
            pid = int(f.readline())
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return pid if state not in ("Z", "X") else None
    except (OSError, ValueError, IndexError):
        return None


def main():
    with open(sys.argv[-1]) as f:
        cfg = yaml.safe_load(f)
    pg = cfg["postgresql"]
    bindir, data = pg["bin_dir"], pg["data_dir"]
    host, port = pg["listen"].rsplit(":", 1)
    sockdir = pg["parameters"]["unix_socket_directories"]
    node_dir = os.path.dirname(data)
    if not os.path.exists(os.path.join(data, "PG_VERSION")):
        subprocess.run([os.path.join(bindir, "initdb"), "-D", data, "--locale=C.UTF-8", "-E", "UTF8", "-A", "trust",
                        "-U", "postgres", "--no-sync"], check=True, stdout=subprocess.DEVNULL)
        log("initdb done")
    pm = running_postmaster(data)
    if pm:
        log(f"adopting running postmaster {pm}")
    else:
        # Like the real agent: postgres is our direct child, in a session of its own.
        with open(os.path.join(node_dir, "stub-postgres.log"), "ab") as pglog:
            child = subprocess.Popen([os.path.join(bindir, "postgres"), "-D", data, "-p", port, "-k", sockdir,
                                      "-c", f"listen_addresses={host}"], stdin=subprocess.DEVNULL, stdout=pglog,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(600):
            if subprocess.run([os.path.join(bindir, "pg_isready"), "-q", "-h", host, "-p", port]).returncode == 0:
                break
            if child.poll() is not None:
                log(f"postgres exited with {child.returncode}")
                return 1
            time.sleep(0.1)
        log(f"postgres started, pid {child.pid}")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body, code = (json.dumps({"state": "running", "stub": True}).encode(), 200) if self.path == "/health" \
                else (b"{}", 404)
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            log("rest " + fmt % args)

    rhost, rport = cfg["restapi"]["listen"].rsplit(":", 1)
    server = http.server.ThreadingHTTPServer((rhost, int(rport)), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log(f"rest api on {rhost}:{rport}")

    stop = threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: log("SIGHUP"))
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.2):
        pass
    if os.environ.get("STUB_LEAVE_PG") == "1":
        log("SIGTERM: leaving postgres running")
    else:
        log("SIGTERM: stopping postgres")
        subprocess.run([os.path.join(bindir, "pg_ctl"), "stop", "-w", "-m", "fast", "-D", data], check=False,
                       stdout=subprocess.DEVNULL)
    log("exit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
