"""Idempotent consumer: remember which events a consumer has applied, in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence

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


async def claim_many(
    conn: DbConnection, consumer: str, events: Sequence[tuple[str, str]]
) -> set[str]:
    """Record a batch of (event id, topic) in one statement; the ids not recorded before (the
    others are redeliveries). An id twice in the batch is claimed once."""
    rows = await conn.fetch(
        """INSERT INTO inbox (consumer, event_id, topic)
           SELECT $1, e.event_id, e.topic
             FROM unnest($2::text[], $3::text[]) AS e(event_id, topic)
           ON CONFLICT DO NOTHING RETURNING event_id""",
        consumer,
        [event_id for event_id, _ in events],
        [topic for _, topic in events],
    )
    return {r["event_id"] for r in rows}


async def release(conn: DbConnection, consumer: str, event_id: str) -> None:
    """Forget a claim whose event was refused, so a replay after a fix applies it."""
    await conn.execute(
        "DELETE FROM inbox WHERE consumer = $1 AND event_id = $2", consumer, event_id
    )
