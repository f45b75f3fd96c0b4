"""One chaos run: start the services (referral twice, one group), build agencies, stream
submissions with poison records while providers answer, inject faults on a schedule, let the
system settle, then check the invariants from outside and report."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from rich.console import Console
from rich.table import Table

from shared.contracts import topics
from shared.kafka.connection import KafkaConnection

from . import cluster, invariants
from .processes import ServiceProcess, restart
from .traffic import Sent, WebhookReceiver, World, build_world, respond, stream

console = Console()


@dataclass(frozen=True)
class Plan:
    submissions: int = 1000
    rate_per_s: float = 10.0  # what this 2-core machine processes with room to spare
    kills: int = 10
    broker_restarts: int = 1
    postgres_restarts: int = 1
    freezes: int = 1
    freeze_s: float = 15.0  # past aiokafka's 10 s session timeout: the group rebalances
    poison_every: int = 100
    referrers: int = 3
    providers: int = 4
    sla_s: float = 20.0  # unanswered referrals expire and are re-routed during the run
    settle_timeout_s: float = 600.0
    seed: int = 7
    # A replicated cluster's own faults (REFEX_KAFKA_BROKERS=3; make chaos-cluster sets them):
    # the busiest partitions' leader SIGKILLed and restarted, a node stopped for broker_stop_s,
    # the active controller restarted, a node cut off the network for partition_s
    # (REFEX_KAFKA_NETNS=1).
    leader_bounces: int = 0
    broker_stops: int = 0
    broker_stop_s: float = 60.0
    controller_restarts: int = 0
    network_partitions: int = 0
    partition_s: float = 30.0


@dataclass
class Fault:
    kind: str
    target: str
    at_s: float
    recovery_s: float = 0.0
    detail: str = ""  # e.g. which broker node a cluster fault hit


@dataclass
class Report:
    plan: Plan
    faults: list[Fault] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)
    checked: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    final_lag: dict[str, int] = field(default_factory=dict)
    dead_processes: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def unexamined(self) -> list[str]:
        """Families of checks that examined nothing (they would pass by silence)."""
        return [name for name in invariants.FAMILIES if not self.checked.get(name)]

    @property
    def passed(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or any(self.final_lag.values())
            or self.dead_processes
            or self.unexamined
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _processes(log_dir: Path, extra: dict[str, str]) -> dict[str, ServiceProcess]:
    port = {
        s: int(os.environ[f"{s.upper()}_HTTP_PORT"]) for s in ("intake", "referral", "notification")
    }
    return {
        "intake": ServiceProcess("intake", "intake", port["intake"], log_dir / "intake.log", extra),
        "referral-1": ServiceProcess(
            "referral-1", "referral", port["referral"], log_dir / "referral-1.log", extra
        ),
        "referral-2": ServiceProcess(
            "referral-2", "referral", port["referral"] + 10, log_dir / "referral-2.log", extra
        ),
        "notification": ServiceProcess(
            "notification",
            "notification",
            port["notification"],
            log_dir / "notification.log",
            extra,
        ),
    }


def schedule(plan: Plan) -> list[tuple[str, str]]:
    """(kind, target) in the order injected: kills round-robin over the four instances, the
    infrastructure restarts and the freeze spread between them."""
    instances = ["intake", "referral-1", "notification", "referral-2"]
    kills = [("kill", instances[i % len(instances)]) for i in range(plan.kills)]
    others = (
        [("freeze", "referral-2")] * plan.freezes
        + [("restart", "kafka")] * plan.broker_restarts
        + [("restart", "postgres")] * plan.postgres_restarts
        + [("bounce", "kafka leader")] * plan.leader_bounces
        + [("stop", "kafka node")] * plan.broker_stops
        + [("restart", "kafka controller")] * plan.controller_restarts
        + [("partition", "kafka node")] * plan.network_partitions
    )
    # The cluster's faults spread among the others: bounces first and last, so the leaders
    # move while every other fault is in between.
    others.sort(key=lambda fault: fault[0] == "bounce")
    order: list[tuple[str, str]] = []
    step = max(len(kills) // (len(others) + 1), 1)
    for i, kill in enumerate(kills):
        order.append(kill)
        if (i + 1) % step == 0 and others:
            order.append(others.pop(0))
    return order + others


def _wait_all_ready(processes: dict[str, ServiceProcess]) -> None:
    for process in processes.values():
        process.wait_ready(timeout=120)


# What a cluster fault takes beyond its own sleep, about: the node's start, its catching up.
CLUSTER_FAULT_S = 20.0


def fault_gap(plan: Plan, order: list[tuple[str, str]], duration_s: float) -> float:
    """Seconds between faults, so that they fall within the stream: the cluster's faults last
    (a node stopped for a minute, partitioned for half of one), and are counted off the time
    the stream gives them. Without them, the stream's time over the faults, as always."""
    cluster_faults = [f for f in order if f[1].startswith("kafka ")]
    busy = (
        plan.broker_stops * plan.broker_stop_s
        + plan.network_partitions * plan.partition_s
        + len(cluster_faults) * CLUSTER_FAULT_S
    )
    return max((duration_s - busy) / (len(order) + 1), 2.0)


