#!/usr/bin/python3
"""The demo cluster behind scripts/demo.sh: 3 etcd members and 3 pgha nodes on 127.0.0.1, in
/var/tmp/pgha-demo. The processes run detached (their own sessions), their PIDs are kept in
state.json so that `stop` ends exactly them."""

import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.environ.get("PGHA_DEMO_DIR", "/var/tmp/pgha-demo")
STATE = os.path.join(DEMO, "state.json")
BUILD = os.environ.get("PGHA_BUILD_DIR", os.path.join(ROOT, "build"))
PGHA = os.path.join(BUILD, "src", "pgha")
CTL = os.path.join(BUILD, "src", "pgha-ctl")
SCOPE = "demo"
ETCD_CLIENT = [32379, 32381, 32383]
ETCD_PEER = [32380, 32382, 32384]
PG_PORTS = [35432, 35433, 35434]
REST_PORTS = [38008, 38009, 38010]


def pg_bindir():
    base = "/usr/lib/postgresql"
    versions = sorted((int(v) for v in os.listdir(base) if v.isdigit()), reverse=True)
    for v in versions:
        if os.access(f"{base}/{v}/bin/postgres", os.X_OK):
            return f"{base}/{v}/bin"
    sys.exit("demo: no PostgreSQL server found under /usr/lib/postgresql")


def port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def spawn(args, log, user=None):
    if user:
        args = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"] + args
    with open(log, "ab") as out:
        p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, cwd=DEMO)
    return p.pid


def node_config(i, bindir):
    name = f"node{i + 1}"
    d = os.path.join(DEMO, name)
    hosts = ",".join(f"127.0.0.1:{p}" for p in ETCD_CLIENT)
    return name, d, f"""scope: {SCOPE}
name: {name}
namespace: /service/
restapi:
  listen: 127.0.0.1:{REST_PORTS[i]}
  connect_address: 127.0.0.1:{REST_PORTS[i]}
etcd3:
  hosts: {hosts}
bootstrap:
  dcs:
    ttl: 30
    loop_wait: 10
    retry_timeout: 10
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: on
        wal_log_hints: on
        max_connections: 100
        wal_keep_size: 128MB
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
    - data-checksums
  pg_hba:
    - host all all 127.0.0.1/32 scram-sha-256
    - host replication replicator 127.0.0.1/32 scram-sha-256
postgresql:
  listen: 127.0.0.1:{PG_PORTS[i]}
  connect_address: 127.0.0.1:{PG_PORTS[i]}
  data_dir: {d}/data
  bin_dir: {bindir}
  pgpass: {d}/pgpass
  authentication:
    superuser:
      username: postgres
      password: demo-superuser
    replication:
      username: replicator
      password: demo-replicator
  parameters:
    unix_socket_directories: {d}
tags:
  nofailover: false
log:
  level: INFO
"""


def load_state():
    try:
        with open(STATE) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def running(state):
    return state and any(alive(p) for p in state.get("etcd", []) + state.get("pgha", []))


