"""The invariants, checked from outside the services: only topics (read as the operator) and
what the webhook receiver got. Redeliveries of one event (same ce_id, same webhook-id) are
at-least-once and fine; two *different* events for one effect are a duplicated side effect."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.referral.settings import ReferralSettings
from shared.contracts import events as ev
from shared.contracts import topics
from shared.kafka.connection import KafkaConnection
from shared.kafka.offsets import beginning_offsets
from shared.kafka.offsets import end_offsets as partition_end_offsets

from .traffic import UNMATCHED, Sent, World

# The referral service's defaults: the run leaves them as they are.
STRUCTURAL_THRESHOLD: int = ReferralSettings.model_fields["structural_threshold"].default
STRUCTURAL_DISTRICT_DIGITS: int = ReferralSettings.model_fields[
    "structural_district_digits"
].default

Record = ConsumerRecord[bytes, bytes]
GROUPS = ("intake", "referral", "notification")


def headers(record: Record) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in record.headers or ()}


def data(record: Record) -> dict[str, Any]:
    try:
        value = json.loads(record.value or b"null")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def end_offsets(kafka: KafkaConnection, names: Iterable[str]) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        described = await admin.describe_topics(sorted(names))
    finally:
        await admin.close()
    partitions = [
        TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]
    ]
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    await consumer.start()
    try:
        return await partition_end_offsets(consumer, partitions)
    finally:
        await consumer.stop()


async def read_between(
    kafka: KafkaConnection,
    starts: dict[TopicPartition, int],
    until: dict[TopicPartition, int] | None = None,
) -> dict[str, list[Record]]:
    """Every record from ``starts`` to ``until`` (default: the current end) of each partition."""
    ends = await end_offsets(kafka, {tp.topic for tp in starts})
    ends.update(until or {})
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    await consumer.start()
    found: dict[str, list[Record]] = defaultdict(list)
    try:
        wanted = {tp: end for tp, end in ends.items() if end > starts.get(tp, 0)}
        consumer.assign(list(wanted))
        for tp in wanted:
            consumer.seek(tp, starts.get(tp, 0))
        while wanted:
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                # A fetch may bring records past ``until`` (what was written since): they are
                # not this check's, or their effects downstream would be missed as lost.
                end = ends.get(tp)
                found[tp.topic].extend(r for r in records if end is None or r.offset < end)
            wanted = {tp: e for tp, e in wanted.items() if await consumer.position(tp) < e}
    finally:
        await consumer.stop()
    return found


def consumed_by(group: str, names: Iterable[str]) -> set[str]:
    """Which of these topics the service's group consumes, by the catalogue."""
    owner = topics.Owner(group)
    out = set()
    for name in names:
        try:
            spec = topics.spec(name)
        except KeyError:
            continue
        if owner in spec.consumers:
            out.add(name)
    return out


async def lag(kafka: KafkaConnection, watched: set[str]) -> dict[str, int]:
    """Per service group: records of the ``watched`` topics it consumes (the run's own; asking
    the broker about every topic earlier tests left behind takes half a minute) that it has not
    committed. A partition the group never committed counts from its log start: a topic nobody
    consumed is all lag, not none."""
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        committed = {
            g: {
                tp: meta.offset
                for tp, meta in (await admin.list_consumer_group_offsets(g)).items()
                if tp.topic in watched
            }
            for g in GROUPS
        }
        described = await admin.describe_topics(sorted(watched))
    finally:
        await admin.close()
    partitions = {
        t["topic"]: [TopicPartition(t["topic"], p["partition"]) for p in t["partitions"]]
        for t in described
    }
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    await consumer.start()
    try:
        every = [tp for tps in partitions.values() for tp in tps]
        ends = await partition_end_offsets(consumer, every) if every else {}
        starts = await beginning_offsets(consumer, every) if every else {}
    finally:
        await consumer.stop()
    out: dict[str, int] = {}
    for g in GROUPS:
        mine = [tp for name in consumed_by(g, partitions) for tp in partitions[name]]
        out[g] = sum(
            max(ends.get(tp, 0) - committed[g].get(tp, starts.get(tp, 0)), 0) for tp in mine
        )
    return out


