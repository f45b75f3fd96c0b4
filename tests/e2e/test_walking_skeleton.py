"""End to end through the three service processes on the real broker and databases:
submission → intake (case event via outbox) → referral (match) → notification (agency inbox)."""

from __future__ import annotations

import json
import signal
import urllib.request

import pytest
from aiokafka.partitioner import DefaultPartitioner

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import OutgoingEvent
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from tests import factories as f
from tests.e2e.conftest import RunningService
from tests.e2e.directory import directory, eventually
from tests.e2e.kafka_helpers import (
    collect,
    data_of,
    headers_of,
    read_past_sentinel,
    subject_is,
)
from tests.e2e.personal_data import PERSONAL, leaks_in

pytestmark = pytest.mark.e2e

# Ids of the messages this module sent, by the service that logs them at the default level (as
# correlation ids of JSON lines): the log test requires every one of them in that service's log.
SUBMITTED: list[str] = []  # intake stores or refuses them, notification answers the agency
LISTED: list[str] = []  # referral stores the listing


def _submission(agency_id: str, **overrides: object) -> ev.CaseSubmission:
    return f.submission(agency_id, personal=PERSONAL, **overrides)


def _submission_event(submission: ev.CaseSubmission) -> OutgoingEvent:
    sent = f.submission_event(submission)
    SUBMITTED.append(sent.event_id)
    return sent


_eventually = eventually


async def _directory(
    kafka: KafkaConnection, urls: dict[str, str]
) -> tuple[str, str, ev.ServiceListing]:
    return await directory(kafka, urls, LISTED)


