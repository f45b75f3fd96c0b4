"""A scratch table that test handlers write to when they apply an event: what the consumer
tests read to see which events were applied, in which order, and how many times."""

from __future__ import annotations

import asyncio

import asyncpg

from shared.db import DbConnection


async def create(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("CREATE TABLE applied (n serial, event_id text NOT NULL)")


async def record(conn: DbConnection, event_id: str) -> None:
    """Inside the handler's transaction: rolled back with it."""
    await conn.execute("INSERT INTO applied (event_id) VALUES ($1)", event_id)


async def applied(pool: asyncpg.Pool) -> list[str]:
    async with pool.acquire() as conn:
        return [r["event_id"] for r in await conn.fetch("SELECT event_id FROM applied ORDER BY n")]


async def wait_applied(pool: asyncpg.Pool, count: int, timeout: float) -> list[str]:
    """Once at least ``count`` events are applied, or whatever is applied at the timeout."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        got = await applied(pool)
        if len(got) >= count:
            return got
        await asyncio.sleep(0.1)
    return await applied(pool)
