"""Community needs end to end on the real broker and databases (issue 18, decision 17).

The pathway: a local authority reports a need of a community (no person named) → referral
refers it to the community programme of the area, not to the individual-only service of the
same category → the programme opens the sealed brief (description and counts) → accepts,
starts and completes it → the authority hears each step → the evidence shows it by level and
beneficiary type. Bad input on the real broker: personal fields, an unknown area or category,
no people affected — each refused in the sender's inbox with its fields, nothing stored."""

from __future__ import annotations

import asyncio
import base64
import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from nacl.public import PrivateKey, SealedBox
from typer.testing import CliRunner

from services.referral import cli
from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import OutgoingEvent, build_event
from shared.contracts.messages import agency_source
from shared.kafka.agency_messages import NO_PERSONAL_DATA
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from tests import factories as f
from tests.e2e.conftest import RunningService
from tests.e2e.kafka_helpers import (
    absent_before_sentinel,
    data_of,
    headers_of,
    provoke_rejection,
    read_everything,
    subject_is,
)
from tests.e2e.test_continuity import _agency, _answer
from tests.e2e.test_continuity import _inbox as _inbox_events

pytestmark = pytest.mark.e2e

TRAINING = "economic.vocational_training"
# Free text that must never reach a pseudonymous topic (it may name someone).
DESCRIPTION = "Forty young people of the quarter, among them Awa Ndiaye-7f3k, need training"


def _community_need(agency: str, ref: str, body: dict[str, Any]) -> OutgoingEvent:
    """A community-need-submitted as an agency's client sends it (the body as given, so that
    bad input can be sent too)."""
    sent = build_event(
        topic=topics.AGENCY_SUBMISSIONS.name(agency),
        key=ref,
        type_=ev.COMMUNITY_NEED_SUBMITTED,
        source=agency_source(agency),
        data=ev.SubmissionRejected(submission_id="placeholder", reason="placeholder"),
        agency_id=agency,
    )
    payload = {"schema_version": "1", "agency_id": agency, "agency_case_ref": ref, **body}
    return OutgoingEvent(sent.topic, sent.key, sent.headers, json.dumps(payload).encode())


def _need_body(area: str, **overrides: Any) -> dict[str, Any]:
    return {
        "area": area,
        "category": TRAINING,
        "urgency": "urgent",
        "people_affected": 40,
        "returnee_share": 0.25,
        "description": DESCRIPTION,
        **overrides,
    }


async def _inbox(
    kafka: KafkaConnection, agency: str, type_: str, where: dict[str, Any], timeout: float = 60
) -> dict[str, Any]:
    """The first inbox event of ``type_`` with the ``where`` values."""
    return (await _inbox_events(kafka, agency, type_, where, timeout=timeout))[0]


