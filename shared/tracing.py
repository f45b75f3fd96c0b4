"""OpenTelemetry tracing (docs/decisions/0030-tracing.md): W3C trace context carried in every
event's ``ce_traceparent``, spans for each handled event, database statement, produce and
webhook request, exported over OTLP/HTTP when ``<SERVICE>_OTLP_ENDPOINT`` is set.

Off (the default) nothing is recorded and nothing is exported: the OpenTelemetry API's no-op
tracer only passes the context it is given through, so an agency's ``ce_traceparent`` still
reaches every event that follows (its inbox answer included), and no new trace is started.

What a span may say: the CloudEvents type, the topic's family (``agency.<agency_id>...``, never
the agency's own topic name), the consumer group, a statement's SQL text (never its
parameters), an HTTP status. Never a key, a subject, an id, a URL or an error's message: those
can carry what an agency wrote, and an error's text (PostgreSQL's "Key (...)=(...)") values.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from pydantic import Field
from pydantic_settings import BaseSettings

from shared.contracts.topics import family_of

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from shared.contracts.envelope import OutgoingEvent
    from shared.db import DbConnection
    from shared.kafka.inbound import InboundEvent

INSTRUMENTATION = "referral-exchange"
HEADER = "ce_traceparent"  # the CloudEvents distributed-tracing extension in Kafka binary mode
QUERY_TEXT_MAX = 2000  # a statement's text is code; a long one (a batch's CTE) is cut


class TracingSettings(BaseSettings):
    """The tracing settings every process has (with its own prefix: ``INTAKE_OTLP_ENDPOINT``)."""

    otlp_endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        description="OTLP/HTTP collector base URL (spans go to <it>/v1/traces); unset: no "
        "tracing. The exporter's OTEL_EXPORTER_OTLP_* headers, timeout, compression apply.",
    )
    trace_sample_ratio: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Share of new traces recorded; a trace an agency or an upstream service "
        "started keeps its sampled flag.",
    )


_tracer: trace.Tracer = trace.get_tracer(INSTRUMENTATION)
_provider: TracerProvider | None = None
# The batch span being applied, which links to each of its events' handler spans.
_batch: contextvars.ContextVar[Span | None] = contextvars.ContextVar("batch_span", default=None)


def enabled() -> bool:
    """True once :func:`configure` installed a recording tracer (an OTLP endpoint is set)."""
    return _provider is not None


def configure(service: str, settings: TracingSettings) -> bool:
    """Record and export this process's spans if an OTLP endpoint is set; else do nothing (the
    API's no-op tracer stays: no SDK is even imported). Call once, before the database pool is
    made (its connections are instrumented only when tracing is on)."""
    if settings.otlp_endpoint is None:
        return False
    # Imported here: a service with tracing off loads none of the SDK or the exporter.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
    )
    endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    # Not made the global provider: only this module's spans are recorded, whose attributes it
    # controls. A library that traces itself once one is set (FastAPI 0.165 does: paths, query
    # strings, exception messages) stays silent.
    install(provider)
    return True


def install(provider: TracerProvider | None) -> None:
    """Use ``provider``'s tracer here (None: back to the API's, no-op unless set globally).
    :func:`configure` calls it; unit tests give an in-memory provider."""
    global _tracer, _provider
    _provider = provider
    _tracer = (
        provider.get_tracer(INSTRUMENTATION) if provider else trace.get_tracer(INSTRUMENTATION)
    )


def shutdown() -> None:
    """Export what is still buffered (also done at exit by the SDK itself)."""
    if _provider is not None:
        _provider.shutdown()


# ----- the W3C traceparent, in and out of the envelope -----

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def parse_traceparent(value: str | None) -> SpanContext | None:
    """The span context a W3C ``traceparent`` (version 00) names; None if there is none or it
    is invalid (all-zero ids included), which W3C says to treat as absent: a new trace."""
    if not value:
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    trace_id, span_id = int(match.group(1), 16), int(match.group(2), 16)
    if trace_id == 0 or span_id == 0:
        return None
    flags = TraceFlags(int(match.group(3), 16) & TraceFlags.SAMPLED)
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)


def format_traceparent(span_context: SpanContext) -> str | None:
    """``00-<trace id>-<span id>-<flags>``, or None for an invalid (no-op) span context."""
    if not span_context.is_valid:
        return None
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}"
        f"-{int(span_context.trace_flags):02x}"
    )


def context_from(traceparent: str | None) -> Context:
    """A context whose parent is ``traceparent``'s span; an empty one (a new trace) without a
    valid one — never the current context: an event's span belongs to its own trace."""
    parent = parse_traceparent(traceparent)
    if parent is None:
        return Context()
    return trace.set_span_in_context(NonRecordingSpan(parent), Context())


def current_traceparent() -> str | None:
    """The traceparent of the span now active (a handler's), for the events it emits."""
    return format_traceparent(trace.get_current_span().get_span_context())


def traceparent_of(headers: Mapping[str, str]) -> str | None:
    return headers.get(HEADER)


def topic_family(topic: str) -> str:
    """An agency's topic by its family (``agency.<agency_id>.inbox.v1``), a fixed one as is."""
    family = family_of(topic)
    return family.template.name if family is not None else topic


# ----- spans -----


