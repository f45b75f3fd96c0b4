"""Opening, re-routing and closing the referral chain of one need; cancelling a case's open
referrals. Every change returns the events to publish (through the caller's outbox)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from shared.contracts import events as ev
from shared.contracts.events import ReferralState as S
from shared.contracts.taxonomy import ReasonCode
from shared.db import DbConnection

from . import directory
from .decisions import ChainLink, Gap, ReferralRow, RoutingPolicy, decide_route, transitioned
from .lifecycle import OPEN_STATES, holds_a_slot

Emitted = list[tuple[str, ev.Contract]]


async def load_referral(conn: DbConnection, referral_id: str) -> ReferralRow | None:
    try:
        rid = uuid.UUID(referral_id)
    except ValueError:
        return None
    row = await conn.fetchrow("SELECT * FROM referrals WHERE referral_id = $1 FOR UPDATE", rid)
    return ReferralRow.of(row) if row else None


async def save_case(conn: DbConnection, case: ev.CaseRegistered) -> None:
    await conn.execute(
        """INSERT INTO cases (case_id, submitting_agency_id, profile, needs, consent)
           VALUES ($1, $2, $3::jsonb, $4::jsonb, $5::jsonb)
           ON CONFLICT (case_id) DO UPDATE SET profile = EXCLUDED.profile,
             needs = EXCLUDED.needs, consent = EXCLUDED.consent, updated_at = now()""",
        case.case_id,
        case.submitting_agency_id,
        case.profile.model_dump_json(),
        json.dumps([n.model_dump(mode="json") for n in case.needs]),
        case.consent.model_dump_json(),
    )


async def load_case(conn: DbConnection, case_id: str) -> ev.CaseRegistered | None:
    row = await conn.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)
    if row is None:
        return None
    return ev.CaseRegistered(
        case_id=case_id,
        submitting_agency_id=row["submitting_agency_id"],
        profile=ev.Profile.model_validate_json(row["profile"]),
        needs=[ev.Need.model_validate(n) for n in json.loads(row["needs"])],
        consent=ev.Consent.model_validate_json(row["consent"]),
    )


async def need_is_handled(conn: DbConnection, case_id: str, need_id: str) -> bool:
    """A need already has a chain or a recorded gap: a redelivery or an update adds nothing."""
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM referrals WHERE case_id = $1 AND need_id = $2)
               OR EXISTS (SELECT 1 FROM unmet_needs WHERE case_id = $1 AND need_id = $2)""",
            case_id,
            need_id,
        )
    )


async def route_need(
    conn: DbConnection,
    case: ev.CaseRegistered,
    need: ev.Need,
    policy: RoutingPolicy,
    *,
    correlation_id: str | None,
) -> Emitted:
    """Refer the need to the best candidate not tried yet, or record why none is left: load the
    chain and the candidates, decide (decisions.decide_route, pure), store what was decided."""
    chain = [
        ChainLink(str(r["referral_id"]), r["service_id"], r["attempt"])
        for r in await conn.fetch(
            "SELECT referral_id, service_id, attempt FROM referrals"
            " WHERE case_id = $1 AND need_id = $2",
            case.case_id,
            need.need_id,
        )
    ]
    candidates = await directory.candidates_for(conn, need.category, case.profile.return_area)
    decided = decide_route(case, need, candidates, chain, policy, datetime.now(UTC))
    if isinstance(decided, Gap):
        gap = decided.unmatched
        await conn.execute(
            """INSERT INTO unmet_needs (case_id, need_id, category, area, reason, attempts)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (case_id, need_id) DO UPDATE SET reason = EXCLUDED.reason,
                 attempts = EXCLUDED.attempts""",
            case.case_id,
            need.need_id,
            need.category,
            case.profile.return_area,
            gap.reason.value,
            gap.attempts,
        )
        return [(ev.NEED_UNMATCHED, gap)]
    referral = decided.referral
    await conn.execute(
        """INSERT INTO referrals (referral_id, case_id, need_id, category, referring_agency_id,
               recipient_agency_id, service_id, status, explanation, attempt,
               previous_referral_id, urgency, respond_by, correlation_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'requested', $8::jsonb, $9, $10, $11, $12,
                   $13)""",
        uuid.UUID(referral.referral_id),
        case.case_id,
        need.need_id,
        need.category,
        case.submitting_agency_id,
        referral.recipient_agency_id,
        referral.service_id,
        referral.explanation.model_dump_json(),
        referral.attempt,
        uuid.UUID(referral.previous_referral_id) if referral.previous_referral_id else None,
        need.urgency.value,
        decided.respond_by,
        correlation_id,
    )
    await conn.execute(
        "INSERT INTO timers (referral_id, due_at, remind_at) VALUES ($1, $2, $3)",
        uuid.UUID(referral.referral_id),
        decided.respond_by,
        decided.remind_at,
    )
    await conn.execute(
        "DELETE FROM unmet_needs WHERE case_id = $1 AND need_id = $2", case.case_id, need.need_id
    )
    return [(ev.REFERRAL_REQUESTED, referral)]


async def transition(
    conn: DbConnection,
    ref: ReferralRow,
    to: S,
    *,
    reason: ReasonCode | None = None,
    outcome: ev.Outcome | None = None,
) -> Emitted:
    await conn.execute(
        """UPDATE referrals SET status = $2, reason_code = $3, outcome = $4, updated_at = now()
           WHERE referral_id = $1""",
        uuid.UUID(ref.referral_id),
        to.value,
        reason.value if reason else None,
        outcome.value if outcome else None,
    )
    await conn.execute(
        """INSERT INTO referral_transitions (referral_id, from_state, to_state, reason_code)
           VALUES ($1, $2, $3, $4)""",
        uuid.UUID(ref.referral_id),
        ref.status.value,
        to.value,
        reason.value if reason else None,
    )
    if holds_a_slot(to) != holds_a_slot(ref.status):
        await directory.hold_slot(conn, ref.service_id, 1 if holds_a_slot(to) else -1)
    if to not in (S.REQUESTED, S.RECEIVED):  # the decision deadline no longer runs
        await conn.execute("DELETE FROM timers WHERE referral_id = $1", uuid.UUID(ref.referral_id))
    return [
        (
            ev.REFERRAL_TRANSITIONED,
            transitioned(ref, to, reason=reason, outcome=outcome, now=datetime.now(UTC)),
        )
    ]


async def reroute(conn: DbConnection, ref: ReferralRow, policy: RoutingPolicy) -> Emitted:
    """After a rejection or expiry: the next candidate, linked to this referral (the last of
    its need's chain)."""
    case = await load_case(conn, ref.case_id)
    need = next((n for n in case.needs if n.need_id == ref.need_id), None) if case else None
    if case is None or need is None:
        return []
    return await route_need(conn, case, need, policy, correlation_id=ref.correlation_id)


async def cancel_open(conn: DbConnection, case_id: str, reason: ReasonCode) -> Emitted:
    rows = await conn.fetch(
        "SELECT * FROM referrals WHERE case_id = $1 AND status = ANY($2::text[]) FOR UPDATE",
        case_id,
        [s.value for s in OPEN_STATES],
    )
    out: Emitted = []
    for row in rows:
        out += await transition(conn, ReferralRow.of(row), S.CANCELLED, reason=reason)
    return out
