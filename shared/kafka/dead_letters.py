"""Dead-letter publishing: original key, value and headers kept byte for byte, the error added.

A plain aiokafka producer (acks=all, idempotent) because the original headers may be any bytes,
which FastStream's publish API (str headers) cannot carry unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from shared.contracts.topics import dead_letter_topic
from shared.kafka.connection import KafkaConnection
from shared.kafka.inbound import InboundEvent, describe_error

MAX_ERROR_CHARS = 1000


class DeadLetterPublisher:
    def __init__(self, kafka: KafkaConnection, consumer_group: str) -> None:
        self.topic = dead_letter_topic(consumer_group)
        self._group = consumer_group
        self._kafka = kafka
        self._producer: AIOKafkaProducer | None = None

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

    async def publish(self, event: InboundEvent, error: BaseException) -> None:
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
        headers = list(event.headers) + [(k, v.encode()) for k, v in extra.items()]
        if self._producer is None:
            raise RuntimeError("dead-letter producer used before start()")
        await self._producer.send_and_wait(
            self.topic, value=event.value, key=event.key, headers=headers
        )
