"""Referral's routing decision, apart from I/O: given a need, its chain so far and the
candidates, the next referral or the recorded gap. Pure (the clock and the new id are
arguments); routing.py loads what it needs and stores what it decides."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.contracts import events as ev
from shared.contracts.events import ReferralState as S
from shared.contracts.taxonomy import TAXONOMY, ReasonCode, Urgency

from .matching import Candidate, Match, best, best_community, rank, rank_community


@dataclass(frozen=True, slots=True)
class ReferralRow:
    referral_id: str
    case_id: str
    need_id: str
    category: str
    urgency: Urgency
    status: S
    attempt: int
    referring_agency_id: str
    recipient_agency_id: str
    service_id: str
    correlation_id: str | None
    # Who owns the case now (read with the referral): another agency than the referring one
    # once the case was handed over.
    case_owner_agency_id: str | None = None

    @classmethod
    def of(cls, r: Any) -> ReferralRow:
        return cls(
            str(r["referral_id"]),
            r["case_id"],
            r["need_id"],
            r["category"],
            Urgency(r["urgency"]),
            S(r["status"]),
            r["attempt"],
            r["referring_agency_id"],
            r["recipient_agency_id"],
            r["service_id"],
            r["correlation_id"],
            r.get("case_owner_agency_id"),
        )


@dataclass(frozen=True, slots=True)
class CommunityCase:
    """A community need as referral routes it (issue 18, decision 17): a case of kind community
    with one need of level community, in an area; no profile and no consent (no person)."""

    case_id: str
    submitting_agency_id: str
    area: str
    needs: list[ev.Need]
    people_affected: int
    returnee_share: float

    @classmethod
    def of(cls, registered: ev.CommunityNeedRegistered) -> CommunityCase:
        return cls(
            case_id=registered.case_id,
            submitting_agency_id=registered.submitting_agency_id,
            area=registered.area,
            needs=[registered.need],
            people_affected=registered.people_affected,
            returnee_share=registered.returnee_share,
        )


# What routing refers: a returnee's case, or a community need.
Routable = ev.CaseRegistered | CommunityCase


def area_of(case: Routable) -> str:
    """Where the need lies: the returnee's return area, or the community's."""
    return case.area if isinstance(case, CommunityCase) else case.profile.return_area


def rank_for(
    case: Routable,
    need: ev.Need,
    candidates: list[Candidate],
    *,
    exclude_services: frozenset[str] = frozenset(),
) -> list[Match] | ev.UnmatchedReason:
    """Every acceptable candidate for a need of the case, best first (a returnee's, filtered by
    profile and consent; a community's, by level and beneficiaries); or why none is."""
    if isinstance(case, CommunityCase):
        return rank_community(need, case.area, candidates, exclude_services=exclude_services)
    return rank(need, case.profile, case.consent, candidates, exclude_services=exclude_services)


@dataclass(frozen=True, slots=True)
class ChainLink:
    """One referral already made for the need."""

    referral_id: str
    service_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Refer:
    """Refer the need: the referral event, with when its deadline is and when to remind."""

    referral: ev.ReferralRequested
    respond_by: datetime
    remind_at: datetime


@dataclass(frozen=True, slots=True)
class Gap:
    """No provider left for the need: why, after how many attempts."""

    unmatched: ev.NeedUnmatched


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    max_attempts: int
    sla_seconds_override: float | None = None
    reminder_at_fraction: float = 0.75

    def respond_by(
        self, urgency: Urgency, listing_sla_hours: int | None, now: datetime
    ) -> datetime:
        """The decision deadline: the override (tests, chaos), else the listing's own SLA,
        else the taxonomy's for the urgency."""
        if self.sla_seconds_override is not None:
            delay = timedelta(seconds=self.sla_seconds_override)
        elif listing_sla_hours is not None:
            delay = timedelta(hours=listing_sla_hours)
        else:
            delay = TAXONOMY.answer_within(urgency)
        return now + delay


def decide_route(
    case: Routable,
    need: ev.Need,
    candidates: list[Candidate],
    chain: Sequence[ChainLink],
    policy: RoutingPolicy,
    now: datetime,
    *,
    new_id: uuid.UUID | None = None,
    excluded: frozenset[str] = frozenset(),
) -> Refer | Gap:
    """The best candidate not tried yet, as the chain's next attempt (linked to its last
    referral, so the attempts limit holds and a retry is a re-route, never a second attempt 1);
    or the gap, with the matching reason or ``attempts_exhausted``. ``excluded``: services the
    referrer excluded for the need (never tried)."""
    ordered = sorted(chain, key=lambda link: link.attempt)
    last = ordered[-1] if ordered else None
    attempt = last.attempt + 1 if last else 1
    tried = frozenset(link.service_id for link in ordered) | excluded
    if isinstance(case, CommunityCase):
        chosen = best_community(need, case.area, candidates, exclude_services=tried)
    else:
        chosen = best(need, case.profile, case.consent, candidates, exclude_services=tried)
    if attempt > policy.max_attempts or not isinstance(chosen, Match):
        reason = ev.UnmatchedReason.ATTEMPTS_EXHAUSTED if attempt > policy.max_attempts else chosen
        assert isinstance(reason, ev.UnmatchedReason)
        return Gap(
            ev.NeedUnmatched(
                case_id=case.case_id,
                need_id=need.need_id,
                category=need.category,
                referring_agency_id=case.submitting_agency_id,
                reason=reason,
                attempts=attempt - 1,
            )
        )
    return referral_to(case, need, chosen, last, policy, now, new_id=new_id)


def referral_to(
    case: Routable,
    need: ev.Need,
    chosen: Match,
    last: ChainLink | None,
    policy: RoutingPolicy,
    now: datetime,
    *,
    new_id: uuid.UUID | None = None,
) -> Refer:
    """The referral of the need to ``chosen`` as the attempt after ``last`` (routing's best
    candidate, or the one a referrer chose), with its deadline and reminder."""
    respond_by = policy.respond_by(need.urgency, chosen.candidate.sla_hours, now)
    return Refer(
        ev.ReferralRequested(
            referral_id=str(new_id or uuid.uuid4()),
            case_id=case.case_id,
            need_id=need.need_id,
            category=need.category,
            urgency=need.urgency,
            referring_agency_id=case.submitting_agency_id,
            recipient_agency_id=chosen.candidate.agency_id,
            service_id=chosen.candidate.service_id,
            attempt=last.attempt + 1 if last else 1,
            previous_referral_id=last.referral_id if last else None,
            respond_by=respond_by,
            explanation=chosen.explanation,
        ),
        respond_by=respond_by,
        remind_at=now + (respond_by - now) * policy.reminder_at_fraction,
    )


def transitioned(
    ref: ReferralRow,
    to: ev.ReferralState,
    *,
    reason: ReasonCode | None = None,
    outcome: ev.Outcome | None = None,
    now: datetime,
    cancelled_by: ev.CancelledBy | None = None,
) -> ev.ReferralTransitioned:
    """The event of one referral's change of state (the lifecycle says which are allowed); it
    names the case's owner when the case changed hands since the referral was made, so the
    progress reaches the owner of now."""
    owner = ref.case_owner_agency_id
    return ev.ReferralTransitioned(
        referral_id=ref.referral_id,
        case_id=ref.case_id,
        need_id=ref.need_id,
        from_state=ref.status,
        to_state=to,
        reason_code=reason,
        outcome=outcome,
        attempt=ref.attempt,
        referring_agency_id=ref.referring_agency_id,
        recipient_agency_id=ref.recipient_agency_id,
        occurred_at=now,
        case_owner_agency_id=owner if owner and owner != ref.referring_agency_id else None,
        cancelled_by=cancelled_by,
    )
