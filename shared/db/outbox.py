"""Transactional outbox: events are written with the state change, then relayed to Kafka.

``enqueue`` runs inside the caller's transaction. :class:`OutboxRelay` publishes unsent rows in
id order and marks them sent; an insert trigger NOTIFYs it, with polling as the fallback. Only one
relay per database publishes at a time (transaction-level advisory lock), which keeps the order
of events per key even with several service instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from shared.contracts.envelope import OutgoingEvent
from shared.db import DbConnection
from shared.logging import get_logger
from shared.metrics import OUTBOX_PUBLISHED

_RELAY_LOCK_ID = 0x0_7B0C  # arbitrary, constant: "outbox relay running" for this database
_MAX_BACKOFF_S = 30.0

log = get_logger(__name__)

PublishBatch = Callable[[Sequence[OutgoingEvent]], Awaitable[None]]


async def enqueue(conn: DbConnection, events: Sequence[OutgoingEvent]) -> None:
    """Add events to the outbox; call inside the transaction that makes the state change.
    One statement whatever the number of events (arrays unnested in order: ``ORDER BY ord``
    keeps the ids, hence the relay's order, in the order given)."""
    if not events:
        return
    await conn.execute(
        """INSERT INTO outbox (event_id, topic, key, headers, body)
           SELECT event_id, topic, key, headers::jsonb, body
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[])
                  WITH ORDINALITY AS e (event_id, topic, key, headers, body, ord)
            ORDER BY ord""",
        [e.event_id for e in events],
        [e.topic for e in events],
        [e.key for e in events],
        [json.dumps(dict(e.headers)) for e in events],
        [e.body for e in events],
    )


async def backlog(conn: DbConnection) -> tuple[int, float]:
    """How many rows wait to be sent, and the age in seconds of the oldest (0 when none). Both
    through the partial index of unsent rows: the oldest is the lowest id still unsent (ids
    follow the order rows were written)."""
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM outbox WHERE sent_at IS NULL) AS unsent,
                  coalesce(extract(epoch FROM now() - (
                      SELECT created_at FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT 1
                  )), 0) AS oldest_s"""
    )
    assert row is not None
    return int(row["unsent"]), float(row["oldest_s"])


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        publish: PublishBatch,
        *,
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
    ) -> None:
        self._pool = pool
        self._publish = publish
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._listener: PoolConnectionProxy | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        """Stop the loop, then publish what is still pending (graceful shutdown)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        try:
            while await self.drain_once():
                pass
        except Exception:
            log.exception("outbox_final_flush_failed")
        await self._close_listener()

    def wake(self) -> None:
        self._wake.set()

    async def drain_once(self) -> int:
        """Publish one batch of unsent rows; return how many (0: none, or another relay's turn)."""
        async with self._pool.acquire() as conn, conn.transaction():
            # One relay at a time (the lock is the transaction's); the lock and the rows in one
            # round trip: none when another relay holds it.
            rows = await conn.fetch(
                """WITH relay AS (SELECT pg_try_advisory_xact_lock($2) AS mine)
                   SELECT id, event_id, topic, key, headers, body FROM outbox, relay
                    WHERE relay.mine AND sent_at IS NULL ORDER BY id LIMIT $1""",
                self._batch_size,
                _RELAY_LOCK_ID,
            )
            if not rows:
                return 0
            events = [
                OutgoingEvent(r["topic"], r["key"], json.loads(r["headers"]), bytes(r["body"]))
                for r in rows
            ]
            await self._publish(events)
            await conn.execute(
                "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])",
                [r["id"] for r in rows],
            )
        OUTBOX_PUBLISHED.inc(len(rows))
        log.debug("outbox_relayed", count=len(rows))
        return len(rows)

    @property
    def running(self) -> bool:
        """False once the relay's loop has ended: the service then publishes nothing more and
        must not report itself ready."""
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        backoff = self._poll_interval_s
        while not self._stopping:
            try:
                await self._ensure_listener()
                sent = await self.drain_once()
                backoff = self._poll_interval_s
            except Exception as exc:  # broker or database away: keep the rows, retry later
                # Nothing may end this loop but stop(): a relay that died silently would leave
                # every later event in the outbox while the service looks healthy.
                log.warning("outbox_relay_failed", error=type(exc).__name__, detail=str(exc)[:300])
                sent = 0
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                await self._close_listener()
            if sent >= self._batch_size:
                continue  # more may be waiting
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)

    def _listening(self) -> bool:
        if self._listener is None:
            return False
        try:
            return not self._listener.is_closed()
        except asyncpg.InterfaceError:
            # The pool took the connection back when the database went away (found by the
            # chaos suite: a PostgreSQL restart ended the relay here).
            return False

    async def _ensure_listener(self) -> None:
        if self._listening():
            return
        await self._close_listener()
        try:
            self._listener = await self._pool.acquire()
            await self._listener.add_listener("outbox", self._on_notify)
        except Exception as exc:
            log.warning("outbox_listen_failed", error=type(exc).__name__)
            await self._close_listener()

    async def _close_listener(self) -> None:
        conn, self._listener = self._listener, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            await conn.remove_listener("outbox", self._on_notify)
        with contextlib.suppress(Exception):
            await self._pool.release(conn)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()