def check_cluster_plan(plan: Plan) -> None:
    """A cluster fault asked of one broker, or a partition without namespaces, is a mistake in
    the invocation: said at once, not after the traffic ran."""
    if (plan.leader_bounces or plan.broker_stops or plan.controller_restarts) and (
        cluster.BROKERS < 3
    ):
        raise SystemExit("cluster faults need REFEX_KAFKA_BROKERS=3 (make chaos-cluster)")
    if plan.network_partitions and not cluster.NETNS:
        raise SystemExit("a network partition needs REFEX_KAFKA_NETNS=1 (make chaos-cluster)")


async def inject_cluster_fault(
    plan: Plan, kind: str, target: str, kafka: KafkaConnection, names: set[str]
) -> str:
    if kind == "bounce":
        return await cluster.bounce_busiest_leader(kafka, names)
    if kind == "stop":
        return await cluster.stop_node(kafka, names, plan.broker_stop_s)
    if kind == "partition":
        return await cluster.partition_node(kafka, names, plan.partition_s)
    assert (kind, target) == ("restart", "kafka controller"), (kind, target)
    return await cluster.restart_controller()


async def inject(
    plan: Plan,
    processes: dict[str, ServiceProcess],
    started: float,
    duration_s: float,
    kafka: KafkaConnection | None = None,
    names: set[str] | None = None,
) -> list[Fault]:
    faults: list[Fault] = []
    order = schedule(plan)
    gap = fault_gap(plan, order, duration_s)
    for kind, target in order:
        await asyncio.sleep(gap)
        fault = Fault(kind, target, round(time.monotonic() - started, 1))
        t0 = time.monotonic()
        if kind == "kill":
            processes[target].kill()
            processes[target].start()
        elif kind == "freeze":
            processes[target].signal(signal.SIGSTOP)
            await asyncio.sleep(plan.freeze_s)
            processes[target].signal(signal.SIGCONT)
        elif target.startswith("kafka "):
            assert kafka is not None and names is not None, "cluster faults need the topics"
            fault.detail = await inject_cluster_fault(plan, kind, target, kafka, names)
            await cluster.wait_until_whole(kafka, names)
        else:
            await asyncio.to_thread(restart, f"{target}.sh" if target == "kafka" else "postgres.sh")
        await asyncio.to_thread(_wait_all_ready, processes)
        fault.recovery_s = round(time.monotonic() - t0, 1)
        on = f" ({fault.detail})" if fault.detail else ""
        console.print(
            f"  fault {kind} {target}{on} at {fault.at_s} s: ready again after {fault.recovery_s} s"
        )
        faults.append(fault)
    return faults


READ_FIXED = (
    topics.DIRECTORY_AGENCIES,
    topics.INTAKE_CASES,
    topics.INTAKE_REJECTIONS,
    topics.INTAKE_DISCLOSURES,
    topics.REFERRAL_EVENTS,
    *(topics.dead_letter_topic(s) for s in ("intake", "referral", "notification")),
)


