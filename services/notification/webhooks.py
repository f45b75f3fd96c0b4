"""Webhook delivery per the Standard Webhooks specification, with a durable retry schedule.

Each inbox notification for an agency with a webhook becomes a row in ``webhook_deliveries``
(in the same transaction). A periodic job leases due rows, POSTs them and records the outcome;
schedule, leases and attempts live in the database, so a restart loses nothing.

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

import asyncpg
import httpx
from pydantic import SecretStr

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import OutgoingEvent
from shared.logging import get_logger
from shared.unit import Cause, open_unit

from . import secret_store
from .channels import caused_by
from .constants import SOURCE
from .secret_store import SecretsKey
from .store import NotificationStore
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


async def deliver_due(
    pool: asyncpg.Pool, policy: DeliveryPolicy, key: SecretsKey, limit: int = 20
) -> int:
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """UPDATE webhook_deliveries d SET next_attempt_at = now() + $2::interval,
                      attempts = attempts + 1
                 FROM webhook_endpoints e
                WHERE d.webhook_id IN (
                        SELECT webhook_id FROM webhook_deliveries
                         WHERE status = 'pending' AND next_attempt_at <= now()
                         ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
                  AND e.agency_id = d.agency_id
            RETURNING d.webhook_id, d.agency_id, d.payload, d.attempts, d.notification_id,
                      e.url, e.disabled_at""",
            limit,
            LEASE,
        )
        if not rows:  # the common case every tick: no HTTP client to set up
            return 0
        secrets = await secret_store.signing_secrets(conn, key, {r["agency_id"] for r in rows})
    async with httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False) as client:
        for row in rows:
            await _attempt(pool, policy, client, row, secrets.get(row["agency_id"], []))
    return len(rows)


async def _attempt(
    pool: asyncpg.Pool,
    policy: DeliveryPolicy,
    client: httpx.AsyncClient,
    row: asyncpg.Record,
    secrets: list[SecretStr],
) -> None:
    webhook_id, agency_id, attempts = row["webhook_id"], row["agency_id"], row["attempts"]
    if row["disabled_at"] is not None:
        await _finish(
            pool, row, "endpoint_disabled", None, None, ev.DeliveryError.ENDPOINT_DISABLED
        )
        return
    # Checked at every attempt, not only at registration: the host may resolve elsewhere now.
    # In a thread: the name lookup blocks.
    refusal = await asyncio.to_thread(target_refusal, row["url"], policy.allow_private_targets)
    error = refusal.error if refusal is not None else None
    if error is None and not secrets:  # never unsigned: receivers must be able to verify all
        error = ev.DeliveryError.NO_SIGNING_SECRET
    status: int | None = None
    retry_after: float | None = None
    started = time.monotonic()
    if error is None:
        body = bytes(row["payload"])
        timestamp = int(time.time())
        signatures = " ".join(
            sign(s.get_secret_value(), webhook_id, timestamp, body) for s in secrets
        )
        try:
            response = await client.post(
                row["url"],
                content=body,
                headers={
                    "webhook-id": webhook_id,
                    "webhook-timestamp": str(timestamp),
                    "webhook-signature": signatures,
                    "content-type": "application/json",
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
    latency_ms = int((time.monotonic() - started) * 1000)
    if error is None:
        await _mark_endpoint(pool, agency_id, failing=False)
        await _finish(pool, row, "delivered", status, latency_ms, None)
    elif status == 410:
        await _finish(pool, row, "endpoint_disabled", status, latency_ms, error, disable=True)
    elif await _mark_endpoint(pool, agency_id, failing=True) > policy.disable_after:
        await _finish(
            pool,
            row,
            "endpoint_disabled",
            status,
            latency_ms,
            error,
            disable=True,
            reason=f"failing for more than {policy.disable_after}",
        )
    else:
        delay = retry_after if retry_after is not None else policy.next_delay(attempts)
        if delay is None:
            await _finish(pool, row, "exhausted", status, latency_ms, error)
        else:
            async with pool.acquire() as conn:
                await conn.execute(
                    """UPDATE webhook_deliveries SET next_attempt_at = now() + $2::interval,
                              last_http_status = $3 WHERE webhook_id = $1""",
                    webhook_id,
                    timedelta(seconds=delay),
                    status,
                )
            await _report(
                pool,
                row,
                "failed",
                status,
                latency_ms,
                error,
                datetime.now(UTC) + timedelta(seconds=delay),
            )
    log.info(
        "webhook_attempt",
        webhook_id=webhook_id,
        agency_id=agency_id,
        attempt=attempts,
        http_status=status,
        error=error,
        refused=refusal.reason if refusal is not None else None,
    )


async def _mark_endpoint(pool: asyncpg.Pool, agency_id: str, *, failing: bool) -> timedelta:
    """Record whether the endpoint works; return how long it has been failing."""
    async with pool.acquire() as conn:
        since = await conn.fetchval(
            """UPDATE webhook_endpoints
                  SET failing_since = CASE WHEN $2 THEN coalesce(failing_since, now()) END
                WHERE agency_id = $1 RETURNING failing_since""",
            agency_id,
            failing,
        )
    return datetime.now(UTC) - since if since is not None else timedelta(0)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


async def _finish(
    pool: asyncpg.Pool,
    row: asyncpg.Record,
    status: str,
    http_status: int | None,
    latency_ms: int | None,
    error: ev.DeliveryError | None,
    *,
    disable: bool = False,
    reason: str = "HTTP 410 Gone",
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """UPDATE webhook_deliveries SET status = $2, last_http_status = $3,
                      delivered_at = CASE WHEN $2 = 'delivered' THEN now() END
               WHERE webhook_id = $1""",
            row["webhook_id"],
            status,
            http_status,
        )
        if disable:
            await conn.execute(
                """UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = $2
                   WHERE agency_id = $1""",
                row["agency_id"],
                reason,
            )
    await _report(pool, row, status, http_status, latency_ms, error, None)


async def _report(
    pool: asyncpg.Pool,
    row: asyncpg.Record,
    status: str,
    http_status: int | None,
    latency_ms: int | None,
    error: ev.DeliveryError | None,
    next_at: datetime | None,
) -> None:
    attempted = ev.DeliveryAttempted(
        delivery_id=row["webhook_id"],
        agency_id=row["agency_id"],
        channel="webhook",
        event_id=row["notification_id"],
        attempt=row["attempts"],
        status="delivered"
        if status == "delivered"
        else status
        if status in ("failed", "exhausted", "endpoint_disabled")
        else "failed",
        http_status=http_status,
        next_attempt_at=next_at,
        latency_ms=latency_ms,
        error=error,
    )
    cause = Cause(causation_id=row["notification_id"])
    async with open_unit(pool.acquire(), NotificationStore, SOURCE, cause) as unit:
        unit.emit(
            ev.DELIVERY_ATTEMPTED,
            attempted,
            topic=topics.NOTIFICATION_DELIVERIES,
            subject=row["webhook_id"],
        )
