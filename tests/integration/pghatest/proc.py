"""Processes started by the harness: a wrapper, /proc helpers, the PID and log registries, the safety net.

Every process the harness starts
  * runs in its own session/process group (start_new_session=True), so a Ctrl-C in the terminal reaches
    only pytest, and the process group can be signalled as a whole;
  * writes stdout+stderr to a log file that is entered in the log registry (tails are shown when a test
    fails);
  * is entered in the PID registry with its start time (field 22 of /proc/PID/stat), so a later kill can
    never hit an unrelated process that reused the PID.

Processes that leave their process group (the postmaster: pg_ctl calls setsid()) are found through
parent links in /proc. The harness process also makes itself a *child subreaper*
(prctl(PR_SET_CHILD_SUBREAPER)): a daemon whose parent exits (a postmaster after pg_ctl returns, one
started by pgha through pg_ctl) is re-parented to us instead of init, so it stays within reach of the
safety net and its exit can be reaped.

Safety net: kill_all_registered() kills (SIGKILL, whole trees) everything still registered plus every
remaining child of this process. conftest.py/the CLI run it from atexit and from SIGTERM/SIGHUP
handlers. Each run also records its PIDs in /tmp/pghatest-runs/<pid>-<starttime>.state; a later run
cleans up after a run that was itself SIGKILLed (reap_stale_runs()).
"""

import atexit
import ctypes
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import threading
import time

from .util import tail_file, wait_until

STATE_DIR = "/tmp/pghatest-runs"
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
               "FTP_PROXY")

# ----------------------------------------------------------------------------------------------- /proc


