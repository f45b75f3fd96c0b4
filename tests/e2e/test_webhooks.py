"""Webhooks end to end: a real HTTP receiver, signatures checked with the independent
`standardwebhooks` implementation, retries with the same webhook-id, 410, exhaustion, replay."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
import uvicorn
from standardwebhooks import Webhook
from typer.testing import CliRunner

from ops.cli import app
from shared.contracts import events as ev
from shared.contracts import topics
from shared.kafka.admin import ensure_agency_topics
from shared.kafka.oneshot import publish_events
from tests import factories as f
from tests.e2e.conftest import RunningService
from tests.e2e.kafka_helpers import collect, data_of, headers_of

pytestmark = pytest.mark.e2e

SERVICE_ENV = {
    "NOTIFICATION_ALLOW_PRIVATE_WEBHOOK_TARGETS": "true",
    "NOTIFICATION_WEBHOOK_SCHEDULE_S": "[0.5, 0.5]",
    "NOTIFICATION_WEBHOOK_INTERVAL_S": "0.2",
}


@dataclass
class Receiver:
    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    seen: Counter[str] = field(default_factory=Counter)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append({"path": scope["path"], "headers": headers, "body": body})
        self.seen[headers.get("webhook-id", "")] += 1
        status = {"/ok": 200, "/gone": 410, "/down": 500}.get(scope["path"], 200)
        if scope["path"] == "/flaky":
            status = 500 if self.seen[headers.get("webhook-id", "")] <= 2 else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = Receiver(port)
    server = uvicorn.Server(
        uvicorn.Config(target, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield target
    server.should_exit = True
    thread.join(timeout=10)


async def _agency_with_webhook(bootstrap: str, url: str) -> tuple[str, str]:
    agency = f.unique("ngo")
    await ensure_agency_topics(bootstrap, agency)
    await publish_events(bootstrap, [f.agency_event(f.agency(agency))])
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["notification", "add-webhook", agency, url]
    )
    assert result.exit_code == 0, result.output
    secret = re.search(r"(whsec_\S+)", result.output)
    assert secret
    return agency, secret.group(1)


async def _provoke_rejection(bootstrap: str, agency: str) -> str:
    """An invalid submission: its rejection is an inbox event for the agency."""
    sent = f.submission_event(f.submission(agency))
    body = json.loads(sent.body)
    del body["consent"]
    await publish_events(
        bootstrap, [type(sent)(sent.topic, sent.key, sent.headers, json.dumps(body).encode())]
    )
    return sent.event_id


async def _wait(predicate: Any, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
def bootstrap() -> str:
    return os.environ["REFEX_KAFKA_BOOTSTRAP_SERVERS"]


async def test_signed_delivery_retried_with_the_same_id_then_replayed(
    services: dict[str, RunningService], receiver: Receiver, bootstrap: str
) -> None:
    agency, secret = await _agency_with_webhook(bootstrap, receiver.url("/flaky"))
    await _provoke_rejection(bootstrap, agency)
    await _wait(lambda: len(receiver.received("/flaky")) >= 3)
    attempts = receiver.received("/flaky")
    ids = {r["headers"]["webhook-id"] for r in attempts}
    assert len(ids) == 1  # the same message each time: receivers can de-duplicate
    for request in attempts:
        payload = Webhook(secret).verify(request["body"], request["headers"])
        assert payload["type"] == ev.INBOX_SUBMISSION_REJECTED
        assert payload["specversion"] == "1.0"
        assert payload["data"]["agency_id"] == agency

    replayed = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["notification", "replay", agency, "--since", "2000-01-01T00:00:00"],
    )
    assert replayed.exit_code == 0, replayed.output
    await _wait(lambda: len(receiver.received("/flaky")) >= 4)
    assert receiver.received("/flaky")[3]["headers"]["webhook-id"] in ids


async def test_410_disables_the_endpoint(
    services: dict[str, RunningService],
    receiver: Receiver,
    bootstrap: str,
    database_urls: dict[str, str],
) -> None:
    agency, _ = await _agency_with_webhook(bootstrap, receiver.url("/gone"))
    await _provoke_rejection(bootstrap, agency)
    await _wait(lambda: len(receiver.received("/gone")) >= 1)
    conn = await asyncpg.connect(database_urls["notification"])
    try:
        for _ in range(50):
            disabled = await conn.fetchval(
                "SELECT disabled_reason FROM webhook_endpoints WHERE agency_id = $1", agency
            )
            if disabled:
                break
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    assert disabled == "HTTP 410 Gone"
    await _provoke_rejection(bootstrap, agency)
    await asyncio.sleep(3)
    assert len(receiver.received("/gone")) == 1  # nothing more is sent to it


async def test_exhaustion_is_reported(
    services: dict[str, RunningService], receiver: Receiver, bootstrap: str
) -> None:
    agency, _ = await _agency_with_webhook(bootstrap, receiver.url("/down"))
    await _provoke_rejection(bootstrap, agency)
    reports = await collect(
        bootstrap,
        topics.NOTIFICATION_DELIVERIES,
        lambda r: data_of(r)["agency_id"] == agency and data_of(r)["status"] == "exhausted",
    )
    assert len(reports) == 1
    assert data_of(reports[0])["attempt"] == 3  # immediately, then the two retries
    assert headers_of(reports[0])["ce_type"] == ev.DELIVERY_ATTEMPTED
    assert len(receiver.received("/down")) == 3
