"""Webhook delivery per the Standard Webhooks specification, with a durable retry schedule.

Each inbox notification for an agency with a webhook becomes a row in ``webhook_deliveries``
(in the same transaction). A periodic job leases due rows, POSTs them and records each outcome
with its report on notification.deliveries.v1 in one unit of work; schedule, leases and attempts
live in the database (all their SQL in the store), so a restart loses nothing.

Signature: ``webhook-signature: v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>``,
one per valid secret (space-separated) so a rotation overlaps; secrets are ``whsec_`` + base64,
sealed at rest and read only through :mod:`.secret_store`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import asyncpg
import httpx
from pydantic import SecretStr

from shared import tracing
from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import OutgoingEvent
from shared.logging import get_logger
from shared.unit import Cause, open_unit

from . import metrics, secret_store
from .channels import caused_by
from .constants import SOURCE
from .secret_store import SecretsKey
from .store import DueWebhook, NotificationStore
from .targets import target_refusal

log = get_logger(__name__)

LEASE = timedelta(seconds=60)  # a claimed row is retried by anyone after this, if its claimer died
TIMEOUT_S = 15.0


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def structured(event: OutgoingEvent) -> bytes:
    """The inbox event as one structured-mode CloudEvents JSON document."""
    attributes = {k.removeprefix("ce_"): v for k, v in event.headers.items() if k.startswith("ce_")}
    document = {**attributes, "datacontenttype": "application/json", "data": json.loads(event.body)}
    return json.dumps(document, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    schedule_s: tuple[float, ...]  # delay before each retry; its length is the retry count
    allow_private_targets: bool = False
    disable_after: timedelta = timedelta(days=5)  # failing that long disables the endpoint
    jitter: float = 0.1

    def next_delay(self, attempts_done: int) -> float | None:
        if attempts_done > len(self.schedule_s):
            return None
        base = self.schedule_s[attempts_done - 1]
        return base * (1 + random.uniform(-self.jitter, self.jitter))


def failure_of(exc: httpx.HTTPError | httpx.InvalidURL) -> ev.DeliveryError:
    """Why a request failed, in the closed vocabulary of notification.deliveries.v1 (the
    exception's text, which may quote the URL, is never reported)."""
    if caused_by(exc, ssl.SSLError):
        return ev.DeliveryError.TLS_ERROR
    if isinstance(exc, httpx.TimeoutException):
        return ev.DeliveryError.TIMEOUT
    if caused_by(exc, socket.gaierror):  # looked up by the client (private targets allowed)
        return ev.DeliveryError.DNS_FAILED
    if isinstance(exc, httpx.ProtocolError):
        return ev.DeliveryError.PROTOCOL_ERROR
    if isinstance(exc, httpx.NetworkError):
        return ev.DeliveryError.CONNECTION_FAILED
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return ev.DeliveryError.TARGET_NOT_ALLOWED
    return ev.DeliveryError.REQUEST_FAILED


# Endpoints sent to side by side in a round: each agency's messages still go one after another
# (in their queue's order, one request at a time to its endpoint). Bounded below the pool's
# connections (each attempt records its outcome on one) so the consumer and relay keep theirs.
PARALLEL_ENDPOINTS = 4


async def deliver_due(
    pool: asyncpg.Pool, policy: DeliveryPolicy, key: SecretsKey, limit: int = 20
) -> int:
    """Send the due deliveries, a round of up to ``limit`` at a time, and another round at
    once after a full one: a backlog drains at the endpoints' pace, not one round per tick
    (which held it to 40 a second; the cluster chaos run queued twice that). Returns how many
    were attempted."""
    attempted = 0
    while True:
        async with open_unit(pool.acquire(), NotificationStore, SOURCE) as unit:
            due = await unit.stores.lease_webhooks(limit, LEASE)
        if due:  # none is the common case every tick: no HTTP client to set up
            await _send_round(pool, policy, key, due)
        attempted += len(due)
        if len(due) < limit:
            return attempted


async def _send_round(
    pool: asyncpg.Pool, policy: DeliveryPolicy, key: SecretsKey, due: list[DueWebhook]
) -> None:
    secrets = secret_store.opened(key, {d.agency_id: d.secrets for d in due})
    by_agency: dict[str, list[DueWebhook]] = {}
    for delivery in due:
        by_agency.setdefault(delivery.agency_id, []).append(delivery)
    slots = asyncio.Semaphore(PARALLEL_ENDPOINTS)
    async with httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False) as client:

        async def send_in_order(deliveries: list[DueWebhook]) -> None:
            async with slots:
                for delivery in deliveries:
                    # A span per attempt, a child of the inbox event's: the request carries it
                    # in its traceparent header, the attempt's report too.
                    with tracing.webhook_request(delivery.payload):
                        await _attempt(
                            pool, policy, client, delivery, secrets.get(delivery.agency_id, [])
                        )

        # Every agency's run is awaited before a failure is raised: a leased row left behind
        # waits out its lease, and none is cancelled half-recorded.
        outcomes = await asyncio.gather(
            *(send_in_order(d) for d in by_agency.values()), return_exceptions=True
        )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


# How an attempt is reported on notification.deliveries.v1 ("failed": retried later).
Reported = Literal["delivered", "failed", "exhausted", "endpoint_disabled"]


@dataclass(frozen=True, slots=True)
class _Tried:
    """What one attempt got (before its outcome is recorded)."""

    http_status: int | None
    latency_ms: int | None
    error: ev.DeliveryError | None
    retry_after: float | None = None


