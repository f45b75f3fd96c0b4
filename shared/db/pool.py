"""asyncpg connection pool for one service database."""

from __future__ import annotations

import asyncpg

from shared.tracing import instrument_connection

# asyncpg prepares every statement; after five runs PostgreSQL may keep one generic plan for it.
# A plan made while a table was still empty (a fresh database) is a sequential scan, and it stayed
# in use while the table grew until an autovacuum ANALYZE happened to invalidate it: make bench
# saw primary-key lookups scan a 7,000-row table thousands of times. Custom plans are made with
# the table's current size, for some tens of microseconds of planning per statement.
SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection needs when it goes back to the pool, beyond what asyncpg always does
    (roll back an open transaction, drop its Python listeners): nothing. asyncpg's default
    sends one more statement per release (advisory unlock, CLOSE ALL, UNLISTEN *, RESET ALL),
    a round trip per consumer batch and per relay drain, for state this code never leaves: no
    session settings beyond those of the connection itself, advisory locks only per transaction,
    no cursors outside a transaction, and the relay's LISTEN removed before its connection goes
    back (OutboxRelay._close_listener)."""


async def create_pool(dsn: str, max_size: int) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=max_size,
        command_timeout=30,
        server_settings=SERVER_SETTINGS,
        reset=_keep_session,
        init=instrument_connection,  # statement spans, when tracing is on
    )
    if pool is None:  # asyncpg types allow it; it happens only with an unusual init hook
        raise RuntimeError("could not create the PostgreSQL pool")
    return pool


async def ping(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
