#!/usr/bin/env python3
"""Writes conf/grafana/dashboards/pgha.json, the Grafana dashboard of pgha's (and Patroni's) metrics.

    scripts/grafana-dashboard.py            # (re)write the file
    scripts/grafana-dashboard.py --check    # exit 1 when the file differs from what this script writes

The dashboard is kept as this script so that its queries are readable and reviewed in one place;
tests/integration/test_deploy_static.py checks that the JSON is up to date and that every query names
only metrics a live pgha exports. Template variables: datasource, scope (the cluster), name (members).
"""
import json
import os
import sys

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'scope="$scope", name=~"$name"'
SCOPE = 'scope="$scope"'

panels = []
_y = 0
_id = 0


def _next_id():
    global _id
    _id += 1
    return _id


def row(title):
    global _y
    panels.append({"type": "row", "title": title, "id": _next_id(), "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": _y}, "panels": []})
    _y += 1


def _targets(queries):
    out = []
    for i, q in enumerate(queries):
        expr, legend = q if isinstance(q, tuple) else (q, "")
        t = {"datasource": DS, "expr": expr, "refId": chr(ord("A") + i), "range": True}
        if legend:
            t["legendFormat"] = legend
        out.append(t)
    return out


def panel(kind, title, queries, x, w, h, description="", unit=None, decimals=None, thresholds=None,
          mappings=None, options=None, custom=None, minimum=None, instant=False):
    defaults = {}
    if unit:
        defaults["unit"] = unit
    if decimals is not None:
        defaults["decimals"] = decimals
    if minimum is not None:
        defaults["min"] = minimum
    if thresholds:
        defaults["thresholds"] = {"mode": "absolute",
                                  "steps": [{"color": c, "value": v} for v, c in thresholds]}
        defaults["color"] = {"mode": "thresholds"}
    if mappings:
        defaults["mappings"] = mappings
    if custom:
        defaults["custom"] = custom
    p = {"type": kind, "title": title, "id": _next_id(), "datasource": DS,
         "gridPos": {"h": h, "w": w, "x": x, "y": _y},
         "targets": _targets(queries),
         "fieldConfig": {"defaults": defaults, "overrides": []},
         "options": options or {}}
    if instant:
        for t in p["targets"]:
            t["instant"], t["range"] = True, False
    if description:
        p["description"] = description
    panels.append(p)
    return p


def advance(h):
    global _y
    _y += h


def value_map(pairs):
    return [{"type": "value", "options": {str(k): {"text": text, "color": color, "index": i}
                                          for i, (k, text, color) in enumerate(pairs)}}]


STAT = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "background", "graphMode": "none", "textMode": "auto", "justifyMode": "center"}
TS_LEGEND = {"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "max"]},
             "tooltip": {"mode": "multi", "sort": "desc"}}
STATE_OPTS = {"showValue": "auto", "mergeValues": True, "rowHeight": 0.8,
              "legend": {"displayMode": "list", "placement": "bottom"}}

POSTGRES_STATES = ["initdb", "initdb failed", "custom bootstrap", "custom bootstrap failed", "creating replica",
                   "running", "starting", "bootstrap starting", "start failed", "restarting", "restart failed",
                   "stopping", "stopped", "stop failed", "crashed"]

# ---------------------------------------------------------------------------------------- cluster
row("Cluster")
panel("stat", "Primaries", [f"sum(patroni_primary{{{SCOPE}}})"], 0, 4, 4,
      "Members running as the primary: exactly 1 is healthy (0: no leader, 2: split brain).",
      thresholds=[(None, "red"), (1, "green"), (2, "red")], options=STAT)
panel("stat", "Leader key", [f"max(patroni_cluster_unlocked{{{SCOPE}}})"], 4, 4, 4,
      "Whether a member holds the leader key.",
      mappings=value_map([(0, "held", "green"), (1, "UNLOCKED", "red")]), options=STAT)
