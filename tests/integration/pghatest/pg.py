"""A standalone PostgreSQL instance run by the harness as the postgres user (initdb, pg_ctl, SQL)."""

import glob
import os
import re
import shlex
import shutil
import signal
import socket

import psycopg2

from . import ports as _ports
from .proc import descendants, kill_tree, pid_alive, proc_starttime, register_log, register_pid, run_as, \
    unregister_pid, wait_pids_gone
from .rundir import make_dir
from .util import tail_file, wait_until

PG_USER = "postgres"


def find_pg_bindir(version=None):
    """PostgreSQL server bin dir: $PGHATEST_PG_BINDIR, else /usr/lib/postgresql/<version or 15>/bin,
    else the highest /usr/lib/postgresql/*/bin that has pg_ctl. Never /usr/local/bin (another pg_ctl)."""
    env = os.environ.get("PGHATEST_PG_BINDIR")
    if env:
        return env
    want = str(version or 15)
    preferred = f"/usr/lib/postgresql/{want}/bin"
    if os.access(os.path.join(preferred, "pg_ctl"), os.X_OK):
        return preferred
    if version is not None:
        raise FileNotFoundError(f"PostgreSQL {version} binaries not found in {preferred}")
    found = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        m = re.match(r"/usr/lib/postgresql/(\d+)(?:\.(\d+))?/bin$", d)
        if m and os.access(os.path.join(d, "pg_ctl"), os.X_OK):
            found.append(((int(m.group(1)), int(m.group(2) or 0)), d))
    if not found:
        raise FileNotFoundError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    return max(found)[1]


def port_open(port, host="127.0.0.1", timeout=0.5):
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def postmaster_of(data_dir):
    """PID of the live postmaster serving data_dir, or None.

    The PID comes from the first line of postmaster.pid; it only counts if that process is alive and its
    working directory is data_dir (the postmaster chdirs there), so a stale postmaster.pid whose PID was
    reused by another process is never mistaken for a server."""
    pid = read_postmaster_pid(data_dir)
    if pid is None or not pid_alive(pid):
        return None
    try:
        if os.path.realpath(os.readlink(f"/proc/{pid}/cwd")) != os.path.realpath(data_dir):
            return None
    except OSError:
        return None
    return pid


def read_postmaster_pid(data_dir):
    """PID from the first line of data_dir/postmaster.pid (alive or not), or None."""
    try:
        with open(os.path.join(data_dir, "postmaster.pid")) as f:
            first = f.readline().strip()
        return int(first) if first.isdigit() else None
    except (FileNotFoundError, PermissionError, ValueError):
        return None


