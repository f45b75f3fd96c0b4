"""``refex platform status``: the platform's health on one screen, for the ops engineer paged at
night. Per service: its consumer group's lag, its outbox backlog, its dead letters; per agency:
a disabled webhook endpoint, deliveries given up, referrals past their deadline.

Two sources, so that a dead service still shows what matters most. The broker (the operators'
principal) gives each group's lag and each dead-letter topic's records: they keep counting
while the service is down. Each service's ``GET /status`` gives what only its database knows
(outbox backlog, figures per agency); a service that does not answer is marked so, the rest is
still shown. Nothing here names a case or a person: agency ids and counts.

Gathering (``gather``) is I/O; judging (``problems``) is a pure function of what was gathered;
``render`` draws it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shared.contracts.topics import dead_letter_topic
from shared.kafka.connection import KafkaConnection
from shared.kafka.lag import GroupLag
from shared.kafka.offsets import beginning_offsets, end_offsets, offsets_for_times

# The services with a consumer group (named after the service) and a /status endpoint.
SERVICES = ("intake", "referral", "notification", "evidence")
# Where `make run` serves them (deploy/local/env.sh); compose sets REFEX_SERVICE_URLS.
LOCAL_URLS = {name: f"http://127.0.0.1:{18001 + n}" for n, name in enumerate(SERVICES)}
URLS_VARIABLE = "REFEX_SERVICE_URLS"
HTTP_TIMEOUT_S = 5.0
RECENT = timedelta(hours=24)

# What makes a figure worth a line under "needs attention". Lag and an unsent outbox row are
# normal for a moment under load; these are the levels at which they are not.
LAG_ATTENTION_RECORDS = 1000
OUTBOX_ATTENTION_AGE_S = 60.0


@dataclass
class DeadLetters:
    held: int = 0  # still in the topic (retention keeps them weeks; replayed ones stay too)
    recent: int = 0  # written in the last 24 hours


@dataclass
class ServiceStatus:
    name: str
    lag: dict[str, int] = field(default_factory=dict)  # topic label → records behind
    dead_letters: DeadLetters = field(default_factory=DeadLetters)
    reachable: bool = False
    ready: bool = False
    checks: dict[str, bool] = field(default_factory=dict)
    outbox_unsent: int | None = None
    outbox_oldest_age_s: float | None = None
    agencies: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None  # why /status could not be read


@dataclass
class AgencyStatus:
    agency_id: str
    webhook_disabled_at: str | None = None
    webhook_disabled_reason: str | None = None
    deliveries_pending: int = 0
    deliveries_given_up: int = 0
    awaiting_answer: int = 0
    past_deadline: int = 0
    deadlines_missed: int = 0


@dataclass
class PlatformStatus:
    services: list[ServiceStatus]
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def agencies(self) -> list[AgencyStatus]:
        """The figures of referral and notification per agency, in one row per agency."""
        merged: dict[str, AgencyStatus] = {}
        wanted = set(AgencyStatus.__dataclass_fields__) - {"agency_id"}
        for service in self.services:
            for agency_id, figures in service.agencies.items():
                row = merged.setdefault(agency_id, AgencyStatus(agency_id))
                for key, value in figures.items():
                    if key in wanted:
                        setattr(row, key, value)
        return sorted(merged.values(), key=lambda a: a.agency_id)

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "services": [asdict(s) for s in self.services],
            "agencies": [asdict(a) for a in self.agencies()],
            "problems": problems(self),
        }


def service_urls(
    overrides: Sequence[str] = (), environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """Each service's base URL: ``make run``'s, then ``REFEX_SERVICE_URLS``
    (``intake=http://intake:8000,…``), then ``--service-url`` options."""
    urls = dict(LOCAL_URLS)
    pairs = [p for p in environ.get(URLS_VARIABLE, "").split(",") if p.strip()]
    for pair in [*pairs, *overrides]:
        name, sep, url = pair.partition("=")
        name = name.strip()
        if not sep or name not in SERVICES or not url.strip():
            raise ValueError(
                f"{pair!r}: expected SERVICE=URL with SERVICE one of {', '.join(SERVICES)}"
            )
        urls[name] = url.strip().rstrip("/")
    return urls


# ----- judging -----


def problems(status: PlatformStatus) -> list[str]:
    """What needs someone now, one line each, most urgent first (the command's exit code is 1
    when there is any)."""
    down, service_lines, agency_lines = [], [], []
    for s in status.services:
        if not s.reachable:
            down.append(f"{s.name}: /status does not answer ({s.error})")
        elif not s.ready:
            failing = ", ".join(k for k, ok in s.checks.items() if not ok)
            down.append(f"{s.name}: not ready ({failing})")
        behind = sum(s.lag.values())
        if behind >= LAG_ATTENTION_RECORDS:
            worst = max(s.lag, key=lambda t: s.lag[t])
            service_lines.append(f"{s.name}: {behind} records behind (most on {worst})")
        if (s.outbox_oldest_age_s or 0) >= OUTBOX_ATTENTION_AGE_S:
            service_lines.append(
                f"{s.name}: {s.outbox_unsent} events unsent, the oldest for "
                f"{_duration(s.outbox_oldest_age_s or 0)}: the relay cannot reach Kafka?"
            )
        if s.dead_letters.recent:
            service_lines.append(
                f"{s.name}: {s.dead_letters.recent} dead letters in the last 24 h "
                f"(refex platform replay-dead-letters {s.name} --dry-run shows them)"
            )
    for a in status.agencies():
        if a.webhook_disabled_at:
            agency_lines.append(
                f"{a.agency_id}: webhook endpoint disabled since {a.webhook_disabled_at[:16]} "
                f"({a.webhook_disabled_reason}); after the agency fixes it: "
                f"refex notification add-webhook {a.agency_id} URL, then replay"
            )
        if a.past_deadline:
            agency_lines.append(
                f"{a.agency_id}: {a.past_deadline} referrals past their deadline and not yet "
                "expired: referral's deadline job is behind or failing"
            )
    return down + service_lines + agency_lines


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ----- gathering -----


async def gather(kafka: KafkaConnection, urls: Mapping[str, str]) -> PlatformStatus:
    statuses = [ServiceStatus(name) for name in SERVICES]
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as http:
        await asyncio.gather(
            _from_broker(kafka, statuses),
            *(_from_service(http, urls[s.name], s) for s in statuses),
        )
    return PlatformStatus(statuses)


async def _from_broker(kafka: KafkaConnection, statuses: Sequence[ServiceStatus]) -> None:
    for s in statuses:
        lag = GroupLag(kafka, s.name)
        try:
            s.lag = await lag.measure()
        finally:
            await lag.close()
    dead = await dead_letter_counts(kafka, [dead_letter_topic(s.name) for s in statuses])
    for s in statuses:
        s.dead_letters = dead.get(dead_letter_topic(s.name), DeadLetters())


async def dead_letter_counts(
    kafka: KafkaConnection, names: Sequence[str], now: datetime | None = None
) -> dict[str, DeadLetters]:
    """Records held in each existing dead-letter topic, and those written within ``RECENT``
    (by the records' timestamps: the offset of the first one newer than a day ago)."""
    admin = AIOKafkaAdminClient(**kafka.client_kwargs(), client_id="refex-status")
    await admin.start()
    try:
        described = await admin.describe_topics(list(names))
    finally:
        await admin.close()
    partitions = [
        TopicPartition(t["topic"], p["partition"])
        for t in described
        if t.get("partitions")
        for p in t["partitions"]
    ]
    if not partitions:
        return {}
    reader = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=None, client_id="refex-status")
    await reader.start()
    try:
        starts = await beginning_offsets(reader, partitions)
        ends = await end_offsets(reader, partitions)
        since = int(((now or datetime.now(UTC)) - RECENT).timestamp() * 1000)
        newer = await offsets_for_times(reader, dict.fromkeys(partitions, since))
    finally:
        await reader.stop()
    counts: dict[str, DeadLetters] = {}
    for tp in partitions:
        held = counts.setdefault(tp.topic, DeadLetters())
        held.held += ends[tp] - starts[tp]
        first_recent = newer.get(tp)
        held.recent += ends[tp] - first_recent.offset if first_recent is not None else 0
    return counts


