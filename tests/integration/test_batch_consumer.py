"""Batches on the real PostgreSQL: one transaction per batch must keep every per-event guarantee
(exactly once, order per partition, bounded retries, dead letters that leave nothing behind,
outages waited out)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
import pytest

from shared.db import DbConnection, batch_scope
from shared.kafka.consumer import ReliableConsumer, RetryPolicy
from shared.kafka.inbound import InboundEvent, PermanentError
from tests import applied_ledger
from tests import factories as f

TOPIC = "test.batch.v1"


@dataclass
class FakeDeadLetters:
    topic: str = "test-batch.dlq.v1"
    letters: list[tuple[str, str]] = field(default_factory=list)

    async def publish(self, event: InboundEvent, error: BaseException) -> None:
        self.letters.append((event.event_id, type(error).__name__))


@dataclass
class Batches:
    pool: asyncpg.Pool
    consumer: ReliableConsumer
    dead_letters: FakeDeadLetters
    attempts: Counter[str] = field(default_factory=Counter)
    broken: set[str] = field(default_factory=set)  # ids refused until fixed
    offsets: Counter[int] = field(default_factory=Counter)
    deferred_statements: int = 0

    def event(
        self, mode: str = "ok", partition: int = 0, event_id: str | None = None
    ) -> InboundEvent:
        eid = event_id or uuid.uuid4().hex
        headers = [
            ("ce_specversion", b"1.0"),
            ("ce_id", eid.encode()),
            ("ce_source", b"urn:test"),
            ("ce_type", b"org.referralexchange.test.thing.v1"),
        ]
        record = f.record(TOPIC, json.dumps({"mode": mode}).encode(), headers)
        record = dataclasses.replace(record, partition=partition, offset=self.offsets[partition])
        self.offsets[partition] += 1
        return InboundEvent.from_record(record)

    async def applied(self) -> list[str]:
        return await applied_ledger.applied(self.pool)

    async def deferred(self) -> list[str]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT event_id FROM deferred ORDER BY n")
        return [r["event_id"] for r in rows]

    async def claimed(self, event_id: str) -> bool:
        async with self.pool.acquire() as conn:
            return bool(
                await conn.fetchval("SELECT count(*) FROM inbox WHERE event_id = $1", event_id)
            )


@pytest.fixture
async def batches(scratch_pool: asyncpg.Pool) -> Batches:
    await applied_ledger.create(scratch_pool)
    async with scratch_pool.acquire() as conn:
        await conn.execute("CREATE TABLE deferred (n serial, event_id text NOT NULL)")
    dead_letters = FakeDeadLetters()
    consumer = ReliableConsumer(
        group="test-batch",
        pool=lambda: scratch_pool,
        dead_letters=dead_letters,  # type: ignore[arg-type]
        handlers={},
        retry=RetryPolicy(max_attempts=3, base_delay_s=0.01),
        max_message_bytes=4096,
    )
    b = Batches(scratch_pool, consumer, dead_letters)

    async def write_deferred(conn: DbConnection, rows: Sequence[str]) -> None:
        b.deferred_statements += 1
        await conn.execute(
            "INSERT INTO deferred (event_id) SELECT event_id"
            " FROM unnest($1::text[]) WITH ORDINALITY AS x (event_id, ord) ORDER BY ord",
            list(rows),
        )

    async def handler(event: InboundEvent, conn: DbConnection) -> None:
        mode = json.loads(event.value or b"{}")["mode"]
        b.attempts[event.event_id] += 1
        first = b.attempts[event.event_id] == 1
        await applied_ledger.record(conn, event.event_id)
        scope = batch_scope.current(conn)
        assert scope is not None, "the consumer opens a scope around every transaction"
        scope.defer("deferred", [event.event_id], write_deferred)
        if mode == "permanent" or event.event_id in b.broken:
            raise PermanentError("refused")
        if mode == "fail_once" and first:
            raise RuntimeError("transient")
        if mode == "always_fail":
            raise RuntimeError("still broken")
        if mode == "drop_connection" and first:
            # The database goes away under the batch: the transaction itself is lost.
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    consumer.handler_for = lambda topic: handler  # type: ignore[method-assign]
    return b


async def test_a_failure_mid_batch_keeps_the_order_of_its_partition(batches: Batches) -> None:
    a, flaky, c = batches.event(), batches.event("fail_once"), batches.event()
    other = batches.event(partition=1)
    await batches.consumer.process_batch([a, flaky, other, c])
    applied = await batches.applied()
    assert sorted(applied) == sorted(e.event_id for e in (a, flaky, other, c))
    assert applied.index(a.event_id) < applied.index(flaky.event_id) < applied.index(c.event_id)
    # c waited for flaky instead of overtaking it, and ran once; nothing was dead-lettered
    assert batches.attempts[c.event_id] == 1 and batches.attempts[flaky.event_id] == 2
    assert batches.dead_letters.letters == []


async def test_retries_stay_bounded_when_the_first_try_was_in_a_batch(batches: Batches) -> None:
    stuck, after = batches.event("always_fail"), batches.event()
    await batches.consumer.process_batch([stuck, after])
    assert batches.attempts[stuck.event_id] == 3  # max_attempts, the batch try included
    assert batches.dead_letters.letters == [(stuck.event_id, "RuntimeError")]
    assert await batches.applied() == [after.event_id]


async def test_a_refused_event_leaves_nothing_behind_and_replays_after_a_fix(
    batches: Batches,
) -> None:
    good, bad = batches.event(), batches.event()
    batches.broken.add(bad.event_id)
    await batches.consumer.process_batch([bad, good])
    assert await batches.applied() == [good.event_id]  # bad's insert rolled back to its savepoint
    assert batches.dead_letters.letters == [(bad.event_id, "PermanentError")]
    assert not await batches.claimed(bad.event_id)
    batches.broken.clear()  # the fix
    await batches.consumer.process_batch([bad])  # the replayed dead letter
    assert await batches.applied() == [good.event_id, bad.event_id]


async def test_redeliveries_inside_and_across_batches_apply_once(batches: Batches) -> None:
    first = batches.event()
    again = batches.event(event_id=first.event_id)
    second = batches.event()
    await batches.consumer.process_batch([first, again, second])
    await batches.consumer.process_batch([again, second])
    assert await batches.applied() == [first.event_id, second.event_id]


async def test_a_lost_database_connection_applies_the_batch_one_by_one(batches: Batches) -> None:
    a, dropper, c = batches.event(), batches.event("drop_connection"), batches.event()
    await batches.consumer.process_batch([a, dropper, c])
    assert await batches.applied() == [a.event_id, dropper.event_id, c.event_id]
    assert batches.dead_letters.letters == []


async def test_deferred_writes_of_a_batch_go_in_one_statement_in_event_order(
    batches: Batches,
) -> None:
    """Two events on one key (one partition) and one on another: every event's deferred row is
    written, in the order of the batch, by one statement for the whole batch."""
    a, b, other = batches.event(), batches.event(), batches.event(partition=1)
    await batches.consumer.process_batch([a, other, b])
    assert await batches.deferred() == [a.event_id, other.event_id, b.event_id]
    assert batches.deferred_statements == 1


async def test_a_refused_or_failing_event_takes_its_deferred_rows_with_it(
    batches: Batches,
) -> None:
    good, bad, flaky = batches.event(), batches.event(), batches.event("fail_once", partition=1)
    batches.broken.add(bad.event_id)
    await batches.consumer.process_batch([good, bad, flaky])
    # good once; bad never (refused: dead-lettered); flaky once, from its second try
    assert sorted(await batches.deferred()) == sorted([good.event_id, flaky.event_id])
    assert batches.dead_letters.letters == [(bad.event_id, "PermanentError")]


@dataclass
class Preloader:
    """A handler that loads what a batch will read before applying it (shared.unit's
    UnitHandler is the real one)."""

    loaded: list[list[str]] = field(default_factory=list)
    fail_loads: int = 0

    async def preload(self, events: Sequence[InboundEvent], conn: DbConnection) -> None:
        self.loaded.append([e.event_id for e in events])
        if self.fail_loads:
            self.fail_loads -= 1
            raise RuntimeError("the load failed")

    async def __call__(self, event: InboundEvent, conn: DbConnection) -> None:
        await applied_ledger.record(conn, event.event_id)


async def test_a_batch_is_preloaded_once_with_its_fresh_events(batches: Batches) -> None:
    preloader = Preloader()
    batches.consumer.handler_for = lambda topic: preloader  # type: ignore[method-assign]
    a, b, c = batches.event(), batches.event(partition=1), batches.event()
    await batches.consumer.process_batch([a, b])
    await batches.consumer.process_batch([a, c])  # a redelivered: applied before
    assert preloader.loaded == [[a.event_id, b.event_id], [c.event_id]]
    assert await batches.applied() == [a.event_id, b.event_id, c.event_id]


async def test_a_failed_preload_applies_the_batch_one_by_one(batches: Batches) -> None:
    preloader = Preloader(fail_loads=1)
    batches.consumer.handler_for = lambda topic: preloader  # type: ignore[method-assign]
    a, b = batches.event(), batches.event()
    await batches.consumer.process_batch([a, b])
    assert await batches.applied() == [a.event_id, b.event_id]
    assert batches.dead_letters.letters == []
    assert preloader.loaded == [[a.event_id, b.event_id]]  # one by one: no preload
