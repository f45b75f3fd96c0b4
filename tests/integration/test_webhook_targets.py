"""A webhook whose host resolved to a public address when it was registered, and resolves to a
private one when a delivery is due (DNS changed, or was made to change), is not called and its
failure is reported with the reason on notification.deliveries.v1; `add-webhook` now refuses it
too, by the same decision.

Real PostgreSQL (a fresh notification schema), the real CLI (audited on the real Kafka), the
real outbox relay publishing to the real notification.deliveries.v1; only the name lookup is
ours, so that the host can move."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from faststream.kafka import KafkaBroker
from typer.testing import CliRunner

from ops.cli import app
from services.notification.handlers import notification_of
from services.notification.secret_store import SecretsKey
from services.notification.store import NotificationStore
from services.notification.webhooks import DeliveryPolicy, deliver_due
from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import build_event
from shared.db.outbox import OutboxRelay
from shared.kafka.broker import create_broker
from shared.kafka.connection import KafkaConnection
from shared.kafka.publisher import EventPublisher
from tests import factories as f
from tests.e2e.kafka_helpers import collect, data_of
from tests.integration.notification_schema import Schema, fresh_schema, migrate_notification

pytestmark = pytest.mark.integration

KEY_B64 = base64.b64encode(bytes(range(32))).decode()
HOST = "hooks.partner.example"


@pytest.fixture
async def schema(database_urls: dict[str, str]) -> AsyncIterator[Schema]:
    async with fresh_schema(database_urls["notification"]) as made:
        await migrate_notification(made)
        yield made


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """HOST resolves to whatever the test says; every other name as usual."""
    table: dict[str, str] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in table:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (table[host], port or 0))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield table


@pytest.fixture
async def broker(kafka: KafkaConnection) -> AsyncIterator[KafkaBroker]:
    b = create_broker(kafka, client_id="test-webhook-targets")
    await b.connect()
    try:
        yield b
    finally:
        await b.stop()


async def _add_webhook(agency: str, url: str) -> Any:
    return await asyncio.to_thread(
        CliRunner().invoke, app, ["notification", "add-webhook", agency, url]
    )


async def test_a_host_now_resolving_to_a_private_address_fails_with_the_reason(
    schema: Schema,
    dns: dict[str, str],
    broker: KafkaBroker,
    kafka: KafkaConnection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFICATION_DATABASE_URL", schema.dsn)
    monkeypatch.setenv("NOTIFICATION_SECRETS_KEY", KEY_B64)
    monkeypatch.delenv("NOTIFICATION_ALLOW_PRIVATE_WEBHOOK_TARGETS", raising=False)
    agency, url = f.unique("ngo"), f"https://{HOST}/in"
    dns[HOST] = "93.184.216.34"  # public: registration accepts it
    registered = await _add_webhook(agency, url)
    assert registered.exit_code == 0, registered.output

    notice = build_event(
        topic=topics.agency_inbox(agency),
        key="sub-1",
        type_=ev.INBOX_SUBMISSION_REJECTED,
        source="urn:test",
        data=f.agency(agency),  # what it says does not matter to the delivery
    )
    async with schema.pool.acquire() as conn:
        store = NotificationStore(conn)
        channels = await store.channels([agency])
        assert channels[agency].webhook_types is not None, "the endpoint is active"
        await store.record([notification_of(notice, agency, "cause-1", channels[agency])])

    dns[HOST] = "10.0.0.7"  # now inside the private network
    policy = DeliveryPolicy(schedule_s=(60.0,))  # the retry is not due during this test
    assert await deliver_due(schema.pool, policy, SecretsKey(base64.b64decode(KEY_B64))) == 1

    relay = OutboxRelay(schema.pool, EventPublisher(broker).publish_batch, poll_interval_s=0.2)
    relay.start()
    try:
        reports = await collect(
            kafka, topics.NOTIFICATION_DELIVERIES, lambda r: data_of(r)["agency_id"] == agency
        )
    finally:
        await relay.stop()
    assert len(reports) == 1
    report = data_of(reports[0])
    assert (report["channel"], report["status"], report["error"]) == (
        "webhook",
        "failed",
        ev.DeliveryError.TARGET_NOT_ALLOWED,
    )
    assert "http_status" not in report  # never called (a field left out is null)
    assert report["next_attempt_at"]  # retried on schedule: DNS may move back

    again = await _add_webhook(agency, url)  # the same decision refuses it at registration now
    assert again.exit_code == 2
    assert "resolves to 10.0.0.7, a private address" in again.output
    assert "NOTIFICATION_ALLOW_PRIVATE_WEBHOOK_TARGETS=true" in again.output