def rest(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, json.loads(r.read() or b"null")
    except Exception:  # noqa: BLE001
        return None, None


def status():
    cfg = os.path.join(DEMO, "node1", "pgha.yml")
    r = subprocess.run([CTL, "-c", cfg, "list"], capture_output=True, text=True)
    sys.stdout.write(r.stdout or r.stderr)


def up():
    state = load_state()
    if running(state):
        print(f"The demo cluster is already running ({DEMO}).")
        status()
        return
    for p in ETCD_CLIENT + ETCD_PEER + PG_PORTS + REST_PORTS:
        if not port_free(p):
            sys.exit(f"demo: port {p} on 127.0.0.1 is in use; stop what uses it or run `scripts/demo.sh stop`")
    if not os.access(PGHA, os.X_OK):
        sys.exit(f"demo: {PGHA} is not built")
    subprocess.run(["rm", "-rf", DEMO], check=True)
    os.makedirs(DEMO, mode=0o755)
    pw = pwd.getpwnam("postgres")
    state = {"etcd": [], "pgha": []}
    cluster = ",".join(f"e{i}=http://127.0.0.1:{ETCD_PEER[i]}" for i in range(3))
    token = f"pgha-demo-{os.getpid()}-{int(time.time())}"
    for i in range(3):
        args = ["etcd", "--name", f"e{i}", "--data-dir", os.path.join(DEMO, f"etcd{i}"),
                "--listen-client-urls", f"http://127.0.0.1:{ETCD_CLIENT[i]}",
                "--advertise-client-urls", f"http://127.0.0.1:{ETCD_CLIENT[i]}",
                "--listen-peer-urls", f"http://127.0.0.1:{ETCD_PEER[i]}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{ETCD_PEER[i]}",
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", token]
        state["etcd"].append(spawn(args, os.path.join(DEMO, f"etcd{i}.log")))
    with open(STATE, "w") as f:
        json.dump(state, f)
    bindir = pg_bindir()
    for i in range(3):
        name, d, text = node_config(i, bindir)
        os.makedirs(d, mode=0o700)
        os.chown(d, pw.pw_uid, pw.pw_gid)
        path = os.path.join(d, "pgha.yml")
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)
        os.chown(path, pw.pw_uid, pw.pw_gid)
        state["pgha"].append(spawn([PGHA, path], os.path.join(d, "pgha.log"), user="postgres"))
        with open(STATE, "w") as f:
            json.dump(state, f)
        if i == 0:
            time.sleep(2)  # let node1 win the bootstrap race, so the demo is predictable
    print(f"Starting: etcd x3 and pgha x3 in {DEMO} (logs: {DEMO}/node*/pgha.log)")
    deadline = time.time() + 180
    while time.time() < deadline:
        code, cl = rest(REST_PORTS[0], "/cluster")
        if cl and len(cl.get("members", [])) == 3 and \
                sum(1 for m in cl["members"] if m.get("role") == "leader") == 1 and \
                sum(1 for m in cl["members"] if m.get("state") == "streaming") == 2:
            break
        time.sleep(1)
    else:
        print("demo: the cluster did not become healthy within 3 minutes; see the logs", file=sys.stderr)
    status()
    print(f"""
Connect:   psql "host=127.0.0.1 port={PG_PORTS[0]} user=postgres password=demo-superuser"   (ports {', '.join(map(str, PG_PORTS))})
REST API:  curl -s http://127.0.0.1:{REST_PORTS[0]}/cluster
Cluster:   {CTL} -c {DEMO}/node1/pgha.yml list
Stop it:   sudo scripts/demo.sh stop""")


def stop():
    state = load_state()
    if not state:
        print("The demo cluster is not running.")
        subprocess.run(["rm", "-rf", DEMO])
        return
    # agents first (they stop their PostgreSQL), then etcd
    for group in ("pgha", "etcd"):
        pids = [p for p in state.get(group, []) if alive(p)]
        for p in pids:
            os.kill(p, signal.SIGTERM)
        deadline = time.time() + 60
        while time.time() < deadline and any(alive(p) for p in pids):
            time.sleep(0.2)
        for p in pids:
            if alive(p):
                os.kill(p, signal.SIGKILL)
    # a postmaster left behind by a killed agent
    for i in range(3):
        pidfile = os.path.join(DEMO, f"node{i + 1}", "data", "postmaster.pid")
        try:
            with open(pidfile) as f:
                pm = int(f.readline())
            if alive(pm):
                os.kill(pm, signal.SIGQUIT)
        except (OSError, ValueError):
            pass
    subprocess.run(["rm", "-rf", DEMO])
    print("The demo cluster is stopped and removed.")


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else "up"
    if os.geteuid() != 0:
        sys.exit("demo: run as root (PostgreSQL runs as the postgres user)")
    {"up": up, "stop": stop, "status": status}.get(cmd, lambda: sys.exit(f"usage: demo.sh [up|status|stop]"))()


if __name__ == "__main__":
    main()
