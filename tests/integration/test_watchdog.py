"""The watchdog device (spec §3.8, §4.13), end to end. These machines cannot load softdog, so arming, the
keepalive and the magic close are unit tested through a fake driver (tests/unit/test_watchdog.c,
test_execute.c); here:

* `watchdog.mode: required` with a device that is no watchdog (a missing file, a regular file, /dev/null,
  which opens but does not answer the watchdog ioctls) never becomes the leader, not even as the only
  candidate: it does not bootstrap a new cluster, does not take the free leader key (or, with /dev/null,
  gives it back at once without promoting), and GET /patroni says `watchdog_failed: true`;
* `watchdog.mode: automatic` with a missing device bootstraps and leads, with a warning."""

import os
import re
import time

import pytest

import pghatest as h
from hacluster import HaCluster

pytestmark = pytest.mark.needs_root

LOOP_WAIT = 2


@pytest.fixture
def cluster(tmp_base):
    missing = os.path.join(tmp_base, "no-such-watchdog")
    c = HaCluster(tmp_base, n=2, scope="watchdog",
                  node_overrides={"node1": {"watchdog": {"mode": "automatic", "device": missing}},
                                  "node2": {"watchdog": {"mode": "required", "device": missing}}})
    try:
        yield c
    finally:
        c.destroy(keep=h.keep_requested())


def patroni(node):
    return node.rest("GET", "/patroni").json()


def metric(node, name):
    text = node.rest("GET", "/metrics").text
    m = re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return m.group(1)


def never_leads(c, seconds, what):
    """For `seconds`: nobody holds the leader key and node2's PostgreSQL stays a replica."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert c.leader() is None, f"{what}: node2 took the leader key"
        assert not c.is_primary("node2"), f"{what}: node2 was promoted"
        time.sleep(0.2)


def test_required_watchdog_never_leads(cluster, tmp_base):
    c = cluster
    node1, node2 = c.nodes["node1"], c.nodes["node2"]

    # alone in a new cluster, node2 does not bootstrap it: it could not lead it
    c.start(["node2"])
    node2.wait_for_log("Watchdog device is not usable: " + node2.config["watchdog"]["device"], 30)
    node2.wait_for_log("waiting for leader to bootstrap", 30)
    h.wait_until(lambda: patroni(node2).get("watchdog_failed") is True, 15,
                 msg="node2: GET /patroni watchdog_failed true")
    assert c.value("initialize") is None and c.leader() is None
    assert metric(node2, "pgha_watchdog_failed") == "1"

    # automatic without a device: node1 bootstraps and leads, node2 clones from it
    c.start(["node1"])
    assert c.wait_healthy(120) == "node1"
    node1.wait_for_log("Could not activate Linux watchdog device at " + node1.config["watchdog"]["device"]
                       + ": Can't open watchdog device: No such file or directory", 10)
    assert "watchdog_failed" not in patroni(node1)
    assert metric(node1, "pgha_watchdog_active") == "0" and metric(node1, "pgha_watchdog_failed") == "0"
    assert patroni(node2).get("watchdog_failed") is True

    # node1 stops (it hands the key back at once): node2 is the only candidate and still does not lead
    node1.stop()
    h.wait_until(lambda: c.leader() is None, 30, msg="node1 to release the leader key")
    never_leads(c, 4 * LOOP_WAIT + 2, "missing device")
    assert "the watchdog is required but unusable" in node2.log_text()

    # a regular file: not a character device (nothing is written to it)
    regular = os.path.join(tmp_base, "regular-file")
    with open(regular, "w") as f:
        f.write("not a watchdog\n")
    os.chmod(regular, 0o666)
    node2.config["watchdog"]["device"] = regular
    node2.write_config()
    node2.reload()
    node2.wait_for_log(f"Watchdog device is not usable: {regular}: not a character device", 30)
    never_leads(c, 4 * LOOP_WAIT + 2, "regular file")
    with open(regular) as f:
        assert f.read() == "not a watchdog\n"
    assert patroni(node2).get("watchdog_failed") is True

    # /dev/null: it opens, so node2 races and wins the key, but the device does not answer the watchdog
    # ioctls (ENOTTY): the key goes back without a promotion, and node2 keeps out of the race since
    node2.config["watchdog"]["device"] = "/dev/null"
    node2.write_config()
    node2.reload()
    deadline = time.monotonic() + 30
    log = ""
    while "Not promoting self because watchdog could not be activated" not in log:
        assert time.monotonic() < deadline, "node2 never tried /dev/null"
        assert not c.is_primary("node2"), "node2 was promoted without its required watchdog"
        time.sleep(0.1)
        log = node2.log_text()
    assert "does not answer as a watchdog device (WDIOC_GETSUPPORT: Inappropriate ioctl for device)" in log
    h.wait_until(lambda: patroni(node2).get("watchdog_failed") is True, 15,
                 msg="node2: GET /patroni watchdog_failed true after the failed activation")
    h.wait_until(lambda: c.leader() is None, 10, msg="node2 to give the key back")
    never_leads(c, 4 * LOOP_WAIT + 2, "/dev/null")
    assert node2.log_text().count("Not promoting self because watchdog could not be activated") == 1

    # node1 comes back and leads again; node2 follows it
    node1.start()
    assert c.wait_healthy(120) == "node1"
    assert patroni(node2).get("watchdog_failed") is True
