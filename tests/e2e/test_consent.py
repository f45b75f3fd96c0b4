"""Consent that follows through, end to end on the real broker and databases (issue 18,
decision 20).

- A narrowed consent cancels exactly the referrals it no longer covers: the uncovered provider
  hears referral-cancelled with erase_received_data, the covered one hears nothing and its
  referral stays accepted; the uncovered provider confirms its erasure and the owner hears it
  (and a confirmation for a referral never disclosed to its sender is refused).
- A consent's expiry is a timer row: when it is due, the consent-expiry job cancels what is open.
- A likely duplicate is told to both owners when both consents allow it, only recorded when one
  does not.
- An erasure leaves of the case's profile in referral only the statistics fields (none without
  that purpose), and the evidence report still runs."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from nacl.public import PrivateKey

from services.referral import consent as rules
from services.referral.store import ReferralStore
from shared.contracts import events as ev
from shared.contracts import topics
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
from tests.e2e.test_continuity import _agency, _answer, _inbox, _submission

pytestmark = pytest.mark.e2e

SERVICE_ENV = {"REFERRAL_TIMER_INTERVAL_S": "0.5"}

COUNSELLING = "psychosocial.counselling"
JOBS = "economic.job_placement"


def _key() -> tuple[PrivateKey, str]:
    key = PrivateKey.generate()
    return key, base64.b64encode(bytes(key.public_key)).decode()


def _person() -> dict[str, Any]:
    """A person of this test only (the identity check compares every case in the database)."""
    return {
        "given_name": f.unique("Awa"),
        "family_name": f.unique("Ndiaye"),
        "date_of_birth": "1991-03-14",
        "contacts": [{"kind": "phone", "value": "+221700000001"}],
    }


async def _case(
    kafka: KafkaConnection,
    owner: str,
    area: str,
    needs: list[str],
    *,
    consent: dict[str, Any] | None = None,
    personal: dict[str, Any] | None = None,
) -> tuple[str, str]:
    ref = f.unique("CASE")
    submission = f.submission(
        owner,
        agency_case_ref=ref,
        personal=personal or _person(),
        profile=f.profile(return_country="SN", return_area=area),
        needs=[{"need_id": f"n{i + 1}", "category": c} for i, c in enumerate(needs)],
        consent=consent or f.consent(),
    )
    await publish_events(kafka, [f.submission_event(submission)])
    [accepted] = await _inbox(kafka, owner, ev.INBOX_SUBMISSION_ACCEPTED, {"agency_case_ref": ref})
    return accepted["case_id"], ref


async def _providers(kafka: KafkaConnection, area: str) -> tuple[str, str]:
    """An NGO listing counselling and another listing job placement in ``area``, both with a
    public key (they receive the returnee's contact details)."""
    ids = []
    for prefix, category in (("ngo-a", COUNSELLING), ("ngo-b", JOBS)):
        agency = await _agency(kafka, prefix, ev.AgencyType.NGO, _key()[1])
        listing = f.listing(agency, categories=[category], service_areas=[area])
        await publish_events(kafka, [f.listing_event(listing)])
        await _inbox(kafka, agency, ev.INBOX_LISTING_PUBLISHED, {"service_id": listing.service_id})
        ids.append(agency)
    return ids[0], ids[1]


def _confirmation(agency: str, referral_id: str) -> Any:
    confirmation = ev.ErasureConfirmation(
        agency_id=agency,
        referral_id=referral_id,
        erased_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    return _submission(agency, referral_id, ev.ERASURE_CONFIRMATION_SUBMITTED, confirmation)


async def _fetchrow(database_url: str, sql: str, *args: Any) -> asyncpg.Record | None:
    conn = await asyncpg.connect(database_url)
    try:
        record: asyncpg.Record | None = await conn.fetchrow(sql, *args)
    finally:
        await conn.close()
    return record


async def _world(kafka: KafkaConnection) -> tuple[str, str, str, str]:
    """A fresh area, an IOM mission and the two providers: (area, iom, ngo-a, ngo-b)."""
    area = f.unique_area()
    iom = await _agency(kafka, "iom", ev.AgencyType.UN_AGENCY)
    ngo_a, ngo_b = await _providers(kafka, area)
    return area, iom, ngo_a, ngo_b


def _told_to_erase(cancelled: dict[str, Any]) -> None:
    assert (cancelled["reason_code"], cancelled["erase_received_data"]) == (
        "consent_withdrawn",
        True,
    )


async def test_narrowing_consent_cancels_exactly_the_uncovered_referral_and_erasure_is_heard(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    area, iom, ngo_a, ngo_b = await _world(kafka)
    case_id, ref = await _case(kafka, iom, area, [COUNSELLING, JOBS])
    [to_a] = await _inbox(kafka, ngo_a, ev.INBOX_REFERRAL_RECEIVED, {"case_id": case_id})
    [to_b] = await _inbox(kafka, ngo_b, ev.INBOX_REFERRAL_RECEIVED, {"case_id": case_id})
    for provider, referral in ((ngo_a, to_a), (ngo_b, to_b)):
        await _inbox(
            kafka, provider, ev.INBOX_DISCLOSURE_RECEIVED, {"referral_id": referral["referral_id"]}
        )
    await _answer(kafka, ngo_a, to_a, "accept")
    await _inbox(
        kafka, iom, ev.INBOX_STATUS_CHANGED,
        {"referral_id": to_a["referral_id"], "to_state": "accepted"},
    )  # fmt: skip

    # the returnee now agrees to share with ngo-a only
    narrowed = ev.CaseUpdate.model_validate(
        {
            "agency_id": iom,
            "agency_case_ref": ref,
            "consent": f.consent(scope={"purposes": ["referral"], "agency_ids": [ngo_a]}),
        }
    )
    await publish_events(kafka, [_submission(iom, ref, ev.CASE_UPDATE_SUBMITTED, narrowed)])
    [cancelled] = await _inbox(
        kafka, ngo_b, ev.INBOX_REFERRAL_CANCELLED, {"referral_id": to_b["referral_id"]}
    )
    _told_to_erase(cancelled)
    await _inbox(
        kafka, iom, ev.INBOX_STATUS_CHANGED,
        {"referral_id": to_b["referral_id"], "to_state": "cancelled"},
    )  # fmt: skip
    # the covered referral goes on: still accepted, and its provider told nothing
    state = await _fetchrow(
        database_urls["referral"],
        "SELECT status FROM referrals WHERE referral_id = $1",
        uuid.UUID(to_a["referral_id"]),
    )
    assert state is not None and state["status"] == "accepted"
    await absent_before_sentinel(
        kafka,
        topics.agency_inbox(ngo_a),
        lambda r: headers_of(r).get("ce_type") == ev.INBOX_REFERRAL_CANCELLED,
        subject_is(await provoke_rejection(kafka, ngo_a)),
    )

    # ngo-b confirms it erased what it received: the owner hears it, ngo-b gets its answer
    confirmation = _confirmation(ngo_b, to_b["referral_id"])
    await publish_events(kafka, [confirmation])
    [heard] = await _inbox(
        kafka, iom, ev.INBOX_DISCLOSURE_ERASED, {"referral_id": to_b["referral_id"]}
    )
    assert (heard["case_id"], heard["recipient_agency_id"]) == (case_id, ngo_b)
    await _inbox(
        kafka,
        ngo_b,
        ev.INBOX_ERASURE_CONFIRMATION_RECORDED,
        {"submission_id": confirmation.event_id},
    )
    logged = await _fetchrow(
        database_urls["intake"],
        "SELECT erasure_submission_id FROM disclosure_log WHERE referral_id = $1",
        to_b["referral_id"],
    )
    assert logged is not None and logged["erasure_submission_id"] == confirmation.event_id

    # bad input: ngo-a confirms the erasure of ngo-b's referral, never disclosed to it
    wrong = _confirmation(ngo_a, to_b["referral_id"])
    await publish_events(kafka, [wrong])
    [refused] = await _inbox(
        kafka, ngo_a, ev.INBOX_SUBMISSION_REJECTED, {"submission_id": wrong.event_id}
    )
    assert refused["reason"] == "no personal data of this referral was disclosed to this agency"
    assert [e["field"] for e in refused["errors"]] == ["referral_id"]
    # and ngo-b confirms the same erasure twice
    twice = _confirmation(ngo_b, to_b["referral_id"])
    await publish_events(kafka, [twice])
    [again] = await _inbox(
        kafka, ngo_b, ev.INBOX_SUBMISSION_REJECTED, {"submission_id": twice.event_id}
    )
    assert "already confirmed" in again["reason"]


async def test_an_expired_consent_cancels_what_is_open_when_its_timer_is_due(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    area, iom, ngo_a, _ = await _world(kafka)
    expires_on = (datetime.now(UTC) + timedelta(days=30)).date()
    consent = f.consent(scope={"purposes": ["referral"], "expires_on": expires_on.isoformat()})
    case_id, _ = await _case(kafka, iom, area, [COUNSELLING], consent=consent)
    [referral] = await _inbox(kafka, ngo_a, ev.INBOX_REFERRAL_RECEIVED, {"case_id": case_id})
    conn = await asyncpg.connect(database_urls["referral"])
    try:
        due = await conn.fetchval("SELECT due_at FROM consent_expiries WHERE case_id = $1", case_id)
        assert due == rules.expiry_due(ev.Consent.model_validate(consent))
        # the day after expires_on comes: the row is what the job reads
        await conn.execute("UPDATE consent_expiries SET due_at = now() WHERE case_id = $1", case_id)
    finally:
        await conn.close()
    [cancelled] = await _inbox(
        kafka, ngo_a, ev.INBOX_REFERRAL_CANCELLED, {"referral_id": referral["referral_id"]}
    )
    _told_to_erase(cancelled)


async def test_a_likely_duplicate_is_told_to_both_owners_only_when_both_consents_allow(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    area = f.unique_area()
    iom = await _agency(kafka, "iom", ev.AgencyType.UN_AGENCY)
    caritas = await _agency(kafka, "caritas", ev.AgencyType.NGO)
    ministry = await _agency(kafka, "gov", ev.AgencyType.GOVERNMENT)
    person = _person()
    first, _ = await _case(kafka, iom, area, [COUNSELLING], personal=person)
    second, _ = await _case(kafka, caritas, area, [COUNSELLING], personal=dict(person))
    [to_iom] = await _inbox(kafka, iom, ev.INBOX_POSSIBLE_DUPLICATE, {"case_id": first})
    assert (to_iom["duplicate_case_id"], to_iom["duplicate_owner_agency_id"]) == (second, caritas)
    [to_caritas] = await _inbox(kafka, caritas, ev.INBOX_POSSIBLE_DUPLICATE, {"case_id": second})
    assert (to_caritas["duplicate_case_id"], to_caritas["duplicate_owner_agency_id"]) == (
        first,
        iom,
    )

    # the same person at the ministry, whose returnee shares with government agencies only
    narrow = f.consent(scope={"purposes": ["referral"], "agency_types": ["government"]})
    third, _ = await _case(
        kafka, ministry, area, [COUNSELLING], personal=dict(person), consent=narrow
    )

    def about_third(r: Any) -> bool:
        if headers_of(r).get("ce_type") != ev.INBOX_POSSIBLE_DUPLICATE:
            return False
        return third in (data_of(r).get("case_id"), data_of(r).get("duplicate_case_id"))

    for owner in (ministry, iom, caritas):
        await absent_before_sentinel(
            kafka,
            topics.agency_inbox(owner),
            about_third,
            subject_is(await provoke_rejection(kafka, owner)),
        )
    told = await _inbox(kafka, iom, ev.INBOX_POSSIBLE_DUPLICATE, {"case_id": first}, timeout=5)
    assert [t["duplicate_case_id"] for t in told] == [second], "nothing about the third case"
    conn = await asyncpg.connect(database_urls["intake"])
    try:
        rows = await conn.fetch(
            "SELECT told, not_told_why FROM possible_duplicates"
            " WHERE $1::uuid IN (case_id, other_case_id)",
            uuid.UUID(third),
        )
    finally:
        await conn.close()
    assert sorted((r["told"], r["not_told_why"]) for r in rows) == [
        (False, "case:agency_type_not_covered"),
        (False, "case:agency_type_not_covered"),
    ]


async def test_erasure_leaves_only_the_statistics_fields_in_referral(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    area, iom, ngo_a, _ = await _world(kafka)
    stats = f.consent(scope={"purposes": ["referral", "statistics"]})
    kept_case, kept_ref = await _case(kafka, iom, area, [COUNSELLING], consent=stats)
    gone_case, gone_ref = await _case(kafka, iom, area, [JOBS])
    await _inbox(kafka, ngo_a, ev.INBOX_REFERRAL_RECEIVED, {"case_id": kept_case})
    for case_id, ref in ((kept_case, kept_ref), (gone_case, gone_ref)):
        erasure = ev.ErasureRequest(
            agency_id=iom,
            agency_case_ref=ref,
            requested_at=datetime.now(UTC) - timedelta(seconds=1),
            basis="data_subject_request",
        )
        await publish_events(kafka, [_submission(iom, ref, ev.ERASURE_REQUESTED, erasure)])
        await _inbox(kafka, iom, ev.INBOX_ERASURE_CONFIRMED, {"case_id": case_id})
    # referral cancelled the open referral as it applied the erasure
    await _inbox(kafka, ngo_a, ev.INBOX_REFERRAL_CANCELLED, {"case_id": kept_case})
    for case_id, expected in ((kept_case, set(rules.STATISTICS_FIELDS)), (gone_case, set())):
        record = None
        for _ in range(60):  # referral applies the erasure on its own consumer
            record = await _fetchrow(
                database_urls["referral"],
                "SELECT status, profile, needs, consent FROM cases WHERE case_id = $1",
                case_id,
            )
            if record is not None and record["status"] == "erased":
                break
            await asyncio.sleep(0.5)
        assert record is not None and record["status"] == "erased"
        assert set(json.loads(record["profile"])) == expected
        assert json.loads(record["needs"]) == []
        assert json.loads(record["consent"])["given"] is False
    # the evidence still reports the area of the case kept for statistics
    conn = await asyncpg.connect(database_urls["referral"])
    try:
        rows = await ReferralStore(conn).pathway_report(area_digits=len(area) - 2)
    finally:
        await conn.close()
    areas = {r.values[0] for r in rows}
    assert area in areas
