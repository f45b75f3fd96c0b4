"""Transactional outbox relay against the real broker and PostgreSQL."""

import asyncio
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from faststream.kafka import KafkaBroker

from shared.contracts import events as ev
from shared.contracts.envelope import OutgoingEvent, build_event
from shared.db import outbox
from shared.db.outbox import OutboxRelay
from shared.kafka.broker import create_broker
from shared.kafka.connection import KafkaConnection
from shared.kafka.publisher import EventPublisher
from tests import factories as f
from tests.conftest import TopicFactory


@pytest.fixture
async def broker(kafka: KafkaConnection) -> AsyncIterator[KafkaBroker]:
    b = create_broker(kafka, client_id="test-outbox")
    await b.connect()
    try:
        yield b
    finally:
        await b.stop()


def _events(topic: str, keys: list[str]) -> list[OutgoingEvent]:
    return [
        build_event(
            topic=topic,
            key=k,
            type_=ev.AGENCY_REGISTERED,
            source="urn:test",
            data=f.agency(f"ngo-{i:04d}"),
        )
        for i, k in enumerate(keys)
    ]


async def _read_all(kafka: KafkaConnection, topic: str, expected: int, timeout: float = 20) -> list:
    consumer = AIOKafkaConsumer(
        topic,
        **kafka.client_kwargs(),
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(records) < expected and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for part in batch.values():
                records.extend(part)
        # a little longer, to see duplicates if there were any
        for part in (await consumer.getmany(timeout_ms=500)).values():
            records.extend(part)
    finally:
        await consumer.stop()
    return records


async def test_committed_events_are_relayed_in_order_per_key_once(
    scratch_pool: asyncpg.Pool, broker: KafkaBroker, kafka: KafkaConnection, new_topic: TopicFactory
) -> None:
    topic = await new_topic(partitions=3)
    keys = [f"case-{i % 4}" for i in range(40)]
    events = _events(topic, keys)
    async with scratch_pool.acquire() as conn, conn.transaction():
        await outbox.enqueue(conn, events[:20])
    async with scratch_pool.acquire() as conn, conn.transaction():
        await outbox.enqueue(conn, events[20:])

    relay = OutboxRelay(
        scratch_pool, EventPublisher(broker).publish_batch, batch_size=7, poll_interval_s=0.2
    )
    relay.start()
    try:
        records = await _read_all(kafka, topic, expected=40)
    finally:
        await relay.stop()

    ids = [dict(r.headers)["ce_id"].decode() for r in records]
    assert sorted(ids) == sorted(e.event_id for e in events)  # all, and none twice
    for key in set(keys):
        sent = [e.event_id for e in events if e.key == key]
        got = [dict(r.headers)["ce_id"].decode() for r in records if r.key.decode() == key]
        assert got == sent  # per-key order kept
    async with scratch_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0


async def test_rolled_back_transaction_publishes_nothing(
    scratch_pool: asyncpg.Pool, broker: KafkaBroker, kafka: KafkaConnection, new_topic: TopicFactory
) -> None:
    topic = await new_topic()
    kept, dropped = _events(topic, ["a"]), _events(topic, ["b"])

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with scratch_pool.acquire() as conn, conn.transaction():
            await outbox.enqueue(conn, dropped)
            raise Boom
    async with scratch_pool.acquire() as conn, conn.transaction():
        await outbox.enqueue(conn, kept)

    relay = OutboxRelay(scratch_pool, EventPublisher(broker).publish_batch, poll_interval_s=0.2)
    relay.start()
    try:
        records = await _read_all(kafka, topic, expected=1)
    finally:
        await relay.stop()
    assert [dict(r.headers)["ce_id"].decode() for r in records] == [kept[0].event_id]


async def test_notify_wakes_the_relay_before_the_poll_interval(
    scratch_pool: asyncpg.Pool, broker: KafkaBroker, kafka: KafkaConnection, new_topic: TopicFactory
) -> None:
    topic = await new_topic()
    relay = OutboxRelay(scratch_pool, EventPublisher(broker).publish_batch, poll_interval_s=60)
    relay.start()
    try:
        await asyncio.sleep(0.5)  # the relay is now waiting, for up to 60 s without a NOTIFY
        async with scratch_pool.acquire() as conn, conn.transaction():
            await outbox.enqueue(conn, _events(topic, ["a"]))
        records = await _read_all(kafka, topic, expected=1, timeout=10)
    finally:
        await relay.stop()
    assert len(records) == 1


async def test_unsent_rows_survive_a_failing_broker_and_go_out_later(
    scratch_pool: asyncpg.Pool, broker: KafkaBroker, kafka: KafkaConnection, new_topic: TopicFactory
) -> None:
    topic = await new_topic()
    events = _events(topic, ["a", "b"])
    async with scratch_pool.acquire() as conn, conn.transaction():
        await outbox.enqueue(conn, events)

    async def failing(_: object) -> None:
        raise ConnectionError("broker away")

    down = OutboxRelay(scratch_pool, failing)
    with pytest.raises(ConnectionError):
        await down.drain_once()
    async with scratch_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 2

    up = OutboxRelay(scratch_pool, EventPublisher(broker).publish_batch)
    assert await up.drain_once() == 2
    assert len(await _read_all(kafka, topic, expected=2)) == 2


async def test_the_relay_outlives_losing_its_listening_connection(
    scratch_pool: asyncpg.Pool, broker: KafkaBroker, kafka: KafkaConnection, new_topic: TopicFactory
) -> None:
    """Found by the chaos suite: after a PostgreSQL restart the pool had taken the relay's
    LISTEN connection back, the next check raised, and the relay stopped for good while the
    service still looked ready."""
    topic = await new_topic()
    relay = OutboxRelay(scratch_pool, EventPublisher(broker).publish_batch, poll_interval_s=0.2)
    relay.start()
    try:
        for _ in range(50):  # until it listens
            if relay._listener is not None:
                break
            await asyncio.sleep(0.1)
        assert relay._listener is not None
        await scratch_pool.release(relay._listener)  # what the pool does when the server goes
        events = _events(topic, ["a"])
        async with scratch_pool.acquire() as conn, conn.transaction():
            await outbox.enqueue(conn, events)
        records = await _read_all(kafka, topic, expected=1)
        assert relay.running
    finally:
        await relay.stop()
    assert [dict(r.headers)["ce_id"].decode() for r in records] == [events[0].event_id]


async def test_one_relay_at_a_time_publishes(scratch_pool: asyncpg.Pool) -> None:
    """While another relay of the database holds the relay lock, a drain publishes nothing
    and leaves the rows unsent; once it is free, the rows go out."""
    published: list[str] = []

    async def publish(events: Sequence[OutgoingEvent]) -> None:
        published.extend(e.event_id for e in events)

    events = _events("test.relay-lock.v1", ["a", "b"])
    async with scratch_pool.acquire() as conn:
        await outbox.enqueue(conn, events)
    relay = OutboxRelay(scratch_pool, publish)
    async with scratch_pool.acquire() as other, other.transaction():
        assert await other.fetchval("SELECT pg_try_advisory_xact_lock($1)", outbox._RELAY_LOCK_ID)
        assert await relay.drain_once() == 0
        assert published == []
    assert await relay.drain_once() == 2
    assert published == [e.event_id for e in events]
    assert await relay.drain_once() == 0  # sent: not again
