"""The reference deployment (systemd/, conf/, scripts/grafana-dashboard.py) checked by the tools that will read it:
systemd-analyze verify, promtool check config / check rules / test rules (every alert firing and not firing),
haproxy -c, keepalived --config-test, amtool check-config, pgha --validate-config, etcd's own flag list, and the
Grafana dashboard's and the alert rules' metric names against a live pgha's /metrics and a live etcd's.

Fast (seconds), except the last test, which starts a one-node pgha cluster (~10 s). The tools come from
Debian packages scripts/install-deps.sh installs (prometheus, prometheus-alertmanager, haproxy, keepalived,
systemd); a missing tool fails the test rather than skipping it."""

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

import pghatest as h

ROOT = h.util.repo_root()
CONF = os.path.join(ROOT, "conf")
PROM = os.path.join(CONF, "prometheus")
UNITS = ("pgha.service", "pgha@.service")
# Patroni's minimum ttl: the systemd watchdog must fire well before any lease could expire
MIN_TTL = 20


def tool(name):
    path = shutil.which(name)
    assert path, f"{name} is not installed (scripts/install-deps.sh installs it)"
    return path


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kw)


def load_yaml(*parts):
    with open(os.path.join(CONF, *parts)) as f:
        return yaml.safe_load(f)


def rule_files():
    return sorted(os.path.join(PROM, "rules", f) for f in os.listdir(os.path.join(PROM, "rules")) if f.endswith(".yml"))


def all_rules():
    out = []
    for path in rule_files():
        with open(path) as f:
            for g in yaml.safe_load(f)["groups"]:
                out.extend(g["rules"])
    return out


# ------------------------------------------------------------------------------------------------ systemd


