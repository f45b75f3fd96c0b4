"""`refex platform status` against the running services, the real broker and the databases:
a provider whose webhook answered 410 and who let a referral's deadline pass, and a record no
service can read, show up where the ops engineer looks — and a service that is down is named
while the broker's figures for it are still shown."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typer.testing import CliRunner

from ops.cli import app
from shared.contracts import events as ev
from shared.contracts import topics
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from tests import factories as f
from tests.e2e.conftest import RunningService, stop_service
from tests.e2e.directory import directory, eventually
from tests.e2e.kafka_helpers import collect, data_of, headers_of
from tests.e2e.personal_data import MARK, PERSONAL

pytestmark = pytest.mark.e2e

ALLOW_PRIVATE = {"NOTIFICATION_ALLOW_PRIVATE_WEBHOOK_TARGETS": "true"}  # the endpoint is loopback
SERVICE_ENV = {
    **ALLOW_PRIVATE,
    "NOTIFICATION_WEBHOOK_INTERVAL_S": "0.2",
    # The provider never answers: its one referral expires after 2 s, and the need is unmet.
    "REFERRAL_SLA_SECONDS_OVERRIDE": "2",
    "REFERRAL_TIMER_INTERVAL_S": "0.5",
    "REFERRAL_MAX_ATTEMPTS": "1",
}


class _Gone(BaseHTTPRequestHandler):
    """An agency endpoint that has been taken down: 410 to everything."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(410)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def gone_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gone)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    server.shutdown()


def _status(*args: str) -> tuple[int, str]:
    urls = ",".join(
        f"{name}=http://127.0.0.1:{os.environ[f'{name.upper()}_HTTP_PORT']}"
        for name in ("intake", "referral", "notification", "evidence")
    )
    result = CliRunner().invoke(
        app, ["platform", "status", *args], env={"REFEX_SERVICE_URLS": urls, "COLUMNS": "200"}
    )
    return result.exit_code, result.output


async def _report() -> dict[str, Any]:
    code, output = await asyncio.to_thread(_status, "--json")
    assert code in (0, 1), output
    return json.loads(output)  # type: ignore[no-any-return]


def _service(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in report["services"] if s["name"] == name)


def _agency(report: dict[str, Any], agency_id: str) -> dict[str, Any] | None:
    return next((a for a in report["agencies"] if a["agency_id"] == agency_id), None)


async def test_status_shows_what_needs_attention_and_names_no_one(
    services: dict[str, RunningService],
    evidence: RunningService,
    kafka: KafkaConnection,
    database_urls: dict[str, str],
    gone_endpoint: str,
) -> None:
    referrer, provider, listing = await directory(kafka, database_urls)
    added = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["notification", "add-webhook", provider, gone_endpoint],
        env=ALLOW_PRIVATE,
    )
    assert added.exit_code == 0, added.output
    before = await _report()
    assert all(s["reachable"] and s["ready"] for s in before["services"]), before

    # One submission: the provider's referral goes unanswered past its deadline, and its
    # webhook delivery meets the 410.
    submission = f.submission(
        referrer, personal=PERSONAL, profile=f.profile(return_area=listing.service_areas[0])
    )
    sent = f.submission_event(submission)
    await publish_events(kafka, [sent])
    # By type too: the same referral's reminder, sent before its 2 s deadline, shares the
    # correlation id, and a reader that finds the first record late sees both.
    [requested] = await collect(
        kafka,
        topics.agency_inbox(provider),
        lambda r: (
            headers_of(r).get("ce_correlationid") == sent.event_id
            and headers_of(r).get("ce_type") == ev.INBOX_REFERRAL_RECEIVED
        ),
    )
    assert await eventually(
        "SELECT 1 FROM webhook_endpoints WHERE agency_id = $1 AND disabled_at IS NOT NULL",
        provider,
        dsn=database_urls["notification"],
    )
    assert await eventually(
        "SELECT 1 FROM referrals WHERE recipient_agency_id = $1 AND status = 'expired'",
        provider,
        dsn=database_urls["referral"],
    )
    # And a record nobody can read on a topic intake and notification consume.
    await asyncio.to_thread(_publish_garbage, kafka)

    deadline = asyncio.get_running_loop().time() + 30
    while True:
        after = await _report()
        dead = {
            name: _service(after, name)["dead_letters"]["recent"]
            - _service(before, name)["dead_letters"]["recent"]
            for name in ("intake", "notification")
        }
        if all(n >= 1 for n in dead.values()):
            break
        assert asyncio.get_running_loop().time() < deadline, dead
        await asyncio.sleep(0.5)

    figures = _agency(after, provider)
    assert figures is not None, after["agencies"]
    assert figures["webhook_disabled_reason"] == "HTTP 410 Gone"
    assert figures["webhook_disabled_at"]
    assert figures["deadlines_missed"] == 1
    assert figures["awaiting_answer"] == 0
    assert figures["deliveries_given_up"] >= 1
    for name in ("intake", "referral", "notification", "evidence"):
        service = _service(after, name)
        assert service["outbox_unsent"] is not None, name
        assert set(service["checks"]) == {"kafka", "database", "outbox_relay"}
    assert any(f"{provider}: webhook endpoint disabled" in p for p in after["problems"])
    assert any(re.match(r"intake: \d+ dead letters in the last 24 h", p) for p in after["problems"])

    # The table an operator reads: exit code 1 (something needs attention), the provider's
    # disabled endpoint and the replay hint.
    code, table = await asyncio.to_thread(_status)
    assert code == 1, table
    assert "Needs attention" in table and provider in table
    assert "refex platform replay-dead-letters intake --dry-run" in table
    assert re.search(rf"{re.escape(provider)}\s.*disabled", table), table
    # No case, person or message is named, in the table or the JSON.
    for secret in (MARK, sent.event_id, data_of(requested)["case_id"]):
        assert secret not in table and secret not in json.dumps(after), secret

    # A service that is down: named, and its group's lag and dead letters still come from
    # the broker.
    stop_service(evidence)
    code, table = await asyncio.to_thread(_status)
    assert code == 1
    assert re.search(r"evidence\s+│\s+unreachable", table), table
    down = _service(await _report(), "evidence")
    assert down["reachable"] is False and down["outbox_unsent"] is None
    assert down["lag"], "the broker still reports the stopped service's group"


def _publish_garbage(kafka: KafkaConnection) -> None:
    from aiokafka import AIOKafkaProducer

    async def send() -> None:
        producer = AIOKafkaProducer(**kafka.client_kwargs())
        await producer.start()
        try:
            await producer.send_and_wait(topics.REFERRAL_EVENTS, b"not an event at all")
        finally:
            await producer.stop()

    asyncio.run(send())
