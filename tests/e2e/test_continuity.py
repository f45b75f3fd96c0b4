"""Continuity end to end on the real broker and databases (issue 17, decision 16): support that
outlives the referring programme, and a case handed over to a government service.

The pathway: IOM registers a case with two needs → an NGO accepts one referral and starts it →
IOM ends its assistance → the NGO's referral continues (and IOM is shown the ministry as a next
owner) → IOM proposes a handover to the ministry → the ministry accepts and receives the sealed
personal data → the ministry updates the case and adds a need → IOM's update is refused with the
reason → the NGO completes and the ministry hears it. And a handover nobody answers expires: the
owner keeps the case, a late answer is refused."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from nacl.public import PrivateKey, SealedBox

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import OutgoingEvent, build_event
from shared.contracts.messages import agency_source, response_message
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from tests import factories as f
from tests.e2e.conftest import RunningService
from tests.e2e.kafka_helpers import collect, data_of, headers_of, register_agency_access
from tests.e2e.personal_data import PERSONAL

pytestmark = pytest.mark.e2e

SERVICE_ENV = {"REFERRAL_TIMER_INTERVAL_S": "0.5"}

COUNSELLING = "psychosocial.counselling"
JOBS = "economic.job_placement"
HOUSING = "social.housing"  # no listing serves it: the ministry's new need goes unmatched


async def _agency(
    kafka: KafkaConnection, prefix: str, type_: ev.AgencyType, public_key: str | None = None
) -> str:
    agency_id = f.unique(prefix)
    await register_agency_access(kafka, agency_id)
    record = ev.AgencyRecord(
        agency_id=agency_id, name=agency_id, type=type_, countries=["SN"], public_key=public_key
    )
    await publish_events(kafka, [f.agency_event(record)])
    return agency_id


def _need(need_id: str, category: str) -> ev.Need:
    return ev.Need.model_validate({"need_id": need_id, "category": category})


def _sent(topic: str, key: str, type_: str, data: ev.Contract, agency: str) -> OutgoingEvent:
    return build_event(
        topic=topic,
        key=key,
        type_=type_,
        source=agency_source(agency),
        data=data,
        agency_id=agency,
    )


def _submission(agency: str, ref: str, type_: str, data: ev.Contract) -> OutgoingEvent:
    return _sent(topics.AGENCY_SUBMISSIONS.name(agency), ref, type_, data, agency)


def _response(agency: str, case_id: str, type_: str, data: ev.Contract) -> OutgoingEvent:
    return _sent(topics.AGENCY_RESPONSES.name(agency), case_id, type_, data, agency)


async def _inbox(
    kafka: KafkaConnection,
    agency: str,
    type_: str,
    where: dict[str, Any],
    expected: int = 1,
    timeout: float = 60,
) -> list[dict[str, Any]]:
    """The agency's inbox events of ``type_`` whose payload has the ``where`` values."""

    def match(r: ConsumerRecord[bytes, bytes]) -> bool:
        if headers_of(r).get("ce_type") != type_:
            return False
        data = data_of(r)
        return all(data.get(k) == v for k, v in where.items())

    found = await collect(
        kafka, topics.agency_inbox(agency), match, expected=expected, timeout=timeout
    )
    assert len(found) >= expected, f"{agency} got {len(found)} {type_} with {where}"
    return [data_of(r) for r in found]


async def _answer(
    kafka: KafkaConnection, provider: str, referral: dict[str, Any], action: str, **kw: Any
) -> None:
    response = ev.ReferralResponse.model_validate(
        {
            "referral_id": referral["referral_id"],
            "agency_id": provider,
            "action": action,
            "responded_at": datetime.now(UTC).isoformat(),
            **kw,
        }
    )
    await publish_events(kafka, [response_message(response, referral["case_id"])])


def _open(key: PrivateKey, sealed: dict[str, Any]) -> dict[str, Any]:
    opened: dict[str, Any] = json.loads(
        SealedBox(key).decrypt(base64.b64decode(sealed["sealed_box"]))
    )
    return opened


async def _registered_case(
    kafka: KafkaConnection, owner: str, area: str, needs: list[str]
) -> tuple[str, str]:
    """A case of ``owner`` with one need per category; (its case id, the owner's reference)."""
    ref = f.unique("CASE")
    submission = f.submission(
        owner,
        agency_case_ref=ref,
        personal=PERSONAL,
        profile=f.profile(return_country="SN", return_area=area),
        needs=[{"need_id": f"n{i + 1}", "category": c} for i, c in enumerate(needs)],
    )
    await publish_events(kafka, [f.submission_event(submission)])
    [accepted] = await _inbox(kafka, owner, ev.INBOX_SUBMISSION_ACCEPTED, {"agency_case_ref": ref})
    return accepted["case_id"], ref


