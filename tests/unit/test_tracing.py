"""Tracing's pure parts (decision 30): the W3C traceparent read and written, the trace context
in and out of the CloudEvents headers, which spans are made and what they may say."""

from __future__ import annotations

import json
from collections import namedtuple
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, TraceFlags
from standardwebhooks import Webhook

from services.gateway.ingress import incoming_traceparent, with_traceparent
from services.notification.secret_store import new_secret
from services.notification.store import DueWebhook
from services.notification.webhooks import _post
from shared import tracing
from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import OutgoingEvent
from shared.kafka.inbound import InboundEvent
from shared.unit import Unit
from tests import factories as f

AGENCY_TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
AGENCY_TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
AGENCY_SPAN_ID = 0x00F067AA0BA902B7


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, its spans kept in memory (and off again afterwards)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.install(None)


def _submission(traceparent: str | None = None) -> InboundEvent:
    sent = f.submission_event(f.submission("iom-sn"))
    headers = dict(sent.headers)
    if traceparent is not None:
        headers["ce_traceparent"] = traceparent
    event = OutgoingEvent(sent.topic, sent.key, headers, sent.body)
    return InboundEvent.from_record(f.record_of(event))


def _emit_one(unit: Unit[None]) -> OutgoingEvent:
    agency = f.agency("ngo-jamm")
    return unit.emit(ev.AGENCY_REGISTERED, agency, topic=topics.DIRECTORY_AGENCIES)


def _unit() -> Unit[None]:
    return Unit(conn=None, stores=None, source="/test")  # type: ignore[arg-type]


# ----- the traceparent -----


def test_a_traceparent_is_read_and_written_back_the_same() -> None:
    parsed = tracing.parse_traceparent(AGENCY_TRACE)
    assert parsed is not None
    assert (parsed.trace_id, parsed.span_id) == (AGENCY_TRACE_ID, AGENCY_SPAN_ID)
    assert parsed.trace_flags.sampled and parsed.is_remote
    assert tracing.format_traceparent(parsed) == AGENCY_TRACE
    unsampled = tracing.parse_traceparent(AGENCY_TRACE[:-2] + "00")
    assert unsampled is not None and not unsampled.trace_flags.sampled


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero span id
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # a version not known
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
        AGENCY_TRACE + " ",
    ],
)
def test_an_invalid_traceparent_counts_as_none(value: str | None) -> None:
    assert tracing.parse_traceparent(value) is None
    # ...and what follows it starts a trace of its own, not a child of whatever is current
    assert not trace.get_current_span(tracing.context_from(value)).get_span_context().is_valid


def test_only_the_sampled_flag_is_kept() -> None:
    parsed = tracing.parse_traceparent(AGENCY_TRACE[:-2] + "ff")
    assert parsed is not None and parsed.trace_flags == TraceFlags(TraceFlags.SAMPLED)


def test_topic_family_hides_the_agency() -> None:
    assert tracing.topic_family(topics.agency_inbox("ngo-jamm")) == "agency.<agency_id>.inbox.v1"
    assert tracing.topic_family(topics.INTAKE_CASES) == topics.INTAKE_CASES


# ----- in and out of the envelope -----


def test_a_handler_span_is_the_child_of_the_event_and_the_parent_of_what_it_emits(
    spans: InMemorySpanExporter,
) -> None:
    with tracing.handling(_submission(AGENCY_TRACE), "intake"):
        emitted = _emit_one(_unit())
    (span,) = spans.get_finished_spans()
    assert span.kind is SpanKind.CONSUMER and span.name == f"handle {ev.CASE_SUBMITTED}"
    assert span.parent is not None and span.parent.span_id == AGENCY_SPAN_ID
    assert span.context.trace_id == AGENCY_TRACE_ID
    assert emitted.headers["ce_traceparent"] == tracing.format_traceparent(span.context)
    assert dict(span.attributes or {}) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": "agency.<agency_id>.submissions.v1",
        "messaging.consumer.group.name": "intake",
        "cloudevents.event_type": ev.CASE_SUBMITTED,
    }


