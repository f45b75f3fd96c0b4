"""Structural gaps (decision 18) on the real PostgreSQL, through referral's consumer batches
wired as app.py wires them and its timer job: clusters of unmet needs counted per district,
category and period, reported once (also by two instances at once) to the government agencies
covering the district, with the trend against the period before; commitments recorded,
replaced or refused (nothing written); the evidence command showing them beside the gap."""

from __future__ import annotations

import asyncio
import csv
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from services.referral import cli
from services.referral.cli import beside_csv
from services.referral.structural import GapRule
from services.referral.timers import report_structural_gaps
from shared.contracts import events as ev
from shared.contracts import messages, topics
from shared.contracts.envelope import build_event
from shared.kafka.inbound import InboundEvent
from tests import factories as f
from tests.dsn import with_params
from tests.integration.counting import CountingPool
from tests.integration.test_matching_index import referral_schema
from tests.integration.test_referral_continuity import OWNER, Referral, _case

JOBS = "economic.job_placement"
HOUSING = "social.housing"  # the ministry's listing in the district
LEGAL = "social.legal_aid"  # nobody's
MINISTRY = "gov-labour-sn"
ELSEWHERE = "gov-agri-sn"  # a government agency listing elsewhere in the country
ABROAD = "gov-ml"  # a government agency of another country, without listings
RULE = GapRule(district_digits=4, period_days=30, threshold=3)


@pytest.fixture
async def referral(database_urls: dict[str, str]) -> AsyncIterator[Referral]:
    async with referral_schema(database_urls["referral"]) as pool:
        yield Referral(CountingPool(pool))


def _district() -> str:
    """A district of its own (another government agency lists in SN9…)."""
    return f"SN0{uuid.uuid4().int % 10**3:03d}"


async def _directory(referral: Referral, district: str) -> None:
    """The ministry acts in the district (a housing listing: no jobs there); another lists
    elsewhere; one of another country has no listing."""
    abroad = ev.AgencyRecord(
        agency_id=ABROAD, name=ABROAD, type=ev.AgencyType.GOVERNMENT, countries=["ML"]
    )
    await referral.apply(
        [
            referral.agency(OWNER, ev.AgencyType.UN_AGENCY),
            referral.agency(MINISTRY, ev.AgencyType.GOVERNMENT),
            referral.agency(ELSEWHERE, ev.AgencyType.GOVERNMENT),
            referral.inbound(messages.agency_message(abroad)),
            referral.listed(
                f.listing(MINISTRY, service_id="mol-housing", categories=[HOUSING],
                          service_areas=[district])
            ),
            referral.listed(
                f.listing(ELSEWHERE, categories=[JOBS, HOUSING], service_areas=["SN99"])
            ),
        ]
    )  # fmt: skip


async def _unmet(referral: Referral, district: str, n: int, category: str = JOBS) -> list[str]:
    """``n`` cases of the district, each with one need of ``category`` no listing serves."""
    cases = [_case(f"{district}{i:02d}", (category,)) for i in range(n)]
    await referral.apply([referral.intake(ev.CASE_REGISTERED, c) for c in cases])
    return [c.case_id for c in cases]


def _commitment(referral: Referral, by: str, report_id: str, **commitment: Any) -> InboundEvent:
    """The government agency's message on its own responses topic, keyed by the report."""
    body = ev.StructuralCommitment.model_validate(
        {
            "report_id": report_id,
            "agency_id": by,
            "commitment": commitment or {"kind": "planned_listing", "planned_by": "2099-01-01"},
        }
    )
    return referral.inbound(
        build_event(
            topic=topics.AGENCY_RESPONSES.name(by),
            key=report_id,
            type_=ev.STRUCTURAL_COMMITMENT_SUBMITTED,
            source=messages.agency_source(by),
            subject=report_id,
            data=body,
            agency_id=by,
        )
    )


async def _written(referral: Referral) -> tuple[Any, ...]:
    """What a refused commitment must leave as it was."""
    return (
        tuple(await referral.fetch("SELECT * FROM structural_gaps ORDER BY report_id")),
        tuple(await referral.fetch("SELECT * FROM structural_commitments ORDER BY report_id")),
    )


async def test_three_unmet_needs_of_a_district_are_reported_once_to_the_ministry_covering_it(
    referral: Referral,
) -> None:
    district = _district()
    await _directory(referral, district)
    await _unmet(referral, district, 2)
    assert await report_structural_gaps(referral.units, RULE) == 0  # under the threshold
    await _unmet(referral, district, 1)
    assert await report_structural_gaps(referral.units, RULE) == 1
    [report] = await referral.sent(ev.STRUCTURAL_GAP_REPORTED)
    assert report["(key)"] == report["report_id"]
    assert (report["addressed_agency_id"], report["area"], report["category"]) == (
        MINISTRY,
        district,
        JOBS,
    )
    assert (report["unmet_needs"], report["reasons"], report["trend"]) == (
        3,
        [{"reason": "no_listing", "count": 3}],
        "new",
    )
    # a fourth need the same period, and later ticks, add no second report
    await _unmet(referral, district, 1)
    assert await report_structural_gaps(referral.units, RULE) == 0
    assert len(await referral.sent(ev.STRUCTURAL_GAP_REPORTED)) == 1
    [(count, addressees)] = await referral.fetch(
        """SELECT count(DISTINCT g.report_id), array_agg(a.agency_id)
             FROM structural_gaps g JOIN structural_gap_addressees a USING (report_id)"""
    )
    assert (count, addressees) == (1, [MINISTRY])