async def run(plan: Plan, log_dir: Path) -> Report:
    check_cluster_plan(plan)
    kafka = KafkaConnection.from_env()
    report = Report(plan)
    receiver = WebhookReceiver(_free_port())
    server = await receiver.serve()
    extra = {
        "NOTIFICATION_ALLOW_PRIVATE_WEBHOOK_TARGETS": "true",
        "NOTIFICATION_WEBHOOK_SCHEDULE_S": "[1, 2, 5, 10, 20, 30, 60]",
        "REFERRAL_SLA_SECONDS_OVERRIDE": str(plan.sla_s),
        "REFERRAL_TIMER_INTERVAL_S": "1",
        # Structural gaps counted every 2 s, not every minute: a short run sees its report.
        "REFERRAL_STRUCTURAL_INTERVAL_S": "2",
        # Sent outbox rows pruned a second after they are sent, while the relay publishes and
        # two referral instances prune at once (decision 29): the invariants cover pruning.
        # (Inbox claims cannot be pruned this soon: their window is 74 days, by design.)
        **{
            f"{svc.upper()}_{name}": value
            for svc in ("intake", "referral", "notification")
            for name, value in (
                ("OUTBOX_KEEP_SENT_DAYS", "0"),
                ("PRUNE_INTERVAL_S", "1"),
                ("PRUNE_BATCH_SIZE", "50"),
            )
        },
        # The agencies' submissions trimmed every second, through the kills and restarts: the
        # invariants check that nothing trimmed was left unapplied (issue 22).
        "INTAKE_TRIM_INTERVAL_S": "1",
    }
    processes = _processes(log_dir, extra)
    started = time.monotonic()
    stop = asyncio.Event()
    try:
        for process in processes.values():
            process.start()
        await asyncio.to_thread(_wait_all_ready, processes)
        starts = await invariants.end_offsets(kafka, READ_FIXED)
        world = await build_world(
            kafka, receiver.url(), referrers=plan.referrers, providers=plan.providers
        )
        for agency in world.agencies:  # new topics: everything in them is this run's
            for p in range(topics.spec(topics.agency_inbox(agency.agency_id)).partitions):
                starts[TopicPartition(topics.agency_inbox(agency.agency_id), p)] = 0
        sent = Sent()
        # Intake's trimming, sampled from outside while the faults hit (issue 22).
        trim_watch = invariants.TrimWatch()
        submissions = [topics.AGENCY_SUBMISSIONS.name(a.agency_id) for a in world.agencies]
        watcher = asyncio.create_task(
            invariants.watch_trimming(kafka, submissions, trim_watch, stop)
        )
        duration = plan.submissions / plan.rate_per_s
        console.print(
            f"chaos: {plan.submissions} submissions over ~{duration:.0f} s, "
            f"{len(schedule(plan))} faults; logs in {log_dir}"
        )
        responder = asyncio.create_task(respond(world, sent, stop))
        traffic = asyncio.create_task(
            stream(
                world,
                kafka,
                sent,
                count=plan.submissions,
                rate_per_s=plan.rate_per_s,
                poison_every=plan.poison_every,
                seed=plan.seed,
            )
        )
        # The topics whose busiest partitions the cluster faults aim at, and which must be whole
        # again (every replica in sync) before the next fault.
        replicated = {
            topics.INTAKE_CASES,
            topics.REFERRAL_EVENTS,
            *(spec.name for a in world.agencies for spec in topics.agency_topics(a.agency_id)),
        }
        report.faults = await inject(plan, processes, started, duration, kafka, replicated)
        await traffic
        # The answers whose outcome the check requires: those sent before the groups settle
        # (the responders go on answering until the end).
        answered = dict(sent.responses)
        # The same for the continuity messages (the referrers and the successor go on too).
        continued = replace(
            sent,
            assistance_ends=dict(sent.assistance_ends),
            proposals=dict(sent.proposals),
            handover_answers=dict(sent.handover_answers),
            revokes=dict(sent.revokes),
            erasures=dict(sent.erasures),
            narrowings=dict(sent.narrowings),
            commitments=dict(sent.commitments),
        )
        # And where each message written on a submissions topic landed, by then.
        positions = {p: i for a in world.agencies for p, i in a.positions.items()}
        settling = time.monotonic()
        watched = {
            topics.DIRECTORY_AGENCIES,
            topics.INTAKE_CASES,
            topics.INTAKE_REJECTIONS,
            topics.INTAKE_DISCLOSURES,
            topics.REFERRAL_EVENTS,
            *(spec.name for a in world.agencies for spec in topics.agency_topics(a.agency_id)),
        }
        report.final_lag = await settle(kafka, plan, watched)
        console.print(
            f"  settled (lag {report.final_lag}) after {time.monotonic() - settling:.0f} s"
        )
        # What referral published up to now is what the others must have handled: read the
        # upstream topics up to this point, the downstream ones after it was all consumed.
        upstream = {
            tp: end
            for tp, end in (
                await invariants.end_offsets(kafka, [topics.REFERRAL_EVENTS, topics.INTAKE_CASES])
            ).items()
        }
        report.final_lag = await settle(kafka, plan, watched)
        await asyncio.sleep(3)  # webhook deliveries go out every 0.5 s
        records = await invariants.read_between(kafka, starts, upstream)
        # A run that never settled fails on its lag: waiting for webhooks would only add the
        # timeout before the report says so.
        settled = not any(report.final_lag.values())
        waited, undelivered = await wait_for_webhooks(
            world, records, receiver, plan.settle_timeout_s if settled else 0
        )
        if not settled:
            console.print("  the groups never caught up: the webhook queue was not waited for")
        elif undelivered:
            console.print(f"  {len(undelivered)} inbox events never reached their webhook")
        else:
            console.print(f"  webhook queue drained after {waited:.0f} s")
        stop.set()
        await responder
        await watcher
        trimmed = await invariants.trimming(kafka, submissions, positions, trim_watch)
        findings = invariants.check(
            world,
            sent,
            records,
            receiver.deliveries,
            starts,
            answers=answered,
            continuity=continued,
            trimmed=trimmed,
        )
        report.checked, report.lost, report.duplicated = (
            findings.checked,
            findings.lost + [f"{m}: in the inbox, never at the webhook" for m in undelivered],
            findings.duplicated,
        )
        report.sent = {
            "submissions": len(sent.submissions) + len(sent.community),
            "community needs": len(sent.community),
            "needs": sum(len(s.needs) for s in sent.submissions.values()),
            "poison records": len(sent.poison_ids),
            **{f"answers: {a}": n for a, n in sorted(sent.answers.items())},
            "webhook deliveries received": len(receiver.deliveries),
            "ends of assistance": len(sent.assistance_ends),
            "handover proposals": len(sent.proposals),
            "revocations": len(sent.revokes),
            "erasure confirmations": len(sent.erasures),
            "consent narrowings": len(sent.narrowings),
            "structural commitments": len(sent.commitments),
            "submissions records trimmed by intake": sum(trimmed.starts.values()),
            **{
                f"handover answers: {a}": n
                for a, n in sorted(Counter(a for _, a in sent.handover_answers.values()).items())
            },
        }
        report.dead_processes = [n for n, p in processes.items() if not p.alive()]
        for agency in world.agencies:
            await agency.stop()
    finally:
        stop.set()
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in processes.values()))
        server.should_exit = True
        report.duration_s = round(time.monotonic() - started, 1)
    return report


