"""`deploy/grafana/warden.json` and `deploy/prometheus/`: the dashboard is a Grafana dashboard
model whose every query parses (promtool) and names only metrics a real daemon endpoint
exposes; the alert rules pass `promtool check rules`, their unit tests (`promtool test
rules`) and `promtool check config`. Without promtool these are skipped with the reason,
except under CI, where promtool is installed by `.ci/run` and its absence fails."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from sqlmodel import Session

from storage.audit import record_event
from storage.db import make_engine
from tests.support import ROOT
from tests.watcher.cli.test_status_cli import (
    BIAS_FIGURES,
    DRIFT_FIGURES,
    QUALITY_FIGURES,
    seed_rows,
)
from watcher.config import HttpConfig
from watcher.daemon.endpoint import DaemonEndpoint
from watcher.daemon.metrics import WardenMetrics, open_incident_counts
from watcher.intake.consumer import IngestStats

DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "warden.json"
RULES = DEPLOY / "prometheus" / "alerts.yml"
NAME = re.compile(r"\b(warden_[a-z_]+)\b")
PANEL_TYPES = {"row", "timeseries", "stat", "gauge", "table", "bargauge", "text"}
PANELS_WANTED = (
    "intake rate",
    "lag",
    "dead letters",
    "duration",
    "drift",
    "quality",
    "group gaps",
    "open incidents",
    "swaps",
)
ALERTS_WANTED = (  # intake stopped, lag growing, quality below bound, critical, heartbeat
    "WardenIntakeStopped",
    "WardenIngestLagGrowing",
    "WardenQualityBelowBound",
    "WardenIncidentCritical",
    "WardenHeartbeatMissing",
    "WardenDaemonDown",
)


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is required under CI (.ci/run installs the prometheus package)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return found


def run(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def dashboard_queries(dashboard: dict) -> list[str]:
    """Every PromQL expression of the dashboard: panels, template variables, annotations."""
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    for var in dashboard["templating"]["list"]:
        query = var.get("query")
        if isinstance(query, dict):
            found = re.fullmatch(r"label_values\((\w+), *\w+\)", query["query"])
            assert found, query
            exprs.append(found.group(1))
    return exprs


def rule_queries() -> list[str]:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def test_the_dashboard_is_a_grafana_dashboard_model():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] == "model-warden" and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["model"]["includeAll"] and variables["model"]["multi"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    covered: dict[int, set[int]] = {}
    for panel in dashboard["panels"]:
        assert panel["type"] in PANEL_TYPES, panel["type"]
        pos = panel["gridPos"]
        assert all(isinstance(pos[k], int) for k in "xywh") and pos["x"] + pos["w"] <= 24
        for y in range(pos["y"], pos["y"] + pos["h"]):  # panels never overlap
            cells = set(range(pos["x"], pos["x"] + pos["w"]))
            assert not covered.get(y, set()) & cells, panel["title"]
            covered.setdefault(y, set()).update(cells)
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"] and panel["description"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for wanted in PANELS_WANTED:
        assert wanted in titles, wanted


def test_every_dashboard_query_parses(tmp_path):
    """Each query, with Grafana's variables filled in, as a recording rule: promtool parses it."""
    tool = promtool()
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    rules = [
        {
            "record": f"dashboard:query_{i}",
            "expr": expr.replace("$__rate_interval", "5m").replace("$model", ".*"),
        }
        for i, expr in enumerate(dashboard_queries(dashboard))
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in run(tool, "check", "rules", str(path))


def test_the_alert_rules_pass_promtool_and_their_unit_tests(tmp_path):
    tool = promtool()
    assert "SUCCESS: 9 rules found" in run(tool, "check", "rules", str(RULES))
    assert "SUCCESS" in run(tool, "test", "rules", "alerts_test.yml", cwd=RULES.parent)
    names = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    for wanted in ALERTS_WANTED:
        assert wanted in names
        assert f"alertname: {wanted}" in (RULES.parent / "alerts_test.yml").read_text()
    # the example scrape config, with its token file pointed at a real file
    config = (RULES.parent / "prometheus.yml").read_text()
    token = tmp_path / "warden-token"
    token.write_text("a-token\n")
    (tmp_path / "prometheus.yml").write_text(
        config.replace("/etc/prometheus/warden-token", str(token))
    )
    shutil.copy(RULES, tmp_path / "alerts.yml")
    assert "SUCCESS" in run(tool, "check", "config", str(tmp_path / "prometheus.yml"))


def metric_names(exposition: str) -> set[str]:
    """Every series name a scrape offers: each family, with a histogram's _bucket/_sum/_count."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.M):
        names.add(name)
        if kind == "histogram":
            names.update(f"{name}{s}" for s in ("_bucket", "_sum", "_count"))
    return names


def assert_named_metrics_exist(exposition: str) -> None:
    """Every warden metric the dashboard and the rules name is in this scrape."""
    named = set()
    for expr in [*dashboard_queries(json.loads(DASHBOARD.read_text())), *rule_queries()]:
        named.update(NAME.findall(expr))
    assert len(named) >= 14, named
    missing = named - metric_names(exposition)
    assert not missing, f"named in deploy/ but not in /metrics: {sorted(missing)}"


def test_every_metric_named_in_deploy_exists_in_a_real_scrape(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'warden.db'}")
    seed_rows(engine)
    with Session(engine) as session:
        record_event(session, "swapped", actor="daemon", model="credit", subject="credit-v2")
        record_event(session, "rolled_back", actor="operator", model="credit", subject="v2")
        session.commit()
    stats = IngestStats(consumed=10, predictions=8, labels=2, lag=3, state="consuming")
    metrics = WardenMetrics(
        intake=lambda: stats, incidents=lambda: open_incident_counts(engine), store=engine
    )
    metrics.observe_check("credit", "drift", 1.0, False, False, DRIFT_FIGURES)
    quality = {**QUALITY_FIGURES, "headline": "accuracy", "bound": 0.811}
    metrics.observe_check("credit", "error", 0.5, False, False, quality)
    metrics.observe_check("credit", "bias", 0.4, False, False, BIAS_FIGURES)
    server = DaemonEndpoint(
        HttpConfig(port=0), status=dict, ready=lambda: (True, "ok"), metrics=metrics
    )
    with server:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert_named_metrics_exist(text)
    assert 'warden_swaps_total{model="credit"} 1.0' in text
    assert 'warden_rollbacks_total{model="credit"} 1.0' in text
    assert 'warden_quality_bound{metric="accuracy",model="credit"} 0.811' in text
    assert "warden_intake_consuming 1.0" in text
    assert 'warden_daemon_heartbeat_age_seconds{daemon="host-a:4242:abcd"}' in text
    engine.dispose()