class PgNode:
    """One PostgreSQL instance under basedir/name, owned by the postgres user.

    PgNode(name, basedir, port=None, ...) only prepares the directory; call initdb() then start().
      port: TCP port on 127.0.0.1 (allocated when None and released by destroy()).
      auth: initdb -A method for local and host connections ("trust" by default; with "md5" or
            "scram-sha-256" a password is required).
      superuser/password: the bootstrap superuser (initdb -U / --pwfile).
      parameters: extra postgresql.conf settings appended after initdb (fsync=off by default: the
            tests kill processes, not the machine, so it loses nothing and saves time on this box).
    Directory: basedir/name (0755, postgres; also the unix socket dir), data/ (0700, postgres),
    postgres.log (server log, pg_ctl -l), pg_ctl.log (output of initdb/pg_ctl).
    """

    DEFAULT_PARAMETERS = {"fsync": "off", "logging_collector": "off", "log_line_prefix": "%m [%p] "}

    def __init__(self, name, basedir, port=None, bindir=None, auth="trust", superuser="postgres", password=None,
                 parameters=None, initdb_args=(), allocator=None):
        self.name = name
        self.dir = os.path.join(os.path.abspath(basedir), name)
        self.data_dir = os.path.join(self.dir, "data")
        self.sock_dir = self.dir
        self.log_path = os.path.join(self.dir, "postgres.log")
        self.ctl_log_path = os.path.join(self.dir, "pg_ctl.log")
        self.bindir = bindir or find_pg_bindir()
        self._alloc = allocator or _ports.default_allocator()
        self._own_port = port is None
        self.port = port if port is not None else self._alloc.allocate_one()
        self.auth = auth
        self.superuser = superuser
        self.password = password
        if auth not in ("trust",) and not password:
            raise ValueError(f"auth={auth!r} needs a password")
        self.parameters = dict(self.DEFAULT_PARAMETERS)
        self.parameters.update(parameters or {})
        self.initdb_args = list(initdb_args)
        self._pm = None  # (pid, starttime) of the postmaster we started
        self._destroyed = False
        make_dir(os.path.dirname(self.dir), mode=0o755)
        make_dir(self.dir, owner=PG_USER, mode=0o755)
        register_log(self.log_path, f"postgres {name}")
        register_log(self.ctl_log_path, f"pg_ctl {name}")

    def __repr__(self):
        return f"<PgNode {self.name} port={self.port} pid={self.postmaster_pid()}>"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.destroy()

    def bin(self, prog):
        return os.path.join(self.bindir, prog)

    def _run(self, args, timeout=120, check=True):
        return run_as(args, user=PG_USER, timeout=timeout, check=check, log_path=self.ctl_log_path)

    # ------------------------------------------------------------------ setup
    def initdb(self):
        """initdb as postgres: --locale=C.UTF-8 -E UTF8 -A <auth> -U <superuser> --no-sync."""
        if os.path.exists(os.path.join(self.data_dir, "PG_VERSION")):
            raise RuntimeError(f"{self.data_dir} is already initialized")
        args = [self.bin("initdb"), "-D", self.data_dir, "--locale=C.UTF-8", "-E", "UTF8", "-A", self.auth,
                "-U", self.superuser, "--no-sync"]
        pwfile = None
        if self.password:
            pwfile = os.path.join(self.dir, ".pwfile")
            fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.password + "\n")
            os.chown(pwfile, *self._pg_ids())
            args.append(f"--pwfile={pwfile}")
        try:
            self._run(args + self.initdb_args)
        finally:
            if pwfile:
                os.unlink(pwfile)
        if self.parameters:
            with open(os.path.join(self.data_dir, "postgresql.conf"), "a") as f:
                f.write("\n# added by pghatest\n")
                for k, v in self.parameters.items():
                    f.write(f"{k} = '{str(v)}'\n")
        os.chmod(self.data_dir, 0o700)
        return self

    @staticmethod
    def _pg_ids():
        import pwd
        pw = pwd.getpwnam(PG_USER)
        return pw.pw_uid, pw.pw_gid

    def server_options(self):
        return f"-p {self.port} -k {shlex.quote(self.sock_dir)} -c listen_addresses=127.0.0.1"

    # ------------------------------------------------------------------ control
    def start(self, timeout=60):
        """pg_ctl -w start (as postgres); records the postmaster PID for cleanup."""
        # A postmaster killed with -9 leaves backends attached to shared memory for a moment; starting
        # before they are gone fails with "pre-existing shared memory block is still in use".
        self.wait_port_closed(timeout=timeout)
        cp = self._run([self.bin("pg_ctl"), "start", "-w", "-t", str(timeout), "-D", self.data_dir,
                        "-l", self.log_path, "-o", self.server_options()], timeout=timeout + 30, check=False)
        if cp.returncode != 0:
            raise RuntimeError(f"pg_ctl start of {self.name} failed (exit {cp.returncode}):\n{cp.stdout}\n"
                               f"--- {self.log_path} (last 40 lines) ---\n{tail_file(self.log_path, 40)}")
        pid = read_postmaster_pid(self.data_dir)
        if pid is None:
            raise RuntimeError(f"{self.name}: pg_ctl reported success but there is no postmaster.pid")
        self._pm = (pid, proc_starttime(pid))
        register_pid(pid, f"postmaster {self.name}")
        return self

    def stop(self, mode="fast", timeout=60):
        """pg_ctl -w -m mode stop; falls back to killing the tree if that fails. Waits for the exit."""
        pid = self.postmaster_pid()
        st = proc_starttime(pid) if pid else None
        if pid is None or st is None:
            self._forget()
            return
        cp = self._run([self.bin("pg_ctl"), "stop", "-w", "-t", str(timeout), "-m", mode, "-D", self.data_dir],
                       timeout=timeout + 30, check=False)
        if cp.returncode != 0 and pid_alive(pid, st):
            kill_tree(pid, st)
        wait_pids_gone([(pid, st)], timeout=timeout, msg=f"postmaster {pid} of {self.name} to exit")
        self._forget()

    def _forget(self):
        if self._pm:
            unregister_pid(self._pm[0])
        self._pm = None

    def restart(self, mode="fast", timeout=60):
        self.stop(mode=mode, timeout=timeout)
        return self.start(timeout=timeout)

    def postmaster_pid(self):
        """PID from the first line of postmaster.pid if that process is alive (and really serves this
        data dir), else None."""
        return postmaster_of(self.data_dir)

    def is_running(self):
        return self.postmaster_pid() is not None

    def kill9_postmaster(self, wait=True, timeout=30):
        """SIGKILL the postmaster only (like a crash). With wait=True, waits until it is gone, its
        backends have exited on their own, and the port is closed. Returns the killed PID."""
        pid = self.postmaster_pid()
        if pid is None:
            raise RuntimeError(f"{self.name}: postmaster is not running")
        st = proc_starttime(pid)
        children = [(c, proc_starttime(c)) for c in descendants(pid)]
        os.kill(pid, signal.SIGKILL)
        if wait:
            wait_pids_gone([(pid, st)] + [c for c in children if c[1] is not None], timeout=timeout,
                           msg=f"postmaster {pid} of {self.name} and its backends to exit after SIGKILL")
            self.wait_port_closed(timeout=timeout)
            self._forget()
        return pid

    def wait_port_closed(self, timeout=30):
        wait_until(lambda: not port_open(self.port), timeout, interval=0.05,
                   msg=f"port {self.port} of {self.name} to close")

    def wait_ready(self, timeout=30):
        wait_until(self.is_ready, timeout, interval=0.1, msg=f"{self.name} to accept connections")

    def is_ready(self, timeout=2):
        """pg_isready against 127.0.0.1:port (exit 0 = accepting connections)."""
        cp = run_as([self.bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-t", str(timeout),
                     "-d", "postgres"], timeout=timeout + 10, check=False)
        return cp.returncode == 0

    # ------------------------------------------------------------------ SQL
    def dsn(self, dbname="postgres", user=None):
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user or self.superuser}"

    def connect(self, dbname="postgres", user=None, password=None, connect_timeout=5, autocommit=True, **kw):
        """A psycopg2 connection over TCP 127.0.0.1 (autocommit by default)."""
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, dbname=dbname, user=user or self.superuser,
                                password=password if password is not None else self.password,
                                connect_timeout=connect_timeout, application_name="pghatest", **kw)
        conn.autocommit = autocommit
        return conn

    def sql(self, query, params=None, dbname="postgres", user=None, password=None, timeout=10):
        """Run one statement on a fresh connection; returns all rows (list of tuples) or None if the
        statement returns no rows. statement_timeout = timeout."""
        conn = self.connect(dbname=dbname, user=user, password=password,
                            options=f"-c statement_timeout={int(timeout * 1000)}")
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall() if cur.description is not None else None
        finally:
            conn.close()

    def sql_value(self, query, params=None, **kw):
        rows = self.sql(query, params, **kw)
        return rows[0][0] if rows else None

    # ------------------------------------------------------------------ teardown
    def destroy(self, remove_dir=True):
        """Stop (or kill) the server, release the port, remove basedir/name."""
        if self._destroyed:
            return
        try:
            if self.is_running():
                try:
                    self.stop(mode="immediate", timeout=30)
                except Exception:  # noqa: BLE001 - fall through to kill
                    pass
            pid = postmaster_of(self.data_dir)
            if pid is not None:
                kill_tree(pid)
            if self._pm and pid_alive(*self._pm):
                kill_tree(*self._pm)
            self._forget()
        finally:
            if self._own_port:
                self._alloc.release(self.port)
            if remove_dir:
                shutil.rmtree(self.dir, ignore_errors=True)
            self._destroyed = True

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""
