"""The monitoring files of deploy/ (Prometheus' alerts, Grafana's dashboard) as the tests read
them: their PromQL expressions, the metric names those read, and the names the services
export (tests/unit/test_monitoring.py checks them statically, tests/e2e/test_prometheus.py
against a real Prometheus scraping the running services)."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "refex.json"

# What Prometheus adds itself: the scrape's health and the alerts' own series.
PROMETHEUS_OWN = {"up", "ALERTS", "ALERTS_FOR_STATE"}
# Grafana's variables, replaced by what they stand for when a real Prometheus is asked.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$service": ".+"}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_OFFSET = re.compile(r"\boffset\s+-?\d+[smhdwy]")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset"}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(board: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every panel of the dashboard, those inside rows included (rows themselves not)."""
    found: list[dict[str, Any]] = []
    for panel in (board or dashboard())["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL expression) of every query of the dashboard."""
    return [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (enough of PromQL for these files: selectors,
    functions, aggregations with by/without, binary operators, offsets)."""
    text = _STRING.sub("", expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    text = _OFFSET.sub("", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        word = match.group()
        if word in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue  # an operator, a function or an aggregation
        if match.start() > 0 and text[match.start() - 1] in "$.":
            continue  # a Grafana variable, a number's part
        names.add(word)
    return names


def for_prometheus(expr: str) -> str:
    """A dashboard expression as Prometheus itself takes it (Grafana's variables replaced)."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def exported_names() -> set[str]:
    """Every sample name a service process exports on /metrics: the shared metrics, referral's
    and notification's own, FastStream's (its Kafka middleware, as shared.kafka.broker makes
    it), and the process collectors'."""
    from faststream.kafka.prometheus import KafkaPrometheusMiddleware
    from prometheus_client import CollectorRegistry

    from shared.metrics import REGISTRY

    for module in ("services.referral.metrics", "services.notification.metrics"):
        importlib.import_module(module)  # their metrics join the process registry

    faststream = CollectorRegistry()
    KafkaPrometheusMiddleware(registry=faststream, app_name="names")
    names = set()
    for registry in (REGISTRY, faststream):
        for family in registry.collect():
            names |= _sample_names(family.name, family.type)
    return names


def _sample_names(name: str, kind: str) -> set[str]:
    """The names of a family's samples (a labelled family without children has none yet)."""
    if kind == "counter":
        return {f"{name}_total", f"{name}_created"}
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_count", f"{name}_sum", f"{name}_created"}
    if kind == "summary":
        return {name, f"{name}_count", f"{name}_sum", f"{name}_created"}
    if kind == "info":
        return {f"{name}_info"}
    return {name}
