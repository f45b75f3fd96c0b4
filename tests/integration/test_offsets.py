"""Offsets of many topics from a reader that tracks none of them, on the real broker: one
metadata round trip for all the topics, not one per topic (shared.kafka.offsets).

The readers here wait 30 s before each retry, so a lookup that learnt its topics one at a time
could not answer within the tests' bounds: the bound tells the two ways apart by a factor of
ten, it is not a speed target."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.kafka.connection import KafkaConnection
from shared.kafka.offsets import beginning_offsets, end_offsets, offsets_for_times
from tests.conftest import TopicFactory

pytestmark = pytest.mark.integration

RETRY_BACKOFF_MS = 30_000
WITHIN_S = 10  # one metadata request and one ListOffsets per broker: well under a second


@pytest.fixture
async def reader(kafka: KafkaConnection) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(
        **kafka.client_kwargs(), group_id=None, retry_backoff_ms=RETRY_BACKOFF_MS
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def _topics_with_records(
    kafka: KafkaConnection, new_topic: TopicFactory, n: int
) -> dict[str, int]:
    """``n`` topics of two partitions; topic i holds i records on partition 0."""
    names = [await new_topic(partitions=2) for _ in range(n)]
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all")
    await producer.start()
    try:
        for i, name in enumerate(names):
            for _ in range(i):
                await producer.send_and_wait(name, b"x", partition=0)
    finally:
        await producer.stop()
    return {name: i for i, name in enumerate(names)}


async def test_end_and_beginning_offsets_of_many_topics_in_one_round_trip(
    kafka: KafkaConnection, new_topic: TopicFactory, reader: AIOKafkaConsumer
) -> None:
    written = await _topics_with_records(kafka, new_topic, 6)
    partitions = [TopicPartition(t, p) for t in written for p in (0, 1)]

    ends = await asyncio.wait_for(end_offsets(reader, partitions), WITHIN_S)
    starts = await asyncio.wait_for(beginning_offsets(reader, partitions), WITHIN_S)

    assert ends == {
        TopicPartition(t, p): (n if p == 0 else 0) for t, n in written.items() for p in (0, 1)
    }
    assert starts == dict.fromkeys(partitions, 0)


async def test_offsets_for_times_of_many_topics_in_one_round_trip(
    kafka: KafkaConnection, new_topic: TopicFactory, reader: AIOKafkaConsumer
) -> None:
    before = int(time.time() * 1000) - 60_000
    written = await _topics_with_records(kafka, new_topic, 4)
    partitions = [TopicPartition(t, 0) for t in written]

    found = await asyncio.wait_for(
        offsets_for_times(reader, dict.fromkeys(partitions, before)), WITHIN_S
    )

    # The first record of each non-empty partition is newer than a minute ago; an empty one
    # has none.
    assert {tp.topic: (o.offset if o else None) for tp, o in found.items()} == {
        t: (0 if n else None) for t, n in written.items()
    }


async def test_aiokafka_alone_learns_the_topics_one_round_trip_at_a_time(
    kafka: KafkaConnection, new_topic: TopicFactory, reader: AIOKafkaConsumer
) -> None:
    """Why the helpers exist: the same lookup through aiokafka alone sleeps a retry backoff
    for its first unknown topic. When a new aiokafka fails this test, the helpers can go."""
    written = await _topics_with_records(kafka, new_topic, 2)
    partitions = [TopicPartition(t, 0) for t in written]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.end_offsets(partitions), WITHIN_S)
