"""pghatest: a harness for pgha integration tests (real etcd, real PostgreSQL, the agent) on loopback.

Usable from pytest (see ../conftest.py) and from scripts (see __main__.py: python3 -m pghatest).
Must run as root (PostgreSQL runs as the postgres user through setpriv).

Main entry points:
    EtcdCluster(n=3, basedir)            real etcd 3.4 cluster, v3 JSON gateway client
    PgNode(name, basedir, port=None)     initdb/start/stop/sql/kill9 of a PostgreSQL instance
    PghaNode(config, basedir)            the pgha agent; make_node_config(...) builds its config
    Proc(args, log_path, user=None)      a logged, registered child process in its own session
    RunDir()                             /tmp/pghatest-<pid>-<rand> base directory of a run
    allocate_ports(n)                    collision-free loopback ports
    wait_until(pred, timeout, ...)       polling with a clear failure message
    install_safety_net()                 atexit/signal cleanup of everything started
"""

from .etcd import EtcdCluster, EtcdError, EtcdMember, prefix_range_end
from .pg import PgNode, find_pg_bindir, port_open, postmaster_of, read_postmaster_pid
from .pgha import BinaryNotFound, PghaNode, build_dir, deep_merge, dump_yaml, make_node_config, pgha_binaries
from .ports import PortAllocator, allocate_port, allocate_ports, port_is_free, release_ports
from .proc import (Proc, descendants, emergency_cleanup, enable_subreaper, install_safety_net, kill_all_registered,
                   kill_tree, log_tails, pid_alive, proc_stat, reap_stale_runs, register_log, registered_logs,
                   registered_pids, run_as, wait_pids_gone)
from .rundir import RunDir, keep_requested, make_dir, remove_tree, safe_name
from .util import WaitTimeout, http_get, http_json, http_request, tail_file, wait_until

__all__ = [
    "EtcdCluster", "EtcdError", "EtcdMember", "prefix_range_end",
    "PgNode", "find_pg_bindir", "port_open", "postmaster_of", "read_postmaster_pid",
    "BinaryNotFound", "PghaNode", "build_dir", "deep_merge", "dump_yaml", "make_node_config", "pgha_binaries",
    "PortAllocator", "allocate_port", "allocate_ports", "port_is_free", "release_ports",
    "Proc", "descendants", "emergency_cleanup", "enable_subreaper", "install_safety_net", "kill_all_registered",
    "kill_tree", "log_tails", "pid_alive", "proc_stat", "reap_stale_runs", "register_log", "registered_logs",
    "registered_pids", "run_as", "wait_pids_gone",
    "RunDir", "keep_requested", "make_dir", "remove_tree", "safe_name",
    "WaitTimeout", "http_get", "http_json", "http_request", "tail_file", "wait_until",
]
