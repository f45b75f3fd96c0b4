"""Referral's SQL that handlers, timers and commands used to run inline: case status and consent,
the unmet needs a new listing may fit, and the due timers.

The lifecycle and routing SQL is still in routing.py and directory.py (taking the unit's
connection); splitting their decisions out as pure functions is the next step of issue 16.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.contracts import events as ev
from shared.db import DbConnection


@dataclass(frozen=True, slots=True)
class DueReminder:
    referral_id: str
    due_at: datetime


class ReferralStore:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn  # for routing.py and directory.py, until they are stores themselves

    async def update_consent(self, case_id: str, consent: ev.Consent) -> None:
        await self.conn.execute(
            "UPDATE cases SET consent = $2::jsonb, updated_at = now() WHERE case_id = $1",
            case_id,
            consent.model_dump_json(),
        )

    async def close_case(self, case_id: str) -> None:
        await self.conn.execute("UPDATE cases SET status = 'closed' WHERE case_id = $1", case_id)

    async def unmet_needs_fitting(self, listing: ev.ServiceListing) -> list[tuple[str, str]]:
        """(case id, need id) of the unmet needs the listing may serve, oldest first, locked
        (another instance skips them)."""
        rows = await self.conn.fetch(
            """SELECT case_id, need_id FROM unmet_needs
               WHERE category = ANY($1::text[]) AND reason <> 'attempts_exhausted'
                 AND EXISTS (SELECT 1 FROM unnest($2::text[]) a WHERE starts_with(area, a))
               ORDER BY since FOR UPDATE SKIP LOCKED""",
            listing.categories,
            listing.service_areas,
        )
        return [(str(r["case_id"]), r["need_id"]) for r in rows]

    async def take_due_deadlines(self, limit: int) -> list[str]:
        """The referrals whose decision deadline has passed, their timers deleted (rows
        another instance holds are skipped)."""
        rows = await self.conn.fetch(
            """DELETE FROM timers WHERE referral_id IN (
                   SELECT referral_id FROM timers WHERE due_at <= now()
                   ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)
               RETURNING referral_id, due_at""",
            limit,
        )
        return [str(r["referral_id"]) for r in sorted(rows, key=lambda r: r["due_at"])]

    async def take_due_reminders(self, limit: int) -> list[DueReminder]:
        """The referrals to remind (deadline near, not yet reminded), marked reminded."""
        rows = await self.conn.fetch(
            """UPDATE timers SET reminded = true WHERE referral_id IN (
                   SELECT referral_id FROM timers
                    WHERE NOT reminded AND remind_at <= now() AND due_at > now()
                    ORDER BY remind_at LIMIT $1 FOR UPDATE SKIP LOCKED)
               RETURNING referral_id, due_at, remind_at""",
            limit,
        )
        ordered = sorted(rows, key=lambda r: r["remind_at"])
        return [DueReminder(str(r["referral_id"]), r["due_at"]) for r in ordered]