async def test_support_outlives_the_programme_and_the_case_moves_to_the_ministry(
    services: dict[str, RunningService], kafka: KafkaConnection
) -> None:
    area = f.unique_area()
    ministry_key = PrivateKey.generate()
    iom = await _agency(kafka, "iom", ev.AgencyType.UN_AGENCY)
    ngo = await _agency(kafka, "ngo", ev.AgencyType.NGO)
    ministry = await _agency(
        kafka,
        "labour",
        ev.AgencyType.GOVERNMENT,
        base64.b64encode(bytes(ministry_key.public_key)).decode(),
    )
    counselling = f.listing(ngo, categories=[COUNSELLING], service_areas=[area])
    jobs = f.listing(ministry, categories=[JOBS], service_areas=[area], takes_over_cases=True)
    await publish_events(kafka, [f.listing_event(counselling), f.listing_event(jobs)])
    for provider, listing in ((ngo, counselling), (ministry, jobs)):
        await _inbox(
            kafka, provider, ev.INBOX_LISTING_PUBLISHED, {"service_id": listing.service_id}
        )

    # IOM registers a case with two needs; the NGO accepts the counselling referral, starts it
    case_id, iom_ref = await _registered_case(kafka, iom, area, [COUNSELLING, JOBS])
    [referral] = await _inbox(kafka, ngo, ev.INBOX_REFERRAL_RECEIVED, {"case_id": case_id})
    await _inbox(kafka, ministry, ev.INBOX_REFERRAL_RECEIVED, {"case_id": case_id})
    for action in ("accept", "start"):
        await _answer(kafka, ngo, referral, action)
    await _inbox(
        kafka,
        iom,
        ev.INBOX_STATUS_CHANGED,
        {"referral_id": referral["referral_id"], "to_state": "in_progress"},
    )

    # IOM ends its own assistance: the case stays open, the NGO's referral goes on
    ended = ev.AssistanceEnd(
        agency_id=iom,
        agency_case_ref=iom_ref,
        ended_at=datetime.now(UTC) - timedelta(seconds=1),
        reason=ev.AssistanceEndReason.BUDGET_ENDED,
    )
    await publish_events(kafka, [_submission(iom, iom_ref, ev.ASSISTANCE_END_SUBMITTED, ended)])
    [continues] = await _inbox(
        kafka, ngo, ev.INBOX_SUPPORT_CONTINUES, {"referral_id": referral["referral_id"]}
    )
    assert (continues["cause"], continues["owner_agency_id"]) == ("assistance_ended", iom)
    assert continues["assistance_end_reason"] == "budget_ended"
    [proposed] = await _inbox(kafka, iom, ev.INBOX_CONTINUITY_PROPOSED, {"case_id": case_id})
    assert [c["agency_id"] for c in proposed["candidates"]] == [ministry]
    assert set(proposed["open_need_ids"]) == {"n1", "n2"}

    # IOM proposes a handover to the ministry, which accepts under its own reference
    ministry_ref = f.unique("MOL")
    proposal = ev.HandoverProposal(
        case_id=case_id,
        agency_id=iom,
        to_agency_id=ministry,
        reason=ev.HandoverReason.GOVERNMENT_SERVICE,
        respond_by=datetime.now(UTC) + timedelta(days=7),
    )
    await publish_events(kafka, [_response(iom, case_id, ev.HANDOVER_PROPOSAL_SUBMITTED, proposal)])
    [offer] = await _inbox(kafka, ministry, ev.INBOX_HANDOVER_PROPOSED, {"case_id": case_id})
    assert offer["answering_agency_id"] == ministry
    assert offer["respond_on_topic"] == topics.AGENCY_RESPONSES.name(ministry)
    await _inbox(kafka, iom, ev.INBOX_HANDOVER_PROPOSED, {"handover_id": offer["handover_id"]})
    accept = ev.HandoverAnswer(
        handover_id=offer["handover_id"],
        case_id=case_id,
        agency_id=ministry,
        action=ev.HandoverAction.ACCEPT,
        agency_case_ref=ministry_ref,
    )
    await publish_events(
        kafka, [_response(ministry, case_id, ev.HANDOVER_ANSWER_SUBMITTED, accept)]
    )

    # the ministry receives the case's whole personal data, sealed for its key alone
    [sealed] = await _inbox(
        kafka, ministry, ev.INBOX_CASE_DATA_RECEIVED, {"handover_id": offer["handover_id"]}
    )
    assert ev.PersonalData.model_validate(_open(ministry_key, sealed)) == (
        ev.PersonalData.model_validate(PERSONAL)
    )
    for party in (iom, ministry):
        [moved] = await _inbox(kafka, party, ev.INBOX_CASE_HANDED_OVER, {"case_id": case_id})
        assert (moved["from_agency_id"], moved["to_agency_id"]) == (iom, ministry)
        assert moved["to_agency_case_ref"] == ministry_ref
    moved_on = await _inbox(
        kafka,
        ngo,
        ev.INBOX_SUPPORT_CONTINUES,
        {"referral_id": referral["referral_id"], "cause": "case_handed_over"},
    )
    assert moved_on[0]["owner_agency_id"] == ministry

    # the ministry updates the case under its own reference and adds a need
    update = ev.CaseUpdate(
        agency_id=ministry,
        agency_case_ref=ministry_ref,
        needs=[
            _need("n1", COUNSELLING),
            _need("n2", JOBS),
            _need("n3", HOUSING),
        ],
    )
    await publish_events(
        kafka, [_submission(ministry, ministry_ref, ev.CASE_UPDATE_SUBMITTED, update)]
    )
    [applied] = await _inbox(
        kafka, ministry, ev.INBOX_SUBMISSION_ACCEPTED, {"agency_case_ref": ministry_ref}
    )
    assert (applied["case_id"], applied["outcome"]) == (case_id, "updated")
    # its new need is the ministry's to follow: nobody serves it, the ministry hears so
    [gap] = await _inbox(
        kafka, ministry, ev.INBOX_NEED_UNMATCHED, {"case_id": case_id, "need_id": "n3"}
    )
    assert gap["referring_agency_id"] == ministry

    # IOM's update under its old reference is refused with the reason
    late = ev.CaseUpdate(agency_id=iom, agency_case_ref=iom_ref, needs=[_need("n1", JOBS)])
    refused_update = _submission(iom, iom_ref, ev.CASE_UPDATE_SUBMITTED, late)
    await publish_events(kafka, [refused_update])
    [refused] = await _inbox(
        kafka, iom, ev.INBOX_SUBMISSION_REJECTED, {"submission_id": refused_update.event_id}
    )
    assert ministry in refused["reason"] and "handed over" in refused["reason"]

    # the NGO completes; the ministry, now the owner, hears it
    await _answer(kafka, ngo, referral, "complete", outcome="achieved")
    [done] = await _inbox(
        kafka,
        ministry,
        ev.INBOX_STATUS_CHANGED,
        {"referral_id": referral["referral_id"], "to_state": "completed"},
    )
    assert done["recipient_agency_id"] == ngo


