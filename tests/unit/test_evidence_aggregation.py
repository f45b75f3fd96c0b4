"""services/evidence/aggregation.py and source.report_of: the read model's facts counted into
the report's tables under the filters, only cases that consented to statistics, small cells
suppressed. Pure: facts built here, no database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from services.evidence import aggregation as agg
from services.evidence.export import table_csv
from services.evidence.facts import (
    AssessmentFact,
    CaseFact,
    Facts,
    FollowUpFact,
    HandoverFact,
    NeedFact,
    ReferralFact,
    UnmetFact,
)
from services.evidence.report import (
    ANSWERS_BY_PROVIDER,
    SCORES_BY_PATHWAY,
    UNMET_BY_AREA,
    Filters,
    Report,
)
from services.evidence.source import report_of
from shared.contracts.taxonomy import Dimension, Level

K = 5
DEC = datetime(2026, 12, 2, 9, tzinfo=UTC)
NOV = datetime(2026, 11, 20, 9, tzinfo=UTC)
PSY, ECO = "psychosocial.counselling", "economic.vocational_training"


def case(n: int, area: str = "SN0101", *, statistics: bool = True, sex: str = "female") -> CaseFact:
    return CaseFact(f"c{n}", "iom-sn", "individual", area, sex, "25-34", (), statistics)


def need(n: int, category: str, level: str = "individual") -> NeedFact:
    return NeedFact(f"c{n}", "n1", category, category.split(".")[0], level)


def referral(
    n: int,
    category: str,
    provider: str,
    *,
    state: str = "completed",
    accepted: bool = True,
    hours: float | None = 10,
    at: datetime = DEC,
) -> ReferralFact:
    answered = at + timedelta(hours=hours) if hours is not None else None
    return ReferralFact(f"r{n}", f"c{n}", "n1", category, provider, at, answered, state, accepted)


def scores(n: int, wave: str, composite: float, economic: float = 0.5) -> AssessmentFact:
    return AssessmentFact(f"c{n}", wave, date(2026, 12, 1), economic, 0.5, 0.5, composite)


def two_pathways(psy: int = 25, eco: int = 15) -> Facts:
    """psy cases referred to and accepted by a psychosocial provider, eco by an economic one;
    baseline composite 0.4 for all; month_6: +0.2 (psy) and +0.1 (eco)."""
    cases, needs, referrals, assessments = [], [], [], []
    for n in range(psy + eco):
        category, provider, gain = (PSY, "ngo-psy", 0.2) if n < psy else (ECO, "ngo-eco", 0.1)
        cases.append(case(n))
        needs.append(need(n, category))
        referrals.append(referral(n, category, provider))
        assessments += [scores(n, "baseline", 0.4), scores(n, "month_6", 0.4 + gain)]
    return Facts(tuple(cases), tuple(needs), tuple(referrals), assessments=tuple(assessments))


def report(facts: Facts, filters: Filters | None = None) -> Report:
    return report_of(facts, filters or Filters(), K, DEC)


def rows(r: Report, table: str) -> dict[tuple[str, ...], tuple[float | None, ...]]:
    return {row.key: row.values for row in r.table(table).rows}


def test_scores_change_per_pathway_from_the_baseline() -> None:
    by_pathway = rows(report(two_pathways()), SCORES_BY_PATHWAY)
    assert set(by_pathway) == {(PSY, "month_6"), (ECO, "month_6")}
    *_, psy_composite = by_pathway[(PSY, "month_6")]
    *_, eco_composite = by_pathway[(ECO, "month_6")]
    assert psy_composite == 0.2 and eco_composite == 0.1
    table = report(two_pathways()).table(SCORES_BY_PATHWAY)
    assert [r.cases for r in table.rows] == [15, 25]  # sorted by key: economic first


def test_a_pathway_under_k_is_suppressed_with_its_complement() -> None:
    facts = two_pathways(psy=25, eco=3)
    table = report(facts).table(SCORES_BY_PATHWAY)
    hidden = {r.key for r in table.rows if r.suppressed}
    # eco (3 cases) under k; psy is then the only other cell of the month_6 column: it would
    # give eco away from the column's total, so it goes too
    assert hidden == {(ECO, "month_6"), (PSY, "month_6")}
    for row in table.rows:
        assert row.values == (None, None, None, None) and row.cases is None


def test_cases_without_the_statistics_purpose_are_not_counted() -> None:
    facts = two_pathways()
    withdrawn = tuple(case(n, statistics=False) if n < 10 else c for n, c in enumerate(facts.cases))
    table = report(Facts(withdrawn, *_rest(facts))).table(SCORES_BY_PATHWAY)
    assert {r.key: r.cases for r in table.rows} == {(PSY, "month_6"): 15, (ECO, "month_6"): 15}
    providers = {
        r.key: r.values[0]
        for r in report(Facts(withdrawn, *_rest(facts))).table(ANSWERS_BY_PROVIDER).rows
    }
    assert providers == {("ngo-psy", PSY): 15.0, ("ngo-eco", ECO): 15.0}


def _rest(facts: Facts) -> tuple[object, ...]:
    return (facts.needs, facts.referrals, facts.unmet, facts.handovers, facts.assessments)


def test_answers_by_provider_counts_and_times() -> None:
    referrals = [
        referral(n, PSY, "ngo-psy", hours=h, state=s, accepted=a)
        for n, (h, s, a) in enumerate(
            [
                (2, "completed", True),
                (4, "accepted", True),
                (6, "failed", True),
                (8, "rejected", False),
                (10, "received", False),
                (None, "expired", False),
            ]
        )
    ]
    facts = Facts(tuple(case(n) for n in range(6)), (), tuple(referrals))
    [row] = report(facts).table(ANSWERS_BY_PROVIDER).rows
    made, answered, accepted, completed, failed, rate, p50, p90 = row.values
    assert (made, answered, accepted, completed, failed) == (6, 5, 3, 1, 1)
    assert rate == 0.6  # accepted of those answered
    assert p50 == 6.0 and p90 == 9.2  # hours, linearly interpolated
    assert row.cases == 6


def test_unmet_needs_by_area_one_level_below_the_filter() -> None:
    cases = [case(n, area) for n, area in enumerate(["SN0101"] * 5 + ["SN0202"] * 6 + ["ML01"] * 5)]
    unmet = tuple(UnmetFact(c.case_id, "n1", ECO, "no_listing", DEC) for c in cases)
    facts = Facts(tuple(cases), unmet=unmet)
    assert rows(report(facts), UNMET_BY_AREA) == {
        ("ML", "no_listing"): (5.0,),
        ("SN", "no_listing"): (11.0,),
    }
    assert rows(report(facts, Filters(country="SN")), UNMET_BY_AREA) == {
        ("SN01", "no_listing"): (5.0,),
        ("SN02", "no_listing"): (6.0,),
    }
    assert rows(report(facts, Filters(region="SN02")), UNMET_BY_AREA) == {
        ("SN0202", "no_listing"): (6.0,),
    }


def test_period_dimension_and_level_filters() -> None:
    cases = tuple(case(n) for n in range(10))
    needs = tuple(
        need(n, PSY if n < 5 else ECO, "community" if n < 5 else "individual") for n in range(10)
    )
    referrals = tuple(
        referral(n, PSY if n < 5 else ECO, "ngo-x", at=DEC if n % 2 else NOV) for n in range(10)
    )
    facts = Facts(cases, needs, referrals)
    made = lambda r: sum(v[0] or 0 for v in rows(r, ANSWERS_BY_PROVIDER).values())  # noqa: E731
    assert made(report(facts)) == 10
    assert made(report(facts, Filters(dimension=Dimension.ECONOMIC))) == 5
    assert made(report(facts, Filters(level=Level.COMMUNITY))) == 5
    # 5 in December, but split 2 + 3 over the two categories: each under k
    december = report(facts, Filters(period="2026-12")).table(ANSWERS_BY_PROVIDER)
    assert [r.suppressed for r in december.rows] == [True, True]
    assert report(facts).options["period"] == ("2026-11", "2026-12")
    assert report(facts).options["dimension"] == ("economic", "psychosocial")
    assert report(facts).options["level"] == ("community", "individual")


def test_by_group_disaggregates_by_sex_age_band_and_vulnerability() -> None:
    facts = two_pathways(psy=6, eco=6)
    cases = tuple(
        CaseFact(
            c.case_id,
            c.owner_agency_id,
            c.level,
            c.area,
            "male" if n < 6 else "female",
            "18-24",
            ("disability",) if n < 2 else (),
            True,
        )
        for n, c in enumerate(facts.cases)
    )
    r = report(Facts(cases, *_rest(facts)))
    groups = {row.key: row for row in r.table(agg.BY_GROUP).rows}
    assert groups[("sex", "male")].values[:2] == (6.0, 6.0)
    assert groups[("age_band", "18-24")].cases == 12
    assert groups[("vulnerability", "disability")].suppressed  # 2 cases
    # composite change of the men (psychosocial pathway, +0.2)
    assert groups[("sex", "male")].values[-1] == 0.2


def test_follow_ups_done_and_missed() -> None:
    cases = tuple(case(n) for n in range(12))
    assessments = tuple(scores(n, "baseline", 0.5) for n in range(7))
    follow_ups = tuple(
        FollowUpFact(f"c{n}", "baseline", date(2026, 12, 1), "missed") for n in range(5, 12)
    )
    r = report(Facts(cases, assessments=assessments, follow_ups=follow_ups))
    # c5, c6 missed then assessed: done, not missed
    assert rows(r, agg.FOLLOW_UPS_BY_AREA) == {("SN", "baseline"): (7.0, 5.0)}


def test_handovers_by_area_and_state() -> None:
    cases = tuple(case(n) for n in range(6))
    handovers = tuple(HandoverFact(f"h{n}", f"c{n}", "completed", DEC) for n in range(6))
    assert rows(report(Facts(cases, handovers=handovers)), agg.HANDOVERS_BY_AREA) == {
        ("SN", "completed"): (6.0,)
    }


def test_csv_has_keys_figures_cases_and_no_number_for_a_suppressed_row() -> None:
    text = table_csv(report(two_pathways(psy=25, eco=3)).table(SCORES_BY_PATHWAY))
    lines = text.splitlines()
    assert lines[0] == (
        "pathway,wave,economic_change,social_change,psychosocial_change,composite_change,"
        "cases,suppressed"
    )
    assert lines[1] == f"{ECO},month_6,,,,,,true"
    text = table_csv(report(two_pathways()).table(SCORES_BY_PATHWAY))
    assert text.splitlines()[2] == f"{PSY},month_6,0,0,0,0.2,25,false"


def test_quantile_and_pathway_helpers() -> None:
    assert agg.quantile([], 0.5) is None
    assert agg.quantile([3.0], 0.9) == 3.0
    assert agg.quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert agg.pathway_of([referral(1, PSY, "a"), referral(2, ECO, "b")]) == f"{ECO}+{PSY}"
    assert agg.pathway_of([referral(1, PSY, "a", accepted=False)]) == agg.NO_PATHWAY
