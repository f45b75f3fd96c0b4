"""One `make bench` run: start the services (or use running ones), build the directory and the
agencies, then

1. throughput: all submissions at once, as fast as the referrers' producers send them; the
   sustained rate is taken between 10 % and 90 % of completions;
2. latency at half that rate: submissions paced at half the measured rate for a while;
3. what the metrics cost: the throughput phase again in fresh processes, with the metrics off
   (``<SERVICE>_METRICS_ENABLED=false``) and on, alternating;
4. the raw baselines on the same broker: the 3-hop aiokafka chain with the same number of
   messages, and the pipeline's own topology (tests/bench/topology: the records the throughput
   phase produced, per topic, size and fan-out, through one raw process per service instance);
5. the matching micro-benchmark at 10,000 listings;

and report targets, resources, JSON, markdown and a PNG. With ``--instances N`` every service runs
as N processes in its consumer group (HTTP ports 10 apart), to see how throughput scales and that
nothing is applied twice."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shared.contracts import topics
from shared.kafka.connection import KafkaConnection
from tests import factories as f
from tests.chaos.processes import ServiceProcess

from . import baseline, dbstats, topology
from .matching import benchmark_matching
from .pipeline import InboxWatcher, Traffic, percentile, send_submissions, sustained_rate
from .profiling import Profiler
from .resources import ResourceMeter, find_service_pids, pid_from_file
from .world import World, build_world, submission

console = Console()
SERVICES = ("intake", "referral", "notification")


@dataclass(frozen=True)
class Options:
    submissions: int = 10_000
    latency_seconds: float = 30.0  # how long the half-rate phase sends
    latency_rate: float = 0.0  # the latency phase's rate (submissions/s); 0: half the measured
    referrers: int = 8
    providers: int = 80
    listings: int = 2_000
    matching_listings: int = 10_000
    matching_queries: int = 2_000
    baseline: bool = True  # the raw 3-hop chain
    topology_baseline: bool = True  # the raw run of the pipeline's own topology (topology.py)
    metrics_baseline: bool = True  # throughput with the metrics off and on (their cost)
    metrics_rounds: int = 2  # off/on pairs of that comparison
    instances: int = 1  # processes per service, in one consumer group (scale-out check)
    matching: bool = True  # the matching micro-benchmark (needs BENCH_MATCHING_DATABASE_URL)
    use_running: bool = False  # measure a system started by `make run` instead of starting one
    profile: bool = False  # py-spy the services during the throughput phase (tests/bench/profiling)
    stall_timeout_s: float = 120.0  # no completion for this long: the run fails
    seed: int = 11


def instance_names(instances: int) -> list[tuple[str, str, int]]:
    """(process name, service, n) of every service process: ``intake`` with one instance,
    ``intake-1``, ``intake-2``… with more."""
    return [
        (s if instances == 1 else f"{s}-{n + 1}", s, n) for s in SERVICES for n in range(instances)
    ]


# Every service without its /metrics, its Prometheus middleware and its gauge jobs.
METRICS_OFF = {f"{s.upper()}_METRICS_ENABLED": "false" for s in SERVICES}


def _start_services(
    log_dir: Path, instances: int, extra_env: dict[str, str] | None = None
) -> list[ServiceProcess]:
    processes = [
        ServiceProcess(
            name,
            s,
            int(os.environ[f"{s.upper()}_HTTP_PORT"]) + 10 * n,
            log_dir / f"{name}.log",
            extra_env=dict(extra_env or {}),
        )
        for name, s, n in instance_names(instances)
    ]
    for p in processes:
        p.start()
    for p in processes:
        p.wait_ready(timeout=120)
    return processes


def _meter(services: dict[str, int]) -> ResourceMeter:
    meter = ResourceMeter()
    for name, pid in services.items():
        meter.add(name, pid)
    kafka_pid = pid_from_file(Path(os.environ.get("BENCH_KAFKA_PID_FILE", "/nonexistent")))
    pg_pid = pid_from_file(Path(os.environ.get("BENCH_PG_PID_FILE", "/nonexistent")))
    if kafka_pid:
        meter.add("kafka", kafka_pid)
    if pg_pid:
        meter.add("postgresql", pg_pid, with_children=True)
    return meter


async def _count(url: str, sql: str, *args: Any) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


async def wait_for_directory(world: World, timeout_s: float = 300) -> float:
    """Until referral has every listing and every service every agency of the run."""
    started = time.monotonic()
    prefix = f"bench-{world.run_id}-%"
    wanted = {
        ("REFERRAL_DATABASE_URL", "listings"): len(world.listings),
        **{(f"{s.upper()}_DATABASE_URL", "agencies"): len(world.agency_ids) for s in SERVICES},
    }
    while True:
        counts = {
            key: await _count(
                os.environ[key[0]], f"SELECT count(*) FROM {key[1]} WHERE agency_id LIKE $1", prefix
            )
            for key in wanted
        }
        if all(counts[k] >= n for k, n in wanted.items()):
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"directory not materialised after {timeout_s} s: {counts}")
        await asyncio.sleep(1)


async def drain(kafka: KafkaConnection, world: World, timeout_s: float = 600) -> float:
    """Until every service group has consumed everything of this run it consumes (e.g. the
    disclosures that follow the needs the bench waits for); returns the wall-clock time
    (time.time()) it was so. Asked every 0.5 s; one question takes a fraction of a second."""
    roles = topology.roles(world.agency_ids)
    groups = {s: roles.inputs(s) for s in SERVICES}
    deadline = time.monotonic() + timeout_s
    while True:
        left = await topology.group_lag(kafka, groups)
        if not any(left.values()):
            return time.time()
        if time.monotonic() > deadline:
            raise TimeoutError(f"the services did not catch up within {timeout_s} s: {left}")
        await asyncio.sleep(0.5)


async def _phase(
    kafka: KafkaConnection,
    world: World,
    watcher: InboxWatcher,
    meter: ResourceMeter,
    options: Options,
    *,
    label: str,
    count: int,
    rate_per_s: float | None,
    seed: int,
) -> tuple[Traffic, dict[str, float], float]:
    """Send, wait for every need to reach an inbox and every service to be idle again; the
    traffic, the CPU-seconds and the wall time of all that."""
    traffic = Traffic()
    watcher.phases.append(traffic)
    cpu_before = meter.cpu_snapshot()
    started = time.time()
    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        sent_bar = progress.add_task(f"{label}: sent", total=count)
        done_bar = progress.add_task(f"{label}: in the inboxes", total=count)
        sender = asyncio.create_task(
            send_submissions(
                world,
                traffic,
                count=count,
                rate_per_s=rate_per_s,
                seed=seed,
                on_sent=lambda n: progress.advance(sent_bar, n),
            )
        )
        last_done, last_change = 0, time.monotonic()
        while not (sender.done() and traffic.pending == 0):
            await asyncio.sleep(0.25)
            done = len(traffic.completed_at)
            progress.update(done_bar, completed=done)
            if done != last_done:
                last_done, last_change = done, time.monotonic()
            elif time.monotonic() - last_change > options.stall_timeout_s:
                sender.cancel()
                raise TimeoutError(
                    f"{label}: no submission completed for {options.stall_timeout_s} s "
                    f"({done} of {count} complete)"
                )
        await sender
    wall = await drain(kafka, world) - started
    cpu = meter.usage(cpu_before, meter.cpu_snapshot(), wall).cpu_seconds
    return traffic, cpu, wall


def _latency(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 0.5), 1),
        "p95_ms": round(percentile(values, 0.95), 1),
        "p99_ms": round(percentile(values, 0.99), 1),
        "max_ms": round(values[-1], 1) if values else float("nan"),
    }


async def _metrics_cost(
    kafka: KafkaConnection,
    world: World,
    watcher: InboxWatcher,
    options: Options,
    out_dir: Path,
    processes: list[ServiceProcess],
) -> dict[str, Any]:
    """The throughput phase with the metrics off and on, alternating (off, on, on, off… for
    ``metrics_rounds`` rounds), each in freshly started processes (``processes`` is changed in
    place, so the caller stops the last ones). Alternating spreads the database's growth and the
    machine's other work over both; the cost is taken from the totals."""
    runs: dict[str, list[dict[str, float]]] = {"metrics_off": [], "metrics_on": []}
    # off, on, on, off…: the runs speed up as the broker and the database warm, and this order
    # (ABBA) cancels such a steady trend, which off-then-on would credit to the metrics.
    pair: list[tuple[str, dict[str, str]]] = [("metrics_off", METRICS_OFF), ("metrics_on", {})]
    plan = [
        step for n in range(options.metrics_rounds) for step in pair[:: 1 if n % 2 == 0 else -1]
    ]
    for n, (label, env) in enumerate(plan):
        for p in processes:
            p.stop()
        processes[:] = _start_services(out_dir, options.instances, env)
        meter = _meter({p.name: p.process.pid for p in processes if p.process is not None})
        await _phase(kafka, world, watcher, meter, options, label=f"{label}: warm-up",
                     count=50, rate_per_s=None, seed=options.seed + 10 + n)  # fmt: skip
        _, cpu, wall = await _phase(
            kafka, world, watcher, meter, options, label=label.replace("_", " "),
            count=options.submissions, rate_per_s=None, seed=options.seed + 100 + n,
        )  # fmt: skip
        services = {p.name for p in processes}
        runs[label].append(
            {
                "wall_s": wall,
                "cpu_s": sum(cpu.values()),
                # the services' own share: what the metrics add to, less blurred by the broker
                # and the database
                "service_cpu_s": sum(v for k, v in cpu.items() if k in services),
            }
        )

    def summary(label: str) -> dict[str, Any]:
        wall = sum(r["wall_s"] for r in runs[label])
        submissions = options.submissions * len(runs[label])
        return {
            "submissions_per_s": round(submissions / wall, 1),
            "cpu_ms_per_submission": round(
                sum(r["cpu_s"] for r in runs[label]) * 1000 / submissions, 2
            ),
            "service_cpu_ms_per_submission": round(
                sum(r["service_cpu_s"] for r in runs[label]) * 1000 / submissions, 2
            ),
            "rounds_submissions_per_s": [
                round(options.submissions / r["wall_s"], 1) for r in runs[label]
            ],
        }

    off, on = summary("metrics_off"), summary("metrics_on")
    return {
        "metrics_off": off,
        "metrics_on": on,
        # the share of throughput the metrics take (negative: on was faster, i.e. noise)
        "throughput_cost": round(1 - on["submissions_per_s"] / off["submissions_per_s"], 3),
        "cpu_cost": round(on["cpu_ms_per_submission"] / off["cpu_ms_per_submission"] - 1, 3),
        "service_cpu_cost": round(
            on["service_cpu_ms_per_submission"] / off["service_cpu_ms_per_submission"] - 1, 3
        ),
    }


