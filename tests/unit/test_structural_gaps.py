"""Structural gaps (decision 18) in milliseconds: the pure rules of structural.py (districts,
fixed periods, coverage, the reports and the commitments), the timer job and the commitment
handler on a fake store, and notification's fan-out. The same rules run on the real PostgreSQL
in tests/integration/test_structural_gaps.py and on the real broker in tests/e2e/
test_structural.py."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.notification.fanout import notices
from services.referral import structural
from services.referral.handlers import ReferralHandlers
from services.referral.structural import (
    Cluster,
    CommitmentRow,
    GapFacts,
    GapReport,
    GapRule,
    Government,
    covers,
    decide_commitment,
    district_of,
    gap_reports,
    period_of,
    trend,
)
from services.referral.timers import report_structural_gaps
from shared.contracts import events as ev
from shared.contracts import messages, topics
from shared.contracts.envelope import build_event
from shared.kafka.inbound import InboundEvent
from shared.unit import Unit
from tests import factories as f
from tests.unit.test_referral_continuity import _unit, _units
from tests.unit.test_referral_handlers import POLICY

JOBS = "economic.job_placement"
MINISTRY = "min-labour-sn"
OTHER_MINISTRY = "min-health-ml"
RULE = GapRule(district_digits=4, period_days=30, threshold=3)
NOW = datetime(2026, 12, 3, 7, 0, tzinfo=UTC)
TODAY = NOW.date()

# ----- districts, periods, trends -----


def test_a_district_is_the_area_cut_to_the_configured_digits() -> None:
    assert district_of("SN07011234", 4) == "SN0701"
    assert district_of("SN07011234", 0) == "SN"
    assert district_of("SN07", 4) == "SN07"  # a shorter area is its own district


def test_periods_are_fixed_windows_the_same_for_every_moment_in_them() -> None:
    start, end = period_of(NOW, 30)
    assert end - start == timedelta(days=30)
    assert start <= TODAY < end
    assert (start - date(1970, 1, 1)).days % 30 == 0
    # every moment of the window gives the same window; the day after it the next one
    assert period_of(datetime.combine(start, datetime.min.time(), UTC), 30) == (start, end)
    last = datetime.combine(end, datetime.min.time(), UTC) - timedelta(microseconds=1)
    assert period_of(last, 30) == (start, end)
    assert period_of(last + timedelta(microseconds=1), 30)[0] == end


@pytest.mark.parametrize(
    ("current", "previous", "expected"),
    [(3, 0, "new"), (4, 3, "rising"), (3, 3, "stable"), (3, 5, "falling")],
)
def test_the_trend_compares_with_the_period_before(
    current: int, previous: int, expected: str
) -> None:
    assert trend(current, previous).value == expected


# ----- who covers a district -----


def test_a_government_agency_covers_a_district_its_listings_overlap() -> None:
    regional = Government(MINISTRY, ("SN",), ("SN07",))
    local = Government(MINISTRY, ("SN",), ("SN07011234",))
    national = Government(MINISTRY, ("SN",), ("SN",))
    elsewhere = Government(MINISTRY, ("SN",), ("SN01",))
    assert covers(regional, "SN0701")  # a listing containing the district
    assert covers(local, "SN0701")  # a listing within it
    assert covers(national, "SN0701")
    assert not covers(elsewhere, "SN0701")  # its listings say where it acts: not there


def test_a_government_agency_without_listings_covers_its_records_countries() -> None:
    assert covers(Government(MINISTRY, ("SN",)), "SN0701")
    assert not covers(Government(OTHER_MINISTRY, ("ML",)), "SN0701")


# ----- the reports -----


def _cluster(area: str = "SN0701", previous: int = 0, **reasons: int) -> Cluster:
    return Cluster(area, JOBS, reasons or {"no_listing": 3}, previous)


def _ids() -> Any:
    n = iter(range(1000))
    return lambda: f"00000000-0000-4000-8000-{next(n):012d}"


def test_a_cluster_at_the_threshold_is_reported_to_each_government_agency_covering_it() -> None:
    governments = [
        Government(MINISTRY, ("SN",), ("SN07",)),
        Government("min-youth-sn", ("SN",)),  # no listings: the whole country
        Government("min-agri-sn", ("SN",), ("SN01",)),  # acts elsewhere
        Government(OTHER_MINISTRY, ("ML",)),  # another country
    ]
    period = period_of(NOW, 30)
    [report] = gap_reports(
        [_cluster(no_listing=2, no_capacity=1, previous=1)], governments, period, RULE, _ids()
    )
    assert report.addressees == (MINISTRY, "min-youth-sn")
    events = report.events()
    assert [e.addressed_agency_id for e in events] == [MINISTRY, "min-youth-sn"]
    assert {e.report_id for e in events} == {report.report_id}  # one report, told twice
    body = events[0].model_dump(mode="json")
    assert body["unmet_needs"] == 3 and body["dimension"] == "economic"
    assert body["reasons"] == [
        {"reason": "no_listing", "count": 2},
        {"reason": "no_capacity", "count": 1},
    ]  # in the vocabulary's order
    assert (body["previous_period_unmet_needs"], body["trend"]) == (1, "rising")
    assert (body["period_start"], body["period_end"]) == tuple(d.isoformat() for d in period)
    # counts only: nothing names a case, a need or a person
    assert not {k for k in body if "case" in k or "need_id" in k or k == "note"}


def test_a_cluster_under_the_threshold_is_not_reported() -> None:
    assert gap_reports([_cluster(no_listing=2)], [], period_of(NOW, 30), RULE, _ids()) == []


def test_a_gap_no_government_agency_covers_is_recorded_for_the_evidence_only() -> None:
    [report] = gap_reports([_cluster()], [], period_of(NOW, 30), RULE, _ids())
    assert report.addressees == () and report.events() == []


# ----- commitments -----

GAP = GapFacts("5a8c2e47-9b1d-4f3a-8e6c-2d7f0b9a1c35", "SN0701", JOBS, frozenset({MINISTRY}))


def _commitment(by: str = MINISTRY, report_id: str = GAP.report_id, **kind: Any) -> Any:
    body = kind or {"kind": "planned_listing", "planned_by": "2027-06-30"}
    return ev.StructuralCommitment.model_validate(
        {"report_id": report_id, "agency_id": by, "commitment": body}
    )


def _decide(message: Any, **kw: Any) -> Any:
    facts: dict[str, Any] = {
        "gap": GAP,
        "previous": None,
        "service_owner": None,
        "today": TODAY,
        "message_id": "ce-1",
    }
    return decide_commitment(message, **(facts | kw))


def test_a_planned_listing_is_recorded_and_answered() -> None:
    row, applied = _decide(
        _commitment(kind="planned_listing", service_id="mol-jobs", planned_by="2027-06-30"),
        service_owner=MINISTRY,  # already listed by the ministry itself: fine
    )
    assert row == CommitmentRow(
        GAP.report_id,
        MINISTRY,
        ev.CommitmentKind.PLANNED_LISTING,
        "ce-1",
        service_id="mol-jobs",
        planned_by=date(2027, 6, 30),
    )
    assert (applied.kind, applied.area, applied.category, applied.replaced) == (
        ev.CommitmentKind.PLANNED_LISTING,
        "SN0701",
        JOBS,
        None,
    )


def test_not_planned_keeps_its_note_in_the_row_only_and_a_later_one_replaces() -> None:
    earlier = CommitmentRow(GAP.report_id, MINISTRY, ev.CommitmentKind.PLANNED_LISTING, "ce-0")
    row, applied = _decide(
        _commitment(kind="not_planned", reason="no_budget", note="budget frozen"),
        previous=earlier,
    )
    assert (row.kind, row.reason, row.note) == (
        ev.CommitmentKind.NOT_PLANNED,
        ev.NotPlannedReason.NO_BUDGET,
        "budget frozen",
    )
    assert applied.replaced is ev.CommitmentKind.PLANNED_LISTING
    assert "note" not in applied.model_dump() and "budget frozen" not in applied.model_dump_json()


@pytest.mark.parametrize(
    ("message", "facts", "error"),
    [
        (
            _commitment(kind="planned_listing", planned_by="2026-12-02"),
            {},
            ev.CommitmentError.INVALID_MESSAGE,
        ),
        (_commitment(), {"gap": None}, ev.CommitmentError.UNKNOWN_REPORT),
        (_commitment(by=OTHER_MINISTRY), {}, ev.CommitmentError.NOT_ADDRESSED),
        (
            _commitment(kind="planned_listing", service_id="ngo-jobs", planned_by="2027-01-01"),
            {"service_owner": "ngo-jamm"},
            ev.CommitmentError.SERVICE_OF_OTHER_AGENCY,
        ),
    ],
)
def test_commitments_the_rules_do_not_allow_are_refused(
    message: Any, facts: dict[str, Any], error: ev.CommitmentError
) -> None:
    decided = _decide(message, **facts)
    assert isinstance(decided, structural.CommitmentRefused)
    assert decided.error is error and decided.reason


def test_a_past_planned_by_names_its_field() -> None:
    decided = _decide(_commitment(kind="planned_listing", planned_by="2026-01-01"))
    assert [e.field for e in decided.errors] == ["commitment.planned_by"]


# ----- the timer job and the handler on a fake store -----


class Store:
    """The structural part of ReferralStore in memory."""

    def __init__(self, clusters: list[Cluster], governments: list[Government]) -> None:
        self.clusters = clusters
        self.governments = governments
        self.gaps: dict[tuple[str, str, date], GapReport] = {}
        self.commitments: dict[tuple[str, str], CommitmentRow] = {}
        self.listings: dict[str, str] = {}

    async def gap_clusters(
        self, rule: GapRule, period: tuple[date, date], previous_start: date
    ) -> list[Cluster]:
        return [c for c in self.clusters if (c.area, c.category, period[0]) not in self.gaps]

    async def government_coverage(self) -> list[Government]:
        return self.governments

    async def record_gap(self, report: GapReport) -> bool:
        key = (report.area, report.category, report.period_start)
        if key in self.gaps:
            return False
        self.gaps[key] = report
        return True

    async def load_gap(self, report_id: str) -> GapFacts | None:
        for g in self.gaps.values():
            if g.report_id == report_id:
                return GapFacts(g.report_id, g.area, g.category, frozenset(g.addressees))
        return None

    async def load_commitment(self, report_id: str, agency_id: str) -> CommitmentRow | None:
        return self.commitments.get((report_id, agency_id))

    async def listing_owner(self, service_id: str) -> str | None:
        return self.listings.get(service_id)

    async def save_commitment(self, c: CommitmentRow) -> None:
        self.commitments[(c.report_id, c.agency_id)] = c


def _sent(units: list[Unit[Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (e.headers["ce_type"], e.key, json.loads(e.body)) for unit in units for e in unit.emitted
    ]


async def _reported(store: Store) -> GapReport:
    emitted: list[Unit[Any]] = []
    assert await report_structural_gaps(_units(store, emitted), RULE, NOW) == 1
    [report] = store.gaps.values()
    return report


async def test_the_job_reports_a_gap_once_per_period_to_each_addressee() -> None:
    store = Store([_cluster()], [Government(MINISTRY, ("SN",), ("SN07",))])
    emitted: list[Unit[Any]] = []
    units = _units(store, emitted)
    assert await report_structural_gaps(units, RULE, NOW) == 1
    [(ce_type, key, body)] = _sent(emitted)
    [report] = store.gaps.values()
    assert (ce_type, key) == (ev.STRUCTURAL_GAP_REPORTED, report.report_id)
    assert (body["addressed_agency_id"], body["area"], body["unmet_needs"]) == (
        MINISTRY,
        "SN0701",
        3,
    )
    # the next ticks of the same period report nothing more
    emitted.clear()
    assert await report_structural_gaps(units, RULE, NOW + timedelta(minutes=5)) == 0
    assert _sent(emitted) == []


async def test_a_gap_another_instance_recorded_first_is_not_announced_again() -> None:
    store = Store([_cluster()], [Government(MINISTRY, ("SN",))])

    async def taken(report: GapReport) -> bool:
        return False  # the unique key: the other instance's insert came first

    store.record_gap = taken  # type: ignore[method-assign]
    emitted: list[Unit[Any]] = []
    assert await report_structural_gaps(_units(store, emitted), RULE, NOW) == 0
    assert _sent(emitted) == []


def _message(agency: str, body: dict[str, Any], key: str) -> InboundEvent:
    """What the government agency's own client sends on its responses topic."""
    out = build_event(
        topic=topics.AGENCY_RESPONSES.name(agency),
        key=key,
        type_=ev.STRUCTURAL_COMMITMENT_SUBMITTED,
        source=messages.agency_source(agency),
        subject=key,
        data=f.agency(agency),  # replaced by the body below
        agency_id=agency,
    )
    return InboundEvent.from_record(f.record_of(replace(out, body=json.dumps(body).encode())))


