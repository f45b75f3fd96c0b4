"""Community needs (issue 18, decision 17) on the real PostgreSQL, through consumer batches
wired as the services' app.py wire them: intake stores a community need with its description
encrypted, updates, closes and erases it, and logs its sealed brief in the disclosure log;
referral stores it as a case of kind community beside a returnee's case in one batch, refers it
by level, re-routes it after a rejection, refers an unmet one when a community programme is
listed, and counts it in the evidence by level and beneficiary type (store and CLI)."""

from __future__ import annotations

import asyncio
import csv
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.intake.community import NEED_ID
from services.intake.store import IntakeStore
from services.referral import cli
from services.referral.decisions import CommunityCase, RoutingPolicy
from services.referral.handlers import SOURCE, ReferralHandlers
from services.referral.store import ReferralStore
from shared.contracts import events as ev
from shared.contracts import messages, topics
from shared.contracts.envelope import OutgoingEvent, build_event
from shared.unit import open_unit, raw_handler, typed_handler
from tests import factories as f
from tests.dsn import with_params
from tests.integration.counting import CountingPool
from tests.integration.test_intake_batches import AGENCY, Intake
from tests.integration.test_intake_batches import intake as intake
from tests.integration.test_matching_index import referral_schema
from tests.integration.test_referral_continuity import PROVIDER, Referral

TRAINING = "economic.vocational_training"
PROGRAMME = "dev-prog"
DESCRIPTION = "Thiaroye's young people need a training centre (Awa Ndiaye-9x2 knows more)"


# ----- intake -----


def _community(intake: Intake, ref: str, **overrides: Any) -> Any:
    body = {
        "schema_version": "1",
        "agency_id": AGENCY,
        "agency_case_ref": ref,
        "area": "SN0101",
        "category": TRAINING,
        "people_affected": 40,
        "returnee_share": 0.25,
        "description": DESCRIPTION,
        **overrides,
    }
    sent = build_event(
        topic=topics.AGENCY_SUBMISSIONS.name(AGENCY),
        key=ref,
        type_=ev.COMMUNITY_NEED_SUBMITTED,
        source=messages.agency_source(AGENCY),
        data=ev.SubmissionRejected(submission_id="x", reason="x"),  # body replaced
        agency_id=AGENCY,
    )
    return intake.inbound(
        OutgoingEvent(sent.topic, sent.key, sent.headers, json.dumps(body).encode())
    )


async def test_intake_keeps_a_community_need_encrypted_and_logs_its_disclosure(
    intake: Intake,
) -> None:
    ref, bad = f.unique("COM"), f.unique("BAD")
    await intake.apply(
        [
            _community(intake, ref),
            _community(intake, ref, people_affected=55),  # the same reference: an update
            _community(intake, bad, given_name="Awa"),  # refused: nothing stored
        ]
    )
    [row] = await intake.fetch("SELECT * FROM community_needs")
    need_id = str(row["need_id"])
    assert (row["agency_case_ref"], row["people_affected"], row["status"]) == (ref, 55, "open")
    assert b"Ndiaye" not in row["description_sealed"]
    async with intake.pool.pool.acquire() as conn:
        opened = await IntakeStore(conn).read_community_description(need_id, b"m" * 32)
    assert opened == DESCRIPTION
    registered = await intake.outbox(ev.COMMUNITY_NEED_REGISTERED)
    assert [r["people_affected"] for r in registered] == [40, 55]
    assert "Ndiaye" not in json.dumps(registered)
    outcomes = [a["outcome"] for a in await intake.outbox(ev.SUBMISSION_ACCEPTED)]
    assert outcomes == ["registered", "updated"]
    [rejected] = await intake.outbox(ev.SUBMISSION_REJECTED)
    assert [e["field"] for e in rejected["errors"]] == ["given_name"]
    submissions = await intake.fetch("SELECT outcome, case_id FROM submissions ORDER BY outcome")
    assert [(s["outcome"], s["case_id"]) for s in submissions] == [
        ("registered", None),
        ("rejected", None),
        ("updated", None),
    ]

    # a referral of it: the brief sealed for the provider, logged as a community need's
    referral = ev.ReferralRequested(
        referral_id=str(uuid.uuid4()),
        case_id=need_id,
        need_id=NEED_ID,
        category=TRAINING,
        urgency="normal",
        referring_agency_id=AGENCY,
        recipient_agency_id="provider-1",
        service_id="svc-1",
        explanation=ev.MatchExplanation(matched=[], score=0.5, components={}),
    )
    referred = intake.inbound(
        build_event(
            topic=topics.REFERRAL_EVENTS,
            key=need_id,
            type_=ev.REFERRAL_REQUESTED,
            source="urn:referralexchange:service:referral",
            subject=referral.referral_id,
            data=referral,
        )
    )
    await intake.apply([referred])
    [sealed] = await intake.outbox(ev.DISCLOSURE_SEALED)
    assert sealed["content"] == "community_need"
    brief = intake.opened(sealed)
    assert (brief["description"], brief["people_affected"]) == (DESCRIPTION, 55)
    [logged] = await intake.fetch("SELECT * FROM disclosure_log")
    assert (logged["kind"], logged["outcome"], logged["case_id"]) == (
        "community_need",
        "disclosed",
        None,
    )
    assert str(logged["community_need_id"]) == need_id

    # closed, then erased: the description can no longer be opened
    closure = ev.CaseClosure(
        agency_id=AGENCY,
        agency_case_ref=ref,
        closed_at=datetime.now(UTC) - timedelta(seconds=1),
        reason=ev.ClosureReason.COMPLETED,
    )
    erasure = ev.ErasureRequest(
        agency_id=AGENCY,
        agency_case_ref=ref,
        requested_at=datetime.now(UTC) - timedelta(seconds=1),
        basis="data_subject_request",
    )
    await intake.apply(
        [
            intake.sent(ev.CASE_CLOSURE_SUBMITTED, closure, ref),
            intake.sent(ev.ERASURE_REQUESTED, erasure, ref),
        ]
    )
    [row] = await intake.fetch("SELECT * FROM community_needs")
    assert (row["status"], row["wrapped_key"], row["description_sealed"]) == ("erased", None, None)
    assert [c["case_id"] for c in await intake.outbox(ev.CASE_CLOSED)] == [need_id]
    assert [c["agency_case_ref"] for c in await intake.outbox(ev.CASE_ERASED)] == [ref]


