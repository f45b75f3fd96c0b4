"""Follow-ups and assessments end to end (issue 19) on the real broker and databases, the three
services as processes: a case with follow_up consent gets its baseline wave due in its owner's
inbox; an assessment through intake is scored and told to the owner (scores only); each bad
assessment is refused with its reason in the sender's inbox; a case without follow_up consent
gets no follow-up and takes no assessment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.contracts import events as ev
from shared.contracts import topics
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from tests import factories as f
from tests.e2e.conftest import RunningService
from tests.e2e.kafka_helpers import absent_before_sentinel, collect, data_of, headers_of
from tests.e2e.test_continuity import _submission
from tests.e2e.test_referral import _agency

pytestmark = pytest.mark.e2e

SERVICE_ENV = {"INTAKE_FOLLOW_UP_INTERVAL_S": "1"}


async def _registered(kafka: KafkaConnection, owner: str, **kw: Any) -> str:
    """A case of ``owner`` registered through intake: its case id."""
    sent = f.submission_event(f.submission(owner, **kw))
    await publish_events(kafka, [sent])
    [accepted] = await collect(
        kafka,
        topics.INTAKE_CASES,
        lambda r: (
            headers_of(r).get("ce_type") == ev.SUBMISSION_ACCEPTED
            and data_of(r).get("submission_id") == sent.event_id
        ),
    )
    return str(data_of(accepted)["case_id"])


async def _inbox(
    kafka: KafkaConnection, agency: str, type_: str, match: Any, expected: int = 1
) -> list[dict[str, Any]]:
    records = await collect(
        kafka,
        topics.agency_inbox(agency),
        lambda r: headers_of(r).get("ce_type") == type_ and match(data_of(r)),
        expected=expected,
    )
    return [data_of(r) for r in records]


async def test_a_case_is_followed_up_and_its_assessment_scored(
    services: dict[str, RunningService], kafka: KafkaConnection
) -> None:
    owner = await _agency(kafka, "iom")
    case_id = await _registered(kafka, owner)
    [due] = await _inbox(kafka, owner, ev.INBOX_FOLLOW_UP_DUE, lambda d: d["case_id"] == case_id)
    assert (due["wave"], due["stage"], due["owner_agency_id"]) == ("baseline", "due", owner)

    sent = f.assessment_event(f.assessment(owner, case_id, "baseline", f.answers_scoring(0)))
    worse = f.assessment_event(f.assessment(owner, case_id, "month_6", f.answers_scoring(99)))
    await publish_events(kafka, [sent, worse])
    recorded = await _inbox(
        kafka, owner, ev.INBOX_ASSESSMENT_RECORDED, lambda d: d["case_id"] == case_id, expected=2
    )
    by_wave = {r["wave"]: r for r in recorded}
    assert by_wave["baseline"]["submission_id"] == sent.event_id
    assert by_wave["baseline"]["scores"]["composite"] == 1.0
    assert by_wave["month_6"]["scores"] == {
        "economic": 0.0,
        "social": 0.0,
        "psychosocial": 0.0,
        "composite": 0.0,
    }
    # the case's event carries the scores for evidence, never the answers
    [event] = await collect(
        kafka,
        topics.INTAKE_CASES,
        lambda r: (
            headers_of(r).get("ce_type") == ev.ASSESSMENT_RECORDED
            and data_of(r).get("submission_id") == sent.event_id
        ),
    )
    assert event.key.decode() == case_id and "answers" not in data_of(event)


async def _refusal(kafka: KafkaConnection, sender: str, message: Any) -> list[tuple[str, str]]:
    await publish_events(kafka, [message])
    [refused] = await _inbox(
        kafka,
        sender,
        ev.INBOX_SUBMISSION_REJECTED,
        lambda d: d["submission_id"] == message.event_id,
    )
    return [(e["field"], e["message"]) for e in refused["errors"]]


async def test_each_bad_assessment_is_refused_to_its_sender(
    services: dict[str, RunningService], kafka: KafkaConnection
) -> None:
    owner, other = await _agency(kafka, "iom"), await _agency(kafka, "ngo")
    case_id = await _registered(kafka, owner)
    best = f.answers_scoring(0)

    def by(agency: str, case: str = case_id, wave: str = "baseline", **kw: Any) -> Any:
        return f.assessment_event(f.assessment(agency, case, wave, kw.pop("answers", best), **kw))

    unknown = "4b2f7e1c-8f43-4d55-a1a6-3c1d7e9f0a99"
    assert await _refusal(kafka, owner, by(owner, unknown)) == [
        ("case_id", "no case with this case_id")
    ]
    [(field, reason)] = await _refusal(kafka, other, by(other))
    assert field == "case_id" and "its owner assesses it" in reason
    [(field, _)] = await _refusal(kafka, owner, by(owner, wave="month_2"))
    assert field == "wave"
    bad = [("housing", "palace"), ("employment", "yes")]
    [(field, reason)] = await _refusal(kafka, owner, by(owner, answers=bad))
    assert field == "answers.0.answer" and reason.startswith("not on the scale")
    # an erased case is unknown
    erasure = f.submission(owner)  # a case of its own, then erased
    erased_id = await _registered(kafka, owner, agency_case_ref=erasure.agency_case_ref)
    request = ev.ErasureRequest(
        agency_id=owner,
        agency_case_ref=erasure.agency_case_ref,
        requested_at=datetime.now(UTC) - timedelta(seconds=1),
        basis="data_subject_request",
    )
    await publish_events(
        kafka, [_submission(owner, erasure.agency_case_ref, ev.ERASURE_REQUESTED, request)]
    )
    await collect(
        kafka,
        topics.INTAKE_CASES,
        lambda r: (
            headers_of(r).get("ce_type") == ev.CASE_ERASED and data_of(r)["case_id"] == erased_id
        ),
    )
    assert await _refusal(kafka, owner, by(owner, erased_id)) == [
        ("case_id", "no case with this case_id")
    ]


async def test_without_follow_up_consent_no_follow_up_and_no_assessment(
    services: dict[str, RunningService], kafka: KafkaConnection
) -> None:
    owner = await _agency(kafka, "iom")
    case_id = await _registered(kafka, owner, consent=f.consent(scope={"purposes": ["referral"]}))
    refused = await _refusal(
        kafka,
        owner,
        f.assessment_event(f.assessment(owner, case_id, "baseline", f.answers_scoring(0))),
    )
    assert refused == [
        ("case_id", "the case's consent does not include follow_up: no assessment is kept")
    ]
    # a case with follow_up consent registered after it is due at once: the sentinel
    followed = await _registered(kafka, owner)
    assert await absent_before_sentinel(
        kafka,
        topics.agency_inbox(owner),
        lambda r: (
            headers_of(r).get("ce_type") == ev.INBOX_FOLLOW_UP_DUE
            and data_of(r)["case_id"] == case_id
        ),
        lambda r: (
            headers_of(r).get("ce_type") == ev.INBOX_FOLLOW_UP_DUE
            and data_of(r)["case_id"] == followed
        ),
    )