async def _baseline(kafka: KafkaConnection, world: World, count: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    bodies = [f.submission_event(submission(world, rng)).body for _ in range(200)]
    chain = baseline.Chain(kafka)
    await chain.start()
    meter = ResourceMeter()
    for n, pid in enumerate(chain.pids()):
        meter.add(f"hop{n + 1}", pid)
    try:
        cpu_before = meter.cpu_snapshot()
        started, arrivals = await baseline.drive(chain, bodies, count)
        wall = max(arrivals) - started
        usage = meter.usage(cpu_before, meter.cpu_snapshot(), wall)
    finally:
        await chain.stop()
    return {
        "messages": count,
        "messages_per_s": round(count / wall, 1),
        "wall_s": round(wall, 1),
        "cpu_cores": usage.cores(),
    }


async def _topology_baseline(
    kafka: KafkaConnection, topo: topology.Topology, options: Options, seed: int
) -> dict[str, Any]:
    """The pipeline's topology through raw processes (one per service instance), timed as the
    pipeline's throughput phase is: from the first send until every group has consumed all."""
    raw = topology.RawTopology(kafka, topo, options.instances)
    submissions = sum(
        n for t, n in topo.sources.items() if topics.AGENCY_SUBMISSIONS.agency_of(t) is not None
    )
    await raw.start()
    meter = ResourceMeter()
    for name, pid in raw.pids().items():
        meter.add(name, pid)
    kafka_pid = pid_from_file(Path(os.environ.get("BENCH_KAFKA_PID_FILE", "/nonexistent")))
    if kafka_pid:
        meter.add("kafka", kafka_pid)  # the broker's share of the raw run
    tps = [
        TopicPartition(topology.scratch(raw.run_id, t), p)
        for t, n in raw.topics.items()
        for p in range(n)
    ]
    try:
        # warm-up: about 50 submissions' worth (connections, metadata of every output topic)
        await raw.feed(min(1.0, 50 / max(submissions, 1)), seed=seed)
        await raw.drain()
        before = await topology.end_offsets(kafka, tps)
        cpu_before = meter.cpu_snapshot()
        started = await raw.feed(1.0, seed=seed + 1)
        wall = await raw.drain() - started
        usage = meter.usage(cpu_before, meter.cpu_snapshot(), wall)
        after = await topology.end_offsets(kafka, tps)
    finally:
        await raw.stop()
    messages = sum(after[tp] - before.get(tp, 0) for tp in after)
    return {
        "processes": len(raw.processes),
        "submissions": submissions,
        "submissions_per_s": round(submissions / wall, 1),
        "messages": messages,
        "messages_per_s": round(messages / wall, 1),
        "wall_s": round(wall, 1),
        "cpu_cores": usage.cores(),
        "topology": topo.summary(submissions),
    }


async def _matching(options: Options) -> dict[str, Any] | None:
    url = os.environ.get("BENCH_MATCHING_DATABASE_URL")
    if not options.matching:
        return None
    if not url:
        console.print("[yellow]matching micro-benchmark skipped: no BENCH_MATCHING_DATABASE_URL")
        return None
    console.print(f"matching micro-benchmark: {options.matching_listings:,} listings …")
    return await benchmark_matching(
        url,
        listings=options.matching_listings,
        queries=options.matching_queries,
        seed=options.seed,
    )


async def run(options: Options, out_dir: Path) -> dict[str, Any]:
    kafka = KafkaConnection.from_env()
    processes: list[ServiceProcess] = []
    if options.use_running:
        pids = {s: find_service_pids(s) for s in SERVICES}
        missing = [s for s, found in pids.items() if not found]
        if missing:
            raise RuntimeError(f"--use-running: no running {', '.join(missing)} (make run?)")
        services = {f"{s}-{n + 1}": pid for s, found in pids.items() for n, pid in enumerate(found)}
    else:
        processes = _start_services(out_dir, options.instances)
        services = {p.name: p.process.pid for p in processes if p.process is not None}
    meter = _meter(services)
    meter.start_sampling()
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            # other work on the machine: the 1-minute load average at the start and the end
            "load_average": [round(os.getloadavg()[0], 1)],
        },
        "options": asdict(options),
        "services": list(services),
    }
    try:
        console.print(
            f"directory: {options.providers} providers, {options.referrers} referrers, "
            f"{options.listings:,} listings …"
        )
        world = await build_world(
            kafka,
            referrers=options.referrers,
            providers=options.providers,
            listings=options.listings,
            seed=options.seed,
        )
        settle_s = await wait_for_directory(world)
        result["directory"] = {
            "listings": len(world.listings),
            "providers": options.providers,
            "referrers": options.referrers,
            "countries": len(world.tree.countries),
            "districts": len(world.tree.all_districts()),
            "materialised_after_s": round(settle_s, 1),
        }
        watcher = InboxWatcher(kafka, world)
        await watcher.start()
        try:
            await _phase(kafka, world, watcher, meter, options, label="warm-up", count=50,
                         rate_per_s=None, seed=options.seed + 1)  # fmt: skip
            profiler = Profiler(out_dir) if options.profile else None
            if profiler is not None:
                profiler.start(services)
            stats_dsn = os.environ.get("BENCH_PG_STATS_DSN")
            if stats_dsn:
                await dbstats.reset(stats_dsn)
            # Every topic of the run, counted before and after: what the phase produced.
            roles = topology.roles(world.agency_ids)
            census = await topology.partitions_of(kafka, roles.partitions)
            offsets_before = await topology.end_offsets(kafka, census)
            traffic, cpu, wall = await _phase(
                kafka, world, watcher, meter, options, label="throughput",
                count=options.submissions, rate_per_s=None, seed=options.seed + 2,
            )  # fmt: skip
            if stats_dsn:
                counted = await dbstats.statements(stats_dsn, list(SERVICES))
                result["sql_per_submission"] = {
                    db: {k: round(n / options.submissions, 2) for k, n in c.items()}
                    for db, c in counted.items()
                }
                result["sql_per_submission"]["total"] = {
                    k: round(sum(c[k] for c in counted.values()) / options.submissions, 2)
                    for k in ("all", "work")
                }
            if profiler is not None:
                profiler.stop()
            await asyncio.sleep(2)  # the outbox relays' last records after the groups' commits
            offsets_after = await topology.end_offsets(kafka, census)
            phase_records = sum(n - offsets_before.get(tp, 0) for tp, n in offsets_after.items())
            # All the work of every submission done (its needs in the inboxes, and the
            # disclosures and everything else after them): what the system can sustain.
            rate = options.submissions / wall
            result["throughput"] = {
                "submissions": options.submissions,
                "needs": sum(traffic.needs.values()),
                "submissions_per_s": round(rate, 1),
                "inbox_events_per_s": round(len(traffic.inbox_events) / wall, 1),
                # the steady part of the needs reaching the inboxes (10 % to 90 %)
                "completion_rate_per_s": round(
                    sustained_rate(list(traffic.completed_at.values())), 1
                ),
                "inbox_events": len(traffic.inbox_events),
                "messages": phase_records,  # every record of the phase, on every topic
                "messages_per_s": round(phase_records / wall, 1),
                "ends": traffic.ends,
                "wall_s": round(wall, 1),
                **_latency(traffic.latencies_ms()),
            }
            peaks = meter.peaks_mb()
            result["resources"] = {
                name: {
                    "cpu_cores": round(cpu[name] / wall, 2),
                    "cpu_ms_per_submission": round(cpu[name] * 1000 / options.submissions, 2),
                    "peak_rss_mb": peaks[name],
                }
                for name in cpu
            }
            result["throughput"]["cpu_ms_per_submission"] = round(
                sum(cpu.values()) * 1000 / options.submissions, 2
            )
            half_rate = options.latency_rate or max(rate / 2, 1.0)
            half, _, _ = await _phase(
                kafka, world, watcher, meter, options, label="half rate",
                count=max(int(half_rate * options.latency_seconds), 100),
                rate_per_s=half_rate, seed=options.seed + 3,
            )  # fmt: skip
            result["latency_at_half_rate"] = {
                "rate_per_s": round(half_rate, 1),
                "submissions": len(half.needs),
                **_latency(half.latencies_ms()),
            }
            # Nothing applied twice, in any phase (tests/bench/pipeline: Traffic).
            result["exactly_once"] = {
                "duplicate_need_ends": sum(p.duplicate_need_ends for p in watcher.phases),
                "duplicate_inbox_events": sum(p.duplicate_inbox_events for p in watcher.phases),
                "redelivered": sum(p.redelivered for p in watcher.phases),
                "inbox_events": sum(len(p.inbox_events) for p in watcher.phases),
            }
            result["latencies_ms"] = {
                f"saturation ({rate:.0f}/s)": traffic.latencies_ms(),
                f"half rate ({half_rate:.0f}/s)": half.latencies_ms(),
            }
            for name, peak in meter.peaks_mb().items():
                result["resources"][name]["peak_rss_mb"] = peak
            if options.metrics_baseline and not options.use_running:
                result["metrics_cost"] = await _metrics_cost(
                    kafka, world, watcher, options, out_dir, processes
                )
        finally:
            await watcher.stop()
            for agency in world.referrers:
                await agency.stop()
        if options.baseline:
            console.print(f"raw baseline: {options.submissions:,} messages through 3 hops …")
            result["baseline"] = await _baseline(kafka, world, options.submissions, options.seed)
            result["baseline"]["ratio"] = round(
                result["throughput"]["submissions_per_s"]
                / max(result["baseline"]["messages_per_s"], 1e-9),
                3,
            )
        if options.topology_baseline:
            seen, headers = await topology.read_back(kafka, offsets_before, offsets_after)
            topo = topology.derive(roles, seen, headers)
            (out_dir / "topology.json").write_text(
                json.dumps(topology.as_json(topo), indent=1) + "\n"
            )
            console.print(
                f"raw baseline, same topology: {topo.records:,} records on "
                f"{sum(1 for s in topo.topics.values() if s.records)} topics, "
                f"{options.instances} process(es) per service …"
            )
            result["topology_baseline"] = await _topology_baseline(
                kafka, topo, options, options.seed
            )
            result["topology_baseline"]["ratio"] = round(
                result["throughput"]["submissions_per_s"]
                / max(result["topology_baseline"]["submissions_per_s"], 1e-9),
                3,
            )
        matching = await _matching(options)
        if matching is not None:
            result["matching"] = matching
    finally:
        await meter.stop_sampling()
        for p in processes:
            p.stop()
    result["machine"]["load_average"].append(round(os.getloadavg()[0], 1))
    return result
