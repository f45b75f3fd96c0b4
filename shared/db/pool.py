"""asyncpg connection pool for one service database."""

from __future__ import annotations

import asyncpg


async def create_pool(dsn: str, max_size: int) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size, command_timeout=30)
    if pool is None:  # asyncpg types allow it; it happens only with an unusual init hook
        raise RuntimeError("could not create the PostgreSQL pool")
    return pool


async def ping(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
