"""One unit of work: a service's stores over one transaction, and the events it emits.

A handler, a timer, a periodic job or a CLI command gets a :class:`Unit`. It reads and writes
through ``unit.stores`` (the only modules with SQL) and announces what happened with
``unit.emit(...)``: the envelope (source, correlation and causation ids) is filled from the
unit's :class:`Cause`, and the emitted events reach the outbox in one statement when the unit's
work is done, in the same transaction as the state change. Nothing outside the stores opens a
transaction or builds an event by hand.

Typed dispatch (:func:`typed_handler`): a service registers handlers by CloudEvents type in one
table; the consumer has already validated the payload against its contract
(``InboundEvent.validated``), and the handler gets ``(payload, unit)``. The agencies' own
inbound topics keep raw-event handlers: bad input there must be answered to its sender.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import OutgoingEvent, build_event
from shared.db import DbConnection, batch_scope, outbox
from shared.kafka.inbound import InboundEvent, PermanentError
from shared.tracing import current_traceparent

StoresT = TypeVar("StoresT")


@dataclass(frozen=True, slots=True)
class Cause:
    """What a unit's events follow from: the conversation (correlation id), the event that
    caused them (None for a timer or a command that starts one), that event's type, and when
    it happened (its ce_time: a read model dates what it records by it, not by when it read
    it)."""

    correlation_id: str | None = None
    causation_id: str | None = None
    ce_type: str | None = None
    time: datetime | None = None

    @classmethod
    def of(cls, event: InboundEvent) -> Cause:
        attributes = event.attributes
        if attributes is None:
            return cls(event.correlation_id, event.event_id)
        return cls(event.correlation_id, event.event_id, attributes.type, attributes.time)


@dataclass(slots=True)
class Unit(Generic[StoresT]):
    conn: DbConnection
    stores: StoresT
    source: str  # this service's CloudEvents source
    cause: Cause = field(default_factory=Cause)
    emitted: list[OutgoingEvent] = field(default_factory=list)

    def emit(
        self,
        ce_type: str,
        payload: ev.Contract,
        *,
        topic: str,
        key: str | None = None,
        subject: str | None = None,
        correlation_id: str | None = None,
    ) -> OutgoingEvent:
        """Queue one event. ``key``: by default what the topic catalogue says the topic is
        keyed by (a payload field, or the subject); given only where a topic documents an
        exception. ``correlation_id``: only where an event continues another conversation than
        its cause's (a timer acting on a referral, say)."""
        event = build_event(
            topic=topic,
            key=key if key is not None else catalogue_key(topic, payload, subject),
            type_=ce_type,
            source=self.source,
            subject=subject,
            data=payload,
            correlation_id=correlation_id or self.cause.correlation_id,
            causation_id=self.cause.causation_id,
            # The emitting span's (a handler's): the next service's span is its child.
            traceparent=current_traceparent(),
        )
        self.emitted.append(event)
        return event

    async def flush(self) -> None:
        """Hand what was emitted to the outbox, inside the transaction: deferred to the end of
        the consumer's batch (one statement for all its events) when the unit runs in one,
        written at once otherwise (a timer, a command)."""
        await batch_scope.write(self.conn, "outbox", self.emitted, outbox.enqueue)
        self.emitted = []


def catalogue_key(topic: str, payload: ev.Contract, subject: str | None) -> str:
    """The key of an event on ``topic``, as the catalogue's ``key`` names it."""
    field_name = topics.spec(topic).key
    value = subject if field_name == "ce_subject" else getattr(payload, field_name, None)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{topic} is keyed by {field_name}: {type(payload).__name__} has none")
    return value


TypedHandler = Callable[[Any, Unit[StoresT]], Awaitable[None]]
# Loads, for all the batch's payloads of one type, what their handler will read.
TypedPreload = Callable[[StoresT, list[Any]], Awaitable[None]]
RawPreload = Callable[[StoresT, Sequence[InboundEvent]], Awaitable[None]]


