"""What the read model keeps of a case, apart from I/O: the breakdowns of its profile (sex, age
band, vulnerabilities, return area), whether its consent lets it count (the ``statistics``
purpose, given and not expired), and what an erased case keeps. Pure (the day is an argument).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from shared.contracts import events as ev
from shared.contracts.taxonomy import Level

from .facts import CaseFact


def counts(consent: ev.Consent, today: date) -> bool:
    """Whether a case with this consent counts in the evidence: given, with the statistics
    purpose, not expired."""
    scope = consent.scope
    if not consent.covers(ev.ConsentPurpose.STATISTICS) or scope is None:
        return False
    return scope.expires_on is None or scope.expires_on >= today


def case_facts(case: ev.CaseRegistered, today: date) -> CaseFact:
    profile = case.profile
    band = profile.age_band or (
        ev.AgeBand.of_birth_year(profile.birth_year, today)
        if profile.birth_year is not None
        else None
    )
    return CaseFact(
        case_id=case.case_id,
        owner_agency_id=case.submitting_agency_id,
        level=Level.INDIVIDUAL.value,
        area=profile.return_area,
        sex=profile.sex.value,
        age_band=band.value if band is not None else None,
        vulnerabilities=tuple(sorted(v.value for v in profile.vulnerabilities)),
        statistics=counts(case.consent, today),
    )


def community_facts(need: ev.CommunityNeedRegistered) -> CaseFact:
    """A community need is counted as a case of level community: it names no person, so no
    consent is asked for it and it always counts (docs/evidence.md, consent)."""
    return CaseFact(
        case_id=need.case_id,
        owner_agency_id=need.submitting_agency_id,
        level=Level.COMMUNITY.value,
        area=need.area,
        sex=None,
        age_band=None,
        vulnerabilities=(),
        statistics=True,
    )


def kept_on_erasure(case: CaseFact | None) -> CaseFact | None:
    """What an erased case leaves in the read model: under the statistics purpose its sex, age
    band and area (as referral keeps them), without its vulnerabilities; otherwise nothing
    (None: every row of the case goes)."""
    if case is None or not case.statistics:
        return None
    return replace(case, vulnerabilities=())
