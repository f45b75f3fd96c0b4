"""``refex notification …``: what agencies receive."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from pydantic import SecretStr, ValidationError
from rich.markup import escape

from shared.contracts import topics
from shared.db import connected
from shared.i18n import LANGUAGES
from shared.kafka.inbound import describe_error
from shared.kafka.oneshot import follow
from shared.keys import key_from_environment
from shared.operator import (
    DEFAULT_BOOTSTRAP,
    Bootstrap,
    connect,
    console,
    err_console,
    operator_kafka,
    print_record,
    run,
)
from shared.operator_audit import audited
from shared.unit import Unit, open_unit

from . import secret_store
from .constants import SOURCE
from .secret_store import SecretsKey
from .settings import NotificationSettings
from .store import NotificationStore
from .targets import target_refusal

app = typer.Typer(
    help="Notification: agency inboxes and webhooks (register, rotate secrets, replay).",
    no_args_is_help=True,
)


@app.command("follow-inbox")
def follow_inbox(
    agency_id: str,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest message.")] = True,
    idle_timeout: Annotated[
        float | None,
        typer.Option(
            help="Stop after this many seconds without a message (default: follow forever)."
        ),
    ] = None,
) -> None:
    """Print the events on agency.<id>.inbox.v1 as they arrive."""
    try:
        topic = topics.agency_inbox(agency_id)
    except ValueError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc

    async def _follow() -> None:
        async for record in follow(
            connect(bootstrap), topic, from_beginning=from_beginning, idle_timeout_s=idle_timeout
        ):
            print_record(record)

    run(_follow())


def _settings() -> NotificationSettings:
    try:
        return NotificationSettings()
    except ValidationError as exc:  # hide_input_in_errors: the message never holds a value
        err_console.print(f"[red]notification settings incomplete:[/red] {describe_error(exc)}")
        raise typer.Exit(2) from exc


def _dsn() -> str:
    return _settings().database_dsn


def _secrets_key() -> SecretsKey:
    return SecretsKey.from_setting(_settings().secrets_key)


def _unit() -> AbstractAsyncContextManager[Unit[NotificationStore]]:
    """One transaction of an operator command, through the service's store."""
    return open_unit(connected(_dsn()), NotificationStore, SOURCE)


