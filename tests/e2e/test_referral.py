"""The referral lifecycle end to end on the real broker and databases, with short deadlines:
happy path, rejection and expiry re-routing, exhausted attempts, late listings, consent
withdrawal, refused answers, and deadlines that survive a restart."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import build_event
from shared.contracts.messages import response_message
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from tests import factories as f
from tests.e2e.conftest import RunningService, start_service, stop_service, wait_ready
from tests.e2e.kafka_helpers import collect, data_of, headers_of, register_agency_access

pytestmark = pytest.mark.e2e

SLA_SECONDS = 6
SERVICE_ENV = {
    "REFERRAL_SLA_SECONDS_OVERRIDE": str(SLA_SECONDS),
    "REFERRAL_TIMER_INTERVAL_S": "0.5",
    "REFERRAL_MAX_ATTEMPTS": "2",
}


async def _agency(kafka: KafkaConnection, prefix: str) -> str:
    agency_id = f.unique(prefix)
    await register_agency_access(kafka, agency_id)
    await publish_events(kafka, [f.agency_event(f.agency(agency_id))])
    return agency_id


async def _listed(kafka: KafkaConnection, dsn: str, provider: str, areas: list[str]) -> str:
    listing = f.listing(provider, service_areas=areas)
    await publish_events(kafka, [f.listing_event(listing)])
    assert await _eventually(
        dsn, "SELECT 1 FROM listings WHERE service_id = $1", listing.service_id
    )
    return listing.service_id


async def _eventually(dsn: str, query: str, *args: Any, timeout: float = 30) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await conn.fetchval(query, *args)
            if value not in (None, 0, False) or asyncio.get_running_loop().time() > deadline:
                return value
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def _submit(kafka: KafkaConnection, referrer: str, area: str, **kw: Any) -> str:
    profile = f.profile(return_country=area[:2], return_area=area)
    sent = f.submission_event(f.submission(referrer, profile=profile, **kw))
    await publish_events(kafka, [sent])
    return sent.event_id


async def _events(
    kafka: KafkaConnection, correlation: str, type_: str, expected: int = 1, timeout: float = 45
) -> list[dict[str, Any]]:
    records = await collect(
        kafka,
        topics.REFERRAL_EVENTS,
        lambda r: (
            headers_of(r).get("ce_correlationid") == correlation
            and headers_of(r).get("ce_type") == type_
        ),
        expected=expected,
        timeout=timeout,
    )
    return [data_of(r) for r in records]


async def _answer(
    kafka: KafkaConnection, agency: str, referral: dict[str, Any], action: str, **kw: Any
) -> None:
    response = ev.ReferralResponse.model_validate(
        {
            "referral_id": referral["referral_id"],
            "agency_id": agency,
            "action": action,
            "responded_at": datetime.now(UTC).isoformat(),
            **kw,
        }
    )
    await publish_events(kafka, [response_message(response, referral["case_id"])])


async def test_happy_path_to_completed(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    area = f.unique_area("GM")  # a country of its own: no other test's listing covers it
    referrer, provider = await _agency(kafka, "iom"), await _agency(kafka, "ngo")
    await _listed(kafka, database_urls["referral"], provider, [area])
    correlation = await _submit(kafka, referrer, area)
    [referral] = await _events(kafka, correlation, ev.REFERRAL_REQUESTED)
    for action, extra in (
        ("acknowledge", {}),
        ("accept", {}),
        ("start", {}),
        ("complete", {"outcome": "achieved"}),
    ):
        await _answer(kafka, provider, referral, action, **extra)
        await asyncio.sleep(0.3)  # answers on one partition are ordered anyway
    changes = await _events(kafka, correlation, ev.REFERRAL_TRANSITIONED, expected=4)
    assert [(c["from_state"], c["to_state"]) for c in changes] == [
        ("requested", "received"),
        ("received", "accepted"),
        ("accepted", "in_progress"),
        ("in_progress", "completed"),
    ]
    assert changes[-1]["outcome"] == "achieved"
    inbox = await collect(
        kafka,
        topics.agency_inbox(referrer),
        lambda r: (
            headers_of(r).get("ce_type") == ev.INBOX_STATUS_CHANGED
            and data_of(r)["referral_id"] == referral["referral_id"]
        ),
        expected=4,
    )
    assert data_of(inbox[-1])["to_state"] == "completed"


async def test_rejection_reroutes_to_the_second_best_and_then_exhausts(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    area = f.unique_area("GH")  # a country of its own: no other test's listing covers it
    referrer = await _agency(kafka, "iom")
    providers = [await _agency(kafka, "ngo") for _ in range(3)]
    await _listed(kafka, database_urls["referral"], providers[0], [area])  # district: best
    await _listed(kafka, database_urls["referral"], providers[1], [area[:4]])  # region
    await _listed(kafka, database_urls["referral"], providers[2], [area[:2]])  # national
    correlation = await _submit(kafka, referrer, area)
    [first] = await _events(kafka, correlation, ev.REFERRAL_REQUESTED)
    assert first["recipient_agency_id"] == providers[0] and first["attempt"] == 1
    await _answer(kafka, providers[0], first, "reject", reason_code="at_capacity")
    first_two = await _events(kafka, correlation, ev.REFERRAL_REQUESTED, expected=2)
    second = first_two[1]
    assert second["recipient_agency_id"] == providers[1]
    assert (second["attempt"], second["previous_referral_id"]) == (2, first["referral_id"])
    rerouted = await collect(
        kafka,
        topics.agency_inbox(referrer),
        lambda r: headers_of(r).get("ce_type") == ev.INBOX_REFERRAL_REROUTED,
    )
    assert [data_of(r)["recipient_agency_id"] for r in rerouted] == [providers[1]]
    await _answer(kafka, providers[1], second, "reject", reason_code="not_eligible")
    [unmatched] = await _events(kafka, correlation, ev.NEED_UNMATCHED)
    assert (unmatched["reason"], unmatched["attempts"]) == ("attempts_exhausted", 2)


async def test_no_answer_expires_and_reroutes_even_across_a_restart(
    services: dict[str, RunningService],
    kafka: KafkaConnection,
    database_urls: dict[str, str],
    tmp_path: Any,
) -> None:
    area = f.unique_area("GN")  # a country of its own: no other test's listing covers it
    referrer = await _agency(kafka, "iom")
    providers = [await _agency(kafka, "ngo") for _ in range(2)]
    await _listed(kafka, database_urls["referral"], providers[0], [area])
    await _listed(kafka, database_urls["referral"], providers[1], [area[:4]])
    correlation = await _submit(kafka, referrer, area)
    [first] = await _events(kafka, correlation, ev.REFERRAL_REQUESTED)
    issued = datetime.now(UTC)

    stop_service(services["referral"])  # down between issue and deadline
    services["referral"] = start_service("referral", tmp_path, SERVICE_ENV)
    wait_ready([services["referral"]])

    [expired] = await _events(kafka, correlation, ev.REFERRAL_TRANSITIONED)
    assert (expired["to_state"], expired["reason_code"]) == ("expired", "no_response")
    deadline = datetime.fromisoformat(first["respond_by"])
    assert (deadline - issued).total_seconds() <= SLA_SECONDS
    late = (datetime.fromisoformat(expired["occurred_at"]) - deadline).total_seconds()
    assert 0 <= late <= 15  # on time although the service was down in between
    reminded = await collect(
        kafka,
        topics.agency_inbox(providers[0]),
        lambda r: headers_of(r).get("ce_type") == ev.INBOX_REFERRAL_REMINDER,
    )
    assert [data_of(r)["referral_id"] for r in reminded] == [first["referral_id"]]
    both = await _events(kafka, correlation, ev.REFERRAL_REQUESTED, expected=2)
    assert both[1]["recipient_agency_id"] == providers[1]
    assert both[1]["previous_referral_id"] == first["referral_id"]


async def test_a_new_listing_matches_the_unmatched_need(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    area = f.unique_area("GW")  # a country of its own: no other test's listing covers it
    referrer, provider = await _agency(kafka, "iom"), await _agency(kafka, "ngo")
    correlation = await _submit(kafka, referrer, area)
    [unmatched] = await _events(kafka, correlation, ev.NEED_UNMATCHED)
    assert unmatched["reason"] == "no_listing"
    await _listed(kafka, database_urls["referral"], provider, [area])
    requested = await collect(
        kafka,
        topics.REFERRAL_EVENTS,
        lambda r: (
            headers_of(r).get("ce_type") == ev.REFERRAL_REQUESTED
            and data_of(r)["case_id"] == unmatched["case_id"]
        ),
    )
    assert [data_of(r)["recipient_agency_id"] for r in requested] == [provider]


async def test_a_need_retried_after_a_rejection_continues_its_chain(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    """Rejected by the only provider, the need is unmatched; a provider listed later gets it
    as the chain's next attempt, linked to the rejected referral, not as a new attempt 1."""
    area = f.unique_area("GQ")  # a country of its own: no other test's listing covers it
    referrer = await _agency(kafka, "iom")
    first, second = await _agency(kafka, "ngo"), await _agency(kafka, "ngo")
    await _listed(kafka, database_urls["referral"], first, [area])
    correlation = await _submit(kafka, referrer, area)
    [rejected] = await _events(kafka, correlation, ev.REFERRAL_REQUESTED)
    await _answer(kafka, first, rejected, "reject", reason_code="at_capacity")
    [unmatched] = await _events(kafka, correlation, ev.NEED_UNMATCHED)
    assert unmatched["attempts"] == 1
    await _listed(kafka, database_urls["referral"], second, [area])
    requested = await collect(
        kafka,
        topics.REFERRAL_EVENTS,
        lambda r: (
            headers_of(r).get("ce_type") == ev.REFERRAL_REQUESTED
            and data_of(r)["case_id"] == rejected["case_id"]
        ),
        expected=2,
    )
    chain = [
        (d["recipient_agency_id"], d["attempt"], d.get("previous_referral_id"))
        for d in map(data_of, requested)
    ]
    assert chain == [(first, 1, None), (second, 2, rejected["referral_id"])]