# ----- referral -----


class CommunityReferral(Referral):
    """Referral's consumer with the community need in its dispatch table, as app.py has it."""

    def __init__(self, pool: CountingPool) -> None:
        handlers = ReferralHandlers(RoutingPolicy(max_attempts=3))
        typed = typed_handler(
            {
                ev.AGENCY_REGISTERED: handlers.on_agency,
                ev.CASE_REGISTERED: handlers.on_case,
                ev.CASE_CLOSED: handlers.on_case_ended,
                ev.CASE_ERASED: handlers.on_case_ended,
                ev.COMMUNITY_NEED_REGISTERED: handlers.on_community_need,
            },
            ReferralStore,
            SOURCE,
            preload={ev.CASE_REGISTERED: ReferralStore.preload_cases},
        )
        super(Referral, self).__init__(
            pool,
            "referral",
            {
                topics.INTAKE_CASES: typed,
                topics.DIRECTORY_AGENCIES: typed,
                topics.AGENCY_LISTINGS: raw_handler(handlers.on_listing, ReferralStore, SOURCE),
                topics.AGENCY_RESPONSES: raw_handler(handlers.on_response, ReferralStore, SOURCE),
            },
        )


@pytest.fixture
async def referral(database_urls: dict[str, str]) -> AsyncIterator[CommunityReferral]:
    async with referral_schema(database_urls["referral"]) as pool:
        yield CommunityReferral(CountingPool(pool))


def _need(area: str, share: float = 0.5) -> ev.CommunityNeedRegistered:
    return ev.CommunityNeedRegistered(
        case_id=str(uuid.uuid4()),
        submitting_agency_id="commune-a",
        area=area,
        need=ev.Need.model_validate(
            {"need_id": NEED_ID, "category": TRAINING, "level": "community"}
        ),
        people_affected=40,
        returnee_share=share,
    )


def _programme(area: str, service_id: str | None = None) -> ev.ServiceListing:
    return f.listing(
        PROGRAMME,
        service_id=service_id or f.unique("prog"),
        categories=[TRAINING],
        service_areas=[area],
        levels=["community"],
        eligibility={"beneficiary_types": ["community_member"]},
    )


