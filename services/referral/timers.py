"""Decision deadlines: due timer rows expire their referral and re-route the need. Driven by
the database, never by sleeps in memory, so a restart (or another instance) loses none."""

from __future__ import annotations

import asyncpg

from shared.contracts.events import REMINDER_DUE, ReferralReminderDue
from shared.contracts.events import ReferralState as S
from shared.contracts.taxonomy import ReasonCode
from shared.logging import get_logger

from . import routing
from .handlers import emit
from .lifecycle import can_expire
from .routing import RoutingPolicy

log = get_logger(__name__)


async def expire_due(pool: asyncpg.Pool, policy: RoutingPolicy, limit: int = 100) -> int:
    """Expire what is due (skipping rows another instance holds); return how many."""
    async with pool.acquire() as conn, conn.transaction():
        due = await conn.fetch(
            """SELECT referral_id FROM timers WHERE due_at <= now()
               ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED""",
            limit,
        )
        for row in due:
            ref = await routing.load_referral(conn, str(row["referral_id"]))
            await conn.execute("DELETE FROM timers WHERE referral_id = $1", row["referral_id"])
            if ref is None or not can_expire(ref.status):
                continue
            out = await routing.transition(conn, ref, S.EXPIRED, reason=ReasonCode.NO_RESPONSE)
            out += await routing.reroute(conn, ref, policy)
            await emit(conn, out, key=ref.case_id, correlation_id=ref.correlation_id)
            log.info("referral_expired", referral_id=ref.referral_id, attempt=ref.attempt)
    return len(due) + await remind_due(conn_pool=pool, limit=limit)


async def remind_due(conn_pool: asyncpg.Pool, limit: int = 100) -> int:
    """Remind recipients whose decision deadline is near (once per referral)."""
    async with conn_pool.acquire() as conn, conn.transaction():
        due = await conn.fetch(
            """SELECT t.referral_id, t.due_at FROM timers t
               WHERE NOT t.reminded AND t.remind_at <= now() AND t.due_at > now()
               ORDER BY t.remind_at LIMIT $1 FOR UPDATE SKIP LOCKED""",
            limit,
        )
        for row in due:
            await conn.execute(
                "UPDATE timers SET reminded = true WHERE referral_id = $1", row["referral_id"]
            )
            ref = await routing.load_referral(conn, str(row["referral_id"]))
            if ref is None or not can_expire(ref.status):
                continue
            reminder = ReferralReminderDue(
                referral_id=ref.referral_id,
                case_id=ref.case_id,
                need_id=ref.need_id,
                recipient_agency_id=ref.recipient_agency_id,
                respond_by=row["due_at"],
                attempt=ref.attempt,
            )
            await emit(
                conn, [(REMINDER_DUE, reminder)], key=ref.case_id, correlation_id=ref.correlation_id
            )
    return len(due)
