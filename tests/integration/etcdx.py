"""Extras for the DCS tests (test_dcs.py) on top of pghatest: a single etcd member with TLS and/or extra
flags, a test CA (openssl), etcdctl, patroni.yml-format configs for dcs-tool, and dcs-tool runners.

Everything runs on 127.0.0.1. Every process is started in its own session through setpriv
--pdeathsig=KILL and entered in pghatest's PID registry, so the harness safety net kills it if a test
(or pytest) dies; tests stop what they started by PID.
"""

import json
import os
import shlex
import signal
import subprocess
import threading
import time

import pghatest as h
from pghatest import proc as hproc

ETCD_BIN = os.environ.get("PGHATEST_ETCD", "/usr/bin/etcd")
ETCDCTL_BIN = os.environ.get("PGHATEST_ETCDCTL", "/usr/bin/etcdctl")
OPENSSL = "/usr/bin/openssl"


def dcs_tool_path():
    return os.path.join(h.build_dir(), "tests", "dcs-tool")


def pgha_ctl_path():
    return os.path.join(h.build_dir(), "src", "pgha-ctl")


# ----------------------------------------------------------------------------------------------- configs


def write_dcs_config(path, name, scope, hosts, etcd3=None, pg_port=5432, rest_port=8008, namespace="/service/"):
    """A patroni.yml-format config for dcs-tool/pgha-ctl: scope, namespace, name and the etcd3 section
    (hosts plus whatever `etcd3` adds: protocol, cacert, cert, key, username, password), and the
    postgresql/restapi sections the config loader requires (dcs-tool publishes them in its member key)."""
    e = {"hosts": list(hosts)}
    e.update(etcd3 or {})
    cfg = {
        "scope": scope,
        "namespace": namespace,
        "name": name,
        "etcd3": e,
        "restapi": {"listen": f"127.0.0.1:{rest_port}", "connect_address": f"127.0.0.1:{rest_port}"},
        "postgresql": {
            "listen": f"127.0.0.1:{pg_port}",
            "connect_address": f"127.0.0.1:{pg_port}",
            "data_dir": os.path.join(os.path.dirname(os.path.abspath(path)), f"{name}-data"),
            "authentication": {
                "superuser": {"username": "postgres", "password": "unused"},
                "replication": {"username": "replicator", "password": "unused"},
            },
        },
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(h.dump_yaml(cfg))
    return path


# ----------------------------------------------------------------------------------------------- dcs-tool


def json_lines(text):
    """The JSON objects among the lines of text (log lines and other noise are skipped)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


class ToolRun:
    """The result of a finished command: rc, output (stdout+stderr), JSON lines, wall time (s)."""

    def __init__(self, args, rc, output, seconds):
        self.args, self.rc, self.output, self.seconds = args, rc, output, seconds
        self.objects = json_lines(output)

    def __repr__(self):
        return f"<ToolRun rc={self.rc} {self.seconds:.2f}s {shlex.join(self.args)}\n{self.output}>"


def run_cmd(args, timeout=60, env=None):
    """Run a command to completion (own session, registered for the safety net); stdout+stderr merged.
    env: extra environment variables."""
    t0 = time.monotonic()
    cp = h.run_as(list(args), user=None, timeout=timeout, check=False, env=env)
    return ToolRun([str(a) for a in args], cp.returncode, cp.stdout, time.monotonic() - t0)


def dcs_tool(config, *cmd, ttl=None, loop_wait=None, retry_timeout=None, timeout=60, env=None):
    """Run dcs-tool to completion (DCS_TOOL_DEBUG=1 in env turns on its debug log on stderr)."""
    return run_cmd(tool_args(config, *cmd, ttl=ttl, loop_wait=loop_wait, retry_timeout=retry_timeout), timeout,
                   env)


def tool_args(config, *cmd, ttl=None, loop_wait=None, retry_timeout=None):
    args = [dcs_tool_path()]
    for opt, v in (("--ttl", ttl), ("--loop-wait", loop_wait), ("--retry-timeout", retry_timeout)):
        if v is not None:
            args += [opt, str(v)]
    return args + [str(config)] + [str(c) for c in cmd]


class BgProcess:
    """A long-running command whose stdout lines are collected with their arrival time (time.time()).

    Started in its own session with --pdeathsig=KILL, registered with the harness; stderr goes to
    `log_path` (registered, so it is shown when a test fails). With `stopped=True` the command is started
    frozen (a shell stops itself, then execs it on SIGCONT: the PID stays the same), so that several can
    be released at the same moment with cont()."""

    def __init__(self, args, log_path, label=None, stopped=False):
        self.args = [str(a) for a in args]
        self.log_path = log_path
        self.label = label or os.path.basename(self.args[0])
        self.lines = []  # (time.time(), str)
        self._lock = threading.Lock()
        cmd = ["setpriv", "--pdeathsig=KILL", "--"] + self.args
        if stopped:
            cmd = ["/bin/sh", "-c", 'kill -STOP $$; exec "$@"', "sh"] + cmd
        self._err = open(log_path, "ab")
        self.popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._err,
                                      env=hproc.child_env(), start_new_session=True, close_fds=True)
        self.pid = self.popen.pid
        with hproc._popen_lock:
            hproc._popen_pids.add(self.pid)
        hproc.register_pid(self.pid, self.label, self.pid)
        h.register_log(log_path, self.label)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.popen.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self.lines.append((time.time(), line))

    def wait_stopped(self, timeout=5):
        """Wait until the (stopped=True) process has stopped itself."""
        h.wait_until(lambda: (h.proc_stat(self.pid) or {}).get("state") == "T", timeout, interval=0.01,
                     msg=f"{self.label} to stop itself")

    def cont(self):
        os.kill(self.pid, signal.SIGCONT)

    def objects(self):
        """[(arrival time, parsed JSON object)] of the lines so far."""
        out = []
        with self._lock:
            lines = list(self.lines)
        for t, line in lines:
            if line.startswith("{"):
                try:
                    out.append((t, json.loads(line)))
                except ValueError:
                    pass
        return out

    def wait_line(self, predicate, timeout, msg=None):
        """Wait for a parsed line for which predicate(obj) is true; returns (time, obj)."""
        def find():
            for t, o in self.objects():
                if predicate(o):
                    return (t, o)
            return None
        return h.wait_until(find, timeout, interval=0.02, msg=msg or f"a matching line from {self.label}")

    def is_running(self):
        return self.popen.poll() is None

    def wait(self, timeout):
        rc = self.popen.wait(timeout)
        self._reader.join(5)
        self._forget()
        return rc

    def kill(self, sig=signal.SIGKILL):
        """Send sig to the process (by its PID, only while it is still our unreaped child)."""
        if self.popen.poll() is None:
            os.kill(self.pid, sig)

    def stop(self, timeout=10):
        """SIGTERM (SIGCONT first, in case it is stopped), wait; SIGKILL if it does not exit. Returns rc."""
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                os.kill(self.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(10)
        self._reader.join(5)
        self._forget()
        return self.popen.returncode

    def _forget(self):
        hproc.unregister_pid(self.pid)
        with hproc._popen_lock:
            hproc._popen_pids.discard(self.pid)
        if not self._err.closed:
            self._err.close()


def tcp_peers(pid):
    """Remote ports of the established TCP connections of process pid (from `ss -tnp`)."""
    out = subprocess.run(["ss", "-Htnp", "state", "established"], capture_output=True, text=True, check=True).stdout
    ports = []
    for line in out.splitlines():
        if f"pid={pid}," not in line:
            continue
        cols = line.split()
        # Recv-Q Send-Q Local:Port Peer:Port Process
        peer = cols[3]
        ports.append(int(peer.rsplit(":", 1)[1]))
    return ports


# ----------------------------------------------------------------------------------------------- TLS


def _openssl(*args, cwd):
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True)


def make_test_pki(directory):
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all signed by the CA;
    plus a second, unrelated CA (for negative tests). Returns a dict of paths."""
    os.makedirs(directory, exist_ok=True)
    d = directory
    p = {k: os.path.join(d, v) for k, v in {
        "ca": "ca.crt", "ca_key": "ca.key", "server": "server.crt", "server_key": "server.key",
        "client": "client.crt", "client_key": "client.key", "other_ca": "other-ca.crt",
        "other_ca_key": "other-ca.key"}.items()}
    for ca, key, cn in (("ca", "ca_key", "pghatest CA"), ("other_ca", "other_ca_key", "unrelated CA")):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={cn}",
                 "-keyout", p[key], "-out", p[ca], cwd=d)
    # clientAuth too: etcd 3.4's JSON gateway connects to its own gRPC port with the server certificate;
    # with --client-cert-auth and a serverAuth-only certificate every gateway call fails with
    # "use of closed network connection" (gRPC code 14) while etcdctl (plain gRPC) works
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
                "keyUsage=digitalSignature,keyEncipherment\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n")
    for who, cn in (("server", "127.0.0.1"), ("client", "pgha-test-client")):
        csr = os.path.join(d, f"{who}.csr")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", p[f"{who}_key"],
                 "-out", csr, cwd=d)
        _openssl("x509", "-req", "-in", csr, "-CA", p["ca"], "-CAkey", p["ca_key"], "-CAcreateserial",
                 "-days", "2", "-extfile", os.path.join(d, f"{who}.ext"), "-out", p[who], cwd=d)
    for k in ("ca_key", "server_key", "client_key", "other_ca_key"):
        os.chmod(p[k], 0o600)
    return p


