"""Structural gaps end to end on the real broker and databases (issue 18, decision 18).

Three needs of one category in one district find no provider → referral's job reports one
structural gap to the ministry whose listing covers the district (not to a government agency
that lists elsewhere, nor to one of another country) → a fourth need the same period adds no
second report (a second cluster of the district, reported after it, proves the job ran past
it) → the ministry commits to a planned listing, which the operator's evidence shows beside
the gap. Bad input: a commitment by an agency the report was not addressed to, on an unknown
report, without its reason, with a date already passed: each refused to its sender with the
reason, nothing changed."""

from __future__ import annotations

import asyncio
import csv
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ops.cli import app
from services.referral.cli import beside_csv
from shared.contracts import events as ev
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from tests import factories as f
from tests.e2e.conftest import RunningService
from tests.e2e.kafka_helpers import (
    absent_before_sentinel,
    headers_of,
    provoke_rejection,
    register_agency_access,
    subject_is,
)
from tests.e2e.personal_data import PERSONAL
from tests.e2e.test_continuity import _inbox, _response

pytestmark = pytest.mark.e2e

# The job counts every half second; districts of 4 digits, 3 needs, 30-day periods (defaults).
SERVICE_ENV = {"REFERRAL_STRUCTURAL_INTERVAL_S": "0.5"}

COUNTRY = "CV"  # a country of its own: no other test's needs or agencies are counted here
JOBS = "economic.job_placement"  # nobody lists it in the district: its needs go unmet
LEGAL = "social.legal_aid"  # nor this: the second cluster
HOUSING = "social.housing"  # the ministry's listing, which says where it acts


async def _agency(
    kafka: KafkaConnection, prefix: str, type_: ev.AgencyType, countries: list[str]
) -> str:
    agency_id = f.unique(prefix)
    await register_agency_access(kafka, agency_id)
    record = ev.AgencyRecord(agency_id=agency_id, name=agency_id, type=type_, countries=countries)
    await publish_events(kafka, [f.agency_event(record)])
    return agency_id


async def _listed(kafka: KafkaConnection, agency: str, category: str, area: str) -> None:
    listing = f.listing(agency, categories=[category], service_areas=[area])
    await publish_events(kafka, [f.listing_event(listing)])
    await _inbox(kafka, agency, ev.INBOX_LISTING_PUBLISHED, {"service_id": listing.service_id})


async def _unmet_needs(
    kafka: KafkaConnection, owner: str, district: str, category: str, n: int
) -> None:
    """``n`` cases of the district, one need of ``category`` each; until each is unmet."""
    refs = [f.unique("CASE") for _ in range(n)]
    submissions = [
        f.submission(
            owner,
            agency_case_ref=ref,
            personal=PERSONAL,
            profile=f.profile(
                nationality=COUNTRY, return_country=COUNTRY, return_area=f"{district}{i:02d}"
            ),
            needs=[{"need_id": "n1", "category": category}],
        )
        for i, ref in enumerate(refs)
    ]
    await publish_events(kafka, [f.submission_event(s) for s in submissions])
    for ref in refs:
        [accepted] = await _inbox(
            kafka, owner, ev.INBOX_SUBMISSION_ACCEPTED, {"agency_case_ref": ref}
        )
        [unmet] = await _inbox(
            kafka, owner, ev.INBOX_NEED_UNMATCHED, {"case_id": accepted["case_id"]}
        )
        assert unmet["reason"] == "no_listing"


def _commitment(agency: str, report_id: str, commitment: dict[str, Any]) -> Any:
    """The agency's commitment on its own responses topic, keyed by the report (any body)."""
    valid = ev.StructuralCommitment.model_validate(
        {
            "report_id": report_id,
            "agency_id": agency,
            "commitment": {"kind": "not_planned", "reason": "other"},
        }
    )
    sent = _response(agency, report_id, ev.STRUCTURAL_COMMITMENT_SUBMITTED, valid)
    body = {"report_id": report_id, "agency_id": agency, "commitment": commitment}
    return type(sent)(sent.topic, sent.key, sent.headers, json.dumps(body).encode())


async def _refused(
    kafka: KafkaConnection, agency: str, report_id: str, commitment: dict[str, Any]
) -> dict[str, Any]:
    sent = _commitment(agency, report_id, commitment)
    await publish_events(kafka, [sent])
    [refused] = await _inbox(
        kafka, agency, ev.INBOX_STRUCTURAL_COMMITMENT_REFUSED, {"message_id": sent.event_id}
    )
    assert refused["reason"]
    return refused