async def test_referral_routes_a_community_need_by_level_beside_a_case(
    referral: CommunityReferral,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    database_urls: dict[str, str],
) -> None:
    area = f.unique_area()
    individual = f.listing(PROVIDER, categories=[TRAINING], service_areas=[area])
    community_a, community_b = _programme(area, "prog-a"), _programme(area, "prog-b")
    await referral.apply(
        [
            referral.agency(PROVIDER, ev.AgencyType.NGO),
            referral.agency(PROGRAMME, ev.AgencyType.DEVELOPMENT_PROGRAMME),
            referral.listed(individual),
            referral.listed(community_a),
            referral.listed(community_b),
        ]
    )
    need = _need(area)
    case = ev.CaseRegistered.model_validate(
        {
            "case_id": str(uuid.uuid4()),
            "submitting_agency_id": "iom-sn",
            "profile": f.profile(return_area=area),
            "needs": [{"need_id": "n1", "category": TRAINING}],
            "consent": f.consent(),
        }
    )
    # one batch: the community need and a returnee's case of the same category and area
    await referral.apply(
        [
            referral.intake(ev.COMMUNITY_NEED_REGISTERED, need),
            referral.intake(ev.CASE_REGISTERED, case),
        ]
    )
    requested = {r["case_id"]: r for r in await referral.sent(ev.REFERRAL_REQUESTED)}
    assert requested[need.case_id]["service_id"] in {"prog-a", "prog-b"}
    assert requested[case.case_id]["service_id"] == individual.service_id
    [row] = await referral.fetch(
        "SELECT kind, consent, people_affected, returnee_share, profile FROM cases"
        " WHERE case_id = $1",
        need.case_id,
    )
    assert (row["kind"], row["consent"], row["people_affected"]) == ("community", None, 40)
    assert json.loads(row["profile"]) == {"return_area": area}
    async with open_unit(referral.pool.pool.acquire(), ReferralStore, SOURCE) as unit:
        loaded = await unit.stores.load_case(need.case_id)
        assert await unit.stores.load_case_facts(need.case_id) is None  # no handover of it
    assert isinstance(loaded, CommunityCase) and loaded.returnee_share == 0.5

    # rejected: re-routed to the other community programme, as attempt 2
    first = requested[need.case_id]
    rejection = ev.ReferralResponse(
        referral_id=first["referral_id"],
        agency_id=PROGRAMME,
        action=ev.ResponseAction.REJECT,
        reason_code="at_capacity",
        responded_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    await referral.apply([referral.inbound(messages.response_message(rejection, need.case_id))])
    rerouted = [r for r in await referral.sent(ev.REFERRAL_REQUESTED) if r["attempt"] == 2]
    assert [r["service_id"] for r in rerouted] == list({"prog-a", "prog-b"} - {first["service_id"]})

    # the evidence by level and beneficiary type, from the store and the operator's command
    async with open_unit(referral.pool.pool.acquire(), ReferralStore, SOURCE) as unit:
        report = {
            (r.values[0], r.values[1]): r.values[2:] for r in await unit.stores.level_report()
        }
    assert report == {
        ("community", "community_member"): (1, 1, 0, 0, 0, 40, 20),
        ("individual", "returnee"): (1, 1, 0, 0, 0, 1, 1),
    }
    [(schema,)] = await referral.fetch("SELECT current_schema()")
    monkeypatch.setenv(
        "REFERRAL_DATABASE_URL", with_params(database_urls["referral"], search_path=schema)
    )
    out = tmp_path / "evidence.csv"
    result = await asyncio.to_thread(CliRunner().invoke, cli.app, ["evidence", "--csv", str(out)])
    assert result.exit_code == 0, result.output
    assert "By level and beneficiary type" in result.output
    rows = list(csv.DictReader(cli.beside_csv(out, "levels").open()))
    assert [(r["level"], r["beneficiary_type"], r["returnees_affected"]) for r in rows] == [
        ("community", "community_member", "20"),
        ("individual", "returnee", "1"),
    ]

    # closed by its reporter: the open referral is cancelled
    closed = ev.CaseClosed(
        case_id=need.case_id,
        reason=ev.ClosureReason.COMPLETED,
        closed_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    await referral.apply([referral.intake(ev.CASE_CLOSED, closed)])
    [cancelled] = [
        t for t in await referral.sent(ev.REFERRAL_TRANSITIONED) if t["to_state"] == "cancelled"
    ]
    assert cancelled["case_id"] == need.case_id


async def test_an_unmet_community_need_is_referred_when_a_community_programme_is_listed(
    referral: CommunityReferral,
) -> None:
    area = f.unique_area()
    await referral.apply(
        [
            referral.agency(PROVIDER, ev.AgencyType.NGO),
            referral.agency(PROGRAMME, ev.AgencyType.DEVELOPMENT_PROGRAMME),
            referral.listed(f.listing(PROVIDER, categories=[TRAINING], service_areas=[area])),
        ]
    )
    need = _need(area)
    await referral.apply([referral.intake(ev.COMMUNITY_NEED_REGISTERED, need)])
    [unmet] = await referral.sent(ev.NEED_UNMATCHED)
    assert (unmet["case_id"], unmet["reason"]) == (need.case_id, "not_eligible")
    [row] = await referral.fetch("SELECT area, reason FROM unmet_needs")
    assert (row["area"], row["reason"]) == (area, "not_eligible")

    programme = _programme(area[:4])
    await referral.apply([referral.listed(programme)])
    [requested] = await referral.sent(ev.REFERRAL_REQUESTED)
    assert (requested["case_id"], requested["service_id"]) == (need.case_id, programme.service_id)
    assert await referral.fetch("SELECT * FROM unmet_needs") == []
