"""Records that aiokafka would not produce: header names that are not UTF-8.

Kafka carries header names as bytes; kcat, librdkafka or any client of the wire protocol can send
any. aiokafka's producer encodes names as UTF-8, so a test marks such a name with
:class:`RawHeaderName` and publishes inside :func:`raw_header_names`, which swaps in aiokafka's
own pure-Python batch builder (it encodes through ``str.encode``, which the mark overrides)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiokafka.producer import message_accumulator
from aiokafka.producer import producer as producer_module
from aiokafka.record import default_records


class RawHeaderName(str):
    """A header name sent as the bytes of its code points (U+0000-U+00FF), e.g. ``"\\xff"``
    is the single byte 0xFF: not UTF-8."""

    __slots__ = ()

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return str.encode(self, "latin-1")


@contextmanager
def raw_header_names() -> Iterator[None]:
    """Producers started and used inside send :class:`RawHeaderName` names as their bytes."""
    python_builder: Any = default_records._DefaultRecordBatchBuilderPy
    saved = message_accumulator.DefaultRecordBatchBuilder, producer_module.DefaultRecordBatchBuilder
    message_accumulator.DefaultRecordBatchBuilder = python_builder
    producer_module.DefaultRecordBatchBuilder = python_builder
    try:
        yield
    finally:
        message_accumulator.DefaultRecordBatchBuilder = saved[0]
        producer_module.DefaultRecordBatchBuilder = saved[1]
