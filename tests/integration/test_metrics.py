"""GET /metrics (spec §2.9) on a running 2-node cluster: Patroni's exposition (order, HELP texts, labels,
the space after patroni_postgres_server_version, values on the primary and the replica), patroni_master,
Patroni 4.1's patroni_postgres_state, pgha's own metrics, promtool's verdict, and the promotion/demotion counters after a switchover.

promtool (Debian package prometheus, installed by scripts/install-deps.sh) accepts Patroni's space before
the labels of patroni_postgres_server_version as it is; its only complaints are lint findings about four
of Patroni's own counters that lack the "_total" suffix (their names are the compatibility contract).
Those four are tolerated by name; any parse error or any other finding fails the test."""

import re
import shutil
import subprocess
import time
import uuid

import pytest

import pghatest as h
from hacluster import HaCluster, SharedCluster

pytestmark = pytest.mark.needs_root

# Patroni 4.0.6's metrics in order (streaming/archive recovery: PostgreSQL running, >= 9.6), with
# patroni_master (Patroni 3.x's name) after patroni_primary, then Patroni 4.1's patroni_postgres_state
PATRONI_METRICS = [
    "patroni_version", "patroni_postgres_running", "patroni_postmaster_start_time", "patroni_primary",
    "patroni_master", "patroni_xlog_location", "patroni_standby_leader", "patroni_replica",
    "patroni_sync_standby", "patroni_quorum_standby", "patroni_xlog_received_location",
    "patroni_xlog_replayed_location", "patroni_xlog_replayed_timestamp", "patroni_xlog_paused",
    "patroni_postgres_streaming", "patroni_postgres_in_archive_recovery", "patroni_postgres_server_version",
    "patroni_cluster_unlocked", "patroni_failsafe_mode_is_active", "patroni_postgres_timeline",
    "patroni_dcs_last_seen", "patroni_pending_restart", "patroni_is_paused",
    # Patroni 4.1
    "patroni_postgres_state",
]

# Patroni 4.1's comment line between the HELP and TYPE lines of patroni_postgres_state
STATE_BLOCK = (
    "# HELP patroni_postgres_state Numeric representation of Postgres state.\n"
    "# Values: 0=initdb, 1=initdb_failed, 2=custom_bootstrap, 3=custom_bootstrap_failed, 4=creating_replica, "
    "5=running, 6=starting, 7=bootstrap_starting, 8=start_failed, 9=restarting, 10=restart_failed, 11=stopping, "
    "12=stopped, 13=stop_failed, 14=crashed\n"
    "# TYPE patroni_postgres_state gauge\n"
)

# promtool lint findings that are Patroni's naming, not ours: counters without "_total"
PATRONI_LINT = {
    f'{m} counter metrics should have "_total" suffix'
    for m in ("patroni_xlog_location", "patroni_xlog_received_location", "patroni_xlog_replayed_location",
              "patroni_postgres_timeline")
}

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)( ?)\{([^}]*)\} (\S+)$')


def build_cluster(etcd):
    def build(basedir):
        c = HaCluster(basedir, n=2, scope=f"metrics-{uuid.uuid4().hex[:6]}", etcd=etcd)
        try:
            c.start(["node1"])
            c.wait_leader(60)
            c.start(["node2"])
            c.wait_healthy(120)
        except BaseException:
            c.destroy(keep=h.keep_requested())
            raise
        return c
    return build


@pytest.fixture(scope="module")
def shared_cluster(request, run_dir, _etcd_session):
    shared = SharedCluster(run_dir, "metrics", build_cluster(_etcd_session))
    yield shared
    shared.close(keep=request.session.testsfailed > 0 and h.keep_requested())


@pytest.fixture
def cluster(shared_cluster, etcd_cluster):
    """The module's 2-node cluster, healthy (rebuilt if the previous test left it broken)."""
    return shared_cluster.acquire()


def scrape(node):
    r = node.rest("GET", "/metrics")
    assert r.status_code == 200, r.text
    assert r.headers.get("Content-Type") == "text/plain"
    assert r.text.endswith("\n") and not r.text.endswith("\n\n")
    return r.text


