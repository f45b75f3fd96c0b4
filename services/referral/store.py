"""Referral's store: everything handlers, timers and commands read and write, behind one
object (a fake of it runs the handlers in unit tests).

The routing and lifecycle statements live in routing.py and directory.py (the decisions they
carry out are pure, in decisions.py and matching.py); the store hands them its connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.contracts import events as ev
from shared.contracts.events import ReferralState
from shared.contracts.taxonomy import ReasonCode
from shared.db import DbConnection

from . import directory, routing
from .decisions import ReferralRow, RoutingPolicy
from .routing import Emitted


@dataclass(frozen=True, slots=True)
class DueReminder:
    referral_id: str
    due_at: datetime


class ReferralStore:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn

    # ----- the directory -----

    async def upsert_listing(self, listing: ev.ServiceListing) -> bool:
        """False when another agency lists this service_id."""
        return await directory.upsert_listing(self.conn, listing)

    async def withdraw_listing(self, service_id: str, agency_id: str) -> bool:
        return await directory.withdraw_listing(self.conn, service_id, agency_id)

    async def upsert_agency(self, agency: ev.AgencyRecord) -> None:
        await directory.upsert_agency(self.conn, agency)

    # ----- cases and their referral chains -----

    async def save_case(self, case: ev.CaseRegistered) -> None:
        await routing.save_case(self.conn, case)

    async def load_case(self, case_id: str) -> ev.CaseRegistered | None:
        return await routing.load_case(self.conn, case_id)

    async def need_is_handled(self, case_id: str, need_id: str) -> bool:
        return await routing.need_is_handled(self.conn, case_id, need_id)

    async def route_need(
        self,
        case: ev.CaseRegistered,
        need: ev.Need,
        policy: RoutingPolicy,
        correlation_id: str | None,
    ) -> Emitted:
        return await routing.route_need(
            self.conn, case, need, policy, correlation_id=correlation_id
        )

    async def load_referral(self, referral_id: str) -> ReferralRow | None:
        """Locked for the transaction (FOR UPDATE)."""
        return await routing.load_referral(self.conn, referral_id)

    async def transition(
        self,
        ref: ReferralRow,
        to: ReferralState,
        *,
        reason: ReasonCode | None = None,
        outcome: ev.Outcome | None = None,
    ) -> Emitted:
        return await routing.transition(self.conn, ref, to, reason=reason, outcome=outcome)

    async def reroute(self, ref: ReferralRow, policy: RoutingPolicy) -> Emitted:
        return await routing.reroute(self.conn, ref, policy)

    async def cancel_open(self, case_id: str, reason: ReasonCode) -> Emitted:
        return await routing.cancel_open(self.conn, case_id, reason)

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