async def test_submission_reaches_the_recipient_agency_inbox(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    referrer, provider, listing = await _directory(kafka, database_urls)
    submission = _submission(referrer, profile=f.profile(return_area=listing.service_areas[0]))
    sent = _submission_event(submission)
    await publish_events(kafka, [sent])

    inbox = await collect(
        kafka,
        topics.agency_inbox(provider),
        lambda r: headers_of(r).get("ce_correlationid") == sent.event_id,
    )
    assert len(inbox) == 1
    headers, data = headers_of(inbox[0]), data_of(inbox[0])
    assert headers["ce_type"] == ev.INBOX_REFERRAL_RECEIVED
    assert headers["ce_specversion"] == "1.0" and headers["content-type"] == "application/json"
    assert data["service_id"] == listing.service_id
    assert data["referring_agency_id"] == referrer
    assert inbox[0].key.decode() == data["referral_id"]  # keyed per referral

    # the pseudonymous case event, and nothing personal on it
    # (owners told of a likely duplicate of PERSONAL, registered by other tests too: not here)
    cases = await collect(
        kafka,
        topics.INTAKE_CASES,
        lambda r: (
            headers_of(r).get("ce_correlationid") == sent.event_id
            and headers_of(r).get("ce_type") != ev.POSSIBLE_DUPLICATE_FOUND
        ),
        expected=2,
    )
    # the case, and the answer to the agency that ties its reference to the case id
    assert [headers_of(r)["ce_type"] for r in cases] == [ev.CASE_REGISTERED, ev.SUBMISSION_ACCEPTED]
    assert {r.key.decode() for r in cases} == {data["case_id"]}
    for r in cases:
        assert leaks_in(r.value) == []
        assert b"personal" not in r.value

    # the causal chain: inbox event ← referral event ← case event ← submission
    referrals = await collect(
        kafka,
        topics.REFERRAL_EVENTS,
        lambda r: headers_of(r).get("ce_correlationid") == sent.event_id,
    )
    assert headers_of(referrals[0])["ce_causationid"] == headers_of(cases[0])["ce_id"]
    assert headers["ce_causationid"] == headers_of(referrals[0])["ce_id"]
    assert headers_of(cases[0])["ce_causationid"] == sent.event_id
    explanation = data_of(referrals[0])["explanation"]
    assert f"coverage:{listing.service_areas[0]}" in explanation["matched"]


def _ref_on_the_partition_of(sent: OutgoingEvent) -> str:
    """A new agency case reference (the key of its submission) that the producer's partitioner
    puts on the same partition as ``sent``: intake reads the two in order."""
    partitions = list(range(topics.spec(sent.topic).partitions))
    target = DefaultPartitioner()(sent.key.encode(), partitions, partitions)
    while True:
        ref = f.unique("case")
        if DefaultPartitioner()(ref.encode(), partitions, partitions) == target:
            return ref


async def test_redelivered_submission_changes_nothing(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    referrer, provider, listing = await _directory(kafka, database_urls)
    sent = _submission_event(
        _submission(referrer, profile=f.profile(return_area=listing.service_areas[0]))
    )
    await publish_events(kafka, [sent, sent])  # an agency retrying its send
    # Sentinels behind the copy on its partition (same key), written after it: a valid
    # submission for the same provider, whose referral-received proves the provider's inbox is
    # read past anything the copy could have caused; then an invalid one, whose rejection
    # proves intake has read past both before the cases are counted.
    invalid = f.submission_event(f.submission(referrer))
    body = json.loads(invalid.body)
    del body["consent"]
    follower = _submission_event(
        _submission(referrer, profile=f.profile(return_area=listing.service_areas[0])).model_copy(
            update={"agency_case_ref": _ref_on_the_partition_of(sent)}
        )
    )
    await publish_events(
        kafka,
        [follower, type(sent)(sent.topic, sent.key, invalid.headers, json.dumps(body).encode())],
    )
    await read_past_sentinel(kafka, topics.agency_inbox(referrer), subject_is(invalid.event_id))
    cases = await _eventually(
        "SELECT count(*) FROM cases WHERE agency_id = $1", referrer, dsn=database_urls["intake"]
    )
    assert cases == 2, "the copy made no case: the original's and the follower's only"
    # ...and changed none: no history entry caused by the copy (an update would add one).
    history = await _eventually(
        "SELECT array_agg(action ORDER BY id) FROM case_history WHERE agency_id = $1",
        referrer,
        dsn=database_urls["intake"],
    )
    assert history == ["registered", "registered"], history
    inbox = await read_past_sentinel(
        kafka,
        topics.agency_inbox(provider),
        lambda r: headers_of(r).get("ce_correlationid") == follower.event_id,
    )
    copies = [r for r in inbox if headers_of(r).get("ce_correlationid") == sent.event_id]
    assert len(copies) == 1, "exactly one referral reached the provider"


async def test_unmatched_need_is_told_to_the_referring_agency(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    referrer, _, listing = await _directory(kafka, database_urls)
    nowhere = _submission_event(
        _submission(
            referrer, profile=f.profile(return_country="ML", return_area=f.unique_area("ML"))
        )
    )
    no_consent = _submission_event(
        _submission(
            referrer,
            profile=f.profile(return_area=listing.service_areas[0]),
            consent=f.consent(given=False, scope=None),
        )
    )
    await publish_events(kafka, [nowhere, no_consent])
    for sent, reason in ((nowhere, "no_listing"), (no_consent, "consent_scope")):
        inbox = await collect(
            kafka,
            topics.agency_inbox(referrer),
            lambda r, sent=sent: (
                headers_of(r).get("ce_correlationid") == sent.event_id
                # owners told of a likely duplicate of PERSONAL (other tests register it too)
                and headers_of(r).get("ce_type") != ev.INBOX_POSSIBLE_DUPLICATE
            ),
            expected=2,
        )
        # the acknowledgement of the submission, and the gap
        by_type = {headers_of(r)["ce_type"]: data_of(r) for r in inbox}
        assert len(inbox) == 2
        assert sorted(by_type) == [ev.INBOX_NEED_UNMATCHED, ev.INBOX_SUBMISSION_ACCEPTED]
        assert by_type[ev.INBOX_NEED_UNMATCHED]["need_id"] == "n1"
        assert by_type[ev.INBOX_NEED_UNMATCHED]["reason"] == reason


async def test_invalid_submission_is_rejected_back_to_the_sender(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    referrer, _, _ = await _directory(kafka, database_urls)
    sent = _submission_event(_submission(referrer))
    body = json.loads(sent.body)
    del body["consent"]
    body["profile"]["age_band"] = "ancient"
    bad = type(sent)(sent.topic, sent.key, sent.headers, json.dumps(body).encode())
    await publish_events(kafka, [bad])

    rejections = await collect(
        kafka,
        topics.INTAKE_REJECTIONS,
        lambda r: headers_of(r).get("ce_subject") == sent.event_id,
    )
    assert len(rejections) == 1
    fields = {e["field"] for e in data_of(rejections[0])["errors"]}
    assert {"consent", "profile.age_band"} <= fields
    inbox = await collect(
        kafka,
        topics.agency_inbox(referrer),
        lambda r: headers_of(r).get("ce_correlationid") == sent.event_id,
    )
    assert [headers_of(r)["ce_type"] for r in inbox] == [ev.INBOX_SUBMISSION_REJECTED]


def test_readiness_and_asyncapi_docs(services: dict[str, RunningService]) -> None:
    for service in services.values():
        with urllib.request.urlopen(service.url("/health/ready"), timeout=5) as resp:
            body = json.loads(resp.read())
        assert body == {
            "service": service.name,
            "ready": True,
            "checks": {"kafka": True, "database": True, "outbox_relay": True},
        }
    with urllib.request.urlopen(services["intake"].url("/docs/asyncapi.json"), timeout=5) as resp:
        schema = resp.read().decode()
    assert topics.AGENCY_SUBMISSIONS.regex.replace("\\", "\\\\") in schema


def test_logs_are_json_with_correlation_ids_and_no_personal_data(
    services: dict[str, RunningService],
) -> None:
    """Runs after the flows above, at the default log level: each log holds, as JSON lines, the
    messages its service processed (so an empty or unrelated log cannot pass the scan), and no
    marked personal data in any case."""
    expected = {"intake": SUBMITTED, "referral": LISTED, "notification": SUBMITTED}
    assert len(SUBMITTED) >= 5 and len(LISTED) >= 4, (SUBMITTED, LISTED)
    for service in services.values():
        records = []
        for line in service.log().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise AssertionError(
                    f"{service.name} wrote a non-JSON log line: {line[:200]}"
                ) from exc
        missing = set(expected[service.name]) - {r.get("correlation_id") for r in records}
        assert not missing, f"log of {service.name} lacks what it processed: {sorted(missing)}"
        assert leaks_in(service.log().encode()) == [], service.name


def test_sigterm_stops_every_service_cleanly(services: dict[str, RunningService]) -> None:
    for service in services.values():
        service.process.send_signal(signal.SIGTERM)
    for service in services.values():
        # uvicorn re-raises the signal once shut down, so "killed by SIGTERM" is the clean exit
        assert service.process.wait(timeout=40) in (0, -signal.SIGTERM), service.log()[-2000:]
        assert "service_stopped" in service.log()
        assert "Application shutdown complete" in service.log()