async def wait_for_zero_lag(
    kafka: KafkaConnection, watched: set[str], timeout_s: float, stalled_s: float = 60.0
) -> dict[str, int]:
    """Until no group has lag, the timeout, or ``stalled_s`` without the total lag ever going
    below its lowest so far: a group that consumes nothing (a service that never reads a
    topic) is reported at once as lag, instead of waiting out the whole timeout."""
    clock = asyncio.get_running_loop().time
    deadline = clock() + timeout_s
    lowest, lowest_at = None, clock()
    while True:
        current = await lag(kafka, watched)
        total = sum(current.values())
        if lowest is None or total < lowest:
            lowest, lowest_at = total, clock()
        if not total or clock() > deadline or clock() - lowest_at > stalled_s:
            return current
        await asyncio.sleep(2)


# Every family of checks, each of which must have examined at least one effect: a check that
# examined nothing proves nothing (a run whose traffic never reached a stage passes it by
# silence).
FAMILIES = (
    "case",
    "submission-accepted",
    "need",
    "answer applied or refused",
    "re-route or gap after rejection",
    "re-route or gap after expiry",
    "referral",
    "disclosure decision",
    "referral-received (inbox)",
    "referral-received (webhook)",
    "need-unmatched (inbox)",
    "poison dead letter",
    "assistance end",
    "handover proposal",
    "handover answer",
    "handover moved or failed",
    "case data sealed",
    "support-continues",
    "community need",
    "revocation answered",
    "revoked referral cancelled",
    "structural gap report",
    "structural gap (inbox)",
    "structural commitment answered",
    "erasure confirmation answered",
    "erasure heard by the owner",
    "consent narrowing answered",
    "referral no longer covered ended",
    "trimmed submission applied",
    "trimming watched",
)


@dataclass
class Findings:
    checked: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAMILIES, 0))
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)

    def count(self, family: str, n: int = 1) -> None:
        assert family in FAMILIES, family
        self.checked[family] = self.checked.get(family, 0) + n

    @property
    def unexamined(self) -> list[str]:
        """The families of checks that examined nothing."""
        return [f for f in FAMILIES if not self.checked.get(f)]


@dataclass(frozen=True)
class Trimming:
    """What the run left of the agencies' submissions partitions (issue 22): each one's log
    start after the run, what intake's group had committed then, the ce_id of each message
    the agencies wrote, by where it landed (those sent before the groups settled), and what
    :func:`watch_trimming` saw while the run went on."""

    starts: dict[TopicPartition, int]
    committed: dict[TopicPartition, int]
    positions: dict[tuple[str, int, int], str]
    watched: TrimWatch


@dataclass
class TrimWatch:
    """Samples of the submissions partitions taken during the run: how many found a partition
    trimmed, and each time one was found trimmed past intake's commit."""

    samples: int = 0
    trimmed_samples: int = 0
    past_commit: list[str] = field(default_factory=list)


def past_commit(
    starts: dict[TopicPartition, int], committed: dict[TopicPartition, int]
) -> list[str]:
    """Each partition whose log start is past what intake's group committed. Only partitions
    the commits name are judged: a group coordinator still loading answers with none at all
    (aiokafka then returns an empty map), which says nothing of what was trimmed."""
    return [
        f"{tp.topic}/{tp.partition} trimmed to {starts[tp]}, past intake's commit {offset}"
        for tp, offset in sorted(committed.items())
        if tp in starts and starts[tp] > offset
    ]


async def watch_trimming(
    kafka: KafkaConnection, names: list[str], watch: TrimWatch, stop: asyncio.Event
) -> None:
    """Until ``stop``: twice a second, each submissions partition's log start, then intake's
    commits. A commit only grows, so a start read before a commit and past it was past it when
    the partition was trimmed: the trim overtook what intake had applied. At the end of a run
    every commit is at the end and no such start can be seen any more; only while records are
    still to apply can it be."""
    while not stop.is_set():
        consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
        admin = AIOKafkaAdminClient(**kafka.client_kwargs())
        try:
            await consumer.start()
            await admin.start()
            partitions = list(await end_offsets(kafka, names))
            while not stop.is_set():
                starts = await beginning_offsets(consumer, partitions)
                offsets = await admin.list_consumer_group_offsets("intake")
                committed = {tp: m.offset for tp, m in offsets.items() if tp in starts}
                if committed:  # none: the coordinator is loading (a broker restart)
                    watch.samples += 1
                    watch.trimmed_samples += any(starts[tp] for tp in committed)
                    watch.past_commit += past_commit(starts, committed)
                await asyncio.sleep(0.5)
        except (KafkaError, OSError):
            await asyncio.sleep(1)  # the broker is restarting: sample again once it is back
        finally:
            await consumer.stop()
            await admin.close()


