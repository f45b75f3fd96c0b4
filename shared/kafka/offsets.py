"""Offsets of many partitions from a reader that is not subscribed to them, in one metadata
round trip.

aiokafka's offset lookups (``end_offsets``, ``beginning_offsets``, ``offsets_for_times``) find
each partition's leader in the client's metadata. For a topic the client does not track yet,
the lookup adds that one topic, asks for metadata, sleeps ``retry_backoff_ms`` and starts over:
one round trip per unknown topic. With one topic per agency family that grows with the
platform: measured in `make test`, once the earlier tests had registered their agencies, one
`refex platform status` took 23 s (3 s on a fresh broker), and every trimming run of intake
paid the same. Tracking every topic first makes the lookup one metadata request, whatever the
number of topics (docs/performance.md, "Offsets of many topics")."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndTimestamp


async def track_topics(reader: AIOKafkaConsumer, topics: Iterable[str]) -> None:
    """Make ``reader``'s client track ``topics``, with one metadata request for them all.

    aiokafka has no public call for this: ``add_topic`` of the client is what its own lookup
    calls, topic by topic. Called for every topic before the metadata update runs (it runs on
    the next turn of the event loop), all of them share that one update."""
    client = reader._client  # private: see the docstring
    await asyncio.gather(*(client.add_topic(t) for t in sorted(set(topics))))


def _topics(partitions: Iterable[TopicPartition]) -> set[str]:
    return {tp.topic for tp in partitions}


async def end_offsets(
    reader: AIOKafkaConsumer, partitions: Collection[TopicPartition]
) -> dict[TopicPartition, int]:
    await track_topics(reader, _topics(partitions))
    return dict(await reader.end_offsets(list(partitions)))


async def beginning_offsets(
    reader: AIOKafkaConsumer, partitions: Collection[TopicPartition]
) -> dict[TopicPartition, int]:
    await track_topics(reader, _topics(partitions))
    return dict(await reader.beginning_offsets(list(partitions)))


async def offsets_for_times(
    reader: AIOKafkaConsumer, timestamps: Mapping[TopicPartition, int]
) -> dict[TopicPartition, OffsetAndTimestamp | None]:
    await track_topics(reader, _topics(timestamps))
    return dict(await reader.offsets_for_times(dict(timestamps)))
