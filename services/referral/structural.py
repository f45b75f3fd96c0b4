"""Structural gaps (decision 18), apart from I/O: which clusters of unmet needs are reported to
which government agencies, and whether a government agency's commitment is recorded. Pure (the
clock and new ids are arguments); the store counts the clusters and keeps the rows, the timer
job (timers.py) and the handler (handlers.py) carry out what is decided here.

- A **district** is a return area cut to ``district_digits`` digits after the country (P-codes:
  "SN0101…" → "SN0101" with 4 digits); a shorter area is its own district.
- **Periods** are fixed windows of ``period_days`` days counted from 1970-01-01 (UTC), so "once
  per period" means the same window to every instance and after every restart.
- A cluster is the unmet needs of one category in one district recorded (``since``) within the
  current period and still unmet; at ``threshold`` it is reported, once (the store's unique key
  on district, category and period).
- A government agency **covers** a district when one of its listings' service areas overlaps
  it (contains it, or lies within it); one with no listing in the directory covers the
  countries of its agency record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.contracts import events as ev
from shared.contracts.events import CommitmentError as E
from shared.contracts.taxonomy import TAXONOMY

EPOCH = date(1970, 1, 1)

# What each refusal says to its sender (never a value it sent).
REASONS = {
    E.INVALID_MESSAGE: "the commitment does not match the contract",
    E.UNKNOWN_REPORT: "no structural-gap report has this report_id",
    E.NOT_ADDRESSED: "the report was not addressed to this agency",
    E.SERVICE_OF_OTHER_AGENCY: "the planned service_id is listed by another agency",
}


@dataclass(frozen=True, slots=True)
class GapRule:
    """When a cluster of unmet needs is a structural gap (ReferralSettings.structural_*)."""

    district_digits: int = 4
    period_days: int = 30
    threshold: int = 3


def period_of(now: datetime, days: int) -> tuple[date, date]:
    """The fixed window of ``days`` days that holds ``now``: (first day, first day after)."""
    today = now.astimezone(UTC).date()
    start = EPOCH + timedelta(days=(today - EPOCH).days // days * days)
    return start, start + timedelta(days=days)


def at_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def district_of(area: str, digits: int) -> str:
    return area[: 2 + digits]


def trend(current: int, previous: int) -> ev.GapTrend:
    if previous == 0:
        return ev.GapTrend.NEW
    if current > previous:
        return ev.GapTrend.RISING
    if current < previous:
        return ev.GapTrend.FALLING
    return ev.GapTrend.STABLE


@dataclass(frozen=True, slots=True)
class Cluster:
    """The period's unmet needs of one category in one district (the store counts them)."""

    area: str
    category: str
    reasons: Mapping[str, int]  # UnmatchedReason value → unmet needs
    previous: int  # the period before: its report's count, else its unmet needs still recorded

    @property
    def unmet_needs(self) -> int:
        return sum(self.reasons.values())


@dataclass(frozen=True, slots=True)
class Government:
    """A registered government agency and where it acts: its listings' service areas (any
    status), and the countries of its record."""

    agency_id: str
    countries: tuple[str, ...]
    listing_areas: tuple[str, ...] = ()


def covers(government: Government, district: str) -> bool:
    if government.listing_areas:
        return any(
            district.startswith(a) or a.startswith(district) for a in government.listing_areas
        )
    return district[:2] in government.countries


@dataclass(frozen=True, slots=True)
class GapReport:
    """A structural gap to record once and tell each addressee (none: recorded for the
    evidence only)."""

    report_id: str
    area: str
    category: str
    period_start: date
    period_end: date
    reasons: tuple[ev.ReasonCount, ...]
    previous: int
    trend: ev.GapTrend
    addressees: tuple[str, ...]

    @property
    def unmet_needs(self) -> int:
        return sum(r.count for r in self.reasons)

    def events(self) -> list[ev.StructuralGapReported]:
        return [
            ev.StructuralGapReported(
                report_id=self.report_id,
                addressed_agency_id=agency_id,
                area=self.area,
                category=self.category,
                dimension=TAXONOMY.dimension_of(self.category),
                period_start=self.period_start,
                period_end=self.period_end,
                unmet_needs=self.unmet_needs,
                reasons=list(self.reasons),
                previous_period_unmet_needs=self.previous,
                trend=self.trend,
            )
            for agency_id in self.addressees
        ]