@contextlib.contextmanager
def handling(event: InboundEvent, group: str) -> Iterator[None]:
    """The span of one consumed event's handler, a child of its ``ce_traceparent`` (or a new
    trace): what the handler emits carries it, its statements are its children. An event
    replayed from a registry at start-up gets none (it was traced when it first came)."""
    if event.replayed:
        yield
        return
    attributes = event.attributes
    ce_type = attributes.type if attributes is not None else None
    parent = context_from(attributes.traceparent if attributes is not None else None)
    span_attributes: dict[str, Any] = {}
    if _provider is not None:  # computed only when recorded
        span_attributes = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic_family(event.topic),
            "messaging.consumer.group.name": group,
        }
        if ce_type is not None:
            span_attributes["cloudevents.event_type"] = ce_type
    name = f"handle {ce_type}" if ce_type is not None else "handle record"
    with _tracer.start_as_current_span(
        name,
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=span_attributes,
        record_exception=False,  # its message can quote the input; the type is set below
        set_status_on_exception=False,
    ) as span:
        batch_span = _batch.get()
        if batch_span is not None:
            batch_span.add_link(span.get_span_context())
        try:
            yield
        except BaseException as exc:
            _failed(span, exc)
            raise


@contextlib.contextmanager
def batch(group: str, events: Sequence[InboundEvent]) -> Iterator[None]:
    """The span of one batch's transaction: its statements for all its events (the inbox
    claim, the preload, the outbox insert, the commit) are its children. A trace of its own,
    linked to each of its events' handler spans (each in its event's trace)."""
    if _provider is None:
        yield
        return
    with _tracer.start_as_current_span(
        f"{group} batch",
        context=Context(),
        kind=SpanKind.INTERNAL,
        attributes={"messaging.batch.message_count": len(events)},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        token = _batch.set(span)
        try:
            yield
        except BaseException as exc:
            _failed(span, exc)
            raise
        finally:
            _batch.reset(token)


def producing(events: Sequence[OutgoingEvent]) -> list[Span]:
    """One started PRODUCER span per event, a child of the span that emitted it (its
    ``ce_traceparent``); end them with :func:`end_all` once the broker acknowledged."""
    if _provider is None:
        return []
    return [
        _tracer.start_span(
            f"publish {topic_family(e.topic)}",
            context=context_from(traceparent_of(e.headers)),
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.destination.name": topic_family(e.topic),
                "cloudevents.event_type": e.headers.get("ce_type", ""),
            },
        )
        for e in events
    ]


def end_all(spans: Sequence[Span], error: BaseException | None = None) -> None:
    for span in spans:
        if error is not None:
            _failed(span, error)
        span.end()


@contextlib.contextmanager
def webhook_request(structured_event: bytes) -> Iterator[Span]:
    """The span of one webhook attempt, a child of the inbox event it delivers (its
    ``traceparent`` member: the structured CloudEvent is the request's body). Tracing off, the
    span is the event's own context, passed through: the request's ``traceparent`` header is
    then the inbox event's."""
    try:
        document = json.loads(structured_event)
        traceparent = document.get("traceparent") if isinstance(document, dict) else None
    except ValueError:
        traceparent = None
    with _tracer.start_as_current_span(
        "webhook POST",
        context=context_from(traceparent if isinstance(traceparent, str) else None),
        kind=SpanKind.CLIENT,
        attributes={"http.request.method": "POST"} if _provider is not None else None,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


@contextlib.contextmanager
def http_ingress(name: str, traceparent: str | None) -> Iterator[Span]:
    """The gateway's span of one request publishing a message, a child of ``traceparent``."""
    with _tracer.start_as_current_span(
        name,
        context=context_from(traceparent),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "POST"} if _provider is not None else None,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def traceparent_header() -> dict[str, str]:
    """``{"traceparent": ...}`` for an HTTP request made in the current span (empty if none):
    W3C Trace Context's header, which HTTP servers' tracing reads."""
    value = current_traceparent()
    return {"traceparent": value} if value is not None else {}


def http_outcome(status: int | None, error: str | None) -> None:
    """The current (webhook) span's response status, and its error class if it failed."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    if status is not None:
        span.set_attribute("http.response.status_code", status)
    if error is not None:
        span.set_status(Status(StatusCode.ERROR))
        span.set_attribute("error.type", error)


def _failed(span: Span, error: BaseException) -> None:
    span.set_status(Status(StatusCode.ERROR))  # no description: the message may quote input
    span.set_attribute("error.type", type(error).__name__)


# ----- database statements (asyncpg's query logger) -----

_OPERATION = re.compile(r"\s*(?:--[^\n]*\n\s*)*([A-Za-z]+)")


def _operation(query: str) -> str:
    match = _OPERATION.match(query)
    return match.group(1).upper() if match else "QUERY"


def _record_query(record: Any) -> None:
    """A CLIENT span for one statement asyncpg ran (``record``: its LoggedQuery), a child of the
    span that was active when it finished: asyncpg calls this with ``loop.call_soon``, which
    keeps that context. Statements outside any span (the relay's polling, the NOTIFY listener)
    are not recorded: they would each be a trace of their own, every second. Never
    ``record.args`` (the parameters) nor ``record.conn_params`` (it holds the password)."""
    active = trace.get_current_span().get_span_context()
    if not active.is_valid or active.is_remote or not active.trace_flags.sampled:
        return
    end = time.time_ns()
    operation = _operation(record.query)
    span = _tracer.start_span(
        f"{operation} postgresql",
        kind=SpanKind.CLIENT,
        start_time=end - int(record.elapsed * 1e9),
        attributes={
            "db.system.name": "postgresql",
            "db.operation.name": operation,
            "db.query.text": record.query[:QUERY_TEXT_MAX],
        },
    )
    if record.exception is not None:
        _failed(span, record.exception)
    span.end(end_time=end)


async def instrument_connection(conn: DbConnection) -> None:
    """asyncpg pool ``init``: trace this connection's statements (only if tracing is on)."""
    if _provider is not None:
        conn.add_query_logger(_record_query)
