"""Kafka as one agency principal: publishing its messages and reading its inbox, each client
logged in with the credential of the request it serves (never a credential of the gateway's).

Producers are kept per credential while they are used (a SASL login and a metadata round per
request would cost more than the request), and closed after ``idle_s`` without use. The broker
checks every produce and fetch against the principal's ACLs, so a principal whose ACLs an
operator removed is refused on its very next request, pooled producer or not."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from shared.contracts import events as ev
from shared.contracts import topics
from shared.kafka.connection import KafkaConnection
from shared.logging import get_logger

from .inbox import Cursor, InboxMessage, in_order
from .ingress import KafkaRecord
from .sealing import KeyRecord, keys_on_topic

log = get_logger(__name__)

PRODUCER_IDLE_S = 300.0
READ_TIMEOUT_MS = 1000


class KafkaRefused(RuntimeError):
    """The broker refused the principal (its credential or its ACLs) or did not answer."""


@dataclass
class _Pooled:
    producer: AIOKafkaProducer
    used_at: float


def _credential_id(connection: KafkaConnection) -> str:
    # The pool is keyed by user and password: a changed password never reuses the old login.
    secret = f"{connection.username}\0{connection.password}".encode()
    return hashlib.sha256(secret).hexdigest()


class ProducerPool:
    def __init__(self, idle_s: float = PRODUCER_IDLE_S) -> None:
        self._idle_s = idle_s
        self._producers: dict[str, _Pooled] = {}
        self._lock = asyncio.Lock()

    async def _producer(self, connection: KafkaConnection) -> AIOKafkaProducer:
        key = _credential_id(connection)
        async with self._lock:
            pooled = self._producers.get(key)
            if pooled is None:
                producer = AIOKafkaProducer(
                    **connection.client_kwargs(),
                    acks="all",
                    enable_idempotence=True,
                    client_id="refex-gateway",
                )
                try:
                    await producer.start()
                except KafkaError as exc:
                    await producer.stop()
                    raise KafkaRefused(type(exc).__name__) from exc
                pooled = self._producers[key] = _Pooled(producer, time.monotonic())
            pooled.used_at = time.monotonic()
            return pooled.producer

    async def publish(self, connection: KafkaConnection, record: KafkaRecord) -> None:
        """Returns once every in-sync replica has the record (acks=all)."""
        producer = await self._producer(connection)
        try:
            await producer.send_and_wait(
                record.topic, record.value, key=record.key, headers=list(record.headers)
            )
        except KafkaError as exc:
            await self._drop(connection)  # a refused principal's producer is not kept
            raise KafkaRefused(type(exc).__name__) from exc

    async def publish_tombstone(self, connection: KafkaConnection, topic: str, key: str) -> None:
        producer = await self._producer(connection)
        try:
            await producer.send_and_wait(topic, None, key=key.encode())
        except KafkaError as exc:
            await self._drop(connection)
            raise KafkaRefused(type(exc).__name__) from exc

    async def _drop(self, connection: KafkaConnection) -> None:
        async with self._lock:
            pooled = self._producers.pop(_credential_id(connection), None)
        if pooled is not None:
            await pooled.producer.stop()

    async def close_idle(self) -> None:
        now = time.monotonic()
        async with self._lock:
            idle = [k for k, p in self._producers.items() if now - p.used_at > self._idle_s]
            stopping = [self._producers.pop(k).producer for k in idle]
        for producer in stopping:
            await producer.stop()

    async def close(self) -> None:
        async with self._lock:
            stopping = [p.producer for p in self._producers.values()]
            self._producers.clear()
        for producer in stopping:
            await producer.stop()


class TopicReader:
    """One principal's reader of a topic it may read (one of its agency's, or intake.keys.v1),
    from a cursor (no consumer group: the cursor is the reader's, kept by the HTTP client or
    the console session)."""

    def __init__(self, connection: KafkaConnection, topic: str, partitions: int) -> None:
        self.topic = topic
        # The partitions the catalogue gives the topic (ensure_topics creates them so).
        self._count = partitions
        self._consumer = AIOKafkaConsumer(
            **connection.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            client_id="refex-gateway-inbox",
            auto_offset_reset="earliest",
        )
        self._partitions: list[TopicPartition] = []

    async def start(self, cursor: Cursor) -> None:
        try:
            await self._consumer.start()
            # The broker lists only the topics this principal may describe.
            if self.topic not in await self._consumer.topics():
                raise KafkaRefused(f"{self.topic} not readable")
            self._partitions = [TopicPartition(self.topic, p) for p in range(self._count)]
            self._consumer.assign(self._partitions)
            for tp in self._partitions:
                if tp.partition in cursor.offsets:
                    self._consumer.seek(tp, cursor.offsets[tp.partition])
                else:
                    await self._consumer.seek_to_beginning(tp)
        except KafkaError as exc:
            await self.stop()
            raise KafkaRefused(type(exc).__name__) from exc
        except KafkaRefused:
            await self.stop()
            raise

    async def stop(self) -> None:
        try:
            await self._consumer.stop()
        except asyncio.CancelledError:
            # aiokafka's stop can let the cancellation of its own internal task escape; only
            # a cancellation of this task itself is passed on.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise

    async def at_end(self) -> bool:
        ends = await self._consumer.end_offsets(self._partitions)
        for tp, end in ends.items():
            position: int = await self._consumer.position(tp)
            if position < end:
                return False
        return True

    async def records(self, max_records: int) -> list[ConsumerRecord[bytes, bytes]]:
        try:
            batches = await self._consumer.getmany(
                timeout_ms=READ_TIMEOUT_MS, max_records=max_records
            )
        except KafkaError as exc:
            raise KafkaRefused(type(exc).__name__) from exc
        return [r for records in batches.values() for r in records]

    async def next_batch(self, max_records: int) -> list[InboxMessage]:
        return in_order(InboxMessage.from_record(r) for r in await self.records(max_records))


def _agency_reader(
    connection: KafkaConnection, agency_id: str, family: topics.TopicFamily
) -> TopicReader:
    return TopicReader(connection, family.name(agency_id), family.spec(agency_id).partitions)


async def read_page(
    connection: KafkaConnection, agency_id: str, cursor: Cursor, limit: int
) -> tuple[list[InboxMessage], Cursor]:
    """Up to ``limit`` messages after ``cursor`` (fewer when the inbox ends), and the cursor
    after them."""
    reader = _agency_reader(connection, agency_id, topics.AGENCY_INBOX)
    await reader.start(cursor)
    messages: list[InboxMessage] = []
    try:
        while len(messages) < limit and not await reader.at_end():
            messages.extend(await reader.next_batch(limit - len(messages)))
    finally:
        await reader.stop()
    for message in messages:
        cursor = cursor.after(message)
    return messages, cursor


async def follow(
    connection: KafkaConnection, agency_id: str, cursor: Cursor
) -> AsyncIterator[tuple[InboxMessage, Cursor] | None]:
    """Every message after ``cursor`` as it arrives, each with the cursor after it; None when a
    read found nothing new (the caller's chance to send a keep-alive or stop)."""
    reader = _agency_reader(connection, agency_id, topics.AGENCY_INBOX)
    await reader.start(cursor)
    try:
        while True:
            batch = await reader.next_batch(200)
            if not batch:
                yield None
            for message in batch:
                cursor = cursor.after(message)
                yield message, cursor
    finally:
        await reader.stop()


async def read_listings(connection: KafkaConnection, agency_id: str) -> dict[str, dict[str, Any]]:
    """The agency's listings as they stand: its compacted listings topic read to the end, the
    last message of each service_id (a tombstone removes it)."""
    reader = _agency_reader(connection, agency_id, topics.AGENCY_LISTINGS)
    await reader.start(Cursor({}))
    listings: dict[str, dict[str, Any]] = {}
    try:
        while not await reader.at_end():
            for record in await reader.records(500):
                key = (record.key or b"").decode("utf-8", "replace")
                if record.value is None:
                    listings.pop(key, None)
                    continue
                try:
                    listing = json.loads(record.value)
                except ValueError:
                    continue  # refused by referral when it came; nothing to show
                if isinstance(listing, dict):
                    listings[key] = listing
    finally:
        await reader.stop()
    return listings


async def read_intake_keys(connection: KafkaConnection) -> list[ev.SubmissionKey]:
    """Intake's submission keys as intake.keys.v1 holds them now (the compacted topic read to
    its end as ``connection``'s principal: every agency principal may read it)."""
    reader = TopicReader(connection, topics.INTAKE_KEYS, topics.spec(topics.INTAKE_KEYS).partitions)
    await reader.start(Cursor({}))
    records: list[KeyRecord] = []
    try:
        while not await reader.at_end():
            for record in await reader.records(500):
                ce_type = next((v for k, v in record.headers or () if k == "ce_type"), None)
                records.append(
                    KeyRecord(
                        record.key,
                        ce_type.decode("utf-8", "replace") if ce_type is not None else None,
                        record.value,
                    )
                )
    except KafkaError as exc:  # the end offsets' request too: the caller knows only refusals
        raise KafkaRefused(type(exc).__name__) from exc
    finally:
        await reader.stop()
    return keys_on_topic(records)