def _reason_counts(reasons: Mapping[str, int]) -> tuple[ev.ReasonCount, ...]:
    """In the vocabulary's order, reasons with no need left out."""
    return tuple(
        ev.ReasonCount(reason=r, count=reasons[r.value])
        for r in ev.UnmatchedReason
        if reasons.get(r.value, 0) > 0
    )


def gap_reports(
    clusters: Sequence[Cluster],
    governments: Sequence[Government],
    period: tuple[date, date],
    rule: GapRule,
    new_id: Callable[[], str],
) -> list[GapReport]:
    """The clusters at the threshold as reports, each addressed to the government agencies
    covering its district (by agency id); in district and category order."""
    out = []
    for c in sorted(clusters, key=lambda c: (c.area, c.category)):
        if c.unmet_needs < rule.threshold:
            continue
        out.append(
            GapReport(
                report_id=new_id(),
                area=c.area,
                category=c.category,
                period_start=period[0],
                period_end=period[1],
                reasons=_reason_counts(c.reasons),
                previous=c.previous,
                trend=trend(c.unmet_needs, c.previous),
                addressees=tuple(sorted(g.agency_id for g in governments if covers(g, c.area))),
            )
        )
    return out


# ----- commitments -----


@dataclass(frozen=True, slots=True)
class GapFacts:
    """What a commitment is checked against: the report and whom it was addressed to."""

    report_id: str
    area: str
    category: str
    addressees: frozenset[str]


@dataclass(frozen=True, slots=True)
class CommitmentRow:
    report_id: str
    agency_id: str
    kind: ev.CommitmentKind
    message_id: str
    service_id: str | None = None
    planned_by: date | None = None
    reason: ev.NotPlannedReason | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class CommitmentRefused:
    error: E
    reason: str
    errors: Sequence[ev.FieldError] = ()


def refused(
    error: E, reason: str | None = None, errors: Sequence[ev.FieldError] = ()
) -> CommitmentRefused:
    return CommitmentRefused(error, reason or REASONS[error], errors)


def decide_commitment(
    message: ev.StructuralCommitment,
    *,
    gap: GapFacts | None,
    previous: CommitmentRow | None,
    service_owner: str | None,
    today: date,
    message_id: str,
) -> tuple[CommitmentRow, ev.StructuralCommitmentApplied] | CommitmentRefused:
    """The commitment to record and its answer (replacing the agency's earlier commitment to
    the report, if any); or why not. ``service_owner``: the agency listing the planned
    service_id, if it is listed."""
    commitment = message.commitment
    if isinstance(commitment, ev.PlannedListing) and commitment.planned_by < today:
        return refused(
            E.INVALID_MESSAGE,
            "planned_by has already passed",
            (ev.FieldError(field="commitment.planned_by", message="must be today or later"),),
        )
    if gap is None:
        return refused(E.UNKNOWN_REPORT)
    if message.agency_id not in gap.addressees:
        return refused(E.NOT_ADDRESSED)
    if service_owner is not None and service_owner != message.agency_id:
        return refused(
            E.SERVICE_OF_OTHER_AGENCY,
            errors=(
                ev.FieldError(
                    field="commitment.service_id", message=REASONS[E.SERVICE_OF_OTHER_AGENCY]
                ),
            ),
        )
    details: dict[str, Any] = (
        {"service_id": commitment.service_id, "planned_by": commitment.planned_by}
        if isinstance(commitment, ev.PlannedListing)
        else {"reason": commitment.reason, "note": commitment.note}
    )
    row = CommitmentRow(
        gap.report_id,
        message.agency_id,
        ev.CommitmentKind(commitment.kind),
        message_id,
        **details,
    )
    applied = ev.StructuralCommitmentApplied(
        message_id=message_id,
        report_id=gap.report_id,
        agency_id=row.agency_id,
        area=gap.area,
        category=gap.category,
        kind=row.kind,
        service_id=row.service_id,
        planned_by=row.planned_by,
        not_planned_reason=row.reason,
        replaced=previous.kind if previous else None,
    )
    return row, applied
