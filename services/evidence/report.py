"""What the evidence read model publishes: tables of suppressed aggregates for some filters.

The one shape the aggregate topic, the CSV export and the dashboard all read: the read model
(store + aggregation) builds a :class:`Report`; the web pages and the CLI only render it. A
figure is ``None`` where its cell counted fewer than ``k`` cases, or could be derived from
published totals by subtraction (complementary suppression): no renderer ever sees the number.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from shared.contracts.taxonomy import Dimension, Level

# Table names every report carries (the dashboard draws these three as charts).
UNMET_BY_AREA = "unmet_by_area"  # keys (area, reason); figures (unmet_needs,)
ANSWERS_BY_PROVIDER = "answers_by_provider"
# keys (provider, category); figures (referrals_made, answered, accepted, completed, failed,
# acceptance_rate, answer_hours_p50, answer_hours_p90)
SCORES_BY_PATHWAY = "scores_by_pathway"
# keys (pathway, wave); figures (economic_change, social_change, psychosocial_change,
# composite_change): the mean change from baseline to the wave of the cases of the pathway


@dataclass(frozen=True, slots=True)
class Filters:
    """What the reader narrowed the report to (None: everything)."""

    country: str | None = None  # ISO 3166-1 alpha-2, the first two characters of an area code
    region: str | None = None  # an area code prefix longer than the country's
    period: str | None = None  # a period label, e.g. "2026-12" (calendar month, UTC)
    dimension: Dimension | None = None
    level: Level | None = None


@dataclass(frozen=True, slots=True)
class Row:
    key: tuple[str, ...]  # one value per Table.keys
    values: tuple[float | None, ...]  # one per Table.figures; None: suppressed
    cases: int | None  # distinct cases behind the row; None when the row is suppressed

    @property
    def suppressed(self) -> bool:
        return self.cases is None


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    keys: tuple[str, ...]
    figures: tuple[str, ...]
    rows: tuple[Row, ...] = ()


@dataclass(frozen=True, slots=True)
class Report:
    filters: Filters
    k: int  # cells with fewer cases than this are suppressed
    generated_at: datetime
    tables: tuple[Table, ...]
    # The values each filter can take in the read model (for the dashboard's choices).
    options: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


#: Builds the report for some filters (the read model's; the dashboard is given one).
ReportSource = Callable[[Filters], Awaitable[Report]]
