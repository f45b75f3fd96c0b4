"""The aggregates of the read model, apart from I/O: the facts of the cases that count, narrowed
by the reader's filters, counted into the report's tables. Pure: the store loads the facts,
suppression.py hides the small cells, source.py puts the two together.

Every cell keeps the set of distinct cases behind it: suppression counts cases, not events
(ten referrals of one returnee are one person to protect).

- **Periods** are calendar months (UTC) of when a thing happened: a referral's request, a need
  told unmatched, a handover's latest step, an assessment's date, a missed wave's due date.
- **Areas** are P-code prefixes of the case's return area (a community need's area): country =
  the first 2 characters, region = the first 4, district = the whole code. A table's ``area``
  is one level below the filter: by country without one, by region within a country, by
  district within a region.
- **Pathway** of a case: the sorted categories of its referrals a provider accepted (or
  started, or completed), joined by ``+``; ``none`` when no referral was accepted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime

from shared.contracts.taxonomy import TAXONOMY, Level

from .facts import AssessmentFact, CaseFact, Facts, NeedFact, ReferralFact
from .report import ANSWERS_BY_PROVIDER, SCORES_BY_PATHWAY, UNMET_BY_AREA, Filters

REFERRALS_BY_LEVEL = "referrals_by_level"
BY_GROUP = "by_group"
HANDOVERS_BY_AREA = "handovers_by_area"
FOLLOW_UPS_BY_AREA = "follow_ups_by_area"

BASELINE = "baseline"
NO_PATHWAY = "none"
COUNTRY_CHARS, REGION_CHARS = 2, 4
SCORE_DIMENSIONS = ("economic", "social", "psychosocial", "composite")
# Breakdowns of the by_group table: what each case is counted under.
BREAKDOWNS = ("sex", "age_band", "vulnerability")
FINISHED = frozenset({"completed"})
FAILED = frozenset({"failed"})

Value = float | None


@dataclass(frozen=True, slots=True)
class Cell:
    key: tuple[str, ...]
    values: tuple[Value, ...]
    cases: frozenset[str]


@dataclass(frozen=True, slots=True)
class Counted:
    """One table before suppression."""

    name: str
    keys: tuple[str, ...]
    figures: tuple[str, ...]
    cells: tuple[Cell, ...]
    # Whether the sum of all cells is a total someone could subtract from (not when a case
    # counts in several cells: by sex, by age band, by vulnerability).
    whole_table_total: bool = True


# ----- small pure helpers -----


def period_of(moment: datetime | date) -> str:
    return f"{moment.year:04d}-{moment.month:02d}"


def country_of(area: str) -> str:
    return area[:COUNTRY_CHARS]


def region_of(area: str) -> str | None:
    return area[:REGION_CHARS] if len(area) >= REGION_CHARS else None


def area_key(area: str, filters: Filters) -> str:
    """The area a figure is shown under: one level below what the reader narrowed to."""
    if filters.region is not None:
        return area
    if filters.country is not None:
        return area[:REGION_CHARS]
    return country_of(area)


def quantile(values: list[float], q: float) -> float | None:
    """The q-quantile, linearly interpolated between the closest ranks (None: no values)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mean(values: Iterable[float]) -> float | None:
    items = list(values)
    return sum(items) / len(items) if items else None


def rounded(value: Value, digits: int = 3) -> Value:
    return None if value is None else round(value, digits)


def pathway_of(referrals: Iterable[ReferralFact]) -> str:
    categories = sorted({r.category for r in referrals if r.accepted})
    return "+".join(categories) if categories else NO_PATHWAY


# ----- what the filters keep -----


@dataclass(frozen=True, slots=True)
class Scope:
    """The facts under the filters, indexed for the tables."""

    filters: Filters
    cases: dict[str, CaseFact]
    needs: dict[tuple[str, str], NeedFact]

    def in_period(self, moment: datetime | date) -> bool:
        return self.filters.period is None or period_of(moment) == self.filters.period

    def need_fits(self, case_id: str, need_id: str, category: str) -> bool:
        """The need is of the filtered dimension and level (a need not in the read model —
        an erased case's — is taken as its category's dimension, individual level)."""
        dimension, level = self.need_class(case_id, need_id, category)
        f = self.filters
        return (f.dimension is None or dimension == f.dimension.value) and (
            f.level is None or level == f.level.value
        )

    def need_class(self, case_id: str, need_id: str, category: str) -> tuple[str, str]:
        need = self.needs.get((case_id, need_id))
        if need is not None:
            return need.dimension, need.level
        case = self.cases.get(case_id)
        level = case.level if case is not None else Level.INDIVIDUAL.value
        return TAXONOMY.dimension_of(category).value, level


