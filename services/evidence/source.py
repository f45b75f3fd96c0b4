"""The report source: the read model's facts, counted and suppressed, for some filters. What
the dashboard is given (a :data:`~services.evidence.report.ReportSource`), and what the CSV
export and the publishing job read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from .aggregation import Counted, count, options
from .facts import Facts
from .report import Filters, Report, ReportSource, Row, Table
from .store import EvidenceStore
from .suppression import suppressed


def published(table: Counted, k: int) -> Table:
    """The table as it may be shown: hidden cells with no figure and no case count."""
    counts = {c.key: len(c.cases) for c in table.cells}
    hidden = suppressed(counts, k, whole_table=table.whole_table_total)
    rows = tuple(
        Row(c.key, tuple(None for _ in c.values), None)
        if c.key in hidden
        else Row(c.key, c.values, len(c.cases))
        for c in table.cells
    )
    return Table(table.name, table.keys, table.figures, rows)


def report_of(facts: Facts, filters: Filters, k: int, now: datetime) -> Report:
    tables = tuple(published(t, k) for t in count(facts, filters))
    return Report(filters, k, now, tables, options(facts))


def report_source(pool: Callable[[], asyncpg.Pool], k: int) -> ReportSource:
    """Reports from the service's database. ``pool`` is asked for at each call (the service's
    pool exists only once it has started)."""

    async def build(filters: Filters) -> Report:
        async with pool().acquire() as conn:
            facts = await EvidenceStore(conn).facts()
        return report_of(facts, filters, k, datetime.now(UTC))

    return build