async def _send(store: Store, event: InboundEvent) -> list[tuple[str, str, dict[str, Any]]]:
    unit = _unit(store, event)
    await ReferralHandlers(POLICY).on_response(event, unit)
    return _sent([unit])


def _body(report_id: str, by: str = MINISTRY, **commitment: Any) -> dict[str, Any]:
    return {
        "report_id": report_id,
        "agency_id": by,
        "commitment": commitment or {"kind": "planned_listing", "planned_by": "2099-01-01"},
    }


async def test_a_commitment_is_recorded_and_told_back_under_the_report() -> None:
    store = Store([_cluster()], [Government(MINISTRY, ("SN",))])
    report = await _reported(store)
    event = _message(MINISTRY, _body(report.report_id), report.report_id)
    [(ce_type, key, body)] = await _send(store, event)
    assert (ce_type, key) == (ev.STRUCTURAL_COMMITMENT_APPLIED, report.report_id)
    assert (body["message_id"], body["kind"], body.get("replaced")) == (
        event.event_id,
        "planned_listing",
        None,
    )
    assert store.commitments[(report.report_id, MINISTRY)].planned_by == date(2099, 1, 1)
    # a second one replaces it
    again = _message(MINISTRY, _body(report.report_id, kind="not_planned", reason="no_budget"), "k")
    [(_, _, body)] = await _send(store, again)
    assert (body["kind"], body["replaced"]) == ("not_planned", "planned_listing")
    assert store.commitments[(report.report_id, MINISTRY)].kind is ev.CommitmentKind.NOT_PLANNED


