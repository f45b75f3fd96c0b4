"""Intake end to end on the real broker and database: registration, every class of invalid
input, updates, cross-agency duplicates, disclosures and refusals, withdrawal, erasure, and no
personal data anywhere but inside sealed disclosures."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

from services.intake.crypto import KeyDestroyed
from services.intake.store import IntakeStore
from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import OutgoingEvent
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from shared.keys import decode_key
from tests import factories as f
from tests.e2e.conftest import RunningService
from tests.e2e.kafka_helpers import (
    absent_before_sentinel,
    collect,
    data_of,
    headers_of,
    provoke_rejection,
    read_everything,
    register_agency_access,
    subject_is,
    wait_until_consumed,
)
from tests.e2e.personal_data import MARK, PERSONAL, leaks_in
from tests.e2e.test_walking_skeleton import _eventually

# The evidence service runs beside the three from the start: its database and log are scanned
# by the last test too.
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("evidence")]

# Debug: every service then logs each event it applied, with its correlation id, so the final
# scan can require each log to hold this module's cases (an empty or unrelated log cannot pass)
# and also covers what the services write at debug level.
SERVICE_ENV = {
    f"{name.upper()}_LOG_LEVEL": "DEBUG"
    for name in ("intake", "referral", "notification", "evidence")
}

# Correlation ids of the agency messages this module sent (a submission's id is the correlation
# id of everything it causes): the final test requires each of them in every service's log.
SENT: list[str] = []


async def _agency(
    kafka: KafkaConnection, prefix: str, type_: str = "ngo", public_key: str | None = None
) -> str:
    agency_id = f.unique(prefix)
    await register_agency_access(kafka, agency_id)
    record = ev.AgencyRecord(
        agency_id=agency_id,
        name=agency_id,
        type=ev.AgencyType(type_),
        countries=["SN"],
        public_key=public_key,
    )
    await publish_events(kafka, [f.agency_event(record)])
    return agency_id


def _submission(agency_id: str, ref: str | None = None, **overrides: Any) -> ev.CaseSubmission:
    return f.submission(
        agency_id,
        agency_case_ref=ref or f.unique("CASE"),
        personal=overrides.pop("personal", PERSONAL),
        **overrides,
    )


def _submission_event(submission: ev.CaseSubmission) -> OutgoingEvent:
    sent = f.submission_event(submission)
    SENT.append(sent.event_id)
    return sent


def _message(ce_type: str, model: ev.Contract, agency_id: str, key: str) -> OutgoingEvent:
    from shared.contracts.envelope import build_event

    sent = build_event(
        topic=topics.AGENCY_SUBMISSIONS.name(agency_id),
        key=key,
        type_=ce_type,
        source=f"urn:test:{agency_id}",
        data=model,
        agency_id=agency_id,
    )
    SENT.append(sent.event_id)
    return sent


def _by_correlation(event: OutgoingEvent) -> Any:
    return lambda r: headers_of(r).get("ce_correlationid") == event.event_id


async def _case_events(kafka: KafkaConnection, sent: OutgoingEvent, expected: int = 1) -> list[Any]:
    """The case events a submission caused (its answer to the agency, submission-accepted, is
    tested in test_answers.py; the owners told of a likely duplicate, possible-duplicate-found,
    in test_consent.py)."""
    caused = _by_correlation(sent)
    answers = {ev.SUBMISSION_ACCEPTED, ev.POSSIBLE_DUPLICATE_FOUND}
    return await collect(
        kafka,
        topics.INTAKE_CASES,
        lambda r: caused(r) and headers_of(r).get("ce_type") not in answers,
        expected=expected,
    )


async def test_registration_stores_personal_data_only_encrypted(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    agency = await _agency(kafka, "iom")
    sent = _submission_event(_submission(agency))
    await publish_events(kafka, [sent])
    [event] = await _case_events(kafka, sent)
    assert headers_of(event)["ce_type"] == ev.CASE_REGISTERED
    case_id = data_of(event)["case_id"]

    conn = await asyncpg.connect(database_urls["intake"])
    try:
        row = await conn.fetchrow("SELECT * FROM cases WHERE case_id = $1", uuid.UUID(case_id))
        assert row is not None and row["personal_sealed"] is not None
        stored = json.dumps({k: str(v) for k, v in dict(row).items()})
        assert leaks_in(stored.encode()) == []
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM consent_records WHERE case_id = $1", uuid.UUID(case_id)
            )
            == 1
        )
        master = decode_key(pydantic_secret("INTAKE_MASTER_KEY"))
        personal = await IntakeStore(conn).read_personal(case_id, master)
        assert personal.given_name == PERSONAL["given_name"]
    finally:
        await conn.close()


def pydantic_secret(name: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(os.environ[name])


async def _raw(
    kafka: KafkaConnection, topic: str, value: bytes, headers: dict[str, str], key: bytes = b"k"
) -> None:
    # Compressed: a record over the topic's limit passes the broker only so (the limit is also
    # the broker's), and intake must then refuse it on the sender's inbox.
    producer = AIOKafkaProducer(
        **kafka.client_kwargs(),
        acks="all",
        compression_type="gzip",
        max_request_size=2 * 1024 * 1024,
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
        )
    finally:
        await producer.stop()


async def test_each_class_of_invalid_input_gets_a_named_rejection(
    services: dict[str, RunningService], kafka: KafkaConnection
) -> None:
    agency = await _agency(kafka, "iom")
    topic = topics.AGENCY_SUBMISSIONS.name(agency)
    good = f.submission_event(_submission(agency))  # never sent as is
    headers = dict(good.headers)
    bad_body = json.loads(good.body)
    bad_body["needs"] = []
    cases: dict[str, tuple[bytes, dict[str, str], str]] = {
        "json": (b'{"agency_id": ', headers, "not valid JSON"),
        "headers": (
            good.body,
            {k: v for k, v in headers.items() if k != "ce_source"},
            "invalid CloudEvents envelope",
        ),
        "type": (
            good.body,
            {**headers, "ce_type": "org.referralexchange.intake.nonsense.v1"},
            "unknown ce_type",
        ),
        "size": (b"{" + b" " * (260 * 1024) + b"}", headers, "exceeds the limit"),
        "proof": (good.body, {**headers, "ce_agencyid": "someone-else"}, "claims another agency"),
        "contract": (json.dumps(bad_body).encode(), headers, "does not match"),
    }
    for name, (body, hdrs, _) in cases.items():
        await _raw(kafka, topic, body, {**hdrs, "ce_id": f"{name}-{uuid.uuid4()}"})
    rejections = await collect(
        kafka,
        topics.INTAKE_REJECTIONS,
        lambda r: data_of(r).get("agency_id") == agency,
        expected=len(cases),
    )
    by_reason = {data_of(r)["reason"]: data_of(r) for r in rejections}
    for name, (_, _, reason) in cases.items():
        match = [d for text, d in by_reason.items() if reason in text]
        assert match, f"{name}: no rejection saying {reason!r} in {list(by_reason)}"
    contract = next(d for t, d in by_reason.items() if "does not match" in t)
    assert [e["field"] for e in contract["errors"]] == ["needs"]
    assert "ce_source" in {e["field"] for d in by_reason.values() for e in d["errors"]}


async def test_resubmission_by_agency_reference_updates_the_case(
    services: dict[str, RunningService], kafka: KafkaConnection
) -> None:
    agency = await _agency(kafka, "iom")
    ref = f.unique("CASE")
    first = _submission_event(_submission(agency, ref))
    second = _submission_event(
        _submission(
            agency,
            ref,
            needs=[
                {"need_id": "n1", "category": "psychosocial.counselling"},
                {"need_id": "n2", "category": "social.housing", "urgency": "emergency"},
            ],
        )
    )
    await publish_events(kafka, [first])
    [registered] = await _case_events(kafka, first)
    await publish_events(kafka, [second])
    [updated] = await _case_events(kafka, second)
    assert headers_of(updated)["ce_type"] == ev.CASE_UPDATED
    assert data_of(updated)["case_id"] == data_of(registered)["case_id"]
    assert [n["need_id"] for n in data_of(updated)["needs"]] == ["n1", "n2"]


async def test_the_same_person_from_two_agencies_is_a_possible_duplicate(
    services: dict[str, RunningService], kafka: KafkaConnection
) -> None:
    first_agency, second_agency = await _agency(kafka, "iom"), await _agency(kafka, "ngo")
    letters = "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:10])
    person = {**PERSONAL, "given_name": f"{MARK}{letters}", "documents": []}  # nobody else
    swapped = {
        **person,
        "given_name": PERSONAL["family_name"].upper(),
        "family_name": person["given_name"].lower(),
    }  # another spelling, same person
    a = _submission_event(_submission(first_agency, personal=person))
    await publish_events(kafka, [a])
    [case_a] = await _case_events(kafka, a)
    b = _submission_event(_submission(second_agency, personal=swapped))
    await publish_events(kafka, [b])
    [case_b] = await _case_events(kafka, b)
    assert data_of(case_b)["possible_duplicate_of"] == [data_of(case_a)["case_id"]]
    assert leaks_in(case_b.value or b"") == []


async def _known_to_intake(database_urls: dict[str, str], agency_id: str) -> None:
    conn = await asyncpg.connect(database_urls["intake"])
    try:
        for _ in range(150):
            if await conn.fetchval("SELECT 1 FROM agencies WHERE agency_id = $1", agency_id):
                return
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    raise AssertionError(f"intake never learnt of {agency_id}")


async def _provider_with_listing(
    kafka: KafkaConnection,
    database_urls: dict[str, str],
    public_key: str | None,
    type_: str = "ngo",
) -> tuple[str, str]:
    provider = await _agency(kafka, "ngo", type_, public_key)
    await _known_to_intake(database_urls, provider)
    area = f.unique_area()
    listing = f.listing(provider, service_areas=[area])
    await publish_events(kafka, [f.listing_event(listing)])
    conn = await asyncpg.connect(database_urls["referral"])
    try:
        for _ in range(150):
            if await conn.fetchval(
                "SELECT 1 FROM listings WHERE service_id = $1", listing.service_id
            ):
                break
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    return provider, area


async def test_covered_referral_gets_a_disclosure_only_the_recipient_can_open(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    key = PrivateKey.generate()
    provider, area = await _provider_with_listing(
        kafka, database_urls, base64.b64encode(bytes(key.public_key)).decode()
    )
    referrer = await _agency(kafka, "iom")
    sent = _submission_event(_submission(referrer, profile=f.profile(return_area=area)))
    await publish_events(kafka, [sent])

    [received] = await collect(
        kafka,
        topics.agency_inbox(provider),
        lambda r: (
            headers_of(r).get("ce_type") == ev.INBOX_DISCLOSURE_RECEIVED
            and headers_of(r).get("ce_correlationid") == sent.event_id
        ),
    )
    sealed = base64.b64decode(data_of(received)["sealed_box"])
    contact = json.loads(SealedBox(key).decrypt(sealed))
    assert contact == {
        "schema_version": "1",
        "given_name": PERSONAL["given_name"],
        "family_name": PERSONAL["family_name"],
        "contacts": [
            {"kind": c["kind"], "value": c["value"], "preferred": False}
            for c in PERSONAL["contacts"]
        ],
        "preferred_language": "wo",
    }  # nothing more: no documents, no birth date
    with pytest.raises(CryptoError):
        SealedBox(PrivateKey.generate()).decrypt(sealed)


async def test_a_recipient_that_cannot_receive_sealed_data_gets_a_refusal(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    """Referral only refers within the consent (see the referral tests); intake still decides
    for itself and refuses whatever it cannot send safely — here, to an agency without a key."""
    provider, area = await _provider_with_listing(kafka, database_urls, public_key=None)
    referrer = await _agency(kafka, "iom")
    sent = _submission_event(_submission(referrer, profile=f.profile(return_area=area)))
    await publish_events(kafka, [sent])
    [refused] = await collect(kafka, topics.INTAKE_DISCLOSURES, _by_correlation(sent))
    assert headers_of(refused)["ce_type"] == ev.DISCLOSURE_REFUSED
    assert data_of(refused)["reason"] == "no_public_key"
    assert data_of(refused)["recipient_agency_id"] == provider
    # Notification applied the refusal; an answer provoked afterwards is the sentinel.
    await wait_until_consumed(
        database_urls["notification"], "notification", headers_of(refused)["ce_id"]
    )
    await absent_before_sentinel(
        kafka,
        topics.agency_inbox(provider),
        lambda r: headers_of(r).get("ce_type") == ev.INBOX_DISCLOSURE_RECEIVED,
        subject_is(await provoke_rejection(kafka, provider)),
    )
    conn = await asyncpg.connect(database_urls["intake"])
    try:
        logged = await conn.fetchrow(
            "SELECT outcome, reason, consent_version FROM disclosure_log WHERE referral_id = $1",
            data_of(refused)["referral_id"],
        )
    finally:
        await conn.close()
    assert dict(logged) == {"outcome": "refused", "reason": "no_public_key", "consent_version": 1}


async def test_withdrawal_and_erasure(
    services: dict[str, RunningService], kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    agency = await _agency(kafka, "iom")
    sub = _submission(agency)
    sent = _submission_event(sub)
    await publish_events(kafka, [sent])
    [registered] = await _case_events(kafka, sent)
    case_id = data_of(registered)["case_id"]

    withdrawal = ev.ConsentWithdrawal(
        agency_id=agency, agency_case_ref=sub.agency_case_ref, withdrawn_at="2026-11-20T10:00:00Z"
    )  # type: ignore[arg-type]
    w_sent = _message(ev.CONSENT_WITHDRAWN, withdrawal, agency, sub.agency_case_ref)
    await publish_events(kafka, [w_sent])
    [changed] = await _case_events(kafka, w_sent)
    assert headers_of(changed)["ce_type"] == ev.CONSENT_CHANGED
    assert data_of(changed)["consent"]["given"] is False

    erasure = ev.ErasureRequest(
        agency_id=agency,
        agency_case_ref=sub.agency_case_ref,
        requested_at="2026-11-21T10:00:00Z",  # type: ignore[arg-type]
        basis="data_subject_request",
    )
    e_sent = _message(ev.ERASURE_REQUESTED, erasure, agency, sub.agency_case_ref)
    await publish_events(kafka, [e_sent])
    [erased] = await _case_events(kafka, e_sent)
    assert headers_of(erased)["ce_type"] == ev.CASE_ERASED
    answers = await collect(kafka, topics.agency_inbox(agency), _by_correlation(e_sent), expected=2)
    by_type = {headers_of(r)["ce_type"]: data_of(r) for r in answers}
    assert sorted(by_type) == [ev.INBOX_ERASURE_CONFIRMED, ev.INBOX_SUBMISSION_ACCEPTED]
    assert len(answers) == 2
    assert by_type[ev.INBOX_ERASURE_CONFIRMED]["agency_case_ref"] == sub.agency_case_ref
    assert by_type[ev.INBOX_SUBMISSION_ACCEPTED]["outcome"] == "erased"

    conn = await asyncpg.connect(database_urls["intake"])
    try:
        versions = await conn.fetch(
            "SELECT version, kind FROM consent_records WHERE case_id = $1 ORDER BY version",
            uuid.UUID(case_id),
        )
        assert [(r["version"], r["kind"]) for r in versions] == [(1, "given"), (2, "withdrawn")]
        master = decode_key(pydantic_secret("INTAKE_MASTER_KEY"))
        with pytest.raises(KeyDestroyed):
            await IntakeStore(conn).read_personal(case_id, master)
        key_row = await conn.fetchrow(
            "SELECT wrapped_key, destroyed_at FROM case_keys WHERE case_id = $1", uuid.UUID(case_id)
        )
        assert key_row["wrapped_key"] is None and key_row["destroyed_at"] is not None
        history = [
            r["action"]
            for r in await conn.fetch(
                "SELECT action FROM case_history WHERE case_id = $1 ORDER BY id", uuid.UUID(case_id)
            )
        ]
        assert history == ["registered", "consent_withdrawn", "erased"]
    finally:
        await conn.close()


async def test_operator_commands_history_and_key_rotation(
    services: dict[str, RunningService],
    kafka: KafkaConnection,
    database_urls: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import hashlib
    import hmac

    from typer.testing import CliRunner

    from ops.cli import app

    agency = await _agency(kafka, "iom")
    sent = _submission_event(_submission(agency))
    await publish_events(kafka, [sent])
    [registered] = await _case_events(kafka, sent)
    case_id = data_of(registered)["case_id"]

    runner = CliRunner()
    shown = await asyncio.to_thread(runner.invoke, app, ["intake", "case-history", case_id])
    assert shown.exit_code == 0, shown.output
    assert "registered" in shown.output and "given" in shown.output
    assert leaks_in(shown.output.encode()) == []

    new_key = bytes(range(32))
    monkeypatch.setenv("INTAKE_DUPLICATE_KEY", base64.b64encode(new_key).decode())
    monkeypatch.setenv("INTAKE_DUPLICATE_KEY_ID", "k2")
    rotated = await asyncio.to_thread(runner.invoke, app, ["intake", "rotate-duplicate-key"])
    assert rotated.exit_code == 0, rotated.output
    conn = await asyncpg.connect(database_urls["intake"])
    try:
        rows = await conn.fetch(
            "SELECT key_id, hash FROM identity_hashes WHERE case_id = $1", uuid.UUID(case_id)
        )
        assert await conn.fetchval("SELECT count(*) FROM identity_hashes WHERE key_id <> 'k2'") == 0
    finally:
        await conn.close()
    expected = hmac.new(
        new_key, f"document|SN:{MARK.upper()}P123".encode(), hashlib.sha256
    ).digest()
    assert {r["key_id"] for r in rows} == {"k2"}
    assert expected in {bytes(r["hash"]) for r in rows}


async def _database_text(dsn: str) -> list[tuple[str, bytes]]:
    """(table, row) of every row of every table this service's role owns, as text and with its
    bytea columns raw: what someone with a copy of the database would read."""
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            """SELECT schemaname, tablename FROM pg_tables
               WHERE tableowner = current_user AND schemaname NOT LIKE 'test_%'"""
        )
        rows: list[tuple[str, bytes]] = []
        for t in tables:
            name = f'"{t["schemaname"]}"."{t["tablename"]}"'
            for row in await conn.fetch(f"SELECT t::text AS text, t AS record FROM {name} t"):
                raw = b"".join(v for v in row["record"].values() if isinstance(v, bytes))
                rows.append((name, row["text"].encode() + raw))
        return rows
    finally:
        await conn.close()


def _record_text(record: Any) -> bytes:
    """Key, value, header names and header values of a record, one per line (so no marker is
    made up from the end of one and the start of the next)."""
    parts = [record.key or b"", record.value or b""]
    for name, value in record.headers or ():
        parts += [name.encode(), value or b""]
    return b"\n".join(parts)


async def _logs_holding(
    services: dict[str, RunningService], ids: list[str], timeout: float = 30
) -> dict[str, list[dict[str, Any]]]:
    """Each service's log as JSON records, once every one of ``ids`` is the correlation id of
    one of its records (or the timeout passed: the caller asserts)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        logs: dict[str, list[dict[str, Any]]] = {}
        for service in services.values():
            records = []
            for line in service.log().splitlines():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise AssertionError(f"{service.name}: not a JSON line: {line[:200]}") from exc
            logs[service.name] = records
        complete = all(
            set(ids) <= {r.get("correlation_id") for r in records} for records in logs.values()
        )
        if complete or asyncio.get_running_loop().time() > deadline:
            return logs
        await asyncio.sleep(0.5)


