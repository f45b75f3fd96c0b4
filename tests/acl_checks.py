"""Checks of what a principal may do on the real broker, each proven by the broker's own answer:
a denial is its refusal (TopicAuthorizationFailedError, GroupAuthorizationFailedError), never
a write or read that merely did not show up in time. Shared by the access tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

from shared.contracts import topics
from shared.kafka.connection import KafkaConnection

READ_BACK_S = 30  # a bound on reading what is already there, not a wait for something to arrive


def _partitions(topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(topics.spec(topic).partitions)]


def _consumer(connection: KafkaConnection, group: str | None = None) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **connection.client_kwargs(),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=5000,
    )


async def end_offsets(admin: KafkaConnection, topic: str) -> dict[TopicPartition, int]:
    c = _consumer(admin)
    await c.start()
    try:
        offsets: dict[TopicPartition, int] = await c.end_offsets(_partitions(topic))
        return offsets
    finally:
        await c.stop()


async def read_range(
    admin: KafkaConnection, start: dict[TopicPartition, int], end: dict[TopicPartition, int]
) -> list[bytes | None]:
    """Every value from ``start`` up to ``end`` (exclusive) of each partition, read as the
    operator: complete once each partition's position has reached its end offset."""
    pending = {tp for tp in end if end[tp] > start[tp]}
    if not pending:  # the offsets prove it: nothing was written in between
        return []
    c = _consumer(admin)
    await c.start()
    found: list[bytes | None] = []
    try:
        c.assign(list(end))
        for tp, offset in start.items():
            c.seek(tp, offset)
        async with asyncio.timeout(READ_BACK_S):
            while pending:
                for tp, records in (await c.getmany(*pending, timeout_ms=500)).items():
                    found += [r.value for r in records if r.offset < end[tp]]
                pending = {tp for tp in pending if await c.position(tp) < end[tp]}
    finally:
        await c.stop()
    return found


def _marker() -> bytes:
    return f"marker-{uuid.uuid4().hex}".encode()


async def write(connection: KafkaConnection, topic: str) -> bytes:
    """Write a unique marker as ``connection`` and return it; raises whatever the broker says."""
    marker = _marker()
    p = AIOKafkaProducer(**connection.client_kwargs(), acks="all", request_timeout_ms=5000)
    await p.start()
    try:
        await asyncio.wait_for(p.send_and_wait(topic, marker, key=b"k"), timeout=15)
    finally:
        await p.stop()
    return marker


async def check_writes(
    connection: KafkaConnection,
    admin: KafkaConnection,
    *,
    allowed: Sequence[str],
    denied: Sequence[str],
) -> None:
    """With one producer as ``connection``: a write to each ``allowed`` topic lands (read back
    at its offset), then each write to a ``denied`` topic is refused by the broker's authoriser
    and leaves nothing between the end offsets before and after it, then an allowed write lands
    again (the client still worked right after its denials)."""
    assert allowed, "a denial needs a positive control with the same client"
    p = AIOKafkaProducer(**connection.client_kwargs(), acks="all", request_timeout_ms=5000)
    await p.start()
    try:

        async def lands(topic: str) -> None:
            marker = _marker()
            meta = await asyncio.wait_for(p.send_and_wait(topic, marker, key=b"k"), 15)
            tp = TopicPartition(topic, meta.partition)
            got = await read_range(admin, {tp: meta.offset}, {tp: meta.offset + 1})
            assert got == [marker], f"{topic}: the allowed write did not land"

        for topic in allowed:
            await lands(topic)
        for topic in denied:
            marker = _marker()
            before = await end_offsets(admin, topic)
            with pytest.raises(TopicAuthorizationFailedError):
                await asyncio.wait_for(p.send_and_wait(topic, marker, key=b"k"), 15)
            after = await end_offsets(admin, topic)
            assert marker not in await read_range(admin, before, after), f"{topic}: written"
        await lands(allowed[0])
    finally:
        await p.stop()


async def values(
    connection: KafkaConnection,
    topic: str,
    *,
    group: str | None = None,
    wait_s: float = READ_BACK_S,
    until: bytes | None = None,
) -> set[bytes]:
    """The values ``connection`` reads from the topic (from the beginning) within ``wait_s``,
    stopping early once ``until`` is among them. A topic or group it may not use is the
    broker's refusal, raised (TopicAuthorizationFailedError, GroupAuthorizationFailedError)."""
    c = _consumer(connection, group)
    await c.start()
    found: set[bytes] = set()
    try:
        if group is None:
            c.assign(_partitions(topic))
        else:
            c.subscribe([topic])
        deadline = asyncio.get_running_loop().time() + wait_s
        while asyncio.get_running_loop().time() < deadline and until not in found:
            for records in (await c.getmany(timeout_ms=500)).values():
                found.update(r.value for r in records if r.value is not None)
            # An assigned consumer denied a topic never fetches, so it raises nothing: the
            # broker's refusal is in the metadata answer (TOPIC_AUTHORIZATION_FAILED), which
            # aiokafka keeps on its cluster view.
            if topic in c._client.cluster.unauthorized_topics:
                raise TopicAuthorizationFailedError(topic)
    finally:
        await c.stop()
    return found


async def can_read(
    connection: KafkaConnection, topic: str, admin: KafkaConnection, group: str | None = None
) -> bool:
    """Whether ``connection`` may read the topic: True when it receives a marker the operator
    wrote there, False only when the broker refuses it. Neither within the bound fails the
    test: silence proves nothing."""
    marker = await write(admin, topic)
    try:
        found = await values(connection, topic, group=group, until=marker)
    except (TopicAuthorizationFailedError, GroupAuthorizationFailedError):
        return False
    assert marker in found, f"{topic}: neither read nor refused within {READ_BACK_S} s"
    return True