def proc_stat(pid):
    """Parsed /proc/PID/stat as a dict (state, ppid, pgrp, session, starttime) or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    rp = data.rfind(")")
    rest = data[rp + 2:].split()
    try:
        return {
            "pid": pid,
            "comm": data[data.find("(") + 1:rp],
            "state": rest[0],
            "ppid": int(rest[1]),
            "pgrp": int(rest[2]),
            "session": int(rest[3]),
            "starttime": int(rest[19]),
        }
    except (IndexError, ValueError):
        return None


def proc_starttime(pid):
    st = proc_stat(pid)
    return st["starttime"] if st else None


def proc_cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def all_pids():
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            out.append(int(name))
    return out


def _children_map():
    m = {}
    for pid in all_pids():
        st = proc_stat(pid)
        if st:
            m.setdefault(st["ppid"], []).append(pid)
    return m


def descendants(pid):
    """PIDs of all live descendants of pid (through parent links, so setsid() does not hide them)."""
    m = _children_map()
    out, stack = [], list(m.get(pid, []))
    while stack:
        p = stack.pop()
        if p in out:
            continue
        out.append(p)
        stack.extend(m.get(p, []))
    return out


def group_members(pgid):
    return [p for p in all_pids() if (st := proc_stat(p)) and st["pgrp"] == pgid]


# PIDs of our children that a subprocess.Popen object owns: only Popen may reap them (it wants the exit
# status). Other children of ours (re-parented orphans) are reaped by _reap_if_zombie_child().
_popen_pids = set()
_popen_lock = threading.Lock()


def _reap_if_zombie_child(pid, st):
    if st["ppid"] == os.getpid():
        with _popen_lock:
            if pid in _popen_pids:
                return
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def reap_orphans():
    """Reap zombie children of ours that no Popen object owns (re-parented orphans such as postmasters)."""
    me = os.getpid()
    for pid in all_pids():
        st = proc_stat(pid)
        if st and st["ppid"] == me and st["state"] in ("Z", "X"):
            _reap_if_zombie_child(pid, st)


def pid_alive(pid, starttime=None):
    """True if pid runs (not a zombie) and, when starttime is given, is still the same process.

    A zombie that is our own orphaned child is reaped on the way.
    """
    if pid is None:
        return False
    st = proc_stat(pid)
    if st is None:
        return False
    if starttime is not None and st["starttime"] != starttime:
        return False
    if st["state"] in ("Z", "X"):
        _reap_if_zombie_child(pid, st)
        return False
    return True


def wait_pids_gone(pids, timeout=10.0, msg=None):
    """Wait until none of pids (ints or (pid, starttime) tuples) is alive."""
    items = [p if isinstance(p, tuple) else (p, proc_starttime(p)) for p in pids]
    items = [(p, s) for p, s in items if s is not None]
    wait_until(lambda: not any(pid_alive(p, s) for p, s in items), timeout, interval=0.05,
               msg=msg or f"processes {[p for p, _ in items]} to exit")


def _safe_kill(pid, sig, starttime=None):
    if starttime is not None and proc_starttime(pid) != starttime:
        return False
    try:
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _safe_killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def kill_tree(pid, starttime=None, pgid=None, sig=signal.SIGKILL, wait=True, timeout=10.0):
    """Kill pid, its process group and all its descendants (also those that called setsid()).

    The tree is frozen with SIGSTOP first so that nothing can fork while we collect it, then everything is
    sent `sig` (default SIGKILL) and SIGCONT. With starttime given, does nothing if pid was reused.
    Waits until all of them are gone (and reaps those that are our children) when wait=True.
    """
    if starttime is not None and proc_starttime(pid) != starttime:
        return []
    if starttime is None:
        starttime = proc_starttime(pid)
    victims = {}
    for _ in range(3):  # freeze, re-collect until stable
        found = {pid: starttime} if starttime is not None else {}
        if pgid is not None:
            for p in group_members(pgid):
                found[p] = proc_starttime(p)
        for root in list(found) or [pid]:
            for d in descendants(root):
                found[d] = proc_starttime(d)
        found = {p: s for p, s in found.items() if s is not None}
        new = set(found) - set(victims)
        victims.update(found)
        if not new:
            break
        for p in new:
            _safe_kill(p, signal.SIGSTOP, found[p])
    if pgid is not None:
        _safe_killpg(pgid, sig)
    for p, s in victims.items():
        _safe_kill(p, sig, s)
        if sig != signal.SIGKILL:
            _safe_kill(p, signal.SIGCONT, s)
    if wait and victims:
        _wait_and_reap(victims, timeout)
    return sorted(victims)


def _wait_and_reap(victims, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p, s in victims.items() if pid_alive(p, s)]
        if not alive:
            return
        time.sleep(0.02)
    alive = [p for p, s in victims.items() if pid_alive(p, s)]
    if alive:
        raise RuntimeError(f"processes still alive after kill: {alive}")


_subreaper_enabled = False


def enable_subreaper():
    """Make this process a child subreaper (Linux >= 3.4). Idempotent; returns True on success."""
    global _subreaper_enabled
    if _subreaper_enabled:
        return True
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_CHILD_SUBREAPER = 36
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0:
            _subreaper_enabled = True
    except (OSError, AttributeError):
        pass
    return _subreaper_enabled


# ----------------------------------------------------------------------------------------------- registries


class _Registry:
    """PIDs and log files of everything the harness started in this process."""

    def __init__(self):
        self.lock = threading.RLock()
        self.pids = {}  # pid -> dict(starttime, pgid, label)
        self.logs = []  # (label, path)
        self.dirs = set()  # run directories to remove on emergency cleanup (unless kept)
        self._state_path = None

    # -- state file for reap_stale_runs() of a later run
    def _state_file(self):
        if self._state_path is None:
            me = os.getpid()
            self._state_path = os.path.join(STATE_DIR, f"{me}-{proc_starttime(me)}.state")
        return self._state_path

    def _write_state(self):
        try:
            os.makedirs(STATE_DIR, exist_ok=True)
            path = self._state_file()
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                for pid, r in self.pids.items():
                    f.write(f"pid {pid} {r['starttime']} {r['pgid'] or 0}\n")
                for d in sorted(self.dirs):
                    f.write(f"dir {d}\n")
            os.replace(tmp, path)
        except OSError:
            pass

    def add_pid(self, pid, label, pgid=None):
        st = proc_starttime(pid)
        if st is None:
            return
        with self.lock:
            self.pids[pid] = {"starttime": st, "pgid": pgid, "label": label}
            self._write_state()

    def remove_pid(self, pid):
        with self.lock:
            if self.pids.pop(pid, None) is not None:
                self._write_state()

    def add_dir(self, path):
        with self.lock:
            self.dirs.add(path)
            self._write_state()

    def remove_dir(self, path):
        with self.lock:
            self.dirs.discard(path)
            self._write_state()

    def add_log(self, path, label):
        with self.lock:
            if all(p != path for _, p in self.logs):
                self.logs.append((label, path))

    def drop_state_file(self):
        if self._state_path:
            try:
                os.unlink(self._state_path)
            except OSError:
                pass


registry = _Registry()


def register_pid(pid, label, pgid=None):
    registry.add_pid(pid, label, pgid)


def unregister_pid(pid):
    registry.remove_pid(pid)


def register_log(path, label=None):
    """Enter a log file in the registry (tails are printed when a test fails)."""
    registry.add_log(os.path.abspath(path), label or os.path.basename(path))


def registered_logs():
    with registry.lock:
        return list(registry.logs)


def log_tails(lines=200, since=None, paths=None):
    """Text with the last `lines` lines of every registered log (modified at/after `since`, a time.time())."""
    chunks = []
    for label, path in (paths if paths is not None else registered_logs()):
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            continue
        if since is not None and mtime < since:
            continue
        tail = tail_file(path, lines)
        chunks.append(f"===== {label}: {path} (last {lines} lines) =====\n{tail}\n")
    return "\n".join(chunks)


def registered_pids():
    with registry.lock:
        return {p: dict(r) for p, r in registry.pids.items()}


def kill_all_registered(include_children=True):
    """Safety net: SIGKILL every registered process tree still alive and, with include_children, every
    remaining child of this process (orphans re-parented to us). Returns the PIDs killed."""
    killed = []
    with registry.lock:
        items = list(registry.pids.items())
    for pid, r in items:
        if pid_alive(pid, r["starttime"]):
            killed += kill_tree(pid, r["starttime"], r["pgid"], wait=False)
        elif r["pgid"]:
            _safe_killpg(r["pgid"], signal.SIGKILL)
    if include_children:
        me = os.getpid()
        for pid in all_pids():
            st = proc_stat(pid)
            if st and st["ppid"] == me and st["state"] not in ("Z", "X"):
                killed += kill_tree(pid, st["starttime"], wait=False)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with registry.lock:
            items = list(registry.pids.items())
        if not any(pid_alive(p, r["starttime"]) for p, r in items) and not any(pid_alive(p) for p in killed):
            break
        time.sleep(0.05)
    reap_orphans()
    with registry.lock:
        for pid, r in list(registry.pids.items()):
            if not pid_alive(pid, r["starttime"]):
                registry.pids.pop(pid, None)
        registry._write_state()
    return sorted(set(killed))


def emergency_cleanup(remove_dirs=True):
    """kill_all_registered(), then remove registered run directories unless PGHATEST_KEEP=1, and clean up
    after harness processes of ours that died meanwhile (e.g. a CLI run a test started)."""
    kill_all_registered()
    reap_stale_runs()
    if remove_dirs and os.environ.get("PGHATEST_KEEP") != "1":
        with registry.lock:
            dirs = list(registry.dirs)
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
            registry.remove_dir(d)
    with registry.lock:
        if not registry.pids and not registry.dirs:
            registry.drop_state_file()


_safety_installed = False


def install_safety_net(handle_signals=True):
    """atexit + SIGTERM/SIGHUP handlers that kill everything the harness started.

    The first SIGTERM/SIGHUP raises KeyboardInterrupt in the main thread, so pytest (or a CLI) tears down
    its fixtures normally; a second one kills everything at once and exits. SIGINT already raises
    KeyboardInterrupt (re-enabled if it was inherited as ignored). Call it from the main thread.
    """
    global _safety_installed
    if _safety_installed:
        return
    _safety_installed = True
    enable_subreaper()
    atexit.register(emergency_cleanup)
    if not handle_signals:
        return
    hits = {"n": 0}

    def handler(signum, frame):
        hits["n"] += 1
        if hits["n"] == 1:
            raise KeyboardInterrupt(f"pghatest: received signal {signum}")
        emergency_cleanup()
        os._exit(128 + signum)

    try:
        for s in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, handler)
        # A background job of a non-interactive shell starts with SIGINT ignored (and so would every child
        # we start); the harness must still clean up on SIGINT.
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread
        pass


def reap_stale_runs():
    """Clean up after earlier harness runs that died without cleaning up (e.g. SIGKILLed pytest).

    For each state file in /tmp/pghatest-runs whose owner process is gone, kill the processes it lists
    (only if PID *and* start time still match) and remove its directories unless they contain a KEEP
    marker. Returns a list of human-readable actions.
    """
    actions = []
    try:
        names = os.listdir(STATE_DIR)
    except OSError:
        return actions
    me = os.getpid()
    for name in names:
        if not name.endswith(".state"):
            continue
        try:
            owner, ostart = name[:-6].split("-")
            owner, ostart = int(owner), int(ostart)
        except ValueError:
            continue
        if owner == me or pid_alive(owner, ostart):
            continue
        path = os.path.join(STATE_DIR, name)
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) == 4 and parts[0] == "pid":
                pid, st = int(parts[1]), int(parts[2])
                if pid_alive(pid, st):
                    kill_tree(pid, st, wait=False)
                    actions.append(f"killed leftover pid {pid} of dead run {owner}")
            elif len(parts) == 2 and parts[0] == "dir":
                d = parts[1]
                if os.path.isdir(d) and d.startswith("/tmp/pghatest-") and not os.path.exists(os.path.join(d, "KEEP")):
                    shutil.rmtree(d, ignore_errors=True)
                    actions.append(f"removed leftover dir {d} of dead run {owner}")
        try:
            os.unlink(path)
        except OSError:
            pass
    from .ports import remove_stale_locks  # here: ports does not depend on proc, keep it that way
    remove_stale_locks()
    return actions


# ----------------------------------------------------------------------------------------------- users


def user_ids(user):
    pw = pwd.getpwnam(user)
    return pw.pw_uid, pw.pw_gid, pw.pw_dir


def chown_to(path, user="postgres"):
    uid, gid, _ = user_ids(user)
    os.chown(path, uid, gid)


def child_env(extra=None, user=None):
    """Environment for child processes: ours without proxy settings (all traffic stays on loopback),
    NO_PROXY for loopback, LANG/LC_ALL C.UTF-8, and HOME/USER/LOGNAME of `user` when given."""
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["LANG"] = "C.UTF-8"
    env["LC_ALL"] = "C.UTF-8"
    for k in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGDATA", "PGSERVICE", "PGPASSFILE"):
        env.pop(k, None)
    if user:
        _, _, home = user_ids(user)
        env.update(HOME=home, USER=user, LOGNAME=user)
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def as_user_prefix(user, pdeathsig=True):
    """Command prefix that runs a command as `user` (setpriv execs, so the PID stays the same)."""
    cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"]
    if pdeathsig:
        cmd.append("--pdeathsig=KILL")
    return cmd + ["--"]


# ----------------------------------------------------------------------------------------------- Proc


class Proc:
    """A child process with its own session, logging to a file, registered for cleanup.

    Proc(args, log_path, label=None, user=None, env=None, cwd=None).start()
      user: run as this user through setpriv (e.g. "postgres"); None runs as ourselves.
      env: extra environment variables on top of child_env().
    With pdeathsig=True (default) the child gets SIGKILL if the harness dies (only the direct child;
    daemons it spawns are covered by the registry/subreaper).
    """

    def __init__(self, args, log_path, label=None, user=None, env=None, cwd=None, pdeathsig=True):
        self.args = [str(a) for a in args]
        self.log_path = os.path.abspath(log_path)
        self.label = label or os.path.basename(self.args[0])
        self.user = user
        self.env = env
        self.cwd = cwd
        self.pdeathsig = pdeathsig
        self.popen = None
        self.pid = None
        self.pgid = None
        self.starttime = None
        self.started_at = None

    def __repr__(self):
        return f"<Proc {self.label} pid={self.pid} running={self.is_running()}>"

    def command(self):
        if self.user:
            return as_user_prefix(self.user, self.pdeathsig) + self.args
        if self.pdeathsig:
            return ["setpriv", "--pdeathsig=KILL", "--"] + self.args
        return list(self.args)

    def start(self):
        if self.is_running():
            raise RuntimeError(f"{self.label} is already running (pid {self.pid})")
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        cmd = self.command()
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            os.write(fd, f"\n=== pghatest {stamp} start: {shlex.join(cmd)}\n".encode())
            self.popen = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=child_env(self.env, self.user),
                start_new_session=True,
                close_fds=True,
            )
        finally:
            os.close(fd)
        with _popen_lock:
            _popen_pids.add(self.popen.pid)
        self.pid = self.popen.pid
        self.pgid = self.popen.pid  # session leader == group leader
        self.starttime = proc_starttime(self.pid)
        self.started_at = time.time()
        register_pid(self.pid, self.label, self.pgid)
        register_log(self.log_path, self.label)
        return self

    # -- state
    @property
    def returncode(self):
        if self.popen is None:
            return None
        return self.popen.poll()

    def is_running(self):
        if self.popen is None:
            return False
        if self.popen.poll() is not None:
            self._forget()
            return False
        return True

    def _forget(self):
        if self.pid is not None:
            unregister_pid(self.pid)
            with _popen_lock:
                _popen_pids.discard(self.pid)

    def wait(self, timeout=None):
        """Wait for exit; returns the exit code (negative: killed by that signal). Raises
        subprocess.TimeoutExpired on timeout."""
        if self.popen is None:
            return None
        rc = self.popen.wait(timeout)
        self._forget()
        return rc

    # -- signals
    def send_signal(self, sig):
        """Send sig to the main process only."""
        if self.is_running():
            os.kill(self.pid, sig)

    def signal_group(self, sig):
        """Send sig to the whole process group."""
        if self.is_running():
            _safe_killpg(self.pgid, sig)

    def pause(self):
        """SIGSTOP the process group (and descendants that left it)."""
        if self.is_running():
            for p in [self.pid] + descendants(self.pid):
                _safe_kill(p, signal.SIGSTOP)
            _safe_killpg(self.pgid, signal.SIGSTOP)

    def resume(self):
        if self.is_running():
            _safe_killpg(self.pgid, signal.SIGCONT)
            for p in [self.pid] + descendants(self.pid):
                _safe_kill(p, signal.SIGCONT)

    def stop(self, sig=signal.SIGTERM, timeout=30.0, kill_after=True, kill_leftovers=True):
        """Send sig to the main process and wait up to timeout for it to exit; returns the exit code.

        If it does not exit in time: with kill_after, SIGKILL it (its whole tree when kill_leftovers is
        set, else only the process and its group), otherwise raise subprocess.TimeoutExpired.
        With kill_leftovers (default), whatever outlives the main process (its process group, and the
        descendants it had, even those that left the group) is killed too; without, they are left
        alone (e.g. a PostgreSQL an agent deliberately leaves running)."""
        if self.popen is None:
            return None
        if self.is_running():
            leftovers = [(p, proc_starttime(p)) for p in descendants(self.pid)] if kill_leftovers else []
            try:
                os.kill(self.pid, sig)
                if sig == signal.SIGTERM:
                    # a stopped process would never see SIGTERM
                    os.kill(self.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                if not kill_after:
                    raise
                self.kill(tree=kill_leftovers)
            if kill_leftovers:
                _safe_killpg(self.pgid, signal.SIGKILL)
                for p, st in leftovers:
                    if st is not None and pid_alive(p, st):
                        kill_tree(p, st, wait=True)
        self._forget()
        return self.popen.returncode

    def kill(self, timeout=10.0, tree=True):
        """SIGKILL the process and its process group, and with tree=True (default) also every descendant
        (found through /proc, so also those that left the group); wait until the process is gone."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            if tree:
                kill_tree(self.pid, self.starttime, self.pgid, wait=False)
            else:
                _safe_killpg(self.pgid, signal.SIGKILL)
                _safe_kill(self.pid, signal.SIGKILL, self.starttime)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"{self.label} (pid {self.pid}) survived SIGKILL")
        _safe_killpg(self.pgid, signal.SIGKILL)
        self._forget()
        return self.popen.returncode

    # -- logs
    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=200):
        return tail_file(self.log_path, lines)


