"""The gateway's ASGI app: ``python -m services.gateway``. The API under /v1 (OpenAPI at
/docs/openapi.json), the console at /, health at /health/*."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Route

from shared.logging import configure_logging, get_logger
from shared.tracing import configure as configure_tracing
from shared.web.security_headers import SecurityHeaders, security_headers
from shared.web.static_files import ROUTE_NAME, StaticFiles

from .agency_kafka import ProducerPool, read_intake_keys
from .api import Api
from .auth import Authenticator
from .console.pages import Console
from .console.publishing import ConsolePublisher
from .console.rendering import STATIC_FILES, Renderer
from .intake_keys import IntakeKeys
from .metrics import RequestMetrics, serve_metrics
from .sessions import Sessions
from .settings import GatewaySettings

log = get_logger(__name__)

SESSION_COOKIE = "refex_console"
HOUSEKEEPING_S = 30.0
# The console's policy: its own scripts only; 'wasm-unsafe-eval' lets libsodium compile its
# WebAssembly (it runs no string as code); no connection anywhere but the gateway itself, so a
# page cannot send an opened disclosure or the key elsewhere (docs/decisions/0025).
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
DESCRIPTION = (
    "CloudEvents over HTTP for agency systems without a Kafka client, and the caseworkers' "
    "console. Every request is authenticated as one of the agency's own Kafka principals and "
    "published or read as that principal (docs/integrators.md §16)."
)


async def _broker_reachable(servers: str) -> bool:
    for server in (s.strip() for s in servers.split(",") if s.strip()):
        host, _, port = server.rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 2)
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        return True
    return False


def gateway_app(settings: GatewaySettings) -> FastAPI:
    authenticator = Authenticator(settings.kafka, settings.throttle)
    producers = ProducerPool()
    # One copy of intake's public keys for the process, read as whichever request needs them
    # (decision 33); the inboxes the gateway reads tell it when they changed.
    intake_keys = IntakeKeys(read_intake_keys, settings.intake_keys_max_age_s)
    sessions = Sessions(settings.session_idle_s, settings.session_max_s, intake_keys.saw)
    renderer = Renderer(StaticFiles("services.gateway.console", STATIC_FILES))
    publisher = ConsolePublisher(producers, intake_keys)
    console = Console(authenticator, sessions, publisher, renderer)
    api = Api(authenticator, producers, settings.inbox_page_max, intake_keys)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async def housekeeping() -> None:
            while True:
                await asyncio.sleep(HOUSEKEEPING_S)
                await sessions.end_expired()
                await producers.close_idle()

        task = asyncio.create_task(housekeeping(), name="gateway-housekeeping")
        metrics = (
            serve_metrics(settings.metrics_host, settings.metrics_port)
            if settings.metrics_port
            else None
        )
        log.info("gateway_started", port=settings.http_port, metrics_port=settings.metrics_port)
        try:
            yield
        finally:
            if metrics is not None:
                metrics.shutdown()
            task.cancel()
            await sessions.close()
            await producers.close()

    app = FastAPI(
        title="Referral Exchange — agency gateway",
        description=DESCRIPTION,
        version="1",
        openapi_url="/docs/openapi.json",
        docs_url=None,  # Swagger UI would load scripts from a CDN; the JSON is the contract
        redoc_url=None,
        lifespan=lifespan,
        # Its own request spans would record paths, query strings and exception messages (a
        # console form's input); the API's publishing has its own span (shared.tracing).
        telemetry={"tracing": False, "logs": False},
    )
    app.include_router(api.router())
    app.include_router(console.router())
    app.router.routes.append(
        Route("/static/{digest:str}/{name:path}", renderer.static.serve, name=ROUTE_NAME)
    )

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)  # none: a browser asks anyway, and a 404 is noise

    @app.get("/health/live", include_in_schema=False)
    async def live() -> JSONResponse:
        return JSONResponse({"live": True})

    @app.get("/health/ready", include_in_schema=False)
    async def ready() -> JSONResponse:
        ok = await _broker_reachable(settings.kafka_bootstrap_servers)
        body = {"service": "gateway", "ready": ok, "checks": {"kafka": ok}}
        return JSONResponse(body, 200 if ok else 503)

    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.session_key.get_secret_value(),
        session_cookie=SESSION_COOKIE,
        max_age=int(settings.session_max_s),
        same_site="lax",  # an e-mail's link to a referral opens with the session
        https_only=settings.secure_cookies,
    )
    app.add_middleware(GZipMiddleware, minimum_size=500)
    app.add_middleware(SecurityHeaders, headers=security_headers(CONSOLE_CSP))
    app.add_middleware(RequestMetrics)  # outermost: it sees every answer, 500s included
    return app


def build() -> tuple[FastAPI, GatewaySettings]:
    settings = GatewaySettings()  # refuses a weak session key in production
    configure_logging("gateway", settings.log_level)
    configure_tracing("gateway", settings)
    return gateway_app(settings), settings