async def test_two_instances_at_once_report_a_gap_once(referral: Referral) -> None:
    district = _district()
    await _directory(referral, district)
    await _unmet(referral, district, 3)
    await _unmet(referral, district, 3, LEGAL)  # two clusters of one district
    counts = await asyncio.gather(
        report_structural_gaps(referral.units, RULE),
        report_structural_gaps(referral.units, RULE),
    )
    assert sum(counts) == 2  # each gap announced by one of them
    reports = await referral.sent(ev.STRUCTURAL_GAP_REPORTED)
    assert sorted(r["category"] for r in reports) == sorted([JOBS, LEGAL])


async def test_the_trend_compares_with_the_period_before(referral: Referral) -> None:
    district = _district()
    await _directory(referral, district)
    earlier = await _unmet(referral, district, 2)
    await referral.fetch(
        "UPDATE unmet_needs SET since = since - interval '30 days' WHERE case_id = ANY($1)",
        earlier,
    )
    await _unmet(referral, district, 3)
    assert await report_structural_gaps(referral.units, RULE) == 1
    [report] = await referral.sent(ev.STRUCTURAL_GAP_REPORTED)
    assert (report["unmet_needs"], report["previous_period_unmet_needs"], report["trend"]) == (
        3,
        2,
        "rising",
    )


async def test_the_period_before_counts_as_its_report_said(referral: Referral) -> None:
    """Reported last period with 3 needs, of which one was referred since and another one came
    late: the trend compares with the 3 reported, not with the rows left."""
    district = _district()
    await _directory(referral, district)
    last_period = await _unmet(referral, district, 3)
    shift = "UPDATE unmet_needs SET since = since - interval '30 days' WHERE case_id = ANY($1)"
    await referral.fetch(shift, last_period)
    a_month_ago = datetime.now(UTC) - timedelta(days=30)
    assert await report_structural_gaps(referral.units, RULE, a_month_ago) == 1
    await referral.fetch("DELETE FROM unmet_needs WHERE case_id = $1", last_period[0])
    await referral.fetch(shift, await _unmet(referral, district, 2))  # 4 rows left there
    await _unmet(referral, district, 3)
    assert await report_structural_gaps(referral.units, RULE) == 1
    first, second = await referral.sent(ev.STRUCTURAL_GAP_REPORTED)
    assert (first["unmet_needs"], first["trend"]) == (3, "new")
    assert (second["previous_period_unmet_needs"], second["trend"]) == (3, "stable")
    assert second["period_start"] == first["period_end"]


async def test_commitments_are_recorded_replaced_or_refused_and_shown_in_the_evidence(
    referral: Referral,
    database_urls: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    district = _district()
    await _directory(referral, district)
    await _unmet(referral, district, 3)
    await report_structural_gaps(referral.units, RULE)
    [report] = await referral.sent(ev.STRUCTURAL_GAP_REPORTED)
    rid = report["report_id"]

    # refusals: nothing written, the sender told why
    before = await _written(referral)
    await referral.apply(
        [
            _commitment(referral, ELSEWHERE, rid),  # not addressed to it
            _commitment(referral, MINISTRY, str(uuid.uuid4())),  # no such report
            _commitment(  # another agency's listing
                referral,
                MINISTRY,
                rid,
                kind="planned_listing",
                service_id=(await referral.sent(ev.LISTING_PUBLISHED))[1]["service_id"],
                planned_by="2099-01-01",
            ),
        ]
    )
    refused = await referral.sent(ev.STRUCTURAL_COMMITMENT_REFUSED)
    assert [(r["error"], r["agency_id"], r["(key)"]) for r in refused] == [
        ("not_addressed", ELSEWHERE, rid),
        ("unknown_report", MINISTRY, MINISTRY),
        ("service_of_other_agency", MINISTRY, rid),
    ]
    assert await _written(referral) == before

    # the ministry plans a listing, then revises: not planned, with a note kept here only
    await referral.apply([_commitment(referral, MINISTRY, rid, planned_by="2099-01-01",
                                      kind="planned_listing", service_id="mol-jobs")])  # fmt: skip
    await referral.apply(
        [
            _commitment(
                referral, MINISTRY, rid, kind="not_planned", reason="no_budget", note="frozen"
            )
        ]
    )
    applied = await referral.sent(ev.STRUCTURAL_COMMITMENT_APPLIED)
    assert [(a["kind"], a.get("replaced"), a["(key)"]) for a in applied] == [
        ("planned_listing", None, rid),
        ("not_planned", "planned_listing", rid),
    ]
    assert all("frozen" not in str(a) for a in applied)
    [row] = await referral.fetch("SELECT * FROM structural_commitments")
    assert (row["kind"], row["reason"], row["note"], row["revisions"]) == (
        "not_planned",
        "no_budget",
        "frozen",
        2,
    )

    # the operator's evidence shows the gap with the commitment beside it, and its CSV
    [(schema,)] = await referral.fetch("SELECT current_schema()")
    monkeypatch.setenv(
        "REFERRAL_DATABASE_URL", with_params(database_urls["referral"], search_path=schema)
    )
    out = tmp_path / "evidence.csv"
    result = await asyncio.to_thread(CliRunner().invoke, cli.app, ["evidence", "--csv", str(out)])
    assert result.exit_code == 0, result.output
    assert "Structural gaps and commitments" in result.output
    [gap] = list(csv.DictReader(beside_csv(out, "structural").open()))
    assert (gap["area"], gap["category"], gap["unmet_needs"], gap["trend"]) == (
        district,
        JOBS,
        "3",
        "new",
    )
    assert (gap["addressed_agency"], gap["commitment"], gap["not_planned_reason"]) == (
        MINISTRY,
        "not_planned",
        "no_budget",
    )
    assert gap["unmet_reasons"] == "no_listing x3" and gap["report_id"] == rid
    assert "frozen" not in out.read_text() + beside_csv(out, "structural").read_text()