@dataclass(frozen=True, eq=False)
class UnitHandler(Generic[StoresT]):
    """A consumer handler (shared.kafka.consumer.Handler) that runs ``run(event, unit)`` in a
    unit over the consumer's connection, and hands what it emitted to the outbox. ``preload``:
    before a batch is applied, what all its events will read is loaded at once (the consumer's
    ``Preloading``); the stores then answer from the batch cache."""

    run: Callable[[InboundEvent, Unit[StoresT]], Awaitable[None]]
    stores: Callable[[DbConnection], StoresT]
    source: str
    preload_with: RawPreload[StoresT] | None = None

    async def __call__(self, event: InboundEvent, conn: DbConnection) -> None:
        unit = Unit(conn, self.stores(conn), self.source, Cause.of(event))
        await self.run(event, unit)
        await unit.flush()

    async def preload(self, events: Sequence[InboundEvent], conn: DbConnection) -> None:
        if self.preload_with is not None:
            await self.preload_with(self.stores(conn), events)


def typed_handler(
    table: Mapping[str, TypedHandler[StoresT]],
    stores: Callable[[DbConnection], StoresT],
    source: str,
    *,
    ignored: Collection[str] = (),
    on_tombstone: Callable[[str, Unit[StoresT]], Awaitable[None]] | None = None,
    preload: Mapping[str, TypedPreload[StoresT]] | RawPreload[StoresT] | None = None,
) -> UnitHandler[StoresT]:
    """One consumer handler from a table of CloudEvents type → ``handler(payload, unit)``.
    ``ignored``: types consumed and deliberately left alone. A type in neither is refused
    (dead-lettered with that reason): it means the table and the catalogue disagree.
    ``preload``: CloudEvents type → ``load(stores, payloads)`` for a batch's payloads of it; or
    one ``load(stores, events)`` for all the batch's (validated) events, when what to load
    depends on the type and the payload together (notification's fan-out)."""

    async def run(event: InboundEvent, unit: Unit[StoresT]) -> None:
        if event.is_tombstone():
            if on_tombstone is not None:
                await on_tombstone(event.tombstone_key(), unit)
            return
        ce_type = event.require_attributes().type
        if ce_type in ignored:
            return
        handler = table.get(ce_type)
        if handler is None:
            raise PermanentError(f"no handler for {ce_type} in this service")
        if event.payload is None:  # pragma: no cover - the consumer validates fixed topics
            raise PermanentError("the event was not validated against its contract")
        await handler(event.payload, unit)

    async def load(stores_: StoresT, events: Sequence[InboundEvent]) -> None:
        if callable(preload):
            await preload(stores_, events)
            return
        payloads: dict[str, list[Any]] = {}
        for event in events:
            attributes = event.attributes
            if attributes is not None and event.payload is not None:
                payloads.setdefault(attributes.type, []).append(event.payload)
        for ce_type, of_type in payloads.items():
            if preload is not None and ce_type in preload:
                await preload[ce_type](stores_, of_type)

    return UnitHandler(run, stores, source, load if preload else None)


def raw_handler(
    handler: Callable[[InboundEvent, Unit[StoresT]], Awaitable[None]],
    stores: Callable[[DbConnection], StoresT],
    source: str,
    *,
    preload: RawPreload[StoresT] | None = None,
) -> UnitHandler[StoresT]:
    """A consumer handler for an agency's own inbound topic: ``handler(event, unit)`` reads the
    raw event (bad input is answered to its sender) and works through the same unit.
    ``preload(stores, events)``: what a batch of these raw events will read, at once."""
    return UnitHandler(handler, stores, source, preload)


@contextlib.asynccontextmanager
async def open_unit(
    connection: contextlib.AbstractAsyncContextManager[DbConnection],
    stores: Callable[[DbConnection], StoresT],
    source: str,
    cause: Cause | None = None,
) -> AsyncIterator[Unit[StoresT]]:
    """A unit in a transaction of its own, for a timer, a periodic job or a command:
    ``async with open_unit(pool.acquire(), Stores, SOURCE) as unit``. What it emitted reaches
    the outbox in the same transaction; an exception rolls both back."""
    async with connection as conn, conn.transaction():
        unit = Unit(conn, stores(conn), source, cause or Cause())
        yield unit
        await unit.flush()
