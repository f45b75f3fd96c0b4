"""One submission, one connected trace (issue 21, decision 30): the services run with tracing on,
exporting over OTLP/HTTP to a small receiver this module starts; the spans of intake, referral
and notification (and the gateway's, for a submission over HTTP) share one trace id and form one
tree, the provider's inbox record carries that trace, and no span holds personal data."""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import OutgoingEvent
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from shared.tracing import parse_traceparent
from tests import factories as f
from tests.e2e.conftest import RunningService
from tests.e2e.directory import directory as _directory
from tests.e2e.kafka_helpers import collect, headers_of
from tests.e2e.personal_data import PERSONAL, leaks_in
from tests.e2e.test_gateway import _http_agency, binary

pytestmark = pytest.mark.e2e

TRACED = ("intake", "referral", "notification")


@dataclass(frozen=True)
class ExportedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    name: str
    kind: int
    links: tuple[str, ...]  # the span ids it links to (a batch: its events' handler spans)


class OtlpReceiver:
    """An OTLP/HTTP trace receiver (protobuf): keeps every request's bytes and spans."""

    def __init__(self) -> None:
        receiver = self
        self.raw: list[bytes] = []
        self.spans: list[ExportedSpan] = []
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.receive(body)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_: object) -> None:
                pass

        # Bound now, so that SERVICE_ENV can name the port; served by the fixture below.
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    spans.append(
                        ExportedSpan(
                            service,
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                            s.name,
                            s.kind,
                            tuple(link.span_id.hex() for link in s.links),
                        )
                    )
        with self._lock:
            self.raw.append(body)
            self.spans.extend(spans)

    def of_trace(self, trace_id: str) -> list[ExportedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def batches_of(
        self, spans: list[ExportedSpan]
    ) -> list[tuple[ExportedSpan, list[ExportedSpan]]]:
        """The batch spans that link to one of ``spans`` (their trace's handlers), each with
        its own children (the batch's statements)."""
        ids = {s.span_id for s in spans}
        with self._lock:
            batches = [s for s in self.spans if ids & set(s.links)]
            return [(b, [s for s in self.spans if s.parent_id == b.span_id]) for b in batches]


RECEIVER = OtlpReceiver()
_ENDPOINT = f"http://127.0.0.1:{RECEIVER.port}"
SERVICE_ENV = {
    **{f"{s.upper()}_OTLP_ENDPOINT": _ENDPOINT for s in (*TRACED, "gateway")},
    "OTEL_BSP_SCHEDULE_DELAY": "200",  # the SDK's batch export, every 0.2 s instead of 5 s
}


@pytest.fixture(scope="module", autouse=True)
def receiver() -> Iterator[OtlpReceiver]:
    thread = threading.Thread(target=RECEIVER.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield RECEIVER
    finally:
        RECEIVER.server.shutdown()
        RECEIVER.server.server_close()


def _kinds(spans: list[ExportedSpan], service: str) -> set[int]:
    return {s.kind for s in spans if s.service == service}


def _complete(spans: list[ExportedSpan], services: tuple[str, ...], root_parent: str) -> bool:
    """Every service has handled, queried and published in the trace, and every parent is in
    it (but the root's, which is ``root_parent``: "" or the agency's own span)."""
    ids = {s.span_id for s in spans}
    connected = all(s.parent_id in ids or s.parent_id == root_parent for s in spans)
    wanted = {SpanProto.SPAN_KIND_CONSUMER, SpanProto.SPAN_KIND_PRODUCER}
    return (
        connected
        and all(wanted <= _kinds(spans, s) for s in TRACED)
        and (set(services) <= {s.service for s in spans})
    )


async def _trace(
    receiver: OtlpReceiver, trace_id: str, services: tuple[str, ...], root_parent: str = ""
) -> list[ExportedSpan]:
    """The trace's spans once complete (or what came within the timeout)."""
    deadline = asyncio.get_running_loop().time() + 45
    while asyncio.get_running_loop().time() < deadline:
        spans = receiver.of_trace(trace_id)
        if _complete(spans, services, root_parent):
            await asyncio.sleep(1)  # what is still buffered: it must be connected too
            return receiver.of_trace(trace_id)
        await asyncio.sleep(0.3)
    return receiver.of_trace(trace_id)


async def _provider_inbox_trace(kafka: KafkaConnection, provider: str, sent_id: str) -> str:
    """The ce_traceparent of the referral-received the submission caused on the provider's
    inbox."""
    inbox = await collect(
        kafka,
        topics.agency_inbox(provider),
        lambda r: headers_of(r).get("ce_correlationid") == sent_id,
    )
    assert len(inbox) == 1
    headers = headers_of(inbox[0])
    assert headers["ce_type"] == ev.INBOX_REFERRAL_RECEIVED
    assert "ce_traceparent" in headers, "the inbox record carries the trace"
    return headers["ce_traceparent"]


def _assert_one_tree(spans: list[ExportedSpan], root_parent: str, inbox_traceparent: str) -> None:
    ids = {s.span_id for s in spans}
    orphans = [s for s in spans if s.parent_id and s.parent_id not in ids]
    roots = [s for s in spans if s.parent_id == root_parent or not s.parent_id]
    assert {s.service for s in spans} >= set(TRACED), spans
    assert [(s.name, s.parent_id) for s in orphans if s.parent_id != root_parent] == []
    assert len(roots) == 1, [(s.service, s.name, s.kind, s.parent_id) for s in roots]
    for service in TRACED:  # a handler and the relay's publishing of what it emitted
        assert _kinds(spans, service) >= {
            SpanProto.SPAN_KIND_CONSUMER,
            SpanProto.SPAN_KIND_PRODUCER,
        }, service
    # ...and the batch that applied the handlers: a span of its own, linked to them, its
    # statements (inbox claim, outbox insert, commit) its children
    batches = RECEIVER.batches_of(spans)
    assert {b.service for b, _ in batches} >= set(TRACED), batches
    for batch, children in batches:
        assert batch.name == f"{batch.service} batch"
        statements = [c for c in children if c.kind == SpanProto.SPAN_KIND_CLIENT]
        assert {c.name for c in statements} >= {"COMMIT postgresql"}, (batch, children)
    # the inbox record's parent is notification's handler span of the referral, in this tree
    inbox_parent = parse_traceparent(inbox_traceparent)
    assert inbox_parent is not None
    (handler,) = [s for s in spans if s.span_id == f"{inbox_parent.span_id:016x}"]
    assert handler.service == "notification" and handler.name == f"handle {ev.REFERRAL_REQUESTED}"


def _assert_nothing_personal(*identifiers: str) -> None:
    """No marked personal data in any span this module's services exported (names, attributes,
    resources, everything), nor a query parameter, key or subject (the agency's case reference
    is all three on intake's side), nor an agency's id."""
    exported = b"".join(RECEIVER.raw)
    assert exported, "nothing exported"
    assert leaks_in(exported) == []
    for identifier in identifiers:
        assert identifier.encode() not in exported, identifier


async def test_one_submission_makes_one_connected_trace_across_the_three_services(
    services: dict[str, RunningService],
    kafka: KafkaConnection,
    database_urls: dict[str, str],
    receiver: OtlpReceiver,
) -> None:
    referrer, provider, listing = await _directory(kafka, database_urls)
    submission = f.submission(
        referrer, personal=PERSONAL, profile=f.profile(return_area=listing.service_areas[0])
    )
    sent = f.submission_event(submission)  # without ce_traceparent: intake starts the trace
    await publish_events(kafka, [sent])

    traceparent = await _provider_inbox_trace(kafka, provider, sent.event_id)
    parent = parse_traceparent(traceparent)
    assert parent is not None and parent.trace_flags.sampled
    spans = await _trace(receiver, f"{parent.trace_id:032x}", TRACED)
    _assert_one_tree(spans, "", traceparent)
    (root,) = [s for s in spans if not s.parent_id]
    assert (root.service, root.name) == ("intake", f"handle {ev.CASE_SUBMITTED}")
    _assert_nothing_personal(submission.agency_case_ref, provider, referrer)


async def test_an_agencys_traceparent_is_the_parent_of_the_whole_trace(
    services: dict[str, RunningService],
    kafka: KafkaConnection,
    database_urls: dict[str, str],
    receiver: OtlpReceiver,
) -> None:
    referrer, provider, listing = await _directory(kafka, database_urls)
    submission = f.submission(
        referrer, personal=PERSONAL, profile=f.profile(return_area=listing.service_areas[0])
    )
    plain = f.submission_event(submission)
    agency_trace, agency_span = "5c1f4a2b9e8d7c6b5a4f3e2d1c0b0a09", "a1b2c3d4e5f60718"
    sent = OutgoingEvent(
        plain.topic,
        plain.key,
        {**plain.headers, "ce_traceparent": f"00-{agency_trace}-{agency_span}-01"},
        plain.body,
    )
    await publish_events(kafka, [sent])

    traceparent = await _provider_inbox_trace(kafka, provider, sent.event_id)
    assert traceparent.startswith(f"00-{agency_trace}-"), "the agency's trace comes back to it"
    spans = await _trace(receiver, agency_trace, TRACED, root_parent=agency_span)
    _assert_one_tree(spans, agency_span, traceparent)
    (root,) = [s for s in spans if s.parent_id == agency_span]
    assert (root.service, root.name) == ("intake", f"handle {ev.CASE_SUBMITTED}")
    _assert_nothing_personal(submission.agency_case_ref, provider, referrer)


async def test_a_submission_over_http_continues_the_w3c_traceparent_header(
    services: dict[str, RunningService],
    gateway: RunningService,
    kafka: KafkaConnection,
    database_urls: dict[str, str],
    receiver: OtlpReceiver,
) -> None:
    _, provider, listing = await _directory(kafka, database_urls)
    referrer, auth = await _http_agency(kafka, "iomhttp")
    submission = f.submission(
        referrer, personal=PERSONAL, profile=f.profile(return_area=listing.service_areas[0])
    )
    sent = f.submission_event(submission)
    headers, body = binary(sent)
    client_trace, client_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    headers["traceparent"] = f"00-{client_trace}-{client_span}-01"  # the HTTP client's tracing
    async with httpx.AsyncClient(base_url=gateway.url(""), timeout=30) as http:
        response = await http.post("/v1/submissions", content=body, headers=headers, auth=auth)
    assert response.status_code == 202, response.text

    traceparent = await _provider_inbox_trace(kafka, provider, sent.event_id)
    assert traceparent.startswith(f"00-{client_trace}-")
    spans = await _trace(receiver, client_trace, (*TRACED, "gateway"), root_parent=client_span)
    _assert_one_tree(spans, client_span, traceparent)
    (root,) = [s for s in spans if s.parent_id == client_span]
    assert (root.service, root.kind) == ("gateway", SpanProto.SPAN_KIND_SERVER)
    (intake,) = [s for s in spans if s.name == f"handle {ev.CASE_SUBMITTED}"]
    assert intake.parent_id == root.span_id, "intake's span is the gateway request's child"
    _assert_nothing_personal(submission.agency_case_ref, provider, referrer)