async def _attempt(
    pool: asyncpg.Pool,
    policy: DeliveryPolicy,
    client: httpx.AsyncClient,
    delivery: DueWebhook,
    secrets: list[SecretStr],
) -> None:
    refusal = None
    if delivery.disabled_at is not None:
        tried = _Tried(None, None, ev.DeliveryError.ENDPOINT_DISABLED)
    else:
        # Checked at every attempt, not only at registration: the host may resolve elsewhere
        # now. In a thread: the name lookup blocks.
        refusal = await asyncio.to_thread(
            target_refusal, delivery.url, policy.allow_private_targets
        )
        tried = await _post(client, delivery, secrets, refusal.error if refusal else None)
    tracing.http_outcome(tried.http_status, tried.error)
    # The outcome and its report on notification.deliveries.v1: one unit, one transaction.
    cause = Cause(causation_id=delivery.notification_id)
    async with open_unit(pool.acquire(), NotificationStore, SOURCE, cause) as unit:
        status, next_at = await _settle(unit.stores, policy, delivery, tried)
        unit.emit(
            ev.DELIVERY_ATTEMPTED,
            _report(delivery, status, tried, next_at),
            topic=topics.NOTIFICATION_DELIVERIES,
            subject=delivery.webhook_id,
        )
    metrics.DELIVERY_ATTEMPTS.labels(channel="webhook", outcome=status).inc()  # committed
    if delivery.disabled_at is None:
        log.info(
            "webhook_attempt",
            webhook_id=delivery.webhook_id,
            agency_id=delivery.agency_id,
            attempt=delivery.attempts,
            http_status=tried.http_status,
            error=tried.error,
            refused=refusal.reason if refusal is not None else None,
        )


async def _post(
    client: httpx.AsyncClient,
    delivery: DueWebhook,
    secrets: list[SecretStr],
    refused: ev.DeliveryError | None,
) -> _Tried:
    """POST the message, signed with every secret, unless it is refused already."""
    error = refused
    if error is None and not secrets:  # never unsigned: receivers must be able to verify all
        error = ev.DeliveryError.NO_SIGNING_SECRET
    status: int | None = None
    retry_after: float | None = None
    started = time.monotonic()
    if error is None:
        webhook_id, body, timestamp = delivery.webhook_id, delivery.payload, int(time.time())
        signatures = " ".join(
            sign(s.get_secret_value(), webhook_id, timestamp, body) for s in secrets
        )
        try:
            response = await client.post(
                delivery.url,
                content=body,
                headers={
                    "webhook-id": webhook_id,
                    "webhook-timestamp": str(timestamp),
                    "webhook-signature": signatures,
                    "content-type": "application/json",
                    # Not signed (the signature covers the body, whose traceparent member is
                    # the inbox event's): for the receiver's own HTTP tracing.
                    **tracing.traceparent_header(),
                },
            )
            status = response.status_code
            if not 200 <= status < 300:
                error = ev.DeliveryError.HTTP_ERROR
            if status in (429, 503):
                retry_after = _retry_after(response.headers.get("retry-after"))
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL is no HTTPError
            error = failure_of(exc)
            log.info("webhook_attempt_failed", webhook_id=webhook_id, error=type(exc).__name__)
    return _Tried(status, int((time.monotonic() - started) * 1000), error, retry_after)


async def _settle(
    store: NotificationStore, policy: DeliveryPolicy, delivery: DueWebhook, tried: _Tried
) -> tuple[Reported, datetime | None]:
    """Record what the attempt means for the message and its endpoint; return how it is
    reported and, for a retry, when it is due."""
    webhook_id, agency_id, status = delivery.webhook_id, delivery.agency_id, tried.http_status
    if delivery.disabled_at is not None:
        await store.finish_webhook(webhook_id, agency_id, "endpoint_disabled", None)
        return "endpoint_disabled", None
    if tried.error is None:
        await store.webhook_delivered(webhook_id, agency_id, status)
        return "delivered", None
    if status == 410:
        await store.finish_webhook(
            webhook_id, agency_id, "endpoint_disabled", status, disable_reason="HTTP 410 Gone"
        )
        return "endpoint_disabled", None
    since = await store.endpoint_failing(agency_id)
    failing_for = datetime.now(UTC) - since if since is not None else timedelta(0)
    if failing_for > policy.disable_after:
        reason = f"failing for more than {policy.disable_after}"
        await store.finish_webhook(
            webhook_id, agency_id, "endpoint_disabled", status, disable_reason=reason
        )
        return "endpoint_disabled", None
    delay = tried.retry_after
    if delay is None:
        delay = policy.next_delay(delivery.attempts)
    if delay is None:
        await store.finish_webhook(webhook_id, agency_id, "exhausted", status)
        return "exhausted", None
    await store.retry_webhook(webhook_id, timedelta(seconds=delay), status)
    return "failed", datetime.now(UTC) + timedelta(seconds=delay)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _report(
    delivery: DueWebhook, status: Reported, tried: _Tried, next_at: datetime | None
) -> ev.DeliveryAttempted:
    """The attempt on notification.deliveries.v1."""
    return ev.DeliveryAttempted(
        delivery_id=delivery.webhook_id,
        agency_id=delivery.agency_id,
        channel="webhook",
        event_id=delivery.notification_id,
        attempt=delivery.attempts,
        status=status,
        http_status=tried.http_status,
        next_attempt_at=next_at,
        latency_ms=tried.latency_ms,
        error=tried.error,
    )