panel("stat", "Members reporting", [f"count(patroni_version{{{SCOPE}}})"], 8, 4, 4,
      "Agents whose /metrics Prometheus scrapes.", thresholds=[(None, "red"), (2, "orange"), (3, "green")],
      options=STAT)
panel("stat", "Synchronous standbys",
      [f"sum(patroni_sync_standby{{{SCOPE}}}) + sum(patroni_quorum_standby{{{SCOPE}}})"], 12, 4, 4,
      "Replicas that are synchronous (or quorum) standbys right now (0 is expected outside synchronous mode).",
      thresholds=[(None, "text")], options=STAT)
panel("stat", "Timeline", [f"max(patroni_postgres_timeline{{{SCOPE}}})"], 16, 4, 4,
      "The cluster's timeline: it goes up by one with every failover or switchover.",
      thresholds=[(None, "blue")], options=STAT)
panel("stat", "Maintenance mode", [f"max(patroni_is_paused{{{SCOPE}}})"], 20, 4, 4,
      "Paused: no automatic failover (pgha-ctl pause / resume).",
      mappings=value_map([(0, "off", "green"), (1, "PAUSED", "orange")]), options=STAT)
advance(4)
panel("state-timeline", "Role", [(f"patroni_primary{{{SEL}}} + 2 * patroni_replica{{{SEL}}}", "{{name}}")],
      0, 12, 7, "Who was the primary when: failovers and switchovers show as a change of colour.",
      mappings=value_map([(0, "other", "grey"), (1, "primary", "green"), (2, "replica", "blue")]),
      options=STATE_OPTS, custom={"fillOpacity": 80, "lineWidth": 0})
panel("state-timeline", "PostgreSQL state", [(f"patroni_postgres_state{{{SEL}}}", "{{name}}")], 12, 12, 7,
      "The state each agent reports for its PostgreSQL (Patroni 4.1's patroni_postgres_state).",
      mappings=value_map([(i, s, "green" if s == "running" else ("red" if "fail" in s or s == "crashed"
                                                                 else "orange"))
                          for i, s in enumerate(POSTGRES_STATES)]),
      options=STATE_OPTS, custom={"fillOpacity": 80, "lineWidth": 0})
advance(7)

# ---------------------------------------------------------------------------------------- replication
row("Replication")
lag = (f"(max by (scope) (patroni_xlog_location{{{SCOPE}}}) - on (scope) group_right "
       f"patroni_xlog_received_location{{{SEL}}}) and on (scope, name) patroni_replica{{{SEL}}} == 1")
panel("timeseries", "Replication lag (received)", [(lag, "{{name}}")], 0, 12, 8,
      "WAL the primary has written that a replica has not received yet. HAProxy's replica port leaves out "
      "replicas more than 16 MB behind; alert PghaReplicationLag.", unit="bytes", minimum=0, options=TS_LEGEND)
replay = (f"(max by (scope) (patroni_xlog_location{{{SCOPE}}}) - on (scope) group_right "
          f"patroni_xlog_replayed_location{{{SEL}}}) and on (scope, name) patroni_replica{{{SEL}}} == 1")
panel("timeseries", "Replay lag", [(replay, "{{name}}")], 12, 12, 8,
      "WAL the primary has written that a replica has not replayed yet (a paused replay or long queries on "
      "the replica).", unit="bytes", minimum=0, options=TS_LEGEND)
advance(8)
panel("timeseries", "WAL written", [(f"rate(patroni_xlog_location{{{SCOPE}}}[$__rate_interval]) "
                                     f"and on (scope, name) patroni_primary{{{SCOPE}}} == 1", "{{name}}")],
      0, 8, 7, "WAL bytes per second the primary writes.", unit="Bps", minimum=0, options=TS_LEGEND)
