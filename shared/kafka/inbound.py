"""One consumed Kafka record, with its CloudEvents envelope parsed but its data left raw.

Size first, parsing after: a record larger than its topic's ``max_message_bytes`` (key, value and
headers counted) is never parsed — neither its headers nor its body; asking for its envelope or
data raises a :class:`PermanentError` that says so.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, cast

from aiokafka import ConsumerRecord
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.contracts.envelope import CloudEventAttributes, EnvelopeError, parse_headers
from shared.contracts.events import PAYLOADS, Contract
from shared.contracts.topics import CleanupPolicy, TopicSpec, family_of, spec

M = TypeVar("M", bound=BaseModel)


class PermanentError(Exception):
    """Input that can never be processed: dead-letter it at once, without retries."""


@dataclass(frozen=True, slots=True)
class InboundEvent:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    attributes: CloudEventAttributes | None
    envelope_error: EnvelopeError | None
    # The agency whose own topic carried the record: the proof of sender (None: a fixed topic).
    sender_agency: str | None = None
    # The topic's max_message_bytes in the catalogue (None: a topic outside the catalogue).
    max_bytes: int | None = None
    # The data once validated against the model of its ce_type (see :meth:`validated`).
    payload: Contract | None = None
    # Read again from a registry's beginning at start-up (shared.kafka.replay): the state it
    # carries is rebuilt, but its sender was answered when it first came.
    replayed: bool = False

    @classmethod
    def from_record(cls, record: ConsumerRecord[Any, Any]) -> InboundEvent:
        headers = tuple((str(name), raw or b"") for name, raw in (record.headers or ()))
        topic_spec = _spec(record.topic)
        limit = topic_spec.max_message_bytes if topic_spec is not None else None
        attributes: CloudEventAttributes | None = None
        error: EnvelopeError | None = None
        too_large = limit is not None and record_size(record.key, record.value, headers) > limit
        if record.value is not None and not too_large:  # a tombstone carries no envelope
            try:
                attributes = parse_headers(headers)
            except EnvelopeError as exc:
                error = exc
        return cls(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value,
            headers,
            attributes,
            error,
            _sender_agency(record.topic),
            limit,
        )

    @property
    def size(self) -> int:
        """Bytes of key, value and headers: what counts against the topic's limit."""
        return record_size(self.key, self.value, self.headers)

    @property
    def too_large(self) -> bool:
        return self.max_bytes is not None and self.size > self.max_bytes

    @property
    def event_id(self) -> str:
        """The CloudEvents id; a record without a valid envelope is identified by its position."""
        if self.attributes is not None:
            return self.attributes.id
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def correlation_id(self) -> str:
        if self.attributes is not None:
            return self.attributes.correlationid or self.attributes.id
        return self.event_id

    @property
    def key_text(self) -> str | None:
        return self.key.decode("utf-8", "replace") if self.key is not None else None

    def size_error(self) -> PermanentError:
        return PermanentError(f"message of {self.size} bytes exceeds the limit of {self.max_bytes}")

    def require_attributes(self) -> CloudEventAttributes:
        """The envelope, or a PermanentError naming what is wrong with the record: too large,
        no or an invalid envelope, a ce_type its topic does not carry, or (on an agency's own
        topic) a ``ce_agencyid`` naming another agency."""
        if self.too_large:
            raise self.size_error()
        if self.attributes is None:
            raise PermanentError(str(self.envelope_error or "record has no CloudEvents envelope"))
        topic_spec = _spec(self.topic)
        carried = topic_spec.payloads if topic_spec is not None else ()
        if carried and self.attributes.type not in carried:
            # The value is not echoed: it is the sender's input.
            raise PermanentError(f"ce_type is not one of the event types {self.topic} carries")
        claimed = self.attributes.agencyid
        if self.sender_agency is not None and claimed is not None and claimed != self.sender_agency:
            raise PermanentError("ce_agencyid claims another agency than the topic's")
        return self.attributes

    def is_tombstone(self) -> bool:
        return self.value is None

    def data_as(self, model: type[M]) -> M:
        """The JSON data validated by ``model``; a PermanentError (dead letter) if it is not.
        On a compacted topic the key must also be the record's identity (the catalogue's key
        field), or compaction and tombstones would keep or remove the wrong record."""
        if type(self.payload) is model:
            return cast(M, self.payload)
        self.require_attributes()
        try:
            data = model.model_validate(load_json(self.value or b""))
        except ValidationError as exc:
            raise PermanentError(
                f"data is not a valid {model.__name__}: {describe_error(exc)}"
            ) from exc
        except ValueError as exc:
            raise PermanentError(f"data is not valid JSON: {describe_error(exc)}") from exc
        self._check_key(data)
        return data

    def validated(self) -> InboundEvent:
        """This event with its data validated against the model of its ce_type (a tombstone on
        a compacted topic: its key checked); a PermanentError for anything else. Events on topics
        outside the catalogue pass unchanged."""
        topic_spec = _spec(self.topic)
        if topic_spec is None or not topic_spec.payloads:
            return self
        if self.is_tombstone():
            self.tombstone_key()
            return self
        model = PAYLOADS.get(self.require_attributes().type)
        if model is None:  # pragma: no cover - the catalogue names only known types
            raise PermanentError("no payload model for this ce_type")
        return dataclasses.replace(self, payload=self.data_as(model))

    def tombstone_key(self) -> str:
        """The key of a tombstone on a compacted topic, checked to be a valid identity."""
        topic_spec = _spec(self.topic)
        if topic_spec is None or topic_spec.cleanup_policy is not CleanupPolicy.COMPACT:
            raise PermanentError(f"{self.topic} takes no tombstones")
        key = self.key_text
        try:
            if key is None or "\ufffd" in key:
                raise ValueError("no key, or not UTF-8")
            _identity(topic_spec.payloads[0], topic_spec.key).validate_python(key)
        except (ValueError, ValidationError):
            raise PermanentError(f"a tombstone's key must be a valid {topic_spec.key}") from None
        return key

    def _check_key(self, data: BaseModel) -> None:
        topic_spec = _spec(self.topic)
        if topic_spec is None or topic_spec.cleanup_policy is not CleanupPolicy.COMPACT:
            return
        identity = getattr(data, topic_spec.key, None)
        if identity is not None and self.key_text != identity:
            raise PermanentError(f"the message key is not the record's {topic_spec.key}")


