"""The aggregates on evidence.aggregates.v1: every table of the report for every period (and
``all`` periods together), published when its figures changed since it was last published.

A periodic job (app.py); one unit of work, so the events and the digests of what they carry
commit together (the outbox relay publishes them). Two instances do not both publish: the
store's advisory lock lets one compute at a time."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime

from shared.contracts import events as ev
from shared.contracts import topics
from shared.logging import get_logger
from shared.unit import Unit

from .report import Filters, Table
from .source import report_of
from .store import EvidenceStore

ALL_PERIODS = "all"
log = get_logger(__name__)


def aggregates_event(
    table: Table, period: str, k: int, now: datetime
) -> ev.EvidenceAggregatesPublished:
    return ev.EvidenceAggregatesPublished(
        table=table.name,
        period=period,
        keys=list(table.keys),
        figures=list(table.figures),
        rows=[
            ev.AggregateRow(key=list(r.key), values=list(r.values), cases=r.cases)
            for r in table.rows
        ],
        k=k,
        generated_at=now,
    )


def digest(event: ev.EvidenceAggregatesPublished) -> str:
    """What identifies the figures: everything but when they were computed."""
    body = event.model_dump(mode="json", exclude={"generated_at"})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


async def publish_changed(
    units: Callable[[], AbstractAsyncContextManager[Unit[EvidenceStore]]], k: int
) -> int:
    """Publish the tables whose figures changed; how many were published."""
    async with units() as unit:
        store = unit.stores
        if not await store.lock_publishing():
            return 0  # another instance is at it
        facts = await store.facts()
        now = datetime.now(UTC)
        before = await store.published_digests()
        periods = (None, *report_of(facts, Filters(), k, now).options.get("period", ()))
        changed: dict[tuple[str, str], str] = {}
        for period in periods:
            label = period or ALL_PERIODS
            for table in report_of(facts, Filters(period=period), k, now).tables:
                event = aggregates_event(table, label, k, now)
                fingerprint = digest(event)
                last = before.get((table.name, label))
                if last == fingerprint or (last is None and not table.rows):
                    continue  # unchanged, or still nothing to say
                unit.emit(ev.EVIDENCE_AGGREGATES_PUBLISHED, event, topic=topics.EVIDENCE_AGGREGATES)
                changed[(table.name, label)] = fingerprint
        await store.mark_published(changed)
    if changed:
        log.info("aggregates_published", tables=len(changed))
    return len(changed)
