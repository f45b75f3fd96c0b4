"""Every message an agency writes is answered on its own inbox, under the key the guide documents
for that event type (docs/integrators.md §7), on the real broker with the three services:
accepted and rejected submissions, published, rejected and withdrawn listings, applied and
refused responses (an answer proves the record was not dead-lettered instead)."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import OutgoingEvent
from shared.contracts.messages import agency_source, response_message
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from tests import factories as f
from tests.e2e.conftest import RunningService
from tests.e2e.kafka_helpers import (
    collect,
    data_of,
    headers_of,
    provoke_rejection,
    read_past_sentinel,
    register_agency_access,
    subject_is,
)

pytestmark = pytest.mark.e2e

GUIDE = (Path(__file__).resolve().parents[2] / "docs" / "integrators.md").read_text()


def documented_key_fields() -> dict[str, list[str]]:
    """ce_type → the payload fields its inbox key is made of, read from the guide's table."""
    section = GUIDE.split("## 7. Following your inbox", 1)[1].split("### ", 1)[0]
    rows = re.findall(
        r"^\| `(org\.referralexchange\.[^`]+)` \|.*\| `([^`]+)`[^|]*\|$", section, re.M
    )
    assert len(rows) >= 15, rows
    return {ce_type: re.findall(r"[a-z_]+", key) for ce_type, key in rows}


def _documented_key(ce_type: str, data: dict[str, Any]) -> str:
    return ":".join(str(data[field]) for field in documented_key_fields()[ce_type])


async def _agency(kafka: KafkaConnection, prefix: str) -> KafkaConnection:
    agency_id = f.unique(prefix)
    own = await register_agency_access(kafka, agency_id)
    await publish_events(kafka, [f.agency_event(f.agency(agency_id))])
    return own


def _raw(topic: str, key: str, ce_type: str, body: bytes, agency: str) -> OutgoingEvent:
    headers = {
        "ce_specversion": "1.0",
        "ce_id": str(uuid.uuid4()),
        "ce_source": agency_source(agency),
        "ce_type": ce_type,
        "content-type": "application/json",
    }
    return OutgoingEvent(topic=topic, key=key, headers=headers, body=body)


async def _tombstone(connection: KafkaConnection, topic: str, key: str) -> str:
    """A tombstone as the agency sends it; its position is its id in the answer."""
    producer = AIOKafkaProducer(**connection.client_kwargs(), acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, None, key=key.encode())
    finally:
        await producer.stop()
    return f"{topic}/{sent.partition}/{sent.offset}"


async def _inbox(
    kafka: KafkaConnection, agency: str, ce_type: str, subject: str, timeout: float = 45
) -> dict[str, Any]:
    """The one inbox event of this type about ``subject``, checked to carry the documented key."""
    [record] = await collect(
        kafka,
        topics.agency_inbox(agency),
        lambda r: (
            headers_of(r).get("ce_type") == ce_type and headers_of(r).get("ce_subject") == subject
        ),
        timeout=timeout,
    )
    data: dict[str, Any] = data_of(record)
    ev.PAYLOADS[ce_type].model_validate(data)
    assert record.key is not None and record.key.decode() == _documented_key(ce_type, data)
    assert headers_of(record)["ce_subject"] == record.key.decode()
    return data