def test_an_event_without_a_traceparent_starts_a_trace_even_inside_a_batch(
    spans: InMemorySpanExporter,
) -> None:
    events = [_submission(), _submission(AGENCY_TRACE)]
    with tracing.batch("intake", events):
        for event in events:
            with tracing.handling(event, "intake"):
                pass
    first, second, batch = spans.get_finished_spans()
    assert batch.name == "intake batch" and batch.parent is None
    assert first.parent is None, "a new trace, not a child of the batch"
    assert first.context.trace_id not in (batch.context.trace_id, AGENCY_TRACE_ID)
    assert second.context.trace_id == AGENCY_TRACE_ID
    # the batch links to each of its events' spans, in their own traces
    assert [link.context for link in batch.links] == [first.context, second.context]


def test_a_failing_handler_marks_its_span_without_its_message(
    spans: InMemorySpanExporter,
) -> None:
    with pytest.raises(ValueError), tracing.handling(_submission(), "intake"):
        raise ValueError("Zqmark the input")
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.status.description is None and span.events == ()
    assert (span.attributes or {})["error.type"] == "ValueError"


def test_tracing_off_passes_an_agency_trace_through_and_starts_none() -> None:
    assert not tracing.enabled()
    with tracing.handling(_submission(AGENCY_TRACE), "intake"):
        passed = _emit_one(_unit())
    with tracing.handling(_submission(), "intake"):
        started = _emit_one(_unit())
    assert passed.headers["ce_traceparent"] == AGENCY_TRACE
    assert "ce_traceparent" not in started.headers
    assert tracing.producing([passed]) == []


def test_a_replayed_registry_event_makes_no_span(spans: InMemorySpanExporter) -> None:
    event = _submission(AGENCY_TRACE)
    replayed = InboundEvent(**{**{s: getattr(event, s) for s in event.__slots__}, "replayed": True})
    with tracing.handling(replayed, "intake"):
        pass
    assert spans.get_finished_spans() == ()


def test_a_produce_span_is_the_child_of_the_emitting_span(spans: InMemorySpanExporter) -> None:
    with tracing.handling(_submission(AGENCY_TRACE), "notification"):
        inbox = _unit().emit(
            ev.INBOX_LISTING_PUBLISHED,
            f.listing("ngo-jamm"),
            topic=topics.agency_inbox("ngo-jamm"),
            key="svc",
        )
    produced = tracing.producing([inbox])
    tracing.end_all(produced)
    handler, produce = spans.get_finished_spans()
    assert produce.kind is SpanKind.PRODUCER and produce.parent is not None
    assert produce.parent.span_id == handler.context.span_id
    assert (produce.attributes or {})["messaging.destination.name"] == "agency.<agency_id>.inbox.v1"
    assert "ngo-jamm" not in produce.name + json.dumps(dict(produce.attributes or {}))


# ----- database statements -----

LoggedQuery = namedtuple(
    "LoggedQuery", "query args timeout elapsed exception conn_addr conn_params"
)


def test_a_statement_span_has_the_sql_but_never_its_parameters(
    spans: InMemorySpanExporter,
) -> None:
    record = LoggedQuery(
        "\n  INSERT INTO cases (case_id, profile) VALUES ($1, $2)",
        ("c-1", "Zqmark personal"),
        30,
        0.002,
        None,
        ("127.0.0.1", 5432),
        "password=secret",
    )
    tracing._record_query(record)  # outside any span: the relay's polling, say
    assert spans.get_finished_spans() == ()
    with tracing.handling(_submission(), "intake"):
        tracing._record_query(record)
    statement, handler = spans.get_finished_spans()
    assert statement.kind is SpanKind.CLIENT and statement.name == "INSERT postgresql"
    assert statement.parent is not None and statement.parent.span_id == handler.context.span_id
    assert dict(statement.attributes or {}) == {
        "db.system.name": "postgresql",
        "db.operation.name": "INSERT",
        "db.query.text": record.query,
    }
    assert statement.end_time is not None and statement.start_time is not None
    assert statement.end_time - statement.start_time == 2_000_000


