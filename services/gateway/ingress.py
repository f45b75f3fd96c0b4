"""An HTTP CloudEvent (HTTP protocol binding 1.0, binary or structured mode) turned into the
Kafka record the agency would have written itself, and checked by the very rules its consumer
applies (shared.kafka.agency_messages), so the sender gets the same refusal synchronously, as a
400, instead of on its inbox later.

Pure: no Kafka, no HTTP framework. The record is published by the caller, as the sender's own
principal, on the sender's own topic."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import CONTENT_TYPE, EnvelopeError, parse_headers
from shared.kafka.agency_input import Refusal
from shared.kafka.agency_messages import (
    LISTING_KEY,
    key_field,
    read_answer,
    read_listing,
    read_submission,
)
from shared.kafka.inbound import InboundEvent
from shared.tracing import HEADER as TRACEPARENT
from shared.tracing import parse_traceparent

STRUCTURED = "application/cloudevents+json"
# Structured-mode members that are not attributes (the data) or are named otherwise in Kafka.
_DATA_MEMBERS = frozenset({"data", "data_base64"})


class Family(StrEnum):
    """The agency topics the gateway writes to, as they appear in its URLs."""

    SUBMISSIONS = "submissions"
    LISTINGS = "listings"
    RESPONSES = "responses"


_TOPIC_FAMILY = {
    Family.SUBMISSIONS: topics.AGENCY_SUBMISSIONS,
    Family.LISTINGS: topics.AGENCY_LISTINGS,
    Family.RESPONSES: topics.AGENCY_RESPONSES,
}
_READERS: dict[Family, Callable[[InboundEvent], object]] = {
    Family.SUBMISSIONS: read_submission,
    Family.LISTINGS: read_listing,
    Family.RESPONSES: read_answer,
}
# A response is about a case, a referral or a structural report: its key is the first it names
# (the topic has one partition; the key keeps one thing's messages together if it gets more).
_RESPONSE_KEYS = ("case_id", "referral_id", "report_id", "handover_id")


def topic_of(family: Family, agency_id: str) -> str:
    return _TOPIC_FAMILY[family].name(agency_id)


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    event_id: str
    ce_type: str


@dataclass(frozen=True, slots=True)
class Checked:
    """A message its consumer will apply (or answer on the inbox for what only it can know, such
    as an unknown case): the record to publish."""

    record: KafkaRecord


def binary_record(headers: Mapping[str, str], body: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """Binary mode: ``ce-*`` HTTP headers are the attributes, the body is the data."""
    kafka_headers = [
        ("ce_" + name.lower()[3:], value.encode())
        for name, value in headers.items()
        if name.lower().startswith("ce-")
    ]
    content_type = headers.get("content-type")
    if content_type is not None:
        kafka_headers.append(("content-type", content_type.encode()))
    return kafka_headers, body


def structured_record(body: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """Structured mode: one JSON object holding the attributes and ``data``."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EnvelopeError([("(body)", f"not a JSON object ({type(exc).__name__})")]) from None
    if not isinstance(document, dict):
        raise EnvelopeError([("(body)", "not a JSON object")])
    if "data_base64" in document:
        raise EnvelopeError([("data_base64", f"the data must be JSON ({CONTENT_TYPE})")])
    headers = []
    for name, value in document.items():
        if name in _DATA_MEMBERS:
            continue
        if not isinstance(value, str):
            raise EnvelopeError([(name, "a CloudEvents attribute must be a string here")])
        if name == "datacontenttype":
            headers.append(("content-type", value.encode()))
        else:
            headers.append(("ce_" + name.lower(), value.encode()))
    data = json.dumps(document.get("data"), ensure_ascii=False, separators=(",", ":"))
    return headers, data.encode()


def incoming_traceparent(
    headers: list[tuple[str, bytes]], http_traceparent: str | None
) -> str | None:
    """The trace the message continues: its own ``traceparent`` attribute (``ce-traceparent``
    in binary mode, the ``traceparent`` member in structured mode), else the request's W3C
    ``traceparent`` header (what HTTP clients' tracing sends); None: it starts one."""
    own = next((v for k, v in headers if k == TRACEPARENT), None)
    if own is not None:
        return own.decode("utf-8", "replace")
    return http_traceparent


def with_traceparent(
    headers: list[tuple[str, bytes]], traceparent: str | None
) -> list[tuple[str, bytes]]:
    """``headers`` carrying ``traceparent`` (the gateway's span, a child of the incoming
    trace). Unchanged when there is none, or when the sender's own is malformed: that is
    refused as its consumer would refuse it, not silently replaced."""
    own = next((v for k, v in headers if k == TRACEPARENT), None)
    if traceparent is None or (
        own is not None and parse_traceparent(own.decode("utf-8", "replace")) is None
    ):
        return headers
    return [(k, v) for k, v in headers if k != TRACEPARENT] + [(TRACEPARENT, traceparent.encode())]


def _key(family: Family, ce_type: str | None, value: bytes) -> bytes | None:
    try:
        document = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None  # refused as not JSON before the key is looked at
    if not isinstance(document, dict):
        return None
    if family is Family.SUBMISSIONS:
        names: tuple[str, ...] = (key_field(ce_type),)
    elif family is Family.LISTINGS:
        names = (LISTING_KEY,)
    else:
        names = _RESPONSE_KEYS
    found = next((document[n] for n in names if isinstance(document.get(n), str)), None)
    return found.encode() if found is not None else None


def check(
    family: Family,
    agency_id: str,
    headers: list[tuple[str, bytes]],
    value: bytes,
) -> Checked | Refusal:
    """The record for ``agency_id``'s own topic of ``family``, or the refusal its consumer would
    have sent (the same reason and field errors)."""
    topic = topic_of(family, agency_id)
    spec = _TOPIC_FAMILY[family].spec(agency_id)
    attributes, envelope_error = None, None
    try:
        attributes = parse_headers(headers)
    except EnvelopeError as exc:
        envelope_error = exc
    ce_type = attributes.type if attributes is not None else None
    key = _key(family, ce_type, value)
    event = InboundEvent(
        topic,
        -1,
        -1,
        key,
        value,
        tuple(headers),
        attributes,
        envelope_error,
        sender_agency=agency_id,
        max_bytes=spec.max_message_bytes,
    )
    result = _READERS[family](event)
    if isinstance(result, Refusal):
        return result
    assert attributes is not None  # a valid message has a valid envelope
    return Checked(KafkaRecord(topic, key, value, tuple(headers), attributes.id, attributes.type))


def refusal_body(refused: Refusal) -> dict[str, object]:
    """The 400's body: the same fields as the inbox's ``submission-rejected``."""
    rejection: ev.SubmissionRejected = refused.as_rejection()
    return rejection.model_dump(mode="json")
