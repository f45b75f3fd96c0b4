"""The gateway's metrics, on the process registry (shared.metrics), served on a port of their
own (``GATEWAY_METRICS_HOST`` / ``GATEWAY_METRICS_PORT``): the gateway's own port is the one
agencies reach, and an ops figure is not theirs to read.

Requests are labelled by the route's template (``/v1/inbox``, ``/static/{digest}/{name}``),
never by the path an agency sent (it holds ids) nor by agency; logins by their outcome."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram, start_http_server

from shared.metrics import REGISTRY

REQUESTS = Counter(
    "refex_gateway_requests_total",
    "HTTP requests by route template, method and status code.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "refex_gateway_request_duration_seconds",
    "Time to answer a request, by route template.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
LOGINS = Counter(
    "refex_gateway_logins_total",
    "Logins (API requests and console sign-ins) by outcome: accepted, refused (401), "
    "throttled (429), unreachable (503: no broker).",
    ["outcome"],
    registry=REGISTRY,
)
LOGIN_OUTCOMES = {401: "refused", 429: "throttled", 503: "unreachable"}
UNMATCHED = "unmatched"  # a path no route serves: one label, whatever was asked
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    """ASGI middleware counting and timing each HTTP request once it has been answered."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # The router writes the matched route into the scope it was given.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = scope.get("method", "GET")
            REQUESTS.labels(route, method if method in METHODS else "other", str(status)).inc()
            REQUEST_SECONDS.labels(route).observe(time.perf_counter() - started)


def count_login(refused_status: int | None) -> None:
    LOGINS.labels(LOGIN_OUTCOMES.get(refused_status or 0, "accepted")).inc()


def serve_metrics(host: str, port: int) -> Any:
    """Serve the registry on ``host:port`` in a thread; returns the server (``shutdown()``)."""
    server, _thread = start_http_server(port, host, registry=REGISTRY)
    return server