def in_area(case: CaseFact, filters: Filters) -> bool:
    if filters.country is not None and country_of(case.area) != filters.country:
        return False
    return filters.region is None or case.area.startswith(filters.region)


def scope_of(facts: Facts, filters: Filters) -> Scope:
    cases = {c.case_id: c for c in facts.cases if c.statistics and in_area(c, filters)}
    needs = {(n.case_id, n.need_id): n for n in facts.needs if n.case_id in cases}
    return Scope(filters, cases, needs)


# ----- the tables -----


def _cells(
    groups: dict[tuple[str, ...], list[str]],
    figures: Callable[[tuple[str, ...]], tuple[Value, ...]],
) -> tuple[Cell, ...]:
    return tuple(
        Cell(key, figures(key), frozenset(case_ids)) for key, case_ids in sorted(groups.items())
    )


def unmet_by_area(facts: Facts, scope: Scope) -> Counted:
    counts: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for u in facts.unmet:
        case = scope.cases.get(u.case_id)
        if case is None or not scope.in_period(u.unmatched_at):
            continue
        if not scope.need_fits(u.case_id, u.need_id, u.category):
            continue
        counts[(area_key(case.area, scope.filters), u.reason)].append(u.case_id)
    cells = _cells(counts, lambda key: (float(len(counts[key])),))
    return Counted(UNMET_BY_AREA, ("area", "reason"), ("unmet_needs",), cells)


def _referrals(facts: Facts, scope: Scope) -> list[ReferralFact]:
    return [
        r
        for r in facts.referrals
        if r.case_id in scope.cases
        and scope.in_period(r.requested_at)
        and scope.need_fits(r.case_id, r.need_id, r.category)
    ]


def _referral_figures(referrals: list[ReferralFact]) -> tuple[Value, ...]:
    answered = [r for r in referrals if r.answered_at is not None]
    accepted = sum(r.accepted for r in referrals)
    hours = [
        (r.answered_at - r.requested_at).total_seconds() / 3600
        for r in answered
        if r.answered_at is not None
    ]
    return (
        float(len(referrals)),
        float(len(answered)),
        float(accepted),
        float(sum(r.state in FINISHED for r in referrals)),
        float(sum(r.state in FAILED for r in referrals)),
        rounded(accepted / len(answered)) if answered else None,
        rounded(quantile(hours, 0.5), 1),
        rounded(quantile(hours, 0.9), 1),
    )


def answers_by_provider(facts: Facts, scope: Scope) -> Counted:
    groups: dict[tuple[str, ...], list[ReferralFact]] = defaultdict(list)
    for r in _referrals(facts, scope):
        groups[(r.provider_id, r.category)].append(r)
    cells = tuple(
        Cell(key, _referral_figures(rs), frozenset(r.case_id for r in rs))
        for key, rs in sorted(groups.items())
    )
    figures = (
        "referrals_made",
        "answered",
        "accepted",
        "completed",
        "failed",
        "acceptance_rate",
        "answer_hours_p50",
        "answer_hours_p90",
    )
    return Counted(ANSWERS_BY_PROVIDER, ("provider", "category"), figures, cells)