def parse(text, scope, name):
    """{metric: {extra labels (tuple of k=v): value}}, checking HELP/TYPE before each metric and the label
    set of every sample; also returns the metric names in order."""
    samples, order, helped, typed = {}, [], set(), set()
    base = f'scope="{scope}",name="{name}"'
    for line in text.rstrip("\n").split("\n"):
        if line.startswith("# HELP "):
            helped.add(line.split(" ")[2])
            continue
        if line.startswith("# TYPE "):
            _, _, metric, mtype = line.split(" ")
            typed.add(metric)
            order.append(metric)
            continue
        if line.startswith("# "):  # a comment (Patroni 4.1's "# Values: ..." of patroni_postgres_state)
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        metric, space, labels, value = m.groups()
        # Patroni's quirk: a space before the labels of this one metric only
        assert (space == " ") == (metric == "patroni_postgres_server_version"), line
        assert labels == base or labels.startswith(base + ","), line
        family = re.sub(r"_(bucket|sum|count)$", "", metric) if metric.startswith("pgha_ha_cycle_duration") \
            else metric
        assert family in helped and family in typed, f"no HELP/TYPE before {line!r}"
        extra = tuple(labels[len(base) + 1:].split(",")) if labels != base else ()
        samples.setdefault(metric, {})[extra] = value
    return samples, order


def one(samples, metric):
    return samples[metric][()]


def run_promtool(text):
    """promtool check metrics: (returncode, findings). Exit status 3 = lint findings only."""
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    findings = [l.strip() for l in (p.stdout + p.stderr).splitlines() if l.strip()]
    return p.returncode, findings


def check_promtool(text, who):
    if not shutil.which("promtool"):
        pytest.skip("promtool not installed (Debian package prometheus; scripts/install-deps.sh installs it)")
    rc, findings = run_promtool(text)
    assert rc in (0, 3), f"promtool on {who}'s exposition: exit {rc}: {findings}"
    assert set(findings) <= PATRONI_LINT, f"promtool findings on {who} beyond Patroni's names: " \
        f"{sorted(set(findings) - PATRONI_LINT)}"
    # and pgha's own part alone is clean
    pgha_part = "".join(l + "\n" for l in text.rstrip("\n").split("\n") if "pgha_" in l)
    rc, findings = run_promtool(pgha_part)
    assert rc == 0 and not findings, f"promtool on pgha's metrics of {who}: exit {rc}: {findings}"


def other(name):
    return "node2" if name == "node1" else "node1"


def test_metrics_on_primary_and_replica(cluster):
    c = cluster
    primary = c.check_healthy()
    replica = other(primary)
    scope = c.scope
    version = int(c.sql(primary, "SHOW server_version_num")[0][0])
    start_epoch = float(c.sql(primary, "SELECT extract(epoch from pg_postmaster_start_time())")[0][0])
    timeline = c.sql(primary, "SELECT timeline_id FROM pg_control_checkpoint()")[0][0]

    # the replica's agent publishes streaming once its status query saw the walreceiver
    def replica_streaming():
        s, _ = parse(scrape(c.nodes[replica]), scope, replica)
        return one(s, "patroni_postgres_streaming") == "1" and int(one(s, "patroni_xlog_replayed_location")) > 0
    h.wait_until(replica_streaming, 30, msg=f"{replica}'s /metrics to show a streaming replica")
    h.wait_until(lambda: "pgha_leader_lease_age_seconds{" in scrape(c.nodes[primary]), 30,
                 msg=f"{primary}'s /metrics to show its lease age")

    # ---- the primary
    text = scrape(c.nodes[primary])
    s, order = parse(text, scope, primary)
    assert [m for m in order if m.startswith("patroni_")] == PATRONI_METRICS
    assert f'patroni_version{{scope="{scope}",name="{primary}"}} 040006\n' in text
    assert f'patroni_postgres_server_version {{scope="{scope}",name="{primary}"}} {version}\n' in text
    assert "# HELP patroni_primary Value is 1 if this node is the leader, 0 otherwise.\n" \
           "# TYPE patroni_primary gauge\n" in text
    assert one(s, "patroni_postgres_running") == "1"
    assert one(s, "patroni_primary") == "1" and one(s, "patroni_master") == "1"
    assert one(s, "patroni_replica") == "0" and one(s, "patroni_standby_leader") == "0"
    assert int(one(s, "patroni_xlog_location")) > 0
    assert one(s, "patroni_xlog_received_location") == "0" and one(s, "patroni_xlog_replayed_location") == "0"
    assert one(s, "patroni_xlog_replayed_timestamp") == "0"
    assert one(s, "patroni_postgres_streaming") == "0"
    assert one(s, "patroni_cluster_unlocked") == "0" and one(s, "patroni_is_paused") == "0"
    assert int(one(s, "patroni_postgres_timeline")) == timeline
    assert STATE_BLOCK + f'patroni_postgres_state{{scope="{scope}",name="{primary}"}} 5\n' in text
    st = one(s, "patroni_postmaster_start_time")
    assert "." in st and abs(float(st) - start_epoch) < 1e-6, (st, start_epoch)
    assert abs(int(one(s, "patroni_dcs_last_seen")) - time.time()) < 30
    # pgha's own
    assert int(one(s, "pgha_ha_cycle_duration_seconds_count")) > 0
    assert s["pgha_ha_cycle_duration_seconds_bucket"][('le="+Inf"',)] == one(s, "pgha_ha_cycle_duration_seconds_count")
    assert 0 <= float(one(s, "pgha_leader_lease_age_seconds")) < 20
    assert one(s, "pgha_ttl_seconds") == "20" and one(s, "pgha_loop_wait_seconds") == "2"
    assert int(one(s, "pgha_dcs_requests_total")) > 0
    assert float(one(s, "pgha_dcs_request_seconds_total")) > 0
    # the earlier scrapes are counted (a request is counted once answered), an unknown path as "other"
    assert int(s["pgha_rest_requests_total"][('endpoint="metrics"', 'code="200"')]) >= 1
    c.nodes[primary].rest("GET", "/no-such-endpoint/x")
    s2, _ = parse(scrape(c.nodes[primary]), scope, primary)
    assert any(k[0] == 'endpoint="other"' for k in s2["pgha_rest_requests_total"]), s2["pgha_rest_requests_total"]
    check_promtool(text, primary)

    # ---- the replica
    text = scrape(c.nodes[replica])
    s, order = parse(text, scope, replica)
    assert [m for m in order if m.startswith("patroni_")] == PATRONI_METRICS
    assert f'patroni_postgres_server_version {{scope="{scope}",name="{replica}"}} {version}\n' in text
    assert one(s, "patroni_postgres_running") == "1"
    assert one(s, "patroni_primary") == "0" and one(s, "patroni_master") == "0"
    assert one(s, "patroni_replica") == "1"
    assert one(s, "patroni_xlog_location") == "0"
    assert int(one(s, "patroni_xlog_received_location")) >= int(one(s, "patroni_xlog_replayed_location")) > 0
    assert one(s, "patroni_postgres_streaming") == "1" and one(s, "patroni_postgres_in_archive_recovery") == "0"
    assert one(s, "patroni_xlog_paused") == "0" and one(s, "patroni_cluster_unlocked") == "0"
    assert int(one(s, "patroni_postgres_timeline")) == timeline
    assert one(s, "patroni_postgres_state") == "5"
    assert "pgha_leader_lease_age_seconds" not in s  # only the lock holder has one
    assert int(one(s, "pgha_dcs_requests_total")) > 0
    check_promtool(text, replica)