def unit_settings(path):
    settings = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", "[")) and "=" in line:
                k, v = line.split("=", 1)
                settings.setdefault(k, []).append(v)
    return settings


def test_systemd_units_verify(tmp_path):
    """systemd-analyze verify finds nothing to say about either unit (it exits 0 even for unknown keys, so its
    output must be empty). The binary path is pointed at the build: verify checks that ExecStart exists."""
    sa = tool("systemd-analyze")
    pgha_bin, _ = h.pgha_binaries(required=False)
    if not os.access(pgha_bin, os.X_OK):
        pgha_bin = "/bin/true"  # verify checks only that the command is executable
    names = []
    for unit in UNITS:
        with open(os.path.join(ROOT, "systemd", unit)) as f:
            text = f.read().replace("/usr/local/bin/pgha", pgha_bin)
        name = unit.replace("@.", "@main.")  # a template is verified as one of its instances
        (tmp_path / name).write_text(text)
        names.append(str(tmp_path / name))
    p = run([sa, "verify", *names])
    assert p.returncode == 0 and not (p.stdout + p.stderr).strip(), f"systemd-analyze verify:\n{p.stdout}{p.stderr}"


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_unit_settings(unit):
    s = unit_settings(os.path.join(ROOT, "systemd", unit))
    one = {k: v[-1] for k, v in s.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["User"] == "postgres" and one["Group"] == "postgres"
    assert one["KillMode"] == "process"
    assert one["Restart"] == "on-failure"
    watchdog = int(one["WatchdogSec"])
    assert watchdog == 10 and watchdog <= MIN_TTL / 2, "WatchdogSec must stay well below ttl"
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    # hardening that PostgreSQL survives; none of what would break it
    for key in ("NoNewPrivileges", "ProtectSystem", "ProtectKernelTunables", "ProtectControlGroups",
                "RestrictSUIDSGID", "LockPersonality"):
        assert key in one, key
    for key in ("PrivateTmp", "PrivateDevices", "MemoryDenyWriteExecute", "DevicePolicy", "ProtectClock"):
        assert key not in one, f"{key} breaks PostgreSQL or the watchdog device"
    if unit == "pgha@.service":
        assert "PGHA_CONFIG=/etc/pgha/%i.yml" in s["Environment"]


# ------------------------------------------------------------------------------------------------ Prometheus


def test_promtool_check_config():
    p = run([tool("promtool"), "check", "config", os.path.join(PROM, "prometheus.yml")])
    assert p.returncode == 0, p.stdout + p.stderr
    n_rules = len(rule_files())
    assert f"SUCCESS: {n_rules} rule files found" in p.stdout + p.stderr
    # the file_sd target files Prometheus will read
    cfg = load_yaml("prometheus", "prometheus.yml")
    files = [f for job in cfg["scrape_configs"] for sd in job.get("file_sd_configs", []) for f in sd["files"]]
    files += [f for am in cfg["alerting"]["alertmanagers"] for sd in am.get("file_sd_configs", []) for f in sd["files"]]
    assert {"pgha", "etcd", "node", "postgres"} <= {job["job_name"] for job in cfg["scrape_configs"]}
    for rel in files:
        groups = load_yaml("prometheus", rel)
        assert isinstance(groups, list) and groups, rel
        for g in groups:
            assert set(g) <= {"targets", "labels"}, rel
            for t in g["targets"]:
                assert re.fullmatch(r"[0-9a-z.-]+:\d+", t), f"{rel}: {t}"


def test_promtool_check_rules():
    p = run([tool("promtool"), "check", "rules", *rule_files()])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "WARNING" not in p.stdout + p.stderr


def test_promtool_test_rules():
    tests = sorted(os.path.join(PROM, "tests", f) for f in os.listdir(os.path.join(PROM, "tests")))
    p = run([tool("promtool"), "test", "rules", *tests], cwd=os.path.join(PROM, "tests"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("SUCCESS") == len(tests), p.stdout


def test_every_alert_is_tested_firing_and_not_firing():
    """Each alert of the rule files has a promtool case where it fires and one where it does not; each rule
    file is loaded by a test file; every alert has a severity, a summary and a description."""
    alerts = {r["alert"]: r for r in all_rules() if "alert" in r}
    required = {"PghaNoLeader", "PghaLeaderChanged", "PghaMultiplePrimaries", "PghaReplicationLag",
                "PghaNoSynchronousStandby", "PghaDcsUnreachable", "PghaPendingRestart", "PghaPausedTooLong",
                "PghaAgentDown", "EtcdNoLeader", "EtcdFrequentLeaderChanges", "EtcdMemberDown",
                "EtcdHighFsyncDuration", "EtcdHighCommitDuration", "EtcdDatabaseSizeNearQuota"}
    assert required <= set(alerts), sorted(required - set(alerts))
    for name, r in alerts.items():
        assert r["labels"]["severity"] in ("critical", "warning", "info"), name
        assert r["annotations"].get("summary") and r["annotations"].get("description"), name
    firing, quiet, loaded = set(), set(), set()
    tdir = os.path.join(PROM, "tests")
    for f in os.listdir(tdir):
        doc = load_yaml("prometheus", "tests", f)
        loaded |= {os.path.normpath(os.path.join(tdir, rf)) for rf in doc["rule_files"]}
        for t in doc["tests"]:
            for case in t.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert set(rule_files()) <= loaded
    assert not set(alerts) - firing, f"never tested firing: {sorted(set(alerts) - firing)}"
    assert not set(alerts) - quiet, f"never tested not firing: {sorted(set(alerts) - quiet)}"


# ------------------------------------------------------------------------------------------------ Alertmanager


def define_block(text, name):
    m = re.search(r'(\{\{ define "' + re.escape(name) + r'" -\}\}.*?\{\{- end \}\})', text, re.S)
    assert m, f"no define {name}"
    return m.group(1)


def test_alertmanager_config_and_telegram_template(tmp_path):
    """amtool accepts the Alertmanager configuration and renders the Telegram message; Grafana's contact
    point template is the same text."""
    amtool = tool("amtool")
    with open(os.path.join(CONF, "alertmanager", "alertmanager.yml")) as f:
        text = f.read()
    tmpl = os.path.join(CONF, "alertmanager", "telegram.tmpl")
    cfg = tmp_path / "alertmanager.yml"
    cfg.write_text(text.replace("/etc/prometheus/alertmanager_templates/*.tmpl", tmpl))
    p = run([amtool, "check-config", str(cfg)])
    assert p.returncode == 0 and "1 templates" in p.stdout, p.stdout + p.stderr
    assert "CHANGE-ME" in text, "secrets must stay placeholders"
    p = run([amtool, "template", "render", f"--template.glob={tmpl}",
             '--template.text={{ template "pgha.telegram.message" . }}'])
    assert p.returncode == 0 and "RESOLVED" in p.stdout, p.stdout + p.stderr
    with open(tmpl) as f:
        am_block = define_block(f.read(), "pgha.telegram.message")
    grafana = load_yaml("grafana", "provisioning", "alerting", "telegram.yml")
    assert define_block(grafana["templates"][0]["template"], "pgha.telegram.message") == am_block
    settings = grafana["contactPoints"][0]["receivers"][0]["settings"]
    assert settings["bottoken"].startswith("$") and settings["chatid"].startswith("$"), "secrets from the environment"


# ------------------------------------------------------------------------------------------------ HAProxy, keepalived


def test_haproxy_config():
    p = run([tool("haproxy"), "-c", "-f", os.path.join(CONF, "haproxy", "haproxy.cfg")])
    out = p.stdout + p.stderr
    assert p.returncode == 0 and "Configuration file is valid" in out, out
    assert "WARNING" not in out and "ALERT" not in out, out
    with open(os.path.join(CONF, "haproxy", "haproxy.cfg")) as f:
        cfg = f.read()
    assert "default-server inter 3s fall 3 rise 2 on-marked-down shutdown-sessions" in cfg
    assert "option httpchk OPTIONS /primary" in cfg
    assert re.search(r"option httpchk OPTIONS /replica\?lag=\d+MB", cfg)


def keepalived_test(path):
    """keepalived --config-test in a network namespace of its own holding an eth0 (a veth): the configuration
    names eth0, which need not exist on the test machine. Returns (returncode, output)."""
    script = ("ip link add eth0 type veth peer name peer0 && ip link set eth0 up && "
              f"exec keepalived --config-test --use-file {path}")
    p = run(["unshare", "--net", "sh", "-c", script])
    return p.returncode, (p.stdout + p.stderr).strip()


@pytest.mark.needs_root
@pytest.mark.parametrize("host", ["ptrn-1", "ptrn-2"])
def test_keepalived_config(host, tmp_path):
    tool("keepalived")
    path = os.path.join(CONF, "keepalived", f"{host}.conf")
    rc, out = keepalived_test(path)
    if rc in (143, -15) and "v2.2.7" in run(["keepalived", "--version"]).stderr:
        # keepalived 2.2.7 (Debian 12) kills itself during the config test of any file with a vrrp_script
        # and a vrrp_instance (acassen/keepalived#2587, fixed in 2.2.8); the daemon itself is fine. Test the
        # two halves apart: everything but the script, and the script with the global definitions.
        with open(path) as f:
            text = f.read()
        a, b = (re.search(rf"^{w} ", text, re.M).start() for w in ("vrrp_script", "vrrp_instance"))
        a = text.rindex("\n\n", 0, a) + 2  # with the comment above the script
        track = "    track_script {\n        chk_haproxy\n    }\n"
        assert track in text
        (tmp_path / "instance.conf").write_text((text[:a] + text[b:]).replace(track, ""))
        (tmp_path / "script.conf").write_text(text[:b])
        for half in ("instance.conf", "script.conf"):
            rc, out = keepalived_test(tmp_path / half)
            assert rc == 0 and not out, f"keepalived --config-test {half} (from {host}.conf): exit {rc}: {out}"
        return
    assert rc == 0 and not out, f"keepalived --config-test {host}.conf: exit {rc}: {out}"


def test_keepalived_pair_is_consistent():
    """The two hosts share router id, VIP and password; priorities differ; each names the other as peer."""
    confs = {}
    for host in ("ptrn-1", "ptrn-2"):
        with open(os.path.join(CONF, "keepalived", f"{host}.conf")) as f:
            confs[host] = f.read()
    get = lambda text, key: re.findall(rf"^\s*{key}\s+(\S+)", text, re.M)  # noqa: E731
    for key in ("virtual_router_id", "auth_pass", "advert_int", "interface"):
        assert get(confs["ptrn-1"], key) == get(confs["ptrn-2"], key), key
    assert get(confs["ptrn-1"], "priority") != get(confs["ptrn-2"], "priority")
    src1, src2 = get(confs["ptrn-1"], "unicast_src_ip")[0], get(confs["ptrn-2"], "unicast_src_ip")[0]
    assert re.search(rf"unicast_peer {{\s*{re.escape(src2)}\s*}}", confs["ptrn-1"])
    assert re.search(rf"unicast_peer {{\s*{re.escape(src1)}\s*}}", confs["ptrn-2"])


# ------------------------------------------------------------------------------------------------ pgha, etcd


def test_pgha_node_configs_validate():
    """pgha --validate-config accepts every node file; the only warnings are about this machine (the seed's
    addresses and PostgreSQL 16's bin_dir are not here)."""
    pgha_bin, _ = h.pgha_binaries(required=False)
    if not os.access(pgha_bin, os.X_OK):
        pytest.skip(f"pgha is not built ({pgha_bin})")
    files = sorted(f for f in os.listdir(os.path.join(CONF, "pgha")) if f.endswith(".yml"))
    assert files == ["ptrn-1.yml", "ptrn-2.yml", "ptrn-3.yml"]
    names = set()
    for f in files:
        p = run([pgha_bin, "--validate-config", os.path.join(CONF, "pgha", f)])
        assert p.returncode == 0, p.stdout + p.stderr
        for line in p.stderr.splitlines():
            assert re.search(r"is not configured on this host|bin_dir: directory .* does not exist", line), line
        cfg = load_yaml("pgha", f)
        names.add(cfg["name"])
        assert cfg["bootstrap"]["dcs"]["ttl"] >= cfg["bootstrap"]["dcs"]["loop_wait"] + \
            2 * cfg["bootstrap"]["dcs"]["retry_timeout"]
    assert names == {"ptrn-1", "ptrn-2", "ptrn-3"}


def test_etcd_environment_files():
    """Every ETCD_* variable is one of etcd's flags (etcd reads --flag-name as ETCD_FLAG_NAME)."""
    p = run([tool("etcd"), "--help"])
    flags = set(re.findall(r"^\s+--([a-z0-9-]+)", p.stdout + p.stderr, re.M))
    assert "initial-cluster" in flags
    members = {}
    for f in sorted(os.listdir(os.path.join(CONF, "etcd"))):
        env = {}
        with open(os.path.join(CONF, "etcd", f)) as fh:
            for line in fh:
                line = line.strip()
                if line and not line.startswith("#"):
                    k, v = line.split("=", 1)
                    assert k.startswith("ETCD_") and k[5:].lower().replace("_", "-") in flags, f"{f}: {k}"
                    env[k] = v
        members[env["ETCD_NAME"]] = env
    assert set(members) == {"ptrn-1", "ptrn-2", "ptrn-3"}
    initial = {e["ETCD_INITIAL_CLUSTER"] for e in members.values()}
    assert len(initial) == 1, "every member must start with the same initial cluster"
    initial = initial.pop().split(",")
    for name, e in members.items():
        assert f"{name}={e['ETCD_INITIAL_ADVERTISE_PEER_URLS']}" in initial
        assert e["ETCD_ADVERTISE_CLIENT_URLS"].split(":")[1] == e["ETCD_INITIAL_ADVERTISE_PEER_URLS"].split(":")[1]


# ------------------------------------------------------------------------------------------------ Grafana


def dashboard():
    with open(os.path.join(CONF, "grafana", "dashboards", "pgha.json")) as f:
        return json.load(f)


def dashboard_exprs():
    d = dashboard()
    exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in d["annotations"]["list"] if "expr" in a]
    exprs += [v["query"]["query"] for v in d["templating"]["list"] if isinstance(v.get("query"), dict)]
    return exprs


def test_grafana_dashboard_and_provisioning():
    p = run(["/usr/bin/python3", os.path.join(ROOT, "scripts", "grafana-dashboard.py"), "--check"])
    assert p.returncode == 0, p.stderr
    d = dashboard()
    assert d["uid"] and {v["name"] for v in d["templating"]["list"]} == {"datasource", "scope", "name"}
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert p["targets"], p["title"]
    assert len(dashboard_exprs()) >= 20
    ds = load_yaml("grafana", "provisioning", "datasources", "prometheus.yml")
    assert ds["apiVersion"] == 1 and ds["datasources"][0]["type"] == "prometheus"
    prov = load_yaml("grafana", "provisioning", "dashboards", "pgha.yml")
    assert prov["providers"][0]["type"] == "file"


# ------------------------------------------------------------------------------------------------ live metrics

METRIC = re.compile(r"\b((?:patroni|pgha|etcd)_[a-z0-9_]+)\b")


def sample_names(text):
    return {re.split(r"[ {]", line, 1)[0] for line in text.splitlines() if line and not line.startswith("#")}


@pytest.fixture
def one_node(etcd_cluster, pgha_node_factory, tmp_base, unique_name):
    rest, pg = h.allocate_ports(2)
    node = pgha_node_factory(h.make_node_config("node1", unique_name, etcd_cluster.endpoints, pg, rest, tmp_base))
    node.start()
    h.wait_until(lambda: node.rest("GET", "/primary").status_code == 200, 90, msg="node1 to run as the primary")
    return node


@pytest.mark.needs_root
def test_dashboard_and_rules_name_only_exported_metrics(one_node, etcd_cluster):
    """Every metric a dashboard query or an alert rule names is in a live exposition: pgha's /metrics (a
    one-node cluster's primary, which publishes every metric, the lease age included) for patroni_* and
    pgha_*, an etcd 3.4 member's /metrics for etcd_*."""
    h.wait_until(lambda: "pgha_leader_lease_age_seconds{" in one_node.rest("GET", "/metrics").text, 30,
                 msg="the lease age in /metrics")
    pgha = sample_names(one_node.rest("GET", "/metrics").text)
    r = h.http_get(etcd_cluster.client_urls[0] + "/metrics", timeout=5)
    assert r.status_code == 200
    etcd = sample_names(r.text)
    exported = pgha | etcd
    used = {}
    for where, exprs in (("dashboard", dashboard_exprs()), ("rules", [r["expr"] for r in all_rules()])):
        for e in exprs:
            for m in METRIC.findall(e):
                used.setdefault(m, where)
    assert any(m.startswith("etcd_") for m in used) and any(m.startswith("pgha_") for m in used)
    missing = {m: where for m, where in used.items() if m not in exported}
    assert not missing, f"named but not exported: {missing}"
