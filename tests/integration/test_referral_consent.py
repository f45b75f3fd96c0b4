"""Referral's side of consent that follows through (decision 20) on the real PostgreSQL, through
consumer batches wired as services/referral/app.py wires them: a narrowed consent cancels
exactly the uncovered referral; the consent-expiry timer row is set, moved and dropped by the
consents of a batch (deferred, the last one wins) and taken by the job; an erasure keeps only
the statistics fields of the profile, and the evidence report still runs."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.referral import consent as rules
from services.referral.store import ReferralStore
from services.referral.timers import expire_consents
from shared.contracts import events as ev
from tests import factories as f
from tests.integration.counting import CountingPool
from tests.integration.test_matching_index import referral_schema
from tests.integration.test_referral_continuity import CATEGORY, JOBS, OWNER, PROVIDER, Referral

OTHER = "ngo-b"


@pytest.fixture
async def referral(database_urls: dict[str, str]) -> AsyncIterator[Referral]:
    async with referral_schema(database_urls["referral"]) as pool:
        yield Referral(CountingPool(pool))


def _consent(**scope: Any) -> ev.Consent:
    return ev.Consent.model_validate(f.consent(scope={"purposes": ["referral"], **scope}))


def _case(area: str, consent: ev.Consent | None = None) -> ev.CaseRegistered:
    return ev.CaseRegistered.model_validate(
        {
            "case_id": str(uuid.uuid4()),
            "submitting_agency_id": OWNER,
            "profile": f.profile(return_area=area, age_band=None, birth_year=1990),
            "needs": [
                {"need_id": "n1", "category": CATEGORY},
                {"need_id": "n2", "category": JOBS},
            ],
            "consent": (consent or _consent()).model_dump(mode="json"),
        }
    )


async def _world(referral: Referral, consent: ev.Consent | None = None) -> ev.CaseRegistered:
    """Two providers in a fresh area, one per category, and a case referred to both."""
    area = f.unique_area()
    await referral.apply(
        [
            referral.agency(OWNER, ev.AgencyType.UN_AGENCY),
            referral.agency(PROVIDER, ev.AgencyType.NGO),
            referral.agency(OTHER, ev.AgencyType.NGO),
            referral.listed(f.listing(PROVIDER, categories=[CATEGORY], service_areas=[area])),
            referral.listed(f.listing(OTHER, categories=[JOBS], service_areas=[area])),
        ]
    )
    case = _case(area, consent)
    await referral.apply([referral.intake(ev.CASE_REGISTERED, case)])
    return case


async def _states(referral: Referral, case_id: str) -> dict[str, str]:
    rows = await referral.fetch(
        "SELECT recipient_agency_id, status FROM referrals WHERE case_id = $1", case_id
    )
    return {r[0]: r[1] for r in rows}


async def _timer(referral: Referral, case_id: str) -> datetime | None:
    rows = await referral.fetch("SELECT due_at FROM consent_expiries WHERE case_id = $1", case_id)
    return rows[0][0] if rows else None


def _changed(case: ev.CaseRegistered, consent: ev.Consent) -> ev.ConsentChanged:
    return ev.ConsentChanged(case_id=case.case_id, consent=consent)


async def test_a_narrowed_consent_cancels_only_the_uncovered_referral(referral: Referral) -> None:
    case = await _world(referral)
    assert await _states(referral, case.case_id) == {PROVIDER: "requested", OTHER: "requested"}
    narrowed = _changed(case, _consent(agency_ids=[PROVIDER]))
    await referral.apply([referral.intake(ev.CONSENT_CHANGED, narrowed)])
    assert await _states(referral, case.case_id) == {PROVIDER: "requested", OTHER: "cancelled"}
    [cancelled] = [
        t for t in await referral.sent(ev.REFERRAL_TRANSITIONED) if t["to_state"] == "cancelled"
    ]
    assert (cancelled["recipient_agency_id"], cancelled["reason_code"]) == (
        OTHER,
        "consent_withdrawn",
    )
    # its decision timer went with it; the covered referral keeps its own
    rows = await referral.fetch(
        "SELECT r.recipient_agency_id FROM timers t JOIN referrals r USING (referral_id)"
        " WHERE r.case_id = $1",
        case.case_id,
    )
    assert [r[0] for r in rows] == [PROVIDER]


async def test_the_expiry_timer_follows_the_last_consent_of_a_batch_and_the_job_acts(
    referral: Referral,
) -> None:
    case = await _world(referral)
    assert await _timer(referral, case.case_id) is None
    soon = (datetime.now(UTC) + timedelta(days=10)).date()
    later = soon + timedelta(days=20)
    # two consents in one batch: the deferred write keeps the last
    await referral.apply(
        [
            referral.intake(ev.CONSENT_CHANGED, _changed(case, _consent(expires_on=soon))),
            referral.intake(ev.CONSENT_CHANGED, _changed(case, _consent(expires_on=later))),
        ]
    )
    assert await _timer(referral, case.case_id) == rules.expiry_due(_consent(expires_on=later))
    # a case update without expiry drops it
    updated = case.model_copy(update={"consent": _consent()})
    await referral.apply([referral.intake(ev.CASE_UPDATED, updated)])
    assert await _timer(referral, case.case_id) is None
    await referral.apply(
        [referral.intake(ev.CONSENT_CHANGED, _changed(case, _consent(expires_on=soon)))]
    )
    assert await expire_consents(referral.units) == 0, "not due yet"
    assert await _states(referral, case.case_id) == {PROVIDER: "requested", OTHER: "requested"}

    async with referral.pool.pool.acquire() as conn:  # its day comes
        await conn.execute("UPDATE consent_expiries SET due_at = now() - interval '1 second'")
    assert await expire_consents(referral.units) == 1
    assert await _states(referral, case.case_id) == {PROVIDER: "cancelled", OTHER: "cancelled"}
    assert await _timer(referral, case.case_id) is None
    assert await expire_consents(referral.units) == 0


async def test_an_erasure_keeps_only_the_statistics_fields_and_evidence_still_runs(
    referral: Referral,
) -> None:
    stats = _consent(purposes=["referral", "statistics"], expires_on="2099-01-01")
    kept = await _world(referral, stats)
    gone = await _world(referral)
    housing = ev.Need.model_validate({"need_id": "n3", "category": "social.housing"})
    for case in (kept, gone):  # an unmet need each: no listing serves housing
        more = case.model_copy(update={"needs": [*case.needs, housing]})
        await referral.apply([referral.intake(ev.CASE_UPDATED, more)])
    now = datetime.now(UTC)
    await referral.apply(
        [
            referral.intake(ev.CASE_ERASED, ev.CaseErased(case_id=kept.case_id, erased_at=now)),
            referral.intake(ev.CASE_ERASED, ev.CaseErased(case_id=gone.case_id, erased_at=now)),
        ]
    )
    rows = {
        r[0]: (r[1], json.loads(r[2]), json.loads(r[3]), json.loads(r[4]))
        for r in await referral.fetch("SELECT case_id, status, profile, needs, consent FROM cases")
    }
    status, profile, needs, consent = rows[kept.case_id]
    assert (status, needs, consent["given"]) == ("erased", [], False)
    assert profile == {
        "sex": "female",
        "age_band": rules.age_band(1990, now.date()).value,
        "return_country": "SN",
        "return_area": kept.profile.return_area,
        "return_type": "voluntary_assisted",
    }
    assert rows[gone.case_id][:2] == ("erased", {})
    unmet = await referral.fetch("SELECT case_id FROM unmet_needs")
    assert [r[0] for r in unmet] == [kept.case_id], "without statistics its gap goes too"
    assert await _timer(referral, kept.case_id) is None
    assert await _states(referral, kept.case_id) == {PROVIDER: "cancelled", OTHER: "cancelled"}
    async with referral.pool.pool.acquire() as conn:
        report = await ReferralStore(conn).pathway_report(area_digits=8)
    areas = {r.values[0] for r in report}
    assert kept.profile.return_area in areas and None in areas  # the erased one: no area


async def test_a_batch_of_updates_of_cases_without_open_referrals_costs_no_more_round_trips(
    referral: Referral,
) -> None:
    gapless = f.unique_area()  # no listing: every need is a gap, no referral is open
    cases = [_case(gapless) for _ in range(6)]
    await referral.apply([referral.intake(ev.CASE_REGISTERED, c) for c in cases])
    narrowed = _consent(agency_ids=[PROVIDER])
    updated = [c.model_copy(update={"consent": narrowed}) for c in cases]
    few = await referral.apply([referral.intake(ev.CASE_UPDATED, updated[0])])
    many = await referral.apply([referral.intake(ev.CASE_UPDATED, c) for c in updated[1:]])
    assert few == many, f"{few} statements for 1 update, {many} for 5"
