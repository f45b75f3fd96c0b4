"""The e2e tests' `collect` on the real broker: what it must still see after it found what it
waited for, so that its callers' "exactly one" shows a duplicate (tests/e2e/kafka_helpers.py)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from shared.kafka.connection import KafkaConnection
from tests.conftest import TopicFactory
from tests.e2e.kafka_helpers import collect

pytestmark = pytest.mark.integration


async def _send(kafka: KafkaConnection, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


async def test_a_duplicate_written_soon_after_the_match_is_collected(
    kafka: KafkaConnection, new_topic: TopicFactory
) -> None:
    topic = await new_topic()

    async def duplicate_later() -> None:
        await asyncio.sleep(0.5)
        await _send(kafka, topic, [b"wanted"])

    await _send(kafka, topic, [b"wanted"])
    found, _ = await asyncio.gather(
        collect(kafka, topic, lambda r: r.value == b"wanted"), duplicate_later()
    )
    assert [r.value for r in found] == [b"wanted", b"wanted"]


async def test_an_old_duplicate_far_along_the_topic_is_collected(
    kafka: KafkaConnection, new_topic: TopicFactory
) -> None:
    """Matches written long before the read need no waiting, but the whole topic is read."""
    topic = await new_topic()
    await _send(kafka, topic, [b"wanted", *(b"other %d" % i for i in range(2000)), b"wanted"])
    await asyncio.sleep(1.2)  # both matches older than the settling time
    found = await collect(kafka, topic, lambda r: r.value == b"wanted")
    assert [r.offset for r in found] == [0, 2001]
