"""Publish envelope events through the FastStream broker's (idempotent, acks=all) producer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

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
            raise
        tracing.end_all(spans)
