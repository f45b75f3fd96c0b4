"""The runtime every service is built on: broker, database pool, outbox relay, dead letters,
reliable consumer, HTTP readiness and AsyncAPI docs, and an orderly start and stop.

Start: logging → database pool → migrations → the service's start-up jobs → dead-letter
producer → broker and consumer → outbox relay → watchdog. Stop (SIGTERM via uvicorn): the
consumer stops after its in-flight message, the relay publishes what is still pending, then the
broker, producers and pool close.

Supervision: a consume loop, the outbox relay or a periodic job that ends while the service
runs leaves a process that answers /health/live but no longer does its work, and no container
runtime restarts a merely unhealthy container. The watchdog turns that into a graceful stop and
a non-zero exit code (``EXIT_TASK_DIED``), so the restart policy (compose ``restart:``, systemd,
``make run``'s supervisor) starts a fresh process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg
import uvicorn
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.asgi.factories.asyncapi.route import AsyncAPIRoute
from faststream.specification import AsyncAPI

from shared.contracts.topics import Owner
from shared.db import DbConnection
from shared.db.migrations import migrate_service
from shared.db.outbox import OutboxRelay, backlog
from shared.db.pool import create_pool, ping
from shared.db.pruning import PrunePolicy, prune
from shared.kafka.broker import create_broker
from shared.kafka.consumer import Handler, ReliableConsumer, RetryPolicy, Subscription
from shared.kafka.dead_letters import DeadLetterPublisher
from shared.kafka.lag import GroupLag
from shared.kafka.publisher import EventPublisher
from shared.kafka.replay import replay_registries
from shared.logging import configure_logging, get_logger
from shared.metrics import (
    CONSUMER_LAG,
    OUTBOX_OLDEST_AGE,
    OUTBOX_UNSENT,
    PERIODIC_JOB_FAILURES,
    metrics_app,
)
from shared.settings import ServiceSettings
from shared.tracing import configure as configure_tracing
from shared.unit import Unit, open_unit

StoresT = TypeVar("StoresT")
# An ASGI 3 application (scope, receive, send): what a service may mount beside FastStream's.
Scope = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]

log = get_logger(__name__)

READINESS_PATH = "/health/ready"
LIVENESS_PATH = "/health/live"
ASYNCAPI_PATH = "/docs/asyncapi"
METRICS_PATH = "/metrics"
# What `refex platform status` reads from each service (JSON): readiness, the outbox backlog and
# what the service knows per agency. Agency ids and counts only, never a case or a person.
STATUS_PATH = "/status"
# A service's figures per agency for /status: agency id → figure name → value.
AgencyStatus = dict[str, dict[str, Any]]

# How often the watchdog looks at the service's long-running tasks, and on how many looks in a
# row a task must be found dead: FastStream restarts a consume loop that raised from a done
# callback, so for a moment the old task is done and its successor not yet listed.
WATCHDOG_INTERVAL_S = 5.0
WATCHDOG_LOOKS = 2
EXIT_TASK_DIED = 70  # EX_SOFTWARE: the process stopped itself because a part of it had died

# The uvicorn server of this process (set by serve()) and the exit code it must end with: the
# watchdog asks the server for its ordinary graceful shutdown rather than sending itself SIGTERM,
# which uvicorn would re-raise after the shutdown and so hide the code.
_server: uvicorn.Server | None = None
_exit_code = 0


def stop_process(code: int) -> None:
    """Shut this process down gracefully and make serve() exit with ``code``."""
    global _exit_code
    _exit_code = code
    if _server is not None:
        _server.should_exit = True


class ServiceRuntime:
    """Owns one service's connections. Handlers get it to reach settings, pool or publisher."""

    def __init__(self, name: str, settings: ServiceSettings, migrations_dir: Path) -> None:
        # First thing: even FastStream's "starting" line must be JSON.
        configure_logging(name, settings.log_level)
        configure_tracing(name, settings)  # before the pool: its connections are traced
        self.name = name
        self.settings = settings
        self.migrations_dir = migrations_dir
        self.broker = create_broker(
            settings.kafka,
            client_id=name,
            topic_discovery_interval_s=settings.topic_discovery_interval_s,
            metrics=settings.metrics_enabled,
        )
        self.publisher = EventPublisher(self.broker)
        self.dead_letters = DeadLetterPublisher(settings.kafka, name)
        self._pool: asyncpg.Pool | None = None
        self._relay: OutboxRelay | None = None
        self._periodic: list[tuple[str, Callable[[], Awaitable[object]], float]] = []
        self._at_start: list[tuple[str, Callable[[], Awaitable[object]]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._watchdog: asyncio.Task[None] | None = None
        self._replay: tuple[ReliableConsumer, list[Subscription]] | None = None
        self._agency_status: Callable[[], Awaitable[AgencyStatus]] | None = None
        self._lag = GroupLag(settings.kafka, name)
        self.gauges("metrics", self.measure)
        # Sent outbox rows and old inbox claims are pruned in the background (decision 29).
        policy = PrunePolicy.of(
            Owner(name),
            outbox_keep_sent_days=settings.outbox_keep_sent_days,
            inbox_keep_days=settings.inbox_keep_days,
            batch_size=settings.prune_batch_size,
            pause_s=settings.prune_pause_s,
        )
        self.every(settings.prune_interval_s, "prune", lambda: prune(self.pool, policy))

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.name}: database pool used before start-up")
        return self._pool

    def consume(self, handlers: Mapping[Subscription, Handler]) -> ReliableConsumer:
        s = self.settings
        consumer = ReliableConsumer(
            group=self.name,
            pool=lambda: self.pool,
            dead_letters=self.dead_letters,
            handlers=handlers,
            retry=RetryPolicy(
                max_attempts=s.handler_max_attempts, base_delay_s=s.handler_retry_base_s
            ),
            max_message_bytes=s.max_message_bytes,
            batch_size=s.consumer_batch_size,
            concurrency=s.consumer_concurrency,
        )
        consumer.register(self.broker)
        return consumer

    def units(
        self, stores: Callable[[DbConnection], StoresT], source: str
    ) -> Callable[[], AbstractAsyncContextManager[Unit[StoresT]]]:
        """Units of work in transactions of their own, for timers and periodic jobs:
        ``async with units() as unit`` (the consumer makes its own, inside its batches)."""
        return lambda: open_unit(self.pool.acquire(), stores, source)

    def replay_at_start(self, consumer: ReliableConsumer, registries: list[Subscription]) -> None:
        """Apply these compacted registry topics from their beginning at every start (before
        normal consumption): a fresh database rebuilds itself."""
        self._replay = (consumer, registries)

    def at_start(self, name: str, job: Callable[[], Awaitable[object]]) -> None:
        """Run ``job`` once at every start, after the migrations and before any message or
        periodic job: data conversions that need what SQL migrations lack (e.g. a key). A
        failure stops the start-up."""
        self._at_start.append((name, job))

    def every(self, interval_s: float, name: str, job: Callable[[], Awaitable[object]]) -> None:
        """Run ``job`` every ``interval_s`` seconds while the service runs (e.g. due timers).
        A failing run is logged and the next one comes as usual."""
        self._periodic.append((name, job, interval_s))
        # At 0 from the start: an alert's increase() cannot see a series' first value.
        PERIODIC_JOB_FAILURES.labels(periodic_job=name)

    def gauges(self, name: str, job: Callable[[], Awaitable[object]]) -> None:
        """Measure gauges for /metrics every ``METRICS_INTERVAL_S`` (not at all when the
        metrics are off)."""
        if self.settings.metrics_enabled:
            self.every(self.settings.metrics_interval_s, name, job)

    def report_by_agency(self, job: Callable[[], Awaitable[AgencyStatus]]) -> None:
        """What /status shows per agency (e.g. overdue referrals, disabled channels): ``job``
        runs at each request, so an operator sees the database as it is now."""
        self._agency_status = job

    async def _repeat(self, name: str, job: Callable[[], Awaitable[object]], every: float) -> None:
        while True:
            try:
                await job()
            except Exception as exc:
                PERIODIC_JOB_FAILURES.labels(periodic_job=name).inc()
                log.warning("periodic_job_failed", job=name, error=type(exc).__name__)
            await asyncio.sleep(every)

    async def measure(self) -> None:
        """The gauges /metrics cannot read by itself: the outbox backlog (this database) and
        the consumer group's lag (the broker). A service's own gauges are its own jobs."""
        async with self.pool.acquire() as conn:
            unsent, oldest_s = await backlog(conn)
        OUTBOX_UNSENT.set(unsent)
        OUTBOX_OLDEST_AGE.set(oldest_s)
        lag = await self._lag.measure()
        CONSUMER_LAG.clear()  # a topic no longer consumed must not keep its last value
        for topic, records in lag.items():
            CONSUMER_LAG.labels(topic=topic).set(records)

    # ----- lifecycle hooks -----

    async def on_startup(self) -> None:
        self._pool = await create_pool(self.settings.database_dsn, self.settings.db_pool_size)
        applied = await migrate_service(self._pool, self.name, self.migrations_dir)
        log.info("service_starting", migrations_applied=len(applied))
        for name, job in self._at_start:
            await job()
            log.info("startup_job_done", job=name)
        await self.dead_letters.start()
        if self._replay is not None:
            consumer, registries = self._replay
            await replay_registries(self.settings.kafka, consumer, registries)

    async def after_startup(self) -> None:
        self._relay = OutboxRelay(
            self.pool,
            self.publisher.publish_batch,
            batch_size=self.settings.outbox_batch_size,
            poll_interval_s=self.settings.outbox_poll_interval_s,
        )
        self._relay.start()
        self._tasks = [
            asyncio.create_task(self._repeat(name, job, every), name=name)
            for name, job, every in self._periodic
        ]
        self._watchdog = asyncio.create_task(self._watch(), name="watchdog")
        log.info("service_ready")

    def dead_tasks(self) -> list[str]:
        """The long-running parts that have ended although nobody stopped them: the outbox
        relay, a consumer whose consume loops are all done (FastStream's loop returns for good
        when its Kafka consumer was stopped under it), a periodic job."""
        dead = []
        if self._relay is not None and not self._relay.running:
            dead.append("outbox_relay")
        for n, subscriber in enumerate(self.broker.subscribers):
            loops = getattr(subscriber, "tasks", None)
            if subscriber.running and loops is not None and all(t.done() for t in loops):
                dead.append(f"consumer_{n + 1}")
        dead.extend(task.get_name() for task in self._tasks if task.done())
        return dead

    async def _watch(self) -> None:
        suspects: set[str] = set()
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            dead = set(self.dead_tasks())
            if confirmed := dead & suspects:
                log.error("service_task_died", tasks=sorted(confirmed), exit_code=EXIT_TASK_DIED)
                stop_process(EXIT_TASK_DIED)
                return
            suspects = dead

    async def on_shutdown(self) -> None:
        # Stop consuming first (the in-flight message finishes), then flush the outbox while
        # the producer is still open; FastStream closes the broker right after this hook. The
        # watchdog goes first: what stops now is not dying.
        if self._watchdog is not None:
            self._watchdog.cancel()
        for subscriber in self.broker.subscribers:
            await subscriber.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._relay is not None:
            await self._relay.stop()

    async def after_shutdown(self) -> None:
        await self._lag.close()
        await self.dead_letters.stop()
        if self._pool is not None:
            await self._pool.close()
        log.info("service_stopped")

    # ----- health -----

    async def readiness(self) -> dict[str, bool]:
        async def database_ok() -> bool:
            try:
                await asyncio.wait_for(ping(self.pool), timeout=2)
                return True
            except Exception:
                return False

        kafka_ok = await self.broker.ping(timeout=2)
        relay_ok = self._relay is None or self._relay.running
        return {"kafka": bool(kafka_ok), "database": await database_ok(), "outbox_relay": relay_ok}

    async def status(self) -> dict[str, Any]:
        """/status: readiness, the outbox backlog and the figures per agency. The consumer
        group's lag and the dead letters are read from the broker by the status command itself,
        so that a service that is down still shows them."""
        checks = await self.readiness()
        report: dict[str, Any] = {"service": self.name, "ready": all(checks.values())}
        report["checks"] = checks
        if not checks["database"]:
            return report
        async with self.pool.acquire() as conn:
            unsent, oldest_s = await backlog(conn)
        report["outbox"] = {"unsent": unsent, "oldest_unsent_age_s": round(oldest_s, 1)}
        report["agencies"] = await self._agency_status() if self._agency_status else {}
        return report

    def asgi_app(
        self, description: str, mounts: Mapping[str, ASGIApp] | None = None
    ) -> AsgiFastStream | PrefixMounts:
        """The service's ASGI app: readiness, liveness, AsyncAPI docs and the broker's
        lifespan. ``mounts``: path prefix (e.g. ``/dashboard``) → a sub-application serving
        every path under it (FastStream's own routes match exact paths only)."""
        app = self._faststream_app(description)
        return PrefixMounts(app, mounts) if mounts else app

    def _faststream_app(self, description: str) -> AsgiFastStream:
        @get(description="200 when Kafka and the service database answer, else 503.")
        async def ready(scope: Any) -> AsgiResponse:
            checks = await self.readiness()
            status = 200 if all(checks.values()) else 503
            body = json.dumps({"service": self.name, "ready": status == 200, "checks": checks})
            return AsgiResponse(body.encode(), status, {"content-type": "application/json"})

        @get(description="Readiness, outbox backlog and figures per agency, for operators.")
        async def status(scope: Any) -> AsgiResponse:
            body = json.dumps(await self.status(), default=str)
            return AsgiResponse(body.encode(), 200, {"content-type": "application/json"})

        @get(description="200 while the process runs.")
        async def live(scope: Any) -> AsgiResponse:
            return AsgiResponse(b'{"live": true}', 200, {"content-type": "application/json"})

        routes: list[tuple[str, Any]] = [
            (READINESS_PATH, ready),
            (LIVENESS_PATH, live),
            (STATUS_PATH, status),
        ]
        if self.settings.metrics_enabled:
            routes.append((METRICS_PATH, metrics_app()))
        return AsgiFastStream(
            self.broker,
            asgi_routes=routes,
            specification=AsyncAPI(
                self.broker, title=f"Referral Exchange — {self.name}", description=description
            ),
            asyncapi_path=AsyncAPIRoute(ASYNCAPI_PATH, asyncapi_json_path=f"{ASYNCAPI_PATH}.json"),
            on_startup=[self.on_startup],
            after_startup=[self.after_startup],
            on_shutdown=[self.on_shutdown],
            after_shutdown=[self.after_shutdown],
            logger=logging.getLogger(f"faststream.{self.name}"),
        )


class PrefixMounts:
    """A small ASGI dispatcher: HTTP (and websocket) requests whose path is a mount's prefix or
    lies under it go to that sub-application, everything else — other paths and the lifespan
    (start-up and shutdown of broker, pool and relay) — to the service's FastStream app.

    The sub-application sees the full path and the prefix added to ``root_path``, as
    Starlette's ``Mount`` passes them (its routes then match the path after the prefix)."""

    def __init__(self, main: ASGIApp, mounts: Mapping[str, ASGIApp]) -> None:
        for prefix in mounts:
            if not prefix.startswith("/") or prefix.endswith("/"):
                raise ValueError(f"mount prefix {prefix!r}: must start and not end with '/'")
        self.main = main
        # Longest prefix first: /a/b wins over /a.
        self.mounts = sorted(mounts.items(), key=lambda item: -len(item[0]))

    def route(self, path: str) -> tuple[str, ASGIApp] | None:
        """The (prefix, app) a path belongs to, or None for the main app."""
        return next(((p, a) for p, a in self.mounts if path == p or path.startswith(p + "/")), None)

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] in ("http", "websocket"):
            mounted = self.route(scope["path"])
            if mounted is not None:
                prefix, app = mounted
                child = {**scope, "root_path": scope.get("root_path", "") + prefix}
                await app(child, receive, send)
                return
        await self.main(scope, receive, send)


class Listening(Protocol):
    """Where a process serves HTTP: every service's settings have these (the gateway's too)."""

    @property
    def http_host(self) -> str: ...
    @property
    def http_port(self) -> int: ...


def serve(app: Any, settings: Listening) -> None:
    """Run the ASGI app under uvicorn; SIGTERM/SIGINT trigger the graceful shutdown above. Exits
    with ``EXIT_TASK_DIED`` when the watchdog stopped the service."""
    global _server
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    _server = uvicorn.Server(config)
    _server.run()
    if _exit_code:
        sys.exit(_exit_code)
