"""Reading topics from outside the services, as an integrator would."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ops import kafka_access
from ops.access_policy import agency_user
from shared.kafka.admin import ensure_agency_topics
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from tests import factories as f

Match = Callable[[ConsumerRecord[bytes, bytes]], bool]


async def register_agency_access(kafka: KafkaConnection, agency_id: str) -> KafkaConnection:
    """What `refex platform register-agency` does on the broker: the agency's topics, its
    principal with a fresh password and the ACLs (its own and the services' on its topics).
    Returns the agency's own connection."""
    await ensure_agency_topics(kafka, agency_id)
    password = kafka_access.new_password()
    access = kafka_access.KafkaAccess(kafka)
    await asyncio.to_thread(kafka_access.grant_agency, access, agency_id, password)
    connection = kafka.as_user(agency_user(agency_id), password)
    await wait_until_authenticated(connection)
    return connection


async def wait_until_authenticated(connection: KafkaConnection, timeout: float = 30) -> None:
    """A new SCRAM credential reaches the broker's cache shortly after the controller has
    committed it: until then a login with it fails (seen under load in make chaos). Waits
    quietly, as `refex platform register-agency` does."""
    await kafka_access.wait_until_login_works(connection, timeout_s=timeout)


async def wait_for_topic(kafka: KafkaConnection, topic: str, timeout: float = 30) -> None:
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
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
    kafka: KafkaConnection,
    topic: str,
    match: Callable[[ConsumerRecord[bytes, bytes]], bool],
    *,
    expected: int = 1,
    timeout: float = 45,
    settle: float = 1.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """All records of the topic that match, once ``expected`` arrived and the topic was read on
    until ``settle`` seconds after the last of them was written (so that a duplicate written
    soon after it would show), or whatever arrived before the timeout. Never use it to show
    that something is absent (silence proves nothing): use :func:`absent_before_sentinel`."""
    await wait_for_topic(kafka, topic)
    consumer = AIOKafkaConsumer(
        topic,
        **kafka.client_kwargs(),
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
                settle_until = min(loop.time() + _still_to_settle(found, settle), deadline)
        if settle_until is not None:
            # To the end as it is now: what was written while settling and not fetched yet, or
            # the rest of a long topic whose matches were old and came first.
            rest = await _read_to_end(consumer, list(consumer.assignment()))
            found.extend(r for r in rest if match(r))
    finally:
        await consumer.stop()
    return found


def _still_to_settle(found: list[ConsumerRecord[bytes, bytes]], settle: float) -> float:
    """Seconds until ``settle`` after the newest match was written (its record's timestamp):
    a record read long after it was written (a test that looks after the fact) needs no more
    waiting, and the wait no longer adds a full ``settle`` to every step of a test."""
    written = max(r.timestamp for r in found) / 1000
    return max(0.0, written + settle - time.time())


async def _partitions(kafka: KafkaConnection, topic_names: list[str]) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        described = await admin.describe_topics(topic_names)
    finally:
        await admin.close()
    return [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]


async def read_past_sentinel(
    kafka: KafkaConnection, topic: str, sentinel: Match, *, timeout: float = 45
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of every partition of ``topic`` up to the end offsets taken once a record
    matching ``sentinel`` has been read. The sentinel must have been caused after the record
    under test would have been written: its arrival proves the stream was read past that point.
    Records of one agency's inbox are spread over partitions, so order across partitions proves
    nothing: hence every partition to its end offset, not just the sentinel's."""
    await wait_for_topic(kafka, topic)
    partitions = await _partitions(kafka, [topic])
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    loop = asyncio.get_running_loop()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = loop.time() + timeout
        while not any(sentinel(r) for r in records):
            if loop.time() > deadline:
                raise AssertionError(f"the sentinel never arrived on {topic}: nothing is proven")
            for part in (await consumer.getmany(timeout_ms=300)).values():
                records.extend(part)
        records += await _read_to_end(consumer, partitions)
    finally:
        await consumer.stop()
    return records


async def absent_before_sentinel(
    kafka: KafkaConnection, topic: str, forbidden: Match, sentinel: Match, *, timeout: float = 45
) -> list[ConsumerRecord[bytes, bytes]]:
    """Asserts that no record matching ``forbidden`` is on ``topic``, read past a sentinel (see
    :func:`read_past_sentinel`); returns every record read."""
    records = await read_past_sentinel(kafka, topic, sentinel, timeout=timeout)
    found = [(headers_of(r).get("ce_type"), r.key) for r in records if forbidden(r)]
    assert not found, f"on {topic}, read past the sentinel: {found}"
    return records


def subject_is(subject: str) -> Match:
    return lambda r: headers_of(r).get("ce_subject") == subject


async def provoke_rejection(kafka: KafkaConnection, agency: str) -> str:
    """An invalid submission (no consent) in the agency's name: its rejection reaches the
    agency's inbox with the submission's id as subject (a known answer, e.g. a sentinel).
    Returns that id."""
    sent = f.submission_event(f.submission(agency))
    body = json.loads(sent.body)
    del body["consent"]
    await publish_events(
        kafka, [type(sent)(sent.topic, sent.key, sent.headers, json.dumps(body).encode())]
    )
    return sent.event_id


async def wait_until_consumed(
    database_url: str, consumer: str, event_id: str, timeout: float = 45
) -> None:
    """Until the consumer group has applied the event (its claim in the service's inbox table,
    committed with everything the event caused, outbox rows included)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    conn = await asyncpg.connect(database_url)
    try:
        while not await conn.fetchval(
            "SELECT count(*) FROM inbox WHERE consumer = $1 AND event_id = $2", consumer, event_id
        ):
            assert loop.time() < deadline, f"{consumer} never applied {event_id}"
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def read_everything(
    kafka: KafkaConnection, topic_names: list[str]
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record currently in the given topics, read with one consumer up to the end offsets."""
    partitions = await _partitions(kafka, topic_names)
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records += await _read_to_end(consumer, partitions)
    finally:
        await consumer.stop()
    return records


async def _read_to_end(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> list[ConsumerRecord[bytes, bytes]]:
    """From the consumer's positions up to the end offsets taken now (a fixed point: records
    written later are not waited for)."""
    records: list[ConsumerRecord[bytes, bytes]] = []
    ends = await consumer.end_offsets(partitions)
    # position, not the last offset seen: compaction leaves gaps at the end
    pending = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
    while pending:
        for part in (await consumer.getmany(*pending, timeout_ms=1000)).values():
            records.extend(part)
        pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    return records
