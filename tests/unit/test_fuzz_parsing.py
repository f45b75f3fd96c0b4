"""Property-based fuzzing (hypothesis) of what every inbound consumer does with a record before
its database is involved: 1,000 malformed records per inbound topic (tests/fuzzing.py), each must
end in the documented refusal — a rejection for the agency, a refused response, or a
:class:`PermanentError` (a dead letter) — and never in any other exception. What the services
then write must be storable in PostgreSQL (no NUL, no unpaired surrogate). The same records go
through the running services in tests/e2e/test_fuzz_inbound.py.

Also: records over their topic's size limit are refused without being parsed at all."""

from __future__ import annotations

import asyncio
import atexit
import json
from typing import Any, cast

import pytest
from faststream.kafka.message import KafkaMessage
from faststream.kafka.parser import AioKafkaParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.intake.handlers import SOURCE, IntakeHandlers, IntakeKeys
from services.intake.store import IntakeStore
from services.referral.decisions import RoutingPolicy
from services.referral.handlers import SOURCE as REFERRAL_SOURCE
from services.referral.handlers import ReferralHandlers
from services.referral.store import ReferralStore
from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import parse_headers
from shared.kafka import inbound
from shared.kafka.agency_input import Refusal
from shared.kafka.agency_messages import read_submission
from shared.kafka.consumer import ReliableConsumer, RetryPolicy
from shared.kafka.inbound import InboundEvent, PermanentError, tolerant_parser
from shared.unit import raw_handler
from tests import factories as f
from tests import fuzzing as fz

AGENCY = "fuzz-unit"
EXAMPLES = 1000
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# The fixed topics a service consumes (intake.keys.v1 is read by the agencies only).
FIXED = [t.name for t in topics.CATALOGUE if set(t.consumers) - {topics.Owner.AGENCY}]
SUBMISSIONS = topics.AGENCY_SUBMISSIONS.name(AGENCY)
LISTINGS = topics.AGENCY_LISTINGS.name(AGENCY)
RESPONSES = topics.AGENCY_RESPONSES.name(AGENCY)
# As services/referral/app.py wires it: the raw event, through a unit of work.
REFERRAL = ReferralHandlers(RoutingPolicy(max_attempts=3))
ON_LISTING = raw_handler(REFERRAL.on_listing, ReferralStore, REFERRAL_SOURCE)
ON_RESPONSE = raw_handler(REFERRAL.on_response, ReferralStore, REFERRAL_SOURCE)
TARGETS = {name: fz.target(name, AGENCY) for name in [*FIXED, SUBMISSIONS, LISTINGS, RESPONSES]}


def _event(record: fz.Malformed) -> InboundEvent:
    return InboundEvent.from_record(
        f.record(record.topic, record.value, list(record.headers), key=record.key)  # type: ignore[arg-type]
    )


