"""docs/monitoring/: the Prometheus alert rules pass `promtool check rules` and promtool's unit
tests (each alert fires on the series that should raise it, and only there), and every metric
the rules and the Grafana dashboard use is one proxy/metrics.py really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from proxy.metrics import Metrics
from tests.conftest import ROOT

HERE = Path(__file__).resolve().parent
DOCS = ROOT / "docs" / "monitoring"
RULES = DOCS / "sendwarden-alerts.yml"
DASHBOARD = DOCS / "sendwarden-dashboard.json"
METRIC = re.compile(r"\bsendwarden_[a-z0-9_]+")
promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                              reason="promtool not installed (Debian package prometheus; make sysdeps)")


def exported() -> set[str]:
    """The series names a relay's /metrics can carry, from the registry proxy/metrics.py builds."""
    names = set()
    metrics = Metrics()
    metrics.watch_link_check(HERE / "no-state-dir")  # as the relay does with its state directory
    for family in metrics.registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in doc["panels"] for t in panel["targets"]]
    exprs += [v["definition"] for v in doc["templating"]["list"]]
    return exprs


@promtool
def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rule_expressions())} rules found" in done.stdout


@promtool
def test_each_alert_fires_when_it_should() -> None:
    done = subprocess.run(["promtool", "test", "rules", "sendwarden-alerts.test.yml"], cwd=HERE, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname: (\w+)", (HERE / "sendwarden-alerts.test.yml").read_text(encoding="utf-8")))
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]}
    assert tested == alerts  # every alert has a unit test


def test_the_alerts_cover_what_ops_must_hear_about() -> None:
    exprs = " ".join(rule_expressions())
    for metric in ("sendwarden_quarantine_held", "sendwarden_upstream_up", 'sendwarden_messages_total{action="reject"}',
                   "sendwarden_store_errors_total", "sendwarden_links_dead", "sendwarden_links_check_timestamp_seconds"):
        assert metric in exprs


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_metric_used_is_exported(source: str) -> None:
    exprs = rule_expressions() if source == "rules" else dashboard_expressions()
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used and used <= exported(), used - exported()


def test_the_dashboard_is_importable_grafana_json() -> None:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert doc["__inputs"][0]["name"] == "DS_PROMETHEUS" and doc["uid"] == "sendwarden"
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for panel in doc["panels"]:
        assert panel["targets"] and panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
