"""The unit of work and typed dispatch (shared/unit.py) and the batch scope
(shared/db/batch_scope.py), on a fake connection. The consumer's use of them on the real
database is in tests/integration/test_batch_consumer.py."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from shared.contracts import events as ev
from shared.contracts import topics
from shared.db import batch_scope
from shared.kafka.inbound import InboundEvent, PermanentError
from shared.unit import Cause, Unit, catalogue_key, typed_handler
from tests import factories as f


class FakeConnection:
    def __init__(self) -> None:
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    async def execute(self, sql: str, *args: Any) -> str:
        self.statements.append((sql, args))
        return "INSERT"

    def outbox_rows(self) -> list[tuple[Any, ...]]:
        return [
            row
            for sql, args in self.statements
            if "INSERT INTO outbox" in sql
            for row in zip(*args, strict=True)
        ]


def _accepted(case_id: str = "c-1") -> ev.SubmissionAccepted:
    return ev.SubmissionAccepted(
        submission_id=str(uuid.uuid4()),
        agency_id="ngo-a",
        agency_case_ref="R-1",
        case_id=str(uuid.uuid4()) if case_id == "c-1" else case_id,
        outcome=ev.SubmissionOutcome.REGISTERED,
    )


def test_emit_fills_the_envelope_from_the_cause_and_the_key_from_the_catalogue() -> None:
    unit = Unit(FakeConnection(), None, "urn:test", Cause("conv-1", "cause-1", "x"))  # type: ignore[arg-type]
    payload = _accepted()
    out = unit.emit(ev.SUBMISSION_ACCEPTED, payload, topic=topics.INTAKE_CASES)
    assert out.key == payload.case_id  # intake.cases.v1 is keyed by case_id
    assert out.headers["ce_source"] == "urn:test"
    assert out.headers["ce_correlationid"] == "conv-1"
    assert out.headers["ce_causationid"] == "cause-1"
    assert unit.emitted == [out]


def test_the_inbox_is_keyed_by_the_subject_and_a_missing_key_is_refused() -> None:
    inbox = topics.agency_inbox("ngo-a")
    assert catalogue_key(inbox, _accepted(), "S-1") == "S-1"
    with pytest.raises(ValueError, match="keyed by ce_subject"):
        catalogue_key(inbox, _accepted(), None)
    listing = ev.ListingPublished(
        submission_id="m-1",
        agency_id="ngo-a",
        service_id="svc-1",
        status=ev.ListingPublicationStatus.ACTIVE,
    )
    with pytest.raises(ValueError, match="keyed by case_id"):
        catalogue_key(topics.REFERRAL_EVENTS, listing, None)  # must be given explicitly


async def test_flush_writes_at_once_outside_a_batch_and_once_per_batch_inside() -> None:
    conn = FakeConnection()
    alone = Unit(conn, None, "urn:test")  # type: ignore[arg-type]
    alone.emit(ev.SUBMISSION_ACCEPTED, _accepted(), topic=topics.INTAKE_CASES)
    await alone.flush()
    assert len(conn.statements) == 1 and alone.emitted == []

    conn = FakeConnection()
    async with batch_scope.batch_scope(conn) as scope:  # type: ignore[arg-type]
        emitted = []
        for _ in range(3):
            unit = Unit(conn, None, "urn:test")  # type: ignore[arg-type]
            emitted.append(
                unit.emit(ev.SUBMISSION_ACCEPTED, _accepted(), topic=topics.INTAKE_CASES)
            )
            await unit.flush()
        assert conn.statements == [], "deferred to the end of the batch"
        await scope.flush()
    assert len(conn.statements) == 1, "one statement for the batch"
    assert [row[0] for row in conn.outbox_rows()] == [e.event_id for e in emitted]


async def test_a_discarded_scope_writes_nothing() -> None:
    conn = FakeConnection()
    async with batch_scope.batch_scope(conn) as scope:  # type: ignore[arg-type]
        unit = Unit(conn, None, "urn:test")  # type: ignore[arg-type]
        unit.emit(ev.SUBMISSION_ACCEPTED, _accepted(), topic=topics.INTAKE_CASES)
        await unit.flush()
        scope.discard()
        await scope.flush()
    assert conn.statements == []
    assert batch_scope.current(conn) is None  # type: ignore[arg-type]


def _validated(event: Any) -> InboundEvent:
    return InboundEvent.from_record(f.record_of(event)).validated()


async def test_typed_dispatch_calls_the_handler_of_the_type_with_the_payload() -> None:
    seen: list[tuple[str, Any, Cause]] = []

    async def on_agency(payload: ev.AgencyRecord, unit: Unit[None]) -> None:
        seen.append(("agency", payload, unit.cause))

    handle = typed_handler({ev.AGENCY_REGISTERED: on_agency}, lambda conn: None, "urn:test")
    event = _validated(f.agency_event(f.agency("ngo-a")))
    await handle(event, FakeConnection())  # type: ignore[arg-type]
    [(name, payload, cause)] = seen
    assert name == "agency" and isinstance(payload, ev.AgencyRecord)
    assert payload.agency_id == "ngo-a"
    time = event.require_attributes().time
    assert time is not None
    assert cause == Cause(event.correlation_id, event.event_id, ev.AGENCY_REGISTERED, time)


async def test_typed_dispatch_ignores_what_it_is_told_to_and_refuses_the_rest() -> None:
    async def never(payload: Any, unit: Unit[None]) -> None:
        raise AssertionError("not this one")

    event = _validated(f.agency_event(f.agency("ngo-a")))
    ignoring = typed_handler({}, lambda conn: None, "urn:test", ignored={ev.AGENCY_REGISTERED})
    await ignoring(event, FakeConnection())  # type: ignore[arg-type]
    refusing = typed_handler({ev.CASE_CLOSED: never}, lambda conn: None, "urn:test")
    with pytest.raises(PermanentError, match="no handler"):
        await refusing(event, FakeConnection())  # type: ignore[arg-type]


async def test_typed_preload_hands_each_type_its_payloads_or_one_function_every_event() -> None:
    agencies = [_validated(f.agency_event(f.agency(f"ngo-{n}"))) for n in range(2)]
    listing = _validated(f.listing_event(f.listing("ngo-0")))
    by_type: list[tuple[str, list[str]]] = []

    async def load_agencies(stores: None, payloads: list[ev.AgencyRecord]) -> None:
        by_type.append(("agencies", [p.agency_id for p in payloads]))

    per_type = typed_handler(
        {}, lambda conn: None, "urn:test", preload={ev.AGENCY_REGISTERED: load_agencies}
    )
    await per_type.preload([*agencies, listing], FakeConnection())  # type: ignore[arg-type]
    assert by_type == [("agencies", ["ngo-0", "ngo-1"])]  # the listing's type has no load

    everything: list[str] = []

    async def load_all(stores: None, events: Sequence[InboundEvent]) -> None:
        everything.extend(e.event_id for e in events)

    one = typed_handler({}, lambda conn: None, "urn:test", preload=load_all)
    await one.preload([*agencies, listing], FakeConnection())  # type: ignore[arg-type]
    assert everything == [e.event_id for e in (*agencies, listing)]
