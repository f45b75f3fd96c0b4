"""services/evidence/handlers.py on a fake store: what the read model keeps of each event, the
consent rule (statistics), erasure, and that every type evidence reads is handled or ignored
by decision. Unit tests only; tests/e2e/test_evidence.py runs them on the real broker."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from services.evidence import handlers as h
from services.evidence.facts import AssessmentFact, CaseFact, NeedFact
from services.evidence.profiles import counts
from shared.contracts import events as ev
from shared.contracts import topics
from shared.unit import Cause, Unit
from tests import factories as f

AT = datetime(2026, 12, 2, 10, tzinfo=UTC)


@dataclass
class FakeStore:
    cases: dict[str, CaseFact] = field(default_factory=dict)
    registered: dict[str, datetime] = field(default_factory=dict)
    needs: dict[str, list[NeedFact]] = field(default_factory=dict)
    ended: dict[str, str] = field(default_factory=dict)
    forgotten: list[str] = field(default_factory=list)
    referrals: dict[str, dict[str, Any]] = field(default_factory=dict)
    unmet: dict[tuple[str, str], tuple[str, str, datetime]] = field(default_factory=dict)
    handovers: dict[str, tuple[str, str, datetime]] = field(default_factory=dict)
    assessments: dict[tuple[str, str], AssessmentFact] = field(default_factory=dict)
    follow_ups: dict[tuple[str, str], tuple[date, str]] = field(default_factory=dict)

    async def case(self, case_id: str) -> CaseFact | None:
        return self.cases.get(case_id)

    async def save_case(self, case: CaseFact, registered_at: datetime) -> None:
        self.cases[case.case_id] = case
        self.registered.setdefault(case.case_id, registered_at)

    async def replace_needs(self, case_id: str, needs: list[NeedFact]) -> None:
        self.needs[case_id] = list(needs)

    async def set_statistics(self, case_id: str, statistics: bool) -> None:
        self.cases[case_id] = replace(self.cases[case_id], statistics=statistics)

    async def set_owner(self, case_id: str, owner: str) -> None:
        self.cases[case_id] = replace(self.cases[case_id], owner_agency_id=owner)

    async def end_case(self, case_id: str, ended: str) -> None:
        self.ended[case_id] = ended

    async def forget_case(self, case_id: str) -> None:
        self.forgotten.append(case_id)
        self.cases.pop(case_id, None)

    async def record_referral(self, referral_id: str, *args: Any) -> None:
        self.referrals[referral_id] = dict(
            zip(("case_id", "need_id", "category", "provider", "requested_at"), args, strict=True),
            state="requested",
            answered_at=None,
            accepted=False,
        )

    async def record_transition(
        self, referral_id: str, state: str, *, answered_at: datetime | None, accepted: bool
    ) -> None:
        r = self.referrals[referral_id]
        r["state"] = state
        r["answered_at"] = r["answered_at"] or answered_at
        r["accepted"] = r["accepted"] or accepted

    async def record_unmet(
        self, case_id: str, need_id: str, category: str, reason: str, at: datetime
    ) -> None:
        self.unmet[(case_id, need_id)] = (category, reason, at)

    async def record_handover(
        self, handover_id: str, case_id: str, state: str, at: datetime
    ) -> None:
        self.handovers[handover_id] = (case_id, state, at)

    async def record_assessment(self, fact: AssessmentFact) -> None:
        self.assessments[(fact.case_id, fact.wave)] = fact

    async def record_follow_up(self, case_id: str, wave: str, due_on: date, stage: str) -> None:
        self.follow_ups[(case_id, wave)] = (due_on, stage)


def unit(store: FakeStore, ce_type: str = ev.CASE_REGISTERED) -> Unit[Any]:
    return Unit(None, store, h.SOURCE, Cause("conv", "cause", ce_type, AT))  # type: ignore[arg-type]


def registered(purposes: list[str], **profile: Any) -> ev.CaseRegistered:
    return ev.CaseRegistered.model_validate(
        {
            "case_id": "case-1",
            "submitting_agency_id": "iom-sn",
            "profile": f.profile(**profile),
            "needs": [
                {"need_id": "n1", "category": "psychosocial.counselling"},
                {"need_id": "n2", "category": "economic.vocational_training", "level": "community"},
            ],
            "consent": f.consent(scope={"purposes": purposes}),
        }
    )


async def test_a_case_keeps_its_breakdowns_and_needs_and_nothing_personal() -> None:
    store = FakeStore()
    case = registered(
        ["referral", "statistics"],
        vulnerabilities=["disability", "elderly"],
        age_band=None,
        birth_year=1990,
    )
    u = unit(store)
    await h.on_case(case, u)
    assert store.cases["case-1"] == CaseFact(
        "case-1", "iom-sn", "individual", "SN0101", "female", "35-49",
        ("disability", "elderly"), True,
    )  # fmt: skip
    assert store.registered["case-1"] == AT, "dated by the event's ce_time"
    assert store.needs["case-1"] == [
        NeedFact("case-1", "n1", "psychosocial.counselling", "psychosocial", "individual"),
        NeedFact("case-1", "n2", "economic.vocational_training", "economic", "community"),
    ]
    assert u.emitted == []


async def test_without_the_statistics_purpose_a_case_does_not_count() -> None:
    store = FakeStore()
    await h.on_case(registered(["referral", "follow_up"]), unit(store))
    assert store.cases["case-1"].statistics is False


async def test_a_consent_change_turns_counting_on_and_off() -> None:
    store = FakeStore()
    await h.on_case(registered(["referral"]), unit(store))
    consent = ev.Consent.model_validate(f.consent(scope={"purposes": ["statistics"]}))
    await h.on_consent_changed(ev.ConsentChanged(case_id="case-1", consent=consent), unit(store))
    assert store.cases["case-1"].statistics is True
    refused = ev.Consent(given=False, recorded_at=AT, method="written")
    await h.on_consent_changed(ev.ConsentChanged(case_id="case-1", consent=refused), unit(store))
    assert store.cases["case-1"].statistics is False


def test_an_expired_consent_does_not_count() -> None:
    consent = ev.Consent.model_validate(
        f.consent(scope={"purposes": ["statistics"], "expires_on": "2026-11-30"})
    )
    assert counts(consent, date(2026, 11, 30)) is True
    assert counts(consent, date(2026, 12, 1)) is False


async def test_erasure_under_statistics_keeps_the_breakdowns_without_vulnerabilities() -> None:
    store = FakeStore()
    await h.on_case(registered(["statistics"], vulnerabilities=["disability"]), unit(store))
    await h.on_case_erased(ev.CaseErased(case_id="case-1", erased_at=AT), unit(store))
    kept = store.cases["case-1"]
    assert (kept.sex, kept.age_band, kept.area, kept.vulnerabilities) == (
        "female",
        "25-34",
        "SN0101",
        (),
    )
    assert store.ended["case-1"] == "erased" and store.forgotten == []


async def test_erasure_without_statistics_forgets_everything_of_the_case() -> None:
    store = FakeStore()
    await h.on_case(registered(["referral"]), unit(store))
    await h.on_case_erased(ev.CaseErased(case_id="case-1", erased_at=AT), unit(store))
    assert store.forgotten == ["case-1"] and "case-1" not in store.cases
    # an erasure of a case evidence never saw forgets what may have come on the other topic
    await h.on_case_erased(ev.CaseErased(case_id="case-x", erased_at=AT), unit(store))
    assert store.forgotten == ["case-1", "case-x"]


async def test_a_referral_keeps_its_first_answer_and_stays_accepted() -> None:
    store = FakeStore()
    requested = ev.ReferralRequested.model_validate(
        {
            "referral_id": "r1",
            "case_id": "case-1",
            "need_id": "n1",
            "category": "psychosocial.counselling",
            "urgency": "normal",
            "referring_agency_id": "iom-sn",
            "recipient_agency_id": "ngo-psy",
            "service_id": "s1",
            "explanation": {"matched": [], "score": 0.5, "components": {}},
        }
    )
    await h.on_referral_requested(requested, unit(store, ev.REFERRAL_REQUESTED))
    steps = [
        ("requested", "received", 1),
        ("received", "accepted", 2),
        ("accepted", "completed", 3),
    ]
    for before, after, hour in steps:
        change = ev.ReferralTransitioned.model_validate(
            {
                "referral_id": "r1",
                "case_id": "case-1",
                "need_id": "n1",
                "from_state": before,
                "to_state": after,
                "attempt": 1,
                "referring_agency_id": "iom-sn",
                "recipient_agency_id": "ngo-psy",
                "occurred_at": AT.replace(hour=10 + hour),
                **({"outcome": "achieved"} if after == "completed" else {}),
            }
        )
        await h.on_referral_transitioned(change, unit(store, ev.REFERRAL_TRANSITIONED))
    r = store.referrals["r1"]
    assert r["requested_at"] == AT and r["provider"] == "ngo-psy"
    assert r["answered_at"] == AT.replace(hour=11), "the first answer: received"
    assert r["state"] == "completed" and r["accepted"] is True


@pytest.mark.parametrize("state", ["expired", "cancelled", "entered_in_error"])
async def test_an_expiry_or_a_cancellation_is_no_answer(state: str) -> None:
    store = FakeStore()
    store.referrals["r1"] = {"state": "requested", "answered_at": None, "accepted": False}
    change = ev.ReferralTransitioned.model_validate(
        {
            "referral_id": "r1",
            "case_id": "case-1",
            "need_id": "n1",
            "from_state": "requested",
            "to_state": state,
            "attempt": 1,
            "referring_agency_id": "iom-sn",
            "recipient_agency_id": "ngo-psy",
            "occurred_at": AT,
        }
    )
    await h.on_referral_transitioned(change, unit(store))
    assert store.referrals["r1"]["answered_at"] is None
    assert store.referrals["r1"]["accepted"] is False


async def test_assessment_scores_and_follow_ups_are_recorded_per_wave() -> None:
    store = FakeStore()
    recorded = ev.AssessmentRecorded(
        case_id="case-1",
        owner_agency_id="iom-sn",
        wave="baseline",
        assessed_on=date(2026, 12, 1),
        indicator_set="rss-v1",
        scores=ev.OutcomeScores(economic=0.5, social=0.25, psychosocial=None, composite=None),
        indicators_answered=10,
    )
    await h.on_assessment(recorded, unit(store))
    assert store.assessments[("case-1", "baseline")] == AssessmentFact(
        "case-1", "baseline", date(2026, 12, 1), 0.5, 0.25, None, None
    )
    notice = ev.FollowUpNotice(
        case_id="case-1",
        owner_agency_id="iom-sn",
        wave="month_3",
        due_on=date(2026, 11, 1),
        stage=ev.FollowUpStage.MISSED,
    )
    await h.on_follow_up(notice, unit(store))
    assert store.follow_ups[("case-1", "month_3")] == (date(2026, 11, 1), "missed")


async def test_a_community_need_counts_as_a_case_of_level_community() -> None:
    store = FakeStore()
    need = ev.CommunityNeedRegistered.model_validate(
        {
            "case_id": "cn-1",
            "submitting_agency_id": "mairie-x",
            "area": "SN0102",
            "need": {
                "need_id": "n1",
                "category": "economic.vocational_training",
                "level": "community",
            },
            "people_affected": 40,
            "returnee_share": 0.5,
        }
    )
    await h.on_community_need(need, unit(store))
    case = store.cases["cn-1"]
    assert (case.level, case.area, case.sex, case.statistics) == ("community", "SN0102", None, True)


def handed_over(at: datetime) -> ev.CaseHandedOver:
    """case-1 moved from iom-sn to gov-sn by handover h1."""
    return ev.CaseHandedOver(
        handover_id="h1",
        case_id="case-1",
        from_agency_id="iom-sn",
        to_agency_id="gov-sn",
        to_agency_case_ref="G-1",
        handed_over_at=at,
    )


async def test_a_handover_moves_the_case_to_its_new_owner() -> None:
    store = FakeStore()
    moved = handed_over(AT)
    await h.on_case(registered(["statistics"]), unit(store))
    await h.on_case_handed_over(moved, unit(store))
    assert store.cases["case-1"].owner_agency_id == "gov-sn"
    assert store.handovers["h1"] == ("case-1", "completed", AT)


def test_every_type_evidence_reads_is_handled_or_ignored_by_decision() -> None:
    read = {
        t for name in topics.consumed_by(topics.Owner.EVIDENCE) for t in topics.spec(name).payloads
    }
    assert set(topics.consumed_by(topics.Owner.EVIDENCE)) == {
        topics.INTAKE_CASES,
        topics.REFERRAL_EVENTS,
    }
    assert read == set(h.HANDLERS) | h.IGNORED
    assert not set(h.HANDLERS) & h.IGNORED


def test_age_band_from_birth_year() -> None:
    assert ev.AgeBand.of_birth_year(2000, date(2026, 12, 1)) == ev.AgeBand.A25_34
    assert ev.AgeBand.of_birth_year(2002, date(2026, 12, 1)) == ev.AgeBand.A18_24
    assert ev.AgeBand.of_birth_year(1950, date(2026, 12, 1)) == ev.AgeBand.A65_PLUS
