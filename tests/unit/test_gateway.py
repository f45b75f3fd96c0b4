"""The gateway's pure parts: who a login is, the inbox cursor, an HTTP CloudEvent turned into
the agency's Kafka record with its consumer's own checks, and the console's view of an inbox."""

from __future__ import annotations

import json

import pytest

from services.gateway.console.pages import ACTIONS_BY_STATE, _safe_next
from services.gateway.console.view import view_of
from services.gateway.inbox import BadCursor, Cursor, InboxMessage
from services.gateway.ingress import (
    Checked,
    Family,
    binary_record,
    check,
    structured_record,
)
from services.gateway.principals import Principal, principal_of
from shared.contracts import events as ev
from shared.contracts.envelope import EnvelopeError
from shared.kafka.agency_input import Refusal
from shared.kafka.connection import KafkaConnection
from tests import factories as f


@pytest.mark.parametrize(
    ("login", "expected"),
    [
        ("agency.ngo-x", Principal("ngo-x", None)),
        ("agency.ngo-x.amina", Principal("ngo-x", "amina")),
        ("agency.ngo-x.amina.extra", None),
        ("admin", None),
        ("intake", None),
        ("agency.", None),
        ("agency.NGO.amina", None),
        ("agency.ngo-x.", None),
    ],
)
def test_only_an_agencys_principals_log_in(login: str, expected: Principal | None) -> None:
    assert principal_of(login) == expected
    if expected is not None:
        assert expected.name == login


def test_a_cursor_goes_back_and_forth_and_a_forged_one_is_refused() -> None:
    cursor = Cursor({0: 5, 2: 17})
    assert Cursor.decode(cursor.encode()) == cursor
    assert Cursor.decode(None) == Cursor({}) == Cursor.decode("0")
    after = cursor.after(InboxMessage(1, 3, {}, None))
    assert after.offsets == {0: 5, 1: 4, 2: 17}
    for forged in ("%%%", "bm90IGEgY3Vyc29y", Cursor({0: 1}).encode()[:-1] + "!"):
        with pytest.raises(BadCursor):
            Cursor.decode(forged)


def _binary(event: object) -> tuple[list[tuple[str, bytes]], bytes]:
    headers = {"ce-" + k.removeprefix("ce_"): v for k, v in event.headers.items()}  # type: ignore[attr-defined]
    headers["content-type"] = "application/json"
    return binary_record(headers, event.body)  # type: ignore[attr-defined]


def test_a_binary_mode_submission_becomes_the_record_the_agency_would_have_written() -> None:
    event = f.submission_event(f.submission("ngo-x"))
    headers, value = _binary(event)
    checked = check(Family.SUBMISSIONS, "ngo-x", headers, value)
    assert isinstance(checked, Checked)
    record = checked.record
    assert record.topic == "agency.ngo-x.submissions.v1"
    assert record.key == event.key.encode()  # the agency_case_ref, as the rule says
    assert record.event_id == event.event_id and record.ce_type == ev.CASE_SUBMITTED
    assert record.value == event.body


def test_structured_mode_carries_the_same_record() -> None:
    event = f.submission_event(f.submission("ngo-x"))
    document = {k.removeprefix("ce_"): v for k, v in event.headers.items() if k.startswith("ce_")}
    document |= {"datacontenttype": "application/json", "data": json.loads(event.body)}
    headers, value = structured_record(json.dumps(document).encode())
    checked = check(Family.SUBMISSIONS, "ngo-x", headers, value)
    assert isinstance(checked, Checked)
    assert json.loads(checked.record.value) == json.loads(event.body)
    with pytest.raises(EnvelopeError):
        structured_record(b"[1, 2]")
    with pytest.raises(EnvelopeError):
        structured_record(json.dumps({**document, "data_base64": "AA=="}).encode())


def test_a_message_for_another_agency_or_of_a_wrong_type_is_refused_with_its_reason() -> None:
    event = f.submission_event(f.submission("ngo-x"))
    headers, value = _binary(event)
    refused = check(Family.SUBMISSIONS, "ngo-y", headers, value)  # sent by ngo-y about ngo-x
    assert isinstance(refused, Refusal)
    assert [e.field for e in refused.errors] == ["ce_agencyid"]  # it claims ngo-x
    wrong_topic = check(Family.RESPONSES, "ngo-x", headers, value)
    assert isinstance(wrong_topic, Refusal)
    assert wrong_topic.reason.startswith("unknown ce_type for this topic")


