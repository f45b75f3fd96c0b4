"""One consumed Kafka record, with its CloudEvents envelope parsed but its data left raw."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import ConsumerRecord
from pydantic import BaseModel, ValidationError

from shared.contracts.envelope import CloudEventAttributes, EnvelopeError, parse_headers
from shared.contracts.topics import family_of

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

    @classmethod
    def from_record(cls, record: ConsumerRecord[Any, Any]) -> InboundEvent:
        headers = tuple((name, raw or b"") for name, raw in (record.headers or ()))
        attributes: CloudEventAttributes | None = None
        error: EnvelopeError | None = None
        if record.value is not None:  # a tombstone carries no envelope
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
        )

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

    def require_attributes(self) -> CloudEventAttributes:
        """The envelope, or a PermanentError naming what is wrong with it."""
        if self.attributes is None:
            raise PermanentError(str(self.envelope_error or "record has no CloudEvents envelope"))
        return self.attributes

    def is_tombstone(self) -> bool:
        return self.value is None

    def data_as(self, model: type[M]) -> M:
        """The JSON data validated by ``model``; a PermanentError (dead letter) if it is not."""
        self.require_attributes()
        try:
            return model.model_validate(json.loads(self.value or b""))
        except (ValidationError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PermanentError(
                f"data is not a valid {model.__name__}: {describe_error(exc)}"
            ) from exc


def _sender_agency(topic: str) -> str | None:
    family = family_of(topic)
    return family.agency_of(topic) if family is not None else None


def tolerant_headers_record(record: ConsumerRecord[Any, Any]) -> ConsumerRecord[Any, Any]:
    """A copy whose headers are valid UTF-8, so FastStream's parser cannot choke on them."""
    safe = [(k, (v or b"").decode("utf-8", "replace").encode()) for k, v in record.headers or ()]
    return dataclasses.replace(record, headers=safe)


async def tolerant_parser(
    record: ConsumerRecord[Any, Any], original: Callable[[Any], Awaitable[Any]]
) -> Any:
    """FastStream parser that survives non-UTF-8 headers but keeps the original record."""
    try:
        return await original(record)
    except UnicodeDecodeError:
        message = await original(tolerant_headers_record(record))
        message.raw_message = record
        return message


async def raw_decoder(message: Any) -> bytes:
    """FastStream decoder that leaves the body alone: FastStream's own would parse JSON before
    our handler runs, and a malformed body would then fail outside it — neither rejected nor
    dead-lettered, and skipped by the next commit. Our handlers parse and judge the bytes."""
    body: bytes = message.body
    return body


def describe_error(error: BaseException) -> str:
    """Error text safe for logs and dead-letter headers: never echoes the input values."""
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in error.errors()
        )
    return f"{type(error).__name__}: {error}"
