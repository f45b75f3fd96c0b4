"""The console's case pages' pure parts: what a case page's forms become on the wire (checked by
the consumer's own rules, as the console checks them before publishing), the handovers an
agency's view shows it, and the expiry of a console session."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from services.gateway.console import case_form
from services.gateway.console.publishing import ConsolePublisher
from services.gateway.console.view import view_of
from services.gateway.inbox import InboxMessage
from services.gateway.ingress import Family, KafkaRecord
from services.gateway.intake_keys import IntakeKeys
from services.gateway.principals import Principal
from services.gateway.sessions import Session, Sessions
from shared.contracts import events as ev
from shared.kafka.agency_input import Refusal

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


class _Producers:
    """The producer pool's one method the publisher uses: records what would reach Kafka."""

    def __init__(self) -> None:
        self.records: list[KafkaRecord] = []

    async def publish(self, connection: object, record: KafkaRecord) -> None:
        self.records.append(record)


async def _no_keys(connection: object) -> list[ev.SubmissionKey]:
    return []


def _session(agency_id: str = "iom-x") -> Session:
    return Session("sid", Principal(agency_id, "fatou"), None, 0.0, 0.0)  # type: ignore[arg-type]


async def _published(
    family: Family, ce_type: str, data: dict[str, Any]
) -> tuple[Refusal | None, list[KafkaRecord]]:
    producers = _Producers()
    no_keys = IntakeKeys(_no_keys, max_age_s=60)  # intake publishes none: nothing sealed
    publisher = ConsolePublisher(producers, no_keys)  # type: ignore[arg-type]
    return await publisher.publish(_session(), family, ce_type, data), producers.records


async def test_the_needs_form_replaces_the_needs_and_an_empty_one_is_refused_by_its_field() -> None:
    form = {
        "need_id_1": "n1",
        "need_1": "psychosocial.counselling",
        "urgency_1": "normal",
        "need_id_2": "n7",
        "need_2": "economic.job_placement",
        "urgency_2": "urgent",
        "need_id_3": "n3",
        "need_3": "",  # a row left empty is no need
    }
    update = case_form.needs_update("iom-x", "CASE-1", form)
    refusal, [record] = await _published(Family.SUBMISSIONS, ev.CASE_UPDATE_SUBMITTED, update)
    assert refusal is None
    assert record.topic == "agency.iom-x.submissions.v1" and record.key == b"CASE-1"
    assert json.loads(record.value)["needs"] == [
        {"need_id": "n1", "category": "psychosocial.counselling", "urgency": "normal"},
        {"need_id": "n7", "category": "economic.job_placement", "urgency": "urgent"},
    ]
    nothing = case_form.needs_update("iom-x", "CASE-1", {"need_1": ""})
    refusal, records = await _published(Family.SUBMISSIONS, ev.CASE_UPDATE_SUBMITTED, nothing)
    assert isinstance(refusal, Refusal) and records == []
    assert any(e.field.startswith("needs") for e in refusal.errors), refusal


async def test_a_handover_offer_goes_on_the_owners_responses_topic_with_a_deadline() -> None:
    offer = case_form.handover_proposal(
        "iom-x", "case-9", {"to_agency_id": "ngo-y", "reason": "programme_ended"}, NOW
    )
    assert offer["respond_by"] == "2026-12-17T10:00:00+00:00"  # HANDOVER_ANSWER_DAYS later
    refusal, [record] = await _published(Family.RESPONSES, ev.HANDOVER_PROPOSAL_SUBMITTED, offer)
    assert refusal is None and record.topic == "agency.iom-x.responses.v1"
    dated = case_form.handover_proposal(
        "iom-x", "case-9", {"to_agency_id": "ngo-y", "reason": "x", "respond_by": "2026-12-20"}, NOW
    )
    assert dated["respond_by"] == "2026-12-20T23:59:59+00:00"
    refusal, records = await _published(Family.RESPONSES, ev.HANDOVER_PROPOSAL_SUBMITTED, dated)
    assert isinstance(refusal, Refusal) and records == []
    assert [e.field for e in refusal.errors] == ["reason"]


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ({"action": "accept", "agency_case_ref": "MINE-1"}, {"agency_case_ref": "MINE-1"}),
        ({"action": "accept"}, {}),  # a request approved by the owner names no reference
        ({"action": "reject", "reason": "no_capacity"}, {"reason": "no_capacity"}),
    ],
)
async def test_a_handover_answer_carries_what_its_action_needs(
    form: dict[str, str], expected: dict[str, str]
) -> None:
    handover = {"handover_id": "h-1", "case_id": "case-9"}
    answer = case_form.handover_answer("iom-x", handover, form)
    assert answer == {
        "handover_id": "h-1",
        "case_id": "case-9",
        "agency_id": "iom-x",
        "action": form["action"],
        **expected,
    }
    refusal, records = await _published(Family.RESPONSES, ev.HANDOVER_ANSWER_SUBMITTED, answer)
    assert refusal is None and len(records) == 1


