"""Property-based fuzzing of every inbound consumer, end to end: the three services run as
processes; hypothesis generates at least 1,000 malformed records for each topic a service consumes
(tests/fuzzing.py: bad bytes, bad JSON, wrong shapes and fields, garbled or missing CloudEvents
headers, header names nobody can read, wrong types, keys and senders, tombstones, sizes over the
limit); each topic is published as soon as it is generated, then valid messages follow on every
topic. Observed from outside the services only:

- every malformed record gets, from each service consuming its topic, exactly one answer — a
  rejection to the agency (intake's submission-rejected, referral's response-refused) or one
  dead letter on ``<service>.dlq.v1`` with its reason;
- the valid messages that follow are processed (no stalled partition), and not dead-lettered;
- every service process is still alive, and no consumer group lags on these topics.

A failure prints the hypothesis seed; ``REFEX_FUZZ_SEED=<seed>`` generates the same records.
The test runs after all others (tests/e2e/conftest.py): its records stay on the shared topics.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.contracts import events as ev
from shared.contracts import topics
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from tests import factories as f
from tests import fuzzing as fz
from tests.e2e.conftest import RunningService
from tests.e2e.kafka_helpers import register_agency_access
from tests.raw_kafka import raw_header_names

pytestmark = pytest.mark.e2e

PER_TOPIC = max(1000, int(os.environ.get("REFEX_FUZZ_PER_TOPIC", "1000")))
SEED = int(os.environ.get("REFEX_FUZZ_SEED") or random.randrange(2**32))
SERVICE_ENV = {
    # the fresh agency's topics are found by the services' pattern subscriptions sooner
    f"{s.upper()}_TOPIC_DISCOVERY_INTERVAL_S": "1"
    for s in ("intake", "referral", "notification")
}
# Where a service answers the sender instead of dead-lettering (see docs/integrators.md):
# (service, the agency topic answered, the answer's topic, its type, the field naming the record)
ANSWERS = [
    (
        "intake",
        topics.AGENCY_SUBMISSIONS,
        topics.INTAKE_REJECTIONS,
        ev.SUBMISSION_REJECTED,
        "submission_id",
    ),
    (
        "referral",
        topics.AGENCY_RESPONSES,
        topics.REFERRAL_EVENTS,
        ev.RESPONSE_REFUSED,
        "response_id",
    ),
    (
        "referral",
        topics.AGENCY_LISTINGS,
        topics.REFERRAL_EVENTS,
        ev.LISTING_REJECTED,
        "submission_id",
    ),
]
DEAD_LETTER_TOPICS = {s.value: topics.dead_letter_topic(s.value) for s in topics.Owner}
TIMEOUT_S = 150  # from the start of the test until every record is answered

C = TypeVar("C", AIOKafkaProducer, AIOKafkaConsumer, AIOKafkaAdminClient)


def client_of(client: type[C], kafka: KafkaConnection, *topic_names: str, **options: Any) -> C:
    """Every Kafka client of this module is made here, authenticated as ``kafka`` says."""
    return client(*topic_names, **kafka.client_kwargs(), **options)


def inbound_topics(agency: str) -> dict[str, list[str]]:
    """Every topic a service consumes, from the catalogue: topic -> consuming services."""

    def services(consumers: tuple[topics.Owner, ...]) -> list[str]:
        return [c.value for c in consumers if c is not topics.Owner.AGENCY]

    consumed = {t.name: services(t.consumers) for t in topics.CATALOGUE if services(t.consumers)}
    for family in topics.AGENCY_FAMILIES:
        if services(family.template.consumers):
            consumed[family.name(agency)] = services(family.template.consumers)
    return consumed


Position = tuple[str, int, int]


@dataclass
class Sent:
    record: fz.Malformed
    position: Position
    answers: Counter[str] = field(default_factory=Counter)  # service -> answers seen
    reasons: list[str] = field(default_factory=list)


@dataclass
class Ledger:
    """What was sent, and what came back for it from each service."""

    consumers: dict[str, list[str]]
    sent: dict[Position, Sent] = field(default_factory=dict)
    by_ce_id: dict[tuple[str, str], Sent] = field(default_factory=dict)
    valid: dict[Position, str] = field(default_factory=dict)  # position -> ce_id
    valid_dead_lettered: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)

    def add(self, record: fz.Malformed, position: Position) -> None:
        sent = Sent(record, position)
        self.sent[position] = sent
        if record.ce_id:
            self.by_ce_id[(record.topic, record.ce_id)] = sent

    def find(self, topic: str, event_id: str) -> Sent | None:
        """The record a service's answer is about: ``event_id`` is the CloudEvents id, or the
        position of a record without a valid envelope."""
        name, _, rest = event_id.rpartition("/")
        if name:
            topic_name, _, partition = name.rpartition("/")
            if topic_name == topic and partition.isdigit() and rest.isdigit():
                return self.sent.get((topic, int(partition), int(rest)))
        return self.by_ce_id.get((topic, event_id))

    def observe(self, record: ConsumerRecord[bytes, bytes], agency: str) -> None:
        position = (record.topic, record.partition, record.offset)
        if position in self.sent or position in self.valid:
            return  # one of ours, on a topic that is also an answer topic
        headers = {k: (v or b"").decode("utf-8", "replace") for k, v in record.headers or ()}
        service = next((s for s, t in DEAD_LETTER_TOPICS.items() if t == record.topic), None)
        if service is not None:
            position = (
                headers.get("dlq_original_topic", ""),
                int(headers.get("dlq_original_partition", "-1")),
                int(headers.get("dlq_original_offset", "-1")),
            )
            if position in self.valid:
                self.valid_dead_lettered.append(f"{position}: {headers.get('dlq_error')}")
            elif position in self.sent:
                self.sent[position].answers[service] += 1
                self.sent[position].reasons.append(headers.get("dlq_error", ""))
            return
        for service, family, topic, ce_type, id_field in ANSWERS:
            if record.topic != topic or headers.get("ce_type") != ce_type:
                continue
            data = json.loads(record.value or b"{}")
            if data.get("agency_id") != agency:
                return  # another test's
            sent = self.find(family.name(agency), data[id_field])
            if sent is not None:
                sent.answers[service] += 1
                sent.reasons.append(data.get("reason") or data.get("error") or "")
            elif data[id_field] not in self.valid.values():
                self.unmatched.append(f"{service}: {data[id_field]}")

    def pending(self) -> int:
        return sum(
            1
            for s in self.sent.values()
            for service in self.consumers[s.position[0]]
            if s.answers[service] == 0
        )

    def failures(self) -> list[str]:
        wrong = [
            f"{s.position} {service}: {s.answers[service]} answers; defects {s.record.defects}"
            for s in self.sent.values()
            for service in self.consumers[s.position[0]]
            if s.answers[service] != 1
        ]
        return wrong


async def _end_offsets(kafka: KafkaConnection, names: Iterable[str]) -> dict[TopicPartition, int]:
    admin = client_of(AIOKafkaAdminClient, kafka)
    await admin.start()
    try:
        described = await admin.describe_topics(list(names))
    finally:
        await admin.close()
    partitions = [
        TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]
    ]
    consumer = client_of(AIOKafkaConsumer, kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return ends


async def _lag(kafka: KafkaConnection, groups: dict[str, list[str]]) -> dict[str, int]:
    """Per consumer group, how many records of its topics it has not committed yet."""
    names = sorted({t for ts in groups.values() for t in ts})
    ends = await _end_offsets(kafka, names)
    admin = client_of(AIOKafkaAdminClient, kafka)
    await admin.start()
    lag: dict[str, int] = {}
    try:
        for group, group_topics in groups.items():
            committed = await admin.list_consumer_group_offsets(group)
            lag[group] = sum(
                end - (committed[tp].offset if tp in committed else 0)
                for tp, end in ends.items()
                if tp.topic in group_topics
            )
    finally:
        await admin.close()
    return lag


async def _register(kafka: KafkaConnection, agency: str) -> None:
    await register_agency_access(kafka, agency)
    await publish_events(kafka, [f.agency_event(f.agency(agency))])


def _valid_followers(agency: str, newcomer: str) -> dict[str, list[fz.Malformed]]:
    """After the malformed records, valid ones on every topic, each with a visible effect."""
    followers: dict[str, list[fz.Malformed]] = defaultdict(list)
    for name in inbound_topics(agency):
        target = fz.target(name, newcomer if name == topics.DIRECTORY_AGENCIES else agency)
        wanted = {
            topics.INTAKE_CASES: [ev.CASE_REGISTERED, ev.CASE_ERASED],
            topics.REFERRAL_EVENTS: [ev.REFERRAL_REQUESTED],
            topics.INTAKE_DISCLOSURES: [ev.DISCLOSURE_SEALED],
        }.get(name)
        for base in target.bases:
            if wanted is None or base.ce_type in wanted:
                followers[name].append(fz.valid_record(target, base))
                if wanted is None:
                    break
    return followers


async def _publish(
    producer: AIOKafkaProducer, records: list[fz.Malformed]
) -> list[tuple[fz.Malformed, Position]]:
    futures = [
        await producer.send(r.topic, r.value, key=r.key, headers=[(k, v) for k, v in r.headers])
        for r in records
    ]
    placed = await asyncio.gather(*futures)
    return [(r, (r.topic, m.partition, m.offset)) for r, m in zip(records, placed, strict=True)]


async def _read_answers(
    kafka: KafkaConnection,
    starts: dict[TopicPartition, int],
    ledger: Ledger,
    agency: str,
    effects: dict[str, str],
    deadline: float,
) -> dict[str, list[ConsumerRecord[bytes, bytes]]]:
    """Read the answer topics from where they were before publishing until every malformed
    record is answered by each of its consumers and every effect was seen, then 2 s more so
    a second answer would show."""
    consumer = client_of(AIOKafkaConsumer, kafka, enable_auto_commit=False)
    await consumer.start()
    seen_effects: dict[str, list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)
    try:
        consumer.assign(list(starts))
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        settle_until: float | None = None
        while time.monotonic() < (settle_until or deadline):
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for record in records:
                    ledger.observe(record, agency)
                    correlation = dict(record.headers or ()).get("ce_correlationid", b"")
                    for name, ce_id in effects.items():
                        if correlation == ce_id.encode():
                            seen_effects[name].append(record)
            done = ledger.pending() == 0 and all(seen_effects.get(n) for n in effects)
            if done and settle_until is None:
                settle_until = time.monotonic() + 2.0
    finally:
        await consumer.stop()
    return seen_effects


def _type_of(record: fz.Malformed | ConsumerRecord[bytes, bytes]) -> str:
    return (dict(record.headers or ()).get("ce_type") or b"").decode("utf-8", "replace")


@pytest.mark.timeout(TIMEOUT_S + 60)
async def test_every_inbound_consumer_answers_every_malformed_record_and_flows_on(
    services: dict[str, RunningService],
    evidence: RunningService,  # a consumer of intake.cases.v1 and referral.events.v1 too
    kafka: KafkaConnection,
    database_urls: dict[str, str],
) -> None:
    started = time.monotonic()
    agency, newcomer = f.unique("fuzz"), f.unique("fuzz-new")
    await _register(kafka, agency)
    # The newcomer's registry record is one of the valid followers; its topics and ACLs come
    # first, as `refex platform register-agency` does.
    await register_agency_access(kafka, newcomer)
    consumers = inbound_topics(agency)
    assert len(consumers) >= 8, consumers  # 3 per-agency topics and 5 fixed ones today

    followers = _valid_followers(agency, newcomer)

    answer_topics = sorted({*DEAD_LETTER_TOPICS.values(), *(a[2] for a in ANSWERS)})
    effect_topics = [topics.INTAKE_CASES, topics.REFERRAL_EVENTS, topics.INTAKE_DISCLOSURES]
    starts = await _end_offsets(
        kafka, {*answer_topics, *effect_topics, topics.agency_inbox(agency)}
    )

    ledger = Ledger(consumers)
    submissions = topics.AGENCY_SUBMISSIONS.name(agency)
    producer = client_of(
        AIOKafkaProducer,
        kafka,
        acks="all",
        linger_ms=20,
        # Oversize records are past the broker's limit too: only compressed do they reach the
        # services, which must refuse them after decompression (tests/fuzzing.py).
        compression_type="gzip",
        max_request_size=2 * 1024 * 1024,
        request_timeout_ms=60_000,
    )
    batches: dict[str, list[fz.Malformed]] = {}
    loop = asyncio.get_running_loop()
    # Hypothesis generates in another process, one topic after the other; each topic is
    # published as soon as it is there, so the services work while the next one is generated.
    # (A thread would share the random module with the producer, which hypothesis minds.)
    with (
        raw_header_names(),
        ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool,
    ):
        await producer.start()
        try:
            generating = {
                name: loop.run_in_executor(
                    pool,
                    fz.generate,
                    # Header names aiokafka cannot read: only where no aiokafka reader but
                    # the services' looks (this test reads the fixed topics; the listings
                    # replay has its test in tests/integration/test_registry_replay.py).
                    fz.target(name, agency, raw_header_names=name == submissions),
                    PER_TOPIC,
                    SEED,
                )
                for name in consumers
            }
            sending = []
            for name, generated in generating.items():
                batches[name] = await generated
                assert len(batches[name]) >= 1000, f"{name}: only {len(batches[name])} generated"
                sending.append(asyncio.ensure_future(_publish(producer, batches[name])))
            for sent in await asyncio.gather(*sending):
                for record, position in sent:
                    ledger.add(record, position)
            valid = [r for name in consumers for r in followers[name]]
            for record, position in await _publish(producer, valid):
                ledger.valid[position] = record.ce_id or ""
        finally:
            await producer.stop()
    published_s = time.monotonic() - started
    by_type = {(r.topic, _type_of(r)): r.ce_id or "" for r in valid}
    effects = {  # what each valid message must cause, found by its correlation id
        "case registered -> need unmatched": by_type[(topics.INTAKE_CASES, ev.CASE_REGISTERED)],
        "case erased -> erasure confirmed": by_type[(topics.INTAKE_CASES, ev.CASE_ERASED)],
        "referral requested": by_type[(topics.REFERRAL_EVENTS, ev.REFERRAL_REQUESTED)],
        "rejection -> inbox": by_type[(topics.INTAKE_REJECTIONS, ev.SUBMISSION_REJECTED)],
        "disclosure -> inbox": by_type[(topics.INTAKE_DISCLOSURES, ev.DISCLOSURE_SEALED)],
        "submission -> case": by_type[(topics.AGENCY_SUBMISSIONS.name(agency), ev.CASE_SUBMITTED)],
        "response -> refused, unknown referral": by_type[
            (topics.AGENCY_RESPONSES.name(agency), ev.RESPONSE_SUBMITTED)
        ],
    }
    seen = await _read_answers(kafka, starts, ledger, agency, effects, started + TIMEOUT_S)
    answered_s = time.monotonic() - started

    context = f"(seed {SEED}: REFEX_FUZZ_SEED={SEED} reproduces)"
    for name, batch in batches.items():
        print(f"{name}: {len(batch)} malformed records, defects {fz.defect_counts(batch)}")
    print(
        f"fuzz: {sum(map(len, batches.values()))} records over {len(batches)} topics; "
        f"generated and published in {published_s:.0f} s, all answered at "
        f"{answered_s:.0f} s {context}"
    )
    failures = ledger.failures()
    assert not failures, (
        f"{len(failures)} (record, service) pairs without exactly one answer {context}:\n"
        + "\n".join(failures[:25])
    )
    reasons = [r for s in ledger.sent.values() for r in s.reasons]
    assert all(r.strip() for r in reasons), f"an answer without a reason {context}"
    assert ledger.unmatched == [], f"answers to records never sent: {ledger.unmatched[:10]}"
    assert ledger.valid_dead_lettered == [], f"valid messages dead-lettered {context}"
    assert set(seen) == set(effects), f"valid messages without effect: {set(effects) - set(seen)}"
    by_kind = {_type_of(r): r for r in seen["referral requested"]}
    assert ev.INBOX_REFERRAL_RECEIVED in by_kind  # notification told the recipient
    refusal = json.loads(by_kind[ev.DISCLOSURE_REFUSED].value or b"{}")  # intake: no such case
    assert refusal["reason"] == "unknown_case"
    [refused] = [
        r
        for r in seen["response -> refused, unknown referral"]
        if r.topic == topics.REFERRAL_EVENTS
    ]
    assert json.loads(refused.value or b"{}")["error"] == "unknown_referral"

    listing = followers[topics.AGENCY_LISTINGS.name(agency)][0]
    service_id = json.loads(listing.value or b"{}")["service_id"]
    conn = await asyncpg.connect(database_urls["referral"])
    try:
        assert await conn.fetchval("SELECT 1 FROM listings WHERE service_id = $1", service_id)
    finally:
        await conn.close()
    conn = await asyncpg.connect(database_urls["intake"])
    try:
        assert await conn.fetchval("SELECT 1 FROM agencies WHERE agency_id = $1", newcomer)
    finally:
        await conn.close()

    # Evidence answers nothing on a topic (its effect is its read model): that it flows on is
    # that it is alive and its group is not behind, below.
    everyone = {**services, "evidence": evidence}
    dead = {n: s.process.poll() for n, s in everyone.items() if s.process.poll() is not None}
    assert dead == {}, f"services exited: {dead}"
    groups: dict[str, list[str]] = defaultdict(list)
    for name, services_of in consumers.items():
        for service in services_of:
            groups[service].append(name)
    lag = await _lag(kafka, groups)
    for _ in range(20):
        if not any(lag.values()):
            break
        await asyncio.sleep(0.5)
        lag = await _lag(kafka, groups)
    assert not any(lag.values()), f"consumer groups behind on the fuzzed topics: {lag}"
