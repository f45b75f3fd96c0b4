"""Reliable consumption: one transaction per event, inbox de-duplication, bounded retries,
dead letters, and the offset committed only after all of that.

Each service has one consumer group (its name) subscribed to all the topics it consumes and a
handler per topic. For each record:
1. size check (before anything is parsed); on a fixed topic of the catalogue, the envelope, the
   ce_type (one the topic carries) and the data (valid for that type) are checked too, so its
   handler sees only valid events. An agency's own topics are judged by their handlers, which
   answer the agency (a rejection, a refused response) where they can;
2. the topic's handler runs inside a PostgreSQL transaction that also records the event id in
   the inbox; a redelivered event is skipped there;
3. a transient error is retried with exponential backoff a bounded number of times; an outage
   of the database or the broker (:func:`is_outage`) is waited out however long it lasts;
   a :class:`PermanentError` or the last failed try sends the record to ``<group>.dlq.v1``;
4. only then is the offset committed. If even the dead-letter publish fails the record is
   sought back and redelivered, so nothing is skipped.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
)
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.contracts.envelope import EnvelopeError
from shared.contracts.topics import TopicFamily
from shared.db import DbConnection, inbox
from shared.kafka.dead_letters import DeadLetterPublisher
from shared.kafka.inbound import (
    InboundEvent,
    PermanentError,
    describe_error,
    raw_decoder,
    tolerant_parser,
)
from shared.logging import get_logger, message_context

log = get_logger(__name__)

Handler = Callable[[InboundEvent, DbConnection], Awaitable[None]]
# A fixed topic name, or a per-agency topic family (all its agencies' topics, present and future).
Subscription = str | TopicFamily


UNREADABLE = "a header name is not UTF-8"


async def skip_unreadable_record(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> tuple[TopicPartition, int] | None:
    """Find a record aiokafka cannot read among ``partitions`` and seek past it.

    aiokafka cannot even build a record whose header name is not UTF-8 (any non-Java client can
    send one): reading raises UnicodeDecodeError, at every try, without saying where. One record
    is read from each partition that has records left (and put back at once); the partition
    where reading raises holds it, at its current position. Returns that position, or None."""
    ends = await consumer.end_offsets(partitions)
    for tp in partitions:
        position: int = await consumer.position(tp)
        if position >= ends[tp]:
            continue
        try:
            records = await consumer.getmany(tp, timeout_ms=2000, max_records=1)
        except UnicodeDecodeError:
            consumer.seek(tp, position + 1)
            log.warning("unreadable_record_skipped", topic=tp.topic, partition=tp.partition)
            return tp, position
        for record in records.get(tp, []):
            consumer.seek(tp, record.offset)  # not ours to take: it comes again, in order
    return None


_OUTAGES: tuple[type[BaseException], ...] = (
    OSError,  # connection refused or reset, host unreachable
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, e.g. the connection went away
    asyncpg.exceptions.OperatorInterventionError,  # 57P0x: admin shutdown, cannot connect now
    asyncpg.exceptions.TooManyConnectionsError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
    TimeoutError,
)


def is_outage(error: BaseException) -> bool:
    """True when ``error`` says the database or the broker cannot be reached right now, as
    opposed to something wrong with the message or a bug (those are retried a bounded number
    of times, then dead-lettered)."""
    if isinstance(error, _OUTAGES):
        return True
    # asyncpg raises a bare InterfaceError for a pool connection closed under it.
    return isinstance(error, asyncpg.InterfaceError) and "connection" in str(error).lower()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 0.2
    max_delay_s: float = 10.0

    def delay(self, attempt: int) -> float:
        return float(min(self.base_delay_s * 2 ** (attempt - 1), self.max_delay_s))


class ReliableConsumer:
    def __init__(
        self,
        *,
        group: str,
        pool: Callable[[], asyncpg.Pool],
        dead_letters: DeadLetterPublisher,
        handlers: Mapping[Subscription, Handler],
        retry: RetryPolicy,
        max_message_bytes: int,
    ) -> None:
        self.group = group
        self._pool = pool  # a getter: the pool is created in the app's start-up hook
        self._dead_letters = dead_letters
        self._fixed = {k: h for k, h in handlers.items() if isinstance(k, str)}
        self._families = [(k, h) for k, h in handlers.items() if isinstance(k, TopicFamily)]
        self._retry = retry
        self._max_message_bytes = max_message_bytes

    @property
    def pattern(self) -> str:
        """One regex for every topic consumed: a single consumer (and group, and dead-letter
        topic) per service, which also picks up the topics of agencies registered later."""
        parts = [re.escape(t) for t in self._fixed] + [f.regex for f, _ in self._families]
        return "^(?:" + "|".join(parts) + ")$"

    def handler_for(self, topic: str) -> Handler:
        if topic in self._fixed:
            return self._fixed[topic]
        for family, handler in self._families:
            if family.agency_of(topic) is not None:
                return handler
        raise PermanentError(f"no handler for topic {topic}")

    def register(self, broker: KafkaBroker) -> None:
        subscriber = broker.subscriber(
            pattern=self.pattern,
            group_id=self.group,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,
            parser=tolerant_parser,
            decoder=raw_decoder,
            max_poll_interval_ms=5 * 60 * 1000,
            title=f"{self.group} consumer",
        )
        subscriber(self.on_message)
        read = subscriber.get_msg

        async def get_msg(consumer: AIOKafkaConsumer) -> Any:
            try:
                return await read(consumer)
            except UnicodeDecodeError:
                await self.skip_unreadable(consumer)
                return None  # FastStream's loop then asks for the next record

        subscriber.get_msg = get_msg  # type: ignore[method-assign]

    async def skip_unreadable(self, consumer: AIOKafkaConsumer) -> None:
        """Dead-letter the position of a record aiokafka cannot read, and go past it."""
        found = await skip_unreadable_record(consumer, sorted(consumer.assignment()))
        if found is None:
            await asyncio.sleep(1)  # not found (yet): the loop tries again
            return
        tp, offset = found
        unreadable = InboundEvent(
            tp.topic,
            tp.partition,
            offset,
            None,
            b"",
            (),
            None,
            EnvelopeError([("(record)", UNREADABLE)]),
        )
        with message_context(topic=tp.topic, partition=tp.partition, offset=offset):
            await self._dead_letter(unreadable, PermanentError(f"record unreadable: {UNREADABLE}"))
        await consumer.commit({tp: offset + 1})

    async def on_message(self, message: KafkaMessage) -> None:
        event = InboundEvent.from_record(message.raw_message)
        with message_context(
            event_id=event.event_id,
            correlation_id=event.correlation_id,
            topic=event.topic,
            partition=event.partition,
            offset=event.offset,
        ):
            try:
                await self.process(event)
            except Exception:
                # Could not even dead-letter (broker away): rewind so the record comes back.
                log.exception("event_not_settled_redelivering")
                await message.nack()
                await asyncio.sleep(self._retry.max_delay_s)
                return
            await message.ack()

    async def process(self, event: InboundEvent, *, replaying: bool = False) -> bool:
        """Apply one event exactly once or dead-letter it; True if it is applied (now or
        before). Raises only if dead-lettering fails.

        ``replaying`` (a registry read again from its beginning, see replay.py): an invalid
        record is skipped, not dead-lettered again — the consumer group dead-lettered it once
        when it first came, and would otherwise do it again at every start."""
        size = event.size
        if size > self._max_message_bytes:
            error = PermanentError(
                f"message of {size} bytes exceeds the limit of {self._max_message_bytes}"
            )
            return await self._dead_letter(event, error, replaying)
        try:
            handler = self.handler_for(event.topic)
            if event.topic in self._fixed:
                event = event.validated()
        except PermanentError as exc:
            return await self._dead_letter(event, exc, replaying)
        attempt = outages = 0
        while True:
            try:
                await self._apply(handler, event)
                return True
            except PermanentError as exc:
                return await self._dead_letter(event, exc, replaying)
            except Exception as exc:
                if is_outage(exc):
                    # The database or the broker is away: not this message's fault. Wait for
                    # it as long as it takes; dead-lettering here would lose every message
                    # that arrives during an outage.
                    outages += 1
                    log.warning("event_waiting_for_infrastructure", error=type(exc).__name__)
                    await asyncio.sleep(self._retry.delay(min(outages, 8)))
                    continue
                attempt += 1
                if attempt >= self._retry.max_attempts:
                    return await self._dead_letter(event, exc)
                log.warning("event_retry", attempt=attempt, error=type(exc).__name__)
                await asyncio.sleep(self._retry.delay(attempt))

    async def _apply(self, handler: Handler, event: InboundEvent) -> None:
        async with self._pool().acquire() as conn, conn.transaction():
            if not await inbox.claim(conn, self.group, event.event_id, event.topic):
                log.info("event_duplicate_skipped")
                return
            await handler(event, conn)
        log.info("event_processed", ce_type=event.attributes.type if event.attributes else None)

    async def _dead_letter(
        self, event: InboundEvent, error: BaseException, replaying: bool = False
    ) -> bool:
        if replaying:
            log.info("replayed_event_skipped", error=type(error).__name__)
            return False
        await self._dead_letters.publish(event, error)
        log.warning(
            "event_dead_lettered",
            dlq=self._dead_letters.topic,
            error=type(error).__name__,
            reason=describe_error(error)[:300],
        )
        return False
