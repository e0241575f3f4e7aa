"""pytest glue for the pghatest harness.

Fixtures
    run_dir          (session)  the run's RunDir: /tmp/pghatest-<pid>-<rand>
    tmp_base         (function) a per-test directory under run_dir (a str path)
    etcd_cluster     (function) the session's shared 3-member EtcdCluster, checked before each test:
                                paused members are resumed, stopped ones restarted, all healthy
    fresh_etcd       (function) a new 3-member EtcdCluster only for this test
    pg_node_factory  (function) make_pg(name=None, port=None, start=True, **PgNode kwargs) -> PgNode
    pgha_node_factory(function) make_pgha(config) -> PghaNode (not started); skips if pgha is not built
    unique_name      (function) a short name unique to this test and run (scope names, key prefixes)

On a failing test the last 200 lines of every log written during it (etcd members, PostgreSQL, pgha,
pg_ctl) are attached to the failure report (pytest_runtest_makereport, see there why not later). Everything started is killed by fixture finalizers; an
atexit/SIGTERM/SIGHUP safety net kills whatever is left (see pghatest/proc.py).
"""

import os
import sys
import time
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pghatest as h  # noqa: E402

LOG_TAIL_LINES = 200


def _is_root():
    return os.geteuid() == 0


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_root: needs root (runs PostgreSQL/pgha as the postgres user)")
    h.install_safety_net()


def pytest_sessionstart(session):
    if _is_root():  # stale runs are root's; another user could not clean them up anyway
        for action in h.reap_stale_runs():
            print(f"pghatest: {action}", file=sys.stderr)


def pytest_collection_modifyitems(config, items):
    if _is_root():
        return
    skip = pytest.mark.skip(reason="needs root: PostgreSQL and pgha run as the postgres user through setpriv "
                                   "(run: sudo /usr/bin/python3 -m pytest tests/integration)")
    for item in items:
        if "needs_root" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Store each phase's report on the item (item.rep_setup/rep_call/rep_teardown) for fixtures, and
    attach log tails to a failed setup/call report right away: at this moment every process and log of
    the test still exists, whereas fixture finalizers (PgNode.destroy, tmp_base) remove node dirs, logs
    included, before any later finalizer could read them."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed and rep.when in ("setup", "call"):
        since = getattr(item, "_pghatest_started", None)
        text = h.log_tails(lines=LOG_TAIL_LINES, since=since)
        rep.sections.append(("pghatest logs (last %d lines of each log written during the test)" % LOG_TAIL_LINES,
                             text or "(no harness log was written during this test)"))


def _test_failed(node):
    return any(getattr(node, "rep_" + w, None) is not None and getattr(node, "rep_" + w).failed
               for w in ("setup", "call"))


def _require_root():
    if not _is_root():
        pytest.skip("needs root: PostgreSQL/pgha run as the postgres user through setpriv")


# ------------------------------------------------------------------------------------------ directories


@pytest.fixture(scope="session")
def run_dir(request):
    rd = h.RunDir()
    yield rd
    failed = request.session.testsfailed > 0
    kept = rd.cleanup(failed=failed)
    if kept:
        print(f"\npghatest: run directory kept (PGHATEST_KEEP=1): {rd.path}", file=sys.stderr)


@pytest.fixture
def tmp_base(request, run_dir):
    path = run_dir.subdir(h.safe_name(request.node.name))
    yield path
    if h.remove_tree(path, failed=_test_failed(request.node)):
        print(f"\npghatest: test directory kept: {path}", file=sys.stderr)


@pytest.fixture
def unique_name(request):
    return f"{h.safe_name(request.node.name, 24)}-{uuid.uuid4().hex[:6]}".replace(".", "_")


# ------------------------------------------------------------------------------------------ log dump


@pytest.fixture(autouse=True)
def _pghatest_test_guard(request):
    """Marks the test's start (logs older than that are not dumped) and, after a failed test, says which
    directory was kept (PGHATEST_KEEP=1) and whether anything the test started survived its fixtures."""
    request.node._pghatest_started = time.time() - 1
    before = set(h.registered_pids())
    yield
    h.proc.reap_orphans()  # zombies of detached processes (backends of a killed postmaster) re-parented to us
    if _test_failed(request.node):
        alive = {p: r["label"] for p, r in h.registered_pids().items()
                 if p not in before and h.pid_alive(p, r["starttime"])}
        if alive:
            print(f"\npghatest: still running after the test: {alive}", file=sys.stderr)


# ------------------------------------------------------------------------------------------ etcd


def _keep_files(failed):
    """Keep a fixture's files (data dirs, logs) after a failure when PGHATEST_KEEP=1."""
    return failed and h.keep_requested()


@pytest.fixture(scope="session")
def _etcd_session(request, run_dir):
    cluster = h.EtcdCluster(3, run_dir.subdir("etcd-session"))
    yield cluster
    cluster.destroy(remove_dir=not _keep_files(request.session.testsfailed > 0))


@pytest.fixture
def etcd_cluster(_etcd_session):
    """The shared 3-member cluster, all members running and healthy at the start of the test."""
    _etcd_session.ensure_all_running()
    return _etcd_session


@pytest.fixture
def fresh_etcd(request, tmp_base):
    cluster = h.EtcdCluster(3, tmp_base)
    yield cluster
    cluster.destroy(remove_dir=not _keep_files(_test_failed(request.node)))


# ------------------------------------------------------------------------------------------ PostgreSQL / pgha


@pytest.fixture
def pg_node_factory(request, tmp_base):
    """make_pg(name=None, port=None, start=True, **kwargs): initdb (and start) a PgNode under tmp_base."""
    _require_root()
    nodes = []

    def make_pg(name=None, port=None, start=True, **kwargs):
        name = name or f"pg{len(nodes) + 1}"
        node = h.PgNode(name, tmp_base, port=port, **kwargs)
        nodes.append(node)
        node.initdb()
        if start:
            node.start()
        return node

    yield make_pg
    errors = []
    keep = _keep_files(_test_failed(request.node))
    for node in reversed(nodes):
        try:
            node.destroy(remove_dir=not keep)
        except Exception as e:  # noqa: BLE001 - tear down the others anyway
            errors.append(f"{node.name}: {e}")
    if errors:
        raise RuntimeError("PgNode teardown failed: " + "; ".join(errors))


@pytest.fixture
def pgha_node_factory(request, tmp_base):
    """make_pgha(config) -> PghaNode under tmp_base (not started). Skips when pgha is not built."""
    _require_root()
    try:
        build = h.pgha_binaries(required=True)
    except h.BinaryNotFound as e:
        pytest.skip(str(e))
    nodes = []

    def make_pgha(config):
        node = h.PghaNode(config, tmp_base, build=build)
        nodes.append(node)
        return node

    yield make_pgha
    errors = []
    keep = _keep_files(_test_failed(request.node))
    for node in reversed(nodes):
        try:
            node.destroy(remove_dir=not keep)
        except Exception as e:  # noqa: BLE001
            errors.append(f"{node.name}: {e}")
    if errors:
        raise RuntimeError("PghaNode teardown failed: " + "; ".join(errors))