async def trimming(
    kafka: KafkaConnection,
    names: Iterable[str],
    positions: dict[tuple[str, int, int], str],
    watched: TrimWatch,
) -> Trimming:
    """The log starts first, then intake's commits: a commit only grows, so a start past the
    commit read after it was past it when trimmed."""
    described = await end_offsets(kafka, names)
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    await consumer.start()
    try:
        starts = await beginning_offsets(consumer, list(described))
    finally:
        await consumer.stop()
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets("intake")
    finally:
        await admin.close()
    committed = {tp: meta.offset for tp, meta in offsets.items() if tp in starts}
    return Trimming(starts, committed, dict(positions), watched)


def _check_trimming(found: Findings, trimmed: Trimming, records: dict[str, list[Record]]) -> None:
    """Intake trims each submissions partition up to what it applied and committed, never
    beyond: every message of the run below a partition's log start was applied (intake's
    answer to it, or the events it caused, name it as their cause), and no log start is past
    intake's commit. A trimmed message without an answer is one lost for good."""
    caused = {
        headers(r).get("ce_causationid")
        for topic in (topics.INTAKE_CASES, topics.INTAKE_REJECTIONS, topics.INTAKE_DISCLOSURES)
        for r in records[topic]
    }
    if not trimmed.committed:
        found.lost.append("intake's commits could not be read after the run")
    found.lost += past_commit(trimmed.starts, trimmed.committed)
    # While the run went on (see watch_trimming): one sample that found a partition trimmed at
    # least, or the check proved nothing.
    found.count("trimming watched", trimmed.watched.trimmed_samples)
    found.lost += [f"during the run: {m}" for m in sorted(set(trimmed.watched.past_commit))]
    for (topic, partition, offset), ce_id in sorted(trimmed.positions.items()):
        if offset >= trimmed.starts.get(TopicPartition(topic, partition), 0):
            continue  # still on the broker
        found.count("trimmed submission applied")
        if ce_id not in caused:
            found.lost.append(f"{topic}/{partition}/{offset} ({ce_id}): trimmed, never applied")


def _by_id(records: Iterable[Record], ce_type: str) -> dict[str, Record]:
    """One record per ce_id (a redelivery of the same event counts once)."""
    out: dict[str, Record] = {}
    for r in records:
        h = headers(r)
        if h.get("ce_type") == ce_type and "ce_id" in h:
            out.setdefault(h["ce_id"], r)
    return out


def _group(records: Iterable[Record], key: str) -> dict[str, list[Record]]:
    grouped: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        grouped[str(data(r).get(key))].append(r)
    return grouped


def _exactly_one(findings: Findings, family: str, what: str, items: list[Any]) -> None:
    findings.count(family)
    if not items:
        findings.lost.append(what)
    elif len(items) > 1:
        findings.duplicated.append(f"{what} ({len(items)} distinct events)")


