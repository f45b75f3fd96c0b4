"""Consent that follows through (decision 20), apart from I/O: which open referrals a consent
no longer covers, when a consent's expiry acts, and what of an erased case's profile the
``statistics`` purpose lets evidence keep. Pure (the day is an argument)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from shared.contracts import events as ev

from .decisions import ReferralRow

# What evidence reads of an erased case, kept only under the statistics purpose: the pathway
# report groups by return area; sex, age band and return type are the breakdowns evidence on
# returnees asks for. Birth year, return date, nationality, languages and vulnerabilities go.
STATISTICS_FIELDS = ("sex", "age_band", "return_country", "return_area", "return_type")


def covers(
    consent: ev.Consent,
    *,
    agency_id: str,
    agency_type: ev.AgencyType | None,
    category: str,
    today: date,
) -> bool:
    """Whether the consent covers a referral of ``category`` to this agency today: given, for
    referral, not expired, and the agency, its type and the category within the scope (what
    matching asks of a candidate; an agency of unknown type is outside a scope naming types)."""
    scope = consent.scope
    if not consent.covers(ev.ConsentPurpose.REFERRAL) or scope is None:
        return False
    if scope.expires_on is not None and scope.expires_on < today:
        return False
    if scope.categories is not None and category not in scope.categories:
        return False
    if scope.agency_ids is not None and agency_id not in scope.agency_ids:
        return False
    return scope.agency_types is None or (
        agency_type is not None and agency_type in scope.agency_types
    )


def no_longer_covered(
    consent: ev.Consent,
    open_referrals: Sequence[ReferralRow],
    agency_types: dict[str, ev.AgencyType],
    today: date,
) -> list[ReferralRow]:
    """The open referrals the consent does not cover (to cancel, their recipients told to
    erase); those it covers are left alone. A consent that widens or stays leaves none."""
    return [
        ref
        for ref in open_referrals
        if not covers(
            consent,
            agency_id=ref.recipient_agency_id,
            agency_type=agency_types.get(ref.recipient_agency_id),
            category=ref.category,
            today=today,
        )
    ]


def expiry_due(consent: ev.Consent) -> datetime | None:
    """When the consent's ``expires_on`` acts: the first moment it no longer covers (it covers
    through that date, as matching and intake read it), or None when it has no expiry."""
    scope = consent.scope
    if not consent.given or scope is None or scope.expires_on is None:
        return None
    return datetime.combine(scope.expires_on + timedelta(days=1), time.min, tzinfo=UTC)


def age_band(birth_year: int, today: date) -> ev.AgeBand:
    return ev.AgeBand.of_birth_year(birth_year, today)


def statistics_profile(
    profile: dict[str, Any], consent: ev.Consent, today: date
) -> dict[str, Any] | None:
    """What an erased case's profile keeps in referral: the statistics fields when the consent
    (given, not expired) has the statistics purpose, else nothing (None). A birth year becomes
    its age band."""
    scope = consent.scope
    if not consent.covers(ev.ConsentPurpose.STATISTICS) or scope is None:
        return None
    if scope.expires_on is not None and scope.expires_on < today:
        return None
    kept = {f: profile[f] for f in STATISTICS_FIELDS if profile.get(f) is not None}
    if "age_band" not in kept and isinstance(profile.get("birth_year"), int):
        kept["age_band"] = age_band(profile["birth_year"], today).value
    return kept


def erased_consent(at: datetime) -> ev.Consent:
    """What an erased case's row keeps as its consent: none (the scope named agencies)."""
    return ev.Consent(given=False, recorded_at=at, method="digital")
