"""Follow-ups and assessments (issue 19): the indicator set's scoring, the plan's waves and
stages (pure), and intake's handling of an assessment on an in-memory store. The same flow
runs on the real broker and database in tests/e2e/test_follow_ups.py."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest

from services.intake.follow_ups import (
    Wave,
    assessment_refusal,
    follows_up,
    next_stage,
    parse_plan,
    planned,
)
from shared.contracts import events as ev
from shared.contracts import messages, outcomes, topics
from shared.contracts.envelope import build_event
from shared.contracts.events import FollowUpStage as Stage
from shared.contracts.outcomes import INDICATOR_SETS
from shared.contracts.taxonomy import Dimension
from shared.kafka.inbound import InboundEvent
from tests import factories as f
from tests.unit.test_intake_handlers import AGENCY, OTHER_AGENCY, FakeIntakeStore, _register
from tests.unit.test_intake_handlers import _submit as submit

RSS = INDICATOR_SETS["rss-v1"]
TODAY = date(2026, 12, 3)


def _all(position: int) -> list[tuple[str, str]]:
    """Every indicator answered with the option at ``position`` of its scale (0: the best)."""
    return [(i.id, i.scale[min(position, len(i.scale) - 1)].code) for i in RSS.indicators]


# ----- the indicator set and its scoring -----


def test_the_rss_set_has_15_indicators_five_per_dimension() -> None:
    by_dimension: dict[str, int] = {}
    for indicator in RSS.indicators:
        by_dimension[indicator.dimension] = by_dimension.get(indicator.dimension, 0) + 1
    assert by_dimension == {"economic": 5, "social": 5, "psychosocial": 5}
    assert all(o.label_fr and o.label_en for i in RSS.indicators for o in i.scale)


def test_the_best_and_worst_answers_score_one_and_zero() -> None:
    best, worst = outcomes.score(RSS, _all(0)), outcomes.score(RSS, _all(99))
    assert (best.economic, best.social, best.psychosocial, best.composite) == (1, 1, 1, 1)
    assert (worst.economic, worst.social, worst.psychosocial, worst.composite) == (0, 0, 0, 0)
    assert best.indicators_answered == 15


def test_a_dimension_is_the_weighted_mean_of_its_scored_answers() -> None:
    answers = [("employment", "yes"), ("ability_to_borrow", "no"), ("food_insecurity", "refused")]
    scores = outcomes.score(RSS, answers)
    assert scores.economic == 0.5  # refused carries no score and no weight
    assert scores.social is None and scores.composite is None  # the composite needs all three
    assert scores.indicators_answered == 2


def test_weights_change_the_composite() -> None:
    heavier = RSS.model_copy(
        update={"dimension_weights": {**RSS.dimension_weights, Dimension.ECONOMIC: 2.0}}
    )
    # economic answered best (1), social and psychosocial worst (0)
    answers = [
        (i.id, (i.scale[0] if i.dimension is Dimension.ECONOMIC else i.scale[-1]).code)
        for i in RSS.indicators
    ]
    assert outcomes.score(RSS, answers).composite == pytest.approx(1 / 3, abs=1e-3)
    assert outcomes.score(heavier, answers).composite == pytest.approx(2 / 4, abs=1e-3)


def test_answers_off_the_set_are_refused_one_by_one() -> None:
    errors = outcomes.check(
        RSS,
        [("employment", "yes"), ("shoe_size", "42"), ("housing", "palace"), ("housing", "refused")],
    )
    assert [(e.field, e.message.split(":")[0]) for e in errors] == [
        ("answers.1.indicator", "rss-v1 has no indicator of this id"),
        ("answers.2.answer", "not on the scale"),
    ]


# ----- the plan -----


def test_a_plan_parses_in_order_and_a_malformed_one_is_refused() -> None:
    assert parse_plan("month_6:180, baseline:0") == (Wave("baseline", 0), Wave("month_6", 180))
    for bad in ("", "baseline", "baseline:x", "a:1,a:2", "Bad Name:3"):
        with pytest.raises(ValueError):
            parse_plan(bad)


def test_waves_are_counted_from_the_registration_with_their_reminder() -> None:
    waves = planned(parse_plan("baseline:0,month_3:90"), TODAY, reminder_days=7)
    assert [(w.wave, w.due_on, w.remind_on) for w in waves] == [
        ("baseline", TODAY, TODAY),
        ("month_3", TODAY + timedelta(days=90), TODAY + timedelta(days=83)),
    ]


@pytest.mark.parametrize(
    ("status", "days_to_due", "expected"),
    [
        ("scheduled", 10, None),  # before its reminder
        ("scheduled", 5, Stage.REMINDER),
        ("reminded", 5, None),
        ("reminded", 0, Stage.DUE),
        ("scheduled", 0, Stage.DUE),  # a baseline is due at once, no reminder
        ("due", -30, None),  # within its grace
        ("due", -31, Stage.MISSED),
        ("done", -100, None),
        ("cancelled", -100, None),
        ("missed", -100, None),
    ],
)
def test_each_wave_moves_one_stage_at_a_time(
    status: str, days_to_due: int, expected: Stage | None
) -> None:
    due = TODAY + timedelta(days=days_to_due)
    assert next_stage(status, due, due - timedelta(days=7), TODAY, grace_days=30) is expected


def test_only_a_consent_with_follow_up_not_expired_follows_up() -> None:
    def consent(**kw: Any) -> ev.Consent:
        return ev.Consent.model_validate(f.consent(**kw))

    assert follows_up(consent(), TODAY)
    assert not follows_up(consent(scope={"purposes": ["referral"]}), TODAY)
    assert not follows_up(consent(given=False, scope=None), TODAY)
    expired = {"purposes": ["follow_up"], "expires_on": "2026-12-02"}
    assert not follows_up(consent(scope=expired), TODAY)


# ----- intake's handling -----


def _assessment(case_id: str, agency: str = AGENCY, **overrides: Any) -> InboundEvent:
    body = {
        "agency_id": agency,
        "case_id": case_id,
        "wave": "baseline",
        "assessed_on": TODAY.isoformat(),
        "answers": [{"indicator": i, "answer": a} for i, a in _all(0)],
        **overrides,
    }
    return InboundEvent.from_record(
        f.record_of(
            build_event(
                topic=topics.AGENCY_SUBMISSIONS.name(agency),
                key=case_id,
                type_=ev.ASSESSMENT_SUBMITTED,
                source=messages.agency_source(agency),
                data=ev.AssessmentSubmission.model_validate(body),
            )
        )
    )


async def test_a_registered_case_with_follow_up_consent_gets_its_owners_plan() -> None:
    store = FakeIntakeStore()
    row = await _register(store)
    assert store.follow_ups.plans[row.case_id] == (
        AGENCY,
        ("baseline", "month_3", "month_6", "month_12"),
    )
    refused = await _register(store, consent=f.consent(scope={"purposes": ["referral"]}))
    assert store.follow_ups.plans[refused.case_id] == (AGENCY, None)


async def test_an_assessment_is_scored_kept_and_told_with_its_scores_only() -> None:
    store = FakeIntakeStore()
    row = await _register(store)
    event = _assessment(row.case_id)
    unit = await submit(store, event)
    [sent] = unit.emitted
    assert (sent.topic, sent.headers["ce_type"], sent.key) == (
        topics.INTAKE_CASES,
        ev.ASSESSMENT_RECORDED,
        row.case_id,
    )
    body = json.loads(sent.body)
    assert body["scores"] == {"economic": 1.0, "social": 1.0, "psychosocial": 1.0, "composite": 1.0}
    assert (body["wave"], body["owner_agency_id"], body["submission_id"]) == (
        "baseline",
        AGENCY,
        event.event_id,
    )
    assert "answers" not in body
    assert (row.case_id, "baseline") in store.follow_ups.assessments


async def _refused(store: FakeIntakeStore, event: InboundEvent) -> list[tuple[str | None, str]]:
    unit = await submit(store, event)
    [sent] = unit.emitted
    assert sent.headers["ce_type"] == ev.SUBMISSION_REJECTED
    assert not store.follow_ups.assessments
    return [(e["field"], e["message"]) for e in json.loads(sent.body)["errors"]]


async def test_each_bad_assessment_is_refused_with_its_reason() -> None:
    store = FakeIntakeStore()
    row = await _register(store)
    no_follow_up = await _register(store, consent=f.consent(scope={"purposes": ["referral"]}))
    unknown = "4b2f7e1c-8f43-4d55-a1a6-3c1d7e9f0a99"
    assert await _refused(store, _assessment(unknown)) == [("case_id", "no case with this case_id")]
    [(field, message)] = await _refused(store, _assessment(row.case_id, agency=OTHER_AGENCY))
    assert (field, message.split(":")[0]) == ("case_id", "the case is not this agency's")
    [(field, message)] = await _refused(store, _assessment(no_follow_up.case_id))
    assert field == "case_id" and "does not include follow_up" in message
    [(field, message)] = await _refused(store, _assessment(row.case_id, wave="month_2"))
    assert field == "wave" and "baseline, month_3, month_6, month_12" in message
    [(field, _)] = await _refused(store, _assessment(row.case_id, indicator_set="rss-v0"))
    assert field == "indicator_set"
    bad = [{"indicator": "housing", "answer": "palace"}, {"indicator": "x", "answer": "yes"}]
    errors = await _refused(store, _assessment(row.case_id, answers=bad))
    assert [e[0] for e in errors] == ["answers.0.answer", "answers.1.indicator"]


def test_an_assessment_dated_in_the_future_is_refused_by_its_contract() -> None:
    with pytest.raises(ValueError, match="assessed_on"):
        ev.AssessmentSubmission.model_validate(
            {
                "agency_id": AGENCY,
                "case_id": "c1",
                "wave": "baseline",
                "assessed_on": (date.today() + timedelta(days=2)).isoformat(),
                "answers": [{"indicator": "housing", "answer": "good"}],
            }
        )


def test_assessment_refusal_of_an_erased_case() -> None:
    consent = ev.Consent.model_validate(f.consent())
    assessment = ev.AssessmentSubmission.model_validate(
        {
            "agency_id": AGENCY,
            "case_id": "c1",
            "wave": "baseline",
            "assessed_on": TODAY.isoformat(),
            "answers": [{"indicator": "housing", "answer": "good"}],
        }
    )
    refused = assessment_refusal(
        "erased", AGENCY, consent, assessment, parse_plan("baseline:0"), TODAY
    )
    assert refused is not None and refused.field == "case_id"
    assert (
        assessment_refusal("open", AGENCY, consent, assessment, parse_plan("baseline:0"), TODAY)
        is None
    )