async def _refused(store: Store, event: InboundEvent, error: str, key: str) -> dict[str, Any]:
    before = dict(store.commitments)
    [(ce_type, sent_key, body)] = await _send(store, event)
    assert (ce_type, sent_key) == (ev.STRUCTURAL_COMMITMENT_REFUSED, key)
    assert (body["error"], body["agency_id"], body["message_id"]) == (
        error,
        event.sender_agency,
        event.event_id,
    )
    assert body["reason"]
    assert store.commitments == before  # nothing changed
    return body


async def test_commitments_that_cannot_be_applied_are_refused_to_their_sender() -> None:
    store = Store([_cluster()], [Government(MINISTRY, ("SN",))])
    report = await _reported(store)
    rid = report.report_id
    invalid = await _refused(
        store,
        _message(MINISTRY, _body(rid, kind="not_planned"), rid),
        "invalid_message",
        MINISTRY,
    )
    assert [e["field"] for e in invalid["errors"]] == ["commitment.not_planned.reason"]
    forged = await _refused(
        store, _message(MINISTRY, _body(rid, by=OTHER_MINISTRY), rid), "invalid_message", MINISTRY
    )
    assert [e["field"] for e in forged["errors"]] == ["agency_id"]
    unknown = str(uuid.uuid4())
    await _refused(store, _message(MINISTRY, _body(unknown), unknown), "unknown_report", MINISTRY)
    await _refused(
        store,
        _message(OTHER_MINISTRY, _body(rid, by=OTHER_MINISTRY), rid),
        "not_addressed",
        rid,
    )
    store.listings["ngo-jobs"] = "ngo-jamm"
    planned = {"kind": "planned_listing", "service_id": "ngo-jobs", "planned_by": "2099-01-01"}
    await _refused(
        store,
        _message(MINISTRY, _body(rid, **planned), rid),
        "service_of_other_agency",
        rid,
    )


