"""Pruning of the outbox and the inbox (decision 29): what is due is deleted in small batches,
each its own short statement, with a pause between batches.

- Sent outbox rows once older than the service's ``OUTBOX_KEEP_SENT_DAYS``; unsent rows never
  (the relay has still to publish them).
- Inbox claims once older than the window in which their event can still be redelivered
  (``shared/retention.py``); claims of registries kept forever never.

Each batch finds its rows through an index on the time (migration 0002), oldest first, and
locks them ``FOR UPDATE SKIP LOCKED``: a row another transaction holds (another instance's
pruning, the relay) is left for the next run instead of waited for, so two instances pruning at
once delete disjoint rows and never block each other or the consumers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from shared.contracts.topics import Owner
from shared.db import DbConnection
from shared.logging import get_logger
from shared.retention import claims_kept_forever, inbox_keep

log = get_logger(__name__)


# ----- the store: all of pruning's SQL -----


async def prune_sent_outbox(conn: DbConnection, older_than: timedelta, limit: int) -> int:
    """Delete up to ``limit`` outbox rows sent more than ``older_than`` ago; how many."""
    rows = await conn.fetch(
        """DELETE FROM outbox WHERE id IN (
               SELECT id FROM outbox
                WHERE sent_at IS NOT NULL AND sent_at < now() - $1::interval
                ORDER BY sent_at
                LIMIT $2
                FOR UPDATE SKIP LOCKED)
           RETURNING 1""",
        older_than,
        limit,
    )
    return len(rows)


async def prune_inbox(
    conn: DbConnection,
    older_than: timedelta,
    kept_forever: Sequence[str],
    limit: int,
    after: datetime | None = None,
) -> tuple[int, datetime | None]:
    """Delete up to ``limit`` claims processed more than ``older_than`` ago, except those of
    topics matching a ``kept_forever`` pattern; how many, and the newest ``processed_at``
    deleted. ``after``: start from there (the previous batch's newest), so the claims kept
    forever among the old ones are stepped over once per run, not once per batch."""
    rows = await conn.fetch(
        """DELETE FROM inbox WHERE ctid IN (
               SELECT ctid FROM inbox
                WHERE processed_at < now() - $1::interval
                  AND ($4::timestamptz IS NULL OR processed_at >= $4)
                  AND NOT (topic ~ ANY($2::text[]))
                ORDER BY processed_at
                LIMIT $3
                FOR UPDATE SKIP LOCKED)
           RETURNING processed_at""",
        older_than,
        list(kept_forever),
        limit,
        after,
    )
    newest = max((r["processed_at"] for r in rows), default=None)
    return len(rows), newest


# ----- the job -----


@dataclass(frozen=True, slots=True)
class PrunePolicy:
    outbox_keep_sent: timedelta
    inbox_keep: timedelta
    inbox_kept_forever: tuple[str, ...]
    batch_size: int
    pause_s: float

    @classmethod
    def of(
        cls,
        service: Owner,
        *,
        outbox_keep_sent_days: float,
        inbox_keep_days: float | None,
        batch_size: int,
        pause_s: float,
    ) -> PrunePolicy:
        return cls(
            outbox_keep_sent=timedelta(days=outbox_keep_sent_days),
            inbox_keep=inbox_keep(service, inbox_keep_days),
            inbox_kept_forever=claims_kept_forever(service),
            batch_size=batch_size,
            pause_s=pause_s,
        )


@dataclass(frozen=True, slots=True)
class PruneCounts:
    outbox_sent: int
    inbox_claims: int
    batches: int


async def prune(
    pool: asyncpg.Pool,
    policy: PrunePolicy,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> PruneCounts:
    """One pruning run: batches until nothing more is due; one log line with the counts."""
    started = time.monotonic()
    outbox_sent = inbox_claims = batches = 0
    while True:
        async with pool.acquire() as conn:
            deleted = await prune_sent_outbox(conn, policy.outbox_keep_sent, policy.batch_size)
        outbox_sent += deleted
        batches += 1
        if deleted < policy.batch_size:
            break
        await sleep(policy.pause_s)
    after: datetime | None = None
    while True:
        await sleep(policy.pause_s)
        async with pool.acquire() as conn:
            deleted, newest = await prune_inbox(
                conn, policy.inbox_keep, policy.inbox_kept_forever, policy.batch_size, after
            )
        inbox_claims += deleted
        batches += 1
        if deleted < policy.batch_size:
            break
        after = newest
    log.info(
        "outbox_inbox_pruned",
        outbox_sent=outbox_sent,
        inbox_claims=inbox_claims,
        batches=batches,
        outbox_keep_sent_days=policy.outbox_keep_sent / timedelta(days=1),
        inbox_keep_days=policy.inbox_keep / timedelta(days=1),
        duration_ms=round((time.monotonic() - started) * 1000),
    )
    return PruneCounts(outbox_sent, inbox_claims, batches)
