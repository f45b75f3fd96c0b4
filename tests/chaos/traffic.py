"""What the chaos run sends and answers, as agencies would: registered agencies with their own
credentials, listings, a stream of case submissions, providers answering the referrals they
receive (accept then complete, reject, accept only, or no answer), referrers that end their
assistance on some cases and hand them over to a government successor (which accepts or
rejects), poison records, and an HTTP receiver for the agencies' webhooks."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from nacl.public import PrivateKey

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import OutgoingEvent, build_event
from shared.contracts.messages import agency_source, instruction_message, response_message
from shared.kafka.connection import KafkaConnection
from tests import factories as f
from tests.e2e.kafka_helpers import register_agency_access

from .processes import REPO

MATCHED = "psychosocial.counselling"  # listed by every provider of the run
UNMATCHED = "economic.vocational_training"  # listed by none: the need-unmatched path


_ANSWERS = ("complete",) * 4 + ("reject",) * 2 + ("accept",) + ("silent",) * 3


def _share(identifier: str, every: int) -> bool:
    """One identifier in ``every``, the same for every redelivery of it."""
    return int(identifier.replace("-", "")[-8:], 16) % every == 0


def hands_over(case_id: str) -> bool:
    """Whether the referrer ends its assistance on a case and offers it to the successor: one
    case in four."""
    return _share(case_id, 4)


def is_community_need(n: int) -> bool:
    """Whether the ``n``-th submission of the stream is a community need: one in ten."""
    return n % 10 == 5


def narrows_consent(case_id: str) -> bool:
    """Whether the referrer narrows the case's consent to the category nobody lists (so every
    referral of MATCHED must end): one case in five of those not handed over."""
    return _share(case_id, 5) and not hands_over(case_id)


def successor_accepts(handover_id: str) -> bool:
    """How the successor answers a handover: two in three accepted, the rest rejected."""
    return not _share(handover_id, 3)


def decision(referral_id: str) -> str:
    """How a provider answers a referral (the same for every redelivery of it): 40 % accept
    and complete, 20 % reject, 10 % accept only, 30 % no answer (the referral expires)."""
    return _ANSWERS[int(referral_id.replace("-", ""), 16) % len(_ANSWERS)]


# Where a message landed on an agency's submissions topic: (topic, partition, offset).
Position = tuple[str, int, int]


@dataclass
class Agency:
    agency_id: str
    connection: KafkaConnection
    producer: AIOKafkaProducer | None = None
    # The ce_id of every message it wrote on its submissions topic, by where it landed: what
    # the trimming invariant holds against the partitions' log start (issue 22).
    positions: dict[Position, str] = field(default_factory=dict)

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(
            **self.connection.client_kwargs(), acks="all", enable_idempotence=True, linger_ms=5
        )
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    def message(
        self, family: topics.TopicFamily, key: str, type_: str, data: ev.Contract
    ) -> OutgoingEvent:
        """A message of this agency on its own topic of ``family`` (the topic is its signature)."""
        return build_event(
            topic=family.name(self.agency_id),
            key=key,
            type_=type_,
            source=agency_source(self.agency_id),
            data=data,
            agency_id=self.agency_id,
        )

    async def publish(self, event: OutgoingEvent) -> None:
        """Send until the broker takes it (it may be restarting): the same event, the same
        ce_id, so a resend after an unknown outcome is de-duplicated downstream."""
        assert self.producer is not None
        while True:
            try:
                landed = await self.producer.send_and_wait(
                    event.topic,
                    event.body,
                    key=event.key.encode(),
                    headers=[(k, v.encode()) for k, v in event.headers.items()],
                )
            except KafkaError:
                # Written or not: a copy that landed has the same ce_id, which the
                # invariants follow (its position alone is not known).
                await asyncio.sleep(1)
                continue
            if topics.AGENCY_SUBMISSIONS.agency_of(event.topic) is not None:
                self.positions[(event.topic, landed.partition, landed.offset)] = event.event_id
            return


@dataclass
class World:
    area: str
    referrers: list[Agency]
    providers: list[Agency]
    webhook_agencies: list[str]
    # A government agency with a key: the referrers hand some of their cases over to it.
    successor: Agency | None = None

    @property
    def agencies(self) -> list[Agency]:
        return [*self.referrers, *self.providers, *([self.successor] if self.successor else [])]


async def build_world(
    kafka: KafkaConnection, receiver_url: str, *, referrers: int, providers: int
) -> World:
    """Agencies registered as an operator does, each provider listing MATCHED in one district
    of its own run, and webhooks for one referrer and one provider."""
    area = f.unique_area("SN")
    made = []
    for prefix, count in (("chaos-ref", referrers), ("chaos-pro", providers)):
        for _ in range(count):
            agency_id = f.unique(prefix)
            agency = Agency(agency_id, await register_agency_access(kafka, agency_id))
            await agency.start()
            made.append(agency)
    successor_id = f.unique("chaos-gov")
    successor = Agency(successor_id, await register_agency_access(kafka, successor_id))
    await successor.start()
    world = World(area, made[:referrers], made[referrers:], [], successor)
    admin = Agency("operators", kafka)
    await admin.start()
    try:
        for agency in world.referrers:
            await admin.publish(f.agency_event(f.agency(agency.agency_id)))
        # Providers have a key: their referrals' contact details are sealed to them, and they
        # confirm erasing them when a referral is revoked.
        for agency in world.providers:
            record = f.agency(agency.agency_id).model_copy(update={"public_key": _new_key()})
            await admin.publish(f.agency_event(record))
        key = _new_key()
        await admin.publish(
            f.agency_event(
                ev.AgencyRecord(
                    agency_id=successor_id,
                    name=successor_id,
                    type=ev.AgencyType.GOVERNMENT,
                    countries=["SN"],
                    public_key=key,
                )
            )
        )
    finally:
        await admin.stop()
    # Every provider also runs its service for the community (the community needs of the
    # stream go the same way as the returnees' needs).
    listings = {
        p.agency_id: f.listing(
            p.agency_id,
            categories=[MATCHED],
            service_areas=[area],
            levels=["individual", "community"],
            eligibility={"beneficiary_types": ["returnee", "community_member"]},
        )
        for p in world.providers
    }
    # The webhook provider is the one matching ranks first among equals (the lowest service_id):
    # with more providers than attempts, the last in rank may never receive a referral, and the
    # webhook check would then examine nothing.
    first_in_rank = min(listings, key=lambda a: listings[a].service_id)
    world.webhook_agencies = [world.referrers[0].agency_id, first_in_rank]
    for agency_id in world.webhook_agencies:
        add_webhook(agency_id, f"{receiver_url}/{agency_id}")
    # After the webhooks: the answer to each listing reaches the provider's webhook too (an
    # inbox event queued before its agency had a webhook never goes there).
    for provider in world.providers:
        await provider.publish(f.listing_event(listings[provider.agency_id]))
    return world


def _new_key() -> str:
    return base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()


def add_webhook(agency_id: str, url: str) -> None:
    refex = Path(sys.executable).parent / "refex"
    subprocess.run(
        [str(refex), "notification", "add-webhook", agency_id, url],
        cwd=REPO,
        env={**os.environ, "NOTIFICATION_ALLOW_PRIVATE_WEBHOOK_TARGETS": "true"},
        check=True,
        capture_output=True,
    )


def community_need(world: World, rng: random.Random) -> ev.CommunityNeedSubmission:
    referrer = rng.choice(world.referrers)
    return ev.CommunityNeedSubmission(
        agency_id=referrer.agency_id,
        agency_case_ref=f.unique("community"),
        area=world.area,
        category=rng.choices([MATCHED, UNMATCHED], weights=[4, 1])[0],
        people_affected=rng.randint(5, 500),
        returnee_share=0.25,
        description="Chaos run: a community need (no person).",
    )


def community_message(need: ev.CommunityNeedSubmission) -> OutgoingEvent:
    return build_event(
        topic=topics.AGENCY_SUBMISSIONS.name(need.agency_id),
        key=need.agency_case_ref,
        type_=ev.COMMUNITY_NEED_SUBMITTED,
        source=agency_source(need.agency_id),
        data=need,
        agency_id=need.agency_id,
    )


def submission(world: World, rng: random.Random) -> ev.CaseSubmission:
    referrer = rng.choice(world.referrers)
    categories = rng.choices([MATCHED, UNMATCHED], weights=[4, 1], k=rng.randint(1, 3))
    return f.submission(
        referrer.agency_id,
        profile=f.profile(return_area=world.area),
        needs=[{"need_id": f"n{i}", "category": c} for i, c in enumerate(categories, 1)],
    )


@dataclass
class Sent:
    submissions: dict[str, ev.CaseSubmission] = field(default_factory=dict)  # by ce_id
    poison_ids: set[str] = field(default_factory=set)
    answers: Counter[str] = field(default_factory=Counter)
    decisions: dict[str, str] = field(default_factory=dict)
    # Every answer a provider sent: its ce_id → (referral id, action).
    responses: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Continuity (by ce_id): ends of assistance and handover proposals → case id; the
    # successor's answers → (handover id, action).
    assistance_ends: dict[str, str] = field(default_factory=dict)
    proposals: dict[str, str] = field(default_factory=dict)
    handover_answers: dict[str, tuple[str, str]] = field(default_factory=dict)
    followed: set[str] = field(default_factory=set)  # cases and handovers acted on once
    # Issue 18 (by ce_id): community needs; the referrers' revocations → referral id; the
    # successor's commitments on structural gaps → report id.
    community: dict[str, ev.CommunityNeedSubmission] = field(default_factory=dict)
    revokes: dict[str, str] = field(default_factory=dict)
    erasures: dict[str, str] = field(default_factory=dict)  # providers' confirmations
    narrowings: dict[str, str] = field(default_factory=dict)  # consent narrowed → case id
    commitments: dict[str, str] = field(default_factory=dict)

    @property
    def community_refs(self) -> set[str]:
        return {c.agency_case_ref for c in self.community.values()}


def poison(rng: random.Random) -> OutgoingEvent:
    """A record on referral.events.v1 whose body is not the payload its ce_type says: intake
    and notification must dead-letter it with the reason and go on."""
    event = build_event(
        topic=topics.REFERRAL_EVENTS,
        key=f"poison-{rng.randrange(10**9)}",
        type_=ev.REFERRAL_TRANSITIONED,
        source="urn:referralexchange:chaos",
        data=f.agency("poison"),
    )
    return OutgoingEvent(event.topic, event.key, event.headers, b'{"poison": true}')


async def stream(
    world: World,
    kafka: KafkaConnection,
    sent: Sent,
    *,
    count: int,
    rate_per_s: float,
    poison_every: int,
    seed: int,
) -> None:
    rng = random.Random(seed)
    admin = Agency("operators", kafka)
    await admin.start()
    try:
        for n in range(count):
            if is_community_need(n):
                need = community_need(world, rng)
                event = community_message(need)
                sent.community[event.event_id] = need
                sender = need.agency_id
            else:
                case = submission(world, rng)
                event = f.submission_event(case)
                sent.submissions[event.event_id] = case
                sender = case.agency_id
            referrer = next(a for a in world.referrers if a.agency_id == sender)
            await referrer.publish(event)
            if poison_every and n % poison_every == poison_every - 1:
                bad = poison(rng)
                sent.poison_ids.add(bad.event_id)
                await admin.publish(bad)
            await asyncio.sleep(1 / rate_per_s)
    finally:
        await admin.stop()


async def respond(world: World, sent: Sent, stop: asyncio.Event) -> None:
    """Every provider answers what reaches its inbox, every referrer follows its cases (ending
    its assistance and proposing a handover on some), the successor answers handovers: each
    with its own credentials and group."""
    followers = [_follow(p, sent, stop, _provide) for p in world.providers]
    if world.successor is not None:
        to_successor = functools.partial(_follow_cases, world.successor.agency_id)
        followers += [_follow(r, sent, stop, to_successor) for r in world.referrers]
        followers.append(_follow(world.successor, sent, stop, _govern))
    await asyncio.gather(*followers)


async def _follow(
    agency: Agency,
    sent: Sent,
    stop: asyncio.Event,
    act: Callable[[Agency, Sent, bytes, Any], Awaitable[None]],
) -> None:
    """Read the agency's inbox until ``stop``, calling ``act(agency, sent, value, headers)``
    for each record (again after a broker restart: from the group's last commit)."""
    inbox = topics.agency_inbox(agency.agency_id)
    while not stop.is_set():
        consumer = AIOKafkaConsumer(
            inbox,
            **agency.connection.client_kwargs(),
            group_id=f"agency.{agency.agency_id}.responder",
            auto_offset_reset="earliest",
            enable_auto_commit=True,
        )
        try:
            await consumer.start()
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        await act(agency, sent, record.value or b"{}", record.headers)
        except KafkaError:
            await asyncio.sleep(1)  # the broker is restarting: read again from the commit
        finally:
            await consumer.stop()


async def _provide(provider: Agency, sent: Sent, value: bytes, headers: Any) -> None:
    """A provider: answers referrals, confirms erasing what a cancelled one gave it."""
    await _answer(provider, sent, value, headers)
    await _confirm_erasure(provider, sent, value, headers)


async def _confirm_erasure(provider: Agency, sent: Sent, value: bytes, headers: Any) -> None:
    """Told to stop and erase, the provider confirms it erased what it received. The
    cancellation may overtake the referral's disclosure (they travel on different topics): a
    disclosure that comes for a referral it was told to erase is erased too, and confirmed
    again (the first confirmation was refused: nothing had been disclosed yet)."""
    ce_type = dict(headers or ()).get("ce_type", b"").decode()
    body = json.loads(value) if ce_type else {}
    referral_id = body.get("referral_id")
    if ce_type == ev.INBOX_REFERRAL_CANCELLED and body.get("erase_received_data"):
        if f"erase:{referral_id}" in sent.followed:
            return
        sent.followed.add(f"erase:{referral_id}")
    elif ce_type == ev.INBOX_DISCLOSURE_RECEIVED and f"erase:{referral_id}" in sent.followed:
        if f"erase-late:{referral_id}" in sent.followed:
            return
        sent.followed.add(f"erase-late:{referral_id}")
    else:
        return
    message = provider.message(
        topics.AGENCY_SUBMISSIONS,
        referral_id,
        ev.ERASURE_CONFIRMATION_SUBMITTED,
        ev.ErasureConfirmation(
            agency_id=provider.agency_id,
            referral_id=referral_id,
            erased_at=datetime.now(UTC) - timedelta(seconds=1),
        ),
    )
    sent.erasures[message.event_id] = referral_id
    await provider.publish(message)


async def _answer(provider: Agency, sent: Sent, value: bytes, headers: Any) -> None:
    """A provider answers each referral it receives, once, as ``decision`` says."""
    ce_type = dict(headers or ()).get("ce_type", b"").decode()
    if ce_type != ev.INBOX_REFERRAL_RECEIVED:
        return
    received = json.loads(value)
    referral_id, case_id = received["referral_id"], received["case_id"]
    if referral_id in sent.decisions:
        return  # a redelivery: answered already
    kind = decision(referral_id)
    sent.decisions[referral_id] = kind
    actions: list[tuple[str, dict[str, str]]] = {
        "complete": [("accept", {}), ("complete", {"outcome": "achieved"})],
        "reject": [("reject", {"reason_code": "at_capacity"})],
        "accept": [("accept", {})],
        "silent": [],
    }[kind]
    for action, extra in actions:
        response = ev.ReferralResponse.model_validate(
            {
                "referral_id": referral_id,
                "agency_id": provider.agency_id,
                "action": action,
                "responded_at": datetime.now(UTC).isoformat(),
                **extra,
            }
        )
        message = response_message(response, case_id)
        sent.responses[message.event_id] = (referral_id, action)
        await provider.publish(message)
        sent.answers[action] += 1


async def _follow_cases(
    successor_id: str, referrer: Agency, sent: Sent, value: bytes, headers: Any
) -> None:
    """A referrer: hands some cases over, revokes what a provider accepted and left."""
    await _continue_or_not(successor_id, referrer, sent, value, headers)
    await _narrow_consent(referrer, sent, value, headers)
    await _revoke_stalled(referrer, sent, value, headers)


async def _narrow_consent(referrer: Agency, sent: Sent, value: bytes, headers: Any) -> None:
    """On some newly registered cases the returnee narrows the consent to UNMATCHED only: the
    referrals of MATCHED it no longer covers are cancelled (their providers told to erase)."""
    ce_type = dict(headers or ()).get("ce_type", b"").decode()
    if ce_type != ev.INBOX_SUBMISSION_ACCEPTED:
        return
    accepted = json.loads(value)
    case_id, ref = accepted["case_id"], accepted["agency_case_ref"]
    if accepted["outcome"] != "registered" or ref in sent.community_refs:
        return
    if not narrows_consent(case_id) or f"narrow:{case_id}" in sent.followed:
        return
    sent.followed.add(f"narrow:{case_id}")
    update = ev.CaseUpdate.model_validate(
        {
            "agency_id": referrer.agency_id,
            "agency_case_ref": ref,
            "consent": f.consent(
                scope={
                    "purposes": ["referral", "follow_up", "statistics"],
                    "categories": [UNMATCHED],
                },
                recorded_at=(datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
            ),
        }
    )
    message = referrer.message(
        topics.AGENCY_SUBMISSIONS,
        ref,
        ev.CASE_UPDATE_SUBMITTED,
        update,
    )
    sent.narrowings[message.event_id] = case_id
    await referrer.publish(message)


async def _revoke_stalled(referrer: Agency, sent: Sent, value: bytes, headers: Any) -> None:
    """A referral its provider accepted and will not go on with (``decision`` accept): the
    referrer revokes it, once (the provider is told to stop and erase)."""
    ce_type = dict(headers or ()).get("ce_type", b"").decode()
    if ce_type != ev.INBOX_STATUS_CHANGED:
        return
    changed = json.loads(value)
    referral_id = changed["referral_id"]
    if changed["to_state"] != "accepted" or decision(referral_id) != "accept":
        return
    if f"revoke:{referral_id}" in sent.followed:
        return
    sent.followed.add(f"revoke:{referral_id}")
    message = instruction_message(
        ev.ReferrerInstruction(
            case_id=changed["case_id"],
            agency_id=referrer.agency_id,
            action=ev.InstructionAction.REVOKE,
            referral_id=referral_id,
        )
    )
    sent.revokes[message.event_id] = referral_id
    await referrer.publish(message)


async def _continue_or_not(
    successor_id: str, referrer: Agency, sent: Sent, value: bytes, headers: Any
) -> None:
    """On some newly registered cases: end the referrer's assistance, then offer the case to
    the successor."""
    ce_type = dict(headers or ()).get("ce_type", b"").decode()
    if ce_type != ev.INBOX_SUBMISSION_ACCEPTED:
        return
    accepted = json.loads(value)
    case_id, ref = accepted["case_id"], accepted["agency_case_ref"]
    if accepted["outcome"] != "registered" or not hands_over(case_id) or case_id in sent.followed:
        return
    if ref in sent.community_refs:  # a community need has no owner to hand over
        return
    sent.followed.add(case_id)
    end = referrer.message(
        topics.AGENCY_SUBMISSIONS,
        ref,
        ev.ASSISTANCE_END_SUBMITTED,
        ev.AssistanceEnd(
            agency_id=referrer.agency_id,
            agency_case_ref=ref,
            ended_at=datetime.now(UTC) - timedelta(seconds=1),
            reason=ev.AssistanceEndReason.PROGRAMME_ENDED,
        ),
    )
    sent.assistance_ends[end.event_id] = case_id
    await referrer.publish(end)
    proposal = referrer.message(
        topics.AGENCY_RESPONSES,
        case_id,
        ev.HANDOVER_PROPOSAL_SUBMITTED,
        ev.HandoverProposal(
            case_id=case_id,
            agency_id=referrer.agency_id,
            to_agency_id=successor_id,
            reason=ev.HandoverReason.GOVERNMENT_SERVICE,
            respond_by=datetime.now(UTC) + timedelta(days=1),
        ),
    )
    sent.proposals[proposal.event_id] = case_id
    await referrer.publish(proposal)


async def _govern(successor: Agency, sent: Sent, value: bytes, headers: Any) -> None:
    """The government successor: takes cases over, commits on the structural gaps it hears of."""
    await _take_over(successor, sent, value, headers)
    await _commit(successor, sent, value, headers)


async def _commit(successor: Agency, sent: Sent, value: bytes, headers: Any) -> None:
    """Each structural gap reported to the successor gets a commitment, once: a listing
    planned for a month from now."""
    ce_type = dict(headers or ()).get("ce_type", b"").decode()
    if ce_type != ev.INBOX_STRUCTURAL_GAP_REPORTED:
        return
    report_id = json.loads(value)["report_id"]
    if f"report:{report_id}" in sent.followed:
        return
    sent.followed.add(f"report:{report_id}")
    commitment = ev.StructuralCommitment.model_validate(
        {
            "report_id": report_id,
            "agency_id": successor.agency_id,
            "commitment": {
                "kind": "planned_listing",
                "planned_by": (datetime.now(UTC) + timedelta(days=30)).date().isoformat(),
            },
        }
    )
    message = successor.message(
        topics.AGENCY_RESPONSES,
        report_id,
        ev.STRUCTURAL_COMMITMENT_SUBMITTED,
        commitment,
    )
    sent.commitments[message.event_id] = report_id
    await successor.publish(message)


async def _take_over(successor: Agency, sent: Sent, value: bytes, headers: Any) -> None:
    """The successor answers each handover offered to it, once."""
    ce_type = dict(headers or ()).get("ce_type", b"").decode()
    if ce_type != ev.INBOX_HANDOVER_PROPOSED:
        return
    offer = json.loads(value)
    handover_id, case_id = offer["handover_id"], offer["case_id"]
    if offer["answering_agency_id"] != successor.agency_id or handover_id in sent.followed:
        return
    sent.followed.add(handover_id)
    accept = successor_accepts(handover_id)
    answer = ev.HandoverAnswer(
        handover_id=handover_id,
        case_id=case_id,
        agency_id=successor.agency_id,
        action=ev.HandoverAction.ACCEPT if accept else ev.HandoverAction.REJECT,
        agency_case_ref=f"gov:{handover_id}" if accept else None,
        reason=None if accept else ev.HandoverDeclineReason.NO_CAPACITY,
    )
    message = successor.message(
        topics.AGENCY_RESPONSES,
        case_id,
        ev.HANDOVER_ANSWER_SUBMITTED,
        answer,
    )
    sent.handover_answers[message.event_id] = (handover_id, answer.action.value)
    await successor.publish(message)


@dataclass
class WebhookReceiver:
    """Records every delivery: webhook-id, and the event's id and type from the body."""

    port: int
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        document = json.loads(body or b"{}")
        self.deliveries.append(
            {
                "agency": scope["path"].strip("/"),
                "webhook_id": headers.get("webhook-id", ""),
                "id": document.get("id"),
                "type": document.get("type"),
                "data": document.get("data") or {},
            }
        )
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def serve(self) -> uvicorn.Server:
        server = uvicorn.Server(
            uvicorn.Config(
                self, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
            )
        )
        asyncio.get_running_loop().create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
            await asyncio.sleep(0.05)
        return server
