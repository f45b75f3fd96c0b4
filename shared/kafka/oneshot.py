"""Short-lived Kafka clients for operator commands and tests: publish events, follow a topic."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from shared.contracts.envelope import OutgoingEvent
from shared.kafka.connection import KafkaConnection


@asynccontextmanager
async def _producer(kafka: KafkaConnection) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(
        **kafka.client_kwargs(),
        acks="all",
        enable_idempotence=True,
        client_id="refex-cli",
    )
    try:
        await producer.start()
        yield producer
    finally:
        await producer.stop()  # also after a failed start, or aiokafka warns of a leak


async def publish_events(kafka: KafkaConnection, events: Sequence[OutgoingEvent]) -> None:
    async with _producer(kafka) as producer:
        for e in events:
            await producer.send_and_wait(
                e.topic,
                e.body,
                key=e.key.encode(),
                headers=[(k, v.encode()) for k, v in e.headers.items()],
            )


async def publish_tombstone(kafka: KafkaConnection, topic: str, key: str) -> None:
    async with _producer(kafka) as producer:
        await producer.send_and_wait(topic, None, key=key.encode())


async def follow(
    kafka: KafkaConnection, topic: str, *, from_beginning: bool = True, idle_timeout_s: float | None
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Yield a topic's records (no consumer group, nothing committed); stop after idle time."""
    consumer = AIOKafkaConsumer(
        topic,
        **kafka.client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        client_id="refex-follow",
    )
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(
                timeout_ms=int((idle_timeout_s if idle_timeout_s is not None else 3600) * 1000)
            )
            if not batch:
                if idle_timeout_s is not None:
                    return
                continue
            for records in batch.values():
                for record in records:
                    yield record
    finally:
        await consumer.stop()
