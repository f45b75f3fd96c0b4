"""Notification's handlers and fan-out table against in-memory stores: no broker, no database.
The real-broker path is covered by the e2e tests (test_walking_skeleton, test_answers,
test_webhooks); these pin the decisions, in milliseconds."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
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
OWNER, RECEIVER = "iom-owner", "gov-labour"  # the parties of a handover


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


def _transitioned(
    to: ev.ReferralState, reason: ReasonCode | None, case_owner: str | None = None
) -> ev.ReferralTransitioned:
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
        case_owner_agency_id=case_owner,
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


# ----- continuity (decision 16): who hears each step of an end of assistance or a handover -----


async def _heard(ce_type: str, payload: ev.Contract) -> list[tuple[str, str, str, dict[str, Any]]]:
    """What the handler writes for one upstream event: (inbox topic, key, ce_type, body), each
    checked to have its key as ce_subject and to be a valid inbox payload."""
    store = FakeStore()
    unit = _unit(ce_type, store)
    await NotificationHandlers(_inbox).notify(payload, unit)
    out = []
    for event in unit.emitted:
        assert event.headers["ce_subject"] == event.key
        assert event.headers["ce_causationid"] == "cause-1"
        body = json.loads(event.body)
        ev.PAYLOADS[event.headers["ce_type"]].model_validate(body)
        out.append((event.topic, event.key, event.headers["ce_type"], body))
    assert [n.agency_id for n in store.recorded] == [t.split(".")[1] for t, *_ in out], (
        "each notice recorded for its agency's channels"
    )
    return out


def _handover_proposed(direction: ev.HandoverDirection) -> ev.HandoverProposed:
    answering = RECEIVER if direction is ev.HandoverDirection.OFFER else OWNER
    return ev.HandoverProposed(
        handover_id=str(uuid.uuid4()),
        case_id=str(uuid.uuid4()),
        direction=direction,
        owner_agency_id=OWNER,
        receiving_agency_id=RECEIVER,
        answering_agency_id=answering,
        reason=ev.HandoverReason.GOVERNMENT_SERVICE,
        respond_by=datetime.now(UTC) + timedelta(days=7),
        message_id=str(uuid.uuid4()),
    )


@pytest.mark.parametrize(
    ("direction", "answering", "other"),
    [
        (ev.HandoverDirection.OFFER, RECEIVER, OWNER),
        (ev.HandoverDirection.REQUEST, OWNER, RECEIVER),
    ],
)
async def test_a_proposed_handover_tells_the_answering_agency_where_to_answer_and_the_other_party(
    direction: ev.HandoverDirection, answering: str, other: str
) -> None:
    proposed = _handover_proposed(direction)
    heard = await _heard(ev.HANDOVER_PROPOSED, proposed)
    assert [(t, k, c) for t, k, c, _ in heard] == [
        (topics.agency_inbox(answering), proposed.handover_id, ev.INBOX_HANDOVER_PROPOSED),
        (topics.agency_inbox(other), proposed.handover_id, ev.INBOX_HANDOVER_PROPOSED),
    ]
    for *_, body in heard:
        # both see the same notice: who it waits on, where and by when it is answered
        assert body["answering_agency_id"] == answering
        assert body["respond_on_topic"] == topics.AGENCY_RESPONSES.name(answering)
        assert datetime.fromisoformat(body["respond_by"]) == proposed.respond_by
        assert (body["owner_agency_id"], body["receiving_agency_id"]) == (OWNER, RECEIVER)
        assert (body["direction"], body["reason"]) == (direction, proposed.reason)
        assert "message_id" not in body, "the proposer's ce_id is not the inbox's business"


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (ev.HandoverState.REJECTED, ev.HandoverDeclineReason.NO_CAPACITY),
        (ev.HandoverState.EXPIRED, None),
    ],
)
async def test_an_ended_handover_tells_both_parties(
    state: ev.HandoverState, reason: ev.HandoverDeclineReason | None
) -> None:
    ended = ev.HandoverEnded(
        handover_id=str(uuid.uuid4()),
        case_id=str(uuid.uuid4()),
        owner_agency_id=OWNER,
        receiving_agency_id=RECEIVER,
        state=state,
        reason=reason,
        occurred_at=datetime.now(UTC),
    )
    heard = await _heard(ev.HANDOVER_ENDED, ended)
    assert [(t, k, c) for t, k, c, _ in heard] == [
        (topics.agency_inbox(party), ended.handover_id, ev.INBOX_HANDOVER_ENDED)
        for party in (OWNER, RECEIVER)
    ]
    for *_, body in heard:
        assert ev.HandoverEnded.model_validate(body) == ended


@pytest.mark.parametrize("about_a_handover", [True, False])
async def test_a_refused_handover_message_is_told_to_its_sender_under_the_message_id(
    about_a_handover: bool,
) -> None:
    refused = ev.HandoverRefused(
        message_id=str(uuid.uuid4()),
        agency_id=RECEIVER,
        case_id=str(uuid.uuid4()) if about_a_handover else None,
        handover_id=str(uuid.uuid4()) if about_a_handover else None,
        error=ev.HandoverError.NOT_PENDING
        if about_a_handover
        else ev.HandoverError.INVALID_MESSAGE,
        state=ev.HandoverState.EXPIRED if about_a_handover else None,
        reason="the handover is no longer pending" if about_a_handover else "not JSON",
    )
    heard = await _heard(ev.HANDOVER_REFUSED, refused)
    assert [(t, k, c) for t, k, c, _ in heard] == [
        (topics.agency_inbox(RECEIVER), refused.message_id, ev.INBOX_HANDOVER_REFUSED)
    ]
    assert ev.HandoverRefused.model_validate(heard[0][3]) == refused


async def test_a_case_handed_over_tells_the_previous_and_the_new_owner_under_the_case_id() -> None:
    moved = ev.CaseHandedOver(
        handover_id=str(uuid.uuid4()),
        case_id=str(uuid.uuid4()),
        from_agency_id=OWNER,
        to_agency_id=RECEIVER,
        to_agency_case_ref="MOL-2026-7",
        handed_over_at=datetime.now(UTC),
    )
    heard = await _heard(ev.CASE_HANDED_OVER, moved)
    assert [(t, k, c) for t, k, c, _ in heard] == [
        (topics.agency_inbox(party), moved.case_id, ev.INBOX_CASE_HANDED_OVER)
        for party in (OWNER, RECEIVER)
    ]
    for *_, body in heard:
        assert ev.CaseHandedOver.model_validate(body) == moved


async def test_a_failed_handover_tells_both_parties_why() -> None:
    failed = ev.HandoverFailed(
        handover_id=str(uuid.uuid4()),
        case_id=str(uuid.uuid4()),
        from_agency_id=OWNER,
        to_agency_id=RECEIVER,
        reason=ev.HandoverFailureReason.AGENCY_NOT_COVERED,
    )
    heard = await _heard(ev.HANDOVER_FAILED, failed)
    assert [(t, k, c) for t, k, c, _ in heard] == [
        (topics.agency_inbox(party), failed.handover_id, ev.INBOX_HANDOVER_FAILED)
        for party in (OWNER, RECEIVER)
    ]
    for *_, body in heard:
        assert ev.HandoverFailed.model_validate(body) == failed


async def test_a_handed_over_cases_sealed_data_goes_to_the_new_owner_only() -> None:
    sealed = ev.CaseDataSealed(
        disclosure_id=str(uuid.uuid4()),
        handover_id=str(uuid.uuid4()),
        case_id=str(uuid.uuid4()),
        recipient_agency_id=RECEIVER,
        sealed_box="U0VBTEVE",
        recipient_key_sha256="0" * 64,
        consent_recorded_at=datetime.now(UTC) - timedelta(days=1),
    )
    heard = await _heard(ev.CASE_DATA_SEALED, sealed)
    assert [(t, k, c) for t, k, c, _ in heard] == [
        (topics.agency_inbox(RECEIVER), sealed.handover_id, ev.INBOX_CASE_DATA_RECEIVED)
    ]
    assert ev.CaseDataSealed.model_validate(heard[0][3]) == sealed


@pytest.mark.parametrize("cause", list(ev.ContinuationCause))
async def test_a_provider_hears_its_referral_continues_and_who_owns_the_case(
    cause: ev.ContinuationCause,
) -> None:
    continues = ev.SupportContinues(
        referral_id=str(uuid.uuid4()),
        case_id=str(uuid.uuid4()),
        need_id="n1",
        recipient_agency_id=PROVIDER,
        owner_agency_id=RECEIVER if cause is ev.ContinuationCause.CASE_HANDED_OVER else OWNER,
        cause=cause,
        assistance_end_reason=(
            ev.AssistanceEndReason.BUDGET_ENDED
            if cause is ev.ContinuationCause.ASSISTANCE_ENDED
            else None
        ),
        occurred_at=datetime.now(UTC),
    )
    heard = await _heard(ev.SUPPORT_CONTINUES, continues)
    assert [(t, k, c) for t, k, c, _ in heard] == [
        (topics.agency_inbox(PROVIDER), continues.referral_id, ev.INBOX_SUPPORT_CONTINUES)
    ]
    assert ev.SupportContinues.model_validate(heard[0][3]) == continues


async def test_next_owners_are_proposed_to_the_owner_under_the_case_id() -> None:
    proposed = ev.ContinuityProposed(
        case_id=str(uuid.uuid4()),
        owner_agency_id=OWNER,
        open_need_ids=["n1", "n2"],
        candidates=[
            ev.ContinuityCandidate(
                agency_id=RECEIVER,
                agency_type=ev.AgencyType.GOVERNMENT,
                service_id="mol-jobs",
                explanation=ev.MatchExplanation(
                    matched=["category", "area"], score=0.5, components={"categories": 0.5}
                ),
            )
        ],
    )
    heard = await _heard(ev.CONTINUITY_PROPOSED, proposed)
    assert [(t, k, c) for t, k, c, _ in heard] == [
        (topics.agency_inbox(OWNER), proposed.case_id, ev.INBOX_CONTINUITY_PROPOSED)
    ]
    assert ev.ContinuityProposed.model_validate(heard[0][3]) == proposed


def test_an_end_of_assistance_and_an_accepted_handover_are_told_by_what_follows() -> None:
    """Silent by decision: the owner hears its end of assistance as submission-accepted and its
    providers support-continues; an accepted handover's parties hear case-handed-over or
    handover-failed once intake has moved the case (or not)."""
    assert {ev.ASSISTANCE_ENDED, ev.HANDOVER_ACCEPTED} <= SILENT
    ended = ev.AssistanceEnded(
        case_id=str(uuid.uuid4()),
        owner_agency_id=OWNER,
        reason=ev.AssistanceEndReason.PROGRAMME_ENDED,
        ended_at=datetime.now(UTC),
    )
    accepted = ev.HandoverAccepted(
        handover_id=str(uuid.uuid4()),
        case_id=str(uuid.uuid4()),
        owner_agency_id=OWNER,
        receiving_agency_id=RECEIVER,
        receiving_case_ref="MOL-2026-7",
    )
    assert notices(ev.ASSISTANCE_ENDED, ended) == []
    assert notices(ev.HANDOVER_ACCEPTED, accepted) == []


@pytest.mark.parametrize(
    ("to", "reason"),
    [(ev.ReferralState.COMPLETED, None), (ev.ReferralState.CANCELLED, ReasonCode.DUPLICATE)],
)
def test_after_a_handover_the_new_owner_hears_the_referrals_progress(
    to: ev.ReferralState, reason: ReasonCode | None
) -> None:
    before = notices(ev.REFERRAL_TRANSITIONED, _transitioned(to, reason))
    after = notices(ev.REFERRAL_TRANSITIONED, _transitioned(to, reason, case_owner=RECEIVER))
    status = [n.agency_id for n in after if n.inbox_type == ev.INBOX_STATUS_CHANGED]
    assert [n.agency_id for n in before if n.inbox_type == ev.INBOX_STATUS_CHANGED] == [REFERRER]
    assert status == [RECEIVER], "the case's current owner, not the agency that referred"
    # the provider's notices do not depend on who owns the case
    assert [(n.agency_id, n.inbox_type) for n in after if n.agency_id == PROVIDER] == [
        (n.agency_id, n.inbox_type) for n in before if n.agency_id == PROVIDER
    ]
    (changed,) = (n for n in after if n.inbox_type == ev.INBOX_STATUS_CHANGED)
    assert changed.data.recipient_agency_id == PROVIDER  # type: ignore[attr-defined]
