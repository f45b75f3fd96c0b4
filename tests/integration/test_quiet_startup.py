"""A clean start and a clean registration print no WARNING or ERROR a newcomer would worry about:
nothing from the Kafka clients (aiokafka, FastStream) while a broker starts its subscribers or
while an agency is registered and logs in with its new password."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from faststream.middlewares import AckPolicy
from typer.testing import CliRunner

from ops.access_policy import agency_user
from ops.cli import app
from shared.contracts import topics
from shared.kafka.broker import create_broker
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import follow
from tests import factories as f
from tests.conftest import TopicFactory

runner = CliRunner()
CLIENT_LOGGERS = ("aiokafka", "faststream")


def _client_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith(CLIENT_LOGGERS)
    ]


async def test_a_service_broker_starts_its_subscribers_without_warnings(
    kafka: KafkaConnection, new_topic: TopicFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """As a service subscribes (a pattern, no auto-creation, manual commits): FastStream used to
    warn "Auto create topics is disabled" at every start."""
    topic = await new_topic(partitions=2)
    client_id = f"quiet-{uuid.uuid4().hex[:8]}"
    broker = create_broker(kafka, client_id=client_id)

    @broker.subscriber(
        pattern=re.escape(topic),
        group_id=client_id,
        ack_policy=AckPolicy.MANUAL,
        batch=True,
    )
    async def handle(_: Any) -> None:  # pragma: no cover - nothing is published
        return None

    with caplog.at_level(logging.INFO):
        await broker.start()
        try:
            await asyncio.sleep(1.5)  # the consumer joins its group and gets its partitions
        finally:
            await broker.stop()
    assert any(r.name == f"faststream.{client_id}" for r in caplog.records), (
        "the broker logs through its own logger (else this test would prove nothing)"
    )
    assert _client_warnings(caplog) == []


def test_registering_an_agency_is_quiet_and_its_password_works_at_once(
    kafka: KafkaConnection, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`refex platform register-agency` waits until the new password logs in, without a
    SaslAuthenticationFailed error per try, and its first writes need no retries."""
    agency = f.agency(f.unique("quiet"))
    path = tmp_path / "agency.json"
    path.write_text(agency.model_dump_json())
    with caplog.at_level(logging.WARNING):
        result = runner.invoke(
            app, ["platform", "register-agency", str(path), "--bootstrap", kafka.bootstrap_servers]
        )
    assert result.exit_code == 0, result.output
    assert _client_warnings(caplog) == []
    password = re.search(r"password: (\S+)", result.output)
    assert password

    async def first_read_as_the_agency() -> list[object]:
        # Straight after the command, no retry loop here: the credential is usable already.
        as_agency = kafka.as_user(agency_user(agency.agency_id), password.group(1))
        inbox = topics.agency_inbox(agency.agency_id)
        return [r async for r in follow(as_agency, inbox, idle_timeout_s=0.5)]

    with caplog.at_level(logging.WARNING):
        assert asyncio.run(first_read_as_the_agency()) == []
    assert _client_warnings(caplog) == []
