"""Notification's own metrics, on the process registry (shared.metrics): the webhook and e-mail
queues, every delivery attempt by its outcome, and the endpoints disabled. Labels are the
channel and the outcome vocabulary of notification.deliveries.v1, never an agency or a URL."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from prometheus_client import Counter, Gauge

from shared.metrics import REGISTRY

DELIVERY_QUEUE = Gauge(
    "refex_delivery_queue_messages",
    "Messages waiting for their next delivery attempt, by channel (webhook, email).",
    ["channel"],
    registry=REGISTRY,
)
DELIVERY_ATTEMPTS = Counter(
    "refex_delivery_attempts_total",
    "Delivery attempts by channel and outcome (delivered or sent; failed: retried later; "
    "exhausted; endpoint_disabled).",
    ["channel", "outcome"],
    registry=REGISTRY,
)
ENDPOINTS_DISABLED = Gauge(
    "refex_webhook_endpoints_disabled",
    "Webhook endpoints disabled (HTTP 410, or failing for longer than the policy allows).",
    registry=REGISTRY,
)


async def measure(units: Callable[[], AbstractAsyncContextManager[Any]]) -> None:
    async with units() as unit:
        backlog = await unit.stores.delivery_backlog()
    DELIVERY_QUEUE.labels(channel="webhook").set(backlog["webhook"])
    DELIVERY_QUEUE.labels(channel="email").set(backlog["email"])
    ENDPOINTS_DISABLED.set(backlog["disabled_endpoints"])
