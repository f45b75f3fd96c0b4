"""The topology-equivalent raw baseline: in the same run, on the same broker, the messages the
pipeline's throughput phase actually produced (their count, sizes, topics and fan-out per
submission) through raw aiokafka consume → produce processes, one per service instance, with no
database and no validation. Its rate is this pipeline's messaging limit on this machine; the
pipeline's ratio to it says what the services' own work costs.

How the topology is derived (:func:`derive`, pure, unit-tested):

1. **Counted, not assumed.** Before and after the pipeline's throughput phase the bench reads
   the end offset of every partition of every topic of the run (the catalogue's fixed topics and
   each agency's topics). Every record between the two is read back as the operator (no
   producer uses transactions, so the offset delta is the record count): its topic, ``ce_id``,
   ``ce_causationid`` and its size (key, value, header names and values).
2. **Who consumes and who produces** is the catalogue's (``shared/contracts/topics.py``): the
   topic's owner produces it (its outbox relay, in the same process), its ``consumers`` read it.
   Topics an agency or the operator writes (the submissions) are the *sources*.
3. **Fan-out per input topic.** A service's record on topic ``o`` whose cause (``ce_causationid``)
   is a record of the phase on a topic ``i`` the service consumes counts for the route
   ``i → o``. Records whose cause is not among them (a timer's, or one caused by a record of the
   warm-up) are spread over all of the service's input records. So the route's ratio is
   ``caused(i → o) / records(i) + uncaused(o) / records(all inputs of the service)``, and the
   sum over i of ``records(i) * ratio(i → o)`` is ``records(o)``: fed with the same sources,
   the raw processes produce the same number of records on every topic.
4. **Sizes**: each topic's mean key and value size, and one real record's headers.

The raw run (:class:`RawTopology`) creates a scratch copy ``bench.topo.<run>.<topic>`` of every
topic a service consumes (with the same partition count, traffic or not: the consumers fetch from
the same number of partitions) and of every topic that had records, and starts one process per
service instance (``python -m tests.bench.topology SPEC SERVICE READY_FILE``), each in its
service's consumer group. A process subscribes to its service's input copies and, per record in,
produces ``ratio`` records (a running credit per route, so fractions add up) of the topic's mean
sizes to the output copies, with the services' delivery settings: idempotent producer,
``acks=all``, ``linger_ms=5``, the services' consumer batch size, and the offsets committed only
after the batch's produced records are acknowledged. The bench feeds the sources' records (the
same number of submissions, each topic's count and size) as fast as one producer takes them and
times, as for the pipeline, from the first send until every raw group has consumed everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.contracts import topics
from shared.contracts.topics import Owner, TopicSpec
from shared.kafka.admin import ensure_topics
from shared.kafka.connection import KafkaConnection
from shared.settings import ServiceSettings

SERVICES = ("intake", "referral", "notification")
SCRATCH_PREFIX = "bench.topo."
BATCH = int(ServiceSettings.model_fields["consumer_batch_size"].default)  # as the services


# ----- the catalogue's roles for one run's agencies -----


@dataclass(frozen=True)
class Roles:
    """Every topic of a run: its partitions, the service producing it (None: an agency or the
    operator) and the services consuming it."""

    partitions: dict[str, int]
    producer: dict[str, str | None]
    consumers: dict[str, tuple[str, ...]]

    def inputs(self, service: str) -> list[str]:
        return sorted(t for t, c in self.consumers.items() if service in c)


def roles(agency_ids: Iterable[str]) -> Roles:
    specs: list[TopicSpec] = list(topics.CATALOGUE)
    specs += [family.spec(a) for a in agency_ids for family in topics.AGENCY_FAMILIES]
    services = set(SERVICES)
    return Roles(
        partitions={s.name: s.partitions for s in specs},
        producer={s.name: s.owner.value if s.owner.value in services else None for s in specs},
        consumers={
            s.name: tuple(c.value for c in s.consumers if c.value in services) for s in specs
        },
    )


# ----- what the phase produced, and the topology derived from it -----


@dataclass(frozen=True, slots=True)
class Seen:
    """One record of the phase, as read back."""

    topic: str
    event_id: str
    cause_id: str
    key_bytes: int
    value_bytes: int
    header_bytes: int


@dataclass
class TopicShape:
    partitions: int
    records: int = 0
    key_bytes: float = 0.0  # means over the records
    value_bytes: float = 0.0
    header_bytes: float = 0.0
    headers: list[tuple[str, str]] = field(default_factory=list)  # one real record's, hex values

    @property
    def mean_bytes(self) -> float:
        return self.key_bytes + self.value_bytes + self.header_bytes


@dataclass
class ServiceShape:
    inputs: list[str]  # every topic the service consumes, traffic or not
    routes: dict[str, dict[str, float]]  # input topic -> output topic -> records out per in


@dataclass
class Topology:
    topics: dict[str, TopicShape]
    services: dict[str, ServiceShape]
    sources: dict[str, int]  # records written by agencies / the operator (the submissions)
    unattributed: dict[str, int]  # service records no input of the service can account for

    @property
    def records(self) -> int:
        return sum(t.records for t in self.topics.values())

    def produced(self) -> dict[str, float]:
        """Records per topic that the routes give when fed with the sources (the fixed point of
        the routes; equal to the counted records by construction)."""
        out: dict[str, float] = defaultdict(float)
        for topic, n in self.sources.items():
            out[topic] += n
        # The routes can form cycles (intake → referral → intake): iterate to the fixed point.
        for _ in range(100):
            nxt: dict[str, float] = defaultdict(
                float, {t: float(n) for t, n in self.sources.items()}
            )
            for shape in self.services.values():
                for i, routes in shape.routes.items():
                    for o, ratio in routes.items():
                        nxt[o] += out.get(i, 0.0) * ratio
            if all(abs(nxt[t] - out.get(t, 0.0)) < 1e-6 for t in nxt):
                break
            out = nxt
        return dict(out)

    def summary(self, submissions: int) -> dict[str, Any]:
        """For bench.json: per topic the records, per submission and mean size; per service
        its records in and out per submission."""
        per = max(submissions, 1)
        busy = {t: s for t, s in self.topics.items() if s.records}
        families: dict[str, dict[str, float]] = {}
        for name, s in busy.items():
            family = topics.family_of(name)
            label = family.template.name if family is not None else name
            f = families.setdefault(label, {"topics": 0, "records": 0, "bytes": 0.0})
            f["topics"] += 1
            f["records"] += s.records
            f["bytes"] += s.records * s.mean_bytes
        return {
            "records": self.records,
            "records_per_submission": round(self.records / per, 2),
            "topics": {
                label: {
                    "topics": int(f["topics"]),
                    "records": int(f["records"]),
                    "per_submission": round(f["records"] / per, 3),
                    "mean_bytes": round(f["bytes"] / max(f["records"], 1)),
                }
                for label, f in sorted(families.items())
            },
            "services": {
                name: {
                    "inputs": len(shape.inputs),
                    "input_partitions": sum(self.topics[t].partitions for t in shape.inputs),
                    "in_per_submission": round(
                        sum(self.topics[t].records for t in shape.inputs) / per, 3
                    ),
                    "out_per_submission": round(
                        sum(self.topics[t].records for t in self.outputs(name)) / per, 3
                    ),
                }
                for name, shape in self.services.items()
            },
            "unattributed": self.unattributed,
        }

    def outputs(self, service: str) -> set[str]:
        return {o for routes in self.services[service].routes.values() for o in routes}


def derive(
    roles: Roles, seen: Iterable[Seen], headers: Mapping[str, list[tuple[str, str]]]
) -> Topology:
    """The topology of the phase from the records it produced (see the module docstring)."""
    records = list(seen)
    shapes = {t: TopicShape(partitions=p) for t, p in roles.partitions.items()}
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    topic_of: dict[str, str] = {}
    for r in records:
        if r.topic not in shapes:
            continue
        shapes[r.topic].records += 1
        s = sums[r.topic]
        s[0] += r.key_bytes
        s[1] += r.value_bytes
        s[2] += r.header_bytes
        if r.event_id:
            topic_of.setdefault(r.event_id, r.topic)
    for t, (k, v, h) in sums.items():
        n = shapes[t].records
        shapes[t].key_bytes, shapes[t].value_bytes, shapes[t].header_bytes = k / n, v / n, h / n
        shapes[t].headers = list(headers.get(t, []))

    caused: dict[tuple[str, str], int] = defaultdict(int)
    uncaused: dict[str, int] = defaultdict(int)
    for r in records:
        producer = roles.producer.get(r.topic)
        if producer is None:
            continue
        cause_topic = topic_of.get(r.cause_id)
        if cause_topic is not None and producer in roles.consumers.get(cause_topic, ()):
            caused[(cause_topic, r.topic)] += 1
        else:
            uncaused[r.topic] += 1

    services: dict[str, ServiceShape] = {}
    unattributed: dict[str, int] = {}
    for service in SERVICES:
        inputs = roles.inputs(service)
        total_in = sum(shapes[i].records for i in inputs)
        routes: dict[str, dict[str, float]] = {}
        for i in inputs:
            if not shapes[i].records:
                continue
            out = {
                o: n / shapes[i].records
                for (src, o), n in caused.items()
                if src == i and roles.producer.get(o) == service
            }
            for o, n in uncaused.items():
                if roles.producer.get(o) == service and total_in:
                    out[o] = out.get(o, 0.0) + n / total_in
            if out:
                routes[i] = dict(sorted(out.items()))
        services[service] = ServiceShape(inputs, routes)
        if not total_in:
            unattributed |= {o: n for o, n in uncaused.items() if roles.producer.get(o) == service}
    sources = {
        t: s.records for t, s in shapes.items() if s.records and roles.producer.get(t) is None
    }
    return Topology(shapes, services, sources, unattributed)


def as_json(topology: Topology) -> dict[str, Any]:
    """The whole topology (topology.json next to bench.json), busy topics only."""
    return {
        "sources": topology.sources,
        "unattributed": topology.unattributed,
        "topics": {
            t: {
                "partitions": s.partitions,
                "records": s.records,
                "key_bytes": round(s.key_bytes, 1),
                "value_bytes": round(s.value_bytes, 1),
                "header_bytes": round(s.header_bytes, 1),
            }
            for t, s in topology.topics.items()
            if s.records
        },
        "services": {
            name: {
                "inputs": shape.inputs,
                "routes": {
                    i: {o: round(r, 6) for o, r in routes.items()}
                    for i, routes in shape.routes.items()
                },
            }
            for name, shape in topology.services.items()
        },
    }


# ----- reading the phase back -----


async def partitions_of(kafka: KafkaConnection, names: Iterable[str]) -> list[TopicPartition]:
    """The partitions of those of ``names`` that exist."""
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        described = await admin.describe_topics(sorted(set(names) & existing))
    finally:
        await admin.close()
    return [
        TopicPartition(t["topic"], p["partition"])
        for t in described
        if not t.get("error_code")
        for p in t["partitions"]
    ]


async def end_offsets(
    kafka: KafkaConnection, tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    return (await log_offsets(kafka, tps))[1]


async def log_offsets(
    kafka: KafkaConnection, tps: list[TopicPartition]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """The first and the end offsets of ``tps``, in one metadata round trip: assigned first, so
    that aiokafka asks for every topic's metadata at once (without, a fresh consumer learns
    about one topic per retry, 0.1 s each: half a minute for the few hundred of a run)."""
    if not tps:
        return {}, {}
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        return dict(await consumer.beginning_offsets(tps)), dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


def _header_bytes(headers: Iterable[tuple[str, bytes]]) -> int:
    return sum(len(k.encode()) + len(v or b"") for k, v in headers)


async def read_back(
    kafka: KafkaConnection,
    before: Mapping[TopicPartition, int],
    after: Mapping[TopicPartition, int],
    timeout_s: float = 300,
) -> tuple[list[Seen], dict[str, list[tuple[str, str]]]]:
    """Every record between the two offsets of each partition, and one record's headers per
    topic (names, hex values)."""
    wanted = {tp: (before.get(tp, 0), end) for tp, end in after.items() if end > before.get(tp, 0)}
    seen: list[Seen] = []
    samples: dict[str, list[tuple[str, str]]] = {}
    if not wanted:
        return seen, samples
    consumer = AIOKafkaConsumer(
        **kafka.client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 2**20,
    )
    await consumer.start()
    try:
        consumer.assign(list(wanted))
        for tp, (start, _) in wanted.items():
            consumer.seek(tp, start)
        left = set(wanted)
        deadline = time.monotonic() + timeout_s
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read back {len(left)} partitions: {sorted(left)}")
            batches = await consumer.getmany(*left, timeout_ms=1000, max_records=5000)
            for tp, batch in batches.items():
                end = wanted[tp][1]
                for r in batch:
                    if r.offset >= end:
                        break
                    h = {k: v for k, v in r.headers or ()}
                    seen.append(
                        Seen(
                            tp.topic,
                            (h.get("ce_id") or b"").decode(errors="replace"),
                            (h.get("ce_causationid") or b"").decode(errors="replace"),
                            len(r.key or b""),
                            len(r.value or b""),
                            _header_bytes(r.headers or ()),
                        )
                    )
                    samples.setdefault(
                        tp.topic, [(k, (v or b"").hex()) for k, v in r.headers or ()]
                    )
                if await consumer.position(tp) >= end:
                    left.discard(tp)
    finally:
        await consumer.stop()
    return seen, samples


# ----- the raw run -----


def scratch(run_id: str, topic: str) -> str:
    return f"{SCRATCH_PREFIX}{run_id}.{topic}"


def _record_shape(shape: TopicShape) -> dict[str, Any]:
    return {
        "key_bytes": max(round(shape.key_bytes), 1),
        "value_bytes": round(shape.value_bytes),
        "headers": shape.headers,
    }


def process_spec(topology: Topology, run_id: str) -> dict[str, Any]:
    """What each raw process needs (JSON): its group, input copies, routes and record shapes."""
    used = {o for s in topology.services for o in topology.outputs(s)}
    return {
        "services": {
            name: {
                "group": f"{SCRATCH_PREFIX}{run_id}.{name}",
                "inputs": [scratch(run_id, t) for t in shape.inputs],
                "routes": {
                    scratch(run_id, i): [[scratch(run_id, o), r] for o, r in routes.items()]
                    for i, routes in shape.routes.items()
                },
            }
            for name, shape in topology.services.items()
        },
        "records": {scratch(run_id, t): _record_shape(topology.topics[t]) for t in sorted(used)},
    }


@dataclass(frozen=True)
class RawResult:
    submissions: int
    messages: int
    wall_s: float
    cpu_seconds: dict[str, float]


class RawTopology:
    """Scratch topics and ``instances`` raw processes per service for one topology."""

    def __init__(self, kafka: KafkaConnection, topology: Topology, instances: int = 1) -> None:
        self.kafka = kafka
        self.topology = topology
        self.instances = instances
        self.run_id = uuid.uuid4().hex[:8]
        self._dir = Path(tempfile.mkdtemp(prefix="bench-topo-"))
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        wanted = {t for s in topology.services.values() for t in s.inputs}
        wanted |= {t for t, s in topology.topics.items() if s.records}
        self.topics = {t: topology.topics[t].partitions for t in sorted(wanted)}

    @property
    def scratch_topics(self) -> list[str]:
        return [scratch(self.run_id, t) for t in self.topics]

    async def start(self, ready_timeout_s: float = 120) -> None:
        await ensure_topics(
            self.kafka,
            [
                TopicSpec(scratch(self.run_id, t), Owner.OPERATORS, "key", p)
                for t, p in self.topics.items()
            ],
        )
        spec = self._dir / "spec.json"
        spec.write_text(json.dumps(process_spec(self.topology, self.run_id)))
        self._spawn(spec)
        await self._wait_assigned(ready_timeout_s)

    def _spawn(self, spec: Path) -> None:
        for service in self.topology.services:
            for n in range(1, self.instances + 1):
                name = f"raw-{service}" + (f"-{n}" if self.instances > 1 else "")
                ready = str(self._dir / f"{name}.ready")
                self.processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "tests.bench.topology", str(spec), service, ready],
                    env=os.environ.copy(),
                )

    async def _wait_assigned(self, timeout_s: float) -> None:
        """Until every group has all its partitions spread over all its processes."""
        deadline = time.monotonic() + timeout_s
        while True:
            ready = True
            for service, shape in self.topology.services.items():
                total = sum(self.topology.topics[t].partitions for t in shape.inputs)
                counts = []
                for name in self.processes:
                    if name.startswith(f"raw-{service}"):
                        path = self._dir / f"{name}.ready"
                        counts.append(int(path.read_text() or 0) if path.exists() else 0)
                if sum(counts) != total or not all(counts):
                    ready = False
            for name, p in self.processes.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode}")
            if ready:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("raw topology processes not assigned their partitions")
            await asyncio.sleep(0.5)

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items()}

    async def feed(self, scale: float = 1.0, seed: int = 0) -> float:
        """Send the sources' records (times ``scale``) as fast as one producer takes them;
        returns the wall-clock time (time.time()) the first was sent."""
        rng = random.Random(seed)
        order = [t for t, n in self.topology.sources.items() for _ in range(round(n * scale))]
        rng.shuffle(order)
        shapes = {t: _record_shape(self.topology.topics[t]) for t in self.topology.sources}
        producer = AIOKafkaProducer(
            **self.kafka.client_kwargs(), acks="all", enable_idempotence=True, linger_ms=5
        )
        await producer.start()
        try:
            started = time.time()
            pending = []
            for t in order:
                value, key, headers = _synthetic(shapes[t], rng)
                pending.append(
                    await producer.send(scratch(self.run_id, t), value, key=key, headers=headers)
                )
                if len(pending) >= 500:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
            return started
        finally:
            await producer.stop()

    async def drain(self, timeout_s: float = 600) -> float:
        """Until every raw group has consumed all of its inputs; the time.time() it was so."""
        groups = {
            f"{SCRATCH_PREFIX}{self.run_id}.{s}": [scratch(self.run_id, t) for t in shape.inputs]
            for s, shape in self.topology.services.items()
        }
        deadline = time.monotonic() + timeout_s
        while True:
            left = await group_lag(self.kafka, groups)
            if not any(left.values()):
                return time.time()
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw topology did not drain within {timeout_s} s: {left}")
            for name, p in self.processes.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode}")
            await asyncio.sleep(0.5)

    async def stop(self) -> None:
        for p in self.processes.values():
            p.send_signal(signal.SIGTERM)
        for p in self.processes.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self._dir, ignore_errors=True)
        admin = AIOKafkaAdminClient(**self.kafka.client_kwargs())
        await admin.start()
        try:
            with contextlib.suppress(Exception):
                await admin.delete_topics(self.scratch_topics)
        finally:
            await admin.close()


def _synthetic(
    shape: Mapping[str, Any], rng: random.Random
) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """A record of the shape: a random key (spread over the partitions as the real keys are),
    a filler value of the mean size, a real record's headers."""
    key = rng.randbytes(shape["key_bytes"] // 2 + 1).hex()[: shape["key_bytes"]].encode()
    value = b"x" * shape["value_bytes"]
    return value, key, [(k, bytes.fromhex(v)) for k, v in shape["headers"]]


async def group_lag(kafka: KafkaConnection, groups: Mapping[str, list[str]]) -> dict[str, int]:
    """Per group: records of its topics it has not committed (from the log start where it never
    committed). The same as tests/chaos/invariants.lag, in well under a second for the few
    hundred topics of a run (see :func:`end_offsets`)."""
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        committed = {
            g: {tp: m.offset for tp, m in (await admin.list_consumer_group_offsets(g)).items()}
            for g in groups
        }
        described = await admin.describe_topics(sorted({t for ts in groups.values() for t in ts}))
    finally:
        await admin.close()
    partitions = {
        t["topic"]: [TopicPartition(t["topic"], p["partition"]) for p in t["partitions"]]
        for t in described
    }
    every = [tp for tps in partitions.values() for tp in tps]
    starts, ends = await log_offsets(kafka, every)
    return {
        g: sum(
            max(ends.get(tp, 0) - committed[g].get(tp, starts.get(tp, 0)), 0)
            for t in ts
            for tp in partitions.get(t, [])
        )
        for g, ts in groups.items()
    }


# ----- one raw process -----


@dataclass
class _Route:
    topic: str
    ratio: float
    credit: float = 0.5  # so that the records produced round to the nearest count


class _Assigned(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: AIOKafkaConsumer, ready: Path) -> None:
        self._consumer = consumer
        self._ready = ready

    def _write(self, n: int) -> None:
        tmp = self._ready.with_suffix(".tmp")
        tmp.write_text(str(n))
        tmp.replace(self._ready)

    async def on_partitions_revoked(self, revoked: object) -> None:
        self._write(0)

    async def on_partitions_assigned(self, assigned: object) -> None:
        self._write(len(self._consumer.assignment()))


async def relay(kafka: KafkaConnection, spec: Mapping[str, Any], service: str, ready: Path) -> None:
    """Consume the service's input copies; per record in, produce each route's share of
    records; commit after the batch's records are acknowledged. Until SIGTERM."""
    mine = spec["services"][service]
    routes = {i: [_Route(o, float(r)) for o, r in rs] for i, rs in mine["routes"].items()}
    rng = random.Random(f"{service}-{os.getpid()}")
    shapes = spec["records"]
    consumer = AIOKafkaConsumer(
        **kafka.client_kwargs(),
        group_id=mine["group"],
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_interval_ms=5 * 60 * 1000,
    )
    producer = AIOKafkaProducer(
        **kafka.client_kwargs(), acks="all", enable_idempotence=True, linger_ms=5
    )
    await consumer.start()
    await producer.start()
    consumer.subscribe(topics=mine["inputs"], listener=_Assigned(consumer, ready))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=BATCH)
            sends = []
            for tp, records in batches.items():
                for route in routes.get(tp.topic, ()):
                    route.credit += route.ratio * len(records)
                    while route.credit >= 1:
                        route.credit -= 1
                        value, key, headers = _synthetic(shapes[route.topic], rng)
                        sends.append(
                            await producer.send(route.topic, value, key=key, headers=headers)
                        )
            if sends:
                await asyncio.gather(*sends)
            if batches:
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


def main() -> None:
    spec_path, service, ready = sys.argv[1:4]
    spec = json.loads(Path(spec_path).read_text())
    asyncio.run(relay(KafkaConnection.from_env(), spec, service, Path(ready)))


if __name__ == "__main__":
    main()
