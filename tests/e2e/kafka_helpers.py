"""Reading topics from outside the services, as an integrator would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient


async def wait_for_topic(bootstrap: str, topic: str, timeout: float = 30) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while topic not in await admin.list_topics():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"topic {topic} was never created")
            await asyncio.sleep(0.3)
    finally:
        await admin.close()


def headers_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in record.headers or ()}


def data_of(record: ConsumerRecord[bytes, bytes]) -> Any:
    return json.loads(record.value or b"null")


async def collect(
    bootstrap: str,
    topic: str,
    match: Callable[[ConsumerRecord[bytes, bytes]], bool],
    *,
    expected: int = 1,
    timeout: float = 45,
    settle: float = 1.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """All records of the topic that match, once ``expected`` arrived (then ``settle`` seconds
    more, so duplicates would show), or whatever arrived before the timeout."""
    await wait_for_topic(bootstrap, topic)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    loop = asyncio.get_running_loop()
    try:
        deadline = loop.time() + timeout
        settle_until: float | None = None
        while loop.time() < (settle_until or deadline):
            for part in (await consumer.getmany(timeout_ms=300)).values():
                found.extend(r for r in part if match(r))
            if settle_until is None and len(found) >= expected:
                settle_until = min(loop.time() + settle, deadline)
    finally:
        await consumer.stop()
    return found


async def read_everything(
    bootstrap: str, topic_names: list[str]
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record currently in the given topics, read with one consumer up to the end offsets."""
    from aiokafka import TopicPartition

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topic_names)
    finally:
        await admin.close()
    partitions = [
        TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]
    ]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        pending = {tp for tp, end in ends.items() if end > 0}
        while pending:
            for part in (await consumer.getmany(*pending, timeout_ms=1000)).values():
                records.extend(part)
            # position, not the last offset seen: compaction leaves gaps at the end
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return records
