"""Continuity after an owner's assistance ends (decision 16), apart from I/O: which needs are
still open, which programmes could own the case next, and the notice to a provider whose
referral goes on. Pure, like matching.py beside it; the store reads the rows.

Next owners: active listings that declare ``takes_over_cases``, whose coverage contains the
case's return area, of another agency than the owner. Ranked by the share of the open needs'
categories they serve, government agencies first on a tie, then the most precise coverage,
then the service id (deterministic); one listing per agency (its best), at most
:data:`MAX_CANDIDATES`. Each comes with an explanation in matching's style.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.contracts import events as ev
from shared.contracts.events import ReferralState as S

from .decisions import ReferralRow
from .handovers import AgencyFacts, consent_gap
from .matching import covering_depth

MAX_CANDIDATES = 5


@dataclass(frozen=True, slots=True)
class TakeoverListing:
    """A listing whose programme takes cases over, with its agency's type."""

    service_id: str
    agency_id: str
    agency_type: ev.AgencyType
    categories: tuple[str, ...]
    coverage_areas: tuple[str, ...]


def open_needs(needs: Iterable[ev.Need], last_states: Mapping[str, S | None]) -> list[ev.Need]:
    """The needs still open: every need but those whose last referral is completed (a need
    never referred, left unmet or whose last referral ended otherwise is open)."""
    return [n for n in needs if last_states.get(n.need_id) is not S.COMPLETED]


def next_owners(
    *,
    owner_agency_id: str,
    return_area: str,
    open_categories: Sequence[str],
    consent: ev.Consent,
    listings: Sequence[TakeoverListing],
    now: datetime,
    limit: int = MAX_CANDIDATES,
) -> list[ev.ContinuityCandidate]:
    """The programmes that could own the case next, best first (see the module's doc)."""
    wanted = frozenset(open_categories)
    ranked: list[tuple[tuple[float, int, float, str], TakeoverListing, ev.MatchExplanation]] = []
    for listing in listings:
        depth = covering_depth(return_area, listing.coverage_areas)
        if listing.agency_id == owner_agency_id or not depth:
            continue
        served = sorted(wanted.intersection(listing.categories))
        share = round(len(served) / len(wanted), 4) if wanted else 0.0
        government = listing.agency_type is ev.AgencyType.GOVERNMENT
        precision = round(depth / max(len(return_area), 1), 4)
        agency = AgencyFacts(listing.agency_id, listing.agency_type, registered=True)
        # Informative only: a proposal may carry a new consent record that covers the agency.
        covered = consent_gap(consent, agency, now) is None
        covering = max((a for a in listing.coverage_areas if return_area.startswith(a)), key=len)
        explanation = ev.MatchExplanation(
            matched=[
                *(f"category:{c}" for c in served),
                f"coverage:{covering}",
                "takes_over_cases",
            ],
            score=share,
            components={
                "categories_served": share,
                "government": float(government),
                "coverage_precision": precision,
                "consent_covers": float(covered),
            },
        )
        ranked.append(
            ((-share, -int(government), -precision, listing.service_id), listing, explanation)
        )
    ranked.sort(key=lambda r: r[0])
    out: list[ev.ContinuityCandidate] = []
    seen: set[str] = set()
    for _, listing, explanation in ranked:
        if listing.agency_id in seen:
            continue
        seen.add(listing.agency_id)
        out.append(
            ev.ContinuityCandidate(
                agency_id=listing.agency_id,
                agency_type=listing.agency_type,
                service_id=listing.service_id,
                explanation=explanation,
            )
        )
        if len(out) == limit:
            break
    return out


def support_continues(
    ref: ReferralRow,
    *,
    owner_agency_id: str,
    cause: ev.ContinuationCause,
    now: datetime,
    assistance_end_reason: ev.AssistanceEndReason | None = None,
) -> ev.SupportContinues:
    """To the provider of an open referral: it goes on, and who owns the case now."""
    return ev.SupportContinues(
        referral_id=ref.referral_id,
        case_id=ref.case_id,
        need_id=ref.need_id,
        recipient_agency_id=ref.recipient_agency_id,
        owner_agency_id=owner_agency_id,
        cause=cause,
        assistance_end_reason=assistance_end_reason,
        occurred_at=now,
    )