def referrals_by_level(facts: Facts, scope: Scope) -> Counted:
    groups: dict[tuple[str, ...], list[ReferralFact]] = defaultdict(list)
    unmet: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for r in _referrals(facts, scope):
        dimension, level = scope.need_class(r.case_id, r.need_id, r.category)
        groups[(level, dimension)].append(r)
    for u in facts.unmet:
        if u.case_id not in scope.cases or not scope.in_period(u.unmatched_at):
            continue
        if not scope.need_fits(u.case_id, u.need_id, u.category):
            continue
        dimension, level = scope.need_class(u.case_id, u.need_id, u.category)
        unmet[(level, dimension)].append(u.case_id)
    cells = []
    for key in sorted(set(groups) | set(unmet)):
        rs = groups.get(key, [])
        made, _, accepted, completed, failed, *_ = _referral_figures(rs)
        cases = frozenset(r.case_id for r in rs) | frozenset(unmet.get(key, []))
        values = (made, accepted, completed, failed, float(len(unmet.get(key, []))))
        cells.append(Cell(key, values, cases))
    figures = ("referrals_made", "accepted", "completed", "failed", "unmet_needs")
    return Counted(REFERRALS_BY_LEVEL, ("level", "dimension"), figures, tuple(cells))


def _assessments_by_case(facts: Facts, scope: Scope) -> dict[str, dict[str, AssessmentFact]]:
    by_case: dict[str, dict[str, AssessmentFact]] = defaultdict(dict)
    for a in facts.assessments:
        if a.case_id in scope.cases:
            by_case[a.case_id][a.wave] = a
    return by_case


def _change(baseline: AssessmentFact, later: AssessmentFact, dimension: str) -> float | None:
    before, after = getattr(baseline, dimension), getattr(later, dimension)
    return None if before is None or after is None else after - before


def scores_by_pathway(facts: Facts, scope: Scope) -> Counted:
    """Per pathway and later wave: the mean change of each score from the baseline, over the
    cases assessed at both (a wave is in the period by its assessment's date)."""
    referrals_of: dict[str, list[ReferralFact]] = defaultdict(list)
    for r in facts.referrals:
        referrals_of[r.case_id].append(r)
    groups: dict[tuple[str, ...], list[tuple[AssessmentFact, AssessmentFact]]] = defaultdict(list)
    for case_id, waves in _assessments_by_case(facts, scope).items():
        baseline = waves.get(BASELINE)
        if baseline is None:
            continue
        pathway = pathway_of(referrals_of[case_id])
        for wave, later in waves.items():
            if wave != BASELINE and scope.in_period(later.assessed_on):
                groups[(pathway, wave)].append((baseline, later))
    cells = []
    for key, pairs in sorted(groups.items()):
        values = tuple(
            rounded(mean(c for b, a in pairs if (c := _change(b, a, d)) is not None))
            for d in SCORE_DIMENSIONS
        )
        cells.append(Cell(key, values, frozenset(b.case_id for b, _ in pairs)))
    figures = tuple(f"{d}_change" for d in SCORE_DIMENSIONS)
    return Counted(SCORES_BY_PATHWAY, ("pathway", "wave"), figures, tuple(cells))


def _groups_of(case: CaseFact) -> list[tuple[str, str]]:
    out = []
    if case.sex is not None:
        out.append(("sex", case.sex))
    if case.age_band is not None:
        out.append(("age_band", case.age_band))
    out.extend(("vulnerability", v) for v in case.vulnerabilities)
    return out


def by_group(facts: Facts, scope: Scope) -> Counted:
    """Disaggregated by sex, age band and vulnerability (a case counts under each of its
    vulnerabilities): cases with a referral or an unmet need in scope, their referrals, how
    many were accepted and completed, unmet needs, and the mean composite change from the
    baseline to the case's latest later wave."""
    referrals: dict[str, list[ReferralFact]] = defaultdict(list)
    for r in _referrals(facts, scope):
        referrals[r.case_id].append(r)
    unmet: dict[str, int] = defaultdict(int)
    for u in facts.unmet:
        if (
            u.case_id in scope.cases
            and scope.in_period(u.unmatched_at)
            and scope.need_fits(u.case_id, u.need_id, u.category)
        ):
            unmet[u.case_id] += 1
    change: dict[str, float] = {}
    for case_id, waves in _assessments_by_case(facts, scope).items():
        later = sorted(
            (a for w, a in waves.items() if w != BASELINE and scope.in_period(a.assessed_on)),
            key=lambda a: a.assessed_on,
        )
        if BASELINE in waves and later:
            c = _change(waves[BASELINE], later[-1], "composite")
            if c is not None:
                change[case_id] = c
    members: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for case_id in sorted(set(referrals) | set(unmet) | set(change)):
        for group in _groups_of(scope.cases[case_id]):
            members[group].append(case_id)

    def figures(key: tuple[str, ...]) -> tuple[Value, ...]:
        ids = members[key]
        rs = [r for i in ids for r in referrals.get(i, [])]
        return (
            float(len(ids)),
            float(len(rs)),
            float(sum(r.accepted for r in rs)),
            float(sum(r.state in FINISHED for r in rs)),
            float(sum(unmet.get(i, 0) for i in ids)),
            rounded(mean(change[i] for i in ids if i in change)),
        )

    names = ("cases", "referrals_made", "accepted", "completed", "unmet_needs", "composite_change")
    cells = _cells(members, figures)
    return Counted(BY_GROUP, ("breakdown", "group"), names, cells, whole_table_total=False)


