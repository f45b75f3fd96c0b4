"""Reliable consumption: inbox de-duplication, bounded retries, dead letters, and the offset
committed only after the database transaction that applied the events.

Each service has one consumer group (its name) subscribed to all the topics it consumes and a
handler per topic. Records come in batches (what one fetch returns, up to ``batch_size``). A
batch is applied in ONE PostgreSQL transaction, each event inside its own savepoint, and its
offsets are committed once: one commit and one offset commit per batch instead of per event,
which is what bounds throughput (see docs/performance.md). If anything but a
:class:`PermanentError` goes wrong in the batch, the whole transaction is rolled back and the
batch is applied again one event at a time, by the steps below, so a transient error or an
outage is handled exactly as for a single event. For each record:
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
import contextlib
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
)
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared import tracing
from shared.contracts.envelope import EnvelopeError
from shared.contracts.topics import TopicFamily
from shared.db import DbConnection, inbox
from shared.db.batch_scope import batch_scope
from shared.kafka.dead_letters import DeadLetterPublisher
from shared.kafka.inbound import (
    InboundEvent,
    PermanentError,
    describe_error,
    raw_decoder,
    tolerant_parser,
)
from shared.logging import get_logger, message_context
from shared.metrics import (
    CONSUMER_BATCH_RECORDS,
    CONSUMER_BATCH_SECONDS,
    CONSUMER_EVENTS,
    DEAD_LETTERS,
)

# The outcomes of refex_consumer_events_total, made once (a labels() lookup per event is not
# free on the hot path).
EVENTS_APPLIED = CONSUMER_EVENTS.labels(outcome="applied")
EVENTS_DUPLICATE = CONSUMER_EVENTS.labels(outcome="duplicate")
EVENTS_DEAD_LETTERED = CONSUMER_EVENTS.labels(outcome="dead_lettered")

log = get_logger(__name__)

Handler = Callable[[InboundEvent, DbConnection], Awaitable[None]]


@runtime_checkable
class Preloading(Protocol):
    """A handler that can load, before a batch is applied, what all the batch's events it
    handles will read (one query per table, into the batch scope's cache), so that handling
    them one by one costs no round trip per event to read (see shared.unit.UnitHandler)."""

    async def preload(self, events: Sequence[InboundEvent], conn: DbConnection) -> None: ...


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
        consumer.seek(tp, position)  # drop what aiokafka buffered: read it again from here
        try:
            records = await consumer.getmany(tp, timeout_ms=2000, max_records=1)
        except UnicodeDecodeError:
            consumer.seek(tp, position + 1)
            log.warning("unreadable_record_skipped", topic=tp.topic, partition=tp.partition)
            return tp, position
        for record in records.get(tp, []):
            consumer.seek(tp, record.offset)  # not ours to take: it comes again, in order
    return None


async def rewind_to_committed(consumer: AIOKafkaConsumer) -> None:
    """Put every assigned partition back where the group last committed: what a failed batch
    read had taken but not handed over is read again."""
    for tp in sorted(consumer.assignment()):
        committed = await consumer.committed(tp)
        if committed is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)


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


Admitted = tuple[Handler, InboundEvent]


class _HandlerFailed(Exception):
    """A handler failed in a batch applied without savepoints: the ``index``-th event."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


@dataclass
class BatchOutcome:
    """What a batch transaction left to do once committed."""

    refused: list[tuple[InboundEvent, PermanentError]] = field(default_factory=list)
    # In batch order: an event that failed (with its error) and the later events of its
    # partition (None), to apply one at a time.
    later: list[tuple[Admitted, BaseException | None]] = field(default_factory=list)


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
        batch_size: int = 200,
        concurrency: int = 1,
    ) -> None:
        self.group = group
        self._pool = pool  # a getter: the pool is created in the app's start-up hook
        self._dead_letters = dead_letters
        self._fixed = {k: h for k, h in handlers.items() if isinstance(k, str)}
        self._families = [(k, h) for k, h in handlers.items() if isinstance(k, TopicFamily)]
        self._retry = retry
        self._max_message_bytes = max_message_bytes
        self._batch_size = batch_size
        self._concurrency = concurrency

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
        """``concurrency`` consumers of the group in this process: the group spreads the
        partitions over them and each applies its batches on its own database connection, so
        one instance does what several would (order per partition holds: a partition has one
        consumer at a time)."""
        for n in range(self._concurrency):
            self._register_one(broker, n)

    def _register_one(self, broker: KafkaBroker, n: int) -> None:
        subscriber = broker.subscriber(
            pattern=self.pattern,
            group_id=self.group,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,
            batch=True,
            max_records=self._batch_size,
            batch_timeout_ms=500,
            parser=tolerant_parser,
            decoder=raw_decoder,
            max_poll_interval_ms=5 * 60 * 1000,
            title=f"{self.group} consumer" + (f" {n + 1}" if n else ""),
            include_in_schema=n == 0,
        )
        subscriber(self.on_batch)
        read = subscriber.get_msg
        careful_reads = 0  # > 0: records are read one at a time (see below)

        async def get_msg(consumer: AIOKafkaConsumer) -> Any:
            # aiokafka cannot build a record whose header name is not UTF-8. When that happens
            # inside a batch read, the records it had already taken from other partitions are
            # dropped with their positions moved on: rewind everything to the last commit, then
            # read one record at a time, so that the unreadable one is met exactly at its
            # partition's position, dead-lettered and passed (skip_unreadable).
            nonlocal careful_reads
            try:
                if careful_reads <= 0:
                    return await read(consumer)
                careful_reads -= 1
                one = await consumer.getmany(timeout_ms=500, max_records=1)
                return tuple(r for records in one.values() for r in records) or None
            except UnicodeDecodeError:
                if careful_reads <= 0:
                    await rewind_to_committed(consumer)
                else:
                    await self.skip_unreadable(consumer)
                careful_reads = 2 * self._batch_size
                return None  # FastStream's loop then asks for the next records

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

    async def on_batch(self, message: KafkaMessage) -> None:
        raw = message.raw_message
        records = raw if isinstance(raw, tuple) else (raw,)
        events = [InboundEvent.from_record(r) for r in records]
        CONSUMER_BATCH_RECORDS.observe(len(events))
        try:
            with CONSUMER_BATCH_SECONDS.time():
                await self.process_batch(events)
        except Exception:
            # Could not even dead-letter (broker away): rewind so the records come back. What
            # the batch applied is in the inbox, so the redelivery skips it.
            log.exception("batch_not_settled_redelivering", size=len(events))
            await message.nack()
            await asyncio.sleep(self._retry.max_delay_s)
            return
        try:
            await message.ack()
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance (e.g. a new agency's topics matched the pattern) took the partitions
            # between the database commit and the offset commit. Their next owner gets the
            # records again and the inbox skips them: nothing is lost or applied twice.
            log.info("batch_offsets_not_committed_after_rebalance", error=type(exc).__name__)

    async def process_batch(self, events: Sequence[InboundEvent]) -> None:
        """Apply every event of the batch exactly once or dead-letter it, in order per
        partition. Raises only if dead-lettering fails."""
        admitted: list[Admitted] = []
        for event in events:
            with _context(event):
                checked = await self._admit(event)
            if checked is not None:
                admitted.append(checked)
        if not admitted:
            return
        try:
            outcome = await self._apply_batch(admitted)
        except Exception as exc:
            # The transaction itself failed (e.g. the database went away): nothing of the
            # batch is applied; apply it one event at a time, waiting out the outage.
            log.warning(
                "batch_failed_applying_one_by_one", size=len(admitted), error=type(exc).__name__
            )
            for handler, event in admitted:
                with _context(event):
                    await self._settle(handler, event)
            return
        for event, error in outcome.refused:
            with _context(event):
                await self._dead_letter(event, error)
        for (handler, event), first_error in outcome.later:
            with _context(event):
                await self._settle(handler, event, first_error=first_error)

    async def process(self, event: InboundEvent) -> bool:
        """Apply one event exactly once or dead-letter it; True if it is applied (now or
        before). Raises only if dead-lettering fails.

        A replayed event (``event.replayed``: a registry read again from its beginning, see
        replay.py) that is invalid is skipped, not dead-lettered again — the consumer group
        dead-lettered it once when it first came, and would otherwise do it again at every
        start."""
        admitted = await self._admit(event, event.replayed)
        if admitted is None:
            return False
        handler, event = admitted
        return await self._settle(handler, event, event.replayed)

    async def _admit(self, event: InboundEvent, replaying: bool = False) -> Admitted | None:
        """The handler and the (validated) event; or None once the record is dead-lettered
        (too large, no handler, an invalid event on a catalogue topic)."""
        size = event.size
        if size > self._max_message_bytes:
            error = PermanentError(
                f"message of {size} bytes exceeds the limit of {self._max_message_bytes}"
            )
            await self._dead_letter(event, error, replaying)
            return None
        try:
            handler = self.handler_for(event.topic)
            if event.topic in self._fixed:
                event = event.validated()
        except PermanentError as exc:
            await self._dead_letter(event, exc, replaying)
            return None
        return handler, event

    async def _settle(
        self,
        handler: Handler,
        event: InboundEvent,
        replaying: bool = False,
        *,
        first_error: BaseException | None = None,
    ) -> bool:
        """Apply one admitted event in its own transaction, with bounded retries for errors
        and no bound for outages; dead-letter it when it cannot be applied. ``first_error``:
        the event already failed once, inside a batch (that try counts)."""
        attempt = outages = 0
        error = first_error
        while True:
            if error is not None:
                if is_outage(error):
                    # The database or the broker is away: not this message's fault. Wait for
                    # it as long as it takes; dead-lettering here would lose every message
                    # that arrives during an outage.
                    outages += 1
                    log.warning("event_waiting_for_infrastructure", error=type(error).__name__)
                    await asyncio.sleep(self._retry.delay(min(outages, 8)))
                else:
                    attempt += 1
                    if attempt >= self._retry.max_attempts:
                        return await self._dead_letter(event, error)
                    log.warning("event_retry", attempt=attempt, error=type(error).__name__)
                    await asyncio.sleep(self._retry.delay(attempt))
            try:
                await self._apply(handler, event)
                return True
            except PermanentError as exc:
                return await self._dead_letter(event, exc, replaying)
            except Exception as exc:
                error = exc

    async def _apply(self, handler: Handler, event: InboundEvent) -> None:
        async with (
            self._pool().acquire() as conn,
            conn.transaction(),
            batch_scope(conn) as scope,
        ):
            if not await inbox.claim(conn, self.group, event.event_id, event.topic):
                EVENTS_DUPLICATE.inc()
                log.info("event_duplicate_skipped")
                return
            await self._handle(handler, event, conn)
            await scope.flush()
        EVENTS_APPLIED.inc()
        log.debug("event_processed", ce_type=_ce_type(event))

    async def _apply_batch(self, admitted: Sequence[Admitted]) -> BatchOutcome:
        """Apply the batch in one transaction: first without savepoints (they cost two round
        trips per event, and handlers rarely fail); if a handler fails, that transaction is
        rolled back and the batch applied again with a savepoint per event, the failed event
        taken as failed with the same error (not run twice: its tries stay bounded)."""
        with tracing.batch(self.group, [event for _, event in admitted]):
            try:
                return await self._apply_in_one_transaction(admitted, None)
            except _HandlerFailed as failure:
                return await self._apply_in_one_transaction(admitted, failure)

    async def _handle(self, handler: Handler, event: InboundEvent, conn: DbConnection) -> None:
        """Run the handler in the event's own span (shared.tracing.handling)."""
        with tracing.handling(event, self.group):
            await handler(event, conn)

    async def _apply_in_one_transaction(
        self, admitted: Sequence[Admitted], failed: _HandlerFailed | None
    ) -> BatchOutcome:
        """One transaction for the batch. ``failed`` None: any handler error aborts it
        (raised as :class:`_HandlerFailed`). Otherwise each event runs in a savepoint:

        An event its handler refuses (PermanentError) leaves nothing behind, not even its inbox
        claim, so that replaying it after a fix applies it. An event whose handler fails
        otherwise is left, with every later event of its partition (order per key), to be
        applied one at a time once the batch is committed."""
        savepoints = failed is not None
        outcome = BatchOutcome()
        applied: list[InboundEvent] = []
        held_up: set[tuple[str, int]] = set()  # partitions with an event that failed
        async with (
            self._pool().acquire() as conn,
            conn.transaction(),
            # Writes the handlers defer (the outbox, say) go in one statement per table for
            # the batch; event by event, each event's within its savepoint.
            batch_scope(conn) as scope,
        ):
            fresh = await inbox.claim_many(
                conn, self.group, [(e.event_id, e.topic) for _, e in admitted]
            )

            await _preload(conn, [(h, e) for h, e in admitted if e.event_id in fresh])

            async def unclaim(event: InboundEvent) -> None:
                if event.event_id in fresh:  # only a claim this batch made
                    fresh.discard(event.event_id)
                    await inbox.release(conn, self.group, event.event_id)

            for index, (handler, event) in enumerate(admitted):
                partition = (event.topic, event.partition)
                with _context(event):
                    if partition in held_up:
                        await unclaim(event)
                        outcome.later.append(((handler, event), None))
                        continue
                    if event.event_id not in fresh:  # applied before, or earlier in the batch
                        EVENTS_DUPLICATE.inc()
                        log.info("event_duplicate_skipped")
                        continue
                    try:
                        if not savepoints:
                            await self._handle(handler, event, conn)
                        elif failed is not None and index == failed.index:
                            raise failed.error
                        else:
                            async with conn.transaction():  # a savepoint
                                try:
                                    await self._handle(handler, event, conn)
                                except BaseException:
                                    scope.discard()  # what it deferred goes with its savepoint
                                    raise
                                await scope.flush()
                    except PermanentError as exc:
                        if not savepoints:
                            raise _HandlerFailed(index, exc) from exc
                        await unclaim(event)
                        outcome.refused.append((event, exc))
                        continue
                    except Exception as exc:
                        if not savepoints:
                            raise _HandlerFailed(index, exc) from exc
                        await unclaim(event)
                        held_up.add(partition)
                        outcome.later.append(((handler, event), exc))
                        continue
                    fresh.discard(event.event_id)
                    applied.append(event)
            # A deferred write that fails here fails the batch's transaction: the batch is then
            # applied one event at a time, each event with its own writes (see on_batch).
            await scope.flush()
        EVENTS_APPLIED.inc(len(applied))
        for event in applied:  # logged once committed, not before
            with _context(event):
                log.debug("event_processed", ce_type=_ce_type(event))
        return outcome

    async def _dead_letter(
        self, event: InboundEvent, error: BaseException, replaying: bool = False
    ) -> bool:
        if replaying:
            log.info("replayed_event_skipped", error=type(error).__name__)
            return False
        await self._dead_letters.publish(event, error)
        DEAD_LETTERS.labels(error_type=type(error).__name__).inc()
        EVENTS_DEAD_LETTERED.inc()
        log.warning(
            "event_dead_lettered",
            dlq=self._dead_letters.topic,
            error=type(error).__name__,
            reason=describe_error(error)[:300],
        )
        return False


async def _preload(conn: DbConnection, admitted: Sequence[Admitted]) -> None:
    """Let each handler that preloads read, for all its events of the batch at once, what they
    will read. A preload that fails fails the batch's transaction (applied one by one then,
    without preloading: the stores read what they need event by event)."""
    by_handler: dict[int, tuple[Handler, list[InboundEvent]]] = {}  # by identity, in order
    for handler, event in admitted:
        by_handler.setdefault(id(handler), (handler, []))[1].append(event)
    for handler, events in by_handler.values():
        if isinstance(handler, Preloading):
            await handler.preload(events, conn)


def _ce_type(event: InboundEvent) -> str | None:
    return event.attributes.type if event.attributes else None


@contextlib.contextmanager
def _context(event: InboundEvent) -> Iterator[None]:
    """The event's ids and position on every log line written while handling it."""
    with message_context(
        event_id=event.event_id,
        correlation_id=event.correlation_id,
        topic=event.topic,
        partition=event.partition,
        offset=event.offset,
    ):
        yield
