"""Pruning of the outbox and the inbox on the real PostgreSQL (decision 29): what is due goes,
in batches; what a redelivery or the relay still needs stays."""

import asyncio
import uuid
from datetime import timedelta

import asyncpg

from shared.contracts.envelope import OutgoingEvent
from shared.contracts.topics import Owner
from shared.db import inbox, outbox
from shared.db.pruning import PrunePolicy, prune

CONSUMER = "referral"
WINDOW = PrunePolicy.of(
    Owner.REFERRAL, outbox_keep_sent_days=7, inbox_keep_days=None, batch_size=1000, pause_s=0
).inbox_keep


def _policy(batch_size: int = 1000, outbox_keep_sent_days: float = 7) -> PrunePolicy:
    return PrunePolicy.of(
        Owner.REFERRAL,
        outbox_keep_sent_days=outbox_keep_sent_days,
        inbox_keep_days=None,
        batch_size=batch_size,
        pause_s=0,
    )


async def _claim(pool: asyncpg.Pool, topic: str, age: timedelta, n: int = 1) -> list[str]:
    """Claim n fresh events of ``topic`` as the consumer does, processed ``age`` ago."""
    ids = [str(uuid.uuid4()) for _ in range(n)]
    async with pool.acquire() as conn, conn.transaction():
        assert await inbox.claim_many(conn, CONSUMER, [(i, topic) for i in ids]) == set(ids)
        await conn.execute(
            "UPDATE inbox SET processed_at = now() - $1::interval WHERE event_id = ANY($2)",
            age,
            ids,
        )
    return ids


async def _redelivered(pool: asyncpg.Pool, event_id: str, topic: str) -> bool:
    """True when the inbox skips the event as seen (in a transaction rolled back after)."""
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            return not await inbox.claim_many(conn, CONSUMER, [(event_id, topic)])
        finally:
            await tx.rollback()


async def _enqueue(pool: asyncpg.Pool, n: int) -> list[str]:
    events = [
        OutgoingEvent("referral.events.v1", "case-1", {"ce_id": str(uuid.uuid4())}, b"{}")
        for _ in range(n)
    ]
    async with pool.acquire() as conn, conn.transaction():
        await outbox.enqueue(conn, events)
    return [e.event_id for e in events]


async def _age_outbox(
    pool: asyncpg.Pool, ids: list[str], created: timedelta, sent: timedelta | None
) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            """UPDATE outbox SET created_at = now() - $1::interval,
                                 sent_at = now() - $2::interval
                WHERE event_id = ANY($3)""",
            created,
            sent,  # None: sent_at NULL, unsent
            ids,
        )


async def _outbox_ids(pool: asyncpg.Pool) -> set[str]:
    return {r["event_id"] for r in await pool.fetch("SELECT event_id FROM outbox")}


async def test_claims_inside_the_window_are_kept_and_still_skip_a_redelivery(
    scratch_pool: asyncpg.Pool,
) -> None:
    assert timedelta(days=74) == WINDOW  # the floor: 30 + 30 + 2 x 7 days
    topic = "intake.cases.v1"
    (recent,) = await _claim(scratch_pool, topic, timedelta(hours=1))
    (inside,) = await _claim(scratch_pool, topic, WINDOW - timedelta(hours=1))
    (old,) = await _claim(scratch_pool, topic, WINDOW + timedelta(hours=1))

    counts = await prune(scratch_pool, _policy())

    assert counts.inbox_claims == 1
    assert await _redelivered(scratch_pool, recent, topic)
    assert await _redelivered(scratch_pool, inside, topic)
    # Pruned: the inbox no longer knows it (a redelivery this late cannot come).
    assert not await _redelivered(scratch_pool, old, topic)


