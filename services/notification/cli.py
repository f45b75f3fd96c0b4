"""``refex notification …``: what agencies receive."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated

import asyncpg
import typer
from pydantic import ValidationError

from shared.contracts import topics
from shared.kafka.inbound import describe_error
from shared.kafka.oneshot import follow
from shared.operator import (
    DEFAULT_BOOTSTRAP,
    Bootstrap,
    connect,
    console,
    err_console,
    print_record,
    run,
)

from .email import LANGUAGES
from .settings import NotificationSettings
from .webhooks import new_secret

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


def _dsn() -> str:
    try:
        return NotificationSettings().database_dsn
    except ValidationError as exc:
        err_console.print(f"[red]notification settings incomplete:[/red] {describe_error(exc)}")
        raise typer.Exit(2) from exc


async def _execute(query: str, *args: object) -> str:
    conn = await asyncpg.connect(_dsn())
    try:
        return str(await conn.execute(query, *args))
    finally:
        await conn.close()


@app.command("add-webhook")
def add_webhook(
    agency_id: str,
    url: str,
    event_type: Annotated[
        list[str] | None,
        typer.Option("--type", help="Only these ce_types (repeatable); all when left out."),
    ] = None,
) -> None:
    """Register (or replace) an agency's webhook; prints its new signing secret once."""
    topics.agency_inbox(agency_id)  # refuses a malformed agency id
    secret = new_secret()
    run(
        _execute(
            """INSERT INTO webhook_endpoints (agency_id, url, secrets, event_types)
           VALUES ($1, $2, $3::jsonb, $4)
           ON CONFLICT (agency_id) DO UPDATE SET url = EXCLUDED.url, secrets = EXCLUDED.secrets,
             event_types = EXCLUDED.event_types, disabled_at = NULL, disabled_reason = NULL""",
            agency_id,
            url,
            json.dumps([{"secret": secret, "valid_until": None}]),
            event_type,
        )
    )
    console.print(f"webhook of [bold]{agency_id}[/bold] → {url}")
    console.print(f"signing secret (give it to the agency; it is not shown again): {secret}")


@app.command("rotate-webhook-secret")
def rotate_webhook_secret(
    agency_id: str,
    overlap_hours: Annotated[
        float, typer.Option(help="How long the old secret still signs too.")
    ] = 24.0,
) -> None:
    """Add a new signing secret; both sign during the overlap, then only the new one."""
    secret = new_secret()
    until = (datetime.now(UTC) + timedelta(hours=overlap_hours)).isoformat()
    status = run(
        _execute(
            """UPDATE webhook_endpoints SET secrets = (
               SELECT coalesce(jsonb_agg(jsonb_set(s, '{valid_until}', to_jsonb($2::text))),
                               '[]'::jsonb)
                 FROM jsonb_array_elements(secrets) s
                WHERE s->>'valid_until' IS NULL OR (s->>'valid_until')::timestamptz > now()
           ) || jsonb_build_array(jsonb_build_object('secret', $3::text, 'valid_until', null))
           WHERE agency_id = $1""",
            agency_id,
            until,
            secret,
        )
    )
    if status.endswith(" 0"):
        err_console.print(f"[red]{agency_id} has no webhook[/red]")
        raise typer.Exit(1)
    console.print(f"new signing secret of [bold]{agency_id}[/bold]: {secret}")
    console.print(f"the previous one stays valid until {until}")


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
    status = run(
        _execute(
            """UPDATE webhook_deliveries SET status = 'pending', attempts = 0,
                  next_attempt_at = now()
           WHERE agency_id = $1 AND ($2::text IS NULL OR webhook_id = $2)
             AND ($3::timestamptz IS NULL OR created_at >= $3)""",
            agency_id,
            webhook_id,
            since.replace(tzinfo=since.tzinfo or UTC) if since else None,
        )
    )
    console.print(f"{status.split()[-1]} message(s) of {agency_id} queued again")


@app.command("add-email")
def add_email(
    agency_id: str,
    address: Annotated[list[str], typer.Argument(help="One or more e-mail addresses.")],
    language: Annotated[str, typer.Option(help="en or fr")] = "en",
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
    run(
        _execute(
            """INSERT INTO email_channels (agency_id, addresses, language, event_types)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (agency_id) DO UPDATE SET addresses = EXCLUDED.addresses,
             language = EXCLUDED.language, event_types = EXCLUDED.event_types""",
            agency_id,
            address,
            language,
            event_type,
        )
    )
    console.print(f"e-mail of [bold]{agency_id}[/bold] → {', '.join(address)} ({language})")