async def test_every_agency_message_is_answered_under_its_documented_key(
    services: dict[str, RunningService], kafka: KafkaConnection
) -> None:
    referrer_kafka, provider_kafka = await _agency(kafka, "iom"), await _agency(kafka, "ngo")
    referrer = str(referrer_kafka.username).removeprefix("agency.")
    provider = str(provider_kafka.username).removeprefix("agency.")
    area = f.unique_area("BF")  # a country of its own: the evidence test counts per country
    listings = topics.AGENCY_LISTINGS.name(provider)

    # Listings: one published, one invalid, one tombstone for a service nobody lists.
    listing = f.listing(provider, service_areas=[area])
    published = f.listing_event(listing)
    invalid = json.loads(published.body)
    invalid["categories"] = ["housing"]
    bad_listing = _raw(
        listings, listing.service_id, ev.SERVICE_LISTED, json.dumps(invalid).encode(), provider
    )
    await publish_events(provider_kafka, [published, bad_listing])
    stray = await _tombstone(provider_kafka, listings, f.unique("svc"))

    answer = await _inbox(kafka, provider, ev.INBOX_LISTING_PUBLISHED, listing.service_id)
    assert answer == {
        "schema_version": "1",
        "submission_id": published.event_id,
        "agency_id": provider,
        "service_id": listing.service_id,
        "status": "active",
    }
    rejected = await _inbox(kafka, provider, ev.INBOX_LISTING_REJECTED, bad_listing.event_id)
    assert rejected["submission_id"] == bad_listing.event_id and rejected["topic"] == listings
    assert [e["field"] for e in rejected["errors"]] == ["categories.0"]
    assert "social.housing" in rejected["errors"][0]["message"]
    unknown = await _inbox(kafka, provider, ev.INBOX_LISTING_REJECTED, stray)
    assert unknown["errors"] == [
        {"field": "(key)", "message": "no listing of this agency has this service_id"}
    ]

    # Submissions: one accepted (it is referred to the listing), one rejected.
    submission = f.submission(
        referrer, profile=f.profile(return_country=area[:2], return_area=area)
    )
    sent = f.submission_event(submission)
    bad_body = json.loads(sent.body)
    bad_body["needs"][0]["category"] = "housing"
    bad_submission = _raw(
        sent.topic, sent.key, ev.CASE_SUBMITTED, json.dumps(bad_body).encode(), referrer
    )
    await publish_events(referrer_kafka, [sent, bad_submission])
    accepted = await _inbox(kafka, referrer, ev.INBOX_SUBMISSION_ACCEPTED, sent.event_id)
    assert (accepted["outcome"], accepted["agency_case_ref"]) == (
        "registered",
        submission.agency_case_ref,
    )
    refused = await _inbox(kafka, referrer, ev.INBOX_SUBMISSION_REJECTED, bad_submission.event_id)
    assert [e["field"] for e in refused["errors"]] == ["needs.0.category"]

    # The referral names the case id the acknowledgement gave.
    [received_record] = await collect(
        kafka,
        topics.agency_inbox(provider),
        lambda r: (
            headers_of(r).get("ce_type") == ev.INBOX_REFERRAL_RECEIVED
            and data_of(r).get("case_id") == accepted["case_id"]
        ),
    )
    referral = data_of(received_record)
    await _inbox(kafka, provider, ev.INBOX_REFERRAL_RECEIVED, referral["referral_id"])

    # Responses: one applied, one invalid, one about a referral that does not exist.
    accept = response_message(
        ev.ReferralResponse(
            referral_id=referral["referral_id"],
            agency_id=provider,
            action=ev.ResponseAction.ACCEPT,
            responded_at=datetime.now(UTC),
        ),
        referral["case_id"],
    )
    responses = topics.AGENCY_RESPONSES.name(provider)
    no_reason = _raw(
        responses,
        referral["case_id"],
        ev.RESPONSE_SUBMITTED,
        json.dumps(
            {
                "referral_id": referral["referral_id"],
                "agency_id": provider,
                "action": "reject",
                "responded_at": datetime.now(UTC).isoformat(),
            }
        ).encode(),
        provider,
    )
    ghost = response_message(
        ev.ReferralResponse(
            referral_id=str(uuid.uuid4()),
            agency_id=provider,
            action=ev.ResponseAction.ACCEPT,
            responded_at=datetime.now(UTC),
        ),
        referral["case_id"],
    )
    await publish_events(provider_kafka, [accept, no_reason, ghost])
    applied = await _inbox(kafka, provider, ev.INBOX_RESPONSE_APPLIED, referral["referral_id"])
    assert (applied["response_id"], applied["from_state"], applied["to_state"]) == (
        accept.event_id,
        "requested",
        "accepted",
    )
    invalid_answer = await _inbox(kafka, provider, ev.INBOX_RESPONSE_REFUSED, no_reason.event_id)
    assert invalid_answer["error"] == "invalid_response"
    assert invalid_answer["errors"] and "reason_code" in invalid_answer["errors"][0]["message"]
    unknown_answer = await _inbox(kafka, provider, ev.INBOX_RESPONSE_REFUSED, ghost.event_id)
    assert (unknown_answer["error"], unknown_answer["reason"]) == (
        "unknown_referral",
        "no referral has this referral_id",
    )
    changed = await _inbox(kafka, referrer, ev.INBOX_STATUS_CHANGED, referral["referral_id"])
    assert changed["to_state"] == "accepted"

    # The withdrawal of the listing is answered too.
    withdrawal = await _tombstone(provider_kafka, listings, listing.service_id)
    [gone] = await collect(
        kafka,
        topics.agency_inbox(provider),
        lambda r: headers_of(r).get("ce_type") == ev.INBOX_LISTING_WITHDRAWN,
    )
    assert data_of(gone)["submission_id"] == withdrawal
    await _inbox(kafka, provider, ev.INBOX_LISTING_WITHDRAWN, listing.service_id)

    # Each answer exactly once: every one above is already in its inbox, so a second copy would
    # be queued before an answer provoked now, the sentinel up to which both inboxes are read.
    answered = {
        provider: [
            (ev.INBOX_LISTING_PUBLISHED, listing.service_id),
            (ev.INBOX_LISTING_REJECTED, bad_listing.event_id),
            (ev.INBOX_LISTING_REJECTED, stray),
            (ev.INBOX_REFERRAL_RECEIVED, referral["referral_id"]),
            (ev.INBOX_RESPONSE_APPLIED, referral["referral_id"]),
            (ev.INBOX_RESPONSE_REFUSED, no_reason.event_id),
            (ev.INBOX_RESPONSE_REFUSED, ghost.event_id),
            (ev.INBOX_LISTING_WITHDRAWN, listing.service_id),
        ],
        referrer: [
            (ev.INBOX_SUBMISSION_ACCEPTED, sent.event_id),
            (ev.INBOX_SUBMISSION_REJECTED, bad_submission.event_id),
            (ev.INBOX_STATUS_CHANGED + ":accepted", referral["referral_id"]),
        ],
    }
    for agency, expected in answered.items():
        sentinel = await provoke_rejection(kafka, agency)
        inbox = await read_past_sentinel(kafka, topics.agency_inbox(agency), subject_is(sentinel))
        seen = Counter(
            (
                headers_of(r)["ce_type"]
                + (
                    f":{data_of(r)['to_state']}"
                    if headers_of(r)["ce_type"] == ev.INBOX_STATUS_CHANGED
                    else ""
                ),
                headers_of(r)["ce_subject"],
            )
            for r in inbox
        )
        assert {answer: seen[answer] for answer in expected} == dict.fromkeys(expected, 1)