async def test_claims_of_registries_kept_forever_are_never_pruned(
    scratch_pool: asyncpg.Pool,
) -> None:
    """Registries are replayed from their beginning at every start: their claims must stay."""
    very_old = timedelta(days=3650)
    (agency,) = await _claim(scratch_pool, "directory.agencies.v1", very_old)
    (listing,) = await _claim(scratch_pool, "agency.ngo-jamm.listings.v1", very_old)
    (response,) = await _claim(scratch_pool, "agency.ngo-jamm.responses.v1", very_old)

    counts = await prune(scratch_pool, _policy())

    assert counts.inbox_claims == 1
    assert await _redelivered(scratch_pool, agency, "directory.agencies.v1")
    assert await _redelivered(scratch_pool, listing, "agency.ngo-jamm.listings.v1")
    assert not await _redelivered(scratch_pool, response, "agency.ngo-jamm.responses.v1")


async def test_sent_rows_past_their_retention_are_pruned_unsent_rows_never(
    scratch_pool: asyncpg.Pool,
) -> None:
    sent_old, sent_recent, unsent_old = await _enqueue(scratch_pool, 3)
    await _age_outbox(scratch_pool, [sent_old], timedelta(days=9), timedelta(days=8))
    await _age_outbox(scratch_pool, [sent_recent], timedelta(days=6), timedelta(days=6))
    await _age_outbox(scratch_pool, [unsent_old], timedelta(days=400), None)

    counts = await prune(scratch_pool, _policy())

    assert counts.outbox_sent == 1
    assert await _outbox_ids(scratch_pool) == {sent_recent, unsent_old}
    # Zero retention: every sent row goes at once, the unsent one still stays.
    await prune(scratch_pool, _policy(outbox_keep_sent_days=0))
    assert await _outbox_ids(scratch_pool) == {unsent_old}


async def test_pruning_in_batches_removes_everything_due(scratch_pool: asyncpg.Pool) -> None:
    sent = await _enqueue(scratch_pool, 25)
    kept = await _enqueue(scratch_pool, 3)
    await _age_outbox(scratch_pool, sent, timedelta(days=10), timedelta(days=10))
    await _age_outbox(scratch_pool, kept, timedelta(days=10), None)
    await _claim(scratch_pool, "intake.cases.v1", WINDOW + timedelta(days=1), n=23)
    # Old registry claims among the due ones: stepped over, never deleted.
    registry = await _claim(scratch_pool, "directory.agencies.v1", WINDOW + timedelta(days=1), 4)
    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    policy = PrunePolicy.of(
        Owner.REFERRAL,
        outbox_keep_sent_days=7,
        inbox_keep_days=None,
        batch_size=10,
        pause_s=0.05,
    )
    counts = await prune(scratch_pool, policy, sleep=pause)

    assert (counts.outbox_sent, counts.inbox_claims) == (25, 23)
    assert counts.batches == 6  # 10 + 10 + 5 outbox rows, 10 + 10 + 3 claims
    assert pauses == [0.05] * 5  # between every two batches
    assert await _outbox_ids(scratch_pool) == set(kept)
    left = {r["event_id"] for r in await scratch_pool.fetch("SELECT event_id FROM inbox")}
    assert left == set(registry)


async def test_two_instances_pruning_at_once_delete_each_row_once(
    scratch_pool: asyncpg.Pool,
) -> None:
    sent = await _enqueue(scratch_pool, 400)
    await _age_outbox(scratch_pool, sent, timedelta(days=10), timedelta(days=10))
    await _claim(scratch_pool, "intake.cases.v1", WINDOW + timedelta(days=1), n=400)

    first, second = await asyncio.gather(
        prune(scratch_pool, _policy(batch_size=7)), prune(scratch_pool, _policy(batch_size=7))
    )

    # Neither failed; each row was deleted once, and what one skipped as locked by the other
    # (ending its run early) is left for the next run.
    rest = await prune(scratch_pool, _policy())
    assert first.outbox_sent + second.outbox_sent + rest.outbox_sent == 400
    assert first.inbox_claims + second.inbox_claims + rest.inbox_claims == 400
    assert await _outbox_ids(scratch_pool) == set()
    assert await scratch_pool.fetchval("SELECT count(*) FROM inbox") == 0
