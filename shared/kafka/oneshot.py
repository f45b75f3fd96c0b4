"""Short-lived Kafka clients for operator commands and tests: publish events, follow a topic."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from shared.contracts.envelope import OutgoingEvent


async def publish_events(bootstrap_servers: str, events: Sequence[OutgoingEvent]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers.split(","),
        acks="all",
        enable_idempotence=True,
        client_id="refex-cli",
    )
    await producer.start()
    try:
        for e in events:
            await producer.send_and_wait(
                e.topic,
                e.body,
                key=e.key.encode(),
                headers=[(k, v.encode()) for k, v in e.headers.items()],
            )
    finally:
        await producer.stop()


async def publish_tombstone(bootstrap_servers: str, topic: str, key: str) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers.split(","),
        acks="all",
        enable_idempotence=True,
        client_id="refex-cli",
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, None, key=key.encode())
    finally:
        await producer.stop()


async def follow(
    bootstrap_servers: str, topic: str, *, from_beginning: bool = True, idle_timeout_s: float | None
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Yield a topic's records (no consumer group, nothing committed); stop after idle time."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers.split(","),
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
