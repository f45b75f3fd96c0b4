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
