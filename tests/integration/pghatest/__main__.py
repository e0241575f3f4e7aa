"""Command line use of the harness (run as root from tests/integration):

    /usr/bin/python3 -m pghatest up [--etcd N] [--pg N] [--hold SECONDS]
        start an N-member etcd cluster and/or N PostgreSQL instances, print one JSON line describing
        them (endpoints, ports, PIDs, directories), keep them until SIGINT/SIGTERM (or --hold seconds),
        then tear everything down and remove the run directory.
    /usr/bin/python3 -m pghatest reap
        clean up after earlier runs that died without cleaning up (SIGKILLed pytest or CLI).
    /usr/bin/python3 -m pghatest config NAME SCOPE ETCD_HOSTS PG_PORT REST_PORT BASEDIR
        print the Patroni-style YAML config make_node_config() produces (ETCD_HOSTS comma-separated).
"""

import argparse
import json
import os
import sys
import time

from . import EtcdCluster, PgNode, RunDir, dump_yaml, install_safety_net, make_node_config, reap_stale_runs
from .proc import descendants


def cmd_up(args):
    install_safety_net()
    rd = RunDir()
    cluster = None
    nodes = []
    failed = False
    try:
        info = {"run_dir": rd.path, "pid": os.getpid()}
        if args.etcd:
            cluster = EtcdCluster(args.etcd, rd.path)
            info["etcd"] = {"endpoints": cluster.endpoints, "pids": cluster.pids(), "dir": cluster.dir}
        for i in range(args.pg):
            n = PgNode(f"pg{i + 1}", rd.path)
            nodes.append(n)
            n.initdb()
            n.start()
            pm = n.postmaster_pid()
            info.setdefault("pg", []).append({"name": n.name, "port": n.port, "dsn": n.dsn(), "dir": n.dir,
                                              "postmaster_pid": pm, "children": descendants(pm)})
        print(json.dumps(info), flush=True)
        deadline = time.monotonic() + args.hold if args.hold else None
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("pghatest: interrupted, cleaning up", file=sys.stderr, flush=True)
    except BaseException:
        failed = True
        raise
    finally:
        for n in reversed(nodes):
            n.destroy()
        if cluster is not None:
            cluster.destroy()
        rd.cleanup(failed=failed)
    return 0


def cmd_reap(_args):
    for action in reap_stale_runs():
        print(action)
    return 0


def cmd_config(args):
    cfg = make_node_config(args.name, args.scope, args.etcd_hosts.split(","), args.pg_port, args.rest_port,
                           args.basedir)
    sys.stdout.write(dump_yaml(cfg))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m pghatest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start etcd/PostgreSQL and keep them until interrupted")
    up.add_argument("--etcd", type=int, default=3, help="etcd members (0: none)")
    up.add_argument("--pg", type=int, default=0, help="PostgreSQL instances")
    up.add_argument("--hold", type=float, default=0, help="stop after this many seconds (0: until a signal)")
    up.set_defaults(func=cmd_up)
    reap = sub.add_parser("reap", help="clean up after dead runs")
    reap.set_defaults(func=cmd_reap)
    cfg = sub.add_parser("config", help="print a node config")
    for a in ("name", "scope", "etcd_hosts"):
        cfg.add_argument(a)
    cfg.add_argument("pg_port", type=int)
    cfg.add_argument("rest_port", type=int)
    cfg.add_argument("basedir")
    cfg.set_defaults(func=cmd_config)
    args = p.parse_args(argv)
    if args.cmd in ("up", "reap") and os.geteuid() != 0:
        p.error("must run as root (PostgreSQL runs as the postgres user through setpriv)")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