def _message(offset: int, ce_type: str, data: dict[str, object], time: str) -> InboxMessage:
    return InboxMessage(0, offset, {"type": ce_type, "id": f"m{offset}", "time": time}, data)


def test_the_console_view_follows_a_referral_from_its_arrival_to_its_completion() -> None:
    received: dict[str, object] = {
        "referral_id": "ref-1",
        "case_id": "c-1",
        "need_id": "n-1",
        "category": "health",
        "urgency": "high",
        "service_id": "s-1",
        "referring_agency_id": "iom-x",
        "respond_by": "2026-12-05T10:00:00Z",
    }
    messages = [
        _message(0, ev.INBOX_REFERRAL_RECEIVED, received, "2026-12-03T10:00:00Z"),
        _message(
            1,
            ev.INBOX_DISCLOSURE_RECEIVED,
            {"referral_id": "ref-1", "sealed_box": "QUJD"},
            "2026-12-03T10:00:01Z",
        ),
        _message(
            2,
            ev.INBOX_RESPONSE_APPLIED,
            {"referral_id": "ref-1", "to_state": "accepted"},
            "2026-12-03T11:00:00Z",
        ),
        _message(
            3,
            ev.INBOX_REFERRAL_RECEIVED,
            {**received, "referral_id": "ref-2", "respond_by": "2026-12-04T10:00:00Z"},
            "2026-12-03T12:00:00Z",
        ),
        _message(
            4,
            ev.INBOX_RESPONSE_APPLIED,
            {"referral_id": "ref-1", "to_state": "completed"},
            "2026-12-03T13:00:00Z",
        ),
    ]
    view = view_of(messages)
    ref1 = view.received["ref-1"]
    assert ref1.state == "completed" and not ref1.open
    assert [s for _, s in ref1.history] == ["requested", "accepted", "completed"]
    assert len(ref1.disclosures) == 1
    assert [r.referral_id for r in view.received_in_order()] == ["ref-2", "ref-1"]
    assert ACTIONS_BY_STATE["requested"] == (ev.ResponseAction.ACCEPT, ev.ResponseAction.REJECT)


def test_a_cancellation_that_asks_for_erasure_takes_the_disclosure_off_the_page() -> None:
    view = view_of(
        [
            _message(0, ev.INBOX_REFERRAL_RECEIVED, {"referral_id": "r"}, "t0"),
            _message(
                1, ev.INBOX_DISCLOSURE_RECEIVED, {"referral_id": "r", "sealed_box": "QQ=="}, "t1"
            ),
            _message(
                2,
                ev.INBOX_REFERRAL_CANCELLED,
                {"referral_id": "r", "erase_received_data": True},
                "t2",
            ),
        ]
    )
    assert view.received["r"].disclosures == [] and not view.received["r"].open


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/referrals/r-1", "/referrals/r-1"),
        ("//evil.example/x", "/inbox"),
        ("https://evil.example/", "/inbox"),
        ("/\\evil", "/inbox"),
        ("", "/inbox"),
    ],
)
def test_after_login_the_console_goes_only_to_its_own_pages(target: str, expected: str) -> None:
    assert _safe_next(target) == expected


async def test_failed_logins_of_one_name_are_throttled_and_nothing_asks_the_broker() -> None:
    from services.gateway.auth import Authenticator, Refused
    from shared.web.throttle import ThrottlePolicy

    # No broker at this address: names that are no agency principal never reach it.
    authenticator = Authenticator(KafkaConnection("127.0.0.1:1"), ThrottlePolicy(free_failures=2))
    answers = [await authenticator.authenticate("admin", "guess") for _ in range(3)]
    assert [a.status for a in answers if isinstance(a, Refused)] == [401, 401, 429]
    assert isinstance(answers[2], Refused) and answers[2].retry_after_s
    other = await authenticator.authenticate("agency.ngo-x", "")
    assert isinstance(other, Refused) and other.status == 401  # another name is not throttled