def test_a_failed_statement_says_the_error_class_only(spans: InMemorySpanExporter) -> None:
    error = RuntimeError("Key (ref)=(Zqmark) already exists")
    with tracing.handling(_submission(), "intake"):
        tracing._record_query(LoggedQuery("UPDATE x SET y = $1", ("v",), 30, 0.0, error, "", ""))
    statement = spans.get_finished_spans()[0]
    assert statement.status.description is None
    assert "Zqmark" not in json.dumps(dict(statement.attributes or {}))


# ----- the gateway and the webhook -----


def test_the_gateway_takes_the_events_own_traceparent_over_the_http_header() -> None:
    own = [("ce_id", b"1"), ("ce_traceparent", AGENCY_TRACE.encode())]
    other = "00-11111111111111111111111111111111-2222222222222222-01"
    assert incoming_traceparent(own, other) == AGENCY_TRACE
    assert incoming_traceparent([("ce_id", b"1")], other) == other
    assert incoming_traceparent([("ce_id", b"1")], None) is None


def test_the_gateway_puts_its_span_on_the_record_but_never_hides_a_malformed_one() -> None:
    ours = "00-11111111111111111111111111111111-2222222222222222-01"
    replaced = with_traceparent([("ce_id", b"1"), ("ce_traceparent", AGENCY_TRACE.encode())], ours)
    assert replaced == [("ce_id", b"1"), ("ce_traceparent", ours.encode())]
    assert with_traceparent([("ce_id", b"1")], ours) == [
        ("ce_id", b"1"),
        ("ce_traceparent", ours.encode()),
    ]
    malformed = [("ce_id", b"1"), ("ce_traceparent", b"not-a-traceparent")]
    assert with_traceparent(malformed, ours) == malformed  # refused as intake would refuse it
    assert with_traceparent([("ce_id", b"1")], None) == [("ce_id", b"1")]


def _delivery(body: bytes) -> DueWebhook:
    return DueWebhook("msg_1", "ngo-jamm", "n-1", body, 1, "https://example.org/hook", None, [])


async def _posted(body: bytes) -> httpx.Request:
    requests: list[httpx.Request] = []

    def receive(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(204)

    secret = new_secret()
    async with httpx.AsyncClient(transport=httpx.MockTransport(receive)) as client:
        with tracing.webhook_request(body):
            tried = await _post(client, _delivery(body), [secret], None)
    assert tried.http_status == 204
    (request,) = requests
    # the signature still covers exactly the body, whatever the tracing headers
    Webhook(secret.get_secret_value()).verify(request.content, dict(request.headers))
    return request


async def test_a_webhook_request_carries_its_spans_traceparent(
    spans: InMemorySpanExporter,
) -> None:
    body = json.dumps({"id": "n-1", "traceparent": AGENCY_TRACE, "data": {}}).encode()
    request = await _posted(body)
    (span,) = spans.get_finished_spans()
    assert span.kind is SpanKind.CLIENT and span.parent is not None
    assert span.parent.span_id == AGENCY_SPAN_ID
    assert request.headers["traceparent"] == tracing.format_traceparent(span.context)


async def test_tracing_off_a_webhook_request_carries_the_inbox_events_traceparent() -> None:
    body = json.dumps({"id": "n-1", "traceparent": AGENCY_TRACE, "data": {}}).encode()
    assert (await _posted(body)).headers["traceparent"] == AGENCY_TRACE
    untraced = await _posted(json.dumps({"id": "n-1", "data": {}}).encode())
    assert "traceparent" not in untraced.headers