def check(
    world: World,
    sent: Sent,
    records: dict[str, list[Record]],
    deliveries: list[dict[str, Any]],
    starts: dict[TopicPartition, int],
    answers: dict[str, tuple[str, str]] | None = None,
    continuity: Sent | None = None,
    trimmed: Trimming | None = None,
) -> Findings:
    """``answers`` and ``continuity``: the provider answers and the continuity messages whose
    outcome must be in ``records`` (those sent before the groups settled; default: every one
    sent)."""
    found = Findings()
    answers = sent.responses if answers is None else answers
    cases = _by_id(records[topics.INTAKE_CASES], ev.CASE_REGISTERED)
    case_by_submission: dict[str, list[str]] = defaultdict(list)
    for r in cases.values():
        case_by_submission[headers(r).get("ce_correlationid", "")].append(data(r)["case_id"])
    acknowledged: dict[str, list[Record]] = defaultdict(list)  # submission id → answers
    for referrer in world.referrers:
        inbox = records[topics.agency_inbox(referrer.agency_id)]
        for r in _by_id(inbox, ev.INBOX_SUBMISSION_ACCEPTED).values():
            acknowledged[data(r)["submission_id"]].append(r)
    needs: list[tuple[str, str, str]] = []  # (case id, need id, referring agency)
    for event_id, submission in sent.submissions.items():
        case_ids = sorted(set(case_by_submission.get(event_id, [])))
        _exactly_one(found, "case", f"case of submission {submission.agency_case_ref}", case_ids)
        acks = acknowledged.get(event_id, [])
        _exactly_one(
            found,
            "submission-accepted",
            f"submission-accepted of {submission.agency_case_ref}",
            acks,
        )
        if acks and case_ids and data(acks[0])["case_id"] != case_ids[0]:
            found.lost.append(f"submission {event_id}: acknowledged with another case id")
        for case_id in case_ids[:1]:
            needs += [(case_id, n.need_id, submission.agency_id) for n in submission.needs]
    # Community needs: registered once, answered once, and then routed as a case's need.
    communities = _by_id(records[topics.INTAKE_CASES], ev.COMMUNITY_NEED_REGISTERED)
    community_by_submission: dict[str, list[Record]] = defaultdict(list)
    for r in communities.values():
        community_by_submission[headers(r).get("ce_correlationid", "")].append(r)
    for event_id, need in sent.community.items():
        registered = community_by_submission.get(event_id, [])
        ids = sorted({data(r)["case_id"] for r in registered})
        _exactly_one(found, "community need", f"community need {need.agency_case_ref}", ids)
        acks = acknowledged.get(event_id, [])
        what = f"submission-accepted of community need {need.agency_case_ref}"
        _exactly_one(found, "submission-accepted", what, acks)
        if registered:
            first = data(registered[0])
            needs.append((first["case_id"], first["need"]["need_id"], need.agency_id))

    events = records[topics.REFERRAL_EVENTS]
    requested = _group(_by_id(events, ev.REFERRAL_REQUESTED).values(), "case_id")
    unmatched = _group(_by_id(events, ev.NEED_UNMATCHED).values(), "case_id")
    transitions = _group(_by_id(events, ev.REFERRAL_TRANSITIONED).values(), "referral_id")
    referrals: list[dict[str, Any]] = []
    for case_id, need_id, _ in needs:
        chain = [data(r) for r in requested.get(case_id, []) if data(r)["need_id"] == need_id]
        ends = [r for r in unmatched.get(case_id, []) if data(r)["need_id"] == need_id]
        found.count("need")
        if not chain and not ends:
            found.lost.append(f"need {case_id}/{need_id}: no referral and no unmatched event")
        if len(ends) > 1:
            told = ", ".join(
                f"{data(r).get('reason')} at {headers(r).get('ce_time')} "
                f"(caused by {headers(r).get('ce_causationid')})"
                for r in ends
            )
            found.duplicated.append(
                f"need {case_id}/{need_id}: {len(ends)} unmatched events ({told})"
            )
        by_attempt: dict[int, set[str]] = defaultdict(set)
        for referral in chain:
            by_attempt[referral["attempt"]].add(referral["referral_id"])
        for attempt, ids in by_attempt.items():
            if len(ids) > 1:
                found.duplicated.append(f"need {case_id}/{need_id}: attempt {attempt} twice")
        referrals += chain
    for referral in referrals:
        accepted = [
            r
            for r in transitions.get(referral["referral_id"], [])
            if data(r)["to_state"] == "accepted"
        ]
        found.count("referral")
        if len(accepted) > 1:
            found.duplicated.append(f"referral {referral['referral_id']}: slot held twice")

    _check_answers(found, answers, events)
    _check_reroutes(found, referrals, transitions, requested, unmatched)

    disclosures = _group(
        [
            *_by_id(records[topics.INTAKE_DISCLOSURES], ev.DISCLOSURE_SEALED).values(),
            *_by_id(records[topics.INTAKE_DISCLOSURES], ev.DISCLOSURE_REFUSED).values(),
        ],
        "referral_id",
    )
    inbox_received: dict[str, list[Record]] = defaultdict(list)
    for provider in world.providers:
        inbox = records[topics.agency_inbox(provider.agency_id)]
        for r in _by_id(inbox, ev.INBOX_REFERRAL_RECEIVED).values():
            inbox_received[data(r)["referral_id"]].append(r)
    hooks: dict[tuple[str, str], set[str]] = defaultdict(set)
    for d in deliveries:
        key = str(d["data"].get("referral_id") or d["data"].get("need_id"))
        hooks[(str(d["type"]), key)].add(d["webhook_id"])
    for referral in referrals:
        rid = referral["referral_id"]
        _exactly_one(
            found, "disclosure decision", f"disclosure decision of {rid}", disclosures.get(rid, [])
        )
        _exactly_one(
            found,
            "referral-received (inbox)",
            f"referral-received of {rid} in the inbox",
            inbox_received.get(rid, []),
        )
        if referral["recipient_agency_id"] in world.webhook_agencies:
            webhook = sorted(hooks.get((ev.INBOX_REFERRAL_RECEIVED, rid), set()))
            _exactly_one(
                found,
                "referral-received (webhook)",
                f"referral-received of {rid} at the webhook",
                webhook,
            )
    successor = [world.successor.agency_id] if world.successor else []
    for case_id, need_id, referrer in needs:
        if not [r for r in unmatched.get(case_id, []) if data(r)["need_id"] == need_id]:
            continue
        # The case's owner hears it: the referrer, or the successor once the case moved.
        notices = [
            r
            for agency in (referrer, *successor)
            for r in _by_id(records[topics.agency_inbox(agency)], ev.INBOX_NEED_UNMATCHED).values()
            if data(r)["case_id"] == case_id and data(r)["need_id"] == need_id
        ]
        _exactly_one(
            found,
            "need-unmatched (inbox)",
            f"need-unmatched of {case_id}/{need_id} in the inbox",
            notices,
        )

    _check_continuity(found, continuity or sent, records)
    _check_integrated_approach(found, world, continuity or sent, records)
    _check_dead_letters(found, sent, records, starts)
    if trimmed is not None:
        _check_trimming(found, trimmed, records)
    return found