async def test_consent_withdrawal_cancels_open_referrals(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    area = f.unique_area("GA")  # a country of its own: no other test's listing covers it
    referrer, provider = await _agency(kafka, "iom"), await _agency(kafka, "ngo")
    await _listed(kafka, database_urls["referral"], provider, [area])
    ref = f.unique("CASE")
    correlation = await _submit(kafka, referrer, area, agency_case_ref=ref)
    [referral] = await _events(kafka, correlation, ev.REFERRAL_REQUESTED)
    await _answer(kafka, provider, referral, "accept")
    withdrawal = ev.ConsentWithdrawal.model_validate(
        {
            "agency_id": referrer,
            "agency_case_ref": ref,
            "withdrawn_at": datetime.now(UTC).isoformat(),
        }
    )
    await publish_events(
        kafka,
        [
            build_event(
                topic=topics.AGENCY_SUBMISSIONS.name(referrer),
                key=ref,
                type_=ev.CONSENT_WITHDRAWN,
                source="urn:test",
                data=withdrawal,
            )
        ],
    )
    cancelled = await collect(
        kafka,
        topics.agency_inbox(provider),
        lambda r: (
            headers_of(r).get("ce_type") == ev.INBOX_REFERRAL_CANCELLED
            and data_of(r)["referral_id"] == referral["referral_id"]
        ),
    )
    assert [data_of(r)["erase_received_data"] for r in cancelled] == [True]
    assert data_of(cancelled[0])["reason_code"] == "consent_withdrawn"


async def test_an_answer_from_another_agency_or_out_of_turn_is_refused(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    area = f.unique_area("CM")  # a country of its own: no other test's listing covers it
    referrer, provider = await _agency(kafka, "iom"), await _agency(kafka, "ngo")
    intruder = await _agency(kafka, "ngo")
    await _listed(kafka, database_urls["referral"], provider, [area])
    correlation = await _submit(kafka, referrer, area)
    [referral] = await _events(kafka, correlation, ev.REFERRAL_REQUESTED)
    await _answer(kafka, intruder, referral, "accept")
    await _answer(kafka, provider, referral, "complete", outcome="achieved")  # not yet
    refused = await collect(
        kafka,
        topics.agency_inbox(intruder),
        lambda r: headers_of(r).get("ce_type") == ev.INBOX_RESPONSE_REFUSED,
    )
    assert [(data_of(r)["error"], data_of(r).get("current_state")) for r in refused] == [
        ("not_recipient", None)
    ]
    out_of_turn = await collect(
        kafka,
        topics.agency_inbox(provider),
        lambda r: headers_of(r).get("ce_type") == ev.INBOX_RESPONSE_REFUSED,
    )
    assert [(data_of(r)["error"], data_of(r)["current_state"]) for r in out_of_turn] == [
        ("transition_not_allowed", "requested")
    ]
    state = await _eventually(
        database_urls["referral"],
        "SELECT status FROM referrals WHERE referral_id = $1",
        uuid.UUID(referral["referral_id"]),
    )
    # The refused answers changed nothing; only the deadline (SLA_SECONDS) may have passed.
    assert state in ("requested", "expired")
    answered = await _eventually(
        database_urls["referral"],
        """SELECT count(*) FROM referral_transitions
           WHERE referral_id = $1 AND to_state IN ('accepted', 'completed')""",
        uuid.UUID(referral["referral_id"]),
        timeout=0,
    )
    assert answered == 0


async def test_an_accepted_referral_holds_a_slot_until_the_provider_updates(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    area = f.unique_area("CI")  # a country of its own: no other test's listing covers it
    referrer, provider = await _agency(kafka, "iom"), await _agency(kafka, "ngo")
    listing = f.listing(provider, service_areas=[area], capacity={"open_slots": 1})
    await publish_events(kafka, [f.listing_event(listing)])
    assert await _eventually(
        database_urls["referral"],
        "SELECT 1 FROM listings WHERE service_id = $1",
        listing.service_id,
    )
    first = await _submit(kafka, referrer, area)
    [referral] = await _events(kafka, first, ev.REFERRAL_REQUESTED)
    await _answer(kafka, provider, referral, "accept")
    assert (
        await _eventually(
            database_urls["referral"],
            "SELECT held_slots FROM listings WHERE service_id = $1",
            listing.service_id,
        )
        == 1
    )
    second = await _submit(kafka, referrer, area)
    [unmatched] = await _events(kafka, second, ev.NEED_UNMATCHED)
    assert unmatched["reason"] == "no_capacity"
    # the provider publishes its own figures again: they win, and the waiting need is matched
    await publish_events(kafka, [f.listing_event(listing)])
    requested = await collect(
        kafka,
        topics.REFERRAL_EVENTS,
        lambda r: (
            headers_of(r).get("ce_type") == ev.REFERRAL_REQUESTED
            and data_of(r)["case_id"] == unmatched["case_id"]
        ),
    )
    assert [data_of(r)["recipient_agency_id"] for r in requested] == [provider]


async def test_operator_marks_a_referral_entered_in_error(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    from typer.testing import CliRunner

    from ops.cli import app

    area = f.unique_area("CG")  # a country of its own: no other test's listing covers it
    referrer, provider = await _agency(kafka, "iom"), await _agency(kafka, "ngo")
    await _listed(kafka, database_urls["referral"], provider, [area])
    correlation = await _submit(kafka, referrer, area)
    [referral] = await _events(kafka, correlation, ev.REFERRAL_REQUESTED)
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["referral", "entered-in-error", referral["referral_id"]]
    )
    assert result.exit_code == 0, result.output
    [change] = await _events(kafka, correlation, ev.REFERRAL_TRANSITIONED)
    assert (change["from_state"], change["to_state"]) == ("requested", "entered_in_error")
    unknown = await asyncio.to_thread(
        CliRunner().invoke, app, ["referral", "entered-in-error", str(uuid.uuid4())]
    )
    assert unknown.exit_code == 1


async def test_evidence_report_per_country_and_category(
    services: dict[str, RunningService], tmp_path: Any
) -> None:
    """After the tests above (each in its own country): the pathway report, as CSV."""
    import csv

    from typer.testing import CliRunner

    from ops.cli import app

    out = tmp_path / "evidence.csv"
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["referral", "evidence", "--area-digits", "0", "--csv", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = {(r["area"], r["category"]): r for r in csv.DictReader(out.open())}
    happy = rows[("GM", "psychosocial.counselling")]
    assert (
        happy["referrals"],
        float(happy["acceptance_rate"]),
        float(happy["completion_rate"]),
    ) == ("1", 1.0, 1.0)
    assert float(happy["median_hours_to_decide"]) < 0.1
    exhausted = rows[("GH", "psychosocial.counselling")]
    assert (exhausted["referrals"], float(exhausted["acceptance_rate"])) == ("2", 0.0)
    assert exhausted["unmet_reasons"] == "attempts_exhausted x1"
    assert "Referral pathways" in result.output
