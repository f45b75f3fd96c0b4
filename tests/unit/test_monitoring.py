"""deploy/prometheus/alerts.yml and deploy/grafana/dashboards/refex.json against the metrics the
services export: a renamed metric fails here, not in a silent panel or an alert that can never
fire. No Prometheus needed (tests/e2e/test_prometheus.py runs promtool and a real server)."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
import yaml

from tests.monitoring import (
    ALERTS,
    ALERTS_TEST,
    PROMETHEUS_OWN,
    alert_rules,
    dashboard,
    dashboard_queries,
    exported_names,
    metric_names,
    panels,
)

# The labels a series carries here: the scrape's own, then the metrics' (contract vocabularies
# and types, never an id; shared/metrics.py). `periodic_job`: a periodic job's name, renamed by
# Prometheus because its own `job` (the service) takes precedence; `le`: histogram buckets.
SERIES_LABELS = {"job", "instance", "topic", "error_type", "periodic_job"}
NON_PERSONAL_LABELS = SERIES_LABELS | {
    "state",
    "reason",
    "channel",
    "outcome",
    "le",
    "alertname",
    "alertstate",
    "severity",
}
# What the issue asks the dashboard to show (docs/operations.md, the metrics).
WATCHED = {
    "refex_consumer_lag_records",
    "refex_consumer_batch_records_bucket",
    "refex_consumer_batch_duration_seconds_bucket",
    "refex_outbox_unsent_rows",
    "refex_outbox_oldest_unsent_age_seconds",
    "refex_dead_letters_total",
    "refex_delivery_queue_messages",
    "refex_delivery_attempts_total",
    "refex_webhook_endpoints_disabled",
    "refex_referrals_open",
    "refex_unmet_needs",
    "refex_referral_deadlines_missed_total",
    "refex_referral_reroutes_total",
    "process_resident_memory_bytes",
}
# ...and the alerts to raise.
ALERTED = {
    "RefexTargetDown",
    "RefexConsumerLagGrowing",
    "RefexOutboxOldestUnsentAgeHigh",
    "RefexDeadLettersWritten",
    "RefexWebhookEndpointDisabled",
    "RefexDeadlinesMissedHigh",
}


@pytest.fixture(scope="module")
def exported() -> set[str]:
    return exported_names() | PROMETHEUS_OWN


def test_the_metric_names_of_an_expression_are_found() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (job, le) (rate(a_bucket{job=~"$service"}'
        "[$__rate_interval]))) and on (job) b offset 10m unless max without (instance) (c)"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c"}


def test_every_dashboard_query_reads_metrics_the_services_export(exported: set[str]) -> None:
    queries = dashboard_queries()
    assert queries
    for title, expr in queries:
        names = metric_names(expr)
        assert names, f"{title}: {expr} reads no metric"
        assert names <= exported, f"{title}: no service exports {sorted(names - exported)}"


def test_the_dashboard_shows_what_operations_watch() -> None:
    shown = {name for _, expr in dashboard_queries() for name in metric_names(expr)}
    assert shown >= WATCHED, f"no panel for {sorted(WATCHED - shown)}"


def test_every_panel_reads_the_provisioned_prometheus_and_has_its_own_place() -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    top = board["panels"]
    ids = [p["id"] for p in top] + [q["id"] for p in top for q in p.get("panels", [])]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
    for panel in panels(board):
        assert panel["title"] and panel["description"], panel
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]


def test_the_dashboard_groups_and_names_series_by_labels_without_personal_data() -> None:
    for panel in panels():
        for target in panel["targets"]:
            legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            grouped = {
                label.strip()
                for clause in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", target["expr"])
                for label in clause.split(",")
            }
            used = legend | grouped
            assert used <= NON_PERSONAL_LABELS, f"{panel['title']}: {used - NON_PERSONAL_LABELS}"


def test_every_alert_reads_metrics_the_services_export(exported: set[str]) -> None:
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        assert names and names <= exported, (rule["alert"], sorted(names - exported))


def test_the_alerts_the_issue_asks_for_exist() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    assert set(names) >= ALERTED, sorted(ALERTED - set(names))


def test_every_alert_says_how_urgent_it_is_and_what_to_run() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description"}, rule["alert"]
        assert "\n" not in annotations["summary"], "one line, as a pager shows it"
        # a command the engineer paged can run: in backquotes, under compose
        commands = re.findall(r"`([^`]+)`", annotations["description"])
        assert any(c.startswith("docker compose") for c in commands), rule["alert"]


def test_alert_messages_name_only_labels_without_personal_data() -> None:
    for rule in alert_rules():
        text = " ".join(rule["annotations"].values())
        labels = set(re.findall(r"\$labels\.(\w+)", text))
        assert labels <= SERIES_LABELS, (rule["alert"], labels - SERIES_LABELS)
        assert set(rule["labels"]) == {"severity"}, rule["alert"]


def test_refex_commands_in_the_alerts_exist() -> None:
    """An alert that tells the engineer to run a command the CLI does not have."""
    import typer.main

    import ops.cli

    groups = typer.main.get_command(ops.cli.app).commands  # type: ignore[attr-defined]
    text = ALERTS.read_text()
    found = re.findall(r"refex (platform|intake|referral|notification|evidence) ([a-z-]+)", text)
    assert found
    for group, command in found:
        assert command in groups[group].commands, f"refex {group} {command}"


def test_every_alert_has_a_rule_test_where_it_fires_and_one_where_it_does_not() -> None:
    spec = yaml.safe_load(ALERTS_TEST.read_text())
    assert spec["rule_files"] == [ALERTS.name]
    outcomes: dict[str, set[bool]] = defaultdict(set)
    for test in spec["tests"]:
        for case in test.get("alert_rule_test", []):
            outcomes[case["alertname"]].add(bool(case["exp_alerts"]))
    for rule in alert_rules():
        assert outcomes[rule["alert"]] == {True, False}, rule["alert"]