async def test_a_community_need_reaches_the_community_programme_and_is_completed(
    services: dict[str, RunningService],
    kafka: KafkaConnection,
    database_urls: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    area = f.unique_area()
    programme_key = PrivateKey.generate()
    authority = await _agency(kafka, "commune", ev.AgencyType.GOVERNMENT)
    programme = await _agency(
        kafka,
        "giz",
        ev.AgencyType.DEVELOPMENT_PROGRAMME,
        base64.b64encode(bytes(programme_key.public_key)).decode(),
    )
    individual_only = await _agency(kafka, "ngo", ev.AgencyType.NGO)
    community_listing = f.listing(
        programme,
        categories=[TRAINING],
        service_areas=[area[:4]],  # a wider coverage than the other: still the only fit
        levels=["community", "individual"],
        eligibility={"beneficiary_types": ["returnee", "community_member"]},
    )
    individual_listing = f.listing(individual_only, categories=[TRAINING], service_areas=[area])
    await publish_events(
        kafka, [f.listing_event(community_listing), f.listing_event(individual_listing)]
    )
    published = ((programme, community_listing), (individual_only, individual_listing))
    for provider, listing in published:
        await _inbox(
            kafka, provider, ev.INBOX_LISTING_PUBLISHED, {"service_id": listing.service_id}
        )

    # the authority reports the community need; it is answered with the need's id
    ref = f.unique("COMMUNITY")
    await publish_events(kafka, [_community_need(authority, ref, _need_body(area))])
    accepted = await _inbox(
        kafka, authority, ev.INBOX_SUBMISSION_ACCEPTED, {"agency_case_ref": ref}
    )
    assert accepted["outcome"] == "registered"
    need_id = accepted["case_id"]

    # the community programme gets the referral, with the level in its explanation
    referral = await _inbox(kafka, programme, ev.INBOX_REFERRAL_RECEIVED, {"case_id": need_id})
    assert (referral["category"], referral["urgency"]) == (TRAINING, "urgent")
    assert referral["referring_agency_id"] == authority
    assert referral["service_id"] == community_listing.service_id
    # ... and opens the sealed brief: the description and counts, for it alone
    sealed = await _inbox(
        kafka, programme, ev.INBOX_DISCLOSURE_RECEIVED, {"referral_id": referral["referral_id"]}
    )
    assert sealed["content"] == "community_need"
    brief = json.loads(SealedBox(programme_key).decrypt(base64.b64decode(sealed["sealed_box"])))
    assert brief["description"] == DESCRIPTION
    assert (brief["people_affected"], brief["returnee_share"]) == (40, 0.25)
    assert (brief["agency_case_ref"], brief["area"], brief["case_id"]) == (ref, area, need_id)

    # the individual-only service of the same category and area got nothing
    await absent_before_sentinel(
        kafka,
        topics.agency_inbox(individual_only),
        lambda r: headers_of(r).get("ce_type") == ev.INBOX_REFERRAL_RECEIVED,
        subject_is(await provoke_rejection(kafka, individual_only)),
    )

    # the programme accepts, starts and completes; the authority hears each step
    for action, kw in (("accept", {}), ("start", {}), ("complete", {"outcome": "achieved"})):
        await _answer(kafka, programme, referral, action, **kw)
    done = await _inbox(
        kafka,
        authority,
        ev.INBOX_STATUS_CHANGED,
        {"referral_id": referral["referral_id"], "to_state": "completed"},
    )
    assert done["outcome"] == "achieved"

    # the description is on no pseudonymous topic; the registered event carries the counts
    records = await read_everything(kafka, [topics.INTAKE_CASES, topics.REFERRAL_EVENTS])
    assert not [r for r in records if b"Ndiaye-7f3k" in (r.value or b"")]
    [registered] = [
        data_of(r)
        for r in records
        if headers_of(r).get("ce_type") == ev.COMMUNITY_NEED_REGISTERED
        and data_of(r)["case_id"] == need_id
    ]
    assert registered["need"]["level"] == "community"
    assert (registered["area"], registered["people_affected"]) == (area, 40)
    assert "description" not in registered

    # intake keeps the description encrypted; its disclosure log names the community need
    conn = await asyncpg.connect(database_urls["intake"])
    try:
        row = await conn.fetchrow(
            "SELECT description_sealed, status FROM community_needs WHERE need_id = $1::uuid",
            need_id,
        )
        logged = await conn.fetchrow(
            "SELECT kind, outcome, case_id FROM disclosure_log WHERE referral_id = $1",
            referral["referral_id"],
        )
    finally:
        await conn.close()
    assert row is not None and logged is not None
    assert row["status"] == "open" and b"Ndiaye" not in row["description_sealed"]
    assert dict(logged) == {"kind": "community_need", "outcome": "disclosed", "case_id": None}

    # the evidence by level and beneficiary type counts it, completed (table and CSV)
    monkeypatch.setenv("REFERRAL_DATABASE_URL", database_urls["referral"])
    out = tmp_path / "evidence.csv"
    result = await asyncio.to_thread(CliRunner().invoke, cli.app, ["evidence", "--csv", str(out)])
    assert result.exit_code == 0, result.output
    assert "By level and beneficiary type" in result.output
    rows = {
        (r["level"], r["beneficiary_type"]): r
        for r in csv.DictReader(cli.beside_csv(out, "levels").open())
    }
    community = rows[("community", "community_member")]
    assert int(community["needs_completed"]) >= 1
    assert int(community["people_affected"]) >= 40

    # closing it by its reference is answered as for a case
    closure = ev.CaseClosure(
        agency_id=authority,
        agency_case_ref=ref,
        closed_at=datetime.now(UTC),
        reason=ev.ClosureReason.COMPLETED,
    )
    await publish_events(
        kafka,
        [
            build_event(
                topic=topics.AGENCY_SUBMISSIONS.name(authority),
                key=ref,
                type_=ev.CASE_CLOSURE_SUBMITTED,
                source=agency_source(authority),
                data=closure,
                agency_id=authority,
            )
        ],
    )
    closed = await _inbox(
        kafka,
        authority,
        ev.INBOX_SUBMISSION_ACCEPTED,
        {"agency_case_ref": ref, "outcome": "closed"},
    )
    assert closed["case_id"] == need_id


@pytest.mark.parametrize(
    ("body", "fields", "says"),
    [
        pytest.param(
            {"given_name": "Awa", "contacts": [{"kind": "phone", "value": "+221 77 123 45 67"}]},
            {"given_name", "contacts"},
            NO_PERSONAL_DATA,
            id="personal-fields",
        ),
        pytest.param(
            {"area": "ZZ0101", "category": "economic.nothing_like_it"},
            {"area", "category"},
            None,
            id="unknown-area-and-category",
        ),
        pytest.param({"people_affected": 0}, {"people_affected"}, None, id="nobody-affected"),
    ],
)
async def test_a_bad_community_need_is_refused_with_its_fields_and_nothing_is_stored(
    services: dict[str, RunningService],
    kafka: KafkaConnection,
    database_urls: dict[str, str],
    body: dict[str, Any],
    fields: set[str],
    says: str | None,
) -> None:
    authority = await _agency(kafka, "commune", ev.AgencyType.GOVERNMENT)
    ref = f.unique("BAD")
    sent = _community_need(authority, ref, {**_need_body(f.unique_area()), **body})
    await publish_events(kafka, [sent])
    rejected = await _inbox(
        kafka, authority, ev.INBOX_SUBMISSION_REJECTED, {"submission_id": sent.event_id}
    )
    named = {e["field"].split(".")[0]: e["message"] for e in rejected["errors"]}
    assert fields <= set(named), rejected
    if says is not None:
        assert "no personal data" in rejected["reason"]
        assert all(named[field] == says for field in fields)
    # nothing else changed: no community need under that reference
    conn = await asyncpg.connect(database_urls["intake"])
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM community_needs WHERE agency_id = $1", authority
        )
    finally:
        await conn.close()
    assert stored == 0
