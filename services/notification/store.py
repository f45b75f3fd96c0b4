"""Notification's SQL for routing events: the agency registry, each agency's channels, and the
record of every notification with its webhook and e-mail deliveries.

Set-based: the channels of every agency an event concerns are read in one query, and each table
is written with one statement per event however many notices it causes (arrays unnested). The
delivery loops (webhooks.py, email.py) keep their own queries for now.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

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