def _caused_by(records: Iterable[Record], *ce_types: str) -> dict[str, list[Record]]:
    """Distinct events of these types, by the ce_id of the message that caused them."""
    out: dict[str, list[Record]] = defaultdict(list)
    for ce_type in ce_types:
        for r in _by_id(records, ce_type).values():
            out[headers(r).get("ce_causationid", "")].append(r)
    return out


def _check_continuity(found: Findings, sent: Sent, records: dict[str, list[Record]]) -> None:
    """Every end of assistance and every handover message has exactly one outcome; every
    accepted handover moves the case or fails, once; every move seals the case's data for the
    new owner once; no provider is told twice, for one cause, that its referral continues."""
    cases, events = records[topics.INTAKE_CASES], records[topics.REFERRAL_EVENTS]
    rejected = _group(
        _by_id(records[topics.INTAKE_REJECTIONS], ev.SUBMISSION_REJECTED).values(), "submission_id"
    )
    ended = _caused_by(cases, ev.ASSISTANCE_ENDED)
    for ce_id, case_id in sent.assistance_ends.items():
        outcomes = [*ended.get(ce_id, []), *rejected.get(ce_id, [])]
        _exactly_one(found, "assistance end", f"end of assistance on {case_id}", outcomes)
    refused = _group(_by_id(events, ev.HANDOVER_REFUSED).values(), "message_id")
    proposed = _group(_by_id(events, ev.HANDOVER_PROPOSED).values(), "message_id")
    for ce_id, case_id in sent.proposals.items():
        outcomes = [*proposed.get(ce_id, []), *refused.get(ce_id, [])]
        _exactly_one(found, "handover proposal", f"handover proposal of {case_id}", outcomes)
    answered = _caused_by(events, ev.HANDOVER_ACCEPTED, ev.HANDOVER_ENDED)
    for ce_id, (handover_id, action) in sent.handover_answers.items():
        outcomes = [*answered.get(ce_id, []), *refused.get(ce_id, [])]
        what = f"handover answer {ce_id} ({action} of {handover_id})"
        _exactly_one(found, "handover answer", what, outcomes)
    moved = _group(
        [*_by_id(cases, ev.CASE_HANDED_OVER).values(), *_by_id(cases, ev.HANDOVER_FAILED).values()],
        "handover_id",
    )
    for accepted in _by_id(events, ev.HANDOVER_ACCEPTED).values():
        handover_id = str(data(accepted).get("handover_id"))
        what = f"case move or failure of handover {handover_id}"
        _exactly_one(found, "handover moved or failed", what, moved.get(handover_id, []))
    sealed = _group(
        _by_id(records[topics.INTAKE_DISCLOSURES], ev.CASE_DATA_SEALED).values(), "handover_id"
    )
    for handed in _by_id(cases, ev.CASE_HANDED_OVER).values():
        handover_id = str(data(handed).get("handover_id"))
        what = f"sealed case data of handover {handover_id}"
        _exactly_one(found, "case data sealed", what, sealed.get(handover_id, []))
    told: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in _by_id(events, ev.SUPPORT_CONTINUES).values():
        told[(str(data(r).get("referral_id")), str(data(r).get("cause")))].append(r)
    for (referral_id, cause), notices in told.items():
        found.count("support-continues")
        if len(notices) > 1:
            found.duplicated.append(
                f"referral {referral_id}: told {len(notices)} times it continues ({cause})"
            )


