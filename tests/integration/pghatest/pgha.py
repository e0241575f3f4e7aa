"""The pgha agent under test: locate the binaries, write a patroni.yml-style config, run/signal the process.

This wrapper only starts, stops and signals the binary, talks to its REST API and reads its log; it
assumes nothing about what the agent does beyond the Patroni configuration format.
"""

import copy
import os
import shutil
import signal

from .pg import find_pg_bindir, postmaster_of
from .proc import Proc, descendants, kill_tree, proc_starttime, register_log, run_as, wait_pids_gone
from .rundir import make_dir
from .util import http_request, repo_root, wait_until

PG_USER = "postgres"

try:  # python3-yaml; optional, a small serializer below covers the config dicts we write
    import yaml as _yaml
except ImportError:  # pragma: no cover - depends on the machine
    _yaml = None


class BinaryNotFound(FileNotFoundError):
    pass


def build_dir():
    """$PGHA_BUILD_DIR, default <repo>/build."""
    return os.path.abspath(os.environ.get("PGHA_BUILD_DIR") or os.path.join(repo_root(), "build"))


def pgha_binaries(required=True):
    """(path of pgha, path of pgha-ctl) under $PGHA_BUILD_DIR/src. Raises BinaryNotFound if pgha is
    missing and required is set."""
    d = os.path.join(build_dir(), "src")
    pgha, ctl = os.path.join(d, "pgha"), os.path.join(d, "pgha-ctl")
    if required and not os.access(pgha, os.X_OK):
        raise BinaryNotFound(f"pgha binary not found at {pgha} (build it, or set PGHA_BUILD_DIR)")
    return pgha, ctl


# ----------------------------------------------------------------------------------------------- YAML

_PLAIN_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-")
_YAML_WORDS = {"y", "n", "yes", "no", "true", "false", "on", "off", "null", "~", ""}


def _yaml_scalar(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v)
    looks_number = False
    try:
        float(s)
        looks_number = True
    except ValueError:
        pass
    if set(s) <= _PLAIN_SAFE and s.lower() not in _YAML_WORDS and not looks_number and not s.startswith(("-", ".")):
        return s
    # double-quoted YAML (JSON escapes are valid in it)
    import json
    return json.dumps(s, ensure_ascii=False)


def _yaml_lines(obj, indent):
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        if not obj:
            return [pad + "{}"]
        for k, v in obj.items():
            key = _yaml_scalar(k)
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{key}:")
                out.extend(_yaml_lines(v, indent + 2))
            else:
                out.append(f"{pad}{key}: {_yaml_inline(v)}")
    elif isinstance(obj, list):
        if not obj:
            return [pad + "[]"]
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                sub = _yaml_lines(v, indent + 2)
                out.append(f"{pad}- {sub[0].lstrip()}")
                out.extend(sub[1:])
            else:
                out.append(f"{pad}- {_yaml_inline(v)}")
    else:
        out.append(pad + _yaml_scalar(obj))
    return out


def _yaml_inline(v):
    if isinstance(v, dict) and not v:
        return "{}"
    if isinstance(v, list) and not v:
        return "[]"
    return _yaml_scalar(v)


def dump_yaml(obj, use_pyyaml=True):
    """YAML text for a config made of dicts, lists, str, int, float, bool and None (block style, key
    order kept). Uses PyYAML when available, else a small built-in serializer."""
    if use_pyyaml and _yaml is not None:
        return _yaml.safe_dump(obj, default_flow_style=False, sort_keys=False, allow_unicode=True)
    return "\n".join(_yaml_lines(obj, 0)) + "\n"


# ----------------------------------------------------------------------------------------------- config