def test_switchover_counts_a_promotion_and_a_demotion(cluster):
    c = cluster
    old = c.check_healthy()
    new = other(old)
    h.wait_until(lambda: (c.member(new) or {}).get("replication_state") == "streaming", 30,
                 msg=f"members/{new} to be streaming")
    before_old, _ = parse(scrape(c.nodes[old]), c.scope, old)
    before_new, _ = parse(scrape(c.nodes[new]), c.scope, new)
    c.etcd.put(c.key("failover"), f'{{"leader":"{old}","member":"{new}"}}')
    assert c.wait_leader(60, exclude=(old,)) == new
    h.wait_until(lambda: c.is_primary(new), 60, msg=f"{new} to be a primary")

    def primary_metrics():
        s, _ = parse(scrape(c.nodes[new]), c.scope, new)
        return s if one(s, "patroni_primary") == "1" and "pgha_leader_lease_age_seconds" in s else None
    s_new = h.wait_until(primary_metrics, 30, msg=f"{new}'s /metrics to show a primary")

    def delta(after, before, metric, labels=()):
        return int(after[metric][labels]) - int(before[metric][labels])

    # the old primary publishes at the end of the cycle that demoted it (stop, a pause, then following)
    def demoted_metrics():
        s, _ = parse(scrape(c.nodes[old]), c.scope, old)
        return s if one(s, "patroni_primary") == "0" and "pgha_leader_lease_age_seconds" not in s else None
    s_old = h.wait_until(demoted_metrics, 30, msg=f"{old}'s /metrics to show it demoted")
    assert delta(s_new, before_new, "pgha_promotions_total") == 1
    assert delta(s_old, before_old, "pgha_promotions_total") == 0
    assert delta(s_old, before_old, "pgha_demotions_total", ('mode="graceful"',)) == 1
    for labels in s_new["pgha_demotions_total"]:
        assert delta(s_new, before_new, "pgha_demotions_total", labels) == 0
    c.wait_streaming(new, [old], 120)  # leave the cluster healthy