def _check_integrated_approach(
    found: Findings, world: World, sent: Sent, records: dict[str, list[Record]]
) -> None:
    """Issue 18: every revocation has exactly one answer, and an applied one cancels its
    referral once, its provider told once to stop and erase; every structural gap is reported
    at most once per district, category, period and addressee, reaches that inbox once, and the
    run's own gap (the category nobody lists) was reported to the government successor; every
    commitment has exactly one answer."""
    events = records[topics.REFERRAL_EVENTS]
    applied = _group(_by_id(events, ev.INSTRUCTION_APPLIED).values(), "instruction_id")
    refused = _group(_by_id(events, ev.INSTRUCTION_REFUSED).values(), "instruction_id")
    cancelled = _group(
        [
            r
            for r in _by_id(events, ev.REFERRAL_TRANSITIONED).values()
            if data(r).get("to_state") == "cancelled"
        ],
        "referral_id",
    )
    told: dict[str, list[Record]] = defaultdict(list)
    for provider in world.providers:
        inbox = records[topics.agency_inbox(provider.agency_id)]
        for r in _by_id(inbox, ev.INBOX_REFERRAL_CANCELLED).values():
            if data(r).get("erase_received_data"):
                told[data(r)["referral_id"]].append(r)
    for ce_id, referral_id in sent.revokes.items():
        outcomes = [*applied.get(ce_id, []), *refused.get(ce_id, [])]
        _exactly_one(found, "revocation answered", f"revocation of {referral_id}", outcomes)
        if applied.get(ce_id):
            what = f"cancellation of revoked referral {referral_id}"
            _exactly_one(found, "revoked referral cancelled", what, cancelled.get(referral_id, []))
            what = f"referral-cancelled (erase) of revoked {referral_id} in the inbox"
            _exactly_one(found, "revoked referral cancelled", what, told.get(referral_id, []))

    reports: dict[tuple[str, str, str, str], list[Record]] = defaultdict(list)
    for r in _by_id(events, ev.STRUCTURAL_GAP_REPORTED).values():
        d = data(r)
        cell = (str(d["area"]), str(d["category"]), str(d["period_start"]))
        reports[(*cell, str(d["addressed_agency_id"]))].append(r)
    inboxes = {
        a.agency_id: _group(
            _by_id(
                records[topics.agency_inbox(a.agency_id)], ev.INBOX_STRUCTURAL_GAP_REPORTED
            ).values(),
            "report_id",
        )
        for a in world.agencies
    }
    for (area, category, period, agency), found_reports in reports.items():
        found.count("structural gap report")
        if len(found_reports) > 1:
            found.duplicated.append(
                f"structural gap {area}/{category}/{period} reported "
                f"{len(found_reports)} times to {agency}"
            )
        if agency not in inboxes:
            continue  # a government agency of another test on the shared broker: not read
        for r in found_reports:
            report_id = str(data(r)["report_id"])
            what = f"structural gap report {report_id} in {agency}'s inbox"
            _exactly_one(
                found, "structural gap (inbox)", what, inboxes.get(agency, {}).get(report_id, [])
            )
    unmatched = [
        c for s in sent.submissions.values() for n in s.needs if (c := n.category) == UNMATCHED
    ] + [c.category for c in sent.community.values() if c.category == UNMATCHED]
    if world.successor is not None and len(unmatched) >= STRUCTURAL_THRESHOLD:
        district = world.area[: 2 + STRUCTURAL_DISTRICT_DIGITS]
        ours = [
            key
            for key in reports
            if key[0] == district and key[1] == UNMATCHED and key[3] == world.successor.agency_id
        ]
        found.count("structural gap report")
        if not ours:
            found.lost.append(
                f"structural gap {district}/{UNMATCHED}: {len(unmatched)} unmet needs, "
                "never reported to the government successor"
            )
    _check_erasures(found, world, sent, records)
    _check_narrowings(found, world, sent, records)
    committed = _group(_by_id(events, ev.STRUCTURAL_COMMITMENT_APPLIED).values(), "message_id")
    rejected = _group(_by_id(events, ev.STRUCTURAL_COMMITMENT_REFUSED).values(), "message_id")
    for ce_id, report_id in sent.commitments.items():
        outcomes = [*committed.get(ce_id, []), *rejected.get(ce_id, [])]
        what = f"commitment {ce_id} on structural gap {report_id}"
        _exactly_one(found, "structural commitment answered", what, outcomes)