@app.command("add-webhook")
def add_webhook(
    agency_id: str,
    url: str,
    event_type: Annotated[
        list[str] | None,
        typer.Option("--type", help="Only these ce_types (repeatable); all when left out."),
    ] = None,
) -> None:
    """Register (or replace) an agency's webhook; prints its new signing secret once.

    A URL the service would refuse to call (loopback, private, link-local; see
    NOTIFICATION_ALLOW_PRIVATE_WEBHOOK_TARGETS) is refused here, by the same decision."""
    topics.agency_inbox(agency_id)  # refuses a malformed agency id
    settings = _settings()
    key, secret = SecretsKey.from_setting(settings.secrets_key), secret_store.new_secret()

    async def _register() -> None:
        async with open_unit(connected(settings.database_dsn), NotificationStore, SOURCE) as unit:
            await unit.stores.save_webhook(agency_id, url, event_type)
            await secret_store.replace_all(unit.stores, key, agency_id, secret)

    with audited(operator_kafka(), "notification add-webhook", "webhook", agency_id):
        refusal = target_refusal(url, settings.allow_private_webhook_targets)
        if refusal is not None:
            err_console.print(  # soft_wrap: the setting's name must stay whole when copied
                f"[red]webhook URL refused:[/red] {escape(refusal.reason)}",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(2)
        run(_register())
    console.print(f"webhook of [bold]{agency_id}[/bold] → {url}")
    _show_once("signing secret (give it to the agency; it is not shown again)", secret)


def _show_once(label: str, secret: SecretStr) -> None:
    """The one place a secret is revealed: to the operator's terminal, never to a log."""
    # soft_wrap: a narrow terminal must not break the secret with a newline when copied
    console.print(f"{label}: {secret.get_secret_value()}", highlight=False, soft_wrap=True)


@app.command("rotate-webhook-secret")
def rotate_webhook_secret(
    agency_id: str,
    overlap_hours: Annotated[
        float, typer.Option(help="How long the old secret still signs too.")
    ] = 24.0,
) -> None:
    """Add a new signing secret; both sign during the overlap, then only the new one."""
    key, secret = _secrets_key(), secret_store.new_secret()
    until = datetime.now(UTC) + timedelta(hours=overlap_hours)

    async def _rotate() -> bool:
        async with _unit() as unit:
            exists = await unit.stores.lock_webhook(agency_id)
            if exists:
                await secret_store.rotate(unit.stores, key, agency_id, secret, until)
            return exists

    with audited(operator_kafka(), "notification rotate-webhook-secret", "webhook", agency_id):
        if not run(_rotate()):
            err_console.print(f"[red]{agency_id} has no webhook[/red]")
            raise typer.Exit(1)
    _show_once(f"new signing secret of {agency_id}", secret)
    console.print(f"the previous one stays valid until {until.isoformat()}")


@app.command("reencrypt-secrets")
def reencrypt_secrets(
    old_key_env: Annotated[
        list[str] | None,
        typer.Option(
            "--old-key-env",
            metavar="VAR",
            help="Name of an environment variable holding a previous NOTIFICATION_SECRETS_KEY "
            "(repeatable). The name, not the key: keys stay out of shell history.",
        ),
    ] = None,
) -> None:
    """Re-seal every stored webhook secret under the current NOTIFICATION_SECRETS_KEY.

    Rotation: stop notification, run this with the new key in NOTIFICATION_SECRETS_KEY and the
    old one in VAR, start notification with the new key. Idempotent."""
    key = _secrets_key()
    old_keys = [_old_key(name) for name in old_key_env or []]

    async def _reseal() -> secret_store.ResealReport:
        async with _unit() as unit:
            return await secret_store.reseal(unit.stores, key, old_keys)

    with audited(operator_kafka(), "notification reencrypt-secrets", "key", key.key_id):
        report: secret_store.ResealReport = run(_reseal())
    console.print(
        f"{report.resealed} secret(s) re-sealed under key {key.key_id}; "
        f"{report.current} already were"
    )
    if report.unreadable:
        left = ", ".join(f"{n} under key {k}" for k, n in sorted(report.unreadable.items()))
        err_console.print(f"[red]left as they were:[/red] {left}; give that key with --old-key-env")
        raise typer.Exit(1)


def _old_key(variable: str) -> SecretsKey:
    try:
        return SecretsKey(key_from_environment(variable))
    except ValueError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


@app.command("replay")
def replay(
    agency_id: str,
    webhook_id: Annotated[str | None, typer.Option(help="Only this message.")] = None,
    since: Annotated[
        datetime | None, typer.Option(help="Every message created since this time (ISO 8601).")
    ] = None,
) -> None:
    """Send webhook messages again (same webhook-id: receivers can still de-duplicate)."""
    if (webhook_id is None) == (since is None):
        err_console.print("[red]give either --webhook-id or --since[/red]")
        raise typer.Exit(2)
    with audited(operator_kafka(), "notification replay", "webhook", agency_id):
        queued = _replay(agency_id, webhook_id, since)
    console.print(f"{queued} message(s) of {agency_id} queued again")


def _replay(agency_id: str, webhook_id: str | None, since: datetime | None) -> int:
    async def _requeue() -> int:
        async with _unit() as unit:
            return await unit.stores.requeue_deliveries(
                agency_id, webhook_id, since.replace(tzinfo=since.tzinfo or UTC) if since else None
            )

    queued: int = run(_requeue())
    return queued


@app.command("add-email")
def add_email(
    agency_id: str,
    address: Annotated[list[str], typer.Argument(help="One or more e-mail addresses.")],
    language: Annotated[str, typer.Option(help="en, fr or ar")] = "en",
    event_type: Annotated[
        list[str] | None,
        typer.Option("--type", help="Only these ce_types (repeatable); all when left out."),
    ] = None,
) -> None:
    """Register (or replace) an agency's e-mail channel."""
    topics.agency_inbox(agency_id)  # refuses a malformed agency id
    if language not in LANGUAGES:
        err_console.print(f"[red]language must be one of {', '.join(LANGUAGES)}[/red]")
        raise typer.Exit(2)
    with audited(operator_kafka(), "notification add-email", "email_channel", agency_id):

        async def _save() -> None:
            async with _unit() as unit:
                await unit.stores.save_email_channel(agency_id, address, language, event_type)

        run(_save())
    console.print(f"e-mail of [bold]{agency_id}[/bold] → {', '.join(address)} ({language})")
