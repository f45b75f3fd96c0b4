"""Caseworker control end to end on the real broker and databases (issue 18, decision 19).

The pathway: IOM registers a case whose need is held for its choice → IOM hears the ranked
alternatives (three NGOs) → it excludes the best one's agency → lists again (two left) → chooses
the second-ranked → that NGO receives the referral and its sealed contact details → IOM revokes
it → the NGO hears the cancellation with the erase flag, IOM the status change → the NGO confirms
it erased what it received, and IOM hears it. Bad input on the real broker: a choice
of an unknown service, a revoke of a referral the sender did not make, a revoke of a completed
referral — each refused in the sender's inbox, nothing changed."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from nacl.public import PrivateKey

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.messages import instruction_message
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from tests import factories as f
from tests.e2e.conftest import RunningService
from tests.e2e.kafka_helpers import (
    absent_before_sentinel,
    data_of,
    headers_of,
    provoke_rejection,
    subject_is,
)
from tests.e2e.personal_data import PERSONAL
from tests.e2e.test_consent import _confirmation
from tests.e2e.test_continuity import _agency, _answer, _inbox

pytestmark = pytest.mark.e2e

SERVICE_ENV = {"REFERRAL_TIMER_INTERVAL_S": "0.5"}

TRACING = "social.family_tracing"  # no other e2e test lists it


async def _instruct(kafka: KafkaConnection, agency: str, case_id: str, **body: Any) -> str:
    """A referrer instruction on the agency's responses topic; its ce_id."""
    instruction = ev.ReferrerInstruction.model_validate(
        {"case_id": case_id, "agency_id": agency, **body}
    )
    message = instruction_message(instruction)
    await publish_events(kafka, [message])
    return message.event_id


