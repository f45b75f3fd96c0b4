"""PostgreSQL plumbing: connection pool, migrations, transactional outbox and inbox."""

import contextlib
from collections.abc import AsyncIterator
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# What handlers receive: a pooled connection (a proxy) or, in tests, a plain one.
DbConnection: TypeAlias = asyncpg.Connection | PoolConnectionProxy


@contextlib.asynccontextmanager
async def connected(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """One connection for a command, closed afterwards (services use their pool)."""
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()
