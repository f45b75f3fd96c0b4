"""The services' connection pool on the real PostgreSQL: a connection goes back to the pool
without a statement of its own (asyncpg's default reset is one more round trip per consumer
batch), and still without an open transaction."""

from __future__ import annotations

from typing import Any

from shared.db.pool import create_pool


async def test_a_released_connection_costs_no_statement_and_keeps_no_transaction(
    database_urls: dict[str, str],
) -> None:
    pool = await create_pool(database_urls["intake"], max_size=1)
    sent: list[str] = []

    def log(record: Any) -> None:
        sent.append(record.query)

    try:
        async with pool.acquire() as conn:
            conn.add_query_logger(log)
            await conn.fetchval("SELECT 1")
        assert sent == ["SELECT 1"], "nothing sent on release"
        async with pool.acquire() as conn:  # the same (only) connection
            tx = conn.transaction()
            await tx.start()  # left open: asyncpg rolls it back on release
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT current_setting('plan_cache_mode')") == (
                "force_custom_plan"
            )
    finally:
        await pool.close()
