"""E-mail notifications: rendered per event type in the agency's language (English, French),
plain text and HTML, references and what to do next only — never personal data (the inbox
payloads carry none; a sealed disclosure is only announced). Queued in the database and sent by
a periodic job with the webhook retry schedule; the queue is reached through the store, in units
of work (each outcome with its report on notification.deliveries.v1)."""

from __future__ import annotations

import html
import json
import socket
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from functools import cache
from importlib import resources
from string import Template
from typing import Any, Literal

import aiosmtplib
import asyncpg
from pydantic import SecretStr

from shared.contracts import events as ev
from shared.contracts import topics
from shared.logging import get_logger
from shared.unit import Cause, open_unit

from .channels import caused_by
from .constants import SOURCE
from .store import DueEmail, NotificationStore
from .webhooks import DeliveryPolicy

log = get_logger(__name__)
LANGUAGES = ("en", "fr")


@cache
def _templates(language: str) -> dict[str, dict[str, str]]:
    text = resources.files(__package__).joinpath("templates", f"{language}.json").read_text()
    loaded: dict[str, dict[str, str]] = json.loads(text)
    return loaded


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):  # e.g. a continuity proposal's open_need_ids: "n1, n2"
        return ", ".join(_text(v) for v in value)
    return str(value)


def _fields(data: dict[str, Any]) -> dict[str, str]:
    values = {
        k: _text(v)
        for k, v in data.items()
        if k not in ("sealed_box", "errors", "schema_version", "candidates", "alternatives")
    }
    values["fields"] = ", ".join(e["field"] for e in data.get("errors", [])) or "-"
    # A continuity proposal's candidates by agency, best first (their explanations stay in the
    # inbox event).
    values["candidate_agencies"] = (
        ", ".join(c["agency_id"] for c in data.get("candidates", [])) or "-"
    )
    # A need's alternatives by service, best first (issue 18; explanations in the inbox event).
    values["alternative_services"] = (
        ", ".join(f"{a['rank']}. {a['service_id']}" for a in data.get("alternatives", [])) or "-"
    )
    return values


def render(ce_type: str, data: dict[str, Any], language: str) -> tuple[str, str, str] | None:
    """(subject, plain text, HTML), or None for a type that has no e-mail."""
    template = _templates(language).get(ce_type)
    if template is None:
        return None
    values = _fields(data)
    subject = Template(template["subject"]).safe_substitute(values)
    text = Template(template["text"]).safe_substitute(values)
    body = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in text.split("\n\n"))
    page = (
        f'<!doctype html><html lang="{language}"><meta charset="utf-8">'
        f"<title>{html.escape(subject)}</title><body>{body}</body></html>"
    )
    return subject, text, page


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: SecretStr | None = None  # a SecretStr until the SMTP call: no repr or log shows it
    start_tls: bool = False


async def send_due(
    pool: asyncpg.Pool, smtp: SmtpSettings, policy: DeliveryPolicy, limit: int = 20
) -> int:
    async with open_unit(pool.acquire(), NotificationStore, SOURCE) as unit:
        due = await unit.stores.lease_emails(limit)
    for mail in due:
        message = EmailMessage()
        message["From"], message["To"] = smtp.sender, ", ".join(mail.addresses)
        message["Subject"] = mail.subject
        message["Message-ID"] = f"<{mail.email_id}@referralexchange>"
        message.set_content(mail.body_text)
        message.add_alternative(mail.body_html, subtype="html")
        started = time.monotonic()
        try:
            await aiosmtplib.send(
                message,
                hostname=smtp.host,
                port=smtp.port,
                username=smtp.username,
                password=smtp.password.get_secret_value() if smtp.password else None,
                start_tls=smtp.start_tls,
                timeout=15,
            )
            status, delay, error = "sent", None, None
        except (aiosmtplib.SMTPException, OSError) as exc:
            delay = policy.next_delay(mail.attempts)
            status = "pending" if delay is not None else "exhausted"
            error = failure_of(exc)
            log.info("email_attempt_failed", email_id=mail.email_id, error=type(exc).__name__)
        cause = Cause(causation_id=mail.notification_id)
        async with open_unit(pool.acquire(), NotificationStore, SOURCE, cause) as unit:
            await unit.stores.email_attempted(mail.email_id, status, delay or 0.0)
            unit.emit(
                ev.DELIVERY_ATTEMPTED,
                _report(mail, status, started, error),
                topic=topics.NOTIFICATION_DELIVERIES,
                subject=mail.email_id,
            )
        log.info("email_attempt", email_id=mail.email_id, agency_id=mail.agency_id, status=status)
    return len(due)


def failure_of(exc: aiosmtplib.SMTPException | OSError) -> ev.DeliveryError:
    """Why sending failed, in the closed vocabulary of notification.deliveries.v1 (the
    exception's text may quote an address: it is never reported)."""
    if caused_by(exc, ssl.SSLError):
        return ev.DeliveryError.TLS_ERROR
    if isinstance(exc, TimeoutError):  # aiosmtplib's timeouts are TimeoutErrors too
        return ev.DeliveryError.TIMEOUT
    if caused_by(exc, socket.gaierror):
        return ev.DeliveryError.DNS_FAILED
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return ev.DeliveryError.SMTP_AUTH_FAILED
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError | aiosmtplib.SMTPHeloError):
        return ev.DeliveryError.PROTOCOL_ERROR  # the relay greeted us with an error
    if isinstance(exc, aiosmtplib.SMTPResponseException | aiosmtplib.SMTPRecipientsRefused):
        return ev.DeliveryError.SMTP_REJECTED  # sender, recipients or message refused
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return ev.DeliveryError.PROTOCOL_ERROR  # the relay lacks STARTTLS or AUTH
    if isinstance(exc, OSError):  # SMTPConnectError, SMTPServerDisconnected, a refused socket
        return ev.DeliveryError.CONNECTION_FAILED
    return ev.DeliveryError.REQUEST_FAILED


def _report(
    mail: DueEmail, status: str, started: float, error: ev.DeliveryError | None
) -> ev.DeliveryAttempted:
    """The attempt on notification.deliveries.v1, like webhook attempts."""
    reported: Literal["delivered", "failed", "exhausted"] = (
        "delivered" if status == "sent" else "failed" if status == "pending" else "exhausted"
    )
    attempted = ev.DeliveryAttempted(
        delivery_id=mail.email_id,
        agency_id=mail.agency_id,
        channel="email",
        event_id=mail.notification_id,
        attempt=mail.attempts,
        status=reported,
        latency_ms=int((time.monotonic() - started) * 1000),
        error=error,
    )
    return attempted
