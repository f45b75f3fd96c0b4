"""`refex platform replay-dead-letters` on the real broker: a record dead-lettered for a bug is,
after the fix, replayed to its original topic and applied exactly once; replaying again
applies nothing twice (the consumer's inbox); a dry run and a refused replay send nothing.

The scratch consumer writes its dead letters to a real service's dead-letter topic (the command
takes a service name), and every replay here is narrowed to the test's own scratch topic with
``--original-topic``: other tests' dead letters on that topic are never touched."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from click.testing import Result
from typer.testing import CliRunner

from ops.cli import app
from shared.contracts import topics
from shared.db import DbConnection
from shared.kafka.broker import create_broker
from shared.kafka.connection import KafkaConnection
from shared.kafka.consumer import ReliableConsumer, RetryPolicy
from shared.kafka.dead_letters import DeadLetterPublisher
from shared.kafka.inbound import InboundEvent, PermanentError
from tests import applied_ledger
from tests.conftest import TopicFactory
from tests.e2e.kafka_helpers import collect, read_everything

SERVICE = "referral"
DLQ = topics.dead_letter_topic(SERVICE)
runner = CliRunner()


@dataclass
class Harness:
    topic: str
    producer: AIOKafkaProducer
    pool: asyncpg.Pool
    fixed: bool = False  # the "fix": until it is deployed, the handler refuses "needs_fix"
    attempts: Counter[str] = field(default_factory=Counter)

    async def send(self, mode: str) -> str:
        eid = str(uuid.uuid4())
        headers = [
            ("ce_specversion", b"1.0"),
            ("ce_id", eid.encode()),
            ("ce_source", b"urn:test"),
            ("ce_type", b"org.referralexchange.test.thing.v1"),
            ("x-binary", b"\x00\xff"),  # must come back byte for byte
        ]
        body = json.dumps({"mode": mode}).encode()
        await self.producer.send_and_wait(self.topic, body, key=b"k", headers=headers)
        return eid

    async def applied(self) -> list[str]:
        return await applied_ledger.applied(self.pool)

    async def wait_applied(self, count: int, timeout: float = 30) -> list[str]:
        return await applied_ledger.wait_applied(self.pool, count, timeout)


@pytest.fixture
async def harness(
    kafka: KafkaConnection, scratch_pool: asyncpg.Pool, new_topic: TopicFactory
) -> AsyncIterator[Harness]:
    topic = await new_topic()
    group = f"test-{uuid.uuid4().hex[:8]}"
    await applied_ledger.create(scratch_pool)
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all")
    await producer.start()
    h = Harness(topic, producer, scratch_pool)

    async def handler(event: InboundEvent, conn: DbConnection) -> None:
        h.attempts[event.event_id] += 1
        if json.loads(event.value or b"{}")["mode"] == "needs_fix" and not h.fixed:
            raise PermanentError("thing not supported yet")
        await applied_ledger.record(conn, event.event_id)

    broker = create_broker(kafka, client_id=group)
    dead_letters = DeadLetterPublisher(kafka, SERVICE)  # onto referral.dlq.v1
    await dead_letters.start()
    ReliableConsumer(
        group=group,
        pool=lambda: scratch_pool,
        dead_letters=dead_letters,
        handlers={topic: handler},
        retry=RetryPolicy(max_attempts=2, base_delay_s=0.05),
        max_message_bytes=4096,
    ).register(broker)
    await broker.start()
    try:
        yield h
    finally:
        await broker.stop()
        await dead_letters.stop()
        await producer.stop()


async def _replay(kafka: KafkaConnection, original_topic: str, *extra: str) -> Result:
    # In a thread: the command runs its own event loops, and the consumer must keep running.
    # Wide enough that no column of the dry run's table is shortened.
    args = ["platform", "replay-dead-letters", SERVICE, "--original-topic", original_topic]
    return await asyncio.to_thread(
        runner.invoke,
        app,
        [*args, *extra, "--bootstrap", kafka.bootstrap_servers],
        env={"COLUMNS": "200"},
    )


async def _records(kafka: KafkaConnection, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    return sorted(await read_everything(kafka, [topic]), key=lambda r: r.offset)


async def _audit_ids(kafka: KafkaConnection) -> list[tuple[str, str]]:
    """(audit id, outcome) of every replay-dead-letters audit record for SERVICE, read to the
    end offsets (the command's audit records are acknowledged before it returns)."""
    found = []
    for r in await _records(kafka, topics.OPERATORS_AUDIT):
        entry = json.loads(r.value or b"{}")
        if entry["command"] == "platform replay-dead-letters" and entry["target_id"] == SERVICE:
            assert entry["target_kind"] == "dead_letters"
            found.append((entry["audit_id"], entry["outcome"]))
    return found


async def test_a_dead_letter_replayed_after_the_fix_is_applied_exactly_once(
    harness: Harness, kafka: KafkaConnection
) -> None:
    broken = await harness.send("needs_fix")
    fine = await harness.send("ok")
    assert await harness.wait_applied(1) == [fine]
    [letter] = await collect(
        kafka, DLQ, lambda r: dict(r.headers).get("dlq_original_topic") == harness.topic.encode()
    )
    assert dict(letter.headers)["ce_id"] == broken.encode()
    audits_before = await _audit_ids(kafka)

    # A dry run lists the dead letter and sends nothing (and, changing nothing, is not audited).
    dry = await _replay(kafka, harness.topic, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Would be replayed" in dry.output and "PermanentError" in dry.output
    assert "replayed 0, skipped 0" in dry.output
    assert len(await _records(kafka, harness.topic)) == 2
    assert await _audit_ids(kafka) == audits_before

    harness.fixed = True
    first = await _replay(kafka, harness.topic)
    assert first.exit_code == 0, first.output
    assert "replayed 1, skipped 0" in first.output
    assert await harness.wait_applied(2) == [fine, broken]

    # On the original topic: the original record again, byte for byte, no dlq_* header.
    original, _, replayed = await _records(kafka, harness.topic)
    assert (replayed.key, replayed.value, list(replayed.headers)) == (
        original.key,
        original.value,
        list(original.headers),
    )
    assert replayed.partition == original.partition

    # Again: sent again, but the inbox knows the event. A later record on the same partition
    # being applied proves the second copy was consumed by then.
    second = await _replay(kafka, harness.topic)
    assert second.exit_code == 0 and "replayed 1" in second.output, second.output
    marker = await harness.send("ok")
    assert await harness.wait_applied(3) == [fine, broken, marker]
    assert harness.attempts[broken] == 2, "refused once, applied once, then skipped by the inbox"

    audits = (await _audit_ids(kafka))[len(audits_before) :]
    assert [outcome for _, outcome in audits] == ["started", "succeeded"] * 2
    assert "needs_fix" not in first.output + second.output + dry.output, "never a value"


async def test_dead_letters_lacking_their_original_refuse_the_whole_replay(
    kafka: KafkaConnection, new_topic: TopicFactory
) -> None:
    """One dead letter whose value was left out (too large for the dead-letter topic) and one
    complete one, from the same topic: nothing is sent, the incomplete one is listed."""
    topic = await new_topic()
    origin = [
        ("dlq_error", b"PermanentError: too large"),
        ("dlq_error_type", b"PermanentError"),
        ("dlq_consumer_group", SERVICE.encode()),
        ("dlq_original_topic", topic.encode()),
        ("dlq_original_partition", b"0"),
        ("dlq_failed_at", b"2026-01-01T00:00:00+00:00"),
    ]
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            DLQ,
            b'{"mode": "ok"}',
            key=b"k",
            headers=[("ce_id", b"complete"), *origin, ("dlq_original_offset", b"0")],
        )
        await producer.send_and_wait(
            DLQ,
            b"",
            key=b"k",
            headers=[
                ("ce_id", b"incomplete"),
                *origin,
                ("dlq_original_offset", b"1"),
                ("dlq_omitted", b"original value (2000000 bytes in all)"),
            ],
        )
    finally:
        await producer.stop()
    audits_before = await _audit_ids(kafka)

    result = await _replay(kafka, topic)
    assert result.exit_code == 1, result.output
    assert "lack part of their original record" in result.output
    assert "nothing was replayed" in result.output and "incomplete" in result.output
    assert await _records(kafka, topic) == [], "nothing sent, not even the complete one"
    assert await _audit_ids(kafka) == audits_before, "refused before any change: no audit"
