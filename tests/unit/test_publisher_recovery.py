"""The services' publisher starts a fresh idempotent producer when the broker refused its
sequence (OutOfOrderSequenceNumber: aiokafka's producer never recovers from it), found by the
chaos run on a replicated cluster; any other failure keeps the producer."""

from __future__ import annotations

from typing import Any
from unittest.mock import AsyncMock, MagicMock

import aiokafka
import pytest
from aiokafka.errors import KafkaTimeoutError, OutOfOrderSequenceNumber

from shared.contracts.envelope import OutgoingEvent
from shared.kafka.publisher import EventPublisher


def _broker(error: BaseException) -> Any:
    broker = MagicMock()
    broker.publish = AsyncMock(side_effect=error)
    broker._connection_kwargs = {"bootstrap_servers": ["127.0.0.1:1"]}
    producer = broker.config.broker_config.producer
    producer.disconnect, producer.connect = AsyncMock(), AsyncMock()
    return broker


EVENT = OutgoingEvent("t.v1", "k", {}, b"{}")


async def test_an_out_of_order_sequence_gets_a_fresh_producer() -> None:
    broker = _broker(OutOfOrderSequenceNumber())
    with pytest.raises(OutOfOrderSequenceNumber):  # the outbox keeps the rows, retries later
        await EventPublisher(broker).publish_batch([EVENT])
    producer = broker.config.broker_config.producer
    producer.disconnect.assert_awaited_once()
    fresh = producer.connect.await_args.args[0]
    assert isinstance(fresh, aiokafka.AIOKafkaProducer)
    assert fresh.client._bootstrap_servers == ["127.0.0.1:1"], "FastStream's own arguments"


async def test_any_other_failure_keeps_the_producer() -> None:
    broker = _broker(KafkaTimeoutError())
    with pytest.raises(KafkaTimeoutError):
        await EventPublisher(broker).publish_batch([EVENT])
    broker.config.broker_config.producer.disconnect.assert_not_awaited()
