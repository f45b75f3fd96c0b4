"""The reliable consumer on the real broker and PostgreSQL: exactly-once effects through the inbox,
bounded retries, dead letters with the reason, and no stalled partition."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.db import DbConnection
from shared.kafka.broker import create_broker
from shared.kafka.connection import KafkaConnection
from shared.kafka.consumer import ReliableConsumer, RetryPolicy
from shared.kafka.dead_letters import DeadLetterPublisher
from shared.kafka.inbound import InboundEvent, PermanentError
from tests import applied_ledger
from tests.conftest import TopicFactory
from tests.e2e.kafka_helpers import read_everything
from tests.raw_kafka import RawHeaderName, raw_header_names


@dataclass
class Harness:
    topic: str
    dlq: str
    producer: AIOKafkaProducer
    pool: asyncpg.Pool
    attempts: Counter[str] = field(default_factory=Counter)

    async def send(
        self,
        body: bytes,
        event_id: str | None = None,
        headers: list | None = None,
    ) -> str:
        eid = event_id or str(uuid.uuid4())
        base = [
            ("ce_specversion", b"1.0"),
            ("ce_id", eid.encode()),
            ("ce_source", b"urn:test"),
            ("ce_type", b"org.referralexchange.test.thing.v1"),
        ]
        await self.producer.send_and_wait(
            self.topic, body, key=b"k", headers=headers if headers is not None else base
        )
        return eid

    async def applied(self) -> list[str]:
        return await applied_ledger.applied(self.pool)

    async def wait_applied(self, count: int, timeout: float = 20) -> list[str]:
        return await applied_ledger.wait_applied(self.pool, count, timeout)


@pytest.fixture
async def harness(
    kafka: KafkaConnection, scratch_pool: asyncpg.Pool, new_topic: TopicFactory
) -> AsyncIterator[Harness]:
    topic = await new_topic()
    group = f"test-{uuid.uuid4().hex[:8]}"
    dlq = f"{group}.dlq.v1"
    from shared.contracts.topics import Owner, TopicSpec
    from shared.kafka.admin import ensure_topics

    await ensure_topics(kafka, [TopicSpec(dlq, Owner.OPERATORS, "k", 1)])
    await applied_ledger.create(scratch_pool)

    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all")
    await producer.start()
    h = Harness(topic, dlq, producer, scratch_pool)

    async def handler(event: InboundEvent, conn: DbConnection) -> None:
        mode = json.loads(event.value or b"{}").get("mode", "ok")
        h.attempts[event.event_id] += 1
        if mode == "permanent":
            raise PermanentError("thing is not acceptable")
        if mode == "fail_twice" and h.attempts[event.event_id] <= 2:
            raise ConnectionError("transient")
        if mode == "always_fail":
            raise RuntimeError("still broken")
        if mode == "outage" and h.attempts[event.event_id] <= 6:
            raise ConnectionRefusedError("the database is restarting")
        await applied_ledger.record(conn, event.event_id)

    broker = create_broker(kafka, client_id=group)
    dead_letters = DeadLetterPublisher(kafka, group)
    await dead_letters.start()
    ReliableConsumer(
        group=group,
        pool=lambda: scratch_pool,
        dead_letters=dead_letters,
        handlers={topic: handler},
        retry=RetryPolicy(max_attempts=3, base_delay_s=0.05),
        max_message_bytes=2048,
    ).register(broker)
    await broker.start()
    try:
        yield h
    finally:
        await broker.stop()
        await dead_letters.stop()
        await producer.stop()


async def _dead_letters(kafka: KafkaConnection, topic: str, expected: int) -> list:
    consumer = AIOKafkaConsumer(topic, **kafka.client_kwargs(), auto_offset_reset="earliest")
    await consumer.start()
    records: list = []
    try:
        for _ in range(40):
            for part in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(part)
            if len(records) >= expected:
                break
    finally:
        await consumer.stop()
    return records


async def test_redelivered_event_is_applied_once(harness: Harness) -> None:
    eid = await harness.send(b'{"mode": "ok"}')
    await harness.send(b'{"mode": "ok"}', event_id=eid)  # same CloudEvents id again
    marker = await harness.send(b'{"mode": "ok"}')
    applied = await harness.wait_applied(2)
    await asyncio.sleep(0.5)
    assert await harness.applied() == [eid, marker]
    assert applied[:2] == [eid, marker]


async def test_an_outage_longer_than_the_retries_is_waited_out(
    harness: Harness, kafka: KafkaConnection
) -> None:
    """Six connection failures, twice the retry budget: the event is applied in the end and
    nothing is dead-lettered (a database restart must not lose messages)."""
    eid = await harness.send(b'{"mode": "outage"}')
    marker = await harness.send(b'{"mode": "ok"}')
    assert await harness.wait_applied(2, timeout=30) == [eid, marker]
    assert harness.attempts[eid] == 7
    # The marker behind it on the partition was applied, so a dead letter for it would already
    # be written: the whole DLQ, read to its end offsets, is empty (not "nothing came for 20 s").
    assert await read_everything(kafka, [harness.dlq]) == []


async def test_transient_errors_are_retried(harness: Harness, kafka: KafkaConnection) -> None:
    eid = await harness.send(b'{"mode": "fail_twice"}')
    assert await harness.wait_applied(1) == [eid]
    assert harness.attempts[eid] == 3


async def test_permanent_error_goes_to_dlq_and_the_partition_flows_on(
    harness: Harness, kafka: KafkaConnection
) -> None:
    bad = await harness.send(b'{"mode": "permanent"}')
    exhausted = await harness.send(b'{"mode": "always_fail"}')
    good = await harness.send(b'{"mode": "ok"}')
    assert await harness.wait_applied(1) == [good]
    assert harness.attempts[bad] == 1  # no retries for a permanent error
    assert harness.attempts[exhausted] == 3  # bounded retries

    letters = await _dead_letters(kafka, harness.dlq, expected=2)
    by_id = {dict(r.headers)["ce_id"].decode(): r for r in letters}
    assert set(by_id) == {bad, exhausted}
    headers = dict(by_id[bad].headers)
    assert by_id[bad].value == b'{"mode": "permanent"}'  # original value kept
    assert headers["ce_source"] == b"urn:test"  # original headers kept
    assert headers["dlq_error_type"] == b"PermanentError"
    assert b"not acceptable" in headers["dlq_error"]
    assert headers["dlq_original_topic"].decode() == harness.topic
    assert dict(by_id[exhausted].headers)["dlq_error_type"] == b"RuntimeError"


async def test_poison_records_never_stall_the_consumer(
    harness: Harness, kafka: KafkaConnection
) -> None:
    await harness.send(b"x" * 4096)  # over the size limit
    await harness.send(b'{"mode": "ok"}', headers=[("ce_id", b"\xff\xfe"), ("junk", b"\x00\xff")])
    await harness.send(b"not json at all", headers=[])
    # JSON content type with a broken body: must reach our handler, not fail inside FastStream
    await harness.send(
        b'{"mode": ', headers=[("content-type", b"application/json"), ("ce_id", b"broken-json")]
    )
    good = await harness.send(b'{"mode": "ok"}')
    applied = await harness.wait_applied(2)
    assert good in applied
    letters = await _dead_letters(kafka, harness.dlq, expected=2)
    reasons = [dict(r.headers)["dlq_error"].decode() for r in letters]
    assert any("exceeds the limit" in reason for reason in reasons)
    assert any("JSONDecodeError" in reason for reason in reasons)


async def test_a_record_aiokafka_cannot_read_is_dead_lettered_and_skipped(
    harness: Harness, kafka: KafkaConnection
) -> None:
    """A header name that is not UTF-8 makes aiokafka raise at every read of the record; the
    consumer found nothing more to read after it (found by fuzzing)."""
    with raw_header_names():
        producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all")
        await producer.start()
        try:
            unreadable = await producer.send_and_wait(
                harness.topic,
                b'{"mode": "ok"}',
                key=b"k",
                headers=[("ce_id", b"bad-name"), (RawHeaderName("\xff\xfe"), b"x")],
            )
        finally:
            await producer.stop()
    good = await harness.send(b'{"mode": "ok"}')
    assert await harness.wait_applied(1) == [good]
    [letter] = await _dead_letters(kafka, harness.dlq, expected=1)
    headers = dict(letter.headers)
    assert headers["dlq_original_offset"] == str(unreadable.offset).encode()
    assert b"header name is not UTF-8" in headers["dlq_error"]
