"""A service's consumer fed batches built by hand, over a pool whose connections count the
statements sent through them (each one a round trip): for tests that the round trips of a batch
do not grow with its size."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from shared.contracts.envelope import OutgoingEvent
from shared.kafka.consumer import Handler, ReliableConsumer, RetryPolicy, Subscription
from shared.kafka.inbound import InboundEvent
from tests import factories as f
from tests.integration.test_batch_consumer import FakeDeadLetters

STATEMENTS = ("execute", "executemany", "fetch", "fetchrow", "fetchval")


class CountingConnection:
    """The connection, counting the statements sent through it (each one a round trip)."""

    def __init__(self, conn: asyncpg.Connection, counted: Counter[str]) -> None:
        self._conn = conn
        self._counted = counted

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._conn, name)
        if name in STATEMENTS:
            self._counted["statements"] += 1
        return attribute


class CountingPool:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.counted: Counter[str] = Counter()

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[CountingConnection]:
        async with self.pool.acquire() as conn:
            yield CountingConnection(conn, self.counted)


class ServiceBatches:
    """A service's consumer (its group and handlers, as its app.py wires them) on a counting
    pool; ``apply`` hands it one batch, as a fetch would."""

    def __init__(
        self, pool: CountingPool, group: str, handlers: Mapping[Subscription, Handler]
    ) -> None:
        self.pool = pool
        self.consumer = ReliableConsumer(
            group=group,
            pool=lambda: pool,  # type: ignore[arg-type, return-value]
            dead_letters=FakeDeadLetters(),  # type: ignore[arg-type]
            handlers=handlers,
            retry=RetryPolicy(max_attempts=3, base_delay_s=0.01),
            max_message_bytes=1_000_000,
        )
        self.offset = 0

    def inbound(self, outgoing: OutgoingEvent) -> InboundEvent:
        """The record a consumer would read for ``outgoing`` (each at the next offset)."""
        self.offset += 1
        return InboundEvent.from_record(f.record_of(outgoing, offset=self.offset))

    async def apply(self, events: list[InboundEvent]) -> int:
        """Apply one batch; the statements it took."""
        before = self.pool.counted["statements"]
        await self.consumer.process_batch(events)
        return self.pool.counted["statements"] - before