def _check_erasures(
    found: Findings, world: World, sent: Sent, records: dict[str, list[Record]]
) -> None:
    """Every erasure confirmation a provider sent is recorded (disclosure-erased) or refused,
    once; a referral whose contact details were sealed to its provider, which confirmed, has
    exactly one confirmation recorded (a confirmation that overtook the disclosure is refused,
    the one after it recorded), and the case's owner is told once."""
    disclosures = records[topics.INTAKE_DISCLOSURES]
    erased = _group(_by_id(disclosures, ev.DISCLOSURE_ERASED).values(), "submission_id")
    # A returnee's contact details (a community need's brief is no one's: not confirmed).
    sealed = {
        str(data(r)["referral_id"])
        for r in _by_id(disclosures, ev.DISCLOSURE_SEALED).values()
        if data(r).get("content", "contact") == "contact"
    }
    rejected = _group(
        _by_id(records[topics.INTAKE_REJECTIONS], ev.SUBMISSION_REJECTED).values(), "submission_id"
    )
    heard: dict[str, list[Record]] = defaultdict(list)
    for agency in world.agencies:
        inbox = records[topics.agency_inbox(agency.agency_id)]
        for r in _by_id(inbox, ev.INBOX_DISCLOSURE_ERASED).values():
            heard[str(data(r)["referral_id"])].append(r)
    recorded: dict[str, list[Record]] = defaultdict(list)
    for ce_id, referral_id in sent.erasures.items():
        outcomes = [*erased.get(ce_id, []), *rejected.get(ce_id, [])]
        what = f"erasure confirmation {ce_id} of {referral_id}"
        _exactly_one(found, "erasure confirmation answered", what, outcomes)
        recorded[referral_id] += erased.get(ce_id, [])
    for referral_id, records_of in recorded.items():
        if referral_id in sealed:
            what = f"erasure of {referral_id}, sealed to its provider, recorded"
            _exactly_one(found, "erasure confirmation answered", what, records_of)
        if records_of:
            what = f"disclosure-erased of {referral_id} in the owner's inbox"
            _exactly_one(found, "erasure heard by the owner", what, heard.get(referral_id, []))


_OPEN = frozenset({"requested", "received", "accepted", "in_progress", "on_hold"})


def _check_narrowings(
    found: Findings, world: World, sent: Sent, records: dict[str, list[Record]]
) -> None:
    """Every consent narrowing is answered once; once applied, no referral of a category it no
    longer covers is left open at the end, and none is cancelled twice."""
    answered: dict[str, list[Record]] = defaultdict(list)
    for referrer in world.referrers:
        inbox = records[topics.agency_inbox(referrer.agency_id)]
        for r in _by_id(inbox, ev.INBOX_SUBMISSION_ACCEPTED).values():
            answered[data(r)["submission_id"]].append(r)
    for r in _by_id(records[topics.INTAKE_REJECTIONS], ev.SUBMISSION_REJECTED).values():
        answered[data(r)["submission_id"]].append(r)
    events = records[topics.REFERRAL_EVENTS]
    requested = _group(_by_id(events, ev.REFERRAL_REQUESTED).values(), "case_id")
    transitions = _group(_by_id(events, ev.REFERRAL_TRANSITIONED).values(), "referral_id")
    for ce_id, case_id in sent.narrowings.items():
        outcomes = answered.get(ce_id, [])
        _exactly_one(
            found, "consent narrowing answered", f"consent narrowing of {case_id}", outcomes
        )
        applied = [r for r in outcomes if headers(r).get("ce_type") == ev.INBOX_SUBMISSION_ACCEPTED]
        if not applied:
            continue
        for referral in (data(r) for r in requested.get(case_id, [])):
            if referral["category"] == UNMATCHED:
                continue
            found.count("referral no longer covered ended")
            states = [
                str(data(t).get("to_state")) for t in transitions.get(referral["referral_id"], [])
            ]
            last = states[-1] if states else "requested"
            if last in _OPEN:
                found.lost.append(
                    f"referral {referral['referral_id']} of {case_id}: consent narrowed, "
                    f"still {last}"
                )
            if states.count("cancelled") > 1:
                found.duplicated.append(f"referral {referral['referral_id']}: cancelled twice")


