"""Idempotent consumer: remember which events a consumer has applied, in the same transaction."""

from __future__ import annotations

from shared.db import DbConnection


async def claim(conn: DbConnection, consumer: str, event_id: str, topic: str) -> bool:
    """Record the event as processed; False when it was already (a redelivery: do nothing)."""
    row = await conn.fetchval(
        """INSERT INTO inbox (consumer, event_id, topic) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING RETURNING 1""",
        consumer,
        event_id,
        topic,
    )
    return row is not None