panel("state-timeline", "Streaming", [(f"patroni_postgres_streaming{{{SEL}}}", "{{name}}")], 8, 8, 7,
      "Whether each replica streams WAL from its upstream.",
      mappings=value_map([(0, "no", "orange"), (1, "streaming", "green")]), options=STATE_OPTS,
      custom={"fillOpacity": 80, "lineWidth": 0})
panel("state-timeline", "Synchronous standby", [(f"patroni_sync_standby{{{SEL}}} + 2 * patroni_quorum_standby{{{SEL}}}",
                                                  "{{name}}")], 16, 8, 7,
      "Which replicas are synchronous (or quorum) standbys.",
      mappings=value_map([(0, "async", "grey"), (1, "sync", "green"), (2, "quorum", "green")]),
      options=STATE_OPTS, custom={"fillOpacity": 80, "lineWidth": 0})
advance(7)

# ---------------------------------------------------------------------------------------- agent
row("Agent")
panel("timeseries", "Leader lease age", [(f"pgha_leader_lease_age_seconds{{{SEL}}}", "{{name}}"),
                                         (f"max(pgha_ttl_seconds{{{SCOPE}}})", "ttl")], 0, 8, 8,
      "Seconds since the leader last renewed its lease; it loses the lease at ttl (alert at 70 %).",
      unit="s", minimum=0, options=TS_LEGEND)
panel("timeseries", "HA cycle duration", [
    (f"histogram_quantile(0.99, sum by (name, le) (rate(pgha_ha_cycle_duration_seconds_bucket{{{SEL}}}"
     f"[$__rate_interval])))", "{{name}} p99"),
    (f"pgha_ha_cycle_last_duration_seconds{{{SEL}}}", "{{name}} last")], 8, 8, 8,
    "How long one HA loop cycle takes (observe, decide, act).", unit="s", minimum=0, options=TS_LEGEND)
panel("timeseries", "Time since the DCS was reached", [(f"time() - patroni_dcs_last_seen{{{SEL}}}", "{{name}}"),
                                                     (f"max(pgha_loop_wait_seconds{{{SCOPE}}})", "loop_wait")],
      16, 8, 8, "Seconds since each agent last reached etcd (alert PghaDcsUnreachable at 60 s).", unit="s",
      minimum=0, options=TS_LEGEND)
advance(8)
panel("timeseries", "DCS requests", [
    (f"rate(pgha_dcs_requests_total{{{SEL}}}[$__rate_interval])", "{{name}} requests"),
    (f"rate(pgha_dcs_request_errors_total{{{SEL}}}[$__rate_interval])", "{{name}} errors")], 0, 8, 8,
    "Requests per second to etcd and those that failed.", unit="reqps", minimum=0, options=TS_LEGEND)
panel("timeseries", "DCS request latency (mean)", [
    (f"rate(pgha_dcs_request_seconds_total{{{SEL}}}[$__rate_interval]) / "
     f"rate(pgha_dcs_requests_total{{{SEL}}}[$__rate_interval])", "{{name}}")], 8, 8, 8,
    "Mean time of one request to etcd.", unit="s", minimum=0, options=TS_LEGEND)
panel("timeseries", "DCS traffic and watch", [
    (f"rate(pgha_dcs_sent_bytes_total{{{SEL}}}[$__rate_interval])", "{{name}} sent"),
    (f"rate(pgha_dcs_received_bytes_total{{{SEL}}}[$__rate_interval])", "{{name}} received"),
    (f"increase(pgha_dcs_watch_events_total{{{SEL}}}[$__rate_interval])", "{{name}} watch events"),
    (f"increase(pgha_dcs_watch_reconnects_total{{{SEL}}}[$__rate_interval])", "{{name}} watch reconnects")],
    16, 8, 8, "Bytes per second to and from etcd; events and reconnections of the watch stream.",
    minimum=0, options=TS_LEGEND)