def deep_merge(base, override):
    """Recursively merge override into a copy of base; a value of None in override deletes the key."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def make_node_config(name, scope, etcd_endpoints, pg_port, rest_port, basedir, **overrides):
    """A Patroni-format configuration dict for node `name` whose files live in basedir/name.

    Defaults for tests: bootstrap.dcs ttl 20, loop_wait 2, retry_timeout 3 (ttl >= loop_wait +
    2*retry_timeout holds); initdb with UTF8 and C.UTF-8; pg_hba allowing md5 from 127.0.0.1 for all
    databases and for replication; superuser postgres and replication user replicator with passwords;
    unix_socket_directories = the node dir; server log in <node dir>/pg_log/postgresql.log; watchdog.mode
    off (a machine with a real /dev/watchdog must not be reset by a test that stops or kills an agent; only
    test_watchdog.py sets a mode, on devices that are no watchdogs).
    Keyword overrides are deep-merged per top-level key, e.g.
        make_node_config(..., bootstrap={"dcs": {"ttl": 30}}, tags={"nofailover": True})
    and a None value removes a key (e.g. restapi={"connect_address": None}).
    """
    node_dir = os.path.join(os.path.abspath(basedir), name)
    cfg = {
        "scope": scope,
        "name": name,
        "namespace": "/service/",
        "restapi": {
            "listen": f"127.0.0.1:{rest_port}",
            "connect_address": f"127.0.0.1:{rest_port}",
        },
        "etcd3": {"hosts": list(etcd_endpoints)},
        "bootstrap": {
            "dcs": {
                "ttl": 20,
                "loop_wait": 2,
                "retry_timeout": 3,
                "maximum_lag_on_failover": 1048576,
                "postgresql": {
                    "use_pg_rewind": True,
                    "parameters": {
                        "wal_level": "replica",
                        "hot_standby": "on",
                        "max_connections": 50,
                        "max_wal_senders": 10,
                        "max_replication_slots": 10,
                        "wal_keep_size": "128MB",
                    },
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}],
            "pg_hba": [
                "local all all trust",
                "host all all 127.0.0.1/32 md5",
                "host replication replicator 127.0.0.1/32 md5",
            ],
        },
        "postgresql": {
            "listen": f"127.0.0.1:{pg_port}",
            "connect_address": f"127.0.0.1:{pg_port}",
            "data_dir": os.path.join(node_dir, "data"),
            "bin_dir": find_pg_bindir(),
            "pgpass": os.path.join(node_dir, "pgpass"),
            "authentication": {
                "superuser": {"username": "postgres", "password": "pghatest-super"},
                "replication": {"username": "replicator", "password": "pghatest-repl"},
            },
            "parameters": {
                "unix_socket_directories": node_dir,
                "logging_collector": "on",
                "log_directory": os.path.join(node_dir, "pg_log"),
                "log_filename": "postgresql.log",
                "log_line_prefix": "%m [%p] ",
            },
        },
        "tags": {},
        "watchdog": {"mode": "off"},
    }
    return deep_merge(cfg, overrides)


# ----------------------------------------------------------------------------------------------- node


class PghaNode:
    """One pgha agent process (run as postgres) with its config, log and data under basedir/name.

    node = PghaNode(config, basedir)      # config from make_node_config(); name = config["name"]
    node.start(); node.rest("GET", "/health"); node.stop(); node.destroy()
    """

    def __init__(self, config, basedir, build=None):
        self.config = copy.deepcopy(config)
        self.name = self.config["name"]
        self.dir = os.path.join(os.path.abspath(basedir), self.name)
        self.config_path = os.path.join(self.dir, "pgha.yml")
        self.log_path = os.path.join(self.dir, "pgha.log")
        self.bin, self.ctl_bin = pgha_binaries(required=True) if build is None else build
        self.proc = None
        self._destroyed = False
        make_dir(os.path.dirname(self.dir), mode=0o755)
        make_dir(self.dir, owner=PG_USER, mode=0o755)
        pg_log_dir = self.config.get("postgresql", {}).get("parameters", {}).get("log_directory")
        if pg_log_dir:
            register_log(os.path.join(pg_log_dir, self.config["postgresql"]["parameters"].get(
                "log_filename", "postgresql.log")), f"postgres {self.name}")

    def __repr__(self):
        return f"<PghaNode {self.name} pid={self.pid} rest={self.rest_url}>"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.destroy()

    # ------------------------------------------------------------------ config
    @property
    def data_dir(self):
        return self.config["postgresql"]["data_dir"]

    @property
    def rest_url(self):
        hostport = self.config["restapi"].get("connect_address") or self.config["restapi"]["listen"]
        return f"http://{hostport}"

    @property
    def pg_port(self):
        return int(self.config["postgresql"]["listen"].rsplit(":", 1)[1])

    def write_config(self, config=None):
        """(Re)write pgha.yml (0600, owned by postgres: it holds passwords). With config, replaces the
        stored config first. Use reload() afterwards to make a running agent read it."""
        if config is not None:
            self.config = copy.deepcopy(config)
        tmp = self.config_path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(dump_yaml(self.config))
        import pwd
        pw = pwd.getpwnam(PG_USER)
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
        os.replace(tmp, self.config_path)
        return self.config_path

    # ------------------------------------------------------------------ process
    @property
    def pid(self):
        return self.proc.pid if self.proc is not None and self.proc.is_running() else None

    def start(self, extra_args=(), env=None):
        """Write the config and start `pgha CONFIG` as postgres, logging to pgha.log."""
        self.write_config()
        self.proc = Proc([self.bin, *extra_args, self.config_path], self.log_path, label=f"pgha {self.name}",
                         user=PG_USER, env=env, cwd=self.dir).start()
        return self

    def is_running(self):
        return self.proc is not None and self.proc.is_running()

    @property
    def returncode(self):
        return self.proc.returncode if self.proc is not None else None

    def wait(self, timeout=None):
        """Wait for the agent to exit; returns its exit code."""
        return self.proc.wait(timeout) if self.proc is not None else None

    def reload(self):
        """SIGHUP the agent."""
        self.proc.send_signal(signal.SIGHUP)

    def stop(self, timeout=60, kill_leftovers=False):
        """SIGTERM the agent and wait for it to exit (SIGKILL of the agent alone after timeout). Its
        PostgreSQL is left as the agent leaves it, unless kill_leftovers is set. Returns the exit code."""
        if self.proc is None:
            return None
        rc = self.proc.stop(signal.SIGTERM, timeout=timeout, kill_leftovers=False)
        if kill_leftovers:
            self.kill_postmaster()
        return rc

    def pause(self):
        """SIGSTOP the agent (not its PostgreSQL)."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def postmaster_pid(self):
        """PID of the live postmaster of this node's data dir, or None."""
        return postmaster_of(self.data_dir)

    def kill_postmaster(self):
        pid = self.postmaster_pid()
        if pid is not None:
            kill_tree(pid)
        return pid

    def kill9(self, postmaster=True):
        """SIGKILL the agent and, with postmaster=True, its postmaster at the same moment (each with its
        children). With postmaster=False only the agent dies and its PostgreSQL keeps running (orphaned).
        Waits until the killed processes are gone. Returns (agent pid, postmaster pid or None)."""
        apid = self.pid
        pm = self.postmaster_pid() if postmaster else None
        pm_tree = []
        if pm is not None:
            pm_tree = [(p, proc_starttime(p)) for p in [pm] + descendants(pm)]
            os.kill(pm, signal.SIGKILL)  # first, so it cannot react to the agent's death
        if self.proc is not None:
            # The postmaster may be the agent's child: kill the agent's whole tree only when asked to.
            self.proc.kill(tree=postmaster)
        if pm_tree:
            # Backends exit on their own once the postmaster is gone; wait for them too, so that a restart
            # does not find the shared memory still in use.
            wait_pids_gone([t for t in pm_tree if t[1] is not None], timeout=15,
                           msg=f"postmaster {pm} of {self.name} and its children to exit")
        return apid, pm

    def destroy(self, remove_dir=True):
        """Stop the agent (SIGTERM, then SIGKILL), kill any postmaster left on its data dir, remove the
        node dir."""
        if self._destroyed:
            return
        try:
            if self.is_running():
                try:
                    self.proc.stop(signal.SIGTERM, timeout=30)
                except Exception:  # noqa: BLE001
                    self.proc.kill()
            self.kill_postmaster()
        finally:
            if remove_dir:
                shutil.rmtree(self.dir, ignore_errors=True)
            self._destroyed = True

    # ------------------------------------------------------------------ REST / logs / ctl
    def rest(self, method, path, body=None, timeout=5.0, **kwargs):
        """HTTP request to the agent's REST API (http://<restapi address><path>); returns the
        requests.Response without checking the status."""
        return http_request(method, self.rest_url + path, body=body, timeout=timeout, **kwargs)

    def log_text(self):
        return self.proc.log_text() if self.proc is not None else ""

    def wait_for_log(self, needle, timeout=30):
        """Wait until the agent log contains needle (a str); returns the log text."""
        return wait_until(lambda: needle in self.log_text() and self.log_text(), timeout,
                          msg=f"{needle!r} in {self.log_path}")

    def ctl(self, *args, timeout=60, check=False):
        """Run pgha-ctl with exactly these arguments (as postgres); returns CompletedProcess (.stdout
        holds stdout+stderr)."""
        return run_as([self.ctl_bin, *args], user=PG_USER, timeout=timeout, check=check)