def _message(offset: int, ce_type: str, data: dict[str, object]) -> InboxMessage:
    time = f"2026-12-03T10:00:{offset:02d}Z"
    return InboxMessage(0, offset, {"type": ce_type, "id": f"m{offset}", "time": time}, data)


def _proposed(handover_id: str, respond_by: str) -> dict[str, object]:
    return {
        "handover_id": handover_id,
        "case_id": f"case-{handover_id}",
        "direction": "offer",
        "owner_agency_id": "iom-x",
        "receiving_agency_id": "ngo-y",
        "answering_agency_id": "ngo-y",
        "reason": "programme_ended",
        "respond_by": respond_by,
    }


def test_each_party_sees_its_side_of_a_handover() -> None:
    messages = [
        _message(0, ev.INBOX_SUBMISSION_ACCEPTED, {"agency_case_ref": "C-1", "case_id": "case-h1"}),
        _message(1, ev.INBOX_HANDOVER_PROPOSED, _proposed("h1", "2026-12-20T00:00:00Z")),
        _message(2, ev.INBOX_HANDOVER_PROPOSED, _proposed("h2", "2026-12-10T00:00:00Z")),
        _message(
            3,
            ev.INBOX_HANDOVER_ENDED,
            {"handover_id": "h2", "state": "rejected", "reason": "no_capacity"},
        ),
    ]
    owner, receiver = view_of(messages, "iom-x"), view_of(messages, "ngo-y")
    assert owner.handovers_to_answer() == []  # the owner waits; it has nothing to answer
    assert [h["handover_id"] for h in receiver.handovers_to_answer()] == ["h1"]
    assert receiver.handovers["h2"]["state"] == "rejected"
    moved = _message(
        4,
        ev.INBOX_CASE_HANDED_OVER,
        {
            "handover_id": "h1",
            "case_id": "case-h1",
            "from_agency_id": "iom-x",
            "to_agency_id": "ngo-y",
            "to_agency_case_ref": "NGO-7",
        },
    )
    owner.apply(moved)
    receiver.apply(moved)
    assert owner.cases["C-1"]["outcome"] == "handed_over"
    assert owner.cases["C-1"]["handed_over_to"] == "ngo-y"
    assert receiver.cases["NGO-7"]["case_id"] == "case-h1"
    assert receiver.handovers_to_answer() == []
    assert [h["state"] for h in owner.handovers_of_case("case-h1")] == ["completed"]


async def test_a_console_session_ends_when_idle_or_too_old(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("services.gateway.sessions.time.monotonic", lambda: clock[0])
    sessions = Sessions(idle_s=60, max_s=300)
    for sid in ("idle", "busy"):
        sessions._sessions[sid] = Session(sid, Principal("ngo-y", "amina"), None, 1000.0, 1000.0)  # type: ignore[arg-type]
    clock[0] = 1050.0
    assert await sessions.get("busy") is not None  # used: its idle time starts again
    clock[0] = 1090.0
    assert await sessions.get("idle") is None  # 90 s without a click
    assert await sessions.get("idle") is None  # and it is gone for good
    for click_at in (1100.0, 1150.0, 1200.0, 1250.0, 1300.0):  # a click every 50 s
        clock[0] = click_at
        assert await sessions.get("busy") is not None
    clock[0] = 1310.0
    assert await sessions.get("busy") is None  # 5 minutes after login, however busy
    assert await sessions.get(None) is None and await sessions.get("unknown") is None
