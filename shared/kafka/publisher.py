"""Publish envelope events through the FastStream broker's (idempotent, acks=all) producer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiokafka
from aiokafka.errors import OutOfOrderSequenceNumber
from faststream.kafka import KafkaBroker

from shared import tracing
from shared.contracts.envelope import OutgoingEvent


class EventPublisher:
    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def publish_batch(self, events: Sequence[OutgoingEvent]) -> None:
        """Send all, then wait for every acknowledgement; raises if any send failed. Each send
        is a span, a child of the span that emitted the event, ended once acknowledged."""
        spans = tracing.producing(events)
        try:
            futures = [
                await self._broker.publish(
                    e.body,
                    topic=e.topic,
                    key=e.key.encode(),
                    headers=dict(e.headers),
                    correlation_id=e.headers.get("ce_correlationid"),
                    no_confirm=True,
                )
                for e in events
            ]
            await asyncio.gather(*futures)
        except BaseException as exc:
            tracing.end_all(spans, exc)
            if isinstance(exc, OutOfOrderSequenceNumber):
                await self._fresh_producer()
            raise
        tracing.end_all(spans)

    async def _fresh_producer(self) -> None:
        """An idempotent producer the broker refused a sequence of (found by the chaos run on
        a replicated cluster, after all three nodes restarted) fails every later send with
        OutOfOrderSequenceNumber: aiokafka never recovers it. Start a fresh one (a new producer
        id) as FastStream itself makes it; the outbox keeps the unsent rows and sends them again
        (at least once: consumers de-duplicate by event id). As the dead-letter publisher does."""
        config = self._broker.config.broker_config
        # FastStream's own producer arguments, and acks="all" said here too: a fresh producer
        # must not wait for fewer replicas than the one it replaces (min.insync.replicas=2).
        kwargs = {k: v for k, v in self._broker._connection_kwargs.items() if k != "acks"}
        await config.producer.disconnect()
        await config.producer.connect(
            aiokafka.AIOKafkaProducer(**kwargs, acks="all"),
            serializer=config.fd_config._serializer,
            codec=config.broker_codec,
        )
