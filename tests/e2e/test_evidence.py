"""The evidence read model end to end on the real broker and databases (issue 19): the four
services as processes. 40 returnees who consented to statistics and follow-up are referred
along two pathways — 25 accepted by a psychosocial provider, 15 by an economic one — and
assessed at baseline and month 6; 4 more, without the statistics purpose, go the same way.
The report (the dashboard's source), the aggregate topic and the CSV export show the score
change per pathway, the uncounted cases left out, and the small cells suppressed (3 cases with
a disability, 6 elderly: the disability cell under k, the elderly one its complement).

The assessments go through intake (the owner's submissions topic), which scores them; the
expected changes are intake's scoring of the same answers."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiokafka.errors import TopicAuthorizationFailedError
from typer.testing import CliRunner

import ops.cli
from services.evidence.aggregation import BY_GROUP
from services.evidence.report import SCORES_BY_PATHWAY, Filters, Report
from services.evidence.source import report_source
from shared.contracts import events as ev
from shared.contracts import outcomes, topics
from shared.contracts.messages import response_message
from shared.contracts.outcomes import INDICATOR_SETS
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from tests import factories as f
from tests.e2e import test_dashboard_browser as dashboard
from tests.e2e.conftest import RunningService
from tests.e2e.kafka_helpers import collect, data_of, headers_of, register_agency_access
from tests.e2e.test_walking_skeleton import _eventually
from tests.integration.test_kafka_access import values

pytestmark = pytest.mark.e2e

SERVICE_ENV = {"EVIDENCE_PUBLISH_INTERVAL_S": "1"}
K = 5  # EVIDENCE_K's default
PSY, ECO = "psychosocial.peer_support", "economic.business_startup_grant"
PATHWAYS = {PSY: 25, ECO: 15}
UNCOUNTED = 4  # cases without the statistics purpose, referred along the psychosocial pathway
# The answers each pathway's cases give (rss-v1): the worst at baseline; at month 6 the best
# (psychosocial pathway) or the second option of every scale (economic pathway).
BASELINE = f.answers_scoring(99)
MONTH_6 = {PSY: f.answers_scoring(0), ECO: f.answers_scoring(1)}


@dataclass(frozen=True)
class World:
    region: str
    referrer: str
    providers: dict[str, str]  # category → provider agency
    counted: list[str]  # case ids with statistics
    uncounted: list[str]


def _change(category: str) -> tuple[float, ...]:
    """The expected change from baseline to month 6 of the pathway's cases: economic, social,
    psychosocial, composite (intake's scoring of the same answers)."""
    rss = INDICATOR_SETS["rss-v1"]
    before, after = outcomes.score(rss, BASELINE), outcomes.score(rss, MONTH_6[category])
    fields = ("economic", "social", "psychosocial", "composite")
    return tuple(getattr(after, d) - getattr(before, d) for d in fields)


def _assessment(case_id: str, owner: str, wave: str, answers: list[tuple[str, str]]) -> Any:
    """The owner's assessment, through intake (its submissions topic)."""
    return f.assessment_event(f.assessment(owner, case_id, wave, answers))


async def _agency(kafka: KafkaConnection, prefix: str, type_: ev.AgencyType) -> str:
    agency_id = f.unique(prefix)
    await register_agency_access(kafka, agency_id)
    await publish_events(kafka, [f.agency_event(f.agency(agency_id, type_))])
    return agency_id


async def _until(dsn: str, query: str, *args: Any) -> None:
    assert await _eventually(query, *args, dsn=dsn, timeout=90), f"timed out: {query}"


@pytest.fixture(scope="module")
async def world(
    services: dict[str, RunningService],
    evidence: RunningService,
    kafka: KafkaConnection,
    database_urls: dict[str, str],
) -> World:
    district = f"SN97{uuid.uuid4().int % 10**6:06d}"  # a region (SN97) no other test uses
    referrer = await _agency(kafka, "iom", ev.AgencyType.UN_AGENCY)
    providers = {c: await _agency(kafka, c.split(".")[0][:3], ev.AgencyType.NGO) for c in PATHWAYS}
    listings = [
        f.listing(p, categories=[c], service_areas=[district]) for c, p in providers.items()
    ]
    await publish_events(kafka, [f.listing_event(listing) for listing in listings])
    await _until(
        database_urls["referral"],
        "SELECT count(*) = 2 FROM listings WHERE service_id = ANY($1::text[])",
        [listing.service_id for listing in listings],
    )
    vulnerable = {0: ["disability"], 1: ["disability"], 2: ["disability"]}
    vulnerable |= {n: ["elderly"] for n in range(3, 9)}
    plan: list[tuple[str, bool, list[str]]] = []  # (category, statistics, vulnerabilities)
    for category, n in PATHWAYS.items():
        plan += [(category, True, []) for _ in range(n)]
    plan = [(c, s, vulnerable.get(i, [])) for i, (c, s, _) in enumerate(plan)]
    plan += [(PSY, False, []) for _ in range(UNCOUNTED)]
    submissions = []
    for category, statistics, vulnerabilities in plan:
        purposes = ["referral", "follow_up", *(["statistics"] if statistics else [])]
        submissions.append(
            f.submission(
                referrer,
                profile=f.profile(return_area=district, vulnerabilities=vulnerabilities),
                needs=f.needs(category),
                consent=f.consent(scope={"purposes": purposes}),
            )
        )
    await publish_events(kafka, [f.submission_event(s) for s in submissions])

    # Each case's referral, accepted by its provider.
    requested = await collect(
        kafka,
        topics.REFERRAL_EVENTS,
        lambda r: (
            headers_of(r).get("ce_type") == ev.REFERRAL_REQUESTED
            and data_of(r)["referring_agency_id"] == referrer
        ),
        expected=len(plan),
        timeout=120,
    )
    referrals = [data_of(r) for r in requested]
    assert len(referrals) == len(plan)
    await publish_events(
        kafka,
        [
            response_message(
                ev.ReferralResponse.model_validate(
                    {
                        "referral_id": r["referral_id"],
                        "agency_id": r["recipient_agency_id"],
                        "action": "accept",
                        "responded_at": datetime.now(UTC).isoformat(),
                    }
                ),
                r["case_id"],
            )
            for r in referrals
        ],
    )
    category_of = {r["case_id"]: r["category"] for r in referrals}
    intake = await asyncpg.connect(database_urls["intake"])
    try:
        rows = await intake.fetch(
            "SELECT agency_case_ref, case_id FROM cases WHERE agency_id = $1", referrer
        )
    finally:
        await intake.close()
    case_of = {r["agency_case_ref"]: str(r["case_id"]) for r in rows}
    counted = [case_of[s.agency_case_ref] for s, p in zip(submissions, plan, strict=True) if p[1]]
    uncounted = [
        case_of[s.agency_case_ref] for s, p in zip(submissions, plan, strict=True) if not p[1]
    ]
    await publish_events(
        kafka,
        [_assessment(c, referrer, "baseline", BASELINE) for c in counted + uncounted]
        + [
            _assessment(c, referrer, "month_6", MONTH_6[category_of[c]])
            for c in counted + uncounted
        ],
    )
    # The read model has every acceptance and every assessment.
    await _until(
        database_urls["evidence"],
        "SELECT count(*) = $2 FROM referrals WHERE accepted AND case_id = ANY($1::text[])",
        counted + uncounted,
        len(plan),
    )
    await _until(
        database_urls["evidence"],
        "SELECT count(*) = $2 FROM assessments WHERE case_id = ANY($1::text[])",
        counted + uncounted,
        2 * len(plan),
    )
    return World(district[:4], referrer, providers, counted, uncounted)


def test_evidence_is_ready_with_its_own_database_and_principal(evidence: RunningService) -> None:
    with urllib.request.urlopen(evidence.url("/health/ready"), timeout=5) as answer:
        body = json.loads(answer.read())
    assert body == {
        "service": "evidence",
        "ready": True,
        "checks": {"kafka": True, "database": True, "outbox_relay": True},
    }


async def _report(database_urls: dict[str, str], filters: Filters) -> Report:
    pool = await asyncpg.create_pool(database_urls["evidence"], min_size=1, max_size=2)
    assert pool is not None
    try:
        return await report_source(lambda: pool, K)(filters)
    finally:
        await pool.close()


async def test_the_report_shows_the_score_change_per_pathway(
    world: World, database_urls: dict[str, str]
) -> None:
    report = await _report(database_urls, Filters(region=world.region))
    rows = {r.key: r for r in report.table(SCORES_BY_PATHWAY).rows}
    assert set(rows) == {(PSY, "month_6"), (ECO, "month_6")}
    psy, eco = rows[(PSY, "month_6")], rows[(ECO, "month_6")]
    # the 4 cases without statistics (psychosocial, same scores) are not counted
    assert (psy.cases, eco.cases) == (25, 15)
    assert psy.values == pytest.approx(_change(PSY), abs=1e-3)  # published to 3 decimals
    assert eco.values == pytest.approx(_change(ECO), abs=1e-3)
    assert _change(PSY) != pytest.approx(_change(ECO))
    assert world.region in report.options["region"]


async def test_small_cells_are_suppressed_with_their_complement(
    world: World, database_urls: dict[str, str]
) -> None:
    report = await _report(database_urls, Filters(region=world.region))
    groups = {r.key: r for r in report.table(BY_GROUP).rows}
    disability, elderly = (
        groups[("vulnerability", "disability")],
        groups[("vulnerability", "elderly")],
    )
    assert disability.suppressed, "3 cases: under k"
    assert elderly.suppressed, "6 cases, but the only other cell of its line: its complement"
    assert disability.values == elderly.values == (None,) * 6
    assert groups[("sex", "female")].cases == 40


async def test_the_aggregate_topic_carries_the_suppressed_tables(
    world: World, kafka: KafkaConnection
) -> None:
    def scores_with_both(r: Any) -> bool:
        if headers_of(r).get("ce_type") != ev.EVIDENCE_AGGREGATES_PUBLISHED:
            return False
        data = data_of(r)
        keys = {tuple(row["key"]) for row in data["rows"]}
        return (
            data["table"] == SCORES_BY_PATHWAY
            and data["period"] == "all"
            and {
                (PSY, "month_6"),
                (ECO, "month_6"),
            }
            <= keys
            and all(row.get("cases") for row in data["rows"])
        )

    found = await collect(kafka, topics.EVIDENCE_AGGREGATES, scores_with_both, timeout=60)
    assert found, "no scores_by_pathway with both pathways on evidence.aggregates.v1"
    latest = data_of(found[-1])
    assert found[-1].key.decode() == SCORES_BY_PATHWAY
    assert latest["k"] == K and latest["keys"] == ["pathway", "wave"]
    rows = {tuple(r["key"]): r for r in latest["rows"]}
    assert rows[(PSY, "month_6")]["values"][-1] == pytest.approx(_change(PSY)[-1], abs=1e-3)
    assert rows[(ECO, "month_6")]["cases"] == 15
    # nothing names a case or a person
    body = found[-1].value.decode()
    assert not any(c in body for c in world.counted + world.uncounted)

    def by_group(r: Any) -> bool:
        if headers_of(r).get("ce_type") != ev.EVIDENCE_AGGREGATES_PUBLISHED:
            return False
        data = data_of(r)
        return (
            data["table"] == BY_GROUP
            and data["period"] == "all"
            and any(row["key"] == ["vulnerability", "disability"] for row in data["rows"])
        )

    [*_, groups] = await collect(kafka, topics.EVIDENCE_AGGREGATES, by_group, timeout=30)
    disability = next(
        r for r in data_of(groups)["rows"] if r["key"] == ["vulnerability", "disability"]
    )
    assert disability["values"] == [None] * 6 and "cases" not in disability


def test_the_csv_export_shows_the_same_figures(world: World, tmp_path: Any) -> None:
    result = CliRunner().invoke(
        ops.cli.app,
        ["evidence", "export", "--region", world.region, "--out-dir", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    with (tmp_path / f"{SCORES_BY_PATHWAY}.csv").open() as handle:
        rows = {(r["pathway"], r["wave"]): r for r in csv.DictReader(handle)}
    assert rows[(PSY, "month_6")]["cases"] == "25"
    assert float(rows[(ECO, "month_6")]["composite_change"]) == pytest.approx(
        _change(ECO)[-1], abs=1e-3
    )
    groups = list(csv.DictReader(io.StringIO((tmp_path / f"{BY_GROUP}.csv").read_text())))
    disability = next(r for r in groups if r["group"] == "disability")
    assert disability["suppressed"] == "true" and disability["cases"] == ""
    assert disability["referrals_made"] == ""


async def _readable(reader: KafkaConnection) -> bool:
    """Whether the broker lets ``reader`` read the aggregates (True: it read some)."""
    try:
        found = await values(reader, topics.EVIDENCE_AGGREGATES, wait_s=3, until=b"")
    except TopicAuthorizationFailedError:
        return False
    assert found, "allowed, but nothing read: the aggregates were published before"
    return True


async def _until_allowed(reader: KafkaConnection, allowed: bool, timeout: float = 30) -> None:
    """ACL changes reach the broker's authorizer shortly after the command returns."""
    deadline = asyncio.get_running_loop().time() + timeout
    while await _readable(reader) is not allowed:
        assert asyncio.get_running_loop().time() < deadline, f"still not allowed={allowed}"
        await asyncio.sleep(0.5)


async def test_only_an_agency_an_operator_granted_reads_the_aggregates(
    world: World, kafka: KafkaConnection
) -> None:
    government = f.unique("gov")
    reader = await register_agency_access(kafka, government)
    assert not await _readable(reader), "a registered agency does not read them by default"
    granted = await asyncio.to_thread(
        CliRunner().invoke, ops.cli.app, ["platform", "grant-evidence", government]
    )
    assert granted.exit_code == 0, granted.output
    await _until_allowed(reader, allowed=True)
    # the referrer was never granted: still refused
    assert not await _readable(await register_agency_access(kafka, world.referrer))
    revoked = await asyncio.to_thread(
        CliRunner().invoke, ops.cli.app, ["platform", "revoke-evidence", government]
    )
    assert revoked.exit_code == 0, revoked.output
    await _until_allowed(reader, allowed=False)


# The dashboard in a real browser (Debian's chromium, Playwright: the ``browser`` fixture of
# tests/e2e/conftest.py) over the same 40 cases: the page readers are test_dashboard_browser.py's.


async def test_the_dashboard_shows_the_same_pathway_figures(
    world: World,
    evidence: RunningService,
    database_urls: dict[str, str],
    browser: Any,
    tmp_path: Any,
) -> None:
    viewer = dashboard.add_user("programme", "--role", "viewer")
    query = f"?country={world.region[:2]}&region={world.region}"
    page = await dashboard.logged_in(
        browser, evidence, viewer, f"/pathways{query}", viewport={"width": 1200, "height": 900}
    )
    expected = await _report(database_urls, Filters(region=world.region))
    shown = await dashboard.cells(page, SCORES_BY_PATHWAY)
    dashboard.assert_same_figures(shown, expected, SCORES_BY_PATHWAY)
    # the page lists the report's rows in its order (keys shown as labels)
    lines = dict(zip((r.key for r in expected.table(SCORES_BY_PATHWAY).rows), shown, strict=True))
    psy, eco = lines[(PSY, "month_6")], lines[(ECO, "month_6")]
    # composite change, then the line's case count (the 4 cases without statistics left out)
    assert [c["value"] for c in psy[-2:]] == [pytest.approx(_change(PSY)[-1], abs=1e-3), 25]
    assert [c["value"] for c in eco[-2:]] == [pytest.approx(_change(ECO)[-1], abs=1e-3), 15]
    await dashboard.screenshot(page, tmp_path, "pathways-40-cases")
    # the small vulnerability cells are suppressed on the page as in the report
    await page.goto(evidence.url(f"/dashboard/tables/{BY_GROUP}{query}"))
    groups_expected = await _report(database_urls, Filters(region=world.region))
    groups = dict(
        zip(
            (r.key for r in groups_expected.table(BY_GROUP).rows),
            await dashboard.cells(page, BY_GROUP),
            strict=True,
        )
    )
    hidden = [groups[("vulnerability", g)] for g in ("disability", "elderly")]
    assert all(c["suppressed"] for line in hidden for c in line[2:])