# ----------------------------------------------------------------------------------------------- etcd


class SingleEtcd:
    """One etcd member on 127.0.0.1 with its own ports and data dir under basedir.

    tls: a dict from make_test_pki() -> https client URL with --client-cert-auth (clients need a
    certificate signed by the CA). extra_args: more etcd flags (e.g. --auth-token-ttl)."""

    def __init__(self, basedir, tls=None, extra_args=(), name="x0"):
        self.dir = os.path.join(basedir, f"etcd-{name}")
        os.makedirs(self.dir, exist_ok=True)
        self.name = name
        self.tls = tls
        self.client_port, self.peer_port = h.allocate_ports(2)
        self.scheme = "https" if tls else "http"
        self.log_path = os.path.join(self.dir, "etcd.log")
        args = [
            ETCD_BIN, "--name", name, "--data-dir", os.path.join(self.dir, "data"),
            "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", f"http://127.0.0.1:{self.peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_port}",
            "--initial-cluster", f"{name}=http://127.0.0.1:{self.peer_port}",
            "--initial-cluster-state", "new",
            "--initial-cluster-token", f"etcdx-{os.getpid()}-{self.client_port}",
            "--logger", "zap", "--log-outputs", "stderr",
        ]
        if tls:
            args += ["--cert-file", tls["server"], "--key-file", tls["server_key"], "--client-cert-auth",
                     "--trusted-ca-file", tls["ca"]]
        args += list(extra_args)
        self.proc = h.Proc(args, self.log_path, label=f"etcd {name} (etcdx)")
        try:
            self.proc.start()
            h.wait_until(self._healthy, 30, interval=0.1, msg=f"etcd {self.client_url} to be healthy")
        except BaseException:
            self.destroy()
            raise

    @property
    def client_url(self):
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def endpoint(self):
        return f"127.0.0.1:{self.client_port}"

    def _healthy(self):
        if not self.proc.is_running():
            raise AssertionError(f"etcd exited: {h.tail_file(self.log_path, 30)}")
        r = self.etcdctl("endpoint", "health", check=False)
        return r.returncode == 0

    def etcdctl(self, *args, user=None, check=True, timeout=30):
        """Run etcdctl against this member (with the CA and client certificate when TLS is on)."""
        cmd = [ETCDCTL_BIN, "--endpoints", self.client_url, "--dial-timeout", "2s", "--command-timeout", "5s"]
        if self.tls:
            cmd += ["--cacert", self.tls["ca"], "--cert", self.tls["client"], "--key", self.tls["client_key"]]
        if user:
            cmd += ["--user", user]
        cmd += [str(a) for a in args]
        env = dict(hproc.child_env(), ETCDCTL_API="3")
        cp = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        if check and cp.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)} failed ({cp.returncode}): {cp.stdout}{cp.stderr}")
        return cp

    def destroy(self):
        if self.proc is not None:
            self.proc.stop(signal.SIGTERM, timeout=10)
        h.release_ports(self.client_port, self.peer_port)