def handovers_by_area(facts: Facts, scope: Scope) -> Counted:
    counts: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for h in facts.handovers:
        case = scope.cases.get(h.case_id)
        if case is not None and scope.in_period(h.at):
            counts[(area_key(case.area, scope.filters), h.state)].append(h.case_id)
    cells = _cells(counts, lambda key: (float(len(counts[key])),))
    return Counted(HANDOVERS_BY_AREA, ("area", "state"), ("handovers",), cells)


def follow_ups_by_area(facts: Facts, scope: Scope) -> Counted:
    """Waves done (an assessment recorded) and missed (intake said so, and none came since)."""
    done: dict[tuple[str, ...], list[str]] = defaultdict(list)
    missed: dict[tuple[str, ...], list[str]] = defaultdict(list)
    assessed = {(a.case_id, a.wave) for a in facts.assessments}
    for a in facts.assessments:
        case = scope.cases.get(a.case_id)
        if case is not None and scope.in_period(a.assessed_on):
            done[(area_key(case.area, scope.filters), a.wave)].append(a.case_id)
    for fu in facts.follow_ups:
        case = scope.cases.get(fu.case_id)
        if case is None or fu.stage != "missed" or (fu.case_id, fu.wave) in assessed:
            continue
        if scope.in_period(fu.due_on):
            missed[(area_key(case.area, scope.filters), fu.wave)].append(fu.case_id)
    cells = tuple(
        Cell(
            key,
            (float(len(done.get(key, []))), float(len(missed.get(key, [])))),
            frozenset(done.get(key, [])) | frozenset(missed.get(key, [])),
        )
        for key in sorted(set(done) | set(missed))
    )
    return Counted(FOLLOW_UPS_BY_AREA, ("area", "wave"), ("done", "missed"), cells)


TABLES: tuple[Callable[[Facts, Scope], Counted], ...] = (
    unmet_by_area,
    answers_by_provider,
    scores_by_pathway,
    referrals_by_level,
    by_group,
    handovers_by_area,
    follow_ups_by_area,
)


def count(facts: Facts, filters: Filters) -> tuple[Counted, ...]:
    """Every table of the report for these filters, before suppression."""
    scope = scope_of(facts, filters)
    return tuple(table(facts, scope) for table in TABLES)


def options(facts: Facts) -> dict[str, tuple[str, ...]]:
    """The values each filter can take: what the counted cases and their facts hold."""
    counted = {c.case_id: c for c in facts.cases if c.statistics}
    periods = {period_of(r.requested_at) for r in facts.referrals if r.case_id in counted}
    periods |= {period_of(u.unmatched_at) for u in facts.unmet if u.case_id in counted}
    periods |= {period_of(a.assessed_on) for a in facts.assessments if a.case_id in counted}
    periods |= {period_of(h.at) for h in facts.handovers if h.case_id in counted}
    periods |= {period_of(f.due_on) for f in facts.follow_ups if f.case_id in counted}
    needs = [n for n in facts.needs if n.case_id in counted]
    return {
        "country": tuple(sorted({country_of(c.area) for c in counted.values()})),
        "region": tuple(sorted({r for c in counted.values() if (r := region_of(c.area))})),
        "period": tuple(sorted(periods)),
        "dimension": tuple(sorted({n.dimension for n in needs})),
        "level": tuple(sorted({n.level for n in needs})),
    }
