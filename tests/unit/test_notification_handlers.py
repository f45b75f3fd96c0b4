"""Notification's handlers and fan-out table against in-memory stores: no broker, no database.
The real-broker path is covered by the e2e tests (test_walking_skeleton, test_answers,
test_webhooks); these pin the decisions, in milliseconds."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.notification.constants import SOURCE
from services.notification.fanout import FANOUT, SILENT, UPSTREAM_TYPES, notices
from services.notification.handlers import NotificationHandlers
from services.notification.store import Channels, EmailChannel, Notification
from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import build_event
from shared.contracts.taxonomy import ReasonCode, Urgency
from shared.kafka.inbound import InboundEvent
from shared.unit import Cause, Unit
from tests import factories as f

REPO = Path(__file__).resolve().parents[2]
REFERRER, PROVIDER = "ngo-referrer", "ngo-provider"


class FakeStore:
    """What NotificationStore does, in memory."""

    def __init__(self, channels: dict[str, Channels] | None = None) -> None:
        self.agencies: dict[str, str] = {}
        self.known_channels = channels or {}
        self.recorded: list[Notification] = []
        self.channel_queries = 0
        self.asked: list[set[str]] = []

    async def save_agency(self, agency: ev.AgencyRecord, inbox_topic: str) -> None:
        self.agencies[agency.agency_id] = inbox_topic

    async def channels(self, agency_ids: Collection[str]) -> dict[str, Channels]:
        self.channel_queries += 1
        self.asked.append(set(agency_ids))
        return {a: self.known_channels[a] for a in agency_ids if a in self.known_channels}

    async def record(self, notifications: Sequence[Notification]) -> None:
        self.recorded.extend(notifications)


async def _inbox(agency_id: str) -> str:
    return topics.agency_inbox(agency_id)


def _unit(ce_type: str, store: FakeStore) -> Unit[Any]:
    return Unit(None, store, SOURCE, Cause("conversation-1", "cause-1", ce_type))  # type: ignore[arg-type]


def _requested(**overrides: Any) -> ev.ReferralRequested:
    return ev.ReferralRequested.model_validate(
        {
            "referral_id": str(uuid.uuid4()),
            "case_id": str(uuid.uuid4()),
            "need_id": "n1",
            "category": "psychosocial.counselling",
            "urgency": Urgency.NORMAL,
            "referring_agency_id": REFERRER,
            "recipient_agency_id": PROVIDER,
            "service_id": "svc-1",
            "explanation": {"matched": ["category"], "score": 0.9, "components": {}},
            **overrides,
        }
    )


def _transitioned(to: ev.ReferralState, reason: ReasonCode | None) -> ev.ReferralTransitioned:
    return ev.ReferralTransitioned(
        referral_id=str(uuid.uuid4()),
        case_id=str(uuid.uuid4()),
        need_id="n1",
        from_state=ev.ReferralState.ACCEPTED,
        to_state=to,
        reason_code=reason,
        attempt=1,
        referring_agency_id=REFERRER,
        recipient_agency_id=PROVIDER,
        occurred_at=datetime.now(UTC),
    )


async def test_a_rerouted_referral_tells_the_referrer_and_the_new_provider() -> None:
    store = FakeStore()
    unit = _unit(ev.REFERRAL_REQUESTED, store)
    referral = _requested(attempt=2, previous_referral_id=str(uuid.uuid4()))

    await NotificationHandlers(_inbox).notify(referral, unit)

    sent = [(e.topic, e.key, e.headers["ce_type"], e.headers["ce_subject"]) for e in unit.emitted]
    assert sent == [
        (topics.agency_inbox(REFERRER), referral.referral_id, ev.INBOX_REFERRAL_REROUTED,
         referral.referral_id),
        (topics.agency_inbox(PROVIDER), referral.referral_id, ev.INBOX_REFERRAL_RECEIVED,
         referral.referral_id),
    ]  # fmt: skip
    for event in unit.emitted:
        assert event.headers["ce_source"] == SOURCE
        assert event.headers["ce_correlationid"] == "conversation-1"
        assert event.headers["ce_causationid"] == "cause-1"
    received = json.loads(unit.emitted[1].body)
    assert received["respond_on_topic"] == topics.AGENCY_RESPONSES.name(PROVIDER)
    assert [(n.agency_id, n.source_event_id) for n in store.recorded] == [
        (REFERRER, "cause-1"),
        (PROVIDER, "cause-1"),
    ]
    assert store.channel_queries == 1, "the channels of both agencies in one read"


async def test_a_first_referral_tells_only_the_provider() -> None:
    unit = _unit(ev.REFERRAL_REQUESTED, FakeStore())
    await NotificationHandlers(_inbox).notify(_requested(), unit)
    assert [e.headers["ce_type"] for e in unit.emitted] == [ev.INBOX_REFERRAL_RECEIVED]


@pytest.mark.parametrize(
    ("to", "reason", "expected"),
    [
        (ev.ReferralState.COMPLETED, None, [(REFERRER, ev.INBOX_STATUS_CHANGED, None)]),
        (
            ev.ReferralState.CANCELLED,
            ReasonCode.CONSENT_WITHDRAWN,
            [
                (REFERRER, ev.INBOX_STATUS_CHANGED, None),
                (PROVIDER, ev.INBOX_REFERRAL_CANCELLED, True),
            ],
        ),
        (
            ev.ReferralState.CANCELLED,
            ReasonCode.DUPLICATE,
            [
                (REFERRER, ev.INBOX_STATUS_CHANGED, None),
                (PROVIDER, ev.INBOX_REFERRAL_CANCELLED, False),
            ],
        ),
    ],
)
def test_a_cancelled_recipient_is_told_to_stop_and_to_erase_after_withdrawn_consent(
    to: ev.ReferralState, reason: ReasonCode | None, expected: list[tuple[str, str, bool | None]]
) -> None:
    decided = notices(ev.REFERRAL_TRANSITIONED, _transitioned(to, reason))
    assert [
        (n.agency_id, n.inbox_type, getattr(n.data, "erase_received_data", None)) for n in decided
    ] == expected


async def test_a_rejection_of_no_agency_tells_nobody() -> None:
    store = FakeStore()
    unit = _unit(ev.SUBMISSION_REJECTED, store)
    rejection = ev.SubmissionRejected(submission_id="x/0/1", reason="not JSON")
    await NotificationHandlers(_inbox).notify(rejection, unit)
    assert unit.emitted == [] and store.recorded == [] and store.channel_queries == 0


async def test_webhook_and_email_copies_follow_each_agencys_channels() -> None:
    store = FakeStore(
        {
            REFERRER: Channels(webhook_types=[ev.INBOX_STATUS_CHANGED]),
            PROVIDER: Channels(
                webhook_types=[],  # every type
                email=EmailChannel(["desk@example.org"], "fr", [ev.INBOX_REFERRAL_RECEIVED]),
            ),
        }
    )
    unit = _unit(ev.REFERRAL_REQUESTED, store)
    await NotificationHandlers(_inbox).notify(
        _requested(attempt=2, previous_referral_id=str(uuid.uuid4())), unit
    )
    rerouted, received = store.recorded
    assert rerouted.webhook_payload is None, "the referrer's webhook takes status changes only"
    assert received.webhook_payload is not None
    document = json.loads(received.webhook_payload)
    assert document["id"] == received.notification_id == unit.emitted[1].event_id
    assert document["type"] == ev.INBOX_REFERRAL_RECEIVED
    assert received.email is not None and received.email[0] == ["desk@example.org"]
    assert rerouted.email is None


async def test_an_agency_record_is_saved_with_its_inbox() -> None:
    store = FakeStore()
    unit = _unit(ev.AGENCY_REGISTERED, store)
    agency = f.agency(PROVIDER)
    await NotificationHandlers(_inbox).on_agency(agency, unit)
    assert store.agencies == {PROVIDER: topics.agency_inbox(PROVIDER)}
    assert unit.emitted == []


def test_every_type_notification_reads_is_routed_or_silent_by_decision() -> None:
    read = {
        t
        for name in topics.consumed_by(topics.Owner.NOTIFICATION)
        for t in topics.spec(name).payloads
    }
    table = {ev.AGENCY_REGISTERED, *UPSTREAM_TYPES}  # app.py's dispatch table
    assert read == table | SILENT, "a type read is neither handled nor declared silent"
    assert not table & SILENT
    inbox_types = set(topics.AGENCY_INBOX.template.payloads)
    assert {r.inbox_type for r in FANOUT} == inbox_types, "every inbox type has its route"
    assert read >= UPSTREAM_TYPES


def _guide_keys() -> dict[str, str]:
    """The inbox key table of docs/integrators.md §7: ce_type → key as documented."""
    guide = (REPO / "docs" / "integrators.md").read_text()
    section = guide[guide.index("## 7. Following your inbox") :]
    rows = re.findall(r"^\| `(org\.referralexchange\.notification\.[^`]+)` \|.*\| (.+) \|$",
                      section, re.MULTILINE)  # fmt: skip
    return {ce_type: re.sub(r"\s*\(.*\)$", "", key) for ce_type, key in rows}


def test_the_guides_inbox_key_table_is_the_fanout_tables() -> None:
    documented = _guide_keys()
    for route in FANOUT:
        as_documented = re.sub(r"\{(\w+)\}", r"<\1>", route.subject)
        if ":" not in as_documented:
            as_documented = f"`{as_documented[1:-1]}`"
        else:
            as_documented = f"`{as_documented}`"
        assert documented[route.inbox_type] == as_documented, route.inbox_type


async def test_a_batch_reads_the_channels_of_all_its_recipients_at_once() -> None:
    """The preload asks, once, for every agency the fan-out table says the batch's events
    notify (a first referral: its provider; a re-routed one: the referrer too)."""
    first = _requested(recipient_agency_id="ngo-first")
    rerouted = _requested(attempt=2, previous_referral_id=str(uuid.uuid4()))
    events = [
        InboundEvent.from_record(
            f.record_of(
                build_event(
                    topic=topics.REFERRAL_EVENTS,
                    key=r.case_id,
                    type_=ev.REFERRAL_REQUESTED,
                    source="urn:referralexchange:service:referral",
                    subject=r.referral_id,
                    data=r,
                )
            )
        ).validated()
        for r in (first, rerouted)
    ]
    store = FakeStore()
    await NotificationHandlers.preload(store, events)  # type: ignore[arg-type]
    assert store.asked == [{"ngo-first", REFERRER, PROVIDER}]
