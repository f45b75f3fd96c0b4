"""CloudEvents 1.0 envelope in Kafka *binary* mode.

Attributes travel as ``ce_*`` headers, the data as the JSON message value. ``ce_type`` follows
``org.referralexchange.<domain>.<event>.v<major>``. Extensions: ``correlationid`` (the whole
conversation, starting at the agency's submission), ``causationid`` (the event that caused this
one), ``traceparent`` (W3C) and ``agencyid`` (the publishing agency, on inbound topics).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
TYPE_PREFIX = "org.referralexchange."


# CloudEvents 1.0 "String": control characters, surrogates and Unicode noncharacters MUST NOT be
# used. They would also break what is built from the attributes (an id with NUL cannot be stored
# in PostgreSQL text, a header with a line break could forge a log line).
_CONTROL_OR_SURROGATE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef]")


def _allowed_string(value: str) -> bool:
    if _CONTROL_OR_SURROGATE.search(value):
        return False
    return not any(ord(ch) & 0xFFFE == 0xFFFE for ch in value)  # U+FFFE, U+FFFF, U+1FFFE...


TYPE_PATTERN = r"^org\.referralexchange\.[a-z]+\.[a-z]+(?:-[a-z]+)*\.v[1-9][0-9]*$"


def event_type(domain: str, event: str, major: int = 1) -> str:
    """``org.referralexchange.<domain>.<event>.v<major>``, e.g. ...intake.case-submitted.v1."""
    name = f"{TYPE_PREFIX}{domain}.{event}.v{major}"
    if not re.fullmatch(TYPE_PATTERN, name):
        raise ValueError(f"{name!r} does not follow the ce_type naming scheme")
    return name


class CloudEventAttributes(BaseModel):
    """The envelope attributes of one event (header names without the ``ce_`` prefix)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=500)
    type: str = Field(min_length=1, max_length=200)
    specversion: str = Field(pattern=r"^1\.0$")
    time: datetime | None = None
    subject: str | None = Field(default=None, max_length=200)
    correlationid: str | None = Field(default=None, max_length=200)
    causationid: str | None = Field(default=None, max_length=200)
    traceparent: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
    )
    agencyid: str | None = Field(default=None, max_length=64)
    content_type: str | None = Field(default=None, alias="content-type")

    @field_validator(
        "id",
        "source",
        "type",
        "subject",
        "correlationid",
        "causationid",
        "agencyid",
        "content_type",
    )
    @classmethod
    def _allowed_characters(cls, value: str | None) -> str | None:
        if value is not None and not _allowed_string(value):
            raise ValueError("contains characters CloudEvents does not allow (control characters)")
        return value


class EnvelopeError(ValueError):
    """The headers do not form a valid CloudEvent; ``errors`` names each bad attribute."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {msg}" for field, msg in errors))


def parse_headers(headers: Iterable[tuple[str, bytes | None]]) -> CloudEventAttributes:
    """Read the ``ce_*`` (and ``content-type``) Kafka headers of a binary-mode CloudEvent."""
    values: dict[str, str] = {}
    for name, raw in headers:
        key = name.lower()
        if key.startswith("ce_"):
            key = key[3:]
        elif key != "content-type":
            continue
        try:
            values[key] = (raw or b"").decode("utf-8")
        except UnicodeDecodeError:
            raise EnvelopeError([(name, "header is not UTF-8")]) from None
    try:
        attrs = CloudEventAttributes.model_validate(values)
    except ValidationError as exc:
        raise EnvelopeError(
            [("ce_" + ".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
        ) from None
    if attrs.content_type is not None and not attrs.content_type.startswith(CONTENT_TYPE):
        raise EnvelopeError([("content-type", f"must be {CONTENT_TYPE}")])
    return attrs


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """An event ready to publish: topic, key, CloudEvents headers and JSON body."""

    topic: str
    key: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def event_id(self) -> str:
        return self.headers["ce_id"]


def build_event(
    *,
    topic: str,
    key: str,
    type_: str,
    source: str,
    data: BaseModel,
    subject: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    traceparent: str | None = None,
    agency_id: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> OutgoingEvent:
    """Wrap a payload model in a CloudEvents binary-mode envelope."""
    eid = event_id or str(uuid.uuid4())
    headers = {
        "ce_specversion": SPEC_VERSION,
        "ce_id": eid,
        "ce_source": source,
        "ce_type": type_,
        "ce_time": (time or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "content-type": CONTENT_TYPE,
        # A new conversation starts with its first event: it is its own correlation id.
        "ce_correlationid": correlation_id or eid,
    }
    optional = {
        "ce_subject": subject,
        "ce_causationid": causation_id,
        "ce_traceparent": traceparent,
        "ce_agencyid": agency_id,
    }
    headers.update({k: v for k, v in optional.items() if v is not None})
    body = data.model_dump_json(exclude_none=True).encode()
    return OutgoingEvent(topic=topic, key=key, headers=headers, body=body)