class Database:
    """Stands in for the PostgreSQL connection: records every statement, answers "not found",
    and refuses what PostgreSQL would refuse (NUL in text, \\u0000 in jsonb, invalid UTF-8)."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    def _store(self, sql: str, args: tuple[Any, ...]) -> None:
        # An array parameter (a set-based statement) is checked element by element.
        values = [v for arg in args for v in (arg if isinstance(arg, list) else [arg])]
        for value in values:
            if isinstance(value, str):
                assert "\x00" not in value, f"NUL in a text parameter of {sql!r}"
                value.encode("utf-8")  # raises on an unpaired surrogate
                if "::jsonb" in sql:
                    assert "\\u0000" not in value, f"\\u0000 in a jsonb parameter of {sql!r}"
        self.statements.append((sql, args))

    async def execute(self, sql: str, *args: Any) -> str:
        self._store(sql, args)
        return "INSERT 0 1"

    async def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        for row in rows:
            self._store(sql, row)

    async def fetchrow(self, sql: str, *args: Any) -> None:
        self._store(sql, args)

    async def fetchval(self, sql: str, *args: Any) -> None:
        self._store(sql, args)

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        self._store(sql, args)
        return []

    def outbox(self) -> list[tuple[Any, ...]]:
        """Each outbox row (the statement takes one array per column)."""
        return [
            row
            for sql, args in self.statements
            if "INSERT INTO outbox" in sql
            for row in zip(*args, strict=True)
        ]


_LOOP = asyncio.new_event_loop()  # one for the module: a new loop per example is slow
atexit.register(_LOOP.close)


def _run(coro: Any) -> Any:
    return _LOOP.run_until_complete(coro)


def _outgoing_is_readable(row: tuple[Any, ...], expected_type: str) -> dict[str, Any]:
    """An outbox row (event_id, topic, key, headers json, body) as its consumer will read it."""
    _, _, _, headers_json, body = row
    headers = json.loads(headers_json)
    attributes = parse_headers([(k, v.encode()) for k, v in headers.items()])
    assert attributes.type == expected_type
    data: dict[str, Any] = json.loads(body)
    ev.PAYLOADS[expected_type].model_validate(data)
    return data


def test_the_generators_start_from_valid_messages() -> None:
    """The defects are what makes a generated record invalid: without them it is accepted."""
    for name, target in TARGETS.items():
        for base in target.bases:
            event = _event(fz.valid_record(target, base))
            if name == SUBMISSIONS:
                assert not isinstance(read_submission(event), Refusal), base.ce_type
            else:
                assert event.validated().payload is not None, (name, base.ce_type)


FIXED_RECORDS = st.one_of(*(fz.any_malformed(TARGETS[name]) for name in FIXED))


@FUZZ
@given(record=FIXED_RECORDS)
def test_fixed_topics_refuse_every_malformed_record_before_any_handler(
    record: fz.Malformed,
) -> None:
    """1,000 records over the five fixed topics (each has its 1,000 in the e2e test)."""
    with pytest.raises(PermanentError):
        _event(record).validated()


@FUZZ
@given(record=fz.any_malformed(TARGETS[SUBMISSIONS]))
def test_every_malformed_submission_is_rejected_to_the_agency(record: fz.Malformed) -> None:
    event = _event(record)
    assert isinstance(read_submission(event), Refusal)
    db = Database()
    keys = IntakeKeys(master_key=b"m" * 32, duplicate_key=b"d" * 32, duplicate_key_id="k1")
    # As services/intake/app.py wires it: the raw event, through a unit of work.
    _run(raw_handler(IntakeHandlers(keys).on_submission, IntakeStore, SOURCE)(event, cast(Any, db)))
    [row] = db.outbox()
    rejection = _outgoing_is_readable(row, ev.SUBMISSION_REJECTED)
    assert rejection["agency_id"] == AGENCY and rejection["submission_id"] == event.event_id


@FUZZ
@given(record=fz.any_malformed(TARGETS[LISTINGS]))
def test_every_malformed_listing_is_rejected_to_the_agency_before_the_directory(
    record: fz.Malformed,
) -> None:
    event = _event(record)
    db = Database()
    _run(ON_LISTING(event, cast(Any, db)))
    [row] = db.outbox()
    assert [sql for sql, _ in db.statements if "INSERT INTO outbox" not in sql] == []
    rejection = _outgoing_is_readable(row, ev.LISTING_REJECTED)
    assert rejection["agency_id"] == AGENCY and rejection["submission_id"] == event.event_id


@FUZZ
@given(record=fz.any_malformed(TARGETS[RESPONSES]))
def test_every_malformed_response_is_refused_to_the_agency(record: fz.Malformed) -> None:
    event = _event(record)
    db = Database()
    _run(ON_RESPONSE(event, cast(Any, db)))
    [row] = db.outbox()
    refused = _outgoing_is_readable(row, ev.RESPONSE_REFUSED)
    assert refused["agency_id"] == AGENCY and refused["response_id"] == event.event_id
    assert refused["error"] in ("invalid_response", "unknown_referral")


# ----- sizes: checked before anything is parsed -----


def _over_the_limit(name: str) -> fz.Malformed:
    """A record that would be valid but for its size: one byte over its topic's limit."""
    target = TARGETS[name]
    valid = fz.valid_record(target)
    others = valid.size - len(valid.value or b"")
    body = valid.value or b"{}"
    padded = b"{" + b" " * (target.spec.max_message_bytes + 1 - others - len(body)) + body[1:]
    record = fz.Malformed(name, valid.key, padded, valid.headers, ("size",))
    assert record.size == target.spec.max_message_bytes + 1
    return record