advance(8)
panel("timeseries", "Promotions and demotions", [
    (f"increase(pgha_promotions_total{{{SEL}}}[$__rate_interval])", "{{name}} promoted"),
    (f"sum by (name, mode) (increase(pgha_demotions_total{{{SEL}}}[$__rate_interval]))",
     "{{name}} demoted ({{mode}})")], 0, 8, 8,
    "Promotions (failovers and switchovers won) and demotions by mode.", minimum=0, decimals=0,
    options=TS_LEGEND, custom={"drawStyle": "bars", "fillOpacity": 60})
panel("timeseries", "REST API requests", [
    (f"sum by (name, endpoint, code) (rate(pgha_rest_requests_total{{{SEL}}}[$__rate_interval]))",
     "{{name}} {{endpoint}} {{code}}")], 8, 8, 8,
    "Requests per second to each agent's REST API by endpoint and status (HAProxy's health checks are "
    "OPTIONS /primary and /replica).", unit="reqps", minimum=0, options=TS_LEGEND)
panel("table", "Members", [
    (f"patroni_postgres_server_version{{{SEL}}}", "version"),
    (f"time() - patroni_postmaster_start_time{{{SEL}}}", "uptime"),
    (f"patroni_pending_restart{{{SEL}}}", "pending restart"),
    (f"patroni_version{{{SEL}}}", "agent")], 16, 8, 8,
    "PostgreSQL version, uptime, pending restart, and the agent's Patroni-compatible version per member.",
    instant=True, options={"showHeader": True})
panels[-1]["transformations"] = [
    {"id": "merge", "options": {}},
    {"id": "organize", "options": {
        "excludeByName": {"Time": True, "__name__": True, "instance": True, "job": True, "scope": True,
                          "synchronous_mode": True},
        "renameByName": {"name": "member", "Value #A": "PostgreSQL", "Value #B": "uptime (s)",
                         "Value #C": "pending restart", "Value #D": "agent (Patroni)"}}}]
for t in panels[-1]["targets"]:
    t["format"] = "table"
advance(8)

dashboard = {
    "uid": "pgha-cluster",
    "title": "pgha cluster",
    "description": "PostgreSQL high availability with pgha (or Patroni): roles, replication, the agent and its DCS.",
    "tags": ["pgha", "patroni", "postgresql"],
    "editable": True,
    "graphTooltip": 1,
    "refresh": "30s",
    "schemaVersion": 39,
    "version": 1,
    "time": {"from": "now-6h", "to": "now"},
    "timezone": "browser",
    "annotations": {"list": [
        {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
         "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"},
        {"datasource": DS, "enable": True, "iconColor": "red", "name": "Leader changes",
         "expr": 'ALERTS{alertname="PghaLeaderChanged", alertstate="firing", scope="$scope"}',
         "step": "15s", "titleFormat": "Leader changed", "textFormat": "{{scope}}"}]},
    "templating": {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []},
        {"name": "scope", "label": "Cluster", "type": "query", "datasource": DS,
         "query": {"query": "label_values(patroni_version, scope)", "refId": "scope"},
         "definition": "label_values(patroni_version, scope)", "refresh": 2, "sort": 1, "current": {},
         "hide": 0, "includeAll": False, "multi": False, "options": [], "regex": ""},
        {"name": "name", "label": "Member", "type": "query", "datasource": DS,
         "query": {"query": 'label_values(patroni_version{scope="$scope"}, name)', "refId": "name"},
         "definition": 'label_values(patroni_version{scope="$scope"}, name)', "refresh": 2, "sort": 1,
         "current": {}, "hide": 0, "includeAll": True, "allValue": ".*", "multi": True, "options": [],
         "regex": ""}]},
    "panels": panels,
}

text = json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "conf", "grafana", "dashboards", "pgha.json")
if "--check" in sys.argv[1:]:
    with open(path) as f:
        if f.read() != text:
            print(f"{os.path.normpath(path)} is not what scripts/grafana-dashboard.py writes: run it", file=sys.stderr)
            sys.exit(1)
    sys.exit(0)
with open(path, "w") as f:
    f.write(text)