def _check_answers(
    found: Findings, answers: dict[str, tuple[str, str]], events: list[Record]
) -> None:
    """Every answer a provider sent ends in exactly one outcome: applied, with the transition
    it asks for caused by it, or refused (an answer after its referral expired, say)."""
    applied = _group(_by_id(events, ev.RESPONSE_APPLIED).values(), "response_id")
    refused = _group(_by_id(events, ev.RESPONSE_REFUSED).values(), "response_id")
    caused: dict[str, list[str]] = defaultdict(list)  # response id → states it led to
    for r in _by_id(events, ev.REFERRAL_TRANSITIONED).values():
        # .get: the poison records carry this type with a body that is not its payload
        caused[headers(r).get("ce_causationid", "")].append(str(data(r).get("to_state")))
    for response_id, (referral_id, action) in answers.items():
        outcomes = [*applied.get(response_id, []), *refused.get(response_id, [])]
        what = f"answer {response_id} ({action} of {referral_id})"
        _exactly_one(found, "answer applied or refused", what, outcomes)
        target = ev.ACTION_TARGET[ev.ResponseAction(action)].value
        if applied.get(response_id) and target not in caused.get(response_id, []):
            found.lost.append(f"{what}: applied, but no transition to {target} followed")


def _check_reroutes(
    found: Findings,
    referrals: list[dict[str, Any]],
    transitions: dict[str, list[Record]],
    requested: dict[str, list[Record]],
    unmatched: dict[str, list[Record]],
) -> None:
    """After a rejected or expired referral, its need goes to the next provider (a referral
    naming it as the previous one) or ends as a recorded gap: a re-route must not get lost."""
    successors = {
        str(data(r).get("previous_referral_id"))
        for rs in requested.values()
        for r in rs
        if data(r).get("previous_referral_id")
    }
    for referral in referrals:
        rid = referral["referral_id"]
        ended = [
            data(r).get("to_state")
            for r in transitions.get(rid, [])
            if data(r).get("to_state") in ("rejected", "expired")
        ]
        if not ended:
            continue
        found.count(f"re-route or gap after {'rejection' if ended[0] == 'rejected' else 'expiry'}")
        gap = [
            r
            for r in unmatched.get(referral["case_id"], [])
            if data(r)["need_id"] == referral["need_id"]
        ]
        if rid not in successors and not gap:
            found.lost.append(
                f"referral {rid} {ended[0]}: no next attempt and no need-unmatched followed"
            )


def _during_the_run(letter: Record, starts: dict[TopicPartition, int]) -> bool:
    """Whether the dead letter's original record was written during this run (a service may
    meet records other tools left on shared topics before it started)."""
    h = headers(letter)
    try:
        original = TopicPartition(h["dlq_original_topic"], int(h["dlq_original_partition"]))
        offset = int(h["dlq_original_offset"])
    except (KeyError, ValueError):
        return True
    return offset >= starts.get(original, 0)


def _check_dead_letters(
    found: Findings, sent: Sent, records: dict[str, list[Record]], starts: dict[TopicPartition, int]
) -> None:
    """Every poison record is dead-lettered, with a reason, by each service reading its topic;
    nothing else written during the run is (a dead-lettered real message is a lost one)."""
    for service in ("intake", "notification"):
        letters = records[topics.dead_letter_topic(service)]
        reasons = {headers(r).get("ce_id"): headers(r).get("dlq_error") for r in letters}
        for poison_id in sent.poison_ids:
            found.count("poison dead letter")
            if not reasons.get(poison_id):
                found.lost.append(f"poison {poison_id}: no dead letter with a reason in {service}")
    for service in ("intake", "referral", "notification"):
        for r in records[topics.dead_letter_topic(service)]:
            if headers(r).get("ce_id") not in sent.poison_ids and _during_the_run(r, starts):
                reason = headers(r).get("dlq_error", "")[:120]
                found.lost.append(f"{service} dead-lettered a real message: {reason}")
