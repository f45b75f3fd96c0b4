"""What the events of one consumer batch share inside its transaction: writes deferred to the
end (one statement per table for the whole batch), and a cache of what was read.

The consumer opens a scope around each transaction it runs (a batch, or one event) and flushes
it before the commit, or after each event inside its savepoint when a batch is applied event by
event, so an event that fails takes its deferred rows with it.

A deferred row is not in the database until the flush. So a store defers writes to a table
only where it answers every read of that table in the batch from the cache (see the consumer's
``preload``), and calls :func:`settle` before any statement that reads such a table: that
flushes what is pending first, so the statement sees it (one extra round trip where the cache
could not answer, never a wrong answer). Writers run at the flush in the order of their
``rank`` (parents before the rows that reference them), then in first-deferred order.

A store that caches a table keeps its entries true when it writes that table, and an event that
fails in its savepoint drops the whole cache (its writes are rolled back, the cache may hold
them).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any

from shared.db import DbConnection

Writer = Callable[[DbConnection, Sequence[Any]], Awaitable[None]]

_current: ContextVar[BatchScope | None] = ContextVar("batch_scope", default=None)


class BatchScope:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn
        self.cache: dict[Any, Any] = {}
        # table → (rank, writer, rows), in first-deferred order
        self._pending: dict[str, tuple[int, Writer, list[Any]]] = {}

    def defer(self, table: str, rows: Sequence[Any], writer: Writer, rank: int = 0) -> None:
        """Write ``rows`` with ``writer`` at the flush, with every other row deferred for the
        same table, in the order deferred; tables of a lower ``rank`` are written first."""
        if not rows:
            return
        _, _, pending = self._pending.setdefault(table, (rank, writer, []))
        pending.extend(rows)

    def discard(self) -> None:
        """Drop what is deferred and not yet flushed, and what is cached (an event that failed
        in its savepoint: what it wrote is rolled back; the stores read again what they need)."""
        self._pending = {}
        self.cache.clear()

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for _, writer, rows in sorted(pending.values(), key=lambda p: p[0]):  # stable sort
            await writer(self.conn, rows)


@contextlib.asynccontextmanager
async def batch_scope(conn: DbConnection) -> AsyncIterator[BatchScope]:
    """A scope for the transaction on ``conn``; the caller flushes it before committing."""
    scope = BatchScope(conn)
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)


def current(conn: DbConnection) -> BatchScope | None:
    """The open scope of ``conn``'s transaction, if a consumer opened one (a CLI command or a
    timer writes at once)."""
    scope = _current.get()
    return scope if scope is not None and scope.conn is conn else None


def cache(conn: DbConnection, name: str) -> dict[Any, Any] | None:
    """The batch cache's entry ``name`` (a dict, created empty) for ``conn``'s transaction;
    None outside a consumer's batch (a command or a timer reads the database)."""
    scope = current(conn)
    return scope.cache.setdefault(name, {}) if scope is not None else None


async def write(
    conn: DbConnection, table: str, rows: Sequence[Any], writer: Writer, rank: int = 0
) -> None:
    """Write ``rows`` with ``writer``: deferred to the end of the consumer's batch when
    ``conn``'s transaction has a scope, at once otherwise (a timer, a command)."""
    scope = current(conn)
    if scope is None:
        if rows:
            await writer(conn, rows)
    else:
        scope.defer(table, rows, writer, rank)


async def settle(conn: DbConnection) -> None:
    """Before a statement that reads (or updates) a table whose writes a store defers: write
    what is pending, so the statement sees it. Nothing to do, and no round trip, when nothing
    is pending or outside a batch."""
    scope = current(conn)
    if scope is not None:
        await scope.flush()
