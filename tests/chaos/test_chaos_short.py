"""The short chaos run (about 3 minutes): every synchronous mode and both use_pg_rewind settings, the two
timed faults (partition of the primary, every etcd member stopped) first, then nemeses in a shuffled
cycle. Fails on lost or unexpected values, divergent nodes, any two-primary interval, a timing-proof
violation or a cluster that does not heal. Needs root (network namespaces) and a pgha build.

    sudo bash tests/chaos/run-short.sh                    # installs, builds, runs this
    CHAOS_SEED=42 CHAOS_DURATION=180 sudo /usr/bin/python3 -m pytest tests/chaos/test_chaos_short.py -v

CHAOS_SEED (default: random, printed), CHAOS_DURATION (seconds of faults, default 120),
CHAOS_REPORT (verdict JSON, default /tmp/pghac-short-report.json), PGHA_BUILD_DIR.
"""

import json
import os
import random
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
def test_chaos_short():
    import chaos
    seed = int(os.environ.get("CHAOS_SEED") or random.randrange(1, 10 ** 6))
    duration = os.environ.get("CHAOS_DURATION", "120")
    report = os.environ.get("CHAOS_REPORT", "/tmp/pghac-short-report.json")
    print(f"chaos seed {seed} (rerun with CHAOS_SEED={seed})")
    if os.path.exists(report):
        os.unlink(report)
    args = ["--duration", duration, "--seed", str(seed), "--report", report,
            "--modes", "off,on,strict,quorum", "--rewind", "on,off",
            "--first", "partition-primary,stop-etcd-all"]
    if os.environ.get("PGHA_BUILD_DIR"):
        args += ["--build-dir", os.environ["PGHA_BUILD_DIR"]]
    rc = chaos.main(args)
    assert os.path.exists(report), "the run produced no verdict (setup failed? see the output above)"
    with open(report) as f:
        v = json.load(f)
    assert rc == 0 and v["ok"], f"chaos seed {seed}: " + "; ".join(v["problems"])
