"""deploy/prometheus/ with a real Prometheus (Debian's server and promtool, installed by
deploy/local/prometheus.sh) against the running services: promtool accepts the configuration
and the rules and passes their unit tests; the server scrapes every service, sees the numbers
move as one submission flows through, answers every dashboard query, and raises the alerts
from the services' own metrics — a dead letter, a service gone — with no agency, case or person
in any label it stored."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.contracts import topics
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from tests import factories as f
from tests.e2e.conftest import RunningService, stop_service
from tests.e2e.directory import directory
from tests.e2e.kafka_helpers import collect, data_of, headers_of
from tests.e2e.personal_data import MARK, PERSONAL
from tests.monitoring import (
    ALERTS,
    ALERTS_TEST,
    PROMETHEUS_CONFIG,
    dashboard_queries,
    for_prometheus,
    metric_names,
)

pytestmark = pytest.mark.e2e

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
# Intake dead-letters, unread, a record larger than this: how the test makes a dead letter (a
# submission is about 1 KB; the topic itself takes 256 KB).
INTAKE_LIMIT = 16 * 1024
SCRAPED = ("intake", "referral", "notification", "evidence", "gateway")
SERVICE_ENV = {
    # gauges measured twice a second (15 s by default), so each scrape sees them move
    **{
        f"{s}_METRICS_INTERVAL_S": "0.5" for s in ("INTAKE", "REFERRAL", "NOTIFICATION", "EVIDENCE")
    },
    "INTAKE_MAX_MESSAGE_BYTES": str(INTAKE_LIMIT),
}
# Metrics the dashboard reads that this flow never creates: labelled counters or gauges whose
# series appear only with their first event (a delivery attempt, an unmet need, a failed job).
NOT_CAUSED_HERE = {
    "refex_delivery_attempts_total",
    "refex_unmet_needs",
    "refex_periodic_job_failures_total",
}


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is missing: deploy/local/prometheus.sh installs it (make test runs it)"
        )
    return path


def promtool(*args: str) -> str:
    run = subprocess.run([_binary("promtool"), *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"promtool {' '.join(args)}:\n{run.stdout}\n{run.stderr}"
    return run.stdout + run.stderr


@dataclass
class Prometheus:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:  # a bad query: 400 with Prometheus' reason
            body = json.load(error)
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", expr
        return data["result"]  # type: ignore[no-any-return]

    def value(self, expr: str) -> float:
        """The value of a single-series expression, 0 while it has none."""
        result = self.query(expr)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else 0.0

    def alerts(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.api("alerts")["alerts"] if a["labels"]["alertname"] == name]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def until(check: Callable[[], bool], what: str, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.5)


def render_config(ports: dict[str, int], into: Path) -> Path:
    """The compose configuration with the test's services as targets (127.0.0.1 and their own
    metrics ports) and a 1 s rhythm; the very same rule file."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(ports), "one job per service that serves /metrics"
    for name, job in jobs.items():
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[name]}"]}]
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_CONFIG.parent / r) for r in config["rule_files"]]
    path = into / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def prometheus(
    services: dict[str, RunningService],
    evidence: RunningService,
    gateway: RunningService,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Prometheus]:
    """A Prometheus server of its own (its own port and data directory) scraping the five
    services (the gateway on its own metrics port); stopped afterwards whatever happens."""
    port = int(os.environ.get("REFEX_PROMETHEUS_PORT", "28009"))
    if _answers(port):
        pytest.fail(f"port {port} already answers: another Prometheus? (REFEX_PROMETHEUS_PORT)")
    work = tmp_path_factory.mktemp("prometheus")
    ports = {name: s.port for name, s in {**services, "evidence": evidence}.items()}
    ports["gateway"] = int(os.environ["GATEWAY_METRICS_PORT"])
    config = render_config(ports, work)
    promtool("check", "config", str(config))
    log_path = work / "prometheus.log"
    process = subprocess.Popen(
        [
            _binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )
    server = Prometheus(port, process, log_path)
    try:
        deadline = time.monotonic() + 60
        while not _answers(port, "/-/ready"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"prometheus did not start:\n{server.log()[-3000:]}")
            time.sleep(0.3)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(port: int, path: str = "/") -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


# ----- promtool -----


def test_promtool_accepts_the_configuration_and_the_rules_and_their_unit_tests() -> None:
    assert "SUCCESS" in promtool("check", "rules", str(ALERTS))
    assert "SUCCESS" in promtool("check", "config", str(PROMETHEUS_CONFIG))
    # Every alert firing on its trouble and silent on a healthy series (simulated time).
    assert "SUCCESS" in promtool("test", "rules", str(ALERTS_TEST))


def test_the_rules_are_checked_by_the_version_compose_runs() -> None:
    """promtool checks what the compose image evaluates: the same Prometheus release."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    tag = compose["services"]["prometheus"]["image"].rsplit(":", 1)[1]
    run = subprocess.run([_binary("prometheus"), "--version"], capture_output=True, text=True)
    match = re.search(r"version (\d+\.\d+\.\d+)", run.stdout + run.stderr)
    assert match, run.stdout + run.stderr
    assert f"v{match.group(1)}" == tag, "upgrade the image and Debian's package together"


# ----- a real server against the running services -----


async def test_prometheus_sees_a_submission_flow_and_stores_no_one(
    prometheus: Prometheus,
    services: dict[str, RunningService],
    kafka: KafkaConnection,
    database_urls: dict[str, str],
) -> None:
    def targets_up() -> bool:
        active = prometheus.api("targets")["activeTargets"]
        return len(active) == len(SCRAPED) and all(t["health"] == "up" for t in active)

    until(targets_up, "every service scraped")
    jobs = {t["labels"]["job"] for t in prometheus.api("targets")["activeTargets"]}
    assert jobs == set(SCRAPED)

    referrer, provider, listing = await directory(kafka, database_urls)
    moving = {
        "intake received": 'sum(faststream_received_messages_total{job="intake"})',
        "intake relayed": 'sum(refex_outbox_published_total{job="intake"})',
        "referral applied a batch": 'sum(refex_consumer_batch_records_count{job="referral"})',
        "referral relayed": 'sum(refex_outbox_published_total{job="referral"})',
        "notification relayed": 'sum(refex_outbox_published_total{job="notification"})',
    }
    before = {what: prometheus.value(expr) for what, expr in moving.items()}

    submission = f.submission(
        referrer, personal=PERSONAL, profile=f.profile(return_area=listing.service_areas[0])
    )
    sent = f.submission_event(submission)
    await publish_events(kafka, [sent])
    [received] = await collect(
        kafka,
        topics.agency_inbox(provider),
        lambda r: headers_of(r).get("ce_correlationid") == sent.event_id,
    )
    case_id = data_of(received)["case_id"]

    def above(expr: str, was: float) -> Callable[[], bool]:
        return lambda: prometheus.value(expr) > was

    for what, expr in moving.items():
        until(above(expr, before[what]), what)
    until(
        above('sum(refex_referrals_open{job="referral", state="requested"})', 0),
        "an open referral, requested",
    )
    lag = f'refex_consumer_lag_records{{job="notification", topic="{topics.REFERRAL_EVENTS}"}}'

    def caught_up() -> bool:
        result = prometheus.query(lag)
        return bool(result) and all(float(r["value"][1]) == 0 for r in result)

    until(caught_up, "notification caught up with referral's events")
    assert prometheus.value('min(process_resident_memory_bytes{job=~".+"})') > 0

    # Nothing Prometheus stored names the agencies, the case, the event or the person.
    stored = prometheus.api("series", **{"match[]": '{job=~".+"}'})
    assert len(stored) > 100
    text = json.dumps(stored)
    for secret in (referrer, provider, case_id, sent.event_id, MARK):
        assert secret not in text, secret


def test_every_dashboard_query_runs_on_what_the_services_export(prometheus: Prometheus) -> None:
    """Each panel's query, as Grafana sends it, is valid PromQL to this Prometheus, and each
    metric a panel reads is one the services really export (by the name scraped)."""
    for _, expr in dashboard_queries():
        prometheus.query(for_prometheus(expr))  # bad PromQL: a 400, which api() fails on
    # (No dead letter and no alert yet: the next test causes both.)
    assert absent_from(prometheus) <= NOT_CAUSED_HERE | {"ALERTS", "refex_dead_letters_total"}


def absent_from(prometheus: Prometheus) -> set[str]:
    """The metrics the dashboard reads of which Prometheus has no series."""
    read = {name for _, expr in dashboard_queries() for name in metric_names(expr)}
    return {name for name in read if not prometheus.query(f'count({{__name__="{name}"}})')}


async def test_a_dead_letter_raises_the_dead_letters_alert(
    prometheus: Prometheus,
    services: dict[str, RunningService],
    kafka: KafkaConnection,
    database_urls: dict[str, str],
) -> None:
    referrer, _, _ = await directory(kafka, database_urls)
    assert not [
        a for a in prometheus.alerts("RefexDeadLettersWritten") if a["labels"]["job"] == "intake"
    ], "intake has dead-lettered nothing yet"
    # Over intake's limit: dead-lettered unread (an agency's message it cannot even read).
    sent = f.submission_event(f.submission(referrer))
    oversize = type(sent)(sent.topic, sent.key, sent.headers, b" " * (2 * INTAKE_LIMIT))
    await publish_events(kafka, [oversize])

    def fired() -> list[dict[str, Any]]:
        return [
            a
            for a in prometheus.alerts("RefexDeadLettersWritten")
            if a["labels"]["job"] == "intake" and a["state"] == "firing"
        ]

    until(lambda: bool(fired()), "RefexDeadLettersWritten firing for intake", timeout=60)
    [alert] = fired()
    assert alert["labels"] == {
        "alertname": "RefexDeadLettersWritten",
        "severity": "warning",
        "job": "intake",
        "instance": f"127.0.0.1:{services['intake'].port}",
        "error_type": "PermanentError",
    }
    assert alert["annotations"]["summary"] == "intake dead-lettered events (PermanentError)"
    assert "replay-dead-letters intake" in alert["annotations"]["description"]
    assert referrer not in json.dumps(alert) and sent.event_id not in json.dumps(alert)
    # Now every metric the dashboard reads has series but those this flow cannot cause.
    assert absent_from(prometheus) <= NOT_CAUSED_HERE
    assert not prometheus.alerts("RefexTargetDown"), "every service is up"


def test_a_service_gone_raises_the_target_down_alert(
    prometheus: Prometheus, evidence: RunningService
) -> None:
    """Last in the module: evidence is stopped for good (its fixture ends it anyway)."""
    stop_service(evidence)

    def down() -> list[dict[str, Any]]:
        return [a for a in prometheus.alerts("RefexTargetDown") if a["labels"]["job"] == "evidence"]

    # Pending from the next scrape on (`up` is 0), firing a minute later (its `for`, proved in
    # alerts.test.yml; not waited for here).
    until(lambda: bool(down()), "RefexTargetDown for evidence", timeout=30)
    [alert] = down()
    assert alert["state"] in ("pending", "firing")
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["instance"] == f"127.0.0.1:{evidence.port}"
