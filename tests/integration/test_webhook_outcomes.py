"""What a webhook attempt's outcome does to the message and its endpoint, against the real
PostgreSQL (a fresh notification schema) and real sockets: an endpoint failing longer than the
policy allows is disabled with the reason, a message due for a disabled endpoint is not sent,
and a success ends the endpoint's failing state. Each outcome is reported on
notification.deliveries.v1 through the outbox, in the same transaction (the e2e tests in
tests/e2e/test_webhooks.py cover retries, 410 and exhaustion through the running service)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notification import secret_store
from services.notification.constants import SOURCE
from services.notification.handlers import notification_of
from services.notification.secret_store import SecretsKey
from services.notification.store import NotificationStore
from services.notification.webhooks import DeliveryPolicy, deliver_due
from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import build_event
from shared.unit import open_unit
from tests import factories as f
from tests.integration.notification_schema import Schema, fresh_schema, migrate_notification

pytestmark = pytest.mark.integration

KEY = SecretsKey(bytes(range(32)))
POLICY = DeliveryPolicy(
    schedule_s=(60.0,), allow_private_targets=True, disable_after=timedelta(hours=1)
)


@pytest.fixture
async def schema(database_urls: dict[str, str]) -> AsyncIterator[Schema]:
    async with fresh_schema(database_urls["notification"]) as made:
        await migrate_notification(made)
        yield made


@pytest.fixture
async def receiver() -> AsyncIterator[str]:
    """An HTTP endpoint that answers every request 200."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.close()
        await server.wait_closed()


def _refusing_url() -> str:
    """A local port nobody listens on: the connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


async def _register(schema: Schema, agency: str, url: str) -> None:
    async with open_unit(schema.pool.acquire(), NotificationStore, SOURCE) as unit:
        await unit.stores.save_webhook(agency, url, None)
        await secret_store.replace_all(unit.stores, KEY, agency, secret_store.new_secret())


async def _queue(schema: Schema, agency: str) -> str:
    """One inbox notification for the agency, with its webhook message; its webhook id."""
    notice = build_event(
        topic=topics.agency_inbox(agency),
        key="sub-1",
        type_=ev.INBOX_SUBMISSION_REJECTED,
        source="urn:test",
        data=f.agency(agency),  # what it says does not matter to the delivery
    )
    async with open_unit(schema.pool.acquire(), NotificationStore, SOURCE) as unit:
        channels = await unit.stores.channels([agency])
        cause = f.unique("cause")
        await unit.stores.record([notification_of(notice, agency, cause, channels[agency])])
    return f"msg_{notice.event_id}"


async def _reports(schema: Schema, webhook_id: str) -> list[dict[str, Any]]:
    """The delivery reports of one message in the outbox, oldest first, with their causation."""
    async with schema.pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT headers, body FROM outbox
                WHERE topic = $1 AND headers->>'ce_subject' = $2 ORDER BY id""",
            topics.NOTIFICATION_DELIVERIES,
            webhook_id,
        )
    return [
        {**json.loads(r["body"]), "causation": json.loads(r["headers"])["ce_causationid"]}
        for r in rows
    ]


async def test_an_endpoint_failing_too_long_is_disabled_and_its_next_message_is_not_sent(
    schema: Schema,
) -> None:
    agency = f.unique("ngo")
    await _register(schema, agency, _refusing_url())
    first, second = await _queue(schema, agency), await _queue(schema, agency)
    async with schema.pool.acquire() as conn:
        await conn.execute(
            "UPDATE webhook_endpoints SET failing_since = now() - interval '2 hours' "
            "WHERE agency_id = $1",
            agency,
        )
        await conn.execute(  # the second is due only once the endpoint is disabled
            "UPDATE webhook_deliveries SET next_attempt_at = now() + interval '1 hour' "
            "WHERE webhook_id = $1",
            second,
        )

    assert await deliver_due(schema.pool, POLICY, KEY) == 1
    async with schema.pool.acquire() as conn:
        endpoint = await conn.fetchrow(
            "SELECT disabled_at, disabled_reason FROM webhook_endpoints WHERE agency_id = $1",
            agency,
        )
        message = await conn.fetchrow(
            "SELECT status, attempts FROM webhook_deliveries WHERE webhook_id = $1", first
        )
    assert endpoint is not None and message is not None
    assert endpoint["disabled_at"] is not None
    assert endpoint["disabled_reason"] == "failing for more than 1:00:00"
    assert (message["status"], message["attempts"]) == ("endpoint_disabled", 1)
    [report] = await _reports(schema, first)
    assert (report["status"], report["error"]) == ("endpoint_disabled", "connection_failed")
    assert report["causation"] == first.removeprefix("msg_")  # the inbox event it delivers

    async with schema.pool.acquire() as conn:
        await conn.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = now() WHERE webhook_id = $1", second
        )
    assert await deliver_due(schema.pool, POLICY, KEY) == 1
    async with schema.pool.acquire() as conn:
        status = await conn.fetchval(
            "SELECT status FROM webhook_deliveries WHERE webhook_id = $1", second
        )
    assert status == "endpoint_disabled"
    [report] = await _reports(schema, second)
    assert (report["status"], report["error"]) == ("endpoint_disabled", "endpoint_disabled")
    assert "http_status" not in report and "latency_ms" not in report  # never called


