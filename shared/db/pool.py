"""asyncpg connection pool for one service database."""

from __future__ import annotations

import asyncpg

# asyncpg prepares every statement; after five runs PostgreSQL may keep one generic plan for it.
# A plan made while a table was still empty (a fresh database) is a sequential scan, and it stayed
# in use while the table grew until an autovacuum ANALYZE happened to invalidate it: make bench
# saw primary-key lookups scan a 7,000-row table thousands of times. Custom plans are made with
# the table's current size, for some tens of microseconds of planning per statement.
SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}


async def create_pool(dsn: str, max_size: int) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=max_size, command_timeout=30, server_settings=SERVER_SETTINGS
    )
    if pool is None:  # asyncpg types allow it; it happens only with an unusual init hook
        raise RuntimeError("could not create the PostgreSQL pool")
    return pool


async def ping(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
