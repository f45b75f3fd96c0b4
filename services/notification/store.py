"""All of notification's SQL: the agency registry, each agency's channels, the record of every
notification with its webhook and e-mail deliveries, the delivery queues the periodic jobs lease
and settle, and the sealed webhook signing secrets.

Set-based: the channels of every agency an event concerns are read in one query, and each table
is written with one statement per event however many notices it causes (arrays unnested). The
delivery loops (webhooks.py, email.py) keep only HTTP, SMTP and signing, and reach these tables
through a unit of work; secret_store.py seals and opens the secrets, which this module stores and
reads only as sealed boxes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from shared.contracts import events as ev
from shared.db import DbConnection, batch_scope


@dataclass(frozen=True, slots=True)
class EmailChannel:
    addresses: list[str]
    language: str
    event_types: list[str] | None


@dataclass(frozen=True, slots=True)
class Channels:
    """An agency's channels besides its inbox. ``webhook_types``: None without an active
    endpoint; an empty list for an endpoint that takes every type."""

    webhook_types: list[str] | None = None
    email: EmailChannel | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """One inbox event recorded, and where else it goes."""

    notification_id: str  # the inbox event's ce_id
    agency_id: str
    source_event_id: str
    ce_type: str
    webhook_payload: bytes | None = None  # structured CloudEvent, when the webhook takes it
    email: tuple[list[str], str, str, str] | None = None  # addresses, subject, text, HTML


class Sealed(NamedTuple):
    """A secret as stored: which key sealed it, and the secret box (nonce + ciphertext)."""

    key_id: str
    box: bytes


@dataclass(frozen=True, slots=True)
class DueWebhook:
    """A webhook delivery leased for one attempt, with its endpoint and the agency's sealed
    secrets that sign now (oldest first)."""

    webhook_id: str
    agency_id: str
    notification_id: str
    payload: bytes
    attempts: int  # including this one
    url: str
    disabled_at: datetime | None
    secrets: list[Sealed]


@dataclass(frozen=True, slots=True)
class DueEmail:
    """An e-mail leased for one attempt."""

    email_id: str
    agency_id: str
    notification_id: str
    addresses: list[str]
    subject: str
    body_text: str
    body_html: str
    attempts: int  # including this one


_CHANNELS = "notification.channels"  # the batch cache's entry


class NotificationStore:
    def __init__(self, conn: DbConnection) -> None:
        self._conn = conn

    async def save_agency(self, agency: ev.AgencyRecord, inbox_topic: str) -> None:
        await self._conn.execute(
            """INSERT INTO agencies (agency_id, inbox_topic, record) VALUES ($1, $2, $3::jsonb)
               ON CONFLICT (agency_id) DO UPDATE SET record = EXCLUDED.record,
                 updated_at = now()""",
            agency.agency_id,
            inbox_topic,
            agency.model_dump_json(),
        )

    # ----- channels, as operator commands set them -----

    async def save_webhook(self, agency_id: str, url: str, event_types: list[str] | None) -> None:
        """Register or replace the agency's endpoint (enabled again if it was disabled)."""
        await self._conn.execute(
            """INSERT INTO webhook_endpoints (agency_id, url, event_types)
               VALUES ($1, $2, $3)
               ON CONFLICT (agency_id) DO UPDATE SET url = EXCLUDED.url,
                 event_types = EXCLUDED.event_types, disabled_at = NULL,
                 disabled_reason = NULL""",
            agency_id,
            url,
            event_types,
        )

    async def lock_webhook(self, agency_id: str) -> bool:
        """Whether the agency has an endpoint, locked for the transaction."""
        return bool(
            await self._conn.fetchval(
                "SELECT true FROM webhook_endpoints WHERE agency_id = $1 FOR UPDATE", agency_id
            )
        )

    async def requeue_deliveries(
        self, agency_id: str, webhook_id: str | None, since: datetime | None
    ) -> int:
        """Send the agency's webhook messages again (one, or every one since a time)."""
        status = await self._conn.execute(
            """UPDATE webhook_deliveries SET status = 'pending', attempts = 0,
                      next_attempt_at = now()
                WHERE agency_id = $1 AND ($2::text IS NULL OR webhook_id = $2)
                  AND ($3::timestamptz IS NULL OR created_at >= $3)""",
            agency_id,
            webhook_id,
            since,
        )
        return int(status.split()[-1])

    async def save_email_channel(
        self, agency_id: str, addresses: list[str], language: str, event_types: list[str] | None
    ) -> None:
        await self._conn.execute(
            """INSERT INTO email_channels (agency_id, addresses, language, event_types)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (agency_id) DO UPDATE SET addresses = EXCLUDED.addresses,
                 language = EXCLUDED.language, event_types = EXCLUDED.event_types""",
            agency_id,
            addresses,
            language,
            event_types,
        )

    async def channels(self, agency_ids: Collection[str]) -> dict[str, Channels]:
        """Every given agency's channels (agencies without any: absent): one query for those
        the consumer's batch has not read yet. Channels change only by operator command, in
        a transaction of its own, so what a batch read holds for the rest of the batch."""
        scope = batch_scope.current(self._conn)
        known: dict[str, Channels | None] = scope.cache.setdefault(_CHANNELS, {}) if scope else {}
        missing = set(agency_ids) - set(known)
        if missing:
            found = await self._read_channels(missing)
            known.update({a: found.get(a) for a in missing})
        return {a: c for a in agency_ids if (c := known.get(a)) is not None}

    async def _read_channels(self, agency_ids: Collection[str]) -> dict[str, Channels]:
        rows = await self._conn.fetch(
            """SELECT a.agency_id, w.event_types AS webhook_types, w.agency_id IS NOT NULL
                      AS has_webhook, m.addresses, m.language, m.event_types AS email_types
                 FROM unnest($1::text[]) AS a (agency_id)
                 LEFT JOIN webhook_endpoints w
                        ON w.agency_id = a.agency_id AND w.disabled_at IS NULL
                 LEFT JOIN email_channels m ON m.agency_id = a.agency_id
                WHERE w.agency_id IS NOT NULL OR m.agency_id IS NOT NULL""",
            sorted(set(agency_ids)),
        )
        return {
            r["agency_id"]: Channels(
                webhook_types=(list(r["webhook_types"] or []) if r["has_webhook"] else None),
                email=(
                    EmailChannel(list(r["addresses"]), r["language"], r["email_types"])
                    if r["addresses"] is not None
                    else None
                ),
            )
            for r in rows
        }

    async def record(self, notifications: Sequence[Notification]) -> None:
        """The notifications, their webhook deliveries and their e-mails: one statement per
        table, for the whole batch when the consumer runs one (no handler reads these tables;
        the delivery loops do, after the commit)."""
        await batch_scope.write(self._conn, "notifications", notifications, _write_notifications)

    # ----- what /metrics reports (services/notification/metrics.py) -----

    async def delivery_backlog(self) -> dict[str, int]:
        """Messages waiting to be delivered, per channel (both partial indexes of due rows
        answer it), and the webhook endpoints disabled."""
        row = await self._conn.fetchrow(
            """SELECT (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending') AS webhook,
                      (SELECT count(*) FROM email_deliveries WHERE status = 'pending') AS email,
                      (SELECT count(*) FROM webhook_endpoints
                        WHERE disabled_at IS NOT NULL) AS disabled_endpoints"""
        )
        assert row is not None
        return {k: int(v) for k, v in row.items()}

    async def channels_by_agency(self, failed_within: timedelta) -> dict[str, dict[str, Any]]:
        """Per agency with a channel or a delivery: its webhook endpoint disabled (why, since
        when), deliveries waiting, and those given up within ``failed_within`` (for
        `refex platform status`)."""
        rows = await self._conn.fetch(
            """WITH deliveries AS (
                 SELECT agency_id, status, created_at FROM webhook_deliveries
                  WHERE status = 'pending' OR created_at > now() - $1::interval
                 UNION ALL
                 SELECT agency_id, status, created_at FROM email_deliveries
                  WHERE status = 'pending' OR created_at > now() - $1::interval),
               counted AS (
                 SELECT agency_id, count(*) FILTER (WHERE status = 'pending') AS pending,
                        count(*) FILTER (WHERE status IN ('exhausted', 'endpoint_disabled'))
                          AS given_up
                   FROM deliveries GROUP BY agency_id)
               SELECT agency_id, e.disabled_at, e.disabled_reason,
                      coalesce(c.pending, 0) AS pending, coalesce(c.given_up, 0) AS given_up
                 FROM counted c FULL JOIN (
                   SELECT agency_id, disabled_at, disabled_reason FROM webhook_endpoints
                    WHERE disabled_at IS NOT NULL) e USING (agency_id)""",
            failed_within,
        )
        return {
            r["agency_id"]: {
                "webhook_disabled_at": r["disabled_at"].isoformat() if r["disabled_at"] else None,
                "webhook_disabled_reason": r["disabled_reason"],
                "deliveries_pending": int(r["pending"]),
                "deliveries_given_up": int(r["given_up"]),
            }
            for r in rows
        }

    # ----- webhook deliveries, as the periodic job leases and settles them -----

    async def lease_webhooks(self, limit: int, lease: timedelta) -> list[DueWebhook]:
        """Claim up to ``limit`` due deliveries for ``lease`` (anyone retries a row after it, if
        its claimer died) and count the attempt; each with its endpoint and the secrets that
        sign now: one statement."""
        rows = await self._conn.fetch(
            """WITH leased AS (
                 UPDATE webhook_deliveries d SET next_attempt_at = now() + $2::interval,
                        attempts = attempts + 1
                   FROM webhook_endpoints e
                  WHERE d.webhook_id IN (
                          SELECT webhook_id FROM webhook_deliveries
                           WHERE status = 'pending' AND next_attempt_at <= now()
                           ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
                    AND e.agency_id = d.agency_id
              RETURNING d.webhook_id, d.agency_id, d.payload, d.attempts, d.notification_id,
                        d.created_at, e.url, e.disabled_at)
               SELECT l.*, s.key_ids, s.boxes
                 FROM leased l
                CROSS JOIN LATERAL (
                        SELECT array_agg(key_id ORDER BY secret_id) AS key_ids,
                               array_agg(sealed ORDER BY secret_id) AS boxes
                          FROM webhook_secrets
                         WHERE agency_id = l.agency_id
                           AND (valid_until IS NULL OR valid_until > now())) s
                -- RETURNING has no order: each agency's messages go in the order queued.
                ORDER BY l.created_at, l.webhook_id""",
            limit,
            lease,
        )
        return [
            DueWebhook(
                webhook_id=r["webhook_id"],
                agency_id=r["agency_id"],
                notification_id=r["notification_id"],
                payload=bytes(r["payload"]),
                attempts=r["attempts"],
                url=r["url"],
                disabled_at=r["disabled_at"],
                secrets=[  # both NULL when the agency has none
                    Sealed(k, bytes(b))
                    for k, b in zip(r["key_ids"] or [], r["boxes"] or [], strict=True)
                ],
            )
            for r in rows
        ]

    async def webhook_delivered(
        self, webhook_id: str, agency_id: str, http_status: int | None
    ) -> None:
        """The endpoint works again (no longer failing) and the message is delivered: one
        statement."""
        await self._conn.execute(
            """WITH endpoint AS (
                 UPDATE webhook_endpoints SET failing_since = NULL WHERE agency_id = $2)
               UPDATE webhook_deliveries SET status = 'delivered', last_http_status = $3,
                      delivered_at = now()
                WHERE webhook_id = $1""",
            webhook_id,
            agency_id,
            http_status,
        )

    async def endpoint_failing(self, agency_id: str) -> datetime | None:
        """Record that the agency's endpoint failed; return since when it has been failing."""
        since: datetime | None = await self._conn.fetchval(
            """UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, now())
                WHERE agency_id = $1 RETURNING failing_since""",
            agency_id,
        )
        return since

    async def retry_webhook(
        self, webhook_id: str, delay: timedelta, http_status: int | None
    ) -> None:
        await self._conn.execute(
            """UPDATE webhook_deliveries SET next_attempt_at = now() + $2::interval,
                      last_http_status = $3 WHERE webhook_id = $1""",
            webhook_id,
            delay,
            http_status,
        )

    async def finish_webhook(
        self,
        webhook_id: str,
        agency_id: str,
        status: str,
        http_status: int | None,
        *,
        disable_reason: str | None = None,
    ) -> None:
        """The message's last state (not delivered: see :meth:`webhook_delivered`); with
        ``disable_reason``, the endpoint is disabled too: one statement."""
        await self._conn.execute(
            """WITH endpoint AS (
                 UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = $5
                  WHERE agency_id = $4 AND $5::text IS NOT NULL)
               UPDATE webhook_deliveries SET status = $2, last_http_status = $3,
                      delivered_at = CASE WHEN $2 = 'delivered' THEN now() END
                WHERE webhook_id = $1""",
            webhook_id,
            status,
            http_status,
            agency_id,
            disable_reason,
        )

    # ----- e-mail deliveries -----

    async def lease_emails(self, limit: int) -> list[DueEmail]:
        """Claim up to ``limit`` due e-mails for a minute and count the attempt."""
        rows = await self._conn.fetch(
            """UPDATE email_deliveries SET attempts = attempts + 1,
                      next_attempt_at = now() + interval '60 seconds'
                WHERE email_id IN (SELECT email_id FROM email_deliveries
                                    WHERE status = 'pending' AND next_attempt_at <= now()
                                    ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
            RETURNING email_id, agency_id, notification_id, addresses, subject, body_text,
                      body_html, attempts""",
            limit,
        )
        return [
            DueEmail(
                email_id=r["email_id"],
                agency_id=r["agency_id"],
                notification_id=r["notification_id"],
                addresses=list(r["addresses"]),
                subject=r["subject"],
                body_text=r["body_text"],
                body_html=r["body_html"],
                attempts=r["attempts"],
            )
            for r in rows
        ]

    async def email_attempted(self, email_id: str, status: str, delay_s: float) -> None:
        """``status``: sent, pending (retried in ``delay_s``) or exhausted."""
        await self._conn.execute(
            """UPDATE email_deliveries SET status = $2,
                      next_attempt_at = now() + make_interval(secs => $3),
                      sent_at = CASE WHEN $2 = 'sent' THEN now() END
               WHERE email_id = $1""",
            email_id,
            status,
            delay_s,
        )

    # ----- webhook signing secrets, only ever sealed here (secret_store.py seals and opens) -----

    async def replace_secrets(self, agency_id: str, sealed: Sealed) -> None:
        """Make ``sealed`` the agency's only secret: one statement."""
        await self._conn.execute(
            """WITH gone AS (DELETE FROM webhook_secrets WHERE agency_id = $1)
               INSERT INTO webhook_secrets (agency_id, key_id, sealed) VALUES ($1, $2, $3)""",
            agency_id,
            sealed.key_id,
            sealed.box,
        )

    async def rotate_secret(
        self, agency_id: str, sealed: Sealed, previous_valid_until: datetime
    ) -> None:
        """Add ``sealed`` as the current secret; the previous current one ends at
        ``previous_valid_until``, those past their end are deleted: one statement (the three
        touch different rows)."""
        await self._conn.execute(
            """WITH expired AS (
                 DELETE FROM webhook_secrets WHERE agency_id = $1 AND valid_until <= now()),
               previous AS (
                 UPDATE webhook_secrets SET valid_until = $4
                  WHERE agency_id = $1 AND valid_until IS NULL)
               INSERT INTO webhook_secrets (agency_id, key_id, sealed) VALUES ($1, $2, $3)""",
            agency_id,
            sealed.key_id,
            sealed.box,
            previous_valid_until,
        )

    async def secrets_in_force(self, agency_ids: Collection[str]) -> dict[str, list[Sealed]]:
        """The sealed secrets that sign now, per agency, oldest first."""
        rows = await self._conn.fetch(
            """SELECT agency_id, key_id, sealed FROM webhook_secrets
                WHERE agency_id = ANY($1::text[]) AND (valid_until IS NULL OR valid_until > now())
                ORDER BY agency_id, secret_id""",
            list(agency_ids),
        )
        found: dict[str, list[Sealed]] = {}
        for r in rows:
            found.setdefault(r["agency_id"], []).append(Sealed(r["key_id"], bytes(r["sealed"])))
        return found

    async def secrets_to_reseal(self, key_id: str, only: str | None) -> list[tuple[int, Sealed]]:
        """The secrets not sealed under ``key_id`` (only those under ``only``, when given), by
        secret id, locked for the transaction."""
        rows = await self._conn.fetch(
            """SELECT secret_id, key_id, sealed FROM webhook_secrets
                WHERE key_id <> $1 AND ($2::text IS NULL OR key_id = $2)
                ORDER BY secret_id FOR UPDATE""",
            key_id,
            only,
        )
        return [(r["secret_id"], Sealed(r["key_id"], bytes(r["sealed"]))) for r in rows]

    async def reseal_secrets(self, resealed: Sequence[tuple[int, Sealed]]) -> None:
        """Store the secrets sealed again (secret id, new seal): one statement."""
        if not resealed:
            return
        await self._conn.execute(
            """UPDATE webhook_secrets s SET key_id = x.k, sealed = x.b
                 FROM unnest($1::bigint[], $2::text[], $3::bytea[]) AS x (i, k, b)
                WHERE s.secret_id = x.i""",
            [i for i, _ in resealed],
            [sealed.key_id for _, sealed in resealed],
            [sealed.box for _, sealed in resealed],
        )

    async def count_secrets(self, key_id: str) -> int:
        """How many secrets are sealed under ``key_id``."""
        count = await self._conn.fetchval(
            "SELECT count(*) FROM webhook_secrets WHERE key_id = $1", key_id
        )
        return int(count)

    async def secrets_under_other_keys(self, key_id: str) -> dict[str, int]:
        """Key id → how many secrets it sealed, for every key other than ``key_id``."""
        rows = await self._conn.fetch(
            "SELECT key_id, count(*) AS n FROM webhook_secrets WHERE key_id <> $1 GROUP BY key_id",
            key_id,
        )
        return {r["key_id"]: r["n"] for r in rows}