async def test_an_unanswered_handover_expires_and_the_owner_keeps_the_case(
    services: dict[str, RunningService], kafka: KafkaConnection
) -> None:
    area = f.unique_area()
    iom = await _agency(kafka, "iom", ev.AgencyType.UN_AGENCY)
    dev = await _agency(
        kafka,
        "devprog",
        ev.AgencyType.DEVELOPMENT_PROGRAMME,
        base64.b64encode(bytes(PrivateKey.generate().public_key)).decode(),
    )
    case_id, iom_ref = await _registered_case(kafka, iom, area, [COUNSELLING])
    proposal = ev.HandoverProposal(
        case_id=case_id,
        agency_id=iom,
        to_agency_id=dev,
        reason=ev.HandoverReason.LONG_TERM_SUPPORT,
        respond_by=datetime.now(UTC) + timedelta(seconds=4),
    )
    await publish_events(kafka, [_response(iom, case_id, ev.HANDOVER_PROPOSAL_SUBMITTED, proposal)])
    [offer] = await _inbox(kafka, dev, ev.INBOX_HANDOVER_PROPOSED, {"case_id": case_id})
    for party in (iom, dev):
        [expired] = await _inbox(
            kafka, party, ev.INBOX_HANDOVER_ENDED, {"handover_id": offer["handover_id"]}
        )
        assert expired["state"] == "expired"

    # too late: the answer is refused and says where the handover stands
    late = ev.HandoverAnswer(
        handover_id=offer["handover_id"],
        case_id=case_id,
        agency_id=dev,
        action=ev.HandoverAction.ACCEPT,
        agency_case_ref=f.unique("DEV"),
    )
    answer = _response(dev, case_id, ev.HANDOVER_ANSWER_SUBMITTED, late)
    await publish_events(kafka, [answer])
    [refused] = await _inbox(kafka, dev, ev.INBOX_HANDOVER_REFUSED, {"message_id": answer.event_id})
    assert (refused["error"], refused["state"]) == ("not_pending", "expired")

    # the owner still writes the case
    update = ev.CaseUpdate(agency_id=iom, agency_case_ref=iom_ref, needs=[_need("n1", JOBS)])
    await publish_events(kafka, [_submission(iom, iom_ref, ev.CASE_UPDATE_SUBMITTED, update)])
    accepted = await _inbox(
        kafka, iom, ev.INBOX_SUBMISSION_ACCEPTED, {"case_id": case_id, "outcome": "updated"}
    )
    assert accepted


async def test_a_handover_of_a_case_the_sender_does_not_own_is_refused(
    services: dict[str, RunningService], kafka: KafkaConnection
) -> None:
    area = f.unique_area()
    iom = await _agency(kafka, "iom", ev.AgencyType.UN_AGENCY)
    other = await _agency(kafka, "ngo", ev.AgencyType.NGO)
    case_id, _ = await _registered_case(kafka, iom, area, [COUNSELLING])
    proposal = ev.HandoverProposal(
        case_id=case_id,
        agency_id=other,
        to_agency_id=other,
        reason=ev.HandoverReason.OTHER,
        respond_by=datetime.now(UTC) + timedelta(days=1),
    )
    sent = _response(other, case_id, ev.HANDOVER_PROPOSAL_SUBMITTED, proposal)
    await publish_events(kafka, [sent])
    [refused] = await _inbox(kafka, other, ev.INBOX_HANDOVER_REFUSED, {"message_id": sent.event_id})
    assert refused["error"] == "not_owner"