async def _from_service(http: httpx.AsyncClient, url: str, status: ServiceStatus) -> None:
    try:
        response = await http.get(f"{url}/status")
        response.raise_for_status()
        report = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        status.error = f"{url}: {type(exc).__name__}"
        return
    status.reachable = True
    status.ready = bool(report.get("ready"))
    status.checks = dict(report.get("checks", {}))
    outbox = report.get("outbox") or {}
    status.outbox_unsent = outbox.get("unsent")
    status.outbox_oldest_age_s = outbox.get("oldest_unsent_age_s")
    status.agencies = dict(report.get("agencies") or {})


# ----- drawing -----


def render(status: PlatformStatus, console: Console) -> None:
    services = Table(title=f"Services at {status.at}", title_justify="left")
    for column in ("service", "state", "lag (records)", "outbox unsent", "oldest unsent"):
        services.add_column(column, justify="left" if column in ("service", "state") else "right")
    services.add_column("dead letters 24 h / held", justify="right")
    for s in status.services:
        if not s.reachable:
            state = "[red]unreachable[/red]"
        elif not s.ready:
            state = "[red]not ready[/red]"
        else:
            state = "[green]ready[/green]"
        behind = sum(s.lag.values())
        lag = f"[yellow]{behind}[/yellow]" if behind >= LAG_ATTENTION_RECORDS else str(behind)
        age = s.outbox_oldest_age_s
        dead = f"{s.dead_letters.recent} / {s.dead_letters.held}"
        services.add_row(
            s.name,
            state,
            lag,
            "?" if s.outbox_unsent is None else str(s.outbox_unsent),
            "?" if age is None else ("-" if not s.outbox_unsent else _duration(age)),
            f"[red]{dead}[/red]" if s.dead_letters.recent else dead,
        )
    console.print(services)

    agencies = Table(title="Agencies", title_justify="left")
    agencies.add_column("agency")
    agencies.add_column("webhook")
    for column in (
        "deliveries waiting",
        "given up 7 d",
        "awaiting answer",
        "past deadline",
        "deadlines missed 7 d",
    ):
        agencies.add_column(column, justify="right")
    for a in status.agencies():
        webhook = (
            f"[red]disabled {a.webhook_disabled_at[:10]}: "
            f"{escape(a.webhook_disabled_reason or '')}[/red]"
            if a.webhook_disabled_at
            else "ok"
        )
        agencies.add_row(
            a.agency_id,
            webhook,
            str(a.deliveries_pending),
            str(a.deliveries_given_up),
            str(a.awaiting_answer),
            f"[red]{a.past_deadline}[/red]" if a.past_deadline else "0",
            str(a.deadlines_missed),
        )
    if agencies.row_count:
        console.print(agencies)
    found = problems(status)
    if found:
        console.print("[bold red]Needs attention[/bold red]")
        for line in found:
            console.print(f"  • {escape(line)}", highlight=False)
    else:
        console.print("[green]All clear.[/green]")