async def _write_notifications(conn: DbConnection, notifications: Sequence[Notification]) -> None:
    """A redelivered event's rows already exist: nothing is queued twice."""
    if not notifications:
        return
    await conn.execute(
        """INSERT INTO notifications (notification_id, agency_id, channel, source_event_id,
                                      ce_type)
           SELECT n, a, 'kafka_inbox', s, t
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS x (n, a, s, t)""",
        [n.notification_id for n in notifications],
        [n.agency_id for n in notifications],
        [n.source_event_id for n in notifications],
        [n.ce_type for n in notifications],
    )
    hooks = [n for n in notifications if n.webhook_payload is not None]
    if hooks:
        await conn.execute(
            """INSERT INTO webhook_deliveries (webhook_id, agency_id, notification_id,
                                               ce_type, payload)
               SELECT 'msg_' || n, a, n, t, p
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[])
                      AS x (n, a, t, p)
               ON CONFLICT (webhook_id) DO NOTHING""",
            [n.notification_id for n in hooks],
            [n.agency_id for n in hooks],
            [n.ce_type for n in hooks],
            [n.webhook_payload for n in hooks],
        )
    mails = [n for n in notifications if n.email is not None]
    if mails:
        await conn.execute(
            """INSERT INTO email_deliveries (email_id, agency_id, notification_id, addresses,
                                             subject, body_text, body_html)
               SELECT 'mail_' || n, a, n, string_to_array(d, chr(31)), s, t, h
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::text[]) AS x (n, a, d, s, t, h)
               ON CONFLICT (email_id) DO NOTHING""",
            [n.notification_id for n in mails],
            [n.agency_id for n in mails],
            # text[][] must be rectangular: each address list travels as one string
            [chr(31).join(n.email[0]) for n in mails if n.email],
            [n.email[1] for n in mails if n.email],
            [n.email[2] for n in mails if n.email],
            [n.email[3] for n in mails if n.email],
        )