def load_json(raw: bytes) -> Any:
    """The JSON document of a message value, read strictly: UTF-8 only (RFC 8259; Python would
    also guess UTF-16 and UTF-32), no NaN or Infinity. A ValueError for anything else, also for
    nesting too deep and integers of too many digits (which raise other errors in ``json``)."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def record_size(
    key: bytes | None, value: bytes | None, headers: tuple[tuple[str, bytes], ...]
) -> int:
    return (
        len(key or b"")
        + len(value or b"")
        + sum(len(name.encode("utf-8", "replace")) + len(raw) for name, raw in headers)
    )


def _spec(topic: str) -> TopicSpec | None:
    try:
        return spec(topic)
    except KeyError:
        return None


@functools.cache
def _identity(payload_type: str, field: str) -> TypeAdapter[Any]:
    """Validator of a compacted topic's record identity (e.g. ``AgencyRecord.agency_id``)."""
    info = PAYLOADS[payload_type].model_fields[field]
    annotated: Any = Annotated
    return TypeAdapter(annotated[(info.annotation, *info.metadata)])


def _sender_agency(topic: str) -> str | None:
    family = family_of(topic)
    return family.agency_of(topic) if family is not None else None


def tolerant_headers_record(record: ConsumerRecord[Any, Any]) -> ConsumerRecord[Any, Any]:
    """A copy whose header values are all valid UTF-8 bytes (a null header value becomes empty),
    so FastStream's parser cannot choke on them."""
    safe = [
        (str(k), (v or b"").decode("utf-8", "replace").encode()) for k, v in record.headers or ()
    ]
    return dataclasses.replace(record, headers=safe)


async def tolerant_parser(
    record: ConsumerRecord[Any, Any] | tuple[ConsumerRecord[Any, Any], ...],
    original: Callable[[Any], Awaitable[Any]],
) -> Any:
    """FastStream parser (of one record, or of a batch) that survives headers it cannot decode
    (not UTF-8, or null values) but keeps the original records. A parser failure would happen
    outside our handler: the records would be neither rejected nor dead-lettered, and skipped
    by the next commit."""
    try:
        return await original(record)
    except Exception:
        safe = (
            tuple(tolerant_headers_record(r) for r in record)
            if isinstance(record, tuple)
            else tolerant_headers_record(record)
        )
        message = await original(safe)
        message.raw_message = record
        return message


async def raw_decoder(message: Any) -> Any:
    """FastStream decoder that leaves the body alone: FastStream's own would parse JSON before
    our handler runs, and a malformed body would then fail outside it — neither rejected nor
    dead-lettered, and skipped by the next commit. Our handlers parse and judge the bytes."""
    return message.body  # bytes, or a list of bytes for a batch


def describe_error(error: BaseException) -> str:
    """Error text safe for logs and dead-letter headers: never echoes the input values."""
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in error.errors()
        )
    return f"{type(error).__name__}: {error}"
