"""E-mail notifications: rendered per event type in the agency's language from the shared
``refex`` catalogue (shared/i18n: English, French, Arabic), plain text and HTML, references and
what to do next only — never personal data (the inbox payloads carry none; a sealed disclosure
is only announced). When the console's address is set, each e-mail links to the referral's page
there, or to the agency's inbox. Queued in the database and sent by a periodic job with the
webhook retry schedule; the queue is reached through the store, in units of work (each outcome
with its report on notification.deliveries.v1)."""

from __future__ import annotations

import html
import socket
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from string import Template
from typing import Any, Literal
from urllib.parse import quote

import aiosmtplib
import asyncpg
from pydantic import SecretStr

from shared.contracts import events as ev
from shared.contracts import topics
from shared.i18n import N_, Language, direction, is_language, translations
from shared.logging import get_logger
from shared.unit import Cause, open_unit

from . import metrics
from .channels import caused_by
from .constants import SOURCE
from .email_messages import EMAILS
from .store import DueEmail, NotificationStore
from .webhooks import DeliveryPolicy

log = get_logger(__name__)

OPEN_REFERRAL = N_("Open the referral in the console: $link")
OPEN_INBOX = N_("Open your inbox in the console: $link")


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


def console_link(console_url: str, data: dict[str, Any]) -> tuple[str, str]:
    """(sentence, URL) of the console page an e-mail leads to: the referral's page when the
    e-mail is about one, else the agency's inbox (the console shows only the logged-in
    agency's own referrals, so the link gives nothing to someone else who reads it)."""
    referral_id = data.get("referral_id")
    if isinstance(referral_id, str) and referral_id:
        return OPEN_REFERRAL, f"{console_url}/referrals/{quote(referral_id, safe='')}"
    return OPEN_INBOX, f"{console_url}/inbox"


def _paragraphs(text: str) -> str:
    return "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in text.split("\n\n"))


def render(
    ce_type: str, data: dict[str, Any], language: str, console_url: str | None = None
) -> tuple[str, str, str] | None:
    """(subject, plain text, HTML), or None for a type that has no e-mail. Without a console
    URL the e-mail has no link."""
    message = EMAILS.get(ce_type)
    if message is None:
        return None
    lang: Language = language if is_language(language) else "en"
    gettext = translations(lang).gettext
    values = _fields(data)
    subject = Template(gettext(message.subject)).safe_substitute(values)
    text = Template(gettext(message.text)).safe_substitute(values)
    body = _paragraphs(text)
    if console_url:
        sentence, url = console_link(console_url, data)
        text += "\n\n" + Template(gettext(sentence)).safe_substitute(link=url)
        anchor = f'<a href="{html.escape(url)}">{html.escape(url)}</a>'
        # The sentence is escaped, then the placeholder becomes the link.
        body += f"<p>{Template(html.escape(gettext(sentence))).safe_substitute(link=anchor)}</p>"
    page = (
        f'<!doctype html><html lang="{lang}" dir="{direction(lang)}"><meta charset="utf-8">'
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
        outcome = "failed" if status == "pending" else status  # pending again: a retry
        metrics.DELIVERY_ATTEMPTS.labels(channel="email", outcome=outcome).inc()
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
