"""Personal data off the broker, end to end (issue 22, decision 32), with intake in the mode a
production platform may choose: the personal block must be sealed, and what intake applied is
trimmed from the submissions topics every second.

- intake's current key is on intake.keys.v1, read with an agency's own credentials;
- a sealed submission reaches the provider's inbox as a clear one would: the disclosure opens,
  with the provider's key, to the personal data the referrer sealed for intake;
- a clear block is refused (personal_not_sealed), and so is every box intake cannot use, each
  with its code, nothing registered;
- what intake applied leaves the broker: the agency's submissions partitions are trimmed to
  their end, so after an erasure request nothing of the case is left on any submissions topic,
  sealed or not; no marked personal data is on any topic at all."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from nacl.public import PrivateKey, SealedBox

from services.intake.sealing import SubmissionKeys
from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import OutgoingEvent, build_event
from shared.contracts.messages import agency_source
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from shared.keys import key_from_environment
from tests import factories as f
from tests.e2e.conftest import RunningService
from tests.e2e.directory import eventually
from tests.e2e.kafka_helpers import (
    collect,
    data_of,
    headers_of,
    read_everything,
    register_agency_access,
)
from tests.e2e.personal_data import PERSONAL, leaks_in

pytestmark = pytest.mark.e2e

SERVICE_ENV = {"INTAKE_REQUIRE_SEALED_PERSONAL": "true", "INTAKE_TRIM_INTERVAL_S": "1"}
# The agencies this module registered: the last test scans their topics.
AGENCIES: list[str] = []


async def register(kafka: KafkaConnection, agency_id: str) -> KafkaConnection:
    AGENCIES.append(agency_id)
    return await register_agency_access(kafka, agency_id)


def _intake_key() -> tuple[bytes, str]:
    """The public key and key_sha256 of the key the test environment gives intake."""
    keys = SubmissionKeys.of(key_from_environment("INTAKE_SUBMISSION_KEY"))
    [current] = keys.published()
    return base64.b64decode(current.public_key), current.key_sha256


def _by_correlation(event: OutgoingEvent) -> Any:
    return lambda r: headers_of(r).get("ce_correlationid") == event.event_id


async def _agencies(
    kafka: KafkaConnection, urls: dict[str, str]
) -> tuple[str, str, PrivateKey, str]:
    """(referrer, provider, the provider's private key, the area it serves): registered as an
    operator does, the provider with a public key and a listing, once the services know them."""
    referrer, provider = f.unique("iom"), f.unique("ngo")
    key = PrivateKey.generate()
    listing = f.listing(provider, service_areas=[f.unique_area()])
    for agency_id in (referrer, provider):
        await register(kafka, agency_id)
    public = base64.b64encode(bytes(key.public_key)).decode()
    await publish_events(
        kafka,
        [
            f.agency_event(f.agency(referrer, ev.AgencyType.UN_AGENCY)),
            f.agency_event(f.agency(provider).model_copy(update={"public_key": public})),
            f.listing_event(listing),
        ],
    )
    known = "SELECT count(*) = 2 FROM agencies WHERE agency_id IN ($1, $2)"
    for service in ("intake", "notification"):
        assert await eventually(known, referrer, provider, dsn=urls[service]), service
    listed = "SELECT 1 FROM listings WHERE service_id = $1"
    assert await eventually(listed, listing.service_id, dsn=urls["referral"])
    return referrer, provider, key, listing.service_areas[0]


def _sealed_submission(agency: str, area: str, personal: Any) -> ev.CaseSubmission:
    return f.submission(agency, personal=personal, profile=f.profile(return_area=area))


async def _answer(kafka: KafkaConnection, agency: str, sent: OutgoingEvent) -> Any:
    """The agency's inbox answer to one of its messages (accepted or rejected)."""
    [answer] = await collect(
        kafka,
        topics.agency_inbox(agency),
        lambda r: (
            headers_of(r).get("ce_subject") == sent.event_id
            and headers_of(r).get("ce_type")
            in (ev.INBOX_SUBMISSION_ACCEPTED, ev.INBOX_SUBMISSION_REJECTED)
        ),
    )
    return answer


async def test_intake_s_current_key_is_on_intake_keys_for_every_agency(
    services: dict[str, RunningService], kafka: KafkaConnection
) -> None:
    public, sha = _intake_key()
    as_agency = await register(kafka, f.unique("ngo"))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:  # published at intake's start, through its outbox
        ours = [
            data_of(r)
            for r in await read_everything(as_agency, [topics.INTAKE_KEYS])
            if headers_of(r).get("ce_type") == ev.SUBMISSION_KEY_PUBLISHED
            and data_of(r)["key_sha256"] == sha
        ]
        if ours or loop.time() > deadline:
            break
        await asyncio.sleep(0.5)
    assert ours and ours[-1]["status"] == "current"
    assert base64.b64decode(ours[-1]["public_key"]) == public


async def test_a_sealed_submission_reaches_the_provider_as_a_clear_one_would(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    referrer, provider, provider_key, area = await _agencies(kafka, database_urls)
    public, _ = _intake_key()
    submission = _sealed_submission(referrer, area, f.sealed_personal(PERSONAL, public))
    sent = f.submission_event(submission)
    await publish_events(kafka, [sent])

    answer = await _answer(kafka, referrer, sent)
    assert headers_of(answer)["ce_type"] == ev.INBOX_SUBMISSION_ACCEPTED
    assert data_of(answer)["outcome"] == "registered"
    [received] = await collect(
        kafka,
        topics.agency_inbox(provider),
        lambda r: (
            headers_of(r).get("ce_type") == ev.INBOX_DISCLOSURE_RECEIVED
            and _by_correlation(sent)(r)
        ),
        timeout=60,
    )
    contact = json.loads(
        SealedBox(provider_key).decrypt(base64.b64decode(data_of(received)["sealed_box"]))
    )
    assert (contact["given_name"], contact["family_name"]) == (
        PERSONAL["given_name"],
        PERSONAL["family_name"],
    )
    assert [c["value"] for c in contact["contacts"]] == [c["value"] for c in PERSONAL["contacts"]]


def _message(agency: str, ref: str, type_: str, body: dict[str, Any]) -> OutgoingEvent:
    """A message with a body as given (a box intake cannot use would not pass the factories)."""
    return build_event(
        topic=topics.AGENCY_SUBMISSIONS.name(agency),
        key=ref,
        type_=type_,
        source=agency_source(agency),
        data=ev.CaseSubmission.model_validate(body),
        agency_id=agency,
    )


async def test_a_block_intake_cannot_use_is_refused_with_its_reason(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    referrer = f.unique("iom")
    await register(kafka, referrer)
    public, _ = _intake_key()
    good = f.sealed_personal(PERSONAL, public)
    box = bytearray(base64.b64decode(good["sealed_box"]))
    box[40] ^= 1
    blocks = {
        "personal_not_sealed": PERSONAL,
        "sealed_key_unknown": f.sealed_personal(PERSONAL, bytes(PrivateKey.generate().public_key)),
        "sealed_box_unopenable": {**good, "sealed_box": base64.b64encode(box).decode()},
        "sealed_personal_invalid": f.sealed_personal({"given_name": "Zqmark"}, public),
    }
    sent = {}
    for code, block in blocks.items():
        body = _sealed_submission(referrer, f.unique_area(), PERSONAL).model_dump(mode="json")
        sent[code] = _message(
            referrer, body["agency_case_ref"], ev.CASE_SUBMITTED, {**body, "personal": block}
        )
    await publish_events(kafka, list(sent.values()))

    for code, event in sent.items():
        answer = await _answer(kafka, referrer, event)
        assert headers_of(answer)["ce_type"] == ev.INBOX_SUBMISSION_REJECTED, code
        rejected = data_of(answer)
        assert rejected["error"] == code
        assert rejected["errors"] and all(
            e["field"].startswith("personal") for e in rejected["errors"]
        )
        assert leaks_in(json.dumps(rejected).encode()) == []
    # nothing of them was registered: each refusal was committed with what it decided
    conn = await asyncpg.connect(database_urls["intake"])
    try:
        assert await conn.fetchval("SELECT count(*) FROM cases WHERE agency_id = $1", referrer) == 0
    finally:
        await conn.close()


async def _starts_and_ends(
    kafka: KafkaConnection, topic: str
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    partitions = [TopicPartition(topic, p) for p in range(topics.spec(topic).partitions)]
    consumer = AIOKafkaConsumer(**kafka.client_kwargs())
    await consumer.start()
    try:
        return (
            dict(await consumer.beginning_offsets(partitions)),
            dict(await consumer.end_offsets(partitions)),
        )
    finally:
        await consumer.stop()


async def _trimmed_to_the_end(
    kafka: KafkaConnection, topic: str, timeout: float = 30
) -> dict[TopicPartition, int]:
    """The topic's end offsets, once each partition starts where it ends (all of it trimmed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        starts, ends = await _starts_and_ends(kafka, topic)
        if starts == ends:
            return ends
        assert loop.time() < deadline, (topic, starts, ends)
        await asyncio.sleep(0.5)


async def test_an_erasure_leaves_nothing_of_the_case_on_the_broker(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    referrer = f.unique("iom")
    await register(kafka, referrer)
    public, _ = _intake_key()
    submission = _sealed_submission(referrer, f.unique_area(), f.sealed_personal(PERSONAL, public))
    sent = f.submission_event(submission)
    await publish_events(kafka, [sent])
    assert headers_of(await _answer(kafka, referrer, sent))["ce_type"] == (
        ev.INBOX_SUBMISSION_ACCEPTED
    )
    erasure = build_event(
        topic=topics.AGENCY_SUBMISSIONS.name(referrer),
        key=submission.agency_case_ref,
        type_=ev.ERASURE_REQUESTED,
        source=agency_source(referrer),
        data=ev.ErasureRequest(
            agency_id=referrer,
            agency_case_ref=submission.agency_case_ref,
            requested_at="2026-11-21T10:00:00Z",  # type: ignore[arg-type]
            basis="data_subject_request",
        ),
        agency_id=referrer,
    )
    await publish_events(kafka, [erasure])
    assert data_of(await _answer(kafka, referrer, erasure))["outcome"] == "erased"

    # Applied and committed, then trimmed within a trim interval (1 s here): the partitions
    # start where they end, and nothing is left to read.
    submissions = topics.AGENCY_SUBMISSIONS.name(referrer)
    ends = await _trimmed_to_the_end(kafka, submissions)
    assert sum(ends.values()) == 2  # both records were written, and both are gone
    assert await read_everything(kafka, [submissions]) == []
    assert (
        await eventually(
            "SELECT count(*) FROM inbox WHERE event_id = ANY($1::text[])",
            [sent.event_id, erasure.event_id],
            dsn=database_urls["intake"],
        )
        == 2
    )


async def test_no_marked_personal_data_is_left_on_any_topic(
    services: dict[str, RunningService], kafka: KafkaConnection
) -> None:
    """Runs last in this module: every submission above carried the marked personal data,
    sealed or (refused) in clear. Once trimmed, none of it is readable on the broker: not on
    the agencies' own topics, submissions included, nor on any topic of the catalogue."""
    for agency in AGENCIES:
        await _trimmed_to_the_end(kafka, topics.AGENCY_SUBMISSIONS.name(agency))
    names = [t.name for t in topics.CATALOGUE]
    names += [spec.name for agency in AGENCIES for spec in topics.agency_topics(agency)]
    records = await read_everything(kafka, names)
    assert any(r.topic == topics.INTAKE_KEYS for r in records)
    assert any(r.topic == topics.agency_inbox(a) for r in records for a in AGENCIES)
    leaks = [
        f"{r.topic}: {m}"
        for r in records
        for m in leaks_in(b"\n".join([r.key or b"", r.value or b""]))
    ]
    assert leaks == []