@pytest.fixture
def parsing_forbidden(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Any JSON decoding or CloudEvents header parsing fails the test."""
    calls: list[str] = []

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        calls.append("parsed")
        raise AssertionError("a record over the size limit was parsed")

    monkeypatch.setattr(json, "loads", forbidden)
    monkeypatch.setattr(inbound, "parse_headers", forbidden)
    return calls


def test_records_over_their_topic_limit_are_refused_unparsed(parsing_forbidden: list[str]) -> None:
    for name in TARGETS:
        event = _event(_over_the_limit(name))
        assert event.attributes is None and event.envelope_error is None  # headers untouched
        if name == SUBMISSIONS:
            rejection = read_submission(event)
            assert isinstance(rejection, Refusal) and "exceeds the limit" in rejection.reason
        elif name in (LISTINGS, RESPONSES):
            with pytest.raises(PermanentError, match="exceeds the limit"):
                event.data_as(ev.ServiceListing if name == LISTINGS else ev.ReferralResponse)
        else:
            with pytest.raises(PermanentError, match="exceeds the limit"):
                event.validated()
    assert parsing_forbidden == []


def test_the_size_guard_is_what_stops_parsing(parsing_forbidden: list[str]) -> None:
    """The same record one byte smaller is parsed: the monkeypatch does catch parsing."""
    record = _over_the_limit(topics.INTAKE_CASES)
    smaller = fz.Malformed(
        record.topic, record.key, b"{" + (record.value or b"")[2:], record.headers, ()
    )
    with pytest.raises(AssertionError, match="was parsed"):
        _event(smaller).validated()


class DeadLetters:
    topic = "test.dlq.v1"

    def __init__(self) -> None:
        self.published: list[tuple[InboundEvent, BaseException]] = []

    async def publish(self, event: InboundEvent, error: BaseException) -> None:
        self.published.append((event, error))


def _consumer(dead: DeadLetters, topic: str, max_message_bytes: int) -> ReliableConsumer:
    def no_pool() -> Any:
        raise AssertionError("the database was used")

    async def handler(event: InboundEvent, conn: Any) -> None:
        raise AssertionError("the handler ran")

    return ReliableConsumer(
        group="test",
        pool=no_pool,
        dead_letters=cast(Any, dead),
        handlers={topic: handler},
        retry=RetryPolicy(max_attempts=1),
        max_message_bytes=max_message_bytes,
    )


def test_the_consumer_dead_letters_records_over_the_topic_limit_unparsed(
    parsing_forbidden: list[str],
) -> None:
    dead = DeadLetters()
    limit = topics.spec(topics.INTAKE_CASES).max_message_bytes
    consumer = _consumer(dead, topics.INTAKE_CASES, max_message_bytes=4 * limit)
    _run(consumer.process(_event(_over_the_limit(topics.INTAKE_CASES))))
    [(event, error)] = dead.published
    assert str(error) == f"message of {limit + 1} bytes exceeds the limit of {limit}"
    assert event.offset == 0 and parsing_forbidden == []


def test_the_consumer_dead_letters_records_over_the_service_limit_undecoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A topic outside the catalogue (tests' scratch topics): the service's limit applies."""

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the body was decoded")

    monkeypatch.setattr(json, "loads", forbidden)
    dead = DeadLetters()
    consumer = _consumer(dead, "test.scratch.v1", max_message_bytes=2048)
    _run(consumer.process(InboundEvent.from_record(f.record("test.scratch.v1", b"{" * 4096))))
    [(_, error)] = dead.published
    assert str(error) == "message of 4097 bytes exceeds the limit of 2048"


# ----- FastStream's own parsing -----


@FUZZ
@given(headers=st.lists(st.tuples(st.text(max_size=8), st.none() | st.binary()), max_size=4))
def test_faststream_parsing_survives_any_header_values(
    headers: list[tuple[str, bytes | None]],
) -> None:
    """Null or non-UTF-8 header values must not fail FastStream's parser (outside our handler,
    the record would be skipped with neither a rejection nor a dead letter)."""
    record = f.record(topics.INTAKE_CASES, b"{}", cast(Any, headers))
    parser = AioKafkaParser(msg_class=KafkaMessage, regex=None)
    message = _run(tolerant_parser(record, parser.parse_message))
    assert message.raw_message is record
