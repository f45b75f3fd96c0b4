"""Read registry topics (compacted: the latest record per key is the state) from their very
beginning and apply every record through the consumer's handlers and inbox.

A service that materialises a registry runs this at start-up, before it consumes as usual: a
fresh database rebuilds itself, and an existing one skips what it has (inbox de-duplication).
Invalid records are skipped: the consumer group dead-lettered them when it first read them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka.connection import KafkaConnection
from shared.kafka.consumer import ReliableConsumer, Subscription, skip_unreadable_record
from shared.kafka.inbound import InboundEvent
from shared.logging import get_logger

log = get_logger(__name__)


def _wanted(name: str, subscriptions: Sequence[Subscription]) -> bool:
    return any(
        s == name if isinstance(s, str) else s.agency_of(name) is not None for s in subscriptions
    )


async def registry_partitions(
    kafka: KafkaConnection, subscriptions: Sequence[Subscription]
) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        names = sorted(n for n in await admin.list_topics() if _wanted(n, subscriptions))
        described = await admin.describe_topics(names) if names else []
    finally:
        await admin.close()
    return [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]


async def replay_registries(
    kafka: KafkaConnection, consumer: ReliableConsumer, subscriptions: Sequence[Subscription]
) -> int:
    partitions = await registry_partitions(kafka, subscriptions)
    if not partitions:
        return 0
    reader = AIOKafkaConsumer(
        **kafka.client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        client_id=f"{consumer.group}-replay",
    )
    await reader.start()
    applied = skipped = 0
    try:
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        ends = await reader.end_offsets(partitions)
        pending = {tp for tp, end in ends.items() if end > 0}
        while pending:
            try:
                # One record at a time: when aiokafka raises on an unreadable record, records
                # read before it in the same call would be lost.
                batch = await reader.getmany(*pending, timeout_ms=1000, max_records=1)
            except UnicodeDecodeError:  # unreadable: the consumer group dead-letters it
                batch = {}
                if await skip_unreadable_record(reader, sorted(pending)) is not None:
                    skipped += 1
            for records in batch.values():
                for record in records:
                    # Invalid records were dead-lettered once, when the group first read them.
                    event = dataclasses.replace(InboundEvent.from_record(record), replayed=True)
                    if await consumer.process(event):
                        applied += 1
                    else:
                        skipped += 1
            pending = {tp for tp in pending if await reader.position(tp) < ends[tp]}
    finally:
        await reader.stop()
    log.info("registries_replayed", partitions=len(partitions), records=applied, invalid=skipped)
    return applied