def _evidence(tmp_path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    """The operator's structural table (as CSV), by district, category and addressee."""
    out = tmp_path / f"evidence-{uuid.uuid4().hex[:6]}.csv"
    result = CliRunner().invoke(app, ["referral", "evidence", "--csv", str(out)])
    assert result.exit_code == 0, result.output
    assert "Structural gaps and commitments" in result.output
    rows = csv.DictReader(beside_csv(out, "structural").open())
    return {(r["area"], r["category"], r["addressed_agency"]): r for r in rows}


async def test_a_cluster_of_unmet_needs_is_reported_once_to_the_ministry_covering_it(
    services: dict[str, RunningService], kafka: KafkaConnection, tmp_path: Path
) -> None:
    district = f"{COUNTRY}{uuid.uuid4().int % 10**4:04d}"
    iom = await _agency(kafka, "iom", ev.AgencyType.UN_AGENCY, [COUNTRY])
    ministry = await _agency(kafka, "min", ev.AgencyType.GOVERNMENT, [COUNTRY])
    # a government agency of the same country acting elsewhere, and one of another country
    # with no listing (it covers its record's countries)
    elsewhere = await _agency(kafka, "gov", ev.AgencyType.GOVERNMENT, [COUNTRY])
    abroad = await _agency(kafka, "abroad", ev.AgencyType.GOVERNMENT, ["ML"])
    await _listed(kafka, ministry, HOUSING, district)
    await _listed(kafka, elsewhere, JOBS, f"{COUNTRY}{(int(district[2:]) + 1) % 10**4:04d}")

    # three unmet needs of one category in the district: one report, to the ministry
    await _unmet_needs(kafka, iom, district, JOBS, 3)
    [report] = await _inbox(
        kafka, ministry, ev.INBOX_STRUCTURAL_GAP_REPORTED, {"area": district, "category": JOBS}
    )
    assert (report["addressed_agency_id"], report["unmet_needs"], report["trend"]) == (
        ministry,
        3,
        "new",
    )
    assert report["reasons"] == [{"reason": "no_listing", "count": 3}]
    assert report["respond_on_topic"] == f"agency.{ministry}.responses.v1"
    assert not {k for k in report if "case" in k or k == "need_id"}  # counts only
    for other in (elsewhere, abroad):
        sentinel = await provoke_rejection(kafka, other)
        await absent_before_sentinel(
            kafka,
            f"agency.{other}.inbox.v1",
            lambda r: headers_of(r).get("ce_type") == ev.INBOX_STRUCTURAL_GAP_REPORTED,
            subject_is(sentinel),
        )

    # a fourth need the same period adds no second report: the district's next cluster is
    # reported after it, so the job counted past the fourth need
    await _unmet_needs(kafka, iom, district, JOBS, 1)
    await _unmet_needs(kafka, iom, district, LEGAL, 3)
    await _inbox(
        kafka, ministry, ev.INBOX_STRUCTURAL_GAP_REPORTED, {"area": district, "category": LEGAL}
    )
    reports = await _inbox(
        kafka, ministry, ev.INBOX_STRUCTURAL_GAP_REPORTED, {"area": district}, expected=2
    )
    assert sorted(r["category"] for r in reports) == sorted([JOBS, LEGAL])

    # the ministry commits to a planned listing: applied, and in the evidence beside the gap
    planned_by = (datetime.now(UTC) + timedelta(days=90)).date().isoformat()
    commitment = _commitment(
        ministry,
        report["report_id"],
        {"kind": "planned_listing", "service_id": f.unique("mol-jobs"), "planned_by": planned_by},
    )
    await publish_events(kafka, [commitment])
    [applied] = await _inbox(
        kafka,
        ministry,
        ev.INBOX_STRUCTURAL_COMMITMENT_APPLIED,
        {"message_id": commitment.event_id},
    )
    assert (applied["report_id"], applied["kind"], applied["planned_by"]) == (
        report["report_id"],
        "planned_listing",
        planned_by,
    )
    rows = await asyncio.to_thread(_evidence, tmp_path)
    gap = rows[(district, JOBS, ministry)]
    assert (gap["unmet_needs"], gap["trend"], gap["commitment"], gap["planned_by"]) == (
        "3",
        "new",
        "planned_listing",
        planned_by,
    )
    assert rows[(district, LEGAL, ministry)]["commitment"] == ""  # not answered
    assert not [k for k in rows if k[2] in (elsewhere, abroad)]

    # bad input: refused to its sender with the reason, nothing changed
    rid = report["report_id"]
    past = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    not_addressed = await _refused(
        kafka, elsewhere, rid, {"kind": "not_planned", "reason": "other"}
    )
    assert (not_addressed["error"], not_addressed["report_id"]) == ("not_addressed", rid)
    unknown = await _refused(
        kafka, ministry, str(uuid.uuid4()), {"kind": "not_planned", "reason": "no_budget"}
    )
    assert unknown["error"] == "unknown_report"
    no_reason = await _refused(kafka, ministry, rid, {"kind": "not_planned"})
    assert no_reason["error"] == "invalid_message"
    assert [e["field"] for e in no_reason["errors"]] == ["commitment.not_planned.reason"]
    late = await _refused(kafka, ministry, rid, {"kind": "planned_listing", "planned_by": past})
    assert (late["error"], [e["field"] for e in late["errors"]]) == (
        "invalid_message",
        ["commitment.planned_by"],
    )
    after = (await asyncio.to_thread(_evidence, tmp_path))[(district, JOBS, ministry)]
    assert after == gap  # the ministry's commitment as it was