async def test_a_referrer_excludes_chooses_the_second_alternative_and_revokes_it(
    services: dict[str, RunningService], kafka: KafkaConnection
) -> None:
    area = f.unique_area()
    iom = await _agency(kafka, "iom", ev.AgencyType.UN_AGENCY)
    # NGO c has a key: the returnee's contact details are sealed to it with its referral.
    c_key = base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()
    ngos = [
        await _agency(kafka, f"ngo{n}", ev.AgencyType.NGO, key)
        for n, key in (("a", None), ("b", None), ("c", c_key))
    ]
    # Ranked by matching's score: a (capacity, the returnee's language) > b (a waitlist) >
    # c (no shared language).
    listings = [
        f.listing(ngos[0], categories=[TRACING], service_areas=[area], languages=["fr"]),
        f.listing(
            ngos[1],
            categories=[TRACING],
            service_areas=[area],
            languages=["fr"],
            capacity={"status": "waitlist"},
        ),
        f.listing(ngos[2], categories=[TRACING], service_areas=[area], languages=["en"]),
    ]
    await publish_events(kafka, [f.listing_event(listing) for listing in listings])
    for ngo, listing in zip(ngos, listings, strict=True):
        await _inbox(kafka, ngo, ev.INBOX_LISTING_PUBLISHED, {"service_id": listing.service_id})
    services_ids = [listing.service_id for listing in listings]

    # IOM registers a case whose need waits for its choice: not routed, the alternatives come
    ref = f.unique("CASE")
    submission = f.submission(
        iom,
        agency_case_ref=ref,
        personal=PERSONAL,
        profile=f.profile(return_country="SN", return_area=area),
        needs=[{"need_id": "n1", "category": TRACING, "hold_for_referrer": True}],
    )
    await publish_events(kafka, [f.submission_event(submission)])
    [accepted] = await _inbox(kafka, iom, ev.INBOX_SUBMISSION_ACCEPTED, {"agency_case_ref": ref})
    case_id = accepted["case_id"]
    [held] = await _inbox(kafka, iom, ev.INBOX_ALTERNATIVES_LISTED, {"case_id": case_id})
    assert held["held"] is True and "instruction_id" not in held
    assert [a["service_id"] for a in held["alternatives"]] == services_ids
    assert [a["rank"] for a in held["alternatives"]] == [1, 2, 3]
    assert held["alternatives"][0]["explanation"]["components"]["language_overlap"] == 1.0

    # it excludes the best one's agency, and lists again: two left, best first
    excluded = await _instruct(
        kafka, iom, case_id, action="exclude", need_id="n1", exclude_agency_ids=[ngos[0]]
    )
    [applied] = await _inbox(kafka, iom, ev.INBOX_INSTRUCTION_APPLIED, {"instruction_id": excluded})
    assert applied["excluded_agency_ids"] == [ngos[0]]
    listed_id = await _instruct(kafka, iom, case_id, action="list_alternatives", need_id="n1", k=5)
    [listed] = await _inbox(kafka, iom, ev.INBOX_ALTERNATIVES_LISTED, {"instruction_id": listed_id})
    assert [a["service_id"] for a in listed["alternatives"]] == services_ids[1:]
    assert listed["held"] is True

    # bad input: a choice of a service no listing has is refused, nothing referred
    unknown = await _instruct(
        kafka, iom, case_id, action="choose", need_id="n1", service_id="no-such-service"
    )
    [refused] = await _inbox(kafka, iom, ev.INBOX_INSTRUCTION_REFUSED, {"instruction_id": unknown})
    assert (refused["error"], refused["errors"][0]["field"]) == ("unknown_service", "service_id")

    # it chooses the second-ranked alternative: that NGO receives the referral
    second = listed["alternatives"][1]
    chosen = await _instruct(
        kafka, iom, case_id, action="choose", need_id="n1", service_id=second["service_id"]
    )
    [applied] = await _inbox(kafka, iom, ev.INBOX_INSTRUCTION_APPLIED, {"instruction_id": chosen})
    [referral] = await _inbox(
        kafka, ngos[2], ev.INBOX_REFERRAL_RECEIVED, {"referral_id": applied["referral_id"]}
    )
    assert (referral["case_id"], referral["service_id"]) == (case_id, services_ids[2])
    await _inbox(
        kafka, ngos[2], ev.INBOX_DISCLOSURE_RECEIVED, {"referral_id": referral["referral_id"]}
    )

    # bad input: another agency (the recipient) revokes a referral it did not make
    intruder = await _instruct(
        kafka, ngos[2], case_id, action="revoke", referral_id=referral["referral_id"]
    )
    [refused] = await _inbox(
        kafka, ngos[2], ev.INBOX_INSTRUCTION_REFUSED, {"instruction_id": intruder}
    )
    assert refused["error"] == "not_referring_agency"

    # IOM revokes it: the NGO is told to stop and erase, IOM hears the status change
    revoked = await _instruct(
        kafka, iom, case_id, action="revoke", referral_id=referral["referral_id"],
        reason_code="returnee_declined",
    )  # fmt: skip
    await _inbox(kafka, iom, ev.INBOX_INSTRUCTION_APPLIED, {"instruction_id": revoked})
    [cancelled] = await _inbox(
        kafka, ngos[2], ev.INBOX_REFERRAL_CANCELLED, {"referral_id": referral["referral_id"]}
    )
    assert (cancelled["erase_received_data"], cancelled["cancelled_by"]) == (True, "requester")
    assert cancelled["reason_code"] == "returnee_declined"
    await _inbox(
        kafka,
        iom,
        ev.INBOX_STATUS_CHANGED,
        {"referral_id": referral["referral_id"], "to_state": "cancelled"},
    )
    # the NGO confirms it erased what it received: recorded, and IOM (the owner) hears it
    confirmation = _confirmation(ngos[2], referral["referral_id"])
    await publish_events(kafka, [confirmation])
    await _inbox(
        kafka,
        ngos[2],
        ev.INBOX_ERASURE_CONFIRMATION_RECORDED,
        {"submission_id": confirmation.event_id},
    )
    [heard] = await _inbox(
        kafka, iom, ev.INBOX_DISCLOSURE_ERASED, {"referral_id": referral["referral_id"]}
    )
    assert (heard["recipient_agency_id"], heard["case_id"]) == (ngos[2], case_id)

    # after the end, IOM chooses the other one; it completes; a revoke then is refused
    again = await _instruct(
        kafka, iom, case_id, action="choose", need_id="n1", service_id=services_ids[1]
    )
    [applied] = await _inbox(kafka, iom, ev.INBOX_INSTRUCTION_APPLIED, {"instruction_id": again})
    assert applied["previous_referral_id"] == referral["referral_id"]
    [second_referral] = await _inbox(
        kafka, ngos[1], ev.INBOX_REFERRAL_RECEIVED, {"referral_id": applied["referral_id"]}
    )
    await _answer(kafka, ngos[1], second_referral, "accept")
    await _answer(kafka, ngos[1], second_referral, "complete", outcome="achieved")
    await _inbox(
        kafka,
        iom,
        ev.INBOX_STATUS_CHANGED,
        {"referral_id": second_referral["referral_id"], "to_state": "completed"},
    )
    late = await _instruct(
        kafka, iom, case_id, action="revoke", referral_id=second_referral["referral_id"]
    )
    [refused] = await _inbox(kafka, iom, ev.INBOX_INSTRUCTION_REFUSED, {"instruction_id": late})
    assert (refused["error"], refused["current_state"]) == ("referral_ended", "completed")
    # the excluded agency never received a referral of the case (read past a sentinel)
    sentinel = await provoke_rejection(kafka, ngos[0])
    await absent_before_sentinel(
        kafka,
        topics.agency_inbox(ngos[0]),
        lambda r: (
            headers_of(r).get("ce_type") == ev.INBOX_REFERRAL_RECEIVED
            and data_of(r).get("case_id") == case_id
        ),
        subject_is(sentinel),
    )


async def test_an_invalid_instruction_is_refused_with_its_fields(
    services: dict[str, RunningService], kafka: KafkaConnection
) -> None:
    iom = await _agency(kafka, "iom", ev.AgencyType.UN_AGENCY)
    valid = instruction_message(
        ev.ReferrerInstruction(
            case_id="c-1",
            agency_id=iom,
            action=ev.InstructionAction.REVOKE,
            referral_id="r-1",
        )
    )
    bad = type(valid)(valid.topic, valid.key, valid.headers, b'{"case_id": "c-1", "agency_id": "'
                      + iom.encode() + b'", "action": "revoke"}')  # fmt: skip
    await publish_events(kafka, [bad])
    [refused] = await _inbox(
        kafka, iom, ev.INBOX_INSTRUCTION_REFUSED, {"instruction_id": valid.event_id}
    )
    assert refused["error"] == "invalid_instruction"
    assert any("referral_id" in e["message"] for e in refused["errors"])