async def test_no_personal_data_on_any_topic_in_any_log_or_database(
    services: dict[str, RunningService],
    evidence: RunningService,
    kafka: KafkaConnection,
    database_urls: dict[str, str],
) -> None:
    """Runs last in this module: every flow above used the marked personal data. Readable
    personal data exists only inside intake's encrypted columns and in sealed disclosures, so no
    marker may show up anywhere in clear, in any case, intake's own database included."""
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        names = await admin.list_topics()
    finally:
        await admin.close()
    scanned = [
        t
        for t in names
        if not t.startswith("__") and topics.AGENCY_SUBMISSIONS.agency_of(t) is None
    ]  # everything but the agencies' own input
    assert topics.INTAKE_CASES in scanned and any(t.endswith(".inbox.v1") for t in scanned)
    records = await read_everything(kafka, scanned)
    sealed = [
        r
        for r in records
        if dict(r.headers or ()).get("ce_type") == ev.INBOX_DISCLOSURE_RECEIVED.encode()
    ]
    assert records and sealed  # the disclosure test above put sealed data in an inbox
    ours = [r for r in records if headers_of(r).get("ce_correlationid") in SENT]
    assert {t for t in scanned if t.endswith(".inbox.v1")} & {r.topic for r in ours}
    assert {topics.INTAKE_CASES, topics.REFERRAL_EVENTS} <= {r.topic for r in ours}
    leaks: list[str] = []
    for record in records:
        leaks += [f"{record.topic}: {m}" for m in leaks_in(_record_text(record))]

    # Every message this module sent went through all three services (a case event to referral,
    # the answer to the agency through notification): each log must show it as JSON lines.
    assert len(SENT) >= 10, SENT
    logs = await _logs_holding(services, SENT)
    for name, log_records in logs.items():
        missing = set(SENT) - {r.get("correlation_id") for r in log_records}
        assert not missing, f"log of {name} lacks the cases it processed: {sorted(missing)}"
    for service in (*services.values(), evidence):
        leaks += [f"log of {service.name}: {m}" for m in leaks_in(service.log().encode())]

    # Evidence has read every case event this module caused (its inbox holds their ids).
    cases_events = [r for r in ours if r.topic == topics.INTAKE_CASES]
    assert await _eventually(
        "SELECT count(*) = cardinality($1::text[]) FROM inbox WHERE event_id = ANY($1::text[])",
        [headers_of(r)["ce_id"] for r in cases_events],
        dsn=database_urls["evidence"],
        timeout=60,
    ), "evidence did not read this module's case events"
    for name, dsn in database_urls.items():
        rows = await _database_text(dsn)
        assert rows, f"{name}: nothing scanned"
        for table, blob in rows:
            leaks += [f"{name} {table}: {m}" for m in leaks_in(blob)]
    assert leaks == []