async def wait_for_webhooks(
    world: World, records: dict[str, list[Any]], receiver: WebhookReceiver, timeout_s: float
) -> tuple[float, list[str]]:
    """Webhooks are a queue of their own (retries, leases of a killed sender): wait until every
    inbox event of a webhook agency reached the receiver, or the timeout. Returns the time
    waited and the webhook ids of the inbox events still not delivered (each one lost)."""
    expected = {
        f"msg_{invariants.headers(r)['ce_id']}"
        for agency_id in world.webhook_agencies
        for r in records[topics.agency_inbox(agency_id)]
        if "ce_id" in invariants.headers(r)
    }
    started = time.monotonic()
    while True:
        missing = expected - {d["webhook_id"] for d in receiver.deliveries}
        if not missing or time.monotonic() - started >= timeout_s:
            return time.monotonic() - started, sorted(missing)
        await asyncio.sleep(2)


async def settle(kafka: KafkaConnection, plan: Plan, watched: set[str]) -> dict[str, int]:
    """Until every group has consumed everything, twice in a row a few seconds apart; or
    until the lag stops going down (a stalled group), which fails the run at once."""
    deadline = time.monotonic() + plan.settle_timeout_s
    while True:
        remaining = max(deadline - time.monotonic(), 1)
        first = await invariants.wait_for_zero_lag(kafka, watched, remaining)
        if any(first.values()):  # timed out or stalled: report the lag
            return first
        await asyncio.sleep(3)
        second = await invariants.lag(kafka, watched)
        if not any(second.values()) or time.monotonic() > deadline:
            return second


def print_report(report: Report) -> None:
    faults = Table(
        "fault", "target", "at (s)", "recovered after (s)", "detail", title="Faults injected"
    )
    for fault in report.faults:
        faults.add_row(
            fault.kind, fault.target, str(fault.at_s), str(fault.recovery_s), fault.detail
        )
    console.print(faults)
    kinds: dict[str, int] = {}
    for fault in report.faults:
        kinds[f"{fault.kind} {fault.target}"] = kinds.get(f"{fault.kind} {fault.target}", 0) + 1
    summary = Table("measure", "value", title="Chaos summary")
    for name, value in kinds.items():
        summary.add_row(f"faults: {name}", str(value))
    for name, value in report.sent.items():
        summary.add_row(f"sent: {name}", str(value))
    for name, value in report.checked.items():
        summary.add_row(f"checked: {name}", str(value) if value else "[red]0[/red]")
    summary.add_row("effects checked", str(sum(report.checked.values())))
    summary.add_row("lost (must be 0)", str(len(report.lost)))
    summary.add_row("duplicated side effects (must be 0)", str(len(report.duplicated)))
    summary.add_row(
        "checks that examined nothing (must be none)", ", ".join(report.unexamined) or "none"
    )
    summary.add_row("final consumer lag", json.dumps(report.final_lag))
    summary.add_row("processes dead at the end", ", ".join(report.dead_processes) or "none")
    summary.add_row("duration (s)", str(report.duration_s))
    summary.add_row("result", "[green]PASSED[/green]" if report.passed else "[red]FAILED[/red]")
    console.print(summary)
    for line in (report.lost + report.duplicated)[:30]:
        console.print(f"  [red]•[/red] {line}")


def as_json(report: Report) -> dict[str, Any]:
    document = asdict(report)
    document["passed"] = report.passed
    return document