# ----- notification's fan-out -----


def test_a_gap_is_told_to_its_addressee_with_where_to_answer() -> None:
    [report] = gap_reports(
        [_cluster()], [Government(MINISTRY, ("SN",))], period_of(NOW, 30), RULE, _ids()
    )
    [event] = report.events()
    [notice] = notices(ev.STRUCTURAL_GAP_REPORTED, event)
    assert (notice.agency_id, notice.inbox_type, notice.subject) == (
        MINISTRY,
        ev.INBOX_STRUCTURAL_GAP_REPORTED,
        report.report_id,
    )
    assert isinstance(notice.data, ev.InboxStructuralGapReported)
    assert notice.data.respond_on_topic == topics.AGENCY_RESPONSES.name(MINISTRY)
    assert notice.data.unmet_needs == 3


def test_a_commitments_answers_go_to_its_sender() -> None:
    applied = ev.StructuralCommitmentApplied(
        message_id="ce-1",
        report_id=GAP.report_id,
        agency_id=MINISTRY,
        area="SN0701",
        category=JOBS,
        kind=ev.CommitmentKind.NOT_PLANNED,
        not_planned_reason=ev.NotPlannedReason.NO_BUDGET,
    )
    refused = ev.StructuralCommitmentRefused(
        message_id="ce-2",
        agency_id=OTHER_MINISTRY,
        error=ev.CommitmentError.NOT_ADDRESSED,
        reason="the report was not addressed to this agency",
    )
    [a] = notices(ev.STRUCTURAL_COMMITMENT_APPLIED, applied)
    [r] = notices(ev.STRUCTURAL_COMMITMENT_REFUSED, refused)
    assert (a.agency_id, a.inbox_type, a.subject) == (
        MINISTRY,
        ev.INBOX_STRUCTURAL_COMMITMENT_APPLIED,
        GAP.report_id,
    )
    assert (r.agency_id, r.inbox_type, r.subject) == (
        OTHER_MINISTRY,
        ev.INBOX_STRUCTURAL_COMMITMENT_REFUSED,
        "ce-2",
    )