async def test_a_success_ends_the_endpoint_failing_state(schema: Schema, receiver: str) -> None:
    agency = f.unique("ngo")
    await _register(schema, agency, _refusing_url())
    webhook_id = await _queue(schema, agency)

    assert await deliver_due(schema.pool, POLICY, KEY) == 1  # refused: retried in a minute
    async with schema.pool.acquire() as conn:
        failing_since = await conn.fetchval(
            "SELECT failing_since FROM webhook_endpoints WHERE agency_id = $1", agency
        )
        message = await conn.fetchrow(
            "SELECT status, next_attempt_at FROM webhook_deliveries WHERE webhook_id = $1",
            webhook_id,
        )
    assert failing_since is not None and message is not None
    assert message["status"] == "pending"
    assert message["next_attempt_at"] > datetime.now(UTC) + timedelta(seconds=45)

    await _register(schema, agency, receiver)  # the agency fixed its endpoint
    async with schema.pool.acquire() as conn:
        await conn.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = now() WHERE webhook_id = $1",
            webhook_id,
        )
    assert await deliver_due(schema.pool, POLICY, KEY) == 1
    async with schema.pool.acquire() as conn:
        failing_since = await conn.fetchval(
            "SELECT failing_since FROM webhook_endpoints WHERE agency_id = $1", agency
        )
        message = await conn.fetchrow(
            """SELECT status, attempts, last_http_status, delivered_at
                 FROM webhook_deliveries WHERE webhook_id = $1""",
            webhook_id,
        )
    assert failing_since is None
    assert message is not None and message["delivered_at"] is not None
    assert (message["status"], message["attempts"], message["last_http_status"]) == (
        "delivered",
        2,
        200,
    )
    failed, delivered = await _reports(schema, webhook_id)
    assert (failed["status"], failed["error"], failed["attempt"]) == (
        "failed",
        "connection_failed",
        1,
    )
    assert failed["next_attempt_at"]
    assert (delivered["status"], delivered["http_status"], delivered["attempt"]) == (
        "delivered",
        200,
        2,
    )
    assert "error" not in delivered


class _SlowReceiver:
    """An endpoint per agency (its path) that takes 0.2 s to answer 200, recording each
    request's webhook-id in arrival order and how many requests were open at once, in all and
    per path."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[str]] = {}
        self.open: dict[str, int] = {}
        self.most_open_per_path: dict[str, int] = {}
        self.most_open = 0

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        path = head.split(" ", 2)[1]
        webhook_id = next(
            line.split(":", 1)[1].strip()
            for line in head.split("\r\n")
            if line.lower().startswith("webhook-id:")
        )
        self.arrivals.setdefault(path, []).append(webhook_id)
        self.open[path] = self.open.get(path, 0) + 1
        self.most_open_per_path[path] = max(self.most_open_per_path.get(path, 0), self.open[path])
        self.most_open = max(self.most_open, sum(self.open.values()))
        await asyncio.sleep(0.2)
        self.open[path] -= 1
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()


@pytest.fixture
async def slow_receiver() -> AsyncIterator[tuple[_SlowReceiver, str]]:
    receiver = _SlowReceiver()
    server = await asyncio.start_server(receiver.answer, "127.0.0.1", 0)
    try:
        yield receiver, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def test_agencies_are_sent_to_side_by_side_each_in_its_queues_order(
    schema: Schema, slow_receiver: tuple[_SlowReceiver, str]
) -> None:
    receiver, base = slow_receiver
    agencies = [f.unique("ngo") for _ in range(3)]
    queued: dict[str, list[str]] = {}
    for agency in agencies:
        await _register(schema, agency, f"{base}/{agency}")
    for _ in range(4):  # interleaved, as inbox events of several agencies arrive
        for agency in agencies:
            queued.setdefault(agency, []).append(await _queue(schema, agency))
    async with schema.pool.acquire() as conn:  # one due time each, in the order queued
        for i, webhook_id in enumerate(w for a in agencies for w in queued[a]):
            await conn.execute(
                "UPDATE webhook_deliveries SET next_attempt_at = now() - $2::interval"
                " WHERE webhook_id = $1",
                webhook_id,
                timedelta(seconds=100 - i),
            )

    assert await deliver_due(schema.pool, POLICY, KEY) == 12
    assert receiver.most_open >= 2, "different agencies' endpoints at once"
    for agency in agencies:
        assert receiver.arrivals[f"/{agency}"] == queued[agency], "each agency in order"
        assert receiver.most_open_per_path[f"/{agency}"] == 1, "one request at a time each"


async def test_a_full_round_is_followed_by_another_at_once(
    schema: Schema, slow_receiver: tuple[_SlowReceiver, str]
) -> None:
    receiver, base = slow_receiver
    agencies = [f.unique("ngo") for _ in range(4)]
    for agency in agencies:
        await _register(schema, agency, f"{base}/{agency}")
    for _ in range(7):
        for agency in agencies:
            await _queue(schema, agency)

    # 28 due, rounds of 10: three rounds in one call, not one per tick.
    assert await deliver_due(schema.pool, POLICY, KEY, limit=10) == 28
    async with schema.pool.acquire() as conn:
        statuses = await conn.fetch(
            "SELECT status, count(*) FROM webhook_deliveries WHERE agency_id = ANY($1)"
            " GROUP BY status",
            agencies,
        )
    assert {r["status"]: r["count"] for r in statuses} == {"delivered": 28}
    assert sum(len(a) for a in receiver.arrivals.values()) == 28
