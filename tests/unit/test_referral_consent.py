"""Consent that follows through, referral's side (decision 20), on an in-memory store: a
narrowed consent cancels exactly the open referrals it no longer covers (their recipients told
to erase) and leaves the covered ones; an expiry is a timer that the consent-expiry job acts
on; an erasure keeps only the statistics fields of the profile. The decisions are the
service's own (consent.py, routing.py); the fake store only keeps what it is given."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.referral import consent as rules
from services.referral.decisions import ReferralRow
from services.referral.handlers import ReferralHandlers
from services.referral.handovers import CaseFacts
from services.referral.timers import expire_consents
from shared.contracts import events as ev
from shared.contracts.events import ReferralState as S
from shared.contracts.taxonomy import Urgency
from shared.unit import Unit
from tests import factories as f
from tests.unit.test_referral_handlers import POLICY, FakeStore, _candidate, _case, _unit

HANDLERS = ReferralHandlers(POLICY)
TODAY = date(2026, 11, 20)
COUNSELLING, JOBS = "psychosocial.counselling", "economic.job_placement"


def _consent(**scope: Any) -> ev.Consent:
    return ev.Consent.model_validate(f.consent(scope={"purposes": ["referral"], **scope}))


def _ref(n: int, category: str = COUNSELLING) -> ReferralRow:
    return ReferralRow(
        f"r{n}", "c1", f"n{n}", category, Urgency.NORMAL, S.ACCEPTED, 1, "iom-sn",
        f"ngo-{n}", f"svc-{n}", None,
    )  # fmt: skip


REFS = [_ref(1), _ref(2, JOBS), _ref(3)]
TYPES = {"ngo-1": ev.AgencyType.NGO, "ngo-2": ev.AgencyType.GOVERNMENT}  # ngo-3: unknown type


def _gone(consent: ev.Consent, today: date = TODAY) -> list[str]:
    return [r.referral_id for r in rules.no_longer_covered(consent, REFS, TYPES, today)]


@pytest.mark.parametrize(
    ("scope", "cancelled"),
    [
        ({}, []),  # no restriction: everything stays
        ({"agency_ids": ["ngo-1", "ngo-2"]}, ["r3"]),
        ({"agency_types": ["ngo"]}, ["r2", "r3"]),  # an agency of unknown type is outside
        ({"categories": [JOBS]}, ["r1", "r3"]),
        ({"purposes": ["statistics"]}, ["r1", "r2", "r3"]),  # referral no longer a purpose
        ({"expires_on": "2026-11-20"}, []),  # it covers through that date
        ({"expires_on": "2026-11-19"}, ["r1", "r2", "r3"]),
    ],
)
def test_a_consent_cancels_exactly_the_open_referrals_it_no_longer_covers(
    scope: dict[str, Any], cancelled: list[str]
) -> None:
    assert _gone(_consent(**scope)) == cancelled


def test_a_refused_consent_covers_nothing() -> None:
    refused = ev.Consent.model_validate(f.consent(given=False, scope=None))
    assert _gone(refused) == ["r1", "r2", "r3"]


def test_an_expiry_acts_the_day_after_expires_on_and_only_for_a_given_consent() -> None:
    due = rules.expiry_due(_consent(expires_on="2026-11-20"))
    assert due == datetime(2026, 11, 21, tzinfo=UTC)
    assert rules.expiry_due(_consent()) is None
    assert rules.expiry_due(ev.Consent.model_validate(f.consent(given=False, scope=None))) is None


def test_an_erased_profile_keeps_the_statistics_fields_only_under_that_purpose() -> None:
    profile = f.profile(age_band=None, birth_year=1990, vulnerabilities=["single_parent"])
    stats = _consent(purposes=["referral", "statistics"])
    assert rules.statistics_profile(profile, stats, TODAY) == {
        "sex": "female",
        "age_band": "35-49",  # from the birth year, which itself goes
        "return_country": "SN",
        "return_area": "SN0101",
        "return_type": "voluntary_assisted",
    }
    assert rules.statistics_profile(profile, _consent(), TODAY) is None
    expired = _consent(purposes=["statistics"], expires_on="2026-11-01")
    assert rules.statistics_profile(profile, expired, TODAY) is None


# ----- the handlers and the timer job on the fake store -----


class Store(FakeStore):
    def __init__(self) -> None:
        counselling = _candidate(1)
        jobs = replace(_candidate(2), categories=(JOBS,))
        super().__init__([counselling, jobs])
        self.agency_type_of = {"ngo-1": ev.AgencyType.NGO, "ngo-2": ev.AgencyType.NGO}
        self.due_now: list[str] = []

    async def update_consent(self, case_id: str, consent: ev.Consent) -> None:
        self.cases[case_id] = self.cases[case_id].model_copy(update={"consent": consent})

    async def load_case_facts(self, case_id: str, *, lock: bool = False) -> CaseFacts | None:
        c = self.cases.get(case_id)
        if c is None:
            return None
        return CaseFacts(case_id, c.submitting_agency_id, "open", c.consent, "SN0101", ())

    async def take_due_consent_expiries(self, limit: int) -> list[tuple[str, datetime]]:
        due, self.due_now = self.due_now[:limit], self.due_now[limit:]
        return [(case_id, self.expiries.pop(case_id)) for case_id in due]


async def _world() -> tuple[Store, ev.CaseRegistered]:
    store, case = Store(), _case()
    await HANDLERS.on_case(case, _unit(store))
    assert {r.recipient_agency_id for r in store.referrals.values()} == {"ngo-1", "ngo-2"}
    return store, case


def _cancelled(unit: Unit[Any]) -> list[tuple[str, str]]:
    bodies = [json.loads(e.body) for e in unit.emitted]
    return [(b["recipient_agency_id"], b["reason_code"]) for b in bodies if "to_state" in b]


async def test_a_narrowed_consent_cancels_the_uncovered_referral_and_leaves_the_other() -> None:
    store, case = await _world()
    narrowed = ev.ConsentChanged(case_id=case.case_id, consent=_consent(agency_ids=["ngo-1"]))
    unit = _unit(store, ev.CONSENT_CHANGED)
    await HANDLERS.on_consent_changed(narrowed, unit)
    assert _cancelled(unit) == [("ngo-2", "consent_withdrawn")]
    states = {r.recipient_agency_id: r.status for r in store.referrals.values()}
    assert states == {"ngo-1": S.REQUESTED, "ngo-2": S.CANCELLED}
    again = _unit(store, ev.CONSENT_CHANGED)  # the same consent again: nothing more
    await HANDLERS.on_consent_changed(narrowed, again)
    assert again.emitted == []


async def test_a_case_update_carrying_a_narrower_consent_cancels_as_well() -> None:
    store, case = await _world()
    updated = case.model_copy(update={"consent": _consent(categories=[COUNSELLING])})
    unit = _unit(store, ev.CASE_UPDATED)
    await HANDLERS.on_case(updated, unit)
    assert _cancelled(unit) == [("ngo-2", "consent_withdrawn")]


async def test_a_wider_consent_cancels_nothing() -> None:
    store, case = await _world()
    unit = _unit(store, ev.CONSENT_CHANGED)
    wider = _consent(purposes=["referral", "follow_up", "statistics"])
    await HANDLERS.on_consent_changed(ev.ConsentChanged(case_id=case.case_id, consent=wider), unit)
    assert unit.emitted == []


async def test_an_expiry_is_a_timer_moved_and_dropped_by_new_consents_and_acted_on() -> None:
    store, case = await _world()
    assert store.expiries == {}, "a new case without an expiry has no timer"
    soon = (datetime.now(UTC) + timedelta(days=3)).date()
    expiring = ev.ConsentChanged(case_id=case.case_id, consent=_consent(expires_on=soon))
    await HANDLERS.on_consent_changed(expiring, _unit(store, ev.CONSENT_CHANGED))
    assert store.expiries[case.case_id] == rules.expiry_due(expiring.consent)
    renewed = ev.ConsentChanged(case_id=case.case_id, consent=_consent())
    await HANDLERS.on_consent_changed(renewed, _unit(store, ev.CONSENT_CHANGED))
    assert case.case_id not in store.expiries, "a consent without expiry drops the timer"
    await HANDLERS.on_consent_changed(expiring, _unit(store, ev.CONSENT_CHANGED))

    # the timer is due: the job takes it and cancels what the consent no longer covers then
    # (read as of the timer's moment: the day after expires_on)
    store.due_now = [case.case_id]
    units: list[Unit[Any]] = []

    @asynccontextmanager
    async def unit_of_work() -> AsyncIterator[Unit[Any]]:
        units.append(_unit(store, ""))
        yield units[-1]

    assert await expire_consents(unit_of_work) == 1
    assert sorted(_cancelled(units[0])) == [
        ("ngo-1", "consent_withdrawn"),
        ("ngo-2", "consent_withdrawn"),
    ]
    assert case.case_id not in store.expiries


async def test_an_erasure_cancels_and_keeps_only_what_statistics_allows() -> None:
    store, case = await _world()
    erased = ev.CaseErased(case_id=case.case_id, erased_at=datetime.now(UTC))
    unit = _unit(store, ev.CASE_ERASED)
    await HANDLERS.on_case_ended(erased, unit)
    assert sorted(_cancelled(unit)) == [
        ("ngo-1", "consent_withdrawn"),
        ("ngo-2", "consent_withdrawn"),
    ]
    assert store.erased == {case.case_id: None}, "no statistics purpose: nothing kept"

    store, case = await _world()
    stats = _consent(purposes=["referral", "statistics"])
    store.cases[case.case_id] = case.model_copy(update={"consent": stats})
    erased = ev.CaseErased(case_id=case.case_id, erased_at=datetime.now(UTC))
    await HANDLERS.on_case_ended(erased, _unit(store, ev.CASE_ERASED))
    assert set(store.erased[case.case_id] or {}) == set(rules.STATISTICS_FIELDS)
