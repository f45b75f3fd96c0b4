"""Driving submissions through intake → referral → notification and timing what reaches the
agencies' inbox topics.

Every need of a submission ends, for the bench, with one inbox event: ``referral-received`` in the
provider's inbox, or ``need-unmatched`` in the referrer's. The inbox event carries the
submission's id as its correlation id, so its latency is the inbox record's timestamp (set by
notification's producer) less the moment the bench sent the submission. A submission is complete
when all its needs have arrived.

Nothing may be applied twice (also with several instances of a service in one group): an inbox
record seen again with the same ``ce_id`` is a redelivery (at-least-once, counted once); two
*distinct* inbox events for one need, or for one (inbox, type, subject), are a duplicate, a side
effect applied twice, and fail the run."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer

from shared.contracts import events as ev
from shared.contracts import topics
from shared.kafka.connection import KafkaConnection
from tests import factories as f

from .world import World, submission

NEED_ENDS = frozenset({ev.INBOX_REFERRAL_RECEIVED, ev.INBOX_NEED_UNMATCHED})


@dataclass
class Traffic:
    """What one phase sent and what came back."""

    sent_at: dict[str, float] = field(default_factory=dict)  # submission ce_id -> wall clock
    needs: dict[str, int] = field(default_factory=dict)  # submission ce_id -> needs
    arrived: dict[str, dict[str, float]] = field(default_factory=dict)  # ce_id -> need -> time
    completed_at: dict[str, float] = field(default_factory=dict)
    inbox_events: list[float] = field(default_factory=list)  # every inbox record of the phase
    ends: dict[str, int] = field(default_factory=dict)  # inbox type -> count
    redelivered: int = 0  # inbox records seen again with the same ce_id
    # distinct inbox event ids per need end and per (inbox topic, ce_type, ce_subject)
    need_events: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    effect_events: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)
    _ids: set[str] = field(default_factory=set)

    def expects(self, correlation_id: str) -> bool:
        return correlation_id in self.needs

    def first_time(self, event_id: str, topic: str, ce_type: str, subject: str) -> bool:
        """Whether this inbox record is new (False: a redelivery of one already seen)."""
        if event_id in self._ids:
            self.redelivered += 1
            return False
        self._ids.add(event_id)
        self.effect_events.setdefault((topic, ce_type, subject), set()).add(event_id)
        return True

    def record(
        self, correlation_id: str, need_id: str, ce_type: str, at: float, event_id: str = ""
    ) -> None:
        self.ends[ce_type] = self.ends.get(ce_type, 0) + 1
        self.need_events.setdefault((correlation_id, need_id), set()).add(event_id)
        needs = self.arrived.setdefault(correlation_id, {})
        needs.setdefault(need_id, at)  # a redelivery keeps the first arrival
        if len(needs) == self.needs[correlation_id]:
            self.completed_at.setdefault(correlation_id, max(needs.values()))

    def latencies_ms(self) -> list[float]:
        return sorted(
            (at - self.sent_at[cid]) * 1000
            for cid, needs in self.arrived.items()
            for at in needs.values()
        )

    @property
    def pending(self) -> int:
        return len(self.needs) - len(self.completed_at)

    @property
    def duplicate_need_ends(self) -> int:
        """Needs that ended more than once (distinct inbox events), counted per extra event."""
        return sum(len(ids) - 1 for ids in self.need_events.values())

    @property
    def duplicate_inbox_events(self) -> int:
        """Extra distinct inbox events for one (inbox, type, subject)."""
        return sum(len(ids) - 1 for ids in self.effect_events.values())


class InboxWatcher:
    """Reads every inbox topic of the run's agencies, as the operator, and hands each record to
    the traffic of the phase it belongs to."""

    def __init__(self, kafka: KafkaConnection, world: World) -> None:
        self._consumer = AIOKafkaConsumer(
            *(topics.agency_inbox(a) for a in world.agency_ids),
            **kafka.client_kwargs(),
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_partition_fetch_bytes=4 * 2**20,
        )
        self.phases: list[Traffic] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._consumer.stop()

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batches.values():
                for r in records:
                    self._dispatch(
                        r.topic, dict(r.headers or ()), r.value or b"", r.timestamp / 1000
                    )

    def _dispatch(self, topic: str, headers: dict[str, bytes], value: bytes, at: float) -> None:
        correlation_id = headers.get("ce_correlationid", b"").decode()
        ce_type = headers.get("ce_type", b"").decode()
        event_id = headers.get("ce_id", b"").decode()
        subject = headers.get("ce_subject", b"").decode()
        for phase in self.phases:
            if not phase.expects(correlation_id):
                continue
            if not phase.first_time(event_id, topic, ce_type, subject):
                return
            phase.inbox_events.append(at)
            if ce_type in NEED_ENDS:
                need_id = str(json.loads(value)["need_id"])
                phase.record(correlation_id, need_id, ce_type, at, event_id)
            return


async def send_submissions(
    world: World,
    traffic: Traffic,
    *,
    count: int,
    rate_per_s: float | None,
    seed: int,
    on_sent: Callable[[int], None],
) -> float:
    """Publish ``count`` submissions from the referrers' own producers, as fast as the producers
    take them (``rate_per_s`` None) or paced on a fixed schedule. Returns the seconds taken."""
    rng = random.Random(seed)
    by_id = {a.agency_id: a for a in world.referrers}
    pending: list[asyncio.Future[object]] = []
    started = time.monotonic()
    for n in range(count):
        if rate_per_s:
            delay = started + n / rate_per_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        case = submission(world, rng)
        event = f.submission_event(case)
        producer = by_id[case.agency_id].producer
        assert producer is not None
        traffic.needs[event.event_id] = len(case.needs)
        traffic.sent_at[event.event_id] = time.time()
        pending.append(
            await producer.send(
                event.topic,
                event.body,
                key=event.key.encode(),
                headers=[(k, v.encode()) for k, v in event.headers.items()],
            )
        )
        if len(pending) >= 500 or rate_per_s:
            await asyncio.gather(*pending)
            on_sent(len(pending))
            pending.clear()
    await asyncio.gather(*pending)
    on_sent(len(pending))
    return time.monotonic() - started


def sustained_rate(times: list[float], low: float = 0.1, high: float = 0.9) -> float:
    """Events per second between the ``low`` and ``high`` quantiles of their times: the steady
    part of the run, without the ramp-up and the tail."""
    if len(times) < 10:
        return 0.0
    ordered = sorted(times)
    i, j = int(len(ordered) * low), int(len(ordered) * high) - 1
    span = ordered[j] - ordered[i]
    return (j - i) / span if span > 0 else 0.0


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]