def run_as(args, user=None, timeout=120, check=True, env=None, cwd=None, log_path=None):
    """Run a short command to completion (own session, optional user), returning CompletedProcess with
    combined output in .stdout. Raises RuntimeError with the output on failure when check=True.
    With log_path, output also goes there (appended)."""
    cmd = (as_user_prefix(user) if user else []) + [str(a) for a in args]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=child_env(env, user), cwd=cwd, start_new_session=True)
    with _popen_lock:
        _popen_pids.add(p.pid)
    register_pid(p.pid, os.path.basename(cmd[0]), p.pid)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(p.pid, pgid=p.pid, wait=False)
        out, _ = p.communicate()
        raise RuntimeError(f"timed out after {timeout}s: {shlex.join(cmd)}\n{out.decode('utf-8', 'replace')}")
    finally:
        unregister_pid(p.pid)
        with _popen_lock:
            _popen_pids.discard(p.pid)
    text = out.decode("utf-8", "replace")
    if log_path:
        with open(log_path, "a") as f:
            f.write(f"=== {shlex.join(cmd)} (exit {p.returncode})\n{text}")
    cp = subprocess.CompletedProcess(cmd, p.returncode, text, None)
    if check and p.returncode != 0:
        raise RuntimeError(f"command failed with exit code {p.returncode}: {shlex.join(cmd)}\n{text}")
    return cp
