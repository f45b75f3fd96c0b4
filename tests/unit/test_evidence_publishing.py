"""services/evidence/publishing.py on a fake store: every table per month and `all`, published
on evidence.aggregates.v1 only when its figures changed; one instance at a time."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from services.evidence.facts import Facts, UnmetFact
from services.evidence.handlers import SOURCE
from services.evidence.publishing import publish_changed
from shared.contracts import events as ev
from shared.contracts import topics
from shared.unit import Unit
from tests.unit.test_evidence_aggregation import DEC, two_pathways


@dataclass
class FakeStore:
    facts_: Facts
    digests: dict[tuple[str, str], str] = field(default_factory=dict)
    locked: bool = False

    async def lock_publishing(self) -> bool:
        return not self.locked

    async def facts(self) -> Facts:
        return self.facts_

    async def published_digests(self) -> dict[tuple[str, str], str]:
        return dict(self.digests)

    async def mark_published(self, digests: dict[tuple[str, str], str]) -> None:
        self.digests |= digests


@dataclass
class Units:
    store: FakeStore
    emitted: list[Any] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[Unit[Any]]:
        unit = Unit(None, self.store, SOURCE)  # type: ignore[arg-type]
        yield unit
        self.emitted += unit.emitted


def published(units: Units) -> list[tuple[str, str]]:
    out = []
    for event in units.emitted:
        assert event.topic == topics.EVIDENCE_AGGREGATES
        headers = dict(event.headers)
        assert headers["ce_type"] == ev.EVIDENCE_AGGREGATES_PUBLISHED
        payload = ev.EvidenceAggregatesPublished.model_validate_json(event.body)
        assert event.key == payload.table
        out.append((payload.table, payload.period))
    return sorted(out)


async def test_tables_with_figures_are_published_once_per_period_then_only_when_changed() -> None:
    units = Units(FakeStore(two_pathways()))
    assert await publish_changed(units, 5) == len(published(units)) > 0
    tables = published(units)
    # every month the facts hold (one, 2026-12) and `all`; empty tables are not announced
    assert ("scores_by_pathway", "all") in tables and ("scores_by_pathway", "2026-12") in tables
    assert not any(t == "unmet_by_area" for t, _ in tables), "no unmet need: nothing to say"
    units.emitted.clear()
    assert await publish_changed(units, 5) == 0 and units.emitted == []

    # needs of 5 cases told unmatched: the tables that count them are published again, the
    # scores (unchanged) are not
    facts = two_pathways()
    unmet = tuple(UnmetFact(f"c{n}", "n2", "social.housing", "no_listing", DEC) for n in range(5))
    units.store.facts_ = replace(facts, unmet=unmet)
    await publish_changed(units, 5)
    again = published(units)
    assert ("unmet_by_area", "all") in again and ("referrals_by_level", "all") in again
    assert not any(t == "scores_by_pathway" for t, _ in again)


async def test_another_instance_publishing_leaves_it_alone() -> None:
    units = Units(replace(FakeStore(two_pathways()), locked=True))
    assert await publish_changed(units, 5) == 0 and units.emitted == []
