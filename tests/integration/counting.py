"""A pool whose connections count the statements sent through them (each one a round trip):
for tests that the round trips of a batch do not grow with its size."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

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
