"""Dead-letter publishing: original key, value and headers kept byte for byte, the error added.

A plain aiokafka producer (acks=all, idempotent) because the original headers may be any bytes,
which FastStream's publish API (str headers) cannot carry unchanged.

A record can be as large as its topic allows, and the dead letter adds headers: when it would
be larger than the dead-letter topic takes, the original value (and then the original headers)
are left out and a ``dlq_omitted`` header says so. Otherwise the broker refuses the dead letter
at every redelivery and the consumer never gets past the record.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from shared.contracts.topics import dead_letter_topic, spec
from shared.kafka.connection import KafkaConnection
from shared.kafka.inbound import InboundEvent, describe_error, record_size

MAX_ERROR_CHARS = 1000
# Room for the record batch around one record (batch header, lengths, offsets, timestamps).
_BATCH_OVERHEAD = 1024
_DEFAULT_TOPIC_LIMIT = 1024 * 1024  # the broker's default message.max.bytes, roughly


class DeadLetterPublisher:
    def __init__(self, kafka: KafkaConnection, consumer_group: str) -> None:
        self.topic = dead_letter_topic(consumer_group)
        self._group = consumer_group
        self._kafka = kafka
        self._producer: AIOKafkaProducer | None = None
        try:
            limit = int(spec(self.topic).config()["max.message.bytes"])
        except KeyError:  # a group outside the catalogue (tests)
            limit = _DEFAULT_TOPIC_LIMIT
        self.max_letter_bytes = limit - _BATCH_OVERHEAD

    async def start(self) -> None:
        # Created here, not in __init__: aiokafka binds to the running event loop.
        self._producer = AIOKafkaProducer(
            **self._kafka.client_kwargs(),
            client_id=f"{self._group}-dlq",
            acks="all",
            enable_idempotence=True,
            max_request_size=4 * 1024 * 1024,
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    def letter(
        self, event: InboundEvent, error: BaseException
    ) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
        """The dead letter's key, value and headers, within what the dead-letter topic takes."""
        detail = describe_error(error)[:MAX_ERROR_CHARS]
        extra = {
            "dlq_error": detail,
            "dlq_error_type": type(error).__name__,
            "dlq_consumer_group": self._group,
            "dlq_original_topic": event.topic,
            "dlq_original_partition": str(event.partition),
            "dlq_original_offset": str(event.offset),
            "dlq_failed_at": datetime.now(UTC).isoformat(),
        }
        added = [(k, v.encode()) for k, v in extra.items()]
        original = list(event.headers)
        # A record may have neither key nor value (a Java client can send one); a producer
        # cannot: such a dead letter gets an empty value.
        value = b"" if event.key is None and event.value is None else event.value
        choices: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]], str]] = [
            (event.key, value, original, ""),
            (event.key, b"", original, "value"),
            (event.key, b"", [], "value and headers"),
            (None, b"", [], "value, headers and key"),
        ]
        for key, value, headers, omitted in choices:
            note = f"original {omitted} ({event.size} bytes in all)" if omitted else ""
            letter = headers + added + ([("dlq_omitted", note.encode())] if note else [])
            if record_size(key, value, tuple(letter)) <= self.max_letter_bytes:
                break
        return key, value, letter

    async def publish(self, event: InboundEvent, error: BaseException) -> None:
        if self._producer is None:
            raise RuntimeError("dead-letter producer used before start()")
        key, value, headers = self.letter(event, error)
        try:
            await self._producer.send_and_wait(self.topic, value=value, key=key, headers=headers)
        except Exception:
            # An idempotent producer whose batch was refused is out of step with the broker
            # (every later send fails with OutOfOrderSequenceNumber): start a fresh one.
            await self.stop()
            await self.start()
            raise
