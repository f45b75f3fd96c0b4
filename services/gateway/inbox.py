"""The agency's inbox as HTTP sees it: each Kafka record a CloudEvent in structured mode, and a
cursor that says where a reader is (the next offset of each partition), opaque to the reader.
Pure: reading the topic is agency_kafka.py's."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord

_HEADER_PREFIX = "ce_"


class BadCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Cursor:
    """partition → the next offset to read; a partition not named is read from its start."""

    offsets: Mapping[int, int]

    def encode(self) -> str:
        text = ",".join(f"{p}:{o}" for p, o in sorted(self.offsets.items()))
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=") or "0"

    def after(self, message: InboxMessage) -> Cursor:
        return Cursor({**self.offsets, message.partition: message.offset + 1})

    @classmethod
    def decode(cls, text: str | None) -> Cursor:
        if not text or text == "0":
            return cls({})
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            pairs = [part.split(":") for part in raw.split(",")]
            offsets = {int(p): int(o) for p, o in pairs}
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise BadCursor("not a cursor this gateway gave out") from None
        if len(offsets) > 1000 or any(p < 0 or o < 0 for p, o in offsets.items()):
            raise BadCursor("not a cursor this gateway gave out")
        return cls(offsets)


@dataclass(frozen=True, slots=True)
class InboxMessage:
    partition: int
    offset: int
    attributes: Mapping[str, str]  # the CloudEvents attributes, without the ce_ prefix
    data: Any  # the JSON data (None when the value is not JSON: never expected on an inbox)

    @property
    def ce_type(self) -> str:
        return self.attributes.get("type", "")

    @property
    def ce_id(self) -> str:
        return self.attributes.get("id", "")

    @property
    def time(self) -> str:
        return self.attributes.get("time", "")

    def as_cloudevent(self) -> dict[str, Any]:
        """Structured mode (application/cloudevents+json)."""
        return {**self.attributes, "datacontenttype": "application/json", "data": self.data}

    @classmethod
    def from_record(cls, record: ConsumerRecord[bytes, bytes]) -> InboxMessage:
        attributes = {
            name[len(_HEADER_PREFIX) :]: (raw or b"").decode("utf-8", "replace")
            for name, raw in record.headers or ()
            if name.startswith(_HEADER_PREFIX)
        }
        try:
            data = json.loads(record.value) if record.value is not None else None
        except ValueError:
            data = None
        return cls(record.partition, record.offset, attributes, data)


def in_order(messages: Iterable[InboxMessage]) -> list[InboxMessage]:
    """Across partitions by time, then position (each partition's own order is kept)."""
    return sorted(messages, key=lambda m: (m.time, m.partition, m.offset))
